//! End-to-end tests of `lrp batch`: determinism across threads, kill -9 and resume, refusal of foreign folders,
//! shard + merge, and agreement with `lrp explain`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ndarray::ArrayD;

const MODEL: &str = "data/models/mnist-cnn.lrpm";

/// `lrp batch` of the shipped CNN over `data/mnist` under ε and `epsilon-gamma-box` into `out`, then `extra`.
fn batch_args<'a>(out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "batch",
        "--model",
        MODEL,
        "--data",
        "data/mnist",
        "--rule",
        "epsilon",
        "--rule",
        "epsilon-gamma-box",
    ];
    args.extend_from_slice(&["--out", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    args
}

fn batch(out: &Path, extra: &[&str]) -> String {
    lrp_ok(&batch_args(out, extra))
}

/// The result files of a batch folder: logits, targets and two rules.
fn results(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let files = batch_results(dir);
    assert_eq!(files.len(), 4, "logits, targets and two rules in {}", dir.display());
    files
}

#[test]
fn one_and_two_threads_give_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("t1"), dir.path().join("t2"));
    let out = batch(&a, &["--limit", "300", "--chunk", "64", "--threads", "1"]);
    assert!(out.contains("explained 300 samples × 2 rules"), "{out}");
    batch(&b, &["--limit", "300", "--chunk", "64", "--threads", "2"]);
    assert_eq!(results(&a), results(&b));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "complete");
    assert_eq!(manifest["rules"][1]["spec"], "epsilon-gamma-box");
    assert_eq!(manifest["run"]["count"], 300);
    let r: ArrayD<f32> = ndarray_npy::read_npy(a.join(manifest["rules"][0]["file"].as_str().unwrap())).unwrap();
    assert_eq!(r.shape(), &[300, 1, 28, 28]);
    assert!(!a.join("chunks").exists(), "chunk files are removed once assembled");
}

#[test]
fn a_run_killed_midway_resumes_to_the_same_files() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, killed) = (dir.path().join("whole"), dir.path().join("killed"));
    let args = |out: &Path| {
        vec![
            "batch".to_string(),
            "--model".into(),
            MODEL.into(),
            "--data".into(),
            "data/mnist".into(),
            "--rule".into(),
            "epsilon".into(),
            "--rule".into(),
            "integrated-gradients(16)".into(),
            "--limit".into(),
            "1200".into(),
            "--chunk".into(),
            "50".into(),
            "--threads".into(),
            "2".into(),
            "--out".into(),
            out.to_str().unwrap().to_string(),
        ]
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_lrp"))
        .args(args(&killed))
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some chunks have landed, then kill -9.
    let started = Instant::now();
    let landed = |d: &Path| {
        std::fs::read_dir(d.join("chunks"))
            .map(|r| {
                r.filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "done"))
                    .count()
            })
            .unwrap_or(0)
    };
    while landed(&killed) < 3 {
        assert!(started.elapsed() < Duration::from_secs(120), "no chunk landed");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let manifest = std::fs::read_to_string(killed.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"running\""), "{manifest}");
    assert!(
        !killed.join("rule0-epsilon.npy").exists(),
        "no final file before the run completes"
    );

    // Without --resume the folder is not touched.
    let mut again: Vec<&str> = Vec::new();
    let a = args(&killed);
    again.extend(a.iter().map(String::as_str));
    let err = lrp_err(&again);
    assert!(err.contains("--resume"), "{err}");

    again.push("--resume");
    let out = lrp_ok(&again);
    assert!(out.contains("resumed"), "{out}");
    let w = args(&whole);
    lrp_ok(&w.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(results(&killed), results(&whole));
    // Resuming a finished run changes nothing.
    let before = std::fs::read(killed.join("manifest.json")).unwrap();
    let out = lrp_ok(&again);
    assert!(out.contains("nothing to do"), "{out}");
    assert_eq!(std::fs::read(killed.join("manifest.json")).unwrap(), before);
}

