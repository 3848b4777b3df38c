//! Pooling — `MaxPool`, `AveragePool`, `GlobalAveragePool`, `ReduceMean` — and the window geometry that
//! convolutions share.

use lrp_core::{Layer, Pool2d, Window};

use crate::context::{Handler, NodeCtx};
use crate::error::Result;
use crate::value::{Batch, Computed};

pub(crate) fn register(reg: &mut Vec<(&'static str, Handler)>) {
    reg.extend([
        ("MaxPool", max_pool as Handler),
        ("AveragePool", average_pool),
        ("GlobalAveragePool", global_average_pool),
        ("ReduceMean", reduce_mean),
    ]);
}

/// `(C, H, W)` of a 2-D image value.
pub(crate) fn spatial(c: &NodeCtx, x: &Computed) -> Result<(usize, usize, usize)> {
    match x.shape[..] {
        [ch, h, w] => Ok((ch, h, w)),
        _ => Err(c.err(format!(
            "needs a 2-D image input [N, C, H, W], the value is [N, {:?}]",
            x.shape
        ))),
    }
}

/// The dilations attribute of a convolution.
pub(crate) fn dilations(c: &NodeCtx) -> Result<[usize; 2]> {
    match c.ints("dilations") {
        None => Ok([1, 1]),
        Some(d) if d.len() == 2 && d.iter().all(|&v| (1..=1 << 16).contains(&v)) => Ok([d[0] as usize, d[1] as usize]),
        Some(d) => Err(c.err(format!("dilations {d:?} must be two numbers from 1 to 65536"))),
    }
}

/// Kernel, strides and pads with auto_pad resolved, for a kernel whose taps are `dilation` apart.
pub(crate) fn window_dilated(c: &NodeCtx, x: &Computed, kernel: [usize; 2], dilation: [usize; 2]) -> Result<Window> {
    let (_, h, w) = spatial(c, x)?;
    let span = |k: usize, d: usize| (k - 1).saturating_mul(d).saturating_add(1);
    let extent = [span(kernel[0], dilation[0]), span(kernel[1], dilation[1])];
    let pair = |name: &str| -> Result<[usize; 2]> {
        match c.ints(name) {
            None => Ok([1, 1]),
            Some(v) if v.len() == 2 && v.iter().all(|&x| x > 0) => Ok([v[0] as usize, v[1] as usize]),
            Some(v) => Err(c.err(format!("{name} {v:?} must be two positive numbers"))),
        }
    };
    let stride = pair("strides")?;
    let auto = c.string("auto_pad").unwrap_or_default();
    let pads = match auto.as_str() {
        "" | "NOTSET" => match c.ints("pads") {
            None => [0; 4],
            Some(p) if p.len() == 4 && p.iter().all(|&x| x >= 0) => {
                [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize]
            }
            Some(p) => return Err(c.err(format!("pads {p:?} must be four non-negative numbers"))),
        },
        "VALID" => [0; 4],
        "SAME_UPPER" | "SAME_LOWER" => {
            let total = |len: usize, k: usize, s: usize| ((len.div_ceil(s) - 1) * s + k).saturating_sub(len);
            let (th, tw) = (total(h, extent[0], stride[0]), total(w, extent[1], stride[1]));
            if auto == "SAME_UPPER" {
                [th / 2, tw / 2, th - th / 2, tw - tw / 2]
            } else {
                [th - th / 2, tw - tw / 2, th / 2, tw / 2]
            }
        }
        other => return Err(c.err(format!("auto_pad '{other}' is not supported"))),
    };
    let mut pads = pads;
    if c.int("ceil_mode", 0) != 0 {
        // The output rounds up: a last window may hang over the end (if it starts inside the input or the leading
        // padding, as PyTorch and ONNX have it). That part of the window is extra padding at the end, which max
        // pooling ignores and average pooling without count_include_pad leaves out of the divisor.
        for (axis, len) in [h, w].into_iter().enumerate() {
            let (k, s) = (extent[axis], stride[axis]);
            let total = len + pads[axis] + pads[axis + 2];
            let Some(span) = total.checked_sub(k) else { continue };
            let mut out = span.div_ceil(s) + 1;
            if (out - 1) * s >= len + pads[axis] {
                out -= 1;
            }
            let extra = ((out - 1) * s + k).saturating_sub(total);
            if extra > 0 && c.op() == "AveragePool" && c.int("count_include_pad", 0) != 0 {
                return Err(c.err(
                    "ceil_mode 1 with count_include_pad 1 and a window that overhangs the input is not supported",
                ));
            }
            pads[axis + 2] += extra;
        }
    }
    Ok(Window { kernel, stride, pads })
}

/// Kernel, strides and pads of a pooling node (no dilation).
fn window(c: &NodeCtx, x: &Computed) -> Result<Window> {
    let kernel = match c.ints("kernel_shape") {
        Some(k) if k.len() == 2 && k.iter().all(|&x| x > 0) => [k[0] as usize, k[1] as usize],
        Some(k) => return Err(c.err(format!("kernel_shape {k:?} must be two positive numbers (2-D only)"))),
        None => return Err(c.err("has no kernel_shape")),
    };
    if let Some(d) = c.ints("dilations")
        && d.iter().any(|&v| v != 1)
    {
        return Err(c.err(format!("dilations {d:?} are not supported for pooling (only 1)")));
    }
    window_dilated(c, x, kernel, [1, 1])
}

fn max_pool(c: &mut NodeCtx) -> Result<()> {
    let x = super::linear::data_input(c)?;
    let win = window(c, &x)?;
    let pool = Pool2d {
        window: win,
        count_include_pad: false,
    };
    c.push(Layer::MaxPool2d(pool), &x)
}

fn average_pool(c: &mut NodeCtx) -> Result<()> {
    let x = super::linear::data_input(c)?;
    let win = window(c, &x)?;
    let pool = Pool2d {
        window: win,
        count_include_pad: c.int("count_include_pad", 0) != 0,
    };
    c.push(Layer::AvgPool2d(pool), &x)
}

/// Average pooling over the whole `h × w` plane.
fn global_pool(h: usize, w: usize) -> Layer {
    Layer::AvgPool2d(Pool2d {
        window: Window {
            kernel: [h, w],
            stride: [1, 1],
            pads: [0; 4],
        },
        count_include_pad: false,
    })
}

fn global_average_pool(c: &mut NodeCtx) -> Result<()> {
    let x = super::linear::data_input(c)?;
    let (_, h, w) = spatial(c, &x)?;
    c.push(global_pool(h, w), &x)
}

fn reduce_mean(c: &mut NodeCtx) -> Result<()> {
    let x = c.x()?;
    let axes = if c.st.opset >= 18 {
        c.axes(1).map_err(|e| c.err(e))?
    } else {
        c.ints("axes")
    }
    .filter(|a| !a.is_empty())
    .ok_or_else(|| c.err("reduces over every axis, including the batch"))?;
    let mut features: Vec<usize> = axes
        .iter()
        .map(|&a| c.feature_axis(&x, a, "reduces over"))
        .collect::<Result<_>>()?;
    features.sort_unstable();
    features.dedup();
    let keep = c.int("keepdims", 1) != 0;
    // The mean over height and width of an image: global average pooling.
    if x.batch == Batch::At(0) && x.shape.len() == 3 && features == [1, 2] {
        let (ch, h, w) = (x.shape[0], x.shape[1], x.shape[2]);
        let pooled = c.emit(global_pool(h, w), vec![x.id])?;
        if keep {
            return c.set_node(pooled, vec![ch, 1, 1], x.batch);
        }
        let id = c.emit(Layer::Flatten(lrp_core::Flatten), vec![pooled])?;
        return c.set_node(id, vec![ch], x.batch);
    }
    if features.len() == x.shape.len() {
        return Err(c.err("would leave no axis besides the batch"));
    }
    // Any other axes: one mean over all of them, so that its proportional rule stabilizes once
    // (`R_x = x ⊙ R / stab(z)`, as Zennit's `Norm` on the pooling module): the reduced axes are moved last
    // and merged when there are several. An axis of one value is a mean too (AlexNet's upsampling
    // `AdaptiveAvgPool2d`, exported as GatherND + ReduceMean over axes of one value).
    let kept: Vec<usize> = (0..x.shape.len()).filter(|a| !features.contains(a)).collect();
    let mut cur = x.id;
    let mut shape: Vec<usize> = kept.iter().map(|&a| x.shape[a]).collect();
    if features.len() > 1 {
        let order: Vec<usize> = kept.iter().chain(features.iter()).copied().collect();
        if order.windows(2).any(|w| w[0] > w[1]) {
            cur = c.emit(Layer::transpose(order), vec![cur])?;
        }
        let mut merged = shape.clone();
        merged.push(features.iter().map(|&f| x.shape[f]).product());
        cur = c.emit(super::shape::reshape_layer(&merged), vec![cur])?;
        cur = c.emit(Layer::mean(kept.len()), vec![cur])?;
    } else {
        cur = c.emit(Layer::mean(features[0]), vec![cur])?;
    }
    let batch = match x.batch {
        Batch::At(b) if !keep => Batch::At(b - features.iter().filter(|&&f| f < b).count()),
        other => other,
    };
    if keep {
        for &f in &features {
            shape.insert(f, 1);
        }
        cur = c.emit(super::shape::reshape_layer(&shape), vec![cur])?;
    }
    c.set_node(cur, shape, batch)
}
