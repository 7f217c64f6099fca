//! Device-resident training (`--update graph`, the default on CUDA): the parameters, their
//! gradients and the AdamW moments stay in device buffers, and AdamW itself is an ONNX graph
//! run on the same device (docs/training.md §6.1).
//!
//! ```text
//!            set A ──bound once──▶ training graph ─▶ grads ──┐ (K > 1: acc ← acc + g/K, ping-pong)
//! data (host, per sample) ──────▶      (device)     losses ─▶ host (a few bytes)
//! set A, grads, scalars ─▶ optimizer graph ─▶ set B;  grad_norm, finite ─▶ host
//! next step: B ▶ A (ping-pong: a buffer is never bound as both input and output)
//! ```
//! Every binding is created once per (graph, buffer set) and only data inputs are bound again
//! per sample, so a step allocates nothing on the device beyond what the training graph itself
//! needs. The optimizer graph computes PyTorch's AdamW op by op in f32, exactly as
//! crate::optim does on the host (same operations in the same order, bias corrections and the
//! step size rounded host-side once), with the global gradient norm in f32: the two agree bit
//! for bit while clipping is inactive and within float rounding of the clip coefficient when
//! it is active (tested on the CPU, where the same code runs on host memory).

use std::collections::HashMap;
use std::path::Path;

use loc3r_export::graph::{GraphBuilder, Value};
use loc3r_export::DType;
use ndarray::{ArrayD, IxDyn};
use ort::memory::{Allocator, MemoryInfo};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{IoBinding, Session};
use ort::value::{DynTensor, Tensor};

use crate::device::Device;
use crate::optim::AdamW;
use crate::session::{open_session, runtime, HostParam, Runner, SessionError};

/// One trainable tensor's place in the device buffers.
#[derive(Debug, Clone)]
struct Slot {
    name: String,
    /// The checkpoint's layout (gradients, files).
    shape: Vec<usize>,
    /// The graph inputs' layout (parameters and moments on the device).
    transposed: bool,
    /// Decoupled weight decay applies (weight matrices; not biases or norm gains).
    decays: bool,
}

impl Slot {
    fn input_shape(&self) -> Vec<usize> {
        if self.transposed {
            self.shape.iter().rev().copied().collect()
        } else {
            self.shape.clone()
        }
    }

    /// `values` (checkpoint layout) in the graph input's layout.
    fn to_input_layout(&self, values: &[f32]) -> Result<ArrayD<f32>, SessionError> {
        let a = ArrayD::from_shape_vec(IxDyn(&self.shape), values.to_vec()).map_err(|e| SessionError::Input(format!("`{}`: {e}", self.name)))?;
        Ok(if self.transposed { a.reversed_axes().as_standard_layout().into_owned() } else { a })
    }

    /// `a` (graph input layout) in the checkpoint's layout, row-major.
    fn to_checkpoint_layout(&self, a: ArrayD<f32>) -> Vec<f32> {
        let a = if self.transposed { a.reversed_axes().as_standard_layout().into_owned() } else { a };
        a.into_raw_vec_and_offset().0
    }
}

/// Parameters and moments: one of the two ping-pong sets.
struct StateSet {
    params: Vec<DynTensor>,
    exp_avg: Vec<DynTensor>,
    exp_avg_sq: Vec<DynTensor>,
}

/// Where the optimizer reads the step's gradient from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum GradSource {
    /// The training graph's output (one sample per update).
    Graph,
    /// An accumulation buffer.
    Accumulated(usize),
}

/// Names of the optimizer graph's inputs and outputs for trainable tensor `i`.
mod names {
    pub fn param(i: usize) -> String {
        format!("param.{i}")
    }
    pub fn grad(i: usize) -> String {
        format!("grad.{i}")
    }
    pub fn exp_avg(i: usize) -> String {
        format!("exp_avg.{i}")
    }
    pub fn exp_avg_sq(i: usize) -> String {
        format!("exp_avg_sq.{i}")
    }
    pub fn next(name: &str) -> String {
        format!("{name}.next")
    }
    pub fn acc(i: usize) -> String {
        format!("acc.{i}")
    }
    pub const DECAY: &str = "decay";
    pub const STEP_SIZE: &str = "step_size";
    pub const BIAS_CORRECTION2_SQRT: &str = "bias_correction2_sqrt";
    pub const MAX_GRAD_NORM: &str = "max_grad_norm";
    pub const GRAD_SCALE: &str = "grad_scale";
    pub const GRAD_NORM: &str = "grad_norm";
    pub const FINITE: &str = "finite";
}

