//! Fused training ops with hand-written backward passes (CPU), with plain candle-op
//! fallbacks on other devices.
//!
//! Why: built from candle primitives, batch norm + activation is ~8 graph nodes whose
//! backward adds ~20 full passes over `[B*N, C]` (each node's gradient is also
//! zero-initialised and summed), and candle's reductions over a non-last dimension (batch
//! norm statistics, max over points) walk the tensor element by element. These ops do the
//! same maths in two passes forward and two backward, parallelised over row chunks.
//!
//! One file per kind of op, each with the tests that hold it to the generic candle maths
//! (EdgeConv's are in `dgcnn.rs`, against the layer it fuses):
//! - `batch_norm`: train-mode batch norm + activation, and the moment / backward-coefficient
//!   maths every other fused op reuses, so the ops differ only in how they walk their rows;
//! - `linear_bn`: a linear layer fused with the batch norm after it (and, for PointNet's
//!   last global layer, with the max-pool from `pooling` too);
//! - `pooling`: per-cloud max over points and the per-cloud broadcast add;
//! - `edge_conv`: DGCNN's EdgeConv tail, which never forms the `[B*N*k, C]` edge tensor;
//! - `common`: slice access, parallel fill, the activation as kernels evaluate it and the
//!   CPU/f32 dispatch test, shared by all of them.
//!
//! What still looks alike across the files is the `CustomOp` impls' method signatures,
//! which candle's traits fix.

/// Compiles `$body` three times: for AVX-512, for AVX2+FMA and for the baseline target,
/// and picks one at run time. The crate is built for baseline x86-64 (SSE2) so that the
/// binary runs anywhere; without this the elementwise kernels would use 4-wide SSE.
/// (A macro rather than a function so that each copy is compiled for its own features;
/// defined here, before the `mod` lines, so that every op file can use it.)
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
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

mod batch_norm;
mod common;
mod edge_conv;
mod linear_bn;
mod pooling;

pub(crate) use batch_norm::bn_act_train;
pub(crate) use common::fast_path;
pub(crate) use edge_conv::{edge_affine_act_max, edge_bn_act_max_train, EdgeGraph};
pub(crate) use linear_bn::{linear_bn_act_max_train, linear_bn_act_train};
pub(crate) use pooling::{add_per_cloud, max_over_points};

/// Helpers shared by the tests of the op files and of the backbones built on them.
#[cfg(test)]
pub(crate) mod test_util {
    use candle_core::{Device, Tensor, Var};
    use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};

    use crate::model::{Activation, Backbone};
    use crate::tools::bench_model::stand_in_loss;

    /// Standard-normal values shifted by `seed`, on the CPU. Drawn from a per-thread
    /// seeded stream (candle's own RNG cannot be seeded), so a test sees the same inputs
    /// on every run: with fresh random inputs a pre-activation landing on an activation's
    /// kink made the fused-vs-generic gradient checks fail now and then.
    pub(crate) fn rand(shape: &[usize], seed: f64) -> Tensor {
        use rand::SeedableRng;
        use rand_distr::{Distribution, StandardNormal};
        use std::cell::RefCell;
        thread_local! {
            static RNG: RefCell<rand_chacha::ChaCha8Rng> =
                RefCell::new(rand_chacha::ChaCha8Rng::seed_from_u64(7));
        }
        let n: usize = shape.iter().product();
        let values: Vec<f32> = RNG.with(|rng| {
            let mut rng = rng.borrow_mut();
            (0..n).map(|_| StandardNormal.sample(&mut *rng)).collect()
        });
        let t = Tensor::from_vec(values, shape, &Device::Cpu).unwrap();
        (t + seed).unwrap()
    }

    /// Largest absolute element of `t`.
    pub(crate) fn max_abs(t: &Tensor) -> f32 {
        t.abs().unwrap().max_all().unwrap().to_scalar().unwrap()
    }

    /// Largest absolute element of `a - b`.
    pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        max_abs(&(a - b).unwrap())
    }

    /// Gradients of `sum(y * w)` with respect to `vars`, in order.
    pub(crate) fn weighted_grads(y: &Tensor, w: &Tensor, vars: &[&Var]) -> Vec<Tensor> {
        let g = (y * w).unwrap().sum_all().unwrap().backward().unwrap();
        vars.iter()
            .map(|v| g.get(v.as_tensor()).unwrap().clone())
            .collect()
    }

    /// The stand-in loss at each of `steps` AdamW steps (lr 1e-2, no weight decay) of
    /// training `net`, whose variables are `vm`'s, on `points` with key points `idx`.
    pub(crate) fn adamw_losses(
        net: &dyn Backbone,
        vm: &VarMap,
        points: &Tensor,
        idx: &[u32],
        steps: usize,
    ) -> Vec<f32> {
        let params = ParamsAdamW {
            lr: 1e-2,
            weight_decay: 0.0,
            ..Default::default()
        };
        let mut opt = AdamW::new(vm.all_vars(), params).unwrap();
        let idx = Tensor::new(idx, points.device()).unwrap();
        let mut losses = vec![];
        for _ in 0..steps {
            let loss = stand_in_loss(&net.forward_t(points, true).unwrap(), &idx).unwrap();
            losses.push(loss.to_scalar::<f32>().unwrap());
            opt.backward_step(&loss).unwrap();
        }
        losses
    }

    /// Outputs, batch statistics and gradients of a fused op against the generic maths.
    pub(crate) fn assert_fast_matches_generic(
        act: Activation,
        fast: (Tensor, Tensor, Tensor, Vec<Tensor>),
        generic: (Tensor, Tensor, Tensor, Vec<Tensor>),
    ) {
        let ((y1, m1, v1, g1), (y2, m2, v2, g2)) = (fast, generic);
        assert!(max_abs_diff(&y1, &y2) < 1e-4, "{act:?} y");
        assert!(
            max_abs_diff(&m1, &m2) < 1e-4 && max_abs_diff(&v1, &v2) < 1e-3,
            "{act:?} stats"
        );
        for (i, (a, b)) in g1.iter().zip(&g2).enumerate() {
            let scale = max_abs(b);
            assert!(
                max_abs_diff(a, b) < 1e-3 * scale.max(1.0),
                "{act:?} grad {i}: {}",
                max_abs_diff(a, b)
            );
        }
    }
}
