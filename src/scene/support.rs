//! The support's outline: the convex hull of the plane's inliers in the plane (PCL's
//! `ConvexHull` followed by `ExtractPolygonalPrismData`). Objects stand on the table, so a
//! point above the plane is an object candidate only where the table lies below it, and
//! what stands beside the table (a shelf, a chair, a wall some way behind it) is dropped
//! before clustering. A wall rising from the table's edge projects onto the outline
//! itself and stays: the cluster filters refuse it.
//!
//! Hand-written (Andrew's monotone chain after an Akl-Toussaint filter, 60 lines): the crates that have a 2-D convex hull
//! (`geo`) bring a geometry stack this one test does not need, and the test here is
//! against the hull grown by a margin, which they do not offer directly.

use super::Plane;
use crate::cloud::Cloud;
use nalgebra::Vector3;

/// The hull of a dense table's edge has hundreds of nearly collinear vertices, and every
/// point above the plane is tested against each edge: vertices closer than this (input
/// units, 5 mm for metres) to the outline without them are dropped. The outline shrinks by
/// at most this, well inside `support_margin`'s default.
const SIMPLIFY_TOLERANCE: f32 = 0.005;

/// The support plane's convex outline, in a 2-D basis of the plane.
#[derive(Debug, Clone, PartialEq)]
pub struct SupportHull {
    origin: Vector3<f32>,
    u: Vector3<f32>,
    v: Vector3<f32>,
    /// Counter-clockwise hull vertices in (u, v).
    vertices: Vec<[f32; 2]>,
    /// Per edge i (vertex i to i + 1): unit outward normal and `n . p` on the edge.
    edges: Vec<([f32; 2], f32)>,
}

impl SupportHull {
    /// The outline of `plane`'s inliers in `cloud`; `None` when they span no area (fewer
    /// than three points, or all on a line).
    pub fn of_plane(cloud: &Cloud, plane: &Plane) -> Option<SupportHull> {
        let n = plane.normal;
        // Any unit vector not along n, then a right-handed basis (u, v, n).
        let helper = if n.x.abs() < 0.9 {
            Vector3::x()
        } else {
            Vector3::y()
        };
        let u = n.cross(&helper).normalize();
        let v = n.cross(&u);
        let origin = -plane.offset * n;
        let flat: Vec<[f32; 2]> = plane
            .inliers
            .iter()
            .map(|&i| {
                let d = Vector3::from(cloud.points[i]) - origin;
                [d.dot(&u), d.dot(&v)]
            })
            .collect();
        let vertices = simplify(convex_hull(&mut outside_octagon(&flat)), SIMPLIFY_TOLERANCE);
        if vertices.len() < 3 {
            return None;
        }
        let edges = (0..vertices.len())
            .map(|i| {
                let (a, b) = (vertices[i], vertices[(i + 1) % vertices.len()]);
                let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
                let len = (dx * dx + dy * dy).sqrt();
                // Counter-clockwise: the outside is to the right of each edge.
                let normal = [dy / len, -dx / len];
                (normal, normal[0] * a[0] + normal[1] * a[1])
            })
            .collect();
        Some(SupportHull {
            origin,
            u,
            v,
            vertices,
            edges,
        })
    }

    /// Whether `p`, projected onto the plane, lies within `margin` of the outline (inside
    /// or outside it; the grown outline's corners are mitred, so a point near a corner may
    /// pass slightly beyond `margin`).
    pub fn covers(&self, p: &[f32; 3], margin: f32) -> bool {
        let d = Vector3::from(*p) - self.origin;
        let (x, y) = (d.dot(&self.u), d.dot(&self.v));
        self.edges
            .iter()
            .all(|&(n, c)| n[0] * x + n[1] * y <= c + margin)
    }

    /// The outline's vertices in the plane's 2-D basis, counter-clockwise.
    pub fn vertices(&self) -> &[[f32; 2]] {
        &self.vertices
    }
}

