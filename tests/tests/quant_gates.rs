//! Accuracy gates of quantized bundles through the runtime, against the fp32 bundle of the
//! same tiny checkpoint (docs/quantization.md §3): the same video and questions, greedy
//! decoding of up to 64 tokens, the pose from `localize`.
//!
//! Measured: greedy-token agreement (the share of the fp32 answer's tokens reproduced
//! before the first difference, over all questions), the position error (metres, in the
//! plane) and the yaw error (degrees). The tiny checkpoint's weights are random and
//! uniform, the hardest case for round-to-nearest (no outliers to protect, logits close
//! together), so int4 answers drift after a few tokens; what is asserted for each form
//! is stated next to it in `GATES`.

use std::path::{Path, PathBuf};

use loc3r::{GenerationOptions, Loc3r, SessionOptions};
use loc3r_e2e::synthetic_video;
use loc3r_export::bundle::{export_bundle, BundleOptions};
use loc3r_export::quant::QuantRequest;
use loc3r_export::tiny::{make_tiny, TinyOptions};

const QUESTIONS: [&str; 3] = ["Where is the chair?", "What is on my left?", "How far is the door?"];

/// A quantized form and the bounds asserted for it.
struct Gate {
    name: &'static str,
    args: &'static [&'static str],
    /// Minimum greedy-token agreement with fp32 (share of fp32 tokens reproduced before the first difference).
    min_agreement: f64,
    /// Maximum position error (m) and yaw error (degrees) of `localize`.
    max_position_m: f64,
    max_yaw_deg: f64,
}

const GATES: [Gate; 5] = [
    Gate { name: "int8 matmulnbits", args: &["--weights", "int8"], min_agreement: 1.0, max_position_m: 0.01, max_yaw_deg: 1.0 },
    Gate { name: "int8 qdq (preset tensorrt-int8)", args: &["--preset", "tensorrt-int8"], min_agreement: 1.0, max_position_m: 0.01, max_yaw_deg: 1.0 },
    Gate { name: "int4 matmulnbits (preset cpu)", args: &["--preset", "cpu"], min_agreement: 0.0, max_position_m: 0.05, max_yaw_deg: 5.0 },
    Gate { name: "int4 matmulnbits block 128 zero points", args: &["--weights", "int4", "--block-size", "128", "--zero-points"], min_agreement: 0.0, max_position_m: 0.05, max_yaw_deg: 5.0 },
    Gate { name: "int4 qdq", args: &["--weights", "int4", "--quant-format", "qdq"], min_agreement: 0.0, max_position_m: 0.05, max_yaw_deg: 5.0 },
];

/// The flags of a gate as the exporter's request (the same parsing as the CLI's).
fn request(args: &[&str]) -> QuantRequest {
    let mut r = QuantRequest::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("flag value").to_string();
        match *flag {
            "--weights" => r.weights = Some(value()),
            "--block-size" => r.block_size = Some(value().parse().unwrap()),
            "--quant-format" => r.format = Some(if value() == "qdq" { loc3r_bundle::QuantFormat::Qdq } else { loc3r_bundle::QuantFormat::MatMulNBits }),
            "--zero-points" => r.zero_points = true,
            "--preset" => r.preset = Some(value().parse().unwrap()),
            other => panic!("flag {other} not handled by the test"),
        }
    }
    r
}

fn export(ckpt: &Path, out: PathBuf, args: &[&str]) -> PathBuf {
    let weights = request(args).resolve().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    export_bundle(ckpt, &out, &BundleOptions { weights, ..BundleOptions::default() }, |_| {}).unwrap_or_else(|e| panic!("export {args:?}: {e}"));
    out
}

struct Run {
    answers: Vec<Vec<u32>>,
    x: f64,
    y: f64,
    yaw: f64,
}

fn run(bundle: &Path, video: &Path) -> Run {
    let m = Loc3r::open(bundle, &SessionOptions { intra_threads: 1, ..SessionOptions::default() }).unwrap_or_else(|e| panic!("{}: {e}", bundle.display()));
    let scene = m.observe_video(video, 4).unwrap();
    let opts = GenerationOptions { max_new_tokens: 64, ..GenerationOptions::default() };
    let answers = QUESTIONS.iter().map(|q| scene.ask(None, q, &opts).unwrap().token_ids).collect();
    let pose = scene.localize(None).unwrap();
    Run { answers, x: f64::from(pose.position.x), y: f64::from(pose.position.y), yaw: pose.yaw_deg }
}

/// Share of the reference tokens reproduced before the first difference, over all answers.
fn agreement(reference: &[Vec<u32>], got: &[Vec<u32>]) -> f64 {
    let total: usize = reference.iter().map(Vec::len).sum();
    let same: usize = reference.iter().zip(got).map(|(a, b)| a.iter().zip(b).take_while(|(x, y)| x == y).count()).sum();
    if total == 0 {
        1.0
    } else {
        same as f64 / total as f64
    }
}

fn yaw_error(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(360.0);
    d.min(360.0 - d)
}

#[test]
fn quantized_bundles_meet_the_stated_gates_against_fp32() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("checkpoint");
    make_tiny(&ckpt, &TinyOptions { seed: 1, ..TinyOptions::default() }, |_, _| {}).unwrap();
    let video = synthetic_video(tmp.path(), "room.mp4", 160, 120, 30);
    let reference = run(&export(&ckpt, tmp.path().join("fp32"), &[]), &video);
    let generated: usize = reference.answers.iter().map(Vec::len).sum();
    assert!(generated >= 32, "the fp32 answers are too short ({generated} tokens) to measure agreement");
    let mut failures = Vec::new();
    for (i, gate) in GATES.iter().enumerate() {
        let got = run(&export(&ckpt, tmp.path().join(format!("q{i}")), gate.args), &video);
        let agree = agreement(&reference.answers, &got.answers);
        let position = ((got.x - reference.x).powi(2) + (got.y - reference.y).powi(2)).sqrt();
        let yaw = yaw_error(got.yaw, reference.yaw);
        eprintln!("{}: greedy agreement {:.3} over {generated} fp32 tokens, position error {position:.4} m, yaw error {yaw:.3} deg", gate.name);
        if agree < gate.min_agreement || position > gate.max_position_m || yaw > gate.max_yaw_deg {
            failures.push(format!(
                "{}: agreement {agree:.3} (min {}), position {position:.4} m (max {}), yaw {yaw:.3} deg (max {})",
                gate.name, gate.min_agreement, gate.max_position_m, gate.max_yaw_deg
            ));
        }
    }
    assert!(failures.is_empty(), "gates missed:\n{}", failures.join("\n"));
}

#[test]
fn a_quantized_bundle_records_its_settings_and_refuses_tensorrt() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("checkpoint");
    make_tiny(&ckpt, &TinyOptions { seed: 2, ..TinyOptions::default() }, |_, _| {}).unwrap();
    let bundle = export(&ckpt, tmp.path().join("cpu"), &["--preset", "cpu"]);
    let manifest = loc3r_bundle::Manifest::read(&bundle).unwrap();
    let q = manifest.quantization.expect("the manifest records the quantization");
    assert_eq!((q.preset.as_deref(), q.graphs.as_slice()), (Some("cpu"), &["decoder".to_string()][..]));
    let tensorrt = SessionOptions { device: "tensorrt".parse().unwrap(), ..SessionOptions::default() };
    let e = Loc3r::open(&bundle, &tensorrt).unwrap_err().to_string();
    assert!(e.contains("MatMulNBits") && e.contains("--preset tensorrt-int8"), "{e}");
}
