//! The demo's chain at test size: synthetic rooms (`loc3r-synth`) → prepared samples
//! (`loc3r-train prepare`, frozen encoders through an exported bundle) → a few training updates →
//! export → `loc3r-eval synth` scoring the trained bundle with its baselines on the rooms.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use loc3r_e2e::serve_exe;
use loc3r_export::bundle::{export_bundle, BundleOptions};
use loc3r_export::checkpoint::{Checkpoint, Requirements};
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_train::sample::Sample;

fn exe(name: &str) -> PathBuf {
    let path = serve_exe().with_file_name(name);
    // `cargo test --workspace` builds every binary of the workspace.
    assert!(path.is_file(), "{} is missing: run `cargo build --workspace --bins` (or `cargo test --workspace`) first", path.display());
    path
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn export(ck: &Path, out: &Path) {
    export_bundle(ck, out, &BundleOptions::default(), |_| {}).expect("export");
}

#[test]
fn synthetic_rooms_prepare_train_export_and_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let rooms = dir.path().join("rooms");
    let synth = Command::new(exe("loc3r-synth"))
        .args(["--rooms", "2", "--seed", "5", "--frames", "6", "--size", "64x48", "--questions", "3", "--sample-frames", "3", "--out"])
        .arg(&rooms)
        .output()
        .unwrap();
    ok(synth, "loc3r-synth");
    let questions = rooms.join("questions.jsonl");
    let asked = std::fs::read_to_string(&questions).unwrap().lines().count();
    assert!(asked >= 2, "the rooms have questions");

    let ck = dir.path().join("ck");
    make_tiny(&ck, &TinyOptions { seed: 9, ..TinyOptions::default() }, |_, _| {}).unwrap();
    let init_bundle = dir.path().join("init-bundle");
    export(&ck, &init_bundle);

    // Prepare: one sample per question, every sample valid for the checkpoint, with a pose.
    let samples = dir.path().join("samples");
    let prepare = |extra: &[&str]| {
        let out = Command::new(exe("loc3r-train"))
            .args(["prepare", "--json", "--frames", "3", "--bundle"])
            .arg(&init_bundle)
            .arg("--scenes")
            .arg(rooms.join("scenes"))
            .arg("--questions")
            .arg(&questions)
            .arg("--out")
            .arg(&samples)
            .args(extra)
            .output()
            .unwrap();
        serde_json::from_str::<serde_json::Value>(&ok(out, "loc3r-train prepare")).expect("JSON report")
    };
    let report = prepare(&[]);
    assert_eq!(report["samples"], asked, "{report}");
    assert_eq!(report["scenes"], 2);
    let cfg = Checkpoint::open(&ck, None, Requirements::default()).unwrap().config().clone();
    let index = std::fs::read_to_string(samples.join("index.jsonl")).unwrap();
    assert_eq!(index.lines().count(), asked);
    for line in index.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        let sample = Sample::read(&samples.join(entry["file"].as_str().unwrap())).unwrap();
        sample.validate(&cfg).unwrap();
        assert_eq!(sample.frames, 3);
        assert_eq!(sample.situation_valid, 1.0);
        let want = entry["position"].as_array().unwrap();
        assert!((f64::from(sample.pos_target[0]) - want[0].as_f64().unwrap()).abs() < 1e-5);
        assert!(sample.bev_mask.contains(&1.0), "some grid tokens have BEV ground truth");
    }
    // A second run resumes: nothing is recomputed, the same samples are reported.
    let again = prepare(&[]);
    assert_eq!(again["scenes_resumed"], 2);
    assert_eq!(again["samples"], asked);

    // Train a few updates, export, evaluate with the baselines.
    let run = dir.path().join("run");
    let train = Command::new(exe("loc3r-train"))
        .args(["train", "--train", "heads,projector", "--steps", "3", "--lr", "1e-2", "--threads", "1", "--checkpoint"])
        .arg(&ck)
        .arg("--samples")
        .arg(&samples)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    ok(train, "loc3r-train train");
    let bundle = dir.path().join("bundle");
    export(&run.join("checkpoint"), &bundle);
    let eval = Command::new(exe("loc3r-eval"))
        .args(["synth", "--json", "--max-new-tokens", "2", "--bundle"])
        .arg(&bundle)
        .arg("--questions")
        .arg(&questions)
        .arg("--train-questions")
        .arg(&questions)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_str(&ok(eval, "loc3r-eval synth")).unwrap();
    let methods: Vec<&str> = report["methods"].as_array().unwrap().iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["model", "blank video", "mean training pose", "random pose"]);
    for m in report["methods"].as_array().unwrap() {
        let l = &m["localization"];
        assert_eq!(l["n"], asked);
        for key in ["acc_0_5m", "acc_1_0m", "acc_15deg", "acc_30deg"] {
            let v = l[key].as_f64().unwrap();
            assert!((0.0..=100.0).contains(&v), "{key} = {v}");
        }
    }
    assert!(report["methods"][3]["answers"].is_null(), "the random baseline does not answer");
}
