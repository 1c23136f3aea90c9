//! Message conversions between r2r's generated types and the core's plain data.

use crate::node::pointcloud2::{PointField, RawPointCloud2};
use crate::node::process::{DetectionSpec, FrameSpec};
use crate::node::report::{
    DiagnosticReport, Level, MarkerAction, MarkerKind, MarkerSpec, MARKER_NS,
};
use r2r::diagnostic_msgs::msg::{DiagnosticStatus, KeyValue};
use r2r::geometry_msgs::msg::{Pose, Quaternion, Transform, TransformStamped, Vector3};
use r2r::sensor_msgs::msg::{PointCloud2, PointField as RosPointField};
use r2r::std_msgs::msg::{ColorRGBA, Header};
use r2r::tf2_msgs::msg::TFMessage;
use r2r::vision_msgs::msg::{
    BoundingBox3D, Detection3D, Detection3DArray, ObjectHypothesis, ObjectHypothesisWithPose,
};
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
const ARROW: i32 = 0;
const CUBE: i32 = 1;
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
            MarkerKind::Cube => CUBE,
            MarkerKind::Arrow => ARROW,
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
    [
        m.pose.orientation.x,
        m.pose.orientation.y,
        m.pose.orientation.z,
        m.pose.orientation.w,
    ] = spec.orientation;
    [m.scale.x, m.scale.y, m.scale.z] = spec.scale;
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

fn pose(position: [f64; 3], orientation: [f64; 4]) -> Pose {
    let mut p = Pose::default();
    [p.position.x, p.position.y, p.position.z] = position;
    [
        p.orientation.x,
        p.orientation.y,
        p.orientation.z,
        p.orientation.w,
    ] = orientation;
    p
}

/// `~/output/detections`: one `Detection3D` per detection, all with the input's header.
pub fn detections(specs: &[DetectionSpec], header: &Header) -> Detection3DArray {
    Detection3DArray {
        header: header.clone(),
        detections: specs
            .iter()
            .map(|d| {
                let center = pose(d.position, d.orientation);
                let mut result = ObjectHypothesisWithPose {
                    hypothesis: ObjectHypothesis {
                        class_id: d.class_id.clone(),
                        score: d.score,
                    },
                    ..Default::default()
                };
                result.pose.pose = center.clone();
                // Unknown covariance: zeros (a fixed 6 x 6 array in the message).
                result.pose.covariance = vec![0.0; 36];
                let [x, y, z] = d.size;
                Detection3D {
                    header: header.clone(),
                    results: vec![result],
                    bbox: BoundingBox3D {
                        center,
                        size: Vector3 { x, y, z },
                    },
                    id: d.id.clone(),
                }
            })
            .collect(),
    }
}

/// `/tf`: a frame per detection, parent = the input's frame, the input's stamp.
pub fn frames(specs: &[FrameSpec], header: &Header) -> TFMessage {
    TFMessage {
        transforms: specs
            .iter()
            .map(|f| {
                let [x, y, z] = f.translation;
                let [qx, qy, qz, qw] = f.rotation;
                TransformStamped {
                    header: header.clone(),
                    child_frame_id: f.child_frame_id.clone(),
                    transform: Transform {
                        translation: Vector3 { x, y, z },
                        rotation: Quaternion {
                            x: qx,
                            y: qy,
                            z: qz,
                            w: qw,
                        },
                    },
                }
            })
            .collect(),
    }
}
