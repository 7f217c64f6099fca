//! Reverse-mode automatic differentiation over the exporter's graph IR.
//!
//! [`differentiate`] appends to a forward graph (a [`GraphBuilder`] as the exporter builds it)
//! the vector-Jacobian products that carry the gradient of a scalar loss back to chosen
//! values (trainable graph inputs), in standard `ai.onnx` ops only, so the training graph
//! runs on any ONNX Runtime execution provider. The contract is written down in
//! `docs/training.md` ("Autodiff").
//!
//! ```text
//!   forward nodes, in order ──────────────────────────────────────────▶ loss
//!                                                                        │ seed (1, or the `loss_grad` input)
//!   param_grad ◀── Sum ◀── VJP(node k) ◀── … ◀── VJP(node n) ◀─────────────┘
//! ```
//! The algorithm, as ONNX Runtime's gradient builder and PyTorch's autograd do it:
//! 1. A value *needs* a gradient when its dtype is float, a trainable value reaches it and it
//!    reaches the loss. Integer and bool values (shapes, masks, ids) and everything that only
//!    depends on frozen inputs cost nothing.
//! 2. Nodes are visited in reverse order; each node whose outputs received gradient emits the
//!    VJP of its op ([`rules`]) for the inputs that need one, reusing the forward values
//!    (nothing is recomputed inside one graph).
//! 3. A value read by several nodes gets the `Sum` of their contributions, built once before
//!    its producer is visited. An output that received nothing counts as zero.
//! 4. Broadcasting ops reduce their gradient back to the operand's shape ([`unbroadcast`]).

#[cfg(test)]
mod cases;
#[cfg(test)]
mod ort_check;
mod rules;
#[cfg(test)]
pub(crate) mod tests;
mod vjp;

use std::collections::{HashMap, HashSet};

use loc3r_export::graph::{Dim, GraphBuilder, Value};
use loc3r_export::DType;

pub use rules::{has_rule, supported_ops};
use vjp::Vjp;

/// How the backward pass is seeded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Seed {
    /// ∂loss/∂loss = 1 as a constant.
    #[default]
    One,
    /// A graph input of the loss's dtype and shape with this name (`loss_grad`): 1 for plain
    /// training, the loss scale S for fp16 runs with dynamic loss scaling.
    Input(String),
}

/// What [`differentiate`] appended.
#[derive(Debug, Clone)]
pub struct Gradients {
    /// The seed input, when [`Seed::Input`] was asked for.
    pub seed: Option<Value>,
    /// `(value, ∂loss/∂value)` for every requested value, in the order asked; a value the
    /// loss does not depend on gets explicit zeros.
    pub grads: Vec<(Value, Value)>,
}

/// Why a training graph could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AutodiffError {
    /// The loss is not a float scalar.
    #[error("the loss `{name}` must be a float scalar (one element), found {found}")]
    LossNotScalar { name: String, found: String },
    /// A requested value is not float or not in the graph.
    #[error("cannot differentiate with respect to `{name}`: {why}")]
    BadTarget { name: String, why: String },
    /// A node on the path from a trainable value to the loss has an op without a VJP rule.
    #[error("node `{node}` ({op}) lies between a trainable value and the loss, but {op} has no gradient rule; supported: {}", supported_ops().join(", "))]
    Unsupported { node: String, op: String },
    /// A rule could not be applied to this node (e.g. an unsupported attribute).
    #[error("node `{node}` ({op}): {message}")]
    Rule { node: String, op: String, message: String },
    /// The built graph is not valid (a bug in a rule).
    #[error(transparent)]
    Graph(#[from] loc3r_export::graph::GraphError),
}

