//! Accuracy gates of quantized bundles through the runtime, against the fp32 bundle of the
//! same tiny checkpoint (docs/quantization.md §3): the same video and questions, greedy
//! decoding of up to 64 tokens, the pose from `localize`.
//!
//! Measured on the trained demo checkpoint (models/demo) and a held-out synthetic room:
//! greedy-token agreement (the share of the fp32 answers' tokens reproduced before the first
//! difference, over all questions; answers stop at their end token, at most 64), and per
//! question the position error (metres, in the plane) and yaw error (degrees). What is
//! asserted for each form is stated next to it in `GATES`; docs/quantization.md §3 has the
//! measured values. (On the random tiny checkpoint greedy agreement measures coin flips
//! between near-equal logits, fp16 included, so it is not a gate there.)

use std::path::{Path, PathBuf};

use loc3r::{GenerationOptions, Loc3r, SessionOptions};
use loc3r_export::bundle::{export_bundle, BundleOptions};
use loc3r_export::quant::QuantRequest;
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_synth::output::write_room;
use loc3r_synth::{generate_room, Options};

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

const GATES: [Gate; 8] = [
    // fp16, for scale: the error a float export already has.
    Gate { name: "fp16 (no quantization)", args: &["--fp16"], min_agreement: 1.0, max_position_m: 0.01, max_yaw_deg: 0.5 },
    Gate {
        name: "int8 matmulnbits accuracy_level 0",
        args: &["--weights", "int8", "--accuracy-level", "0"],
        min_agreement: 1.0,
        max_position_m: 0.03,
        max_yaw_deg: 1.0,
    },
    Gate { name: "int8 matmulnbits", args: &["--weights", "int8"], min_agreement: 1.0, max_position_m: 0.03, max_yaw_deg: 1.0 },
    Gate { name: "int8 qdq (preset tensorrt-int8)", args: &["--preset", "tensorrt-int8"], min_agreement: 1.0, max_position_m: 0.03, max_yaw_deg: 1.0 },
    Gate { name: "int4 matmulnbits (preset cpu)", args: &["--preset", "cpu"], min_agreement: 0.9, max_position_m: 0.15, max_yaw_deg: 5.0 },
    Gate {
        name: "int4 matmulnbits block 128 zero points",
        args: &["--weights", "int4", "--block-size", "128", "--zero-points"],
        min_agreement: 0.9,
        max_position_m: 0.15,
        max_yaw_deg: 5.0,
    },
    Gate {
        name: "int8 matmulnbits + lm_head",
        args: &["--weights", "int8", "--quantize-also", "lm_head"],
        min_agreement: 1.0,
        max_position_m: 0.03,
        max_yaw_deg: 1.0,
    },
    Gate { name: "int4 qdq", args: &["--weights", "int4", "--quant-format", "qdq"], min_agreement: 0.9, max_position_m: 0.15, max_yaw_deg: 5.0 },
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
            "--accuracy-level" => r.accuracy_level = Some(value().parse().unwrap()),
            "--fp16" => {}
            "--quantize-also" => r.also = value().split(',').map(|l| l.parse().unwrap()).collect(),
            "--preset" => r.preset = Some(value().parse().unwrap()),
            other => panic!("flag {other} not handled by the test"),
        }
    }
    r
}

fn export(ckpt: &Path, out: PathBuf, args: &[&str]) -> PathBuf {
    let weights = request(args).resolve().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let precision = if args.contains(&"--fp16") { loc3r_export::DType::F16 } else { loc3r_export::DType::F32 };
    export_bundle(ckpt, &out, &BundleOptions { weights, precision, ..BundleOptions::default() }, |_| {}).unwrap_or_else(|e| panic!("export {args:?}: {e}"));
    out
}

struct Run {
    answers: Vec<Vec<u32>>,
    /// (x, y, yaw°) per question.
    poses: Vec<(f64, f64, f64)>,
}

fn run(bundle: &Path, frames: &Path, questions: &[(String, String)]) -> Run {
    let m = Loc3r::open(bundle, &SessionOptions { intra_threads: 1, ..SessionOptions::default() }).unwrap_or_else(|e| panic!("{}: {e}", bundle.display()));
    let scene = m.observe_video(frames, 8).unwrap();
    let opts = GenerationOptions { max_new_tokens: 64, ..GenerationOptions::default() };
    let mut run = Run { answers: Vec::new(), poses: Vec::new() };
    for (situation, question) in questions {
        let a = scene.ask(Some(situation), question, &opts).unwrap();
        run.answers.push(a.token_ids);
        run.poses.push((f64::from(a.pose.position.x), f64::from(a.pose.position.y), a.pose.yaw_deg));
    }
    run
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

/// The trained demo checkpoint on a held-out synthetic room (seed 1000, as `make demo`):
/// a trained model's greedy choices have margins a random one lacks, so agreement measures
/// the quantization rather than coin flips between near-equal logits.
#[test]
fn quantized_bundles_meet_the_stated_gates_against_fp32() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = loc3r_e2e::repo_root().join("models/demo/checkpoint");
    let opts = Options { seed: 1000, frames: 16, width: 320, height: 240, questions: 12, video: false, ..Options::default() };
    let room = generate_room(&opts, 0).unwrap();
    write_room(tmp.path(), &opts, &room, None).unwrap();
    let frames = tmp.path().join("scenes").join(&room.scene_id).join("color");
    let questions: Vec<(String, String)> = room.situated.iter().map(|s| (s.situation.text.clone(), s.qa.question.clone())).collect();
    assert!(questions.len() >= 2, "the held-out room has {} situated questions", questions.len());
    let reference = run(&export(&ckpt, tmp.path().join("fp32"), &[]), &frames, &questions);
    let generated: usize = reference.answers.iter().map(Vec::len).sum();
    assert!(generated >= 8, "the fp32 answers are too short ({generated} tokens) to measure agreement");
    let mut failures = Vec::new();
    for (i, gate) in GATES.iter().enumerate() {
        let got = run(&export(&ckpt, tmp.path().join(format!("q{i}")), gate.args), &frames, &questions);
        let agree = agreement(&reference.answers, &got.answers);
        let (mut position, mut yaw) = (0f64, 0f64);
        for (a, b) in got.poses.iter().zip(&reference.poses) {
            position = position.max(((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt());
            yaw = yaw.max(yaw_error(a.2, b.2));
        }
        eprintln!(
            "{}: greedy agreement {agree:.3} over {generated} fp32 tokens, worst position error {position:.4} m, worst yaw error {yaw:.3} deg",
            gate.name
        );
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
    assert_eq!(
        (q.preset.as_deref(), q.graphs.as_slice(), q.layers.as_slice()),
        (Some("cpu"), &["decoder".to_string()][..], &["decoder".to_string(), "lm_head".to_string()][..])
    );
    let tensorrt = SessionOptions { device: "tensorrt".parse().unwrap(), ..SessionOptions::default() };
    let e = Loc3r::open(&bundle, &tensorrt).unwrap_err().to_string();
    assert!(e.contains("MatMulNBits") && e.contains("--preset tensorrt-int8"), "{e}");
}
