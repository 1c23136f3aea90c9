//! PointNet, segmentation form (Qi et al. 2017, without the T-Nets), channels-last.
//!
//! ```text
//! xyz [B,N,3] -> local MLP 3-64-64 ----------------------------+-> local [B*N,64]
//!                   -> global MLP 64-64-128-1024 -> max over N -+-> global [B,1024]
//! seg MLP on [local, global] (1088-512-256-128) -> linear 128-D -> embeddings [B,N,D]
//! ```
//! Batch norm + ReLU follow every MLP layer; the final linear has neither.
//!
//! The first segmentation layer never materialises the 1088-wide concatenation:
//! `W [local; global] = W_l local + W_g global`, and `W_g global` is the same for every
//! point of a cloud, so it is computed once per cloud and broadcast (this removes more than
//! half of the network's FLOPs and the `[B*N, 1088]` copy, in training and inference alike).

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::activation::Activation;
use super::cpu::{self, RawLinear, Scratch};
use super::layers::PointLinear;
use super::{check_points, Backbone, BackboneConfig, DEFAULT_EMBED_DIM};

/// PointNet widths. Defaults are the segmentation network of the PointNet paper with a
/// D-dimensional linear head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PointNetConfig {
    /// Output embedding dimension D.
    pub embed_dim: usize,
    /// Per-point MLP producing the local feature (input 3).
    pub local: Vec<usize>,
    /// Per-point MLP applied to the local feature before the global max-pool.
    pub global: Vec<usize>,
    /// Per-point MLP on `[local, global]`, followed by the linear head to D.
    pub seg: Vec<usize>,
}

impl Default for PointNetConfig {
    fn default() -> Self {
        Self {
            embed_dim: DEFAULT_EMBED_DIM,
            local: vec![64, 64],
            global: vec![64, 128, 1024],
            seg: vec![512, 256, 128],
        }
    }
}

impl PointNetConfig {
    fn validate(&self) -> Result<()> {
        if self.local.is_empty() || self.global.is_empty() || self.seg.is_empty() {
            candle_core::bail!("PointNet needs non-empty local, global and seg MLPs");
        }
        if self.embed_dim == 0
            || [&self.local, &self.global, &self.seg]
                .iter()
                .any(|v| v.contains(&0))
        {
            candle_core::bail!("PointNet widths must be positive");
        }
        Ok(())
    }

    /// Multiply-accumulates per point of the eval-mode network (with the per-cloud global
    /// half of the first segmentation layer left out, as the implementation does).
    pub fn macs_per_point(&self) -> usize {
        let mut macs = 0;
        let mut c = 3;
        for &o in self.local.iter().chain(&self.global) {
            macs += c * o;
            c = o;
        }
        let mut c = *self.local.last().unwrap_or(&3);
        for &o in self.seg.iter().chain(std::iter::once(&self.embed_dim)) {
            macs += c * o;
            c = o;
        }
        macs
    }
}

/// Trainable PointNet (see the module docs for the layout).
pub struct PointNet {
    cfg: BackboneConfig,
    local: Vec<PointLinear>,
    global: Vec<PointLinear>,
    seg: Vec<PointLinear>,
    head: PointLinear,
}

impl PointNet {
    /// Weights: `local.{i}`, `global.{i}`, `seg.{i}` (each `weight` + `bn.*`) and
    /// `head.{weight,bias}`.
    pub fn new(cfg: PointNetConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let mlp = |c: usize, widths: &[usize], prefix: &str| {
            PointLinear::bn_mlp(c, widths, Activation::Relu, vb.pp(prefix))
        };
        let (local, c_local) = mlp(3, &cfg.local, "local")?;
        let (global, c_global) = mlp(c_local, &cfg.global, "global")?;
        let (seg, c_seg) = mlp(c_local + c_global, &cfg.seg, "seg")?;
        let head = PointLinear::plain(c_seg, cfg.embed_dim, vb.pp("head"))?;
        Ok(Self {
            cfg: BackboneConfig::PointNet(cfg),
            local,
            global,
            seg,
            head,
        })
    }

    pub fn pointnet_config(&self) -> &PointNetConfig {
        match &self.cfg {
            BackboneConfig::PointNet(c) => c,
            _ => unreachable!("PointNet always holds a PointNet config"),
        }
    }

