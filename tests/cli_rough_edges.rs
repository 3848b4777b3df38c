//! The rough edges a new user met (the terminal issue's list), one test each: every one failed before its fix.

mod common;

use std::path::Path;

use common::{lrp, lrp_err, lrp_ok, root};

const CNN: &str = "data/models/mnist-cnn.lrpm";
const MLP: &str = "data/models/mnist-mlp.lrpm";

fn png_size(path: &Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    (info.width, info.height)
}

#[test]
fn explain_refuses_flags_it_would_ignore() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    ndarray_npy::write_npy(&x, &ndarray::Array4::<f32>::zeros((2, 1, 28, 28))).unwrap();
    let x = x.to_str().unwrap();
    // --index/--count belong to --data: with --input they were ignored.
    let out = lrp(&[
        "explain", "--model", MLP, "--input", x, "--index", "5", "--count", "2", "--rule", "epsilon",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--input") && err.contains("--index"), "{err}");
    // --count 0 explained one sample.
    let out = lrp(&[
        "explain",
        "--model",
        MLP,
        "--data",
        "data/mnist",
        "--index",
        "0",
        "--count",
        "0",
        "--rule",
        "epsilon",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("give 1 or more"), "{err}");
    // --index 9999 --count 5 explained one.
    let err = lrp_err(&[
        "explain",
        "--model",
        MLP,
        "--data",
        "data/mnist",
        "--index",
        "9999",
        "--count",
        "5",
        "--rule",
        "epsilon",
    ]);
    assert!(
        err.contains("reaches past the end") && err.contains("--count 1"),
        "{err}"
    );
}

#[test]
fn explain_to_a_file_writes_no_color_codes_unless_asked() {
    let args = [
        "explain",
        "--model",
        MLP,
        "--data",
        "data/mnist",
        "--index",
        "0",
        "--rule",
        "epsilon",
    ];
    let out = lrp(&args);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains('\x1b'), "escape codes in piped output:\n{text}");
    assert!(
        text.contains("legend: positive"),
        "the character ramp needs its legend:\n{text}"
    );
    let mut always = args.to_vec();
    always.extend(["--color", "always"]);
    let out = lrp(&always);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\x1b[38;"));
    let mut never = args.to_vec();
    never.extend(["--color", "never"]);
    let out = lrp(&never);
    assert!(!String::from_utf8_lossy(&out.stdout).contains('\x1b'));
}

#[test]
fn png_of_many_samples_is_a_labelled_grid_not_a_strip() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.png");
    lrp_ok(&[
        "explain",
        "--model",
        CNN,
        "--data",
        "data/mnist",
        "--index",
        "0",
        "--rule",
        "epsilon",
        "--png",
        one.to_str().unwrap(),
    ]);
    let (w1, h1) = png_size(&one);
    let many = dir.path().join("many.png");
    lrp_ok(&[
        "explain",
        "--model",
        CNN,
        "--data",
        "data/mnist",
        "--index",
        "0",
        "--count",
        "100",
        "--rule",
        "epsilon",
        "--png",
        many.to_str().unwrap(),
    ]);
    let (w, h) = png_size(&many);
    // 100 tiles as 10 × 10: about square, not a 100-row strip.
    assert!(
        w >= 5 * w1 / 2 && h < 4 * w,
        "100 samples drawn as {w}×{h} (one sample: {w1}×{h1})"
    );
    // The tile caption is text under each map (dark pixels between the maps and the next row).
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&one).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let stride = info.line_size;
    let below_maps = (h1 as usize - 40..h1 as usize)
        .flat_map(|y| (0..w1 as usize).map(move |x| (y, x)))
        .filter(|&(y, x)| buf[y * stride + 3 * x] < 100)
        .count();
    assert!(below_maps > 50, "no caption text under the maps");
    let err = lrp_err(&[
        "explain",
        "--model",
        MLP,
        "--data",
        "data/mnist",
        "--index",
        "0",
        "--count",
        "5000",
        "--rule",
        "epsilon",
        "--png",
        dir.path().join("huge.png").to_str().unwrap(),
    ]);
    assert!(err.contains("too many") && err.contains("--out"), "{err}");
}

