//! What the node does with one cloud, without ROS: decode, drop non-finite points, crop,
//! voxel filter, turn into the model's frame, the model's own preprocessing and forward
//! pass, template matching, and the outputs in the input frame.

use super::frame;
use super::params::{DeviceSpec, NodeParams};
use super::pointcloud2::{self, CorrespondencePoint, RawPointCloud2};
use crate::cloud::Cloud;
use crate::deploy::{DeployedModel, MatchParams, Matcher, Precision, Runtime};
use crate::error::{Error, Result};
use nalgebra::Vector3;
use std::time::{Duration, Instant};

/// The per-cloud settings, parsed once from the parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub crop_box: Option<[f32; 6]>,
    pub voxel_size: f32,
    pub up_axis: Vector3<f32>,
    pub face_sensor: bool,
    pub max_keypoints: usize,
    pub embedding_cloud: bool,
    pub score_threshold: f32,
}

impl Settings {
    pub fn from_params(p: &NodeParams) -> Result<Settings> {
        p.validate()?;
        let crop_box = match p.crop_box.as_slice() {
            [] => None,
            b if b.iter().all(|&v| v == 0.0) => None,
            b => Some(std::array::from_fn(|i| b[i] as f32)),
        };
        Ok(Settings {
            crop_box,
            voxel_size: p.voxel_size as f32,
            up_axis: frame::parse_axis(&p.up_axis)?,
            face_sensor: p.face_sensor,
            max_keypoints: p.max_keypoints as usize,
            embedding_cloud: p.publish_embedding_cloud,
            score_threshold: p.score_threshold as f32,
        })
    }
}

/// One published keypoint, in the input frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Correspondence {
    pub keypoint_id: u32,
    pub name: Option<String>,
    pub xyz: [f32; 3],
    pub score: f32,
    /// Index of the point in the message (row-major over height x width).
    pub message_index: usize,
}

/// Time spent in each stage of one cloud.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    pub decode: Duration,
    pub filter: Duration,
    /// Preprocessing and the forward pass.
    pub inference: Duration,
    pub matching: Duration,
}

/// Everything published for one cloud.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudResult {
    /// Accepted correspondences, best score first.
    pub correspondences: Vec<Correspondence>,
    /// `~/output/embedding_cloud` when enabled: the network's sample, in the input frame.
    pub embedding_cloud: Option<RawPointCloud2>,
    pub message_points: usize,
    pub dropped_non_finite: usize,
    /// Points left after crop and voxel filter (what the model's preprocessing saw).
    pub filtered_points: usize,
    /// Bounding-box diagonal of the filtered points (input units): sizes the markers.
    pub object_size: f32,
    pub times: StageTimes,
}

impl CloudResult {
    /// `~/output/correspondences`.
    pub fn correspondence_cloud(&self) -> RawPointCloud2 {
        let rows: Vec<CorrespondencePoint> = self
            .correspondences
            .iter()
            .map(|c| CorrespondencePoint {
                xyz: c.xyz,
                keypoint_id: c.keypoint_id,
                score: c.score,
            })
            .collect();
        pointcloud2::encode_correspondences(&rows)
    }
}

/// A loaded model; [`Settings`] come with each cloud so they can change at run time.
pub struct Pipeline {
    pub model: DeployedModel,
    /// Matching parameters other than the score threshold (a setting).
    pub match_params: MatchParams,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("model", &self.model)
            .field("match_params", &self.match_params)
            .finish()
    }
}

/// Fewer points than this after filtering is not an object.
pub const MIN_POINTS: usize = 16;

impl Pipeline {
    /// Validates the parameters and loads the model; every error names the parameter.
    pub fn new(p: &NodeParams) -> Result<Pipeline> {
        p.validate()?;
        let device = match p.device()? {
            DeviceSpec::Cpu => candle_core::Device::Cpu,
            DeviceSpec::Cuda(n) => candle_core::Device::new_cuda(n).map_err(|e| {
                Error::invalid(format!(
                    "parameter 'device': {} is unavailable ({e}); CUDA needs a build with \
                     --features cuda and a GPU",
                    p.device
                ))
            })?,
        };
        let runtime = match p.precision.as_str() {
            "auto" | "f32" => Runtime::Dequantized,
            _ => Runtime::Quantized,
        };
        let mut model = DeployedModel::load_on(&p.model_path, runtime, device).map_err(|e| {
            Error::invalid(format!(
                "parameter 'model_path': cannot load the model: {e}"
            ))
        })?;
        if runtime == Runtime::Quantized {
            let wanted: Precision = p.precision.parse()?;
            if wanted != model.precision {
                return Err(Error::invalid(format!(
                    "parameter 'precision': {wanted} asked, but {} holds {} weights (use auto \
                     or f32, or export the model in {wanted})",
                    p.model_path, model.precision
                )));
            }
        }
        if p.num_points > 0 {
            model.prepare.num_points = p.num_points as usize;
        }
        Ok(Pipeline {
            model,
            match_params: MatchParams::default(),
        })
    }

