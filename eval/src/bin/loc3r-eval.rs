//! `loc3r-eval`: scores a bundle with the paper's metrics.
//!
//! `synth` asks every question of a set of held-out synthetic rooms (`loc3r-synth` output) and
//! prints the SQA3D localisation accuracies and answer exact match next to the baselines.
//! `score --task scanqa` scores a prediction file against a ScanQA ground-truth file (EM, BLEU,
//! ROUGE-L, CIDEr, METEOR) under the three published protocols; `score --task sqa3d|sqa3d-loc|
//! vsibench` scores SQA3D answers (EM, EM-R), SQA3D poses (Acc@0.5m/1.0m/15°/30°) and VSI-Bench.
//! `run` asks a bundle every question of an official SQA3D, ScanQA or VSI-Bench file, writes the
//! predictions (resumably) and scores them like `score` (docs/evaluation.md). `compare` runs two
//! bundles over the same questions as `run` does and gates their differences (`--max-delta`).
//! Exit codes: 0 success, 2 invalid input (arguments, files, bundle), 1 other failures and, for
//! `compare`, a gate exceeded.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use loc3r_bundle::manifest::Manifest;
use loc3r_eval::benchmark_run::{run_benchmark, Progress, RunError, RunOptions, RunQuestion, RunReport, RunTask, Truth};
use loc3r_eval::compare::{
    check_gate_keys, check_gates, compare, parse_gate, score_side, BundleIdentity, CompareError, CompareReport, Family, Gate, Provenance, SideReport,
    PREDICTIONS_A, PREDICTIONS_B,
};
use loc3r_eval::input_files::InputError as FileInputError;
use loc3r_eval::metrics::localization::LocalizationScores;
use loc3r_eval::metrics::ngram::meteor;
use loc3r_eval::metrics::scanqa::{self, Protocol};
use loc3r_eval::scanqa_input::{join, read_predictions, ScanQaInputError};
use loc3r_eval::sqa3d_input::{locate_sqa3d, read_sqa3d_ground_truth, read_sqa3d_predictions, score_sqa3d_answers, score_sqa3d_localization};
use loc3r_eval::synth::{evaluate, table, QuestionResult, SynthEvalError, SynthEvalOptions, TrainingPrior};
use loc3r_eval::vsibench_input::{read_vsibench_docs, read_vsibench_predictions, score_vsibench_files, vsibench_table};
use loc3r_train::data::annotations::{read_scanqa, read_synth_questions, ScanQaItem, Sqa3dItem, Sqa3dSplit};

