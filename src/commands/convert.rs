//! `lrp convert`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::inputs::load_model;

#[derive(Args)]
pub struct ConvertArgs {
    /// Model to read (.onnx, or native).
    #[arg(long)]
    model: PathBuf,
    /// Native model file to write (.lrpm; an .onnx name is refused).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: ConvertArgs) -> Result<()> {
    crate::inputs::refuse_onnx_name(&a.out)?;
    let model = load_model(&a.model)?;
    model
        .save(&a.out)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    for note in &model.meta.notes {
        println!("note: {note}");
    }
    println!(
        "wrote {} ({} layers, {} parameters)",
        a.out.display(),
        model.network.layers().len(),
        model.network.param_count()
    );
    Ok(())
}
