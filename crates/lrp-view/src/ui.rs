//! Drawing the viewer into a ratatui frame (any backend, so tests draw into a `TestBackend`).

use ndarray::Array2;
use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color as TColor, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget, Wrap};

use crate::app::{App, ClassChoice, HELP, Mode};
use crate::cells::{Cell, Color, ColorMode, MapKind, max_abs, render};
use crate::worker::{Key, ViewData};

/// The smallest terminal the viewer draws in.
pub const MIN_SIZE: (u16, u16) = (80, 24);
/// Width of a full-size map panel (a 28-pixel-wide digit).
const PANEL: u16 = 28;

/// Draws rows of cells at the top-left of its area (clipped to it).
pub struct CellsWidget<'a>(pub &'a [Vec<Cell>]);

fn tcolor(c: Color) -> TColor {
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

/// How many rule panels compare mode shows for a terminal `width`, and how wide each is.
pub fn compare_layout(width: u16, rules: usize) -> (usize, u16) {
    let full = ((width + 1) / (PANEL + 1)) as usize;
    if full >= 3 {
        (full.min(rules.max(1)), PANEL)
    } else {
        (3.min(rules.max(1)), (width + 1) / 3 - 1)
    }
}

/// The explanations the current screen needs.
pub fn needed(app: &App, width: u16) -> Vec<Key> {
    let key = |rule: usize| Key {
        model: app.model,
        index: app.index,
        rule: app.rules[rule % app.rules.len()].clone(),
        class: app.class,
    };
    if app.rules.is_empty() {
        return Vec::new();
    }
    if app.compare {
        let (n, _) = compare_layout(width, app.rules.len());
        (0..n).map(|k| key(app.rule + k)).collect()
    } else {
        vec![key(app.rule)]
    }
}

fn text(frame: &mut Frame, x: u16, y: u16, width: u16, line: Line) {
    let area = frame.area();
    if y >= area.height || x >= area.width {
        return;
    }
    let w = width.min(area.width - x);
    frame.render_widget(Paragraph::new(line), Rect::new(x, y, w, 1));
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn class_label(c: ClassChoice) -> String {
    match c {
        ClassChoice::Predicted => "pred".into(),
        ClassChoice::Class(k) => k.to_string(),
    }
}

/// Draws the whole screen. `lookup` gives the explanation of a key once the worker has it.
pub fn draw(
    frame: &mut Frame,
    app: &App,
    lookup: &dyn Fn(&Key) -> Option<Result<ViewData, String>>,
    labels: &[u8],
    color: ColorMode,
) {
    let area = frame.area();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        let msg = format!(
            "terminal too small: lrp view needs at least {}×{}, this one is {}×{}. Enlarge it, or press q to quit.",
            MIN_SIZE.0, MIN_SIZE.1, area.width, area.height
        );
        frame.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let model = app.models.get(app.model).map_or("-", |m| m.name.as_str());
    let rule = app.rules.get(app.rule).map_or("-", String::as_str);
    let title = format!(
        " lrp view │ model {model} │ rule {} │ class {}{} ",
        truncate(rule, 28),
        class_label(app.class),
        if app.compare { " │ comparing rules" } else { "" }
    );
    text(
        frame,
        0,
        0,
        area.width,
        Line::styled(
            truncate(&title, area.width as usize),
            Style::default().add_modifier(Modifier::REVERSED),
        ),
    );

    if app.mode == Mode::Help {
        text(frame, 2, 2, area.width - 2, Line::styled("keys", bold));
        for (i, (k, what)) in HELP.iter().enumerate() {
            text(
                frame,
                2,
                3 + i as u16,
                area.width - 2,
                Line::from(vec![Span::styled(format!("{k:<16}"), bold), Span::raw(*what)]),
            );
        }
        text(
            frame,
            2,
            4 + HELP.len() as u16,
            area.width - 2,
            Line::raw("colors: red = positive relevance, blue = negative; NO_COLOR gives characters"),
        );
        status(frame, app);
        return;
    }
    let label = labels.get(app.index).copied();
    if app.compare {
        draw_compare(frame, app, lookup, label, color);
    } else {
        draw_single(frame, app, lookup, label, color);
    }
    status(frame, app);
}

fn status(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let y = area.height - 1;
    let line = match &app.mode {
        Mode::GoTo(t) => Line::from(format!("go to index: {t}▏  (Enter to go, Esc to cancel)")),
        Mode::Spec(t) => Line::from(format!(":{t}▏  (a rule spec, Enter to use, Esc to cancel)")),
        _ => match &app.message {
            Some(m) => Line::styled(m.clone(), Style::default().add_modifier(Modifier::BOLD)),
            None => Line::from("←/→ sample  g go  m wrong  r rule  : spec  c class  Tab model  v compare  ? help"),
        },
    };
    text(frame, 0, y, area.width, line);
}

fn draw_map_or_state(
    frame: &mut Frame,
    rect: Rect,
    data: &Option<Result<ViewData, String>>,
    width: u16,
    color: ColorMode,
) {
    match data {
        None => frame.render_widget(Paragraph::new("computing…"), rect),
        Some(Err(e)) => frame.render_widget(Paragraph::new(e.clone()).wrap(Wrap { trim: true }), rect),
        Some(Ok(v)) => {
            let map = shrink_width(&v.relevance, width as usize);
            let scale = max_abs(map.view());
            let cells = render(map.view(), MapKind::Heatmap { scale }, color);
            frame.render_widget(CellsWidget(&cells), rect);
        }
    }
}

fn draw_single(
    frame: &mut Frame,
    app: &App,
    lookup: &dyn Fn(&Key) -> Option<Result<ViewData, String>>,
    label: Option<u8>,
    color: ColorMode,
) {
    let area = frame.area();
    let key = needed(app, area.width).into_iter().next();
    let data = key.as_ref().and_then(lookup);
    let bold = Style::default().add_modifier(Modifier::BOLD);
    text(frame, 0, 1, PANEL, Line::styled("input", bold));
    text(frame, PANEL + 2, 1, PANEL, Line::styled("relevance", bold));
    let maps = Rect::new(0, 2, PANEL, 14);
    if let Some(Ok(v)) = &data {
        let img = shrink_width(&v.image, PANEL as usize);
        let cells = render(img.view(), MapKind::Image, color);
        frame.render_widget(CellsWidget(&cells), maps);
    }
    draw_map_or_state(frame, Rect::new(PANEL + 2, 2, PANEL, 14), &data, PANEL, color);
    let info_x = 2 * PANEL + 4;
    let info_w = area.width - info_x;
    let mut lines: Vec<Line> = vec![
        Line::from(format!("index {}/{}", app.index, app.count.saturating_sub(1))),
        Line::from(format!("label {}", label.map_or("-".into(), |l| l.to_string()))),
    ];
    if let Some(Ok(v)) = &data {
        let pred = v.predicted();
        lines.push(Line::from(format!(
            "pred  {pred}{}",
            if label.is_some_and(|l| l as usize != pred) {
                "  ✗"
            } else {
                ""
            }
        )));
        lines.push(Line::from(format!("class {} ({})", v.target, class_label(app.class))));
        lines.push(Line::from(format!("logit {:.3}", v.logits[v.target])));
        lines.push(Line::styled("probabilities", bold));
        let bar_w = info_w.saturating_sub(8) as usize;
        for (k, p) in v.probabilities().iter().enumerate().take(10) {
            let filled = (p * bar_w as f32).round() as usize;
            let bar: String = "█".repeat(filled) + &"·".repeat(bar_w - filled.min(bar_w));
            let style = if k == v.target { bold } else { Style::default() };
            lines.push(Line::styled(format!("{k} {bar} {:>3.0}%", p * 100.0), style));
        }
        let scale = max_abs(v.relevance.view());
        text(
            frame,
            PANEL + 2,
            16,
            PANEL + 4,
            Line::from(format!("max |R| {scale:.4}  red + blue −")),
        );
        text(
            frame,
            0,
            17,
            2 * PANEL + 2,
            Line::styled("relevance sums, conservation (last: the logit)", bold),
        );
        for (i, (name, s)) in v.layer_sums.iter().enumerate() {
            let (col, row) = (i / 4, i % 4);
            let x = col as u16 * 20;
            if x + 19 <= area.width {
                text(
                    frame,
                    x,
                    18 + row as u16,
                    19,
                    Line::from(format!("{:<12}{:>7.2}", truncate(name, 12), s)),
                );
            }
        }
    }
    for (i, line) in lines.into_iter().enumerate() {
        text(frame, info_x, 1 + i as u16, info_w, line);
    }
}

fn draw_compare(
    frame: &mut Frame,
    app: &App,
    lookup: &dyn Fn(&Key) -> Option<Result<ViewData, String>>,
    label: Option<u8>,
    color: ColorMode,
) {
    let area = frame.area();
    let (_, w) = compare_layout(area.width, app.rules.len());
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut summary = None;
    for (k, key) in needed(app, area.width).iter().enumerate() {
        let x = k as u16 * (w + 1);
        text(frame, x, 1, w, Line::styled(truncate(&key.rule, w as usize), bold));
        let data = lookup(key);
        draw_map_or_state(frame, Rect::new(x, 2, w, 14), &data, w, color);
        if let Some(Ok(v)) = &data {
            text(
                frame,
                x,
                16,
                w,
                Line::from(format!("max |R| {:.4}", max_abs(v.relevance.view()))),
            );
            let sum: f32 = v.relevance.sum();
            text(frame, x, 17, w, Line::from(format!("sum R {sum:.3}")));
            summary.get_or_insert_with(|| (v.predicted(), v.target, v.logits[v.target]));
        }
    }
    let mut line = format!(
        "index {}/{}  label {}",
        app.index,
        app.count.saturating_sub(1),
        label.map_or("-".into(), |l| l.to_string())
    );
    if let Some((pred, target, logit)) = summary {
        line.push_str(&format!(
            "  predicted {pred}  explaining class {target} (logit {logit:.3})"
        ));
    }
    text(frame, 0, 19, area.width, Line::from(line));
    text(
        frame,
        0,
        20,
        area.width,
        Line::from("r/R shifts the rules shown; : adds a rule; v returns to one rule with the input"),
    );
}
