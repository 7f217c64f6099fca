//! Opening a bundle: the manifest, the tokenizer, and one ONNX Runtime session per graph.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use loc3r_bundle::engines::{self, EngineDir, EngineTarget, EnginesError};
use loc3r_bundle::Graph;
use ort::session::Session;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::manifest::{Manifest, TOKENIZER_FILE};
use crate::session::{load, load_compiled, Device, SessionOptions};

/// A loaded bundle. Sessions are behind mutexes (ONNX Runtime runs take `&mut`), so a
/// `Bundle` can be shared between threads.
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub tokenizer: Tokenizer,
    /// Frames per encoder call and positions per prefill call (`SessionOptions`; 0 = no limit).
    pub frame_batch: usize,
    pub prefill_chunk: usize,
    /// The compiled engines the GPU sessions run (`engines/<key>/`), if any.
    pub engines: Option<EngineDir>,
    sessions: BTreeMap<Graph, Mutex<Session>>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle").field("dir", &self.dir).field("graphs", &self.sessions.keys().collect::<Vec<_>>()).finish()
    }
}

/// `0..total` in consecutive ranges of at most `limit` (0 = one range).
pub fn batches(total: usize, limit: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let step = if limit == 0 { total.max(1) } else { limit };
    (0..total).step_by(step).map(move |start| start..(start + step).min(total))
}

impl Bundle {
    /// Reads the manifest, checks that every listed file is present with its recorded
    /// size (full sha256 verification is `loc3r-export inspect`), and loads every graph.
    pub fn open(dir: &Path, opts: &SessionOptions) -> Result<Bundle> {
        if !dir.is_dir() {
            return Err(Error::Bundle(format!("{}: bundle directory not found; create one with `loc3r-export export`", dir.display())));
        }
        // Every file is checked to be a regular one before anything opens it (a FIFO would block).
        for path in [dir.join(crate::manifest::MANIFEST_FILE), dir.join(TOKENIZER_FILE)] {
            match crate::files::require_regular(&path, false) {
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => return Err(Error::BundleFile { path, error: e }),
                _ => {}
            }
        }
        let manifest = Manifest::read(dir)?;
        check_device_takes_weights(manifest.quantization.as_ref(), &opts.device)?;
        for (name, entry) in &manifest.files {
            let path = dir.join(name);
            let len = match crate::files::require_regular(&path, false) {
                Ok(meta) => meta.len(),
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => return Err(Error::BundleFile { path, error: e }),
                Err(_) => return Err(Error::Bundle(format!("{}: listed in manifest.json but missing; re-export the bundle", path.display()))),
            };
            if len != entry.bytes {
                return Err(Error::Bundle(format!(
                    "{}: {len} bytes, manifest.json says {}; the bundle is incomplete or corrupt (check with `loc3r-export inspect`)",
                    path.display(),
                    entry.bytes
                )));
            }
        }
        let tok_path = dir.join(TOKENIZER_FILE);
        let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| Error::Bundle(format!("{}: cannot load tokenizer: {e}", tok_path.display())))?;
        let engines = engines_for(dir, &manifest, opts)?;
        let mut sessions = BTreeMap::new();
        // Optional graphs the pipeline does not run (e.g. cut3r_points) are not loaded.
        for graph in Graph::PIPELINE {
            if let Some(entry) = manifest.graphs.get(graph.name()) {
                let session = match engines.as_ref().and_then(|e| e.model_path(graph.name())) {
                    Some(compiled) => load_compiled(&compiled, opts)?,
                    None => load(&dir.join(&entry.file), &graph_options(&manifest, graph, opts))?,
                };
                sessions.insert(graph, Mutex::new(session));
            }
        }
        Ok(Bundle { dir: dir.to_path_buf(), manifest, tokenizer, frame_batch: opts.frame_batch, prefill_chunk: opts.prefill_chunk, engines, sessions })
    }

    /// Refuses a call whose input `name` of `graph` has a `shape` outside the compiled
    /// engine's optimization profile (TensorRT would fail the call; with an engine cache it
    /// would rebuild for minutes). Without compiled engines every shape is accepted.
    pub fn check_shape(&self, graph: Graph, name: &str, shape: &[usize]) -> Result<()> {
        let Some(compiled) = self.engines.as_ref().and_then(|e| e.record.graphs.get(graph.name())) else { return Ok(()) };
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        compiled.profile.check(name, &dims).map_err(|why| {
            let limits = self.engines.as_ref().map(|e| e.record.limits.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")).unwrap_or_default();
            Error::Engines(format!(
                "{graph}: {why} (compiled with {limits}); use fewer frames, a smaller --frame-batch or --prefill-chunk, or recompile with larger limits (loc3r-export compile --max-frames/--max-prefill/--max-context)"
            ))
        })
    }

    /// The session of a graph.
    pub fn session(&self, graph: Graph) -> Result<&Mutex<Session>> {
        self.sessions.get(&graph).ok_or_else(|| Error::Bundle(format!("the bundle has no `{graph}` graph; re-export it with all graphs (loc3r-export export)")))
    }

    /// The session of a graph, locked for one run.
    pub fn lock(&self, graph: Graph) -> Result<MutexGuard<'_, Session>> {
        lock_session(self.session(graph)?, graph.name())
    }
}

