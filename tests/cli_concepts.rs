//! `lrp explain --condition/--concepts` and `lrp concepts` end to end, against zennit-crp's references
//! (`tests/fixtures/crp/`): conditional heatmaps from a channel file, concept relevance, RelMax/ActMax over the first
//! 2,000 MNIST test images (shards merged byte for byte equal to one run), and bad requests refused with nothing
//! written.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ndarray::{Array2, ArrayD};

const MODEL: &str = "tests/fixtures/crp/mnist-cnn-crp.onnx";

fn crp(name: &str) -> String {
    format!("tests/fixtures/crp/{name}")
}

fn read_f32(path: &Path) -> ArrayD<f32> {
    ndarray_npy::read_npy(path).unwrap()
}

/// Worst per-sample `max|a − b| / max|b|` (NaN fails).
fn relative(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.outer_iter()
        .zip(b.outer_iter())
        .map(|(x, y)| {
            let scale = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let err = x.iter().zip(y.iter()).map(|(p, q)| (p - q).abs()).fold(0.0f32, |m, d| {
                if m.is_nan() || d.is_nan() { f32::NAN } else { m.max(d) }
            });
            err / scale
        })
        .fold(
            0.0f32,
            |m, e| if m.is_nan() || e.is_nan() { f32::NAN } else { m.max(e) },
        )
}

fn explain(out: &Path, extra: &[&str]) -> String {
    let inputs = crp("inputs.npy");
    let targets = crp("mnist-cnn-crp-targets.npy");
    let mut args = vec![
        "explain",
        "--model",
        MODEL,
        "--input",
        &inputs,
        "--targets",
        &targets,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    lrp_ok(&args)
}

#[test]
fn conditional_heatmaps_and_concept_relevance_from_the_command_line_match_zennit_crp() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.npy");
    let top = format!(
        "#1=@{}",
        root()
            .join(crp("mnist-cnn-crp-epsilon-gamma-box-top-channels-1.npy"))
            .display()
    );
    explain(
        &out,
        &[
            "--rule",
            "#0=zbox(0,1); #1=gamma(0.25); #2=epsilon(1e-6); #3=epsilon(1e-6)",
            "--condition",
            &top,
        ],
    );
    let reference = read_f32(&root().join(crp("mnist-cnn-crp-epsilon-gamma-box-cond-1-top.npy")));
    let err = relative(&read_f32(&out), &reference);
    assert!(err <= 1e-5, "each sample's top channel: {err:.2e}");

    explain(&out, &["--rule", "epsilon-plus-flat", "--condition", "#1=0,5,7"]);
    let reference = read_f32(&root().join(crp("mnist-cnn-crp-epsilon-plus-flat-cond-1-0-5-7.npy")));
    let err = relative(&read_f32(&out), &reference);
    assert!(err <= 1e-5, "channels 0, 5, 7: {err:.2e}");

    explain(&out, &["--rule", "epsilon-plus-flat", "--concepts", "#1"]);
    let reference = read_f32(&root().join(crp("mnist-cnn-crp-epsilon-plus-flat-concept-relevance-1.npy")));
    let err = relative(&read_f32(&out), &reference);
    assert!(err <= 1e-5, "concept relevance: {err:.2e}");

    // The decomposition: each sample's top channel at #1 into the channels of #0.
    let top = format!(
        "#1=@{}",
        root()
            .join(crp("mnist-cnn-crp-epsilon-plus-flat-top-channels-1.npy"))
            .display()
    );
    explain(
        &out,
        &["--rule", "epsilon-plus-flat", "--concepts", "#0", "--condition", &top],
    );
    let reference = read_f32(&root().join(crp("mnist-cnn-crp-epsilon-plus-flat-decompose-1-top-into-0.npy")));
    let err = relative(&read_f32(&out), &reference);
    assert!(err <= 1e-5, "decomposition: {err:.2e}");
}

