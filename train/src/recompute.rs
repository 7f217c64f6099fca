//! Layer-granular recompute (docs/training.md §6.2): the Loc3R training step as a chain of
//! small graphs instead of one, so that memory no longer grows with layers × sequence.
//!
//! ```text
//! forward sweep                                        backward sweep
//! front: projector, embed, splice ─▶ h₀                front VJP: h₀-seed g₀ ─▶ grad.<projector, embed_tokens>
//! layer ℓ: h_ℓ ─▶ h_ℓ₊₁   (ℓ = 0 … L−1)                layer VJP ℓ: h_ℓ, g_ℓ₊₁ ─(recomputes the layer)─▶ g_ℓ, grad.<layer ℓ>
//! top: h_L ─▶ final norm, heads, gathered LM head, losses ─▶ loss, loss.<part>, g_L, grad.<norm, lm_head, heads>
//! ```
//! Only the L+1 layer inputs h_ℓ (`[1, S, H]` each) are kept on the host between the sweeps; each
//! graph's activations live only while that graph runs (the sessions run without ONNX Runtime's
//! memory arena, which would otherwise keep every session's peak allocated). The VJP of a layer
//! is the existing autodiff applied to the scalar Σ(h_ℓ₊₁ ⊙ g_ℓ₊₁), g_ℓ₊₁ fed as an input:
//! its gradient with respect to h_ℓ is g_ℓ and with respect to the layer's weights is exactly
//! their share of ∂loss/∂w. A tied LM head (`tie_word_embeddings`) is `model.embed_tokens.weight`
//! in both the front and the top; its two gradients add up. LoRA adapters are attached per layer
//! graph (the factors' names and initial values are the whole graph's).
//!
//! The math is the whole graph's; only the order of floating-point sums differs, so losses and
//! gradients agree with [`Recompute::None`] to f32 rounding (tested to 1e-5 relative), and each
//! mode is bitwise repeatable on its own for a fixed thread count.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use loc3r_bundle::io;
use loc3r_export::checkpoint::Checkpoint;
use loc3r_export::graph::{Dim, GraphBuilder, Value};
use loc3r_export::models::qwen2;
use loc3r_export::{DType, TensorData};
use ndarray::{ArrayD, IxDyn};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{DynValue, Tensor};

use crate::autodiff::{differentiate, Seed};
use crate::device::Device;
use crate::graph::TrainGraphError;
use crate::lora::{Adapter, LoraOptions};
use crate::losses::LossWeights;
use crate::model::{front_sequence, top_losses, Group, Shape};
use crate::session::{runtime, Evaluated, HostParam, SessionError};

/// How the training step keeps the activations its backward pass needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Recompute {
    /// One graph for the whole step: every activation stays alive until the backward pass uses
    /// it. Fastest; memory grows with layers × sequence.
    #[default]
    None,
    /// One graph per decoder layer, recomputed in the backward sweep: only the layer inputs are
    /// kept. Bounded memory for about one more forward pass of compute.
    Layers,
}

impl Recompute {
    /// The values `--recompute` takes.
    pub const CHOICES: &'static str = "none, layers";

    pub fn as_str(self) -> &'static str {
        match self {
            Recompute::None => "none",
            Recompute::Layers => "layers",
        }
    }
}

impl std::fmt::Display for Recompute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Recompute {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Recompute::None),
            "layers" => Ok(Recompute::Layers),
            other => Err(format!("`{other}` is not a recompute mode; use one of: {}", Recompute::CHOICES)),
        }
    }
}

/// Input and output names of the segment graphs.
pub mod names {
    /// The residual stream entering a segment (`[1, S, H]` f32): h_ℓ; the front's output h₀.
    pub const HIDDEN: &str = "hidden";
    /// A layer's output h_ℓ₊₁.
    pub const HIDDEN_NEXT: &str = "hidden_next";
    /// ∂loss/∂(the segment's output), fed to a VJP graph.
    pub const HIDDEN_GRAD: &str = "hidden_grad";
    /// ∂loss/∂[`HIDDEN`], output by a VJP graph (and the top).
    pub const GRAD_HIDDEN: &str = "grad.hidden";
}

