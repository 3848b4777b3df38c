//! `lrp prepare`: photos made into the exact tensor a model gets, as .npy (to check against Python, or to reuse).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use crate::inputs::write_npy_atomic;
use crate::photos::{PhotoArgs, load_photos};

#[derive(Args)]
pub struct PrepareArgs {
    /// The model the photos are prepared for (its input shape and layout: NCHW or NHWC); or give --shape.
    #[arg(long, required_unless_present = "shape", conflicts_with = "shape")]
    model: Option<PathBuf>,
    /// The per-sample input shape instead of a model, e.g. 3,224,224 (NCHW) or 224,224,3 (NHWC).
    #[arg(long, value_delimiter = ',')]
    shape: Option<Vec<usize>>,
    #[command(flatten)]
    photos: PhotoArgs,
    /// The .npy to write: float32 `[N, …input shape]`, the photos in the order given (folders sorted by name).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: PrepareArgs) -> Result<()> {
    if !a.photos.any() {
        bail!("nothing to prepare: give --image FILE (or a folder), repeatable");
    }
    crate::inputs::require_extension(&a.out, "npy", "--out", "the prepared tensor as NumPy .npy data")?;
    let net = match (&a.model, &a.shape) {
        (Some(m), _) => crate::inputs::load_model(m)?.network,
        (None, Some(shape)) => shape_only(shape)?,
        (None, None) => bail!("give --model M or --shape C,H,W"),
    };
    let photos = load_photos(&a.photos, &net)?;
    write_npy_atomic(&a.out, &photos.x)?;
    let p = a.photos.preprocess(net.input_shape())?;
    println!(
        "wrote {} {:?} to {} ({}; shorter side {} then a {}×{} centre crop; mean {:?}, std {:?})",
        crate::text::count(photos.names.len(), "photo"),
        photos.x.shape(),
        a.out.display(),
        crate::photos::layout_of(net.input_shape())?.name(),
        p.shorter_side,
        p.crop.0,
        p.crop.1,
        p.mean,
        p.std
    );
    Ok(())
}

/// A network that only carries an input shape (a flatten, which takes any shape), for `--shape`.
fn shape_only(shape: &[usize]) -> Result<lrp_core::Network> {
    if shape.is_empty() || shape.contains(&0) || shape.iter().product::<usize>() > 1 << 28 {
        bail!("--shape {shape:?}: give the sizes of the input axes, e.g. 3,224,224");
    }
    crate::photos::layout_of(shape)?;
    Ok(lrp_core::Network::new(
        shape.to_vec(),
        vec![lrp_core::Layer::Flatten(lrp_core::Flatten)],
    )?)
}
