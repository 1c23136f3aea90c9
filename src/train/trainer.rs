//! The training loop: batches of models, the geodesic consistency loss, AdamW with a
//! step-decayed learning rate, per-epoch validation (loss and mGE), atomic checkpoints,
//! metrics.csv and a plot of the curves.

use super::augment::{training_item, TrainingItem};
use super::checkpoint::{Checkpoint, CheckpointMeta, EpochMetrics, CHECKPOINT_FORMAT};
use super::config::{CheckpointChoice, InitLayers, TrainConfig};
use super::loss::{geodesic_consistency_loss, BatchKeypoint, Margins};
use super::margins::MarginTable;
use super::optim::{AdamW, AdamWConfig};
use super::report::CURVES_PNG;
use super::seeded_init::SeededVarMap;
use crate::cloud::{PrepareConfig, RotationMode};
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
/// The chosen epoch's weights without the optimizer's state: what `init` and shipping
/// need (`models/backbone-pointnet.safetensors` is one).
pub const BACKBONE_FILE: &str = "backbone.safetensors";

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
        self.load_weights_except(weights, origin, None)
    }

    /// As `load_weights`, leaving the variables whose names start with `skip` as they are.
    pub fn load_weights_except(
        &self,
        weights: &HashMap<String, Tensor>,
        origin: &str,
        skip: Option<&str>,
    ) -> Result<()> {
        for (name, var) in self.named_vars() {
            if skip.is_some_and(|p| name.starts_with(p)) {
                continue;
            }
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

/// One category of a run: its models and the margins its batches use.
struct CategoryData {
    class_id: String,
    name: String,
    train: Vec<AnnotatedModel>,
    val: Vec<AnnotatedModel>,
    /// Loaded only with `monitor_test`.
    test: Vec<AnnotatedModel>,
    table: MarginTable,
    margins: Margins,
}

/// The first `n` models (`n` = 0: all); asking for more than there are is an error, so a
/// benchmark never trains on fewer models than it reports.
fn first_models(
    mut models: Vec<AnnotatedModel>,
    n: usize,
    key: &str,
    category: &str,
) -> Result<Vec<AnnotatedModel>> {
    if n > models.len() {
        return Err(Error::invalid(format!(
            "config key '{key}': {n} models asked, category '{category}' has {}",
            models.len()
        )));
    }
    if n > 0 {
        models.truncate(n);
    }
    Ok(models)
}

/// Every category of `cfg.category`, with margins from `resumed` when it has them.
fn load_categories(cfg: &TrainConfig, resumed: Option<&Checkpoint>) -> Result<Vec<CategoryData>> {
    if !cfg.data.is_dir() {
        return Err(Error::invalid(format!(
            "config key 'data': dataset folder {} does not exist",
            cfg.data.display()
        )));
    }
    let dataset = Dataset::open(&cfg.data)?;
    let mut out: Vec<CategoryData> = Vec::new();
    for (i, wanted) in cfg.categories().into_iter().enumerate() {
        let category = dataset.category(wanted)?;
        if out.iter().any(|c| c.class_id == category.class_id) {
            return Err(Error::invalid(format!(
                "config key 'category': '{wanted}' is listed twice"
            )));
        }
        let train = first_models(
            dataset.load_split(category, Split::Train)?,
            cfg.train_models,
            "train_models",
            &category.name,
        )?;
        let val = dataset.load_split(category, Split::Val)?;
        let val = first_models(val, cfg.val_models, "val_models", &category.name)?;
        let test = if cfg.monitor_test {
            dataset.load_split(category, Split::Test)?
        } else {
            Vec::new()
        };
        if !train.iter().any(|m| m.annotation.keypoints.len() >= 2) {
            return Err(Error::invalid(format!(
                "category '{}' has no annotated training models in {}",
                category.name,
                cfg.data.display()
            )));
        }
        let stored =
            resumed.and_then(
                |c| match c.meta.margins_by_category.get(&category.class_id) {
                    Some(t) => Some(t.clone()),
                    None if i == 0 => Some(c.meta.margins.clone()),
                    None => None,
                },
            );
        let table = match stored {
            Some(t) => t,
            None => MarginTable::compute(&train, DEFAULT_K)?,
        };
        out.push(CategoryData {
            class_id: category.class_id.clone(),
            name: category.name.clone(),
            train,
            val,
            test,
            margins: Margins::from_config(&cfg.loss, table.clone()),
            table,
        });
    }
    Ok(out)
}

/// The RNG of epoch `epoch`: a pure function of (seed, epoch), so resuming needs no saved
/// RNG stream.
fn epoch_rng(seed: u64, epoch: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64 + 1);
    rng
}

/// One epoch's batches as (category, model indices): each category's models shuffled and
/// cut into batches, and, with several categories, the batches shuffled together. One
/// category draws exactly what runs before shared backbones drew.
fn epoch_batches(
    categories: &[CategoryData],
    batch_size: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<(usize, Vec<usize>)> {
    let mut batches = Vec::new();
    for (c, cat) in categories.iter().enumerate() {
        let mut order: Vec<usize> = (0..cat.train.len()).collect();
        order.shuffle(rng);
        batches.extend(order.chunks(batch_size).map(|b| (c, b.to_vec())));
    }
    if categories.len() > 1 {
        batches.shuffle(rng);
    }
    batches
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

/// mGE of `models` at the poses the run trains for (`augment.rotation`), averaged over
/// `cfg.val_views` posings (seeds 0..n, the same every epoch); None when no model counts.
fn posed_mge(
    net: &Network,
    cat: &CategoryData,
    models: &[AnnotatedModel],
    cfg: &TrainConfig,
    device: &Device,
) -> Option<f64> {
    let embedder = net.embedder(cfg.prepare, device);
    let views = if cfg.augment.rotation == RotationMode::None {
        1 // every posing is the same
    } else {
        cfg.val_views
    };
    let mges: Vec<f64> = (0..views as u64)
        .filter_map(|seed| {
            let posing = Posing {
                rotation: cfg.augment.rotation,
                seed,
                yaw_in_data: false,
            };
            evaluate_models_posed(&cat.class_id, &cat.name, models, &embedder, posing)
                .map(|r| r.mge)
                .ok()
        })
        .collect();
    (!mges.is_empty()).then(|| mges.iter().sum::<f64>() / mges.len() as f64)
}

/// The mean over categories of what `f` gives (None when no category gives a value).
fn mean_over<F: Fn(&CategoryData) -> Result<Option<f64>>>(
    categories: &[CategoryData],
    f: F,
) -> Result<Option<f64>> {
    let mut values = Vec::new();
    for cat in categories {
        if let Some(v) = f(cat)? {
            values.push(v);
        }
    }
    Ok((!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64))
}

/// The epoch (1-based) whose weights `select` keeps, judged on `history` alone (so a
/// resumed run agrees); None before any validation, except for `last`.
pub fn chosen_epoch(
    history: &[EpochMetrics],
    select: CheckpointChoice,
    window: usize,
) -> Option<usize> {
    let validated: Vec<(usize, f64)> = history
        .iter()
        .filter_map(|m| m.val_mge.map(|v| (m.epoch, v)))
        .collect();
    let lowest = |scores: Vec<(usize, f64)>| {
        scores
            .into_iter()
            .fold(None, |best: Option<(usize, f64)>, (e, v)| match best {
                Some((_, b)) if b <= v => best,
                _ => Some((e, v)),
            })
            .map(|(e, _)| e)
    };
    match select {
        CheckpointChoice::Last => history.last().map(|m| m.epoch),
        CheckpointChoice::Best => lowest(validated),
        CheckpointChoice::Smoothed => lowest(
            (0..validated.len())
                .map(|i| {
                    let from = (i + 1).saturating_sub(window);
                    let part = &validated[from..=i];
                    (
                        validated[i].0,
                        part.iter().map(|(_, v)| v).sum::<f64>() / part.len() as f64,
                    )
                })
                .collect(),
        ),
    }
}

fn val_mge_of(history: &[EpochMetrics], epoch: Option<usize>) -> Option<f64> {
    let epoch = epoch?;
    history.iter().find(|m| m.epoch == epoch)?.val_mge
}

/// With `cfg.init`: its weights, and the architecture and preprocessing it was trained
/// with written into `cfg` (a fine-tuned network must be the same network, fed the same).
fn initial_weights(cfg: &mut TrainConfig) -> Result<Option<HashMap<String, Tensor>>> {
    let Some(path) = cfg.init.clone() else {
        return Ok(None);
    };
    let init =
        Checkpoint::load(&path).map_err(|e| Error::invalid(format!("config key 'init': {e}")))?;
    cfg.backbone = init.meta.config.backbone.clone();
    cfg.prepare = init.meta.config.prepare;
    println!(
        "init: {} layers of {} (trained on {}), with its architecture and preprocessing",
        match cfg.init_layers {
            InitLayers::All => "all",
            InitLayers::Body => "the body's",
        },
        path.display(),
        init.meta.config.category
    );
    Ok(Some(init.model_weights()))
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
    let init = match &resumed {
        Some(_) => None, // the resumed weights win; `init` is history
        None => initial_weights(&mut cfg)?,
    };
    let categories = load_categories(&cfg, resumed.as_ref())?;
    let net = Network::new(&cfg.backbone, cfg.seed, &device)?;
    if let (Some(weights), Some(path)) = (&init, &cfg.init) {
        net.load_weights_except(
            weights,
            &format!("config key 'init' ({})", path.display()),
            match cfg.init_layers {
                InitLayers::All => None,
                InitLayers::Body => Some(cfg.backbone.embedding_layer()),
            },
        )?;
    }
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
    if let Some(ckpt) = &resumed {
        net.load_weights(&ckpt.model_weights(), "resume checkpoint")?;
        opt.load_state(&ckpt.tensors, ckpt.meta.optimizer_step)
            .map_err(Error::candle("resume checkpoint"))?;
        start_epoch = ckpt.meta.epoch;
        history = ckpt.meta.history.clone();
    }
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;

    let steps_per_epoch: usize = categories
        .iter()
        .map(|c| c.train.len().div_ceil(cfg.batch_size))
        .sum();
    let bar = progress_bar(
        &cfg,
        steps_per_epoch * (cfg.epochs - start_epoch.min(cfg.epochs)),
    );
    for epoch in start_epoch..cfg.epochs {
        let started = Instant::now();
        let lr = cfg.learning_rate(epoch);
        opt.set_learning_rate(lr);
        let mut rng = epoch_rng(cfg.seed, epoch);
        let (mut sum, mut pull, mut push) = (0.0, 0.0, 0.0);
        for (c, batch) in epoch_batches(&categories, cfg.batch_size, &mut rng) {
            let cat = &categories[c];
            let seeds: Vec<u64> = batch.iter().map(|_| rng.random()).collect();
            let items = batch
                .iter()
                .zip(seeds)
                .map(|(&i, s)| {
                    training_item(&cat.train[i], &cfg, true, &mut ChaCha8Rng::seed_from_u64(s))
                })
                .collect::<Result<Vec<_>>>()?;
            let (x, kps) = batch_tensor(&items, &device)?;
            let mut step = || -> candle_core::Result<super::loss::LossValue> {
                let emb = net.backbone.forward_t(&x, true)?;
                let loss = geodesic_consistency_loss(&emb, &kps, &cat.margins, &cfg.loss)?;
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
        let has_val = categories.iter().any(|c| !c.val.is_empty());
        let (val_loss, val_mge, test_mge) = if validate && has_val {
            let loss = mean_over(&categories, |c| {
                (!c.val.is_empty())
                    .then(|| validation_loss(&net, &c.val, &cfg, &c.margins, &device))
                    .transpose()
            })?;
            let mge = mean_over(&categories, |c| {
                Ok(posed_mge(&net, c, &c.val, &cfg, &device))
            })?;
            let test = mean_over(&categories, |c| {
                Ok(posed_mge(&net, c, &c.test, &cfg, &device))
            })?;
            (loss, mge, test)
        } else {
            (None, None, None)
        };
        history.push(EpochMetrics {
            epoch: epoch + 1,
            lr,
            train_loss: sum / batches,
            train_pull: pull / batches,
            train_push: push / batches,
            val_loss,
            val_mge,
            test_mge,
            seconds: started.elapsed().as_secs_f64(),
        });
        let chosen = chosen_epoch(&history, cfg.select, cfg.select_window);
        let improved = chosen == Some(epoch + 1);
        let best = val_mge_of(&history, chosen);
        let ckpt = Checkpoint {
            meta: CheckpointMeta {
                format: CHECKPOINT_FORMAT,
                config: cfg.clone(),
                epoch: epoch + 1,
                optimizer_step: opt.steps_taken(),
                lr,
                best_val_mge: best,
                margins: categories[0].table.clone(),
                margins_by_category: if categories.len() > 1 {
                    categories
                        .iter()
                        .map(|c| (c.class_id.clone(), c.table.clone()))
                        .collect()
                } else {
                    Default::default()
                },
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
            "epoch {:>3}: loss {:.4} (pull {:.4}, push {:.4}){}{}{} lr {:.2e} {:.1}s",
            epoch + 1,
            sum / batches,
            pull / batches,
            push / batches,
            val_loss.map_or(String::new(), |v| format!(", val loss {v:.4}")),
            val_mge.map_or(String::new(), |v| format!(", val mGE {v:.4}")),
            test_mge.map_or(String::new(), |v| format!(", test mGE {v:.4}")),
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
    let best_path = cfg.out.join(BEST_CHECKPOINT);
    if cfg.out.join(LAST_CHECKPOINT).exists() && !best_path.exists() {
        // No validation models: the last checkpoint is the best we know.
        std::fs::copy(cfg.out.join(LAST_CHECKPOINT), &best_path)
            .map_err(|e| Error::io(&best_path, e))?;
    }
    if best_path.exists() {
        Checkpoint::load(&best_path)?
            .weights_only()
            .save(&cfg.out.join(BACKBONE_FILE))?;
    }
    super::report::plot_curves(&cfg.out.join(CURVES_PNG), &history)?;
    let best_val_mge = val_mge_of(
        &history,
        chosen_epoch(&history, cfg.select, cfg.select_window),
    );
    Ok(TrainOutcome {
        run_dir: cfg.out.clone(),
        best_val_mge,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn history(vals: &[Option<f64>]) -> Vec<EpochMetrics> {
        vals.iter()
            .enumerate()
            .map(|(i, &v)| EpochMetrics {
                epoch: i + 1,
                lr: 1e-3,
                train_loss: 1.0,
                train_pull: 0.5,
                train_push: 0.5,
                val_loss: v,
                val_mge: v,
                test_mge: None,
                seconds: 1.0,
            })
            .collect()
    }

    #[test]
    fn the_choice_rules() {
        // A lucky dip at epoch 2 on a noisy curve that settles lower later.
        let h = history(&[
            Some(0.5),
            Some(0.1),
            Some(0.4),
            Some(0.2),
            None,
            Some(0.2),
            Some(0.2),
        ]);
        assert_eq!(chosen_epoch(&h, CheckpointChoice::Best, 3), Some(2));
        // Trailing means of 3 validations: .5, .3, .333, .233, .267, .2
        assert_eq!(chosen_epoch(&h, CheckpointChoice::Smoothed, 3), Some(7));
        assert_eq!(chosen_epoch(&h, CheckpointChoice::Last, 3), Some(7));
        // Ties keep the earlier epoch; nothing validated, nothing chosen (but the last).
        let h = history(&[Some(0.3), Some(0.3)]);
        assert_eq!(chosen_epoch(&h, CheckpointChoice::Best, 1), Some(1));
        let h = history(&[None, None]);
        assert_eq!(chosen_epoch(&h, CheckpointChoice::Best, 1), None);
        assert_eq!(chosen_epoch(&h, CheckpointChoice::Smoothed, 2), None);
        assert_eq!(chosen_epoch(&h, CheckpointChoice::Last, 2), Some(2));
    }
}
