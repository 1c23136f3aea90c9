//! Euclidean clusters (PCL's `EuclideanClusterExtraction`): two points belong to one
//! cluster when a chain of points, each within `tolerance` of the next, joins them.
//!
//! Hand-written rather than k-d tree radius queries per point (kiddo has no clustering of
//! its own, and a wall behind a table gives 100k points with ~70 neighbours each: 150 ms
//! here that way). Points go into hash-grid cells of edge `tolerance / sqrt(3)`: any two
//! points of one cell are within `tolerance`, so a cell is connected without a check.
//! Two cells are joined (union-find) when some pair of their points is within
//! `tolerance`; only cells at most two apart along each axis can hold such a pair, and
//! the search stops at the first pair found. The result is exactly the Euclidean clusters.
//! Neighbour cells are found by (x, y) column in the key-sorted cells, a lookup per column
//! instead of per cell (13 lookups per cell instead of 124).

use crate::cloud::{dist2, Cloud};
use rustc_hash::FxHashMap;

/// The (dx, dy) column offsets of half the neighbourhood: (0, 0) (whose cells above in z
/// are scanned) and every offset after it in (dx, dy) order, out to 2.
const HALF_COLUMNS: [(i64, i64); 13] = [
    (0, 0),
    (0, 1),
    (0, 2),
    (1, -2),
    (1, -1),
    (1, 0),
    (1, 1),
    (1, 2),
    (2, -2),
    (2, -1),
    (2, 0),
    (2, 1),
    (2, 2),
];

/// Union-find over cell indices, with path halving.
struct Components(Vec<u32>);

impl Components {
    fn find(&mut self, mut i: u32) -> u32 {
        while self.0[i as usize] != i {
            let parent = self.0[i as usize];
            self.0[i as usize] = self.0[parent as usize];
            i = parent;
        }
        i
    }

    fn union(&mut self, a: u32, b: u32) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b) as usize] = a.min(b);
        }
    }
}

/// Clusters of `cloud`'s points as index lists (ascending), largest first. A cluster is
/// every point reachable through neighbours closer than `tolerance`; clusters with fewer
/// than `min_points` are left out (sensor noise, specks).
pub fn euclidean_clusters(cloud: &Cloud, tolerance: f32, min_points: usize) -> Vec<Vec<usize>> {
    if cloud.is_empty() || tolerance.is_nan() || tolerance <= 0.0 {
        return Vec::new();
    }
    let edge = tolerance / 3f32.sqrt();
    let key = |p: &[f32; 3]| p.map(|c| (c / edge).floor() as i64);
    // Cells with their points, then sorted by key (x, y, z): the cells of one (x, y)
    // column are a run, so a neighbour column is one lookup and a short scan in z, not
    // one hash lookup per neighbour cell (most of the time on a wall's 100k points).
    let mut index: FxHashMap<[i64; 3], u32> = FxHashMap::default();
    let mut cells: Vec<([i64; 3], Vec<u32>)> = Vec::new();
    let mut cell_of = Vec::with_capacity(cloud.len());
    for (i, p) in cloud.points.iter().enumerate() {
        let k = key(p);
        let c = *index.entry(k).or_insert_with(|| {
            cells.push((k, Vec::new()));
            (cells.len() - 1) as u32
        });
        cells[c as usize].1.push(i as u32);
        cell_of.push(c);
    }
    drop(index);
    let mut by_key: Vec<u32> = (0..cells.len() as u32).collect();
    by_key.sort_unstable_by_key(|&c| cells[c as usize].0);
    let mut rank = vec![0u32; cells.len()];
    for (r, &c) in by_key.iter().enumerate() {
        rank[c as usize] = r as u32;
    }
    let mut sorted: Vec<([i64; 3], Vec<u32>)> = vec![([0; 3], Vec::new()); cells.len()];
    for (c, cell) in cells.into_iter().enumerate() {
        sorted[rank[c] as usize] = cell;
    }
    let cells = sorted;
    let mut columns: FxHashMap<[i64; 2], (u32, u32)> = FxHashMap::default();
    for (c, (k, _)) in cells.iter().enumerate() {
        columns
            .entry([k[0], k[1]])
            .and_modify(|r| r.1 = c as u32 + 1)
            .or_insert((c as u32, c as u32 + 1));
    }
    let t2 = tolerance * tolerance;
    let near = |a: &[u32], b: &[u32]| {
        a.iter().any(|&i| {
            let p = &cloud.points[i as usize];
            b.iter().any(|&j| dist2(p, &cloud.points[j as usize]) <= t2)
        })
    };
    // Only cells at most two apart along each axis can hold a close pair, and not those
    // two apart along all three (their points are more than e sqrt(3) = tolerance apart).
    // Each pair of cells is looked at once, from the one with the smaller key.
    let mut comp = Components((0..cells.len() as u32).collect());
    for (c, (k, points)) in cells.iter().enumerate() {
        for (dx, dy) in HALF_COLUMNS {
            let (lo, hi) = if (dx, dy) == (0, 0) {
                (c + 1, columns[&[k[0], k[1]]].1 as usize)
            } else {
                match columns.get(&[k[0] + dx, k[1] + dy]) {
                    Some(&(lo, hi)) => (lo as usize, hi as usize),
                    None => continue,
                }
            };
            let column = &cells[lo..hi];
            let from = column.partition_point(|(o, _)| o[2] < k[2] - 2);
            for (j, (o, other)) in column.iter().enumerate().skip(from) {
                let dz = o[2] - k[2];
                if dz > 2 {
                    break;
                }
                if dz.abs() == 2 && dx.abs() == 2 && dy.abs() == 2 {
                    continue;
                }
                let j = (lo + j) as u32;
                if comp.find(j) != comp.find(c as u32) && near(points, other) {
                    comp.union(c as u32, j);
                }
            }
        }
    }
    let root_cell = |comp: &mut Components, i: usize| comp.find(rank[cell_of[i] as usize]);
    grouped(&mut comp, cells.len(), cloud.len(), root_cell, min_points)
}

