//! `semcorr bench deploy`: for each precision, file size, CPU time to embed one test cloud
//! (both runtimes) and test-split mGE, next to the checkpoint network measured in the same
//! run. The README's deployment table is this output.

use super::warm_median_ms;
use crate::dataset::{Dataset, Split};
use crate::deploy::{DeployedModel, Precision, Runtime};
use crate::embedding::Embedder;
use crate::error::{Error, Result};
use crate::eval::evaluate_models;
use std::path::Path;

/// Runs the comparison; `tmp` receives the exported files.
pub fn deploy_bench(
    ckpt: &Path,
    data: Option<&Path>,
    tmp: &Path,
    repeats: usize,
) -> Result<String> {
    let (net, meta) = crate::train::load_network(ckpt)?;
    let cfg = &meta.meta.config;
    let data_dir = data.unwrap_or(&cfg.data);
    let dataset = Dataset::open(data_dir)?;
    let cat = dataset.category(&cfg.category)?;
    let test = dataset.load_split(cat, Split::Test)?;
    let cloud = &test
        .first()
        .ok_or_else(|| Error::invalid(format!("{}: empty test split", data_dir.display())))?
        .cloud;
    let reference = net.embedder(cfg.prepare, &candle_core::Device::Cpu);
    let mut out = format!(
        "checkpoint {} (epoch {}), {} test models, embed 1 cloud of {} points, median of {repeats}, {} rayon threads\n\n",
        ckpt.display(),
        meta.meta.epoch,
        test.len(),
        cloud.len(),
        rayon::current_num_threads()
    );
    out += "| model | file size | embed ms (dequantized) | embed ms (QMatMul) | test mGE |\n|---|---|---|---|---|\n";
    let ms = warm_median_ms(repeats, || reference.embed(cloud).map(|_| ()))?;
    let mge = evaluate_models(&cat.class_id, &cat.name, &test, &reference)?.mge;
    let size = std::fs::metadata(ckpt)
        .map_err(|e| Error::io(ckpt, e))?
        .len();
    out += &format!(
        "| checkpoint (PointNet eval mode, incl. optimizer state) | {:.2} MB | {ms:.1} | - | {mge:.4} |\n",
        size as f64 / 1e6
    );
    for p in [
        Precision::F32,
        Precision::F16,
        Precision::Q8_0,
        Precision::Q4_0,
    ] {
        let path = tmp.join(format!("{}-{p}.gguf", cat.name));
        DeployedModel::from_checkpoint(ckpt, p, data, Split::Train)?.save(&path)?;
        let size = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len();
        let deq = DeployedModel::load_with(&path, Runtime::Dequantized)?;
        let q = DeployedModel::load_with(&path, Runtime::Quantized)?;
        let t_deq = warm_median_ms(repeats, || Embedder::embed(&deq, cloud).map(|_| ()))?;
        let t_q = warm_median_ms(repeats, || Embedder::embed(&q, cloud).map(|_| ()))?;
        let mge = evaluate_models(&cat.class_id, &cat.name, &test, &deq)?.mge;
        out += &format!(
            "| gguf {p} | {:.2} MB | {t_deq:.1} | {t_q:.1} | {mge:.4} |\n",
            size as f64 / 1e6
        );
    }
    Ok(out)
}
