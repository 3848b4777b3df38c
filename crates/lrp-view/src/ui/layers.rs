//! The layer view: the relevance at a hidden layer's input — a conv layer's channels ranked, a dense layer's
//! neurons as bars, a transformer's tokens as a grid over the image and its attention heads.

use ndarray::{Array2, ArrayD, Axis};
use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::Rect;
use ratatui::style::{Color as TColor, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::layout::MAX_SCALE;
use super::widgets::{draw_map, draw_state, heat_kind, legend, max_abs_d, panel_size, text, truncate};
use super::{Sources, needed};
use crate::app::{App, Screen};
use crate::cells::{ColorMode, MapKind, figure, max_abs, to_map};
use crate::keys::{Binding, key};
use crate::worker::LayerData;

/// The layer view's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayersState {
    /// The layer shown (an index into the layers that read one value).
    pub layer: usize,
    /// The screen `l` and Esc return to.
    pub from: Screen,
}

impl Default for LayersState {
    fn default() -> Self {
        LayersState {
            layer: 0,
            from: Screen::Browse,
        }
    }
}

/// The layer view's own keys.
pub const KEYS: &[Binding] = &[
    key("[ / ]", "previous / next layer", "[ ] layer"),
    key("h", "next attention block's heads (transformers)", "h heads"),
    key(
        "k",
        "channels as concepts: conditional heatmaps, references",
        "k concepts",
    ),
    key("l / Esc", "back to the screen the layer view was opened from", "l back"),
    key("d", "draw a digit and see its layers", "d draw"),
];

/// Keys of the layer view; false for a key it leaves to the common ones.
pub(crate) fn on_key(app: &mut App, code: KeyCode) -> bool {
    match code {
        KeyCode::Char('[') => app.layers.layer = app.layers.layer.saturating_sub(1),
        KeyCode::Char(']') => {
            let last = app.models.get(app.model).map_or(0, |m| m.layers.saturating_sub(1));
            app.layers.layer = (app.layers.layer + 1).min(last);
        }
        KeyCode::Char('l') => app.screen = app.layers.from,
        KeyCode::Char('h') => {
            // The next attention block's head panel (wrapping), for a transformer.
            let heads = app
                .models
                .get(app.model)
                .map(|m| m.head_layers.clone())
                .unwrap_or_default();
            match heads.iter().find(|&&i| i > app.layers.layer).or(heads.first()) {
                Some(&i) => app.layers.layer = i,
                None => app.message = Some("this model has no attention blocks (h shows their heads)".into()),
            }
        }
        KeyCode::Char('d') => app.screen = Screen::Draw,
        KeyCode::Char('k') => {
            let entry = app.models.get(app.model);
            let here = entry.and_then(|m| m.concept_of_layer.get(app.layers.layer).copied().flatten());
            match here.or_else(|| entry.and_then(|m| m.concept_layers.first().copied())) {
                Some(layer) => crate::ui::concept::open(app, layer),
                None => app.message = Some("this model has no convolution or dense layer to show as concepts".into()),
            }
        }
        KeyCode::Char('v') => {}
        _ => return false,
    }
    true
}

/// Relevance per channel of a `[C, H, W]` layer input: `(channel, sum)` most relevant first.
pub fn ranked_channels(r: &ArrayD<f32>) -> Vec<(usize, f32)> {
    let mut v: Vec<(usize, f32)> = r.outer_iter().map(|c| c.sum()).enumerate().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}

pub(crate) fn draw(frame: &mut Frame, app: &App, src: &Sources) {
    let area = frame.area();
    let key = needed(app, area.width, area.height, src.labels, src.map_size())
        .into_iter()
        .next();
    let data = key.as_ref().and_then(|k| (src.lookup)(k));
    let body = Rect::new(0, 3, area.width, area.height - 4);
    let v = match &data {
        Some(Ok(v)) => v,
        other => {
            if app.on_drawing() && app.draw.canvas.is_empty() {
                frame.render_widget(Paragraph::new("draw a digit first (l returns to the canvas)"), body);
            } else {
                draw_state(frame, body, other);
            }
            return;
        }
    };
    if v.layers.is_empty() {
        frame.render_widget(Paragraph::new("this network has no layer with one input"), body);
        return;
    }
    let idx = app.layers.layer.min(v.layers.len() - 1);
    let layer = &v.layers[idx];
    let total: f32 = layer.relevance.sum();
    let bold = Style::default().add_modifier(Modifier::BOLD);
    text(
        frame,
        0,
        1,
        area.width,
        Line::styled(
            format!(
                "layer {} {} ({}/{}): R at its input {:?}, sum {}, logit {}",
                layer.name,
                layer.kind,
                idx + 1,
                v.layers.len(),
                layer.relevance.shape(),
                figure(total, 3),
                figure(v.logits[v.target], 3)
            ),
            bold,
        ),
    );
    text(
        frame,
        0,
        2,
        area.width,
        Line::from(format!(
            "{}  ·  [ / ] other layers",
            legend(src.color, max_abs_d(&layer.relevance))
        )),
    );
    let grid = token_grid(layer.relevance.shape());
    match layer.relevance.ndim() {
        3 if layer.writer.as_deref() == Some("matmul") && grid.is_some() => {
            draw_heads(frame, body, layer, total, src.color)
        }
        3 => draw_channels(frame, body, layer, total, src.color),
        2 if token_grid(&layer.relevance.shape()[..1]).is_some() => draw_tokens(frame, body, layer, total, src.color),
        // One row of neurons (an LSTM's final state `[1, hidden]`) or a vector: bars, strongest first.
        1 => draw_neurons(frame, body, layer, total, src.color),
        _ if layer.relevance.shape().iter().filter(|&&d| d > 1).count() <= 1 => {
            draw_neurons(frame, body, layer, total, src.color)
        }
        _ => {
            let map = to_map(layer.relevance.view());
            let (h, w) = map.dim();
            let s = (1..=MAX_SCALE)
                .rev()
                .find(|&s| {
                    let (pw, ph) = panel_size(h, w, s);
                    pw <= body.width && ph <= body.height
                })
                .unwrap_or(1);
            draw_map(frame, body, &map, heat_kind(&map), s, src.color);
        }
    }
}

