//! Tabletop objects a manipulator meets besides mugs and bottles: bowl, can, pitcher and
//! laptop (y up, front +z, right +x as seen from the front).
//!
//! **bowl** (90000009). A walled surface of revolution: rim radius 1, height 0.35–0.8,
//! bottom radius 0.3–0.6, walls from straight to round. Foot ring (60%), rolled rim lip
//! (35%). Round: its "front" is a convention (the side toward the viewer), as the bottle's.
//!
//! | id | annotator | point | notes |
//! |----|-----------|-------|-------|
//! | 0 | A | rim front | top of the rim, +z |
//! | 1 | A | rim back | |
//! | 2 | A | bottom center | underside; the foot's plane when footed |
//! | 3 | B | rim front | just below the rim on the outside: close to A's |
//! | 4 | B | inner bottom center | inside, a wall's thickness above A's |
//! | 5 | C | rim left | mirrors rim right |
//! | 6 | C | rim right | |
//! | 7 | C | foot front | foot only |
//! | 8 | D | inner wall front | halfway down the inside |
//! | 9 | D | outer wall front | halfway down the outside |
//!
//! **can** (90000010). A cylinder of radius 1, height 1.0–3.6 (tuna can to tall drink
//! can), its ends necked in to 0.8–0.92 with a raised seam ring on top; a pull tab on the
//! lid (70%), toward the front. Round but for the tab.
//!
//! | id | annotator | point | notes |
//! |----|-----------|-------|-------|
//! | 0 | A | top center | |
//! | 1 | A | bottom center | |
//! | 2 | A | pull tab | tab only |
//! | 3 | B | top rim front | |
//! | 4 | B | bottom rim front | |
//! | 5 | C | top rim left | mirrors top rim right |
//! | 6 | C | top rim right | |
//! | 7 | C | body front middle | |
//! | 8 | D | top rim back | |
//! | 9 | D | top rim front | close to B's |
//!
//! **pitcher** (90000011). A jug or kettle: a bellied or straight body of radius 1, top
//! radius 0.65–1.1, height 1.6–3.0; a handle at the back (-z), round or squared; at the
//! front a pouring lip (60%) or a kettle spout from low on the body (40%); a lid with a
//! knob (40%).
//!
//! | id | annotator | point | notes |
//! |----|-----------|-------|-------|
//! | 0 | A | spout tip | |
//! | 1 | A | handle top | |
//! | 2 | A | bottom center | |
//! | 3 | B | spout base | where the spout leaves the body |
//! | 4 | B | handle bottom | |
//! | 5 | B | handle upper joint | close to A's handle top |
//! | 6 | C | rim left | mirrors rim right |
//! | 7 | C | rim right | |
//! | 8 | C | lid knob | lid only |
//! | 9 | D | handle outermost | |
//! | 10 | D | body front middle | under the spout |
//!
//! **laptop** (90000012). An open clamshell: base 1.3–1.7 wide, 1 deep, 0.04–0.09 thick;
//! lid as wide, 0.8–1.0 deep, hinged at the base's back edge and opened 70–135 degrees;
//! the screen faces the front (+z). A trackpad block (80%) and a webcam bump on the lid's
//! top edge (50%).
//!
//! | id | annotator | point | notes |
//! |----|-----------|-------|-------|
//! | 0 | A | base front left | corner; mirrors base front right |
//! | 1 | A | base front right | |
//! | 2 | A | lid top left | corner; mirrors lid top right |
//! | 3 | A | lid top right | |
//! | 4 | B | hinge center | |
//! | 5 | B | base front center | |
//! | 6 | B | lid top center | close to D's webcam |
//! | 7 | C | trackpad center | trackpad only |
//! | 8 | C | keyboard center | |
//! | 9 | D | webcam | webcam only |
//! | 10 | D | screen center | |

use super::mesh::{block, cuboid, rod, rot_x, round_lathe, tube, v3, V3};
use super::{chance, mirrored, sp, uni, Built, SemanticPoint, Targets};
use rand_chacha::ChaCha8Rng;
use std::f32::consts::PI;

