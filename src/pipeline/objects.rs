//! The per-object stage: one object's points through every loaded model (frame, the
//! model's preprocessing and network, matching), its category chosen by match quality,
//! and its pose fitted from the chosen model's correspondences.
//!
//! **Match quality** of an object under a model, in [0, 1]: the sum of the scores of the
//! *supported* matches divided by the model's number of templates. A match is supported
//! when the matcher accepts it (score, ratio test, pairwise geometry) and, for models that
//! carry canonical keypoint positions, when the pose fitted by RANSAC over the accepted
//! matches explains it (within `PoseParams::inlier_fraction` of the object's size). A mug
//! model on a bottle finds few templates that agree with one rigid placement of a mug, so
//! its quality stays low even where single matches score well. The object gets the
//! category of the best model; below `min_object_score` it is reported as unrecognised
//! and not published. Only supported matches are published as correspondences.

use super::{frame, Correspondence, Settings};
use crate::cloud::{Cloud, Prepared};
use crate::deploy::DeployedModel;
use crate::embedding::Embeddings;
use crate::matching::{KeypointMatch, Matcher};
use crate::pose::{fit_resting_pose, Motion, Pose};
use nalgebra::{Matrix3, Rotation3, UnitQuaternion, Vector3};
use serde::Serialize;

/// A cluster more than this many times the fitted object size across is not that object.
pub const MAX_EXTENT_OVER_SIZE: f32 = 1.5;

/// Along each axis of its fitted pose, a view spans at least this share of what the pose
/// gives the category's keypoints (the templates' canonical positions, scaled). A view
/// shows an object's full height and width and about half its depth (its near side), and
/// an image border can cut it; a view much thinner along any axis is not that object (a
/// flat patch of a room fitted as a jug 6 mm thick).
pub const MIN_EXTENT_SHARE: f32 = 0.15;

/// One model's verdict on one object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoryScore {
    pub category: String,
    /// Match quality (module doc).
    pub score: f32,
    /// Matches the matcher accepted, and of those, the ones the pose supports.
    pub accepted: usize,
    pub supported: usize,
}

/// Where an object's pose comes from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum PoseSource {
    /// Fitted to the correspondences: `scale` = the object's size (bounding-box diagonal,
    /// input units), `inliers` matches explained, `rms` their residual (input units).
    Keypoints {
        scale: f32,
        inliers: usize,
        rms: f32,
    },
    /// The model has no canonical positions or the fit failed: the cluster's box, upright
    /// and facing the sensor as the network saw it.
    Cluster,
}

/// An object's placement in the input frame. Axes follow REP-103: x forward (the
/// category's front), y left, z up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ObjectPose {
    pub position: [f32; 3],
    /// `[x, y, z, w]`.
    pub orientation: [f32; 4],
    /// Extent along the object's own x, y, z (a box centred on `position`).
    pub size: [f32; 3],
    #[serde(flatten)]
    pub source: PoseSource,
}

impl ObjectPose {
    pub fn rotation(&self) -> UnitQuaternion<f32> {
        let [x, y, z, w] = self.orientation;
        UnitQuaternion::from_quaternion(nalgebra::Quaternion::new(w, x, y, z))
    }
}

/// The classifier's reading of an object's view (`classifier_path`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classified {
    /// Its most likely category, and how likely.
    pub category: String,
    pub probability: f32,
    /// The object's turn about up from that category's canonical pose (degrees), and
    /// the probability mass around it: low when the view does not show it (a mug with
    /// its handle hidden; round categories have no yaw).
    pub yaw_deg: f32,
    pub yaw_confidence: f32,
    /// How far the object leans from the frame's up (degrees; the classifier's up head,
    /// 0 without one). Above [`crate::deploy::classifier::MIN_LEAN_DEG`] the models see
    /// it levelled.
    pub lean_deg: f32,
}

