//! The fused PointNet computed with candle `QMatMul`s straight on the stored weights
//! ([`super::Runtime::Quantized`]). Only the layer type is defined here: the forward is
//! `FusedPointNet`'s tensor-op one (`FoldedLayers::forward`), so the two cannot drift.
//! On a GPU the weights are dequantized onto the device and run as candle matmuls (the
//! path `device: cuda:N` of the node takes); on the CPU they stay quantized.

use crate::model::pointnet::{FoldedLayer, FoldedLayers};
use crate::model::{Backbone, BackboneConfig, PointNetConfig};
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Device, Module, Result, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

struct QLayer {
    w: QMatMul,
    b: Option<Tensor>,
    relu: bool,
}

impl FoldedLayer for QLayer {
    fn product(&self, x: &Tensor) -> Result<Tensor> {
        self.w.forward(x)
    }

    fn bias(&self) -> Option<&Tensor> {
        self.b.as_ref()
    }

    fn relu(&self) -> bool {
        self.relu
    }
}

pub(super) struct QuantPointNet {
    cfg: BackboneConfig,
    layers: FoldedLayers<QLayer>,
}

impl QuantPointNet {
    pub(super) fn new(
        cfg: PointNetConfig,
        stored: &HashMap<&str, &Arc<QTensor>>,
        device: &Device,
    ) -> Result<Self> {
        let get = |name: String| -> Result<&Arc<QTensor>> {
            stored
                .get(name.as_str())
                .copied()
                .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor '{name}'")))
        };
        let weight = |layer: &str| -> Result<QMatMul> {
            let q = get(super::tensor_name(layer, "weight"))?;
            if device.is_cpu() {
                QMatMul::from_arc(q.clone())
            } else {
                Ok(QMatMul::Tensor(q.dequantize(device)?))
            }
        };
        let layers = FoldedLayers::load(
            &cfg,
            |layer, _, _, relu| {
                let w = weight(layer)?;
                let b = get(super::tensor_name(layer, "bias"))?.dequantize(device)?;
                Ok(QLayer {
                    w,
                    b: Some(b),
                    relu,
                })
            },
            |layer, _, _| {
                Ok(QLayer {
                    w: weight(layer)?,
                    b: None,
                    relu: false,
                })
            },
        )?;
        Ok(QuantPointNet {
            cfg: BackboneConfig::PointNet(cfg),
            layers,
        })
    }
}

impl Backbone for QuantPointNet {
    fn forward_t(&self, points: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            candle_core::bail!("a deployed model is inference-only");
        }
        self.layers.forward(points)
    }

    fn config(&self) -> &BackboneConfig {
        &self.cfg
    }
}

/// Placeholder network of a model between reading and building (never run).
pub(super) struct Unbuilt;

impl Backbone for Unbuilt {
    fn forward_t(&self, _: &Tensor, _: bool) -> Result<Tensor> {
        candle_core::bail!("deployed model network not built")
    }
    fn config(&self) -> &BackboneConfig {
        static CFG: std::sync::OnceLock<BackboneConfig> = std::sync::OnceLock::new();
        CFG.get_or_init(BackboneConfig::default)
    }
}
