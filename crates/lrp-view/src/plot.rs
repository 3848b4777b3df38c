//! Line plots of perturbation curves (plotters, drawn into memory, written with the png crate).

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::png_out::PngError;

static FONT: Once = Once::new();

/// Registers the embedded font once (plots and PNG captions use it).
pub(crate) fn ensure_font() {
    FONT.call_once(|| {
        // The embedded font is valid, so registration cannot fail; a failure would only cost the labels.
        let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

/// One named curve.
pub struct Series {
    /// Legend text.
    pub name: String,
    /// y values at x = 0, 1, 2, …
    pub values: Vec<f32>,
}

/// Draws `series` as lines (x: step, an integer axis; y: value) with a legend and writes a PNG of `width × height`.
pub fn write_line_plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    (width, height): (u32, u32),
) -> Result<(), PngError> {
    ensure_font();
    let mut buf = vec![255u8; (width * height * 3) as usize];
    let draw_err = |e: String| PngError::Encode {
        path: path.to_path_buf(),
        reason: e,
    };
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(e.to_string()))?;
        let steps = series.iter().map(|s| s.values.len()).max().unwrap_or(1).max(2) - 1;
        let (lo, hi) = series
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .filter(|v| v.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        let (lo, hi) = if lo.is_finite() && hi > lo {
            (lo, hi)
        } else {
            (0.0, 1.0)
        };
        let pad = (hi - lo) * 0.05;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(0i32..steps as i32, (lo - pad)..(hi + pad))
            .map_err(|e| draw_err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style(("sans-serif", 14))
            .x_labels(steps.clamp(2, 12) + 1)
            .draw()
            .map_err(|e| draw_err(e.to_string()))?;
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    s.values.iter().enumerate().map(|(x, &y)| (x as i32, y)),
                    color.stroke_width(2),
                ))
                .map_err(|e| draw_err(e.to_string()))?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| draw_err(e.to_string()))?;
        root.present().map_err(|e| draw_err(e.to_string()))?;
    }
    crate::png_out::write_rgb(path, width, height, &buf)
}
