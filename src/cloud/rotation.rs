//! Random rotations of whole clouds, one mode shared by evaluation (`eval --rotate`) and
//! training augmentation (`augment.rotation`), so a model is measured against the same
//! distribution of poses it was trained for. Datasets are y-up (ShapeNet's convention).

use super::Cloud;
use crate::error::{Error, Result};
use nalgebra::{Matrix3, Quaternion, Rotation3, Unit, UnitQuaternion, Vector3};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Which rotations are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RotationMode {
    /// The canonical pose.
    #[default]
    None,
    /// A uniform angle about the up (y) axis.
    Yaw,
    /// An angle about the up axis uniform in `[-max_deg, max_deg]`: training a model whose
    /// yaw hypotheses (`YawSearch`) are `2 max_deg` apart.
    YawWithin { max_deg: f32 },
    /// A uniform yaw, then a tilt about a random horizontal axis by an angle uniform in
    /// `[0, max_deg]`: an object on a table seen by a camera that is not level with it.
    Tilt { max_deg: f32 },
    /// Uniform over all rotations (a random unit quaternion).
    So3,
}

/// A turn by `angle` radians about the up (y) axis.
pub fn about_up(angle: f32) -> Rotation3<f32> {
    Rotation3::from_axis_angle(&Vector3::y_axis(), angle)
}

impl RotationMode {
    /// One rotation drawn from this mode; `None` draws nothing from `rng`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Matrix3<f32> {
        let (rest, yaw) = self.draw(rng);
        rest * yaw
    }

    /// The same draw as [`RotationMode::sample`] less its turn about up (all of `yaw` and
    /// `yaw:DEG`, the yaw before `tilt:DEG`'s tilt; `so3` is kept whole), for views whose
    /// object already stands at a uniformly random yaw before the camera (`synth
    /// --view-frame`): turning such a view about up again would show the camera's side
    /// of the points from behind, which no sensor sees. The stream advances as `sample`'s.
    pub fn sample_without_yaw<R: Rng + ?Sized>(&self, rng: &mut R) -> Matrix3<f32> {
        self.draw(rng).0
    }

    /// `(rest, yaw)`: the rotation is `rest * yaw`, `yaw` a turn about up.
    fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> (Matrix3<f32>, Matrix3<f32>) {
        let id = Matrix3::identity();
        let yaw = |rng: &mut R| about_up(rng.random_range(0.0..std::f32::consts::TAU));
        match *self {
            RotationMode::None => (id, id),
            RotationMode::Yaw => (id, yaw(rng).into_inner()),
            RotationMode::YawWithin { max_deg } => (
                id,
                about_up(rng.random_range(-1.0f32..=1.0) * max_deg.to_radians()).into_inner(),
            ),
            RotationMode::Tilt { max_deg } => {
                let turned = yaw(rng);
                let azimuth = rng.random_range(0.0..std::f32::consts::TAU);
                let axis = Unit::new_normalize(Vector3::new(azimuth.cos(), 0.0, azimuth.sin()));
                let angle = rng.random::<f32>() * max_deg.to_radians();
                (
                    Rotation3::from_axis_angle(&axis, angle).into_inner(),
                    turned.into_inner(),
                )
            }
            RotationMode::So3 => {
                let mut q = [0f32; 4];
                for v in q.iter_mut() {
                    *v = StandardNormal.sample(rng);
                }
                // A Gaussian 4-vector is isotropic, so its direction is a uniform quaternion;
                // the degenerate all-zero draw has probability zero but is guarded anyway.
                let q = Quaternion::new(q[0], q[1], q[2], q[3]);
                if q.norm() < 1e-12 {
                    return (id, id);
                }
                (
                    UnitQuaternion::from_quaternion(q)
                        .to_rotation_matrix()
                        .into_inner(),
                    id,
                )
            }
        }
    }
}

/// Rotates every point of `cloud` (finite or not: NaN stays NaN) about the origin.
pub fn rotate_cloud(cloud: &mut Cloud, r: &Matrix3<f32>) {
    for p in cloud.points.iter_mut() {
        *p = rotate_point(r, *p);
    }
}

pub fn rotate_point(r: &Matrix3<f32>, p: [f32; 3]) -> [f32; 3] {
    let v = r * Vector3::from(p);
    [v.x, v.y, v.z]
}

impl FromStr for RotationMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        match s {
            "none" => return Ok(RotationMode::None),
            "yaw" => return Ok(RotationMode::Yaw),
            "so3" => return Ok(RotationMode::So3),
            _ => {}
        }
        let degrees = |what: &str, text: &str, max: f32| -> Result<f32> {
            let deg: f32 = text.trim().parse().map_err(|_| {
                Error::invalid(format!(
                    "rotation mode {s:?}: the {what} {text:?} is not a number of degrees"
                ))
            })?;
            if !(0.0..=max).contains(&deg) {
                return Err(Error::invalid(format!(
                    "rotation mode {s:?}: the {what} {deg} is outside [0, {max}] degrees"
                )));
            }
            Ok(deg)
        };
        if let Some(deg) = s.strip_prefix("tilt:") {
            let max_deg = degrees("tilt", deg, 90.0)?;
            return Ok(RotationMode::Tilt { max_deg });
        }
        if let Some(deg) = s.strip_prefix("yaw:") {
            let max_deg = degrees("yaw", deg, 180.0)?;
            return Ok(RotationMode::YawWithin { max_deg });
        }
        Err(Error::invalid(format!(
            "unknown rotation mode {s:?} (expected none, yaw, yaw:DEG, tilt:DEG or so3)"
        )))
    }
}

