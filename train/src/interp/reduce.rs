//! Reductions (`Reduce*`), `ArgMax`/`ArgMin`, `Softmax`/`LogSoftmax`, and the running
//! sum `CumSum`.

use ndarray::{ArrayD, Axis};

use super::args::{axes, axis, one, NodeArgs};
use super::tensor::{from_vec, Tensor};
use super::OpResult;

/// Runs `a` if it is a reduction or softmax.
pub(super) fn run(a: &NodeArgs) -> Option<OpResult> {
    Some(match a.op() {
        "ReduceSum" => reduce(a, |v| v.iter().sum(), |v| v.iter().try_fold(0i64, |s, &x| s.checked_add(x))),
        "ReduceMean" => reduce(a, |v| v.iter().sum::<f64>() / v.len() as f64, |v| v.iter().sum::<i64>().checked_div(v.len() as i64)),
        "ReduceMax" => reduce(a, |v| v.iter().copied().fold(f64::NEG_INFINITY, nan_max), |v| Some(v.iter().copied().max().unwrap_or(i64::MIN))),
        "ReduceMin" => reduce(a, |v| v.iter().copied().fold(f64::INFINITY, nan_min), |v| Some(v.iter().copied().min().unwrap_or(i64::MAX))),
        "ReduceProd" => reduce(a, |v| v.iter().product(), |v| v.iter().try_fold(1i64, |s, &x| s.checked_mul(x))),
        "ReduceSumSquare" => reduce(a, |v| v.iter().map(|x| x * x).sum(), |v| v.iter().try_fold(0i64, |s, &x| s.checked_add(x.checked_mul(x)?))),
        "ReduceL1" => reduce(a, |v| v.iter().map(|x| x.abs()).sum(), |v| v.iter().try_fold(0i64, |s, &x| s.checked_add(x.checked_abs()?))),
        "ReduceL2" => reduce(a, |v| v.iter().map(|x| x * x).sum::<f64>().sqrt(), |_| None),
        "ReduceLogSumExp" => reduce(a, log_sum_exp, |_| None),
        "ArgMax" => arg_extreme(a, |x, best| x > best),
        "ArgMin" => arg_extreme(a, |x, best| x < best),
        "Softmax" => softmax(a, false),
        "LogSoftmax" => softmax(a, true),
        "CumSum" => cum_sum(a),
        _ => return None,
    })
}

fn nan_max(x: f64, y: f64) -> f64 {
    if x.is_nan() || y.is_nan() {
        f64::NAN
    } else {
        x.max(y)
    }
}

fn nan_min(x: f64, y: f64) -> f64 {
    if x.is_nan() || y.is_nan() {
        f64::NAN
    } else {
        x.min(y)
    }
}