    /// The inference-only version of this network (current weights, eval mode).
    pub fn fused(&self) -> Result<FusedPointNet> {
        let fold = |ls: &[PointLinear]| ls.iter().map(FusedLinear::new).collect::<Result<Vec<_>>>();
        let local = fold(&self.local)?;
        let global = fold(&self.global)?;
        let mut seg = fold(&self.seg)?;
        // Split the first segmentation layer's (already folded) [1088, S] weight.
        let first = seg.remove(0);
        let cl = self.local.last().map_or(3, |l| l.out_dim());
        let cg = first.wt.dim(0)? - cl;
        let seg0_local = FusedLinear {
            wt: first.wt.narrow(0, 0, cl)?.contiguous()?,
            b: first.b.clone(),
            relu: first.relu,
        };
        let seg0_global = first.wt.narrow(0, cl, cg)?.contiguous()?;
        let head = FusedLinear::new(&self.head)?;
        let layers = FoldedLayers {
            local,
            global,
            seg0_local,
            seg0_global,
            seg,
            head,
        };
        FusedPointNet::assemble(self.cfg.clone(), layers)
    }
}

impl Backbone for PointNet {
    fn forward_t(&self, points: &Tensor, train: bool) -> Result<Tensor> {
        let (b, n) = check_points(points)?;
        // Per-point local feature.
        let local = PointLinear::chain_t(&self.local, &points.reshape((b * n, 3))?, train)?;
        // Global feature: per-point MLP, then max over the points of each cloud.
        let (last, rest) = self.global.split_last().expect("validated non-empty");
        let g = PointLinear::chain_t(rest, &local, train)?;
        let global = last.forward_max_t(&g, n, train)?; // [B, G]

        // Segmentation MLP on [local, global], its first layer without the concatenation.
        let x = self.seg[0].forward_split_t(&local, &global, train)?;
        let x = PointLinear::chain_t(&self.seg[1..], &x, train)?;
        let e = self.head.forward_t(&x, train)?;
        e.reshape((b, n, ()))
    }

    fn config(&self) -> &BackboneConfig {
        &self.cfg
    }
}

/// An eval-mode layer with batch norm folded in: `act(x wt + b)`, `wt` `[in, out]`
/// contiguous so the matmul streams it row by row without a transpose.
#[derive(Debug, Clone)]
struct FusedLinear {
    wt: Tensor,
    b: Tensor,
    relu: bool,
}

impl FusedLinear {
    fn new(l: &PointLinear) -> Result<Self> {
        let (wt, b) = l.folded()?;
        let relu = match l.activation() {
            Activation::Relu => true,
            Activation::None => false,
            a => candle_core::bail!("FusedPointNet cannot fold activation {a:?}"),
        };
        Ok(Self { wt, b, relu })
    }

    fn raw(&self) -> Result<RawLinear> {
        let (k, n) = self.wt.dims2()?;
        Ok(RawLinear {
            wt: self.wt.flatten_all()?.to_vec1()?,
            b: self.b.to_vec1()?,
            k,
            n,
            relu: self.relu,
        })
    }
}

impl FoldedLayer for FusedLinear {
    fn product(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.wt)
    }

    fn bias(&self) -> Option<&Tensor> {
        Some(&self.b)
    }

    fn relu(&self) -> bool {
        self.relu
    }
}

/// A bare `[in, out]` weight (the global half of the first segmentation layer).
impl FoldedLayer for Tensor {
    fn product(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(self)
    }

    fn bias(&self) -> Option<&Tensor> {
        None
    }

    fn relu(&self) -> bool {
        false
    }
}

/// What the eval-mode tensor-op forward ([`FoldedLayers::forward`]) needs of a folded
/// layer `act(x W + b)`, whatever holds the weights: f32 tensors here, quantized matmuls
/// in the deployed network (`crate::deploy`), so that both run the same maths.
pub(crate) trait FoldedLayer {
    /// `x W`: `[M, in]` -> `[M, out]`, no bias, no activation.
    fn product(&self, x: &Tensor) -> Result<Tensor>;
    fn bias(&self) -> Option<&Tensor>;
    fn relu(&self) -> bool;