#[test]
fn the_printout_ranks_the_channels_of_a_digit() {
    let text = lrp_ok(&[
        "explain",
        "--model",
        MODEL,
        "--data",
        "data/mnist",
        "--index",
        "0",
        "--rule",
        "epsilon-plus-flat",
        "--concepts",
        "#1",
        "--color",
        "never",
    ]);
    // Digit 0 of the test split is a 7; its most relevant channels at #1, from the reference's concept relevance
    // computed independently in the library test: the line names the layer and gives shares that add to at most
    // 100%.
    let line = text
        .lines()
        .find(|l| l.starts_with("index 0: most relevant channels at #1"))
        .unwrap_or_else(|| panic!("no ranking in\n{text}"));
    let shares: Vec<f64> = line
        .split('(')
        .skip(2)
        .map(|p| p.split('%').next().unwrap().parse::<f64>().unwrap())
        .collect();
    assert_eq!(shares.len(), 5, "{line}");
    assert!(shares.windows(2).all(|w| w[0] >= w[1]), "ranked: {line}");
    assert!(shares.iter().sum::<f64>() <= 100.0 + 1e-6, "{line}");
}

fn concepts(out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "concepts",
        "--model",
        MODEL,
        "--data",
        "data/mnist",
        "--layer",
        "#1",
        "--limit",
        "2000",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    lrp_ok(&args)
}

fn ranking_matches(dir: &Path, name: &str) {
    let got: Array2<f32> = ndarray_npy::read_npy(dir.join(format!("{name}-normalized.npy"))).unwrap();
    let reference: Array2<f32> =
        ndarray_npy::read_npy(root().join(crp(&format!("mnist-cnn-crp-{name}-1-normalized.npy")))).unwrap();
    let err = relative(&got.clone().into_dyn(), &reference.clone().into_dyn());
    assert!(err <= 1e-5, "{name}: {err:.2e}");
    let top: Array2<i64> = ndarray_npy::read_npy(dir.join(format!("{name}-top.npy"))).unwrap();
    let ref_top: Array2<i64> =
        ndarray_npy::read_npy(root().join(crp(&format!("mnist-cnn-crp-{name}-1-top8.npy")))).unwrap();
    assert_eq!(top.dim(), ref_top.dim());
    for ((r, c), &i) in top.indexed_iter() {
        let j = ref_top[[r, c]];
        let gap = (reference[[i as usize, c]] - reference[[j as usize, c]]).abs();
        assert!(i == j || gap < 1e-6, "{name} channel {c} place {r}: {i} vs {j}");
    }
}

#[test]
fn relmax_and_actmax_over_2000_test_images_match_zennit_crp_and_shards_merge_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let text = concepts(&whole, &[]);
    assert!(text.contains("most relevant channels of #1"), "{text}");
    ranking_matches(&whole, "relmax");
    ranking_matches(&whole, "actmax");
    let again = concepts(&whole, &["--resume", "--png", "--class", "7"]);
    assert!(again.contains("nothing to do"), "{again}");
    // The atlas shows the six channels whose mean normalized relevance over the samples explained as 7 is largest.
    let norm: Array2<f32> = ndarray_npy::read_npy(whole.join("relmax-normalized.npy")).unwrap();
    let targets: ndarray::Array1<i64> = ndarray_npy::read_npy(whole.join("targets.npy")).unwrap();
    let sevens: Vec<usize> = (0..targets.len()).filter(|&i| targets[i] == 7).collect();
    let mean = |c: usize| sevens.iter().map(|&i| norm[[i, c]] as f64).sum::<f64>() / sevens.len() as f64;
    let mut order: Vec<usize> = (0..32).collect();
    order.sort_by(|&a, &b| mean(b).total_cmp(&mean(a)));
    let listed = format!("channels {:?}", &order[..6]);
    assert!(again.contains(&listed), "{listed} in\n{again}");
    let png = std::fs::File::open(whole.join("atlas.png")).unwrap();
    let info = png::Decoder::new(std::io::BufReader::new(png))
        .read_info()
        .unwrap()
        .info()
        .clone();
    assert!(info.width > 600 && info.height > 600, "{}×{}", info.width, info.height);

    let parts: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("s{i}"))).collect();
    for (i, p) in parts.iter().enumerate() {
        let shard = format!("{i}/3");
        concepts(p, &["--shard", &shard, "--chunk", "100", "--threads", "1"]);
        assert!(!p.join("relmax-top.npy").exists(), "a shard ranks nothing on its own");
    }
    let merged = dir.path().join("merged");
    let mut args = vec!["batch", "merge"];
    args.extend(parts.iter().map(|p| p.to_str().unwrap()));
    args.extend(["--out", merged.to_str().unwrap()]);
    lrp_ok(&args);
    for f in [
        "relmax-normalized",
        "relmax-top",
        "actmax-normalized",
        "actmax-top",
        "activation",
    ] {
        let a = std::fs::read(whole.join(format!("{f}.npy"))).unwrap();
        let b = std::fs::read(merged.join(format!("{f}.npy"))).unwrap();
        assert!(a == b, "{f}.npy differs between the merged shards and one run");
    }
}

