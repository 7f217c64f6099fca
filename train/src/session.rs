//! Running a training graph on ONNX Runtime, with the parameters and AdamW state on the host.
//!
//! ```text
//! host params (checkpoint layout) ─transpose where the graph stores Wᵀ─▶ inputs ┐
//! data tensors ────────────────────────────────────────────────────────────────▶ session ─▶ loss, loss.<part>, grad.<name>
//! grad.<name> (checkpoint layout) ─clip─▶ AdamW ─▶ host params
//! ```
//! This is the CPU path (docs/training.md §4.2: host-side update, the reference any device
//! placement must agree with). Parameters are held in the checkpoint's layout, so what is
//! trained is what the exporter reads back.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{DynValue, Tensor};

use crate::device::Device;
use crate::graph::TrainingGraph;
use crate::optim::{clip_grad_norm, AdamW, Moments};

/// Why a training step failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// ONNX Runtime could not be loaded, or refused the graph or a run.
    #[error("ONNX Runtime: {context}: {message}")]
    Runtime { context: String, message: String },
    /// The training graph could not be written.
    #[error("writing the training graph: {0}")]
    Save(#[from] loc3r_export::graph::GraphError),
    /// Data the caller fed does not fit the graph.
    #[error("{0}")]
    Input(String),
    /// The requested training device cannot be used on this machine (the user's setup: a
    /// missing provider library, driver or GPU), never replaced by the CPU silently.
    #[error("training device `{device}` cannot be used here: {message} (or train with --device cpu)")]
    Unavailable { device: String, message: String },
}

pub(crate) fn runtime(context: &str) -> impl Fn(ort::Error) -> SessionError + '_ {
    move |e| SessionError::Runtime { context: context.to_string(), message: e.to_string() }
}

/// One trainable tensor on the host.
#[derive(Debug, Clone)]
pub struct HostParam {
    pub name: String,
    /// Shape in the checkpoint's layout.
    pub shape: Vec<usize>,
    /// Row-major values in the checkpoint's layout.
    pub value: Vec<f32>,
    /// The graph input takes the transpose (`[in, out]` of a Linear weight).
    pub transposed: bool,
    pub moments: Moments,
}

impl HostParam {
    /// The value the graph input takes (transposed where the graph stores Wᵀ).
    pub fn input_value(&self) -> ArrayD<f32> {
        let a = ArrayD::from_shape_vec(IxDyn(&self.shape), self.value.clone()).expect("shape and length agree");
        if self.transposed {
            a.reversed_axes().as_standard_layout().into_owned()
        } else {
            a
        }
    }
}

/// What one step computed.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// `loss` and each `loss.<part>`, by output name.
    pub losses: Vec<(String, f32)>,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Whether the update was applied (false when the norm was not finite).
    pub applied: bool,
}

/// Losses and gradients of one forward-backward pass.
#[derive(Debug, Clone)]
pub struct Evaluated {
    /// `loss` and each `loss.<part>`, by output name.
    pub losses: Vec<(String, f32)>,
    /// One per parameter, in the checkpoint's layout, in the order of `TrainingSession::params`.
    pub grads: Vec<Vec<f32>>,
}

/// A training graph loaded in ONNX Runtime: feeds parameters and data, returns losses and
/// gradients. Deterministic on one device and thread count (ORT's deterministic compute on).
pub struct Runner {
    pub(crate) session: Session,
    pub(crate) loss_names: Vec<String>,
    /// The graph's trainable inputs, in `TrainingGraph::params` order.
    pub(crate) param_names: Vec<String>,
}

impl Runner {
    /// Saves `tg` under `dir` and opens it on the CPU with `threads` intra-op threads.
    pub fn new(tg: &TrainingGraph, dir: &Path, threads: usize) -> Result<Runner, SessionError> {
        Runner::open(tg, dir, threads, Device::Cpu)
    }

