//! The one per-cloud pipeline, without ROS: drop non-finite points, range limit, crop,
//! voxel filter; the scene stage (support plane, up, objects on it; or the whole cloud as
//! one object); per object, every model's frame, preprocessing, network and matching, the
//! category by match quality and the pose ([`objects`]); results in the input frame.
//! `semcorr_node` (through [`crate::node::process`]), `semcorr infer` and `semcorr bench
//! node` all call [`Pipeline::process`] with [`Settings`] made from the same
//! [`NodeParams`], so what a user tries on a file is what the robot does.

pub mod filters;
pub mod frame;
pub mod gate;
pub mod objects;
pub mod params;

pub use objects::{frame_name, CategoryScore, Classified, ObjectPose, ObjectResult, PoseSource};
pub use params::{NodeParams, ParamValue, PARAMS};

use crate::cloud::rotation::rotate_cloud;
use crate::cloud::{Cloud, PrepareConfig, Prepared};
use crate::deploy::classifier::ObjectClassifier;
use crate::deploy::{DeployedModel, Runtime};
use crate::error::{Error, Result};
use crate::matching::{MatchParams, Matcher};
use crate::pose::PoseParams;
use crate::scene::{self, Rejections, SceneParams, UpSearch};
use gate::CategoryGate;
use nalgebra::Vector3;
use objects::Candidate;
use params::{DeviceChoice, PrecisionChoice, UpSetting};
use serde::Serialize;
use std::time::{Duration, Instant};

/// The per-cloud settings, parsed once from the parameters; they may change between
/// clouds (`ros2 param set`), the loaded models may not.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub crop_box: Option<[f32; 6]>,
    pub voxel_size: f32,
    /// 0 = no limit.
    pub max_range: f32,
    /// How up is found: from the plane (`auto`) or near a configured axis.
    pub up: UpSearch,
    /// `None`: the whole cloud is one object (`segment_scene: false`).
    pub scene: Option<SceneParams>,
    pub face_sensor: bool,
    pub max_keypoints: usize,
    pub embedding_cloud: bool,
    pub score_threshold: f32,
    pub min_object_score: f32,
    /// With a classifier: its probability that vouches for an object alone (0 = never).
    pub min_class_probability: f32,
    /// Yaws tried per object and model before its forward pass (the shape test of
    /// [`crate::deploy::YawSearch`]); 1 = none.
    pub yaw_hypotheses: usize,
    /// A model runs on an object only when its shape agreement is within this of the best
    /// model's ([`gate`]); 1 = every model on every object.
    pub category_gate: f32,
    pub pose: PoseParams,
    /// Outputs: a `/tf` frame per detection, named with this prefix.
    pub publish_tf: bool,
    pub tf_prefix: String,
}

impl Settings {
    pub fn from_params(p: &NodeParams) -> Result<Settings> {
        p.validate()?;
        Ok(Settings {
            crop_box: p.crop_bounds()?,
            voxel_size: p.voxel_size as f32,
            max_range: p.max_range as f32,
            up: match p.up_axis {
                UpSetting::Auto => UpSearch::Auto {
                    fallback: p.fallback_up_axis.vector(),
                },
                UpSetting::Axis(a) => UpSearch::Near(a.vector()),
            },
            scene: p.segment_scene.then(|| p.scene_params()),
            face_sensor: p.face_sensor,
            max_keypoints: p.max_keypoints as usize,
            embedding_cloud: p.publish_embedding_cloud,
            score_threshold: p.score_threshold as f32,
            min_object_score: p.min_object_score as f32,
            min_class_probability: p.min_class_probability as f32,
            yaw_hypotheses: p.yaw_hypotheses as usize,
            category_gate: p.category_gate as f32,
            pose: PoseParams::default(),
            publish_tf: p.publish_tf,
            tf_prefix: p.tf_prefix.clone(),
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
    /// Non-finite drop, range, crop, voxel.
    pub filter: Duration,
    /// Support plane and clusters.
    pub scene: Duration,
    /// Frames, preprocessing and the forward passes of every model.
    pub inference: Duration,
    /// Matching, category choice and pose.
    pub matching: Duration,
}

impl StageTimes {
    pub fn total(&self) -> Duration {
        self.decode + self.filter + self.scene + self.inference + self.matching
    }
}

/// Where the up direction of a cloud came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpSource {
    /// The support plane's normal.
    Plane,
    /// `auto` found no plane: `fallback_up_axis`, a guess (poses are then full
    /// similarities).
    Fallback,
    /// The configured axis (no plane near it, or `segment_scene: false`).
    Configured,
}

/// The support plane, `n . p + offset = 0` with `n` toward the sensor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PlaneReport {
    pub normal: [f32; 3],
    pub offset: f32,
    pub inliers: usize,
}

/// What the scene stage found, for diagnostics and `infer`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SceneReport {
    pub segmented: bool,
    pub plane: Option<PlaneReport>,
    pub up: [f32; 3],
    pub up_source: UpSource,
    /// Clusters kept as object candidates, and those refused (by size, extent, count).
    pub candidates: usize,
    #[serde(skip)]
    pub rejected: Rejections,
}

