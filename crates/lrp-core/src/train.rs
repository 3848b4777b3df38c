//! Training: softmax cross-entropy, SGD with momentum and Adam, seeded shuffling and dropout.
//!
//! Everything is single-threaded and driven by one seeded ChaCha8 generator, so training is
//! deterministic: the same seed, data and settings give the same weights, bit for bit.

use ndarray::{ArrayD, ArrayViewD, Axis, Zip};
use rand::Rng;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::error::{CoreError, Result};
use crate::layers::Layer;
use crate::network::{Network, Trace};

/// The update rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// SGD with (heavy-ball) momentum.
    Sgd {
        /// Learning rate.
        lr: f32,
        /// Momentum coefficient in `[0, 1)`.
        momentum: f32,
    },
    /// Adam (Kingma & Ba 2015) with bias correction.
    Adam {
        /// Learning rate.
        lr: f32,
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Denominator stabiliser.
        eps: f32,
    },
    /// AdamW (Loshchilov & Hutter 2019): Adam with weight decay decoupled from the gradient, applied to the
    /// weight matrices and kernels and to learned positions (tensors of rank 2 and more), not to biases or norms.
    AdamW {
        /// Learning rate.
        lr: f32,
        /// First-moment decay.
        beta1: f32,
        /// Second-moment decay.
        beta2: f32,
        /// Denominator stabiliser.
        eps: f32,
        /// Decay per step, times the learning rate.
        weight_decay: f32,
    },
}

impl Optimizer {
    /// Adam with the usual defaults and learning rate `lr`.
    pub fn adam(lr: f32) -> Self {
        Optimizer::Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// AdamW with the usual moments, learning rate `lr` and weight decay `weight_decay`.
    pub fn adamw(lr: f32, weight_decay: f32) -> Self {
        Optimizer::AdamW {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        }
    }

    fn lr(&self) -> f32 {
        match *self {
            Optimizer::Sgd { lr, .. } | Optimizer::Adam { lr, .. } | Optimizer::AdamW { lr, .. } => lr,
        }
    }
}

/// Training settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Samples per update.
    pub batch_size: usize,
    /// Update rule.
    pub optimizer: Optimizer,
    /// The learning rate is multiplied by this after every epoch.
    pub lr_decay: f32,
    /// Seed of shuffling and dropout.
    pub seed: u64,
    /// Data augmentation: shift each training image by up to this many pixels along each of its last two axes
    /// (zeros come in at the edges), drawn anew every time it is seen. 0: no augmentation.
    pub augment_shift: usize,
    /// The learning rate rises linearly from 0 over this many updates (warm-up). 0: none.
    pub warmup_steps: usize,
}

impl TrainConfig {
    fn validate(&self) -> Result<()> {
        let bad = |s: String| Err(CoreError::TrainConfig(s));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        let lr = self.optimizer.lr();
        if !(lr > 0.0 && lr.is_finite()) {
            return bad(format!("learning rate {lr} must be positive and finite"));
        }
        if let Optimizer::Sgd { momentum, .. } = self.optimizer
            && !(0.0..1.0).contains(&momentum)
        {
            return bad(format!("momentum {momentum} must be in [0, 1)"));
        }
        if let Optimizer::AdamW { weight_decay, .. } = self.optimizer
            && !(0.0..1.0).contains(&weight_decay)
        {
            return bad(format!("weight decay {weight_decay} must be in [0, 1)"));
        }
        if !(self.lr_decay > 0.0 && self.lr_decay <= 1.0) {
            return bad(format!("learning-rate decay {} must be in (0, 1]", self.lr_decay));
        }
        if self.augment_shift > 64 {
            return bad(format!(
                "augmentation shift {} is more than 64 pixels",
                self.augment_shift
            ));
        }
        Ok(())
    }
}

/// Progress after one batch.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Batches done in this epoch.
    pub batch: usize,
    /// Batches per epoch.
    pub batches: usize,
    /// Mean loss so far in this epoch.
    pub loss: f32,
    /// Training accuracy so far in this epoch.
    pub accuracy: f32,
}

/// Summary of one epoch.
#[derive(Clone, Copy, Debug)]
pub struct EpochStats {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f32,
    /// Training accuracy (with dropout active).
    pub accuracy: f32,
}

