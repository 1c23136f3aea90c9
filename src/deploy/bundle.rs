//! The model file: GGUF (the llama.cpp container, readable by its tools and by candle) with
//! these keys, all checked on load:
//!
//! | key | type | content |
//! |---|---|---|
//! | `general.architecture` | string | `semcorr-pointnet` |
//! | `semcorr.format_version` | u32 | [`FORMAT_VERSION`] |
//! | `semcorr.precision` | string | `f32`, `f16`, `q8_0` or `q4_0` |
//! | `semcorr.backbone` | JSON | `BackboneConfig` (`{"kind": "pointnet", ...}`) |
//! | `semcorr.prepare` | JSON | `PrepareConfig` (num_points, normalization, sampling) |
//! | `semcorr.category.name`, `semcorr.category.class_id` | string | the category |
//! | `semcorr.templates` | JSON | `TemplateSet` |
//! | `semcorr.source` | string | checkpoint and epoch the weights came from |
//! | `semcorr.checksum` | string | `fnv1a64:<hex>` over the keys above and all tensors |
//!
//! Tensors: `pointnet.<layer>.weight` `[out, in]` (GGUF lists dims innermost first) and
//! `pointnet.<layer>.bias` `[out]` f32, for the layers of `FusedPointNet::folded_layout`.
//! The checksum makes a flipped byte anywhere in the weights or metadata an error instead
//! of silently wrong keypoints on a robot.

use super::{tensor_name, CategoryInfo, DeployedModel, Precision, TemplateSet};
use crate::cloud::PrepareConfig;
use crate::error::{read_file, write_file_atomic, Error, Result};
use crate::model::{BackboneConfig, FusedPointNet};
use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

/// Bumped on any incompatible change of keys or tensor layout.
pub const FORMAT_VERSION: u32 = 1;
pub const PRECISIONS: [&str; 4] = ["f32", "f16", "q8_0", "q4_0"];
const ARCHITECTURE: &str = "semcorr-pointnet";
const CHECKSUM_KEY: &str = "semcorr.checksum";

/// FNV-1a, 64 bit: tiny, dependency-free, and enough to catch corruption (not tampering).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    /// A field with its length, so moving bytes between fields changes the sum.
    fn field(&mut self, bytes: &[u8]) {
        self.update(&(bytes.len() as u64).to_le_bytes());
        self.update(bytes);
    }
}

/// Checksum over the `semcorr.*` string metadata (sorted) and the tensors (sorted by
/// name: name, dtype, dims, raw bytes).
fn checksum(meta: &BTreeMap<String, String>, tensors: &[(String, Vec<u8>, String)]) -> String {
    let mut h = Fnv::new();
    for (k, v) in meta {
        h.field(k.as_bytes());
        h.field(v.as_bytes());
    }
    let mut sorted: Vec<_> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, bytes, desc) in sorted {
        h.field(name.as_bytes());
        h.field(desc.as_bytes());
        h.field(bytes);
    }
    format!("fnv1a64:{:016x}", h.0)
}

fn describe(q: &QTensor) -> String {
    format!("{:?}{:?}", q.dtype(), q.shape().dims())
}

/// The metadata as strings (u32 as decimal), keyed as in the file.
fn metadata_strings(model: &DeployedModel) -> Result<BTreeMap<String, String>> {
    let json = |v: &dyn erased::Json, key: &str| {
        v.to_json()
            .map_err(|e| Error::parse(format!("serialising {key}"), e))
    };
    let mut m = BTreeMap::new();
    m.insert("semcorr.format_version".into(), FORMAT_VERSION.to_string());
    m.insert("semcorr.precision".into(), model.precision.name().into());
    m.insert(
        "semcorr.backbone".into(),
        json(&model.backbone, "semcorr.backbone")?,
    );
    m.insert(
        "semcorr.prepare".into(),
        json(&model.prepare, "semcorr.prepare")?,
    );
    m.insert("semcorr.category.name".into(), model.category.name.clone());
    m.insert(
        "semcorr.category.class_id".into(),
        model.category.class_id.clone(),
    );
    m.insert(
        "semcorr.templates".into(),
        json(&model.templates, "semcorr.templates")?,
    );
    m.insert("semcorr.source".into(), model.source.clone());
    Ok(m)
}

