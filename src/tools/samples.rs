//! Sample sensor clouds for the demo, the ROS tests and the latency benchmark: procedural
//! objects (never seen in training: another seed) standing upright on a surface in front
//! of a sensor, seen from the sensor (hidden points removed), in the sensor's REP-103
//! frame (+x forward, +z up), with Gaussian range noise. Each comes with its annotated
//! keypoints in the same frame, so consumers can check what the node finds.

use crate::cloud::pcd::{write_pcd, PcdEncoding};
use crate::cloud::visibility::{visible_points, VisibilityParams};
use crate::cloud::Cloud;
use crate::dataset::synth::{generate_models, SynthOptions};
use crate::error::{write_file_atomic, Error, Result};
use nalgebra::{Matrix3, Rotation3, Vector3};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use std::path::{Path, PathBuf};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleOptions {
    pub category: String,
    pub count: usize,
    pub seed: u64,
    /// Points per object model before hiding (about half stay visible).
    pub model_points: usize,
    /// Grow each cloud to this many points by re-sampling its points with noise (a dense
    /// depth sensor); 0 = as seen.
    pub points: usize,
    /// Bounding-box diagonal of the objects, metres.
    pub size_m: f32,
    /// Standard deviation of the noise, metres.
    pub noise_m: f32,
    /// The largest turn of an object away from facing the sensor, degrees.
    pub max_yaw_deg: f32,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            category: "mug".into(),
            count: 8,
            seed: 1000,
            model_points: 4096,
            points: 0,
            size_m: 0.15,
            noise_m: 0.001,
            max_yaw_deg: 15.0,
        }
    }
}

/// One sensor cloud and the truth about it.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleCloud {
    /// In the sensor frame, metres.
    pub cloud: Cloud,
    /// Annotated keypoints that remained visible: (semantic id, position in the sensor frame).
    pub keypoints: Vec<(u32, [f32; 3])>,
}

/// Generates `opts.count` sample clouds; deterministic in the options.
pub fn sample_clouds(opts: &SampleOptions) -> Result<Vec<SampleCloud>> {
    let models = generate_models(
        &opts.category,
        &SynthOptions {
            categories: vec![opts.category.clone()],
            models_per_category: opts.count,
            seed: opts.seed,
            partial: false,
            view_frame: false,
            num_points: opts.model_points,
        },
    )?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    let noise = Normal::new(0.0f32, opts.noise_m.max(0.0)).expect("finite noise");
    let mut out = Vec::with_capacity(models.len());
    for model in models {
        // The object's centre: ahead of the sensor, below it (on a table), a little aside.
        let centre = Vector3::new(
            rng.random_range(0.5..0.8),
            rng.random_range(-0.15..0.15),
            rng.random_range(-0.4..-0.2),
        );
        let toward_sensor = Vector3::new(-centre.x, -centre.y, 0.0).normalize();
        let yaw = rng
            .random_range(-opts.max_yaw_deg..=opts.max_yaw_deg)
            .to_radians();
        let front = Rotation3::from_axis_angle(&Vector3::z_axis(), yaw) * toward_sensor;
        let up = Vector3::z();
        // Columns: where the model's x, y (up) and z (front) axes point in the sensor frame.
        let to_sensor = Matrix3::from_columns(&[up.cross(&front), up, front]);
        let place = |p: &[f32; 3]| centre + to_sensor * Vector3::from(*p) * opts.size_m;
        let eye_in_model = to_sensor.transpose() * (-centre) / opts.size_m;
        let visible = visible_points(
            &model.cloud.points,
            eye_in_model.into(),
            &VisibilityParams::default(),
        );
        let mut is_visible = vec![false; model.cloud.len()];
        for &i in &visible {
            is_visible[i] = true;
        }
        let seen: Vec<Vector3<f32>> = visible
            .iter()
            .map(|&i| place(&model.cloud.points[i]))
            .collect();
        if seen.is_empty() {
            return Err(Error::invalid(format!(
                "sample {}: nothing of the {} is visible from the sensor",
                out.len(),
                opts.category
            )));
        }
        let target = if opts.points > 0 {
            opts.points
        } else {
            seen.len()
        };
        let points = (0..target)
            .map(|k| {
                let p = seen[k % seen.len()];
                let jitter = Vector3::from_fn(|_, _| noise.sample(&mut rng));
                (p + jitter).into()
            })
            .collect();
        let keypoints = model
            .annotation
            .keypoints
            .iter()
            .filter(|k| is_visible[k.point_index])
            .map(|k| (k.semantic_id, place(&k.xyz).into()))
            .collect();
        out.push(SampleCloud {
            cloud: Cloud::new(points),
            keypoints,
        });
    }
    Ok(out)
}

/// Writes `sample_000.pcd`, ... (binary PCD) and `keypoints.json`
/// (`[{"file", "keypoints": [{"semantic_id", "xyz"}]}]`) into `dir`.
pub fn write_samples(dir: &Path, opts: &SampleOptions) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    let mut index = Vec::new();
    for (i, s) in sample_clouds(opts)?.iter().enumerate() {
        let name = format!("sample_{i:03}.pcd");
        let path = dir.join(&name);
        write_pcd(&path, &s.cloud, PcdEncoding::Binary)?;
        let keypoints: Vec<_> = s
            .keypoints
            .iter()
            .map(|(id, xyz)| serde_json::json!({"semantic_id": id, "xyz": xyz}))
            .collect();
        index.push(serde_json::json!({"file": name, "keypoints": keypoints}));
        files.push(path);
    }
    let json = serde_json::to_vec_pretty(&index).expect("JSON of plain values");
    write_file_atomic(dir.join("keypoints.json"), &json)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clouds_are_partial_views_in_front_of_the_sensor() {
        let opts = SampleOptions {
            count: 2,
            model_points: 1024,
            ..Default::default()
        };
        let samples = sample_clouds(&opts).unwrap();
        assert_eq!(samples.len(), 2);
        for s in &samples {
            // Hidden points were removed: well under the model's points remain.
            assert!(
                s.cloud.len() > 200 && s.cloud.len() < 900,
                "{}",
                s.cloud.len()
            );
            let (lo, hi) = s.cloud.bounds();
            assert!(
                lo[0] > 0.3 && hi[0] < 1.0,
                "ahead of the sensor: {lo:?} {hi:?}"
            );
            assert!(hi[2] < 0.0, "below the sensor");
            let diag = crate::cloud::dist2(&lo, &hi).sqrt();
            assert!(diag > 0.05 && diag < 0.2, "metric size: {diag}");
            assert!(!s.keypoints.is_empty());
        }
        assert_eq!(sample_clouds(&opts).unwrap(), samples, "deterministic");
        let dense = sample_clouds(&SampleOptions {
            count: 1,
            model_points: 1024,
            points: 5000,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(dense[0].cloud.len(), 5000);
    }
}
