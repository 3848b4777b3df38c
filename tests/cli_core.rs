//! End-to-end tests of `lrp train`, `lrp info` and `lrp predict`.

mod common;

use common::*;
use ndarray::{Array2, ArrayD, IxDyn};

#[test]
fn shipped_models_reach_their_accuracy() {
    let out = lrp_ok(&["info", "--model", "data/models/mnist-mlp.lrpm", "--data", "data/mnist"]);
    assert!(out.contains("parameters: "), "{out}");
    let acc = number_after(&out, "test accuracy: ");
    assert!(acc >= 0.98, "MLP test accuracy {acc}");
    let out = lrp_ok(&["info", "--model", "data/models/mnist-cnn.lrpm", "--data", "data/mnist"]);
    assert!(out.contains("conv2d") && out.contains("maxpool2d"), "{out}");
    let acc = number_after(&out, "test accuracy: ");
    assert!(acc >= 0.99, "CNN test accuracy {acc}");
    let out = lrp_ok(&["info", "--model", "data/models/mnist-lstm.lrpm", "--data", "data/mnist"]);
    assert!(out.contains("lstm") && out.contains("input: [28, 28]"), "{out}");
    let acc = number_after(&out, "test accuracy: ");
    assert!(acc >= 0.98, "LSTM test accuracy {acc}");
}

#[test]
fn training_is_reproducible_bit_for_bit_and_learns_an_unseen_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bars");
    std::fs::create_dir(&data).unwrap();
    write_bars_dataset(&data, 12, 600, 200);
    let d = data.to_str().unwrap();
    for arch in ["mlp", "cnn"] {
        let a = dir.path().join(format!("{arch}-a.lrpm"));
        let b = dir.path().join(format!("{arch}-b.lrpm"));
        let c = dir.path().join(format!("{arch}-c.lrpm"));
        for (path, seed) in [(&a, "7"), (&b, "7"), (&c, "8")] {
            lrp_ok(&[
                "train",
                "--arch",
                arch,
                "--data",
                d,
                "--epochs",
                "3",
                "--seed",
                seed,
                "--out",
                path.to_str().unwrap(),
            ]);
        }
        let (a, b, c) = (
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            std::fs::read(&c).unwrap(),
        );
        assert_eq!(a, b, "{arch}: the same seed must give the same file");
        assert_ne!(a, c, "{arch}: another seed must give another model");
        let out = lrp_ok(&[
            "info",
            "--model",
            dir.path().join(format!("{arch}-a.lrpm")).to_str().unwrap(),
            "--data",
            d,
        ]);
        assert!(
            out.contains("input: [1, 12, 12]") && out.contains("output: 3 classes"),
            "{out}"
        );
        let acc = number_after(&out, "test accuracy: ");
        assert!(acc >= 0.9, "{arch} on the bars dataset: test accuracy {acc}");
    }
}

#[test]
fn predict_writes_logits_and_reports_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("logits.npy");
    let out = lrp_ok(&[
        "predict",
        "--model",
        "data/models/mnist-cnn.lrpm",
        "--data",
        "data/mnist",
        "--limit",
        "300",
        "--out",
        out_path.to_str().unwrap(),
    ]);
    assert!(out.contains("300 samples"), "{out}");
    assert!(number_after(&out, "accuracy: ") > 0.97, "{out}");
    let logits: Array2<f32> = ndarray_npy::read_npy(&out_path).unwrap();
    assert_eq!(logits.dim(), (300, 10));

    // The same images as an .npy input give the same logits.
    let inputs = dir.path().join("x.npy");
    let first: ArrayD<f32> = {
        let ds = lrp_core::Dataset::load(&root().join("data/mnist"), lrp_core::Split::Test).unwrap();
        ds.images.slice(ndarray::s![..5, .., .., ..]).to_owned().into_dyn()
    };
    ndarray_npy::write_npy(&inputs, &first).unwrap();
    let out2 = dir.path().join("l2.npy");
    lrp_ok(&[
        "predict",
        "--model",
        "data/models/mnist-cnn.lrpm",
        "--input",
        inputs.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
    ]);
    let l2: Array2<f32> = ndarray_npy::read_npy(&out2).unwrap();
    assert_eq!(l2, logits.slice(ndarray::s![..5, ..]));
}

