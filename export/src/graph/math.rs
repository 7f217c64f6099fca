//! Math ops: elementwise (unary, binary with broadcasting, comparisons), `MatMul`/`Gemm`,
//! `Softmax`, reductions, `Clip`, `Where`.
//!
//! Every wrapper emits exactly one node, named `<scope>/<step>`.

use super::builder::Scope;
use super::constant::ConstTensor;
use super::{shape, Attr, Value};
use crate::tensor::DType;

macro_rules! unary_ops {
    ($($method:ident => $op:literal),* $(,)?) => {
        impl Scope<'_> {
            $(
                #[doc = concat!("`", $op, "(x)`, elementwise; same dtype and shape as `x`.")]
                pub fn $method(&mut self, step: &str, x: &Value) -> Value {
                    self.emit(step, $op, &[Some(x)], vec![], x.dtype(), x.shape().to_vec())
                }
            )*
        }
    };
}

unary_ops! {
    identity => "Identity",
    neg => "Neg",
    abs => "Abs",
    sqrt => "Sqrt",
    reciprocal => "Reciprocal",
    exp => "Exp",
    log => "Log",
    tanh => "Tanh",
    erf => "Erf",
    sigmoid => "Sigmoid",
    relu => "Relu",
    sin => "Sin",
    cos => "Cos",
    floor => "Floor",
    ceil => "Ceil",
    not => "Not",
}

macro_rules! binary_ops {
    ($($method:ident => $op:literal),* $(,)?) => {
        impl Scope<'_> {
            $(
                #[doc = concat!("`", $op, "(a, b)` with numpy broadcasting; `a` and `b` must share a dtype.")]
                pub fn $method(&mut self, step: &str, a: &Value, b: &Value) -> Value {
                    self.binary(step, $op, a, b)
                }
            )*
        }
    };
}

binary_ops! {
    add => "Add",
    sub => "Sub",
    mul => "Mul",
    div => "Div",
    max => "Max",
    min => "Min",
    and => "And",
    or => "Or",
}

macro_rules! compare_ops {
    ($($method:ident => $op:literal),* $(,)?) => {
        impl Scope<'_> {
            $(
                #[doc = concat!("`", $op, "(a, b)` with numpy broadcasting; gives `bool`.")]
                pub fn $method(&mut self, step: &str, a: &Value, b: &Value) -> Value {
                    self.same_dtype(step, $op, &[a, b]);
                    let out = self.broadcast_shape(step, &[a, b]);
                    self.emit(step, $op, &[Some(a), Some(b)], vec![], DType::Bool, out)
                }
            )*
        }
    };
}

compare_ops! {
    equal => "Equal",
    less => "Less",
    less_or_equal => "LessOrEqual",
    greater => "Greater",
    greater_or_equal => "GreaterOrEqual",
}

macro_rules! scalar_ops {
    ($($method:ident => $binary:ident),* $(,)?) => {
        impl Scope<'_> {
            $(
                #[doc = concat!("`", stringify!($binary), "(x, c)` with a scalar constant `c` of `x`'s dtype (`const/<dtype>/<c>`).")]
                pub fn $method(&mut self, step: &str, x: &Value, c: f64) -> Value {
                    let c = self.constant(ConstTensor::scalar(x.dtype(), c));
                    self.$binary(step, x, &c)
                }
            )*
        }
    };
}

scalar_ops! {
    add_scalar => add,
    sub_scalar => sub,
    mul_scalar => mul,
    div_scalar => div,
    pow_scalar => pow,
}

/// Options of [`Scope::gemm`]: `Y = alpha·A'·B' + beta·C`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemmOptions {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl Default for GemmOptions {
    fn default() -> Self {
        GemmOptions { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: false }
    }
}

