//! The low parts of objects, which the support plane's inlier band would take: a knife
//! lying on its side stands 1-1.5 cm at its handle and 2-3 mm at its blade, and every
//! object loses its lowest 1.5 cm to the band. On a depth image (organised clouds only)
//! the scene stage grows objects down into them by hysteresis on the height above the
//! plane, as edge detectors do on gradients:
//!
//! - heights are median-filtered over the 5 x 5 pixels around each point: range noise
//!   (sigma 2-5 mm at 1-2 m on structured light) falls about fourfold, and the median
//!   keeps an object's edge where a mean would smear it onto the table;
//! - a point whose filtered height is at least [`SEED_HEIGHT`] seeds an object (the
//!   handle of a lying knife), as a point above the band does;
//! - objects grow through image neighbours into points whose filtered height clears the
//!   table's own noise at that range ([`NOISE_SIGMAS`] times the spread of the filtered
//!   height of the plane's inliers at a similar range, at least [`MIN_SURFACE_HEIGHT`]),
//!   no farther than [`GROW_REACH`] from the point they grew from (a warped table must
//!   not join an object across the room).
//!
//! Hand-written: PCL's organised segmentation compares neighbours (normals, planes,
//! Euclidean distance), not heights against a range-dependent noise floor.

use super::clusters::PixelGrid;
use super::plane::Plane;
use crate::cloud::{dist2, Cloud};
use std::collections::VecDeque;

/// A point whose median-filtered height above the plane is at least this (metres) seeds
/// an object: above the table's noise at 2 m, below the handle of a knife on its side.
pub const SEED_HEIGHT: f32 = 0.006;
/// Objects grow into points at least this high (metres), whatever the noise.
pub const MIN_SURFACE_HEIGHT: f32 = 0.0015;
/// ... and at least this many standard deviations of the table's filtered height.
pub const NOISE_SIGMAS: f32 = 3.0;
/// A grown point lies within this (metres) of the seed or high point it grew from.
pub const GROW_REACH: f32 = 0.3;
/// The median filter's half window (pixels): 5 x 5.
const HALF_WINDOW: isize = 2;
/// Plane inliers sampled to measure the noise, and the range bins it is measured in.
const NOISE_SAMPLES: usize = 2048;
const NOISE_BINS: usize = 8;

/// Heights above the plane, median-filtered on the image, computed on demand.
struct Filtered<'a> {
    grid: PixelGrid<'a>,
    heights: &'a [f32],
    /// Point index at each pixel (`u32::MAX`: none).
    at: Vec<u32>,
    cache: Vec<f32>,
}

impl<'a> Filtered<'a> {
    fn new(grid: PixelGrid<'a>, heights: &'a [f32]) -> Self {
        let mut at = vec![u32::MAX; grid.width * grid.height];
        for (i, &px) in grid.pixel.iter().enumerate() {
            at[px] = i as u32;
        }
        Filtered {
            grid,
            heights,
            at,
            cache: vec![f32::NAN; heights.len()],
        }
    }

    /// (row, col) of point `i`.
    fn place(&self, i: usize) -> (isize, isize) {
        let px = self.grid.pixel[i];
        (
            (px / self.grid.width) as isize,
            (px % self.grid.width) as isize,
        )
    }

    /// The point at (row, col), if inside the image and present.
    fn point_at(&self, row: isize, col: isize) -> Option<usize> {
        let (w, h) = (self.grid.width as isize, self.grid.height as isize);
        if !(0..h).contains(&row) || !(0..w).contains(&col) {
            return None;
        }
        let j = self.at[(row * w + col) as usize];
        (j != u32::MAX).then_some(j as usize)
    }

    fn height(&mut self, i: usize) -> f32 {
        if self.cache[i].is_nan() {
            let (row, col) = self.place(i);
            let mut window = Vec::with_capacity(25);
            for r in row - HALF_WINDOW..=row + HALF_WINDOW {
                for c in col - HALF_WINDOW..=col + HALF_WINDOW {
                    if let Some(j) = self.point_at(r, c) {
                        window.push(self.heights[j]);
                    }
                }
            }
            let mid = window.len() / 2;
            let (_, m, _) = window.select_nth_unstable_by(mid, f32::total_cmp);
            self.cache[i] = *m;
        }
        self.cache[i]
    }
}

/// The table's filtered-height noise by range: `(upper range, threshold)` per bin, the
/// threshold being what a point at that range must clear to grow an object.
fn thresholds(cloud: &Cloud, plane: &Plane, filtered: &mut Filtered) -> Vec<(f32, f32)> {
    let step = (plane.inliers.len() / NOISE_SAMPLES).max(1);
    let mut samples: Vec<(f32, f32)> = plane
        .inliers
        .iter()
        .step_by(step)
        .map(|&i| {
            (
                dist2(&cloud.points[i], &[0.0; 3]).sqrt(),
                filtered.height(i),
            )
        })
        .collect();
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let per_bin = samples.len().div_ceil(NOISE_BINS).max(1);
    samples
        .chunks(per_bin)
        .map(|bin| {
            let mut spread: Vec<f32> = bin.iter().map(|s| s.1.abs()).collect();
            let mid = spread.len() / 2;
            // 1.4826 x the median absolute deviation: a Gaussian's sigma.
            let sigma = 1.4826 * *spread.select_nth_unstable_by(mid, f32::total_cmp).1;
            let upper = bin.last().expect("chunks are not empty").0;
            (upper, (NOISE_SIGMAS * sigma).max(MIN_SURFACE_HEIGHT))
        })
        .collect()
}