/// The session options of one graph: `opts`, except that a graph with INT8 activations runs
/// on the CPU at optimisation level 1 unless `opts.int8_kernels` (the exact QDQ arithmetic; see
/// [`SessionOptions::int8_kernels`]).
fn graph_options(manifest: &Manifest, graph: Graph, opts: &SessionOptions) -> SessionOptions {
    let quantized = manifest.activations.as_ref().is_some_and(|a| a.graphs.iter().any(|g| g == graph.name()));
    if quantized && opts.device == Device::Cpu && !opts.int8_kernels && opts.optimization_level > 1 {
        SessionOptions { optimization_level: 1, ..opts.clone() }
    } else {
        opts.clone()
    }
}

/// The compiled engines `opts.device` should run, after checking they were built for this
/// machine: `None` for the CPU, for CUDA without compiled graphs (the bundle's graphs run
/// as they are), and for TensorRT with `allow_build` when nothing fits (engines are built
/// while loading). Anything else that does not fit is an error naming what to do.
fn engines_for(dir: &Path, manifest: &Manifest, opts: &SessionOptions) -> Result<Option<EngineDir>> {
    let Some(target) = opts.device.engine_target() else { return Ok(None) };
    let library = crate::ort_env::init()?.library.clone();
    let device_id = opts.device.device_id().unwrap_or(0);
    let facts = match loc3r_bundle::gpu::probe(target, device_id, &library) {
        Ok(facts) => facts,
        // CUDA loads the bundle's graphs; registering the provider reports what is missing.
        Err(_) if target == EngineTarget::Cuda => return Ok(None),
        Err(e) => return Err(Error::Gpu { device: opts.device.name().to_string(), message: e.to_string() }),
    };
    let key = facts.key(target);
    let found = match engines::find(dir, target, &key) {
        Ok(found) => found,
        Err(EnginesError::NotCompiled { .. } | EnginesError::OtherKey { .. }) if target == EngineTarget::Cuda || opts.allow_build => return Ok(None),
        Err(e) => return Err(Error::Engines(e.to_string())),
    };
    check_engine_files(&found, manifest)?;
    Ok(Some(found))
}

/// Every pipeline graph of the bundle has a compiled model, and every file the compile wrote
/// is there with its recorded size (hashing multi-GB engines at every start costs too much;
/// `compiled.json` has the sha256 for a full check).
fn check_engine_files(found: &EngineDir, manifest: &Manifest) -> Result<()> {
    let recompile = "recompile with loc3r-export compile";
    for graph in Graph::PIPELINE.iter().filter(|g| manifest.graphs.contains_key(g.name())) {
        let Some(compiled) = found.record.graphs.get(graph.name()) else {
            return Err(Error::Engines(format!("{}: no compiled {graph} (the bundle has one); {recompile}", found.dir.display())));
        };
        for (file, entry) in &compiled.files {
            let path = found.dir.join(file);
            match std::fs::metadata(&path) {
                Ok(meta) if meta.len() == entry.bytes => {}
                Ok(meta) => {
                    return Err(Error::Engines(format!(
                        "{}: {} bytes, the compile wrote {}; the engine is corrupt, {recompile}",
                        path.display(),
                        meta.len(),
                        entry.bytes
                    )))
                }
                Err(e) => return Err(Error::Engines(format!("{}: {e}; the engine directory is incomplete, {recompile}", path.display()))),
            }
        }
    }
    Ok(())
}

