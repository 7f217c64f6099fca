//! Typed errors of the exporter. Every message names the file or tensor at fault and,
//! where there is one, what to do about it.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}: {message}")]
    Config { file: String, message: String },
    #[error("{file}: {message}")]
    NameMap { file: String, message: String },
    /// (The I/O error is part of the message, not a `source`, so a printed error chain does not repeat it.)
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    /// A safetensors file or index that cannot be read as such.
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("tensor `{mapped}` is missing from {file} (needed by the {family} graph); check the checkpoint and the name map")]
    MissingTensor { mapped: String, file: String, family: String },
    #[error("tensor `{mapped}` in {file}: expected shape {expected:?}, found {found:?}")]
    Shape { mapped: String, file: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("tensor `{mapped}` in {file}: dtype {dtype} is not supported (use bf16, f16 or f32)")]
    Dtype { mapped: String, file: String, dtype: String },
    /// All problems found while validating a checkpoint (one line each).
    #[error("{}", checkpoint_message(dir, problems))]
    Checkpoint { dir: PathBuf, problems: Vec<String> },
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn io(path: &Path, error: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), error }
    }
    pub fn format(path: &Path, message: impl Into<String>) -> Self {
        Error::Format { path: path.to_path_buf(), message: message.into() }
    }
}

fn checkpoint_message(dir: &Path, problems: &[String]) -> String {
    match problems {
        [one] => format!("invalid checkpoint {}: {one}", dir.display()),
        many => format!(
            "invalid checkpoint {}: {} problems:\n{}",
            dir.display(),
            many.len(),
            many.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
        ),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
