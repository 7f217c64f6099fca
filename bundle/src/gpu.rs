//! What this machine offers for the GPU targets: the execution provider library beside the
//! loaded ONNX Runtime, the NVIDIA driver and GPU, the CUDA runtime, TensorRT, and their
//! versions, which make up the engine target key ([`crate::engines::TargetFacts`]).
//!
//! Everything is probed with `dlopen`, in the order a user has to fix it (provider, driver,
//! CUDA runtime, TensorRT), so that a machine without one of them gets one sentence naming
//! the missing library and how to install it, never a crash inside ONNX Runtime.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};

use crate::engines::{EngineTarget, TargetFacts};

/// A library a GPU target needs is not on this machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{library} not found: {install}")]
pub struct MissingProvider {
    /// The library (or component) that is missing.
    pub library: String,
    /// How to install it.
    pub install: String,
}

/// The GPU is there but cannot be used as asked (a device index beyond the GPUs present, a
/// driver call failing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GpuUnusable(pub String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Missing(#[from] MissingProvider),
    #[error(transparent)]
    Unusable(#[from] GpuUnusable),
}

/// The ONNX Runtime provider library a target loads.
pub fn provider_library_name(target: EngineTarget) -> &'static str {
    match target {
        EngineTarget::TensorrtFp16 => "libonnxruntime_providers_tensorrt.so",
        EngineTarget::TensorrtRtx => "libonnxruntime_providers_nv_tensorrt_rtx.so",
        EngineTarget::Cuda => "libonnxruntime_providers_cuda.so",
    }
}

/// The environment variable that points at the TensorRT-RTX plugin library (it ships in its
/// own wheel, not beside ONNX Runtime).
pub const RTX_PLUGIN_ENV: &str = "LOC3R_TRT_RTX_EP";

/// Finds the provider library of `target` for the ONNX Runtime library at `ort_library`:
/// the in-tree providers (TensorRT, CUDA) sit beside it; the TensorRT-RTX plugin is named by
/// [`RTX_PLUGIN_ENV`] or sits beside it.
pub fn provider_library(target: EngineTarget, ort_library: &Path) -> Result<PathBuf, MissingProvider> {
    let name = provider_library_name(target);
    let dir = ort_library.parent().unwrap_or(Path::new("."));
    if target == EngineTarget::TensorrtRtx {
        if let Some(path) = std::env::var_os(RTX_PLUGIN_ENV).map(PathBuf::from) {
            return if path.is_file() {
                Ok(path)
            } else {
                Err(MissingProvider { library: format!("{name} (at {RTX_PLUGIN_ENV}={})", path.display()), install: rtx_install() })
            };
        }
    }
    let beside = dir.join(name);
    if beside.is_file() {
        return Ok(beside);
    }
    let install = match target {
        EngineTarget::TensorrtFp16 | EngineTarget::Cuda => format!(
            "the ONNX Runtime at {} is a build without it; install onnxruntime-gpu==1.31.1 (pip install 'onnxruntime-gpu[cuda,cudnn]==1.31.1') and set ORT_DYLIB_PATH to its onnxruntime/capi/libonnxruntime.so.1.31.1",
            ort_library.display()
        ),
        EngineTarget::TensorrtRtx => rtx_install(),
    };
    Err(MissingProvider { library: name.to_string(), install })
}

fn rtx_install() -> String {
    format!("pip install onnxruntime-ep-nv-tensorrt-rtx-cu13 and set {RTX_PLUGIN_ENV} to the libonnxruntime_providers_nv_tensorrt_rtx.so it installs")
}

/// A library opened with `dlopen` (kept open for the life of the process: ONNX Runtime's
/// providers load the same libraries, and closing them gains nothing).
struct Library(*mut c_void);

impl Library {
    fn open(names: &[&str]) -> Option<(Library, String)> {
        names.iter().find_map(|name| {
            let c = CString::new(*name).ok()?;
            // SAFETY: dlopen with a NUL-terminated name; a null handle means "not found".
            let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            (!handle.is_null()).then(|| (Library(handle), name.to_string()))
        })
    }

    /// The address of `symbol`, if the library exports it.
    fn symbol(&self, symbol: &str) -> Option<*mut c_void> {
        let c = CString::new(symbol).ok()?;
        // SAFETY: the handle is open; a null result means "not exported".
        let address = unsafe { libc::dlsym(self.0, c.as_ptr()) };
        (!address.is_null()).then_some(address)
    }
}

/// The driver's view of one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    pub name: String,
    pub compute_capability: (u32, u32),
    /// The CUDA version the driver supports, `x.y`.
    pub driver_cuda: String,
}

