//! The VJP table: one small rule per op type, in the vocabulary of [`Vjp`]. `y` is the
//! forward output, `g` the gradient arriving at it; results of broadcasting ops go through
//! `U` ([`Vjp::unbroadcast`]). Every rule is covered by a finite-difference test generated
//! from [`super::cases`] (one case list per op), so adding an op means adding a rule here
//! and its cases there.

use loc3r_export::graph::{Attr, ConvOptions, Dim, GemmOptions, NodeSpec, OutputSpec, Value};
use loc3r_export::DType;

use super::vjp::Vjp;

pub(crate) type Rule = fn(&mut Vjp<'_>) -> Result<(), String>;

/// The registry, keyed by `ai.onnx` op type.
const RULES: &[(&str, Rule)] = &[
    ("Identity", identity),
    ("Add", add),
    ("Sub", sub),
    ("Mul", mul),
    ("Div", div),
    ("Neg", neg),
    ("Pow", pow),
    ("Sqrt", sqrt),
    ("Reciprocal", reciprocal),
    ("Exp", exp),
    ("Log", log),
    ("Tanh", tanh),
    ("Sigmoid", sigmoid),
    ("Relu", relu),
    ("Erf", erf),
    ("Sin", sin),
    ("Cos", cos),
    ("Softmax", softmax),
    ("LogSoftmax", log_softmax),
    ("MatMul", matmul),
    ("Gemm", gemm),
    ("ReduceSum", reduce_sum),
    ("ReduceMean", reduce_mean),
    ("ReduceMax", reduce_extremum),
    ("ReduceMin", reduce_extremum),
    ("ReduceSumSquare", reduce_sum_square),
    ("ReduceL2", reduce_l2),
    ("Reshape", reshape_back),
    ("Flatten", reshape_back),
    ("Squeeze", reshape_back),
    ("Unsqueeze", reshape_back),
    ("Transpose", transpose),
    ("Concat", concat),
    ("Split", split),
    ("Slice", slice),
    ("Gather", gather),
    ("GatherElements", gather_elements),
    ("Where", where_),
    ("Cast", cast),
    ("Expand", expand),
    ("Clip", clip),
    ("LayerNormalization", layer_norm),
    ("Sum", sum),
    ("Abs", abs),
    ("Max", extremum),
    ("Min", extremum),
    ("Trilu", trilu),
    ("Conv", conv),
    ("ConvTranspose", conv_transpose),
    ("Resize", resize),
];

/// Ops whose outputs never carry gradient (integer results, or piecewise constant).
const CONSTANT_OPS: &[&str] = &[
    "Shape",
    "Size",
    "ArgMax",
    "ArgMin",
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "And",
    "Or",
    "Not",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "ConstantOfShape",
    "Range",
    "NonZero",
    "OneHot",
];

pub(crate) fn rule(op: &str) -> Option<Rule> {
    RULES.iter().find(|(name, _)| *name == op).map(|(_, r)| *r)
}

pub(crate) fn is_constant_op(op: &str) -> bool {
    CONSTANT_OPS.contains(&op)
}

/// Whether `op` has a gradient rule.
pub fn has_rule(op: &str) -> bool {
    rule(op).is_some()
}

/// Every op type with a gradient rule.
pub fn supported_ops() -> Vec<&'static str> {
    RULES.iter().map(|(name, _)| *name).collect()
}

fn identity(v: &mut Vjp<'_>) -> Result<(), String> {
    let g = v.g();
    v.set(0, g);
    Ok(())
}

/// ga = U(g, a); gb = U(±g, b)
fn add_sub(v: &mut Vjp<'_>, sign: f64) -> Result<(), String> {
    let (a, b, g) = (v.i(0)?, v.i(1)?, v.g());
    if v.needs(0) {
        let ga = v.unbroadcast("da", &g, &a)?;
        v.set(0, ga);
    }
    if v.needs(1) {
        let gb = if sign < 0.0 { v.s.neg("neg_g", &g) } else { g };
        let gb = v.unbroadcast("db", &gb, &b)?;
        v.set(1, gb);
    }
    Ok(())
}

fn add(v: &mut Vjp<'_>) -> Result<(), String> {
    add_sub(v, 1.0)
}

fn sub(v: &mut Vjp<'_>) -> Result<(), String> {
    add_sub(v, -1.0)
}

/// ga = U(g·b, a); gb = U(g·a, b)
fn mul(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, b, g) = (v.i(0)?, v.i(1)?, v.g());
    if v.needs(0) {
        let t = v.s.mul("g_times_b", &g, &b);
        let ga = v.unbroadcast("da", &t, &a)?;
        v.set(0, ga);
    }
    if v.needs(1) {
        let t = v.s.mul("g_times_a", &g, &a);
        let gb = v.unbroadcast("db", &t, &b)?;
        v.set(1, gb);
    }
    Ok(())
}

/// ga = U(g/b, a); gb = U(−g·y/b, b)
fn div(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, b, y, g) = (v.i(0)?, v.i(1)?, v.o(0), v.g());
    if v.needs(0) {
        let t = v.s.div("g_over_b", &g, &b);
        let ga = v.unbroadcast("da", &t, &a)?;
        v.set(0, ga);
    }
    if v.needs(1) {
        let y_over_b = v.s.div("y_over_b", &y, &b);
        let t = v.s.mul("g_y_over_b", &g, &y_over_b);
        let t = v.s.neg("neg", &t);
        let gb = v.unbroadcast("db", &t, &b)?;
        v.set(1, gb);
    }
    Ok(())
}

fn neg(v: &mut Vjp<'_>) -> Result<(), String> {
    let g = v.g();
    let ga = v.s.neg("da", &g);
    v.set(0, ga);
    Ok(())
}

/// ga = U(g·p·a^(p−1), a); the exponent must be frozen (a constant in every loc3r graph).
fn pow(v: &mut Vjp<'_>) -> Result<(), String> {
    if v.needs(1) {
        return Err("the gradient with respect to Pow's exponent is not supported; keep the exponent constant".into());
    }
    let (a, p, g) = (v.i(0)?, v.i(1)?, v.g());
    let p = if p.dtype() == a.dtype() { p } else { v.s.cast("exponent_to_float", &p, a.dtype()) };
    let p_minus_one = v.s.sub_scalar("p_minus_one", &p, 1.0);
    let a_pow = v.s.pow("a_pow_p_minus_one", &a, &p_minus_one);
    let t = v.s.mul("times_p", &a_pow, &p);
    let t = v.s.mul("times_g", &g, &t);
    let ga = v.unbroadcast("da", &t, &a)?;
    v.set(0, ga);
    Ok(())
}