/// `serde_json::to_string` behind a trait object, so one closure serves several types.
mod erased {
    pub trait Json {
        fn to_json(&self) -> serde_json::Result<String>;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> serde_json::Result<String> {
            serde_json::to_string(self)
        }
    }
}

fn tensor_bytes(model: &DeployedModel) -> Result<Vec<(String, Vec<u8>, String)>> {
    model
        .weights
        .iter()
        .map(|(n, q)| {
            let data = q.data().map_err(Error::candle(format!("tensor '{n}'")))?;
            Ok((n.clone(), data.into_owned(), describe(q)))
        })
        .collect()
}

/// Writes `model` to `path` (temporary file + rename).
pub fn write(model: &DeployedModel, path: &Path) -> Result<()> {
    let meta = metadata_strings(model)?;
    let sum = checksum(&meta, &tensor_bytes(model)?);
    let mut values: Vec<(String, Value)> = vec![
        (
            "general.architecture".into(),
            Value::String(ARCHITECTURE.into()),
        ),
        (
            "general.name".into(),
            Value::String(format!("semcorr {}", model.category.name)),
        ),
    ];
    for (k, v) in &meta {
        let value = if k == "semcorr.format_version" {
            Value::U32(FORMAT_VERSION)
        } else {
            Value::String(v.clone())
        };
        values.push((k.clone(), value));
    }
    values.push((CHECKSUM_KEY.into(), Value::String(sum)));
    let md: Vec<(&str, &Value)> = values.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = model
        .weights
        .iter()
        .map(|(n, q)| (n.as_str(), q.as_ref()))
        .collect();
    let mut buf = Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &md, &ts)
        .map_err(|e| Error::format(path, format!("writing GGUF: {e}")))?;
    write_file_atomic(path, &buf.into_inner())
}

