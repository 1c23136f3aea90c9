//! The one per-cloud pipeline, without ROS: drop non-finite points, crop, voxel filter,
//! turn into the model's frame, the model's own preprocessing and forward pass, template
//! matching, and the results in the input frame. `semcorr_node` (through
//! [`crate::node::process`]), `semcorr infer` and `semcorr bench node` all call
//! [`Pipeline::process`] with [`Settings`] made from the same [`NodeParams`], so what a
//! user tries on a file is what the robot does.

pub mod filters;
pub mod frame;
pub mod params;

pub use params::{NodeParams, ParamValue, PARAMS};

use crate::cloud::{Cloud, Prepared};
use crate::deploy::{DeployedModel, Runtime};
use crate::embedding::Embeddings;
use crate::error::{Error, Result};
use crate::matching::{KeypointMatch, MatchParams, Matcher};
use nalgebra::Vector3;
use params::{DeviceChoice, PrecisionChoice};
use serde::Serialize;
use std::time::{Duration, Instant};

/// The per-cloud settings, parsed once from the parameters; they may change between
/// clouds (`ros2 param set`), the loaded model may not.
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
        Ok(Settings {
            crop_box: p.crop_bounds()?,
            voxel_size: p.voxel_size as f32,
            up_axis: p.up_axis.vector(),
            face_sensor: p.face_sensor,
            max_keypoints: p.max_keypoints as usize,
            embedding_cloud: p.publish_embedding_cloud,
            score_threshold: p.score_threshold as f32,
        })
    }
}

/// One published keypoint, in the input frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Correspondence {
    pub keypoint_id: u32,
    pub name: Option<String>,
    pub xyz: [f32; 3],
    pub score: f32,
    /// Index of the point in the input (row-major over height x width when organised).
    pub input_index: usize,
}

/// Time spent in each stage of one cloud.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    /// Reading the input (decoding the message, reading the file); the caller's part.
    pub decode: Duration,
    pub filter: Duration,
    /// Preprocessing and the forward pass.
    pub inference: Duration,
    pub matching: Duration,
}

impl StageTimes {
    pub fn total(&self) -> Duration {
        self.decode + self.filter + self.inference + self.matching
    }
}

/// Everything the pipeline found in one cloud.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudResult {
    /// Accepted correspondences, best score first, at most `max_keypoints`: what the node
    /// publishes.
    pub correspondences: Vec<Correspondence>,
    /// Every template's match, accepted or not (with why not). `index` refers to
    /// `filtered`/`model_frame`; `xyz` is in the input frame.
    pub matches: Vec<KeypointMatch>,
    /// The points the model's preprocessing saw, in the input frame.
    pub filtered: Cloud,
    /// For each point of `filtered`, its index in the input.
    pub input_index: Vec<usize>,
    /// `filtered` turned into the model's frame (up = +y).
    pub model_frame: Cloud,
    /// The network's sample of `model_frame` and its embeddings.
    pub prepared: Prepared,
    pub embeddings: Embeddings,
    pub input_points: usize,
    pub dropped_non_finite: usize,
    /// Bounding-box diagonal of the filtered points (input units): sizes the markers.
    pub object_size: f32,
    pub times: StageTimes,
}

impl CloudResult {
    /// The network's sample in the input frame with a colour per point from its
    /// embedding (the node's `~/output/embedding_cloud`).
    pub fn embedded_sample(&self) -> (Vec<[f32; 3]>, Vec<[u8; 3]>) {
        let points = self
            .prepared
            .source_index
            .iter()
            .map(|&i| self.filtered.points[i])
            .collect();
        (points, crate::picture::pca_colors(&self.embeddings))
    }
}

