//! The training loop: batches of models, the geodesic consistency loss, AdamW with a
//! step-decayed learning rate, per-epoch validation (loss and mGE), atomic checkpoints,
//! metrics.csv and a plot of the curves.

use super::augment::{training_item, TrainingItem};
use super::checkpoint::{Checkpoint, CheckpointMeta, EpochMetrics, CHECKPOINT_FORMAT};
use super::config::TrainConfig;
use super::loss::{geodesic_consistency_loss, BatchKeypoint, Margins};
use super::margins::MarginTable;
use super::optim::{AdamW, AdamWConfig};
use super::report::CURVES_PNG;
use super::seeded_init::SeededVarMap;
use crate::cloud::PrepareConfig;
use crate::dataset::{AnnotatedModel, Dataset, Split};
use crate::error::{Error, Result};
use crate::eval::{evaluate_models_posed, Posing};
use crate::geodesic::DEFAULT_K;
use crate::model::{build_backbone, Backbone, NetworkEmbedder};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// File names inside the run folder.
pub const LAST_CHECKPOINT: &str = "last.safetensors";
pub const BEST_CHECKPOINT: &str = "best.safetensors";

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    pub run_dir: PathBuf,
    pub best_val_mge: Option<f64>,
    pub history: Vec<EpochMetrics>,
}

/// A network with its parameters, built reproducibly from a seed.
pub struct Network {
    pub backbone: Box<dyn Backbone>,
    pub varmap: VarMap,
}

impl Network {
    pub fn new(cfg: &crate::model::BackboneConfig, seed: u64, device: &Device) -> Result<Network> {
        let store = SeededVarMap::new(seed);
        let varmap = store.varmap.clone();
        let vb = VarBuilder::from_backend(Box::new(store), DType::F32, device.clone());
        let backbone = build_backbone(cfg, vb).map_err(Error::candle("building the backbone"))?;
        Ok(Network { backbone, varmap })
    }

    /// Named variables, sorted by name.
    pub fn named_vars(&self) -> Vec<(String, candle_core::Var)> {
        super::seeded_init::sorted_vars(&self.varmap)
    }

    /// Overwrites every variable from `weights` (names without prefix); all must be present
    /// with the right shape, and the error names the first that is not.
    pub fn load_weights(&self, weights: &HashMap<String, Tensor>, origin: &str) -> Result<()> {
        for (name, var) in self.named_vars() {
            let t = weights
                .get(&name)
                .ok_or_else(|| Error::invalid(format!("{origin}: missing tensor '{name}'")))?;
            if t.shape() != var.shape() {
                return Err(Error::invalid(format!(
                    "{origin}: tensor '{name}' has shape {:?}, the network expects {:?}",
                    t.shape().dims(),
                    var.shape().dims()
                )));
            }
            let t = t
                .to_dtype(DType::F32)
                .and_then(|t| t.to_device(var.device()));
            var.set(&t.map_err(Error::candle(origin))?)
                .map_err(Error::candle(origin))?;
        }
        Ok(())
    }

    pub fn weights(&self) -> HashMap<String, Tensor> {
        self.named_vars()
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .collect()
    }

    /// The network as an `Embedder` with the training preprocessing.
    pub fn embedder(&self, prepare: PrepareConfig, device: &Device) -> NetworkEmbedder<'_> {
        NetworkEmbedder {
            backbone: self.backbone.as_ref(),
            prepare,
            device: device.clone(),
            name: "network".into(),
        }
    }
}

/// The network stored in a checkpoint, ready for inference, with the checkpoint.
pub fn load_network(path: &Path) -> Result<(Network, Checkpoint)> {
    let ckpt = Checkpoint::load(path)?;
    let net = Network::new(&ckpt.meta.config.backbone, 0, &Device::Cpu)?;
    net.load_weights(&ckpt.model_weights(), &path.display().to_string())?;
    Ok((net, ckpt))
}

/// Everything loaded once per run.
struct RunData {
    train: Vec<AnnotatedModel>,
    val: Vec<AnnotatedModel>,
    class_id: String,
    name: String,
}

fn load_data(cfg: &TrainConfig) -> Result<RunData> {
    if !cfg.data.is_dir() {
        return Err(Error::invalid(format!(
            "config key 'data': dataset folder {} does not exist",
            cfg.data.display()
        )));
    }
    let dataset = Dataset::open(&cfg.data)?;
    let category = dataset.category(&cfg.category)?;
    let train = dataset.load_split(category, Split::Train)?;
    let val = dataset.load_split(category, Split::Val)?;
    if !train.iter().any(|m| m.annotation.keypoints.len() >= 2) {
        return Err(Error::invalid(format!(
            "category '{}' has no annotated training models in {}",
            cfg.category,
            cfg.data.display()
        )));
    }
    Ok(RunData {
        train,
        val,
        class_id: category.class_id.clone(),
        name: category.name.clone(),
    })
}

