//! The per-graph context every builder of the model families works in: the graph builder
//! and the numeric settings of that graph, so that no builder threads a dtype through its
//! signature.

use std::ops::{Deref, DerefMut};

use crate::error::{Error, Result};
use crate::graph::GraphBuilder;
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
}

impl ModelGraph {
    /// An empty graph `name` computing in `compute`.
    pub fn new(name: &str, compute: DType) -> ModelGraph {
        ModelGraph { builder: GraphBuilder::new(name), compute, norm_eps: None, weight_quant: None }
    }

    /// The same in `ai.onnx` opset `opset` ([`GraphBuilder::with_opset`]; before adding nodes).
    pub fn with_opset(self, opset: i64) -> ModelGraph {
        let ModelGraph { builder, compute, norm_eps, weight_quant } = self;
        ModelGraph { builder: builder.with_opset(opset), compute, norm_eps, weight_quant }
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

    /// How the Linear at checkpoint path `path` stores its weight: `None` for float.
    pub fn weight_quant_for(&self, path: &str) -> Option<WeightQuant> {
        self.weight_quant.as_ref().and_then(|q| q.for_linear(self.builder.name(), path))
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
