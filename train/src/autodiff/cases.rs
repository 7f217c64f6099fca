//! Finite-difference cases for every VJP rule: small forward graphs on random shapes,
//! including broadcasting, negative axes, 1-D MatMul operands, symbolic dims and the edge
//! cases the rules special-case. `tests.rs` runs each through the f64 interpreter (central
//! differences) and through ONNX Runtime in f32 (analytic vs analytic), and checks that
//! every op in the rule table has at least one case here.

use loc3r_export::graph::{Attr, ConvOptions, Dim, GemmOptions, GraphBuilder, NodeSpec, OutputSpec, ResizeOptions, ResizeTarget, Value};
use loc3r_export::{dims, DType};

/// How a float input is drawn.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Init {
    /// Uniform in [−1.5, 1.5].
    Normal,
    /// Uniform in [0.5, 2] (Log, Sqrt, Pow with fractional exponents, divisors).
    Positive,
    /// Uniform in [−1.5, 1.5], at least 0.1 away from every listed kink (Relu, Clip bounds).
    Avoid(&'static [f64]),
}

/// Builds one case: declares float inputs with their draws and returns the output.
pub(crate) struct CaseBuilder {
    pub g: GraphBuilder,
    pub inits: Vec<(Value, Init)>,
    /// Symbolic dims and the sizes the test feeds for them.
    pub sym_sizes: Vec<(&'static str, usize)>,
}

impl CaseBuilder {
    pub fn new(name: &str) -> CaseBuilder {
        CaseBuilder { g: GraphBuilder::new(name), inits: Vec::new(), sym_sizes: Vec::new() }
    }

    /// A trainable f32 input of a fixed shape.
    pub fn param(&mut self, name: &str, shape: &[usize], init: Init) -> Value {
        let v = self.g.input(name, DType::F32, shape.iter().map(|&d| Dim::Fixed(d)));
        self.inits.push((v.clone(), init));
        v
    }

