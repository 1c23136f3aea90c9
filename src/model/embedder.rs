//! A backbone as an `Embedder`: the shared preprocessing, one forward pass in eval mode,
//! and the embeddings extended to every input point through its nearest sampled point.

use super::Backbone;
use crate::cloud::{prepare, Cloud, PrepareConfig};
use crate::embedding::{Embedder, Embeddings};
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};

/// Per-point embeddings of a network, as evaluation and inference use them.
pub struct NetworkEmbedder<'a> {
    pub backbone: &'a dyn Backbone,
    pub prepare: PrepareConfig,
    pub device: Device,
    pub name: String,
}

impl NetworkEmbedder<'_> {
    /// Embeddings of the prepared sample only: `[num_points, D]` plus the preparation.
    pub fn embed_prepared(
        &self,
        cloud: &Cloud,
        what: &str,
    ) -> Result<(crate::cloud::Prepared, Embeddings)> {
        let prepared = prepare(cloud, &self.prepare, 0, what)?;
        let n = prepared.points.len();
        let flat: Vec<f32> = prepared.points.iter().flatten().copied().collect();
        let run = || -> candle_core::Result<Vec<f32>> {
            let input = Tensor::from_vec(flat, (1, n, 3), &self.device)?;
            let out = self.backbone.forward_t(&input, false)?;
            out.flatten_all()?.to_vec1::<f32>()
        };
        let data = run().map_err(Error::candle(format!("{what}: network forward pass")))?;
        let dim = data.len() / n.max(1);
        let emb = Embeddings::new(n, dim, data)?;
        Ok((prepared, emb))
    }
}

impl Embedder for NetworkEmbedder<'_> {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn embed(&self, cloud: &Cloud) -> Result<Embeddings> {
        let (prepared, sampled) = self.embed_prepared(cloud, "cloud")?;
        let nearest = prepared.nearest_sample_of_each(cloud);
        let dim = sampled.dim;
        let mut data = Vec::with_capacity(cloud.len() * dim);
        for &s in &nearest {
            data.extend_from_slice(sampled.row(s));
        }
        Embeddings::new(cloud.len(), dim, data)
    }
}