/// One object candidate after the per-object stage.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectResult {
    /// The chosen category, `None` when no model scored `min_object_score`.
    pub category: Option<String>,
    /// Index of the chosen (or, when unrecognised, the best) model in the pipeline.
    pub model: usize,
    /// The best model's match quality.
    pub score: f32,
    /// The verdict of every model the category gate let run, in the pipeline's model order.
    pub candidates: Vec<CategoryScore>,
    /// Why the object has no category (too few points, or the best score).
    pub unrecognised: Option<String>,
    /// The classifier's verdict, when there is a classifier.
    pub classified: Option<Classified>,
    /// Indices into [`super::CloudResult::filtered`].
    pub indices: Vec<usize>,
    /// Mean of the points, input frame.
    pub centroid: [f32; 3],
    pub pose: ObjectPose,
    /// Supported matches, best first, at most `max_keypoints`: what is published.
    pub correspondences: Vec<Correspondence>,
    /// Every template's match under the best model (`index` into `indices`).
    pub matches: Vec<KeypointMatch>,
    /// The object in the model's frame (up = +y, facing the sensor = +z).
    pub model_frame: Cloud,
    /// The best model's sample of `model_frame` and its embeddings (`None` when the
    /// object was too small for the network).
    pub embedded: Option<(Prepared, Embeddings)>,
}

/// One object's points, ready for the models.
pub struct Candidate {
    pub indices: Vec<usize>,
    /// Input frame.
    pub cloud: Cloud,
    /// Input -> model frame.
    pub rotation: Matrix3<f32>,
    pub model_frame: Cloud,
}

impl Candidate {
    pub fn new(filtered: &Cloud, indices: Vec<usize>, up: &Vector3<f32>, s: &Settings) -> Self {
        let cloud = filtered.select(&indices);
        let rotation = frame::model_rotation(up, &cloud, s.face_sensor);
        let model_frame = frame::rotate(&cloud, &rotation);
        Candidate {
            indices,
            cloud,
            rotation,
            model_frame,
        }
    }
}

/// One model's reading of one candidate.
pub(super) struct Reading {
    pub matches: Vec<KeypointMatch>,
    /// Indices into `matches` of the supported ones.
    pub supported: Vec<usize>,
    pub pose: Option<Pose>,
    pub score: CategoryScore,
    /// Why the model's category is ruled out whatever the score (its size range, or a view
    /// too thin for it).
    pub refused: Option<String>,
}

/// Matches `model`'s templates on a candidate and fits the pose.
pub(super) fn read(
    model: &DeployedModel,
    matcher: &Matcher,
    candidate: &Candidate,
    embedded: &(Prepared, Embeddings),
    motion: Motion,
    s: &Settings,
) -> Reading {
    let (prepared, embeddings) = embedded;
    let mut matches = matcher.match_prepared(
        &model.templates,
        &candidate.model_frame,
        prepared,
        embeddings,
    );
    for m in &mut matches {
        m.xyz = candidate.cloud.points[m.index];
    }
    let accepted: Vec<usize> = (0..matches.len())
        .filter(|&i| matches[i].accepted)
        .collect();
    let positioned: Vec<(usize, [f32; 3])> = accepted
        .iter()
        .filter_map(|&i| {
            let t = model
                .templates
                .templates
                .iter()
                .find(|t| t.semantic_id == matches[i].semantic_id)?;
            Some((i, t.position?))
        })
        .collect();
    let has_positions = model
        .templates
        .templates
        .iter()
        .all(|t| t.position.is_some());
    let mut refused = None;
    let (supported, pose) = if has_positions {
        let pairs: Vec<([f32; 3], [f32; 3])> = positioned
            .iter()
            .map(|&(i, canonical)| (canonical, matches[i].xyz))
            .collect();
        // A view of an object is no larger than the object: a pose whose size (the fitted
        // scale, the category's bounding-box diagonal) is well below the cluster's extent
        // explains a few matches on something else (a mug's keypoints on a box).
        let (lo, hi) = candidate.cloud.bounds();
        let extent = crate::cloud::dist2(&lo, &hi).sqrt();
        let fitted = fit_resting_pose(&pairs, motion, &s.pose, model.templates.rest);
        // A size the category never has, or a view thinner than the posed keypoints: the
        // closed-set model matched an object it does not know (the scale maps the
        // canonical diagonal of 1 to the object's).
        let refusal = fitted.as_ref().and_then(|pose| {
            outside_size_range(model, pose.scale)
                .or_else(|| too_thin(model, pose, &candidate.cloud.points))
        });
        match fitted {
            Some(pose) if extent > MAX_EXTENT_OVER_SIZE * pose.scale => (Vec::new(), None),
            Some(_) if refusal.is_some() => {
                refused = refusal;
                (Vec::new(), None)
            }
            Some(pose) => (
                pose.inliers.iter().map(|&k| positioned[k].0).collect(),
                Some(pose),
            ),
            None => (Vec::new(), None),
        }
    } else {
        (accepted.clone(), None)
    };
    let n = model.templates.templates.len().max(1) as f32;
    // `+ 0.0`: an empty f32 sum is -0.0.
    let score = supported
        .iter()
        .map(|&i| matches[i].score.clamp(0.0, 1.0))
        .sum::<f32>()
        / n
        + 0.0;
    Reading {
        score: CategoryScore {
            category: model.category.name.clone(),
            score,
            accepted: accepted.len(),
            supported: supported.len(),
        },
        matches,
        supported,
        pose,
        refused,
    }
}