#[derive(Parser)]
#[command(name = "loc3r-eval", version, about = "Evaluate a Loc3R-VLM bundle with the paper's metrics")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ask every question of held-out synthetic rooms and score poses (Acc@0.5m, Acc@1.0m,
    /// Acc@15°, Acc@30°, SQA3D protocol, strict thresholds) and answers (exact match after the
    /// SQA3D normaliser), next to three baselines: the model with a blank video, the mean
    /// training pose (with the most frequent training answer per question), a random pose in the room.
    Synth {
        /// Bundle directory.
        #[arg(long)]
        bundle: PathBuf,
        /// `questions.jsonl` of the held-out rooms (videos are relative to its directory).
        #[arg(long)]
        questions: PathBuf,
        /// `questions.jsonl` of the training rooms, for the mean-pose baseline.
        #[arg(long)]
        train_questions: Option<PathBuf>,
        /// Frames per video (default: the questions' own `frames`).
        #[arg(long)]
        frames: Option<usize>,
        /// Only the first N questions.
        #[arg(long)]
        limit: Option<usize>,
        /// Print the first N questions with prediction, ground truth and errors.
        #[arg(long, default_value_t = 0)]
        show: usize,
        /// Only the model, no baselines.
        #[arg(long)]
        no_baselines: bool,
        /// Longest answer, in tokens.
        #[arg(long, default_value_t = 16)]
        max_new_tokens: usize,
        /// Seed of the random-pose baseline.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Write every question's result as a JSON line here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the report as JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Score a prediction file against a benchmark's ground truth, without a model. ScanQA:
    /// EM, BLEU-1..4, ROUGE-L, CIDEr and METEOR (with Java and LOC3R_METEOR_JAR) as
    /// pycocoevalcap computes them, under every protocol or the one given. SQA3D: EM and EM-R
    /// (sqa3d), Acc@0.5m, Acc@1.0m, Acc@15°, Acc@30° (sqa3d-loc). VSI-Bench: the eight paper
    /// columns and their mean.
    Score {
        /// The benchmark.
        #[arg(long, value_enum)]
        task: Task,
        /// Predictions, a JSON array of: scanqa {"question_id", "answer_top10": [..]} (the first
        /// answer is scored) or {"question_id", "answer"}; sqa3d {"question_id", "answer"};
        /// sqa3d-loc {"question_id", "position": [x, y, z], "rotation": [x, y, z, w]} in the SQA3D
        /// annotation frame; vsibench {"id", "prediction"}.
        #[arg(long)]
        pred: PathBuf,
        /// Ground truth: ScanQA_v1.0_val.json; for sqa3d and sqa3d-loc the annotations file
        /// v1_balanced_sqa_annotations_<split>_scannetv2.json (or its directory); for vsibench a
        /// JSON array or JSON lines of VSI-Bench documents.
        #[arg(long)]
        gt: PathBuf,
        /// SQA3D questions file (default: v1_balanced_questions_<split>_scannetv2.json next to --gt).
        #[arg(long)]
        questions: Option<PathBuf>,
        /// ScanQA only: this protocol (default: all three, video3dllm first).
        #[arg(long, value_parser = parse_protocol)]
        protocol: Option<Protocol>,
        /// ScanQA only: write every question's scores as JSON lines here (one per question and protocol).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print every metric as JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Ask a bundle every question of an official SQA3D, ScanQA or VSI-Bench file, observing each
    /// scene's video (SCENES/<scene_id>/video.mp4; VSI-Bench: SCENES/<dataset>/<scene_name>.mp4)
    /// once, write the predictions in the format `score` reads and score them. Resumable: questions already in --out are not asked again; the file
    /// is rewritten after every scene. Scenes that cannot be used are skipped and reported (their
    /// questions score as misses).
    Run(RunArgs),
    /// Fidelity gates between two bundles (e.g. an fp32 and an fp16 export of one checkpoint):
    /// ask both every question of an official SQA3D, ScanQA or VSI-Bench file as `run` does (predictions in
    /// --out-dir, resumable), then report every metric of A and B and its delta B − A, the
    /// per-question pose deltas between A and B (SQA3D: position distance in metres, yaw
    /// difference in degrees; mean, median, max) and answer agreement (the share of questions
    /// with the same answer after the SQA3D normaliser), with each bundle's exact matches.
    /// Exit code 0 when every --max-delta gate holds, 1 when one is exceeded (each printed with
    /// its values), 2 for invalid input.
    Compare(CompareArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Task {
    Scanqa,
    Sqa3d,
    #[value(name = "sqa3d-loc")]
    Sqa3dLoc,
    Vsibench,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RunTaskArg {
    #[value(name = "sqa3d-loc")]
    Sqa3dLoc,
    Sqa3d,
    Scanqa,
    Vsibench,
}

impl RunTaskArg {
    fn name(self) -> &'static str {
        match self {
            RunTaskArg::Sqa3dLoc => "sqa3d-loc",
            RunTaskArg::Sqa3d => "sqa3d",
            RunTaskArg::Scanqa => "scanqa",
            RunTaskArg::Vsibench => "vsibench",
        }
    }
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    Protocol::from_name(s).ok_or_else(|| format!("unknown protocol `{s}`; use one of video3dllm, official, leo_ptb"))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InputError(String);

/// `compare`'s gates that do not hold (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{} of {total} gates exceeded:\n  {}", failed.len(), failed.join("\n  "))]
struct GatesExceeded {
    failed: Vec<String>,
    total: usize,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let input = e.chain().any(|c| {
                c.downcast_ref::<InputError>().is_some()
                    || c.downcast_ref::<FileInputError>().is_some()
                    || c.downcast_ref::<RunError>().is_some_and(run_error_is_input)
                    || c.downcast_ref::<CompareError>().is_some()
                    || c.downcast_ref::<ScanQaInputError>().is_some()
                    || matches!(c.downcast_ref::<SynthEvalError>(), Some(SynthEvalError::Input(_)))
                    || c.downcast_ref::<loc3r::Error>().is_some_and(|e| matches!(e.fault(), loc3r::Fault::Input | loc3r::Fault::Bundle))
            });
            ExitCode::from(if input { 2 } else { 1 })
        }
    }
}

fn run_error_is_input(e: &RunError) -> bool {
    match e {
        RunError::Input(_) | RunError::ForeignPrediction { .. } | RunError::AllSkipped { .. } => true,
        RunError::Runtime(e) => matches!(e.fault(), loc3r::Fault::Input | loc3r::Fault::Bundle),
        RunError::Write { .. } => false,
    }
}

fn show(r: &QuestionResult) {
    println!("Q  [{}] {} {}", r.scene, r.situation, r.question);
    println!(
        "   pose: predicted ({:+.2}, {:+.2}) m, {:+.0}°   truth ({:+.2}, {:+.2}) m, {:+.0}°   error {:.2} m, {:.0}°",
        r.predicted_position[0], r.predicted_position[1], r.predicted_yaw_deg, r.position[0], r.position[1], r.yaw_deg, r.position_error_m, r.yaw_error_deg
    );
    println!("   answer: {:?}   expected {:?}   {}", r.predicted_answer, r.answer, if r.exact_match { "✓" } else { "✗" });
}

/// A score ready to print: the JSON report and the table.
struct Scored {
    json: serde_json::Value,
    table: String,
}

fn input<E: std::fmt::Display>(e: E) -> InputError {
    InputError(e.to_string())
}

/// `score --task scanqa` on ground truth already read (all of a file, or `run`'s first questions).
fn score_scanqa(truth: &[ScanQaItem], pred: &Path, protocol: Option<Protocol>, out: Option<PathBuf>) -> Result<Scored> {
    let predictions = read_predictions(pred).map_err(input)?;
    let questions = join(truth, predictions, pred).map_err(input)?;
    let protocols = protocol.map_or(Protocol::ALL.to_vec(), |p| vec![p]);
    let jar = meteor::jar_from_env();
    let scores = protocols.iter().map(|&p| scanqa::score(&questions, p, jar.as_deref()).map_err(input)).collect::<Result<Vec<_>, _>>()?;
    if let Some(path) = out {
        let mut lines = String::new();
        for s in &scores {
            for q in &s.per_question {
                let mut record = serde_json::to_value(q)?;
                record["protocol"] = serde_json::json!(s.protocol);
                lines.push_str(&serde_json::to_string(&record)?);
                lines.push('\n');
            }
        }
        std::fs::write(&path, lines).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Scored { json: serde_json::json!({ "task": "scanqa", "protocols": scores }), table: scanqa::table(&scores) })
}

fn localization_table(questions: usize, missing: usize, l: &LocalizationScores) -> String {
    let opt = |v: Option<f64>, unit: &str| v.map_or("—".to_string(), |v| format!("{v:.2}{unit}"));
    format!(
        "{questions} questions, {missing} without a prediction\n{:>9} {:>9} {:>8} {:>8} {:>12} {:>12}\n{:>9.2} {:>9.2} {:>8.2} {:>8.2} {:>12} {:>12}\n",
        "Acc@0.5m",
        "Acc@1.0m",
        "Acc@15°",
        "Acc@30°",
        "median err",
        "median ang",
        l.acc_0_5m,
        l.acc_1_0m,
        l.acc_15deg,
        l.acc_30deg,
        opt(l.median_position_error_m, " m"),
        opt(l.median_angle_error_deg, "°"),
    )
}

/// `score --task sqa3d|sqa3d-loc` on ground truth already read.
fn score_sqa3d(items: &[Sqa3dItem], pred: &Path, localization: bool) -> Result<Scored> {
    let predictions = read_sqa3d_predictions(pred)?;
    if localization {
        let r = score_sqa3d_localization(items, &predictions, pred)?;
        Ok(Scored { table: localization_table(r.questions, r.missing_predictions, &r.scores), json: serde_json::to_value(&r)? })
    } else {
        let r = score_sqa3d_answers(items, &predictions, pred)?;
        let table = format!(
            "{} questions, {} without a prediction\n{:>7} {:>7}\n{:>7.2} {:>7.2}\n",
            r.questions, r.missing_predictions, "EM", "EM-R", r.scores.em, r.scores.em_r
        );
        Ok(Scored { table, json: serde_json::to_value(&r)? })
    }
}

/// SQA3D questions and annotations that did not join cannot be scored; say so.
fn warn_unjoined(split: &Sqa3dSplit) {
    if split.questions_without_annotation > 0 || split.annotations_without_question > 0 {
        eprintln!(
            "warning: SQA3D files: {} questions without an annotation and {} annotations without a question are left out",
            split.questions_without_annotation, split.annotations_without_question
        );
    }
}

fn print_scored(s: &Scored, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&s.json)?);
    } else {
        print!("{}", s.table);
    }
    Ok(())
}

