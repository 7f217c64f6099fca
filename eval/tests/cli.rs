//! `loc3r-eval` at the command line: bad input is refused with exit code 2 and a message that
//! names what is wrong, before any model is loaded.

use std::process::Command;

fn eval(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loc3r-eval")).args(args).output().expect("loc3r-eval runs");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_input_is_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("questions.jsonl");
    let bundle = dir.path().join("bundle");
    let (code, err) = eval(&["synth", "--bundle", bundle.to_str().unwrap(), "--questions", missing.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("questions.jsonl"), "{err}");

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"scene\": 1}\n").unwrap();
    let (code, err) = eval(&["synth", "--bundle", bundle.to_str().unwrap(), "--questions", bad.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("line 1"), "names the line: {err}");

    let (code, err) = eval(&["synth", "--bundle", bundle.to_str().unwrap(), "--questions", bad.to_str().unwrap(), "--frames", "0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--frames"), "{err}");

    let (code, err) = eval(&["synth"]);
    assert_eq!(code, Some(2), "clap usage errors are exit 2 too: {err}");
}
