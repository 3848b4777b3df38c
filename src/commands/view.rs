//! `lrp view`: the terminal viewer.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use lrp_core::Split;
use lrp_view::worker::Shared;

use crate::inputs::{SplitArg, load_model};

#[derive(Args)]
pub struct ViewArgs {
    /// More models to show (native or .onnx), after the shipped ones; repeat.
    #[arg(long = "model")]
    models: Vec<PathBuf>,
    /// Dataset folder (default: the shipped MNIST, data/mnist).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Which split of the dataset.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    split: SplitArg,
    /// Open in draw mode: draw a digit with the mouse (or the keyboard) and see the explanation as you draw.
    #[arg(long)]
    draw: bool,
    /// The rule to open on (default epsilon-gamma-box, the composite most people use).
    #[arg(long, default_value = "epsilon-gamma-box")]
    rule: String,
}

pub fn run(a: ViewArgs) -> Result<()> {
    use std::io::IsTerminal;
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        eprintln!(
            "error: lrp view needs a terminal on standard input and output (over SSH: ssh -t host lrp view); for \
             files and pipes use lrp explain --print or --png"
        );
        std::process::exit(2);
    }
    let data_dir = a
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::shipped::MNIST_DIR));
    let data = crate::inputs::load_dataset(&data_dir, Split::from(a.split)).context("cannot open the dataset")?;
    // The shipped models (from data/models when it is here, else the copies built into the binary), CNN first.
    let mut paths: Vec<PathBuf> = crate::shipped::MODELS.iter().map(|m| PathBuf::from(m.path)).collect();
    paths.extend(a.models.iter().cloned());
    let mut models = Vec::new();
    for p in &paths {
        let m = load_model(p)?;
        let per_sample: usize = data.sample_shape().iter().product();
        if m.network.input_shape().iter().product::<usize>() != per_sample {
            bail!(
                "{}: takes inputs {:?}, the dataset has images {:?}",
                p.display(),
                m.network.input_shape(),
                data.sample_shape()
            );
        }
        models.push((name_of(p), m.network));
    }
    let shared = Shared {
        models,
        images: data.images.into_dyn(),
        labels: data.labels,
    };
    let rules: Vec<String> = lrp_rules::PRESETS.iter().map(|s| s.to_string()).collect();
    let spec = lrp_rules::Spec::parse(&a.rule)?.to_string();
    let mut rules: Vec<String> = rules;
    if !rules.contains(&spec) {
        rules.push(spec.clone());
    }
    let options = lrp_view::tui::Options {
        draw: a.draw,
        rule: Some(spec),
    };
    lrp_view::tui::run(shared, rules, options)?;
    Ok(())
}

fn name_of(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}
