//! The concept screen (Concept Relevance Propagation): one channel of a layer with weights — its conditional heatmap
//! on the current input (where in the input its relevance comes from), its share of the relevance at its layer, the
//! layer's channels ranked, its decomposition into the channels of the layer below (step down with Enter, back up
//! with u), and its reference samples with their conditional heatmaps (RelMax over the first samples).

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::Rect;
use ratatui::style::{Color as TColor, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::layout::MAX_SCALE;
use super::widgets::{draw_map, draw_state, heat_kind, legend, panel_size, text, truncate};
use super::{Sources, needed};
use crate::app::{App, Screen};
use crate::cells::{ColorMode, MapKind, figure, max_abs};
use crate::concept::{ConceptKey, ConceptView, Pick, ranked};
use crate::keys::{Binding, key};

/// What the screen last showed (set by the event loop from the explanation it drew): the keys that move relative
/// to it read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The concept asked for.
    pub key: ConceptKey,
    /// The channel shown and its rank.
    pub channel: usize,
    /// Its rank.
    pub rank: usize,
    /// How many channels the layer has.
    pub channels: usize,
    /// The lower channel that feeds it most.
    pub top_below: Option<usize>,
}

/// The concept screen's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConceptState {
    /// The layer and channel shown.
    pub key: ConceptKey,
    /// The concepts above, from the steps down (u goes back up).
    pub trail: Vec<ConceptKey>,
    /// What was last shown.
    pub seen: Option<Seen>,
}

impl Default for ConceptState {
    fn default() -> Self {
        ConceptState {
            key: ConceptKey {
                layer: 0,
                pick: Pick::Rank(0),
            },
            trail: Vec::new(),
            seen: None,
        }
    }
}

/// The concept screen's own keys.
pub const KEYS: &[Binding] = &[
    key("↑ / ↓", "more / less relevant channel of this layer", "↑↓ channel"),
    key(
        "[ / ]",
        "previous / next layer with weights (its most relevant channel)",
        "[ ] layer",
    ),
    key(
        "Enter",
        "step down to the channel below that feeds this one most",
        "Enter down",
    ),
    key("u", "back up to the channel stepped down from", "u up"),
    key("k / Esc", "back to the layer view", "k back"),
];

/// Opens the concept screen on layer `#layer`'s most relevant channel.
pub(crate) fn open(app: &mut App, layer: usize) {
    app.concept = ConceptState {
        key: ConceptKey {
            layer,
            pick: Pick::Rank(0),
        },
        trail: Vec::new(),
        seen: None,
    };
    app.screen = Screen::Concept;
}

/// Keys of the concept screen; false for a key it leaves to the common ones.
pub(crate) fn on_key(app: &mut App, code: KeyCode) -> bool {
    let layers = app
        .models
        .get(app.model)
        .map(|m| m.concept_layers.clone())
        .unwrap_or_default();
    let seen = app.concept.seen.filter(|s| s.key == app.concept.key);
    let c = &mut app.concept;
    match code {
        KeyCode::Up | KeyCode::Down => {
            let (rank, channels) = match (seen, c.key.pick) {
                (Some(s), _) => (s.rank, s.channels),
                (None, Pick::Rank(r)) => (r, usize::MAX),
                (None, Pick::Channel(_)) => return true,
            };
            let rank = if code == KeyCode::Up {
                rank.saturating_sub(1)
            } else {
                (rank + 1).min(channels.saturating_sub(1))
            };
            c.key.pick = Pick::Rank(rank);
        }
        KeyCode::Char('[') | KeyCode::Char(']') => {
            let at = layers.iter().position(|&l| l == c.key.layer).unwrap_or(0);
            let next = if code == KeyCode::Char('[') {
                at.saturating_sub(1)
            } else {
                (at + 1).min(layers.len().saturating_sub(1))
            };
            if let Some(&l) = layers.get(next) {
                c.key = ConceptKey {
                    layer: l,
                    pick: Pick::Rank(0),
                };
                c.trail.clear();
            }
        }
        KeyCode::Enter => match seen.and_then(|s| s.top_below) {
            Some(channel) => {
                c.trail.push(c.key);
                c.key = ConceptKey {
                    layer: c.key.layer - 1,
                    pick: Pick::Channel(channel),
                };
            }
            None => {
                app.message = Some(if seen.is_none() {
                    "wait for the decomposition to be computed".into()
                } else {
                    format!("#{} has no layer with channels below it", c.key.layer)
                })
            }
        },
        KeyCode::Char('u') => match c.trail.pop() {
            Some(k) => c.key = k,
            None => app.message = Some("this is where you came in (Enter steps down)".into()),
        },
        KeyCode::Char('k') => app.screen = Screen::Layers,
        _ => return false,
    }
    true
}

