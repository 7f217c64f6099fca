//! `loc3r-eval run`: asks a bundle every question of an official benchmark file, observing each
//! scene's video once, and writes the predictions in the format `loc3r-eval score` reads
//! (docs/evaluation.md, "Scoring and running the benchmarks").
//!
//! Scenes are `<scenes>/<scene_id>/` in the ScanNet export layout with `video.mp4` (frame i of
//! the video is `pose/i.txt`); VSI-Bench's are its release's videos, `<scenes>/<dataset>/
//! <scene_name>.mp4`. A scene that cannot be used (no directory or video, an undecodable
//! video, for SQA3D a missing mesh or an invalid pose at the first sampled frame) is skipped and
//! reported with its reason: its questions get no prediction, so they score as misses, and a
//! later run retries them. The run fails only when every scene with pending questions is
//! skipped (almost always a wrong `--scenes`).
//!
//! Resuming: the predictions file is rewritten atomically after every scene, and the questions
//! it already answers are not asked again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use loc3r::stages::video::{load_frames, FrameSpec, Frames};
use loc3r::{GenerationOptions, Loc3r};
use loc3r_bundle::bev::{BevFrame, Vec3};
use loc3r_train::data::annotations::{ScanQaItem, Sqa3dItem};
use loc3r_train::data::scannet::ScanNetScene;
use loc3r_train::data::DataError;
use serde::Serialize;

use crate::input_files::{parse_json, read_utf8, write_atomically, InputError, PredictionRecord, QuestionId};
use crate::metrics::localization::sqa3d_pose_from_bev;
use crate::vsibench_input::VsiDoc;

/// What a run predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunTask {
    /// SQA3D: answer and pose (in the SQA3D annotation frame), scored as localisation.
    Sqa3dLoc,
    /// SQA3D: answer and pose, scored as answers (EM, EM-R).
    Sqa3d,
    /// ScanQA: answer only, asked with the bundle's default situation ("I am standing in the room").
    ScanQa,
    /// VSI-Bench: answer only, the official task's prompt asked with the default situation.
    VsiBench,
}

impl RunTask {
    fn needs_pose(self) -> bool {
        matches!(self, RunTask::Sqa3dLoc | RunTask::Sqa3d)
    }
}

/// One question to ask.
#[derive(Debug, Clone, PartialEq)]
pub struct RunQuestion {
    pub question_id: String,
    pub scene_id: String,
    /// `None`: the bundle's default situation.
    pub situation: Option<String>,
    pub question: String,
}

/// The ground truth a run asks and is scored against: SQA3D items (questions with their
/// situations, answers and poses), ScanQA items, or VSI-Bench documents with the questions
/// made of them ([`Truth::vsibench`]).
#[derive(Debug, Clone)]
pub enum Truth {
    Sqa3d(Vec<Sqa3dItem>),
    ScanQa(Vec<ScanQaItem>),
    VsiBench { docs: Vec<VsiDoc>, questions: Vec<RunQuestion> },
}

impl Truth {
    /// VSI-Bench documents, each of which must name its video and have its question (and options).
    pub fn vsibench(docs: Vec<VsiDoc>) -> Result<Truth, InputError> {
        let questions = docs
            .iter()
            .map(|d| Ok(RunQuestion { question_id: d.id.text(), scene_id: d.scene()?, situation: None, question: d.prompt()? }))
            .collect::<Result<_, InputError>>()?;
        Ok(Truth::VsiBench { docs, questions })
    }

