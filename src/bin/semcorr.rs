//! `semcorr`: the companion CLI. A thin layer over the library: parse arguments, call, print.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use semcorr::cloud::pcd::PcdEncoding;
use semcorr::cloud::RotationMode;
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
        /// With --partial: turn each view about the up axis so its camera lies toward +z
        /// (objects at any yaw, seen as the node's `face_sensor` shows them).
        #[arg(long)]
        view_frame: bool,
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
        /// Seed of the random embedder and of the rotations.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Turn every test cloud (and its keypoints) at random before embedding it: `none`,
        /// `yaw` (about the up axis, y), `yaw:DEG` (within DEG degrees either way),
        /// `tilt:DEG` (yaw, then tilted by up to DEG degrees)
        /// or `so3` (uniform). Geodesics do not change and are not recomputed. Views in the
        /// view frame (`synth --view-frame`) already stand at a uniformly random yaw before
        /// their camera, so only the rest is applied (the tilt of `tilt:DEG`, all of `so3`):
        /// turned about up again, a view would show the camera its back.
        #[arg(long, default_value = "none", value_parser = parse_rotation)]
        rotate: RotationMode,
        /// With a .gguf model: try each cloud at this many yaws about the up axis and
        /// embed it at the one `--yaw-criterion` ranks best (1 = off).
        #[arg(long, default_value_t = 1)]
        yaw_hypotheses: usize,
        /// How the yaw hypotheses are ranked: `shape` (the templates' canonical positions
        /// against the cloud, then one forward pass) or `matches` (a pass per hypothesis).
        #[arg(long, value_enum, default_value_t = semcorr::deploy::YawCriterion::Shape)]
        yaw_criterion: semcorr::deploy::YawCriterion,
        /// With a .gguf model: turn each test view back by this object classifier's yaw
        /// before embedding it, as the node does (views in the node's frame: up +y, camera
        /// toward +z, as `synth --partial --view-frame` writes them).
        #[arg(long)]
        classifier: Option<PathBuf>,
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
        /// Start from a pretrained backbone (`models/backbone-pointnet.safetensors`, or any
        /// run's `backbone.safetensors` or checkpoint): shorthand for `--set init=FILE`.
        /// Its architecture and preprocessing replace the config's; pair it with a
        /// fine-tuning schedule such as `config/finetune.yaml`.
        #[arg(long, value_name = "FILE")]
        init: Option<PathBuf>,
        /// With --init: load `all` its layers or the `body` only (the last layer, which
        /// writes the embedding, starts fresh): `--set init_layers=...`.
        #[arg(long, value_name = "all|body", requires = "init")]
        init_layers: Option<String>,
    },
    /// Train the object classifier (category and yaw of a depth view, before any
    /// embedding network) on procedural single views, and print its validation figures.
    TrainClassifier {
        /// Comma-separated categories, in the order the file lists them.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "mug,bottle,bowl,can,pitcher,laptop,knife"
        )]
        categories: Vec<String>,
        /// Training views (one per procedural model) per category.
        #[arg(long, default_value_t = 400)]
        views: usize,
        /// Validation views per category (other models: seed + 1).
        #[arg(long, default_value_t = 60)]
        val_views: usize,
        #[arg(long, default_value_t = 40)]
        epochs: usize,
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        #[arg(long, default_value_t = 2e-3)]
        lr: f64,
        /// Sample scenes (objects at any yaw) whose objects, segmented as the node does,
        /// join the training views (validation: a fifth as many other scenes).
        #[arg(long, default_value_t = 0)]
        scenes: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
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
        /// Canonical keypoint positions (for poses) from this dataset's training split of
        /// complete clouds, instead of the templates' own models: give it when those are
        /// partial views.
        #[arg(long)]
        positions: Option<PathBuf>,
        /// The category's real sizes, bounding-box diagonal in metres as MIN:MAX (e.g.
        /// 0.08:0.30 for mugs): objects fitted outside it are not published as this
        /// category.
        #[arg(long, value_parser = semcorr::deploy::parse_size_range)]
        size_range: Option<[f32; 2]>,
        /// How the category rests on a table: upright, or on-side (turned a quarter about
        /// its length, front or back up: a knife). The node fits poses for each way; the
        /// positions stay those of the upright complete clouds.
        #[arg(long, default_value_t = semcorr::pose::Rest::Upright)]
        rest: semcorr::pose::Rest,
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
        /// Canonical keypoint positions (for poses) from this dataset's training split of
        /// complete clouds, instead of the templates' own models: give it when those are
        /// partial views.
        #[arg(long)]
        positions: Option<PathBuf>,

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
        /// Use these models instead of the parameters' (repeat for several): shorthand for
        /// `--set model_dir= --set model_paths=[FILE,...] --set classifier_path=` (no
        /// classifier, whose categories are the shipped ones; a later `--set` may name one).
        #[arg(long)]
        model: Vec<PathBuf>,
        /// Write the result as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Draw the result to this PNG (800x600): a scene seen from the sensor with each
        /// object's box and keypoints, or (`segment_scene=false`) the object coloured by
        /// embedding.
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
        /// holes, binary_compressed PCD): a table, a wall, 1-4 tabletop objects, with
        /// truth.json (each object's category, pose and visible keypoints).
        #[arg(long)]
        scene: bool,
        /// With --scene: the PCD data encoding.
        #[arg(long, value_enum, default_value_t = PcdEncoding::BinaryCompressed)]
        pcd_encoding: PcdEncoding,
        /// With --scene: how far an object may be turned away from facing the camera:
        /// degrees either way, or `any` (uniform yaw).
        #[arg(long, alias = "max-yaw", default_value = "30", value_parser = parse_yaw)]
        yaw: f32,
        /// With --scene: comma-separated scene categories (default: the tabletop zoo).
        #[arg(long, value_delimiter = ',')]
        categories: Vec<String>,
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
    /// The node's per-cloud work without ROS (decode, filters, scene, networks, matching)
    /// on single-object sample clouds, or with --scene on 640 x 480 depth-camera scenes
    /// (per stage, p50 and p99, resident memory).
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
        /// Whole scenes with this many objects (the node's parameters as given, all
        /// models) instead of single-object clouds of --points sizes.
        #[arg(long)]
        scene: Option<usize>,
    },
    /// Quality on fresh sample scenes (objects found, categories, keypoints within 3 cm,
    /// visible keypoints published, pose errors) with the node's parameters.
    Scenes {
        /// Node parameters (ros__parameters YAML); default: config/semcorr.yaml's values.
        #[arg(long)]
        params: Option<PathBuf>,
        #[arg(long, default_value_t = 40)]
        count: usize,
        /// Scene seed (the shipped models were trained on synth seed 0; scenes' objects
        /// come from this seed).
        #[arg(long, default_value_t = 9000)]
        seed: u64,
        /// How far an object may be turned away from facing the camera: degrees either
        /// way, or `any` (uniform yaw).
        #[arg(long, alias = "max-yaw", default_value = "30", value_parser = parse_yaw)]
        yaw: f32,
        /// Comma-separated scene categories (default: the whole tabletop zoo).
        #[arg(long, value_delimiter = ',')]
        categories: Vec<String>,
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
            view_frame,
            points,
        } => {
            let opts = synth::SynthOptions {
                categories,
                models_per_category: models,
                seed,
                partial,
                view_frame,
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
            rotate,
            yaw_hypotheses,
            yaw_criterion,
            classifier,
            json,
        } => {
            let dataset = Dataset::open(&data)?;
            let network;
            let deployed;
            let deployed_model = model
                .as_ref()
                .is_some_and(|p| p.extension().is_some_and(|e| e == "gguf"));
            if classifier.is_some() && !deployed_model {
                bail!("--classifier turns views for a deployed model: it needs --model FILE.gguf");
            }
            let classifier = classifier
                .map(|p| semcorr::deploy::classifier::ObjectClassifier::load(&p))
                .transpose()?;
            let embedder: Box<dyn semcorr::embedding::Embedder + '_> = match &model {
                Some(path) if path.extension().is_some_and(|e| e == "gguf") => {
                    deployed = semcorr::deploy::DeployedModel::load(path)?;
                    if categories.is_empty() {
                        categories.push(deployed.category.class_id.clone());
                    }
                    if let Some(classifier) = &classifier {
                        let turned = semcorr::deploy::classifier::TurnedBack {
                            model: &deployed,
                            classifier,
                        };
                        turned.check()?;
                        Box::new(turned)
                    } else if yaw_hypotheses > 1 {
                        Box::new(semcorr::deploy::YawSearch {
                            model: &deployed,
                            hypotheses: yaw_hypotheses,
                            matcher: Default::default(),
                            criterion: yaw_criterion,
                        })
                    } else {
                        Box::new(&deployed)
                    }
                }
                Some(path) => {
                    let (net, ckpt) = semcorr::train::load_network(path)?;
                    if categories.is_empty() {
                        categories
                            .extend(ckpt.meta.config.categories().iter().map(|c| c.to_string()));
                    }
                    network = net;
                    Box::new(network.embedder(ckpt.meta.config.prepare, &candle_core::Device::Cpu))
                }
                None => embedder.embedder(seed),
            };
            let selected = select_categories(&dataset, &categories)?;
            // Views in the view frame stand at a random yaw already (doc of `--rotate`).
            let yaw_in_data = rotate != RotationMode::None && synth::is_view_frame_dataset(&data);
            let posing = eval::Posing {
                rotation: rotate,
                seed,
                yaw_in_data,
            };
            let report = eval::evaluate(&dataset, &selected, split, embedder.as_ref(), posing)?;
            let how = if yaw_in_data {
                ", less its yaw: the views stand at a random yaw already"
            } else {
                ""
            };
            println!(
                "embedder: {}, rotation: {rotate} (seed {seed}{how})\n{report}",
                embedder.name()
            );
            if let Some(path) = json {
                semcorr::error::write_file_atomic(&path, report.to_json().as_bytes())?;
            }
        }
        Command::Train {
            config,
            mut set,
            resume,
            init,
            init_layers,
        } => {
            if let Some(init) = init {
                set.push(format!("init={}", init.display()));
            }
            if let Some(layers) = init_layers {
                set.push(format!("init_layers={layers}"));
            }
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
            positions,
            size_range,
            rest,
        } => {
            let mut model = semcorr::deploy::DeployedModel::from_checkpoint(
                &checkpoint,
                precision,
                data.as_deref(),
                split,
            )?;
            if let Some(positions) = positions {
                model.reposition(&positions, None)?;
            }
            model.templates.size_range_m = size_range;
            model.templates.rest = rest;
            model.save(&out)?;
            println!(
                "wrote {} ({precision}, {} templates, {} weight bytes)",
                out.display(),
                model.templates.templates.len(),
                model.weight_bytes()
            );
        }
        Command::TrainClassifier {
            categories,
            views,
            val_views,
            epochs,
            batch_size,
            lr,
            scenes,
            seed,
            out,
        } => {
            let report = semcorr::train::classifier::train_classifier(
                &semcorr::train::classifier::ClassifierTraining {
                    categories,
                    views,
                    val_views,
                    seed,
                    epochs,
                    batch_size,
                    lr,
                    scenes,
                    out: out.clone(),
                },
            )?;
            println!("{report}");
            println!("wrote {}", out.display());
        }
        Command::Templates {
            model,
            data,
            split,
            category,
            out,
            positions,
        } => {
            let mut m = semcorr::deploy::DeployedModel::load(&model)?;
            m.retemplate(&data, split, category.as_deref())?;
            if let Some(positions) = positions {
                m.reposition(&positions, category.as_deref())?;
            }
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
            if !model.is_empty() {
                let paths: Vec<String> = model.iter().map(|m| m.display().to_string()).collect();
                set.insert(0, format!("model_paths={}", serde_json::to_string(&paths)?));
                set.insert(0, "model_dir=\"\"".to_string());
                set.insert(0, "classifier_path=\"\"".to_string());
            }
            infer(&cloud, params.as_deref(), &set, json, png)?
        }
        Command::Samples {
            out,
            count,
            seed,
            scene: true,
            pcd_encoding,
            yaw,
            categories,
            ..
        } => {
            let opts = semcorr::tools::scenes::SceneOptions {
                count,
                seed,
                max_yaw_deg: yaw,
                categories: semcorr::tools::scenes::tabletop_categories(&categories)?,
                ..Default::default()
            };
            let files = semcorr::tools::scenes::write_scenes(&out, &opts, pcd_encoding)?;
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
            ..
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
                scene,
            } => {
                if let Some(hz) = rate.filter(|hz| !(hz.is_finite() && *hz > 0.0)) {
                    bail!("--rate {hz}: a rate in Hz must be positive (leave it out to feed clouds back to back)");
                }
                let params = bench_params(params.as_deref())?;
                let bench = &semcorr::tools::bench_node::scene_bench;
                let table = match scene {
                    Some(objects) => bench(&params, objects, repeats, rate)?,
                    None => {
                        semcorr::tools::bench_node::node_bench(&params, &points, repeats, rate)?
                    }
                };
                println!("{table}");
            }
            BenchCommand::Scenes {
                params,
                count,
                seed,
                yaw,
                categories,
            } => {
                let params = bench_params(params.as_deref())?;
                let pipeline = semcorr::pipeline::Pipeline::new(&params)?;
                let settings = semcorr::pipeline::Settings::from_params(&params)?;
                let scenes =
                    semcorr::tools::scenes::sample_scenes(&semcorr::tools::scenes::SceneOptions {
                        count,
                        seed,
                        max_yaw_deg: yaw,
                        categories: semcorr::tools::scenes::tabletop_categories(&categories)?,
                        ..Default::default()
                    })?;
                let score = semcorr::tools::scene_eval::evaluate(&pipeline, &settings, &scenes)?;
                println!("{score}");
                for line in &score.missed {
                    println!("missed: {line}");
                }
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

/// A benchmark's node parameters: the given file's, else the built-in defaults.
fn bench_params(path: Option<&Path>) -> Result<NodeParams> {
    Ok(match path {
        Some(path) => NodeParams::from_ros_yaml(path, NODE_NAME)?,
        None => NodeParams::default(),
    })
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
    for warning in &pipeline.warnings {
        eprintln!("warning: {warning}");
    }
    print!("{}", infer_text(&r));
    println!(
        "{}: {} points ({} not finite), {} after filters; {}; {:.1} ms (read {:.1}, filter \
         {:.1}, scene {:.1}, networks {:.1}, match + pose {:.1})",
        cloud_path.display(),
        r.input_points,
        r.dropped_non_finite,
        r.filtered.len(),
        r.scene.summary(r.detections().count()),
        r.times.total().as_secs_f64() * 1e3,
        r.times.decode.as_secs_f64() * 1e3,
        r.times.filter.as_secs_f64() * 1e3,
        r.times.scene.as_secs_f64() * 1e3,
        r.times.inference.as_secs_f64() * 1e3,
        r.times.matching.as_secs_f64() * 1e3,
    );
    if let Some(path) = json {
        let mut report = infer_json(&r, &pipeline);
        report["cloud"] = serde_json::json!(cloud_path.display().to_string());
        let text = serde_json::to_string_pretty(&report)?;
        semcorr::error::write_file_atomic(&path, text.as_bytes())?;
    }
    if let Some(path) = png {
        let name = cloud_path.file_name().unwrap_or_default().to_string_lossy();
        match (&r.scene.segmented, r.objects.first()) {
            (false, Some(o)) if o.embedded.is_some() => {
                let (prepared, embeddings) = o.embedded.as_ref().expect("checked");
                let model = &pipeline.models[o.model];
                let title = format!("{}: {name} ({})", model.category.name, model.precision);
                semcorr::picture::render_png(
                    &path,
                    &o.model_frame,
                    prepared,
                    embeddings,
                    &o.matches,
                    &title,
                    (800, 600),
                )?;
            }
            _ => {
                let title = format!("{name}: {}", r.scene.summary(r.detections().count()));
                semcorr::picture::render_scene_png(&path, &r, &title, (800, 600))?;
            }
        }
    }
    Ok(())
}

/// `infer`'s printout: a line per object candidate, then each detection's template table.
fn infer_text(r: &semcorr::pipeline::CloudResult) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let mut next_id = 0;
    for o in &r.objects {
        let p = &o.pose;
        let verdicts: Vec<String> = o
            .candidates
            .iter()
            .map(|c| format!("{} {:.2}", c.category, c.score))
            .collect();
        let head = match &o.category {
            Some(c) => {
                next_id += 1;
                format!("object {}: {c} score {:.2}", next_id - 1, o.score)
            }
            None => format!("unrecognised: {}", o.unrecognised.as_deref().unwrap_or("?")),
        };
        let _ = writeln!(
            s,
            "{head}; {} points at [{:.3}, {:.3}, {:.3}]; {} keypoints; pose {} [{:.3}, {:.3}, \
             {:.3}] size [{:.3}, {:.3}, {:.3}]; models: {}",
            o.indices.len(),
            o.centroid[0],
            o.centroid[1],
            o.centroid[2],
            o.correspondences.len(),
            match p.source {
                semcorr::pipeline::PoseSource::Keypoints { inliers, rms, .. } => {
                    format!("from {inliers} keypoints (rms {:.1} mm)", rms * 1e3)
                }
                semcorr::pipeline::PoseSource::Cluster => "from the cluster".to_string(),
            },
            p.position[0],
            p.position[1],
            p.position[2],
            p.size[0],
            p.size[1],
            p.size[2],
            verdicts.join(", ")
        );
        if let Some(c) = &o.classified {
            let _ = writeln!(
                s,
                "  classifier: {} ({:.2}), yaw {:.0} deg (confidence {:.2}), leaning {:.0} deg",
                c.category, c.probability, c.yaw_deg, c.yaw_confidence, c.lean_deg
            );
        }
        if !o.matches.is_empty() {
            s += &semcorr::matching::format_table(&o.matches);
        }
    }
    s
}

