//! The files of `loc3r-eval score --task vsibench`: VSI-Bench documents (ground truth) and a
//! prediction file, joined and scored with [`crate::metrics::vsibench`] (docs/evaluation.md,
//! "Scoring and running the benchmarks").
//!
//! Ground truth: a JSON array or JSON lines of VSI-Bench documents, of which `id`,
//! `question_type` and `ground_truth` are scored; `loc3r-eval run` also reads `dataset`,
//! `scene_name`, `question` and `options` to ask them. Predictions: a JSON array of `{"id" (or
//! "question_id"), "prediction" (or "answer", as `run` writes it)}`. A question without a
//! prediction is scored as the empty answer (0) and counted.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::input_files::{parse_json, parse_json_or_lines, read_utf8, InputError, QuestionId};
use crate::metrics::vsibench::{question_kind, score_item, score_vsibench, VsiItem, VsiScores};

/// One VSI-Bench document: the fields scoring needs, and those asking needs.
#[derive(Debug, Clone, Deserialize)]
pub struct VsiDoc {
    pub id: QuestionId,
    pub question_type: String,
    pub ground_truth: GroundTruth,
    /// `scannet`, `scannetpp` or `arkitscenes`: the video is `<dataset>/<scene_name>.mp4`.
    #[serde(default)]
    pub dataset: Option<String>,
    #[serde(default)]
    pub scene_name: Option<String>,
    #[serde(default)]
    pub question: Option<String>,
    /// The multiple-choice options, e.g. "A. chair" (null for numeric questions).
    #[serde(default)]
    pub options: Option<Vec<String>>,
}

/// What the official task puts around a question (lmms-eval's default prompt arguments).
const PRE_PROMPT: &str = "These are frames of a video.";
const NUMERIC_POST_PROMPT: &str = "Please answer the question using a single word or phrase.";
const CHOICE_POST_PROMPT: &str = "Answer with the option's letter from the given choices directly.";

impl VsiDoc {
    fn field<'a>(&self, value: &'a Option<String>, name: &str) -> Result<&'a str, InputError> {
        value.as_deref().filter(|v| !v.is_empty()).ok_or_else(|| InputError::BadGroundTruth {
            id: self.id.text(),
            message: format!("no `{name}`, which asking the question needs (the VSI-Bench release has it on every document)"),
        })
    }

    /// The scene the question is about, `<dataset>/<scene_name>`; its video is that path plus
    /// `.mp4` in the release's layout.
    pub fn scene(&self) -> Result<String, InputError> {
        Ok(format!("{}/{}", self.field(&self.dataset, "dataset")?, self.field(&self.scene_name, "scene_name")?))
    }

    /// The text the official task asks: the question between its pre- and post-prompt, with the
    /// options listed for a multiple-choice question.
    pub fn prompt(&self) -> Result<String, InputError> {
        let kind = question_kind(&self.question_type)
            .ok_or_else(|| InputError::BadGroundTruth { id: self.id.text(), message: format!("unknown VSI-Bench question_type `{}`", self.question_type) })?;
        let question = self.field(&self.question, "question")?;
        if kind.numeric {
            return Ok(format!("{PRE_PROMPT}\n{question}\n{NUMERIC_POST_PROMPT}"));
        }
        let options = self
            .options
            .as_ref()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| InputError::BadGroundTruth { id: self.id.text(), message: "a multiple-choice question without `options`".into() })?;
        Ok([PRE_PROMPT, question, &format!("Options:\n{}", options.join("\n")), CHOICE_POST_PROMPT].join("\n"))
    }
}

/// A ground truth as the release writes it (a string), or a number.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum GroundTruth {
    Text(String),
    Number(serde_json::Number),
}

impl GroundTruth {
    /// The ground truth as text: a string as given, a JSON number as serde_json prints it.
    pub fn text(&self) -> String {
        match self {
            GroundTruth::Text(s) => s.clone(),
            GroundTruth::Number(n) => n.to_string(),
        }
    }
}

/// One prediction.
#[derive(Debug, Clone, Deserialize)]
pub struct VsiPrediction {
    #[serde(alias = "question_id")]
    pub id: QuestionId,
    #[serde(alias = "answer")]
    pub prediction: String,
}

const DOCS_EXPECTED: &str = "a JSON array (or JSON lines) of VSI-Bench documents with `id`, `question_type` and `ground_truth`";
const PREDICTIONS_EXPECTED: &str =
    "a JSON array of {\"id\": ..., \"prediction\": \"...\"} (\"question_id\" is accepted for \"id\", \"answer\" for \"prediction\")";

