//! `lrp explain`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use ndarray::{ArrayD, Axis, Ix2};

use lrp_rules::{Explainer, Explanation, Spec, Target};
use lrp_view::cells::{self, ColorChoice, ColorMode, MapKind, figure};
use lrp_view::png_out::{Panel, write_png};

use crate::inputs::{SplitArg, load_model, load_npy_input, load_split_for, load_targets, write_npy_atomic};
use crate::photos::{Labels, PhotoArgs, class_name, load_photos, pictures_of};

/// How many samples `--print` draws at most.
const PRINT_LIMIT: usize = 16;

#[derive(Args)]
pub struct ExplainArgs {
    /// Model file (native, or .onnx).
    #[arg(long)]
    model: PathBuf,
    /// Input batch as .npy (float32), `[N, …input shape]`.
    #[arg(long, conflicts_with_all = ["data", "images"])]
    input: Option<PathBuf>,
    #[command(flatten)]
    photos: PhotoArgs,
    /// Class names, one a line in class order (e.g. data/imagenet-classes.txt), for the printout and the picture.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Dataset folder (with --index; without --data, --index reads the shipped MNIST test split).
    #[arg(long, requires = "index", conflicts_with = "images")]
    data: Option<PathBuf>,
    /// Which split of --data.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    split: SplitArg,
    /// Index of the first sample in --data.
    #[arg(long, conflicts_with_all = ["input", "images"])]
    index: Option<usize>,
    /// How many samples from --index on (at least 1; all must exist).
    #[arg(long, conflicts_with_all = ["input", "images"], value_parser = positive)]
    count: Option<usize>,
    /// Threads (default: all cores). The relevance is the same for any number.
    #[arg(long)]
    threads: Option<usize>,
    /// Rule spec: a preset (epsilon, epsilon-gamma-box, deep-taylor, gradient, …) or a mapping such as
    /// "conv=gamma(0.25); dense=epsilon; first=zbox(0,1)". See the README for the grammar.
    #[arg(long)]
    rule: String,
    /// Class to explain: pred (the prediction), label (the true label, with --data), a class number, or with
    /// --labels a class name.
    #[arg(long, default_value = "pred", conflicts_with = "targets")]
    target: String,
    /// One class per sample from an int64 .npy `[N]`.
    #[arg(long)]
    targets: Option<PathBuf>,
    /// Write the relevance as float32 .npy, shaped like the input (with --layer: like that layer's input).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The relevance at the input of a layer instead of the pixels: what reaches it. `#N` names the N-th layer with
    /// weights (as rule specs do), `nK` any node (the first column of `lrp info`). Needs --out and an LRP rule.
    #[arg(long, requires = "out", conflicts_with_all = ["png", "print"])]
    layer: Option<String>,
    /// A conditional heatmap (Concept Relevance Propagation): at the output of layer `#N` keep only the relevance
    /// of channels `C` — `3`, `0,5,7`, or `@FILE.npy` (int64, one channel per sample `[N]` or several `[N, k]`) —
    /// and propagate on with the same rules. Repeat for several layers. Relevance that goes around `#N` (a skip
    /// connection beside it) is not conditioned, as in zennit-crp.
    #[arg(long = "condition", value_name = "#N=C", conflicts_with = "layer")]
    conditions: Vec<String>,
    /// Concept relevance at layer `#N`: each channel's relevance summed over positions, `[N, channels]`, written
    /// to --out instead of the heatmap (with --condition on a deeper layer: that channel's decomposition into
    /// the channels of `#N`); the printout ranks the channels.
    #[arg(long, value_name = "#N", conflicts_with = "layer")]
    concepts: Option<String>,
    /// Write input and heatmap side by side as PNG.
    #[arg(long)]
    png: Option<PathBuf>,
    /// Draw the heatmap in the terminal (the default when neither --out nor --png is given).
    #[arg(long)]
    print: bool,
    /// Colors in --print: auto (on a terminal, unless NO_COLOR is set or TERM=dumb), always, or never (a
    /// character ramp that reads well in files).
    #[arg(long, value_enum, default_value_t = ColorArg::Auto)]
    color: ColorArg,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ColorArg {
    Auto,
    Always,
    Never,
}

/// A count of at least 1.
fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("give 1 or more (0 would explain nothing)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a count: {e}")),
    }
}

