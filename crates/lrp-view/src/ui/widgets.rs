//! Pieces every screen draws with: cells as a widget, maps scaled to fit, lines of text, legends.

use ndarray::{Array2, Array3, ArrayD};
use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Color as TColor;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Widget, Wrap};

use crate::app::ClassChoice;
use crate::cells::{Cell, Color, ColorMode, MapKind, figure, max_abs, render};
use crate::worker::ViewData;

/// Draws rows of cells at the top-left of its area (clipped to it).
pub struct CellsWidget<'a>(pub &'a [Vec<Cell>]);

pub(crate) fn tcolor(c: Color) -> TColor {
    match c {
        Color::Default => TColor::Reset,
        Color::Rgb(r, g, b) => TColor::Rgb(r, g, b),
        Color::Indexed(i) => TColor::Indexed(i),
    }
}

impl Widget for CellsWidget<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        for (dy, row) in self.0.iter().enumerate().take(area.height as usize) {
            for (dx, cell) in row.iter().enumerate().take(area.width as usize) {
                if let Some(c) = buf.cell_mut((area.x + dx as u16, area.y + dy as u16)) {
                    c.set_char(cell.symbol).set_fg(tcolor(cell.fg)).set_bg(tcolor(cell.bg));
                }
            }
        }
    }
}

/// A map narrowed to at most `width` columns, each keeping the strongest value of the columns it covers.
pub fn shrink_width(map: &Array2<f32>, width: usize) -> Array2<f32> {
    let (h, w) = map.dim();
    if w <= width || width == 0 {
        return map.clone();
    }
    Array2::from_shape_fn((h, width), |(y, j)| {
        let (lo, hi) = (j * w / width, ((j + 1) * w / width).max(j * w / width + 1));
        (lo..hi)
            .map(|x| map[[y, x]])
            .fold(0.0f32, |best, v| if v.abs() > best.abs() { v } else { best })
    })
}

/// A map enlarged `s` times in both directions (nearest neighbour).
pub fn upscale(map: &Array2<f32>, s: usize) -> Array2<f32> {
    if s <= 1 {
        return map.clone();
    }
    let (h, w) = map.dim();
    Array2::from_shape_fn((h * s, w * s), |(y, x)| map[[y / s, x / s]])
}

/// Size in cells `(columns, rows)` of a `h × w` map drawn at scale `s`.
pub fn panel_size(h: usize, w: usize, s: u16) -> (u16, u16) {
    let s = s as usize;
    ((w * s) as u16, (h * s).div_ceil(2) as u16)
}

pub(crate) fn draw_map(frame: &mut Frame, rect: Rect, map: &Array2<f32>, kind: MapKind, scale: u16, color: ColorMode) {
    // A map larger than its place (a photo's, a hidden layer's) is averaged down to fit first.
    let (h, w) = map.dim();
    let (max_h, max_w) = (2 * rect.height as usize, rect.width as usize);
    let fitted_map;
    let (map, kind) = if (h > max_h || w > max_w) && max_h > 0 && max_w > 0 {
        fitted_map = crate::cells::shrink(map.view(), max_h, max_w);
        (&fitted_map, averaged(kind, map, &fitted_map))
    } else {
        (map, kind)
    };
    let big = upscale(map, scale as usize);
    let fitted = shrink_width(&big, rect.width as usize);
    let cells = render(fitted.view(), kind, color);
    frame.render_widget(CellsWidget(&cells), rect);
}

/// The colour scale of a heatmap averaged down from `full` to `fitted`: shrunk as much as the map's largest value
/// was. Signed, noisy relevance (ε through a deep network, over a photo) averages to a small part of its largest
/// pixel, and drawn to that pixel the map was faint or blank; a map drawn to its own largest value now has its
/// largest cell at full strength, and maps drawn to one scale (a layer's channels) each lose what averaging took.
fn averaged(kind: MapKind, full: &Array2<f32>, fitted: &Array2<f32>) -> MapKind {
    match kind {
        MapKind::Heatmap { scale } => {
            let (before, after) = (max_abs(full.view()), max_abs(fitted.view()));
            if before > 0.0 && after > 0.0 && after.is_finite() {
                MapKind::Heatmap {
                    scale: scale * (after / before),
                }
            } else {
                kind
            }
        }
        other => other,
    }
}

