//! `lrp view` end to end in a real terminal: an 80×24 tmux pane.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::root;

struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        // -u: UTF-8 whatever the locale of the test environment.
        let out = Command::new("tmux")
            .arg("-u")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "view"])
    }

    fn wait_for(&self, needle: &str) -> String {
        self.wait_for_all(&[needle])
    }

    fn wait_for_all(&self, needles: &[&str]) -> String {
        let needle = needles.join(" and ");
        let start = Instant::now();
        loop {
            let s = self.screen();
            if needles.iter().all(|n| s.contains(n)) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "waited for {needle:?}; the screen is:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

#[test]
fn lrp_view_draws_moves_and_quits_in_an_80x24_pane() {
    let version = Command::new("tmux").arg("-V").output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "this test needs tmux; .ci/run installs it (apt-get install tmux)"
    );
    let tmux = Tmux {
        socket: format!("lrp-view-test-{}", std::process::id()),
    };
    let command = format!("{} view; echo LRP-EXITED $?; sleep 10", env!("CARGO_BIN_EXE_lrp"));
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "view",
        "-x",
        "80",
        "-y",
        "24",
        "-c",
        root().to_str().unwrap(),
        &command,
    ]);
    let first = tmux.wait_for("probabilities");
    assert!(first.contains("index 0/9999") && first.contains("label 7"), "{first}");
    // It opens on the CNN with the composite most people use.
    assert!(
        first.contains("model mnist-cnn") && first.contains("rule epsilon-gamma-box"),
        "{first}"
    );
    assert!(first.contains('▀'), "half-block cells:\n{first}");
    tmux.run(&["send-keys", "-t", "view", "Right"]);
    let second = tmux.wait_for("index 1/9999");
    assert_ne!(first, second, "the screen changed after →");
    assert!(second.contains("label 2"), "{second}");
    // Shift-Tab from the first model wraps to the last shipped one: the vision transformer, a graph; once more, the
    // residual network.
    tmux.run(&["send-keys", "-t", "view", "BTab"]);
    let vit = tmux.wait_for_all(&["mnist-vit", "probabilities"]);
    assert!(
        vit.contains("index 1/9999") && vit.contains('▀') && vit.contains("layernorm"),
        "{vit}"
    );
    tmux.run(&["send-keys", "-t", "view", "BTab"]);
    let resnet = tmux.wait_for_all(&["mnist-resnet", "probabilities"]);
    assert!(resnet.contains("index 1/9999") && resnet.contains('▀'), "{resnet}");
    tmux.run(&["send-keys", "-t", "view", "q"]);
    let last = tmux.wait_for("LRP-EXITED");
    assert!(last.contains("LRP-EXITED 0"), "the viewer exits cleanly:\n{last}");
}

fn start(name: &str, width: u16, height: u16, args: &str, dir: &std::path::Path) -> Tmux {
    let version = Command::new("tmux").arg("-V").output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "this test needs tmux; .ci/run installs it (apt-get install tmux)"
    );
    let tmux = Tmux {
        socket: format!("lrp-{name}-{}", std::process::id()),
    };
    let command = format!(
        "{} view {args}; echo LRP-EXITED $?; sleep 10",
        env!("CARGO_BIN_EXE_lrp")
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "view",
        "-x",
        &width.to_string(),
        "-y",
        &height.to_string(),
        "-c",
        dir.to_str().unwrap(),
        &command,
    ]);
    tmux
}

/// SGR (1006) mouse reports: a left press, drags through `points`, a release (1-based cells, as terminals send).
fn sgr_stroke(points: &[(u16, u16)]) -> String {
    let mut s = String::new();
    let (c0, r0) = points[0];
    s.push_str(&format!("\x1b[<0;{c0};{r0}M"));
    for &(c, r) in &points[1..] {
        s.push_str(&format!("\x1b[<32;{c};{r}M"));
    }
    let (c1, r1) = *points.last().unwrap();
    s.push_str(&format!("\x1b[<0;{c1};{r1}m"));
    s
}

