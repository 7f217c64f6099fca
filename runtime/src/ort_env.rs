//! Finding and loading the ONNX Runtime shared library: `loc3r_bundle::ort_env`, re-exported
//! so `loc3r::ort_env` keeps working (the exporter loads graphs too, without the runtime),
//! and its error as a runtime error.

pub use loc3r_bundle::ort_env::*;

use crate::error::Error;

impl From<OrtMissing> for Error {
    fn from(e: OrtMissing) -> Error {
        Error::OrtMissing(e.0)
    }
}
