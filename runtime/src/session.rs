//! ONNX Runtime sessions for bundle graphs on a chosen device, with errors that name the
//! graph. A GPU device whose execution provider cannot be registered is an error: there
//! is never a silent fallback to the CPU.

use std::path::Path;
use std::str::FromStr;

use ort::ep::{self, ExecutionProvider};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;

use loc3r_bundle::engines::{self, EngineTarget};

use crate::error::{Error, Result};

/// Where graphs run.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Device {
    #[default]
    Cpu,
    /// CUDA execution provider on a GPU (uses `engines/<key>/` from `loc3r-export compile
    /// --target cuda` when present, the bundle's graphs otherwise).
    Cuda { device_id: i32 },
    /// ONNX Runtime's TensorRT execution provider, running the engines `loc3r-export compile
    /// --target tensorrt-fp16` wrote for this machine.
    TensorRt { device_id: i32 },
    /// The TensorRT-RTX plugin execution provider (RTX GPUs), with `--target tensorrt-rtx` engines.
    TensorRtRtx { device_id: i32 },
}

impl FromStr for Device {
    type Err = Error;
    fn from_str(s: &str) -> Result<Device> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda { device_id: 0 }),
            "tensorrt" => Ok(Device::TensorRt { device_id: 0 }),
            "tensorrt-rtx" => Ok(Device::TensorRtRtx { device_id: 0 }),
            other => Err(Error::Input(format!("unknown device `{other}`; use cpu, cuda, tensorrt or tensorrt-rtx"))),
        }
    }
}

impl Device {
    pub fn name(&self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda { .. } => "cuda",
            Device::TensorRt { .. } => "tensorrt",
            Device::TensorRtRtx { .. } => "tensorrt-rtx",
        }
    }

    /// The GPU index (CPU: none).
    pub fn device_id(&self) -> Option<i32> {
        match self {
            Device::Cpu => None,
            Device::Cuda { device_id } | Device::TensorRt { device_id } | Device::TensorRtRtx { device_id } => Some(*device_id),
        }
    }

    /// The kind of compiled models this device runs (`engines/<key>/`).
    pub fn engine_target(&self) -> Option<EngineTarget> {
        match self {
            Device::Cpu => None,
            Device::Cuda { .. } => Some(EngineTarget::Cuda),
            Device::TensorRt { .. } => Some(EngineTarget::TensorrtFp16),
            Device::TensorRtRtx { .. } => Some(EngineTarget::TensorrtRtx),
        }
    }

    /// Whether the loaded ONNX Runtime was built with this device's execution provider
    /// (onnxruntime-gpu for CUDA and TensorRT). Sessions can still fail to open on such a
    /// build, e.g. without a GPU or its driver: that is [`Error::DeviceUnavailable`] too.
    pub fn provider_built_in(&self) -> Result<bool> {
        crate::ort_env::init()?;
        let built_in = match self {
            Device::Cpu => Ok(true),
            Device::Cuda { .. } => ep::CUDA::is_available(),
            Device::TensorRt { .. } => ep::TensorRT::is_available(),
            // A plugin: "built in" means its library is where the runtime looks for it.
            Device::TensorRtRtx { .. } => {
                let library = &crate::ort_env::init()?.library;
                Ok(loc3r_bundle::gpu::provider_library(EngineTarget::TensorrtRtx, library).is_ok())
            }
        };
        built_in.map_err(|e| Error::ort("listing the execution providers", e))
    }
}

