//! Reading, writing and validating KeypointNet-format datasets.

use crate::cloud::{pcd, Cloud};
use crate::error::{read_file, write_file_atomic, Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Largest accepted distance between a keypoint's `xyz` and its cloud point. KeypointNet's
/// files store the cloud point itself; the slack only absorbs float printing.
pub const XYZ_TOLERANCE: f32 = 1e-3;

/// Where a keypoint lies on the source mesh (kept for round trips; not used by training).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeshInfo {
    pub face_index: usize,
    pub face_uv: [f64; 3],
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct PcdInfo {
    point_index: usize,
}

/// One labelled point of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Keypoint {
    pub xyz: [f32; 3],
    #[serde(default)]
    pub rgb: [u8; 3],
    pub semantic_id: u32,
    #[serde(rename = "pcd_info", with = "point_index_serde")]
    pub point_index: usize,
    #[serde(rename = "mesh_info", default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<MeshInfo>,
}

/// The file nests the point index as `pcd_info: {point_index}`; the code wants it flat.
mod point_index_serde {
    use super::PcdInfo;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    pub fn serialize<S: Serializer>(v: &usize, s: S) -> Result<S::Ok, S::Error> {
        PcdInfo { point_index: *v }.serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        Ok(PcdInfo::deserialize(d)?.point_index)
    }
}

/// A group of keypoints (indices into the model's keypoint list) that mirror each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReflectionSymmetry {
    pub kp_indexes: Vec<usize>,
}

/// Keypoints related by a rotation; the circle is kept as the file has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RotationSymmetry {
    pub kp_indexes: Vec<usize>,
    #[serde(default)]
    pub is_circle: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circle: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Symmetries {
    #[serde(default)]
    pub reflection: Vec<ReflectionSymmetry>,
    #[serde(default)]
    pub rotation: Vec<RotationSymmetry>,
}

/// One model's annotation: its identity and keypoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelAnnotation {
    pub class_id: String,
    pub model_id: String,
    pub keypoints: Vec<Keypoint>,
    #[serde(default)]
    pub symmetries: Symmetries,
}

impl ModelAnnotation {
    pub fn key(&self) -> ModelKey {
        ModelKey {
            class_id: self.class_id.clone(),
            model_id: self.model_id.clone(),
        }
    }

    /// The keypoint with this semantic id, if the model has that part.
    pub fn keypoint(&self, semantic_id: u32) -> Option<&Keypoint> {
        self.keypoints.iter().find(|k| k.semantic_id == semantic_id)
    }

    /// Problems that can be seen without the cloud: duplicate semantic ids, non-finite xyz,
    /// symmetry groups pointing past the keypoint list.
    pub fn annotation_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut seen = HashSet::new();
        for (i, kp) in self.keypoints.iter().enumerate() {
            if !seen.insert(kp.semantic_id) {
                problems.push(format!(
                    "keypoint {i}: duplicate semantic_id {}",
                    kp.semantic_id
                ));
            }
            if !kp.xyz.iter().all(|c| c.is_finite()) {
                problems.push(format!("keypoint {i}: non-finite xyz {:?}", kp.xyz));
            }
        }
        let groups = self
            .symmetries
            .reflection
            .iter()
            .map(|g| &g.kp_indexes)
            .chain(self.symmetries.rotation.iter().map(|g| &g.kp_indexes));
        for idx in groups.flatten() {
            if *idx >= self.keypoints.len() {
                problems.push(format!(
                    "symmetry refers to keypoint {idx}, but the model has {}",
                    self.keypoints.len()
                ));
            }
        }
        problems
    }

    /// All problems of this annotation against its cloud: the above, plus point_index out
    /// of range and xyz not matching the cloud point within `XYZ_TOLERANCE`.
    pub fn problems_with_cloud(&self, cloud: &Cloud) -> Vec<String> {
        let mut problems = self.annotation_problems();
        for (i, kp) in self.keypoints.iter().enumerate() {
            match cloud.points.get(kp.point_index) {
                None => problems.push(format!(
                    "keypoint {i} (semantic_id {}): point_index {} out of range (cloud has {} points)",
                    kp.semantic_id,
                    kp.point_index,
                    cloud.len()
                )),
                Some(p) => {
                    let d = crate::cloud::dist2(p, &kp.xyz).sqrt();
                    if d.is_nan() || d > XYZ_TOLERANCE {
                        problems.push(format!(
                            "keypoint {i} (semantic_id {}): xyz {:?} is {d:.4} from cloud point {} {:?}",
                            kp.semantic_id, kp.xyz, kp.point_index, p
                        ));
                    }
                }
            }
        }
        problems
    }
}

/// `<class_id>-<model_id>`, the identity used in split files.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelKey {
    pub class_id: String,
    pub model_id: String,
}

