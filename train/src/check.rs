//! Cross-checks of training graphs (docs/training.md §3, "Verification"), shared by the unit
//! tests of every VJP rule and the integration tests of whole training graphs:
//!
//! - [`finite_difference_failures`]: analytic gradients on the f64 interpreter against
//!   central differences of the loss, h = 1e-6·max(1, |θ|), tolerance
//!   1e-8·max(1, |L|) + 1e-6·|g| (the absolute part is the f64 rounding of L divided by 2h);
//! - [`onnx_runtime_disagreements`]: the same graph run by ONNX Runtime in f32 against the
//!   interpreter's analytic gradients, tolerance 1e-5·max|g| + 1e-4·|g|.

use std::collections::HashMap;
use std::path::Path;

use loc3r_export::graph::{GraphBuilder, Value};
use ndarray::Dimension;
use ort::value::DynValue;

use crate::interp::{evaluate, Tensor};

fn scalar(t: &Tensor) -> f64 {
    t.float().ok().and_then(|a| a.iter().next().copied()).unwrap_or(f64::NAN)
}

/// One line per gradient element of `params` (at most `per_param` evenly strided elements
/// each, first and last included) whose analytic value `grads` disagrees with central
/// differences of `loss`. Panics when the graph cannot be evaluated (a broken test setup).
pub fn finite_difference_failures(
    g: &GraphBuilder,
    feeds: &HashMap<String, Tensor>,
    loss: &Value,
    params: &[Value],
    grads: &[Value],
    label: &str,
    per_param: usize,
) -> Vec<String> {
    let mut failures = Vec::new();
    let want: Vec<&str> = std::iter::once(loss.name()).chain(grads.iter().map(Value::name)).collect();
    let out = evaluate(g, feeds, &want).unwrap_or_else(|e| panic!("{label}: backward: {e}"));
    let absolute = 1e-8 * scalar(&out[loss.name()]).abs().max(1.0);
    for (param, grad) in params.iter().zip(grads) {
        let analytic = out[grad.name()].float().expect("float gradient").clone();
        let theta = feeds[param.name()].float().expect("float param").clone();
        assert_eq!(analytic.shape(), theta.shape(), "{label}: gradient of {} has the wrong shape", param.name());
        let n = theta.len();
        let stride = if n <= per_param { 1 } else { (n - 1) / (per_param - 1).max(1) };
        for (i, (idx, &x)) in theta.indexed_iter().enumerate() {
            if i % stride != 0 && i != n - 1 {
                continue;
            }
            let h = 1e-6 * x.abs().max(1.0);
            let at = |delta: f64| {
                let mut shifted = theta.clone();
                shifted[&idx] = x + delta;
                let mut feeds = feeds.clone();
                feeds.insert(param.name().to_string(), Tensor::Float(shifted));
                scalar(&evaluate(g, &feeds, &[loss.name()]).expect("forward")[loss.name()])
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            let a = analytic[&idx];
            if (a - numeric).abs() > absolute + 1e-6 * a.abs() {
                failures.push(format!("{label}: d/d{}{:?}: analytic {a:e}, numeric {numeric:e}", param.name(), idx.slice()));
            }
        }
    }
    failures
}

/// Interpreter feeds as ONNX Runtime values (floats as f32).
pub fn ort_feeds(feeds: &HashMap<String, Tensor>) -> Vec<(String, DynValue)> {
    feeds
        .iter()
        .map(|(n, t)| {
            let v = match t {
                Tensor::Float(a) => ort::value::Tensor::from_array(a.mapv(|x| x as f32)).expect("f32 tensor").into_dyn(),
                Tensor::Int(a) => ort::value::Tensor::from_array(a.clone()).expect("i64 tensor").into_dyn(),
                Tensor::Bool(a) => ort::value::Tensor::from_array(a.clone()).expect("bool tensor").into_dyn(),
            };
            (n.clone(), v)
        })
        .collect()
}

/// Saves `g` (whose outputs include `grads`) under `dir`, runs it on ONNX Runtime (CPU, f32,
/// unoptimised so the emitted nodes run as they are) and returns one line per gradient output
/// that disagrees with the interpreter, and the worst max-abs difference relative to each
/// gradient's scale.
pub fn onnx_runtime_disagreements(g: &GraphBuilder, feeds: &HashMap<String, Tensor>, grads: &[&str], dir: &Path) -> (Vec<String>, f64) {
    let stats = g.save(dir).unwrap_or_else(|e| panic!("saving {}: {e}", g.name()));
    let env = loc3r_bundle::ort_env::environment().unwrap_or_else(|e| panic!("{e}"));
    let mut session = ort::session::Session::builder(env)
        .and_then(|b| b.with_intra_threads(1).map_err(ort::Error::<()>::from))
        .and_then(|b| b.with_optimization_level(ort::session::builder::GraphOptimizationLevel::Disable).map_err(ort::Error::<()>::from))
        .and_then(|mut b| b.commit_from_file(&stats.onnx_path))
        .unwrap_or_else(|e| panic!("ONNX Runtime cannot load {}: {e}", stats.onnx_path.display()));
    let got = session.run(ort_feeds(feeds)).unwrap_or_else(|e| panic!("ONNX Runtime cannot run {}: {e}", g.name()));
    let want = evaluate(g, feeds, grads).unwrap_or_else(|e| panic!("interpreter: {e}"));
    let (mut failures, mut worst) = (Vec::new(), 0.0f64);
    for name in grads {
        let ort = got[*name].try_extract_array::<f32>().expect("f32 gradient");
        let reference = want[*name].float().expect("float gradient");
        if ort.shape() != reference.shape() {
            failures.push(format!("{name}: ORT shape {:?}, interpreter {:?}", ort.shape(), reference.shape()));
            continue;
        }
        let scale = reference.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let mut max_diff = 0.0f64;
        for (a, b) in ort.iter().zip(reference.iter()) {
            let d = (f64::from(*a) - b).abs();
            max_diff = max_diff.max(d);
            if d > 1e-5 * scale + 1e-4 * b.abs() {
                failures.push(format!("{name}: ORT {a:e}, interpreter {b:e} (scale {scale:e})"));
                break;
            }
        }
        if scale > 0.0 {
            worst = worst.max(max_diff / scale);
        }
    }
    (failures, worst)
}
