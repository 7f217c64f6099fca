//! Array ops that move elements without arithmetic: `Reshape`, `Flatten`, `Transpose`,
//! `Squeeze`/`Unsqueeze`, `Concat`, `Split`, `Slice`, `Expand`, `Tile`, `Pad`, `Trilu`,
//! and the shape-building ops `Shape`, `Size`, `ConstantOfShape`, `Range`.

use loc3r_export::graph::{Attr, ConstValues};
use ndarray::{ArrayD, Axis, IxDyn};

use super::args::{axes, axis, one, NodeArgs};
use super::tensor::{broadcast_shape, broadcast_to, by_kind, from_vec, reshape, Elem, Tensor};
use super::OpResult;

/// Runs `a` if it is one of this family's ops.
pub(super) fn run(a: &NodeArgs) -> Option<OpResult> {
    let x = a.input(0);
    Some(match a.op() {
        "Reshape" => x.and_then(|x| by_kind!(x, T => reshape_op::<T>(a))),
        "Flatten" => x.and_then(|x| by_kind!(x, T => flatten::<T>(a))),
        "Transpose" => x.and_then(|x| by_kind!(x, T => transpose::<T>(a))),
        "Squeeze" => x.and_then(|x| by_kind!(x, T => squeeze::<T>(a))),
        "Unsqueeze" => x.and_then(|x| by_kind!(x, T => unsqueeze::<T>(a))),
        "Concat" => x.and_then(|x| by_kind!(x, T => concat::<T>(a))),
        "Split" => x.and_then(|x| by_kind!(x, T => split::<T>(a))),
        "Slice" => x.and_then(|x| by_kind!(x, T => slice::<T>(a))),
        "Expand" => x.and_then(|x| by_kind!(x, T => expand::<T>(a))),
        "Tile" => x.and_then(|x| by_kind!(x, T => tile::<T>(a))),
        "Pad" => x.and_then(|x| by_kind!(x, T => pad::<T>(a))),
        "Trilu" => x.and_then(|x| by_kind!(x, T => trilu::<T>(a))),
        "Shape" => shape_op(a),
        "Size" => x.and_then(|x| one(Tensor::Int(ArrayD::from_elem(IxDyn(&[]), x.shape().iter().product::<usize>() as i64)))),
        "ConstantOfShape" => constant_of_shape(a),
        "Range" => range(a),
        _ => return None,
    })
}

/// A list of non-negative sizes from an integer input.
fn sizes(values: &[i64], what: &str) -> Result<Vec<usize>, String> {
    values.iter().map(|&v| usize::try_from(v).map_err(|_| format!("{what} {values:?} holds a negative size"))).collect()
}

/// `Reshape`: `0` copies the input dim (unless `allowzero`), `-1` is inferred.
fn reshape_op<T: Elem>(a: &NodeArgs) -> OpResult {
    let x = a.typed::<T>(0)?;
    let target = a.ints(1)?;
    let allow_zero = a.int_attr("allowzero", 0)? != 0;
    let mut shape = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &d) in target.iter().enumerate() {
        shape.push(match d {
            0 if !allow_zero => *x.shape().get(i).ok_or_else(|| format!("shape {target:?}: 0 at {i} copies an input dim, but the input is {:?}", x.shape()))?,
            -1 if infer.is_none() => {
                infer = Some(i);
                1
            }
            d => usize::try_from(d).map_err(|_| format!("shape {target:?} is not a valid Reshape target"))?,
        });
    }
    if let Some(i) = infer {
        let known: usize = shape.iter().product();
        if known == 0 || x.len() % known != 0 {
            return Err(format!("cannot infer the -1 in {target:?} for {} elements of {:?}", x.len(), x.shape()));
        }
        shape[i] = x.len() / known;
    }
    if shape.iter().product::<usize>() != x.len() {
        return Err(format!("cannot reshape {:?} to {target:?}", x.shape()));
    }
    one(T::wrap(reshape(x, &shape)?))
}

