//! Fused training ops with hand-written backward passes (CPU), with plain candle-op
//! fallbacks on other devices.
//!
//! Why: built from candle primitives, batch norm + activation is ~8 graph nodes whose
//! backward adds ~20 full passes over `[B*N, C]` (each node's gradient is also
//! zero-initialised and summed), and candle's reductions over a non-last dimension (batch
//! norm statistics, max over points) walk the tensor element by element. These ops do the
//! same maths in two passes forward and two backward, parallelised over row chunks.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::layers::Activation;

/// Rows per parallel work item: small enough for both cores to get several, large enough
/// that per-chunk partial sums cost nothing.
const ROWS: usize = 256;

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("{what}: expected f32 storage");
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{what}: expected a contiguous tensor"),
    }
}

/// Fills a new vector of `len` values by chunks of `chunk` in parallel, without zeroing it first.
fn par_fill(len: usize, chunk: usize, f: impl Fn(usize, &mut [std::mem::MaybeUninit<f32>]) + Sync) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| f(i, c));
    // SAFETY: every element of [0, len) was written by exactly one chunk above.
    unsafe { out.set_len(len) };
    out
}

fn use_fast_path(ts: &[&Tensor]) -> bool {
    ts.iter().all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
}

/// Negative-side slope of an activation (1 = identity, 0 = ReLU).
fn slope(act: Activation) -> f32 {
    match act {
        Activation::None => 1.0,
        Activation::Relu => 0.0,
        Activation::LeakyRelu(s) => s as f32,
    }
}

/// Compiles `$body` three times: for AVX-512, for AVX2+FMA and for the baseline target,
/// and picks one at run time. The crate is built for baseline x86-64 (SSE2) so that the
/// binary runs anywhere; without this the elementwise kernels would use 4-wide SSE.
macro_rules! multiversion {
    ($(#[$m:meta])* fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v4($($arg: $ty),*) { imp($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn v3($($arg: $ty),*) { imp($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features v4 was compiled for.
                    return unsafe { v4($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above, for v3.
                    return unsafe { v3($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}

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
                let z = v * a + b;
                o.write(if z > 0.0 { z } else { z * slope });
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
                let g = if yv > 0.0 { d } else { d * slope };
                *sg += g;
                *sgx += g * (xv - mu);
            }
        }
    }
}

multiversion! {
    /// Batch-norm backward, pass 2: `dx = k (g - mg - (x - mean) q)`.
    fn bn_bwd_dx(
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
                let g = if yv > 0.0 { d } else { d * slope };
                o.write(k * (g - mg - (xv - mu) * q));
            }
        }
    }
}

/// Batch statistics saved by the forward pass for the backward pass and running stats.
#[derive(Debug, Default)]
struct BnStats {
    mean: Vec<f32>,
    /// Biased variance.
    var: Vec<f32>,
    istd: Vec<f32>,
    gamma: Vec<f32>,
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
        // Column sums of (x - x[0]) and its square: f32 per chunk, f64 across chunks.
        let shift = &x[..c];
        let (sum, sq) = x
            .par_chunks(ROWS * c)
            .map(|xs| {
                let (mut s, mut q) = (vec![0f32; c], vec![0f32; c]);
                shifted_sums(xs, shift, &mut s, &mut q);
                (s, q)
            })
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
            );
        let mf = m as f64;
        let dmean: Vec<f64> = sum.iter().map(|s| s / mf).collect();
        let var: Vec<f64> = sq.iter().zip(&dmean).map(|(q, mu)| (q / mf - mu * mu).max(0.0)).collect();
        let mean: Vec<f64> = dmean.iter().zip(shift).map(|(d, &s)| d + s as f64).collect();
        let istd: Vec<f64> = var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        let scale: Vec<f32> = istd.iter().zip(gamma).map(|(i, &g)| (i * g as f64) as f32).collect();
        let shift_out: Vec<f32> = (0..c)
            .map(|j| (beta[j] as f64 - mean[j] * scale[j] as f64) as f32)
            .collect();
        let sl = slope(self.act);
        let y = par_fill(m * c, ROWS * c, |i, out| {
            let off = i * ROWS * c;
            affine_act(out, &x[off..off + out.len()], &scale, &shift_out, sl);
        });
        *self.stats.lock().unwrap() = BnStats {
            mean: mean.iter().map(|&v| v as f32).collect(),
            var: var.iter().map(|&v| v as f32).collect(),
            istd: istd.iter().map(|&v| v as f32).collect(),
            gamma: gamma.to_vec(),
        };
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
        let m = x.dim(0)?;
        let op = BnActBwd {
            act: self.act,
            stats: self.stats.clone(),
        };
        let packed = dy.contiguous()?.apply_op3_no_bwd(x, y, &op)?; // [m + 2, c]
        let dx = packed.narrow(0, 0, m)?;
        let dgamma = packed.get(m)?;
        let dbeta = packed.get(m + 1)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// Backward of [`BnAct`]: `[dx; dgamma; dbeta]` as one `[m + 2, c]` tensor.
