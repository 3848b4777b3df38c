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
    assert!(first.contains('▀'), "half-block cells:\n{first}");
    tmux.run(&["send-keys", "-t", "view", "Right"]);
    let second = tmux.wait_for("index 1/9999");
    assert_ne!(first, second, "the screen changed after →");
    assert!(second.contains("label 2"), "{second}");
    // Shift-Tab from the first model wraps to the last shipped one: the residual network, a graph.
    tmux.run(&["send-keys", "-t", "view", "BTab"]);
    let resnet = tmux.wait_for_all(&["mnist-resnet", "probabilities"]);
    assert!(resnet.contains("index 1/9999") && resnet.contains('▀'), "{resnet}");
    tmux.run(&["send-keys", "-t", "view", "q"]);
    let last = tmux.wait_for("LRP-EXITED");
    assert!(last.contains("LRP-EXITED 0"), "the viewer exits cleanly:\n{last}");
}
