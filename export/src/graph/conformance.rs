//! A graph using every op wrapper, checked three ways on several opsets:
//! ONNX Runtime loads and runs it, every output's run-time shape agrees with the shape the
//! builder inferred, and (when the dev venv has `onnx`) `onnx.checker` with
//! `full_check=True` accepts it, which also runs ONNX's strict shape inference against
//! the builder's `value_info`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};

use super::testing::{feed_f32, feed_i64, run_f32};
use super::{ConvOptions, Dim, GemmOptions, GraphBuilder, ResizeOptions, ResizeTarget, Value};
use crate::dims;
use crate::tensor::{DType, F32Tensor};

fn weight(g: &mut GraphBuilder, name: &str, shape: &[usize]) -> Value {
    let n: usize = shape.iter().product();
    let data = (0..n).map(|i| ((i * 7919 % 211) as f32 / 211.0 - 0.5) * 0.8).collect();
    g.initializer(name, Arc::new(F32Tensor::new(shape.to_vec(), data)), DType::F32)
}

/// Inputs `x [batch, 4, 8, 8]` f32 and `ids [batch, seq]` i64; every output is f32.
fn all_ops(opset: i64) -> GraphBuilder {
    let mut g = GraphBuilder::new("all_ops").with_opset(opset);
    let x = g.input("x", DType::F32, dims!["batch", 4, 8, 8]);
    let ids = g.input("ids", DType::I64, dims!["batch", "seq"]);
    let (cw, cb) = (weight(&mut g, "conv.weight", &[6, 2, 3, 3]), weight(&mut g, "conv.bias", &[6]));
    let uw = weight(&mut g, "up.weight", &[6, 2, 2, 2]);
    let (nw, nb) = (weight(&mut g, "norm.weight", &[8]), weight(&mut g, "norm.bias", &[8]));
    let mw = weight(&mut g, "mix.weight", &[2, 8]);
    let table = weight(&mut g, "embed.weight", &[10, 3]);
    let (gw, gb) = (weight(&mut g, "head.weight", &[4, 3]), weight(&mut g, "head.bias", &[4]));

    // nn: [b,4,8,8] -Conv g2-> [b,6,8,8] -ConvT s2-> [b,2,16,16] -Resize ½-> [b,2,8,8] -LN-> same
    let mut s = g.scope("nn");
    let c = s.conv("Conv", &x, &cw, Some(&cb), &ConvOptions { group: 2, ..ConvOptions::uniform(2, 1, 1) });
    let u = s.conv_transpose("ConvTranspose", &c, &uw, None, &ConvOptions::uniform(2, 2, 0));
    let r = s.resize("Resize", &u, &ResizeOptions::linear(ResizeTarget::Scales(vec![1.0, 1.0, 0.5, 0.5])));
    let n = s.layer_norm("LayerNormalization", &r, &nw, Some(&nb), -1, 1e-5);

    // math and array ops on [b, 128, 3]
    let mut s = g.scope("mix");
    let h = s.reshape("flatten", &n, [0, 0, -1]);
    let h = s.transpose("Transpose", &h, &[0, 2, 1]);
    let h = s.matmul("MatMul", &h, &mw);
    let parts = s.split("Split", &h, -1, &[3, 5]);
    let a = s.slice("Slice", &parts[1], [0], [3], &[-1], &[]);
    let cat = s.concat("Concat", &[&parts[0], &a], 1);
    let sm = s.softmax("Softmax", &cat, -1);
    let lsm = s.log_softmax("LogSoftmax", &cat, 1);
    let e = s.exp("Exp", &lsm);
    let p = s.pow_scalar("Pow", &sm, 2.0);
    let q = s.sqrt("Sqrt", &p);
    let q = s.add_scalar("add_eps", &q, 1e-3);
    let q = s.reciprocal("Reciprocal", &q);
    let t = s.tanh("Tanh", &q);
    let sg = s.sigmoid("Sigmoid", &cat);
    let ef = s.erf("Erf", &cat);
    let sn = s.sin("Sin", &cat);
    let cs = s.cos("Cos", &sn);
    let ab = s.abs("Abs", &cs);
    let ab = s.add_scalar("add_one", &ab, 1.0);
    let lg = s.log("Log", &ab);
    let ng = s.neg("Neg", &lg);
    let rl = s.relu("Relu", &ng);
    let mx = s.max("Max", &t, &e);
    let mn = s.min("Min", &sg, &ef);
    let mn = s.sub("Sub", &mn, &rl);
    let mn = s.div_scalar("halve", &mn, 2.0);
    let cl = s.clip("Clip", &mx, Some(0.1), None);
    let gt = s.greater("Greater", &cl, &mn);
    let le = s.less_or_equal("LessOrEqual", &cl, &mn);
    let lt = s.less("Less", &cl, &mn);
    let eq = s.equal("Equal", &gt, &lt);
    let ne = s.not("Not", &eq);
    let an = s.and("And", &gt, &ne);
    let or = s.or("Or", &an, &le);
    let wh = s.where_("Where", &or, &cl, &mn);
    let mean = s.reduce_mean("ReduceMean", &wh, &[1], false);
    let sum = s.reduce_sum("ReduceSum", &wh, &[1, 2], true);
    let rmax = s.reduce_max("ReduceMax", &wh, &[-1], false);
    let rmin = s.reduce_min("ReduceMin", &wh, &[], true);
    let l2 = s.reduce_l2("ReduceL2", &wh, &[1], true);
    let am = s.argmax("ArgMax", &wh, 1, false);
    let am = s.cast("argmax_f32", &am, DType::F32);
    let fl = s.floor("Floor", &rmax);
    let ce = s.ceil("Ceil", &fl);
    let id = s.identity("Identity", &ce);
    let head = s.gemm("Gemm", &mean, &gw, Some(&gb), GemmOptions { trans_b: true, ..GemmOptions::default() });

    // embedding, positions and a causal mask, shapes from run-time values
    let mut s = g.scope("embed");
    let emb = s.gather("Gather", &table, &ids, 0);
    let emb16 = s.cast("to_f16", &emb, DType::F16);
    let emb = s.cast("to_f32", &emb16, DType::F32);
    let un = s.unsqueeze("Unsqueeze", &mean, &[1]);
    let added = s.add("Add", &emb, &un);
    let un2 = s.unsqueeze("Unsqueeze2", &added, &[1]);
    let sq = s.squeeze("Squeeze", &un2, &[1]);
    let ex = s.expand("Expand", &un, [1, 4, 1]);
    let shape = s.shape("Shape", &ids);
    let seq = s.slice("seq_len", &shape, [1], [2], &[], &[]);
    let square = s.concat("square", &[&seq, &seq], 0);
    let ones = s.constant_of_shape("ConstantOfShape", &square, DType::F32, 1.0);
    let causal = s.trilu("Trilu", &ones, None, false);
    let (zero, one) = (s.scalar_i64(0), s.scalar_i64(1));
    let seq_scalar = s.squeeze("seq_scalar", &seq, &[0]);
    let pos = s.range("Range", &zero, &seq_scalar, &one);
    let pos = s.cast("positions_f32", &pos, DType::F32);
    let pos = s.mul("Mul", &pos, &pos);

    for (name, v) in [
        ("where", &wh),
        ("mean", &mean),
        ("sum", &sum),
        ("min", &rmin),
        ("l2", &l2),
        ("argmax", &am),
        ("identity", &id),
        ("head", &head),
        ("embedded", &sq),
        ("expanded", &ex),
        ("causal", &causal),
        ("positions", &pos),
    ] {
        g.output(name, v);
    }
    g.check().unwrap();
    g
}