pub(super) const BOWL_POINTS: &[SemanticPoint] = &[
    sp('A', "rim front"),
    sp('A', "rim back"),
    sp('A', "bottom center"),
    sp('B', "rim front"),
    sp('B', "inner bottom center"),
    mirrored('C', "rim left", "rim right"),
    sp('C', "rim right"),
    sp('C', "foot front"),
    sp('D', "inner wall front"),
    sp('D', "outer wall front"),
];

pub(super) fn bowl(rng: &mut ChaCha8Rng) -> Built {
    let mut t = Targets::new(BOWL_POINTS);
    let h = uni(rng, 0.35, 0.8);
    let rb = uni(rng, 0.3, 0.6);
    // 1 = a straight (conical) wall, up to 3 = a round one that rises steeply at first.
    let roundness = uni(rng, 1.0, 3.0);
    let wall = 0.05;
    let has_foot = chance(rng, 0.6);
    let foot_h = if has_foot { uni(rng, 0.06, 0.14) } else { 0.0 };
    // Outer radius at height y (from the bowl's underside, above the foot).
    let r_out = |y: f32| {
        let s = (y / h).clamp(0.0, 1.0);
        rb + (1.0 - rb) * (1.0 - (1.0 - s).powf(roundness))
    };
    let steps = 10;
    let mut outer: Vec<(f32, f32)> = vec![(0.0, foot_h)];
    outer.extend((0..=steps).map(|i| {
        let y = h * i as f32 / steps as f32;
        (r_out(y), foot_h + y)
    }));
    let mut inner: Vec<(f32, f32)> = (0..=steps)
        .rev()
        .map(|i| {
            let y = wall + (h - wall) * i as f32 / steps as f32;
            ((r_out(y) - wall).max(0.0), foot_h + y)
        })
        .collect();
    inner.push((0.0, foot_h + wall));
    let mut profile = outer;
    profile.extend(inner);
    let mut mesh = round_lathe(&profile);
    let top = foot_h + h;
    let rim = 1.0 - wall / 2.0;
    if chance(rng, 0.35) {
        // A rolled lip: a torus-like ring over the rim.
        let ring: Vec<V3> = (0..=40)
            .map(|i| {
                let a = 2.0 * PI * i as f32 / 40.0;
                v3(a.sin(), top, a.cos())
            })
            .collect();
        mesh.add(tube(&ring, &vec![0.045; ring.len()], 10, false));
    }
    if has_foot {
        let rf = rb * uni(rng, 0.7, 0.95);
        mesh.add(round_lathe(&[
            (rf - 0.05, 0.0),
            (rf, 0.0),
            (rf, foot_h + 0.02),
            (rf - 0.05, foot_h + 0.02),
            (rf - 0.05, 0.0),
        ]));
        t.set('C', "foot front", v3(0.0, 0.0, rf));
    }
    let mid = h / 2.0;
    t.set('A', "rim front", v3(0.0, top, rim));
    t.set('A', "rim back", v3(0.0, top, -rim));
    t.set('A', "bottom center", v3(0.0, 0.0, 0.0));
    t.set('B', "rim front", v3(0.0, top - 0.08, r_out(h - 0.08)));
    t.set('B', "inner bottom center", v3(0.0, foot_h + wall, 0.0));
    t.set('C', "rim left", v3(-rim, top, 0.0));
    t.set('C', "rim right", v3(rim, top, 0.0));
    t.set(
        'D',
        "inner wall front",
        v3(0.0, foot_h + mid, r_out(mid) - wall),
    );
    t.set('D', "outer wall front", v3(0.0, foot_h + mid, r_out(mid)));
    t.finish(mesh, vec![("foot", has_foot as u32)])
}

