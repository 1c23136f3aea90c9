//! `semcorr bench model`: PointNet inference and training-step timings on this machine,
//! set against a plain matmul of the same FLOP count (what gemm can do at best here).

use super::warm_median_ms;
use std::fmt;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};

use crate::model::{Backbone, Dgcnn, DgcnnConfig, PointNet, PointNetConfig};

/// Points per cloud in every timing (the size the paper and the ROS node use).
pub const BENCH_POINTS: usize = 2048;
/// Clouds per training step (the paper's batch size).
pub const BENCH_TRAIN_BATCH: usize = 4;

/// Median wall-clock times (ms) of one run of [`model_bench`].
#[derive(Debug, Clone)]
pub struct ModelBenchReport {
    pub repeats: usize,
    pub threads: usize,
    /// PointNet eval-mode `forward_t`, B=1, N=2048.
    pub unfused_forward_ms: f64,
    /// [`super::FusedPointNet::forward`], B=1, N=2048.
    pub fused_forward_ms: f64,
    /// Forward + backward + AdamW step, B=4, N=2048, stand-in loss.
    pub train_step_ms: f64,
    /// The same for DGCNN (default config).
    pub dgcnn_train_step_ms: f64,
    /// `[2048, K] x [K, K]` with the fused forward's FLOP count: candle `matmul`
    /// (allocates and zero-fills its output each call)...
    pub matmul_ms: f64,
    /// ...and the same product as one direct multi-threaded gemm call into a reused
    /// buffer: the kernel roofline.
    pub gemm_ms: f64,
    pub matmul_k: usize,
    /// FLOPs of one fused forward (2 per multiply-accumulate).
    pub fused_flops: f64,
}

impl ModelBenchReport {
    pub fn fused_gflops(&self) -> f64 {
        self.fused_flops / self.fused_forward_ms * 1e-6
    }
    pub fn unfused_gflops(&self) -> f64 {
        self.fused_flops / self.unfused_forward_ms * 1e-6
    }
    fn matmul_flops(&self) -> f64 {
        2.0 * (BENCH_POINTS * self.matmul_k * self.matmul_k) as f64
    }
    pub fn matmul_gflops(&self) -> f64 {
        self.matmul_flops() / self.matmul_ms * 1e-6
    }
    pub fn gemm_gflops(&self) -> f64 {
        self.matmul_flops() / self.gemm_ms * 1e-6
    }
    /// Fused forward throughput as a share of the faster same-FLOP matmul.
    pub fn roofline_share(&self) -> f64 {
        self.fused_gflops() / self.matmul_gflops().max(self.gemm_gflops())
    }
}

impl fmt::Display for ModelBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "model bench: median of {} runs, {} threads, N={}",
            self.repeats, self.threads, BENCH_POINTS
        )?;
        writeln!(f, "{:<40} {:>10} {:>10}", "case", "ms", "GFLOP/s")?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, ms: f64, gf: Option<f64>| {
            let gf = gf.map_or_else(|| "-".to_string(), |g| format!("{g:.1}"));
            writeln!(f, "{name:<40} {ms:>10.2} {gf:>10}")
        };
        row(
            f,
            "pointnet forward B=1 (eval, unfused)",
            self.unfused_forward_ms,
            Some(self.unfused_gflops()),
        )?;
        row(
            f,
            "pointnet forward B=1 (fused)",
            self.fused_forward_ms,
            Some(self.fused_gflops()),
        )?;
        row(
            f,
            "pointnet train step B=4 (fwd+bwd+AdamW)",
            self.train_step_ms,
            None,
        )?;
        row(
            f,
            "dgcnn train step B=4 (fwd+bwd+AdamW)",
            self.dgcnn_train_step_ms,
            None,
        )?;
        let mm = format!(
            "candle matmul [{0},{1}]x[{1},{1}]",
            BENCH_POINTS, self.matmul_k
        );
        row(f, &mm, self.matmul_ms, Some(self.matmul_gflops()))?;
        let gm = format!("raw gemm [{0},{1}]x[{1},{1}]", BENCH_POINTS, self.matmul_k);
        row(f, &gm, self.gemm_ms, Some(self.gemm_gflops()))?;
        writeln!(
            f,
            "fused forward = {:.0}% of the same-FLOP matmul roofline; gemm kernel: {}",
            100.0 * self.roofline_share(),
            gemm_kernel()
        )
    }
}

/// The f32 gemm micro-kernel family the `gemm` crate dispatches to on this CPU (it checks
/// at run time; AVX-512 kernels exist because this crate enables gemm's `x86-v4` feature).
pub fn gemm_kernel() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512f (16-wide f32, 4x6 vector tiles)";
        }
        if std::arch::is_x86_feature_detected!("fma") {
            return "fma/avx2 (8-wide f32)";
        }
        "scalar"
    }
    #[cfg(target_arch = "aarch64")]
    {
        "neon"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "scalar"
    }
}