    /// `act(x W + b)`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = add_bias(self.product(x)?, self.bias())?;
        if self.relu() {
            y.relu()
        } else {
            Ok(y)
        }
    }
}

fn add_bias(y: Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// The layers of an eval-mode PointNet, grouped as the forward uses them; `S` is the type
/// of `seg0_global`, the global half of the first segmentation layer (a bare weight: its
/// bias and ReLU are `seg0_local`'s).
#[derive(Debug, Clone)]
pub(crate) struct FoldedLayers<L, S = L> {
    pub local: Vec<L>,
    pub global: Vec<L>,
    pub seg0_local: L,
    pub seg0_global: S,
    /// The segmentation layers after the first.
    pub seg: Vec<L>,
    pub head: L,
}

impl<L, S> FoldedLayers<L, S> {
    /// Builds every layer of [`FusedPointNet::folded_layout`] in its order:
    /// `layer(name, in, out, relu)` for those with a bias, `weight(name, in, out)` for
    /// `seg0_global`.
    pub fn load(
        cfg: &PointNetConfig,
        mut layer: impl FnMut(&str, usize, usize, bool) -> Result<L>,
        mut weight: impl FnMut(&str, usize, usize) -> Result<S>,
    ) -> Result<Self> {
        let mut layers = Vec::new();
        let mut seg0_global = None;
        for (name, i, o, bias) in FusedPointNet::folded_layout(cfg) {
            if bias {
                layers.push(layer(&name, i, o, name != "head")?);
            } else {
                seg0_global = Some(weight(&name, i, o)?);
            }
        }
        let mut rest = layers.into_iter();
        let local = rest.by_ref().take(cfg.local.len()).collect();
        let global = rest.by_ref().take(cfg.global.len()).collect();
        let seg0_local = rest.next().expect("layout has seg0_local");
        let mut seg: Vec<L> = rest.collect();
        let head = seg.pop().expect("layout ends with the head");
        Ok(Self {
            local,
            global,
            seg0_local,
            seg0_global: seg0_global.expect("layout has seg0_global"),
            seg,
            head,
        })
    }
}

impl<L: FoldedLayer, S: FoldedLayer> FoldedLayers<L, S> {
    /// `points` `[B, N, 3]` -> `[B, N, D]` from candle tensor ops (any device), with the
    /// two rewrites of [`FusedPointNet`].
    pub fn forward(&self, points: &Tensor) -> Result<Tensor> {
        let (b, n) = check_points(points)?;
        let mut local = points.reshape((b * n, 3))?;
        for l in &self.local {
            local = l.forward(&local)?;
        }
        let (last, rest) = self.global.split_last().expect("validated non-empty");
        let mut g = local.clone();
        for l in rest {
            g = l.forward(&g)?;
        }
        // Max before bias and ReLU (both monotone, so they commute with it).
        let z = last.product(&g)?; // [B*N, G]
        let cg = z.dim(1)?;
        let global = add_bias(z.reshape((b, n, cg))?.max(1)?, last.bias())?.relu()?; // [B, G]

        // Per-cloud bias of the first segmentation layer.
        let bias0 = add_bias(self.seg0_global.product(&global)?, self.seg0_local.bias())?; // [B, S]
        let s = bias0.dim(1)?;
        let y = self
            .seg0_local
            .product(&local)?
            .reshape((b, n, s))?
            .broadcast_add(&bias0.unsqueeze(1)?)?
            .relu()?
            .reshape((b * n, s))?;
        let mut x = y;
        for l in &self.seg {
            x = l.forward(&x)?;
        }
        self.head.forward(&x)?.reshape((b, n, ()))
    }
}

/// Inference-only PointNet: batch norm folded into the linear layers, pre-transposed
/// contiguous weights, and two exact rewrites that skip work:
/// - the last global layer takes the max over points *before* bias and ReLU
///   (`max_n relu(z_n + b) = relu(max_n z_n + b)`, both are monotone), so the
///   `[N, 1024]` activation is touched once instead of three times;
/// - the global half of the first segmentation layer is one `[1, 1024] x [1024, 512]`
///   product per cloud, added to the bias.
///
/// Equals [`PointNet::forward_t`] with `train = false` up to float rounding.
#[derive(Debug, Clone)]
pub struct FusedPointNet {
    cfg: BackboneConfig,
    layers: FoldedLayers<FusedLinear, Tensor>,
    cpu: CpuPointNet,
}

impl FusedPointNet {
    /// `points`: `[B, N, 3]` -> `[B, N, D]`. On the CPU this runs the plain-slice path
    /// ([`Self::forward_cpu`]); elsewhere the same maths as candle tensor ops.
    pub fn forward(&self, points: &Tensor) -> Result<Tensor> {
        if points.device().is_cpu() {
            self.forward_cpu(points)
        } else {
            self.forward_tensors(points)
        }
    }

    /// CPU path: clouds are cut into tiles of points; each tile runs the whole per-point
    /// chain with a single-threaded gemm while its activations stay in L2, and rayon
    /// spreads the tiles over the cores (no per-layer thread hand-off, no allocation per
    /// layer). Pass 1 gives the local features and the global max; pass 2 the head.
    pub fn forward_cpu(&self, points: &Tensor) -> Result<Tensor> {
        let (b, n) = check_points(points)?;
        let pts: Vec<f32> = points.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let d = self.cpu.head.n;
        let mut out = vec![0f32; b * n * d];
        for (xs, out) in pts.chunks_exact(n * 3).zip(out.chunks_exact_mut(n * d)) {
            self.cpu.cloud(xs, out, n);
        }
        Tensor::from_vec(out, (b, n, d), &Device::Cpu)?.to_device(points.device())
    }

    /// Tensor-op version of the same computation (any device; the CPU reference).
    pub fn forward_tensors(&self, points: &Tensor) -> Result<Tensor> {
        self.layers.forward(points)
    }

    pub fn config(&self) -> &BackboneConfig {
        &self.cfg
    }
}

/// Raw row-major copies of the fused weights for [`FusedPointNet::forward_cpu`].
#[derive(Debug, Clone)]
struct CpuPointNet {
    local: Vec<RawLinear>,
    global: Vec<RawLinear>,
    seg0_local: RawLinear,
    /// `[G, S]` global half of the first segmentation layer (bias and ReLU live in
    /// `seg0_local`).
    seg0_global: RawLinear,
    seg: Vec<RawLinear>,
    head: RawLinear,
}

/// Points per tile: 256 x 1024 floats (1 MiB) keeps the widest activation in L2.
const TILE: usize = 256;

/// A plain weight matrix (no bias, no activation) as a [`RawLinear`].
fn raw_weight(w: &Tensor) -> Result<RawLinear> {
    let (k, n) = w.dims2()?;
    Ok(RawLinear {
        wt: w.flatten_all()?.to_vec1()?,
        b: vec![0.0; n],
        k,
        n,
        relu: false,
    })
}

impl CpuPointNet {
    fn max_width(&self) -> usize {
        let all = self.local.iter().chain(&self.global).chain(&self.seg);
        all.chain([&self.seg0_local, &self.head])
            .map(|l| l.n.max(l.k))
            .max()
            .unwrap_or(3)
    }

    /// One cloud: `xs` `[n, 3]` -> `out` `[n, D]`.
    fn cloud(&self, xs: &[f32], out: &mut [f32], n: usize) {
        let cl = self.seg0_local.k;
        let (last, rest) = self.global.split_last().expect("validated non-empty");
        let g = last.n;
        let width = self.max_width();
        let mut local = vec![0f32; n * cl];

        // Pass 1: local features (kept) and the column max of the last global layer
        // before its bias and ReLU (monotone, so they commute with the max).
        let gmax = local
            .par_chunks_mut(TILE * cl)
            .zip(xs.par_chunks(TILE * 3))
            .map_init(
                || Scratch::new(TILE * width),
                |s, (loc, x)| {
                    let rows = x.len() / 3;
                    s.input(x.len()).copy_from_slice(x);
                    let len = s.run(&self.local, rows, 3);
                    loc.copy_from_slice(&s.split().0[..len]);
                    let len = s.run(rest, rows, cl);
                    let (h, z) = s.split();
                    cpu::matmul(z, &h[..len], &last.wt, rows, last.k, g);
                    let mut m = vec![f32::NEG_INFINITY; g];
                    cpu::col_max(&mut m, &z[..rows * g]);
                    m
                },
            )
            .reduce(
                || vec![f32::NEG_INFINITY; g],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x = x.max(*y));
                    a
                },
            );
        let mut global = gmax;
        cpu::bias_act(&mut global, &last.b, true);

        // Per-cloud bias of the first segmentation layer: b0 + W_g global.
        let s0 = &self.seg0_local;
        let mut bias0 = vec![0f32; s0.n];
        cpu::matmul(&mut bias0, &global, &self.seg0_global.wt, 1, g, s0.n);
        bias0.iter_mut().zip(&s0.b).for_each(|(x, b)| *x += b);

        // Pass 2: segmentation head per tile, written straight into the output.
        let d = self.head.n;
        out.par_chunks_mut(TILE * d)
            .zip(local.par_chunks(TILE * cl))
            .for_each_init(
                || Scratch::new(TILE * width),
                |s, (o, loc)| {
                    let rows = loc.len() / cl;
                    let y = s.input(rows * s0.n);
                    cpu::matmul(y, loc, &s0.wt, rows, cl, s0.n);
                    cpu::bias_act(y, &bias0, s0.relu);
                    let len = s.run(&self.seg, rows, s0.n);
                    self.head.forward(o, &s.split().0[..len], rows);
                },
            );
    }
}

