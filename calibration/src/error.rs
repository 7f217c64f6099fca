//! Typed errors of the calibration, sorted by fault: what the user gave (arguments, frames, a
//! bundle that cannot be calibrated), files we write, our own bugs, and the runtime (ONNX
//! Runtime, decoding). Every message says what was wrong and what to do.

use std::path::PathBuf;

/// Whose fault an error is; it alone decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Input,
    Output,
    Internal,
    Runtime,
}

impl Fault {
    /// 2 for bad input, 1 otherwise (as `loc3r-export`).
    pub fn exit_code(self) -> u8 {
        match self {
            Fault::Input => 2,
            Fault::Output | Fault::Internal | Fault::Runtime => 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- input -------------------------------------------------------------------------
    /// A bad argument or option.
    #[error("{0}")]
    Invalid(String),
    /// Not a bundle, or one without a graph the calibration runs.
    #[error("{0}")]
    Bundle(String),
    /// A bundle whose encoders are already quantized.
    #[error("{0}")]
    AlreadyQuantized(String),
    /// Fewer readable frames than the statistics need.
    #[error("{}", too_few(*read, *unreadable, first_unreadable.as_deref(), *needed))]
    TooFewFrames { read: usize, unreadable: usize, first_unreadable: Option<String>, needed: usize },
    /// A frame source that cannot be read at all.
    #[error("{}: {reason}", path.display())]
    Source { path: PathBuf, reason: String },
    // ---- files -------------------------------------------------------------------------
    #[error("cannot write {}: {error}", path.display())]
    Write { path: PathBuf, error: std::io::Error },
    // ---- internal ----------------------------------------------------------------------
    #[error("internal error: {0}")]
    Internal(String),
    // ---- runtime -----------------------------------------------------------------------
    /// The runtime (ONNX Runtime, preprocessing, the bundle's sessions).
    #[error("{0}")]
    Runtime(#[from] loc3r::Error),
    /// The exporter's readers (the ONNX protobuf of a graph, content hashes).
    #[error("{0}")]
    Export(#[from] loc3r_export::Error),
}

fn too_few(read: usize, unreadable: usize, first: Option<&str>, needed: usize) -> String {
    let frames = |n: usize| if n == 1 { "1 frame".to_string() } else { format!("{n} frames") };
    let mut m = frames(read) + " read";
    if unreadable > 0 {
        m += &format!(", {unreadable} unreadable");
        if let Some(first) = first {
            m += &format!(" (first: {first})");
        }
    }
    m + &format!("; calibration needs at least {needed}: give more images or videos with --frames, or raise --frames-per-video / --max-frames")
}

impl Error {
    pub fn fault(&self) -> Fault {
        match self {
            Error::Invalid(_) | Error::Bundle(_) | Error::AlreadyQuantized(_) | Error::TooFewFrames { .. } | Error::Source { .. } => Fault::Input,
            Error::Write { .. } => Fault::Output,
            Error::Internal(_) => Fault::Internal,
            Error::Runtime(e) => match e.fault() {
                loc3r::Fault::Input | loc3r::Fault::Bundle => Fault::Input,
                loc3r::Fault::Internal => Fault::Internal,
                _ => Fault::Runtime,
            },
            Error::Export(e) => match e.fault() {
                loc3r_export::Fault::Input => Fault::Input,
                loc3r_export::Fault::Output => Fault::Output,
                loc3r_export::Fault::Internal => Fault::Internal,
                _ => Fault::Runtime,
            },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_few_frames_gives_the_counts() {
        let e = Error::TooFewFrames { read: 2, unreadable: 1, first_unreadable: Some("`a.png`: bad".into()), needed: 8 };
        assert_eq!(e.to_string().split(';').next().unwrap(), "2 frames read, 1 unreadable (first: `a.png`: bad)");
        assert!(e.to_string().contains("needs at least 8"));
        assert_eq!(e.fault(), Fault::Input);
    }
}