/// Reads the documents, refusing an empty set and ids that appear twice.
pub fn read_vsibench_docs(path: &Path) -> Result<Vec<VsiDoc>, InputError> {
    let docs: Vec<VsiDoc> = parse_json_or_lines(&read_utf8(path)?, path, "VSI-Bench ground-truth file", DOCS_EXPECTED)?;
    if docs.is_empty() {
        return Err(InputError::NoQuestions);
    }
    let mut seen = HashSet::new();
    for d in &docs {
        if !seen.insert(d.id.text()) {
            return Err(InputError::DuplicateQuestion { id: d.id.text() });
        }
    }
    Ok(docs)
}

/// Reads a prediction file; duplicate ids are refused here.
pub fn read_vsibench_predictions(path: &Path) -> Result<Vec<VsiPrediction>, InputError> {
    let predictions: Vec<VsiPrediction> = parse_json(&read_utf8(path)?, path, "VSI-Bench prediction file", PREDICTIONS_EXPECTED)?;
    let mut seen = HashSet::new();
    for p in &predictions {
        if !seen.insert(p.id.text()) {
            return Err(InputError::DuplicatePrediction { path: path.to_path_buf(), id: p.id.text() });
        }
    }
    Ok(predictions)
}

/// Scores of `loc3r-eval score --task vsibench`.
#[derive(Debug, Clone, Serialize)]
pub struct VsiReport {
    pub task: &'static str,
    pub questions: usize,
    pub missing_predictions: usize,
    #[serde(flatten)]
    pub scores: VsiScores,
}

/// Joins and scores; a document that cannot be scored (unknown type, numeric ground truth that
/// is not a number or is 0) is an error naming its id.
pub fn score_vsibench_files(docs: &[VsiDoc], predictions: &[VsiPrediction], path: &Path) -> Result<VsiReport, InputError> {
    let ids: HashSet<String> = docs.iter().map(|d| d.id.text()).collect();
    let mut by_id: HashMap<String, &str> = HashMap::with_capacity(predictions.len());
    for p in predictions {
        let id = p.id.text();
        if !ids.contains(&id) {
            return Err(InputError::UnknownQuestion { path: path.to_path_buf(), id });
        }
        by_id.insert(id, &p.prediction);
    }
    let truths: Vec<String> = docs.iter().map(|d| d.ground_truth.text()).collect();
    let mut items = Vec::with_capacity(docs.len());
    let mut missing = 0;
    for (d, truth) in docs.iter().zip(&truths) {
        let prediction = by_id.get(&d.id.text()).copied().unwrap_or_else(|| {
            missing += 1;
            ""
        });
        // A numeric prediction that parses makes the ground truth be parsed and divided by, so
        // a bad document is refused whatever was predicted for it.
        score_item(&d.question_type, "1", truth).map_err(|e| InputError::BadGroundTruth { id: d.id.text(), message: e.to_string() })?;
        items.push(VsiItem { question_type: &d.question_type, prediction, ground_truth: truth });
    }
    // Every document was checked above, so this cannot fail on one; keep the error anyway.
    let scores = score_vsibench(&items).map_err(|e| InputError::Files(format!("VSI-Bench: {e}")))?;
    Ok(VsiReport { task: "vsibench", questions: docs.len(), missing_predictions: missing, scores })
}

/// The report as a table: one row per paper column, then the overall score.
pub fn vsibench_table(r: &VsiReport) -> String {
    let mut out = format!("{} questions, {} without a prediction\n", r.questions, r.missing_predictions);
    for (column, score) in &r.scores.columns {
        out.push_str(&format!("{column:<14} {score:>7.2}\n"));
    }
    out.push_str(&format!("{:<14} {:>7.2}\n", "Overall", r.scores.overall));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_scores_missing_predictions_as_empty() {
        let docs: Vec<VsiDoc> = serde_json::from_str(
            r#"[{"id": 1, "question_type": "object_counting", "ground_truth": "4", "question": "How many chairs?"},
                {"id": 2, "question_type": "route_planning", "ground_truth": "B"},
                {"id": 3, "question_type": "room_size_estimation", "ground_truth": 20}]"#,
        )
        .unwrap();
        let preds: Vec<VsiPrediction> = serde_json::from_str(r#"[{"id": 1, "prediction": "4"}, {"question_id": "3", "prediction": "18"}]"#).unwrap();
        let r = score_vsibench_files(&docs, &preds, Path::new("p")).unwrap();
        assert_eq!((r.questions, r.missing_predictions), (3, 1));
        assert_eq!(r.scores.columns["Obj. Count"], 100.0);
        assert_eq!(r.scores.columns["Route Plan"], 0.0);
        assert!((r.scores.columns["Room Size"] - 90.0).abs() < 1e-9);
        let bad: Vec<VsiDoc> = serde_json::from_str(r#"[{"id": "x", "question_type": "object_counting", "ground_truth": "0"}]"#).unwrap();
        let e = score_vsibench_files(&bad, &[], Path::new("p")).unwrap_err().to_string();
        assert!(e.contains("`x`"), "{e}");
    }
}