impl fmt::Display for ModelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.class_id, self.model_id)
    }
}

impl FromStr for ModelKey {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.split_once('-') {
            Some((c, m)) if !c.is_empty() && !m.is_empty() => Ok(ModelKey {
                class_id: c.to_string(),
                model_id: m.to_string(),
            }),
            _ => Err(format!("'{s}' is not of the form <class_id>-<model_id>")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl FromStr for Split {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Split::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                Error::invalid(format!("unknown split '{s}' (expected train, val or test)"))
            })
    }
}

/// Which models belong to which split.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Splits {
    pub train: Vec<ModelKey>,
    pub val: Vec<ModelKey>,
    pub test: Vec<ModelKey>,
}

impl Splits {
    pub fn get(&self, split: Split) -> &[ModelKey] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }

    pub fn get_mut(&mut self, split: Split) -> &mut Vec<ModelKey> {
        match split {
            Split::Train => &mut self.train,
            Split::Val => &mut self.val,
            Split::Test => &mut self.test,
        }
    }
}

/// One category: its name (the annotation file's stem), class id and annotated models.
#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    pub name: String,
    pub class_id: String,
    pub models: Vec<ModelAnnotation>,
    /// Human-readable names of the correspondence sets ("handle top"), from the optional
    /// `keypoint_names/<category>.json` (`{"<semantic id>": "<name>"}`); real KeypointNet
    /// has none, our generator writes them. Templates and model files carry them on.
    pub keypoint_names: BTreeMap<u32, String>,
}

impl Category {
    /// Semantic ids used by any model, sorted: the category's correspondence sets.
    pub fn semantic_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .models
            .iter()
            .flat_map(|m| m.keypoints.iter().map(|k| k.semantic_id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// A model's annotation with its (validated) cloud.
#[derive(Debug, Clone, PartialEq)]
pub struct AnnotatedModel {
    pub annotation: ModelAnnotation,
    pub cloud: Cloud,
}

/// A dataset on disk: annotations and splits are read eagerly, clouds on demand.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub categories: Vec<Category>,
    pub splits: Splits,
}

impl Dataset {
    /// Opens a dataset folder: every `annotations/*.json` and the three split files.
    pub fn open(root: impl AsRef<Path>) -> Result<Dataset> {
        let root = root.as_ref().to_path_buf();
        let ann_dir = root.join("annotations");
        let entries = std::fs::read_dir(&ann_dir).map_err(|e| Error::io(&ann_dir, e))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::format(
                &ann_dir,
                "no <category>.json annotation files",
            ));
        }
        let mut categories = Vec::new();
        for file in files {
            let models = read_annotations(&file)?;
            let name = file
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            let class_id = category_class_id(&file, &models)?;
            let keypoint_names = read_keypoint_names(&root, &name)?;
            categories.push(Category {
                name,
                class_id,
                models,
                keypoint_names,
            });
        }
        let mut splits = Splits::default();
        for split in Split::ALL {
            let path = root.join("splits").join(format!("{}.txt", split.name()));
            *splits.get_mut(split) = read_split_file(&path)?;
        }
        Ok(Dataset {
            root,
            categories,
            splits,
        })
    }

    /// A category by name ("mug") or class id ("03797390").
    pub fn category(&self, name_or_class_id: &str) -> Result<&Category> {
        self.categories
            .iter()
            .find(|c| c.name == name_or_class_id || c.class_id == name_or_class_id)
            .ok_or_else(|| {
                let known: Vec<String> = self
                    .categories
                    .iter()
                    .map(|c| format!("{} ({})", c.name, c.class_id))
                    .collect();
                Error::invalid(format!(
                    "unknown category '{name_or_class_id}' in {}; known: {}",
                    self.root.display(),
                    known.join(", ")
                ))
            })
    }

    /// The category's annotated models listed in `split`, in split-file order. Split entries
    /// without an annotation are skipped (KeypointNet's splits list a few such models).
    pub fn split_models<'a>(
        &'a self,
        category: &'a Category,
        split: Split,
    ) -> Vec<&'a ModelAnnotation> {
        let by_id: BTreeMap<&str, &ModelAnnotation> = category
            .models
            .iter()
            .map(|m| (m.model_id.as_str(), m))
            .collect();
        self.splits
            .get(split)
            .iter()
            .filter(|k| k.class_id == category.class_id)
            .filter_map(|k| by_id.get(k.model_id.as_str()).copied())
            .collect()
    }

    pub fn cloud_path(&self, class_id: &str, model_id: &str) -> PathBuf {
        self.root
            .join("pcds")
            .join(class_id)
            .join(format!("{model_id}.pcd"))
    }

    /// Reads a model's cloud and checks its annotation against it; every problem found is
    /// reported, each naming the model.
    pub fn load_model(&self, annotation: &ModelAnnotation) -> Result<AnnotatedModel> {
        let path = self.cloud_path(&annotation.class_id, &annotation.model_id);
        let cloud = pcd::read_pcd(&path)?;
        cloud.validate(&path.display().to_string())?;
        let problems = annotation.problems_with_cloud(&cloud);
        if !problems.is_empty() {
            return Err(Error::invalid(format!(
                "model {}: {}",
                annotation.key(),
                problems.join("; ")
            )));
        }
        Ok(AnnotatedModel {
            annotation: annotation.clone(),
            cloud,
        })
    }

    /// Loads (in parallel) the category's models of a split.
    pub fn load_split(&self, category: &Category, split: Split) -> Result<Vec<AnnotatedModel>> {
        use rayon::prelude::*;
        self.split_models(category, split)
            .par_iter()
            .map(|m| self.load_model(m))
            .collect()
    }
}

