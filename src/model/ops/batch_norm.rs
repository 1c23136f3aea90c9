//! Train-mode batch norm + activation as one node, and the batch-norm maths the other
//! fused ops share: moments from per-chunk sums, the folded `scale`/`shift`, and the
//! per-channel backward coefficients. Each op only differs in how it walks its rows
//! (plain rows, winners of a max-pool, edges of a graph), so those walks stay with the ops
//! and everything that follows the sums lives here, written once.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::common::{act, act_grad, f32_slice, fast_path, par_fill, with_f32, ROWS};
use crate::model::activation::Activation;

multiversion! {
    /// Column sums of `x - shift` and of its square over the rows of `xs` (f32: a chunk is
    /// short and shifted by a sample of the data, so there is no cancellation to fear).
    fn shifted_sums(xs: &[f32], shift: &[f32], s: &mut [f32], q: &mut [f32]) {
        for row in xs.chunks_exact(shift.len()) {
            for (((s, q), &v), &sh) in s.iter_mut().zip(q.iter_mut()).zip(row).zip(shift) {
                let d = v - sh;
                *s += d;
                *q += d * d;
            }
        }
    }
}

multiversion! {
    /// `out = act(x * scale + shift)` row by row.
    fn affine_act(out: &mut [std::mem::MaybeUninit<f32>], xs: &[f32], scale: &[f32], shift: &[f32], slope: f32) {
        let c = scale.len();
        for (orow, xrow) in out.chunks_exact_mut(c).zip(xs.chunks_exact(c)) {
            for (((o, &v), &a), &b) in orow.iter_mut().zip(xrow).zip(scale).zip(shift) {
                o.write(act(v * a + b, slope));
            }
        }
    }
}

multiversion! {
    /// Batch-norm backward, pass 1: column sums of `g` and `g * (x - mean)`,
    /// `g = dy * act'(y)`.
    fn bn_bwd_sums(dy: &[f32], x: &[f32], y: &[f32], mean: &[f32], slope: f32, sg: &mut [f32], sgx: &mut [f32]) {
        let c = mean.len();
        for ((dr, xr), yr) in dy.chunks_exact(c).zip(x.chunks_exact(c)).zip(y.chunks_exact(c)) {
            for (((((sg, sgx), &d), &xv), &yv), &mu) in
                sg.iter_mut().zip(sgx.iter_mut()).zip(dr).zip(xr).zip(yr).zip(mean)
            {
                let g = act_grad(d, yv, slope);
                *sg += g;
                *sgx += g * (xv - mu);
            }
        }
    }
}

multiversion! {
    /// Batch-norm backward, pass 2: `dx = k (g - mg - (x - mean) q)`.
    pub(super) fn bn_bwd_dx(
        out: &mut [std::mem::MaybeUninit<f32>],
        dy: &[f32],
        x: &[f32],
        y: &[f32],
        coef: &[[f32; 4]],
        slope: f32,
    ) {
        let c = coef.len();
        for (((or, dr), xr), yr) in out.chunks_exact_mut(c).zip(dy.chunks_exact(c)).zip(x.chunks_exact(c)).zip(y.chunks_exact(c)) {
            for ((((o, &d), &xv), &yv), &[k, mg, mu, q]) in or.iter_mut().zip(dr).zip(xr).zip(yr).zip(coef) {
                let g = act_grad(d, yv, slope);
                o.write(k * (g - mg - (xv - mu) * q));
            }
        }
    }
}

/// Batch statistics saved by the forward pass for the backward pass and running stats.
#[derive(Debug, Default)]
pub(super) struct BnStats {
    pub mean: Vec<f32>,
    /// Biased variance.
    pub var: Vec<f32>,
    pub istd: Vec<f32>,
    pub gamma: Vec<f32>,
}

impl BnStats {
    /// The batch mean and biased variance as `[C]` tensors, for the running statistics.
    pub fn moments(&self, dev: &Device) -> Result<(Tensor, Tensor)> {
        let c = self.mean.len();
        Ok((
            Tensor::from_slice(&self.mean, c, dev)?,
            Tensor::from_slice(&self.var, c, dev)?,
        ))
    }
}

