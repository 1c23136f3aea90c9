//! DGCNN (Wang et al. 2019), segmentation form, channels-last.
//!
//! ```text
//! x0 = xyz -> EdgeConv(64) -> x1 -> EdgeConv(64) -> x2 -> EdgeConv(128) -> x3 -> EdgeConv(256) -> x4
//! cat[x1..x4] (512) -> linear 1024 -> max over N -> global
//! [cat, global] -> 256 -> 256 -> 128 -> linear to D
//! ```
//! EdgeConv: k-NN graph of the layer's *input features* (rebuilt every layer, k = 20, the
//! point itself included as in the reference code), edge feature `[x_i, x_j - x_i]`,
//! shared linear + batch norm + LeakyReLU(0.2), max over the k neighbours. Each EdgeConv
//! has one linear layer. Widths are the DGCNN paper's 64, 64, 128, 256 (its segmentation
//! net uses three EdgeConvs of 64 with two-layer MLPs; `edge: [64, 64, 64]` is the lighter
//! variant). Training step (forward + backward + AdamW) at B=4, N=2048 on two CPU cores:
//! about 0.5 s with the default widths (up to 0.9 s on a busy machine), under 0.5 GB;
//! most of it is the 512 -> 1024 global layer and the k-NN searches.
//!
//! Cost: the edge linear is never applied to the `[B*N*k, 2C]` edge features. With
//! `W = [W1 | W2]`, `W [x_i; x_j - x_i] = (W1 - W2) x_i + W2 x_j`, so two per-point
//! products (`[B*N, C] x [C, O]`) give every edge's pre-activation as `a_i + b_j`. On the
//! CPU the batch norm, activation and max over neighbours then run as one fused op
//! (`ops/edge_conv.rs`) that never forms the `[B*N*k, O]` edge tensor, in training and inference;
//! elsewhere the edge tensor is gathered and candle ops do the rest. As in PointNet, the
//! first head layer adds its global half once per cloud.

use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::activation::Activation;
use super::layers::PointLinear;
use super::ops::{edge_affine_act_max, fast_path, max_over_points, EdgeGraph};
use super::{check_points, Backbone, BackboneConfig, DEFAULT_EMBED_DIM};

const LEAKY_SLOPE: f64 = 0.2;

/// DGCNN widths and neighbourhood size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DgcnnConfig {
    /// Output embedding dimension D.
    pub embed_dim: usize,
    /// Neighbours per point in every EdgeConv layer (clamped to N for tiny clouds).
    pub k: usize,
    /// Output widths of the EdgeConv layers.
    pub edge: Vec<usize>,
    /// Width of the per-point layer before the global max-pool.
    pub global_dim: usize,
    /// Per-point head MLP on `[concat(edge outputs), global]`, then a linear layer to D.
    pub head: Vec<usize>,
}

impl Default for DgcnnConfig {
    fn default() -> Self {
        Self {
            embed_dim: DEFAULT_EMBED_DIM,
            k: 20,
            edge: vec![64, 64, 128, 256],
            global_dim: 1024,
            head: vec![256, 256, 128],
        }
    }
}

/// One EdgeConv layer: `max_j act(bn(W [x_i, x_j - x_i]))` over the k-NN `j` of `i`.
struct EdgeConv {
    lin: PointLinear,
    in_dim: usize,
}

