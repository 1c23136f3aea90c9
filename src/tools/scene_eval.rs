//! How well the pipeline reads sample scenes against their truth (`semcorr bench scenes`,
//! `tests/scenes.rs`): objects found and their categories, published keypoints near the
//! truth, visible keypoints published, pose errors.
//!
//! A truth object with at least [`MIN_VISIBLE`] visible points is *found* when a detection's
//! points have their centroid within 0.6 x its size of the object's centre. Pose errors
//! are over found objects whose pose was fitted from keypoints: the distance between
//! centres, and the rotation angle. Round categories (bottle, bowl, can:
//! [`crate::dataset::synth::is_round`]) are bodies of revolution whose "front" is a
//! convention (the side facing the sensor), so for them only the up axis is compared (the
//! angle between the true and fitted z axes); for other categories the whole rotation.
//! A category that lies on its side (a knife, [`crate::pose::Rest::OnSide`]) lying front
//! up or back up differs only in which side of its length the spine is, on a blade 2-3 mm
//! thick that range noise mostly hides: its angle is taken modulo that flip (a half turn
//! about its length), and the flips are counted (`face_flips`), since a grasp needs the
//! knife's position and length, which the flip keeps.

use super::scenes::SceneSample;
use crate::error::Result;
use crate::pipeline::{Pipeline, PoseSource, Settings};
use crate::pose::Rest;
use crate::stats::median;
use nalgebra::{Quaternion, UnitQuaternion, Vector3};
use std::collections::BTreeMap;
use std::fmt;

/// Objects with fewer visible points are not counted (the bar).
pub const MIN_VISIBLE: usize = 500;
/// A published keypoint within this of the truth (metres) is right.
pub const NEAR: f32 = 0.03;

/// Counts over a set of scenes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SceneScore {
    pub scenes: usize,
    /// The counts over every category.
    pub total: CategoryCounts,
    /// Detections that match no counted truth object (objects under [`MIN_VISIBLE`]
    /// visible points included).
    pub false_detections: usize,
    pub pose_errors_m: Vec<f64>,
    pub pose_errors_deg: Vec<f64>,
    /// The category of each pose error.
    pub pose_categories: Vec<String>,
    /// Objects counted whose pose came from the cluster (no fit).
    pub unposed: usize,
    /// Fitted poses of objects lying on their side that are the truth's face flipped
    /// (module doc), of `lying_posed`.
    pub face_flips: usize,
    pub lying_posed: usize,
    /// Why each missed object was missed (scene, truth, the nearest candidate's verdict),
    /// and each found one with the wrong category.
    pub missed: Vec<String>,
    /// The same counts per true category.
    pub per_category: BTreeMap<String, CategoryCounts>,
}

/// Counts of truth objects in a [`SceneScore`], over all categories or one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CategoryCounts {
    /// Truth objects with at least [`MIN_VISIBLE`] visible points.
    pub objects: usize,
    pub found: usize,
    pub category_right: usize,
    /// Objects with a candidate (found, or refused by the matches) that the classifier
    /// read (`classifier_path`), and of those the ones whose most likely category was the
    /// truth.
    pub classified: usize,
    pub classified_right: usize,
    /// Published keypoints of found objects whose id the truth has (visible), and of those
    /// the ones within [`NEAR`].
    pub published: usize,
    pub published_near: usize,
    /// Visible annotated keypoints of found objects, and of those the ones published.
    pub visible: usize,
    pub visible_published: usize,
}

