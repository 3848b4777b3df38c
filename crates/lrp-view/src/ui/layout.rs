//! Where things go on the screen: the single-input layout (browse, draw), draw mode's and compare mode's.
//!
//! Pictures scale with the terminal by an integer factor (each image pixel becomes `s` columns and `s` half
//! rows): 1× at 80×24, 2× at 120×40, 3× at 200×60. The info column sits beside the pictures when it fits, else
//! under them.

use super::widgets::panel_size;
use crate::app::CanvasGeometry;

/// Width of the info column beside the pictures.
pub(crate) const INFO_W: u16 = 20;
/// Rows of the info block under the pictures.
pub(crate) const BELOW_H: u16 = 8;
/// The largest picture scale.
pub(crate) const MAX_SCALE: u16 = 8;

/// How the single-input screens (browse, draw) are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Picture scale.
    pub scale: u16,
    /// Pictures side by side.
    pub panels: u16,
    /// The info column is beside the pictures (else under them).
    pub side: bool,
    /// Width of one picture in cells.
    pub panel_w: u16,
    /// Height of one picture in cells.
    pub panel_h: u16,
}

impl Layout {
    /// Columns the pictures take, with their gaps.
    pub fn maps_w(&self) -> u16 {
        self.panels * self.panel_w + 2 * (self.panels - 1)
    }
}

fn fits(width: u16, height: u16, h: usize, w: usize, s: u16, panels: u16) -> Option<bool> {
    let (pw, ph) = panel_size(h, w, s);
    let maps_w = panels * pw + 2 * (panels - 1);
    // Rows: title, panel titles, the pictures, the legend, at least four rows of sums, the status line.
    let side = maps_w + 2 + INFO_W <= width && 2 + ph + 1 + 4 < height && height >= 19;
    let below = maps_w <= width && 2 + ph + 1 + BELOW_H < height;
    if side {
        Some(true)
    } else if below {
        Some(false)
    } else {
        None
    }
}

/// The largest integer scale at which `panels` pictures of `h × w` pixels and the info fit in `width × height`
/// (scale 1 when nothing fits, narrowed by the caller).
pub fn single_layout(width: u16, height: u16, h: usize, w: usize, panels: u16) -> Layout {
    let (scale, side) = (1..=MAX_SCALE)
        .rev()
        .find_map(|s| fits(width, height, h, w, s, panels).map(|side| (s, side)))
        .unwrap_or((1, true));
    let (pw, ph) = panel_size(h, w, scale);
    let pw = pw.min(width.saturating_sub(2 * (panels - 1)) / panels).max(1);
    Layout {
        scale,
        panels,
        side,
        panel_w: pw,
        panel_h: ph,
    }
}

/// The smallest integer factor `k` by which `h × w` maps must shrink (each `k × k` block averaged) so that
/// `panels` of them and the info fit in `width × height` at scale 1: 1 for digits, more for photos.
pub fn fit_shrink(width: u16, height: u16, h: usize, w: usize, panels: u16) -> usize {
    (1..=h.max(w).max(1))
        .find(|&k| fits(width, height, h.div_ceil(k), w.div_ceil(k), 1, panels).is_some())
        .unwrap_or(h.max(w).max(1))
}

/// Draw mode's layout: canvas, network input and relevance side by side when the three fit at 2× or more,
/// else canvas and one of the two (`p` switches) as large as they fit.
pub fn draw_layout(width: u16, height: u16) -> Layout {
    let side = crate::canvas::SIDE;
    let three = single_layout(width, height, side, side, 3);
    if three.scale >= 2 && fits(width, height, side, side, three.scale, 3).is_some() {
        three
    } else {
        single_layout(width, height, side, side, 2)
    }
}

/// Where draw mode puts the canvas on a `width × height` terminal.
pub fn canvas_geometry(width: u16, height: u16) -> CanvasGeometry {
    let l = draw_layout(width, height);
    CanvasGeometry {
        x: 0,
        y: 2,
        scale: l.scale,
    }
}

/// Compare mode's grid: the input then the rules, `per_row × rows` panels of `panel_w` columns at `scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompareLayout {
    /// Picture scale.
    pub scale: u16,
    /// Panels per row.
    pub per_row: u16,
    /// Rows of panels.
    pub rows: u16,
    /// Width of a panel (narrower than the picture when it is narrowed to fit).
    pub panel_w: u16,
    /// Height of a picture in cells.
    pub map_h: u16,
}

impl CompareLayout {
    /// Rules shown (the first panel is the input).
    pub fn rules_shown(&self, rules: usize) -> usize {
        ((self.per_row * self.rows) as usize).saturating_sub(1).min(rules)
    }
}

/// The compare grid for `rules` rules of `h × w` maps: the largest scale that shows the input and at least
/// three rules (or all of them, if fewer); at 80 columns four narrowed panels.
pub fn compare_layout(width: u16, height: u16, h: usize, w: usize, rules: usize) -> CompareLayout {
    let wanted = 1 + rules.clamp(1, 3);
    for s in (1..=MAX_SCALE).rev() {
        let (pw, ph) = panel_size(h, w, s);
        let per_row = (width + 1) / (pw + 1);
        // A panel: its title, the picture, two lines of numbers; two lines at the bottom.
        let rows = height.saturating_sub(2 + 2) / (ph + 3);
        if (per_row * rows) as usize >= wanted {
            return CompareLayout {
                scale: s,
                per_row,
                rows,
                panel_w: pw,
                map_h: ph,
            };
        }
    }
    let n = wanted as u16;
    let (_, ph) = panel_size(h, w, 1);
    CompareLayout {
        scale: 1,
        per_row: n,
        rows: 1,
        panel_w: ((width + 1) / n).saturating_sub(1).max(1),
        map_h: ph,
    }
}
