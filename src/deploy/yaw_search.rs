//! Orientation hypotheses for objects turned any way about the up axis.
//!
//! A point network trained on one canonical yaw fails on an object turned far from it, and
//! trained on every yaw it does not learn the invariance at our model size (README, "Any
//! pose"). Instead the cloud is tried at `hypotheses` yaws evenly spaced over the full
//! turn. By default they are ranked by shape alone ([`shape_agreement`]: is there surface
//! where the category's keypoints lie in the canonical pose?), and one forward pass runs at
//! the winner, which is itself a coarse yaw estimate. Ranking by each hypothesis's matches
//! (a pass per hypothesis) was measured too and lost.

use super::DeployedModel;
use crate::cloud::kdtree::{build_kdtree, nearest, KdTree3};
use crate::cloud::rotation::{about_up, rotate_cloud};
use crate::cloud::{Cloud, Normalization, NormalizationMode, Prepared};
use crate::embedding::{Embedder, Embeddings};
use crate::error::{Error, Result};
use crate::matching::{KeypointMatch, Matcher, TemplateSet};
use nalgebra::Vector3;

/// A deployed model run at several yaws.
pub struct YawSearch<'a> {
    pub model: &'a DeployedModel,
    /// Yaws tried, `2 pi k / hypotheses` for k = 0..hypotheses; 1 = the model alone.
    pub hypotheses: usize,
    /// Matches on the winning hypothesis (and, by [`YawCriterion::Matches`], scores each).
    pub matcher: Matcher,
    pub criterion: YawCriterion,
}

/// How the hypotheses are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum YawCriterion {
    /// [`agreement`] of each hypothesis's matches: one forward pass per hypothesis.
    Matches,
    /// [`shape_agreement`]: the templates' canonical positions against the turned cloud's
    /// points, no network; then one forward pass, at the winner.
    #[default]
    Shape,
}

/// The winning hypothesis for one cloud.
#[derive(Debug, Clone)]
pub struct YawChoice {
    /// Radians about the up (y) axis the cloud was turned by before the winning pass.
    pub yaw: f32,
    /// The turned cloud's preparation; its sample indexes the input cloud (turning keeps
    /// the point order).
    pub prepared: Prepared,
    /// Embeddings of the prepared sample.
    pub embeddings: Embeddings,
    /// The matches on the turned cloud (xyz in the turned frame).
    pub matches: Vec<KeypointMatch>,
    /// [`agreement`] of the matches, in [0, 1].
    pub agreement: f32,
}

impl YawSearch<'_> {
    /// Ranks every hypothesis on `cloud` (in the model's frame, y up) by `criterion` and
    /// keeps the best (the lowest yaw on ties).
    pub fn search(&self, cloud: &Cloud) -> Result<YawChoice> {
        if self.hypotheses == 0 {
            return Err(Error::invalid(
                "yaw search: at least one hypothesis is needed",
            ));
        }
        let yaws = hypothesis_yaws(self.hypotheses);
        let turned: Vec<Cloud> = yaws.iter().map(|&yaw| turn_about_up(cloud, yaw)).collect();
        let templates = &self.model.templates;
        let chosen: Vec<usize> = match self.criterion {
            YawCriterion::Matches => (0..yaws.len()).collect(),
            YawCriterion::Shape => {
                let best = best_by_shape(self.model, cloud, &yaws, &turned);
                vec![best]
            }
        };
        let picked: Vec<Cloud> = chosen.iter().map(|&k| turned[k].clone()).collect();
        let embedded = self.model.embed_batch(&picked)?;
        let mut best: Option<YawChoice> = None;
        for ((&k, cloud), (prepared, embeddings)) in chosen.iter().zip(&picked).zip(embedded) {
            let yaw = yaws[k];
            let matches = self
                .matcher
                .match_prepared(templates, cloud, &prepared, &embeddings);
            let agreement = agreement(templates, &prepared, &matches);
            if best.as_ref().is_none_or(|b| agreement > b.agreement) {
                best = Some(YawChoice {
                    yaw,
                    prepared,
                    embeddings,
                    matches,
                    agreement,
                });
            }
        }
        Ok(best.expect("at least one hypothesis"))
    }
}

/// `2 pi k / n` for k = 0..n.
fn hypothesis_yaws(n: usize) -> Vec<f32> {
    (0..n)
        .map(|k| std::f32::consts::TAU * k as f32 / n as f32)
        .collect()
}

/// `cloud` turned by `yaw` radians about its frame's up (y) axis, point order kept.
pub fn turn_about_up(cloud: &Cloud, yaw: f32) -> Cloud {
    let mut c = cloud.clone();
    if yaw != 0.0 {
        rotate_cloud(&mut c, &about_up(yaw).into_inner());
    }
    c
}

/// The yaw (radians, one of `hypotheses` evenly spaced) that best turns `cloud` (in the
/// model's frame, y up) into `model`'s canonical pose by [`shape_agreement`], without a
/// forward pass; 0 for one hypothesis or a near-tie.
pub fn yaw_by_shape(model: &DeployedModel, cloud: &Cloud, hypotheses: usize) -> f32 {
    if hypotheses <= 1 {
        return 0.0;
    }
    best_shape(model, cloud, hypotheses).0
}

/// [`yaw_by_shape`]'s yaw and that yaw's [`shape_agreement`] (the score at the input's own
/// yaw for one hypothesis): how much `cloud` looks like `model`'s category, before any
/// forward pass.
pub fn best_shape(model: &DeployedModel, cloud: &Cloud, hypotheses: usize) -> (f32, f32) {
    let yaws = hypothesis_yaws(hypotheses.max(1));
    let turned: Vec<Cloud> = yaws.iter().map(|&yaw| turn_about_up(cloud, yaw)).collect();
    let scores = shape_scores(model, cloud, &yaws, &turned);
    let best = best_of(&scores);
    (yaws[best], scores[best])
}

