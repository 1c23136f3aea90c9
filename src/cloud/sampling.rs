//! Down-sampling a cloud to a fixed number of points.

use super::Cloud;
use rand::seq::index::sample;
use rand::Rng;

/// Farthest-point sampling: indices of `n` points, each the farthest from those already
/// chosen, starting at `start`. Covers the shape evenly, which is why networks are trained on
/// it. When the cloud has fewer than `n` points, all indices are returned and then repeated
/// (cycled) so that the result always has `n` entries.
pub fn farthest_point_sample(cloud: &Cloud, n: usize, start: usize) -> Vec<usize> {
    let len = cloud.len();
    if len == 0 || n == 0 {
        return Vec::new();
    }
    if len <= n {
        return (0..n).map(|i| i % len).collect();
    }
    // Structure of arrays in blocks of LANES (the tail padded with copies of point 0 held
    // at distance 0, so never picked): the distance update and a per-lane arg-max then
    // compile to SIMD (8 f32 lanes with AVX2). Ties go to the lowest index, as a scalar
    // first-maximum scan would, so the sample is the same as before.
    const LANES: usize = 8;
    let blocks = len.div_ceil(LANES);
    let padded = blocks * LANES;
    let pts = &cloud.points;
    let coord = |k: usize| -> Vec<f32> {
        (0..padded)
            .map(|i| pts[if i < len { i } else { 0 }][k])
            .collect()
    };
    let (xs, ys, zs) = (coord(0), coord(1), coord(2));
    let mut nearest = vec![f32::INFINITY; padded];
    nearest[len..].fill(0.0);
    let mut chosen = Vec::with_capacity(n);
    let mut current = start.min(len - 1);
    for _ in 0..n {
        chosen.push(current);
        let (cx, cy, cz) = (xs[current], ys[current], zs[current]);
        let mut best = [-1.0f32; LANES];
        let mut best_at = [0u32; LANES];
        for b in 0..blocks {
            let r = b * LANES..(b + 1) * LANES;
            let (x, y, z) = (&xs[r.clone()], &ys[r.clone()], &zs[r.clone()]);
            let d = &mut nearest[r];
            for l in 0..LANES {
                let (dx, dy, dz) = (x[l] - cx, y[l] - cy, z[l] - cz);
                let nd = dx * dx + dy * dy + dz * dz;
                let v = if nd < d[l] { nd } else { d[l] };
                d[l] = v;
                let better = v > best[l];
                best[l] = if better { v } else { best[l] };
                best_at[l] = if better {
                    (b * LANES + l) as u32
                } else {
                    best_at[l]
                };
            }
        }
        let mut winner = 0;
        for l in 1..LANES {
            let (v, i) = (best[l], best_at[l]);
            if v > best[winner] || (v == best[winner] && i < best_at[winner]) {
                winner = l;
            }
        }
        current = best_at[winner] as usize;
    }
    chosen
}

/// Uniform random sampling without replacement (with replacement when the cloud is
/// smaller than `n`), sorted so the sub-cloud keeps the input order.
pub fn random_sample<R: Rng + ?Sized>(cloud: &Cloud, n: usize, rng: &mut R) -> Vec<usize> {
    let len = cloud.len();
    if len == 0 || n == 0 {
        return Vec::new();
    }
    let mut idx: Vec<usize> = if len <= n {
        (0..len)
            .chain((len..n).map(|_| rng.random_range(0..len)))
            .collect()
    } else {
        sample(rng, len, n).into_vec()
    };
    idx.sort_unstable();
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn line(n: usize) -> Cloud {
        Cloud::new((0..n).map(|i| [i as f32, 0.0, 0.0]).collect())
    }

    #[test]
    fn fps_picks_extremes_first() {
        let c = line(101);
        let idx = farthest_point_sample(&c, 3, 0);
        assert_eq!(idx, vec![0, 100, 50]);
    }

    #[test]
    fn fps_equals_the_plain_scan() {
        // The first-maximum scan the blocked version must reproduce (ties included: a
        // grid has many equal distances).
        fn plain(c: &Cloud, n: usize) -> Vec<usize> {
            let mut nearest = vec![f32::INFINITY; c.len()];
            let (mut out, mut current) = (Vec::new(), 0);
            for _ in 0..n {
                out.push(current);
                let mut best = (0, -1.0f32);
                for (i, p) in c.points.iter().enumerate() {
                    nearest[i] = nearest[i].min(super::super::dist2(p, &c.points[current]));
                    if nearest[i] > best.1 {
                        best = (i, nearest[i]);
                    }
                }
                current = best.0;
            }
            out
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let random = Cloud::new(
            (0..1003)
                .map(|_| {
                    [
                        rng.random::<f32>(),
                        rng.random::<f32>(),
                        rng.random::<f32>(),
                    ]
                })
                .collect(),
        );
        let grid = Cloud::new(
            (0..125)
                .map(|i| [(i % 5) as f32, (i / 5 % 5) as f32, (i / 25) as f32])
                .collect(),
        );
        for (c, n) in [(&random, 100), (&grid, 60), (&line(13), 5)] {
            assert_eq!(farthest_point_sample(c, n, 0), plain(c, n));
        }
    }

    #[test]
    fn fps_small_cloud_cycles() {
        let idx = farthest_point_sample(&line(3), 5, 0);
        assert_eq!(idx, vec![0, 1, 2, 0, 1]);
    }

    #[test]
    fn random_sample_is_distinct_and_seeded() {
        let c = line(1000);
        let mut r1 = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut r2 = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let a = random_sample(&c, 100, &mut r1);
        let b = random_sample(&c, 100, &mut r2);
        assert_eq!(a, b);
        let mut d = a.clone();
        d.dedup();
        assert_eq!(d.len(), 100);
        assert_eq!(random_sample(&line(4), 6, &mut r1).len(), 6);
    }
}
