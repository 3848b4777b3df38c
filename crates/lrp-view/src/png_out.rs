//! PNG output: a grid of tiles, each a sample's input and heatmap side by side with a caption, upscaled.

use std::io::BufWriter;
use std::path::Path;

use ndarray::{Array2, Array3};

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
    /// The input as a colour photo `[H, W, 3]` in [0, 1], when it is one: the tile then shows the photo, the
    /// relevance blended over it (on its gray version) and the relevance alone.
    pub picture: Option<Array3<f32>>,
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
    let photos = panels.iter().any(|p| p.picture.is_some());
    let panes = if photos { 3 } else { 2 };
    let tile_w = (panes * (w * k + 2) + 4 * (panes - 1)).max(150);
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
            let scale = colour_scale(panel);
            let (ph, pw) = (h.min(panel.image.nrows()), w.min(panel.image.ncols()));
            let kinds: &[Pane] = if panel.picture.is_some() {
                &[Pane::Input, Pane::Overlay, Pane::Heat]
            } else if photos {
                &[Pane::Input, Pane::Heat, Pane::Blank]
            } else {
                &[Pane::Input, Pane::Heat]
            };
            for (i, &kind) in kinds.iter().enumerate() {
                let x0 = left + i * (w * k + 6);
                for y in 0..h * k + 2 {
                    for x in 0..w * k + 2 {
                        let inside = y > 0 && x > 0 && y <= h * k && x <= w * k;
                        let c = if kind == Pane::Blank {
                            Rgb(255, 255, 255)
                        } else if !inside {
                            BORDER
                        } else {
                            let (my, mx) = ((y - 1) / k, (x - 1) / k);
                            if my >= ph || mx >= pw {
                                Rgb(255, 255, 255)
                            } else {
                                let r = panel.relevance.get([my, mx]).copied().unwrap_or(0.0);
                                let v = if scale > 0.0 { r / scale } else { 0.0 };
                                match (kind, &panel.picture) {
                                    (Pane::Heat, _) => heat(v),
                                    (Pane::Input, Some(p)) => photo_rgb(p, my, mx),
                                    (Pane::Overlay, Some(p)) => overlay(p, my, mx, v),
                                    _ => gray(panel.image[[my, mx]]),
                                }
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
        let (lo, hi) = if photos {
            ("−scale", "+scale")
        } else {
            ("−max|R|", "+max|R|")
        };
        t(lo, GAP, 31, 13)?;
        t("0", GAP + 60 + 96, 30, 11)?;
        t(hi, GAP + 60 + 206, 31, 13)?;
        let legend = if photos {
            "each tile: photo | relevance over the photo | relevance, each with its own colour scale"
        } else {
            "each tile: input | relevance, scaled by its own max|R|"
        };
        t(legend, GAP, 52, 13)?;
        for (p, panel) in panels.iter().enumerate() {
            let (col, row) = (p % cols, p / cols);
            let left = GAP + col * (tile_w + GAP);
            let mut y = HEADER + GAP + row * (tile_h + GAP) + h * k + 2 + 4;
            let scale = max_abs(&panel.relevance);
            let last = if panel.picture.is_some() {
                format!(
                    "max|R| {}; colours to {} (99.5th pct of |R|)",
                    crate::cells::figure(scale, 4),
                    crate::cells::figure(colour_scale(panel), 4)
                )
            } else {
                format!("max|R| {}", crate::cells::figure(scale, 4))
            };
            for line in panel.caption.iter().cloned().chain([last]) {
                t(&line, left, y, font)?;
                y += font + 3;
            }
        }
        root.present().map_err(|e| draw_err(e.to_string()))?;
    }
    write_rgb(path, width as u32, height as u32, &buf)
}

/// What a pane of a tile shows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pane {
    Input,
    Overlay,
    Heat,
    Blank,
}

fn photo_rgb(p: &Array3<f32>, y: usize, x: usize) -> Rgb {
    let c = |k: usize| (p[[y, x, k]].clamp(0.0, 1.0) * 255.0).round() as u8;
    Rgb(c(0), c(1), c(2))
}

/// The heatmap colour of `v` (relevance over max |R|) over the photo's luminance, dimmed: opaque where |v| is 1,
/// the photo where it is 0.
fn overlay(p: &Array3<f32>, y: usize, x: usize, v: f32) -> Rgb {
    let luma = 0.299 * p[[y, x, 0]] + 0.587 * p[[y, x, 1]] + 0.114 * p[[y, x, 2]];
    let base = 0.15 + 0.7 * luma.clamp(0.0, 1.0);
    let alpha = if v.is_nan() {
        0.0
    } else {
        v.abs().min(1.0).powf(0.7) * 0.9
    };
    let Rgb(r, g, b) = heat(v);
    let mix = |c: u8| {
        ((1.0 - alpha) * base * 255.0 + alpha * f32::from(c))
            .round()
            .clamp(0.0, 255.0) as u8
    };
    Rgb(mix(r), mix(g), mix(b))
}

/// The |R| drawn at full colour: max |R| for digits and other small maps, the 99.5th percentile of |R| for
/// photos (their few strongest pixels would otherwise leave the rest of a 224×224 heatmap white).
pub fn colour_scale(panel: &Panel) -> f32 {
    let max = max_abs(&panel.relevance);
    if panel.picture.is_none() {
        return max;
    }
    let mut v: Vec<f32> = panel
        .relevance
        .iter()
        .filter(|x| !x.is_nan())
        .map(|x| x.abs())
        .collect();
    if v.is_empty() {
        return max;
    }
    let k = ((v.len() as f64 * 0.995) as usize).min(v.len() - 1);
    let (_, p, _) = v.select_nth_unstable_by(k, f32::total_cmp);
    if *p > 0.0 { *p } else { max }
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