/// `Flatten`: `[d0 … d(axis-1)] × [d(axis) …]`.
fn flatten<T: Elem>(a: &NodeArgs) -> OpResult {
    let x = a.typed::<T>(0)?;
    let ax = a.int_attr("axis", 1)?;
    let r = x.ndim() as i64;
    let ax = if ax < 0 { ax + r } else { ax };
    if !(0..=r).contains(&ax) {
        return Err(format!("Flatten axis {ax} is out of range for rank {r}"));
    }
    let (outer, inner) = x.shape().split_at(ax as usize);
    one(T::wrap(reshape(x, &[outer.iter().product(), inner.iter().product()])?))
}

fn transpose<T: Elem>(a: &NodeArgs) -> OpResult {
    let x = a.typed::<T>(0)?;
    let perm = match a.ints_attr("perm")? {
        Some(p) => p,
        None => (0..x.ndim() as i64).rev().collect(),
    };
    let perm = axes(&perm, x.ndim())?;
    if perm.len() != x.ndim() {
        return Err(format!("perm {perm:?} does not match rank {}", x.ndim()));
    }
    one(T::wrap(x.view().permuted_axes(perm).to_owned()))
}

/// Axes from input 1 (opset 13+) or the `axes` attribute before.
fn axes_operand(a: &NodeArgs) -> Result<Option<Vec<i64>>, String> {
    if a.opset >= 13 {
        a.opt_ints(1)
    } else {
        a.ints_attr("axes")
    }
}

fn squeeze<T: Elem>(a: &NodeArgs) -> OpResult {
    let x = a.typed::<T>(0)?;
    let drop = match axes_operand(a)? {
        Some(list) => axes(&list, x.ndim())?,
        None => (0..x.ndim()).filter(|&i| x.shape()[i] == 1).collect(),
    };
    if let Some(&bad) = drop.iter().find(|&&i| x.shape()[i] != 1) {
        return Err(format!("cannot squeeze axis {bad} of {:?}: its size is not 1", x.shape()));
    }
    let shape: Vec<usize> = (0..x.ndim()).filter(|i| !drop.contains(i)).map(|i| x.shape()[i]).collect();
    one(T::wrap(reshape(x, &shape)?))
}

fn unsqueeze<T: Elem>(a: &NodeArgs) -> OpResult {
    let x = a.typed::<T>(0)?;
    let list = axes_operand(a)?.ok_or("Unsqueeze needs axes")?;
    let rank = x.ndim() + list.len();
    let new = axes(&list, rank)?;
    let mut dims = x.shape().iter();
    let shape: Vec<usize> = (0..rank).map(|i| if new.contains(&i) { 1 } else { dims.next().copied().unwrap_or(1) }).collect();
    one(T::wrap(reshape(x, &shape)?))
}

fn concat<T: Elem>(a: &NodeArgs) -> OpResult {
    let parts: Vec<&ArrayD<T>> = (0..a.inputs.len()).map(|i| a.typed::<T>(i)).collect::<Result<_, _>>()?;
    let ax = axis(a.attr("axis").map(|_| a.int_attr("axis", 0)).ok_or("Concat needs the `axis` attribute")??, parts[0].ndim())?;
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    let out = ndarray::concatenate(Axis(ax), &views)
        .map_err(|e| format!("cannot concatenate {:?} along axis {ax}: {e}", parts.iter().map(|p| p.shape()).collect::<Vec<_>>()))?;
    one(T::wrap(out))
}

