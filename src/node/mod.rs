//! The ROS-free core of `semcorr_node`: the PointCloud2 wire codec, one message through
//! the pipeline ([`process`]), the newest-cloud mailbox, statistics and the shapes of the
//! markers and diagnostics. The per-cloud work itself is [`crate::pipeline`]'s, shared with
//! `semcorr infer`. The r2r adapter (`crate::ros`, feature `ros`) only converts these to
//! and from ROS messages, holds parameters and publishes.

pub mod latest;
pub mod pointcloud2;
pub mod process;
pub mod report;
pub mod stats;

pub use latest::Latest;
pub use process::{process_message, MessageOutput};