/// Mean softmax cross-entropy over the batch, its gradient with respect to the logits, and the number of hits.
///
/// # Shapes
/// `logits: [N, K]`, `labels: N` → `(loss, [N, K], hits)`.
pub fn softmax_cross_entropy(logits: ArrayViewD<f32>, labels: &[u8]) -> (f32, ArrayD<f32>, usize) {
    let logits = logits.into_dimensionality::<ndarray::Ix2>().expect("logits are [N, K]");
    let n = logits.nrows();
    let mut grad = logits.to_owned();
    let mut loss = 0.0f64;
    let mut hits = 0;
    for (mut row, &label) in grad.axis_iter_mut(Axis(0)).zip(labels) {
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let argmax = row.iter().position(|&v| v == max).unwrap_or(0);
        hits += usize::from(argmax == label as usize);
        row.mapv_inplace(|v| (v - max).exp());
        let sum: f32 = row.sum();
        row /= sum;
        let p = row[label as usize].max(f32::MIN_POSITIVE);
        loss -= (p as f64).ln();
        row[label as usize] -= 1.0;
    }
    grad /= n as f32;
    ((loss / n as f64) as f32, grad.into_dyn(), hits)
}

/// Optimiser state of one parameter tensor: first and second moments (momentum uses the first).
struct Slot {
    m: ArrayD<f32>,
    v: ArrayD<f32>,
}

fn update<D: ndarray::Dimension>(
    opt: &Optimizer,
    lr: f32,
    step: i32,
    p: &mut ndarray::ArrayViewMut<f32, D>,
    g: &ndarray::Array<f32, D>,
    m: &mut ndarray::Array<f32, D>,
    v: &mut ndarray::Array<f32, D>,
) {
    match *opt {
        Optimizer::Sgd { momentum, .. } => {
            Zip::from(p).and(g).and(m).for_each(|p, &g, m| {
                *m = momentum * *m + g;
                *p -= lr * *m;
            });
        }
        Optimizer::AdamW {
            beta1,
            beta2,
            eps,
            weight_decay,
            ..
        } => {
            let c1 = 1.0 - beta1.powi(step);
            let c2 = 1.0 - beta2.powi(step);
            let decay = if p.ndim() >= 2 { 1.0 - lr * weight_decay } else { 1.0 };
            Zip::from(p).and(g).and(m).and(v).for_each(|p, &g, m, v| {
                *m = beta1 * *m + (1.0 - beta1) * g;
                *v = beta2 * *v + (1.0 - beta2) * g * g;
                *p = *p * decay - lr * (*m / c1) / ((*v / c2).sqrt() + eps);
            });
        }
        Optimizer::Adam { beta1, beta2, eps, .. } => {
            let c1 = 1.0 - beta1.powi(step);
            let c2 = 1.0 - beta2.powi(step);
            Zip::from(p).and(g).and(m).and(v).for_each(|p, &g, m, v| {
                *m = beta1 * *m + (1.0 - beta1) * g;
                *v = beta2 * *v + (1.0 - beta2) * g * g;
                *p -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
            });
        }
    }
}