/// `log(sum(exp(v)))`, shifted by the maximum so it cannot overflow.
fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, nan_max);
    if !m.is_finite() {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// The reduced axes, sorted; `None` when the node reduces nothing (empty axes with
/// `noop_with_empty_axes`). `ReduceSum` takes axes as an input since opset 13, the other
/// reductions since opset 18 (an attribute before).
fn reduced_axes(a: &NodeArgs, rank: usize) -> Result<Option<Vec<usize>>, String> {
    let from_input = a.opset >= 18 || (a.op() == "ReduceSum" && a.opset >= 13);
    let list = if from_input { a.opt_ints(1)? } else { a.ints_attr("axes")? }.unwrap_or_default();
    if list.is_empty() {
        return Ok(if a.int_attr("noop_with_empty_axes", 0)? != 0 { None } else { Some((0..rank).collect()) });
    }
    let mut out = axes(&list, rank)?;
    out.sort_unstable();
    Ok(Some(out))
}

/// Applies `f` to every lane of `x` over `axes` (row-major within the lane); the result
/// has the kept axes, plus size-1 reduced axes when `keepdims`.
pub(crate) fn reduce_lanes<T: Copy, U>(x: &ArrayD<T>, axes: &[usize], keepdims: bool, f: impl Fn(&[T]) -> U) -> Result<ArrayD<U>, String> {
    let rank = x.ndim();
    let kept: Vec<usize> = (0..rank).filter(|i| !axes.contains(i)).collect();
    let perm: Vec<usize> = kept.iter().chain(axes).copied().collect();
    let inner: usize = axes.iter().map(|&i| x.shape()[i]).product();
    let outer: usize = kept.iter().map(|&i| x.shape()[i]).product();
    let values: Vec<U> = if inner == 0 {
        (0..outer).map(|_| f(&[])).collect()
    } else {
        let flat: Vec<T> = x.view().permuted_axes(perm).iter().copied().collect();
        flat.chunks(inner).map(f).collect()
    };
    let shape: Vec<usize> =
        if keepdims { (0..rank).map(|i| if axes.contains(&i) { 1 } else { x.shape()[i] }).collect() } else { kept.iter().map(|&i| x.shape()[i]).collect() };
    from_vec(&shape, values)
}

/// A `Reduce*` op: `float` on float lanes, `int` on integer lanes (`None`: overflow, or
/// not defined on integers).
fn reduce(a: &NodeArgs, float: impl Fn(&[f64]) -> f64, int: impl Fn(&[i64]) -> Option<i64>) -> OpResult {
    let x = a.input(0)?;
    let Some(axes) = reduced_axes(a, x.shape().len())? else {
        return one(x.clone());
    };
    let keepdims = a.int_attr("keepdims", 1)? != 0;
    match x {
        Tensor::Float(x) => one(Tensor::Float(reduce_lanes(x, &axes, keepdims, float)?)),
        Tensor::Int(x) => {
            let out = reduce_lanes(x, &axes, keepdims, int)?;
            if out.iter().any(Option::is_none) {
                return Err(format!("{} on integers overflowed or is not defined for integers", a.op()));
            }
            one(Tensor::Int(out.mapv(|v| v.unwrap_or_default())))
        }
        Tensor::Bool(_) => Err("input 0 must be numeric, got a bool tensor".into()),
    }
}

/// `ArgMax`/`ArgMin`: the first (or with `select_last_index`, last) index where `better`
/// holds against every other element of the lane.
fn arg_extreme(a: &NodeArgs, better: impl Fn(f64, f64) -> bool + Copy) -> OpResult {
    let x = match a.input(0)? {
        Tensor::Float(x) => x.clone(),
        Tensor::Int(x) => x.mapv(|v| v as f64),
        Tensor::Bool(_) => return Err("input 0 must be numeric, got a bool tensor".into()),
    };
    let ax = axis(a.int_attr("axis", 0)?, x.ndim())?;
    let keepdims = a.int_attr("keepdims", 1)? != 0;
    let last = a.int_attr("select_last_index", 0)? != 0;
    if x.shape()[ax] == 0 {
        return Err(format!("{} over an empty axis {ax}", a.op()));
    }
    let pick = |lane: &[f64]| {
        let mut best = 0;
        for (i, &v) in lane.iter().enumerate().skip(1) {
            if better(v, lane[best]) || (last && v == lane[best]) {
                best = i;
            }
        }
        best as i64
    };
    one(Tensor::Int(reduce_lanes(&x, &[ax], keepdims, pick)?))
}

/// `Softmax`/`LogSoftmax` along `axis` (default -1, opset 13 semantics), shifted by the
/// lane maximum.
fn softmax(a: &NodeArgs, log: bool) -> OpResult {
    let x = a.float(0)?;
    let ax = axis(a.int_attr("axis", -1)?, x.ndim())?;
    let mut out = x.clone();
    for mut lane in out.lanes_mut(Axis(ax)) {
        let m = lane.iter().copied().fold(f64::NEG_INFINITY, nan_max);
        let sum: f64 = lane.iter().map(|v| (v - m).exp()).sum();
        if log {
            let ln_sum = sum.ln();
            lane.mapv_inplace(|v| v - m - ln_sum);
        } else {
            lane.mapv_inplace(|v| (v - m).exp() / sum);
        }
    }
    one(Tensor::Float(out))
}

/// `CumSum(x, axis)`: running sums along `axis`; `exclusive` leaves the current element
/// out, `reverse` runs from the end.
fn cum_sum(a: &NodeArgs) -> OpResult {
    let ax = a.int_scalar(1)?;
    let exclusive = a.int_attr("exclusive", 0)? != 0;
    let reverse = a.int_attr("reverse", 0)? != 0;
    fn scan<T: Copy + Default + std::ops::Add<Output = T>>(x: &ArrayD<T>, ax: usize, exclusive: bool, reverse: bool) -> ArrayD<T> {
        let mut out = x.clone();
        for mut lane in out.lanes_mut(Axis(ax)) {
            let n = lane.len();
            let mut acc = T::default();
            for k in 0..n {
                let i = if reverse { n - 1 - k } else { k };
                let v = lane[i];
                if exclusive {
                    lane[i] = acc;
                    acc = acc + v;
                } else {
                    acc = acc + v;
                    lane[i] = acc;
                }
            }
        }
        out
    }
    match a.input(0)? {
        Tensor::Float(x) => one(Tensor::Float(scan(x, axis(ax, x.ndim())?, exclusive, reverse))),
        Tensor::Int(x) => one(Tensor::Int(scan(x, axis(ax, x.ndim())?, exclusive, reverse))),
        Tensor::Bool(_) => Err("CumSum needs a numeric input, got bool".into()),
    }
}

#[cfg(test)]
mod tests {
    use loc3r_export::graph::{Attr, GraphBuilder};
    use loc3r_export::DType;

    use crate::interp::testing::{assert_floats, assert_ints, eval, eval1, floats, ramp};

    /// x[i][j][k] = i·12 + j·4 + k over [2, 3, 4], minus 10.
    fn x_values() -> Vec<f64> {
        ramp(24, -10.0, 1.0)
    }

    /// Reductions over the last axis (kept) and over axes {0, 2} (dropped), against loops,
    /// with axes as an attribute (opset 17) and as an input (opset 18).
    #[test]
    fn reductions_follow_the_opset() {
        let xv = x_values();
        let at = |i: usize, j: usize, k: usize| xv[i * 12 + j * 4 + k];
        type Fold = fn(&[f64]) -> f64;
        let ops: [(&str, Fold); 8] = [
            ("ReduceSum", |v| v.iter().sum()),
            ("ReduceMean", |v| v.iter().sum::<f64>() / v.len() as f64),
            ("ReduceMax", |v| v.iter().copied().fold(f64::MIN, f64::max)),
            ("ReduceMin", |v| v.iter().copied().fold(f64::MAX, f64::min)),
            ("ReduceSumSquare", |v| v.iter().map(|x| x * x).sum()),
            ("ReduceL2", |v| v.iter().map(|x| x * x).sum::<f64>().sqrt()),
            ("ReduceL1", |v| v.iter().map(|x| x.abs()).sum()),
            ("ReduceLogSumExp", |v| v.iter().map(|x| x.exp()).sum::<f64>().ln()),
        ];
        for opset in [17, 18] {
            let mut g = GraphBuilder::new("t").with_opset(opset);
            let x = g.input("x", DType::F32, [2usize, 3, 4]);
            let mut s = g.scope("t");
            let mut outs = Vec::new();
            for (op, _) in ops {
                for (axes, keep, shape) in [(vec![-1i64], 1i64, vec![2usize, 3, 1]), (vec![0, -1], 0, vec![3])] {
                    let as_input = op == "ReduceSum" || opset >= 18;
                    let axes_v = s.ints(&axes);
                    let mut attrs = vec![("keepdims", Attr::Int(keep))];
                    if !as_input {
                        attrs.push(("axes", Attr::Ints(axes.clone())));
                    }
                    let inputs = if as_input { vec![&x, &axes_v] } else { vec![&x] };
                    outs.push(s.op(&format!("{op}{keep}"), op, &inputs, &attrs, DType::F32, shape));
                }
            }
            let got = eval(&g, &[("x", floats(&[2, 3, 4], &xv))], &outs.iter().collect::<Vec<_>>());
            for (n, (_, f)) in ops.iter().enumerate() {
                let last: Vec<f64> = (0..6).map(|r| f(&(0..4).map(|k| at(r / 3, r % 3, k)).collect::<Vec<_>>())).collect();
                assert_floats(&got[2 * n], &[2, 3, 1], &last);
                let outer: Vec<f64> =
                    (0..3).map(|j| f(&(0..2).flat_map(|i| (0..4).map(move |k| (i, k))).map(|(i, k)| at(i, j, k)).collect::<Vec<_>>())).collect();
                assert_floats(&got[2 * n + 1], &[3], &outer);
            }
        }
    }

    #[test]
    fn empty_axes_reduce_everything_unless_noop() {
        let mut g = GraphBuilder::new("t").with_opset(18);
        let x = g.input("x", DType::F32, [2usize, 2]);
        let mut s = g.scope("t");
        let all = s.reduce_sum("all", &x, &[], false);
        let noop = s.op("noop", "ReduceMean", &[&x], &[("noop_with_empty_axes", Attr::Int(1))], DType::F32, [2usize, 2]);
        let int_sum = s.cast("to_int", &x, DType::I64);
        let int_sum = s.reduce_sum("int_sum", &int_sum, &[0], false);
        let got = eval(&g, &[("x", floats(&[2, 2], &[1.0, 2.0, 3.0, 4.5]))], &[&all, &noop, &int_sum]);
        assert_floats(&got[0], &[], &[10.5]);
        assert_floats(&got[1], &[2, 2], &[1.0, 2.0, 3.0, 4.5]);
        assert_ints(&got[2], &[2], &[4, 6]);
    }

    #[test]
    fn argmax_takes_the_first_of_ties_on_negative_axes() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [2usize, 3]);
        let mut s = g.scope("t");
        let rows = s.argmax("rows", &x, -1, false);
        let cols = s.argmax("cols", &x, 0, true);
        let last = s.op("last", "ArgMax", &[&x], &[("axis", Attr::Int(1)), ("select_last_index", Attr::Int(1))], DType::I64, [2usize, 1]);
        let min = s.op("min", "ArgMin", &[&x], &[("axis", Attr::Int(1)), ("keepdims", Attr::Int(0))], DType::I64, [2usize]);
        let got = eval(&g, &[("x", floats(&[2, 3], &[1.0, 5.0, 5.0, 7.0, -2.0, 7.0]))], &[&rows, &cols, &last, &min]);
        assert_ints(&got[0], &[2], &[1, 0]);
        assert_ints(&got[1], &[1, 3], &[1, 0, 1]);
        assert_ints(&got[2], &[2, 1], &[2, 2]);
        assert_ints(&got[3], &[2], &[0, 1]);
    }

    #[test]
    fn cum_sum_inclusive_exclusive_reverse() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [2usize, 3]);
        let mut s = g.scope("t");
        let ax = s.scalar_i64(-1);
        let inc = s.op("inc", "CumSum", &[&x, &ax], &[], DType::F32, [2usize, 3]);
        let exc_rev = s.op("exc_rev", "CumSum", &[&x, &ax], &[("exclusive", Attr::Int(1)), ("reverse", Attr::Int(1))], DType::F32, [2usize, 3]);
        let got = eval(&g, &[("x", floats(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))], &[&inc, &exc_rev]);
        assert_floats(&got[0], &[2, 3], &[1.0, 3.0, 6.0, 4.0, 9.0, 15.0]);
        assert_floats(&got[1], &[2, 3], &[5.0, 3.0, 0.0, 11.0, 6.0, 0.0]);
    }

    #[test]
    fn softmax_and_log_softmax_are_stable_along_any_axis() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [2usize, 2, 2]);
        let mut s = g.scope("t");
        let sm = s.softmax("Softmax", &x, 1);
        let lsm = s.log_softmax("LogSoftmax", &x, -1);
        let xv = [1000.0, 0.0, 1001.0, 1.0, -3.0, 2.0, -3.0, 4.0];
        let got = eval(&g, &[("x", floats(&[2, 2, 2], &xv))], &[&sm, &lsm]);
        let soft = |a: f64, b: f64| (1.0 / (1.0 + (b - a).exp()), 1.0 / (1.0 + (a - b).exp()));
        let (p0, p1) = soft(1000.0, 1001.0);
        let (q0, q1) = soft(0.0, 1.0);
        let (r0, r1) = soft(2.0, 4.0);
        assert_floats(&got[0], &[2, 2, 2], &[p0, q0, p1, q1, 0.5, r0, 0.5, r1]);
        let ls = |a: f64, b: f64| {
            let m = a.max(b);
            let z = m + ((a - m).exp() + (b - m).exp()).ln();
            [a - z, b - z]
        };
        let want: Vec<f64> = xv.chunks(2).flat_map(|c| ls(c[0], c[1])).collect();
        assert_floats(&got[1], &[2, 2, 2], &want);
        let one = eval1(&g, &[("x", floats(&[2, 2, 2], &[0.0; 8]))], &sm);
        assert_floats(&one, &[2, 2, 2], &[0.5; 8]);
    }
}