impl SceneReport {
    /// One line for diagnostics and logs: plane, up, objects, what was refused.
    pub fn summary(&self, detected: usize) -> String {
        let plane = match (&self.plane, self.segmented) {
            (_, false) => "no scene segmentation".to_string(),
            (Some(p), _) => format!("plane found ({} points)", p.inliers),
            (None, _) => "no plane found".to_string(),
        };
        let up = match self.up_source {
            UpSource::Plane => "up from the plane",
            UpSource::Fallback => "up = fallback_up_axis",
            UpSource::Configured => "up = up_axis",
        };
        let r = &self.rejected;
        let mut refused = Vec::new();
        for (n, why) in [
            (r.too_many_points, "over max_cluster_points"),
            (r.too_large, "over max_object_extent"),
            (r.over_max_objects, "beyond max_objects"),
        ] {
            if n > 0 {
                refused.push(format!("{n} {why}"));
            }
        }
        let refused = if refused.is_empty() {
            String::new()
        } else {
            format!("; clusters refused: {}", refused.join(", "))
        };
        format!(
            "{plane}, {up}; {} candidates, {detected} detected{refused}",
            self.candidates
        )
    }
}

/// Everything the pipeline found in one cloud.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudResult {
    /// Object candidates, nearest the sensor first; recognised ones are the detections.
    pub objects: Vec<ObjectResult>,
    pub scene: SceneReport,
    /// The points after filtering, in the input frame.
    pub filtered: Cloud,
    /// For each point of `filtered`, its index in the input.
    pub input_index: Vec<usize>,
    pub input_points: usize,
    pub dropped_non_finite: usize,
    pub times: StageTimes,
}

impl CloudResult {
    /// The detections (recognised objects) with their index, the published `id`.
    pub fn detections(&self) -> impl Iterator<Item = (u32, &ObjectResult)> {
        self.objects
            .iter()
            .filter(|o| o.category.is_some())
            .enumerate()
            .map(|(i, o)| (i as u32, o))
    }

    /// Every published correspondence with its detection's index.
    pub fn correspondences(&self) -> Vec<(u32, &Correspondence)> {
        self.detections()
            .flat_map(|(id, o)| o.correspondences.iter().map(move |c| (id, c)))
            .collect()
    }

    /// The networks' samples of the detections in the input frame, with a colour per
    /// point from its embedding (the node's `~/output/embedding_cloud`).
    pub fn embedded_sample(&self) -> (Vec<[f32; 3]>, Vec<[u8; 3]>) {
        let (mut points, mut colors) = (Vec::new(), Vec::new());
        for (_, o) in self.detections() {
            let Some((prepared, embeddings)) = &o.embedded else {
                continue;
            };
            points.extend(
                prepared
                    .source_index
                    .iter()
                    .map(|&i| self.filtered.points[o.indices[i]]),
            );
            colors.extend(crate::picture::pca_colors(embeddings));
        }
        (points, colors)
    }
}

/// The loaded models and the matcher; [`Settings`] come with each cloud.
pub struct Pipeline {
    /// One per `model_paths` entry, in that order.
    pub models: Vec<DeployedModel>,
    /// The files they came from.
    pub model_paths: Vec<String>,
    /// Matching parameters other than the score threshold (a setting).
    pub match_params: MatchParams,
    /// Said once at start-up (a model without canonical positions has no pose).
    pub warnings: Vec<String>,
    /// Decides each object's category and yaw before the models (`classifier_path`).
    pub classifier: Option<ObjectClassifier>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("models", &self.models)
            .field("match_params", &self.match_params)
            .finish()
    }
}

/// Fewer points than this after filtering is not an object.
pub const MIN_POINTS: usize = 16;

