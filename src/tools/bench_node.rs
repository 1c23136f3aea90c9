//! `semcorr bench node`: the node's per-cloud work without ROS (decode, filters,
//! preprocessing + forward pass, matching), through the node's own
//! [`process_message`], on sample sensor clouds of several sizes. This is the "pure
//! inference" time the end-to-end latency of `scripts/bench_node.sh` is compared with.

use super::samples::{sample_clouds, SampleOptions};
use crate::error::Result;
use crate::node::pointcloud2;
use crate::node::process_message;
use crate::pipeline::{NodeParams, Pipeline, Settings, StageTimes};
use crate::stats::percentile;
use std::fmt::Write;
use std::time::Duration;

/// Processes `repeats` clouds of each size and returns the table as text. With `rate_hz`
/// the clouds come at that rate (idle time between them, as in the node at 10 Hz: threads
/// and caches cool down); without, back to back.
pub fn node_bench(
    params: &NodeParams,
    sizes: &[usize],
    repeats: usize,
    rate_hz: Option<f64>,
) -> Result<String> {
    let pipeline = Pipeline::new(params)?;
    let settings = Settings::from_params(params)?;
    let mut out = String::new();
    writeln!(
        out,
        "model {} ({} points), {} threads; {repeats} clouds per size (4 different views), {}",
        params.model_path,
        pipeline.model.prepare.num_points,
        rayon::current_num_threads(),
        match rate_hz {
            Some(hz) => format!("at {hz} Hz"),
            None => "back to back".into(),
        }
    )
    .ok();
    writeln!(
        out,
        "{:>8} {:>9} {:>9} {:>11} {:>9} {:>9} {:>9}",
        "points", "decode", "filter", "prep+net", "match", "p50 ms", "p99 ms"
    )
    .ok();
    for &size in sizes {
        let msgs: Vec<_> = sample_clouds(&SampleOptions {
            count: 4,
            points: size,
            ..Default::default()
        })?
        .iter()
        .map(|s| pointcloud2::encode_xyz(&s.cloud.points))
        .collect();
        process_message(&pipeline, &msgs[0], &settings)?; // warm-up
        let mut totals = Vec::with_capacity(repeats);
        let mut sum = StageTimes::default();
        let period = rate_hz.map(|hz| Duration::from_secs_f64(1.0 / hz));
        for i in 0..repeats.max(1) {
            let started = std::time::Instant::now();
            let r = process_message(&pipeline, &msgs[i % msgs.len()], &settings)?.result;
            if let Some(period) = period {
                std::thread::sleep(period.saturating_sub(started.elapsed()));
            }
            let t = r.times;
            totals.push(t.total().as_secs_f64() * 1e3);
            sum.decode += t.decode;
            sum.filter += t.filter;
            sum.inference += t.inference;
            sum.matching += t.matching;
        }
        totals.sort_by(f64::total_cmp);
        let mean = |d: Duration| d.as_secs_f64() * 1e3 / totals.len() as f64;
        writeln!(
            out,
            "{size:>8} {:>9.2} {:>9.2} {:>11.2} {:>9.2} {:>9.2} {:>9.2}",
            mean(sum.decode),
            mean(sum.filter),
            mean(sum.inference),
            mean(sum.matching),
            percentile(&totals, 0.5),
            percentile(&totals, 0.99)
        )
        .ok();
    }
    Ok(out)
}