    /// Saves `tg` under `dir` and opens it on `device` (CPU threads: `threads`).
    pub fn open(tg: &TrainingGraph, dir: &Path, threads: usize, device: Device) -> Result<Runner, SessionError> {
        let stats = tg.graph.save(dir)?;
        let session = open_session(&stats.onnx_path, threads, device, GraphOptimizationLevel::Level3)?;
        Ok(Runner {
            session,
            loss_names: tg.loss_outputs.iter().map(|v| v.name().to_string()).collect(),
            param_names: tg.params.iter().map(|p| p.name.clone()).collect(),
        })
    }

    /// Losses and gradients (checkpoint layout, in `params` order) for `data`. `params` must hold
    /// every trainable input of the graph (others are ignored).
    pub fn run(&mut self, params: &[HostParam], data: &HashMap<String, ArrayD<f32>>, ids: &HashMap<String, ArrayD<i64>>) -> Result<Evaluated, SessionError> {
        let mut feeds: Vec<(String, DynValue)> = Vec::with_capacity(self.param_names.len() + data.len() + ids.len());
        for name in &self.param_names {
            let p = params.iter().find(|p| &p.name == name).ok_or_else(|| SessionError::Input(format!("no value for the trainable tensor `{name}`")))?;
            feeds.push((p.name.clone(), Tensor::from_array(p.input_value()).map_err(runtime("param tensor"))?.into_dyn()));
        }
        for (name, a) in data {
            feeds.push((name.clone(), Tensor::from_array(a.clone()).map_err(runtime("data tensor"))?.into_dyn()));
        }
        for (name, a) in ids {
            feeds.push((name.clone(), Tensor::from_array(a.clone()).map_err(runtime("data tensor"))?.into_dyn()));
        }
        let out = self.session.run(feeds).map_err(runtime("running the training graph"))?;
        let mut losses = Vec::with_capacity(self.loss_names.len());
        for name in &self.loss_names {
            let v = out[name.as_str()].try_extract_array::<f32>().map_err(runtime("reading a loss"))?;
            losses.push((name.clone(), v.iter().next().copied().unwrap_or(f32::NAN)));
        }
        let mut grads = Vec::with_capacity(params.len());
        for p in params {
            let name = format!("grad.{}", p.name);
            if !self.param_names.contains(&p.name) {
                grads.push(vec![0.0; p.value.len()]);
                continue;
            }
            let g = out[name.as_str()].try_extract_array::<f32>().map_err(runtime("reading a gradient"))?;
            if g.shape() != &p.shape[..] {
                return Err(SessionError::Input(format!("{name} has shape {:?}, the parameter {:?}", g.shape(), p.shape)));
            }
            grads.push(g.iter().copied().collect());
        }
        Ok(Evaluated { losses, grads })
    }
}

/// Opens the ONNX file at `path` on `device` with deterministic compute (a fixed thread
/// count repeats bit for bit).
pub fn open_session(path: &Path, threads: usize, device: Device, level: GraphOptimizationLevel) -> Result<Session, SessionError> {
    device.check_available()?;
    let env = loc3r_bundle::ort_env::environment().map_err(|e| SessionError::Runtime { context: "loading ONNX Runtime".into(), message: e.to_string() })?;
    let builder = Session::builder(env)
        .and_then(|b| b.with_intra_threads(threads).map_err(ort::Error::<()>::from))
        .and_then(|b| b.with_deterministic_compute(true).map_err(ort::Error::<()>::from))
        .and_then(|b| b.with_optimization_level(level).map_err(ort::Error::<()>::from))
        .map_err(runtime("configuring a session"))?;
    let mut builder = device.register(builder)?;
    builder.commit_from_file(path).map_err(runtime("loading the training graph"))
}

/// The host copies of a training graph's trainable tensors, in the checkpoint's layout,
/// starting from the values the forward graph was built with.
pub fn host_params(tg: &TrainingGraph) -> Result<Vec<HostParam>, SessionError> {
    tg.params.iter().map(|p| HostParam::initial(&p.name, p.initial.as_ref(), p.transposed)).collect()
}