/// Folded-weight names and shapes, so a deployment file stores exactly what inference runs
/// (`crate::deploy`): `<layer>.wt` `[in, out]` and `<layer>.b` `[out]` for the layers
/// `local.{i}`, `global.{i}`, `seg0_local`, `seg.{i}` (i >= 1, the original indices) and
/// `head`, plus `seg0_global.wt` (the global half of the first segmentation layer).
impl FusedPointNet {
    /// `(layer name, in, out, has bias)` in forward order.
    pub fn folded_layout(cfg: &PointNetConfig) -> Vec<(String, usize, usize, bool)> {
        let mut v = Vec::new();
        let mut c = 3;
        for (i, &o) in cfg.local.iter().enumerate() {
            v.push((format!("local.{i}"), c, o, true));
            c = o;
        }
        let cl = c;
        for (i, &o) in cfg.global.iter().enumerate() {
            v.push((format!("global.{i}"), c, o, true));
            c = o;
        }
        let cg = c;
        if let Some(&s0) = cfg.seg.first() {
            v.push(("seg0_local".into(), cl, s0, true));
            v.push(("seg0_global".into(), cg, s0, false));
        }
        let mut c = cfg.seg.first().copied().unwrap_or(cl);
        for (i, &o) in cfg.seg.iter().enumerate().skip(1) {
            v.push((format!("seg.{i}"), c, o, true));
            c = o;
        }
        v.push(("head".into(), c, cfg.embed_dim, true));
        v
    }