#[test]
fn every_wrapper_runs_on_ort_with_the_inferred_shapes() {
    let (batch, seq) = (2usize, 5usize);
    let known: HashMap<&str, usize> = [("batch", batch), ("seq", seq)].into();
    for opset in [17, 18, 21] {
        let dir = tempfile::tempdir().unwrap();
        let g = all_ops(opset);
        let stats = g.save(dir.path()).unwrap();
        let x = ArrayD::from_shape_fn(IxDyn(&[batch, 4, 8, 8]), |i| ((i[1] * 64 + i[2] * 8 + i[3]) as f32 * 0.37).sin());
        let ids = ArrayD::from_shape_fn(IxDyn(&[batch, seq]), |i| ((i[0] * 7 + i[1] * 3) % 10) as i64);
        let out = run_f32(&stats.onnx_path, vec![feed_f32("x", x), feed_i64("ids", ids)]);
        for v in g.outputs() {
            let got = out[v.name()].shape();
            assert_eq!(got.len(), v.rank(), "opset {opset}: rank of {v:?}");
            for (d, &n) in v.shape().iter().zip(got) {
                let want = match d {
                    Dim::Fixed(k) => Some(*k),
                    Dim::Sym(s) => known.get(s.as_str()).copied(),
                };
                assert!(want.is_none_or(|w| w == n), "opset {opset}: {v:?} ran as {got:?}");
            }
            assert!(out[v.name()].iter().all(|x| x.is_finite()), "opset {opset}: {} has non-finite values", v.name());
        }
        let causal = &out["causal"];
        assert_eq!((causal[[0, 1]], causal[[1, 1]], causal[[4, 0]]), (0.0, 1.0, 1.0));
    }
}

#[test]
fn passes_the_onnx_checker() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-dev/bin/python");
    let has_onnx = python.is_file() && std::process::Command::new(&python).args(["-c", "import onnx"]).output().is_ok_and(|o| o.status.success());
    if !has_onnx {
        println!("SKIPPED passes_the_onnx_checker: {} with the `onnx` package is not available", python.display());
        return;
    }
    for opset in [17, 18, 21] {
        let dir = tempfile::tempdir().unwrap();
        let stats = all_ops(opset).save(dir.path()).unwrap();
        let script = "import sys, onnx; onnx.checker.check_model(sys.argv[1], full_check=True)";
        let out = std::process::Command::new(&python).args(["-c", script]).arg(&stats.onnx_path).output().unwrap();
        assert!(out.status.success(), "opset {opset}: onnx checker: {}", String::from_utf8_lossy(&out.stderr));
    }
}
