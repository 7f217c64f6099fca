//! The training loop over a directory of prepared samples (docs/training.md §4–§5):
//! seeded sample order, gradient accumulation to a global batch, global-norm clipping, AdamW,
//! cosine schedule with warmup, a JSONL log of every loss term, resumable run directories, and
//! the trained tensors written back as a checkpoint `loc3r-export` consumes.
//!
//! ```text
//! RUN/params.safetensors      trainable tensors, f32, checkpoint layout   ┐ one save, the state
//! RUN/optimizer.safetensors   <name>.exp_avg, <name>.exp_avg_sq           │ file last (its step
//! RUN/trainer_state.json      step, options, seed                        ┘ is in all three)
//! RUN/log.jsonl               one line per update
//! RUN/checkpoint/             the base checkpoint + the trained shard (at the end; LoRA
//!                             factors merged into their weights, the factors in params.safetensors)
//! ```
//! Sample k of update t comes from a permutation of the samples seeded by (seed, epoch), with
//! cursor = t·accumulate + k, so the order depends on the step alone and a resumed run
//! continues exactly where an uninterrupted one would (bit for bit on one CPU thread count).

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use loc3r_export::checkpoint::{write_safetensors, Checkpoint, Requirements, TensorToWrite};
use loc3r_export::DType;
use ndarray::ArrayD;

use crate::checkpoint::{write_trained, TrainedTensor};
use crate::device::{Device, Placement, Update};
use crate::lora::{Adapter, LoraOptions};
use crate::losses::LossWeights;
use crate::model::{sample_feeds, split_feeds, training_graph_for, Group, Shape};
use crate::optim::{cosine_with_warmup, AdamW};
use crate::pose::{self, PoseSequence};
use crate::recompute::{segmented_graphs, Recompute, SegmentedRunner, StepRunner};
use crate::resident::{Feeds, Resident, UpdateSettings};
use crate::sample::Sample;
use crate::session::{apply_update, host_params, HostParam, Runner};

/// Samples are padded into graphs whose text after the video is a multiple of this many tokens
/// (padding is exact; fewer distinct graphs to build and hold).
pub const TEXT_BUCKET: usize = 32;
/// ... and whose supervised LM rows are a multiple of this many.
pub const ROW_BUCKET: usize = 8;

/// What a run trains, on which kind of prepared data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// The Loc3R-VLM losses (L_LM, L_BEV, L_sit) on samples from `loc3r-train prepare`.
    #[default]
    Loc3r,
    /// CUT3R's camera poses on sequences from `loc3r-train prepare-poses` (crate::pose).
    Cut3rPose,
}

impl std::str::FromStr for Objective {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "loc3r" => Ok(Objective::Loc3r),
            "cut3r-pose" => Ok(Objective::Cut3rPose),
            other => Err(format!("`{other}` is not an objective; use loc3r or cut3r-pose")),
        }
    }
}

/// Everything that defines a run; a resumed run must be given the same.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainOptions {
    /// What is trained (runs saved before objectives existed are `loc3r`).
    #[serde(default)]
    pub objective: Objective,
    /// `heads`, `projector`, `llm`, `lora` (comma-separated; `lora` without `llm`) or `all`.
    pub train: String,
    /// LoRA rank r (runs saved before LoRA existed have the default).
    #[serde(default = "default_lora_rank")]
    pub lora_rank: usize,
    /// LoRA α: the update is scaled by α/r.
    #[serde(default = "default_lora_alpha")]
    pub lora_alpha: f64,
    pub loss_weights: LossWeightsJson,
    /// Optimizer updates in total.
    pub steps: u64,
    /// Peak learning rate.
    pub lr: f64,
    /// Share of the updates spent warming up (HF: ⌈ratio·steps⌉).
    pub warmup_ratio: f64,
    /// Samples per update (gradients averaged).
    pub accumulate: usize,
    pub max_grad_norm: f64,
    pub weight_decay: f64,
    pub seed: u64,
    /// ONNX Runtime intra-op threads (results are bitwise repeatable for a fixed count).
    pub threads: usize,
    /// Save every this many updates (and at the end).
    pub save_every: u64,
    /// Whole-graph step or layer-granular recompute (crate::recompute; runs saved before it
    /// existed are `none`).
    #[serde(default)]
    pub recompute: Recompute,
}