/// The side `g` of a square grid of tokens when the second-to-last axis (or the only one) holds `g²` of them,
/// `g ≥ 2`: a transformer's patches over the image.
pub fn token_grid(shape: &[usize]) -> Option<usize> {
    let t = match shape.len() {
        1 => shape[0],
        n => shape[n - 2],
    };
    let g = (t as f64).sqrt().round() as usize;
    (g >= 2 && g * g == t).then_some(g)
}

/// Relevance per token (summed over the last axis of `[…, T, D]`) as a `g × g` map over the image.
pub fn token_map(r: ndarray::ArrayViewD<f32>, g: usize) -> Array2<f32> {
    let sums = r.sum_axis(Axis(r.ndim() - 1));
    let flat: Vec<f32> = sums.iter().copied().collect();
    Array2::from_shape_vec((g, g), flat).expect("g² tokens")
}

/// A transformer's token values `[T, D]`: the relevance of each token as a grid over the image (each patch one
/// square), with the strongest tokens' shares beside it.
fn draw_tokens(frame: &mut Frame, body: Rect, layer: &LayerData, total: f32, color: ColorMode) {
    let g = token_grid(&layer.relevance.shape()[..1]).expect("checked by the caller");
    let map = token_map(layer.relevance.view(), g);
    // Each token enlarged to about a patch of a 28-pixel image, smaller if the body is small.
    let scale = (1..=(28 / g.max(1)).max(1) as u16)
        .rev()
        .find(|&s| {
            let (pw, ph) = panel_size(g, g, s);
            pw <= body.width && ph < body.height
        })
        .unwrap_or(1);
    let (pw, ph) = panel_size(g, g, scale);
    text(
        frame,
        body.x,
        body.y,
        body.width,
        Line::from(format!("relevance per token ({g}×{g} patches)")),
    );
    draw_map(
        frame,
        Rect::new(body.x, body.y + 1, pw, ph),
        &map,
        heat_kind(&map),
        scale,
        color,
    );
    let mut ranked: Vec<(usize, f32)> = map.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    let x = body.x + pw + 2;
    if x + 20 <= body.x + body.width {
        for (i, &(t, r)) in ranked.iter().take(body.height.saturating_sub(1) as usize).enumerate() {
            let share = if total != 0.0 { 100.0 * r / total } else { 0.0 };
            text(
                frame,
                x,
                body.y + 1 + i as u16,
                body.x + body.width - x,
                Line::from(format!("token {t:>3} (row {}, col {}) {share:>6.1}%", t / g, t % g)),
            );
        }
    }
}

/// A block's attention output `[heads, T, d]` (the input of the layer after `softmax · V`): each head's share of
/// the relevance that flows through the block's attention, largest first, with its tokens as a grid.
fn draw_heads(frame: &mut Frame, body: Rect, layer: &LayerData, total: f32, color: ColorMode) {
    let g = token_grid(layer.relevance.shape()).expect("checked by the caller");
    let heads = layer.relevance.shape()[0];
    // Heads ranked as channels are, each one's tokens as a map, all on one color scale.
    let ranked = ranked_channels(&layer.relevance);
    let maps: Vec<Array2<f32>> = layer.relevance.outer_iter().map(|r| token_map(r, g)).collect();
    let common = MapKind::Heatmap {
        scale: maps.iter().map(|m| max_abs(m.view())).fold(0.0, f32::max),
    };
    let scale = (1..=(28 / g.max(1)).max(1) as u16)
        .rev()
        .find(|&s| {
            let (pw, ph) = panel_size(g, g, s);
            let per_row = (body.width + 1) / (pw + 1);
            per_row as usize >= heads.min(4) && ph + 3 <= body.height
        })
        .unwrap_or(1);
    let (pw, ph) = panel_size(g, g, scale);
    let pw = pw.max(12);
    let per_row = ((body.width + 1) / (pw + 1)).max(1);
    text(
        frame,
        body.x,
        body.y,
        body.width,
        Line::from("attention heads: each head's share of the relevance through this block's attention"),
    );
    for (i, &(h, sum)) in ranked.iter().enumerate() {
        let (col, row) = (i as u16 % per_row, i as u16 / per_row);
        let (x, y) = (body.x + col * (pw + 1), body.y + 1 + row * (ph + 2));
        if y + ph + 1 > body.y + body.height {
            break;
        }
        let share = if total != 0.0 { 100.0 * sum / total } else { 0.0 };
        text(
            frame,
            x,
            y,
            pw,
            Line::from(truncate(&format!("head {h} {share:.1}%"), pw as usize)),
        );
        draw_map(frame, Rect::new(x, y + 1, pw, ph), &maps[h], common, scale, color);
    }
}