/// Refuses a device that cannot run the bundle's quantized weights, before any session is
/// built (TensorRT would otherwise fail deep inside engine building, or hand the op back
/// to a provider the user did not ask for).
fn check_device_takes_weights(quantization: Option<&loc3r_bundle::Quantization>, device: &crate::session::Device) -> Result<()> {
    use loc3r_bundle::QuantFormat;
    let Some(q) = quantization else { return Ok(()) };
    if q.format == QuantFormat::MatMulNBits && matches!(device, crate::session::Device::TensorRt { .. } | crate::session::Device::TensorRtRtx { .. }) {
        return Err(Error::Input(format!(
            "the bundle's {} graph(s) hold {} weights as com.microsoft.MatMulNBits, an ONNX Runtime op TensorRT cannot build; \
             run it with --device cpu or cuda, or export a TensorRT bundle with --preset tensorrt-int8 (QDQ)",
            q.graphs.join(", "),
            q.weights
        )));
    }
    Ok(())
}

/// What `doctor` reports about a bundle's engines for `device`: the directory it would load,
/// or why none.
pub fn describe_engines(dir: &Path, device: &Device) -> String {
    let Some(target) = device.engine_target() else { return "the CPU runs the bundle's graphs".into() };
    let library = match crate::ort_env::init() {
        Ok(info) => info.library.clone(),
        Err(e) => return e.to_string(),
    };
    let compiled = engines::compiled_keys(dir, target);
    let listed = if compiled.is_empty() { "none".to_string() } else { compiled.join(", ") };
    match loc3r_bundle::gpu::probe(target, device.device_id().unwrap_or(0), &library) {
        Err(e) => format!("this machine cannot run {target}: {e} (compiled in the bundle: {listed})"),
        Ok(facts) => {
            let key = facts.key(target);
            match engines::find(dir, target, &key) {
                Ok(found) => format!("loads {} (this machine: {key})", found.dir.display()),
                Err(e) => format!("{e}"),
            }
        }
    }
}