/// `Split`: sizes from input 1 (opset 13+), else `num_outputs` (opset 18: chunks of
/// `ceil(d / n)`, the last smaller), else equal parts, one per output.
fn split<T: Elem>(a: &NodeArgs) -> OpResult {
    let x = a.typed::<T>(0)?;
    let ax = axis(a.int_attr("axis", 0)?, x.ndim())?;
    let d = x.shape()[ax];
    let n = a.outputs();
    let parts = match a.opt_ints(1)? {
        Some(s) => sizes(&s, "split")?,
        None => match a.int_attr("num_outputs", 0)? {
            k if k > 0 => {
                let chunk = d.div_ceil(k as usize);
                (0..k as usize).map(|i| chunk.min(d.saturating_sub(i * chunk))).collect()
            }
            _ if n > 0 && d % n == 0 => vec![d / n; n],
            _ => return Err(format!("cannot split {d} into {n} equal parts")),
        },
    };
    if parts.iter().sum::<usize>() != d || parts.len() != n {
        return Err(format!("split sizes {parts:?} must sum to {d} and give {n} outputs"));
    }
    let mut start = 0;
    let mut out = Vec::with_capacity(n);
    for len in parts {
        out.push(T::wrap(x.slice_axis(Axis(ax), (start..start + len).into()).to_owned()));
        start += len;
    }
    Ok(out)
}

/// The indices one `Slice` axis keeps, with ONNX's clamping of `start`/`end`.
fn slice_indices(dim: usize, start: i64, end: i64, step: i64) -> Result<Vec<usize>, String> {
    if step == 0 {
        return Err("Slice step 0 is invalid".into());
    }
    let d = dim as i64;
    let norm = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (start, end) = (norm(start), norm(end));
    let mut out = Vec::new();
    if step > 0 {
        let (mut i, end) = (start.clamp(0, d), end.clamp(0, d));
        while i < end {
            out.push(i as usize);
            i += step;
        }
    } else {
        let (mut i, end) = (start.clamp(0, d - 1), end.clamp(-1, d - 1));
        while i > end {
            out.push(i as usize);
            i += step;
        }
    }
    Ok(out)
}

fn slice<T: Elem>(a: &NodeArgs) -> OpResult {
    let mut x = a.typed::<T>(0)?.clone();
    let (starts, ends) = (a.ints(1)?, a.ints(2)?);
    let list = a.opt_ints(3)?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = a.opt_ints(4)?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || list.len() != starts.len() || steps.len() != starts.len() {
        return Err(format!("starts {starts:?}, ends {ends:?}, axes {list:?} and steps {steps:?} must have one entry per sliced axis"));
    }
    for (k, ax) in axes(&list, x.ndim())?.into_iter().enumerate() {
        let keep = slice_indices(x.shape()[ax], starts[k], ends[k], steps[k])?;
        x = x.select(Axis(ax), &keep);
    }
    one(T::wrap(x))
}

/// `Expand`: numpy broadcast of the input with the target shape.
fn expand<T: Elem>(a: &NodeArgs) -> OpResult {
    let x = a.typed::<T>(0)?;
    let target = sizes(&a.ints(1)?, "Expand shape")?;
    let shape = broadcast_shape(&[x.shape(), &target])?;
    one(T::wrap(broadcast_to(x, &shape)?.to_owned()))
}

fn tile<T: Elem>(a: &NodeArgs) -> OpResult {
    let x = a.typed::<T>(0)?;
    let reps = sizes(&a.ints(1)?, "Tile repeats")?;
    if reps.len() != x.ndim() {
        return Err(format!("Tile repeats {reps:?} must have one entry per axis of {:?}", x.shape()));
    }
    let shape: Vec<usize> = x.shape().iter().zip(&reps).map(|(d, r)| d * r).collect();
    let out = ArrayD::from_shape_fn(IxDyn(&shape), |ix| {
        let src: Vec<usize> = (0..shape.len()).map(|i| ix[i] % x.shape()[i]).collect();
        x[IxDyn(&src)]
    });
    one(T::wrap(out))
}

