//! The whole Loc3R training graph (projector → splice → decoder → heads, LM head and the four
//! losses) on the tiny checkpoint: gradients of tensors from every trainable group against
//! central finite differences on the f64 interpreter, and every gradient of the graph run by
//! ONNX Runtime in f32 against the interpreter's analytic ones.

use loc3r_export::checkpoint::{Checkpoint, Requirements};
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_train::check::{finite_difference_failures, onnx_runtime_disagreements};
use loc3r_train::interp::{evaluate, Tensor};
use loc3r_train::losses::LossWeights;
use loc3r_train::model::{interp_feeds, training_graph, Group};
use loc3r_train::sample::Sample;

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
        feeds.insert(p.name.clone(), Tensor::Float(p.initial_values().expect("weights").mapv(f64::from)));
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
    let values: Vec<_> = chosen.iter().map(|p| p.input.clone()).collect();
    let grads: Vec<_> = chosen.iter().map(|p| p.grad.clone()).collect();
    let failures = finite_difference_failures(&tg.graph, &feeds, &tg.loss_outputs[0], &values, &grads, "loc3r", 10);
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Every gradient of the graph on ONNX Runtime (f32) against the interpreter.
    let graph_dir = dir.path().join("graph");
    std::fs::create_dir_all(&graph_dir).expect("dir");
    let all: Vec<&str> = tg.params.iter().map(|p| p.grad_output.name()).collect();
    let (bad, worst) = onnx_runtime_disagreements(&tg.graph, &feeds, &all, &graph_dir);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    println!("{} trainable tensors; worst ORT-f32 vs f64 max-abs/scale: {worst:e}", tg.params.len());
}
