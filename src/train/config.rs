//! The training configuration (`semcorr train --config train.yaml`).
//!
//! Every field has a default, so an empty file is a valid config once `data` and
//! `category` are given. Unknown keys are errors that name the key; `--set a.b=value`
//! overrides any field with a YAML scalar before validation.

use crate::cloud::{PrepareConfig, RotationMode};
use crate::error::{Error, Result};
use crate::model::BackboneConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which distance the loss is written in (see `loss`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossForm {
    /// The paper's Eq. 1 and 3: pull = distance, push = relu(margin - distance).
    #[default]
    Paper,
    /// The reference code's: pull = squared distance, push = relu(margin - distance)^2.
    Squared,
}

/// Where the push margin between two correspondence sets comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MarginKind {
    /// The sets' mean geodesic distance over training models having both (Eq. 2).
    #[default]
    Geodesic,
    /// One margin for every pair (`constant_margin`): the ablation baseline.
    Constant,
    /// No push term at all: the ablation that shows the trivial collapse.
    None,
}

/// How the learning rate changes over a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// `lr` times `lr_decay` every `lr_decay_every` epochs (the paper's).
    #[default]
    Step,
    /// From `lr` down to a hundredth of it along a half cosine over the run: what suits
    /// fine-tuning, whose weights need small late steps rather than fixed drops.
    Cosine,
}

/// Which weights of `init` a run starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InitLayers {
    /// Every layer.
    #[default]
    All,
    /// Every layer but the last, which writes the embedding and starts from the seed.
    Body,
}

/// Which epoch's weights `best.safetensors` keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointChoice {
    /// The lowest validation mGE: fine with dozens of validation models, noise with two.
    #[default]
    Best,
    /// The lowest mean of the last `select_window` validation mGEs: one lucky epoch on a
    /// tiny validation set no longer wins.
    Smoothed,
    /// The last epoch: a fixed schedule, no validation at all.
    Last,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// Paper (plain distances) or the reference code's squared form.
    pub form: LossForm,
    /// Geodesic (adaptive) margin, a constant margin, or no push (pull only).
    pub margin: MarginKind,
    /// The margin used when `margin: constant`, in geodesic units (bbox diagonal = 1).
    pub constant_margin: f32,
    /// Weight of the push term (lambda in Eq. 4).
    pub lambda: f32,
    /// Keep this many hardest negative pairs per positive pair (1 = the paper's mining).
    pub negatives_per_positive: f32,
}

