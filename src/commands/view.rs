//! `lrp view`: the terminal viewer.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use lrp_core::Split;
use lrp_view::worker::Shared;

use crate::inputs::{SplitArg, load_model};
use crate::photos::{Labels, PhotoArgs, load_photos};

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
    /// The rule to open on, kept for every model. Without it each model opens on its own default:
    /// epsilon-gamma-box (the composite most people use), attnlrp for a transformer.
    #[arg(long)]
    rule: Option<String>,
    #[command(flatten)]
    photos: PhotoArgs,
    /// Class names, one a line in class order (e.g. data/imagenet-classes.txt).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// A folder `lrp concepts` wrote for one of these models on this dataset: the concept screen (k in the layer
    /// view) takes its reference samples from it instead of computing them over the first 2,000 samples.
    #[arg(long, value_name = "DIR")]
    concepts: Option<PathBuf>,
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
    let shared = if a.photos.any() { photo_set(&a)? } else { dataset(&a)? };
    let mut rules: Vec<String> = lrp_rules::PRESETS.iter().map(|s| s.to_string()).collect();
    let references = match &a.concepts {
        Some(dir) => vec![precomputed(&a, dir, &shared)?],
        None => Vec::new(),
    };
    // With a concept folder and no --rule, the folder's rule (its reference samples are for it).
    let spec = a
        .rule
        .as_deref()
        .map(lrp_rules::Spec::parse)
        .transpose()?
        .map(|s| s.to_string())
        .or_else(|| references.first().map(|r| r.rule.clone()));
    if let Some(spec) = &spec
        && !rules.contains(spec)
    {
        rules.push(spec.clone());
    }
    let options = lrp_view::tui::Options {
        draw: a.draw,
        rule: spec,
        references,
    };
    lrp_view::tui::run(shared, rules, options)?;
    Ok(())
}

/// The models given with --model and the photos prepared for them (they must take the same input).
fn photo_set(a: &ViewArgs) -> Result<Shared> {
    if a.models.is_empty() {
        bail!("--image: give the model the photos are for with --model M.onnx");
    }
    if a.data.is_some() || a.draw {
        bail!("--image shows photos: --data and --draw are for digit datasets");
    }
    let mut models = Vec::new();
    for p in &a.models {
        models.push((name_of(p), load_model(p)?.network));
    }
    let shape = models[0].1.input_shape().to_vec();
    if let Some((name, net)) = models.iter().find(|(_, n)| n.input_shape() != shape.as_slice()) {
        bail!(
            "{name} takes inputs {:?}, {} takes {shape:?}: photos are prepared for one input shape",
            net.input_shape(),
            models[0].0
        );
    }
    let photos = load_photos(&a.photos, &models[0].1)?;
    let classes = models[0].1.num_classes();
    let class_names = a
        .labels
        .as_ref()
        .map(|p| Labels::load(p, classes))
        .transpose()?
        .map(Labels::into_names);
    Ok(Shared {
        models,
        images: photos.x,
        labels: Vec::new(),
        photos: Some(lrp_view::worker::PhotoSet {
            pictures: photos.pictures,
            names: photos.names,
        }),
        class_names,
    })
}

