//! One message through the pipeline: decode the PointCloud2, run [`Pipeline::process`],
//! encode what the node publishes. The r2r adapter only copies bytes in and out.

use super::pointcloud2::{self, CorrespondencePoint, RawPointCloud2};
use crate::error::Result;
use crate::pipeline::{CloudResult, Pipeline, Settings};
use std::time::Instant;

/// What the node publishes for one message (besides markers, which keep state).
#[derive(Debug, Clone, PartialEq)]
pub struct MessageOutput {
    pub result: CloudResult,
    /// `~/output/correspondences`.
    pub correspondences: RawPointCloud2,
    /// `~/output/embedding_cloud`, when enabled: the network's sample, in the input frame.
    pub embedding_cloud: Option<RawPointCloud2>,
}

/// Decodes `msg` and runs the pipeline on it. Errors name what was wrong with the message.
pub fn process_message(
    pipeline: &Pipeline,
    msg: &RawPointCloud2,
    s: &Settings,
) -> Result<MessageOutput> {
    let t0 = Instant::now();
    let cloud = pointcloud2::decode(msg)?;
    let decode = t0.elapsed();
    let mut result = pipeline
        .process(&cloud, s)
        .map_err(|e| crate::error::Error::invalid(format!("PointCloud2: {e}")))?;
    result.times.decode = decode;
    let rows: Vec<CorrespondencePoint> = result
        .correspondences
        .iter()
        .map(|c| CorrespondencePoint {
            xyz: c.xyz,
            keypoint_id: c.keypoint_id,
            score: c.score,
        })
        .collect();
    let embedding_cloud = s.embedding_cloud.then(|| {
        let (points, colors) = result.embedded_sample();
        pointcloud2::encode_xyzrgb(&points, &colors)
    });
    Ok(MessageOutput {
        correspondences: pointcloud2::encode_correspondences(&rows),
        embedding_cloud,
        result,
    })
}
