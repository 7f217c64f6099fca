//! `loc3r-eval score --task sqa3d|sqa3d-loc|vsibench` on small hand-written files, and
//! `loc3r-eval run` and `loc3r-eval compare` end to end on two synthetic rooms (`loc3r-synth`)
//! with a tiny bundle (`loc3r-export make-tiny` + `export`, in fp32 and fp16).

use std::path::{Path, PathBuf};
use std::process::Command;

use loc3r::stages::video::{load_frames, FrameSpec};
use loc3r_eval::benchmark_run::SqaAnchor;
use loc3r_train::data::annotations::{read_sqa3d, read_synth_questions};
use loc3r_train::data::scannet::ScanNetScene;

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> serde_json::Value {
        assert_eq!(self.code, Some(0), "{}", self.stderr);
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

fn eval(args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_loc3r-eval")).args(args).output().expect("loc3r-eval runs");
    Out { code: out.status.code(), stdout: String::from_utf8_lossy(&out.stdout).into_owned(), stderr: String::from_utf8_lossy(&out.stderr).into_owned() }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A workspace binary built next to `loc3r-eval`.
fn sibling_exe(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_loc3r-eval")).with_file_name(name);
    assert!(path.is_file(), "{} is missing: run `cargo build -p {name}` (or `cargo test --workspace`) first", path.display());
    path
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(out.status.success(), "{what} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

// ---------------------------------------------------------------- score --task sqa3d / sqa3d-loc

const SQA3D_QUESTIONS: &str = r#"{"questions": [
 {"question_id": 101, "scene_id": "scene0000_00", "situation": "I sit on the bed.", "alternative_situation": [], "question": "How many chairs are there?"},
 {"question_id": 102, "scene_id": "scene0000_00", "situation": "I face the door.", "alternative_situation": [], "question": "What is on my left?"},
 {"question_id": 103, "scene_id": "scene0001_00", "situation": "I stand at the sink.", "alternative_situation": [], "question": "What colour is the towel?"}
]}"#;

/// Question 101 at (1, 2) with ψ = 50°, 102 at (0, 0) with ψ = 0, 103 at (−1, 1) with ψ = 180°.
const SQA3D_ANNOTATIONS: &str = r#"{"annotations": [
 {"question_id": 101, "answers": [{"answer": "two"}], "position": {"x": 1.0, "y": 2.0, "z": 0.0}, "rotation": {"_x": 0, "_y": 0, "_z": 0.42261826174069944, "_w": 0.9063077870366499}},
 {"question_id": 102, "answers": [{"answer": "table"}], "position": {"x": 0.0, "y": 0.0, "z": 0.0}, "rotation": {"_x": 0, "_y": 0, "_z": 0, "_w": 1}},
 {"question_id": 103, "answers": [{"answer": "white"}], "position": {"x": -1.0, "y": 1.0, "z": 0.0}, "rotation": {"_x": 0, "_y": 0, "_z": 1, "_w": 0}}
]}"#;

/// The SQA3D files in `dir`; returns the annotations file.
fn sqa3d_gt(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("v1_balanced_questions_val_scannetv2.json"), SQA3D_QUESTIONS).unwrap();
    let ann = dir.join("v1_balanced_sqa_annotations_val_scannetv2.json");
    std::fs::write(&ann, SQA3D_ANNOTATIONS).unwrap();
    ann
}

fn score(dir: &Path, task: &str, gt: &Path, pred: &[u8], extra: &[&str]) -> Out {
    let p = dir.join("pred.json");
    std::fs::write(&p, pred).unwrap();
    let mut args = vec!["score", "--task", task, "--gt", s(gt), "--pred", s(&p)];
    args.extend_from_slice(extra);
    eval(&args)
}

#[test]
fn sqa3d_answers_score_em_and_em_r() {
    let dir = tempfile::tempdir().unwrap();
    let gt = sqa3d_gt(dir.path());
    // 101 exact after normalisation ("2" → "two"), 102 a refined match only, 103 missing.
    let pred = br#"[{"question_id": 101, "answer": "2"}, {"question_id": "102", "answer": "the table top"}]"#;
    let r = score(dir.path(), "sqa3d", &gt, pred, &["--json"]).json();
    assert_eq!((r["task"].as_str(), r["questions"].as_u64(), r["missing_predictions"].as_u64()), (Some("sqa3d"), Some(3), Some(1)), "{r}");
    assert!((r["em"].as_f64().unwrap() - 100.0 / 3.0).abs() < 1e-9 && (r["em_r"].as_f64().unwrap() - 200.0 / 3.0).abs() < 1e-9, "{r}");
    // The directory works as --gt, and the table names the missing prediction.
    let out = score(dir.path(), "sqa3d", dir.path(), pred, &[]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("1 without a prediction") && out.stdout.contains("33.33") && out.stdout.contains("66.67"), "{}", out.stdout);
}

