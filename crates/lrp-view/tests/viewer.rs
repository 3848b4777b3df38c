//! The viewer: widgets rendered into ratatui's test backend, and key handling as pure state changes.

use lrp_core::{Arch, Network};
use lrp_view::app::{App, ClassChoice, Mode, ModelEntry, RuleCheck, Screen};
use lrp_view::cells::{ColorMode, MapKind, render};
use lrp_view::ui::{CellsWidget, Sources, compare_layout, draw, shrink_width};
use lrp_view::worker::{InputRef, Key, Shared, ViewData, compute};
use ndarray::{ArrayD, IxDyn, array};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::widgets::Widget;

fn cells_in_buffer(mode: ColorMode) -> Buffer {
    let map = array![[1.0f32, 0.5], [-1.0, 0.0]];
    let cells = render(map.view(), MapKind::Heatmap { scale: 1.0 }, mode);
    let mut buf = Buffer::empty(Rect::new(0, 0, 2, 1));
    CellsWidget(&cells).render(buf.area, &mut buf);
    buf
}

#[test]
fn a_two_by_two_heatmap_renders_to_the_expected_cells() {
    let t = cells_in_buffer(ColorMode::TrueColor);
    assert_eq!(t[(0, 0)].symbol(), "▀");
    assert_eq!(
        (t[(0, 0)].fg, t[(0, 0)].bg),
        (Color::Rgb(255, 0, 0), Color::Rgb(0, 0, 255))
    );
    assert_eq!(
        (t[(1, 0)].fg, t[(1, 0)].bg),
        (Color::Rgb(255, 128, 128), Color::Rgb(255, 255, 255))
    );

    let p = cells_in_buffer(ColorMode::Palette256);
    assert_eq!(p[(0, 0)].symbol(), "▀");
    assert_eq!((p[(0, 0)].fg, p[(0, 0)].bg), (Color::Indexed(196), Color::Indexed(21)));
    assert_eq!(p[(1, 0)].bg, Color::Indexed(231));

    let n = cells_in_buffer(ColorMode::NoColor);
    assert_eq!(n[(0, 0)].symbol(), "@");
    assert_eq!(n[(1, 0)].symbol(), "*");
    assert_eq!((n[(0, 0)].fg, n[(0, 0)].bg), (Color::Reset, Color::Reset));
}