/// g·0.5/y
fn sqrt(v: &mut Vjp<'_>) -> Result<(), String> {
    let (y, g) = (v.o(0), v.g());
    let half = v.s.mul_scalar("half_g", &g, 0.5);
    let ga = v.s.div("da", &half, &y);
    v.set(0, ga);
    Ok(())
}

/// −g·y²
fn reciprocal(v: &mut Vjp<'_>) -> Result<(), String> {
    let (y, g) = (v.o(0), v.g());
    let y2 = v.s.mul("y_squared", &y, &y);
    let t = v.s.mul("g_y_squared", &g, &y2);
    let ga = v.s.neg("da", &t);
    v.set(0, ga);
    Ok(())
}

/// g·y
fn exp(v: &mut Vjp<'_>) -> Result<(), String> {
    let (y, g) = (v.o(0), v.g());
    let ga = v.s.mul("da", &g, &y);
    v.set(0, ga);
    Ok(())
}

/// g/a
fn log(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, g) = (v.i(0)?, v.g());
    let ga = v.s.div("da", &g, &a);
    v.set(0, ga);
    Ok(())
}

/// g·(1 − y²)
fn tanh(v: &mut Vjp<'_>) -> Result<(), String> {
    let (y, g) = (v.o(0), v.g());
    let y2 = v.s.mul("y_squared", &y, &y);
    let one = v.scalar(y.dtype(), 1.0);
    let d = v.s.sub("one_minus_y_squared", &one, &y2);
    let ga = v.s.mul("da", &g, &d);
    v.set(0, ga);
    Ok(())
}

/// g·y·(1 − y)
fn sigmoid(v: &mut Vjp<'_>) -> Result<(), String> {
    let (y, g) = (v.o(0), v.g());
    let one = v.scalar(y.dtype(), 1.0);
    let d = v.s.sub("one_minus_y", &one, &y);
    let d = v.s.mul("y_one_minus_y", &y, &d);
    let ga = v.s.mul("da", &g, &d);
    v.set(0, ga);
    Ok(())
}

/// Where(a > 0, g, 0)
fn relu(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, g) = (v.i(0)?, v.g());
    let zero = v.scalar(a.dtype(), 0.0);
    let open = v.s.greater("positive", &a, &zero);
    let ga = v.s.where_("da", &open, &g, &zero);
    v.set(0, ga);
    Ok(())
}

/// g·(2/√π)·exp(−a²)
fn erf(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, g) = (v.i(0)?, v.g());
    let a2 = v.s.mul("a_squared", &a, &a);
    let e = v.s.neg("neg_a_squared", &a2);
    let e = v.s.exp("exp", &e);
    let e = v.s.mul_scalar("times_two_over_sqrt_pi", &e, std::f64::consts::FRAC_2_SQRT_PI);
    let ga = v.s.mul("da", &g, &e);
    v.set(0, ga);
    Ok(())
}

/// g·cos(a)
fn sin(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, g) = (v.i(0)?, v.g());
    let c = v.s.cos("cos", &a);
    let ga = v.s.mul("da", &g, &c);
    v.set(0, ga);
    Ok(())
}

/// −g·sin(a)
fn cos(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, g) = (v.i(0)?, v.g());
    let s = v.s.sin("sin", &a);
    let t = v.s.mul("g_sin", &g, &s);
    let ga = v.s.neg("da", &t);
    v.set(0, ga);
    Ok(())
}

/// y·(g − ReduceSum(g·y, axis, keepdims))
fn softmax(v: &mut Vjp<'_>) -> Result<(), String> {
    let (y, g) = (v.o(0), v.g());
    let axis = v.attr_int("axis", -1);
    let gy = v.s.mul("g_times_y", &g, &y);
    let sum = v.s.reduce_sum("sum_g_y", &gy, &[axis], true);
    let d = v.s.sub("g_minus_sum", &g, &sum);
    let ga = v.s.mul("da", &y, &d);
    v.set(0, ga);
    Ok(())
}

/// g − exp(y)·ReduceSum(g, axis, keepdims)
fn log_softmax(v: &mut Vjp<'_>) -> Result<(), String> {
    let (y, g) = (v.o(0), v.g());
    let axis = v.attr_int("axis", -1);
    let p = v.s.exp("probs", &y);
    let sum = v.s.reduce_sum("sum_g", &g, &[axis], true);
    let t = v.s.mul("probs_times_sum", &p, &sum);
    let ga = v.s.sub("da", &g, &t);
    v.set(0, ga);
    Ok(())
}

/// Transposes the last two axes of `t`.
fn transpose_last_two(v: &mut Vjp<'_>, step: &str, t: &Value) -> Value {
    let r = t.rank() as i64;
    let mut perm: Vec<i64> = (0..r).collect();
    perm.swap((r - 2) as usize, (r - 1) as usize);
    v.s.transpose(step, t, &perm)
}

/// `a [.., m, k] · b [.., k, n]`: ga = U(g·bᵀ, a); gb = U(aᵀ·g, b).
///
/// ```text
/// 1-D operands are lifted as numpy does: a [k] → [1, k] and b [k] → [k, 1], and g gets the
/// removed axes back (n: Unsqueeze −1, then m: Unsqueeze −2) before the 2-D rule applies;
/// the lifted axis is squeezed from the result again.
/// ```
fn matmul(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, b, mut g) = (v.i(0)?, v.i(1)?, v.g());
    let (a1, b1) = (a.rank() == 1, b.rank() == 1);
    let a2 = if a1 { v.s.unsqueeze("a_as_row", &a, &[0]) } else { a.clone() };
    let b2 = if b1 { v.s.unsqueeze("b_as_column", &b, &[1]) } else { b.clone() };
    if b1 {
        g = v.s.unsqueeze("g_n_axis", &g, &[g.rank() as i64]);
    }
    if a1 {
        g = v.s.unsqueeze("g_m_axis", &g, &[g.rank() as i64 - 1]);
    }
    if v.needs(0) {
        let bt = transpose_last_two(v, "b_transposed", &b2);
        let t = v.s.matmul("g_bt", &g, &bt);
        let t = if a1 { v.s.squeeze("g_bt_row", &t, &[t.rank() as i64 - 2]) } else { t };
        let ga = v.unbroadcast("da", &t, &a)?;
        v.set(0, ga);
    }
    if v.needs(1) {
        let at = transpose_last_two(v, "a_transposed", &a2);
        let t = v.s.matmul("at_g", &at, &g);
        let t = if b1 { v.s.squeeze("at_g_column", &t, &[t.rank() as i64 - 1]) } else { t };
        let gb = v.unbroadcast("db", &t, &b)?;
        v.set(1, gb);
    }
    Ok(())
}

