//! Device-resident training (`--update graph`): the path CUDA runs, exercised here on CPU
//! memory. It must train exactly like the host reference (AdamW in Rust), resume bit for bit,
//! handle accumulation, clipping and LoRA, and a GPU that is not there must be named.

use std::path::{Path, PathBuf};

use loc3r_export::checkpoint::{Checkpoint, Requirements};
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_train::device::{Device, Placement, Update};
use loc3r_train::losses::LossWeights;
use loc3r_train::sample::Sample;
use loc3r_train::trainer::{train_on, StepLog, TrainOptions, CHECKPOINT_DIR};

fn setup(dir: &Path, samples: usize) -> (PathBuf, PathBuf) {
    let ck = dir.join("ck");
    make_tiny(&ck, &TinyOptions { seed: 11, ..TinyOptions::default() }, |_, _| {}).expect("tiny checkpoint");
    let cfg = Checkpoint::open(&ck, None, Requirements::default()).expect("opens").config().clone();
    let data = dir.join("samples");
    std::fs::create_dir_all(&data).expect("dir");
    for i in 0..samples {
        Sample::random_for(&cfg, 2, 300 + i as u64).write(&data.join(format!("{i:03}.safetensors"))).expect("writes");
    }
    (ck, data)
}

fn options(train: &str, steps: u64, accumulate: usize, max_grad_norm: f64, weight_decay: f64) -> TrainOptions {
    TrainOptions {
        objective: Default::default(),
        train: train.into(),
        lora_rank: 4,
        lora_alpha: 8.0,
        loss_weights: LossWeights::default().into(),
        steps,
        lr: 2e-3,
        warmup_ratio: 0.2,
        accumulate,
        max_grad_norm,
        weight_decay,
        seed: 3,
        threads: 1,
        save_every: 1000,
        recompute: Default::default(),
    }
}

const HOST: Placement = Placement { device: Device::Cpu, update: Some(Update::Host) };
const GRAPH: Placement = Placement { device: Device::Cpu, update: Some(Update::Graph) };

fn run(ck: &Path, data: &Path, out: &Path, opts: &TrainOptions, placement: Placement, stop_after: Option<u64>) -> Vec<StepLog> {
    train_on(ck, data, out, opts, placement, stop_after, None, |_| {}).expect("trains")
}

