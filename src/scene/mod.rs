//! The scene stage, before the per-object path: a depth camera sees a table, several
//! objects and the room. Following PCL's table-top segmentation: the support plane by
//! RANSAC ([`plane`]), the points above it clustered ([`clusters`]), clusters filtered by
//! size and extent (walls and the room are not objects) and ordered by distance to the
//! sensor (the frame's origin). On a depth image, objects keep their parts inside the
//! plane's band (a knife lying flat, every object's lowest centimetre; [`low`]). Every cloud gets a [`Scene`] that says what happened, so
//! diagnostics can explain an empty result.

pub mod clusters;
pub mod low;
pub mod plane;

pub use clusters::{euclidean_clusters, organised_clusters, PixelGrid};
pub use plane::{fit_plane, Plane, PlaneParams};

use crate::cloud::{bounds, dist2, Cloud};
use nalgebra::Vector3;
use serde::{Deserialize, Serialize};

/// Scene settings; every default is for metres and a table-top scene.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SceneParams {
    pub plane: PlaneParams,
    /// Neighbours closer than this join a cluster (PCL's cluster tolerance).
    pub cluster_tolerance: f32,
    /// Clusters with fewer points are noise.
    pub min_cluster_points: usize,
    /// Clusters with more points are not one object (a wall, the merged room).
    pub max_cluster_points: usize,
    /// Clusters whose bounding-box diagonal exceeds this are not objects.
    pub max_object_extent: f32,
    /// Points higher than this above the plane are ignored (the room above the table).
    pub max_height: f32,
    /// At most this many objects, nearest the sensor first.
    pub max_objects: usize,
}

impl Default for SceneParams {
    fn default() -> Self {
        SceneParams {
            plane: PlaneParams::default(),
            cluster_tolerance: 0.015,
            min_cluster_points: 200,
            max_cluster_points: 100_000,
            max_object_extent: 0.6,
            max_height: 0.6,
            max_objects: 4,
        }
    }
}

/// One object candidate: a cluster of the input's points.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneObject {
    /// Indices into the cloud given to [`segment`].
    pub indices: Vec<usize>,
    pub centroid: [f32; 3],
    /// Bounding-box diagonal (input units).
    pub extent: f32,
}

/// Why clusters were not reported, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejections {
    pub too_many_points: usize,
    pub too_large: usize,
    /// Beyond `max_objects` (the farthest ones).
    pub over_max_objects: usize,
}

/// What the scene stage found in one cloud.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// The support plane, `None` when no plane held enough points.
    pub plane: Option<Plane>,
    /// The up direction used downstream: the plane's normal when found, else the hint.
    pub up: Vector3<f32>,
    /// Objects, nearest the sensor first.
    pub objects: Vec<SceneObject>,
    pub rejected: Rejections,
    /// Points left after removing the plane and what lies below or far above it.
    pub above_plane: usize,
}

/// How the support plane is looked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UpSearch {
    /// The largest plane below the sensor (`up_axis: auto`, for tilted cameras): its
    /// normal, turned toward the sensor, within [`AUTO_MAX_TILT_DEG`] of `fallback` (the
    /// camera's rough up), so a wall the camera looks down at or a ceiling is no support.
    /// `fallback` is up when none is found.
    Auto { fallback: Vector3<f32> },
    /// Only planes within `max_tilt_deg` of this axis (a levelled frame such as
    /// `base_link`); the axis is up when none is found.
    Near(Vector3<f32>),
}

/// With `auto`, how far the support plane's normal may lean from the fallback axis: a
/// camera tilted down by up to this much. A wall in front of a camera tilted down by t has
/// its sensor-facing normal t past horizontal, on the other side (a negative component
/// along the camera's up), so it never qualifies.
pub const AUTO_MAX_TILT_DEG: f32 = 75.0;

impl UpSearch {
    fn fallback(&self) -> Vector3<f32> {
        match *self {
            UpSearch::Auto { fallback } | UpSearch::Near(fallback) => fallback.normalize(),
        }
    }
}

