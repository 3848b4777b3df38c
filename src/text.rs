//! What the commands print: progress bars that fit the terminal, counted nouns, the error chain.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// `1 rule`, `2 rules`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else if let Some(stem) = noun.strip_suffix('y') {
        format!("{n} {stem}ies")
    } else {
        format!("{n} {noun}s")
    }
}

/// A progress bar on standard error when it is a terminal (hidden otherwise, so logs stay clean). The bar takes
/// the width left by the text (`{wide_bar}`), so it never wraps, at 80 columns or 200; rates print as whole
/// numbers (`606/s`).
pub fn progress(len: u64, unit: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    let template = format!("{{wide_bar}} {{pos}}/{{len}} {unit} {{msg}}{{rate}} {{elapsed}}<{{eta}}");
    bar.set_style(
        ProgressStyle::with_template(&template)
            .expect("valid template")
            .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let r = s.per_sec();
                if r.is_finite() && r > 0.0 {
                    let _ = if r >= 10.0 {
                        write!(w, " {r:.0}/s")
                    } else {
                        write!(w, " {r:.1}/s")
                    };
                }
            })
            .progress_chars("█▌ "),
    );
    bar
}

/// An error and its causes on one line, each cause once: a cause whose text the message already ends with (a
/// library error that prints its source) is not repeated.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) || out.contains(&format!("{text}: ")) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_nouns() {
        assert_eq!(count(1, "rule"), "1 rule");
        assert_eq!(count(2, "thread"), "2 threads");
        assert_eq!(count(0, "epoch"), "0 epochs");
        assert_eq!(count(3, "entry"), "3 entries");
    }

    #[test]
    fn a_cause_the_message_already_holds_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let core = lrp_core::CoreError::io("/nope.lrpm", io);
        let e = anyhow::Error::from(core);
        assert_eq!(error_chain(&e), "/nope.lrpm: No such file or directory (os error 2)");
        let e = e.context("cannot load the model");
        assert_eq!(
            error_chain(&e),
            "cannot load the model: /nope.lrpm: No such file or directory (os error 2)"
        );
        let plain = anyhow::anyhow!("disk full").context("cannot write x");
        assert_eq!(error_chain(&plain), "cannot write x: disk full");
    }
}
