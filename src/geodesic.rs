//! Geodesic distances on point clouds: shortest paths on a k-NN graph with Euclidean edge
//! weights, from a few sources or from every point.
//!
//! # The graph
//!
//! Every point is joined to its `k` nearest neighbours (default [`DEFAULT_K`] = 20, the
//! reference code's value) by an edge weighted with their Euclidean distance. The graph is
//! undirected: `i` and `j` are adjacent when `i` is among `j`'s neighbours *or* `j` is among
//! `i`'s, which is what `scipy.sparse.csgraph.dijkstra(directed=False)` does with
//! `sklearn.neighbors.kneighbors_graph`, so the distances match that baseline.
//!
//! # Connecting components (a deliberate difference from the reference code)
//!
//! A k-NN graph of a cloud made of separate parts (two legs of a chair sampled apart, an
//! outlier cluster) has several connected components. The reference code scored unreachable
//! pairs as distance 0, so far-apart points counted as identical. Here the components are
//! joined instead, by a minimum spanning forest over components: the distance between two
//! components is that of their closest point pair, and Kruskal's algorithm adds the
//! shortest such bridges (`components - 1` of them) until one component is left. These are
//! the edges a Euclidean minimum spanning tree uses to cross between the parts (single
//! linkage). Hence every distance is finite, and since every edge is a straight segment,
//! every geodesic distance is at least the Euclidean distance. Added bridges are listed by
//! [`KnnGraph::bridges`].
//!
//! # Algorithms, and why the results are exact
//!
//! Neighbours come from a `kiddo` k-d tree, queried in parallel in a Morton (space-filling
//! curve) order so that each query's search radius can be bounded by the previous point's
//! (`|p - q| + r_k(q)` bounds `r_k(p)`), which spares part of the tree search. Adjacency is
//! compact (CSR: offsets plus `(u32 neighbour, f32 weight)` pairs, nearest first); both
//! directions of an edge carry the same f32 weight bits.
//!
//! A lone source runs Dijkstra with an indexed 4-ary heap. Sources that come in numbers
//! (all pairs, or many sources) are instead grouped into batches of up to 16 sources that
//! lie close together on the graph, and each batch is solved at once by Gauss-Seidel
//! label-correcting sweeps: a node's 16 distances are one `[f32; 16]`, updated by
//! `min(d[v] + w)` over its neighbours (which the compiler vectorises), sweeping the nodes
//! in breadth-first order from the batch's first source, alternately forwards and
//! backwards, and revisiting only nodes that a changed neighbour can improve, until nothing
//! changes. Because sources in a batch are close, one breadth-first order suits all of
//! them and few sweeps are needed. Both methods compute, per source and node, the minimum
//! over paths of the left-to-right f32 sums of edge weights (f32 addition is monotone), so
//! they return bit-identical distances. Distances are f32; batches run in parallel with
//! `rayon`, each worker reusing its buffers.

use crate::error::{Error, Result};
use kiddo::immutable::float::kdtree::ImmutableKdTree;
use kiddo::SquaredEuclidean;
use rayon::prelude::*;

/// Default neighbour count of the k-NN graph (the reference code's value).
pub const DEFAULT_K: usize = 20;

/// k-d tree over f32 xyz with u32 items (point indices).
type Tree = ImmutableKdTree<f32, u32, 3, 32>;

/// Most sources solved together by one sweep batch.
const MAX_LANES: usize = 16;

/// Row-major distances from `rows` sources to `cols` points.
#[derive(Debug, Clone, PartialEq)]
pub struct DistanceMatrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl DistanceMatrix {
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
    pub fn get(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.cols + c]
    }
}

/// One directed half of an undirected edge in the CSR adjacency.
#[derive(Debug, Clone, Copy)]
struct Edge {
    to: u32,
    weight: f32,
}

/// A symmetric, connected k-NN graph over a cloud's points.
#[derive(Debug, Clone)]
pub struct KnnGraph {
    num_points: usize,
    k: usize,
    /// `edges[offsets[i]..offsets[i + 1]]` are point `i`'s neighbours.
    offsets: Vec<u32>,
    edges: Vec<Edge>,
    /// Edges added to connect the k-NN graph's components, `(i, j, length)`.
    bridges: Vec<(usize, usize, f32)>,
    /// Point indices in Morton order: nearby entries are nearby points.
    locality: Vec<u32>,
}

fn euclidean(a: &[f32; 3], b: &[f32; 3]) -> f32 {
    let (x, y, z) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    (x * x + y * y + z * z).sqrt()
}

