//! semcorr: per-point semantic embeddings learned from human-labelled correspondences
//! (the geodesic-consistency method of CPNet), evaluated by mean geodesic error (mGE).
//!
//! One data path, read top to bottom:
//! `Cloud` (PCD/PLY/dataset) -> normalised, sampled points -> embeddings -> matches.
//! The core has no ROS in it; the ROS 2 node is a thin adapter behind feature `ros`.

pub mod bench;
pub mod cloud;
pub mod dataset;
pub mod deploy;
pub mod error;
pub mod eval;
pub mod geodesic;
pub mod model;
pub mod node;
pub mod plot;
#[cfg(feature = "ros")]
pub mod ros;
pub mod train;

pub use cloud::Cloud;
pub use error::{Error, Result};
