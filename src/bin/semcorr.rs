//! `semcorr`: the companion CLI. A thin layer over the library: parse arguments, call, print.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use semcorr::dataset::{synth, Dataset, Split};
use semcorr::deploy::Precision;
use semcorr::eval::{self, Baseline};
use semcorr::pipeline::NodeParams;
use std::path::{Path, PathBuf};

// mimalloc: measured ~17% faster training steps than the system allocator (see src/model).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "semcorr",
    version,
    about = "Per-point semantic correspondences: data, evaluation, benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a procedural dataset in the KeypointNet format.
    Synth {
        /// Output folder (created; existing files with the same names are replaced).
        #[arg(long)]
        out: PathBuf,
        /// Comma-separated category names (default: all).
        #[arg(long, value_delimiter = ',')]
        categories: Vec<String>,
        /// Models per category.
        #[arg(long, default_value_t = 40)]
        models: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Keep only what a camera sees from a random viewpoint.
        #[arg(long)]
        partial: bool,
        /// Points per cloud.
        #[arg(long, default_value_t = 2048)]
        points: usize,
    },
    /// Evaluate an embedding function: mGE and PCK per category.
    Eval {
        /// Dataset folder (KeypointNet format).
        #[arg(long)]
        data: PathBuf,
        #[arg(long, value_enum, default_value_t = Split::Test)]
        split: Split,
        /// Baseline embedder (ignored with --model).
        #[arg(long, value_enum, default_value_t = Baseline::Random)]
        embedder: Baseline,
        /// A trained checkpoint (`semcorr train`, .safetensors) or a deployment model
        /// (`semcorr export`, .gguf): evaluates the network instead of a baseline, on its
        /// category unless --categories says otherwise.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Comma-separated categories (names or class ids; default: all).
        #[arg(long, value_delimiter = ',')]
        categories: Vec<String>,
        /// Seed of the random embedder.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Also write the report as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Train a backbone with the geodesic consistency loss.
    Train {
        /// YAML config (every key has a default; see `semcorr::train::config`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a config key, e.g. `--set lr=5e-4 --set backbone.kind=dgcnn`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Continue from this checkpoint (its config wins, except `epochs` and `out`).
        #[arg(long)]
        resume: Option<PathBuf>,
    },
    /// Export a checkpoint as one GGUF deployment model (weights, preprocessing, templates).
    Export {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Storage precision of the weight matrices.
        #[arg(long, value_enum, default_value_t = Precision::F32)]
        precision: Precision,
        #[arg(long)]
        out: PathBuf,
        /// Dataset for the templates (default: the checkpoint's `data`).
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Split::Train)]
        split: Split,
    },
    /// Few-shot: rebuild a model's templates from your own annotated clouds (KeypointNet
    /// format) without retraining, writing a new model file.
    Templates {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        data: PathBuf,
        #[arg(long, value_enum, default_value_t = Split::Train)]
        split: Split,
        /// Category in --data (default: the model's, or the dataset's only one).
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Run the node's pipeline on a cloud file (.pcd or .ply) and print what the node
    /// would publish. NaN points are dropped as in the node.
    Infer {
        #[arg(long)]
        cloud: PathBuf,
        /// The node's parameters file (ros__parameters YAML); default:
        /// config/semcorr.yaml when it exists here, else the same built-in defaults.
        #[arg(long)]
        params: Option<PathBuf>,
        /// Override a node parameter, e.g. `--set up_axis=-y --set crop_box=[-1,-1,0,1,1,2]`.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// Shorthand for `--set model_path=FILE`.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Write the result as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Draw the cloud coloured by embedding, with the keypoints, to this PNG (800x600).
        #[arg(long)]
        png: Option<PathBuf>,
    },
    /// Sample sensor clouds (binary PCD, REP-103 sensor frame, metres) of unseen
    /// procedural objects, for the node's demo, tests and benchmarks; keypoints.json holds
    /// the visible annotated keypoints of each.
    Samples {
        /// Output folder (created).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "mug")]
        category: String,
        #[arg(long, default_value_t = 8)]
        count: usize,
        /// Grow each cloud to this many points (a dense sensor); 0 = as seen.
        #[arg(long, default_value_t = 0)]
        points: usize,
        #[arg(long, default_value_t = 1000)]
        seed: u64,
        /// Range noise (standard deviation), metres.
        #[arg(long, default_value_t = 0.001)]
        noise: f32,
        /// Whole depth-camera scenes instead (organised 640 x 480, optical frame, NaN
        /// holes, binary_compressed PCD): a table, a wall, 1-4 mugs and bottles, with
        /// truth.json (each object's category, pose and visible keypoints).
        #[arg(long)]
        scene: bool,
    },
    /// Benchmarks that print our figures next to a baseline measured in the same run.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// PointNet forward (B=1, N=2048), a training step (B=4), and a same-FLOP matmul.
    Model {
        #[arg(long, default_value_t = 15)]
        repeats: usize,
    },
    /// Deployment models per precision: file size, embed time, test mGE (vs checkpoint).
    Deploy {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Dataset (default: the checkpoint's).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Folder for the exported files (default: a temporary one).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 15)]
        repeats: usize,
    },
    /// The node's per-cloud work without ROS (decode, filters, network, matching) on
    /// sample sensor clouds: the "pure inference" time of the node's latency benchmark.
    Node {
        /// Node parameters (ros__parameters YAML); default: config/semcorr.yaml's values.
        #[arg(long)]
        params: Option<PathBuf>,
        /// Cloud sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "2048,100000")]
        points: Vec<usize>,
        #[arg(long, default_value_t = 40)]
        repeats: usize,
        /// Feed clouds at this rate (Hz) instead of back to back, as the node sees them.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// k-NN graph, all-pairs and sources-to-all geodesics on one cloud.
    Geodesic {
        #[arg(long, default_value_t = 2048)]
        points: usize,
        #[arg(long, default_value_t = semcorr::geodesic::DEFAULT_K)]
        k: usize,
        #[arg(long, default_value_t = 16)]
        sources: usize,
        #[arg(long, default_value_t = 20)]
        repeats: usize,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Synth {
            out,
            categories,
            models,
            seed,
            partial,
            points,
        } => {
            let opts = synth::SynthOptions {
                categories,
                models_per_category: models,
                seed,
                partial,
                num_points: points,
            };
            let summary = synth::generate_dataset(&out, &opts)
                .with_context(|| format!("generating a dataset in {}", out.display()))?;
            println!("{summary}");
        }
        Command::Eval {
            data,
            split,
            embedder,
            model,
            mut categories,
            seed,
            json,
        } => {
            let dataset = Dataset::open(&data)?;
            let network;
            let embedder: Box<dyn semcorr::embedding::Embedder + '_> = match &model {
                Some(path) if path.extension().is_some_and(|e| e == "gguf") => {
                    let m = semcorr::deploy::DeployedModel::load(path)?;
                    if categories.is_empty() {
                        categories.push(m.category.class_id.clone());
                    }
                    Box::new(m)
                }
                Some(path) => {
                    let (net, ckpt) = semcorr::train::load_network(path)?;
                    if categories.is_empty() {
                        categories.push(ckpt.meta.config.category.clone());
                    }
                    network = net;
                    Box::new(network.embedder(ckpt.meta.config.prepare, &candle_core::Device::Cpu))
                }
                None => embedder.embedder(seed),
            };
            let selected = select_categories(&dataset, &categories)?;
            let report = eval::evaluate(&dataset, &selected, split, embedder.as_ref())?;
            println!("embedder: {}\n{report}", embedder.name());
            if let Some(path) = json {
                semcorr::error::write_file_atomic(&path, report.to_json().as_bytes())?;
            }
        }
        Command::Train {
            config,
            set,
            resume,
        } => {
            let cfg = semcorr::train::TrainConfig::load(config.as_deref(), &set)?;
            let outcome = semcorr::train::train(cfg, resume.as_deref())?;
            let last = outcome.history.last();
            println!(
                "run {}: {} epochs, last train loss {:.4}, best val mGE {}",
                outcome.run_dir.display(),
                last.map_or(0, |m| m.epoch),
                last.map_or(f64::NAN, |m| m.train_loss),
                outcome
                    .best_val_mge
                    .map_or("n/a".into(), |v| format!("{v:.4}"))
            );
        }
        Command::Export {
            checkpoint,
            precision,
            out,
            data,
            split,
        } => {
            let model = semcorr::deploy::DeployedModel::from_checkpoint(
                &checkpoint,
                precision,
                data.as_deref(),
                split,
            )?;
            model.save(&out)?;
            println!(
                "wrote {} ({precision}, {} templates, {} weight bytes)",
                out.display(),
                model.templates.templates.len(),
                model.weight_bytes()
            );
        }
        Command::Templates {
            model,
            data,
            split,
            category,
            out,
        } => {
            let mut m = semcorr::deploy::DeployedModel::load(&model)?;
            m.retemplate(&data, split, category.as_deref())?;
            m.save(&out)?;
            println!(
                "wrote {} with {} templates from {}",
                out.display(),
                m.templates.templates.len(),
                m.templates.source
            );
        }
        Command::Infer {
            cloud,
            params,
            mut set,
            model,
            json,
            png,
        } => {
            if let Some(model) = model {
                set.insert(0, format!("model_path={}", model.display()));
            }
            infer(&cloud, params.as_deref(), &set, json, png)?
        }
        Command::Samples {
            out,
            count,
            seed,
            scene: true,
            ..
        } => {
            let opts = semcorr::tools::scenes::SceneOptions {
                count,
                seed,
                ..Default::default()
            };
            let files = semcorr::tools::scenes::write_scenes(&out, &opts)?;
            println!("wrote {} scenes to {}", files.len(), out.display());
        }
        Command::Samples {
            out,
            category,
            count,
            points,
            seed,
            noise,
            scene: false,
        } => {
            let opts = semcorr::tools::samples::SampleOptions {
                category,
                count,
                points,
                seed,
                noise_m: noise,
                ..Default::default()
            };
            let files = semcorr::tools::samples::write_samples(&out, &opts)?;
            println!("wrote {} clouds to {}", files.len(), out.display());
        }
        Command::Bench { what } => match what {
            BenchCommand::Node {
                params,
                points,
                repeats,
                rate,
            } => {
                let params = match params {
                    Some(path) => NodeParams::from_ros_yaml(&path, NODE_NAME)?,
                    None => NodeParams::default(),
                };
                println!(
                    "{}",
                    semcorr::tools::bench_node::node_bench(&params, &points, repeats, rate)?
                );
            }
            BenchCommand::Model { repeats } => {
                println!("{}", semcorr::tools::bench_model::try_model_bench(repeats)?)
            }
            BenchCommand::Deploy {
                checkpoint,
                data,
                out,
                repeats,
            } => {
                let tmp =
                    std::env::temp_dir().join(format!("semcorr-deploy-{}", std::process::id()));
                let dir = out.unwrap_or(tmp);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                println!(
                    "{}",
                    semcorr::tools::bench_deploy::deploy_bench(
                        &checkpoint,
                        data.as_deref(),
                        &dir,
                        repeats
                    )?
                );
            }
            BenchCommand::Geodesic {
                points,
                k,
                sources,
                repeats,
            } => println!(
                "{}",
                semcorr::tools::bench_geodesic::geodesic_bench(points, k, sources, repeats)
            ),
        },
    }
    Ok(())
}

/// The node's section name in parameters files.
const NODE_NAME: &str = "semcorr_node";

/// `semcorr infer`: the node's pipeline on a file, with the node's parameters; prints every
/// template's match and writes what the node would publish as JSON, optionally a picture.
fn infer(
    cloud_path: &Path,
    params_path: Option<&Path>,
    overrides: &[String],
    json: Option<PathBuf>,
    png: Option<PathBuf>,
) -> Result<()> {
    use semcorr::pipeline::{Pipeline, Settings};
    let default_file = Path::new("config/semcorr.yaml");
    let mut params = match params_path {
        Some(path) => NodeParams::from_ros_yaml(path, NODE_NAME)?,
        None if default_file.is_file() => NodeParams::from_ros_yaml(default_file, NODE_NAME)?,
        None => NodeParams::default(),
    };
    params.apply_overrides(overrides)?;
    let pipeline = Pipeline::new(&params)?;
    let settings = Settings::from_params(&params)?;
    let started = std::time::Instant::now();
    let cloud = semcorr::Cloud::read(cloud_path)?;
    let read_time = started.elapsed();
    let mut r = pipeline
        .process(&cloud, &settings)
        .with_context(|| format!("{}", cloud_path.display()))?;
    r.times.decode = read_time;
    print!("{}", semcorr::matching::format_table(&r.matches));
    println!(
        "{}: {} of {} templates published; {} points ({} not finite), {} after filters; \
         {:.1} ms (read {:.1}, filter {:.1}, network {:.1}, match {:.1})",
        cloud_path.display(),
        r.correspondences.len(),
        r.matches.len(),
        r.input_points,
        r.dropped_non_finite,
        r.filtered.len(),
        r.times.total().as_secs_f64() * 1e3,
        r.times.decode.as_secs_f64() * 1e3,
        r.times.filter.as_secs_f64() * 1e3,
        r.times.inference.as_secs_f64() * 1e3,
        r.times.matching.as_secs_f64() * 1e3,
    );
    if let Some(path) = json {
        let report = serde_json::json!({
            "cloud": cloud_path.display().to_string(),
            "model": params.model_path,
            "category": pipeline.model.category.name,
            "input_points": r.input_points,
            "dropped_non_finite": r.dropped_non_finite,
            "filtered_points": r.filtered.len(),
            "correspondences": r.correspondences,
            "matches": r.matches,
        });
        let text = serde_json::to_string_pretty(&report)?;
        semcorr::error::write_file_atomic(&path, text.as_bytes())?;
    }
    if let Some(path) = png {
        let title = format!(
            "{}: {} ({})",
            pipeline.model.category.name,
            cloud_path.file_name().unwrap_or_default().to_string_lossy(),
            pipeline.model.precision
        );
        semcorr::picture::render_png(
            &path,
            &r.model_frame,
            &r.prepared,
            &r.embeddings,
            &r.matches,
            &title,
            (800, 600),
        )?;
    }
    Ok(())
}

/// The named categories, or all of the dataset's when none are named.
fn select_categories<'a>(
    dataset: &'a Dataset,
    names: &[String],
) -> Result<Vec<&'a semcorr::dataset::Category>> {
    if names.is_empty() {
        return Ok(dataset.categories.iter().collect());
    }
    Ok(names
        .iter()
        .map(|n| dataset.category(n))
        .collect::<semcorr::Result<_>>()?)
}
