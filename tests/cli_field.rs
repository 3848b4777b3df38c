//! What outside tries found (issue "In the field"): hostile files and folders, a cluster's ways, a new user's
//! stumbles. Each test reproduces the finding from its description and checks the behaviour asked for: a clear
//! error naming the problem, nothing written, nothing already written lost, never a signal death or a hang.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::onnx::{f32s, i64s, int_attr, model, op};
use common::*;

fn lrp_bin() -> &'static str {
    env!("CARGO_BIN_EXE_lrp")
}

/// Runs `lrp` with `args` in `dir`; returns (exit code, stdout, stderr). A signal death has no code: `None`.
fn run_in(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(lrp_bin()).args(args).current_dir(dir).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `lrp` under an address-space limit of `gib` GiB (as `ulimit -v` does), in `dir`.
fn run_limited(dir: &Path, gib: u64, args: &[&str]) -> (Option<i32>, String, String) {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!("ulimit -v {}; exec {} {}", gib << 20, lrp_bin(), quoted.join(" "));
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits for `child` at most `secs` seconds; kills it and fails the test when it hangs.
fn wait_or_fail(mut child: std::process::Child, secs: u64, what: &str) -> std::process::Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            panic!("{what}: still running after {secs} s (a hang)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn mkfifo(p: &Path) {
    assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
}

fn abs(p: &str) -> String {
    root().join(p).display().to_string()
}

/// A character device to write to: a node made with `mknod` (root), else the system's own.
fn char_device(dir: &Path, name: &str, minor: u32) -> PathBuf {
    let p = dir.join(name);
    let made = Command::new("mknod")
        .arg(&p)
        .args(["c", "1", &minor.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if made {
        p
    } else {
        PathBuf::from(if minor == 7 { "/dev/full" } else { "/dev/null" })
    }
}

fn is_char_device(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device())
}

// ---- 1. outputs onto special files ----

#[test]
fn outputs_onto_devices_and_fifos_are_written_through_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let full = char_device(dir.path(), "full", 7);
    let null = char_device(dir.path(), "null", 3);
    let full_s = full.to_str().unwrap();
    let null_s = null.to_str().unwrap();
    // /dev/full: the write fails (no space), exit 1, and the device node stays a device node.
    for args in [
        vec![
            "explain", "--model", "cnn", "--index", "0", "--rule", "epsilon", "--out", full_s,
        ],
        vec![
            "explain", "--model", "cnn", "--index", "0", "--rule", "epsilon", "--png", full_s,
        ],
        vec![
            "predict",
            "--model",
            "cnn",
            "--data",
            "data/mnist",
            "--limit",
            "3",
            "--out",
            full_s,
        ],
        vec!["convert", "--model", "cnn", "--out", full_s],
    ] {
        let (code, _, err) = run_in(&root(), &args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains("No space left"), "{args:?}: {err}");
        assert!(is_char_device(&full), "{args:?} replaced the device node");
    }
    // /dev/null: written through, exit 0, still a device.
    let (code, _, err) = run_in(
        &root(),
        &[
            "explain", "--model", "cnn", "--index", "0", "--rule", "epsilon", "--out", null_s, "--png", null_s,
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(is_char_device(&null));
    // A FIFO: its reader gets the .npy; the FIFO stays a FIFO.
    let fifo = dir.path().join("pipe.npy");
    mkfifo(&fifo);
    let reader = Command::new("cat").arg(&fifo).stdout(Stdio::piped()).spawn().unwrap();
    let (code, _, err) = run_in(
        &root(),
        &[
            "predict",
            "--model",
            "cnn",
            "--data",
            "data/mnist",
            "--limit",
            "3",
            "--out",
            fifo.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let got = wait_or_fail(reader, 10, "the FIFO's reader").stdout;
    assert!(got.starts_with(b"\x93NUMPY"), "the reader got {} bytes", got.len());
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    // A folder is refused, not replaced.
    let (code, _, err) = run_in(
        &root(),
        &[
            "explain",
            "--model",
            "cnn",
            "--index",
            "0",
            "--rule",
            "epsilon",
            "--out",
            dir.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(1), "{err}");
}

// ---- 2. the folder lock ----

/// `lrp batch` of the shipped MLP over the first `limit` MNIST test digits under ε into `out`, then `extra`.
fn mlp_batch<'a>(out: &'a str, limit: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "batch",
        "--model",
        "mlp",
        "--data",
        "data/mnist",
        "--rule",
        "epsilon",
        "--limit",
        limit,
    ];
    v.extend_from_slice(extra);
    v.extend(["--out", out]);
    v
}

#[test]
fn a_lock_file_that_is_a_symlink_is_refused_and_its_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir(&out).unwrap();
    std::os::unix::fs::symlink(&victim, out.join(".lrp.lock")).unwrap();
    let out_s = out.to_str().unwrap();
    let (code, _, err) = run_in(&root(), &mlp_batch(out_s, "64", &[]));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(".lrp.lock") && err.contains("not a regular file"), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    // eval and merge take the same lock.
    let (code, _, err) = run_in(
        &root(),
        &[
            "eval",
            "--model",
            "mlp",
            "--data",
            "data/mnist",
            "--rule",
            "epsilon",
            "--limit",
            "4",
            "--out",
            out_s,
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

#[test]
fn a_held_folder_exits_75_and_a_huge_lock_file_is_not_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir(&out).unwrap();
    // Another process holds the folder (flock on it, as lrp does); its lock file is 1 GB of junk (sparse).
    let held = std::fs::File::open(&out).unwrap();
    held.try_lock().unwrap();
    let lock = std::fs::File::create(out.join(".lrp.lock")).unwrap();
    use std::io::Write;
    (&lock).write_all(b"\x1b[31m123\x07").unwrap();
    lock.set_len(1 << 30).unwrap();
    let start = Instant::now();
    let (code, _, err) = run_in(&root(), &mlp_batch(out.to_str().unwrap(), "64", &[]));
    assert_eq!(code, Some(75), "{err}");
    assert!(err.contains("another lrp") && err.contains("pid"), "{err}");
    assert!(
        !err.contains('\x1b') && err.len() < 600,
        "printed escaped and bounded: {err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    // Deleting the lock file does not let a second writer in: the lock is on the folder.
    std::fs::remove_file(out.join(".lrp.lock")).unwrap();
    let (code, _, err) = run_in(&root(), &mlp_batch(out.to_str().unwrap(), "64", &[]));
    assert_eq!(code, Some(75), "{err}");
    drop(held);
    let (code, _, err) = run_in(&root(), &mlp_batch(out.to_str().unwrap(), "64", &[]));
    assert_eq!(code, Some(0), "{err}");
}

// ---- 3. .npy header lengths ----

/// An .npy whose header length field says `len` (version 2 or 3 has 4 bytes for it).
fn npy_with_header_len(version: u8, len: u32) -> Vec<u8> {
    let mut v = b"\x93NUMPY".to_vec();
    v.extend_from_slice(&[version, 0]);
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(b"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 784), }\n");
    v
}

#[test]
fn npy_header_lengths_are_checked_before_any_allocation_under_a_4_gib_limit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mnist = abs("data/mnist");
    let shard = d.join("shard");
    lrp_ok(&[
        "batch",
        "--model",
        "mlp",
        "--data",
        &abs("data/mnist"),
        "--rule",
        "epsilon",
        "--limit",
        "8",
        "--shard",
        "0/1",
        "--out",
        shard.to_str().unwrap(),
    ]);
    for version in [2u8, 3] {
        for len in [u32::MAX, 0x7fff_0000] {
            std::fs::write(d.join("x.npy"), npy_with_header_len(version, len)).unwrap();
            std::fs::write(d.join("t.npy"), npy_with_header_len(version, len)).unwrap();
            let runs: Vec<Vec<&str>> = vec![
                vec![
                    "explain", "--model", "mlp", "--input", "x.npy", "--rule", "epsilon", "--out", "r.npy",
                ],
                vec!["predict", "--model", "mlp", "--input", "x.npy"],
                vec![
                    "batch", "--model", "mlp", "--input", "x.npy", "--rule", "epsilon", "--out", "b",
                ],
                vec![
                    "explain",
                    "--model",
                    "mlp",
                    "--data",
                    &mnist,
                    "--index",
                    "0",
                    "--targets",
                    "t.npy",
                    "--rule",
                    "epsilon",
                    "--out",
                    "r.npy",
                ],
            ];
            for args in runs {
                let (code, _, err) = run_limited(d, 4, &args);
                assert_eq!(code, Some(1), "v{version} {len:#x} {args:?}: {err}");
                assert!(err.contains("header") || err.contains("not an .npy"), "{args:?}: {err}");
                assert!(!d.join("r.npy").exists() && !d.join("b").exists());
            }
        }
    }
    // A merge part with such a header: refused by name, the merged folder not completed.
    let part = shard.join("rule0-epsilon.npy");
    std::fs::write(&part, npy_with_header_len(2, u32::MAX)).unwrap();
    let (code, _, err) = run_limited(d, 4, &["batch", "merge", shard.to_str().unwrap(), "--out", "m"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("rule0-epsilon.npy"), "{err}");
}

// ---- 4. an input changed under a running batch ----

/// Starts a slow batch (integrated gradients on the CNN, one thread, chunks of 8) on `input` into `out`.
fn slow_batch(dir: &Path, input: &str, out: &str) -> std::process::Child {
    Command::new(lrp_bin())
        .args([
            "batch",
            "--model",
            "cnn",
            "--input",
            input,
            "--rule",
            "integrated-gradients(512)",
            "--threads",
            "1",
            "--chunk",
            "8",
            "--out",
            out,
        ])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the run in `out` has finished its first chunk.
fn wait_for_first_chunk(out: &Path) {
    let start = Instant::now();
    while !out.join("chunks/000000.done").exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "no chunk finished");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn inputs_npy(dir: &Path, n: usize) -> PathBuf {
    let p = dir.join("x.npy");
    let x =
        ndarray::Array4::<f32>::from_shape_fn((n, 1, 28, 28), |(i, _, y, x)| ((i * 7 + y * 3 + x) % 17) as f32 / 17.0);
    ndarray_npy::write_npy(&p, &x).unwrap();
    p
}

#[test]
fn an_input_rewritten_or_truncated_under_a_running_batch_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let input = inputs_npy(dir.path(), 200);
    // Rewritten in place (same size, other values).
    let child = slow_batch(dir.path(), "x.npy", "a");
    wait_for_first_chunk(&dir.path().join("a"));
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new().write(true).open(&input).unwrap();
        f.seek(SeekFrom::Start(2000)).unwrap();
        f.write_all(&[0x40; 4000]).unwrap();
    }
    let out = wait_or_fail(child, 120, "the batch");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("x.npy") && err.contains("changed while lrp was reading it"),
        "{err}"
    );
    let manifest = std::fs::read_to_string(dir.path().join("a/manifest.json")).unwrap();
    assert!(manifest.contains("\"running\""), "not marked complete");
    // Truncated: an error, not SIGBUS.
    let input = inputs_npy(dir.path(), 200);
    let child = slow_batch(dir.path(), "x.npy", "b");
    wait_for_first_chunk(&dir.path().join("b"));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&input)
        .unwrap()
        .set_len(5000)
        .unwrap();
    let out = wait_or_fail(child, 120, "the batch");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a clean exit, no signal: {err}");
    assert!(err.contains("changed while lrp was reading it"), "{err}");
}

// ---- 5. merge trusts part files ----

fn two_shards(dir: &Path) -> (PathBuf, PathBuf) {
    let mut v = Vec::new();
    for i in 0..2 {
        let out = dir.join(format!("s{i}"));
        lrp_ok(&mlp_batch(out.to_str().unwrap(), "40", &["--shard", &format!("{i}/2")]));
        v.push(out);
    }
    (v[0].clone(), v[1].clone())
}

#[test]
fn a_merge_refuses_changed_linked_and_special_part_files() {
    let dir = tempfile::tempdir().unwrap();
    let (s0, s1) = two_shards(dir.path());
    let merge = |name: &str| {
        let out = dir.path().join(name);
        let (code, _, err) = run_in(
            &root(),
            &[
                "batch",
                "merge",
                s0.to_str().unwrap(),
                s1.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        (code, err, out)
    };
    let rule = s1.join("rule0-epsilon.npy");
    let good = std::fs::read(&rule).unwrap();
    // Four bytes changed, same size (NaN rows).
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&rule, &bad).unwrap();
    let (code, err, out) = merge("m1");
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("rule0-epsilon.npy") && err.contains("digest differs"),
        "{err}"
    );
    assert!(!out.join("rule0-epsilon.npy").exists());
    // A symbolic link to the other shard's file.
    std::fs::remove_file(&rule).unwrap();
    std::os::unix::fs::symlink(s0.join("rule0-epsilon.npy"), &rule).unwrap();
    let (code, err, _) = merge("m2");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
    // A FIFO: refused at once, no hang.
    std::fs::remove_file(&rule).unwrap();
    mkfifo(&rule);
    let child = Command::new(lrp_bin())
        .args([
            "batch",
            "merge",
            s0.to_str().unwrap(),
            s1.to_str().unwrap(),
            "--out",
            dir.path().join("m3").to_str().unwrap(),
        ])
        .current_dir(root())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_or_fail(child, 20, "merge with a FIFO part");
    assert_eq!(out.status.code(), Some(1));
    // The real file back: the merge goes through.
    std::fs::remove_file(&rule).unwrap();
    std::fs::write(&rule, &good).unwrap();
    let (code, err, _) = merge("m4");
    assert_eq!(code, Some(0), "{err}");
}

// ---- 6. --resume and a symlinked chunks folder; 12. planted markers ----

fn interrupted_run(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new(lrp_bin())
        .args(mlp_batch(
            out.to_str().unwrap(),
            "300",
            &["--chunk", "50", "--threads", "1"],
        ))
        .current_dir(root())
        .env("LRP_FAULT_AT", "mid-chunk")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the run is killed mid-chunk");
    assert!(out.join("chunks").is_dir());
    out
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the fault-injection feature (the test command has it)"
)]
fn resume_refuses_a_symlinked_chunks_folder_and_redoes_planted_markers() {
    let dir = tempfile::tempdir().unwrap();
    let out = interrupted_run(dir.path(), "a");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("keep.txt"), b"mine").unwrap();
    std::fs::remove_dir_all(out.join("chunks")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("chunks")).unwrap();
    let args = mlp_batch(
        out.to_str().unwrap(),
        "300",
        &["--chunk", "50", "--threads", "1", "--resume"],
    );
    let (code, _, err) = run_in(&root(), &args);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("chunks") && err.contains("not a folder"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&elsewhere)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("keep.txt")],
        "nothing written through the link"
    );
    // Markers planted for every chunk of an interrupted run (empty, or holding a wrong digest) are not trusted:
    // the resumed run equals a clean one (not 300 zero rows).
    let out = interrupted_run(dir.path(), "b");
    for c in 0..6 {
        std::fs::write(
            out.join(format!("chunks/{c:06}.done")),
            if c % 2 == 0 { "" } else { "0123" },
        )
        .unwrap();
    }
    let mut resume = args.to_vec();
    let out_s = out.to_str().unwrap().to_string();
    *resume.last_mut().unwrap() = &out_s;
    lrp_ok(&resume);
    let clean = dir.path().join("clean");
    let mut fresh: Vec<&str> = args.iter().copied().filter(|a| *a != "--resume").collect();
    let clean_s = clean.to_str().unwrap().to_string();
    *fresh.last_mut().unwrap() = &clean_s;
    lrp_ok(&fresh);
    assert_eq!(batch_results(&out), batch_results(&clean));
}

