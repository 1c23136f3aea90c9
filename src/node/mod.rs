//! The ROS-free core of `semcorr_node`: parameters, the PointCloud2 wire codec, input
//! filters and frames, the per-cloud pipeline, the newest-cloud mailbox, statistics and
//! the shapes of the markers and diagnostics. The r2r adapter (`crate::ros`, feature
//! `ros`) only converts these to and from ROS messages, holds parameters and publishes.

pub mod bench;
pub mod filters;
pub mod frame;
pub mod latest;
pub mod params;
pub mod pipeline;
pub mod pointcloud2;
pub mod report;
pub mod samples;
pub mod stats;

pub use latest::Latest;
pub use params::NodeParams;
pub use pipeline::{CloudResult, Correspondence, Pipeline};
