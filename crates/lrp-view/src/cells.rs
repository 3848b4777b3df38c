//! Heatmaps and images as terminal cells: two pixels per cell with the upper half block `▀`
//! (foreground = upper pixel, background = lower pixel), or a signed character ramp without color.
//!
//! The same cells serve `lrp explain --print` (as ANSI text) and the terminal viewer.

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, ArrayViewD};

use crate::colormap::{Rgb, gray, heat, xterm256};

/// How colors reach the terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorMode {
    /// 24-bit color.
    TrueColor,
    /// The xterm 256-color palette.
    Palette256,
    /// No color: characters only.
    NoColor,
}

/// What the user asked for with `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ColorChoice {
    /// Colors when the output is a terminal that is not `TERM=dumb` and `NO_COLOR` is not set.
    #[default]
    Auto,
    /// Colors whatever the output.
    Always,
    /// Characters only.
    Never,
}

/// The environment variables that decide colors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ColorEnv<'a> {
    /// `NO_COLOR`.
    pub no_color: Option<&'a str>,
    /// `COLORTERM`.
    pub colorterm: Option<&'a str>,
    /// `TERM`.
    pub term: Option<&'a str>,
}

impl ColorMode {
    /// From the environment, for output that is a terminal: see [`ColorMode::decide`].
    pub fn from_env() -> ColorMode {
        ColorMode::for_output(ColorChoice::Auto, true)
    }

    /// From the user's choice, whether the output is a terminal, and the environment.
    pub fn for_output(choice: ColorChoice, is_terminal: bool) -> ColorMode {
        let (no_color, colorterm, term) = (
            std::env::var("NO_COLOR").ok(),
            std::env::var("COLORTERM").ok(),
            std::env::var("TERM").ok(),
        );
        ColorMode::decide(
            choice,
            is_terminal,
            ColorEnv {
                no_color: no_color.as_deref(),
                colorterm: colorterm.as_deref(),
                term: term.as_deref(),
            },
        )
    }

    /// The decision: `never` → characters; `auto` → characters when the output is not a terminal, `NO_COLOR` is
    /// set and non-empty, or `TERM=dumb`; otherwise (and for `always`) `COLORTERM` `truecolor`/`24bit` → 24-bit,
    /// else the 256-color palette.
    pub fn decide(choice: ColorChoice, is_terminal: bool, env: ColorEnv) -> ColorMode {
        let plain = match choice {
            ColorChoice::Never => true,
            ColorChoice::Always => false,
            ColorChoice::Auto => {
                !is_terminal || env.no_color.is_some_and(|v| !v.is_empty()) || env.term == Some("dumb")
            }
        };
        if plain {
            ColorMode::NoColor
        } else if env
            .colorterm
            .is_some_and(|v| v.eq_ignore_ascii_case("truecolor") || v.eq_ignore_ascii_case("24bit"))
        {
            ColorMode::TrueColor
        } else {
            ColorMode::Palette256
        }
    }

    /// The same decision for a terminal from given values of `NO_COLOR` and `COLORTERM`.
    pub fn from_vars(no_color: Option<&str>, colorterm: Option<&str>) -> ColorMode {
        ColorMode::decide(
            ColorChoice::Auto,
            true,
            ColorEnv {
                no_color,
                colorterm,
                term: None,
            },
        )
    }
}

/// A cell color.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    /// The terminal's default.
    Default,
    /// 24-bit.
    Rgb(u8, u8, u8),
    /// Palette index.
    Indexed(u8),
}

/// One terminal cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cell {
    /// The character.
    pub symbol: char,
    /// Foreground.
    pub fg: Color,
    /// Background.
    pub bg: Color,
}

/// What a map holds, which decides its colors and characters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MapKind {
    /// An input image with values in `[0, 1]` (grayscale).
    Image,
    /// Signed relevance, shown relative to `scale` (normally the largest |R|).
    Heatmap {
        /// The |value| drawn at full color.
        scale: f32,
    },
}

/// The upper half block.
pub const HALF_BLOCK: char = '▀';
/// No-color ramp for images, dark to bright.
pub const IMAGE_RAMP: [char; 10] = [' ', '.', ':', '-', '=', '+', '*', '#', '%', '@'];
/// No-color ramp for positive relevance, weak to strong.
pub const POSITIVE_RAMP: [char; 4] = ['+', '*', '#', '@'];
/// No-color ramp for negative relevance, weak to strong.
pub const NEGATIVE_RAMP: [char; 4] = ['-', '=', '~', '%'];

fn color(c: Rgb, mode: ColorMode) -> Color {
    match mode {
        ColorMode::TrueColor => Color::Rgb(c.0, c.1, c.2),
        ColorMode::Palette256 => Color::Indexed(xterm256(c)),
        ColorMode::NoColor => Color::Default,
    }
}

fn normalised(v: f32, kind: MapKind) -> f32 {
    match kind {
        MapKind::Image => v,
        MapKind::Heatmap { scale } if scale > 0.0 && scale.is_finite() => v / scale,
        MapKind::Heatmap { .. } => 0.0,
    }
}