const CUDA_SUCCESS: c_int = 0;
const ATTRIBUTE_CC_MAJOR: c_int = 75;
const ATTRIBUTE_CC_MINOR: c_int = 76;

/// `x.y` of a CUDA version integer (13000 → 13.0).
fn cuda_version(v: c_int) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// The GPU `device_id` as the NVIDIA driver reports it.
pub fn gpu(device_id: i32) -> Result<GpuInfo, ProbeError> {
    let (driver, _) = Library::open(&["libcuda.so.1", "libcuda.so"]).ok_or_else(|| MissingProvider {
        library: "the NVIDIA driver (libcuda.so.1)".into(),
        install: "this machine has no usable NVIDIA GPU; on a GPU machine install the NVIDIA driver (r580 or newer for CUDA 13)".into(),
    })?;
    let missing = |what: &str| GpuUnusable(format!("the NVIDIA driver lacks {what}; update the driver"));
    type Init = unsafe extern "C" fn(u32) -> c_int;
    type GetInt = unsafe extern "C" fn(*mut c_int) -> c_int;
    type DeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
    type Attribute = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;
    type Name = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
    // SAFETY: the CUDA driver API's documented signatures for these entry points.
    unsafe {
        let init: Init = std::mem::transmute(driver.symbol("cuInit").ok_or_else(|| missing("cuInit"))?);
        let count: GetInt = std::mem::transmute(driver.symbol("cuDeviceGetCount").ok_or_else(|| missing("cuDeviceGetCount"))?);
        let device_get: DeviceGet = std::mem::transmute(driver.symbol("cuDeviceGet").ok_or_else(|| missing("cuDeviceGet"))?);
        let attribute: Attribute = std::mem::transmute(driver.symbol("cuDeviceGetAttribute").ok_or_else(|| missing("cuDeviceGetAttribute"))?);
        let name: Name = std::mem::transmute(driver.symbol("cuDeviceGetName").ok_or_else(|| missing("cuDeviceGetName"))?);
        let version: GetInt = std::mem::transmute(driver.symbol("cuDriverGetVersion").ok_or_else(|| missing("cuDriverGetVersion"))?);
        let status = init(0);
        if status != CUDA_SUCCESS {
            return Err(GpuUnusable(format!(
                "the NVIDIA driver cannot start (cuInit error {status}): no GPU is visible to this process (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
            ))
            .into());
        }
        let mut n = 0;
        count(&mut n);
        if device_id < 0 || device_id >= n {
            return Err(GpuUnusable(format!("--device-id {device_id}: this machine has {n} GPU(s) (ids 0..{})", n.max(1) - 1)).into());
        }
        let mut device = 0;
        if device_get(&mut device, device_id) != CUDA_SUCCESS {
            return Err(GpuUnusable(format!("the driver cannot open GPU {device_id}")).into());
        }
        let (mut major, mut minor) = (0, 0);
        attribute(&mut major, ATTRIBUTE_CC_MAJOR, device);
        attribute(&mut minor, ATTRIBUTE_CC_MINOR, device);
        let mut buffer = [0 as c_char; 256];
        name(buffer.as_mut_ptr(), buffer.len() as c_int, device);
        let mut driver_version = 0;
        version(&mut driver_version);
        Ok(GpuInfo {
            name: CStr::from_ptr(buffer.as_ptr()).to_string_lossy().into_owned(),
            compute_capability: (major as u32, minor as u32),
            driver_cuda: cuda_version(driver_version),
        })
    }
}

/// `x.y` of the CUDA runtime ONNX Runtime's GPU providers load.
pub fn cuda_runtime() -> Result<String, MissingProvider> {
    let missing = || {
        MissingProvider {
        library: "the CUDA runtime (libcudart.so.13)".into(),
        install: "pip install 'onnxruntime-gpu[cuda,cudnn]==1.31.1' (it pulls nvidia-cuda-runtime 13) or install CUDA 13, and add its lib directory to LD_LIBRARY_PATH".into(),
    }
    };
    let (cudart, _) = Library::open(&["libcudart.so.13", "libcudart.so.12", "libcudart.so"]).ok_or_else(missing)?;
    type GetInt = unsafe extern "C" fn(*mut c_int) -> c_int;
    let symbol = cudart.symbol("cudaRuntimeGetVersion").ok_or_else(missing)?;
    let mut version = 0;
    // SAFETY: cudaRuntimeGetVersion(int*) from the CUDA runtime API.
    unsafe {
        let get: GetInt = std::mem::transmute(symbol);
        get(&mut version);
    }
    Ok(cuda_version(version))
}

