//! CUT3R pose pretraining on the tiny checkpoint: the unrolled training graph computes what the
//! runtime computes with the exported bundle (same poses, hence the same loss), its gradient
//! agrees with central differences of the loss, training memorises a few sequences, and the
//! trained CUT3R exports (the runtime then reports the poses the training graph predicted).

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::assert_directional_derivative;
use loc3r::stages::cut3r::{Cut3r, Cut3rState};
use loc3r::{bundle::Bundle, SessionOptions};
use loc3r_export::bundle::{export_bundle, BundleOptions};
use loc3r_export::checkpoint::{Checkpoint, Requirements};
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_train::losses::LossWeights;
use loc3r_train::pose::{self, PointTargets, PoseSequence};
use loc3r_train::session::{host_params, Runner};
use loc3r_train::trainer::{train, Objective, TrainOptions, CHECKPOINT_DIR};
use ndarray::{Array4, ArrayD};

const FRAMES: usize = 3;

/// A sequence of seeded pixels in [-1, 1] and target poses (unit quaternions, w ≥ 0).
fn sequence(ckpt: &Checkpoint, seed: u64) -> PoseSequence {
    let [w, h] = ckpt.config().cut3r.input_size;
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let image = (0..FRAMES * 3 * h * w).map(|_| (2.0 * next() - 1.0) as f32).collect();
    let mut pose = Vec::new();
    for f in 0..FRAMES {
        let half = 0.4 * f as f64;
        let t = [0.3 * f as f64, -0.1 * f as f64, 0.2 + next()];
        pose.extend([t[0], t[1], t[2], half.cos(), 0.0, half.sin(), 0.0].map(|v| v as f32));
    }
    PoseSequence { image_shape: [FRAMES, 3, h, w], image, pose, points: None }
}

fn tiny(dir: &Path) -> PathBuf {
    let ck = dir.join("ck");
    make_tiny(&ck, &TinyOptions { seed: 11, ..TinyOptions::default() }, |_, _| {}).expect("tiny checkpoint");
    ck
}

/// The runtime's poses for the sequence's pixels, through a bundle exported from `ck`.
fn runtime_poses(ck: &Path, seq: &PoseSequence, out: &Path) -> ndarray::Array2<f32> {
    export_bundle(ck, out, &BundleOptions { graphs: Some(vec!["cut3r_encoder".into(), "cut3r_step".into()]), ..BundleOptions::default() }, |_| {})
        .expect("export");
    let bundle = Bundle::open(out, &SessionOptions::default()).expect("bundle");
    let init = Cut3rState::initial(&bundle).expect("init state");
    let pixels = Array4::from_shape_vec(seq.image_shape, seq.image.clone()).expect("shape");
    Cut3r::new(&bundle).expect("cut3r").run(&pixels, &init).expect("runs").0.poses
}

/// The pose loss in f64, as documented in `loc3r_train::pose`.
fn loss_of(poses: &ndarray::Array2<f32>, seq: &PoseSequence) -> (f64, f64) {
    let (mut lt, mut lq) = (0.0, 0.0);
    for f in 0..FRAMES {
        let p: Vec<f64> = poses.row(f).iter().map(|&v| f64::from(v)).collect();
        let t: Vec<f64> = seq.pose[f * 7..f * 7 + 7].iter().map(|&v| f64::from(v)).collect();
        lt += ((0..3).map(|i| (p[i] - t[i]).powi(2)).sum::<f64>() + 1e-6).sqrt();
        lq += 1.0 - (3..7).map(|i| p[i] * t[i]).sum::<f64>().powi(2);
    }
    (lt / FRAMES as f64, lq / FRAMES as f64)
}

fn loss_part(losses: &[(String, f32)], name: &str) -> f64 {
    f64::from(losses.iter().find(|(n, _)| n == name).expect("loss part").1)
}

#[test]
fn the_training_graph_is_the_runtime_chain_and_its_gradient_matches_differences() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ck = tiny(dir.path());
    let ckpt = Checkpoint::open(&ck, None, Requirements::default()).expect("opens");
    let seq = sequence(&ckpt, 1);
    let tg = pose::training_graph(&ckpt, FRAMES, false).expect("graph");
    let trainable = pose::trainable_tensors(&ckpt);
    assert!(tg.params.iter().all(|p| trainable.contains(&p.name)) && tg.params.len() > 20, "{} trainable tensors", tg.params.len());
    assert!(tg.params.iter().any(|p| p.name.starts_with("patch_embed")), "the patch embedding (a Conv) trains too");
    let graphs = dir.path().join("graphs");
    std::fs::create_dir_all(&graphs).expect("dir");
    let mut runner = Runner::new(&tg, &graphs, 1).expect("session");
    let mut params = host_params(&tg).expect("params");
    let feeds = seq.feeds();
    let none = HashMap::<String, ArrayD<i64>>::new();
    let eval = runner.run(&params, &feeds, &none).expect("runs");

    // Forward: the runtime's poses give the same loss terms (f32 graphs, tolerance 1e-4).
    let (lt, lq) = loss_of(&runtime_poses(&ck, &seq, &dir.path().join("bundle")), &seq);
    let (gt, gq) = (loss_part(&eval.losses, "loss.translation"), loss_part(&eval.losses, "loss.rotation"));
    println!("translation {gt} vs runtime {lt}; rotation {gq} vs runtime {lq}");
    assert!((gt - lt).abs() <= 1e-4 * lt.max(1.0) && (gq - lq).abs() <= 1e-4, "graph ({gt}, {gq}) runtime ({lt}, {lq})");

    assert_directional_derivative(&mut runner, &mut params, &eval, &feeds, 5);
}

