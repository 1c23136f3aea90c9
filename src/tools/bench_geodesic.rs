//! Benchmarks behind `semcorr bench`: our geodesic distances timed against the Python
//! baseline (sklearn k-NN graph + scipy Dijkstra) on the very same cloud, in the same run,
//! so the speed-up is measured rather than quoted.

use super::median_ms;
use crate::geodesic::KnnGraph;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::convert::Infallible;
use std::fmt;
use std::io::Write;
use std::process::Command;

/// The baseline script, embedded so the bench works wherever the binary runs.
const SCIPY_SCRIPT: &str = include_str!("../../scripts/bench_geodesic_scipy.py");

/// The scipy baseline runs at most this many times per step (its all-pairs step takes
/// most of a second).
const SCIPY_MAX_REPEATS: usize = 5;

/// Median timings of the Python baseline on the same cloud.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct ScipyTimes {
    pub knn_graph_ms: f64,
    pub all_pairs_ms: f64,
    pub sources_ms: f64,
    /// Mean of the finite all-pairs distances (checksum against ours).
    pub mean_all_pairs: f64,
    /// Mean of the sources-to-all distances (checksum against ours).
    pub mean_sources: f64,
    pub unreachable_pairs: u64,
}

/// Result of [`geodesic_bench`]; `Display` prints a table.
#[derive(Debug, Clone, PartialEq)]
pub struct GeodesicBenchReport {
    pub num_points: usize,
    pub k: usize,
    pub num_sources: usize,
    pub repeats: usize,
    /// Median milliseconds: k-NN graph (components joined), all pairs, sources to all.
    pub build_ms: f64,
    pub all_pairs_ms: f64,
    pub sources_ms: f64,
    /// Mean of our all-pairs and sources-to-all distances (checksums).
    pub mean_all_pairs: f64,
    pub mean_sources: f64,
    /// Bridges our graph needed to be connected (0 on the bench cloud).
    pub bridges: usize,
    /// The baseline's timings, or why it is unavailable.
    pub scipy: Result<ScipyTimes, BaselineUnavailable>,
}

/// Why the scipy baseline was not measured (not an error: the bench still reports ours).
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineUnavailable(pub String);

impl From<String> for BaselineUnavailable {
    fn from(why: String) -> Self {
        BaselineUnavailable(why)
    }
}

fn ok<T>(v: T) -> Result<T, Infallible> {
    Ok(v)
}

fn infallible<T>(r: Result<T, Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

/// `n` points sampled uniformly (by area) on a torus with major radius 0.25 and minor
/// radius 0.1 (bounding-box diagonal about 1, like a normalised cloud), seeded.
pub fn torus_cloud(n: usize, seed: u64) -> Vec<[f32; 3]> {
    let (big, small) = (0.25f32, 0.1f32);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut points = Vec::with_capacity(n);
    while points.len() < n {
        let u = rng.random::<f32>() * std::f32::consts::TAU;
        let v = rng.random::<f32>() * std::f32::consts::TAU;
        // Area element is proportional to (R + r cos v): rejection-sample v.
        if rng.random::<f32>() * (big + small) > big + small * v.cos() {
            continue;
        }
        let ring = big + small * v.cos();
        points.push([ring * u.cos(), ring * u.sin(), small * v.sin()]);
    }
    points
}

fn mean(values: &[f32]) -> f64 {
    let finite = values.iter().filter(|v| v.is_finite());
    let (sum, count) = finite.fold((0.0f64, 0usize), |(s, c), &v| (s + v as f64, c + 1));
    if count == 0 {
        0.0
    } else {
        sum / count as f64
    }
}

/// Times graph build, all pairs and `num_sources`-to-all on a seeded torus cloud of
/// `num_points` points (median of `repeats`), then runs the scipy baseline on the same
/// points if `python3` with scipy and scikit-learn is available. Never fails: a missing
/// baseline is reported as such.
pub fn geodesic_bench(
    num_points: usize,
    k: usize,
    num_sources: usize,
    repeats: usize,
) -> GeodesicBenchReport {
    let points = torus_cloud(num_points, 7);
    let sources: Vec<usize> = (0..num_sources)
        .map(|i| i * num_points / num_sources.max(1))
        .filter(|&s| s < num_points)
        .collect();
    let (build_ms, graph) = infallible(median_ms(repeats, false, || {
        ok(KnnGraph::build(&points, k))
    }));
    let (all_pairs_ms, all) = infallible(median_ms(repeats, false, || ok(graph.all_pairs())));
    let (sources_ms, from) = infallible(median_ms(repeats, false, || {
        ok(graph
            .from_sources(&sources)
            .expect("bench sources are in range"))
    }));
    GeodesicBenchReport {
        num_points,
        k,
        num_sources: sources.len(),
        repeats,
        build_ms,
        all_pairs_ms,
        sources_ms,
        mean_all_pairs: mean(&all.data),
        mean_sources: mean(&from.data),
        bridges: graph.bridges().len(),
        scipy: run_scipy(
            &points,
            k,
            sources.len(),
            repeats.clamp(1, SCIPY_MAX_REPEATS),
        ),
    }
}

/// Runs the embedded baseline script on `points` (written to a temporary text file).
fn run_scipy(
    points: &[[f32; 3]],
    k: usize,
    num_sources: usize,
    repeats: usize,
) -> Result<ScipyTimes, BaselineUnavailable> {
    let probe = Command::new("python3")
        .args(["-c", "import scipy, sklearn"])
        .output()
        .map_err(|e| format!("python3 not runnable: {e}"))?;
    if !probe.status.success() {
        return Err(BaselineUnavailable(
            "python3 lacks scipy or scikit-learn".into(),
        ));
    }
    if num_sources == 0 || points.len() <= k {
        return Err(BaselineUnavailable(
            "baseline needs at least one source and more points than k".into(),
        ));
    }
    let dir = std::env::temp_dir();
    let tag = format!("semcorr_geodesic_bench_{}", std::process::id());
    let script = dir.join(format!("{tag}.py"));
    let cloud = dir.join(format!("{tag}.txt"));
    let result = (|| {
        std::fs::write(&script, SCIPY_SCRIPT).map_err(|e| format!("{}: {e}", script.display()))?;
        let mut text = Vec::with_capacity(points.len() * 40);
        for p in points {
            // `{:?}` prints the shortest text that round-trips, so both sides see equal f32s.
            writeln!(text, "{:?} {:?} {:?}", p[0], p[1], p[2]).map_err(|e| e.to_string())?;
        }
        std::fs::write(&cloud, text).map_err(|e| format!("{}: {e}", cloud.display()))?;
        let out = Command::new("python3")
            .arg(&script)
            .arg(&cloud)
            .args([k, num_sources, repeats].map(|v| v.to_string()))
            .output()
            .map_err(|e| format!("python3: {e}"))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(BaselineUnavailable(format!(
                "baseline script failed: {}",
                stderr.trim()
            )));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| BaselineUnavailable(format!("baseline output: {e}")))
    })();
    let _ = std::fs::remove_file(&script);
    let _ = std::fs::remove_file(&cloud);
    result
}