/// `y = α·A'·B' + β·C` (primes: optional transposes); each case of (transA, transB) is one Gemm.
fn gemm(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, b, g) = (v.i(0)?, v.i(1)?, v.g());
    let alpha = v.attr_float("alpha", 1.0);
    let beta = v.attr_float("beta", 1.0);
    let (ta, tb) = (v.attr_int("transA", 0) != 0, v.attr_int("transB", 0) != 0);
    let opts = |trans_a, trans_b| GemmOptions { alpha, beta: 0.0, trans_a, trans_b };
    if v.needs(0) {
        // A' = A: gA = α g B'ᵀ; A' = Aᵀ: gA = α B' gᵀ.
        let ga = match (ta, tb) {
            (false, false) => v.s.gemm("da", &g, &b, None, opts(false, true)),
            (false, true) => v.s.gemm("da", &g, &b, None, opts(false, false)),
            (true, false) => v.s.gemm("da", &b, &g, None, opts(false, true)),
            (true, true) => v.s.gemm("da", &b, &g, None, opts(true, true)),
        };
        let ga = v.shaped_like(&ga, &a);
        v.set(0, ga);
    }
    if v.needs(1) {
        let gb = match (ta, tb) {
            (false, false) => v.s.gemm("db", &a, &g, None, opts(true, false)),
            (false, true) => v.s.gemm("db", &g, &a, None, opts(true, false)),
            (true, false) => v.s.gemm("db", &a, &g, None, opts(false, false)),
            (true, true) => v.s.gemm("db", &g, &a, None, opts(true, true)),
        };
        let gb = v.shaped_like(&gb, &b);
        v.set(1, gb);
    }
    if v.needs(2) {
        let c = v.i(2)?;
        let t = if beta == 1.0 { g } else { v.s.mul_scalar("beta_g", &g, f64::from(beta)) };
        let gc = v.unbroadcast("dc", &t, &c)?;
        v.set(2, gc);
    }
    Ok(())
}

/// The reduced axes of a Reduce* node, normalised and sorted (`None`: all axes).
fn reduce_axes(v: &Vjp<'_>, rank: usize) -> Result<Vec<i64>, String> {
    let listed = match v.attr_ints("axes") {
        Some(axes) => axes,
        None if v.input_count() > 1 => v.const_ints(1).ok_or("the reduction axes must be a constant to differentiate")?,
        None => Vec::new(),
    };
    if listed.is_empty() {
        if v.attr_int("noop_with_empty_axes", 0) != 0 {
            return Err("a reduction with noop_with_empty_axes and no axes is an identity; it is not expected here".into());
        }
        return Ok((0..rank as i64).collect());
    }
    let mut axes: Vec<i64> = listed.iter().map(|&a| if a < 0 { a + rank as i64 } else { a }).collect();
    axes.sort_unstable();
    Ok(axes)
}

/// g with the reduced axes back (size 1), so it broadcasts against the input.
fn keep_reduced_axes(v: &mut Vjp<'_>, step: &str, t: &Value, axes: &[i64]) -> Value {
    if v.attr_int("keepdims", 1) != 0 {
        t.clone()
    } else {
        v.s.unsqueeze(step, t, axes)
    }
}

/// Expand(keepdims ? g : Unsqueeze(g, axes), shape(a))
fn reduce_sum(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, g) = (v.i(0)?, v.g());
    let axes = reduce_axes(v, a.rank())?;
    let gk = keep_reduced_axes(v, "g_keepdims", &g, &axes);
    let ga = v.expand_like("da", &gk, &a);
    v.set(0, ga);
    Ok(())
}

/// Like ReduceSum, divided by the number of reduced elements (Size(a)/Size(y) when symbolic).
fn reduce_mean(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, y, g) = (v.i(0)?, v.o(0), v.g());
    let axes = reduce_axes(v, a.rank())?;
    let reduced: Option<usize> = axes.iter().map(|&i| a.shape()[i as usize].fixed()).product();
    let scaled = match reduced {
        Some(n) => v.s.div_scalar("g_over_n", &g, n as f64),
        None => {
            let na = v.s.op("size_a", "Size", &[&a], &[], DType::I64, Vec::<Dim>::new());
            let ny = v.s.op("size_y", "Size", &[&y], &[], DType::I64, Vec::<Dim>::new());
            let n = v.s.div("n", &na, &ny);
            let n = v.s.cast("n_to_float", &n, g.dtype());
            v.s.div("g_over_n", &g, &n)
        }
    };
    let gk = keep_reduced_axes(v, "g_keepdims", &scaled, &axes);
    let ga = v.expand_like("da", &gk, &a);
    v.set(0, ga);
    Ok(())
}

/// Ties share the gradient, like torch's amax/amin:
/// mask = Equal(a, y_keep); ga = g_keep·mask / ReduceSum(mask, axes, keepdims)
fn reduce_extremum(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, y, g) = (v.i(0)?, v.o(0), v.g());
    let axes = reduce_axes(v, a.rank())?;
    let yk = keep_reduced_axes(v, "y_keepdims", &y, &axes);
    let gk = keep_reduced_axes(v, "g_keepdims", &g, &axes);
    let hit = v.s.equal("is_extremum", &a, &yk);
    let mask = v.s.cast("mask", &hit, a.dtype());
    let count = v.s.reduce_sum("ties", &mask, &axes, true);
    let share = v.s.div("share", &gk, &count);
    let ga = v.s.mul("da", &mask, &share);
    v.set(0, ga);
    Ok(())
}

/// 2·a·g_keep
fn reduce_sum_square(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, g) = (v.i(0)?, v.g());
    let axes = reduce_axes(v, a.rank())?;
    let gk = keep_reduced_axes(v, "g_keepdims", &g, &axes);
    let two_a = v.s.mul_scalar("two_a", &a, 2.0);
    let ga = v.s.mul("da", &two_a, &gk);
    v.set(0, ga);
    Ok(())
}

