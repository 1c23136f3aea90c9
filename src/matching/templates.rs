//! Keypoint templates: what a correspondence set looks like in embedding space (a robust
//! mean over annotated models and its spread) and where the sets lie relative to each
//! other in the normalised frame (pairwise distance statistics for the geometric check).

use crate::cloud::{Cloud, Normalization, NormalizationMode, Prepared};
use crate::dataset::AnnotatedModel;
use crate::embedding::{squared_distance, Embeddings};
use crate::error::{Error, Result};
use crate::stats::median;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Fraction of members farthest from the median dropped before averaging: annotators
/// disagree and a few models are odd, and one outlier should not move the template.
pub const TRIM_FRACTION: f32 = 0.2;

/// One correspondence set's template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub semantic_id: u32,
    /// Human-readable name when the dataset has one (`Category::keypoint_names`), e.g.
    /// "handle top".
    pub name: Option<String>,
    /// Trimmed mean of the members' embeddings.
    pub embedding: Vec<f32>,
    /// Median distance of the members to `embedding`: the matcher's unit of distance.
    pub spread: f32,
    /// Annotated models that contributed.
    pub members: usize,
    /// Canonical position ([`canonical_positions`]): what the pose is fitted to; `None`
    /// in files from before poses.
    #[serde(default)]
    pub position: Option<[f32; 3]>,
}

/// Distance between two sets' keypoints in the normalised frame over the models that
/// have both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairStat {
    pub a: u32,
    pub b: u32,
    pub mean: f32,
    pub std: f32,
    pub count: usize,
}

/// All templates of a model plus where they came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateSet {
    /// e.g. "data/synth train split, 24 models".
    pub source: String,
    pub templates: Vec<Template>,
    pub pairs: Vec<PairStat>,
    /// The category's typical size: the mean bounding-box diagonal of the models the
    /// templates were built from, in their units. `None` in older model files.
    #[serde(default)]
    pub typical_size: Option<f32>,
    /// The sizes a real object of the category has: bounding-box diagonal, metres, as
    /// `[min, max]` (`semcorr export --size-range`). An object whose fitted pose is
    /// outside it is not of this category, however well its points match (a 40 cm box is
    /// no mug). `None` (older files, or not given): no size check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_range_m: Option<[f32; 2]>,
    /// How the category rests on a table (`semcorr export --rest`): poses are fitted for
    /// each way it lies. Upright (the default, and older files) is not written, so older
    /// files keep their checksums.
    #[serde(default, skip_serializing_if = "crate::pose::Rest::is_upright")]
    pub rest: crate::pose::Rest,
}

/// One model's annotated keypoints: (semantic id, embedding, normalised xyz).
type Observed = Vec<(u32, Vec<f32>, [f32; 3])>;

impl TemplateSet {
    /// Builds templates from annotated models; `embed` is the deployed network's
    /// preparation + forward pass (so templates live in the space the matcher searches).
    pub fn build(
        models: &[AnnotatedModel],
        embed: impl Fn(&Cloud) -> Result<(Prepared, Embeddings)> + Sync,
        names: &BTreeMap<u32, String>,
        source: &str,
    ) -> Result<TemplateSet> {
        let observed: Vec<Observed> = models
            .par_iter()
            .map(|m| {
                let (prep, emb) = embed(&m.cloud)?;
                let nearest = prep.nearest_sample_of_each(&m.cloud);
                Ok(m.annotation
                    .keypoints
                    .iter()
                    .filter(|k| k.point_index < m.cloud.len())
                    .map(|k| {
                        let e = emb.row(nearest[k.point_index]).to_vec();
                        let p = prep.transform.apply_point(m.cloud.points[k.point_index]);
                        (k.semantic_id, e, p)
                    })
                    .collect())
            })
            .collect::<Result<_>>()?;
        let mut by_set: BTreeMap<u32, Vec<&[f32]>> = BTreeMap::new();
        for (id, e, _) in observed.iter().flatten() {
            by_set.entry(*id).or_default().push(e);
        }
        let positions = canonical_positions(models);
        if by_set.is_empty() {
            return Err(Error::invalid(format!(
                "templates from {source}: no annotated keypoints in {} models",
                models.len()
            )));
        }
        let templates = by_set
            .into_iter()
            .map(|(id, members)| {
                let embedding = trimmed_mean(&members);
                let mut d: Vec<f64> = members
                    .iter()
                    .map(|m| f64::from(squared_distance(m, &embedding).sqrt()))
                    .collect();
                Template {
                    semantic_id: id,
                    name: names.get(&id).cloned(),
                    embedding,
                    spread: (median(&mut d) as f32).max(1e-6),
                    members: members.len(),
                    position: positions.get(&id).copied(),
                }
            })
            .collect();
        let diagonals: f64 = models
            .iter()
            .map(|m| {
                let (lo, hi) = m.cloud.bounds();
                f64::from(crate::cloud::dist2(&lo, &hi).sqrt())
            })
            .sum();
        Ok(TemplateSet {
            source: format!("{source}, {} models", models.len()),
            templates,
            pairs: pair_stats(&observed),
            typical_size: Some((diagonals / models.len().max(1) as f64) as f32),
            size_range_m: None,
            rest: Default::default(),
        })
    }

