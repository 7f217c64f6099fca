//! Layer-granular recompute (docs/training.md §6.2) on the tiny checkpoint: the segmented step's
//! losses and gradients equal the whole graph's (`--train all`, `lora,heads,projector`, `heads`;
//! a tied LM head gets the sum of both uses), a few trainer updates end where the whole-graph
//! run's do, a resumed recompute run is bit for bit an uninterrupted one, and `grad
//! --recompute` agrees with the whole graph and refuses an unknown mode.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use loc3r_export::checkpoint::{Checkpoint, Requirements};
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_train::device::{Device, Placement, Update};
use loc3r_train::lora::LoraOptions;
use loc3r_train::losses::LossWeights;
use loc3r_train::model::{sample_feeds, split_feeds, training_graph_for, Group, Shape};
use loc3r_train::recompute::{segmented_graphs, Recompute, SegmentedRunner};
use loc3r_train::sample::Sample;
use loc3r_train::session::{host_params, Evaluated, HostParam, Runner};
use loc3r_train::trainer::{train, train_on, TrainOptions};

const TOLERANCE: f64 = 1e-5;

fn tiny(dir: &Path, tied: bool) -> (PathBuf, Checkpoint) {
    let ck = dir.join(if tied { "tied" } else { "ck" });
    make_tiny(&ck, &TinyOptions { seed: 6, tied_lm_head: tied, ..TinyOptions::default() }, |_, _| {}).expect("tiny checkpoint");
    let ckpt = Checkpoint::open(&ck, None, Requirements::default()).expect("opens");
    (ck, ckpt)
}

/// Moves every parameter off its initial value (deterministically), so LoRA's B is not zero and
/// A's gradient is not trivially zero either.
fn perturb(params: &mut [HostParam]) {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for p in params {
        for x in &mut p.value {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            *x += 0.05 * u;
        }
    }
}

/// max |a − b| over max |a| (the tensor's scale).
fn relative(a: &[f32], b: &[f32]) -> f64 {
    let scale = a.iter().fold(0f64, |m, x| m.max(f64::from(x.abs())));
    let diff = a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((f64::from(*x) - f64::from(*y)).abs()));
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

struct Run {
    losses: Vec<(String, f32)>,
    grads: HashMap<String, Vec<f32>>,
}

fn collect(params: &[HostParam], eval: Evaluated) -> Run {
    Run { losses: eval.losses, grads: params.iter().zip(eval.grads).map(|(p, g)| (p.name.clone(), g)).collect() }
}

/// The whole graph's step at `params` (perturbed initial values, returned).
fn whole(ckpt: &Checkpoint, sample: &Sample, groups: &BTreeSet<Group>, dir: &Path) -> (Vec<HostParam>, Run) {
    let shape = Shape::of(sample);
    let tg = training_graph_for(ckpt, &shape, sample.feature_shape, groups, &LossWeights::default(), &LoraOptions::default()).expect("whole graph");
    let mut params = host_params(&tg).expect("params");
    perturb(&mut params);
    std::fs::create_dir_all(dir).expect("dir");
    let mut runner = Runner::new(&tg, dir, 1).expect("opens");
    let (floats, ids) = split_feeds(sample_feeds(ckpt, sample, &shape).expect("feeds"));
    let eval = runner.run(&params, &floats, &ids).expect("runs");
    (params.clone(), collect(&params, eval))
}

/// The segmented step with the parameters' values taken by name from `values`.
fn segmented(ckpt: &Checkpoint, sample: &Sample, groups: &BTreeSet<Group>, dir: &Path, values: &HashMap<String, Vec<f32>>) -> (Vec<HostParam>, Run) {
    let shape = Shape::of(sample);
    let graphs = segmented_graphs(ckpt, &shape, sample.feature_shape, groups, &LossWeights::default(), &LoraOptions::default()).expect("segment graphs");
    let mut params = graphs.host_params().expect("params");
    for p in &mut params {
        p.value = values.get(&p.name).unwrap_or_else(|| panic!("`{}` is trainable in the segmented step only", p.name)).clone();
    }
    let mut runner = SegmentedRunner::new(&graphs, dir, 1).expect("opens");
    let (floats, ids) = split_feeds(sample_feeds(ckpt, sample, &shape).expect("feeds"));
    let eval = runner.run(&params, &floats, &ids).expect("runs");
    (params.clone(), collect(&params, eval))
}

