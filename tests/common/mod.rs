//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

pub mod onnx;

use std::io::Write;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (where `data/` lives).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the `lrp` binary with `args`.
pub fn lrp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lrp"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the lrp binary runs")
}

/// Runs `lrp`, asserts success, returns stdout + stderr.
pub fn lrp_ok(args: &[&str]) -> String {
    let out = lrp(args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "lrp {args:?} failed:\n{text}");
    text
}

/// Runs `lrp`, asserts exit code 1 and no panic, returns stderr.
pub fn lrp_err(args: &[&str]) -> String {
    let out = lrp(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "lrp {args:?} should fail cleanly:\n{err}");
    assert!(!err.contains("panicked"), "lrp {args:?} panicked:\n{err}");
    err
}

/// Writes an IDX file of unsigned bytes, gzip-compressed.
pub fn write_idx_gz(path: &Path, dims: &[u32], data: &[u8]) {
    let mut bytes = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    let f = std::fs::File::create(path).unwrap();
    let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    enc.write_all(&bytes).unwrap();
    enc.finish().unwrap();
}

/// A small dataset unlike MNIST: `side × side` images, 3 classes, a bright bar in the left, middle or
/// right third (class 0, 1, 2) over faint deterministic noise. Written as the four IDX files into `dir`.
pub fn write_bars_dataset(dir: &Path, side: usize, train: usize, test: usize) {
    let mut state = 12345u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    for (prefix, n) in [("train", train), ("t10k", test)] {
        let mut pixels = Vec::with_capacity(n * side * side);
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let class = (next() % 3) as usize;
            let third = side / 3;
            let row = (next() as usize) % side;
            for y in 0..side {
                for x in 0..side {
                    let on = x / third.max(1) == class && (y as isize - row as isize).abs() <= 1;
                    pixels.push(if on {
                        200 + (next() % 56) as u8
                    } else {
                        (next() % 60) as u8
                    });
                }
            }
            labels.push(class as u8);
        }
        write_idx_gz(
            &dir.join(format!("{prefix}-images-idx3-ubyte.gz")),
            &[n as u32, side as u32, side as u32],
            &pixels,
        );
        write_idx_gz(
            &dir.join(format!("{prefix}-labels-idx1-ubyte.gz")),
            &[n as u32],
            &labels,
        );
    }
}

/// The number after `label` in `text` (e.g. `"test accuracy: "`).
pub fn number_after(text: &str, label: &str) -> f64 {
    let start = text.find(label).unwrap_or_else(|| panic!("no {label:?} in:\n{text}")) + label.len();
    let num: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse()
        .unwrap_or_else(|_| panic!("no number after {label:?} in:\n{text}"))
}

#[allow(unused_imports)]
pub use lrp_testkit::worst_relative_error;

/// The result files of a batch folder by name (the manifest holds timings and is left out).
pub fn batch_results(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "npy"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Runs `lrp batch` on `model` over the first 200 MNIST test images under `rules`, in chunks of 48, with one and
/// with two threads, and asserts that the result files are the same bytes; returns how many there are.
pub fn batch_is_the_same_with_one_and_two_threads(model: &str, rules: &[&str]) -> usize {
    let dir = tempfile::tempdir().unwrap();
    for threads in ["1", "2"] {
        let out = dir.path().join(threads);
        let mut args = vec!["batch", "--model", model, "--data", "data/mnist"];
        for r in rules {
            args.extend(["--rule", r]);
        }
        args.extend([
            "--limit",
            "200",
            "--chunk",
            "48",
            "--threads",
            threads,
            "--out",
            out.to_str().unwrap(),
        ]);
        lrp_ok(&args);
    }
    let (a, b) = (
        batch_results(&dir.path().join("1")),
        batch_results(&dir.path().join("2")),
    );
    assert_eq!(a, b, "{model}: one and two threads give different files");
    a.len()
}

/// Trains twice with the same `args` (an architecture and its settings; `--data` and `--out` are added) on a
/// generated bars dataset of `side`×`side` images (600 training, 200 test), asserts the two model files are the same
/// bytes, and returns what `lrp info --data` prints for the model.
pub fn train_twice_on_bars(side: usize, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bars");
    std::fs::create_dir(&data).unwrap();
    write_bars_dataset(&data, side, 600, 200);
    let d = data.to_str().unwrap();
    let (a, b) = (dir.path().join("a.lrpm"), dir.path().join("b.lrpm"));
    for path in [&a, &b] {
        let mut full = vec!["train", "--data", d];
        full.extend_from_slice(args);
        full.extend(["--out", path.to_str().unwrap()]);
        lrp_ok(&full);
    }
    assert_eq!(
        std::fs::read(&a).unwrap(),
        std::fs::read(&b).unwrap(),
        "same seed, same file"
    );
    lrp_ok(&["info", "--model", a.to_str().unwrap(), "--data", d])
}
