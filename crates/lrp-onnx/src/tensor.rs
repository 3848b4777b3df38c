//! Initializer tensors → ndarray.

use ndarray::{ArrayD, IxDyn};

use crate::error::{OnnxError, Result};
use crate::proto::{TensorProto, data_type};

fn bad(t: &TensorProto, reason: impl Into<String>) -> OnnxError {
    OnnxError::Initializer {
        name: t.name.clone(),
        reason: reason.into(),
    }
}

fn dims(t: &TensorProto) -> Result<(Vec<usize>, usize)> {
    if t.data_location == 1 {
        return Err(bad(
            t,
            "stored as external data, which needs the model's folder: import the model from its file",
        ));
    }
    let mut shape = Vec::with_capacity(t.dims.len());
    let mut count: usize = 1;
    for &d in &t.dims {
        if d < 0 {
            return Err(bad(t, format!("negative dimension in {:?}", t.dims)));
        }
        shape.push(d as usize);
        count = count
            .checked_mul(d as usize)
            .ok_or_else(|| bad(t, format!("dimensions {:?} overflow", t.dims)))?;
    }
    Ok((shape, count))
}

fn from_raw<const W: usize, T>(t: &TensorProto, count: usize, conv: impl Fn([u8; W]) -> T) -> Result<Vec<T>> {
    if t.raw_data.len() != count * W {
        return Err(bad(
            t,
            format!(
                "has {} bytes of data, its dimensions {:?} need {}",
                t.raw_data.len(),
                t.dims,
                count * W
            ),
        ));
    }
    Ok(t.raw_data
        .chunks_exact(W)
        .map(|c| conv(c.try_into().expect("chunk of W bytes")))
        .collect())
}

fn check_len(t: &TensorProto, len: usize, count: usize) -> Result<()> {
    if len != count {
        return Err(bad(
            t,
            format!("has {len} values, its dimensions {:?} need {count}", t.dims),
        ));
    }
    Ok(())
}

/// A float tensor (float32, or float64 converted).
pub fn to_f32(t: &TensorProto) -> Result<ArrayD<f32>> {
    let (shape, count) = dims(t)?;
    let data: Vec<f32> = match t.data_type {
        data_type::FLOAT if !t.raw_data.is_empty() => from_raw::<4, _>(t, count, f32::from_le_bytes)?,
        data_type::FLOAT => {
            check_len(t, t.float_data.len(), count)?;
            t.float_data.clone()
        }
        data_type::DOUBLE if !t.raw_data.is_empty() => from_raw::<8, _>(t, count, |b| f64::from_le_bytes(b) as f32)?,
        data_type::DOUBLE => {
            check_len(t, t.double_data.len(), count)?;
            t.double_data.iter().map(|&v| v as f32).collect()
        }
        other => {
            return Err(bad(
                t,
                format!("has data type {other}; weights must be float32 or float64"),
            ));
        }
    };
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(bad(t, format!("has a non-finite value at flat index {i}")));
    }
    Ok(ArrayD::from_shape_vec(IxDyn(&shape), data).expect("length checked"))
}

/// An integer tensor (int64 or int32), flattened.
pub fn to_i64(t: &TensorProto) -> Result<Vec<i64>> {
    let (_, count) = dims(t)?;
    match t.data_type {
        data_type::INT64 if !t.raw_data.is_empty() => from_raw::<8, _>(t, count, i64::from_le_bytes),
        data_type::INT64 => {
            check_len(t, t.int64_data.len(), count)?;
            Ok(t.int64_data.clone())
        }
        data_type::INT32 if !t.raw_data.is_empty() => from_raw::<4, _>(t, count, |b| i32::from_le_bytes(b) as i64),
        data_type::INT32 | data_type::BOOL if t.raw_data.is_empty() => {
            check_len(t, t.int32_data.len(), count)?;
            Ok(t.int32_data.iter().map(|&v| v as i64).collect())
        }
        data_type::BOOL => from_raw::<1, _>(t, count, |b| (b[0] != 0) as i64),
        other => Err(bad(t, format!("has data type {other}; expected an integer type"))),
    }
}