/// The pipeline's stages before any network: the filtered cloud and the objects on it.
pub struct Segmented {
    pub filtered: Cloud,
    /// Per filtered point, its index in the input.
    pub input_index: Vec<usize>,
    pub input_points: usize,
    pub dropped_non_finite: usize,
    /// Each object's points, in the input frame and in the models' frame.
    pub candidates: Vec<Candidate>,
    pub report: SceneReport,
    pub filter_time: Duration,
    pub scene_time: Duration,
}

/// Filters `input` and finds the objects on its support plane, as [`Pipeline::process`]
/// does before its models run; the classifier's trainer reads scenes through it too.
pub fn segment(input: &Cloud, s: &Settings) -> Result<Segmented> {
    let t0 = Instant::now();
    let input_points = input.len();
    let (filtered, input_index, dropped_non_finite) = filters::apply(input, s);
    if filtered.len() < MIN_POINTS {
        return Err(Error::invalid(format!(
            "{} usable points of {input_points} ({dropped_non_finite} not finite{}); \
             at least {MIN_POINTS} needed",
            filtered.len(),
            if s.crop_box.is_some() || s.voxel_size > 0.0 || s.max_range > 0.0 {
                ", after max_range, crop_box and voxel_size"
            } else {
                ""
            }
        )));
    }
    let t1 = Instant::now();
    // A depth image's points are clustered on the image (the voxel grid's centroids are
    // no longer pixels).
    let grid = match input.organised {
        Some(o) if s.voxel_size <= 0.0 => Some(scene::PixelGrid {
            width: o.width,
            height: o.height,
            pixel: &input_index,
        }),
        _ => None,
    };
    let (clusters, report) = find_objects(&filtered, grid, s);
    let up = Vector3::from(report.up);
    let candidates = clusters
        .into_iter()
        .map(|indices| Candidate::new(&filtered, indices, &up, s))
        .collect();
    let t2 = Instant::now();
    Ok(Segmented {
        filtered,
        input_index,
        input_points,
        dropped_non_finite,
        candidates,
        report,
        filter_time: t1 - t0,
        scene_time: t2 - t1,
    })
}

/// The scene stage: object candidates (indices into `filtered`) and what was found.
fn find_objects(
    filtered: &Cloud,
    grid: Option<scene::PixelGrid<'_>>,
    s: &Settings,
) -> (Vec<Vec<usize>>, SceneReport) {
    let Some(params) = &s.scene else {
        let UpSearch::Near(axis) = s.up else {
            unreachable!("validation refuses up_axis auto without segment_scene")
        };
        let report = SceneReport {
            segmented: false,
            plane: None,
            up: axis.normalize().into(),
            up_source: UpSource::Configured,
            candidates: 1,
            rejected: Rejections::default(),
        };
        return (vec![(0..filtered.len()).collect()], report);
    };
    let found = scene::segment(filtered, params, s.up, grid);
    let up_source = match (&found.plane, s.up) {
        (Some(_), _) => UpSource::Plane,
        (None, UpSearch::Auto { .. }) => UpSource::Fallback,
        (None, UpSearch::Near(_)) => UpSource::Configured,
    };
    let report = SceneReport {
        segmented: true,
        plane: found.plane.as_ref().map(|p| PlaneReport {
            normal: p.normal.into(),
            offset: p.offset,
            inliers: p.inliers.len(),
        }),
        up: found.up.into(),
        up_source,
        candidates: found.objects.len(),
        rejected: found.rejected,
    };
    (
        found.objects.into_iter().map(|o| o.indices).collect(),
        report,
    )
}