impl EdgeConv {
    fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let lin = PointLinear::bn(2 * in_dim, out_dim, Activation::LeakyRelu(LEAKY_SLOPE), vb)?;
        Ok(Self { lin, in_dim })
    }

    /// `x`: `[B*N, C]`, `nbr`: flat neighbour rows `[B*N*k]` (u32, indices into `x`).
    /// With `graph` (the same neighbours, CPU f32 only) the edge part runs as one fused op
    /// that never forms the `[B*N*k, O]` edge tensor; without it, from candle primitives.
    fn forward_t(
        &self,
        x: &Tensor,
        nbr: &Tensor,
        graph: Option<&Arc<EdgeGraph>>,
        k: usize,
        train: bool,
    ) -> Result<Tensor> {
        let c = self.in_dim;
        let w = self.lin.weight(); // [O, 2C]
        let w1 = w.narrow(1, 0, c)?;
        let w2 = w.narrow(1, c, c)?;
        let a = x.matmul(&(w1 - &w2)?.t()?)?; // centre term [B*N, O]
        let bm = x.matmul(&w2.t()?)?; // neighbour term [B*N, O]
        let bn = self
            .lin
            .batch_norm()
            .expect("EdgeConv layers have batch norm");
        let act = self.lin.activation();
        if let Some(g) = graph.filter(|_| fast_path(&[&a, &bm])) {
            return if train {
                bn.edge_act_max_train(&a, &bm, g.clone(), act)
            } else {
                let (scale, shift) = bn.eval_affine()?;
                edge_affine_act_max(&a, &bm, g, &scale, &shift, act)
            };
        }
        let (m, o) = a.dims2()?;
        let z = bm
            .index_select(nbr, 0)?
            .reshape((m, k, o))?
            .broadcast_add(&a.unsqueeze(1)?)?
            .reshape((m * k, o))?;
        let h = self.lin.post(&z, train)?;
        max_over_points(&h.reshape((m, k, o))?) // max over each point's k edges
    }
}

/// Trainable DGCNN (see the module docs).
pub struct Dgcnn {
    cfg: BackboneConfig,
    k: usize,
    edge: Vec<EdgeConv>,
    global: PointLinear,
    head: Vec<PointLinear>,
    out: PointLinear,
}

impl Dgcnn {
    /// Weights: `edge.{i}` (`weight` `[O, 2C]` + `bn.*`), `global`, `head.{i}`, `out`.
    pub fn new(cfg: DgcnnConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.k == 0 || cfg.edge.is_empty() || cfg.head.is_empty() {
            candle_core::bail!("DGCNN needs k > 0 and non-empty edge and head widths");
        }
        let mut edge = Vec::with_capacity(cfg.edge.len());
        let mut c = 3;
        for (i, &o) in cfg.edge.iter().enumerate() {
            edge.push(EdgeConv::new(c, o, vb.pp("edge").pp(i))?);
            c = o;
        }
        let cat: usize = cfg.edge.iter().sum();
        let global = PointLinear::bn(
            cat,
            cfg.global_dim,
            Activation::LeakyRelu(LEAKY_SLOPE),
            vb.pp("global"),
        )?;
        let (head, c) = PointLinear::bn_mlp(
            cat + cfg.global_dim,
            &cfg.head,
            Activation::LeakyRelu(LEAKY_SLOPE),
            vb.pp("head"),
        )?;
        let out = PointLinear::plain(c, cfg.embed_dim, vb.pp("out"))?;
        Ok(Self {
            k: cfg.k,
            cfg: BackboneConfig::Dgcnn(cfg),
            edge,
            global,
            head,
            out,
        })
    }
}

impl Backbone for Dgcnn {
    fn forward_t(&self, points: &Tensor, train: bool) -> Result<Tensor> {
        let (b, n) = check_points(points)?;
        let k = self.k.min(n);
        let mut x = points.reshape((b * n, 3))?;
        let mut feats = Vec::with_capacity(self.edge.len());
        for e in &self.edge {
            let c = x.dim(1)?;
            let idx = knn(&x.reshape((b, n, c))?, k)?; // [B, N, k] within-cloud indices
            let nbr = to_global_rows(&idx)?;
            let graph = if fast_path(&[&x]) {
                Some(Arc::new(EdgeGraph::new(nbr.to_vec1()?, k)?))
            } else {
                None
            };
            x = e.forward_t(&x, &nbr, graph.as_ref(), k, train)?;
            feats.push(x.clone());
        }
        let cat = Tensor::cat(&feats, 1)?; // [B*N, sum(edge)]
        let global = self.global.forward_max_t(&cat, n, train)?; // [B, G]

        // Head MLP on [cat, global], the global half of its first layer once per cloud.
        let h = self.head[0].forward_split_t(&cat, &global, train)?;
        let h = PointLinear::chain_t(&self.head[1..], &h, train)?;
        self.out.forward_t(&h, train)?.reshape((b, n, ()))
    }

