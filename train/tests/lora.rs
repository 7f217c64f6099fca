//! LoRA on the tiny checkpoint (docs/training.md §3.1): the adapted training graph's gradients
//! against central differences (f64 interpreter) and ONNX Runtime; with B = 0 it computes the
//! plain graph's losses exactly; after training, the merged checkpoint's plain graph gives the
//! adapted graph's losses; `--train lora,heads` memorises samples and the result exports; bad
//! options are refused.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use loc3r_export::checkpoint::{Checkpoint, Requirements};
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_train::check::{finite_difference_failures, onnx_runtime_disagreements};
use loc3r_train::graph::TrainingGraph;
use loc3r_train::interp::Tensor;
use loc3r_train::lora::{is_factor, LoraOptions, TARGETS};
use loc3r_train::losses::LossWeights;
use loc3r_train::model::{interp_feeds, sample_feeds, split_feeds, training_graph_for, Data, Group, Shape};
use loc3r_train::sample::Sample;
use loc3r_train::session::{host_params, HostParam, Runner};
use loc3r_train::trainer::{train, StepLog, TrainOptions, CHECKPOINT_DIR};

fn setup(dir: &Path, samples: usize) -> (PathBuf, PathBuf) {
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

fn options(train: &str, steps: u64, lr: f64) -> TrainOptions {
    TrainOptions {
        objective: Default::default(),
        train: train.into(),
        lora_rank: 4,
        lora_alpha: 12.0,
        loss_weights: LossWeights::default().into(),
        steps,
        lr,
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

fn groups(spec: &str) -> BTreeSet<Group> {
    Group::parse_list(spec).expect("groups")
}

/// The training graph of `sample`'s own shape and its feeds.
fn graph(ckpt: &Checkpoint, sample: &Sample, spec: &str, lora: &LoraOptions) -> (TrainingGraph, HashMap<String, Data>) {
    let shape = Shape::of(sample);
    let tg = training_graph_for(ckpt, &shape, sample.feature_shape, &groups(spec), &LossWeights::default(), lora).expect("training graph");
    let feeds = sample_feeds(ckpt, sample, &shape).expect("feeds");
    (tg, feeds)
}

/// Every loss output of `tg` on ONNX Runtime (f32) with `params`.
fn losses(tg: &TrainingGraph, params: &[HostParam], feeds: &HashMap<String, Data>, dir: &Path) -> Vec<(String, f32)> {
    std::fs::create_dir_all(dir).expect("dir");
    let mut runner = Runner::new(tg, dir, 1).expect("session");
    let (floats, ids) = split_feeds(feeds.clone());
    runner.run(params, &floats, &ids).expect("runs").losses
}

fn read_f32s(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).expect("reads");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    st.tensors()
        .into_iter()
        .map(|(name, t)| {
            assert_eq!(t.dtype(), safetensors::Dtype::F32, "`{name}` is f32");
            (name, (t.shape().to_vec(), t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()))
        })
        .collect()
}

#[test]
fn adapted_graph_gradients_match_differences_and_start_exactly_at_the_plain_graph() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ck, data) = setup(dir.path(), 1);
    let ckpt = Checkpoint::open(&ck, None, Requirements::default()).expect("opens");
    let cfg = ckpt.config().clone();
    let sample = Sample::read(&data.join("000.safetensors")).expect("sample");
    let lora = LoraOptions { rank: 3, alpha: 6.0, seed: 11 };
    let (tg, feeds) = graph(&ckpt, &sample, "lora,heads", &lora);

    // One A and one B per attention projection of every layer, PEFT's names and layouts; the
    // projection weights themselves stay frozen.
    let factors: Vec<&str> = tg.params.iter().map(|p| p.name.as_str()).filter(|n| is_factor(n)).collect();
    assert_eq!(factors.len(), 2 * TARGETS.len() * cfg.num_hidden_layers, "{factors:?}");
    assert_eq!(tg.lora.len(), TARGETS.len() * cfg.num_hidden_layers);
    assert!(!tg.params.iter().any(|p| p.name.ends_with("_proj.weight")), "projection weights are frozen");
    let mut params = host_params(&tg).expect("params");
    let q = &tg.lora.iter().find(|a| a.weight == "model.layers.0.self_attn.q_proj.weight").expect("q_proj is adapted");
    let param = |name: &str| params.iter().find(|p| p.name == name).expect("param").clone();
    let (a, b) = (param(&q.a), param(&q.b));
    assert_eq!((a.shape.clone(), b.shape.clone()), (vec![3, q.in_dim], vec![q.out_dim, 3]));
    let bound = 1.0 / (q.in_dim as f32).sqrt();
    assert!(a.value.iter().all(|x| x.abs() <= bound) && a.value.iter().any(|x| x.abs() > 0.5 * bound), "A ~ U(±1/√in)");
    assert!(b.value.iter().all(|&x| x == 0.0), "B starts at zero");
    assert_eq!(q.scale, 2.0);

    // (b) B = 0: the adapted graph's losses are the plain graph's, exactly.
    let (plain, _) = graph(&ckpt, &sample, "heads", &lora);
    let plain_params = host_params(&plain).expect("params");
    let with_lora = losses(&tg, &params, &feeds, &dir.path().join("lora"));
    let without = losses(&plain, &plain_params, &feeds, &dir.path().join("plain"));
    println!("B = 0: adapted {with_lora:?}, plain {without:?}");
    assert_eq!(with_lora, without, "B = 0 leaves every loss unchanged");

    // (a) Gradients with B ≠ 0 (with B = 0, ∂L/∂A is zero): central differences on the f64
    // interpreter for one A and one B of each layer, and every gradient on ONNX Runtime.
    let mut state = 3u64;
    for p in params.iter_mut().filter(|p| p.name.ends_with(".lora_B.weight")) {
        p.value = p
            .value
            .iter()
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (((state >> 33) as f64 / (1u64 << 31) as f64) - 0.5) as f32
            })
            .collect();
    }
    let mut ifeeds = interp_feeds(&feeds);
    for p in &params {
        ifeeds.insert(p.name.clone(), Tensor::Float(p.input_value().mapv(f64::from)));
    }
    let probe = [
        "model.layers.0.self_attn.q_proj.lora_A.weight",
        "model.layers.0.self_attn.v_proj.lora_B.weight",
        "model.layers.1.self_attn.k_proj.lora_B.weight",
        "model.layers.1.self_attn.o_proj.lora_A.weight",
    ];
    let chosen: Vec<_> = tg.params.iter().filter(|p| probe.contains(&p.name.as_str())).collect();
    assert_eq!(chosen.len(), probe.len());
    let values: Vec<_> = chosen.iter().map(|p| p.input.clone()).collect();
    let grads: Vec<_> = chosen.iter().map(|p| p.grad.clone()).collect();
    let failures = finite_difference_failures(&tg.graph, &ifeeds, &tg.loss_outputs[0], &values, &grads, "lora", 8);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let graph_dir = dir.path().join("ort");
    std::fs::create_dir_all(&graph_dir).expect("dir");
    let all: Vec<&str> = tg.params.iter().map(|p| p.grad_output.name()).collect();
    let (bad, worst) = onnx_runtime_disagreements(&tg.graph, &ifeeds, &all, &graph_dir);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    println!("{} trainable tensors; worst ORT-f32 vs f64 max-abs/scale: {worst:e}", tg.params.len());
}

