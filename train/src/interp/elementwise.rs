//! Elementwise ops: unary math, binary arithmetic with numpy broadcasting, variadic
//! `Sum`/`Max`/`Min`/`Mean`, comparisons and logic, `Where`, `Clip`, `Cast`.

use ndarray::ArrayD;

use super::args::{one, NodeArgs};
use super::tensor::{by_kind, zip2, zip3, Elem, Tensor};
use super::OpResult;

/// Runs `a` if it is an elementwise op.
pub(super) fn run(a: &NodeArgs) -> Option<OpResult> {
    Some(match a.op() {
        "Identity" => a.input(0).map(|t| vec![t.clone()]),
        "Neg" => unary_num(a, |x| -x, |x| Some(x.wrapping_neg())),
        "Abs" => unary_num(a, f64::abs, |x| Some(x.wrapping_abs())),
        "Sign" => unary_num(a, sign, |x| Some(x.signum())),
        "Relu" => unary_num(a, |x| if x < 0.0 { 0.0 } else { x }, |x| Some(x.max(0))),
        "Sqrt" => unary_float(a, f64::sqrt),
        "Reciprocal" => unary_float(a, f64::recip),
        "Exp" => unary_float(a, f64::exp),
        "Log" => unary_float(a, f64::ln),
        "Tanh" => unary_float(a, f64::tanh),
        "Sigmoid" => unary_float(a, sigmoid),
        "Sin" => unary_float(a, f64::sin),
        "Cos" => unary_float(a, f64::cos),
        "Floor" => unary_float(a, f64::floor),
        "Ceil" => unary_float(a, f64::ceil),
        "Erf" => unary_float(a, libm::erf),
        "Not" => a.typed::<bool>(0).and_then(|x| one(Tensor::Bool(x.mapv(|v| !v)))),
        "Add" => binary_num(a, |x, y| x + y, i64::checked_add),
        "Sub" => binary_num(a, |x, y| x - y, i64::checked_sub),
        "Mul" => binary_num(a, |x, y| x * y, i64::checked_mul),
        "Div" => binary_num(a, |x, y| x / y, i64::checked_div),
        "Pow" => pow(a),
        "Sum" => variadic(a, |x, y| x + y, i64::checked_add),
        "Max" => variadic(a, |x, y| if x.is_nan() || x >= y { x } else { y }, |x, y| Some(x.max(y))),
        "Min" => variadic(a, |x, y| if x.is_nan() || x <= y { x } else { y }, |x, y| Some(x.min(y))),
        "Mean" => mean(a),
        "Equal" => compare(a, |o| o == std::cmp::Ordering::Equal),
        "Less" => compare(a, |o| o == std::cmp::Ordering::Less),
        "LessOrEqual" => compare(a, |o| o != std::cmp::Ordering::Greater),
        "Greater" => compare(a, |o| o == std::cmp::Ordering::Greater),
        "GreaterOrEqual" => compare(a, |o| o != std::cmp::Ordering::Less),
        "And" => logic(a, |x, y| x && y),
        "Or" => logic(a, |x, y| x || y),
        "Xor" => logic(a, |x, y| x != y),
        "Where" => where_(a),
        "Clip" => clip(a),
        "Cast" => cast(a),
        _ => return None,
    })
}

fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
}

/// The logistic function, without overflow for large |x|.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn unary_float(a: &NodeArgs, f: impl Fn(f64) -> f64) -> OpResult {
    one(Tensor::Float(a.float(0)?.mapv(f)))
}

/// A unary op defined on floats and integers (`None` from `int`: overflow).
fn unary_num(a: &NodeArgs, float: impl Fn(f64) -> f64, int: impl Fn(i64) -> Option<i64>) -> OpResult {
    match a.input(0)? {
        Tensor::Float(x) => one(Tensor::Float(x.mapv(float))),
        Tensor::Int(x) => one(Tensor::Int(checked(x.mapv(int))?)),
        Tensor::Bool(_) => Err("input 0 must be numeric, got a bool tensor".into()),
    }
}