struct BnActBwd {
    act: Activation,
    stats: Arc<Mutex<BnStats>>,
}

impl CustomOp3 for BnActBwd {
    fn name(&self) -> &'static str {
        "bn-act-train-bwd"
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
        let dy = f32_slice(s1, l1, "bn dy")?;
        let x = f32_slice(s2, l2, "bn x")?;
        let y = f32_slice(s3, l3, "bn y")?;
        let (m, c) = l2.shape().dims2()?;
        let st = self.stats.lock().unwrap();
        let (mean, istd) = (&st.mean, &st.istd);
        let sl = slope(self.act);
        // Pass 1: sum(g) and sum(g * (x - mean)) with g = dy * act'(y).
        let (sg, sgx) = dy
            .par_chunks(ROWS * c)
            .zip(x.par_chunks(ROWS * c))
            .zip(y.par_chunks(ROWS * c))
            .map(|((dys, xs), ys)| {
                let (mut sg, mut sgx) = (vec![0f32; c], vec![0f32; c]);
                bn_bwd_sums(dys, xs, ys, mean, sl, &mut sg, &mut sgx);
                (sg, sgx)
            })
            .fold(
                || (vec![0f64; c], vec![0f64; c]),
                |(mut a, mut b), (a2, b2)| {
                    a.iter_mut().zip(&a2).for_each(|(u, &v)| *u += v as f64);
                    b.iter_mut().zip(&b2).for_each(|(u, &v)| *u += v as f64);
                    (a, b)
                },
            )
            .reduce(
                || (vec![0f64; c], vec![0f64; c]),
                |(mut a, mut b), (a2, b2)| {
                    a.iter_mut().zip(&a2).for_each(|(u, v)| *u += v);
                    b.iter_mut().zip(&b2).for_each(|(u, v)| *u += v);
                    (a, b)
                },
            );
        let mf = m as f32;
        // dbeta = sum g, dgamma = sum g * xhat; dx = gamma istd (g - dbeta/m - xhat dgamma/m),
        // with xhat dgamma / m = (x - mean) (istd dgamma / m).
        let dbeta: Vec<f32> = sg.iter().map(|&v| v as f32).collect();
        let dgamma: Vec<f32> = sgx.iter().zip(istd).map(|(&v, &i)| v as f32 * i).collect();
        let coef: Vec<[f32; 4]> = (0..c)
            .map(|j| [st.gamma[j] * istd[j], dbeta[j] / mf, mean[j], istd[j] * dgamma[j] / mf])
            .collect();
        let mut out = par_fill(m * c, ROWS * c, |i, o| {
            let off = i * ROWS * c;
            let n = o.len();
            bn_bwd_dx(o, &dy[off..off + n], &x[off..off + n], &y[off..off + n], &coef, sl);
        });
        out.extend_from_slice(&dgamma);
        out.extend_from_slice(&dbeta);
        Ok((CpuStorage::F32(out), Shape::from((m + 2, c))))
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
    if use_fast_path(&[x, gamma, beta]) {
        let stats = Arc::new(Mutex::new(BnStats::default()));
        let op = BnAct {
            act,
            eps,
            stats: stats.clone(),
        };
        let y = x.contiguous()?.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
        let st = stats.lock().unwrap();
        let c = st.mean.len();
        let mean = Tensor::from_slice(&st.mean, c, x.device())?;
        let var = Tensor::from_slice(&st.var, c, x.device())?;
        return Ok((y, mean, var));
    }
    bn_act_generic(x, gamma, beta, act, eps)
}

/// [`bn_act_train`] from candle primitives (any device; the reference for the fused op).
fn bn_act_generic(
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
    Ok((act.apply(&y)?, mean.squeeze(0)?.detach(), var.squeeze(0)?.detach()))
}