fn score(task: Task, pred: &Path, gt: &Path, questions: Option<&Path>, protocol: Option<Protocol>, out: Option<PathBuf>) -> Result<Scored> {
    if !matches!(task, Task::Scanqa) && (protocol.is_some() || out.is_some()) {
        return Err(InputError("--protocol and --out apply to --task scanqa only".into()).into());
    }
    match task {
        Task::Scanqa => score_scanqa(&read_scanqa(gt).map_err(input)?, pred, protocol, out),
        Task::Sqa3d | Task::Sqa3dLoc => {
            let (questions, annotations) = locate_sqa3d(gt, questions)?;
            let split = read_sqa3d_ground_truth(&questions, &annotations)?;
            warn_unjoined(&split);
            score_sqa3d(&split.items, pred, matches!(task, Task::Sqa3dLoc))
        }
        Task::Vsibench => {
            let docs = read_vsibench_docs(gt)?;
            let r = score_vsibench_files(&docs, &read_vsibench_predictions(pred)?, pred)?;
            Ok(Scored { table: vsibench_table(&r), json: serde_json::to_value(&r)? })
        }
    }
}

/// The ScanQA file of `--annotations`: the file, or the one `ScanQA_v1.0_*.json` in a directory.
fn scanqa_file(annotations: &Path) -> Result<PathBuf> {
    if !annotations.is_dir() {
        return Ok(annotations.to_path_buf());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(annotations)
        .with_context(|| format!("reading {}", annotations.display()))
        .map_err(|e| InputError(format!("{e:#}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("ScanQA_v1.0_") && n.ends_with(".json")))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(InputError(format!("{}: no ScanQA_v1.0_<split>.json in it; give the ScanQA file itself", annotations.display())).into()),
        _ => Err(InputError(format!("{}: several ScanQA files; give the one to use with --annotations", annotations.display())).into()),
    }
}

/// `run`'s and `compare`'s checks of `--frames` and `--scenes`.
fn check_frames_and_scenes(frames: Option<usize>, scenes: &Path) -> Result<()> {
    if frames == Some(0) {
        return Err(InputError("--frames must be at least 1".into()).into());
    }
    if !scenes.is_dir() {
        return Err(InputError(format!("--scenes {}: not a directory; give the directory holding one directory per scene", scenes.display())).into());
    }
    Ok(())
}

/// The benchmark of `run` and `compare`: the ground truth of `--annotations` (its first `limit`
/// questions) and what a run predicts.
fn read_benchmark(task: RunTaskArg, annotations: &Path, questions: Option<&Path>, limit: Option<usize>) -> Result<(Truth, RunTask)> {
    let (mut truth, run_task) = match task {
        RunTaskArg::Sqa3d | RunTaskArg::Sqa3dLoc => {
            let (questions, annotations) = locate_sqa3d(annotations, questions)?;
            let split = read_sqa3d_ground_truth(&questions, &annotations)?;
            warn_unjoined(&split);
            (Truth::Sqa3d(split.items), if matches!(task, RunTaskArg::Sqa3d) { RunTask::Sqa3d } else { RunTask::Sqa3dLoc })
        }
        RunTaskArg::Scanqa => (Truth::ScanQa(read_scanqa(&scanqa_file(annotations)?).map_err(input)?), RunTask::ScanQa),
        RunTaskArg::Vsibench => {
            let docs = read_vsibench_docs(annotations)?;
            // Ground truths that cannot be scored are refused before any scene is observed.
            score_vsibench_files(&docs, &[], annotations)?;
            (Truth::vsibench(docs)?, RunTask::VsiBench)
        }
    };
    truth.truncate(limit.unwrap_or(usize::MAX));
    if truth.is_empty() {
        return Err(InputError(format!("{}: no questions", annotations.display())).into());
    }
    Ok((truth, run_task))
}

/// Refuses an output file whose directory does not exist, before any scene is observed rather
/// than at the first write.
fn check_out_parent(flag: &str, out: &Path) -> Result<()> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
        return Err(InputError(format!("{flag} {}: the directory {} does not exist; create it first", out.display(), parent.display())).into());
    }
    Ok(())
}

/// Opens `bundle` and asks it every question not yet in `out` (`run_benchmark`), with a progress
/// bar; `label` prefixes the bar and the warnings. `frames` defaults to the bundle's.
#[allow(clippy::too_many_arguments)]
fn ask_bundle(
    bundle: &Path,
    task: RunTask,
    questions: &[RunQuestion],
    scenes: &Path,
    frames: Option<usize>,
    max_new_tokens: usize,
    out: &Path,
    label: &str,
) -> Result<RunReport> {
    let model = loc3r::Loc3r::open(bundle, &loc3r::SessionOptions::default()).with_context(|| format!("opening {}", bundle.display()))?;
    let frames = frames.unwrap_or(model.bundle().manifest.runtime.frames);
    model.check_frame_count(frames).context("--frames")?;
    let bar = indicatif::ProgressBar::new(0)
        .with_style(
            indicatif::ProgressStyle::with_template("{prefix}asking [{bar:30}] {pos}/{len} questions ({elapsed}, eta {eta})")
                .expect("template")
                .progress_chars("=> "),
        )
        .with_prefix(label.to_string());
    let opts = RunOptions { frames, max_new_tokens };
    let report = run_benchmark(&model, task, questions, scenes, out, &opts, |p| match p {
        Progress::Pending(n) => bar.set_length(n as u64),
        Progress::Answered => bar.inc(1),
        Progress::Skipped(s) => {
            bar.suspend(|| eprintln!("warning: {label}skipped scene {} ({} questions): {}", s.scene_id, s.questions, s.reason));
            bar.inc(s.questions as u64);
        }
    })?;
    bar.finish_and_clear();
    Ok(report)
}

/// What a run did, for stderr.
fn run_summary(report: &RunReport, out: &Path) -> String {
    format!(
        "{} questions: {} answered now, {} by an earlier run, {} scenes observed, {} skipped; predictions in {}",
        report.questions,
        report.answered,
        report.already_answered,
        report.scenes_observed,
        report.skipped_scenes.len(),
        out.display()
    )
}

// The benchmark `run` and `compare` ask: the questions, the scenes and how to ask them.
#[derive(clap::Args)]
struct Benchmark {
    /// sqa3d-loc or sqa3d (answers and poses; `run` scores them differently), scanqa or
    /// vsibench (answers; `compare` reports VSI-Bench's overall score and paper columns).
    #[arg(long, value_enum)]
    task: RunTaskArg,
    /// SQA3D: the annotations file or its directory; ScanQA: ScanQA_v1.0_<split>.json or its
    /// directory; VSI-Bench: a JSON array or JSON lines of its documents (with `dataset`,
    /// `scene_name`, `question`, `options`).
    #[arg(long)]
    annotations: PathBuf,
    /// SQA3D questions file (default: next to the annotations file).
    #[arg(long)]
    questions: Option<PathBuf>,
    /// Directory of the scenes (ScanNet export layout, one directory per scene id, with
    /// video.mp4; VSI-Bench: the release's <dataset>/<scene_name>.mp4).
    #[arg(long)]
    scenes: PathBuf,
    /// Frames per video (default: the bundle's; for `compare`, bundle A's, used for both).
    #[arg(long)]
    frames: Option<usize>,
    /// Only the first N questions (in file order); only they are scored.
    #[arg(long)]
    limit: Option<usize>,
    /// Longest answer, in tokens.
    #[arg(long, default_value_t = 16)]
    max_new_tokens: usize,
}

// `run`'s arguments (the subcommand's help is the variant's doc comment).
#[derive(clap::Args)]
struct RunArgs {
    /// Bundle directory.
    #[arg(long)]
    bundle: PathBuf,
    #[command(flatten)]
    bench: Benchmark,
    /// Predictions file, read first to resume (default: loc3r-<task>-predictions.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the run and its scores as JSON.
    #[arg(long)]
    json: bool,
}

fn run_command(a: RunArgs) -> Result<()> {
    let q = &a.bench;
    check_frames_and_scenes(q.frames, &q.scenes)?;
    let (truth, task) = read_benchmark(q.task, &q.annotations, q.questions.as_deref(), q.limit)?;
    let out = a.out.unwrap_or_else(|| PathBuf::from(format!("loc3r-{}-predictions.json", q.task.name())));
    check_out_parent("--out", &out)?;
    let report = ask_bundle(&a.bundle, task, &truth.questions(), &q.scenes, q.frames, q.max_new_tokens, &out, "")?;
    let scored = match &truth {
        Truth::Sqa3d(items) => score_sqa3d(items, &out, task == RunTask::Sqa3dLoc)?,
        Truth::ScanQa(items) => score_scanqa(items, &out, None, None)?,
        Truth::VsiBench { docs, .. } => {
            let r = score_vsibench_files(docs, &read_vsibench_predictions(&out)?, &out)?;
            Scored { table: vsibench_table(&r), json: serde_json::to_value(&r)? }
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "run": report, "predictions": out, "scores": scored.json }))?);
    } else {
        eprintln!("{}", run_summary(&report, &out));
        print!("{}", scored.table);
    }
    Ok(())
}

