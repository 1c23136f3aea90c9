//! Deployment: one GGUF file per trained network, holding everything a robot needs to
//! turn a cloud into named keypoints without the training data:
//!
//! - the BN-folded PointNet weights (`FusedPointNet`'s layout), stored as f32, f16, q8_0
//!   or q4_0 (quantized where the inner dimension is a multiple of 32, f32 elsewhere);
//! - the backbone config, the preprocessing, the category and the keypoint templates as
//!   `semcorr.*` metadata, with a checksum over all of it ([`bundle`] lists the keys).
//!
//! Loading checks every part and names the file and what is wrong. Inference dequantizes
//! to f32 at load and runs [`FusedPointNet`]'s CPU kernels by default ([`Runtime`] says
//! why); [`crate::matching`] turns embeddings into keypoints.

pub mod bundle;
pub mod classifier;
mod qnet;
pub mod yaw_search;

pub use bundle::{FORMAT_VERSION, PRECISIONS};
pub use yaw_search::{YawChoice, YawCriterion, YawSearch};

use crate::cloud::{Cloud, PrepareConfig, Prepared};
use crate::dataset::{AnnotatedModel, Category, Dataset, Split};
use crate::embedding::{Embedder, Embeddings};
use crate::error::{Error, Result};
use crate::matching::{KeypointMatch, Matcher, TemplateSet};
use crate::model::{Backbone, BackboneConfig, FusedPointNet, NetworkEmbedder, PointNet};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Storage precision of the weight matrices (biases are always f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    F32,
    F16,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Q8_0 => "q8_0",
            Precision::Q4_0 => "q4_0",
        }
    }

    /// The storage type of a `[out, in]` weight: block formats need `in % 32 == 0`, so
    /// narrower layers (the first, 3 inputs) stay f32.
    pub fn weight_dtype(self, inner: usize) -> GgmlDType {
        match self {
            Precision::F32 => GgmlDType::F32,
            Precision::F16 => GgmlDType::F16,
            Precision::Q8_0 if inner.is_multiple_of(32) => GgmlDType::Q8_0,
            Precision::Q4_0 if inner.is_multiple_of(32) => GgmlDType::Q4_0,
            _ => GgmlDType::F32,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        [
            Precision::F32,
            Precision::F16,
            Precision::Q8_0,
            Precision::Q4_0,
        ]
        .into_iter()
        .find(|p| p.name() == s)
        .ok_or_else(|| {
            Error::invalid(format!(
                "unknown precision '{s}' (expected one of {})",
                PRECISIONS.join(", ")
            ))
        })
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a loaded model computes. Measured on this project's 2-core dev machine (see the
/// README's deployment table): candle's quantized matmuls are slower than the f32 kernels on
/// a CPU, so quantization buys file size, and the default dequantizes at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Runtime {
    /// Weights dequantized to f32 at load; [`FusedPointNet`]'s tiled CPU path.
    #[default]
    Dequantized,
    /// candle `QMatMul`s on the stored (quantized) weights: less memory, slower on CPU.
    Quantized,
}

/// A category's real size range from `MIN:MAX` (bounding-box diagonal, metres), as
/// `semcorr export --size-range` takes it: both positive and finite, `MIN < MAX`.
pub fn parse_size_range(text: &str) -> std::result::Result<[f32; 2], String> {
    let bad = || format!("'{text}': expected MIN:MAX in metres with 0 < MIN < MAX, e.g. 0.08:0.30");
    let (lo, hi) = text.split_once(':').ok_or_else(bad)?;
    let (lo, hi): (f32, f32) = (
        lo.trim().parse().map_err(|_| bad())?,
        hi.trim().parse().map_err(|_| bad())?,
    );
    if lo > 0.0 && lo < hi && hi.is_finite() {
        Ok([lo, hi])
    } else {
        Err(bad())
    }
}

/// The category a model was trained for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CategoryInfo {
    pub name: String,
    pub class_id: String,
}

/// A deployment model: network, preprocessing, category and templates.
pub struct DeployedModel {
    pub backbone: BackboneConfig,
    pub prepare: PrepareConfig,
    pub category: CategoryInfo,
    pub templates: TemplateSet,
    pub precision: Precision,
    /// Where the weights came from (checkpoint path and epoch), for humans.
    pub source: String,
    /// The stored weights by GGUF tensor name, kept so templates can be replaced without
    /// re-quantizing.
    weights: Vec<(String, Arc<QTensor>)>,
    net: Box<dyn Backbone>,
    /// Where the network runs (the CPU unless loaded with [`DeployedModel::load_on`]).
    device: Device,
}

