//! `loc3r-export lint BUNDLE --target tensorrt|tensorrt-rtx`: a static check that every graph
//! of a bundle goes to TensorRT whole, without a GPU.
//!
//! ONNX Runtime hands TensorRT the nodes its parser accepts and runs the rest on other
//! providers; a graph split that way cannot become one EP-context engine and silently runs
//! layers on the CPU. The rules (ids as in docs/tensorrt.md):
//!
//! | id  | check |
//! |-----|-------|
//! | G01 | default-domain opset the parser reads (≤ 20 before TensorRT 10.13, ≤ 24 after); IR version ONNX Runtime reads |
//! | G02 | only the default ONNX domain (no `com.microsoft` contrib ops) |
//! | G03 | graph inputs/outputs are tensors with a known element type, full rank, sizes or named dims |
//! | G04 | element types TensorRT has (no double, string, complex, 16-bit or unsigned ints beyond uint8; uint8 only at graph I/O; 8/4-bit types only around Q/DQ) |
//! | G05 | every op in TensorRT 10's parser table, with the restrictions that table states |
//! | G06 | no `If`, `Loop`, `Scan` |
//! | G07 | no graph input value reaches a shape position (Reshape shape, Slice bounds, Range, …) |
//! | G08 | axes and similar inputs are build-time constants |
//! | G09 | a computed Reshape shape that can hold 0 (an empty KV cache) sets `allowzero=1` |
//! | G10 | no data-dependent output shapes (NonZero, NonMaxSuppression, TopK with a runtime K) |
//! | G11 | no tensor of 2^31 elements or more at the profile's largest shapes (warning) |
//! | G12 | graph names unique within the bundle, node outputs unique |
//! | G13 | input names usable in profile strings (no `,` or `:`) |
//! | G14 | the protobuf under 2 GiB; external data in one file per graph, relative, inside the bundle |
//! | G16 | no Dropout in training mode |
//! | F01 | fp16 hazards of strongly typed engines: squares and norms, softmax, exp, sin/cos and inf/NaN constants in fp16 |
//! | I01 | large int64 tensors computed with int64 arithmetic (warning) |
//! | P01 | every dynamic input dimension has a profile rule |
//!
//! Errors mean the graph will not become one TensorRT engine (or will produce wrong numbers);
//! warnings mean it will, at some cost the message names.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use loc3r_bundle::manifest::{Manifest, Precision};

use super::ops::{self, OpSupport};
use super::profile::{dim_ranges, eval_dim, DimRange, ProfileLimits};
use super::{read_graph, GraphFile, LintTarget, TrtVersion};
use crate::error::{Error, Result};
use crate::graph::proto::{self, tensor_proto::DataType, tensor_shape_proto::dimension, type_proto};

/// The largest protobuf TensorRT's parser and ONNX Runtime read.
const PROTOBUF_LIMIT: u64 = (1 << 31) - 1;
/// TensorRT's per-tensor element limit (large-tensor support is partial).
const VOLUME_LIMIT: i128 = 1 << 31;
/// The largest IR version ONNX Runtime 1.31 reads.
const MAX_IR_VERSION: i64 = 11;
/// TopK's largest K in TensorRT.
const TOPK_MAX_K: i64 = 3840;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem, located as precisely as the graph allows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The rule id (`G05`).
    pub rule: &'static str,
    pub graph: String,
    /// The node's name (`#index` when it has none); absent for graph-level findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op_type: Option<String>,
    /// What is wrong and why it matters to TensorRT.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

/// Per-graph summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GraphSummary {
    pub graph: String,
    pub nodes: usize,
    pub errors: usize,
    pub warnings: usize,
    /// No error: TensorRT can take the whole graph (one engine, no CPU layers).
    pub whole_graph_on_tensorrt: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LintReport {
    pub bundle: PathBuf,
    pub target: LintTarget,
    /// The oldest TensorRT parser the graphs were checked against.
    pub tensorrt: String,
    pub graphs: Vec<GraphSummary>,
    pub findings: Vec<Finding>,
}

impl LintReport {
    pub fn errors(&self) -> usize {
        self.findings.iter().filter(|f| f.severity == Severity::Error).count()
    }
    pub fn warnings(&self) -> usize {
        self.findings.iter().filter(|f| f.severity == Severity::Warning).count()
    }
    pub fn passed(&self) -> bool {
        self.errors() == 0
    }
}

/// What to lint against.
#[derive(Debug, Clone, Copy)]
pub struct LintOptions {
    pub target: LintTarget,
    /// The oldest TensorRT the engines will be built with (TensorRT-RTX parses like 10.14).
    pub tensorrt: TrtVersion,
    /// The profile limits, for the volume estimate (G11) and the zero-length check (G09).
    pub limits: Option<ProfileLimits>,
}

/// Lints every graph of the bundle at `bundle`. `Err` only for input that is not a readable
/// bundle; incompatibilities are findings in the report.
pub fn lint_bundle(bundle: &Path, opts: &LintOptions) -> Result<LintReport> {
    if !bundle.is_dir() {
        return Err(Error::Invalid(format!("{}: not a directory; name a bundle directory (written by loc3r-export export)", bundle.display())));
    }
    let manifest = Manifest::read(bundle).map_err(|e| Error::Invalid(format!("{e}; name a bundle directory (written by loc3r-export export)")))?;
    let limits = match opts.limits {
        Some(l) => l,
        None => ProfileLimits::resolve(&manifest, None, None, None)?,
    };
    let ranges = dim_ranges(&limits, &manifest);
    let mut findings = Vec::new();
    let mut graphs = Vec::new();
    let mut graph_names: HashMap<String, String> = HashMap::new();
    for (name, entry) in &manifest.graphs {
        let file = read_graph(name, &bundle.join(&entry.file))?;
        let mut graph_findings = lint_graph(&file, bundle, manifest.precision, opts, &ranges);
        let proto_name = file.model.graph.as_ref().map(|g| g.name().to_string()).unwrap_or_default();
        if let Some(other) = graph_names.insert(proto_name.clone(), name.clone()) {
            graph_findings.push(Finding {
                severity: Severity::Error,
                rule: "G12",
                graph: name.clone(),
                node: None,
                op_type: None,
                message: format!("the ONNX graph name `{proto_name}` is also the name of the {other} graph; ONNX Runtime's engine cache key uses it, so one engine could be taken for the other"),
                fix: "give every graph of the bundle its own name (re-export the bundle)".into(),
            });
        }
        let nodes = file.model.graph.as_ref().map_or(0, |g| g.node.len());
        let errors = graph_findings.iter().filter(|f| f.severity == Severity::Error).count();
        graphs.push(GraphSummary { graph: name.clone(), nodes, errors, warnings: graph_findings.len() - errors, whole_graph_on_tensorrt: errors == 0 });
        findings.extend(graph_findings);
    }
    findings.sort_by(|a, b| (a.severity, &a.graph).cmp(&(b.severity, &b.graph)));
    let tensorrt = match opts.target {
        LintTarget::Tensorrt => format!("TensorRT {}", opts.tensorrt),
        LintTarget::TensorrtRtx => "TensorRT-RTX (parser of TensorRT 10.14)".to_string(),
    };
    Ok(LintReport { bundle: bundle.to_path_buf(), target: opts.target, tensorrt, graphs, findings })
}

