//! `semcorr_node`: wiring only. Threads: r2r's spin loop (blocking task), an async task
//! draining the subscription into the newest-cloud slot, the inference worker (a plain
//! thread, so a slow forward pass never stalls the executor), a 1 Hz diagnostics task and
//! the parameter service.

use super::{convert, params};
use crate::node::report::{self, MarkerTracker};
use crate::node::stats::{CloudSummary, NodeStats};
use crate::node::{process_message, Latest};
use crate::pipeline::{NodeParams, Pipeline, Settings};
use anyhow::{Context as _, Result};
use futures::StreamExt;
use r2r::diagnostic_msgs::msg::DiagnosticArray;
use r2r::sensor_msgs::msg::PointCloud2;
use r2r::std_msgs::msg::Header;
use r2r::tf2_msgs::msg::TFMessage;
use r2r::vision_msgs::msg::Detection3DArray;
use r2r::visualization_msgs::msg::MarkerArray;
use r2r::{Publisher, QosProfile};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub const NODE_NAME: &str = "semcorr_node";
const DIAGNOSTIC_NAME: &str = "semcorr_node: semantic correspondences";
/// No cloud for this long turns the status to WARN.
const INPUT_TIMEOUT: Duration = Duration::from_secs(3);

/// A received cloud waiting for the worker.
struct Job {
    header: Header,
    cloud: crate::node::pointcloud2::RawPointCloud2,
    received: Instant,
}

