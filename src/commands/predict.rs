//! `lrp predict`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use ndarray::{ArrayD, Axis};

use lrp_core::train::argmax_rows;

use crate::inputs::{SplitArg, load_model, load_npy_input, load_split_for, write_npy_atomic};

#[derive(Args)]
#[command(group(clap::ArgGroup::new("inputs").required(true).args(["input", "data"])))]
pub struct PredictArgs {
    /// Model file (native, or .onnx).
    #[arg(long)]
    model: PathBuf,
    /// Input batch as .npy (float32), `[N, …input shape]`.
    #[arg(long, conflicts_with = "data")]
    input: Option<PathBuf>,
    /// Dataset folder; predicts its test split (see --split).
    #[arg(long)]
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
    let model = load_model(&a.model)?;
    let net = &model.network;
    let (mut x, labels): (ArrayD<f32>, Option<Vec<u8>>) = match (&a.input, &a.data) {
        (Some(path), _) => (load_npy_input(path, net)?, None),
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
    let mut logits = Vec::new();
    for chunk in x.axis_chunks_iter(Axis(0), 256) {
        logits.push(net.forward(chunk)?);
    }
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
    let shown: Vec<String> = pred.iter().take(20).map(|p| p.to_string()).collect();
    println!(
        "{n} samples; predicted classes: {}{}",
        shown.join(" "),
        if n > 20 { " …" } else { "" }
    );
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
