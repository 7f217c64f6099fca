//! Test support: run saved graphs on ONNX Runtime (CPU) and compare with references.
//!
//! Sessions use the process-wide environment of `loc3r_bundle::ort_env` (ort allows one).

use std::collections::HashMap;
use std::path::Path;

use ndarray::ArrayD;
use ort::environment::Environment;
use ort::session::Session;
use ort::value::{DynValue, Tensor};

fn env() -> &'static Environment {
    loc3r_bundle::ort_env::environment().unwrap_or_else(|e| panic!("{e}"))
}

/// A CPU session for the model at `path` (one intra-op thread: tests run in parallel).
pub(crate) fn session(path: &Path) -> Session {
    let build = || -> ort::Result<Session> {
        let mut builder = Session::builder(env())?.with_intra_threads(1).map_err(ort::Error::<()>::from)?;
        builder.commit_from_file(path)
    };
    build().unwrap_or_else(|e| panic!("ONNX Runtime cannot load {}: {e}", path.display()))
}

/// An f32 input.
pub(crate) fn feed_f32(name: &str, value: ArrayD<f32>) -> (String, DynValue) {
    (name.to_string(), Tensor::from_array(value).expect("f32 input tensor").into_dyn())
}

/// An i64 input.
pub(crate) fn feed_i64(name: &str, value: ArrayD<i64>) -> (String, DynValue) {
    (name.to_string(), Tensor::from_array(value).expect("i64 input tensor").into_dyn())
}

/// Runs the model at `path` on CPU and returns every output as f32, by name.
pub(crate) fn run_f32(path: &Path, inputs: Vec<(String, DynValue)>) -> HashMap<String, ArrayD<f32>> {
    let mut session = session(path);
    let names: Vec<String> = session.outputs().iter().map(|o| o.name().to_string()).collect();
    let outputs = session.run(inputs).unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    names
        .into_iter()
        .map(|n| {
            let a = outputs[n.as_str()].try_extract_array::<f32>().unwrap_or_else(|e| panic!("output {n}: {e}")).to_owned();
            (n, a)
        })
        .collect()
}

/// Asserts equal shapes and `max |got - want| <= tol`.
#[track_caller]
pub(crate) fn assert_close(got: &ArrayD<f32>, want: &ArrayD<f32>, tol: f32) {
    assert_eq!(got.shape(), want.shape(), "shape");
    let worst = got.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= tol, "max abs difference {worst} > {tol}\n got: {got:?}\nwant: {want:?}");
}