    /// Consistency of a set read from a file (`what` names it); the error says what is
    /// wrong.
    pub fn validate(&self, dim: usize, what: &str) -> Result<()> {
        let bad = |m: String| Error::invalid(format!("{what}: {m}"));
        for t in &self.templates {
            if t.embedding.len() != dim {
                return Err(bad(format!(
                    "template {} has {} dims, the network makes {dim}",
                    t.semantic_id,
                    t.embedding.len()
                )));
            }
            if !t.embedding.iter().all(|v| v.is_finite())
                || !t.spread.is_finite()
                || t.spread <= 0.0
            {
                return Err(bad(format!(
                    "template {} has a non-finite value or spread",
                    t.semantic_id
                )));
            }
        }
        Ok(())
    }

    /// Replaces each template's canonical position with the mean over `models` (complete
    /// clouds of the category; see [`canonical_positions`]); templates without a keypoint
    /// there lose theirs.
    pub fn set_positions(&mut self, models: &[AnnotatedModel]) {
        let positions = canonical_positions(models);
        for t in &mut self.templates {
            t.position = positions.get(&t.semantic_id).copied();
        }
    }

    /// The distance statistics of two sets, in either order.
    pub fn pair(&self, a: u32, b: u32) -> Option<&PairStat> {
        let (a, b) = (a.min(b), a.max(b));
        self.pairs.iter().find(|p| p.a == a && p.b == b)
    }
}

/// Each semantic id's mean position over `models` in the canonical frame poses are
/// fitted in: every model's bounding-box centre at the origin, diagonal 1, y up, front +z
/// (ShapeNet's and the procedural data's own normalisation). From partial views the box is
/// the visible part's, so positions should come from complete clouds
/// ([`TemplateSet::set_positions`]).
pub fn canonical_positions(models: &[AnnotatedModel]) -> BTreeMap<u32, [f32; 3]> {
    let mut sums: BTreeMap<u32, ([f64; 3], usize)> = BTreeMap::new();
    for m in models {
        let norm = Normalization::fit(&m.cloud, NormalizationMode::BboxDiagonal);
        for k in m
            .annotation
            .keypoints
            .iter()
            .filter(|k| k.point_index < m.cloud.len())
        {
            let p = norm.apply_point(m.cloud.points[k.point_index]);
            let (sum, n) = sums.entry(k.semantic_id).or_default();
            for a in 0..3 {
                sum[a] += f64::from(p[a]);
            }
            *n += 1;
        }
    }
    sums.into_iter()
        .map(|(id, (sum, n))| (id, sum.map(|c| (c / n as f64) as f32)))
        .collect()
}

/// Mean of the members closest to their coordinate-wise median, dropping the farthest
/// [`TRIM_FRACTION`] (always keeping at least one).
fn trimmed_mean(members: &[&[f32]]) -> Vec<f32> {
    let dim = members[0].len();
    let med: Vec<f32> = (0..dim)
        .map(|j| {
            let mut column: Vec<f64> = members.iter().map(|m| f64::from(m[j])).collect();
            median(&mut column) as f32
        })
        .collect();
    let mut order: Vec<(f32, usize)> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (squared_distance(m, &med), i))
        .collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let keep = ((members.len() as f32 * (1.0 - TRIM_FRACTION)).ceil() as usize).max(1);
    let mut mean = vec![0f32; dim];
    for &(_, i) in &order[..keep] {
        mean.iter_mut().zip(members[i]).for_each(|(a, b)| *a += b);
    }
    mean.iter_mut().for_each(|a| *a /= keep as f32);
    mean
}

fn pair_stats(observed: &[Observed]) -> Vec<PairStat> {
    let mut acc: BTreeMap<(u32, u32), Vec<f32>> = BTreeMap::new();
    for kps in observed {
        for (i, (ia, _, pa)) in kps.iter().enumerate() {
            for (ib, _, pb) in &kps[i + 1..] {
                let d = crate::cloud::dist2(pa, pb).sqrt();
                acc.entry(((*ia).min(*ib), (*ia).max(*ib)))
                    .or_default()
                    .push(d);
            }
        }
    }
    acc.into_iter()
        .map(|((a, b), d)| {
            let n = d.len() as f32;
            let mean = d.iter().sum::<f32>() / n;
            let var = d.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n;
            PairStat {
                a,
                b,
                mean,
                std: var.sqrt(),
                count: d.len(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimmed_mean_ignores_an_outlier() {
        let a = [1.0f32, 0.0];
        let b = [1.2f32, 0.0];
        let c = [0.8f32, 0.0];
        let d = [1.0f32, 0.1];
        let far = [100.0f32, 100.0];
        let m = trimmed_mean(&[&a, &b, &c, &d, &far]);
        assert!(
            (m[0] - 1.0).abs() < 1e-5 && (m[1] - 0.025).abs() < 1e-5,
            "{m:?}"
        );
    }
}