/// a·g_keep / y_keep (y = ‖a‖₂ over the axes). Where y = 0, a = 0 too, so dividing by y clipped
/// to the smallest normal f32 gives 0, PyTorch's choice for the norm's subgradient at 0.
fn reduce_l2(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, g, y) = (v.i(0)?, v.g(), v.o(0));
    let axes = reduce_axes(v, a.rank())?;
    let gk = keep_reduced_axes(v, "g_keepdims", &g, &axes);
    let yk = keep_reduced_axes(v, "y_keepdims", &y, &axes);
    let yk = v.s.clip("y_nonzero", &yk, Some(f64::from(f32::MIN_POSITIVE)), None);
    let ratio = v.s.div("g_over_y", &gk, &yk);
    let ga = v.s.mul("da", &a, &ratio);
    v.set(0, ga);
    Ok(())
}

/// Reshape, Flatten, Squeeze, Unsqueeze: Reshape(g, shape(a)).
fn reshape_back(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, g) = (v.i(0)?, v.g());
    let ga = v.reshape_like("da", &g, &a);
    v.set(0, ga);
    Ok(())
}

/// Transpose(g, perm⁻¹)
fn transpose(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, g) = (v.i(0)?, v.g());
    let r = a.rank();
    let perm = v.attr_ints("perm").unwrap_or_else(|| (0..r as i64).rev().collect());
    let mut inverse = vec![0i64; r];
    for (i, &p) in perm.iter().enumerate() {
        inverse[p as usize] = i as i64;
    }
    let ga = v.s.transpose("da", &g, &inverse);
    v.set(0, ga);
    Ok(())
}

/// The input sizes along a Concat/Split axis, as graph values when any is symbolic.
fn axis_of(v: &Vjp<'_>, rank: usize) -> usize {
    let axis = v.attr_int("axis", 0);
    (if axis < 0 { axis + rank as i64 } else { axis }) as usize
}

/// Split(g, sizes of the inputs along axis); Slice pieces when a size is symbolic.
fn concat(v: &mut Vjp<'_>) -> Result<(), String> {
    let g = v.g();
    let axis = axis_of(v, g.rank());
    let parts: Vec<Value> = (0..v.input_count()).map(|k| v.i(k)).collect::<Result<_, _>>()?;
    let sizes: Option<Vec<usize>> = parts.iter().map(|p| p.shape()[axis].fixed()).collect();
    match sizes {
        Some(sizes) => {
            let pieces = v.s.split("pieces", &g, axis as i64, &sizes);
            for (k, (piece, part)) in pieces.iter().zip(&parts).enumerate() {
                let piece = v.shaped_like(piece, part);
                v.set(k, piece);
            }
        }
        None => {
            // Running offsets from the parts' run-time shapes: piece k = g[offset_k : offset_k + size_k].
            let mut offset = v.s.ints(&[0]);
            for (k, part) in parts.iter().enumerate() {
                let shape = v.s.shape(&format!("part{k}/shape"), part);
                let size = v.s.slice(&format!("part{k}/size"), &shape, [axis as i64], [axis as i64 + 1], &[0], &[]);
                let end = v.s.add(&format!("part{k}/end"), &offset, &size);
                if v.needs(k) {
                    let piece = v.s.slice(&format!("part{k}/piece"), &g, &offset, &end, &[axis as i64], &[]);
                    let piece = v.shaped_like(&piece, part);
                    v.set(k, piece);
                }
                offset = end;
            }
        }
    }
    Ok(())
}

/// Concat(g_j, or zeros shaped like y_j, axis)
fn split(v: &mut Vjp<'_>) -> Result<(), String> {
    let a = v.i(0)?;
    let axis = axis_of(v, a.rank());
    let mut pieces = Vec::with_capacity(v.output_count());
    for j in 0..v.output_count() {
        let piece = match v.go(j) {
            Some(g) => g,
            None => {
                let y = v.o(j);
                v.zeros_like(&format!("zeros{j}"), &y)
            }
        };
        pieces.push(piece);
    }
    let refs: Vec<&Value> = pieces.iter().collect();
    let ga = v.s.concat("da", &refs, axis as i64);
    let ga = v.shaped_like(&ga, &a);
    v.set(0, ga);
    Ok(())
}

/// Slice with unit steps: Pad(g, begin = start, end = dim − end), bounds clamped like the
/// forward. Constant bounds on fixed dims give constant pads; otherwise the pads are computed
/// in the graph from shape(a).
///
/// ```text
/// per sliced axis:  clamp to [−dim, dim];  s = start < 0 ? start + dim : start;  e likewise
/// pads = [0.., s_axis, ..0,   0.., dim − e_axis, ..0]  ─▶ Pad(g, pads, 0)
/// ```
fn slice(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, g) = (v.i(0)?, v.g());
    let r = a.rank();
    let steps = v.const_ints(4);
    if v.i_opt(4).is_some() && steps.as_ref().is_none_or(|s| s.iter().any(|&x| x != 1)) {
        return Err("only unit steps are differentiable (a strided Slice needs ScatterND)".into());
    }
    let axes: Vec<usize> = match v.i_opt(3) {
        Some(_) => v
            .const_ints(3)
            .ok_or("the Slice axes must be a constant to differentiate")?
            .iter()
            .map(|&x| (if x < 0 { x + r as i64 } else { x }) as usize)
            .collect(),
        None => (0..v.i(1)?.shape().first().and_then(Dim::fixed).ok_or("Slice starts must have a fixed length")?).collect(),
    };
    let (starts, ends) = (v.const_ints(1), v.const_ints(2));
    let dims: Option<Vec<usize>> = axes.iter().map(|&i| a.shape()[i].fixed()).collect();
    let pads_value = match (starts, ends, dims) {
        (Some(starts), Some(ends), Some(dims)) => {
            let mut pads = vec![0i64; 2 * r];
            for (k, (&axis, &dim)) in axes.iter().zip(&dims).enumerate() {
                let clamp = |x: i64| (if x < 0 { x + dim as i64 } else { x }).clamp(0, dim as i64);
                let (s, e) = (clamp(starts[k]), clamp(ends[k]));
                pads[axis] = s;
                pads[r + axis] = dim as i64 - e.max(s);
            }
            v.s.ints(&pads)
        }
        _ => slice_pads_at_run_time(v, &a, &axes)?,
    };
    let zero = v.scalar(g.dtype(), 0.0);
    let ga = v.s.op("da", "Pad", &[&g, &pads_value, &zero], &[("mode", Attr::String("constant".into()))], g.dtype(), a.shape().to_vec());
    v.set(0, ga);
    Ok(())
}