/// A loaded model and its matcher; [`Settings`] come with each cloud.
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
        let device = match p.device {
            DeviceChoice::Cpu => candle_core::Device::Cpu,
            DeviceChoice::Cuda(n) => candle_core::Device::new_cuda(n).map_err(|e| {
                Error::invalid(format!(
                    "parameter 'device': {} is unavailable ({e}); CUDA needs a build with \
                     --features cuda and a GPU",
                    p.device
                ))
            })?,
        };
        let runtime = match p.precision {
            PrecisionChoice::Auto | PrecisionChoice::Fixed(crate::deploy::Precision::F32) => {
                Runtime::Dequantized
            }
            PrecisionChoice::Fixed(_) => Runtime::Quantized,
        };
        let mut model = DeployedModel::load_on(&p.model_path, runtime, device).map_err(|e| {
            Error::invalid(format!(
                "parameter 'model_path': cannot load the model: {e}"
            ))
        })?;
        if let PrecisionChoice::Fixed(wanted) = p.precision {
            if runtime == Runtime::Quantized && wanted != model.precision {
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

    /// Processes one cloud in its input frame; it may hold NaN or infinite points (depth
    /// cameras' holes), which are dropped first. Errors say what was wrong with the cloud;
    /// the pipeline keeps no state between clouds, so an error never affects the next one.
    pub fn process(&self, input: &Cloud, s: &Settings) -> Result<CloudResult> {
        let t0 = Instant::now();
        let input_points = input.len();
        // `index` maps each filtered point to its point in the input.
        let (mut cloud, mut index) = input.finite_points();
        let dropped_non_finite = input_points - cloud.len();
        if let Some(bounds) = &s.crop_box {
            let (c, kept) = filters::crop(&cloud, bounds);
            index = kept.iter().map(|&i| index[i]).collect();
            cloud = c;
        }
        if s.voxel_size > 0.0 {
            let (c, kept) = filters::voxel_downsample(&cloud, s.voxel_size);
            index = kept.iter().map(|&i| index[i]).collect();
            cloud = c;
        }
        if cloud.len() < MIN_POINTS {
            return Err(Error::invalid(format!(
                "{} usable points of {input_points} ({dropped_non_finite} not finite{}); \
                 at least {MIN_POINTS} needed",
                cloud.len(),
                if s.crop_box.is_some() || s.voxel_size > 0.0 {
                    ", after crop_box and voxel_size"
                } else {
                    ""
                }
            )));
        }
        let rotation = frame::model_rotation(&s.up_axis, &cloud, s.face_sensor);
        let model_frame = frame::rotate(&cloud, &rotation);
        let t1 = Instant::now();
        let (prepared, embeddings) = self.model.embed(&model_frame)?;
        let t2 = Instant::now();
        let matcher = Matcher::new(MatchParams {
            min_score: s.score_threshold,
            ..self.match_params
        });
        let mut matches =
            matcher.match_prepared(&self.model.templates, &model_frame, &prepared, &embeddings);
        for m in &mut matches {
            m.xyz = cloud.points[m.index];
        }
        let mut correspondences: Vec<Correspondence> = matches
            .iter()
            .filter(|m| m.accepted)
            .map(|m| Correspondence {
                keypoint_id: m.semantic_id,
                name: m.name.clone(),
                xyz: m.xyz,
                score: m.score.clamp(0.0, 1.0),
                input_index: index[m.index],
            })
            .collect();
        correspondences.sort_by(|a, b| b.score.total_cmp(&a.score));
        if s.max_keypoints > 0 {
            correspondences.truncate(s.max_keypoints);
        }
        let (lo, hi) = cloud.bounds();
        let t3 = Instant::now();
        Ok(CloudResult {
            correspondences,
            matches,
            object_size: crate::cloud::dist2(&lo, &hi).sqrt(),
            filtered: cloud,
            input_index: index,
            model_frame,
            prepared,
            embeddings,
            input_points,
            dropped_non_finite,
            times: StageTimes {
                decode: Duration::ZERO,
                filter: t1 - t0,
                inference: t2 - t1,
                matching: t3 - t2,
            },
        })
    }
}
