//! The fused PointNet computed with candle `QMatMul`s straight on the stored weights
//! ([`super::Runtime::Quantized`]): the same maths as `FusedPointNet::forward_tensors`.
//! On a GPU the weights are dequantized onto the device and run as candle matmuls (the
//! path `device: cuda:N` of the node takes); on the CPU they stay quantized.

use crate::model::{Backbone, BackboneConfig, FusedPointNet, PointNetConfig};
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Device, Module, Result, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

struct QLayer {
    w: QMatMul,
    b: Option<Tensor>,
    relu: bool,
}

impl QLayer {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = self.w.forward(x)?;
        if let Some(b) = &self.b {
            y = y.broadcast_add(b)?;
        }
        if self.relu {
            y.relu()
        } else {
            Ok(y)
        }
    }
}

pub(super) struct QuantPointNet {
    cfg: BackboneConfig,
    local: Vec<QLayer>,
    global: Vec<QLayer>,
    seg0_local: QLayer,
    seg0_global: QLayer,
    seg: Vec<QLayer>,
    head: QLayer,
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
        let mut layers = Vec::new();
        for (layer, _, _, bias) in FusedPointNet::folded_layout(&cfg) {
            let q = get(super::tensor_name(&layer, "weight"))?;
            let w = if device.is_cpu() {
                QMatMul::from_arc(q.clone())?
            } else {
                QMatMul::Tensor(q.dequantize(device)?)
            };
            let b = if bias {
                let b = get(super::tensor_name(&layer, "bias"))?;
                Some(b.dequantize(device)?)
            } else {
                None
            };
            layers.push(QLayer {
                w,
                b,
                relu: layer != "head" && bias,
            });
        }
        let head = layers.pop().expect("layout ends with the head");
        let mut it = layers.into_iter();
        let local: Vec<_> = it.by_ref().take(cfg.local.len()).collect();
        let global: Vec<_> = it.by_ref().take(cfg.global.len()).collect();
        let seg0_local = it.next().expect("layout has seg0_local");
        let seg0_global = it.next().expect("layout has seg0_global");
        let seg = it.collect();
        Ok(QuantPointNet {
            cfg: BackboneConfig::PointNet(cfg),
            local,
            global,
            seg0_local,
            seg0_global,
            seg,
            head,
        })
    }
}

impl Backbone for QuantPointNet {
    fn forward_t(&self, points: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            candle_core::bail!("a deployed model is inference-only");
        }
        let (b, n, _) = points.dims3()?;
        let mut local = points.reshape((b * n, 3))?;
        for l in &self.local {
            local = l.forward(&local)?;
        }
        let (last, rest) = self.global.split_last().expect("non-empty global MLP");
        let mut g = local.clone();
        for l in rest {
            g = l.forward(&g)?;
        }
        // Max before bias and ReLU (both monotone), as FusedPointNet does.
        let z = last.w.forward(&g)?;
        let cg = z.dim(1)?;
        let mut global = z.reshape((b, n, cg))?.max(1)?;
        if let Some(bias) = &last.b {
            global = global.broadcast_add(bias)?;
        }
        let global = global.relu()?;
        let mut bias0 = self.seg0_global.w.forward(&global)?;
        if let Some(bias) = &self.seg0_local.b {
            bias0 = bias0.broadcast_add(bias)?;
        }
        let s = bias0.dim(1)?;
        let mut x = self
            .seg0_local
            .w
            .forward(&local)?
            .reshape((b, n, s))?
            .broadcast_add(&bias0.unsqueeze(1)?)?
            .relu()?
            .reshape((b * n, s))?;
        for l in &self.seg {
            x = l.forward(&x)?;
        }
        self.head.forward(&x)?.reshape((b, n, ()))
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