fn slice_pads_at_run_time(v: &mut Vjp<'_>, a: &Value, axes: &[usize]) -> Result<Value, String> {
    let (starts, ends) = (v.i(1)?, v.i(2)?);
    let r = a.rank();
    let s = &mut v.s;
    let shape = s.shape("a_shape", a);
    let axes_i64: Vec<i64> = axes.iter().map(|&x| x as i64).collect();
    let axes_value = s.ints(&axes_i64);
    let dims = s.gather("sliced_dims", &shape, &axes_value, 0);
    let zero = s.scalar_i64(0);
    let neg_dims = s.neg("minus_sliced_dims", &dims);
    // Clamp to [−dim, dim] first, so wrapping a negative bound cannot overflow (ends are
    // often i64::MAX), then wrap negatives into [0, dim].
    let clamp = |s: &mut loc3r_export::graph::Scope<'_>, name: &str, x: &Value| {
        let x = s.min(&format!("{name}/at_most_dim"), x, &dims);
        let x = s.max(&format!("{name}/at_least_minus_dim"), &x, &neg_dims);
        let negative = s.less(&format!("{name}/negative"), &x, &zero);
        let wrapped = s.add(&format!("{name}/plus_dim"), &x, &dims);
        s.where_(&format!("{name}/wrapped"), &negative, &wrapped, &x)
    };
    let b = clamp(s, "begin", &starts);
    let e = clamp(s, "end", &ends);
    let e = s.max("end_after_begin", &e, &b);
    let end_pad = s.sub("end_pad", &dims, &e);
    // Scatter the per-axis pads into a [2r] vector of zeros.
    let zeros = s.constant_i64(&vec![0; 2 * r], &[2 * r]);
    let mut positions: Vec<i64> = axes_i64.clone();
    positions.extend(axes_i64.iter().map(|&x| x + r as i64));
    let positions = s.constant_i64(&positions, &[2 * axes.len(), 1]);
    let updates = s.concat("pad_values", &[&b, &end_pad], 0);
    Ok(s.node(
        "pads",
        NodeSpec {
            op_type: "ScatterND",
            inputs: vec![Some(&zeros), Some(&positions), Some(&updates)],
            outputs: vec![OutputSpec { name: None, dtype: DType::I64, shape: vec![Dim::Fixed(2 * r)] }],
            ..Default::default()
        },
    )[0]
    .clone())
}

/// Gather(data, idx, axis): a one-hot MatMul, deterministic on every device (no atomics).
///
/// ```text
/// data [pre.., D, post..], idx I  →  y [pre.., I.., post..]
/// onehot = OneHot(Reshape(idx, [-1]), D) [N, D]         (N = numel(idx); negative ids wrap;
///                                                        D from shape(data) when symbolic)
/// g ─Reshape[P, N, Q]─▶ MatMul(onehotᵀ [D, N], ·) [P, D, Q] ─Reshape(shape(data))─▶ ga
/// ```
fn gather(v: &mut Vjp<'_>) -> Result<(), String> {
    let (data, idx, g) = (v.i(0)?, v.i(1)?, v.g());
    let r = data.rank();
    let axis = axis_of(v, r);
    let depth_dim = data.shape()[axis].clone();
    let pre: Option<usize> = data.shape()[..axis].iter().map(Dim::fixed).product();
    let post: Option<usize> = data.shape()[axis + 1..].iter().map(Dim::fixed).product();
    let (pre, post) = match (pre, post) {
        (Some(p), Some(q)) => (p as i64, q as i64),
        (None, Some(q)) => (-1, q as i64),
        (Some(p), None) => (p as i64, -1),
        (None, None) => return Err("Gather's data may have at most one group of symbolic dims to differentiate".into()),
    };
    let dtype = g.dtype();
    let s = &mut v.s;
    let flat = s.reshape("ids_flat", &idx, [-1i64]);
    // The depth is the gathered axis' size: a constant, or read from shape(data) at run time.
    let depth_value = match depth_dim.fixed() {
        Some(depth) => s.ints(&[depth as i64]),
        None => {
            let shape = s.shape("data_shape", &data);
            s.slice("depth", &shape, [axis as i64], [axis as i64 + 1], &[0], &[])
        }
    };
    let on_off = s.constant_float(dtype, &[0.0, 1.0], &[2]);
    let n = flat.shape()[0].clone();
    let onehot = s.op("onehot", "OneHot", &[&flat, &depth_value, &on_off], &[("axis", Attr::Int(-1))], dtype, [n, depth_dim]);
    let onehot_t = s.transpose("onehot_t", &onehot, &[1, 0]);
    let n_dim = if pre == -1 || post == -1 { 0 } else { -1 };
    let g3 = if n_dim == 0 {
        // One side symbolic: N must be explicit; take it from the ids.
        let ids_shape = s.shape("ids_shape", &flat);
        let p = s.ints(&[pre]);
        let q = s.ints(&[post]);
        let target = s.concat("g_target", &[&p, &ids_shape, &q], 0);
        s.reshape("g_3d", &g, &target)
    } else {
        s.reshape("g_3d", &g, [pre, -1, post])
    };
    let summed = s.matmul("scatter_add", &onehot_t, &g3);
    let ga = v.reshape_like("da", &summed, &data);
    v.set(0, ga);
    Ok(())
}

/// ScatterElements(zeros, idx, g, reduction = add)
fn gather_elements(v: &mut Vjp<'_>) -> Result<(), String> {
    let (data, idx, g) = (v.i(0)?, v.i(1)?, v.g());
    let axis = v.attr_int("axis", 0);
    let zeros = v.zeros_like("zeros", &data);
    let ga = v.s.op(
        "da",
        "ScatterElements",
        &[&zeros, &idx, &g],
        &[("axis", Attr::Int(axis)), ("reduction", Attr::String("add".into()))],
        data.dtype(),
        data.shape().to_vec(),
    );
    v.set(0, ga);
    Ok(())
}

/// ga = U(Where(c, g, 0), a); gb = U(Where(c, 0, g), b)
fn where_(v: &mut Vjp<'_>) -> Result<(), String> {
    let (c, g) = (v.i(0)?, v.g());
    let zero = v.scalar(g.dtype(), 0.0);
    if v.needs(1) {
        let a = v.i(1)?;
        let t = v.s.where_("g_where_true", &c, &g, &zero);
        let ga = v.unbroadcast("da", &t, &a)?;
        v.set(1, ga);
    }
    if v.needs(2) {
        let b = v.i(2)?;
        let t = v.s.where_("g_where_false", &c, &zero, &g);
        let gb = v.unbroadcast("db", &t, &b)?;
        v.set(2, gb);
    }
    Ok(())
}

