//! The crate's one k-d tree type over xyz points, and the queries several modules share.
//!
//! Callers used to spell kiddo's tree type three ways (u32 or u64 items, the crate's
//! default alias or the full type); one alias keeps them on the same layout, and the query
//! helpers fix the metric (squared Euclidean: every `distance` returned here is a squared
//! distance) so callers need not import kiddo at all.

use kiddo::immutable::float::kdtree::ImmutableKdTree;
use kiddo::nearest_neighbour::NearestNeighbour;
use kiddo::SquaredEuclidean;
use std::num::NonZeroUsize;

/// k-d tree over f32 xyz whose items are point indices (u32), 32 points per leaf.
pub type KdTree3 = ImmutableKdTree<f32, u32, 3, 32>;

/// A query result: `item` is the point's index, `distance` its squared distance.
pub type Neighbour = NearestNeighbour<f32, u32>;

/// The tree over `points`; item `i` is `points[i]`. Panics if there are more than
/// `u32::MAX` points (the items could not hold their indices).
pub fn build_kdtree(points: &[[f32; 3]]) -> KdTree3 {
    assert!(
        points.len() <= u32::MAX as usize,
        "k-d tree: too many points ({})",
        points.len()
    );
    KdTree3::new_from_slice(points)
}

/// The stored point nearest to `p`.
pub fn nearest(tree: &KdTree3, p: &[f32; 3]) -> Neighbour {
    tree.nearest_one::<SquaredEuclidean>(p)
}

/// The `k` stored points nearest to `p`, nearest first (a point stored at `p` included).
/// Panics if `k` is 0.
pub fn k_nearest(tree: &KdTree3, p: &[f32; 3], k: usize) -> Vec<Neighbour> {
    let k = NonZeroUsize::new(k).expect("k-nearest query with k = 0");
    tree.nearest_n::<SquaredEuclidean>(p, k)
}

/// The stored points within squared distance `radius2` of `p`, in no particular order.
pub fn within_unsorted(tree: &KdTree3, p: &[f32; 3], radius2: f32) -> Vec<Neighbour> {
    tree.within_unsorted::<SquaredEuclidean>(p, radius2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_return_indices_and_squared_distances() {
        let points = [
            [0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0],
            [0.0, 2.0, 0.0],
            [0.0, 0.0, 3.0],
        ];
        let tree = build_kdtree(&points);
        let nb = nearest(&tree, &[0.9, 0.0, 0.0]);
        assert_eq!(nb.item, 1);
        assert!((nb.distance - 0.01).abs() < 1e-6);
        let found: Vec<u32> = k_nearest(&tree, &[0.0; 3], 3)
            .iter()
            .map(|nb| nb.item)
            .collect();
        assert_eq!(found, vec![0, 1, 2]);
        let mut close: Vec<u32> = within_unsorted(&tree, &[0.0; 3], 4.5)
            .iter()
            .map(|nb| nb.item)
            .collect();
        close.sort_unstable();
        assert_eq!(close, vec![0, 1, 2]);
    }
}