/// Length of edge `{i, j}`, computed in a fixed order so both directions get the same bits
/// (the sweeps rely on that).
fn edge_length(points: &[[f32; 3]], i: usize, j: usize) -> f32 {
    euclidean(&points[i.min(j)], &points[i.max(j)])
}

impl KnnGraph {
    /// Builds the graph on `points` with `k` neighbours per point, then joins its connected
    /// components (see the module doc), so every pair of points is connected.
    ///
    /// `k >= points.len()` connects every pair; `k = 0` leaves only the component bridges,
    /// i.e. the Euclidean minimum spanning tree. Duplicate points are fine (zero-length
    /// edges). Coordinates must be finite (as [`crate::Cloud`] guarantees); otherwise the
    /// distances are unspecified. Panics if there are more than `u32::MAX` points.
    pub fn build(points: &[[f32; 3]], k: usize) -> KnnGraph {
        let n = points.len();
        assert!(
            n < u32::MAX as usize,
            "geodesic graph: too many points ({n})"
        );
        let kk = k.min(n.saturating_sub(1));
        let locality = morton_order(points);
        // Neighbour lists, stored by Morton position.
        let knn = knn_lists(points, &locality, kk);
        let mut lists = vec![[].as_slice(); n];
        for (list, &i) in knn.chunks_exact(kk.max(1)).zip(&locality) {
            lists[i as usize] = list;
        }
        let (mut offsets, mut edges) = assemble(points, &lists, &[]);
        let (component, count) = components(&offsets, &edges);
        let bridges = join_components(points, &component, count);
        if !bridges.is_empty() {
            (offsets, edges) = assemble(points, &lists, &bridges);
        }
        KnnGraph {
            num_points: n,
            k,
            offsets,
            edges,
            bridges,
            locality,
        }
    }

    pub fn num_points(&self) -> usize {
        self.num_points
    }

    /// The `k` the graph was built with.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of undirected edges, bridges included.
    pub fn num_edges(&self) -> usize {
        self.edges.len() / 2
    }

    /// Point `i`'s neighbours with edge lengths. Panics if `i >= num_points()`.
    pub fn neighbors(&self, i: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        self.edges_of(i).iter().map(|e| (e.to as usize, e.weight))
    }

    /// Edges `(i, j, length)` added to join the k-NN graph's connected components; empty
    /// when it was connected already. Their number is the component count minus one.
    pub fn bridges(&self) -> &[(usize, usize, f32)] {
        &self.bridges
    }

    /// Geodesic distances from each source to every point ([sources.len(), N]); repeated
    /// sources are fine.
    ///
    /// Errors if a source index is out of range (the error names it).
    pub fn from_sources(&self, sources: &[usize]) -> Result<DistanceMatrix> {
        if let Some((pos, &s)) = sources
            .iter()
            .enumerate()
            .find(|&(_, &s)| s >= self.num_points)
        {
            return Err(Error::invalid(format!(
                "geodesic source {s} (sources[{pos}]) is out of range for a cloud of {} points",
                self.num_points
            )));
        }
        Ok(self.solve(sources))
    }

    /// All-pairs geodesic distances ([N, N]). Symmetric up to f32 rounding (the two
    /// directions sum a path's edges in opposite orders).
    pub fn all_pairs(&self) -> DistanceMatrix {
        let all: Vec<usize> = (0..self.num_points).collect();
        self.solve(&all)
    }

    #[inline]
    fn edges_of(&self, u: usize) -> &[Edge] {
        &self.edges[self.offsets[u] as usize..self.offsets[u + 1] as usize]
    }

    /// Distances from valid `sources`: batches of nearby sources, in parallel. Batches are
    /// sized so that every thread gets work; one-source batches run Dijkstra.
    fn solve(&self, sources: &[usize]) -> DistanceMatrix {
        let per_thread = sources.len().div_ceil(rayon::current_num_threads());
        let lanes = match per_thread {
            0..=2 => 1,
            3..=4 => 4,
            5..=8 => 8,
            _ => MAX_LANES,
        };
        self.solve_with_lanes(sources, lanes)
    }