    /// The folded weights by name (see [`Self::folded_layout`]).
    pub fn folded_tensors(&self) -> Vec<(String, Tensor)> {
        let ls = &self.layers;
        let mut v = Vec::new();
        let mut push = |name: String, l: &FusedLinear| {
            v.push((format!("{name}.wt"), l.wt.clone()));
            v.push((format!("{name}.b"), l.b.clone()));
        };
        for (i, l) in ls.local.iter().enumerate() {
            push(format!("local.{i}"), l);
        }
        for (i, l) in ls.global.iter().enumerate() {
            push(format!("global.{i}"), l);
        }
        push("seg0_local".into(), &ls.seg0_local);
        for (i, l) in ls.seg.iter().enumerate() {
            push(format!("seg.{}", i + 1), l);
        }
        push("head".into(), &ls.head);
        v.push(("seg0_global.wt".into(), ls.seg0_global.clone()));
        v
    }

    /// Rebuilds the network from [`Self::folded_tensors`] (f32, CPU); every tensor must be
    /// present with its layout shape.
    pub fn from_folded(
        cfg: PointNetConfig,
        tensors: &std::collections::HashMap<String, Tensor>,
    ) -> Result<Self> {
        cfg.validate()?;
        let get = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = tensors
                .get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("missing tensor '{name}'")))?;
            if t.dims() != shape {
                candle_core::bail!(
                    "tensor '{name}' has shape {:?}, expected {shape:?}",
                    t.dims()
                );
            }
            t.to_dtype(DType::F32)?.contiguous()
        };
        let weight = |name: &str, i, o| get(&format!("{name}.wt"), &[i, o]);
        let layers = FoldedLayers::load(
            &cfg,
            |name, i, o, relu| {
                Ok(FusedLinear {
                    wt: weight(name, i, o)?,
                    b: get(&format!("{name}.b"), &[o])?,
                    relu,
                })
            },
            weight,
        )?;
        Self::assemble(BackboneConfig::PointNet(cfg), layers)
    }

    /// The network from its folded layers, with the plain-slice copy the CPU path runs on.
    fn assemble(
        cfg: BackboneConfig,
        layers: FoldedLayers<FusedLinear, Tensor>,
    ) -> Result<FusedPointNet> {
        let raw = |ls: &[FusedLinear]| ls.iter().map(FusedLinear::raw).collect::<Result<Vec<_>>>();
        let cpu = CpuPointNet {
            local: raw(&layers.local)?,
            global: raw(&layers.global)?,
            seg0_local: layers.seg0_local.raw()?,
            seg0_global: raw_weight(&layers.seg0_global)?,
            seg: raw(&layers.seg)?,
            head: layers.head.raw()?,
        };
        Ok(FusedPointNet { cfg, layers, cpu })
    }
}

