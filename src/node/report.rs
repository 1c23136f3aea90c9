//! The node's RViz markers and `/diagnostics` status, as plain data. The adapter copies
//! them into `visualization_msgs/Marker` and `diagnostic_msgs/DiagnosticStatus`.

use super::stats::StatsSummary;
use crate::picture::keypoint_color;
use crate::pipeline::{CloudResult, ObjectResult};
use nalgebra::{UnitQuaternion, Vector3};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    Sphere,
    Text,
    /// The object's box (translucent).
    Cube,
    /// One of the object's axes (along the marker's x).
    Arrow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerAction {
    Add,
    Delete,
}

/// One `visualization_msgs/Marker` in namespace [`MARKER_NS`].
#[derive(Debug, Clone, PartialEq)]
pub struct MarkerSpec {
    pub id: i32,
    pub kind: MarkerKind,
    pub action: MarkerAction,
    pub position: [f64; 3],
    /// `[x, y, z, w]`.
    pub orientation: [f64; 4],
    /// Sphere diameter, box size, arrow length/width/height, text height (z).
    pub scale: [f64; 3],
    pub rgba: [f32; 4],
    pub text: String,
}

pub const MARKER_NS: &str = "semcorr";

/// Marker ids of detection `n`: keypoint `k`'s sphere `1000 n + 2k` and label `+ 1`;
/// the box, the x/y/z axes and the object's label at `1000 n + 900..=904`.
const PER_OBJECT: i32 = 1000;
const OBJECT_MARKERS: i32 = 900;

/// Remembers which markers are shown so those no longer found are deleted.
#[derive(Debug, Default)]
pub struct MarkerTracker {
    shown: BTreeMap<i32, MarkerKind>,
}

const IDENTITY: [f64; 4] = [0.0, 0.0, 0.0, 1.0];

fn add(
    id: i32,
    kind: MarkerKind,
    position: [f64; 3],
    scale: [f64; 3],
    rgba: [f32; 4],
) -> MarkerSpec {
    MarkerSpec {
        id,
        kind,
        action: MarkerAction::Add,
        position,
        orientation: IDENTITY,
        scale,
        rgba,
        text: String::new(),
    }
}

/// The markers of one detection: its keypoints (sphere + label), its box, its axes and
/// a label with the category and score.
fn object_markers(n: u32, o: &ObjectResult) -> Vec<MarkerSpec> {
    let base = (n as i32).saturating_mul(PER_OBJECT);
    let size = o
        .pose
        .size
        .iter()
        .map(|&v| f64::from(v).powi(2))
        .sum::<f64>()
        .sqrt();
    let dot = (0.04 * size).max(0.004);
    let mut out = Vec::new();
    for c in &o.correspondences {
        let k = base + (c.keypoint_id as i32 % (OBJECT_MARKERS / 2)) * 2;
        let p = c.xyz.map(f64::from);
        out.push(add(
            k,
            MarkerKind::Sphere,
            p,
            [dot; 3],
            keypoint_color(c.keypoint_id),
        ));
        let mut label = add(
            k + 1,
            MarkerKind::Text,
            [p[0], p[1], p[2] + 1.5 * dot],
            [dot; 3],
            [1.0, 1.0, 1.0, 1.0],
        );
        label.text = match &c.name {
            Some(name) => format!("{} {name} {:.2}", c.keypoint_id, c.score),
            None => format!("{} {:.2}", c.keypoint_id, c.score),
        };
        out.push(label);
    }
    let centre = o.pose.position.map(f64::from);
    let q = o.pose.rotation();
    let orientation = [q.i, q.j, q.k, q.w].map(f64::from);
    let mut boxed = add(
        base + OBJECT_MARKERS,
        MarkerKind::Cube,
        centre,
        o.pose.size.map(|v| f64::from(v).max(1e-3)),
        [0.2, 0.6, 1.0, 0.25],
    );
    boxed.orientation = orientation;
    out.push(boxed);
    // x red, y green, z blue, as RViz draws frames.
    let turns = [
        UnitQuaternion::identity(),
        UnitQuaternion::from_axis_angle(&Vector3::z_axis(), std::f32::consts::FRAC_PI_2),
        UnitQuaternion::from_axis_angle(&Vector3::y_axis(), -std::f32::consts::FRAC_PI_2),
    ];
    for (axis, turn) in turns.iter().enumerate() {
        let a = q * turn;
        let mut rgba = [0.0, 0.0, 0.0, 1.0];
        rgba[axis] = 1.0;
        let mut arrow = add(
            base + OBJECT_MARKERS + 1 + axis as i32,
            MarkerKind::Arrow,
            centre,
            [0.5 * size, 0.1 * dot * 4.0, 0.1 * dot * 4.0],
            rgba,
        );
        arrow.orientation = [a.i, a.j, a.k, a.w].map(f64::from);
        out.push(arrow);
    }
    let top = q * Vector3::new(0.0, 0.0, 0.5 * o.pose.size[2] + 0.02);
    let mut label = add(
        base + OBJECT_MARKERS + 4,
        MarkerKind::Text,
        [
            centre[0] + f64::from(top.x),
            centre[1] + f64::from(top.y),
            centre[2] + f64::from(top.z),
        ],
        [1.5 * dot; 3],
        [1.0, 1.0, 1.0, 1.0],
    );
    label.text = format!(
        "{} {n} {:.2}",
        o.category.as_deref().unwrap_or("?"),
        o.score
    );
    out.push(label);
    out
}

