//! Flat objects built from extruded outlines: knife and guitar (y up, front +z, right +x
//! as seen from the front).
//!
//! **knife** (90000007): blade along +x (tip at +x, edge down, spine up), length 1, height
//! 0.12–0.3; chef (35%: edge curving up to a high tip), dagger (20%: double-edged,
//! symmetric), cleaver (20%: tall rectangle) or utility (25%: straight edge, clipped tip).
//! Handle: an oval tube 0.4–0.8 long along −x. Guard (50%): a crossbar at the heel.
//! Pommel (30%): a knob at the handle's end. Single views (`synth --partial`) show it as it
//! rests on a table, lying on its side: front (+z) up, or back up at random (the trait
//! `face_up`); complete clouds show it standing on its edge.
//!
//! | id | annotator | point | notes |
//! |----|-----------|-------|-------|
//! | 0 | A | blade tip | |
//! | 1 | A | handle end | pommel end when present |
//! | 2 | A | blade heel | edge end at the handle |
//! | 3 | B | blade tip | a little back along the spine: close to A's |
//! | 4 | B | spine start | top of the blade at the handle |
//! | 5 | C | guard top | guard only |
//! | 6 | C | guard bottom | guard only |
//! | 7 | D | pommel top | pommel only |
//! | 8 | D | handle middle top | |
//!
//! **guitar** (90000008), standing with the neck up and the top (front) facing +z. Body:
//! the outline of two overlapping discs (lower bout radius 1, upper 0.65–0.85, 0.9–1.2
//! apart) extruded 0.3–0.4 thick (acoustic, 60%) or 0.1–0.15 (electric); a cutaway notch in
//! the upper right bout (70% of electric, 20% of acoustic guitars). Neck: a bar 1.4–1.9
//! long; headstock straight or tilted back, tuning pegs 3+3 or 2+2 on both sides (60%) or
//! 6 or 4 in line on the right. Bridge: a block on the top.
//!
//! | id | annotator | point | notes |
//! |----|-----------|-------|-------|
//! | 0 | A | headstock top | middle of the top edge |
//! | 1 | A | body bottom | |
//! | 2 | A | neck joint front | where the neck meets the body's top |
//! | 3 | B | headstock top | top corner (right): close to A's |
//! | 4 | B | bridge center | |
//! | 5–6 | C | upper bout left / right | right is absent with a cutaway; mirror pair |
//! | 7–8 | C | lower bout left / right | mirror pair |
//! | 9–10 | C | waist left / right | mirror pair |
//! | 11 | D | cutaway | deepest point of the notch; cutaway only |
//! | 12 | D | left top peg | tip of the top peg on the left; two-sided headstocks only |

use super::mesh::{block, disc_union_outline, ellipsoid, prism, rod, rot_x, tube, v3, V3};
use super::{chance, mirrored, pick, sp, uni, Built, SemanticPoint, Targets};
use rand_chacha::ChaCha8Rng;
use std::f32::consts::PI;

pub(super) const KNIFE_POINTS: &[SemanticPoint] = &[
    sp('A', "blade tip"),
    sp('A', "handle end"),
    sp('A', "blade heel"),
    sp('B', "blade tip"),
    sp('B', "spine start"),
    sp('C', "guard top"),
    sp('C', "guard bottom"),
    sp('D', "pommel top"),
    sp('D', "handle middle top"),
];

