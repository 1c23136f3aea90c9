//! The support plane (a table, the floor) by RANSAC, as PCL's `SACSegmentation` with a
//! plane model does: planes through three random points, scored by the points within a
//! distance threshold, the best refined by a least-squares fit of its inliers.
//!
//! Hypotheses are scored on a fixed random subset of the cloud, not on every point: a
//! 640 x 480 scan has 270k finite points, and 200 hypotheses over all of them cost ~50 ms,
//! over 4096 of them under 1 ms; the winner is then re-scored and refined on every point.
//! With an up hint (the configured `up_axis`) only planes whose normal lies within
//! `max_tilt_deg` of it are considered, so a wall never wins over a table.

use crate::cloud::normals::pca_normal;
use crate::cloud::Cloud;
use nalgebra::Vector3;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// RANSAC settings; a run is deterministic for a seed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PlaneParams {
    /// A point within this distance (input units) of the plane is an inlier.
    pub distance_threshold: f32,
    pub iterations: usize,
    /// Hypotheses are scored on this many random points.
    pub score_sample: usize,
    /// With an up hint: the largest angle between the plane's normal and it.
    pub max_tilt_deg: f32,
    /// With an up hint: the normal turned toward the sensor must lean toward the hint
    /// (a plane below the sensor); otherwise either side of the plane may face it.
    #[serde(default)]
    pub one_sided: bool,
    /// A plane needs at least this fraction of the points to count as found.
    pub min_inlier_fraction: f32,
    /// ... and its inliers must span at least this (bounding-box diagonal, input units):
    /// a support plane is larger than an object, and without a table in view the best
    /// "plane" is a slice through the object.
    pub min_extent: f32,
    pub seed: u64,
}

impl Default for PlaneParams {
    fn default() -> Self {
        PlaneParams {
            distance_threshold: 0.01,
            iterations: 200,
            score_sample: 4096,
            max_tilt_deg: 30.0,
            one_sided: false,
            min_inlier_fraction: 0.05,
            min_extent: 0.3,
            seed: 0,
        }
    }
}

/// A plane `normal . p + offset = 0` with its inliers.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane {
    /// Unit normal, turned toward the sensor (the frame's origin is on its positive side):
    /// for a table seen from above, this is "up".
    pub normal: Vector3<f32>,
    pub offset: f32,
    /// Indices (into the cloud given) of the points within the distance threshold.
    pub inliers: Vec<usize>,
}

impl Plane {
    /// Signed distance of `p` from the plane, positive on the sensor's side.
    pub fn signed_distance(&self, p: &[f32; 3]) -> f32 {
        self.normal.dot(&Vector3::from(*p)) + self.offset
    }

    fn through(a: &[f32; 3], b: &[f32; 3], c: &[f32; 3]) -> Option<Plane> {
        let (a, b, c) = (Vector3::from(*a), Vector3::from(*b), Vector3::from(*c));
        let n = (b - a).cross(&(c - a));
        let norm = n.norm();
        if norm.is_nan() || norm <= 1e-12 {
            return None;
        }
        Some(Plane::oriented(n / norm, &a))
    }

    /// The plane with normal `n` through `p`, turned toward the origin.
    fn oriented(n: Vector3<f32>, p: &Vector3<f32>) -> Plane {
        let offset = -n.dot(p);
        let (normal, offset) = if offset < 0.0 {
            (-n, -offset)
        } else {
            (n, offset)
        };
        Plane {
            normal,
            offset,
            inliers: Vec::new(),
        }
    }
}

/// The dominant plane of `cloud` (finite points), or `None` when no plane holds
/// `min_inlier_fraction` of the points (or the cloud has fewer than three). `up` restricts
/// the search to planes facing it, within `max_tilt_deg`.
pub fn fit_plane(cloud: &Cloud, params: &PlaneParams, up: Option<Vector3<f32>>) -> Option<Plane> {
    let n = cloud.len();
    if n < 3 || params.iterations == 0 {
        return None;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(params.seed);
    let sample: Vec<[f32; 3]> = if n <= params.score_sample {
        cloud.points.clone()
    } else {
        (0..params.score_sample)
            .map(|_| cloud.points[rng.random_range(0..n)])
            .collect()
    };
    let cos_tilt = params.max_tilt_deg.to_radians().cos();
    let up = up.map(|u| u.normalize());
    let facing = |p: &Plane| {
        up.is_none_or(|u| {
            let along = p.normal.dot(&u);
            (if params.one_sided { along } else { along.abs() }) >= cos_tilt
        })
    };
    let thr = params.distance_threshold;
    let count = |p: &Plane, pts: &[[f32; 3]]| {
        pts.iter()
            .filter(|q| p.signed_distance(q).abs() <= thr)
            .count()
    };
    let mut best: Option<(usize, Plane)> = None;
    for _ in 0..params.iterations {
        let pick = |rng: &mut rand_chacha::ChaCha8Rng| sample[rng.random_range(0..sample.len())];
        let (a, b, c) = (pick(&mut rng), pick(&mut rng), pick(&mut rng));
        let Some(p) = Plane::through(&a, &b, &c) else {
            continue;
        };
        if !facing(&p) {
            continue;
        }
        let score = count(&p, &sample);
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, p));
        }
    }
    let (_, mut plane) = best?;
    // Refine twice: least squares on the inliers, then the inliers of the refined plane.
    for _ in 0..2 {
        let inliers = inlier_indices(cloud, &plane, thr);
        if inliers.len() < 3 {
            return None;
        }
        let pts = inliers.iter().map(|&i| cloud.points[i]);
        let mean = pts.clone().map(Vector3::from).sum::<Vector3<f32>>() / inliers.len() as f32;
        let normal = Vector3::from(pca_normal::<f64>(pts, None));
        let refined = Plane::oriented(normal, &mean);
        plane = if facing(&refined) { refined } else { plane };
    }
    plane.inliers = inlier_indices(cloud, &plane, thr);
    let enough = plane.inliers.len() as f32 >= params.min_inlier_fraction * n as f32;
    let points: Vec<[f32; 3]> = plane.inliers.iter().map(|&i| cloud.points[i]).collect();
    let (lo, hi) = crate::cloud::bounds(&points);
    let wide = crate::cloud::dist2(&lo, &hi) >= params.min_extent * params.min_extent;
    (enough && wide).then_some(plane)
}