/// `Pad` in `constant` mode: `pads` is `[begin per axis…, end per axis…]` over `axes`
/// (all axes by default); negative pads crop.
fn pad<T: Elem>(a: &NodeArgs) -> OpResult {
    let x = a.typed::<T>(0)?;
    let mode = a.string_attr("mode", "constant")?;
    if mode != "constant" {
        return Err(format!("Pad mode `{mode}` is not supported by the reference interpreter (constant is)"));
    }
    let pads = a.ints(1)?;
    let fill = match a.opt(2) {
        Some(t) => T::of(t)?.iter().next().copied().ok_or("the constant_value input is empty")?,
        None => T::default(),
    };
    let list = match a.opt_ints(3)? {
        Some(list) => axes(&list, x.ndim())?,
        None => (0..x.ndim()).collect(),
    };
    if pads.len() != 2 * list.len() {
        return Err(format!("pads {pads:?} must have two entries per padded axis ({})", list.len()));
    }
    let mut begin = vec![0i64; x.ndim()];
    let mut shape: Vec<i64> = x.shape().iter().map(|&d| d as i64).collect();
    for (k, &ax) in list.iter().enumerate() {
        begin[ax] = pads[k];
        shape[ax] += pads[k] + pads[list.len() + k];
    }
    let shape = sizes(&shape, "padded shape")?;
    let out = ArrayD::from_shape_fn(IxDyn(&shape), |ix| {
        let src: Option<Vec<usize>> = (0..shape.len()).map(|i| usize::try_from(ix[i] as i64 - begin[i]).ok()).collect();
        src.and_then(|s| x.get(IxDyn(&s)).copied()).unwrap_or(fill)
    });
    one(T::wrap(out))
}

/// `Trilu`: keeps `j - i >= k` (upper) or `j - i <= k` (lower) over the last two axes.
fn trilu<T: Elem>(a: &NodeArgs) -> OpResult {
    let mut x = a.typed::<T>(0)?.clone();
    let k = if a.opt(1).is_some() { a.int_scalar(1)? } else { 0 };
    let upper = a.int_attr("upper", 1)? != 0;
    let r = x.ndim();
    if r < 2 {
        return Err(format!("Trilu needs rank 2 or more, got {:?}", x.shape()));
    }
    for (ix, v) in x.indexed_iter_mut() {
        let diag = ix[r - 1] as i64 - ix[r - 2] as i64;
        if (upper && diag < k) || (!upper && diag > k) {
            *v = T::default();
        }
    }
    one(T::wrap(x))
}

/// `Shape` with the opset-15 `start`/`end` attributes (negative counts from the end, clamped).
fn shape_op(a: &NodeArgs) -> OpResult {
    let shape = a.input(0)?.shape();
    let r = shape.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let (start, end) = (clamp(a.int_attr("start", 0)?), clamp(a.int_attr("end", r)?));
    let dims: Vec<i64> = shape[start..end.max(start)].iter().map(|&d| d as i64).collect();
    one(Tensor::Int(from_vec(&[dims.len()], dims)?))
}

/// `ConstantOfShape`: the `value` attribute (one element) fills the shape; f32 0 by default.
fn constant_of_shape(a: &NodeArgs) -> OpResult {
    let shape = sizes(&a.ints(0)?, "ConstantOfShape shape")?;
    let dim = IxDyn(&shape);
    let out = match a.attr("value") {
        None => Tensor::Float(ArrayD::zeros(dim)),
        Some(Attr::Tensor(c)) => match &c.values {
            ConstValues::Float(v) if v.len() == 1 => Tensor::Float(ArrayD::from_elem(dim, f64::from(v[0]))),
            ConstValues::Int(v) if v.len() == 1 => Tensor::Int(ArrayD::from_elem(dim, v[0])),
            ConstValues::Bool(v) if v.len() == 1 => Tensor::Bool(ArrayD::from_elem(dim, v[0])),
            _ => return Err(format!("attribute `value` must hold one element, got shape {:?}", c.shape)),
        },
        Some(other) => return Err(format!("attribute `value` must be a tensor, got {other:?}")),
    };
    one(out)
}

