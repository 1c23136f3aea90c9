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

use super::Settings;
use crate::cloud::Cloud;
use crate::deploy::yaw_search::best_shape;
use crate::deploy::DeployedModel;

/// Per model and object: the shape test's yaw and whether the model runs.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryGate {
    /// `[model][object]`: (yaw, runs).
    decisions: Vec<Vec<(f32, bool)>>,
}

impl CategoryGate {
    /// Runs the shape test only where it is needed: for several models with a gate below
    /// 1, or for yaw hypotheses; otherwise every model runs at the input's yaw.
    pub fn decide(models: &[DeployedModel], clouds: &[Cloud], s: &Settings) -> CategoryGate {
        let gated = models.len() > 1 && s.category_gate < 1.0;
        if !gated && s.yaw_hypotheses <= 1 {
            return CategoryGate {
                decisions: vec![vec![(0.0, true); clouds.len()]; models.len()],
            };
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
                        (yaw, !gated || m == top || within)
                    })
                    .collect()
            })
            .collect();
        CategoryGate { decisions }
    }

    /// Whether `model` runs on `object`; at least one model runs on every object.
    pub fn runs(&self, model: usize, object: usize) -> bool {
        self.decisions[model][object].1
    }

    /// The yaw (radians about the model frame's up) at which `model` sees `object`.
    pub fn yaw(&self, model: usize, object: usize) -> f32 {
        self.decisions[model][object].0
    }
}