/// Session settings, and how much work one graph call may take (which bounds memory: ONNX
/// Runtime keeps each session's largest activations allocated, so one call over 32 frames or
/// 5000 prompt tokens would pin gigabytes for the life of the process).
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub device: Device,
    /// Intra-op threads (0 = ONNX Runtime's default: one per core).
    pub intra_threads: usize,
    /// Graph optimisation level 0..=3 (disable, basic, extended, all).
    pub optimization_level: u8,
    /// Frames per call of the per-frame encoders (`cut3r_encoder`, `siglip`, `projector`);
    /// 0 = all frames in one call. Results agree to float rounding.
    pub frame_batch: usize,
    /// Prompt positions per decoder call when prefilling (later chunks attend to the earlier
    /// ones through the KV cache); 0 = the whole prompt in one call. Results agree to float
    /// rounding.
    pub prefill_chunk: usize,
    /// On a TensorRT device without compiled engines for this machine, build them while
    /// loading (minutes per graph, implicit profiles that rebuild when calls grow) instead of
    /// refusing. For development only: production runs `loc3r-export compile` first.
    pub allow_build: bool,
    /// Write ONNX Runtime's per-node profile of every graph under this directory
    /// (`<graph>_<timestamp>.json`, written when the session closes): the operators, their
    /// input shapes and times, from which tools/flops counts each stage's arithmetic. Slows
    /// every call down; for measurements only.
    pub profile: Option<std::path::PathBuf>,
    /// Graphs with INT8 activations (`loc3r-export --activations int8`) on the CPU: run them
    /// with ONNX Runtime's fused integer kernels (optimisation level 2+) instead of the exact
    /// QDQ arithmetic of level 1. Faster, but on x86 without VNNI those kernels sum u8·s8 pairs
    /// in 16 bits, which saturate (docs/quantization.md §6.5 measures 8–14% encoder error), so
    /// the default keeps the arithmetic TensorRT's int8 kernels compute and the gates measure.
    pub int8_kernels: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            device: Device::Cpu,
            intra_threads: 0,
            optimization_level: 3,
            frame_batch: 8,
            prefill_chunk: 512,
            allow_build: false,
            profile: None,
            int8_kernels: false,
        }
    }
}

/// How a graph is loaded on a GPU device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The bundle's own ONNX graph (CPU, CUDA, or a TensorRT build at load time).
    Graph,
    /// A model `loc3r-export compile` wrote: an EP-context model (TensorRT) or a pre-optimized
    /// graph (CUDA). Its engine is deserialized, never rebuilt.
    Compiled,
}

fn register(builder: SessionBuilder, device: &Device, bundle_dir: &Path, source: Source) -> std::result::Result<SessionBuilder, ort::Error> {
    let provider = match device {
        Device::Cpu => return Ok(builder),
        Device::Cuda { device_id } => ep::CUDA::default().with_device_id(*device_id).build().error_on_failure(),
        Device::TensorRt { device_id } => {
            let provider = ep::TensorRT::default().with_device_id(*device_id);
            let provider = match source {
                // The context model names its engine; nothing is built.
                Source::Compiled => provider,
                // Building at load: keep what was built, beside the compiled targets, under a
                // dot name that never passes for a compiled target directory.
                Source::Graph => provider
                    .with_fp16(false)
                    .with_engine_cache(true)
                    .with_engine_cache_path(bundle_dir.join(engines::ENGINES_DIR).join(".built-at-load").display())
                    .with_timing_cache(true),
            };
            provider.build().error_on_failure()
        }
        Device::TensorRtRtx { device_id } => return register_rtx(builder, *device_id),
    };
    builder.with_execution_providers([provider]).map_err(ort::Error::<()>::from)
}

/// The TensorRT-RTX provider is a plugin: its library is registered with the environment,
/// and sessions pick the device it offers.
fn register_rtx(builder: SessionBuilder, device_id: i32) -> std::result::Result<SessionBuilder, ort::Error> {
    static REGISTERED: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    let env = crate::ort_env::environment().map_err(|e| ort::Error::new(e.to_string()))?;
    let library = crate::ort_env::init().map_err(|e| ort::Error::new(e.to_string()))?.library.clone();
    REGISTERED
        .get_or_init(|| {
            let plugin = loc3r_bundle::gpu::provider_library(EngineTarget::TensorrtRtx, &library).map_err(|e| e.to_string())?;
            env.register_ep_library("loc3r-tensorrt-rtx", &plugin).map_err(|e| e.to_string())
        })
        .clone()
        .map_err(ort::Error::new)?;
    let device = env
        .devices()
        .filter(|d| d.ep().is_ok_and(|name| name == RTX_PROVIDER))
        .nth(usize::try_from(device_id).unwrap_or(usize::MAX))
        .ok_or_else(|| ort::Error::new(format!("the TensorRT-RTX provider offers no GPU {device_id} here")))?;
    builder.with_devices([device], None).map_err(ort::Error::<()>::from)
}