/// Lints one decoded graph. `bundle` locates its external data; `ranges` are the profile's
/// dimension ranges (for G09, G11 and P01).
pub fn lint_graph(file: &GraphFile, bundle: &Path, precision: Precision, opts: &LintOptions, ranges: &BTreeMap<&'static str, DimRange>) -> Vec<Finding> {
    let mut lint = GraphLint::new(file, opts, ranges);
    let Some(graph) = file.model.graph.as_ref() else {
        lint.graph_error("G03", "the model has no graph".into(), "re-export the bundle".into());
        return lint.findings;
    };
    lint.model_level(&file.model, precision);
    lint.io(graph);
    lint.storage(graph, file, bundle);
    for (index, node) in graph.node.iter().enumerate() {
        lint.node(index, node);
    }
    lint.value_types(graph);
    lint.volumes(graph);
    lint.findings
}

/// The facts about one graph the rules need.
struct GraphLint<'a> {
    graph: String,
    opts: &'a LintOptions,
    ranges: &'a BTreeMap<&'static str, DimRange>,
    /// Element type of every named value (inputs, outputs, value_info, initializers, constants).
    dtypes: HashMap<String, i32>,
    /// Shape of every value with one: sizes, or symbolic expressions.
    shapes: HashMap<String, Vec<ShapeDim>>,
    /// Values known at build time: initializers, Constant outputs, and anything computed from them.
    constants: HashSet<String>,
    /// Values that depend on the *contents* of a graph input (not only on its shape).
    input_dependent: HashSet<String>,
    /// The node that produces each value, by index.
    producers: HashMap<String, usize>,
    nodes: Vec<proto::NodeProto>,
    inputs: HashSet<String>,
    outputs: HashSet<String>,
    /// Small integer constants (for TopK's K), by value name.
    small_ints: HashMap<String, Vec<i64>>,
    /// Some dimension of some input can be 0 at the profile's min corner (an empty KV cache).
    has_zero_length_input: bool,
    findings: Vec<Finding>,
}

#[derive(Debug, Clone)]
enum ShapeDim {
    Size(i64),
    Named(String),
    Unknown,
}

fn node_label(index: usize, node: &proto::NodeProto) -> String {
    match node.name() {
        "" => format!("#{index}"),
        name => name.to_string(),
    }
}

fn attr<'n>(node: &'n proto::NodeProto, name: &str) -> Option<&'n proto::AttributeProto> {
    node.attribute.iter().find(|a| a.name() == name)
}

fn attr_int(node: &proto::NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).and_then(|a| a.i).unwrap_or(default)
}

fn attr_str(node: &proto::NodeProto, name: &str, default: &str) -> String {
    attr(node, name).and_then(|a| a.s.as_ref()).map_or_else(|| default.to_string(), |s| String::from_utf8_lossy(s).into_owned())
}

/// The input at `index`, if present and not the empty "omitted" name.
fn input(node: &proto::NodeProto, index: usize) -> Option<&str> {
    node.input.get(index).map(String::as_str).filter(|s| !s.is_empty())
}

fn dtype_name(elem: i32) -> String {
    DataType::try_from(elem).map_or_else(|_| format!("type {elem}"), |t| t.as_str_name().to_lowercase())
}

fn tensor_type(value: &proto::ValueInfoProto) -> Option<&type_proto::Tensor> {
    match value.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => Some(t),
        _ => None,
    }
}

fn shape_of(t: &type_proto::Tensor) -> Option<Vec<ShapeDim>> {
    let shape = t.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match &d.value {
                Some(dimension::Value::DimValue(v)) => ShapeDim::Size(*v),
                Some(dimension::Value::DimParam(p)) if !p.is_empty() => ShapeDim::Named(p.clone()),
                _ => ShapeDim::Unknown,
            })
            .collect(),
    )
}

/// The integers of a small int64/int32 tensor stored inline.
fn tensor_ints(t: &proto::TensorProto) -> Option<Vec<i64>> {
    match DataType::try_from(t.data_type()).ok()? {
        DataType::Int64 if !t.int64_data.is_empty() => Some(t.int64_data.clone()),
        DataType::Int64 => Some(t.raw_data.as_ref()?.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()),
        DataType::Int32 if !t.int32_data.is_empty() => Some(t.int32_data.iter().map(|&v| i64::from(v)).collect()),
        DataType::Int32 => Some(t.raw_data.as_ref()?.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes(c.try_into().expect("4 bytes")))).collect()),
        DataType::Bool if !t.int32_data.is_empty() => Some(t.int32_data.iter().map(|&v| i64::from(v)).collect()),
        DataType::Bool => Some(t.raw_data.as_ref()?.iter().map(|&b| i64::from(b)).collect()),
        _ => None,
    }
}

/// Whether an inline fp16 tensor holds an infinity or a NaN (exponent bits all ones).
fn fp16_has_non_finite(t: &proto::TensorProto) -> bool {
    if t.data_type() != DataType::Float16 as i32 {
        return false;
    }
    let from_raw = t.raw_data.as_ref().is_some_and(|raw| raw.chunks_exact(2).any(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7c00 == 0x7c00));
    // Without raw_data, fp16 values are stored as their bit patterns in int32_data.
    from_raw || t.int32_data.iter().any(|&bits| bits & 0x7c00 == 0x7c00)
}

