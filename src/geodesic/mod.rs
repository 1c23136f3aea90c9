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
//! Neighbours are found exactly (not approximately) by scanning a uniform grid whose cell
//! side is about the typical `k`-th neighbour distance. Points are queried in parallel in a
//! Morton (space-filling curve) order so that each query's search radius can be bounded by
//! the previous point's (`|p - q| + r_k(q)` bounds `r_k(p)`), which limits the cells
//! scanned. A `kiddo` k-d tree (`crate::cloud::kdtree`) serves only to find the closest
//! point pair between two components when they are joined. Adjacency is compact (CSR:
//! offsets plus `(u32 neighbour, f32 weight)` pairs, nearest first); both directions of an
//! edge carry the same f32 weight bits.
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
//!
//! # Layout
//!
//! This file holds the public types and [`KnnGraph::build`], which strings the stages
//! together: `graph` (neighbour lists and the CSR adjacency), `components` (bridges
//! between components) and `paths` (Dijkstra and the sweeps).

mod components;
mod graph;
mod paths;

use crate::error::{Error, Result};
use components::{connected_components, join_components};
use graph::{assemble, knn_lists, morton_order};

/// Default neighbour count of the k-NN graph (the reference code's value).
pub const DEFAULT_K: usize = 20;

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
        let (component, count) = connected_components(&offsets, &edges);
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
}

#[cfg(test)]
mod tests {
    use super::graph::euclidean;
    use super::*;
    use rand::Rng;
    use rand_chacha::ChaCha8Rng;

    /// Computed in f64, unlike `crate::cloud::normals::fibonacci_sphere` (f32): the error
    /// bounds of the tests here were measured on these very points.
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

    /// Uniform random points in a cube of side `radius` about `centre` (shared by the
    /// submodules' tests).
    pub(super) fn blob(
        rng: &mut ChaCha8Rng,
        centre: [f32; 3],
        radius: f32,
        n: usize,
    ) -> Vec<[f32; 3]> {
        (0..n)
            .map(|_| std::array::from_fn(|d| centre[d] + radius * (rng.random::<f32>() - 0.5)))
            .collect()
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
}