/// Draws a colour picture `[H, W, 3]` shrunk by `k` (block means) and enlarged `scale` times, clipped to `rect`.
pub(crate) fn draw_picture(
    frame: &mut Frame,
    rect: Rect,
    picture: &Array3<f32>,
    k: usize,
    scale: u16,
    color: ColorMode,
) {
    let (h, w, _) = picture.dim();
    let small = crate::cells::shrink_rgb(picture.view(), h.div_ceil(k.max(1)), w.div_ceil(k.max(1)));
    let s = scale.max(1) as usize;
    let (sh, sw, _) = small.dim();
    let big = if s > 1 {
        ndarray::Array3::from_shape_fn((sh * s, sw * s, 3), |(y, x, c)| small[[y / s, x / s, c]])
    } else {
        small
    };
    // Like a map, a picture larger than its place is averaged down to fit.
    let (bh, bw, _) = big.dim();
    let (max_h, max_w) = (2 * rect.height as usize, rect.width as usize);
    let big = if (bh > max_h || bw > max_w) && max_h > 0 && max_w > 0 {
        crate::cells::shrink_rgb(big.view(), max_h, max_w)
    } else {
        big
    };
    let cells = crate::cells::render_rgb(big.view(), color);
    frame.render_widget(CellsWidget(&cells), rect);
}

pub(crate) fn heat_kind(map: &Array2<f32>) -> MapKind {
    MapKind::Heatmap {
        scale: max_abs(map.view()),
    }
}

pub(crate) fn text(frame: &mut Frame, x: u16, y: u16, width: u16, line: Line) {
    let area = frame.area();
    if y >= area.height || x >= area.width {
        return;
    }
    let w = width.min(area.width - x);
    frame.render_widget(Paragraph::new(line), Rect::new(x, y, w, 1));
}

pub(crate) fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// `s` in at most `n` characters, cut in the middle (`epsilon-a…ta1-flat`): names that share a long start stay
/// apart.
pub(crate) fn truncate_middle(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n || n < 5 {
        return truncate(s, n);
    }
    let head = (n - 1).div_ceil(2);
    let tail = n - 1 - head;
    let start: String = s.chars().take(head).collect();
    let end: String = s.chars().skip(count - tail).collect();
    format!("{start}…{end}")
}

pub(crate) fn class_label(c: ClassChoice) -> String {
    match c {
        ClassChoice::Predicted => "pred".into(),
        ClassChoice::Label => "label".into(),
        ClassChoice::Class(k) => k.to_string(),
    }
}

/// The legend under a heatmap: the colors, or the character ramp without them.
pub(crate) fn legend(color: ColorMode, scale: f32) -> String {
    if color == ColorMode::NoColor {
        // The character ramps, weak to strong (the help and `lrp explain` spell them out).
        format!("|R|≤{} +*#@ pos -=~% neg", figure(scale, 3))
    } else {
        format!("max |R| {}  red + blue −", figure(scale, 4))
    }
}

pub(crate) fn draw_state(frame: &mut Frame, rect: Rect, data: &Option<Result<ViewData, String>>) {
    match data {
        None => frame.render_widget(Paragraph::new("computing…"), rect),
        Some(Err(e)) => frame.render_widget(Paragraph::new(e.clone()).wrap(Wrap { trim: true }), rect),
        Some(Ok(_)) => {}
    }
}

pub(crate) fn max_abs_d(a: &ArrayD<f32>) -> f32 {
    a.iter().filter(|v| !v.is_nan()).fold(0.0, |m, v| m.max(v.abs()))
}

#[cfg(test)]
mod tests {
    use ratatui::{Terminal, backend::TestBackend};

    use super::*;

    /// A 64×64 map of signed noise with one strong pixel, averaged into 16×8 cells: the largest cell is drawn at full
    /// strength (the ramps' last glyph), and a map of zeros stays blank.
    #[test]
    fn a_heatmap_averaged_down_is_drawn_to_its_largest_cell() {
        let mut state = 7u32;
        let mut map = Array2::from_shape_fn((64, 64), |_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        });
        map[[10, 20]] = 40.0;
        for (m, strong) in [(map, true), (Array2::zeros((64, 64)), false)] {
            let mut term = Terminal::new(TestBackend::new(16, 8)).unwrap();
            term.draw(|f| draw_map(f, Rect::new(0, 0, 16, 8), &m, heat_kind(&m), 1, ColorMode::NoColor))
                .unwrap();
            let buf = term.backend().buffer();
            let glyphs: String = (0..8)
                .flat_map(|y| (0..16).map(move |x| (x, y)))
                .map(|p| buf[p].symbol().to_string())
                .collect();
            assert_eq!(glyphs.contains('@') || glyphs.contains('%'), strong, "{glyphs:?}");
            assert_eq!(glyphs.trim().is_empty(), !strong, "{glyphs:?}");
        }
    }
}
