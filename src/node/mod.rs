//! The ROS-free core of `semcorr_node`: the PointCloud2 wire codec (and, next, parameters,
//! the pipeline and statistics). The r2r adapter behind feature `ros` only converts
//! messages to and from these types.

pub mod params;
pub mod pointcloud2;
pub mod stats;
