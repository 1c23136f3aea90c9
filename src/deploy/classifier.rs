//! The object classifier: one small PointNet that reads a depth view of an object (in the
//! pipeline's model frame: up +y, the sensor toward +z) and says which category it is and
//! how it is turned about up, before any embedding network runs.
//!
//! Why a network: deciding the category from the templates' canonical positions (the
//! shape test of `yaw_search`) or from a dense occupancy prior of each category was
//! measured on scenes of the six tabletop categories and got 56% and 47% of the objects
//! right (README, "Any pose"): a single view hides the back, and proportions vary within
//! a category more than between some. A view classifier learns what views of each
//! category look like. The same network's second head gives the object's yaw: the
//! per-category embedding networks were trained on canonical objects seen from every
//! side, so an object turned back by that yaw reads as well as a canonical one.
//!
//! Network: per-point MLP 3-64-128-256 (linear, batch norm, ReLU), max over points, MLP
//! 256-128, then one linear layer to `categories` logits, `yaw_bins` yaw logits per
//! category (`yaw_per_category`; one block shared by all in older files) and, with
//! `up_head`, three more outputs: the object's up axis in the view. Input: the view
//! normalised (bounding-box centre at the origin, diagonal 1) and thinned to
//! `num_points`. Yaw: `yaw_bins` evenly spaced bins of the object's turn about its own up
//! from its canonical pose (its front, +z, toward `(sin yaw, 0, cos yaw)` when upright);
//! round categories have none (trained without a yaw target). A yaw block per category
//! because each category's canonical front is its own: a mug's handle is at its side, a
//! pitcher's at its back, so a view that could be either gave a shared block two peaks a
//! quarter turn apart, and the mug model was turned by the pitcher's (README, "The
//! tabletop zoo at any yaw"). Up: what levels an object that does not stand upright in
//! the frame (leaning against something, or a frame no table levelled) before it is
//! turned back ([`ObjectClassifier::turn_back`]).
//!
//! It runs on the CPU whatever the node's `device`: 256 points per object (the embedding
//! models take 1024) and no per-point layers after the max-pool.
//!
//! File: safetensors with the weights (`points.{i}`, `head.{i}`, `out`) and, under the
//! `semcorr.classifier` metadata key, [`ClassifierMeta`] as JSON, with a checksum over
//! both.

use crate::cloud::rotation::{about_up, rotate_cloud};
use crate::cloud::{Cloud, Normalization, NormalizationMode};
use crate::error::{read_file, write_file_atomic, Error, Result};
use crate::model::{Activation, PointLinear};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use nalgebra::{Matrix3, Rotation3, Vector3};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Bumped on any incompatible change of the file.
pub const CLASSIFIER_FORMAT: u32 = 1;
const METADATA_KEY: &str = "semcorr.classifier";

/// What the classifier knows and how it was built (stored in the file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierConfig {
    /// Category names, in output order.
    pub categories: Vec<String>,
    /// Per category: a body of revolution, whose yaw is a convention (no yaw target).
    pub round: Vec<bool>,
    pub yaw_bins: usize,
    /// Points per view.
    pub num_points: usize,
    pub point_widths: Vec<usize>,
    pub head_widths: Vec<usize>,
    /// A third head: the object's up axis in the view (three outputs, normalised), for
    /// objects that do not stand upright in the frame. Files without it (format 1 as
    /// first written) have no such head, and their checksums stay valid.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub up_head: bool,
    /// One block of yaw bins per category instead of one shared block. Older files have
    /// the shared block, and their checksums stay valid.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub yaw_per_category: bool,
}

impl ClassifierConfig {
    pub fn new(categories: Vec<String>, round: Vec<bool>) -> ClassifierConfig {
        ClassifierConfig {
            categories,
            round,
            yaw_bins: 24,
            num_points: 256,
            point_widths: vec![64, 128, 256],
            head_widths: vec![128],
            up_head: true,
            yaw_per_category: true,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::invalid(format!("classifier config: {m}")));
        if self.categories.is_empty() || self.round.len() != self.categories.len() {
            return bad("one round flag per category, and at least one category");
        }
        if self.yaw_bins < 4 || self.num_points < 16 {
            return bad("at least 4 yaw bins and 16 points");
        }
        if self.point_widths.is_empty()
            || self
                .point_widths
                .iter()
                .chain(&self.head_widths)
                .any(|&w| w == 0)
        {
            return bad("layer widths must be positive, with at least one per-point layer");
        }
        Ok(())
    }

