//! Which points of a cloud a camera at a given viewpoint sees: hidden-point removal with a
//! z-buffer of oriented splats ("surfels"), so that partial (single-view) clouds can be made
//! from complete ones — for the synthetic `--partial` dataset and for training augmentation
//! on clouds without a mesh.
//!
//! Method (chosen over Katz et al.'s spherical flipping, which needs a 3D convex hull):
//! 1. Each point gets a normal (the least-variance direction of its `NORMAL_NEIGHBOURS`
//!    nearest neighbours) and becomes a disk of radius `splat_radius` in its tangent plane,
//!    so a sampled surface is closed and hides what lies behind it.
//! 2. A pinhole camera at `viewpoint` looks at the cloud's centroid. Every disk is drawn into
//!    a depth image, ray-cast per pixel so it keeps its true slant; each pixel remembers the
//!    nearest disk. Pixels are small enough that the farthest disk spans
//!    `PIXELS_PER_SPLAT` pixels in radius.
//! 3. A point is visible when, along its own viewing ray, it lies at most `depth_tolerance`
//!    behind the plane of the disk nearest in its pixel.
//!
//! Flat camera-facing disks would be simpler but hide inclined surfaces (a neighbour's flat
//! disk lies `radius * tan(slant)` in front), losing everything beyond about 55° of slant;
//! oriented disks keep surfaces up to near-grazing angles.
//!
//! Parameters and their trade-offs:
//! - `splat_radius` (default: the median distance to the 8th nearest neighbour, about
//!   1.6 / sqrt(points per unit area), which leaves about 0.1% of a randomly sampled
//!   surface uncovered): too small lets hidden points show through holes, too large lets the
//!   front surface hide points just beside a silhouette.
//! - `depth_tolerance` (default half the splat radius): absorbs curvature (a disk departs
//!   from a surface of radius R by up to r²/2R) and normal noise; walls thinner than it are
//!   seen through.
//!
//! Points at or behind the camera plane are never visible.

use super::kdtree::{build_kdtree, k_nearest};
use super::normals::pca_normal;
use rayon::prelude::*;

/// Smallest splat radius in pixels (the farthest splat's): sets the image resolution.
const PIXELS_PER_SPLAT: f32 = 2.0;
/// Largest depth image side; keeps memory bounded for extreme inputs (the splats then get
/// fewer pixels, which only makes the test coarser).
const MAX_IMAGE_SIDE: usize = 2048;
/// Neighbour rank whose median distance gives the default splat radius.
const SPLAT_NEIGHBOUR: usize = 8;
/// Neighbours (besides the point) whose spread gives a point's normal.
const NORMAL_NEIGHBOURS: usize = 10;

/// Settings of `visible_points`; `Default` derives both from the cloud's density.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct VisibilityParams {
    /// Radius of each point's disk, in cloud units (`None`: from the cloud's point spacing,
    /// see the module documentation).
    pub splat_radius: Option<f32>,
    /// How far behind the nearest surface a point may lie and still count as visible, in
    /// cloud units (`None`: half the splat radius).
    pub depth_tolerance: Option<f32>,
}

