//! Gradient parity with PyTorch autograd (tools/golden/grad_golden.py) on two checkpoints:
//! tests/fixtures/train_tiny (models/tiny/config.json) and tests/fixtures/train_variant (a
//! config of its own: other widths, depth and GQA grouping, average pooling, 12 orientation
//! bins, 3 frames, no situation, one BEV log-variance beyond the clamp). The whole training
//! graph (projector → splice → decoder → heads, LM head, the four losses) run on ONNX Runtime
//! in f32 for the committed sample, against the losses and gradients PyTorch computes from the
//! formulas of docs/training.md with Hugging Face's Qwen2, and one AdamW step against
//! `torch.optim.AdamW`.
//!
//! Tolerances: every loss term within 1e-5 relative; every gradient within 1e-4 of the
//! reference tensor's max |g| (max-abs error over the tensor's scale); the AdamW step within
//! 1e-6 of the updated tensor's max |θ|. The step is checked on the reference gradients, so
//! it tests the optimizer and clipping alone: the first Adam step is ≈ lr·sign(g), which
//! amplifies the rounding of gradients near zero without bound.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use loc3r_export::checkpoint::{Checkpoint, Requirements};
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_train::losses::LossWeights;
use loc3r_train::model::{split_feeds, training_graph, Group};
use loc3r_train::optim::AdamW;
use loc3r_train::sample::Sample;
use loc3r_train::session::{apply_update, host_params, HostParam, Runner};

const LOSS_TOL: f64 = 1e-5;
const GRAD_TOL: f64 = 1e-4;
const ADAMW_TOL: f64 = 1e-6;
/// The fixture's AdamW step (tools/golden/grad_golden.py).
const LR: f64 = 1e-3;
const WEIGHT_DECAY: f64 = 0.1;
const MAX_GRAD_NORM: f64 = 1.0;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(name)
}

/// One fixture: the checkpoint it was computed on (`make-tiny --config CONFIG --seed SEED`) and
/// what its sample exercises.
struct Case {
    dir: &'static str,
    /// `make-tiny --config`: a built-in name, or a config path relative to this crate's
    /// directory (the working directory of `cargo test`). The string is part of the
    /// checkpoint's safetensors metadata, so it must be the one the fixture was made with.
    config: &'static str,
    seed: u64,
    situation_valid: f32,
    /// Head parameters the reference overrode (`grad_golden.py --set`), from its metadata.
    overridden: bool,
}

const TINY: Case = Case { dir: "train_tiny", config: "tiny", seed: 1, situation_valid: 1.0, overridden: false };
const VARIANT: Case = Case { dir: "train_variant", config: "../tests/fixtures/train_variant/config.json", seed: 2, situation_valid: 0.0, overridden: true };

struct Reference {
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    metadata: HashMap<String, String>,
}

fn read_reference(path: &Path) -> Reference {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("grads.safetensors is safetensors");
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name} is f32");
        let values = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        tensors.insert(name, (view.shape().to_vec(), values));
    }
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    Reference { tensors, metadata: meta.metadata().clone().unwrap_or_default() }
}

/// max |a − b| / max |b| (the error relative to the reference tensor's scale).
fn scaled_error(got: &[f32], want: &[f32]) -> (f64, f64) {
    assert_eq!(got.len(), want.len());
    let err = got.iter().zip(want).map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs()).fold(0.0, f64::max);
    let scale = want.iter().map(|&b| f64::from(b).abs()).fold(0.0, f64::max);
    (if scale > 0.0 { err / scale } else { err }, scale)
}

#[test]
fn training_graph_matches_pytorch_autograd_and_adamw() {
    check(&TINY);
}

#[test]
fn training_graph_matches_pytorch_autograd_and_adamw_on_a_config_variant() {
    check(&VARIANT);
}

/// `param_overrides` of the metadata ({name: {flat index: value}}) applied to the parameters.
fn apply_overrides(params: &mut [HostParam], metadata: &HashMap<String, String>) -> usize {
    let Some(json) = metadata.get("param_overrides") else { return 0 };
    let overrides: BTreeMap<String, BTreeMap<String, f32>> = serde_json::from_str(json).expect("param_overrides is JSON");
    let mut n = 0;
    for (name, elems) in overrides {
        let p = params.iter_mut().find(|p| p.name == name).unwrap_or_else(|| panic!("override of `{name}`, which is not trainable"));
        for (i, v) in elems {
            let i: usize = i.parse().expect("flat index");
            println!("{name}[{i}] = {v} (was {})", p.value[i]);
            p.value[i] = v;
            n += 1;
        }
    }
    n
}

