//! Building one training example from an annotated model: optional partial view, the
//! shared preprocessing, then rotation about the up axis and clipped jitter.

use super::config::{AugmentConfig, TrainConfig};
use super::loss::BatchKeypoint;
use crate::cloud::rotation::{rotate_cloud, RotationMode};
use crate::cloud::visibility::{visible_points, VisibilityParams};
use crate::cloud::{dist2, prepare, Cloud};
use crate::dataset::AnnotatedModel;
use crate::error::Result;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// Points fed to the network and the keypoints among them.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainingItem {
    pub points: Vec<[f32; 3]>,
    pub keypoints: Vec<BatchKeypoint>,
}

/// A partial view smaller than this is discarded in favour of the full cloud.
const MIN_VISIBLE_POINTS: usize = 128;

/// The example for `model`; `augment = false` gives exactly what evaluation sees.
pub fn training_item(
    model: &AnnotatedModel,
    cfg: &TrainConfig,
    augment: bool,
    rng: &mut ChaCha8Rng,
) -> Result<TrainingItem> {
    let what = model.annotation.key().to_string();
    let mut cloud = model.cloud.clone();
    // (original point index, semantic id) of the keypoints still present.
    let mut keypoints: Vec<(usize, u32)> = model
        .annotation
        .keypoints
        .iter()
        .map(|k| (k.point_index, k.semantic_id))
        .collect();
    if augment
        && cfg.augment.partial_view_prob > 0.0
        && rng.random::<f32>() < cfg.augment.partial_view_prob
    {
        let visible = visible_points(
            &cloud.points,
            random_viewpoint(rng),
            &VisibilityParams::default(),
        );
        if visible.len() >= MIN_VISIBLE_POINTS {
            keep_only(&mut cloud, &mut keypoints, &visible);
        }
    }
    // Drawn only when enabled, so runs without it keep their random streams.
    if augment && cfg.augment.cut_prob > 0.0 && rng.random::<f32>() < cfg.augment.cut_prob {
        let kept = border_cut(&cloud, rng);
        if kept.len() >= MIN_VISIBLE_POINTS {
            keep_only(&mut cloud, &mut keypoints, &kept);
        }
    }
    // Drawn only when enabled (random streams of other runs unchanged).
    if augment && cfg.augment.floor_cut > 0.0 {
        let kept = above_floor(&cloud, rng.random_range(0.0..cfg.augment.floor_cut));
        if kept.len() >= MIN_VISIBLE_POINTS {
            keep_only(&mut cloud, &mut keypoints, &kept);
        }
    }
    // Turned before normalisation, as a posed test cloud is (`eval --rotate`); no draw
    // when off, so runs without it keep their random streams.
    if augment && cfg.augment.rotation != RotationMode::None {
        let r = cfg.augment.rotation.sample(rng);
        rotate_cloud(&mut cloud, &r);
    }
    // Drawn only when enabled (random streams of other runs unchanged).
    if augment && cfg.augment.lean_deg > 0.0 {
        let lean = RotationMode::Tilt {
            max_deg: cfg.augment.lean_deg,
        }
        .sample_without_yaw(rng);
        rotate_cloud(&mut cloud, &lean);
    }
    let prepared = prepare(&cloud, &cfg.prepare, rng.random(), &what)?;
    // A keypoint whose point was not sampled moves to the nearest sampled point.
    let keypoints = keypoints
        .into_iter()
        .map(|(i, semantic_id)| {
            let target = prepared.transform.apply_point(cloud.points[i]);
            let point = (0..prepared.points.len())
                .min_by(|&a, &b| {
                    dist2(&prepared.points[a], &target)
                        .total_cmp(&dist2(&prepared.points[b], &target))
                })
                .unwrap_or(0);
            BatchKeypoint { point, semantic_id }
        })
        .collect();
    let keypoints = if augment && cfg.augment.soft_positives > 0 {
        with_soft_positives(
            keypoints,
            &prepared.points,
            cfg.augment.soft_positives,
            cfg.augment.soft_radius,
        )
    } else {
        keypoints
    };
    let mut points = prepared.points;
    if augment {
        perturb(&mut points, &cfg.augment, rng);
    }
    Ok(TrainingItem { points, keypoints })
}