/// Column moments in f64, as every forward pass computes them before rounding to f32.
pub(super) struct Moments {
    pub mean: Vec<f64>,
    /// Biased variance.
    pub var: Vec<f64>,
    /// `1 / sqrt(var + eps)`.
    pub istd: Vec<f64>,
}

impl Moments {
    /// From the column sums of `x - shift` and of its square over `count` samples (the
    /// shift, a sample of the data, keeps the f32 partial sums free of cancellation).
    pub fn from_shifted_sums(sum: &[f64], sq: &[f64], count: f64, shift: &[f32], eps: f64) -> Self {
        let dmean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        let var: Vec<f64> = sq
            .iter()
            .zip(&dmean)
            .map(|(q, mu)| (q / count - mu * mu).max(0.0))
            .collect();
        let mean: Vec<f64> = dmean
            .iter()
            .zip(shift)
            .map(|(d, &s)| d + s as f64)
            .collect();
        let istd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        Self { mean, var, istd }
    }

    /// Train-mode batch norm as a per-channel affine map `x * scale + shift`.
    pub fn affine(&self, gamma: &[f32], beta: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f32> = self
            .istd
            .iter()
            .zip(gamma)
            .map(|(i, &g)| (i * g as f64) as f32)
            .collect();
        let shift: Vec<f32> = (0..scale.len())
            .map(|j| (beta[j] as f64 - self.mean[j] * scale[j] as f64) as f32)
            .collect();
        (scale, shift)
    }

    /// What the backward pass and the running statistics keep (f32).
    pub fn into_stats(self, gamma: &[f32]) -> BnStats {
        let f32s = |v: Vec<f64>| v.iter().map(|&v| v as f32).collect();
        BnStats {
            mean: f32s(self.mean),
            var: f32s(self.var),
            istd: f32s(self.istd),
            gamma: gamma.to_vec(),
        }
    }
}

/// Sums per-chunk f32 column partials in f64.
pub(super) fn sum_partials(
    parts: impl ParallelIterator<Item = (Vec<f32>, Vec<f32>)>,
    c: usize,
) -> (Vec<f64>, Vec<f64>) {
    parts
        .fold(
            || (vec![0f64; c], vec![0f64; c]),
            |(mut s, mut q), (s2, q2)| {
                s.iter_mut().zip(&s2).for_each(|(a, &b)| *a += b as f64);
                q.iter_mut().zip(&q2).for_each(|(a, &b)| *a += b as f64);
                (s, q)
            },
        )
        .reduce(
            || (vec![0f64; c], vec![0f64; c]),
            |(mut s, mut q), (s2, q2)| {
                s.iter_mut().zip(&s2).for_each(|(a, b)| *a += b);
                q.iter_mut().zip(&q2).for_each(|(a, b)| *a += b);
                (s, q)
            },
        )
}

/// Train-mode batch norm + activation of `x` `[m, c]` (row-major slice): the output and
/// the statistics the backward pass needs.
pub(super) fn bn_forward(
    x: &[f32],
    m: usize,
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    act: Activation,
    eps: f64,
) -> (Vec<f32>, BnStats) {
    let mo = bn_moments(x, m, c, eps);
    let (scale, shift_out) = mo.affine(gamma, beta);
    let sl = act.negative_slope();
    let y = par_fill(m * c, ROWS * c, |i, out| {
        let off = i * ROWS * c;
        affine_act(out, &x[off..off + out.len()], &scale, &shift_out, sl);
    });
    (y, mo.into_stats(gamma))
}

/// Column mean, biased variance and `1 / sqrt(var + eps)` of `x` `[m, c]`, in f64.
pub(super) fn bn_moments(x: &[f32], m: usize, c: usize, eps: f64) -> Moments {
    // Column sums of (x - x[0]) and its square: f32 per chunk, f64 across chunks.
    let shift = &x[..c];
    let parts = x.par_chunks(ROWS * c).map(|xs| {
        let (mut s, mut q) = (vec![0f32; c], vec![0f32; c]);
        shifted_sums(xs, shift, &mut s, &mut q);
        (s, q)
    });
    let (sum, sq) = sum_partials(parts, c);
    Moments::from_shifted_sums(&sum, &sq, m as f64, shift, eps)
}

