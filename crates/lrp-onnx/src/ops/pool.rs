//! Pooling — `MaxPool`, `AveragePool`, `GlobalAveragePool`, `ReduceMean` — and the window geometry that
//! convolutions share.

use lrp_core::{Layer, Pool2d, Window};

use crate::context::{Handler, NodeCtx};
use crate::error::Result;
use crate::fold::axis as norm_axis;
use crate::value::Computed;

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
    let window = Window { kernel, stride, pads };
    if c.int("ceil_mode", 0) != 0 {
        // ceil_mode only matters when a window would hang over the end.
        let fits = |len: usize, a: usize, b: usize, k: usize, s: usize| {
            (len + a + b).checked_sub(k).is_some_and(|r| r % s == 0)
        };
        if !(fits(h, pads[0], pads[2], extent[0], stride[0]) && fits(w, pads[1], pads[3], extent[1], stride[1])) {
            return Err(c.err("ceil_mode 1 with a window that overhangs the input is not supported"));
        }
    }
    Ok(window)
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
    c.need_batch_first(&x, "ReduceMean")?;
    let axes = if c.st.opset >= 18 {
        c.axes(1).map_err(|e| c.err(e))?
    } else {
        c.ints("axes")
    }
    .ok_or_else(|| c.err("reduces over every axis, including the batch"))?;
    let rank = x.rank();
    let mut ax: Vec<usize> = axes
        .iter()
        .map(|&a| norm_axis(a, rank))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| c.err(e))?;
    ax.sort_unstable();
    let keep = c.int("keepdims", 1) != 0;
    if ax.len() == 1 && ax[0] > 0 && !(rank == 4 && ax[0] >= 2) {
        // The mean over one feature axis (the tokens of a transformer).
        let id = c.emit(Layer::mean(ax[0] - 1), vec![x.id])?;
        let mut shape = c.shape_of(id);
        if keep {
            shape.insert(ax[0] - 1, 1);
            let kept = c.emit(super::shape::reshape_layer(&shape), vec![id])?;
            return c.set_node(kept, shape, 0);
        }
        return c.set_node(id, shape, 0);
    }
    if rank != 4 || ax != [2, 3] {
        return Err(c.err(format!(
            "ReduceMean over axes {axes:?} of a rank-{rank} value: only the mean over height and width (global \
             average pooling) is supported"
        )));
    }
    let (ch, h, w) = (x.shape[0], x.shape[1], x.shape[2]);
    let pooled = c.emit(global_pool(h, w), vec![x.id])?;
    if keep {
        return c.set_node(pooled, vec![ch, 1, 1], 0);
    }
    let id = c.emit(Layer::Flatten(lrp_core::Flatten), vec![pooled])?;
    c.set_node(id, vec![ch], 0)
}
