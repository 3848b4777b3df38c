//! Photos through the command line: `lrp prepare` against torchvision from another folder, `predict`/`explain`/`batch`
//! with `--image` and `--labels`, the picture of a photo in a PNG, an NHWC model's heatmap, and bad photos refused
//! with nothing written.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use ndarray::{ArrayD, Axis};

/// A small ImageNet-style model (ResNet basic blocks, 3×64×64 in, 10 classes; random weights).
const MODEL: &str = "tests/fixtures/scale/resnet_basic_l2-legacy.onnx";

fn abs(p: &str) -> String {
    root().join(p).display().to_string()
}

fn photo(name: &str) -> String {
    abs(&format!("data/photos/{name}"))
}

/// Runs `lrp` in `dir` (not the repository): returns (status, stdout, stderr).
fn lrp_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lrp"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn read(path: &Path) -> ArrayD<f32> {
    ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn prepare_gives_torchvisions_tensor_in_either_layout_from_another_folder() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["chelsea", "coffee", "rocket"];
    let files = [photo("chelsea.png"), photo("coffee.png"), photo("rocket.jpg")];
    for size in [224usize, 160] {
        let shape = format!("3,{size},{size}");
        let mut args = vec![
            "prepare",
            "--shape",
            &shape,
            "--preprocess",
            "imagenet",
            "--out",
            "x.npy",
        ];
        for f in &files {
            args.extend(["--image", f.as_str()]);
        }
        let (status, stdout, stderr) = lrp_in(dir.path(), &args);
        assert_eq!(status, 0, "{stderr}");
        assert!(stdout.contains("3 photos") && stdout.contains("NCHW"), "{stdout}");
        let x = read(&dir.path().join("x.npy"));
        assert_eq!(x.shape(), &[3, 3, size, size]);
        for (i, name) in names.iter().enumerate() {
            let want = read(&root().join(format!("tests/fixtures/photos/expected/{name}-imagenet-{size}.npy")));
            let got = x.index_axis(Axis(0), i);
            let worst = got
                .iter()
                .zip(want.iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let mean = got.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).sum::<f32>() / got.len() as f32;
            // PNGs: the same bytes as torchvision; the JPEG within the bounds (another JPEG decoder).
            let bound = if name == &"rocket" { 0.05 } else { 0.0 };
            assert!(
                worst <= bound && mean <= 0.005,
                "{name} {size}: max {worst}, mean {mean}"
            );
        }
        // NHWC: the same values, channels last.
        let nhwc = format!("{size},{size},3");
        let (status, _, stderr) = lrp_in(
            dir.path(),
            &[
                "prepare",
                "--shape",
                &nhwc,
                "--preprocess",
                "imagenet",
                "--image",
                &files[0],
                "--out",
                "y.npy",
            ],
        );
        assert_eq!(status, 0, "{stderr}");
        let y = read(&dir.path().join("y.npy"));
        let chw = x.index_axis(Axis(0), 0).to_owned();
        let hwc = y.index_axis(Axis(0), 0).permuted_axes(vec![2, 0, 1]).to_owned();
        assert_eq!(chw, hwc);
    }
}

fn labels_file(dir: &Path, n: usize) -> PathBuf {
    let p = dir.join("classes.txt");
    let names: Vec<String> = (0..n).map(|k| format!("thing-{k}")).collect();
    std::fs::write(&p, names.join("\n") + "\n").unwrap();
    p
}