/// The RNG of epoch `epoch`: a pure function of (seed, epoch), so resuming needs no saved
/// RNG stream.
fn epoch_rng(seed: u64, epoch: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64 + 1);
    rng
}

fn batch_tensor(
    items: &[TrainingItem],
    device: &Device,
) -> Result<(Tensor, Vec<Vec<BatchKeypoint>>)> {
    let n = items[0].points.len();
    let flat: Vec<f32> = items
        .iter()
        .flat_map(|i| i.points.iter().flatten().copied())
        .collect();
    let t = Tensor::from_vec(flat, (items.len(), n, 3), device).map_err(Error::candle("batch"))?;
    Ok((t, items.iter().map(|i| i.keypoints.clone()).collect()))
}

/// Mean loss of the models in eval mode and without augmentation.
fn validation_loss(
    net: &Network,
    models: &[AnnotatedModel],
    cfg: &TrainConfig,
    margins: &Margins,
    device: &Device,
) -> Result<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut total = 0.0;
    let mut batches = 0;
    for chunk in models.chunks(cfg.batch_size) {
        let items = chunk
            .iter()
            .map(|m| training_item(m, cfg, false, &mut rng))
            .collect::<Result<Vec<_>>>()?;
        let (x, kps) = batch_tensor(&items, device)?;
        let emb = net
            .backbone
            .forward_t(&x, false)
            .map_err(Error::candle("validation"))?;
        let loss = geodesic_consistency_loss(&emb, &kps, margins, &cfg.loss)
            .map_err(Error::candle("validation loss"))?;
        total += loss
            .total
            .to_scalar::<f32>()
            .map_err(Error::candle("validation loss"))? as f64;
        batches += 1;
    }
    Ok(total / batches.max(1) as f64)
}