pub(super) fn knife(rng: &mut ChaCha8Rng) -> Built {
    let mut t = Targets::new(KNIFE_POINTS);
    let bl = 1.0f32;
    let style = pick(rng, &[0.35, 0.2, 0.2, 0.25]);
    let bh = uni(rng, 0.12, 0.3) * if style == 2 { 1.6 } else { 1.0 };
    // Outline counter-clockwise from the heel's edge end; `tip` indexes the tip vertex.
    let (outline, tip): (Vec<[f32; 2]>, usize) = match style {
        0 => {
            // Chef: straight edge, then rising in a curve to a tip near the spine.
            let mut o = vec![[0.0, 0.0], [0.55 * bl, 0.0]];
            for k in 1..=6 {
                let a = k as f32 / 6.0 * PI / 2.0;
                o.push([0.55 * bl + 0.45 * bl * a.sin(), 0.7 * bh * (1.0 - a.cos())]);
            }
            let tip = o.len() - 1;
            o.push([0.0, bh]);
            (o, tip)
        }
        1 => (
            vec![
                [0.0, 0.0],
                [0.8 * bl, 0.15 * bh],
                [bl, 0.5 * bh],
                [0.8 * bl, 0.85 * bh],
                [0.0, bh],
            ],
            2,
        ),
        2 => (
            vec![
                [0.0, 0.0],
                [bl, 0.0],
                [bl, 0.9 * bh],
                [0.95 * bl, bh],
                [0.0, bh],
            ],
            1,
        ),
        _ => (
            vec![
                [0.0, 0.0],
                [0.85 * bl, 0.0],
                [bl, 0.35 * bh],
                [0.75 * bl, 0.8 * bh],
                [0.0, bh],
            ],
            2,
        ),
    };
    let thick = uni(rng, 0.008, 0.016);
    let center = [0.4 * bl, 0.45 * bh];
    let mut mesh = prism(&outline, center, -thick / 2.0, thick / 2.0);
    let p = |q: [f32; 2]| v3(q[0], q[1], 0.0);
    let tip_p = p(outline[tip]);
    // B's tip: 6% of the blade length back along the spine side of the tip.
    let after = p(outline[tip + 1]);
    t.set('A', "blade tip", tip_p);
    t.set(
        'B',
        "blade tip",
        tip_p + (after - tip_p).normalize() * 0.06 * bl,
    );
    t.set('A', "blade heel", v3(0.02, 0.0, 0.0));
    t.set('B', "spine start", v3(0.02, bh, 0.0));

    let hl = uni(rng, 0.4, 0.8) * bl;
    let hr = uni(rng, 0.035, 0.06);
    let yh = if style == 1 {
        0.5 * bh
    } else {
        0.6 * bh.min(0.3)
    };
    let handle = tube(
        &[
            v3(0.03, yh, 0.0),
            v3(-0.3 * hl, yh, 0.0),
            v3(-0.7 * hl, yh, 0.0),
            v3(-hl, yh, 0.0),
        ],
        &[hr * 0.9, hr, hr * 1.05, hr * 0.95],
        14,
        true,
    )
    .map(|q| v3(q.x, q.y, q.z * 0.7));
    mesh.add(handle);
    t.set('D', "handle middle top", v3(-hl / 2.0, yh + hr, 0.0));
    let guard = chance(rng, 0.5);
    if guard {
        let gh = uni(rng, 0.03, 0.1);
        let lo = (yh - hr).min(0.0) - gh;
        let hi = (yh + hr).max(bh) + gh;
        mesh.add(block(
            v3(-0.015, (lo + hi) / 2.0, 0.0),
            v3(0.015, (hi - lo) / 2.0, 0.04),
        ));
        t.set('C', "guard top", v3(-0.015, hi, 0.0));
        t.set('C', "guard bottom", v3(-0.015, lo, 0.0));
    }
    let pommel = chance(rng, 0.3);
    let end = if pommel {
        let rp = hr * 1.3;
        mesh.add(ellipsoid(v3(-hl - 0.5 * rp, yh, 0.0), V3::repeat(rp)));
        t.set('D', "pommel top", v3(-hl - 0.5 * rp, yh + rp, 0.0));
        -hl - 1.5 * rp
    } else {
        -hl
    };
    t.set('A', "handle end", v3(end, yh, 0.0));
    t.finish(
        mesh,
        vec![
            ("style", style as u32),
            ("guard", guard as u32),
            ("pommel", pommel as u32),
        ],
    )
}

pub(super) const GUITAR_POINTS: &[SemanticPoint] = &[
    sp('A', "headstock top"),
    sp('A', "body bottom"),
    sp('A', "neck joint front"),
    sp('B', "headstock top"),
    sp('B', "bridge center"),
    mirrored('C', "upper bout left", "upper bout right"),
    sp('C', "upper bout right"),
    mirrored('C', "lower bout left", "lower bout right"),
    sp('C', "lower bout right"),
    mirrored('C', "waist left", "waist right"),
    sp('C', "waist right"),
    sp('D', "cutaway"),
    sp('D', "left top peg"),
];

