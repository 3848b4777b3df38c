//! Test helpers shared by every test suite of the workspace (a dev-dependency only).
//!
//! Every measure here propagates NaN: a result with a NaN scores NaN, and NaN fails every comparison
//! (`err <= tol` is false), so a test can never pass on a NaN. (`fold(0.0, f32::max)` skips NaN: an all-NaN result
//! would have scored 0.)
#![forbid(unsafe_code)]

use std::path::PathBuf;

use ndarray::{ArrayBase, Data, Dimension};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of the copied oracle (`tests/fixtures/oracle/` at the repository root).
pub fn oracle_fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/oracle").join(name)
}

/// The larger of two measures, NaN if either is NaN (`f32::max` would drop the NaN).
fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() { f32::NAN } else { a.max(b) }
}

/// The largest `|v|`, NaN if any value is NaN (0 for no values).
pub fn max_abs<'a>(values: impl IntoIterator<Item = &'a f32>) -> f32 {
    values.into_iter().fold(0.0, |m, v| nan_max(m, v.abs()))
}

/// [`max_abs`] in `f64`.
pub fn max_abs64<'a>(values: impl IntoIterator<Item = &'a f64>) -> f64 {
    values.into_iter().fold(0.0, |m, v| {
        if m.is_nan() || v.is_nan() {
            f64::NAN
        } else {
            m.max(v.abs())
        }
    })
}

/// The largest `|a − b|` over two arrays of one shape, NaN if any difference is NaN.
pub fn max_abs_diff<S, T, D>(a: &ArrayBase<S, D>, b: &ArrayBase<T, D>) -> f32
where
    S: Data<Elem = f32>,
    T: Data<Elem = f32>,
    D: Dimension,
{
    assert_eq!(a.shape(), b.shape(), "the arrays differ in shape");
    a.iter().zip(b.iter()).fold(0.0, |m, (x, y)| nan_max(m, (x - y).abs()))
}

/// The oracle's tolerance measure: the largest per-sample `max |R − R_ref| / max |R_ref|` (NaN if any value of
/// either is NaN).
pub fn worst_relative_error<S, T, D>(got: &ArrayBase<S, D>, reference: &ArrayBase<T, D>) -> f32
where
    S: Data<Elem = f32>,
    T: Data<Elem = f32>,
    D: Dimension + ndarray::RemoveAxis,
{
    assert_eq!(
        got.shape(),
        reference.shape(),
        "relevance and reference differ in shape"
    );
    got.outer_iter()
        .zip(reference.outer_iter())
        .map(|(g, r)| {
            let scale = max_abs(r.iter());
            let err = max_abs_diff(&g, &r);
            if scale > 0.0 { err / scale } else { err }
        })
        .fold(0.0, nan_max)
}

/// Asserts `got` is within `tol` of `reference` by [`worst_relative_error`], naming `what` (fails on NaN).
pub fn assert_close<S, T, D>(got: &ArrayBase<S, D>, reference: &ArrayBase<T, D>, tol: f32, what: &str)
where
    S: Data<Elem = f32>,
    T: Data<Elem = f32>,
    D: Dimension + ndarray::RemoveAxis,
{
    let err = worst_relative_error(got, reference);
    assert!(err <= tol, "{what}: worst relative error {err:e} > {tol:e}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn, array};

    /// The measures score a NaN as NaN, which no tolerance accepts; without one, they measure as they should.
    #[test]
    fn a_planted_nan_fails_every_measure() {
        let reference = array![[1.0f32, -2.0, 0.5], [0.25, 4.0, -1.0]];
        let close = reference.mapv(|v| v * (1.0 + 1e-7));
        assert!(worst_relative_error(&close, &reference) <= 1e-6);
        for at in [(0, 0), (1, 2)] {
            let mut bad = close.clone();
            bad[at] = f32::NAN;
            let err = worst_relative_error(&bad, &reference);
            assert!(err.is_nan(), "{at:?}: {err}");
            assert_eq!(err.partial_cmp(&1e30), None, "NaN compares with nothing");
            assert!(max_abs_diff(&bad, &reference).is_nan());
            assert!(max_abs(bad.iter()).is_nan());
            // A NaN in the reference fails too.
            assert!(worst_relative_error(&reference, &bad).is_nan());
        }
        // All NaN: no longer a score of 0.
        let all_nan = ArrayD::from_elem(IxDyn(&[2, 3]), f32::NAN);
        assert!(worst_relative_error(&all_nan, &reference.clone().into_dyn()).is_nan());
        assert!(max_abs64([1.0, f64::NAN, 3.0].iter()).is_nan());
        // Hand-computed: sample 1 is off by 0.5 where its largest |value| is 4.
        let mut off = reference.clone();
        off[(1, 0)] += 0.5;
        assert_eq!(worst_relative_error(&off, &reference), 0.125);
    }

    #[test]
    #[should_panic(expected = "worst relative error NaN")]
    fn assert_close_fails_on_nan() {
        let r = array![[1.0f32, 2.0]];
        assert_close(&array![[f32::NAN, 2.0]], &r, 1.0, "planted NaN");
    }
}
