//! What the SQA3D and VSI-Bench inputs of `loc3r-eval score` and `loc3r-eval run` share: reading
//! a file as UTF-8 JSON, question ids that are numbers or strings, and [`InputError`], the one
//! error type of those inputs (docs/evaluation.md, "Scoring and running the benchmarks").

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Why an input file (ground truth or predictions) cannot be scored. Every variant names the file
/// or the question and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{}: cannot read it ({source}); check that it exists and is readable", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not UTF-8 text (invalid byte at offset {offset}); write it as UTF-8 JSON", path.display())]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error("{}: not a valid {what}: {message}; expected {expected}", path.display())]
    Json { path: PathBuf, what: &'static str, message: String, expected: &'static str },
    #[error("{}: prediction for `{id}` has no `{field}`; write it for every prediction of this task", path.display())]
    MissingField { path: PathBuf, id: String, field: &'static str },
    #[error("{}: two predictions for question `{id}`; keep one per question", path.display())]
    DuplicatePrediction { path: PathBuf, id: String },
    #[error("{}: prediction for `{id}`, which is not a question of the ground truth; check that both files are of the same split", path.display())]
    UnknownQuestion { path: PathBuf, id: String },
    #[error("{}: prediction for `{id}` is not a valid pose: {message}", path.display())]
    BadPose { path: PathBuf, id: String, message: String },
    #[error("ground truth: question `{id}` appears twice")]
    DuplicateQuestion { id: String },
    #[error("ground truth: question `{id}`: {message}")]
    BadGroundTruth { id: String, message: String },
    #[error("ground truth: no questions")]
    NoQuestions,
    #[error("{0}")]
    Files(String),
    #[error(transparent)]
    Data(#[from] loc3r_train::data::DataError),
}

/// A question id as the files write it: SQA3D's are numbers, ScanQA's and VSI-Bench's strings
/// or numbers. Compared as its decimal text.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum QuestionId {
    Number(u64),
    Text(String),
}

impl QuestionId {
    pub fn text(&self) -> String {
        match self {
            QuestionId::Number(n) => n.to_string(),
            QuestionId::Text(s) => s.clone(),
        }
    }

    /// The id as it is best written back: a number when the text is a plain decimal number (as
    /// SQA3D's are), else the text.
    pub fn from_text(s: &str) -> QuestionId {
        match s.parse::<u64>() {
            Ok(n) if n.to_string() == s => QuestionId::Number(n),
            _ => QuestionId::Text(s.to_string()),
        }
    }
}

/// One prediction, as `loc3r-eval run` writes it and the SQA3D scorers read it: the answer, and
/// for SQA3D the pose in the SQA3D annotation frame. The ScanQA reader reads the same records
/// (`question_id`, `answer`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PredictionRecord {
    pub question_id: QuestionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Metres in the SQA3D annotation frame (z is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<[f64; 3]>,
    /// Quaternion (x, y, z, w) about z in the SQA3D annotation frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<[f64; 4]>,
}

/// The file's text, refusing what is not UTF-8.
pub fn read_utf8(path: &Path) -> Result<String, InputError> {
    let bytes = std::fs::read(path).map_err(|source| InputError::Io { path: path.to_path_buf(), source })?;
    String::from_utf8(bytes).map_err(|e| InputError::NotUtf8 { path: path.to_path_buf(), offset: e.utf8_error().valid_up_to() })
}

/// A JSON document of type `T` (`what` and `expected` describe it in errors).
pub fn parse_json<T: DeserializeOwned>(text: &str, path: &Path, what: &'static str, expected: &'static str) -> Result<T, InputError> {
    serde_json::from_str(text).map_err(|e| InputError::Json { path: path.to_path_buf(), what, message: e.to_string(), expected })
}

/// A JSON array of `T`, or JSON lines of `T` (blank lines skipped) when the text does not start
/// with `[`.
pub fn parse_json_or_lines<T: DeserializeOwned>(text: &str, path: &Path, what: &'static str, expected: &'static str) -> Result<Vec<T>, InputError> {
    if text.trim_start().starts_with('[') {
        return parse_json(text, path, what, expected);
    }
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let item =
            serde_json::from_str(line).map_err(|e| InputError::Json { path: path.to_path_buf(), what, message: format!("line {}: {e}", n + 1), expected })?;
        out.push(item);
    }
    Ok(out)
}

/// Writes `text` to `path` through a temporary file in the same directory and a rename, so that
/// an interrupted run never leaves a truncated file.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.partial"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_as_numbers_or_text() {
        let ids: Vec<QuestionId> = serde_json::from_str(r#"[220602000000, "train-scene0000-0", "007"]"#).unwrap();
        let texts: Vec<String> = ids.iter().map(QuestionId::text).collect();
        assert_eq!(texts, ["220602000000", "train-scene0000-0", "007"]);
        assert!(matches!(QuestionId::from_text("42"), QuestionId::Number(42)));
        assert!(matches!(QuestionId::from_text("007"), QuestionId::Text(_)), "leading zeros stay text");
    }

    #[test]
    fn arrays_and_lines() {
        let p = Path::new("x.json");
        let a: Vec<u32> = parse_json_or_lines("[1, 2]", p, "list", "numbers").unwrap();
        let b: Vec<u32> = parse_json_or_lines("1\n\n2\n", p, "list", "numbers").unwrap();
        assert_eq!(a, b);
        let e = parse_json_or_lines::<u32>("1\nx\n", p, "list", "numbers").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("x.json"), "{e}");
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pred.json");
        write_atomically(&p, "[1]").unwrap();
        write_atomically(&p, "[2]").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "[2]");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left");
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, b"[\xff]").unwrap();
        assert!(matches!(read_utf8(&bad), Err(InputError::NotUtf8 { offset: 1, .. })));
    }
}
