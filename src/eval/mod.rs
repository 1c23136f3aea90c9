//! Evaluation: mean geodesic error (mGE) and PCK as the reference
//! computes them, and the baselines every trained network is compared with (random
//! embeddings, normalised coordinates, FPFH).

mod baselines;
mod fpfh;
mod mge;
mod report;

pub use baselines::{Baseline, RandomEmbedder, XyzEmbedder};
pub use fpfh::{estimate_normals, fpfh_features, FpfhEmbedder, FPFH_DIM};
pub use mge::{evaluate, evaluate_models, evaluate_models_posed, Posing, PCK_THRESHOLDS};
pub use report::{CategoryReport, EvalReport};
