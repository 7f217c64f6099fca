//! `loc3r-train`: the companion training path.
//!
//! The exporter's graph builder ([`loc3r_export::graph::GraphBuilder`]) builds every
//! forward graph from checkpoint weights; this crate turns a forward graph and a scalar
//! loss into a training graph (forward + vector-Jacobian products) in standard ONNX ops, so
//! the same ONNX Runtime sessions that serve inference can train on CPU or CUDA. The f64
//! reference interpreter ([`interp`]) is the oracle its gradient tests run on.

pub mod autodiff;
pub mod check;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod graph;
pub mod init;
pub mod interp;
pub mod lora;
pub mod losses;
pub mod model;
pub mod optim;
pub mod pose;
pub mod prepare;
pub mod recompute;
pub mod resident;
pub mod sample;
pub mod session;
pub mod trainer;