    /// A trainable f32 input with symbolic dims (`Dim::Sym` names must be in `sym_sizes`).
    pub fn param_sym(&mut self, name: &str, shape: Vec<Dim>, init: Init) -> Value {
        let v = self.g.input(name, DType::F32, shape);
        self.inits.push((v.clone(), init));
        v
    }
}

pub(crate) type CaseFn = fn(&mut CaseBuilder) -> Value;

/// `(op, case name, builder)`.
pub(crate) fn all() -> Vec<(&'static str, &'static str, CaseFn)> {
    vec![
        ("Identity", "identity", |c| {
            let x = c.param("x", &[2, 3], Init::Normal);
            c.g.scope("t").identity("id", &x)
        }),
        ("Add", "broadcast_both_ways", |c| {
            let a = c.param("a", &[2, 1, 3], Init::Normal);
            let b = c.param("b", &[4, 1], Init::Normal);
            c.g.scope("t").add("add", &a, &b)
        }),
        ("Add", "same_value_twice", |c| {
            let a = c.param("a", &[3, 2], Init::Normal);
            c.g.scope("t").add("add", &a, &a)
        }),
        ("Add", "symbolic_dim_that_is_one_at_run_time", |c| {
            // The builder cannot tell whether `m` broadcasts: the unbroadcast runs in the graph.
            c.sym_sizes.push(("n", 4));
            c.sym_sizes.push(("m", 1));
            let a = c.param_sym("a", dims!["n", 3], Init::Normal);
            let b = c.param_sym("b", dims!["m", 3], Init::Normal);
            c.g.scope("t").add("add", &a, &b)
        }),
        ("Mul", "symbolic_dims_equal_at_run_time", |c| {
            c.sym_sizes.push(("n", 3));
            c.sym_sizes.push(("m", 3));
            let a = c.param_sym("a", dims!["n", 2], Init::Normal);
            let b = c.param_sym("b", dims!["m", 2], Init::Normal);
            c.g.scope("t").mul("mul", &a, &b)
        }),
        ("Sub", "broadcast_scalar", |c| {
            let a = c.param("a", &[3, 4], Init::Normal);
            let b = c.param("b", &[], Init::Normal);
            c.g.scope("t").sub("sub", &a, &b)
        }),
        ("Mul", "broadcast_rank_gap", |c| {
            let a = c.param("a", &[2, 3, 4], Init::Normal);
            let b = c.param("b", &[4], Init::Normal);
            c.g.scope("t").mul("mul", &a, &b)
        }),
        ("Mul", "square", |c| {
            let a = c.param("a", &[5], Init::Normal);
            c.g.scope("t").mul("mul", &a, &a)
        }),
        ("Div", "broadcast_divisor", |c| {
            let a = c.param("a", &[2, 3], Init::Normal);
            let b = c.param("b", &[2, 1], Init::Positive);
            c.g.scope("t").div("div", &a, &b)
        }),
        ("Neg", "neg", |c| {
            let x = c.param("x", &[4], Init::Normal);
            c.g.scope("t").neg("neg", &x)
        }),
        ("Pow", "cube", |c| {
            let x = c.param("x", &[2, 3], Init::Normal);
            c.g.scope("t").pow_scalar("pow", &x, 3.0)
        }),
        ("Pow", "fractional_exponent", |c| {
            let x = c.param("x", &[4], Init::Positive);
            c.g.scope("t").pow_scalar("pow", &x, -0.5)
        }),
        ("Sqrt", "sqrt", |c| {
            let x = c.param("x", &[3, 2], Init::Positive);
            c.g.scope("t").sqrt("sqrt", &x)
        }),
        ("Reciprocal", "reciprocal", |c| {
            let x = c.param("x", &[3], Init::Positive);
            c.g.scope("t").reciprocal("r", &x)
        }),
        ("Exp", "exp", |c| {
            let x = c.param("x", &[2, 2], Init::Normal);
            c.g.scope("t").exp("exp", &x)
        }),
        ("Log", "log", |c| {
            let x = c.param("x", &[5], Init::Positive);
            c.g.scope("t").log("log", &x)
        }),
        ("Tanh", "tanh", |c| {
            let x = c.param("x", &[2, 3], Init::Normal);
            c.g.scope("t").tanh("tanh", &x)
        }),
        ("Sigmoid", "silu", |c| {
            let x = c.param("x", &[2, 3], Init::Normal);
            let mut s = c.g.scope("t");
            let sig = s.sigmoid("sigmoid", &x);
            s.mul("silu", &x, &sig)
        }),
        ("Relu", "relu", |c| {
            let x = c.param("x", &[3, 3], Init::Avoid(&[0.0]));
            c.g.scope("t").relu("relu", &x)
        }),
        ("Erf", "gelu_erf", |c| {
            let x = c.param("x", &[2, 4], Init::Normal);
            let mut s = c.g.scope("t");
            let t = s.mul_scalar("div_sqrt2", &x, std::f64::consts::FRAC_1_SQRT_2);
            let t = s.erf("erf", &t);
            let t = s.add_scalar("add_one", &t, 1.0);
            let t = s.mul("mul_x", &x, &t);
            s.mul_scalar("half", &t, 0.5)
        }),
        ("Sin", "sin", |c| {
            let x = c.param("x", &[3], Init::Normal);
            c.g.scope("t").sin("sin", &x)
        }),
        ("Cos", "cos", |c| {
            let x = c.param("x", &[3], Init::Normal);
            c.g.scope("t").cos("cos", &x)
        }),
        ("Softmax", "last_axis", |c| {
            let x = c.param("x", &[2, 5], Init::Normal);
            c.g.scope("t").softmax("softmax", &x, -1)
        }),
        ("Softmax", "middle_axis", |c| {
            let x = c.param("x", &[2, 3, 4], Init::Normal);
            c.g.scope("t").softmax("softmax", &x, 1)
        }),
        ("LogSoftmax", "last_axis", |c| {
            let x = c.param("x", &[3, 6], Init::Normal);
            c.g.scope("t").log_softmax("log_softmax", &x, -1)
        }),
        ("MatMul", "batched_broadcast", |c| {
            let a = c.param("a", &[2, 1, 3, 4], Init::Normal);
            let b = c.param("b", &[3, 4, 5], Init::Normal);
            c.g.scope("t").matmul("mm", &a, &b)
        }),
        ("MatMul", "vector_left", |c| {
            let a = c.param("a", &[4], Init::Normal);
            let b = c.param("b", &[2, 4, 3], Init::Normal);
            c.g.scope("t").matmul("mm", &a, &b)
        }),
        ("MatMul", "vector_right", |c| {
            let a = c.param("a", &[2, 3, 4], Init::Normal);
            let b = c.param("b", &[4], Init::Normal);
            c.g.scope("t").matmul("mm", &a, &b)
        }),
        ("MatMul", "vector_dot", |c| {
            let a = c.param("a", &[4], Init::Normal);
            let b = c.param("b", &[4], Init::Normal);
            c.g.scope("t").matmul("mm", &a, &b)
        }),
        ("MatMul", "symbolic_rows", |c| {
            c.sym_sizes.push(("rows", 3));
            let a = c.param_sym("a", dims!["rows", 4], Init::Normal);
            let b = c.param("b", &[4, 2], Init::Normal);
            c.g.scope("t").matmul("mm", &a, &b)
        }),
        ("Gemm", "plain_with_bias", |c| {
            let a = c.param("a", &[3, 4], Init::Normal);
            let b = c.param("b", &[4, 2], Init::Normal);
            let bias = c.param("c", &[2], Init::Normal);
            c.g.scope("t").gemm("gemm", &a, &b, Some(&bias), GemmOptions { alpha: 0.7, beta: 1.3, ..GemmOptions::default() })
        }),
        ("Gemm", "trans_b", |c| {
            let a = c.param("a", &[3, 4], Init::Normal);
            let b = c.param("b", &[2, 4], Init::Normal);
            c.g.scope("t").gemm("gemm", &a, &b, None, GemmOptions { trans_b: true, ..GemmOptions::default() })
        }),
        ("Gemm", "trans_a", |c| {
            let a = c.param("a", &[4, 3], Init::Normal);
            let b = c.param("b", &[4, 2], Init::Normal);
            let bias = c.param("c", &[3, 1], Init::Normal);
            c.g.scope("t").gemm("gemm", &a, &b, Some(&bias), GemmOptions { trans_a: true, alpha: 1.5, ..GemmOptions::default() })
        }),
        ("Gemm", "trans_both", |c| {
            let a = c.param("a", &[4, 3], Init::Normal);
            let b = c.param("b", &[2, 4], Init::Normal);
            c.g.scope("t").gemm("gemm", &a, &b, None, GemmOptions { trans_a: true, trans_b: true, ..GemmOptions::default() })
        }),
        ("ReduceSum", "keepdims", |c| {
            let x = c.param("x", &[2, 3, 4], Init::Normal);
            c.g.scope("t").reduce_sum("sum", &x, &[1], true)
        }),
        ("ReduceSum", "negative_axes_dropped", |c| {
            let x = c.param("x", &[2, 3, 4], Init::Normal);
            c.g.scope("t").reduce_sum("sum", &x, &[-1, 0], false)
        }),
        ("ReduceSum", "all_axes", |c| {
            let x = c.param("x", &[2, 3], Init::Normal);
            c.g.scope("t").reduce_sum("sum", &x, &[], false)
        }),
        ("ReduceMean", "fixed", |c| {
            let x = c.param("x", &[2, 3, 4], Init::Normal);
            c.g.scope("t").reduce_mean("mean", &x, &[-1], false)
        }),
        ("ReduceMean", "symbolic_axis", |c| {
            c.sym_sizes.push(("n", 5));
            let x = c.param_sym("x", dims![2, "n"], Init::Normal);
            c.g.scope("t").reduce_mean("mean", &x, &[1], true)
        }),
        ("ReduceMax", "rows", |c| {
            let x = c.param("x", &[3, 4], Init::Normal);
            c.g.scope("t").reduce_max("max", &x, &[1], false)
        }),
        ("ReduceMin", "columns_keepdims", |c| {
            let x = c.param("x", &[3, 4], Init::Normal);
            c.g.scope("t").reduce_min("min", &x, &[0], true)
        }),
        ("ReduceSumSquare", "rows", |c| {
            let x = c.param("x", &[3, 4], Init::Normal);
            let attrs = [("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(0))];
            c.g.scope("t").op("sumsq", "ReduceSumSquare", &[&x], &attrs, DType::F32, [3usize])
        }),
        ("ReduceL2", "rows", |c| {
            let x = c.param("x", &[3, 4], Init::Normal);
            let attrs = [("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(1))];
            c.g.scope("t").op("l2", "ReduceL2", &[&x], &attrs, DType::F32, [3usize, 1])
        }),
        ("Reshape", "split_heads", |c| {
            let x = c.param("x", &[2, 3, 8], Init::Normal);
            c.g.scope("t").reshape("reshape", &x, [0, 0, 2, 4])
        }),
        ("Flatten", "flatten", |c| {
            let x = c.param("x", &[2, 3, 4], Init::Normal);
            c.g.scope("t").op("flatten", "Flatten", &[&x], &[("axis", 1i64.into())], DType::F32, [2usize, 12])
        }),
        ("Squeeze", "squeeze", |c| {
            let x = c.param("x", &[2, 1, 3], Init::Normal);
            c.g.scope("t").squeeze("squeeze", &x, &[1])
        }),
        ("Unsqueeze", "unsqueeze", |c| {
            let x = c.param("x", &[2, 3], Init::Normal);
            c.g.scope("t").unsqueeze("unsqueeze", &x, &[0, -1])
        }),
        ("Transpose", "perm", |c| {
            let x = c.param("x", &[2, 3, 4], Init::Normal);
            c.g.scope("t").transpose("transpose", &x, &[2, 0, 1])
        }),
        ("Concat", "fixed_sizes", |c| {
            let a = c.param("a", &[2, 3], Init::Normal);
            let b = c.param("b", &[2, 1], Init::Normal);
            c.g.scope("t").concat("concat", &[&a, &b, &a], -1)
        }),
        ("Concat", "symbolic_sizes", |c| {
            c.sym_sizes.push(("p", 2));
            let a = c.param_sym("a", dims!["p", 3], Init::Normal);
            let b = c.param("b", &[4, 3], Init::Normal);
            c.g.scope("t").concat("concat", &[&a, &b], 0)
        }),
        ("Split", "one_output_unused", |c| {
            let x = c.param("x", &[2, 6], Init::Normal);
            let mut s = c.g.scope("t");
            let parts = s.split("split", &x, -1, &[2, 1, 3]);
            let sq = s.mul("square_last", &parts[2], &parts[2]);
            s.concat("join", &[&parts[0], &sq], -1)
        }),
        ("Slice", "constant_bounds", |c| {
            let x = c.param("x", &[4, 5], Init::Normal);
            c.g.scope("t").slice("slice", &x, [1i64, -4], [3i64, i64::MAX], &[0, 1], &[])
        }),
        ("Slice", "last_position", |c| {
            c.sym_sizes.push(("seq", 4));
            let x = c.param_sym("x", dims![2, "seq", 3], Init::Normal);
            c.g.scope("t").slice("last", &x, [-1i64], [i64::MAX], &[1], &[1])
        }),
        ("Slice", "run_time_bounds", |c| {
            let x = c.param("x", &[2, 6], Init::Normal);
            let mut s = c.g.scope("t");
            let shape = s.shape("shape", &x);
            let start = s.slice("start", &shape, [1i64], [2i64], &[0], &[]);
            let start = s.div_scalar_i64_like(&start);
            s.slice("slice", &x, &start, [i64::MAX], &[1], &[])
        }),
        ("Gather", "embedding_rows", |c| {
            let table = c.param("table", &[5, 3], Init::Normal);
            let mut s = c.g.scope("t");
            let ids = s.constant_i64(&[1, 4, 1, -1, 0, 2], &[2, 3]);
            s.gather("gather", &table, &ids, 0)
        }),
        ("Gather", "middle_axis", |c| {
            let x = c.param("x", &[2, 4, 3], Init::Normal);
            let mut s = c.g.scope("t");
            let ids = s.constant_i64(&[3, 0, 3], &[3]);
            s.gather("gather", &x, &ids, 1)
        }),
        ("Gather", "scalar_index", |c| {
            let x = c.param("x", &[4, 3], Init::Normal);
            let mut s = c.g.scope("t");
            let id = s.scalar_i64(2);
            s.gather("gather", &x, &id, 0)
        }),
        ("Gather", "symbolic_rows", |c| {
            c.sym_sizes.push(("rows", 5));
            let x = c.param_sym("x", dims!["rows", 3], Init::Normal);
            let mut s = c.g.scope("t");
            let ids = s.constant_i64(&[4, 0, -2, 4], &[4]);
            s.gather("gather", &x, &ids, 0)
        }),
        ("GatherElements", "rows", |c| {
            let x = c.param("x", &[3, 4], Init::Normal);
            let mut s = c.g.scope("t");
            let ids = s.constant_i64(&[0, 3, 3, 1, 2, 2], &[3, 2]);
            s.op("gather_elements", "GatherElements", &[&x, &ids], &[("axis", 1i64.into())], DType::F32, [3usize, 2])
        }),
        ("Where", "broadcast", |c| {
            let a = c.param("a", &[2, 3], Init::Normal);
            let b = c.param("b", &[3], Init::Normal);
            let mut s = c.g.scope("t");
            let zero = s.scalar_f32(0.0);
            let cond = s.greater("positive", &a, &zero);
            s.where_("where", &cond, &a, &b)
        }),
        ("Cast", "f16_round_trip_is_not_tested_here", |c| {
            let x = c.param("x", &[3], Init::Normal);
            let mut s = c.g.scope("t");
            let y = s.cast("same", &x, DType::F32);
            s.mul("square", &y, &y)
        }),
        ("Expand", "expand", |c| {
            let x = c.param("x", &[3, 1], Init::Normal);
            c.g.scope("t").expand("expand", &x, [2i64, 3, 4])
        }),
        ("Clip", "both_bounds", |c| {
            let x = c.param("x", &[4, 3], Init::Avoid(&[-0.5, 0.5]));
            c.g.scope("t").clip("clip", &x, Some(-0.5), Some(0.5))
        }),
        ("Clip", "lower_only", |c| {
            let x = c.param("x", &[5], Init::Avoid(&[0.2]));
            c.g.scope("t").clip("clip", &x, Some(0.2), None)
        }),
        ("LayerNormalization", "last_axis", |c| {
            let x = c.param("x", &[2, 3, 4], Init::Normal);
            let scale = c.param("scale", &[4], Init::Normal);
            let bias = c.param("bias", &[4], Init::Normal);
            c.g.scope("t").layer_norm("ln", &x, &scale, Some(&bias), -1, 1e-5)
        }),
        ("LayerNormalization", "two_axes", |c| {
            let x = c.param("x", &[2, 3, 4], Init::Normal);
            let scale = c.param("scale", &[3, 4], Init::Normal);
            c.g.scope("t").layer_norm("ln", &x, &scale, None, 1, 1e-3)
        }),
        ("Sum", "three_way", |c| {
            let a = c.param("a", &[2, 3], Init::Normal);
            let b = c.param("b", &[3], Init::Normal);
            let spec = NodeSpec {
                op_type: "Sum",
                inputs: vec![Some(&a), Some(&b), Some(&a)],
                outputs: vec![OutputSpec { name: None, dtype: DType::F32, shape: dims![2, 3] }],
                ..Default::default()
            };
            c.g.scope("t").node("sum", spec).remove(0)
        }),
        ("Abs", "away_from_zero", |c| {
            let x = c.param("x", &[3, 4], Init::Avoid(&[0.0]));
            c.g.scope("t").abs("abs", &x)
        }),
        ("Max", "broadcast", |c| {
            let a = c.param("a", &[2, 3], Init::Normal);
            let b = c.param("b", &[3], Init::Normal);
            c.g.scope("t").max("max", &a, &b)
        }),
        ("Min", "against_a_constant", |c| {
            // exp_norm's max(d, ε) pattern, with the bound inside the data's range.
            let a = c.param("a", &[4, 3], Init::Avoid(&[0.3]));
            let mut s = c.g.scope("t");
            let bound = s.scalar(DType::F32, 0.3);
            s.min("min", &a, &bound)
        }),
        ("Trilu", "lower_with_offset", |c| {
            let x = c.param("x", &[2, 3, 4], Init::Normal);
            let mut s = c.g.scope("t");
            let k = s.scalar_i64(1);
            s.op("trilu", "Trilu", &[&x, &k], &[("upper", Attr::Int(0))], DType::F32, [2usize, 3, 4])
        }),
        ("Conv", "strided_dilated_asymmetric_pads_bias", |c| {
            let x = c.param("x", &[2, 3, 7, 6], Init::Normal);
            let w = c.param("w", &[4, 3, 3, 2], Init::Normal);
            let b = c.param("b", &[4], Init::Normal);
            let opts = ConvOptions { strides: vec![2, 1], pads: vec![1, 0, 0, 1], dilations: vec![1, 2], ..ConvOptions::default() };
            c.g.scope("t").conv("conv", &x, &w, Some(&b), &opts)
        }),
        ("Conv", "grouped_same_padding_symbolic_batch", |c| {
            c.sym_sizes.push(("n", 2));
            let x = c.param_sym("x", dims!["n", 4, 5, 5].to_vec(), Init::Normal);
            let w = c.param("w", &[6, 2, 3, 3], Init::Normal);
            c.g.scope("t").conv("conv", &x, &w, None, &ConvOptions { group: 2, ..ConvOptions::uniform(2, 1, 1) })
        }),
        ("Conv", "patch_embedding_with_a_ragged_edge", |c| {
            // Kernel = stride = 3 over 8 pixels: the last two columns are never read.
            let x = c.param("x", &[1, 2, 6, 8], Init::Normal);
            let w = c.param("w", &[5, 2, 3, 3], Init::Normal);
            let b = c.param("b", &[5], Init::Normal);
            c.g.scope("t").conv("conv", &x, &w, Some(&b), &ConvOptions::uniform(2, 3, 0))
        }),
        ("Conv", "one_dimensional", |c| {
            let x = c.param("x", &[2, 3, 9], Init::Normal);
            let w = c.param("w", &[2, 3, 4], Init::Normal);
            c.g.scope("t").conv("conv", &x, &w, None, &ConvOptions { strides: vec![2], pads: vec![2, 1], dilations: vec![1], ..ConvOptions::default() })
        }),
        ("ConvTranspose", "upsampling_kernel_equals_stride", |c| {
            let x = c.param("x", &[2, 3, 2, 3], Init::Normal);
            let w = c.param("w", &[3, 4, 2, 2], Init::Normal);
            let b = c.param("b", &[4], Init::Normal);
            c.g.scope("t").conv_transpose("up", &x, &w, Some(&b), &ConvOptions::uniform(2, 2, 0))
        }),
        ("ConvTranspose", "grouped_padded_output_padding", |c| {
            let x = c.param("x", &[1, 4, 3, 3], Init::Normal);
            let w = c.param("w", &[4, 3, 3, 3], Init::Normal);
            let opts = ConvOptions { group: 2, output_padding: vec![1, 0], ..ConvOptions::uniform(2, 2, 1) };
            c.g.scope("t").conv_transpose("up", &x, &w, None, &opts)
        }),
        ("ConvTranspose", "dilated", |c| {
            let x = c.param("x", &[1, 2, 4, 3], Init::Normal);
            let w = c.param("w", &[2, 3, 2, 3], Init::Normal);
            let b = c.param("b", &[3], Init::Normal);
            let opts = ConvOptions { strides: vec![1, 2], pads: vec![0, 1, 1, 0], dilations: vec![2, 1], ..ConvOptions::default() };
            c.g.scope("t").conv_transpose("up", &x, &w, Some(&b), &opts)
        }),
        ("Resize", "bilinear_x2_align_corners", |c| {
            // The DPT head's upsampling (F.interpolate(scale_factor=2, align_corners=True)).
            let x = c.param("x", &[1, 2, 3, 4], Init::Normal);
            let mut opts = ResizeOptions::linear(ResizeTarget::Sizes(vec![1, 2, 6, 8]));
            opts.coordinate_transformation_mode = "align_corners".into();
            c.g.scope("t").resize("up", &x, &opts)
        }),
        ("Resize", "linear_half_pixel_down_and_up", |c| {
            let x = c.param("x", &[2, 1, 6, 3], Init::Normal);
            c.g.scope("t").resize("resize", &x, &ResizeOptions::linear(ResizeTarget::Scales(vec![1.0, 1.0, 0.5, 1.7])))
        }),
        ("Resize", "nearest_asymmetric_floor", |c| {
            let x = c.param("x", &[1, 2, 3, 2], Init::Normal);
            let mut opts = ResizeOptions::nearest(ResizeTarget::Scales(vec![1.0, 1.0, 2.0, 1.5]));
            opts.coordinate_transformation_mode = "asymmetric".into();
            opts.nearest_mode = "floor".into();
            c.g.scope("t").resize("resize", &x, &opts)
        }),
        ("Resize", "pytorch_half_pixel_symbolic_batch", |c| {
            c.sym_sizes.push(("n", 2));
            let x = c.param_sym("x", dims!["n", 2, 5, 1].to_vec(), Init::Normal);
            let mut opts = ResizeOptions::linear(ResizeTarget::Scales(vec![1.0, 1.0, 0.6, 3.0]));
            opts.coordinate_transformation_mode = "pytorch_half_pixel".into();
            c.g.scope("t").resize("resize", &x, &opts)
        }),
    ]
}

trait HalfShape {
    /// `x / 2` for an i64 value (a run-time slice bound).
    fn div_scalar_i64_like(&mut self, x: &Value) -> Value;
}

impl HalfShape for loc3r_export::graph::Scope<'_> {
    fn div_scalar_i64_like(&mut self, x: &Value) -> Value {
        let two = self.scalar_i64(2);
        self.div("half", x, &two)
    }
}
