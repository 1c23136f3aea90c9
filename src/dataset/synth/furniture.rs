//! Furniture: chair and table, built from boxes and rods (y up, front +z, right +x; units
//! roughly metres).
//!
//! **chair** (90000003). Seat: a box 0.42–0.6 wide, 0.4–0.55 deep at 0.4–0.5 m. Back,
//! tilted 0–15°: a solid panel (55%) or a frame of two posts, a top rail and 1–3 slats.
//! Support: four corner legs (55%; round or square, sometimes splayed), three legs (two
//! front, one back centre; 15%) or an office pedestal (30%: column and 3–5 spokes with
//! casters). Arms (35%): armrests on front posts.
//!
//! | id | annotator | point | notes |
//! |----|-----------|-------|-------|
//! | 0–1 | A | seat front left / right corner | mirror pair |
//! | 2–3 | A | back top left / right corner | mirror pair |
//! | 4–5 | B | front left / right foot | legs only (not pedestal); mirror pair |
//! | 6–7 | B | back left / right foot | four legs only; mirror pair |
//! | 8 | B | back center foot | three legs only |
//! | 9 | C | column base front | pedestal only |
//! | 10 | C | seat bottom center | |
//! | 11–12 | D | left / right arm front end | arms only; mirror pair |
//! | 13 | D | seat front edge middle | |
//! | 14 | E | back top middle | |
//! | 15 | E | seat front left corner | a little inward: close to A's |
//!
//! **table** (90000004). Top 0.025–0.06 thick at 0.65–0.78 m: rectangular (45%,
//! 1.0–2.0 × 0.6–1.0), square (20%, 0.7–1.1) or round (35%, radius 0.4–0.7). Corner legs
//! (round or square) under rectangular tops and half the square ones: four, or six on
//! half of those longer than 1.6, with an apron (50%) and a lower shelf (25%). Round tops
//! stand on three (35%) or four (25%) legs, sometimes splayed, or a pedestal (40%; also
//! the other square tables): a column on a disc base (70%) or on 3–4 spokes.
//!
//! | id | annotator | point | notes |
//! |----|-----------|-------|-------|
//! | 0–3 | A | top front left / front right / back left / back right corner | not round |
//! | 4 | B | top center | |
//! | 5 | B | top front edge middle | |
//! | 6–9 | C | front left / front right / back left / back right foot | legs only |
//! | 10 | C | back center foot | three legs only |
//! | 11 | C | base disc front | disc pedestal only |
//! | 12 | D | top front left corner | on the side just below: close to A's |
//! | 13 | D | shelf center | shelf only |

use super::mesh::{block, ellipsoid, rot_x, round_lathe, tube, v3, Mesh, V3};
use super::{chance, mirrored, pick, sp, uni, Built, SemanticPoint, Targets};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::f32::consts::TAU;

/// A leg from the floor point `foot` up to `top`, round or square in section.
fn leg(foot: V3, top: V3, r: f32, square: bool) -> Mesh {
    tube(&[foot, top], &[r, r], if square { 4 } else { 12 }, true)
}

pub(super) const CHAIR_POINTS: &[SemanticPoint] = &[
    mirrored('A', "seat front left corner", "seat front right corner"),
    sp('A', "seat front right corner"),
    mirrored('A', "back top left corner", "back top right corner"),
    sp('A', "back top right corner"),
    mirrored('B', "front left foot", "front right foot"),
    sp('B', "front right foot"),
    mirrored('B', "back left foot", "back right foot"),
    sp('B', "back right foot"),
    sp('B', "back center foot"),
    sp('C', "column base front"),
    sp('C', "seat bottom center"),
    mirrored('D', "left arm front end", "right arm front end"),
    sp('D', "right arm front end"),
    sp('D', "seat front edge middle"),
    sp('E', "back top middle"),
    sp('E', "seat front left corner"),
];