/// Why a fitted size of `scale` (input units, metres) rules `model`'s category out, if it
/// does.
fn outside_size_range(model: &DeployedModel, scale: f32) -> Option<String> {
    let [lo, hi] = model.templates.size_range_m?;
    (!(lo..=hi).contains(&scale)).then(|| {
        let name = &model.category.name;
        format!(
            "fitted as a {name} it is {scale:.2} m across, outside the {name}'s {lo:.2}-{hi:.2} m"
        )
    })
}

/// Why the view `points` is too thin to be `model`'s category at `pose`, if it is
/// ([`MIN_EXTENT_SHARE`]).
fn too_thin(model: &DeployedModel, pose: &Pose, points: &[[f32; 3]]) -> Option<String> {
    let canonical: Vec<[f32; 3]> = model
        .templates
        .templates
        .iter()
        .filter_map(|t| t.position)
        .collect();
    thinner_than_keypoints(&canonical, pose, points).map(|why| {
        let name = &model.category.name;
        format!("fitted as a {name} {why}")
    })
}

/// [`too_thin`] for keypoints at `canonical` positions (the model frame).
fn thinner_than_keypoints(
    canonical: &[[f32; 3]],
    pose: &Pose,
    points: &[[f32; 3]],
) -> Option<String> {
    const AXES: [&str; 3] = ["side to side", "in height", "front to back"];
    (0..3).find_map(|k| {
        let span = |values: &mut dyn Iterator<Item = f32>| {
            let (lo, hi) = values.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
            hi - lo
        };
        let expected = span(&mut canonical.iter().map(|p| p[k])) * pose.scale;
        let axis = pose.rotation * Vector3::ith(k, 1.0);
        let seen = span(&mut points.iter().map(|p| Vector3::from(*p).dot(&axis)));
        (expected.is_finite() && seen < MIN_EXTENT_SHARE * expected).then(|| {
            format!(
                "its keypoints span {:.0} mm {}, the view only {:.0} mm",
                expected * 1e3,
                AXES[k],
                seen * 1e3
            )
        })
    })
}

/// The object's pose from the keypoint fit, or the cluster's box when there is none.
pub(super) fn object_pose(candidate: &Candidate, pose: Option<&Pose>) -> ObjectPose {
    let points = &candidate.cloud.points;
    match pose {
        Some(p) => {
            let q = p.object_orientation();
            let inverse = q.inverse();
            let mut half = [0.0f32; 3];
            for x in points {
                let local = inverse * (Vector3::from(*x) - p.translation);
                for k in 0..3 {
                    half[k] = half[k].max(local[k].abs());
                }
            }
            ObjectPose {
                position: p.translation.into(),
                orientation: [q.i, q.j, q.k, q.w],
                size: half.map(|h| 2.0 * h),
                source: PoseSource::Keypoints {
                    scale: p.scale,
                    inliers: p.inliers.len(),
                    rms: p.rms,
                },
            }
        }
        None => {
            // Rows of `rotation` are the model's axes in the input frame; the object's
            // x, y, z are the model's z, x, y.
            let r = &candidate.rotation;
            let axes = Matrix3::from_columns(&[
                r.row(2).transpose(),
                r.row(0).transpose(),
                r.row(1).transpose(),
            ]);
            let q = UnitQuaternion::from_rotation_matrix(&Rotation3::from_matrix_unchecked(axes));
            let (lo, hi) = candidate.model_frame.bounds();
            let centre = Vector3::from(lo).lerp(&Vector3::from(hi), 0.5);
            let extent = Vector3::from(hi) - Vector3::from(lo);
            ObjectPose {
                position: (r.transpose() * centre).into(),
                orientation: [q.i, q.j, q.k, q.w],
                size: [extent.z, extent.x, extent.y],
                source: PoseSource::Cluster,
            }
        }
    }
}