impl MarkerTracker {
    /// Markers for this cloud's detections, plus deletions of last cloud's markers not
    /// shown now.
    pub fn update(&mut self, result: &CloudResult) -> Vec<MarkerSpec> {
        self.update_with(result.detections())
    }

    /// [`Self::update`] for detections given as (index, object).
    pub fn update_with<'a>(
        &mut self,
        detections: impl Iterator<Item = (u32, &'a ObjectResult)>,
    ) -> Vec<MarkerSpec> {
        let mut out: Vec<MarkerSpec> = detections.flat_map(|(n, o)| object_markers(n, o)).collect();
        let now: BTreeMap<i32, MarkerKind> = out.iter().map(|m| (m.id, m.kind)).collect();
        for (&stale, &kind) in &self.shown {
            if !now.contains_key(&stale) {
                out.push(MarkerSpec {
                    action: MarkerAction::Delete,
                    ..add(stale, kind, [0.0; 3], [1.0; 3], [0.0; 4])
                });
            }
        }
        self.shown = now;
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Error,
}

/// One `diagnostic_msgs/DiagnosticStatus`.
#[derive(Debug, Clone, PartialEq)]
pub struct DiagnosticReport {
    pub level: Level,
    pub message: String,
    pub values: Vec<(String, String)>,
}

/// The node's status: WARN when a cloud failed since the previous report (`failed_before`
/// is that report's failure count), when no cloud arrived lately, or when the last
/// cloud's scene had no support plane under `up_axis: auto` (up was guessed); OK
/// otherwise. The message says what the last cloud held.
pub fn diagnostics(
    s: &StatsSummary,
    failed_before: u64,
    receiving: bool,
    model: &str,
    device: &str,
) -> DiagnosticReport {
    let new_failures = s.failed.saturating_sub(failed_before);
    let (level, message) = if new_failures > 0 {
        (
            Level::Warn,
            format!(
                "{new_failures} cloud(s) rejected: {}",
                s.last_error.as_deref().unwrap_or("?")
            ),
        )
    } else if !receiving {
        (Level::Warn, "no input clouds".to_string())
    } else {
        match &s.last_cloud {
            Some(c) if c.up_fallback => (Level::Warn, c.scene.clone()),
            Some(c) => (Level::Ok, c.scene.clone()),
            None => (Level::Ok, "ok".to_string()),
        }
    };
    let values = vec![
        ("input_rate_hz".into(), format!("{:.2}", s.input_hz)),
        ("latency_p50_ms".into(), format!("{:.2}", s.latency_p50_ms)),
        ("latency_p99_ms".into(), format!("{:.2}", s.latency_p99_ms)),
        ("processed".into(), s.processed.to_string()),
        ("skipped".into(), s.skipped.to_string()),
        ("failed".into(), s.failed.to_string()),
        ("model".into(), model.to_string()),
        ("device".into(), device.to_string()),
        (
            "last_error".into(),
            s.last_error.clone().unwrap_or_default(),
        ),
    ];
    let mut values = values;
    if let Some(c) = &s.last_cloud {
        values.push(("plane_found".into(), c.plane_found.to_string()));
        values.push(("objects_found".into(), c.candidates.to_string()));
        values.push(("detections".into(), c.detections.join(", ")));
        for (name, ms) in ["decode", "filter", "scene", "inference", "matching"]
            .iter()
            .zip(c.stage_ms)
        {
            values.push((format!("last_{name}_ms"), format!("{ms:.2}")));
        }
    }
    DiagnosticReport {
        level,
        message,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(ids: &[u32]) -> ObjectResult {
        use crate::pipeline::{Correspondence, ObjectPose, PoseSource};
        ObjectResult {
            category: Some("mug".into()),
            model: 0,
            score: 0.5,
            candidates: Vec::new(),
            unrecognised: None,
            classified: None,
            indices: Vec::new(),
            centroid: [1.0, 2.0, 3.0],
            pose: ObjectPose {
                position: [1.0, 2.0, 3.0],
                orientation: [0.0, 0.0, 0.0, 1.0],
                size: [0.1, 0.1, 0.1],
                source: PoseSource::Cluster,
            },
            correspondences: ids
                .iter()
                .map(|&id| Correspondence {
                    keypoint_id: id,
                    name: Some("rim".into()),
                    xyz: [1.0, 2.0, 3.0],
                    score: 0.9,
                    input_index: 0,
                })
                .collect(),
            matches: Vec::new(),
            model_frame: Default::default(),
            embedded: None,
        }
    }

    #[test]
    fn markers_of_lost_keypoints_and_objects_are_deleted() {
        let mut t = MarkerTracker::default();
        let (a, b) = (object(&[0, 3]), object(&[3]));
        // Two keypoints x (sphere + label) + box + 3 axes + label.
        let first = t.update_with([(0, &a)].into_iter());
        assert_eq!(first.len(), 4 + 5);
        assert!(first.iter().all(|m| m.action == MarkerAction::Add));
        assert!(first.iter().any(|m| m.text.contains("rim")));
        assert!(first.iter().any(|m| m.kind == MarkerKind::Cube));
        assert_eq!(
            first.iter().filter(|m| m.kind == MarkerKind::Arrow).count(),
            3
        );
        let second = t.update_with([(0, &b), (1, &a)].into_iter());
        let deleted: Vec<i32> = second
            .iter()
            .filter(|m| m.action == MarkerAction::Delete)
            .map(|m| m.id)
            .collect();
        assert_eq!(deleted, vec![0, 1], "object 0 lost keypoint 0");
        assert!(second.iter().any(|m| m.id == 1000 + 900), "object 1's box");
        let third = t.update_with(std::iter::empty());
        assert_eq!(third.len(), 2 + 5 + 4 + 5);
        assert!(third.iter().all(|m| m.action == MarkerAction::Delete));
        assert!(t.update_with(std::iter::empty()).is_empty());
    }

    #[test]
    fn failures_since_last_report_warn() {
        let mut s = super::super::stats::NodeStats::default();
        s.record_failure("PointCloud2: no 'z' field");
        let r = diagnostics(&s.summary(), 0, true, "mug.gguf", "cpu");
        assert_eq!(r.level, Level::Warn);
        assert!(r.message.contains("'z'"), "{}", r.message);
        let r = diagnostics(&s.summary(), 1, true, "mug.gguf", "cpu");
        assert_eq!(r.level, Level::Ok);
        assert!(r
            .values
            .iter()
            .any(|(k, v)| k == "last_error" && v.contains("'z'")));
        assert_eq!(
            diagnostics(&s.summary(), 1, false, "m", "cpu").level,
            Level::Warn
        );
    }
}