/// `x.y.z` of the TensorRT library (`getInferLibVersion`: major·10000 + minor·100 + patch).
fn tensorrt_version(names: &[&str], missing: MissingProvider) -> Result<String, MissingProvider> {
    let (library, _) = Library::open(names).ok_or_else(|| missing.clone())?;
    let symbol = library.symbol("getInferLibVersion").ok_or(missing)?;
    // SAFETY: `int32_t getInferLibVersion()` is exported by TensorRT and TensorRT-RTX.
    let v = unsafe {
        let get: unsafe extern "C" fn() -> i32 = std::mem::transmute(symbol);
        get()
    };
    Ok(format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100))
}

/// `x.y.z` of the loaded ONNX Runtime library.
pub fn onnxruntime_version(ort_library: &Path) -> Option<String> {
    #[repr(C)]
    struct ApiBase {
        get_api: unsafe extern "C" fn(u32) -> *const c_void,
        get_version_string: unsafe extern "C" fn() -> *const c_char,
    }
    let (library, _) = Library::open(&[ort_library.to_str()?])?;
    let symbol = library.symbol("OrtGetApiBase")?;
    // SAFETY: `const OrtApiBase* OrtGetApiBase()`, whose second member returns a static string.
    unsafe {
        let base_fn: unsafe extern "C" fn() -> *const ApiBase = std::mem::transmute(symbol);
        let base = base_fn();
        if base.is_null() {
            return None;
        }
        Some(CStr::from_ptr(((*base).get_version_string)()).to_string_lossy().into_owned())
    }
}

/// The facts of this machine for `target` on GPU `device_id`, probing in the order a user
/// fixes things: the provider library, the driver and GPU, the CUDA runtime, TensorRT.
pub fn probe(target: EngineTarget, device_id: i32, ort_library: &Path) -> Result<TargetFacts, ProbeError> {
    provider_library(target, ort_library)?;
    let gpu = gpu(device_id)?;
    let cuda = cuda_runtime()?;
    let tensorrt = match target {
        EngineTarget::TensorrtFp16 => Some(tensorrt_version(
            &["libnvinfer.so.10"],
            MissingProvider {
                library: "TensorRT 10 (libnvinfer.so.10)".into(),
                install: "pip install 'tensorrt-cu13-libs==10.*' (10.14 or newer, never 11.x), or NVIDIA's libnvinfer10 libnvonnxparsers10 libnvinfer-plugin10 packages, and add the lib directory to LD_LIBRARY_PATH".into(),
            },
        )?),
        EngineTarget::TensorrtRtx => Some(tensorrt_version(
            &["libtensorrt_rtx.so.1", "libtensorrt_rtx.so"],
            MissingProvider { library: "TensorRT-RTX (libtensorrt_rtx.so)".into(), install: rtx_install() + ", and add the wheel's library directory to LD_LIBRARY_PATH" },
        )?),
        EngineTarget::Cuda => None,
    };
    let onnxruntime = onnxruntime_version(ort_library).unwrap_or_else(|| "unknown".into());
    Ok(TargetFacts { compute_capability: gpu.compute_capability, gpu_name: gpu.name, tensorrt, cuda, onnxruntime, driver_cuda: Some(gpu.driver_cuda) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_provider_is_one_sentence_naming_the_library_and_the_fix() {
        let empty = std::env::temp_dir().join(format!("loc3r-gpu-probe-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let ort = empty.join("libonnxruntime.so");
        for (target, library, hint) in [
            (EngineTarget::TensorrtFp16, "libonnxruntime_providers_tensorrt.so", "onnxruntime-gpu"),
            (EngineTarget::Cuda, "libonnxruntime_providers_cuda.so", "onnxruntime-gpu"),
        ] {
            let e = provider_library(target, &ort).unwrap_err();
            assert_eq!(e.library, library);
            let line = e.to_string();
            assert!(line.contains(library) && line.contains(hint) && !line.contains('\n'), "{line}");
        }
        std::fs::write(empty.join("libonnxruntime_providers_tensorrt.so"), b"").unwrap();
        assert_eq!(provider_library(EngineTarget::TensorrtFp16, &ort).unwrap(), empty.join("libonnxruntime_providers_tensorrt.so"));
        std::fs::remove_dir_all(&empty).unwrap();
    }

    #[test]
    fn versions_read_as_the_libraries_encode_them() {
        assert_eq!(cuda_version(13000), "13.0");
        assert_eq!(cuda_version(12060), "12.6");
        let loaded = crate::ort_env::init().expect("ONNX Runtime is installed for the tests");
        let version = onnxruntime_version(&loaded.library).expect("the library exports OrtGetApiBase");
        assert!(version.starts_with("1."), "{version}");
    }
}
