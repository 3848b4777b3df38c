//! `lrp explain`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use ndarray::{ArrayD, Axis, Ix2};

use lrp_rules::{Explainer, Explanation, Spec, Target};
use lrp_view::cells::{self, ColorMode, MapKind};
use lrp_view::png_out::{Panel, write_png};

use crate::inputs::{SplitArg, load_model, load_npy_input, load_split_for, load_targets, write_npy_atomic};

/// How many samples `--print` draws at most.
const PRINT_LIMIT: usize = 16;

#[derive(Args)]
pub struct ExplainArgs {
    /// Model file (native, or .onnx).
    #[arg(long)]
    model: PathBuf,
    /// Input batch as .npy (float32), `[N, …input shape]`.
    #[arg(long, conflicts_with = "data", required_unless_present = "data")]
    input: Option<PathBuf>,
    /// Dataset folder (with --index).
    #[arg(long, requires = "index")]
    data: Option<PathBuf>,
    /// Which split of --data.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    split: SplitArg,
    /// Index of the first sample in --data.
    #[arg(long)]
    index: Option<usize>,
    /// How many samples from --index on.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Rule spec: a preset (epsilon, epsilon-gamma-box, deep-taylor, gradient, …) or a mapping such as
    /// "conv=gamma(0.25); dense=epsilon; first=zbox(0,1)". See the README for the grammar.
    #[arg(long)]
    rule: String,
    /// Class to explain: pred (the prediction), label (the true label, with --data), or a class number.
    #[arg(long, default_value = "pred", conflicts_with = "targets")]
    target: String,
    /// One class per sample from an int64 .npy `[N]`.
    #[arg(long)]
    targets: Option<PathBuf>,
    /// Write the relevance as float32 .npy, shaped like the input.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write input and heatmap side by side as PNG.
    #[arg(long)]
    png: Option<PathBuf>,
    /// Draw the heatmap in the terminal (the default when neither --out nor --png is given).
    #[arg(long)]
    print: bool,
}

pub fn run(a: ExplainArgs) -> Result<()> {
    let spec = Spec::parse(&a.rule)?;
    let model = load_model(&a.model)?;
    let net = &model.network;
    let explainer = Explainer::new(net, &spec)?;
    let (x, labels): (ArrayD<f32>, Option<Vec<u8>>) = match (&a.input, &a.data) {
        (Some(path), _) => (load_npy_input(path, net)?, None),
        (None, Some(dir)) => {
            let d = load_split_for(dir, a.split.into(), net)?;
            let start = a.index.unwrap_or(0);
            if d.len() == 0 {
                bail!("{}: the split holds no samples", dir.display());
            }
            if start >= d.len() {
                bail!(
                    "--index {start} is out of range: {} has {} samples (0 to {})",
                    dir.display(),
                    d.len(),
                    d.len() - 1
                );
            }
            let end = start.saturating_add(a.count.max(1)).min(d.len());
            let x = d.images.slice_axis(Axis(0), (start..end).into()).to_owned();
            (x, Some(d.labels[start..end].to_vec()))
        }
        (None, None) => bail!("give --input X.npy or --data DIR --index I"),
    };
    let target = match (&a.targets, a.target.as_str()) {
        (Some(path), _) => Target::PerSample(load_targets(path)?),
        (None, "pred") => Target::Predicted,
        (None, "label") => match &labels {
            Some(l) => Target::PerSample(l.iter().map(|&v| v as usize).collect()),
            None => bail!("--target label needs --data: an .npy input has no labels (use --targets T.npy)"),
        },
        (None, k) => Target::Class(
            k.parse()
                .with_context(|| format!("--target '{k}' is not pred, label or a class number"))?,
        ),
    };
    let e = explainer.explain(x.view(), &target)?;
    if let Some(out) = &a.out {
        write_npy_atomic(out, &e.relevance)?;
        eprintln!("wrote relevance {:?} to {}", e.relevance.shape(), out.display());
    }
    if let Some(path) = &a.png {
        let panels: Vec<Panel> = x
            .outer_iter()
            .zip(e.relevance.outer_iter())
            .map(|(img, rel)| Panel {
                image: cells::to_map(img),
                relevance: cells::to_map(rel),
            })
            .collect();
        write_png(path, &panels)?;
        eprintln!("wrote {}", path.display());
    }
    if a.print || (a.out.is_none() && a.png.is_none()) {
        print(&x, &e, &explainer, labels.as_deref(), a.index.unwrap_or(0));
    }
    Ok(())
}

fn print(x: &ArrayD<f32>, e: &Explanation, explainer: &Explainer, labels: Option<&[u8]>, first_index: usize) {
    let mode = ColorMode::from_env();
    let net = explainer.network();
    let logits = e.logits.view().into_dimensionality::<Ix2>().expect("logits are [N, K]");
    let predicted = lrp_core::train::argmax_rows(e.logits.view());
    let explained = e.explained_logits();
    let n = x.shape()[0];
    for s in 0..n.min(PRINT_LIMIT) {
        let image = cells::to_map(x.index_axis(Axis(0), s));
        let rel = cells::to_map(e.relevance.index_axis(Axis(0), s));
        let scale = cells::max_abs(rel.view());
        let left = cells::render(image.view(), MapKind::Image, mode);
        let right = cells::render(rel.view(), MapKind::Heatmap { scale }, mode);
        let label = labels.map(|l| format!(", label {}", l[s])).unwrap_or_default();
        let which = if labels.is_some() {
            format!("index {}", first_index + s)
        } else {
            format!("sample {s}")
        };
        println!(
            "{which}: predicted {}{label}, explained class {} (logit {:.4}), rule {}",
            predicted[s],
            e.targets[s],
            explained[s],
            explainer.plan().spec()
        );
        for (l, r) in left.iter().zip(&right) {
            println!("{}  {}", cells::to_ansi(l), cells::to_ansi(r));
        }
        println!("input | relevance (red +, blue −), max |R| = {scale:.4}");
        if mode == ColorMode::NoColor {
            println!("{}", cells::no_color_legend());
        }
        if e.layer_sums.is_empty() {
            let total: f32 = e.relevance.index_axis(Axis(0), s).sum();
            println!(
                "attribution summed over the input: {total:.4} (logit {:.4})",
                logits[[s, e.targets[s]]]
            );
        } else {
            if net.is_chain() {
                println!("relevance sum at each layer's input (conservation; the last line is the explained logit):");
            } else {
                println!(
                    "relevance sum at each value, by the node that wrote it (parallel branches each hold a part; the \
                     last line is the explained logit):"
                );
            }
            for (i, sums) in e.layer_sums.iter().enumerate() {
                println!("  {:<20} {:>12.4}", net.value_label(i), sums[s]);
            }
        }
        println!();
    }
    if n > PRINT_LIMIT {
        println!(
            "({} more samples not drawn; use --out or --png for all)",
            n - PRINT_LIMIT
        );
    }
}
