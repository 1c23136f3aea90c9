//! Per-point embeddings, the stage between a backbone and everything that reads its output
//! (matching, templates, evaluation): the `Embeddings` type, the `Embedder` trait that
//! networks and baselines implement, and nearest-neighbour search in embedding space.

use crate::cloud::Cloud;
use crate::error::{Error, Result};

/// Per-point embeddings, row-major `[num_points, dim]`: row `i` belongs to point `i` of the
/// cloud that was embedded.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    pub num_points: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Embeddings {
    /// Checks that `data` holds exactly `num_points * dim` values.
    pub fn new(num_points: usize, dim: usize, data: Vec<f32>) -> Result<Embeddings> {
        if num_points.checked_mul(dim) != Some(data.len()) {
            return Err(Error::invalid(format!(
                "embeddings: {} values for {num_points} points x {dim} dims",
                data.len()
            )));
        }
        Ok(Embeddings {
            num_points,
            dim,
            data,
        })
    }

    /// The embedding of point `i`.
    #[inline]
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Checks the embeddings fit a cloud of `num_points` points and are finite; `what` names
    /// the model in the error, since a bad embedder usually fails on a few inputs only.
    pub fn validate(&self, num_points: usize, what: &str) -> Result<()> {
        if self.num_points != num_points {
            return Err(Error::invalid(format!(
                "{what}: embeddings have {} rows but the cloud has {num_points} points",
                self.num_points
            )));
        }
        if self.dim == 0 {
            return Err(Error::invalid(format!(
                "{what}: embeddings have 0 dimensions"
            )));
        }
        if self.data.len() != self.num_points * self.dim {
            return Err(Error::invalid(format!(
                "{what}: embeddings hold {} values, expected {} x {}",
                self.data.len(),
                self.num_points,
                self.dim
            )));
        }
        if let Some(k) = self.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "{what}: embedding of point {} has a non-finite value ({})",
                k / self.dim,
                self.data[k]
            )));
        }
        Ok(())
    }
}

/// Anything that maps a cloud to one embedding per point: the baselines here, trained
/// networks elsewhere. `Send + Sync` so evaluation can embed models in parallel.
pub trait Embedder: Send + Sync {
    /// A short name for reports and logs.
    fn name(&self) -> String;

    /// One embedding per point of `cloud`, in the cloud's point order.
    fn embed(&self, cloud: &Cloud) -> Result<Embeddings>;

    /// Embeds several clouds. The default runs `embed` in parallel on the CPU; an embedder
    /// that batches better (a network on a GPU) overrides it.
    fn embed_batch(&self, clouds: &[&Cloud]) -> Result<Vec<Embeddings>> {
        use rayon::prelude::*;
        clouds.par_iter().map(|c| self.embed(c)).collect()
    }
}

impl<E: Embedder + ?Sized> Embedder for &E {
    fn name(&self) -> String {
        (**self).name()
    }
    fn embed(&self, cloud: &Cloud) -> Result<Embeddings> {
        (**self).embed(cloud)
    }
    fn embed_batch(&self, clouds: &[&Cloud]) -> Result<Vec<Embeddings>> {
        (**self).embed_batch(clouds)
    }
}

impl<E: Embedder + ?Sized> Embedder for Box<E> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn embed(&self, cloud: &Cloud) -> Result<Embeddings> {
        (**self).embed(cloud)
    }
    fn embed_batch(&self, clouds: &[&Cloud]) -> Result<Vec<Embeddings>> {
        (**self).embed_batch(clouds)
    }
}

/// Index of the row of `emb` nearest to `q` (squared Euclidean; the first on ties).
pub fn nearest_row(emb: &Embeddings, q: &[f32]) -> usize {
    debug_assert_eq!(q.len(), emb.dim);
    let mut best = 0;
    let mut best_d = f32::INFINITY;
    for (i, row) in emb.data.chunks_exact(emb.dim).enumerate() {
        let d = squared_distance(row, q);
        if d < best_d {
            best_d = d;
            best = i;
        }
    }
    best
}

/// Squared Euclidean distance with eight independent accumulators, which lets the compiler
/// vectorise the loop (a single running sum is a serial dependency chain it may not reorder).
#[inline]
pub fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| (x - y) * (x - y))
        .sum();
    for (x, y) in a8.zip(b8) {
        for k in 0..8 {
            let d = x[k] - y[k];
            acc[k] += d * d;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_new_checks_length() {
        assert!(Embeddings::new(2, 3, vec![0.0; 6]).is_ok());
        assert!(Embeddings::new(2, 3, vec![0.0; 5]).is_err());
    }

    #[test]
    fn embeddings_validate_names_model_and_problem() {
        let e = Embeddings::new(2, 2, vec![0.0, 1.0, f32::NAN, 0.0]).unwrap();
        let msg = e.validate(2, "model m1").unwrap_err().to_string();
        assert!(msg.contains("model m1") && msg.contains("point 1"), "{msg}");
        let msg = e.validate(3, "model m2").unwrap_err().to_string();
        assert!(
            msg.contains("model m2") && msg.contains("3 points"),
            "{msg}"
        );
    }

    #[test]
    fn nearest_row_takes_the_first_on_ties() {
        let e = Embeddings::new(4, 9, (0..36).map(|k| (k / 18) as f32).collect()).unwrap();
        assert_eq!(nearest_row(&e, &[0.0; 9]), 0);
        assert_eq!(nearest_row(&e, &[1.0; 9]), 2);
        assert_eq!(squared_distance(&[1.0; 9], &[0.0; 9]), 9.0);
    }
}