/// Appends the backward pass of `loss` with respect to `wrt` to `g`.
///
/// Backward nodes live under the scope `grad/<forward node name>`, accumulations under
/// `grad/<value name>`. The caller names the results as graph outputs (ORT training calls
/// them `<param>_grad`).
pub fn differentiate(g: &mut GraphBuilder, loss: &Value, wrt: &[Value], seed: &Seed) -> Result<Gradients, AutodiffError> {
    let numel_one = loss.shape().iter().all(|d| *d == Dim::Fixed(1));
    if !loss.dtype().is_float() || !numel_one {
        return Err(AutodiffError::LossNotScalar { name: loss.name().to_string(), found: format!("{loss:?}") });
    }
    for v in wrt {
        if !v.dtype().is_float() {
            return Err(AutodiffError::BadTarget { name: v.name().to_string(), why: format!("its dtype is {}", v.dtype()) });
        }
        if g.value(v.name()).is_none() {
            return Err(AutodiffError::BadTarget { name: v.name().to_string(), why: "the graph has no such value".into() });
        }
    }

    let forward = g.nodes().to_vec();
    let needs = needs_gradient(&forward, loss, wrt, |name| g.value(name).is_some_and(|v| v.dtype().is_float()));

    let (seed_value, seed_input) = match seed {
        Seed::One => (g.constant_float(loss.dtype(), &[1.0], &loss.fixed_shape().unwrap_or_default()), None),
        Seed::Input(name) => {
            let v = g.input(name, loss.dtype(), loss.shape().to_vec());
            (v.clone(), Some(v))
        }
    };
    let mut acc = Accumulator::default();
    acc.add(loss.name(), seed_value);

    for node in forward.iter().rev() {
        if !node.domain.is_empty() || !node.inputs.iter().any(|i| needs.contains(i.as_str())) {
            continue;
        }
        let grads_out: Vec<Option<Value>> = node.outputs.iter().map(|o| acc.take(g, o)).collect();
        if grads_out.iter().all(Option::is_none) {
            continue;
        }
        let rule = rules::rule(&node.op_type).ok_or_else(|| AutodiffError::Unsupported { node: node.name.clone(), op: node.op_type.clone() })?;
        let inputs: Vec<Option<Value>> = node.inputs.iter().map(|i| if i.is_empty() { None } else { g.value(i) }).collect();
        let outputs: Vec<Value> = node.outputs.iter().map(|o| g.node_value(o).cloned().expect("node outputs are values of the graph")).collect();
        let needed: Vec<bool> = node.inputs.iter().map(|i| needs.contains(i.as_str())).collect();
        let mut vjp = Vjp::new(g, node, inputs, outputs, grads_out, needed);
        rule(&mut vjp).map_err(|message| AutodiffError::Rule { node: node.name.clone(), op: node.op_type.clone(), message })?;
        for (input, grad) in vjp.finish().map_err(|message| AutodiffError::Rule { node: node.name.clone(), op: node.op_type.clone(), message })? {
            acc.add(&input, grad);
        }
    }

    let mut grads = Vec::with_capacity(wrt.len());
    for v in wrt {
        let grad = match acc.take(g, v.name()) {
            Some(grad) => grad,
            None => zeros_like(g, v),
        };
        grads.push((v.clone(), grad));
    }
    g.check()?;
    Ok(Gradients { seed: seed_input, grads })
}

/// Values that need a gradient: float, reachable from `wrt` and reaching `loss`.
fn needs_gradient(nodes: &[loc3r_export::graph::Node], loss: &Value, wrt: &[Value], is_float: impl Fn(&str) -> bool) -> HashSet<String> {
    let mut from_wrt: HashSet<String> = wrt.iter().map(|v| v.name().to_string()).collect();
    for node in nodes {
        if rules::is_constant_op(&node.op_type) {
            continue;
        }
        if node.inputs.iter().any(|i| from_wrt.contains(i)) {
            from_wrt.extend(node.outputs.iter().filter(|o| is_float(o)).cloned());
        }
    }
    let mut to_loss: HashSet<String> = HashSet::from([loss.name().to_string()]);
    for node in nodes.iter().rev() {
        if node.outputs.iter().any(|o| to_loss.contains(o)) {
            to_loss.extend(node.inputs.iter().filter(|i| !i.is_empty()).cloned());
        }
    }
    from_wrt.intersection(&to_loss).filter(|n| is_float(n)).cloned().collect()
}

/// Gradient contributions per value, summed once when the value's producer is visited.
#[derive(Default)]
struct Accumulator {
    parts: HashMap<String, Vec<Value>>,
}

impl Accumulator {
    fn add(&mut self, value: &str, grad: Value) {
        self.parts.entry(value.to_string()).or_default().push(grad);
    }

    /// The total gradient of `value`, or `None` when nothing contributed.
    fn take(&mut self, g: &mut GraphBuilder, value: &str) -> Option<Value> {
        let mut parts = self.parts.remove(value)?;
        if parts.len() == 1 {
            return parts.pop();
        }
        let shape = g.value(value).map(|v| v.shape().to_vec()).unwrap_or_else(|| parts[0].shape().to_vec());
        let dtype = parts[0].dtype();
        let mut s = g.scope(format!("grad/{value}"));
        let sum = s.node(
            "Sum",
            loc3r_export::graph::NodeSpec {
                op_type: "Sum",
                inputs: parts.iter().map(Some).collect(),
                outputs: vec![loc3r_export::graph::OutputSpec { name: None, dtype, shape }],
                ..Default::default()
            },
        );
        sum.into_iter().next()
    }
}

/// Zeros of `v`'s dtype and shape (a constant when the shape is fixed).
fn zeros_like(g: &mut GraphBuilder, v: &Value) -> Value {
    let mut s = g.scope(format!("grad/{}", v.name()));
    match v.fixed_shape() {
        Some(shape) => {
            let z = s.constant_of_shape("zeros", shape.iter().map(|&d| d as i64).collect::<Vec<_>>(), v.dtype(), 0.0);
            s.refine_shape(&z, v.shape().to_vec())
        }
        None => {
            let shape = s.shape("shape", v);
            let z = s.constant_of_shape("zeros", &shape, v.dtype(), 0.0);
            s.refine_shape(&z, v.shape().to_vec())
        }
    }
}

/// Whether `dtype` carries gradients.
pub fn is_differentiable(dtype: DType) -> bool {
    dtype.is_float()
}