    /// [`Self::solve`] with a given batch size: 1 (Dijkstra), 4, 8 or 16.
    fn solve_with_lanes(&self, sources: &[usize], lanes: usize) -> DistanceMatrix {
        let n = self.num_points;
        let mut data = vec![0.0f32; sources.len() * n];
        if n > 0 && !sources.is_empty() {
            let batches = self.plan_batches(sources, lanes);
            let mut rows: Vec<Option<&mut [f32]>> = data.chunks_mut(n).map(Some).collect();
            let jobs: Vec<(Vec<usize>, Vec<&mut [f32]>)> = batches
                .into_iter()
                .map(|batch| {
                    let batch_rows = batch.iter().map(|&p| rows[p].take().expect("unique"));
                    let batch_rows = batch_rows.collect();
                    (batch.iter().map(|&p| sources[p]).collect(), batch_rows)
                })
                .collect();
            match lanes {
                4 => self.run_batches::<4>(jobs),
                8 => self.run_batches::<8>(jobs),
                _ => self.run_batches::<MAX_LANES>(jobs),
            }
        }
        DistanceMatrix {
            rows: sources.len(),
            cols: n,
            data,
        }
    }

    fn run_batches<const L: usize>(&self, jobs: Vec<(Vec<usize>, Vec<&mut [f32]>)>) {
        jobs.into_par_iter().with_max_len(1).for_each_init(
            Scratch::<L>::default,
            |scratch, (batch, mut rows)| {
                if let ([source], [row]) = (&batch[..], &mut rows[..]) {
                    self.dijkstra(*source, row, &mut scratch.heap);
                } else {
                    self.sweep_batch(&batch, &mut rows, scratch);
                }
            },
        );
    }

