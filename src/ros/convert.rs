//! Message conversions between r2r's generated types and the core's plain data.

use crate::node::pointcloud2::{PointField, RawPointCloud2};
use crate::node::report::{
    DiagnosticReport, Level, MarkerAction, MarkerKind, MarkerSpec, MARKER_NS,
};
use r2r::diagnostic_msgs::msg::{DiagnosticStatus, KeyValue};
use r2r::sensor_msgs::msg::{PointCloud2, PointField as RosPointField};
use r2r::std_msgs::msg::{ColorRGBA, Header};
use r2r::visualization_msgs::msg::Marker;

/// Takes the cloud out of the message (the data is moved, not copied).
pub fn raw_from_ros(msg: &mut PointCloud2) -> RawPointCloud2 {
    RawPointCloud2 {
        height: msg.height,
        width: msg.width,
        fields: msg
            .fields
            .iter()
            .map(|f| PointField {
                name: f.name.clone(),
                offset: f.offset,
                datatype: f.datatype,
                count: f.count,
            })
            .collect(),
        is_bigendian: msg.is_bigendian,
        point_step: msg.point_step,
        row_step: msg.row_step,
        data: std::mem::take(&mut msg.data),
        is_dense: msg.is_dense,
    }
}

pub fn ros_from_raw(raw: RawPointCloud2, header: &Header) -> PointCloud2 {
    PointCloud2 {
        header: header.clone(),
        height: raw.height,
        width: raw.width,
        fields: raw
            .fields
            .into_iter()
            .map(|f| RosPointField {
                name: f.name,
                offset: f.offset,
                datatype: f.datatype,
                count: f.count,
            })
            .collect(),
        is_bigendian: raw.is_bigendian,
        point_step: raw.point_step,
        row_step: raw.row_step,
        data: raw.data,
        is_dense: raw.is_dense,
    }
}

// visualization_msgs/Marker constants.
const SPHERE: i32 = 2;
const TEXT_VIEW_FACING: i32 = 9;
const ADD: i32 = 0;
const DELETE: i32 = 2;

pub fn marker(spec: &MarkerSpec, header: &Header) -> Marker {
    let mut m = Marker {
        header: header.clone(),
        ns: MARKER_NS.to_string(),
        id: spec.id,
        type_: match spec.kind {
            MarkerKind::Sphere => SPHERE,
            MarkerKind::Text => TEXT_VIEW_FACING,
        },
        action: match spec.action {
            MarkerAction::Add => ADD,
            MarkerAction::Delete => DELETE,
        },
        text: spec.text.clone(),
        ..Default::default()
    };
    m.pose.position.x = spec.position[0];
    m.pose.position.y = spec.position[1];
    m.pose.position.z = spec.position[2];
    m.pose.orientation.w = 1.0;
    m.scale.x = spec.scale;
    m.scale.y = spec.scale;
    m.scale.z = spec.scale;
    let [r, g, b, a] = spec.rgba;
    m.color = ColorRGBA { r, g, b, a };
    m
}

pub fn diagnostic_status(
    report: &DiagnosticReport,
    name: &str,
    hardware_id: &str,
) -> DiagnosticStatus {
    DiagnosticStatus {
        level: match report.level {
            Level::Ok => 0,
            Level::Warn => 1,
            Level::Error => 2,
        },
        name: name.to_string(),
        message: report.message.clone(),
        hardware_id: hardware_id.to_string(),
        values: report
            .values
            .iter()
            .map(|(key, value)| KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
    }
}