/// Segments `cloud` (finite points, sensor at the origin). With `grid` (where each point
/// lies on the depth image it came from) clusters are found on the image
/// ([`organised_clusters`]), else in space ([`euclidean_clusters`]).
pub fn segment(
    cloud: &Cloud,
    params: &SceneParams,
    search: UpSearch,
    grid: Option<PixelGrid<'_>>,
) -> Scene {
    let (plane_params, hint) = match search {
        UpSearch::Auto { fallback } => (
            PlaneParams {
                max_tilt_deg: AUTO_MAX_TILT_DEG,
                one_sided: true,
                ..params.plane
            },
            fallback,
        ),
        UpSearch::Near(axis) => (params.plane, axis),
    };
    let plane = fit_plane(cloud, &plane_params, Some(hint));
    let candidates: Vec<usize> = match &plane {
        Some(p) => {
            let low = 1.5 * params.plane.distance_threshold;
            let heights: Vec<f32> = cloud.points.iter().map(|q| p.signed_distance(q)).collect();
            let high: Vec<bool> = heights
                .iter()
                .map(|&h| h > low && h <= params.max_height)
                .collect();
            let mut candidates: Vec<usize> = (0..cloud.len()).filter(|&i| high[i]).collect();
            if let Some(g) = grid {
                let lows = low::low_parts(cloud, g, p, &heights, &high, params.max_height);
                candidates.extend(lows);
                candidates.sort_unstable();
            }
            candidates
        }
        None => (0..cloud.len()).collect(),
    };
    let above = cloud.select(&candidates);
    let (tolerance, min_points) = (params.cluster_tolerance, params.min_cluster_points);
    let clusters = match grid {
        Some(g) => {
            let pixel: Vec<usize> = candidates.iter().map(|&i| g.pixel[i]).collect();
            let grid = PixelGrid { pixel: &pixel, ..g };
            organised_clusters(
                &above,
                grid,
                tolerance,
                min_points,
                params.max_object_extent,
            )
        }
        None => euclidean_clusters(&above, tolerance, min_points),
    };
    let mut rejected = Rejections::default();
    let mut objects: Vec<SceneObject> = Vec::new();
    for cluster in clusters {
        if cluster.len() > params.max_cluster_points {
            rejected.too_many_points += 1;
            continue;
        }
        let indices: Vec<usize> = cluster.iter().map(|&i| candidates[i]).collect();
        let points: Vec<[f32; 3]> = indices.iter().map(|&i| cloud.points[i]).collect();
        let (lo, hi) = bounds(&points);
        let extent = dist2(&lo, &hi).sqrt();
        if extent > params.max_object_extent {
            rejected.too_large += 1;
            continue;
        }
        let sum = points.iter().fold(Vector3::<f64>::zeros(), |s, p| {
            s + Vector3::from(p.map(f64::from))
        });
        let c = sum / points.len() as f64;
        objects.push(SceneObject {
            indices,
            centroid: [c.x as f32, c.y as f32, c.z as f32],
            extent,
        });
    }
    objects.sort_by(|a, b| {
        let (da, db) = (dist2(&a.centroid, &[0.0; 3]), dist2(&b.centroid, &[0.0; 3]));
        da.total_cmp(&db)
    });
    if objects.len() > params.max_objects {
        rejected.over_max_objects = objects.len() - params.max_objects;
        objects.truncate(params.max_objects);
    }
    Scene {
        up: plane.as_ref().map_or(search.fallback(), |p| p.normal),
        plane,
        objects,
        rejected,
        above_plane: candidates.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A table 0.8 m below the sensor (z up), a wall behind, boxes on the table.
    fn scene(boxes: &[[f32; 3]], seed: u64) -> Cloud {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut pts = Vec::new();
        for _ in 0..20000 {
            let (x, y) = (
                rng.random_range(0.4..1.4f32),
                rng.random_range(-0.6..0.6f32),
            );
            pts.push([x, y, -0.8 + rng.random_range(-0.002..0.002f32)]);
        }
        for _ in 0..8000 {
            let (y, z) = (
                rng.random_range(-1.5..1.5f32),
                rng.random_range(-0.8..0.8f32),
            );
            pts.push([1.5, y, z]);
        }
        for c in boxes {
            for _ in 0..1500 {
                pts.push([
                    c[0] + rng.random_range(-0.04..0.04f32),
                    c[1] + rng.random_range(-0.04..0.04f32),
                    -0.795 + rng.random_range(0.0..0.1f32),
                ]);
            }
        }
        Cloud::new(pts)
    }

    #[test]
    fn objects_on_a_table_nearest_first_walls_out() {
        let cloud = scene(&[[1.0, 0.2, 0.0], [0.6, -0.3, 0.0], [0.9, -0.1, 0.0]], 1);
        let s = segment(
            &cloud,
            &SceneParams::default(),
            UpSearch::Near(Vector3::z()),
            None,
        );
        let plane = s.plane.as_ref().unwrap();
        assert!(plane.normal.dot(&Vector3::z()) > 0.999);
        assert_eq!(s.objects.len(), 3, "{:?}", s.rejected);
        let d: Vec<f32> = s
            .objects
            .iter()
            .map(|o| dist2(&o.centroid, &[0.0; 3]))
            .collect();
        assert!(d.windows(2).all(|w| w[0] <= w[1]), "nearest first: {d:?}");
        assert!((s.objects[0].centroid[0] - 0.6).abs() < 0.02);
        for o in &s.objects {
            // A box's lowest 1.5 cm go with the plane's inlier band.
            assert!(
                o.indices.len() >= 1250 && o.indices.len() <= 1500,
                "{}",
                o.indices.len()
            );
            assert!(o.extent < 0.2);
        }
        assert!(
            s.objects.iter().all(|o| o.centroid[0] < 1.3),
            "the wall is no object"
        );
    }

    #[test]
    fn auto_takes_the_table_below_not_a_larger_wall_ahead() {
        let mut cloud = scene(&[[1.0, 0.2, 0.0]], 4);
        // Triple the wall: now the largest plane by far.
        let wall: Vec<[f32; 3]> = cloud
            .points
            .iter()
            .copied()
            .filter(|p| p[0] == 1.5)
            .collect();
        for k in 0..2 {
            cloud
                .points
                .extend(wall.iter().map(|p| [p[0], p[1] + 0.001 * k as f32, p[2]]));
        }
        let auto = UpSearch::Auto {
            fallback: Vector3::z(),
        };
        let s = segment(&cloud, &SceneParams::default(), auto, None);
        let plane = s.plane.expect("the table");
        assert!(plane.normal.dot(&Vector3::z()) > 0.999, "{}", plane.normal);
        assert_eq!(s.objects.len(), 1);
    }

    #[test]
    fn max_objects_keeps_the_nearest_and_counts_the_rest() {
        let boxes: Vec<[f32; 3]> = (0..6).map(|i| [0.5 + 0.15 * i as f32, 0.0, 0.0]).collect();
        let cloud = scene(&boxes, 2);
        let params = SceneParams {
            max_objects: 2,
            ..Default::default()
        };
        let s = segment(&cloud, &params, UpSearch::Near(Vector3::z()), None);
        assert_eq!(s.objects.len(), 2);
        assert_eq!(s.rejected.over_max_objects, 4);
        assert!(s.objects[0].centroid[0] < 0.55 && s.objects[1].centroid[0] < 0.7);
    }

    #[test]
    fn without_a_plane_the_hint_is_up_and_clusters_still_come() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let blob: Vec<[f32; 3]> = (0..2000)
            .map(|_| {
                let v = Vector3::new(
                    rng.random_range(-1.0..1.0f32),
                    rng.random_range(-1.0..1.0f32),
                    rng.random_range(-1.0..1.0f32),
                );
                // Radius 25 cm: any plane's 2 cm band holds about 4% of the shell.
                (v.normalize() * 0.25 + Vector3::new(1.5, 0.0, 0.0)).into()
            })
            .collect();
        let auto = UpSearch::Auto {
            fallback: -Vector3::y(),
        };
        let params = SceneParams {
            plane: PlaneParams {
                min_inlier_fraction: 0.1,
                ..Default::default()
            },
            max_object_extent: 1.0,
            cluster_tolerance: 0.05,
            ..Default::default()
        };
        let s = segment(&Cloud::new(blob), &params, auto, None);
        assert!(s.plane.is_none());
        assert_eq!(s.up, -Vector3::y());
        assert_eq!(s.objects.len(), 1);
        let empty = segment(&Cloud::default(), &SceneParams::default(), auto, None);
        assert!(empty.plane.is_none() && empty.objects.is_empty());
    }

    /// The real Kinect scan (../shared/fixtures/real): its README gives the plane and
    /// cluster figures PCL finds with points nearer than 1.6 m.
    #[test]
    fn real_kinect_table_scan() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/real/kinect_table_frame.pcd");
        if !path.is_file() {
            eprintln!("skipped: {} is absent", path.display());
            return;
        }
        let scan = Cloud::read(&path).unwrap();
        let (finite, pixel) = scan.finite_points();
        let near: Vec<usize> = (0..finite.len())
            .filter(|&i| dist2(&finite.points[i], &[0.0; 3]) < 1.6 * 1.6)
            .collect();
        let pixel: Vec<usize> = near.iter().map(|&i| pixel[i]).collect();
        let near = finite.select(&near);
        let shape = scan.organised.expect("an organised scan");
        let started = std::time::Instant::now();
        // Tilted camera: the table is the largest plane, whatever its orientation.
        let auto = UpSearch::Auto {
            fallback: -Vector3::y(),
        };
        let s = segment(&near, &SceneParams::default(), auto, None);
        let took = started.elapsed();
        let plane = s.plane.as_ref().expect("the table");
        let facts = Vector3::new(-0.07f32, 0.69, 0.72).normalize();
        // The facts give the normal's line; ours is turned toward the sensor.
        let angle = plane.normal.dot(&facts).abs().min(1.0).acos().to_degrees();
        assert!(plane.offset > 0.0, "the sensor is on the normal's side");
        let sizes: Vec<usize> = s.objects.iter().map(|o| o.indices.len()).collect();
        eprintln!(
            "kinect scan: {} near points, plane normal {:?} ({angle:.1} deg from the facts), \
             {} inliers; objects {sizes:?}, rejected {:?}; {:.0} ms",
            near.len(),
            plane.normal.as_slice(),
            plane.inliers.len(),
            s.rejected,
            took.as_secs_f64() * 1e3
        );
        assert!(angle < 5.0, "{angle}");
        assert!((170_000..=220_000).contains(&plane.inliers.len()));
        assert!(s.objects.len() >= 3, "{sizes:?} {:?}", s.rejected);
        // On the image: the same objects with their low parts (inside the plane's band,
        // which only the image's median-filtered heights can separate from the table).
        let grid = PixelGrid {
            width: shape.width,
            height: shape.height,
            pixel: &pixel,
        };
        let started = std::time::Instant::now();
        let on_image = segment(&near, &SceneParams::default(), auto, Some(grid));
        let took = started.elapsed();
        let image_sizes: Vec<usize> = on_image.objects.iter().map(|o| o.indices.len()).collect();
        eprintln!(
            "on the image: objects {image_sizes:?}, rejected {:?}; {:.0} ms",
            on_image.rejected,
            took.as_secs_f64() * 1e3
        );
        assert_eq!(image_sizes.len(), sizes.len());
        for (a, b) in on_image.objects.iter().zip(&s.objects) {
            assert!(dist2(&a.centroid, &b.centroid) < 0.03 * 0.03);
            let kept = b
                .indices
                .iter()
                .filter(|i| a.indices.binary_search(i).is_ok());
            assert!(kept.count() * 50 >= b.indices.len() * 49);
            assert!(a.indices.len() >= b.indices.len());
        }
    }
}
