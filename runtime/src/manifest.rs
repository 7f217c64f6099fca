//! `manifest.json`: the bundle contract's schema (`loc3r_bundle::manifest`), re-exported so
//! `loc3r::manifest` keeps working, and its errors as runtime errors.

pub use loc3r_bundle::manifest::*;

use crate::error::Error;

impl From<ManifestError> for Error {
    fn from(e: ManifestError) -> Error {
        match e {
            ManifestError::Io { path, source } => Error::BundleFile { path, error: source },
            ManifestError::Invalid(message) => Error::Bundle(message),
        }
    }
}
