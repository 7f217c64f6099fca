//! Whole-pipeline parity: the runtime on the tiny seed-1 bundle against an independent PyTorch
//! reference (tools/golden/pipeline_golden.py, see tools/golden/README-pipeline.md) over the
//! committed frame directory `tests/fixtures/pipeline_tiny/frames/`.
//!
//! Checked exactly: sampled frame indices and times, prompt ids (head + [-200] + video tail +
//! question of the runtime's prompt plan), generated ids (>= 16 per question). Within
//! tolerance: position and σ (1e-4), yaw (0.01°), orientation probabilities and CUT3R camera
//! poses (1e-4). Both questions are asked in both orders on one observed video, so the second
//! one of each order runs on the reused cached prefix.
//!
//! Other references (README-pipeline.md, "Other configs"): `LOC3R_PIPELINE_FIXTURE=<dir>` (a
//! `reference.json` and its frames) and `LOC3R_PIPELINE_CHECKPOINT=<checkpoint dir>` (the
//! checkpoint the reference was made from, exported here into a temporary fp32 bundle). Without
//! them: the committed fixture and the tiny seed-1 bundle.

use std::path::PathBuf;
use std::sync::OnceLock;

use loc3r::stages::prompt::{self, VideoTiming};
use loc3r::stages::video::{load_frames, FrameSpec};
use loc3r::{Answer, GenerationOptions, Loc3r, Scene, SessionOptions};
use loc3r_export::tiny::{make_tiny, TinyOptions};
use serde_json::Value;

const REGENERATE: &str = "cargo build -p loc3r-export && target/debug/loc3r-export make-tiny --out /tmp/loc3r-tiny-seed1 --seed 1 && \
     .venv-dev/bin/python tools/golden/pipeline_golden.py --cut3r-repo /tmp/cut3r-src --checkpoint /tmp/loc3r-tiny-seed1 \
     --out tests/fixtures/pipeline_tiny (see tools/golden/README-pipeline.md)";
const IMAGE_TOKEN_INDEX: i64 = -200;
const POS_TOL: f64 = 1e-4;
const YAW_TOL_DEG: f64 = 0.01;
const PROB_TOL: f64 = 1e-4;
const POSE_TOL: f64 = 1e-4;
const MIN_GENERATED: usize = 16;

const FIXTURE_ENV: &str = "LOC3R_PIPELINE_FIXTURE";
const CHECKPOINT_ENV: &str = "LOC3R_PIPELINE_CHECKPOINT";

/// A path from an environment variable, relative paths taken from the repository root.
fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(|v| loc3r_e2e::repo_root().join(v))
}

fn fixture_dir() -> PathBuf {
    env_path(FIXTURE_ENV).unwrap_or_else(|| loc3r_e2e::repo_root().join("tests/fixtures/pipeline_tiny"))
}

fn reference() -> Value {
    let path = fixture_dir().join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}; regenerate with {REGENERATE}", path.display()));
    serde_json::from_str(&text).expect("reference.json is JSON")
}

// ---------------------------------------------------------------------------------------------
// SHA-256 (FIPS 180-4), so the staleness check needs no extra dependency.

fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
        0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
        0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ];
    let mut h: [u32; 8] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh.wrapping_add(s1).wrapping_add(ch).wrapping_add(K[i]).wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

