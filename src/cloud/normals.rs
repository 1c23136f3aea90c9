//! Surface normals by PCA of a point's nearest neighbours: the direction of least spread
//! (the eigenvector of the neighbourhood covariance's smallest eigenvalue).
//!
//! Kept in one place because two consumers need it with different needs: hidden-point
//! removal (`visibility`) only needs each splat's plane, so any sign will do and f32 is
//! enough; FPFH (`eval`) bins angles between normals, so it needs a consistent sign and
//! computes in f64. The scalar type and the orientation are therefore parameters, which
//! also keeps each caller's results exactly what they were before the two were merged.

use super::kdtree::{build_kdtree, k_nearest, KdTree3};
use nalgebra::{Matrix3, RealField, SymmetricEigen, Vector3};
use rayon::prelude::*;

/// The unit normal of a neighbourhood by PCA, computed in scalar type `T` (f32 or f64;
/// coordinates reach it through f64, which is exact either way).
///
/// With `outward`, the sign is chosen so the normal's dot product with it is not negative;
/// without, the sign is whatever the eigen solver gives. An empty or non-finite
/// neighbourhood gives `[0, 0, 1]`.
pub fn pca_normal<T>(
    neighbourhood: impl ExactSizeIterator<Item = [f32; 3]> + Clone,
    outward: Option<Vector3<T>>,
) -> [f32; 3]
where
    T: RealField + Copy,
{
    const FALLBACK: [f32; 3] = [0.0, 0.0, 1.0];
    let count = neighbourhood.len();
    if count == 0 {
        return FALLBACK;
    }
    let to_t = |p: [f32; 3]| Vector3::from(p.map(|c| nalgebra::convert::<f64, T>(c as f64)));
    let mean = neighbourhood.clone().map(to_t).sum::<Vector3<T>>()
        / nalgebra::convert::<f64, T>(count as f64);
    let cov: Matrix3<T> = neighbourhood
        .map(|q| {
            let d = to_t(q) - mean;
            d * d.transpose()
        })
        .sum();
    let eig = SymmetricEigen::new(cov);
    let mut normal = eig.eigenvectors.column(eig.eigenvalues.imin()).normalize();
    if let Some(out) = outward {
        if normal.dot(&out) < T::zero() {
            normal = -normal;
        }
    }
    let normal: [f32; 3] =
        std::array::from_fn(|d| nalgebra::convert_unchecked::<T, f64>(normal[d]) as f32);
    if normal.iter().all(|c| c.is_finite()) {
        normal
    } else {
        FALLBACK
    }
}

/// Unit normals by PCA over the `k` nearest neighbours (the point included), oriented away
/// from the centroid. That orientation needs no viewpoint and is consistent on convex-ish
/// shapes; it is arbitrary only where the normal is perpendicular to the direction from the
/// centroid.
pub fn estimate_normals(points: &[[f32; 3]], k: usize) -> Vec<[f32; 3]> {
    if points.is_empty() {
        return Vec::new();
    }
    normals_with_tree(points, &build_kdtree(points), k)
}

/// [`estimate_normals`] with a tree over `points` already built (FPFH reuses its tree).
pub(crate) fn normals_with_tree(points: &[[f32; 3]], tree: &KdTree3, k: usize) -> Vec<[f32; 3]> {
    let k = k.clamp(1, points.len());
    let v3 = |p: &[f32; 3]| Vector3::new(p[0] as f64, p[1] as f64, p[2] as f64);
    let centroid = points.iter().map(v3).sum::<Vector3<f64>>() / points.len() as f64;
    points
        .par_iter()
        .map(|p| {
            let nn = k_nearest(tree, p, k);
            let neighbourhood = nn.iter().map(|n| points[n.item as usize]);
            pca_normal::<f64>(neighbourhood, Some(v3(p) - centroid))
        })
        .collect()
}

/// Evenly spread points on a sphere of radius `r` about the origin (a Fibonacci lattice),
/// computed in f32: the test shape of the modules that estimate normals.
#[cfg(test)]
pub(crate) fn fibonacci_sphere(n: usize, r: f32) -> Vec<[f32; 3]> {
    let golden = std::f32::consts::PI * (3.0 - 5f32.sqrt());
    (0..n)
        .map(|i| {
            let z = 1.0 - 2.0 * (i as f32 + 0.5) / n as f32;
            let rho = (1.0 - z * z).sqrt();
            let a = golden * i as f32;
            [r * rho * a.cos(), r * rho * a.sin(), r * z]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normals_of_a_sphere_point_outwards() {
        let pts = fibonacci_sphere(1000, 2.0);
        let normals = estimate_normals(&pts, 12);
        for (p, n) in pts.iter().zip(&normals) {
            let r = Vector3::new(p[0] as f64, p[1] as f64, p[2] as f64).normalize();
            let dot = r.dot(&Vector3::new(n[0] as f64, n[1] as f64, n[2] as f64));
            assert!(dot > 0.99, "{p:?} {n:?}");
        }
    }

    #[test]
    fn pca_normal_of_a_plane_in_both_precisions() {
        let plane: Vec<[f32; 3]> = (0..25)
            .map(|i| [(i % 5) as f32 * 0.1, (i / 5) as f32 * 0.1, 2.0])
            .collect();
        let down = Some(Vector3::new(0.0, 0.0, -1.0));
        let n64 = pca_normal::<f64>(plane.iter().copied(), down);
        assert!((n64[2] + 1.0).abs() < 1e-6, "{n64:?}");
        let n32 = pca_normal::<f32>(plane.iter().copied(), None);
        assert!((n32[2].abs() - 1.0).abs() < 1e-5, "{n32:?}");
        assert_eq!(pca_normal::<f32>(std::iter::empty(), None), [0.0, 0.0, 1.0]);
    }
}
