//! Typed errors of the `loc3r` runtime library, each sorted by whose fault it is
//! ([`Error::fault`]): the binary's exit code and the server's HTTP status are derived from
//! that class alone, so the same failure is reported the same way everywhere.

use std::path::PathBuf;

use crate::stages::preprocess::PreprocessError;
use crate::stages::prompt::PromptError;
use crate::stages::video::VideoError;

/// Whose fault an error is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The caller's data or arguments: a video, a question, options out of range.
    Input,
    /// The bundle given: missing, corrupt or inconsistent files (each error names the file).
    Bundle,
    /// A bug of ours or a broken invariant (a poisoned lock, arrays that should fit and do not).
    Internal,
    /// The machine: ONNX Runtime, I/O, an execution provider or device that cannot be used.
    Runtime,
}

impl Fault {
    /// The process exit code of a command that failed this way: 2 when what the user gave
    /// (arguments, video, bundle) is at fault, 1 otherwise.
    pub fn exit_code(self) -> u8 {
        match self {
            Fault::Input | Fault::Bundle => 2,
            Fault::Internal | Fault::Runtime => 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ONNX Runtime shared library could not be found or loaded.
    #[error("{0}")]
    OrtMissing(String),
    /// An ONNX Runtime call failed; `context` says what we were doing, `source` is ORT's error.
    #[error("ONNX Runtime failed {context}")]
    Ort {
        context: String,
        #[source]
        source: ort::Error,
    },
    /// The requested execution provider cannot be used here (never a silent CPU fallback).
    #[error("device `{device}` is not available (use --device cpu, or install onnxruntime-gpu with CUDA/TensorRT)")]
    DeviceUnavailable {
        device: String,
        #[source]
        source: ort::Error,
    },
    /// This machine lacks what a GPU device needs (a provider library, the driver, CUDA,
    /// TensorRT): one sentence naming it and how to install it.
    #[error("device `{device}` cannot be used here: {message}")]
    Gpu { device: String, message: String },
    /// The bundle's compiled engines do not fit this machine or this call: none compiled for
    /// it, compiled for another GPU/TensorRT (both keys named), a shape outside the engine's
    /// optimization profile (its bounds named).
    #[error("{0}")]
    Engines(String),
    /// The video or image directory could not be read or sampled.
    #[error(transparent)]
    Video(#[from] VideoError),
    /// Frames that cannot be preprocessed for this bundle (e.g. a CUT3R size mismatch).
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    /// The prompt could not be built (an empty question, or a template the tokenizer cannot handle).
    #[error(transparent)]
    Prompt(#[from] PromptError),
    /// Bad input from the caller (options, text, frames).
    #[error("{0}")]
    Input(String),
    /// A bundle that is missing, corrupt, of another format version, or whose graphs return
    /// something other than their manifest promises.
    #[error("{0}")]
    Bundle(String),
    /// A bundle file that cannot be read.
    /// (The I/O error is part of the message, not a `source`, so a printed error chain does not repeat it.)
    #[error("{}: {error}; the bundle is incomplete or unreadable (check it with `loc3r-export inspect`, or re-export it)", path.display())]
    BundleFile { path: PathBuf, error: std::io::Error },
    /// The work was stopped through its [`crate::Cancel`] token (cancelled, or past its
    /// deadline) before it finished; nothing it did is kept.
    #[error("the work was cancelled: {0}")]
    Cancelled(&'static str),
    /// A broken invariant of the runtime itself: a bug, never the caller's fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whose fault this is; exit codes and HTTP statuses are derived from it.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Input(_) => Fault::Input,
            Error::Video(VideoError::Init(_)) => Fault::Runtime,
            // A camera or stream that stops sending: the environment's, not the request's.
            Error::Video(VideoError::Stalled { .. }) => Fault::Runtime,
            Error::Video(_) => Fault::Input,
            // A video of another aspect than the bundle was exported for (the message says how to re-export).
            Error::Preprocess(PreprocessError::Cut3rSize { .. }) => Fault::Input,
            // Target sizes come from the bundle's manifest; frames from the caller or the video.
            Error::Preprocess(PreprocessError::BadSize { .. }) => Fault::Bundle,
            Error::Preprocess(PreprocessError::BadFrame { .. } | PreprocessError::NoFrames) => Fault::Input,
            Error::Prompt(PromptError::EmptyQuestion | PromptError::ReservedToken { .. } | PromptError::ControlCharacter { .. }) => Fault::Input,
            // The template and the tokenizer are the bundle's; any text tokenizes.
            Error::Prompt(PromptError::Tokenizer(_) | PromptError::Placeholders(_)) => Fault::Bundle,
            Error::Bundle(_) | Error::BundleFile { .. } | Error::Engines(_) => Fault::Bundle,
            Error::Internal(_) => Fault::Internal,
            // Not the input's fault: the same request may succeed with more time.
            Error::Cancelled(_) => Fault::Runtime,
            Error::Ort { .. } | Error::OrtMissing(_) | Error::DeviceUnavailable { .. } | Error::Gpu { .. } => Fault::Runtime,
        }
    }

    pub fn ort(context: impl Into<String>, source: ort::Error) -> Self {
        Error::Ort { context: context.into(), source }
    }

    /// The message followed by its sources (ONNX Runtime's own message), joined with ": ",
    /// as `{:#}` of an `anyhow::Error` prints it: for reports that are not an error chain.
    pub fn with_sources(&self) -> String {
        let mut message = self.to_string();
        let mut next = std::error::Error::source(self);
        while let Some(source) = next {
            message.push_str(": ");
            message.push_str(&source.to_string());
            next = source.source();
        }
        message
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_its_exit_code() {
        let cases = [
            (Error::Input("bad".into()), Fault::Input, 2),
            (Error::Video(VideoError::ZeroSamples), Fault::Input, 2),
            (Error::Prompt(PromptError::EmptyQuestion), Fault::Input, 2),
            (Error::Bundle("decoder.onnx has no output `logits`".into()), Fault::Bundle, 2),
            (Error::Prompt(PromptError::Placeholders(2)), Fault::Bundle, 2),
            (Error::BundleFile { path: "b/manifest.json".into(), error: std::io::ErrorKind::NotFound.into() }, Fault::Bundle, 2),
            (Error::Internal("concatenate".into()), Fault::Internal, 1),
            (Error::OrtMissing("not found".into()), Fault::Runtime, 1),
            (Error::Video(VideoError::Init("no ffmpeg".into())), Fault::Runtime, 1),
        ];
        for (e, fault, code) in cases {
            assert_eq!((e.fault(), e.fault().exit_code()), (fault, code), "{e}");
        }
    }

    #[test]
    fn ort_errors_are_runtime_faults_that_keep_the_ort_error_as_source() {
        crate::ort_env::init().expect("ONNX Runtime is installed for the tests");
        let e = Error::ort("running decoder", ort::Error::new("shape mismatch in node 7"));
        assert_eq!((e.fault(), e.fault().exit_code()), (Fault::Runtime, 1));
        let source = std::error::Error::source(&e).expect("the ORT error is the source");
        assert_eq!(source.to_string(), "shape mismatch in node 7");
        assert!(!e.to_string().contains("shape mismatch"), "the message is not repeated: {e}");
        assert_eq!(e.with_sources(), "ONNX Runtime failed running decoder: shape mismatch in node 7");
    }
}
