//! `loc3r-train`: the training path's command line.
//!
//! `grad` computes the loss and the gradient of every trainable tensor for one prepared sample,
//! in f32 on ONNX Runtime (CPU): the unit the trainer repeats, and the one checked against
//! references. Exit codes: 0 success, 2 invalid input (arguments, checkpoint, sample), 1 other
//! failures (writing the output, ONNX Runtime, internal errors).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use loc3r_export::checkpoint::{write_safetensors, Checkpoint, Requirements, TensorToWrite};
use loc3r_export::DType;
use loc3r_train::device::{Device, Placement, Update};
use loc3r_train::lora::LoraOptions;
use loc3r_train::losses::LossWeights;
use loc3r_train::model::{sample_feeds, split_feeds, training_graph, Data, Group, Shape};
use loc3r_train::prepare::{PrepareError, PrepareOptions};
use loc3r_train::recompute::Recompute;
use loc3r_train::recompute::{segmented_graphs, SegmentedRunner};
use loc3r_train::sample::Sample;
use loc3r_train::trainer::{train_on, HeldOut, Objective, TrainOptions};
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{DynValue, Tensor};

#[derive(Parser)]
#[command(
    name = "loc3r-train",
    version,
    about = "Train Loc3R-VLM with ONNX Runtime: training graphs built by reverse-mode autodiff over the exporter's graphs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compose a trainable Loc3R checkpoint from the public LLaVA-Video-7B-Qwen2 release (HF
    /// directory) and CUT3R's weights: adds the `loc3r` config section, the <Pos>/<Ori> tokens
    /// (embedding and LM-head rows = the mean of the existing rows) and the camera projector and
    /// localisation heads (PyTorch-default Linear init, seeded; the final pos_head/bev_head bias 0).
    /// The source shards are hard-linked, never rewritten. See docs/training.md.
    ///
    /// CUT3R is released as a PyTorch `.pth`; convert it first:
    /// `tools/cut3r-to-safetensors cut3r_512_dpt_4_64.pth cut3r.safetensors`.
    Init {
        /// LLaVA-Video-Qwen2 checkpoint directory (config.json, model shards + index, tokenizer.json).
        #[arg(long)]
        llava: PathBuf,
        /// CUT3R weights as safetensors (from tools/cut3r-to-safetensors).
        #[arg(long)]
        cut3r: PathBuf,
        /// Checkpoint directory to write (must not exist or be empty).
        #[arg(long)]
        out: PathBuf,
        /// Seed of the new tensors' initialisation: the same seed writes the same bytes.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// JSON file merged into the composed config.json, e.g. `{"loc3r": {"orientation_bins": 36}}`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Loss and gradients of every trainable tensor for one prepared sample (f32, CPU).
    ///
    /// Writes a safetensors file with the scalars `loss`, `loss.lm`, `loss.bev`, `loss.pos`,
    /// `loss.ori` and `grad.<checkpoint tensor name>` (in the checkpoint's layout) for each
    /// trainable tensor. The sample format is described in docs/training.md §5.
    Grad {
        #[command(flatten)]
        model: ModelArgs,
        /// Prepared sample (`.safetensors`).
        #[arg(long)]
        sample: PathBuf,
        /// Output file (`.safetensors`), written atomically.
        #[arg(long)]
        out: PathBuf,
        /// Print the losses and gradient norms as JSON.
        #[arg(long)]
        json: bool,
        /// Also time this many more runs of the step (after the first, which warms up) and
        /// report them (`step_ms`), for benchmarks.
        #[arg(long, default_value_t = 0)]
        bench_runs: usize,
    },
    /// Prepare training samples from scenes and annotations: the frozen encoders (SigLIP, CUT3R)
    /// run once per scene through a bundle exported from the checkpoint to train, the targets
    /// (BEV ground truth from depth and poses, the situation's pose in the BEV frame) are
    /// computed, and each question becomes one `<scene>-<k>.safetensors` plus a line of
    /// `index.jsonl`. Resumable: scenes finished by an earlier run are kept.
    ///
    /// Scenes are ScanNet export layouts (`color/`, `depth/`, `pose/`, `intrinsic/`, `<scene>.txt`,
    /// optional `video.mp4`, which is used when present) under `--scenes/<scene id>/`.
    Prepare {
        /// Bundle exported (fp32) from the checkpoint that will be trained: its SigLIP and CUT3R
        /// graphs, tokenizer and prompt template make the samples.
        #[arg(long)]
        bundle: PathBuf,
        /// Directory holding one directory per scene.
        #[arg(long)]
        scenes: PathBuf,
        /// Synthetic-room questions (`questions.jsonl`, poses in the BEV frame).
        #[arg(long, conflicts_with_all = ["sqa3d", "scanqa"])]
        questions: Option<PathBuf>,
        /// Directory with SQA3D's `v1_balanced_questions_<split>_scannetv2.json` and
        /// `v1_balanced_sqa_annotations_<split>_scannetv2.json`.
        #[arg(long, conflicts_with = "scanqa")]
        sqa3d: Option<PathBuf>,
        /// ScanQA file (`ScanQA_v1.0_<split>.json`); its samples carry no situation pose.
        #[arg(long)]
        scanqa: Option<PathBuf>,
        /// SQA3D split name.
        #[arg(long, default_value = "train")]
        split: String,
        /// SQA3D: also one sample per alternative situation text.
        #[arg(long)]
        alternatives: bool,
        /// Frames sampled per video.
        #[arg(long, default_value_t = 16)]
        frames: usize,
        /// Only the first N questions (after reading).
        #[arg(long)]
        limit: Option<usize>,
        /// Output directory of samples.
        #[arg(long)]
        out: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prepare CUT3R pose sequences (for `train --objective cut3r-pose`): for each scene
    /// (ScanNet layout with `video.mp4` and `pose/`), the video is decoded as the runtime decodes
    /// it, F frames are taken by the runtime's uniform rule (and by `--shifts − 1` cyclic shifts
    /// of it), turned into CUT3R pixels at the checkpoint's input size, and stored with each
    /// frame's pose in the first frame's camera as `<scene>-s<k>.safetensors`. Resumable.
    PreparePoses {
        /// Checkpoint whose CUT3R will be trained (its input size decides the pixels).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Directory holding one directory per scene.
        #[arg(long)]
        scenes: PathBuf,
        /// Frames per sequence (as the model will be run).
        #[arg(long, default_value_t = 16)]
        frames: usize,
        /// Sequences per video: the uniform sample and cyclic shifts of it.
        #[arg(long, default_value_t = 2)]
        shifts: usize,
        /// Also store each CUT3R pixel's depth (from `depth/` and the depth intrinsics), so
        /// `train --objective cut3r-pose` supervises both point-map heads too (CUT3R's
        /// confidence-weighted point regression, in metres).
        #[arg(long)]
        points: bool,
        /// Take every S-th frame (1: consecutive frames) instead of the runtime's uniform
        /// sample: short windows of small camera motion, the first stage of a curriculum.
        #[arg(long)]
        stride: Option<usize>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write N random prepared samples shaped for a checkpoint (smoke tests and benchmarks of
    /// the training path; real samples come from scenes and annotations).
    RandomSamples {
        /// Checkpoint the samples are shaped for.
        #[arg(long)]
        checkpoint: PathBuf,
        /// Output directory (`000000.safetensors`, …).
        #[arg(long)]
        out: PathBuf,
        /// How many samples.
        #[arg(long, default_value_t = 8)]
        count: usize,
        /// Frames per sample.
        #[arg(long, default_value_t = 2)]
        frames: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Train on a directory of prepared samples (AdamW, cosine schedule with warmup, gradient
    /// clipping and accumulation), resumably: run it again with the same options to continue.
    ///
    /// RUN holds params.safetensors, optimizer.safetensors, trainer_state.json, log.jsonl (one
    /// JSON line per update with every loss term) and, once all steps are done, checkpoint/: the
    /// base checkpoint with the trained tensors, ready for `loc3r-export export`.
    Train {
        #[command(flatten)]
        model: ModelArgs,
        /// Directory of prepared samples (`*.safetensors`, see `grad`).
        #[arg(long)]
        samples: PathBuf,
        /// Run directory (created; resumed when it holds a run).
        #[arg(long)]
        out: PathBuf,
        /// Optimizer updates.
        #[arg(long, default_value_t = 100)]
        steps: u64,
        /// Peak learning rate.
        #[arg(long, default_value_t = 1e-4)]
        lr: f64,
        /// Share of the updates spent warming up.
        #[arg(long, default_value_t = 0.03)]
        warmup_ratio: f64,
        /// Samples per update (the global batch; gradients are averaged).
        #[arg(long, default_value_t = 1)]
        accumulate: usize,
        /// Clip the global gradient norm to this.
        #[arg(long, default_value_t = 1.0)]
        max_grad_norm: f64,
        /// Decoupled weight decay.
        #[arg(long, default_value_t = 0.0)]
        weight_decay: f64,
        /// Seed of the sample order (and of the LoRA factors' initial values).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// LoRA rank r (with `--train lora,…`).
        #[arg(long, default_value_t = loc3r_train::lora::DEFAULT_RANK)]
        lora_rank: usize,
        /// LoRA α: the low-rank update is scaled by α/r.
        #[arg(long, default_value_t = loc3r_train::lora::DEFAULT_ALPHA)]
        lora_alpha: f64,
        /// Save the run every this many updates (and at the end).
        #[arg(long, default_value_t = 50)]
        save_every: u64,
        /// Stop after this many updates in this invocation (run again to continue).
        #[arg(long)]
        stop_after: Option<u64>,
        /// `loc3r`: the Loc3R-VLM losses on samples from `prepare`. `cut3r-pose`: CUT3R's camera
        /// poses on sequences from `prepare-poses` (trains CUT3R but its patch embedding; `--train`
        /// is then `cut3r`). See docs/training.md §9.
        #[arg(long, default_value = "loc3r")]
        objective: Objective,
        /// Held-out samples (prepared like `--samples`, never trained on) whose mean losses are
        /// logged every `--eval-every` updates and after the last (`held_out` in log.jsonl).
        #[arg(long)]
        eval_samples: Option<PathBuf>,
        #[arg(long, default_value_t = 250)]
        eval_every: u64,
        /// Where AdamW runs and the trainable state lives between updates: `host` (Rust, the
        /// reference; every step copies parameters in and gradients out) or `graph` (an ONNX
        /// optimizer graph on --device; parameters, gradients and moments stay in device
        /// buffers bound once, only losses and the gradient norm are read back). Default:
        /// host on the CPU, graph on CUDA. Not part of the run's identity.
        #[arg(long, value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<Update>()))]
        update: Option<Update>,
    },
}

/// The groups `--train` selects when not given.
const DEFAULT_TRAIN: &str = "llm,projector,heads";

/// The model, what trains and how it is weighed (shared by every command).
#[derive(clap::Args)]
struct ModelArgs {
    /// Checkpoint directory (as `loc3r-export export` reads it).
    #[arg(long)]
    checkpoint: PathBuf,
    /// What trains: comma-separated `heads`, `projector` (mm_projector, image_newline,
    /// cam_projector), `llm` (every Qwen2 tensor), `lora` (rank-r adapters on every layer's
    /// q/k/v/o projections, the LLM frozen; merged into those weights when training ends; not with
    /// `llm`; see --lora-rank, --lora-alpha), or `all` (heads, projector, llm).
    #[arg(long, default_value = DEFAULT_TRAIN)]
    train: String,
    /// Loss weights `lm=A,bev=B,sit=C,ori=D` (any subset) over the checkpoint config's
    /// `loc3r.loss_weights` (defaults lm 1, bev 0.1, sit 0.5, ori 1).
    #[arg(long, default_value = "")]
    loss_weights: String,
    /// ONNX Runtime intra-op threads (results repeat bit for bit for a fixed count).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// How the step keeps what its backward pass needs: `none`, one graph holding every
    /// activation (fastest; memory grows with layers × sequence), or `layers`, one graph per
    /// decoder layer, recomputed in the backward sweep, only the layer inputs kept (bounded
    /// memory for about one more forward pass of compute; use it when the whole graph does not
    /// fit, e.g. the 7B model at thousands of tokens). Both give the same losses and gradients to
    /// f32 rounding. Measured (docs/training.md §6.2): a 12-layer decoder at 1965 tokens peaks at
    /// 2.6 GB with `none`, 0.56 GB with `layers`, for 10–40% more time per step.
    #[arg(long, default_value_t = Recompute::None)]
    recompute: Recompute,
    /// Where the training graphs run: `cpu`, or `cuda` / `cuda:N` (ONNX Runtime's CUDA
    /// execution provider, from the onnxruntime-gpu build; a GPU that cannot be used is an
    /// error naming what is missing, never a fallback to the CPU).
    #[arg(long, default_value = "cpu", value_parser = clap::builder::ValueParser::new(|s: &str| s.parse::<Device>()))]
    device: Device,
}

impl ModelArgs {
    fn loss_weights(&self) -> Result<LossWeights> {
        Ok(config_loss_weights(&self.checkpoint)?.with_overrides(&self.loss_weights).map_err(|e| InputError(format!("--loss-weights: {e}")))?)
    }
}

/// An error the user can fix (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InputError(String);

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn prepare(
    bundle: &Path,
    scenes: &Path,
    questions: Option<PathBuf>,
    sqa3d: Option<PathBuf>,
    scanqa: Option<PathBuf>,
    split: &str,
    alternatives: bool,
    frames: usize,
    limit: Option<usize>,
    out: &Path,
    json: bool,
) -> Result<()> {
    use loc3r_train::data::annotations::{read_scanqa, read_sqa3d, read_synth_questions};
    let mut items = match (questions, sqa3d, scanqa) {
        (Some(path), None, None) => read_synth_questions(&path).map_err(input)?.iter().map(|q| q.situated()).collect::<Vec<_>>(),
        (None, Some(dir), None) => {
            let split = read_sqa3d(&dir, split).map_err(input)?;
            if split.questions_without_annotation + split.annotations_without_question > 0 {
                eprintln!(
                    "note: {} questions without annotation and {} annotations without question were skipped",
                    split.questions_without_annotation, split.annotations_without_question
                );
            }
            split.items.iter().flat_map(|q| q.situated(alternatives)).collect()
        }
        (None, None, Some(path)) => read_scanqa(&path).map_err(input)?.iter().map(|q| q.situated()).collect(),
        _ => return Err(InputError("give exactly one of --questions, --sqa3d or --scanqa".into()).into()),
    };
    if let Some(n) = limit {
        items.truncate(n);
    }
    let model = loc3r::Loc3r::open(bundle, &loc3r::SessionOptions::default()).map_err(|e| match e.fault() {
        loc3r::Fault::Input | loc3r::Fault::Bundle => anyhow::Error::from(InputError(format!("{}: {e}", bundle.display()))),
        _ => anyhow::Error::from(e),
    })?;
    let opts = PrepareOptions { frames, ..PrepareOptions::default() };
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} scenes {msg} ({elapsed}, eta {eta})").expect("template").progress_chars("=> "),
    );
    bar.set_prefix("preparing");
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let report = loc3r_train::prepare::prepare(&model, scenes, &items, out, &opts, |done, total, scene| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(scene.to_string());
    })
    .map_err(|e| match e {
        PrepareError::Input(_) | PrepareError::Data(_) => anyhow::Error::from(InputError(e.to_string())),
        other => anyhow::Error::from(other),
    })?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let masked = if report.bev_tokens > 0 {
            format!("; BEV tokens masked in the scenes prepared now: {:.1}%", 100.0 * report.bev_masked as f64 / report.bev_tokens as f64)
        } else {
            String::new()
        };
        println!(
            "prepared {} samples from {} scenes ({} resumed from an earlier run) into {}{masked}",
            report.samples,
            report.scenes + report.scenes_resumed,
            report.scenes_resumed,
            out.display()
        );
        for (scene, why) in report.skipped_scenes.iter().take(10) {
            eprintln!("skipped scene {scene}: {why}");
        }
        if report.skipped_scenes.len() > 10 {
            eprintln!("... and {} more skipped scenes", report.skipped_scenes.len() - 10);
        }
    }
    Ok(())
}

fn input(e: impl std::fmt::Display) -> anyhow::Error {
    InputError(e.to_string()).into()
}

fn init(llava: PathBuf, cut3r: PathBuf, out: PathBuf, seed: u64, config: Option<&Path>, json: bool) -> Result<()> {
    let overrides = match config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| InputError(format!("{}: {e}", path.display())))?;
            Some(serde_json::from_str(&text).map_err(|e| InputError(format!("{}: invalid JSON: {e}", path.display())))?)
        }
        None => None,
    };
    let report = loc3r_train::init::init(&loc3r_train::init::InitOptions { llava, cut3r, out, seed, overrides })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "wrote {}: <Pos> = {}, <Ori> = {}, vocab_size {}{}, {} Loc3R tensors initialised (seed {})",
            report.out.display(),
            report.pos_token_id,
            report.ori_token_id,
            report.vocab_size,
            if report.vocab_grown { " (grown)" } else { "" },
            report.initialised.len(),
            report.seed
        );
    }
    Ok(())
}

fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<loc3r_train::init::InitError>() {
            return if e.is_input() { 2 } else { 1 };
        }
        if cause.downcast_ref::<InputError>().is_some() || cause.downcast_ref::<loc3r_train::sample::SampleError>().is_some() {
            return 2;
        }
        if let Some(loc3r_train::session::SessionError::Unavailable { .. }) = cause.downcast_ref() {
            return 2;
        }
        if let Some(e) = cause.downcast_ref::<loc3r_train::trainer::TrainError>() {
            return if e.is_input() { 2 } else { 1 };
        }
        if let Some(e) = cause.downcast_ref::<loc3r_export::Error>() {
            return e.fault().exit_code();
        }
    }
    1
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init { llava, cut3r, out, seed, config, json } => init(llava, cut3r, out, seed, config.as_deref(), json),
        Command::Grad { model, sample, out, json, bench_runs } => grad(&model, &sample, &out, json, bench_runs),
        Command::Prepare { bundle, scenes, questions, sqa3d, scanqa, split, alternatives, frames, limit, out, json } => {
            prepare(&bundle, &scenes, questions, sqa3d, scanqa, &split, alternatives, frames, limit, &out, json)
        }
        Command::RandomSamples { checkpoint, out, count, frames, seed } => {
            if frames == 0 || count == 0 {
                return Err(InputError("--count and --frames must be at least 1".into()).into());
            }
            let ckpt = Checkpoint::open(&checkpoint, None, Requirements::default()).context("opening the checkpoint")?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            for i in 0..count {
                let path = out.join(format!("{i:06}.safetensors"));
                Sample::random_for(ckpt.config(), frames, seed.wrapping_add(i as u64)).write(&path)?;
            }
            println!("wrote {count} samples of {frames} frames to {}", out.display());
            Ok(())
        }
        Command::PreparePoses { checkpoint, scenes, frames, shifts, points, stride, out, json } => {
            let ckpt = Checkpoint::open(&checkpoint, None, Requirements::default()).context("opening the checkpoint")?;
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} scenes, ETA {eta}").unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let opts = loc3r_train::pose::PosePrepareOptions { frames, shifts, points, stride };
            let report = loc3r_train::pose::prepare_poses(&ckpt, &scenes, &out, &opts, |k, n| {
                bar.set_length(n as u64);
                bar.set_position(k as u64);
            })
            .map_err(|e| match e {
                loc3r_train::pose::PosePrepareError::Input(m) => anyhow::Error::from(InputError(m)),
                other => anyhow::Error::from(other),
            })?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "wrote {} pose sequences of {frames} frames to {} ({} scenes, {} resumed, {} skipped)",
                    report.sequences,
                    out.display(),
                    report.scenes,
                    report.scenes_resumed,
                    report.skipped_scenes.len()
                );
                for (scene, why) in &report.skipped_scenes {
                    eprintln!("skipped {scene}: {why}");
                }
            }
            if report.sequences == 0 {
                return Err(InputError(format!("no usable scene under {}", scenes.display())).into());
            }
            Ok(())
        }
        Command::Train {
            model,
            samples,
            out,
            steps,
            lr,
            warmup_ratio,
            accumulate,
            max_grad_norm,
            weight_decay,
            seed,
            lora_rank,
            lora_alpha,
            save_every,
            stop_after,
            objective,
            eval_samples,
            eval_every,
            update,
        } => {
            // The pose objective trains CUT3R; the default selection names the VLM's groups.
            let train = if objective == Objective::Cut3rPose && model.train == DEFAULT_TRAIN { "cut3r".to_string() } else { model.train.clone() };
            let opts = TrainOptions {
                objective,
                train,
                lora_rank,
                lora_alpha,
                loss_weights: model.loss_weights()?.into(),
                steps,
                lr,
                warmup_ratio,
                accumulate,
                max_grad_norm,
                weight_decay,
                seed,
                threads: model.threads,
                save_every,
                recompute: model.recompute,
            };
            let bar = indicatif::ProgressBar::new(steps);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} updates, {per_sec}, ETA {eta} | {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let held_out = eval_samples.as_deref().map(|samples| HeldOut { samples, every: eval_every });
            let placement = Placement { device: model.device, update };
            let log = train_on(&model.checkpoint, &samples, &out, &opts, placement, stop_after, held_out, |s| {
                if let Some(h) = &s.held_out {
                    let parts: Vec<String> = h.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
                    bar.println(format!("update {}: held-out {}", s.step, parts.join(" ")));
                }
                bar.set_position(s.step);
                let parts: Vec<String> = s.losses.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
                bar.set_message(format!("{} | lr {:.2e} | grad norm {:.3}", parts.join(" "), s.lr, s.grad_norm));
            })?;
            bar.finish_and_clear();
            let done = log.last().map_or(0, |s| s.step);
            if done >= steps {
                println!("trained {steps} updates; checkpoint for loc3r-export: {}", out.join(loc3r_train::trainer::CHECKPOINT_DIR).display());
            } else {
                println!("stopped after update {done} of {steps}; run the same command again to continue");
            }
            Ok(())
        }
    }
}