#[test]
fn a_foreign_or_different_output_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("thesis.tex"), b"precious").unwrap();
    let err = lrp_err(&[
        "batch",
        "--model",
        MODEL,
        "--data",
        "data/mnist",
        "--rule",
        "epsilon",
        "--limit",
        "10",
        "--out",
        foreign.to_str().unwrap(),
    ]);
    assert!(err.contains("not a folder lrp wrote"), "{err}");
    assert_eq!(std::fs::read(foreign.join("thesis.tex")).unwrap(), b"precious");

    let run = dir.path().join("run");
    batch(&run, &["--limit", "20"]);
    let err = lrp_err(&[
        "batch",
        "--model",
        MODEL,
        "--data",
        "data/mnist",
        "--rule",
        "zplus",
        "--limit",
        "20",
        "--out",
        run.to_str().unwrap(),
        "--resume",
    ]);
    assert!(err.contains("different run") && err.contains("rules"), "{err}");
    let err = lrp_err(&[
        "batch",
        "--model",
        "data/models/mnist-mlp.lrpm",
        "--data",
        "data/mnist",
        "--rule",
        "epsilon",
        "--rule",
        "epsilon-gamma-box",
        "--limit",
        "20",
        "--out",
        run.to_str().unwrap(),
    ]);
    assert!(err.contains("different run") && err.contains("model"), "{err}");

    // A folder an earlier version wrote (format 1, other digests) is named as such, not taken for this run, and
    // left as it was.
    let manifest = run.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("\"lrp-batch/3\""), "{text}");
    std::fs::write(&manifest, text.replace("\"lrp-batch/3\"", "\"lrp-batch/1\"")).unwrap();
    let before = batch_results(&run);
    let err = lrp_err(&batch_args(&run, &["--limit", "20", "--resume"]));
    assert!(err.contains("'lrp-batch/1'") && err.contains("new folder"), "{err}");
    assert_eq!(batch_results(&run), before);
}

#[test]
fn shards_merged_equal_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one");
    batch(&one, &["--limit", "250", "--chunk", "40"]);
    let mut shards = Vec::new();
    for i in [2, 0, 1] {
        let d = dir.path().join(format!("s{i}"));
        batch(&d, &["--limit", "250", "--chunk", "40", "--shard", &format!("{i}/3")]);
        shards.push(d);
    }
    let merged = dir.path().join("merged");
    let mut args = vec!["batch", "merge"];
    args.extend(shards.iter().map(|p| p.to_str().unwrap()));
    args.extend(["--out", merged.to_str().unwrap()]);
    let out = lrp_ok(&args);
    assert!(out.contains("merged 3 shards: 250 samples"), "{out}");
    assert_eq!(results(&merged), results(&one));
    // A missing shard is named.
    let err = lrp_err(&[
        "batch",
        "merge",
        shards[0].to_str().unwrap(),
        shards[1].to_str().unwrap(),
        "--out",
        dir.path().join("m2").to_str().unwrap(),
    ]);
    assert!(err.contains("shard 1/3 is missing"), "{err}");
    // A merge that fails half-way (a shard's rule file is gone) can be retried once the shard is remade.
    let retry = dir.path().join("retry");
    let rule = results(&shards[1])
        .into_iter()
        .find(|(n, _)| n.starts_with("rule1"))
        .unwrap()
        .0;
    let kept = std::fs::read(shards[1].join(&rule)).unwrap();
    std::fs::remove_file(shards[1].join(&rule)).unwrap();
    let mut args = vec!["batch", "merge"];
    args.extend(shards.iter().map(|p| p.to_str().unwrap()));
    args.extend(["--out", retry.to_str().unwrap()]);
    lrp_err(&args);
    std::fs::write(shards[1].join(&rule), kept).unwrap();
    lrp_ok(&args);
    assert_eq!(results(&retry), results(&one));
    // The same run with the model spelled another way is the same run for --resume.
    let other_spelling = format!("./{MODEL}");
    let out = lrp_ok(&[
        "batch",
        "--model",
        &other_spelling,
        "--data",
        "./data/mnist",
        "--rule",
        "epsilon",
        "--rule",
        "epsilon-gamma-box",
        "--limit",
        "250",
        "--chunk",
        "40",
        "--resume",
        "--out",
        one.to_str().unwrap(),
    ]);
    assert!(!out.contains("different"), "{out}");
}

