//! `semcorr bench node`: the node's per-cloud work without ROS (decode, filters, scene
//! stage, preprocessing + forward passes, matching and pose), through the node's own
//! [`process_message`]. On single-object sample clouds of several sizes (the "pure
//! inference" time `scripts/bench_node.sh` compares the end-to-end latency with), or with
//! `--scene` on 640 x 480 depth-camera scenes, per stage with p50 and p99, and the
//! process's resident memory.

use super::samples::{sample_clouds, SampleOptions};
use super::scenes::{sample_scenes, SceneOptions};
use crate::error::Result;
use crate::node::pointcloud2::{self, RawPointCloud2};
use crate::node::process_message;
use crate::pipeline::params::{UpAxis, UpSetting};
use crate::pipeline::{NodeParams, Pipeline, Settings, StageTimes};
use crate::stats::percentile;
use std::fmt::Write;
use std::time::Duration;

/// Feeds `msgs` round-robin, `repeats` times (at `rate_hz` when given: idle time between
/// clouds, as in the node at 10 Hz), after one warm-up; the stage times of each cloud.
fn run(
    pipeline: &Pipeline,
    settings: &Settings,
    msgs: &[RawPointCloud2],
    repeats: usize,
    rate_hz: Option<f64>,
) -> Result<Vec<StageTimes>> {
    process_message(pipeline, &msgs[0], settings)?;
    let period = rate_hz.map(|hz| Duration::from_secs_f64(1.0 / hz));
    let mut times = Vec::with_capacity(repeats);
    for i in 0..repeats.max(1) {
        let started = std::time::Instant::now();
        let r = process_message(pipeline, &msgs[i % msgs.len()], settings)?.result;
        times.push(r.times);
        if let Some(period) = period {
            std::thread::sleep(period.saturating_sub(started.elapsed()));
        }
    }
    Ok(times)
}

/// One stage's time out of a cloud's [`StageTimes`].
type Stage = fn(&StageTimes) -> Duration;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// p50 and p99 of one stage over the clouds, milliseconds.
fn p50_p99(times: &[StageTimes], stage: impl Fn(&StageTimes) -> Duration) -> (f64, f64) {
    let mut v: Vec<f64> = times.iter().map(|t| ms(stage(t))).collect();
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

fn pace(rate_hz: Option<f64>) -> String {
    match rate_hz {
        Some(hz) => format!("at {hz} Hz"),
        None => "back to back".into(),
    }
}

/// Single-object sensor clouds (REP-103, +z up, no table): the pipeline without the
/// scene stage, one model (the first of `model_paths`).
pub fn node_bench(
    params: &NodeParams,
    sizes: &[usize],
    repeats: usize,
    rate_hz: Option<f64>,
) -> Result<String> {
    let mut params = params.clone();
    params.model_paths.truncate(1);
    params.segment_scene = false;
    params.up_axis = UpSetting::Axis(UpAxis::PosZ);
    let pipeline = Pipeline::new(&params)?;
    let settings = Settings::from_params(&params)?;
    let mut out = String::new();
    writeln!(
        out,
        "model {} ({} points), {} threads; {repeats} clouds per size (4 different views), {}",
        pipeline.model_paths[0],
        pipeline.models[0].prepare.num_points,
        rayon::current_num_threads(),
        pace(rate_hz)
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
        let times = run(&pipeline, &settings, &msgs, repeats, rate_hz)?;
        let mean = |f: fn(&StageTimes) -> Duration| {
            times.iter().map(|t| ms(f(t))).sum::<f64>() / times.len() as f64
        };
        let (p50, p99) = p50_p99(&times, StageTimes::total);
        writeln!(
            out,
            "{size:>8} {:>9.2} {:>9.2} {:>11.2} {:>9.2} {:>9.2} {:>9.2}",
            mean(|t| t.decode),
            mean(|t| t.filter),
            mean(|t| t.inference),
            mean(|t| t.matching),
            p50,
            p99
        )
        .ok();
    }
    Ok(out)
}

/// Resident and peak resident memory of this process, MB (Linux's /proc; `None`
/// elsewhere).
pub fn resident_mb() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse::<f64>().ok()
    };
    Some((kb("VmRSS:")? / 1024.0, kb("VmHWM:")? / 1024.0))
}

/// `--scene`: organised 640 x 480 scenes with `objects` objects (the tabletop zoo, the
/// sample scenes' generator) through the node's parameters as given (all models).
pub fn scene_bench(
    params: &NodeParams,
    objects: usize,
    repeats: usize,
    rate_hz: Option<f64>,
) -> Result<String> {
    let pipeline = Pipeline::new(params)?;
    let settings = Settings::from_params(params)?;
    // Scenes with exactly `objects` objects (the generator draws 1..=max).
    let mut scenes = Vec::new();
    let mut seed = 7000;
    while scenes.len() < 4 && seed < 7200 {
        let batch = sample_scenes(&SceneOptions {
            count: 8,
            seed,
            max_objects: objects,
            ..Default::default()
        })?;
        scenes.extend(batch.into_iter().filter(|s| s.objects.len() == objects));
        seed += 1;
    }
    scenes.truncate(4);
    let msgs: Vec<RawPointCloud2> = scenes
        .iter()
        .map(|s| pointcloud2::encode_xyz_organised(&s.cloud))
        .collect::<Result<_>>()?;
    let times = run(&pipeline, &settings, &msgs, repeats, rate_hz)?;
    let mut out = String::new();
    writeln!(
        out,
        "models {}; {} scenes of 640 x 480 with {objects} objects, {repeats} clouds {}, {} \
         threads",
        pipeline.model_paths.join(", "),
        msgs.len(),
        pace(rate_hz),
        rayon::current_num_threads()
    )
    .ok();
    writeln!(out, "{:>10} {:>9} {:>9}", "stage", "p50 ms", "p99 ms").ok();
    let stages: [(&str, Stage); 6] = [
        ("decode", |t| t.decode),
        ("filter", |t| t.filter),
        ("scene", |t| t.scene),
        ("networks", |t| t.inference),
        ("match+pose", |t| t.matching),
        ("total", StageTimes::total),
    ];
    for (name, stage) in stages {
        let (p50, p99) = p50_p99(&times, stage);
        writeln!(out, "{name:>10} {p50:>9.2} {p99:>9.2}").ok();
    }
    if let Some((rss, peak)) = resident_mb() {
        writeln!(out, "resident memory {rss:.0} MB (peak {peak:.0} MB)").ok();
    }
    Ok(out)
}
