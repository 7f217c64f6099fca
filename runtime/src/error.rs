//! Typed errors of the `loc3r` runtime library.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ONNX Runtime shared library could not be found or loaded.
    #[error("{0}")]
    OrtMissing(String),
    /// An ONNX Runtime call failed; `context` says what we were doing.
    #[error("ONNX Runtime: {context}: {message}")]
    Ort { context: String, message: String },
    /// The requested execution provider cannot be used here (never a silent CPU fallback).
    #[error("device `{device}` is not available: {message}. Use --device cpu, or install onnxruntime-gpu with CUDA/TensorRT")]
    DeviceUnavailable { device: String, message: String },
    /// The video or image directory could not be read or sampled.
    #[error(transparent)]
    Video(#[from] crate::stages::video::VideoError),
    /// Frames that cannot be preprocessed for this bundle (e.g. a CUT3R size mismatch).
    #[error(transparent)]
    Preprocess(#[from] crate::stages::preprocess::PreprocessError),
    /// Bad input from the caller (options, text, frames).
    #[error("{0}")]
    Input(String),
    /// A bundle that is missing, corrupt or of another format version.
    #[error("{0}")]
    Bundle(String),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

impl Error {
    /// Whether the caller's input (video, text, options, bundle, device choice) is at fault,
    /// rather than the runtime: binaries exit with code 2 for these.
    pub fn is_input_error(&self) -> bool {
        matches!(self, Error::Input(_) | Error::Bundle(_) | Error::DeviceUnavailable { .. } | Error::Video(_) | Error::Preprocess(_) | Error::OrtMissing(_))
    }

    pub fn ort(context: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Ort { context: context.into(), message: err.to_string() }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