#[test]
fn convert_refuses_an_onnx_name_for_the_native_format() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.onnx");
    let err = lrp_err(&["convert", "--model", MLP, "--out", out.to_str().unwrap()]);
    assert!(err.contains(".lrpm") && err.contains("not supported"), "{err}");
    assert!(!out.exists());
}

#[test]
fn eval_refuses_to_overwrite_a_report_and_says_what_is_wrong_with_a_region_of_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eval");
    let out = out.to_str().unwrap();
    let args = [
        "eval",
        "--model",
        MLP,
        "--data",
        "data/mnist",
        "--rule",
        "epsilon",
        "--limit",
        "4",
        "--steps",
        "3",
        "--out",
        out,
    ];
    lrp_ok(&args);
    let err = lrp_err(&args);
    assert!(
        err.contains("already holds a report") && err.contains("--force"),
        "{err}"
    );
    let mut forced = args.to_vec();
    forced.push("--force");
    lrp_ok(&forced);
    let mut zero = args.to_vec();
    zero.extend(["--region", "0", "--force"]);
    let err = lrp_err(&zero);
    assert!(err.starts_with("error: --region 0"), "{err}");
    assert!(!err.contains("target:"), "{err}");
}

#[test]
fn errors_say_each_cause_once_and_never_name_a_temporary_file() {
    let err = lrp_err(&[
        "explain",
        "--model",
        "/nonexistent/m.lrpm",
        "--data",
        "data/mnist",
        "--index",
        "0",
        "--rule",
        "epsilon",
    ]);
    assert_eq!(err.matches("no such file").count(), 1, "{err}");
    // Missing parent folders are created, for every output.
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("a/b/x.png");
    let npy = dir.path().join("c/r.npy");
    let logits = dir.path().join("d/e/logits.npy");
    lrp_ok(&[
        "explain",
        "--model",
        MLP,
        "--data",
        "data/mnist",
        "--index",
        "0",
        "--rule",
        "epsilon",
        "--png",
        png.to_str().unwrap(),
        "--out",
        npy.to_str().unwrap(),
    ]);
    lrp_ok(&[
        "predict",
        "--model",
        MLP,
        "--data",
        "data/mnist",
        "--limit",
        "3",
        "--out",
        logits.to_str().unwrap(),
    ]);
    assert!(png.is_file() && npy.is_file() && logits.is_file());
    // A folder that cannot be made (a file is in the way) is named; the temporary name is not.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let err = lrp_err(&[
        "explain",
        "--model",
        MLP,
        "--data",
        "data/mnist",
        "--index",
        "0",
        "--rule",
        "epsilon",
        "--png",
        blocker.join("x.png").to_str().unwrap(),
    ]);
    assert!(err.contains("cannot create the folder"), "{err}");
    assert!(!err.contains("x.png.tmp"), "{err}");
}

#[test]
fn commands_without_inputs_name_both_ways_to_give_them() {
    for args in [
        vec!["predict", "--model", MLP],
        vec!["batch", "--model", MLP, "--rule", "epsilon", "--out", "/tmp/never-used"],
    ] {
        let out = lrp(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("--input") && err.contains("--data"), "{args:?}: {err}");
    }
    // explain also takes --index alone (the shipped MNIST): its message names all three.
    let err = lrp_err(&["explain", "--model", MLP, "--rule", "epsilon"]);
    assert!(
        err.contains("--input") && err.contains("--data") && err.contains("--index I alone"),
        "{err}"
    );
}

#[test]
fn inputs_outside_zero_one_are_warned_about_and_float64_is_said() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("pixels.npy");
    let mut a = ndarray::Array4::<f32>::zeros((1, 1, 28, 28));
    a[[0, 0, 14, 14]] = 255.0;
    ndarray_npy::write_npy(&x, &a).unwrap();
    let text = lrp_ok(&["predict", "--model", MLP, "--input", x.to_str().unwrap()]);
    assert!(text.contains("from 0 to 255") && text.contains("divide"), "{text}");
    let x64 = dir.path().join("f64.npy");
    ndarray_npy::write_npy(&x64, &a.mapv(|v| v as f64 / 255.0)).unwrap();
    let text = lrp_ok(&["predict", "--model", MLP, "--input", x64.to_str().unwrap()]);
    assert!(text.contains("float64") && !text.contains("outside [0, 1]"), "{text}");
}

