//! `loc3r-export`: turns a Loc3R-VLM checkpoint into a bundle of ONNX graphs.
//!
//! Modules follow the data: [`config`] (typed, validated model configs, within the
//! [`bounds`]), [`names`]
//! (the name map, as data from `models/`), [`checkpoint`] (memory-mapped safetensors
//! with full validation), [`tiny`] (random checkpoints for tests), [`graph`] (the ONNX
//! builder), [`tensorrt`] (TensorRT lint, optimization profiles, engine compilation).

pub mod graph;
pub mod inspect;
pub mod tensor;

pub use tensor::{DType, TensorData};
pub mod bounds;
pub mod bundle;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod files;
pub mod models;
pub mod names;
pub mod quant;
pub mod tensorrt;
pub mod tiny;

pub use error::{Error, Fault, Result};