// `compare`'s arguments (the subcommand's help is the variant's doc comment).
#[derive(clap::Args)]
struct CompareArgs {
    /// Bundle A, the reference (e.g. the fp32 export).
    #[arg(long)]
    a: PathBuf,
    /// Bundle B, the one under test (e.g. the fp16 export).
    #[arg(long)]
    b: PathBuf,
    #[command(flatten)]
    bench: Benchmark,
    /// ScanQA only: the scoring protocol of the metrics (default video3dllm).
    #[arg(long, value_parser = parse_protocol)]
    protocol: Option<Protocol>,
    /// Gates, comma-separated or repeated. Benchmark metrics bound |B − A| in their
    /// percentage points (×100 for ScanQA's): SQA3D acc@0.5m, acc@1.0m, acc@15deg, acc@30deg,
    /// em, em_r; ScanQA em, em_r (leo_ptb), bleu1..bleu4, rouge_l, cider, meteor. Pose keys
    /// (SQA3D) bound the per-question delta between A and B: pose_m (largest, metres),
    /// pose_m_mean, pose_m_median, yaw_deg (largest, degrees), yaw_deg_mean, yaw_deg_median.
    /// agreement is a minimum in [0, 1]. E.g. acc@0.5m=1.0,em=2.0,pose_m=0.05,yaw_deg=2,agreement=0.95
    #[arg(long = "max-delta", value_name = "METRIC=VALUE", value_delimiter = ',', value_parser = parse_gate)]
    gates: Vec<Gate>,
    /// Directory of the predictions (a-predictions.json, b-predictions.json, in `run`'s
    /// format) and of bundles.json, which refuses reuse by other bundles (default:
    /// loc3r-compare-<task>; created if missing).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Also write the report as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the report as JSON instead of the table.
    #[arg(long)]
    json: bool,
}

