//! The calibration run: the float bundle's encoders over the frames, statistics of every
//! activation that feeds a weight product, and the cache.
//!
//! Per sequence of frames: the runtime's preprocessing gives SigLIP's and CUT3R's pixels;
//! the runtime's CUT3R stage (encoder and recurrence from the initial state, float) gives the
//! camera tokens the projector reads; then the augmented `siglip`, `projector` and
//! `cut3r_encoder` run frame batch by frame batch, and every extra output updates its
//! statistics. The projector reads SigLIP's features from the augmented SigLIP (the same
//! values as the float graph's, which the copy still outputs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use loc3r::bundle::{batches, Bundle};
use loc3r::manifest::Manifest;
use loc3r::session::SessionOptions;
use loc3r::stages::cut3r::{Cut3r, Cut3rState};
use loc3r::stages::preprocess::{preprocess, PreprocessSpec};
use loc3r::values;
use loc3r_bundle::io;
use loc3r_bundle::Graph;
use loc3r_export::quant::activations::{CalibrationCache, GraphRanges, ValueRange, ACTIVATION_GRAPHS, CACHE_FORMAT, CACHE_VERSION};
use loc3r_export::quant::Method;
use ndarray::{s, ArrayD};
use ort::session::{Session, SessionInputValue};

use crate::error::{Error, Result};
use crate::frames::collect;
use crate::graphs::{load_augmented, prepare, Target};
use crate::stats::Stats;

/// What to calibrate and how.
#[derive(Debug, Clone)]
pub struct Options {
    pub bundle: PathBuf,
    /// Video files, directories of images or directories of videos.
    pub sources: Vec<PathBuf>,
    pub method: Method,
    /// The percentile of [`Method::Percentile`].
    pub percentile: f64,
    pub max_frames: usize,
    pub frames_per_video: usize,
    /// Frames per call of the augmented graphs (their extra outputs take memory per frame).
    pub frame_batch: usize,
    /// ONNX Runtime intra-op threads (0: one per core).
    pub threads: usize,
}

impl Options {
    pub fn new(bundle: PathBuf, sources: Vec<PathBuf>) -> Options {
        Options { bundle, sources, method: Method::Entropy, percentile: 99.99, max_frames: 256, frames_per_video: 16, frame_batch: 2, threads: 0 }
    }
}

/// Progress of a run, for stderr.
#[derive(Debug, Clone)]
pub enum Progress {
    /// Sequences and frames read (and unreadable sources skipped).
    Frames { sequences: usize, frames: usize, unreadable: usize, first_unreadable: Option<String> },
    /// Values measured per graph.
    Plan(Vec<(String, usize)>),
    /// A sequence starts (its CUT3R recurrence runs first), 1-based, with its source.
    Sequence { index: usize, count: usize, source: PathBuf, seconds: f64 },
    /// Frames done of the total, seconds so far.
    Done { frames: usize, total: usize, seconds: f64 },
}

/// One graph's statistics.
struct Measured {
    target: Target,
    session: Session,
    stats: BTreeMap<String, Stats>,
}