/// The AdamW update of every trainable tensor as one graph (see the module docs).
fn optimizer_graph(slots: &[Slot], optimizer: &AdamW) -> GraphBuilder {
    let mut g = GraphBuilder::new("adamw");
    g.set_doc("AdamW (PyTorch semantics, f32) with global-norm gradient clipping; skips the update when the norm is not finite");
    let scalar = |g: &mut GraphBuilder, name: &str| g.input(name, DType::F32, Vec::<usize>::new());
    let decay = scalar(&mut g, names::DECAY);
    let step_size = scalar(&mut g, names::STEP_SIZE);
    let bc2 = scalar(&mut g, names::BIAS_CORRECTION2_SQRT);
    let max_norm = scalar(&mut g, names::MAX_GRAD_NORM);
    let mut inputs = Vec::with_capacity(slots.len());
    for (i, slot) in slots.iter().enumerate() {
        let p = g.input(&names::param(i), DType::F32, slot.input_shape());
        let grad = g.input(&names::grad(i), DType::F32, slot.shape.clone());
        let m = g.input(&names::exp_avg(i), DType::F32, slot.input_shape());
        let v = g.input(&names::exp_avg_sq(i), DType::F32, slot.input_shape());
        inputs.push((p, grad, m, v));
    }

    // The global norm, summed in a fixed order (deterministic).
    let mut s = g.scope("clip");
    let mut total: Option<Value> = None;
    for (i, (_, grad, _, _)) in inputs.iter().enumerate() {
        let sq = s.op(&format!("sum_of_squares_{i}"), "ReduceSumSquare", &[grad], &[("keepdims", 0i64.into())], DType::F32, Vec::<usize>::new());
        total = Some(match total {
            None => sq,
            Some(t) => s.add(&format!("total_{i}"), &t, &sq),
        });
    }
    let total = total.unwrap_or_else(|| s.scalar_f32(0.0));
    let norm = s.sqrt("norm", &total);
    let nan = s.op("is_nan", "IsNaN", &[&norm], &[], DType::Bool, Vec::<usize>::new());
    let inf = s.op("is_inf", "IsInf", &[&norm], &[], DType::Bool, Vec::<usize>::new());
    let bad = s.or("not_finite", &nan, &inf);
    let finite = s.not("finite", &bad);
    // PyTorch's clip_grad_norm_: max_norm / (norm + 1e-6), clamped to 1.
    let tiny = s.scalar_f32(1e-6);
    let one = s.scalar_f32(1.0);
    let padded = s.add("norm_plus_tiny", &norm, &tiny);
    let ratio = s.div("ratio", &max_norm, &padded);
    let coef = s.min("coefficient", &ratio, &one);
    drop(s);

    let (w1, b2, w2, eps) = ((1.0 - optimizer.beta1) as f32, optimizer.beta2 as f32, (1.0 - optimizer.beta2) as f32, optimizer.eps as f32);
    let mut outputs = Vec::new();
    for (i, ((p, grad, m, v), slot)) in inputs.iter().zip(slots).enumerate() {
        let mut s = g.scope(format!("update/{i}"));
        let clipped = s.mul("clipped", grad, &coef);
        let grad = if slot.transposed { s.transpose("to_input_layout", &clipped, &[1, 0]) } else { clipped };
        let decayed = if slot.decays && optimizer.weight_decay != 0.0 { s.mul("decay", p, &decay) } else { p.clone() };
        // m ← m + (1 − β1)·(g − m)
        let w1v = s.scalar_f32(w1);
        let diff = s.sub("g_minus_m", &grad, m);
        let step_m = s.mul("lerp", &w1v, &diff);
        let m_next = s.add("exp_avg", m, &step_m);
        // v ← v·β2 + (1 − β2)·g·g
        let (b2v, w2v) = (s.scalar_f32(b2), s.scalar_f32(w2));
        let vb = s.mul("v_beta2", v, &b2v);
        let gg = s.mul("g_squared", &grad, &grad);
        let gw = s.mul("g_squared_weighted", &w2v, &gg);
        let v_next = s.add("exp_avg_sq", &vb, &gw);
        // θ ← θ − step_size · m / (√v / √(1 − β2^t) + ε)
        let root = s.sqrt("sqrt_v", &v_next);
        let scaled = s.div("sqrt_v_corrected", &root, &bc2);
        let epsv = s.scalar_f32(eps);
        let denom = s.add("denominator", &scaled, &epsv);
        let ratio = s.div("m_over_denominator", &m_next, &denom);
        let delta = s.mul("delta", &step_size, &ratio);
        let p_next = s.sub("param", &decayed, &delta);
        // A non-finite norm changes nothing.
        let p_out = s.where_("param_or_kept", &finite, &p_next, p);
        let m_out = s.where_("exp_avg_or_kept", &finite, &m_next, m);
        let v_out = s.where_("exp_avg_sq_or_kept", &finite, &v_next, v);
        drop(s);
        outputs.push((names::next(&names::param(i)), p_out));
        outputs.push((names::next(&names::exp_avg(i)), m_out));
        outputs.push((names::next(&names::exp_avg_sq(i)), v_out));
    }
    for (name, value) in &outputs {
        g.output(name, value);
    }
    g.output(names::GRAD_NORM, &norm);
    g.output(names::FINITE, &finite);
    g
}