/// Reads and checks a model file; the network is built by the caller.
pub(super) fn read(path: &Path) -> Result<DeployedModel> {
    let bytes = read_file(path)?;
    let bad = |m: String| Error::format(path, m);
    if bytes.len() < 4 {
        return Err(bad(format!(
            "truncated: {} bytes, not even a GGUF magic",
            bytes.len()
        )));
    }
    if &bytes[..4] != b"GGUF" {
        return Err(bad(format!(
            "wrong magic {:?} (expected \"GGUF\"): not a semcorr model file",
            String::from_utf8_lossy(&bytes[..4])
        )));
    }
    let mut cursor = Cursor::new(bytes.as_slice());
    let content = Content::read(&mut cursor)
        .map_err(|e| bad(format!("truncated or malformed GGUF header: {e}")))?;

    // Metadata.
    let string = |key: &str| -> Result<String> {
        match content.metadata.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(bad(format!(
                "bad metadata: '{key}' is a {:?}, expected a string",
                v.value_type()
            ))),
            None => Err(bad(format!(
                "bad metadata: '{key}' is missing (not a semcorr model file?)"
            ))),
        }
    };
    let version = match content.metadata.get("semcorr.format_version") {
        Some(Value::U32(v)) => *v,
        Some(_) => {
            return Err(bad(
                "bad metadata: 'semcorr.format_version' is not a u32".into()
            ))
        }
        None => {
            return Err(bad(
                "bad metadata: 'semcorr.format_version' is missing (not a semcorr model file?)"
                    .into(),
            ))
        }
    };
    if version != FORMAT_VERSION {
        return Err(bad(format!(
            "format version {version}; this build reads version {FORMAT_VERSION}"
        )));
    }
    let precision: Precision = string("semcorr.precision")?
        .parse()
        .map_err(|e: Error| bad(e.to_string()))?;
    fn parse<T: serde::de::DeserializeOwned>(
        key: &str,
        s: &str,
        bad: impl Fn(String) -> Error,
    ) -> Result<T> {
        serde_json::from_str(s).map_err(|e| bad(format!("bad metadata: '{key}': {e}")))
    }
    let mut meta = BTreeMap::new();
    for key in [
        "semcorr.precision",
        "semcorr.backbone",
        "semcorr.prepare",
        "semcorr.category.name",
        "semcorr.category.class_id",
        "semcorr.templates",
        "semcorr.source",
    ] {
        meta.insert(key.to_string(), string(key)?);
    }
    meta.insert("semcorr.format_version".into(), version.to_string());
    let backbone: BackboneConfig = parse("semcorr.backbone", &meta["semcorr.backbone"], bad)?;
    let prepare: PrepareConfig = parse("semcorr.prepare", &meta["semcorr.prepare"], bad)?;
    if prepare.num_points == 0 {
        return Err(bad(
            "bad metadata: 'semcorr.prepare': num_points is 0".into()
        ));
    }
    let templates: TemplateSet = parse("semcorr.templates", &meta["semcorr.templates"], bad)?;
    templates
        .validate(backbone.embed_dim(), "bad metadata: 'semcorr.templates'")
        .map_err(|e| bad(e.to_string()))?;
    let BackboneConfig::PointNet(pn) = &backbone else {
        return Err(bad(
            "bad metadata: 'semcorr.backbone' is not a PointNet (the only deployable backbone)"
                .into(),
        ));
    };

    // Tensors: all present, complete, of the right shape and type.
    let data_start = content.tensor_data_offset;
    let file_len = bytes.len() as u64;
    for (name, info) in &content.tensor_infos {
        let elems = info.shape.elem_count();
        let block = info.ggml_dtype.block_size();
        let size = (elems / block * info.ggml_dtype.type_size()) as u64;
        let end = data_start.saturating_add(info.offset).saturating_add(size);
        if end > file_len {
            return Err(bad(format!(
                "truncated: tensor '{name}' ends at byte {end}, the file has {file_len}"
            )));
        }
    }
    let mut weights = Vec::new();
    let mut stored = Vec::new();
    for (layer, inner, out, bias) in FusedPointNet::folded_layout(pn) {
        let mut expect = vec![(tensor_name(&layer, "weight"), vec![out, inner], true)];
        if bias {
            expect.push((tensor_name(&layer, "bias"), vec![out], false));
        }
        for (name, shape, is_weight) in expect {
            let info = content
                .tensor_infos
                .get(&name)
                .ok_or_else(|| bad(format!("missing tensor '{name}'")))?;
            if info.shape.dims() != shape.as_slice() {
                return Err(bad(format!(
                    "tensor '{name}' has shape {:?}, the backbone needs {shape:?}",
                    info.shape.dims()
                )));
            }
            let want = if is_weight {
                precision.weight_dtype(inner)
            } else {
                GgmlDType::F32
            };
            if info.ggml_dtype != want {
                return Err(bad(format!(
                    "tensor '{name}' is {:?}, a {precision} model stores it as {want:?}",
                    info.ggml_dtype
                )));
            }
            let q = info
                .read(&mut cursor, data_start, &candle_core::Device::Cpu)
                .map_err(|e| bad(format!("tensor '{name}': {e}")))?;
            let data = q
                .data()
                .map_err(|e| bad(format!("tensor '{name}': {e}")))?
                .into_owned();
            stored.push((name.clone(), data, describe(&q)));
            weights.push((name, Arc::new(q)));
        }
    }
    if let Some(extra) = content
        .tensor_infos
        .keys()
        .find(|n| !weights.iter().any(|(w, _)| w == *n))
    {
        return Err(bad(format!("unexpected tensor '{extra}'")));
    }
    let stored_sum = string(CHECKSUM_KEY)?;
    let sum = checksum(&meta, &stored);
    if stored_sum != sum {
        return Err(bad(format!(
            "checksum mismatch (stored {stored_sum}, computed {sum}): the file is corrupt"
        )));
    }
    let category = CategoryInfo {
        name: meta["semcorr.category.name"].clone(),
        class_id: meta["semcorr.category.class_id"].clone(),
    };
    Ok(DeployedModel {
        backbone,
        prepare,
        category,
        templates,
        precision,
        source: meta["semcorr.source"].clone(),
        weights,
        net: Box::new(super::qnet::Unbuilt),
        device: candle_core::Device::Cpu,
    })
}