/// The single class id shared by a category's models (an empty file gets its stem).
fn category_class_id(file: &Path, models: &[ModelAnnotation]) -> Result<String> {
    let Some(first) = models.first() else {
        return Err(Error::format(file, "the annotation file lists no models"));
    };
    if let Some(other) = models.iter().find(|m| m.class_id != first.class_id) {
        return Err(Error::format(
            file,
            format!(
                "model {} has class_id {} but the file's first model has {}",
                other.model_id, other.class_id, first.class_id
            ),
        ));
    }
    Ok(first.class_id.clone())
}

/// Where a category's keypoint names live in a dataset folder.
pub fn keypoint_names_path(root: &Path, category: &str) -> PathBuf {
    root.join("keypoint_names").join(format!("{category}.json"))
}

/// The category's keypoint names; none when the dataset has no names file for it.
fn read_keypoint_names(root: &Path, category: &str) -> Result<BTreeMap<u32, String>> {
    let path = keypoint_names_path(root, category);
    if !path.is_file() {
        return Ok(BTreeMap::new());
    }
    let bytes = read_file(&path)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::parse(path.display().to_string(), e))
}

/// Writes a category's keypoint names (see [`Category::keypoint_names`]).
pub fn write_keypoint_names(
    root: &Path,
    category: &str,
    names: &BTreeMap<u32, String>,
) -> Result<()> {
    let text = serde_json::to_string_pretty(names)
        .map_err(|e| Error::parse(format!("keypoint names of {category}"), e))?;
    write_file_atomic(keypoint_names_path(root, category), text.as_bytes())
}

/// Reads `annotations/<category>.json` and checks each model's annotation on its own
/// (clouds are checked when loaded).
pub fn read_annotations(path: impl AsRef<Path>) -> Result<Vec<ModelAnnotation>> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    let models: Vec<ModelAnnotation> = serde_json::from_slice(&bytes).map_err(|e| {
        Error::parse(
            format!("{}: not a KeypointNet annotation list", path.display()),
            e,
        )
    })?;
    let mut ids = HashSet::new();
    let mut problems = Vec::new();
    for m in &models {
        if !ids.insert(&m.model_id) {
            problems.push(format!("model {}: listed twice", m.key()));
        }
        problems.extend(
            m.annotation_problems()
                .into_iter()
                .map(|p| format!("model {}: {p}", m.key())),
        );
    }
    if !problems.is_empty() {
        return Err(Error::format(path, problems.join("; ")));
    }
    Ok(models)
}

pub fn write_annotations(path: impl AsRef<Path>, models: &[ModelAnnotation]) -> Result<()> {
    let json = serde_json::to_vec(models).map_err(|e| Error::invalid(e.to_string()))?;
    write_file_atomic(path, &json)
}

/// Writes a model's cloud where `Dataset::cloud_path` expects it, as KeypointNet does:
/// ASCII PCD with x y z rgb.
pub fn write_model_cloud(root: &Path, class_id: &str, model_id: &str, cloud: &Cloud) -> Result<()> {
    let path = root
        .join("pcds")
        .join(class_id)
        .join(format!("{model_id}.pcd"));
    pcd::write_pcd(&path, cloud, pcd::PcdEncoding::Ascii)
}

pub fn write_splits(root: &Path, splits: &Splits) -> Result<()> {
    for split in Split::ALL {
        let text: String = splits.get(split).iter().map(|k| format!("{k}\n")).collect();
        write_file_atomic(
            root.join("splits").join(format!("{}.txt", split.name())),
            text.as_bytes(),
        )?;
    }
    Ok(())
}

fn read_split_file(path: &Path) -> Result<Vec<ModelKey>> {
    let text =
        String::from_utf8(read_file(path)?).map_err(|_| Error::format(path, "not UTF-8 text"))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            l.trim()
                .parse()
                .map_err(|e: String| Error::format(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}
