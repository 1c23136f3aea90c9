//! ROS parameters <-> [`NodeParams`]: read from the command line / params file (r2r loads
//! them at node creation), type-checked one by one so an error names the parameter, then
//! written back as the node's declared parameters (`ros2 param list/get/set` see them).

use crate::error::{Error, Result};
use crate::node::NodeParams;
use indexmap::IndexMap;
use r2r::{Parameter, ParameterValue};
use std::sync::Mutex;

/// Parameters that only take effect at start-up (they choose and load the model).
pub const RESTART_ONLY: &[&str] = &["model_path", "device", "precision", "num_points"];

/// ROS parameters every node has; accepted and ignored.
const STANDARD: &[&str] = &["use_sim_time"];

fn type_error(name: &str, want: &str, got: &ParameterValue) -> Error {
    Error::invalid(format!("parameter '{name}': expected {want}, got {got:?}"))
}

/// Sets one parameter of `p` from a ROS value. `Ok(false)` for a name the node does not
/// have. Integers are accepted where doubles are expected (`0` in a YAML file is an
/// integer), nothing else is converted.
pub fn apply(p: &mut NodeParams, name: &str, v: &ParameterValue) -> Result<bool> {
    use ParameterValue as V;
    let string = |dst: &mut String| match v {
        V::String(s) => {
            *dst = s.clone();
            Ok(())
        }
        other => Err(type_error(name, "a string", other)),
    };
    let double = |dst: &mut f64| match v {
        V::Double(x) => {
            *dst = *x;
            Ok(())
        }
        V::Integer(i) => {
            *dst = *i as f64;
            Ok(())
        }
        other => Err(type_error(name, "a double", other)),
    };
    let integer = |dst: &mut i64| match v {
        V::Integer(i) => {
            *dst = *i;
            Ok(())
        }
        other => Err(type_error(name, "an integer", other)),
    };
    let boolean = |dst: &mut bool| match v {
        V::Bool(b) => {
            *dst = *b;
            Ok(())
        }
        other => Err(type_error(name, "a bool", other)),
    };
    match name {
        "model_path" => string(&mut p.model_path)?,
        "device" => string(&mut p.device)?,
        "precision" => string(&mut p.precision)?,
        "up_axis" => string(&mut p.up_axis)?,
        "num_points" => integer(&mut p.num_points)?,
        "max_keypoints" => integer(&mut p.max_keypoints)?,
        "score_threshold" => double(&mut p.score_threshold)?,
        "voxel_size" => double(&mut p.voxel_size)?,
        "publish_embedding_cloud" => boolean(&mut p.publish_embedding_cloud)?,
        "face_sensor" => boolean(&mut p.face_sensor)?,
        "crop_box" => {
            p.crop_box = match v {
                V::DoubleArray(xs) => xs.clone(),
                V::IntegerArray(xs) => xs.iter().map(|&i| i as f64).collect(),
                other => return Err(type_error(name, "a double array", other)),
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The node's parameters from what r2r loaded, validated. Unknown names are returned
/// for a warning (a typo in a params file should not go unnoticed).
pub fn read(node: &r2r::Node) -> Result<(NodeParams, Vec<String>)> {
    let loaded = node.params.lock().unwrap_or_else(|e| e.into_inner());
    let mut p = NodeParams::default();
    let mut unknown = Vec::new();
    for (name, param) in loaded.iter() {
        if !apply(&mut p, name, &param.value)? && !STANDARD.contains(&name.as_str()) {
            unknown.push(name.clone());
        }
    }
    p.validate()?;
    Ok((p, unknown))
}

/// The node's parameter table as r2r keeps it.
pub type Declared = Mutex<IndexMap<String, Parameter>>;

/// Publishes every parameter's value and description as the node's own.
pub fn declare(declared: &Declared, p: &NodeParams) {
    declare_matching(declared, p, |_| true)
}

/// Puts one parameter back to its value in `p`.
pub fn declare_one(declared: &Declared, p: &NodeParams, name: &str) {
    declare_matching(declared, p, |n| n == name)
}

fn declare_matching(declared: &Declared, p: &NodeParams, wanted: impl Fn(&str) -> bool) {
    use ParameterValue as V;
    let values: [(&str, ParameterValue, &'static str); 11] = [
        (
            "model_path",
            V::String(p.model_path.clone()),
            "deployed model (.gguf from `semcorr export`); restart to change",
        ),
        (
            "device",
            V::String(p.device.clone()),
            "cpu or cuda:N; restart to change",
        ),
        (
            "precision",
            V::String(p.precision.clone()),
            "auto, f32, f16, q8_0 or q4_0; restart to change",
        ),
        (
            "num_points",
            V::Integer(p.num_points),
            "points fed to the network, 0 = the model's; restart to change",
        ),
        (
            "score_threshold",
            V::Double(p.score_threshold),
            "publish correspondences scoring at least this, in [0, 1]",
        ),
        (
            "max_keypoints",
            V::Integer(p.max_keypoints),
            "publish at most this many correspondences, 0 = all",
        ),
        (
            "crop_box",
            V::DoubleArray(p.crop_box.clone()),
            "[xmin, ymin, zmin, xmax, ymax, zmax] in the input frame; all zeros = off",
        ),
        (
            "voxel_size",
            V::Double(p.voxel_size),
            "voxel-grid edge before sampling, 0 = off",
        ),
        (
            "publish_embedding_cloud",
            V::Bool(p.publish_embedding_cloud),
            "also publish ~/output/embedding_cloud",
        ),
        (
            "up_axis",
            V::String(p.up_axis.clone()),
            "input axis pointing up: +z (REP-103), -y (optical), +y (model frame)",
        ),
        (
            "face_sensor",
            V::Bool(p.face_sensor),
            "turn clouds so the side facing the sensor is the models' front",
        ),
    ];
    let mut map = declared.lock().unwrap_or_else(|e| e.into_inner());
    for (name, value, description) in values.into_iter().filter(|(n, _, _)| wanted(n)) {
        map.insert(name.to_string(), Parameter { value, description });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_and_type_errors_name_the_parameter() {
        let mut p = NodeParams::default();
        assert!(apply(&mut p, "score_threshold", &ParameterValue::Integer(1)).unwrap());
        assert_eq!(p.score_threshold, 1.0);
        apply(
            &mut p,
            "crop_box",
            &ParameterValue::IntegerArray(vec![0, 0, 0, 1, 1, 1]),
        )
        .unwrap();
        assert_eq!(p.crop_box, vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
        let e = apply(&mut p, "num_points", &ParameterValue::Double(2.5)).unwrap_err();
        assert!(e.to_string().contains("'num_points'"), "{e}");
        assert!(!apply(&mut p, "scor_threshold", &ParameterValue::Double(0.1)).unwrap());
    }
}
