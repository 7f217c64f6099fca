//! `loc3r`: the Loc3R-VLM runtime library.
//!
//! Runs a bundle written by `loc3r-export` on ONNX Runtime. This crate also owns
//! loading of the ONNX Runtime shared library ([`ort_env`]), which every binary of
//! the project goes through.

pub mod bundle;
pub mod error;
pub mod manifest;
pub mod ort_env;
pub mod pipeline;
pub mod session;
pub mod stages;
pub mod values;

pub use error::{Error, Result};
pub use pipeline::{Answer, Localization, Loc3r, Scene};
pub use session::{Device, SessionOptions};
pub use stages::sampling::GenerationOptions;