/// Indices (ascending) of the points seen from `viewpoint`, which should lie outside the
/// cloud. See the module documentation for the method.
pub fn visible_points(
    points: &[[f32; 3]],
    viewpoint: [f32; 3],
    params: &VisibilityParams,
) -> Vec<usize> {
    if points.is_empty() {
        return Vec::new();
    }
    let (normals, auto_radius) = local_frames(points);
    let radius = params.splat_radius.unwrap_or(auto_radius).max(f32::EPSILON);
    let tolerance = params.depth_tolerance.unwrap_or(0.5 * radius);

    // Camera frame: forward towards the centroid, any right/up orthogonal to it.
    let n = points.len() as f64;
    let mut centroid = [0f64; 3];
    for p in points {
        for k in 0..3 {
            centroid[k] += p[k] as f64 / n;
        }
    }
    let forward = normalize(sub(centroid.map(|c| c as f32), viewpoint));
    if !forward.iter().all(|c| c.is_finite()) {
        return Vec::new(); // the viewpoint is the centroid: no direction to look in
    }
    let helper = if forward[1].abs() < 0.9 {
        [0.0, 1.0, 0.0]
    } else {
        [1.0, 0.0, 0.0]
    };
    let right = normalize(cross(forward, helper));
    let up = cross(right, forward);
    let to_camera = |v: [f32; 3]| [dot(v, right), dot(v, up), dot(v, forward)];

    // Camera coordinates; image-plane coordinates are (x / z, y / z).
    let near = 1e-6f32;
    let cam: Vec<[f32; 3]> = points
        .iter()
        .map(|&p| to_camera(sub(p, viewpoint)))
        .collect();
    let cam_normals: Vec<[f32; 3]> = normals.iter().map(|&m| to_camera(m)).collect();
    let (mut umin, mut umax, mut vmin, mut vmax) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
    let mut zmax = 0f32;
    for c in cam.iter().filter(|c| c[2] > near) {
        let (u, v) = (c[0] / c[2], c[1] / c[2]);
        umin = umin.min(u);
        umax = umax.max(u);
        vmin = vmin.min(v);
        vmax = vmax.max(v);
        zmax = zmax.max(c[2]);
    }
    if zmax == 0.0 {
        return Vec::new();
    }
    // Pixel size (image-plane units) so the farthest splat spans PIXELS_PER_SPLAT pixels,
    // enlarged if the image would exceed MAX_IMAGE_SIDE.
    let span = (umax - umin).max(vmax - vmin);
    let pixel = (radius / zmax / PIXELS_PER_SPLAT)
        .max(span / (MAX_IMAGE_SIDE - 1) as f32)
        .max(f32::MIN_POSITIVE);
    let w = ((umax - umin) / pixel) as usize + 1;
    let h = ((vmax - vmin) / pixel) as usize + 1;
    let px =
        |u: f32, lo: f32, size: usize| (((u - lo) / pixel) as isize).clamp(0, size as isize - 1);

    // Depth image: per pixel the nearest disk's depth along the pixel's ray, and its point.
    let mut depth = vec![f32::INFINITY; w * h];
    let mut owner = vec![u32::MAX; w * h];
    for (i, (c, m)) in cam.iter().zip(&cam_normals).enumerate() {
        if c[2] <= near {
            continue;
        }
        let own = px(c[1] / c[2], vmin, h) as usize * w + px(c[0] / c[2], umin, w) as usize;
        if c[2] < depth[own] {
            depth[own] = c[2];
            owner[own] = i as u32;
        }
        if c[2] - radius <= near {
            continue; // the disk reaches the camera plane: keep only its centre
        }
        // The disk lies in the ball of radius r around c, whose image is inside the range of
        // (x ± r) / (z ± r); the same for y.
        let ext = |x: f32| {
            let q = [
                (x - radius) / (c[2] - radius),
                (x - radius) / (c[2] + radius),
            ];
            let s = [
                (x + radius) / (c[2] - radius),
                (x + radius) / (c[2] + radius),
            ];
            (q[0].min(q[1]), s[0].max(s[1]))
        };
        let (ua, ub) = ext(c[0]);
        let (va, vb) = ext(c[1]);
        let plane = dot(*m, *c);
        for y in px(va, vmin, h)..=px(vb, vmin, h) {
            let v = vmin + (y as f32 + 0.5) * pixel;
            for x in px(ua, umin, w)..=px(ub, umin, w) {
                let u = umin + (x as f32 + 0.5) * pixel;
                let denom = m[0] * u + m[1] * v + m[2];
                if denom.abs() < 1e-6 {
                    continue;
                }
                let t = plane / denom; // the ray (u, v, 1) meets the disk's plane at depth t
                if t <= near {
                    continue;
                }
                let hit = [u * t - c[0], v * t - c[1], t - c[2]];
                let cell = y as usize * w + x as usize;
                if dot(hit, hit) <= radius * radius && t < depth[cell] {
                    depth[cell] = t;
                    owner[cell] = i as u32;
                }
            }
        }
    }

    (0..points.len())
        .filter(|&i| {
            let c = cam[i];
            if c[2] <= near {
                return false;
            }
            let (u, v) = (c[0] / c[2], c[1] / c[2]);
            let cell = px(v, vmin, h) as usize * w + px(u, umin, w) as usize;
            let j = owner[cell] as usize;
            if j == i {
                return true;
            }
            // Depth of the owner's plane along this point's own ray.
            let (m, o) = (cam_normals[j], cam[j]);
            let denom = m[0] * u + m[1] * v + m[2];
            let t = if denom.abs() < 1e-6 {
                depth[cell]
            } else {
                dot(m, o) / denom
            };
            c[2] <= t.max(depth[cell]) + tolerance
        })
        .collect()
}