/// Trains as configured; with `resume`, continues the run stored in that checkpoint
/// (its config wins, except `epochs`, which may be raised).
pub fn train(mut cfg: TrainConfig, resume: Option<&Path>) -> Result<TrainOutcome> {
    let device = Device::Cpu;
    let resumed = match resume {
        Some(path) => {
            let ckpt = Checkpoint::load(path)?;
            let epochs = cfg.epochs;
            let out = cfg.out.clone();
            cfg = ckpt.meta.config.clone();
            cfg.epochs = epochs.max(ckpt.meta.epoch);
            cfg.out = out;
            Some(ckpt)
        }
        None => None,
    };
    cfg.validate()?;
    let data = load_data(&cfg)?;
    let table = match &resumed {
        Some(c) => c.meta.margins.clone(),
        None => MarginTable::compute(&data.train, DEFAULT_K)?,
    };
    let margins = Margins::from_config(&cfg.loss, table.clone());
    let net = Network::new(&cfg.backbone, cfg.seed, &device)?;
    let mut opt = AdamW::new(
        net.named_vars(),
        AdamWConfig {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            grad_clip: cfg.grad_clip,
            ..AdamWConfig::default()
        },
    )
    .map_err(Error::candle("optimizer"))?;
    let mut start_epoch = 0;
    let mut history = Vec::new();
    let mut best = None;
    if let Some(ckpt) = &resumed {
        net.load_weights(&ckpt.model_weights(), "resume checkpoint")?;
        opt.load_state(&ckpt.tensors, ckpt.meta.optimizer_step)
            .map_err(Error::candle("resume checkpoint"))?;
        start_epoch = ckpt.meta.epoch;
        history = ckpt.meta.history.clone();
        best = ckpt.meta.best_val_mge;
    }
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;

    let steps_per_epoch = data.train.len().div_ceil(cfg.batch_size);
    let bar = progress_bar(
        &cfg,
        steps_per_epoch * (cfg.epochs - start_epoch.min(cfg.epochs)),
    );
    for epoch in start_epoch..cfg.epochs {
        let started = Instant::now();
        let lr = cfg.lr * cfg.lr_decay.powi((epoch / cfg.lr_decay_every) as i32);
        opt.set_learning_rate(lr);
        let mut rng = epoch_rng(cfg.seed, epoch);
        let mut order: Vec<usize> = (0..data.train.len()).collect();
        order.shuffle(&mut rng);
        let (mut sum, mut pull, mut push) = (0.0, 0.0, 0.0);
        for batch in order.chunks(cfg.batch_size) {
            let seeds: Vec<u64> = batch.iter().map(|_| rng.random()).collect();
            let items = batch
                .iter()
                .zip(seeds)
                .map(|(&i, s)| {
                    training_item(
                        &data.train[i],
                        &cfg,
                        true,
                        &mut ChaCha8Rng::seed_from_u64(s),
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let (x, kps) = batch_tensor(&items, &device)?;
            let mut step = || -> candle_core::Result<super::loss::LossValue> {
                let emb = net.backbone.forward_t(&x, true)?;
                let loss = geodesic_consistency_loss(&emb, &kps, &margins, &cfg.loss)?;
                opt.step(&loss.total.backward()?)?;
                Ok(loss)
            };
            let loss = step().map_err(Error::candle("training step"))?;
            let value = loss
                .total
                .to_scalar::<f32>()
                .map_err(Error::candle("loss"))? as f64;
            if !value.is_finite() {
                return Err(Error::invalid(format!(
                    "epoch {epoch}: the loss became {value}; lower 'lr' or raise 'grad_clip'"
                )));
            }
            sum += value;
            pull += loss.pull as f64;
            push += loss.push as f64;
            bar.set_message(format!(
                "epoch {}/{} loss {value:.4}",
                epoch + 1,
                cfg.epochs
            ));
            bar.inc(1);
        }
        let batches = steps_per_epoch.max(1) as f64;
        let validate = (epoch + 1) % cfg.val_every == 0 || epoch + 1 == cfg.epochs;
        let (val_loss, val_mge) = if validate && !data.val.is_empty() {
            let loss = validation_loss(&net, &data.val, &cfg, &margins, &device)?;
            let embedder = net.embedder(cfg.prepare, &device);
            // Validated at the poses it is trained for, the same ones every epoch.
            let posing = Posing {
                rotation: cfg.augment.rotation,
                seed: 0,
                yaw_in_data: false,
            };
            let mge =
                evaluate_models_posed(&data.class_id, &data.name, &data.val, &embedder, posing)
                    .map(|r| r.mge)
                    .ok();
            (Some(loss), mge)
        } else {
            (None, None)
        };
        history.push(EpochMetrics {
            epoch: epoch + 1,
            lr,
            train_loss: sum / batches,
            train_pull: pull / batches,
            train_push: push / batches,
            val_loss,
            val_mge,
            seconds: started.elapsed().as_secs_f64(),
        });
        let improved = match (val_mge, best) {
            (Some(v), Some(b)) => v < b,
            (Some(_), None) => true,
            _ => false,
        };
        if improved {
            best = val_mge;
        }
        let ckpt = Checkpoint {
            meta: CheckpointMeta {
                format: CHECKPOINT_FORMAT,
                config: cfg.clone(),
                epoch: epoch + 1,
                optimizer_step: opt.steps_taken(),
                lr,
                best_val_mge: best,
                margins: table.clone(),
                history: history.clone(),
            },
            tensors: checkpoint_tensors(&net, &opt),
        };
        ckpt.save(&cfg.out.join(LAST_CHECKPOINT))?;
        if improved {
            ckpt.save(&cfg.out.join(BEST_CHECKPOINT))?;
        }
        super::report::write_metrics(&cfg.out, &history)?;
        let line = format!(
            "epoch {:>3}: loss {:.4} (pull {:.4}, push {:.4}){}{} lr {:.2e} {:.1}s",
            epoch + 1,
            sum / batches,
            pull / batches,
            push / batches,
            val_loss.map_or(String::new(), |v| format!(", val loss {v:.4}")),
            val_mge.map_or(String::new(), |v| format!(", val mGE {v:.4}")),
            lr,
            started.elapsed().as_secs_f64()
        );
        if bar.is_hidden() {
            println!("{line}");
        } else {
            bar.println(line);
        }
    }
    bar.finish_and_clear();
    if best.is_none()
        && cfg.out.join(LAST_CHECKPOINT).exists()
        && !cfg.out.join(BEST_CHECKPOINT).exists()
    {
        // No validation models: the last checkpoint is the best we know.
        std::fs::copy(cfg.out.join(LAST_CHECKPOINT), cfg.out.join(BEST_CHECKPOINT))
            .map_err(|e| Error::io(cfg.out.join(BEST_CHECKPOINT), e))?;
    }
    super::report::plot_curves(&cfg.out.join(CURVES_PNG), &history)?;
    Ok(TrainOutcome {
        run_dir: cfg.out.clone(),
        best_val_mge: best,
        history,
    })
}

fn checkpoint_tensors(net: &Network, opt: &AdamW) -> HashMap<String, Tensor> {
    let mut t: HashMap<String, Tensor> = net
        .weights()
        .into_iter()
        .map(|(k, v)| (format!("model.{k}"), v))
        .collect();
    t.extend(opt.state_tensors());
    t
}

fn progress_bar(cfg: &TrainConfig, steps: usize) -> indicatif::ProgressBar {
    if !cfg.progress {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(steps as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:30} {pos}/{len} steps {msg} [{elapsed_precise} < {eta_precise}]",
    ) {
        bar.set_style(style);
    }
    bar
}
