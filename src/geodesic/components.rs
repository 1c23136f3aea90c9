//! Joining the k-NN graph's connected components into one, so that every geodesic
//! distance is finite (see the parent module's doc for why this departs from the
//! reference code).
//!
//! Kept apart from graph building because it is a separate pass over the finished
//! adjacency, with its own data structures (union-find, one k-d tree per component).

use super::graph::edge_length;
use super::Edge;
use crate::cloud::kdtree::{build_kdtree, nearest, KdTree3};
use rayon::prelude::*;

/// Connected component of each node (0-based labels) and their number, by breadth-first
/// search.
pub(super) fn connected_components(offsets: &[u32], edges: &[Edge]) -> (Vec<u32>, usize) {
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
pub(super) fn join_components(
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
    let trees: Vec<KdTree3> = members
        .iter()
        .map(|m| {
            let pts: Vec<[f32; 3]> = m.iter().map(|&i| points[i as usize]).collect();
            build_kdtree(&pts)
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
                let nb = nearest(&trees[large], &points[i as usize]);
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

#[cfg(test)]
mod tests {
    use crate::geodesic::graph::euclidean;
    use crate::geodesic::tests::blob;
    use crate::geodesic::{KnnGraph, DEFAULT_K};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

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
}