    /// Groups positions in `sources` into batches of at most `lanes` that lie close on the
    /// graph: seeds are taken in Morton order, and each batch collects the not yet batched
    /// sources a breadth-first search from its seed reaches first.
    fn plan_batches(&self, sources: &[usize], lanes: usize) -> Vec<Vec<usize>> {
        if lanes <= 1 {
            return (0..sources.len()).map(|p| vec![p]).collect();
        }
        let n = self.num_points;
        // Positions grouped by source node (CSR), with a cursor of the next unbatched one.
        let mut start = vec![0usize; n + 1];
        for &s in sources {
            start[s + 1] += 1;
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut next = start[..n].to_vec();
        let mut by_node = vec![0usize; sources.len()];
        for (p, &s) in sources.iter().enumerate() {
            by_node[next[s]] = p;
            next[s] += 1;
        }
        next.copy_from_slice(&start[..n]);

        let mut batches = Vec::with_capacity(sources.len().div_ceil(lanes));
        let mut stamp = vec![u32::MAX; n];
        let mut queue: Vec<u32> = Vec::with_capacity(n);
        for &seed in &self.locality {
            let seed = seed as usize;
            while next[seed] < start[seed + 1] {
                let id = batches.len() as u32;
                let mut batch = Vec::with_capacity(lanes);
                queue.clear();
                queue.push(seed as u32);
                stamp[seed] = id;
                let mut head = 0;
                while head < queue.len() && batch.len() < lanes {
                    let u = queue[head] as usize;
                    head += 1;
                    while next[u] < start[u + 1] && batch.len() < lanes {
                        batch.push(by_node[next[u]]);
                        next[u] += 1;
                    }
                    for e in self.edges_of(u) {
                        if stamp[e.to as usize] != id {
                            stamp[e.to as usize] = id;
                            queue.push(e.to);
                        }
                    }
                }
                batches.push(batch);
            }
        }
        batches
    }

    /// Single-source shortest paths into `dist` (overwritten).
    fn dijkstra(&self, source: usize, dist: &mut [f32], heap: &mut IndexedHeap) {
        dist.fill(f32::INFINITY);
        dist[source] = 0.0;
        heap.reset(self.num_points);
        heap.decrease(source as u32, 0);
        while let Some((key, u)) = heap.pop() {
            let du = f32::from_bits(key);
            for e in self.edges_of(u as usize) {
                let nd = du + e.weight;
                let slot = &mut dist[e.to as usize];
                if nd < *slot {
                    *slot = nd;
                    heap.decrease(e.to, nd.to_bits());
                }
            }
        }
    }

    /// Solves up to `L` sources at once by label-correcting sweeps (see the module doc) and
    /// writes source `l`'s distances to `rows[l]`. Unused lanes stay infinite and idle.
    fn sweep_batch<const L: usize>(
        &self,
        sources: &[usize],
        rows: &mut [&mut [f32]],
        scratch: &mut Scratch<L>,
    ) {
        let n = self.num_points;
        let Scratch {
            dist, dirty, order, ..
        } = scratch;
        self.bfs_order(sources[0], order, dirty);
        dist.clear();
        dist.resize(n, [f32::INFINITY; L]);
        for (l, &s) in sources.iter().enumerate() {
            dist[s][l] = 0.0;
        }
        dirty.clear();
        dirty.resize(n, true);
        relax_sweeps(&self.offsets, &self.edges, order, dist, dirty);
        for (l, row) in rows.iter_mut().enumerate() {
            for (out, d) in row.iter_mut().zip(dist.iter()) {
                *out = d[l];
            }
        }
    }

    /// Breadth-first order of all nodes from `root` into `order` (`seen` is scratch).
    /// Branch-free enqueueing: whether a neighbour is new is unpredictable.
    fn bfs_order(&self, root: usize, order: &mut Vec<u32>, seen: &mut Vec<bool>) {
        let n = self.num_points;
        seen.clear();
        seen.resize(n, false);
        order.clear();
        // One spare slot: the loop writes every neighbour at `tail`, then keeps new ones.
        order.resize(n + 1, 0);
        order[0] = root as u32;
        seen[root] = true;
        let (mut head, mut tail) = (0, 1);
        while head < tail {
            let u = order[head] as usize;
            head += 1;
            for e in self.edges_of(u) {
                let v = e.to as usize;
                order[tail] = e.to;
                tail += usize::from(!seen[v]);
                seen[v] = true;
            }
        }
        order.truncate(n);
    }
}

/// The sweeps of [`KnnGraph::sweep_batch`] over nodes in `order`, until nothing changes.
fn relax_sweeps<const L: usize>(
    offsets: &[u32],
    all_edges: &[Edge],
    order: &[u32],
    dist: &mut [[f32; L]],
    dirty: &mut [bool],
) {
    let n = order.len();
    let mut forward = true;
    loop {
        let mut changed = false;
        for i in 0..n {
            let u = order[if forward { i } else { n - 1 - i }] as usize;
            if !dirty[u] {
                continue;
            }
            dirty[u] = false;
            let edges = &all_edges[offsets[u] as usize..offsets[u + 1] as usize];
            let old = dist[u];
            let mut acc = old;
            for e in edges {
                let dv = &dist[e.to as usize];
                for l in 0..L {
                    let via = dv[l] + e.weight;
                    acc[l] = if via < acc[l] { via } else { acc[l] };
                }
            }
            let mut improved = false;
            for l in 0..L {
                improved |= acc[l] < old[l];
            }
            if !improved {
                continue;
            }
            changed = true;
            dist[u] = acc;
            // Revisit exactly the neighbours that u's new distances improve (branch-free:
            // which ones is unpredictable).
            for e in edges {
                let dv = &dist[e.to as usize];
                let mut helps = false;
                for l in 0..L {
                    helps |= acc[l] + e.weight < dv[l];
                }
                dirty[e.to as usize] |= helps;
            }
        }
        if !changed {
            break;
        }
        forward = !forward;
    }
}

/// Per-worker buffers, reused across batches.
struct Scratch<const L: usize> {
    heap: IndexedHeap,
    dist: Vec<[f32; L]>,
    dirty: Vec<bool>,
    order: Vec<u32>,
}

impl<const L: usize> Default for Scratch<L> {
    fn default() -> Self {
        Scratch {
            heap: IndexedHeap::default(),
            dist: Vec::new(),
            dirty: Vec::new(),
            order: Vec::new(),
        }
    }
}

/// Point indices sorted by Morton code (10 bits per axis over the bounding box).
fn morton_order(points: &[[f32; 3]]) -> Vec<u32> {
    let mut lo = [f32::INFINITY; 3];
    let mut hi = [f32::NEG_INFINITY; 3];
    for p in points {
        for d in 0..3 {
            lo[d] = lo[d].min(p[d]);
            hi[d] = hi[d].max(p[d]);
        }
    }
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
        let mut lo = [f32::INFINITY; 3];
        let mut hi = [f32::NEG_INFINITY; 3];
        for p in points {
            for d in 0..3 {
                lo[d] = lo[d].min(p[d]);
                hi[d] = hi[d].max(p[d]);
            }
        }
        let extent = (0..3).map(|d| hi[d] - lo[d]).fold(0.0f32, f32::max);
        let samples = n.min(8);
        let mut radii: Vec<f32> = (0..samples)
            .map(|s| {
                let p = points[s * n / samples];
                let mut d2: Vec<f32> = points.iter().map(|q| squared(&p, q)).collect();
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
                let d2 = squared(&p, pq);
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

fn squared(a: &[f32; 3], b: &[f32; 3]) -> f32 {
    let (x, y, z) = (a[0] - b[0], a[1] - b[1], a[2] - b[2]);
    x * x + y * y + z * z
}

/// Each point's `kk` nearest other points, flat by position in `order` (a Morton order:
/// `order[pos]`'s list is `pos * kk..`), found on a [`Grid`]. Queries run in parallel
/// chunks of consecutive Morton positions; within a chunk, the previous point `q` bounds
/// the `kk`-th distance of the next point `p` by `|p - q| + r(q)` (the `kk + 1` points
/// within `r(q)` of `q` lie within that of `p`), so only cells near that ball are scanned.
fn knn_lists(points: &[[f32; 3]], order: &[u32], kk: usize) -> Vec<u32> {
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
fn assemble(
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

/// Connected component of each node (0-based labels) and their number, by breadth-first
/// search.
fn components(offsets: &[u32], edges: &[Edge]) -> (Vec<u32>, usize) {
    let n = offsets.len() - 1;
    let mut label = vec![u32::MAX; n];
    let mut queue = Vec::with_capacity(n);
    let mut count = 0;
    for root in 0..n {
        if label[root] != u32::MAX {
            continue;
        }
        label[root] = count as u32;
        queue.clear();
        queue.push(root as u32);
        let mut head = 0;
        while head < queue.len() {
            let u = queue[head] as usize;
            head += 1;
            for e in &edges[offsets[u] as usize..offsets[u + 1] as usize] {
                if label[e.to as usize] == u32::MAX {
                    label[e.to as usize] = count as u32;
                    queue.push(e.to);
                }
            }
        }
        count += 1;
    }
    (label, count)
}

/// Union-find with path halving, for Kruskal over components.
struct DisjointSets(Vec<u32>);

impl DisjointSets {
    fn new(n: usize) -> Self {
        DisjointSets((0..n as u32).collect())
    }
    fn find(&mut self, mut x: usize) -> usize {
        while self.0[x] as usize != x {
            let grand = self.0[self.0[x] as usize];
            self.0[x] = grand;
            x = grand as usize;
        }
        x
    }
    /// Merges the sets of `a` and `b`; false when they were already one set.
    fn union(&mut self, a: usize, b: usize) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        self.0[ra.max(rb)] = ra.min(rb) as u32;
        true
    }
}

/// Bridges joining `count` components (`component[i]` labels point `i`): a minimum
/// spanning tree over components, each pair weighted by its closest point pair.
fn join_components(
    points: &[[f32; 3]],
    component: &[u32],
    count: usize,
) -> Vec<(usize, usize, f32)> {
    if count <= 1 {
        return Vec::new();
    }
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); count];
    for (i, &c) in component.iter().enumerate() {
        members[c as usize].push(i as u32);
    }
    // Closest pair between every two components: query each point of the smaller one in a
    // k-d tree of the larger. Every component of a k-NN graph has more than k points, so
    // there are at most n / (k + 1) components and this stays cheap.
    let trees: Vec<Tree> = members
        .iter()
        .map(|m| {
            let pts: Vec<[f32; 3]> = m.iter().map(|&i| points[i as usize]).collect();
            Tree::new_from_slice(&pts)
        })
        .collect();
    let pairs: Vec<(usize, usize)> = (0..count)
        .flat_map(|a| (a + 1..count).map(move |b| (a, b)))
        .collect();
    let mut candidates: Vec<(f32, usize, usize, usize, usize)> = pairs
        .par_iter()
        .map(|&(a, b)| {
            let (small, large) = if members[a].len() <= members[b].len() {
                (a, b)
            } else {
                (b, a)
            };
            let mut best = (f32::INFINITY, 0usize, 0usize);
            for &i in &members[small] {
                let nb = trees[large].nearest_one::<SquaredEuclidean>(&points[i as usize]);
                let j = members[large][nb.item as usize] as usize;
                if nb.distance < best.0 {
                    best = (nb.distance, i as usize, j);
                }
            }
            (best.0, best.1.min(best.2), best.1.max(best.2), a, b)
        })
        .collect();
    // Kruskal over components (ties broken by indices, so the result is deterministic).
    candidates.sort_by(|x, y| x.0.total_cmp(&y.0).then((x.1, x.2).cmp(&(y.1, y.2))));
    let mut sets = DisjointSets::new(count);
    let mut bridges = Vec::with_capacity(count - 1);
    for (_, i, j, a, b) in candidates {
        if sets.union(a, b) {
            bridges.push((i, j, edge_length(points, i, j)));
            if bridges.len() == count - 1 {
                break;
            }
        }
    }
    bridges
}

/// Indexed 4-ary min-heap of `(f32 bits, node)` packed in a u64 (the bit pattern of a
/// non-negative f32 orders like its value), with decrease-key, so each node is in the heap
/// at most once. Measured faster than a lazy-deletion binary heap or a radix heap here.
#[derive(Default)]
struct IndexedHeap {
    heap: Vec<u64>,
    /// Heap slot of each node; `ABSENT` before it is pushed, `DONE` after it is popped.
    slot: Vec<u32>,
}

impl IndexedHeap {
    const ABSENT: u32 = u32::MAX;
    const DONE: u32 = u32::MAX - 1;

    fn reset(&mut self, n: usize) {
        self.heap.clear();
        self.slot.clear();
        self.slot.resize(n, Self::ABSENT);
    }

    /// Inserts `node` or lowers its key; `key` must be below its current key and the node
    /// must not have been popped (true for Dijkstra with non-negative weights).
    #[inline]
    fn decrease(&mut self, node: u32, key: u32) {
        let entry = (key as u64) << 32 | node as u64;
        let mut i = match self.slot[node as usize] {
            Self::ABSENT => {
                self.heap.push(entry);
                self.heap.len() - 1
            }
            s => s as usize,
        };
        while i > 0 {
            let parent = (i - 1) / 4;
            let above = self.heap[parent];
            if above <= entry {
                break;
            }
            self.heap[i] = above;
            self.slot[above as u32 as usize] = i as u32;
            i = parent;
        }
        self.heap[i] = entry;
        self.slot[node as usize] = i as u32;
    }

    /// Removes the minimum, as `(key, node)`.
    #[inline]
    fn pop(&mut self) -> Option<(u32, u32)> {
        let top = *self.heap.first()?;
        let last = self.heap.pop().expect("non-empty");
        let len = self.heap.len();
        if len > 0 {
            // Sift `last` down from the root, choosing the least of up to 4 children.
            let mut i = 0;
            loop {
                let first = 4 * i + 1;
                if first >= len {
                    break;
                }
                let (mut least, mut at) = (self.heap[first], first);
                for c in first + 1..(first + 4).min(len) {
                    let v = self.heap[c];
                    (least, at) = if v < least { (v, c) } else { (least, at) };
                }
                if least >= last {
                    break;
                }
                self.heap[i] = least;
                self.slot[least as u32 as usize] = i as u32;
                i = at;
            }
            self.heap[i] = last;
            self.slot[last as u32 as usize] = i as u32;
        }
        self.slot[top as u32 as usize] = Self::DONE;
        Some(((top >> 32) as u32, top as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn fibonacci_sphere(n: usize) -> Vec<[f32; 3]> {
        let golden = std::f64::consts::PI * (3.0 - 5f64.sqrt());
        (0..n)
            .map(|i| {
                let z = 1.0 - 2.0 * (i as f64 + 0.5) / n as f64;
                let r = (1.0 - z * z).sqrt();
                let phi = golden * i as f64;
                [(r * phi.cos()) as f32, (r * phi.sin()) as f32, z as f32]
            })
            .collect()
    }

    fn blob(rng: &mut ChaCha8Rng, centre: [f32; 3], radius: f32, n: usize) -> Vec<[f32; 3]> {
        (0..n)
            .map(|_| std::array::from_fn(|d| centre[d] + radius * (rng.random::<f32>() - 0.5)))
            .collect()
    }

    /// Plain Dijkstra (binary heap, f64) on brute-force k-NN lists: an independent reference.
    fn reference(points: &[[f32; 3]], k: usize, source: usize) -> Vec<f64> {
        let n = points.len();
        let d = |i: usize, j: usize| euclidean(&points[i], &points[j]) as f64;
        let mut adj = vec![Vec::new(); n];
        for i in 0..n {
            let mut others: Vec<usize> = (0..n).filter(|&j| j != i).collect();
            others.sort_by(|&a, &b| d(i, a).total_cmp(&d(i, b)));
            for &j in others.iter().take(k) {
                adj[i].push(j);
                adj[j].push(i);
            }
        }
        let mut dist = vec![f64::INFINITY; n];
        let mut heap = std::collections::BinaryHeap::new();
        dist[source] = 0.0;
        heap.push(std::cmp::Reverse((0u64, source)));
        while let Some(std::cmp::Reverse((key, u))) = heap.pop() {
            if f64::from_bits(key) > dist[u] {
                continue;
            }
            for &v in &adj[u] {
                let nd = dist[u] + d(u, v);
                if nd < dist[v] {
                    dist[v] = nd;
                    heap.push(std::cmp::Reverse((nd.to_bits(), v)));
                }
            }
        }
        dist
    }

    #[test]
    fn sphere_matches_great_circle_distance() {
        // A Fibonacci sphere is locally a slightly sheared hexagonal lattice, so (as on the
        // grid below) k-NN paths zig-zag between a few directions: over pairs more than 0.3
        // apart the error is 0.9% on average and 2.8% at the 99th percentile, but up to
        // 4.9% in the worst direction. Edges are chords, a hair shorter than arcs.
        let points = fibonacci_sphere(6000);
        let graph = KnnGraph::build(&points, DEFAULT_K);
        assert!(graph.bridges().is_empty());
        let sources: Vec<usize> = (0..48).map(|i| i * 125 + 7).collect();
        let dist = graph.from_sources(&sources).unwrap();
        let mut errors = Vec::new();
        for (r, &s) in sources.iter().enumerate() {
            for (j, p) in points.iter().enumerate() {
                let dot: f64 = (0..3).map(|d| points[s][d] as f64 * p[d] as f64).sum();
                let truth = dot.clamp(-1.0, 1.0).acos();
                if truth > 0.3 {
                    errors.push((dist.get(r, j) as f64 - truth) / truth);
                }
            }
        }
        errors.sort_by(f64::total_cmp);
        let mean = errors.iter().sum::<f64>() / errors.len() as f64;
        let p99 = errors[errors.len() * 99 / 100];
        let (best, worst) = (errors[0], errors[errors.len() - 1]);
        assert!(mean < 0.015, "mean relative error {mean}");
        assert!(p99 < 0.03, "99th percentile relative error {p99}");
        assert!(
            worst < 0.05 && best > -0.002,
            "relative errors in [{best}, {worst}]"
        );
    }

    #[test]
    fn flat_grid_matches_euclidean_distance() {
        // On a square lattice the 20 nearest neighbours are the offsets (1,0), (1,1), (2,0)
        // and (2,1) up to symmetry: 16 directions at most 26.6 degrees apart, so a lattice
        // path overestimates a straight line by at most 1 / cos(13.3 deg) - 1 = 2.75%.
        let side = 60;
        let points: Vec<[f32; 3]> = (0..side * side)
            .map(|i| {
                let (x, y) = (i % side, i / side);
                [
                    x as f32 / (side - 1) as f32,
                    y as f32 / (side - 1) as f32,
                    0.0,
                ]
            })
            .collect();
        let graph = KnnGraph::build(&points, 20);
        let all = graph.all_pairs();
        let mut worst = 0.0f32;
        for i in 0..points.len() {
            for (j, p) in points.iter().enumerate() {
                let truth = euclidean(&points[i], p);
                let geo = all.get(i, j);
                assert!(geo >= truth * (1.0 - 1e-5), "{i} {j}: {geo} < {truth}");
                if truth > 0.3 {
                    worst = worst.max((geo - truth) / truth);
                }
            }
        }
        assert!(worst < 0.03, "worst relative error {worst}");
        assert!(worst > 0.02, "lattice paths should zig-zag: {worst}");
    }

    #[test]
    fn matches_independent_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let points = blob(&mut rng, [0.0; 3], 1.0, 400);
        let graph = KnnGraph::build(&points, 12);
        for source in [0, 17, 399] {
            let ours = graph.from_sources(&[source]).unwrap();
            let truth = reference(&points, 12, source);
            for (a, b) in ours.row(0).iter().zip(&truth) {
                assert!((*a as f64 - b).abs() <= 1e-5 * b.max(1e-3), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn batched_sweeps_equal_dijkstra_bit_for_bit() {
        let points = crate::bench::torus_cloud(700, 3);
        let graph = KnnGraph::build(&points, DEFAULT_K);
        let all = graph.all_pairs();
        // Repeated and scattered sources, through every batch size.
        let sources = [
            5, 699, 5, 300, 0, 123, 456, 321, 42, 600, 7, 8, 9, 10, 11, 12, 13, 650,
        ];
        let single = graph.solve_with_lanes(&sources, 1);
        for lanes in [4, 8, 16] {
            assert_eq!(
                graph.solve_with_lanes(&sources, lanes),
                single,
                "{lanes} lanes"
            );
        }
        for (r, &s) in sources.iter().enumerate() {
            assert_eq!(single.row(r), all.row(s), "source {s}");
        }
        assert_eq!(graph.from_sources(&sources).unwrap(), single);
    }

    #[test]
    fn all_pairs_is_symmetric() {
        let points = crate::bench::torus_cloud(500, 4);
        let all = KnnGraph::build(&points, DEFAULT_K).all_pairs();
        for i in 0..500 {
            assert_eq!(all.get(i, i), 0.0);
            for j in 0..i {
                let (a, b) = (all.get(i, j), all.get(j, i));
                assert!((a - b).abs() <= 1e-6 * a.max(b), "{i} {j}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn separate_blobs_are_bridged() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut points = blob(&mut rng, [0.0, 0.0, 0.0], 0.2, 150);
        points.extend(blob(&mut rng, [1.0, 0.2, 0.0], 0.2, 150));
        let graph = KnnGraph::build(&points, DEFAULT_K);
        assert_eq!(graph.bridges().len(), 1);
        let (bi, bj, length) = graph.bridges()[0];
        assert!((bi < 150) != (bj < 150), "bridge crosses the gap");
        let gap = (0..150)
            .flat_map(|i| (150..300).map(move |j| (i, j)))
            .map(|(i, j)| euclidean(&points[i], &points[j]))
            .fold(f32::INFINITY, f32::min);
        assert_eq!(length, gap, "bridge is the closest pair");
        let all = graph.all_pairs();
        assert!(all.data.iter().all(|d| d.is_finite()));
        for i in 0..150 {
            for j in 150..300 {
                let d = all.get(i, j);
                assert!(
                    d >= euclidean(&points[i], &points[j]) && d >= gap,
                    "{i} {j}"
                );
            }
        }
    }

    #[test]
    fn many_components_form_a_spanning_tree() {
        // Four blobs in a row: the bridges join neighbours, never skip one.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let points: Vec<[f32; 3]> = (0..4)
            .flat_map(|b| blob(&mut rng, [b as f32, 0.0, 0.0], 0.1, 40))
            .collect();
        let graph = KnnGraph::build(&points, 10);
        let mut crossings: Vec<(usize, usize)> = graph
            .bridges()
            .iter()
            .map(|&(i, j, _)| ((i / 40).min(j / 40), (i / 40).max(j / 40)))
            .collect();
        crossings.sort();
        assert_eq!(crossings, vec![(0, 1), (1, 2), (2, 3)]);
        assert!(graph.all_pairs().data.iter().all(|d| d.is_finite()));
    }

    #[test]
    fn out_of_range_source_is_an_error_naming_it() {
        let graph = KnnGraph::build(&fibonacci_sphere(50), 5);
        let err = graph.from_sources(&[3, 50]).unwrap_err().to_string();
        assert!(err.contains("50") && err.contains("sources[1]"), "{err}");
        assert!(graph.from_sources(&[49]).is_ok());
    }

    #[test]
    fn tiny_clouds_do_not_panic() {
        let empty = KnnGraph::build(&[], DEFAULT_K);
        assert_eq!(empty.num_points(), 0);
        assert_eq!(empty.all_pairs().data.len(), 0);
        assert_eq!(empty.from_sources(&[]).unwrap().rows, 0);
        assert!(empty.from_sources(&[0]).is_err());

        let one = KnnGraph::build(&[[1.0, 2.0, 3.0]], DEFAULT_K);
        assert_eq!(one.all_pairs().data, vec![0.0]);
        assert_eq!(one.from_sources(&[0, 0]).unwrap().data, vec![0.0, 0.0]);
    }

    #[test]
    fn k_at_least_n_gives_euclidean_distances() {
        let points = fibonacci_sphere(30);
        for k in [29, 30, 100] {
            let all = KnnGraph::build(&points, k).all_pairs();
            for i in 0..30 {
                for j in 0..30 {
                    let e = euclidean(&points[i], &points[j]);
                    assert!((all.get(i, j) - e).abs() <= 1e-6, "k {k}: {i} {j}");
                }
            }
        }
        // k = 0: only the bridges, i.e. a Euclidean minimum spanning tree.
        let mst = KnnGraph::build(&points, 0);
        assert_eq!(mst.num_edges(), 29);
        assert!(mst.all_pairs().data.iter().all(|d| d.is_finite()));
    }

    #[test]
    fn duplicate_points_are_zero_apart() {
        let base = fibonacci_sphere(200);
        let points: Vec<[f32; 3]> = base
            .iter()
            .chain(base.iter())
            .chain(&base)
            .copied()
            .collect();
        let graph = KnnGraph::build(&points, DEFAULT_K);
        let d = graph.from_sources(&[0, 1]).unwrap();
        assert_eq!(d.get(0, 200), 0.0);
        assert_eq!(d.get(0, 400), 0.0);
        assert!(d.data.iter().all(|v| v.is_finite()));
        // Many exact copies of one point: more duplicates than k.
        let same = vec![[0.5f32; 3]; 50];
        assert!(KnnGraph::build(&same, 5)
            .all_pairs()
            .data
            .iter()
            .all(|&v| v == 0.0));
    }

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
            let d = |j: u32| squared(&points[i], &points[j as usize]);
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
        check_knn_lists(&crate::bench::torus_cloud(800, 9), 20);
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
