//! The README is true: its first example prints what the README shows, and every `lrp` command in its shell blocks
//! runs as written (in a scratch folder with the repository's `data/` linked in, so the commands' outputs land
//! there). `lrp train` commands are run by `tests/reproducible.rs` (they take minutes); `lrp view` needs a terminal
//! (`tests/cli_view.rs` runs it in tmux), so here it must say exactly that; the Slurm recipe runs as eight array
//! tasks and then its merge job.

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

#[test]
fn every_lrp_command_in_the_readme_runs_as_written() {
    let scratch = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(root().join("data"), scratch.path().join("data")).unwrap();
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