/// Where each point of a cloud lies on its sensor's image: `pixel[i]` is point `i`'s
/// index `row * width + col` in the organised input it came from.
#[derive(Debug, Clone, Copy)]
pub struct PixelGrid<'a> {
    pub width: usize,
    pub height: usize,
    pub pixel: &'a [usize],
}

/// Euclidean clusters of a cloud from a depth image, a few times cheaper than
/// [`euclidean_clusters`] (fixed offsets into the image instead of hashing every point;
/// 9 against 17 ms on sample scenes' 50-90k points). Two passes:
/// 1. pieces, as PCL's `OrganizedConnectedComponentSegmentation` with a Euclidean
///    comparator: each point joins its 8 image neighbours that lie within `tolerance`;
/// 2. in space: the points of pieces no wider than `max_piece_extent` (bounding-box
///    diagonal), and the edge points (an empty pixel or another piece's beside them) of
///    wider ones (walls, the room), go through [`euclidean_clusters`], and pieces that
///    share a cluster are joined. Pass 1 alone splits what the image separates but space
///    does not: a mug's handle seen beside its body with the table between them, or
///    parts cut apart by a hole.
///
/// Same contract as [`euclidean_clusters`] and the same clusters, except that a point
/// may miss a wide piece it only comes close to away from that piece's edge (on sample
/// scenes: a point or two of a wall, never an object's). Rows that are not an image (a
/// driver's arbitrary `height`) make tiny pieces, all narrow: the same clusters, at the
/// cost of a full pass in space.
pub fn organised_clusters(
    cloud: &Cloud,
    grid: PixelGrid<'_>,
    tolerance: f32,
    min_points: usize,
    max_piece_extent: f32,
) -> Vec<Vec<usize>> {
    assert_eq!(grid.pixel.len(), cloud.len(), "a pixel per point");
    if cloud.is_empty() || tolerance.is_nan() || tolerance <= 0.0 {
        return Vec::new();
    }
    let (w, h) = (grid.width as isize, grid.height as isize);
    let mut at = vec![u32::MAX; grid.width * grid.height];
    for (i, &px) in grid.pixel.iter().enumerate() {
        at[px] = i as u32;
    }
    // The point at (row, col), if the pixel is inside the image and holds one.
    let point_at = |row: isize, col: isize| -> Option<u32> {
        let inside = (0..h).contains(&row) && (0..w).contains(&col);
        let j = if inside {
            at[(row * w + col) as usize]
        } else {
            u32::MAX
        };
        (j != u32::MAX).then_some(j)
    };
    let place = |px: usize| ((px / grid.width) as isize, (px % grid.width) as isize);
    let t2 = tolerance * tolerance;
    let close = |i: usize, j: u32| dist2(&cloud.points[i], &cloud.points[j as usize]) <= t2;
    let mut comp = Components((0..cloud.len() as u32).collect());
    // Pass 1: the forward half of the 8-neighbourhood (the next column, the next row).
    for (i, &px) in grid.pixel.iter().enumerate() {
        let (row, col) = place(px);
        for (dr, dc) in [(0, 1), (1, -1), (1, 0), (1, 1)] {
            if let Some(j) = point_at(row + dr, col + dc).filter(|&j| close(i, j)) {
                comp.union(i as u32, j);
            }
        }
    }
    // Pass 2: the points of narrow pieces and the edges of wide ones, clustered in space.
    let piece: Vec<u32> = (0..cloud.len() as u32).map(|i| comp.find(i)).collect();
    // Each piece's bounding box, kept per piece (numbered by first point), not per point.
    let mut slot = vec![u32::MAX; cloud.len()];
    let mut boxes: Vec<([f32; 3], [f32; 3])> = Vec::new();
    for (p, &r) in cloud.points.iter().zip(&piece) {
        if slot[r as usize] == u32::MAX {
            slot[r as usize] = boxes.len() as u32;
            boxes.push((*p, *p));
        }
        let (lo, hi) = &mut boxes[slot[r as usize] as usize];
        for a in 0..3 {
            (lo[a], hi[a]) = (lo[a].min(p[a]), hi[a].max(p[a]));
        }
    }
    let wide = |r: u32| {
        let (lo, hi) = &boxes[slot[r as usize] as usize];
        dist2(lo, hi) > max_piece_extent * max_piece_extent
    };
    let edge: Vec<usize> = (0..cloud.len())
        .filter(|&i| {
            if !wide(piece[i]) {
                return true;
            }
            let (row, col) = place(grid.pixel[i]);
            (-1..=1).any(|dr| {
                (-1..=1).any(|dc| {
                    let (r, c) = (row + dr, col + dc);
                    let inside = (0..h).contains(&r) && (0..w).contains(&c);
                    inside && point_at(r, c).is_none_or(|j| piece[j as usize] != piece[i])
                })
            })
        })
        .collect();
    for cluster in euclidean_clusters(&cloud.select(&edge), tolerance, 1) {
        let first = piece[edge[cluster[0]]];
        for &k in &cluster[1..] {
            comp.union(first, piece[edge[k]]);
        }
    }
    let root = |comp: &mut Components, i: usize| comp.find(i as u32);
    grouped(&mut comp, cloud.len(), cloud.len(), root, min_points)
}