fn check(case: &Case) {
    let fixture_dir = fixture(case.dir);
    println!("== {}", case.dir);
    let reference = read_reference(&fixture_dir.join("grads.safetensors"));
    let dir = tempfile::tempdir().expect("temp dir");
    let ck = dir.path().join("ck");
    make_tiny(&ck, &TinyOptions { config: case.config.into(), seed: case.seed, ..TinyOptions::default() }, |_, _| {}).expect("tiny checkpoint");
    // make-tiny is deterministic: the checkpoint is the one the reference was computed on.
    let recorded: BTreeMap<String, String> = serde_json::from_str(&reference.metadata["checkpoint_sha256"]).expect("checkpoint_sha256 is JSON");
    let (sha, _) = loc3r_export::bundle::sha256_of(&ck.join("model.safetensors")).expect("hash");
    assert_eq!(
        Some(&sha),
        recorded.get("model.safetensors"),
        "make-tiny --config {} --seed {} no longer writes the fixture's checkpoint",
        case.config,
        case.seed
    );

    let ckpt = Checkpoint::open(&ck, None, Requirements::default()).expect("opens");
    let sample = Sample::read(&fixture_dir.join("sample.safetensors")).expect("the committed sample reads");
    assert_eq!(sample.situation_valid, case.situation_valid, "{}: situation_valid", case.dir);
    let (tg, data) = training_graph(&ckpt, &sample, &Group::parse_list("all").expect("groups"), &LossWeights::default()).expect("training graph");
    let (floats, ids) = split_feeds(data);
    let mut runner = Runner::new(&tg, dir.path(), 1).expect("ONNX Runtime loads the training graph");
    let mut params = host_params(&tg).expect("parameters");
    let overridden = apply_overrides(&mut params, &reference.metadata);
    assert_eq!(overridden > 0, case.overridden, "{}: param_overrides in the metadata", case.dir);
    if let Some(clamp) = reference.metadata.get("bev_log_variance_beyond_clamp") {
        println!("BEV log-variances beyond the clamp (torch): {clamp}");
    }
    let ours = runner.run(&params, &floats, &ids).expect("runs");
    let mut failures = Vec::new();

    // Losses.
    let mut worst_loss = (0.0f64, String::new());
    for (name, got) in &ours.losses {
        let (_, want) = reference.tensors.get(name).unwrap_or_else(|| panic!("the reference has no `{name}`"));
        let want = f64::from(want[0]);
        let rel = (f64::from(*got) - want).abs() / want.abs().max(f64::MIN_POSITIVE);
        println!("{name:<10} ours {got:<12} torch {want:<12} rel {rel:.2e}");
        if rel > worst_loss.0 {
            worst_loss = (rel, name.clone());
        }
        if rel.is_nan() || rel > LOSS_TOL {
            failures.push(format!("{name}: {got} vs torch {want} (relative {rel:.2e} > {LOSS_TOL:.0e})"));
        }
    }
    let loss_names: Vec<&str> = ours.losses.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(loss_names, ["loss", "loss.lm", "loss.bev", "loss.pos", "loss.ori"]);

    // Gradients: the same trainable tensors, each within GRAD_TOL of its scale.
    let ref_grads: Vec<&str> = reference.tensors.keys().filter_map(|k| k.strip_prefix("grad.")).collect();
    let our_names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    let mut sorted = our_names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ref_grads, "the trainable tensors are the ones PyTorch differentiates");
    let mut worst_grad = (0.0f64, String::new());
    let mut by_group: BTreeMap<String, f64> = BTreeMap::new();
    for (p, got) in params.iter().zip(&ours.grads) {
        let (shape, want) = &reference.tensors[&format!("grad.{}", p.name)];
        assert_eq!(shape, &p.shape, "grad.{} layout", p.name);
        let (rel, scale) = scaled_error(got, want);
        let group = [Group::Heads, Group::Projector, Group::Llm].into_iter().find(|g| g.contains(&p.name)).map_or("?".into(), |g| format!("{g:?}"));
        let w = by_group.entry(group).or_default();
        *w = w.max(rel);
        if rel > worst_grad.0 {
            worst_grad = (rel, p.name.clone());
        }
        if rel.is_nan() || rel > GRAD_TOL {
            failures.push(format!("grad.{}: max|Δ| {:.2e} of max|g| {scale:.3e} (> {GRAD_TOL:.0e})", p.name, rel));
        }
    }
    if case.situation_valid == 0.0 {
        // Without a situation L_pos and L_ori are 0·ℓ: their heads get exactly no gradient.
        let heads: Vec<_> = params
            .iter()
            .zip(&ours.grads)
            .filter(|(p, _)| p.name.starts_with("model.loc3r.pos_head.") || p.name.starts_with("model.loc3r.ori_head."))
            .collect();
        assert_eq!(heads.len(), 8, "pos and ori heads");
        for (p, g) in heads {
            let want = &reference.tensors[&format!("grad.{}", p.name)].1;
            assert!(g.iter().chain(want).all(|&x| x == 0.0), "grad.{} is not zero without a situation", p.name);
        }
    }
    for (group, rel) in &by_group {
        println!("gradients {group:<9} worst {rel:.2e} of max|g|");
    }

    // One AdamW step (clipping first) on the reference gradients.
    let mut stepped = params.clone();
    let mut grads: Vec<Vec<f32>> = params.iter().map(|p| reference.tensors[&format!("grad.{}", p.name)].1.clone()).collect();
    let optimizer = AdamW { weight_decay: WEIGHT_DECAY, ..AdamW::default() };
    let norm = apply_update(&mut stepped, &mut grads, &optimizer, 1, LR, MAX_GRAD_NORM);
    if let Some(torch_norm) = reference.metadata.get("grad_norm_before_clipping").and_then(|s| s.parse::<f64>().ok()) {
        println!("gradient norm before clipping: ours {norm:.9} torch {torch_norm:.9}");
        // A sum of squares over every gradient element in f32 on both sides: agreement to
        // rounding (measured 1.9e-7 and 7.3e-7), checked at the gradients' own precision.
        assert!((norm - torch_norm).abs() <= 1e-5 * torch_norm, "clipping norm {norm} vs torch {torch_norm}");
    }
    let mut worst_adamw = (0.0f64, String::new());
    let adamw: Vec<&String> = reference.tensors.keys().filter(|k| k.starts_with("adamw.")).collect();
    assert!(adamw.len() >= 4, "the fixture holds AdamW results: {adamw:?}");
    for key in adamw {
        let name = &key["adamw.".len()..];
        let p = stepped.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("`{name}` is not trainable"));
        let (shape, want) = &reference.tensors[key];
        assert_eq!(shape, &p.shape, "{key} layout");
        let (rel, _) = scaled_error(&p.value, want);
        println!("{key:<48} rel {rel:.2e}");
        if rel > worst_adamw.0 {
            worst_adamw = (rel, name.to_string());
        }
        if rel.is_nan() || rel > ADAMW_TOL {
            failures.push(format!("{key}: {rel:.2e} of max|θ| (> {ADAMW_TOL:.0e})"));
        }
    }
    // For information: the same step on our own gradients.
    let mut own = params.clone();
    let mut own_grads = ours.grads.clone();
    apply_update(&mut own, &mut own_grads, &optimizer, 1, LR, MAX_GRAD_NORM);
    let own_worst =
        own.iter().filter_map(|p| reference.tensors.get(&format!("adamw.{}", p.name)).map(|(_, want)| scaled_error(&p.value, want).0)).fold(0.0, f64::max);

    println!(
        "worst: loss {:.2e} ({}), gradient {:.2e} ({}), AdamW {:.2e} ({}); AdamW on our own gradients {own_worst:.2e} (not checked)",
        worst_loss.0, worst_loss.1, worst_grad.0, worst_grad.1, worst_adamw.0, worst_adamw.1
    );
    if let Some(floor) = reference.metadata.get("f32_vs_f64_worst_grad_rel") {
        println!("PyTorch f32 vs f64 gradient floor: {floor}");
    }
    assert!(failures.is_empty(), "{} disagreements with PyTorch:\n{}", failures.len(), failures.join("\n"));
}
