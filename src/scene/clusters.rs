//! Euclidean clusters (PCL's `EuclideanClusterExtraction`): two points belong to one
//! cluster when a chain of points, each within `tolerance` of the next, joins them.
//!
//! Hand-written on a uniform hash grid with cells of edge `tolerance` rather than k-d tree
//! radius queries (kiddo has no clustering of its own): every neighbour of a point lies in
//! its own or the 26 adjacent cells, the grid is built in one pass, and the flood fill
//! labels each point once, so no per-query result vectors are allocated.

use crate::cloud::{dist2, Cloud};
use rustc_hash::FxHashMap;

/// Clusters of `cloud`'s points as index lists, largest first. A cluster is every point
/// reachable through neighbours closer than `tolerance`; clusters with fewer than
/// `min_points` are left out (sensor noise, specks).
pub fn euclidean_clusters(cloud: &Cloud, tolerance: f32, min_points: usize) -> Vec<Vec<usize>> {
    if cloud.is_empty() || tolerance.is_nan() || tolerance <= 0.0 {
        return Vec::new();
    }
    let cell = |p: &[f32; 3]| p.map(|c| (c / tolerance).floor() as i64);
    let mut grid: FxHashMap<[i64; 3], Vec<u32>> = FxHashMap::default();
    for (i, p) in cloud.points.iter().enumerate() {
        grid.entry(cell(p)).or_default().push(i as u32);
    }
    let t2 = tolerance * tolerance;
    let mut label = vec![u32::MAX; cloud.len()];
    let mut clusters = Vec::new();
    let mut stack = Vec::new();
    for seed in 0..cloud.len() {
        if label[seed] != u32::MAX {
            continue;
        }
        let id = clusters.len() as u32;
        let mut members = vec![seed];
        label[seed] = id;
        stack.push(seed);
        while let Some(i) = stack.pop() {
            let p = cloud.points[i];
            let c = cell(&p);
            for dx in -1..=1 {
                for dy in -1..=1 {
                    for dz in -1..=1 {
                        let Some(bucket) = grid.get(&[c[0] + dx, c[1] + dy, c[2] + dz]) else {
                            continue;
                        };
                        for &j in bucket {
                            let j = j as usize;
                            if label[j] == u32::MAX && dist2(&p, &cloud.points[j]) <= t2 {
                                label[j] = id;
                                members.push(j);
                                stack.push(j);
                            }
                        }
                    }
                }
            }
        }
        clusters.push(members);
    }
    let mut kept: Vec<Vec<usize>> = clusters
        .into_iter()
        .filter(|c| c.len() >= min_points)
        .collect();
    kept.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(centre: [f32; 3], n: usize, spacing: f32) -> Vec<[f32; 3]> {
        let side = (n as f32).cbrt().ceil() as usize;
        (0..n)
            .map(|i| {
                let (x, y, z) = (i % side, (i / side) % side, i / (side * side));
                [
                    centre[0] + x as f32 * spacing,
                    centre[1] + y as f32 * spacing,
                    centre[2] + z as f32 * spacing,
                ]
            })
            .collect()
    }

    #[test]
    fn separate_blobs_are_separate_clusters_and_specks_go() {
        let mut pts = blob([0.0; 3], 500, 0.005);
        pts.extend(blob([0.3, 0.0, 0.0], 200, 0.005));
        pts.push([1.0, 1.0, 1.0]); // a speck
        let clusters = euclidean_clusters(&Cloud::new(pts), 0.01, 5);
        assert_eq!(clusters.len(), 2);
        assert_eq!(clusters[0].len(), 500);
        assert_eq!(clusters[1].len(), 200);
        assert!(clusters[1].iter().all(|i| (500..700).contains(i)));
    }

    #[test]
    fn a_chain_of_close_points_is_one_cluster() {
        // Points 8 mm apart along a line: end to end far more than the tolerance.
        let pts: Vec<[f32; 3]> = (0..100).map(|i| [i as f32 * 0.008, 0.0, 0.0]).collect();
        let clusters = euclidean_clusters(&Cloud::new(pts), 0.01, 1);
        assert_eq!(clusters.len(), 1);
        assert_eq!(clusters[0].len(), 100);
        // A gap wider than the tolerance splits it.
        let mut split: Vec<[f32; 3]> = (0..50).map(|i| [i as f32 * 0.008, 0.0, 0.0]).collect();
        split.extend((0..50).map(|i| [1.0 + i as f32 * 0.008, 0.0, 0.0]));
        assert_eq!(euclidean_clusters(&Cloud::new(split), 0.01, 1).len(), 2);
    }

    #[test]
    fn empty_or_bad_tolerance_gives_nothing() {
        assert!(euclidean_clusters(&Cloud::default(), 0.01, 1).is_empty());
        let one = Cloud::new(vec![[0.0; 3]]);
        assert!(euclidean_clusters(&one, 0.0, 1).is_empty());
        assert!(euclidean_clusters(&one, f32::NAN, 1).is_empty());
    }
}
