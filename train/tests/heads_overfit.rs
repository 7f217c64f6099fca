//! The training path end to end on the exporter's heads graph (training phase A): ONNX Runtime
//! computes losses and gradients, AdamW updates the host parameters, and the heads memorise 8
//! samples — position error and orientation KL fall by ≥ 90% — then the trained tensors go back
//! into a checkpoint that `loc3r-export` exports and ONNX Runtime runs.

use std::collections::HashMap;

use loc3r_export::bundle::{export_bundle, BundleOptions};
use loc3r_export::checkpoint::{Checkpoint, Requirements};
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_train::checkpoint::{write_trained, TrainedTensor};
use loc3r_train::graph::{heads, targets};
use loc3r_train::interp::{evaluate, Tensor};
use loc3r_train::losses::{orientation_target, LossWeights};
use loc3r_train::optim::{cosine_with_warmup, AdamW};
use loc3r_train::session::TrainingSession;
use ndarray::{ArrayD, IxDyn};

struct Rng(u64);
impl Rng {
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        lo + (hi - lo) * ((self.0 >> 40) as f32 / (1u64 << 24) as f32)
    }
    fn array(&mut self, shape: &[usize], lo: f32, hi: f32) -> ArrayD<f32> {
        let n = shape.iter().product();
        ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|_| self.uniform(lo, hi)).collect()).expect("shape")
    }
}