impl Default for LossConfig {
    fn default() -> Self {
        LossConfig {
            form: LossForm::Paper,
            margin: MarginKind::Geodesic,
            constant_margin: 0.5,
            lambda: 1.0,
            negatives_per_positive: 1.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Standard deviation of the Gaussian jitter added to every point (0 = off).
    pub jitter_sigma: f32,
    /// Jitter is clipped to +- this value.
    pub jitter_clip: f32,
    /// Rotate each training cloud by a random angle about the up (y) axis, after
    /// normalisation (the older switch; `rotation: yaw` turns before it, as test clouds are).
    pub rotate_up: bool,
    /// Turn each training cloud at random before normalisation: `none`, `yaw`, `yaw:DEG`,
    /// `tilt:DEG` or `so3`, the modes of `eval --rotate`. Validation uses the same mode
    /// (seed 0).
    pub rotation: RotationMode,
    /// Probability of replacing a training cloud by a partial view from a random camera.
    pub partial_view_prob: f32,
    /// Probability of cutting the cloud by a random vertical plane, keeping 40-90% of it,
    /// as an image border cuts an object at the edge of a depth camera's view.
    pub cut_prob: f32,
    /// Remove the lowest part of each training cloud, up to this fraction of its height
    /// (uniform per cloud; 0 = off): the node drops a support plane's inliers, about a
    /// centimetre, which is a quarter of a shallow bowl.
    pub floor_cut: f32,
    /// Lean each training cloud, after `rotation`, by an angle uniform in `[0, lean_deg]`
    /// degrees about a random horizontal axis (0 = off): what is left of a tilt after the
    /// classifier levels an object by its estimate of up, or does not level it because
    /// it leans less than `deploy::classifier::MIN_LEAN_DEG`.
    pub lean_deg: f32,
    /// Denser supervision (0 = off): each keypoint's this many nearest points within
    /// `soft_radius` join its correspondence set in the loss.
    pub soft_positives: usize,
    /// The neighbourhood of `soft_positives`, in normalised units (bounding-box diagonal 1).
    pub soft_radius: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            jitter_sigma: 0.004,
            jitter_clip: 0.01,
            rotate_up: false,
            rotation: RotationMode::None,
            partial_view_prob: 0.0,
            cut_prob: 0.0,
            floor_cut: 0.0,
            lean_deg: 0.0,
            soft_positives: 0,
            soft_radius: 0.03,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Dataset folder in the KeypointNet format.
    pub data: PathBuf,
    /// Category to train on (name or class id): one model per category, as in the paper.
    /// Several, comma-separated, train one shared backbone: each batch holds models of one
    /// category (correspondence sets are per category) and uses that category's margins;
    /// validation mGE is the mean over the categories.
    pub category: String,
    /// Train on the first this many models of the train split (0 = all): how the
    /// data-efficiency benchmark mimics a small real dataset.
    pub train_models: usize,
    /// Validate on the first this many models of the val split (0 = all).
    pub val_models: usize,
    /// Start from the weights of this checkpoint or backbone file (`semcorr train` writes
    /// `backbone.safetensors` in every run folder) instead of the seeded initialisation.
    /// The network's architecture and preprocessing then come from that file.
    pub init: Option<PathBuf>,
    /// With `init`: all its layers, or the body only.
    pub init_layers: InitLayers,
    /// Run folder: checkpoints, metrics.csv, curves.png.
    pub out: PathBuf,
    /// The network.
    pub backbone: BackboneConfig,
    pub loss: LossConfig,
    pub augment: AugmentConfig,
    /// The preprocessing every cloud gets before the network (`prepare.num_points`,
    /// `prepare.normalization`, `prepare.sampling`). The checkpoint stores it, and
    /// validation, `eval --model` and `export` read it from there, so a model is always
    /// fed as it was trained.
    pub prepare: PrepareConfig,
    pub epochs: usize,
    /// Models per batch.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// The learning rate is multiplied by `lr_decay` every `lr_decay_every` epochs.
    pub lr_decay: f64,
    pub lr_decay_every: usize,
    /// `step` (`lr_decay` every `lr_decay_every` epochs) or `cosine`.
    pub lr_schedule: LrSchedule,
    /// Ramp the learning rate up linearly over this many first epochs (0 = off), so a
    /// fine-tuned backbone is not shaken by the first steps of a fresh optimizer.
    pub warmup_epochs: usize,
    /// Decoupled weight decay (AdamW).
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value (0 = off).
    pub grad_clip: f64,
    /// Validate every this many epochs (loss and mGE on the val split).
    pub val_every: usize,
    /// Validation mGE averages this many posings of each val model (rotation seeds 0..n
    /// of `augment.rotation`; 1 = one fixed posing): less noise from a few models.
    pub val_views: usize,
    /// Which epoch `best.safetensors` keeps: `best`, `smoothed` or `last`.
    pub select: CheckpointChoice,
    /// Validations averaged by `select: smoothed`.
    pub select_window: usize,
    /// Also record the test split's mGE each validation (`test_mge` in metrics.csv),
    /// never used to choose anything: how benchmarks judge a choice rule after the fact.
    pub monitor_test: bool,
    /// Seed of every random choice (initialisation, shuffling, augmentation).
    pub seed: u64,
    /// Show a progress bar (off in CI logs).
    pub progress: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: PathBuf::new(),
            category: String::new(),
            train_models: 0,
            val_models: 0,
            init: None,
            init_layers: InitLayers::All,
            out: PathBuf::from("runs/default"),
            backbone: BackboneConfig::default(),
            loss: LossConfig::default(),
            augment: AugmentConfig::default(),
            prepare: PrepareConfig::default(),
            epochs: 100,
            batch_size: 4,
            lr: 1e-3,
            lr_decay: 0.9,
            lr_decay_every: 10,
            lr_schedule: LrSchedule::Step,
            warmup_epochs: 0,
            weight_decay: 1e-3,
            grad_clip: 1.0,
            val_every: 1,
            val_views: 1,
            select: CheckpointChoice::Best,
            select_window: 5,
            monitor_test: false,
            seed: 0,
            progress: true,
        }
    }
}

