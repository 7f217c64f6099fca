//! The SQA3D files of `loc3r-eval score --task sqa3d|sqa3d-loc` and `loc3r-eval run`: the
//! release's questions and annotations files joined on `question_id`, and a prediction file,
//! scored with [`crate::metrics::sqa3d_em`] (answers) and [`crate::metrics::localization`]
//! (poses) (docs/evaluation.md, "Scoring and running the benchmarks").
//!
//! Predictions are a JSON array of `{"question_id", "answer"}` (task `sqa3d`) or
//! `{"question_id", "position": [x, y, z], "rotation": [x, y, z, w]}` (task `sqa3d-loc`, in the
//! SQA3D annotation frame: metres relative to the mesh's bounding-box centre, a quaternion about
//! z); one record may carry both, as `loc3r-eval run` writes them. Every ground-truth question is
//! scored: one without a prediction counts as wrong and is reported. A prediction for an unknown
//! question, two predictions for one question, or a prediction without the task's field is an
//! error naming the id.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use loc3r_train::data::annotations::{read_sqa3d_files, Sqa3dItem, Sqa3dSplit};
use serde::Serialize;

use crate::input_files::{parse_json, read_utf8, InputError, PredictionRecord};
use crate::metrics::localization::{score_localization, LocalizationScores, Pose2, SampleErrors};
use crate::metrics::sqa3d_em::{match_answer, score_em, EmScores, MatchVariant};

const ANNOTATIONS_PREFIX: &str = "v1_balanced_sqa_annotations_";
const QUESTIONS_PREFIX: &str = "v1_balanced_questions_";
const FILE_SUFFIX: &str = "_scannetv2.json";

const PREDICTIONS_EXPECTED: &str = "a JSON array of {\"question_id\": ..., \"answer\": ...} (task sqa3d) or {\"question_id\": ..., \"position\": [x, y, z], \
     \"rotation\": [x, y, z, w]} (task sqa3d-loc); NaN and Infinity are not JSON: leave a question without a pose out instead";

/// The questions and annotations files of one SQA3D split. `gt` is the annotations file
/// (`v1_balanced_sqa_annotations_<split>_scannetv2.json`) or a directory holding exactly one;
/// the questions file is `questions` when given, else the annotations file's sibling
/// `v1_balanced_questions_<split>_scannetv2.json`.
pub fn locate_sqa3d(gt: &Path, questions: Option<&Path>) -> Result<(PathBuf, PathBuf), InputError> {
    let annotations = if gt.is_dir() { single_annotations_file(gt)? } else { gt.to_path_buf() };
    let questions = match questions {
        Some(q) => q.to_path_buf(),
        None => {
            let name = annotations.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let Some(rest) = name.strip_prefix(ANNOTATIONS_PREFIX) else {
                return Err(InputError::Files(format!(
                    "{}: not named {ANNOTATIONS_PREFIX}<split>{FILE_SUFFIX}, so its questions file cannot be found; give it with --questions",
                    annotations.display()
                )));
            };
            annotations.with_file_name(format!("{QUESTIONS_PREFIX}{rest}"))
        }
    };
    Ok((questions, annotations))
}

fn single_annotations_file(dir: &Path) -> Result<PathBuf, InputError> {
    let entries = std::fs::read_dir(dir).map_err(|source| InputError::Io { path: dir.to_path_buf(), source })?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(ANNOTATIONS_PREFIX) && n.ends_with(FILE_SUFFIX)))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(InputError::Files(format!("{}: no {ANNOTATIONS_PREFIX}<split>{FILE_SUFFIX} in it; give the annotations file itself", dir.display()))),
        _ => Err(InputError::Files(format!("{}: several SQA3D annotation files ({}); give the one to use", dir.display(), names(&found)))),
    }
}

fn names(paths: &[PathBuf]) -> String {
    paths.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect::<Vec<_>>().join(", ")
}

/// The joined split, checked: at least one question, no id twice, every annotated pose valid.
pub fn read_sqa3d_ground_truth(questions: &Path, annotations: &Path) -> Result<Sqa3dSplit, InputError> {
    let split = read_sqa3d_files(questions, annotations)?;
    if split.items.is_empty() {
        return Err(InputError::NoQuestions);
    }
    let mut ids = HashSet::new();
    for item in &split.items {
        if !ids.insert(item.question_id.as_str()) {
            return Err(InputError::DuplicateQuestion { id: item.question_id.clone() });
        }
        ground_truth_pose(item)?;
    }
    Ok(split)
}

