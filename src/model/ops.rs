//! Fused training ops with hand-written backward passes (CPU), with plain candle-op
//! fallbacks on other devices.
//!
//! Why: built from candle primitives, batch norm + activation is ~8 graph nodes whose
//! backward adds ~20 full passes over `[B*N, C]` (each node's gradient is also
//! zero-initialised and summed), and candle's reductions over a non-last dimension (batch
//! norm statistics, max over points) walk the tensor element by element. These ops do the
//! same maths in two passes forward and two backward, parallelised over row chunks.

use std::sync::{Arc, Mutex};

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor,
};
use rayon::prelude::*;

use super::cpu::gemm_raw;
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
fn par_fill(
    len: usize,
    chunk: usize,
    f: impl Fn(usize, &mut [std::mem::MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
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
    ts.iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32)
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

/// Sums per-chunk f32 column partials in f64.
fn sum_partials(
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
fn bn_forward(
    x: &[f32],
    m: usize,
    c: usize,
    gamma: &[f32],
    beta: &[f32],
    act: Activation,
    eps: f64,
) -> (Vec<f32>, BnStats) {
    let (mean, var, istd) = bn_moments(x, m, c, eps);
    let scale: Vec<f32> = istd
        .iter()
        .zip(gamma)
        .map(|(i, &g)| (i * g as f64) as f32)
        .collect();
    let shift_out: Vec<f32> = (0..c)
        .map(|j| (beta[j] as f64 - mean[j] * scale[j] as f64) as f32)
        .collect();
    let sl = slope(act);
    let y = par_fill(m * c, ROWS * c, |i, out| {
        let off = i * ROWS * c;
        affine_act(out, &x[off..off + out.len()], &scale, &shift_out, sl);
    });
    let stats = BnStats {
        mean: mean.iter().map(|&v| v as f32).collect(),
        var: var.iter().map(|&v| v as f32).collect(),
        istd: istd.iter().map(|&v| v as f32).collect(),
        gamma: gamma.to_vec(),
    };
    (y, stats)
}

/// Column mean, biased variance and `1 / sqrt(var + eps)` of `x` `[m, c]`, in f64.
fn bn_moments(x: &[f32], m: usize, c: usize, eps: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    // Column sums of (x - x[0]) and its square: f32 per chunk, f64 across chunks.
    let shift = &x[..c];
    let parts = x.par_chunks(ROWS * c).map(|xs| {
        let (mut s, mut q) = (vec![0f32; c], vec![0f32; c]);
        shifted_sums(xs, shift, &mut s, &mut q);
        (s, q)
    });
    let (sum, sq) = sum_partials(parts, c);
    let mf = m as f64;
    let dmean: Vec<f64> = sum.iter().map(|s| s / mf).collect();
    let var: Vec<f64> = sq
        .iter()
        .zip(&dmean)
        .map(|(q, mu)| (q / mf - mu * mu).max(0.0))
        .collect();
    let mean: Vec<f64> = dmean
        .iter()
        .zip(shift)
        .map(|(d, &s)| d + s as f64)
        .collect();
    let istd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    (mean, var, istd)
}

/// Batch-norm backward, reductions: `(dgamma, dbeta, coef)`, where `coef[j]` holds what
/// [`bn_bwd_dx`] needs per channel. `x` is the batch norm's input, `y` its output.
fn bn_backward_coefs(
    dy: &[f32],
    x: &[f32],
    y: &[f32],
    c: usize,
    st: &BnStats,
    act: Activation,
) -> (Vec<f32>, Vec<f32>, Vec<[f32; 4]>) {
    let m = x.len() / c;
    let (mean, istd) = (&st.mean, &st.istd);
    let sl = slope(act);
    // sum(g) and sum(g * (x - mean)) with g = dy * act'(y).
    let parts = dy
        .par_chunks(ROWS * c)
        .zip(x.par_chunks(ROWS * c))
        .zip(y.par_chunks(ROWS * c))
        .map(|((dys, xs), ys)| {
            let (mut sg, mut sgx) = (vec![0f32; c], vec![0f32; c]);
            bn_bwd_sums(dys, xs, ys, mean, sl, &mut sg, &mut sgx);
            (sg, sgx)
        });
    let (sg, sgx) = sum_partials(parts, c);
    let mf = m as f32;
    // dbeta = sum g, dgamma = sum g * xhat; dx = gamma istd (g - dbeta/m - xhat dgamma/m),
    // with xhat dgamma / m = (x - mean) (istd dgamma / m).
    let dbeta: Vec<f32> = sg.iter().map(|&v| v as f32).collect();
    let dgamma: Vec<f32> = sgx.iter().zip(istd).map(|(&v, &i)| v as f32 * i).collect();
    let coef: Vec<[f32; 4]> = (0..c)
        .map(|j| {
            [
                st.gamma[j] * istd[j],
                dbeta[j] / mf,
                mean[j],
                istd[j] * dgamma[j] / mf,
            ]
        })
        .collect();
    (dgamma, dbeta, coef)
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
            let sl = slope(self.act);
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

/// Runs `f` on the f32 data of contiguous CPU tensors (read locks held meanwhile).
fn with_f32<R>(ts: &[&Tensor], f: impl FnOnce(&[&[f32]]) -> Result<R>) -> Result<R> {
    let guards: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(ts.len());
    for (storage, layout) in &guards {
        match &**storage {
            candle_core::Storage::Cpu(s) => slices.push(f32_slice(s, layout, "backward input")?),
            _ => candle_core::bail!("fused backward: expected CPU tensors"),
        }
    }
    f(&slices)
}

/// What the fused linear layers keep for their backward pass.
#[derive(Debug, Default)]
struct LinearState {
    /// Pre-normalisation activations `x w^T`, `[m, out]`.
    z: Vec<f32>,
    stats: BnStats,
    /// Pooled variant: winning row (within its cloud) per cloud and channel, `[B, out]`.
    argmax: Vec<u32>,
}

/// Checks the fused-linear operand shapes; returns `(m, cin, cout)`.
fn linear_dims(l1: &Layout, l2: &Layout, gb_len: usize) -> Result<(usize, usize, usize)> {
    let (m, cin) = l1.shape().dims2()?;
    let (cout, win) = l2.shape().dims2()?;
    if win != cin || gb_len != 2 * cout {
        candle_core::bail!("linear-bn-act: x {m}x{cin}, w {cout}x{win}, gamma/beta {gb_len}");
    }
    Ok((m, cin, cout))
}

/// `z = x w^T` by row chunks in parallel (`x` `[m, cin]`, `w` `[cout, cin]`).
fn linear_fwd(x: &[f32], w: &[f32], m: usize, cin: usize, cout: usize) -> Vec<f32> {
    par_fill(m * cout, ROWS * cout, |i, out| {
        let rows = out.len() / cout;
        let xs = &x[i * ROWS * cin..][..rows * cin];
        // SAFETY: out is rows x cout, xs rows x cin, w is cout x cin read transposed.
        unsafe {
            gemm_raw(
                (rows, cout, cin),
                out.as_mut_ptr().cast(),
                cout,
                false,
                (xs.as_ptr(), 1, cin),
                (w.as_ptr(), cin, 1),
            )
        }
    })
}

/// Backward of `z = x w^T` given a producer of `dz` row chunks: `dz` is made one chunk at
/// a time and fed straight into the `dx` and `dw` gemms while it is in cache (it never
/// exists whole). Each chunk's `dw` share is accumulated per thread (split-k), which keeps
/// the `[cout, cin]`-sized, `m`-deep product parallel.
fn linear_bwd(
    x: &[f32],
    w: &[f32],
    (m, cin, cout): (usize, usize, usize),
    need_dx: bool,
    dz_chunk: impl Fn(usize, usize, &mut [std::mem::MaybeUninit<f32>]) + Sync,
) -> (Option<Vec<f32>>, Vec<f32>) {
    let mut dx = Vec::with_capacity(if need_dx { m * cin } else { 0 });
    let dx_ptr = SendPtr(dx.as_mut_ptr());
    let n_chunks = m.div_ceil(ROWS);
    let dw = (0..n_chunks)
        .into_par_iter()
        // Each split allocates a dw accumulator: a few per thread is enough.
        .with_min_len((n_chunks / (4 * rayon::current_num_threads())).max(1))
        .fold(
            || {
                (
                    vec![0f32; cout * cin],
                    vec![std::mem::MaybeUninit::<f32>::uninit(); ROWS * cout],
                )
            },
            |(mut dw, mut dz), i| {
                let r0 = i * ROWS;
                let rows = ROWS.min(m - r0);
                dz_chunk(r0, rows, &mut dz[..rows * cout]);
                let dzp: *const f32 = dz.as_ptr().cast();
                let xs = &x[r0 * cin..(r0 + rows) * cin];
                // SAFETY: dz holds rows x cout values written by dz_chunk; w is cout x cin;
                // dx has capacity m x cin and chunk i writes only its own rows; dw is
                // cout x cin.
                unsafe {
                    if need_dx {
                        let dst = dx_ptr.get().add(r0 * cin);
                        gemm_raw(
                            (rows, cin, cout),
                            dst,
                            cin,
                            false,
                            (dzp, 1, cout),
                            (w.as_ptr(), 1, cin),
                        );
                    }
                    gemm_raw(
                        (cout, cin, rows),
                        dw.as_mut_ptr(),
                        cin,
                        true,
                        (dzp, cout, 1),
                        (xs.as_ptr(), 1, cin),
                    );
                }
                (dw, dz)
            },
        )
        .map(|(dw, _)| dw)
        .reduce(
            || vec![0f32; cout * cin],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(u, v)| *u += v);
                a
            },
        );
    if need_dx {
        // SAFETY: the chunks above wrote every row of dx.
        unsafe { dx.set_len(m * cin) };
    }
    (need_dx.then_some(dx), dw)
}

/// Gradient tensors of a fused linear layer from raw vectors.
fn linear_grads(
    x: &Tensor,
    (m, cin, cout): (usize, usize, usize),
    dx: Option<Vec<f32>>,
    dw: Vec<f32>,
    mut dgamma: Vec<f32>,
    dbeta: Vec<f32>,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let dev = x.device();
    let dx = dx
        .map(|dx| Tensor::from_vec(dx, (m, cin), dev))
        .transpose()?;
    dgamma.extend_from_slice(&dbeta);
    Ok((
        dx,
        Some(Tensor::from_vec(dw, (cout, cin), dev)?),
        Some(Tensor::from_vec(dgamma, 2 * cout, dev)?),
    ))
}

/// `act(bn(x w^T))` as one graph node: one gemm and two passes forward, and a backward
/// that never materialises `dz` nor candle's zero-filled per-node gradient buffers.
struct LinearBnAct {
    act: Activation,
    eps: f64,
    state: Arc<Mutex<LinearState>>,
}

impl CustomOp3 for LinearBnAct {
    fn name(&self) -> &'static str {
        "linear-bn-act-train"
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
        let x = f32_slice(s1, l1, "linear x")?;
        let w = f32_slice(s2, l2, "linear w")?;
        let gb = f32_slice(s3, l3, "linear gamma/beta")?;
        let (m, cin, cout) = linear_dims(l1, l2, gb.len())?;
        let z = linear_fwd(x, w, m, cin, cout);
        let (y, stats) = bn_forward(&z, m, cout, &gb[..cout], &gb[cout..], self.act, self.eps);
        *self.state.lock().unwrap() = LinearState {
            z,
            stats,
            argmax: Vec::new(),
        };
        Ok((CpuStorage::F32(y), Shape::from((m, cout))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _gb: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (m, cin) = x.dims2()?;
        let dims = (m, cin, w.dim(0)?);
        let cout = dims.2;
        // The first layer's input (the points) needs no gradient: skip that gemm.
        let need_dx = x.track_op();
        let dy = dy.contiguous()?;
        let (dx, dw, dgamma, dbeta) = with_f32(&[&dy, x, w, y], |s| {
            let (dy, x, w, y) = (s[0], s[1], s[2], s[3]);
            let st = self.state.lock().unwrap();
            let z = &st.z;
            let (dgamma, dbeta, coef) = bn_backward_coefs(dy, z, y, cout, &st.stats, self.act);
            let sl = slope(self.act);
            let (dx, dw) = linear_bwd(x, w, dims, need_dx, |r0, rows, dz| {
                let (a, b) = (r0 * cout, (r0 + rows) * cout);
                bn_bwd_dx(dz, &dy[a..b], &z[a..b], &y[a..b], &coef, sl);
            });
            Ok((dx, dw, dgamma, dbeta))
        })?;
        linear_grads(x, dims, dx, dw, dgamma, dbeta)
    }
}

multiversion! {
    /// Pooled batch-norm backward, dense part: `dz = -k (mg + (z - mean) q)` (the
    /// output gradient is zero off the winning rows; those are added separately).
    fn bn_bwd_dx_pooled(out: &mut [std::mem::MaybeUninit<f32>], z: &[f32], coef: &[[f32; 4]]) {
        let c = coef.len();
        for (or, zr) in out.chunks_exact_mut(c).zip(z.chunks_exact(c)) {
            for ((o, &zv), &[k, mg, mu, q]) in or.iter_mut().zip(zr).zip(coef) {
                o.write(-k * (mg + (zv - mu) * q));
            }
        }
    }
}

/// `max over points of act(bn(x w^T))`: the last global layer and the max-pool as one
/// node. The `[B*N, out]` activation is never stored (the pool is taken while it is
/// computed), and its gradient is zero except at the winning points, so the backward
/// reductions touch only `B x out` values instead of three `[B*N, out]` tensors.
struct LinearBnActMax {
    act: Activation,
    eps: f64,
    /// Points per cloud.
    n: usize,
    state: Arc<Mutex<LinearState>>,
}

impl CustomOp3 for LinearBnActMax {
    fn name(&self) -> &'static str {
        "linear-bn-act-max-train"
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
        let x = f32_slice(s1, l1, "linear x")?;
        let w = f32_slice(s2, l2, "linear w")?;
        let gb = f32_slice(s3, l3, "linear gamma/beta")?;
        let (m, cin, c) = linear_dims(l1, l2, gb.len())?;
        let n = self.n;
        let b = m / n;
        let z = linear_fwd(x, w, m, cin, c);
        let (mean, var, istd) = bn_moments(&z, m, c, self.eps);
        let (gamma, beta) = (&gb[..c], &gb[c..]);
        let scale: Vec<f32> = istd
            .iter()
            .zip(gamma)
            .map(|(i, &g)| (i * g as f64) as f32)
            .collect();
        let shift: Vec<f32> = (0..c)
            .map(|j| (beta[j] as f64 - mean[j] * scale[j] as f64) as f32)
            .collect();
        let sl = slope(self.act);
        let strips = c.div_ceil(COLS);
        let parts: Vec<(Vec<f32>, Vec<u32>)> = (0..b * strips)
            .into_par_iter()
            .map(|t| {
                let (cloud, j0) = (t / strips, (t % strips) * COLS);
                let wd = COLS.min(c - j0);
                let (a, sh) = (&scale[j0..j0 + wd], &shift[j0..j0 + wd]);
                let mut best = vec![f32::NEG_INFINITY; wd];
                let mut arg = vec![0u32; wd];
                for i in 0..n {
                    let row = &z[(cloud * n + i) * c + j0..][..wd];
                    for j in 0..wd {
                        let v = row[j] * a[j] + sh[j];
                        let v = if v > 0.0 { v } else { v * sl };
                        if v > best[j] {
                            best[j] = v;
                            arg[j] = i as u32;
                        }
                    }
                }
                (best, arg)
            })
            .collect();
        let (mut out, mut argmax) = (Vec::with_capacity(b * c), Vec::with_capacity(b * c));
        for (best, arg) in parts {
            out.extend_from_slice(&best);
            argmax.extend_from_slice(&arg);
        }
        let stats = BnStats {
            mean: mean.iter().map(|&v| v as f32).collect(),
            var: var.iter().map(|&v| v as f32).collect(),
            istd: istd.iter().map(|&v| v as f32).collect(),
            gamma: gamma.to_vec(),
        };
        *self.state.lock().unwrap() = LinearState { z, stats, argmax };
        Ok((CpuStorage::F32(out), Shape::from((b, c))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _gb: &Tensor,
        ymax: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (m, cin) = x.dims2()?;
        let dims = (m, cin, w.dim(0)?);
        let (c, n) = (dims.2, self.n);
        let need_dx = x.track_op();
        let dy = dy.contiguous()?;
        let (dx, dw, dgamma, dbeta) = with_f32(&[&dy, x, w, ymax], |s| {
            let (dy, x, w, ymax) = (s[0], s[1], s[2], s[3]);
            let st = self.state.lock().unwrap();
            let (z, argmax, bs) = (&st.z, &st.argmax, &st.stats);
            let sl = slope(self.act);
            // g at the winners only; row index of each winner in z.
            let g: Vec<f32> = dy
                .iter()
                .zip(ymax)
                .map(|(&d, &y)| if y > 0.0 { d } else { d * sl })
                .collect();
            let rows: Vec<usize> = argmax
                .iter()
                .enumerate()
                .map(|(t, &i)| (t / c) * n + i as usize)
                .collect();
            let (mut sg, mut sgx) = (vec![0f64; c], vec![0f64; c]);
            for (t, (&gv, &r)) in g.iter().zip(&rows).enumerate() {
                let j = t % c;
                sg[j] += gv as f64;
                sgx[j] += (gv * (z[r * c + j] - bs.mean[j])) as f64;
            }
            let mf = m as f32;
            let dbeta: Vec<f32> = sg.iter().map(|&v| v as f32).collect();
            let dgamma: Vec<f32> = sgx
                .iter()
                .zip(&bs.istd)
                .map(|(&v, &i)| v as f32 * i)
                .collect();
            let coef: Vec<[f32; 4]> = (0..c)
                .map(|j| {
                    [
                        bs.gamma[j] * bs.istd[j],
                        dbeta[j] / mf,
                        bs.mean[j],
                        bs.istd[j] * dgamma[j] / mf,
                    ]
                })
                .collect();
            let (dx, dw) = linear_bwd(x, w, dims, need_dx, |r0, nrows, dz| {
                bn_bwd_dx_pooled(dz, &z[r0 * c..(r0 + nrows) * c], &coef);
                for (t, (&gv, &r)) in g.iter().zip(&rows).enumerate() {
                    if (r0..r0 + nrows).contains(&r) {
                        let j = t % c;
                        let cell = &mut dz[(r - r0) * c + j];
                        // SAFETY: the dense pass above initialised every element.
                        let v = unsafe { cell.assume_init() };
                        cell.write(v + coef[j][0] * gv);
                    }
                }
            });
            Ok((dx, dw, dgamma, dbeta))
        })?;
        linear_grads(x, dims, dx, dw, dgamma, dbeta)
    }
}

/// A raw pointer that may cross to rayon workers (each writes a disjoint range).
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only for disjoint writes from parallel chunks, joined before use.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Train-mode `act(bn(x w^T))` for `x` `[M, in]`, `w` `[out, in]`; returns the output and
/// the batch mean and biased variance for the running statistics.
pub(crate) fn linear_bn_act_train(
    x: &Tensor,
    w: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    act: Activation,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    if !use_fast_path(&[x, w, gamma, beta]) {
        return bn_act_train(&x.matmul(&w.t()?)?, gamma, beta, act, eps);
    }
    let state = Arc::new(Mutex::new(LinearState::default()));
    let op = LinearBnAct {
        act,
        eps,
        state: state.clone(),
    };
    let gb = Tensor::cat(&[gamma, beta], 0)?;
    let y = x.contiguous()?.apply_op3(&w.contiguous()?, &gb, op)?;
    let st = state.lock().unwrap();
    let c = st.stats.mean.len();
    let mean = Tensor::from_slice(&st.stats.mean, c, x.device())?;
    let var = Tensor::from_slice(&st.stats.var, c, x.device())?;
    Ok((y, mean, var))
}

/// Train-mode `max over the N points of each cloud of act(bn(x w^T))`, `x` `[B*N, in]`
/// -> `[B, out]`, plus the batch mean and biased variance for the running statistics.
pub(crate) fn linear_bn_act_max_train(
    x: &Tensor,
    w: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    act: Activation,
    eps: f64,
    n: usize,
) -> Result<(Tensor, Tensor, Tensor)> {
    let m = x.dim(0)?;
    if n == 0 || m % n != 0 {
        candle_core::bail!("linear_bn_act_max_train: {m} rows are not clouds of {n} points");
    }
    if !use_fast_path(&[x, w, gamma, beta]) {
        let (y, mean, var) = bn_act_train(&x.matmul(&w.t()?)?, gamma, beta, act, eps)?;
        let c = y.dim(1)?;
        return Ok((y.reshape((m / n, n, c))?.max(1)?, mean, var));
    }
    let state = Arc::new(Mutex::new(LinearState::default()));
    let op = LinearBnActMax {
        act,
        eps,
        n,
        state: state.clone(),
    };
    let gb = Tensor::cat(&[gamma, beta], 0)?;
    let y = x.contiguous()?.apply_op3(&w.contiguous()?, &gb, op)?;
    let st = state.lock().unwrap();
    let c = st.stats.mean.len();
    let mean = Tensor::from_slice(&st.stats.mean, c, x.device())?;
    let var = Tensor::from_slice(&st.stats.var, c, x.device())?;
    Ok((y, mean, var))
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
        let y = x
            .contiguous()?
            .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
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
    Ok((
        act.apply(&y)?,
        mean.squeeze(0)?.detach(),
        var.squeeze(0)?.detach(),
    ))
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

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, "add x")?;
        let r = f32_slice(s2, l2, "add r")?;
        let (m, c) = l1.shape().dims2()?;
        let (b, _) = l2.shape().dims2()?;
        let n = m / b;
        let y = par_fill(m * c, ROWS * c, |i, out| {
            let off = i * ROWS * c;
            for (k, (orow, xrow)) in out
                .chunks_exact_mut(c)
                .zip(x[off..].chunks_exact(c))
                .enumerate()
            {
                let cloud = (i * ROWS + k) / n;
                for ((o, &v), &a) in orow
                    .iter_mut()
                    .zip(xrow)
                    .zip(&r[cloud * c..(cloud + 1) * c])
                {
                    o.write(v + a);
                }
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((m, c))))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        r: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
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
        x.reshape((b, m / b, c))?
            .broadcast_add(&r.unsqueeze(1)?)?
            .reshape((m, c))
    }
}

/// A k-NN graph as flat neighbour rows (`nbr[i * k + s]` = row of the `s`-th neighbour of
/// row `i`) plus its reverse (`rev_src[rev_ptr[j]..rev_ptr[j + 1]]` = the edges `i * k + s`
/// that point at `j`), so that gradients can be gathered per row instead of scattered.
#[derive(Debug)]
pub(crate) struct EdgeGraph {
    pub k: usize,
    pub nbr: Vec<u32>,
    rev_ptr: Vec<u32>,
    rev_src: Vec<u32>,
}

impl EdgeGraph {
    pub fn new(nbr: Vec<u32>, k: usize) -> Result<Self> {
        let m = nbr.len() / k.max(1);
        if k == 0 || nbr.len() != m * k || nbr.iter().any(|&j| j as usize >= m) {
            candle_core::bail!(
                "edge graph: {} neighbour rows do not form {m} x {k} within range",
                nbr.len()
            );
        }
        // Counting sort of the edges by target row.
        let mut rev_ptr = vec![0u32; m + 1];
        for &j in &nbr {
            rev_ptr[j as usize + 1] += 1;
        }
        for j in 0..m {
            rev_ptr[j + 1] += rev_ptr[j];
        }
        let mut fill = rev_ptr.clone();
        let mut rev_src = vec![0u32; nbr.len()];
        for (e, &j) in nbr.iter().enumerate() {
            rev_src[fill[j as usize] as usize] = e as u32;
            fill[j as usize] += 1;
        }
        Ok(Self {
            k,
            nbr,
            rev_ptr,
            rev_src,
        })
    }

    fn rows(&self) -> usize {
        self.nbr.len() / self.k
    }
}

multiversion! {
    /// Edge moments for the rows of one chunk: sums of `z - shift` and its square over
    /// the chunk's edges, `z = a_i + bm_j`.
    fn edge_sums(a: &[f32], bm: &[f32], nbr: &[u32], shift: &[f32], s: &mut [f32], q: &mut [f32]) {
        let c = shift.len();
        let k = nbr.len() / (a.len() / c);
        for (ar, ns) in a.chunks_exact(c).zip(nbr.chunks_exact(k)) {
            for &j in ns {
                let br = &bm[j as usize * c..][..c];
                for ((((s, q), &av), &bv), &sh) in s.iter_mut().zip(q.iter_mut()).zip(ar).zip(br).zip(shift) {
                    let d = av + bv - sh;
                    *s += d;
                    *q += d * d;
                }
            }
        }
    }
}

multiversion! {
    /// `out_i = max_s act(scale (a_i + bm_nbr(i,s)) + shift)` for the rows of one chunk,
    /// with the winning slot `s` per channel.
    fn edge_max(
        out: &mut [f32],
        arg: &mut [u32],
        a: &[f32],
        bm: &[f32],
        nbr: &[u32],
        scale: &[f32],
        shift: &[f32],
        slope: f32,
    ) {
        let c = scale.len();
        let k = nbr.len() / (a.len() / c);
        for (((or, gr), ar), ns) in out.chunks_exact_mut(c).zip(arg.chunks_exact_mut(c)).zip(a.chunks_exact(c)).zip(nbr.chunks_exact(k)) {
            or.fill(f32::NEG_INFINITY);
            gr.fill(0);
            for (s, &j) in ns.iter().enumerate() {
                let br = &bm[j as usize * c..][..c];
                for (((((o, g), &av), &bv), &sc), &sh) in or.iter_mut().zip(gr.iter_mut()).zip(ar).zip(br).zip(scale).zip(shift) {
                    let v = (av + bv) * sc + sh;
                    let v = if v > 0.0 { v } else { v * slope };
                    if v > *o {
                        *o = v;
                        *g = s as u32;
                    }
                }
            }
        }
    }
}

/// Max over the k edges of each point of `act(bn(a_i + bm_j))` with fixed per-channel
/// `scale`/`shift` (eval-mode batch norm, or train mode once the moments are known).
fn edge_max_all(
    a: &[f32],
    bm: &[f32],
    g: &EdgeGraph,
    scale: &[f32],
    shift: &[f32],
    slope: f32,
) -> (Vec<f32>, Vec<u32>) {
    let c = scale.len();
    let m = g.rows();
    let mut out = vec![0f32; m * c];
    let mut arg = vec![0u32; m * c];
    out.par_chunks_mut(ROWS * c)
        .zip(arg.par_chunks_mut(ROWS * c))
        .enumerate()
        .for_each(|(t, (o, ag))| {
            let r0 = t * ROWS;
            let rows = o.len() / c;
            let ns = &g.nbr[r0 * g.k..(r0 + rows) * g.k];
            edge_max(
                o,
                ag,
                &a[r0 * c..(r0 + rows) * c],
                bm,
                ns,
                scale,
                shift,
                slope,
            );
        });
    (out, arg)
}

/// Saved by the fused EdgeConv forward for its backward.
#[derive(Debug, Default)]
struct EdgeState {
    stats: BnStats,
    /// Winning neighbour slot per row and channel.
    arg: Vec<u32>,
}

/// EdgeConv's `max_s act(bn(a_i + bm_nbr(i,s)))` as one node that never forms the
/// `[B*N*k, C]` edge tensor: the batch-norm moments, the max and every gradient are
/// accumulated edge by edge from the two `[B*N, C]` per-point terms. Gradients: with
/// `K = gamma istd`, `mg = dbeta / E`, `q = istd dgamma / E` (E = edges) and `G` the
/// output gradient routed to the winning edges,
/// `dz_e = K (G_e - mg - (z_e - mean) q)`, `da_i = sum_s dz_(i,s)` and
/// `dbm_j = sum over edges into j of dz_e`, each a per-row sum.
struct EdgeBnActMax {
    act: Activation,
    eps: f64,
    graph: Arc<EdgeGraph>,
    state: Arc<Mutex<EdgeState>>,
}

impl CustomOp3 for EdgeBnActMax {
    fn name(&self) -> &'static str {
        "edge-bn-act-max-train"
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
        let a = f32_slice(s1, l1, "edge a")?;
        let bm = f32_slice(s2, l2, "edge bm")?;
        let gb = f32_slice(s3, l3, "edge gamma/beta")?;
        let (m, c) = l1.shape().dims2()?;
        let g = &*self.graph;
        if l2.shape().dims2()? != (m, c) || gb.len() != 2 * c || g.rows() != m {
            candle_core::bail!("edge-bn-act-max: shapes do not match the graph");
        }
        let k = g.k;
        let shift: Vec<f32> = a[..c]
            .iter()
            .zip(&bm[g.nbr[0] as usize * c..][..c])
            .map(|(x, y)| x + y)
            .collect();
        let parts = (0..m.div_ceil(ROWS)).into_par_iter().map(|t| {
            let r0 = t * ROWS;
            let r1 = (r0 + ROWS).min(m);
            let (mut s, mut q) = (vec![0f32; c], vec![0f32; c]);
            edge_sums(
                &a[r0 * c..r1 * c],
                bm,
                &g.nbr[r0 * k..r1 * k],
                &shift,
                &mut s,
                &mut q,
            );
            (s, q)
        });
        let (sum, sq) = sum_partials(parts, c);
        let e = (m * k) as f64;
        let dmean: Vec<f64> = sum.iter().map(|s| s / e).collect();
        let var: Vec<f64> = sq
            .iter()
            .zip(&dmean)
            .map(|(q, mu)| (q / e - mu * mu).max(0.0))
            .collect();
        let mean: Vec<f64> = dmean
            .iter()
            .zip(&shift)
            .map(|(d, &s)| d + s as f64)
            .collect();
        let istd: Vec<f64> = var.iter().map(|v| 1.0 / (v + self.eps).sqrt()).collect();
        let (gamma, beta) = (&gb[..c], &gb[c..]);
        let scale: Vec<f32> = istd
            .iter()
            .zip(gamma)
            .map(|(i, &g)| (i * g as f64) as f32)
            .collect();
        let shift_out: Vec<f32> = (0..c)
            .map(|j| (beta[j] as f64 - mean[j] * scale[j] as f64) as f32)
            .collect();
        let (y, arg) = edge_max_all(a, bm, g, &scale, &shift_out, slope(self.act));
        *self.state.lock().unwrap() = EdgeState {
            stats: BnStats {
                mean: mean.iter().map(|&v| v as f32).collect(),
                var: var.iter().map(|&v| v as f32).collect(),
                istd: istd.iter().map(|&v| v as f32).collect(),
                gamma: gamma.to_vec(),
            },
            arg,
        };
        Ok((CpuStorage::F32(y), Shape::from((m, c))))
    }

    fn bwd(
        &self,
        a: &Tensor,
        bm: &Tensor,
        _gb: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (m, c) = a.dims2()?;
        let dy = dy.contiguous()?;
        let g = &*self.graph;
        let k = g.k;
        let (da, dbm, dgamma, dbeta) = with_f32(&[&dy, a, bm, y], |s| {
            let (dy, a, bm, y) = (s[0], s[1], s[2], s[3]);
            let st = self.state.lock().unwrap();
            let (bs, arg) = (&st.stats, &st.arg);
            let sl = slope(self.act);
            // Output gradient at the winning edges.
            let gw: Vec<f32> = dy
                .iter()
                .zip(y)
                .map(|(&d, &v)| if v > 0.0 { d } else { d * sl })
                .collect();
            let parts = (0..m.div_ceil(ROWS)).into_par_iter().map(|t| {
                let (r0, r1) = (t * ROWS, ((t + 1) * ROWS).min(m));
                let (mut sg, mut sgx) = (vec![0f32; c], vec![0f32; c]);
                for i in r0..r1 {
                    for ch in 0..c {
                        let gv = gw[i * c + ch];
                        let j = g.nbr[i * k + arg[i * c + ch] as usize] as usize;
                        sg[ch] += gv;
                        sgx[ch] += gv * (a[i * c + ch] + bm[j * c + ch] - bs.mean[ch]);
                    }
                }
                (sg, sgx)
            });
            let (sg, sgx) = sum_partials(parts, c);
            let ef = (m * k) as f32;
            let dbeta: Vec<f32> = sg.iter().map(|&v| v as f32).collect();
            let dgamma: Vec<f32> = sgx
                .iter()
                .zip(&bs.istd)
                .map(|(&v, &i)| v as f32 * i)
                .collect();
            let kk: Vec<f32> = (0..c).map(|j| bs.gamma[j] * bs.istd[j]).collect();
            let mg: Vec<f32> = dbeta.iter().map(|v| v / ef).collect();
            let q: Vec<f32> = (0..c).map(|j| bs.istd[j] * dgamma[j] / ef).collect();
            let mean = &bs.mean;
            let kf = k as f32;
            // da_i = K (g_i - k mg - (k a_i + sum_s bm_nbr(i,s) - k mean) q)
            let mut da = vec![0f32; m * c];
            da.par_chunks_mut(c).enumerate().for_each(|(i, out)| {
                for &j in &g.nbr[i * k..(i + 1) * k] {
                    out.iter_mut()
                        .zip(&bm[j as usize * c..][..c])
                        .for_each(|(o, &b)| *o += b);
                }
                for ch in 0..c {
                    let zsum = kf * a[i * c + ch] + out[ch] - kf * mean[ch];
                    out[ch] = kk[ch] * (gw[i * c + ch] - kf * mg[ch] - zsum * q[ch]);
                }
            });
            // dbm_j = K (Gsum_j - n_j mg - (Asum_j + n_j (bm_j - mean)) q) over edges into j.
            let mut dbm = vec![0f32; m * c];
            dbm.par_chunks_mut(c).enumerate().for_each(|(j, out)| {
                let edges = &g.rev_src[g.rev_ptr[j] as usize..g.rev_ptr[j + 1] as usize];
                let n_j = edges.len() as f32;
                let mut gsum = vec![0f32; c];
                for &e in edges {
                    let (i, slot) = (e as usize / k, (e as usize % k) as u32);
                    let (ar, gr, wr) = (&a[i * c..][..c], &gw[i * c..][..c], &arg[i * c..][..c]);
                    for ch in 0..c {
                        out[ch] += ar[ch];
                        if wr[ch] == slot {
                            gsum[ch] += gr[ch];
                        }
                    }
                }
                for ch in 0..c {
                    let zsum = out[ch] + n_j * (bm[j * c + ch] - mean[ch]);
                    out[ch] = kk[ch] * (gsum[ch] - n_j * mg[ch] - zsum * q[ch]);
                }
            });
            Ok((da, dbm, dgamma, dbeta))
        })?;
        let dev = a.device();
        let mut dgb = dgamma;
        dgb.extend_from_slice(&dbeta);
        Ok((
            Some(Tensor::from_vec(da, (m, c), dev)?),
            Some(Tensor::from_vec(dbm, (m, c), dev)?),
            Some(Tensor::from_vec(dgb, 2 * c, dev)?),
        ))
    }
}

/// Train-mode EdgeConv tail on the CPU: `max_s act(bn(a_i + bm_nbr(i,s)))`, `[M, C]`, with
/// the batch statistics over all `M k` edges returned for the running statistics.
pub(crate) fn edge_bn_act_max_train(
    a: &Tensor,
    bm: &Tensor,
    graph: Arc<EdgeGraph>,
    gamma: &Tensor,
    beta: &Tensor,
    act: Activation,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let state = Arc::new(Mutex::new(EdgeState::default()));
    let op = EdgeBnActMax {
        act,
        eps,
        graph,
        state: state.clone(),
    };
    let gb = Tensor::cat(&[gamma, beta], 0)?;
    let y = a.contiguous()?.apply_op3(&bm.contiguous()?, &gb, op)?;
    let st = state.lock().unwrap();
    let c = st.stats.mean.len();
    let mean = Tensor::from_slice(&st.stats.mean, c, a.device())?;
    let var = Tensor::from_slice(&st.stats.var, c, a.device())?;
    Ok((y, mean, var))
}

/// Eval-mode EdgeConv tail on the CPU (fixed batch-norm affine, no graph).
pub(crate) fn edge_affine_act_max(
    a: &Tensor,
    bm: &Tensor,
    graph: &EdgeGraph,
    scale: &Tensor,
    shift: &Tensor,
    act: Activation,
) -> Result<Tensor> {
    let (m, c) = a.dims2()?;
    let (a, bm) = (a.contiguous()?, bm.contiguous()?);
    let (scale, shift): (Vec<f32>, Vec<f32>) = (scale.to_vec1()?, shift.to_vec1()?);
    let y = with_f32(&[&a, &bm], |s| {
        Ok(edge_max_all(s[0], s[1], graph, &scale, &shift, slope(act)).0)
    })?;
    Tensor::from_vec(y, (m, c), a.device())
}

/// Whether the fused CPU kernels apply to these tensors (CPU, f32).
pub(crate) fn fast_path(ts: &[&Tensor]) -> bool {
    use_fast_path(ts)
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
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    }

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
                let g = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
                let grads: Vec<Tensor> = [&x, &gamma, &beta]
                    .iter()
                    .map(|v| g.get(v.as_tensor()).unwrap().clone())
                    .collect();
                (y, mean, var, grads)
            };
            let (y1, m1, v1, g1) = run(true);
            let (y2, m2, v2, g2) = run(false);
            assert!(max_diff(&y1, &y2) < 1e-4, "{act:?} y");
            assert!(
                max_diff(&m1, &m2) < 1e-4 && max_diff(&v1, &v2) < 1e-3,
                "{act:?} stats"
            );
            for (a, b) in g1.iter().zip(&g2) {
                let scale: f32 = b.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
                assert!(
                    max_diff(a, b) < 1e-3 * scale.max(1.0),
                    "{act:?} grad {}",
                    max_diff(a, b)
                );
            }
        }
    }

    /// Fused linear + batch norm + activation: same values and gradients as matmul + the
    /// candle-op batch norm, for a row count that is not a multiple of the chunk size.
    #[test]
    fn fused_linear_bn_act_matches_generic_values_and_grads() {
        for act in [Activation::Relu, Activation::LeakyRelu(0.2)] {
            let (m, cin, cout) = (700, 19, 45);
            let x = Var::from_tensor(&rand(&[m, cin], 1.0)).unwrap();
            let w = Var::from_tensor(&(rand(&[cout, cin], 0.0) * 0.3).unwrap()).unwrap();
            let gamma = Var::from_tensor(&rand(&[cout], 0.5)).unwrap();
            let beta = Var::from_tensor(&rand(&[cout], 0.0)).unwrap();
            let wy = rand(&[m, cout], 0.0);
            let vars = [&x, &w, &gamma, &beta];
            let run = |fast: bool| {
                let (y, mean, var) = if fast {
                    linear_bn_act_train(
                        x.as_tensor(),
                        w.as_tensor(),
                        gamma.as_tensor(),
                        beta.as_tensor(),
                        act,
                        1e-5,
                    )
                } else {
                    let z = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
                    bn_act_generic(&z, gamma.as_tensor(), beta.as_tensor(), act, 1e-5)
                }
                .unwrap();
                let g = (&y * &wy).unwrap().sum_all().unwrap().backward().unwrap();
                let grads: Vec<Tensor> = vars
                    .iter()
                    .map(|v| g.get(v.as_tensor()).unwrap().clone())
                    .collect();
                (y, mean, var, grads)
            };
            assert_fast_matches_generic(act, run(true), run(false));
        }
    }

    /// Outputs, batch statistics and gradients of a fused op against the generic maths.
    fn assert_fast_matches_generic(
        act: Activation,
        fast: (Tensor, Tensor, Tensor, Vec<Tensor>),
        generic: (Tensor, Tensor, Tensor, Vec<Tensor>),
    ) {
        let ((y1, m1, v1, g1), (y2, m2, v2, g2)) = (fast, generic);
        assert!(max_diff(&y1, &y2) < 1e-4, "{act:?} y");
        assert!(
            max_diff(&m1, &m2) < 1e-4 && max_diff(&v1, &v2) < 1e-3,
            "{act:?} stats"
        );
        for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
            let scale: f32 = b.abs().unwrap().max_all().unwrap().to_scalar().unwrap();
            assert!(
                max_diff(a, b) < 1e-3 * scale.max(1.0),
                "{act:?} grad {i}: {}",
                max_diff(a, b)
            );
        }
    }

    /// The pooled variant (last global layer + max over points) against the same maths
    /// from candle primitives.
    #[test]
    fn fused_linear_bn_act_max_matches_generic_values_and_grads() {
        for act in [Activation::Relu, Activation::LeakyRelu(0.2)] {
            let (b, n, cin, cout) = (3, 300, 11, 70);
            let x = Var::from_tensor(&rand(&[b * n, cin], 0.5)).unwrap();
            let w = Var::from_tensor(&(rand(&[cout, cin], 0.0) * 0.3).unwrap()).unwrap();
            let gamma = Var::from_tensor(&rand(&[cout], 0.0)).unwrap(); // some negative
            let beta = Var::from_tensor(&rand(&[cout], 0.0)).unwrap();
            let wy = rand(&[b, cout], 0.0);
            let vars = [&x, &w, &gamma, &beta];
            let run = |fast: bool| {
                let (y, mean, var) = if fast {
                    linear_bn_act_max_train(
                        x.as_tensor(),
                        w.as_tensor(),
                        gamma.as_tensor(),
                        beta.as_tensor(),
                        act,
                        1e-5,
                        n,
                    )
                } else {
                    let z = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
                    let (y, mean, var) =
                        bn_act_generic(&z, gamma.as_tensor(), beta.as_tensor(), act, 1e-5).unwrap();
                    Ok((y.reshape((b, n, cout)).unwrap().max(1).unwrap(), mean, var))
                }
                .unwrap();
                let g = (&y * &wy).unwrap().sum_all().unwrap().backward().unwrap();
                let grads: Vec<Tensor> = vars
                    .iter()
                    .map(|v| g.get(v.as_tensor()).unwrap().clone())
                    .collect();
                (y, mean, var, grads)
            };
            assert_fast_matches_generic(act, run(true), run(false));
        }
    }

    #[test]
    fn max_over_points_and_add_per_cloud_match_generic() {
        let x = Var::from_tensor(&rand(&[3, 50, 70], 0.0)).unwrap();
        let w = rand(&[3, 70], 0.0);
        let grad = |y: &Tensor| {
            (y * &w)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
                .get(x.as_tensor())
                .unwrap()
                .clone()
        };
        let (a, b) = (
            max_over_points(x.as_tensor()).unwrap(),
            x.as_tensor().max(1).unwrap(),
        );
        assert_eq!(max_diff(&a, &b), 0.0);
        assert_eq!(max_diff(&grad(&a), &grad(&b)), 0.0);

        let x2 = Var::from_tensor(&rand(&[150, 70], 0.0)).unwrap();
        let r = Var::from_tensor(&rand(&[3, 70], 0.0)).unwrap();
        let w2 = rand(&[150, 70], 0.0);
        let fast = add_per_cloud(x2.as_tensor(), r.as_tensor()).unwrap();
        let slow = x2
            .as_tensor()
            .reshape((3, 50, 70))
            .unwrap()
            .broadcast_add(&r.as_tensor().unsqueeze(1).unwrap())
            .unwrap()
            .reshape((150, 70))
            .unwrap();
        assert_eq!(max_diff(&fast, &slow), 0.0);
        let g = |y: &Tensor| (y * &w2).unwrap().sum_all().unwrap().backward().unwrap();
        let (gf, gs) = (g(&fast), g(&slow));
        for v in [&x2, &r] {
            assert!(
                max_diff(
                    gf.get(v.as_tensor()).unwrap(),
                    gs.get(v.as_tensor()).unwrap()
                ) < 1e-4
            );
        }
    }
}
