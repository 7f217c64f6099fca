//! Typed errors of the exporter. Every message names the file or tensor at fault and,
//! where there is one, what to do about it; [`Error::fault`] says whose fault it is, which
//! alone decides the exit code.

use std::path::{Path, PathBuf};

use crate::graph::GraphError;

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// What the user gave: arguments, config, checkpoint, name map, a bundle to inspect.
    Input,
    /// Writing the output (bundle, checkpoint) failed: disk full, no permission, ...
    Output,
    /// The machine: ONNX Runtime cannot be loaded, a GPU build failed.
    Runtime,
    /// The machine lacks a library the command needs (a GPU execution provider, TensorRT,
    /// the CUDA runtime): the user installs it, as they would fix an argument.
    Setup,
    /// A bug of ours: a graph the builder got wrong, a broken invariant.
    Internal,
}

impl Fault {
    /// The process exit code of a command that failed this way: 2 for bad input, 1 otherwise.
    pub fn exit_code(self) -> u8 {
        match self {
            Fault::Input | Fault::Setup => 2,
            Fault::Output | Fault::Runtime | Fault::Internal => 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}: {message}")]
    Config { file: String, message: String },
    #[error("{file}: {message}")]
    NameMap { file: String, message: String },
    /// Reading an input file failed.
    /// (The I/O error is part of the message, not a `source`, so a printed error chain does not repeat it.)
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    /// Writing (or reading back) an output file failed.
    #[error("cannot write {}: {error}", path.display())]
    Write { path: PathBuf, error: std::io::Error },
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
    /// Bad input that is none of the above (an argument, a config value).
    #[error("{0}")]
    Invalid(String),
    /// A graph could not be built or saved (the error is in the message, not a `source`).
    #[error("{0}")]
    Graph(GraphError),
    /// ONNX Runtime cannot be used (`inspect` loads the graphs in it).
    #[error("{0}")]
    Runtime(String),
    /// A library a GPU target needs is missing (one sentence naming it and how to install it).
    #[error("{0}")]
    ProviderMissing(String),
    /// ONNX Runtime or TensorRT failed to build a graph's engine.
    #[error("compiling {graph} failed: {message}")]
    Compile { graph: String, message: String },
    /// TensorRT took only part of a graph: the rest would run on other providers.
    #[error("TensorRT did not take the whole {graph} graph ({engines} engine(s); outside TensorRT: {}); run `loc3r-export lint` on the bundle and fix what it reports", outside.join(", "))]
    Partitioned { graph: String, engines: usize, outside: Vec<String> },
    /// A broken invariant of the exporter: a bug, never the user's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<GraphError> for Error {
    fn from(e: GraphError) -> Self {
        Error::Graph(e)
    }
}

impl Error {
    pub fn io(path: &Path, error: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), error }
    }
    pub fn write(path: &Path, error: std::io::Error) -> Self {
        Error::Write { path: path.to_path_buf(), error }
    }
    pub fn format(path: &Path, message: impl Into<String>) -> Self {
        Error::Format { path: path.to_path_buf(), message: message.into() }
    }

    /// Whose fault this is; the exit code is derived from it.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Config { .. }
            | Error::NameMap { .. }
            | Error::Io { .. }
            | Error::Format { .. }
            | Error::MissingTensor { .. }
            | Error::Shape { .. }
            | Error::Dtype { .. }
            | Error::Checkpoint { .. }
            | Error::Invalid(_) => Fault::Input,
            Error::Write { .. } | Error::Graph(GraphError::Io { .. }) => Fault::Output,
            Error::Runtime(_) | Error::Compile { .. } | Error::Partitioned { .. } => Fault::Runtime,
            Error::ProviderMissing(_) => Fault::Setup,
            // Every other graph problem is the builder's: config values are validated before any graph is built.
            Error::Graph(_) | Error::Internal(_) => Fault::Internal,
        }
    }
}

/// Problems listed in one message; the rest are counted (a 1000-layer checkpoint missing
/// every tensor would otherwise print thousands of lines).
pub const MAX_LISTED_PROBLEMS: usize = 20;

/// `  - item` lines, at most [`MAX_LISTED_PROBLEMS`] of them, then `  … and K more`.
pub fn bullet_list(items: &[String]) -> String {
    let mut lines: Vec<String> = items.iter().take(MAX_LISTED_PROBLEMS).map(|p| format!("  - {p}")).collect();
    if items.len() > MAX_LISTED_PROBLEMS {
        lines.push(format!("  … and {} more", items.len() - MAX_LISTED_PROBLEMS));
    }
    lines.join("\n")
}

fn checkpoint_message(dir: &Path, problems: &[String]) -> String {
    match problems {
        [one] => format!("invalid checkpoint {}: {one}", dir.display()),
        many => format!("invalid checkpoint {}: {} problems:\n{}", dir.display(), many.len(), bullet_list(many)),
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_exit_2_output_and_internal_failures_exit_1() {
        let disk_full = || std::io::Error::from(std::io::ErrorKind::StorageFull);
        let cases = [
            (Error::Config { file: "config.json".into(), message: "bad".into() }, Fault::Input),
            (Error::io(Path::new("ckpt/model.safetensors"), std::io::ErrorKind::NotFound.into()), Fault::Input),
            (Error::Checkpoint { dir: "ckpt".into(), problems: vec!["missing".into()] }, Fault::Input),
            (Error::Invalid("--pooling max: use bilinear or average".into()), Fault::Input),
            (Error::write(Path::new("out/manifest.json"), disk_full()), Fault::Output),
            (Error::from(GraphError::Io { path: "out/decoder.onnx".into(), error: disk_full() }), Fault::Output),
            (Error::from(GraphError::Invalid { graph: "decoder".into(), problems: vec!["node `a`: bad".into()] }), Fault::Internal),
            (Error::from(GraphError::Cycle { graph: "decoder".into(), nodes: vec!["a".into(), "b".into()] }), Fault::Internal),
            (Error::Runtime("libonnxruntime.so not found".into()), Fault::Runtime),
            (Error::ProviderMissing("libnvinfer.so.10 not found: pip install tensorrt-cu13-libs".into()), Fault::Setup),
            (Error::Partitioned { graph: "decoder".into(), engines: 1, outside: vec!["a (Loop)".into()] }, Fault::Runtime),
            (Error::Internal("wrote 3 bytes, expected 4".into()), Fault::Internal),
        ];
        for (e, fault) in cases {
            assert_eq!(e.fault(), fault, "{e}");
            assert_eq!(e.fault().exit_code(), if matches!(fault, Fault::Input | Fault::Setup) { 2 } else { 1 }, "{e}");
        }
    }

    #[test]
    fn long_problem_lists_are_capped_with_a_count_of_the_rest() {
        let problems: Vec<String> = (0..MAX_LISTED_PROBLEMS + 7).map(|i| format!("problem {i}")).collect();
        let e = Error::Checkpoint { dir: "ckpt".into(), problems }.to_string();
        assert!(e.contains(&format!("{} problems", MAX_LISTED_PROBLEMS + 7)), "{e}");
        assert_eq!(e.lines().filter(|l| l.starts_with("  - ")).count(), MAX_LISTED_PROBLEMS, "{e}");
        assert!(e.ends_with("… and 7 more"), "{e}");
        assert!(!e.contains(&format!("problem {MAX_LISTED_PROBLEMS}")), "{e}");
    }
}