/// `acc.i ← acc.i + grad.i · grad_scale` (or `grad.i · grad_scale` when `first`): the same f32
/// operations as the host loop's accumulation.
fn accumulate_graph(slots: &[Slot], first: bool) -> GraphBuilder {
    let mut g = GraphBuilder::new(if first { "accumulate_first" } else { "accumulate" });
    let scale = g.input(names::GRAD_SCALE, DType::F32, Vec::<usize>::new());
    for (i, slot) in slots.iter().enumerate() {
        let grad = g.input(&names::grad(i), DType::F32, slot.shape.clone());
        let mut s = g.scope(format!("accumulate/{i}"));
        let scaled = s.mul("scaled", &grad, &scale);
        let out = if first {
            scaled
        } else {
            drop(s);
            let acc = g.input(&names::acc(i), DType::F32, slot.shape.clone());
            g.scope(format!("accumulate/{i}")).add("sum", &acc, &scaled)
        };
        g.output(&names::next(&names::acc(i)), &out);
    }
    g
}

fn scalar(v: f32) -> Result<DynTensor, SessionError> {
    Ok(Tensor::from_array(ArrayD::from_elem(IxDyn(&[]), v)).map_err(runtime("making a scalar"))?.upcast())
}

fn bind(b: &mut IoBinding, name: &str, v: &DynTensor) -> Result<(), SessionError> {
    b.bind_input(name, v).map_err(runtime("binding an input"))
}

/// What one update computed.
#[derive(Debug, Clone)]
pub struct ResidentStep {
    /// Mean over the update's samples of `loss` and each `loss.<part>`.
    pub losses: Vec<(String, f64)>,
    /// Global gradient norm before clipping (f32).
    pub grad_norm: f64,
}

/// A sample's data feeds, by element type.
pub type Feeds<'a> = (&'a HashMap<String, ArrayD<f32>>, &'a HashMap<String, ArrayD<i64>>);

/// How updates are made (the run's options).
#[derive(Debug, Clone, Copy)]
pub struct UpdateSettings {
    pub optimizer: AdamW,
    /// Samples per update (their gradients averaged).
    pub accumulate: usize,
    pub max_grad_norm: f64,
    /// Intra-op threads of the optimizer's session on the CPU.
    pub threads: usize,
}