    pub fn outputs(&self) -> usize {
        self.up_start() + if self.up_head { 3 } else { 0 }
    }

    /// How many blocks of yaw bins follow the category logits.
    pub fn yaw_blocks(&self) -> usize {
        if self.yaw_per_category {
            self.categories.len()
        } else {
            1
        }
    }

    /// The output range of category `k`'s yaw bins.
    pub fn yaw_range(&self, k: usize) -> std::ops::Range<usize> {
        let block = if self.yaw_per_category { k } else { 0 };
        let start = self.categories.len() + block * self.yaw_bins;
        start..start + self.yaw_bins
    }

    /// Where the up head's three outputs start.
    pub fn up_start(&self) -> usize {
        self.categories.len() + self.yaw_blocks() * self.yaw_bins
    }
}

/// The file's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierMeta {
    pub format: u32,
    pub config: ClassifierConfig,
    /// How it was trained (data, epochs, validation figures), for people.
    pub source: String,
    /// `fnv1a64:<hex>` over the config and the tensors.
    pub checksum: String,
}

/// The network (training and inference).
pub struct ClassifierNet {
    points: Vec<PointLinear>,
    head: Vec<PointLinear>,
    out: PointLinear,
}

impl ClassifierNet {
    pub fn new(cfg: &ClassifierConfig, vb: VarBuilder) -> candle_core::Result<ClassifierNet> {
        let (points, c) =
            PointLinear::bn_mlp(3, &cfg.point_widths, Activation::Relu, vb.pp("points"))?;
        let (head, c) = PointLinear::bn_mlp(c, &cfg.head_widths, Activation::Relu, vb.pp("head"))?;
        let out = PointLinear::plain(c, cfg.outputs(), vb.pp("out"))?;
        Ok(ClassifierNet { points, head, out })
    }

    /// `points` `[B, N, 3]` -> `[B, outputs]`: category and yaw logits, then the up
    /// head's raw vector ([`ClassifierConfig::outputs`]).
    pub fn forward_t(&self, points: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        let (b, n, _) = points.dims3()?;
        let x = points.reshape((b * n, 3))?;
        let (last, rest) = self.points.split_last().expect("validated non-empty");
        let x = PointLinear::chain_t(rest, &x, train)?;
        let global = last.forward_max_t(&x, n, train)?;
        let h = PointLinear::chain_t(&self.head, &global, train)?;
        self.out.forward_t(&h, train)
    }
}

/// One object's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Per category (the classifier's order), summing to 1.
    pub probabilities: Vec<f32>,
    /// Per category, were the object of that category: its turn about up from the
    /// category's canonical pose (radians in (-pi, pi]), and the probability mass of that
    /// yaw's bin and its two neighbours, low when the view does not show which way the
    /// object faces (a mug with its handle hidden). The same for every category with a
    /// shared yaw block.
    pub yaws: Vec<(f32, f32)>,
    /// The object's up axis in the view (unit), with an up head; its yaw is about this
    /// axis.
    pub up: Option<[f32; 3]>,
}

impl Verdict {
    /// The most likely category (the classifier's index).
    pub fn most_likely(&self) -> usize {
        let p = &self.probabilities;
        (0..p.len())
            .max_by(|&a, &b| p[a].total_cmp(&p[b]))
            .unwrap_or(0)
    }

    /// The object's yaw were it of category `k` (radians, in (-pi, pi]).
    pub fn yaw(&self, k: usize) -> f32 {
        self.yaws[k].0
    }

    /// How sure the reading is of [`Self::yaw`]`(k)`, in [0, 1].
    pub fn yaw_confidence(&self, k: usize) -> f32 {
        self.yaws[k].1
    }

    /// How far the object leans from the frame's up (+y), degrees; 0 without an up head.
    pub fn lean_deg(&self) -> f32 {
        self.up
            .map_or(0.0, |u| u[1].clamp(-1.0, 1.0).acos().to_degrees())
    }
}

/// An object is levelled by the classifier's up only when it leans more than this from the
/// frame's up (degrees). The node's frame is levelled by the table's normal, exact for an
/// object standing on it, and the up head's error on upright views (median about 2
/// degrees, README "Any pose") would only add noise there; the models were trained
/// to tolerate a few degrees.
pub const MIN_LEAN_DEG: f32 = 6.0;