/// The points to add to `high` (points above the plane's band, which seed objects as
/// they are): low seeds and what objects grow into (module doc). `heights[i]` is point
/// `i`'s signed distance to the plane; points above `max_height` never join.
pub fn low_parts(
    cloud: &Cloud,
    grid: PixelGrid<'_>,
    plane: &Plane,
    heights: &[f32],
    high: &[bool],
    max_height: f32,
) -> Vec<usize> {
    let mut filtered = Filtered::new(grid, heights);
    let bins = thresholds(cloud, plane, &mut filtered);
    if bins.is_empty() {
        // A plane without inliers (never from `fit_plane`): no noise to measure.
        return Vec::new();
    }
    let threshold = |p: &[f32; 3]| {
        let r = dist2(p, &[0.0; 3]).sqrt();
        let k = bins.partition_point(|b| b.0 < r).min(bins.len() - 1);
        bins[k].1
    };
    let mut joined = high.to_vec();
    // Each queued point with the point its object grew from.
    let mut queue: VecDeque<(usize, usize)> = VecDeque::new();
    let mut added = Vec::new();
    for i in 0..cloud.len() {
        if joined[i] {
            queue.push_back((i, i));
        } else if heights[i] >= SEED_HEIGHT
            && heights[i] <= max_height
            && filtered.height(i) >= SEED_HEIGHT
        {
            joined[i] = true;
            added.push(i);
            queue.push_back((i, i));
        }
    }
    let reach2 = GROW_REACH * GROW_REACH;
    while let Some((i, from)) = queue.pop_front() {
        let (row, col) = filtered.place(i);
        for (dr, dc) in [
            (-1, -1),
            (-1, 0),
            (-1, 1),
            (0, -1),
            (0, 1),
            (1, -1),
            (1, 0),
            (1, 1),
        ] {
            let Some(j) = filtered.point_at(row + dr, col + dc) else {
                continue;
            };
            let p = &cloud.points[j];
            if joined[j]
                || heights[j] > max_height
                || dist2(p, &cloud.points[from]) > reach2
                || filtered.height(j) < threshold(p)
            {
                continue;
            }
            joined[j] = true;
            added.push(j);
            queue.push_back((j, from));
        }
    }
    added.sort_unstable();
    added
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::Vector3;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    /// A depth image of a table (z up, 1 m below the sensor, 2 mm noise) seen from
    /// straight above, 1 mm per pixel, with a 1 cm bar and a 2.5 mm blade beside it.
    #[test]
    fn a_blade_joins_its_handle_and_the_table_stays_out() {
        let (w, h) = (200usize, 120usize);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let noise = Normal::new(0.0f32, 0.002).unwrap();
        let handle = |r: usize, c: usize| (55..65).contains(&r) && (20..70).contains(&c);
        let blade = |r: usize, c: usize| (52..68).contains(&r) && (70..170).contains(&c);
        let mut points = Vec::new();
        for r in 0..h {
            for c in 0..w {
                let top = if handle(r, c) {
                    0.01
                } else if blade(r, c) {
                    0.0025
                } else {
                    0.0
                };
                let z = -1.0 + top + noise.sample(&mut rng);
                points.push([c as f32 * 0.001, r as f32 * 0.001, z]);
            }
        }
        let cloud = Cloud::new(points);
        let pixel: Vec<usize> = (0..w * h).collect();
        let grid = PixelGrid {
            width: w,
            height: h,
            pixel: &pixel,
        };
        let plane = Plane {
            normal: Vector3::z(),
            offset: 1.0,
            inliers: (0..w * h)
                .filter(|&i| !handle(i / w, i % w) && !blade(i / w, i % w))
                .collect(),
        };
        let heights: Vec<f32> = cloud
            .points
            .iter()
            .map(|p| plane.signed_distance(p))
            .collect();
        // Nothing stands above a 1.5 cm band: every object point is a low one.
        let high = vec![false; w * h];
        let added = low_parts(&cloud, grid, &plane, &heights, &high, 0.6);
        let on = |f: &dyn Fn(usize, usize) -> bool| {
            added.iter().filter(|&&i| f(i / w, i % w)).count() as f32
        };
        let (handle_share, blade_share) = (on(&handle) / 500.0, on(&blade) / 1600.0);
        let table = added.len() as f32 - on(&handle) - on(&blade);
        assert!(handle_share > 0.95, "{handle_share}");
        assert!(blade_share > 0.8, "{blade_share}");
        // At most half the ring of 330 table pixels around the knife (where a median
        // window holds as much knife as table).
        assert!(table < 165.0, "{table} table points joined");
        // Without the bar nothing seeds: a table with a faint blade on it stays a table.
        let flat: Vec<f32> = heights
            .iter()
            .enumerate()
            .map(|(i, &z)| if handle(i / w, i % w) { z - 0.0075 } else { z })
            .collect();
        assert!(low_parts(&cloud, grid, &plane, &flat, &high, 0.6).is_empty());
    }
}
