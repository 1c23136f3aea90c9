//! Pictures for humans: the colours of embeddings, the inference picture (`semcorr infer
//! --png`) and the font every picture's text uses (training curves too).

mod colors;
pub mod font;
mod inference;
mod scene;

pub use colors::{keypoint_color, pca_colors};
pub use inference::render_png;
pub use scene::render_scene_png;