/// What is explained: the inputs, and what is known about them.
struct Inputs {
    x: ArrayD<f32>,
    /// Dataset labels (with --data).
    labels: Option<Vec<u8>>,
    /// File names (with --image).
    names: Option<Vec<String>>,
    /// Colour pictures of the inputs (photos, or .npy inputs of a 3-channel image model).
    pictures: Option<Vec<ndarray::Array3<f32>>>,
}

fn inputs(a: &ExplainArgs, net: &lrp_core::Network, imported: bool) -> Result<Inputs> {
    let default_data = a.index.is_some().then(|| PathBuf::from(crate::shipped::MNIST_DIR));
    if a.photos.any() {
        let p = load_photos(&a.photos, net)?;
        return Ok(Inputs {
            x: p.x,
            labels: None,
            names: Some(p.names),
            pictures: Some(p.pictures),
        });
    }
    a.photos.check_without_photos()?;
    let (x, labels) = match (&a.input, a.data.as_ref().or(default_data.as_ref())) {
        (Some(path), _) => (load_npy_input(path, net, imported)?, None),
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
            let count = a.count.unwrap_or(1);
            let end = start.saturating_add(count);
            if end > d.len() {
                bail!(
                    "--index {start} --count {count} reaches past the end: {} has {} samples (0 to {}); the most \
                     from {start} is --count {}",
                    dir.display(),
                    d.len(),
                    d.len() - 1,
                    d.len() - start
                );
            }
            let x = d.images.slice_axis(Axis(0), (start..end).into()).to_owned();
            (x, Some(d.labels[start..end].to_vec()))
        }
        (None, None) => bail!(
            "nothing to explain: give --input X.npy, --image PHOTO, or --data DIR --index I (--index I alone reads \
             the shipped MNIST test split)"
        ),
    };
    let norm = a
        .photos
        .normalization(crate::photos::layout_of(net.input_shape()).map_or(0, |l| l.channels()));
    let pictures = pictures_of(&x, net.input_shape(), norm.as_ref());
    Ok(Inputs {
        x,
        labels,
        names: None,
        pictures,
    })
}

