//! Key bindings as data: each screen lists its own keys, [`COMMON`] those of every screen; the help screen and the
//! footers are generated from these lists, so a key is described in one place.

/// One key (or key pair) and what it does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The key as the help writes it (`r / R`).
    pub keys: &'static str,
    /// What it does, for the help screen.
    pub help: &'static str,
    /// Its short form for a screen's footer, if it has a place there (`r rule`).
    pub footer: Option<&'static str>,
}

/// A binding with a footer entry.
pub(crate) const fn key(keys: &'static str, help: &'static str, footer: &'static str) -> Binding {
    Binding {
        keys,
        help,
        footer: Some(footer),
    }
}

/// A binding shown in the help only.
pub(crate) const fn help_only(keys: &'static str, help: &'static str) -> Binding {
    Binding {
        keys,
        help,
        footer: None,
    }
}

/// The keys of every screen (a screen's own keys take precedence where they overlap).
pub const COMMON: &[Binding] = &[
    key("← / →", "previous / next sample (wraps)", "←→ sample"),
    help_only("PgUp/Dn Home/End", "100 samples back / forward, first / last sample"),
    key("g", "go to an index (type it, then Enter)", "g go"),
    key("m", "next misclassified sample", "m wrong"),
    key("r / R", "next / previous rule (those the model takes)", "r rule"),
    help_only(":", "type any rule spec, e.g. conv=gamma(0.5);dense=epsilon"),
    key("c / C", "explained class: pred, label, 0, 1, …", "c class"),
    key("Tab / Shift-Tab", "next / previous model", "Tab model"),
    key("?", "this help (any key closes it)", "? help"),
    help_only("Esc / q", "dismiss a message or leave a screen (else quit) / quit"),
];

/// A footer: the screen's own entries, then (unless the screen takes those keys over) the common ones, two spaces
/// apart, or one where two do not fit in `width` columns, as many as fit; `? help` is always kept.
pub fn footer(own: &[Binding], with_common: bool, width: usize) -> String {
    let mut items: Vec<&str> = own.iter().filter_map(|b| b.footer).collect();
    if with_common {
        items.extend(COMMON.iter().filter_map(|b| b.footer));
    } else {
        items.push("? help");
    }
    let len = |s: &str| s.chars().count();
    let gap = if items.iter().map(|i| len(i)).sum::<usize>() + 2 * (items.len() - 1) <= width {
        "  "
    } else {
        " "
    };
    let help = items.pop().expect("? help is last");
    let mut line = String::new();
    for item in items {
        if len(&line) + len(item) + len(gap) + len(help) > width {
            break;
        }
        line.push_str(item);
        line.push_str(gap);
    }
    line.push_str(help);
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_footer_keeps_the_help_key_and_fits() {
        let own = [key("x", "erase", "x erase"), key("u", "undo", "u undo")];
        assert_eq!(footer(&own, false, 80), "x erase  u undo  ? help");
        let full = footer(&own, true, 80);
        assert!(
            full.starts_with("x erase  u undo  ←→ sample") && full.ends_with("? help"),
            "{full}"
        );
        let narrow = footer(&own, true, 24);
        assert!(narrow.chars().count() <= 24 && narrow.ends_with("? help"), "{narrow}");
        // One space apart where two do not fit: the browse footer's ten entries in 80 columns.
        let browse = footer(crate::ui::browse::KEYS, true, 80);
        assert!(
            browse.chars().count() <= 80 && browse.contains("Tab model") && browse.contains("l layers"),
            "{browse}"
        );
    }
}