/// Training graphs, the optimizer and every trainable buffer on one device.
pub struct Resident {
    device: Device,
    /// Owns the device buffers' memory.
    _allocator: Allocator,
    host_memory: MemoryInfo<'static>,
    runners: Vec<Runner>,
    slots: Vec<Slot>,
    sets: [StateSet; 2],
    /// The set holding the current parameters.
    current: usize,
    /// Written by every training graph (checkpoint layout).
    grads: Vec<DynTensor>,
    /// Accumulation buffers (K > 1 samples per update).
    acc: [Vec<DynTensor>; 2],
    accumulate: usize,
    max_grad_norm: f32,
    optimizer: AdamW,
    /// (runner, set) → the training graph bound to that set's parameters and `grads`.
    train_bindings: HashMap<(usize, usize), IoBinding>,
    adamw: Session,
    /// (gradient source, input set) → the optimizer bound from that set to the other.
    adamw_bindings: HashMap<(GradSource, usize), IoBinding>,
    /// (first, into buffer) → an accumulation step.
    accumulators: Option<(Session, Session)>,
    accumulate_bindings: HashMap<(bool, usize), IoBinding>,
}

impl Resident {
    /// Moves `params` (values and moments) onto the runners' device. `runners` must have been
    /// opened on `device`; every trainable input of every runner must be among `params`.
    pub fn new(runners: Vec<Runner>, params: &[HostParam], device: Device, settings: &UpdateSettings, work: &Path) -> Result<Resident, SessionError> {
        let UpdateSettings { optimizer, accumulate, max_grad_norm, threads } = *settings;
        for r in &runners {
            if let Some(missing) = r.param_names.iter().find(|n| !params.iter().any(|p| &p.name == *n)) {
                return Err(SessionError::Input(format!("the training graph's trainable input `{missing}` has no value")));
            }
        }
        let slots: Vec<Slot> =
            params.iter().map(|p| Slot { name: p.name.clone(), shape: p.shape.clone(), transposed: p.transposed, decays: p.shape.len() >= 2 }).collect();
        let open = |g: &GraphBuilder| -> Result<Session, SessionError> {
            let dir = work.join(g.name());
            std::fs::create_dir_all(&dir).map_err(|e| SessionError::Input(format!("{}: {e}", dir.display())))?;
            let stats = g.save(&dir)?;
            // Basic optimisations only: nothing may fuse or reorder the update's f32 arithmetic.
            open_session(&stats.onnx_path, threads, device, GraphOptimizationLevel::Level1)
        };
        let adamw = open(&optimizer_graph(&slots, &optimizer))?;
        let accumulators = if accumulate > 1 { Some((open(&accumulate_graph(&slots, true))?, open(&accumulate_graph(&slots, false))?)) } else { None };
        let allocator = device.allocator(&adamw)?;
        let alloc_like = |shape: &[usize]| device.buffer(&allocator, ArrayD::zeros(IxDyn(shape)));
        // Set 0 starts from `params` (the run's values and moments); set 1 is written by the
        // first update.
        let from_host = |slot: &Slot, values: &[f32]| device.buffer(&allocator, slot.to_input_layout(values)?);
        let first = StateSet {
            params: slots.iter().zip(params).map(|(s, p)| from_host(s, &p.value)).collect::<Result<_, _>>()?,
            exp_avg: slots.iter().zip(params).map(|(s, p)| from_host(s, &p.moments.exp_avg)).collect::<Result<_, _>>()?,
            exp_avg_sq: slots.iter().zip(params).map(|(s, p)| from_host(s, &p.moments.exp_avg_sq)).collect::<Result<_, _>>()?,
        };
        // One zero-filled buffer per slot, in the graph's input layout or the gradient's.
        let zeros = |input_layout: bool| {
            slots.iter().map(|s| alloc_like(if input_layout { s.input_shape() } else { s.shape.clone() }.as_slice())).collect::<Result<Vec<_>, _>>()
        };
        let second = StateSet { params: zeros(true)?, exp_avg: zeros(true)?, exp_avg_sq: zeros(true)? };
        let sets = [first, second];
        let grads = zeros(false)?;
        let acc = if accumulate > 1 { [zeros(false)?, zeros(false)?] } else { [Vec::new(), Vec::new()] };
        Ok(Resident {
            device,
            _allocator: allocator,
            host_memory: Device::Cpu.memory_info()?,
            runners,
            slots,
            sets,
            current: 0,
            grads,
            acc,
            accumulate,
            max_grad_norm: max_grad_norm as f32,
            optimizer,
            train_bindings: HashMap::new(),
            adamw,
            adamw_bindings: HashMap::new(),
            accumulators,
            accumulate_bindings: HashMap::new(),
        })
    }