fn default_lora_rank() -> usize {
    crate::lora::DEFAULT_RANK
}

fn default_lora_alpha() -> f64 {
    crate::lora::DEFAULT_ALPHA
}

impl TrainOptions {
    /// The LoRA settings of this run (A is seeded by the run's seed).
    pub fn lora(&self) -> LoraOptions {
        LoraOptions { rank: self.lora_rank, alpha: self.lora_alpha, seed: self.seed }
    }
}

/// [`LossWeights`] as stored in the run's state.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossWeightsJson {
    pub lm: f64,
    pub bev: f64,
    pub sit: f64,
    pub ori: f64,
}

impl From<LossWeights> for LossWeightsJson {
    fn from(w: LossWeights) -> Self {
        LossWeightsJson { lm: w.lm, bev: w.bev, sit: w.sit, ori: w.ori }
    }
}

impl From<LossWeightsJson> for LossWeights {
    fn from(w: LossWeightsJson) -> Self {
        LossWeights { lm: w.lm, bev: w.bev, sit: w.sit, ori: w.ori }
    }
}

/// Why training stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The user's data, options or run directory (exit 2).
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Graph(#[from] crate::graph::TrainGraphError),
    #[error(transparent)]
    Session(#[from] crate::session::SessionError),
    #[error(transparent)]
    Sample(#[from] crate::sample::SampleError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(transparent)]
    Export(#[from] loc3r_export::Error),
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
}

impl TrainError {
    /// Whether the user's input is at fault (exit 2) rather than the machine or our code.
    pub fn is_input(&self) -> bool {
        match self {
            TrainError::Input(_) | TrainError::Sample(_) => true,
            // The machine the user chose cannot run the device they asked for.
            TrainError::Session(crate::session::SessionError::Unavailable { .. }) => true,
            TrainError::Export(e) => e.fault().exit_code() == 2,
            TrainError::Graph(crate::graph::TrainGraphError::Export(e)) => e.fault().exit_code() == 2,
            TrainError::Graph(crate::graph::TrainGraphError::UnknownParam(..) | crate::graph::TrainGraphError::NothingToTrain(_)) => true,
            _ => false,
        }
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |error| TrainError::Io { path: path.to_path_buf(), error }
}

/// One update, as logged.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepLog {
    pub step: u64,
    pub lr: f64,
    /// Mean over the accumulated samples of `loss` and each `loss.<part>`.
    pub losses: BTreeMap<String, f64>,
    pub grad_norm: f64,
    /// The update was skipped (non-finite gradient norm).
    pub skipped: bool,
    /// Mean losses over the held-out samples after this update (when scored at this step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_out: Option<BTreeMap<String, f64>>,
}

/// Samples scored (never trained on) every `every` updates and after the last one.
#[derive(Debug, Clone, Copy)]
pub struct HeldOut<'a> {
    pub samples: &'a Path,
    pub every: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TrainerState {
    step: u64,
    options: TrainOptions,
    samples: usize,
}

const STATE_FILE: &str = "trainer_state.json";
const PARAMS_FILE: &str = "params.safetensors";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const LOG_FILE: &str = "log.jsonl";
/// The trained checkpoint inside a run directory.
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// The permutation of `n` samples for `epoch` (Fisher–Yates on SplitMix64).
fn order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut state = seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// A sample's feeds, split by dtype for the runner.
struct Prepared {
    /// Index of the runner (training graph) the sample runs in.
    runner: usize,
    floats: HashMap<String, ArrayD<f32>>,
    ids: HashMap<String, ArrayD<i64>>,
}

/// Trains on every `*.safetensors` sample in `samples` (sorted by name) starting from the
/// checkpoint at `base`, in run directory `run` (resumed when it holds a state). At most
/// `stop_after` updates run in this call (a time budget: the state is saved and the next call
/// resumes); the trained checkpoint is written once all `opts.steps` are done. `progress` is
/// called after every update. Returns the log of the updates this call ran.
pub fn train(
    base: &Path,
    samples: &Path,
    run: &Path,
    opts: &TrainOptions,
    stop_after: Option<u64>,
    progress: impl FnMut(&StepLog),
) -> Result<Vec<StepLog>, TrainError> {
    train_with_held_out(base, samples, run, opts, stop_after, None, progress)
}

/// [`train`], also scoring `held_out` samples during the run (their mean losses go into the
/// log lines of the updates where they were scored).
pub fn train_with_held_out(
    base: &Path,
    samples: &Path,
    run: &Path,
    opts: &TrainOptions,
    stop_after: Option<u64>,
    held_out: Option<HeldOut<'_>>,
    progress: impl FnMut(&StepLog),
) -> Result<Vec<StepLog>, TrainError> {
    train_on(base, samples, run, opts, Placement::default(), stop_after, held_out, progress)
}

/// [`train_with_held_out`] on a chosen device and update placement (crate::device). The
/// placement is not part of the run's identity: a run saved on one device resumes on another.
#[allow(clippy::too_many_arguments)]
pub fn train_on(
    base: &Path,
    samples: &Path,
    run: &Path,
    opts: &TrainOptions,
    placement: Placement,
    stop_after: Option<u64>,
    held_out: Option<HeldOut<'_>>,
    mut progress: impl FnMut(&StepLog),
) -> Result<Vec<StepLog>, TrainError> {
    if opts.accumulate == 0 || opts.steps == 0 || opts.threads == 0 {
        return Err(TrainError::Input("--steps, --accumulate and --threads must be at least 1".into()));
    }
    let lr_ok = opts.lr.is_finite() && opts.lr > 0.0;
    if !lr_ok || !(0.0..=1.0).contains(&opts.warmup_ratio) {
        return Err(TrainError::Input(format!("--lr must be positive and --warmup-ratio in [0, 1] (got {} and {})", opts.lr, opts.warmup_ratio)));
    }
    opts.lora().validate().map_err(TrainError::Input)?;
    placement.device.check_available()?;
    let ckpt = Checkpoint::open(base, None, Requirements::default())?;
    let files = sample_files(samples)?;
    let held_out_files = match held_out {
        Some(h) if h.every == 0 => return Err(TrainError::Input("--eval-every must be at least 1".into())),
        Some(h) => sample_files(h.samples)?,
        None => Vec::new(),
    };

    // One training graph per sample shape; feeds per sample.
    std::fs::create_dir_all(run).map_err(io(run))?;
    let graphs_dir = tempfile::tempdir().map_err(io(run))?;
    let all: Vec<PathBuf> = files.iter().chain(&held_out_files).cloned().collect();
    let device = placement.device;
    let (runners, mut prepared, mut params, adapters) = match opts.objective {
        Objective::Loc3r => loc3r_samples(&ckpt, &all, opts, graphs_dir.path(), device)?,
        Objective::Cut3rPose => pose_sequences(&ckpt, &all, opts, graphs_dir.path(), device)?,
    };
    let scored = prepared.split_off(files.len());

    // Resume, or start.
    let optimizer = AdamW { weight_decay: opts.weight_decay, ..AdamW::default() };
    let mut step = 0u64;
    let state_path = run.join(STATE_FILE);
    if state_path.is_file() {
        let text = std::fs::read_to_string(&state_path).map_err(io(&state_path))?;
        let state: TrainerState = serde_json::from_str(&text).map_err(|e| TrainError::Input(format!("{}: {e}", state_path.display())))?;
        if state.options != *opts || state.samples != files.len() {
            return Err(TrainError::Input(format!(
                "{} belongs to a run with other options or data; resume with the same options, or give a new --out",
                run.display()
            )));
        }
        load_state(run, &mut params, state.step)?;
        step = state.step;
    }

    let mut engine = match placement.update() {
        Update::Host => Engine::Host(runners),
        Update::Graph => {
            let settings = UpdateSettings { optimizer, accumulate: opts.accumulate, max_grad_norm: opts.max_grad_norm, threads: opts.threads };
            Engine::Resident(Box::new(Resident::new(whole_runners(runners)?, &params, device, &settings, graphs_dir.path())?))
        }
    };

    let warmup = (opts.warmup_ratio * opts.steps as f64).ceil() as u64;
    let log_path = run.join(LOG_FILE);
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(io(&log_path))?;
    let mut ran = Vec::new();
    while step < opts.steps && stop_after.is_none_or(|n| (ran.len() as u64) < n) {
        let lr = cosine_with_warmup(opts.lr, step, warmup, opts.steps);
        let batch: Vec<&Prepared> = (0..opts.accumulate as u64)
            .map(|k| {
                let cursor = step * opts.accumulate as u64 + k;
                let n = prepared.len() as u64;
                &prepared[order(prepared.len(), opts.seed, cursor / n)[(cursor % n) as usize]]
            })
            .collect();
        let (sums, grad_norm) = match &mut engine {
            Engine::Host(runners) => {
                let mut sums: BTreeMap<String, f64> = BTreeMap::new();
                let mut grads: Vec<Vec<f32>> = params.iter().map(|p| vec![0.0; p.value.len()]).collect();
                for sample in &batch {
                    let eval = runners[sample.runner].run(&params, &sample.floats, &sample.ids)?;
                    for (name, v) in eval.losses {
                        *sums.entry(name).or_default() += f64::from(v) / opts.accumulate as f64;
                    }
                    let scale = 1.0 / opts.accumulate as f32;
                    for (acc, g) in grads.iter_mut().zip(&eval.grads) {
                        acc.iter_mut().zip(g).for_each(|(a, x)| *a += x * scale);
                    }
                }
                (sums, apply_update(&mut params, &mut grads, &optimizer, step + 1, lr, opts.max_grad_norm))
            }
            Engine::Resident(resident) => {
                let feeds: Vec<(usize, Feeds<'_>)> = batch.iter().map(|s| (s.runner, (&s.floats, &s.ids))).collect();
                let done = resident.update(&feeds, step + 1, lr)?;
                (done.losses.into_iter().collect(), done.grad_norm)
            }
        };
        let score_now = held_out.is_some_and(|h| (step + 1) % h.every == 0 || step + 1 == opts.steps);
        let held_out = if score_now { Some(mean_losses(&mut engine, &params, &scored)?) } else { None };
        let entry = StepLog { step: step + 1, lr, losses: sums, grad_norm, skipped: !grad_norm.is_finite(), held_out };
        writeln!(log, "{}", serde_json::to_string(&entry).expect("json")).map_err(io(&log_path))?;
        progress(&entry);
        ran.push(entry);
        step += 1;
        let stopping = step == opts.steps || stop_after.is_some_and(|n| ran.len() as u64 == n);
        if step % opts.save_every.max(1) == 0 || stopping {
            if let Engine::Resident(resident) = &engine {
                resident.download(&mut params)?;
            }
            save_state(run, &params, step, opts, files.len())?;
        }
    }
    if step < opts.steps {
        return Ok(ran);
    }
    // LoRA factors are merged into their weights; the factors themselves stay in params.safetensors.
    let merged = merge_adapters(&adapters, &params)?;
    let tensors: Vec<TrainedTensor<'_>> = params
        .iter()
        .filter(|p| !crate::lora::is_factor(&p.name))
        .map(|p| TrainedTensor { name: &p.name, shape: &p.shape, values: &p.value })
        .chain(merged.iter().map(|(name, shape, values)| TrainedTensor { name, shape, values }))
        .collect();
    write_trained(base, &run.join(CHECKPOINT_DIR), &tensors)?;
    Ok(ran)
}

/// A weight to write: name, shape, row-major values (checkpoint layout).
type WeightToWrite = (String, Vec<usize>, Vec<f32>);

/// Every adapted weight with its update merged (`W + (α/r)·B·A`, checkpoint layout, f32).
fn merge_adapters(adapters: &[Adapter], params: &[HostParam]) -> Result<Vec<WeightToWrite>, TrainError> {
    let value = |name: &str| {
        params
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_slice())
            .ok_or_else(|| TrainError::Input(format!("LoRA factor `{name}` is not a trained tensor")))
    };
    adapters
        .iter()
        .map(|a| {
            let merged = a.merged(value(&a.a)?, value(&a.b)?).map_err(|error| TrainError::Io { path: PathBuf::from(&a.weight), error })?;
            Ok((a.weight.clone(), vec![a.out_dim, a.in_dim], merged))
        })
        .collect()
}

/// The `*.safetensors` files of a samples directory, sorted by name.
fn sample_files(dir: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| TrainError::Input(format!("{}: cannot read the samples directory: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(TrainError::Input(format!("{}: no prepared samples (*.safetensors)", dir.display())));
    }
    Ok(files)
}

/// Where the training graphs run and AdamW updates (crate::device).
enum Engine {
    /// Parameters on the host, fed to every run; AdamW in Rust.
    Host(Vec<StepRunner>),
    /// Parameters, gradients and moments in device buffers; AdamW in an ONNX graph.
    Resident(Box<Resident>),
}

/// The single-graph runners the device-resident update binds (crate::resident); the segmented
/// step (`--recompute layers`) feeds host parameters to each of its graphs and has no such form.
fn whole_runners(runners: Vec<StepRunner>) -> Result<Vec<Runner>, TrainError> {
    runners
        .into_iter()
        .map(|r| match r {
            StepRunner::Whole(r) => Ok(r),
            StepRunner::Layers(_) => Err(TrainError::Input("--recompute layers runs with the host update: add --update host (or use --recompute none)".into())),
        })
        .collect()
}

/// Mean of every loss term over `samples` at the current parameters (no update).
fn mean_losses(engine: &mut Engine, params: &[HostParam], samples: &[Prepared]) -> Result<BTreeMap<String, f64>, TrainError> {
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for sample in samples {
        let losses = match engine {
            Engine::Host(runners) => runners[sample.runner].run(params, &sample.floats, &sample.ids)?.losses,
            Engine::Resident(resident) => resident.losses(sample.runner, (&sample.floats, &sample.ids))?,
        };
        for (name, v) in losses {
            *sums.entry(name).or_default() += f64::from(v) / samples.len() as f64;
        }
    }
    Ok(sums)
}

/// Runners, samples, the trainable tensors, and the LoRA adapters (empty without LoRA).
type Loaded = (Vec<StepRunner>, Vec<Prepared>, Vec<HostParam>, Vec<Adapter>);

/// Loc3R samples: one training graph per bucketed sample shape.
fn loc3r_samples(ckpt: &Checkpoint, files: &[PathBuf], opts: &TrainOptions, graphs: &Path, device: Device) -> Result<Loaded, TrainError> {
    let groups = Group::parse_list(&opts.train).map_err(|e| TrainError::Input(format!("--train: {e}")))?;
    let weights: LossWeights = opts.loss_weights.into();
    let mut by_shape: HashMap<Shape, usize> = HashMap::new();
    let lora = opts.lora();
    let (mut runners, mut prepared, mut params, mut adapters) = (Vec::new(), Vec::with_capacity(files.len()), None, Vec::new());
    for file in files {
        let sample = Sample::read(file)?;
        sample.validate(ckpt.config()).map_err(|e| TrainError::Input(format!("{}: {e}", file.display())))?;
        let shape = Shape::of(&sample).bucketed(TEXT_BUCKET, ROW_BUCKET);
        let runner = match by_shape.get(&shape) {
            Some(&k) => k,
            None if opts.recompute == Recompute::Layers => {
                let sg = segmented_graphs(ckpt, &shape, sample.feature_shape, &groups, &weights, &lora)?;
                if params.is_none() {
                    params = Some(sg.host_params()?);
                    adapters = sg.lora.clone();
                }
                let dir = graphs.join(format!("graph{}", runners.len()));
                runners.push(StepRunner::Layers(Box::new(SegmentedRunner::open(&sg, &dir, opts.threads, device)?)));
                by_shape.insert(shape, runners.len() - 1);
                runners.len() - 1
            }
            None => {
                let tg = training_graph_for(ckpt, &shape, sample.feature_shape, &groups, &weights, &lora)?;
                if params.is_none() {
                    params = Some(host_params(&tg)?);
                    adapters = tg.lora.clone();
                }
                runners.push(open_runner(&tg, graphs, runners.len(), opts.threads, device)?);
                by_shape.insert(shape, runners.len() - 1);
                runners.len() - 1
            }
        };
        let (floats, ids) = split_feeds(sample_feeds(ckpt, &sample, &shape)?);
        prepared.push(Prepared { runner, floats, ids });
    }
    Ok((runners, prepared, params.expect("at least one sample"), adapters))
}

/// CUT3R pose sequences: one training graph (every sequence has the same frame count).
fn pose_sequences(ckpt: &Checkpoint, files: &[PathBuf], opts: &TrainOptions, graphs: &Path, device: Device) -> Result<Loaded, TrainError> {
    if opts.recompute != Recompute::None {
        return Err(TrainError::Input(format!(
            "--recompute {} applies to the Loc3R objective's decoder; use --recompute none with --objective cut3r-pose",
            opts.recompute
        )));
    }
    if opts.train != "cut3r" {
        return Err(TrainError::Input(format!("--objective cut3r-pose trains CUT3R only: give --train cut3r (not `{}`)", opts.train)));
    }
    let (mut runners, mut prepared, mut params, mut first) = (Vec::new(), Vec::with_capacity(files.len()), None, None);
    for file in files {
        let seq = PoseSequence::read(file)?;
        seq.validate(ckpt).map_err(|e| TrainError::Input(format!("{}: {e}", file.display())))?;
        let kind = (seq.frames(), seq.points.is_some());
        match first {
            None => {
                // Point supervision is on when the sequences carry depth (`prepare-poses --points`).
                let tg = pose::training_graph(ckpt, kind.0, kind.1)?;
                params = Some(host_params(&tg)?);
                runners.push(open_runner(&tg, graphs, 0, opts.threads, device)?);
                first = Some(kind);
            }
            Some(f) if f != kind => {
                return Err(TrainError::Input(format!(
                    "{}: {} frames{}, the first sequence has {}{}; prepare every sequence with the same --frames and --points",
                    file.display(),
                    kind.0,
                    if kind.1 { " with points" } else { " without points" },
                    f.0,
                    if f.1 { " with points" } else { " without points" },
                )));
            }
            Some(_) => {}
        }
        prepared.push(Prepared { runner: 0, floats: seq.feeds(), ids: HashMap::new() });
    }
    Ok((runners, prepared, params.expect("at least one sequence"), Vec::new()))
}

fn open_runner(tg: &crate::graph::TrainingGraph, graphs: &Path, k: usize, threads: usize, device: Device) -> Result<StepRunner, TrainError> {
    let dir = graphs.join(format!("graph{k}"));
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    Ok(StepRunner::Whole(Runner::open(tg, &dir, threads, device)?))
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes `name.partial` then renames it over `name`.
fn write_tensors(path: &Path, tensors: Vec<(String, Vec<usize>, Vec<u8>)>, step: u64) -> Result<(), TrainError> {
    let partial = path.with_extension("partial");
    let specs: Vec<TensorToWrite> = tensors.iter().map(|(n, s, _)| TensorToWrite { name: n.clone(), dtype: DType::F32, shape: s.clone() }).collect();
    let data: HashMap<&str, &[u8]> = tensors.iter().map(|(n, _, d)| (n.as_str(), d.as_slice())).collect();
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string()), ("step".to_string(), step.to_string())]);
    write_safetensors(&partial, &specs, Some(&metadata), |t, w| w.write_all(data[t.name.as_str()]))?;
    std::fs::rename(&partial, path).map_err(io(path))
}

fn save_state(run: &Path, params: &[HostParam], step: u64, opts: &TrainOptions, samples: usize) -> Result<(), TrainError> {
    write_tensors(&run.join(PARAMS_FILE), params.iter().map(|p| (p.name.clone(), p.shape.clone(), f32_bytes(&p.value))).collect(), step)?;
    let moments = params
        .iter()
        .flat_map(|p| {
            [
                (format!("{}.exp_avg", p.name), p.shape.clone(), f32_bytes(&p.moments.exp_avg)),
                (format!("{}.exp_avg_sq", p.name), p.shape.clone(), f32_bytes(&p.moments.exp_avg_sq)),
            ]
        })
        .collect();
    write_tensors(&run.join(OPTIMIZER_FILE), moments, step)?;
    let state = TrainerState { step, options: opts.clone(), samples };
    let path = run.join(STATE_FILE);
    let partial = path.with_extension("partial");
    std::fs::write(&partial, serde_json::to_string_pretty(&state).expect("json") + "\n").map_err(io(&partial))?;
    std::fs::rename(&partial, &path).map_err(io(&path))
}

fn load_state(run: &Path, params: &mut [HostParam], step: u64) -> Result<(), TrainError> {
    let read = |file: &str| -> Result<(Vec<u8>, PathBuf), TrainError> {
        let path = run.join(file);
        Ok((std::fs::read(&path).map_err(io(&path))?, path))
    };
    let (pbytes, ppath) = read(PARAMS_FILE)?;
    let (obytes, opath) = read(OPTIMIZER_FILE)?;
    let bad = |path: &Path, m: String| TrainError::Input(format!("{}: {m}; the run directory is damaged, start a new --out", path.display()));
    let pst = safetensors::SafeTensors::deserialize(&pbytes).map_err(|e| bad(&ppath, e.to_string()))?;
    let ost = safetensors::SafeTensors::deserialize(&obytes).map_err(|e| bad(&opath, e.to_string()))?;
    for (st, path) in [(&pbytes, &ppath), (&obytes, &opath)] {
        let (_, meta) = safetensors::SafeTensors::read_metadata(st).map_err(|e| bad(path, e.to_string()))?;
        let saved = meta.metadata().as_ref().and_then(|m| m.get("step")).cloned().unwrap_or_default();
        if saved != step.to_string() {
            return Err(bad(path, format!("holds step {saved}, the state says {step}")));
        }
    }
    let floats = |st: &safetensors::SafeTensors<'_>, path: &Path, name: &str, n: usize| -> Result<Vec<f32>, TrainError> {
        let t = st.tensor(name).map_err(|_| bad(path, format!("missing `{name}`")))?;
        let v: Vec<f32> = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        if v.len() != n {
            return Err(bad(path, format!("`{name}` has {} values, expected {n}", v.len())));
        }
        Ok(v)
    };
    for p in params.iter_mut() {
        let n = p.value.len();
        p.value = floats(&pst, &ppath, &p.name, n)?;
        p.moments.exp_avg = floats(&ost, &opath, &format!("{}.exp_avg", p.name), n)?;
        p.moments.exp_avg_sq = floats(&ost, &opath, &format!("{}.exp_avg_sq", p.name), n)?;
    }
    Ok(())
}
