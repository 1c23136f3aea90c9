//! ROS parameters <-> [`NodeParams`], through the core's one parameter table
//! ([`crate::pipeline::params::PARAMS`]): r2r values are converted to the core's
//! [`ParamValue`], checked and stored by the table, and written back as the node's
//! declared parameters (`ros2 param list/get/set` see them, with their descriptions).

use crate::error::{Error, Result};
use crate::pipeline::params::{ParamValue, PARAMS};
use crate::pipeline::NodeParams;
use indexmap::IndexMap;
use r2r::{Parameter, ParameterValue};
use std::sync::Mutex;

/// ROS parameters every node has; accepted and ignored.
const STANDARD: &[&str] = &["use_sim_time"];

/// The core's value of an r2r value; an error for types the node never uses (byte and
/// bool arrays), which the caller reports with the parameter's name.
fn from_ros(v: &ParameterValue) -> std::result::Result<ParamValue, String> {
    use ParameterValue as V;
    Ok(match v {
        V::Bool(b) => ParamValue::Bool(*b),
        V::Integer(i) => ParamValue::Integer(*i),
        V::Double(x) => ParamValue::Double(*x),
        V::String(s) => ParamValue::String(s.clone()),
        V::DoubleArray(xs) => ParamValue::DoubleArray(xs.clone()),
        V::IntegerArray(xs) => ParamValue::DoubleArray(xs.iter().map(|&i| i as f64).collect()),
        V::StringArray(xs) => ParamValue::StringArray(xs.clone()),
        other => return Err(format!("unsupported parameter type {other:?}")),
    })
}

fn to_ros(v: ParamValue) -> ParameterValue {
    use ParameterValue as V;
    match v {
        ParamValue::Bool(b) => V::Bool(b),
        ParamValue::Integer(i) => V::Integer(i),
        ParamValue::Double(x) => V::Double(x),
        ParamValue::String(s) => V::String(s),
        ParamValue::DoubleArray(xs) => V::DoubleArray(xs),
        ParamValue::StringArray(xs) => V::StringArray(xs),
    }
}

/// Whether the node has a parameter of this name.
pub fn is_known(name: &str) -> bool {
    PARAMS.iter().any(|s| s.name == name)
}

/// Whether a change of `name` needs a restart (it chooses or loads the model).
pub fn is_restart_only(name: &str) -> bool {
    PARAMS.iter().any(|s| s.name == name && s.restart_only)
}

/// Sets one parameter of `p` from a ROS value; the error names the parameter.
pub fn apply(p: &mut NodeParams, name: &str, v: &ParameterValue) -> Result<()> {
    let value = from_ros(v).map_err(|why| Error::invalid(format!("parameter '{name}': {why}")))?;
    p.set(name, value)
}

/// The node's parameters from what r2r loaded, validated. Unknown names are returned
/// for a warning (a typo in a params file should not go unnoticed).
pub fn read(node: &r2r::Node) -> Result<(NodeParams, Vec<String>)> {
    let loaded = node.params.lock().unwrap_or_else(|e| e.into_inner());
    let mut p = NodeParams::default();
    let mut unknown = Vec::new();
    for (name, param) in loaded.iter() {
        if is_known(name) {
            apply(&mut p, name, &param.value)?;
        } else if !STANDARD.contains(&name.as_str()) {
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
    let mut map = declared.lock().unwrap_or_else(|e| e.into_inner());
    for spec in PARAMS.iter().filter(|s| wanted(s.name)) {
        map.insert(
            spec.name.to_string(),
            Parameter {
                value: to_ros(spec.value(p)),
                description: spec.description,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_convert_and_type_errors_name_the_parameter() {
        let mut p = NodeParams::default();
        apply(&mut p, "score_threshold", &ParameterValue::Integer(1)).unwrap();
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
        let e = apply(&mut p, "up_axis", &ParameterValue::StringArray(vec![])).unwrap_err();
        assert!(e.to_string().contains("'up_axis'"), "{e}");
        let e = apply(&mut p, "model_paths", &ParameterValue::ByteArray(vec![])).unwrap_err();
        assert!(e.to_string().contains("'model_paths'"), "{e}");
        assert!(!is_known("scor_threshold") && is_restart_only("model_paths"));
        for spec in PARAMS {
            let v = to_ros(spec.value(&p));
            apply(&mut p.clone(), spec.name, &v).unwrap();
        }
    }
}
