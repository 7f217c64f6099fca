//! Writing a bundle (docs/bundle.md): every graph, `tokenizer.json`, the CUT3R
//! initial state and `manifest.json` with sha256 of every file.
//!
//! The bundle is assembled in a staging directory beside the target and renamed into
//! place at the end, so an interrupted or failed export never leaves a half bundle.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use loc3r_bundle::io::cut3r_init;
use loc3r_bundle::manifest::{self, FileEntry, GraphEntry, IoSpec, KvCacheLayout, Manifest, Pooling, Precision, RuntimeParams};
use loc3r_bundle::Graph;
use sha2::{Digest, Sha256};

use crate::checkpoint::{Checkpoint, Requirements, TOKENIZER_FILE};
use crate::config::{Config, PoolMode};
use crate::error::{Error, Result};
use crate::graph::{Dim, GraphBuilder, Value};
use crate::models::{self, ExportOptions};
use crate::quant::{ActivationQuant, QuantOptions};
use crate::tensor::DType;

/// The CUT3R initial state file (`state_init`, `mem_init`; docs/cut3r.md §3).
pub const CUT3R_INIT_FILE: &str = cut3r_init::FILE;

/// What to export.
#[derive(Debug, Clone)]
pub struct BundleOptions {
    pub precision: DType,
    /// Subset of graphs (default: all).
    pub graphs: Option<Vec<String>>,
    /// Pooling override (default: the config's `mm_spatial_pool_mode`).
    pub pooling: Option<PoolMode>,
    /// CUT3R input size override `(width, height)` (default: the config's).
    pub cut3r_size: Option<(usize, usize)>,
    pub cut3r_points: bool,
    /// KV cache interface of `decoder.onnx` (default: static).
    pub kv_cache: KvCacheLayout,
    /// Replace an existing directory that is not a bundle.
    pub force: bool,
    /// Name map other than the built-in one.
    pub names: Option<PathBuf>,
    /// Weight-only quantization (`None`: float weights), from [`crate::quant::QuantRequest::resolve`].
    pub weights: Option<QuantOptions>,
    /// INT8 activations of the encoders (`None`: float), from [`crate::quant::ActivationRequest::resolve`].
    pub activations: Option<ActivationQuant>,
}

impl Default for BundleOptions {
    fn default() -> Self {
        BundleOptions {
            precision: DType::F32,
            graphs: None,
            pooling: None,
            cut3r_size: None,
            cut3r_points: false,
            kv_cache: KvCacheLayout::Static,
            force: false,
            names: None,
            weights: None,
            activations: None,
        }
    }
}