/// Trains `net` in place on `images` (`[N, …input shape]`) and `labels`, calling `progress` after every batch.
pub fn train(
    net: &mut Network,
    images: ArrayViewD<f32>,
    labels: &[u8],
    cfg: &TrainConfig,
    mut progress: impl FnMut(Progress),
) -> Result<Vec<EpochStats>> {
    cfg.validate()?;
    net.check_input(&images)?;
    if images.shape()[0] != labels.len() {
        return Err(CoreError::shape("labels", images.shape()[0], labels.len()));
    }
    let classes = net.num_classes();
    if let Some(&bad) = labels.iter().find(|&&l| l as usize >= classes) {
        return Err(CoreError::TrainConfig(format!(
            "label {bad} is out of range for a network with {classes} outputs"
        )));
    }
    if labels.is_empty() {
        return Err(CoreError::TrainConfig("no training samples".into()));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    // A stream of its own, so that models trained without augmentation stay bit-identical.
    let mut shift_rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x5348_4946_5453_0001);
    if cfg.augment_shift > 0 && images.ndim() < 3 {
        return Err(CoreError::TrainConfig(
            "shift augmentation needs inputs with at least two axes per sample".into(),
        ));
    }
    let mut slots: Vec<Vec<Slot>> = net
        .layers_mut()
        .iter_mut()
        .map(|l| {
            l.params_mut()
                .iter()
                .map(|p| Slot {
                    m: ArrayD::zeros(p.raw_dim()),
                    v: ArrayD::zeros(p.raw_dim()),
                })
                .collect()
        })
        .collect();
    let n = labels.len();
    let batches = n.div_ceil(cfg.batch_size);
    let mut order: Vec<usize> = (0..n).collect();
    let mut stats = Vec::with_capacity(cfg.epochs);
    let mut step = 0i32;
    let mut lr = cfg.optimizer.lr();
    for epoch in 1..=cfg.epochs {
        order.shuffle(&mut rng);
        let (mut loss_sum, mut hits, mut seen) = (0.0f64, 0usize, 0usize);
        for (b, idx) in order.chunks(cfg.batch_size).enumerate() {
            let mut x = images.select(Axis(0), idx);
            if cfg.augment_shift > 0 {
                shift_samples(&mut x, cfg.augment_shift, &mut shift_rng);
            }
            let y: Vec<u8> = idx.iter().map(|&i| labels[i]).collect();
            let (trace, masks) = forward_train(net, x, &mut rng);
            let (loss, grad, h) = softmax_cross_entropy(trace.output.view(), &y);
            if !loss.is_finite() {
                return Err(CoreError::Diverged(format!(
                    "loss became {loss} in epoch {epoch}, batch {}; lower the learning rate",
                    b + 1
                )));
            }
            let grads = backward_train(net, &trace, &masks, grad);
            step = step.saturating_add(1);
            // Without warm-up the rate is used as it is (the same bits as before warm-up existed).
            let rate = if (step as usize) <= cfg.warmup_steps {
                lr * step as f32 / cfg.warmup_steps as f32
            } else {
                lr
            };
            for ((layer, slots), grads) in net.layers_mut().iter_mut().zip(slots.iter_mut()).zip(grads) {
                let Some(grads) = grads else { continue };
                for ((mut p, slot), g) in layer.params_mut().into_iter().zip(slots.iter_mut()).zip(&grads) {
                    update(&cfg.optimizer, rate, step, &mut p, g, &mut slot.m, &mut slot.v);
                }
            }
            loss_sum += loss as f64 * idx.len() as f64;
            hits += h;
            seen += idx.len();
            progress(Progress {
                epoch,
                batch: b + 1,
                batches,
                loss: (loss_sum / seen as f64) as f32,
                accuracy: hits as f32 / seen as f32,
            });
        }
        stats.push(EpochStats {
            epoch,
            loss: (loss_sum / seen as f64) as f32,
            accuracy: hits as f32 / seen as f32,
        });
        lr *= cfg.lr_decay;
    }
    Ok(stats)
}

/// Shifts each sample of `x` (`[N, …, H, W]`) by a random offset in `−s..=s` along its last two axes.
fn shift_samples(x: &mut ArrayD<f32>, s: usize, rng: &mut ChaCha8Rng) {
    let nd = x.ndim();
    let (h, w) = (x.shape()[nd - 2], x.shape()[nd - 1]);
    let s = s as isize;
    for mut sample in x.outer_iter_mut() {
        let s64 = s as i64;
        let (dy, dx) = (
            rng.random_range(-s64..=s64) as isize,
            rng.random_range(-s64..=s64) as isize,
        );
        if dy == 0 && dx == 0 {
            continue;
        }
        let src = sample.to_owned();
        sample.fill(0.0);
        if dy.unsigned_abs() >= h || dx.unsigned_abs() >= w {
            continue; // shifted out of the frame entirely
        }
        // Output rows y take input rows y − dy where that is inside the image.
        let span = |d: isize, len: usize| {
            let lo = d.max(0).min(len as isize) as usize;
            let hi = (len as isize + d.min(0)).max(0) as usize;
            (lo, hi.max(lo))
        };
        let ((y0, y1), (x0, x1)) = (span(dy, h), span(dx, w));
        let r = sample.ndim();
        let mut dst = sample.slice_each_axis_mut(|ax| {
            if ax.axis.index() == r - 2 {
                ndarray::Slice::from(y0..y1)
            } else if ax.axis.index() == r - 1 {
                ndarray::Slice::from(x0..x1)
            } else {
                ndarray::Slice::from(..)
            }
        });
        let from = src.slice_each_axis(|ax| {
            if ax.axis.index() == r - 2 {
                ndarray::Slice::from((y0 as isize - dy) as usize..(y1 as isize - dy) as usize)
            } else if ax.axis.index() == r - 1 {
                ndarray::Slice::from((x0 as isize - dx) as usize..(x1 as isize - dx) as usize)
            } else {
                ndarray::Slice::from(..)
            }
        });
        dst.assign(&from);
    }
}

