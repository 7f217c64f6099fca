//! The training loop on the tiny checkpoint: every trainable group memorises 8 prepared
//! samples (LM cross-entropy and orientation KL fall by ≥ 90%), a run stopped halfway and
//! resumed ends bit for bit where an uninterrupted one does, and the trained checkpoint exports.

use std::path::Path;

use loc3r_export::checkpoint::{Checkpoint, Requirements};
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_train::losses::LossWeights;
use loc3r_train::sample::Sample;
use loc3r_train::trainer::{train, StepLog, TrainOptions, CHECKPOINT_DIR};

fn setup(dir: &Path, samples: usize) -> (std::path::PathBuf, std::path::PathBuf) {
    let ck = dir.join("ck");
    make_tiny(&ck, &TinyOptions { seed: 6, ..TinyOptions::default() }, |_, _| {}).expect("tiny checkpoint");
    let cfg = Checkpoint::open(&ck, None, Requirements::default()).expect("opens").config().clone();
    let data = dir.join("samples");
    std::fs::create_dir_all(&data).expect("dir");
    for i in 0..samples {
        Sample::random_for(&cfg, 2, 100 + i as u64).write(&data.join(format!("{i:03}.safetensors"))).expect("writes");
    }
    (ck, data)
}

fn options(steps: u64) -> TrainOptions {
    TrainOptions {
        objective: Default::default(),
        train: "all".into(),
        lora_rank: loc3r_train::lora::DEFAULT_RANK,
        lora_alpha: loc3r_train::lora::DEFAULT_ALPHA,
        loss_weights: LossWeights::default().into(),
        steps,
        lr: 3e-3,
        warmup_ratio: 0.05,
        accumulate: 2,
        max_grad_norm: 1.0,
        weight_decay: 0.0,
        seed: 7,
        threads: 1,
        save_every: 1000,
        recompute: Default::default(),
    }
}

fn mean(log: &[StepLog], part: &str) -> f64 {
    log.iter().map(|s| s.losses[part]).sum::<f64>() / log.len() as f64
}

#[test]
fn every_group_memorises_eight_samples_and_the_result_exports() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ck, data) = setup(dir.path(), 8);
    let run = dir.path().join("run");
    let steps = 80;
    let log = train(&ck, &data, &run, &options(steps), None, |_| {}).expect("trains");
    assert_eq!(log.len() as u64, steps);
    // One epoch is 4 updates (8 samples, 2 per update): first epoch against the last.
    let (first, last) = (&log[..4], &log[log.len() - 4..]);
    for part in ["loss.lm", "loss.ori"] {
        let (a, b) = (mean(first, part), mean(last, part));
        println!("{part}: {a:.4} -> {b:.4}");
        assert!(b <= 0.1 * a, "{part}: {a} -> {b}, less than a 90% drop");
    }
    println!(
        "loss.pos: {:.4} -> {:.4}; loss.bev: {:.4} -> {:.4}",
        mean(first, "loss.pos"),
        mean(last, "loss.pos"),
        mean(first, "loss.bev"),
        mean(last, "loss.bev")
    );
    assert_eq!(std::fs::read_to_string(run.join("log.jsonl")).expect("log").lines().count() as u64, steps);

    let bundle = dir.path().join("bundle");
    let opts = loc3r_export::bundle::BundleOptions { graphs: Some(vec!["projector".into(), "heads".into(), "decoder".into()]), ..Default::default() };
    loc3r_export::bundle::export_bundle(&run.join(CHECKPOINT_DIR), &bundle, &opts, |_| {}).expect("the trained checkpoint exports");
}

#[test]
fn a_resumed_run_equals_an_uninterrupted_one_bit_for_bit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ck, data) = setup(dir.path(), 3);
    let opts = options(6);
    let straight = dir.path().join("straight");
    train(&ck, &data, &straight, &opts, None, |_| {}).expect("trains");
    let halves = dir.path().join("halves");
    let first = train(&ck, &data, &halves, &opts, Some(3), |_| {}).expect("first half");
    assert_eq!(first.len(), 3);
    assert!(!halves.join(CHECKPOINT_DIR).exists(), "no trained checkpoint before the run ends");
    let second = train(&ck, &data, &halves, &opts, None, |_| {}).expect("resumes");
    assert_eq!(second.iter().map(|s| s.step).collect::<Vec<_>>(), [4, 5, 6]);
    for file in ["params.safetensors", "optimizer.safetensors"] {
        assert_eq!(std::fs::read(straight.join(file)).expect("straight"), std::fs::read(halves.join(file)).expect("halves"), "{file} differs after resuming");
    }
    // Another configuration cannot resume this run.
    let mut other = opts.clone();
    other.lr = 1e-3;
    let err = train(&ck, &data, &halves, &other, None, |_| {}).unwrap_err();
    assert!(err.is_input() && err.to_string().contains("other options"), "{err}");
}
