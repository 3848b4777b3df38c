//! Compare mode of the browse screen: the input, then several rules' heatmaps side by side.

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;

use super::layout::compare_layout;
use super::widgets::{draw_map, draw_state, heat_kind, text, truncate, truncate_middle};
use super::{Sources, needed};
use crate::app::App;
use crate::cells::{ColorMode, MapKind, figure, max_abs, no_color_legend};
use crate::keys::{Binding, key};

/// Compare mode's own keys.
pub const KEYS: &[Binding] = &[
    key("v", "back to one rule", "v one rule"),
    key("r / R", "shift the rules shown by one", "r shift"),
    key("d", "draw a digit and compare rules on it", "d draw"),
    key("l", "layer view of the first rule shown", "l layers"),
];

/// Keys of compare mode; false for a key it leaves to the common ones (`r`/`R` shift the rules as they step
/// them on the other screens).
pub(crate) fn on_key(app: &mut App, code: KeyCode) -> bool {
    match code {
        KeyCode::Char('v') => app.compare = false,
        KeyCode::Char('d') => app.open_draw(),
        KeyCode::Char('l') => app.open_layers(),
        _ => return false,
    }
    true
}

pub(crate) fn draw(frame: &mut Frame, app: &App, src: &Sources) {
    let area = frame.area();
    let full = src.map_size();
    let (size, k) = super::display_size(area.width, area.height, full);
    let accepted = app.accepted_rules().len();
    let g = compare_layout(area.width, area.height, size.0, size.1, accepted);
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let keys = needed(app, area.width, area.height, src.labels, full);
    let cell = |i: usize| {
        let (c, r) = (i as u16 % g.per_row, i as u16 / g.per_row);
        (c * (g.panel_w + 1), 1 + r * (g.map_h + 3))
    };
    text(frame, 0, 1, g.panel_w, Line::styled("input", bold));
    if let Some(picture) = src.picture(app.index) {
        super::widgets::draw_picture(
            frame,
            Rect::new(0, 2, g.panel_w, g.map_h),
            picture,
            k,
            g.scale,
            src.color,
        );
    } else if let Some(img) = src.image(app.index) {
        draw_map(
            frame,
            Rect::new(0, 2, g.panel_w, g.map_h),
            &img,
            MapKind::Image,
            g.scale,
            src.color,
        );
    }
    let mut summary = None;
    for (k, key) in keys.iter().enumerate() {
        let (x, y) = cell(k + 1);
        text(
            frame,
            x,
            y,
            g.panel_w,
            Line::styled(truncate_middle(&key.rule, g.panel_w as usize), bold),
        );
        let data = (src.lookup)(key);
        let rect = Rect::new(x, y + 1, g.panel_w, g.map_h);
        match &data {
            Some(Ok(v)) => {
                draw_map(frame, rect, &v.relevance, heat_kind(&v.relevance), g.scale, src.color);
                text(
                    frame,
                    x,
                    y + 1 + g.map_h,
                    g.panel_w,
                    Line::from(format!("max |R| {}", figure(max_abs(v.relevance.view()), 4))),
                );
                let sum: f32 = v.relevance.sum();
                text(
                    frame,
                    x,
                    y + 2 + g.map_h,
                    g.panel_w,
                    Line::from(format!("sum R {}", figure(sum, 3))),
                );
                summary.get_or_insert_with(|| (v.predicted(), v.target, v.logits[v.target]));
            }
            other => draw_state(frame, rect, other),
        }
    }
    let label = src.labels.get(app.index).copied();
    let mut line = match src.photos.and_then(|p| p.names.get(app.index)) {
        Some(name) => format!("photo {}/{} {name}", app.index, app.count.saturating_sub(1)),
        None => format!(
            "index {}/{}  label {}",
            app.index,
            app.count.saturating_sub(1),
            label.map_or("-".into(), |l| src.class(l as usize))
        ),
    };
    if let Some((pred, target, logit)) = summary {
        line.push_str(&format!(
            "  predicted {}  explaining class {} (logit {})",
            src.class(pred),
            src.class(target),
            figure(logit, 3)
        ));
    }
    let hidden = accepted.saturating_sub(keys.len());
    let bottom = area.height - 3;
    text(
        frame,
        0,
        bottom,
        area.width,
        Line::from(truncate(&line, area.width as usize)),
    );
    let hint = if src.color == ColorMode::NoColor {
        no_color_legend()
    } else {
        "red +, blue −, each map to its own max |R|".to_string()
    };
    let more = if hidden > 0 {
        format!(" ({hidden} more)")
    } else {
        String::new()
    };
    text(
        frame,
        0,
        bottom + 1,
        area.width,
        Line::from(truncate(
            &format!("{hint} · r/R: other rules{more}"),
            area.width as usize,
        )),
    );
}