impl std::fmt::Debug for DeployedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployedModel")
            .field("category", &self.category)
            .field("precision", &self.precision)
            .field("templates", &self.templates.templates.len())
            .field("source", &self.source)
            .finish()
    }
}

/// GGUF tensor name of a folded layer's weight (`[out, in]`) or bias.
fn tensor_name(layer: &str, what: &str) -> String {
    format!("pointnet.{layer}.{what}")
}

impl DeployedModel {
    /// Builds a model from a training checkpoint: folds batch norm, quantizes to
    /// `precision`, and computes templates from the annotated models of `split` in
    /// `data` (default: the checkpoint's dataset). DGCNN is not exportable yet (its k-NN
    /// graph needs more than per-layer matmuls); the error says so.
    pub fn from_checkpoint(
        ckpt_path: &Path,
        precision: Precision,
        data: Option<&Path>,
        split: Split,
    ) -> Result<DeployedModel> {
        let what = ckpt_path.display().to_string();
        let ckpt = crate::train::Checkpoint::load(ckpt_path)?;
        let cfg = &ckpt.meta.config;
        let pn_cfg = match &cfg.backbone {
            BackboneConfig::PointNet(c) => c.clone(),
            BackboneConfig::Dgcnn(_) => {
                return Err(Error::invalid(format!(
                    "{what}: DGCNN checkpoints cannot be exported yet (only PointNet)"
                )))
            }
        };
        let candle = || Error::candle(format!("{what}: folding and quantizing"));
        let vb =
            candle_nn::VarBuilder::from_tensors(ckpt.model_weights(), DType::F32, &Device::Cpu);
        let fused = PointNet::new(pn_cfg.clone(), vb)
            .and_then(|n| n.fused())
            .map_err(candle())?;
        let folded: HashMap<String, Tensor> = fused.folded_tensors().into_iter().collect();
        let mut weights = Vec::new();
        for (layer, inner, _out, bias) in FusedPointNet::folded_layout(&pn_cfg) {
            let wt = &folded[&format!("{layer}.wt")];
            let w = wt.t().and_then(|w| w.contiguous()).map_err(candle())?;
            let q = QTensor::quantize(&w, precision.weight_dtype(inner)).map_err(candle())?;
            weights.push((tensor_name(&layer, "weight"), Arc::new(q)));
            if bias {
                let b = &folded[&format!("{layer}.b")];
                let q = QTensor::quantize(b, GgmlDType::F32).map_err(candle())?;
                weights.push((tensor_name(&layer, "bias"), Arc::new(q)));
            }
        }
        // The exact preprocessing training used: it travels in the checkpoint's config.
        let prepare = cfg.prepare;
        let data_dir = data.unwrap_or(&cfg.data).to_path_buf();
        let dataset = Dataset::open(&data_dir)?;
        if cfg.categories().len() > 1 {
            return Err(Error::invalid(format!(
                "{what} was trained on several categories ({}): a shared backbone has no \
                 templates of its own; fine-tune it on one (`semcorr train --init`) and export that",
                cfg.category
            )));
        }
        let category = dataset.category(&cfg.category)?;
        let info = CategoryInfo {
            name: category.name.clone(),
            class_id: category.class_id.clone(),
        };
        let mut model = DeployedModel {
            backbone: cfg.backbone.clone(),
            prepare,
            category: info,
            templates: TemplateSet::default(),
            precision,
            source: format!("{} (epoch {})", ckpt_path.display(), ckpt.meta.epoch),
            weights,
            net: Box::new(fused),
            device: Device::Cpu,
        };
        // Templates come from the network as deployed (quantized), so their spread
        // matches what the matcher will see.
        model.net = model.build_net(Runtime::Dequantized, &Device::Cpu, &what)?;
        let source = format!("{} {} split", data_dir.display(), split.name());
        model.templates = model.build_templates(&dataset, category, split, &source)?;
        Ok(model)
    }

    /// Reads and checks a model file ([`bundle::read`]) with the default runtime.
    pub fn load(path: impl AsRef<Path>) -> Result<DeployedModel> {
        Self::load_with(path, Runtime::default())
    }

