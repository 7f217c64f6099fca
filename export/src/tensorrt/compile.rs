//! `loc3r-export compile --bundle B --target tensorrt-fp16|tensorrt-rtx|cuda`: builds, ahead of
//! time, what the runtime loads on a GPU, so that no engine is built on the robot's first
//! request.
//!
//! For the TensorRT targets every graph becomes an EP-context model (`<graph>_ctx.onnx`: the
//! graph's inputs and outputs around one node that names the serialized engine, which ONNX
//! Runtime deserializes instead of parsing and building). For `cuda` every graph is saved
//! after ONNX Runtime's graph optimizations for the CUDA provider (`<graph>_opt.onnx`).
//!
//! The steps, per bundle:
//! 1. lint every graph for the target (TensorRT targets) and stop on errors;
//! 2. one optimization profile per graph from the manifest and the limits ([`super::profile`]);
//! 3. probe the machine (provider library, driver and GPU, CUDA, TensorRT): the target key;
//! 4. per graph, create a session from the bundle's file with the options of
//!    [`provider_options`] and [`session_entries`]: this builds the engine and writes the
//!    EP-context model into a staging directory; then check that the context model is one
//!    engine node (TensorRT took the whole graph);
//! 5. write `compiled.json` and rename the staging directory to `engines/<target-key>/`, so an
//!    interrupted compile never leaves a half-written engine directory.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use loc3r_bundle::engines::{self, CompiledGraph, CompiledRecord, Corner, EngineTarget, Profile, TargetFacts};
use loc3r_bundle::manifest::{FileEntry, Manifest};
use sha2::{Digest, Sha256};

use super::lint::{lint_bundle, render, LintOptions};
use super::profile::{bundle_profiles, ProfileLimits};
use super::{read_graph, LintTarget, TrtVersion};
use crate::bundle::swap_into_place;
use crate::error::{Error, Result};

/// The name ONNX Runtime registers the TensorRT-RTX plugin's provider under.
pub const RTX_PROVIDER: &str = "NvTensorRTRTXExecutionProvider";
/// Weights at or above this size make the TensorRT provider hand initializers to the parser
/// directly (`trt_load_user_initializer`): serialized inline, the subgraph would exceed the
/// 2 GiB protobuf limit.
const USER_INITIALIZER_THRESHOLD: u64 = 2 << 30;

/// What to compile for.
#[derive(Debug, Clone, Copy)]
pub struct CompileOptions {
    pub target: EngineTarget,
    /// The CUDA device to build on (engines are built for its architecture).
    pub device_id: i32,
    pub limits: ProfileLimits,
    /// TensorRT's builder optimization level, 0–5 (higher: slower build, faster engine).
    pub builder_optimization_level: u8,
}

/// One graph to compile.
#[derive(Debug, Clone)]
pub struct GraphPlan {
    pub graph: String,
    /// The bundle's `<graph>.onnx`.
    pub source: PathBuf,
    /// Its external data, if any.
    pub data: Option<PathBuf>,
    /// sha256 over the `.onnx` then the `.onnx.data` bytes.
    pub source_sha256: String,
    pub weight_bytes: u64,
    pub profile: Profile,
}

impl GraphPlan {
    /// The engine file stem: graph name plus content hash. ONNX Runtime's own cache key
    /// ignores weight values, so two bundles with the same graph structure would share one.
    pub fn engine_prefix(&self) -> String {
        format!("{}-{}", self.graph, &self.source_sha256[..16])
    }
}

/// Where a compile writes.
#[derive(Debug, Clone)]
pub struct CompilePaths {
    /// The staging directory that becomes `engines/<key>/`.
    pub staging: PathBuf,
    /// The timing cache (kept across compiles and interruptions: it only makes builds faster).
    pub timing: PathBuf,
}

