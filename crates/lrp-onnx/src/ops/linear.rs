//! Layers with weights — `Gemm`, `MatMul` by a constant, `Conv` — their batch norms, and `MatMul` of two computed
//! values (attention).

use lrp_core::{BatchNorm, Conv2d, Dense, Layer};
use ndarray::{Array1, Array2, Array4, Ix1};

use crate::context::{Handler, NodeCtx};
use crate::error::Result;
use crate::proto::TensorProto;
use crate::tensor::to_f32;
use crate::value::{Batch, Computed};

pub(crate) fn register(reg: &mut Vec<(&'static str, Handler)>) {
    reg.extend([
        ("Gemm", gemm as Handler),
        ("MatMul", matmul),
        ("Einsum", einsum),
        ("Conv", conv),
        ("BatchNormalization", batch_norm),
    ]);
}

/// The one computed input of a layer with weights: input 0, its weights constants. Unless `any_batch`, the
/// batch axis must come first (a merged batch's leading unit axis is taken back as the batch).
pub(crate) fn data_input_any(c: &mut NodeCtx, any_batch: bool) -> Result<Computed> {
    let computed = c.computed();
    match computed[..] {
        [] => Err(c.err(format!(
            "{} on constants is not supported at import (opset {})",
            c.op(),
            c.st.opset
        ))),
        [0] => {
            let x = c.node_at(0).expect("computed");
            if any_batch {
                return Ok(x);
            }
            let x = c.unmerge(x)?;
            match x.batch {
                Batch::At(b) if b != 0 => Err(c.err(format!(
                    "the value '{}' has its batch axis at position {b}; this operator needs it first",
                    c.node.input[0]
                ))),
                _ => Ok(x),
            }
        }
        [i] if matches!(c.op(), "MatMul" | "Gemm") => Err(c.err(format!(
            "multiplies a constant by a computed value from the left, which is not supported (input {i})"
        ))),
        [i] => Err(c.err(format!(
            "reads the computed value '{}' as a weight input",
            c.node.input[i]
        ))),
        _ => Err(c.err("reads several computed values, which this operator does not support")),
    }
}

/// [`data_input_any`] with the batch first.
pub(crate) fn data_input(c: &mut NodeCtx) -> Result<Computed> {
    data_input_any(c, false)
}

/// A constant weight tensor of rank `D`.
fn weight<D: ndarray::Dimension>(c: &NodeCtx, t: &TensorProto, what: &str) -> Result<ndarray::Array<f32, D>> {
    let a = to_f32(t)?;
    let shape = a.shape().to_vec();
    a.into_dimensionality::<D>().map_err(|_| {
        c.err(format!(
            "{what} '{}' has shape {shape:?}, expected rank {}",
            t.name,
            D::NDIM.unwrap_or(0)
        ))
    })
}

/// A bias given as `[n]`, `[1, n]` or a scalar, as `[n]`.
fn bias_vector(c: &NodeCtx, t: &TensorProto, n: usize, scale: f32) -> Result<Array1<f32>> {
    let b = to_f32(t)?;
    let len = b.len();
    let v: Vec<f32> = if len == n && b.shape().iter().filter(|&&d| d != 1).count() <= 1 {
        b.iter().map(|&x| x * scale).collect()
    } else if len == 1 {
        vec![b.iter().next().copied().unwrap_or(0.0) * scale; n]
    } else {
        return Err(c.err(format!(
            "bias '{}' has shape {:?}, which does not broadcast to the {n} outputs",
            t.name,
            b.shape()
        )));
    };
    Ok(Array1::from(v))
}

fn gemm(c: &mut NodeCtx) -> Result<()> {
    let x = data_input(c)?;
    // `[N, K]`, or a merged batch's `[M, K]` (rows of one sample).
    let flat = match (x.batch, &x.shape[..]) {
        (Batch::At(_), &[k]) | (Batch::Merged, &[_, k]) => Some(k),
        _ => None,
    };
    let Some(k) = flat else {
        return Err(c.err(format!(
            "needs a flat input [N, features], the value is [N, {:?}]",
            x.shape
        )));
    };
    if c.int("transA", 0) != 0 {
        return Err(c.err("transA = 1 (a transposed activation) is not supported"));
    }
    let b: Array2<f32> = weight(c, c.required(1, "the weight B")?, "weight")?;
    let (alpha, beta) = (c.float("alpha", 1.0), c.float("beta", 1.0));
    let w = if c.int("transB", 0) != 0 {
        b
    } else {
        b.reversed_axes().as_standard_layout().into_owned()
    };
    if w.ncols() != k {
        return Err(c.err(format!(
            "weight '{}' maps {} inputs but the value has {k} features",
            c.node.input[1],
            w.ncols()
        )));
    }
    let bias = match c.const_input(2) {
        Some(t) => Some(bias_vector(c, t, w.nrows(), beta)?),
        None => None,
    };
    c.push(Layer::Dense(Dense::new(w * alpha, bias)), &x)
}

fn matmul(c: &mut NodeCtx) -> Result<()> {
    if c.computed().len() == 2 {
        return matmul_of_values(c);
    }
    // A weight on the last axis: flat values, or the tokens of a transformer ([N, T, D], or [T, N, D]: the batch
    // may stand anywhere but last).
    let x = data_input_any(c, true)?;
    if x.shape.is_empty() || x.feature_axis(x.rank() - 1) != Some(x.shape.len() - 1) {
        return Err(c.err("multiplies along the batch axis"));
    }
    let k = *x.shape.last().expect("checked above");
    let b: Array2<f32> = weight(c, c.required(1, "the weight")?, "weight")?;
    if b.nrows() != k {
        return Err(c.err(format!(
            "weight '{}' has shape {:?} but the value has {k} features on its last axis",
            c.node.input[1],
            b.shape()
        )));
    }
    let w = b.reversed_axes().as_standard_layout().into_owned();
    c.push(Layer::Dense(Dense::new(w, None)), &x)
}

/// The product of two values of the network (attention's `Q·Kᵀ` and `softmax(·)·V`).
fn matmul_of_values(c: &mut NodeCtx) -> Result<()> {
    let (x, y) = (c.node_at(0).expect("computed"), c.node_at(1).expect("computed"));
    product_of_values(c, &x, &y, false)
}

/// `x · y` of two values of the network, batch first in both; with `swap_y`, `y`'s last two axes are swapped
/// first (a transpose layer), for `x · yᵀ`.
fn product_of_values(c: &mut NodeCtx, x: &Computed, y: &Computed, swap_y: bool) -> Result<()> {
    if !(x.batch_first() && y.batch_first()) || x.batch != y.batch {
        return Err(c.err("multiplies computed values whose batch axis is not first (reorder them before the product)"));
    }
    let (y_id, y_shape) = if swap_y {
        let p = y.shape.len();
        let mut order: Vec<usize> = (0..p).collect();
        order.swap(p - 2, p - 1);
        let id = c.emit(Layer::transpose(order), vec![y.id])?;
        (id, c.shape_of(id))
    } else {
        (y.id, y.shape.clone())
    };
    lrp_core::layers::matmul_shape(&x.shape, &y_shape).map_err(|r| c.err(format!("{r} (per sample)")))?;
    let id = c.emit(Layer::MatMul(lrp_core::MatMul), vec![x.id, y_id])?;
    let shape = c.shape_of(id);
    c.set_node(id, shape, x.batch)
}

/// The batched matrix products an `Einsum` equation can be: `…ik,…kj->…ij`, or with the second operand's last two
/// axes swapped, `…ik,…jk->…ij` (attention's `Q·Kᵀ`, as `torch.einsum` writes it in MaxViT). The leading labels
/// are the same in both operands and the output, in the same order.
#[derive(Debug, PartialEq, Eq)]
struct BatchedProduct {
    /// Labels per operand (the batch's included).
    rank: usize,
    /// The second operand is `[…, j, k]`, to be transposed before the product.
    transposed: bool,
}

/// The product `equation` writes, if it is one of [`BatchedProduct`]'s forms (letters as labels, spaces ignored; no
/// ellipsis, no implicit output).
fn batched_product(equation: &str) -> Option<BatchedProduct> {
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, out) = eq.split_once("->")?;
    let (a, b) = lhs.split_once(',')?;
    let [a, b, out]: [Vec<char>; 3] = [a, b, out].map(|s| s.chars().collect());
    let n = a.len();
    if n < 2
        || b.len() != n
        || out.len() != n
        || [&a, &b, &out].iter().any(|l| !l.iter().all(char::is_ascii_alphabetic))
    {
        return None;
    }
    let lead = &a[..n - 2];
    let distinct = |l: &[char]| (0..l.len()).all(|i| !l[..i].contains(&l[i]));
    if b[..n - 2] != *lead || out[..n - 2] != *lead || !distinct(&a) || !distinct(&b) || !distinct(&out) {
        return None;
    }
    let (i, k, j) = (a[n - 2], a[n - 1], out[n - 1]);
    if out[n - 2] != i || [i, k].contains(&j) || lead.contains(&j) {
        return None;
    }
    let transposed = match (b[n - 2], b[n - 1]) {
        (bk, bj) if bk == k && bj == j => false,
        (bj, bk) if bk == k && bj == j => true,
        _ => return None,
    };
    Some(BatchedProduct { rank: n, transposed })
}