#[test]
fn predict_explain_and_batch_take_photos_and_class_names() {
    let dir = tempfile::tempdir().unwrap();
    let labels = labels_file(dir.path(), 10);
    let labels = labels.to_str().unwrap();
    let photos = abs("data/photos");
    let model = abs(MODEL);
    let common = [
        "--model",
        &model,
        "--image",
        &photos,
        "--preprocess",
        "imagenet",
        "--labels",
        labels,
    ];
    let (status, stdout, stderr) = lrp_in(dir.path(), &[&["predict"], &common[..]].concat());
    assert_eq!(status, 0, "{stderr}");
    // One line per photo, in name order, with the names of its three likeliest classes.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for (line, name) in lines.iter().zip(["chelsea.png", "coffee.png", "rocket.jpg"]) {
        assert!(
            line.starts_with(&format!("{name}: ")) && line.matches("thing-").count() == 3,
            "{line}"
        );
    }
    // explain: the relevance of the three photos, and the same through lrp batch on the folder.
    let (status, _, stderr) = lrp_in(
        dir.path(),
        &[
            &["explain"],
            &common[..],
            &["--rule", "epsilon-gamma-box", "--out", "r.npy", "--png", "r.png"],
        ]
        .concat(),
    );
    assert_eq!(status, 0, "{stderr}");
    let r = read(&dir.path().join("r.npy"));
    assert_eq!(r.shape(), &[3, 3, 64, 64]);
    assert!(r.iter().all(|v| v.is_finite()) && r.iter().any(|&v| v != 0.0));
    let (status, _, stderr) = lrp_in(
        dir.path(),
        &[
            "batch",
            "--model",
            &model,
            "--image",
            &photos,
            "--preprocess",
            "imagenet",
            "--rule",
            "epsilon-gamma-box",
            "--out",
            "runs",
        ],
    );
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(read(&dir.path().join("runs/rule0-epsilon-gamma-box.npy")), r);
    // The PNG shows each photo itself: the first tile's first pane holds the un-normalized photo (the prepared
    // tensor times std plus mean), upscaled.
    let (status, _, stderr) = lrp_in(
        dir.path(),
        &[
            "prepare",
            "--model",
            &model,
            "--image",
            &photo("chelsea.png"),
            "--preprocess",
            "imagenet",
            "--out",
            "x.npy",
        ],
    );
    assert_eq!(status, 0, "{stderr}");
    let x = read(&dir.path().join("x.npy"));
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(dir.path().join("r.png")).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let width = info.width as usize;
    // Layout of lrp_view::png_out: header 72 px, gap 10, a 1-px border; 3 tiles of 64 px at upscale 168/64 = 2.
    let (top, left, k) = (72 + 10 + 1, 10 + 1, 2);
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    for (y, xx) in [(0usize, 0usize), (10, 50), (40, 20), (63, 63)] {
        let at = ((top + k * y) * width + left + k * xx) * 3;
        for c in 0..3 {
            let want = ((x[[0, c, y, xx]] * std[c] + mean[c]).clamp(0.0, 1.0) * 255.0).round();
            let got = f32::from(buf[at + c]);
            assert!(
                (got - want).abs() <= 1.0,
                "pixel ({y}, {xx}) channel {c}: {got} vs {want}"
            );
        }
    }
}

/// The printed heatmap of a 64×64 input is shrunk to the terminal's half width, each cell the mean of its pixels.
/// Signed, noisy relevance (ε through a deep network) averages to a small part of its largest pixel, and drawn to
/// that pixel the map was faint or blank; it is drawn to its largest cell now, so that cell is at full strength.
#[test]
fn a_shrunk_heatmap_is_drawn_to_its_largest_cell() {
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    // Values below 0: the input's picture is all blank, so the rows hold only the heatmap's glyphs.
    let mut state = 12345u32;
    let input = ndarray::Array4::<f32>::from_shape_fn((1, 3, 64, 64), |_| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        -0.1 - (state >> 8) as f32 / (1u32 << 24) as f32
    });
    ndarray_npy::write_npy(&x, &input).unwrap();
    let out = lrp_ok(&[
        "explain",
        "--model",
        MODEL,
        "--input",
        x.to_str().unwrap(),
        "--rule",
        "epsilon",
        "--print",
        "--color",
        "never",
    ]);
    let rows: String = out
        .lines()
        .skip_while(|l| !l.contains("explained class"))
        .skip(1)
        .take_while(|l| !l.starts_with("(shown at"))
        .collect();
    assert!(out.contains("(shown at") && !rows.trim().is_empty(), "{out}");
    assert!(
        rows.contains('@') || rows.contains('%'),
        "no cell at full strength:\n{out}"
    );
}

#[test]
fn an_nhwc_models_heatmap_is_drawn_as_an_image_not_a_strip() {
    // A Keras CNN on [28, 28, 1]: the printout has 14 rows of 28 + 2 + 28 characters.
    let out = lrp_ok(&[
        "explain",
        "--model",
        "tests/fixtures/oracle/keras/keras-cnn-export.onnx",
        "--input",
        "tests/fixtures/oracle/keras/keras-inputs.npy",
        "--rule",
        "epsilon",
        "--print",
        "--color",
        "never",
    ]);
    let first: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("sample 0:"))
        .skip(1)
        .take_while(|l| !l.starts_with("input |"))
        .collect();
    assert_eq!(first.len(), 14, "{out}");
    assert!(first.iter().all(|l| l.chars().count() == 58), "{first:?}");
}