/// The provider options `plan` is compiled with, in the order they are set. Everything that
/// reaches ONNX Runtime goes through this list, so the unit tests see exactly what a GPU build
/// would use.
pub fn provider_options(target: EngineTarget, plan: &GraphPlan, paths: &CompilePaths, opts: &CompileOptions) -> Vec<(String, String)> {
    let mut options: Vec<(&str, String)> = Vec::new();
    let has_profile = !plan.profile.inputs.is_empty();
    match target {
        EngineTarget::TensorrtFp16 => {
            options.push(("device_id", opts.device_id.to_string()));
            // Precision comes from the graph: with fp16, bf16 and int8 off, the provider builds a
            // strongly typed network, so the exporter's fp32 islands stay fp32.
            options.push(("trt_fp16_enable", "0".into()));
            options.push(("trt_bf16_enable", "0".into()));
            options.push(("trt_int8_enable", "0".into()));
            options.push(("trt_engine_cache_enable", "1".into()));
            // Relative: resolved under the context model's directory, which must contain it.
            options.push(("trt_engine_cache_path", engines::ENGINE_SUBDIR.into()));
            options.push(("trt_engine_cache_prefix", plan.engine_prefix()));
            options.push(("trt_timing_cache_enable", "1".into()));
            options.push(("trt_timing_cache_path", paths.timing.display().to_string()));
            options.push(("trt_force_timing_cache", "0".into()));
            options.push(("trt_dump_ep_context_model", "1".into()));
            options.push(("trt_ep_context_file_path", paths.staging.join(target.model_file(&plan.graph)).display().to_string()));
            // 0: the context node names the engine file; 1 would embed it and hit the 2 GiB limit.
            options.push(("trt_ep_context_embed_mode", "0".into()));
            options.push(("trt_builder_optimization_level", opts.builder_optimization_level.to_string()));
            options.push(("trt_detailed_build_log", "1".into()));
            options.push(("trt_engine_hw_compatible", "0".into()));
            if has_profile {
                options.push(("trt_profile_min_shapes", plan.profile.shapes(Corner::Min)));
                options.push(("trt_profile_opt_shapes", plan.profile.shapes(Corner::Opt)));
                options.push(("trt_profile_max_shapes", plan.profile.shapes(Corner::Max)));
            }
            if plan.weight_bytes >= USER_INITIALIZER_THRESHOLD {
                options.push(("trt_load_user_initializer", "1".into()));
            }
        }
        EngineTarget::TensorrtRtx => {
            options.push(("device_id", opts.device_id.to_string()));
            if has_profile {
                options.push(("nv_profile_min_shapes", plan.profile.shapes(Corner::Min)));
                options.push(("nv_profile_opt_shapes", plan.profile.shapes(Corner::Opt)));
                options.push(("nv_profile_max_shapes", plan.profile.shapes(Corner::Max)));
            }
            // TensorRT-RTX compiles kernels just in time on first use; this keeps them.
            options.push(("nv_runtime_cache_path", paths.timing.display().to_string()));
        }
        EngineTarget::Cuda => {
            options.push(("device_id", opts.device_id.to_string()));
        }
    }
    options.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// The session configuration entries of a compile.
pub fn session_entries(target: EngineTarget, plan: &GraphPlan, paths: &CompilePaths) -> Vec<(String, String)> {
    let entries: Vec<(&str, String)> = match target {
        // A node TensorRT does not take must fail the compile, not run on the CPU.
        EngineTarget::TensorrtFp16 => vec![("session.disable_cpu_ep_fallback", "1".into())],
        EngineTarget::TensorrtRtx => vec![
            ("session.disable_cpu_ep_fallback", "1".into()),
            ("ep.context_enable", "1".into()),
            ("ep.context_file_path", paths.staging.join(target.model_file(&plan.graph)).display().to_string()),
            ("ep.context_embed_mode", "0".into()),
        ],
        // The CUDA provider places shape computations on the CPU on purpose: no fallback ban.
        EngineTarget::Cuda => vec![
            ("session.optimized_model_external_initializers_file_name", format!("{}.data", target.model_file(&plan.graph))),
            ("session.optimized_model_external_initializers_min_size_in_bytes", "1024".into()),
        ],
    };
    entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Progress of a compile, for the command line.
#[derive(Debug, Clone)]
pub enum CompileEvent {
    /// The graphs that will be compiled, in order.
    Plan(Vec<String>),
    Started(String),
    Finished {
        graph: String,
        seconds: f64,
    },
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CompileReport {
    pub engine_dir: PathBuf,
    pub key: String,
    pub target: EngineTarget,
    pub graphs: Vec<(String, f64)>,
}

/// sha256 over the bytes of every file in `files`, in order.
pub fn content_hash(files: &[&Path]) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for path in files {
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        loop {
            let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Everything that can be decided without a GPU: the lint verdict and the plans (profiles and
/// content hashes) of every graph.
pub fn plan(bundle: &Path, opts: &CompileOptions) -> Result<(Manifest, Vec<GraphPlan>)> {
    if !bundle.is_dir() {
        return Err(Error::Invalid(format!("--bundle {}: not a directory; name a bundle written by loc3r-export export", bundle.display())));
    }
    let manifest = Manifest::read(bundle).map_err(|e| Error::Invalid(format!("{e}; name a bundle written by loc3r-export export")))?;
    let lint_target = match opts.target {
        EngineTarget::TensorrtFp16 => Some(LintTarget::Tensorrt),
        EngineTarget::TensorrtRtx => Some(LintTarget::TensorrtRtx),
        EngineTarget::Cuda => None,
    };
    if let Some(target) = lint_target {
        let report = lint_bundle(bundle, &LintOptions { target, tensorrt: TrtVersion::DEFAULT, limits: Some(opts.limits) })?;
        if !report.passed() {
            return Err(Error::Invalid(format!(
                "the bundle is not compatible with {target} ({} lint error(s)); nothing was compiled:\n{}",
                report.errors(),
                render(&report)
            )));
        }
    }
    let profiles = bundle_profiles(&manifest, &opts.limits)?;
    let mut plans = Vec::new();
    for (graph, entry) in &manifest.graphs {
        let source = bundle.join(&entry.file);
        let data = entry.data.as_ref().map(|d| bundle.join(d));
        let mut files = vec![source.as_path()];
        files.extend(data.as_deref());
        let source_sha256 = content_hash(&files)?;
        let weight_bytes = data.as_deref().map_or(0, |d| std::fs::metadata(d).map_or(0, |m| m.len()));
        let profile = profiles.get(graph).cloned().unwrap_or_default();
        plans.push(GraphPlan { graph: graph.clone(), source, data, source_sha256, weight_bytes, profile });
    }
    Ok((manifest, plans))
}

/// Compiles every graph of `bundle` into `<bundle>/engines/<target-key>/`.
pub fn compile_bundle(bundle: &Path, opts: &CompileOptions, mut progress: impl FnMut(CompileEvent)) -> Result<CompileReport> {
    let (_manifest, plans) = plan(bundle, opts)?;
    let ort = loc3r_bundle::ort_env::init().map_err(|e| Error::Runtime(e.to_string()))?;
    let facts = loc3r_bundle::gpu::probe(opts.target, opts.device_id, &ort.library).map_err(|e| match e {
        loc3r_bundle::gpu::ProbeError::Missing(m) => Error::ProviderMissing(m.to_string()),
        loc3r_bundle::gpu::ProbeError::Unusable(u) => Error::Runtime(u.to_string()),
    })?;
    let key = facts.key(opts.target);
    let engines_dir = bundle.join(engines::ENGINES_DIR);
    let timing = engines_dir.join(format!(".timing-{key}"));
    std::fs::create_dir_all(&timing).map_err(|e| Error::write(&timing, e))?;
    progress(CompileEvent::Plan(plans.iter().map(|p| p.graph.clone()).collect()));
    let (target_dir, record) = write_staged(&engines_dir, &key, |staging| {
        let paths = CompilePaths { staging: staging.to_path_buf(), timing: timing.clone() };
        let graphs = build_all(&plans, opts, &paths, &ort.library, &mut progress)?;
        let record = CompiledRecord {
            format: engines::RECORD_FORMAT.into(),
            format_version: engines::RECORD_FORMAT_VERSION,
            producer: format!("loc3r-export {}", env!("CARGO_PKG_VERSION")),
            target: opts.target,
            key: key.clone(),
            facts: facts.clone(),
            limits: opts.limits.as_map(),
            graphs,
        };
        let path = staging.join(engines::RECORD_FILE);
        let text = serde_json::to_string_pretty(&record).expect("the record serialises") + "\n";
        std::fs::write(&path, text).map_err(|e| Error::write(&path, e))?;
        Ok(record)
    })?;
    Ok(CompileReport { engine_dir: target_dir, key, target: opts.target, graphs: record.graphs.iter().map(|(g, c)| (g.clone(), c.build_seconds)).collect() })
}

/// Runs `fill` on a fresh staging directory `engines_dir/.<key>.partial-<pid>` and, when it
/// succeeds, renames that directory to `engines_dir/<key>` (replacing an older compile only
/// then). When `fill` fails (or the process dies), `<key>` is untouched: the staging directory
/// is removed, or left under a dot name that no reader takes for a compiled target.
pub fn write_staged<T>(engines_dir: &Path, key: &str, fill: impl FnOnce(&Path) -> Result<T>) -> Result<(PathBuf, T)> {
    let staging = engines_dir.join(format!(".{key}.partial-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| Error::write(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| Error::write(&staging, e))?;
    let value = match fill(&staging) {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let target = engines_dir.join(key);
    if let Err(e) = swap_into_place(&staging, &target) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    Ok((target, value))
}

fn build_all(
    plans: &[GraphPlan],
    opts: &CompileOptions,
    paths: &CompilePaths,
    ort_library: &Path,
    progress: &mut impl FnMut(CompileEvent),
) -> Result<BTreeMap<String, CompiledGraph>> {
    let mut graphs = BTreeMap::new();
    for plan in plans {
        progress(CompileEvent::Started(plan.graph.clone()));
        let start = Instant::now();
        let options = provider_options(opts.target, plan, paths, opts);
        let entries = session_entries(opts.target, plan, paths);
        build_one(opts.target, plan, &options, &entries, paths, ort_library)?;
        let model = opts.target.model_file(&plan.graph);
        let model_path = paths.staging.join(&model);
        if opts.target != EngineTarget::Cuda {
            check_single_engine(&plan.graph, &model_path)?;
        }
        let files = written_files(&paths.staging, plan, &model)?;
        let build_seconds = start.elapsed().as_secs_f64();
        progress(CompileEvent::Finished { graph: plan.graph.clone(), seconds: build_seconds });
        graphs.insert(
            plan.graph.clone(),
            CompiledGraph { model, source_sha256: plan.source_sha256.clone(), profile: plan.profile.clone(), provider_options: options, files, build_seconds },
        );
    }
    Ok(graphs)
}

/// Creates the session that builds `plan`'s engine (and writes its compiled model).
fn build_one(
    target: EngineTarget,
    plan: &GraphPlan,
    options: &[(String, String)],
    entries: &[(String, String)],
    paths: &CompilePaths,
    ort_library: &Path,
) -> Result<()> {
    use ort::ep::ArbitrarilyConfigurableExecutionProvider;
    use ort::session::builder::GraphOptimizationLevel;
    use ort::session::Session;

    let env = loc3r_bundle::ort_env::environment().map_err(|e| Error::Runtime(e.to_string()))?;
    let fail = |e: ort::Error| Error::Compile { graph: plan.graph.clone(), message: e.to_string() };
    let level = match target {
        // The same level the runtime loads with: node names feed the provider's cache key.
        EngineTarget::TensorrtFp16 | EngineTarget::TensorrtRtx => GraphOptimizationLevel::Level1,
        EngineTarget::Cuda => GraphOptimizationLevel::Level2,
    };
    let mut builder = Session::builder(env).map_err(fail)?.with_optimization_level(level).map_err(|e| fail(e.into()))?;
    for (key, value) in entries {
        builder = builder.with_config_entry(key, value).map_err(|e| fail(e.into()))?;
    }
    builder = match target {
        EngineTarget::TensorrtFp16 => {
            let provider = options.iter().fold(ort::ep::TensorRT::default(), |ep, (k, v)| ep.with_arbitrary_config(k, v));
            // Registration errors (an unknown option, a provider that cannot load) must stop the
            // compile: the default would log them and continue without TensorRT.
            builder.with_execution_providers([provider.build().error_on_failure()]).map_err(|e| fail(e.into()))?
        }
        EngineTarget::Cuda => {
            let provider = options.iter().fold(ort::ep::CUDA::default(), |ep, (k, v)| ep.with_arbitrary_config(k, v));
            let model = paths.staging.join(target.model_file(&plan.graph));
            builder
                .with_execution_providers([provider.build().error_on_failure()])
                .map_err(|e| fail(e.into()))?
                .with_optimized_model_path(&model)
                .map_err(|e| fail(e.into()))?
        }
        EngineTarget::TensorrtRtx => {
            let library = loc3r_bundle::gpu::provider_library(target, ort_library).map_err(|e| Error::ProviderMissing(e.to_string()))?;
            register_rtx_library(env, &library)?;
            let device_id: usize = options.iter().find(|(k, _)| k == "device_id").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
            let device = env.devices().filter(|d| d.ep().is_ok_and(|name| name == RTX_PROVIDER)).nth(device_id).ok_or_else(|| {
                Error::Runtime(format!(
                    "the TensorRT-RTX provider offers no device {device_id} on this machine (it supports RTX GPUs of compute capability 8.6, 8.9 and 12.0+)"
                ))
            })?;
            // Options for a device-based provider carry its name as a prefix.
            let prefixed: Vec<(String, String)> =
                options.iter().filter(|(k, _)| k != "device_id").map(|(k, v)| (format!("{RTX_PROVIDER}.{k}"), v.clone())).collect();
            builder.with_devices([device], Some(&prefixed)).map_err(|e| fail(e.into()))?
        }
    };
    // From the file path: external data and the context model's relative engine path resolve
    // against the bundle, and the provider's cache key includes the file name.
    builder.commit_from_file(&plan.source).map(drop).map_err(fail)
}

/// Registers the TensorRT-RTX plugin once per process.
fn register_rtx_library(env: &ort::environment::Environment, library: &Path) -> Result<()> {
    static REGISTERED: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            env.register_ep_library("loc3r-tensorrt-rtx", library).map_err(|e| format!("cannot load the TensorRT-RTX plugin {}: {e}", library.display()))
        })
        .clone()
        .map_err(Error::Runtime)
}

/// A context model TensorRT took whole is exactly one `EPContext` node; anything else means
/// the graph was split and the other nodes would run outside TensorRT.
pub fn check_single_engine(graph: &str, model_path: &Path) -> Result<()> {
    if !model_path.is_file() {
        return Err(Error::Compile {
            graph: graph.to_string(),
            message: format!(
                "the provider wrote no context model at {}; it builds one only when every dynamic input has a profile and the whole graph is claimed",
                model_path.display()
            ),
        });
    }
    let file = read_graph(graph, model_path)?;
    let nodes = file.model.graph.map(|g| g.node).unwrap_or_default();
    let outside: Vec<String> = nodes.iter().filter(|n| n.op_type() != "EPContext").map(|n| format!("{} ({})", n.name(), n.op_type())).collect();
    let engines = nodes.len() - outside.len();
    if outside.is_empty() && engines == 1 {
        return Ok(());
    }
    Err(Error::Partitioned { graph: graph.to_string(), engines, outside })
}

/// The files a graph's compile wrote (its model, and engine files named by its prefix), with
/// their hashes.
fn written_files(staging: &Path, plan: &GraphPlan, model: &str) -> Result<BTreeMap<String, FileEntry>> {
    let mut files = BTreeMap::new();
    let mut add = |relative: String| -> Result<()> {
        let (sha256, bytes) = crate::bundle::sha256_of(&staging.join(&relative))?;
        files.insert(relative, FileEntry { sha256, bytes });
        Ok(())
    };
    add(model.to_string())?;
    let data = format!("{model}.data");
    if staging.join(&data).is_file() {
        add(data)?;
    }
    let engine_dir = staging.join(engines::ENGINE_SUBDIR);
    if let Ok(entries) = std::fs::read_dir(&engine_dir) {
        let prefix = plan.engine_prefix();
        let mut names: Vec<String> =
            entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(&prefix)).collect();
        names.sort();
        for name in names {
            add(format!("{}/{name}", engines::ENGINE_SUBDIR))?;
        }
    }
    Ok(files)
}

/// The facts in a record, for printing.
pub fn describe(facts: &TargetFacts) -> String {
    let (major, minor) = facts.compute_capability;
    let tensorrt = facts.tensorrt.as_deref().map(|v| format!(", TensorRT {v}")).unwrap_or_default();
    format!("{} (sm{major}{minor}{tensorrt}, CUDA {}, ONNX Runtime {})", facts.gpu_name, facts.cuda, facts.onnxruntime)
}

#[cfg(test)]
mod tests {
    use loc3r_bundle::engines::InputRange;

    use super::*;

    fn plan(weight_bytes: u64, profile: Profile) -> GraphPlan {
        GraphPlan {
            graph: "decoder".into(),
            source: PathBuf::from("/b/decoder.onnx"),
            data: Some(PathBuf::from("/b/decoder.onnx.data")),
            source_sha256: "0123456789abcdef".repeat(4),
            weight_bytes,
            profile,
        }
    }

    fn profile() -> Profile {
        Profile { inputs: vec![InputRange { name: "inputs_embeds".into(), min: vec![1, 1, 64], opt: vec![1, 1, 64], max: vec![1, 2048, 64] }] }
    }

    fn opts(target: EngineTarget) -> CompileOptions {
        CompileOptions { target, device_id: 1, limits: ProfileLimits { max_frames: 64, max_prefill: 2048, max_context: 8192 }, builder_optimization_level: 3 }
    }

    fn paths() -> CompilePaths {
        CompilePaths { staging: PathBuf::from("/b/engines/.k.partial-1"), timing: PathBuf::from("/b/engines/.timing-k") }
    }

    fn get<'a>(options: &'a [(String, String)], key: &str) -> Option<&'a str> {
        options.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn tensorrt_options_are_strongly_typed_cached_by_content_and_dump_a_context_model() {
        let target = EngineTarget::TensorrtFp16;
        let options = provider_options(target, &plan(1 << 20, profile()), &paths(), &opts(target));
        for (key, want) in [
            ("device_id", "1"),
            ("trt_fp16_enable", "0"),
            ("trt_bf16_enable", "0"),
            ("trt_int8_enable", "0"),
            ("trt_engine_cache_enable", "1"),
            ("trt_engine_cache_path", "trt"),
            ("trt_engine_cache_prefix", "decoder-0123456789abcdef"),
            ("trt_timing_cache_enable", "1"),
            ("trt_timing_cache_path", "/b/engines/.timing-k"),
            ("trt_dump_ep_context_model", "1"),
            ("trt_ep_context_file_path", "/b/engines/.k.partial-1/decoder_ctx.onnx"),
            ("trt_ep_context_embed_mode", "0"),
            ("trt_builder_optimization_level", "3"),
            ("trt_profile_min_shapes", "inputs_embeds:1x1x64"),
            ("trt_profile_opt_shapes", "inputs_embeds:1x1x64"),
            ("trt_profile_max_shapes", "inputs_embeds:1x2048x64"),
        ] {
            assert_eq!(get(&options, key), Some(want), "{key}");
        }
        assert_eq!(get(&options, "trt_load_user_initializer"), None, "small weights are serialized with the subgraph");
        let mut keys: Vec<&str> = options.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), options.len(), "no option is set twice");

        let big = provider_options(target, &plan(3 << 30, Profile::default()), &paths(), &opts(target));
        assert_eq!(get(&big, "trt_load_user_initializer"), Some("1"), "weights over 2 GiB go to the parser directly");
        assert_eq!(get(&big, "trt_profile_min_shapes"), None, "static graphs need no profile");

        let entries = session_entries(target, &plan(0, profile()), &paths());
        assert_eq!(entries, vec![("session.disable_cpu_ep_fallback".to_string(), "1".to_string())]);
    }

    #[test]
    fn rtx_and_cuda_options_use_their_providers_keys() {
        let target = EngineTarget::TensorrtRtx;
        let options = provider_options(target, &plan(0, profile()), &paths(), &opts(target));
        assert_eq!(get(&options, "nv_profile_max_shapes"), Some("inputs_embeds:1x2048x64"));
        assert!(options.iter().all(|(k, _)| !k.starts_with("trt_")), "{options:?}");
        let entries = session_entries(target, &plan(0, profile()), &paths());
        assert_eq!(get(&entries, "ep.context_enable"), Some("1"));
        assert_eq!(get(&entries, "ep.context_embed_mode"), Some("0"));
        assert_eq!(get(&entries, "ep.context_file_path"), Some("/b/engines/.k.partial-1/decoder_ctx.onnx"));
        assert_eq!(get(&entries, "session.disable_cpu_ep_fallback"), Some("1"));

        let target = EngineTarget::Cuda;
        assert_eq!(provider_options(target, &plan(0, profile()), &paths(), &opts(target)), vec![("device_id".to_string(), "1".to_string())]);
        let entries = session_entries(target, &plan(0, profile()), &paths());
        assert_eq!(get(&entries, "session.optimized_model_external_initializers_file_name"), Some("decoder_opt.onnx.data"));
        assert_eq!(get(&entries, "session.disable_cpu_ep_fallback"), None);
    }

    #[test]
    fn an_interrupted_compile_leaves_no_engine_directory_and_a_finished_one_replaces_the_old() {
        let engines = tempfile::tempdir().unwrap();
        let key = "sm90_trt10.14.1_cuda13.0_ort1.31.1";
        let listing = || {
            let mut names: Vec<String> = std::fs::read_dir(engines.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            names.sort();
            names
        };
        let e = write_staged(engines.path(), key, |staging| -> Result<()> {
            std::fs::write(staging.join("siglip_ctx.onnx"), b"written").unwrap();
            Err(Error::Compile { graph: "decoder".into(), message: "out of memory".into() })
        })
        .unwrap_err();
        assert!(e.to_string().contains("out of memory"));
        assert!(listing().is_empty(), "{:?}", listing());

        let (dir, ()) = write_staged(engines.path(), key, |staging| {
            std::fs::write(staging.join("old.txt"), b"first").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(dir, engines.path().join(key));
        let _ = write_staged(engines.path(), key, |staging| -> Result<()> {
            std::fs::write(staging.join("new.txt"), b"second").unwrap();
            Err(Error::Compile { graph: "heads".into(), message: "interrupted".into() })
        });
        assert!(dir.join("old.txt").is_file(), "a failed recompile keeps the previous engines");
        write_staged(engines.path(), key, |staging| {
            std::fs::write(staging.join("new.txt"), b"second").unwrap();
            Ok(())
        })
        .unwrap();
        assert!(dir.join("new.txt").is_file() && !dir.join("old.txt").exists());
        assert_eq!(listing(), vec![key.to_string()]);
    }

    #[test]
    fn a_split_graph_is_refused_naming_the_nodes_outside_tensorrt() {
        use crate::graph::proto::{GraphProto, ModelProto, NodeProto};
        use prost::Message;
        let dir = tempfile::tempdir().unwrap();
        let write = |nodes: Vec<(&str, &str)>| {
            let node = nodes.into_iter().map(|(name, op)| NodeProto { name: Some(name.into()), op_type: Some(op.into()), ..Default::default() }).collect();
            let model = ModelProto { graph: Some(GraphProto { node, ..Default::default() }), ..Default::default() };
            let path = dir.path().join("decoder_ctx.onnx");
            std::fs::write(&path, model.encode_to_vec()).unwrap();
            path
        };
        assert!(check_single_engine("decoder", &write(vec![("engine", "EPContext")])).is_ok());
        let e =
            check_single_engine("decoder", &write(vec![("engine_0", "EPContext"), ("layers.1/attn/GroupQueryAttention", "GroupQueryAttention")])).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("layers.1/attn/GroupQueryAttention (GroupQueryAttention)") && text.contains("decoder"), "{text}");
        let e = check_single_engine("decoder", &dir.path().join("absent_ctx.onnx")).unwrap_err();
        assert!(e.to_string().contains("no context model"), "{e}");
    }
}
