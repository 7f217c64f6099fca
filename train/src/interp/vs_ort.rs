//! The interpreter against ONNX Runtime (float32, CPU) on a graph mixing most op families,
//! on opsets 17 and 18: outputs agree within 1e-5 relative (to `max(|ort|, 1)`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use loc3r_export::graph::{Attr, GemmOptions, GraphBuilder, NodeSpec, OutputSpec, Value};
use loc3r_export::tensor::F32Tensor;
use loc3r_export::DType;
use ndarray::{ArrayD, IxDyn};
use ort::session::Session;
use ort::value::DynValue;

use super::{evaluate, Tensor};

fn weight(g: &mut GraphBuilder, name: &str, shape: &[usize], seed: usize) -> Value {
    let n: usize = shape.iter().product();
    let data = (0..n).map(|i| (((i + seed) * 7919 % 211) as f32 / 211.0 - 0.5) * 1.6).collect();
    g.initializer(name, Arc::new(F32Tensor::new(shape.to_vec(), data)), DType::F32)
}

/// Inputs `x [2, 3, 4]` f32 and `ids [2, 2]` i64; outputs are f32 except `argmax` (i64).
fn mixed_graph(opset: i64) -> GraphBuilder {
    let mut g = GraphBuilder::new("mixed").with_opset(opset);
    let x = g.input("x", DType::F32, [2usize, 3, 4]);
    let ids = g.input("ids", DType::I64, [2usize, 2]);
    let w = weight(&mut g, "proj.weight", &[4, 5], 1);
    let (nw, nb) = (weight(&mut g, "norm.weight", &[5], 2), weight(&mut g, "norm.bias", &[5], 3));
    let gb = weight(&mut g, "head.weight", &[4, 5], 4);
    let gc = weight(&mut g, "head.bias", &[4], 5);
    let table = weight(&mut g, "embed.weight", &[6, 4], 6);

    let mut s = g.scope("m");
    let h = s.matmul("MatMul", &x, &w); // [2,3,5]
    let ln = s.node(
        "LayerNormalization",
        NodeSpec {
            op_type: "LayerNormalization",
            inputs: vec![Some(&h), Some(&nw), Some(&nb)],
            attrs: vec![("axis".into(), Attr::Int(-1)), ("epsilon".into(), Attr::Float(1e-5))],
            outputs: vec![
                OutputSpec { name: None, dtype: DType::F32, shape: loc3r_export::dims![2, 3, 5] },
                OutputSpec { name: None, dtype: DType::F32, shape: loc3r_export::dims![2, 3, 1] },
            ],
            ..NodeSpec::default()
        },
    );
    let sm = s.softmax("Softmax", &ln[0], 1);
    let lsm = s.log_softmax("LogSoftmax", &ln[0], -1);
    let flat = s.reshape("flat", &sm, [-1, 5]); // [6,5]
    let gm = s.gemm("Gemm", &flat, &gb, Some(&gc), GemmOptions { alpha: 0.7, beta: 1.3, trans_a: false, trans_b: true }); // [6,4]
    let e = s.erf("Erf", &gm);
    let sg = s.sigmoid("Sigmoid", &gm);
    let th = s.tanh("Tanh", &e);
    let sum = s.op("Sum", "Sum", &[&e, &sg, &th], &[], DType::F32, [6usize, 4]);
    let mean = s.reduce_mean("ReduceMean", &sum, &[-1], true); // [6,1]
    let l2 = s.reduce_l2("ReduceL2", &lsm, &[0, 2], false); // [3]
    let mx = s.reduce_max("ReduceMax", &x, &[1], false); // [2,4]
    let rev = s.slice("Slice", &x, [-1], [i64::MIN], &[1], &[-2]); // [2,2,4]
    let pads = s.ints(&[0, 1, 0, 0, -1, 1]);
    let fill = s.scalar_f32(0.25);
    let pad = s.op("Pad", "Pad", &[&rev, &pads, &fill], &[], DType::F32, [2usize, 2, 5]);
    let emb = s.gather("Gather", &table, &ids, 0); // [2,2,4]
    let cat = s.concat("Concat", &[&emb, &rev], 1); // [2,4,4]
    let tri = s.trilu("Trilu", &cat, None, false);
    let sq = s.pow_scalar("Pow", &tri, 2.0);
    let cl = s.clip("Clip", &sq, Some(0.05), Some(0.6));
    let gi = s.constant_i64(&[0, 2, 1, 0, 1, 1, 0, 2], &[2, 1, 4]);
    let ge = s.op("GatherElements", "GatherElements", &[&x, &gi], &[("axis", Attr::Int(1))], DType::F32, [2usize, 1, 4]);
    let upd = s.mul_scalar("scale_upd", &ge, 3.0);
    let se = s.op("ScatterElements", "ScatterElements", &[&x, &gi, &upd], &[("axis", Attr::Int(1)), ("reduction", "add".into())], DType::F32, [2usize, 3, 4]);
    let ndi = s.constant_i64(&[1, 0, 0, 2, 1, 0], &[3, 2]);
    let ndu = s.slice("nd_updates", &x, [0], [3], &[1], &[]);
    let ndu = s.reshape("nd_updates_flat", &ndu, [-1, 4]); // [6,4] -> take 3 rows
    let ndu = s.slice("nd_updates_rows", &ndu, [0], [3], &[0], &[]);
    let snd = s.op("ScatterND", "ScatterND", &[&x, &ndi, &ndu], &[("reduction", "add".into())], DType::F32, [2usize, 3, 4]);
    let big = s.expand("Expand", &mean, [2, 6, 3]); // [2,6,3]
    let zero = s.scalar_f32(0.0);
    let pos = s.greater("Greater", &big, &zero);
    let neg = s.neg("Neg", &big);
    let wh = s.where_("Where", &pos, &big, &neg);
    let am = s.argmax("ArgMax", &x, -1, false); // [2,3]
    let depth = s.scalar_i64(5);
    let onv = s.constant_f32(&[-0.5, 2.0], &[2]);
    let oh = s.op("OneHot", "OneHot", &[&ids, &depth, &onv], &[("axis", Attr::Int(1))], DType::F32, [2usize, 5, 2]);
    let outs = [
        ("ln", &ln[0]),
        ("ln_mean", &ln[1]),
        ("gemm", &gm),
        ("sum", &sum),
        ("mean", &mean),
        ("l2", &l2),
        ("max", &mx),
        ("pad", &pad),
        ("clip", &cl),
        ("scatter_elements", &se),
        ("scatter_nd", &snd),
        ("where", &wh),
        ("onehot", &oh),
        ("argmax", &am),
    ];
    let outs: Vec<(&str, Value)> = outs.into_iter().map(|(n, v)| (n, v.clone())).collect();
    for (name, v) in outs {
        g.output(name, &v);
    }
    g
}

