//! Channels-last building blocks shared by the backbones: a batch norm over the rows of a
//! `[M, C]` matrix and a per-point linear layer ("1x1 convolution") with optional batch
//! norm and activation. They own the parameters and running statistics; in train mode on
//! the CPU the maths runs in the fused kernels of `ops/`, which see only slices.

use std::sync::Arc;

use candle_core::{DType, Result, Tensor, Var, D};
use candle_nn::{Init, VarBuilder};

use super::activation::Activation;
use super::ops::{
    add_per_cloud, bn_act_train, edge_bn_act_max_train, linear_bn_act_max_train,
    linear_bn_act_train, max_over_points, EdgeGraph,
};

/// Rows of a train-mode batch norm input: at least 2 (the running variance is the
/// unbiased one, `m / (m - 1)` times the batch variance).
fn train_rows(x: &Tensor) -> Result<usize> {
    let m = x.dim(0)?;
    if m < 2 {
        candle_core::bail!("batch norm in train mode needs at least 2 rows, got {m}");
    }
    Ok(m)
}

/// Batch norm over the rows of a channels-last `[M, C]` matrix (M = batch x points).
///
/// candle-nn's `BatchNorm` normalises dim 1 of a channels-first tensor and, in train mode,
/// transposes and copies its input; for `[M, C]` data the statistics are plain column
/// reductions, so this one avoids the copies. Parameter names follow PyTorch (`weight`,
/// `bias`, `running_mean`, `running_var`) so checkpoints stay readable.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    running_mean: Var,
    running_var: Var,
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    momentum: f64,
}

impl BatchNorm {
    pub const EPS: f64 = 1e-5;
    pub const MOMENTUM: f64 = 0.1;

    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let running_mean = vb.get_with_hints(channels, "running_mean", Init::Const(0.))?;
        let running_var = vb.get_with_hints(channels, "running_var", Init::Const(1.))?;
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.))?;
        Ok(Self {
            // From a VarMap these are already variables (shared with the map, so `save`
            // sees the updated statistics); from a checkpoint they become private vars.
            running_mean: Var::from_tensor(&running_mean)?,
            running_var: Var::from_tensor(&running_var)?,
            weight,
            bias,
            eps: Self::EPS,
            momentum: Self::MOMENTUM,
        })
    }

    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    /// Eval-mode batch norm as a per-channel affine map `y = x * scale + shift`
    /// (both `[C]`, detached): what gets folded into the preceding linear layer.
    pub fn eval_affine(&self) -> Result<(Tensor, Tensor)> {
        let inv_std = (self.running_var.as_detached_tensor() + self.eps)?
            .sqrt()?
            .recip()?;
        let scale = (self.weight.detach() * inv_std)?;
        let shift = (self.bias.detach() - (self.running_mean.as_detached_tensor() * &scale)?)?;
        Ok((scale, shift))
    }

    /// `x`: `[M, C]`. Train mode normalises with the batch statistics (biased variance,
    /// as PyTorch) and moves the running statistics towards them (unbiased variance).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_act_t(x, Activation::None, train)
    }

    /// `act(bn(x))`; in train mode one fused op (see `model/ops/`).
    pub fn forward_act_t(&self, x: &Tensor, act: Activation, train: bool) -> Result<Tensor> {
        if !train {
            let (scale, shift) = self.eval_affine()?;
            return act.apply(&x.broadcast_mul(&scale)?.broadcast_add(&shift)?);
        }
        self.fused_train(train_rows(x)?, |g, b, eps| bn_act_train(x, g, b, act, eps))
    }

    /// Train-mode `act(bn(x w^T))` as one fused op, updating the running statistics.
    pub(crate) fn linear_act_train(
        &self,
        x: &Tensor,
        w: &Tensor,
        act: Activation,
    ) -> Result<Tensor> {
        self.fused_train(train_rows(x)?, |g, b, eps| {
            linear_bn_act_train(x, w, g, b, act, eps)
        })
    }

    /// Train-mode `max over each cloud's n points of act(bn(x w^T))` as one fused op.
    pub(crate) fn linear_act_max_train(
        &self,
        x: &Tensor,
        w: &Tensor,
        act: Activation,
        n: usize,
    ) -> Result<Tensor> {
        self.fused_train(train_rows(x)?, |g, b, eps| {
            linear_bn_act_max_train(x, w, g, b, act, eps, n)
        })
    }

    /// Train-mode fused EdgeConv tail (`max over k of act(bn(a_i + bm_j))`), updating the
    /// running statistics with the moments over all edges.
    pub(crate) fn edge_act_max_train(
        &self,
        a: &Tensor,
        bm: &Tensor,
        graph: Arc<EdgeGraph>,
        act: Activation,
    ) -> Result<Tensor> {
        // No row check, as before: the moments are over the M k edges, not the M rows.
        let edges = graph.nbr.len();
        self.fused_train(edges, |g, b, eps| {
            edge_bn_act_max_train(a, bm, graph, g, b, act, eps)
        })
    }

    /// Runs a fused train-mode op on this layer's `(gamma, beta, eps)`, which returns its
    /// output and the batch mean and biased variance over `count` samples, and moves the
    /// running statistics towards those.
    fn fused_train(
        &self,
        count: usize,
        op: impl FnOnce(&Tensor, &Tensor, f64) -> Result<(Tensor, Tensor, Tensor)>,
    ) -> Result<Tensor> {
        let (y, mean, var) = op(&self.weight, &self.bias, self.eps)?;
        self.update_running(&mean, &var, count)?;
        Ok(y)
    }

    /// Exponential moving average of the batch statistics (PyTorch's convention).
    pub(crate) fn update_running(&self, mean: &Tensor, var: &Tensor, m: usize) -> Result<()> {
        let mo = self.momentum;
        let unbiased = (var * (m as f64 / (m as f64 - 1.0)))?;
        let rm = ((self.running_mean.as_detached_tensor() * (1.0 - mo))? + (mean * mo)?)?;
        let rv = ((self.running_var.as_detached_tensor() * (1.0 - mo))? + (unbiased * mo)?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)
    }
}

