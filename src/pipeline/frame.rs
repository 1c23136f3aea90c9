//! From the sensor's frame to the model's (the pipeline's "object cloud" stage). The
//! shipped models were trained with objects upright along +y and their front toward +z (ShapeNet's convention); a robot's clouds
//! come in its own frame (REP-103 frames have +z up; camera optical frames have -y up).
//! The pipeline rotates each cloud so the configured up axis becomes +y and, optionally, so
//! the horizontal direction from the object toward the sensor becomes +z. Only the
//! orientation changes: the model's own normalisation then centres and scales as in
//! training, and published points stay in the input frame.

use crate::cloud::Cloud;
use nalgebra::{Matrix3, Vector3};

/// The rotation taking input coordinates to the model's (rows: the model's x, y, z axes
/// written in the input frame).
pub fn model_rotation(up: &Vector3<f32>, cloud: &Cloud, face_sensor: bool) -> Matrix3<f32> {
    let up = up.normalize();
    let horizontal = |v: Vector3<f32>| {
        let h = v - up * up.dot(&v);
        (h.norm() > 1e-6).then(|| h.normalize())
    };
    // Toward the sensor (the frame's origin) from the cloud's centroid, levelled.
    let toward_sensor = face_sensor
        .then(|| {
            let n = cloud.len().max(1) as f32;
            let c = cloud
                .points
                .iter()
                .fold(Vector3::zeros(), |s, p| s + Vector3::from(*p))
                / n;
            horizontal(-c)
        })
        .flatten();
    // Otherwise the input axis after `up` in x, y, z order, so +y up gives identity.
    let front = toward_sensor.unwrap_or_else(|| {
        let i = up.iamax();
        let next = Vector3::ith((i + 1) % 3, 1.0);
        horizontal(next).expect("an axis orthogonal to a coordinate axis is horizontal")
    });
    let x = up.cross(&front);
    Matrix3::from_rows(&[x.transpose(), up.transpose(), front.transpose()])
}

/// `cloud` with every point rotated by `r`.
pub fn rotate(cloud: &Cloud, r: &Matrix3<f32>) -> Cloud {
    Cloud::new(
        cloud
            .points
            .iter()
            .map(|p| (r * Vector3::from(*p)).into())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::params::UpAxis;

    fn close(a: Vector3<f32>, b: [f32; 3]) -> bool {
        (a - Vector3::from(b)).norm() < 1e-5
    }

    #[test]
    fn y_up_without_facing_is_identity() {
        let up = UpAxis::PosY.vector();
        let r = model_rotation(&up, &Cloud::new(vec![[1.0, 2.0, 3.0]]), false);
        assert!((r - Matrix3::identity()).norm() < 1e-6, "{r}");
    }

    #[test]
    fn z_up_cloud_in_front_of_the_sensor_faces_it() {
        // REP-103 sensor frame: the object 1 m ahead along +x, slightly above.
        let cloud = Cloud::new(vec![[1.0, -0.1, 0.2], [1.0, 0.1, 0.3]]);
        let r = model_rotation(&UpAxis::PosZ.vector(), &cloud, true);
        // Up (+z) becomes the model's +y; toward the sensor (-x) becomes +z.
        assert!(close(r * Vector3::z(), [0.0, 1.0, 0.0]));
        assert!(close(r * -Vector3::x(), [0.0, 0.0, 1.0]));
        assert!((r.determinant() - 1.0).abs() < 1e-5);
        assert!((r * r.transpose() - Matrix3::identity()).norm() < 1e-5);
    }

    #[test]
    fn camera_optical_frame() {
        // Optical frame: +z forward, -y up. An object ahead on the axis.
        let cloud = Cloud::new(vec![[0.0, 0.0, 0.8]]);
        let r = model_rotation(&UpAxis::NegY.vector(), &cloud, true);
        assert!(close(r * -Vector3::y(), [0.0, 1.0, 0.0]));
        assert!(close(r * -Vector3::z(), [0.0, 0.0, 1.0]));
        assert!((r.determinant() - 1.0).abs() < 1e-5);
    }
}