fn ort_run(path: &Path, x: &ArrayD<f32>, ids: &ArrayD<i64>) -> HashMap<String, DynValue> {
    let env = loc3r_bundle::ort_env::environment().unwrap_or_else(|e| panic!("{e}"));
    let mut session = Session::builder(env)
        .and_then(|b| b.with_intra_threads(1).map_err(ort::Error::<()>::from))
        .and_then(|mut b| b.commit_from_file(path))
        .unwrap_or_else(|e| panic!("ONNX Runtime cannot load {}: {e}", path.display()));
    let names: Vec<String> = session.outputs().iter().map(|o| o.name().to_string()).collect();
    let feeds: Vec<(String, DynValue)> = vec![
        ("x".into(), ort::value::Tensor::from_array(x.clone()).expect("x tensor").into_dyn()),
        ("ids".into(), ort::value::Tensor::from_array(ids.clone()).expect("ids tensor").into_dyn()),
    ];
    let mut outputs = session.run(feeds).unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    names.into_iter().map(|n| (n.clone(), outputs.remove(n.as_str()).expect("ORT returns every output"))).collect()
}

#[test]
fn interpreter_matches_onnx_runtime() {
    for opset in [17, 18] {
        let g = mixed_graph(opset);
        let dir = tempfile::tempdir().expect("temp dir");
        g.save(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let x = ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |ix| ((ix[0] * 12 + ix[1] * 4 + ix[2]) as f32 * 0.37).sin() * 2.0);
        let ids = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![0i64, 5, -1, 3]).expect("ids");
        let ort_out = ort_run(&dir.path().join("mixed.onnx"), &x, &ids);

        let feeds: HashMap<String, Tensor> = [("x".to_string(), Tensor::from_f32(&x)), ("ids".to_string(), Tensor::Int(ids.clone()))].into_iter().collect();
        let names: Vec<&str> = g.outputs().iter().map(|v| v.name()).collect();
        let ours = evaluate(&g, &feeds, &names).unwrap_or_else(|e| panic!("{e}"));
        for name in names {
            let got = &ours[name];
            if name == "argmax" {
                let want = ort_out[name].try_extract_array::<i64>().expect("i64 output");
                assert_eq!(got.int().expect("argmax is integer").view(), want, "opset {opset}: {name}");
                continue;
            }
            let want = ort_out[name].try_extract_array::<f32>().expect("f32 output");
            let got = got.float().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got.shape(), want.shape(), "opset {opset}: {name} shape");
            for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
                let b = f64::from(*b);
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "opset {opset}: {name}[{i}]: interpreter {a}, ORT {b}");
            }
        }
    }
}