fn ramp_char(v: f32, kind: MapKind) -> char {
    let v = if v.is_nan() { 0.0 } else { v };
    match kind {
        MapKind::Image => IMAGE_RAMP[((v.clamp(0.0, 1.0) * 9.0).round()) as usize],
        MapKind::Heatmap { .. } => {
            let level = (v.abs().min(1.0) * 4.0).round() as usize;
            match level {
                0 => ' ',
                l if v > 0.0 => POSITIVE_RAMP[l - 1],
                l => NEGATIVE_RAMP[l - 1],
            }
        }
    }
}

/// Renders a 2-D map into rows of cells, two pixel rows per cell row (an odd last row pairs with the default
/// background). Without color, each cell shows the stronger of its two pixels.
pub fn render(map: ArrayView2<f32>, kind: MapKind, mode: ColorMode) -> Vec<Vec<Cell>> {
    let (h, w) = map.dim();
    let pixel = |v: f32| match kind {
        MapKind::Image => gray(v),
        MapKind::Heatmap { .. } => heat(v),
    };
    (0..h.div_ceil(2))
        .map(|row| {
            (0..w)
                .map(|x| {
                    let top = normalised(map[[2 * row, x]], kind);
                    let bottom = (2 * row + 1 < h).then(|| normalised(map[[2 * row + 1, x]], kind));
                    match mode {
                        ColorMode::NoColor => {
                            let v = match bottom {
                                Some(b) if b.abs() > top.abs() => b,
                                _ => top,
                            };
                            Cell {
                                symbol: ramp_char(v, kind),
                                fg: Color::Default,
                                bg: Color::Default,
                            }
                        }
                        _ => Cell {
                            symbol: HALF_BLOCK,
                            fg: color(pixel(top), mode),
                            bg: bottom.map_or(Color::Default, |b| color(pixel(b), mode)),
                        },
                    }
                })
                .collect()
        })
        .collect()
}

fn sgr(c: Color, background: bool) -> String {
    let base = if background { 48 } else { 38 };
    match c {
        Color::Default => format!("\x1b[{}m", if background { 49 } else { 39 }),
        Color::Rgb(r, g, b) => format!("\x1b[{base};2;{r};{g};{b}m"),
        Color::Indexed(i) => format!("\x1b[{base};5;{i}m"),
    }
}

/// One row of cells as text with ANSI color escapes (none in no-color mode), ending in a reset.
pub fn to_ansi(row: &[Cell]) -> String {
    let mut out = String::new();
    let mut last: Option<(Color, Color)> = None;
    let colored = row.iter().any(|c| c.fg != Color::Default || c.bg != Color::Default);
    for cell in row {
        if colored && last != Some((cell.fg, cell.bg)) {
            out.push_str(&sgr(cell.fg, false));
            out.push_str(&sgr(cell.bg, true));
            last = Some((cell.fg, cell.bg));
        }
        out.push(cell.symbol);
    }
    if colored {
        out.push_str("\x1b[0m");
    }
    out
}

/// The `(height, width)` [`to_map`] gives a sample of this shape, without building it.
pub fn map_dims(shape: &[usize]) -> (usize, usize) {
    if let Some(l) = lrp_core::ImageLayout::of(shape) {
        return l.size();
    }
    match shape {
        [_, h, w] | [h, w] => (*h, *w),
        _ => {
            let n: usize = shape.iter().product();
            let side = (n as f64).sqrt() as usize;
            if side * side == n && side > 0 {
                (side, side)
            } else {
                (1, n)
            }
        }
    }
}

/// A sample as a 2-D map: the image layouts of [`lrp_core::ImageLayout`] (`[C, H, W]`, `[H, W, C]` with 1 or 3
/// channels, `[H, W]`, a flat square) with the channels summed; any other `[A, H, W]` summed over its first axis; other
/// shapes as one row.
pub fn to_map(sample: ArrayViewD<f32>) -> Array2<f32> {
    let shape = sample.shape().to_vec();
    if let Some(layout) = lrp_core::ImageLayout::of(&shape) {
        let (h, w) = layout.size();
        let flat: Vec<f32> = sample.iter().copied().collect();
        let channels = layout.channels();
        return Array2::from_shape_fn((h, w), |(y, x)| {
            (0..channels).map(|c| flat[layout.index(y, x, c)]).sum()
        });
    }
    match shape.as_slice() {
        [_, h, w] => {
            let mut out = Array2::zeros((*h, *w));
            for c in sample.outer_iter() {
                out += &c.into_dimensionality::<ndarray::Ix2>().expect("[H, W]");
            }
            out
        }
        [_, _] => sample.into_dimensionality::<ndarray::Ix2>().expect("2-D").to_owned(),
        _ => {
            let flat: Vec<f32> = sample.iter().copied().collect();
            let n = flat.len();
            let side = (n as f64).sqrt() as usize;
            if side * side == n && side > 0 {
                Array2::from_shape_vec((side, side), flat).expect("square")
            } else {
                Array2::from_shape_vec((1, n), flat).expect("one row")
            }
        }
    }
}