#[test]
fn sha256_known_answers() {
    assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_eq!(sha256_hex(long), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    assert_eq!(sha256_hex(&[0x61; 1000]), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

// ---------------------------------------------------------------------------------------------

/// The bundle under test and the checkpoint it was exported from.
struct BundleUnderTest {
    checkpoint: PathBuf,
    bundle: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// Export options for `checkpoint` (fp32 unless changed): the CUT3R input the reference ran at
/// when it is not the config's (`cut3r_input_size`, frames of another aspect).
fn export_options(reference: &Value) -> loc3r_export::bundle::BundleOptions {
    let cut3r_size = reference.get("cut3r_input_size").map(|s| (s[0].as_u64().unwrap() as usize, s[1].as_u64().unwrap() as usize));
    loc3r_export::bundle::BundleOptions { cut3r_size, ..Default::default() }
}

/// The model under test, made once per test binary: the tiny seed-1 bundle, or with
/// `LOC3R_PIPELINE_CHECKPOINT` that checkpoint exported into a temporary bundle.
fn bundle_under_test(reference: &Value) -> &'static BundleUnderTest {
    static BUNDLE: OnceLock<BundleUnderTest> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        if let Some(checkpoint) = env_path(CHECKPOINT_ENV) {
            let tmp = tempfile::tempdir().expect("tempdir");
            let bundle = tmp.path().join("bundle");
            loc3r_export::bundle::export_bundle(&checkpoint, &bundle, &export_options(reference), |_| {})
                .unwrap_or_else(|e| panic!("export {CHECKPOINT_ENV}={}: {e}", checkpoint.display()));
            return BundleUnderTest { checkpoint, bundle, _tmp: Some(tmp) };
        }
        let bundle = loc3r_e2e::tiny_bundle(1).to_path_buf();
        // tiny_bundle keeps its checkpoint next to the bundle; make a fresh one if that ever changes.
        match bundle.parent().map(|p| p.join("checkpoint")).filter(|p| p.join("config.json").is_file()) {
            Some(checkpoint) => BundleUnderTest { checkpoint, bundle, _tmp: None },
            None => {
                let tmp = tempfile::tempdir().expect("tempdir");
                let checkpoint = tmp.path().join("checkpoint");
                make_tiny(&checkpoint, &TinyOptions { seed: 1, ..TinyOptions::default() }, |_, _| {}).expect("make-tiny --seed 1");
                BundleUnderTest { checkpoint, bundle, _tmp: Some(tmp) }
            }
        }
    })
}

/// The bundle under test, after checking that its checkpoint is the one the reference was made
/// from (the reference records the sha256 of model.safetensors and cut3r.safetensors).
fn bundle_checked(reference: &Value) -> &'static BundleUnderTest {
    let under_test = bundle_under_test(reference);
    let stale = if env_path(FIXTURE_ENV).is_some() || env_path(CHECKPOINT_ENV).is_some() {
        let reference = fixture_dir().join("reference.json");
        format!("{} was not made from {} (set {CHECKPOINT_ENV} to its checkpoint)", reference.display(), under_test.checkpoint.display())
    } else {
        format!("fixtures are stale (they are not from make-tiny --seed 1); regenerate with {REGENERATE}")
    };
    let want = reference["checkpoint_sha256"].as_object().expect("checkpoint_sha256");
    // model.safetensors, or its shards (model-0000i-of-0000n.safetensors), and cut3r.safetensors.
    assert!(want.contains_key("cut3r.safetensors") && want.keys().any(|k| k.starts_with("model")), "reference.json lacks checkpoint hashes");
    for (name, digest) in want {
        let bytes = std::fs::read(under_test.checkpoint.join(name)).unwrap_or_else(|e| panic!("{stale}: no {name} in the checkpoint ({e})"));
        let got = sha256_hex(&bytes);
        assert_eq!(got, digest.as_str().unwrap(), "{stale}: {name} has sha256 {got}, the reference was made from {digest}");
    }
    under_test
}

fn open() -> (Value, Loc3r) {
    let reference = reference();
    let bundle = &bundle_checked(&reference).bundle;
    let model = Loc3r::open(bundle, &SessionOptions::default()).expect("open the bundle");
    (reference, model)
}

fn frames_dir(reference: &Value) -> PathBuf {
    fixture_dir().join(reference["video"]["dir"].as_str().unwrap())
}