/// A loaded classifier.
pub struct ObjectClassifier {
    pub config: ClassifierConfig,
    pub source: String,
    net: ClassifierNet,
}

impl ObjectClassifier {
    /// Loads and checks a classifier file; the error names the file and what is wrong.
    pub fn load(path: &Path) -> Result<ObjectClassifier> {
        let bytes = read_file(path)?;
        let bad = |m: String| Error::format(path, m);
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a classifier file (safetensors): {e}")))?;
        let json = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get(METADATA_KEY))
            .ok_or_else(|| {
                bad(format!(
                    "no '{METADATA_KEY}' metadata: not a semcorr classifier"
                ))
            })?;
        let meta: ClassifierMeta =
            serde_json::from_str(json).map_err(|e| bad(format!("classifier metadata: {e}")))?;
        if meta.format != CLASSIFIER_FORMAT {
            return Err(bad(format!(
                "classifier format {} (this build reads {CLASSIFIER_FORMAT})",
                meta.format
            )));
        }
        meta.config.validate().map_err(|e| bad(e.to_string()))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
            .map_err(|e| bad(format!("classifier tensors: {e}")))?;
        let sum = checksum(&meta.config, &tensors).map_err(|e| bad(e.to_string()))?;
        if sum != meta.checksum {
            return Err(bad(format!(
                "checksum mismatch (stored {}, computed {sum}): the file is corrupt",
                meta.checksum
            )));
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let net = ClassifierNet::new(&meta.config, vb)
            .map_err(|e| bad(format!("classifier weights do not fit its config: {e}")))?;
        Ok(ObjectClassifier {
            config: meta.config,
            source: meta.source,
            net,
        })
    }

    /// Writes `tensors` (the network's variables by name) with `config` and `source`.
    pub fn save(
        path: &Path,
        config: &ClassifierConfig,
        tensors: &HashMap<String, Tensor>,
        source: &str,
    ) -> Result<()> {
        let meta = ClassifierMeta {
            format: CLASSIFIER_FORMAT,
            config: config.clone(),
            source: source.to_string(),
            checksum: checksum(config, tensors)?,
        };
        let json = serde_json::to_string(&meta).map_err(|e| Error::invalid(e.to_string()))?;
        let info = HashMap::from([(METADATA_KEY.to_string(), json)]);
        let mut entries: Vec<(&String, &Tensor)> = tensors.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let bytes = safetensors::serialize(entries, Some(info))
            .map_err(|e| Error::format(path, format!("writing the classifier: {e}")))?;
        write_file_atomic(path, &bytes)
    }

    /// The rotation that brings an object of category `k` (the classifier's index) with
    /// this verdict to its canonical pose: levelled (its up turned onto +y, when it leans
    /// more than [`MIN_LEAN_DEG`]), then turned back about up by its yaw (none for round
    /// categories). The yaw is used however unsure: views that show no yaw of their own
    /// were labelled with a convention ([`crate::dataset::synth::conventional_yaw`]: a
    /// mug with its handle hidden, or without one, has its handle side away from the
    /// sensor), so the most likely yaw is the best guess there is; not turning an unsure
    /// view (read as facing the sensor, the rule before the convention) was measured
    /// worse (README, "Any pose").
    pub fn turn_back(&self, verdict: &Verdict, k: usize) -> Matrix3<f32> {
        turn_back(verdict, k, self.config.round[k])
    }