// ---- 7. memory per block ----

/// An ONNX model whose one value is just under lrp's per-sample limit: `[1, 4, 4]` padded to `[1, 8190, 8190]`,
/// max-pooled 2×2, then 1024×1024 (to 3×3), a dense layer to 2 classes.
fn huge_value_model() -> Vec<u8> {
    use common::onnx::ints_attr;
    let w: Vec<f32> = (0..18).map(|i| i as f32 / 9.0 - 1.0).collect();
    model(
        vec![
            op("Pad", &["x", "pads"], &["p"], vec![]),
            op(
                "MaxPool",
                &["p"],
                &["m"],
                vec![ints_attr("kernel_shape", &[2, 2]), ints_attr("strides", &[2, 2])],
            ),
            op(
                "MaxPool",
                &["m"],
                &["g"],
                vec![
                    ints_attr("kernel_shape", &[1024, 1024]),
                    ints_attr("strides", &[1024, 1024]),
                ],
            ),
            op("Flatten", &["g"], &["f"], vec![]),
            op("Gemm", &["f", "w", "b"], &["y"], vec![int_attr("transB", 1)]),
        ],
        vec![
            i64s("pads", &[0, 0, 0, 0, 0, 0, 8186, 8186]),
            f32s("w", &[2, 9], &w),
            f32s("b", &[2], &[0.5, 0.25]),
        ],
        17,
        &[None, Some(1), Some(4), Some(4)],
        ("y", &[None, Some(2)]),
    )
}