/// A trainable tensor of one segment graph.
#[derive(Debug, Clone)]
pub struct SegmentParam {
    /// The checkpoint name (also the graph input's name).
    pub name: String,
    /// Whether this graph takes the tensor transposed (a tied LM head is transposed in the top,
    /// the same tensor is not in the front).
    pub transposed: bool,
    /// The value the graph was built with, in the input's layout.
    pub initial: Arc<dyn TensorData>,
}

/// One segment graph: its builder, its trainable inputs, and whether it outputs [`names::GRAD_HIDDEN`].
#[derive(Debug)]
pub struct SegmentGraph {
    pub graph: GraphBuilder,
    pub params: Vec<SegmentParam>,
    pub grads_input: bool,
}

/// Every graph of the segmented step for one sample shape.
#[derive(Debug)]
pub struct SegmentedGraphs {
    pub front: SegmentGraph,
    /// Present when the front has trainable tensors.
    pub front_vjp: Option<SegmentGraph>,
    pub layers: Vec<SegmentGraph>,
    /// Present for the layers the backward sweep has to pass: those with trainable tensors and
    /// every layer above one (or above a trainable front).
    pub layer_vjps: Vec<Option<SegmentGraph>>,
    /// Forward and backward of the top in one graph (its activations are small).
    pub top: SegmentGraph,
    /// `loss` and `loss.<part>` outputs of the top.
    pub loss_names: Vec<String>,
    /// The LoRA adapters of every layer (empty without LoRA).
    pub lora: Vec<Adapter>,
}

fn trainable_names(g: &GraphBuilder, trainable: &dyn Fn(&str) -> bool) -> Vec<String> {
    g.initializers().iter().filter(|i| !i.inline && trainable(i.value.name())).map(|i| i.value.name().to_string()).collect()
}

/// Promotes the trainable weights of `g` to inputs.
fn promote(g: &mut GraphBuilder, trainable: &dyn Fn(&str) -> bool) -> Result<(Vec<SegmentParam>, Vec<Value>), TrainGraphError> {
    let mut params = Vec::new();
    let mut values = Vec::new();
    for name in trainable_names(g, trainable) {
        let init = g.promote_to_input(&name).ok_or_else(|| TrainGraphError::UnknownParam(name.clone(), g.name().to_string()))?;
        params.push(SegmentParam { name, transposed: init.data.transposed_from_checkpoint(), initial: init.data.clone() });
        values.push(init.value);
    }
    Ok((params, values))
}

/// Differentiates `loss` with respect to the promoted `params` (outputs `grad.<name>` in the
/// checkpoint's layout) and, when given, the segment's `input` (output [`names::GRAD_HIDDEN`]).
fn backward(g: &mut GraphBuilder, loss: &Value, params: &[SegmentParam], values: &[Value], input: Option<&Value>) -> Result<(), TrainGraphError> {
    let mut wrt: Vec<Value> = values.to_vec();
    wrt.extend(input.cloned());
    let grads = differentiate(g, loss, &wrt, &Seed::One)?;
    for (k, (_, grad)) in grads.grads.into_iter().enumerate() {
        match params.get(k) {
            Some(p) => {
                let out = if p.transposed { g.scope(format!("grad/{}", p.name)).transpose("to_checkpoint_layout", &grad, &[1, 0]) } else { grad };
                g.output(&format!("grad.{}", p.name), &out);
            }
            None => {
                g.output(names::GRAD_HIDDEN, &grad);
            }
        }
    }
    Ok(())
}

/// `Σ (output ⊙ seed)` for a seed input of the output's shape: the scalar whose gradient is the
/// vector-Jacobian product of the segment with the seed.
fn seeded(g: &mut GraphBuilder, output: &Value) -> Value {
    let seed = g.input(names::HIDDEN_GRAD, DType::F32, output.shape().to_vec());
    let mut s = g.scope("vjp_seed");
    let weighted = s.mul("weighted", output, &seed);
    s.reduce_sum("sum", &weighted, &[], false)
}

fn hidden_shape(h: usize) -> [Dim; 3] {
    [Dim::Fixed(1), Dim::sym("sequence"), Dim::Fixed(h)]
}

