//! Baseline embedders: the floor (random), the trivial geometric one (normalised xyz) and a
//! local descriptor (FPFH, standing in for the paper's SHOT row).

use super::FpfhEmbedder;
use crate::cloud::{Cloud, Normalization, NormalizationMode};
use crate::embedding::{Embedder, Embeddings};
use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// The baselines every network is compared with (`semcorr eval --embedder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Baseline {
    /// I.i.d. Gaussian embeddings: the floor.
    Random,
    /// Normalised coordinates.
    Xyz,
    /// Fast point feature histograms (a local descriptor).
    Fpfh,
}

impl Baseline {
    pub const ALL: [Baseline; 3] = [Baseline::Random, Baseline::Xyz, Baseline::Fpfh];

    /// The embedder; `seed` only affects `Random`.
    pub fn embedder(self, seed: u64) -> Box<dyn Embedder> {
        match self {
            Baseline::Random => Box::new(RandomEmbedder::new(seed)),
            Baseline::Xyz => Box::new(XyzEmbedder),
            Baseline::Fpfh => Box::new(FpfhEmbedder::default()),
        }
    }
}

/// I.i.d. standard Gaussian embeddings: the paper's "random" row. Deterministic per cloud
/// (the RNG is seeded from `seed` and a hash of the point coordinates), so re-running an
/// evaluation reproduces it exactly and two different clouds get unrelated embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomEmbedder {
    pub seed: u64,
    pub dim: usize,
}

impl RandomEmbedder {
    /// 128 dimensions, as the paper's networks output.
    pub fn new(seed: u64) -> Self {
        RandomEmbedder { seed, dim: 128 }
    }
}

impl Embedder for RandomEmbedder {
    fn name(&self) -> String {
        format!("random(seed={}, dim={})", self.seed, self.dim)
    }

    fn embed(&self, cloud: &Cloud) -> Result<Embeddings> {
        if self.dim == 0 {
            return Err(Error::invalid("random embedder: dim must be at least 1"));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(mix(self.seed ^ mix(hash_points(cloud))));
        let data = (0..cloud.len() * self.dim)
            .map(|_| rng.sample::<f32, _>(StandardNormal))
            .collect();
        Embeddings::new(cloud.len(), self.dim, data)
    }
}

/// FNV-1a over the coordinates' bit patterns: stable across platforms and Rust versions,
/// unlike `std`'s `DefaultHasher`.
fn hash_points(cloud: &Cloud) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in &cloud.points {
        for c in p {
            for b in c.to_bits().to_le_bytes() {
                h ^= b as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    h
}

/// SplitMix64's finaliser: spreads nearby seeds over the whole seed space.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Each point's coordinates after bounding-box-diagonal normalisation (3-d): what matching
/// by position alone achieves on aligned shapes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XyzEmbedder;

impl Embedder for XyzEmbedder {
    fn name(&self) -> String {
        "xyz".to_string()
    }

    fn embed(&self, cloud: &Cloud) -> Result<Embeddings> {
        let n = Normalization::fit(cloud, NormalizationMode::BboxDiagonal);
        let data = cloud
            .points
            .iter()
            .flat_map(|&p| n.apply_point(p))
            .collect();
        Embeddings::new(cloud.len(), 3, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize, scale: f32) -> Cloud {
        Cloud::new(
            (0..n)
                .map(|i| [i as f32 * scale, 0.5 * i as f32, 1.0])
                .collect(),
        )
    }

    #[test]
    fn random_embedder_is_deterministic_per_cloud_and_seed() {
        let e = RandomEmbedder::new(7);
        let a = line(50, 1.0);
        let b = line(50, 1.5);
        let ea = e.embed(&a).unwrap();
        assert_eq!((ea.num_points, ea.dim), (50, 128));
        assert_eq!(ea, e.embed(&a).unwrap());
        assert_ne!(ea, e.embed(&b).unwrap());
        assert_ne!(ea, RandomEmbedder::new(8).embed(&a).unwrap());
        // Roughly standard normal.
        let mean = ea.data.iter().sum::<f32>() / ea.data.len() as f32;
        let var = ea.data.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / ea.data.len() as f32;
        assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.1, "{mean} {var}");
    }

    #[test]
    fn xyz_embedder_normalises_to_unit_diagonal() {
        let e = XyzEmbedder.embed(&line(11, 2.0)).unwrap();
        assert_eq!((e.num_points, e.dim), (11, 3));
        let first = e.row(0);
        let last = e.row(10);
        let diag: f32 = (0..3)
            .map(|k| (last[k] - first[k]).powi(2))
            .sum::<f32>()
            .sqrt();
        assert!((diag - 1.0).abs() < 1e-6);
        assert!(first.iter().zip(last).all(|(a, b)| (a + b).abs() < 1e-6));
    }

    #[test]
    fn every_baseline_embeds() {
        for b in Baseline::ALL {
            let e = b.embedder(1);
            let out = e.embed(&line(40, 1.0)).unwrap();
            out.validate(40, &e.name()).unwrap();
        }
    }
}

/// Baselines on the synthetic dataset. Ignored by default (it generates every category and
/// sweeps FPFH's parameters, a few minutes in release); run with
/// `cargo test --release --lib eval::baselines::synthetic -- --ignored --nocapture`.
#[cfg(test)]
mod synthetic {
    use super::*;
    use crate::dataset::synth::{category_names, generate_models, SynthOptions};
    use crate::dataset::AnnotatedModel;
    use crate::eval::{evaluate_models, EvalReport};

    fn categories(models: usize) -> Vec<(String, Vec<AnnotatedModel>)> {
        let opts = SynthOptions {
            models_per_category: models,
            seed: 3,
            ..Default::default()
        };
        category_names()
            .iter()
            .map(|&name| {
                let ms = generate_models(name, &opts)
                    .unwrap()
                    .into_iter()
                    .map(|m| AnnotatedModel {
                        annotation: m.annotation,
                        cloud: m.cloud,
                    })
                    .collect();
                (name.to_string(), ms)
            })
            .collect()
    }

    fn run(cats: &[(String, Vec<AnnotatedModel>)], e: &dyn Embedder) -> EvalReport {
        let t = std::time::Instant::now();
        let reports = cats
            .iter()
            .map(|(name, ms)| {
                let class_id = ms[0].annotation.class_id.clone();
                evaluate_models(&class_id, name, ms, e).unwrap()
            })
            .collect();
        let r = EvalReport::from_categories(reports).unwrap();
        eprintln!(
            "{:<40} mean mGE {:.4}  ({:?})",
            e.name(),
            r.mean_mge,
            t.elapsed()
        );
        r
    }

    #[test]
    #[ignore]
    fn baselines_and_fpfh_sweep() {
        let cats = categories(15);
        let random = run(&cats, &RandomEmbedder::new(0));
        let xyz = run(&cats, &XyzEmbedder);
        let fpfh = run(&cats, &FpfhEmbedder::default());
        eprintln!("random:\n{random}\nxyz:\n{xyz}\nfpfh:\n{fpfh}");
        for radius in [0.05, 0.1, 0.15, 0.2, 0.25, 0.3] {
            for normal_k in [16, 30] {
                let e = FpfhEmbedder {
                    radius,
                    normal_k,
                    ..Default::default()
                };
                run(&cats, &e);
            }
        }
        assert!(random.mean_mge > fpfh.mean_mge, "random vs fpfh");
        assert!(random.mean_mge > xyz.mean_mge, "random vs xyz");
    }
}