pub fn run(a: ExplainArgs) -> Result<()> {
    let spec = Spec::parse(&a.rule)?;
    if !matches!(a.color, ColorArg::Auto) && !a.print && (a.out.is_some() || a.png.is_some()) {
        bail!("--color sets the colours of --print; add --print (a PNG is always in colour)");
    }
    if let Some(out) = &a.out {
        crate::inputs::require_extension(out, "npy", "--out", "the relevance as NumPy .npy data")?;
    }
    if let Some(png) = &a.png {
        crate::inputs::require_extension(png, "png", "--png", "a PNG picture")?;
    }
    super::worker_threads(a.threads)?;
    let model = load_model(&a.model)?;
    let net = &model.network;
    let explainer = Explainer::new(net, &spec)?;
    let names = a
        .labels
        .as_ref()
        .map(|p| Labels::load(p, net.num_classes()))
        .transpose()?;
    let inp = inputs(&a, net, crate::inputs::is_imported(&a.model, &model))?;
    let (x, labels) = (&inp.x, inp.labels.clone());
    if a.png.is_some() && x.shape()[0] > lrp_view::png_out::MAX_TILES {
        bail!(
            "--png: {} samples are too many for one picture (at most {}); use --out for the relevance",
            x.shape()[0],
            lrp_view::png_out::MAX_TILES
        );
    }
    let target = match (&a.targets, a.target.as_str()) {
        (Some(path), _) => Target::PerSample(load_targets(path)?),
        (None, "pred") => Target::Predicted,
        (None, "label") => match &labels {
            Some(l) => Target::PerSample(l.iter().map(|&v| v as usize).collect()),
            None => bail!("--target label needs --data: an .npy input has no labels (use --targets T.npy)"),
        },
        (None, k) => match (k.parse(), &names) {
            (Ok(class), _) => Target::Class(class),
            (Err(_), Some(names)) => Target::Class(names.find(k)?),
            (Err(_), None) => bail!(
                "--target '{k}' is not pred, label or a class number (a class name needs --labels, the file of \
                 class names)"
            ),
        },
    };
    if let (Some(name), Some(out)) = (&a.layer, &a.out) {
        let n = net.node_named(name).map_err(|e| anyhow::anyhow!("--layer {e}"))?;
        let inputs = net.inputs_of(n);
        if inputs.len() != 1 {
            bail!(
                "--layer {name}: {name} ({}) reads {} values; pick a layer with one input (see lrp info)",
                net.layers()[n].kind().name(),
                inputs.len()
            );
        }
        let e = explainer
            .explain_keeping(x.view(), &target, inputs)
            .map_err(|e| e.shifted(a.index.unwrap_or(0)))?;
        let r = &e.kept[0].1;
        write_npy_atomic(out, r)?;
        let sums: Vec<String> = r.outer_iter().take(4).map(|s| format!("{:.4}", s.sum())).collect();
        eprintln!(
            "wrote the relevance at the input of {} ({}) {:?} to {} (sums {}{}; explained logits {})",
            net.node_name(n),
            net.layers()[n].kind().name(),
            r.shape(),
            out.display(),
            sums.join(", "),
            if r.shape()[0] > 4 { ", …" } else { "" },
            e.explained_logits()
                .iter()
                .take(4)
                .map(|v| format!("{v:.4}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        return Ok(());
    }
    // A sample of --data is named by its index in the dataset.
    let (e, concepts) = if a.conditions.is_empty() && a.concepts.is_none() {
        let e = explainer
            .explain(x.view(), &target)
            .map_err(|e| e.shifted(a.index.unwrap_or(0)))?;
        (e, None)
    } else {
        let (e, c) = explain_concepts(&a, &explainer, x, &target)?;
        (e, c)
    };
    match (&a.out, &concepts) {
        (Some(out), Some((layer, sums))) => {
            write_npy_atomic(out, sums)?;
            eprintln!(
                "wrote the concept relevance at #{layer} {:?} to {}",
                sums.shape(),
                out.display()
            );
        }
        (Some(out), None) => {
            write_npy_atomic(out, &e.relevance)?;
            eprintln!("wrote relevance {:?} to {}", e.relevance.shape(), out.display());
        }
        (None, _) => {}
    }
    if let Some(path) = &a.png {
        write_picture(&a, path, &inp, &e, &explainer, names.as_ref())?;
    }
    if a.print || (a.out.is_none() && a.png.is_none()) {
        use std::io::IsTerminal;
        let choice = match a.color {
            ColorArg::Auto => ColorChoice::Auto,
            ColorArg::Always => ColorChoice::Always,
            ColorArg::Never => ColorChoice::Never,
        };
        let mode = ColorMode::for_output(choice, std::io::stdout().is_terminal());
        let first = a.index.unwrap_or(0);
        if !a.conditions.is_empty() {
            println!("conditional heatmaps: {}", a.conditions.join(", "));
        }
        print(&inp, &e, &explainer, names.as_ref(), first, mode);
    }
    // The ranking is what --concepts asks for: printed unless it went to --out.
    if let (Some((layer, sums)), None) = (&concepts, &a.out) {
        print_concepts(*layer, sums, a.index.unwrap_or(0), inp.names.as_deref());
    }
    Ok(())
}

/// The layer of --concepts and the concept relevance there, `[N, channels]`.
type ConceptSums = Option<(usize, ndarray::Array2<f32>)>;

/// The (conditional) explanation, and the concept relevance at the layer of --concepts.
fn explain_concepts(
    a: &ExplainArgs,
    explainer: &Explainer,
    x: &ArrayD<f32>,
    target: &Target,
) -> Result<(Explanation, ConceptSums)> {
    use crate::commands::concepts::{parse_condition, parse_layer};
    let n = x.shape()[0];
    let conditions = a
        .conditions
        .iter()
        .map(|c| parse_condition(c, n))
        .collect::<Result<Vec<_>>>()?;
    let record = a
        .concepts
        .as_deref()
        .map(|c| parse_layer(c, "--concepts"))
        .transpose()?;
    for c in &conditions {
        if lrp_rules::ConceptLayer::of(explainer.network(), c.layer).is_ok_and(|l| l.bypassed(explainer.network())) {
            eprintln!(
                "note: relevance also reaches the input around #{} by a skip connection; the conditional heatmap \
                 holds that part too (as zennit-crp's does): condition on a layer every path passes through to see \
                 the channels alone",
                c.layer
            );
        }
    }
    let mut c = explainer
        .explain_concepts(x.view(), target, &conditions, record.as_slice())
        .map_err(|e| e.shifted(a.index.unwrap_or(0)))?;
    let sums = record.map(|layer| (layer, c.relevance.pop().expect("one layer recorded")));
    Ok((c.explanation, sums))
}

/// Each sample's most relevant channels at the layer of --concepts, with their share of its relevance there.
fn print_concepts(layer: usize, sums: &ndarray::Array2<f32>, first: usize, files: Option<&[String]>) {
    for (s, row) in sums.outer_iter().enumerate().take(PRINT_LIMIT) {
        let total: f32 = row.iter().map(|v| v.abs()).sum();
        let top: Vec<String> = lrp_rules::concepts::ranked(row)
            .into_iter()
            .take(5)
            .map(|c| format!("{c} ({:+.1}%)", 100.0 * row[c] / total.max(f32::MIN_POSITIVE)))
            .collect();
        let who = match files {
            Some(f) => f[s].clone(),
            None => format!("index {}", first + s),
        };
        println!(
            "{who}: most relevant channels at #{layer} (share of the relevance there): {}",
            top.join(", ")
        );
    }
}

/// Who sample `s` is, for captions: its file, its dataset index and label, or its place in the batch.
fn who(inp: &Inputs, s: usize, first: usize, names: Option<&Labels>) -> String {
    match (&inp.names, &inp.labels) {
        (Some(files), _) => files[s].clone(),
        (None, Some(l)) => format!("#{} label {}", first + s, class_name(names, l[s] as usize)),
        (None, None) => format!("sample {s}"),
    }
}

fn write_picture(
    a: &ExplainArgs,
    path: &std::path::Path,
    inp: &Inputs,
    e: &Explanation,
    explainer: &Explainer,
    names: Option<&Labels>,
) -> Result<()> {
    let predicted = lrp_core::train::argmax_rows(e.logits.view());
    let first = a.index.unwrap_or(0);
    let panels: Vec<Panel> = inp
        .x
        .outer_iter()
        .zip(e.relevance.outer_iter())
        .enumerate()
        .map(|(s, (img, rel))| Panel {
            image: cells::to_map(img),
            picture: inp.pictures.as_ref().map(|p| p[s].clone()),
            relevance: cells::to_map(rel),
            caption: vec![
                who(inp, s, first, names),
                format!("pred {}", class_name(names, predicted[s])),
                format!("explained {}", class_name(names, e.targets[s])),
            ],
        })
        .collect();
    let mut title = format!(
        "{} · rule {}",
        a.model
            .file_name()
            .map_or_else(|| a.model.display().to_string(), |f| f.to_string_lossy().into_owned()),
        explainer.plan().spec()
    );
    if !a.conditions.is_empty() {
        title.push_str(&format!(" · conditional on {}", a.conditions.join(", ")));
    }
    write_png(path, &title, &panels)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn print(
    inp: &Inputs,
    e: &Explanation,
    explainer: &Explainer,
    names: Option<&Labels>,
    first_index: usize,
    mode: ColorMode,
) {
    let net = explainer.network();
    let x = &inp.x;
    let logits = e.logits.view().into_dimensionality::<Ix2>().expect("logits are [N, K]");
    let predicted = lrp_core::train::argmax_rows(e.logits.view());
    let explained = e.explained_logits();
    let n = x.shape()[0];
    // Two pictures side by side within the terminal (80 columns in a file or a pipe); the rows follow.
    let half = (lrp_view::cells::output_width().saturating_sub(2) / 2).max(8);
    for s in 0..n.min(PRINT_LIMIT) {
        let rel = cells::to_map(e.relevance.index_axis(Axis(0), s));
        let shown = cells::shrink(rel.view(), usize::MAX, half);
        // Drawn to the largest cell shown: a shrunk cell is the mean of its pixels, and signed, noisy relevance
        // (ε on a deep network) averages to a small part of the largest pixel, which left the map blank.
        let scale = cells::max_abs(shown.view());
        let left = match &inp.pictures {
            Some(p) => cells::render_rgb(cells::shrink_rgb(p[s].view(), usize::MAX, half).view(), mode),
            None => {
                let image = cells::to_map(x.index_axis(Axis(0), s));
                cells::render(
                    cells::shrink(image.view(), usize::MAX, half).view(),
                    MapKind::Image,
                    mode,
                )
            }
        };
        let right = cells::render(shown.view(), MapKind::Heatmap { scale }, mode);
        let label = match &inp.labels {
            Some(l) => format!(", label {}", class_name(names, l[s] as usize)),
            None => String::new(),
        };
        let which = match (&inp.names, &inp.labels) {
            (Some(files), _) => files[s].clone(),
            (None, Some(_)) => format!("index {}", first_index + s),
            (None, None) => format!("sample {s}"),
        };
        println!(
            "{which}: predicted {}{label}, explained class {} (logit {}), rule {}",
            class_name(names, predicted[s]),
            class_name(names, e.targets[s]),
            figure(explained[s], 4),
            explainer.plan().spec()
        );
        for (l, r) in left.iter().zip(&right) {
            println!("{}  {}", cells::to_ansi(l), cells::to_ansi(r));
        }
        println!("{}", scale_caption(&rel, &shown, scale));
        if mode == ColorMode::NoColor {
            println!("{}", cells::no_color_legend());
        }
        if e.layer_sums.is_empty() {
            let total: f32 = e.relevance.index_axis(Axis(0), s).sum();
            println!(
                "attribution summed over the input: {} (logit {})",
                figure(total, 4),
                figure(logits[[s, e.targets[s]]], 4)
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
            let logit = logits[[s, e.targets[s]]];
            for (i, sums) in e.layer_sums.iter().enumerate() {
                let share = if logit != 0.0 {
                    format!("{:>7.1}% of the logit", 100.0 * sums[s] / logit)
                } else {
                    String::new()
                };
                println!("  {:<20} {:>12} {share}", net.value_label(i), figure(sums[s], 4));
            }
            if net.layers().iter().any(|l| matches!(l, lrp_core::Layer::Lstm(_))) {
                println!(
                    "(an LSTM, explained with Arras et al.'s rule: the gates pass no relevance, and the cell's biases \
                     and ε keep or add some at every step, so a sum before the LSTM need not equal the logit — it can \
                     exceed it when parts of opposite sign cancel)"
                );
            }
            if net.layers().iter().any(lrp_core::Layer::needs_gradient_form) {
                println!(
                    "(a transformer, explained in the gradient form: biases, layer-norm shifts and each softmax's \
                     linearization keep a part, so a sum need not equal the logit; the residual stream is the values \
                     after each add)"
                );
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

/// The lines under a printed heatmap: the size it was shrunk from, and what its colours are drawn to.
fn scale_caption(rel: &ndarray::Array2<f32>, shown: &ndarray::Array2<f32>, scale: f32) -> String {
    if shown.dim() == rel.dim() {
        return format!("input | relevance (red +, blue −), max |R| = {}", figure(scale, 4));
    }
    format!(
        "(shown at {}×{} of {}×{} pixels)\ninput | relevance (red +, blue −), max |R| {} (a pixel), {} (a cell, their \
         mean: drawn to it)",
        shown.ncols(),
        shown.nrows(),
        rel.ncols(),
        rel.nrows(),
        figure(cells::max_abs(rel.view()), 4),
        figure(scale, 4)
    )
}
