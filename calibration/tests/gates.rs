//! Accuracy gates of INT8 activations (docs/quantization.md §6.5): calibrate a float bundle on
//! the frames of one synthetic room, export `--activations int8` with each method, then on the
//! frames of a HELD-OUT room compare every quantized encoder graph with fp32 (each graph fed
//! the fp32 graph's inputs, relative RMS error of its outputs) and the end-to-end pose of
//! `localize` (position in metres, yaw in degrees), and lint the bundle for TensorRT.
//!
//! Two checkpoints: `make-tiny` (random weights, every structural feature) and the trained
//! demo checkpoint (models/demo), whose pose is meaningful. The bounds asserted are stated in
//! `TINY` and `DEMO`; the measured values are printed. They hold for the QDQ arithmetic itself
//! (the runtime's default on the CPU: ONNX Runtime's basic level, float math on the quantized
//! values, what TensorRT's int8 kernels compute); ONNX Runtime's fused integer kernels
//! (`SessionOptions::int8_kernels`) are measured and printed, not gated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use loc3r::bundle::Bundle;
use loc3r::stages::preprocess::{preprocess, PreprocessSpec};
use loc3r::stages::video::{load_frames, FrameSpec};
use loc3r::{values, Loc3r, SessionOptions};
use loc3r_bundle::{io, Graph, Manifest};
use loc3r_calibrate::{calibrate, write_cache, Options};
use loc3r_export::bundle::{export_bundle, BundleOptions};
use loc3r_export::quant::{ActivationRequest, CalibrationCache, Method};
use loc3r_export::tensorrt::lint::{lint_bundle, LintOptions};
use loc3r_export::tensorrt::LintTarget;
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_synth::output::write_room;
use loc3r_synth::{generate_room, Options as RoomOptions};
use ndarray::ArrayD;
use ort::session::SessionInputValue;

/// Named f32 inputs of one graph call.
type Inputs<'a> = Vec<(&'a str, &'a ArrayD<f32>)>;

/// What is asserted for a checkpoint (every method): the relative RMS error `‖q − f‖ / ‖f‖` of
/// every output of each quantized encoder graph, and `localize` against fp32 per situation.
struct Bounds {
    graph: f64,
    position_m: f64,
    yaw_deg: f64,
}

/// The random tiny checkpoint: its projector's camera path sees 8 held-out camera tokens, and
/// its random attention is sharper than a trained one's (measured: ≤ 2.2% siglip and
/// cut3r_encoder, ≤ 7.2% projector, 0.012 m, 1.6°).
const TINY: Bounds = Bounds { graph: 0.10, position_m: 0.03, yaw_deg: 3.0 };
/// The trained demo checkpoint (measured: ≤ 1.9% per graph, 0.015 m, 0.47°).
const DEMO: Bounds = Bounds { graph: 0.03, position_m: 0.03, yaw_deg: 1.0 };

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A room's colour frames (`<dir>/scenes/<id>/color`) and its situations.
fn room(dir: &Path, seed: u64, frames: usize) -> (PathBuf, Vec<String>) {
    let opts = RoomOptions { seed, frames, width: 320, height: 240, questions: 8, video: false, ..RoomOptions::default() };
    let r = generate_room(&opts, 0).unwrap();
    write_room(dir, &opts, &r, None).unwrap();
    let situations = r.situated.iter().map(|s| s.situation.text.clone()).collect();
    (dir.join("scenes").join(&r.scene_id).join("color"), situations)
}

fn rel_rms(reference: &ArrayD<f32>, got: &ArrayD<f32>) -> f64 {
    assert_eq!(reference.shape(), got.shape());
    let (mut num, mut den) = (0f64, 0f64);
    for (a, b) in reference.iter().zip(got) {
        num += (f64::from(*a) - f64::from(*b)).powi(2);
        den += f64::from(*a).powi(2);
    }
    (num / den.max(1e-30)).sqrt()
}

