//! One message through the pipeline: decode the PointCloud2, run [`Pipeline::process`],
//! turn the result into what the node publishes. The r2r adapter only copies these plain
//! values into ROS messages.

use super::pointcloud2::{self, CorrespondencePoint, RawPointCloud2};
use crate::error::Result;
use crate::pipeline::{frame_name, CloudResult, Pipeline, Settings};
use std::time::Instant;

/// One `vision_msgs/Detection3D`: `results[0].hypothesis` = (`class_id`, `score`),
/// `results[0].pose.pose` = `bbox.center` = the object's pose, `bbox.size` = `size`.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionSpec {
    /// The detection's index as text (`Detection3D.id` is a string).
    pub id: String,
    pub class_id: String,
    pub score: f64,
    pub position: [f64; 3],
    /// `[x, y, z, w]`.
    pub orientation: [f64; 4],
    pub size: [f64; 3],
}

/// One `geometry_msgs/TransformStamped` on `/tf`: parent = the input's frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameSpec {
    pub child_frame_id: String,
    pub translation: [f64; 3],
    /// `[x, y, z, w]`.
    pub rotation: [f64; 4],
}

/// What the node publishes for one message (besides markers, which keep state).
#[derive(Debug, Clone, PartialEq)]
pub struct MessageOutput {
    pub result: CloudResult,
    /// `~/output/correspondences`.
    pub correspondences: RawPointCloud2,
    /// `~/output/detections`, one per recognised object.
    pub detections: Vec<DetectionSpec>,
    /// `/tf` frames, one per detection (empty when `publish_tf` is off).
    pub frames: Vec<FrameSpec>,
    /// `~/output/embedding_cloud`, when enabled: the networks' samples, input frame.
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
        .correspondences()
        .into_iter()
        .map(|(object_id, c)| CorrespondencePoint {
            xyz: c.xyz,
            keypoint_id: c.keypoint_id,
            score: c.score,
            object_id,
        })
        .collect();
    let mut detections = Vec::new();
    let mut frames = Vec::new();
    for (id, o) in result.detections() {
        let category = o.category.clone().unwrap_or_default();
        let position = o.pose.position.map(f64::from);
        let orientation = o.pose.orientation.map(f64::from);
        if s.publish_tf {
            frames.push(FrameSpec {
                child_frame_id: frame_name(&s.tf_prefix, &category, id as usize),
                translation: position,
                rotation: orientation,
            });
        }
        detections.push(DetectionSpec {
            id: id.to_string(),
            class_id: category,
            score: f64::from(o.score),
            position,
            orientation,
            size: o.pose.size.map(f64::from),
        });
    }
    let embedding_cloud = s.embedding_cloud.then(|| {
        let (points, colors) = result.embedded_sample();
        pointcloud2::encode_xyzrgb(&points, &colors)
    });
    Ok(MessageOutput {
        correspondences: pointcloud2::encode_correspondences(&rows),
        detections,
        frames,
        embedding_cloud,
        result,
    })
}
