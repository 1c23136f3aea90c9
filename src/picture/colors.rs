//! Colours of embeddings: one RGB per point from the embeddings' top three principal
//! components (as CPNet's Figure 5), used by the inference picture and the node's
//! `~/output/embedding_cloud` alike.

use crate::embedding::Embeddings;
use nalgebra::{DMatrix, SymmetricEigen};

/// Per-sample RGB from the top three principal components of the embeddings, each mapped
/// to 0..255 by rank.
pub fn pca_colors(emb: &Embeddings) -> Vec<[u8; 3]> {
    let (n, d) = (emb.num_points, emb.dim);
    if n == 0 || d == 0 {
        return vec![[128; 3]; n];
    }
    let mut mean = vec![0f64; d];
    for i in 0..n {
        for (m, &v) in mean.iter_mut().zip(emb.row(i)) {
            *m += v as f64 / n as f64;
        }
    }
    let mut cov = DMatrix::<f64>::zeros(d, d);
    let mut c = vec![0f64; d];
    for i in 0..n {
        for (k, (&v, m)) in emb.row(i).iter().zip(&mean).enumerate() {
            c[k] = v as f64 - m;
        }
        for a in 0..d {
            for b in a..d {
                cov[(a, b)] += c[a] * c[b];
            }
        }
    }
    for a in 0..d {
        for b in 0..a {
            cov[(a, b)] = cov[(b, a)];
        }
    }
    let eig = SymmetricEigen::new(cov);
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let mut chan = [vec![0f64; n], vec![0f64; n], vec![0f64; n]];
    for (ch, &k) in chan
        .iter_mut()
        .zip(order.iter().chain(order.iter()).take(3))
    {
        let v = eig.eigenvectors.column(k);
        for (i, out) in ch.iter_mut().enumerate() {
            *out = emb
                .row(i)
                .iter()
                .zip(&mean)
                .enumerate()
                .map(|(j, (&x, m))| (x as f64 - m) * v[j])
                .sum();
        }
    }
    // Rank per channel (histogram equalisation): embeddings are heavy-tailed, and min-max
    // or percentile scaling left most of a cloud one colour.
    let scaled: Vec<Vec<u8>> = chan
        .iter()
        .map(|ch| {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| ch[a].total_cmp(&ch[b]));
            let mut out = vec![0u8; n];
            for (rank, &i) in order.iter().enumerate() {
                out[i] = (rank * 255 / (n - 1).max(1)) as u8;
            }
            out
        })
        .collect();
    (0..n)
        .map(|i| [scaled[0][i], scaled[1][i], scaled[2][i]])
        .collect()
}

/// A keypoint's colour: hues spread by the golden angle so neighbouring ids differ.
pub fn keypoint_color(id: u32) -> [f32; 4] {
    let h = (id as f32 * 0.618_034).fract() * 6.0;
    let x = 1.0 - (h % 2.0 - 1.0).abs();
    let [r, g, b] = match h as u32 {
        0 => [1.0, x, 0.0],
        1 => [x, 1.0, 0.0],
        2 => [0.0, 1.0, x],
        3 => [0.0, x, 1.0],
        4 => [x, 0.0, 1.0],
        _ => [1.0, 0.0, x],
    };
    [r, g, b, 1.0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colors_differ_between_neighbours() {
        assert_ne!(keypoint_color(0), keypoint_color(1));
        assert_ne!(keypoint_color(1), keypoint_color(2));
    }
}