impl Measured {
    /// Runs the augmented graph on `inputs` (named f32 arrays), updating the statistics of
    /// every activation (fed inputs directly); returns the graph's float outputs by name.
    fn run(&mut self, inputs: Vec<(&str, ArrayD<f32>, String)>) -> Result<BTreeMap<String, ArrayD<f32>>> {
        for a in self.target.activations.iter().filter(|a| a.graph_input) {
            if let Some((_, v, _)) = inputs.iter().find(|(n, _, _)| *n == a.name) {
                self.stats.entry(a.name.clone()).or_default().add(v.iter().copied());
            }
        }
        let graph = self.target.graph;
        let mut feed: Vec<(String, SessionInputValue<'_>)> = Vec::new();
        for (name, array, dtype) in inputs {
            feed.push((name.to_string(), values::from_f32(array, &dtype, name)?.into()));
        }
        let out = self.session.run(feed).map_err(|e| loc3r::Error::ort(format!("running the augmented {graph}"), e))?;
        let mut graph_outputs = BTreeMap::new();
        for (name, value) in out.iter() {
            let array = values::to_f32(&value, name)?;
            match self.stats.get_mut(name) {
                Some(s) => s.add(array.iter().copied()),
                None => {
                    graph_outputs.insert(name.to_string(), array);
                }
            }
        }
        Ok(graph_outputs)
    }
}

/// Refuses a bundle whose encoders already hold quantized weights or activations.
fn refuse_quantized(dir: &Path, manifest: &Manifest) -> Result<()> {
    if let Some(a) = &manifest.activations {
        return Err(Error::AlreadyQuantized(format!(
            "{} is already quantized ({a}); calibrate the float bundle of the checkpoint (loc3r-export export without --activations, --weights or --preset)",
            dir.display()
        )));
    }
    if let Some(q) = &manifest.quantization {
        if let Some(g) = q.graphs.iter().find(|g| ACTIVATION_GRAPHS.iter().any(|a| a.name() == g.as_str())) {
            return Err(Error::AlreadyQuantized(format!(
                "{}: the {g} graph is already quantized ({q}); calibrate the float bundle of the checkpoint (loc3r-export export without --weights or --preset)",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// The input dtype the manifest gives `input` of `graph` (`f32` when unlisted).
fn input_dtype(manifest: &Manifest, graph: Graph, input: &str) -> String {
    manifest.graphs.get(graph.name()).and_then(|g| g.input(input)).map_or_else(|| "f32".to_string(), |i| i.dtype.clone())
}

/// Calibrates the bundle: see the module documentation.
pub fn calibrate(opts: &Options, mut progress: impl FnMut(Progress)) -> Result<CalibrationCache> {
    let start = Instant::now();
    if !(opts.percentile > 0.0 && opts.percentile <= 100.0) {
        return Err(Error::Invalid(format!("--percentile {}: give a percentile in (0, 100], e.g. 99.99", opts.percentile)));
    }
    let dir = &opts.bundle;
    let manifest =
        Manifest::read(dir).map_err(|e| Error::Bundle(format!("--bundle {}: {e}; name a float bundle written by loc3r-export export", dir.display())))?;
    refuse_quantized(dir, &manifest)?;
    for g in ACTIVATION_GRAPHS.iter().chain([&Graph::Cut3rStep]) {
        if !manifest.graphs.contains_key(g.name()) {
            return Err(Error::Bundle(format!("{}: the bundle has no {g} graph, which calibration runs; export every graph", dir.display())));
        }
    }
    let collected = collect(&opts.sources, opts.frames_per_video, opts.max_frames)?;
    let total = collected.frames();
    progress(Progress::Frames {
        sequences: collected.sequences.len(),
        frames: total,
        unreadable: collected.unreadable,
        first_unreadable: collected.first_unreadable.clone(),
    });

    let session_opts = SessionOptions { intra_threads: opts.threads, ..SessionOptions::default() };
    let mut measured: BTreeMap<Graph, Measured> = BTreeMap::new();
    for graph in ACTIVATION_GRAPHS {
        let target = prepare(dir, &manifest, graph)?;
        let session = load_augmented(&target, dir, opts.threads)?;
        let stats = target.activations.iter().map(|a| (a.name.clone(), Stats::new())).collect();
        measured.insert(graph, Measured { target, session, stats });
    }
    progress(Progress::Plan(measured.values().map(|m| (m.target.graph.name().to_string(), m.target.activations.len())).collect()));

    let bundle = Bundle::open(dir, &session_opts)?;
    let rt = &bundle.manifest.runtime;
    let spec =
        PreprocessSpec { siglip_size: rt.vision.image_size, cut3r_long_side: rt.cut3r.long_side, cut3r_width: rt.cut3r.width, cut3r_height: rt.cut3r.height };
    let init = Cut3rState::initial(&bundle)?;
    let cut3r = Cut3r::new(&bundle)?;
    let pixel_dtype = input_dtype(&manifest, Graph::Siglip, io::siglip::PIXEL_VALUES);
    let image_dtype = input_dtype(&manifest, Graph::Cut3rEncoder, io::cut3r::IMAGE);
    let features_dtype = input_dtype(&manifest, Graph::Projector, io::projector::IMAGE_FEATURES);
    let camera_dtype = input_dtype(&manifest, Graph::Projector, io::projector::CAMERA_TOKENS);
    let mut done = 0;
    for (k, (source, frames)) in collected.sequences.iter().enumerate() {
        progress(Progress::Sequence { index: k + 1, count: collected.sequences.len(), source: source.clone(), seconds: start.elapsed().as_secs_f64() });
        let pixels = preprocess(frames, &spec).map_err(loc3r::Error::from)?;
        let (cameras, _) = cut3r.run(&pixels.cut3r, &init)?;
        for range in batches(frames.frames.len(), opts.frame_batch) {
            let siglip = measured.get_mut(&Graph::Siglip).ok_or_else(|| Error::Internal("no siglip session".into()))?;
            let px = pixels.siglip.slice(s![range.clone(), .., .., ..]).to_owned().into_dyn();
            let mut out = siglip.run(vec![(io::siglip::PIXEL_VALUES, px, pixel_dtype.clone())])?;
            let features = out
                .remove(io::siglip::IMAGE_FEATURES)
                .ok_or_else(|| Error::Bundle(format!("siglip.onnx has no output `{}`; re-export the bundle", io::siglip::IMAGE_FEATURES)))?;
            let cams = cameras.tokens.slice(s![range.clone(), ..]).to_owned().into_dyn();
            let projector = measured.get_mut(&Graph::Projector).ok_or_else(|| Error::Internal("no projector session".into()))?;
            projector
                .run(vec![(io::projector::IMAGE_FEATURES, features, features_dtype.clone()), (io::projector::CAMERA_TOKENS, cams, camera_dtype.clone())])?;
            let encoder = measured.get_mut(&Graph::Cut3rEncoder).ok_or_else(|| Error::Internal("no cut3r_encoder session".into()))?;
            let image = pixels.cut3r.slice(s![range.clone(), .., .., ..]).to_owned().into_dyn();
            encoder.run(vec![(io::cut3r::IMAGE, image, image_dtype.clone())])?;
            done += range.len();
            progress(Progress::Done { frames: done, total, seconds: start.elapsed().as_secs_f64() });
        }
    }

    let mut graphs = BTreeMap::new();
    for (graph, m) in measured {
        let mut values = BTreeMap::new();
        for (name, st) in m.stats {
            if st.non_finite > 0 {
                return Err(Error::Bundle(format!(
                    "the {graph} graph made {} NaN or infinite values in `{name}` on these frames; the float bundle is broken (check it with loc3r-export inspect)",
                    st.non_finite
                )));
            }
            if st.count == 0 {
                return Err(Error::Internal(format!("`{name}` of {graph} was never measured")));
            }
            values.insert(name, ValueRange { min: st.min, max: st.max, threshold: st.threshold(opts.method, opts.percentile) });
        }
        graphs.insert(graph.name().to_string(), GraphRanges { sha256: m.target.sha256, values });
    }
    Ok(CalibrationCache {
        format: CACHE_FORMAT.into(),
        format_version: CACHE_VERSION,
        producer: format!("loc3r-calibrate {}", env!("CARGO_PKG_VERSION")),
        method: opts.method,
        percentile: (opts.method == Method::Percentile).then_some(opts.percentile),
        frames: total,
        precision: manifest.precision.to_string(),
        graphs,
    })
}

/// Writes `cache` to `path` (through a temporary file beside it, renamed into place, so a
/// failed write never leaves half a cache).
pub fn write_cache(cache: &CalibrationCache, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(cache).map_err(|e| Error::Internal(format!("serialising the cache: {e}")))? + "\n";
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = parent.join(format!(".{}.tmp", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "calibration".into())));
    std::fs::write(&tmp, text).map_err(|error| Error::Write { path: tmp.clone(), error })?;
    std::fs::rename(&tmp, path).map_err(|error| {
        let _ = std::fs::remove_file(&tmp);
        Error::Write { path: path.to_path_buf(), error }
    })
}
