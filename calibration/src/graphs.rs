//! Which values of a float graph to calibrate, and the augmented copy of the graph that
//! outputs them.
//!
//! A value is calibrated when it is the activation operand of a `MatMul` or `Gemm` whose other
//! operand is a weight: an initializer, or a node output computed from initializers only
//! (a `Transpose`, `Cast` or `DequantizeLinear` of one). Products of two activations (the
//! attention's `Q·Kᵀ` and `P·V`) have no weight side and stay float, so they are not measured.
//! The copy adds every such value (not already a graph input or output) to the graph outputs;
//! ONNX Runtime keeps an output through its optimisations, so running the copy yields the
//! float graph's own values.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use loc3r_bundle::manifest::Manifest;
use loc3r_bundle::Graph;
use loc3r_export::graph::proto::{ModelProto, ValueInfoProto};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use prost::Message;

use crate::error::{Error, Result};

/// Ops a float graph never holds: a graph with one is already quantized.
const QUANTIZED_OPS: [&str; 7] = ["QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulNBits", "MatMulInteger", "QLinearMatMul", "QGemm"];

/// One activation to measure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    pub name: String,
    /// A graph input (measured from what is fed) rather than a node output.
    pub graph_input: bool,
    /// The MatMul/Gemm nodes reading it.
    pub consumers: Vec<String>,
}

/// A graph of the float bundle to calibrate.
#[derive(Debug, Clone)]
pub struct Target {
    pub graph: Graph,
    /// sha256 of the `.onnx` followed by its `.onnx.data` (the cache's key).
    pub sha256: String,
    pub activations: Vec<Activation>,
    /// The augmented copy (its external data stays the bundle's file).
    pub augmented: Vec<u8>,
}

/// The activations of `model` that feed a MatMul/Gemm whose other operand is a weight; an
/// error names the quantized op when the graph is not float.
pub fn activations(graph: &str, model: &ModelProto) -> Result<Vec<Activation>> {
    let g = model.graph.as_ref().ok_or_else(|| Error::Bundle(format!("{graph}.onnx has no graph; re-export the bundle")))?;
    if let Some(n) = g.node.iter().find(|n| QUANTIZED_OPS.contains(&n.op_type())) {
        return Err(Error::AlreadyQuantized(format!(
            "the {graph} graph is already quantized (node `{}` is a {}); calibrate the float bundle: export the checkpoint without --weights, --preset or --activations",
            n.name(),
            n.op_type()
        )));
    }
    let inputs: HashSet<&str> = g.input.iter().map(|i| i.name()).collect();
    let mut constant: HashSet<&str> = g.initializer.iter().map(|t| t.name()).collect();
    for n in &g.node {
        // Nodes are in topological order: a node fed only by constants computes a constant.
        let fed: Vec<&str> = n.input.iter().map(String::as_str).filter(|i| !i.is_empty()).collect();
        if fed.iter().all(|i| constant.contains(i)) {
            constant.extend(n.output.iter().map(String::as_str));
        }
    }
    let mut found: Vec<Activation> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for n in g.node.iter().filter(|n| matches!(n.op_type(), "MatMul" | "Gemm")) {
        let (Some(a), Some(b)) = (n.input.first(), n.input.get(1)) else { continue };
        let activation = match (constant.contains(a.as_str()), constant.contains(b.as_str())) {
            (false, true) => a,
            (true, false) => b,
            _ => continue,
        };
        let k = *index.entry(activation.clone()).or_insert_with(|| {
            found.push(Activation { name: activation.clone(), graph_input: inputs.contains(activation.as_str()), consumers: Vec::new() });
            found.len() - 1
        });
        found[k].consumers.push(n.name().to_string());
    }
    Ok(found)
}

/// `model` with every non-input activation of `acts` added to its outputs.
pub fn augment(graph: &str, model: &ModelProto, acts: &[Activation]) -> Result<ModelProto> {
    let mut model = model.clone();
    let g = model.graph.as_mut().ok_or_else(|| Error::Bundle(format!("{graph}.onnx has no graph; re-export the bundle")))?;
    let outputs: HashSet<String> = g.output.iter().map(|o| o.name().to_string()).collect();
    let infos: HashMap<&str, &ValueInfoProto> = g.value_info.iter().map(|v| (v.name(), v)).collect();
    let mut added = Vec::new();
    for a in acts.iter().filter(|a| !a.graph_input && !outputs.contains(&a.name)) {
        // The exporter writes a value_info (dtype and shape) for every node output.
        let info = infos.get(a.name.as_str()).ok_or_else(|| Error::Bundle(format!("{graph}.onnx has no value_info for `{}`; re-export the bundle", a.name)))?;
        added.push((*info).clone());
    }
    g.output.extend(added);
    Ok(model)
}