fn ground_truth_pose(item: &Sqa3dItem) -> Result<Pose2, InputError> {
    Pose2::from_sqa3d(item.position, item.rotation_xyzw).map_err(|e| InputError::BadGroundTruth { id: item.question_id.clone(), message: e.to_string() })
}

/// Reads a prediction file; duplicate ids are refused here.
pub fn read_sqa3d_predictions(path: &Path) -> Result<Vec<PredictionRecord>, InputError> {
    let predictions: Vec<PredictionRecord> = parse_json(&read_utf8(path)?, path, "SQA3D prediction file", PREDICTIONS_EXPECTED)?;
    let mut seen = HashSet::new();
    for p in &predictions {
        if !seen.insert(p.question_id.text()) {
            return Err(InputError::DuplicatePrediction { path: path.to_path_buf(), id: p.question_id.text() });
        }
    }
    Ok(predictions)
}

/// The predictions by id, refusing ids the ground truth does not have.
fn by_id<'a>(items: &[Sqa3dItem], predictions: &'a [PredictionRecord], path: &Path) -> Result<HashMap<String, &'a PredictionRecord>, InputError> {
    let ids: HashSet<&str> = items.iter().map(|i| i.question_id.as_str()).collect();
    let mut out = HashMap::with_capacity(predictions.len());
    for p in predictions {
        let id = p.question_id.text();
        if !ids.contains(id.as_str()) {
            return Err(InputError::UnknownQuestion { path: path.to_path_buf(), id });
        }
        out.insert(id, p);
    }
    Ok(out)
}

/// Answer scores of `loc3r-eval score --task sqa3d`.
#[derive(Debug, Clone, Serialize)]
pub struct Sqa3dAnswerReport {
    pub task: &'static str,
    pub questions: usize,
    pub missing_predictions: usize,
    #[serde(flatten)]
    pub scores: EmScores,
}

/// EM and EM-R (every ground-truth answer counts, [`MatchVariant::ExactFirst`]); a question
/// without a prediction is wrong for both.
pub fn score_sqa3d_answers(items: &[Sqa3dItem], predictions: &[PredictionRecord], path: &Path) -> Result<Sqa3dAnswerReport, InputError> {
    let predicted = by_id(items, predictions, path)?;
    let mut matches = Vec::with_capacity(items.len());
    let mut missing = 0;
    for item in items {
        match predicted.get(&item.question_id) {
            None => {
                missing += 1;
                matches.push((false, false));
            }
            Some(p) => {
                let answer =
                    p.answer.as_deref().ok_or_else(|| InputError::MissingField { path: path.to_path_buf(), id: item.question_id.clone(), field: "answer" })?;
                let truths: Vec<&str> = item.answers.iter().map(String::as_str).collect();
                matches.push(match_answer(answer, &truths, MatchVariant::ExactFirst));
            }
        }
    }
    Ok(Sqa3dAnswerReport { task: "sqa3d", questions: items.len(), missing_predictions: missing, scores: score_em(&matches) })
}

/// Localisation scores of `loc3r-eval score --task sqa3d-loc`.
#[derive(Debug, Clone, Serialize)]
pub struct Sqa3dLocalizationReport {
    pub task: &'static str,
    pub questions: usize,
    pub missing_predictions: usize,
    #[serde(flatten)]
    pub scores: LocalizationScores,
}

