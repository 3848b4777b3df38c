//! Initializer tensors → ndarray.

use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;

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
    // `count · W` may overflow for absurd dimensions (a wrapped product must not pass for the data's length).
    if count.checked_mul(W) != Some(t.raw_data.len()) {
        return Err(bad(
            t,
            format!(
                "has {} bytes of data, its dimensions {:?} need {}",
                t.raw_data.len(),
                t.dims,
                count as u128 * W as u128
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

/// Values a task converts (and scans for non-finite ones) in [`floats_le`]: 256 KiB of data, so that ResNet-50's
/// weights of 0.3–9 MB are spread over the threads too, not only the largest. Tensors of at most this many values
/// are converted on the calling thread.
const CHUNK: usize = 1 << 16;

/// Little-endian float32 bytes as floats, and the flat index of the first NaN or infinity among them. Converted in
/// chunks side by side on the pool's threads, each chunk scanned while it is still in cache: a weight matrix's fresh
/// pages are faulted in by every core at once (VGG-16's first dense layer is 411 MB).
fn floats_le(t: &TensorProto, count: usize) -> Result<(Vec<f32>, Option<usize>)> {
    // One chunk or less, one thread; a wrong length, the error as `from_raw` words it.
    if count <= CHUNK || count.checked_mul(4) != Some(t.raw_data.len()) {
        return Ok(scanned(from_raw::<4, _>(t, count, f32::from_le_bytes)?));
    }
    let mut data = vec![0f32; count];
    let first = data
        .par_chunks_mut(CHUNK)
        .zip(t.raw_data.par_chunks(CHUNK * 4))
        .enumerate()
        .filter_map(|(k, (d, s))| {
            for (v, b) in d.iter_mut().zip(s.chunks_exact(4)) {
                *v = f32::from_le_bytes(b.try_into().expect("chunk of 4 bytes"));
            }
            lrp_core::simd::first_non_finite(d).map(|i| k * CHUNK + i)
        })
        .min();
    Ok((data, first))
}

/// Floats converted whole, with the flat index of their first NaN or infinity (small tensors, and data not stored as
/// float32 bytes: repeated fields, float64).
fn scanned(data: Vec<f32>) -> (Vec<f32>, Option<usize>) {
    let first = lrp_core::simd::first_non_finite(&data);
    (data, first)
}

/// A float tensor (float32, or float64 converted).
pub fn to_f32(t: &TensorProto) -> Result<ArrayD<f32>> {
    let (shape, count) = dims(t)?;
    let (data, first) = match t.data_type {
        data_type::FLOAT if !t.raw_data.is_empty() => floats_le(t, count)?,
        data_type::FLOAT => {
            check_len(t, t.float_data.len(), count)?;
            scanned(t.float_data.clone())
        }
        data_type::DOUBLE if !t.raw_data.is_empty() => {
            scanned(from_raw::<8, _>(t, count, |b| f64::from_le_bytes(b) as f32)?)
        }
        data_type::DOUBLE => {
            check_len(t, t.double_data.len(), count)?;
            scanned(t.double_data.iter().map(|&v| v as f32).collect())
        }
        other => {
            return Err(bad(
                t,
                format!("has data type {other}; weights must be float32 or float64"),
            ));
        }
    };
    if let Some(i) = first {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_float(dims: &[i64], bytes: Vec<u8>) -> TensorProto {
        TensorProto {
            name: "w".into(),
            dims: dims.to_vec(),
            data_type: data_type::FLOAT,
            raw_data: bytes.into(),
            ..Default::default()
        }
    }

    fn le(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn reason(r: Result<ArrayD<f32>>) -> String {
        match r {
            Err(OnnxError::Initializer { reason, .. }) => reason,
            other => panic!("expected an initializer error, got {other:?}"),
        }
    }

    #[test]
    fn a_tensor_of_several_chunks_converts_value_for_value() {
        // 2.5 chunks, with values whose bytes differ in every position (a swapped or shifted chunk shows).
        let values: Vec<f32> = (0..CHUNK * 5 / 2).map(|i| i as f32 * 0.25 - 1e5).collect();
        let t = raw_float(&[5, (CHUNK / 2) as i64], le(&values));
        let a = to_f32(&t).expect("valid tensor");
        assert_eq!(a.shape(), &[5, CHUNK / 2]);
        for (i, (got, want)) in a.iter().zip(&values).enumerate() {
            assert!(got.to_bits() == want.to_bits(), "value {i}: {got} against {want}");
        }
    }

    #[test]
    fn the_first_non_finite_value_is_named_in_any_chunk() {
        for (at, bad) in [
            (5, f32::NAN),
            (CHUNK + 7, f32::INFINITY),
            (2 * CHUNK + 1, f32::NEG_INFINITY),
        ] {
            let mut values = vec![1.5f32; CHUNK * 5 / 2];
            values[at] = bad;
            // A later one too: the first is the one named.
            values[CHUNK * 5 / 2 - 1] = f32::NAN;
            let r = reason(to_f32(&raw_float(&[(CHUNK * 5 / 2) as i64], le(&values))));
            assert!(r.contains(&format!("flat index {at}")), "{r}");
        }
    }

    #[test]
    fn a_non_finite_value_in_a_small_or_non_raw_tensor_is_named() {
        // One chunk or less (converted on the calling thread), float32 bytes.
        let r = reason(to_f32(&raw_float(
            &[2, 3],
            le(&[1.0, 2.0, f32::NAN, 4.0, f32::NAN, 6.0]),
        )));
        assert!(r.contains("flat index 2"), "{r}");
        // The repeated float field.
        let t = TensorProto {
            float_data: vec![0.5, f32::NEG_INFINITY, 1.0],
            ..raw_float(&[3], Vec::new())
        };
        assert!(reason(to_f32(&t)).contains("flat index 1"));
        // float64 bytes whose value overflows float32: infinite once converted.
        let t = TensorProto {
            data_type: data_type::DOUBLE,
            raw_data: [1.0f64, 2.0, 1e300]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
                .into(),
            ..raw_float(&[3], Vec::new())
        };
        assert!(reason(to_f32(&t)).contains("flat index 2"));
    }

    #[test]
    fn dimensions_whose_byte_count_wraps_are_refused() {
        // 2^62 + 1 values of 4 bytes: 2^64 + 4 bytes, which wraps to 4 in usize arithmetic, the data's length.
        let r = reason(to_f32(&raw_float(&[(1i64 << 62) + 1], le(&[1.0]))));
        assert!(
            r.contains("has 4 bytes of data") && r.contains("need 18446744073709551620"),
            "{r}"
        );
    }
}