    /// Copies the current values and moments back into `params` (checkpoint layout): at
    /// saves and at the end, never per step.
    pub fn download(&self, params: &mut [HostParam]) -> Result<(), SessionError> {
        let set = &self.sets[self.current];
        for (i, (slot, p)) in self.slots.iter().zip(params.iter_mut()).enumerate() {
            p.value = slot.to_checkpoint_layout(self.device.download(&set.params[i])?);
            p.moments.exp_avg = slot.to_checkpoint_layout(self.device.download(&set.exp_avg[i])?);
            p.moments.exp_avg_sq = slot.to_checkpoint_layout(self.device.download(&set.exp_avg_sq[i])?);
        }
        Ok(())
    }

    /// The binding of runner `r` to the current parameter set (made on first use).
    fn train_binding(&mut self, r: usize) -> Result<&mut IoBinding, SessionError> {
        let key = (r, self.current);
        if !self.train_bindings.contains_key(&key) {
            let runner = &self.runners[r];
            let mut b = runner.session.create_binding().map_err(runtime("binding the training graph"))?;
            let set = &self.sets[self.current];
            for (i, slot) in self.slots.iter().enumerate() {
                if runner.param_names.contains(&slot.name) {
                    bind(&mut b, &slot.name, &set.params[i])?;
                    b.bind_output(format!("grad.{}", slot.name), &mut self.grads[i]).map_err(runtime("binding a gradient"))?;
                }
            }
            for name in &runner.loss_names {
                b.bind_output_to_device(name.as_str(), &self.host_memory).map_err(runtime("binding a loss"))?;
            }
            self.train_bindings.insert(key, b);
        }
        Ok(self.train_bindings.get_mut(&key).expect("inserted above"))
    }

    /// Runs runner `r` on one sample at the current parameters: its losses (the gradients land
    /// in the device buffers; no update).
    pub fn losses(&mut self, r: usize, (floats, ids): Feeds<'_>) -> Result<Vec<(String, f32)>, SessionError> {
        let binding = self.train_binding(r)?;
        for (name, a) in floats {
            binding.bind_input(name.as_str(), &Tensor::from_array(a.clone()).map_err(runtime("data tensor"))?).map_err(runtime("binding data"))?;
        }
        for (name, a) in ids {
            binding.bind_input(name.as_str(), &Tensor::from_array(a.clone()).map_err(runtime("data tensor"))?).map_err(runtime("binding data"))?;
        }
        let binding = &self.train_bindings[&(r, self.current)];
        let runner = &mut self.runners[r];
        let out = runner.session.run_binding(binding).map_err(runtime("running the training graph"))?;
        let mut losses = Vec::with_capacity(runner.loss_names.len());
        for name in &runner.loss_names {
            let v = out[name.as_str()].try_extract_array::<f32>().map_err(runtime("reading a loss"))?;
            losses.push((name.clone(), v.iter().next().copied().unwrap_or(f32::NAN)));
        }
        Ok(losses)
    }

    /// Adds the gradients just computed into accumulation buffer `into` (the other buffer
    /// holds the sum so far, unless `first`).
    fn accumulate_into(&mut self, first: bool, into: usize) -> Result<(), SessionError> {
        let Some((first_session, next_session)) = &self.accumulators else {
            return Err(SessionError::Input("accumulation buffers exist only with more than one sample per update".into()));
        };
        let key = (first, into);
        if !self.accumulate_bindings.contains_key(&key) {
            let session = if first { first_session } else { next_session };
            let mut b = session.create_binding().map_err(runtime("binding the accumulation"))?;
            let [a0, a1] = &mut self.acc;
            let (from, to) = if into == 0 { (&*a1, a0) } else { (&*a0, a1) };
            for i in 0..self.slots.len() {
                bind(&mut b, &names::grad(i), &self.grads[i])?;
                if !first {
                    bind(&mut b, &names::acc(i), &from[i])?;
                }
                b.bind_output(names::next(&names::acc(i)), &mut to[i]).map_err(runtime("binding the accumulation"))?;
            }
            bind(&mut b, names::GRAD_SCALE, &scalar(1.0 / self.accumulate as f32)?)?;
            self.accumulate_bindings.insert(key, b);
        }
        let (first_session, next_session) = self.accumulators.as_mut().expect("checked above");
        let session = if first { first_session } else { next_session };
        session.run_binding(&self.accumulate_bindings[&key]).map_err(runtime("accumulating gradients"))?;
        Ok(())
    }

