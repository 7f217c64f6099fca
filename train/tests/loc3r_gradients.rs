//! The whole Loc3R training graph (projector → splice → decoder → heads, LM head and the four
//! losses) on the tiny checkpoint: gradients of tensors from every trainable group against
//! central finite differences on the f64 interpreter, and every gradient of the graph run by
//! ONNX Runtime in f32 against the interpreter's analytic ones.

use std::collections::HashMap;

use loc3r_export::checkpoint::{Checkpoint, Requirements};
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_train::interp::{evaluate, Tensor};
use loc3r_train::losses::LossWeights;
use loc3r_train::model::{training_graph, Data, Group};
use loc3r_train::sample::Sample;
use ndarray::ArrayD;

fn interp_feeds(feeds: &HashMap<String, Data>) -> HashMap<String, Tensor> {
    feeds
        .iter()
        .map(|(n, d)| {
            let t = match d {
                Data::F32(a) => Tensor::Float(a.mapv(f64::from)),
                Data::I64(a) => Tensor::Int(a.clone()),
            };
            (n.clone(), t)
        })
        .collect()
}

#[test]
fn loc3r_training_graph_gradients_match_finite_differences_and_onnx_runtime() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ck = dir.path().join("ck");
    make_tiny(&ck, &TinyOptions { seed: 4, ..TinyOptions::default() }, |_, _| {}).expect("tiny checkpoint");
    let ckpt = Checkpoint::open(&ck, None, Requirements::default()).expect("opens");
    let cfg = ckpt.config().clone();
    let sample = Sample::random_for(&cfg, 2, 17);
    let path = dir.path().join("sample.safetensors");
    sample.write(&path).expect("writes");
    let sample = Sample::read(&path).expect("reads back");
    let groups = Group::parse_list("all").expect("groups");
    let (tg, data) = training_graph(&ckpt, &sample, &groups, &LossWeights::default()).expect("training graph");
    let names: Vec<&str> = tg.params.iter().map(|p| p.name.as_str()).collect();
    for group in [Group::Heads, Group::Projector, Group::Llm] {
        assert!(names.iter().any(|n| group.contains(n)), "{group:?} has trainable tensors: {names:?}");
    }

    let mut feeds = interp_feeds(&data);
    for p in &tg.params {
        let mut bytes = Vec::new();
        p.initial.write_as(loc3r_export::DType::F32, &mut bytes).expect("weights");
        let values: Vec<f64> = bytes.chunks_exact(4).map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect();
        feeds.insert(p.name.clone(), Tensor::Float(ArrayD::from_shape_vec(p.initial.shape(), values).expect("shape")));
    }
    let loss_names: Vec<&str> = tg.loss_outputs.iter().map(|v| v.name()).collect();
    let out = evaluate(&tg.graph, &feeds, &loss_names).expect("the interpreter runs the training graph");
    for name in &loss_names {
        let v = out[*name].float().expect("float")[[]];
        assert!(v.is_finite(), "{name} = {v}");
    }
    assert_eq!(loss_names, ["loss", "loss.lm", "loss.bev", "loss.pos", "loss.ori"]);

    // Finite differences on tensors of every group (10 elements each).
    let probe = [
        "model.mm_projector.0.weight",
        "model.image_newline",
        "model.loc3r.cam_projector.2.bias",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.mlp.up_proj.weight",
        "model.norm.weight",
        "lm_head.weight",
        "model.loc3r.pos_head.0.weight",
        "model.loc3r.bev_head.bias",
    ];
    let chosen: Vec<_> = tg.params.iter().filter(|p| probe.contains(&p.name.as_str())).collect();
    assert_eq!(chosen.len(), probe.len(), "every probed tensor is trainable");
    let loss = &tg.loss_outputs[0];
    let values: Vec<_> = chosen.iter().map(|p| p.input.clone()).collect();
    let grads: Vec<_> = chosen.iter().map(|p| p.grad.clone()).collect();
    let want: Vec<&str> = std::iter::once(loss.name()).chain(grads.iter().map(|g| g.name())).collect();
    let analytic = evaluate(&tg.graph, &feeds, &want).expect("backward");
    let base = analytic[loss.name()].float().expect("float")[[]];
    let mut failures = Vec::new();
    for (param, grad) in values.iter().zip(&grads) {
        let theta = feeds[param.name()].float().expect("float").clone();
        let g = analytic[grad.name()].float().expect("float").clone();
        let stride = (theta.len() / 10).max(1);
        for (i, (idx, &x)) in theta.indexed_iter().enumerate().filter(|(i, _)| i % stride == 0) {
            let _ = i;
            let h = 1e-6 * x.abs().max(1.0);
            let at = |delta: f64| {
                let mut shifted = theta.clone();
                shifted[&idx] = x + delta;
                let mut f = feeds.clone();
                f.insert(param.name().to_string(), Tensor::Float(shifted));
                evaluate(&tg.graph, &f, &[loss.name()]).expect("forward")[loss.name()].float().expect("float")[[]]
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            let a = g[&idx];
            if (a - numeric).abs() > 1e-8 * base.abs().max(1.0) + 1e-6 * a.abs() {
                failures.push(format!("{}{:?}: analytic {a:e}, numeric {numeric:e}", param.name(), idx));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Every gradient of the graph on ONNX Runtime (f32) against the interpreter.
    let graph_dir = dir.path().join("graph");
    std::fs::create_dir_all(&graph_dir).expect("dir");
    let stats = tg.graph.save(&graph_dir).expect("saves");
    let env = loc3r_bundle::ort_env::environment().expect("ONNX Runtime");
    let mut session = ort::session::Session::builder(env).expect("builder").commit_from_file(&stats.onnx_path).expect("ORT loads the training graph");
    let ort_feeds: Vec<(String, ort::value::DynValue)> = feeds
        .iter()
        .map(|(n, t)| {
            let v = match t {
                Tensor::Float(a) => ort::value::Tensor::from_array(a.mapv(|x| x as f32)).expect("f32").into_dyn(),
                Tensor::Int(a) => ort::value::Tensor::from_array(a.clone()).expect("i64").into_dyn(),
                Tensor::Bool(_) => unreachable!("no bool inputs"),
            };
            (n.clone(), v)
        })
        .collect();
    let got = session.run(ort_feeds).expect("ORT runs the training graph");
    let all: Vec<&str> = tg.params.iter().map(|p| p.grad_output.name()).collect();
    let reference = evaluate(&tg.graph, &feeds, &all).expect("interpreter");
    let mut worst_rel: f64 = 0.0;
    for p in &tg.params {
        let ort = got[p.grad_output.name()].try_extract_array::<f32>().expect("f32");
        let r = reference[p.grad_output.name()].float().expect("float");
        assert_eq!(ort.shape(), r.shape(), "{}", p.name);
        let scale = r.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let excess = ort.iter().zip(r.iter()).map(|(a, b)| (f64::from(*a) - b).abs() - 1e-4 * b.abs()).fold(f64::MIN, f64::max);
        assert!(excess <= 1e-5 * scale, "{}: ORT vs interpreter off by {excess:e} (scale {scale:e})", p.name);
        if scale > 0.0 {
            let max_diff = ort.iter().zip(r.iter()).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max);
            worst_rel = worst_rel.max(max_diff / scale);
        }
    }
    println!("{} trainable tensors; worst ORT-f32 vs f64 max-abs/scale: {worst_rel:e}", tg.params.len());
}
