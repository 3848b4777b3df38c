//! PNG output: each sample's input and heatmap side by side, upscaled.

use std::io::BufWriter;
use std::path::Path;

use ndarray::Array2;

use crate::colormap::{Rgb, gray, heat};

/// Why a PNG could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PngError {
    /// The file could not be created or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The encoder refused the image.
    #[error("{}: cannot encode PNG: {reason}", path.display())]
    Encode {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        reason: String,
    },
    /// Nothing to draw.
    #[error("nothing to draw: no samples")]
    Empty,
}

/// One row of the picture: an input image (`[0, 1]`) and its relevance map.
pub struct Panel {
    /// The input, as a 2-D map.
    pub image: Array2<f32>,
    /// The relevance, as a 2-D map of the same size.
    pub relevance: Array2<f32>,
}

/// Pixels per map pixel so the larger side is about 280 pixels (a 28×28 digit at 10×).
pub fn upscale_for(h: usize, w: usize) -> usize {
    (280 / h.max(w).max(1)).clamp(1, 32)
}

/// Draws every panel as a row (input left, heatmap right, each heatmap scaled by its own max |R|) and writes a PNG.
pub fn write_png(path: &Path, panels: &[Panel]) -> Result<(), PngError> {
    let first = panels.first().ok_or(PngError::Empty)?;
    let (h, w) = first.image.dim();
    let k = upscale_for(h, w);
    let gap = 8;
    let width = 2 * w * k + 3 * gap;
    let height = panels.len() * (h * k + gap) + gap;
    let mut buf = vec![255u8; width * height * 3];
    let mut put = |x: usize, y: usize, c: Rgb| {
        let i = (y * width + x) * 3;
        buf[i..i + 3].copy_from_slice(&[c.0, c.1, c.2]);
    };
    for (p, panel) in panels.iter().enumerate() {
        let scale = panel
            .relevance
            .iter()
            .filter(|v| !v.is_nan())
            .fold(0.0f32, |m, v| m.max(v.abs()));
        let top = gap + p * (h * k + gap);
        for y in 0..h.min(panel.image.nrows()) {
            for x in 0..w.min(panel.image.ncols()) {
                let img = gray(panel.image[[y, x]]);
                let r = panel.relevance[[y, x]];
                let hm = heat(if scale > 0.0 { r / scale } else { 0.0 });
                for dy in 0..k {
                    for dx in 0..k {
                        put(gap + x * k + dx, top + y * k + dy, img);
                        put(2 * gap + w * k + x * k + dx, top + y * k + dy, hm);
                    }
                }
            }
        }
    }
    write_rgb(path, width as u32, height as u32, &buf)
}

/// Writes 8-bit RGB pixels (`width × height × 3`, row-major) as a PNG, via a temporary file renamed into place.
pub fn write_rgb(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<(), PngError> {
    let io_err = |p: &Path, source: std::io::Error| PngError::Io {
        path: p.to_path_buf(),
        source,
    };
    let encode_err = |e: png::EncodingError| PngError::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    lrp_core::atomic::write_atomically(
        path,
        |tmp| {
            let file = std::fs::File::create(tmp).map_err(|e| io_err(tmp, e))?;
            let mut enc = png::Encoder::new(BufWriter::new(file), width, height);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc.write_header().map_err(encode_err)?;
            writer.write_image_data(rgb).map_err(encode_err)?;
            writer.finish().map_err(encode_err)
        },
        |e| io_err(path, e),
    )
}