impl Pipeline {
    /// Validates the parameters and loads the models; every error names the parameter.
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
        let mut models = Vec::new();
        let mut warnings = Vec::new();
        let paths = p.resolved_model_paths();
        for path in &paths {
            let shown = path.display();
            let mut model = DeployedModel::load_on(path, runtime, device.clone()).map_err(|e| {
                Error::invalid(format!("parameter 'model_paths': cannot load {shown}: {e}"))
            })?;
            if let PrecisionChoice::Fixed(wanted) = p.precision {
                if runtime == Runtime::Quantized && wanted != model.precision {
                    return Err(Error::invalid(format!(
                        "parameter 'precision': {wanted} asked, but {shown} holds {} weights \
                         (use auto or f32, or export the model in {wanted})",
                        model.precision
                    )));
                }
            }
            if p.num_points > 0 {
                model.prepare.num_points = p.num_points as usize;
            }
            if model
                .templates
                .templates
                .iter()
                .any(|t| t.position.is_none())
            {
                warnings.push(format!(
                    "{shown}: its templates have no canonical positions (a file from before \
                     poses): objects of '{}' get the cluster's box instead of a fitted pose \
                     (re-export or `semcorr templates` to add them)",
                    model.category.name
                ));
            }
            models.push(model);
        }
        let classifier = match p.resolved_classifier_path() {
            None => None,
            Some(path) => {
                let c = ObjectClassifier::load(&path).map_err(|e| {
                    Error::invalid(format!(
                        "parameter 'classifier_path': cannot load {}: {e}",
                        path.display()
                    ))
                })?;
                for m in &models {
                    if !c.config.categories.contains(&m.category.name) {
                        warnings.push(format!(
                            "the classifier does not know '{}' (it knows {}): that model runs \
                             on every object, as it faces the sensor",
                            m.category.name,
                            c.config.categories.join(", ")
                        ));
                    }
                }
                Some(c)
            }
        };
        Ok(Pipeline {
            models,
            model_paths: paths.iter().map(|p| p.display().to_string()).collect(),
            match_params: MatchParams::default(),
            warnings,
            classifier,
        })
    }

    /// Processes one cloud in its input frame; it may hold NaN or infinite points (depth
    /// cameras' holes), which are dropped first. Errors say what was wrong with the cloud
    /// (too few usable points); a scene without a plane or objects is a result, not an
    /// error. The pipeline keeps no state between clouds, so nothing affects the next.
    pub fn process(&self, input: &Cloud, s: &Settings) -> Result<CloudResult> {
        let Segmented {
            filtered,
            input_index,
            input_points,
            dropped_non_finite,
            candidates,
            report,
            filter_time,
            scene_time,
        } = segment(input, s)?;
        let up = Vector3::from(report.up);
        let up_known = report.up_source != UpSource::Fallback;
        let t2 = Instant::now();
        // Objects the network can read; smaller ones are reported unrecognised.
        let big: Vec<usize> = (0..candidates.len())
            .filter(|&i| candidates[i].cloud.len() >= MIN_POINTS)
            .collect();
        let clouds: Vec<Cloud> = big
            .iter()
            .map(|&i| candidates[i].model_frame.clone())
            .collect();
        // Which models run on which object, and turned by which yaw: the classifier's
        // verdict, or without one the gate's shape test, before any forward pass.
        let gate = CategoryGate::decide(&self.models, &clouds, s, self.classifier.as_ref())?;
        // [model][object]; the chosen model's entry is moved into the object's result.
        let mut embedded: Vec<Vec<Option<_>>> = Vec::with_capacity(self.models.len());
        // Farthest-point sampling of a dense object costs about half a forward pass, so
        // models that prepare alike share one preparation of the same clouds.
        let mut shared: Vec<(PrepareConfig, Vec<Option<Prepared>>)> = Vec::new();
        for (m, model) in self.models.iter().enumerate() {
            let runs: Vec<usize> = (0..clouds.len()).filter(|&o| gate.runs(m, o)).collect();
            let prepared = if gate.turns() {
                // Each model sees each object turned as the gate says (turning keeps
                // point order, so matches still index the object's points).
                let turned: Vec<Cloud> = runs
                    .iter()
                    .map(|&o| {
                        let mut c = clouds[o].clone();
                        rotate_cloud(&mut c, gate.turn(m, o));
                        c
                    })
                    .collect();
                model.prepare_batch(&turned)?
            } else {
                let k = match shared.iter().position(|(c, _)| *c == model.prepare) {
                    Some(k) => k,
                    None => {
                        shared.push((model.prepare, vec![None; clouds.len()]));
                        shared.len() - 1
                    }
                };
                let cache = &mut shared[k].1;
                let missing: Vec<usize> = runs
                    .iter()
                    .copied()
                    .filter(|&o| cache[o].is_none())
                    .collect();
                let fresh: Vec<&Cloud> = missing.iter().map(|&o| &clouds[o]).collect();
                for (o, p) in missing.into_iter().zip(model.prepare_batch(&fresh)?) {
                    cache[o] = Some(p);
                }
                runs.iter()
                    .map(|&o| cache[o].clone().expect("prepared above"))
                    .collect()
            };
            let mut row: Vec<Option<_>> = vec![None; clouds.len()];
            for (o, e) in runs.into_iter().zip(model.forward_prepared(prepared)?) {
                row[o] = Some(e);
            }
            embedded.push(row);
        }
        let t3 = Instant::now();
        let matcher = Matcher::new(MatchParams {
            min_score: s.score_threshold,
            ..self.match_params
        });
        let motion = objects::motion(up, up_known);
        let mut results = Vec::with_capacity(candidates.len());
        for (i, candidate) in candidates.into_iter().enumerate() {
            let Some(slot) = big.iter().position(|&b| b == i) else {
                results.push(too_small(candidate));
                continue;
            };
            // (model index, its reading) for the models the gate let run on this object.
            let readings: Vec<(usize, objects::Reading)> = self
                .models
                .iter()
                .zip(&embedded)
                .enumerate()
                .filter_map(|(m, (model, e))| {
                    let e = e[slot].as_ref()?;
                    Some((m, objects::read(model, &matcher, &candidate, e, motion, s)))
                })
                .collect();
            let by_quality = (0..readings.len())
                .max_by(|&a, &b| {
                    let score = |k: usize| readings[k].1.score.score;
                    score(a).total_cmp(&score(b))
                })
                .expect("the gate runs at least one model");
            let quality = readings[by_quality].1.score.score;
            let matched = quality >= s.min_object_score && quality > 0.0;
            // A classifier sure of a category may vouch for an object whose keypoints match
            // too poorly (`min_class_probability`, off by default), unless that category's
            // size rules it out: detected, with the cluster's box, without keypoints.
            let classified = gate.classified(slot);
            let vouched = classified
                .as_ref()
                .filter(|c| {
                    !matched
                        && s.min_class_probability > 0.0
                        && c.probability >= s.min_class_probability
                })
                .and_then(|c| {
                    readings
                        .iter()
                        .position(|(_, r)| r.score.category == c.category && r.refused.is_none())
                });
            let pick = vouched.unwrap_or(by_quality);
            let best = readings[pick].0;
            let reading = &readings[pick].1;
            let score = reading.score.score;
            let recognised = matched || vouched.is_some();
            // The best model's size verdict says more than its zero score.
            let why_not = || match &reading.refused {
                Some(why) => why.clone(),
                None => format!(
                    "best match quality {score:.2} ({}) is below min_object_score {:.2}",
                    reading.score.category, s.min_object_score
                ),
            };
            let correspondences = if matched {
                objects::correspondences(reading, &candidate.indices, &input_index, s)
            } else {
                Vec::new()
            };
            // A vouched object's few matches do not make a pose: its box is the cluster's.
            let fitted = reading.pose.as_ref().filter(|_| matched);
            let pose = objects::object_pose(&candidate, fitted);
            results.push(ObjectResult {
                category: recognised.then(|| reading.score.category.clone()),
                model: best,
                score,
                unrecognised: (!recognised).then(why_not),
                classified,
                candidates: readings.iter().map(|(_, r)| r.score.clone()).collect(),
                centroid: candidate.cloud.centroid(),
                indices: candidate.indices.clone(),
                pose,
                correspondences,
                matches: readings
                    .into_iter()
                    .nth(pick)
                    .expect("pick exists")
                    .1
                    .matches,
                model_frame: candidate.model_frame,
                embedded: embedded[best][slot].take(),
            });
        }
        let t4 = Instant::now();
        Ok(CloudResult {
            objects: results,
            scene: report,
            filtered,
            input_index,
            input_points,
            dropped_non_finite,
            times: StageTimes {
                decode: Duration::ZERO,
                filter: filter_time,
                scene: scene_time,
                inference: t3 - t2,
                matching: t4 - t3,
            },
        })
    }
}

/// A candidate too small for the network: reported, never published.
fn too_small(candidate: Candidate) -> ObjectResult {
    ObjectResult {
        category: None,
        model: 0,
        score: 0.0,
        candidates: Vec::new(),
        unrecognised: Some(format!(
            "{} points; at least {MIN_POINTS} needed",
            candidate.cloud.len()
        )),
        classified: None,
        centroid: candidate.cloud.centroid(),
        pose: objects::object_pose(&candidate, None),
        indices: candidate.indices,
        correspondences: Vec::new(),
        matches: Vec::new(),
        model_frame: candidate.model_frame,
        embedded: None,
    }
}
