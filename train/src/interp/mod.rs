//! A float64 reference interpreter for [`GraphBuilder`] graphs: the oracle that
//! finite-difference gradient tests compare the autodiff's ONNX training graphs against.
//!
//! Every float dtype (f32, f16, bf16) is held and computed in f64, so a central
//! difference with a small step measures the true derivative of the graph's function
//! rather than float32 rounding. Integer dtypes (i64, i32, u8) are held as i64 and bool
//! as bool. Op semantics follow ONNX at the graph's opset (17 and 18 differ in where
//! reductions and `Split` take their axes and sizes).
//!
//! Evaluation is lazy: only the nodes the requested values depend on run, in node order
//! (the builder's nodes are topologically ordered), and an intermediate is dropped as soon
//! as no remaining node reads it. [`evaluate`] is the one-shot entry point;
//! [`Interpreter`] reads the initializers once for many evaluations, and a feed may
//! replace an initializer (a perturbed weight).
//!
//! Op families live in their own files: `elementwise.rs` (unary, binary, comparisons,
//! `Where`, `Clip`, `Cast`), `reduce.rs` (reductions, `ArgMax`, `Softmax`), `shape.rs`
//! (reshaping, joining, slicing, padding, shape-building), `index.rs` (`Gather*`,
//! `Scatter*`, `OneHot`, `NonZero`), `nn.rs` (`MatMul`, `Gemm`, `LayerNormalization`) and
//! `conv.rs` (`Conv`, `ConvTranspose`, `Resize`).

mod args;
mod conv;
pub(crate) use conv::{check_resize_attrs, resize_axis_weights};
mod elementwise;
mod index;
mod initializer;
mod nn;
mod reduce;
mod shape;
mod tensor;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod vs_ort;

use std::collections::{HashMap, HashSet};

use loc3r_export::graph::{Dim, GraphBuilder, Node, Value};
use loc3r_export::DType;

use args::NodeArgs;
pub use tensor::Tensor;

/// Why a graph could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum InterpError {
    /// A graph input the requested outputs depend on has no feed.
    #[error("graph input `{name}` is needed for the requested outputs but was not fed; add it to the feeds")]
    MissingFeed { name: String },
    /// A feed does not match the graph input's dtype or fixed dims.
    #[error("feed `{name}`: {problem}")]
    BadFeed { name: String, problem: String },
    /// A requested output or a node input names nothing in the graph.
    #[error("`{name}` is not a value of the graph (no node output, graph input or initializer has that name)")]
    UnknownValue { name: String },
    /// An initializer could not produce its bytes.
    #[error("initializer `{name}`: cannot read it as {dtype}: {problem}")]
    Initializer { name: String, dtype: DType, problem: String },
    /// The interpreter has no implementation of the node's op.
    #[error("node `{node}`: op `{op}` is not supported by the reference interpreter; implement it in train/src/interp/ or keep it out of graphs checked against the interpreter")]
    Unsupported { node: String, op: String },
    /// A node failed: bad attributes, mismatched shapes, out-of-range indices.
    #[error("node `{node}` ({op}): {problem}")]
    Op { node: String, op: String, problem: String },
    /// A tensor accessor was asked for another element kind than the tensor holds.
    #[error("the tensor holds {actual} elements, not {expected}")]
    WrongKind { expected: &'static str, actual: &'static str },
}

/// What one op implementation returns: its outputs in order, or what was wrong.
type OpResult = Result<Vec<Tensor>, String>;

/// Evaluates `outputs` (value names: graph outputs or any intermediate, graph input or
/// initializer) given `feeds` for the graph inputs they depend on.
///
/// Feeds must match the declared element kind (float, integer or bool) and fixed dims.
/// A feed may also replace an initializer (a perturbed weight for a finite difference);
/// feeds that nothing requested depends on are ignored. Reads the initializers the
/// outputs need on every call; [`Interpreter`] reads them once for many calls.
pub fn evaluate(g: &GraphBuilder, feeds: &HashMap<String, Tensor>, outputs: &[&str]) -> Result<HashMap<String, Tensor>, InterpError> {
    run_graph(g, feeds, outputs, |i| initializer::read(&g.initializers()[i]))
}

/// A graph with its initializers read once, for evaluating it many times (finite
/// differences run the same graph twice per perturbed element).
pub struct Interpreter<'g> {
    graph: &'g GraphBuilder,
    initializers: Vec<Tensor>,
}

