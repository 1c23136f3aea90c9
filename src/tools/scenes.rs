//! Sample scenes as a depth camera sees them: an organised 640 x 480 cloud in the camera's
//! optical frame (z forward, y down, metres), NaN where a pixel's ray hits nothing, range
//! noise growing with the square of the depth (structured-light sensors), from a camera
//! 0.5-1.2 m from a table and tilted down 20-60 degrees. On the table: 1-4 procedural
//! objects of the [`TABLETOP`] categories, at least two kinds per scene (never seen in
//! training: another seed), at random places and yaws, some cut by the image border; a
//! wall behind the table. Each scene comes with its truth: every object's category, pose
//! and visible annotated keypoints.
//!
//! Rendering is a z-buffer: the table and the wall are intersected per pixel ray, the
//! objects are dense point samples splatted as small disks (radius from the sample
//! spacing and depth), the nearest surface wins.

use crate::cloud::pcd::{write_pcd, PcdEncoding};
use crate::cloud::{Cloud, Organised};
use crate::dataset::synth::{generate_models, SynthOptions};
use crate::error::{write_file_atomic, Error, Result};
use nalgebra::{Matrix3, Rotation3, UnitQuaternion, Vector3};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneOptions {
    pub count: usize,
    pub seed: u64,
    /// Categories the objects are drawn from (each scene has at least two when it has
    /// two or more objects and two are given), with each one's size (bounding-box
    /// diagonal, metres).
    pub categories: Vec<(String, f32)>,
    pub max_objects: usize,
    /// The largest turn of an object away from facing the camera, degrees (180 = any).
    /// Objects that show no yaw of their own stand at the node's convention for them
    /// whatever this says ([`crate::dataset::synth::conventional_yaw`]: round categories
    /// face the camera, handle-less mugs turn their handle side away from it): a turn
    /// would only move their "front" keypoints where no cloud can show them (a bowl's rim
    /// front 3 cm away at 25 degrees).
    pub max_yaw_deg: f32,
    /// Range noise: standard deviation at 1 m depth, metres (scales with depth squared).
    pub noise_at_1m: f32,
    /// Dense samples per object before splatting.
    pub object_points: usize,
}

impl Default for SceneOptions {
    fn default() -> Self {
        SceneOptions {
            count: 4,
            seed: 5000,
            categories: tabletop_categories(&[]).expect("the tabletop categories"),
            max_objects: 4,
            max_yaw_deg: 30.0,
            noise_at_1m: 0.0015,
            object_points: 6000,
        }
    }
}

/// The tabletop categories and their sizes in the scenes (bounding-box diagonal, metres):
/// a mug, a 0.5 l bottle, a cereal bowl, a drink can, a jug, a 13-inch laptop, a kitchen
/// knife (lying on its side, [`crate::dataset::synth::rest`]).
pub const TABLETOP: &[(&str, f32)] = &[
    ("mug", 0.15),
    ("bottle", 0.25),
    ("bowl", 0.2),
    ("can", 0.14),
    ("pitcher", 0.25),
    ("laptop", 0.42),
    ("knife", 0.3),
];

/// The named [`TABLETOP`] categories with their sizes, all of them when `names` is empty.
pub fn tabletop_categories(names: &[String]) -> Result<Vec<(String, f32)>> {
    let known = || {
        TABLETOP
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if names.is_empty() {
        return Ok(TABLETOP.iter().map(|&(n, s)| (n.to_string(), s)).collect());
    }
    names
        .iter()
        .map(|name| {
            TABLETOP
                .iter()
                .find(|(n, _)| n == name)
                .map(|&(n, s)| (n.to_string(), s))
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "--categories: '{name}' is not a scene category; known: {}",
                        known()
                    ))
                })
        })
        .collect()
}

/// The camera's intrinsics (a Kinect-class 640 x 480 sensor).
pub const WIDTH: usize = 640;
pub const HEIGHT: usize = 480;
const FOCAL: f32 = 525.0;
/// Depth (along the optical axis) beyond which the sensor measures nothing, metres.
const MAX_RANGE: f32 = 3.5;

/// The optical-frame direction through pixel (u, v), scaled to unit depth (z = 1).
fn pixel_ray(u: usize, v: usize) -> Vector3<f32> {
    Vector3::new(
        (u as f32 - (WIDTH as f32 - 1.0) / 2.0) / FOCAL,
        (v as f32 - (HEIGHT as f32 - 1.0) / 2.0) / FOCAL,
        1.0,
    )
}

