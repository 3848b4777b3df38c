//! The facts beside or under the pictures of the single-input screens: the sample, the prediction, the
//! probabilities and the conservation sums.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};

use super::Sources;
use super::layout::Layout;
use super::widgets::{class_label, text, truncate};
use crate::app::App;
use crate::cells::figure;
use crate::worker::ViewData;

/// Width of one conservation-sum column.
const SUM_W: u16 = 20;

/// Index, label (or photo), prediction, class, logit, then the probabilities.
pub(crate) fn facts(app: &App, v: Option<&ViewData>, src: &Sources) -> Vec<Line<'static>> {
    let here = !app.on_drawing();
    let label = src.labels.get(app.index).copied().filter(|_| here);
    let photo = src.photos.and_then(|p| p.names.get(app.index)).filter(|_| here);
    let mut lines = vec![
        if app.on_drawing() {
            Line::from("your drawing")
        } else {
            Line::from(format!("index {}/{}", app.index, app.count.saturating_sub(1)))
        },
        match photo {
            Some(name) => Line::from(name.clone()),
            None => Line::from(format!("label {}", label.map_or("-".into(), |l| src.class(l as usize)))),
        },
    ];
    if let Some(v) = v {
        let pred = v.predicted();
        let wrong = label.is_some_and(|l| l as usize != pred);
        lines.push(Line::from(format!(
            "pred  {}{}",
            src.class(pred),
            if wrong { "  ✗" } else { "" }
        )));
        lines.push(Line::from(format!(
            "class {} ({})",
            src.class(v.target),
            class_label(app.class)
        )));
        lines.push(Line::from(format!("logit {}", figure(v.logits[v.target], 3))));
    }
    lines
}

/// The probabilities as bars: every class of a model with up to 10, else the 10 most likely, with their names.
pub(crate) fn probability_lines(v: &ViewData, width: u16, rows: u16, src: &Sources) -> Vec<Line<'static>> {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let probs = v.probabilities();
    let n = probs.len().min(10);
    let mut order: Vec<usize> = (0..probs.len()).collect();
    if probs.len() > 10 {
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    }
    let columns = if rows as usize >= n {
        1
    } else {
        n.div_ceil(rows.max(1) as usize)
    };
    let per_col = n.div_ceil(columns);
    let col_w = (width as usize / columns).max(10);
    let bar_w = col_w.saturating_sub(9).max(1);
    (0..per_col)
        .map(|r| {
            let spans: Vec<Span> = (0..columns)
                .filter_map(|c| {
                    let i = c * per_col + r;
                    (i < n).then(|| {
                        let k = order[i];
                        let p = probs[k];
                        let style = if k == v.target { bold } else { Style::default() };
                        if probs.len() > 10 || src.class_names.is_some() {
                            // A name and a percentage; the bar where room is left.
                            let name = truncate(&src.class(k), col_w.saturating_sub(6).max(4));
                            let room = col_w.saturating_sub(name.chars().count() + 6);
                            let filled = ((p * room as f32).round() as usize).min(room);
                            let bar = "█".repeat(filled) + &" ".repeat(room - filled);
                            return Span::styled(format!("{name} {bar}{:>3.0}% ", p * 100.0), style);
                        }
                        let filled = ((p * bar_w as f32).round() as usize).min(bar_w);
                        let bar = "█".repeat(filled) + &"·".repeat(bar_w - filled);
                        Span::styled(format!("{k} {bar} {:>3.0}% ", p * 100.0), style)
                    })
                })
                .collect();
            Line::from(spans)
        })
        .collect()
}

/// The conservation sums in columns; when they do not all fit, the first ones, `…`, and the logit.
pub(crate) fn draw_sums(frame: &mut Frame, rect: Rect, sums: &[(String, f32)]) {
    if rect.height < 2 || rect.width < SUM_W {
        return;
    }
    let bold = Style::default().add_modifier(Modifier::BOLD);
    text(
        frame,
        rect.x,
        rect.y,
        rect.width,
        Line::styled("relevance sums, conservation (last: the logit)", bold),
    );
    let cols = (rect.width + 1) / SUM_W;
    let rows = rect.height - 1;
    let capacity = (cols * rows) as usize;
    let mut shown: Vec<String> = sums
        .iter()
        .map(|(name, s)| format!("{:<12}{:>7}", truncate(name, 12), figure(*s, 3)))
        .collect();
    if shown.len() > capacity && capacity >= 3 {
        let hidden = shown.len() - (capacity - 1);
        let last = shown.pop().expect("non-empty");
        shown.truncate(capacity - 2);
        shown.push(format!("… {hidden} more (l)"));
        shown.push(last);
    }
    for (i, s) in shown.iter().enumerate().take(capacity) {
        let (col, row) = (i as u16 / rows, i as u16 % rows);
        text(
            frame,
            rect.x + col * SUM_W,
            rect.y + 1 + row,
            SUM_W - 1,
            Line::from(s.clone()),
        );
    }
}

/// The info beside or under the pictures of the single-input screens.
pub(crate) fn draw_info(frame: &mut Frame, layout: &Layout, app: &App, data: Option<&ViewData>, src: &Sources) {
    let area = frame.area();
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let maps_w = layout.maps_w();
    let facts = facts(app, data, src);
    let below_y = 2 + layout.panel_h + 1;
    if layout.side {
        let x = maps_w + 2;
        let w = area.width - x;
        let mut y = 1;
        for line in facts {
            text(frame, x, y, w, line);
            y += 1;
        }
        if let Some(v) = data {
            text(frame, x, y, w, Line::styled("probabilities", bold));
            for line in probability_lines(v, w, 10, src) {
                y += 1;
                text(frame, x, y, w, line);
            }
            let sums_y = below_y.max(y + 1).min(area.height.saturating_sub(3));
            let sums_w = if sums_y > y { area.width } else { maps_w };
            draw_sums(
                frame,
                Rect::new(0, sums_y, sums_w, area.height - 1 - sums_y),
                &v.layer_sums,
            );
        }
    } else {
        let rows = area.height - 1 - below_y;
        for (i, line) in facts.into_iter().enumerate().take(rows as usize) {
            text(frame, 0, below_y + i as u16, 22, line);
        }
        if let Some(v) = data {
            let probs_w = 36.min(area.width.saturating_sub(24));
            for (i, line) in probability_lines(v, probs_w, rows, src).into_iter().enumerate() {
                text(frame, 24, below_y + i as u16, probs_w, line);
            }
            let sx = 24 + probs_w + 2;
            if sx + SUM_W <= area.width {
                draw_sums(frame, Rect::new(sx, below_y, area.width - sx, rows), &v.layer_sums);
            }
        }
    }
}