#[test]
fn a_network_with_a_huge_value_runs_a_sample_at_a_time_within_4_gib() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("huge.onnx"), huge_value_model()).unwrap();
    let x = ndarray::Array4::<f32>::from_shape_fn((20, 1, 4, 4), |(i, _, y, x)| (i + y * 4 + x) as f32 / 40.0);
    ndarray_npy::write_npy(dir.path().join("x.npy"), &x).unwrap();
    let (code, _, err) = run_limited(
        dir.path(),
        4,
        &[
            "explain",
            "--model",
            "huge.onnx",
            "--input",
            "x.npy",
            "--rule",
            "epsilon",
            "--out",
            "r.npy",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = run_limited(
        dir.path(),
        4,
        &[
            "batch",
            "--model",
            "huge.onnx",
            "--input",
            "x.npy",
            "--rule",
            "epsilon",
            "--threads",
            "2",
            "--out",
            "b",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let r: ndarray::ArrayD<f32> = ndarray_npy::read_npy(dir.path().join("r.npy")).unwrap();
    let b: ndarray::ArrayD<f32> = ndarray_npy::read_npy(dir.path().join("b/rule0-epsilon.npy")).unwrap();
    assert_eq!(r, b);
}

// ---- 8. FIFOs as inputs ----

#[test]
fn fifos_given_as_inputs_are_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("t.npy");
    mkfifo(&fifo);
    for args in [
        vec![
            "explain",
            "--model",
            "cnn",
            "--index",
            "0",
            "--targets",
            "t.npy",
            "--rule",
            "epsilon",
        ],
        vec!["explain", "--model", "cnn", "--input", "t.npy", "--rule", "epsilon"],
        vec!["info", "--model", "t.npy"],
    ] {
        let child = Command::new(lrp_bin())
            .args(&args)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = wait_or_fail(child, 20, &format!("{args:?}"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("not a regular file"), "{args:?}: {err}");
    }
    // An ONNX model whose external data is a FIFO.
    let model = std::fs::read(
        root()
            .join("tests/fixtures/oracle/graph")
            .read_dir()
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with("-dynamo.onnx"))
            .unwrap(),
    )
    .unwrap();
    let data_name = {
        use lrp_onnx::proto::ModelProto;
        use prost::Message;
        let m = ModelProto::decode(model.as_slice()).unwrap();
        let t = m
            .graph
            .unwrap()
            .initializer
            .into_iter()
            .find(|t| t.data_location == 1)
            .unwrap();
        t.external_data
            .iter()
            .find(|e| e.key == "location")
            .unwrap()
            .value
            .clone()
    };
    std::fs::write(dir.path().join("m.onnx"), &model).unwrap();
    mkfifo(&dir.path().join(&data_name));
    let child = Command::new(lrp_bin())
        .args(["info", "--model", "m.onnx"])
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let out = wait_or_fail(child, 20, "external data FIFO");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not a regular file"), "{err}");
}

// ---- 9. the sample a non-finite value is in ----

#[test]
fn a_non_finite_result_names_its_own_sample() {
    let dir = tempfile::tempdir().unwrap();
    // Sample 300 of 400 (and 550 of 600) overflows the CNN; the rest is fine.
    let mut x =
        ndarray::Array4::<f32>::from_shape_fn((600, 1, 28, 28), |(i, _, y, x)| ((i + y + x) % 10) as f32 / 10.0);
    for i in [300usize, 550] {
        for y in 10..20 {
            for xx in 10..20 {
                x[[i, 0, y, xx]] = 3e38;
            }
        }
    }
    ndarray_npy::write_npy(dir.path().join("x.npy"), &x).unwrap();
    let small = x.slice(ndarray::s![..400, .., .., ..]).to_owned();
    ndarray_npy::write_npy(dir.path().join("s.npy"), &small).unwrap();
    x.slice_mut(ndarray::s![300, .., .., ..]).fill(0.5);
    ndarray_npy::write_npy(dir.path().join("x.npy"), &x).unwrap();
    for rule in ["epsilon", "gradient-x-input", "integrated-gradients(4)"] {
        let (code, _, err) = run_in(
            dir.path(),
            &[
                "explain", "--model", "cnn", "--input", "s.npy", "--rule", rule, "--out", "r.npy",
            ],
        );
        assert_eq!(code, Some(1), "{rule}: {err}");
        assert!(err.contains("sample 300 "), "{rule}: {err}");
    }
    let (code, _, err) = run_in(
        dir.path(),
        &[
            "batch", "--model", "cnn", "--input", "x.npy", "--rule", "epsilon", "--out", "b",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("sample 550 "), "{err}");
}

// ---- 10. a folder moved during the run ----

#[test]
fn a_folder_moved_during_the_run_stops_it_without_a_stray_folder() {
    let dir = tempfile::tempdir().unwrap();
    inputs_npy(dir.path(), 200);
    let child = slow_batch(dir.path(), "x.npy", "a");
    wait_for_first_chunk(&dir.path().join("a"));
    std::fs::rename(dir.path().join("a"), dir.path().join("moved")).unwrap();
    let out = wait_or_fail(child, 120, "the batch");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("moved"), "{err}");
    assert!(!dir.path().join("a").exists(), "no stray folder at the old path");
    // Resumed where it is now, it completes.
    lrp_ok(&[
        "batch",
        "--model",
        "cnn",
        "--input",
        dir.path().join("x.npy").to_str().unwrap(),
        "--rule",
        "integrated-gradients(512)",
        "--threads",
        "1",
        "--chunk",
        "8",
        "--limit",
        "200",
        "--resume",
        "--out",
        dir.path().join("moved").to_str().unwrap(),
    ]);
}

// ---- 11. unbounded attribution settings ----

#[test]
fn attribution_steps_and_noise_are_bounded_and_say_so() {
    for (spec, says) in [
        ("integrated-gradients(100000000)", "more than the 10000"),
        ("smoothgrad(1000000000,0.1)", "more than the 10000"),
        ("smoothgrad(4,1e38)", "sigma must be between 0 and"),
    ] {
        let err = lrp_err(&["explain", "--model", "cnn", "--index", "0", "--rule", spec]);
        assert!(err.contains(spec) && err.contains(says), "{spec}: {err}");
    }
}

// ---- 12. low: misleading messages, ONNX files onnxruntime refuses ----

#[test]
fn messages_name_the_real_problem() {
    let dir = tempfile::tempdir().unwrap();
    // A truncated float64 .npy: called truncated, not blamed on its type.
    let x = ndarray::Array4::<f64>::zeros((3, 1, 28, 28));
    ndarray_npy::write_npy(dir.path().join("f64.npy"), &x).unwrap();
    let bytes = std::fs::read(dir.path().join("f64.npy")).unwrap();
    std::fs::write(dir.path().join("f64.npy"), &bytes[..bytes.len() - 100]).unwrap();
    let (code, _, err) = run_in(dir.path(), &["predict", "--model", "cnn", "--input", "f64.npy"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("truncated"), "{err}");
    // A folder named like a built-in model does not hide it.
    std::fs::create_dir(dir.path().join("lstm")).unwrap();
    let (code, out, err) = run_in(dir.path(), &["info", "--model", "lstm"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("lstm"), "{out}");
    // A missing model names the built-in ones; a missing dataset is said before any table is printed.
    let (_, _, err) = run_in(dir.path(), &["info", "--model", "nope"]);
    assert!(err.contains("built-in models are cnn, mlp, lstm, resnet, vit"), "{err}");
    let (code, out, err) = run_in(dir.path(), &["info", "--model", "cnn", "--data", "/nope"]);
    assert_eq!(code, Some(1));
    assert!(out.is_empty() && err.contains("no such folder"), "{out}{err}");
    // Relevance at a hidden layer from a gradient method: said plainly (no "target:").
    let (_, _, err) = run_in(
        dir.path(),
        &[
            "explain", "--model", "cnn", "--index", "0", "--rule", "gradient", "--layer", "#1", "--out", "h.npy",
        ],
    );
    assert!(err.contains("needs an LRP rule") && !err.contains("target:"), "{err}");
    // The LSTM's sums say why they need not equal the logit.
    let (_, out, _) = run_in(
        dir.path(),
        &[
            "explain", "--model", "lstm", "--index", "0", "--rule", "epsilon", "--print", "--color", "never",
        ],
    );
    assert!(out.contains("an LSTM, explained with Arras et al.'s rule"), "{out}");
}

/// Bytes of a small ONNX graph (`x [N, 4]` → `nodes` → `y`) with these initializers.
#[test]
fn onnx_files_that_onnxruntime_refuses_are_refused() {
    let w = f32s("W", &[2, 4], &[1.0, 2.0, 3.0, 4.0, -1.0, 0.0, 1.0, 2.0]);
    let b = f32s("b", &[2], &[0.5, -0.5]);
    let gemm = || op("Gemm", &["x", "W", "b"], &["y"], vec![int_attr("transB", 1)]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "duplicate initializer",
            model(
                vec![gemm()],
                vec![w.clone(), b.clone(), f32s("W", &[2, 4], &[0.0; 8])],
                17,
                &[None, Some(4)],
                ("y", &[None, None]),
            ),
            "'W': is given twice",
        ),
        (
            // 2^62 + 1 values of 4 bytes need 2^64 + 4 bytes, which wraps to the 4 given (this panicked).
            "a weight whose byte count wraps",
            model(
                vec![gemm()],
                vec![f32s("W", &[(1 << 62) + 1], &[1.0]), b.clone()],
                17,
                &[None, Some(4)],
                ("y", &[None, None]),
            ),
            "'W': has 4 bytes of data, its dimensions [4611686018427387905] need 18446744073709551620",
        ),
        (
            "two nodes write one value",
            model(
                vec![
                    op("Relu", &["x"], &["h"], vec![]),
                    op("Sigmoid", &["x"], &["h"], vec![]),
                    op("Gemm", &["h", "W", "b"], &["y"], vec![int_attr("transB", 1)]),
                ],
                vec![w.clone(), b.clone()],
                17,
                &[None, Some(4)],
                ("y", &[None, None]),
            ),
            "writes 'h', which another node",
        ),
        (
            "a Reshape with two −1",
            model(
                vec![
                    op("Reshape", &["x", "shape"], &["r"], vec![]),
                    op("Relu", &["r"], &["y"], vec![]),
                ],
                vec![i64s("shape", &[-1, -1])],
                17,
                &[None, Some(4)],
                ("y", &[None, None]),
            ),
            "more than one −1",
        ),
        (
            "a Split into three equal parts of 4",
            model(
                vec![
                    op("Split", &["x"], &["a", "c", "d"], vec![int_attr("axis", 1)]),
                    op("Relu", &["a"], &["y"], vec![]),
                ],
                vec![],
                13,
                &[None, Some(4)],
                ("y", &[None, None]),
            ),
            "into 3 equal parts without sizes",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (what, bytes, says) in cases {
        let p = dir.path().join("m.onnx");
        std::fs::write(&p, bytes).unwrap();
        let (code, _, err) = run_in(dir.path(), &["info", "--model", "m.onnx"]);
        assert_eq!(code, Some(1), "{what}: {err}");
        assert!(err.contains(says), "{what}: {err}");
    }
    // An LSTM whose zero initial state has the wrong shape (the fixture's LSTM with initial_h of [1, 1, 7]).
    use lrp_onnx::proto::ModelProto;
    use prost::Message;
    let mut m = ModelProto::decode(
        std::fs::read(root().join("tests/fixtures/oracle/mnist-rows-lstm.onnx"))
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    let g = m.graph.as_mut().unwrap();
    let lstm = g.node.iter_mut().find(|n| n.op_type == "LSTM").unwrap();
    while lstm.input.len() < 6 {
        lstm.input.push(String::new());
    }
    lstm.input[5] = "h0".into();
    g.initializer.push(f32s("h0", &[1, 1, 7], &[0.0; 7]));
    std::fs::write(dir.path().join("l.onnx"), m.encode_to_vec()).unwrap();
    let (code, _, err) = run_in(dir.path(), &["info", "--model", "l.onnx"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("initial_h") && err.contains("[1, 1, 7]"), "{err}");
}

// ---- on a cluster ----

#[test]
fn runs_are_identified_by_content_not_by_path() {
    let dir = tempfile::tempdir().unwrap();
    // The shard of one job run with the built-in `mlp` and the input in one place, the other with copies of the
    // model file and the data at other paths (as a job copies them to its scratch folder): they merge.
    let copy = dir.path().join("scratch");
    std::fs::create_dir_all(copy.join("mnist")).unwrap();
    for f in std::fs::read_dir(root().join("data/mnist")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, copy.join("mnist").join(f.file_name().unwrap())).unwrap();
    }
    std::fs::copy(root().join("data/models/mnist-mlp.lrpm"), copy.join("m.lrpm")).unwrap();
    let s0 = dir.path().join("s0");
    let s1 = dir.path().join("s1");
    lrp_ok(&mlp_batch(s0.to_str().unwrap(), "40", &["--shard", "0/2"]));
    lrp_ok(&[
        "batch",
        "--model",
        copy.join("m.lrpm").to_str().unwrap(),
        "--data",
        copy.join("mnist").to_str().unwrap(),
        "--rule",
        "epsilon",
        "--limit",
        "40",
        "--shard",
        "1/2",
        "--out",
        s1.to_str().unwrap(),
    ]);
    let merged = dir.path().join("m");
    let out = lrp_ok(&[
        "batch",
        "merge",
        s0.to_str().unwrap(),
        s1.to_str().unwrap(),
        "--out",
        merged.to_str().unwrap(),
    ]);
    assert!(out.contains("merged 2 shards"), "{out}");
    // A requeued task resumes its folder from another path of the same files.
    let again = lrp_ok(&[
        "batch",
        "--model",
        copy.join("m.lrpm").to_str().unwrap(),
        "--data",
        "data/mnist",
        "--rule",
        "epsilon",
        "--limit",
        "40",
        "--shard",
        "0/2",
        "--resume",
        "--out",
        s0.to_str().unwrap(),
    ]);
    assert!(again.contains("already holds this complete run"), "{again}");
    // Content that differs is still another run, and the message does not advise removing finished work.
    let err = lrp_err(&[
        "batch",
        "--model",
        "cnn",
        "--data",
        "data/mnist",
        "--rule",
        "epsilon",
        "--limit",
        "40",
        "--shard",
        "0/2",
        "--resume",
        "--out",
        s0.to_str().unwrap(),
    ]);
    assert!(
        err.contains("different run") && err.contains("model") && !err.contains("remove"),
        "{err}"
    );
}

#[test]
fn merge_messages_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let shard = |i: usize, n: usize| {
        let out = dir.path().join(format!("s{i}of{n}"));
        lrp_ok(&mlp_batch(
            out.to_str().unwrap(),
            "40",
            &["--shard", &format!("{i}/{n}")],
        ));
        out
    };
    let (a0, a2) = (shard(0, 3), shard(2, 3));
    let q1 = shard(1, 4);
    let m = dir.path().join("m");
    let err = lrp_err(&[
        "batch",
        "merge",
        a0.to_str().unwrap(),
        a2.to_str().unwrap(),
        "--out",
        m.to_str().unwrap(),
    ]);
    assert!(err.contains("shard 1/3 is missing") && err.contains("2 of 3"), "{err}");
    let err = lrp_err(&[
        "batch",
        "merge",
        a0.to_str().unwrap(),
        q1.to_str().unwrap(),
        a2.to_str().unwrap(),
        "--out",
        m.to_str().unwrap(),
    ]);
    assert!(
        err.contains("shard 1/4") && err.contains("two different splits"),
        "{err}"
    );
    // A shard still being written (its lock held): said so, not "finish it with --resume".
    let running = dir.path().join("running");
    let manifest = std::fs::read_to_string(a0.join("manifest.json")).unwrap();
    std::fs::create_dir(&running).unwrap();
    std::fs::write(
        running.join("manifest.json"),
        manifest.replace("\"complete\"", "\"running\""),
    )
    .unwrap();
    let held = std::fs::File::open(&running).unwrap();
    held.try_lock().unwrap();
    let err = lrp_err(&[
        "batch",
        "merge",
        running.to_str().unwrap(),
        a0.to_str().unwrap(),
        a2.to_str().unwrap(),
        "--out",
        m.to_str().unwrap(),
    ]);
    assert!(
        err.contains("still being written by another lrp") && !err.contains("--resume"),
        "{err}"
    );
    drop(held);
    let err = lrp_err(&[
        "batch",
        "merge",
        running.to_str().unwrap(),
        a0.to_str().unwrap(),
        a2.to_str().unwrap(),
        "--out",
        m.to_str().unwrap(),
    ]);
    assert!(err.contains("--resume"), "{err}");
}

#[test]
fn a_merged_manifests_timings_add_the_shards_up() {
    let dir = tempfile::tempdir().unwrap();
    let (s0, s1) = two_shards(dir.path());
    let m = dir.path().join("m");
    lrp_ok(&[
        "batch",
        "merge",
        s0.to_str().unwrap(),
        s1.to_str().unwrap(),
        "--out",
        m.to_str().unwrap(),
    ]);
    let read = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("manifest.json")).unwrap()).unwrap()
    };
    let (t0, t1, tm) = (
        read(&s0)["timings"].clone(),
        read(&s1)["timings"].clone(),
        read(&m)["timings"].clone(),
    );
    let secs = |t: &serde_json::Value| t["seconds"].as_f64().unwrap();
    assert!((secs(&tm) - secs(&t0) - secs(&t1)).abs() < 1e-9);
    assert_eq!(tm["samples"], 40);
    let rate = tm["explanations_per_second"].as_f64().unwrap();
    assert!(
        (rate - 40.0 / secs(&tm)).abs() < 1e-6 * rate,
        "rate {rate} is the samples over the seconds"
    );
    // The merged folder records its files' digests too (it can itself be checked).
    assert_eq!(read(&m)["digests"].as_object().unwrap().len(), 3);
}

// ---- what a new user met ----

#[test]
fn output_names_that_say_another_format_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["train", "--arch", "mlp", "--data", "data/mnist", "--out", "my.onnx"],
            "name it .lrpm",
        ),
        (
            vec![
                "explain", "--model", "cnn", "--index", "0", "--rule", "epsilon", "--out", "rel.onnx",
            ],
            "rel.npy",
        ),
        (
            vec![
                "explain", "--model", "cnn", "--index", "0", "--rule", "epsilon", "--png", "p.jpg",
            ],
            "p.png",
        ),
        (
            vec![
                "predict",
                "--model",
                "cnn",
                "--data",
                "data/mnist",
                "--limit",
                "2",
                "--out",
                "l.txt",
            ],
            "l.npy",
        ),
        (
            vec![
                "explain", "--model", "cnn", "--index", "0", "--rule", "epsilon", "--png", "p.png", "--color", "always",
            ],
            "--color sets the colours of --print",
        ),
    ];
    for (args, says) in cases {
        let mut args = args;
        let out_arg = args.last().copied().unwrap().to_string();
        let in_dir: Vec<String> = args
            .iter()
            .map(|a| {
                if *a == out_arg && (a.contains('.')) {
                    dir.path().join(a).display().to_string()
                } else {
                    a.to_string()
                }
            })
            .collect();
        args = in_dir.iter().map(String::as_str).collect();
        let (code, _, err) = run_in(&root(), &args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written");
}
