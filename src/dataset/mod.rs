//! Datasets in the KeypointNet format, the one public format for labelled correspondences:
//!
//! ```text
//! annotations/<category>.json      list of models with their keypoints
//! pcds/<class_id>/<model_id>.pcd   2048-point clouds (ASCII PCD, x y z rgb)
//! splits/{train,val,test}.txt      lines "<class_id>-<model_id>"
//! ```
//!
//! A correspondence set is (category, semantic_id): all keypoints with that semantic id on
//! the models of one category.

mod keypointnet;
pub mod synth;

pub use keypointnet::{
    keypoint_names_path, read_annotations, write_annotations, write_keypoint_names,
    write_model_cloud, write_splits, AnnotatedModel, Category, Dataset, Keypoint, MeshInfo,
    ModelAnnotation, ModelKey, ReflectionSymmetry, RotationSymmetry, Split, Splits, Symmetries,
    XYZ_TOLERANCE,
};