#[test]
fn sqa3d_poses_score_the_localization_accuracies() {
    let dir = tempfile::tempdir().unwrap();
    let gt = sqa3d_gt(dir.path());
    // 101: 0.3 m and 10° off (ψ = 60°); 102: 0.8 m and 20° off; 103 missing.
    let (s60, c60) = (30f64.to_radians().sin(), 30f64.to_radians().cos());
    let (s20, c20) = (10f64.to_radians().sin(), 10f64.to_radians().cos());
    let pred = format!(
        r#"[{{"question_id": 101, "position": [1.3, 2.0, 0.0], "rotation": [0, 0, {s60}, {c60}]}},
            {{"question_id": 102, "position": [0.0, 0.8, 0.0], "rotation": [0, 0, {s20}, {c20}], "answer": "extra fields are ignored"}}]"#
    );
    let r = score(dir.path(), "sqa3d-loc", &gt, pred.as_bytes(), &["--json"]).json();
    assert_eq!((r["questions"].as_u64(), r["missing_predictions"].as_u64()), (Some(3), Some(1)), "{r}");
    let close = |k: &str, v: f64| (r[k].as_f64().unwrap() - v).abs() < 1e-9;
    assert!(close("acc_0_5m", 100.0 / 3.0) && close("acc_1_0m", 200.0 / 3.0) && close("acc_15deg", 100.0 / 3.0) && close("acc_30deg", 200.0 / 3.0), "{r}");
    assert!(close("mean_position_error_m", 0.55) && close("mean_angle_error_deg", 15.0), "{r}");
    let out = score(dir.path(), "sqa3d-loc", &gt, pred.as_bytes(), &[]);
    assert!(out.stdout.contains("Acc@0.5m") && out.stdout.contains("33.33"), "{}", out.stdout);
}