#[test]
fn bad_concept_requests_are_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c");
    let o = out.to_str().unwrap();
    let base = ["concepts", "--model", MODEL, "--data", "data/mnist", "--out", o];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        lrp_err(&a)
    };
    assert!(with(&["--layer", "#4"]).contains("#4: the network has 4 layers with weights"));
    assert!(with(&["--layer", "n3"]).contains("write #N"));
    assert!(with(&["--layer", "#1", "--rule", "gradient"]).contains("need an LRP rule"));
    assert!(with(&["--layer", "#1", "--top", "0"]).contains("--top 0"));
    assert!(!out.exists(), "nothing is written for a refused request");

    let r = dir.path().join("r.npy");
    let inputs = crp("inputs.npy");
    let explain = |extra: &[&str]| {
        let mut a = vec![
            "explain",
            "--model",
            MODEL,
            "--input",
            &inputs,
            "--rule",
            "epsilon",
            "--out",
            r.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        lrp_err(&a)
    };
    assert!(explain(&["--condition", "#1"]).contains("is not #N=C"));
    assert!(explain(&["--condition", "#1=x"]).contains("is not a channel list"));
    assert!(explain(&["--condition", "#1=32"]).contains("channel 32 does not exist at #1: it has 32 channels"));
    assert!(explain(&["--condition", "#1=-1"]).contains("is not a channel list"));
    // A channel file for the wrong number of samples, with a negative channel, or of floats.
    let wrong = dir.path().join("wrong.npy");
    ndarray_npy::write_npy(&wrong, &ndarray::Array1::<i64>::zeros(3)).unwrap();
    let arg = format!("#1=@{}", wrong.display());
    assert!(explain(&["--condition", &arg]).contains("channels for 3 samples; the input has 16"));
    ndarray_npy::write_npy(&wrong, &ndarray::Array1::<i64>::from_elem(16, -2)).unwrap();
    assert!(explain(&["--condition", &arg]).contains("names channel -2"));
    ndarray_npy::write_npy(&wrong, &ndarray::Array1::<f32>::zeros(16)).unwrap();
    assert!(!explain(&["--condition", &arg]).is_empty());
    assert!(!r.exists(), "nothing is written for a refused request");
}

/// Beside a skip connection the conditional heatmap also holds what goes around the layer: said, where it happens
/// only (the shipped ResNet's #4 has a shortcut beside it, its #0 and the CNN's layers do not).
#[test]
fn a_condition_beside_a_skip_connection_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.npy");
    let o = out.to_str().unwrap();
    let run = |model: &str, cond: &str| {
        lrp_ok(&[
            "explain",
            "--model",
            model,
            "--index",
            "0",
            "--rule",
            "epsilon-plus-flat",
            "--condition",
            cond,
            "--out",
            o,
        ])
    };
    assert!(run("resnet", "#4=3").contains("around #4 by a skip connection"));
    assert!(!run("resnet", "#0=3").contains("skip connection"));
    assert!(!run("cnn", "#1=3").contains("skip connection"));
}