/// A conv layer's input: its channels ranked by relevance, the top ones' maps side by side (enlarged to about
/// a digit's size, all on one color scale), each with its share of the total.
fn draw_channels(frame: &mut Frame, body: Rect, layer: &LayerData, total: f32, color: ColorMode) {
    let ranked = ranked_channels(&layer.relevance);
    let (h, w) = (layer.relevance.shape()[1], layer.relevance.shape()[2]);
    // Enlarge small maps towards 28 columns, and further while two rows of them fit.
    let base = (28 / w.max(1)).max(1) as u16;
    let scale = (1..=MAX_SCALE)
        .rev()
        .map(|k| base * k)
        .find(|&s| {
            let (pw, ph) = panel_size(h, w, s);
            let per_row = (body.width + 1) / (pw + 1);
            let rows = body.height / (ph + 2);
            (per_row * rows) as usize >= ranked.len().min(8)
        })
        .unwrap_or(1);
    let (pw, ph) = panel_size(h, w, scale);
    let per_row = ((body.width + 1) / (pw + 1)).max(1);
    let rows = (body.height / (ph + 2)).max(1);
    let shown = ((per_row * rows) as usize).min(ranked.len());
    let common = MapKind::Heatmap {
        scale: max_abs_d(&layer.relevance),
    };
    for (i, &(c, sum)) in ranked.iter().take(shown).enumerate() {
        let (col, row) = (i as u16 % per_row, i as u16 / per_row);
        let (x, y) = (body.x + col * (pw + 1), body.y + row * (ph + 2));
        let share = if total != 0.0 { 100.0 * sum / total } else { 0.0 };
        text(
            frame,
            x,
            y,
            pw,
            Line::from(truncate(&format!("ch {c} {share:.1}%"), pw as usize)),
        );
        let map = layer
            .relevance
            .index_axis(Axis(0), c)
            .into_dimensionality::<ndarray::Ix2>()
            .expect("[H, W]")
            .to_owned();
        draw_map(frame, Rect::new(x, y + 1, pw, ph), &map, common, scale, color);
    }
    if shown < ranked.len() {
        let rest: f32 = ranked[shown..].iter().map(|&(_, s)| s).sum();
        text(
            frame,
            body.x,
            body.y + body.height - 1,
            body.width,
            Line::from(format!(
                "top {shown} of {} channels shown; the other {} hold {:.1}% of the relevance",
                ranked.len(),
                ranked.len() - shown,
                if total != 0.0 { 100.0 * rest / total } else { 0.0 }
            )),
        );
    }
}

/// A dense layer's input: its neurons' relevances as a bar chart, strongest |R| first.
fn draw_neurons(frame: &mut Frame, body: Rect, layer: &LayerData, total: f32, color: ColorMode) {
    let mut v: Vec<(usize, f32)> = layer.relevance.iter().copied().enumerate().collect();
    v.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    let max = v.first().map_or(0.0, |x| x.1.abs());
    let rows = body.height.saturating_sub(1) as usize;
    let label_w = 26usize;
    let bar_w = (body.width as usize).saturating_sub(label_w + 2).max(4);
    for (i, &(n, r)) in v.iter().take(rows).enumerate() {
        let len = if max > 0.0 {
            ((r.abs() / max) * bar_w as f32).round() as usize
        } else {
            0
        };
        let share = if total != 0.0 { 100.0 * r / total } else { 0.0 };
        let (ch, fg) = match (color, r >= 0.0) {
            (ColorMode::NoColor, true) => ('+', TColor::Reset),
            (ColorMode::NoColor, false) => ('-', TColor::Reset),
            (_, true) => ('█', TColor::Red),
            (_, false) => ('█', TColor::Blue),
        };
        let line = Line::from(vec![
            Span::raw(format!(
                "{:<label_w$}",
                format!("neuron {n:<5} {r:>+9.4} {share:>5.1}%")
            )),
            Span::styled(ch.to_string().repeat(len), Style::default().fg(fg)),
        ]);
        text(frame, body.x, body.y + i as u16, body.width, line);
    }
    if v.len() > rows {
        text(
            frame,
            body.x,
            body.y + body.height - 1,
            body.width,
            Line::from(format!("{} of {} neurons, strongest |R| first", rows, v.len())),
        );
    }
}