pub(super) const CAN_POINTS: &[SemanticPoint] = &[
    sp('A', "top center"),
    sp('A', "bottom center"),
    sp('A', "pull tab"),
    sp('B', "top rim front"),
    sp('B', "bottom rim front"),
    mirrored('C', "top rim left", "top rim right"),
    sp('C', "top rim right"),
    sp('C', "body front middle"),
    sp('D', "top rim back"),
    sp('D', "top rim front"),
];

pub(super) fn can(rng: &mut ChaCha8Rng) -> Built {
    let mut t = Targets::new(CAN_POINTS);
    let h = uni(rng, 1.0, 3.6);
    let neck = uni(rng, 0.8, 0.92);
    let taper = uni(rng, 0.08, 0.25).min(h * 0.12);
    let lid = h - 0.04;
    let mut mesh = round_lathe(&[
        (0.0, 0.05),
        (neck, 0.0),
        (1.0, taper),
        (1.0, h - taper),
        (neck, h),
        (neck - 0.05, h),
        (neck - 0.05, lid),
        (0.0, lid),
    ]);
    let has_tab = chance(rng, 0.7);
    if has_tab {
        let z0 = uni(rng, 0.1, 0.25);
        let len = uni(rng, 0.35, 0.5);
        mesh.add(block(
            v3(0.0, lid + 0.02, z0 + len / 2.0),
            v3(0.14, 0.02, len / 2.0),
        ));
        t.set('A', "pull tab", v3(0.0, lid + 0.04, z0 + len * 0.7));
    }
    let rim = neck - 0.025;
    t.set('A', "top center", v3(0.0, lid, 0.0));
    t.set('A', "bottom center", v3(0.0, 0.05, 0.0));
    t.set('B', "top rim front", v3(0.0, h, rim));
    t.set(
        'B',
        "bottom rim front",
        v3(0.0, taper / 2.0, (1.0 + neck) / 2.0),
    );
    t.set('C', "top rim left", v3(-rim, h, 0.0));
    t.set('C', "top rim right", v3(rim, h, 0.0));
    t.set('C', "body front middle", v3(0.0, h / 2.0, 1.0));
    t.set('D', "top rim back", v3(0.0, h, -rim));
    t.set('D', "top rim front", v3(0.0, h - 0.06, neck + 0.03));
    t.finish(mesh, vec![("tab", has_tab as u32)])
}

pub(super) const PITCHER_POINTS: &[SemanticPoint] = &[
    sp('A', "spout tip"),
    sp('A', "handle top"),
    sp('A', "bottom center"),
    sp('B', "spout base"),
    sp('B', "handle bottom"),
    sp('B', "handle upper joint"),
    mirrored('C', "rim left", "rim right"),
    sp('C', "rim right"),
    sp('C', "lid knob"),
    sp('D', "handle outermost"),
    sp('D', "body front middle"),
];