/// Denser supervision: each keypoint's `count` nearest other points within `radius`
/// (normalised units) join its correspondence set, so the loss also pulls the patch around
/// a labelled point together and toward the other models' patches.
fn with_soft_positives(
    keypoints: Vec<BatchKeypoint>,
    points: &[[f32; 3]],
    count: usize,
    radius: f32,
) -> Vec<BatchKeypoint> {
    let mut out = keypoints.clone();
    for k in &keypoints {
        let at = points[k.point];
        let mut near: Vec<(f32, usize)> = points
            .iter()
            .enumerate()
            .filter(|&(i, p)| i != k.point && dist2(p, &at) <= radius * radius)
            .map(|(i, p)| (dist2(p, &at), i))
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0));
        out.extend(
            near.into_iter()
                .take(count)
                .map(|(_, point)| BatchKeypoint {
                    point,
                    semantic_id: k.semantic_id,
                }),
        );
    }
    out
}

/// Keeps the points `kept` (ascending indices) of `cloud` and the keypoints on them.
fn keep_only(cloud: &mut Cloud, keypoints: &mut Vec<(usize, u32)>, kept: &[usize]) {
    let mut new_index = vec![usize::MAX; cloud.len()];
    for (new, &old) in kept.iter().enumerate() {
        new_index[old] = new;
    }
    keypoints.retain(|&(i, _)| new_index[i] != usize::MAX);
    for k in keypoints.iter_mut() {
        k.0 = new_index[k.0];
    }
    *cloud = cloud.select(kept);
}

/// The points on one side of a random vertical plane (parallel to up, y), placed to keep
/// 40-90% of them: what an image border leaves of an object at the edge of the view.
pub(crate) fn border_cut(cloud: &Cloud, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let (s, c) = rng.random_range(0.0..std::f32::consts::TAU).sin_cos();
    let along: Vec<f32> = cloud.points.iter().map(|p| c * p[0] + s * p[2]).collect();
    let mut sorted = along.clone();
    sorted.sort_by(f32::total_cmp);
    let keep = rng.random_range(0.4f32..0.9);
    let at = ((1.0 - keep) * sorted.len() as f32) as usize;
    let Some(&threshold) = sorted.get(at.min(sorted.len().saturating_sub(1))) else {
        return Vec::new();
    };
    (0..cloud.len())
        .filter(|&i| along[i] >= threshold)
        .collect()
}

/// A camera 2-3 diagonals away, above the object's equator more often than not (y up).
fn random_viewpoint(rng: &mut ChaCha8Rng) -> [f32; 3] {
    let azimuth = rng.random_range(0.0..std::f32::consts::TAU);
    let elevation = rng.random_range(-0.2f32..1.2);
    let distance = rng.random_range(2.0f32..3.0);
    [
        distance * elevation.cos() * azimuth.cos(),
        distance * elevation.sin(),
        distance * elevation.cos() * azimuth.sin(),
    ]
}

fn perturb(points: &mut [[f32; 3]], cfg: &AugmentConfig, rng: &mut ChaCha8Rng) {
    if cfg.rotate_up {
        let (s, c) = rng.random_range(0.0..std::f32::consts::TAU).sin_cos();
        for p in points.iter_mut() {
            *p = [c * p[0] + s * p[2], p[1], -s * p[0] + c * p[2]];
        }
    }
    if cfg.jitter_sigma > 0.0 {
        if let Ok(noise) = Normal::new(0.0f32, cfg.jitter_sigma) {
            for p in points.iter_mut() {
                for c in p.iter_mut() {
                    *c += noise.sample(rng).clamp(-cfg.jitter_clip, cfg.jitter_clip);
                }
            }
        }
    }
}

