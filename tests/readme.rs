//! The README is true: its first example prints what the README shows, and every `lrp` command in its shell blocks
//! runs as written (in a scratch folder with the repository's `data/` linked in, so the commands' outputs land
//! there). `lrp train` commands are run by `tests/reproducible.rs` (they take minutes); `lrp view` needs a terminal
//! (`tests/cli_view.rs` runs it in tmux), so here it must say exactly that; the Slurm recipe runs as eight array
//! tasks and then its merge job. The photo section's `resnet50.onnx` (an export of torchvision's, too large for the
//! repository) is stood in for by a small convolutional network with the same input and 1000 outputs, built here.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// The README's fenced blocks: `(language, lines)`.
fn blocks() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut out = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for line in readme.lines() {
        match (line.strip_prefix("```"), current.take()) {
            (Some(lang), None) => current = Some((lang.trim().to_string(), Vec::new())),
            (Some(_), Some(block)) => out.push(block),
            (None, Some(mut block)) => {
                block.1.push(line.to_string());
                current = Some(block);
            }
            (None, None) => {}
        }
    }
    out
}

/// A shell block's commands, continuation lines joined.
fn commands(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in lines {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') && current.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

/// Runs `command` with bash in `dir`, the binary first on the PATH as `lrp`; returns (status, stdout, stderr).
fn bash(dir: &Path, command: &str, env: &[(&str, String)]) -> (i32, String, String) {
    let bin = Path::new(env!("CARGO_BIN_EXE_lrp")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .args(["-c", command])
        .current_dir(dir)
        .env("PATH", path)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("bash runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_first_example_prints_what_the_readme_shows() {
    let blocks = blocks();
    let (_, first) = &blocks[0];
    let run = first
        .iter()
        .find(|l| l.starts_with("cargo run --release -- "))
        .expect("the first block's run command");
    let args: Vec<&str> = run
        .trim_start_matches("cargo run --release -- ")
        .split_whitespace()
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_lrp"))
        .args(&args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success());
    // The block after the one that follows "What the first command prints".
    let shown = blocks
        .iter()
        .skip(1)
        .find(|(lang, _)| lang.is_empty())
        .map(|(_, lines)| lines.join("\n") + "\n")
        .unwrap();
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        printed, shown,
        "the README's first example output differs from what lrp prints"
    );
}

/// A stand-in for the README's `resnet50.onnx`: input `[N, 3, 224, 224]`, a 7×7 stride-8 convolution to 4 channels,
/// ReLU, global average pooling, and a dense layer to 1000 classes (fixed, arbitrary weights).
fn stand_in_imagenet_model() -> Vec<u8> {
    use common::onnx::{f32s, int_attr, ints_attr, model, op};
    let w = |i: usize| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 0.2;
    let values = |n: usize, f: &dyn Fn(usize) -> f32| (0..n).map(f).collect::<Vec<f32>>();
    model(
        vec![
            op(
                "Conv",
                &["x", "cw", "cb"],
                &["conv"],
                vec![
                    ints_attr("kernel_shape", &[7, 7]),
                    ints_attr("strides", &[8, 8]),
                    ints_attr("pads", &[3, 3, 3, 3]),
                ],
            ),
            op("Relu", &["conv"], &["relu"], vec![]),
            op("GlobalAveragePool", &["relu"], &["pool"], vec![]),
            op("Flatten", &["pool"], &["flat"], vec![]),
            op("Gemm", &["flat", "fw", "fb"], &["logits"], vec![int_attr("transB", 1)]),
        ],
        vec![
            f32s("cw", &[4, 3, 7, 7], &values(4 * 3 * 49, &w)),
            f32s("cb", &[4], &values(4, &|i| 0.1 * i as f32)),
            f32s("fw", &[1000, 4], &values(4000, &|i| w(i + 7) * 10.0)),
            f32s("fb", &[1000], &values(1000, &|_| 0.0)),
        ],
        17,
        &[None, Some(3), Some(224), Some(224)],
        ("logits", &[None, Some(1000)]),
    )
}

/// The AOPC figures the README gives for an `lrp eval` command are the ones it prints (rounded to 2 decimals).
fn check_aopc_figures(readme: &str, stdout: &str) {
    let mut checked = 0;
    for line in stdout.lines().filter(|l| l.starts_with("| ") && l.ends_with(" |")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let (Some(rule), Some(value)) = (cells.get(1), cells.get(2).and_then(|v| v.parse::<f64>().ok())) else {
            continue;
        };
        let text = format!("{rule} {value:.2}");
        assert!(
            readme.contains(&text),
            "the README does not give `{text}` as lrp eval prints it:\n{stdout}"
        );
        checked += 1;
    }
    assert!(checked >= 3, "no AOPC table in:\n{stdout}");
}

#[test]
fn every_lrp_command_in_the_readme_runs_as_written() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(root().join("data"), scratch.path().join("data")).unwrap();
    std::fs::write(scratch.path().join("resnet50.onnx"), stand_in_imagenet_model()).unwrap();
    let mut ran = 0;
    let mut slurm: Vec<Vec<String>> = Vec::new();
    for (lang, lines) in blocks() {
        if lang != "sh" {
            continue;
        }
        if lines.iter().any(|l| l.starts_with("#SBATCH")) || lines.iter().any(|l| l.contains("merge runs/part-")) {
            slurm.push(commands(&lines));
            continue;
        }
        for command in commands(&lines) {
            let command = command.trim_start_matches("./target/release/").to_string();
            if !command.starts_with("lrp ") || command.starts_with("lrp train ") {
                continue;
            }
            let (status, stdout, stderr) = bash(scratch.path(), &command, &[]);
            if command.starts_with("lrp view") {
                assert!(
                    status == 1 && stderr.contains("needs a terminal"),
                    "{command}: {stderr}"
                );
            } else {
                assert_eq!(status, 0, "{command}:\n{stdout}{stderr}");
            }
            if command.starts_with("lrp eval ") {
                check_aopc_figures(&readme, &stdout);
            }
            ran += 1;
        }
    }
    assert!(ran >= 6, "{ran} commands");
    // The Slurm recipe: the job script as each of its eight array tasks, then the merge job.
    assert_eq!(slurm.len(), 2, "the job script and the merge script");
    for task in 0..8 {
        let env = [
            ("SLURM_ARRAY_TASK_ID", task.to_string()),
            ("SLURM_ARRAY_TASK_COUNT", "8".to_string()),
            ("SLURM_CPUS_PER_TASK", "2".to_string()),
        ];
        for command in &slurm[0] {
            let (status, stdout, stderr) = bash(scratch.path(), command, &env);
            assert_eq!(status, 0, "task {task}: {command}:\n{stdout}{stderr}");
        }
    }
    for command in &slurm[1] {
        let (status, stdout, stderr) = bash(scratch.path(), command, &[]);
        assert_eq!(status, 0, "{command}:\n{stdout}{stderr}");
        assert!(stdout.contains("merged 8 shards: 10000 samples"), "{stdout}{stderr}");
    }
}