pub(super) fn pitcher(rng: &mut ChaCha8Rng) -> Built {
    let mut t = Targets::new(PITCHER_POINTS);
    let h = uni(rng, 1.6, 3.0);
    let rt = uni(rng, 0.65, 1.1);
    // Belly: the widest point's height (a fraction of h) and how far it bulges.
    let belly_at = uni(rng, 0.2, 0.5);
    let bulge = uni(rng, 0.0, 0.25);
    let wall = 0.06;
    let r_out = |y: f32| {
        let s = y / h;
        let straight = 1.0 + (rt - 1.0) * s;
        straight + bulge * (PI * (s / belly_at).min(1.0) * 0.5).sin() * (1.0 - s)
    };
    let steps = 12;
    let mut profile: Vec<(f32, f32)> = vec![(0.0, 0.0)];
    profile.extend((0..=steps).map(|i| {
        let y = h * i as f32 / steps as f32;
        (r_out(y), y)
    }));
    profile.extend([(rt - wall, h), (r_out(0.15) - wall, 0.15), (0.0, 0.15)]);
    let mut mesh = round_lathe(&profile);

    // Handle at the back (-z), in the yz plane.
    let y_top = h * uni(rng, 0.7, 0.9);
    let y_bot = h * uni(rng, 0.15, 0.4);
    let reach = uni(rng, 0.5, 0.9);
    let hr = uni(rng, 0.08, 0.14);
    let exponent = if chance(rng, 0.6) { 1.0 } else { 0.4 };
    let at = |s: f32| {
        let y = y_top + (y_bot - y_top) * (1.0 - (PI * s).cos()) / 2.0;
        let z = r_out(y) - 0.5 * hr + reach * (PI * s).sin().max(0.0).powf(exponent);
        v3(0.0, y, -z)
    };
    let path: Vec<_> = (0..=32).map(|i| at(i as f32 / 32.0)).collect();
    mesh.add(tube(&path, &vec![hr; path.len()], 16, false));
    let up = v3(0.0, hr, 0.0);
    t.set('A', "handle top", at(0.14) + up);
    t.set('B', "handle bottom", at(0.86) - up);
    t.set('B', "handle upper joint", at(0.04) + up);
    t.set('D', "handle outermost", at(0.5) - v3(0.0, 0.0, hr));

    if chance(rng, 0.6) {
        // A pouring lip: a short flared tube over the rim's front.
        let base = v3(0.0, h - 0.25, rt - 0.1);
        let tip = v3(0.0, h + 0.1, rt + uni(rng, 0.2, 0.4));
        mesh.add(rod(base, tip, 0.25, 0.12));
        t.set('A', "spout tip", tip + v3(0.0, 0.1, 0.0));
        t.set('B', "spout base", v3(0.0, h - 0.25, r_out(h - 0.25)));
    } else {
        // A kettle spout: a tube from low on the body, up and out past the rim's height.
        let y0 = h * uni(rng, 0.2, 0.4);
        let out = uni(rng, 0.6, 1.0);
        let base = v3(0.0, y0, r_out(y0) - 0.1);
        let mid = v3(0.0, (y0 + h) / 2.0, r_out(y0) + out * 0.6);
        let tip = v3(0.0, h * uni(rng, 0.85, 1.0), r_out(y0) + out);
        mesh.add(tube(&[base, mid, tip], &[0.22, 0.15, 0.1], 14, false));
        t.set('A', "spout tip", tip);
        t.set('B', "spout base", v3(0.0, y0 + 0.15, r_out(y0 + 0.15)));
    }
    if chance(rng, 0.4) {
        let lid_h = uni(rng, 0.1, 0.3);
        mesh.add(round_lathe(&[
            (rt, h),
            (rt * 0.6, h + lid_h),
            (0.18, h + lid_h),
        ]));
        let knob = h + lid_h + 0.2;
        mesh.add(round_lathe(&[(0.18, h + lid_h), (0.25, knob), (0.0, knob)]));
        t.set('C', "lid knob", v3(0.0, knob, 0.0));
    }
    let rim = rt - wall / 2.0;
    t.set('A', "bottom center", v3(0.0, 0.0, 0.0));
    t.set('C', "rim left", v3(-rim, h, 0.0));
    t.set('C', "rim right", v3(rim, h, 0.0));
    t.set('D', "body front middle", v3(0.0, h / 2.0, r_out(h / 2.0)));
    t.finish(mesh, Vec::new())
}

pub(super) const LAPTOP_POINTS: &[SemanticPoint] = &[
    mirrored('A', "base front left", "base front right"),
    sp('A', "base front right"),
    mirrored('A', "lid top left", "lid top right"),
    sp('A', "lid top right"),
    sp('B', "hinge center"),
    sp('B', "base front center"),
    sp('B', "lid top center"),
    sp('C', "trackpad center"),
    sp('C', "keyboard center"),
    sp('D', "webcam"),
    sp('D', "screen center"),
];