pub(super) fn guitar(rng: &mut ChaCha8Rng) -> Built {
    let mut t = Targets::new(GUITAR_POINTS);
    let r1 = 1.0f32;
    let r2 = r1 * uni(rng, 0.65, 0.85);
    let (c1, c2) = (r1, r1 + r1 * uni(rng, 0.9, 1.2));
    let electric = chance(rng, 0.4);
    let cutaway = chance(rng, if electric { 0.7 } else { 0.2 });
    let thick = if electric {
        uni(rng, 0.1, 0.15)
    } else {
        uni(rng, 0.3, 0.4)
    };
    // Fan centre inside both discs, so their union is star-shaped from it.
    let center = [0.0, ((c2 - r2) + (c1 + r1)) / 2.0];
    let mut outline = disc_union_outline(&[(0.0, c1, r1), (0.0, c2, r2)], center, 96);
    // The cutaway notch: pull the upper right bout in, smoothly, between angles a0..a1
    // (seen from the fan centre).
    let (a0, a1) = (10f32.to_radians(), 75f32.to_radians());
    let depth = uni(rng, 0.25, 0.4);
    let mut notch = None;
    if cutaway {
        for q in &mut outline {
            let (dx, dy) = (q[0] - center[0], q[1] - center[1]);
            let a = dy.atan2(dx);
            if a > a0 && a < a1 {
                let s = ((a - a0) / (a1 - a0) * PI).sin();
                let k = 1.0 - depth * s * s;
                *q = [center[0] + dx * k, center[1] + dy * k];
            }
        }
        let a = (a0 + a1) / 2.0;
        let deepest = outline
            .iter()
            .min_by(|p, q| {
                let ap = (p[1] - center[1]).atan2(p[0] - center[0]);
                let aq = (q[1] - center[1]).atan2(q[0] - center[0]);
                (ap - a).abs().total_cmp(&(aq - a).abs())
            })
            .copied()
            .expect("outline has points");
        notch = Some(v3(deepest[0], deepest[1], 0.0));
    }
    let mut mesh = prism(&outline, center, -thick / 2.0, thick / 2.0);
    let front = thick / 2.0;

    // Neck, flush with the top, and the headstock above it.
    let body_top = c2 + r2;
    let nl = r1 * uni(rng, 1.4, 1.9);
    let nw = r1 * uni(rng, 0.14, 0.2);
    let nt = 0.08 * r1;
    let (y0, y1) = (body_top - 0.3 * r2, body_top + nl);
    mesh.add(block(
        v3(0.0, (y0 + y1) / 2.0, front - nt / 2.0),
        v3(nw / 2.0, (y1 - y0) / 2.0, nt / 2.0),
    ));
    t.set('A', "neck joint front", v3(0.0, body_top, front));
    let hh = r1 * uni(rng, 0.35, 0.5);
    let hw = nw * uni(rng, 1.3, 1.8);
    let ht = nt * 0.8;
    let tilt = if chance(rng, 0.5) {
        uni(rng, 8.0, 15.0).to_radians()
    } else {
        0.0
    };
    // Headstock frame: origin at the neck's top centre, tilted back about x.
    let (rot, origin) = (rot_x(-tilt), v3(0.0, y1 - 0.02, front - nt / 2.0));
    let head = |p: V3| rot * p + origin;
    let mut headstock = block(v3(0.0, hh / 2.0, 0.0), v3(hw / 2.0, hh / 2.0, ht / 2.0));
    let two_sided = chance(rng, 0.6);
    let per_side = if chance(rng, 0.8) { 3 } else { 2 };
    let peg_len = 0.1 * r1;
    let mut peg_tip = None;
    for k in 0..per_side * if two_sided { 1 } else { 2 } {
        let y = hh * (0.2 + 0.7 * k as f32 / (per_side * if two_sided { 1 } else { 2 }) as f32);
        let sides: &[f32] = if two_sided { &[-1.0, 1.0] } else { &[1.0] };
        for &sx in sides {
            let a = v3(sx * hw / 2.0 - sx * 0.01, y, 0.0);
            let b = a + v3(sx * peg_len, 0.0, 0.0);
            headstock.add(rod(a, b, 0.02, 0.02));
            if sx < 0.0 {
                peg_tip = Some(b);
            }
        }
    }
    mesh.add(headstock.placed(rot, origin));
    t.set('A', "headstock top", head(v3(0.0, hh, 0.0)));
    t.set('B', "headstock top", head(v3(hw / 2.0, hh, 0.0)));
    if let Some(p) = peg_tip {
        t.set('D', "left top peg", head(p));
    }

    // Bridge on the lower bout.
    let yb = c1 * uni(rng, 0.6, 0.85);
    mesh.add(block(v3(0.0, yb, front + 0.01), v3(0.18 * r1, 0.04, 0.02)));
    t.set('B', "bridge center", v3(0.0, yb, front + 0.03));

    t.set('A', "body bottom", v3(0.0, 0.0, 0.0));
    t.set('C', "upper bout left", v3(-r2, c2, 0.0));
    if !cutaway {
        t.set('C', "upper bout right", v3(r2, c2, 0.0));
    }
    t.set('C', "lower bout left", v3(-r1, c1, 0.0));
    t.set('C', "lower bout right", v3(r1, c1, 0.0));
    // The waist: where the two circles cross.
    let yi = (r1 * r1 - r2 * r2 + c2 * c2 - c1 * c1) / (2.0 * (c2 - c1));
    let xi = (r1 * r1 - (yi - c1) * (yi - c1)).max(0.0).sqrt();
    t.set('C', "waist left", v3(-xi, yi, 0.0));
    t.set('C', "waist right", v3(xi, yi, 0.0));
    if let Some(p) = notch {
        t.set('D', "cutaway", p);
    }
    let pegs = per_side * 2;
    t.finish(
        mesh,
        vec![
            ("electric", electric as u32),
            ("cutaway", cutaway as u32),
            ("pegs", pegs),
            ("two_sided", two_sided as u32),
        ],
    )
}
