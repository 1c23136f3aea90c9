//! The node's parameters: names, types, defaults and validation, shared by the r2r adapter
//! (declared ROS parameters) and `config/semcorr.yaml` (`ros__parameters` layout). A bad
//! value stops start-up with a message naming the parameter.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Everything `semcorr_node` can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeParams {
    /// The deployed model (`semcorr export`), a `.gguf` file.
    pub model_path: String,
    /// `cpu` or `cuda:N` (the latter needs the `cuda` feature).
    pub device: String,
    /// Runtime precision: `auto` (the model file's, dequantized to f32 on CPU, the fastest
    /// there) or `f32`, `f16`, `q8_0`, `q4_0`.
    pub precision: String,
    /// Points fed to the network; 0 = the model's own `num_points`.
    pub num_points: i64,
    /// Correspondences scoring below this are not published.
    pub score_threshold: f64,
    /// Publish at most this many correspondences (best first); 0 = all.
    pub max_keypoints: i64,
    /// Axis-aligned crop box in the input frame, `[xmin, ymin, zmin, xmax, ymax, zmax]`;
    /// empty or all zeros = no crop (ROS params files cannot type an empty list).
    pub crop_box: Vec<f64>,
    /// Voxel-grid down-sampling edge in input units before sampling; 0 = off.
    pub voxel_size: f64,
    /// Also publish `~/output/embedding_cloud` (xyz + embedding colours).
    pub publish_embedding_cloud: bool,
    /// The input frame's axis pointing up (against gravity): `+z` for REP-103 frames
    /// (base_link, camera_link), `-y` for camera optical frames, `+y` for clouds already
    /// in the models' own frame. See `node::frame`.
    pub up_axis: String,
    /// Turn each cloud about the up axis so the direction toward the sensor (the frame's
    /// origin) is the models' front; off = only align up.
    pub face_sensor: bool,
}

impl Default for NodeParams {
    fn default() -> Self {
        NodeParams {
            model_path: "models/mug_partial.gguf".into(),
            device: "cpu".into(),
            precision: "auto".into(),
            num_points: 0,
            score_threshold: 0.3,
            max_keypoints: 0,
            crop_box: Vec::new(),
            voxel_size: 0.0,
            publish_embedding_cloud: false,
            up_axis: "+z".into(),
            face_sensor: true,
        }
    }
}

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(usize),
}