#[test]
fn bad_inputs_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    std::fs::write(p("junk.lrpm"), b"hello, not a model").unwrap();
    let err = lrp_err(&["info", "--model", &p("junk.lrpm")]);
    assert!(
        err.contains("junk.lrpm") && err.contains("not an lrp model file"),
        "{err}"
    );

    let good = std::fs::read(root().join("data/models/mnist-mlp.lrpm")).unwrap();
    std::fs::write(p("cut.lrpm"), &good[..good.len() / 2]).unwrap();
    let err = lrp_err(&["info", "--model", &p("cut.lrpm")]);
    assert!(err.contains("truncated"), "{err}");

    let err = lrp_err(&["info", "--model", &p("missing.lrpm")]);
    assert!(
        err.contains("missing.lrpm") && err.contains("no such file") && err.contains("built-in models are cnn"),
        "{err}"
    );

    ndarray_npy::write_npy(p("wrong.npy"), &ArrayD::<f32>::zeros(IxDyn(&[2, 3, 28]))).unwrap();
    let err = lrp_err(&[
        "predict",
        "--model",
        "data/models/mnist-mlp.lrpm",
        "--input",
        &p("wrong.npy"),
    ]);
    assert!(err.contains("[N, 1, 28, 28]") && err.contains("[2, 3, 28]"), "{err}");

    let mut nan = ArrayD::<f32>::zeros(IxDyn(&[1, 1, 28, 28]));
    nan[[0, 0, 3, 4]] = f32::NAN;
    ndarray_npy::write_npy(p("nan.npy"), &nan).unwrap();
    let err = lrp_err(&[
        "predict",
        "--model",
        "data/models/mnist-mlp.lrpm",
        "--input",
        &p("nan.npy"),
    ]);
    assert!(err.contains("non-finite") && err.contains("NaN"), "{err}");

    let err = lrp_err(&["train", "--arch", "mlp", "--data", &p("nowhere"), "--out", &p("x.lrpm")]);
    assert!(err.contains("nowhere") && err.contains("no such folder"), "{err}");
    std::fs::create_dir(p("empty")).unwrap();
    let err = lrp_err(&["train", "--arch", "mlp", "--data", &p("empty"), "--out", &p("x.lrpm")]);
    assert!(err.contains("train-images-idx3-ubyte"), "{err}");
    assert!(!dir.path().join("x.lrpm").exists());
}

#[test]
fn absurd_arguments_and_device_files_are_refused_without_panic() {
    let err = lrp_err(&["info", "--model", "/dev/zero"]);
    assert!(err.contains("not a regular file"), "{err}");
    let err = lrp_err(&["info", "--model", "/dev/zero.onnx"]);
    assert!(err.contains("/dev/zero.onnx"), "{err}");
    let err = lrp_err(&[
        "train",
        "--arch",
        "mlp",
        "--data",
        "data/mnist",
        "--epochs",
        "18446744073709551615",
        "--out",
        "/tmp/never.lrpm",
    ]);
    assert!(err.contains("--epochs"), "{err}");
    // No threads, or an absurd count, for any command that takes --threads: refused by name, before anything is
    // loaded or written.
    let mlp = [
        "--model",
        "data/models/mnist-mlp.lrpm",
        "--data",
        "data/mnist",
        "--rule",
        "epsilon",
    ];
    for (command, extra, out) in [
        ("batch", &[][..], "/tmp/never-batch"),
        ("explain", &["--index", "0"][..], "/tmp/never-threads.npy"),
        ("eval", &[][..], "/tmp/never-threads-eval"),
    ] {
        for threads in ["0", "100000000"] {
            let args: Vec<&str> = [&[command][..], &mlp, extra, &["--threads", threads, "--out", out]].concat();
            let err = lrp_err(&args);
            assert!(
                err.contains(&format!("--threads {threads}: give 1 to")),
                "{command}: {err}"
            );
            assert!(!std::path::Path::new(out).exists(), "{command} wrote {out}");
        }
    }
    // A count past the end is refused with the largest count that fits (never silently cut).
    let err = lrp_err(&[
        "explain",
        "--model",
        "data/models/mnist-mlp.lrpm",
        "--data",
        "data/mnist",
        "--index",
        "9999",
        "--count",
        "18446744073709551615",
        "--rule",
        "epsilon",
        "--print",
    ]);
    assert!(
        err.contains("reaches past the end") && err.contains("--count 1"),
        "{err}"
    );
}

#[test]
fn a_full_disk_on_stdout_and_a_viewer_without_terminal_end_cleanly() {
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lrp"))
        .args(["info", "--model", "data/models/mnist-mlp.lrpm"])
        .current_dir(root())
        .stdout(full)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write the output") && !err.contains("panicked"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lrp"))
        .arg("view")
        .current_dir(root())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("needs a terminal") && err.contains("ssh -t"), "{err}");
}

#[test]
fn training_with_a_broken_test_split_fails_and_without_one_notes_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bars");
    std::fs::create_dir(&data).unwrap();
    write_bars_dataset(&data, 12, 100, 40);
    let test_images = data.join("t10k-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&test_images).unwrap();
    std::fs::write(&test_images, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.path().join("m.lrpm");
    let args = [
        "train",
        "--arch",
        "mlp",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ];
    let err = lrp_err(&args);
    assert!(err.contains("test split"), "{err}");
    assert!(!out.exists(), "nothing is written when the data is broken");
    std::fs::remove_file(&test_images).unwrap();
    let text = lrp_ok(&args);
    assert!(text.contains("no test split"), "{text}");
    assert!(out.exists());
}

#[test]
fn training_on_an_empty_split_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("empty");
    std::fs::create_dir(&data).unwrap();
    write_bars_dataset(&data, 12, 0, 10);
    let err = lrp_err(&[
        "train",
        "--arch",
        "mlp",
        "--data",
        data.to_str().unwrap(),
        "--limit",
        "5",
        "--out",
        dir.path().join("m.lrpm").to_str().unwrap(),
    ]);
    assert!(err.contains("no images"), "{err}");
}