/// Max over the points of each cloud, saving the winners for the backward pass.
struct MaxOverPoints {
    argmax: Arc<Mutex<Vec<u32>>>,
}

/// Columns per work item of the max-pool (a 256-byte strip of every row).
const COLS: usize = 64;

impl CustomOp1 for MaxOverPoints {
    fn name(&self) -> &'static str {
        "max-over-points"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "max x")?;
        let (b, n, c) = l.shape().dims3()?;
        let strips = c.div_ceil(COLS);
        let parts: Vec<(Vec<f32>, Vec<u32>)> = (0..b * strips)
            .into_par_iter()
            .map(|t| {
                let (cloud, j0) = (t / strips, (t % strips) * COLS);
                let w = COLS.min(c - j0);
                let mut best = vec![f32::NEG_INFINITY; w];
                let mut arg = vec![0u32; w];
                for i in 0..n {
                    let row = &x[(cloud * n + i) * c + j0..][..w];
                    for j in 0..w {
                        // `>` keeps the first maximum; NaN never wins (as in `max`).
                        if row[j] > best[j] {
                            best[j] = row[j];
                            arg[j] = i as u32;
                        }
                    }
                }
                (best, arg)
            })
            .collect();
        let mut out = Vec::with_capacity(b * c);
        let mut argmax = Vec::with_capacity(b * c);
        for (best, arg) in parts {
            out.extend_from_slice(&best);
            argmax.extend_from_slice(&arg);
        }
        *self.argmax.lock().unwrap() = argmax;
        Ok((CpuStorage::F32(out), Shape::from((b, c))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let n = x.dim(1)?;
        let op = MaxBwd {
            argmax: self.argmax.clone(),
            n,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

/// Scatters `[B, C]` gradients onto the winning points: `[B, N, C]`, zero elsewhere.
struct MaxBwd {
    argmax: Arc<Mutex<Vec<u32>>>,
    n: usize,
}

impl CustomOp1 for MaxBwd {
    fn name(&self) -> &'static str {
        "max-over-points-bwd"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = f32_slice(s, l, "max grad")?;
        let (b, c) = l.shape().dims2()?;
        let argmax = self.argmax.lock().unwrap();
        let mut out = vec![0f32; b * self.n * c];
        for cloud in 0..b {
            for j in 0..c {
                let i = argmax[cloud * c + j] as usize;
                out[(cloud * self.n + i) * c + j] = g[cloud * c + j];
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, self.n, c))))
    }
}

/// `x` `[B, N, C]` -> max over N, `[B, C]` (gradient to the first maximum of each column).
pub(crate) fn max_over_points(x: &Tensor) -> Result<Tensor> {
    if use_fast_path(&[x]) {
        let op = MaxOverPoints {
            argmax: Arc::new(Mutex::new(Vec::new())),
        };
        x.contiguous()?.apply_op1(op)
    } else {
        x.max(1)
    }
}

/// `x[b*N + i, :] + r[b, :]`: a per-cloud row added to every point of the cloud.
struct AddPerCloud;

impl CustomOp2 for AddPerCloud {
    fn name(&self) -> &'static str {
        "add-per-cloud"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "add x")?;
        let r = f32_slice(s2, l2, "add r")?;
        let (m, c) = l1.shape().dims2()?;
        let (b, _) = l2.shape().dims2()?;
        let n = m / b;
        let y = par_fill(m * c, ROWS * c, |i, out| {
            let off = i * ROWS * c;
            for (k, (orow, xrow)) in out.chunks_exact_mut(c).zip(x[off..].chunks_exact(c)).enumerate() {
                let cloud = (i * ROWS + k) / n;
                for ((o, &v), &a) in orow.iter_mut().zip(xrow).zip(&r[cloud * c..(cloud + 1) * c]) {
                    o.write(v + a);
                }
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((m, c))))
    }

    fn bwd(&self, _x: &Tensor, r: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (b, c) = r.dims2()?;
        let m = grad.dim(0)?;
        // Per-cloud column sums as a batched [1, N] x [N, C] product (a gemv per cloud):
        // candle's sum over a middle dimension is an element-by-element walk.
        let n = m / b;
        let ones = Tensor::ones((b, 1, n), grad.dtype(), grad.device())?;
        let dr = ones.matmul(&grad.reshape((b, n, c))?)?.reshape((b, c))?;
        Ok((Some(grad.clone()), Some(dr)))
    }
}