/// A bundle's identity (its files' sha256) and default frame count, read from its manifest
/// before any model is loaded.
fn bundle_identity(flag: &str, bundle: &Path) -> Result<(BundleIdentity, usize)> {
    let manifest = Manifest::read(bundle)
        .map_err(|e| InputError(format!("{flag} {}: not a readable bundle ({e}); give a directory written by `loc3r-export export`", bundle.display())))?;
    let files = manifest.files.iter().map(|(name, f)| (name.clone(), f.sha256.clone())).collect();
    Ok((BundleIdentity { bundle: bundle.to_path_buf(), files }, manifest.runtime.frames))
}

fn compare_command(c: CompareArgs) -> Result<()> {
    let q = &c.bench;
    check_frames_and_scenes(q.frames, &q.scenes)?;
    let family = match q.task {
        RunTaskArg::Scanqa => Family::ScanQa(c.protocol.unwrap_or(Protocol::Video3dllm)),
        RunTaskArg::Sqa3d | RunTaskArg::Sqa3dLoc | RunTaskArg::Vsibench if c.protocol.is_some() => {
            return Err(InputError("--protocol applies to --task scanqa only".into()).into())
        }
        RunTaskArg::Sqa3d | RunTaskArg::Sqa3dLoc => Family::Sqa3d,
        RunTaskArg::Vsibench => Family::VsiBench,
    };
    check_gate_keys(&c.gates, family, q.task.name()).map_err(InputError)?;
    let meteor_jar = meteor::jar_from_env();
    if meteor_jar.is_none() && c.gates.iter().any(|g| g.key == "meteor") {
        return Err(InputError("--max-delta meteor: METEOR needs Java and meteor-1.5.jar; set LOC3R_METEOR_JAR (docs/evaluation.md)".into()).into());
    }
    // Both bundles are checked before either is run.
    let (id_a, frames_a) = bundle_identity("--a", &c.a)?;
    let (id_b, _) = bundle_identity("--b", &c.b)?;
    let frames = q.frames.unwrap_or(frames_a);
    let (truth, task) = read_benchmark(q.task, &q.annotations, q.questions.as_deref(), q.limit)?;
    if let Truth::ScanQa(items) = &truth {
        // Answers are needed to score; a test split fails here rather than after both runs.
        join(items, Vec::new(), &q.annotations).map_err(input)?;
    }
    if let Some(out) = &c.out {
        check_out_parent("--out", out)?;
    }
    let out_dir = c.out_dir.unwrap_or_else(|| PathBuf::from(format!("loc3r-compare-{}", q.task.name())));
    std::fs::create_dir_all(&out_dir).map_err(|e| InputError(format!("--out-dir {}: cannot create it ({e})", out_dir.display())))?;
    Provenance { frames, max_new_tokens: q.max_new_tokens, a: id_a, b: id_b }.claim(&out_dir)?;

    let questions = truth.questions();
    let mut sides = Vec::with_capacity(2);
    for (label, bundle, file) in [("A", &c.a, PREDICTIONS_A), ("B", &c.b, PREDICTIONS_B)] {
        let predictions = out_dir.join(file);
        let run = ask_bundle(bundle, task, &questions, &q.scenes, Some(frames), q.max_new_tokens, &predictions, &format!("{label}: "))?;
        eprintln!("{label}: {}", run_summary(&run, &predictions));
        let scored = score_side(&truth, family, meteor_jar.as_deref(), &predictions)?;
        sides.push((SideReport { bundle: bundle.clone(), predictions, run }, scored));
    }
    let (b, b_scored) = sides.pop().expect("two sides");
    let (a, a_scored) = sides.pop().expect("two sides");
    let ids: Vec<String> = questions.iter().map(|q| q.question_id.clone()).collect();
    let comparison = compare(family, &ids, &a_scored, &b_scored);
    let gates = check_gates(&comparison, &c.gates);
    let mut notes = a_scored.notes;
    notes.extend(b_scored.notes.into_iter().filter(|n| !notes.contains(n)).collect::<Vec<_>>());
    let report = CompareReport {
        task: q.task.name(),
        protocol: match family {
            Family::ScanQa(p) => Some(p.name()),
            Family::Sqa3d | Family::VsiBench => None,
        },
        questions: questions.len(),
        frames,
        a,
        b,
        metrics: comparison.metrics,
        pose: comparison.pose,
        answers: comparison.answers,
        pass: gates.iter().all(|g| g.pass),
        gates,
        notes,
        per_question: comparison.per_question,
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &c.out {
        std::fs::write(path, format!("{json}\n")).with_context(|| format!("writing {}", path.display()))?;
    }
    if c.json {
        println!("{json}");
    } else {
        print!("{}", loc3r_eval::compare::table(&report));
    }
    let failed: Vec<String> = report.gates.iter().filter(|g| !g.pass).map(|g| g.message.clone()).collect();
    if !failed.is_empty() {
        return Err(GatesExceeded { failed, total: report.gates.len() }.into());
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Score { task, pred, gt, questions, protocol, out, json } => print_scored(&score(task, &pred, &gt, questions.as_deref(), protocol, out)?, json),
        Command::Run(args) => run_command(args),
        Command::Compare(args) => compare_command(args),
        Command::Synth { bundle, questions, train_questions, frames, limit, show: show_n, no_baselines, max_new_tokens, seed, out, json } => {
            if frames == Some(0) {
                return Err(InputError("--frames must be at least 1".into()).into());
            }
            let mut items = read_synth_questions(&questions).map_err(|e| InputError(e.to_string()))?;
            if let Some(n) = limit {
                items.truncate(n);
            }
            if items.is_empty() {
                return Err(InputError(format!("{}: no questions", questions.display())).into());
            }
            let prior = match &train_questions {
                Some(path) => {
                    let train = read_synth_questions(path).map_err(|e| InputError(e.to_string()))?;
                    Some(TrainingPrior::from_questions(&train).ok_or_else(|| InputError(format!("{}: no question with a pose", path.display())))?)
                }
                None => None,
            };
            let model = loc3r::Loc3r::open(&bundle, &loc3r::SessionOptions::default()).with_context(|| format!("opening {}", bundle.display()))?;
            let opts = SynthEvalOptions { frames, max_new_tokens, seed, baselines: !no_baselines };
            let bar = indicatif::ProgressBar::new(items.len() as u64).with_style(
                indicatif::ProgressStyle::with_template("asking [{bar:30}] {pos}/{len} questions ({elapsed}, eta {eta})")
                    .expect("template")
                    .progress_chars("=> "),
            );
            if json || show_n > 0 {
                bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            }
            let mut lines = String::new();
            let report = evaluate(&model, &questions, &items, prior.as_ref(), &opts, |done, _, r| {
                bar.set_position(done as u64);
                if done <= show_n {
                    show(r);
                }
                lines.push_str(&serde_json::to_string(r).expect("json"));
                lines.push('\n');
            })?;
            bar.finish_and_clear();
            if let Some(path) = out {
                std::fs::write(&path, lines).with_context(|| format!("writing {}", path.display()))?;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", table(&report));
            }
            Ok(())
        }
    }
}