/// The config's `loc3r.loss_weights`, or the defaults.
fn config_loss_weights(checkpoint: &Path) -> Result<LossWeights> {
    let path = checkpoint.join(loc3r_export::checkpoint::CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| InputError(format!("{}: {e}", path.display())))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| InputError(format!("{}: {e}", path.display())))?;
    match value.pointer("/loc3r/loss_weights") {
        Some(w) => Ok(serde_json::from_value(w.clone()).map_err(|e| InputError(format!("{}: loc3r.loss_weights: {e}", path.display())))?),
        None => Ok(LossWeights::default()),
    }
}

fn grad(model: &ModelArgs, sample_path: &Path, out: &Path, json: bool, bench_runs: usize) -> Result<()> {
    let groups = Group::parse_list(&model.train).map_err(|e| InputError(format!("--train: {e}")))?;
    let weights = model.loss_weights()?;
    let threads = model.threads;
    let ckpt = Checkpoint::open(&model.checkpoint, None, Requirements::default()).context("opening the checkpoint")?;
    let sample = Sample::read(sample_path)?;
    sample.validate(ckpt.config()).map_err(|e| InputError(format!("{}: {e}", sample_path.display())))?;
    if model.recompute == Recompute::Layers {
        return grad_segmented(model, &ckpt, &sample, &groups, &weights, out, json, bench_runs);
    }
    let (tg, data) = training_graph(&ckpt, &sample, &groups, &weights).context("building the training graph")?;

    let work = tempfile::tempdir().context("creating a temporary directory for the training graph")?;
    let stats = tg.graph.save(work.path()).context("writing the training graph")?;
    let mut session = loc3r_train::session::open_session(&stats.onnx_path, threads, model.device, GraphOptimizationLevel::Level3)
        .context("loading the training graph in ONNX Runtime")?;
    // Inputs as arrays, turned into ORT values for each run (a run takes its values).
    let mut arrays: Vec<(String, Data)> = data.into_iter().collect();
    for p in &tg.params {
        arrays.push((p.name.clone(), Data::F32(p.initial_values().with_context(|| format!("reading `{}`", p.name))?)));
    }
    let feeds = || -> Result<Vec<(String, DynValue)>> {
        arrays
            .iter()
            .map(|(name, d)| {
                let v = match d {
                    Data::F32(a) => Tensor::from_array(a.clone())?.into_dyn(),
                    Data::I64(a) => Tensor::from_array(a.clone())?.into_dyn(),
                };
                Ok((name.clone(), v))
            })
            .collect()
    };
    // Timed runs after a warm-up one, for benchmarks; then the run whose outputs are written.
    let mut step_ms = Vec::with_capacity(bench_runs);
    for k in 0..bench_runs + usize::from(bench_runs > 0) {
        let inputs = feeds()?;
        let t0 = std::time::Instant::now();
        session.run(inputs).context("running the training graph")?;
        if k > 0 {
            step_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let outputs = session.run(feeds()?).context("running the training graph")?;

    let mut losses = Vec::new();
    for v in &tg.loss_outputs {
        let x = outputs[v.name()].try_extract_array::<f32>()?.iter().next().copied().unwrap_or(f32::NAN);
        losses.push((v.name().to_string(), x));
    }
    let mut grads = Vec::new();
    for p in &tg.params {
        let g = outputs[p.grad_output.name()].try_extract_array::<f32>()?;
        grads.push((p.name.clone(), g.shape().to_vec(), g.iter().copied().collect()));
    }
    write_grad_report(out, json, &losses, &grads, &step_ms)
}

/// `grad --recompute layers`: the same outputs from the segmented step (crate::recompute).
#[allow(clippy::too_many_arguments)]
fn grad_segmented(
    model: &ModelArgs,
    ckpt: &Checkpoint,
    sample: &Sample,
    groups: &std::collections::BTreeSet<Group>,
    weights: &LossWeights,
    out: &Path,
    json: bool,
    bench_runs: usize,
) -> Result<()> {
    let shape = Shape::of(sample);
    let graphs = segmented_graphs(ckpt, &shape, sample.feature_shape, groups, weights, &LoraOptions::default()).context("building the training graphs")?;
    let (floats, ids) = split_feeds(sample_feeds(ckpt, sample, &shape).context("building the sample's feeds")?);
    let work = tempfile::tempdir().context("creating a temporary directory for the training graphs")?;
    let mut runner = SegmentedRunner::open(&graphs, work.path(), model.threads, model.device).context("loading the training graphs in ONNX Runtime")?;
    let params = graphs.host_params().context("reading the trainable tensors")?;
    drop(graphs);
    let mut step_ms = Vec::with_capacity(bench_runs);
    for k in 0..bench_runs + usize::from(bench_runs > 0) {
        let t0 = std::time::Instant::now();
        runner.run(&params, &floats, &ids).context("running the training step")?;
        if k > 0 {
            step_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let eval = runner.run(&params, &floats, &ids).context("running the training step")?;
    let grads: Vec<GradOut> = params.iter().zip(eval.grads).map(|(p, g)| (p.name.clone(), p.shape.clone(), g)).collect();
    write_grad_report(out, json, &eval.losses, &grads, &step_ms)
}

/// A gradient to write: the tensor's name, shape (checkpoint layout) and values.
type GradOut = (String, Vec<usize>, Vec<f32>);

/// Writes `grad`'s safetensors (atomically) and prints its report.
fn write_grad_report(out: &Path, json: bool, losses: &[(String, f32)], grads: &[GradOut], step_ms: &[f64]) -> Result<()> {
    let mut tensors: Vec<(TensorToWrite, Vec<u8>)> = Vec::new();
    let mut report = serde_json::Map::new();
    let mut norms = serde_json::Map::new();
    for (name, x) in losses {
        report.insert(name.clone(), serde_json::json!(x));
        tensors.push((TensorToWrite { name: name.clone(), dtype: DType::F32, shape: vec![] }, x.to_le_bytes().to_vec()));
    }
    for (name, shape, g) in grads {
        let norm = g.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        norms.insert(name.clone(), serde_json::json!(norm));
        let bytes: Vec<u8> = g.iter().flat_map(|x| x.to_le_bytes()).collect();
        tensors.push((TensorToWrite { name: format!("grad.{name}"), dtype: DType::F32, shape: shape.clone() }, bytes));
    }
    let specs: Vec<TensorToWrite> = tensors.iter().map(|(t, _)| t.clone()).collect();
    let by_name: HashMap<&str, &[u8]> = tensors.iter().map(|(t, b)| (t.name.as_str(), b.as_slice())).collect();
    let staging = out.with_extension("safetensors.partial");
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(&staging, &specs, Some(&metadata), |t, w| w.write_all(by_name[t.name.as_str()]))?;
    std::fs::rename(&staging, out).with_context(|| format!("moving {} into place", out.display()))?;

    if json {
        report.insert("grad_norms".into(), serde_json::Value::Object(norms));
        report.insert("trainable_tensors".into(), serde_json::json!(grads.len()));
        if !step_ms.is_empty() {
            let mut sorted = step_ms.to_vec();
            sorted.sort_by(f64::total_cmp);
            report.insert("step_ms".into(), serde_json::json!({"min": sorted[0], "median": sorted[sorted.len() / 2], "runs": sorted.len()}));
        }
        println!("{}", serde_json::Value::Object(report));
    } else {
        let losses: Vec<String> = losses.iter().map(|(name, _)| format!("{name} {}", report[name.as_str()])).collect();
        println!("{} | {} trainable tensors -> {}", losses.join(", "), grads.len(), out.display());
    }
    Ok(())
}