#[test]
fn draw_mode_in_tmux_a_one_drawn_with_the_mouse_is_a_one_from_an_empty_folder() {
    // From an empty folder: the shipped models and digits are built into the binary; `s` saves here.
    let dir = tempfile::tempdir().unwrap();
    let tmux = start("draw", 80, 24, "--draw", dir.path());
    tmux.wait_for("draw a digit");
    // The viewer asked the terminal for SGR mouse reports (and the alternate screen).
    let modes = |t: &Tmux| {
        t.run(&[
            "display",
            "-p",
            "-t",
            "view",
            "#{mouse_any_flag}#{mouse_sgr_flag}#{alternate_on}",
        ])
    };
    assert_eq!(modes(&tmux).trim(), "111");
    // A vertical stroke down the canvas (columns 1–28, rows 3–16 on screen, 1-based).
    let points: Vec<(u16, u16)> = (4..=15).map(|r| (15, r)).collect();
    tmux.run(&["send-keys", "-t", "view", "-l", &sgr_stroke(&points)]);
    let screen = tmux.wait_for("pred  1");
    assert!(
        screen.contains("your drawing") && screen.contains("model mnist-cnn"),
        "{screen}"
    );
    tmux.run(&["send-keys", "-t", "view", "s"]);
    let saved = tmux.wait_for("saved");
    assert!(saved.contains("drawing-1.npy"), "{saved}");
    assert!(dir.path().join("drawing-1.npy").is_file() && dir.path().join("drawing-1.png").is_file());
    // The saved input explains as a 1 on the command line too.
    let out = Command::new(env!("CARGO_BIN_EXE_lrp"))
        .args(["predict", "--model", "cnn", "--input", "drawing-1.npy"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("predicted classes: 1"), "{text}");
    // Esc dismisses the message, the next Esc leaves draw mode, then q quits and the terminal is given back.
    tmux.run(&["send-keys", "-t", "view", "Escape"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux.run(&["send-keys", "-t", "view", "Escape"]);
    tmux.wait_for("index 0/9999");
    tmux.run(&["send-keys", "-t", "view", "q"]);
    let last = tmux.wait_for("LRP-EXITED");
    assert!(last.contains("LRP-EXITED 0"), "{last}");
    // ... and gave the terminal back: no mouse reporting left on, the normal screen again.
    assert_eq!(modes(&tmux).trim(), "000");
}

#[test]
fn a_200_by_60_pane_gets_pictures_three_times_as_large() {
    let tmux = start("big", 200, 60, "", &root());
    let screen = tmux.wait_for("probabilities");
    let row = screen.lines().nth(2).unwrap();
    let cells = row.chars().take_while(|&c| c == '▀').count();
    assert_eq!(cells, 84, "{screen}");
    tmux.run(&["send-keys", "-t", "view", "q"]);
    tmux.wait_for("LRP-EXITED 0");
}

/// The README's capture of the viewer at 80×24 without colors is what `lrp view` shows (trailing blanks aside).
#[test]
fn the_readme_capture_is_what_lrp_view_shows_at_80x24() {
    let tmux = Tmux {
        socket: format!("lrp-view-readme-{}", std::process::id()),
    };
    let command = format!("NO_COLOR=1 {} view; sleep 10", env!("CARGO_BIN_EXE_lrp"));
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "view",
        "-x",
        "80",
        "-y",
        "24",
        "-c",
        root().to_str().unwrap(),
        &command,
    ]);
    let screen = tmux.wait_for_all(&["probabilities", "relevance sums", "|R|≤"]);
    let screen: Vec<&str> = screen.lines().map(str::trim_end).collect();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme.find("```\n lrp view │").expect("the capture in the README") + 4;
    let end = start + readme[start..].find("```").unwrap();
    let shown: Vec<&str> = readme[start..end].lines().map(str::trim_end).collect();
    assert_eq!(screen, shown, "the README's capture differs from the screen");
}

#[test]
fn photos_in_the_viewer_at_80x24_and_200x60_with_class_names() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..10).map(|k| format!("thing-{k}")).collect();
    std::fs::write(dir.path().join("classes.txt"), names.join("\n")).unwrap();
    let args = format!(
        "--model {} --image {} --preprocess imagenet --labels classes.txt",
        root()
            .join("tests/fixtures/scale/resnet_basic_l2-legacy.onnx")
            .display(),
        root().join("data/photos").display()
    );
    for (w, h) in [(80u16, 24u16), (200, 60)] {
        let tmux = start(&format!("photos-{w}"), w, h, &args, dir.path());
        let first = tmux.wait_for_all(&["probabilities", "chelsea.png"]);
        assert!(
            first.contains("photo") && first.contains('▀') && first.contains("thing-"),
            "{first}"
        );
        assert!(first.contains("index 0/2"), "{first}");
        // The pictures fit the pane: no picture row runs past the pane.
        assert!(first.lines().count() <= h as usize, "{first}");
        tmux.run(&["send-keys", "-t", "view", "Right"]);
        tmux.wait_for("coffee.png");
        tmux.run(&["send-keys", "-t", "view", "v"]);
        let compare = tmux.wait_for("photo 1/2 coffee.png");
        assert!(compare.contains("input") && compare.contains("max |R|"), "{compare}");
        tmux.run(&["send-keys", "-t", "view", "d"]);
        tmux.wait_for("draw mode draws 28×28 digits");
        tmux.run(&["send-keys", "-t", "view", "q"]);
        let last = tmux.wait_for("LRP-EXITED");
        assert!(last.contains("LRP-EXITED 0"), "{last}");
    }
}