/// `Einsum` of two computed values that is a batched matrix product ([`batched_product`]): a `MatMul`, after a
/// transpose of the second value's last two axes for `…ik,…jk->…ij`; explained as the same graph written with
/// `MatMul` would be.
fn einsum(c: &mut NodeCtx) -> Result<()> {
    let eq = c.string("equation").ok_or_else(|| c.err("has no equation"))?;
    let Some(form) = batched_product(&eq) else {
        return Err(c.err(format!(
            "equation '{eq}' is not a batched matrix product (…ik,…kj->…ij or …ik,…jk->…ij), the only forms \
             supported"
        )));
    };
    if c.computed().len() != 2 || c.node.input.len() != 2 {
        return Err(c.err("supported for a product of two computed values only"));
    }
    let (x, y) = (c.node_at(0).expect("computed"), c.node_at(1).expect("computed"));
    if x.rank() != form.rank || y.rank() != form.rank {
        return Err(c.err(format!(
            "equation '{eq}' has {} labels per operand, the values have rank {} and {}",
            form.rank,
            x.rank(),
            y.rank()
        )));
    }
    product_of_values(c, &x, &y, form.transposed)
}

fn conv(c: &mut NodeCtx) -> Result<()> {
    let x = data_input(c)?;
    let (ch, _, _) = super::pool::spatial(c, &x)?;
    let group = c.int("group", 1);
    if group < 1 || group as usize > ch {
        return Err(c.err(format!("group {group} must be between 1 and the {ch} input channels")));
    }
    let group = group as usize;
    let w: Array4<f32> = weight(c, c.required(1, "the weight W")?, "weight")?;
    let (o, wc, kh, kw) = w.dim();
    if wc * group != ch || o % group != 0 {
        return Err(c.err(format!(
            "weight '{}' has shape {:?}: {wc} input channels per group × {group} groups, but the value has {ch} \
             channels (and the {o} output channels must split into the groups)",
            c.node.input[1],
            w.shape()
        )));
    }
    if let Some(k) = c.ints("kernel_shape")
        && k != [kh as i64, kw as i64]
    {
        return Err(c.err(format!(
            "kernel_shape {k:?} contradicts the weight shape {:?}",
            w.shape()
        )));
    }
    let dilation = super::pool::dilations(c)?;
    let win = super::pool::window_dilated(c, &x, [kh, kw], dilation)?;
    let bias = match c.const_input(2) {
        Some(b) => Some(bias_vector(c, b, o, 1.0)?),
        None => None,
    };
    let mut conv = Conv2d::new(w, bias, win.stride, win.pads);
    conv.dilation = dilation;
    conv.groups = group;
    c.push(Layer::Conv2d(conv), &x)
}