impl Scope<'_> {
    fn broadcast_shape(&mut self, step: &str, inputs: &[&Value]) -> Vec<super::Dim> {
        let shapes: Vec<&[super::Dim]> = inputs.iter().map(|v| v.shape()).collect();
        let rule = shape::broadcast(&shapes);
        self.shape_or(step, rule, inputs[0].shape())
    }

    fn binary(&mut self, step: &str, op: &str, a: &Value, b: &Value) -> Value {
        let dtype = self.same_dtype(step, op, &[a, b]);
        let out = self.broadcast_shape(step, &[a, b]);
        self.emit(step, op, &[Some(a), Some(b)], vec![], dtype, out)
    }

    /// `Pow(x, y)`, broadcasting; the exponent may have another numeric dtype. Result has `x`'s dtype.
    pub fn pow(&mut self, step: &str, x: &Value, y: &Value) -> Value {
        let out = self.broadcast_shape(step, &[x, y]);
        self.emit(step, "Pow", &[Some(x), Some(y)], vec![], x.dtype(), out)
    }

    /// `MatMul(a, b)` with numpy semantics: `[.., M, K] x [.., K, N] -> [.., M, N]`.
    pub fn matmul(&mut self, step: &str, a: &Value, b: &Value) -> Value {
        let dtype = self.same_dtype(step, "MatMul", &[a, b]);
        let rule = shape::matmul(a.shape(), b.shape());
        let out = self.shape_or(step, rule, a.shape());
        self.emit(step, "MatMul", &[Some(a), Some(b)], vec![], dtype, out)
    }

    /// `Gemm(a, b, c)`: 2-D only, `alpha·A'·B' + beta·C` (primes: optional transposes).
    pub fn gemm(&mut self, step: &str, a: &Value, b: &Value, c: Option<&Value>, opts: GemmOptions) -> Value {
        let dtype = self.same_dtype(step, "Gemm", &[a, b]);
        let rule = shape::gemm(a.shape(), b.shape(), opts.trans_a, opts.trans_b);
        let out = self.shape_or(step, rule, a.shape());
        let attrs = vec![
            ("alpha", Attr::Float(opts.alpha)),
            ("beta", Attr::Float(opts.beta)),
            ("transA", Attr::Int(i64::from(opts.trans_a))),
            ("transB", Attr::Int(i64::from(opts.trans_b))),
        ];
        self.emit(step, "Gemm", &[Some(a), Some(b), c], attrs, dtype, out)
    }

    /// `Softmax(x)` along `axis`.
    pub fn softmax(&mut self, step: &str, x: &Value, axis: i64) -> Value {
        self.softmax_like(step, "Softmax", x, axis)
    }

    /// `LogSoftmax(x)` along `axis`.
    pub fn log_softmax(&mut self, step: &str, x: &Value, axis: i64) -> Value {
        self.softmax_like(step, "LogSoftmax", x, axis)
    }

    fn softmax_like(&mut self, step: &str, op: &str, x: &Value, axis: i64) -> Value {
        if let Err(e) = shape::axis(axis, x.rank()) {
            self.fail(step, e);
        }
        self.emit(step, op, &[Some(x)], vec![("axis", Attr::Int(axis))], x.dtype(), x.shape().to_vec())
    }

    /// `ReduceMean(x)` over `axes` (all axes if empty).
    pub fn reduce_mean(&mut self, step: &str, x: &Value, axes: &[i64], keepdims: bool) -> Value {
        self.reduce(step, "ReduceMean", x, axes, keepdims)
    }

    /// `ReduceSum(x)` over `axes` (all axes if empty).
    pub fn reduce_sum(&mut self, step: &str, x: &Value, axes: &[i64], keepdims: bool) -> Value {
        self.reduce(step, "ReduceSum", x, axes, keepdims)
    }

    /// `ReduceMax(x)` over `axes` (all axes if empty).
    pub fn reduce_max(&mut self, step: &str, x: &Value, axes: &[i64], keepdims: bool) -> Value {
        self.reduce(step, "ReduceMax", x, axes, keepdims)
    }

    /// `ReduceMin(x)` over `axes` (all axes if empty).
    pub fn reduce_min(&mut self, step: &str, x: &Value, axes: &[i64], keepdims: bool) -> Value {
        self.reduce(step, "ReduceMin", x, axes, keepdims)
    }

    /// `ReduceL2(x)` (Euclidean norm) over `axes` (all axes if empty).
    pub fn reduce_l2(&mut self, step: &str, x: &Value, axes: &[i64], keepdims: bool) -> Value {
        self.reduce(step, "ReduceL2", x, axes, keepdims)
    }

    /// A reduction. `ReduceSum` takes its axes as an input since opset 13, the others since
    /// opset 18 (an attribute before); the wrapper follows the graph's opset.
    fn reduce(&mut self, step: &str, op: &str, x: &Value, axes: &[i64], keepdims: bool) -> Value {
        let rule = shape::reduce(x.shape(), axes, keepdims);
        let out = self.shape_or(step, rule, x.shape());
        let mut attrs = vec![("keepdims", Attr::Int(i64::from(keepdims)))];
        let axes_as_input = op == "ReduceSum" || self.opset() >= 18;
        let axes_value = if axes_as_input && !axes.is_empty() { Some(self.ints(axes)) } else { None };
        if !axes_as_input && !axes.is_empty() {
            attrs.push(("axes", Attr::Ints(axes.to_vec())));
        }
        self.emit(step, op, &[Some(x), axes_value.as_ref()], attrs, x.dtype(), out)
    }

    /// `ArgMax(x)` along `axis`; gives `i64`.
    pub fn argmax(&mut self, step: &str, x: &Value, axis: i64, keepdims: bool) -> Value {
        let rule = shape::reduce(x.shape(), &[axis], keepdims);
        let out = self.shape_or(step, rule, x.shape());
        let attrs = vec![("axis", Attr::Int(axis)), ("keepdims", Attr::Int(i64::from(keepdims)))];
        self.emit(step, "ArgMax", &[Some(x)], attrs, DType::I64, out)
    }

    /// `Clip(x, min, max)`; bounds become scalar constants of `x`'s dtype, `None` leaves one open.
    pub fn clip(&mut self, step: &str, x: &Value, min: Option<f64>, max: Option<f64>) -> Value {
        let lo = min.map(|v| self.constant(ConstTensor::scalar(x.dtype(), v)));
        let hi = max.map(|v| self.constant(ConstTensor::scalar(x.dtype(), v)));
        self.emit(step, "Clip", &[Some(x), lo.as_ref(), hi.as_ref()], vec![], x.dtype(), x.shape().to_vec())
    }

    /// `Where(cond, x, y)`: `x` where `cond` (bool) holds, else `y`; all three broadcast.
    #[doc(alias = "Where")]
    pub fn where_(&mut self, step: &str, cond: &Value, x: &Value, y: &Value) -> Value {
        self.expect_dtype(step, "Where's condition", cond, &[DType::Bool]);
        let dtype = self.same_dtype(step, "Where", &[x, y]);
        let out = self.broadcast_shape(step, &[cond, x, y]);
        self.emit(step, "Where", &[Some(cond), Some(x), Some(y)], vec![], dtype, out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ndarray::{ArrayD, IxDyn};

    use crate::dims;
    use crate::graph::testing::{assert_close, feed_f32, run_f32};
    use crate::graph::{Dim, GraphBuilder};
    use crate::tensor::{DType, F32Tensor};

    fn arr(shape: &[usize], f: impl Fn(usize) -> f32) -> ArrayD<f32> {
        let n = shape.iter().product();
        ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(f).collect()).unwrap()
    }

    #[test]
    fn dtype_and_broadcast_mistakes_are_problems() {
        let mut g = GraphBuilder::new("t");
        let a = g.input("a", DType::F32, [2usize, 3]);
        let b = g.input("b", DType::F16, [2usize, 3]);
        let c = g.input("c", DType::F32, [4usize]);
        let mut s = g.scope("m");
        s.add("mixed", &a, &b);
        s.mul("bad_broadcast", &a, &c);
        s.matmul("bad_matmul", &a, &a);
        let err = g.check().unwrap_err().to_string();
        assert!(err.contains("node `m/mixed`: Add inputs differ in dtype"), "{err}");
        assert!(err.contains("node `m/bad_broadcast`: cannot broadcast 3 with 4"), "{err}");
        assert!(err.contains("node `m/bad_matmul`: MatMul inner dimensions differ"), "{err}");
    }

    #[test]
    fn reduce_axes_follow_the_opset() {
        for (opset, axes_input) in [(17, false), (18, true)] {
            let mut g = GraphBuilder::new("t").with_opset(opset);
            let x = g.input("x", DType::F32, dims!["b", 8]);
            let y = g.scope("m").reduce_mean("mean", &x, &[-1], true);
            assert_eq!(y.shape(), &[Dim::sym("b"), Dim::Fixed(1)][..]);
            let node = g.nodes.last().unwrap();
            assert_eq!(node.inputs.len() == 2, axes_input, "opset {opset}");
            assert_eq!(node.attrs.iter().any(|(k, _)| k == "axes"), !axes_input, "opset {opset}");
        }
    }

    /// Elementwise, scalar, comparison, Where, Clip and reductions against plain Rust, on
    /// opsets 17 and 18 (reduction axes as attribute vs input).
    #[test]
    fn elementwise_and_reductions_match_reference() {
        for opset in [17, 18] {
            let dir = tempfile::tempdir().unwrap();
            let mut g = GraphBuilder::new("math").with_opset(opset);
            let x = g.input("x", DType::F32, dims!["b", 4]);
            let bias = g.initializer("bias", Arc::new(F32Tensor::new(vec![4], vec![0.5, -1.0, 2.0, 0.0])), DType::F32);
            let mut s = g.scope("m");
            let t = s.add("add", &x, &bias);
            let t = s.mul_scalar("scale", &t, 2.0);
            let e = s.exp("exp", &t);
            let e = s.tanh("tanh", &e);
            let r = s.relu("relu", &t);
            let zero = s.scalar_f32(0.0);
            let pos = s.greater("pos", &t, &zero);
            let w = s.where_("where", &pos, &e, &r);
            let w = s.clip("clip", &w, Some(-0.5), Some(0.75));
            let m = s.reduce_mean("mean", &t, &[-1], true);
            let l2 = s.reduce_l2("l2", &t, &[1], false);
            let mx = s.reduce_max("max", &t, &[], false);
            let p = s.pow_scalar("sq", &t, 2.0);
            let p = s.reduce_sum("sum", &p, &[1], false);
            let p = s.sqrt("sqrt", &p);
            g.output("w", &w);
            g.output("mean", &m);
            g.output("l2", &l2);
            g.output("max", &mx);
            g.output("norm", &p);
            g.save(dir.path()).unwrap();

            let xv = arr(&[3, 4], |i| (i as f32 - 5.0) * 0.37);
            let out = run_f32(&dir.path().join("math.onnx"), vec![feed_f32("x", xv.clone())]);
            let bias = [0.5f32, -1.0, 2.0, 0.0];
            let t = arr(&[3, 4], |i| (xv.as_slice().unwrap()[i] + bias[i % 4]) * 2.0);
            let tw = t.mapv(|v| if v > 0.0 { v.exp().tanh() } else { v.max(0.0) }.clamp(-0.5, 0.75));
            assert_close(&out["w"], &tw, 1e-5);
            let mean = arr(&[3, 1], |r| (0..4).map(|c| t[[r, c]]).sum::<f32>() / 4.0);
            assert_close(&out["mean"], &mean, 1e-5);
            let l2 = arr(&[3], |r| (0..4).map(|c| t[[r, c]] * t[[r, c]]).sum::<f32>().sqrt());
            assert_close(&out["l2"], &l2, 1e-5);
            assert_close(&out["norm"], &l2, 1e-5);
            let mx = t.iter().cloned().fold(f32::MIN, f32::max);
            assert_close(&out["max"], &ArrayD::from_elem(IxDyn(&[]), mx), 1e-5);
        }
    }

    #[test]
    fn gemm_matches_reference() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = GraphBuilder::new("gemm");
        let a = g.input("a", DType::F32, dims!["m", 3]);
        let b = g.constant_f32(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let c = g.constant_f32(&[0.5, -0.5], &[2]);
        let opts = crate::graph::GemmOptions { alpha: 2.0, trans_b: true, ..Default::default() };
        let y = g.scope("fc").gemm("Gemm", &a, &b, Some(&c), opts);
        assert_eq!(y.shape(), &dims!["m", 2][..]);
        g.output("y", &y);
        g.save(dir.path()).unwrap();
        let av = arr(&[2, 3], |i| i as f32 * 0.1);
        let out = run_f32(&dir.path().join("gemm.onnx"), vec![feed_f32("a", av.clone())]);
        let bm = [[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let want = arr(&[2, 2], |i| {
            let (r, n) = (i / 2, i % 2);
            2.0 * (0..3).map(|k| av[[r, k]] * bm[n][k]).sum::<f32>() + [0.5, -0.5][n]
        });
        assert_close(&out["y"], &want, 1e-5);
    }
}