impl fmt::Display for RotationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RotationMode::None => f.write_str("none"),
            RotationMode::Yaw => f.write_str("yaw"),
            RotationMode::YawWithin { max_deg } => write!(f, "yaw:{max_deg}"),
            RotationMode::Tilt { max_deg } => write!(f, "tilt:{max_deg}"),
            RotationMode::So3 => f.write_str("so3"),
        }
    }
}

impl TryFrom<String> for RotationMode {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<RotationMode> for String {
    fn from(m: RotationMode) -> String {
        m.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn angle_from_up(r: &Matrix3<f32>) -> f32 {
        (r * Vector3::y()).y.clamp(-1.0, 1.0).acos().to_degrees()
    }

    #[test]
    fn modes_parse_print_and_refuse_nonsense() {
        for text in ["none", "yaw", "yaw:22.5", "tilt:20", "so3"] {
            let m: RotationMode = text.parse().unwrap();
            assert_eq!(m.to_string(), text);
        }
        assert_eq!(
            "tilt:12.5".parse::<RotationMode>().unwrap(),
            RotationMode::Tilt { max_deg: 12.5 }
        );
        let e = "spin".parse::<RotationMode>().unwrap_err().to_string();
        assert!(e.contains("spin") && e.contains("tilt:DEG"), "{e}");
        for bad in ["tilt:91", "tilt:-1", "tilt:NaN"] {
            let e = bad.parse::<RotationMode>().unwrap_err().to_string();
            assert!(e.contains("[0, 90]"), "{bad}: {e}");
        }
        let e = "yaw:200".parse::<RotationMode>().unwrap_err().to_string();
        assert!(e.contains("[0, 180]"), "{e}");
        let e = "tilt:steep"
            .parse::<RotationMode>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a number"), "{e}");
    }

    #[test]
    fn samples_are_rotations_of_the_promised_kind() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut max_tilt = 0f32;
        let mut so3_max_tilt = 0f32;
        for _ in 0..200 {
            for mode in [
                RotationMode::Yaw,
                RotationMode::YawWithin { max_deg: 10.0 },
                RotationMode::Tilt { max_deg: 20.0 },
                RotationMode::So3,
            ] {
                let r = mode.sample(&mut rng);
                assert!((r.transpose() * r - Matrix3::identity()).norm() < 1e-5);
                assert!((r.determinant() - 1.0).abs() < 1e-5);
                let tilt = angle_from_up(&r);
                match mode {
                    RotationMode::Yaw => assert!(tilt < 0.05, "yaw keeps up: {tilt}"),
                    RotationMode::YawWithin { .. } => {
                        assert!(tilt < 0.05, "yaw keeps up: {tilt}");
                        let turn = (r * Vector3::z())
                            .dot(&Vector3::z())
                            .clamp(-1.0, 1.0)
                            .acos();
                        assert!(turn.to_degrees() <= 10.01, "{}", turn.to_degrees());
                    }
                    RotationMode::Tilt { .. } => max_tilt = max_tilt.max(tilt),
                    _ => so3_max_tilt = so3_max_tilt.max(tilt),
                }
            }
        }
        assert!(
            (15.0..=20.01).contains(&max_tilt),
            "tilts reach but never pass 20: {max_tilt}"
        );
        assert!(
            so3_max_tilt > 150.0,
            "so3 turns objects over: {so3_max_tilt}"
        );
        assert_eq!(RotationMode::None.sample(&mut rng), Matrix3::identity());
    }

    #[test]
    fn without_yaw_a_tilt_is_the_same_draw_less_its_turn() {
        let mode = RotationMode::Tilt { max_deg: 20.0 };
        let (mut a, mut b) = (ChaCha8Rng::seed_from_u64(9), ChaCha8Rng::seed_from_u64(9));
        for _ in 0..50 {
            let whole = mode.sample(&mut a);
            let tilt = mode.sample_without_yaw(&mut b);
            // Same lean from up; what is left is a pure turn about up.
            assert!((angle_from_up(&whole) - angle_from_up(&tilt)).abs() < 0.05);
            let turn = tilt.transpose() * whole;
            assert!((turn * Vector3::y() - Vector3::y()).norm() < 1e-5);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        assert_eq!(
            RotationMode::Yaw.sample_without_yaw(&mut rng),
            Matrix3::identity()
        );
    }

    #[test]
    fn clouds_turn_about_the_origin_and_nan_stays_nan() {
        let r = about_up(std::f32::consts::FRAC_PI_2).into_inner();
        let mut cloud = Cloud::new(vec![[1.0, 2.0, 0.0], [f32::NAN, 0.0, 0.0]]);
        rotate_cloud(&mut cloud, &r);
        let p = cloud.points[0];
        assert!((p[0]).abs() < 1e-6 && (p[1] - 2.0).abs() < 1e-6 && (p[2] + 1.0).abs() < 1e-6);
        assert!(cloud.points[1][0].is_nan());
    }
}