/// Index of the best of `yaws` (`turned`: `cloud` turned by each) by shape.
fn best_by_shape(model: &DeployedModel, cloud: &Cloud, yaws: &[f32], turned: &[Cloud]) -> usize {
    best_of(&shape_scores(model, cloud, yaws, turned))
}

fn shape_scores(model: &DeployedModel, cloud: &Cloud, yaws: &[f32], turned: &[Cloud]) -> Vec<f32> {
    let tree = build_kdtree(&cloud.points);
    yaws.iter()
        .zip(turned)
        .map(|(&yaw, c)| {
            shape_agreement(&model.templates, &tree, c, yaw, model.prepare.normalization)
        })
        .collect()
}

/// Near-ties (a symmetric object, a view that hides the handle) keep the lowest yaw, the
/// input's own first: no turn called precise on no evidence.
fn best_of(scores: &[f32]) -> usize {
    let top = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    scores
        .iter()
        .position(|&s| s >= top - SHAPE_TIE)
        .unwrap_or(0)
}

/// How far (normalised units) a canonical keypoint position may lie from the nearest point
/// of the cloud before its vote halves: about 1.2 x this.
const SHAPE_SIGMA: f32 = 0.05;

/// Shape agreements within this of the best count as a tie.
const SHAPE_TIE: f32 = 0.03;

/// How well the cloud turned by `yaw` (`turned`; `tree` indexes the cloud before the turn)
/// has surface where the category's keypoints are in the canonical pose: each template's
/// canonical position, placed in the turned cloud's normalised frame, votes
/// `exp(-d^2 / 2 sigma^2)` for its distance `d` to the nearest point. A mug turned wrong
/// has no handle where the handle's keypoints are; a view that hides a part cannot tell,
/// and neither can a symmetric object (every yaw ties, the lowest wins). 0 without
/// canonical positions.
pub fn shape_agreement(
    templates: &TemplateSet,
    tree: &KdTree3,
    turned: &Cloud,
    yaw: f32,
    normalization: NormalizationMode,
) -> f32 {
    let norm = Normalization::fit(turned, normalization);
    let back = about_up(-yaw);
    let two_sigma2 = 2.0 * SHAPE_SIGMA * SHAPE_SIGMA;
    let n = templates.templates.len().max(1) as f32;
    templates
        .templates
        .iter()
        .filter_map(|t| t.position)
        .map(|c| {
            // Canonical (normalised, turned) -> turned -> the cloud as given.
            let p = back * Vector3::from(norm.invert_point(c));
            let d2 = nearest(tree, &[p.x, p.y, p.z]).distance * norm.scale * norm.scale;
            (-d2 / two_sigma2).exp()
        })
        .sum::<f32>()
        / n
}

/// How far (normalised units, bounding-box diagonal 1) a matched keypoint may lie from its
/// canonical position before its vote halves: about 1.2 x this.
const POSITION_SIGMA: f32 = 0.1;

/// How well matches on a hypothesis say "this object is in its canonical pose": each
/// accepted match votes its score, weighted by how close it lies to its template's
/// canonical position once the matches' mean offset from those positions is removed (a
/// partial view's box is not the whole object's). Pairwise distances, which the matcher's
/// geometric check tests, do not change under a turn; these positions do, so a hypothesis
/// that turned the object wrong loses its votes even when its embeddings look confident.
/// Without canonical positions (older files) the votes are the bare scores. Normalised by
/// the number of templates, so in [0, 1].
pub fn agreement(templates: &TemplateSet, prepared: &Prepared, matches: &[KeypointMatch]) -> f32 {
    let n_templates = templates.templates.len().max(1) as f32;
    let position = |id: u32| {
        templates
            .templates
            .iter()
            .find(|t| t.semantic_id == id)
            .and_then(|t| t.position)
    };
    let votes: Vec<(f32, Vector3<f32>)> = matches
        .iter()
        .filter(|m| m.accepted)
        .filter_map(|m| {
            let canonical = Vector3::from(position(m.semantic_id)?);
            let at = Vector3::from(prepared.transform.apply_point(m.xyz));
            Some((m.score, at - canonical))
        })
        .collect();
    let accepted_scores = matches.iter().filter(|m| m.accepted).map(|m| m.score);
    if votes.is_empty() {
        return accepted_scores.sum::<f32>() / n_templates;
    }
    let weight: f32 = votes.iter().map(|(s, _)| s).sum();
    let offset = votes.iter().map(|(s, d)| d * *s).sum::<Vector3<f32>>() / weight.max(1e-12);
    let two_sigma2 = 2.0 * POSITION_SIGMA * POSITION_SIGMA;
    votes
        .iter()
        .map(|(s, d)| s * (-(d - offset).norm_squared() / two_sigma2).exp())
        .sum::<f32>()
        / n_templates
}

impl Embedder for YawSearch<'_> {
    fn name(&self) -> String {
        format!("{} x{} yaws", self.model.name(), self.hypotheses)
    }

    /// The winning hypothesis's embeddings, extended to every input point.
    fn embed(&self, cloud: &Cloud) -> Result<Embeddings> {
        let choice = self.search(cloud)?;
        let nearest = choice
            .prepared
            .nearest_sample_of_each(&turn_about_up(cloud, choice.yaw));
        let dim = choice.embeddings.dim;
        let mut data = Vec::with_capacity(cloud.len() * dim);
        for &s in &nearest {
            data.extend_from_slice(choice.embeddings.row(s));
        }
        Embeddings::new(cloud.len(), dim, data)
    }
}