/// The shipped models (and any given) on a digit dataset.
fn dataset(a: &ViewArgs) -> Result<Shared> {
    a.photos.check_without_photos()?;
    let data_dir = a
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::shipped::MNIST_DIR));
    let data = crate::inputs::load_dataset(&data_dir, Split::from(a.split)).context("cannot open the dataset")?;
    // The shipped models (from data/models when it is here, else the copies built into the binary), CNN first.
    // The shipped models take 28×28 digits: on a dataset of another size they are left out (with a note), while a
    // model given with --model that does not fit is an error.
    let per_sample: usize = data.sample_shape().iter().product();
    let fits = |net: &lrp_core::Network| net.input_shape().iter().product::<usize>() == per_sample;
    let mut models = Vec::new();
    let mut left_out = Vec::new();
    for m in &crate::shipped::MODELS {
        let p = PathBuf::from(m.path);
        let net = load_model(&p)?.network;
        if fits(&net) {
            models.push((name_of(&p), net));
        } else {
            left_out.push(m.short);
        }
    }
    for p in &a.models {
        let net = load_model(p)?.network;
        if !fits(&net) {
            bail!(
                "{}: takes inputs {:?}, the dataset has images {:?}",
                p.display(),
                net.input_shape(),
                data.sample_shape()
            );
        }
        models.push((name_of(p), net));
    }
    if models.is_empty() {
        bail!(
            "{}: images {:?}; the shipped models take 28×28 digits: give a model trained on these images with \
             --model (lrp train --data {} …)",
            data_dir.display(),
            data.sample_shape(),
            data_dir.display()
        );
    }
    if !left_out.is_empty() {
        eprintln!(
            "note: the shipped models ({}) take 28×28 digits and are left out for these {:?} images",
            left_out.join(", "),
            data.sample_shape()
        );
    }
    let class_names = match &a.labels {
        Some(p) => {
            let classes = models.iter().map(|(_, n)| n.num_classes()).max().unwrap_or(0);
            Some(Labels::load(p, classes)?.into_names())
        }
        None => None,
    };
    Ok(Shared {
        models,
        images: data.images.into_dyn(),
        labels: data.labels,
        photos: None,
        class_names,
    })
}

fn name_of(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// The reference ranking of a folder `lrp concepts` wrote, checked to be of one of the viewer's models (by content)
/// on the dataset it shows, from its first sample.
fn precomputed(a: &ViewArgs, dir: &Path, shared: &Shared) -> Result<lrp_view::concept::Precomputed> {
    let m = lrp_batch::Manifest::load(dir).with_context(|| format!("--concepts {}", dir.display()))?;
    let c = m.concepts.as_ref().with_context(|| {
        format!(
            "--concepts {}: a batch folder, not one lrp concepts wrote",
            dir.display()
        )
    })?;
    if !m.is_complete_in(dir) || m.run.shard.is_some() {
        bail!(
            "--concepts {}: not a complete run over the whole dataset (finish it with --resume, or merge its shards)",
            dir.display()
        );
    }
    let mut paths: Vec<PathBuf> = crate::shipped::MODELS.iter().map(|m| PathBuf::from(m.path)).collect();
    paths.extend(a.models.iter().cloned());
    let mut model = None;
    for p in &paths {
        let name = name_of(p);
        if let Some(k) = shared.models.iter().position(|(n, _)| *n == name)
            && crate::inputs::model_digest(p)? == m.run.model_digest
        {
            model = Some(k);
        }
    }
    let model = model.with_context(|| {
        format!(
            "--concepts {}: made with the model {}, which is not among those shown (add it with --model)",
            dir.display(),
            m.run.model
        )
    })?;
    let data_dir = a
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::shipped::MNIST_DIR));
    let split = Split::from(a.split);
    let digest = if crate::shipped::is_mnist(&data_dir) {
        crate::shipped::mnist_digest()
    } else {
        let d = crate::inputs::open_split(&data_dir, split)?;
        let (images, labels) = d.files();
        format!("{}{}", lrp_batch::digest_file(images)?, lrp_batch::digest_file(labels)?)
    };
    if digest != m.run.inputs_digest || m.run.start != 0 {
        bail!(
            "--concepts {}: made from {}, not the {} split of {} that the viewer shows",
            dir.display(),
            m.run.inputs,
            if matches!(split, Split::Test) { "test" } else { "train" },
            data_dir.display()
        );
    }
    let normalized: ndarray::Array2<f32> = lrp_batch::npy::read_checked(&dir.join("relmax-normalized.npy"))?;
    if normalized.dim() != (m.run.count, c.channels) || normalized.iter().any(|v| !v.is_finite()) {
        bail!(
            "--concepts {}: relmax-normalized.npy is not the [{}, {}] finite ranking the manifest says",
            dir.display(),
            m.run.count,
            c.channels
        );
    }
    let rule = m.rules.first().context("the manifest names no rule")?.spec.clone();
    eprintln!(
        "concept screen: reference samples of #{} under {rule} from {} ({} samples)",
        c.layer,
        dir.display(),
        m.run.count
    );
    Ok(lrp_view::concept::Precomputed {
        model,
        rule,
        layer: c.layer,
        normalized,
        source: format!("from {} ({} samples)", dir.display(), m.run.count),
    })
}
