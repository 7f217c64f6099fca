//! The per-graph context every builder of the model families works in: the graph builder
//! and the numeric settings of that graph, so that no builder threads a dtype through its
//! signature.

use std::collections::{BTreeMap, HashMap};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::graph::{ConstTensor, GraphBuilder, Value};
use crate::quant::activations::{ActivationQuant, ValueRange, W8_PER_CHANNEL};
use crate::quant::{QuantOptions, WeightQuant};
use crate::tensor::DType;

/// One graph under construction and its numeric settings.
///
/// Derefs to the [`GraphBuilder`], so helpers that need no setting (`cast_to`,
/// `softmax_f32`, `layer_norm`, ...) take `&mut GraphBuilder` and accept a `&mut ModelGraph`
/// as is; helpers that create weights or matmuls in the compute dtype take the context.
#[derive(Debug)]
pub struct ModelGraph {
    builder: GraphBuilder,
    /// Dtype of weights, matmuls and attention (f32 or f16). Norm statistics and softmax
    /// still run in f32; graph inputs and outputs the host reads or writes are f32 unless a
    /// family says otherwise (see each family's module comment).
    compute: DType,
    /// Epsilon shared by every normalisation layer of the graph, for families that keep it
    /// with their numerics (CUT3R); `None` where the builders pass it per call.
    norm_eps: Option<f64>,
    /// Weight-only quantization of the graph's selected Linear layers (`None`: float weights).
    weight_quant: Option<QuantOptions>,
    /// INT8 activations: the calibrated ranges of this graph's values (`None`: float activations).
    activation_quant: Option<ActivationRanges>,
}

/// The calibrated ranges of one graph, and the quantized copies already made (a value that
/// feeds several Linears, like q/k/v's input, gets one QuantizeLinear/DequantizeLinear pair).
#[derive(Debug)]
struct ActivationRanges {
    /// The cache file, for messages.
    cache: String,
    ranges: Arc<BTreeMap<String, ValueRange>>,
    quantized: HashMap<String, Value>,
}

impl ModelGraph {
    /// An empty graph `name` computing in `compute`.
    pub fn new(name: &str, compute: DType) -> ModelGraph {
        ModelGraph { builder: GraphBuilder::new(name), compute, norm_eps: None, weight_quant: None, activation_quant: None }
    }

    /// The same in `ai.onnx` opset `opset` ([`GraphBuilder::with_opset`]; before adding nodes).
    pub fn with_opset(self, opset: i64) -> ModelGraph {
        let ModelGraph { builder, compute, norm_eps, weight_quant, activation_quant } = self;
        ModelGraph { builder: builder.with_opset(opset), compute, norm_eps, weight_quant, activation_quant }
    }

    /// The same, with the export's weight quantization. Call before adding nodes: a graph
    /// with QDQ weights is built in opset 21 (blocked `DequantizeLinear`).
    pub fn with_weight_quant(self, quant: Option<&QuantOptions>) -> ModelGraph {
        let Some(q) = quant else { return self };
        let touched = loc3r_bundle::Graph::from_name(self.builder.name()).is_some_and(|g| q.touches(g));
        if !touched {
            return self;
        }
        let g = if q.scheme.format == loc3r_bundle::QuantFormat::Qdq { self.with_opset(crate::quant::QDQ_OPSET) } else { self };
        ModelGraph { weight_quant: Some(q.clone()), ..g }
    }

    /// The same, with INT8 activations from `quant`'s calibration cache where it covers this
    /// graph (`siglip`, `projector`, `cut3r_encoder`). Call before adding nodes: the graph is
    /// built in opset 21 like every graph with QDQ weights.
    pub fn with_activation_quant(self, quant: Option<&ActivationQuant>) -> ModelGraph {
        let Some(ranges) = quant.and_then(|q| q.ranges(self.builder.name())) else { return self };
        let cache = quant.map(|q| q.path.display().to_string()).unwrap_or_default();
        let g = if self.builder.opset() < crate::quant::QDQ_OPSET { self.with_opset(crate::quant::QDQ_OPSET) } else { self };
        ModelGraph { activation_quant: Some(ActivationRanges { cache, ranges: Arc::new(ranges.clone()), quantized: HashMap::new() }), ..g }
    }

    /// How the Linear at checkpoint path `path` stores its weight: `None` for float. Where
    /// the graph's activations are quantized, every Linear has int8 per-channel QDQ weights.
    pub fn weight_quant_for(&self, path: &str) -> Option<WeightQuant> {
        if self.activation_quant.is_some() {
            return Some(W8_PER_CHANNEL);
        }
        self.weight_quant.as_ref().and_then(|q| q.for_linear(self.builder.name(), path))
    }

    /// The input a Linear reads in place of `x`: `x` itself with float activations, else
    /// `DequantizeLinear(QuantizeLinear(x))` (int8, zero point 0, `scale = threshold / 127`
    /// from the calibration cache's range of the value called `x`).
    ///
    /// ```text
    /// x ─QuantizeLinear(scale, 0 i8)─▶ [int8] ─DequantizeLinear(scale, 0 i8)─▶ x'
    /// ```
    pub fn activation_input(&mut self, x: &Value) -> Result<Value> {
        let Some(act) = self.activation_quant.as_mut() else { return Ok(x.clone()) };
        if let Some(q) = act.quantized.get(x.name()) {
            return Ok(q.clone());
        }
        let Some(range) = act.ranges.get(x.name()).copied() else {
            return Err(Error::Invalid(format!(
                "the calibration cache {} has no range for `{}`, which feeds a Linear of the {} graph; it was made from another float graph: \
                 run loc3r-calibrate on the float bundle of this checkpoint and settings",
                act.cache,
                x.name(),
                self.builder.name()
            )));
        };
        let dt = x.dtype();
        let name = x.name().to_string();
        let scale = self.builder.constant_float(dt, &[range.scale()], &[]);
        let zero = self.builder.constant(ConstTensor::scalar(DType::I8, 0.0));
        let mut s = self.builder.scope(name.as_str());
        let q = s.op("QuantizeLinear", "QuantizeLinear", &[x, &scale, &zero], &[], DType::I8, x.shape().to_vec());
        let dq = s.op("DequantizeLinear", "DequantizeLinear", &[&q, &scale, &zero], &[], dt, x.shape().to_vec());
        if let Some(act) = self.activation_quant.as_mut() {
            act.quantized.insert(name, dq.clone());
        }
        Ok(dq)
    }

    /// The same, with the epsilon every normalisation layer of the graph uses.
    pub fn with_norm_eps(mut self, eps: f64) -> ModelGraph {
        self.norm_eps = Some(eps);
        self
    }

    /// Dtype of weights, matmuls and attention.
    pub fn compute(&self) -> DType {
        self.compute
    }

    /// The graph's normalisation epsilon; an error names the graph when its builder set none.
    pub fn norm_eps(&self) -> Result<f64> {
        self.norm_eps
            .ok_or_else(|| Error::Invalid(format!("graph `{}` was built without a normalisation epsilon (ModelGraph::with_norm_eps)", self.builder.name())))
    }

    /// The finished builder, for the bundle writer to check and save.
    pub fn into_builder(self) -> GraphBuilder {
        self.builder
    }
}

impl Deref for ModelGraph {
    type Target = GraphBuilder;
    fn deref(&self) -> &GraphBuilder {
        &self.builder
    }
}

impl DerefMut for ModelGraph {
    fn deref_mut(&mut self) -> &mut GraphBuilder {
        &mut self.builder
    }
}