impl TrainConfig {
    /// Reads a YAML config, applies `key=value` overrides, and validates.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<TrainConfig> {
        let mut value = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
                if text.trim().is_empty() {
                    serde_yaml::Value::Mapping(Default::default())
                } else {
                    serde_yaml::from_str(&text)
                        .map_err(|e| Error::parse(p.display().to_string(), e))?
                }
            }
            None => serde_yaml::Value::Mapping(Default::default()),
        };
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        let origin = path.map_or("the config".to_string(), |p| p.display().to_string());
        let config: TrainConfig =
            serde_yaml::from_value(value).map_err(|e| Error::parse(origin, e))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values serde cannot: ranges and required fields.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: &str| Err(Error::invalid(format!("config key '{key}': {why}")));
        if self.data.as_os_str().is_empty() {
            return bad("data", "required (the dataset folder)");
        }
        if self.category.is_empty() {
            return bad("category", "required (a category name or class id)");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", &format!("must be positive, got {}", self.lr));
        }
        if !(self.lr_decay > 0.0 && self.lr_decay <= 1.0) {
            return bad(
                "lr_decay",
                &format!("must be in (0, 1], got {}", self.lr_decay),
            );
        }
        if self.lr_decay_every == 0 {
            return bad("lr_decay_every", "must be at least 1");
        }
        if self.weight_decay < 0.0 {
            return bad("weight_decay", "must not be negative");
        }
        if self.grad_clip < 0.0 {
            return bad("grad_clip", "must not be negative (0 turns clipping off)");
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if self.prepare.num_points < 16 {
            return bad(
                "prepare.num_points",
                &format!("must be at least 16, got {}", self.prepare.num_points),
            );
        }
        if self.val_every == 0 {
            return bad("val_every", "must be at least 1");
        }
        if self.val_views == 0 {
            return bad("val_views", "must be at least 1");
        }
        if self.select_window == 0 {
            return bad("select_window", "must be at least 1");
        }
        if self.categories().iter().any(|c| c.is_empty()) {
            return bad(
                "category",
                &format!("'{}' has an empty name in its list", self.category),
            );
        }
        if self.loss.lambda.is_nan() || self.loss.lambda < 0.0 {
            return bad("loss.lambda", "must not be negative");
        }
        if !positive(self.loss.constant_margin) {
            return bad("loss.constant_margin", "must be positive");
        }
        if !positive(self.loss.negatives_per_positive) {
            return bad("loss.negatives_per_positive", "must be positive");
        }
        if !(0.0..=1.0).contains(&self.augment.cut_prob) {
            return bad("augment.cut_prob", "must be in [0, 1]");
        }
        if !(0.0..0.9).contains(&self.augment.floor_cut) {
            return bad("augment.floor_cut", "must be in [0, 0.9)");
        }
        if !(0.0..=90.0).contains(&self.augment.lean_deg) {
            return bad("augment.lean_deg", "must be in [0, 90] degrees");
        }
        if !(0.0..=1.0).contains(&self.augment.partial_view_prob) {
            return bad("augment.partial_view_prob", "must be in [0, 1]");
        }
        if self.augment.soft_positives > 0 && !positive(self.augment.soft_radius) {
            return bad("augment.soft_radius", "must be positive");
        }
        if self.augment.jitter_sigma < 0.0 || self.augment.jitter_clip < 0.0 {
            return bad("augment.jitter_sigma", "jitter must not be negative");
        }
        Ok(())
    }
}

impl TrainConfig {
    /// The categories of `category`, in the order given.
    pub fn categories(&self) -> Vec<&str> {
        self.category.split(',').map(str::trim).collect()
    }

    /// The learning rate of `epoch` (0-based) under `lr_schedule` and `warmup_epochs`.
    pub fn learning_rate(&self, epoch: usize) -> f64 {
        let scheduled = match self.lr_schedule {
            LrSchedule::Step => self.lr * self.lr_decay.powi((epoch / self.lr_decay_every) as i32),
            LrSchedule::Cosine => {
                let t = epoch as f64 / self.epochs.max(1) as f64;
                let floor = 0.01;
                self.lr * (floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))
            }
        };
        if epoch < self.warmup_epochs {
            scheduled * (epoch + 1) as f64 / (self.warmup_epochs + 1) as f64
        } else {
            scheduled
        }
    }
}

