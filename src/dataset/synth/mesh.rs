//! Triangle-mesh parts the synthetic categories are assembled from: surfaces of revolution
//! (`lathe`), swept tubes (`tube`, for handles, legs, fuselages), boxes, extruded outlines
//! (`prism`, for wings, blades, guitar bodies) and ellipsoids. Winding and shared vertices
//! do not matter: meshes are only surface-sampled (area-weighted).

use crate::cloud::TriMesh;
use nalgebra::{Rotation3, Vector3};
use std::f32::consts::TAU;

pub type V3 = Vector3<f32>;

pub fn v3(x: f32, y: f32, z: f32) -> V3 {
    V3::new(x, y, z)
}

/// Rotation about the x or z axis (right-handed, radians).
pub fn rot_x(a: f32) -> Rotation3<f32> {
    Rotation3::from_axis_angle(&V3::x_axis(), a)
}
pub fn rot_z(a: f32) -> Rotation3<f32> {
    Rotation3::from_axis_angle(&V3::z_axis(), a)
}

/// A triangle soup under construction.
#[derive(Debug, Clone, Default)]
pub struct Mesh {
    pub vertices: Vec<V3>,
    pub faces: Vec<[u32; 3]>,
}

impl Mesh {
    /// Appends another part (parts may overlap; they are not merged).
    pub fn add(&mut self, other: Mesh) {
        let base = self.vertices.len() as u32;
        self.vertices.extend(other.vertices);
        self.faces
            .extend(other.faces.iter().map(|f| f.map(|i| i + base)));
    }

    /// The mesh with every vertex mapped by `f`.
    pub fn map(mut self, f: impl Fn(V3) -> V3) -> Mesh {
        for p in &mut self.vertices {
            *p = f(*p);
        }
        self
    }

    /// Rotated about the origin by `r`, then translated by `t`.
    pub fn placed(self, r: Rotation3<f32>, t: V3) -> Mesh {
        self.map(|p| r * p + t)
    }

    pub fn translated(self, t: V3) -> Mesh {
        self.map(|p| p + t)
    }

    /// Axis-aligned bounding box (min, max).
    pub fn bbox(&self) -> (V3, V3) {
        let points: Vec<[f32; 3]> = self.vertices.iter().map(|v| (*v).into()).collect();
        let (lo, hi) = crate::cloud::bounds(&points);
        (V3::from(lo), V3::from(hi))
    }

    pub fn to_trimesh(&self) -> TriMesh {
        TriMesh {
            vertices: self.vertices.iter().map(|p| [p.x, p.y, p.z]).collect(),
            faces: self.faces.clone(),
        }
    }

    /// Quads between consecutive rings of equal length, each ring closed (last to first).
    /// A ring of one repeated point closes a tube or lathe with a fan.
    fn rings(rings: &[Vec<V3>]) -> Mesh {
        let mut m = Mesh::default();
        let Some(n) = rings.first().map(Vec::len) else {
            return m;
        };
        for ring in rings {
            debug_assert_eq!(ring.len(), n);
            m.vertices.extend_from_slice(ring);
        }
        for r in 0..rings.len().saturating_sub(1) {
            for j in 0..n {
                let k = (j + 1) % n;
                let (a, b) = ((r * n + j) as u32, (r * n + k) as u32);
                let (c, d) = (a + n as u32, b + n as u32);
                m.faces.push([a, b, d]);
                m.faces.push([a, d, c]);
            }
        }
        m
    }
}

/// Surface of revolution about the y axis: `profile` is (radius, y) from one end to the
/// other; start or end at radius 0 to close that end. `sides` = 4 makes a square
/// cross-section (a side faces +z when `phase` = π/4).
pub fn lathe(profile: &[(f32, f32)], sides: usize, phase: f32) -> Mesh {
    let rings: Vec<Vec<V3>> = profile
        .iter()
        .map(|&(r, y)| {
            (0..sides)
                .map(|j| {
                    let t = phase + TAU * j as f32 / sides as f32;
                    v3(r * t.sin(), y, r * t.cos())
                })
                .collect()
        })
        .collect();
    Mesh::rings(&rings)
}

/// A round lathe with enough sides for the synthetic objects' sizes.
pub fn round_lathe(profile: &[(f32, f32)]) -> Mesh {
    lathe(profile, 40, 0.0)
}

/// A circle of radius `radii[i]` swept along the polyline `path` (frames carried along the
/// path without twist), ends closed when `caps`.
pub fn tube(path: &[V3], radii: &[f32], sides: usize, caps: bool) -> Mesh {
    assert!(path.len() >= 2 && radii.len() == path.len());
    let n = path.len();
    let tangent = |i: usize| (path[(i + 1).min(n - 1)] - path[i.saturating_sub(1)]).normalize();
    let t0 = tangent(0);
    let helper = if t0.y.abs() < 0.9 { V3::y() } else { V3::x() };
    let mut normal = t0.cross(&helper).normalize();
    let mut rings = Vec::with_capacity(n + 2);
    if caps {
        rings.push(vec![path[0]; sides]);
    }
    for i in 0..n {
        let t = tangent(i);
        normal = (normal - t * t.dot(&normal)).normalize();
        let bi = t.cross(&normal);
        rings.push(
            (0..sides)
                .map(|j| {
                    let a = TAU * j as f32 / sides as f32;
                    path[i] + (normal * a.cos() + bi * a.sin()) * radii[i]
                })
                .collect(),
        );
    }
    if caps {
        rings.push(vec![path[n - 1]; sides]);
    }
    Mesh::rings(&rings)
}

