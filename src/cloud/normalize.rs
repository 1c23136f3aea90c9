//! Normalisation into the frame networks are trained in, keeping the transform so results
//! map back to the input frame.

use super::Cloud;
use serde::{Deserialize, Serialize};

/// How a cloud is brought to the training frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NormalizationMode {
    /// Centre of the bounding box at the origin, bounding-box diagonal 1 (ShapeNet's
    /// convention, the one KeypointNet's clouds and geodesic units use).
    #[default]
    BboxDiagonal,
    /// Centroid at the origin, farthest point at distance 1.
    UnitSphere,
    /// Leave the points as they are.
    None,
}

/// A similarity transform `normalised = R_y(yaw) (p - center) * scale`: centred, scaled
/// and, with `PrepareConfig::canonical_yaw`, turned about the up axis (y).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub center: [f32; 3],
    pub scale: f32,
    /// Radians about +y (0 unless the yaw is canonicalised).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub yaw: f32,
}

fn is_zero(x: &f32) -> bool {
    *x == 0.0
}

impl Normalization {
    pub const IDENTITY: Normalization = Normalization {
        center: [0.0; 3],
        scale: 1.0,
        yaw: 0.0,
    };

    /// Computes the transform for `cloud` (identity for an empty or degenerate cloud).
    pub fn fit(cloud: &Cloud, mode: NormalizationMode) -> Normalization {
        if cloud.is_empty() {
            return Self::IDENTITY;
        }
        let (center, extent) = match mode {
            NormalizationMode::None => return Self::IDENTITY,
            NormalizationMode::BboxDiagonal => {
                let (lo, hi) = cloud.bounds();
                let c = [0, 1, 2].map(|k| 0.5 * (lo[k] + hi[k]));
                let d = [0, 1, 2].map(|k| hi[k] - lo[k]);
                (c, (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt())
            }
            NormalizationMode::UnitSphere => {
                let n = cloud.len() as f64;
                let mut c = [0f64; 3];
                for p in &cloud.points {
                    for k in 0..3 {
                        c[k] += p[k] as f64 / n;
                    }
                }
                let c = c.map(|v| v as f32);
                let r = cloud
                    .points
                    .iter()
                    .map(|p| super::dist2(p, &c))
                    .fold(0f32, f32::max)
                    .sqrt();
                (c, r)
            }
        };
        let scale = if extent > f32::EPSILON && extent.is_finite() {
            1.0 / extent
        } else {
            1.0
        };
        Normalization {
            center,
            scale,
            yaw: 0.0,
        }
    }

    /// The same transform, also turning `cloud` about y so its horizontal extent's main
    /// axis lies along +x, the side its points spread further to (third moment) on +x.
    /// Without a known front, a cloud at any yaw reaches one frame: how a network trained
    /// on few, unaligned models sees them aligned. A horizontally round cloud gets a yaw
    /// its noise decides, which costs a round object nothing.
    pub fn with_canonical_yaw(mut self, cloud: &Cloud) -> Normalization {
        self.yaw = 0.0;
        let q: Vec<[f64; 2]> = cloud
            .points
            .iter()
            .map(|&p| {
                let n = self.apply_point(p);
                [n[0] as f64, n[2] as f64]
            })
            .collect();
        if q.is_empty() {
            return self;
        }
        let len = q.len() as f64;
        let mean = [0, 1].map(|k| q.iter().map(|p| p[k]).sum::<f64>() / len);
        let (mut xx, mut zz, mut xz) = (0.0, 0.0, 0.0);
        for p in &q {
            let (x, z) = (p[0] - mean[0], p[1] - mean[1]);
            xx += x * x;
            zz += z * z;
            xz += x * z;
        }
        let mut yaw = 0.5 * (2.0 * xz).atan2(xx - zz);
        let (s, c) = yaw.sin_cos();
        let skew: f64 = q
            .iter()
            .map(|p| ((p[0] - mean[0]) * c + (p[1] - mean[1]) * s).powi(3))
            .sum();
        if skew < 0.0 {
            yaw += std::f64::consts::PI;
        }
        self.yaw = yaw as f32;
        self
    }

    pub fn apply_point(&self, p: [f32; 3]) -> [f32; 3] {
        let n = [0, 1, 2].map(|k| (p[k] - self.center[k]) * self.scale);
        if self.yaw == 0.0 {
            return n;
        }
        let (s, c) = self.yaw.sin_cos();
        [n[0] * c + n[2] * s, n[1], -n[0] * s + n[2] * c]
    }

    pub fn invert_point(&self, p: [f32; 3]) -> [f32; 3] {
        let (s, c) = self.yaw.sin_cos();
        let n = [p[0] * c - p[2] * s, p[1], p[0] * s + p[2] * c];
        [0, 1, 2].map(|k| n[k] / self.scale + self.center[k])
    }

    /// The normalised copy of a cloud.
    pub fn apply(&self, cloud: &Cloud) -> Cloud {
        Cloud {
            points: cloud.points.iter().map(|&p| self.apply_point(p)).collect(),
            colors: cloud.colors.clone(),
            organised: None,
        }
    }

    /// Converts a length measured in the normalised frame back to input units.
    pub fn invert_length(&self, d: f32) -> f32 {
        d / self.scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bbox_diagonal_is_one_and_invertible() {
        let c = Cloud::new(vec![[1.0, 2.0, 3.0], [3.0, 4.0, 4.0], [2.0, 2.5, 3.5]]);
        let n = Normalization::fit(&c, NormalizationMode::BboxDiagonal);
        let out = n.apply(&c);
        let (lo, hi) = out.bounds();
        let diag: f32 = (0..3).map(|k| (hi[k] - lo[k]).powi(2)).sum::<f32>().sqrt();
        assert!((diag - 1.0).abs() < 1e-6);
        for k in 0..3 {
            assert!((lo[k] + hi[k]).abs() < 1e-6);
        }
        for (a, b) in c.points.iter().zip(&out.points) {
            let back = n.invert_point(*b);
            for k in 0..3 {
                assert!((back[k] - a[k]).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn unit_sphere_radius_is_one() {
        let c = Cloud::new(vec![[0.0, 0.0, 0.0], [4.0, 0.0, 0.0], [2.0, 1.0, 0.0]]);
        let n = Normalization::fit(&c, NormalizationMode::UnitSphere);
        let r = n
            .apply(&c)
            .points
            .iter()
            .map(|p| (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt())
            .fold(0f32, f32::max);
        assert!((r - 1.0).abs() < 1e-6);
    }

    #[test]
    fn degenerate_cloud_keeps_unit_scale() {
        let c = Cloud::new(vec![[1.0, 1.0, 1.0]; 4]);
        let n = Normalization::fit(&c, NormalizationMode::BboxDiagonal);
        assert_eq!(n.scale, 1.0);
        assert_eq!(n.apply_point([1.0, 1.0, 1.0]), [0.0; 3]);
    }

    #[test]
    fn a_canonical_yaw_is_the_same_whatever_the_input_yaw() {
        // An L on the floor with a post: its long arm along x, the short one along z.
        let mut pts: Vec<[f32; 3]> = (0..60).map(|i| [i as f32 * 0.01, 0.0, 0.0]).collect();
        pts.extend((0..20).map(|i| [0.0, 0.0, i as f32 * 0.01]));
        pts.extend((0..10).map(|i| [0.0, i as f32 * 0.02, 0.0]));
        let canonical = |yaw: f32| {
            let (s, c) = yaw.sin_cos();
            let cloud = Cloud::new(
                pts.iter()
                    .map(|p| [p[0] * c + p[2] * s + 0.3, p[1], -p[0] * s + p[2] * c - 1.0])
                    .collect(),
            );
            let n = Normalization::fit(&cloud, NormalizationMode::UnitSphere)
                .with_canonical_yaw(&cloud);
            let back = n.invert_point(n.apply_point(cloud.points[7]));
            assert!((0..3).all(|k| (back[k] - cloud.points[7][k]).abs() < 1e-5));
            cloud
                .points
                .iter()
                .map(|&p| n.apply_point(p))
                .collect::<Vec<_>>()
        };
        let a = canonical(0.0);
        assert!(
            a[59][0] > 0.5,
            "the long arm's far end lies on +x: {:?}",
            a[59]
        );
        for yaw in [0.7f32, 2.0, -2.9, 3.1] {
            let b = canonical(yaw);
            let worst = a
                .iter()
                .zip(&b)
                .map(|(p, q)| (0..3).map(|k| (p[k] - q[k]).abs()).fold(0f32, f32::max))
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "yaw {yaw}: off by {worst}");
        }
    }
}
