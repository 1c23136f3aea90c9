//! The node's RViz markers and `/diagnostics` status, as plain data. The adapter copies
//! them into `visualization_msgs/Marker` and `diagnostic_msgs/DiagnosticStatus`.

use super::stats::StatsSummary;
use crate::pipeline::Correspondence;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    Sphere,
    Text,
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
    /// Sphere diameter, or text height.
    pub scale: f64,
    pub rgba: [f32; 4],
    pub text: String,
}

pub const MARKER_NS: &str = "semcorr";

/// Remembers which markers are shown so those of keypoints no longer found are deleted.
#[derive(Debug, Default)]
pub struct MarkerTracker {
    shown: BTreeSet<i32>,
}

/// A keypoint's colour: hues spread by the golden angle so neighbouring ids differ.
pub fn keypoint_color(id: u32) -> [f32; 4] {
    let h = (id as f32 * 0.618_034).fract() * 6.0;
    let x = 1.0 - (h % 2.0 - 1.0).abs();
    let [r, g, b] = match h as u32 {
        0 => [1.0, x, 0.0],
        1 => [x, 1.0, 0.0],
        2 => [0.0, 1.0, x],
        3 => [0.0, x, 1.0],
        4 => [x, 0.0, 1.0],
        _ => [1.0, 0.0, x],
    };
    [r, g, b, 1.0]
}

impl MarkerTracker {
    /// Markers for this cloud: a sphere and a label per correspondence (ids `2k` and
    /// `2k + 1` for keypoint `k`), plus deletions of last cloud's markers not shown now.
    /// `size` is the sphere diameter in the input's units.
    pub fn update(&mut self, correspondences: &[Correspondence], size: f64) -> Vec<MarkerSpec> {
        let mut out = Vec::with_capacity(correspondences.len() * 2);
        let mut now = BTreeSet::new();
        for c in correspondences {
            let base = (c.keypoint_id as i32).wrapping_mul(2);
            let p = c.xyz.map(f64::from);
            let rgba = keypoint_color(c.keypoint_id);
            let label = match &c.name {
                Some(name) => format!("{} {name} {:.2}", c.keypoint_id, c.score),
                None => format!("{} {:.2}", c.keypoint_id, c.score),
            };
            out.push(MarkerSpec {
                id: base,
                kind: MarkerKind::Sphere,
                action: MarkerAction::Add,
                position: p,
                scale: size,
                rgba,
                text: String::new(),
            });
            out.push(MarkerSpec {
                id: base + 1,
                kind: MarkerKind::Text,
                action: MarkerAction::Add,
                position: [p[0], p[1], p[2] + 1.5 * size],
                scale: size,
                rgba: [1.0, 1.0, 1.0, 1.0],
                text: label,
            });
            now.extend([base, base + 1]);
        }
        for &stale in self.shown.difference(&now) {
            out.push(MarkerSpec {
                id: stale,
                kind: if stale % 2 == 0 {
                    MarkerKind::Sphere
                } else {
                    MarkerKind::Text
                },
                action: MarkerAction::Delete,
                position: [0.0; 3],
                scale: size,
                rgba: [0.0; 4],
                text: String::new(),
            });
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
/// is that report's failure count) or when no cloud arrived lately; OK otherwise.
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
        (Level::Ok, "ok".to_string())
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
    DiagnosticReport {
        level,
        message,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corr(id: u32) -> Correspondence {
        Correspondence {
            keypoint_id: id,
            name: Some("rim".into()),
            xyz: [1.0, 2.0, 3.0],
            score: 0.9,
            input_index: 0,
        }
    }

    #[test]
    fn markers_of_lost_keypoints_are_deleted() {
        let mut t = MarkerTracker::default();
        let first = t.update(&[corr(0), corr(3)], 0.01);
        assert_eq!(first.len(), 4);
        assert!(first.iter().all(|m| m.action == MarkerAction::Add));
        assert!(first[1].text.contains("rim"));
        let second = t.update(&[corr(3)], 0.01);
        let deleted: Vec<i32> = second
            .iter()
            .filter(|m| m.action == MarkerAction::Delete)
            .map(|m| m.id)
            .collect();
        assert_eq!(deleted, vec![0, 1]);
        let third = t.update(&[], 0.01);
        assert_eq!(third.len(), 2);
        assert!(t.update(&[], 0.01).is_empty());
    }

    #[test]
    fn colors_differ_between_neighbours() {
        assert_ne!(keypoint_color(0), keypoint_color(1));
        assert_ne!(keypoint_color(1), keypoint_color(2));
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