#[test]
fn rows_equal_lrp_explain_on_the_same_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    batch(&run, &["--limit", "40", "--chunk", "16", "--target", "label"]);
    let batch_r: ArrayD<f32> = ndarray_npy::read_npy(run.join("rule1-epsilon-gamma-box.npy")).unwrap();
    for index in [0usize, 17, 39] {
        let out = dir.path().join(format!("e{index}.npy"));
        lrp_ok(&[
            "explain",
            "--model",
            MODEL,
            "--data",
            "data/mnist",
            "--index",
            &index.to_string(),
            "--rule",
            "epsilon-gamma-box",
            "--target",
            "label",
            "--out",
            out.to_str().unwrap(),
        ]);
        let single: ArrayD<f32> = ndarray_npy::read_npy(&out).unwrap();
        let row = batch_r.index_axis(ndarray::Axis(0), index);
        // The kernels do not depend on how many samples share a batch, so the rows are the same bits.
        assert_eq!(row, single.index_axis(ndarray::Axis(0), 0), "row {index}");
    }
}

#[test]
fn a_nan_input_is_named_by_its_sample() {
    let dir = tempfile::tempdir().unwrap();
    let mut x = ndarray::Array4::<f32>::zeros((20, 1, 28, 28));
    x[[13, 0, 2, 3]] = f32::NAN;
    let input = dir.path().join("x.npy");
    ndarray_npy::write_npy(&input, &x).unwrap();
    let out = dir.path().join("run");
    let err = lrp_err(&[
        "batch",
        "--model",
        MODEL,
        "--input",
        input.to_str().unwrap(),
        "--rule",
        "epsilon",
        "--chunk",
        "8",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        err.contains("samples 8..16") && err.contains("input sample 13 holds NaN at element 59"),
        "{err}"
    );
    assert!(
        !out.join("rule0-epsilon.npy").exists(),
        "no result file for a failed run"
    );
}

/// One small run of `lrp batch` into `out` as a child process (not waited for).
fn spawn_batch(out: &Path, rule: &str, resume: bool, fault: Option<&str>) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_lrp"));
    cmd.current_dir(root())
        .args(["batch", "--model", MODEL, "--data", "data/mnist", "--rule", rule])
        .args(["--limit", "300", "--chunk", "64", "--threads", "1", "--out"])
        .arg(out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if resume {
        cmd.arg("--resume");
    }
    match fault {
        Some(f) => cmd.env("LRP_FAULT_AT", f),
        None => cmd.env_remove("LRP_FAULT_AT"),
    };
    cmd.spawn().unwrap()
}

#[test]
fn two_writers_on_one_folder_never_mix_and_the_loser_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // The two rules' results, each alone.
    let mut reference = std::collections::HashMap::new();
    for rule in ["epsilon", "gradient"] {
        let out = dir.path().join(format!("ref-{rule}"));
        assert!(spawn_batch(&out, rule, false, None).wait().unwrap().success());
        reference.insert(rule, batch_results(&out));
    }
    for trial in 0..50 {
        let out = dir.path().join(format!("t{trial}"));
        let resume = trial % 2 == 1;
        let (first, second) = if trial % 4 < 2 {
            ("epsilon", "gradient")
        } else {
            ("gradient", "epsilon")
        };
        let mut a = spawn_batch(&out, first, resume, None);
        std::thread::sleep(std::time::Duration::from_millis((trial % 5) as u64 * 5));
        let b = spawn_batch(&out, second, resume, None);
        let b = b.wait_with_output().unwrap();
        let a_ok = a.wait().unwrap().success();
        let b_ok = b.status.success();
        assert!(
            a_ok ^ b_ok,
            "trial {trial}: exactly one writer wins (a {a_ok}, b {b_ok})"
        );
        if !b_ok {
            // 75 (EX_TEMPFAIL) while the other holds the folder, 1 when it finished first with another run.
            let err = String::from_utf8_lossy(&b.stderr);
            match b.status.code() {
                Some(75) => assert!(err.contains("another lrp"), "trial {trial}: {err}"),
                Some(1) => assert!(
                    err.contains("different run") || err.contains("already holds"),
                    "trial {trial}: {err}"
                ),
                other => panic!("trial {trial}: the loser exits {other:?}: {err}"),
            }
        }
        let winner = if a_ok { first } else { second };
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["rules"][0]["spec"], winner, "trial {trial}");
        assert_eq!(
            batch_results(&out),
            reference[winner],
            "trial {trial}: the folder holds {winner}, unmixed"
        );
    }
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the crash points: --features fault-injection"
)]
fn a_run_killed_at_any_step_resumes_to_the_same_files_and_leaves_no_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    assert!(spawn_batch(&whole, "epsilon", false, None).wait().unwrap().success());
    let want = batch_results(&whole);
    for point in [
        "after-lock",
        "after-manifest",
        "mid-chunk",
        "in-assembly",
        "mid-assembly",
    ] {
        let out = dir.path().join(point);
        let killed = spawn_batch(&out, "epsilon", false, Some(point)).wait().unwrap();
        assert!(!killed.success(), "{point}: the fault point stops the run");
        let resumed = spawn_batch(&out, "epsilon", true, None).wait_with_output().unwrap();
        assert!(
            resumed.status.success(),
            "{point}: {}",
            String::from_utf8_lossy(&resumed.stderr)
        );
        assert_eq!(
            batch_results(&out),
            want,
            "{point}: resumed files equal an uninterrupted run's"
        );
        let leftovers: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp") || n == "chunks")
            .collect();
        assert!(leftovers.is_empty(), "{point}: {leftovers:?}");
    }
    // A complete folder whose rule file was deleted is not complete: --resume makes it again.
    let out = dir.path().join("mid-assembly");
    let rule = batch_results(&out)
        .into_iter()
        .find(|(n, _)| n.starts_with("rule0"))
        .unwrap()
        .0;
    std::fs::remove_file(out.join(&rule)).unwrap();
    assert!(spawn_batch(&out, "epsilon", true, None).wait().unwrap().success());
    assert_eq!(batch_results(&out), want);
}