/// The points that may be hull vertices (Akl-Toussaint): the extremes in eight directions
/// span an octagon inside the hull, and no point strictly inside it can be a vertex. A
/// table's 100k inliers leave a few hundred, so the hull's sort stays cheap and exact.
fn outside_octagon(points: &[[f32; 2]]) -> Vec<[f32; 2]> {
    const DIRECTIONS: [[f32; 2]; 8] = [
        [1.0, 0.0],
        [1.0, 1.0],
        [0.0, 1.0],
        [-1.0, 1.0],
        [-1.0, 0.0],
        [-1.0, -1.0],
        [0.0, -1.0],
        [1.0, -1.0],
    ];
    let Some(&first) = points.first() else {
        return Vec::new();
    };
    // Counter-clockwise by construction: the directions turn counter-clockwise.
    let mut octagon = [first; 8];
    for &p in points {
        for (extreme, d) in octagon.iter_mut().zip(DIRECTIONS) {
            if p[0] * d[0] + p[1] * d[1] > extreme[0] * d[0] + extreme[1] * d[1] {
                *extreme = p;
            }
        }
    }
    // A corner extreme in several directions repeats: its zero-length edges test nothing.
    let edges: Vec<([f32; 2], [f32; 2])> = (0..8)
        .map(|i| (octagon[i], octagon[(i + 1) % 8]))
        .filter(|(a, b)| a != b)
        .collect();
    if edges.len() < 3 {
        return points.to_vec();
    }
    let strictly_inside = |p: &[f32; 2]| {
        edges
            .iter()
            .all(|(a, b)| (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]) > 0.0)
    };
    points
        .iter()
        .copied()
        .filter(|p| !strictly_inside(p))
        .collect()
}

/// `hull` (convex, counter-clockwise) without the vertices that lie within `tolerance` of
/// the outline left: walking round from the first vertex, each kept vertex is followed by
/// the farthest one whose chord passes within `tolerance` of every vertex it skips. The
/// result is convex and inside `hull`.
fn simplify(hull: Vec<[f32; 2]>, tolerance: f32) -> Vec<[f32; 2]> {
    let n = hull.len();
    if n <= 3 {
        return hull;
    }
    let off_chord = |a: [f32; 2], b: [f32; 2], p: [f32; 2]| {
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len = (dx * dx + dy * dy).sqrt().max(f32::MIN_POSITIVE);
        ((p[0] - a[0]) * dy - (p[1] - a[1]) * dx).abs() / len
    };
    let mut kept = vec![hull[0]];
    let mut anchor = 0;
    while anchor < n {
        // The farthest end (index, n = back at the first vertex) whose chord is close to
        // every vertex between.
        let mut end = anchor + 1;
        while end < n {
            let next = end + 1;
            let b = hull[next % n];
            if (anchor + 1..next).all(|k| off_chord(hull[anchor], b, hull[k]) <= tolerance) {
                end = next;
            } else {
                break;
            }
        }
        if end < n {
            kept.push(hull[end]);
        }
        anchor = end;
    }
    if kept.len() < 3 {
        return hull;
    }
    kept
}