    /// Verdicts for views in the model frame (y up, the sensor toward +z), each read once.
    /// A view whose yaw the reading is unsure of (below [`SURE_YAW`], not a round
    /// category) is read again over [`THINNINGS`] thinnings. A view that leans more than
    /// [`MIN_LEAN_DEG`] is read again levelled by its up, over as many: its category and
    /// yaw come from that reading (yaws read on leaning views were off by more than 30
    /// degrees for 6 of 34 mugs leaning up to 20 degrees, levelled for 2 of 34; README,
    /// "Any pose"), its up from the first.
    pub fn classify(&self, clouds: &[&Cloud]) -> Result<Vec<Verdict>> {
        let mut verdicts = self.read(clouds, 1)?;
        let unsure: Vec<usize> = (0..verdicts.len())
            .filter(|&i| {
                let v = &verdicts[i];
                let k = v.most_likely();
                !self.config.round[k] && v.yaw_confidence(k) < SURE_YAW
            })
            .collect();
        let again = self.read(
            &unsure.iter().map(|&i| clouds[i]).collect::<Vec<_>>(),
            THINNINGS,
        )?;
        for (&i, v) in unsure.iter().zip(again) {
            verdicts[i] = v;
        }
        let leaning: Vec<usize> = (0..verdicts.len())
            .filter(|&i| verdicts[i].lean_deg() > MIN_LEAN_DEG)
            .collect();
        let levelled: Vec<Cloud> = leaning
            .iter()
            .map(|&i| {
                let mut c = clouds[i].clone();
                rotate_cloud(&mut c, &level(&verdicts[i]).into_inner());
                c
            })
            .collect();
        let again = self.read(&levelled.iter().collect::<Vec<_>>(), THINNINGS)?;
        for (&i, second) in leaning.iter().zip(again) {
            verdicts[i] = Verdict {
                up: verdicts[i].up,
                ..second
            };
        }
        Ok(verdicts)
    }

    /// One forward pass over `thinnings` thinnings of each view, whose outputs are
    /// averaged.
    fn read(&self, clouds: &[&Cloud], thinnings: usize) -> Result<Vec<Verdict>> {
        if clouds.is_empty() {
            return Ok(Vec::new());
        }
        let n = self.config.num_points;
        let rows = clouds.len() * thinnings;
        let mut flat = Vec::with_capacity(rows * n * 3);
        for c in clouds {
            for t in 0..thinnings {
                for p in classifier_input_at(c, n, t as f32 / thinnings as f32) {
                    flat.extend_from_slice(&p);
                }
            }
        }
        let x = Tensor::from_vec(flat, (rows, n, 3), &Device::Cpu)
            .map_err(Error::candle("classifier input"))?;
        let logits = self
            .net
            .forward_t(&x, false)
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(Error::candle("classifier forward"))?;
        let c = self.config.categories.len();
        let cfg = &self.config;
        Ok(logits
            .chunks(thinnings)
            .map(|readings| {
                // The readings' mean logits (a geometric mean of their probabilities: as
                // sure as the readings agree, where an arithmetic mean would soften every
                // verdict and let more models past `category_gate`).
                let mut row = vec![0f32; cfg.outputs()];
                for r in readings {
                    row.iter_mut()
                        .zip(r)
                        .for_each(|(m, v)| *m += v / thinnings as f32);
                }
                let probabilities = softmax(&row[..c]);
                let yaws = (0..c)
                    .map(|k| decode_yaw(&softmax(&row[cfg.yaw_range(k)])))
                    .collect();
                let u = cfg.up_start();
                let up = cfg
                    .up_head
                    .then(|| Vector3::new(row[u], row[u + 1], row[u + 2]))
                    .filter(|u| u.norm() > 1e-6)
                    .map(|u| u.normalize().into());
                Verdict {
                    probabilities,
                    yaws,
                    up,
                }
            })
            .collect())
    }
}

/// A view read again is read this many times, thinned from points spread evenly between
/// one reading's, and the readings averaged: one unlucky thinning of a thin handle can
/// turn a mug's yaw half around (README, "Any pose"). Every view read so would cost the
/// scene budget 15-25 ms at p99 (README), hence only unsure and leaning ones.
pub const THINNINGS: usize = 4;

/// A reading's yaw with less probability than this within a bin of it is read again.
pub const SURE_YAW: f32 = 0.75;

/// [`ObjectClassifier::turn_back`] for a category that is `round` or not.
fn turn_back(verdict: &Verdict, k: usize, round: bool) -> Matrix3<f32> {
    let yaw = if round { 0.0 } else { -verdict.yaw(k) };
    (about_up(yaw) * level(verdict)).into_inner()
}

/// The turn of the verdict's up onto +y when the object leans more than [`MIN_LEAN_DEG`]
/// (the shortest one, about a horizontal axis), else none.
fn level(verdict: &Verdict) -> Rotation3<f32> {
    match verdict.up {
        Some(u) if verdict.lean_deg() > MIN_LEAN_DEG => {
            Rotation3::rotation_between(&Vector3::from(u), &Vector3::y())
                .unwrap_or_else(Rotation3::identity)
        }
        _ => Rotation3::identity(),
    }
}

