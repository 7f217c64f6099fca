//! Training graphs: an exporter forward graph, its losses, and the backward pass.
//!
//! ```text
//! exporter graph (weights as initializers) ─promote trainable weights to inputs─▶ + losses
//!   ─differentiate─▶ outputs: loss, loss.<part>, grad.<checkpoint tensor name>
//! ```
//! Trainable weights become graph inputs named exactly as in the checkpoint (ONNX Runtime
//! treats initializers as session constants; parameters change every step). The exporter
//! stores Linear weights transposed (`[in, out]`); such an input takes the transposed
//! tensor, and its gradient is transposed back so `grad.<name>` always has the
//! checkpoint's layout (docs/training.md, "The prepared sample and its gradients").

use std::sync::Arc;

use loc3r_export::checkpoint::Checkpoint;
use loc3r_export::graph::{Dim, GraphBuilder, Value};
use loc3r_export::models::{heads, ExportOptions};
use loc3r_export::{DType, TensorData};

use crate::autodiff::{differentiate, AutodiffError, Seed};
use crate::losses::{self, LossParts, LossWeights};

/// Why a training graph could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TrainGraphError {
    /// The checkpoint or config given cannot make the forward graph.
    #[error(transparent)]
    Export(#[from] loc3r_export::Error),
    /// A requested trainable tensor is not in the forward graph.
    #[error("trainable tensor `{0}` is not a weight of the {1} graph; check --train and the checkpoint's tensor names")]
    UnknownParam(String, String),
    /// No weight of the graph matched the trainable selection.
    #[error("nothing to train in the {0} graph: no weight matches the selection")]
    NothingToTrain(String),
    /// A bug: the backward pass could not be built.
    #[error(transparent)]
    Autodiff(#[from] AutodiffError),
}

/// A trainable tensor of a training graph.
#[derive(Debug, Clone)]
pub struct Param {
    /// The checkpoint tensor name (also the graph input's name).
    pub name: String,
    /// The graph input.
    pub input: Value,
    /// Whether the input holds the checkpoint tensor transposed (Linear weights).
    pub transposed: bool,
    /// The initial value, as the forward graph held it (in the input's layout).
    pub initial: Arc<dyn TensorData>,
    /// ∂loss/∂input, in the input's layout.
    pub grad: Value,
    /// The `grad.<name>` output, in the checkpoint's layout.
    pub grad_output: Value,
}

impl Param {
    /// The initial value as f32, in the graph input's layout (what the input is fed at step 0).
    pub fn initial_values(&self) -> std::io::Result<ndarray::ArrayD<f32>> {
        let mut bytes = Vec::new();
        self.initial.write_as(DType::F32, &mut bytes)?;
        let values: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        ndarray::ArrayD::from_shape_vec(self.initial.shape(), values)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("`{}`: {e}", self.name)))
    }
}

/// A forward graph extended with its losses and gradients.
#[derive(Debug)]
pub struct TrainingGraph {
    pub graph: GraphBuilder,
    pub params: Vec<Param>,
    /// `loss` and `loss.<part>` outputs.
    pub loss_outputs: Vec<Value>,
    /// The LoRA adapters the graph carries (their factors are among `params`), empty without LoRA.
    pub lora: Vec<crate::lora::Adapter>,
}

/// Promotes every weight of `g` for which `trainable(name)` holds to an input, builds the
/// gradient of `loss`, and declares the outputs `loss`, `loss.<part>` and `grad.<name>`.
pub fn finish(mut g: GraphBuilder, trainable: impl Fn(&str) -> bool, loss: &Value, parts: &[(&str, Value)]) -> Result<TrainingGraph, TrainGraphError> {
    let names: Vec<String> = g.initializers().iter().filter(|i| !i.inline && trainable(i.value.name())).map(|i| i.value.name().to_string()).collect();
    if names.is_empty() {
        return Err(TrainGraphError::NothingToTrain(g.name().to_string()));
    }
    let mut promoted = Vec::with_capacity(names.len());
    for name in &names {
        let init = g.promote_to_input(name).ok_or_else(|| TrainGraphError::UnknownParam(name.clone(), g.name().to_string()))?;
        promoted.push(init);
    }
    let wrt: Vec<Value> = promoted.iter().map(|i| i.value.clone()).collect();
    let grads = differentiate(&mut g, loss, &wrt, &Seed::One)?;

    let mut loss_outputs = vec![g.output("loss", loss)];
    for (part, value) in parts {
        loss_outputs.push(g.output(&format!("loss.{part}"), value));
    }
    let mut params = Vec::with_capacity(promoted.len());
    for (init, (_, grad)) in promoted.into_iter().zip(grads.grads) {
        let transposed = init.data.transposed_from_checkpoint();
        let name = init.value.name().to_string();
        let in_checkpoint_layout = if transposed { g.scope(format!("grad/{name}")).transpose("to_checkpoint_layout", &grad, &[1, 0]) } else { grad.clone() };
        let grad_output = g.output(&format!("grad.{name}"), &in_checkpoint_layout);
        params.push(Param { name, input: init.value, transposed, initial: init.data, grad, grad_output });
    }
    Ok(TrainingGraph { graph: g, params, loss_outputs, lora: Vec::new() })
}

