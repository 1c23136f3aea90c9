//! Shortest paths on a built [`KnnGraph`]: Dijkstra for a lone source, batched
//! label-correcting sweeps for many (the parent module's doc says why both give the same
//! bits).
//!
//! Apart from graph building because it only reads the finished CSR adjacency, and because
//! it holds the hot kernels: all-pairs work grows as N², building as N·k.

use super::{DistanceMatrix, Edge, KnnGraph};
use rayon::prelude::*;

/// Most sources solved together by one sweep batch.
const MAX_LANES: usize = 16;

impl KnnGraph {
    /// Distances from valid `sources`: batches of nearby sources, in parallel. Batches are
    /// sized so that every thread gets work; one-source batches run Dijkstra.
    pub(super) fn solve(&self, sources: &[usize]) -> DistanceMatrix {
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
    use crate::geodesic::graph::euclidean;
    use crate::geodesic::tests::blob;
    use crate::geodesic::DEFAULT_K;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

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
        let points = crate::tools::torus_cloud(700, 3);
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
        let points = crate::tools::torus_cloud(500, 4);
        let all = KnnGraph::build(&points, DEFAULT_K).all_pairs();
        for i in 0..500 {
            assert_eq!(all.get(i, i), 0.0);
            for j in 0..i {
                let (a, b) = (all.get(i, j), all.get(j, i));
                assert!((a - b).abs() <= 1e-6 * a.max(b), "{i} {j}: {a} vs {b}");
            }
        }
    }
}
