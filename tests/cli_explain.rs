//! End-to-end tests of `lrp explain`.

mod common;

use common::*;
use ndarray::{Array1, ArrayD};

fn oracle(name: &str) -> String {
    format!("tests/fixtures/oracle/{name}")
}

#[test]
fn explain_with_targets_matches_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    for (model, targets, spec, reference) in [
        (
            "mnist-cnn.onnx",
            "mnist-cnn-targets.npy",
            "epsilon-gamma-box",
            "mnist-cnn-epsilon-gamma-box.npy",
        ),
        (
            "mnist-cnn.onnx",
            "mnist-cnn-targets.npy",
            "#0=flat; #1=zplus; #2=epsilon(1e-6); #3=epsilon(1e-6)",
            "mnist-cnn-epsilon-plus-flat.npy",
        ),
        (
            "mnist-mlp.onnx",
            "mnist-mlp-targets.npy",
            "deep-taylor",
            "mnist-mlp-deep-taylor.npy",
        ),
        (
            "mnist-mlp.onnx",
            "mnist-mlp-targets.npy",
            "gradient",
            "mnist-mlp-gradient.npy",
        ),
    ] {
        // On the machine's threads, and on one (`--threads 1`): both the reference's relevance.
        for threads in [None, Some("1")] {
            let out = dir.path().join("r.npy");
            let mut args = vec![
                "explain",
                "--model",
                &oracle(model),
                "--input",
                &oracle("inputs.npy"),
                "--rule",
                spec,
                "--targets",
                &oracle(targets),
                "--out",
                out.to_str().unwrap(),
            ]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
            if let Some(t) = threads {
                args.extend(["--threads".to_string(), t.to_string()]);
            }
            lrp_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
            let got: ArrayD<f32> = ndarray_npy::read_npy(&out).unwrap();
            let want: ArrayD<f32> = ndarray_npy::read_npy(root().join(oracle(reference))).unwrap();
            assert_eq!(got.shape(), want.shape());
            let err = worst_relative_error(&got, &want);
            // Measured: Zennit cases ≤ 8e-7, the LSTM 3.1e-5.
            let tolerance = if model.contains("lstm") { 1e-4 } else { 1e-5 };
            assert!(err <= tolerance, "{model} {spec}, threads {threads:?}: {err}");
        }
    }
}

#[test]
fn explain_prints_png_and_npy_for_dataset_samples() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("h.png");
    let npy = dir.path().join("h.npy");
    let out = lrp_ok(&[
        "explain",
        "--model",
        "data/models/mnist-cnn.lrpm",
        "--data",
        "data/mnist",
        "--index",
        "0",
        "--count",
        "2",
        "--rule",
        "epsilon-gamma-box",
        "--target",
        "label",
        "--png",
        png.to_str().unwrap(),
        "--out",
        npy.to_str().unwrap(),
        "--print",
        "--color",
        "always",
    ]);
    assert!(
        out.contains("index 0: predicted 7, label 7, explained class 7"),
        "{out}"
    );
    assert!(out.contains("index 1:"), "{out}");
    assert!(out.contains("output (logit)") && out.contains("#0  conv2d"), "{out}");
    assert!(
        out.contains('▀'),
        "colour output (asked for: the test's stdout is a pipe) uses half blocks"
    );
    let r: ArrayD<f32> = ndarray_npy::read_npy(&npy).unwrap();
    assert_eq!(r.shape(), &[2, 1, 28, 28]);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    // Two tiles side by side, each an input and a heatmap at 6× (168 pixels) with a caption under them.
    assert!(
        info.width >= 4 * 168 && info.height >= 168 && info.height < 2 * 168 + 150,
        "{}×{}",
        info.width,
        info.height
    );

    // Printing is the default; NO_COLOR gives characters only.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lrp"))
        .args([
            "explain",
            "--model",
            "data/models/mnist-mlp.lrpm",
            "--data",
            "data/mnist",
            "--index",
            "3",
            "--rule",
            "epsilon",
        ])
        .env("NO_COLOR", "1")
        .current_dir(root())
        .output()
        .unwrap();
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(o.status.success());
    assert!(
        !text.contains('\x1b') && !text.contains('▀'),
        "no escapes without colour"
    );
    assert!(text.contains("legend:") && text.contains('@'), "{text}");
}

