//! The category gate: which models run on which object, decided before any forward pass.
//!
//! A forward pass is the scene's largest cost (README, "Scenes"), and running every model
//! on every object multiplies it by the number of models. Each model's templates carry
//! their keypoints' canonical positions, so [`best_shape`] can say, from the object's
//! points alone, how much it looks like that model's category (a bottle has no surface
//! where a mug's handle keypoints are, a mug none where a bottle's neck is). A model runs
//! on an object only when its shape agreement is within `category_gate` of the best
//! model's; the networks' match quality then decides among those that ran, as before.
//! With `yaw_hypotheses` > 1 the same test gives each model's yaw for the object.
//!
//! With a classifier (`classifier_path`) its verdict replaces the shape test: a model
//! runs when its category's probability is within `category_gate` of the most likely
//! category's, turned back by the classifier's yaw (round categories are not turned) and
//! levelled by its up when the object leans ([`ObjectClassifier::turn_back`]).
//! Models of categories the classifier does not know run on every object, unturned. Its
//! probabilities are first weighed by each model's size range against the view's size
//! ([`size_weight`]): the classifier sees shapes scaled to one size.

use super::objects::Classified;
use super::Settings;
use crate::cloud::rotation::about_up;
use crate::cloud::Cloud;
use crate::deploy::classifier::ObjectClassifier;
use crate::deploy::yaw_search::best_shape;
use crate::deploy::DeployedModel;
use crate::error::Result;
use nalgebra::Matrix3;

/// How plausible a view `extent` across (bounding-box diagonal, metres) is for a category
/// whose objects are `range` across: a log-normal around the range's geometric mean, the
/// range spanning six standard deviations (a 15 cm view is about 8 times likelier a mug,
/// 0.08-0.30 m, than a jug, 0.12-0.50 m). A view shows most of an object's diagonal, so
/// the view's own extent stands for the object's.
fn size_weight([lo, hi]: [f32; 2], extent: f32) -> f32 {
    if !(lo > 0.0 && hi > lo && extent > 0.0) {
        return 1.0;
    }
    let sigma = (hi / lo).ln() / 6.0;
    let z = (extent / (lo * hi).sqrt()).ln() / sigma;
    (-0.5 * z * z).exp()
}

/// Per model and object: how the model sees the object turned and whether it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryGate {
    /// `[model][object]`: (turn, runs).
    decisions: Vec<Vec<(Matrix3<f32>, bool)>>,
    /// Per object, the classifier's verdict (empty without a classifier).
    classified: Vec<Classified>,
}

impl CategoryGate {
    /// Runs the shape test only where it is needed: for several models with a gate below
    /// 1, or for yaw hypotheses; otherwise every model runs at the input's yaw.
    pub fn decide(
        models: &[DeployedModel],
        clouds: &[Cloud],
        s: &Settings,
        classifier: Option<&ObjectClassifier>,
    ) -> Result<CategoryGate> {
        if let Some(c) = classifier {
            return Self::from_classifier(models, clouds, s, c);
        }
        let gated = models.len() > 1 && s.category_gate < 1.0;
        if !gated && s.yaw_hypotheses <= 1 {
            return Ok(CategoryGate {
                decisions: vec![vec![(Matrix3::identity(), true); clouds.len()]; models.len()],
                classified: Vec::new(),
            });
        }
        // [object][model]: (yaw, shape agreement). A degenerate cloud (every point the
        // same) may score NaN: it counts as no agreement.
        let shapes: Vec<Vec<(f32, f32)>> = {
            use rayon::prelude::*;
            clouds
                .par_iter()
                .map(|c| {
                    models
                        .iter()
                        .map(|m| {
                            let (yaw, shape) = best_shape(m, c, s.yaw_hypotheses);
                            (yaw, if shape.is_nan() { 0.0 } else { shape })
                        })
                        .collect()
                })
                .collect()
        };
        // The first best model always runs; others within the gate of it too.
        let best: Vec<usize> = shapes
            .iter()
            .map(|per_model| {
                (0..per_model.len())
                    .max_by(|&a, &b| per_model[a].1.total_cmp(&per_model[b].1).then(b.cmp(&a)))
                    .unwrap_or(0)
            })
            .collect();
        let decisions = (0..models.len())
            .map(|m| {
                shapes
                    .iter()
                    .zip(&best)
                    .map(|(per_model, &top)| {
                        let (yaw, shape) = per_model[m];
                        let within = shape >= per_model[top].1 - s.category_gate;
                        (about_up(yaw).into_inner(), !gated || m == top || within)
                    })
                    .collect()
            })
            .collect();
        Ok(CategoryGate {
            decisions,
            classified: Vec::new(),
        })
    }