#[test]
fn bad_photos_are_refused_by_name_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = std::fs::read(root().join("data/photos/rocket.jpg")).unwrap();
    std::fs::write(dir.path().join("cut.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    std::fs::write(dir.path().join("notes.png"), b"not a photo").unwrap();
    std::fs::write(dir.path().join("empty.jpg"), b"").unwrap();
    let model = abs(MODEL);
    for (file, says) in [
        ("cut.jpg", "truncated"),
        ("notes.png", "not a PNG or JPEG"),
        ("empty.jpg", "empty"),
    ] {
        for command in ["explain", "predict"] {
            let (status, stdout, stderr) = lrp_in(
                dir.path(),
                &[
                    command, "--model", &model, "--image", file, "--rule", "epsilon", "--out", "out.npy",
                ][..if command == "predict" { 5 } else { 9 }],
            );
            assert_eq!(status, 1, "{command} {file}: {stdout}{stderr}");
            assert!(
                stderr.contains(file) && stderr.contains(says),
                "{command} {file}: {stderr}"
            );
            assert!(!stderr.contains("panicked"));
        }
    }
    // A folder with one bad photo among good ones: the batch refuses before it starts and writes nothing.
    std::fs::copy(root().join("data/photos/chelsea.png"), dir.path().join("a.png")).unwrap();
    let (status, _, stderr) = lrp_in(
        dir.path(),
        &[
            "batch", "--model", &model, "--image", ".", "--rule", "epsilon", "--out", "runs",
        ],
    );
    assert_eq!(status, 1, "{stderr}");
    assert!(
        stderr.contains("cut.jpg") || stderr.contains("notes.png") || stderr.contains("empty.jpg"),
        "{stderr}"
    );
    assert!(!dir.path().join("runs").exists(), "nothing is written");
    assert!(!dir.path().join("out.npy").exists());
}

#[test]
fn photo_options_that_cannot_apply_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = abs(MODEL);
    let chelsea = photo("chelsea.png");
    let labels = labels_file(dir.path(), 7);
    let npy = abs("tests/fixtures/scale/resnet_basic_l2-inputs.npy");
    let lstm = abs("tests/fixtures/oracle/mnist-rows-lstm.onnx");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["predict", "--model", &model, "--image", &chelsea, "--size", "224"],
            "64×64",
        ),
        (
            vec![
                "predict",
                "--model",
                &model,
                "--image",
                &chelsea,
                "--labels",
                labels.to_str().unwrap(),
            ],
            "7 names for a model with 10 outputs",
        ),
        (
            vec!["predict", "--model", &model, "--input", &npy, "--size", "64"],
            "--size prepares photos",
        ),
        (
            vec!["predict", "--model", &model, "--image", &chelsea, "--mean", "0.5,0.5"],
            "2 mean values",
        ),
        (
            vec!["predict", "--model", &model, "--image", &chelsea, "--std", "0"],
            "--std",
        ),
        // ImageNet's three-channel normalization asked of the shipped gray MNIST CNN.
        (
            vec![
                "predict",
                "--model",
                "cnn",
                "--image",
                &chelsea,
                "--preprocess",
                "imagenet",
            ],
            "this model takes 1-channel 28×28 images",
        ),
        (
            vec![
                "explain", "--model", &model, "--image", &chelsea, "--rule", "epsilon", "--png", "p.png", "--color",
                "always",
            ],
            "--color sets the colours of --print",
        ),
        (vec!["predict", "--model", &lstm, "--image", &chelsea], ""),
    ];
    for (args, says) in cases {
        let (status, stdout, stderr) = lrp_in(dir.path(), &args);
        assert_eq!(
            status,
            if says.is_empty() { 0 } else { 1 },
            "{args:?}: {stdout}{stderr}"
        );
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"));
    }
    assert!(!dir.path().join("p.png").exists());
}

/// `jpeg` without its APP1 (EXIF) segments: the same image data, no orientation.
fn without_exif(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut i = 2;
    while i + 4 <= jpeg.len() && jpeg[i] == 0xFF && jpeg[i + 1] != 0xDA {
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        if jpeg[i + 1] != 0xE1 {
            out.extend_from_slice(&jpeg[i..i + 2 + len]);
        }
        i += 2 + len;
    }
    out.extend_from_slice(&jpeg[i..]);
    out
}

