//! Euclidean clusters (PCL's `EuclideanClusterExtraction`): two points belong to one
//! cluster when a chain of points, each within `tolerance` of the next, joins them.
//!
//! Hand-written rather than k-d tree radius queries per point (kiddo has no clustering of
//! its own, and a wall behind a table gives 100k points with ~70 neighbours each: 150 ms
//! here that way). Points go into hash-grid cells of edge `tolerance / sqrt(3)`: any two
//! points of one cell are within `tolerance`, so a cell is connected without a check.
//! Two cells are joined (union-find) when some pair of their points is within
//! `tolerance`; only cells at most two apart along each axis can hold such a pair, and
//! the search stops at the first pair found. The result is exactly the Euclidean clusters.

use crate::cloud::{dist2, Cloud};
use rustc_hash::FxHashMap;

/// Union-find over cell indices, with path halving.
struct Components(Vec<u32>);

impl Components {
    fn find(&mut self, mut i: u32) -> u32 {
        while self.0[i as usize] != i {
            let parent = self.0[i as usize];
            self.0[i as usize] = self.0[parent as usize];
            i = parent;
        }
        i
    }

    fn union(&mut self, a: u32, b: u32) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b) as usize] = a.min(b);
        }
    }
}

/// Clusters of `cloud`'s points as index lists (ascending), largest first. A cluster is
/// every point reachable through neighbours closer than `tolerance`; clusters with fewer
/// than `min_points` are left out (sensor noise, specks).
pub fn euclidean_clusters(cloud: &Cloud, tolerance: f32, min_points: usize) -> Vec<Vec<usize>> {
    if cloud.is_empty() || tolerance.is_nan() || tolerance <= 0.0 {
        return Vec::new();
    }
    let edge = tolerance / 3f32.sqrt();
    let key = |p: &[f32; 3]| p.map(|c| (c / edge).floor() as i64);
    // Cells in order of first occupancy, each with its points.
    let mut index: FxHashMap<[i64; 3], u32> = FxHashMap::default();
    let mut cells: Vec<([i64; 3], Vec<u32>)> = Vec::new();
    let mut cell_of = Vec::with_capacity(cloud.len());
    for (i, p) in cloud.points.iter().enumerate() {
        let k = key(p);
        let c = *index.entry(k).or_insert_with(|| {
            cells.push((k, Vec::new()));
            (cells.len() - 1) as u32
        });
        cells[c as usize].1.push(i as u32);
        cell_of.push(c);
    }
    let t2 = tolerance * tolerance;
    let near = |a: &[u32], b: &[u32]| {
        a.iter().any(|&i| {
            let p = &cloud.points[i as usize];
            b.iter().any(|&j| dist2(p, &cloud.points[j as usize]) <= t2)
        })
    };
    let mut comp = Components((0..cells.len() as u32).collect());
    for (c, (k, points)) in cells.iter().enumerate() {
        for dx in -2..=2i64 {
            for dy in -2..=2i64 {
                for dz in -2..=2i64 {
                    let Some(&other) = index.get(&[k[0] + dx, k[1] + dy, k[2] + dz]) else {
                        continue;
                    };
                    // Each pair of cells once; skip pairs already joined.
                    if other as usize <= c || comp.find(other) == comp.find(c as u32) {
                        continue;
                    }
                    if near(points, &cells[other as usize].1) {
                        comp.union(c as u32, other);
                    }
                }
            }
        }
    }
    let mut members: FxHashMap<u32, Vec<usize>> = FxHashMap::default();
    for (i, &c) in cell_of.iter().enumerate() {
        members.entry(comp.find(c)).or_default().push(i);
    }
    let mut kept: Vec<Vec<usize>> = members
        .into_values()
        .filter(|m| m.len() >= min_points)
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
    fn equals_brute_force_clustering() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        // Sparse enough that many pairs sit near the tolerance.
        let pts: Vec<[f32; 3]> = (0..1500)
            .map(|_| {
                [
                    rng.random::<f32>() * 0.2,
                    rng.random::<f32>() * 0.2,
                    rng.random::<f32>() * 0.05,
                ]
            })
            .collect();
        let cloud = Cloud::new(pts);
        let tol = 0.006;
        let mut comp = Components((0..cloud.len() as u32).collect());
        for i in 0..cloud.len() {
            for j in i + 1..cloud.len() {
                if dist2(&cloud.points[i], &cloud.points[j]) <= tol * tol {
                    comp.union(i as u32, j as u32);
                }
            }
        }
        let mut brute: FxHashMap<u32, Vec<usize>> = FxHashMap::default();
        for i in 0..cloud.len() {
            brute.entry(comp.find(i as u32)).or_default().push(i);
        }
        let mut brute: Vec<Vec<usize>> = brute.into_values().filter(|m| m.len() >= 2).collect();
        brute.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
        let ours = euclidean_clusters(&cloud, tol, 2);
        assert!(ours.len() > 10, "{}", ours.len());
        assert_eq!(ours, brute);
    }

    #[test]
    fn empty_or_bad_tolerance_gives_nothing() {
        assert!(euclidean_clusters(&Cloud::default(), 0.01, 1).is_empty());
        let one = Cloud::new(vec![[0.0; 3]]);
        assert!(euclidean_clusters(&one, 0.0, 1).is_empty());
        assert!(euclidean_clusters(&one, f32::NAN, 1).is_empty());
    }
}
