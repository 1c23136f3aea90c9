//! `semcorr`: the companion CLI. A thin layer over the library: parse arguments, call, print.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use semcorr::dataset::{synth, Dataset, Split};
use semcorr::eval;
use std::path::PathBuf;

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
        #[arg(long, default_value = "test")]
        split: String,
        /// Baseline embedder: random | xyz | fpfh (ignored with --model).
        #[arg(long, default_value = "random")]
        embedder: String,
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
        /// f32 | f16 | q8_0 | q4_0
        #[arg(long, default_value = "f32")]
        precision: String,
        #[arg(long)]
        out: PathBuf,
        /// Dataset for the templates (default: the checkpoint's `data`).
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, default_value = "train")]
        split: String,
    },
    /// Few-shot: rebuild a model's templates from your own annotated clouds (KeypointNet
    /// format) without retraining, writing a new model file.
    Templates {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "train")]
        split: String,
        /// Category in --data (default: the model's, or the dataset's only one).
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Find the model's keypoints on a cloud (.pcd or .ply).
    Infer {
        /// A deployment model (.gguf).
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        cloud: PathBuf,
        /// Write the matches as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Draw the cloud coloured by embedding, with the keypoints, to this PNG (800x600).
        #[arg(long)]
        png: Option<PathBuf>,
        #[arg(long, default_value_t = semcorr::deploy::MatchParams::default().min_score)]
        min_score: f32,
        /// Skip the geometric consistency check.
        #[arg(long)]
        no_geometry: bool,
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
            let split: Split = split.parse()?;
            let network;
            let embedder: Box<dyn eval::Embedder + '_> = match &model {
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
                    Box::new(
                        network.embedder(ckpt.meta.config.num_points, &candle_core::Device::Cpu),
                    )
                }
                None => eval::baseline(&embedder, seed)?,
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
            let precision: semcorr::deploy::Precision = precision.parse()?;
            let model = semcorr::deploy::DeployedModel::from_checkpoint(
                &checkpoint,
                precision,
                data.as_deref(),
                split.parse()?,
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
            m.retemplate(&data, split.parse()?, category.as_deref())?;
            m.save(&out)?;
            println!(
                "wrote {} with {} templates from {}",
                out.display(),
                m.templates.templates.len(),
                m.templates.source
            );
        }
        Command::Infer {
            model,
            cloud,
            json,
            png,
            min_score,
            no_geometry,
        } => infer(&model, &cloud, json, png, min_score, no_geometry)?,
        Command::Samples {
            out,
            category,
            count,
            points,
            seed,
            noise,
        } => {
            let opts = semcorr::node::samples::SampleOptions {
                category,
                count,
                points,
                seed,
                noise_m: noise,
                ..Default::default()
            };
            let files = semcorr::node::samples::write_samples(&out, &opts)?;
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
                    Some(path) => semcorr::node::NodeParams::from_ros_yaml(&path, "semcorr_node")?,
                    None => semcorr::node::NodeParams::default(),
                };
                println!(
                    "{}",
                    semcorr::node::bench::node_bench(&params, &points, repeats, rate)?
                );
            }
            BenchCommand::Model { repeats } => {
                println!("{}", semcorr::model::bench::try_model_bench(repeats)?)
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
                    semcorr::deploy::bench::deploy_bench(
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
                semcorr::bench::geodesic_bench(points, k, sources, repeats)
            ),
        },
    }
    Ok(())
}

/// `semcorr infer`: embed, match, print; optionally JSON and a picture.
fn infer(
    model: &std::path::Path,
    cloud_path: &std::path::Path,
    json: Option<PathBuf>,
    png: Option<PathBuf>,
    min_score: f32,
    no_geometry: bool,
) -> Result<()> {
    use semcorr::deploy::{matcher, DeployedModel, MatchParams, Matcher};
    let m = DeployedModel::load(model)?;
    let cloud = semcorr::Cloud::read(cloud_path)?;
    let (prepared, emb) = m
        .embed(&cloud)
        .with_context(|| format!("embedding {}", cloud_path.display()))?;
    let matcher = Matcher::new(MatchParams {
        min_score,
        geometric: !no_geometry,
        ..Default::default()
    });
    let matches = matcher.match_prepared(&m.templates, &cloud, &prepared, &emb);
    print!("{}", matcher::format_table(&matches));
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&matches)?;
        semcorr::error::write_file_atomic(&path, text.as_bytes())?;
    }
    if let Some(path) = png {
        let title = format!(
            "{}: {} ({})",
            m.category.name,
            cloud_path.file_name().unwrap_or_default().to_string_lossy(),
            m.precision
        );
        semcorr::deploy::render::render_png(
            &path,
            &cloud,
            &prepared,
            &emb,
            &matches,
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