fn num_frames(reference: &Value) -> usize {
    reference["num_frames"].as_u64().unwrap() as usize
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn situation(q: &Value) -> Option<&str> {
    q["situation"].as_str()
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    assert!((got - want).abs() <= tol, "{what}: runtime {got}, reference {want} (|diff| {:.3e} > {tol:.0e})", (got - want).abs());
}

#[test]
fn sampled_frames_and_camera_poses_match_the_reference() {
    let (reference, model) = open();
    let n = num_frames(&reference);
    let frames = load_frames(&frames_dir(&reference), &FrameSpec::new(n)).expect("load the fixture frames");
    assert_eq!(frames.total_frames as u64, reference["video"]["total_frames"].as_u64().unwrap());
    assert_eq!(frames.duration_s, reference["video"]["duration_s"].as_f64().unwrap());
    let want_idx = u64s(&reference["sampled_indices"]);
    let want_t = f64s(&reference["frame_times_s"]);
    assert_eq!(frames.frames.iter().map(|f| f.index as u64).collect::<Vec<_>>(), want_idx, "sampled indices");
    assert_eq!(frames.frames.iter().map(|f| f.time_s).collect::<Vec<_>>(), want_t, "frame times");

    let scene = model.observe_video(&frames_dir(&reference), n).expect("observe the fixture frames");
    assert_eq!(scene.frames.iter().map(|f| f.index as u64).collect::<Vec<_>>(), want_idx, "scene frame indices");
    assert_eq!(scene.frames.iter().map(|f| f.time_s).collect::<Vec<_>>(), want_t, "scene frame times");
    let poses = reference["camera_poses"].as_array().unwrap();
    let mut pairs = Vec::new();
    for (i, (f, want)) in scene.frames.iter().zip(poses).enumerate() {
        for (j, (got, want)) in f.camera_pose.iter().zip(f64s(want)).enumerate() {
            pairs.push((format!("frame {i} camera_pose[{j}]"), *got as f64, want));
        }
    }
    eprintln!("camera poses: max |diff| {:.2e}", pairs.iter().map(|(_, got, want)| (got - want).abs()).fold(0f64, f64::max));
    for (what, got, want) in pairs {
        close(&what, got, want, POSE_TOL);
    }
}

#[test]
fn prompt_ids_match_the_reference() {
    let (reference, model) = open();
    let b = model.bundle();
    let frames = load_frames(&frames_dir(&reference), &FrameSpec::new(num_frames(&reference))).expect("frames");
    let timing = VideoTiming { duration_s: frames.duration_s, frame_times_s: frames.frames.iter().map(|f| f.time_s).collect() };
    assert_eq!(prompt::time_instruction(&b.manifest.runtime.prompt, &timing), reference["time_instruction"].as_str().unwrap());
    for q in reference["questions"].as_array().unwrap() {
        let plan = prompt::plan(&b.tokenizer, &b.manifest.runtime.prompt, &timing, situation(q), q["question"].as_str().unwrap()).expect("prompt plan");
        let got: Vec<i64> =
            plan.head.iter().map(|&i| i as i64).chain([IMAGE_TOKEN_INDEX]).chain(plan.video_tail.iter().chain(&plan.question).map(|&i| i as i64)).collect();
        let want: Vec<i64> = q["prompt_ids"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
        assert_eq!(got, want, "{}: prompt ids (runtime head + [-200] + video_tail + question vs reference)", q["name"]);
        assert!(!plan.video_tail.is_empty(), "{}: the video tail should be cached with the prefix", q["name"]);
        let text = prompt::prompt_text(&b.manifest.runtime.prompt, &timing, situation(q), q["question"].as_str().unwrap());
        assert_eq!(text, q["prompt_text"].as_str().unwrap(), "{}: prompt text", q["name"]);
    }
}

/// Per-step greedy margins, recorded by `pipeline_golden.py --lenient` (which also lets a
/// reference have fewer than 16 generated ids).
fn greedy_margins(q: &Value) -> Option<Vec<f64>> {
    q.get("greedy_margins").map(f64s)
}

fn check_answer(model: &Loc3r, q: &Value, a: &Answer, when: &str) {
    let name = format!("{} ({when})", q["name"].as_str().unwrap());
    let want_ids = u64s(&q["generated_ids"]);
    let margins = greedy_margins(q);
    if margins.is_none() {
        assert!(want_ids.len() >= MIN_GENERATED, "{name}: the reference has only {} generated ids", want_ids.len());
    }
    assert_eq!(a.tokens.prompt as u64, q["prompt_tokens"].as_u64().unwrap(), "{name}: prompt tokens (spliced)");
    // Both the ids and the pose are reported before either is asserted (a divergence then shows
    // whether the prefill already differs).
    let got_ids: Vec<u64> = a.token_ids.iter().map(|&i| i as u64).collect();
    let ids_differ = (got_ids != want_ids).then(|| {
        let step = got_ids.iter().zip(&want_ids).take_while(|(a, b)| a == b).count();
        let margin = match &margins {
            Some(m) => m.get(step).map_or("n/a (past the reference's end)".into(), |m| format!("{m:.3e}")),
            None => format!("not recorded (min over all steps {:.3e})", q["greedy_min_margin"].as_f64().unwrap()),
        };
        format!("generated ids differ from step {step} (reference top-1/top-2 margin there: {margin})\n runtime   {got_ids:?}\n reference {want_ids:?}")
    });
    eprintln!("{name}: {}", ids_differ.as_deref().unwrap_or("generated ids identical"));
    check_pose(q, &a.pose, &name);
    if let Some(msg) = ids_differ {
        panic!("{name}: {msg}");
    }
    assert_eq!(a.tokens.generated, want_ids.len(), "{name}: generated token count");
    // Detokenising the ids at once (the reference's `decode(ids, skip_special_tokens=True).strip()`).
    let full = model.bundle().tokenizer.decode(&a.token_ids, true).expect("decode");
    assert_eq!(full.trim(), q["answer"].as_str().unwrap(), "{name}: decode of the generated ids");
}

fn check_pose(q: &Value, pose: &loc3r::Localization, name: &str) {
    let p = &q["position"];
    eprintln!(
        "{name}: |diff| x {:.1e} y {:.1e} σx {:.1e} σy {:.1e} yaw {:.1e}°",
        (pose.position.x as f64 - p["x"].as_f64().unwrap()).abs(),
        (pose.position.y as f64 - p["y"].as_f64().unwrap()).abs(),
        (pose.position.sigma_x as f64 - p["sigma_x"].as_f64().unwrap()).abs(),
        (pose.position.sigma_y as f64 - p["sigma_y"].as_f64().unwrap()).abs(),
        (pose.yaw_deg - q["yaw_deg"].as_f64().unwrap()).abs()
    );
    close(&format!("{name}: x"), pose.position.x as f64, p["x"].as_f64().unwrap(), POS_TOL);
    close(&format!("{name}: y"), pose.position.y as f64, p["y"].as_f64().unwrap(), POS_TOL);
    close(&format!("{name}: sigma_x"), pose.position.sigma_x as f64, p["sigma_x"].as_f64().unwrap(), POS_TOL);
    close(&format!("{name}: sigma_y"), pose.position.sigma_y as f64, p["sigma_y"].as_f64().unwrap(), POS_TOL);
    close(&format!("{name}: yaw_deg"), pose.yaw_deg, q["yaw_deg"].as_f64().unwrap(), YAW_TOL_DEG);
    let probs = f64s(&q["orientation_probs"]);
    assert_eq!(pose.orientation_probs.len(), probs.len(), "{name}: orientation bins");
    for (k, (got, want)) in pose.orientation_probs.iter().zip(probs).enumerate() {
        close(&format!("{name}: orientation_probs[{k}]"), *got as f64, want, PROB_TOL);
    }
}

fn ask(scene: &Scene, q: &Value) -> Answer {
    let opts = GenerationOptions { max_new_tokens: q["max_new_tokens"].as_u64().unwrap() as usize, ..Default::default() };
    scene.ask(situation(q), q["question"].as_str().unwrap(), &opts).expect("ask")
}

#[test]
fn answers_and_poses_match_the_reference_in_both_orders() {
    let (reference, model) = open();
    let qs = reference["questions"].as_array().unwrap();
    assert_eq!(qs.len(), 2);
    assert_ne!(qs[0]["situation_used"], qs[1]["situation_used"], "the two questions should have different situations");
    let n = num_frames(&reference);
    for order in [[0usize, 1], [1, 0]] {
        // One observed video per order: the first question runs on a fresh prefix, the second
        // on the same cached prefix after it.
        let scene = model.observe_video(&frames_dir(&reference), n).expect("observe");
        for (k, &i) in order.iter().enumerate() {
            let when = format!("order {order:?}, {}", if k == 0 { "first on the prefix" } else { "second, reused prefix" });
            let a = ask(&scene, &qs[i]);
            eprintln!(
                "{} ({when}): {} ids, pos ({:.5}, {:.5}) σ ({:.5}, {:.5}), yaw {:.4}°",
                qs[i]["name"],
                a.token_ids.len(),
                a.pose.position.x,
                a.pose.position.y,
                a.pose.position.sigma_x,
                a.pose.position.sigma_y,
                a.pose.yaw_deg
            );
            check_answer(&model, &qs[i], &a, &when);
        }
        // localize() reads the same <Pos>/<Ori> hidden states (they do not see the question).
        for q in qs {
            let pose = scene.localize(situation(q)).expect("localize");
            check_pose(q, &pose, &format!("{} localize after order {order:?}", q["name"]));
        }
    }
}

/// Encoders run one frame per call and the prompt is prefilled 7 positions per decoder call
/// (chunk borders inside the frames and the text): the reference's ids and poses still hold.
#[test]
fn frame_batches_and_prefill_chunks_do_not_change_the_results() {
    let reference = reference();
    let bundle = &bundle_checked(&reference).bundle;
    let model = Loc3r::open(bundle, &SessionOptions { frame_batch: 1, prefill_chunk: 7, ..SessionOptions::default() }).expect("open the bundle");
    let scene = model.observe_video(&frames_dir(&reference), num_frames(&reference)).expect("observe");
    for q in reference["questions"].as_array().unwrap() {
        check_answer(&model, q, &ask(&scene, q), "frame_batch 1, prefill_chunk 7");
        check_pose(q, &scene.localize(situation(q)).expect("localize"), &format!("{} localize, prefill_chunk 7", q["name"]));
    }
}

/// The answer text should be the generated ids detokenised at once (docs/prompt.md §5: skip
/// specials, lossy UTF-8, strip), including a trailing incomplete UTF-8
/// sequence, which must become U+FFFD (q_default_situation ends with two such bytes).
#[test]
fn answer_text_matches_the_reference() {
    let (reference, model) = open();
    let scene = model.observe_video(&frames_dir(&reference), num_frames(&reference)).expect("observe");
    for q in reference["questions"].as_array().unwrap() {
        let a = ask(&scene, q);
        assert_eq!(a.answer, q["answer"].as_str().unwrap(), "{}: answer text", q["name"]);
    }
}

/// The fp16 bundle of the same checkpoint, free-running greedy: the reference's top-2 logit
/// margins are ≥ 1.8e-2 at every step (README-pipeline.md), well above fp16's logit error
/// (≈ 4e-3 on the tiny model), so the generated ids must be identical. Pose: fp16 tolerance
/// 2e-2 on x, y, σ and 1° on yaw.
#[test]
fn fp16_bundle_generates_the_same_ids() {
    let reference = reference();
    let ckpt = &bundle_checked(&reference).checkpoint;
    let qs = reference["questions"].as_array().unwrap();
    // Other references (LOC3R_PIPELINE_FIXTURE) may have margins within fp16's logit error.
    if let Some(m) = qs.iter().map(|q| q["greedy_min_margin"].as_f64().unwrap()).find(|&m| m < 1e-2) {
        eprintln!("skipped: the reference has a greedy margin of {m:.3e} < 1e-2, within fp16 error");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fp16 = tmp.path().join("bundle-fp16");
    let opts = loc3r_export::bundle::BundleOptions { precision: loc3r_export::DType::F16, ..export_options(&reference) };
    loc3r_export::bundle::export_bundle(ckpt, &fp16, &opts, |_| {}).expect("fp16 export");
    // Whole calls, and small frame batches / prefill chunks (f16 KV caches joined chunk by chunk).
    for work in [SessionOptions::default(), SessionOptions { frame_batch: 3, prefill_chunk: 7, ..SessionOptions::default() }] {
        let model = Loc3r::open(&fp16, &work).expect("open the fp16 bundle");
        let scene = model.observe_video(&frames_dir(&reference), num_frames(&reference)).expect("observe");
        for q in qs {
            let name = format!("{} (frame_batch {}, prefill_chunk {})", q["name"].as_str().unwrap(), work.frame_batch, work.prefill_chunk);
            check_fp16_answer(&ask(&scene, q), q, &name);
        }
    }
}

/// An fp16 answer: the reference's ids exactly, pose within fp16 tolerances.
fn check_fp16_answer(a: &Answer, q: &Value, name: &str) {
    assert_eq!(a.token_ids.iter().map(|&i| i as u64).collect::<Vec<_>>(), u64s(&q["generated_ids"]), "{name}: fp16 generated ids");
    let p = &q["position"];
    for (what, got, want) in [
        ("x", a.pose.position.x, &p["x"]),
        ("y", a.pose.position.y, &p["y"]),
        ("sigma_x", a.pose.position.sigma_x, &p["sigma_x"]),
        ("sigma_y", a.pose.position.sigma_y, &p["sigma_y"]),
    ] {
        close(&format!("{name} fp16 {what}"), got as f64, want.as_f64().unwrap(), 2e-2);
    }
    close(&format!("{name} fp16 yaw_deg"), a.pose.yaw_deg, q["yaw_deg"].as_f64().unwrap(), 1.0);
    eprintln!("{name} fp16: {} ids identical; yaw {:.4}° vs {:.4}°", a.token_ids.len(), a.pose.yaw_deg, q["yaw_deg"].as_f64().unwrap());
}

/// Live frames: observing the first frames and pushing the rest one or two at a time gives
/// the reference's answers, poses and CUT3R camera poses, as observing them all at once does.
#[test]
fn pushing_frames_equals_observing_them_at_once() {
    let (reference, model) = open();
    let n = num_frames(&reference);
    assert!(n >= 3, "the reference needs at least 3 frames, has {n}");
    let all = load_frames(&frames_dir(&reference), &FrameSpec::new(n)).expect("load frames");
    let part = |range: std::ops::Range<usize>| loc3r::stages::video::Frames { frames: all.frames[range].to_vec(), ..all.clone() };
    let mut scene = model.observe_frames(&part(0..1)).expect("observe the first frame");
    let at_once = model.observe_frames(&all).expect("observe all");
    let mut pushed = 1;
    for step in [1, 2].iter().cycle() {
        let end = (pushed + step).min(n);
        scene.push_frames(&part(pushed..end)).expect("push frames");
        pushed = end;
        if pushed == n {
            break;
        }
    }
    assert_eq!(scene.frames_seen(), n);
    assert_eq!(scene.prefix_tokens(), at_once.prefix_tokens());
    for (f, (got, want)) in scene.frames.iter().zip(&at_once.frames).enumerate() {
        assert_eq!((got.index, got.time_s), (want.index, want.time_s), "frame {f}");
        for (k, (a, b)) in got.camera_pose.iter().zip(&want.camera_pose).enumerate() {
            close(&format!("pushed frame {f} camera_pose[{k}]"), *a as f64, *b as f64, POSE_TOL);
        }
    }
    for q in reference["questions"].as_array().unwrap() {
        check_answer(&model, q, &ask(&scene, q), "frames pushed one or two at a time");
    }
    // An empty push is an error and leaves the scene as it was.
    let empty = loc3r::stages::video::Frames { frames: Vec::new(), ..all.clone() };
    assert!(scene.push_frames(&empty).is_err());
    assert_eq!(scene.frames.len(), n);
}

/// A push that fails (here: the new frames overflow a shortened context, which is found before
/// any frame is encoded) leaves the scene exactly as it was; observing too many frames is refused
/// the same way; pushed times must continue the stream.
#[test]
fn a_failed_push_leaves_the_scene_unchanged() {
    let (reference, model) = open();
    let n = num_frames(&reference);
    let all = load_frames(&frames_dir(&reference), &FrameSpec::new(n)).expect("load frames");
    let part = |range: std::ops::Range<usize>| loc3r::stages::video::Frames { frames: all.frames[range].to_vec(), ..all.clone() };
    let prefix_one_frame = model.observe_frames(&part(0..1)).expect("observe").prefix_tokens();

    let tmp = tempfile::tempdir().unwrap();
    // Room for a question after one frame, not for the video tokens of the other frames.
    let per_frame = model.bundle().manifest.runtime.vision.tokens_per_frame + 1;
    assert!(n >= 3 && (n - 1) * per_frame > 28, "{n} frames of {per_frame} tokens");
    let short = loc3r_e2e::bundle_with_context(&bundle_checked(&reference).bundle, tmp.path(), prefix_one_frame + 28);
    let short_model = Loc3r::open(&short, &SessionOptions::default()).expect("open the short-context bundle");

    let mut scene = short_model.observe_frames(&part(0..1)).expect("observe the first frame");
    let opts = GenerationOptions { max_new_tokens: 8, ..Default::default() };
    let before = scene.ask(None, "Where is the chair?", &opts).expect("ask before");
    let (frames, seen, prefix, bytes) = (scene.frames.len(), scene.frames_seen(), scene.prefix_tokens(), scene.cache_bytes());

    let err = scene.push_frames(&part(1..n)).expect_err("the pushed frames cannot fit the context").to_string();
    assert!(err.contains(&format!("{n} frames need a prompt of at least")) && err.contains("positions but the model supports"), "{err}");
    let err = short_model.observe_frames(&part(0..n)).expect_err("the frames cannot fit the context").to_string();
    assert!(err.contains("frames need a prompt of at least") && err.contains("use fewer frames"), "{err}");
    assert_eq!((scene.frames.len(), scene.frames_seen(), scene.prefix_tokens(), scene.cache_bytes()), (frames, seen, prefix, bytes));
    let after = scene.ask(None, "Where is the chair?", &opts).expect("ask after");
    assert_eq!(after.token_ids, before.token_ids);
    assert_eq!(after.pose.position.x, before.pose.position.x);

    // Times that restart (a new clip's own clock) are refused before any work.
    let mut restarted = part(1..2);
    restarted.frames[0].time_s = -1.0;
    let err = scene.push_frames(&restarted).expect_err("a time before the last frame's").to_string();
    assert!(err.contains("non-decreasing"), "{err}");
    let mut short_duration = part(1..2);
    short_duration.duration_s = short_duration.frames[0].time_s / 2.0;
    if short_duration.frames[0].time_s > 0.0 {
        let err = scene.push_frames(&short_duration).expect_err("a duration before the last frame").to_string();
        assert!(err.contains("duration"), "{err}");
    }
    assert_eq!(scene.frames.len(), frames);
}
