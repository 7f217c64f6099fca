//! The files `loc3r-eval score --task scanqa` reads: a ScanQA ground-truth file
//! (`ScanQA_v1.0_<split>.json`) and a prediction file, joined into the questions
//! [`crate::metrics::scanqa::score`] scores (docs/evaluation.md, "ScanQA").
//!
//! Predictions are a JSON array of `{"question_id", "answer_top10": [..]}` (ScanQA's submission
//! format; the first answer is scored) or `{"question_id", "answer"}`. Every ground-truth
//! question is scored: one without a prediction counts as wrong and is reported. A prediction
//! for an unknown question, two predictions for one question, or a ground-truth question
//! without answers is an error that names the id.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use loc3r_train::data::annotations::ScanQaItem;
use serde::Deserialize;

use crate::metrics::scanqa::ScanQaQuestion;

/// Why the inputs cannot be scored.
#[derive(Debug, thiserror::Error)]
pub enum ScanQaInputError {
    #[error("{}: cannot read it ({source}); check that it exists and is readable", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not UTF-8 text (invalid byte at offset {offset}); write the predictions as UTF-8 JSON", path.display())]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error("{}: not a prediction file: {message}; expected a JSON array of {{\"question_id\": ..., \"answer_top10\": [...]}} or {{\"question_id\": ..., \"answer\": ...}}", path.display())]
    Json { path: PathBuf, message: String },
    #[error("{}: prediction for `{id}` has neither `answer_top10` nor `answer`", path.display())]
    NoAnswerField { path: PathBuf, id: String },
    #[error("{}: two predictions for question `{id}`; keep one per question", path.display())]
    DuplicatePrediction { path: PathBuf, id: String },
    #[error("{}: prediction for `{id}`, which is not a question of the ground-truth file; check that both files are of the same split", path.display())]
    UnknownQuestion { path: PathBuf, id: String },
    #[error("ground truth: question `{id}` appears twice")]
    DuplicateQuestion { id: String },
    #[error("ground truth: question `{id}` has no answers (test splits have none; score the val split)")]
    NoAnswers { id: String },
    #[error("ground truth: no questions")]
    NoQuestions,
}

/// One prediction: the scored (top-1) answer of a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prediction {
    pub question_id: String,
    pub answer: String,
}

#[derive(Deserialize)]
struct PredictionRecord {
    question_id: String,
    #[serde(default)]
    answer_top10: Option<Vec<String>>,
    #[serde(default)]
    answer: Option<String>,
}

/// Reads a prediction file; duplicate ids are refused here.
pub fn read_predictions(path: &Path) -> Result<Vec<Prediction>, ScanQaInputError> {
    let bytes = std::fs::read(path).map_err(|source| ScanQaInputError::Io { path: path.to_path_buf(), source })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| ScanQaInputError::NotUtf8 { path: path.to_path_buf(), offset: e.valid_up_to() })?;
    parse_predictions(text, path)
}

/// [`read_predictions`] on text already read (`path` names it in errors).
pub fn parse_predictions(text: &str, path: &Path) -> Result<Vec<Prediction>, ScanQaInputError> {
    let records: Vec<PredictionRecord> = serde_json::from_str(text).map_err(|e| ScanQaInputError::Json { path: path.to_path_buf(), message: e.to_string() })?;
    let mut seen = HashSet::new();
    let mut predictions = Vec::with_capacity(records.len());
    for r in records {
        // An empty top-10 list is an empty answer (allowed; it scores nothing).
        let answer = match (r.answer_top10, r.answer) {
            (Some(top), _) => top.into_iter().next().unwrap_or_default(),
            (None, Some(answer)) => answer,
            (None, None) => return Err(ScanQaInputError::NoAnswerField { path: path.to_path_buf(), id: r.question_id }),
        };
        if !seen.insert(r.question_id.clone()) {
            return Err(ScanQaInputError::DuplicatePrediction { path: path.to_path_buf(), id: r.question_id });
        }
        predictions.push(Prediction { question_id: r.question_id, answer });
    }
    Ok(predictions)
}