/// Indices of the points of `cloud` (y up) above the lowest `fraction` of its height: what
/// is left when the node drops a support plane's inliers.
pub(crate) fn above_floor(cloud: &Cloud, fraction: f32) -> Vec<usize> {
    let (lo, hi) = cloud.bounds();
    let floor = lo[1] + fraction * (hi[1] - lo[1]);
    (0..cloud.len())
        .filter(|&i| cloud.points[i][1] >= floor)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::PrepareConfig;
    use crate::dataset::synth::{generate_models, SynthOptions};
    use nalgebra::Vector3;
    use rand::SeedableRng;

    fn model() -> AnnotatedModel {
        let opts = SynthOptions {
            models_per_category: 1,
            ..Default::default()
        };
        let m = generate_models("mug", &opts).unwrap().remove(0);
        AnnotatedModel {
            annotation: m.annotation,
            cloud: m.cloud,
        }
    }

    /// Each keypoint of the item lies where the annotated point went (same normalisation
    /// undone), within the sampling gap.
    fn assert_keypoints_follow(item: &TrainingItem, m: &AnnotatedModel, tol: f32) {
        assert!(!item.keypoints.is_empty());
        for kp in &item.keypoints {
            let original = m.annotation.keypoint(kp.semantic_id).unwrap().xyz;
            let nearest_to_original = item
                .points
                .iter()
                .map(|p| dist2(p, &original))
                .fold(f32::INFINITY, f32::min);
            // The cloud is already normalised, so normalising again is (nearly) the identity.
            let d = dist2(&item.points[kp.point], &original);
            assert!(
                d.sqrt() <= nearest_to_original.sqrt() + tol,
                "semantic {} moved",
                kp.semantic_id
            );
        }
    }

    #[test]
    fn plain_item_keeps_every_keypoint_in_place() {
        let m = model();
        let cfg = TrainConfig {
            prepare: PrepareConfig {
                num_points: 512,
                ..Default::default()
            },
            ..Default::default()
        };
        let item = training_item(&m, &cfg, false, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert_eq!(item.points.len(), 512);
        assert_eq!(item.keypoints.len(), m.annotation.keypoints.len());
        assert_keypoints_follow(&item, &m, 1e-4);
    }

    #[test]
    fn border_cuts_keep_one_side_and_the_keypoints_there() {
        let m = model();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..10 {
            let kept = border_cut(&m.cloud, &mut rng);
            let share = kept.len() as f32 / m.cloud.len() as f32;
            assert!((0.39..=0.91).contains(&share), "{share}");
        }
        let cfg = TrainConfig {
            augment: AugmentConfig {
                cut_prob: 1.0,
                ..Default::default()
            },
            prepare: PrepareConfig {
                num_points: 512,
                ..Default::default()
            },
            ..Default::default()
        };
        let item = training_item(&m, &cfg, true, &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
        assert!(
            item.keypoints.len() < m.annotation.keypoints.len(),
            "some cut away"
        );
        assert!(!item.keypoints.is_empty());
    }

    #[test]
    fn floor_cuts_drop_the_bottom_and_its_keypoints() {
        let m = model();
        let cfg = TrainConfig {
            augment: AugmentConfig {
                floor_cut: 0.5,
                jitter_sigma: 0.0,
                ..Default::default()
            },
            prepare: PrepareConfig {
                num_points: 256,
                ..Default::default()
            },
            ..Default::default()
        };
        let lowest =
            |item: &TrainingItem| item.keypoints.iter().filter(|k| k.semantic_id == 7).count();
        // The mug's "bottom center" (id 7) goes with the floor in most draws.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let gone = (0..12)
            .filter(|_| lowest(&training_item(&m, &cfg, true, &mut rng).unwrap()) == 0)
            .count();
        assert!(gone >= 6, "bottom kept in {} of 12", 12 - gone);
        let mut bad = cfg.clone();
        bad.data = "d".into();
        bad.category = "mug".into();
        bad.augment.floor_cut = 0.95;
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("floor_cut"));
    }

    #[test]
    fn leaning_tilts_the_mug_axis_by_at_most_the_bound() {
        let m = model();
        let axis_from_up = |cfg: &TrainConfig, rng: &mut ChaCha8Rng| -> f32 {
            let item = training_item(&m, cfg, true, rng).unwrap();
            let at = |id: u32| {
                let k = item.keypoints.iter().find(|k| k.semantic_id == id).unwrap();
                Vector3::from(item.points[k.point])
            };
            // Rim front and back (ids 0, 1) about the bottom centre (7): the mug's axis.
            let axis = (at(0) + at(1)) / 2.0 - at(7);
            axis.normalize().y.clamp(-1.0, 1.0).acos().to_degrees()
        };
        let mut cfg = TrainConfig {
            augment: AugmentConfig {
                jitter_sigma: 0.0,
                ..Default::default()
            },
            prepare: PrepareConfig {
                num_points: 1024,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let upright: Vec<f32> = (0..10).map(|_| axis_from_up(&cfg, &mut rng)).collect();
        cfg.augment.lean_deg = 20.0;
        let leant: Vec<f32> = (0..10).map(|_| axis_from_up(&cfg, &mut rng)).collect();
        assert!(upright.iter().all(|&a| a < 6.0), "{upright:?}");
        assert!(leant.iter().all(|&a| a < 26.0), "{leant:?}");
        assert!(leant.iter().any(|&a| a > 10.0), "{leant:?}");
        cfg.data = "d".into();
        cfg.category = "mug".into();
        for bad in [-1.0, 91.0, f32::NAN] {
            cfg.augment.lean_deg = bad;
            let e = cfg.validate().unwrap_err().to_string();
            assert!(e.contains("lean_deg"), "{e}");
        }
    }

    #[test]
    fn partial_views_drop_hidden_keypoints_and_keep_the_rest_in_place() {
        let m = model();
        let mut cfg = TrainConfig {
            prepare: PrepareConfig {
                num_points: 512,
                ..Default::default()
            },
            ..Default::default()
        };
        cfg.augment.partial_view_prob = 1.0;
        cfg.augment.jitter_sigma = 0.0;
        let mut fewer = 0;
        for seed in 0..6 {
            let item = training_item(&m, &cfg, true, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
            assert_eq!(item.points.len(), 512);
            fewer += usize::from(item.keypoints.len() < m.annotation.keypoints.len());
            assert_keypoints_follow(&item, &m, 0.02);
        }
        assert!(fewer > 0, "some view hides some keypoint");
    }

    #[test]
    fn rotation_is_about_the_up_axis() {
        let m = model();
        let mut cfg = TrainConfig::default();
        cfg.augment.rotate_up = true;
        cfg.augment.jitter_sigma = 0.0;
        let plain = training_item(&m, &cfg, false, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        let turned = training_item(&m, &cfg, true, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        for (a, b) in plain.points.iter().zip(&turned.points) {
            assert!((a[1] - b[1]).abs() < 1e-5, "height is kept");
            let ra = a[0].hypot(a[2]);
            assert!(
                (ra - b[0].hypot(b[2])).abs() < 1e-4,
                "distance to the axis is kept"
            );
        }
        assert_ne!(plain.points, turned.points);
    }

    #[test]
    fn posed_training_clouds_turn_before_normalisation_and_keep_their_keypoints() {
        let m = model();
        let mut cfg = TrainConfig {
            prepare: PrepareConfig {
                num_points: 512,
                ..Default::default()
            },
            ..Default::default()
        };
        cfg.augment.jitter_sigma = 0.0;
        cfg.augment.rotation = RotationMode::So3;
        let plain = training_item(&m, &cfg, false, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        let turned = training_item(&m, &cfg, true, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        assert_ne!(plain.points, turned.points);
        assert_eq!(turned.keypoints.len(), plain.keypoints.len());
        // Distances between keypoints survive the turn up to the new box's scale, so their
        // ratios do.
        let d = |item: &TrainingItem, a: usize, b: usize| {
            dist2(
                &item.points[item.keypoints[a].point],
                &item.points[item.keypoints[b].point],
            )
            .sqrt()
        };
        let n = plain.keypoints.len();
        let ratio = |item: &TrainingItem| d(item, 0, 1) / d(item, 0, n - 1);
        assert!((ratio(&plain) - ratio(&turned)).abs() < 0.05 * ratio(&plain));
    }

    #[test]
    fn soft_positives_join_the_nearest_points_within_the_radius() {
        let points: Vec<[f32; 3]> = (0..10).map(|i| [i as f32 * 0.01, 0.0, 0.0]).collect();
        let kp = |point, semantic_id| BatchKeypoint { point, semantic_id };
        let out = with_soft_positives(vec![kp(5, 3), kp(0, 1)], &points, 3, 0.015);
        let mut sets: Vec<(usize, u32)> = out.iter().map(|k| (k.point, k.semantic_id)).collect();
        sets.sort();
        // 4 and 6 lie 0.01 away; 3 and 7 are beyond the radius; 0 has one neighbour.
        assert_eq!(sets, [(0, 1), (1, 1), (4, 3), (5, 3), (6, 3)]);
        assert_eq!(
            out[..2],
            [kp(5, 3), kp(0, 1)],
            "the labelled points come first"
        );
    }
}
