//! The node's parameters. [`PARAMS`] is the one table of them: name, ROS type, whether a
//! change needs a restart, a description, and how to read and write the field of
//! [`NodeParams`]. Everything else is driven by it: the r2r adapter declares and reads ROS
//! parameters through it, `config/semcorr.yaml` (`ros__parameters` layout) and `semcorr
//! infer --set name=value` are parsed through it, and the README's parameter table is
//! generated from it ([`markdown_table`]; a test keeps the README, the shipped YAML and the
//! launch files equal to it). A bad value is refused with a message naming the parameter.

use crate::deploy::Precision;
use crate::error::{Error, Result};
use crate::scene::SceneParams;
use nalgebra::Vector3;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Everything `semcorr_node` (and `semcorr infer`) can be told. Field docs are in [`PARAMS`].
#[derive(Debug, Clone, PartialEq)]
pub struct NodeParams {
    pub model_dir: String,
    pub model_paths: Vec<String>,
    pub device: DeviceChoice,
    pub precision: PrecisionChoice,
    pub num_points: i64,
    pub score_threshold: f64,
    pub max_keypoints: i64,
    pub crop_box: Vec<f64>,
    pub voxel_size: f64,
    pub publish_embedding_cloud: bool,
    pub up_axis: UpSetting,
    pub fallback_up_axis: UpAxis,
    pub face_sensor: bool,
    pub segment_scene: bool,
    pub max_range: f64,
    pub plane_distance_threshold: f64,
    pub plane_iterations: i64,
    pub plane_max_tilt_deg: f64,
    pub cluster_tolerance: f64,
    pub min_cluster_points: i64,
    pub max_cluster_points: i64,
    pub max_object_extent: f64,
    pub max_height_above_plane: f64,
    pub max_objects: i64,
    pub min_object_score: f64,
    pub yaw_hypotheses: i64,
    pub category_gate: f64,
    pub classifier_path: String,
    pub min_class_probability: f64,
    pub publish_tf: bool,
    pub tf_prefix: String,
}

/// An f32 default as written in decimal (0.01, not 0.009999999776), so the table, the YAML
/// file and the README show the same number.
fn decimal(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

impl Default for NodeParams {
    fn default() -> Self {
        // The scene defaults live with the scene stage; the table repeats them.
        let scene = SceneParams::default();
        let plane = scene.plane;
        NodeParams {
            model_dir: "models".into(),
            model_paths: [
                "mug_partial.gguf",
                "bottle_partial.gguf",
                "bowl_partial.gguf",
                "can_partial.gguf",
                "pitcher_partial.gguf",
                "laptop_partial.gguf",
                "knife_partial.gguf",
            ]
            .map(String::from)
            .to_vec(),
            device: DeviceChoice::Cpu,
            precision: PrecisionChoice::Auto,
            num_points: 0,
            score_threshold: 0.3,
            max_keypoints: 0,
            crop_box: Vec::new(),
            voxel_size: 0.0,
            publish_embedding_cloud: false,
            up_axis: UpSetting::Auto,
            fallback_up_axis: UpAxis::NegY,
            face_sensor: true,
            segment_scene: true,
            max_range: 2.0,
            plane_distance_threshold: decimal(plane.distance_threshold),
            plane_iterations: plane.iterations as i64,
            plane_max_tilt_deg: decimal(plane.max_tilt_deg),
            cluster_tolerance: decimal(scene.cluster_tolerance),
            min_cluster_points: scene.min_cluster_points as i64,
            max_cluster_points: scene.max_cluster_points as i64,
            max_object_extent: decimal(scene.max_object_extent),
            max_height_above_plane: decimal(scene.max_height),
            max_objects: scene.max_objects as i64,
            min_object_score: 0.15,
            yaw_hypotheses: 1,
            category_gate: 0.05,
            classifier_path: "classifier.safetensors".into(),
            min_class_probability: 0.0,
            publish_tf: true,
            tf_prefix: "semcorr/".into(),
        }
    }
}

/// Where inference runs: `cpu` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceChoice::Cpu),
            d => d
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| format!("'{d}' is not cpu or cuda:N (e.g. cuda:0)")),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Runtime precision: `auto` = the model file's, dequantized to f32 on a CPU (the fastest
/// there); a named one runs candle's matmuls on weights stored in that precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrecisionChoice {
    Auto,
    Fixed(Precision),
}

impl FromStr for PrecisionChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "auto" {
            return Ok(PrecisionChoice::Auto);
        }
        s.parse()
            .map(PrecisionChoice::Fixed)
            .map_err(|_| format!("'{s}' is not auto, f32, f16, q8_0 or q4_0"))
    }
}

impl fmt::Display for PrecisionChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrecisionChoice::Auto => f.write_str("auto"),
            PrecisionChoice::Fixed(p) => write!(f, "{p}"),
        }
    }
}