/// Batch-norm backward from the reductions `sg = sum g` and `sgx = sum g (x - mean)` over
/// `count` samples (`g = dy * act'(y)`): `(dgamma, dbeta, coef)`, where `coef[j]` =
/// `[gamma istd, dbeta / count, mean, istd dgamma / count]` is what `dx = k (g - mg -
/// (x - mean) q)` needs per channel ([`bn_bwd_dx`] and the pooled / edge variants).
pub(super) fn bn_coefs(
    sg: &[f64],
    sgx: &[f64],
    st: &BnStats,
    count: f32,
) -> (Vec<f32>, Vec<f32>, Vec<[f32; 4]>) {
    let (mean, istd) = (&st.mean, &st.istd);
    // dbeta = sum g, dgamma = sum g * xhat; dx = gamma istd (g - dbeta/m - xhat dgamma/m),
    // with xhat dgamma / m = (x - mean) (istd dgamma / m).
    let dbeta: Vec<f32> = sg.iter().map(|&v| v as f32).collect();
    let dgamma: Vec<f32> = sgx.iter().zip(istd).map(|(&v, &i)| v as f32 * i).collect();
    let coef: Vec<[f32; 4]> = (0..mean.len())
        .map(|j| {
            [
                st.gamma[j] * istd[j],
                dbeta[j] / count,
                mean[j],
                istd[j] * dgamma[j] / count,
            ]
        })
        .collect();
    (dgamma, dbeta, coef)
}

/// Batch-norm backward, reductions over the rows of `[m, c]` data (see [`bn_coefs`]). `x`
/// is the batch norm's input, `y` its output.
pub(super) fn bn_backward_coefs(
    dy: &[f32],
    x: &[f32],
    y: &[f32],
    c: usize,
    st: &BnStats,
    act: Activation,
) -> (Vec<f32>, Vec<f32>, Vec<[f32; 4]>) {
    let m = x.len() / c;
    let sl = act.negative_slope();
    // sum(g) and sum(g * (x - mean)) with g = dy * act'(y).
    let parts = dy
        .par_chunks(ROWS * c)
        .zip(x.par_chunks(ROWS * c))
        .zip(y.par_chunks(ROWS * c))
        .map(|((dys, xs), ys)| {
            let (mut sg, mut sgx) = (vec![0f32; c], vec![0f32; c]);
            bn_bwd_sums(dys, xs, ys, &st.mean, sl, &mut sg, &mut sgx);
            (sg, sgx)
        });
    let (sg, sgx) = sum_partials(parts, c);
    bn_coefs(&sg, &sgx, st, m as f32)
}

/// Runs a fused op whose operands are `(a, b, [gamma; beta])` and which saves its batch
/// statistics in a shared state `S`: the output and the batch mean and biased variance.
pub(super) fn apply_with_stats<S: Default, O: CustomOp3 + Send + Sync + 'static>(
    a: &Tensor,
    b: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    op: impl FnOnce(Arc<Mutex<S>>) -> O,
    stats: impl FnOnce(&S) -> &BnStats,
) -> Result<(Tensor, Tensor, Tensor)> {
    let state = Arc::new(Mutex::new(S::default()));
    let op = op(state.clone());
    let gb = Tensor::cat(&[gamma, beta], 0)?;
    let y = a.contiguous()?.apply_op3(&b.contiguous()?, &gb, op)?;
    let st = state.lock().unwrap();
    let (mean, var) = stats(&st).moments(a.device())?;
    Ok((y, mean, var))
}

/// The gradient of the `[gamma; beta]` operand of an [`apply_with_stats`] op.
pub(super) fn gamma_beta_grad(mut dgamma: Vec<f32>, dbeta: &[f32], dev: &Device) -> Result<Tensor> {
    dgamma.extend_from_slice(dbeta);
    let len = dgamma.len();
    Tensor::from_vec(dgamma, len, dev)
}

struct BnAct {
    act: Activation,
    eps: f64,
    stats: Arc<Mutex<BnStats>>,
}

