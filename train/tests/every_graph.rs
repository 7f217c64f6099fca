//! The training engine differentiates every graph the exporter builds, with respect to every
//! weight: SigLIP and CUT3R's patch embeddings (Conv), the DPT point-map heads (Conv,
//! ConvTranspose, bilinear Resize, Max), the decoder with its KV cache, the projector and the
//! heads. Per-op numerics are proven by the finite-difference cases of `autodiff`; here the
//! point-map graph's whole gradient is also checked against central differences on ONNX Runtime.

use std::collections::HashMap;

mod common;

use common::assert_directional_derivative;
use loc3r_bundle::Graph;
use loc3r_export::bundle::build_graph;
use loc3r_export::checkpoint::{Checkpoint, Requirements};
use loc3r_export::graph::{GraphBuilder, Value};
use loc3r_export::models::ExportOptions;
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_export::DType;
use loc3r_train::graph::{export_options, finish, TrainingGraph};
use loc3r_train::session::{host_params, Runner};
use ndarray::ArrayD;

fn options(ckpt: &Checkpoint) -> ExportOptions {
    ExportOptions { cut3r_points: true, ..export_options(ckpt) }
}

/// `loss = Σ_k mean(y_k²)` over the graph's float outputs, every weight trainable.
fn training_graph(mut g: GraphBuilder) -> TrainingGraph {
    let outputs: Vec<Value> = g.outputs().iter().filter(|v| v.dtype().is_float()).cloned().collect();
    assert!(!outputs.is_empty(), "{} has float outputs", g.name());
    let mut s = g.scope("probe_loss");
    let mut terms = Vec::new();
    for (k, y) in outputs.iter().enumerate() {
        let y = if y.dtype() == DType::F32 { y.clone() } else { s.cast(&format!("to_f32_{k}"), y, DType::F32) };
        let sq = s.mul(&format!("square_{k}"), &y, &y);
        terms.push(s.reduce_mean(&format!("mean_{k}"), &sq, &[], false));
    }
    let mut loss = terms[0].clone();
    for (k, t) in terms.iter().enumerate().skip(1) {
        loss = s.add(&format!("sum_{k}"), &loss, t);
    }
    let name = g.name().to_string();
    finish(g, |_| true, &loss, &[]).unwrap_or_else(|e| panic!("{name} does not differentiate: {e}"))
}

#[test]
fn every_bundle_graph_differentiates_with_respect_to_every_weight() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ck = dir.path().join("ck");
    make_tiny(&ck, &TinyOptions { seed: 3, ..TinyOptions::default() }, |_, _| {}).expect("tiny checkpoint");
    let ckpt = Checkpoint::open(&ck, None, Requirements::default()).expect("opens");
    let opts = options(&ckpt);
    for graph in Graph::ALL {
        let g = build_graph(graph, &ckpt, &opts).expect("builds");
        let ops: std::collections::BTreeSet<String> = g.nodes().iter().map(|n| n.op_type.clone()).collect();
        let tg = training_graph(g);
        println!("{graph}: {} weights differentiated; ops {ops:?}", tg.params.len());
        assert!(!tg.params.is_empty());
    }
}

#[test]
fn the_point_map_heads_gradient_matches_central_differences() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ck = dir.path().join("ck");
    make_tiny(&ck, &TinyOptions { seed: 5, ..TinyOptions::default() }, |_, _| {}).expect("tiny checkpoint");
    let ckpt = Checkpoint::open(&ck, None, Requirements::default()).expect("opens");
    let g = build_graph(Graph::Cut3rPoints, &ckpt, &options(&ckpt)).expect("builds");
    let tg = training_graph(g);
    for op in ["Conv", "ConvTranspose", "Resize"] {
        let forward: Vec<String> =
            tg.graph.nodes().iter().filter(|n| n.op_type == op && !n.name.starts_with("grad/")).map(|n| format!("grad/{}/", n.name)).collect();
        let backward = forward.iter().filter(|prefix| tg.graph.nodes().iter().any(|n| n.name.starts_with(prefix.as_str()))).count();
        assert!(!forward.is_empty() && backward == forward.len(), "{backward} of {} {op} nodes have a backward", forward.len());
    }

    let mut state = 17u64;
    let mut rnd = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
    };
    let params_names: std::collections::HashSet<&str> = tg.params.iter().map(|p| p.input.name()).collect();
    let mut feeds = HashMap::new();
    for input in tg.graph.inputs().iter().filter(|v| !params_names.contains(v.name())) {
        let shape = input.fixed_shape().expect("the points graph has fixed shapes");
        let n = shape.iter().product();
        feeds.insert(input.name().to_string(), ArrayD::from_shape_vec(shape, (0..n).map(|_| rnd() as f32).collect()).expect("shape"));
    }
    let graphs = dir.path().join("graphs");
    std::fs::create_dir_all(&graphs).expect("dir");
    let mut runner = Runner::new(&tg, &graphs, 1).expect("session");
    let mut params = host_params(&tg).expect("params");
    let none = HashMap::<String, ArrayD<i64>>::new();
    let eval = runner.run(&params, &feeds, &none).expect("runs");

    assert_directional_derivative(&mut runner, &mut params, &eval, &feeds, 23);
}
