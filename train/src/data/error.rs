//! Why a scene, an annotation file or a target geometry cannot be used. Every variant names the
//! file (or the setting) and says what to do about it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{}: not a directory; give the scene's export directory (the one holding color/, depth/, pose/ and intrinsic/)", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{}: {what} is missing; {hint}", path.display())]
    Missing { path: PathBuf, what: &'static str, hint: &'static str },
    #[error("{}: no pose files `<frame>.txt`; export the scene with ScanNet's SensReader (it writes one camera-to-world matrix per frame)", path.display())]
    NoPoses { path: PathBuf },
    #[error("{}: cannot read it ({source}); check that it exists and is readable", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: cannot decode the image ({source}); re-export the frame", path.display())]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
    #[error("{}: not a valid {what} file: {message}; check that it is the unmodified release file", path.display())]
    Json { path: PathBuf, what: &'static str, message: String },
    #[error("frame {frame} is out of range: the scene at {} has frames 0..{count}", dir.display())]
    FrameOutOfRange { dir: PathBuf, frame: usize, count: usize },
    #[error("{}: frame {frame} has no valid pose (non-finite matrix); anchor the BEV frame at a frame with a valid pose", dir.display())]
    InvalidAnchorPose { dir: PathBuf, frame: usize },
    #[error("vision geometry: {0}")]
    Geometry(String),
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> DataError {
        DataError::Io { path: path.into(), source }
    }

    pub(crate) fn parse(path: impl Into<PathBuf>, message: impl Into<String>) -> DataError {
        DataError::Parse { path: path.into(), message: message.into() }
    }
}