impl<'a> GraphLint<'a> {
    fn new(file: &GraphFile, opts: &'a LintOptions, ranges: &'a BTreeMap<&'static str, DimRange>) -> Self {
        let mut lint = GraphLint {
            graph: file.name.clone(),
            opts,
            ranges,
            dtypes: HashMap::new(),
            shapes: HashMap::new(),
            constants: HashSet::new(),
            input_dependent: HashSet::new(),
            producers: HashMap::new(),
            nodes: Vec::new(),
            inputs: HashSet::new(),
            outputs: HashSet::new(),
            small_ints: HashMap::new(),
            has_zero_length_input: false,
            findings: Vec::new(),
        };
        let Some(graph) = file.model.graph.as_ref() else { return lint };
        lint.nodes = graph.node.clone();
        for init in &graph.initializer {
            lint.dtypes.insert(init.name().to_string(), init.data_type());
            lint.shapes.insert(init.name().to_string(), init.dims.iter().map(|&d| ShapeDim::Size(d)).collect());
            lint.constants.insert(init.name().to_string());
            if let Some(ints) = tensor_ints(init).filter(|v| v.len() <= 64) {
                lint.small_ints.insert(init.name().to_string(), ints);
            }
        }
        for value in graph.input.iter().chain(&graph.output).chain(&graph.value_info) {
            if let Some(t) = tensor_type(value) {
                lint.dtypes.entry(value.name().to_string()).or_insert(t.elem_type());
                if let Some(shape) = shape_of(t) {
                    lint.shapes.entry(value.name().to_string()).or_insert(shape);
                }
            }
        }
        for value in &graph.input {
            if !lint.constants.contains(value.name()) {
                lint.inputs.insert(value.name().to_string());
                lint.input_dependent.insert(value.name().to_string());
                if let Some(shape) = tensor_type(value).and_then(shape_of) {
                    lint.has_zero_length_input |= shape.iter().any(|d| match d {
                        ShapeDim::Named(expr) => eval_dim(expr, ranges, 0) == Ok(0),
                        _ => false,
                    });
                }
            }
        }
        lint.outputs = graph.output.iter().map(|v| v.name().to_string()).collect();
        // The builder saves nodes in topological order, so one pass propagates both sets.
        for (index, node) in graph.node.iter().enumerate() {
            for out in &node.output {
                lint.producers.insert(out.clone(), index);
            }
            let present: Vec<&str> = node.input.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
            let constant = match node.op_type() {
                "Constant" => true,
                op if op.starts_with("Random") => false,
                _ => !present.is_empty() && present.iter().all(|i| lint.constants.contains(*i)),
            };
            // Shape and Size read only the shape of their input, never its contents.
            let dependent = !matches!(node.op_type(), "Shape" | "Size") && present.iter().any(|i| lint.input_dependent.contains(*i));
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                if constant {
                    lint.constants.insert(out.clone());
                }
                if dependent {
                    lint.input_dependent.insert(out.clone());
                }
            }
            if node.op_type() == "Constant" {
                if let (Some(out), Some(t)) = (node.output.first(), attr(node, "value").and_then(|a| a.t.as_ref())) {
                    lint.dtypes.entry(out.clone()).or_insert(t.data_type());
                    if let Some(ints) = tensor_ints(t).filter(|v| v.len() <= 64) {
                        lint.small_ints.insert(out.clone(), ints);
                    }
                }
            }
            if node.op_type() == "Cast" {
                if let (Some(out), Some(to)) = (node.output.first(), attr(node, "to").and_then(|a| a.i)) {
                    lint.dtypes.entry(out.clone()).or_insert(to as i32);
                }
            }
        }
        lint
    }

    fn push(&mut self, severity: Severity, rule: &'static str, node: Option<(usize, &proto::NodeProto)>, message: String, fix: String) {
        self.findings.push(Finding {
            severity,
            rule,
            graph: self.graph.clone(),
            node: node.map(|(i, n)| node_label(i, n)),
            op_type: node.map(|(_, n)| n.op_type().to_string()),
            message,
            fix,
        });
    }

    fn graph_error(&mut self, rule: &'static str, message: String, fix: String) {
        self.push(Severity::Error, rule, None, message, fix);
    }

    fn node_error(&mut self, rule: &'static str, index: usize, node: &proto::NodeProto, message: String, fix: impl Into<String>) {
        self.push(Severity::Error, rule, Some((index, node)), message, fix.into());
    }

    fn node_warning(&mut self, rule: &'static str, index: usize, node: &proto::NodeProto, message: String, fix: impl Into<String>) {
        self.push(Severity::Warning, rule, Some((index, node)), message, fix.into());
    }

    fn dtype(&self, name: &str) -> Option<i32> {
        self.dtypes.get(name).copied()
    }

    fn input_is_fp16(&self, node: &proto::NodeProto, index: usize) -> bool {
        input(node, index).and_then(|i| self.dtype(i)) == Some(DataType::Float16 as i32)
    }

    /// G01, and contrib-op imports.
    fn model_level(&mut self, model: &proto::ModelProto, _precision: Precision) {
        let opset = model.opset_import.iter().find(|o| matches!(o.domain(), "" | "ai.onnx")).map(|o| o.version());
        let newest = if self.opts.target == LintTarget::TensorrtRtx || self.opts.tensorrt >= TrtVersion::OPSET_24 { 24 } else { 20 };
        match opset {
            None => self.graph_error("G01", "the model imports no default-domain (ai.onnx) opset".into(), "re-export the bundle".into()),
            Some(v) if v > newest => self.graph_error(
                "G01",
                format!("opset {v} is newer than the {newest} the TensorRT {} parser reads", self.opts.tensorrt),
                format!("export with opset 17 (the exporter's default), or target TensorRT {} or newer", TrtVersion::OPSET_24),
            ),
            Some(v) if v < 17 => self.push(
                Severity::Warning,
                "G01",
                None,
                format!("opset {v} is older than 17; LayerNormalization and the attention patterns TensorRT fuses need 17"),
                "re-export with the current loc3r-export (opset 17)".into(),
            ),
            Some(_) => {}
        }
        let ir = model.ir_version();
        if !(3..=MAX_IR_VERSION).contains(&ir) {
            self.graph_error("G01", format!("IR version {ir} is outside what ONNX Runtime 1.31 reads (3..={MAX_IR_VERSION})"), "re-export the bundle".into());
        }
        if !model.functions.is_empty() {
            self.push(
                Severity::Warning,
                "G05",
                None,
                format!("the model defines {} local function(s); ONNX Runtime inlines them, and their bodies are not checked here", model.functions.len()),
                "export plain nodes instead of functions".into(),
            );
        }
    }

    /// G03, G13, P01.
    fn io(&mut self, graph: &proto::GraphProto) {
        let initializers: HashSet<&str> = graph.initializer.iter().map(|i| i.name()).collect();
        for (side, values) in [("input", &graph.input), ("output", &graph.output)] {
            for value in values.iter().filter(|v| !initializers.contains(v.name())) {
                let name = value.name();
                let Some(t) = tensor_type(value) else {
                    self.graph_error(
                        "G03",
                        format!("graph {side} `{name}` is not a tensor (sequence, map, optional or untyped); TensorRT takes only tensors"),
                        "make every graph input and output a tensor".into(),
                    );
                    continue;
                };
                if t.elem_type() == 0 {
                    self.graph_error("G03", format!("graph {side} `{name}` has no element type"), "give it one in the exporter".into());
                }
                let Some(shape) = shape_of(t) else {
                    self.graph_error(
                        "G03",
                        format!("graph {side} `{name}` has no shape; the TensorRT provider needs ranks and dims at the engine boundary"),
                        "write its full shape (sizes or named dims)".into(),
                    );
                    continue;
                };
                if shape.iter().any(|d| matches!(d, ShapeDim::Unknown)) {
                    self.graph_error(
                        "G03",
                        format!("graph {side} `{name}` has a dimension that is neither a size nor a name"),
                        "name every dynamic dimension (dim_param)".into(),
                    );
                }
                if side == "input" {
                    if name.contains([',', ':']) {
                        self.graph_error(
                            "G13",
                            format!("input name `{name}` contains `,` or `:`, which the provider's profile strings use as separators"),
                            "rename the input".into(),
                        );
                    }
                    for dim in &shape {
                        if let ShapeDim::Named(expr) = dim {
                            if let Err(why) = eval_dim(expr, self.ranges, 0) {
                                self.graph_error(
                                    "P01",
                                    format!("input `{name}`: {why}, so no optimization profile can cover it and TensorRT would rebuild the engine on new shapes"),
                                    "use the exporter's dimension names (batch, frames, sequence, past_sequence, cache_sequence, vision_tokens) or add a rule for the new one to the profile generator".into(),
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// G14: size of the protobuf and the layout of external data.
    fn storage(&mut self, graph: &proto::GraphProto, file: &GraphFile, bundle: &Path) {
        if file.onnx_bytes > PROTOBUF_LIMIT {
            self.graph_error(
                "G14",
                format!("{} is {} bytes, over the 2 GiB protobuf limit", file.path.display(), file.onnx_bytes),
                "store the weights as external data (the exporter does this for every initializer over 1 KiB)".into(),
            );
        }
        let mut locations: BTreeMap<String, u64> = BTreeMap::new();
        for init in graph.initializer.iter().filter(|i| i.data_location() == proto::tensor_proto::DataLocation::External) {
            let get = |key: &str| init.external_data.iter().find(|e| e.key() == key).map(|e| e.value().to_string());
            let Some(location) = get("location") else {
                self.graph_error("G14", format!("initializer `{}` is external but names no location", init.name()), "re-export the bundle".into());
                continue;
            };
            let path = Path::new(&location);
            if path.is_absolute() || path.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
                self.graph_error(
                    "G14",
                    format!("initializer `{}` points to `{location}`; ONNX Runtime only follows relative paths inside the model's directory", init.name()),
                    "write external data beside the .onnx file with a plain relative name".into(),
                );
                continue;
            }
            let end = get("offset").and_then(|o| o.parse::<u64>().ok()).unwrap_or(0) + get("length").and_then(|l| l.parse::<u64>().ok()).unwrap_or(0);
            let max_end = locations.entry(location).or_insert(0);
            *max_end = (*max_end).max(end);
        }
        if locations.len() > 1 {
            self.graph_error(
                "G14",
                format!(
                    "external data is spread over {} files ({}); the engine cache key and the provider's weight loading expect one",
                    locations.len(),
                    locations.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                "write one <graph>.onnx.data per graph".into(),
            );
        }
        let dir = file.path.parent().unwrap_or(bundle);
        for (location, end) in locations {
            match std::fs::metadata(dir.join(&location)) {
                Ok(meta) if meta.len() >= end => {}
                Ok(meta) => self.graph_error(
                    "G14",
                    format!("{location} has {} bytes but the initializers reach byte {end}", meta.len()),
                    "the bundle is truncated; re-export it".into(),
                ),
                Err(e) => self.graph_error("G14", format!("external data file {location}: {e}"), "the bundle is incomplete; re-export it".into()),
            }
        }
        for init in &graph.initializer {
            if fp16_has_non_finite(init) {
                self.graph_error(
                    "F01",
                    format!("fp16 initializer `{}` holds an infinity or NaN; in fp16 math it poisons every sum it enters", init.name()),
                    "use a finite value (±65504 for masks) or keep the constant in fp32".into(),
                );
            }
        }
    }

    /// Every per-node rule.
    fn node(&mut self, index: usize, node: &proto::NodeProto) {
        let op = node.op_type().to_string();
        let domain = node.domain();
        if !matches!(domain, "" | "ai.onnx") {
            let why = if domain == "com.microsoft" {
                "an ONNX Runtime contrib op: TensorRT's parser does not know it, so ONNX Runtime runs it on another provider and splits the graph"
            } else {
                "a custom-domain op: TensorRT's parser only reads the default ONNX domain (plugins aside), so the graph would be split"
            };
            self.node_error(
                "G02",
                index,
                node,
                format!("op {domain}:{op} is {why}"),
                "export the standard ONNX form of this op (the exporter's default graphs use only ai.onnx)",
            );
            return;
        }
        match ops::support(&op) {
            OpSupport::Supported => {}
            OpSupport::Since(version) => {
                if self.opts.target == LintTarget::Tensorrt && self.opts.tensorrt < version {
                    self.node_error(
                        "G05",
                        index,
                        node,
                        format!("{op} is parsed from TensorRT {version} on, not by {}", self.opts.tensorrt),
                        format!("target TensorRT {version} or newer (--trt-version), or export the decomposed form"),
                    );
                }
            }
            OpSupport::Unsupported(why) => {
                self.node_error(
                    "G05",
                    index,
                    node,
                    format!("{op}: {why}"),
                    "replace it in the exporter with ops TensorRT parses; otherwise ONNX Runtime runs it elsewhere and splits the graph",
                );
                return;
            }
            OpSupport::Refused(why) => {
                let rule = match op.as_str() {
                    "If" | "Loop" | "Scan" => "G06",
                    "NonZero" | "NonMaxSuppression" => "G10",
                    _ => "G05",
                };
                self.node_error(rule, index, node, format!("{op}: {why}"), "rewrite the exporter's graph without it");
                return;
            }
        }
        self.restrictions(index, node, &op);
        for &position in ops::shape_inputs(&op) {
            if let Some(value) = input(node, position) {
                if self.input_dependent.contains(value) {
                    self.node_error(
                        "G07",
                        index,
                        node,
                        format!("input {position} (`{value}`) decides an output shape and is computed from the contents of a graph input; TensorRT would need it as a shape tensor (host-side, limited volume, mishandled by ONNX Runtime's profiles)"),
                        "derive shapes from Shape() of tensors, never from input values",
                    );
                }
            }
        }
        for &(position, what) in ops::constant_inputs(&op) {
            if let Some(value) = input(node, position) {
                if !self.constants.contains(value) {
                    let rule = if op == "TopK" { "G10" } else { "G08" };
                    self.node_error(
                        rule,
                        index,
                        node,
                        format!("{what} (input {position}, `{value}`) is computed at run time; TensorRT needs it at build time"),
                        format!("make {what} an initializer or Constant"),
                    );
                }
            }
        }
        self.fp16_hazards(index, node, &op);
        self.int64_arithmetic(index, node, &op);
    }

    /// G05 restrictions, G09, G16.
    fn restrictions(&mut self, index: usize, node: &proto::NodeProto, op: &str) {
        match op {
            "Resize" => {
                let mode = attr_str(node, "mode", "nearest");
                if !matches!(mode.as_str(), "nearest" | "linear") {
                    self.node_error(
                        "G05",
                        index,
                        node,
                        format!("Resize mode `{mode}`: TensorRT resizes nearest or linear only"),
                        "use linear (bilinear) or nearest",
                    );
                }
                let coords = attr_str(node, "coordinate_transformation_mode", "half_pixel");
                if !matches!(coords.as_str(), "half_pixel" | "pytorch_half_pixel" | "tf_half_pixel_for_nn" | "asymmetric" | "align_corners") {
                    self.node_error(
                        "G05",
                        index,
                        node,
                        format!("Resize coordinate_transformation_mode `{coords}` is not one TensorRT implements"),
                        "use half_pixel, pytorch_half_pixel, asymmetric or align_corners",
                    );
                }
                if attr_int(node, "antialias", 0) != 0 {
                    self.node_error(
                        "G05",
                        index,
                        node,
                        "Resize with antialias=1: TensorRT has no antialiased resize".into(),
                        "resize without antialiasing (or pre-filter explicitly)",
                    );
                }
                let policy = attr_str(node, "keep_aspect_ratio_policy", "stretch");
                if policy != "stretch" {
                    self.node_error(
                        "G05",
                        index,
                        node,
                        format!("Resize keep_aspect_ratio_policy `{policy}`: TensorRT only stretches"),
                        "compute explicit sizes instead",
                    );
                }
                if attr(node, "axes").is_some() && input(node, 2).is_some() {
                    self.node_error(
                        "G05",
                        index,
                        node,
                        "Resize with `axes` and scales: TensorRT needs a scale for every axis".into(),
                        "give scales for all axes (1.0 where unchanged) and drop `axes`",
                    );
                }
            }
            "Softmax" | "LogSoftmax" => {
                let axis = attr_int(node, "axis", -1);
                let rank = input(node, 0).and_then(|i| self.shapes.get(i)).map(|s| s.len() as i64);
                if axis != -1 && rank.is_none_or(|r| axis != r - 1) {
                    self.node_warning(
                        "G05",
                        index,
                        node,
                        format!("{op} over axis {axis}, not the last: TensorRT's attention fusion only matches the last axis"),
                        "transpose so the softmax runs over the last axis",
                    );
                }
            }
            "LayerNormalization" if node.output.iter().skip(1).any(|o| !o.is_empty()) => {
                self.node_error(
                    "G05",
                    index,
                    node,
                    "LayerNormalization with Mean/InvStdDev outputs: TensorRT produces only Y".into(),
                    "leave the optional outputs empty",
                );
            }
            "TopK" => {
                if attr_int(node, "sorted", 1) != 1 {
                    self.node_error("G05", index, node, "TopK with sorted=0: TensorRT always sorts".into(), "use sorted=1");
                }
                if let Some(k) = input(node, 1).and_then(|k| self.small_ints.get(k)).and_then(|v| v.first().copied()) {
                    if k >= TOPK_MAX_K {
                        self.node_error("G05", index, node, format!("TopK with K={k}: TensorRT's limit is {}", TOPK_MAX_K - 1), "sample on the host instead");
                    }
                }
            }
            "ScatterND" => {
                let reduction = attr_str(node, "reduction", "none");
                if reduction != "none" {
                    self.node_error(
                        "G05",
                        index,
                        node,
                        format!("ScatterND reduction `{reduction}`: TensorRT scatters without reduction only"),
                        "scatter into zeros and add explicitly",
                    );
                }
            }
            "Attention" => {
                if input(node, 4).is_some() || input(node, 5).is_some() || node.output.iter().skip(1).any(|o| !o.is_empty()) {
                    self.node_error(
                        "G05",
                        index,
                        node,
                        "Attention with past_key/past_value inputs or present/qk outputs: TensorRT's IAttention takes none of them".into(),
                        "concatenate the KV cache outside the op",
                    );
                }
                if attr(node, "softcap").and_then(|a| a.f).is_some_and(|s| s != 0.0) {
                    self.node_error("G05", index, node, "Attention with softcap: not supported by TensorRT".into(), "drop softcap or decompose the attention");
                }
            }
            "Reshape" => {
                let computed = input(node, 1).is_some_and(|s| !self.constants.contains(s));
                if computed && self.has_zero_length_input && attr_int(node, "allowzero", 0) != 1 {
                    self.node_error(
                        "G09",
                        index,
                        node,
                        "Reshape to a computed shape without allowzero=1 in a graph whose profile allows zero-length inputs (an empty KV cache): a 0 in the shape would copy the input's dimension instead of meaning 0".into(),
                        "set allowzero=1 on Reshapes whose shape is computed",
                    );
                }
            }
            "Dropout" => {
                if let Some(mode) = input(node, 2) {
                    let training = self.small_ints.get(mode).is_none_or(|v| v.iter().any(|&x| x != 0));
                    if training || !self.constants.contains(mode) {
                        self.node_error(
                            "G16",
                            index,
                            node,
                            "Dropout whose training_mode is not a constant false".into(),
                            "drop the node from inference graphs",
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// F01: what overflows or loses precision in strongly typed fp16 engines, where the graph's
    /// dtypes are the precision (TensorRT does not move fp16 layers to fp32 on its own).
    fn fp16_hazards(&mut self, index: usize, node: &proto::NodeProto, op: &str) {
        match op {
            "ReduceMean" | "ReduceSum" if self.input_is_fp16(node, 0) => {
                let squared = input(node, 0).and_then(|i| self.producers.get(i)).map(|&p| &self.nodes[p]).is_some_and(|p| {
                    let square_by_pow = p.op_type() == "Pow";
                    let square_by_mul = p.op_type() == "Mul" && p.input.len() == 2 && p.input[0] == p.input[1];
                    square_by_pow || square_by_mul
                });
                if squared {
                    self.node_error(
                        "F01",
                        index,
                        node,
                        "the mean of squares is computed in fp16: x² overflows fp16 for |x| > 256 (RMSNorm/LayerNorm statistics)".into(),
                        "cast x to fp32 before squaring and cast the normalized result back (an fp32 island)",
                    );
                }
            }
            "LayerNormalization" | "GroupNormalization" | "InstanceNormalization" if self.input_is_fp16(node, 0) => {
                self.node_warning(
                    "F01",
                    index,
                    node,
                    format!("{op} on fp16 input: its statistics lose precision and can overflow in a strongly typed engine"),
                    "cast the input (and scale/bias) to fp32 around the norm",
                );
            }
            "Softmax" | "LogSoftmax" if self.input_is_fp16(node, 0) => {
                self.node_warning(
                    "F01",
                    index,
                    node,
                    format!("{op} on fp16 scores: large logits lose precision"),
                    "compute the softmax in fp32 (the exporter's default keeps softmax in fp32)",
                );
            }
            "Exp" if self.input_is_fp16(node, 0) => {
                self.node_warning("F01", index, node, "Exp of an fp16 value overflows above ~11".into(), "compute the exponential in fp32");
            }
            "Sin" | "Cos" if self.input_is_fp16(node, 0) => {
                self.node_warning(
                    "F01",
                    index,
                    node,
                    format!("{op} of fp16 angles: large positions lose their fraction (RoPE tables)"),
                    "compute rotary tables in fp32 and cast at use",
                );
            }
            "Constant" if attr(node, "value").and_then(|a| a.t.as_ref()).is_some_and(fp16_has_non_finite) => {
                self.node_error(
                    "F01",
                    index,
                    node,
                    "an fp16 constant holds an infinity or NaN; in fp16 math it poisons every sum it enters".into(),
                    "use a finite value (±65504 for masks) or keep the constant in fp32",
                );
            }
            _ => {}
        }
    }

    /// I01: TensorRT 10 runs int64 natively, but large int64 tensors computed elementwise
    /// (a mask of [S, T] built in int64) cost memory and bandwidth for what a bool does.
    fn int64_arithmetic(&mut self, index: usize, node: &proto::NodeProto, op: &str) {
        if !matches!(op, "Add" | "Sub" | "Mul" | "Div" | "Mod" | "Max" | "Min" | "Neg" | "Abs" | "Where") {
            return;
        }
        let Some(out) = node.output.first() else { return };
        if self.dtype(out) != Some(DataType::Int64 as i32) {
            return;
        }
        let dynamic_dims = self.shapes.get(out).map_or(0, |s| s.iter().filter(|d| matches!(d, ShapeDim::Named(_))).count());
        if dynamic_dims >= 2 {
            self.node_warning(
                "I01",
                index,
                node,
                format!("`{out}` is a 2-D dynamic int64 tensor computed with int64 {op}; at the profile's largest shapes it costs 8 bytes per element"),
                "build masks from comparisons as bool and convert once to the score dtype (or use Where)",
            );
        }
    }

    /// G04: element types of every value the graph computes.
    fn value_types(&mut self, graph: &proto::GraphProto) {
        let mut reported = HashSet::new();
        for (index, node) in graph.node.iter().enumerate() {
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                let Some(elem) = self.dtype(out) else { continue };
                let Ok(kind) = DataType::try_from(elem) else { continue };
                let quantized = matches!(node.op_type(), "QuantizeLinear" | "DequantizeLinear" | "Cast" | "CastLike");
                let problem = match kind {
                    DataType::Double => Some("double: TensorRT has no fp64"),
                    DataType::String => Some("string: TensorRT has no strings"),
                    DataType::Complex64 | DataType::Complex128 => Some("complex: TensorRT has no complex numbers"),
                    DataType::Int16 | DataType::Uint16 | DataType::Uint32 | DataType::Uint64 => {
                        Some("an integer type TensorRT does not have (int32, int64, int8, uint8 and bool only)")
                    }
                    DataType::Uint8 if !self.outputs.contains(out) => Some("uint8 inside the graph: TensorRT takes uint8 only at graph inputs and outputs"),
                    DataType::Int8 | DataType::Int4 | DataType::Uint4 | DataType::Float8e4m3fn | DataType::Float8e5m2 | DataType::Float4e2m1 if !quantized => {
                        Some("a quantized type outside QuantizeLinear/DequantizeLinear: TensorRT computes in it only through Q/DQ pairs")
                    }
                    DataType::Float8e4m3fnuz | DataType::Float8e5m2fnuz | DataType::Float8e8m0 => Some("an fp8 variant TensorRT does not have"),
                    _ => None,
                };
                if let Some(why) = problem {
                    if reported.insert(out.clone()) {
                        self.node_error(
                            "G04",
                            index,
                            node,
                            format!("output `{out}` is {}: {why}", dtype_name(elem)),
                            "keep the computation in float32/float16/int32/int64/bool",
                        );
                    }
                }
            }
        }
        for (i, a) in graph.node.iter().enumerate() {
            for out in a.output.iter().filter(|o| !o.is_empty()) {
                if graph.node[..i].iter().any(|b| b.output.contains(out)) {
                    self.node_error("G12", i, a, format!("output `{out}` is produced by two nodes; the graph is not valid ONNX"), "re-export the bundle");
                }
            }
        }
    }

    /// G11: tensors that reach 2^31 elements at the profile's max corner.
    fn volumes(&mut self, graph: &proto::GraphProto) {
        for value in graph.value_info.iter().chain(&graph.output) {
            let Some(shape) = self.shapes.get(value.name()) else { continue };
            let mut volume: i128 = 1;
            for dim in shape {
                let size = match dim {
                    ShapeDim::Size(n) => i128::from(*n),
                    ShapeDim::Named(expr) => match eval_dim(expr, self.ranges, 2) {
                        Ok(v) => i128::from(v),
                        Err(_) => 0,
                    },
                    ShapeDim::Unknown => 0,
                };
                volume = volume.saturating_mul(size);
            }
            if volume >= VOLUME_LIMIT {
                let producer = self.producers.get(value.name()).copied();
                let name = value.name().to_string();
                match producer {
                    Some(p) => {
                        let node = self.nodes[p].clone();
                        self.node_warning(
                            "G11",
                            p,
                            &node,
                            format!("`{name}` has {volume} elements at the profile's largest shapes, over TensorRT's 2^31 per tensor"),
                            "lower --max-prefill/--max-frames/--max-context, or split the computation",
                        );
                    }
                    None => self.push(
                        Severity::Warning,
                        "G11",
                        None,
                        format!("`{name}` has {volume} elements at the profile's largest shapes, over TensorRT's 2^31 per tensor"),
                        "lower --max-prefill/--max-frames/--max-context".into(),
                    ),
                }
            }
        }
    }
}

/// The human-readable report: one line per graph, then one block per finding.
pub fn render(report: &LintReport) -> String {
    let mut out = format!("lint {} for {} ({})\n", report.bundle.display(), report.target, report.tensorrt);
    out.push_str(&format!("{:<14} {:>6} {:>7} {:>9}  verdict\n", "graph", "nodes", "errors", "warnings"));
    for g in &report.graphs {
        let verdict = if g.whole_graph_on_tensorrt { "whole graph on TensorRT" } else { "NOT compatible" };
        out.push_str(&format!("{:<14} {:>6} {:>7} {:>9}  {verdict}\n", g.graph, g.nodes, g.errors, g.warnings));
    }
    for f in &report.findings {
        let location = match (&f.node, &f.op_type) {
            (Some(node), Some(op)) => format!("{} node `{node}` ({op})", f.graph),
            _ => f.graph.clone(),
        };
        out.push_str(&format!("\n{} {} {location}: {}\n  fix: {}\n", f.severity, f.rule, f.message, f.fix));
    }
    out.push_str(&format!("\n{} error(s), {} warning(s)\n", report.errors(), report.warnings()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::proto::{
        tensor_shape_proto::Dimension, type_proto::Tensor, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
        ValueInfoProto,
    };

    fn value(name: &str, elem: DataType, dims: &[&str]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|d| Dimension {
                denotation: None,
                value: Some(match d.parse::<i64>() {
                    Ok(n) => dimension::Value::DimValue(n),
                    Err(_) => dimension::Value::DimParam(d.to_string()),
                }),
            })
            .collect();
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto {
                denotation: None,
                value: Some(type_proto::Value::TensorType(Tensor { elem_type: Some(elem as i32), shape: Some(TensorShapeProto { dim }) })),
            }),
            ..Default::default()
        }
    }

    fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
        NodeProto {
            name: Some(name.into()),
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn model(nodes: Vec<NodeProto>, inputs: Vec<ValueInfoProto>, outputs: Vec<ValueInfoProto>, value_info: Vec<ValueInfoProto>) -> GraphFile {
        let graph = GraphProto { name: Some("g".into()), node: nodes, input: inputs, output: outputs, value_info, ..Default::default() };
        let model = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
            graph: Some(graph),
            ..Default::default()
        };
        GraphFile { name: "g".into(), path: PathBuf::from("g.onnx"), onnx_bytes: 100, model }
    }

    fn lint(file: &GraphFile) -> Vec<Finding> {
        let opts = LintOptions { target: LintTarget::Tensorrt, tensorrt: TrtVersion::DEFAULT, limits: None };
        let limits = ProfileLimits { max_frames: 64, max_prefill: 2048, max_context: 8192 };
        let ranges =
            BTreeMap::from([("batch", [1, 1, 1]), ("sequence", [1, 1, 2048]), ("past_sequence", [0, 7168, 8191]), ("frames", [1, 32, limits.max_frames])]);
        lint_graph(file, Path::new("."), Precision::F16, &opts, &ranges)
    }

    fn rules(findings: &[Finding]) -> Vec<(&'static str, Severity, Option<String>)> {
        findings.iter().map(|f| (f.rule, f.severity, f.node.clone())).collect()
    }

    #[test]
    fn a_plain_graph_is_clean() {
        let file = model(
            vec![node("proj/MatMul", "MatMul", &["x", "w"], &["y"]), node("act/Relu", "Relu", &["y"], &["z"])],
            vec![value("x", DataType::Float, &["batch", "sequence", "8"]), value("w", DataType::Float, &["8", "8"])],
            vec![value("z", DataType::Float, &["batch", "sequence", "8"])],
            vec![value("y", DataType::Float, &["batch", "sequence", "8"])],
        );
        let findings = lint(&file);
        assert!(findings.is_empty(), "{findings:?}");
    }

    #[test]
    fn contrib_ops_control_flow_and_unknown_ops_are_errors_naming_the_node() {
        let mut gqa = node("layers.0/attn/GroupQueryAttention", "GroupQueryAttention", &["x"], &["a"]);
        gqa.domain = Some("com.microsoft".into());
        let file = model(
            vec![gqa, node("loop/Loop", "Loop", &["x"], &["b"]), node("u/Unique", "Unique", &["x"], &["c"]), node("nz/NonZero", "NonZero", &["x"], &["d"])],
            vec![value("x", DataType::Float, &["batch", "8"])],
            vec![],
            vec![],
        );
        let findings = lint(&file);
        let got = rules(&findings);
        assert!(got.contains(&("G02", Severity::Error, Some("layers.0/attn/GroupQueryAttention".into()))), "{got:?}");
        assert!(got.contains(&("G06", Severity::Error, Some("loop/Loop".into()))), "{got:?}");
        assert!(got.contains(&("G05", Severity::Error, Some("u/Unique".into()))), "{got:?}");
        assert!(got.contains(&("G10", Severity::Error, Some("nz/NonZero".into()))), "{got:?}");
        assert!(findings[0].message.contains("com.microsoft:GroupQueryAttention"), "{}", findings[0].message);
    }

    #[test]
    fn input_values_in_shape_positions_and_runtime_axes_are_errors() {
        // position_ids (an input's contents) sizes a Range: a shape tensor input.
        let file = model(
            vec![
                node("shape/Shape", "Shape", &["x"], &["s"]),
                node("ok/Reshape", "Reshape", &["x", "s"], &["r"]),
                node("bad/Range", "Range", &["zero", "n", "one"], &["range"]),
                node("bad/Unsqueeze", "Unsqueeze", &["x", "n"], &["u"]),
            ],
            vec![value("x", DataType::Float, &["batch", "8"]), value("n", DataType::Int64, &[])],
            vec![],
            vec![],
        );
        let mut file = file;
        let graph = file.model.graph.as_mut().unwrap();
        for (name, v) in [("zero", 0i64), ("one", 1)] {
            graph.initializer.push(proto::TensorProto {
                name: Some(name.into()),
                data_type: Some(DataType::Int64 as i32),
                int64_data: vec![v],
                ..Default::default()
            });
        }
        let got = rules(&lint(&file));
        assert!(got.contains(&("G07", Severity::Error, Some("bad/Range".into()))), "{got:?}");
        assert!(got.contains(&("G08", Severity::Error, Some("bad/Unsqueeze".into()))), "{got:?}");
        assert!(!got.iter().any(|(_, _, n)| n.as_deref() == Some("ok/Reshape")), "Shape() of an input is not its contents: {got:?}");
    }

    #[test]
    fn unsupported_attributes_are_errors() {
        let mut resize = node("up/Resize", "Resize", &["x", "", "scales"], &["y"]);
        resize.attribute.push(AttributeProto { name: Some("mode".into()), s: Some(b"cubic".to_vec()), ..Default::default() });
        let mut scatter = node("kv/ScatterND", "ScatterND", &["x", "i", "u"], &["z"]);
        scatter.attribute.push(AttributeProto { name: Some("reduction".into()), s: Some(b"add".to_vec()), ..Default::default() });
        let file = model(vec![resize, scatter], vec![value("x", DataType::Float, &["frames", "3", "8", "8"])], vec![], vec![]);
        let findings = lint(&file);
        let resize = findings.iter().find(|f| f.node.as_deref() == Some("up/Resize")).expect("resize finding");
        assert!(resize.message.contains("cubic") && resize.rule == "G05", "{resize:?}");
        assert!(findings.iter().any(|f| f.node.as_deref() == Some("kv/ScatterND") && f.message.contains("`add`")), "{findings:?}");
    }

    #[test]
    fn fp16_squares_and_norms_are_flagged() {
        let file = model(
            vec![
                node("norm/Pow", "Pow", &["x", "two"], &["sq"]),
                node("norm/ReduceMean", "ReduceMean", &["sq"], &["ms"]),
                node("ln/LayerNormalization", "LayerNormalization", &["x", "g", "b"], &["ln"]),
                node("rope/Sin", "Sin", &["x"], &["sin"]),
            ],
            vec![value("x", DataType::Float16, &["batch", "sequence", "8"])],
            vec![],
            vec![value("sq", DataType::Float16, &["batch", "sequence", "8"]), value("ms", DataType::Float16, &["batch", "sequence", "1"])],
        );
        let got = rules(&lint(&file));
        assert!(got.contains(&("F01", Severity::Error, Some("norm/ReduceMean".into()))), "{got:?}");
        assert!(got.contains(&("F01", Severity::Warning, Some("ln/LayerNormalization".into()))), "{got:?}");
        assert!(got.contains(&("F01", Severity::Warning, Some("rope/Sin".into()))), "{got:?}");
    }

    #[test]
    fn doubles_unknown_dims_and_bad_input_names_are_errors() {
        let mut cast = node("c/Cast", "Cast", &["x"], &["d"]);
        cast.attribute.push(AttributeProto { name: Some("to".into()), i: Some(DataType::Double as i64), ..Default::default() });
        let file = model(
            vec![cast],
            vec![value("x", DataType::Float, &["batch", "beams"]), value("a:b", DataType::Float, &["1"])],
            vec![value("d", DataType::Double, &["batch", "beams"])],
            vec![],
        );
        let got = rules(&lint(&file));
        assert!(got.contains(&("G04", Severity::Error, Some("c/Cast".into()))), "{got:?}");
        assert!(got.contains(&("G13", Severity::Error, None)), "{got:?}");
        assert!(got.contains(&("P01", Severity::Error, None)), "`beams` has no profile rule: {got:?}");
    }

    #[test]
    fn opsets_beyond_the_parser_are_errors() {
        let mut file = model(vec![], vec![], vec![], vec![]);
        file.model.opset_import[0].version = Some(23);
        let mut opts = LintOptions { target: LintTarget::Tensorrt, tensorrt: TrtVersion { major: 10, minor: 3 }, limits: None };
        let ranges = BTreeMap::new();
        let got = lint_graph(&file, Path::new("."), Precision::F32, &opts, &ranges);
        assert!(got.iter().any(|f| f.rule == "G01" && f.message.contains("opset 23")), "{got:?}");
        opts.tensorrt = TrtVersion::DEFAULT;
        assert!(lint_graph(&file, Path::new("."), Precision::F32, &opts, &ranges).is_empty());
    }

    /// The rules read what the exporter's builder writes: element types of intermediate
    /// values come from its value_info, so an fp16 softmax or norm is seen, and the same graph
    /// with an fp32 island is clean.
    #[test]
    fn builder_graphs_carry_the_types_the_fp16_rules_read() {
        use std::sync::Arc;

        use crate::graph::GraphBuilder;
        use crate::tensor::F32Tensor;
        use crate::{dims, DType};

        let dir = tempfile::tempdir().unwrap();
        let findings_for = |island: bool| {
            let name = if island { "island" } else { "plain" };
            let mut g = GraphBuilder::new(name);
            let x = g.input("x", DType::F16, dims!["batch", "sequence", 8]);
            let scale = g.initializer("ln.weight", Arc::new(F32Tensor::new(vec![8], vec![1.0; 8])), if island { DType::F32 } else { DType::F16 });
            let mut s = g.scope("block");
            let x = if island { s.cast("to_f32", &x, DType::F32) } else { x };
            let n = s.layer_norm("norm", &x, &scale, None, -1, 1e-6);
            let p = s.softmax("softmax", &n, -1);
            let p = if island { s.cast("to_f16", &p, DType::F16) } else { p };
            g.output("y", &p);
            g.save(dir.path()).unwrap();
            let file = read_graph(name, &dir.path().join(format!("{name}.onnx"))).unwrap();
            let opts = LintOptions { target: LintTarget::Tensorrt, tensorrt: TrtVersion::DEFAULT, limits: None };
            let ranges = BTreeMap::from([("batch", [1, 1, 1]), ("sequence", [1, 1, 2048])]);
            lint_graph(&file, dir.path(), Precision::F16, &opts, &ranges)
        };
        let got = rules(&findings_for(false));
        assert!(got.contains(&("F01", Severity::Warning, Some("block/norm".into()))), "{got:?}");
        assert!(got.contains(&("F01", Severity::Warning, Some("block/softmax".into()))), "{got:?}");
        assert_eq!(findings_for(true), vec![]);
    }

    #[test]
    fn computed_reshapes_need_allowzero_when_inputs_can_be_empty() {
        let file = model(
            vec![node("kv/Shape", "Shape", &["past"], &["s"]), node("kv/Reshape", "Reshape", &["past", "s"], &["r"])],
            vec![value("past", DataType::Float16, &["batch", "2", "past_sequence", "16"])],
            vec![],
            vec![],
        );
        let got = rules(&lint(&file));
        assert!(got.contains(&("G09", Severity::Error, Some("kv/Reshape".into()))), "{got:?}");
        let mut file = file;
        file.model.graph.as_mut().unwrap().node[1].attribute.push(AttributeProto { name: Some("allowzero".into()), i: Some(1), ..Default::default() });
        assert!(lint(&file).is_empty());
    }
}
