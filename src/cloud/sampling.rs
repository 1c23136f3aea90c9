//! Down-sampling a cloud to a fixed number of points.

use super::{dist2, Cloud};
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
    let pts = &cloud.points;
    let mut chosen = Vec::with_capacity(n);
    let mut nearest = vec![f32::INFINITY; len];
    let mut current = start.min(len - 1);
    for _ in 0..n {
        chosen.push(current);
        let c = pts[current];
        let mut best = (0usize, -1.0f32);
        for (i, (p, d)) in pts.iter().zip(nearest.iter_mut()).enumerate() {
            let nd = dist2(p, &c);
            if nd < *d {
                *d = nd;
            }
            if *d > best.1 {
                best = (i, *d);
            }
        }
        current = best.0;
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
