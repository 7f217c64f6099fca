//! The command line: a small run succeeds with a JSON summary; bad options fail with exit code 2
//! and a message that says what to change.

use std::process::Command;

fn synth(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loc3r-synth")).args(args).output().unwrap()
}

#[test]
fn small_run_writes_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = synth(&[
        "--rooms",
        "2",
        "--seed",
        "4",
        "--frames",
        "3",
        "--size",
        "64x48",
        "--questions",
        "3",
        "--sample-frames",
        "2",
        "--no-video",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["rooms"], 2);
    assert_eq!(summary["frames"], 6);
    let scene = out.join("scenes/synth-s4-r0001");
    for f in [
        "color/2.jpg",
        "depth/2.png",
        "pose/2.txt",
        "intrinsic/intrinsic_color.txt",
        "intrinsic/extrinsic_depth.txt",
        "scene.json",
        "synth-s4-r0001.txt",
        "questions.jsonl",
    ] {
        assert!(scene.join(f).is_file(), "{f} missing");
    }
    assert_eq!(std::fs::read(scene.join("intrinsic/intrinsic_color.txt")).unwrap(), std::fs::read(scene.join("intrinsic/intrinsic_depth.txt")).unwrap());
    assert!(String::from_utf8_lossy(&o.stderr).contains("[2/2] synth-s4-r0001"));
    // A second run into the same directory needs --force.
    let again = synth(&["--rooms", "1", "--frames", "2", "--size", "64x48", "--no-video", "--out", out.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let forced = synth(&["--rooms", "1", "--frames", "2", "--size", "64x48", "--sample-frames", "2", "--no-video", "--force", "--out", out.to_str().unwrap()]);
    assert!(forced.status.success(), "{}", String::from_utf8_lossy(&forced.stderr));
}

#[test]
fn bad_options_exit_2_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x");
    let out = out.to_str().unwrap();
    for (args, needle) in [
        (vec!["--rooms", "0"], "at least one room"),
        (vec!["--rooms", "1", "--size", "33x24"], "even"),
        (vec!["--rooms", "1", "--size", "16x16"], "32..=4096"),
        (vec!["--rooms", "1", "--size", "5000x240"], "32..=4096"),
        (vec!["--rooms", "1", "--size", "320"], "WxH"),
        (vec!["--rooms", "1", "--frames", "1"], "at least 2"),
        (vec!["--rooms", "1", "--objects", "40", "--no-video"], "fit"),
    ] {
        let mut all = args.clone();
        all.extend(["--out", out]);
        let o = synth(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
