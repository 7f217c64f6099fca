//! Evaluation of a bundle on held-out synthetic rooms (`loc3r-synth` output): every question is
//! asked of the model with its room's video, and the predicted pose and answer are scored
//! against ground truth with the SQA3D protocol (Acc@0.5 m / 1.0 m / 15° / 30°, answer exact
//! match) next to three baselines:
//!
//! | method | pose | answer |
//! |---|---|---|
//! | `model` | the model on the room's video | the model |
//! | `blank video` | the model with every frame replaced by a uniform grey frame | the model |
//! | `mean training pose` | the mean BEV position (and circular-mean yaw) of the training questions | the most frequent training answer to the same question text |
//! | `random pose` | uniform on the room's floor, uniform yaw (seeded) | — |
//!
//! Poses are compared in the BEV frame the runtime reports and the generator writes (anchored at
//! the video's first frame). The BEV frame is a rigid transform of the world's horizontal plane,
//! so distances and angle differences equal those of the SQA3D protocol's world-frame comparison.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use loc3r::stages::video::{load_frames, FrameSpec, Frames};
use loc3r::{Answer, GenerationOptions, Loc3r};
use loc3r_bundle::bev::{wrap_pi, BevFrame};
use loc3r_train::data::annotations::SynthQuestion;
use loc3r_train::data::scannet::ScanNetScene;
use serde::Serialize;

use crate::metrics::localization::{score_localization, LocalizationScores, Pose2, SampleErrors};
use crate::metrics::sqa3d_em::{match_answer, score_em, EmScores, MatchVariant};

/// Why the evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SynthEvalError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Runtime(#[from] loc3r::Error),
}

/// How to run it.
#[derive(Debug, Clone)]
pub struct SynthEvalOptions {
    /// Frames sampled per video (the questions' own `frames` when `None`).
    pub frames: Option<usize>,
    pub max_new_tokens: usize,
    /// Seed of the random-pose baseline.
    pub seed: u64,
    /// Also run the three baselines.
    pub baselines: bool,
}

impl Default for SynthEvalOptions {
    fn default() -> Self {
        SynthEvalOptions { frames: None, max_new_tokens: 16, seed: 0, baselines: true }
    }
}

/// One question's outcome for the model.
#[derive(Debug, Clone, Serialize)]
pub struct QuestionResult {
    pub scene: String,
    pub situation: String,
    pub question: String,
    pub answer: String,
    pub predicted_answer: String,
    pub exact_match: bool,
    /// Ground truth and prediction in the BEV frame (metres, degrees).
    pub position: [f64; 2],
    pub yaw_deg: f64,
    pub predicted_position: [f64; 2],
    pub predicted_yaw_deg: f64,
    pub position_error_m: f64,
    pub yaw_error_deg: f64,
}

/// Scores of one method.
#[derive(Debug, Clone, Serialize)]
pub struct MethodScores {
    pub method: String,
    pub localization: LocalizationScores,
    /// `None` for methods that do not answer.
    pub answers: Option<EmScores>,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct SynthReport {
    pub questions: usize,
    pub scenes: usize,
    pub frames: usize,
    pub methods: Vec<MethodScores>,
}

/// Accumulates one method's per-question errors and matches.
#[derive(Default)]
struct Tally {
    errors: Vec<Option<SampleErrors>>,
    matches: Vec<(bool, bool)>,
}

impl Tally {
    fn pose(&mut self, gt: &Pose2, pred: &Pose2) -> Option<SampleErrors> {
        let e = SampleErrors::of(gt, std::slice::from_ref(pred));
        self.errors.push(e);
        e
    }

    /// Exact match after the SQA3D normaliser (both sides normalised).
    fn answer(&mut self, pred: &str, gt: &str) -> bool {
        let m = match_answer(pred, &[gt], MatchVariant::ExactFirst);
        self.matches.push(m);
        m.0
    }

