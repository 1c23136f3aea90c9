//! Training records a person reads: `metrics.csv` and a PNG of the curves.

use super::checkpoint::EpochMetrics;
use crate::error::{write_file_atomic, Error, Result};
use crate::picture::font::{register_font, FONT_FAMILY};
use plotters::prelude::*;
use std::path::Path;

/// The run folder's metric table, one row per epoch.
pub const METRICS_CSV: &str = "metrics.csv";
/// The run folder's loss and mGE curves.
pub const CURVES_PNG: &str = "curves.png";

pub fn write_metrics(dir: &Path, history: &[EpochMetrics]) -> Result<()> {
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.6}"));
    let mut csv = String::from(
        "epoch,lr,train_loss,train_pull,train_push,val_loss,val_mge,seconds,test_mge\n",
    );
    for m in history {
        csv.push_str(&format!(
            "{},{:.6e},{:.6},{:.6},{:.6},{},{},{:.3},{}\n",
            m.epoch,
            m.lr,
            m.train_loss,
            m.train_pull,
            m.train_push,
            opt(m.val_loss),
            opt(m.val_mge),
            m.seconds,
            opt(m.test_mge)
        ));
    }
    write_file_atomic(dir.join(METRICS_CSV), csv.as_bytes())
}

/// A named, coloured curve.
type Line = (&'static str, RGBColor, Vec<(f64, f64)>);

/// Loss curves on the left, validation mGE on the right.
pub fn plot_curves(path: &Path, history: &[EpochMetrics]) -> Result<()> {
    let err = |e: String| {
        Error::invalid(format!(
            "{}: drawing the training curves: {e}",
            path.display()
        ))
    };
    if history.is_empty() {
        return Ok(());
    }
    let has_text = register_font();
    {
        let root = BitMapBackend::new(path, (1000, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let (left, right) = root.split_horizontally(500);
        let last = history.last().map_or(1, |m| m.epoch) as f64;
        let first = history.first().map_or(0, |m| m.epoch) as f64 - 1.0;
        let series = |f: &dyn Fn(&EpochMetrics) -> Option<f64>| -> Vec<(f64, f64)> {
            history
                .iter()
                .filter_map(|m| f(m).filter(|v| v.is_finite()).map(|v| (m.epoch as f64, v)))
                .collect()
        };
        let panels: [(&DrawingArea<_, _>, &str, Vec<Line>); 2] = [
            (
                &left,
                "loss",
                vec![
                    ("train", BLUE, series(&|m| Some(m.train_loss))),
                    ("val", RED, series(&|m| m.val_loss)),
                ],
            ),
            (
                &right,
                "validation mGE",
                vec![("val mGE", GREEN, series(&|m| m.val_mge))],
            ),
        ];
        for (area, title, lines) in panels {
            let ymax = lines
                .iter()
                .flat_map(|l| l.2.iter().map(|p| p.1))
                .fold(0.0f64, f64::max)
                .max(1e-6)
                * 1.05;
            let mut builder = ChartBuilder::on(area);
            builder
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(50);
            if has_text {
                builder.caption(title, (FONT_FAMILY, 18));
            }
            let mut chart = builder
                .build_cartesian_2d(first..last.max(first + 1.0), 0.0..ymax)
                .map_err(|e| err(e.to_string()))?;
            let mut mesh = chart.configure_mesh();
            if !has_text {
                mesh.disable_x_axis().disable_y_axis();
            }
            mesh.x_desc("epoch")
                .draw()
                .map_err(|e| err(e.to_string()))?;
            for (label, color, points) in lines {
                if points.is_empty() {
                    continue;
                }
                let s = chart
                    .draw_series(LineSeries::new(points, color.stroke_width(2)))
                    .map_err(|e| err(e.to_string()))?;
                if has_text {
                    s.label(label).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                }
            }
            if has_text {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .label_font((FONT_FAMILY, 14))
                    .draw()
                    .map_err(|e| err(e.to_string()))?;
            }
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}