/// A straight capped cylinder (a frustum when the radii differ) from `a` to `b`.
pub fn rod(a: V3, b: V3, ra: f32, rb: f32) -> Mesh {
    tube(&[a, b], &[ra, rb], 16, true)
}

/// An axis-aligned box.
pub fn cuboid(min: V3, max: V3) -> Mesh {
    let c = |i: usize| {
        v3(
            if i & 1 == 0 { min.x } else { max.x },
            if i & 2 == 0 { min.y } else { max.y },
            if i & 4 == 0 { min.z } else { max.z },
        )
    };
    const QUADS: [[u32; 4]; 6] = [
        [0, 2, 3, 1],
        [4, 5, 7, 6],
        [0, 1, 5, 4],
        [2, 6, 7, 3],
        [0, 4, 6, 2],
        [1, 3, 7, 5],
    ];
    Mesh {
        vertices: (0..8).map(c).collect(),
        faces: QUADS
            .iter()
            .flat_map(|q| [[q[0], q[1], q[2]], [q[0], q[2], q[3]]])
            .collect(),
    }
}

/// A box centred at `c` with half-extents `h`.
pub fn block(c: V3, h: V3) -> Mesh {
    cuboid(c - h, c + h)
}

/// A closed outline in the xy plane (star-shaped about `center`), extruded along z from
/// `z0` to `z1`.
pub fn prism(outline: &[[f32; 2]], center: [f32; 2], z0: f32, z1: f32) -> Mesh {
    let ring = |z: f32| outline.iter().map(|p| v3(p[0], p[1], z)).collect();
    Mesh::rings(&[
        vec![v3(center[0], center[1], z0); outline.len()],
        ring(z0),
        ring(z1),
        vec![v3(center[0], center[1], z1); outline.len()],
    ])
}

/// An ellipsoid with semi-axes `r` centred at `c`.
pub fn ellipsoid(c: V3, r: V3) -> Mesh {
    let profile: Vec<(f32, f32)> = (0..=16)
        .map(|i| {
            let a = std::f32::consts::PI * i as f32 / 16.0;
            (a.sin(), -a.cos())
        })
        .collect();
    round_lathe(&profile).map(|p| c + p.component_mul(&r))
}

/// The outline of a union of discs `(cx, cy, r)`, seen from `center` (which must lie inside
/// every disc's union so the union is star-shaped from it): `n` points, counter-clockwise.
pub fn disc_union_outline(discs: &[(f32, f32, f32)], center: [f32; 2], n: usize) -> Vec<[f32; 2]> {
    (0..n)
        .map(|i| {
            let a = TAU * i as f32 / n as f32;
            let d = [a.cos(), a.sin()];
            // Farthest exit of the ray center + t d from any disc.
            let t = discs
                .iter()
                .filter_map(|&(cx, cy, r)| {
                    let o = [center[0] - cx, center[1] - cy];
                    let b = o[0] * d[0] + o[1] * d[1];
                    let c = o[0] * o[0] + o[1] * o[1] - r * r;
                    let disc = b * b - c;
                    (disc >= 0.0).then(|| -b + disc.sqrt())
                })
                .fold(0f32, f32::max);
            [center[0] + t * d[0], center[1] + t * d[1]]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn area(m: &Mesh) -> f32 {
        m.faces
            .iter()
            .map(|f| {
                let [a, b, c] = f.map(|i| m.vertices[i as usize]);
                0.5 * (b - a).cross(&(c - a)).norm()
            })
            .sum()
    }

    #[test]
    fn synth_mesh_primitive_areas() {
        let b = cuboid(v3(0.0, 0.0, 0.0), v3(1.0, 2.0, 3.0));
        assert!((area(&b) - 22.0).abs() < 1e-5);
        // Closed unit cylinder of height 1: 2π + 2π·r² with r = 1, within faceting.
        let c = tube(
            &[v3(0.0, 0.0, 0.0), v3(0.0, 1.0, 0.0)],
            &[1.0, 1.0],
            64,
            true,
        );
        assert!((area(&c) - 2.0 * TAU).abs() < 0.05 * TAU);
        let s = ellipsoid(V3::zeros(), V3::repeat(1.0));
        assert!((area(&s) - 2.0 * TAU).abs() < 0.05 * 2.0 * TAU);
        let sq = prism(
            &[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]],
            [0.5, 0.5],
            0.0,
            1.0,
        );
        assert!((area(&sq) - 6.0).abs() < 1e-5);
        let o = disc_union_outline(&[(0.0, 0.0, 1.0), (1.5, 0.0, 0.8)], [0.7, 0.0], 90);
        assert!(o.iter().all(|p| {
            let d0 = (p[0] * p[0] + p[1] * p[1]).sqrt();
            let d1 = ((p[0] - 1.5).powi(2) + p[1] * p[1]).sqrt();
            (d0 - 1.0).abs() < 1e-4 && d1 >= 0.8 - 1e-4
                || (d1 - 0.8).abs() < 1e-4 && d0 >= 1.0 - 1e-4
        }));
    }
}
