//! Pose from correspondences: the transform taking a model's canonical keypoints (its
//! templates' positions, in the model's normalised frame) onto the points matched on an
//! object, fitted robustly (RANSAC over the matches, then least squares on the inliers).
//!
//! Two models of motion: when the up direction is known (a support plane, a levelled
//! frame) the object can only turn about it, so the fit is a rotation about `up` + scale +
//! translation (two matches determine it); otherwise a full similarity (three matches,
//! Umeyama's closed form). Both are written here: nalgebra has the types
//! (`UnitQuaternion`, `SVD`) but no estimator, and the constrained yaw fit has a closed
//! form of its own (the angle that maximises the correlation about the axis).
//!
//! The object frame follows REP-103: x forward (the model's front, its +z), z up (the
//! model's +y), y to the left. The pose is that frame's placement in the input frame.
//!
//! A category that lies on its side on a table (a knife) keeps its upright canonical
//! frame: the fit tries each way it rests ([`Rest`]) and the pose's rotation includes the
//! turn, so its x still points along the model's front (up, for a knife lying front up).

use nalgebra::{Matrix3, Rotation3, UnitQuaternion, Vector3};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// What may move.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Motion {
    /// Rotation about the known up direction of the input frame (the canonical +y maps
    /// to it), uniform scale, translation.
    AboutUp(Vector3<f32>),
    /// Any rotation, uniform scale, translation.
    Similarity,
}

/// RANSAC settings; deterministic for a seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoseParams {
    pub iterations: usize,
    /// A match is an inlier within this fraction of the fitted scale (the canonical frame
    /// has a bounding-box diagonal of 1, so 0.1 = a tenth of the object's size).
    pub inlier_fraction: f32,
    pub min_inliers: usize,
    pub seed: u64,
}

impl Default for PoseParams {
    fn default() -> Self {
        PoseParams {
            iterations: 100,
            inlier_fraction: 0.1,
            min_inliers: 3,
            seed: 0,
        }
    }
}

/// `observed ~ scale * rotation * canonical + translation`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pose {
    /// Canonical (model) frame -> input frame.
    pub rotation: Rotation3<f32>,
    pub scale: f32,
    pub translation: Vector3<f32>,
    /// Indices of the matches the pose explains.
    pub inliers: Vec<usize>,
    /// Root mean square residual over the inliers (input units).
    pub rms: f32,
}

impl Pose {
    pub fn apply(&self, p: &[f32; 3]) -> Vector3<f32> {
        self.rotation * Vector3::from(*p) * self.scale + self.translation
    }

    /// The object frame's orientation in the input frame (REP-103 axes, see the module
    /// doc): the model rotation composed with object -> model axes.
    pub fn object_orientation(&self) -> UnitQuaternion<f32> {
        // Columns: the object's x, y, z written in the model frame (+z, +x, +y).
        let object_to_model = Rotation3::from_matrix_unchecked(Matrix3::new(
            0.0, 1.0, 0.0, //
            0.0, 0.0, 1.0, //
            1.0, 0.0, 0.0,
        ));
        UnitQuaternion::from_rotation_matrix(&(self.rotation * object_to_model))
    }
}

/// How a category rests on a support plane, from its upright canonical pose (model frame:
/// +y up, +z front, +x along its length). Deployed models carry it (`semcorr export
/// --rest`): with [`Motion::AboutUp`] a pose can only turn about up, so a category that
/// lies down is fitted once per way it lies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rest {
    /// Standing on its base (a mug, a bottle, a laptop).
    #[default]
    Upright,
    /// On its side: turned a quarter about its length, front up or back up (a knife).
    OnSide,
}

impl Rest {
    /// The turns (model frame) from upright to each way the category lies; the first is
    /// its canonical way on a table (front up).
    pub fn turns(self) -> Vec<Rotation3<f32>> {
        let about_length = |a: f32| Rotation3::from_axis_angle(&Vector3::x_axis(), a);
        match self {
            Rest::Upright => vec![Rotation3::identity()],
            Rest::OnSide => vec![
                about_length(-std::f32::consts::FRAC_PI_2),
                about_length(std::f32::consts::FRAC_PI_2),
            ],
        }
    }

    pub fn is_upright(&self) -> bool {
        *self == Rest::Upright
    }
}

impl std::fmt::Display for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rest::Upright => "upright",
            Rest::OnSide => "on-side",
        })
    }
}

