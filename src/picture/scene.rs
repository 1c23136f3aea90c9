//! A picture of a scene (`semcorr infer --png` with `segment_scene`): the filtered cloud
//! seen from the sensor (perspective, looking at the cloud's centroid, the scene's up
//! pointing up), each object's points in its category's colour, its box, its keypoints
//! and a label.

use super::font::{register_font, FONT_FAMILY};
use super::keypoint_color;
use crate::error::{Error, Result};
use crate::pipeline::CloudResult;
use nalgebra::Vector3;
use plotters::prelude::*;
use std::path::Path;

/// At most this many points are drawn (a 640 x 480 scan has 300k).
const MAX_DRAWN: usize = 80_000;

/// A colour per model, by its index in the pipeline.
fn category_color(model: usize) -> RGBColor {
    const PALETTE: [RGBColor; 6] = [
        RGBColor(230, 120, 20),
        RGBColor(30, 120, 220),
        RGBColor(40, 170, 60),
        RGBColor(200, 40, 160),
        RGBColor(150, 110, 40),
        RGBColor(20, 170, 170),
    ];
    PALETTE[model % PALETTE.len()]
}

/// Draws `r` to a `width x height` PNG at `path`.
pub fn render_scene_png(
    path: &Path,
    r: &CloudResult,
    title: &str,
    (width, height): (u32, u32),
) -> Result<()> {
    let err = |e: String| Error::format(path, format!("drawing the picture: {e}"));
    let points = &r.filtered.points;
    let n = points.len().max(1) as f32;
    let centre = points
        .iter()
        .fold(Vector3::zeros(), |a, p| a + Vector3::from(*p))
        / n;
    let forward = centre.try_normalize(1e-9).unwrap_or(Vector3::z());
    let up0 = Vector3::from(r.scene.up);
    let right = forward
        .cross(&up0)
        .try_normalize(1e-9)
        .unwrap_or(Vector3::x());
    let up = right.cross(&forward);
    // Perspective from the sensor (the origin); points behind it are skipped.
    let project = |p: Vector3<f32>| -> Option<(f32, f32, f32)> {
        let d = p.dot(&forward);
        (d > 1e-3).then(|| (p.dot(&right) / d, p.dot(&up) / d, d))
    };
    let mut owner = vec![usize::MAX; points.len()];
    for (k, o) in r.objects.iter().enumerate() {
        for &i in &o.indices {
            owner[i] = k;
        }
    }
    let step = points.len().div_ceil(MAX_DRAWN).max(1);
    let mut drawn: Vec<(f32, f32, f32, usize)> = (0..points.len())
        .filter(|&i| i % step == 0 || owner[i] != usize::MAX)
        .filter_map(|i| project(Vector3::from(points[i])).map(|(x, y, d)| (x, y, d, i)))
        .collect();
    drawn.sort_by(|a, b| b.2.total_cmp(&a.2));
    let (mut x0, mut x1, mut y0, mut y1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
    for &(x, y, _, _) in &drawn {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    let margin = 30.0;
    let (w, h) = (width as f32, height as f32);
    let s =
        ((w - 2.0 * margin) / (x1 - x0).max(1e-6)).min((h - 2.0 * margin) / (y1 - y0).max(1e-6));
    let to_px = |x: f32, y: f32| -> (i32, i32) {
        let cx = w / 2.0 + (x - 0.5 * (x0 + x1)) * s;
        let cy = h / 2.0 - (y - 0.5 * (y0 + y1)) * s;
        (cx.round() as i32, cy.round() as i32)
    };
    let px = |p: Vector3<f32>| project(p).map(|(x, y, _)| to_px(x, y));
    let (dmin, dmax) = drawn
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), d| (a.min(d.2), b.max(d.2)));
    let text_ok = register_font();
    let root = BitMapBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    for &(x, y, d, i) in &drawn {
        let color = match r.objects.get(owner[i]) {
            Some(o) if o.category.is_some() => category_color(o.model),
            Some(_) => RGBColor(90, 90, 90),
            None => {
                // Background: nearer is darker.
                let t = (d - dmin) / (dmax - dmin).max(1e-6);
                let g = (150.0 + 90.0 * t) as u8;
                RGBColor(g, g, g)
            }
        };
        root.draw(&Pixel::new(to_px(x, y), color))
            .map_err(|e| err(e.to_string()))?;
    }
    let font = (FONT_FAMILY, 14).into_font();
    for (id, o) in r.detections() {
        let color = category_color(o.model);
        let q = o.pose.rotation();
        let c = Vector3::from(o.pose.position);
        let half = Vector3::from(o.pose.size) * 0.5;
        let corner = |k: usize| {
            let sign = |b: usize| if k & (1 << b) != 0 { 1.0 } else { -1.0 };
            c + q * Vector3::new(sign(0) * half.x, sign(1) * half.y, sign(2) * half.z)
        };
        for a in 0..8usize {
            for b in 0..3 {
                let other = a | (1 << b);
                if other != a {
                    if let (Some(p), Some(q)) = (px(corner(a)), px(corner(other))) {
                        root.draw(&PathElement::new(vec![p, q], color.stroke_width(2)))
                            .map_err(|e| err(e.to_string()))?;
                    }
                }
            }
        }
        for k in &o.correspondences {
            let Some(p) = px(Vector3::from(k.xyz)) else {
                continue;
            };
            let [cr, cg, cb, _] = keypoint_color(k.keypoint_id).map(|v| (v * 255.0) as u8);
            root.draw(&Circle::new(p, 4, RGBColor(cr, cg, cb).filled()))
                .map_err(|e| err(e.to_string()))?;
            root.draw(&Circle::new(p, 4, BLACK.stroke_width(1)))
                .map_err(|e| err(e.to_string()))?;
        }
        if text_ok {
            let top = c + q * Vector3::new(0.0, 0.0, half.z);
            if let Some(p) = px(top) {
                let label = format!(
                    "{} {id} {:.2} ({} kp)",
                    o.category.as_deref().unwrap_or("?"),
                    o.score,
                    o.correspondences.len()
                );
                root.draw(&Text::new(
                    label,
                    (p.0 - 30, p.1 - 20),
                    font.clone().color(&color),
                ))
                .map_err(|e| err(e.to_string()))?;
            }
        }
    }
    if text_ok {
        root.draw(&Text::new(
            title.to_string(),
            (10, 10),
            (FONT_FAMILY, 16).into_font(),
        ))
        .map_err(|e| err(e.to_string()))?;
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