/// Reads, scans and augments `graph` of the bundle at `dir`.
pub fn prepare(dir: &Path, manifest: &Manifest, graph: Graph) -> Result<Target> {
    let entry = manifest.graph(graph).map_err(|e| Error::Bundle(format!("{}: {e}", dir.display())))?;
    let onnx = dir.join(&entry.file);
    let file = loc3r_export::tensorrt::read_graph(graph.name(), &onnx)?;
    let acts = activations(graph.name(), &file.model)?;
    if acts.is_empty() {
        return Err(Error::Bundle(format!("{}: no MatMul reads a weight; is it a loc3r bundle graph?", onnx.display())));
    }
    let mut files = vec![onnx.clone()];
    files.extend(entry.data.as_ref().map(|d| dir.join(d)));
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let sha256 = loc3r_export::tensorrt::compile::content_hash(&refs)?;
    let augmented = augment(graph.name(), &file.model, &acts)?.encode_to_vec();
    Ok(Target { graph, sha256, activations: acts, augmented })
}

/// A CPU session of an augmented graph of the bundle at `dir`. It is loaded from memory with
/// the bundle as the folder of its external data: ONNX Runtime refuses external data outside
/// the model's own folder (a link included), and a copy of the weights would cost their size.
pub fn load_augmented(target: &Target, dir: &Path, threads: usize) -> Result<Session> {
    let graph = target.graph;
    let err = |e: ort::Error| Error::Runtime(loc3r::Error::ort(format!("loading the augmented {graph}"), e));
    let env = loc3r::ort_env::environment().map_err(|e| Error::Runtime(e.into()))?;
    let mut builder = Session::builder(env)
        .map_err(err)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| err(e.into()))?
        .with_config_entry("session.model_external_initializers_file_folder_path", dir.to_string_lossy())
        .map_err(|e| err(e.into()))?;
    if threads > 0 {
        builder = builder.with_intra_threads(threads).map_err(|e| err(e.into()))?;
    }
    builder.commit_from_memory(&target.augmented).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use loc3r_export::graph::proto::{GraphProto, NodeProto, TensorProto};

    fn node(name: &str, op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            name: Some(name.into()),
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..NodeProto::default()
        }
    }

    fn value(name: &str) -> ValueInfoProto {
        ValueInfoProto { name: Some(name.into()), ..ValueInfoProto::default() }
    }

    #[test]
    fn only_the_activation_side_of_weight_products_is_measured() {
        let g = GraphProto {
            node: vec![
                node("t", "Transpose", &["w"], "wt"),
                node("ln", "LayerNormalization", &["x", "g"], "h"),
                node("q", "MatMul", &["h", "wt"], "q_out"),
                node("k", "MatMul", &["h", "w"], "k_out"),
                node("scores", "MatMul", &["q_out", "k_out"], "s"),
                node("pool", "MatMul", &["w", "s"], "p"),
                node("in", "Gemm", &["x", "w", "b"], "y"),
            ],
            initializer: ["w", "g", "b"].iter().map(|n| TensorProto { name: Some(n.to_string()), ..TensorProto::default() }).collect(),
            input: vec![value("x")],
            output: vec![value("p")],
            value_info: vec![value("h"), value("s"), value("q_out")],
            ..GraphProto::default()
        };
        let model = ModelProto { graph: Some(g), ..ModelProto::default() };
        let acts = activations("t", &model).unwrap();
        let names: Vec<(&str, bool, usize)> = acts.iter().map(|a| (a.name.as_str(), a.graph_input, a.consumers.len())).collect();
        // h feeds two weight products (one through a Transpose of the weight); s is the pool's
        // activation side; x is a graph input; q_out·k_out has no weight side.
        assert_eq!(names, vec![("h", false, 2), ("s", false, 1), ("x", true, 1)]);
        let aug = augment("t", &model, &acts).unwrap();
        let outs: Vec<&str> = aug.graph.as_ref().unwrap().output.iter().map(|o| o.name()).collect();
        assert_eq!(outs, vec!["p", "h", "s"]);
    }

    #[test]
    fn a_quantized_graph_is_refused_by_node() {
        let g = GraphProto { node: vec![node("w/DequantizeLinear", "DequantizeLinear", &["c", "s"], "w")], ..GraphProto::default() };
        let e = activations("siglip", &ModelProto { graph: Some(g), ..ModelProto::default() }).unwrap_err();
        assert!(matches!(e, Error::AlreadyQuantized(_)) && e.to_string().contains("w/DequantizeLinear") && e.to_string().contains("float bundle"), "{e}");
    }
}
