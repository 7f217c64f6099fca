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

/// A ScanQA ground-truth file in the release's layout: the three-item corpus of docs/evaluation.md.
const SCANQA_GT: &str = r#"[
 {"question_id": "val-scene0000-0", "scene_id": "scene0000_00", "question": "What is by the desk?", "answers": ["brown wooden chair", "brown chair"], "object_ids": [1], "object_names": ["chair"]},
 {"question_id": "val-scene0000-1", "scene_id": "scene0000_00", "question": "Where is the lamp?", "answers": ["on the table"], "object_ids": [2], "object_names": ["lamp"]},
 {"question_id": "val-scene0000-2", "scene_id": "scene0000_00", "question": "What is by the door?", "answers": ["white chair"], "object_ids": [3], "object_names": ["chair"]}
]"#;

fn score(dir: &std::path::Path, pred: &[u8], extra: &[&str]) -> (Option<i32>, String, String) {
    let gt = dir.join("ScanQA_v1.0_val.json");
    std::fs::write(&gt, SCANQA_GT).unwrap();
    let p = dir.join("pred.json");
    std::fs::write(&p, pred).unwrap();
    let mut args = vec!["score", "--task", "scanqa", "--gt", gt.to_str().unwrap(), "--pred", p.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_loc3r-eval")).args(&args).env_remove("LOC3R_METEOR_JAR").output().expect("loc3r-eval runs");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn scanqa_score_reproduces_the_reference_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let pred = br#"[{"question_id": "val-scene0000-0", "answer_top10": ["brown chair", "chair"]},
                   {"question_id": "val-scene0000-1", "answer": "On table."},
                   {"question_id": "val-scene0000-2", "answer_top10": ["black chair"]}]"#;
    let (code, stdout, err) = score(dir.path(), pred, &["--json"]);
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let protocols = report["protocols"].as_array().unwrap();
    let names: Vec<&str> = protocols.iter().map(|p| p["protocol"].as_str().unwrap()).collect();
    assert_eq!(names, ["video3dllm", "official", "leo_ptb"]);
    let close = |v: &serde_json::Value, expected: f64| (v.as_f64().unwrap() - expected).abs() < 1e-6;
    assert!(close(&protocols[0]["cider"], 1.568435), "{stdout}");
    assert!(close(&protocols[1]["bleu"][0], 0.705401), "{stdout}");
    assert!(close(&protocols[2]["rouge_l"], 0.833333), "{stdout}");
    assert!(close(&protocols[2]["em_r"], 200.0 / 3.0), "{stdout}");
    assert!(protocols[0]["meteor"]["corpus"].is_null(), "{stdout}");
    assert!(protocols[0]["meteor"]["unavailable"].as_str().unwrap().contains("LOC3R_METEOR_JAR"), "{stdout}");

    // The table, one protocol, and the per-question records.
    let out = dir.path().join("per_question.jsonl");
    let (code, stdout, err) = score(dir.path(), pred, &["--protocol", "official", "--out", out.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(stdout.contains("official") && !stdout.contains("leo_ptb") && stdout.contains("190.39"), "{stdout}");
    let lines = std::fs::read_to_string(&out).unwrap();
    assert_eq!(lines.lines().count(), 3);
    assert!(lines.contains("\"hypothesis\":\"on table\""), "{lines}");
}

#[test]
fn scanqa_missing_and_empty_predictions_are_scored_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, err) = score(dir.path(), br#"[{"question_id": "val-scene0000-1", "answer_top10": []}]"#, &["--json"]);
    assert_eq!(code, Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for p in report["protocols"].as_array().unwrap() {
        assert_eq!(p["questions"], 3, "{stdout}");
        assert_eq!(p["missing_predictions"], 2, "{stdout}");
        assert_eq!(p["em"], 0.0, "{stdout}");
        assert_eq!(p["cider"], 0.0, "{stdout}");
    }
    let (code, stdout, _) = score(dir.path(), b"[]", &[]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("3 without a prediction"), "{stdout}");
}

#[test]
fn scanqa_bad_input_is_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[u8], &str); 6] = [
        (br#"[{"question_id": "val-scene0000-0", "answer": "a"}, {"question_id": "val-scene0000-0", "answer": "b"}]"#, "val-scene0000-0"),
        (br#"[{"question_id": "val-scene9999-0", "answer": "a"}]"#, "val-scene9999-0"),
        (br#"[{"question_id": "val-scene0000-0"}]"#, "val-scene0000-0"),
        (b"[{\"question_id\": \"val-scene0000-0\", \"answer\": \"\xff\"}]", "UTF-8"),
        (br#"[{"question_id": "val-scene0000-0", "answer": "a"}"#, "pred.json"),
        (br#"{"val-scene0000-0": "a"}"#, "JSON array"),
    ];
    for (pred, needle) in cases {
        let (code, _, err) = score(dir.path(), pred, &[]);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
    let (code, _, err) = score(dir.path(), b"[]", &["--protocol", "leo"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("video3dllm"), "{err}");
    // A test split (no answers) cannot be scored.
    let gt = dir.path().join("ScanQA_v1.0_test_w_obj.json");
    std::fs::write(&gt, r#"[{"question_id": "test-scene0000-0", "scene_id": "scene0000_00", "question": "?", "object_ids": [], "object_names": []}]"#).unwrap();
    let (code, err) = eval(&["score", "--task", "scanqa", "--gt", gt.to_str().unwrap(), "--pred", dir.path().join("pred.json").to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("test-scene0000-0") && err.contains("no answers"), "{err}");
}
