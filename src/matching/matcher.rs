//! From embeddings to keypoints: for each template the nearest point in embedding space,
//! scored against the template's spread, a ratio test against the best point elsewhere on
//! the object, and a geometric check of the matched points against the distances seen in
//! training.

use super::TemplateSet;
use crate::cloud::{Cloud, Prepared};
use crate::embedding::{squared_distance, Embeddings};
use serde::{Deserialize, Serialize};

/// Matching parameters; every default is a judgement call documented here.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MatchParams {
    /// Accept a match whose score is at least this.
    pub min_score: f32,
    /// Score = `exp(-0.5 (d / (score_scale * spread))^2)`: a typical training member
    /// (d = spread) scores 0.88 with the default 2, one at 4 x spread 0.14.
    pub score_scale: f32,
    /// Ratio test: reject when best / best-elsewhere distance exceeds this (the object
    /// has two equally good places, e.g. left and right handles).
    pub max_ratio: f32,
    /// "Elsewhere" = farther than this from the winner, in the normalised frame
    /// (bounding-box diagonal 1).
    pub exclusion_radius: f32,
    /// Run the geometric consistency check.
    pub geometric: bool,
    /// A pair of accepted matches is inconsistent when its distance is more than this many
    /// standard deviations from the training mean.
    pub max_z: f32,
    /// Floor of the training std (normalised units) so rigid pairs are not over-strict.
    pub min_pair_std: f32,
}

impl Default for MatchParams {
    fn default() -> Self {
        MatchParams {
            min_score: 0.3,
            score_scale: 2.0,
            max_ratio: 0.95,
            exclusion_radius: 0.1,
            geometric: true,
            max_z: 3.0,
            min_pair_std: 0.02,
        }
    }
}

/// One template's match on an input cloud.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeypointMatch {
    pub semantic_id: u32,
    pub name: Option<String>,
    /// Index into the INPUT cloud.
    pub index: usize,
    /// The point in the input frame.
    pub xyz: [f32; 3],
    /// In [0, 1], from the embedding distance relative to the template's spread.
    pub score: f32,
    /// Embedding distance to the template.
    pub distance: f32,
    /// best / best-elsewhere distance (0 when nothing lies elsewhere).
    pub ratio: f32,
    pub accepted: bool,
    /// Why it was rejected (score, ratio, geometry).
    pub rejected_by: Option<String>,
}

/// Matches templates against clouds.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    pub params: MatchParams,
}

impl Matcher {
    pub fn new(params: MatchParams) -> Self {
        Matcher { params }
    }

    /// Matches templates against embeddings of a prepared sample of `cloud`.
    pub fn match_prepared(
        &self,
        templates: &TemplateSet,
        cloud: &Cloud,
        prepared: &Prepared,
        emb: &Embeddings,
    ) -> Vec<KeypointMatch> {
        let p = &self.params;
        let r2 = p.exclusion_radius * p.exclusion_radius;
        let mut matches: Vec<KeypointMatch> = templates
            .templates
            .iter()
            .map(|t| {
                // Brute force over the sample: D x N multiply-adds per template.
                let d2: Vec<f32> = (0..emb.num_points)
                    .map(|i| squared_distance(emb.row(i), &t.embedding))
                    .collect();
                let best = (0..d2.len())
                    .min_by(|&a, &b| d2[a].total_cmp(&d2[b]))
                    .unwrap_or(0);
                let pb = prepared.points[best];
                let elsewhere = (0..d2.len())
                    .filter(|&i| crate::cloud::dist2(&prepared.points[i], &pb) > r2)
                    .map(|i| d2[i])
                    .fold(f32::INFINITY, f32::min);
                let distance = d2[best].sqrt();
                let ratio = if elsewhere.is_finite() && elsewhere > 0.0 {
                    distance / elsewhere.sqrt()
                } else {
                    0.0
                };
                let z = distance / (p.score_scale * t.spread);
                let score = (-0.5 * z * z).exp();
                let rejected_by = if score < p.min_score {
                    Some(format!("score {score:.2} < {:.2}", p.min_score))
                } else if ratio > p.max_ratio {
                    Some(format!("ratio {ratio:.2} > {:.2}", p.max_ratio))
                } else {
                    None
                };
                let index = prepared.source_index[best];
                KeypointMatch {
                    semantic_id: t.semantic_id,
                    name: t.name.clone(),
                    index,
                    xyz: cloud.points[index],
                    score,
                    distance,
                    ratio,
                    accepted: rejected_by.is_none(),
                    rejected_by,
                }
            })
            .collect();
        if p.geometric {
            self.geometric_check(templates, prepared, &mut matches);
        }
        matches
    }

