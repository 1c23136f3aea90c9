//! semcorr: per-point semantic embeddings learned from human-labelled correspondences
//! (the geodesic-consistency method of CPNet), evaluated by mean geodesic error (mGE).
//!
//! One data path, read top to bottom (the README's "Architecture" section has the map):
//! `cloud` (Cloud, PCD/PLY, sampling, normalisation, preparation) -> `model` (backbones)
//! -> `embedding` (per-point embeddings) -> `matching` (templates, matcher) ->
//! `pipeline` (the per-cloud path the node and `semcorr infer` share). Around it:
//! `dataset`, `geodesic`, `train`, `eval`, `deploy` (model files), `picture`, `tools`
//! (benchmarks, sample clouds). The core has no ROS in it; `node` is the node's ROS-free
//! message layer and `ros` the thin r2r adapter behind feature `ros`.

pub mod cloud;
pub mod dataset;
pub mod deploy;
pub mod embedding;
pub mod error;
pub mod eval;
pub mod geodesic;
pub mod matching;
pub mod model;
pub mod node;
pub mod picture;
pub mod pipeline;
pub mod pose;
#[cfg(feature = "ros")]
pub mod ros;
pub mod scene;
pub mod stats;
pub mod tools;
pub mod train;

pub use cloud::Cloud;
pub use error::{Error, Result};