impl std::str::FromStr for Rest {
    type Err = crate::error::Error;

    fn from_str(s: &str) -> crate::error::Result<Rest> {
        match s {
            "upright" => Ok(Rest::Upright),
            "on-side" => Ok(Rest::OnSide),
            _ => Err(crate::error::Error::invalid(format!(
                "--rest: '{s}' is not a way to rest; use upright or on-side"
            ))),
        }
    }
}

/// [`fit_pose`] once per way the object may rest ([`Rest::turns`]): the fit with the
/// most inliers (then the lowest residual), its rotation including the rest's turn, so
/// [`Pose::apply`] still takes the upright canonical positions.
pub fn fit_resting_pose(
    pairs: &[([f32; 3], [f32; 3])],
    motion: Motion,
    params: &PoseParams,
    rest: Rest,
) -> Option<Pose> {
    rest.turns()
        .into_iter()
        .filter_map(|turn| {
            let turned: Vec<([f32; 3], [f32; 3])> = pairs
                .iter()
                .map(|(c, o)| ((turn * Vector3::from(*c)).into(), *o))
                .collect();
            let mut pose = fit_pose(&turned, motion, params)?;
            pose.rotation *= turn;
            Some(pose)
        })
        .max_by(|a, b| (a.inliers.len().cmp(&b.inliers.len())).then(b.rms.total_cmp(&a.rms)))
}