    pub fn len(&self) -> usize {
        match self {
            Truth::Sqa3d(items) => items.len(),
            Truth::ScanQa(items) => items.len(),
            Truth::VsiBench { docs, .. } => docs.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Only the first `n` questions (in file order).
    pub fn truncate(&mut self, n: usize) {
        match self {
            Truth::Sqa3d(items) => items.truncate(n),
            Truth::ScanQa(items) => items.truncate(n),
            Truth::VsiBench { docs, questions } => {
                docs.truncate(n);
                questions.truncate(n);
            }
        }
    }

    /// The questions to ask, in file order. SQA3D questions are asked with their situation;
    /// ScanQA and VSI-Bench ones with none (the bundle's default, "I am standing in the room").
    pub fn questions(&self) -> Vec<RunQuestion> {
        match self {
            Truth::Sqa3d(items) => items
                .iter()
                .map(|i| RunQuestion {
                    question_id: i.question_id.clone(),
                    scene_id: i.scene_id.clone(),
                    situation: Some(i.situation.clone()),
                    question: i.question.clone(),
                })
                .collect(),
            Truth::ScanQa(items) => items
                .iter()
                .map(|i| RunQuestion { question_id: i.question_id.clone(), scene_id: i.scene_id.clone(), situation: None, question: i.question.clone() })
                .collect(),
            Truth::VsiBench { questions, .. } => questions.clone(),
        }
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Frames sampled per video.
    pub frames: usize,
    pub max_new_tokens: usize,
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("{}: an earlier run's predictions for `{id}`, which is not a question of this run; move the file away or pass another --out", path.display())]
    ForeignPrediction { path: PathBuf, id: String },
    #[error("every scene was skipped ({count}), e.g. {scene}: {reason}; check --scenes")]
    AllSkipped { count: usize, scene: String, reason: String },
    #[error("{}: cannot write the predictions ({source})", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] loc3r::Error),
}

/// A scene that was not run, and why.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedScene {
    pub scene_id: String,
    pub questions: usize,
    pub reason: String,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub questions: usize,
    /// Answered by an earlier run (found in the predictions file).
    pub already_answered: usize,
    /// Answered by this run.
    pub answered: usize,
    /// Scenes whose video was observed by this run.
    pub scenes_observed: usize,
    pub skipped_scenes: Vec<SkippedScene>,
}

/// What the caller hears while a run goes on.
pub enum Progress<'a> {
    /// Questions still to ask, before the first scene.
    Pending(usize),
    Answered,
    Skipped(&'a SkippedScene),
}

/// The frame a BEV prediction is taken out of: the BEV frame of the first sampled camera and
/// the scene mesh's bounding-box centre.
#[derive(Debug, Clone)]
pub struct SqaAnchor {
    pub frame: BevFrame,
    pub bs_center: Vec3,
}

impl SqaAnchor {
    /// The anchor of `scene` when frame `first` is the first sampled frame.
    pub fn open(scene: &ScanNetScene, first: usize) -> Result<SqaAnchor, DataError> {
        Ok(SqaAnchor { frame: scene.bev_frame(first)?, bs_center: scene.bs_center()? })
    }

