//! `loc3r`: the Loc3R-VLM runtime library.
//!
//! Runs a bundle written by `loc3r-export` on ONNX Runtime. This crate also owns
//! loading of the ONNX Runtime shared library ([`ort_env`]), which every binary of
//! the project goes through.

pub mod bundle;
pub mod error;
pub mod manifest;
pub mod ort_env;
pub mod session;
/// Pipeline stages (being merged: declared inline until stages/mod.rs lands).
pub mod stages {
    pub mod decode;
    pub mod prompt;
    pub mod sampling;
}

pub use error::{Error, Result};
