//! Where training runs: the execution provider of the training graphs, and where the
//! parameters, gradients and AdamW moments live between steps (docs/training.md §6.1).
//!
//! ```text
//! --device cpu      CPU execution provider; tensors in host memory
//! --device cuda[:N] CUDA execution provider on GPU N; with --update graph (its default) the
//!                   parameters, gradients and moments stay on the GPU (crate::resident)
//! ```
//! A GPU that cannot be used is an error naming what is missing (the provider library beside
//! ONNX Runtime, the driver, the CUDA runtime), never a silent fallback to the CPU.

use std::fmt;
use std::str::FromStr;

use loc3r_bundle::engines::EngineTarget;
use ndarray::{ArrayD, IxDyn};
use ort::ep;
use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::builder::SessionBuilder;
use ort::session::Session;
use ort::value::{DynTensor, Tensor};

use crate::session::{runtime, SessionError};

/// The device the training graphs run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda {
        device_id: i32,
    },
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a training device; use cpu, cuda or cuda:N (N the GPU index)");
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda { device_id: 0 }),
            other => match other.strip_prefix("cuda:").map(str::parse::<i32>) {
                Some(Ok(id)) if id >= 0 => Ok(Device::Cuda { device_id: id }),
                _ => Err(bad()),
            },
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda { device_id } => write!(f, "cuda:{device_id}"),
        }
    }
}

impl Device {
    /// Checks that this device can run training graphs here: for CUDA, the provider library
    /// beside the loaded ONNX Runtime, the driver and a GPU with this index, and the CUDA
    /// runtime, probed in the order a user fixes them.
    pub fn check_available(&self) -> Result<(), SessionError> {
        let Device::Cuda { device_id } = *self else { return Ok(()) };
        let library = loc3r_bundle::ort_env::init()
            .map_err(|e| SessionError::Runtime { context: "loading ONNX Runtime".into(), message: e.to_string() })?
            .library
            .clone();
        loc3r_bundle::gpu::probe(EngineTarget::Cuda, device_id, &library)
            .map_err(|e| SessionError::Unavailable { device: self.to_string(), message: e.to_string() })?;
        Ok(())
    }

    /// Registers this device's execution provider on `builder` (nothing for the CPU). A
    /// provider that does not register is an error, never a CPU fallback.
    pub(crate) fn register(&self, builder: SessionBuilder) -> Result<SessionBuilder, SessionError> {
        let Device::Cuda { device_id } = *self else { return Ok(builder) };
        let provider = ep::CUDA::default().with_device_id(device_id).build().error_on_failure();
        builder
            .with_execution_providers([provider])
            .map_err(|e| SessionError::Unavailable { device: self.to_string(), message: ort::Error::<()>::from(e).to_string() })
    }

    /// Where tensors that stay on this device live.
    pub(crate) fn memory_info(&self) -> Result<MemoryInfo<'static>, SessionError> {
        let (device, id) = match *self {
            Device::Cpu => (AllocationDevice::CPU, 0),
            Device::Cuda { device_id } => (AllocationDevice::CUDA, device_id),
        };
        MemoryInfo::new(device, id, AllocatorType::Device, MemoryType::Default).map_err(runtime("describing the device memory"))
    }

    /// The allocator of this device's memory (`session`: any session opened on it).
    pub(crate) fn allocator(&self, session: &Session) -> Result<Allocator, SessionError> {
        match self {
            Device::Cpu => Ok(Allocator::default()),
            Device::Cuda { .. } => Allocator::new(session, self.memory_info()?).map_err(runtime("making the GPU allocator")),
        }
    }

    /// A buffer in this device's memory holding `host` (a buffer ONNX Runtime can write into
    /// as a bound output).
    pub(crate) fn buffer(&self, allocator: &Allocator, host: ArrayD<f32>) -> Result<DynTensor, SessionError> {
        let mut t = Tensor::<f32>::new(allocator, host.shape().to_vec()).map_err(runtime("allocating a device buffer"))?.upcast();
        self.write(&mut t, host)?;
        Ok(t)
    }

    /// Overwrites the buffer `t` (same shape) with `host`.
    pub(crate) fn write(&self, t: &mut DynTensor, host: ArrayD<f32>) -> Result<(), SessionError> {
        match self {
            Device::Cpu => {
                let (shape, data) = t.try_extract_tensor_mut::<f32>().map_err(runtime("writing a buffer"))?;
                if shape.iter().map(|&d| d as usize).ne(host.shape().iter().copied()) {
                    return Err(SessionError::Input(format!("a buffer of shape {shape:?} cannot take values of shape {:?}", host.shape())));
                }
                data.iter_mut().zip(host.iter()).for_each(|(d, &x)| *d = x);
                Ok(())
            }
            Device::Cuda { .. } => {
                let host = Tensor::from_array(host).map_err(runtime("making a tensor"))?.upcast();
                host.copy_into(t).map_err(runtime("copying a tensor to the GPU"))
            }
        }
    }

    /// The values of `tensor` (f32, on this device), copied to the host.
    pub(crate) fn download(&self, tensor: &DynTensor) -> Result<ArrayD<f32>, SessionError> {
        let read = |t: &DynTensor| -> Result<ArrayD<f32>, SessionError> {
            let (shape, data) = t.try_extract_tensor::<f32>().map_err(runtime("reading a tensor"))?;
            let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            ArrayD::from_shape_vec(IxDyn(&dims), data.to_vec()).map_err(|e| SessionError::Input(e.to_string()))
        };
        match *self {
            Device::Cpu => read(tensor),
            Device::Cuda { .. } => read(&tensor.to(AllocationDevice::CPU, 0).map_err(runtime("copying a tensor from the GPU"))?),
        }
    }
}