impl CustomOp3 for BnAct {
    fn name(&self) -> &'static str {
        "bn-act-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "bn x")?;
        let gamma = f32_slice(s2, l2, "bn gamma")?;
        let beta = f32_slice(s3, l3, "bn beta")?;
        let (m, c) = l1.shape().dims2()?;
        let (y, stats) = bn_forward(x, m, c, gamma, beta, self.act, self.eps);
        *self.stats.lock().unwrap() = stats;
        Ok((CpuStorage::F32(y), Shape::from((m, c))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _gamma: &Tensor,
        _beta: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (m, c) = x.dims2()?;
        let dy = dy.contiguous()?;
        let (dx, dgamma, dbeta) = with_f32(&[&dy, x, y], |s| {
            let st = self.stats.lock().unwrap();
            let (dgamma, dbeta, coef) = bn_backward_coefs(s[0], s[1], s[2], c, &st, self.act);
            let sl = self.act.negative_slope();
            let dx = par_fill(m * c, ROWS * c, |i, o| {
                let (off, n) = (i * ROWS * c, o.len());
                bn_bwd_dx(
                    o,
                    &s[0][off..off + n],
                    &s[1][off..off + n],
                    &s[2][off..off + n],
                    &coef,
                    sl,
                );
            });
            Ok((dx, dgamma, dbeta))
        })?;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, (m, c), dev)?),
            Some(Tensor::from_vec(dgamma, c, dev)?),
            Some(Tensor::from_vec(dbeta, c, dev)?),
        ))
    }
}

/// Train-mode batch norm over the rows of `x` `[M, C]` followed by `act`. Returns the
/// output and the batch mean and biased variance (`[C]`, detached) for the running stats.
pub(crate) fn bn_act_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    act: Activation,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    if fast_path(&[x, gamma, beta]) {
        let stats = Arc::new(Mutex::new(BnStats::default()));
        let op = BnAct {
            act,
            eps,
            stats: stats.clone(),
        };
        // Not `apply_with_stats`: gamma and beta stay separate operands here.
        let y = x
            .contiguous()?
            .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
        let (mean, var) = stats.lock().unwrap().moments(x.device())?;
        return Ok((y, mean, var));
    }
    bn_act_generic(x, gamma, beta, act, eps)
}

/// [`bn_act_train`] from candle primitives (any device; the reference for the fused op).
pub(super) fn bn_act_generic(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    act: Activation,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let m = x.dim(0)?;
    let mean = (x.sum_keepdim(0)? / m as f64)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = (xc.sqr()?.sum_keepdim(0)? / m as f64)?;
    let scale = (var.clone() + eps)?.sqrt()?.recip()?.broadcast_mul(gamma)?;
    let y = xc.broadcast_mul(&scale)?.broadcast_add(beta)?;
    Ok((
        act.apply(&y)?,
        mean.squeeze(0)?.detach(),
        var.squeeze(0)?.detach(),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{assert_fast_matches_generic, rand, weighted_grads};
    use super::*;
    use candle_core::Var;

    /// Fused batch norm + activation: same values and gradients as the candle-op version.
    #[test]
    fn fused_bn_act_matches_generic_values_and_grads() {
        for act in [
            Activation::None,
            Activation::Relu,
            Activation::LeakyRelu(0.2),
        ] {
            let (m, c) = (600, 37); // more than one row chunk, odd width
            let x = Var::from_tensor(&(rand(&[m, c], 3.0) * 2.0).unwrap()).unwrap();
            let gamma = Var::from_tensor(&rand(&[c], 0.5)).unwrap();
            let beta = Var::from_tensor(&rand(&[c], 0.0)).unwrap();
            let w = rand(&[m, c], 0.0);
            let run = |fast: bool| {
                let f = if fast { bn_act_train } else { bn_act_generic };
                let (y, mean, var) = f(
                    x.as_tensor(),
                    gamma.as_tensor(),
                    beta.as_tensor(),
                    act,
                    1e-5,
                )
                .unwrap();
                let grads = weighted_grads(&y, &w, &[&x, &gamma, &beta]);
                (y, mean, var, grads)
            };
            assert_fast_matches_generic(act, run(true), run(false));
        }
    }
}
