//! `lrp eval`: pixel flipping on the shipped CNN.

mod common;

use common::*;

#[test]
fn epsilon_gamma_box_beats_the_random_order_on_the_shipped_cnn() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("eval");
    let text = lrp_ok(&[
        "eval",
        "--model",
        "data/models/mnist-cnn.lrpm",
        "--data",
        "data/mnist",
        "--rule",
        "epsilon-gamma-box",
        "--rule",
        "gradient",
        "--limit",
        "64",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(text.contains("| random order |"), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["count"], 64);
    let rule = &report["rules"][0];
    assert_eq!(rule["spec"], "epsilon-gamma-box");
    let steps = report["steps"].as_u64().unwrap() as usize;
    assert_eq!(steps, 49, "7×7 regions of 4×4 pixels");
    assert_eq!(rule["curve"].as_array().unwrap().len(), steps + 1);
    let ours = rule["aopc"].as_f64().unwrap();
    let random = report["random"]["aopc"].as_f64().unwrap();
    assert!(ours > random * 1.2, "epsilon-gamma-box AOPC {ours} vs random {random}");
    // The curve starts at the mean explained logit and falls.
    let curve: Vec<f64> = rule["curve"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(curve[10] < curve[0]);
    assert!(
        std::fs::read_to_string(out.join("report.md"))
            .unwrap()
            .contains("| 1 |")
    );
    let png = std::fs::read(out.join("curves.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // A folder that holds something else is refused.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"keep").unwrap();
    let err = lrp_err(&[
        "eval",
        "--model",
        "data/models/mnist-cnn.lrpm",
        "--data",
        "data/mnist",
        "--rule",
        "epsilon",
        "--limit",
        "4",
        "--out",
        foreign.to_str().unwrap(),
    ]);
    assert!(err.contains("refusing"), "{err}");
    // A baseline that overflows the model is an error, never NaN in the report.
    for baseline in ["3e38", "inf"] {
        let out = dir.path().join(format!("b-{baseline}"));
        let err = lrp_err(&[
            "eval",
            "--model",
            "data/models/mnist-cnn.lrpm",
            "--data",
            "data/mnist",
            "--rule",
            "epsilon",
            "--limit",
            "2",
            "--baseline",
            baseline,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            err.contains("baseline") || err.contains("overflows"),
            "{baseline}: {err}"
        );
        assert!(!out.join("report.md").exists());
    }
    // --steps 0 would remove nothing: refused, nothing written (it used to exit 0 with empty curves).
    let out = dir.path().join("steps0");
    let err = lrp_err(&[
        "eval",
        "--model",
        "cnn",
        "--data",
        "data/mnist",
        "--rule",
        "epsilon",
        "--limit",
        "2",
        "--steps",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("--steps 0"), "{err}");
    assert!(!out.join("report.json").exists());
}