#[test]
fn explain_class_and_baselines() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.npy");
    let out = lrp_ok(&[
        "explain",
        "--model",
        "data/models/mnist-mlp.lrpm",
        "--data",
        "data/mnist",
        "--index",
        "5",
        "--rule",
        "integrated-gradients(8)",
        "--target",
        "3",
        "--out",
        a.to_str().unwrap(),
    ]);
    assert!(out.contains("wrote relevance [1, 1, 28, 28]"), "{out}");
    // Completeness: integrated gradients add up to logit(x) − logit(0) for class 3 (the MLP is piecewise linear;
    // 8 midpoints leave a few percent).
    let ig: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&a).unwrap();
    let zero = dir.path().join("zero.npy");
    let logits = dir.path().join("l.npy");
    let logit = |input: &std::path::Path| -> f64 {
        lrp_ok(&[
            "predict",
            "--model",
            "mlp",
            "--input",
            input.to_str().unwrap(),
            "--out",
            logits.to_str().unwrap(),
        ]);
        let l: ndarray::Array2<f32> = ndarray_npy::read_npy(&logits).unwrap();
        l[[0, 3]] as f64
    };
    let image = dir.path().join("image.npy");
    let digits = lrp_core::Dataset::load(&root().join("data/mnist"), lrp_core::Split::Test).unwrap();
    let sample = digits.images.slice_axis(ndarray::Axis(0), (5..6).into()).to_owned();
    ndarray_npy::write_npy(&image, &sample).unwrap();
    ndarray_npy::write_npy(&zero, &sample.mapv(|_| 0.0f32)).unwrap();
    let delta = logit(&image) - logit(&zero);
    let total: f64 = ig.iter().map(|&v| v as f64).sum();
    assert!(
        delta.abs() > 1.0 && (total - delta).abs() <= 0.05 * delta.abs(),
        "Σ IG {total} vs Δ logit {delta}"
    );
    // SmoothGrad without noise is the plain gradient, bit for bit; with noise it is another map.
    let smooth = dir.path().join("s.npy");
    let plain = dir.path().join("g.npy");
    for (rule, path) in [("smoothgrad(4,0)", &smooth), ("gradient", &plain)] {
        lrp_ok(&[
            "explain",
            "--model",
            "mlp",
            "--index",
            "5",
            "--rule",
            rule,
            "--target",
            "3",
            "--out",
            path.to_str().unwrap(),
        ]);
    }
    assert_eq!(std::fs::read(&smooth).unwrap(), std::fs::read(&plain).unwrap());
    let out = lrp_ok(&[
        "explain",
        "--model",
        "data/models/mnist-mlp.lrpm",
        "--data",
        "data/mnist",
        "--index",
        "5",
        "--rule",
        "smoothgrad(4,0.1)",
        "--target",
        "3",
        "--out",
        smooth.to_str().unwrap(),
        "--print",
    ]);
    // The printed sum is the written map's.
    let printed = number_after(&out, "attribution summed over the input: ");
    let noisy: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&smooth).unwrap();
    let sum: f64 = noisy.iter().map(|&v| v as f64).sum();
    assert!(
        out.contains("explained class 3") && (printed - sum).abs() <= 1e-3 * (1.0 + sum.abs()),
        "{out}"
    );
    assert_ne!(std::fs::read(&smooth).unwrap(), std::fs::read(&plain).unwrap());
}