#[test]
fn heads_memorise_eight_samples_with_adamw_on_onnx_runtime() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ck = dir.path().join("ck");
    make_tiny(&ck, &TinyOptions { seed: 3, ..TinyOptions::default() }, |_, _| {}).expect("tiny checkpoint");
    let ckpt = Checkpoint::open(&ck, None, Requirements::default()).expect("opens");
    let cfg = ckpt.config().clone();
    let (h, k, b, t) = (cfg.hidden_size, cfg.loc3r.orientation_bins, 8usize, 4usize);

    let tg = heads(&ckpt, &LossWeights::default()).expect("heads training graph");
    let graph_dir = dir.path().join("graph");
    std::fs::create_dir_all(&graph_dir).expect("dir");
    let mut session = TrainingSession::new(&tg, &graph_dir, 1, AdamW::default()).expect("session");

    let mut rng = Rng(42);
    let mut data: HashMap<String, ArrayD<f32>> = HashMap::new();
    data.insert("pos_hidden".into(), rng.array(&[b, h], -1.0, 1.0));
    data.insert("ori_hidden".into(), rng.array(&[b, h], -1.0, 1.0));
    data.insert("vision_hidden".into(), rng.array(&[b, t, h], -1.0, 1.0));
    data.insert(targets::BEV_TARGET.into(), rng.array(&[b, t, 2], -3.0, 3.0));
    data.insert(targets::BEV_MASK.into(), ArrayD::ones(IxDyn(&[b, t])));
    let pos = rng.array(&[b, 2], -3.0, 3.0);
    data.insert(targets::POS_TARGET.into(), pos.clone());
    let (mut q, mut qh) = (Vec::new(), Vec::new());
    for _ in 0..b {
        let yaw = f64::from(rng.uniform(-3.1, 3.1));
        let (qi, hi) = orientation_target(yaw, k, cfg.loc3r.orientation_sigma_deg.to_radians());
        q.extend(qi.iter().map(|&x| x as f32));
        qh.push(hi as f32);
    }
    data.insert(targets::ORI_TARGET.into(), ArrayD::from_shape_vec(IxDyn(&[b, k]), q).expect("shape"));
    data.insert(targets::ORI_TARGET_NEG_ENTROPY.into(), ArrayD::from_shape_vec(IxDyn(&[b]), qh).expect("shape"));
    data.insert(targets::SITUATION_VALID.into(), ArrayD::ones(IxDyn(&[b])));

    // Mean squared position error of the heads' μ over the 8 samples, on the f64 interpreter.
    let position_error = |session: &TrainingSession| -> f64 {
        let mut feeds: HashMap<String, Tensor> = data.iter().map(|(n, a)| (n.clone(), Tensor::Float(a.mapv(f64::from)))).collect();
        for p in &session.params {
            feeds.insert(p.name.clone(), Tensor::Float(p.input_value().mapv(f64::from)));
        }
        let out = evaluate(&tg.graph, &feeds, &["position"]).expect("interpreter");
        let mu = out["position"].float().expect("float").clone();
        (0..b).map(|i| (0..2).map(|a| (mu[[i, a]] - f64::from(pos[[i, a]])).powi(2)).sum::<f64>()).sum::<f64>() / b as f64
    };
    let error_before = position_error(&session);
    let loss = |r: &loc3r_train::session::StepReport, name: &str| r.losses.iter().find(|(n, _)| n == name).map(|(_, v)| *v).expect("loss part");
    let steps = 300;
    let mut first = None;
    let mut last = None;
    for step in 0..steps {
        let lr = cosine_with_warmup(3e-3, step, 10, steps);
        let report = session.train_step(&data, lr, 1.0).expect("step");
        assert!(report.applied && report.losses.iter().all(|(_, v)| v.is_finite()), "step {step}: {report:?}");
        if first.is_none() {
            first = Some(report.clone());
        }
        last = Some(report);
    }
    let (first, last) = (first.expect("ran"), last.expect("ran"));
    let ori = (loss(&first, "loss.ori"), loss(&last, "loss.ori"));
    println!(
        "loss.ori {} -> {}; loss.pos {} -> {}; loss.bev {} -> {}",
        ori.0,
        ori.1,
        loss(&first, "loss.pos"),
        loss(&last, "loss.pos"),
        loss(&first, "loss.bev"),
        loss(&last, "loss.bev")
    );
    assert!(ori.1 <= 0.1 * ori.0, "orientation KL {} -> {}: less than a 90% drop", ori.0, ori.1);
    let error_after = position_error(&session);
    println!("position mean squared error {error_before} -> {error_after}");
    assert!(error_after <= 0.1 * error_before, "position error {error_before} -> {error_after}: less than a 90% drop");
    assert_eq!(session.step, steps);

    // Train → export: the trained heads go into a checkpoint that loc3r-export reads as is, and the
    // exported heads.onnx (run by ONNX Runtime) predicts what the training graph predicted.
    let trained_ck = dir.path().join("trained");
    let tensors: Vec<TrainedTensor<'_>> = session.params.iter().map(|p| TrainedTensor { name: &p.name, shape: &p.shape, values: &p.value }).collect();
    write_trained(&ck, &trained_ck, &tensors).expect("trained checkpoint");
    let bundle = dir.path().join("bundle");
    let opts = BundleOptions { graphs: Some(vec!["heads".into()]), ..BundleOptions::default() };
    export_bundle(&trained_ck, &bundle, &opts, |_| {}).expect("export of the trained checkpoint");
    let env = loc3r_bundle::ort_env::environment().expect("ONNX Runtime");
    let mut heads_session = ort::session::Session::builder(env).expect("builder").commit_from_file(bundle.join("heads.onnx")).expect("heads.onnx loads");
    let feed = |name: &str| ort::value::Tensor::from_array(data[name].clone()).expect("tensor").into_dyn();
    let out = heads_session
        .run(vec![
            ("pos_hidden".to_string(), feed("pos_hidden")),
            ("ori_hidden".to_string(), feed("ori_hidden")),
            ("vision_hidden".to_string(), feed("vision_hidden")),
        ])
        .expect("heads run");
    let exported = out["position"].try_extract_array::<f32>().expect("position").to_owned();
    let worst = (0..b).flat_map(|i| (0..2).map(move |a| (i, a))).map(|(i, a)| (f64::from(exported[[i, a]]) - f64::from(pos[[i, a]])).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-2, "the exported heads miss the trained positions by {worst}");
    // Re-writing over an existing trained checkpoint replaces it whole.
    write_trained(&ck, &trained_ck, &tensors[..1]).expect("rewrite");
    assert!(Checkpoint::open(&trained_ck, None, Requirements::default()).is_ok());
}
