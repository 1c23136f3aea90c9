//! Per-point embedding backbones (candle): points `[B, N, 3]` -> embeddings `[B, N, D]`.
//!
//! CPNet (section 6) trains several generic point-cloud networks with its geodesic
//! consistency loss; we ship two of them behind one interface:
//! - [`pointnet::PointNet`]: shared per-point MLPs + a global max-pool (segmentation form),
//!   with an inference-only [`pointnet::FusedPointNet`] (batch norm folded, global half of
//!   the first segmentation layer computed once per cloud).
//! - [`dgcnn::Dgcnn`]: EdgeConv layers on a k-NN graph rebuilt in feature space per layer.
//!
//! Everything is channels-last: a point feature tensor is `[B, N, C]`, flattened to
//! `[B*N, C]` so that each "1x1 convolution" is one plain matmul over the last dimension.
//!
//! Weights are looked up by name through a [`VarBuilder`], so the same code trains
//! (`VarBuilder::from_varmap`, then `VarMap::save`) and loads a safetensors checkpoint
//! (`VarBuilder::from_mmaped_safetensors`).
//!
//! ## Speed on the CPU
//! - Training: on CPU f32 tensors, each "linear + batch norm + activation" is one fused
//!   graph node with a hand-written backward, and PointNet's last global layer is fused
//!   with its max-pool (`ops/` says why); other devices use the same
//!   maths from candle primitives. `W [local; global] = W_l local + W_g global` is used
//!   for the first layer after every global max-pool, in training and inference alike.
//! - Inference: [`FusedPointNet`] runs a tiled plain-slice path on the CPU.
//! - `gemm` (candle's matmul) is built with its AVX-512 kernels (`x86-v4` feature in
//!   Cargo.toml, chosen at run time). Threads: rayon's global pool (`RAYON_NUM_THREADS`,
//!   default: physical cores); `CANDLE_NUM_THREADS` sizes candle's own elementwise pool.
//! - Allocator: candle allocates a fresh buffer per op, so binaries should use mimalloc
//!   (`#[global_allocator] static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;`):
//!   about 2x on a training step built from plain candle ops, ~15% on the fused one.
//!   On a busy machine `MIMALLOC_PURGE_DELAY=-1` (keep freed pages mapped) also helps.

mod activation;
pub(crate) mod cpu;
pub mod dgcnn;
mod embedder;
mod layers;
mod ops;
pub mod pointnet;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

pub use activation::Activation;
pub use dgcnn::{Dgcnn, DgcnnConfig};
pub use embedder::NetworkEmbedder;
pub use layers::{BatchNorm, PointLinear};
pub use pointnet::{FusedPointNet, PointNet, PointNetConfig};

/// Embedding dimension used by the paper for every backbone.
pub const DEFAULT_EMBED_DIM: usize = 128;

/// Which backbone to build, with its hyper-parameters (serialised with a `kind` tag, e.g.
/// `{"kind": "dgcnn", "k": 20}`; omitted fields take their defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BackboneConfig {
    PointNet(PointNetConfig),
    Dgcnn(DgcnnConfig),
}

impl Default for BackboneConfig {
    fn default() -> Self {
        BackboneConfig::PointNet(PointNetConfig::default())
    }
}

impl BackboneConfig {
    /// Output embedding dimension D.
    pub fn embed_dim(&self) -> usize {
        match self {
            BackboneConfig::PointNet(c) => c.embed_dim,
            BackboneConfig::Dgcnn(c) => c.embed_dim,
        }
    }

    /// Name prefix of the last layer, the one that writes the embedding: what fine-tuning
    /// the body only (`init_layers: body`) leaves freshly initialised.
    pub fn embedding_layer(&self) -> &'static str {
        match self {
            BackboneConfig::PointNet(_) => "head.",
            BackboneConfig::Dgcnn(_) => "out.",
        }
    }
}

/// A per-point embedding network.
pub trait Backbone: Send + Sync {
    /// `points`: `[B, N, 3]` f32 -> embeddings `[B, N, D]`. `train` selects batch
    /// statistics (and updates the running ones) in batch norm; eval mode uses the running
    /// statistics, so a point's embedding does not depend on the rest of the batch.
    fn forward_t(&self, points: &Tensor, train: bool) -> Result<Tensor>;
    fn config(&self) -> &BackboneConfig;
}

/// Builds the backbone described by `cfg`, creating or loading its weights through `vb`.
pub fn build_backbone(cfg: &BackboneConfig, vb: VarBuilder) -> Result<Box<dyn Backbone>> {
    Ok(match cfg {
        BackboneConfig::PointNet(c) => Box::new(PointNet::new(c.clone(), vb)?),
        BackboneConfig::Dgcnn(c) => Box::new(Dgcnn::new(c.clone(), vb)?),
    })
}

/// Checks that `points` is `[B, N, 3]` and returns `(B, N)`.
fn check_points(points: &Tensor) -> Result<(usize, usize)> {
    match points.dims() {
        &[b, n, 3] => Ok((b, n)),
        d => candle_core::bail!("backbone input must be [B, N, 3], got {d:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn config_serde_roundtrip_and_defaults() {
        let c: BackboneConfig = serde_json::from_str(r#"{"kind":"dgcnn"}"#).unwrap();
        match &c {
            BackboneConfig::Dgcnn(d) => {
                assert_eq!(d.k, 20);
                assert_eq!(d.embed_dim, 128);
            }
            _ => panic!("expected dgcnn"),
        }
        let p: BackboneConfig = serde_json::from_str(r#"{"kind":"pointnet"}"#).unwrap();
        assert_eq!(p, BackboneConfig::default());
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<BackboneConfig>(&s).unwrap(), c);
        assert_eq!(c.embed_dim(), 128);
    }

    #[test]
    fn build_backbone_rejects_bad_input_shape() {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let net = build_backbone(&BackboneConfig::default(), vb).unwrap();
        let bad = Tensor::zeros((1, 8, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(net.forward_t(&bad, false).is_err());
    }
}