    /// The classifier's decisions (module doc).
    fn from_classifier(
        models: &[DeployedModel],
        clouds: &[Cloud],
        s: &Settings,
        classifier: &ObjectClassifier,
    ) -> Result<CategoryGate> {
        let views: Vec<&Cloud> = clouds.iter().collect();
        let mut verdicts = classifier.classify(&views)?;
        let known = &classifier.config.categories;
        let index: Vec<Option<usize>> = models
            .iter()
            .map(|m| known.iter().position(|c| *c == m.category.name))
            .collect();
        // The classifier sees shapes normalised to one size; the models' size ranges say
        // how big each category really is (a jug is not mug-sized).
        for (v, cloud) in verdicts.iter_mut().zip(clouds) {
            let (lo, hi) = cloud.bounds();
            let extent = crate::cloud::dist2(&lo, &hi).sqrt();
            for (m, k) in models.iter().zip(&index) {
                if let (Some(k), Some(range)) = (k, m.templates.size_range_m) {
                    v.probabilities[*k] *= size_weight(range, extent);
                }
            }
            let sum: f32 = v.probabilities.iter().sum();
            if sum > 0.0 {
                v.probabilities.iter_mut().for_each(|p| *p /= sum);
            }
        }
        // The most likely of the loaded categories (the classifier may know more).
        let top: Vec<f32> = verdicts
            .iter()
            .map(|v| {
                index
                    .iter()
                    .flatten()
                    .map(|&k| v.probabilities[k])
                    .fold(0.0, f32::max)
            })
            .collect();
        let decisions = index
            .iter()
            .map(|k| {
                verdicts
                    .iter()
                    .zip(&top)
                    .map(|(v, &top)| match *k {
                        None => (Matrix3::identity(), true),
                        Some(k) => {
                            let runs = v.probabilities[k] >= top - s.category_gate;
                            (classifier.turn_back(v, k), runs)
                        }
                    })
                    .collect()
            })
            .collect();
        let classified = verdicts
            .iter()
            .map(|v| {
                let k = v.most_likely();
                let round = classifier.config.round[k];
                Classified {
                    category: known[k].clone(),
                    probability: v.probabilities[k],
                    yaw_deg: if round { 0.0 } else { v.yaw(k).to_degrees() },
                    yaw_confidence: if round { 0.0 } else { v.yaw_confidence(k) },
                    lean_deg: v.lean_deg(),
                }
            })
            .collect();
        Ok(CategoryGate {
            decisions,
            classified,
        })
    }

    /// The classifier's verdict on `object`, if there is a classifier.
    pub fn classified(&self, object: usize) -> Option<Classified> {
        self.classified.get(object).cloned()
    }

    /// Whether any model sees any object turned (then clouds are prepared per model).
    pub fn turns(&self) -> bool {
        self.decisions
            .iter()
            .flatten()
            .any(|(turn, runs)| *runs && *turn != Matrix3::identity())
    }

    /// Whether `model` runs on `object`; at least one model runs on every object.
    pub fn runs(&self, model: usize, object: usize) -> bool {
        self.decisions[model][object].1
    }

    /// The rotation (about the model frame's origin) by which `model` sees `object`.
    pub fn turn(&self, model: usize, object: usize) -> &Matrix3<f32> {
        &self.decisions[model][object].0
    }
}

#[cfg(test)]
mod tests {
    use super::size_weight;

    #[test]
    fn size_weights_favour_the_category_whose_range_fits() {
        let (mug, jug) = ([0.08, 0.30], [0.12, 0.50]);
        assert!((size_weight(mug, (0.08f32 * 0.30).sqrt()) - 1.0).abs() < 1e-6);
        assert!(size_weight(mug, 0.15) > 5.0 * size_weight(jug, 0.15));
        assert!(size_weight(jug, 0.30) > size_weight(mug, 0.30));
        // No range, or a degenerate view: no opinion.
        assert_eq!(size_weight([0.0, 0.0], 0.2), 1.0);
        assert_eq!(size_weight(mug, 0.0), 1.0);
    }
}
