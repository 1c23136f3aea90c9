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
        /// A trained checkpoint (`semcorr train`): evaluates the network instead of a
        /// baseline, on the checkpoint's category unless --categories says otherwise.
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
        Command::Bench { what } => match what {
            BenchCommand::Model { repeats } => {
                println!("{}", semcorr::model::bench::try_model_bench(repeats)?)
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