impl CategoryCounts {
    fn add(&mut self, o: &CategoryCounts) {
        self.objects += o.objects;
        self.found += o.found;
        self.category_right += o.category_right;
        self.classified += o.classified;
        self.classified_right += o.classified_right;
        self.published += o.published;
        self.published_near += o.published_near;
        self.visible += o.visible;
        self.visible_published += o.visible_published;
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

impl SceneScore {
    pub fn found_rate(&self) -> f64 {
        ratio(self.total.found, self.total.objects)
    }
    pub fn category_rate(&self) -> f64 {
        ratio(self.total.category_right, self.total.objects)
    }
    pub fn near_rate(&self) -> f64 {
        ratio(self.total.published_near, self.total.published)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.total.visible_published, self.total.visible)
    }
    pub fn classified_rate(&self) -> f64 {
        ratio(self.total.classified_right, self.total.classified)
    }
    pub fn median_pose_m(&self) -> f64 {
        median(&mut self.pose_errors_m.clone())
    }
    pub fn median_pose_deg(&self) -> f64 {
        median(&mut self.pose_errors_deg.clone())
    }

    /// Median pose errors (metres, degrees) of one category.
    pub fn category_pose(&self, category: &str) -> (f64, f64, usize) {
        let pick = |v: &[f64]| -> Vec<f64> {
            v.iter()
                .zip(&self.pose_categories)
                .filter(|(_, c)| *c == category)
                .map(|(e, _)| *e)
                .collect()
        };
        let (mut m, mut d) = (pick(&self.pose_errors_m), pick(&self.pose_errors_deg));
        (median(&mut m), median(&mut d), m.len())
    }
}

impl fmt::Display for SceneScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} scenes, {} objects with >= {MIN_VISIBLE} visible points: found {} ({:.1}%), \
             category right {} ({:.1}%), {} false detections; published keypoints within \
             {:.0} cm {} of {} ({:.1}%); visible keypoints published {} of {} ({:.1}%); pose \
             median {:.1} mm, {:.1} deg over {} objects ({} without a fitted pose)",
            self.scenes,
            self.total.objects,
            self.total.found,
            100.0 * self.found_rate(),
            self.total.category_right,
            100.0 * self.category_rate(),
            self.false_detections,
            NEAR * 100.0,
            self.total.published_near,
            self.total.published,
            100.0 * self.near_rate(),
            self.total.visible_published,
            self.total.visible,
            100.0 * self.recall(),
            1e3 * self.median_pose_m(),
            self.median_pose_deg(),
            self.pose_errors_m.len(),
            self.unposed
        )?;
        let mut categories: Vec<&String> = self.pose_categories.iter().collect();
        categories.sort();
        categories.dedup();
        for c in categories {
            let (m, d, n) = self.category_pose(c);
            write!(f, "; {c}: {:.1} mm, {d:.1} deg ({n})", 1e3 * m)?;
        }
        if self.lying_posed > 0 {
            write!(
                f,
                "; lying objects fitted face flipped: {} of {}",
                self.face_flips, self.lying_posed
            )?;
        }
        if self.total.classified > 0 {
            write!(
                f,
                "; classifier right on {} of {} candidates ({:.1}%)",
                self.total.classified_right,
                self.total.classified,
                100.0 * self.classified_rate()
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<9} {:>7} {:>7} {:>9} {:>11} {:>15} {:>15} {:>16}",
            "category",
            "objects",
            "found",
            "category",
            "classifier",
            "kp within 3 cm",
            "visible kp pub",
            "pose mm / deg"
        )?;
        let pct = |a: usize, b: usize| format!("{:.1}%", 100.0 * ratio(a, b));
        for (name, c) in &self.per_category {
            let (m, d, n) = self.category_pose(name);
            let pose = if n > 0 {
                format!("{:.1} / {d:.1}", 1e3 * m)
            } else {
                "-".into()
            };
            writeln!(
                f,
                "{name:<9} {:>7} {:>7} {:>9} {:>11} {:>15} {:>15} {pose:>16}",
                c.objects,
                pct(c.found, c.objects),
                pct(c.category_right, c.objects),
                if c.classified > 0 {
                    pct(c.classified_right, c.classified)
                } else {
                    "-".into()
                },
                format!("{} {}", pct(c.published_near, c.published), c.published),
                pct(c.visible_published, c.visible),
            )?;
        }
        Ok(())
    }
}

fn quaternion([x, y, z, w]: [f32; 4]) -> UnitQuaternion<f32> {
    UnitQuaternion::from_quaternion(Quaternion::new(w, x, y, z))
}

/// Runs the pipeline on every scene and scores it against the truth.
pub fn evaluate(
    pipeline: &Pipeline,
    settings: &Settings,
    scenes: &[SceneSample],
) -> Result<SceneScore> {
    let mut score = SceneScore {
        scenes: scenes.len(),
        ..Default::default()
    };
    for (scene_index, s) in scenes.iter().enumerate() {
        let r = pipeline.process(&s.cloud, settings)?;
        let detections: Vec<_> = r.detections().map(|(_, o)| o).collect();
        let mut used = vec![false; detections.len()];
        for truth in s.objects.iter().filter(|o| o.visible_points >= MIN_VISIBLE) {
            let mut counts = CategoryCounts {
                objects: 1,
                ..Default::default()
            };
            score_object(
                &mut score,
                &mut counts,
                truth,
                &r,
                &detections,
                &mut used,
                scene_index,
            );
            score
                .per_category
                .entry(truth.category.clone())
                .or_default()
                .add(&counts);
            score.total.add(&counts);
        }
        score.false_detections += used.iter().filter(|u| !**u).count();
    }
    Ok(score)
}