/// A map shrunk to at most `max_w × max_h` by averaging blocks of `k × k` values (`k` the smallest integer that
/// fits; the last blocks may be partial). NaN stays NaN. A map that fits is returned as it is.
pub fn shrink(map: ArrayView2<f32>, max_h: usize, max_w: usize) -> Array2<f32> {
    let (h, w) = map.dim();
    let k = h.div_ceil(max_h.max(1)).max(w.div_ceil(max_w.max(1))).max(1);
    if k == 1 {
        return map.to_owned();
    }
    Array2::from_shape_fn((h.div_ceil(k), w.div_ceil(k)), |(y, x)| {
        block_mean(k, h, w, y, x, |yy, xx| map[[yy, xx]])
    })
}

/// A colour picture `[H, W, 3]` shrunk like [`shrink`].
pub fn shrink_rgb(picture: ArrayView3<f32>, max_h: usize, max_w: usize) -> Array3<f32> {
    let (h, w, _) = picture.dim();
    let k = h.div_ceil(max_h.max(1)).max(w.div_ceil(max_w.max(1))).max(1);
    if k == 1 {
        return picture.to_owned();
    }
    Array3::from_shape_fn((h.div_ceil(k), w.div_ceil(k), 3), |(y, x, c)| {
        block_mean(k, h, w, y, x, |yy, xx| picture[[yy, xx, c]])
    })
}

/// The mean of block `(y, x)` of side `k` of an `h × w` grid read by `at` (partial at the edges).
fn block_mean(k: usize, h: usize, w: usize, y: usize, x: usize, at: impl Fn(usize, usize) -> f32) -> f32 {
    let (ys, xs) = (y * k..((y + 1) * k).min(h), x * k..((x + 1) * k).min(w));
    let n = ys.len() * xs.len();
    let sum: f32 = ys
        .flat_map(|yy| xs.clone().map(move |xx| (yy, xx)))
        .map(|(yy, xx)| at(yy, xx))
        .sum();
    sum / n as f32
}

/// Renders a colour picture `[H, W, 3]` (values in [0, 1]) into rows of cells as [`render`] does a map: half blocks
/// in colour, or without colour the gray ramp of its luminance.
pub fn render_rgb(picture: ArrayView3<f32>, mode: ColorMode) -> Vec<Vec<Cell>> {
    let (h, w, _) = picture.dim();
    let rgb = |y: usize, x: usize| {
        let c = |k: usize| (picture[[y, x, k]].clamp(0.0, 1.0) * 255.0).round() as u8;
        Rgb(c(0), c(1), c(2))
    };
    let luma =
        |y: usize, x: usize| 0.299 * picture[[y, x, 0]] + 0.587 * picture[[y, x, 1]] + 0.114 * picture[[y, x, 2]];
    (0..h.div_ceil(2))
        .map(|row| {
            (0..w)
                .map(|x| {
                    let (top, bottom) = (2 * row, 2 * row + 1);
                    match mode {
                        ColorMode::NoColor => {
                            let v = if bottom < h {
                                (luma(top, x) + luma(bottom, x)) / 2.0
                            } else {
                                luma(top, x)
                            };
                            Cell {
                                symbol: ramp_char(v, MapKind::Image),
                                fg: Color::Default,
                                bg: Color::Default,
                            }
                        }
                        _ => Cell {
                            symbol: HALF_BLOCK,
                            fg: color(rgb(top, x), mode),
                            bg: if bottom < h {
                                color(rgb(bottom, x), mode)
                            } else {
                                Color::Default
                            },
                        },
                    }
                })
                .collect()
        })
        .collect()
}

/// A relevance or a logit as text: `decimals` decimals, or `decimals` − 1 significant digits after the first in
/// scientific notation where the decimals would show fewer than two significant digits of a nonzero value (a
/// random-weight network's logits of 1e-9 read 0.0000) or it is 1e7 or more. Every printed and drawn figure uses it.
pub fn figure(v: f32, decimals: usize) -> String {
    let a = v.abs();
    let plain = 10f32.powi(1 - decimals as i32)..1e7;
    if a == 0.0 || !a.is_finite() || plain.contains(&a) {
        format!("{v:.decimals$}")
    } else {
        format!("{v:.*e}", decimals.saturating_sub(2))
    }
}

/// The largest |value| (0 for an empty or all-zero map; NaN is ignored).
pub fn max_abs(map: ArrayView2<f32>) -> f32 {
    map.iter().filter(|v| !v.is_nan()).fold(0.0, |m, v| m.max(v.abs()))
}

/// A one-line legend of the no-color ramps.
pub fn no_color_legend() -> String {
    let pos: String = POSITIVE_RAMP.iter().collect();
    let neg: String = NEGATIVE_RAMP.iter().collect();
    format!("legend: positive {pos} (weak → strong), negative {neg} (weak → strong), blank ≈ 0")
}

/// The columns of standard output: the terminal's width when it is one, else `$COLUMNS`, else 80.
pub fn output_width() -> usize {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal()
        && let Ok((w, _)) = ratatui::crossterm::terminal::size()
        && w > 0
    {
        return w as usize;
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&w| w >= 20)
        .unwrap_or(80)
}