pub(super) fn chair(rng: &mut ChaCha8Rng) -> Built {
    let mut t = Targets::new(CHAIR_POINTS);
    let w = uni(rng, 0.42, 0.6);
    let d = uni(rng, 0.4, 0.55);
    let hs = uni(rng, 0.4, 0.5);
    let ts = uni(rng, 0.03, 0.08);
    let mut mesh = block(v3(0.0, hs - ts / 2.0, 0.0), v3(w / 2.0, ts / 2.0, d / 2.0));
    t.set('A', "seat front left corner", v3(-w / 2.0, hs, d / 2.0));
    t.set('A', "seat front right corner", v3(w / 2.0, hs, d / 2.0));
    t.set(
        'E',
        "seat front left corner",
        v3(-w / 2.0 + 0.04, hs, d / 2.0 - 0.04),
    );
    t.set('D', "seat front edge middle", v3(0.0, hs, d / 2.0));
    t.set('C', "seat bottom center", v3(0.0, hs - ts, 0.0));

    // Back, in a frame at the seat's back edge tilted backwards about x.
    let hb = uni(rng, 0.3, 0.6);
    let tb = uni(rng, 0.025, 0.05);
    let bw = w * uni(rng, 0.85, 1.0);
    let tilt = uni(rng, 0.0, 15.0).to_radians();
    let (rot, origin) = (rot_x(-tilt), v3(0.0, hs, -d / 2.0 + tb / 2.0));
    let solid = chance(rng, 0.55);
    let mut back = Mesh::default();
    let slats = if solid {
        back.add(block(
            v3(0.0, (hb - ts) / 2.0, 0.0),
            v3(bw / 2.0, (hb + ts) / 2.0, tb / 2.0),
        ));
        0
    } else {
        let post = 0.02;
        let rail = uni(rng, 0.04, 0.1);
        for sx in [-1.0, 1.0] {
            back.add(block(
                v3(sx * (bw / 2.0 - post), (hb - ts) / 2.0, 0.0),
                v3(post, (hb + ts) / 2.0, tb / 2.0),
            ));
        }
        back.add(block(
            v3(0.0, hb - rail / 2.0, 0.0),
            v3(bw / 2.0, rail / 2.0, tb / 2.0),
        ));
        let n = rng.random_range(1..=3u32);
        for k in 0..n {
            let y = 0.12 * hb + (hb - rail - 0.12 * hb) * k as f32 / n as f32;
            back.add(block(v3(0.0, y, 0.0), v3(bw / 2.0 - post, 0.02, tb / 3.0)));
        }
        n
    };
    mesh.add(back.placed(rot, origin));
    let at_back = |p: V3| rot * p + origin;
    t.set('A', "back top left corner", at_back(v3(-bw / 2.0, hb, 0.0)));
    t.set('A', "back top right corner", at_back(v3(bw / 2.0, hb, 0.0)));
    t.set('E', "back top middle", at_back(v3(0.0, hb, 0.0)));

    // Support.
    let layout = pick(rng, &[0.55, 0.15, 0.3]);
    let under = hs - ts + 0.01;
    let legs = if layout < 2 {
        let inset = uni(rng, 0.02, 0.05);
        let r = uni(rng, 0.012, 0.025);
        let square = chance(rng, 0.4);
        let splay = if chance(rng, 0.4) {
            uni(rng, 0.01, 0.04)
        } else {
            0.0
        };
        let (x, z) = (w / 2.0 - inset, d / 2.0 - inset);
        let mut feet = vec![("front left foot", -x, z), ("front right foot", x, z)];
        if layout == 0 {
            feet.extend([("back left foot", -x, -z), ("back right foot", x, -z)]);
        } else {
            feet.push(("back center foot", 0.0, -z));
        }
        for &(name, fx, fz) in &feet {
            let out = v3(fx, 0.0, fz).normalize() * splay;
            let foot = v3(fx, 0.0, fz) + out;
            mesh.add(leg(foot, v3(fx, under, fz), r, square));
            t.set('B', name, foot);
        }
        feet.len() as u32
    } else {
        let col = uni(rng, 0.02, 0.035);
        let spokes = rng.random_range(3..=5u32);
        let reach = uni(rng, 0.24, 0.32);
        let hub = 0.08;
        mesh.add(tube(
            &[v3(0.0, hub - 0.03, 0.0), v3(0.0, under, 0.0)],
            &[col * 1.4, col],
            16,
            true,
        ));
        let phase = uni(rng, 0.0, TAU);
        for k in 0..spokes {
            let a = phase + TAU * k as f32 / spokes as f32;
            let tip = v3(reach * a.cos(), 0.05, reach * a.sin());
            mesh.add(tube(&[v3(0.0, hub, 0.0), tip], &[0.025, 0.015], 10, true));
            mesh.add(ellipsoid(tip - v3(0.0, 0.025, 0.0), V3::repeat(0.025)));
        }
        t.set('C', "column base front", v3(0.0, hub + 0.05, col * 1.2));
        spokes
    };

    let arms = chance(rng, 0.35);
    if arms {
        let ha = hs + uni(rng, 0.18, 0.25);
        let zf = d / 2.0 - uni(rng, 0.0, 0.06);
        let zb = -d / 2.0 - 0.02;
        for (sx, name) in [(-1.0, "left arm front end"), (1.0, "right arm front end")] {
            let x = sx * (w / 2.0 + 0.015);
            mesh.add(block(
                v3(x, ha - 0.015, (zf + zb) / 2.0),
                v3(0.025, 0.015, (zf - zb) / 2.0),
            ));
            mesh.add(tube(
                &[v3(x, hs - ts / 2.0, zf - 0.04), v3(x, ha - 0.01, zf - 0.04)],
                &[0.012, 0.012],
                10,
                true,
            ));
            t.set('D', name, v3(x, ha, zf));
        }
    }
    t.finish(
        mesh,
        vec![
            ("legs", legs),
            ("pedestal", (layout == 2) as u32),
            ("arms", arms as u32),
            ("slats", slats),
        ],
    )
}