/// Scores one truth object of a scene: `counts` gets its counts, `score` its pose errors
/// and missed lines.
fn score_object(
    score: &mut SceneScore,
    counts: &mut CategoryCounts,
    truth: &super::scenes::ObjectTruth,
    r: &crate::pipeline::CloudResult,
    detections: &[&crate::pipeline::ObjectResult],
    used: &mut [bool],
    scene_index: usize,
) {
    let centre = Vector3::from(truth.position);
    let nearest = (0..detections.len())
        .filter(|&d| !used[d])
        .map(|d| (d, (Vector3::from(detections[d].centroid) - centre).norm()))
        .min_by(|a, b| a.1.total_cmp(&b.1));
    let Some((d, _)) = nearest.filter(|&(_, dist)| dist < 0.6 * truth.size) else {
        let candidate = r
            .objects
            .iter()
            .map(|o| (o, (Vector3::from(o.centroid) - centre).norm()))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let why = match candidate {
            Some((o, dist)) if dist < 0.6 * truth.size => {
                // The classifier read the candidate even when the matches refused it.
                if let Some(c) = &o.classified {
                    counts.classified += 1;
                    counts.classified_right += usize::from(c.category == truth.category);
                }
                o.unrecognised
                    .clone()
                    .unwrap_or_else(|| "taken by another".into())
            }
            Some((o, dist)) => format!(
                "no candidate there (nearest {:.0} cm away, {} points)",
                dist * 100.0,
                o.indices.len()
            ),
            None => "no candidates".into(),
        };
        score.missed.push(format!(
            "scene {scene_index}: {} with {} visible points: {why}",
            truth.category, truth.visible_points
        ));
        return;
    };
    used[d] = true;
    let o = detections[d];
    counts.found += 1;
    if let Some(c) = &o.classified {
        counts.classified += 1;
        counts.classified_right += usize::from(c.category == truth.category);
    }
    counts.visible += truth.keypoints.len();
    if o.category.as_deref() == Some(&truth.category) {
        counts.category_right += 1;
    } else {
        score.missed.push(format!(
            "scene {scene_index}: {} with {} visible points taken for a {} ({:?})",
            truth.category,
            truth.visible_points,
            o.category.as_deref().unwrap_or("?"),
            o.candidates
                .iter()
                .map(|c| format!("{} {:.2}", c.category, c.score))
                .collect::<Vec<_>>()
        ));
        // Keypoint ids are per category: another category's say nothing here.
        return;
    }
    for c in &o.correspondences {
        if let Some((_, t)) = truth.keypoints.iter().find(|(id, _)| *id == c.keypoint_id) {
            counts.published += 1;
            let err = (Vector3::from(c.xyz) - Vector3::from(*t)).norm();
            counts.published_near += usize::from(err <= NEAR);
        }
    }
    counts.visible_published += truth
        .keypoints
        .iter()
        .filter(|(id, _)| o.correspondences.iter().any(|c| c.keypoint_id == *id))
        .count();
    if !matches!(o.pose.source, PoseSource::Keypoints { .. }) {
        score.unposed += 1;
        return;
    }
    score
        .pose_errors_m
        .push(f64::from((Vector3::from(o.pose.position) - centre).norm()));
    let (qt, qf) = (quaternion(truth.orientation), o.pose.rotation());
    let deg = if crate::dataset::synth::is_round(&truth.category) {
        let (zt, zf) = (qt * Vector3::z(), qf * Vector3::z());
        zt.dot(&zf).clamp(-1.0, 1.0).acos().to_degrees()
    } else if crate::dataset::synth::rest(&truth.category) == Rest::OnSide {
        // A half turn about its length (the object's y) flips the face.
        let flipped =
            qf * UnitQuaternion::from_axis_angle(&Vector3::y_axis(), std::f32::consts::PI);
        let (as_fitted, as_flipped) = (qt.angle_to(&qf), qt.angle_to(&flipped));
        score.lying_posed += 1;
        score.face_flips += usize::from(as_flipped < as_fitted);
        as_fitted.min(as_flipped).to_degrees()
    } else {
        qt.angle_to(&qf).to_degrees()
    };
    score.pose_errors_deg.push(f64::from(deg));
    score.pose_categories.push(truth.category.clone());
}
