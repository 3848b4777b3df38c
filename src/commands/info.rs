//! `lrp info`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use lrp_core::{Split, train};

use crate::inputs::{SplitArg, load_model, load_split_for};

#[derive(Args)]
pub struct InfoArgs {
    /// Model file (native, or .onnx).
    #[arg(long)]
    model: PathBuf,
    /// Dataset folder: also print the accuracy on its test split.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Which split --data measures.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    split: SplitArg,
}

pub fn run(a: InfoArgs) -> Result<()> {
    let model = load_model(&a.model)?;
    let net = &model.network;
    // The dataset is read before anything is printed: a wrong --data is an error, not a table followed by one.
    let data = match &a.data {
        Some(dir) => Some(load_split_for(dir, a.split.into(), net)?),
        None => None,
    };
    println!("model: {}", a.model.display());
    if !model.meta.description.is_empty() {
        println!("made by: {}", model.meta.description);
    }
    for note in &model.meta.notes {
        println!("note: {note}");
    }
    println!("input: {:?} per sample", net.input_shape());
    if net.is_chain() {
        println!("layers (#N: the N-th layer with weights, as rule specs and --layer name it; nK: another node):");
    } else {
        println!(
            "nodes (a graph; #N: the N-th layer with weights, as rule specs and --layer name it; nK: another node; \
             ← the nodes it reads):"
        );
    }
    for line in net.summary() {
        println!("  {line}");
    }
    let first: Vec<String> = lrp_rules::first_layers(net).iter().map(|&k| net.node_name(k)).collect();
    println!("first (the layers a spec's 'first' selects): {}", first.join(", "));
    println!("output: {} classes", net.num_classes());
    println!("parameters: {}", net.param_count());
    if let Some(data) = data {
        let split: Split = a.split.into();
        let acc = train::accuracy(net, data.images.view(), &data.labels)?;
        let name = match split {
            Split::Test => "test",
            Split::Train => "train",
        };
        println!("{name} accuracy: {acc:.4} ({} images)", data.len());
    }
    Ok(())
}