fn random_points(b: usize, n: usize, seed: u64, dev: &Device) -> Result<Tensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..b * n * 3)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    Tensor::from_vec(v, (b, n, 3), dev)
}

/// Stand-in training loss (the real geodesic loss lives elsewhere): squared embedding
/// norms at `idx` pulled towards 1. Touches every layer, like the real loss.
pub fn stand_in_loss(emb: &Tensor, idx: &Tensor) -> Result<Tensor> {
    let sel = emb.index_select(idx, 1)?; // [B, P, D]
    (sel.sqr()?.sum(2)? - 1.0)?.sqr()?.mean_all()
}

/// Times PointNet (default config) on the CPU; see [`ModelBenchReport`].
///
/// Panics only if candle fails on these fixed, valid shapes (a bug or out of memory);
/// [`try_model_bench`] returns the error instead.
pub fn model_bench(repeats: usize) -> ModelBenchReport {
    try_model_bench(repeats).expect("model bench failed")
}

/// [`model_bench`], returning candle errors.
pub fn try_model_bench(repeats: usize) -> Result<ModelBenchReport> {
    let dev = Device::Cpu;
    let cfg = PointNetConfig::default();
    let varmap = VarMap::new();
    let net = PointNet::new(
        cfg.clone(),
        VarBuilder::from_varmap(&varmap, DType::F32, &dev),
    )?;

    // Give batch norm non-trivial running statistics before timing eval mode.
    let warm = random_points(BENCH_TRAIN_BATCH, BENCH_POINTS, 1, &dev)?;
    net.forward_t(&warm, true)?;
    let fused = net.fused()?;

    let x1 = random_points(1, BENCH_POINTS, 2, &dev)?;
    let unfused_forward_ms = warm_median_ms(repeats, || net.forward_t(&x1, false).map(drop))?;
    let fused_forward_ms = warm_median_ms(repeats, || fused.forward(&x1).map(drop))?;

    let xb = random_points(BENCH_TRAIN_BATCH, BENCH_POINTS, 3, &dev)?;
    let idx: Vec<u32> = (0..64).map(|i| (i * 31 % BENCH_POINTS) as u32).collect();
    let idx = Tensor::new(idx.as_slice(), &dev)?;
    let mut opt = AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            lr: 1e-3,
            ..Default::default()
        },
    )?;
    let train_step_ms = warm_median_ms(repeats, || {
        let emb = net.forward_t(&xb, true)?;
        let loss = stand_in_loss(&emb, &idx)?;
        opt.backward_step(&loss)
    })?;

    let dg_map = VarMap::new();
    let dg = Dgcnn::new(
        DgcnnConfig::default(),
        VarBuilder::from_varmap(&dg_map, DType::F32, &dev),
    )?;
    let mut dg_opt = AdamW::new(
        dg_map.all_vars(),
        ParamsAdamW {
            lr: 1e-3,
            ..Default::default()
        },
    )?;
    let dgcnn_train_step_ms = warm_median_ms(repeats.div_ceil(2), || {
        let emb = dg.forward_t(&xb, true)?;
        let loss = stand_in_loss(&emb, &idx)?;
        dg_opt.backward_step(&loss)
    })?;

    let fused_flops = 2.0 * (cfg.macs_per_point() * BENCH_POINTS) as f64;
    let matmul_k = ((cfg.macs_per_point() as f64).sqrt() / 16.0).round() as usize * 16;
    let a = Tensor::randn(0f32, 1.0, (BENCH_POINTS, matmul_k), &dev)?;
    let b = Tensor::randn(0f32, 1.0, (matmul_k, matmul_k), &dev)?;
    let matmul_ms = warm_median_ms(repeats, || a.matmul(&b).map(drop))?;
    let (av, bv) = (
        a.flatten_all()?.to_vec1::<f32>()?,
        b.flatten_all()?.to_vec1::<f32>()?,
    );
    let mut cv = vec![0f32; BENCH_POINTS * matmul_k];
    let threads = candle_core::utils::get_num_threads();
    let dims = (BENCH_POINTS, matmul_k, matmul_k);
    let gemm_ms = warm_median_ms(repeats, || {
        crate::model::cpu::matmul_par(&mut cv, &av, &bv, dims, threads);
        Ok::<(), candle_core::Error>(())
    })?;

    Ok(ModelBenchReport {
        repeats: repeats.max(1),
        threads,
        unfused_forward_ms,
        fused_forward_ms,
        train_step_ms,
        dgcnn_train_step_ms,
        matmul_ms,
        gemm_ms,
        matmul_k,
        fused_flops,
    })
}