impl HostParam {
    /// The host copy of trainable tensor `name` from the value a graph was built with
    /// (`initial`, in the graph input's layout; `transposed`: the input holds Wᵀ), in the
    /// checkpoint's layout with zero moments.
    pub fn initial(name: &str, initial: &dyn loc3r_export::TensorData, transposed: bool) -> Result<HostParam, SessionError> {
        let mut bytes = Vec::new();
        initial.write_as(loc3r_export::DType::F32, &mut bytes).map_err(|e| SessionError::Input(format!("reading `{name}`: {e}")))?;
        let values: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let stored = ArrayD::from_shape_vec(IxDyn(initial.shape()), values).map_err(|e| SessionError::Input(format!("`{name}`: {e}")))?;
        let checkpoint = if transposed { stored.reversed_axes().as_standard_layout().into_owned() } else { stored };
        let n = checkpoint.len();
        Ok(HostParam {
            name: name.to_string(),
            shape: checkpoint.shape().to_vec(),
            value: checkpoint.into_raw_vec_and_offset().0,
            transposed,
            moments: Moments::zeros(n),
        })
    }
}

/// Clips `grads` to a global norm of `max_grad_norm` and applies AdamW at `lr` as update `step`
/// (1-based). Returns the norm before clipping; a non-finite norm changes nothing.
pub fn apply_update(params: &mut [HostParam], grads: &mut [Vec<f32>], optimizer: &AdamW, step: u64, lr: f64, max_grad_norm: f64) -> f64 {
    let grad_norm = {
        let mut views: Vec<&mut [f32]> = grads.iter_mut().map(Vec::as_mut_slice).collect();
        clip_grad_norm(&mut views, max_grad_norm)
    };
    if grad_norm.is_finite() {
        // Decay applies to weight matrices only, not to biases and norm gains (HF's grouping).
        let no_decay = AdamW { weight_decay: 0.0, ..*optimizer };
        for (p, g) in params.iter_mut().zip(grads.iter()) {
            let opt = if p.shape.len() >= 2 { optimizer } else { &no_decay };
            opt.step(&mut p.value, g, &mut p.moments, step, lr);
        }
    }
    grad_norm
}

/// One training graph with its parameters and optimizer state: the simplest loop (one data
/// shape, one batch per step).
pub struct TrainingSession {
    runner: Runner,
    pub params: Vec<HostParam>,
    pub optimizer: AdamW,
    /// Updates applied so far (AdamW's t after the last one).
    pub step: u64,
}

impl TrainingSession {
    /// Saves `tg` under `dir` and opens it on the CPU with `threads` intra-op threads.
    pub fn new(tg: &TrainingGraph, dir: &Path, threads: usize, optimizer: AdamW) -> Result<TrainingSession, SessionError> {
        Ok(TrainingSession { runner: Runner::new(tg, dir, threads)?, params: host_params(tg)?, optimizer, step: 0 })
    }

    /// Losses and gradients (checkpoint layout) for `data`, without updating anything.
    pub fn forward_backward(&mut self, data: &HashMap<String, ArrayD<f32>>) -> Result<Evaluated, SessionError> {
        self.runner.run(&self.params, data, &HashMap::new())
    }

    /// One optimizer step on `data`: losses and gradients, global-norm clipping, AdamW at `lr`.
    /// A non-finite gradient norm skips the update (and does not advance the step count).
    pub fn train_step(&mut self, data: &HashMap<String, ArrayD<f32>>, lr: f64, max_grad_norm: f64) -> Result<StepReport, SessionError> {
        let Evaluated { losses, mut grads } = self.forward_backward(data)?;
        let next = self.step + 1;
        let grad_norm = apply_update(&mut self.params, &mut grads, &self.optimizer, next, lr, max_grad_norm);
        let applied = grad_norm.is_finite();
        if applied {
            self.step = next;
        }
        Ok(StepReport { losses, grad_norm, applied })
    }
}