/// The concept screen in a real 120×40 terminal, with reference samples from a folder `lrp concepts` wrote over
/// the first 2,000 test digits: from the layer view, `k` on the relu after the second convolution shows a channel
/// of `#1` for the 7 at index 0, its decomposition into `#0` and its reference samples from the folder.
#[test]
fn the_concept_screen_takes_its_reference_samples_from_lrp_concepts() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("c");
    common::lrp_ok(&[
        "concepts",
        "--model",
        "cnn",
        "--data",
        "data/mnist",
        "--layer",
        "#1",
        "--limit",
        "2000",
        "--out",
        folder.to_str().unwrap(),
    ]);
    let args = format!("--concepts {}", folder.display());
    let tmux = start("concepts", 120, 40, &args, &root());
    tmux.wait_for("logit 14.2");
    // l, then ] to the layer that reads #1's output (n4, the relu after it), then k.
    tmux.run(&["send-keys", "-t", "view", "l"]);
    tmux.wait_for("layer #0");
    for _ in 0..4 {
        tmux.run(&["send-keys", "-t", "view", "]"]);
    }
    tmux.wait_for("layer n4 relu");
    tmux.run(&["send-keys", "-t", "view", "k"]);
    let screen = tmux.wait_for_all(&["concept #1 conv2d", "fed by #0", "reference samples of channel"]);
    assert!(screen.contains("rank 1 of 32"), "{screen}");
    assert!(
        screen.contains(&format!("from {} (2000 samples)", folder.display())),
        "{screen}"
    );
    // The thumbnails' captions are the folder's top samples for the channel shown.
    let channel: usize = screen
        .split("channel ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("the title names the channel");
    let top: ndarray::Array2<i64> = ndarray_npy::read_npy(folder.join("relmax-top.npy")).unwrap();
    let first = format!("#{} ", top[[0, channel]]);
    assert!(
        screen.contains(&first),
        "the best reference sample {first} is shown:\n{screen}"
    );
    tmux.run(&["send-keys", "-t", "view", "q"]);
    let last = tmux.wait_for("LRP-EXITED");
    assert!(last.contains("LRP-EXITED 0"), "{last}");
}
