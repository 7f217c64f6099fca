//! `loc3r-eval`: the paper's metrics, computed exactly as the benchmarks' official scripts
//! compute them ([`metrics`]), and [`synth`], the evaluation of a bundle on held-out synthetic
//! rooms against baselines, [`benchmark_run`], a bundle run over an official SQA3D or ScanQA
//! file, [`compare`], two bundles run over the same questions and gated on their differences,
//! and [`scanqa_input`], [`sqa3d_input`], [`vsibench_input`] ([`input_files`]), the files
//! `loc3r-eval score` reads.

pub mod benchmark_run;
pub mod compare;
pub mod input_files;
pub mod metrics;
pub mod scanqa_input;
pub mod sqa3d_input;
pub mod synth;
pub mod vsibench_input;
