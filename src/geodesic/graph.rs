//! Building the k-NN graph: exact neighbour lists found on a uniform grid, and the
//! undirected CSR adjacency they become.
//!
//! A grid rather than the crate's k-d tree: with cells sized to the `k`-th neighbour
//! distance and queries in Morton order, a query scans a few contiguous runs of points and
//! reuses the previous query's radius as a bound. Results stay exact: a query stops only
//! once no unscanned cell can hold a nearer point.

use super::Edge;
use crate::cloud::{bounds, dist2};
use rayon::prelude::*;

pub(super) fn euclidean(a: &[f32; 3], b: &[f32; 3]) -> f32 {
    dist2(a, b).sqrt()
}

/// Length of edge `{i, j}`, computed in a fixed order so both directions get the same bits
/// (the sweeps rely on that).
pub(super) fn edge_length(points: &[[f32; 3]], i: usize, j: usize) -> f32 {
    euclidean(&points[i.min(j)], &points[i.max(j)])
}

/// Point indices sorted by Morton code (10 bits per axis over the bounding box).
pub(super) fn morton_order(points: &[[f32; 3]]) -> Vec<u32> {
    let (lo, hi) = bounds(points);
    let extent = (0..3).map(|d| hi[d] - lo[d]).fold(0.0f32, f32::max);
    let scale = if extent > 0.0 { 1023.0 / extent } else { 0.0 };
    // Spreads the low 10 bits of x to every third bit.
    fn spread(x: u32) -> u32 {
        let mut x = x & 0x3ff;
        x = (x | (x << 16)) & 0x0300_00ff;
        x = (x | (x << 8)) & 0x0300_f00f;
        x = (x | (x << 4)) & 0x030c_30c3;
        (x | (x << 2)) & 0x0924_9249
    }
    let mut keyed: Vec<(u32, u32)> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let q = |d: usize| (((p[d] - lo[d]) * scale) as u32).min(1023);
            (
                spread(q(0)) << 2 | spread(q(1)) << 1 | spread(q(2)),
                i as u32,
            )
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// Uniform grid over a cloud: points counting-sorted by cell (x fastest, then y, z), so a
/// row of cells along x is one contiguous run of points.
struct Grid {
    lo: [f32; 3],
    /// Cell side and its inverse.
    h: f32,
    inv_h: f32,
    dims: [usize; 3],
    /// Cell `c`'s points are `pts[start[c]..start[c + 1]]` (positions) / `ids[..]` (indices).
    start: Vec<u32>,
    pts: Vec<[f32; 3]>,
    ids: Vec<u32>,
}

impl Grid {
    /// Grid whose cell side is about the typical distance to the `kk`-th neighbour, so a
    /// point's 3x3x3 block of cells usually holds its neighbours whatever the cloud's shape
    /// (surface or volume): estimated by brute force on a few points.
    fn new(points: &[[f32; 3]], kk: usize) -> Grid {
        let n = points.len();
        let (lo, hi) = bounds(points);
        let extent = (0..3).map(|d| hi[d] - lo[d]).fold(0.0f32, f32::max);
        let samples = n.min(8);
        let mut radii: Vec<f32> = (0..samples)
            .map(|s| {
                let p = points[s * n / samples];
                let mut d2: Vec<f32> = points.iter().map(|q| dist2(&p, q)).collect();
                // Index kk: the point itself (or a duplicate) is at 0.
                *d2.select_nth_unstable_by(kk, f32::total_cmp).1
            })
            .collect();
        radii.sort_by(f32::total_cmp);
        let mut h = radii[samples / 2].sqrt();
        // Duplicates or a flat sample can give 0; keep the grid at most ~4n cells.
        let cells = |h: f32| -> usize {
            (0..3)
                .map(|d| (((hi[d] - lo[d]) / h) as usize).saturating_add(1))
                .fold(1usize, usize::saturating_mul)
        };
        if h <= extent * 1e-6 {
            h = extent / (n as f32).cbrt();
        }
        if h <= 0.0 {
            h = 1.0;
        }
        while cells(h) > 4 * n + 8 {
            h *= 1.5;
        }
        let inv_h = 1.0 / h;
        let dims: [usize; 3] = std::array::from_fn(|d| ((hi[d] - lo[d]) * inv_h) as usize + 1);
        let mut grid = Grid {
            lo,
            h,
            inv_h,
            dims,
            start: vec![0; dims[0] * dims[1] * dims[2] + 1],
            pts: vec![[0.0; 3]; n],
            ids: vec![0; n],
        };
        let cell_of: Vec<u32> = points
            .iter()
            .map(|p| grid.cell_index(grid.cell(p)) as u32)
            .collect();
        for &c in &cell_of {
            grid.start[c as usize + 1] += 1;
        }
        for c in 0..grid.start.len() - 1 {
            grid.start[c + 1] += grid.start[c];
        }
        let mut cursor = grid.start.clone();
        for (i, &c) in cell_of.iter().enumerate() {
            let at = cursor[c as usize] as usize;
            cursor[c as usize] += 1;
            grid.pts[at] = points[i];
            grid.ids[at] = i as u32;
        }
        grid
    }

    /// Grid coordinates of `p` (monotone in each coordinate, clamped to the grid).
    fn cell(&self, p: &[f32; 3]) -> [usize; 3] {
        std::array::from_fn(|d| (((p[d] - self.lo[d]) * self.inv_h) as usize).min(self.dims[d] - 1))
    }

    fn cell_index(&self, c: [usize; 3]) -> usize {
        (c[2] * self.dims[1] + c[1]) * self.dims[0] + c[0]
    }

    /// Sorted positions and squared distances (as `d2 bits << 32 | position` keys, which
    /// order like the distances) of the points other than `pos` in the box of cells
    /// `a..=b` that are within squared distance `limit2` of `p`, into `keys`.
    fn gather(&self, pos: usize, a: [usize; 3], b: [usize; 3], limit2: f32, keys: &mut Vec<u64>) {
        let p = self.pts[pos];
        let rows = || {
            (a[2]..=b[2]).flat_map(move |z| {
                (a[1]..=b[1]).map(move |y| {
                    let first = self.start[self.cell_index([a[0], y, z])] as usize;
                    first..self.start[self.cell_index([b[0], y, z]) + 1] as usize
                })
            })
        };
        // Branch-free: whether a candidate is kept is unpredictable; hence room for all.
        keys.clear();
        keys.resize(rows().map(|r| r.len()).sum::<usize>() + 1, 0);
        let mut len = 0;
        for range in rows() {
            let first = range.start;
            for (q, pq) in self.pts[range].iter().enumerate() {
                let d2 = dist2(&p, pq);
                let q = first + q;
                keys[len] = (d2.to_bits() as u64) << 32 | q as u64;
                len += usize::from(d2 <= limit2 && q != pos);
            }
        }
        keys.truncate(len);
    }

    /// The `kk` nearest other points of the point at sorted position `pos`, as sorted
    /// positions, into `out`; returns the `kk`-th distance. `limit` is an upper bound on
    /// that distance, if known (else infinite): then only the cells overlapping the ball of
    /// that radius are scanned. Otherwise (or if the bound was wrong) it scans the block of
    /// cells within Chebyshev radius `r` of the point's cell, growing `r` until the `kk`-th
    /// distance is no more than the distance from the point to the block's faces (every
    /// point outside is farther).
    fn nearest(
        &self,
        pos: usize,
        kk: usize,
        limit: f32,
        keys: &mut Vec<u64>,
        out: &mut [u32],
    ) -> f32 {
        let p = self.pts[pos];
        let take = |keys: &mut Vec<u64>, out: &mut [u32]| {
            let (_, &mut kth, _) = keys.select_nth_unstable(kk - 1);
            for (slot, key) in out.iter_mut().zip(&keys[..kk]) {
                *slot = *key as u32;
            }
            f32::from_bits((kth >> 32) as u32)
        };
        if limit.is_finite() {
            let a = self.cell(&std::array::from_fn(|d| p[d] - limit));
            let b = self.cell(&std::array::from_fn(|d| p[d] + limit));
            self.gather(pos, a, b, limit * limit, keys);
            if keys.len() >= kk {
                return take(keys, out).sqrt();
            }
        }
        let c = self.cell(&p);
        let mut r = 1;
        loop {
            let a: [usize; 3] = std::array::from_fn(|d| c[d].saturating_sub(r));
            let b: [usize; 3] = std::array::from_fn(|d| (c[d] + r).min(self.dims[d] - 1));
            self.gather(pos, a, b, f32::INFINITY, keys);
            // Distance to the nearest face of the block that has cells beyond it, in grid
            // units (the same monotone map as `cell`, so points beyond are at least that
            // far), converted with a safety margin for rounding.
            let mut face = f32::INFINITY;
            for d in 0..3 {
                let u = (p[d] - self.lo[d]) * self.inv_h;
                if a[d] > 0 {
                    face = face.min(u - a[d] as f32);
                }
                if b[d] + 1 < self.dims[d] {
                    face = face.min((b[d] + 1) as f32 - u);
                }
            }
            if keys.len() >= kk {
                let bound = (face * self.h * (1.0 - 1e-5)).max(0.0);
                let kth2 = take(keys, out);
                if face == f32::INFINITY || kth2 <= bound * bound {
                    return kth2.sqrt();
                }
            }
            r += 1;
        }
    }
}

/// Each point's `kk` nearest other points, flat by position in `order` (a Morton order:
/// `order[pos]`'s list is `pos * kk..`), found on a [`Grid`]. Queries run in parallel
/// chunks of consecutive Morton positions; within a chunk, the previous point `q` bounds
/// the `kk`-th distance of the next point `p` by `|p - q| + r(q)` (the `kk + 1` points
/// within `r(q)` of `q` lie within that of `p`), so only cells near that ball are scanned.
pub(super) fn knn_lists(points: &[[f32; 3]], order: &[u32], kk: usize) -> Vec<u32> {
    let n = points.len();
    let mut knn = vec![0u32; n * kk];
    if kk == 0 || n == 0 {
        return knn;
    }
    let grid = Grid::new(points, kk);
    let mut slot_of = vec![0u32; n];
    for (pos, &i) in grid.ids.iter().enumerate() {
        slot_of[i as usize] = pos as u32;
    }
    const CHUNK: usize = 128;
    knn.par_chunks_mut(CHUNK * kk)
        .zip(order.par_chunks(CHUNK))
        .for_each(|(rows, ids)| {
            let mut keys = Vec::new();
            let mut previous: Option<([f32; 3], f32)> = None;
            for (row, &i) in rows.chunks_exact_mut(kk).zip(ids) {
                let p = points[i as usize];
                let limit = previous.map_or(f32::INFINITY, |(q, radius)| {
                    (euclidean(&p, &q) + radius) * 1.001 + 1e-7
                });
                let radius = grid.nearest(slot_of[i as usize] as usize, kk, limit, &mut keys, row);
                previous = Some((p, radius));
                for slot in row.iter_mut() {
                    *slot = grid.ids[*slot as usize];
                }
            }
        });
    knn
}

/// Undirected CSR from directed neighbour lists plus extra edges: node `i`'s row is
/// `lists[i]`, every `j` whose list holds `i`, and its extra edges, each neighbour once,
/// nearest first (breadth-first orders then follow distance more closely, which saves
/// sweeps). Rows are built in parallel.
pub(super) fn assemble(
    points: &[[f32; 3]],
    lists: &[&[u32]],
    extra: &[(usize, usize, f32)],
) -> (Vec<u32>, Vec<Edge>) {
    let n = points.len();
    // Incoming lists (CSR), extra edges counted in both directions.
    let mut in_start = vec![0usize; n + 1];
    for list in lists {
        for &j in *list {
            in_start[j as usize + 1] += 1;
        }
    }
    for &(a, b, _) in extra {
        in_start[a + 1] += 1;
        in_start[b + 1] += 1;
    }
    for i in 0..n {
        in_start[i + 1] += in_start[i];
    }
    let mut cursor = in_start[..n].to_vec();
    let mut incoming = vec![0u32; in_start[n]];
    let mut add = |to: usize, from: usize| {
        incoming[cursor[to]] = from as u32;
        cursor[to] += 1;
    };
    for (i, list) in lists.iter().enumerate() {
        for &j in *list {
            add(j as usize, i);
        }
    }
    for &(a, b, _) in extra {
        add(a, b);
        add(b, a);
    }

    // Each row as sorted, deduplicated keys `weight bits << 32 | neighbour` (the bits of a
    // non-negative f32 order like its value), in a slot sized for its upper bound.
    let bound = |i: usize| lists[i].len() + in_start[i + 1] - in_start[i];
    let mut keys = vec![0u64; (0..n).map(bound).sum()];
    let mut slots = Vec::with_capacity(n);
    let mut rest = keys.as_mut_slice();
    for i in 0..n {
        let (slot, tail) = rest.split_at_mut(bound(i));
        slots.push(slot);
        rest = tail;
    }
    let lengths: Vec<usize> = slots
        .into_par_iter()
        .enumerate()
        .with_min_len(64)
        .map_init(
            || vec![u32::MAX; n],
            |mark, (i, slot)| {
                // Neighbours once each: `mark[j] == i` once j is in the row.
                let neighbours = lists[i]
                    .iter()
                    .chain(&incoming[in_start[i]..in_start[i + 1]]);
                let mut len = 0;
                for &j in neighbours {
                    if mark[j as usize] != i as u32 {
                        mark[j as usize] = i as u32;
                        let weight = edge_length(points, i, j as usize);
                        slot[len] = (weight.to_bits() as u64) << 32 | j as u64;
                        len += 1;
                    }
                }
                slot[..len].sort_unstable();
                len
            },
        )
        .collect();

    let mut offsets = Vec::with_capacity(n + 1);
    let mut edges = Vec::with_capacity(lengths.iter().sum());
    offsets.push(0u32);
    let mut start = 0;
    for (i, &len) in lengths.iter().enumerate() {
        edges.extend(keys[start..start + len].iter().map(|&key| Edge {
            to: key as u32,
            weight: f32::from_bits((key >> 32) as u32),
        }));
        start += bound(i);
        offsets.push(edges.len() as u32);
    }
    (offsets, edges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geodesic::tests::blob;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Brute-force check of `knn_lists` (as sets; the `kk`-th distance decides ties).
    fn check_knn_lists(points: &[[f32; 3]], kk: usize) {
        let n = points.len();
        let order = morton_order(points);
        let knn = knn_lists(points, &order, kk);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..n as u32).collect::<Vec<_>>());
        for (pos, &i) in order.iter().enumerate() {
            let i = i as usize;
            let d = |j: u32| dist2(&points[i], &points[j as usize]);
            let ours = &knn[pos * kk..(pos + 1) * kk];
            let mut truth: Vec<f32> = (0..n as u32).filter(|&j| j as usize != i).map(d).collect();
            truth.sort_by(f32::total_cmp);
            let kth = truth[kk - 1];
            let mut seen = ours.to_vec();
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), kk, "point {i}: repeated neighbours");
            for &j in ours {
                assert!(
                    j as usize != i && d(j) <= kth,
                    "point {i}: {j} is no {kk}-NN"
                );
            }
        }
    }

    #[test]
    fn knn_lists_equals_brute_force() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let uniform = blob(&mut rng, [0.0; 3], 1.0, 600);
        check_knn_lists(&uniform, 20);
        check_knn_lists(&crate::tools::torus_cloud(800, 9), 20);
        // Clusters of very different density and size, far apart.
        let mut clustered = blob(&mut rng, [0.0; 3], 0.01, 200);
        clustered.extend(blob(&mut rng, [5.0, 0.0, 1.0], 1.0, 200));
        clustered.extend(blob(&mut rng, [-100.0, 40.0, 0.0], 0.001, 30));
        check_knn_lists(&clustered, 20);
        // Duplicates (more copies than k), flat and collinear clouds.
        let base = blob(&mut rng, [0.0; 3], 1.0, 100);
        let mut dups: Vec<[f32; 3]> = base.iter().chain(&base).chain(&base).copied().collect();
        dups.extend(vec![[0.25f32; 3]; 30]);
        check_knn_lists(&dups, 20);
        check_knn_lists(&vec![[3.0f32, -1.0, 2.0]; 40], 7);
        let flat: Vec<[f32; 3]> = blob(&mut rng, [0.0; 3], 1.0, 300)
            .into_iter()
            .map(|p| [p[0], p[1], 2.0])
            .collect();
        check_knn_lists(&flat, 20);
        let line: Vec<[f32; 3]> = (0..200).map(|i| [i as f32 * 0.01, 0.0, 0.0]).collect();
        check_knn_lists(&line, 20);
        // Tiny clouds, k up to n - 1.
        for n in [2, 3, 5, 21, 22] {
            let tiny = blob(&mut rng, [0.0; 3], 1.0, n);
            for kk in [1, n / 2, n - 1] {
                if kk > 0 {
                    check_knn_lists(&tiny, kk);
                }
            }
        }
    }

    #[test]
    fn knn_lists_equal_brute_force() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let points = blob(&mut rng, [0.0; 3], 1.0, 500);
        let order = morton_order(&points);
        let kk = 20;
        let knn = knn_lists(&points, &order, kk);
        for (pos, &i) in order.iter().enumerate() {
            let i = i as usize;
            let mut ours: Vec<u32> = knn[pos * kk..(pos + 1) * kk].to_vec();
            let mut truth: Vec<u32> = (0..500u32).filter(|&j| j as usize != i).collect();
            let d = |j: &u32| euclidean(&points[i], &points[*j as usize]);
            truth.sort_by(|a, b| d(a).total_cmp(&d(b)));
            truth.truncate(kk);
            ours.sort();
            truth.sort();
            assert_eq!(ours, truth, "point {i}");
        }
    }
}