impl Backbone for FusedPointNet {
    /// Inference only: `train = true` is refused (no batch statistics exist here).
    fn forward_t(&self, points: &Tensor, train: bool) -> Result<Tensor> {
        if train {
            candle_core::bail!("FusedPointNet is inference-only; train the PointNet it came from");
        }
        self.forward(points)
    }

    fn config(&self) -> &BackboneConfig {
        &self.cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::test_util::{adamw_losses, max_abs, max_abs_diff};
    use candle_core::{DType, Device, IndexOp};
    use candle_nn::VarMap;

    fn points(b: usize, n: usize, seed: u64) -> Tensor {
        let dev = Device::Cpu;
        Tensor::rand(-1f32, 1.0, (b, n, 3), &dev)
            .and_then(|t| t.affine(1.0, seed as f64 * 1e-3))
            .unwrap()
    }

    fn small() -> PointNetConfig {
        PointNetConfig {
            embed_dim: 16,
            local: vec![16, 16],
            global: vec![16, 32, 64],
            seg: vec![32, 16],
        }
    }

    /// Random batch-norm parameters and running statistics, so folding is really tested.
    fn randomise_bn(vm: &VarMap) {
        for (name, var) in vm.data().lock().unwrap().iter() {
            let n = var.elem_count();
            let r = |lo: f32, hi: f32| Tensor::rand(lo, hi, n, &Device::Cpu).unwrap();
            let v = if name.ends_with("bn.weight") {
                // include negative scales: the max-before-bias rewrite must still hold
                (r(0.5, 1.5) * r(-1.0, 1.0).sign().unwrap()).unwrap()
            } else if name.ends_with("bn.bias") || name.ends_with("running_mean") {
                r(-0.5, 0.5)
            } else if name.ends_with("running_var") {
                r(0.2, 2.0)
            } else {
                continue;
            };
            var.set(&v).unwrap();
        }
    }

    /// A network with fresh weights in a new `VarMap` (returned too, to change or save them).
    fn new_net(cfg: PointNetConfig) -> (VarMap, PointNet) {
        let vm = VarMap::new();
        let net = PointNet::new(cfg, VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu));
        (vm, net.unwrap())
    }

    #[test]
    fn pointnet_output_shape_default_config() {
        let (_vm, net) = new_net(PointNetConfig::default());
        let x = points(2, 64, 0);
        assert_eq!(net.forward_t(&x, true).unwrap().dims(), &[2, 64, 128]);
        assert_eq!(net.forward_t(&x, false).unwrap().dims(), &[2, 64, 128]);
        assert_eq!(
            net.fused().unwrap().forward(&x).unwrap().dims(),
            &[2, 64, 128]
        );
    }

    #[test]
    fn fused_equals_unfused_eval() {
        let (vm, net) = new_net(PointNetConfig::default());
        randomise_bn(&vm);
        let fused = net.fused().unwrap();
        let x = points(3, 256, 1);
        let a = net.forward_t(&x, false).unwrap();
        let b = fused.forward(&x).unwrap();
        let scale = max_abs(&a);
        let d = max_abs_diff(&a, &b);
        assert!(
            d <= 1e-4 * scale.max(1.0),
            "max diff {d} (output scale {scale})"
        );
        assert!(fused.forward_t(&x, true).is_err());
    }