fn tensors(path: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(path).expect("reads");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut out: Vec<(String, Vec<f32>)> =
        st.tensors().into_iter().map(|(name, t)| (name, t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The largest difference over every tensor of two files: relative to each tensor's scale,
/// and absolute.
fn differences(a: &Path, b: &Path) -> (f64, f64) {
    let (ta, tb) = (tensors(a), tensors(b));
    assert_eq!(ta.len(), tb.len());
    let (mut relative, mut absolute) = (0.0f64, 0.0f64);
    for ((na, va), (nb, vb)) in ta.iter().zip(&tb) {
        assert_eq!(na, nb);
        let scale = va.iter().map(|x| f64::from(x.abs())).fold(1e-30, f64::max);
        let diff = va.iter().zip(vb).map(|(x, y)| f64::from((x - y).abs())).fold(0.0, f64::max);
        relative = relative.max(diff / scale);
        absolute = absolute.max(diff);
    }
    (relative, absolute)
}

/// How far two runs' parameters may drift apart when only the clip coefficient's rounding
/// differs: a thousandth of the distance AdamW's normalised steps can move a parameter. (Not a
/// relative bound: tensors whose true gradient is zero, e.g. the key bias under softmax, train
/// on rounding noise, which AdamW normalises to full-size steps in whichever direction it has.)
fn drift_bound(opts: &TrainOptions) -> f64 {
    1e-3 * opts.lr * opts.steps as f64
}

#[test]
fn device_resident_updates_follow_the_host_reference() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ck, data) = setup(dir.path(), 3);
    // (what trains, samples per update, clipping norm, weight decay): one sample without
    // clipping must agree bit for bit; accumulation, active clipping, decay and LoRA within
    // the f32 rounding of the clip coefficient (the device sums the norm in f32).
    let cases = [("all", 1, 1e9, 0.0, true), ("all", 2, 0.05, 0.1, false), ("lora,heads,projector", 3, 0.5, 0.0, false)];
    for (k, (train, accumulate, clip, decay, bitwise)) in cases.into_iter().enumerate() {
        let opts = options(train, 4, accumulate, clip, decay);
        let (host, graph) = (dir.path().join(format!("host{k}")), dir.path().join(format!("graph{k}")));
        let host_log = run(&ck, &data, &host, &opts, HOST, None);
        let graph_log = run(&ck, &data, &graph, &opts, GRAPH, None);
        for (h, g) in host_log.iter().zip(&graph_log) {
            for (name, v) in &h.losses {
                let d = (v - g.losses[name]).abs();
                assert!(d <= 1e-5 * v.abs().max(1.0), "{train} update {}: {name} {v} (host) vs {} (graph)", h.step, g.losses[name]);
            }
            assert!((h.grad_norm - g.grad_norm).abs() <= 1e-5 * h.grad_norm.max(1e-3), "{train}: grad norm {} vs {}", h.grad_norm, g.grad_norm);
            assert!(!g.skipped);
        }
        if clip < 1.0 {
            assert!(host_log.iter().any(|s| s.grad_norm > clip), "{train}: clipping was never active");
        }
        let (params, moments) = (
            differences(&host.join("params.safetensors"), &graph.join("params.safetensors")),
            differences(&host.join("optimizer.safetensors"), &graph.join("optimizer.safetensors")),
        );
        println!(
            "{train}, {accumulate} per update, clip {clip}, decay {decay}: parameters differ by {:.3e} at most, moments by {:.3e} relative",
            params.1, moments.0
        );
        if bitwise {
            for file in ["params.safetensors", "optimizer.safetensors"] {
                assert_eq!(std::fs::read(host.join(file)).expect("host"), std::fs::read(graph.join(file)).expect("graph"), "{train}: {file} differs");
            }
        } else {
            assert!(params.1 <= drift_bound(&opts), "{train}: parameters differ by {:.3e}", params.1);
            assert!(moments.0 <= 1e-5, "{train}: moments differ by {:.3e} relative", moments.0);
        }
        // The trained checkpoint is written the same way (LoRA merged) and opens.
        Checkpoint::open(&graph.join(CHECKPOINT_DIR), None, Requirements::default()).expect("the trained checkpoint opens");
    }
}

#[test]
fn a_device_resident_run_resumes_bit_for_bit_and_on_the_other_placement() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ck, data) = setup(dir.path(), 3);
    let opts = options("all", 6, 2, 0.2, 0.0);
    let straight = dir.path().join("straight");
    run(&ck, &data, &straight, &opts, GRAPH, None);
    let halves = dir.path().join("halves");
    assert_eq!(run(&ck, &data, &halves, &opts, GRAPH, Some(3)).len(), 3);
    let second = run(&ck, &data, &halves, &opts, GRAPH, None);
    assert_eq!(second.iter().map(|s| s.step).collect::<Vec<_>>(), [4, 5, 6]);
    for file in ["params.safetensors", "optimizer.safetensors"] {
        assert_eq!(std::fs::read(straight.join(file)).expect("straight"), std::fs::read(halves.join(file)).expect("halves"), "{file} differs after resuming");
    }
    // The placement is not part of the run: half on the device path, half on the host.
    let mixed = dir.path().join("mixed");
    run(&ck, &data, &mixed, &opts, GRAPH, Some(3));
    run(&ck, &data, &mixed, &opts, HOST, None);
    let (_, d) = differences(&straight.join("params.safetensors"), &mixed.join("params.safetensors"));
    assert!(d <= drift_bound(&opts), "switching placement mid-run moved the parameters by {d:.3e}");
}

#[test]
fn a_non_finite_gradient_skips_the_update_on_the_device_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ck, data) = setup(dir.path(), 1);
    // A NaN loss weight makes every gradient NaN.
    let mut opts = options("heads", 2, 1, 1.0, 0.0);
    opts.loss_weights.bev = f64::NAN;
    for (name, placement) in [("host", HOST), ("graph", GRAPH)] {
        let out = dir.path().join(name);
        let log = run(&ck, &data, &out, &opts, placement, None);
        assert!(log.iter().all(|s| s.skipped), "{name}: {log:?}");
    }
    assert_eq!(
        std::fs::read(dir.path().join("host/params.safetensors")).expect("host"),
        std::fs::read(dir.path().join("graph/params.safetensors")).expect("graph"),
        "skipped updates must leave the parameters as they were"
    );
}

#[test]
fn cuda_without_its_provider_is_an_input_error_naming_what_is_missing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ck, data) = setup(dir.path(), 1);
    let cuda = Placement { device: Device::Cuda { device_id: 0 }, update: None };
    if cuda.device.check_available().is_ok() {
        println!("this machine has a usable CUDA provider; the refusal is not exercised");
        return;
    }
    let err = train_on(&ck, &data, &dir.path().join("run"), &options("heads", 1, 1, 1.0, 0.0), cuda, None, None, |_| {}).unwrap_err();
    let line = err.to_string();
    assert!(err.is_input(), "{line}");
    assert!(line.contains("cuda:0") && line.contains("--device cpu") && !line.contains('\n'), "{line}");
    assert!(!dir.path().join("run").join("trainer_state.json").exists());
}
