//! PNG output: a grid of tiles, each a sample's input and heatmap side by side with a caption, upscaled.

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
    /// The picture would be too large.
    #[error(
        "{tiles} samples of this size make a {width}×{height} picture, more than one PNG should hold; write fewer \
         (--count) or the relevance with --out"
    )]
    TooLarge {
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
        /// Samples asked for.
        tiles: usize,
    },
    /// Too many tiles for one picture.
    #[error("{count} samples are too many for one PNG (at most {max}); write the relevance with --out instead")]
    TooMany {
        /// Samples asked for.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// One tile of the picture: an input image (`[0, 1]`), its relevance map, and caption lines.
pub struct Panel {
    /// The input, as a 2-D map.
    pub image: Array2<f32>,
    /// The relevance, as a 2-D map of the same size.
    pub relevance: Array2<f32>,
    /// Lines under the maps (index, label, prediction, …); `max |R|` is added.
    pub caption: Vec<String>,
}

/// The most tiles one PNG holds (more would make an image no viewer opens).
pub const MAX_TILES: usize = 4096;
/// The most pixels one PNG holds (large inputs make large tiles): 64 Mpx, a 192 MiB drawing buffer.
pub const MAX_PIXELS: usize = 64 << 20;

/// Pixels per map pixel: about 280 pixels for one sample, smaller as the grid grows.
pub fn upscale_for(h: usize, w: usize, tiles: usize) -> usize {
    let target = match tiles {
        0..=1 => 280,
        2..=16 => 168,
        17..=256 => 112,
        _ => 56,
    };
    (target / h.max(w).max(1)).clamp(1, 32)
}

/// Columns of the grid: about square, at most 16 (and never more than the tiles).
pub fn grid_columns(tiles: usize) -> usize {
    ((tiles as f64).sqrt().ceil() as usize).clamp(1, 16).min(tiles.max(1))
}

const GAP: usize = 10;
const BORDER: Rgb = Rgb(90, 90, 90);
const TEXT: usize = 14;
const HEADER: usize = 72;

fn text_style(size: usize) -> plotters::style::TextStyle<'static> {
    use plotters::style::IntoFont;
    ("sans-serif", size as f64).into_font().color(&plotters::style::BLACK)
}

/// Draws the panels as a grid of tiles (columns × rows), each tile the input and its heatmap side by side with a
/// border between them and caption lines under them (each heatmap scaled by its own max |R|, which the caption
/// gives), under a header with `title` and a color bar; writes a PNG.
pub fn write_png(path: &Path, title: &str, panels: &[Panel]) -> Result<(), PngError> {
    use plotters::prelude::*;
    let first = panels.first().ok_or(PngError::Empty)?;
    if panels.len() > MAX_TILES {
        return Err(PngError::TooMany {
            count: panels.len(),
            max: MAX_TILES,
        });
    }
    crate::plot::ensure_font();
    let (h, w) = first.image.dim();
    let k = upscale_for(h, w, panels.len());
    let lines = panels.iter().map(|p| p.caption.len() + 1).max().unwrap_or(1);
    let font = if k * w >= 100 { TEXT } else { 11 };
    let tile_w = (2 * (w * k + 2) + 4).max(150);
    let tile_h = h * k + 2 + 4 + lines * (font + 3);
    let cols = grid_columns(panels.len());
    let rows = panels.len().div_ceil(cols);
    let width = (cols * (tile_w + GAP) + GAP).max(420);
    let height = HEADER + rows * (tile_h + GAP) + GAP;
    if width.saturating_mul(height) > MAX_PIXELS {
        return Err(PngError::TooLarge {
            width,
            height,
            tiles: panels.len(),
        });
    }
    let mut buf = vec![255u8; width * height * 3];
    {
        let mut put = |x: usize, y: usize, c: Rgb| {
            let i = (y * width + x) * 3;
            buf[i..i + 3].copy_from_slice(&[c.0, c.1, c.2]);
        };
        // The color bar: −1 … +1 over 200 pixels.
        for x in 0..200 {
            let v = x as f32 / 199.0 * 2.0 - 1.0;
            for y in 0..12 {
                put(GAP + 60 + x, 32 + y, heat(v));
            }
        }
        for (p, panel) in panels.iter().enumerate() {
            let (col, row) = (p % cols, p / cols);
            let left = GAP + col * (tile_w + GAP);
            let top = HEADER + GAP + row * (tile_h + GAP);
            let scale = max_abs(&panel.relevance);
            let (ph, pw) = (h.min(panel.image.nrows()), w.min(panel.image.ncols()));
            for (offset, heatmap) in [(0, false), (w * k + 6, true)] {
                let x0 = left + offset;
                for y in 0..h * k + 2 {
                    for x in 0..w * k + 2 {
                        let inside = y > 0 && x > 0 && y <= h * k && x <= w * k;
                        let c = if !inside {
                            BORDER
                        } else {
                            let (my, mx) = ((y - 1) / k, (x - 1) / k);
                            if my >= ph || mx >= pw {
                                Rgb(255, 255, 255)
                            } else if heatmap {
                                let r = panel.relevance.get([my, mx]).copied().unwrap_or(0.0);
                                heat(if scale > 0.0 { r / scale } else { 0.0 })
                            } else {
                                gray(panel.image[[my, mx]])
                            }
                        };
                        put(x0 + x, top + y, c);
                    }
                }
            }
        }
    }
    let draw_err = |e: String| PngError::Encode {
        path: path.to_path_buf(),
        reason: e,
    };
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width as u32, height as u32)).into_drawing_area();
        let t = |s: &str, x: usize, y: usize, size: usize| {
            root.draw_text(s, &text_style(size), (x as i32, y as i32))
                .map_err(|e| draw_err(e.to_string()))
        };
        t(title, GAP, 8, 16)?;
        t("−max|R|", GAP, 31, 13)?;
        t("0", GAP + 60 + 96, 30, 11)?;
        t("+max|R|", GAP + 60 + 206, 31, 13)?;
        t("each tile: input | relevance, scaled by its own max|R|", GAP, 52, 13)?;
        for (p, panel) in panels.iter().enumerate() {
            let (col, row) = (p % cols, p / cols);
            let left = GAP + col * (tile_w + GAP);
            let mut y = HEADER + GAP + row * (tile_h + GAP) + h * k + 2 + 4;
            let scale = max_abs(&panel.relevance);
            for line in panel.caption.iter().cloned().chain([format!("max|R| {scale:.4}")]) {
                t(&line, left, y, font)?;
                y += font + 3;
            }
        }
        root.present().map_err(|e| draw_err(e.to_string()))?;
    }
    write_rgb(path, width as u32, height as u32, &buf)
}

fn max_abs(a: &Array2<f32>) -> f32 {
    a.iter().filter(|v| !v.is_nan()).fold(0.0f32, |m, v| m.max(v.abs()))
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
            let file = std::fs::File::create(tmp).map_err(|e| io_err(path, e))?;
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