#[test]
fn merged_checkpoint_gives_the_adapted_graphs_losses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ck, data) = setup(dir.path(), 2);
    let run = dir.path().join("run");
    let opts = options("lora", 4, 2e-2);
    train(&ck, &data, &run, &opts, None, |_| {}).expect("trains");

    // The trained shard holds the merged projections (f32), never the factors; the factors are
    // in params.safetensors.
    let shard = read_f32s(&run.join(CHECKPOINT_DIR).join(loc3r_train::checkpoint::TRAINED_SHARD));
    assert!(shard.keys().all(|n| !is_factor(n)), "{:?}", shard.keys());
    let saved = read_f32s(&run.join("params.safetensors"));
    let ckpt = Checkpoint::open(&ck, None, Requirements::default()).expect("opens");
    let cfg = ckpt.config().clone();
    assert_eq!(shard.len(), TARGETS.len() * cfg.num_hidden_layers, "{:?}", shard.keys());
    assert_eq!(saved.len(), 2 * shard.len());
    assert!(saved.iter().filter(|(n, _)| n.ends_with("lora_B.weight")).all(|(_, (_, v))| v.iter().any(|&x| x != 0.0)), "every B moved");

    let sample = Sample::read(&data.join("001.safetensors")).expect("sample");
    let (tg, feeds) = graph(&ckpt, &sample, "lora", &opts.lora());
    let mut params = host_params(&tg).expect("params");
    for p in &mut params {
        let (shape, values) = saved[&p.name].clone();
        assert_eq!(shape, p.shape);
        p.value = values;
    }
    let adapted = losses(&tg, &params, &feeds, &dir.path().join("adapted"));

    let merged_ckpt = Checkpoint::open(&run.join(CHECKPOINT_DIR), None, Requirements::default()).expect("the merged checkpoint opens");
    let (plain, _) = graph(&merged_ckpt, &sample, "heads", &opts.lora());
    let merged = losses(&plain, &host_params(&plain).expect("params"), &feeds, &dir.path().join("merged"));
    let (base_graph, _) = graph(&ckpt, &sample, "heads", &opts.lora());
    let base = losses(&base_graph, &host_params(&base_graph).expect("params"), &feeds, &dir.path().join("base"));
    println!("adapted {adapted:?}\nmerged  {merged:?}\nbase    {base:?}");
    for ((name, a), ((_, m), (_, b0))) in adapted.iter().zip(merged.iter().zip(&base)) {
        let (a, m, b0) = (f64::from(*a), f64::from(*m), f64::from(*b0));
        assert!((a - m).abs() <= 1e-5 * a.abs().max(1e-3), "{name}: adapted {a}, merged {m}");
        if name == "loss" {
            assert!((a - b0).abs() > 1e-3 * a.abs(), "training moved the loss ({b0} -> {a}), so the comparison means something");
        }
    }
}