    /// A BEV pose (metres; yaw in radians, counter-clockwise from BEV +x) as an SQA3D
    /// `(position, rotation)`: position relative to the mesh centre (z = 0) and the quaternion
    /// (x, y, z, w) of the yaw ψ about z.
    pub fn to_sqa3d(&self, xy: [f64; 2], yaw: f64) -> ([f64; 3], [f64; 4]) {
        let p = sqa3d_pose_from_bev(xy, yaw, &self.frame, self.bs_center);
        let (s, c) = (p.yaw / 2.0).sin_cos();
        ([p.x, p.y, 0.0], [0.0, 0.0, s, c])
    }
}

/// The predictions of an earlier run, by id (none when the file does not exist yet).
pub fn read_previous(path: &Path, questions: &[RunQuestion]) -> Result<HashMap<String, PredictionRecord>, RunError> {
    if !path.exists() {
        return Ok(HashMap::new());
    }
    let records: Vec<PredictionRecord> =
        parse_json(&read_utf8(path)?, path, "predictions file of an earlier run", "a JSON array of predictions, as `loc3r-eval run` writes them")?;
    let ids: HashSet<&str> = questions.iter().map(|q| q.question_id.as_str()).collect();
    let mut out = HashMap::with_capacity(records.len());
    for r in records {
        let id = r.question_id.text();
        if !ids.contains(id.as_str()) {
            return Err(RunError::ForeignPrediction { path: path.to_path_buf(), id });
        }
        if out.insert(id.clone(), r).is_some() {
            return Err(InputError::DuplicatePrediction { path: path.to_path_buf(), id }.into());
        }
    }
    Ok(out)
}

/// The predictions in question order, as a JSON array, one record per line.
fn render(questions: &[RunQuestion], done: &HashMap<String, PredictionRecord>) -> String {
    let lines: Vec<String> =
        questions.iter().filter_map(|q| done.get(&q.question_id)).map(|r| serde_json::to_string(r).expect("a prediction record serialises")).collect();
    if lines.is_empty() {
        "[]\n".to_string()
    } else {
        format!("[\n{}\n]\n", lines.join(",\n"))
    }
}

/// A scene ready to be asked: its frames and, for SQA3D, its anchor.
struct ReadyScene {
    frames: Frames,
    anchor: Option<SqaAnchor>,
}

/// Loads a scene's video (and anchor), or says why it has to be skipped.
fn prepare_scene(scenes_dir: &Path, scene_id: &str, task: RunTask, opts: &RunOptions) -> Result<ReadyScene, String> {
    let dir = scenes_dir.join(scene_id);
    let video = if task == RunTask::VsiBench {
        scenes_dir.join(format!("{scene_id}.mp4"))
    } else if dir.is_dir() {
        dir.join("video.mp4")
    } else {
        return Err(format!("no scene directory {}", dir.display()));
    };
    if !video.is_file() {
        return Err(format!("no video {}", video.display()));
    }
    let frames = load_frames(&video, &FrameSpec::new(opts.frames)).map_err(|e| format!("{}: {e}", video.display()))?;
    let first = frames.frames.first().map(|f| f.index).ok_or_else(|| format!("{}: no frames", video.display()))?;
    let anchor = if task.needs_pose() {
        let scene = ScanNetScene::open(&dir).map_err(|e| e.to_string())?;
        if frames.total_frames > scene.frame_count() {
            return Err(format!(
                "{} has {} frames but the scene has {} poses; the video must be the scene's frames",
                video.display(),
                frames.total_frames,
                scene.frame_count()
            ));
        }
        Some(SqaAnchor::open(&scene, first).map_err(|e| e.to_string())?)
    } else {
        None
    };
    Ok(ReadyScene { frames, anchor })
}

/// Asks every question of `questions` not yet in `out`, scene by scene, rewriting `out` after
/// each scene.
pub fn run_benchmark(
    model: &Loc3r,
    task: RunTask,
    questions: &[RunQuestion],
    scenes_dir: &Path,
    out: &Path,
    opts: &RunOptions,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<RunReport, RunError> {
    let mut done = read_previous(out, questions)?;
    let already_answered = done.len();
    let mut by_scene: BTreeMap<&str, Vec<&RunQuestion>> = BTreeMap::new();
    for q in questions.iter().filter(|q| !done.contains_key(&q.question_id)) {
        by_scene.entry(q.scene_id.as_str()).or_default().push(q);
    }
    progress(Progress::Pending(by_scene.values().map(Vec::len).sum()));
    let gen = GenerationOptions { max_new_tokens: opts.max_new_tokens, ..GenerationOptions::default() };
    let (mut answered, mut scenes_observed, mut skipped) = (0, 0, Vec::new());
    for (scene_id, items) in &by_scene {
        let ready = match prepare_scene(scenes_dir, scene_id, task, opts) {
            Ok(r) => r,
            Err(reason) => {
                let s = SkippedScene { scene_id: scene_id.to_string(), questions: items.len(), reason };
                progress(Progress::Skipped(&s));
                skipped.push(s);
                continue;
            }
        };
        let scene = model.observe_frames(&ready.frames)?;
        scenes_observed += 1;
        for q in items {
            let a = scene.ask(q.situation.as_deref(), &q.question, &gen)?;
            let pose =
                ready.anchor.as_ref().map(|anchor| anchor.to_sqa3d([f64::from(a.pose.position.x), f64::from(a.pose.position.y)], a.pose.yaw_deg.to_radians()));
            let record = PredictionRecord {
                question_id: QuestionId::from_text(&q.question_id),
                answer: Some(a.answer.trim().to_string()),
                position: pose.map(|p| p.0),
                rotation: pose.map(|p| p.1),
            };
            done.insert(q.question_id.clone(), record);
            answered += 1;
            progress(Progress::Answered);
        }
        write_atomically(out, &render(questions, &done)).map_err(|source| RunError::Write { path: out.to_path_buf(), source })?;
    }
    if !by_scene.is_empty() && skipped.len() == by_scene.len() {
        let first = &skipped[0];
        return Err(RunError::AllSkipped { count: skipped.len(), scene: first.scene_id.clone(), reason: first.reason.clone() });
    }
    if !out.exists() {
        write_atomically(out, &render(questions, &done)).map_err(|source| RunError::Write { path: out.to_path_buf(), source })?;
    }
    Ok(RunReport { questions: questions.len(), already_answered, answered, scenes_observed, skipped_scenes: skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: &str, scene: &str) -> RunQuestion {
        RunQuestion { question_id: id.into(), scene_id: scene.into(), situation: None, question: "?".into() }
    }

    #[test]
    fn previous_predictions_are_kept_and_strangers_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pred.json");
        let questions = [q("1", "a"), q("2", "b")];
        assert!(read_previous(&out, &questions).unwrap().is_empty());
        let mut done = HashMap::new();
        done.insert("2".to_string(), PredictionRecord { question_id: QuestionId::from_text("2"), answer: Some("x".into()), position: None, rotation: None });
        write_atomically(&out, &render(&questions, &done)).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "[\n{\"question_id\":2,\"answer\":\"x\"}\n]\n");
        assert_eq!(read_previous(&out, &questions).unwrap().len(), 1);
        let e = read_previous(&out, &[q("1", "a")]).unwrap_err();
        assert!(matches!(&e, RunError::ForeignPrediction { id, .. } if id == "2"), "{e}");
        assert_eq!(render(&questions, &HashMap::new()), "[]\n");
    }
}