/// Where AdamW runs and the trainable state lives between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// On the host, in Rust (crate::optim): every step copies parameters in and gradients out.
    /// The reference every other placement is tested against.
    Host,
    /// In an ONNX optimizer graph on the training device: parameters, gradients and moments
    /// stay in device buffers bound once (crate::resident); a step reads back only the losses,
    /// the gradient norm and whether it was finite.
    Graph,
}

impl Update {
    /// The default for `device`: the host on the CPU (nothing to save by staying in device
    /// memory), the device's own memory on a GPU.
    pub fn default_for(device: Device) -> Update {
        match device {
            Device::Cpu => Update::Host,
            Device::Cuda { .. } => Update::Graph,
        }
    }
}

impl FromStr for Update {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "host" => Ok(Update::Host),
            "graph" => Ok(Update::Graph),
            other => Err(format!("`{other}` is not an update placement; use host (AdamW in Rust on the host) or graph (AdamW in an ONNX graph on the device)")),
        }
    }
}

impl fmt::Display for Update {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Update::Host => "host",
            Update::Graph => "graph",
        })
    }
}

/// The device and the update placement of a run (not part of a run's identity: a run saved
/// on one device resumes on another).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Placement {
    pub device: Device,
    /// `None`: [`Update::default_for`] the device.
    pub update: Option<Update>,
}

impl Placement {
    pub fn update(&self) -> Update {
        self.update.unwrap_or(Update::default_for(self.device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_placements_parse_and_print_back() {
        assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
        assert_eq!("cuda".parse::<Device>().unwrap(), Device::Cuda { device_id: 0 });
        assert_eq!("cuda:3".parse::<Device>().unwrap().to_string(), "cuda:3");
        for bad in ["gpu", "cuda:", "cuda:-1", "cuda:x", "CPU"] {
            let e = bad.parse::<Device>().unwrap_err();
            assert!(e.contains(bad) && e.contains("cuda:N"), "{e}");
        }
        assert_eq!(Placement::default().update(), Update::Host);
        assert_eq!(Placement { device: Device::Cuda { device_id: 0 }, update: None }.update(), Update::Graph);
        assert_eq!(Placement { device: Device::Cpu, update: Some(Update::Graph) }.update(), Update::Graph);
        assert!("device".parse::<Update>().unwrap_err().contains("host"));
    }

    #[test]
    fn cpu_tensors_round_trip_and_a_missing_gpu_is_named() {
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 3]), (0..6).map(|x| x as f32 * 0.5).collect()).unwrap();
        let mut t = Device::Cpu.buffer(&Allocator::default(), ArrayD::zeros(IxDyn(&[2, 3]))).unwrap();
        assert_eq!(Device::Cpu.download(&t).unwrap(), ArrayD::<f32>::zeros(IxDyn(&[2, 3])));
        Device::Cpu.write(&mut t, a.clone()).unwrap();
        assert_eq!(Device::Cpu.download(&t).unwrap(), a);
        assert!(Device::Cpu.write(&mut t, ArrayD::zeros(IxDyn(&[3, 2]))).is_err());
        Device::Cpu.check_available().unwrap();
        let cuda = Device::Cuda { device_id: 0 };
        let built_in = <ep::CUDA as ep::ExecutionProvider>::is_available().unwrap_or(false);
        if let Err(e) = cuda.check_available() {
            let line = e.to_string();
            assert!(line.contains("cuda:0") && !line.contains('\n'), "{line}");
            if !built_in {
                assert!(line.contains("libonnxruntime_providers_cuda.so") && line.contains("onnxruntime-gpu"), "{line}");
            }
        }
    }
}
