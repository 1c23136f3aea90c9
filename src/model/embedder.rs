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
        let mut one = self.embed_prepared_batch(std::slice::from_ref(cloud), what)?;
        Ok(one.pop().expect("one cloud in, one out"))
    }

    /// [`Self::embed_prepared`] for several clouds in one forward pass (`[B, num_points,
    /// 3]`): the scene's objects share the network's fixed costs. Preparation runs in
    /// parallel; `what` names the batch in errors.
    pub fn embed_prepared_batch(
        &self,
        clouds: &[Cloud],
        what: &str,
    ) -> Result<Vec<(crate::cloud::Prepared, Embeddings)>> {
        use rayon::prelude::*;
        if clouds.is_empty() {
            return Ok(Vec::new());
        }
        let prepared: Vec<_> = clouds
            .par_iter()
            .enumerate()
            .map(|(i, c)| {
                let name = if clouds.len() == 1 {
                    what.to_string()
                } else {
                    format!("{what} {i}")
                };
                prepare(c, &self.prepare, 0, &name)
            })
            .collect::<Result<_>>()?;
        self.forward_prepared(prepared, what)
    }

    /// The forward pass on clouds already prepared with this embedder's `prepare` config
    /// (one batch): models that share a preparation share its cost (farthest-point
    /// sampling of a dense object costs about half a forward pass).
    pub fn forward_prepared(
        &self,
        prepared: Vec<crate::cloud::Prepared>,
        what: &str,
    ) -> Result<Vec<(crate::cloud::Prepared, Embeddings)>> {
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        let (b, n) = (prepared.len(), self.prepare.num_points);
        if let Some(p) = prepared.iter().find(|p| p.points.len() != n) {
            return Err(Error::invalid(format!(
                "{what}: a prepared cloud has {} points, the network takes {n}",
                p.points.len()
            )));
        }
        let flat: Vec<f32> = prepared
            .iter()
            .flat_map(|p| p.points.iter().flatten().copied())
            .collect();
        let run = || -> candle_core::Result<Vec<f32>> {
            let input = Tensor::from_vec(flat, (b, n, 3), &self.device)?;
            let out = self.backbone.forward_t(&input, false)?;
            out.flatten_all()?.to_vec1::<f32>()
        };
        let data = run().map_err(Error::candle(format!("{what}: network forward pass")))?;
        let dim = data.len() / (b * n).max(1);
        prepared
            .into_iter()
            .zip(data.chunks(n * dim.max(1)))
            .map(|(p, rows)| Ok((p, Embeddings::new(n, dim, rows.to_vec())?)))
            .collect()
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