/// Layer `l` of the decoder as a graph `hidden → hidden_next`, with LoRA when asked.
fn layer_forward(ckpt: &Checkpoint, l: usize, name: &str, lora: Option<&LoraOptions>) -> Result<(GraphBuilder, Value, Value, Vec<Adapter>), TrainGraphError> {
    let opts = crate::graph::export_options(ckpt);
    let part = qwen2::part_graph(ckpt, &opts, &qwen2::Part { layers: l..l + 1, head: false })?;
    let mut g = GraphBuilder::new(name);
    let h = g.input(names::HIDDEN, DType::F32, hidden_shape(ckpt.config().hidden_size));
    let out = g.absorb(part, &[(io::decoder::INPUTS_EMBEDS, &h)]);
    let next = out[io::decoder::HIDDEN_STATES].clone();
    let adapters = match lora {
        Some(opts) => crate::lora::adapt(&mut g, opts)?,
        None => Vec::new(),
    };
    Ok((g, h, next, adapters))
}

/// The front (projector, embed, splice) as a graph with output [`names::HIDDEN`] (h₀).
fn front_forward(ckpt: &Checkpoint, shape: &Shape, feature_shape: (usize, usize), name: &str) -> Result<(GraphBuilder, Value), TrainGraphError> {
    let mut g = GraphBuilder::new(name);
    let sequence = front_sequence(&mut g, ckpt, shape, feature_shape)?;
    Ok((g, sequence))
}

/// Builds the segmented step's graphs for samples of `shape` (the same trainable selection,
/// losses and LoRA settings as [`crate::model::training_graph_for`]).
pub fn segmented_graphs(
    ckpt: &Checkpoint,
    shape: &Shape,
    feature_shape: (usize, usize),
    groups: &BTreeSet<Group>,
    weights: &LossWeights,
    lora: &LoraOptions,
) -> Result<SegmentedGraphs, TrainGraphError> {
    let cfg = ckpt.config();
    let layers = cfg.num_hidden_layers;
    let trainable = |name: &str| groups.iter().any(|grp| grp.contains(name));
    let lora = groups.contains(&Group::Lora).then_some(lora);
    if let Some(l) = lora {
        l.validate().map_err(|m| TrainGraphError::Export(loc3r_export::Error::Invalid(m)))?;
    }

    // Front forward (trainable tensors are inputs: they change every step).
    let (mut g, sequence) = front_forward(ckpt, shape, feature_shape, "loc3r_front")?;
    g.output(names::HIDDEN, &sequence);
    let (params, _) = promote(&mut g, &trainable)?;
    let front_trains = !params.is_empty();
    let front = SegmentGraph { graph: g, params, grads_input: false };
    let front_vjp = if front_trains {
        let (mut g, sequence) = front_forward(ckpt, shape, feature_shape, "loc3r_front_vjp")?;
        let loss = seeded(&mut g, &sequence);
        let (params, values) = promote(&mut g, &trainable)?;
        backward(&mut g, &loss, &params, &values, None)?;
        Some(SegmentGraph { graph: g, params, grads_input: false })
    } else {
        None
    };

    // Layers: forward graphs, and VJP graphs where the backward sweep passes.
    let mut below_trains = front_trains;
    let (mut layer_graphs, mut layer_vjps, mut adapters) = (Vec::with_capacity(layers), Vec::with_capacity(layers), Vec::new());
    for l in 0..layers {
        let (mut g, _, next, layer_adapters) = layer_forward(ckpt, l, &format!("loc3r_layer{l}"), lora)?;
        g.output(names::HIDDEN_NEXT, &next);
        let (params, _) = promote(&mut g, &trainable)?;
        let trains = !params.is_empty();
        layer_graphs.push(SegmentGraph { graph: g, params, grads_input: false });
        adapters.extend(layer_adapters);
        layer_vjps.push(if trains || below_trains {
            let (mut g, h, next, _) = layer_forward(ckpt, l, &format!("loc3r_layer{l}_vjp"), lora)?;
            let loss = seeded(&mut g, &next);
            let (params, values) = promote(&mut g, &trainable)?;
            backward(&mut g, &loss, &params, &values, below_trains.then_some(&h))?;
            Some(SegmentGraph { graph: g, params, grads_input: below_trains })
        } else {
            None
        });
        below_trains |= trains;
    }

    // Top: final norm, heads, LM head and losses, with its gradients and g_L.
    let opts = crate::graph::export_options(ckpt);
    let mut g = GraphBuilder::new("loc3r_top");
    let h = g.input(names::HIDDEN, DType::F32, hidden_shape(cfg.hidden_size));
    let head = qwen2::part_graph(ckpt, &opts, &qwen2::Part { layers: layers..layers, head: true })?;
    let out = g.absorb(head, &[(io::decoder::INPUTS_EMBEDS, &h)]);
    let hidden = out[io::decoder::HIDDEN_STATES].clone();
    let (total, named) = top_losses(&mut g, ckpt, shape, &hidden, weights)?;
    let (params, values) = promote(&mut g, &trainable)?;
    if params.is_empty() && !below_trains {
        return Err(TrainGraphError::NothingToTrain("loc3r_train".into()));
    }
    let mut loss_names = vec![g.output("loss", &total).name().to_string()];
    for (part, value) in &named {
        loss_names.push(g.output(&format!("loss.{part}"), value).name().to_string());
    }
    backward(&mut g, &total, &params, &values, below_trains.then_some(&h))?;
    let top = SegmentGraph { graph: g, params, grads_input: below_trains };
    Ok(SegmentedGraphs { front, front_vjp, layers: layer_graphs, layer_vjps, top, loss_names, lora: adapters })
}