/// The input frame's axis pointing up (against gravity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpAxis {
    PosX,
    NegX,
    PosY,
    NegY,
    PosZ,
    NegZ,
}

impl UpAxis {
    pub const ALL: [UpAxis; 6] = [
        UpAxis::PosX,
        UpAxis::NegX,
        UpAxis::PosY,
        UpAxis::NegY,
        UpAxis::PosZ,
        UpAxis::NegZ,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UpAxis::PosX => "+x",
            UpAxis::NegX => "-x",
            UpAxis::PosY => "+y",
            UpAxis::NegY => "-y",
            UpAxis::PosZ => "+z",
            UpAxis::NegZ => "-z",
        }
    }

    /// The axis as a unit vector of the input frame.
    pub fn vector(self) -> Vector3<f32> {
        let (i, sign) = match self {
            UpAxis::PosX => (0, 1.0),
            UpAxis::NegX => (0, -1.0),
            UpAxis::PosY => (1, 1.0),
            UpAxis::NegY => (1, -1.0),
            UpAxis::PosZ => (2, 1.0),
            UpAxis::NegZ => (2, -1.0),
        };
        Vector3::ith(i, sign)
    }
}

impl FromStr for UpAxis {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        UpAxis::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| format!("'{s}' is not one of +x -x +y -y +z -z"))
    }
}

impl fmt::Display for UpAxis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `up_axis`: `auto` (the support plane's normal, turned toward the sensor; for tilted
/// cameras) or a fixed axis (the plane is then searched near it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpSetting {
    Auto,
    Axis(UpAxis),
}

impl FromStr for UpSetting {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "auto" {
            return Ok(UpSetting::Auto);
        }
        s.parse()
            .map(UpSetting::Axis)
            .map_err(|_| format!("'{s}' is not auto or one of +x -x +y -y +z -z"))
    }
}

impl fmt::Display for UpSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpSetting::Auto => f.write_str("auto"),
            UpSetting::Axis(a) => write!(f, "{a}"),
        }
    }
}

/// A parameter's value as ROS types it (the types the node uses). The r2r adapter converts
/// to and from r2r's own type; the core never sees ROS.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Bool(bool),
    Integer(i64),
    Double(f64),
    String(String),
    DoubleArray(Vec<f64>),
    StringArray(Vec<String>),
}

/// The ROS type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    Bool,
    Integer,
    Double,
    String,
    DoubleArray,
    StringArray,
}

impl ParamType {
    pub fn name(self) -> &'static str {
        match self {
            ParamType::Bool => "bool",
            ParamType::Integer => "integer",
            ParamType::Double => "double",
            ParamType::String => "string",
            ParamType::DoubleArray => "double array",
            ParamType::StringArray => "string array",
        }
    }
}

type Why = std::result::Result<(), String>;

/// One row of the parameter table.
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamType,
    /// Chooses or loads the model: a change takes effect at restart.
    pub restart_only: bool,
    pub description: &'static str,
    get: fn(&NodeParams) -> ParamValue,
    /// Stores an already type-checked value; `Err` says why the value is refused.
    set: fn(&mut NodeParams, ParamValue) -> Why,
}

impl ParamSpec {
    /// The parameter's value in `p`.
    pub fn value(&self, p: &NodeParams) -> ParamValue {
        (self.get)(p)
    }
}

fn string(v: ParamValue) -> String {
    match v {
        ParamValue::String(s) => s,
        _ => unreachable!("type-checked by ParamValue::coerce"),
    }
}

fn parsed<T: FromStr<Err = String>>(v: ParamValue) -> std::result::Result<T, String> {
    string(v).parse()
}

fn integer(v: ParamValue) -> i64 {
    match v {
        ParamValue::Integer(i) => i,
        _ => unreachable!("type-checked by ParamValue::coerce"),
    }
}

fn double(v: ParamValue) -> f64 {
    match v {
        ParamValue::Double(x) => x,
        _ => unreachable!("type-checked by ParamValue::coerce"),
    }
}

fn strings(v: ParamValue) -> Vec<String> {
    match v {
        ParamValue::StringArray(xs) => xs,
        _ => unreachable!("type-checked by ParamValue::coerce"),
    }
}

fn boolean(v: ParamValue) -> bool {
    match v {
        ParamValue::Bool(b) => b,
        _ => unreachable!("type-checked by ParamValue::coerce"),
    }
}