fn assert_close(want: &Run, got: &Run, what: &str) {
    assert_eq!(want.losses.len(), got.losses.len(), "{what}: loss terms");
    for ((name, a), (other, b)) in want.losses.iter().zip(&got.losses) {
        assert_eq!(name, other, "{what}");
        let err = relative(&[*a], &[*b]);
        assert!(err <= TOLERANCE, "{what}: {name} whole {a}, segmented {b} ({err:.2e})");
    }
    let mut names: Vec<&String> = want.grads.keys().collect();
    names.sort();
    let mut theirs: Vec<&String> = got.grads.keys().collect();
    theirs.sort();
    assert_eq!(names, theirs, "{what}: the same trainable tensors");
    let mut worst = (0f64, String::new());
    for name in names {
        let (a, b) = (&want.grads[name], &got.grads[name]);
        assert!(a.iter().any(|x| *x != 0.0), "{what}: grad.{name} is all zero, the comparison would prove nothing");
        let err = relative(a, b);
        assert!(err <= TOLERANCE, "{what}: grad.{name} differs by {err:.2e} of its scale");
        if err > worst.0 {
            worst = (err, name.clone());
        }
    }
    println!("{what}: {} gradients agree, worst {:.2e} ({})", want.grads.len(), worst.0, worst.1);
}

#[test]
fn segmented_losses_and_gradients_equal_the_whole_graphs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, ckpt) = tiny(dir.path(), false);
    let sample = Sample::random_for(ckpt.config(), 2, 31);
    for (k, spec) in ["all", "lora,heads,projector", "heads"].into_iter().enumerate() {
        let groups = Group::parse_list(spec).expect("groups");
        let (params, want) = whole(&ckpt, &sample, &groups, &dir.path().join(format!("whole{k}")));
        let values: HashMap<String, Vec<f32>> = params.iter().map(|p| (p.name.clone(), p.value.clone())).collect();
        let (_, got) = segmented(&ckpt, &sample, &groups, &dir.path().join(format!("seg{k}")), &values);
        assert_close(&want, &got, spec);
    }
}

/// A tied LM head: the segmented step's gradient of `model.embed_tokens.weight` is the sum of
/// its gradient as the embedding and as the LM head, i.e. the whole graph's (on an untied
/// checkpoint fed the same values for both) `grad.model.embed_tokens.weight + grad.lm_head.weight`.
#[test]
fn a_tied_lm_head_gets_both_contributions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, untied) = tiny(dir.path(), false);
    let (_, tied) = tiny(dir.path(), true);
    assert!(tied.config().hidden_size == untied.config().hidden_size);
    let sample = Sample::random_for(untied.config(), 2, 32);
    let groups = Group::parse_list("all").expect("groups");

    // The whole graph on the untied checkpoint, with lm_head.weight set to the embeddings.
    let shape = Shape::of(&sample);
    let tg = training_graph_for(&untied, &shape, sample.feature_shape, &groups, &LossWeights::default(), &LoraOptions::default()).expect("whole graph");
    let mut params = host_params(&tg).expect("params");
    perturb(&mut params);
    let embed = params.iter().find(|p| p.name == "model.embed_tokens.weight").expect("embeddings").value.clone();
    params.iter_mut().find(|p| p.name == "lm_head.weight").expect("lm head").value = embed;
    std::fs::create_dir_all(dir.path().join("whole")).expect("dir");
    let mut runner = Runner::new(&tg, &dir.path().join("whole"), 1).expect("opens");
    let (floats, ids) = split_feeds(sample_feeds(&untied, &sample, &shape).expect("feeds"));
    let mut want = collect(&params, runner.run(&params, &floats, &ids).expect("runs"));
    let head = want.grads.remove("lm_head.weight").expect("lm head gradient");
    let sum = want.grads.get_mut("model.embed_tokens.weight").expect("embedding gradient");
    sum.iter_mut().zip(&head).for_each(|(a, b)| *a += b);

    let values: HashMap<String, Vec<f32>> = params.iter().map(|p| (p.name.clone(), p.value.clone())).collect();
    let (seg_params, got) = segmented(&tied, &sample, &groups, &dir.path().join("seg"), &values);
    assert!(!seg_params.iter().any(|p| p.name == "lm_head.weight"), "the tied checkpoint has no lm_head.weight");
    assert_close(&want, &got, "tied");
}