    #[test]
    fn folded_tensors_roundtrip_exactly() {
        let (vm, net) = new_net(small());
        randomise_bn(&vm);
        let fused = net.fused().unwrap();
        let tensors: std::collections::HashMap<_, _> = fused.folded_tensors().into_iter().collect();
        let again = FusedPointNet::from_folded(small(), &tensors).unwrap();
        let x = points(1, 64, 7);
        assert_eq!(
            max_abs_diff(&fused.forward(&x).unwrap(), &again.forward(&x).unwrap()),
            0.0
        );
        let mut missing = tensors.clone();
        missing.remove("seg.1.wt");
        let e = FusedPointNet::from_folded(small(), &missing).unwrap_err();
        assert!(e.to_string().contains("seg.1.wt"), "{e}");
    }

    #[test]
    fn pointnet_is_permutation_equivariant() {
        let (vm, net) = new_net(small());
        randomise_bn(&vm);
        let n = 50;
        let x = points(2, n, 2);
        let perm: Vec<u32> = (0..n as u32).map(|i| (i * 17 + 5) % n as u32).collect();
        let perm = Tensor::new(perm.as_slice(), &Device::Cpu).unwrap();
        let xp = x.index_select(&perm, 1).unwrap();
        for train in [false, true] {
            let e = net.forward_t(&x, train).unwrap();
            let ep = net.forward_t(&xp, train).unwrap();
            let d = max_abs_diff(&e.index_select(&perm, 1).unwrap(), &ep);
            assert!(d < 1e-4, "train={train}: diff {d}");
        }
        let f = net.fused().unwrap();
        let d = max_abs_diff(
            &f.forward(&x).unwrap().index_select(&perm, 1).unwrap(),
            &f.forward(&xp).unwrap(),
        );
        assert!(d < 1e-4, "fused: diff {d}");
    }

    #[test]
    fn eval_mode_is_per_cloud_train_mode_updates_running_stats() {
        let (vm, net) = new_net(small());
        let x = points(2, 40, 3);
        // Eval: cloud 0's embeddings do not depend on cloud 1.
        let both = net.forward_t(&x, false).unwrap();
        let alone = net.forward_t(&x.i(0..1).unwrap(), false).unwrap();
        assert!(max_abs_diff(&both.i(0..1).unwrap(), &alone) < 1e-5);
        let rm = |vm: &VarMap| {
            vm.data().lock().unwrap()["global.2.bn.running_mean"]
                .as_tensor()
                .copy()
                .unwrap()
        };
        let before = rm(&vm);
        net.forward_t(&x, true).unwrap();
        assert!(max_abs_diff(&before, &rm(&vm)) > 0.0);
    }

    #[test]
    fn save_and_load_by_name_gives_identical_outputs() {
        let dev = Device::Cpu;
        let (vm, net) = new_net(small());
        randomise_bn(&vm);
        let x = points(2, 30, 4);
        let want = net.forward_t(&x, false).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pointnet.safetensors");
        vm.save(&path).unwrap();

        // Read-only load (inference, e.g. the ROS node).
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &dev).unwrap() };
        let loaded = crate::model::build_backbone(&BackboneConfig::PointNet(small()), vb).unwrap();
        assert_eq!(
            max_abs_diff(&want, &loaded.forward_t(&x, false).unwrap()),
            0.0
        );

        // Load into a fresh VarMap (resume training).
        let (mut vm2, net2) = new_net(small());
        vm2.load(&path).unwrap();
        assert_eq!(
            max_abs_diff(&want, &net2.forward_t(&x, false).unwrap()),
            0.0
        );
    }

    #[test]
    fn adamw_steps_lower_a_regression_loss() {
        let (vm, net) = new_net(small());
        let x = points(4, 64, 5);
        let losses = adamw_losses(&net, &vm, &x, &[0, 5, 9, 17, 33, 63], 15);
        let (first, last) = (losses[0], *losses.last().unwrap());
        assert!(last < 0.5 * first, "loss did not drop: {losses:?}");
    }
}