/// `infer --json`: the objects, all in the input frame, and the plane.
fn infer_json(
    r: &semcorr::pipeline::CloudResult,
    pipeline: &semcorr::pipeline::Pipeline,
) -> serde_json::Value {
    use serde_json::json;
    let object = |id: Option<u32>, o: &semcorr::pipeline::ObjectResult| {
        let keypoints: Vec<_> = o
            .correspondences
            .iter()
            .map(|c| {
                json!({"id": c.keypoint_id, "name": c.name, "xyz": c.xyz, "score": c.score,
                       "input_index": c.input_index})
            })
            .collect();
        json!({
            "id": id,
            "category": o.category,
            "score": o.score,
            "points": o.indices.len(),
            "centroid": o.centroid,
            "pose": {"position": o.pose.position, "orientation": o.pose.orientation},
            "pose_fit": o.pose.source,
            "size": o.pose.size,
            "keypoints": keypoints,
            "matches": o.matches,
            "candidates": o.candidates,
            "unrecognised": o.unrecognised,
            "classified": o.classified,
        })
    };
    let mut next_id = 0u32;
    let objects: Vec<_> = r
        .objects
        .iter()
        .map(|o| {
            let id = o.category.is_some().then(|| {
                next_id += 1;
                next_id - 1
            });
            object(id, o)
        })
        .collect();
    json!({
        "models": pipeline.model_paths,
        "input_points": r.input_points,
        "dropped_non_finite": r.dropped_non_finite,
        "filtered_points": r.filtered.len(),
        "objects": objects,
        "plane": r.scene.plane,
        "scene": r.scene,
        "summary": r.scene.summary(next_id as usize),
        "times_ms": {
            "read": r.times.decode.as_secs_f64() * 1e3,
            "filter": r.times.filter.as_secs_f64() * 1e3,
            "scene": r.times.scene.as_secs_f64() * 1e3,
            "inference": r.times.inference.as_secs_f64() * 1e3,
            "matching": r.times.matching.as_secs_f64() * 1e3,
        },
    })
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

/// `--rotate`'s parser: clap prefixes the message with the option's name and value.
fn parse_rotation(text: &str) -> std::result::Result<RotationMode, String> {
    text.parse()
        .map_err(|e: semcorr::error::Error| e.to_string())
}

/// `--yaw`: the largest turn in degrees, 0 to 180, or `any` (180: uniform).
fn parse_yaw(text: &str) -> std::result::Result<f32, String> {
    if text.trim() == "any" {
        return Ok(180.0);
    }
    match text.trim().parse::<f32>() {
        Ok(deg) if (0.0..=180.0).contains(&deg) => Ok(deg),
        _ => Err(format!(
            "expected degrees in [0, 180] or `any`, got {text:?}"
        )),
    }
}