impl fmt::Display for GeodesicBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "geodesic bench: {} points (torus), k = {}, median of {} runs ({} threads)",
            self.num_points,
            self.k,
            self.repeats,
            rayon::current_num_threads()
        )?;
        let scipy = self.scipy.as_ref().ok();
        let steps = [
            ("k-NN graph", self.build_ms, scipy.map(|s| s.knn_graph_ms)),
            (
                "all pairs",
                self.all_pairs_ms,
                scipy.map(|s| s.all_pairs_ms),
            ),
            (
                &*format!("{} sources to all", self.num_sources),
                self.sources_ms,
                scipy.map(|s| s.sources_ms),
            ),
        ];
        writeln!(
            f,
            "{:<20} {:>10} {:>10} {:>9}",
            "step", "ours ms", "scipy ms", "speed-up"
        )?;
        for (step, ours, theirs) in steps {
            match theirs {
                Some(t) => writeln!(
                    f,
                    "{step:<20} {ours:>10.3} {t:>10.3} {:>8.1}x",
                    t / ours.max(1e-9)
                )?,
                None => writeln!(f, "{step:<20} {ours:>10.3} {:>10} {:>9}", "-", "-")?,
            }
        }
        write!(
            f,
            "checksum mean distance: all pairs {:.6}, sources {:.6} (ours)",
            self.mean_all_pairs, self.mean_sources
        )?;
        match &self.scipy {
            Ok(s) => write!(
                f,
                " vs {:.6}, {:.6} (scipy, median of {} runs, {} unreachable pairs)",
                s.mean_all_pairs,
                s.mean_sources,
                self.repeats.clamp(1, SCIPY_MAX_REPEATS),
                s.unreachable_pairs
            )?,
            Err(BaselineUnavailable(why)) => write!(f, "\nscipy baseline unavailable: {why}")?,
        }
        if self.bridges > 0 {
            write!(f, "\n{} bridges joined graph components", self.bridges)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torus_cloud_is_seeded_and_normalised() {
        let a = torus_cloud(500, 3);
        assert_eq!(a, torus_cloud(500, 3));
        let (mut lo, mut hi) = ([f32::MAX; 3], [f32::MIN; 3]);
        for p in &a {
            for d in 0..3 {
                lo[d] = lo[d].min(p[d]);
                hi[d] = hi[d].max(p[d]);
            }
        }
        let diagonal = euclid(&lo, &hi);
        assert!((0.9..1.1).contains(&diagonal), "diagonal {diagonal}");
    }

    fn euclid(a: &[f32; 3], b: &[f32; 3]) -> f32 {
        (0..3).map(|d| (a[d] - b[d]).powi(2)).sum::<f32>().sqrt()
    }

    #[test]
    fn small_bench_runs_and_prints() {
        let report = geodesic_bench(300, 10, 4, 1);
        assert_eq!(report.num_sources, 4);
        assert_eq!(report.bridges, 0);
        let text = report.to_string();
        assert!(text.contains("all pairs"), "{text}");
        if let Ok(s) = &report.scipy {
            let rel = (s.mean_all_pairs - report.mean_all_pairs).abs() / s.mean_all_pairs;
            assert!(rel < 1e-4, "checksums differ: {text}");
        }
    }

    /// `cargo test --release --lib print_geodesic_bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn print_geodesic_bench() {
        println!("{}", geodesic_bench(2048, 20, 16, 20));
    }
}