#[test]
fn sqa3d_bad_input_is_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let gt = sqa3d_gt(dir.path());
    let cases: [(&str, &[u8], &str); 9] = [
        ("sqa3d", br#"[{"question_id": 101, "answer": "a"}, {"question_id": "101", "answer": "b"}]"#, "`101`"),
        ("sqa3d", br#"[{"question_id": 999, "answer": "a"}]"#, "`999`"),
        ("sqa3d", br#"[{"question_id": 101}]"#, "`answer`"),
        ("sqa3d", b"[{\"question_id\": 101, \"answer\": \"\xff\"}]", "UTF-8"),
        ("sqa3d", br#"[{"question_id": 101, "answer": "a"}"#, "pred.json"),
        ("sqa3d-loc", br#"[{"question_id": 101, "position": [NaN, 0, 0], "rotation": [0, 0, 0, 1]}]"#, "NaN"),
        ("sqa3d-loc", br#"[{"question_id": 101, "position": [0, 0, 0], "rotation": [0, 0, 0, 0]}]"#, "`101`"),
        ("sqa3d-loc", br#"[{"question_id": 102, "position": [0, 0, 0], "rotation": [0.3, 0, 0, 1]}]"#, "not a rotation about z"),
        ("sqa3d-loc", br#"[{"question_id": 103, "answer": "white"}]"#, "`position`"),
    ];
    for (task, pred, needle) in cases {
        let out = score(dir.path(), task, &gt, pred, &[]);
        assert_eq!(out.code, Some(2), "{task} {}: {}", String::from_utf8_lossy(pred), out.stderr);
        assert!(out.stderr.contains(needle), "expected {needle:?} in: {}", out.stderr);
    }
    // Ground truth without its questions file, and options of another task.
    let lone = dir.path().join("sqa3d_gt.json");
    std::fs::write(&lone, SQA3D_ANNOTATIONS).unwrap();
    let out = score(dir.path(), "sqa3d", &lone, b"[]", &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("--questions"), "{}", out.stderr);
    let out = score(dir.path(), "sqa3d", &lone, b"[]", &["--questions", s(&dir.path().join("v1_balanced_questions_val_scannetv2.json"))]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("3 without a prediction"), "{}", out.stdout);
    let out = score(dir.path(), "sqa3d", &gt, b"[]", &["--protocol", "official"]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("scanqa only"), "{}", out.stderr);
}

// ---------------------------------------------------------------- score --task vsibench

/// VSI-Bench documents as JSON lines (the release's fields; `score` reads only id,
/// question_type and ground_truth).
const VSI_DOCS: &str = r#"{"id": 0, "dataset": "scannet", "scene_name": "scene0000_00", "question_type": "object_counting", "question": "How many chair(s) are in this room?", "options": null, "ground_truth": "4"}
{"id": 1, "dataset": "scannet", "scene_name": "scene0000_00", "question_type": "room_size_estimation", "question": "What is the size of this room?", "options": null, "ground_truth": "20"}
{"id": 2, "dataset": "scannet", "scene_name": "scene0000_00", "question_type": "object_rel_direction_easy", "question": "...", "options": ["A. left", "B. right"], "ground_truth": "A"}
{"id": 3, "dataset": "scannet", "scene_name": "scene0000_00", "question_type": "object_rel_direction_hard", "question": "...", "options": ["A. left", "B. right"], "ground_truth": "B"}
"#;

#[test]
fn vsibench_scores_columns_and_counts_missing_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let gt = dir.path().join("vsibench.jsonl");
    std::fs::write(&gt, VSI_DOCS).unwrap();
    // Counting exact (100), room size 18 vs 20 (MRA 0.9), direction easy right (100), hard missing (0).
    let pred = br#"[{"id": 0, "prediction": "4"}, {"question_id": 1, "prediction": "18."}, {"id": "2", "prediction": "A. left"}]"#;
    let r = score(dir.path(), "vsibench", &gt, pred, &["--json"]).json();
    assert_eq!((r["questions"].as_u64(), r["missing_predictions"].as_u64()), (Some(4), Some(1)), "{r}");
    let columns = &r["columns"];
    assert_eq!(columns["Obj. Count"], 100.0, "{r}");
    assert!((columns["Room Size"].as_f64().unwrap() - 90.0).abs() < 1e-9, "{r}");
    assert_eq!(columns["Rel. Dir."], 50.0, "easy and hard averaged unweighted: {r}");
    assert!((r["overall"].as_f64().unwrap() - 80.0).abs() < 1e-9, "{r}");
    let out = score(dir.path(), "vsibench", &gt, pred, &[]);
    assert!(out.stdout.contains("Overall") && out.stdout.contains("80.00") && out.stdout.contains("1 without a prediction"), "{}", out.stdout);

    let cases: [(&[u8], &str); 6] = [
        (br#"[{"id": 0, "prediction": "1"}, {"id": 0, "prediction": "2"}]"#, "`0`"),
        (br#"[{"id": 42, "prediction": "1"}]"#, "`42`"),
        (br#"[{"id": 0}]"#, "prediction"),
        (b"[{\"id\": 0, \"prediction\": \"\xfe\"}]", "UTF-8"),
        (br#"[{"id": 0, "prediction": "1"},]"#, "pred.json"),
        (br#"{"0": "1"}"#, "JSON array"),
    ];
    for (pred, needle) in cases {
        let out = score(dir.path(), "vsibench", &gt, pred, &[]);
        assert_eq!(out.code, Some(2), "{}: {}", String::from_utf8_lossy(pred), out.stderr);
        assert!(out.stderr.contains(needle), "expected {needle:?} in: {}", out.stderr);
    }
    // Ground truth that cannot be scored names the document.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"id\": \"q7\", \"question_type\": \"object_counting\", \"ground_truth\": \"0\"}\n").unwrap();
    let out = score(dir.path(), "vsibench", &bad, b"[]", &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("`q7`"), "{}", out.stderr);
    std::fs::write(&bad, "{\"id\": 1, \"question_type\": \"object_counting\", \"ground_truth\": \"3\"}\n{\"id\": 1, \"question_type\": \"object_counting\", \"ground_truth\": \"3\"}\n").unwrap();
    let out = score(dir.path(), "vsibench", &bad, b"[]", &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("`1` appears twice"), "{}", out.stderr);
}

// ---------------------------------------------------------------- run

/// Two synthetic rooms (16 frames, 3 situated questions each) and a tiny bundle.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    rooms: PathBuf,
    bundle: PathBuf,
    ck: PathBuf,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let rooms = root.join("rooms");
    run_ok(
        Command::new(sibling_exe("loc3r-synth"))
            .args(["--rooms", "2", "--seed", "5", "--frames", "16", "--size", "64x48", "--questions", "3", "--out"])
            .arg(&rooms),
        "loc3r-synth",
    );
    let export = sibling_exe("loc3r-export");
    let ck = root.join("ck");
    run_ok(Command::new(&export).args(["make-tiny", "--quiet", "--seed", "3", "--out"]).arg(&ck), "loc3r-export make-tiny");
    let bundle = root.join("bundle");
    run_ok(Command::new(&export).args(["export", "--quiet", "--checkpoint"]).arg(&ck).arg("--out").arg(&bundle), "loc3r-export export");
    World { _dir: dir, root, rooms, bundle, ck }
}

impl World {
    /// Another export of the tiny checkpoint (`--precision fp16`, ...).
    fn export(&self, name: &str, extra: &[&str]) -> PathBuf {
        let bundle = self.root.join(name);
        run_ok(
            Command::new(sibling_exe("loc3r-export")).args(["export", "--quiet", "--checkpoint"]).arg(&self.ck).arg("--out").arg(&bundle).args(extra),
            "loc3r-export export",
        );
        bundle
    }
}

fn run(w: &World, task: &str, out: &Path, extra: &[&str]) -> Out {
    let (annotations, scenes) = (w.rooms.join("annotations"), w.rooms.join("scenes"));
    let mut args = vec![
        "run",
        "--json",
        "--bundle",
        s(&w.bundle),
        "--task",
        task,
        "--annotations",
        s(&annotations),
        "--scenes",
        s(&scenes),
        "--frames",
        "4",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    eval(&args)
}

fn prediction_ids(path: &Path) -> Vec<String> {
    let records: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    records.iter().map(|r| r["question_id"].to_string()).collect()
}

/// Both files hold the same predictions in the same order: equal ids and answers, and poses
/// equal up to the last bit or two (a JSON number read and written again may move by an ulp).
fn assert_same_predictions(a: &Path, b: &Path) {
    let read = |p: &Path| -> Vec<serde_json::Value> { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let (a, b) = (read(a), read(b));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x["question_id"], &x["answer"]), (&y["question_id"], &y["answer"]));
        for k in ["position", "rotation"] {
            let (u, v) = (x[k].as_array().map(Vec::as_slice).unwrap_or_default(), y[k].as_array().map(Vec::as_slice).unwrap_or_default());
            assert_eq!(u.len(), v.len(), "{x} vs {y}");
            for (p, q) in u.iter().zip(v) {
                assert!((p.as_f64().unwrap() - q.as_f64().unwrap()).abs() < 1e-12, "{x} vs {y}");
            }
        }
    }
}

#[test]
fn run_answers_every_question_once_and_resumes() {
    let w = world();
    let split = read_sqa3d(&w.rooms.join("annotations"), "train").unwrap();
    let n = split.items.len();
    assert_eq!(n, 6, "2 rooms × 3 questions");

    let out = w.root.join("sqa3d.json");
    let r = run(&w, "sqa3d-loc", &out, &[]).json();
    assert_eq!((r["run"]["answered"].as_u64(), r["run"]["scenes_observed"].as_u64()), (Some(n as u64), Some(2)), "{r}");
    let want: Vec<String> = split.items.iter().map(|i| i.question_id.clone()).collect();
    assert_eq!(prediction_ids(&out), want, "one prediction per question, in file order");
    let records: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    for rec in &records {
        assert!(rec["answer"].is_string() && rec["position"].as_array().unwrap().len() == 3 && rec["rotation"].as_array().unwrap().len() == 4, "{rec}");
    }
    assert_eq!(
        (r["scores"]["task"].as_str(), r["scores"]["questions"].as_u64(), r["scores"]["missing_predictions"].as_u64()),
        (Some("sqa3d-loc"), Some(6), Some(0))
    );
    // The file scores the same through `score`, for both SQA3D tasks.
    let gt = w.rooms.join("annotations").join("v1_balanced_sqa_annotations_train_scannetv2.json");
    let scored = eval(&["score", "--json", "--task", "sqa3d-loc", "--gt", s(&gt), "--pred", s(&out)]).json();
    assert_eq!(scored, r["scores"]);
    let answers = eval(&["score", "--json", "--task", "sqa3d", "--gt", s(&gt), "--pred", s(&out)]).json();
    assert_eq!(answers["missing_predictions"], 0);

    // Resuming: nothing left to do, the file is unchanged; the other SQA3D task reuses it.
    let before = std::fs::read_to_string(&out).unwrap();
    let again = run(&w, "sqa3d-loc", &out, &[]).json();
    assert_eq!(
        (again["run"]["answered"].as_u64(), again["run"]["already_answered"].as_u64(), again["run"]["scenes_observed"].as_u64()),
        (Some(0), Some(6), Some(0))
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), before);
    assert_eq!(again["scores"], r["scores"]);
    let em = run(&w, "sqa3d", &out, &[]).json();
    assert_eq!((em["run"]["answered"].as_u64(), em["scores"]["task"].as_str()), (Some(0), Some("sqa3d")));

    // Half done: a file with the first room's questions only gets the second room's added.
    let partial = w.root.join("partial.json");
    let first_room: Vec<&serde_json::Value> = records.iter().take(3).collect();
    std::fs::write(&partial, serde_json::to_string(&first_room).unwrap()).unwrap();
    let r = run(&w, "sqa3d-loc", &partial, &[]).json();
    assert_eq!((r["run"]["answered"].as_u64(), r["run"]["already_answered"].as_u64(), r["run"]["scenes_observed"].as_u64()), (Some(3), Some(3), Some(1)));
    assert_eq!(prediction_ids(&partial), want);
    assert_same_predictions(&partial, &out);

    // --limit: the first questions only, scored alone.
    let limited = w.root.join("limited.json");
    let r = run(&w, "sqa3d", &limited, &["--limit", "2"]).json();
    assert_eq!((r["run"]["questions"].as_u64(), r["scores"]["questions"].as_u64()), (Some(2), Some(2)), "{r}");
    assert_eq!(prediction_ids(&limited), want[..2]);
    // A predictions file of other questions is refused rather than mixed in.
    let e = run(&w, "sqa3d", &limited, &["--limit", "1"]);
    assert_eq!(e.code, Some(2), "{}", e.stderr);
    assert!(e.stderr.contains(&format!("`{}`", want[1])), "{}", e.stderr);
}

#[test]
fn run_scanqa_skips_and_counts_scenes_it_cannot_use() {
    let w = world();
    let out = w.root.join("scanqa.json");
    let r = run(&w, "scanqa", &out, &[]).json();
    let questions = r["run"]["questions"].as_u64().unwrap();
    assert!(questions >= 2, "{r}");
    assert_eq!(r["run"]["answered"].as_u64(), Some(questions));
    assert_eq!(prediction_ids(&out).len() as u64, questions);
    let protocols = r["scores"]["protocols"].as_array().unwrap();
    assert_eq!(protocols.len(), 3);
    assert_eq!(protocols[0]["missing_predictions"], 0);

    // Scenes: only the first room has a video; the second is skipped, its questions are misses.
    let scenes = w.root.join("scenes-one");
    let first = "synth-s5-r0000";
    std::fs::create_dir_all(scenes.join(first)).unwrap();
    std::fs::copy(w.rooms.join("scenes").join(first).join("video.mp4"), scenes.join(first).join("video.mp4")).unwrap();
    let partial = w.root.join("scanqa-partial.json");
    let args = |out: &Path, scenes: &Path| {
        eval(&[
            "run",
            "--json",
            "--bundle",
            s(&w.bundle),
            "--task",
            "scanqa",
            "--annotations",
            s(&w.rooms.join("annotations").join("ScanQA_v1.0_train.json")),
            "--scenes",
            s(scenes),
            "--frames",
            "4",
            "--out",
            s(out),
        ])
    };
    let r = args(&partial, &scenes).json();
    let skipped = r["run"]["skipped_scenes"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{r}");
    assert_eq!(skipped[0]["scene_id"], "synth-s5-r0001");
    assert!(skipped[0]["reason"].as_str().unwrap().contains("no scene directory"), "{r}");
    let missing = skipped[0]["questions"].as_u64().unwrap();
    assert_eq!(prediction_ids(&partial).len() as u64, questions - missing);
    assert_eq!(r["scores"]["protocols"][0]["missing_predictions"].as_u64(), Some(missing));
    // The rerun with every scene finishes the file.
    let r = run(&w, "scanqa", &partial, &[]).json();
    assert_eq!((r["run"]["answered"].as_u64(), r["run"]["scenes_observed"].as_u64()), (Some(missing), Some(1)));
    assert_same_predictions(&partial, &out);

    // An --out in a directory that does not exist is refused before any work.
    let e = args(&w.root.join("no-such-dir").join("p.json"), &scenes);
    assert_eq!(e.code, Some(2), "{}", e.stderr);
    assert!(e.stderr.contains("no-such-dir"), "{}", e.stderr);

    // Every scene unusable: exit 2, naming a scene.
    let empty = w.root.join("no-scenes");
    std::fs::create_dir(&empty).unwrap();
    let e = args(&w.root.join("none.json"), &empty);
    assert_eq!(e.code, Some(2), "{}", e.stderr);
    assert!(e.stderr.contains("synth-s5-r0000") && e.stderr.contains("--scenes"), "{}", e.stderr);
}

#[test]
fn run_sqa3d_skips_a_scene_without_a_valid_first_pose() {
    let w = world();
    let scenes = w.root.join("scenes-copy");
    copy_dir(&w.rooms.join("scenes"), &scenes);
    std::fs::write(
        scenes.join("synth-s5-r0001").join("pose").join("0.txt"),
        "-inf -inf -inf -inf\n-inf -inf -inf -inf\n-inf -inf -inf -inf\n-inf -inf -inf -inf\n",
    )
    .unwrap();
    let out = w.root.join("p.json");
    let r = eval(&[
        "run",
        "--json",
        "--bundle",
        s(&w.bundle),
        "--task",
        "sqa3d-loc",
        "--annotations",
        s(&w.rooms.join("annotations")),
        "--scenes",
        s(&scenes),
        "--frames",
        "4",
        "--out",
        s(&out),
    ])
    .json();
    let skipped = &r["run"]["skipped_scenes"];
    assert_eq!(skipped.as_array().unwrap().len(), 1, "{r}");
    assert_eq!(skipped[0]["scene_id"], "synth-s5-r0001");
    assert!(skipped[0]["reason"].as_str().unwrap().contains("no valid pose"), "{r}");
    assert_eq!(r["scores"]["missing_predictions"], 3);
}

/// VSI-Bench on the synthetic rooms: the release's layout (`<dataset>/<scene_name>.mp4`), two
/// questions per room plus one about a scene without a video.
#[test]
fn run_vsibench_answers_scores_and_resumes() {
    let w = world();
    let scenes = w.root.join("vsi");
    std::fs::create_dir_all(scenes.join("scannet")).unwrap();
    let rooms = ["synth-s5-r0000", "synth-s5-r0001"];
    for room in rooms {
        std::fs::copy(w.rooms.join("scenes").join(room).join("video.mp4"), scenes.join("scannet").join(format!("{room}.mp4"))).unwrap();
    }
    let mut docs = String::new();
    for (k, room) in rooms.iter().enumerate() {
        docs.push_str(&format!(
            "{{\"id\": {}, \"dataset\": \"scannet\", \"scene_name\": \"{room}\", \"question_type\": \"object_counting\", \"question\": \"How many chair(s) are in this room?\", \"options\": null, \"ground_truth\": \"2\"}}\n",
            2 * k
        ));
        docs.push_str(&format!(
            "{{\"id\": {}, \"dataset\": \"scannet\", \"scene_name\": \"{room}\", \"question_type\": \"route_planning\", \"question\": \"Which way?\", \"options\": [\"A. Turn left\", \"B. Turn right\"], \"ground_truth\": \"A\"}}\n",
            2 * k + 1
        ));
    }
    docs.push_str("{\"id\": 9, \"dataset\": \"arkitscenes\", \"scene_name\": \"41069025\", \"question_type\": \"obj_appearance_order\", \"question\": \"Which first?\", \"options\": [\"A. bed, sofa\", \"B. sofa, bed\"], \"ground_truth\": \"B\"}\n");
    let gt = w.root.join("vsibench.jsonl");
    std::fs::write(&gt, &docs).unwrap();
    let out = w.root.join("vsi-pred.json");
    let args = |gt: &Path, extra: &[&str]| {
        let mut a = vec!["run", "--json", "--bundle", s(&w.bundle), "--task", "vsibench", "--annotations", s(gt), "--scenes", s(&scenes), "--frames", "4"];
        a.extend_from_slice(extra);
        a.iter().map(|x| x.to_string()).collect::<Vec<_>>()
    };
    let call = |a: Vec<String>| eval(&a.iter().map(String::as_str).collect::<Vec<_>>());

    let r = call(args(&gt, &["--out", s(&out)])).json();
    assert_eq!((r["run"]["answered"].as_u64(), r["run"]["scenes_observed"].as_u64()), (Some(4), Some(2)), "{r}");
    let skipped = r["run"]["skipped_scenes"].as_array().unwrap();
    assert_eq!((skipped.len(), &skipped[0]["scene_id"]), (1, &serde_json::json!("arkitscenes/41069025")), "{r}");
    assert!(skipped[0]["reason"].as_str().unwrap().contains("41069025.mp4"), "{r}");
    assert_eq!(prediction_ids(&out), ["0", "1", "2", "3"]);
    assert_eq!(
        (r["scores"]["task"].as_str(), r["scores"]["questions"].as_u64(), r["scores"]["missing_predictions"].as_u64()),
        (Some("vsibench"), Some(5), Some(1)),
        "{r}"
    );
    assert_eq!(r["scores"]["columns"]["Appr. Order"], 0.0, "the question without a video is a miss: {r}");
    // The file scores the same through `score`.
    let scored = eval(&["score", "--json", "--task", "vsibench", "--gt", s(&gt), "--pred", s(&out)]).json();
    assert_eq!(scored, r["scores"]);
    // Resuming: only the scene without a video is pending, so every pending scene is skipped
    // (exit 2) and the file stays as it is; once the video is there, only its question is asked.
    let before = std::fs::read_to_string(&out).unwrap();
    let e = call(args(&gt, &["--out", s(&out)]));
    assert_eq!(e.code, Some(2), "{}", e.stderr);
    assert!(e.stderr.contains("arkitscenes/41069025"), "{}", e.stderr);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), before);
    std::fs::create_dir_all(scenes.join("arkitscenes")).unwrap();
    std::fs::copy(scenes.join("scannet").join("synth-s5-r0000.mp4"), scenes.join("arkitscenes").join("41069025.mp4")).unwrap();
    let again = call(args(&gt, &["--out", s(&out)])).json();
    assert_eq!(
        (again["run"]["answered"].as_u64(), again["run"]["already_answered"].as_u64(), again["scores"]["missing_predictions"].as_u64()),
        (Some(1), Some(4), Some(0)),
        "{again}"
    );
    assert_eq!(prediction_ids(&out), ["0", "1", "2", "3", "9"]);

    // Documents that cannot be asked or scored are refused before any scene is observed.
    let bad = w.root.join("bad.jsonl");
    for (doc, needle) in [
        (r#"{"id": "q1", "dataset": "scannet", "question_type": "object_counting", "question": "How many?", "ground_truth": "2"}"#, "scene_name"),
        (
            r#"{"id": "q2", "dataset": "scannet", "scene_name": "x", "question_type": "route_planning", "question": "Which?", "options": null, "ground_truth": "A"}"#,
            "options",
        ),
        (r#"{"id": "q3", "dataset": "scannet", "scene_name": "x", "question_type": "object_counting", "question": "How many?", "ground_truth": "0"}"#, "`q3`"),
    ] {
        std::fs::write(&bad, doc).unwrap();
        let e = call(args(&bad, &["--out", s(&w.root.join("bad-pred.json"))]));
        assert_eq!(e.code, Some(2), "{}", e.stderr);
        assert!(e.stderr.contains(needle), "expected {needle:?} in: {}", e.stderr);
        assert!(!w.root.join("bad-pred.json").exists());
    }
    // `compare` over the same documents: a bundle against itself has zero deltas in every
    // column it measures, none in the columns without questions, and full answer agreement.
    let cmp_dir = w.root.join("cmp");
    let cmp = |extra: &[&str]| {
        let mut a = vec!["compare", "--a", s(&w.bundle), "--b", s(&w.bundle), "--task", "vsibench", "--annotations", s(&gt), "--scenes", s(&scenes)];
        a.extend_from_slice(&["--frames", "4", "--out-dir", s(&cmp_dir)]);
        a.extend_from_slice(extra);
        eval(&a)
    };
    let r = cmp(&["--json", "--max-delta", "overall=0,obj_count=0,agreement=1"]).json();
    assert_eq!(r["pass"], true, "{r}");
    for key in ["overall", "obj_count", "route_plan", "appr_order"] {
        assert_eq!(r["metrics"][key]["delta"], 0.0, "{key}: {r}");
        assert!(r["metrics"][key]["a"].is_number(), "{key}: {r}");
    }
    assert!(r["metrics"]["abs_dist"]["a"].is_null(), "no absolute-distance question: {r}");
    assert_eq!(r["metrics"]["overall"]["a"], again["scores"]["overall"], "compare scores like `run`: {r}");
    assert_eq!((r["answers"]["questions"].as_u64(), r["answers"]["agreement"].as_f64()), (Some(5), Some(1.0)), "{r}");
    assert!(r["pose"].is_null(), "{r}");
    let e = cmp(&["--max-delta", "pose_m=0.1"]);
    assert_eq!(e.code, Some(2), "{}", e.stderr);
    assert!(e.stderr.contains("does not measure it"), "{}", e.stderr);
}
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The generator knows every pose exactly, in the BEV frame of camera 0: carried into the SQA3D
/// frame by the conversion `run` uses, the ground truth must score 100% everywhere.
#[test]
fn ground_truth_bev_poses_convert_to_perfect_sqa3d_scores() {
    let w = world();
    let synth = read_synth_questions(&w.rooms.join("questions.jsonl")).unwrap();
    let split = read_sqa3d(&w.rooms.join("annotations"), "train").unwrap();
    assert_eq!(synth.len(), split.items.len());
    let mut records = Vec::new();
    for (q, item) in synth.iter().zip(&split.items) {
        assert_eq!((&q.scene, &q.situation, &q.question), (&item.scene_id, &item.situation, &item.question), "the two files list the questions in one order");
        let dir = w.rooms.join("scenes").join(&q.scene);
        // `run` anchors at the first sampled frame; uniform sampling starts at frame 0, the
        // generator's anchor.
        let first = load_frames(&dir.join("video.mp4"), &FrameSpec::new(4)).unwrap().frames[0].index;
        assert_eq!(first, 0);
        let anchor = SqaAnchor::open(&ScanNetScene::open(&dir).unwrap(), first).unwrap();
        let p = q.position.unwrap();
        let (position, rotation) = anchor.to_sqa3d([p.x, p.y], q.yaw_deg.unwrap().to_radians());
        records.push(serde_json::json!({ "question_id": item.question_id.parse::<u64>().unwrap(), "position": position, "rotation": rotation }));
    }
    let pred = w.root.join("oracle.json");
    std::fs::write(&pred, serde_json::to_string(&records).unwrap()).unwrap();
    let r = eval(&["score", "--json", "--task", "sqa3d-loc", "--gt", s(&w.rooms.join("annotations")), "--pred", s(&pred)]).json();
    assert_eq!(r["missing_predictions"], 0, "{r}");
    for k in ["acc_0_5m", "acc_1_0m", "acc_15deg", "acc_30deg"] {
        assert_eq!(r[k], 100.0, "{k}: {r}");
    }
    assert!(r["mean_position_error_m"].as_f64().unwrap() < 1e-6 && r["mean_angle_error_deg"].as_f64().unwrap() < 1e-4, "{r}");
}

// ---------------------------------------------------------------- compare

/// `loc3r-eval compare` of bundles `a` and `b` over the rooms' SQA3D (or ScanQA) questions.
fn compare(w: &World, a: &Path, b: &Path, task: &str, out_dir: &Path, extra: &[&str]) -> Out {
    let annotations = w.rooms.join("annotations");
    let annotations = if task == "scanqa" { annotations.join("ScanQA_v1.0_train.json") } else { annotations };
    let scenes = w.rooms.join("scenes");
    let mut args = vec![
        "compare",
        "--a",
        s(a),
        "--b",
        s(b),
        "--task",
        task,
        "--annotations",
        s(&annotations),
        "--scenes",
        s(&scenes),
        "--frames",
        "4",
        "--out-dir",
        s(out_dir),
    ];
    args.extend_from_slice(extra);
    eval(&args)
}

#[test]
fn compare_a_bundle_with_itself_is_exactly_equal() {
    let w = world();
    let dir = w.root.join("self");
    let gates = ["--max-delta", "acc@0.5m=0,acc@1.0m=0,acc@15deg=0,acc@30deg=0,em=0,em_r=0", "--max-delta", "pose_m=0,yaw_deg=0,agreement=1"];
    let report_file = w.root.join("self-report.json");
    let mut args = vec!["--json", "--out", s(&report_file)];
    args.extend_from_slice(&gates);
    let r = compare(&w, &w.bundle, &w.bundle, "sqa3d-loc", &dir, &args).json();
    assert_eq!(
        (r["task"].as_str(), r["questions"].as_u64(), r["frames"].as_u64(), r["pass"].as_bool()),
        (Some("sqa3d-loc"), Some(6), Some(4), Some(true)),
        "{r}"
    );
    assert_eq!(r, serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&report_file).unwrap()).unwrap(), "--out holds the printed report");
    let metrics = r["metrics"].as_object().unwrap();
    assert_eq!(metrics.keys().collect::<Vec<_>>(), ["acc@0.5m", "acc@1.0m", "acc@15deg", "acc@30deg", "em", "em_r"]);
    for (k, m) in metrics {
        assert_eq!((m["delta"].as_f64(), &m["a"]), (Some(0.0), &m["b"]), "{k}: {m}");
    }
    let pose = &r["pose"];
    assert_eq!(pose["compared"], 6, "{r}");
    for stat in ["mean", "median", "max"] {
        assert_eq!((pose["position_m"][stat].as_f64(), pose["yaw_deg"][stat].as_f64()), (Some(0.0), Some(0.0)), "{pose}");
    }
    assert_eq!((r["answers"]["agreement"].as_f64(), r["answers"]["same"].as_u64()), (Some(1.0), Some(6)), "{r}");
    assert_eq!(r["answers"]["a_exact"], r["answers"]["b_exact"]);
    let gate_results = r["gates"].as_array().unwrap();
    assert_eq!(gate_results.len(), 9);
    assert!(gate_results.iter().all(|g| g["pass"] == true), "{r}");
    assert_eq!(r["per_question"].as_array().unwrap().len(), 6);
    // Both predictions files are `run`'s, so `score` reads them.
    for side in ["a", "b"] {
        let pred = r[side]["predictions"].as_str().unwrap();
        let scored = eval(&["score", "--json", "--task", "sqa3d-loc", "--gt", s(&w.rooms.join("annotations")), "--pred", pred]).json();
        assert_eq!(scored["acc_0_5m"], metrics["acc@0.5m"][side], "{side}");
    }

    // Again into the same directory: nothing is asked again, and the table says the same.
    let out = compare(&w, &w.bundle, &w.bundle, "sqa3d-loc", &dir, &gates);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("A: 6 questions: 0 answered now, 6 by an earlier run"), "{}", out.stderr);
    for needle in
        ["acc@0.5m", "B − A", "pose deltas B vs A (6 questions)", "agreement 1 (6 of 6 the same)", "ok   pose_m: largest position delta B vs A 0 m ≤ 0 m"]
    {
        assert!(out.stdout.contains(needle), "{needle:?} in:\n{}", out.stdout);
    }
}

#[test]
fn compare_fp32_with_fp16_measures_small_deltas_and_gates_them() {
    let w = world();
    let fp16 = w.export("bundle-fp16", &["--precision", "fp16"]);
    let dir = w.root.join("fp16");
    let r = compare(&w, &w.bundle, &fp16, "sqa3d-loc", &dir, &["--json"]).json();
    assert_eq!((r["pass"].as_bool(), r["gates"].as_array().map(Vec::len)), (Some(true), Some(0)), "no gates, nothing fails: {r}");
    let (pose, answers) = (&r["pose"], &r["answers"]);
    let max_m = pose["position_m"]["max"].as_f64().unwrap();
    let max_deg = pose["yaw_deg"]["max"].as_f64().unwrap();
    eprintln!(
        "fp32 vs fp16: position delta mean {} max {} m, yaw delta mean {} max {}°, agreement {}, metric deltas {}",
        pose["position_m"]["mean"], max_m, pose["yaw_deg"]["mean"], max_deg, answers["agreement"], r["metrics"]
    );
    assert_eq!(pose["compared"], 6);
    assert!(max_m > 0.0 && max_m < 0.05, "fp16 moves the poses, but little: {pose}");
    assert!(max_deg < 2.0, "{pose}");
    assert!(answers["agreement"].as_f64().unwrap() >= 0.5, "{answers}");
    for q in r["per_question"].as_array().unwrap() {
        assert!(q["position_m"].as_f64().unwrap() <= max_m && q["yaw_deg"].as_f64().unwrap() <= max_deg, "{q}");
    }

    // A gate no fp16 export can meet: exit 1, naming it with its values; the others pass.
    let out = compare(&w, &w.bundle, &fp16, "sqa3d-loc", &dir, &["--max-delta", "pose_m=0,agreement=0"]);
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("1 of 2 gates exceeded") && out.stderr.contains("pose_m: largest position delta B vs A") && out.stderr.contains("> 0 m"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("FAIL pose_m") && out.stdout.contains("ok   agreement"), "{}", out.stdout);
    // Loose gates hold (the predictions of the first call are reused).
    let out = compare(&w, &w.bundle, &fp16, "sqa3d-loc", &dir, &["--max-delta", "pose_m=0.05,yaw_deg=2,pose_m_median=0.05,agreement=0.5"]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("B: 6 questions: 0 answered now"), "{}", out.stderr);

    // A missing bundle is refused before A runs.
    let fresh = w.root.join("missing-b");
    let e = compare(&w, &w.bundle, &w.root.join("no-such-bundle"), "sqa3d-loc", &fresh, &[]);
    assert_eq!(e.code, Some(2), "{}", e.stderr);
    assert!(e.stderr.contains("--b") && e.stderr.contains("no-such-bundle") && e.stderr.contains("not a readable bundle"), "{}", e.stderr);
    assert!(!fresh.join("a-predictions.json").exists());

    // The directory belongs to these two bundles: another B is refused, naming it.
    let e = compare(&w, &w.bundle, &w.bundle, "sqa3d-loc", &dir, &[]);
    assert_eq!(e.code, Some(2), "{}", e.stderr);
    assert!(e.stderr.contains("another bundle as B"), "{}", e.stderr);

    // ScanQA: answers only, caption metrics ×100, no pose keys.
    let r = compare(&w, &w.bundle, &fp16, "scanqa", &w.root.join("scanqa"), &["--json", "--limit", "2", "--max-delta", "cider=1000,agreement=0"]).json();
    assert_eq!((r["protocol"].as_str(), r["questions"].as_u64(), r["pass"].as_bool()), (Some("video3dllm"), Some(2), Some(true)), "{r}");
    assert!(r["pose"].is_null() && r["metrics"]["cider"]["delta"].is_number() && r["metrics"]["meteor"]["a"].is_null(), "{r}");
}

#[test]
fn compare_bad_input_is_exit_2_before_any_model_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (missing, scenes) = (dir.path().join("no-bundle"), dir.path().to_path_buf());
    let ann = dir.path().join("ann.json");
    let base = |extra: &[&str]| {
        let mut args = vec!["compare", "--a", s(&missing), "--b", s(&missing), "--task", "sqa3d-loc", "--annotations", s(&ann), "--scenes", s(&scenes)];
        args.extend_from_slice(extra);
        eval(&args)
    };
    let cases: [(&[&str], &str); 7] = [
        (&["--max-delta", "pose=0.1"], "unknown metric `pose`"),
        (&["--max-delta", "em=-1"], "negative"),
        (&["--max-delta", "agreement=2"], "[0, 1]"),
        (&["--max-delta", "em=1,em=2"], "`em` is given twice"),
        (&["--max-delta", "cider=1"], "task sqa3d-loc does not measure it"),
        (&["--protocol", "official"], "scanqa only"),
        (&[], "not a readable bundle"),
    ];
    for (extra, needle) in cases {
        let out = base(extra);
        assert_eq!(out.code, Some(2), "{extra:?}: {}", out.stderr);
        assert!(out.stderr.contains(needle), "{extra:?}: expected {needle:?} in {}", out.stderr);
    }
    let out = base(&["--frames", "0"]);
    assert!(out.code == Some(2) && out.stderr.contains("--frames"), "{}", out.stderr);
}