fn mean(log: &[StepLog], part: &str) -> f64 {
    log.iter().map(|s| s.losses[part]).sum::<f64>() / log.len() as f64
}

#[test]
fn lora_and_heads_memorise_samples_and_the_merged_checkpoint_exports() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ck, data) = setup(dir.path(), 8);
    let run = dir.path().join("run");
    // The default rank and α (16, 32), as a run without --lora-rank/--lora-alpha has them.
    let opts = TrainOptions { lora_rank: loc3r_train::lora::DEFAULT_RANK, lora_alpha: loc3r_train::lora::DEFAULT_ALPHA, ..options("lora,heads", 160, 1e-2) };
    let steps = opts.steps;
    let log = train(&ck, &data, &run, &opts, None, |_| {}).expect("trains");
    assert_eq!(log.len() as u64, steps);
    let (first, last) = (&log[..4], &log[log.len() - 4..]);
    let drops: Vec<(&str, f64, f64)> = ["loss.lm", "loss.ori", "loss.pos", "loss.bev"].iter().map(|p| (*p, mean(first, p), mean(last, p))).collect();
    println!("{drops:?}");
    // L_LM does not depend on the heads: all of its drop is the adapters' (the frozen
    // embeddings and LM head cap it; 7.55 -> 1.02 measured); the heads memorise.
    let (_, lm0, lm1) = drops[0];
    assert!(lm1 <= 0.25 * lm0, "loss.lm: {lm0} -> {lm1}");
    let (_, ori0, ori1) = drops[1];
    assert!(ori1 <= 0.1 * ori0, "loss.ori: {ori0} -> {ori1}");

    let bundle = dir.path().join("bundle");
    let opts = loc3r_export::bundle::BundleOptions { graphs: Some(vec!["projector".into(), "heads".into(), "decoder".into()]), ..Default::default() };
    loc3r_export::bundle::export_bundle(&run.join(CHECKPOINT_DIR), &bundle, &opts, |_| {}).expect("the merged checkpoint exports");
}

#[test]
fn bad_lora_options_are_input_errors() {
    for spec in ["lora,llm", "all,lora", "llm,heads,lora"] {
        let err = Group::parse_list(spec).unwrap_err();
        assert!(err.contains("`lora` and `llm`"), "{spec}: {err}");
    }
    assert!(Group::parse_list("lora,heads,projector").is_ok());

    let dir = tempfile::tempdir().expect("temp dir");
    let (ck, data) = setup(dir.path(), 1);
    let run = |opts: TrainOptions, name: &str| train(&ck, &data, &dir.path().join(name), &opts, None, |_| {}).unwrap_err();
    let err = run(options("lora,llm", 1, 1e-3), "both");
    assert!(err.is_input() && err.to_string().contains("--train"), "{err}");
    let err = run(TrainOptions { lora_rank: 0, ..options("lora", 1, 1e-3) }, "rank");
    assert!(err.is_input() && err.to_string().contains("--lora-rank"), "{err}");
    for alpha in [0.0, -2.0, f64::NAN] {
        let err = run(TrainOptions { lora_alpha: alpha, ..options("lora", 1, 1e-3) }, "alpha");
        assert!(err.is_input() && err.to_string().contains("--lora-alpha"), "{alpha}: {err}");
    }

    // A run saved before LoRA existed has no LoRA fields: it loads with the defaults.
    let mut old = serde_json::to_value(options("heads", 1, 1e-3)).expect("json");
    let object = old.as_object_mut().expect("object");
    object.remove("lora_rank");
    object.remove("lora_alpha");
    let back: TrainOptions = serde_json::from_value(old).expect("an old state loads");
    assert_eq!((back.lora_rank, back.lora_alpha), (16, 32.0));

    // A run cannot be resumed with another rank; with the same options it ends where an
    // uninterrupted one does (the factors' initial values depend on the seed alone).
    let opts = options("lora", 2, 1e-3);
    let halves = dir.path().join("resume");
    train(&ck, &data, &halves, &opts, Some(1), |_| {}).expect("first half");
    let err = train(&ck, &data, &halves, &TrainOptions { lora_rank: 8, ..opts.clone() }, None, |_| {}).unwrap_err();
    assert!(err.is_input() && err.to_string().contains("other options"), "{err}");
    train(&ck, &data, &halves, &opts, None, |_| {}).expect("resumes");
    let straight = dir.path().join("straight");
    train(&ck, &data, &straight, &opts, None, |_| {}).expect("trains");
    for file in ["params.safetensors", "optimizer.safetensors"] {
        assert_eq!(std::fs::read(straight.join(file)).expect("straight"), std::fs::read(halves.join(file)).expect("halves"), "{file} differs after resuming");
    }
}