#[test]
fn a_photo_turned_by_its_exif_orientation_is_named_and_used_as_stored() {
    // turned.jpg (40×30) says "rotate 90° clockwise to show", as a phone's portrait photo does.
    let dir = tempfile::tempdir().unwrap();
    let turned = abs("tests/fixtures/photos/extreme/turned.jpg");
    let bytes = std::fs::read(&turned).unwrap();
    let stripped = without_exif(&bytes);
    assert!(stripped.len() < bytes.len(), "the fixture has an EXIF segment");
    std::fs::write(dir.path().join("stored.jpg"), &stripped).unwrap();
    let note = "turned.jpg asks (EXIF orientation) to be shown rotated 90° clockwise";
    let model = abs(MODEL);
    let (code, _, err) = lrp_in(
        dir.path(),
        &[
            "predict",
            "--model",
            &model,
            "--image",
            &turned,
            "--image",
            &photo("chelsea.png"),
            "--preprocess",
            "imagenet",
            "--size",
            "64",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(err.matches(note).count(), 1, "{err}");
    assert!(!err.contains("chelsea"), "{err}");
    // The batch runner's photo source says it too.
    let (code, _, err) = lrp_in(
        dir.path(),
        &[
            "batch",
            "--model",
            &model,
            "--image",
            &turned,
            "--preprocess",
            "imagenet",
            "--size",
            "64",
            "--rule",
            "epsilon",
            "--out",
            "run",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(note), "{err}");
    // Its values are those of the same image data without the orientation: the pixels as stored.
    for (file, out) in [(turned.as_str(), "a.npy"), ("stored.jpg", "b.npy")] {
        let (code, _, err) = lrp_in(
            dir.path(),
            &[
                "prepare",
                "--shape",
                "3,24,24",
                "--preprocess",
                "imagenet",
                "--size",
                "24",
                "--image",
                file,
                "--out",
                out,
            ],
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(err.contains("EXIF"), file == turned, "{err}");
    }
    let (a, b) = (read(&dir.path().join("a.npy")), read(&dir.path().join("b.npy")));
    assert_eq!(a.shape(), [1, 3, 24, 24]);
    assert!(a.iter().zip(b.iter()).all(|(x, y)| x.to_bits() == y.to_bits()));
}

#[test]
fn a_class_is_named_by_its_label_with_labels() {
    let dir = tempfile::tempdir().unwrap();
    // Ten classes, two sharing a name, and names that contain each other.
    let names = ["cat", "tiger cat", "Tabby", "dog", "hotdog", "x", "x", "y", "z", "w"];
    let labels = dir.path().join("classes.txt");
    std::fs::write(&labels, names.join("\n") + "\n").unwrap();
    let (labels, model, chelsea) = (labels.to_str().unwrap(), abs(MODEL), photo("chelsea.png"));
    let run = |target: &str, with_labels: bool| {
        let mut args = vec![
            "explain", "--model", &model, "--image", &chelsea, "--size", "64", "--rule", "epsilon", "--print",
            "--target", target,
        ];
        if with_labels {
            args.extend(["--labels", labels]);
        }
        lrp_in(dir.path(), &args)
    };
    // Exact name, then the same name in another case; a number is still a number.
    for (target, class) in [
        ("tiger cat", "1 tiger cat"),
        ("dog", "3 dog"),
        ("tabby", "2 Tabby"),
        ("4", "4 hotdog"),
    ] {
        let (code, out, err) = run(target, true);
        assert_eq!(code, 0, "{target}: {err}");
        assert!(out.contains(&format!("explained class {class} ")), "{target}: {out}");
    }
    let refusals = [
        ("ca", true, "names containing it: 0 cat, 1 tiger cat"),
        ("x", true, "2 classes have that name (5 x, 6 x)"),
        ("lion", true, "no class has that name"),
        ("dog", false, "a class name needs --labels"),
    ];
    for (target, with_labels, why) in refusals {
        let (code, _, err) = run(target, with_labels);
        assert_eq!(code, 1, "{target}: {err}");
        assert!(err.contains(why), "{target}: {err}");
    }
}