/// Where the parts go on a `width × height` terminal: the two main pictures' scale, the list column, and how many
/// reference thumbnails fit (0: listed as text) at which scale.
struct Plan {
    scale: u16,
    list_x: u16,
    refs: usize,
    ref_scale: u16,
    refs_y: u16,
}

fn plan(width: u16, height: u16, h: usize, w: usize, references: usize) -> Plan {
    let body_h = height.saturating_sub(4);
    let list_w = 30u16.min(width / 3);
    // The main pictures get the upper part; the thumbnails (one heatmap and a caption each) the lower when a row
    // of them fits at scale 1 below pictures at scale 1.
    let (_, ref_ph) = panel_size(h, w, 1);
    let thumbs_fit = |main_ph: u16| body_h > main_ph + 2 + ref_ph;
    let scale = (1..=MAX_SCALE)
        .rev()
        .find(|&s| {
            let (pw, ph) = panel_size(h, w, s);
            2 * pw + 2 + list_w <= width && ph < body_h && (thumbs_fit(ph) || s == 1)
        })
        .unwrap_or(1);
    let (_, ph) = panel_size(h, w, scale);
    let (ref_pw, _) = panel_size(h, w, 1);
    let refs = if thumbs_fit(ph) {
        (width as usize / (ref_pw as usize + 2)).min(references)
    } else {
        0
    };
    Plan {
        scale,
        list_x: width.saturating_sub(list_w),
        refs,
        ref_scale: 1,
        refs_y: 3 + ph + 2,
    }
}

pub(crate) fn draw(frame: &mut Frame, app: &App, src: &Sources) {
    let area = frame.area();
    let key = needed(app, area.width, area.height, src.labels, src.map_size())
        .into_iter()
        .next();
    let data = key.as_ref().and_then(|k| (src.lookup)(k));
    let body = Rect::new(0, 3, area.width, area.height - 4);
    let c = match &data {
        Some(Ok(v)) => match &v.concept {
            Some(c) => c,
            None => return,
        },
        other => {
            let layer = app.concept.key.layer;
            let msg = match other {
                None => Some(format!(
                    "computing #{layer}: the conditional heatmap, the decomposition and, the first time for a layer, \
                     each sample's relevance over the first {} samples for the reference samples…",
                    crate::concept::REFERENCE_POOL.min(app.count)
                )),
                _ => None,
            };
            match msg {
                Some(m) => frame.render_widget(Paragraph::new(m).wrap(ratatui::widgets::Wrap { trim: true }), body),
                None => draw_state(frame, body, other),
            }
            return;
        }
    };
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let channels = c.relevance.len();
    text(
        frame,
        0,
        1,
        area.width,
        Line::styled(
            format!(
                "concept #{} {} · channel {} · rank {} of {channels} · {:+.1}% of the relevance at #{} on this input",
                c.layer,
                c.kind,
                c.channel,
                c.rank + 1,
                100.0 * c.share(),
                c.layer
            ),
            bold,
        ),
    );
    let (h, w) = c.heatmap.dim();
    let p = plan(area.width, area.height, h, w, c.references.len());
    let (pw, ph) = panel_size(h, w, p.scale);
    text(
        frame,
        0,
        2,
        p.list_x,
        Line::from(format!(
            "input │ {}  ·  {}",
            if c.bypassed {
                format!(
                    "channel {}'s relevance, and what goes around #{} by a skip connection",
                    c.channel, c.layer
                )
            } else {
                format!("where channel {}'s relevance comes from", c.channel)
            },
            legend(src.color, max_abs(c.heatmap.view()))
        )),
    );
    if let Some(v) = data.as_ref().and_then(|d| d.as_ref().ok()) {
        draw_map(
            frame,
            Rect::new(0, 3, pw, ph),
            &v.image,
            MapKind::Image,
            p.scale,
            src.color,
        );
    }
    draw_map(
        frame,
        Rect::new(pw + 2, 3, pw, ph),
        &c.heatmap,
        heat_kind(&c.heatmap),
        p.scale,
        src.color,
    );
    // The lists stand beside the pictures, above the thumbnails (or down to the status line without them).
    let bottom = if p.refs > 0 { p.refs_y - 1 } else { area.height - 2 };
    draw_lists(
        frame,
        c,
        Rect::new(p.list_x, 3, area.width - p.list_x, bottom - 3),
        src.color,
    );
    draw_references(frame, c, &p, area, src.color);
}