    fn config(&self) -> &BackboneConfig {
        &self.cfg
    }
}

/// k nearest neighbours (squared Euclidean, the point itself included) of every point
/// within its own cloud: `x` `[B, N, C]` -> `[B, N, k]` u32 indices, nearest first (ties
/// by lower index). Not differentiable (the graph is a discrete choice, as in DGCNN).
pub fn knn(x: &Tensor, k: usize) -> Result<Tensor> {
    let (b, n, c) = x.dims3()?;
    if k == 0 || k > n {
        candle_core::bail!("knn: k = {k} must be in 1..={n}");
    }
    let x = x.detach().to_dtype(DType::F32)?;
    let out = if x.device().is_cpu() {
        knn_cpu(&x.flatten_all()?.to_vec1()?, b, n, c, k)
    } else {
        // Distance ranks from one batched matmul on the device, selection on the CPU.
        let sq = x.sqr()?.sum_keepdim(2)?; // [B, N, 1]
        let score = x
            .matmul(&x.t()?)?
            .affine(-2.0, 0.0)?
            .broadcast_add(&sq.transpose(1, 2)?)?;
        let score: Vec<f32> = score.flatten_all()?.to_device(&Device::Cpu)?.to_vec1()?;
        let mut out = vec![0u32; b * n * k];
        out.par_chunks_mut(k)
            .zip(score.par_chunks(n))
            .for_each_init(Vec::new, |best, (dst, row)| top_k(row, k, best, dst));
        out
    };
    Tensor::from_vec(out, (b, n, k), x.device())
}

/// Rows per k-NN tile: a `[256, N]` score block stays in L2 for N up to a few thousand.
const KNN_TILE: usize = 256;

/// CPU k-NN: per (cloud, tile of rows) one gemm for the dot products, then a top-k scan of
/// each row while it is in cache; no `[N, N]` matrix is ever stored.
fn knn_cpu(x: &[f32], b: usize, n: usize, c: usize, k: usize) -> Vec<u32> {
    let sq: Vec<f32> = x
        .chunks_exact(c)
        .map(|p| p.iter().map(|v| v * v).sum())
        .collect();
    let mut out = vec![0u32; b * n * k];
    out.par_chunks_mut(n * k)
        .enumerate()
        .flat_map(|(cloud, o)| {
            o.par_chunks_mut(KNN_TILE * k)
                .enumerate()
                .map(move |(t, d)| (cloud, t * KNN_TILE, d))
        })
        .for_each(|(cloud, r0, dst)| {
            KNN_SCRATCH.with_borrow_mut(|(dots, best)| {
                let rows = dst.len() / k;
                if dots.len() < rows * n {
                    dots.resize(rows * n, 0.0);
                }
                let xs = &x[cloud * n * c..(cloud + 1) * n * c];
                // SAFETY: dots is rows x n; lhs rows x c; rhs is xs read transposed (c x n).
                unsafe {
                    super::cpu::gemm_raw(
                        (rows, n, c),
                        dots.as_mut_ptr(),
                        n,
                        false,
                        (xs[r0 * c..].as_ptr(), 1, c),
                        (xs.as_ptr(), c, 1),
                    )
                }
                let sqc = &sq[cloud * n..(cloud + 1) * n];
                for (r, d) in dst.chunks_exact_mut(k).enumerate() {
                    let row = &mut dots[r * n..(r + 1) * n];
                    // |x_j|^2 - 2 x_i.x_j ranks j like the distance (|x_i|^2 is constant).
                    row.iter_mut()
                        .zip(sqc)
                        .for_each(|(v, &s)| *v = s - 2.0 * *v);
                    top_k(row, k, best, d);
                }
            })
        });
    out
}