/// Per-point unit normals (least-variance direction of the `NORMAL_NEIGHBOURS` nearest
/// neighbours; arbitrary sign) and the default splat radius (median distance to the
/// `SPLAT_NEIGHBOUR`-th nearest neighbour).
pub fn local_frames(points: &[[f32; 3]]) -> (Vec<[f32; 3]>, f32) {
    if points.len() < 3 {
        return (vec![[0.0, 0.0, 1.0]; points.len()], 1e-3);
    }
    let k = NORMAL_NEIGHBOURS.min(points.len() - 1);
    let rank = SPLAT_NEIGHBOUR.min(k);
    let tree = build_kdtree(points);
    let frames: Vec<([f32; 3], f32)> = points
        .par_iter()
        .with_min_len(256)
        .map(|p| {
            // One query serves both the normal and the splat radius.
            let found = k_nearest(&tree, p, k + 1);
            let d = found.get(rank).map_or(0.0, |nb| nb.distance.sqrt());
            // f32 and no orientation: a splat's disk only needs its plane (the depth test
            // is the same for either sign of the normal).
            let nrm = pca_normal::<f32>(found.iter().map(|nb| points[nb.item as usize]), None);
            (nrm, d)
        })
        .collect();
    let (normals, mut d): (Vec<[f32; 3]>, Vec<f32>) = frames.into_iter().unzip();
    let mid = d.len() / 2;
    let (_, m, _) = d.select_nth_unstable_by(mid, f32::total_cmp);
    (normals, m.max(1e-6))
}

fn sub(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn dot(a: [f32; 3], b: [f32; 3]) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn cross(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn normalize(a: [f32; 3]) -> [f32; 3] {
    let l = dot(a, a).sqrt();
    a.map(|c| c / l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_sphere_from_plus_z_keeps_front_hemisphere() {
        let pts = crate::cloud::normals::fibonacci_sphere(8000, 1.0);
        let vis = visible_points(&pts, [0.0, 0.0, 5.0], &VisibilityParams::default());
        let frac = vis.len() as f32 / pts.len() as f32;
        // From distance 5 the visible cap ends at z = 1/5: 40% of the sphere.
        assert!((0.37..0.41).contains(&frac), "visible fraction {frac}");
        let front = vis.iter().filter(|&&i| pts[i][2] > 0.0).count();
        assert!(
            front as f32 >= 0.99 * vis.len() as f32,
            "{front} of {}",
            vis.len()
        );
        // Everything facing the camera squarely is kept.
        let facing = pts.iter().filter(|p| p[2] > 0.6).count();
        let kept = vis.iter().filter(|&&i| pts[i][2] > 0.6).count();
        assert_eq!(facing, kept);
        assert!(vis.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn visibility_random_sphere_sample() {
        // Uneven (uniform random) sampling: holes between splats must not leak the back.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let pts: Vec<[f32; 3]> = (0..6000)
            .map(|_| {
                let z: f32 = rng.random_range(-1.0..1.0);
                let t: f32 = rng.random_range(0.0..std::f32::consts::TAU);
                let r = (1.0 - z * z).sqrt();
                [r * t.cos(), r * t.sin(), z]
            })
            .collect();
        let vis = visible_points(&pts, [0.0, 0.0, 3.0], &VisibilityParams::default());
        let frac = vis.len() as f32 / pts.len() as f32;
        assert!((0.3..0.36).contains(&frac), "visible fraction {frac}"); // cap z > 1/3
        let back = vis.iter().filter(|&&i| pts[i][2] < 0.0).count();
        let zs: Vec<f32> = vis
            .iter()
            .map(|&i| pts[i][2])
            .filter(|z| *z < 0.0)
            .collect();
        assert!(
            back as f32 <= 0.005 * vis.len() as f32,
            "{back} back points {zs:?}"
        );
    }

    #[test]
    fn visibility_front_plate_hides_back_plate() {
        // Two parallel 1x1 plates 0.2 apart, seen head-on: only the front one is visible.
        let mut pts = Vec::new();
        for z in [0.1f32, -0.1] {
            for i in 0..60 {
                for j in 0..60 {
                    pts.push([i as f32 / 59.0 - 0.5, j as f32 / 59.0 - 0.5, z]);
                }
            }
        }
        let vis = visible_points(&pts, [0.0, 0.0, 3.0], &VisibilityParams::default());
        let back = vis.iter().filter(|&&i| pts[i][2] < 0.0).count();
        assert!(back < 40, "{back} back points visible"); // only around the rim
        assert_eq!(vis.len() - back, 3600);
        // From the side at an angle both are partly seen.
        let vis = visible_points(&pts, [3.0, 0.0, 0.3], &VisibilityParams::default());
        assert!(vis.iter().any(|&i| pts[i][2] < 0.0));
    }

    #[test]
    fn visibility_degenerate_inputs() {
        let p = VisibilityParams::default();
        assert!(visible_points(&[], [0.0, 0.0, 1.0], &p).is_empty());
        assert_eq!(visible_points(&[[0.0; 3]], [0.0, 0.0, 1.0], &p), vec![0]);
        // Camera at the centroid: nothing can be looked at.
        assert!(visible_points(&[[0.0; 3]], [0.0; 3], &p).is_empty());
        // Points behind the camera are dropped.
        let pts = [[0.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.1, -1.0]];
        let vis = visible_points(&pts, [0.0, 0.0, 1.0], &p);
        assert!(!vis.contains(&1));
    }
}