    /// Processes one message. Errors name what was wrong with it; the pipeline keeps no
    /// state between clouds, so an error never affects the next one.
    pub fn process(&self, msg: &RawPointCloud2, s: &Settings) -> Result<CloudResult> {
        let matcher = Matcher::new(MatchParams {
            min_score: s.score_threshold,
            ..self.match_params
        });
        let t0 = Instant::now();
        let decoded = pointcloud2::decode(msg)?;
        let message_points = msg.width as usize * msg.height as usize;
        let t1 = Instant::now();
        // `index` maps each filtered point to its point in the message.
        let mut cloud = decoded.cloud;
        let mut index = decoded.source_index;
        if let Some(bounds) = &s.crop_box {
            let (c, kept) = super::filters::crop(&cloud, bounds);
            index = kept.iter().map(|&i| index[i]).collect();
            cloud = c;
        }
        if s.voxel_size > 0.0 {
            let (c, kept) = super::filters::voxel_downsample(&cloud, s.voxel_size);
            index = kept.iter().map(|&i| index[i]).collect();
            cloud = c;
        }
        if cloud.len() < MIN_POINTS {
            return Err(Error::invalid(format!(
                "PointCloud2: {} usable points of {message_points} ({} not finite{}); at \
                 least {MIN_POINTS} needed",
                cloud.len(),
                decoded.dropped_non_finite,
                if s.crop_box.is_some() || s.voxel_size > 0.0 {
                    ", after crop_box and voxel_size"
                } else {
                    ""
                }
            )));
        }
        let rotation = frame::model_rotation(&s.up_axis, &cloud, s.face_sensor);
        let model_frame = frame::rotate(&cloud, &rotation);
        let t2 = Instant::now();
        let (prepared, emb) = self.model.embed(&model_frame)?;
        let t3 = Instant::now();
        let matches = matcher.match_prepared(&self.model.templates, &model_frame, &prepared, &emb);
        let mut correspondences: Vec<Correspondence> = matches
            .into_iter()
            .filter(|m| m.accepted)
            .map(|m| Correspondence {
                keypoint_id: m.semantic_id,
                name: m.name,
                xyz: cloud.points[m.index],
                score: m.score.clamp(0.0, 1.0),
                message_index: index[m.index],
            })
            .collect();
        correspondences.sort_by(|a, b| b.score.total_cmp(&a.score));
        if s.max_keypoints > 0 {
            correspondences.truncate(s.max_keypoints);
        }
        let embedding_cloud = s.embedding_cloud.then(|| {
            let points: Vec<[f32; 3]> = prepared
                .source_index
                .iter()
                .map(|&i| cloud.points[i])
                .collect();
            pointcloud2::encode_xyzrgb(&points, &crate::deploy::render::pca_colors(&emb))
        });
        let t4 = Instant::now();
        Ok(CloudResult {
            correspondences,
            embedding_cloud,
            message_points,
            dropped_non_finite: decoded.dropped_non_finite,
            filtered_points: cloud.len(),
            object_size: {
                let (lo, hi) = cloud.bounds();
                crate::cloud::dist2(&lo, &hi).sqrt()
            },
            times: StageTimes {
                decode: t1 - t0,
                filter: t2 - t1,
                inference: t3 - t2,
                matching: t4 - t3,
            },
        })
    }
}

/// Builds a `Cloud` as a PointCloud2 (x, y, z FLOAT32), e.g. for tests and benchmarks.
pub fn cloud_message(cloud: &Cloud) -> RawPointCloud2 {
    pointcloud2::encode_xyz(&cloud.points)
}