/// Input names of the heads training graph's targets.
pub mod targets {
    /// `[batch, vision_tokens, 2]` f32: BEV ground truth per pooled grid token.
    pub const BEV_TARGET: &str = "bev_target";
    /// `[batch, vision_tokens]` f32: 1 where the BEV target is reliable.
    pub const BEV_MASK: &str = "bev_mask";
    /// `[batch, 2]` f32: the agent's position in the BEV frame.
    pub const POS_TARGET: &str = "pos_target";
    /// `[batch, K]` f32: the wrapped-Gaussian orientation target q.
    pub const ORI_TARGET: &str = "ori_target";
    /// `[batch]` f32: Σ_k q_k log q_k (makes `loss.ori` the exact KL).
    pub const ORI_TARGET_NEG_ENTROPY: &str = "ori_target_neg_entropy";
    /// `[batch]` f32: 1 when the sample carries a ground-truth situation.
    pub const SITUATION_VALID: &str = "situation_valid";
}

/// Phase A of the training recipe: the exporter's `heads` graph (position, orientation and
/// BEV heads on LLM hidden states) with L_BEV and L_sit, trainable heads. L_LM does not
/// depend on the heads and is left out.
pub fn heads(ckpt: &Checkpoint, weights: &LossWeights) -> Result<TrainingGraph, TrainGraphError> {
    let cfg = ckpt.config();
    let mut g = heads::graph(ckpt, &export_options(ckpt))?;
    let k = cfg.loc3r.orientation_bins;
    let batch = || Dim::sym("batch");
    let tokens = || Dim::sym("vision_tokens");
    let position = forward_output(&g, "position")?;
    let orientation = forward_output(&g, "orientation_logits")?;
    let bev = forward_output(&g, "bev")?;
    let bev_target = g.input(targets::BEV_TARGET, DType::F32, [batch(), tokens(), 2.into()]);
    let bev_mask = g.input(targets::BEV_MASK, DType::F32, [batch(), tokens()]);
    let pos_target = g.input(targets::POS_TARGET, DType::F32, [batch(), 2.into()]);
    let ori_target = g.input(targets::ORI_TARGET, DType::F32, [batch(), k.into()]);
    let ori_h = g.input(targets::ORI_TARGET_NEG_ENTROPY, DType::F32, [batch()]);
    let valid = g.input(targets::SITUATION_VALID, DType::F32, [batch()]);

    let parts = LossParts {
        lm: None,
        bev: Some(losses::bev_loss(&mut g, &bev, &bev_target, &bev_mask)),
        pos: Some(losses::position_loss(&mut g, &position, &pos_target, &valid)),
        ori: Some(losses::orientation_loss(&mut g, &orientation, &ori_target, &ori_h, &valid)),
    };
    let total = losses::total(&mut g, &parts, weights);
    let named: Vec<(&str, Value)> =
        [("bev", &parts.bev), ("pos", &parts.pos), ("ori", &parts.ori)].into_iter().filter_map(|(n, v)| v.clone().map(|v| (n, v))).collect();
    finish(g, |name| name.starts_with("model.loc3r.") && name.contains("_head."), &total, &named)
}

/// How training builds the exporter's graphs: f32 throughout, the config's pooling, and the
/// decoder with the concat KV layout (fed an empty past, it is a full-sequence forward).
/// The export options training graphs are built with (f32, the checkpoint's pooling and CUT3R
/// size, the concat KV cache, no point maps).
pub fn export_options(ckpt: &Checkpoint) -> ExportOptions {
    let cfg = ckpt.config();
    ExportOptions {
        precision: DType::F32,
        pooling: cfg.mm_spatial_pool_mode,
        cut3r_size: (cfg.cut3r.input_size[0], cfg.cut3r.input_size[1]),
        cut3r_points: false,
        kv_cache: loc3r_bundle::KvCacheLayout::Concat,
        // Training updates float weights; quantization is an export-time choice.
        weights: None,
    }
}

