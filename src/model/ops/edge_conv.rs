//! DGCNN's EdgeConv tail `max_s act(bn(a_i + bm_nbr(i,s)))` on the CPU, in training and
//! inference, over a k-NN graph held with its reverse. Separate from `linear_bn` because
//! nothing here is a gemm: the `[B*N*k, C]` edge tensor is never formed, and every
//! moment, max and gradient is accumulated edge by edge from two `[B*N, C]` terms.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::batch_norm::{
    apply_with_stats, bn_coefs, gamma_beta_grad, sum_partials, BnStats, Moments,
};
use super::common::{act, act_grads, f32_slice, with_f32, ROWS};
use crate::model::activation::Activation;

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
                    let v = act((av + bv) * sc + sh, slope);
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
        // The first edge's value as the shift (see `Moments::from_shifted_sums`).
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
        let mo = Moments::from_shifted_sums(&sum, &sq, (m * k) as f64, &shift, self.eps);
        let (gamma, beta) = (&gb[..c], &gb[c..]);
        let (scale, shift_out) = mo.affine(gamma, beta);
        let sl = self.act.negative_slope();
        let (y, arg) = edge_max_all(a, bm, g, &scale, &shift_out, sl);
        *self.state.lock().unwrap() = EdgeState {
            stats: mo.into_stats(gamma),
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
            // Output gradient at the winning edges.
            let gw = act_grads(dy, y, self.act.negative_slope());
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
            // coef[ch] = [K, mg, mean, q] over all E = m k edges.
            let (dgamma, dbeta, coef) = bn_coefs(&sg, &sgx, bs, (m * k) as f32);
            let kf = k as f32;
            // da_i = K (g_i - k mg - (k a_i + sum_s bm_nbr(i,s) - k mean) q)
            let mut da = vec![0f32; m * c];
            da.par_chunks_mut(c).enumerate().for_each(|(i, out)| {
                for &j in &g.nbr[i * k..(i + 1) * k] {
                    out.iter_mut()
                        .zip(&bm[j as usize * c..][..c])
                        .for_each(|(o, &b)| *o += b);
                }
                for (ch, &[kk, mg, mean, q]) in coef.iter().enumerate() {
                    let zsum = kf * a[i * c + ch] + out[ch] - kf * mean;
                    out[ch] = kk * (gw[i * c + ch] - kf * mg - zsum * q);
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
                for (ch, &[kk, mg, mean, q]) in coef.iter().enumerate() {
                    let zsum = out[ch] + n_j * (bm[j * c + ch] - mean);
                    out[ch] = kk * (gsum[ch] - n_j * mg - zsum * q);
                }
            });
            Ok((da, dbm, dgamma, dbeta))
        })?;
        let dev = a.device();
        Ok((
            Some(Tensor::from_vec(da, (m, c), dev)?),
            Some(Tensor::from_vec(dbm, (m, c), dev)?),
            Some(gamma_beta_grad(dgamma, &dbeta, dev)?),
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
    apply_with_stats(
        a,
        bm,
        gamma,
        beta,
        |state| EdgeBnActMax {
            act,
            eps,
            graph,
            state,
        },
        |st: &EdgeState| &st.stats,
    )
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
        Ok(edge_max_all(s[0], s[1], graph, &scale, &shift, act.negative_slope()).0)
    })?;
    Tensor::from_vec(y, (m, c), a.device())
}
