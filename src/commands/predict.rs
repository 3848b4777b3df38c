//! `lrp predict`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use ndarray::{ArrayD, Axis};

use lrp_core::train::argmax_rows;

use crate::inputs::{SplitArg, load_model, load_npy_input, load_split_for, write_npy_atomic};
use crate::photos::{Labels, PhotoArgs, class_name, load_photos};

#[derive(Args)]
#[command(group(clap::ArgGroup::new("inputs").required(true).args(["input", "data", "images"])))]
pub struct PredictArgs {
    /// Model file (native, or .onnx).
    #[arg(long)]
    model: PathBuf,
    /// Input batch as .npy (float32), `[N, …input shape]`.
    #[arg(long, conflicts_with_all = ["data", "images"])]
    input: Option<PathBuf>,
    #[command(flatten)]
    photos: PhotoArgs,
    /// Class names, one a line in class order (e.g. data/imagenet-classes.txt), for the printout.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Dataset folder; predicts its test split (see --split).
    #[arg(long, conflicts_with = "images")]
    data: Option<PathBuf>,
    /// Which split of --data.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    split: SplitArg,
    /// Only the first N samples.
    #[arg(long)]
    limit: Option<usize>,
    /// Write the logits here as float32 .npy `[N, classes]`.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: PredictArgs) -> Result<()> {
    a.photos.check_without_photos()?;
    if let Some(out) = &a.out {
        crate::inputs::require_extension(out, "npy", "--out", "the logits as NumPy .npy data")?;
    }
    let model = load_model(&a.model)?;
    let net = &model.network;
    let names = a
        .labels
        .as_ref()
        .map(|p| Labels::load(p, net.num_classes()))
        .transpose()?;
    let mut photo_names = None;
    let (mut x, labels): (ArrayD<f32>, Option<Vec<u8>>) = match (&a.input, &a.data) {
        (Some(path), _) => (
            load_npy_input(path, net, crate::inputs::is_imported(&a.model, &model))?,
            None,
        ),
        (None, None) if a.photos.any() => {
            let photos = load_photos(&a.photos, net)?;
            photo_names = Some(photos.names);
            (photos.x, None)
        }
        (None, Some(dir)) => {
            let d = load_split_for(dir, a.split.into(), net)?;
            (d.images, Some(d.labels))
        }
        (None, None) => bail!("give --input X.npy or --data DIR"),
    };
    let mut labels = labels;
    if let Some(limit) = a.limit {
        let n = limit.min(x.shape()[0]);
        x = x.slice_axis(Axis(0), (0..n).into()).to_owned();
        if let Some(l) = labels.as_mut() {
            l.truncate(n);
        }
    }
    let logits = forward_chunks(net, &x)?;
    let views: Vec<_> = logits.iter().map(|l| l.view()).collect();
    let logits = if views.is_empty() {
        ArrayD::zeros(ndarray::IxDyn(&[0, net.num_classes()]))
    } else {
        ndarray::concatenate(Axis(0), &views)?
    };
    if let Some((sample, element, value)) = lrp_core::first_non_finite(&logits.view()) {
        anyhow::bail!(
            "the logits of sample {sample} hold {value} at element {element}: the model or the input overflows \
             float32; nothing is written"
        );
    }
    let pred = argmax_rows(logits.view());
    let n = pred.len();
    match &photo_names {
        Some(files) => print_photos(files, &logits, names.as_ref()),
        None => {
            let shown: Vec<String> = pred.iter().take(20).map(|&p| class_name(names.as_ref(), p)).collect();
            let sep = if names.is_some() { ", " } else { " " };
            println!(
                "{n} samples; predicted classes: {}{}",
                shown.join(sep),
                if n > 20 { " …" } else { "" }
            );
        }
    }
    if let Some(labels) = &labels {
        let hits = pred.iter().zip(labels).filter(|(p, l)| **p == **l as usize).count();
        println!("accuracy: {:.4} ({hits}/{n})", hits as f32 / n.max(1) as f32);
    }
    if let Some(out) = &a.out {
        write_npy_atomic(out, &logits)?;
        println!("wrote logits {:?} to {}", logits.shape(), out.display());
    }
    Ok(())
}

/// One line per photo: its three most likely classes with their softmax probabilities.
fn print_photos(files: &[String], logits: &ArrayD<f32>, names: Option<&Labels>) {
    for (file, row) in files.iter().zip(logits.outer_iter()) {
        let row: Vec<f32> = row.iter().copied().collect();
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f64> = row.iter().map(|&v| f64::from(v - max).exp()).collect();
        let total: f64 = exp.iter().sum();
        let top: Vec<String> = lrp_rules::concepts::ranked(&row)
            .into_iter()
            .take(3)
            .map(|k| {
                format!(
                    "{} ({:.1}%, logit {:.3})",
                    class_name(names, k),
                    100.0 * exp[k] / total,
                    row[k]
                )
            })
            .collect();
        println!("{file}: {}", top.join(", "));
    }
}

/// Floats the values of one chunk's forward pass may hold (about 256 MiB: 256 MNIST digits, a few photos through
/// ResNet-50).
const CHUNK_FLOATS: usize = 1 << 26;

/// The forward pass over `x` in chunks of at most 256 samples, run side by side on the pool's threads: at least one
/// chunk per thread, each small enough that its values stay within [`CHUNK_FLOATS`]. A sample's logits do not depend
/// on the chunk it is in (each is its own rows of every product).
fn forward_chunks(net: &lrp_core::Network, x: &ArrayD<f32>) -> Result<Vec<ArrayD<f32>>> {
    use rayon::prelude::*;
    let n = x.shape()[0];
    let per_sample: usize = (0..=net.layers().len())
        .map(|v| net.shape_at(v).iter().product::<usize>())
        .sum::<usize>()
        .max(1);
    let threads = rayon::current_num_threads().max(1);
    let chunk = (CHUNK_FLOATS / per_sample)
        .clamp(1, 256)
        .min(n.div_ceil(threads))
        .max(1);
    let chunks: Vec<_> = x.axis_chunks_iter(Axis(0), chunk).collect();
    Ok(chunks
        .par_iter()
        .map(|c| net.forward(c.view()))
        .collect::<Result<Vec<_>, _>>()?)
}
