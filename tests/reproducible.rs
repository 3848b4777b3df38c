//! The shipped models are what the README's commands make, and training bits do not drift unnoticed.
//!
//! The MLP and the CNN are retrained in full with their README commands and compared byte for byte with the shipped
//! files (about 30 s and 2.5 min). The LSTM, the residual network and the vision transformer take 8, 15 and 20
//! minutes, so their first optimizer steps (`--limit 512 --epochs 1`: 8 updates, 4 for the transformer's batches of
//! 128) are compared with digests recorded when the shipped files were made: a
//! change to a kernel or to the training loop that alters training bits fails here, and the shipped models must then
//! be re-made (commands in the README) and the digests updated. The three are also retrained in full by ignored
//! tests (`cargo test --release --test reproducible -- --ignored`, about 45 minutes).

mod common;

use common::*;

/// FNV-1a over a file's bytes (the project's one hash).
fn digest(path: &std::path::Path) -> String {
    format!("{:016x}", lrp_core::hash::fnv1a(&std::fs::read(path).unwrap()))
}

/// The retrain commands of the README, by model file.
fn readme_command(model: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("./target/release/lrp train") && l.ends_with(&format!("--out data/models/{model}")))
        .unwrap_or_else(|| panic!("the README has no retrain command for {model}"));
    line.split_whitespace().skip(1).map(String::from).collect()
}

/// Runs the README's retrain command for `model` into a temporary folder and compares the result with the shipped
/// file.
fn retrain_matches(model: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(model);
    let mut args = readme_command(model);
    let n = args.len();
    args[n - 1] = out.to_str().unwrap().to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lrp_ok(&args);
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(root().join("data/models").join(model)).unwrap(),
        "retraining {model} with the README's command gives another file: re-make the shipped models"
    );
}

#[test]
fn the_shipped_mlp_is_what_its_readme_command_makes() {
    retrain_matches("mnist-mlp.lrpm");
}

#[test]
fn the_shipped_cnn_is_what_its_readme_command_makes() {
    retrain_matches("mnist-cnn.lrpm");
}

#[test]
fn the_first_training_steps_of_every_architecture_keep_their_bits() {
    let dir = tempfile::tempdir().unwrap();
    let mut got = Vec::new();
    for model in ["mnist-lstm.lrpm", "mnist-resnet.lrpm", "mnist-vit.lrpm"] {
        let out = dir.path().join(model);
        let mut args = readme_command(model);
        let epochs = args.iter().position(|a| a == "--epochs").unwrap();
        args[epochs + 1] = "1".into();
        let n = args.len();
        args[n - 1] = out.to_str().unwrap().to_string();
        args.extend(["--limit".to_string(), "512".to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lrp_ok(&args);
        got.push((model, digest(&out)));
    }
    let recorded = [
        ("mnist-lstm.lrpm", "6150a05223b45f2a"),
        ("mnist-resnet.lrpm", "4b109086008d29ec"),
        ("mnist-vit.lrpm", "a9e46f0ecaaf8549"),
    ];
    let got: Vec<(&str, &str)> = got.iter().map(|(m, d)| (*m, d.as_str())).collect();
    assert_eq!(
        got, recorded,
        "training bits changed: re-make the shipped models and record the new digests"
    );
}

/// The three slow models retrained in full with their README commands (8, 15 and 20 minutes on this project's
/// machine): outside the default run, `cargo test --release --test reproducible -- --ignored`.
#[test]
#[ignore = "retrains the LSTM in full (about 8 minutes): run with --ignored"]
fn the_shipped_lstm_is_what_its_readme_command_makes() {
    retrain_matches("mnist-lstm.lrpm");
}

#[test]
#[ignore = "retrains the residual network in full (about 15 minutes): run with --ignored"]
fn the_shipped_resnet_is_what_its_readme_command_makes() {
    retrain_matches("mnist-resnet.lrpm");
}

#[test]
#[ignore = "retrains the vision transformer in full (about 20 minutes): run with --ignored"]
fn the_shipped_vit_is_what_its_readme_command_makes() {
    retrain_matches("mnist-vit.lrpm");
}
