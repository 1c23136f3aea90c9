//! A picture of an inference: the cloud coloured by its embeddings (first three principal
//! components to RGB, as CPNet's Figure 5) seen from above the front at three quarters,
//! with the matched keypoints marked and labelled.

use super::font::{register_font, FONT_FAMILY};
use super::pca_colors;
use crate::cloud::{Cloud, Prepared};
use crate::embedding::Embeddings;
use crate::error::{Error, Result};
use crate::matching::KeypointMatch;
use plotters::prelude::*;
use std::path::Path;

/// The view: yaw 35 degrees about the up axis (y, ShapeNet's convention), then pitch 30
/// degrees looking down. Returns (screen x, screen y up, depth towards the viewer).
fn view(p: [f32; 3]) -> (f32, f32, f32) {
    let (sy, cy) = 35f32.to_radians().sin_cos();
    let (sp, cp) = 30f32.to_radians().sin_cos();
    let x = cy * p[0] + sy * p[2];
    let z = -sy * p[0] + cy * p[2];
    let y = cp * p[1] - sp * z;
    let depth = sp * p[1] + cp * z;
    (x, y, depth)
}

/// Draws the picture to a `width x height` PNG at `path`. `cloud` is in the frame the
/// picture shows (y up); each match's `index` refers to it.
pub fn render_png(
    path: &Path,
    cloud: &Cloud,
    prepared: &Prepared,
    emb: &Embeddings,
    matches: &[KeypointMatch],
    title: &str,
    (width, height): (u32, u32),
) -> Result<()> {
    let err = |e: String| Error::format(path, format!("drawing the picture: {e}"));
    let colors = pca_colors(emb);
    let nearest = prepared.nearest_sample_of_each(cloud);
    // Orthographic projection of the normalised cloud (diagonal 1), far to near.
    let mut proj: Vec<(f32, f32, f32, usize)> = cloud
        .points
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let (x, y, d) = view(prepared.transform.apply_point(p));
            (x, y, d, i)
        })
        .collect();
    proj.sort_by(|a, b| a.2.total_cmp(&b.2));
    let (mut x0, mut x1, mut y0, mut y1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
    for &(x, y, _, _) in &proj {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let margin = 60.0;
    let (w, h) = (width as f32, height as f32);
    let s =
        ((w - 2.0 * margin) / (x1 - x0).max(1e-6)).min((h - 2.0 * margin) / (y1 - y0).max(1e-6));
    let to_px = |x: f32, y: f32| -> (i32, i32) {
        let cx = w / 2.0 + (x - 0.5 * (x0 + x1)) * s;
        let cy = h / 2.0 - (y - 0.5 * (y0 + y1)) * s;
        (cx.round() as i32, cy.round() as i32)
    };
    let text_ok = register_font();
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let radius = ((w.min(h) / 250.0).round() as i32).max(2);
    for &(x, y, _, i) in &proj {
        let [r, g, b] = colors[nearest[i]];
        root.draw(&Circle::new(
            to_px(x, y),
            radius,
            RGBColor(r, g, b).filled(),
        ))
        .map_err(|e| err(e.to_string()))?;
    }
    let font = (FONT_FAMILY, 16).into_font();
    for m in matches {
        let (x, y, _) = view(prepared.transform.apply_point(cloud.points[m.index]));
        let c = to_px(x, y);
        let style = if m.accepted {
            BLACK
        } else {
            RGBColor(160, 160, 160)
        };
        root.draw(&Circle::new(c, radius * 3, style.stroke_width(3)))
            .map_err(|e| err(e.to_string()))?;
        if text_ok {
            let label = match &m.name {
                Some(n) => format!("{} {n} ({:.2})", m.semantic_id, m.score),
                None => format!("{} ({:.2})", m.semantic_id, m.score),
            };
            root.draw(&Text::new(
                label,
                (c.0 + radius * 3 + 2, c.1 - 8),
                font.clone().color(&style),
            ))
            .map_err(|e| err(e.to_string()))?;
        }
    }
    if text_ok {
        root.draw(&Text::new(
            title.to_string(),
            (10, 10),
            (FONT_FAMILY, 18).into_font(),
        ))
        .map_err(|e| err(e.to_string()))?;
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