/// Runs one graph of an opened bundle on named f32 inputs; every output as f32.
fn run_graph(bundle: &Bundle, graph: Graph, inputs: &[(&str, &ArrayD<f32>)]) -> BTreeMap<String, ArrayD<f32>> {
    let mut session = bundle.lock(graph).unwrap();
    let feed: Vec<(String, SessionInputValue<'_>)> =
        inputs.iter().map(|(n, a)| (n.to_string(), values::from_f32((*a).clone(), "f32", n).unwrap().into())).collect();
    let out = session.run(feed).unwrap();
    out.iter().map(|(n, v)| (n.to_string(), values::to_f32(&v, n).unwrap())).collect()
}

/// Each encoder graph of `quantized` against `float` on the same inputs (fp32's own
/// intermediate values): the largest relative RMS error over the graph's outputs.
fn graph_errors(float: &Path, quantized: &Path, frames_dir: &Path, int8_kernels: bool) -> BTreeMap<Graph, f64> {
    let opts = SessionOptions { intra_threads: 1, ..SessionOptions::default() };
    let qopts = SessionOptions { int8_kernels, ..opts.clone() };
    let (f, q) = (Bundle::open(float, &opts).unwrap(), Bundle::open(quantized, &qopts).unwrap());
    let rt = &f.manifest.runtime;
    let spec =
        PreprocessSpec { siglip_size: rt.vision.image_size, cut3r_long_side: rt.cut3r.long_side, cut3r_width: rt.cut3r.width, cut3r_height: rt.cut3r.height };
    let frames = load_frames(frames_dir, &FrameSpec::new(8)).unwrap();
    let pixels = preprocess(&frames, &spec).unwrap();
    let siglip_in = pixels.siglip.clone().into_dyn();
    let cut3r_in = pixels.cut3r.clone().into_dyn();
    let features = run_graph(&f, Graph::Siglip, &[(io::siglip::PIXEL_VALUES, &siglip_in)])[io::siglip::IMAGE_FEATURES].clone();
    let model = Loc3r::open(float, &opts).unwrap();
    let cams = model.frozen_features(&frames).unwrap().camera_tokens.into_dyn();
    let cases: [(Graph, Inputs<'_>); 3] = [
        (Graph::Siglip, vec![(io::siglip::PIXEL_VALUES, &siglip_in)]),
        (Graph::Cut3rEncoder, vec![(io::cut3r::IMAGE, &cut3r_in)]),
        (Graph::Projector, vec![(io::projector::IMAGE_FEATURES, &features), (io::projector::CAMERA_TOKENS, &cams)]),
    ];
    let mut errors = BTreeMap::new();
    for (graph, inputs) in cases {
        let (a, b) = (run_graph(&f, graph, &inputs), run_graph(&q, graph, &inputs));
        let worst = a.iter().map(|(name, reference)| rel_rms(reference, &b[name])).fold(0.0, f64::max);
        errors.insert(graph, worst);
    }
    errors
}

/// `localize` of every situation on the held-out frames: worst position (m) and yaw (°) error.
fn pose_errors(float: &Path, quantized: &Path, frames_dir: &Path, situations: &[String], int8_kernels: bool) -> (f64, f64) {
    let opts = SessionOptions { intra_threads: 1, ..SessionOptions::default() };
    let qopts = SessionOptions { int8_kernels, ..opts.clone() };
    let (f, q) = (Loc3r::open(float, &opts).unwrap(), Loc3r::open(quantized, &qopts).unwrap());
    let (sf, sq) = (f.observe_video(frames_dir, 8).unwrap(), q.observe_video(frames_dir, 8).unwrap());
    let (mut pos, mut yaw) = (0f64, 0f64);
    for s in situations {
        let (a, b) = (sf.localize(Some(s)).unwrap(), sq.localize(Some(s)).unwrap());
        let d = f64::from(a.position.x - b.position.x).hypot(f64::from(a.position.y - b.position.y));
        let dy = (a.yaw_deg - b.yaw_deg).rem_euclid(360.0);
        pos = pos.max(d);
        yaw = yaw.max(dy.min(360.0 - dy));
    }
    (pos, yaw)
}

/// Every QuantizeLinear of the quantized graphs reads a value the cache measured on the float
/// graph by the same name: the builder's names map one to one.
fn check_names(quantized: &Path, cache: &CalibrationCache) {
    let manifest = Manifest::read(quantized).unwrap();
    let record = manifest.activations.as_ref().expect("the manifest records the activations");
    let (mut pairs, mut weights) = (0, 0);
    for graph in &record.graphs {
        let file = loc3r_export::tensorrt::read_graph(graph, &quantized.join(format!("{graph}.onnx"))).unwrap();
        let g = file.model.graph.unwrap();
        // One int8 weight per Linear whose activation is quantized.
        weights += g.initializer.iter().filter(|t| t.name().ends_with("/codes")).count();
        for n in g.node.iter().filter(|n| n.op_type() == "QuantizeLinear") {
            assert!(cache.graphs[graph].values.contains_key(&n.input[0]), "{graph}: `{}` is quantized but was not measured", n.input[0]);
            pairs += 1;
        }
        assert!(g.node.iter().all(|n| !matches!(n.op_type(), "Softmax" | "LayerNormalization") || !n.input[0].ends_with("DequantizeLinear/output_0")));
    }
    assert!(pairs > 0 && record.linears >= pairs, "{pairs} QDQ pairs for {} Linears", record.linears);
    assert_eq!(record.linears, weights, "the manifest counts every Linear with int8 weights");
    assert!(!record.graphs.contains(&"cut3r_step".to_string()));
}

fn gates_for(name: &str, ckpt: &Path, tmp: &Path, bounds: &Bounds) {
    let float = tmp.join(format!("{name}-fp32"));
    export_bundle(ckpt, &float, &BundleOptions::default(), |_| {}).unwrap();
    let (calibration_frames, _) = room(&tmp.join(format!("{name}-calibration")), 11, 16);
    let (held_out, situations) = room(&tmp.join(format!("{name}-held-out")), 1000, 16);
    assert!(!situations.is_empty());
    for (method, percentile) in [(Method::MinMax, None), (Method::Percentile, Some(99.99)), (Method::Entropy, None)] {
        let mut opts = Options::new(float.clone(), vec![calibration_frames.clone()]);
        opts.method = method;
        opts.percentile = percentile.unwrap_or(99.99);
        opts.threads = 1;
        let cache = calibrate(&opts, |_| {}).unwrap();
        assert_eq!(cache.frames, 16);
        let cache_path = tmp.join(format!("{name}-{method}.json"));
        write_cache(&cache, &cache_path).unwrap();
        let activations = ActivationRequest { activations: Some("int8".into()), calibration: Some(cache_path.clone()) }.resolve(None, &[]).unwrap();
        let quantized = tmp.join(format!("{name}-int8-{method}"));
        export_bundle(ckpt, &quantized, &BundleOptions { activations, ..BundleOptions::default() }, |_| {}).unwrap();
        check_names(&quantized, &cache);

        let lint = lint_bundle(&quantized, &LintOptions { target: LintTarget::Tensorrt, tensorrt: "10.14".parse().unwrap(), limits: None }).unwrap();
        assert_eq!(lint.errors(), 0, "{name} {method}: {:?}", lint.findings);

        // The runtime's defaults run these graphs on the CPU at ONNX Runtime's basic level,
        // which keeps the QDQ pairs as float arithmetic: the rounding and clipping of the
        // quantization alone, what TensorRT's int8 kernels (exact int32 sums) compute. The
        // gates hold there.
        let errors = graph_errors(&float, &quantized, &held_out, false);
        let (pos, yaw) = pose_errors(&float, &quantized, &held_out, &situations, false);
        // `int8_kernels` lets ONNX Runtime fuse the pairs into integer kernels; on x86 without
        // VNNI they multiply u8 by s8 in pairs summed in 16 bits, which saturate: measured, not
        // gated (it depends on the CPU).
        let cpu = graph_errors(&float, &quantized, &held_out, true);
        let (cpu_pos, cpu_yaw) = pose_errors(&float, &quantized, &held_out, &situations, true);
        let pct = |e: &BTreeMap<Graph, f64>, g: Graph| 100.0 * e[&g];
        eprintln!(
            "{name} {method}: QDQ: siglip {:.2}%, cut3r_encoder {:.2}%, projector {:.2}%, position {pos:.4} m, yaw {yaw:.2}° | \
             ORT CPU default: siglip {:.2}%, cut3r_encoder {:.2}%, projector {:.2}%, position {cpu_pos:.4} m, yaw {cpu_yaw:.2}°",
            pct(&errors, Graph::Siglip),
            pct(&errors, Graph::Cut3rEncoder),
            pct(&errors, Graph::Projector),
            pct(&cpu, Graph::Siglip),
            pct(&cpu, Graph::Cut3rEncoder),
            pct(&cpu, Graph::Projector),
        );
        for (graph, e) in &errors {
            assert!(*e <= bounds.graph && *e > 0.0, "{name} {method} {graph}: relative RMS error {e} (bound {}; 0 means nothing was quantized)", bounds.graph);
        }
        assert!(pos <= bounds.position_m, "{name} {method}: position error {pos} m (bound {})", bounds.position_m);
        assert!(yaw <= bounds.yaw_deg, "{name} {method}: yaw error {yaw}° (bound {})", bounds.yaw_deg);
    }
}

#[test]
fn int8_encoders_meet_the_gates_on_held_out_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = tmp.path().join("tiny");
    make_tiny(&tiny, &TinyOptions { seed: 1, ..TinyOptions::default() }, |_, _| {}).unwrap();
    gates_for("tiny", &tiny, tmp.path(), &TINY);
    gates_for("demo", &repo_root().join("models/demo/checkpoint"), tmp.path(), &DEMO);
}