/// The (sub-pixel) image position of an optical-frame point in front of the camera.
fn project(c: &Vector3<f32>) -> (f32, f32) {
    (
        FOCAL * c.x / c.z + (WIDTH as f32 - 1.0) / 2.0,
        FOCAL * c.y / c.z + (HEIGHT as f32 - 1.0) / 2.0,
    )
}

/// One object's truth, in the camera's optical frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectTruth {
    pub category: String,
    /// The object frame's origin (the model's bounding-box centre) and orientation
    /// (REP-103 object axes: x the model's front, z its up), `[x, y, z, w]`.
    pub position: [f32; 3],
    pub orientation: [f32; 4],
    /// Bounding-box diagonal, metres.
    pub size: f32,
    /// Pixels where the object is the nearest surface.
    pub visible_points: usize,
    /// Annotated keypoints the camera sees: (semantic id, position).
    pub keypoints: Vec<(u32, [f32; 3])>,
}

/// A rendered scene and its truth.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneSample {
    /// Organised `WIDTH x HEIGHT`, optical frame, NaN holes.
    pub cloud: Cloud,
    pub objects: Vec<ObjectTruth>,
    /// Camera tilt below the horizon, degrees, and distance to the table centre, metres.
    pub tilt_deg: f32,
    pub distance_m: f32,
}

