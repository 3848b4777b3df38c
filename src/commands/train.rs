//! `lrp train`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use ndarray::s;

use lrp_core::train::{self, Optimizer, TrainConfig};
use lrp_core::{Arch, Dataset, Model, ModelMeta, Split};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ArchArg {
    /// Flatten → 256 → 128 → classes, ReLU between.
    Mlp,
    /// Two conv(5×5) + ReLU + max-pool blocks, then 128 → classes.
    Cnn,
    /// Row-sequential LSTM (each image row a time step), 128 hidden units, then a dense layer.
    Lstm,
    /// A small residual network (a graph): stem conv, three residual blocks (two with strided 1×1 projection
    /// shortcuts, one identity), global average pooling, dense.
    Resnet,
    /// A vision transformer (a graph): 7×7 patches, learned positions, two pre-norm blocks of 4-head attention and
    /// a GELU MLP, mean over tokens, layer norm, dense. Train it with --optimizer adamw and a warm-up.
    Vit,
}

impl ArchArg {
    fn name(self) -> &'static str {
        match self {
            ArchArg::Mlp => "MLP",
            ArchArg::Cnn => "CNN",
            ArchArg::Lstm => "LSTM",
            ArchArg::Resnet => "ResNet",
            ArchArg::Vit => "vision transformer",
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OptimizerArg {
    /// Adam.
    Adam,
    /// SGD with momentum (see --momentum).
    Sgd,
    /// AdamW: Adam with decoupled weight decay (see --weight-decay) on weight matrices, kernels and positions.
    Adamw,
}

impl OptimizerArg {
    fn name(self) -> &'static str {
        match self {
            OptimizerArg::Adam => "adam",
            OptimizerArg::Sgd => "sgd",
            OptimizerArg::Adamw => "adamw",
        }
    }
}

#[derive(Args)]
pub struct TrainArgs {
    /// Architecture; adapts to the image size and class count of the data.
    #[arg(long, value_enum)]
    arch: ArchArg,
    /// Folder with train-/t10k-images-idx3-ubyte and -labels-idx1-ubyte (each raw or .gz).
    #[arg(long)]
    data: PathBuf,
    /// Passes over the training set.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Seed of initialisation, shuffling and dropout: the same seed gives the same model, bit for bit.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write the model.
    #[arg(long)]
    out: PathBuf,
    /// Samples per update.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Update rule.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adam)]
    optimizer: OptimizerArg,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// Momentum (SGD only).
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    /// Multiply the learning rate by this after every epoch.
    #[arg(long, default_value_t = 0.7)]
    lr_decay: f32,
    /// Shift each training image by up to N pixels (random, each time it is seen): data augmentation.
    #[arg(long, default_value_t = 0)]
    augment_shift: usize,
    /// Weight decay of AdamW (per update, times the learning rate).
    #[arg(long, default_value_t = 0.05)]
    weight_decay: f32,
    /// Raise the learning rate linearly from 0 over this many updates (warm-up).
    #[arg(long, default_value_t = 0)]
    warmup_steps: usize,
    /// Train on the first N training images only (quick experiments).
    #[arg(long)]
    limit: Option<usize>,
}

pub fn run(a: TrainArgs) -> Result<()> {
    crate::inputs::refuse_onnx_name(&a.out)?;
    if a.epochs == 0 || a.epochs > 100_000 {
        anyhow::bail!("--epochs {}: give 1 to 100000", a.epochs);
    }
    let mut data = crate::inputs::load_dataset(&a.data, Split::Train)?;
    if data.is_empty() {
        anyhow::bail!("{}: the training split holds no images", a.data.display());
    }
    if let Some(limit) = a.limit {
        let n = limit.min(data.len()).max(1);
        data.images = data.images.slice(s![..n, .., .., ..]).to_owned();
        data.labels.truncate(n);
    }
    // No test split is fine (training only); a test split that is there but broken is an error, not a skip.
    let test = match Dataset::load(&a.data, Split::Test) {
        Ok(t) => Some(t),
        Err(lrp_core::CoreError::MissingDataFile { .. }) => {
            eprintln!(
                "note: {} has no test split; no test accuracy will be reported",
                a.data.display()
            );
            None
        }
        Err(e) => return Err(e).context("the test split cannot be read"),
    };
    let classes = data.num_classes().max(test.as_ref().map_or(0, Dataset::num_classes));
    let arch = match a.arch {
        ArchArg::Mlp => Arch::Mlp,
        ArchArg::Cnn => Arch::Cnn,
        ArchArg::Resnet => Arch::Resnet,
        ArchArg::Lstm => Arch::Lstm,
        ArchArg::Vit => Arch::Vit,
    };
    let mut net = arch.build(&data.sample_shape(), classes, a.seed)?;
    let optimizer = match a.optimizer {
        OptimizerArg::Adam => Optimizer::adam(a.lr),
        OptimizerArg::Sgd => Optimizer::Sgd {
            lr: a.lr,
            momentum: a.momentum,
        },
        OptimizerArg::Adamw => Optimizer::adamw(a.lr, a.weight_decay),
    };
    let cfg = TrainConfig {
        epochs: a.epochs,
        batch_size: a.batch_size,
        optimizer,
        lr_decay: a.lr_decay,
        seed: a.seed,
        augment_shift: a.augment_shift,
        warmup_steps: a.warmup_steps,
    };
    eprintln!(
        "training the {} on {} images {:?}, {} classes, {} parameters",
        a.arch.name(),
        data.len(),
        data.sample_shape(),
        classes,
        net.param_count()
    );
    let batches = data.len().div_ceil(a.batch_size.max(1));
    let bar = crate::text::progress((a.epochs * batches) as u64, "batches");
    let started = Instant::now();
    let labels = data.labels;
    let images = crate::inputs::fit_images(data.images.into_dyn(), net.input_shape())?;
    let stats = train::train(&mut net, images.view(), &labels, &cfg, |p| {
        bar.inc(1);
        if p.batch % 20 == 0 || p.batch == p.batches {
            bar.set_message(format!(
                "epoch {}/{} loss {:.3} acc {:.3}",
                p.epoch, a.epochs, p.loss, p.accuracy
            ));
        }
        if p.batch == p.batches {
            let line = format!(
                "epoch {}/{}: loss {:.4}, train accuracy {:.4}",
                p.epoch, a.epochs, p.loss, p.accuracy
            );
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        }
    })?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if let Some(last) = stats.last() {
        eprintln!(
            "trained {} in {secs:.1} s, last epoch loss {:.4}",
            crate::text::count(stats.len(), "epoch"),
            last.loss
        );
    }
    if let Some(test) = test {
        let test_images = crate::inputs::fit_images(test.images.into_dyn(), net.input_shape())?;
        let acc = train::accuracy(&net, test_images.view(), &test.labels)?;
        eprintln!("test accuracy: {acc:.4}");
    }
    let data_name = a
        .data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let model = Model {
        meta: ModelMeta {
            description: format!(
                "lrp train --arch {} --epochs {} --seed {} --batch-size {} --optimizer {}{} --lr {} --lr-decay {}{}{}{} \
                 (data: {data_name})",
                format!("{:?}", a.arch).to_lowercase(),
                a.epochs,
                a.seed,
                a.batch_size,
                a.optimizer.name(),
                match a.optimizer {
                    OptimizerArg::Adamw => format!(" --weight-decay {}", a.weight_decay),
                    _ => String::new(),
                },
                a.lr,
                a.lr_decay,
                if a.warmup_steps > 0 {
                    format!(" --warmup-steps {}", a.warmup_steps)
                } else {
                    String::new()
                },
                if a.augment_shift > 0 {
                    format!(" --augment-shift {}", a.augment_shift)
                } else {
                    String::new()
                },
                a.limit.map(|l| format!(" --limit {l}")).unwrap_or_default()
            ),
            notes: Vec::new(),
        },
        network: net,
    };
    model
        .save(&a.out)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    eprintln!("wrote {}", a.out.display());
    Ok(())
}