/// float → float: Cast(g, dtype(a)); integer sources get no gradient.
fn cast(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, g) = (v.i(0)?, v.g());
    if a.dtype().is_float() {
        let ga = if a.dtype() == g.dtype() { g } else { v.s.cast("da", &g, a.dtype()) };
        v.set(0, ga);
    }
    Ok(())
}

/// U(g, a)
fn expand(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, g) = (v.i(0)?, v.g());
    let ga = v.unbroadcast("da", &g, &a)?;
    v.set(0, ga);
    Ok(())
}

/// g where min ≤ a ≤ max (inclusive, as torch), else 0.
fn clip(v: &mut Vjp<'_>) -> Result<(), String> {
    if v.needs(1) || v.needs(2) {
        return Err("Clip bounds must be constants".into());
    }
    let (a, g) = (v.i(0)?, v.g());
    let above = v.i_opt(1).map(|lo| v.s.greater_or_equal("at_least_min", &a, &lo));
    let below = v.i_opt(2).map(|hi| v.s.less_or_equal("at_most_max", &a, &hi));
    let inside = match (above, below) {
        (Some(x), Some(y)) => v.s.and("inside", &x, &y),
        (Some(x), None) | (None, Some(x)) => x,
        (None, None) => {
            v.set(0, g);
            return Ok(());
        }
    };
    let zero = v.scalar(g.dtype(), 0.0);
    let ga = v.s.where_("da", &inside, &g, &zero);
    v.set(0, ga);
    Ok(())
}

/// LayerNormalization over axes `axis..`: the statistics are recomputed (the forward node
/// has no Mean/InvStdDev outputs), in the input's dtype.
///
/// ```text
/// μ = mean(x), r = 1/√(mean((x−μ)²) + ε), x̂ = (x−μ)·r, ĝ = g·γ      (means over the normalised axes)
/// dx = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂));  dγ = Σ_batch g·x̂;  dβ = Σ_batch g
/// ```
fn layer_norm(v: &mut Vjp<'_>) -> Result<(), String> {
    let (x, scale, g) = (v.i(0)?, v.i(1)?, v.g());
    if v.output_count() > 1 && (v.go(1).is_some() || v.go(2).is_some()) {
        return Err("gradients through LayerNormalization's Mean/InvStdDev outputs are not supported".into());
    }
    let rank = x.rank() as i64;
    let axis = v.attr_int("axis", -1);
    let axis = if axis < 0 { axis + rank } else { axis };
    let eps = f64::from(v.attr_float("epsilon", 1e-5));
    let norm_axes: Vec<i64> = (axis..rank).collect();
    let batch_axes: Vec<i64> = (0..axis).collect();
    let s = &mut v.s;
    let mu = s.reduce_mean("mean", &x, &norm_axes, true);
    let xc = s.sub("centered", &x, &mu);
    let sq = s.mul("centered_squared", &xc, &xc);
    let var = s.reduce_mean("variance", &sq, &norm_axes, true);
    let var = s.add_scalar("variance_eps", &var, eps);
    let std = s.sqrt("std", &var);
    let inv = s.reciprocal("inv_std", &std);
    let xhat = s.mul("x_hat", &xc, &inv);
    if v.needs(0) {
        let s = &mut v.s;
        let gh = s.mul("g_scaled", &g, &scale);
        let mean_gh = s.reduce_mean("mean_g_scaled", &gh, &norm_axes, true);
        let ghx = s.mul("g_scaled_x_hat", &gh, &xhat);
        let mean_ghx = s.reduce_mean("mean_g_scaled_x_hat", &ghx, &norm_axes, true);
        let t = s.mul("x_hat_mean", &xhat, &mean_ghx);
        let d = s.sub("minus_mean", &gh, &mean_gh);
        let d = s.sub("minus_projection", &d, &t);
        let dx = s.mul("dx", &inv, &d);
        v.set(0, dx);
    }
    if v.needs(1) {
        let gx = v.s.mul("g_x_hat", &g, &xhat);
        let dscale = if batch_axes.is_empty() { gx } else { v.s.reduce_sum("dscale_sum", &gx, &batch_axes, false) };
        let dscale = v.unbroadcast("dscale", &dscale, &scale)?;
        v.set(1, dscale);
    }
    if v.needs(2) {
        let bias = v.i(2)?;
        let db = if batch_axes.is_empty() { g } else { v.s.reduce_sum("dbias_sum", &g, &batch_axes, false) };
        let db = v.unbroadcast("dbias", &db, &bias)?;
        v.set(2, db);
    }
    Ok(())
}

/// Sum(a₀, a₁, …): g to each, unbroadcast.
fn sum(v: &mut Vjp<'_>) -> Result<(), String> {
    let g = v.g();
    for k in 0..v.input_count() {
        if v.needs(k) {
            let a = v.i(k)?;
            let gk = v.unbroadcast(&format!("d{k}"), &g, &a)?;
            v.set(k, gk);
        }
    }
    Ok(())
}

/// g·sign(a) (0 at a = 0, like torch).
fn abs(v: &mut Vjp<'_>) -> Result<(), String> {
    let (a, g) = (v.i(0)?, v.g());
    let sign = v.s.op("sign", "Sign", &[&a], &[], a.dtype(), a.shape().to_vec());
    let ga = v.s.mul("da", &g, &sign);
    v.set(0, ga);
    Ok(())
}

/// Elementwise Max/Min of broadcast inputs: the gradient goes to the inputs equal to the
/// result, shared equally between ties (the convention of the ReduceMax/ReduceMin rule).
fn extremum(v: &mut Vjp<'_>) -> Result<(), String> {
    let (y, g) = (v.o(0), v.g());
    let n = v.input_count();
    let mut masks = Vec::with_capacity(n);
    for k in 0..n {
        let a = v.i(k)?;
        let hit = v.s.equal(&format!("is_extremum{k}"), &a, &y);
        masks.push(v.s.cast(&format!("mask{k}"), &hit, g.dtype()));
    }
    let refs: Vec<&Value> = masks.iter().collect();
    let ties = if n == 1 { masks[0].clone() } else { v.s.op("ties", "Sum", &refs, &[], g.dtype(), y.shape().to_vec()) };
    let share = v.s.div("share", &g, &ties);
    for (k, mask) in masks.iter().enumerate() {
        if v.needs(k) {
            let a = v.i(k)?;
            let t = v.s.mul(&format!("g{k}"), mask, &share);
            let t = v.s.refine_shape(&t, y.shape().to_vec());
            let gk = v.unbroadcast(&format!("d{k}"), &t, &a)?;
            v.set(k, gk);
        }
    }
    Ok(())
}