    /// One update over `samples` (runner index and feeds each; as many as the run accumulates)
    /// at learning rate `lr` as AdamW step `t` (1-based).
    pub fn update(&mut self, samples: &[(usize, Feeds<'_>)], t: u64, lr: f64) -> Result<ResidentStep, SessionError> {
        if samples.len() != self.accumulate {
            return Err(SessionError::Input(format!("{} samples for an update that accumulates {}", samples.len(), self.accumulate)));
        }
        let mut sums: Vec<(String, f64)> = Vec::new();
        for (k, (r, feeds)) in samples.iter().enumerate() {
            for (name, v) in self.losses(*r, *feeds)? {
                match sums.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, s)) => *s += f64::from(v) / self.accumulate as f64,
                    None => sums.push((name, f64::from(v) / self.accumulate as f64)),
                }
            }
            if self.accumulate > 1 {
                self.accumulate_into(k == 0, k % 2)?;
            }
        }
        let source = if self.accumulate > 1 { GradSource::Accumulated((self.accumulate - 1) % 2) } else { GradSource::Graph };
        let key = (source, self.current);
        if !self.adamw_bindings.contains_key(&key) {
            let mut b = self.adamw.create_binding().map_err(runtime("binding the optimizer"))?;
            let [s0, s1] = &mut self.sets;
            let (from, to) = if self.current == 0 { (&*s0, s1) } else { (&*s1, s0) };
            for i in 0..self.slots.len() {
                let grad = match source {
                    GradSource::Graph => &self.grads[i],
                    GradSource::Accumulated(j) => &self.acc[j][i],
                };
                bind(&mut b, &names::grad(i), grad)?;
                bind(&mut b, &names::param(i), &from.params[i])?;
                bind(&mut b, &names::exp_avg(i), &from.exp_avg[i])?;
                bind(&mut b, &names::exp_avg_sq(i), &from.exp_avg_sq[i])?;
                let out = |b: &mut IoBinding, name: String, v: &mut DynTensor| b.bind_output(names::next(&name), v).map_err(runtime("binding the optimizer"));
                out(&mut b, names::param(i), &mut to.params[i])?;
                out(&mut b, names::exp_avg(i), &mut to.exp_avg[i])?;
                out(&mut b, names::exp_avg_sq(i), &mut to.exp_avg_sq[i])?;
            }
            bind(&mut b, names::MAX_GRAD_NORM, &scalar(self.max_grad_norm)?)?;
            for name in [names::GRAD_NORM, names::FINITE] {
                b.bind_output_to_device(name, &self.host_memory).map_err(runtime("binding the optimizer"))?;
            }
            self.adamw_bindings.insert(key, b);
        }
        // The step's scalars, rounded from f64 exactly as crate::optim::AdamW::step rounds them.
        let o = &self.optimizer;
        let decay = (1.0 - lr * o.weight_decay) as f32;
        let step_size = (lr / (1.0 - o.beta1.powf(t as f64))) as f32;
        let bc2 = (1.0 - o.beta2.powf(t as f64)).sqrt() as f32;
        let b = self.adamw_bindings.get_mut(&key).expect("inserted above");
        bind(b, names::DECAY, &scalar(decay)?)?;
        bind(b, names::STEP_SIZE, &scalar(step_size)?)?;
        bind(b, names::BIAS_CORRECTION2_SQRT, &scalar(bc2)?)?;
        let out = self.adamw.run_binding(&self.adamw_bindings[&key]).map_err(runtime("running the optimizer"))?;
        let grad_norm =
            out[names::GRAD_NORM].try_extract_array::<f32>().map_err(runtime("reading the gradient norm"))?.iter().next().copied().unwrap_or(f32::NAN);
        let finite = out[names::FINITE].try_extract_array::<bool>().map_err(runtime("reading the finite flag"))?.iter().next().copied().unwrap_or(false);
        drop(out);
        self.current = 1 - self.current;
        let grad_norm = if finite { f64::from(grad_norm) } else { f64::NAN };
        Ok(ResidentStep { losses: sums, grad_norm })
    }
}