    pub fn load_with(path: impl AsRef<Path>, runtime: Runtime) -> Result<DeployedModel> {
        Self::load_on(path, runtime, Device::Cpu)
    }

    /// Loads for `device`. Off the CPU the runtime is always candle's own matmuls on
    /// weights dequantized onto the device (the fused kernels are CPU code).
    pub fn load_on(
        path: impl AsRef<Path>,
        runtime: Runtime,
        device: Device,
    ) -> Result<DeployedModel> {
        let path = path.as_ref();
        let mut model = bundle::read(path)?;
        let runtime = if device.is_cpu() {
            runtime
        } else {
            Runtime::Quantized
        };
        model.net = model.build_net(runtime, &device, &path.display().to_string())?;
        model.device = device;
        Ok(model)
    }

    /// Writes the model (atomically) to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        bundle::write(self, path.as_ref())
    }

    /// The inference network from the stored weights.
    fn build_net(
        &self,
        runtime: Runtime,
        device: &Device,
        what: &str,
    ) -> Result<Box<dyn Backbone>> {
        let BackboneConfig::PointNet(cfg) = &self.backbone else {
            return Err(Error::invalid(format!(
                "{what}: only PointNet models can be deployed"
            )));
        };
        let candle = || Error::candle(format!("{what}: building the network"));
        let stored: HashMap<&str, &Arc<QTensor>> =
            self.weights.iter().map(|(n, q)| (n.as_str(), q)).collect();
        match runtime {
            Runtime::Dequantized => {
                let mut folded = HashMap::new();
                for (layer, _, _, bias) in FusedPointNet::folded_layout(cfg) {
                    let w = stored_tensor(&stored, &tensor_name(&layer, "weight"), what)?;
                    let wt = w
                        .dequantize(&Device::Cpu)
                        .and_then(|w| w.t()?.contiguous())
                        .map_err(candle())?;
                    folded.insert(format!("{layer}.wt"), wt);
                    if bias {
                        let b = stored_tensor(&stored, &tensor_name(&layer, "bias"), what)?;
                        let b = b.dequantize(&Device::Cpu).map_err(candle())?;
                        folded.insert(format!("{layer}.b"), b);
                    }
                }
                Ok(Box::new(
                    FusedPointNet::from_folded(cfg.clone(), &folded).map_err(candle())?,
                ))
            }
            Runtime::Quantized => Ok(Box::new(
                qnet::QuantPointNet::new(cfg.clone(), &stored, device).map_err(candle())?,
            )),
        }
    }

    /// The stored weights, by GGUF tensor name.
    pub fn weights(&self) -> &[(String, Arc<QTensor>)] {
        &self.weights
    }

    /// Size of the stored weights in bytes.
    pub fn weight_bytes(&self) -> usize {
        self.weights
            .iter()
            .map(|(_, q)| q.storage_size_in_bytes())
            .sum()
    }

    /// The network's embeddings of the prepared sample (`num_points` rows), with the
    /// preparation that maps them back to the input cloud.
    pub fn embed(&self, cloud: &Cloud) -> Result<(Prepared, Embeddings)> {
        self.embedder().embed_prepared(cloud, "cloud")
    }

    /// [`Self::embed`] for several clouds in one forward pass.
    pub fn embed_batch(&self, clouds: &[Cloud]) -> Result<Vec<(Prepared, Embeddings)>> {
        self.embedder().embed_prepared_batch(clouds, "object")
    }

    /// Prepares clouds as this model's network expects them (in parallel), for
    /// [`Self::forward_prepared`]: models with the same [`PrepareConfig`] can share it.
    pub fn prepare_batch<C: std::borrow::Borrow<Cloud> + Sync>(
        &self,
        clouds: &[C],
    ) -> Result<Vec<Prepared>> {
        use rayon::prelude::*;
        clouds
            .par_iter()
            .enumerate()
            .map(|(i, c)| {
                crate::cloud::prepare(c.borrow(), &self.prepare, 0, &format!("object {i}"))
            })
            .collect()
    }

    /// One forward pass over clouds prepared with this model's [`PrepareConfig`].
    pub fn forward_prepared(&self, prepared: Vec<Prepared>) -> Result<Vec<(Prepared, Embeddings)>> {
        self.embedder().forward_prepared(prepared, "object")
    }

    fn embedder(&self) -> NetworkEmbedder<'_> {
        NetworkEmbedder {
            backbone: self.net.as_ref(),
            prepare: self.prepare,
            device: self.device.clone(),
            name: format!("gguf-{}", self.precision),
        }
    }

    /// Embeds `cloud` (already in the model's frame) and matches every template.
    pub fn find_keypoints(&self, cloud: &Cloud, matcher: &Matcher) -> Result<Vec<KeypointMatch>> {
        let (prepared, emb) = self.embed(cloud)?;
        Ok(matcher.match_prepared(&self.templates, cloud, &prepared, &emb))
    }

    /// Templates from the annotated models of `split` of a dataset category (the
    /// training split at export, a user's own few clouds for few-shot use), named with the
    /// category's keypoint names.
    pub fn build_templates(
        &self,
        dataset: &Dataset,
        category: &Category,
        split: Split,
        source: &str,
    ) -> Result<TemplateSet> {
        let models = dataset.load_split(category, split)?;
        self.templates_from(&models, &category.keypoint_names, source)
    }

    /// Templates from annotated models with the given keypoint names.
    pub fn templates_from(
        &self,
        models: &[AnnotatedModel],
        names: &std::collections::BTreeMap<u32, String>,
        source: &str,
    ) -> Result<TemplateSet> {
        TemplateSet::build(models, |c| self.embed(c), names, source)
    }

    /// Replaces the templates with ones built from `split` of a user's dataset (few-shot:
    /// no retraining). `category` defaults to the model's (class id, then name), or the
    /// dataset's only category.
    pub fn retemplate(&mut self, data: &Path, split: Split, category: Option<&str>) -> Result<()> {
        let dataset = Dataset::open(data)?;
        let cat = self.category_in(&dataset, category)?;
        let source = format!("{} {} split", data.display(), split.name());
        let (size_range, rest) = (self.templates.size_range_m, self.templates.rest);
        self.templates = self.build_templates(&dataset, cat, split, &source)?;
        self.templates.size_range_m = size_range;
        self.templates.rest = rest;
        Ok(())
    }

    /// Replaces the templates' canonical positions (what poses are fitted to) with the
    /// means over the training split of a dataset of complete clouds: positions from
    /// partial views are biased toward each view's visible side.
    pub fn reposition(&mut self, data: &Path, category: Option<&str>) -> Result<()> {
        let dataset = Dataset::open(data)?;
        let cat = self.category_in(&dataset, category)?;
        let models = dataset.load_split(cat, Split::Train)?;
        self.templates.set_positions(&models);
        Ok(())
    }

    /// `category` in `dataset`, by default the model's (class id, then name) or the
    /// dataset's only one.
    fn category_in<'a>(
        &self,
        dataset: &'a Dataset,
        category: Option<&str>,
    ) -> Result<&'a Category> {
        match category {
            Some(c) => dataset.category(c),
            None => dataset
                .category(&self.category.class_id)
                .or_else(|_| dataset.category(&self.category.name))
                .or_else(|e| match dataset.categories.as_slice() {
                    [only] => Ok(only),
                    _ => Err(e),
                }),
        }
    }
}

fn stored_tensor<'a>(
    stored: &HashMap<&str, &'a Arc<QTensor>>,
    name: &str,
    what: &str,
) -> Result<&'a Arc<QTensor>> {
    stored
        .get(name)
        .copied()
        .ok_or_else(|| Error::invalid(format!("{what}: missing tensor '{name}'")))
}

impl Embedder for DeployedModel {
    fn name(&self) -> String {
        format!("gguf-{}", self.precision)
    }

    fn embed(&self, cloud: &Cloud) -> Result<Embeddings> {
        self.embedder().embed(cloud)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size_range;

    #[test]
    fn size_ranges_parse_or_say_what_is_expected() {
        assert_eq!(parse_size_range("0.08:0.30"), Ok([0.08, 0.30]));
        assert_eq!(parse_size_range(" 0.1 : 0.5 "), Ok([0.1, 0.5]));
        for bad in [
            "0.3", "0.3:0.1", "0:0.2", "-1:2", "a:b", "0.1:inf", "0.1:NaN",
        ] {
            let e = parse_size_range(bad).unwrap_err();
            assert!(e.contains(bad) && e.contains("MIN:MAX"), "{bad}: {e}");
        }
    }
}
