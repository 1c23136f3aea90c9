//! Vessels: mug and bottle, built around surfaces of revolution (y up, front +z, right +x).
//!
//! **mug** (90000001). Body: a walled cup (outer wall, rim, inner wall, inner bottom),
//! bottom radius 1, top radius 0.85–1.25, height 1.4–3.0 (espresso cup to tall mug).
//! Handle (75%): a tube on the right (+x), round or squared loop, joints at 65–88% and
//! 12–35% of the height, reach 0.45–0.9, thickness 0.07–0.13.
//!
//! | id | annotator | point | notes |
//! |----|-----------|-------|-------|
//! | 0 | A | rim front | top of the rim, +z |
//! | 1 | A | rim back | |
//! | 2 | A | handle top | upper part of the loop; handle only |
//! | 3 | A | handle bottom | lower part of the loop; handle only |
//! | 4 | B | rim front | just below the rim on the outside: close to A's |
//! | 5 | B | handle upper joint | close to A's handle top; handle only |
//! | 6 | B | handle outermost | handle only |
//! | 7 | C | bottom center | unique |
//! | 8 | C | rim left | |
//! | 9 | C | rim right | handle side |
//! | 10 | D | inner bottom center | inside, a wall's thickness above C's bottom center |
//! | 11 | D | body front middle | |
//!
//! **bottle** (90000002). Body radius 1 (round, or square 20%), height 1.8–4.0; shoulder
//! round or conical, 0.4–1.4 high; neck radius 0.25–0.5, 0.3–1.2 long. Cap (55%): a wider
//! cylinder over the neck top. Lip ring (half the uncapped bottles).
//!
//! | id | annotator | point | notes |
//! |----|-----------|-------|-------|
//! | 0 | A | bottom center | |
//! | 1 | A | top center | cap top when capped |
//! | 2 | A | shoulder front | where the shoulder leaves the body |
//! | 3 | B | top front | on the top face toward the front: close to A's top center |
//! | 4 | B | neck base front | |
//! | 5 | B | cap bottom front | cap only |
//! | 6 | C | base front | |
//! | 7 | C | base back | |
//! | 8 | C | base left | mirrors base right |
//! | 9 | C | base right | |
//! | 10 | D | lip front | lip only |
//! | 11 | D | body front middle | |

use super::mesh::{lathe, round_lathe, tube, v3};
use super::{chance, mirrored, sp, uni, Built, SemanticPoint, Targets};
use rand_chacha::ChaCha8Rng;
use std::f32::consts::{FRAC_PI_2, FRAC_PI_4, PI};

pub(super) const MUG_POINTS: &[SemanticPoint] = &[
    sp('A', "rim front"),
    sp('A', "rim back"),
    sp('A', "handle top"),
    sp('A', "handle bottom"),
    sp('B', "rim front"),
    sp('B', "handle upper joint"),
    sp('B', "handle outermost"),
    sp('C', "bottom center"),
    sp('C', "rim left"),
    sp('C', "rim right"),
    sp('D', "inner bottom center"),
    sp('D', "body front middle"),
];

pub(super) fn mug(rng: &mut ChaCha8Rng) -> Built {
    let mut t = Targets::new(MUG_POINTS);
    let rb = 1.0f32;
    let rt = uni(rng, 0.85, 1.25);
    let h = uni(rng, 1.4, 3.0);
    let wall = 0.08 * rb.max(rt);
    let floor = 0.12;
    let r_out = |y: f32| rb + (rt - rb) * y / h;
    let mut mesh = round_lathe(&[
        (0.0, 0.0),
        (rb - 0.06, 0.0),
        (r_out(0.06), 0.06),
        (rt, h),
        (rt - wall, h),
        (r_out(floor) - wall, floor),
        (0.0, floor),
    ]);
    let rim = rt - wall / 2.0;
    t.set('A', "rim front", v3(0.0, h, rim));
    t.set('A', "rim back", v3(0.0, h, -rim));
    t.set('B', "rim front", v3(0.0, h - 0.12, r_out(h - 0.12)));
    t.set('C', "bottom center", v3(0.0, 0.0, 0.0));
    t.set('C', "rim left", v3(-rim, h, 0.0));
    t.set('C', "rim right", v3(rim, h, 0.0));
    t.set('D', "inner bottom center", v3(0.0, floor, 0.0));
    t.set('D', "body front middle", v3(0.0, h / 2.0, r_out(h / 2.0)));

    let has_handle = chance(rng, 0.75);
    if has_handle {
        let y_top = h * uni(rng, 0.65, 0.88);
        let y_bot = h * uni(rng, 0.12, 0.35);
        let reach = uni(rng, 0.45, 0.9);
        let hr = uni(rng, 0.07, 0.13);
        // Round loops bulge like a half ellipse; squared ones rise fast and stay out.
        let exponent = if chance(rng, 0.6) { 1.0 } else { 0.4 };
        let at = |s: f32| {
            let y = y_top + (y_bot - y_top) * (1.0 - (PI * s).cos()) / 2.0;
            let x = r_out(y) - 0.5 * hr + reach * (PI * s).sin().max(0.0).powf(exponent);
            v3(x, y, 0.0)
        };
        let path: Vec<_> = (0..=32).map(|i| at(i as f32 / 32.0)).collect();
        mesh.add(tube(&path, &vec![hr; path.len()], 16, false));
        let up = v3(0.0, hr, 0.0);
        t.set('A', "handle top", at(0.14) + up);
        t.set('A', "handle bottom", at(0.86) - up);
        t.set('B', "handle upper joint", at(0.04) + up);
        t.set('B', "handle outermost", at(0.5) + v3(hr, 0.0, 0.0));
    }
    t.finish(mesh, vec![("handle", has_handle as u32)])
}