/// A per-point linear layer on `[M, in]` rows: `act(bn(x W^T [+ b]))`.
///
/// With batch norm the bias is omitted: it would be cancelled by the mean subtraction.
/// The weight is stored `[out, in]` (PyTorch/candle convention); `x.matmul(w.t())` reads it
/// transposed through strides, which gemm packs for free, so no copy is made.
#[derive(Debug, Clone)]
pub struct PointLinear {
    weight: Tensor,
    bias: Option<Tensor>,
    bn: Option<BatchNorm>,
    act: Activation,
}

impl PointLinear {
    /// Linear + batch norm + activation (`{vb}.weight`, `{vb}.bn.*`).
    pub fn bn(in_dim: usize, out_dim: usize, act: Activation, vb: VarBuilder) -> Result<Self> {
        let weight = Self::get_weight(in_dim, out_dim, &vb)?;
        let bn = BatchNorm::new(out_dim, vb.pp("bn"))?;
        Ok(Self {
            weight,
            bias: None,
            bn: Some(bn),
            act,
        })
    }

    /// Plain linear layer with bias, no activation (`{vb}.weight`, `{vb}.bias`).
    pub fn plain(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let weight = Self::get_weight(in_dim, out_dim, &vb)?;
        let bound = 1.0 / (in_dim as f64).sqrt();
        let bias = vb.get_with_hints(
            out_dim,
            "bias",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        Ok(Self {
            weight,
            bias: Some(bias),
            bn: None,
            act: Activation::None,
        })
    }

    /// A per-point MLP `in_dim -> widths[0] -> ...`, every layer linear + batch norm +
    /// `act` (`{vb}.{i}`); returns the layers and the output width.
    pub fn bn_mlp(
        in_dim: usize,
        widths: &[usize],
        act: Activation,
        vb: VarBuilder,
    ) -> Result<(Vec<Self>, usize)> {
        let mut layers = Vec::with_capacity(widths.len());
        let mut c = in_dim;
        for (i, &o) in widths.iter().enumerate() {
            layers.push(Self::bn(c, o, act, vb.pp(i))?);
            c = o;
        }
        Ok((layers, c))
    }

    fn get_weight(in_dim: usize, out_dim: usize, vb: &VarBuilder) -> Result<Tensor> {
        vb.get_with_hints(
            (out_dim, in_dim),
            "weight",
            candle_nn::init::DEFAULT_KAIMING_NORMAL,
        )
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn in_dim(&self) -> usize {
        self.weight.dims()[1]
    }

    pub fn out_dim(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn activation(&self) -> Activation {
        self.act
    }

    pub fn batch_norm(&self) -> Option<&BatchNorm> {
        self.bn.as_ref()
    }

    /// `x W^T` (+ bias), before batch norm and activation.
    pub fn linear(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.weight.t()?)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// `x` `[B*N, in]` -> max over each cloud's `n` points of this layer's output,
    /// `[B, out]` (a global feature). Train mode with batch norm is one fused op that never
    /// stores the per-point output.
    pub fn forward_max_t(&self, x: &Tensor, n: usize, train: bool) -> Result<Tensor> {
        match (&self.bn, &self.bias, train) {
            (Some(bn), None, true) => bn.linear_act_max_train(x, &self.weight, self.act, n),
            _ => {
                let y = self.forward_t(x, train)?;
                let (m, c) = y.dims2()?;
                max_over_points(&y.reshape((m / n, n, c))?)
            }
        }
    }

    /// Batch norm + activation of an already computed `x W^T`.
    pub fn post(&self, y: &Tensor, train: bool) -> Result<Tensor> {
        match &self.bn {
            Some(bn) => bn.forward_act_t(y, self.act, train),
            None => self.act.apply(y),
        }
    }

    /// `x`: `[M, in]` -> `[M, out]`. In train mode with batch norm this is one fused
    /// graph node (see `model/ops/`).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match (&self.bn, &self.bias, train) {
            (Some(bn), None, true) => bn.linear_act_train(x, &self.weight, self.act),
            _ => self.post(&self.linear(x)?, train),
        }
    }

    /// `layers` applied in turn to `x`.
    pub fn chain_t(layers: &[Self], x: &Tensor, train: bool) -> Result<Tensor> {
        layers
            .iter()
            .try_fold(x.clone(), |x, l| l.forward_t(&x, train))
    }

    /// This layer on the per-point rows `[local, global]`, `local` `[B*N, L]` and `global`
    /// `[B, G]` (one row per cloud), without forming the `[B*N, L + G]` concatenation:
    /// `W [l; g] = W_l l + W_g g`, and `W_g g` is computed once per cloud and added to each
    /// of its points. The first layer after a global max-pool in both backbones.
    pub fn forward_split_t(&self, local: &Tensor, global: &Tensor, train: bool) -> Result<Tensor> {
        let (cl, cg) = (local.dim(1)?, global.dim(1)?);
        let y_local = local.matmul(&self.weight.narrow(1, 0, cl)?.t()?)?; // [B*N, S]
        let y_global = global.matmul(&self.weight.narrow(1, cl, cg)?.t()?)?; // [B, S]
        let y = add_per_cloud(&y_local, &y_global)?;
        let y = match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        self.post(&y, train)
    }

    /// The eval-mode layer as `y = act(x Wf + bf)` with `Wf`: `[in, out]` contiguous
    /// (batch norm folded in) and `bf`: `[out]`.
    pub fn folded(&self) -> Result<(Tensor, Tensor)> {
        let w = self.weight.detach().to_dtype(DType::F32)?;
        let b = match &self.bias {
            Some(b) => b.detach().to_dtype(DType::F32)?,
            None => Tensor::zeros(self.out_dim(), DType::F32, w.device())?,
        };
        let (w, b) = match &self.bn {
            Some(bn) => {
                let (scale, shift) = bn.eval_affine()?;
                let w = w.broadcast_mul(&scale.unsqueeze(D::Minus1)?)?;
                let b = ((b * scale)? + shift)?;
                (w, b)
            }
            None => (w, b),
        };
        Ok((w.t()?.contiguous()?, b.contiguous()?))
    }
}