fn batch_norm(c: &mut NodeCtx) -> Result<()> {
    let x = data_input(c)?;
    if c.int("training_mode", 0) != 0 {
        return Err(c.err("training_mode = 1 is not supported; export the model in eval mode"));
    }
    let vec1 = |i: usize, what: &str| -> Result<Array1<f32>> { weight::<Ix1>(c, c.required(i, what)?, what) };
    let bn = BatchNorm {
        scale: vec1(1, "scale")?,
        shift: vec1(2, "bias")?,
        mean: vec1(3, "mean")?,
        var: vec1(4, "var")?,
        eps: c.float("epsilon", 1e-5),
    };
    c.push(Layer::BatchNorm(bn), &x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn einsum_equations_that_are_batched_products_and_others() {
        let form = |rank, transposed| Some(BatchedProduct { rank, transposed });
        assert_eq!(batched_product("B G H I D, B G H J D -> B G H I J"), form(5, true));
        assert_eq!(batched_product("B G H I J, B G H J D -> B G H I D"), form(5, false));
        assert_eq!(batched_product("bik,bkj->bij"), form(3, false));
        assert_eq!(batched_product("ik,jk->ij"), form(2, true));
        for other in [
            "bik,bkj->bji",   // the output transposed
            "bik,bkj->bj",    // a reduction
            "bik,ckj->bij",   // batch labels differ
            "bij,bjk->bik,x", // two outputs
            "...ik,...kj->...ij",
            "bik,bkj",
            "bii,bij->bij", // a repeated label
            "bik,bkk->bik",
            "bik,bki->bii",
            "bik,bkj,bjl->bil",
        ] {
            assert_eq!(batched_product(other), None, "{other}");
        }
    }
}