/// Fits the pose from `pairs` of (canonical, observed) points; `None` with fewer matches
/// than the motion needs or fewer than `min_inliers` consistent ones.
pub fn fit_pose(
    pairs: &[([f32; 3], [f32; 3])],
    motion: Motion,
    params: &PoseParams,
) -> Option<Pose> {
    let need = match motion {
        Motion::AboutUp(_) => 2,
        Motion::Similarity => 3,
    };
    if pairs.len() < need.max(params.min_inliers) {
        return None;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(params.seed);
    let all: Vec<usize> = (0..pairs.len()).collect();
    let mut best: Option<(usize, f32, Pose)> = None;
    for _ in 0..params.iterations {
        let mut pick: Vec<usize> = Vec::with_capacity(need);
        while pick.len() < need {
            let i = rng.random_range(0..pairs.len());
            if !pick.contains(&i) {
                pick.push(i);
            }
        }
        let Some(candidate) = solve(pairs, &pick, motion) else {
            continue;
        };
        let inliers = inliers_of(pairs, &all, &candidate, params);
        let rms = rms_of(pairs, &inliers, &candidate);
        let better = best
            .as_ref()
            .is_none_or(|(n, r, _)| inliers.len() > *n || (inliers.len() == *n && rms < *r));
        if better {
            best = Some((inliers.len(), rms, candidate));
        }
    }
    let (_, _, mut pose) = best?;
    for _ in 0..2 {
        let inliers = inliers_of(pairs, &all, &pose, params);
        if inliers.len() < need.max(params.min_inliers) {
            return None;
        }
        pose = solve(pairs, &inliers, motion)?;
    }
    pose.inliers = inliers_of(pairs, &all, &pose, params);
    if pose.inliers.len() < params.min_inliers {
        return None;
    }
    pose.rms = rms_of(pairs, &pose.inliers, &pose);
    Some(pose)
}

fn inliers_of(
    pairs: &[([f32; 3], [f32; 3])],
    candidates: &[usize],
    pose: &Pose,
    params: &PoseParams,
) -> Vec<usize> {
    let tol = params.inlier_fraction * pose.scale;
    candidates
        .iter()
        .copied()
        .filter(|&i| (pose.apply(&pairs[i].0) - Vector3::from(pairs[i].1)).norm() <= tol)
        .collect()
}

fn rms_of(pairs: &[([f32; 3], [f32; 3])], inliers: &[usize], pose: &Pose) -> f32 {
    if inliers.is_empty() {
        return f32::INFINITY;
    }
    let sum: f32 = inliers
        .iter()
        .map(|&i| (pose.apply(&pairs[i].0) - Vector3::from(pairs[i].1)).norm_squared())
        .sum();
    (sum / inliers.len() as f32).sqrt()
}

/// Least-squares transform over the chosen pairs; `None` when they are degenerate.
fn solve(pairs: &[([f32; 3], [f32; 3])], chosen: &[usize], motion: Motion) -> Option<Pose> {
    let n = chosen.len() as f64;
    let c: Vec<Vector3<f64>> = chosen.iter().map(|&i| v64(pairs[i].0)).collect();
    let o: Vec<Vector3<f64>> = chosen.iter().map(|&i| v64(pairs[i].1)).collect();
    let c_mean = c.iter().sum::<Vector3<f64>>() / n;
    let o_mean = o.iter().sum::<Vector3<f64>>() / n;
    let var_c: f64 = c.iter().map(|p| (p - c_mean).norm_squared()).sum();
    if var_c < 1e-12 {
        return None;
    }
    let rotation: Matrix3<f64> = match motion {
        Motion::AboutUp(up) => {
            let up = v64(up.into()).try_normalize(1e-12)?;
            // Canonical +y onto `up`, then the best turn about `up`.
            let align = Rotation3::rotation_between(&Vector3::y(), &up).unwrap_or_else(|| {
                Rotation3::from_axis_angle(&Vector3::x_axis(), std::f64::consts::PI)
            });
            let (mut a, mut b) = (0.0, 0.0);
            for (p, q) in c.iter().zip(&o) {
                let p = align * (p - c_mean);
                let q = q - o_mean;
                let (pp, qp) = (p - up * up.dot(&p), q - up * up.dot(&q));
                a += pp.dot(&qp);
                b += up.dot(&p.cross(&q));
            }
            if a.abs() + b.abs() < 1e-12 {
                return None;
            }
            let turn = Rotation3::from_axis_angle(&nalgebra::Unit::new_unchecked(up), b.atan2(a));
            (turn * align).into_inner()
        }
        Motion::Similarity => {
            // Umeyama: the rotation from the SVD of the cross-covariance, with a
            // reflection fix.
            let h: Matrix3<f64> = c
                .iter()
                .zip(&o)
                .map(|(p, q)| (q - o_mean) * (p - c_mean).transpose())
                .sum();
            let svd = h.svd(true, true);
            let (u, v_t) = (svd.u?, svd.v_t?);
            let mut d = Matrix3::identity();
            if (u * v_t).determinant() < 0.0 {
                d[(2, 2)] = -1.0;
            }
            u * d * v_t
        }
    };
    let corr: f64 = c
        .iter()
        .zip(&o)
        .map(|(p, q)| (q - o_mean).dot(&(rotation * (p - c_mean))))
        .sum();
    let scale = corr / var_c;
    if !(scale.is_finite() && scale > 1e-9) {
        return None;
    }
    let translation = o_mean - rotation * c_mean * scale;
    Some(Pose {
        rotation: Rotation3::from_matrix_unchecked(rotation.cast::<f32>()),
        scale: scale as f32,
        translation: translation.cast::<f32>(),
        inliers: Vec::new(),
        rms: 0.0,
    })
}

fn v64(p: [f32; 3]) -> Vector3<f64> {
    Vector3::new(f64::from(p[0]), f64::from(p[1]), f64::from(p[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical() -> Vec<[f32; 3]> {
        vec![
            [0.0, 0.4, 0.1],
            [0.2, -0.3, 0.0],
            [-0.25, 0.0, 0.2],
            [0.1, 0.1, -0.3],
            [-0.1, -0.4, -0.1],
            [0.3, 0.2, 0.25],
            [0.0, -0.1, 0.35],
            [-0.3, 0.3, -0.2],
        ]
    }

    fn placed(rot: Rotation3<f32>, s: f32, t: Vector3<f32>) -> Vec<([f32; 3], [f32; 3])> {
        canonical()
            .into_iter()
            .map(|c| (c, (rot * Vector3::from(c) * s + t).into()))
            .collect()
    }

    fn angle(a: &Rotation3<f32>, b: &Rotation3<f32>) -> f32 {
        (a.inverse() * b).angle().to_degrees()
    }

    #[test]
    fn similarity_recovers_rotation_scale_translation_despite_outliers() {
        let rot = Rotation3::from_euler_angles(0.4, -1.1, 2.0);
        let t = Vector3::new(0.8, -0.2, 1.5);
        let mut pairs = placed(rot, 0.15, t);
        pairs[2].1 = [5.0, 5.0, 5.0]; // a wrong match
        let pose = fit_pose(&pairs, Motion::Similarity, &PoseParams::default()).unwrap();
        assert!(angle(&pose.rotation, &rot) < 0.1);
        assert!((pose.scale - 0.15).abs() < 1e-4);
        assert!((pose.translation - t).norm() < 1e-4);
        assert_eq!(pose.inliers.len(), 7);
        assert!(!pose.inliers.contains(&2));
        assert!(pose.rms < 1e-4);
    }

    #[test]
    fn yaw_about_a_known_up_with_noise() {
        // Input frame z up (REP-103); the object turned 70 degrees about it.
        let up = Vector3::z();
        let align = Rotation3::rotation_between(&Vector3::y(), &up).unwrap();
        let rot = Rotation3::from_axis_angle(&Vector3::z_axis(), 70f32.to_radians()) * align;
        let t = Vector3::new(1.0, 0.3, -0.4);
        let mut pairs = placed(rot, 0.2, t);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for p in &mut pairs {
            for c in &mut p.1 {
                *c += rng.random_range(-0.002..0.002f32);
            }
        }
        pairs[5].1 = [0.0, 0.0, 0.0];
        let pose = fit_pose(&pairs, Motion::AboutUp(up), &PoseParams::default()).unwrap();
        assert!(
            angle(&pose.rotation, &rot) < 1.5,
            "{}",
            angle(&pose.rotation, &rot)
        );
        assert!((pose.scale - 0.2).abs() < 0.01);
        assert!((pose.translation - t).norm() < 0.005);
        assert!(!pose.inliers.contains(&5));
        // The object frame: x = the model's front (+z), z = its up (+y) = the input's up.
        let q = pose.object_orientation();
        assert!((q * Vector3::z() - up).norm() < 0.02);
        let front = rot * Vector3::z();
        assert!((q * Vector3::x() - front).norm() < 0.03);
    }

    #[test]
    fn an_object_lying_back_up_is_fitted_with_that_turn() {
        // A flat object's keypoints (length along x, height along y), lying back up on a
        // table (z up), turned 40 degrees about up: as a front-up fit it is a mirror image.
        let flat: Vec<[f32; 3]> = vec![
            [0.5, 0.0, 0.0],
            [-0.45, 0.05, 0.0],
            [0.02, -0.1, 0.0],
            [0.02, 0.15, 0.0],
            [-0.2, 0.1, 0.0],
            [0.3, 0.12, 0.0],
        ];
        let up = Vector3::z();
        let align = Rotation3::rotation_between(&Vector3::y(), &up).unwrap();
        let back_up = Rest::OnSide.turns()[1];
        let rot =
            Rotation3::from_axis_angle(&Vector3::z_axis(), 40f32.to_radians()) * align * back_up;
        let t = Vector3::new(0.9, -0.1, 0.02);
        let pairs: Vec<_> = flat
            .iter()
            .map(|c| (*c, (rot * Vector3::from(*c) * 0.25 + t).into()))
            .collect();
        let p = PoseParams::default();
        let motion = Motion::AboutUp(up);
        let pose = fit_resting_pose(&pairs, motion, &p, Rest::OnSide).unwrap();
        assert!(
            angle(&pose.rotation, &rot) < 0.5,
            "{}",
            angle(&pose.rotation, &rot)
        );
        assert_eq!(pose.inliers.len(), flat.len());
        assert!((pose.apply(&flat[0]) - Vector3::from(pairs[0].1)).norm() < 1e-4);
        // Upright, the same keypoints stand on their edge: no turn about up explains them.
        let upright = fit_resting_pose(&pairs, motion, &p, Rest::Upright);
        assert!(upright.is_none_or(|u| u.inliers.len() < flat.len()));
        assert_eq!("on-side".parse::<Rest>().unwrap(), Rest::OnSide);
        let err = "sideways".parse::<Rest>().unwrap_err().to_string();
        assert!(err.contains("--rest") && err.contains("sideways"), "{err}");
    }

    #[test]
    fn too_few_or_degenerate_matches_give_none() {
        let pairs = placed(Rotation3::identity(), 1.0, Vector3::zeros());
        let p = PoseParams::default();
        assert!(fit_pose(&pairs[..2], Motion::Similarity, &p).is_none());
        let same = vec![([0.1, 0.2, 0.3], [1.0, 1.0, 1.0]); 5];
        assert!(fit_pose(&same, Motion::AboutUp(Vector3::z()), &p).is_none());
        assert!(fit_pose(&[], Motion::Similarity, &p).is_none());
    }
}