/// Forward pass with dropout active; returns the trace and each dropout layer's scaled keep-mask.
fn forward_train(net: &Network, x: ArrayD<f32>, rng: &mut ChaCha8Rng) -> (Trace, Vec<Option<ArrayD<f32>>>) {
    let n = net.layers().len();
    let mut values: Vec<ArrayD<f32>> = Vec::with_capacity(n + 1);
    let mut masks = Vec::with_capacity(n);
    values.push(x);
    for (k, layer) in net.layers().iter().enumerate() {
        let (next, mask) = match layer {
            Layer::Dropout(d) if d.p > 0.0 => {
                let cur = &values[net.inputs_of(k)[0]];
                let keep = 1.0 - d.p;
                let mask = cur.map(|_| if rng.random::<f32>() < keep { 1.0 / keep } else { 0.0 });
                (cur * &mask, Some(mask))
            }
            _ => (net.node_forward(k, |v| values[v].view()), None),
        };
        values.push(next);
        masks.push(mask);
    }
    let output = values.pop().expect("the output is computed");
    (Trace { values, output }, masks)
}

/// Parameter gradients of every layer for the output gradient `g` (the input gradient is not computed).
fn backward_train(
    net: &Network,
    trace: &Trace,
    masks: &[Option<ArrayD<f32>>],
    g: ArrayD<f32>,
) -> Vec<Option<crate::ParamGrads>> {
    let n = net.layers().len();
    let mut grads = vec![None; n];
    let mut acc: Vec<Option<ArrayD<f32>>> = vec![None; n + 1];
    acc[n] = Some(g);
    for k in (0..n).rev() {
        let Some(g) = acc[k + 1].take() else { continue };
        let layer = &net.layers()[k];
        let ins = net.inputs_of(k);
        let parts: Vec<ArrayD<f32>> = if let Some(mask) = &masks[k] {
            vec![g * mask]
        } else if let &[v] = ins {
            let x = trace.value(v).view();
            if v == 0 {
                grads[k] = layer.param_grads(x, g.view()); // the input gradient is not needed
                continue;
            }
            let (gx, pg) = layer.backward_with_params(x, g.view());
            grads[k] = pg;
            vec![gx]
        } else {
            net.node_backward(k, trace, g.view())
        };
        for (&v, part) in ins.iter().zip(parts) {
            if v == 0 {
                continue;
            }
            match &mut acc[v] {
                Some(a) => *a += &part,
                slot => *slot = Some(part),
            }
        }
    }
    grads
}

/// Predicted class of every sample, in batches of `batch`.
pub fn predict_classes(net: &Network, images: ArrayViewD<f32>, batch: usize) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(images.shape()[0]);
    for chunk in images.axis_chunks_iter(Axis(0), batch.max(1)) {
        let logits = net.forward(chunk)?;
        out.extend(argmax_rows(logits.view()));
    }
    Ok(out)
}

/// Index of the largest value in each row of `[N, K…]` (first on ties).
pub fn argmax_rows(logits: ArrayViewD<f32>) -> Vec<usize> {
    let n = logits.shape()[0];
    let flat = logits
        .to_shape((n, logits.len() / n.max(1)))
        .expect("row-major reshape");
    flat.axis_iter(Axis(0))
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            best
        })
        .collect()
}

/// Fraction of samples whose predicted class equals the label.
pub fn accuracy(net: &Network, images: ArrayViewD<f32>, labels: &[u8]) -> Result<f32> {
    let pred = predict_classes(net, images, 256)?;
    let hits = pred.iter().zip(labels).filter(|(p, l)| **p == **l as usize).count();
    Ok(hits as f32 / labels.len().max(1) as f32)
}
