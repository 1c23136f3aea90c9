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

/// A similarity transform `normalised = (p - center) * scale`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    pub center: [f32; 3],
    pub scale: f32,
}

impl Normalization {
    pub const IDENTITY: Normalization = Normalization {
        center: [0.0; 3],
        scale: 1.0,
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
        Normalization { center, scale }
    }

    pub fn apply_point(&self, p: [f32; 3]) -> [f32; 3] {
        [0, 1, 2].map(|k| (p[k] - self.center[k]) * self.scale)
    }

    pub fn invert_point(&self, p: [f32; 3]) -> [f32; 3] {
        [0, 1, 2].map(|k| p[k] / self.scale + self.center[k])
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
}