/// An ONNX model may take any range: torchvision's take normalized values, from about −2.1 to 2.6, and were warned
/// about as if they were the shipped MNIST models' pixels. Only what looks like unscaled 0–255 pixels is now, in
/// every command that reads an .npy.
#[test]
fn an_onnx_model_is_warned_only_about_what_looks_like_unscaled_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let model = "tests/fixtures/scale/resnet_basic_l2-legacy.onnx";
    let mut normalized = ndarray::Array4::<f32>::zeros((1, 3, 64, 64));
    normalized[[0, 0, 0, 0]] = -2.1;
    normalized[[0, 2, 5, 5]] = 2.6;
    let pixels = normalized.mapv(|v| (v + 2.1) * 50.0);
    let (norm, px) = (dir.path().join("norm.npy"), dir.path().join("px.npy"));
    ndarray_npy::write_npy(&norm, &normalized).unwrap();
    ndarray_npy::write_npy(&px, &pixels).unwrap();
    let relevance = dir.path().join("r.npy");
    for cmd in ["predict", "explain", "batch"] {
        for (input, pixels) in [(&norm, false), (&px, true)] {
            let out = dir.path().join(format!("{cmd}-{pixels}"));
            let mut args = vec![cmd, "--model", model, "--input", input.to_str().unwrap()];
            match cmd {
                "explain" => args.extend(["--rule", "epsilon", "--out", relevance.to_str().unwrap()]),
                "batch" => args.extend(["--rule", "epsilon", "--out", out.to_str().unwrap()]),
                _ => {}
            }
            let text = lrp_ok(&args);
            if pixels {
                assert!(
                    text.contains("from 0 to ") && text.contains("0–255 pixels"),
                    "{cmd}, pixels: {text}"
                );
            } else {
                assert!(!text.contains("warning"), "{cmd}, normalized input: {text}");
            }
        }
    }
}

#[test]
fn counts_read_as_english() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let text = lrp_ok(&[
        "batch",
        "--model",
        MLP,
        "--data",
        "data/mnist",
        "--limit",
        "1",
        "--rule",
        "epsilon",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        text.contains("1 sample × 1 rule") && text.contains("1 thread)"),
        "{text}"
    );
    assert!(!text.contains("1 rules") && !text.contains("1 threads"), "{text}");
}

#[test]
fn following_the_readme_leaves_no_untracked_outputs() {
    let ignore = std::fs::read_to_string(root().join(".gitignore")).unwrap();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for folder in ["runs/", "eval/"] {
        if readme.contains(&format!("--out {folder}")) {
            assert!(ignore.lines().any(|l| l.trim() == folder), ".gitignore lacks {folder}");
        }
    }
}

#[test]
fn an_installed_binary_works_from_an_empty_folder() {
    let empty = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lrp"))
            .args(args)
            .current_dir(empty.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "lrp {args:?} from an empty folder:\n{text}");
        text
    };
    // The README's own paths, and the short names, resolve to the built-in copies.
    let text = run(&[
        "explain",
        "--model",
        "data/models/mnist-cnn.lrpm",
        "--data",
        "data/mnist",
        "--index",
        "0",
        "--rule",
        "epsilon",
    ]);
    assert!(text.contains("index 0: predicted 7, label 7"), "{text}");
    let text = run(&["explain", "--model", "resnet", "--index", "1", "--rule", "epsilon"]);
    assert!(text.contains("index 1: predicted 2, label 2"), "{text}");
    let text = run(&["info", "--model", "mlp", "--data", "mnist"]);
    assert!(text.contains("test accuracy: 0.98"), "{text}");
    // Nothing was written into the folder.
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}

