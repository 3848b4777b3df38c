//! Test helpers shared by every test suite of the workspace (a dev-dependency only).
#![forbid(unsafe_code)]

use std::path::PathBuf;

use ndarray::ArrayD;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of the copied oracle (`tests/fixtures/oracle/` at the repository root).
pub fn oracle_fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/oracle").join(name)
}

/// The oracle's tolerance measure: the largest per-sample `max |R − R_ref| / max |R_ref|`.
pub fn worst_relative_error(got: &ArrayD<f32>, reference: &ArrayD<f32>) -> f32 {
    assert_eq!(
        got.shape(),
        reference.shape(),
        "relevance and reference differ in shape"
    );
    got.outer_iter()
        .zip(reference.outer_iter())
        .map(|(g, r)| {
            let scale = r.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let err = g.iter().zip(r.iter()).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            if scale > 0.0 { err / scale } else { err }
        })
        .fold(0.0, f32::max)
}
