//! `lrp convert`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::inputs::load_model_with;

#[derive(Args)]
pub struct ConvertArgs {
    /// Model to read (.onnx, or native).
    #[arg(long)]
    model: PathBuf,
    /// Native model file to write (.lrpm; an .onnx name is refused).
    #[arg(long)]
    out: PathBuf,
    /// The per-sample input shape (batch axis left out, e.g. 3,224,224) for an ONNX file whose input leaves height
    /// and width dynamic; the .lrpm written has it fixed.
    #[arg(long, value_delimiter = ',')]
    input_shape: Option<Vec<usize>>,
}

pub fn run(a: ConvertArgs) -> Result<()> {
    crate::inputs::refuse_onnx_name(&a.out)?;
    if a.input_shape.is_some() && !crate::inputs::is_onnx(&a.model) {
        bail!(
            "--input-shape fixes the input of an ONNX file; {} is not one",
            a.model.display()
        );
    }
    let options = lrp_onnx::ImportOptions {
        input_shape: a.input_shape.clone(),
    };
    let model = load_model_with(&a.model, &options)?;
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