    /// Repeatedly rejects the accepted match in the most inconsistent pairs (ties: the
    /// lower score) until every remaining pair fits the training distances.
    fn geometric_check(
        &self,
        templates: &TemplateSet,
        prepared: &Prepared,
        matches: &mut [KeypointMatch],
    ) {
        let p = &self.params;
        let pos: Vec<[f32; 3]> = matches
            .iter()
            .map(|m| prepared.transform.apply_point(m.xyz))
            .collect();
        loop {
            let accepted: Vec<usize> = (0..matches.len())
                .filter(|&i| matches[i].accepted)
                .collect();
            let mut bad = vec![0usize; matches.len()];
            for (k, &i) in accepted.iter().enumerate() {
                for &j in &accepted[k + 1..] {
                    let Some(s) = templates.pair(matches[i].semantic_id, matches[j].semantic_id)
                    else {
                        continue;
                    };
                    if s.count < 2 {
                        continue;
                    }
                    let d = crate::cloud::dist2(&pos[i], &pos[j]).sqrt();
                    if (d - s.mean).abs() > p.max_z * s.std.max(p.min_pair_std) {
                        bad[i] += 1;
                        bad[j] += 1;
                    }
                }
            }
            let worst = accepted
                .iter()
                .copied()
                .filter(|&i| bad[i] > 0)
                .max_by(|&a, &b| {
                    bad[a]
                        .cmp(&bad[b])
                        .then(matches[b].score.total_cmp(&matches[a].score))
                });
            let Some(w) = worst else { break };
            matches[w].accepted = false;
            matches[w].rejected_by = Some(format!(
                "geometry: inconsistent with {} other keypoint(s)",
                bad[w]
            ));
        }
    }
}

/// The matches as an aligned text table.
pub fn format_table(matches: &[KeypointMatch]) -> String {
    let mut s = format!(
        "{:>4}  {:<22} {:>7} {:>10} {:>10} {:>10} {:>6}  {}\n",
        "id", "name", "index", "x", "y", "z", "score", "status"
    );
    for m in matches {
        s += &format!(
            "{:>4}  {:<22} {:>7} {:>10.4} {:>10.4} {:>10.4} {:>6.3}  {}\n",
            m.semantic_id,
            m.name.as_deref().unwrap_or("-"),
            m.index,
            m.xyz[0],
            m.xyz[1],
            m.xyz[2],
            m.score,
            m.rejected_by.as_deref().unwrap_or("ok")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{prepare, PrepareConfig};
    use crate::matching::{PairStat, Template};

    /// Embeddings = one-hot "is near the tip": trivially separable.
    #[test]
    fn finds_a_separable_keypoint_and_rejects_bad_geometry() {
        let pts: Vec<[f32; 3]> = (0..100).map(|i| [i as f32 / 99.0, 0.0, 0.0]).collect();
        let cloud = Cloud::new(pts);
        let cfg = PrepareConfig {
            num_points: 100,
            ..Default::default()
        };
        let prep = prepare(&cloud, &cfg, 0, "line").unwrap();
        let mut data = Vec::new();
        for i in 0..100 {
            data.extend([
                if i == 97 { 1.0 } else { 0.0 },
                if i == 3 { 1.0 } else { 0.0 },
            ]);
        }
        let emb = Embeddings::new(100, 2, data).unwrap();
        let t = |id, e: Vec<f32>| Template {
            semantic_id: id,
            name: Some(format!("k{id}")),
            embedding: e,
            spread: 0.1,
            members: 5,
            position: None,
        };
        let mut set = TemplateSet {
            source: "test".into(),
            templates: vec![t(0, vec![1.0, 0.0]), t(1, vec![0.0, 1.0])],
            pairs: vec![PairStat {
                a: 0,
                b: 1,
                mean: 94.0 / 99.0,
                std: 0.01,
                count: 5,
            }],
            typical_size: None,
            size_range_m: None,
            rest: Default::default(),
        };
        let m = Matcher::default().match_prepared(&set, &cloud, &prep, &emb);
        assert_eq!((m[0].index, m[1].index), (97, 3));
        assert!(m.iter().all(|k| k.accepted && k.score > 0.99), "{m:?}");
        assert_eq!(m[0].name.as_deref(), Some("k0"));
        // Training says the two are 0.2 apart: one of them must go.
        set.pairs[0].mean = 0.2;
        let m = Matcher::default().match_prepared(&set, &cloud, &prep, &emb);
        assert_eq!(m.iter().filter(|k| k.accepted).count(), 1, "{m:?}");
        assert!(format_table(&m).contains("geometry"));
    }
}