/// Acc@0.5m, Acc@1.0m, Acc@15°, Acc@30° of the predicted poses; a question without a
/// prediction is a miss at every threshold.
pub fn score_sqa3d_localization(items: &[Sqa3dItem], predictions: &[PredictionRecord], path: &Path) -> Result<Sqa3dLocalizationReport, InputError> {
    let predicted = by_id(items, predictions, path)?;
    let mut samples = Vec::with_capacity(items.len());
    for item in items {
        let truth = ground_truth_pose(item)?;
        let Some(p) = predicted.get(&item.question_id) else {
            samples.push(None);
            continue;
        };
        let missing = |field| InputError::MissingField { path: path.to_path_buf(), id: item.question_id.clone(), field };
        let position = p.position.ok_or_else(|| missing("position"))?;
        let rotation = p.rotation.ok_or_else(|| missing("rotation"))?;
        let pose = Pose2::from_sqa3d(position, rotation).map_err(|e| InputError::BadPose {
            path: path.to_path_buf(),
            id: item.question_id.clone(),
            message: e.to_string(),
        })?;
        samples.push(SampleErrors::of(&truth, &[pose]));
    }
    let scores = score_localization(&samples);
    Ok(Sqa3dLocalizationReport { task: "sqa3d-loc", questions: items.len(), missing_predictions: scores.missing, scores })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, answer: &str, position: [f64; 3], rotation_xyzw: [f64; 4]) -> Sqa3dItem {
        Sqa3dItem {
            question_id: id.into(),
            scene_id: "scene0000_00".into(),
            situation: "I am sitting on the bed.".into(),
            alternative_situations: vec![],
            question: "What is in front of me?".into(),
            answers: vec![answer.into()],
            position,
            rotation_xyzw,
        }
    }

    fn preds(text: &str) -> Vec<PredictionRecord> {
        serde_json::from_str(text).unwrap()
    }

    fn p() -> &'static Path {
        Path::new("pred.json")
    }

    #[test]
    fn answers_are_normalised_and_missing_ones_counted() {
        let items = [
            item("1", "two", [0.0; 3], [0.0, 0.0, 0.0, 1.0]),
            item("2", "table", [0.0; 3], [0.0, 0.0, 0.0, 1.0]),
            item("3", "lamp", [0.0; 3], [0.0, 0.0, 0.0, 1.0]),
        ];
        let r = score_sqa3d_answers(&items, &preds(r#"[{"question_id": 1, "answer": "2"}, {"question_id": "2", "answer": "the table top"}]"#), p()).unwrap();
        assert_eq!((r.questions, r.missing_predictions), (3, 1));
        assert!((r.scores.em - 100.0 / 3.0).abs() < 1e-9 && (r.scores.em_r - 200.0 / 3.0).abs() < 1e-9, "{r:?}");
        let e = score_sqa3d_answers(&items, &preds(r#"[{"question_id": 9, "answer": "x"}]"#), p()).unwrap_err();
        assert!(matches!(&e, InputError::UnknownQuestion { id, .. } if id == "9"), "{e}");
        let e = score_sqa3d_answers(&items, &preds(r#"[{"question_id": 1, "position": [0, 0, 0]}]"#), p()).unwrap_err();
        assert!(e.to_string().contains("`1`") && e.to_string().contains("`answer`"), "{e}");
    }

    #[test]
    fn poses_are_scored_in_the_annotation_frame() {
        let (s, c) = (50f64.to_radians() / 2.0).sin_cos();
        let items = [item("1", "a", [1.0, 2.0, 0.0], [0.0, 0.0, s, c]), item("2", "a", [0.0; 3], [0.0, 0.0, 0.0, 1.0])];
        // 0.3 m and 10° off for question 1; question 2 has no prediction.
        let (s2, c2) = (60f64.to_radians() / 2.0).sin_cos();
        let text = format!(r#"[{{"question_id": 1, "position": [1.3, 2.0, 5.0], "rotation": [0, 0, {s2}, {c2}]}}]"#);
        let r = score_sqa3d_localization(&items, &preds(&text), p()).unwrap();
        assert_eq!((r.questions, r.missing_predictions), (2, 1));
        assert_eq!((r.scores.acc_0_5m, r.scores.acc_15deg), (50.0, 50.0));
        assert!((r.scores.mean_position_error_m.unwrap() - 0.3).abs() < 1e-9 && (r.scores.mean_angle_error_deg.unwrap() - 10.0).abs() < 1e-9);
        let e = score_sqa3d_localization(&items, &preds(r#"[{"question_id": 1, "position": [0, 0, 0], "rotation": [0.5, 0, 0, 1]}]"#), p()).unwrap_err();
        assert!(matches!(&e, InputError::BadPose { id, .. } if id == "1"), "{e}");
        let e = score_sqa3d_localization(&items, &preds(r#"[{"question_id": 2, "answer": "a"}]"#), p()).unwrap_err();
        assert!(e.to_string().contains("`position`"), "{e}");
    }

    #[test]
    fn the_questions_file_is_found_next_to_the_annotations() {
        let dir = tempfile::tempdir().unwrap();
        let ann = dir.path().join("v1_balanced_sqa_annotations_val_scannetv2.json");
        std::fs::write(&ann, "{}").unwrap();
        let (q, a) = locate_sqa3d(dir.path(), None).unwrap();
        assert_eq!((q, a.clone()), (dir.path().join("v1_balanced_questions_val_scannetv2.json"), ann.clone()));
        assert_eq!(locate_sqa3d(&ann, Some(Path::new("q.json"))).unwrap().0, PathBuf::from("q.json"));
        let e = locate_sqa3d(Path::new("gt.json"), None).unwrap_err();
        assert!(e.to_string().contains("--questions"), "{e}");
        std::fs::write(dir.path().join("v1_balanced_sqa_annotations_test_scannetv2.json"), "{}").unwrap();
        let e = locate_sqa3d(dir.path(), None).unwrap_err();
        assert!(e.to_string().contains("several"), "{e}");
    }
}