impl NodeParams {
    /// Reads the node's section of a ROS 2 params file:
    /// `<node name or /**>: {ros__parameters: {...}}`.
    pub fn from_ros_yaml(path: &Path, node_name: &str) -> Result<NodeParams> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&text).map_err(|e| Error::format(path, e.to_string()))?;
        let section = [
            node_name.to_string(),
            format!("/{node_name}"),
            "/**".to_string(),
        ]
        .iter()
        .find_map(|k| doc.get(k.as_str()))
        .and_then(|n| n.get("ros__parameters"))
        .cloned()
        .ok_or_else(|| {
            Error::format(path, format!("no '{node_name}: ros__parameters:' section"))
        })?;
        // One key at a time first, so a type error names its parameter (serde_yaml's
        // messages do not).
        if let Some(map) = section.as_mapping() {
            for (key, value) in map {
                let mut single = serde_yaml::Mapping::new();
                single.insert(key.clone(), value.clone());
                serde_yaml::from_value::<NodeParams>(serde_yaml::Value::Mapping(single)).map_err(
                    |e| {
                        let name = key.as_str().unwrap_or("?");
                        Error::format(path, format!("parameter '{name}': {e}"))
                    },
                )?;
            }
        }
        let params: NodeParams = serde_yaml::from_value(section)
            .map_err(|e| Error::format(path, format!("parameters: {e}")))?;
        params.validate()?;
        Ok(params)
    }

    pub fn device(&self) -> Result<DeviceSpec> {
        match self.device.as_str() {
            "cpu" => Ok(DeviceSpec::Cpu),
            d => d
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "parameter 'device': '{d}' is not cpu or cuda:N (e.g. cuda:0)"
                    ))
                }),
        }
    }

    /// Checks every value; the error names the parameter.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |name: &str, why: String| Err(Error::invalid(format!("parameter '{name}': {why}")));
        if self.model_path.is_empty() {
            return bad(
                "model_path",
                "required (a .gguf file from `semcorr export`)".into(),
            );
        }
        self.device()?;
        if !["auto", "f32", "f16", "q8_0", "q4_0"].contains(&self.precision.as_str()) {
            return bad(
                "precision",
                format!("'{}' is not auto, f32, f16, q8_0 or q4_0", self.precision),
            );
        }
        if self.num_points < 0 || (self.num_points > 0 && self.num_points < 16) {
            return bad(
                "num_points",
                format!("{} (0 = the model's, else at least 16)", self.num_points),
            );
        }
        if !(0.0..=1.0).contains(&self.score_threshold) {
            return bad(
                "score_threshold",
                format!("{} is not in [0, 1]", self.score_threshold),
            );
        }
        if self.max_keypoints < 0 {
            return bad(
                "max_keypoints",
                format!("{} is negative (0 = all)", self.max_keypoints),
            );
        }
        match self.crop_box.as_slice() {
            [] => {}
            b if b.iter().all(|&v| v == 0.0) => {}
            [x0, y0, z0, x1, y1, z1] => {
                if !(x0 < x1 && y0 < y1 && z0 < z1) {
                    return bad(
                        "crop_box",
                        format!("{:?}: each min must be below its max", self.crop_box),
                    );
                }
            }
            other => {
                return bad(
                    "crop_box",
                    format!(
                        "{} values; expected none or 6 (xmin ymin zmin xmax ymax zmax)",
                        other.len()
                    ),
                )
            }
        }
        if !(self.voxel_size >= 0.0 && self.voxel_size.is_finite()) {
            return bad(
                "voxel_size",
                format!("{} (must be 0 or positive)", self.voxel_size),
            );
        }
        super::frame::parse_axis(&self.up_axis)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/semcorr.yaml");
        let p = NodeParams::from_ros_yaml(&path, "semcorr_node").unwrap();
        assert_eq!(p.device().unwrap(), DeviceSpec::Cpu);
        assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(&p.model_path)
            .is_file());
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let cases: [(&str, NodeParams); 8] = [
            (
                "up_axis",
                NodeParams {
                    up_axis: "up".into(),
                    ..Default::default()
                },
            ),
            (
                "device",
                NodeParams {
                    device: "gpu".into(),
                    ..Default::default()
                },
            ),
            (
                "precision",
                NodeParams {
                    precision: "int4".into(),
                    ..Default::default()
                },
            ),
            (
                "num_points",
                NodeParams {
                    num_points: 3,
                    ..Default::default()
                },
            ),
            (
                "score_threshold",
                NodeParams {
                    score_threshold: 1.5,
                    ..Default::default()
                },
            ),
            (
                "max_keypoints",
                NodeParams {
                    max_keypoints: -1,
                    ..Default::default()
                },
            ),
            (
                "crop_box",
                NodeParams {
                    crop_box: vec![0.0, 1.0],
                    ..Default::default()
                },
            ),
            (
                "voxel_size",
                NodeParams {
                    voxel_size: f64::NAN,
                    ..Default::default()
                },
            ),
        ];
        for (name, p) in cases {
            let e = p.validate().unwrap_err().to_string();
            assert!(e.contains(&format!("'{name}'")), "{name}: {e}");
        }
        assert_eq!(
            NodeParams {
                device: "cuda:1".into(),
                ..Default::default()
            }
            .device()
            .unwrap(),
            DeviceSpec::Cuda(1)
        );
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
        assert!(e.contains("scor_threshold"), "{e}");
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