/// `Range(start, limit, delta)`: `max(ceil((limit - start) / delta), 0)` elements
/// `start + i·delta`.
fn range(a: &NodeArgs) -> OpResult {
    fn scalar<T: Elem>(a: &NodeArgs, i: usize) -> Result<T, String> {
        let v = a.typed::<T>(i)?;
        match v.len() {
            1 => v.iter().next().copied().ok_or_else(|| format!("input {i} is empty")),
            n => Err(format!("input {i} must be a scalar, got {n} elements")),
        }
    }
    match a.input(0)? {
        Tensor::Float(_) => {
            let (start, limit, delta) = (scalar::<f64>(a, 0)?, scalar::<f64>(a, 1)?, scalar::<f64>(a, 2)?);
            if delta == 0.0 {
                return Err("Range delta is 0".into());
            }
            let n = ((limit - start) / delta).ceil().max(0.0) as usize;
            one(Tensor::Float(from_vec(&[n], (0..n).map(|i| start + i as f64 * delta).collect())?))
        }
        Tensor::Int(_) => {
            let (start, limit, delta) = (scalar::<i64>(a, 0)?, scalar::<i64>(a, 1)?, scalar::<i64>(a, 2)?);
            if delta == 0 {
                return Err("Range delta is 0".into());
            }
            let span = limit - start;
            let n = if (span > 0) == (delta > 0) && span != 0 { (span.abs() + delta.abs() - 1) / delta.abs() } else { 0 };
            one(Tensor::Int(from_vec(&[n as usize], (0..n).map(|i| start + i * delta).collect())?))
        }
        Tensor::Bool(_) => Err("Range needs numeric inputs, got bool".into()),
    }
}

#[cfg(test)]
mod tests {
    use loc3r_export::graph::{Attr, GraphBuilder, NodeSpec, OutputSpec};
    use loc3r_export::{dims, DType};

    use crate::interp::testing::{assert_bools, assert_floats, assert_ints, eval, floats, ramp};