#[test]
fn explain_layer_writes_the_relevance_at_a_hidden_layer() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r7.npy");
    let text = lrp_ok(&[
        "explain",
        "--model",
        CNN,
        "--data",
        "data/mnist",
        "--index",
        "0",
        "--count",
        "3",
        "--rule",
        "epsilon",
        "--layer",
        "#2",
        "--out",
        out.to_str().unwrap(),
    ]);
    // `#2` is the CNN's third layer with weights, its first dense layer: node n7, as `lrp info` lists it.
    assert!(text.contains("input of #2 (dense)"), "{text}");
    let r: ndarray::Array2<f32> = ndarray_npy::read_npy(&out).unwrap();
    assert_eq!(r.shape(), &[3, 512]);
    // The same sums as the conservation table of --print at "#2 dense": one numbering in both.
    let printed = lrp_ok(&[
        "explain",
        "--model",
        CNN,
        "--data",
        "data/mnist",
        "--index",
        "0",
        "--rule",
        "epsilon",
    ]);
    let line = printed.lines().find(|l| l.trim_start().starts_with("#2")).unwrap();
    assert!(line.contains("dense"), "{line}");
    let table: f32 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!((r.row(0).sum() - table).abs() < 1e-3, "{} vs {line}", r.row(0).sum());
    // The same node by its node number: the same file.
    let by_node = dir.path().join("n7.npy");
    lrp_ok(&[
        "explain",
        "--model",
        CNN,
        "--data",
        "data/mnist",
        "--index",
        "0",
        "--count",
        "3",
        "--rule",
        "epsilon",
        "--layer",
        "n7",
        "--out",
        by_node.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&by_node).unwrap(), std::fs::read(&out).unwrap());
    // Layer #0 reads the pixels: the same as the ordinary output.
    let r0 = dir.path().join("r0.npy");
    let full = dir.path().join("full.npy");
    let base = [
        "explain",
        "--model",
        CNN,
        "--data",
        "data/mnist",
        "--index",
        "0",
        "--rule",
        "epsilon",
        "--out",
    ];
    let mut a = base.to_vec();
    a.extend([r0.to_str().unwrap(), "--layer", "#0"]);
    lrp_ok(&a);
    let mut b = base.to_vec();
    b.push(full.to_str().unwrap());
    lrp_ok(&b);
    assert_eq!(std::fs::read(&r0).unwrap(), std::fs::read(&full).unwrap());
    // Refusals: out of range in either notation, a bare number (it used to mean a node, and rule specs' #N a layer
    // with weights: now it must say which), a gradient method, a node with two inputs.
    for (layer, says) in [
        ("#9", "4 layers with weights (#0 to #3)"),
        ("n99", "nodes n0 to n10"),
        ("7", "write #N for the N-th layer with weights"),
    ] {
        let err = lrp_err(&[
            "explain",
            "--model",
            CNN,
            "--index",
            "0",
            "--rule",
            "epsilon",
            "--layer",
            layer,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(err.contains(says), "{layer}: {err}");
    }
    let err = lrp_err(&[
        "explain",
        "--model",
        CNN,
        "--index",
        "0",
        "--rule",
        "gradient",
        "--layer",
        "#1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("needs an LRP rule"), "{err}");
    let err = lrp_err(&[
        "explain",
        "--model",
        "resnet",
        "--index",
        "0",
        "--rule",
        "epsilon",
        "--layer",
        "n6",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("n6 (add) reads 2 values"), "{err}");
}

#[test]
fn training_messages_read_as_english() {
    let dir = tempfile::tempdir().unwrap();
    common::write_bars_dataset(dir.path(), 12, 60, 20);
    let out = dir.path().join("m.lrpm");
    let text = lrp_ok(&[
        "train",
        "--arch",
        "mlp",
        "--data",
        dir.path().to_str().unwrap(),
        "--epochs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(text.contains("training the MLP on 60 images"), "{text}");
    assert!(text.contains("trained 1 epoch in"), "{text}");
    assert!(!text.contains("Mlp") && !text.contains("1 epochs"), "{text}");
}