/// A deployed model run on each view turned back by the classifier, as the node
/// runs it (`semcorr eval --classifier`): views in the frame the classifier was trained
/// in (up +y, the camera toward +z, e.g. `synth --partial --view-frame`).
pub struct TurnedBack<'a> {
    pub model: &'a super::DeployedModel,
    pub classifier: &'a ObjectClassifier,
}

impl TurnedBack<'_> {
    /// The model's category in the classifier, or an error naming both.
    pub fn check(&self) -> Result<usize> {
        let name = &self.model.category.name;
        self.classifier
            .config
            .categories
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "--classifier: it does not know '{name}' (it knows {})",
                    self.classifier.config.categories.join(", ")
                ))
            })
    }
}

impl crate::embedding::Embedder for TurnedBack<'_> {
    fn name(&self) -> String {
        format!("{} turned back by the classifier", self.model.name())
    }

    fn embed(&self, cloud: &Cloud) -> Result<crate::embedding::Embeddings> {
        let k = self.check()?;
        let verdict = self.classifier.classify(&[cloud])?.remove(0);
        let turn = self.classifier.turn_back(&verdict, k);
        // Turning keeps the point order, so the embeddings index the input's points.
        let mut turned = cloud.clone();
        rotate_cloud(&mut turned, &turn);
        crate::embedding::Embedder::embed(self.model, &turned)
    }
}

/// The classifier's input: `cloud` normalised (box centre at the origin, diagonal 1) and
/// thinned to `n` points by an even stride over its order (a depth image's row order
/// spreads them over the view); short clouds repeat points.
pub fn classifier_input(cloud: &Cloud, n: usize) -> Vec<[f32; 3]> {
    classifier_input_at(cloud, n, 0.0)
}

/// [`classifier_input`] from `phase` (in [0, 1)) of a stride on.
fn classifier_input_at(cloud: &Cloud, n: usize, phase: f32) -> Vec<[f32; 3]> {
    let norm = Normalization::fit(cloud, NormalizationMode::BboxDiagonal);
    let len = cloud.len().max(1);
    (0..n)
        .map(|i| {
            let k = (i * len + (phase * len as f32) as usize) / n;
            cloud
                .points
                .get(k.min(cloud.len().saturating_sub(1)))
                .map_or([0.0; 3], |p| norm.apply_point(*p))
        })
        .collect()
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|l| (l - top).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// `a - b` wrapped into [-pi, pi) (radians): how far one yaw is turned from another.
pub fn yaw_difference(a: f32, b: f32) -> f32 {
    use std::f32::consts::{PI, TAU};
    (a - b + 3.0 * PI).rem_euclid(TAU) - PI
}

/// The yaw (radians in (-pi, pi]) of the most likely bin, refined by its neighbours'
/// probabilities (a circular mean of the three), and the three's mass.
pub fn decode_yaw(p: &[f32]) -> (f32, f32) {
    let n = p.len();
    let top = (0..n).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0);
    let step = std::f32::consts::TAU / n as f32;
    let (mut s, mut c, mut mass) = (0.0f32, 0.0f32, 0.0f32);
    for d in [n - 1, 0, 1] {
        let k = (top + d) % n;
        let a = k as f32 * step;
        s += p[k] * a.sin();
        c += p[k] * a.cos();
        mass += p[k];
    }
    (s.atan2(c), mass)
}