/// Locks a graph's session. A poisoned mutex means an earlier run panicked while holding
/// it: our bug, and the session may be in any state, so it is not used again.
fn lock_session<'a, T>(session: &'a Mutex<T>, graph: &str) -> Result<MutexGuard<'a, T>> {
    session.lock().map_err(|_| Error::Internal(format!("the `{graph}` session was poisoned by an earlier panic; reopen the bundle (restart the server)")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Fault;

    /// Shapes are checked against the compiled profile, with its bounds and the limits in the
    /// message; without compiled engines nothing is checked.
    #[test]
    fn shapes_outside_the_compiled_profile_are_refused_with_the_bounds() {
        use loc3r_bundle::engines::{CompiledGraph, CompiledRecord, InputRange, Profile, TargetFacts};
        let facts = TargetFacts {
            compute_capability: (9, 0),
            gpu_name: "H100".into(),
            tensorrt: Some("10.14.1".into()),
            cuda: "13.0".into(),
            onnxruntime: "1.31.1".into(),
            driver_cuda: None,
        };
        let profile =
            Profile { inputs: vec![InputRange { name: "pixel_values".into(), min: vec![1, 3, 70, 70], opt: vec![4, 3, 70, 70], max: vec![8, 3, 70, 70] }] };
        let graph = CompiledGraph {
            model: "siglip_ctx.onnx".into(),
            source_sha256: String::new(),
            profile,
            provider_options: vec![],
            files: BTreeMap::new(),
            build_seconds: 0.0,
        };
        let record = CompiledRecord {
            format: engines::RECORD_FORMAT.into(),
            format_version: engines::RECORD_FORMAT_VERSION,
            producer: "test".into(),
            target: EngineTarget::TensorrtFp16,
            key: facts.key(EngineTarget::TensorrtFp16),
            facts,
            limits: BTreeMap::from([("max_frames".to_string(), 8)]),
            graphs: BTreeMap::from([("siglip".to_string(), graph)]),
        };
        let dir = std::env::temp_dir().join("loc3r-profile-check");
        let bundle = bundle_without_sessions(&dir, Some(EngineDir { dir: dir.join("engines"), record }));
        assert!(bundle.check_shape(Graph::Siglip, "pixel_values", &[8, 3, 70, 70]).is_ok());
        assert!(bundle.check_shape(Graph::Heads, "vision_hidden", &[1, 99999, 64]).is_ok(), "graphs without a profile are not checked");
        let e = bundle.check_shape(Graph::Siglip, "pixel_values", &[9, 3, 70, 70]).unwrap_err();
        assert_eq!(e.fault(), Fault::Bundle);
        let text = e.to_string();
        assert!(text.contains("[9, 3, 70, 70]") && text.contains("[1, 3, 70, 70] to [8, 3, 70, 70]") && text.contains("max_frames 8"), "{text}");
        let plain = bundle_without_sessions(&dir, None);
        assert!(plain.check_shape(Graph::Siglip, "pixel_values", &[64, 3, 70, 70]).is_ok());
    }

    /// A `Bundle` with no sessions, for checks that need none.
    fn bundle_without_sessions(dir: &Path, engines: Option<EngineDir>) -> Bundle {
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "format": "loc3r-bundle", "format_version": 1, "producer": "test", "precision": "f16", "config": {}, "graphs": {}, "files": {},
            "runtime": {
                "frames": 4,
                "vision": {"image_size": 70, "patch_size": 14, "grid": 5, "pooling": "bilinear", "pooled_grid": 3, "tokens_per_frame": 12, "resample": "bicubic", "rescale": 0.0039, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
                "cut3r": {"width": 64, "height": 48, "patch_size": 16, "long_side": 64, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "state_tokens": 10, "memory_tokens": 8, "dim": 48},
                "llm": {"hidden_size": 64, "num_layers": 2, "num_kv_heads": 2, "head_dim": 16, "vocab_size": 1024, "max_positions": 4096},
                "prompt": {"system": "", "chat_template": "", "user_template": "", "image_placeholder": "<image>", "add_time_instruction": false, "time_instruction": "", "default_situation": ""},
                "tokens": {"endoftext": 0, "im_start": 1, "im_end": 2, "pos": 3, "ori": 4, "tokenizer_size": 5, "stop": [2]},
                "orientation": {"bins": 8, "sigma_deg": 10.0}
            }
        }))
        .unwrap();
        let tokenizer = Tokenizer::new(tokenizers::models::wordlevel::WordLevel::default());
        Bundle { dir: dir.to_path_buf(), manifest, tokenizer, frame_batch: 8, prefill_chunk: 512, engines, sessions: BTreeMap::new() }
    }

    #[test]
    fn tensorrt_is_refused_for_matmulnbits_weights_only() {
        use crate::session::Device;
        use loc3r_bundle::{QuantFormat, Quantization, WeightBits};
        let quantization = |format| Quantization {
            weights: WeightBits::Int4,
            format,
            block_size: Some(32),
            symmetric: true,
            accuracy_level: None,
            method: "rtn".into(),
            layers: vec!["decoder".into()],
            graphs: vec!["decoder".into()],
            preset: None,
        };
        let tensorrt: Device = "tensorrt".parse().unwrap();
        let check = |q: Option<Quantization>, device: &Device| check_device_takes_weights(q.as_ref(), device);
        let e = check(Some(quantization(QuantFormat::MatMulNBits)), &tensorrt).unwrap_err();
        assert_eq!(e.fault(), Fault::Input);
        assert!(e.to_string().contains("decoder") && e.to_string().contains("--preset tensorrt-int8"), "{e}");
        check(Some(quantization(QuantFormat::MatMulNBits)), &Device::Cpu).unwrap();
        check(Some(quantization(QuantFormat::Qdq)), &tensorrt).unwrap();
        check(None, &tensorrt).unwrap();
    }

    #[test]
    fn a_poisoned_session_is_an_internal_error() {
        let m = Mutex::new(0u8);
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = m.lock().unwrap();
                panic!("a run panics while holding the session");
            })
            .join()
        });
        let e = lock_session(&m, "decoder").unwrap_err();
        assert_eq!((e.fault(), e.fault().exit_code()), (Fault::Internal, 1));
        assert!(e.to_string().contains("`decoder`") && e.to_string().contains("poisoned"), "{e}");
        let fine = Mutex::new(3u8);
        assert_eq!(*lock_session(&fine, "embed").unwrap(), 3);
    }
}
