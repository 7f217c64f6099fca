//! `loc3r-calibrate`: INT8 activation calibration of a float bundle's encoders
//! (docs/quantization.md §6, calibration/README.md).
//!
//! [`calibrate::calibrate`] runs the bundle's `siglip`, `projector` and `cut3r_encoder` over
//! real frames, prepared by the runtime exactly as it prepares a video, and measures every
//! activation that feeds a weight product ([`graphs`]); [`stats`] turns each activation's
//! statistics into a range (min-max, percentile or entropy). The result is the calibration
//! cache (`loc3r_export::quant::CalibrationCache`) that `loc3r-export export --activations int8
//! --calibration FILE` reads to put QuantizeLinear/DequantizeLinear pairs at those values.

pub mod calibrate;
pub mod error;
pub mod frames;
pub mod graphs;
pub mod stats;

pub use calibrate::{calibrate, write_cache, Options, Progress};
pub use error::{Error, Fault, Result};