    fn scores(&self, method: &str, answers: bool) -> MethodScores {
        MethodScores { method: method.to_string(), localization: score_localization(&self.errors), answers: answers.then(|| score_em(&self.matches)) }
    }
}

/// The training questions' prior: mean pose and most frequent answer per question text.
pub struct TrainingPrior {
    pub mean: Pose2,
    answers: HashMap<String, String>,
    most_frequent: String,
}

impl TrainingPrior {
    pub fn from_questions(questions: &[SynthQuestion]) -> Option<TrainingPrior> {
        let posed: Vec<_> = questions.iter().filter_map(|q| Some((q.position?, q.yaw_deg?))).collect();
        if posed.is_empty() {
            return None;
        }
        let n = posed.len() as f64;
        let (sx, sy) = posed.iter().fold((0.0, 0.0), |(a, b), (p, _)| (a + p.x, b + p.y));
        let (c, s) = posed.iter().fold((0.0, 0.0), |(a, b), (_, y)| (a + y.to_radians().cos(), b + y.to_radians().sin()));
        let mean = Pose2 { x: sx / n, y: sy / n, yaw: s.atan2(c) };
        let mut counts: HashMap<&str, BTreeMap<&str, usize>> = HashMap::new();
        let mut overall: BTreeMap<&str, usize> = BTreeMap::new();
        for q in questions {
            *counts.entry(q.question.as_str()).or_default().entry(q.answer.as_str()).or_default() += 1;
            *overall.entry(q.answer.as_str()).or_default() += 1;
        }
        // Ties go to the alphabetically first answer (BTreeMap order), so the prior is deterministic.
        let top = |m: &BTreeMap<&str, usize>| m.iter().fold(("", 0), |best, (a, &c)| if c > best.1 { (a, c) } else { best }).0.to_string();
        Some(TrainingPrior { mean, answers: counts.iter().map(|(q, m)| (q.to_string(), top(m))).collect(), most_frequent: top(&overall) })
    }

    pub fn answer(&self, question: &str) -> &str {
        self.answers.get(question).unwrap_or(&self.most_frequent)
    }
}

/// A small seeded generator for the random baseline (SplitMix64).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The room's floor extent `[0, W] × [0, D]` from `scene.json`.
fn room_floor(dir: &Path) -> Result<(f64, f64), SynthEvalError> {
    let path = dir.join("scene.json");
    let text = std::fs::read_to_string(&path).map_err(|e| SynthEvalError::Input(format!("{}: {e}", path.display())))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| SynthEvalError::Input(format!("{}: {e}", path.display())))?;
    let room = &json["room"];
    let get = |k: &str| {
        room[k].as_f64().ok_or_else(|| SynthEvalError::Input(format!("{}: room.{k} is missing; regenerate the room with loc3r-synth", path.display())))
    };
    Ok((get("width")?, get("depth")?))
}

/// The pose an answer reports, in radians.
fn predicted_pose(a: &Answer) -> Pose2 {
    Pose2 { x: f64::from(a.pose.position.x), y: f64::from(a.pose.position.y), yaw: wrap_pi(a.pose.yaw_deg.to_radians()) }
}

fn blank(frames: &Frames) -> Frames {
    let mut out = frames.clone();
    for f in &mut out.frames {
        f.rgb.fill(128);
    }
    out
}