impl SegmentedGraphs {
    /// Every graph, in the order the step runs them (forward sweep, top, backward sweep).
    fn all(&self) -> impl Iterator<Item = &SegmentGraph> {
        std::iter::once(&self.front)
            .chain(&self.layers)
            .chain(std::iter::once(&self.top))
            .chain(self.layer_vjps.iter().rev().flatten())
            .chain(self.front_vjp.as_ref())
    }

    /// The host copies of every trainable tensor (checkpoint layout, from the values the graphs
    /// were built with), each once, in the order the graphs first take them.
    pub fn host_params(&self) -> Result<Vec<HostParam>, SessionError> {
        let mut params: Vec<HostParam> = Vec::new();
        for p in self.all().flat_map(|s| &s.params) {
            if params.iter().any(|q| q.name == p.name) {
                continue;
            }
            params.push(HostParam::initial(&p.name, p.initial.as_ref(), p.transposed)?);
        }
        Ok(params)
    }
}

/// A broken invariant of the segmented step (not the caller's fault; exit 1).
fn bug(message: String) -> SessionError {
    SessionError::Runtime { context: "the segmented training step (a bug in train/src/recompute.rs)".into(), message }
}

/// One segment graph loaded in ONNX Runtime.
struct Segment {
    session: Session,
    /// Graph inputs that are not trainable tensors (data, h, seeds).
    data_inputs: Vec<String>,
    params: Vec<(String, bool)>,
    outputs: Vec<String>,
}

impl Segment {
    fn open(sg: &SegmentGraph, dir: &Path, threads: usize, device: Device) -> Result<Segment, SessionError> {
        std::fs::create_dir_all(dir).map_err(|error| SessionError::Save(loc3r_export::graph::GraphError::Io { path: dir.to_path_buf(), error }))?;
        let stats = sg.graph.save(dir)?;
        device.check_available()?;
        let env = loc3r_bundle::ort_env::environment().map_err(|e| SessionError::Runtime { context: "loading ONNX Runtime".into(), message: e.to_string() })?;
        // No CPU arena and no memory pattern: an arena keeps a session's peak allocated after
        // its run, and with one session per layer that would add back up to the whole graph's
        // peak.
        let builder = Session::builder(env)
            .and_then(|b| b.with_intra_threads(threads).map_err(ort::Error::<()>::from))
            .and_then(|b| b.with_deterministic_compute(true).map_err(ort::Error::<()>::from))
            .and_then(|b| b.with_memory_pattern(false).map_err(ort::Error::<()>::from))
            .and_then(|b| b.with_optimization_level(GraphOptimizationLevel::Level3).map_err(ort::Error::<()>::from))
            .map_err(runtime("configuring a segment's session"))?;
        let mut builder = match device {
            Device::Cpu => {
                let cpu = ort::ep::CPU::default().with_arena_allocator(false).build();
                builder.with_execution_providers([cpu]).map_err(|e| runtime("configuring a segment's session")(ort::Error::<()>::from(e)))?
            }
            Device::Cuda { .. } => device.register(builder)?,
        };
        let session = builder.commit_from_file(&stats.onnx_path).map_err(runtime("loading a segment of the training graph"))?;
        let params: Vec<(String, bool)> = sg.params.iter().map(|p| (p.name.clone(), p.transposed)).collect();
        let data_inputs = sg.graph.inputs().iter().map(|v| v.name().to_string()).filter(|n| !params.iter().any(|(p, _)| p == n)).collect();
        Ok(Segment { session, data_inputs, params, outputs: sg.graph.outputs().iter().map(|v| v.name().to_string()).collect() })
    }