struct Outputs {
    correspondences: Publisher<PointCloud2>,
    detections: Publisher<Detection3DArray>,
    tf: Publisher<TFMessage>,
    markers: Publisher<MarkerArray>,
    embedding_cloud: Publisher<PointCloud2>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the node until SIGINT or SIGTERM. Errors are start-up failures (bad parameter,
/// unloadable model, no ROS); nothing a message contains ends it.
pub fn run() -> Result<()> {
    let ctx = r2r::Context::create().context("creating the ROS context")?;
    let mut node = r2r::Node::create(ctx, NODE_NAME, "").context("creating the node")?;
    let (params, unknown) = params::read(&node)?;
    for name in unknown {
        tracing::warn!("ignoring unknown parameter '{name}'");
    }
    params::declare(&node.params, &params);
    let pipeline = Arc::new(Pipeline::new(&params)?);
    let settings = Arc::new(Mutex::new(Settings::from_params(&params)?));
    for (path, model) in pipeline.model_paths.iter().zip(&pipeline.models) {
        tracing::info!(
            "model {path} ({}, {} keypoint templates, {} points, {}) on {}",
            model.category.name,
            model.templates.templates.len(),
            model.prepare.num_points,
            model.precision,
            params.device
        );
    }
    for warning in &pipeline.warnings {
        tracing::warn!("{warning}");
    }

    let input = node.subscribe::<PointCloud2>("~/input/points", QosProfile::sensor_data())?;
    let outputs = Outputs {
        correspondences: node
            .create_publisher("~/output/correspondences", QosProfile::default())?,
        detections: node.create_publisher("~/output/detections", QosProfile::default())?,
        tf: node.create_publisher("/tf", QosProfile::default())?,
        markers: node.create_publisher("~/output/markers", QosProfile::default())?,
        embedding_cloud: node
            .create_publisher("~/output/embedding_cloud", QosProfile::default())?,
    };
    let diagnostics =
        node.create_publisher::<DiagnosticArray>("/diagnostics", QosProfile::default())?;
    let (param_service, param_events) = node.make_parameter_handler()?;
    let declared = node.params.clone();

    let stop = Arc::new(AtomicBool::new(false));
    let latest: Arc<Latest<Job>> = Arc::new(Latest::default());
    let stats = Arc::new(Mutex::new(NodeStats::default()));

    let worker = {
        let (pipeline, settings, latest, stats) = (
            pipeline.clone(),
            settings.clone(),
            latest.clone(),
            stats.clone(),
        );
        std::thread::Builder::new()
            .name("semcorr-infer".into())
            .spawn(move || infer_loop(&pipeline, &settings, &latest, &stats, &outputs))?
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let spin = {
            let stop = stop.clone();
            tokio::task::spawn_blocking(move || {
                while !stop.load(Ordering::Relaxed) {
                    node.spin_once(Duration::from_millis(10));
                }
            })
        };
        tokio::spawn(param_service);
        tokio::spawn(apply_parameter_changes(
            param_events,
            params.clone(),
            settings.clone(),
            declared,
        ));
        tokio::spawn(receive(input, latest.clone(), stats.clone()));
        tokio::spawn(publish_diagnostics(
            diagnostics,
            stats.clone(),
            latest.clone(),
            params.clone(),
        ));
        tracing::info!("waiting for clouds on ~/input/points");
        shutdown_signal().await;
        tracing::info!("shutting down");
        stop.store(true, Ordering::Relaxed);
        latest.close();
        let _ = spin.await;
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("inference thread panicked"))?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Moves each message into the newest-cloud slot as soon as r2r hands it over (r2r's own
/// queue holds 10 and drops the newest when full, so it must never fill).
async fn receive(
    mut input: impl futures::Stream<Item = PointCloud2> + Unpin,
    latest: Arc<Latest<Job>>,
    stats: Arc<Mutex<NodeStats>>,
) {
    while let Some(mut msg) = input.next().await {
        let received = Instant::now();
        lock(&stats).record_arrival(received);
        let cloud = convert::raw_from_ros(&mut msg);
        latest.put(Job {
            header: msg.header,
            cloud,
            received,
        });
    }
}

fn infer_loop(
    pipeline: &Pipeline,
    settings: &Mutex<Settings>,
    latest: &Latest<Job>,
    stats: &Mutex<NodeStats>,
    out: &Outputs,
) {
    let mut markers = MarkerTracker::default();
    while !latest.is_closed() {
        let Some(job) = latest.take(Duration::from_millis(200)) else {
            continue;
        };
        let s = lock(settings).clone();
        // A panic on one message must not end the node: it becomes that message's error.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            process_message(pipeline, &job.cloud, &s)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown");
            Err(crate::error::Error::invalid(format!(
                "internal error: {what}"
            )))
        });
        match result {
            Ok(output) => {
                let h = &job.header;
                let result = &output.result;
                let published = out
                    .correspondences
                    .publish(&convert::ros_from_raw(output.correspondences, h))
                    .and_then(|()| {
                        out.detections
                            .publish(&convert::detections(&output.detections, h))
                    })
                    .and_then(|()| {
                        if output.frames.is_empty() {
                            Ok(())
                        } else {
                            out.tf.publish(&convert::frames(&output.frames, h))
                        }
                    })
                    .and_then(|()| {
                        let specs = markers.update(result);
                        out.markers.publish(&MarkerArray {
                            markers: specs.iter().map(|m| convert::marker(m, h)).collect(),
                        })
                    })
                    .and_then(|()| match output.embedding_cloud {
                        Some(cloud) => out
                            .embedding_cloud
                            .publish(&convert::ros_from_raw(cloud, h)),
                        None => Ok(()),
                    });
                let mut st = lock(stats);
                st.record_cloud(CloudSummary::of(result));
                match published {
                    Ok(()) => st.record_latency(job.received.elapsed()),
                    Err(e) => st.record_failure(format!("publishing: {e}")),
                }
                tracing::debug!(
                    "{} detections, {} correspondences from {} points in {:.1} ms",
                    output.detections.len(),
                    result.correspondences().len(),
                    result.input_points,
                    job.received.elapsed().as_secs_f64() * 1e3
                );
            }
            Err(e) => {
                tracing::warn!("cloud rejected (frame '{}'): {e}", job.header.frame_id);
                lock(stats).record_failure(e.to_string());
            }
        }
    }
}

async fn publish_diagnostics(
    publisher: Publisher<DiagnosticArray>,
    stats: Arc<Mutex<NodeStats>>,
    latest: Arc<Latest<Job>>,
    params: NodeParams,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut failed_before = 0;
    let model = params.model_paths.join(", ");
    let device = params.device.to_string();
    loop {
        tick.tick().await;
        let (summary, receiving) = {
            let mut st = lock(&stats);
            st.skipped = latest.skipped();
            let receiving = st
                .last_arrival()
                .is_some_and(|t| t.elapsed() < INPUT_TIMEOUT);
            (st.summary(), receiving)
        };
        let report = report::diagnostics(&summary, failed_before, receiving, &model, &device);
        failed_before = summary.failed;
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let mut header = Header::default();
        header.stamp.sec = since_epoch.as_secs() as i32;
        header.stamp.nanosec = since_epoch.subsec_nanos();
        let msg = DiagnosticArray {
            header,
            status: vec![convert::diagnostic_status(
                &report,
                DIAGNOSTIC_NAME,
                &device,
            )],
        };
        if let Err(e) = publisher.publish(&msg) {
            tracing::warn!("publishing diagnostics: {e}");
        }
    }
}

/// Applies `ros2 param set` changes that do not need a new model; others are refused with
/// a message, and an invalid value is put back to the last good one.
async fn apply_parameter_changes(
    mut events: impl futures::Stream<Item = (String, r2r::ParameterValue)> + Unpin,
    mut current: NodeParams,
    settings: Arc<Mutex<Settings>>,
    declared: Arc<params::Declared>,
) {
    while let Some((name, value)) = events.next().await {
        let mut next = current.clone();
        let outcome = if params::is_restart_only(&name) {
            Err(format!("parameter '{name}' takes effect at restart"))
        } else {
            params::apply(&mut next, &name, &value)
                .and_then(|()| Settings::from_params(&next))
                .map_err(|e| e.to_string())
        };
        match outcome {
            Ok(s) => {
                tracing::info!("parameter '{name}' set to {value:?}");
                *lock(&settings) = s;
                current = next;
            }
            Err(why) => {
                tracing::error!("{why}; keeping the previous value");
                params::declare_one(&declared, &current, &name);
            }
        }
    }
}
