//! The push margin between correspondence sets: D(Ci, Cj), the mean geodesic distance
//! between the sets' points over the training models that have both (paper Eq. 2).
//! Computed once per category from the training split (a few dozen Dijkstra sources per
//! model: milliseconds) and stored with the run so training and resuming agree.

use crate::dataset::AnnotatedModel;
use crate::error::Result;
use crate::geodesic::KnnGraph;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Symmetric table of mean geodesic distances between correspondence sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarginTable {
    /// The category's semantic ids, sorted; rows and columns follow this order.
    pub semantic_ids: Vec<u32>,
    /// Row-major `[ids, ids]`. Pairs never seen together on a training model get the mean
    /// of all observed pairs (a neutral guess: neither "same part" nor "far apart").
    pub margins: Vec<f32>,
    /// How many models contributed to each entry (0 = filled with the mean).
    pub counts: Vec<u32>,
}

impl MarginTable {
    /// Computes the table from annotated training models, with a `k`-NN geodesic graph.
    pub fn compute(models: &[AnnotatedModel], k: usize) -> Result<MarginTable> {
        use rayon::prelude::*;
        let mut ids: Vec<u32> = models
            .iter()
            .flat_map(|m| m.annotation.keypoints.iter().map(|k| k.semantic_id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let slot: BTreeMap<u32, usize> = ids.iter().enumerate().map(|(i, &s)| (s, i)).collect();
        let n = ids.len();
        // Per model: (slot a, slot b, geodesic) for every pair of its keypoints.
        let per_model: Vec<Vec<(usize, usize, f32)>> = models
            .par_iter()
            .map(|m| -> Result<_> {
                let kps = &m.annotation.keypoints;
                let sources: Vec<usize> = kps.iter().map(|k| k.point_index).collect();
                let geo = KnnGraph::build(&m.cloud.points, k).from_sources(&sources)?;
                let mut out = Vec::with_capacity(kps.len() * kps.len());
                for (a, ka) in kps.iter().enumerate() {
                    for kb in kps {
                        out.push((
                            slot[&ka.semantic_id],
                            slot[&kb.semantic_id],
                            geo.get(a, kb.point_index),
                        ));
                    }
                }
                Ok(out)
            })
            .collect::<Result<_>>()?;
        let mut sums = vec![0f64; n * n];
        let mut counts = vec![0u32; n * n];
        for (a, b, d) in per_model.into_iter().flatten() {
            sums[a * n + b] += d as f64;
            counts[a * n + b] += 1;
        }
        let observed: Vec<f64> = (0..n * n)
            .filter(|&i| counts[i] > 0 && i / n != i % n)
            .map(|i| sums[i] / counts[i] as f64)
            .collect();
        let fill = if observed.is_empty() {
            0.0
        } else {
            observed.iter().sum::<f64>() / observed.len() as f64
        };
        let margins = (0..n * n)
            .map(|i| match (i / n == i % n, counts[i]) {
                (true, _) => 0.0,
                (false, 0) => fill as f32,
                (false, c) => (sums[i] / c as f64) as f32,
            })
            .collect();
        Ok(MarginTable {
            semantic_ids: ids,
            margins,
            counts,
        })
    }

    /// The margin between two sets; `None` when a set is unknown to the table.
    pub fn get(&self, a: u32, b: u32) -> Option<f32> {
        let n = self.semantic_ids.len();
        let i = self.semantic_ids.binary_search(&a).ok()?;
        let j = self.semantic_ids.binary_search(&b).ok()?;
        Some(self.margins[i * n + j])
    }

    /// Mean over distinct pairs: the natural constant for the constant-margin ablation.
    pub fn mean_margin(&self) -> f32 {
        let n = self.semantic_ids.len();
        let off: Vec<f32> = (0..n * n)
            .filter(|i| i / n != i % n)
            .map(|i| self.margins[i])
            .collect();
        if off.is_empty() {
            0.0
        } else {
            off.iter().sum::<f32>() / off.len() as f32
        }
    }
}