/// The layer's channels ranked (the shown one marked), then the decomposition into the layer below.
fn draw_lists(frame: &mut Frame, c: &ConceptView, area: Rect, color: ColorMode) {
    let (x, width) = (area.x, area.width);
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let end = area.y + area.height;
    // Half the rows for the layer's channels (a heading and at least two), the rest for the decomposition.
    let rows = ((area.height as usize).saturating_sub(2) / 2).max(3);
    let mut y = area.y;
    text(
        frame,
        x,
        y,
        width,
        Line::styled(format!("channels of #{} (↑↓)", c.layer), bold),
    );
    y += 1;
    let order = ranked(&c.relevance);
    // A window of the ranking around the channel shown.
    let start = c
        .rank
        .saturating_sub(rows.saturating_sub(2) / 2)
        .min(order.len().saturating_sub(rows - 1));
    for &ch in order.iter().skip(start).take(rows - 1) {
        let mark = if ch == c.channel { "▶" } else { " " };
        text(frame, x, y, width, share_line(mark, ch, &c.relevance, width, color));
        y += 1;
    }
    if y >= end {
        return;
    }
    match &c.below {
        Some((b, values)) => {
            text(frame, x, y, width, Line::styled(format!("fed by #{b} (Enter ↓)"), bold));
            y += 1;
            for &ch in ranked(values).iter().take(end.saturating_sub(y) as usize) {
                text(frame, x, y, width, share_line(" ", ch, values, width, color));
                y += 1;
            }
        }
        None => text(frame, x, y, width, Line::from("(no layer with channels below)")),
    }
}

/// `▶ 12  +10.3% ████`: a channel, its share of the absolute relevance of `values`, a bar.
fn share_line(mark: &str, ch: usize, values: &[f32], width: u16, color: ColorMode) -> Line<'static> {
    let total: f32 = values.iter().map(|v| v.abs()).sum();
    let max = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let share = if total > 0.0 { 100.0 * values[ch] / total } else { 0.0 };
    let label = format!("{mark}{ch:>4} {share:>+6.1}% ");
    let bar_w = (width as usize).saturating_sub(label.chars().count() + 1);
    let len = if max > 0.0 {
        ((values[ch].abs() / max) * bar_w as f32).round() as usize
    } else {
        0
    };
    let (glyph, fg) = match (color, values[ch] >= 0.0) {
        (ColorMode::NoColor, true) => ('+', TColor::Reset),
        (ColorMode::NoColor, false) => ('-', TColor::Reset),
        (_, true) => ('█', TColor::Red),
        (_, false) => ('█', TColor::Blue),
    };
    Line::from(vec![
        Span::raw(label),
        Span::styled(glyph.to_string().repeat(len), Style::default().fg(fg)),
    ])
}

/// The reference samples: thumbnails of their conditional heatmaps where they fit, else their numbers.
fn draw_references(frame: &mut Frame, c: &ConceptView, p: &Plan, area: Rect, color: ColorMode) {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let title = format!(
        "reference samples of channel {} (RelMax {}, each for its label; conditional heatmaps)",
        c.channel, c.source
    );
    if p.refs == 0 {
        let list: Vec<String> = c.references.iter().map(|r| r.index.to_string()).collect();
        let y = area.height - 2;
        let line = format!(
            "reference samples (first {}; a taller terminal draws them): {}",
            c.pool,
            list.join(" ")
        );
        text(
            frame,
            0,
            y,
            area.width,
            Line::from(truncate(&line, area.width as usize)),
        );
        return;
    }
    text(
        frame,
        0,
        p.refs_y - 1,
        area.width,
        Line::styled(truncate(&title, area.width as usize), bold),
    );
    let Some(first) = c.references.first() else {
        return;
    };
    let (h, w) = first.heatmap.dim();
    let (tw, th) = panel_size(h, w, p.ref_scale);
    for (i, r) in c.references.iter().take(p.refs).enumerate() {
        let x = i as u16 * (tw + 2);
        draw_map(
            frame,
            Rect::new(x, p.refs_y, tw, th),
            &r.heatmap,
            heat_kind(&r.heatmap),
            p.ref_scale,
            color,
        );
        text(
            frame,
            x,
            p.refs_y + th,
            tw + 1,
            Line::from(format!("#{} {}", r.index, figure(r.value, 3))),
        );
    }
}