/// `x` `[B*N, C]` plus `r` `[B, C]` broadcast over the N points of each cloud.
pub(crate) fn add_per_cloud(x: &Tensor, r: &Tensor) -> Result<Tensor> {
    let (b, c) = r.dims2()?;
    let m = x.dim(0)?;
    if m % b != 0 {
        candle_core::bail!("add_per_cloud: {m} rows do not split into {b} clouds");
    }
    if use_fast_path(&[x, r]) {
        x.contiguous()?.apply_op2(&r.contiguous()?, AddPerCloud)
    } else {
        x.reshape((b, m / b, c))?.broadcast_add(&r.unsqueeze(1)?)?.reshape((m, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn rand(shape: &[usize], seed: f64) -> Tensor {
        let dev = Device::Cpu;
        (Tensor::randn(0f32, 1.0, shape, &dev).unwrap() + seed).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar().unwrap()
    }

    /// Fused batch norm + activation: same values and gradients as the candle-op version.
    #[test]
    fn fused_bn_act_matches_generic_values_and_grads() {
        for act in [Activation::None, Activation::Relu, Activation::LeakyRelu(0.2)] {
            let (m, c) = (600, 37); // more than one row chunk, odd width
            let x = Var::from_tensor(&(rand(&[m, c], 3.0) * 2.0).unwrap()).unwrap();
            let gamma = Var::from_tensor(&rand(&[c], 0.5)).unwrap();
            let beta = Var::from_tensor(&rand(&[c], 0.0)).unwrap();
            let w = rand(&[m, c], 0.0);
            let run = |fast: bool| {
                let f = if fast { bn_act_train } else { bn_act_generic };
                let (y, mean, var) = f(x.as_tensor(), gamma.as_tensor(), beta.as_tensor(), act, 1e-5).unwrap();
                let g = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
                let grads: Vec<Tensor> = [&x, &gamma, &beta].iter().map(|v| g.get(v.as_tensor()).unwrap().clone()).collect();
                (y, mean, var, grads)
            };
            let (y1, m1, v1, g1) = run(true);
            let (y2, m2, v2, g2) = run(false);
            assert!(max_diff(&y1, &y2) < 1e-4, "{act:?} y");
            assert!(max_diff(&m1, &m2) < 1e-4 && max_diff(&v1, &v2) < 1e-3, "{act:?} stats");
            for (a, b) in g1.iter().zip(&g2) {
                let scale: f32 = b.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
                assert!(max_diff(a, b) < 1e-3 * scale.max(1.0), "{act:?} grad {}", max_diff(a, b));
            }
        }
    }

    #[test]
    fn max_over_points_and_add_per_cloud_match_generic() {
        let x = Var::from_tensor(&rand(&[3, 50, 70], 0.0)).unwrap();
        let w = rand(&[3, 70], 0.0);
        let grad = |y: &Tensor| {
            (y * &w).unwrap().sum_all().unwrap().backward().unwrap().get(x.as_tensor()).unwrap().clone()
        };
        let (a, b) = (max_over_points(x.as_tensor()).unwrap(), x.as_tensor().max(1).unwrap());
        assert_eq!(max_diff(&a, &b), 0.0);
        assert_eq!(max_diff(&grad(&a), &grad(&b)), 0.0);

        let x2 = Var::from_tensor(&rand(&[150, 70], 0.0)).unwrap();
        let r = Var::from_tensor(&rand(&[3, 70], 0.0)).unwrap();
        let w2 = rand(&[150, 70], 0.0);
        let fast = add_per_cloud(x2.as_tensor(), r.as_tensor()).unwrap();
        let slow = x2.as_tensor().reshape((3, 50, 70)).unwrap().broadcast_add(&r.as_tensor().unsqueeze(1).unwrap()).unwrap().reshape((150, 70)).unwrap();
        assert_eq!(max_diff(&fast, &slow), 0.0);
        let g = |y: &Tensor| (y * &w2).unwrap().sum_all().unwrap().backward().unwrap();
        let (gf, gs) = (g(&fast), g(&slow));
        for v in [&x2, &r] {
            assert!(max_diff(gf.get(v.as_tensor()).unwrap(), gs.get(v.as_tensor()).unwrap()) < 1e-4);
        }
    }
}
