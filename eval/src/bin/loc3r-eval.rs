//! `loc3r-eval`: scores a bundle with the paper's metrics.
//!
//! `synth` asks every question of a set of held-out synthetic rooms (`loc3r-synth` output) and
//! prints the SQA3D localisation accuracies and answer exact match next to the baselines.
//! `score --task scanqa` scores a prediction file against a ScanQA ground-truth file (EM, BLEU,
//! ROUGE-L, CIDEr, METEOR) under the three published protocols.
//! Exit codes: 0 success, 2 invalid input (arguments, files, bundle), 1 other failures.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use loc3r_eval::metrics::ngram::meteor;
use loc3r_eval::metrics::scanqa::{self, Protocol};
use loc3r_eval::scanqa_input::{join, read_predictions};
use loc3r_eval::synth::{evaluate, table, QuestionResult, SynthEvalError, SynthEvalOptions, TrainingPrior};
use loc3r_train::data::annotations::{read_scanqa, read_synth_questions};

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
    /// pycocoevalcap computes them, under every protocol or the one given.
    Score {
        /// The benchmark.
        #[arg(long, value_enum)]
        task: Task,
        /// Predictions: a JSON array of {"question_id", "answer_top10": [..]} (the first answer
        /// is scored) or {"question_id", "answer"}.
        #[arg(long)]
        pred: PathBuf,
        /// Ground truth, e.g. ScanQA_v1.0_val.json.
        #[arg(long)]
        gt: PathBuf,
        /// Only this protocol (default: all three, video3dllm first).
        #[arg(long, value_parser = parse_protocol)]
        protocol: Option<Protocol>,
        /// Write every question's scores as JSON lines here (one per question and protocol).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print every metric as JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Task {
    Scanqa,
}

fn parse_protocol(s: &str) -> Result<Protocol, String> {
    Protocol::from_name(s).ok_or_else(|| format!("unknown protocol `{s}`; use one of video3dllm, official, leo_ptb"))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InputError(String);

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let input = e.chain().any(|c| {
                c.downcast_ref::<InputError>().is_some()
                    || matches!(c.downcast_ref::<SynthEvalError>(), Some(SynthEvalError::Input(_)))
                    || c.downcast_ref::<loc3r::Error>().is_some_and(|e| matches!(e.fault(), loc3r::Fault::Input | loc3r::Fault::Bundle))
            });
            ExitCode::from(if input { 2 } else { 1 })
        }
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

/// `score --task scanqa`.
fn score_scanqa(pred: &std::path::Path, gt: &std::path::Path, protocol: Option<Protocol>, out: Option<PathBuf>, json: bool) -> Result<()> {
    let truth = read_scanqa(gt).map_err(|e| InputError(e.to_string()))?;
    let predictions = read_predictions(pred).map_err(|e| InputError(e.to_string()))?;
    let questions = join(&truth, predictions, pred).map_err(|e| InputError(e.to_string()))?;
    let protocols = protocol.map_or(Protocol::ALL.to_vec(), |p| vec![p]);
    let jar = meteor::jar_from_env();
    let scores =
        protocols.iter().map(|&p| scanqa::score(&questions, p, jar.as_deref()).map_err(|e| InputError(e.to_string()))).collect::<Result<Vec<_>, _>>()?;
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
    if json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "task": "scanqa", "protocols": scores }))?);
    } else {
        print!("{}", scanqa::table(&scores));
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Score { task: Task::Scanqa, pred, gt, protocol, out, json } => score_scanqa(&pred, &gt, protocol, out, json),
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