/// Unwraps per-element integer results, failing on the first `None`.
fn checked(a: ArrayD<Option<i64>>) -> Result<ArrayD<i64>, String> {
    if a.iter().any(Option::is_none) {
        return Err("integer overflow or division by zero".into());
    }
    Ok(a.mapv(|v| v.unwrap_or_default()))
}

/// A broadcasting binary op on two tensors of the same numeric kind.
fn binary(x: &Tensor, y: &Tensor, float: impl Fn(f64, f64) -> f64, int: impl Fn(i64, i64) -> Option<i64>) -> Result<Tensor, String> {
    match (x, y) {
        (Tensor::Float(x), Tensor::Float(y)) => Ok(Tensor::Float(zip2(x, y, float)?)),
        (Tensor::Int(x), Tensor::Int(y)) => Ok(Tensor::Int(checked(zip2(x, y, int)?)?)),
        _ => Err(format!("inputs must both be float or both integer, got {} and {}", x.kind(), y.kind())),
    }
}

fn binary_num(a: &NodeArgs, float: impl Fn(f64, f64) -> f64, int: impl Fn(i64, i64) -> Option<i64>) -> OpResult {
    one(binary(a.input(0)?, a.input(1)?, float, int)?)
}

/// `Sum`, `Max`, `Min`: a left fold of the broadcasting binary op over all inputs.
fn variadic(a: &NodeArgs, float: impl Fn(f64, f64) -> f64 + Copy, int: impl Fn(i64, i64) -> Option<i64> + Copy) -> OpResult {
    let mut acc = a.input(0)?.clone();
    for i in 1..a.inputs.len() {
        acc = binary(&acc, a.input(i)?, float, int)?;
    }
    one(acc)
}

fn mean(a: &NodeArgs) -> OpResult {
    let mut acc = a.float(0)?.clone();
    for i in 1..a.inputs.len() {
        acc = zip2(&acc, a.float(i)?, |x, y| x + y)?;
    }
    let n = a.inputs.len() as f64;
    one(Tensor::Float(acc.mapv(|v| v / n)))
}

/// `Pow(x, y)`: the result has `x`'s kind; the exponent may be float or integer.
fn pow(a: &NodeArgs) -> OpResult {
    let out = match (a.input(0)?, a.input(1)?) {
        (Tensor::Float(x), Tensor::Float(y)) => Tensor::Float(zip2(x, y, f64::powf)?),
        (Tensor::Float(x), Tensor::Int(y)) => Tensor::Float(zip2(x, y, |b, e| b.powf(e as f64))?),
        (Tensor::Int(x), Tensor::Int(y)) => Tensor::Int(zip2(x, y, |b, e| (b as f64).powf(e as f64) as i64)?),
        (Tensor::Int(x), Tensor::Float(y)) => Tensor::Int(zip2(x, y, |b, e| (b as f64).powf(e) as i64)?),
        (x, y) => return Err(format!("Pow needs numeric inputs, got {} and {}", x.kind(), y.kind())),
    };
    one(out)
}

/// A comparison of two tensors of one kind; `test` sees `x` compared to `y`. Any
/// comparison with NaN is false.
fn compare(a: &NodeArgs, test: impl Fn(std::cmp::Ordering) -> bool) -> OpResult {
    let out = match (a.input(0)?, a.input(1)?) {
        (Tensor::Float(x), Tensor::Float(y)) => zip2(x, y, |x, y| x.partial_cmp(&y).is_some_and(&test))?,
        (Tensor::Int(x), Tensor::Int(y)) => zip2(x, y, |x, y| test(x.cmp(&y)))?,
        (Tensor::Bool(x), Tensor::Bool(y)) => zip2(x, y, |x, y| test(x.cmp(&y)))?,
        (x, y) => return Err(format!("inputs must share a kind, got {} and {}", x.kind(), y.kind())),
    };
    one(Tensor::Bool(out))
}

fn logic(a: &NodeArgs, f: impl Fn(bool, bool) -> bool) -> OpResult {
    one(Tensor::Bool(zip2(a.typed::<bool>(0)?, a.typed::<bool>(1)?, f)?))
}