/// Trilu keeps a triangle: the gradient is the same triangle of g.
fn trilu(v: &mut Vjp<'_>) -> Result<(), String> {
    if v.needs(1) {
        return Err("Trilu's diagonal offset is an integer".into());
    }
    let (a, g) = (v.i(0)?, v.g());
    let upper = v.attr_int("upper", 1);
    let mut inputs = vec![g.clone()];
    inputs.extend(v.i_opt(1));
    let refs: Vec<&Value> = inputs.iter().collect();
    let ga = v.s.op("da", "Trilu", &refs, &[("upper", Attr::Int(upper))], a.dtype(), a.shape().to_vec());
    v.set(0, ga);
    Ok(())
}

/// The node's convolution options over `spatial` axes; `auto_pad` and `output_shape`
/// (which leave the padding to the runtime) are refused.
fn conv_options(v: &Vjp<'_>, spatial: usize) -> Result<ConvOptions, String> {
    if let Some(Attr::String(p)) = v.attr("auto_pad") {
        if p != "NOTSET" {
            return Err(format!("auto_pad {p} is not differentiable here; give explicit pads"));
        }
    }
    if v.attr("output_shape").is_some() {
        return Err("ConvTranspose's output_shape is not differentiable here; give pads and output_padding".into());
    }
    let per_axis = |name: &str, len: usize, default: usize| -> Result<Vec<usize>, String> {
        match v.attr_ints(name) {
            None => Ok(vec![default; len]),
            Some(x) if x.len() == len && x.iter().all(|&e| e >= 0) => Ok(x.iter().map(|&e| e as usize).collect()),
            Some(x) => Err(format!("{name} {x:?} must hold {len} non-negative values")),
        }
    };
    let group = v.attr_int("group", 1);
    if group < 1 {
        return Err(format!("group {group} must be at least 1"));
    }
    Ok(ConvOptions {
        strides: per_axis("strides", spatial, 1)?,
        pads: per_axis("pads", 2 * spatial, 0)?,
        dilations: per_axis("dilations", spatial, 1)?,
        group: group as usize,
        output_padding: per_axis("output_padding", spatial, 0)?,
    })
}

/// The fixed sizes of `t`'s spatial axes (the backward convolutions' kernels and output
/// paddings are static).
fn spatial_sizes(t: &Value, what: &str) -> Result<Vec<usize>, String> {
    t.shape()[2..].iter().map(|d| d.fixed().ok_or_else(|| format!("{what} {t:?} needs fixed spatial sizes to be differentiated"))).collect()
}

/// `[N, C, S…]` → `[C/G, G·N, S…]`: channels of one group become the batch, and (group,
/// sample) pairs the channels, so a grouped Conv contracts over the samples of each group.
fn samples_as_channels(v: &mut Vjp<'_>, step: &str, t: &Value, group: usize) -> Result<Value, String> {
    let c = t.shape()[1].fixed().ok_or_else(|| format!("{t:?} needs a fixed channel count"))?;
    let sizes = spatial_sizes(t, "the input")?;
    let split: Vec<i64> = [0, group as i64, (c / group) as i64].into_iter().chain(sizes.iter().map(|&d| d as i64)).collect();
    let t = v.s.reshape(&format!("{step}/split_groups"), t, split);
    let perm: Vec<i64> = [2, 1, 0].into_iter().chain(3..t.rank() as i64).collect();
    let t = v.s.transpose(&format!("{step}/transpose"), &t, &perm);
    let merged: Vec<i64> = [(c / group) as i64, -1].into_iter().chain(sizes.iter().map(|&d| d as i64)).collect();
    Ok(v.s.reshape(&format!("{step}/merge"), &t, merged))
}

/// Swaps the first two axes.
fn swap_leading(v: &mut Vjp<'_>, step: &str, t: &Value) -> Value {
    let perm: Vec<i64> = [1, 0].into_iter().chain(2..t.rank() as i64).collect();
    v.s.transpose(step, t, &perm)
}

/// Crops the spatial axes of `t` to `sizes` (a weight gradient's extra taps).
fn crop_spatial(v: &mut Vjp<'_>, step: &str, t: &Value, sizes: &[usize]) -> Result<Value, String> {
    let have = spatial_sizes(t, "the weight gradient")?;
    if have.iter().zip(sizes).all(|(a, b)| a == b) {
        return Ok(t.clone());
    }
    let axes: Vec<i64> = (2..t.rank() as i64).collect();
    Ok(v.s.slice(step, t, vec![0i64; sizes.len()], sizes.iter().map(|&s| s as i64).collect::<Vec<_>>(), &axes, &[]))
}

/// The weight gradient of Conv and ConvTranspose: `contracted` (samples as channels, see
/// [`samples_as_channels`]) convolved with `kernel_like` as weights, with the forward's stride
/// and dilation swapped, cropped to w's kernel and its first two axes swapped.
fn weight_grad(v: &mut Vjp<'_>, contracted: &Value, kernel_like: &Value, opts: &ConvOptions, w: &Value) -> Result<Value, String> {
    let swapped = ConvOptions {
        strides: opts.dilations.clone(),
        dilations: opts.strides.clone(),
        pads: opts.pads.clone(),
        group: opts.group,
        output_padding: Vec::new(),
    };
    let r = v.s.conv("dw/contract", contracted, kernel_like, None, &swapped);
    let r = crop_spatial(v, "dw/crop", &r, &spatial_sizes(w, "the weight")?)?;
    let dw = swap_leading(v, "dw", &r);
    Ok(v.shaped_like(&dw, w))
}

/// Sums g over every axis but the channels: the bias gradient of Conv and ConvTranspose.
fn conv_bias_grad(v: &mut Vjp<'_>, g: &Value) {
    if v.needs(2) {
        let axes: Vec<i64> = [0].into_iter().chain(2..g.rank() as i64).collect();
        let gb = v.s.reduce_sum("db", g, &axes, false);
        v.set(2, gb);
    }
}

