//! Training checkpoints: one safetensors file holding the network's weights (`model.*`),
//! the optimizer's moments (`adam.*`) and, as JSON in the header's metadata, everything
//! else a resumed run needs (config, epoch, optimizer step, margins, metric history).
//! Files are written to a temporary sibling and renamed, so a kill mid-write leaves the
//! previous checkpoint intact.

use super::config::TrainConfig;
use super::margins::MarginTable;
use crate::error::{read_file, Error, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Bumped whenever the layout changes incompatibly.
pub const CHECKPOINT_FORMAT: u32 = 1;
const METADATA_KEY: &str = "semcorr.checkpoint";

/// One epoch's figures, as in `metrics.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_pull: f64,
    pub train_push: f64,
    pub val_loss: Option<f64>,
    pub val_mge: Option<f64>,
    /// The test split's mGE, recorded only with `monitor_test` (never used to choose).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_mge: Option<f64>,
    pub seconds: f64,
}

/// The non-tensor part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format: u32,
    pub config: TrainConfig,
    /// Epochs completed; training resumes at this epoch. The RNG of epoch e is seeded from
    /// (seed, e), so the epoch number is the whole random state.
    pub epoch: usize,
    pub optimizer_step: u64,
    pub lr: f64,
    pub best_val_mge: Option<f64>,
    /// The (first) category's margins.
    pub margins: MarginTable,
    /// A run over several categories: every category's margins, by class id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub margins_by_category: BTreeMap<String, MarginTable>,
    pub history: Vec<EpochMetrics>,
}

/// A checkpoint in memory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    /// `model.<var>` and `adam.{m,v}.<var>` tensors.
    pub tensors: HashMap<String, Tensor>,
}

impl Checkpoint {
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let meta = serde_json::to_string(&self.meta).map_err(|e| Error::invalid(e.to_string()))?;
        let info = HashMap::from([(METADATA_KEY.to_string(), meta)]);
        let mut entries: Vec<(&String, &Tensor)> = self.tensors.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        safetensors::serialize_to_file(entries, Some(info), path)
            .map_err(|e| Error::format(path, format!("writing checkpoint: {e}")))
    }

    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = read_file(path)?;
        let bad = |m: String| Error::format(path, m);
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a safetensors checkpoint: {e}")))?;
        let meta_json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .ok_or_else(|| {
                bad(format!(
                    "no '{METADATA_KEY}' metadata: not a semcorr checkpoint"
                ))
            })?;
        let meta: CheckpointMeta = serde_json::from_str(meta_json)
            .map_err(|e| bad(format!("checkpoint metadata: {e}")))?;
        if meta.format != CHECKPOINT_FORMAT {
            return Err(bad(format!(
                "checkpoint format {} (this build reads {CHECKPOINT_FORMAT})",
                meta.format
            )));
        }
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| bad(format!("checkpoint tensors: {e}")))?;
        Ok(Checkpoint { meta, tensors })
    }

    /// The same checkpoint without the optimizer's state: a third of the size, enough for
    /// inference, export and `init`, not for `--resume`.
    pub fn weights_only(&self) -> Checkpoint {
        Checkpoint {
            meta: self.meta.clone(),
            tensors: self
                .tensors
                .iter()
                .filter(|(k, _)| k.starts_with("model."))
                .map(|(k, t)| (k.clone(), t.clone()))
                .collect(),
        }
    }

    /// The network's weights with the `model.` prefix removed.
    pub fn model_weights(&self) -> HashMap<String, Tensor> {
        self.tensors
            .iter()
            .filter_map(|(k, t)| k.strip_prefix("model.").map(|n| (n.to_string(), t.clone())))
            .collect()
    }
}