/// Dot-product tile and candidate list of one k-NN worker.
type KnnScratch = (Vec<f32>, Vec<(f32, u32)>);

thread_local! {
    /// Per-thread k-NN scratch (dot-product tile, candidate list), reused across calls:
    /// fresh multi-megabyte buffers per tile cost more in page faults than the work.
    static KNN_SCRATCH: std::cell::RefCell<KnnScratch> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Writes the indices of the `k` smallest scores of `row` into `dst`, ascending by
/// (score, index). A sorted insertion list: after the first few candidates almost every
/// score fails the single comparison against the current k-th best.
fn top_k(row: &[f32], k: usize, best: &mut Vec<(f32, u32)>, dst: &mut [u32]) {
    best.clear();
    let mut worst = f32::INFINITY; // the k-th best so far (infinite until k are held)
    for (b, block) in row.chunks(16).enumerate() {
        // One vectorisable test per block: most blocks hold no candidate at all.
        if best.len() == k && block.iter().map(|&s| (s < worst) as u32).sum::<u32>() == 0 {
            continue;
        }
        for (o, &s) in block.iter().enumerate() {
            if s.is_nan() || (best.len() == k && s >= worst) {
                continue;
            }
            if best.len() == k {
                best.pop();
            }
            let mut p = best.len();
            while p > 0 && best[p - 1].0 > s {
                p -= 1;
            }
            best.insert(p, (s, (b * 16 + o) as u32));
            if best.len() == k {
                worst = best[k - 1].0;
            }
        }
    }
    // Fewer than k finite scores (NaN input): pad with the last found, or row 0.
    let last = best.last().map_or(0, |b| b.1);
    for (i, d) in dst.iter_mut().enumerate() {
        *d = best.get(i).map_or(last, |b| b.1);
    }
}

/// Turns within-cloud neighbour indices `[B, N, k]` into flat row indices of the
/// `[B*N, C]` feature matrix, `[B*N*k]`.
fn to_global_rows(idx: &Tensor) -> Result<Tensor> {
    let (b, n, _k) = idx.dims3()?;
    let offs: Vec<u32> = (0..b as u32).map(|i| i * n as u32).collect();
    let offs = Tensor::from_vec(offs, (b, 1, 1), idx.device())?;
    idx.broadcast_add(&offs)?.flatten_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::test_util::{adamw_losses, max_abs, max_abs_diff, rand};
    use candle_nn::VarMap;

    fn small() -> DgcnnConfig {
        DgcnnConfig {
            embed_dim: 8,
            k: 4,
            edge: vec![8, 8, 16],
            global_dim: 32,
            head: vec![16],
        }
    }

    #[test]
    fn knn_picks_the_right_neighbours() {
        // Cloud 0: points on a line at x = 0, 1, 3, 7, 8. Cloud 1: the same, reversed.
        let xs = [0f32, 1.0, 3.0, 7.0, 8.0];
        let mut v = vec![];
        for &x in xs.iter().chain(xs.iter().rev()) {
            v.extend([x, 0.0, 0.0]);
        }
        let x = Tensor::from_vec(v, (2, 5, 3), &Device::Cpu).unwrap();
        let idx: Vec<Vec<Vec<u32>>> = knn(&x, 3).unwrap().to_vec3().unwrap();
        // Nearest first, the point itself included.
        assert_eq!(idx[0][0], vec![0, 1, 2]); // 0: self, 1 (d=1), 3 (d=3)
        assert_eq!(idx[0][1], vec![1, 0, 2]); // 1: self, 0 (d=1), 3 (d=2)
        assert_eq!(idx[0][2], vec![2, 1, 0]); // 3: self, 1 (d=2), 0 (d=3)
        assert_eq!(idx[0][3], vec![3, 4, 2]); // 7: self, 8 (d=1), 3 (d=4)
        assert_eq!(idx[0][4], vec![4, 3, 2]); // 8: self, 7, 3
                                              // Cloud 1 is reversed: indices refer to its own points only.
        assert_eq!(idx[1][0], vec![0, 1, 2]); // 8: self, 7, 3
        assert_eq!(idx[1][4], vec![4, 3, 2]); // 0: self, 1, 3
        assert_eq!(
            to_global_rows(&knn(&x, 1).unwrap())
                .unwrap()
                .to_vec1::<u32>()
                .unwrap(),
            (0..10).collect::<Vec<u32>>()
        );
        assert!(knn(&x, 6).is_err());
    }

    /// The tiled CPU k-NN against a brute-force f64 sort, with N not a multiple of the
    /// tile so that tiles end inside a cloud.
    #[test]
    fn knn_matches_brute_force_across_tiles() {
        let (b, n, c, k) = (2, 300, 5, 7);
        let mut state = 12345u64;
        let v: Vec<f32> = (0..b * n * c)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let x = Tensor::from_vec(v.clone(), (b, n, c), &Device::Cpu).unwrap();
        let got: Vec<Vec<Vec<u32>>> = knn(&x, k).unwrap().to_vec3().unwrap();
        for cloud in 0..b {
            let p = |i: usize| &v[(cloud * n + i) * c..(cloud * n + i + 1) * c];
            for (i, got_i) in got[cloud].iter().enumerate() {
                let mut d: Vec<(f64, u32)> = (0..n)
                    .map(|j| {
                        (
                            p(i).iter()
                                .zip(p(j))
                                .map(|(a, b)| ((a - b) as f64).powi(2))
                                .sum(),
                            j as u32,
                        )
                    })
                    .collect();
                d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let want: Vec<u32> = d[..k].iter().map(|e| e.1).collect();
                assert_eq!(got_i, &want, "cloud {cloud} point {i}");
            }
        }
    }

    #[test]
    fn edgeconv_equals_explicit_edge_features() {
        // The (W1 - W2) x_i + W2 x_j rewrite against the literal [x_i, x_j - x_i] product.
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let e = EdgeConv::new(3, 6, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
        let (b, n, k) = (2, 7, 3);
        let x = rand(&[b * n, 3], 0.0);
        let nbr = to_global_rows(&knn(&x.reshape((b, n, 3)).unwrap(), k).unwrap()).unwrap();
        let got = e.forward_t(&x, &nbr, None, k, false).unwrap();
        let graph = Arc::new(EdgeGraph::new(nbr.to_vec1().unwrap(), k).unwrap());
        let fused = e.forward_t(&x, &nbr, Some(&graph), k, false).unwrap();
        let d = max_abs_diff(&got, &fused);
        assert!(d < 1e-5, "fused eval diff {d}");
        let xi = x
            .unsqueeze(1)
            .unwrap()
            .broadcast_as((b * n, k, 3))
            .unwrap()
            .reshape((b * n * k, 3))
            .unwrap();
        let xj = x.index_select(&nbr, 0).unwrap();
        let feat = Tensor::cat(&[&xi, &(&xj - &xi).unwrap()], 1).unwrap();
        let want = e
            .lin
            .forward_t(&feat, false)
            .unwrap()
            .reshape((b * n, k, 6))
            .unwrap()
            .max(1)
            .unwrap();
        let d = max_abs_diff(&got, &want);
        assert!(d < 1e-5, "diff {d}");
    }

    /// The fused EdgeConv op against the candle-primitive path in train mode: outputs,
    /// running statistics and the gradients of every input.
    #[test]
    fn fused_edgeconv_train_matches_generic() {
        let dev = Device::Cpu;
        let (b, n, k, cin, cout) = (2, 40, 5, 6, 9);
        let x = candle_core::Var::from_tensor(&rand(&[b * n, cin], 0.0)).unwrap();
        let nbr =
            to_global_rows(&knn(&x.as_tensor().reshape((b, n, cin)).unwrap(), k).unwrap()).unwrap();
        let graph = Arc::new(EdgeGraph::new(nbr.to_vec1().unwrap(), k).unwrap());
        let wy = rand(&[b * n, cout], 0.0);
        let run = |fused: bool| {
            let vm = VarMap::new();
            let e =
                EdgeConv::new(cin, cout, VarBuilder::from_varmap(&vm, DType::F32, &dev)).unwrap();
            // Deterministic, non-trivial parameters (same for both runs).
            for (name, v) in vm.data().lock().unwrap().iter() {
                let len = v.elem_count();
                let vals: Vec<f32> = (0..len)
                    .map(|i| ((i * 7 + name.len()) % 13) as f32 / 13.0 - 0.4)
                    .collect();
                v.set(&Tensor::from_vec(vals, v.shape(), &dev).unwrap())
                    .unwrap();
            }
            let g = fused.then_some(&graph);
            let y = e.forward_t(x.as_tensor(), &nbr, g, k, true).unwrap();
            let grads = (&y * &wy).unwrap().sum_all().unwrap().backward().unwrap();
            let bn = e.lin.batch_norm().unwrap();
            let mut out = vec![
                y.clone(),
                bn.running_mean().copy().unwrap(),
                bn.running_var().copy().unwrap(),
            ];
            out.push(grads.get(x.as_tensor()).unwrap().clone());
            let data = vm.data().lock().unwrap();
            for name in ["weight", "bn.weight", "bn.bias"] {
                out.push(grads.get(data[name].as_tensor()).unwrap().clone());
            }
            out
        };
        let (f, g) = (run(true), run(false));
        for (i, (a, b)) in f.iter().zip(&g).enumerate() {
            let (scale, d) = (max_abs(b), max_abs_diff(a, b));
            assert!(
                d < 1e-4 * scale.max(1.0),
                "output {i}: diff {d} (scale {scale})"
            );
        }
    }

    #[test]
    fn dgcnn_shapes_equivariance_and_training() {
        let dev = Device::Cpu;
        let vm = VarMap::new();
        let cfg = BackboneConfig::Dgcnn(small());
        let net =
            crate::model::build_backbone(&cfg, VarBuilder::from_varmap(&vm, DType::F32, &dev))
                .unwrap();
        assert_eq!(net.config(), &cfg);
        let n = 24;
        let x = Tensor::rand(-1f32, 1.0, (2, n, 3), &dev).unwrap();
        assert_eq!(net.forward_t(&x, false).unwrap().dims(), &[2, n, 8]);
        // Default config, full width, small cloud.
        let vm_full = VarMap::new();
        let full = Dgcnn::new(
            DgcnnConfig::default(),
            VarBuilder::from_varmap(&vm_full, DType::F32, &dev),
        )
        .unwrap();
        assert_eq!(full.forward_t(&x, true).unwrap().dims(), &[2, n, 128]);

        let perm: Vec<u32> = (0..n as u32).map(|i| (i * 7 + 3) % n as u32).collect();
        let perm = Tensor::new(perm.as_slice(), &dev).unwrap();
        let e = net
            .forward_t(&x, false)
            .unwrap()
            .index_select(&perm, 1)
            .unwrap();
        let ep = net
            .forward_t(&x.index_select(&perm, 1).unwrap(), false)
            .unwrap();
        let d = max_abs_diff(&e, &ep);
        assert!(d < 1e-4, "diff {d}");

        let losses = adamw_losses(net.as_ref(), &vm, &x, &[0, 3, 7, 11, 23], 15);
        assert!(
            losses[14] < 0.5 * losses[0],
            "loss did not drop: {losses:?}"
        );
    }
}