/// Every parameter of the node, in declaration order.
pub const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "model_dir",
        kind: ParamType::String,
        restart_only: true,
        description: "folder of relative `model_paths` entries (the launch files set the \
                      package's `models`); empty = the working directory",
        get: |p| ParamValue::String(p.model_dir.clone()),
        set: |p, v| {
            p.model_dir = string(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "model_paths",
        kind: ParamType::StringArray,
        restart_only: true,
        description: "deployed models (.gguf from `semcorr export`), one per category; each \
                      object gets the category whose templates it matches best",
        get: |p| ParamValue::StringArray(p.model_paths.clone()),
        set: |p, v| {
            p.model_paths = strings(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "device",
        kind: ParamType::String,
        restart_only: true,
        description: "`cpu` or `cuda:N` (a build with `--features cuda`)",
        get: |p| ParamValue::String(p.device.to_string()),
        set: |p, v| {
            p.device = parsed(v)?;
            Ok(())
        },
    },
    ParamSpec {
        name: "precision",
        kind: ParamType::String,
        restart_only: true,
        description: "`auto` (the file's, dequantized to f32 on CPU: the fastest there), \
                      `f32`, `f16`, `q8_0`, `q4_0`",
        get: |p| ParamValue::String(p.precision.to_string()),
        set: |p, v| {
            p.precision = parsed(v)?;
            Ok(())
        },
    },
    ParamSpec {
        name: "num_points",
        kind: ParamType::Integer,
        restart_only: true,
        description: "points fed to the network; 0 = the model's own",
        get: |p| ParamValue::Integer(p.num_points),
        set: |p, v| {
            p.num_points = integer(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "score_threshold",
        kind: ParamType::Double,
        restart_only: false,
        description: "correspondences scoring below this are not published, in [0, 1]",
        get: |p| ParamValue::Double(p.score_threshold),
        set: |p, v| {
            p.score_threshold = double(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "max_keypoints",
        kind: ParamType::Integer,
        restart_only: false,
        description: "publish at most this many correspondences per object, best first; 0 = \
                      all",
        get: |p| ParamValue::Integer(p.max_keypoints),
        set: |p, v| {
            p.max_keypoints = integer(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "crop_box",
        kind: ParamType::DoubleArray,
        restart_only: false,
        description: "`[xmin, ymin, zmin, xmax, ymax, zmax]` in the input frame; empty or all \
                      zeros = no crop",
        get: |p| ParamValue::DoubleArray(p.crop_box.clone()),
        set: |p, v| {
            p.crop_box = match v {
                ParamValue::DoubleArray(xs) => xs,
                _ => unreachable!("type-checked by ParamValue::coerce"),
            };
            Ok(())
        },
    },
    ParamSpec {
        name: "voxel_size",
        kind: ParamType::Double,
        restart_only: false,
        description: "voxel-grid edge before sampling (input units); 0 = off",
        get: |p| ParamValue::Double(p.voxel_size),
        set: |p, v| {
            p.voxel_size = double(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "publish_embedding_cloud",
        kind: ParamType::Bool,
        restart_only: false,
        description: "also publish `~/output/embedding_cloud` (xyz + rgb from the embeddings)",
        get: |p| ParamValue::Bool(p.publish_embedding_cloud),
        set: |p, v| {
            p.publish_embedding_cloud = boolean(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "up_axis",
        kind: ParamType::String,
        restart_only: false,
        description: "input axis pointing up: `auto` (the support plane's normal, for tilted \
                      cameras; needs `segment_scene`), or a fixed `+z` (REP-103 frames), `-y` \
                      (camera optical frames), `+y` (the models' frame), any of \
                      `+x -x +y -y +z -z` (the plane is then searched near it)",
        get: |p| ParamValue::String(p.up_axis.to_string()),
        set: |p, v| {
            p.up_axis = parsed(v)?;
            Ok(())
        },
    },
    ParamSpec {
        name: "fallback_up_axis",
        kind: ParamType::String,
        restart_only: false,
        description: "up when `up_axis` is `auto` and no plane is found (said in the \
                      diagnostics); one of `+x -x +y -y +z -z`",
        get: |p| ParamValue::String(p.fallback_up_axis.to_string()),
        set: |p, v| {
            p.fallback_up_axis = parsed(v)?;
            Ok(())
        },
    },
    ParamSpec {
        name: "face_sensor",
        kind: ParamType::Bool,
        restart_only: false,
        description: "turn each object about the up axis so its side facing the sensor is the \
                      models' front; false = only align up",
        get: |p| ParamValue::Bool(p.face_sensor),
        set: |p, v| {
            p.face_sensor = boolean(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "segment_scene",
        kind: ParamType::Bool,
        restart_only: false,
        description: "find the support plane and the objects on it (a depth camera's scene); \
                      false = the whole (cropped) cloud is one object",
        get: |p| ParamValue::Bool(p.segment_scene),
        set: |p, v| {
            p.segment_scene = boolean(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "max_range",
        kind: ParamType::Double,
        restart_only: false,
        description: "points farther than this from the sensor are dropped (input units); \
                      0 = no limit",
        get: |p| ParamValue::Double(p.max_range),
        set: |p, v| {
            p.max_range = double(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "plane_distance_threshold",
        kind: ParamType::Double,
        restart_only: false,
        description: "support plane RANSAC: inlier distance (input units)",
        get: |p| ParamValue::Double(p.plane_distance_threshold),
        set: |p, v| {
            p.plane_distance_threshold = double(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "plane_iterations",
        kind: ParamType::Integer,
        restart_only: false,
        description: "support plane RANSAC: hypotheses tried (seeded: same cloud, same plane)",
        get: |p| ParamValue::Integer(p.plane_iterations),
        set: |p, v| {
            p.plane_iterations = integer(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "plane_max_tilt_deg",
        kind: ParamType::Double,
        restart_only: false,
        description: "with a fixed `up_axis`: only planes within this angle of it are support \
                      planes",
        get: |p| ParamValue::Double(p.plane_max_tilt_deg),
        set: |p, v| {
            p.plane_max_tilt_deg = double(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "cluster_tolerance",
        kind: ParamType::Double,
        restart_only: false,
        description: "points nearer than this join one object (Euclidean clustering, input \
                      units)",
        get: |p| ParamValue::Double(p.cluster_tolerance),
        set: |p, v| {
            p.cluster_tolerance = double(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "min_cluster_points",
        kind: ParamType::Integer,
        restart_only: false,
        description: "smaller clusters are noise",
        get: |p| ParamValue::Integer(p.min_cluster_points),
        set: |p, v| {
            p.min_cluster_points = integer(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "max_cluster_points",
        kind: ParamType::Integer,
        restart_only: false,
        description: "larger clusters are not one object (a wall, the room)",
        get: |p| ParamValue::Integer(p.max_cluster_points),
        set: |p, v| {
            p.max_cluster_points = integer(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "max_object_extent",
        kind: ParamType::Double,
        restart_only: false,
        description: "clusters with a larger bounding-box diagonal are not objects (input \
                      units)",
        get: |p| ParamValue::Double(p.max_object_extent),
        set: |p, v| {
            p.max_object_extent = double(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "max_height_above_plane",
        kind: ParamType::Double,
        restart_only: false,
        description: "points higher above the support plane are ignored (input units)",
        get: |p| ParamValue::Double(p.max_height_above_plane),
        set: |p, v| {
            p.max_height_above_plane = double(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "max_objects",
        kind: ParamType::Integer,
        restart_only: false,
        description: "at most this many objects per cloud, nearest the sensor first",
        get: |p| ParamValue::Integer(p.max_objects),
        set: |p, v| {
            p.max_objects = integer(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "min_object_score",
        kind: ParamType::Double,
        restart_only: false,
        description: "an object whose best category scores below this (match quality, see \
                      README) is reported as unrecognised, not published, in [0, 1]",
        get: |p| ParamValue::Double(p.min_object_score),
        set: |p, v| {
            p.min_object_score = double(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "yaw_hypotheses",
        kind: ParamType::Integer,
        restart_only: false,
        description: "yaws tried per object and model, ranked by shape before the forward \
                      pass (README, \"Any pose\"); 1 = the object as it faces the sensor, 1 to 72",
        get: |p| ParamValue::Integer(p.yaw_hypotheses),
        set: |p, v| {
            p.yaw_hypotheses = integer(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "category_gate",
        kind: ParamType::Double,
        restart_only: false,
        description: "a model runs on an object only when its category's classifier \
                      probability (without a classifier: its shape agreement) is within this \
                      of the best's, no forward pass (README, \"The tabletop zoo at any \
                      yaw\"); 1 = every model on every object, in [0, 1]",
        get: |p| ParamValue::Double(p.category_gate),
        set: |p, v| {
            p.category_gate = double(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "classifier_path",
        kind: ParamType::String,
        restart_only: true,
        description: "the object classifier (`semcorr train-classifier`; relative to \
                      `model_dir`): each object's category and yaw from its view before any \
                      model runs, which then runs turned back to its canonical pose (README, \
                      \"The tabletop zoo at any yaw\"); `category_gate` is then a margin of \
                      its probabilities; \
                      empty = the shape test decides and objects keep their facing yaw",
        get: |p| ParamValue::String(p.classifier_path.clone()),
        set: |p, v| {
            p.classifier_path = string(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "min_class_probability",
        kind: ParamType::Double,
        restart_only: false,
        description: "with a classifier: an object it gives at least this probability is \
                      detected as that category even when its keypoints match below \
                      `min_object_score` (the cluster's box, no keypoints); 0 = never, the \
                      default: the classifier knows only its categories and calls a real \
                      scan's boxes laptops with certainty (README), in [0, 1]",
        get: |p| ParamValue::Double(p.min_class_probability),
        set: |p, v| {
            p.min_class_probability = double(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "publish_tf",
        kind: ParamType::Bool,
        restart_only: false,
        description: "broadcast a `/tf` frame per detected object",
        get: |p| ParamValue::Bool(p.publish_tf),
        set: |p, v| {
            p.publish_tf = boolean(v);
            Ok(())
        },
    },
    ParamSpec {
        name: "tf_prefix",
        kind: ParamType::String,
        restart_only: false,
        description: "object frames are `<tf_prefix><category>_<n>` (n = the detection's \
                      index)",
        get: |p| ParamValue::String(p.tf_prefix.clone()),
        set: |p, v| {
            p.tf_prefix = string(v);
            Ok(())
        },
    },
];

/// The row of `name`, or an error listing the known names.
pub fn spec(name: &str) -> Result<&'static ParamSpec> {
    PARAMS.iter().find(|s| s.name == name).ok_or_else(|| {
        let known: Vec<&str> = PARAMS.iter().map(|s| s.name).collect();
        Error::invalid(format!(
            "unknown parameter '{name}' (known: {})",
            known.join(", ")
        ))
    })
}

impl ParamValue {
    /// This value as `kind`, or why not. Integers are accepted where doubles are expected
    /// (`0` in a YAML file is an integer); nothing else is converted.
    fn coerce(self, kind: ParamType) -> std::result::Result<ParamValue, String> {
        use ParamValue as V;
        Ok(match (kind, self) {
            (ParamType::Bool, v @ V::Bool(_))
            | (ParamType::Integer, v @ V::Integer(_))
            | (ParamType::Double, v @ V::Double(_))
            | (ParamType::String, v @ V::String(_))
            | (ParamType::DoubleArray, v @ V::DoubleArray(_))
            | (ParamType::StringArray, v @ V::StringArray(_)) => v,
            (ParamType::Double, V::Integer(i)) => V::Double(i as f64),
            // One string where a list is expected: a list of one (`model_paths: a.gguf`).
            (ParamType::StringArray, V::String(s)) => V::StringArray(vec![s]),
            (ParamType::StringArray, V::DoubleArray(xs)) if xs.is_empty() => {
                V::StringArray(Vec::new())
            }
            (_, v) => return Err(format!("expected {}, got {v}", kind.name())),
        })
    }

    /// A value written as YAML (a params file's entry, `--set name=value`): `true`, `3`,
    /// `0.5`, `+z`, `[0, 0.5]`, `[a.gguf, b.gguf]`. An empty list is a double array.
    pub fn from_yaml(v: &serde_yaml::Value) -> std::result::Result<ParamValue, String> {
        use serde_yaml::Value as Y;
        match v {
            Y::Bool(b) => Ok(ParamValue::Bool(*b)),
            Y::Number(n) => Ok(match n.as_i64() {
                Some(i) => ParamValue::Integer(i),
                None => ParamValue::Double(n.as_f64().unwrap_or(f64::NAN)),
            }),
            Y::String(s) => Ok(ParamValue::String(s.clone())),
            Y::Sequence(items) if !items.is_empty() && items.iter().all(Y::is_string) => {
                Ok(ParamValue::StringArray(
                    items
                        .iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect(),
                ))
            }
            Y::Sequence(items) => items
                .iter()
                .map(|x| {
                    x.as_f64()
                        .ok_or_else(|| format!("{x:?} in a list is neither a number nor text"))
                })
                .collect::<std::result::Result<_, _>>()
                .map(ParamValue::DoubleArray),
            other => Err(format!("{other:?} is not a bool, number, string or list")),
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "bool {b}"),
            ParamValue::Integer(i) => write!(f, "integer {i}"),
            ParamValue::Double(x) => write!(f, "double {x}"),
            ParamValue::String(s) => write!(f, "string '{s}'"),
            ParamValue::DoubleArray(xs) => write!(f, "double array {xs:?}"),
            ParamValue::StringArray(xs) => write!(f, "string array {xs:?}"),
        }
    }
}

fn refuse(name: &str, why: impl fmt::Display) -> Error {
    Error::invalid(format!("parameter '{name}': {why}"))
}

impl NodeParams {
    /// Sets one parameter from a value, type-checked and parsed; the error names it. Range
    /// checks that involve the whole set are [`NodeParams::validate`]'s.
    pub fn set(&mut self, name: &str, value: ParamValue) -> Result<()> {
        let spec = spec(name)?;
        let value = value.coerce(spec.kind).map_err(|why| refuse(name, why))?;
        (spec.set)(self, value).map_err(|why| refuse(name, why))
    }

    /// Applies `name=value` overrides (`semcorr infer --set`), each value written as YAML;
    /// lists are written `name=[a,b]`.
    pub fn apply_overrides(&mut self, overrides: &[String]) -> Result<()> {
        for item in overrides {
            let (name, text) = item
                .split_once('=')
                .ok_or_else(|| Error::invalid(format!("--set '{item}': expected name=value")))?;
            let yaml: serde_yaml::Value =
                serde_yaml::from_str(text).map_err(|e| Error::parse(format!("--set {name}"), e))?;
            let value = ParamValue::from_yaml(&yaml).map_err(|why| refuse(name, why))?;
            self.set(name, value)?;
        }
        self.validate()
    }

    /// Reads the node's section of a ROS 2 params file
    /// (`<node name or /**>: {ros__parameters: {...}}`) over the defaults. Unknown names
    /// are errors: a typo in a file should not pass silently.
    pub fn from_ros_yaml(path: &Path, node_name: &str) -> Result<NodeParams> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&text).map_err(|e| Error::parse(path.display().to_string(), e))?;
        let section = [
            node_name.to_string(),
            format!("/{node_name}"),
            "/**".to_string(),
        ]
        .iter()
        .find_map(|k| doc.get(k.as_str()))
        .and_then(|n| n.get("ros__parameters"))
        .ok_or_else(|| {
            Error::format(path, format!("no '{node_name}: ros__parameters:' section"))
        })?;
        let map = section
            .as_mapping()
            .ok_or_else(|| Error::format(path, "ros__parameters is not a mapping"))?;
        let mut params = NodeParams::default();
        for (key, value) in map {
            let name = key.as_str().unwrap_or("?");
            let value = ParamValue::from_yaml(value)
                .map_err(|why| Error::format(path, format!("parameter '{name}': {why}")))?;
            params
                .set(name, value)
                .map_err(|e| Error::format(path, e.to_string()))?;
        }
        params
            .validate()
            .map_err(|e| Error::format(path, e.to_string()))?;
        Ok(params)
    }

    /// Checks the ranges of every value; the error names the parameter.
    pub fn validate(&self) -> Result<()> {
        if self.model_paths.is_empty() || self.model_paths.iter().any(String::is_empty) {
            return Err(refuse(
                "model_paths",
                format!(
                    "{:?}: one or more .gguf files from `semcorr export` needed",
                    self.model_paths
                ),
            ));
        }
        if self.num_points < 0 || (self.num_points > 0 && self.num_points < 16) {
            return Err(refuse(
                "num_points",
                format!("{} (0 = the model's, else at least 16)", self.num_points),
            ));
        }
        if !(0.0..=1.0).contains(&self.score_threshold) {
            return Err(refuse(
                "score_threshold",
                format!("{} is not in [0, 1]", self.score_threshold),
            ));
        }
        if self.max_keypoints < 0 {
            return Err(refuse(
                "max_keypoints",
                format!("{} is negative (0 = all)", self.max_keypoints),
            ));
        }
        self.crop_bounds()?;
        let at_least = |name: &str, v: f64, min: f64, what: &str| {
            if v.is_finite() && v >= min {
                Ok(())
            } else {
                Err(refuse(name, format!("{v} ({what})")))
            }
        };
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(refuse(name, format!("{v} (must be positive)")))
            }
        };
        at_least("voxel_size", self.voxel_size, 0.0, "must be 0 or positive")?;
        at_least(
            "max_range",
            self.max_range,
            0.0,
            "0 = no limit, else positive",
        )?;
        positive("plane_distance_threshold", self.plane_distance_threshold)?;
        at_least(
            "plane_iterations",
            self.plane_iterations as f64,
            1.0,
            "at least 1",
        )?;
        if !(0.0..=90.0).contains(&self.plane_max_tilt_deg) {
            return Err(refuse(
                "plane_max_tilt_deg",
                format!("{} is not in [0, 90]", self.plane_max_tilt_deg),
            ));
        }
        positive("cluster_tolerance", self.cluster_tolerance)?;
        at_least(
            "min_cluster_points",
            self.min_cluster_points as f64,
            1.0,
            "at least 1",
        )?;
        if self.max_cluster_points < self.min_cluster_points {
            return Err(refuse(
                "max_cluster_points",
                format!(
                    "{} is below min_cluster_points ({})",
                    self.max_cluster_points, self.min_cluster_points
                ),
            ));
        }
        positive("max_object_extent", self.max_object_extent)?;
        positive("max_height_above_plane", self.max_height_above_plane)?;
        at_least("max_objects", self.max_objects as f64, 1.0, "at least 1")?;
        if !(1..=72).contains(&self.yaw_hypotheses) {
            return Err(refuse(
                "yaw_hypotheses",
                format!("{} is not in [1, 72]", self.yaw_hypotheses),
            ));
        }
        if !(0.0..=1.0).contains(&self.category_gate) {
            return Err(refuse(
                "category_gate",
                format!("{} is not in [0, 1]", self.category_gate),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_object_score) {
            return Err(refuse(
                "min_object_score",
                format!("{} is not in [0, 1]", self.min_object_score),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_class_probability) {
            return Err(refuse(
                "min_class_probability",
                format!("{} is not in [0, 1]", self.min_class_probability),
            ));
        }
        if self.up_axis == UpSetting::Auto && !self.segment_scene {
            return Err(refuse(
                "up_axis",
                "auto finds up from the support plane, which needs segment_scene: true \
                 (or give a fixed axis)",
            ));
        }
        Ok(())
    }

    /// `model_paths` with relative entries under `model_dir`.
    /// `classifier_path` under `model_dir` (when relative), `None` when empty.
    pub fn resolved_classifier_path(&self) -> Option<std::path::PathBuf> {
        (!self.classifier_path.is_empty())
            .then(|| Path::new(&self.model_dir).join(&self.classifier_path))
    }

    pub fn resolved_model_paths(&self) -> Vec<std::path::PathBuf> {
        self.model_paths
            .iter()
            .map(|m| Path::new(&self.model_dir).join(m))
            .collect()
    }

    /// The scene stage's settings.
    pub fn scene_params(&self) -> SceneParams {
        let d = SceneParams::default();
        SceneParams {
            plane: crate::scene::PlaneParams {
                distance_threshold: self.plane_distance_threshold as f32,
                iterations: self.plane_iterations as usize,
                max_tilt_deg: self.plane_max_tilt_deg as f32,
                ..d.plane
            },
            cluster_tolerance: self.cluster_tolerance as f32,
            min_cluster_points: self.min_cluster_points as usize,
            max_cluster_points: self.max_cluster_points as usize,
            max_object_extent: self.max_object_extent as f32,
            max_height: self.max_height_above_plane as f32,
            max_objects: self.max_objects as usize,
        }
    }

    /// The crop box, `None` when off (empty or all zeros: ROS params files cannot type an
    /// empty list).
    pub fn crop_bounds(&self) -> Result<Option<[f32; 6]>> {
        match self.crop_box.as_slice() {
            [] => Ok(None),
            b if b.iter().all(|&v| v == 0.0) => Ok(None),
            b @ [x0, y0, z0, x1, y1, z1] => {
                if x0 < x1 && y0 < y1 && z0 < z1 {
                    Ok(Some(std::array::from_fn(|i| b[i] as f32)))
                } else {
                    Err(refuse(
                        "crop_box",
                        format!("{b:?}: each min must be below its max"),
                    ))
                }
            }
            other => Err(refuse(
                "crop_box",
                format!(
                    "{} values; expected none or 6 (xmin ymin zmin xmax ymax zmax)",
                    other.len()
                ),
            )),
        }
    }
}

/// The README's parameter table, generated from [`PARAMS`] and the defaults.
pub fn markdown_table() -> String {
    let defaults = NodeParams::default();
    let mut s = String::from("| parameter | type | default | at run time | meaning |\n");
    s += "|---|---|---|---|---|\n";
    for p in PARAMS {
        let default = match p.value(&defaults) {
            ParamValue::Bool(b) => b.to_string(),
            ParamValue::Integer(i) => i.to_string(),
            ParamValue::Double(x) => format!("{x:?}"),
            ParamValue::String(v) => v,
            ParamValue::DoubleArray(xs) => format!("{xs:?}"),
            ParamValue::StringArray(xs) => format!("{xs:?}"),
        };
        s += &format!(
            "| `{}` | {} | `{default}` | {} | {} |\n",
            p.name,
            p.kind.name(),
            if p.restart_only { "restart" } else { "yes" },
            p.description
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn shipped_config_equals_the_table_defaults() {
        let path = root().join("config/semcorr.yaml");
        let p = NodeParams::from_ros_yaml(&path, "semcorr_node").unwrap();
        let defaults = NodeParams::default();
        for spec in PARAMS {
            // crop_box: the file writes "off" as six zeros (no empty lists in ROS files).
            if spec.name == "crop_box" {
                assert_eq!(p.crop_bounds().unwrap(), None);
                continue;
            }
            assert_eq!(spec.value(&p), spec.value(&defaults), "{}", spec.name);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for spec in PARAMS {
            assert!(
                text.contains(&format!("    {}:", spec.name)),
                "{}",
                spec.name
            );
        }
        for model in p.resolved_model_paths() {
            assert!(root().join(&model).is_file(), "{}", model.display());
        }
    }

    #[test]
    fn launch_files_default_to_the_package_models() {
        let dir = NodeParams::default().model_dir;
        let py = std::fs::read_to_string(root().join("launch/semcorr.launch.py")).unwrap();
        assert!(py.contains(&format!("[share, \"{dir}\"]")), "{py}");
        let xml = std::fs::read_to_string(root().join("launch/semcorr.launch.xml")).unwrap();
        assert!(
            xml.contains(&format!("$(find-pkg-share semcorr)/{dir}\"")),
            "{xml}"
        );
        for launch in [&py, &xml] {
            assert!(launch.contains("config") && launch.contains("semcorr.yaml"));
        }
    }

    #[test]
    fn readme_documents_every_parameter() {
        let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
        assert!(
            readme.contains(&markdown_table()),
            "README's parameter table differs from the code; paste:\n{}",
            markdown_table()
        );
    }

    #[test]
    fn every_parameter_reads_back_what_it_wrote() {
        let mut p = NodeParams::default();
        for spec in PARAMS {
            let v = spec.value(&NodeParams::default());
            p.set(spec.name, v.clone()).unwrap();
            assert_eq!(spec.value(&p), v, "{}", spec.name);
        }
        assert_eq!(p, NodeParams::default());
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let s = |t: &str| ParamValue::String(t.into());
        let cases = [
            ("up_axis", s("up")),
            ("fallback_up_axis", s("auto")),
            ("model_paths", ParamValue::StringArray(vec![])),
            ("max_range", ParamValue::Double(-1.0)),
            ("plane_iterations", ParamValue::Integer(0)),
            ("plane_max_tilt_deg", ParamValue::Double(95.0)),
            ("cluster_tolerance", ParamValue::Double(0.0)),
            ("max_cluster_points", ParamValue::Integer(10)),
            ("max_objects", ParamValue::Integer(0)),
            ("yaw_hypotheses", ParamValue::Integer(0)),
            ("yaw_hypotheses", ParamValue::Integer(73)),
            ("category_gate", ParamValue::Double(-0.1)),
            ("category_gate", ParamValue::Double(1.5)),
            ("min_object_score", ParamValue::Double(2.0)),
            ("min_class_probability", ParamValue::Double(-0.5)),
            ("device", s("gpu")),
            ("precision", s("int4")),
            ("num_points", ParamValue::Integer(3)),
            ("num_points", ParamValue::Double(2.5)),
            ("score_threshold", ParamValue::Double(1.5)),
            ("score_threshold", s("high")),
            ("max_keypoints", ParamValue::Integer(-1)),
            ("crop_box", ParamValue::DoubleArray(vec![0.0, 1.0])),
            ("voxel_size", ParamValue::Double(f64::NAN)),
            ("face_sensor", ParamValue::Integer(1)),
        ];
        for (name, v) in cases {
            let mut p = NodeParams::default();
            let e = p
                .set(name, v.clone())
                .and_then(|()| p.validate())
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("'{name}'")), "{name} {v}: {e}");
        }
        let mut p = NodeParams::default();
        p.set("segment_scene", ParamValue::Bool(false)).unwrap();
        let e = p.validate().unwrap_err().to_string();
        assert!(
            e.contains("'up_axis'") && e.contains("segment_scene"),
            "{e}"
        );
        let e = NodeParams::default()
            .set("scor_threshold", ParamValue::Double(0.1))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("scor_threshold") && e.contains("score_threshold"),
            "{e}"
        );
    }

    #[test]
    fn typed_values_parse() {
        let mut p = NodeParams::default();
        p.apply_overrides(&[
            "device=cuda:1".into(),
            "precision=q8_0".into(),
            "up_axis=-y".into(),
            "model_paths=[a.gguf, /m/b.gguf]".into(),
            "crop_box=[-1, -1, 0, 1, 1, 2.5]".into(),
            "score_threshold=1".into(),
        ])
        .unwrap();
        assert_eq!(p.device, DeviceChoice::Cuda(1));
        assert_eq!(p.precision, PrecisionChoice::Fixed(Precision::Q8_0));
        assert_eq!(p.up_axis, UpSetting::Axis(UpAxis::NegY));
        assert_eq!(
            p.resolved_model_paths(),
            [Path::new("models/a.gguf"), Path::new("/m/b.gguf")]
        );
        p.apply_overrides(&["model_paths=c.gguf".into(), "up_axis=auto".into()])
            .unwrap();
        assert_eq!(p.model_paths, ["c.gguf"]);
        assert_eq!(p.up_axis, UpSetting::Auto);
        assert_eq!(p.score_threshold, 1.0);
        assert_eq!(
            p.crop_bounds().unwrap(),
            Some([-1.0, -1.0, 0.0, 1.0, 1.0, 2.5])
        );
        let e = p
            .apply_overrides(&["voxel_size".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("name=value"), "{e}");
    }

    #[test]
    fn unknown_or_mistyped_keys_in_the_file_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.yaml");
        std::fs::write(
            &p,
            "semcorr_node:\n  ros__parameters:\n    scor_threshold: 0.5\n",
        )
        .unwrap();
        let e = NodeParams::from_ros_yaml(&p, "semcorr_node")
            .unwrap_err()
            .to_string();
        assert!(e.contains("scor_threshold") && e.contains("p.yaml"), "{e}");
        std::fs::write(&p, "/**:\n  ros__parameters:\n    voxel_size: big\n").unwrap();
        let e = NodeParams::from_ros_yaml(&p, "semcorr_node")
            .unwrap_err()
            .to_string();
        assert!(e.contains("voxel_size"), "{e}");
        std::fs::write(&p, "other:\n  ros__parameters: {}\n").unwrap();
        let e = NodeParams::from_ros_yaml(&p, "semcorr_node")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ros__parameters"), "{e}");
    }
}