/// FNV-1a (64 bit) over the config's JSON and the tensors sorted by name (name, shape,
/// little-endian f32 bytes).
fn checksum(config: &ClassifierConfig, tensors: &HashMap<String, Tensor>) -> Result<String> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(
        serde_json::to_string(config)
            .map_err(|e| Error::invalid(e.to_string()))?
            .as_bytes(),
    );
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        let t = &tensors[name];
        feed(name.as_bytes());
        feed(format!("{:?}", t.dims()).as_bytes());
        let values = t
            .flatten_all()
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(Error::candle(format!("tensor '{name}'")))?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        feed(&bytes);
    }
    Ok(format!("fnv1a64:{h:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaw_decoding_wraps_around_the_circle() {
        let mut p = vec![0.0f32; 24];
        p[0] = 0.5;
        p[23] = 0.25;
        p[1] = 0.25;
        let (yaw, mass) = decode_yaw(&p);
        assert!(yaw.abs() < 1e-5 && (mass - 1.0).abs() < 1e-6);
        p = vec![0.0; 24];
        p[12] = 0.9;
        p[13] = 0.1;
        let (yaw, _) = decode_yaw(&p);
        let want = std::f32::consts::PI + 0.1 * std::f32::consts::TAU / 24.0;
        let diff = yaw_difference(yaw, want);
        assert!(diff.abs() < 0.02, "{yaw} vs {want}");
    }

    #[test]
    fn turning_back_levels_only_a_clear_lean_then_undoes_the_yaw() {
        let leaning = |deg: f32| {
            let r = Rotation3::from_axis_angle(&Vector3::x_axis(), deg.to_radians());
            let u = r * Vector3::y();
            Verdict {
                probabilities: vec![0.6, 0.4],
                yaws: vec![(0.5, 0.9), (1.5, 0.5)],
                up: Some([u.x, u.y, u.z]),
            }
        };
        // A clear lean: the object's up goes to +y, then the yaw is undone about it.
        let v = leaning(20.0);
        assert!((v.lean_deg() - 20.0).abs() < 1e-3);
        let t = turn_back(&v, 0, false);
        assert!((t * Vector3::from(v.up.unwrap()) - Vector3::y()).norm() < 1e-5);
        let front = t
            * (Rotation3::from_axis_angle(&Vector3::x_axis(), 20f32.to_radians())
                * about_up(0.5)
                * Vector3::z());
        assert!((front - Vector3::z()).norm() < 1e-4, "{front:?}");
        // Within MIN_LEAN_DEG the frame's up is trusted: only the yaw is undone.
        let t = turn_back(&leaning(3.0), 0, false);
        assert!((t - about_up(-0.5).into_inner()).norm() < 1e-6);
        // Each category is turned back by its own yaw.
        let t = turn_back(&leaning(3.0), 1, false);
        assert!((t - about_up(-1.5).into_inner()).norm() < 1e-6);
        // Round categories keep their yaw (none to undo) but are levelled.
        let t = turn_back(&v, 0, true);
        assert!((t * Vector3::from(v.up.unwrap()) - Vector3::y()).norm() < 1e-5);
        assert!((t * Vector3::z()).x.abs() < 1e-5, "no turn about up: {t:?}");
        // Without an up head nothing is levelled.
        let flat = Verdict { up: None, ..v };
        assert_eq!(flat.lean_deg(), 0.0);
        assert!((turn_back(&flat, 0, false) - about_up(-0.5).into_inner()).norm() < 1e-6);
    }

    #[test]
    fn outputs_are_categories_then_yaw_blocks_then_up() {
        let names = ["mug", "bowl", "pitcher"].map(String::from).to_vec();
        let mut cfg = ClassifierConfig::new(names, vec![false, true, false]);
        assert!(cfg.yaw_per_category && cfg.up_head);
        assert_eq!(cfg.yaw_range(0), 3..27);
        assert_eq!(cfg.yaw_range(2), 51..75);
        assert_eq!((cfg.up_start(), cfg.outputs()), (75, 78));
        // Files written before per-category yaw share one block.
        cfg.yaw_per_category = false;
        assert_eq!((cfg.yaw_range(0), cfg.yaw_range(2)), (3..27, 3..27));
        assert_eq!((cfg.up_start(), cfg.outputs()), (27, 30));
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(!json.contains("yaw_per_category"), "{json}");
        assert_eq!(
            serde_json::from_str::<ClassifierConfig>(&json).unwrap(),
            cfg
        );
    }

    #[test]
    fn input_is_normalised_and_evenly_thinned() {
        let cloud = Cloud::new((0..1000).map(|i| [i as f32, 2.0 * i as f32, 5.0]).collect());
        let x = classifier_input(&cloud, 100);
        assert_eq!(x.len(), 100);
        let (lo, hi) = Cloud::new(x.clone()).bounds();
        let diag = crate::cloud::dist2(&lo, &hi).sqrt();
        assert!((diag - 1.0).abs() < 0.02, "{diag}");
        // Short clouds repeat points rather than fail.
        assert_eq!(
            classifier_input(&Cloud::new(vec![[1.0; 3]; 3]), 16).len(),
            16
        );
    }
}
