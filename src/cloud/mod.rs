//! Point clouds: the `Cloud` type, sampling, normalisation and file formats.

mod io_common;
pub(crate) mod kdtree;
mod normalize;
pub(crate) mod normals;
pub mod pcd;
pub mod ply;
mod prepare;
pub mod rotation;
mod sampling;
pub mod visibility;

pub use normalize::{Normalization, NormalizationMode};
pub use ply::TriMesh;
pub use prepare::{prepare, PrepareConfig, Prepared, SamplingMode};
pub use rotation::RotationMode;
pub use sampling::{farthest_point_sample, random_sample};

use crate::error::{Error, Result};
use std::path::Path;

/// A point cloud: f32 xyz in some frame, optionally with 8-bit rgb per point.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cloud {
    pub points: Vec<[f32; 3]>,
    /// One colour per point when present.
    pub colors: Option<Vec<[u8; 3]>>,
    /// The sensor grid of an organised cloud (a depth image): `points` holds its
    /// `width * height` pixels row by row, invalid pixels as non-finite points. `None` for
    /// an unorganised cloud. Operations that reorder or drop points (`select`,
    /// `finite_points`) give an unorganised cloud.
    pub organised: Option<Organised>,
}

/// The grid shape of an organised cloud: point `row * width + col` is pixel (col, row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Organised {
    pub width: usize,
    pub height: usize,
}

impl Organised {
    /// `width * height`, or `None` when that overflows.
    pub fn point_count(&self) -> Option<usize> {
        self.width.checked_mul(self.height)
    }
}

impl Cloud {
    /// An unorganised cloud without colours.
    pub fn new(points: Vec<[f32; 3]>) -> Self {
        Cloud {
            points,
            colors: None,
            organised: None,
        }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The sub-cloud made of the given point indices (colours follow their points). The
    /// result is never organised, even when `indices` covers every point in order: a subset
    /// of a sensor grid is not a grid.
    pub fn select(&self, indices: &[usize]) -> Cloud {
        Cloud {
            points: indices.iter().map(|&i| self.points[i]).collect(),
            colors: self
                .colors
                .as_ref()
                .map(|c| indices.iter().map(|&i| c[i]).collect()),
            organised: None,
        }
    }

    /// The finite points (a depth camera's NaN holes dropped), with each one's index in
    /// `self` so results can refer back to a sensor pixel. The result is not organised.
    pub fn finite_points(&self) -> (Cloud, Vec<usize>) {
        let kept: Vec<usize> = (0..self.len())
            .filter(|&i| self.points[i].iter().all(|c| c.is_finite()))
            .collect();
        (self.select(&kept), kept)
    }

    /// Checks the invariants every consumer relies on: at least one point, all coordinates
    /// finite, one colour per point, and an organised shape (if any) that holds exactly the
    /// points. `what` names the cloud in the error (a file, a model id).
    pub fn validate(&self, what: &str) -> Result<()> {
        if self.points.is_empty() {
            return Err(Error::invalid(format!("{what}: the cloud has no points")));
        }
        self.check_organised(what)?;
        if let Some(i) = self
            .points
            .iter()
            .position(|p| !p.iter().all(|c| c.is_finite()))
        {
            return Err(Error::invalid(format!(
                "{what}: point {i} has a non-finite coordinate {:?}",
                self.points[i]
            )));
        }
        if let Some(colors) = &self.colors {
            if colors.len() != self.points.len() {
                return Err(Error::invalid(format!(
                    "{what}: {} colours for {} points",
                    colors.len(),
                    self.points.len()
                )));
            }
        }
        Ok(())
    }

    /// Checks that the organised shape, if any, holds exactly the cloud's points (the part of
    /// `validate` that writers need too, since they allow non-finite points).
    pub fn check_organised(&self, what: &str) -> Result<()> {
        if let Some(o) = self.organised {
            if o.point_count() != Some(self.points.len()) {
                return Err(Error::invalid(format!(
                    "{what}: organised as {} x {} pixels but the cloud has {} points",
                    o.width,
                    o.height,
                    self.points.len()
                )));
            }
        }
        Ok(())
    }

    /// The mean of the points (summed in f64), the origin for an empty cloud.
    pub fn centroid(&self) -> [f32; 3] {
        let n = self.len().max(1) as f64;
        let sum = self.points.iter().fold([0f64; 3], |a, p| {
            [
                a[0] + f64::from(p[0]),
                a[1] + f64::from(p[1]),
                a[2] + f64::from(p[2]),
            ]
        });
        sum.map(|c| (c / n) as f32)
    }

    /// Axis-aligned bounding box (min, max); see [`bounds`].
    pub fn bounds(&self) -> ([f32; 3], [f32; 3]) {
        bounds(&self.points)
    }

    /// Reads a `.pcd` or `.ply` file, chosen by extension. A PLY mesh yields its vertices.
    pub fn read(path: impl AsRef<Path>) -> Result<Cloud> {
        let path = path.as_ref();
        match extension(path).as_str() {
            "pcd" => pcd::read_pcd(path),
            "ply" => Ok(ply::read_ply(path)?.cloud),
            other => Err(Error::format(
                path,
                format!("unknown point cloud extension '{other}' (expected .pcd or .ply)"),
            )),
        }
    }

    /// Writes a `.pcd` (binary) or `.ply` (binary little endian) file, chosen by extension.
    /// A PCD keeps an organised cloud's shape as WIDTH/HEIGHT; PLY has no grid to keep it.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        match extension(path).as_str() {
            "pcd" => pcd::write_pcd(path, self, pcd::PcdEncoding::Binary),
            "ply" => ply::write_ply(path, self, None, ply::PlyEncoding::BinaryLittleEndian),
            other => Err(Error::format(
                path,
                format!("unknown point cloud extension '{other}' (expected .pcd or .ply)"),
            )),
        }
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Axis-aligned bounding box (min, max) of `points`. Empty input gives an inside-out box
/// (min +inf, max -inf), so callers that can see an empty cloud check `is_empty` first.
pub fn bounds(points: &[[f32; 3]]) -> ([f32; 3], [f32; 3]) {
    let mut lo = [f32::INFINITY; 3];
    let mut hi = [f32::NEG_INFINITY; 3];
    for p in points {
        for k in 0..3 {
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    }
    (lo, hi)
}

/// Squared Euclidean distance.
#[inline]
pub fn dist2(a: &[f32; 3], b: &[f32; 3]) -> f32 {
    let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_points_are_dropped_with_their_indices() {
        let c = Cloud::new(vec![
            [0.0, 0.0, 0.0],
            [f32::NAN, 0.0, 0.0],
            [1.0, 2.0, 3.0],
            [0.0, f32::INFINITY, 0.0],
        ]);
        let (out, idx) = c.finite_points();
        assert_eq!(idx, vec![0, 2]);
        assert_eq!(out.points, vec![[0.0; 3], [1.0, 2.0, 3.0]]);
    }
}