    #[test]
    fn reshape_flatten_transpose_squeeze_unsqueeze() {
        let xv = ramp(24, 0.0, 1.0);
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [2usize, 3, 4]);
        let mut s = g.scope("t");
        let r = s.reshape("Reshape", &x, [0, -1, 2]); // [2, 6, 2]
        let f = s.op("Flatten", "Flatten", &[&x], &[("axis", Attr::Int(-1))], DType::F32, [6usize, 4]);
        let t = s.transpose("Transpose", &x, &[2, 0, 1]); // [4, 2, 3]
        let u = s.unsqueeze("Unsqueeze", &x, &[-1, 1]); // [2, 1, 3, 4, 1]
        let q = s.squeeze("Squeeze", &u, &[-1]); // [2, 1, 3, 4]
        let all = s.squeeze("SqueezeAll", &u, &[]); // [2, 3, 4]
        let got = eval(&g, &[("x", floats(&[2, 3, 4], &xv))], &[&r, &f, &t, &u, &q, &all]);
        assert_floats(&got[0], &[2, 6, 2], &xv);
        assert_floats(&got[1], &[6, 4], &xv);
        let mut want = Vec::new();
        for k in 0..4 {
            for i in 0..2 {
                for j in 0..3 {
                    want.push(xv[i * 12 + j * 4 + k]);
                }
            }
        }
        assert_floats(&got[2], &[4, 2, 3], &want);
        assert_floats(&got[3], &[2, 1, 3, 4, 1], &xv);
        assert_floats(&got[4], &[2, 1, 3, 4], &xv);
        assert_floats(&got[5], &[2, 3, 4], &xv);
    }

    #[test]
    fn reshape_rejects_a_wrong_element_count() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, dims!["n"]);
        let y = g.scope("t").reshape("Reshape", &x, [4]);
        let feeds = [("x".to_string(), floats(&[3], &[1.0, 2.0, 3.0]))].into_iter().collect();
        let err = crate::interp::evaluate(&g, &feeds, &[y.name()]).unwrap_err().to_string();
        assert!(err.contains("node `t/Reshape` (Reshape): cannot reshape [3] to [4]"), "{err}");
    }

    #[test]
    fn concat_and_split_on_negative_axes() {
        let mut g = GraphBuilder::new("t").with_opset(18);
        let a = g.input("a", DType::F32, [2usize, 1]);
        let b = g.input("b", DType::F32, [2usize, 4]);
        let mut s = g.scope("t");
        let c = s.concat("Concat", &[&a, &b], -1); // [2, 5]
        let parts = s.split("Split", &c, -1, &[3, 2]);
        let outputs = [2usize, 2, 1].iter().map(|&n| OutputSpec { name: None, dtype: DType::F32, shape: dims![2, n] }).collect();
        let even = s.node(
            "SplitN",
            NodeSpec {
                op_type: "Split",
                inputs: vec![Some(&c)],
                attrs: vec![("axis".into(), Attr::Int(1)), ("num_outputs".into(), Attr::Int(3))],
                outputs,
                ..NodeSpec::default()
            },
        );
        let (av, bv) = ([10.0, 20.0], ramp(8, 0.0, 1.0));
        let got = eval(&g, &[("a", floats(&[2, 1], &av)), ("b", floats(&[2, 4], &bv))], &[&c, &parts[0], &parts[1], &even[0], &even[1], &even[2]]);
        assert_floats(&got[0], &[2, 5], &[10.0, 0.0, 1.0, 2.0, 3.0, 20.0, 4.0, 5.0, 6.0, 7.0]);
        assert_floats(&got[1], &[2, 3], &[10.0, 0.0, 1.0, 20.0, 4.0, 5.0]);
        assert_floats(&got[2], &[2, 2], &[2.0, 3.0, 6.0, 7.0]);
        assert_floats(&got[3], &[2, 2], &[10.0, 0.0, 20.0, 4.0]);
        assert_floats(&got[4], &[2, 2], &[1.0, 2.0, 5.0, 6.0]);
        assert_floats(&got[5], &[2, 1], &[3.0, 7.0]);
    }

    /// Negative steps, negative and out-of-range starts/ends, against Python's slicing rules.
    #[test]
    fn slice_clamps_and_walks_backwards() {
        let xv = ramp(10, 0.0, 1.0);
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [2usize, 5]);
        let mut s = g.scope("t");
        let rev = s.slice("rev", &x, [i64::MAX], [i64::MIN], &[1], &[-1]); // x[:, ::-1]
        let back2 = s.slice("back2", &x, [-1], [-100], &[-1], &[-2]); // x[:, -1::-2]
        let mid = s.slice("mid", &x, [1, -4], [100, -1], &[], &[]); // x[1:, 1:4]
        let empty = s.slice("empty", &x, [3], [1], &[1], &[1]); // x[:, 3:1]
        let rows = s.slice("rows", &x, [-1], [-3], &[0], &[-1]); // x[-1:-3:-1]
        let got = eval(&g, &[("x", floats(&[2, 5], &xv))], &[&rev, &back2, &mid, &empty, &rows]);
        assert_floats(&got[0], &[2, 5], &[4.0, 3.0, 2.0, 1.0, 0.0, 9.0, 8.0, 7.0, 6.0, 5.0]);
        assert_floats(&got[1], &[2, 3], &[4.0, 2.0, 0.0, 9.0, 7.0, 5.0]);
        assert_floats(&got[2], &[1, 3], &[6.0, 7.0, 8.0]);
        assert_floats(&got[3], &[2, 0], &[]);
        assert_floats(&got[4], &[2, 5], &[5.0, 6.0, 7.0, 8.0, 9.0, 0.0, 1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn expand_and_tile() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [3usize, 1]);
        let mut s = g.scope("t");
        let e = s.expand("Expand", &x, [2, 1, 2]); // [2, 3, 2]
        let reps = s.ints(&[2, 3]);
        let t = s.op("Tile", "Tile", &[&x, &reps], &[], DType::F32, [6usize, 3]);
        let got = eval(&g, &[("x", floats(&[3, 1], &[1.0, 2.0, 3.0]))], &[&e, &t]);
        assert_floats(&got[0], &[2, 3, 2], &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        let want: Vec<f64> = (0..6).flat_map(|r| [(r % 3 + 1) as f64; 3]).collect();
        assert_floats(&got[1], &[6, 3], &want);
    }

    /// Padding with a constant, cropping with a negative pad, and (opset 18) padding only `axes`.
    #[test]
    fn pad_constant_mode() {
        let mut g = GraphBuilder::new("t").with_opset(18);
        let x = g.input("x", DType::F32, [2usize, 3]);
        let mut s = g.scope("t");
        let pads = s.ints(&[1, -1, 0, 1]); // rows +1 before, cols -1 before, +1 after
        let fill = s.scalar_f32(9.0);
        let p = s.op("Pad", "Pad", &[&x, &pads, &fill], &[], DType::F32, [3usize, 3]);
        let pads1 = s.ints(&[2, 0]);
        let axes = s.ints(&[-1]);
        let spec = NodeSpec {
            op_type: "Pad",
            inputs: vec![Some(&x), Some(&pads1), None, Some(&axes)],
            outputs: vec![OutputSpec { name: None, dtype: DType::F32, shape: dims![2, 5] }],
            ..NodeSpec::default()
        };
        let q = s.node("PadAxes", spec).remove(0);
        let got = eval(&g, &[("x", floats(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))], &[&p, &q]);
        assert_floats(&got[0], &[3, 3], &[9.0, 9.0, 9.0, 2.0, 3.0, 9.0, 5.0, 6.0, 9.0]);
        assert_floats(&got[1], &[2, 5], &[0.0, 0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn trilu_keeps_a_triangle_with_offset() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [1usize, 3, 3]);
        let mut s = g.scope("t");
        let k = s.scalar_i64(1);
        let upper = s.trilu("upper", &x, Some(&k), true);
        let lower = s.trilu("lower", &x, None, false);
        let mask = s.greater("mask", &x, &x);
        let not = s.not("not", &mask);
        let bool_lower = s.trilu("bool_lower", &not, Some(&k), false);
        let xv = ramp(9, 1.0, 1.0);
        let got = eval(&g, &[("x", floats(&[1, 3, 3], &xv))], &[&upper, &lower, &bool_lower]);
        assert_floats(&got[0], &[1, 3, 3], &[0.0, 2.0, 3.0, 0.0, 0.0, 6.0, 0.0, 0.0, 0.0]);
        assert_floats(&got[1], &[1, 3, 3], &[1.0, 0.0, 0.0, 4.0, 5.0, 0.0, 7.0, 8.0, 9.0]);
        let (t, f) = (true, false);
        assert_bools(&got[2], &[1, 3, 3], &[t, t, f, t, t, t, t, t, t]);
    }

    #[test]
    fn shape_size_constant_of_shape_range() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, dims!["a", "b", "c"]);
        let mut s = g.scope("t");
        let shape = s.shape("Shape", &x);
        let tail = s.op("ShapeTail", "Shape", &[&x], &[("start", Attr::Int(-2)), ("end", Attr::Int(10))], DType::I64, [2usize]);
        let size = s.op("Size", "Size", &[&x], &[], DType::I64, Vec::<usize>::new());
        let ones = s.constant_of_shape("ones", &shape, DType::I64, 7.0);
        let zeros = s.op("zeros", "ConstantOfShape", &[&tail], &[], DType::F32, dims!["b", "c"]);
        let (a, l, d) = (s.scalar_i64(10), s.scalar_i64(1), s.scalar_i64(-4));
        let down = s.range("down", &a, &l, &d);
        let (fa, fl, fd) = (s.scalar_f32(0.5), s.scalar_f32(2.0), s.scalar_f32(0.5));
        let up = s.range("up", &fa, &fl, &fd);
        let got = eval(&g, &[("x", floats(&[1, 2, 3], &ramp(6, 0.0, 1.0)))], &[&shape, &tail, &size, &ones, &zeros, &down, &up]);
        assert_ints(&got[0], &[3], &[1, 2, 3]);
        assert_ints(&got[1], &[2], &[2, 3]);
        assert_ints(&got[2], &[], &[6]);
        assert_ints(&got[3], &[1, 2, 3], &[7; 6]);
        assert_floats(&got[4], &[2, 3], &[0.0; 6]);
        assert_ints(&got[5], &[3], &[10, 6, 2]);
        assert_floats(&got[6], &[3], &[0.5, 1.0, 1.5]);
    }
}