fn where_(a: &NodeArgs) -> OpResult {
    let cond = a.typed::<bool>(0)?;
    fn pick<T: Elem>(cond: &ArrayD<bool>, a: &NodeArgs) -> OpResult {
        one(T::wrap(zip3(cond, a.typed::<T>(1)?, a.typed::<T>(2)?, |c, x, y| if c { x } else { y })?))
    }
    by_kind!(a.input(1)?, T => pick::<T>(cond, a))
}

/// `Clip(x, min, max)`: `min`/`max` are optional scalars; NaN stays NaN.
fn clip(a: &NodeArgs) -> OpResult {
    fn bound<T: Elem>(a: &NodeArgs, i: usize) -> Result<Option<T>, String> {
        let Some(t) = a.opt(i) else { return Ok(None) };
        let v = T::of(t).map_err(|e| format!("input {i}: {e}"))?;
        match v.len() {
            1 => Ok(v.iter().next().copied()),
            n => Err(format!("input {i} must hold one value, got {n}")),
        }
    }
    fn apply<T: Elem + PartialOrd>(a: &NodeArgs) -> OpResult {
        let (lo, hi) = (bound::<T>(a, 1)?, bound::<T>(a, 2)?);
        one(T::wrap(a.typed::<T>(0)?.mapv(|mut v| {
            if lo.is_some_and(|lo| v < lo) {
                v = lo.unwrap_or(v);
            }
            if hi.is_some_and(|hi| v > hi) {
                v = hi.unwrap_or(v);
            }
            v
        })))
    }
    match a.input(0)? {
        Tensor::Float(_) => apply::<f64>(a),
        Tensor::Int(_) => apply::<i64>(a),
        Tensor::Bool(_) => Err("Clip needs a numeric input, got a bool tensor".into()),
    }
}

/// What `Cast`'s `to` (an ONNX `TensorProto.DataType` code) becomes here.
enum CastTarget {
    Float,
    /// An integer type, with a function wrapping an i64 into its range (two's complement).
    Int(fn(i64) -> i64),
    Bool,
}

fn cast_target(code: i64) -> Result<CastTarget, String> {
    Ok(match code {
        1 | 10 | 11 | 16 => CastTarget::Float,
        2 => CastTarget::Int(|v| i64::from(v as u8)),
        3 => CastTarget::Int(|v| i64::from(v as i8)),
        4 => CastTarget::Int(|v| i64::from(v as u16)),
        5 => CastTarget::Int(|v| i64::from(v as i16)),
        6 => CastTarget::Int(|v| i64::from(v as i32)),
        12 => CastTarget::Int(|v| i64::from(v as u32)),
        7 | 13 => CastTarget::Int(|v| v),
        9 => CastTarget::Bool,
        other => return Err(format!("Cast to element type {other} is not supported (float, integer and bool types are)")),
    })
}

/// `Cast`: float types are all f64 (identity); float→int truncates toward zero;
/// anything→bool is `x != 0`.
fn cast(a: &NodeArgs) -> OpResult {
    let to = cast_target(a.int_attr("to", -1)?)?;
    let out = match (a.input(0)?, to) {
        (Tensor::Float(x), CastTarget::Float) => Tensor::Float(x.clone()),
        (Tensor::Float(x), CastTarget::Int(wrap)) => Tensor::Int(x.mapv(|v| wrap(v.trunc() as i64))),
        (Tensor::Float(x), CastTarget::Bool) => Tensor::Bool(x.mapv(|v| v != 0.0)),
        (Tensor::Int(x), CastTarget::Float) => Tensor::Float(x.mapv(|v| v as f64)),
        (Tensor::Int(x), CastTarget::Int(wrap)) => Tensor::Int(x.mapv(wrap)),
        (Tensor::Int(x), CastTarget::Bool) => Tensor::Bool(x.mapv(|v| v != 0)),
        (Tensor::Bool(x), CastTarget::Float) => Tensor::Float(x.mapv(|v| f64::from(u8::from(v)))),
        (Tensor::Bool(x), CastTarget::Int(_)) => Tensor::Int(x.mapv(i64::from)),
        (Tensor::Bool(x), CastTarget::Bool) => Tensor::Bool(x.clone()),
    };
    one(out)
}

#[cfg(test)]
mod tests {
    use loc3r_export::graph::GraphBuilder;
    use loc3r_export::DType;

