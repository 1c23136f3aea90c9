//! **lamp** (90000005): base, stem and shade (y up, front +z; units roughly metres).
//!
//! Base: a disc (70%, radius 0.12–0.25) or a square block. Stem: straight (70%; 0.35–1.6
//! high, table to floor lamp) or a desk arm (a post leaning back, a ball joint and an arm
//! reaching forward, the shade hanging from its end). Shade: an open cone (40%), an open
//! drum (20%), a dome (25%) or none, leaving a bare bulb (15%; straight stems only — desk
//! lamps get a cone or a dome). Straight stems hold open shades by three spokes.
//!
//! | id | annotator | point | notes |
//! |----|-----------|-------|-------|
//! | 0 | A | base front edge | |
//! | 1 | A | shade top | top rim front, or the dome's apex; shade only |
//! | 2 | A | shade bottom front | lower rim, front; shade only |
//! | 3 | B | shade bottom front | 10° round the rim: close to A's; shade only |
//! | 4 | B | stem middle | |
//! | 5 | C | base bottom center | |
//! | 6 | C | bulb top | bare bulb only |
//! | 7 | D | arm joint | desk arm only |
//! | 8 | D | shade bottom back | shade only |

use super::mesh::{block, ellipsoid, rod, round_lathe, v3, V3};
use super::{chance, pick, sp, uni, Built, SemanticPoint, Targets};
use rand_chacha::ChaCha8Rng;
use std::f32::consts::{FRAC_PI_2, TAU};

pub(super) const LAMP_POINTS: &[SemanticPoint] = &[
    sp('A', "base front edge"),
    sp('A', "shade top"),
    sp('A', "shade bottom front"),
    sp('B', "shade bottom front"),
    sp('B', "stem middle"),
    sp('C', "base bottom center"),
    sp('C', "bulb top"),
    sp('D', "arm joint"),
    sp('D', "shade bottom back"),
];

const CONE: usize = 0;
const DRUM: usize = 1;
const DOME: usize = 2;
const NONE: usize = 3;

pub(super) fn lamp(rng: &mut ChaCha8Rng) -> Built {
    let mut t = Targets::new(LAMP_POINTS);
    let rb = uni(rng, 0.12, 0.25);
    let hb = uni(rng, 0.02, 0.06);
    let mut mesh = if chance(rng, 0.7) {
        round_lathe(&[
            (0.0, 0.0),
            (rb, 0.0),
            (rb, hb * 0.7),
            (rb * 0.6, hb),
            (0.0, hb),
        ])
    } else {
        block(v3(0.0, hb / 2.0, 0.0), v3(rb, hb / 2.0, rb))
    };
    t.set('A', "base front edge", v3(0.0, hb * 0.7, rb));
    t.set('C', "base bottom center", v3(0.0, 0.0, 0.0));
    let sr = uni(rng, 0.01, 0.025);
    let desk = chance(rng, 0.3);
    let mut shade = pick(rng, &[0.4, 0.2, 0.25, 0.15]);
    if desk && (shade == DRUM || shade == NONE) {
        shade = if chance(rng, 0.5) { CONE } else { DOME };
    }
    let rs = uni(rng, 0.12, 0.3);
    let hs = uni(rng, 0.15, 0.35);
    let r_top = rs * uni(rng, 0.45, 0.75);

    // The point the shade hangs from (top of its axis), and the stem's middle.
    let (apex, stem_mid) = if desk {
        let h1 = uni(rng, 0.25, 0.45);
        let elbow = v3(0.0, h1, -uni(rng, 0.0, 0.1));
        let end = v3(0.0, h1 + uni(rng, -0.05, 0.2), uni(rng, 0.2, 0.4));
        let bottom = v3(0.0, hb - 0.01, 0.0);
        mesh.add(rod(bottom, elbow, sr, sr));
        mesh.add(rod(elbow, end, sr * 0.8, sr * 0.8));
        let ball = sr * 1.8;
        mesh.add(ellipsoid(elbow, V3::repeat(ball)));
        t.set('D', "arm joint", elbow + v3(0.0, 0.0, ball));
        (end, (bottom + elbow) / 2.0)
    } else {
        let h = uni(rng, 0.35, 1.6);
        mesh.add(rod(v3(0.0, hb - 0.01, 0.0), v3(0.0, h, 0.0), sr, sr));
        (v3(0.0, h, 0.0), v3(0.0, h / 2.0, 0.0))
    };
    t.set('B', "stem middle", stem_mid + v3(0.0, 0.0, sr));

    let y_bot = match shade {
        NONE => {
            let r = uni(rng, 0.05, 0.08);
            let c = apex + v3(0.0, r * 0.9, 0.0);
            mesh.add(ellipsoid(c, v3(r, r * 1.2, r)));
            t.set('C', "bulb top", c + v3(0.0, r * 1.2, 0.0));
            None
        }
        DOME => {
            // A shell of a half ellipsoid, opening down, touching the stem at its apex.
            let hd = rs * uni(rng, 0.6, 1.0);
            let top = apex.y + 0.01;
            let profile: Vec<(f32, f32)> = (0..=10)
                .map(|i| {
                    let a = FRAC_PI_2 * i as f32 / 10.0;
                    (rs * a.cos(), top - hd + hd * a.sin())
                })
                .collect();
            mesh.add(round_lathe(&profile).translated(v3(apex.x, 0.0, apex.z)));
            t.set('A', "shade top", v3(apex.x, top, apex.z));
            Some(top - hd)
        }
        _ => {
            // Open cone or drum; desk shades are closed at the top and hang from the arm,
            // standing ones sit around the stem top held by three spokes.
            let rt = if shade == DRUM { rs } else { r_top };
            let (y_top, y_bot) = if desk {
                (apex.y + 0.01, apex.y + 0.01 - hs)
            } else {
                (apex.y + 0.3 * hs, apex.y - 0.7 * hs)
            };
            let mut profile = vec![(rs, y_bot), (rt, y_top)];
            if desk {
                profile.push((0.0, y_top));
            } else {
                let phase = uni(rng, 0.0, TAU);
                for k in 0..3 {
                    let a = phase + TAU * k as f32 / 3.0;
                    let ring = v3(rt * a.sin(), y_top, rt * a.cos());
                    mesh.add(rod(apex, ring, 0.006, 0.006));
                }
            }
            mesh.add(round_lathe(&profile).translated(v3(apex.x, 0.0, apex.z)));
            t.set('A', "shade top", v3(apex.x, y_top, apex.z + rt));
            Some(y_bot)
        }
    };
    if let Some(y) = y_bot {
        let c = v3(apex.x, y, apex.z);
        let a = 10f32.to_radians();
        t.set('A', "shade bottom front", c + v3(0.0, 0.0, rs));
        t.set(
            'B',
            "shade bottom front",
            c + v3(rs * a.sin(), 0.01, rs * a.cos()),
        );
        t.set('D', "shade bottom back", c - v3(0.0, 0.0, rs));
    }
    t.finish(mesh, vec![("shade", shade as u32), ("desk", desk as u32)])
}
