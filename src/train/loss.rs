//! The geodesic consistency loss (paper Eq. 1-4) with hard-negative mining.
//!
//! All annotated points of a batch are pooled and labelled by their correspondence set.
//! Positive pairs (same set) are pulled together; negative pairs (different sets) are
//! pushed apart until their embedding distance reaches the sets' margin. Negatives vastly
//! outnumber positives, so only the ones that violate their margin most are kept:
//! `negatives_per_positive` x the number of positive pairs (1 in the paper).
//!
//! `L = mean(pull) + lambda * mean(push)` in both forms:
//! - paper:   pull = d,   push = relu(D(Ci,Cj) - d)
//! - squared: pull = d^2, push = relu(D(Ci,Cj) - d)^2 (the reference code's form; it
//!   averages pull and push terms together, which is the same up to a factor of 1/2)
//!
//! with `d = sqrt(|f(p) - f(q)|^2 + 1e-6)`, so the gradient stays finite at d = 0.

use super::config::{LossConfig, LossForm, MarginKind};
use super::margins::MarginTable;
use candle_core::{Result, Tensor};

/// A keypoint of one batch item: index into that item's points and its correspondence set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchKeypoint {
    pub point: usize,
    pub semantic_id: u32,
}

/// The margins the push term uses.
#[derive(Debug, Clone)]
pub enum Margins {
    Geodesic(MarginTable),
    Constant(f32),
    /// Pull only: the ablation that collapses.
    None,
}

impl Margins {
    pub fn from_config(cfg: &LossConfig, table: MarginTable) -> Margins {
        match cfg.margin {
            MarginKind::Geodesic => Margins::Geodesic(table),
            MarginKind::Constant => Margins::Constant(cfg.constant_margin),
            MarginKind::None => Margins::None,
        }
    }

    fn between(&self, a: u32, b: u32) -> f32 {
        match self {
            Margins::Geodesic(t) => t.get(a, b).unwrap_or_else(|| t.mean_margin()),
            Margins::Constant(c) => *c,
            Margins::None => 0.0,
        }
    }
}

/// The loss as a differentiable scalar plus its parts, for logging.
#[derive(Debug, Clone)]
pub struct LossValue {
    pub total: Tensor,
    pub pull: f32,
    pub push: f32,
    pub positives: usize,
    pub negatives: usize,
}

