//! Train → export → serve as one chain: a few training updates on the tiny checkpoint with
//! `loc3r-train train`, the run's checkpoint exported by the library, and `loc3r-serve run`
//! answering with the trained bundle, whose heads differ from the untrained ones.

use std::process::Command;

use loc3r_e2e::{serve_exe, synthetic_video};
use loc3r_export::bundle::{export_bundle, BundleOptions};
use loc3r_export::checkpoint::{Checkpoint, Requirements};
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_train::sample::Sample;

fn train_exe() -> std::path::PathBuf {
    serve_exe().with_file_name("loc3r-train")
}

fn localize(bundle: &std::path::Path, video: &std::path::Path) -> serde_json::Value {
    let out = Command::new(serve_exe())
        .args(["run", "--json", "--frames", "2", "--max-new-tokens", "2", "--question", "Where is the door?", "--bundle"])
        .arg(bundle)
        .arg("--video")
        .arg(video)
        .output()
        .expect("loc3r-serve runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().expect("one JSON line")).expect("JSON")
}

#[test]
fn a_trained_checkpoint_exports_and_serves() {
    let exe = train_exe();
    // `cargo test --workspace` builds it with the train crate's tests.
    assert!(exe.is_file(), "{} is missing: run `cargo build -p loc3r-train` (or `cargo test --workspace`) first", exe.display());
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    make_tiny(&ck, &TinyOptions { seed: 8, ..TinyOptions::default() }, |_, _| {}).unwrap();
    let cfg = Checkpoint::open(&ck, None, Requirements::default()).unwrap().config().clone();
    let samples = dir.path().join("samples");
    std::fs::create_dir_all(&samples).unwrap();
    for i in 0..3 {
        Sample::random_for(&cfg, 2, i).write(&samples.join(format!("{i}.safetensors"))).unwrap();
    }
    let run = dir.path().join("run");
    let train = |extra: &[&str]| {
        Command::new(&exe)
            .args(["train", "--train", "heads,projector", "--steps", "4", "--lr", "1e-2", "--threads", "1", "--checkpoint"])
            .arg(&ck)
            .arg("--samples")
            .arg(&samples)
            .arg("--out")
            .arg(&run)
            .args(extra)
            .output()
            .expect("loc3r-train runs")
    };
    let first = train(&["--stop-after", "2"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(String::from_utf8_lossy(&first.stdout).contains("run the same command again"));
    let second = train(&[]);
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert_eq!(std::fs::read_to_string(run.join("log.jsonl")).unwrap().lines().count(), 4);

    let video = synthetic_video(dir.path(), "room.mp4", 96, 72, 8);
    let base_bundle = dir.path().join("base_bundle");
    let trained_bundle = dir.path().join("trained_bundle");
    export_bundle(&ck, &base_bundle, &BundleOptions::default(), |_| {}).unwrap();
    export_bundle(&run.join("checkpoint"), &trained_bundle, &BundleOptions::default(), |_| {}).unwrap();
    let base = localize(&base_bundle, &video);
    let trained = localize(&trained_bundle, &video);
    assert!(trained["position"]["x"].as_f64().is_some_and(f64::is_finite));
    assert_ne!(base["position"], trained["position"], "the served bundle carries the trained heads");
}