/// Counter-clockwise convex hull (Andrew's monotone chain), collinear points dropped;
/// sorts `points` in place.
fn convex_hull(points: &mut [[f32; 2]]) -> Vec<[f32; 2]> {
    points.sort_unstable_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    if points.len() < 3 {
        return points.to_vec();
    }
    let cross = |o: [f32; 2], a: [f32; 2], b: [f32; 2]| {
        (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    };
    let mut hull: Vec<[f32; 2]> = Vec::with_capacity(64);
    // The lower chain left to right, then the upper one back (its first point, the last
    // of the lower chain, is already there; its last, the first point, is popped).
    for &p in points.iter() {
        while hull.len() >= 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
            hull.pop();
        }
        hull.push(p);
    }
    let lower = hull.len() + 1;
    for &p in points.iter().rev().skip(1) {
        while hull.len() >= lower && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
            hull.pop();
        }
        hull.push(p);
    }
    hull.pop();
    hull
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hull_of_a_grid_is_its_corners() {
        let mut pts: Vec<[f32; 2]> = (0..25).map(|i| [(i % 5) as f32, (i / 5) as f32]).collect();
        pts.push([2.0, 2.5]);
        let hull = convex_hull(&mut pts);
        assert_eq!(hull, vec![[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]]);
        assert_eq!(
            convex_hull(&mut [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]).len(),
            2
        );
    }

    #[test]
    fn the_octagon_filter_keeps_the_exact_hull() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        // A disc (many hull vertices), a rotated rectangle, and an axis-aligned one (its
        // corners are extremes in three directions each).
        let disc: Vec<[f32; 2]> = (0..20000)
            .map(|_| {
                let (r, t) = (rng.random::<f32>().sqrt(), rng.random::<f32>() * 6.283);
                [r * t.cos(), r * t.sin()]
            })
            .collect();
        let rect: Vec<[f32; 2]> = (0..20000)
            .map(|_| {
                let (a, b) = (rng.random::<f32>(), rng.random::<f32>() * 0.6);
                [0.8 * a - 0.6 * b, 0.6 * a + 0.8 * b]
            })
            .collect();
        let square: Vec<[f32; 2]> = (0..10000)
            .map(|i| [(i % 100) as f32 * 0.01, (i / 100) as f32 * 0.01])
            .collect();
        for pts in [disc, rect, square] {
            let kept = outside_octagon(&pts);
            assert!(
                kept.len() < pts.len() / 4,
                "{} of {}",
                kept.len(),
                pts.len()
            );
            assert_eq!(
                convex_hull(&mut kept.clone()),
                convex_hull(&mut pts.clone())
            );
        }
    }

    #[test]
    fn simplifying_drops_nearly_collinear_vertices_only() {
        // A square whose edges bow out by 1 mm through many vertices.
        let mut pts = Vec::new();
        for side in 0..4 {
            for k in 0..50 {
                let t = k as f32 / 50.0;
                let bow = 0.004 * t * (1.0 - t);
                let (x, y) = match side {
                    0 => (t, -bow),
                    1 => (1.0 + bow, t),
                    2 => (1.0 - t, 1.0 + bow),
                    _ => (-bow, 1.0 - t),
                };
                pts.push([x, y]);
            }
        }
        let hull = convex_hull(&mut pts);
        assert!(hull.len() > 100, "{}", hull.len());
        let simple = simplify(hull.clone(), 0.005);
        // The corners, and the walk's starting vertex (the leftmost, mid-edge).
        assert!((4..=5).contains(&simple.len()), "{simple:?}");
        for corner in [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]] {
            assert!(simple.contains(&corner), "{corner:?} in {simple:?}");
        }
        // At a tolerance below the bow, the bend stays.
        assert!(simplify(hull, 0.0001).len() > 8);
    }

    #[test]
    fn a_table_covers_what_stands_on_it_not_the_wall_behind() {
        // A 1 m x 0.6 m table at z = 0 (normal +z), and a tilted plane normal too.
        for normal in [Vector3::z(), Vector3::new(0.0, 0.5, 1.0).normalize()] {
            let u = normal.cross(&Vector3::x()).normalize();
            let v = normal.cross(&u);
            let at = |a: f32, b: f32, h: f32| -> [f32; 3] { (a * u + b * v + h * normal).into() };
            let points: Vec<[f32; 3]> = (0..600)
                .map(|i| at((i % 30) as f32 / 29.0, (i / 30) as f32 * 0.6 / 19.0, 0.0))
                .collect();
            let cloud = Cloud::new(points);
            let plane = Plane {
                normal,
                offset: 0.0,
                inliers: (0..600).collect(),
            };
            let hull = SupportHull::of_plane(&cloud, &plane).expect("a table has area");
            assert_eq!(hull.vertices().len(), 4);
            // A mug on the table, one hanging 1 cm over its edge, the wall 10 cm behind.
            assert!(hull.covers(&at(0.5, 0.3, 0.1), 0.0));
            assert!(!hull.covers(&at(0.5, 0.61, 0.1), 0.0));
            assert!(hull.covers(&at(0.5, 0.61, 0.1), 0.02));
            assert!(!hull.covers(&at(0.5, 0.7, 0.3), 0.02));
            assert!(!hull.covers(&at(-0.1, 0.3, 0.3), 0.02));
        }
        let line = Cloud::new((0..10).map(|i| [i as f32, 0.0, 0.0]).collect());
        let plane = Plane {
            normal: Vector3::z(),
            offset: 0.0,
            inliers: (0..10).collect(),
        };
        assert!(SupportHull::of_plane(&line, &plane).is_none());
    }
}