/// Progress events for the CLI.
#[derive(Debug, Clone)]
pub enum Event {
    /// The graphs that will be written, in order.
    Plan(Vec<String>),
    Started(String),
    Finished(GraphReport),
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GraphReport {
    pub graph: String,
    pub parameters: u64,
    pub bytes: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ExportReport {
    pub bundle: PathBuf,
    pub precision: String,
    /// The weight quantization, as `inspect` shows it (`None`: float weights).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    /// The activation quantization, as `inspect` shows it (`None`: float activations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activations: Option<String>,
    pub graphs: Vec<GraphReport>,
    pub total_bytes: u64,
}

/// Every graph name the exporter knows, in export order.
pub fn known_graphs() -> Vec<&'static str> {
    Graph::ALL.iter().map(|g| g.name()).collect()
}

fn resolve_graphs(opts: &BundleOptions) -> Result<Vec<Graph>> {
    let points = Graph::Cut3rPoints;
    let wanted: Vec<Graph> = match &opts.graphs {
        None => Graph::ALL.into_iter().filter(|g| opts.cut3r_points || *g != points).collect(),
        Some(list) => list
            .iter()
            .map(|name| Graph::from_name(name).ok_or_else(|| Error::Invalid(format!("unknown graph `{name}`; known graphs: {}", known_graphs().join(", ")))))
            .collect::<Result<_>>()?,
    };
    if !opts.cut3r_points && wanted.contains(&points) {
        return Err(Error::Invalid(format!("graph `{points}` needs --cut3r-points (which also makes cut3r_step output the decoder hooks it reads)")));
    }
    if wanted.is_empty() {
        return Err(Error::Invalid("--graphs is empty; name at least one graph".into()));
    }
    // Keep the canonical order and drop duplicates.
    Ok(Graph::ALL.into_iter().filter(|g| wanted.contains(g)).collect())
}

/// Builds one bundle graph from a checkpoint (the training path builds the same graphs).
pub fn build_graph(graph: Graph, ckpt: &Checkpoint, opts: &ExportOptions) -> Result<GraphBuilder> {
    build_graph_with(graph, ckpt, opts, None)
}

/// [`build_graph`] with INT8 activations where `activations` covers the graph.
pub fn build_graph_with(graph: Graph, ckpt: &Checkpoint, opts: &ExportOptions, activations: Option<&ActivationQuant>) -> Result<GraphBuilder> {
    match graph {
        Graph::Siglip => models::siglip::graph_with(ckpt, opts, activations),
        Graph::Projector => models::projector::graph_with(ckpt, opts, activations),
        Graph::Embed => models::embed::graph(ckpt, opts),
        Graph::Decoder => models::qwen2::graph(ckpt, opts),
        Graph::Heads => models::heads::graph(ckpt, opts),
        Graph::Cut3rEncoder => models::cut3r::encoder_graph_with(ckpt, opts, activations),
        Graph::Cut3rStep => models::cut3r::step_graph(ckpt, opts),
        Graph::Cut3rPoints => models::cut3r::points_graph(ckpt, opts),
    }
}

/// Exports `checkpoint` into the bundle directory `out`.
pub fn export_bundle(checkpoint: &Path, out: &Path, opts: &BundleOptions, mut progress: impl FnMut(Event)) -> Result<ExportReport> {
    let precision =
        Precision::from_dtype(opts.precision).ok_or_else(|| Error::Invalid(format!("precision {} is not supported; use fp32 or fp16", opts.precision)))?;
    let graphs = resolve_graphs(opts)?;
    if let Some(q) = &opts.weights {
        q.check_graphs(&graphs, opts.precision)?;
    }
    if let Some(a) = &opts.activations {
        a.check_graphs(&graphs, opts.precision)?;
    }
    let _writing = OutputLock::acquire(out)?;
    check_target(out, opts.force)?;
    refuse_quantized_checkpoint(checkpoint)?;
    let ckpt = Checkpoint::open(checkpoint, opts.names.as_deref(), Requirements { cut3r_points: opts.cut3r_points })?;
    let cfg = ckpt.config();
    if let Some(size) = opts.cut3r_size {
        crate::bounds::check_cut3r_size("--cut3r-size", size, cfg.cut3r.patch_size).map_err(Error::Invalid)?;
    }
    let export_opts = ExportOptions {
        precision: opts.precision,
        pooling: opts.pooling.unwrap_or(cfg.mm_spatial_pool_mode),
        cut3r_size: opts.cut3r_size.unwrap_or((cfg.cut3r.input_size[0], cfg.cut3r.input_size[1])),
        cut3r_points: opts.cut3r_points,
        kv_cache: opts.kv_cache,
        weights: opts.weights.clone(),
    };
    progress(Event::Plan(graphs.iter().map(|g| g.name().to_string()).collect()));

    let staging = staging_dir(out)?;
    let result = write_bundle(&ckpt, &staging, &graphs, &export_opts, opts.activations.as_ref(), &mut progress);
    let reports = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if let Err(e) = swap_into_place(&staging, out) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    let total_bytes = dir_size(out);
    let quantization = opts.weights.as_ref().map(|q| q.manifest_entry(&graphs).to_string());
    let activations = match &opts.activations {
        Some(_) => Manifest::read(out).ok().and_then(|m| m.activations).map(|a| a.to_string()),
        None => None,
    };
    Ok(ExportReport { bundle: out.to_path_buf(), precision: precision.to_string(), quantization, activations, graphs: reports, total_bytes })
}

fn write_bundle(
    ckpt: &Checkpoint,
    dir: &Path,
    graphs: &[Graph],
    opts: &ExportOptions,
    activations: Option<&ActivationQuant>,
    progress: &mut impl FnMut(Event),
) -> Result<Vec<GraphReport>> {
    if let Some(a) = activations {
        check_calibrated_graphs(ckpt, dir, graphs, opts, a)?;
    }
    let mut entries = BTreeMap::new();
    let mut reports = Vec::new();
    let mut quantized_linears = 0;
    for &graph in graphs {
        let name = graph.name().to_string();
        progress(Event::Started(name.clone()));
        let start = Instant::now();
        let g = build_graph_with(graph, ckpt, opts, activations)?;
        quantized_linears += activation_quantized_linears(&g);
        let stats = g.save(dir)?;
        let file_name = graph.file_name();
        let file = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // The runtime finds graphs by the contract's file names; a builder named otherwise is a bug here.
        let data_file_name = graph.data_file_name();
        if file(&stats.onnx_path) != file_name || stats.data_path.as_deref().is_some_and(|p| file(p) != data_file_name) {
            return Err(Error::Internal(format!("the {name} graph was saved as {}, not {file_name} (exporter bug)", stats.onnx_path.display())));
        }
        entries.insert(
            name.clone(),
            GraphEntry {
                file: file_name,
                data: stats.data_path.is_some().then_some(data_file_name),
                inputs: g.inputs().iter().map(io_spec).collect(),
                outputs: g.outputs().iter().map(io_spec).collect(),
                parameters: stats.params as u64,
            },
        );
        let report =
            GraphReport { graph: name, parameters: stats.params as u64, bytes: stats.onnx_bytes + stats.data_bytes, seconds: start.elapsed().as_secs_f64() };
        progress(Event::Finished(report.clone()));
        reports.push(report);
    }
    if graphs.iter().any(|g| Graph::CUT3R.contains(g)) {
        write_cut3r_init(ckpt, &dir.join(CUT3R_INIT_FILE))?;
    }
    let (tokenizer_src, tokenizer_dst) = (ckpt.dir().join(TOKENIZER_FILE), dir.join(manifest::TOKENIZER_FILE));
    std::fs::copy(&tokenizer_src, &tokenizer_dst).map_err(|e| {
        if tokenizer_src.is_file() {
            Error::write(&tokenizer_dst, e)
        } else {
            Error::io(&tokenizer_src, e)
        }
    })?;

    let config_echo = serde_json::to_value(ckpt.config()).map_err(|e| Error::Internal(format!("serialising the config: {e}")))?;
    let tokenizer_size = tokenizer_size(&dir.join(manifest::TOKENIZER_FILE))?;
    let manifest = Manifest {
        format: manifest::FORMAT.into(),
        format_version: manifest::FORMAT_VERSION,
        producer: format!("loc3r-export {}", env!("CARGO_PKG_VERSION")),
        precision: Precision::from_dtype(opts.precision)
            .ok_or_else(|| Error::Invalid(format!("precision {} is not supported; use fp32 or fp16", opts.precision)))?,
        quantization: opts.weights.as_ref().map(|q| q.manifest_entry(graphs)),
        activations: activations.map(|a| a.manifest_entry(graphs, quantized_linears)),
        config: config_echo,
        graphs: entries,
        files: hash_files(dir)?,
        runtime: runtime_params(ckpt.config(), opts, tokenizer_size),
    };
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises") + "\n";
    let path = dir.join(manifest::MANIFEST_FILE);
    std::fs::write(&path, text).map_err(|e| Error::write(&path, e))?;
    Ok(reports)
}

/// Refuses a calibration cache measured on other graphs than the float graphs of this export:
/// each calibrated graph is built and saved float (in a scratch directory inside the staging
/// one) and its sha256 compared with the cache's. The activations' value names are only
/// meaningful for the very graph the statistics came from.
fn check_calibrated_graphs(ckpt: &Checkpoint, dir: &Path, graphs: &[Graph], opts: &ExportOptions, activations: &ActivationQuant) -> Result<()> {
    let scratch = dir.join(".float-graphs");
    std::fs::create_dir_all(&scratch).map_err(|e| Error::write(&scratch, e))?;
    let result = (|| {
        for graph in activations.graphs(graphs) {
            let stats = build_graph(graph, ckpt, opts)?.save(&scratch)?;
            let mut files = vec![stats.onnx_path.as_path()];
            files.extend(stats.data_path.as_deref());
            let sha = crate::tensorrt::compile::content_hash(&files)?;
            activations.check_float_graph(graph, &sha)?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Linears whose activation passes a QuantizeLinear/DequantizeLinear pair: MatMuls whose left
/// operand is `DequantizeLinear(QuantizeLinear(..))`.
fn activation_quantized_linears(g: &GraphBuilder) -> usize {
    let producer: std::collections::HashMap<&str, &str> =
        g.nodes().iter().flat_map(|n| n.outputs.iter().map(move |o| (o.as_str(), n.op_type.as_str()))).collect();
    let input_op = |name: &str| {
        g.nodes().iter().find(|n| n.outputs.iter().any(|o| o == name)).and_then(|n| n.inputs.first()).and_then(|i| producer.get(i.as_str()).copied())
    };
    g.nodes()
        .iter()
        .filter(|n| n.op_type == "MatMul")
        .filter_map(|n| n.inputs.first())
        .filter(|a| producer.get(a.as_str()) == Some(&"DequantizeLinear") && input_op(a) == Some("QuantizeLinear"))
        .count()
}

/// Weights are quantized once, from float: a checkpoint whose config.json carries a
/// `quantization_config` (GPTQ, AWQ, bitsandbytes, ...) holds integer weights the exporter
/// would have to dequantize and round a second time, compounding both errors.
fn refuse_quantized_checkpoint(checkpoint: &Path) -> Result<()> {
    let path = checkpoint.join("config.json");
    // Refuses FIFOs, devices and huge files like every input; a missing config is reported
    // by Checkpoint::open with its own message.
    let text = match crate::files::read_input(&path) {
        Ok(text) => text,
        Err(Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else { return Ok(()) };
    if let Some(q) = value.get("quantization_config").filter(|q| !q.is_null()) {
        let method = q.get("quant_method").and_then(|m| m.as_str()).unwrap_or("unknown method");
        return Err(Error::Config {
            file: path.display().to_string(),
            message: format!(
                "the checkpoint is already quantized ({method}); loc3r-export quantizes float weights only (--weights int8|int4), \
                 so export it from the float checkpoint it was made from"
            ),
        });
    }
    Ok(())
}

/// `state_init [1,S,Dc]` and `mem_init [1,M,2Dc]`, f32, for the runtime to start a sequence.
fn write_cut3r_init(ckpt: &Checkpoint, path: &Path) -> Result<()> {
    use crate::checkpoint::{write_safetensors, TensorToWrite};
    let (state, mem) = models::cut3r::initial_state(ckpt)?;
    let with_batch = |t: &crate::tensor::F32Tensor| [vec![1], t.shape.clone()].concat();
    let (state_shape, mem_shape) = (
        if state.shape.len() == 3 { state.shape.clone() } else { with_batch(&state) },
        if mem.shape.len() == 3 { mem.shape.clone() } else { with_batch(&mem) },
    );
    let entries = [
        TensorToWrite { name: models::cut3r::STATE_INIT.into(), dtype: DType::F32, shape: state_shape },
        TensorToWrite { name: models::cut3r::MEM_INIT.into(), dtype: DType::F32, shape: mem_shape },
    ];
    write_safetensors(path, &entries, None, |t, w| {
        let data = if t.name == models::cut3r::STATE_INIT { &state.data } else { &mem.data };
        crate::tensor::write_f32s_as(data, DType::F32, w)
    })
}

fn io_spec(v: &Value) -> IoSpec {
    IoSpec {
        name: v.name().to_string(),
        dtype: v.dtype().to_string(),
        shape: v
            .shape()
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => serde_json::json!(n),
                Dim::Sym(s) => serde_json::json!(s),
            })
            .collect(),
    }
}

fn tokenizer_size(path: &Path) -> Result<u32> {
    crate::files::require_regular_file(path)?;
    let tok = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Invalid(format!("{}: cannot load tokenizer: {e}", path.display())))?;
    Ok(tok.get_vocab_size(true) as u32)
}

/// The runtime's parameters (docs/bundle.md §2, docs/prompt.md, docs/cut3r.md §1).
pub fn runtime_params(cfg: &Config, opts: &ExportOptions, tokenizer_size: u32) -> RuntimeParams {
    let v = &cfg.vision_config;
    let l = &cfg.loc3r;
    let pooled = crate::config::pooled_side(cfg.vision_grid(), opts.pooling, cfg.mm_spatial_pool_stride);
    RuntimeParams {
        frames: l.num_frames,
        vision: manifest::VisionParams {
            image_size: v.image_size,
            patch_size: v.patch_size,
            grid: cfg.vision_grid(),
            pooling: match opts.pooling {
                PoolMode::Bilinear => Pooling::Bilinear,
                PoolMode::Average => Pooling::Average,
            },
            pooled_grid: pooled,
            tokens_per_frame: pooled * (pooled + 1),
            resample: "bicubic".into(),
            rescale: 1.0 / 255.0,
            mean: [0.5; 3],
            std: [0.5; 3],
        },
        cut3r: manifest::Cut3rParams {
            width: opts.cut3r_size.0,
            height: opts.cut3r_size.1,
            patch_size: cfg.cut3r.patch_size,
            long_side: l.cut3r_long_side,
            mean: [0.5; 3],
            std: [0.5; 3],
            state_tokens: cfg.cut3r.state_size,
            memory_tokens: cfg.cut3r.local_mem_size,
            dim: cfg.cut3r.dec_embed_dim,
        },
        llm: manifest::LlmParams {
            hidden_size: cfg.hidden_size,
            num_layers: cfg.num_hidden_layers,
            num_kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim(),
            vocab_size: cfg.vocab_size,
            max_positions: cfg.tokenizer_model_max_length.unwrap_or(cfg.max_position_embeddings).min(cfg.max_position_embeddings),
            kv_cache: opts.kv_cache,
        },
        prompt: manifest::PromptParams {
            system: "You are a helpful assistant.".into(),
            chat_template: "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n".into(),
            user_template: "<image>\n{time}\n{situation}<Pos><Ori>{question}".into(),
            image_placeholder: "<image>".into(),
            add_time_instruction: cfg.add_time_instruction,
            time_instruction: "The video lasts for {video_time} seconds, and {num_frames} frames are uniformly sampled from it. These frames are located at {timestamps}.Please answer the following questions related to this video.".into(),
            default_situation: l.default_situation.clone(),
        },
        tokens: manifest::TokenIds {
            endoftext: l.endoftext_token_id,
            im_start: l.im_start_token_id,
            im_end: l.im_end_token_id,
            pos: l.pos_token_id,
            ori: l.ori_token_id,
            tokenizer_size,
            stop: vec![l.im_end_token_id, l.endoftext_token_id],
        },
        orientation: manifest::OrientationParams { bins: l.orientation_bins, sigma_deg: l.orientation_sigma_deg },
    }
}

/// sha256 and size of every file in `dir` (sorted by name), the bundle being written: reading
/// it back failing is a failure of the output.
pub fn hash_files(dir: &Path) -> Result<BTreeMap<String, FileEntry>> {
    let mut out = BTreeMap::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::write(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != manifest::MANIFEST_FILE))
        .collect();
    names.sort();
    for path in names {
        let (sha256, bytes) = sha256_of(&path).map_err(|e| match e {
            Error::Io { path, error } => Error::Write { path, error },
            other => other,
        })?;
        out.insert(path.file_name().expect("file").to_string_lossy().into_owned(), FileEntry { sha256, bytes });
    }
    Ok(out)
}

/// Streams a file through sha256.
pub fn sha256_of(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// `out` may be absent, empty, or an existing bundle; anything else needs `--force`.
fn check_target(out: &Path, force: bool) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(Error::Invalid(format!("{}: exists and is not a directory; choose another --out", out.display())));
    }
    let empty = std::fs::read_dir(out).map_err(|e| Error::write(out, e))?.next().is_none();
    let is_bundle = out.join(manifest::MANIFEST_FILE).is_file();
    if empty || is_bundle || force {
        return Ok(());
    }
    Err(Error::Invalid(format!("{}: exists and is not a loc3r bundle (no manifest.json); refusing to replace it (use --force to overwrite)", out.display())))
}

/// Held while an export writes `out`: a second export to the same directory is refused
/// with a clear error instead of racing the first one's final rename. An advisory `flock`
/// on `.<name>.lock` next to `out`; the kernel drops it when the process ends, however it
/// ends, so a crashed export never blocks the next. The (empty) lock file stays: removing
/// it would let an export that already opened it lock a file nobody else sees.
pub struct OutputLock {
    _file: std::fs::File,
}

impl OutputLock {
    pub fn acquire(out: &Path) -> Result<OutputLock> {
        use std::os::fd::AsRawFd;
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| Error::write(parent, e))?;
        let stem = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "bundle".into());
        let path = parent.join(format!(".{stem}.lock"));
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::write(&path, e))?;
        // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                return Err(Error::Invalid(format!(
                    "another export is writing {} (it holds {}); wait for it to finish or choose another --out",
                    out.display(),
                    path.display()
                )));
            }
            return Err(Error::write(&path, e));
        }
        Ok(OutputLock { _file: file })
    }
}

fn staging_dir(out: &Path) -> Result<PathBuf> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::write(parent, e))?;
    let stem = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "bundle".into());
    let staging = parent.join(format!(".{stem}.partial-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| Error::write(&staging, e))?;
    }
    std::fs::create_dir(&staging).map_err(|e| Error::write(&staging, e))?;
    Ok(staging)
}

/// Renames a finished staging directory to `out`, replacing an older one only once the new
/// one is complete (bundles, and compiled engine directories).
pub(crate) fn swap_into_place(staging: &Path, out: &Path) -> Result<()> {
    if out.exists() {
        let old = staging.with_extension("old");
        std::fs::rename(out, &old).map_err(|e| Error::write(out, e))?;
        std::fs::rename(staging, out).map_err(|e| Error::write(out, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| Error::write(&old, e))?;
    } else {
        std::fs::rename(staging, out).map_err(|e| Error::write(out, e))?;
    }
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}