impl<'g> Interpreter<'g> {
    /// Reads every initializer of `graph`.
    pub fn new(graph: &'g GraphBuilder) -> Result<Interpreter<'g>, InterpError> {
        let initializers = graph.initializers().iter().map(initializer::read).collect::<Result<_, _>>()?;
        Ok(Interpreter { graph, initializers })
    }

    /// Like [`evaluate`], without reading the initializers again.
    pub fn evaluate(&self, feeds: &HashMap<String, Tensor>, outputs: &[&str]) -> Result<HashMap<String, Tensor>, InterpError> {
        run_graph(self.graph, feeds, outputs, |i| Ok(self.initializers[i].clone()))
    }
}

/// The evaluation behind [`evaluate`] and [`Interpreter::evaluate`]; `initializer(i)` gives
/// the value of the graph's `i`-th initializer.
fn run_graph(
    g: &GraphBuilder,
    feeds: &HashMap<String, Tensor>,
    outputs: &[&str],
    initializer: impl Fn(usize) -> Result<Tensor, InterpError>,
) -> Result<HashMap<String, Tensor>, InterpError> {
    let nodes = g.nodes();
    let producer: HashMap<&str, usize> =
        nodes.iter().enumerate().flat_map(|(i, n)| n.outputs.iter().filter(|o| !o.is_empty()).map(move |o| (o.as_str(), i))).collect();
    let graph_inputs: HashMap<&str, &Value> = g.inputs().iter().map(|v| (v.name(), v)).collect();
    let initializers: HashMap<&str, usize> = g.initializers().iter().enumerate().map(|(i, init)| (init.value.name(), i)).collect();

    // Walk back from the requested values to the nodes and leaves they need.
    let mut needed_nodes = HashSet::new();
    let mut leaves = HashSet::new();
    let mut stack: Vec<&str> = outputs.to_vec();
    let mut seen = HashSet::new();
    while let Some(name) = stack.pop() {
        if !seen.insert(name) {
            continue;
        }
        if let Some(&i) = producer.get(name) {
            needed_nodes.insert(i);
            stack.extend(nodes[i].inputs.iter().filter(|s| !s.is_empty()).map(String::as_str));
        } else if graph_inputs.contains_key(name) || initializers.contains_key(name) {
            leaves.insert(name);
        } else {
            return Err(InterpError::UnknownValue { name: name.to_string() });
        }
    }

    // Leaves: a feed (checked against the declaration) wins over an initializer.
    let mut values: HashMap<&str, Tensor> = HashMap::new();
    for &name in &leaves {
        let declared = graph_inputs.get(name).copied().or_else(|| initializers.get(name).map(|&i| &g.initializers()[i].value));
        match (feeds.get(name), declared, initializers.get(name)) {
            (Some(feed), Some(v), _) => {
                check_declared(feed, v.dtype(), v.shape()).map_err(|problem| InterpError::BadFeed { name: name.to_string(), problem })?;
                values.insert(name, feed.clone());
            }
            (None, _, Some(&i)) => {
                values.insert(name, initializer(i)?);
            }
            _ => return Err(InterpError::MissingFeed { name: name.to_string() }),
        }
    }

    // How many needed nodes still read each value; requested values are never dropped.
    let mut order: Vec<usize> = needed_nodes.into_iter().collect();
    order.sort_unstable();
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for &i in &order {
        for input in nodes[i].inputs.iter().filter(|s| !s.is_empty()) {
            *readers.entry(input.as_str()).or_default() += 1;
        }
    }
    let keep: HashSet<&str> = outputs.iter().copied().collect();

    for &i in &order {
        let node = &nodes[i];
        let results = run_node(g, node, &values)?;
        for input in node.inputs.iter().filter(|s| !s.is_empty()) {
            let left = readers.get_mut(input.as_str()).map(|n| {
                *n -= 1;
                *n
            });
            if left == Some(0) && !keep.contains(input.as_str()) {
                values.remove(input.as_str());
            }
        }
        for (name, tensor) in results {
            values.insert(name, tensor);
        }
    }

    outputs
        .iter()
        .map(|&name| values.get(name).map(|t| (name.to_string(), t.clone())).ok_or_else(|| InterpError::UnknownValue { name: name.to_string() }))
        .collect()
}

/// Runs one node on the values computed so far; returns its named outputs.
fn run_node<'g>(g: &'g GraphBuilder, node: &'g Node, values: &HashMap<&str, Tensor>) -> Result<Vec<(&'g str, Tensor)>, InterpError> {
    let op_name = || if node.domain.is_empty() { node.op_type.clone() } else { format!("{}::{}", node.domain, node.op_type) };
    let fail = |problem: String| InterpError::Op { node: node.name.clone(), op: op_name(), problem };
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return Err(InterpError::Unsupported { node: node.name.clone(), op: op_name() });
    }
    let inputs = node
        .inputs
        .iter()
        .map(
            |name| if name.is_empty() { Ok(None) } else { values.get(name.as_str()).map(Some).ok_or_else(|| InterpError::UnknownValue { name: name.clone() }) },
        )
        .collect::<Result<Vec<_>, _>>()?;
    let args = NodeArgs { node, inputs, opset: g.opset() };
    let result = elementwise::run(&args)
        .or_else(|| reduce::run(&args))
        .or_else(|| shape::run(&args))
        .or_else(|| index::run(&args))
        .or_else(|| nn::run(&args))
        .or_else(|| conv::run(&args))
        .ok_or_else(|| InterpError::Unsupported { node: node.name.clone(), op: op_name() })?
        .map_err(fail)?;

    let mut named = Vec::new();
    let mut results = result.into_iter();
    for name in &node.outputs {
        let tensor = results.next().ok_or_else(|| fail(format!("the node has {} outputs, the op produces fewer", node.outputs.len())))?;
        if name.is_empty() {
            continue;
        }
        if let Some(declared) = g.node_value(name) {
            check_declared(&tensor, declared.dtype(), declared.shape()).map_err(|e| fail(format!("output `{name}`: {e}")))?;
        }
        named.push((name.as_str(), tensor));
    }
    Ok(named)
}