/// The published correspondences of a reading: supported matches, best first.
pub(super) fn correspondences(
    reading: &Reading,
    indices: &[usize],
    input_index: &[usize],
    s: &Settings,
) -> Vec<Correspondence> {
    let mut out: Vec<Correspondence> = reading
        .supported
        .iter()
        .map(|&i| {
            let m = &reading.matches[i];
            Correspondence {
                keypoint_id: m.semantic_id,
                name: m.name.clone(),
                xyz: m.xyz,
                score: m.score.clamp(0.0, 1.0),
                input_index: input_index[indices[m.index]],
            }
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    if s.max_keypoints > 0 {
        out.truncate(s.max_keypoints);
    }
    out
}

/// The motion a pose may have: a turn about up when up is known (a support plane or a
/// configured axis), a full similarity when `auto` fell back to a guessed axis.
pub(super) fn motion(up: Vector3<f32>, up_known: bool) -> Motion {
    if up_known {
        Motion::AboutUp(up)
    } else {
        Motion::Similarity
    }
}

/// The object frame's name on `/tf`: `<prefix><category>_<n>`.
pub fn frame_name(prefix: &str, category: &str, n: usize) -> String {
    format!("{prefix}{category}_{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_pose_is_upright_and_faces_the_sensor() {
        // An upright box 1 m ahead in a REP-103 frame (+z up).
        let mut pts = Vec::new();
        for i in 0..10 {
            for j in 0..10 {
                let (a, b) = (i as f32 / 9.0, j as f32 / 9.0);
                pts.push([1.0, -0.05 + 0.1 * a, 0.2 * b]);
            }
        }
        let filtered = Cloud::new(pts);
        let s = Settings::from_params(&Default::default()).unwrap();
        let c = Candidate::new(&filtered, (0..100).collect(), &Vector3::z(), &s);
        let p = object_pose(&c, None);
        let q = p.rotation();
        // Object x (front) points back at the sensor, z up.
        assert!((q * Vector3::x() - -Vector3::x()).norm() < 1e-5);
        assert!((q * Vector3::z() - Vector3::z()).norm() < 1e-5);
        assert!((Vector3::from(p.position) - Vector3::new(1.0, 0.0, 0.1)).norm() < 1e-5);
        assert!((p.size[1] - 0.1).abs() < 1e-5 && (p.size[2] - 0.2).abs() < 1e-5);
        assert!(p.size[0].abs() < 1e-5);
        assert_eq!(frame_name("semcorr/", "mug", 2), "semcorr/mug_2");
    }

    #[test]
    fn a_view_thinner_than_its_keypoints_along_an_axis_is_refused() {
        // Keypoints spanning a 0.6 x 0.8 x 0.4 box (model frame), posed at scale 0.25 and
        // turned a quarter about up: the object is 0.1 m front to back along input x.
        let canonical = [[-0.3, -0.4, -0.2], [0.3, 0.4, 0.2], [0.0, 0.0, 0.0]];
        let pose = Pose {
            rotation: Rotation3::from_axis_angle(&Vector3::y_axis(), std::f32::consts::FRAC_PI_2),
            scale: 0.25,
            translation: Vector3::new(1.0, 0.0, 0.0),
            inliers: vec![0, 1, 2],
            rms: 0.0,
        };
        let slab = |thickness: f32| -> Vec<[f32; 3]> {
            (0..100)
                .map(|i| {
                    let (a, b) = ((i % 10) as f32 / 9.0, (i / 10) as f32 / 9.0);
                    [
                        1.0 + thickness * (a - 0.5),
                        0.2 * (b - 0.5),
                        0.15 * (a - 0.5),
                    ]
                })
                .collect()
        };
        // Half its depth seen, as a view shows it: kept.
        assert_eq!(thinner_than_keypoints(&canonical, &pose, &slab(0.05)), None);
        // A sheet 6 mm thick where 100 mm are expected: refused, naming the axis.
        let why = thinner_than_keypoints(&canonical, &pose, &slab(0.006)).unwrap();
        assert!(
            why.contains("100 mm front to back, the view only 6 mm"),
            "{why}"
        );
    }
}
