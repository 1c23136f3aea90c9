//! A linear layer fused with the train-mode batch norm + activation after it, and the
//! pooled variant that also takes PointNet's global max-pool. Fusing the gemm matters for
//! the backward: `dz` is produced one row chunk at a time and fed straight into the `dx`
//! and `dw` gemms while in cache, so neither it nor candle's zero-filled per-node gradient
//! buffers ever exist whole.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::batch_norm::{
    apply_with_stats, bn_act_train, bn_backward_coefs, bn_bwd_dx, bn_coefs, bn_forward, bn_moments,
    gamma_beta_grad, BnStats,
};
use super::common::{act, act_grads, f32_slice, fast_path, par_fill, with_f32, ROWS};
use super::pooling::max_per_cloud;
use crate::model::activation::Activation;
use crate::model::cpu::gemm_raw;

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
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let dev = x.device();
    let dx = dx
        .map(|dx| Tensor::from_vec(dx, (m, cin), dev))
        .transpose()?;
    Ok((
        dx,
        Some(Tensor::from_vec(dw, (cout, cin), dev)?),
        Some(gamma_beta_grad(dgamma, &dbeta, dev)?),
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
            let sl = self.act.negative_slope();
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
        let z = linear_fwd(x, w, m, cin, c);
        let mo = bn_moments(&z, m, c, self.eps);
        let (gamma, beta) = (&gb[..c], &gb[c..]);
        let (scale, shift) = mo.affine(gamma, beta);
        let sl = self.act.negative_slope();
        let b = m / self.n;
        let (out, argmax) =
            max_per_cloud(&z, (b, self.n, c), |j, v| act(v * scale[j] + shift[j], sl));
        let stats = mo.into_stats(gamma);
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
            // g at the winners only; row index of each winner in z.
            let g = act_grads(dy, ymax, self.act.negative_slope());
            let rows: Vec<usize> = argmax
                .iter()
                .enumerate()
                .map(|(t, &i)| (t / c) * n + i as usize)
                .collect();
            // Only B x C winners: a serial f64 sum, not the chunked f32 one of dense rows.
            let (mut sg, mut sgx) = (vec![0f64; c], vec![0f64; c]);
            for (t, (&gv, &r)) in g.iter().zip(&rows).enumerate() {
                let j = t % c;
                sg[j] += gv as f64;
                sgx[j] += (gv * (z[r * c + j] - bs.mean[j])) as f64;
            }
            let (dgamma, dbeta, coef) = bn_coefs(&sg, &sgx, bs, m as f32);
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
    if !fast_path(&[x, w, gamma, beta]) {
        return bn_act_train(&x.matmul(&w.t()?)?, gamma, beta, act, eps);
    }
    apply_with_stats(
        x,
        w,
        gamma,
        beta,
        |state| LinearBnAct { act, eps, state },
        |st: &LinearState| &st.stats,
    )
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
    if !fast_path(&[x, w, gamma, beta]) {
        let (y, mean, var) = bn_act_train(&x.matmul(&w.t()?)?, gamma, beta, act, eps)?;
        let c = y.dim(1)?;
        return Ok((y.reshape((m / n, n, c))?.max(1)?, mean, var));
    }
    apply_with_stats(
        x,
        w,
        gamma,
        beta,
        |state| LinearBnActMax { act, eps, n, state },
        |st: &LinearState| &st.stats,
    )
}

#[cfg(test)]
mod tests {
    use super::super::batch_norm::bn_act_generic;
    use super::super::test_util::{assert_fast_matches_generic, rand, weighted_grads};
    use super::*;
    use candle_core::Var;

    /// Checks `fused(x, w, gamma, beta, act)` against `pool(bn_act_generic(x w^T))`, both
    /// activations: values, batch statistics and the gradients of all four inputs.
    /// `x` is `[m, cin]` shifted by `x_shift`, gamma shifted by `gamma_shift`.
    fn check_fused_linear(
        (m, cin, cout): (usize, usize, usize),
        (x_shift, gamma_shift): (f64, f64),
        out_rows: usize,
        fused: impl Fn([&Tensor; 4], Activation) -> Result<(Tensor, Tensor, Tensor)>,
        pool: impl Fn(Tensor) -> Tensor,
    ) {
        for act in [Activation::Relu, Activation::LeakyRelu(0.2)] {
            let x = Var::from_tensor(&rand(&[m, cin], x_shift)).unwrap();
            let w = Var::from_tensor(&(rand(&[cout, cin], 0.0) * 0.3).unwrap()).unwrap();
            let gamma = Var::from_tensor(&rand(&[cout], gamma_shift)).unwrap();
            let beta = Var::from_tensor(&rand(&[cout], 0.0)).unwrap();
            let wy = rand(&[out_rows, cout], 0.0);
            let vars = [&x, &w, &gamma, &beta];
            let ts = vars.map(|v| v.as_tensor());
            let run = |fast: bool| {
                let (y, mean, var) = if fast {
                    fused(ts, act).unwrap()
                } else {
                    let z = ts[0].matmul(&ts[1].t().unwrap()).unwrap();
                    let (y, mean, var) = bn_act_generic(&z, ts[2], ts[3], act, 1e-5).unwrap();
                    (pool(y), mean, var)
                };
                let grads = weighted_grads(&y, &wy, &vars);
                (y, mean, var, grads)
            };
            assert_fast_matches_generic(act, run(true), run(false));
        }
    }

    /// Fused linear + batch norm + activation: same values and gradients as matmul + the
    /// candle-op batch norm, for a row count that is not a multiple of the chunk size.
    #[test]
    fn fused_linear_bn_act_matches_generic_values_and_grads() {
        let (m, cin, cout) = (700, 19, 45);
        check_fused_linear(
            (m, cin, cout),
            (1.0, 0.5),
            m,
            |[x, w, g, b], act| linear_bn_act_train(x, w, g, b, act, 1e-5),
            |y| y,
        );
    }

    /// The pooled variant (last global layer + max over points) against the same maths
    /// from candle primitives.
    #[test]
    fn fused_linear_bn_act_max_matches_generic_values_and_grads() {
        let (b, n, cin, cout) = (3, 300, 11, 70);
        check_fused_linear(
            (b * n, cin, cout),
            (0.5, 0.0), // gamma around 0: some negative
            b,
            |[x, w, g, bt], act| linear_bn_act_max_train(x, w, g, bt, act, 1e-5, n),
            |y| y.reshape((b, n, cout)).unwrap().max(1).unwrap(),
        );
    }
}