/// Evaluates the loss on `embeddings` `[B, N, D]`; `keypoints[b]` lists item b's points.
pub fn geodesic_consistency_loss(
    embeddings: &Tensor,
    keypoints: &[Vec<BatchKeypoint>],
    margins: &Margins,
    cfg: &LossConfig,
) -> Result<LossValue> {
    let (b, n, d) = embeddings.dims3()?;
    if keypoints.len() != b {
        candle_core::bail!(
            "loss: {} keypoint lists for a batch of {b}",
            keypoints.len()
        );
    }
    let mut index = Vec::new();
    let mut labels = Vec::new();
    for (item, kps) in keypoints.iter().enumerate() {
        for kp in kps {
            if kp.point >= n {
                candle_core::bail!("loss: keypoint index {} >= {n} points", kp.point);
            }
            index.push((item * n + kp.point) as u32);
            labels.push(kp.semantic_id);
        }
    }
    let dev = embeddings.device();
    let dtype = embeddings.dtype();
    let p = index.len();
    let zero = Tensor::zeros((), dtype, dev)?;
    if p < 2 {
        let total = (embeddings.sum_all()? * 0.0)?;
        return Ok(LossValue {
            total,
            pull: 0.0,
            push: 0.0,
            positives: 0,
            negatives: 0,
        });
    }
    let points = embeddings
        .reshape((b * n, d))?
        .index_select(&Tensor::new(index, dev)?, 0)?;
    let diff = points.unsqueeze(1)?.broadcast_sub(&points.unsqueeze(0)?)?;
    let sq = diff.sqr()?.sum(2)?.flatten_all()?; // [P * P]
    let dist = (&sq + 1e-6)?.sqrt()?;
    let dist_values: Vec<f32> = dist.to_dtype(candle_core::DType::F32)?.to_vec1()?;

    let mut positives = Vec::new();
    let mut negatives: Vec<(u32, f32, f32)> = Vec::new(); // (pair, margin, violation)
    for i in 0..p {
        for j in i + 1..p {
            let pair = i * p + j;
            if labels[i] == labels[j] {
                positives.push(pair as u32);
            } else if !matches!(margins, Margins::None) {
                let m = margins.between(labels[i], labels[j]);
                negatives.push((pair as u32, m, m - dist_values[pair]));
            }
        }
    }
    // Hard-negative mining: the pairs violating their margin most. A stable sort on the
    // violation keeps ties in pair order, so the choice is deterministic.
    let keep = ((positives.len().max(1) as f32) * cfg.negatives_per_positive).ceil() as usize;
    negatives.sort_by(|a, b| b.2.total_cmp(&a.2));
    negatives.truncate(keep);

    let pull = if positives.is_empty() {
        zero.clone()
    } else {
        let idx = Tensor::new(positives.as_slice(), dev)?;
        match cfg.form {
            LossForm::Paper => dist.index_select(&idx, 0)?.mean_all()?,
            LossForm::Squared => sq.index_select(&idx, 0)?.mean_all()?,
        }
    };
    let push = if negatives.is_empty() {
        zero
    } else {
        let idx: Vec<u32> = negatives.iter().map(|n| n.0).collect();
        let m: Vec<f32> = negatives.iter().map(|n| n.1).collect();
        let m = Tensor::new(m, dev)?.to_dtype(dtype)?;
        let hinge = (m - dist.index_select(&Tensor::new(idx, dev)?, 0)?)?.relu()?;
        match cfg.form {
            LossForm::Paper => hinge.mean_all()?,
            LossForm::Squared => hinge.sqr()?.mean_all()?,
        }
    };
    let total = (&pull + (&push * cfg.lambda as f64)?)?;
    Ok(LossValue {
        pull: pull.to_dtype(candle_core::DType::F32)?.to_scalar()?,
        push: push.to_dtype(candle_core::DType::F32)?.to_scalar()?,
        total,
        positives: positives.len(),
        negatives: negatives.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Two items, two keypoints each. Pooled: a=(0,0) set 0, b=(0,1) set 1 (item 0);
    /// c=(3,4) set 0, d=(1,1) set 1 (item 1).
    /// Positives: |a-c| = 5, |b-d| = 1. Negatives: |a-b| = 1, |a-d| = sqrt 2,
    /// |b-c| = sqrt 18, |c-d| = sqrt 13.
    fn batch() -> (Tensor, Vec<Vec<BatchKeypoint>>) {
        let e = Tensor::new(
            &[[[0f32, 0.], [0., 1.]], [[3., 4.], [1., 1.]]],
            &Device::Cpu,
        )
        .unwrap();
        let kp = |point, semantic_id| BatchKeypoint { point, semantic_id };
        (e, vec![vec![kp(0, 0), kp(1, 1)], vec![kp(0, 0), kp(1, 1)]])
    }

    fn table(margin: f32) -> MarginTable {
        MarginTable {
            semantic_ids: vec![0, 1],
            margins: vec![0.0, margin, margin, 0.0],
            counts: vec![1; 4],
        }
    }

    fn run(form: LossForm, margins: Margins, per_positive: f32) -> LossValue {
        let (e, kps) = batch();
        let cfg = LossConfig {
            form,
            negatives_per_positive: per_positive,
            ..Default::default()
        };
        geodesic_consistency_loss(&e, &kps, &margins, &cfg).unwrap()
    }

    fn total(v: &LossValue) -> f32 {
        v.total.to_scalar::<f32>().unwrap()
    }

    #[test]
    fn constant_margin_by_hand() {
        // Margin 2: violations a-b 1, a-d 2 - sqrt 2, the others negative: keep a-b, a-d.
        let hinge = 1.0 + (2.0 - 2f32.sqrt());
        let v = run(LossForm::Paper, Margins::Constant(2.0), 1.0);
        assert_eq!((v.positives, v.negatives), (2, 2));
        assert!((v.pull - 3.0).abs() < 1e-5, "{}", v.pull);
        assert!((v.push - hinge / 2.0).abs() < 1e-5, "{}", v.push);
        assert!((total(&v) - (3.0 + hinge / 2.0)).abs() < 1e-5);

        let v = run(LossForm::Squared, Margins::Constant(2.0), 1.0);
        let sq = 1.0 + (2.0 - 2f32.sqrt()).powi(2);
        assert!((v.pull - 13.0).abs() < 1e-4, "{}", v.pull);
        assert!((v.push - sq / 2.0).abs() < 1e-5, "{}", v.push);
    }

    #[test]
    fn geodesic_margin_by_hand_and_mining_count() {
        // Margin 3: a-b violates by 2, a-d by 3 - sqrt 2 (1.586), c-d by 3 - sqrt 13 < 0.
        let v = run(LossForm::Paper, Margins::Geodesic(table(3.0)), 1.0);
        assert!(
            (v.push - (2.0 + 3.0 - 2f32.sqrt()) / 2.0).abs() < 1e-5,
            "{}",
            v.push
        );
        // Twice the negatives: the next hardest are c-d then b-c, both inside the margin
        // only for c-d (3 - sqrt 13 < 0 too), so they add zeros to the mean.
        let v = run(LossForm::Paper, Margins::Geodesic(table(3.0)), 2.0);
        assert_eq!(v.negatives, 4);
        assert!(
            (v.push - (2.0 + 3.0 - 2f32.sqrt()) / 4.0).abs() < 1e-5,
            "{}",
            v.push
        );
        let v = run(LossForm::Squared, Margins::Geodesic(table(3.0)), 1.0);
        let expect = (4.0 + (3.0 - 2f32.sqrt()).powi(2)) / 2.0;
        assert!((v.push - expect).abs() < 1e-4, "{}", v.push);
    }

    #[test]
    fn mining_keeps_the_most_violating_pairs() {
        // With a margin of 4.5 every negative violates: a-b (3.5), a-d (3.09), c-d (0.89),
        // b-c (0.26); two positives keep the first two.
        let v = run(LossForm::Paper, Margins::Constant(4.5), 1.0);
        let expect = (3.5 + 4.5 - 2f32.sqrt()) / 2.0;
        assert!((v.push - expect).abs() < 1e-5, "{}", v.push);
    }

    #[test]
    fn pull_only_has_no_push() {
        let v = run(LossForm::Paper, Margins::None, 1.0);
        assert_eq!(v.negatives, 0);
        assert!((total(&v) - 3.0).abs() < 1e-5);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        let values: Vec<f64> = (0..18)
            .map(|i| ((i * 37 % 11) as f64 - 5.0) * 0.13)
            .collect();
        let var = Var::from_vec(values.clone(), (1, 6, 3), &dev).unwrap();
        let kps = vec![[0u32, 0, 1, 1, 2, 2]
            .iter()
            .enumerate()
            .map(|(i, &s)| BatchKeypoint {
                point: i,
                semantic_id: s,
            })
            .collect::<Vec<_>>()];
        let margins = Margins::Geodesic(MarginTable {
            semantic_ids: vec![0, 1, 2],
            margins: vec![0.0, 1.1, 2.3, 1.1, 0.0, 0.7, 2.3, 0.7, 0.0],
            counts: vec![1; 9],
        });
        for form in [LossForm::Paper, LossForm::Squared] {
            let cfg = LossConfig {
                form,
                ..Default::default()
            };
            let loss = |t: &Tensor| {
                geodesic_consistency_loss(t, &kps, &margins, &cfg)
                    .unwrap()
                    .total
                    .to_scalar::<f64>()
                    .unwrap()
            };
            let out = geodesic_consistency_loss(var.as_tensor(), &kps, &margins, &cfg).unwrap();
            let grad: Vec<f64> = out
                .total
                .backward()
                .unwrap()
                .get(var.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let h = 1e-6;
            for i in 0..values.len() {
                let mut plus = values.clone();
                plus[i] += h;
                let mut minus = values.clone();
                minus[i] -= h;
                let fp = loss(&Tensor::from_vec(plus, (1, 6, 3), &dev).unwrap());
                let fm = loss(&Tensor::from_vec(minus, (1, 6, 3), &dev).unwrap());
                let numeric = (fp - fm) / (2.0 * h);
                assert!(
                    (numeric - grad[i]).abs() < 1e-5 * (1.0 + numeric.abs()),
                    "{form:?} d/dx{i}: numeric {numeric} analytic {}",
                    grad[i]
                );
            }
        }
    }
}