fn inlier_indices(cloud: &Cloud, plane: &Plane, thr: f32) -> Vec<usize> {
    (0..cloud.len())
        .filter(|&i| plane.signed_distance(&cloud.points[i]).abs() <= thr)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1 m x 1 m table 0.8 m below a sensor at the origin (z up), a wall behind it and
    /// a box on it.
    fn table_scene(seed: u64) -> Cloud {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut pts = Vec::new();
        for _ in 0..6000 {
            let (x, y) = (
                rng.random_range(0.5..1.5f32),
                rng.random_range(-0.5..0.5f32),
            );
            pts.push([x, y, -0.8 + rng.random_range(-0.002..0.002f32)]);
        }
        for _ in 0..3000 {
            let (y, z) = (
                rng.random_range(-1.0..1.0f32),
                rng.random_range(-0.8..0.4f32),
            );
            pts.push([1.6, y, z]);
        }
        for _ in 0..800 {
            let p = [
                rng.random_range(0.9..1.0f32),
                rng.random_range(-0.05..0.05f32),
                rng.random_range(-0.8..-0.7f32),
            ];
            pts.push(p);
        }
        Cloud::new(pts)
    }

    #[test]
    fn finds_the_table_turned_toward_the_sensor() {
        let cloud = table_scene(1);
        let plane = fit_plane(&cloud, &PlaneParams::default(), None).unwrap();
        assert!(plane.normal.dot(&Vector3::z()) > 0.999, "{}", plane.normal);
        assert!((plane.offset - 0.8).abs() < 0.005, "{}", plane.offset);
        assert!(plane.inliers.len() >= 5900 && plane.inliers.len() < 6500);
        assert_eq!(
            plane,
            fit_plane(&cloud, &PlaneParams::default(), None).unwrap(),
            "deterministic for a seed"
        );
    }

    #[test]
    fn an_up_hint_keeps_walls_out() {
        // Make the wall the largest plane: without a hint it wins.
        let mut cloud = table_scene(2);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..9000 {
            let (y, z) = (
                rng.random_range(-1.0..1.0f32),
                rng.random_range(-0.8..0.4f32),
            );
            cloud.points.push([1.6, y, z]);
        }
        let any = fit_plane(&cloud, &PlaneParams::default(), None).unwrap();
        assert!(
            any.normal.dot(&-Vector3::x()) > 0.99,
            "the wall faces the sensor"
        );
        let up = fit_plane(&cloud, &PlaneParams::default(), Some(Vector3::z())).unwrap();
        assert!(up.normal.dot(&Vector3::z()) > 0.999);
    }

    #[test]
    fn no_plane_in_a_ball() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let ball: Vec<[f32; 3]> = (0..3000)
            .map(|_| {
                let v = Vector3::new(
                    rng.random_range(-1.0..1.0f32),
                    rng.random_range(-1.0..1.0f32),
                    rng.random_range(-1.0..1.0f32),
                );
                (v.normalize() * 0.2 + Vector3::new(1.0, 0.0, 0.0)).into()
            })
            .collect();
        let params = PlaneParams {
            min_inlier_fraction: 0.2,
            ..Default::default()
        };
        assert!(fit_plane(&Cloud::new(ball.clone()), &params, None).is_none());
        // A flat patch smaller than min_extent is a face of an object, not a support.
        let patch: Vec<[f32; 3]> = (0..900)
            .map(|i| [1.0, (i % 30) as f32 * 0.005, (i / 30) as f32 * 0.005])
            .collect();
        assert!(fit_plane(&Cloud::new(patch), &PlaneParams::default(), None).is_none());
        assert!(fit_plane(&Cloud::new(vec![[0.0; 3]; 2]), &params, None).is_none());
    }
}