    /// Runs the segment: trainable inputs from `params`, the rest from `extra` or the sample's
    /// data; returns every output.
    fn run(
        &mut self,
        params: &HashMap<&str, &HostParam>,
        floats: &HashMap<String, ArrayD<f32>>,
        ids: &HashMap<String, ArrayD<i64>>,
        extra: &[(&str, &ArrayD<f32>)],
    ) -> Result<HashMap<String, ArrayD<f32>>, SessionError> {
        let mut feeds: Vec<(String, DynValue)> = Vec::with_capacity(self.params.len() + self.data_inputs.len());
        for (name, transposed) in &self.params {
            let p = params.get(name.as_str()).ok_or_else(|| SessionError::Input(format!("no value for the trainable tensor `{name}`")))?;
            let a = ArrayD::from_shape_vec(IxDyn(&p.shape), p.value.clone()).map_err(|e| SessionError::Input(format!("`{name}`: {e}")))?;
            let a = if *transposed { a.reversed_axes().as_standard_layout().into_owned() } else { a };
            feeds.push((name.clone(), Tensor::from_array(a).map_err(runtime("param tensor"))?.into_dyn()));
        }
        for name in &self.data_inputs {
            let value = if let Some((_, a)) = extra.iter().find(|(n, _)| n == name) {
                Tensor::from_array((*a).clone()).map_err(runtime("data tensor"))?.into_dyn()
            } else if let Some(a) = floats.get(name) {
                Tensor::from_array(a.clone()).map_err(runtime("data tensor"))?.into_dyn()
            } else if let Some(a) = ids.get(name) {
                Tensor::from_array(a.clone()).map_err(runtime("data tensor"))?.into_dyn()
            } else {
                return Err(SessionError::Input(format!("no value for the input `{name}` of a segment of the training graph")));
            };
            feeds.push((name.clone(), value));
        }
        let out = self.session.run(feeds).map_err(runtime("running a segment of the training graph"))?;
        let mut values = HashMap::with_capacity(self.outputs.len());
        for name in &self.outputs {
            let v = out[name.as_str()].try_extract_array::<f32>().map_err(runtime("reading an output"))?;
            values.insert(name.clone(), v.to_owned());
        }
        Ok(values)
    }
}

/// The segmented step loaded in ONNX Runtime: the same contract as [`crate::session::Runner`]
/// (losses, and gradients in the checkpoint's layout in the order of the given parameters).
pub struct SegmentedRunner {
    front: Segment,
    front_vjp: Option<Segment>,
    layers: Vec<Segment>,
    layer_vjps: Vec<Option<Segment>>,
    top: Segment,
    loss_names: Vec<String>,
}

impl SegmentedRunner {
    /// Saves every graph under `dir` and opens each on the CPU with `threads` intra-op threads.
    pub fn new(graphs: &SegmentedGraphs, dir: &Path, threads: usize) -> Result<SegmentedRunner, SessionError> {
        SegmentedRunner::open(graphs, dir, threads, Device::Cpu)
    }

    /// Saves every graph under `dir` and opens each on `device` (CPU threads: `threads`).
    pub fn open(graphs: &SegmentedGraphs, dir: &Path, threads: usize, device: Device) -> Result<SegmentedRunner, SessionError> {
        let open = |sg: &SegmentGraph| Segment::open(sg, &dir.join(sg.graph.name()), threads, device);
        Ok(SegmentedRunner {
            front: open(&graphs.front)?,
            front_vjp: graphs.front_vjp.as_ref().map(open).transpose()?,
            layers: graphs.layers.iter().map(open).collect::<Result<_, _>>()?,
            layer_vjps: graphs.layer_vjps.iter().map(|v| v.as_ref().map(open).transpose()).collect::<Result<_, _>>()?,
            top: open(&graphs.top)?,
            loss_names: graphs.loss_names.clone(),
        })
    }

    /// The loss outputs' names (`loss`, `loss.<part>`).
    pub fn loss_names(&self) -> &[String] {
        &self.loss_names
    }