/// The name ONNX Runtime gives the TensorRT-RTX plugin's provider.
const RTX_PROVIDER: &str = "NvTensorRTRTXExecutionProvider";

/// Loads the graph at `path`.
pub fn load(path: &Path, opts: &SessionOptions) -> Result<Session> {
    load_from(path, opts, Source::Graph, opts.optimization_level)
}

/// Loads a model `loc3r-export compile` wrote (an EP-context model or a pre-optimized graph),
/// with ONNX Runtime's graph optimizations off: they ran at compile time.
pub fn load_compiled(path: &Path, opts: &SessionOptions) -> Result<Session> {
    load_from(path, opts, Source::Compiled, 0).map_err(|e| match e {
        Error::Ort { context, source } => {
            Error::Ort { context: format!("{context} (a compiled engine: corrupt, or built by another TensorRT; recompile with loc3r-export compile)"), source }
        }
        other => other,
    })
}

fn load_from(path: &Path, opts: &SessionOptions, source: Source, optimization_level: u8) -> Result<Session> {
    let env = crate::ort_env::environment()?;
    let graph = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let err = |e: ort::Error| Error::ort(format!("loading {graph}"), e);
    let level = match optimization_level {
        0 => GraphOptimizationLevel::Disable,
        1 => GraphOptimizationLevel::Level1,
        2 => GraphOptimizationLevel::Level2,
        _ => GraphOptimizationLevel::Level3,
    };
    let mut builder = Session::builder(env).map_err(err)?.with_optimization_level(level).map_err(|e| err(ort::Error::<()>::from(e)))?;
    if opts.intra_threads > 0 {
        builder = builder.with_intra_threads(opts.intra_threads).map_err(|e| err(ort::Error::<()>::from(e)))?;
    }
    if let Some(dir) = &opts.profile {
        std::fs::create_dir_all(dir).map_err(|e| err(ort::Error::new(format!("creating the profile directory {}: {e}", dir.display()))))?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        builder = builder.with_profiling(dir.join(stem)).map_err(|e| err(ort::Error::<()>::from(e)))?;
    }
    // Compiled models live in engines/<key>/; their bundle is two levels up.
    let parent = path.parent().unwrap_or(Path::new("."));
    let bundle_dir = match source {
        Source::Graph => parent,
        Source::Compiled => parent.parent().and_then(Path::parent).unwrap_or(parent),
    };
    let mut builder =
        register(builder, &opts.device, bundle_dir, source).map_err(|source| Error::DeviceUnavailable { device: opts.device.name().to_string(), source })?;
    builder.commit_from_file(path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_devices_register_where_built_in_and_fail_clearly_elsewhere() {
        let missing = std::env::temp_dir().join("loc3r-no-such-graph.onnx");
        for device in [Device::Cuda { device_id: 0 }, "tensorrt".parse().unwrap(), "tensorrt-rtx".parse().unwrap()] {
            let opts = SessionOptions { device: device.clone(), ..SessionOptions::default() };
            let e = load(&missing, &opts).unwrap_err();
            if device.provider_built_in().unwrap() {
                // The provider registers; what fails is reading the missing graph.
                assert!(matches!(e, Error::Ort { .. }), "{}: {e}", device.name());
            } else {
                assert!(matches!(e, Error::DeviceUnavailable { .. }), "{}: {e}", device.name());
                assert!(e.to_string().contains(device.name()) && e.to_string().contains("not available"), "{e}");
                assert_eq!(e.fault(), crate::error::Fault::Runtime);
            }
        }
        assert!(Device::Cpu.provider_built_in().unwrap());
        let e = "gpu".parse::<Device>().unwrap_err();
        assert_eq!(e.fault(), crate::error::Fault::Input, "{e}");
    }
}