#[test]
fn merge_writes_only_inside_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.npy");
    std::fs::write(&victim, b"precious").unwrap();
    let mut shards = Vec::new();
    for i in 0..2 {
        let d = dir.path().join(format!("s{i}"));
        batch(&d, &["--limit", "40", "--chunk", "20", "--shard", &format!("{i}/2")]);
        shards.push(d);
    }
    // A shard manifest whose rule file is a path elsewhere.
    let path = shards[1].join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    m["rules"][0]["file"] = serde_json::Value::String(victim.to_str().unwrap().to_string());
    std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
    let out = dir.path().join("merged");
    let err = lrp_err(&[
        "batch",
        "merge",
        shards[0].to_str().unwrap(),
        shards[1].to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("not a plain .npy name"), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "needs the crash points: --features fault-injection"
)]
fn a_damaged_result_file_in_progress_is_made_again_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    assert!(spawn_batch(&whole, "epsilon", false, None).wait().unwrap().success());
    let want = batch_results(&whole);
    let out = dir.path().join("cut");
    // Every chunk's rows written, nothing moved into place yet.
    let killed = spawn_batch(&out, "epsilon", false, Some("in-assembly")).wait().unwrap();
    assert!(!killed.success());
    let partial = out.join("chunks").join("rule0-epsilon.npy");
    let len = std::fs::metadata(&partial).unwrap().len();
    // Cut it (a disk that filled up, a careless hand): its chunks' markers no longer vouch for anything.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&partial)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let resumed = spawn_batch(&out, "epsilon", true, None).wait_with_output().unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(batch_results(&out), want);
    assert!(!out.join("chunks").exists());
}

/// The IDX images are read while the first chunks are explained: a `.gz` whose checksum is damaged still fails
/// the run, naming the file, and the folder is left incomplete (a run ends only once the whole file was checked),
/// with no result file in place.
#[test]
fn a_damaged_dataset_read_during_the_run_fails_it_and_leaves_it_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for name in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(root().join("data/mnist").join(name), data.join(name)).unwrap();
    }
    let images = data.join("t10k-images-idx3-ubyte.gz");
    let mut bytes = std::fs::read(&images).unwrap();
    let n = bytes.len();
    bytes[n - 6] ^= 0x55; // the gzip trailer's CRC-32
    std::fs::write(&images, &bytes).unwrap();
    // The whole split, and its first 100 images only: a damaged file fails a run over part of it too (a flipped
    // bit anywhere may have changed the first images as well; only the checksum at the end tells).
    for (name, extra) in [("all", &[][..]), ("part", &["--limit", "100"][..])] {
        let out = dir.path().join(name);
        let mut args = vec![
            "batch",
            "--model",
            "data/models/mnist-mlp.lrpm",
            "--data",
            data.to_str().unwrap(),
            "--rule",
            "epsilon",
            "--chunk",
            "500",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let err = lrp_err(&args);
        assert!(
            err.contains("t10k-images-idx3-ubyte.gz") && err.contains("cannot read the data"),
            "{err}"
        );
        let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
        assert!(manifest.contains("\"running\""), "{manifest}");
        assert!(!out.join("rule0-epsilon.npy").exists() && !out.join("logits.npy").exists());
    }
}