pub(super) const BOTTLE_POINTS: &[SemanticPoint] = &[
    sp('A', "bottom center"),
    sp('A', "top center"),
    sp('A', "shoulder front"),
    sp('B', "top front"),
    sp('B', "neck base front"),
    sp('B', "cap bottom front"),
    sp('C', "base front"),
    sp('C', "base back"),
    mirrored('C', "base left", "base right"),
    sp('C', "base right"),
    sp('D', "lip front"),
    sp('D', "body front middle"),
];

pub(super) fn bottle(rng: &mut ChaCha8Rng) -> Built {
    let mut t = Targets::new(BOTTLE_POINTS);
    let r = 1.0f32;
    let square = chance(rng, 0.2);
    let body_h = uni(rng, 1.8, 4.0);
    let shoulder_h = uni(rng, 0.4, 1.4);
    let rn = uni(rng, 0.25, 0.5);
    let neck_h = uni(rng, 0.3, 1.2);
    let round_shoulder = chance(rng, 0.5);
    // Square bottles: a 4-sided lathe whose faces (not corners) are at distance r.
    let (sides, phase, corner) = if square {
        (4, FRAC_PI_4, 1.0 / FRAC_PI_4.cos())
    } else {
        (40, 0.0, 1.0)
    };
    let neck_y = body_h + shoulder_h;
    let mut profile = vec![(0.0, 0.0), ((r - 0.08) * corner, 0.0), (r * corner, 0.08)];
    profile.push((r * corner, body_h));
    for k in 1..=6 {
        let s = k as f32 / 6.0;
        let (f, y) = if round_shoulder {
            ((s * FRAC_PI_2).cos(), (s * FRAC_PI_2).sin())
        } else {
            (1.0 - s, s)
        };
        profile.push(((rn + (r - rn) * f) * corner, body_h + shoulder_h * y));
    }
    profile.push((0.0, neck_y));
    let mut mesh = lathe(&profile, sides, phase);

    let top = neck_y + neck_h;
    let has_cap = chance(rng, 0.55);
    let has_lip = !has_cap && chance(rng, 0.5);
    let lip_h = 0.08 + 0.1 * rn;
    let rl = rn * 1.18;
    let mut neck = vec![(rn, neck_y - 0.05)];
    if has_lip {
        neck.extend([(rn, top - lip_h), (rl, top - lip_h), (rl, top), (0.0, top)]);
        t.set('D', "lip front", v3(0.0, top - lip_h / 2.0, rl));
    } else {
        neck.extend([(rn, top), (0.0, top)]);
    }
    mesh.add(round_lathe(&neck));
    let (top_all, r_top) = if has_cap {
        let rc = rn * uni(rng, 1.1, 1.3);
        let hc = uni(rng, 0.3, 0.7);
        let (y0, y1) = (top - 0.6 * hc, top + 0.4 * hc);
        mesh.add(round_lathe(&[(rn, y0), (rc, y0), (rc, y1), (0.0, y1)]));
        t.set('B', "cap bottom front", v3(0.0, y0 + 0.04, rc));
        (y1, rc)
    } else {
        (top, if has_lip { rl } else { rn })
    };
    t.set('A', "bottom center", v3(0.0, 0.0, 0.0));
    t.set('A', "top center", v3(0.0, top_all, 0.0));
    t.set('A', "shoulder front", v3(0.0, body_h, r));
    t.set('B', "top front", v3(0.0, top_all, 0.6 * r_top));
    t.set('B', "neck base front", v3(0.0, neck_y, rn));
    t.set('C', "base front", v3(0.0, 0.12, r));
    t.set('C', "base back", v3(0.0, 0.12, -r));
    t.set('C', "base left", v3(-r, 0.12, 0.0));
    t.set('C', "base right", v3(r, 0.12, 0.0));
    t.set('D', "body front middle", v3(0.0, body_h / 2.0, r));
    t.finish(
        mesh,
        vec![
            ("square", square as u32),
            ("cap", has_cap as u32),
            ("lip", has_lip as u32),
        ],
    )
}
