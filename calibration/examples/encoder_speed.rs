//! ONNX Runtime CPU time of the encoder graphs of two bundles (a float one and its
//! `--activations int8` export) on the same frames (docs/quantization.md §6.6):
//!
//! ```text
//! cargo run --release -p loc3r-calibrate --example encoder_speed -- FLOAT_BUNDLE INT8_BUNDLE FRAMES_DIR_OR_VIDEO [N_FRAMES] [REPEATS]
//! ```
//!
//! Per graph: the median over REPEATS calls on N_FRAMES frames (one call per graph, after one
//! warm-up), at ONNX Runtime's default optimisation level and threads.

use std::path::PathBuf;
use std::time::Instant;

use loc3r::bundle::Bundle;
use loc3r::stages::preprocess::{preprocess, PreprocessSpec};
use loc3r::stages::video::{load_frames, FrameSpec};
use loc3r::{values, Loc3r, SessionOptions};
use loc3r_bundle::{io, Graph};
use ndarray::ArrayD;
use ort::session::SessionInputValue;

/// Named f32 inputs of one graph call.
type Inputs<'a> = Vec<(&'a str, &'a ArrayD<f32>)>;

fn time_graph(bundle: &Bundle, graph: Graph, inputs: &[(&str, &ArrayD<f32>)], repeats: usize) -> anyhow::Result<f64> {
    let mut session = bundle.lock(graph)?;
    let mut times = Vec::new();
    for i in 0..=repeats {
        let feed: Vec<(String, SessionInputValue<'_>)> =
            inputs.iter().map(|(n, a)| Ok((n.to_string(), values::from_f32((*a).clone(), "f32", n)?.into()))).collect::<loc3r::Result<_>>()?;
        let start = Instant::now();
        session.run(feed)?;
        if i > 0 {
            times.push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() >= 3, "usage: encoder_speed FLOAT_BUNDLE INT8_BUNDLE FRAMES_DIR_OR_VIDEO [N_FRAMES] [REPEATS]");
    let (float, int8, frames_path) = (PathBuf::from(&args[0]), PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    let n: usize = args.get(3).map_or(Ok(8), |s| s.parse())?;
    let repeats: usize = args.get(4).map_or(Ok(5), |s| s.parse())?;
    let opts = SessionOptions { frame_batch: 0, ..SessionOptions::default() };
    let model = Loc3r::open(&float, &opts)?;
    let f = model.bundle();
    let q = Bundle::open(&int8, &opts)?;
    let rt = &f.manifest.runtime;
    let spec =
        PreprocessSpec { siglip_size: rt.vision.image_size, cut3r_long_side: rt.cut3r.long_side, cut3r_width: rt.cut3r.width, cut3r_height: rt.cut3r.height };
    let frames = load_frames(&frames_path, &FrameSpec::new(n))?;
    let pixels = preprocess(&frames, &spec)?;
    let frozen = model.frozen_features(&frames)?;
    let (siglip_in, cut3r_in) = (pixels.siglip.into_dyn(), pixels.cut3r.into_dyn());
    let (features, cams) = (frozen.image_features.into_dyn(), frozen.camera_tokens.into_dyn());
    println!("{n} frames, median of {repeats} calls (ms per call)");
    println!("{:<14} {:>10} {:>10} {:>7}", "graph", "fp32", "int8", "ratio");
    let cases: [(Graph, Inputs<'_>); 3] = [
        (Graph::Siglip, vec![(io::siglip::PIXEL_VALUES, &siglip_in)]),
        (Graph::Cut3rEncoder, vec![(io::cut3r::IMAGE, &cut3r_in)]),
        (Graph::Projector, vec![(io::projector::IMAGE_FEATURES, &features), (io::projector::CAMERA_TOKENS, &cams)]),
    ];
    for (graph, inputs) in cases {
        let (a, b) = (time_graph(f, graph, &inputs, repeats)?, time_graph(&q, graph, &inputs, repeats)?);
        println!("{:<14} {a:>10.1} {b:>10.1} {:>6.2}x", graph.name(), b / a);
    }
    Ok(())
}