    /// Losses and gradients (checkpoint layout, in `params` order; zeros for a tensor no graph
    /// takes) for one sample's data.
    pub fn run(&mut self, params: &[HostParam], floats: &HashMap<String, ArrayD<f32>>, ids: &HashMap<String, ArrayD<i64>>) -> Result<Evaluated, SessionError> {
        let by_name: HashMap<&str, &HostParam> = params.iter().map(|p| (p.name.as_str(), p)).collect();
        let mut grads: HashMap<String, ArrayD<f32>> = HashMap::new();
        let mut collect = |out: &mut HashMap<String, ArrayD<f32>>, seg: &Segment| {
            for (name, _) in &seg.params {
                let key = format!("grad.{name}");
                if let Some(g) = out.remove(&key) {
                    match grads.get_mut(name) {
                        // A tied LM head: the embedding's gradient from the front plus the head's.
                        Some(acc) => *acc += &g,
                        None => {
                            grads.insert(name.clone(), g);
                        }
                    }
                }
            }
        };
        let take = |out: &mut HashMap<String, ArrayD<f32>>, name: &str| {
            out.remove(name).ok_or_else(|| bug(format!("a segment of the training graph has no output `{name}`")))
        };

        // Forward sweep: keep each layer's input.
        let mut out = self.front.run(&by_name, floats, ids, &[])?;
        let mut hs = vec![take(&mut out, names::HIDDEN)?];
        for layer in &mut self.layers {
            let mut out = layer.run(&by_name, floats, ids, &[(names::HIDDEN, &hs[hs.len() - 1])])?;
            hs.push(take(&mut out, names::HIDDEN_NEXT)?);
        }
        let h_top = hs.pop().expect("h₀ at least");
        let mut out = self.top.run(&by_name, floats, ids, &[(names::HIDDEN, &h_top)])?;
        drop(h_top);
        let mut losses = Vec::with_capacity(self.loss_names.len());
        for name in &self.loss_names {
            losses.push((name.clone(), out.get(name).and_then(|v| v.iter().next().copied()).unwrap_or(f32::NAN)));
        }
        collect(&mut out, &self.top);
        let mut seed = if self.top.outputs.iter().any(|o| o == names::GRAD_HIDDEN) { Some(take(&mut out, names::GRAD_HIDDEN)?) } else { None };

        // Backward sweep: each layer recomputed from its input, top to bottom.
        for (l, vjp) in self.layer_vjps.iter_mut().enumerate().rev() {
            let h = hs.pop().expect("one input per layer");
            let Some(vjp) = vjp else { continue };
            let g = seed.take().ok_or_else(|| bug(format!("no gradient reaches layer {l}")))?;
            let mut out = vjp.run(&by_name, floats, ids, &[(names::HIDDEN, &h), (names::HIDDEN_GRAD, &g)])?;
            collect(&mut out, vjp);
            seed = out.remove(names::GRAD_HIDDEN);
        }
        if let Some(vjp) = &mut self.front_vjp {
            let g = seed.take().ok_or_else(|| bug("no gradient reaches the front".into()))?;
            let mut out = vjp.run(&by_name, floats, ids, &[(names::HIDDEN_GRAD, &g)])?;
            collect(&mut out, vjp);
        }

        let mut result = Vec::with_capacity(params.len());
        for p in params {
            match grads.remove(&p.name) {
                Some(g) if g.shape() != &p.shape[..] => {
                    return Err(SessionError::Input(format!("grad.{} has shape {:?}, the parameter {:?}", p.name, g.shape(), p.shape)));
                }
                Some(g) => result.push(g.iter().copied().collect()),
                None => result.push(vec![0.0; p.value.len()]),
            }
        }
        Ok(Evaluated { losses, grads: result })
    }
}

/// A training step on ONNX Runtime, whole or segmented ([`Recompute`]): what the trainer runs.
pub enum StepRunner {
    Whole(crate::session::Runner),
    Layers(Box<SegmentedRunner>),
}

impl StepRunner {
    /// Losses and gradients (checkpoint layout, in `params` order) for one sample's data.
    pub fn run(&mut self, params: &[HostParam], floats: &HashMap<String, ArrayD<f32>>, ids: &HashMap<String, ArrayD<i64>>) -> Result<Evaluated, SessionError> {
        match self {
            StepRunner::Whole(r) => r.run(params, floats, ids),
            StepRunner::Layers(r) => r.run(params, floats, ids),
        }
    }
}
