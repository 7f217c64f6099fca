//! `loc3r-bundle`: the contract between the bundle builder (`loc3r-export`) and the runtime
//! (`loc3r`).
//!
//! A bundle is a directory of ONNX graphs, `tokenizer.json`, `cut3r_init.safetensors` and
//! `manifest.json` (see docs/bundle.md). Everything both sides must agree on lives here and
//! only here, so the two crates never depend on each other:
//!
//! - [`manifest`]: the `manifest.json` schema, read by the runtime and written by the exporter,
//!   with the typed enums it carries ([`Precision`], [`Pooling`], [`KvCacheLayout`]);
//! - [`Graph`]: the graphs a bundle can hold and their file names;
//! - [`io`]: every graph input and output name, with its shape and dtype;
//! - [`bev`]: the gravity-aligned BEV frame poses are reported in, and its maps to a world frame;
//! - [`engines`]: compiled TensorRT/CUDA models under `engines/<target-key>/`, their record
//!   and optimization profiles;
//! - [`gpu`] (feature `ort`): probing the machine's GPU, CUDA, TensorRT and provider libraries;
//! - [`files`]: refusing FIFOs and devices before an input is opened (shared by both sides);
//! - [`DType`]: element types of tensors and graph values;
//! - [`ort_env`] (feature `ort`): finding and loading the ONNX Runtime shared library, which
//!   both the runtime and the exporter's checks (`inspect`, graph tests) use.
//!
//! Changing a name or a shape here changes the bundle format: bump
//! [`manifest::FORMAT_VERSION`] when old bundles can no longer be read.

pub mod bev;
pub mod dtype;
pub mod engines;
pub mod files;
#[cfg(feature = "ort")]
pub mod gpu;
pub mod graph;
pub mod io;
pub mod manifest;
#[cfg(feature = "ort")]
pub mod ort_env;

pub use dtype::DType;
pub use graph::Graph;
pub use manifest::{ActivationQuantization, KvCacheLayout, Manifest, ManifestError, Pooling, Precision, QuantFormat, Quantization, WeightBits};