/// Checks that `t` has the element kind of `dtype` and the rank and fixed dims of `shape`.
fn check_declared(t: &Tensor, dtype: DType, shape: &[Dim]) -> Result<(), String> {
    let kind = match dtype {
        DType::F32 | DType::F16 | DType::BF16 => "float",
        DType::I64 | DType::I32 | DType::U8 | DType::I8 | DType::I4 => "integer",
        DType::Bool => "bool",
    };
    if t.kind() != kind {
        return Err(format!("holds {} elements, but the graph declares {dtype}", t.kind()));
    }
    let fits = t.shape().len() == shape.len() && t.shape().iter().zip(shape).all(|(&n, d)| d.fixed().is_none_or(|f| f == n));
    if !fits {
        return Err(format!("has shape {:?}, but the graph declares {}", t.shape(), loc3r_export::graph::shape_string(shape)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use loc3r_export::graph::{GraphBuilder, NodeSpec, OutputSpec};
    use loc3r_export::tensor::F32Tensor;
    use loc3r_export::{dims, DType};

    use super::testing::{assert_floats, eval, floats, ints};
    use super::{evaluate, InterpError, Interpreter};

    /// A graph with a branch the interpreter cannot run: asking only for the other branch
    /// never touches it.
    fn two_branches() -> (GraphBuilder, String, String) {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [2usize]);
        let unused = g.input("unused", DType::F32, [2usize]);
        let mut s = g.scope("t");
        let y = s.exp("Exp", &x);
        let z = s.mul("Mul", &y, &x);
        let spec = NodeSpec {
            op_type: "FusedThing",
            domain: "com.microsoft",
            inputs: vec![Some(&unused)],
            outputs: vec![OutputSpec { name: None, dtype: DType::F32, shape: dims![2] }],
            ..NodeSpec::default()
        };
        let custom = s.node("Fused", spec).remove(0);
        (g, z.name().to_string(), custom.name().to_string())
    }

    /// A feed replaces an initializer; an [`Interpreter`] gives the same values as
    /// [`evaluate`] on repeated calls.
    #[test]
    fn feeds_override_initializers_and_interpreters_are_reusable() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [2usize]);
        let w = g.initializer("w", Arc::new(F32Tensor::new(vec![2], vec![2.0, 3.0])), DType::F32);
        let y = g.scope("t").mul("Mul", &x, &w);
        let x_feed = ("x".to_string(), floats(&[2], &[1.0, -1.0]));
        let plain: HashMap<String, _> = [x_feed.clone()].into_iter().collect();
        let perturbed: HashMap<String, _> = [x_feed, ("w".to_string(), floats(&[2], &[2.5, 3.0]))].into_iter().collect();
        let interp = Interpreter::new(&g).unwrap();
        for _ in 0..2 {
            assert_floats(&interp.evaluate(&plain, &[y.name()]).unwrap()[y.name()], &[2], &[2.0, -3.0]);
            assert_floats(&interp.evaluate(&perturbed, &[y.name()]).unwrap()[y.name()], &[2], &[2.5, -3.0]);
        }
        assert_floats(&evaluate(&g, &perturbed, &[y.name()]).unwrap()[y.name()], &[2], &[2.5, -3.0]);
        let bad: HashMap<String, _> = [("x".to_string(), floats(&[2], &[1.0, 1.0])), ("w".to_string(), floats(&[3], &[1.0; 3]))].into_iter().collect();
        let err = interp.evaluate(&bad, &[y.name()]).unwrap_err().to_string();
        assert!(err.contains("feed `w`: has shape [3], but the graph declares [2]"), "{err}");
    }

    #[test]
    fn evaluates_only_what_the_outputs_need() {
        let (g, z, custom) = two_branches();
        let feeds: HashMap<String, _> = [("x".to_string(), floats(&[2], &[0.0, 1.0]))].into_iter().collect();
        let y = "t/Exp/output_0";
        let got = evaluate(&g, &feeds, &[&z, y, "x"]).unwrap();
        assert_floats(&got[z.as_str()], &[2], &[0.0, std::f64::consts::E]);
        assert_floats(&got[y], &[2], &[1.0, std::f64::consts::E]);
        assert_floats(&got["x"], &[2], &[0.0, 1.0]);
        let err = evaluate(&g, &feeds, &[&custom]).unwrap_err();
        assert!(matches!(err, InterpError::MissingFeed { ref name } if name == "unused"), "{err}");
        let feeds: HashMap<String, _> = [("unused".to_string(), floats(&[2], &[0.0, 1.0]))].into_iter().collect();
        let err = evaluate(&g, &feeds, &[&custom]).unwrap_err();
        assert!(matches!(err, InterpError::Unsupported { ref node, ref op } if node == "t/Fused" && op == "com.microsoft::FusedThing"), "{err}");
        assert!(err.to_string().contains("not supported by the reference interpreter"), "{err}");
    }

    #[test]
    fn feeds_and_names_are_checked() {
        let (g, z, _) = two_branches();
        let feeds: HashMap<String, _> = [("x".to_string(), ints(&[2], &[0, 1]))].into_iter().collect();
        let err = evaluate(&g, &feeds, &[&z]).unwrap_err().to_string();
        assert!(err.contains("feed `x`: holds integer elements, but the graph declares f32"), "{err}");
        let feeds: HashMap<String, _> = [("x".to_string(), floats(&[3], &[0.0, 1.0, 2.0]))].into_iter().collect();
        let err = evaluate(&g, &feeds, &[&z]).unwrap_err().to_string();
        assert!(err.contains("has shape [3], but the graph declares [2]"), "{err}");
        let err = evaluate(&g, &feeds, &["nope"]).unwrap_err();
        assert!(matches!(err, InterpError::UnknownValue { .. }), "{err}");
    }

    /// Initializers hold the value of their declared dtype: an f16 weight is rounded.
    #[test]
    fn initializers_are_read_in_their_dtype() {
        let mut g = GraphBuilder::new("t");
        let v = 0.1f32;
        let w16 = g.initializer("w16", Arc::new(F32Tensor::new(vec![1], vec![v])), DType::F16);
        let wbf = g.initializer("wbf", Arc::new(F32Tensor::new(vec![1], vec![v])), DType::BF16);
        let w32 = g.initializer("w32", Arc::new(F32Tensor::new(vec![1], vec![v])), DType::F32);
        let i32c = g.constant(loc3r_export::graph::ConstTensor::new(DType::I32, vec![2], loc3r_export::graph::ConstValues::Int(vec![-3, 4])).unwrap());
        let got = eval(&g, &[], &[&w16, &wbf, &w32, &i32c]);
        assert_floats(&got[0], &[1], &[half::f16::from_f32(v).to_f64()]);
        assert_floats(&got[1], &[1], &[half::bf16::from_f32(v).to_f64()]);
        assert_floats(&got[2], &[1], &[f64::from(v)]);
        super::testing::assert_ints(&got[3], &[2], &[-3, 4]);
    }
}
