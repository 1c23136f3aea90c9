//! The r2r adapter of `semcorr_node` (feature `ros`): converts messages to and from the
//! ROS-free core in [`crate::node`], holds the parameters and publishes. Nothing here
//! decides anything about clouds.

mod convert;
mod node;
mod params;

pub use node::run;