/// Depth for the sequence's pixels: 0.5–3.5 m with about one pixel in ten unknown, and the rays
/// of a pinhole camera with the principal point at the centre.
fn with_points(mut seq: PoseSequence, seed: u64) -> PoseSequence {
    let [f, _, h, w] = seq.image_shape;
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let depth = (0..f * h * w).map(|_| if next() < 0.1 { 0.0 } else { (0.5 + 3.0 * next()) as f32 }).collect();
    let mut rays = Vec::with_capacity(h * w * 3);
    for y in 0..h {
        for x in 0..w {
            rays.extend([(x as f32 - (w as f32 - 1.0) / 2.0) / w as f32, (y as f32 - (h as f32 - 1.0) / 2.0) / w as f32, 1.0]);
        }
    }
    seq.points = Some(PointTargets { depth, rays });
    seq
}

#[test]
fn point_supervision_trains_the_world_point_head_and_its_gradient_matches_differences() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ck = tiny(dir.path());
    let ckpt = Checkpoint::open(&ck, None, Requirements::default()).expect("opens");
    let seq = with_points(sequence(&ckpt, 2), 9);
    let path = dir.path().join("seq.safetensors");
    seq.write(&path).expect("writes");
    assert_eq!(PoseSequence::read(&path).expect("reads"), seq, "point targets round-trip through the file");
    let tg = pose::training_graph(&ckpt, FRAMES, true).expect("graph");
    for head in ["dpt_cross", "patch_embed"] {
        assert!(tg.params.iter().any(|p| p.name.contains(head)), "{head} is not trained");
    }
    let graphs = dir.path().join("graphs");
    std::fs::create_dir_all(&graphs).expect("dir");
    let mut runner = Runner::new(&tg, &graphs, 1).expect("session");
    let params = host_params(&tg).expect("params");
    let feeds = seq.feeds();
    let none = HashMap::<String, ArrayD<i64>>::new();
    let eval = runner.run(&params, &feeds, &none).expect("runs");
    assert!(!tg.params.iter().any(|p| p.name.contains("dpt_self")), "only the world head is supervised");
    let parts: Vec<f64> = ["loss", "loss.translation", "loss.rotation", "loss.points"].iter().map(|n| loss_part(&eval.losses, n)).collect();
    println!("losses {parts:?}; point error {} m", loss_part(&eval.losses, "loss.points_error"));
    assert!((parts[0] - parts[1..].iter().sum::<f64>()).abs() <= 1e-4 * parts[0].abs().max(1.0), "the total is the sum of its terms");
    assert!(loss_part(&eval.losses, "loss.points_error") > 0.1, "a random CUT3R does not know the points");
    let mut params = params;
    assert_directional_derivative(&mut runner, &mut params, &eval, &feeds, 5);
}

#[test]
fn pose_training_memorises_sequences_and_the_trained_cut3r_exports() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ck = tiny(dir.path());
    let ckpt = Checkpoint::open(&ck, None, Requirements::default()).expect("opens");
    let data = dir.path().join("poses");
    std::fs::create_dir_all(&data).expect("dir");
    let seqs: Vec<PoseSequence> = (0..2).map(|k| sequence(&ckpt, 10 + k)).collect();
    for (k, s) in seqs.iter().enumerate() {
        s.write(&data.join(format!("{k}.safetensors"))).expect("writes");
        assert_eq!(&PoseSequence::read(&data.join(format!("{k}.safetensors"))).expect("reads"), s);
    }
    let opts = TrainOptions {
        objective: Objective::Cut3rPose,
        train: "cut3r".into(),
        lora_rank: loc3r_train::lora::DEFAULT_RANK,
        lora_alpha: loc3r_train::lora::DEFAULT_ALPHA,
        loss_weights: LossWeights::default().into(),
        steps: 60,
        lr: 3e-3,
        warmup_ratio: 0.05,
        accumulate: 2,
        max_grad_norm: 1.0,
        weight_decay: 0.0,
        seed: 3,
        threads: 1,
        save_every: 1000,
        recompute: Default::default(),
    };
    let run = dir.path().join("run");
    let log = train(&ck, &data, &run, &opts, None, |_| {}).expect("trains");
    let (first, last) = (&log[0].losses["loss"], &log[log.len() - 1].losses["loss"]);
    println!("pose loss {first:.4} -> {last:.4}");
    assert!(*last <= 0.3 * first, "pose loss {first} -> {last}: less than a 70% drop");

    // The trained checkpoint: CUT3R rewritten, the model untouched; the runtime's poses from its
    // bundle give the loss the training reached.
    let trained = run.join(CHECKPOINT_DIR);
    let poses = runtime_poses(&trained, &seqs[0], &dir.path().join("bundle"));
    let (lt, lq) = loss_of(&poses, &seqs[0]);
    println!("trained: runtime loss on sequence 0 = {:.4}", lt + lq);
    assert!(lt + lq <= 0.3 * first, "the exported CUT3R does not carry the training: {} vs initial {first}", lt + lq);
    assert!(!trained.join(loc3r_train::checkpoint::TRAINED_SHARD).exists(), "nothing of the model was trained");

    // Wrong objective/selection pairs are refused before any work.
    let bad = TrainOptions { train: "llm".into(), ..opts };
    let err = train(&ck, &data, &dir.path().join("bad"), &bad, None, |_| {}).unwrap_err();
    assert!(err.is_input() && err.to_string().contains("--train cut3r"), "{err}");
}