fn app(count: usize) -> App {
    App::new(
        vec![
            ModelEntry {
                name: "a".into(),
                classes: 3,
                layers: 4,
                head_layers: Vec::new(),
                default_rule: "epsilon".into(),
                concept_layers: Vec::new(),
                concept_of_layer: Vec::new(),
            },
            ModelEntry {
                name: "b".into(),
                classes: 10,
                layers: 4,
                head_layers: Vec::new(),
                default_rule: "epsilon".into(),
                concept_layers: Vec::new(),
                concept_of_layer: Vec::new(),
            },
        ],
        count,
        vec!["epsilon".into(), "zplus".into(), "gradient".into()],
    )
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// Specs starting `all=` parse; model 1 (`b`) refuses `zplus` and `all=refused`.
struct Mock;

impl RuleCheck for Mock {
    fn parse(&self, s: &str) -> Result<String, String> {
        if s.starts_with("all=") {
            Ok(s.to_string())
        } else {
            Err(format!("bad spec '{s}'"))
        }
    }

    fn accepts(&self, model: usize, spec: &str) -> Result<(), String> {
        if model == 1 && (spec == "zplus" || spec == "all=refused") {
            Err(format!("b does not take {spec}"))
        } else {
            Ok(())
        }
    }
}

fn press(app: &mut App, codes: &[KeyCode]) {
    for &c in codes {
        app.handle_key(key(c), &Mock);
    }
}

#[test]
fn next_and_previous_wrap_at_the_ends() {
    let mut a = app(250);
    press(&mut a, &[KeyCode::Left]);
    assert_eq!(a.index, 249);
    press(&mut a, &[KeyCode::Right]);
    assert_eq!(a.index, 0);
    press(&mut a, &[KeyCode::PageUp]);
    assert_eq!(a.index, 150);
    press(&mut a, &[KeyCode::PageDown, KeyCode::PageDown]);
    assert_eq!(a.index, 100);
    press(
        &mut a,
        &[
            KeyCode::Char('g'),
            KeyCode::Char('4'),
            KeyCode::Char('2'),
            KeyCode::Enter,
        ],
    );
    assert_eq!((a.index, &a.mode), (42, &Mode::Normal));
    press(
        &mut a,
        &[
            KeyCode::Char('g'),
            KeyCode::Char('9'),
            KeyCode::Char('9'),
            KeyCode::Char('9'),
            KeyCode::Enter,
        ],
    );
    assert_eq!(a.index, 42);
    assert!(a.message.as_deref().unwrap().contains("out of range"));
}

#[test]
fn classes_rules_and_models_cycle() {
    let mut a = app(10);
    press(&mut a, &[KeyCode::Char('c')]);
    assert_eq!(a.class, ClassChoice::Label, "after the prediction comes the true label");
    press(&mut a, &[KeyCode::Char('c')]);
    assert_eq!(a.class, ClassChoice::Class(0));
    press(&mut a, &[KeyCode::Char('c'), KeyCode::Char('c'), KeyCode::Char('c')]);
    assert_eq!(
        a.class,
        ClassChoice::Predicted,
        "after the last class comes the prediction again"
    );
    press(&mut a, &[KeyCode::Char('C')]);
    assert_eq!(a.class, ClassChoice::Class(2));
    press(&mut a, &[KeyCode::Tab]);
    assert_eq!((a.model, a.class), (1, ClassChoice::Class(2)));
    press(
        &mut a,
        &[
            KeyCode::Char('C'),
            KeyCode::Char('C'),
            KeyCode::Char('C'),
            KeyCode::Char('C'),
        ],
    );
    assert_eq!(a.class, ClassChoice::Predicted);
    press(&mut a, &[KeyCode::Char('C')]);
    assert_eq!(a.class, ClassChoice::Class(9));
    press(&mut a, &[KeyCode::Tab]);
    assert_eq!(
        (a.model, a.class),
        (0, ClassChoice::Predicted),
        "class 9 does not exist in a 3-class model"
    );

    press(&mut a, &[KeyCode::Char('R')]);
    assert_eq!(a.rule, 2);
    press(&mut a, &[KeyCode::Char('r')]);
    assert_eq!(a.rule, 0);
    press(
        &mut a,
        &[
            KeyCode::Char(':'),
            KeyCode::Char('a'),
            KeyCode::Char('l'),
            KeyCode::Char('l'),
            KeyCode::Char('='),
            KeyCode::Char('x'),
            KeyCode::Enter,
        ],
    );
    assert_eq!((a.rule, a.rules.len()), (3, 4));
    press(&mut a, &[KeyCode::Char(':'), KeyCode::Char('z'), KeyCode::Enter]);
    assert_eq!(a.rule, 3);
    assert_eq!(a.message.as_deref(), Some("bad spec 'z'"));
    press(&mut a, &[KeyCode::Char('v'), KeyCode::Char('?')]);
    assert!(a.compare);
    assert_eq!(a.mode, Mode::Help);
    press(&mut a, &[KeyCode::Char('x')]);
    assert_eq!(a.mode, Mode::Normal);
    assert!(!a.quit);
    press(&mut a, &[KeyCode::Char('q')]);
    assert!(a.quit);
}

#[test]
fn misclassified_search_moves_or_says_there_is_none() {
    let mut a = app(5);
    let labels = [1u8, 1, 2, 0, 2];
    a.next_misclassified(&[1, 1, 2, 0, 2], &labels);
    assert_eq!(a.index, 0);
    assert!(a.message.as_deref().unwrap().contains("no misclassified sample"));
    a.index = 3;
    a.next_misclassified(&[0, 1, 2, 0, 2], &labels);
    assert_eq!(a.index, 0, "search wraps past the end");
    press(&mut a, &[KeyCode::Char('m')]);
    assert!(a.wants_misclassified);
}

#[test]
fn compare_mode_fits_three_rules_in_80_columns() {
    // 80 columns: the input and three rules, narrowed.
    let g = compare_layout(80, 24, 28, 28, 15);
    assert_eq!((g.scale, g.per_row, g.rows, g.panel_w), (1, 4, 1, 19));
    assert_eq!(g.rules_shown(15), 3);
    // 120×40: full-size panels in two rows (input + 7 rules); 200×60: three rows of six.
    let g = compare_layout(120, 40, 28, 28, 15);
    assert_eq!((g.scale, g.per_row, g.rows, g.panel_w), (1, 4, 2, 28));
    let g = compare_layout(200, 60, 28, 28, 15);
    assert_eq!((g.scale, g.per_row * g.rows), (1, 18));
    assert_eq!(g.rules_shown(15), 15);
    // Two rules at 200×60: the three panels at 2×.
    assert_eq!(compare_layout(200, 60, 28, 28, 2).scale, 2);
    let narrowed = shrink_width(&array![[0.1f32, -0.9, 0.2, 0.3]], 2);
    assert_eq!(narrowed, array![[-0.9f32, 0.3]]);
}

fn shared() -> (Shared, Network) {
    let net = Arch::Cnn.build(&[1, 12, 12], 3, 1).unwrap();
    let images = ArrayD::from_shape_fn(IxDyn(&[4, 1, 12, 12]), |d| ((d[0] + d[2] * d[3]) % 7) as f32 / 7.0);
    (
        Shared {
            models: vec![("tiny".into(), net.clone())],
            images,
            labels: vec![0, 1, 2, 1],
            photos: None,
            class_names: None,
        },
        net,
    )
}

fn screen_text(term: &Terminal<TestBackend>) -> String {
    let buf = term.backend().buffer();
    let area = buf.area;
    (0..area.height)
        .map(|y| {
            (0..area.width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
                + "\n"
        })
        .collect()
}

fn sample_key(index: usize, rule: &str) -> Key {
    Key {
        model: 0,
        input: InputRef::Sample(index),
        rule: rule.into(),
        class: ClassChoice::Predicted,
        layers: false,
        concept: None,
    }
}

#[test]
fn the_screen_shows_the_sample_and_says_when_the_terminal_is_too_small() {
    let (shared, net) = shared();
    let mut a = App::new(
        vec![ModelEntry {
            name: "tiny".into(),
            classes: 3,
            layers: net.layers().len(),
            head_layers: Vec::new(),
            default_rule: "epsilon".into(),
            concept_layers: Vec::new(),
            concept_of_layer: Vec::new(),
        }],
        4,
        vec!["epsilon".into(), "zplus".into(), "gamma".into()],
    );
    a.index = 1;
    let spec = lrp_rules::Spec::parse("epsilon").unwrap();
    let ex = lrp_rules::Explainer::new(&net, &spec).unwrap();
    let k = sample_key(1, "epsilon");
    let data: ViewData = compute(&shared, &k, &ex, None).unwrap();
    let lookup = |q: &Key| if *q == k { Some(Ok(data.clone())) } else { None };
    let src = Sources {
        lookup: &lookup,
        labels: &shared.labels,
        images: &shared.images,
        color: ColorMode::TrueColor,
        photos: None,
        class_names: None,
    };
    let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    term.draw(|f| draw(f, &a, &src)).unwrap();
    let screen = screen_text(&term);
    assert!(screen.contains("index 1/3") && screen.contains("label 1"), "{screen}");
    assert!(
        screen.contains("probabilities") && screen.contains("relevance sum"),
        "{screen}"
    );
    assert!(screen.contains('▀'));
    // Compare mode: the input first, then the rules; the first rule is ready, the others are computing.
    a.compare = true;
    term.draw(|f| draw(f, &a, &src)).unwrap();
    let buf = term.backend().buffer().clone();
    let row1: String = (0..80).map(|x| buf[(x, 1)].symbol().to_string()).collect();
    assert!(
        row1.starts_with("input") && row1.contains("epsilon") && row1.contains("zplus") && row1.contains("gamma"),
        "{row1}"
    );
    let row2: String = (13..80).map(|x| buf[(x, 2)].symbol().to_string()).collect();
    assert!(row2.contains("computing"), "{row2}");

    let mut small = Terminal::new(TestBackend::new(60, 20)).unwrap();
    small.draw(|f| draw(f, &a, &src)).unwrap();
    let text = screen_text(&small);
    assert!(
        text.contains("terminal too small") && text.contains("80×24") && text.contains("60×20"),
        "{text}"
    );
}

/// Every screen's help fits an 80×24 terminal: the key column in 16 characters, each line in 80 columns, the
/// lines (with the title, the color line and the status line) in 24 rows.
#[test]
fn the_help_fits_80_columns() {
    let mut app = app(10);
    for (screen, compare) in [
        (Screen::Browse, false),
        (Screen::Browse, true),
        (Screen::Draw, false),
        (Screen::Layers, false),
        (Screen::Concept, false),
    ] {
        app.screen = screen;
        app.compare = compare;
        let lines = lrp_view::ui::help::lines(&app);
        assert!(2 + lines.len() + 2 <= 24, "{screen:?}: {} lines", lines.len());
        for (k, what) in lines {
            let width = 2 + 16 + what.chars().count();
            assert!(width <= 80, "{k}: {width} columns");
            assert!(k.chars().count() <= 16, "{k}");
        }
    }
}

/// Tab moves each model to its own default rule (`attnlrp` for a transformer), unless a rule was typed after `:`.
#[test]
fn each_model_opens_on_its_default_rule_and_a_typed_rule_survives_tab() {
    let entry = |name: &str, default: &str| ModelEntry {
        name: name.into(),
        classes: 10,
        layers: 3,
        head_layers: Vec::new(),
        default_rule: default.into(),
        concept_layers: Vec::new(),
        concept_of_layer: Vec::new(),
    };
    let rules: Vec<String> = ["epsilon-gamma-box", "attnlrp", "gradient"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut a = App::new(
        vec![entry("cnn", "epsilon-gamma-box"), entry("vit", "attnlrp")],
        5,
        rules,
    );
    a.check_rules(&Mock, None);
    assert_eq!(a.rules[a.rule], "epsilon-gamma-box");
    press(&mut a, &[KeyCode::Tab]);
    assert_eq!(
        (a.model, a.rules[a.rule].as_str()),
        (1, "attnlrp"),
        "the transformer opens on AttnLRP"
    );
    press(&mut a, &[KeyCode::Tab]);
    assert_eq!(a.rules[a.rule], "epsilon-gamma-box");
    // A typed rule is kept across models.
    press(&mut a, &[KeyCode::Char(':')]);
    for c in "all=epsilon".chars() {
        press(&mut a, &[KeyCode::Char(c)]);
    }
    press(&mut a, &[KeyCode::Enter]);
    assert_eq!(a.rules[a.rule], "all=epsilon");
    press(&mut a, &[KeyCode::Tab]);
    assert_eq!((a.model, a.rules[a.rule].as_str()), (1, "all=epsilon"));
    // A rule given on the command line is kept too.
    let rules: Vec<String> = ["epsilon-gamma-box", "attnlrp", "gradient"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut b = App::new(
        vec![entry("cnn", "epsilon-gamma-box"), entry("vit", "attnlrp")],
        5,
        rules,
    );
    b.check_rules(&Mock, Some("gradient"));
    press(&mut b, &[KeyCode::Tab]);
    assert_eq!(b.rules[b.rule], "gradient");
}

/// Compare mode at 80×24: two rules that share a long start keep titles that tell them apart, and the bottom lines
/// fit the width.
#[test]
fn compare_mode_at_80x24_keeps_titles_apart_and_lines_within_the_width() {
    let (shared, net) = shared();
    let rules: Vec<String> = ["epsilon-alpha2-beta1", "epsilon-alpha2-beta1-flat", "epsilon"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut a = App::new(
        vec![ModelEntry {
            name: "tiny".into(),
            classes: 3,
            layers: net.layers().len(),
            head_layers: Vec::new(),
            default_rule: "epsilon".into(),
            concept_layers: Vec::new(),
            concept_of_layer: Vec::new(),
        }],
        4,
        rules.clone(),
    );
    a.compare = true;
    let data: Vec<(Key, ViewData)> = rules
        .iter()
        .map(|r| {
            let k = sample_key(0, r);
            let ex = lrp_rules::Explainer::new(&net, &lrp_rules::Spec::parse(r).unwrap()).unwrap();
            let v = compute(&shared, &k, &ex, None).unwrap();
            (k, v)
        })
        .collect();
    let lookup = |q: &Key| data.iter().find(|(k, _)| k == q).map(|(_, v)| Ok(v.clone()));
    let src = Sources {
        lookup: &lookup,
        labels: &shared.labels,
        images: &shared.images,
        color: ColorMode::TrueColor,
        photos: None,
        class_names: None,
    };
    let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    term.draw(|f| draw(f, &a, &src)).unwrap();
    let screen = screen_text(&term);
    let titles = screen.lines().nth(1).unwrap();
    let shown: Vec<&str> = titles.split_whitespace().skip(1).take(2).collect();
    assert_eq!(shown.len(), 2, "{screen}");
    assert!(shown.iter().all(|t| t.starts_with("epsilo")), "{screen}");
    assert_ne!(shown[0], shown[1], "two titles that say the same: {screen}");
    assert!(screen.contains("r/R: other rules"), "the hint line is whole: {screen}");
}

/// Figures keep two significant digits or more: a random-weight network's logits of 1e-9 read 0.0000 before.
#[test]
fn figures_switch_to_scientific_notation_where_decimals_would_hide_them() {
    use lrp_view::cells::figure;
    assert_eq!(figure(57.87184, 4), "57.8718");
    assert_eq!(figure(-0.0016, 4), "-0.0016");
    assert_eq!(figure(2.7945726e-9, 4), "2.79e-9");
    assert_eq!(figure(-0.00012346, 4), "-1.23e-4");
    assert_eq!(figure(0.0123, 3), "0.012");
    assert_eq!(figure(0.00987, 3), "9.9e-3");
    assert_eq!(figure(3.0e8, 3), "3.0e8");
    assert_eq!(figure(0.0, 4), "0.0000");
    assert_eq!(figure(f32::NAN, 3), "NaN");
    assert_eq!(figure(f32::NEG_INFINITY, 3), "-inf");
}
