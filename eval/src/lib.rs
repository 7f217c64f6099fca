//! `loc3r-eval`: the paper's metrics, computed exactly as the benchmarks' official scripts
//! compute them ([`metrics`]), and [`synth`], the evaluation of a bundle on held-out synthetic
//! rooms against baselines, and [`scanqa_input`], the files `loc3r-eval score` reads.

pub mod metrics;
pub mod scanqa_input;
pub mod synth;
