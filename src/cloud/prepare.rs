//! The one preprocessing path shared by training, evaluation, `infer` and the node:
//! normalise the cloud as in training, sample a fixed number of points, and remember how
//! to map results back to the input points and frame.

use super::kdtree::{build_kdtree, nearest};
use super::{farthest_point_sample, random_sample, Cloud, Normalization, NormalizationMode};
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// How the fixed-size sample is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SamplingMode {
    /// Farthest-point sampling from the first point: deterministic, even coverage.
    #[default]
    FarthestPoint,
    /// Uniform random sampling (seeded by the caller); cheaper on very large clouds.
    Random,
}

/// Preprocessing parameters; stored in every model file so deployment matches training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrepareConfig {
    pub num_points: usize,
    pub normalization: NormalizationMode,
    pub sampling: SamplingMode,
    /// Also turn each cloud about up to its own canonical yaw
    /// (`Normalization::with_canonical_yaw`): for networks that learn from few models in
    /// unaligned orientations (README, "Learning from a handful of models"). Every path
    /// that embeds goes through here, so such a model embeds the same everywhere; but its
    /// templates' canonical positions (pose fitting, yaw search) lie in each training
    /// model's own frame, so the node's zoo keeps it off.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub canonical_yaw: bool,
}

impl Default for PrepareConfig {
    fn default() -> Self {
        PrepareConfig {
            num_points: 2048,
            normalization: NormalizationMode::BboxDiagonal,
            sampling: SamplingMode::FarthestPoint,
            canonical_yaw: false,
        }
    }
}

/// A cloud ready for a network: `num_points` normalised points and the way back.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Normalised sampled points, `num_points` of them.
    pub points: Vec<[f32; 3]>,
    /// For each sampled point, its index in the input cloud.
    pub source_index: Vec<usize>,
    /// Input frame -> normalised frame.
    pub transform: Normalization,
}

/// Clouds larger than this many times `num_points` are thinned uniformly before
/// farthest-point sampling. Training clouds (2048 points) never are.
pub const FPS_PRESAMPLE: usize = 4;

/// Normalises (fitted on the whole input) and samples. `seed` only matters for random
/// sampling. Fails on an empty cloud or non-finite points, naming `what`.
pub fn prepare(cloud: &Cloud, cfg: &PrepareConfig, seed: u64, what: &str) -> Result<Prepared> {
    use rand::SeedableRng;
    cloud.validate(what)?;
    let mut transform = Normalization::fit(cloud, cfg.normalization);
    if cfg.canonical_yaw {
        transform = transform.with_canonical_yaw(cloud);
    }
    let source_index = if cloud.len() == cfg.num_points {
        (0..cloud.len()).collect()
    } else {
        match cfg.sampling {
            SamplingMode::FarthestPoint if cloud.len() > FPS_PRESAMPLE * cfg.num_points => {
                // A dense sensor cloud (100k points): FPS costs len x num_points, so it
                // runs on a seeded uniform subset of FPS_PRESAMPLE x num_points points
                // (coverage stays even; 100k -> 2048 drops from ~230 ms to ~15 ms here).
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                let subset = random_sample(cloud, FPS_PRESAMPLE * cfg.num_points, &mut rng);
                farthest_point_sample(&cloud.select(&subset), cfg.num_points, 0)
                    .into_iter()
                    .map(|i| subset[i])
                    .collect()
            }
            SamplingMode::FarthestPoint => farthest_point_sample(cloud, cfg.num_points, 0),
            SamplingMode::Random => random_sample(
                cloud,
                cfg.num_points,
                &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            ),
        }
    };
    let points = source_index
        .iter()
        .map(|&i| transform.apply_point(cloud.points[i]))
        .collect();
    Ok(Prepared {
        points,
        source_index,
        transform,
    })
}

impl Prepared {
    /// For every input point, the sampled point nearest to it (itself when it was
    /// sampled): how per-sample results such as embeddings extend to the whole input.
    pub fn nearest_sample_of_each(&self, cloud: &Cloud) -> Vec<usize> {
        if self.source_index.len() == cloud.len()
            && self.source_index.iter().enumerate().all(|(i, &s)| i == s)
        {
            return (0..cloud.len()).collect();
        }
        let tree = build_kdtree(&self.points);
        cloud
            .points
            .iter()
            .map(|&p| {
                let q = self.transform.apply_point(p);
                nearest(&tree, &q).item as usize
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(n: usize) -> Cloud {
        Cloud::new(
            (0..n * n)
                .map(|i| [(i % n) as f32, (i / n) as f32 * 2.0, 5.0])
                .collect(),
        )
    }

    #[test]
    fn prepare_samples_normalises_and_maps_back() {
        let cloud = grid(40);
        let cfg = PrepareConfig {
            num_points: 256,
            ..Default::default()
        };
        let p = prepare(&cloud, &cfg, 0, "grid").unwrap();
        assert_eq!(p.points.len(), 256);
        for (q, &src) in p.points.iter().zip(&p.source_index) {
            let back = p.transform.invert_point(*q);
            assert!(super::super::dist2(&back, &cloud.points[src]) < 1e-8);
        }
        let nearest = p.nearest_sample_of_each(&cloud);
        assert_eq!(nearest.len(), cloud.len());
        for (s, &src) in p.source_index.iter().enumerate() {
            assert_eq!(nearest[src], s, "a sampled point maps to itself");
        }
    }

    #[test]
    fn dense_clouds_are_thinned_before_fps_deterministically() {
        let cloud = grid(100); // 10,000 points
        let cfg = PrepareConfig {
            num_points: 256,
            ..PrepareConfig::default()
        };
        assert!(cloud.len() > FPS_PRESAMPLE * cfg.num_points);
        let a = prepare(&cloud, &cfg, 1, "grid").unwrap();
        assert_eq!(a, prepare(&cloud, &cfg, 1, "grid").unwrap());
        let mut distinct = a.source_index.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 256);
        // Still farthest-point coverage: no two samples closer than half the even spacing.
        let spacing = (1.0 / 256f32).sqrt();
        let min_gap = (0..256)
            .flat_map(|i| (0..i).map(move |j| (i, j)))
            .map(|(i, j)| crate::cloud::dist2(&a.points[i], &a.points[j]).sqrt())
            .fold(f32::INFINITY, f32::min);
        assert!(
            min_gap > 0.25 * spacing / 2f32.sqrt(),
            "{min_gap} vs {spacing}"
        );
    }

    #[test]
    fn same_size_keeps_order() {
        let cloud = grid(8);
        let cfg = PrepareConfig {
            num_points: 64,
            ..Default::default()
        };
        let p = prepare(&cloud, &cfg, 0, "grid").unwrap();
        assert_eq!(p.source_index, (0..64).collect::<Vec<_>>());
        assert_eq!(
            p.nearest_sample_of_each(&cloud),
            (0..64).collect::<Vec<_>>()
        );
    }

    #[test]
    fn bad_clouds_are_named() {
        let cfg = PrepareConfig::default();
        let e = prepare(&Cloud::default(), &cfg, 0, "scan.pcd")
            .unwrap_err()
            .to_string();
        assert!(e.contains("scan.pcd") && e.contains("no points"), "{e}");
        let nan = Cloud::new(vec![[0.0, f32::NAN, 0.0]]);
        let e = prepare(&nan, &cfg, 0, "scan.pcd").unwrap_err().to_string();
        assert!(e.contains("non-finite"), "{e}");
    }
}
