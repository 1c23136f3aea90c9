//! The pipeline's input filters, applied before the scene stage: a depth camera's NaN
//! holes and points beyond `max_range` dropped, an axis-aligned crop box and a voxel grid
//! (centroid per occupied voxel, as PCL's VoxelGrid). Each returns, for every output
//! point, an input index so results can refer to a sensor point.

use super::Settings;
use crate::cloud::{dist2, Cloud};
use std::collections::HashMap;

/// Every filter the settings ask for: the kept cloud (not organised), each point's input
/// index, and how many input points were not finite. NaN holes, range and crop box are one
/// pass and one copy (a 640 x 480 image is 3.7 MB; a copy per filter was most of the stage).
pub fn apply(input: &Cloud, s: &Settings) -> (Cloud, Vec<usize>, usize) {
    let max2 = if s.max_range > 0.0 {
        s.max_range * s.max_range
    } else {
        f32::INFINITY
    };
    let mut non_finite = 0;
    let mut index = Vec::with_capacity(input.len());
    for (i, p) in input.points.iter().enumerate() {
        if !p.iter().all(|c| c.is_finite()) {
            non_finite += 1;
        } else if dist2(p, &[0.0; 3]) <= max2 && s.crop_box.is_none_or(|b| inside(p, &b)) {
            index.push(i);
        }
    }
    let mut cloud = input.select(&index);
    if s.voxel_size > 0.0 {
        let (c, kept) = voxel_downsample(&cloud, s.voxel_size);
        index = kept.iter().map(|&i| index[i]).collect();
        cloud = c;
    }
    (cloud, index, non_finite)
}

/// Whether `p` lies inside `[xmin, ymin, zmin, xmax, ymax, zmax]` (bounds inclusive).
fn inside(p: &[f32; 3], bounds: &[f32; 6]) -> bool {
    (0..3).all(|a| p[a] >= bounds[a] && p[a] <= bounds[a + 3])
}

/// One point per occupied voxel of edge `size`: the centroid of its points. The index
/// kept for a voxel is that of its point nearest the centroid, so an output can still be
/// traced to a real sensor point. Output order follows first occupancy (deterministic).
pub fn voxel_downsample(cloud: &Cloud, size: f32) -> (Cloud, Vec<usize>) {
    let key = |p: &[f32; 3]| p.map(|c| (c / size).floor() as i64);
    let mut slot_of: HashMap<[i64; 3], usize> = HashMap::new();
    let mut sums: Vec<([f64; 3], usize)> = Vec::new();
    let mut slot_per_point = Vec::with_capacity(cloud.len());
    for p in &cloud.points {
        let slot = *slot_of.entry(key(p)).or_insert_with(|| {
            sums.push(([0.0; 3], 0));
            sums.len() - 1
        });
        let (sum, n) = &mut sums[slot];
        for a in 0..3 {
            sum[a] += f64::from(p[a]);
        }
        *n += 1;
        slot_per_point.push(slot);
    }
    let centroids: Vec<[f32; 3]> = sums
        .iter()
        .map(|(s, n)| s.map(|v| (v / *n as f64) as f32))
        .collect();
    let mut nearest = vec![(f32::INFINITY, 0usize); centroids.len()];
    for (i, (p, &slot)) in cloud.points.iter().zip(&slot_per_point).enumerate() {
        let d = dist2(p, &centroids[slot]);
        if d < nearest[slot].0 {
            nearest[slot] = (d, i);
        }
    }
    (
        Cloud::new(centroids),
        nearest.into_iter().map(|(_, i)| i).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_range_and_box_drop_points_and_keep_input_indices() {
        let c = Cloud::new(vec![
            [0.0, 0.0, 0.5],
            [f32::NAN, 0.0, 0.0],
            [2.0, 0.0, 0.0],
            [0.5, 0.5, 1.0],
            [0.0, f32::INFINITY, 1.0],
            [0.1, 0.0, -0.9],
        ]);
        let mut s = Settings::from_params(&crate::pipeline::NodeParams::default()).unwrap();
        (s.max_range, s.voxel_size) = (1.5, 0.0);
        s.crop_box = Some([-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]);
        let (out, idx, non_finite) = apply(&c, &s);
        assert_eq!((idx.as_slice(), non_finite), ([0, 3, 5].as_slice(), 2));
        assert_eq!(out.points[1], [0.5, 0.5, 1.0]);
        // Range alone keeps the point outside the box; nothing keeps the far one.
        s.crop_box = None;
        assert_eq!(apply(&c, &s).1, vec![0, 3, 5]);
        s.max_range = 0.0;
        assert_eq!(apply(&c, &s).1, vec![0, 2, 3, 5]);
        s.crop_box = Some([0.0, -1.0, 0.0, 1.0, 1.0, 1.0]);
        assert_eq!(apply(&c, &s).1, vec![0, 3]);
    }

    #[test]
    fn voxels_average_their_points() {
        let c = Cloud::new(vec![
            [0.1, 0.1, 0.1],
            [0.3, 0.3, 0.3],
            [1.5, 0.0, 0.0],
            [0.2, 0.2, 0.2],
        ]);
        let (out, idx) = voxel_downsample(&c, 1.0);
        assert_eq!(out.len(), 2);
        for a in 0..3 {
            assert!((out.points[0][a] - 0.2).abs() < 1e-6);
        }
        // The point nearest the first voxel's centroid is the last one.
        assert_eq!(idx, vec![3, 2]);
    }
}