    use crate::interp::testing::{assert_bools, assert_floats, assert_ints, bools, eval, eval1, floats, ints, ramp};

    #[test]
    fn unary_float_ops_follow_their_definitions() {
        let xs = [-1.5, -0.5, 0.0, 0.5, 1.5, 2.5];
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [2usize, 3]);
        let mut s = g.scope("t");
        let outs = [
            s.identity("Identity", &x),
            s.neg("Neg", &x),
            s.abs("Abs", &x),
            s.exp("Exp", &x),
            s.tanh("Tanh", &x),
            s.sigmoid("Sigmoid", &x),
            s.relu("Relu", &x),
            s.sin("Sin", &x),
            s.cos("Cos", &x),
            s.floor("Floor", &x),
            s.ceil("Ceil", &x),
            s.op("Sign", "Sign", &[&x], &[], DType::F32, [2usize, 3]),
        ];
        let fns: [fn(f64) -> f64; 12] = [
            |v| v,
            |v| -v,
            f64::abs,
            f64::exp,
            |v| (v.exp() - (-v).exp()) / (v.exp() + (-v).exp()),
            |v| 1.0 / (1.0 + (-v).exp()),
            |v| if v > 0.0 { v } else { 0.0 },
            f64::sin,
            f64::cos,
            f64::floor,
            f64::ceil,
            |v| {
                if v > 0.0 {
                    1.0
                } else if v < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            },
        ];
        let refs: Vec<_> = outs.iter().collect();
        let got = eval(&g, &[("x", floats(&[2, 3], &xs))], &refs);
        assert_eq!(got.len(), fns.len());
        for (t, f) in got.iter().zip(fns) {
            let want: Vec<f64> = xs.iter().map(|&v| f(v)).collect();
            assert_floats(t, &[2, 3], &want);
        }
    }

    #[test]
    fn sqrt_log_reciprocal_erf_on_positive_inputs() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [3usize]);
        let mut s = g.scope("t");
        let outs = [s.sqrt("Sqrt", &x), s.log("Log", &x), s.reciprocal("Reciprocal", &x), s.erf("Erf", &x)];
        let got = eval(&g, &[("x", floats(&[3], &[0.5, 1.0, 4.0]))], &outs.iter().collect::<Vec<_>>());
        assert_floats(&got[0], &[3], &[0.5f64.sqrt(), 1.0, 2.0]);
        assert_floats(&got[1], &[3], &[-std::f64::consts::LN_2, 0.0, 4f64.ln()]);
        assert_floats(&got[2], &[3], &[2.0, 1.0, 0.25]);
        // erf(0.5), erf(1), erf(4) to 16 digits (Abramowitz & Stegun table values).
        assert_floats(&got[3], &[3], &[0.520_499_877_813_046_5, 0.842_700_792_949_714_9, 0.999_999_984_582_742_1]);
    }

    #[test]
    fn sigmoid_is_stable_for_large_magnitudes() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [2usize]);
        let y = g.scope("t").sigmoid("Sigmoid", &x);
        let got = eval1(&g, &[("x", floats(&[2], &[-800.0, 800.0]))], &y);
        assert_floats(&got, &[2], &[0.0, 1.0]);
    }

    /// `[2,1,3] op [4,1] -> [2,4,3]`, against a triple loop.
    #[test]
    fn binary_ops_broadcast_both_ways() {
        let av = ramp(6, -1.0, 0.5);
        let bv = ramp(4, 0.5, 0.75);
        let mut g = GraphBuilder::new("t");
        let a = g.input("a", DType::F32, [2usize, 1, 3]);
        let b = g.input("b", DType::F32, [4usize, 1]);
        let mut s = g.scope("t");
        let outs = [
            s.add("Add", &a, &b),
            s.sub("Sub", &a, &b),
            s.mul("Mul", &a, &b),
            s.div("Div", &a, &b),
            s.pow("Pow", &b, &a),
            s.max("Max", &a, &b),
            s.min("Min", &a, &b),
        ];
        let fns: [fn(f64, f64) -> f64; 7] = [|x, y| x + y, |x, y| x - y, |x, y| x * y, |x, y| x / y, |x, y| y.powf(x), f64::max, f64::min];
        let got = eval(&g, &[("a", floats(&[2, 1, 3], &av)), ("b", floats(&[4, 1], &bv))], &outs.iter().collect::<Vec<_>>());
        for (t, f) in got.iter().zip(fns) {
            let mut want = Vec::new();
            for i in 0..2 {
                for &bj in &bv {
                    for k in 0..3 {
                        want.push(f(av[i * 3 + k], bj));
                    }
                }
            }
            assert_floats(t, &[2, 4, 3], &want);
        }
    }

    #[test]
    fn variadic_sum_max_min_mean_broadcast() {
        let mut g = GraphBuilder::new("t");
        let a = g.input("a", DType::F32, [2usize, 2]);
        let b = g.input("b", DType::F32, [2usize]);
        let c = g.input("c", DType::F32, [1usize, 1]);
        let mut s = g.scope("t");
        let outs: Vec<_> = ["Sum", "Max", "Min", "Mean"].iter().map(|op| s.op(op, op, &[&a, &b, &c], &[], DType::F32, [2usize, 2])).collect();
        let feeds = [("a", floats(&[2, 2], &[1.0, 5.0, -2.0, 0.0])), ("b", floats(&[2], &[3.0, -1.0])), ("c", floats(&[1, 1], &[0.5]))];
        let got = eval(&g, &feeds, &outs.iter().collect::<Vec<_>>());
        assert_floats(&got[0], &[2, 2], &[4.5, 4.5, 1.5, -0.5]);
        assert_floats(&got[1], &[2, 2], &[3.0, 5.0, 3.0, 0.5]);
        assert_floats(&got[2], &[2, 2], &[0.5, -1.0, -2.0, -1.0]);
        assert_floats(&got[3], &[2, 2], &[1.5, 1.5, 0.5, -0.5 / 3.0]);
    }

    #[test]
    fn integer_arithmetic_truncates_division() {
        let mut g = GraphBuilder::new("t");
        let a = g.input("a", DType::I64, [3usize]);
        let b = g.input("b", DType::I64, [1usize]);
        let mut s = g.scope("t");
        let outs = [s.add("Add", &a, &b), s.div("Div", &a, &b), s.neg("Neg", &a), s.abs("Abs", &a), s.max("Max", &a, &b)];
        let got = eval(&g, &[("a", ints(&[3], &[-7, 7, 2])), ("b", ints(&[1], &[2]))], &outs.iter().collect::<Vec<_>>());
        assert_ints(&got[0], &[3], &[-5, 9, 4]);
        assert_ints(&got[1], &[3], &[-3, 3, 1]);
        assert_ints(&got[2], &[3], &[7, -7, -2]);
        assert_ints(&got[3], &[3], &[7, 7, 2]);
        assert_ints(&got[4], &[3], &[2, 7, 2]);
    }

    #[test]
    fn integer_division_by_zero_is_an_error_naming_the_node() {
        let mut g = GraphBuilder::new("t");
        let a = g.input("a", DType::I64, [1usize]);
        let zero = g.constant_i64(&[0], &[1]);
        let y = g.scope("t").div("Div", &a, &zero);
        let feeds = [("a".to_string(), ints(&[1], &[3]))].into_iter().collect();
        let err = crate::interp::evaluate(&g, &feeds, &[y.name()]).unwrap_err().to_string();
        assert!(err.contains("node `t/Div` (Div)") && err.contains("division by zero"), "{err}");
    }

    #[test]
    fn comparisons_logic_and_where_broadcast() {
        let mut g = GraphBuilder::new("t");
        let a = g.input("a", DType::F32, [2usize, 3]);
        let b = g.input("b", DType::F32, [3usize]);
        let mut s = g.scope("t");
        let eq = s.equal("Equal", &a, &b);
        let lt = s.less("Less", &a, &b);
        let le = s.less_or_equal("LessOrEqual", &a, &b);
        let gt = s.greater("Greater", &a, &b);
        let ge = s.greater_or_equal("GreaterOrEqual", &a, &b);
        let and = s.and("And", &lt, &eq);
        let or = s.or("Or", &lt, &eq);
        let not = s.not("Not", &le);
        let xor = s.op("Xor", "Xor", &[&lt, &le], &[], DType::Bool, [2usize, 3]);
        let wh = s.where_("Where", &gt, &a, &b);
        let outs = [&eq, &lt, &le, &gt, &ge, &and, &or, &not, &xor, &wh];
        let feeds = [("a", floats(&[2, 3], &[1.0, 2.0, 3.0, 3.0, 2.0, f64::NAN])), ("b", floats(&[3], &[1.0, 3.0, 2.0]))];
        let got = eval(&g, &feeds, &outs);
        let (f, t) = (false, true);
        assert_bools(&got[0], &[2, 3], &[t, f, f, f, f, f]);
        assert_bools(&got[1], &[2, 3], &[f, t, f, f, t, f]);
        assert_bools(&got[2], &[2, 3], &[t, t, f, f, t, f]);
        assert_bools(&got[3], &[2, 3], &[f, f, t, t, f, f]);
        assert_bools(&got[4], &[2, 3], &[t, f, t, t, f, f]);
        assert_bools(&got[5], &[2, 3], &[f, f, f, f, f, f]);
        assert_bools(&got[6], &[2, 3], &[t, t, f, f, t, f]);
        assert_bools(&got[7], &[2, 3], &[f, f, t, t, f, t]);
        assert_bools(&got[8], &[2, 3], &[t, f, f, f, f, f]);
        assert_floats(&got[9], &[2, 3], &[1.0, 3.0, 3.0, 3.0, 3.0, 2.0]);
    }

    #[test]
    fn where_broadcasts_the_condition() {
        let mut g = GraphBuilder::new("t");
        let c = g.input("c", DType::Bool, [2usize, 1]);
        let x = g.input("x", DType::I64, [3usize]);
        let y = g.input("y", DType::I64, [1usize]);
        let w = g.scope("t").where_("Where", &c, &x, &y);
        let got = eval1(&g, &[("c", bools(&[2, 1], &[true, false])), ("x", ints(&[3], &[1, 2, 3])), ("y", ints(&[1], &[9]))], &w);
        assert_ints(&got, &[2, 3], &[1, 2, 3, 9, 9, 9]);
    }

    #[test]
    fn clip_with_optional_bounds() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [4usize]);
        let mut s = g.scope("t");
        let both = s.clip("both", &x, Some(-1.0), Some(1.0));
        let low = s.clip("low", &x, Some(0.0), None);
        let high = s.clip("high", &x, None, Some(0.5));
        let got = eval(&g, &[("x", floats(&[4], &[-3.0, -0.5, 0.75, 2.0]))], &[&both, &low, &high]);
        assert_floats(&got[0], &[4], &[-1.0, -0.5, 0.75, 1.0]);
        assert_floats(&got[1], &[4], &[0.0, 0.0, 0.75, 2.0]);
        assert_floats(&got[2], &[4], &[-3.0, -0.5, 0.5, 0.5]);
    }

    #[test]
    fn cast_truncates_toward_zero_and_keeps_floats_exact() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [4usize]);
        let mut s = g.scope("t");
        let to_int = s.cast("to_i64", &x, DType::I64);
        let to_bool = s.cast("to_bool", &x, DType::Bool);
        let to_f16 = s.cast("to_f16", &x, DType::F16);
        let back = s.cast("back", &to_int, DType::F32);
        let from_bool = s.cast("from_bool", &to_bool, DType::F32);
        let to_u8 = s.cast("to_u8", &to_int, DType::U8);
        let xs = [-1.7, 0.0, 2.9, 300.1];
        let got = eval(&g, &[("x", floats(&[4], &xs))], &[&to_int, &to_bool, &to_f16, &back, &from_bool, &to_u8]);
        assert_ints(&got[0], &[4], &[-1, 0, 2, 300]);
        assert_bools(&got[1], &[4], &[true, false, true, true]);
        assert_floats(&got[2], &[4], &xs);
        assert_floats(&got[3], &[4], &[-1.0, 0.0, 2.0, 300.0]);
        assert_floats(&got[4], &[4], &[1.0, 0.0, 1.0, 1.0]);
        assert_ints(&got[5], &[4], &[255, 0, 2, 44]);
    }
}
