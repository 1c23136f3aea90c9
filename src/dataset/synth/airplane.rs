//! **airplane** (90000006): fuselage, wings, tail and engines (y up, nose +z; fuselage
//! length 1). Left and right are the pilot's: the left wing is at +x.
//!
//! Fuselage: a swept tube of radius 0.035–0.07 with an elliptic nose and a tail that
//! narrows and rises. Wings: extruded trapezoids, half-span 0.35–0.6, root chord
//! 0.12–0.22, taper 0.25–0.6, sweep 0–35°, dihedral −3–8°, mounted low, mid or high.
//! Engines: none (25%), one (45%) or two (30%) nacelles under each wing. Tail: a vertical
//! fin and horizontal stabilisers, at the fuselage or on top of the fin (T-tail, 25%).
//!
//! | id | annotator | point | notes |
//! |----|-----------|-------|-------|
//! | 0 | A | nose tip | |
//! | 1 | A | tail end | |
//! | 2–3 | A | left / right wing tip | middle of the tip chord; mirror pair |
//! | 4–5 | B | left / right wing tip leading edge | close to A's tips; mirror pair |
//! | 6 | B | fin top | |
//! | 7–8 | C | left / right inner engine front | engines only; mirror pair |
//! | 9–10 | C | left / right outer engine front | two engines per wing only; mirror pair |
//! | 11–12 | D | left / right stabilizer tip | mirror pair |
//! | 13 | E | cockpit | top of the fuselage behind the nose |

use super::mesh::{prism, rot_z, tube, v3, Mesh, V3};
use super::{chance, mirrored, pick, sp, uni, Built, SemanticPoint, Targets};
use rand_chacha::ChaCha8Rng;

pub(super) const AIRPLANE_POINTS: &[SemanticPoint] = &[
    sp('A', "nose tip"),
    sp('A', "tail end"),
    mirrored('A', "left wing tip", "right wing tip"),
    sp('A', "right wing tip"),
    mirrored(
        'B',
        "left wing tip leading edge",
        "right wing tip leading edge",
    ),
    sp('B', "right wing tip leading edge"),
    sp('B', "fin top"),
    mirrored('C', "left inner engine front", "right inner engine front"),
    sp('C', "right inner engine front"),
    mirrored('C', "left outer engine front", "right outer engine front"),
    sp('C', "right outer engine front"),
    mirrored('D', "left stabilizer tip", "right stabilizer tip"),
    sp('D', "right stabilizer tip"),
    sp('E', "cockpit"),
];

/// A lifting surface for the +x side: trapezoid (x = span, z = chord) with its root leading
/// edge at the origin, `thickness` thick in y, raised by `dihedral` (radians).
struct Surface {
    span: f32,
    root: f32,
    tip: f32,
    sweep: f32,
    dihedral: f32,
    thickness: f32,
}

impl Surface {
    /// Leading edge (x, y, z) at span position x, relative to the root leading edge.
    fn leading_edge(&self, x: f32) -> V3 {
        let (s, c) = self.dihedral.sin_cos();
        v3(x * c, x * s, -x * self.sweep.tan())
    }

    fn chord(&self, x: f32) -> f32 {
        self.root + (self.tip - self.root) * x / self.span
    }

    /// The +x half's mesh (the root reaches into the fuselage).
    fn mesh(&self) -> Mesh {
        let tip_le = -self.span * self.sweep.tan();
        // Outline in (x, y) = (span, chord), extruded along z, then chord -> world z and
        // thickness -> world y.
        let outline = [
            [-0.05, 0.0],
            [self.span, tip_le],
            [self.span, tip_le - self.tip],
            [-0.05, -self.root],
        ];
        let center = [
            self.span * 0.4,
            (tip_le - self.tip / 2.0 - self.root / 2.0) / 2.0,
        ];
        prism(
            &outline,
            center,
            -self.thickness / 2.0,
            self.thickness / 2.0,
        )
        .map(|p| v3(p.x, p.z, p.y))
        .placed(rot_z(self.dihedral), V3::zeros())
    }
}