fn setup(dir: &Path, samples: usize) -> (PathBuf, PathBuf) {
    let (ck, ckpt) = tiny(dir, false);
    let data = dir.join("samples");
    std::fs::create_dir_all(&data).expect("dir");
    for i in 0..samples {
        Sample::random_for(ckpt.config(), 2, 100 + i as u64).write(&data.join(format!("{i:03}.safetensors"))).expect("writes");
    }
    (ck, data)
}

fn options(train: &str, steps: u64, recompute: Recompute) -> TrainOptions {
    TrainOptions {
        objective: Default::default(),
        train: train.into(),
        lora_rank: 4,
        lora_alpha: 12.0,
        loss_weights: LossWeights::default().into(),
        steps,
        lr: 1e-3,
        warmup_ratio: 0.0,
        accumulate: 2,
        max_grad_norm: 1.0,
        weight_decay: 0.01,
        seed: 7,
        threads: 1,
        save_every: 1000,
        recompute,
    }
}

fn read_params(run: &Path) -> HashMap<String, Vec<f32>> {
    let bytes = std::fs::read(run.join("params.safetensors")).expect("params");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    st.tensors().into_iter().map(|(name, t)| (name, t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())).collect()
}

/// Three updates of two accumulated samples with and without recompute end at the same
/// parameters (1e-5 of each tensor's scale), for the whole model and for LoRA.
#[test]
fn trainer_updates_with_recompute_match_the_whole_graph() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ck, data) = setup(dir.path(), 3);
    for spec in ["all", "lora,heads,projector"] {
        let runs: Vec<HashMap<String, Vec<f32>>> = [Recompute::None, Recompute::Layers]
            .into_iter()
            .map(|mode| {
                let run = dir.path().join(format!("{spec}-{mode}"));
                let log = train(&ck, &data, &run, &options(spec, 3, mode), None, |_| {}).expect("trains");
                assert!(log.iter().all(|s| !s.skipped && s.grad_norm > 0.0), "{spec} {mode}: every update applied");
                read_params(&run)
            })
            .collect();
        let (whole, layers) = (&runs[0], &runs[1]);
        assert_eq!(whole.len(), layers.len(), "{spec}: the same trained tensors");
        let mut worst = 0f64;
        for (name, a) in whole {
            let b = layers.get(name).unwrap_or_else(|| panic!("{spec}: `{name}` missing with recompute"));
            let err = relative(a, b);
            assert!(err <= TOLERANCE, "{spec}: `{name}` differs by {err:.2e} of its scale after 3 updates");
            worst = worst.max(err);
        }
        println!("{spec}: {} tensors agree after 3 updates, worst {worst:.2e}", whole.len());
    }
}