fn forward_output(g: &GraphBuilder, name: &str) -> Result<Value, TrainGraphError> {
    g.outputs()
        .iter()
        .find(|v| v.name() == name)
        .cloned()
        .ok_or_else(|| TrainGraphError::Export(loc3r_export::Error::Invalid(format!("the {} graph has no output `{name}`", g.name()))))
}

/// The exporter's Qwen2 decoder (concat KV layout, empty past: a full-sequence forward) as a
/// training graph: `loss = Σ hidden_states ⊙ projection` for a `projection` input of the hidden
/// states' shape, gradients for the weights `trainable` selects. The building block of the
/// LLM's training graph, and the proof that autodiff handles everything the decoder is built
/// from (RMSNorm, RoPE, GQA attention with the in-graph causal mask, SwiGLU).
pub fn decoder_probe(ckpt: &Checkpoint, trainable: impl Fn(&str) -> bool) -> Result<TrainingGraph, TrainGraphError> {
    let mut g = loc3r_export::models::qwen2::graph(ckpt, &export_options(ckpt))?;
    let hidden = forward_output(&g, loc3r_bundle::io::decoder::HIDDEN_STATES)?;
    let projection = g.input("projection", DType::F32, hidden.shape().to_vec());
    let mut s = g.scope("loss");
    let weighted = s.mul("weighted", &hidden, &projection);
    let loss = s.reduce_sum("sum", &weighted, &[], false);
    finish(g, trainable, &loss, &[])
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use loc3r_export::checkpoint::Requirements;
    use loc3r_export::tiny::{make_tiny, TinyOptions};
    use ndarray::{ArrayD, IxDyn};

    use super::*;
    use crate::autodiff::tests::Rng;
    use crate::check::{finite_difference_failures, onnx_runtime_disagreements};
    use crate::interp::{evaluate, Tensor};
    use crate::losses::orientation_target;

    fn tiny_checkpoint(dir: &std::path::Path, seed: u64) -> Checkpoint {
        let ck = dir.join("ck");
        make_tiny(&ck, &TinyOptions { seed, ..TinyOptions::default() }, |_, _| {}).expect("tiny checkpoint");
        Checkpoint::open(&ck, None, Requirements::default()).expect("opens")
    }

    fn random(rng: &mut Rng, shape: &[usize], lo: f64, hi: f64) -> Tensor {
        let n = shape.iter().product();
        Tensor::Float(ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|_| rng.uniform(lo, hi)).collect()).expect("shape"))
    }

    /// The exporter's own heads graph, differentiated: every heads tensor's gradient against
    /// central differences on the f64 interpreter (24 elements per tensor), with a batch of
    /// two samples, one without a situation, and a partly masked BEV.
    #[test]
    fn heads_gradients_match_finite_differences_on_the_exported_graph() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ckpt = tiny_checkpoint(dir.path(), 5);
        let cfg = ckpt.config().clone();
        let (h, k) = (cfg.hidden_size, cfg.loc3r.orientation_bins);
        let tg = heads(&ckpt, &LossWeights::default()).expect("heads training graph");
        let names: Vec<&str> = tg.params.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(tg.params.len(), 10, "pos_head.{{0,2}}, ori_head.{{0,2}} (weight, bias), bev_head (weight, bias): {names:?}");
        assert!(tg.params.iter().filter(|p| p.transposed).count() == 5, "every Linear weight is stored transposed");

        let mut rng = Rng::new(11);
        let mut feeds: HashMap<String, Tensor> = HashMap::new();
        feeds.insert("pos_hidden".into(), random(&mut rng, &[2, h], -1.0, 1.0));
        feeds.insert("ori_hidden".into(), random(&mut rng, &[2, h], -1.0, 1.0));
        feeds.insert("vision_hidden".into(), random(&mut rng, &[2, 3, h], -1.0, 1.0));
        feeds.insert(targets::BEV_TARGET.into(), random(&mut rng, &[2, 3, 2], -2.0, 2.0));
        feeds.insert(targets::BEV_MASK.into(), Tensor::Float(ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1.0, 0.0, 1.0, 1.0, 1.0, 0.0]).expect("shape")));
        feeds.insert(targets::POS_TARGET.into(), random(&mut rng, &[2, 2], -2.0, 2.0));
        let (mut q, mut qh) = (Vec::new(), Vec::new());
        for yaw in [1.0, -0.4] {
            let (t, e) = orientation_target(yaw, k, cfg.loc3r.orientation_sigma_deg.to_radians());
            q.extend(t);
            qh.push(e);
        }
        feeds.insert(targets::ORI_TARGET.into(), Tensor::Float(ArrayD::from_shape_vec(IxDyn(&[2, k]), q).expect("shape")));
        feeds.insert(targets::ORI_TARGET_NEG_ENTROPY.into(), Tensor::Float(ArrayD::from_shape_vec(IxDyn(&[2]), qh).expect("shape")));
        feeds.insert(targets::SITUATION_VALID.into(), Tensor::Float(ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.0, 0.0]).expect("shape")));
        for p in &tg.params {
            feeds.insert(p.name.clone(), Tensor::Float(p.initial_values().expect("weights").mapv(f64::from)));
        }

        let loss = tg.loss_outputs[0].clone();
        let inputs: Vec<Value> = tg.params.iter().map(|p| p.input.clone()).collect();
        let out = evaluate(&tg.graph, &feeds, &tg.params.iter().map(|p| p.grad_output.name()).collect::<Vec<_>>()).expect("evaluates");
        for p in &tg.params {
            let grad = out[p.grad_output.name()].float().expect("float");
            let want: Vec<usize> = if p.transposed { p.initial.shape().iter().rev().copied().collect() } else { p.initial.shape().to_vec() };
            assert_eq!(grad.shape(), &want[..], "grad.{} has the checkpoint's layout", p.name);
            assert!(grad.iter().any(|x| *x != 0.0), "grad.{} is not all zero", p.name);
        }
        let grads_in_input_layout: Vec<Value> = tg.params.iter().map(|p| p.grad.clone()).collect();
        let failures = finite_difference_failures(&tg.graph, &feeds, &loss, &inputs, &grads_in_input_layout, "heads", 24);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// The exporter's Qwen2 decoder differentiated: weights of both layers (attention with
    /// RoPE and GQA, biases, norms, MLP) against central differences on the f64 interpreter
    /// (12 elements per tensor), on a 5-token sequence.
    #[test]
    fn decoder_gradients_match_finite_differences_on_the_exported_graph() {
        let dir = tempfile::tempdir().expect("temp dir");
        let ckpt = tiny_checkpoint(dir.path(), 9);
        let cfg = ckpt.config().clone();
        let wanted = [
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.self_attn.k_proj.bias",
            "model.layers.0.self_attn.v_proj.weight",
            "model.layers.0.input_layernorm.weight",
            "model.layers.1.self_attn.o_proj.weight",
            "model.layers.1.post_attention_layernorm.weight",
            "model.layers.1.mlp.gate_proj.weight",
            "model.layers.1.mlp.down_proj.weight",
            "model.norm.weight",
        ];
        let tg = decoder_probe(&ckpt, |name| wanted.contains(&name)).expect("decoder training graph");
        assert_eq!(tg.params.len(), wanted.len());
        let (s, h, kvh, d) = (5usize, cfg.hidden_size, cfg.num_key_value_heads, cfg.head_dim());
        let mut rng = Rng::new(21);
        let mut feeds: HashMap<String, Tensor> = HashMap::new();
        feeds.insert("inputs_embeds".into(), random(&mut rng, &[1, s, h], -1.0, 1.0));
        feeds.insert("projection".into(), random(&mut rng, &[1, s, h], -1.0, 1.0));
        feeds.insert("attention_mask".into(), Tensor::Int(ArrayD::from_elem(IxDyn(&[1, s]), 1)));
        feeds.insert("position_ids".into(), Tensor::Int(ArrayD::from_shape_vec(IxDyn(&[1, s]), (0..s as i64).collect()).expect("shape")));
        for i in 0..cfg.num_hidden_layers {
            for name in [loc3r_bundle::io::decoder::past_key(i), loc3r_bundle::io::decoder::past_value(i)] {
                feeds.insert(name, Tensor::Float(ArrayD::zeros(IxDyn(&[1, kvh, 0, d]))));
            }
        }
        for p in &tg.params {
            feeds.insert(p.name.clone(), Tensor::Float(p.initial_values().expect("weights").mapv(f64::from)));
        }
        let inputs: Vec<Value> = tg.params.iter().map(|p| p.input.clone()).collect();
        let grads: Vec<Value> = tg.params.iter().map(|p| p.grad.clone()).collect();
        let failures = finite_difference_failures(&tg.graph, &feeds, &tg.loss_outputs[0], &inputs, &grads, "decoder", 12);
        assert!(failures.is_empty(), "{}", failures.join("\n"));

        // The same training graph on ONNX Runtime (f32) against the interpreter's analytic gradients.
        let graph_dir = dir.path().join("decoder_train");
        std::fs::create_dir_all(&graph_dir).expect("dir");
        let names: Vec<&str> = tg.params.iter().map(|p| p.grad_output.name()).collect();
        let (bad, _) = onnx_runtime_disagreements(&tg.graph, &feeds, &names, &graph_dir);
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}
