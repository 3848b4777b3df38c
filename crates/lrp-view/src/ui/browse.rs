//! The browse screen: a dataset sample and its heatmap under the current rule, with the facts beside them.

use ratatui::Frame;
use ratatui::crossterm::event::KeyCode;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;

use super::info::draw_info;
use super::layout::single_layout;
use super::widgets::{draw_map, draw_picture, draw_state, heat_kind, legend, text};
use super::{Sources, display_size, needed};
use crate::app::App;
use crate::cells::{MapKind, max_abs};
use crate::keys::{Binding, key};

/// The browse screen's own keys.
pub const KEYS: &[Binding] = &[
    key("v", "compare rules side by side, beside the input", "v compare"),
    key("d", "draw a digit and see its explanation", "d draw"),
    key("l", "layer view: relevance at each hidden layer", "l layers"),
];

/// Keys of the browse screen; false for a key it leaves to the common ones.
pub(crate) fn on_key(app: &mut App, code: KeyCode) -> bool {
    match code {
        KeyCode::Char('v') => app.compare = true,
        KeyCode::Char('d') => app.open_draw(),
        KeyCode::Char('l') => app.open_layers(),
        _ => return false,
    }
    true
}

pub(crate) fn draw(frame: &mut Frame, app: &App, src: &Sources) {
    let area = frame.area();
    let full = src.map_size();
    let (size, k) = display_size(area.width, area.height, full);
    let layout = single_layout(area.width, area.height, size.0, size.1, 2);
    let key = needed(app, area.width, area.height, src.labels, full)
        .into_iter()
        .next();
    let data = key.as_ref().and_then(|k| (src.lookup)(k));
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let (pw, ph) = (layout.panel_w, layout.panel_h);
    let input = if src.photos.is_some() { "photo" } else { "input" };
    text(frame, 0, 1, pw, Line::styled(input, bold));
    text(frame, pw + 2, 1, pw, Line::styled("relevance", bold));
    // The input is drawn from the dataset at once; only the relevance waits for the worker.
    if let Some(picture) = src.picture(app.index) {
        draw_picture(frame, Rect::new(0, 2, pw, ph), picture, k, layout.scale, src.color);
    } else if let Some(img) = src.image(app.index) {
        draw_map(
            frame,
            Rect::new(0, 2, pw, ph),
            &img,
            MapKind::Image,
            layout.scale,
            src.color,
        );
    }
    let rel_rect = Rect::new(pw + 2, 2, pw, ph);
    let ok = match &data {
        Some(Ok(v)) => {
            let kind = heat_kind(&v.relevance);
            draw_map(frame, rel_rect, &v.relevance, kind, layout.scale, src.color);
            text(
                frame,
                pw + 2,
                2 + ph,
                pw.max(28),
                Line::from(legend(src.color, max_abs(v.relevance.view()))),
            );
            Some(v)
        }
        other => {
            draw_state(frame, rel_rect, other);
            None
        }
    };
    draw_info(frame, &layout, app, ok, src);
}