#[test]
fn a_resumed_recompute_run_equals_an_uninterrupted_one_bit_for_bit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ck, data) = setup(dir.path(), 3);
    let opts = options("all", 6, Recompute::Layers);
    let straight = dir.path().join("straight");
    train(&ck, &data, &straight, &opts, None, |_| {}).expect("trains");
    let halves = dir.path().join("halves");
    train(&ck, &data, &halves, &opts, Some(3), |_| {}).expect("first half");
    let second = train(&ck, &data, &halves, &opts, None, |_| {}).expect("resumes");
    assert_eq!(second.iter().map(|s| s.step).collect::<Vec<_>>(), [4, 5, 6]);
    for file in ["params.safetensors", "optimizer.safetensors"] {
        assert_eq!(std::fs::read(straight.join(file)).expect("straight"), std::fs::read(halves.join(file)).expect("halves"), "{file} differs after resuming");
    }
    // The device-resident update binds one graph's parameters: refused with the way out named.
    let graph_update = Placement { device: Device::Cpu, update: Some(Update::Graph) };
    let err = train_on(&ck, &data, &dir.path().join("resident"), &opts, graph_update, None, None, |_| {}).unwrap_err();
    assert!(err.is_input() && err.to_string().contains("--update host"), "{err}");
    // The recompute mode is part of the run: the whole-graph step cannot resume it.
    let err = train(&ck, &data, &halves, &TrainOptions { recompute: Recompute::None, ..opts }, None, |_| {}).unwrap_err();
    assert!(err.is_input() && err.to_string().contains("other options"), "{err}");
}

fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_loc3r-train"))
}

/// `grad --recompute layers` writes what `grad` writes, to 1e-5; an unknown mode is refused
/// with the choices named (exit 2).
#[test]
fn grad_with_recompute_matches_and_unknown_modes_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ck, ckpt) = tiny(dir.path(), false);
    let sample_path = dir.path().join("s.safetensors");
    Sample::random_for(ckpt.config(), 2, 5).write(&sample_path).expect("writes");
    let mut outputs = Vec::new();
    for mode in ["none", "layers"] {
        let out = dir.path().join(format!("{mode}.safetensors"));
        let run = bin()
            .args(["grad", "--train", "projector,heads", "--recompute", mode, "--checkpoint"])
            .arg(&ck)
            .arg("--sample")
            .arg(&sample_path)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("runs");
        assert!(run.status.success(), "{mode}: {}", String::from_utf8_lossy(&run.stderr));
        outputs.push(std::fs::read(&out).expect("written"));
    }
    let (a, b) = (safetensors::SafeTensors::deserialize(&outputs[0]).expect("st"), safetensors::SafeTensors::deserialize(&outputs[1]).expect("st"));
    let mut names = a.names();
    names.sort();
    let mut other = b.names();
    other.sort();
    assert_eq!(names, other);
    assert!(names.iter().any(|n| n.starts_with("grad.model.mm_projector.")));
    let floats =
        |t: safetensors::tensor::TensorView<'_>| -> Vec<f32> { t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect() };
    for name in names {
        let err = relative(&floats(a.tensor(name).expect("a")), &floats(b.tensor(name).expect("b")));
        assert!(err <= TOLERANCE, "{name}: {err:.2e}");
    }

    let run = bin()
        .args(["grad", "--recompute", "everything", "--checkpoint"])
        .arg(&ck)
        .arg("--sample")
        .arg(&sample_path)
        .arg("--out")
        .arg(dir.path().join("x"))
        .output()
        .expect("runs");
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("everything") && err.contains("none, layers"), "{err}");
}

/// The single graph cannot take a tied LM head: it says so and names the way that can.
#[test]
fn a_tied_checkpoint_in_the_single_graph_is_refused_naming_recompute() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, tied) = tiny(dir.path(), true);
    let sample = Sample::random_for(tied.config(), 2, 33);
    for train in ["all", "heads", "lora,heads"] {
        let groups = Group::parse_list(train).expect("groups");
        let e = training_graph_for(&tied, &Shape::of(&sample), sample.feature_shape, &groups, &LossWeights::default(), &LoraOptions::default()).unwrap_err();
        let line = e.to_string();
        assert!(line.contains("ties the LM head") && line.contains("--recompute layers"), "{train}: {line}");
        assert!(loc3r_train::trainer::TrainError::Graph(e).is_input(), "{train}: the user's choice of path, exit 2");
    }
    // The untied checkpoint builds as before.
    let (_, untied) = tiny(dir.path(), false);
    let groups = Group::parse_list("heads").expect("groups");
    training_graph_for(&untied, &Shape::of(&sample), sample.feature_shape, &groups, &LossWeights::default(), &LoraOptions::default()).expect("untied builds");
}
