//! ONNX Runtime sessions for bundle graphs on a chosen device, with errors that name the
//! graph. A GPU device whose execution provider cannot be registered is an error: there
//! is never a silent fallback to the CPU.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use ort::ep::{self, ExecutionProvider};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;

use crate::error::{Error, Result};

/// Where graphs run.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Device {
    #[default]
    Cpu,
    /// CUDA execution provider on a GPU.
    Cuda { device_id: i32 },
    /// TensorRT execution provider (engines cached in `cache_dir`).
    TensorRt { device_id: i32, fp16: bool, cache_dir: PathBuf },
}

impl FromStr for Device {
    type Err = Error;
    fn from_str(s: &str) -> Result<Device> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda { device_id: 0 }),
            "tensorrt" => Ok(Device::TensorRt { device_id: 0, fp16: true, cache_dir: PathBuf::from("engines/tensorrt") }),
            other => Err(Error::Input(format!("unknown device `{other}`; use cpu, cuda or tensorrt"))),
        }
    }
}

impl Device {
    pub fn name(&self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda { .. } => "cuda",
            Device::TensorRt { .. } => "tensorrt",
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
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { device: Device::Cpu, intra_threads: 0, optimization_level: 3, frame_batch: 8, prefill_chunk: 512 }
    }
}

fn register(builder: SessionBuilder, device: &Device, bundle_dir: &Path) -> std::result::Result<SessionBuilder, ort::Error> {
    let provider = match device {
        Device::Cpu => return Ok(builder),
        Device::Cuda { device_id } => ep::CUDA::default().with_device_id(*device_id).build().error_on_failure(),
        Device::TensorRt { device_id, fp16, cache_dir } => {
            let dir = if cache_dir.is_absolute() { cache_dir.clone() } else { bundle_dir.join(cache_dir) };
            ep::TensorRT::default()
                .with_device_id(*device_id)
                .with_fp16(*fp16)
                .with_engine_cache(true)
                .with_engine_cache_path(dir.display())
                .build()
                .error_on_failure()
        }
    };
    builder.with_execution_providers([provider]).map_err(ort::Error::<()>::from)
}

/// Loads the graph at `path`.
pub fn load(path: &Path, opts: &SessionOptions) -> Result<Session> {
    let env = crate::ort_env::environment()?;
    let graph = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let err = |e: ort::Error| Error::ort(format!("loading {graph}"), e);
    let level = match opts.optimization_level {
        0 => GraphOptimizationLevel::Disable,
        1 => GraphOptimizationLevel::Level1,
        2 => GraphOptimizationLevel::Level2,
        _ => GraphOptimizationLevel::Level3,
    };
    let mut builder = Session::builder(env).map_err(err)?.with_optimization_level(level).map_err(|e| err(ort::Error::<()>::from(e)))?;
    if opts.intra_threads > 0 {
        builder = builder.with_intra_threads(opts.intra_threads).map_err(|e| err(ort::Error::<()>::from(e)))?;
    }
    let bundle_dir = path.parent().unwrap_or(Path::new("."));
    let mut builder =
        register(builder, &opts.device, bundle_dir).map_err(|source| Error::DeviceUnavailable { device: opts.device.name().to_string(), source })?;
    builder.commit_from_file(path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_devices_register_where_built_in_and_fail_clearly_elsewhere() {
        let missing = std::env::temp_dir().join("loc3r-no-such-graph.onnx");
        for device in [Device::Cuda { device_id: 0 }, "tensorrt".parse().unwrap()] {
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