/// The ground-truth questions in file order, each with its prediction (if any).
pub fn join(ground_truth: &[ScanQaItem], predictions: Vec<Prediction>, predictions_path: &Path) -> Result<Vec<ScanQaQuestion>, ScanQaInputError> {
    if ground_truth.is_empty() {
        return Err(ScanQaInputError::NoQuestions);
    }
    let mut ids = HashSet::new();
    for item in ground_truth {
        if !ids.insert(item.question_id.as_str()) {
            return Err(ScanQaInputError::DuplicateQuestion { id: item.question_id.clone() });
        }
        if item.answers.as_ref().is_none_or(|a| a.is_empty()) {
            return Err(ScanQaInputError::NoAnswers { id: item.question_id.clone() });
        }
    }
    let mut by_id: HashMap<String, String> = HashMap::with_capacity(predictions.len());
    for p in predictions {
        if !ids.contains(p.question_id.as_str()) {
            return Err(ScanQaInputError::UnknownQuestion { path: predictions_path.to_path_buf(), id: p.question_id });
        }
        by_id.insert(p.question_id, p.answer);
    }
    Ok(ground_truth
        .iter()
        .map(|item| ScanQaQuestion {
            question_id: item.question_id.clone(),
            answers: item.answers.clone().unwrap_or_default(),
            prediction: by_id.remove(&item.question_id),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gt(id: &str, answers: Option<&[&str]>) -> ScanQaItem {
        ScanQaItem {
            question_id: id.into(),
            scene_id: "scene0000_00".into(),
            question: "What colour is the chair?".into(),
            answers: answers.map(|a| a.iter().map(|s| s.to_string()).collect()),
            object_ids: vec![],
            object_names: vec![],
        }
    }

    fn parse(text: &str) -> Result<Vec<Prediction>, ScanQaInputError> {
        parse_predictions(text, Path::new("pred.json"))
    }

    #[test]
    fn both_prediction_shapes() {
        let p = parse(r#"[{"question_id": "a", "answer_top10": ["x", "y"]}, {"question_id": "b", "answer": "z"}, {"question_id": "c", "answer_top10": []}]"#)
            .unwrap();
        let answers: Vec<(&str, &str)> = p.iter().map(|p| (p.question_id.as_str(), p.answer.as_str())).collect();
        assert_eq!(answers, [("a", "x"), ("b", "z"), ("c", "")]);
    }

    #[test]
    fn bad_predictions_name_the_id() {
        let e = parse(r#"[{"question_id": "a", "answer": "x"}, {"question_id": "a", "answer": "y"}]"#).unwrap_err();
        assert!(matches!(&e, ScanQaInputError::DuplicatePrediction { id, .. } if id == "a"), "{e}");
        let e = parse(r#"[{"question_id": "a"}]"#).unwrap_err();
        assert!(e.to_string().contains("`a`"), "{e}");
        let e = parse(r#"{"question_id": "a"}"#).unwrap_err();
        assert!(matches!(e, ScanQaInputError::Json { .. }), "{e}");
    }

    #[test]
    fn join_keeps_every_question_and_refuses_strangers() {
        let truth = [gt("q1", Some(&["red"])), gt("q2", Some(&["blue"]))];
        let joined = join(&truth, parse(r#"[{"question_id": "q2", "answer": "blue"}]"#).unwrap(), Path::new("p")).unwrap();
        assert_eq!(joined.len(), 2);
        assert_eq!(joined[0].prediction, None);
        assert_eq!(joined[1].prediction.as_deref(), Some("blue"));
        let e = join(&truth, parse(r#"[{"question_id": "q9", "answer": "x"}]"#).unwrap(), Path::new("p")).unwrap_err();
        assert!(e.to_string().contains("`q9`"), "{e}");
        let e = join(&[gt("q1", None)], vec![], Path::new("p")).unwrap_err();
        assert!(matches!(e, ScanQaInputError::NoAnswers { .. }), "{e}");
        let e = join(&[gt("q1", Some(&["a"])), gt("q1", Some(&["a"]))], vec![], Path::new("p")).unwrap_err();
        assert!(matches!(e, ScanQaInputError::DuplicateQuestion { .. }), "{e}");
        assert!(matches!(join(&[], vec![], Path::new("p")), Err(ScanQaInputError::NoQuestions)));
    }
}