/// Generates `opts.count` scenes; deterministic in the options.
pub fn sample_scenes(opts: &SceneOptions) -> Result<Vec<SceneSample>> {
    if opts.categories.is_empty() || opts.max_objects == 0 {
        return Err(Error::invalid(
            "scene samples: need at least one category and one object",
        ));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
    // One pool of unseen models per category, enough for every scene.
    let pools: Vec<_> = opts
        .categories
        .iter()
        .map(|(name, _)| {
            generate_models(
                name,
                &SynthOptions {
                    categories: vec![name.clone()],
                    models_per_category: opts.count * opts.max_objects,
                    seed: opts.seed,
                    partial: false,
                    view_frame: false,
                    num_points: opts.object_points,
                },
            )
        })
        .collect::<Result<_>>()?;
    let noise = Normal::new(0.0f32, 1.0).expect("unit normal");
    let mut scenes = Vec::with_capacity(opts.count);
    for scene_index in 0..opts.count {
        let tilt = rng.random_range(20.0f32..60.0);
        let distance = rng.random_range(0.5f32..1.2);
        let (st, ct) = tilt.to_radians().sin_cos();
        // World: REP-103 (x forward, z up), table top at z = 0, camera above the origin.
        let table_centre = Vector3::new(distance * ct, 0.0, 0.0);
        let camera = Vector3::new(0.0, 0.0, distance * st);
        let forward = Vector3::new(ct, 0.0, -st);
        let right = Vector3::new(0.0, -1.0, 0.0);
        let down = forward.cross(&right);
        // Columns: the optical axes in the world.
        let world_from_optical = Matrix3::from_columns(&[right, down, forward]);
        let to_optical = |p: Vector3<f32>| world_from_optical.transpose() * (p - camera);
        let (half_x, half_y) = (0.4f32, 0.6f32);
        let wall_x = table_centre.x + half_x + 0.3;

        // z-buffer: depth along the optical axis and which surface (-1 background).
        let mut depth = vec![f32::INFINITY; WIDTH * HEIGHT];
        let mut owner = vec![-1i32; WIDTH * HEIGHT];
        let ray = |u: usize, v: usize| world_from_optical * pixel_ray(u, v);
        for v in 0..HEIGHT {
            for u in 0..WIDTH {
                let d = ray(u, v);
                let mut best = f32::INFINITY;
                // Table top: z = 0 within its rectangle.
                if d.z < 0.0 {
                    let t = -camera.z / d.z;
                    let p = camera + d * t;
                    if (p.x - table_centre.x).abs() <= half_x && p.y.abs() <= half_y {
                        best = best.min(t);
                    }
                }
                // The wall: x = wall_x, 1.6 m wide, from the floor (0.75 m below the top)
                // to 0.8 m above the table.
                if d.x > 0.0 {
                    let t = (wall_x - camera.x) / d.x;
                    let p = camera + d * t;
                    if p.z >= -0.75 && p.z <= 0.8 && p.y.abs() <= 0.8 {
                        best = best.min(t);
                    }
                }
                // Beyond the sensor's range nothing is measured.
                depth[v * WIDTH + u] = if best <= MAX_RANGE {
                    best
                } else {
                    f32::INFINITY
                };
            }
        }

        let n_objects = rng.random_range(1..=opts.max_objects);
        let mut placed: Vec<(Vector3<f32>, f32)> = Vec::new();
        let mut objects = Vec::new();
        let mut renders = Vec::new();
        for k in 0..n_objects {
            // Alternate categories so two objects are never all of one kind.
            let cat = (k + scene_index) % opts.categories.len();
            let (name, size) = (&opts.categories[cat].0, opts.categories[cat].1);
            let model = &pools[cat][scene_index * opts.max_objects + k];
            let radius = 0.5 * size;
            let Some(spot) = (0..50).find_map(|_| {
                let p = Vector3::new(
                    table_centre.x + rng.random_range(-0.3..0.3f32),
                    rng.random_range(-0.4..0.4f32),
                    0.0,
                );
                placed
                    .iter()
                    .all(|(q, r)| (p - q).norm() > radius + r + 0.02)
                    .then_some(p)
            }) else {
                continue;
            };
            placed.push((spot, radius));
            let toward_camera = Vector3::new(camera.x - spot.x, camera.y - spot.y, 0.0).normalize();
            // Turned at random from facing the camera, unless it shows no yaw of its own
            // (drawn either way, so the scenes after it do not change with the rule).
            let drawn = rng
                .random_range(-opts.max_yaw_deg..=opts.max_yaw_deg)
                .to_radians();
            let yaw = crate::dataset::synth::conventional_yaw(name, &model.traits).unwrap_or(drawn);
            let front = Rotation3::from_axis_angle(&Vector3::z_axis(), yaw) * toward_camera;
            let up = Vector3::z();
            // Columns: where the model's x, y (up) and z (front) axes point in the world.
            let upright = Matrix3::from_columns(&[up.cross(&front), up, front]);
            // A category that lies down rests in one of its ways at random (drawn only
            // for those, so scenes of upright categories do not change with the rule).
            let turns = crate::dataset::synth::rest(name).turns();
            let turn = match turns.len() {
                1 => turns[0],
                n => turns[rng.random_range(0..n)],
            };
            let world_from_model = upright * turn.matrix();
            let lowest = model
                .cloud
                .points
                .iter()
                .map(|p| (world_from_model * Vector3::from(*p)).z)
                .fold(f32::INFINITY, f32::min);
            let origin = spot + up * (-lowest * size);
            let place = |p: &[f32; 3]| origin + world_from_model * Vector3::from(*p) * size;
            // Splat radius: the sample spacing (surface area about 1.5 x diagonal^2).
            let spacing = size * (1.5 / model.cloud.len() as f32).sqrt();
            let id = objects.len() as i32;
            for p in &model.cloud.points {
                let c = to_optical(place(p));
                if c.z <= 0.05 {
                    continue;
                }
                let (u, v) = project(&c);
                let r = (FOCAL * spacing / c.z).max(0.7);
                let (u0, u1) = ((u - r).ceil().max(0.0) as i64, (u + r).floor() as i64);
                let (v0, v1) = ((v - r).ceil().max(0.0) as i64, (v + r).floor() as i64);
                for pv in v0..=v1.min(HEIGHT as i64 - 1) {
                    for pu in u0..=u1.min(WIDTH as i64 - 1) {
                        let (du, dv) = (pu as f32 - u, pv as f32 - v);
                        if du * du + dv * dv > r * r {
                            continue;
                        }
                        let i = pv as usize * WIDTH + pu as usize;
                        if c.z < depth[i] {
                            depth[i] = c.z;
                            owner[i] = id;
                        }
                    }
                }
            }
            let model_to_optical = world_from_optical.transpose() * world_from_model;
            // Object axes (REP-103): x = the model's +z, y = its +x, z = its +y.
            let object_axes =
                model_to_optical * Matrix3::new(0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0);
            let q = UnitQuaternion::from_matrix(&object_axes);
            objects.push(ObjectTruth {
                category: name.clone(),
                position: to_optical(origin).into(),
                orientation: [q.i, q.j, q.k, q.w],
                size,
                visible_points: 0,
                keypoints: Vec::new(),
            });
            let world_keypoints: Vec<Vector3<f32>> = model
                .annotation
                .keypoints
                .iter()
                .map(|k| place(&k.xyz))
                .collect();
            renders.push((model, world_keypoints));
        }
        // Structured-light shadows: holes on the far side of depth edges (half the pixels
        // 3 cm or more behind their left or upper neighbour), and a little speckle.
        let snapshot = depth.clone();
        for v in 0..HEIGHT {
            for u in 0..WIDTH {
                let i = v * WIDTH + u;
                let here = snapshot[i];
                if !here.is_finite() {
                    continue;
                }
                let behind = |j: usize| snapshot[j].is_finite() && here - snapshot[j] > 0.03;
                let edge = (u > 0 && behind(i - 1)) || (v > 0 && behind(i - WIDTH));
                if (edge && rng.random_bool(0.5)) || rng.random_bool(0.005) {
                    depth[i] = f32::INFINITY;
                    owner[i] = -1;
                }
            }
        }
        // The cloud: each pixel's ray at its depth, with range noise.
        let mut points = Vec::with_capacity(WIDTH * HEIGHT);
        for v in 0..HEIGHT {
            for u in 0..WIDTH {
                let i = v * WIDTH + u;
                let z = depth[i];
                if !z.is_finite() {
                    points.push([f32::NAN; 3]);
                    continue;
                }
                if let Ok(o) = usize::try_from(owner[i]) {
                    objects[o].visible_points += 1;
                }
                let z = z + noise.sample(&mut rng) * opts.noise_at_1m * z * z;
                points.push((pixel_ray(u, v) * z).into());
            }
        }
        // Visible keypoints: in the image and not behind a nearer surface.
        for (o, (model, world_keypoints)) in renders.iter().enumerate() {
            for (k, w) in model.annotation.keypoints.iter().zip(world_keypoints) {
                let c = to_optical(*w);
                if c.z <= 0.05 {
                    continue;
                }
                let (u, v) = project(&c);
                let (u, v) = (u.round(), v.round());
                if u < 0.0 || v < 0.0 || u >= WIDTH as f32 || v >= HEIGHT as f32 {
                    continue;
                }
                let i = v as usize * WIDTH + u as usize;
                if owner[i] == o as i32 && c.z <= depth[i] + 0.01 {
                    objects[o].keypoints.push((k.semantic_id, c.into()));
                }
            }
        }
        let mut cloud = Cloud::new(points);
        cloud.organised = Some(Organised {
            width: WIDTH,
            height: HEIGHT,
        });
        scenes.push(SceneSample {
            cloud,
            objects,
            tilt_deg: tilt,
            distance_m: distance,
        });
    }
    Ok(scenes)
}

/// Writes `scene_000.pcd`, ... (organised, in `encoding`: `binary_compressed` as recorded
/// scans come) and `truth.json` (`[{"file", "tilt_deg", "distance_m", "objects":
/// [ObjectTruth]}]`) into `dir`.
pub fn write_scenes(
    dir: &Path,
    opts: &SceneOptions,
    encoding: PcdEncoding,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    let mut truth = Vec::new();
    for (i, s) in sample_scenes(opts)?.iter().enumerate() {
        let name = format!("scene_{i:03}.pcd");
        let path = dir.join(&name);
        write_pcd(&path, &s.cloud, encoding)?;
        truth.push(serde_json::json!({
            "file": name,
            "tilt_deg": s.tilt_deg,
            "distance_m": s.distance_m,
            "objects": s.objects,
        }));
        files.push(path);
    }
    let json = serde_json::to_vec_pretty(&truth).expect("JSON of plain values");
    write_file_atomic(dir.join("truth.json"), &json)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::{segment, PixelGrid, Scene, SceneParams, UpSearch};

    /// The scene stage on a sample scene's finite points with the default parameters, up
    /// from the plane (the optical frame's -y without one): on the image when `pixel` (each
    /// point's pixel) is given, else in space.
    fn segmented(finite: &Cloud, pixel: Option<&[usize]>) -> Scene {
        let grid = pixel.map(|pixel| PixelGrid {
            width: WIDTH,
            height: HEIGHT,
            pixel,
        });
        let auto = UpSearch::Auto {
            fallback: -Vector3::y(),
        };
        segment(finite, &SceneParams::default(), auto, grid)
    }

    #[test]
    fn scenes_look_like_a_depth_camera_and_the_scene_stage_finds_the_objects() {
        let opts = SceneOptions {
            count: 2,
            ..Default::default()
        };
        let scenes = sample_scenes(&opts).unwrap();
        let again = sample_scenes(&opts).unwrap();
        let bits = |s: &SceneSample| -> Vec<u32> {
            s.cloud
                .points
                .iter()
                .flatten()
                .map(|c| c.to_bits())
                .collect()
        };
        for (a, b) in scenes.iter().zip(&again) {
            assert!(
                bits(a) == bits(b) && a.objects == b.objects,
                "deterministic"
            );
        }
        // Objects with enough visible points, and of those the ones showing keypoints.
        let mut seen = (0, 0);
        for s in &scenes {
            assert_eq!(s.cloud.len(), WIDTH * HEIGHT);
            assert!(s.cloud.check_organised("scene").is_ok());
            let (finite, pixel) = s.cloud.finite_points();
            assert!(finite.len() < s.cloud.len(), "NaN where nothing is hit");
            assert!(finite.len() > s.cloud.len() / 4);
            assert!(!s.objects.is_empty());
            let seg = segmented(&finite, Some(&pixel));
            // Clustered on the image or in space: the same objects, on the image with
            // their low parts (inside the plane's band).
            let in_space = segmented(&finite, None);
            for b in &in_space.objects {
                let a = seg
                    .objects
                    .iter()
                    .find(|a| a.indices.binary_search(&b.indices[0]).is_ok());
                let a = a.expect("an object found in space is found on the image");
                assert!(b.indices.iter().all(|i| a.indices.binary_search(i).is_ok()));
            }
            let plane = seg.plane.as_ref().expect("the table");
            // The table's normal in the optical frame: up, tilted toward the camera.
            let tilt = s.tilt_deg.to_radians();
            let up = Vector3::new(0.0, -tilt.cos(), -tilt.sin());
            assert!(plane.normal.dot(&up) > 0.99, "{} vs {up}", plane.normal);
            for o in s.objects.iter().filter(|o| o.visible_points >= 500) {
                let found = seg.objects.iter().any(|f| {
                    (Vector3::from(f.centroid) - Vector3::from(o.position)).norm() < 0.6 * o.size
                });
                assert!(
                    found,
                    "{} at {:?} not found: {:?}",
                    o.category, o.position, seg.rejected
                );
                seen.0 += 1;
                seen.1 += usize::from(!o.keypoints.is_empty());
            }
        }
        // An object at the image border may show its body and none of its keypoints.
        assert!(
            4 * seen.1 >= 3 * seen.0,
            "{} of {} objects show keypoints",
            seen.1,
            seen.0
        );
    }

    /// Knives lie on their side, front or back up, and the scene stage keeps them: their
    /// handles (about 1 cm) and blades (2-3 mm) are inside the plane's 1 cm band.
    #[test]
    fn knives_lie_on_their_side_and_the_scene_stage_keeps_them() {
        let opts = SceneOptions {
            count: 6,
            seed: 77,
            categories: tabletop_categories(&["knife".into(), "can".into()]).unwrap(),
            max_yaw_deg: 180.0,
            ..Default::default()
        };
        let (mut faces, mut found) = (Vec::new(), 0);
        for s in sample_scenes(&opts).unwrap() {
            let tilt = s.tilt_deg.to_radians();
            let up = Vector3::new(0.0, -tilt.cos(), -tilt.sin());
            let (finite, pixel) = s.cloud.finite_points();
            let seg = segmented(&finite, Some(&pixel));
            for o in s.objects.iter().filter(|o| o.category == "knife") {
                let [x, y, z, w] = o.orientation;
                let q = UnitQuaternion::from_quaternion(nalgebra::Quaternion::new(w, x, y, z));
                // The object's front (x) faces up or down, its length lies flat.
                let front_up = (q * Vector3::x()).dot(&up);
                assert!(front_up.abs() > 0.999, "{front_up}");
                faces.push(front_up > 0.0);
                if o.visible_points < 500 {
                    continue;
                }
                // A cluster near the knife (the image border may cut it) holds most of its
                // visible points.
                let near = |c: &[f32; 3]| (Vector3::from(*c) - Vector3::from(o.position)).norm();
                let cluster = seg
                    .objects
                    .iter()
                    .find(|f| near(&f.centroid) < 0.5 * o.size);
                let kept = cluster.map_or(0, |f| f.indices.len());
                assert!(
                    2 * kept >= o.visible_points,
                    "a knife of {} visible points kept {kept}",
                    o.visible_points
                );
                found += 1;
            }
        }
        assert!(faces.contains(&true) && faces.contains(&false), "{faces:?}");
        assert!(found >= 3, "{found}");
    }
}