pub(super) const TABLE_POINTS: &[SemanticPoint] = &[
    mirrored('A', "top front left corner", "top front right corner"),
    sp('A', "top front right corner"),
    mirrored('A', "top back left corner", "top back right corner"),
    sp('A', "top back right corner"),
    sp('B', "top center"),
    sp('B', "top front edge middle"),
    mirrored('C', "front left foot", "front right foot"),
    sp('C', "front right foot"),
    mirrored('C', "back left foot", "back right foot"),
    sp('C', "back right foot"),
    sp('C', "back center foot"),
    sp('C', "base disc front"),
    sp('D', "top front left corner"),
    sp('D', "shelf center"),
];

pub(super) fn table(rng: &mut ChaCha8Rng) -> Built {
    let mut t = Targets::new(TABLE_POINTS);
    let h = uni(rng, 0.65, 0.78);
    let tt = uni(rng, 0.025, 0.06);
    let under = h - tt + 0.01;
    t.set('B', "top center", v3(0.0, h, 0.0));

    // Top: rectangular, square or round; (w, d) is its extent (the round top's diameter).
    let style = pick(rng, &[0.45, 0.2, 0.35]);
    let round = style == 2;
    let (w, d) = match style {
        0 => (uni(rng, 1.0, 2.0), uni(rng, 0.6, 1.0)),
        1 => {
            let s = uni(rng, 0.7, 1.1);
            (s, s)
        }
        _ => {
            let s = 2.0 * uni(rng, 0.4, 0.7);
            (s, s)
        }
    };
    let mut mesh = if round {
        round_lathe(&[(0.0, h - tt), (w / 2.0, h - tt), (w / 2.0, h), (0.0, h)])
    } else {
        for (name, sx, sz) in [
            ("top front left corner", -1.0, 1.0),
            ("top front right corner", 1.0, 1.0),
            ("top back left corner", -1.0, -1.0),
            ("top back right corner", 1.0, -1.0),
        ] {
            t.set('A', name, v3(sx * w / 2.0, h, sz * d / 2.0));
        }
        t.set(
            'D',
            "top front left corner",
            v3(-w / 2.0 + 0.03, h - tt / 2.0, d / 2.0),
        );
        block(v3(0.0, h - tt / 2.0, 0.0), v3(w / 2.0, tt / 2.0, d / 2.0))
    };
    t.set('B', "top front edge middle", v3(0.0, h, d / 2.0));

    // Support: corner legs (rectangular, half the square tables), a pedestal (the other
    // square tables, 40% of round ones) or three or four legs under a round top.
    let support = match style {
        0 => 0,
        1 => pick(rng, &[0.5, 0.0, 0.0, 0.5]),
        _ => 1 + pick(rng, &[0.35, 0.25, 0.4]),
    };
    let legs = match support {
        0 => {
            let inset = uni(rng, 0.03, 0.1);
            let r = uni(rng, 0.02, 0.04);
            let square = chance(rng, 0.5);
            let (x, z) = (w / 2.0 - inset, d / 2.0 - inset);
            let six = w > 1.6 && chance(rng, 0.5);
            let mut feet = vec![
                (Some("front left foot"), -x, z),
                (Some("front right foot"), x, z),
                (Some("back left foot"), -x, -z),
                (Some("back right foot"), x, -z),
            ];
            if six {
                feet.extend([(None, 0.0, z), (None, 0.0, -z)]);
            }
            for &(name, fx, fz) in &feet {
                mesh.add(leg(v3(fx, 0.0, fz), v3(fx, under, fz), r, square));
                if let Some(name) = name {
                    t.set('C', name, v3(fx, 0.0, fz));
                }
            }
            if chance(rng, 0.5) {
                // Apron: boards under the top between the legs.
                let ah = uni(rng, 0.06, 0.1);
                let y = h - tt - ah / 2.0 + 0.005;
                mesh.add(block(v3(0.0, y, z), v3(x, ah / 2.0, 0.01)));
                mesh.add(block(v3(0.0, y, -z), v3(x, ah / 2.0, 0.01)));
                mesh.add(block(v3(x, y, 0.0), v3(0.01, ah / 2.0, z)));
                mesh.add(block(v3(-x, y, 0.0), v3(0.01, ah / 2.0, z)));
            }
            if chance(rng, 0.25) {
                let y = uni(rng, 0.12, 0.25);
                mesh.add(block(v3(0.0, y, 0.0), v3(x, 0.01, z)));
                t.set('D', "shelf center", v3(0.0, y + 0.01, 0.0));
            }
            feet.len() as u32
        }
        1 | 2 => {
            let n = support as u32 + 2;
            let r = uni(rng, 0.02, 0.035);
            let rho = w / 2.0 * uni(rng, 0.6, 0.8);
            let splay = if chance(rng, 0.5) {
                uni(rng, 1.0, 1.2)
            } else {
                1.0
            };
            let angles: &[(f32, &str)] = if n == 3 {
                &[
                    (30.0, "front right foot"),
                    (150.0, "front left foot"),
                    (270.0, "back center foot"),
                ]
            } else {
                &[
                    (45.0, "front right foot"),
                    (135.0, "front left foot"),
                    (225.0, "back left foot"),
                    (315.0, "back right foot"),
                ]
            };
            for &(deg, name) in angles {
                let a = deg.to_radians();
                let dir = v3(a.cos(), 0.0, a.sin());
                let foot = dir * rho * splay;
                mesh.add(leg(foot, dir * rho + v3(0.0, under, 0.0), r, false));
                t.set('C', name, foot);
            }
            n
        }
        _ => {
            // Pedestal: a column on a disc base or on 3-4 spokes.
            let col = uni(rng, 0.04, 0.08);
            mesh.add(tube(
                &[v3(0.0, 0.02, 0.0), v3(0.0, under, 0.0)],
                &[col, col],
                20,
                false,
            ));
            if chance(rng, 0.7) {
                let rb = w / 2.0 * uni(rng, 0.5, 0.8);
                let hb = uni(rng, 0.02, 0.05);
                mesh.add(round_lathe(&[
                    (0.0, 0.0),
                    (rb, 0.0),
                    (rb, hb),
                    (col, hb + 0.03),
                    (0.0, hb + 0.03),
                ]));
                t.set('C', "base disc front", v3(0.0, hb / 2.0, rb));
            } else {
                let n = rng.random_range(3..=4u32);
                let reach = w / 2.0 * uni(rng, 0.5, 0.75);
                for k in 0..n {
                    let a = TAU * (k as f32 + 0.5) / n as f32;
                    let tip = v3(reach * a.cos(), 0.02, reach * a.sin());
                    mesh.add(tube(&[v3(0.0, 0.06, 0.0), tip], &[0.03, 0.02], 10, true));
                }
            }
            1
        }
    };
    t.finish(mesh, vec![("legs", legs), ("round", round as u32)])
}
