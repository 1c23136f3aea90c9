//! Per-cloud ops on `[B*N, C]` point features: the max over each cloud's points (the
//! global max-pool) and its counterpart, a per-cloud row broadcast back onto every point.
//! Both are here because candle does them as reductions / broadcasts over a middle
//! dimension, which it walks element by element.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::common::{f32_slice, fast_path, par_fill, ROWS};

/// Columns per work item of the max-pool (a 256-byte strip of every row).
const COLS: usize = 64;

/// Max over the `n` rows of each cloud of `f(j, x[r, j])`, column by column, with the
/// winning row within the cloud: `x` `[b*n, c]` -> `([b, c], argmax [b, c])`. `f` lets a
/// fused op pool a per-channel map of its values (batch norm + activation) without
/// storing them. Work items are (cloud, strip of [`COLS`] columns).
pub(super) fn max_per_cloud(
    x: &[f32],
    (b, n, c): (usize, usize, usize),
    f: impl Fn(usize, f32) -> f32 + Sync,
) -> (Vec<f32>, Vec<u32>) {
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
                    let v = f(j0 + j, row[j]);
                    // `>` keeps the first maximum; NaN never wins (as in `max`).
                    if v > best[j] {
                        best[j] = v;
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
    (out, argmax)
}

/// Max over the points of each cloud, saving the winners for the backward pass.
struct MaxOverPoints {
    argmax: Arc<Mutex<Vec<u32>>>,
}

impl CustomOp1 for MaxOverPoints {
    fn name(&self) -> &'static str {
        "max-over-points"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, "max x")?;
        let (b, n, c) = l.shape().dims3()?;
        let (out, argmax) = max_per_cloud(x, (b, n, c), |_, v| v);
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
    if fast_path(&[x]) {
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
    if fast_path(&[x, r]) {
        x.contiguous()?.apply_op2(&r.contiguous()?, AddPerCloud)
    } else {
        x.reshape((b, m / b, c))?
            .broadcast_add(&r.unsqueeze(1)?)?
            .reshape((m, c))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{max_abs_diff, rand};
    use super::*;
    use candle_core::Var;

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
        assert_eq!(max_abs_diff(&a, &b), 0.0);
        assert_eq!(max_abs_diff(&grad(&a), &grad(&b)), 0.0);

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
        assert_eq!(max_abs_diff(&fast, &slow), 0.0);
        let g = |y: &Tensor| (y * &w2).unwrap().sum_all().unwrap().backward().unwrap();
        let (gf, gs) = (g(&fast), g(&slow));
        for v in [&x2, &r] {
            assert!(
                max_abs_diff(
                    gf.get(v.as_tensor()).unwrap(),
                    gs.get(v.as_tensor()).unwrap()
                ) < 1e-4
            );
        }
    }
}