/// Evaluates `questions` (read from `questions_file`, whose directory the videos are relative to).
/// `on_result` sees every model result as it is produced (for printing and progress).
pub fn evaluate(
    model: &Loc3r,
    questions_file: &Path,
    questions: &[SynthQuestion],
    prior: Option<&TrainingPrior>,
    opts: &SynthEvalOptions,
    mut on_result: impl FnMut(usize, usize, &QuestionResult),
) -> Result<SynthReport, SynthEvalError> {
    let root = questions_file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut by_scene: BTreeMap<&str, Vec<(&SynthQuestion, Pose2)>> = BTreeMap::new();
    for q in questions {
        let (Some(p), Some(yaw_deg)) = (q.position, q.yaw_deg) else {
            return Err(SynthEvalError::Input(format!("{}: a question of {} has no position/yaw_deg ground truth", questions_file.display(), q.scene)));
        };
        by_scene.entry(q.scene.as_str()).or_default().push((q, Pose2 { x: p.x, y: p.y, yaw: wrap_pi(yaw_deg.to_radians()) }));
    }
    let gen = GenerationOptions { max_new_tokens: opts.max_new_tokens, ..GenerationOptions::default() };
    let (mut ours, mut blind, mut mean, mut random) = (Tally::default(), Tally::default(), Tally::default(), Tally::default());
    let mut rng = Rng(opts.seed);
    let mut done = 0;
    let mut frames_used = 0;
    for (scene_id, items) in &by_scene {
        let first = items[0].0;
        let video: PathBuf = root.join(&first.video);
        let n = opts.frames.unwrap_or(match first.frames {
            loc3r_train::data::annotations::SynthFrames::Count(n) => n,
            loc3r_train::data::annotations::SynthFrames::Indices(ref v) => v.len(),
        });
        frames_used = n;
        let frames = load_frames(&video, &FrameSpec::new(n)).map_err(|e| SynthEvalError::Input(format!("{}: {e}", video.display())))?;
        let scene = model.observe_frames(&frames)?;
        // What the baselines need, once per room: the blank-video scene, the room's BEV frame and floor.
        let baseline = if opts.baselines {
            let room_dir = video.parent().map(Path::to_path_buf).unwrap_or_default();
            let scan = ScanNetScene::open(&room_dir).map_err(|e| SynthEvalError::Input(e.to_string()))?;
            let frame: BevFrame = scan.bev_frame(0).map_err(|e| SynthEvalError::Input(e.to_string()))?;
            Some((model.observe_frames(&blank(&frames))?, frame, room_floor(&room_dir)?))
        } else {
            None
        };
        for &(q, gt) in items {
            let a = scene.ask(Some(&q.situation), &q.question, &gen)?;
            let pred = predicted_pose(&a);
            let errors = ours.pose(&gt, &pred);
            let exact_match = ours.answer(&a.answer, &q.answer);
            let result = QuestionResult {
                scene: scene_id.to_string(),
                situation: q.situation.clone(),
                question: q.question.clone(),
                answer: q.answer.clone(),
                predicted_answer: a.answer.trim().to_string(),
                exact_match,
                position: [gt.x, gt.y],
                yaw_deg: gt.yaw.to_degrees(),
                predicted_position: [pred.x, pred.y],
                predicted_yaw_deg: pred.yaw.to_degrees(),
                position_error_m: errors.map_or(f64::NAN, |e| e.position_m),
                yaw_error_deg: errors.map_or(f64::NAN, |e| e.angle_deg),
            };
            if let Some((blank_scene, frame, (w, d))) = &baseline {
                let b = blank_scene.ask(Some(&q.situation), &q.question, &gen)?;
                blind.pose(&gt, &predicted_pose(&b));
                blind.answer(&b.answer, &q.answer);
                let world = [rng.uniform() * w, rng.uniform() * d, 0.0];
                let xy = frame.point_to_bev(world);
                random.pose(&gt, &Pose2 { x: xy[0], y: xy[1], yaw: wrap_pi((rng.uniform() * 2.0 - 1.0) * std::f64::consts::PI) });
                if let Some(prior) = prior {
                    mean.pose(&gt, &prior.mean);
                    mean.answer(prior.answer(&q.question), &q.answer);
                }
            }
            done += 1;
            on_result(done, questions.len(), &result);
        }
    }
    let mut methods = vec![ours.scores("model", true)];
    if opts.baselines {
        methods.push(blind.scores("blank video", true));
        if prior.is_some() {
            methods.push(mean.scores("mean training pose", true));
        }
        methods.push(random.scores("random pose", false));
    }
    Ok(SynthReport { questions: questions.len(), scenes: by_scene.len(), frames: frames_used, methods })
}

/// The report as a fixed-width table.
pub fn table(report: &SynthReport) -> String {
    let mut out = format!(
        "{} questions in {} held-out rooms, {} frames per video\n{:<20} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9}\n",
        report.questions, report.scenes, report.frames, "method", "Acc@0.5m", "Acc@1.0m", "Acc@15°", "Acc@30°", "mean err", "EM"
    );
    for m in &report.methods {
        let l = &m.localization;
        let em = m.answers.as_ref().map_or("—".to_string(), |a| format!("{:.1}", a.em));
        out.push_str(&format!(
            "{:<20} {:>9.1} {:>9.1} {:>8.1} {:>8.1} {:>8.2}m {:>9}\n",
            m.method,
            l.acc_0_5m,
            l.acc_1_0m,
            l.acc_15deg,
            l.acc_30deg,
            l.mean_position_error_m.unwrap_or(f64::NAN),
            em
        ));
    }
    out
}