/// False for zero, negative and NaN.
fn positive(x: f32) -> bool {
    x > 0.0
}

/// Sets `a.b.c=value` in a YAML mapping, creating intermediate mappings. The value is
/// parsed as YAML, so `lr=1e-4` is a number and `loss.form=squared` a string.
fn apply_override(root: &mut serde_yaml::Value, assignment: &str) -> Result<()> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| Error::invalid(format!("--set '{assignment}': expected key=value")))?;
    let parsed: serde_yaml::Value = serde_yaml::from_str(raw)
        .map_err(|e| Error::parse(format!("--set {key}: cannot parse '{raw}'"), e))?;
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            return Err(Error::invalid(format!(
                "--set '{assignment}': empty key segment"
            )));
        }
        let map = node.as_mapping_mut().ok_or_else(|| {
            Error::invalid(format!(
                "--set {key}: '{}' is not a mapping",
                parts[..i].join(".")
            ))
        })?;
        let k = serde_yaml::Value::String(part.to_string());
        if i + 1 == parts.len() {
            map.insert(k, parsed);
            return Ok(());
        }
        node = map
            .entry(k)
            .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str, sets: &[&str]) -> Result<TrainConfig> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("train.yaml");
        std::fs::write(&p, yaml).unwrap();
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        TrainConfig::load(Some(&p), &sets)
    }

    #[test]
    fn defaults_and_overrides() {
        let c = load(
            "data: d\ncategory: mug\n",
            &["lr=2e-3", "loss.form=squared", "augment.rotate_up=true"],
        )
        .unwrap();
        assert_eq!(c.lr, 2e-3);
        assert_eq!(c.loss.form, LossForm::Squared);
        assert!(c.augment.rotate_up);
        assert_eq!(c.batch_size, 4);
        assert_eq!(c.lr_decay, 0.9);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = load("data: d\ncategory: mug\nlearning_rate: 1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("learning_rate"), "{e}");
        let e = load("data: d\ncategory: mug\n", &["loss.margn=constant"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("margn"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = load("data: d\ncategory: mug\nlr: -1\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("'lr'") && e.contains("positive"), "{e}");
        let e = load("category: mug\n", &[]).unwrap_err().to_string();
        assert!(e.contains("'data'"), "{e}");
        let e = load("data: d\ncategory: mug\n", &["batch_size"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("key=value"), "{e}");
        let e = load("data: d\ncategory: mug\nloss: {form: cubic}\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cubic"), "{e}");
    }

    #[test]
    fn schedules_and_warmup() {
        let c = load("data: d\ncategory: mug\nepochs: 10\n", &[]).unwrap();
        assert_eq!(c.learning_rate(9), 1e-3);
        assert!((c.learning_rate(10) - 9e-4).abs() < 1e-12);
        let c = load(
            "data: d\ncategory: mug\nepochs: 10\nlr_schedule: cosine\nwarmup_epochs: 1\n",
            &[],
        )
        .unwrap();
        assert!(
            (c.learning_rate(0) - 0.5e-3).abs() < 1e-12,
            "warmup halves epoch 0"
        );
        let lrs: Vec<f64> = (1..10).map(|e| c.learning_rate(e)).collect();
        assert!(lrs.windows(2).all(|w| w[1] < w[0]), "{lrs:?}");
        assert!(c.learning_rate(9) > 1e-5 && c.learning_rate(9) < 1e-4);
        let e = load("data: d\ncategory: mug\nlr_schedule: linear\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("linear"), "{e}");
    }

    #[test]
    fn several_categories_and_selection_keys() {
        let c = load("data: d\ncategory: mug, bottle\nselect: smoothed\n", &[]).unwrap();
        assert_eq!(c.categories(), ["mug", "bottle"]);
        assert_eq!(c.select, CheckpointChoice::Smoothed);
        let e = load("data: d\ncategory: mug,,bottle\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("'category'"), "{e}");
        let e = load("data: d\ncategory: mug\nval_views: 0\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("'val_views'"), "{e}");
        let e = load("data: d\ncategory: mug\ninit_layers: head\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("head"), "{e}");
    }
}