pub(super) fn airplane(rng: &mut ChaCha8Rng) -> Built {
    let mut t = Targets::new(AIRPLANE_POINTS);
    let rf = uni(rng, 0.035, 0.07);
    let nose = uni(rng, 0.08, 0.18);
    let tail_len = uni(rng, 0.2, 0.3);
    let rise = rf * uni(rng, 0.2, 0.8);
    // Fuselage path from the tail (z = 0) to the nose (z = 1).
    let mut path = Vec::new();
    let mut radii = Vec::new();
    for i in 0..=30 {
        let z = i as f32 / 30.0;
        let (y, r) = if z < tail_len {
            let s = 1.0 - z / tail_len;
            (rise * s * s, rf * (1.0 - 0.8 * s))
        } else if z > 1.0 - nose {
            let s = (z - (1.0 - nose)) / nose;
            (0.0, rf * (1.0 - s * s).max(0.0).sqrt().max(0.03))
        } else {
            (0.0, rf)
        };
        path.push(v3(0.0, y, z));
        radii.push(r);
    }
    let mut mesh = tube(&path, &radii, 20, true);
    t.set('A', "nose tip", v3(0.0, 0.0, 1.0));
    t.set('A', "tail end", v3(0.0, rise, 0.0));
    t.set('E', "cockpit", v3(0.0, rf * 0.9, 1.0 - nose * 1.2));

    let wing = Surface {
        span: uni(rng, 0.35, 0.6),
        root: uni(rng, 0.12, 0.22),
        tip: 0.0,
        sweep: uni(rng, 0.0, 35.0).to_radians(),
        dihedral: uni(rng, -3.0, 8.0).to_radians(),
        thickness: 0.0,
    };
    let wing = Surface {
        tip: wing.root * uni(rng, 0.25, 0.6),
        thickness: wing.root * 0.1,
        ..wing
    };
    let root = v3(0.0, rf * uni(rng, -0.6, 0.6), uni(rng, 0.45, 0.65));
    let right = wing.mesh().translated(root);
    mesh.add(right.clone().map(|p| v3(-p.x, p.y, p.z)));
    mesh.add(right);
    let tip_le = root + wing.leading_edge(wing.span);
    let tip_mid = tip_le - v3(0.0, 0.0, wing.tip / 2.0);
    let flip = |p: V3| v3(-p.x, p.y, p.z);
    t.set('A', "left wing tip", tip_mid);
    t.set('A', "right wing tip", flip(tip_mid));
    t.set('B', "left wing tip leading edge", tip_le);
    t.set('B', "right wing tip leading edge", flip(tip_le));

    // Engines hang under the wing, sticking out ahead of its leading edge.
    let engines = pick(rng, &[0.25, 0.45, 0.3]);
    let rn = uni(rng, 0.025, 0.045);
    let ln = uni(rng, 0.1, 0.18);
    let stations = [uni(rng, 0.25, 0.4), uni(rng, 0.55, 0.7)];
    for (k, names) in [
        ("left inner engine front", "right inner engine front"),
        ("left outer engine front", "right outer engine front"),
    ]
    .iter()
    .enumerate()
    .take(engines)
    {
        let x = stations[k] * wing.span;
        let le = root + wing.leading_edge(x);
        let front = le + v3(0.0, -rn * 0.9, 0.35 * ln.min(wing.chord(x) + 0.05));
        let back = front - v3(0.0, 0.0, ln);
        let nacelle = tube(
            &[front, front.lerp(&back, 0.15), front.lerp(&back, 0.8), back],
            &[rn * 0.85, rn, rn, rn * 0.6],
            16,
            true,
        );
        mesh.add(nacelle.clone().map(flip));
        mesh.add(nacelle);
        t.set('C', names.0, front);
        t.set('C', names.1, flip(front));
    }

    // Tail: vertical fin on the raised tail, stabilisers at its root or top (T-tail).
    let fin_root = uni(rng, 0.1, 0.18);
    let fin_h = uni(rng, 0.12, 0.25);
    let fin_tip = fin_root * uni(rng, 0.4, 0.7);
    let fin_sweep = uni(rng, 20.0, 45.0).to_radians();
    let y0 = rise * 0.8;
    let (z0, z1) = (0.01, 0.01 + fin_root);
    let top_le = z1 - fin_h * fin_sweep.tan();
    let fin_outline = [
        [z1, y0],
        [top_le, y0 + fin_h],
        [top_le - fin_tip, y0 + fin_h],
        [z0, y0],
    ];
    let thick = fin_root * 0.08;
    let center = [(z0 + z1 + 2.0 * top_le - fin_tip) / 4.0, y0 + fin_h * 0.4];
    mesh.add(prism(&fin_outline, center, -thick / 2.0, thick / 2.0).map(|p| v3(p.z, p.y, p.x)));
    t.set('B', "fin top", v3(0.0, y0 + fin_h, top_le - fin_tip / 2.0));

    let stab = Surface {
        span: wing.span * uni(rng, 0.3, 0.45),
        root: uni(rng, 0.08, 0.14),
        tip: 0.0,
        sweep: uni(rng, 10.0, 40.0).to_radians(),
        dihedral: uni(rng, 0.0, 6.0).to_radians(),
        thickness: 0.0,
    };
    let stab = Surface {
        tip: stab.root * uni(rng, 0.4, 0.7),
        thickness: stab.root * 0.08,
        ..stab
    };
    let t_tail = chance(rng, 0.25);
    let stab_root = if t_tail {
        v3(0.0, y0 + fin_h, top_le + 0.01)
    } else {
        v3(0.0, rise * 0.4, 0.02 + stab.root)
    };
    let stab_mesh = stab.mesh().translated(stab_root);
    mesh.add(stab_mesh.clone().map(flip));
    mesh.add(stab_mesh);
    let stab_tip = stab_root + stab.leading_edge(stab.span) - v3(0.0, 0.0, stab.tip / 2.0);
    t.set('D', "left stabilizer tip", stab_tip);
    t.set('D', "right stabilizer tip", flip(stab_tip));

    t.finish(
        mesh,
        vec![("engines", 2 * engines as u32), ("t_tail", t_tail as u32)],
    )
}