/// Points by component (`root(i)` in `0..components`), in point order; those of at least
/// `min_points`, largest first (ties: the one with the lower first point).
fn grouped(
    comp: &mut Components,
    components: usize,
    points: usize,
    root: impl Fn(&mut Components, usize) -> u32,
    min_points: usize,
) -> Vec<Vec<usize>> {
    let mut slot: Vec<u32> = vec![u32::MAX; components];
    let mut members: Vec<Vec<usize>> = Vec::new();
    for i in 0..points {
        let r = root(comp, i) as usize;
        if slot[r] == u32::MAX {
            slot[r] = members.len() as u32;
            members.push(Vec::new());
        }
        members[slot[r] as usize].push(i);
    }
    let mut kept: Vec<Vec<usize>> = members
        .into_iter()
        .filter(|m| m.len() >= min_points)
        .collect();
    kept.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(centre: [f32; 3], n: usize, spacing: f32) -> Vec<[f32; 3]> {
        let side = (n as f32).cbrt().ceil() as usize;
        (0..n)
            .map(|i| {
                let (x, y, z) = (i % side, (i / side) % side, i / (side * side));
                [
                    centre[0] + x as f32 * spacing,
                    centre[1] + y as f32 * spacing,
                    centre[2] + z as f32 * spacing,
                ]
            })
            .collect()
    }

    #[test]
    fn separate_blobs_are_separate_clusters_and_specks_go() {
        let mut pts = blob([0.0; 3], 500, 0.005);
        pts.extend(blob([0.3, 0.0, 0.0], 200, 0.005));
        pts.push([1.0, 1.0, 1.0]); // a speck
        let clusters = euclidean_clusters(&Cloud::new(pts), 0.01, 5);
        assert_eq!(clusters.len(), 2);
        assert_eq!(clusters[0].len(), 500);
        assert_eq!(clusters[1].len(), 200);
        assert!(clusters[1].iter().all(|i| (500..700).contains(i)));
    }

    #[test]
    fn a_chain_of_close_points_is_one_cluster() {
        // Points 8 mm apart along a line: end to end far more than the tolerance.
        let pts: Vec<[f32; 3]> = (0..100).map(|i| [i as f32 * 0.008, 0.0, 0.0]).collect();
        let clusters = euclidean_clusters(&Cloud::new(pts), 0.01, 1);
        assert_eq!(clusters.len(), 1);
        assert_eq!(clusters[0].len(), 100);
        // A gap wider than the tolerance splits it.
        let mut split: Vec<[f32; 3]> = (0..50).map(|i| [i as f32 * 0.008, 0.0, 0.0]).collect();
        split.extend((0..50).map(|i| [1.0 + i as f32 * 0.008, 0.0, 0.0]));
        assert_eq!(euclidean_clusters(&Cloud::new(split), 0.01, 1).len(), 2);
    }

    #[test]
    fn equals_brute_force_clustering() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        // Sparse enough that many pairs sit near the tolerance.
        let pts: Vec<[f32; 3]> = (0..1500)
            .map(|_| {
                [
                    rng.random::<f32>() * 0.2,
                    rng.random::<f32>() * 0.2,
                    rng.random::<f32>() * 0.05,
                ]
            })
            .collect();
        let cloud = Cloud::new(pts);
        let tol = 0.006;
        let mut comp = Components((0..cloud.len() as u32).collect());
        for i in 0..cloud.len() {
            for j in i + 1..cloud.len() {
                if dist2(&cloud.points[i], &cloud.points[j]) <= tol * tol {
                    comp.union(i as u32, j as u32);
                }
            }
        }
        let mut brute: FxHashMap<u32, Vec<usize>> = FxHashMap::default();
        for i in 0..cloud.len() {
            brute.entry(comp.find(i as u32)).or_default().push(i);
        }
        let mut brute: Vec<Vec<usize>> = brute.into_values().filter(|m| m.len() >= 2).collect();
        brute.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
        let ours = euclidean_clusters(&cloud, tol, 2);
        assert!(ours.len() > 10, "{}", ours.len());
        assert_eq!(ours, brute);
    }

    /// A pinhole camera's view (80 x 60 pixels, focal length `f` px) of a wall 2 m away
    /// and boxes' fronts: `depth(row, col)` where one is hit (else the wall), with
    /// one-pixel holes; point order follows pixels.
    fn depth_image(f: f32, depth: impl Fn(usize, usize) -> Option<f32>) -> (Cloud, Vec<usize>) {
        let (mut points, mut pixel) = (Vec::new(), Vec::new());
        for row in 0..60 {
            for col in 0..80 {
                if (row * 7 + col * 3) % 11 == 0 {
                    continue; // a hole
                }
                let z = depth(row, col).unwrap_or(2.0);
                let (u, v) = ((col as f32 - 40.0) / f, (row as f32 - 30.0) / f);
                points.push([u * z, v * z, z]);
                pixel.push(row * 80 + col);
            }
        }
        (Cloud::new(points), pixel)
    }

    fn grid(pixel: &[usize]) -> PixelGrid<'_> {
        PixelGrid {
            width: 80,
            height: 60,
            pixel,
        }
    }

    #[test]
    fn on_a_depth_image_the_clusters_are_the_euclidean_ones() {
        // Two boxes 2 cm apart in depth that touch on the image.
        let (cloud, pixel) = depth_image(100.0, |row, col| match (row, col) {
            (10..=30, 10..=30) => Some(1.0),
            (25..=45, 31..=60) => Some(1.02),
            _ => None,
        });
        // Neighbouring pixels are 1 cm apart at 1 m, 2 cm at 2 m; a hole doubles that.
        for tol in [0.015, 0.025, 0.03, 0.05] {
            for wide in [0.1, 10.0] {
                let ours = organised_clusters(&cloud, grid(&pixel), tol, 5, wide);
                assert_eq!(ours, euclidean_clusters(&cloud, tol, 5), "tolerance {tol}");
            }
        }
        let split = organised_clusters(&cloud, grid(&pixel), 0.015, 5, 0.5);
        let near_ones = split.iter().filter(|c| cloud.points[c[0]][2] < 1.5).count();
        assert_eq!(near_ones, 2, "the boxes are 2 cm apart");
    }

    #[test]
    fn pieces_the_image_separates_but_space_does_not_are_joined() {
        // f = 500: one box's front with a 3-pixel band of the wall showing through it,
        // 8 mm across at 1 m. Its two halves are one object at a tolerance of 1.5 cm.
        let (cloud, pixel) = depth_image(500.0, |row, col| match (row, col) {
            (10..=40, 10..=30 | 34..=50) => Some(1.0),
            _ => None,
        });
        let near = |clusters: &[Vec<usize>]| {
            clusters
                .iter()
                .filter(|c| cloud.points[c[0]][2] < 1.5)
                .map(Vec::len)
                .collect::<Vec<_>>()
        };
        // The wall (0.4 m across) is wide at 0.3 and narrow at 1.
        for wide in [0.3, 1.0] {
            let joined = organised_clusters(&cloud, grid(&pixel), 0.015, 5, wide);
            assert_eq!(joined, euclidean_clusters(&cloud, 0.015, 5));
            assert_eq!(near(&joined).len(), 1, "one box: {:?}", near(&joined));
            let apart = organised_clusters(&cloud, grid(&pixel), 0.005, 5, wide);
            assert_eq!(near(&apart).len(), 2, "two halves: {:?}", near(&apart));
        }
    }

    #[test]
    fn empty_or_bad_tolerance_gives_nothing() {
        assert!(euclidean_clusters(&Cloud::default(), 0.01, 1).is_empty());
        let one = Cloud::new(vec![[0.0; 3]]);
        assert!(euclidean_clusters(&one, 0.0, 1).is_empty());
        assert!(euclidean_clusters(&one, f32::NAN, 1).is_empty());
    }
}