#[test]
fn explain_refuses_bad_requests_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let base = [
        "explain",
        "--model",
        "data/models/mnist-cnn.lrpm",
        "--data",
        "data/mnist",
        "--index",
        "0",
    ];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [base, extra].concat()
    }
    let e = lrp_err(&with(&base, &["--rule", "epsilon-gama-box"]));
    assert!(e.contains("unknown rule or preset 'epsilon-gama-box'"), "{e}");
    let e = lrp_err(&with(&base, &["--rule", "all=alphabeta(2,2)"]));
    assert!(e.contains("alpha − beta = 1"), "{e}");
    let e = lrp_err(&with(&base, &["--rule", "conv=zplus"]));
    assert!(
        e.contains("#2 (dense, node n7) gets no rule") && e.contains("'#2=epsilon'"),
        "{e}"
    );
    let e = lrp_err(&with(&base, &["--rule", "epsilon", "--target", "12"]));
    assert!(e.contains("class 12") && e.contains("10 classes"), "{e}");
    let e = lrp_err(&with(&base, &["--rule", "epsilon", "--target", "seven"]));
    assert!(e.contains("'seven' is not pred, label or a class number"), "{e}");
    let e = lrp_err(&[
        "explain",
        "--model",
        "data/models/mnist-cnn.lrpm",
        "--data",
        "data/mnist",
        "--index",
        "10000",
        "--rule",
        "epsilon",
    ]);
    assert!(e.contains("--index 10000 is out of range"), "{e}");
    let e = lrp_err(&[
        "explain",
        "--model",
        "data/models/mnist-cnn.lrpm",
        "--input",
        &oracle("inputs.npy"),
        "--rule",
        "epsilon",
        "--target",
        "label",
    ]);
    assert!(e.contains("--target label needs --data"), "{e}");
    let t = dir.path().join("t.npy");
    ndarray_npy::write_npy(&t, &Array1::<i64>::from(vec![1, 2, 3])).unwrap();
    let e = lrp_err(&[
        "explain",
        "--model",
        "data/models/mnist-cnn.lrpm",
        "--input",
        &oracle("inputs.npy"),
        "--rule",
        "epsilon",
        "--targets",
        t.to_str().unwrap(),
    ]);
    assert!(e.contains("3 targets for 32 samples"), "{e}");
    // A failed run leaves an existing output untouched.
    let keep = dir.path().join("keep.npy");
    std::fs::write(&keep, b"precious").unwrap();
    lrp_err(&with(&base, &["--rule", "nope", "--out", keep.to_str().unwrap()]));
    assert_eq!(std::fs::read(&keep).unwrap(), b"precious");
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_lrp"))
        .args([
            "explain",
            "--model",
            "data/models/mnist-mlp.lrpm",
            "--data",
            "data/mnist",
            "--index",
            "0",
            "--count",
            "16",
            "--rule",
            "epsilon",
        ])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap(); // then the pipe closes, like `| head`
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn npy_inputs_go_through_one_reader_with_the_same_rules_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    // A 12 KB file whose header claims 5,102,041 images: refused by explain, predict and batch alike, no abort.
    let lie = dir.path().join("lie.npy");
    let mut bytes = Vec::new();
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (5102041, 1, 28, 28), }";
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(h.len() as u16).to_le_bytes());
    bytes.extend_from_slice(h.as_bytes());
    bytes.extend(std::iter::repeat_n(0u8, 12_000));
    std::fs::write(&lie, &bytes).unwrap();
    let model = "data/models/mnist-cnn.lrpm";
    for args in [
        vec![
            "explain",
            "--model",
            model,
            "--rule",
            "epsilon",
            "--input",
            lie.to_str().unwrap(),
            "--out",
            "/dev/null",
        ],
        vec!["predict", "--model", model, "--input", lie.to_str().unwrap()],
    ] {
        let err = lrp_err(&args);
        assert!(err.contains("lie.npy"), "{args:?}: {err}");
    }
    // float64 is accepted (with a note) by explain and batch, and gives the float32 results.
    let x: ArrayD<f32> = ndarray_npy::read_npy(root().join(oracle("inputs.npy"))).unwrap();
    let x = x.slice_axis(ndarray::Axis(0), (0..3).into()).to_owned();
    let (p32, p64) = (dir.path().join("x32.npy"), dir.path().join("x64.npy"));
    ndarray_npy::write_npy(&p32, &x).unwrap();
    ndarray_npy::write_npy(&p64, &x.mapv(|v| v as f64)).unwrap();
    let mut outs = Vec::new();
    for p in [&p32, &p64] {
        let out = dir
            .path()
            .join(format!("{}-r.npy", p.file_stem().unwrap().to_string_lossy()));
        let text = lrp_ok(&[
            "explain",
            "--model",
            model,
            "--rule",
            "epsilon",
            "--input",
            p.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(text.contains("float64"), p == &p64, "{text}");
        outs.push(std::fs::read(&out).unwrap());
    }
    assert_eq!(outs[0], outs[1]);
    let b = dir.path().join("b64");
    let text = lrp_ok(&[
        "batch",
        "--model",
        model,
        "--input",
        p64.to_str().unwrap(),
        "--rule",
        "epsilon",
        "--out",
        b.to_str().unwrap(),
    ]);
    assert!(text.contains("float64"), "{text}");
}

#[test]
fn non_finite_results_are_errors_never_written() {
    let dir = tempfile::tempdir().unwrap();
    // An input of 3e38 overflows the CNN: explain and predict refuse, naming the sample; no file is written.
    let mut x = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[2, 1, 28, 28]));
    x[[1, 0, 14, 14]] = 3e38;
    let input = dir.path().join("big.npy");
    ndarray_npy::write_npy(&input, &x).unwrap();
    let out = dir.path().join("r.npy");
    let model = "data/models/mnist-cnn.lrpm";
    let err = lrp_err(&[
        "explain",
        "--model",
        model,
        "--rule",
        "epsilon",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("sample 1") && err.contains("overflows"), "{err}");
    assert!(!out.exists());
    let err = lrp_err(&["predict", "--model", model, "--input", input.to_str().unwrap()]);
    assert!(err.contains("sample 1") && err.contains("overflows"), "{err}");
    // epsilon(0) on the LSTM with 0–255 inputs divides by zero: refused instead of writing NaN.
    let rows: ndarray::ArrayD<f32> = ndarray_npy::read_npy(root().join(oracle("mnist-rows-lstm-inputs.npy"))).unwrap();
    let raw = dir.path().join("raw.npy");
    ndarray_npy::write_npy(&raw, &(rows * 255.0)).unwrap();
    let err = lrp_err(&[
        "explain",
        "--model",
        "data/models/mnist-lstm.lrpm",
        "--input",
        raw.to_str().unwrap(),
        "--rule",
        "epsilon(0)",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("relevance") || err.contains("epsilon"), "{err}");
    assert!(!out.exists());
}

#[test]
fn long_output_names_and_empty_splits_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    // A 250-character name: its temporary file must not be longer than a file name may be.
    let out = dir.path().join(format!("{}.npy", "r".repeat(246)));
    lrp_ok(&[
        "explain",
        "--model",
        "data/models/mnist-mlp.lrpm",
        "--data",
        "data/mnist",
        "--index",
        "3",
        "--rule",
        "epsilon",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(out.exists());
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary file is left");
    // An empty test split is named as such, not as a range ending at 2^64 − 1.
    let data = dir.path().join("empty");
    std::fs::create_dir(&data).unwrap();
    write_bars_dataset(&data, 12, 30, 0);
    let model = dir.path().join("m.lrpm");
    lrp_ok(&[
        "train",
        "--arch",
        "mlp",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--out",
        model.to_str().unwrap(),
    ]);
    let err = lrp_err(&[
        "explain",
        "--model",
        model.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--index",
        "0",
        "--rule",
        "epsilon",
        "--print",
    ]);
    assert!(
        err.contains("holds no samples") && !err.contains("18446744073709551615"),
        "{err}"
    );
}
