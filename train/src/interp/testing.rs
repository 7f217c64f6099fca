//! Test support: building feeds, running one output, comparing with hand-computed values.

use std::collections::HashMap;

use loc3r_export::graph::{GraphBuilder, Value};
use ndarray::{ArrayD, IxDyn};

use super::{evaluate, Tensor};

pub(crate) fn floats(shape: &[usize], values: &[f64]) -> Tensor {
    Tensor::Float(ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).expect("test tensor shape"))
}

pub(crate) fn ints(shape: &[usize], values: &[i64]) -> Tensor {
    Tensor::Int(ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).expect("test tensor shape"))
}

pub(crate) fn bools(shape: &[usize], values: &[bool]) -> Tensor {
    Tensor::Bool(ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).expect("test tensor shape"))
}

/// `n` distinct values `offset + i·step`.
pub(crate) fn ramp(n: usize, offset: f64, step: f64) -> Vec<f64> {
    (0..n).map(|i| offset + i as f64 * step).collect()
}

/// Evaluates the values `outs` of `g` with `feeds`.
#[track_caller]
pub(crate) fn eval(g: &GraphBuilder, feeds: &[(&str, Tensor)], outs: &[&Value]) -> Vec<Tensor> {
    g.check().expect("the test graph is valid");
    let feeds: HashMap<String, Tensor> = feeds.iter().map(|(n, t)| (n.to_string(), t.clone())).collect();
    let names: Vec<&str> = outs.iter().map(|v| v.name()).collect();
    let mut got = evaluate(g, &feeds, &names).unwrap_or_else(|e| panic!("{e}"));
    names.iter().map(|n| got.remove(*n).expect("every requested output comes back")).collect()
}

/// Evaluates the single value `out`.
#[track_caller]
pub(crate) fn eval1(g: &GraphBuilder, feeds: &[(&str, Tensor)], out: &Value) -> Tensor {
    eval(g, feeds, &[out]).remove(0)
}

/// Asserts a float tensor of `shape` equal to `want` within 1e-12 relative.
#[track_caller]
pub(crate) fn assert_floats(t: &Tensor, shape: &[usize], want: &[f64]) {
    let a = t.float().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.shape(), shape, "shape");
    let got: Vec<f64> = a.iter().copied().collect();
    assert_eq!(got.len(), want.len(), "element count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= 1e-12 * w.abs().max(1.0) || (g.is_nan() && w.is_nan());
        assert!(ok, "element {i}: got {g}, want {w}\n got: {got:?}\nwant: {want:?}");
    }
}

/// Asserts an integer tensor of `shape` equal to `want`.
#[track_caller]
pub(crate) fn assert_ints(t: &Tensor, shape: &[usize], want: &[i64]) {
    let a = t.int().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.shape(), shape, "shape");
    assert_eq!(a.iter().copied().collect::<Vec<_>>(), want);
}

/// Asserts a bool tensor of `shape` equal to `want`.
#[track_caller]
pub(crate) fn assert_bools(t: &Tensor, shape: &[usize], want: &[bool]) {
    let a = t.boolean().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.shape(), shape, "shape");
    assert_eq!(a.iter().copied().collect::<Vec<_>>(), want);
}