/// `y = Conv(x [N, C, S…], w [M, C/G, k…]) + b`, with p, s, d the pads, strides, dilations:
///
/// ```text
/// dx = ConvTranspose(g, w; s, p, d, G, output_padding = S − ((O−1)·s + d·(k−1) + 1 − p))
/// dw = Conv(x as [C/G, G·N, S…], g as [M, N, O…]; stride d, dilation s, p, G)
///        → [C/G, M, k′…] cropped to k, axes 0 and 1 swapped
/// db = Σ g over N and O…
/// ```
fn conv(v: &mut Vjp<'_>) -> Result<(), String> {
    let (x, w, g) = (v.i(0)?, v.i(1)?, v.g());
    let spatial = x.rank().checked_sub(2).filter(|&n| n > 0).ok_or_else(|| format!("Conv input {x:?} has no spatial axes"))?;
    let opts = conv_options(v, spatial)?;
    let kernel = spatial_sizes(&w, "the weight")?;
    if v.needs(0) {
        let (xs, ys) = (spatial_sizes(&x, "the input")?, spatial_sizes(&g, "the output")?);
        let mut back = opts.clone();
        back.output_padding = (0..spatial)
            .map(|i| {
                let covered = (ys[i] - 1) * opts.strides[i] + opts.dilations[i] * (kernel[i] - 1) + 1;
                (xs[i] + opts.pads[i] + opts.pads[spatial + i]) - covered
            })
            .collect();
        let dx = v.s.conv_transpose("dx", &g, &w, None, &back);
        let dx = v.shaped_like(&dx, &x);
        v.set(0, dx);
    }
    if v.needs(1) {
        let xt = samples_as_channels(v, "dw/x", &x, opts.group)?;
        let gt = swap_leading(v, "dw/g", &g);
        let dw = weight_grad(v, &xt, &gt, &opts, &w)?;
        v.set(1, dw);
    }
    conv_bias_grad(v, &g);
    Ok(())
}

/// `y = ConvTranspose(x [N, C, S…], w [C, M/G, k…]) + b`:
///
/// ```text
/// dx = Conv(g, w; s, p, d, G)                       (cropped to S when output_padding ≥ s)
/// dw = Conv(g as [M/G, G·N, O…], x as [C, N, S…]; stride d, dilation s, p, G)
///        → [M/G, C, k′…] cropped to k, axes 0 and 1 swapped
/// db = Σ g over N and O…
/// ```
fn conv_transpose(v: &mut Vjp<'_>) -> Result<(), String> {
    let (x, w, g) = (v.i(0)?, v.i(1)?, v.g());
    let spatial = x.rank().checked_sub(2).filter(|&n| n > 0).ok_or_else(|| format!("ConvTranspose input {x:?} has no spatial axes"))?;
    let opts = conv_options(v, spatial)?;
    if v.needs(0) {
        let forward = ConvOptions { output_padding: Vec::new(), ..opts.clone() };
        let dx = v.s.conv("dx", &g, &w, None, &forward);
        let dx = crop_spatial(v, "dx/crop", &dx, &spatial_sizes(&x, "the input")?)?;
        let dx = v.shaped_like(&dx, &x);
        v.set(0, dx);
    }
    if v.needs(1) {
        let gt = samples_as_channels(v, "dw/g", &g, opts.group)?;
        let xt = swap_leading(v, "dw/x", &x);
        let dw = weight_grad(v, &gt, &xt, &opts, &w)?;
        v.set(1, dw);
    }
    conv_bias_grad(v, &g);
    Ok(())
}

/// Resize is linear in x and separable: y = x ×₁ A₁ ×₂ A₂ … with one interpolation matrix
/// A_a [out, in] per resized axis, so dx = g ×₁ A₁ᵀ ×₂ A₂ᵀ … — each a MatMul of g (that axis
/// moved last) with the constant A_a. The matrices are the interpreter's
/// ([`crate::interp::resize_axis_weights`]).
fn resize(v: &mut Vjp<'_>) -> Result<(), String> {
    if !v.needs(0) {
        return Ok(());
    }
    let (x, y, g) = (v.i(0)?, v.o(0), v.g());
    crate::interp::check_resize_attrs(|name| v.attr(name))?;
    let text = |name: &str, default: &str| match v.attr(name) {
        Some(Attr::String(s)) => s.clone(),
        _ => default.to_string(),
    };
    let (mode, coordinates, nearest) =
        (text("mode", "nearest"), text("coordinate_transformation_mode", "half_pixel"), text("nearest_mode", "round_prefer_floor"));
    let fixed = |t: &Value, what: &str| -> Result<Vec<Option<usize>>, String> {
        if t.rank() != x.rank() {
            return Err(format!("{what} {t:?} has another rank than the input"));
        }
        Ok(t.shape().iter().map(Dim::fixed).collect())
    };
    let (ins, outs) = (fixed(&x, "the input")?, fixed(&y, "the output")?);
    let given_scales: Option<Vec<f64>> = match v.i_opt(3) {
        Some(_) => None,
        None => {
            let scales = v.i(2).map_err(|_| "Resize without sizes needs scales".to_string())?;
            let values = v.s.const_floats(&scales).ok_or("Resize scales must be a constant of the graph to be differentiated")?;
            Some(values.iter().map(|&s| f64::from(s)).collect())
        }
    };
    let rank = x.rank();
    let mut grad = g;
    for axis in 0..rank {
        let (input, output) = match (ins[axis], outs[axis]) {
            (Some(i), Some(o)) => (i, o),
            _ if given_scales.as_ref().is_some_and(|s| s[axis] == 1.0) => continue,
            _ => return Err(format!("Resize axis {axis} has a symbolic size; the backward interpolation matrix needs fixed sizes")),
        };
        let scale = given_scales.as_ref().map_or(output as f64 / input as f64, |s| s[axis]);
        if input == output && scale == 1.0 {
            continue;
        }
        let rows = crate::interp::resize_axis_weights(&mode, &coordinates, &nearest, input, output, scale)?;
        let mut dense = vec![0f32; output * input];
        for (o, row) in rows.iter().enumerate() {
            for &(i, wgt) in row {
                dense[o * input + i] += wgt as f32;
            }
        }
        let matrix = v.s.constant_float(grad.dtype(), &dense, &[output, input]);
        let last = rank - 1;
        let mut perm: Vec<i64> = (0..rank as i64).collect();
        perm.swap(axis, last);
        let moved = if axis == last { grad.clone() } else { v.s.transpose(&format!("axis{axis}/to_last"), &grad, &perm) };
        let back = v.s.matmul(&format!("axis{axis}/interpolate_t"), &moved, &matrix);
        grad = if axis == last { back } else { v.s.transpose(&format!("axis{axis}/from_last"), &back, &perm) };
    }
    if grad.name() == v.g().name() {
        v.set(0, grad); // every axis kept its size and scale: Resize was an identity
        return Ok(());
    }
    let dx = v.shaped_like(&grad, &x);
    v.set(0, dx);
    Ok(())
}
