//! Running statistics for `/diagnostics`: input rate, end-to-end latency percentiles,
//! skipped clouds and the last error. Kept over a sliding window so a slow start does not
//! dominate the figures forever.

use crate::stats::percentile;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many recent clouds the latency and rate figures cover.
pub const WINDOW: usize = 200;

#[derive(Debug, Clone, Default)]
pub struct NodeStats {
    arrivals: VecDeque<Instant>,
    latencies_ms: VecDeque<f64>,
    /// Clouds replaced by a newer one before inference reached them.
    pub skipped: u64,
    /// Clouds that could not be processed (malformed, empty, inference error).
    pub failed: u64,
    pub processed: u64,
    pub last_error: Option<String>,
    pub last_cloud: Option<CloudSummary>,
}

/// What the scene stage and the models made of the last processed cloud.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudSummary {
    /// [`crate::pipeline::SceneReport::summary`].
    pub scene: String,
    pub plane_found: bool,
    /// `auto` found no plane and fell back to `fallback_up_axis`.
    pub up_fallback: bool,
    pub candidates: usize,
    /// Categories of the detections, in order.
    pub detections: Vec<String>,
    /// Per stage, milliseconds: decode, filter, scene, inference, matching.
    pub stage_ms: [f64; 5],
}

impl CloudSummary {
    pub fn of(r: &crate::pipeline::CloudResult) -> CloudSummary {
        let t = &r.times;
        let detections: Vec<String> = r
            .detections()
            .filter_map(|(_, o)| o.category.clone())
            .collect();
        CloudSummary {
            scene: r.scene.summary(detections.len()),
            plane_found: r.scene.plane.is_some(),
            up_fallback: r.scene.up_source == crate::pipeline::UpSource::Fallback,
            candidates: r.objects.len(),
            detections,
            stage_ms: [t.decode, t.filter, t.scene, t.inference, t.matching]
                .map(|d| d.as_secs_f64() * 1e3),
        }
    }
}

/// One `/diagnostics` status worth of figures.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSummary {
    pub input_hz: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub processed: u64,
    pub skipped: u64,
    pub failed: u64,
    pub last_error: Option<String>,
    pub last_cloud: Option<CloudSummary>,
}

impl NodeStats {
    pub fn record_arrival(&mut self, at: Instant) {
        self.arrivals.push_back(at);
        if self.arrivals.len() > WINDOW {
            self.arrivals.pop_front();
        }
    }

    pub fn last_arrival(&self) -> Option<Instant> {
        self.arrivals.back().copied()
    }

    pub fn record_latency(&mut self, latency: Duration) {
        self.processed += 1;
        self.latencies_ms.push_back(latency.as_secs_f64() * 1e3);
        if self.latencies_ms.len() > WINDOW {
            self.latencies_ms.pop_front();
        }
    }

    pub fn record_cloud(&mut self, summary: CloudSummary) {
        self.last_cloud = Some(summary);
    }

    pub fn record_failure(&mut self, error: impl Into<String>) {
        self.failed += 1;
        self.last_error = Some(error.into());
    }

    pub fn summary(&self) -> StatsSummary {
        let input_hz = match (self.arrivals.front(), self.arrivals.back()) {
            (Some(first), Some(last)) if self.arrivals.len() > 1 && last > first => {
                (self.arrivals.len() - 1) as f64 / (*last - *first).as_secs_f64()
            }
            _ => 0.0,
        };
        let mut sorted: Vec<f64> = self.latencies_ms.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        StatsSummary {
            input_hz,
            latency_p50_ms: percentile(&sorted, 0.50),
            latency_p99_ms: percentile(&sorted, 0.99),
            processed: self.processed,
            skipped: self.skipped,
            failed: self.failed,
            last_error: self.last_error.clone(),
            last_cloud: self.last_cloud.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_rate_and_counts() {
        let mut s = NodeStats::default();
        let t0 = Instant::now();
        for i in 0..11 {
            s.record_arrival(t0 + Duration::from_millis(100 * i));
        }
        for ms in 1..=100 {
            s.record_latency(Duration::from_millis(ms));
        }
        s.skipped = 3;
        s.record_failure("PointCloud2: no 'z' field");
        let sum = s.summary();
        assert!((sum.input_hz - 10.0).abs() < 1e-6, "{}", sum.input_hz);
        assert_eq!(sum.latency_p50_ms, 50.0);
        assert_eq!(sum.latency_p99_ms, 99.0);
        assert_eq!((sum.processed, sum.skipped, sum.failed), (100, 3, 1));
        assert!(sum.last_error.unwrap().contains("'z'"));
    }

    #[test]
    fn window_forgets_old_latencies() {
        let mut s = NodeStats::default();
        for _ in 0..WINDOW {
            s.record_latency(Duration::from_millis(500));
        }
        for _ in 0..WINDOW {
            s.record_latency(Duration::from_millis(5));
        }
        assert_eq!(s.summary().latency_p99_ms, 5.0);
        assert_eq!(NodeStats::default().summary().input_hz, 0.0);
    }
}