pub(super) fn laptop(rng: &mut ChaCha8Rng) -> Built {
    let mut t = Targets::new(LAPTOP_POINTS);
    let w = uni(rng, 1.3, 1.7);
    let tb = uni(rng, 0.04, 0.09);
    let tl = uni(rng, 0.03, 0.05);
    let dl = uni(rng, 0.8, 1.0);
    let open = uni(rng, 70.0, 135.0).to_radians();
    let (hw, front, back) = (w / 2.0, 0.5, -0.5);
    let mut mesh = cuboid(v3(-hw, 0.0, back), v3(hw, tb, front));
    // The lid in its own frame lies closed along +z from the hinge, screen side down
    // (y = 0); opening turns it about x so its far edge rises toward +y and back.
    let turn = rot_x(-open);
    let hinge = v3(0.0, tb, back);
    let lid_point = |x: f32, y: f32, z: f32| turn * v3(x, y, z) + hinge;
    mesh.add(cuboid(v3(-hw, 0.0, 0.0), v3(hw, tl, dl)).placed(turn, hinge));
    // Keyboard: a slightly raised panel over the base's back half.
    let kb = v3(0.0, tb, back + 0.3);
    mesh.add(block(kb + v3(0.0, 0.008, 0.0), v3(hw * 0.85, 0.008, 0.22)));
    if chance(rng, 0.8) {
        let tp = v3(0.0, tb, front - 0.22);
        mesh.add(block(tp + v3(0.0, 0.006, 0.0), v3(0.28, 0.006, 0.16)));
        t.set('C', "trackpad center", tp + v3(0.0, 0.012, 0.0));
    }
    if chance(rng, 0.5) {
        let cam = lid_point(0.0, -0.02, dl - 0.05);
        mesh.add(rod(lid_point(0.0, 0.0, dl - 0.05), cam, 0.05, 0.05));
        t.set('D', "webcam", cam);
    }
    t.set('A', "base front left", v3(-hw, tb, front));
    t.set('A', "base front right", v3(hw, tb, front));
    t.set('A', "lid top left", lid_point(-hw, tl / 2.0, dl));
    t.set('A', "lid top right", lid_point(hw, tl / 2.0, dl));
    t.set('B', "hinge center", hinge);
    t.set('B', "base front center", v3(0.0, tb / 2.0, front));
    t.set('B', "lid top center", lid_point(0.0, tl, dl));
    t.set('C', "keyboard center", kb + v3(0.0, 0.016, 0.0));
    t.set('D', "screen center", lid_point(0.0, 0.0, dl / 2.0));
    t.finish(mesh, vec![("open_deg", open.to_degrees().round() as u32)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn built(f: fn(&mut ChaCha8Rng) -> Built, seed: u64) -> Built {
        f(&mut ChaCha8Rng::seed_from_u64(seed))
    }

    #[test]
    fn laptop_lid_rises_behind_the_base() {
        for seed in 0..20 {
            let b = built(laptop, seed);
            let (lo, hi) = b.mesh.bbox();
            // Opened 70-135 degrees: the lid stands at least 0.75 of its depth high.
            assert!(hi.y > 0.7, "seed {seed}: top {}", hi.y);
            assert!(lo.z < -0.5, "seed {seed}: back {}", lo.z);
            let screen = b.targets[10].expect("screen centre");
            assert!(screen.y > 0.3 && screen.z < 0.0, "seed {seed}: {screen:?}");
        }
    }

    #[test]
    fn pitcher_handle_behind_spout_in_front() {
        for seed in 0..20 {
            let b = built(pitcher, seed);
            let spout = b.targets[0].expect("spout");
            let handle = b.targets[9].expect("handle");
            assert!(spout.z > 0.8 && handle.z < -1.0, "seed {seed}");
        }
    }

    #[test]
    fn round_tabletop_objects_are_symmetric_up_to_their_optional_parts() {
        for seed in 0..10 {
            for (f, name) in [(bowl as fn(&mut ChaCha8Rng) -> Built, "bowl"), (can, "can")] {
                let (lo, hi) = built(f, seed).mesh.bbox();
                assert!((lo.x + hi.x).abs() < 0.05, "{name} {seed}: x {lo} {hi}");
                assert!(hi.x > 0.9 && hi.x < 1.1, "{name} {seed}: radius {}", hi.x);
            }
        }
    }
}
