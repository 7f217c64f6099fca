//! [`GraphBuilder`] (the graph's contents) and [`Scope`] (named node emission).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

#[path = "compose.rs"]
mod compose;
#[path = "rewrite.rs"]
mod rewrite;

use super::constant::{ConstTensor, ConstValues};
use super::{shape_string, Attr, Dim, GraphError, Result, Value};
use crate::tensor::{DType, TensorData};

/// The default `ai.onnx` opset: 17 has `LayerNormalization` and runs on ORT CPU/CUDA and
/// TensorRT 8.6+.
pub const DEFAULT_OPSET: i64 = 17;

/// A node as stored by the builder (names only; values are resolved at save time).
/// Read by graph transformations (the training engine's autodiff) through [`GraphBuilder::nodes`].
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub domain: String,
    /// Empty strings stand for omitted optional inputs.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: Vec<(String, Attr)>,
}

/// An initializer: its value handle, where its bytes come from, and whether it must be
/// stored inside the `.onnx` file (constants) regardless of size.
#[derive(Debug, Clone)]
pub struct Initializer {
    pub value: Value,
    pub data: Arc<dyn TensorData>,
    pub inline: bool,
}

/// One output of a node built with [`Scope::node`].
#[derive(Debug, Clone)]
pub struct OutputSpec {
    /// The value's name; `None` gives `<node name>/output_<i>`.
    pub name: Option<String>,
    pub dtype: DType,
    pub shape: Vec<Dim>,
}

/// Everything about a node except its name: the most general way to add one.
#[derive(Debug, Clone, Default)]
pub struct NodeSpec<'a> {
    pub op_type: &'a str,
    /// `""` is the default `ai.onnx` domain; any other domain is added to the opset imports.
    pub domain: &'a str,
    /// `None` leaves an optional input out.
    pub inputs: Vec<Option<&'a Value>>,
    pub attrs: Vec<(String, Attr)>,
    pub outputs: Vec<OutputSpec>,
}

/// Builds one ONNX graph. See the [module documentation](super) for an example.
#[derive(Debug)]
pub struct GraphBuilder {
    name: String,
    opset: i64,
    /// Opset imports of other domains (`com.microsoft` → 1), sorted for deterministic output.
    domains: BTreeMap<String, i64>,
    doc: String,
    metadata: Vec<(String, String)>,
    pub(crate) inputs: Vec<Value>,
    pub(crate) outputs: Vec<Value>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) initializers: Vec<Initializer>,
    /// Node outputs in creation order: they become the graph's `value_info`.
    pub(crate) values: Vec<Value>,
    /// Every value name in use, with its index in `values` for node outputs.
    value_names: HashMap<String, Option<usize>>,
    node_names: HashSet<String>,
    /// Constants by name, with their handles (created once).
    constants: HashMap<String, (Arc<ConstTensor>, Value)>,
    problems: Vec<String>,
}

impl GraphBuilder {
    /// An empty graph. `name` is also the file stem when saved (`<name>.onnx`).
    pub fn new(name: impl Into<String>) -> GraphBuilder {
        let name = name.into();
        let mut g = GraphBuilder {
            doc: format!("{name}: built by loc3r-export from checkpoint weights"),
            name,
            opset: DEFAULT_OPSET,
            domains: BTreeMap::new(),
            metadata: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            nodes: Vec::new(),
            initializers: Vec::new(),
            values: Vec::new(),
            value_names: HashMap::new(),
            node_names: HashSet::new(),
            constants: HashMap::new(),
            problems: Vec::new(),
        };
        if g.name.is_empty() || g.name.contains(['/', '\\']) || g.name.starts_with('.') {
            g.problem(format!("graph name `{}` cannot be a file name", g.name));
        }
        g
    }

    /// Uses `ai.onnx` opset `opset` (17 or newer) instead of [`DEFAULT_OPSET`]. Wrappers
    /// whose form changed between opsets (reduction axes moved from attribute to input in
    /// 18) follow it. Call before adding nodes.
    pub fn with_opset(mut self, opset: i64) -> GraphBuilder {
        if opset < 17 {
            self.problem(format!("opset {opset} is not supported: loc3r graphs need ai.onnx opset 17 or newer"));
        }
        if !self.nodes.is_empty() {
            self.problem("the opset must be chosen before nodes are added".to_string());
        }
        self.opset = opset;
        self
    }

    /// The graph's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `ai.onnx` opset version.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// Opset imports of non-default domains, sorted by domain.
    pub fn domains(&self) -> impl Iterator<Item = (&str, i64)> {
        self.domains.iter().map(|(d, v)| (d.as_str(), *v))
    }

    /// The model's doc string.
    pub fn doc(&self) -> &str {
        &self.doc
    }

    /// Replaces the model's doc string.
    pub fn set_doc(&mut self, doc: impl Into<String>) {
        self.doc = doc.into();
    }

    /// Adds a `metadata_props` entry to the model (written in insertion order).
    pub fn add_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.metadata.push((key.into(), value.into()));
    }

    /// The model's metadata entries.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    /// Graph inputs, in order.
    pub fn inputs(&self) -> &[Value] {
        &self.inputs
    }

    /// Graph outputs, in order.
    pub fn outputs(&self) -> &[Value] {
        &self.outputs
    }

    /// The nodes, in the order they were added (a topological order: a node only reads
    /// values that exist when it is added).
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The initializers (checkpoint weights and constants), in the order they were added.
    pub fn initializers(&self) -> &[Initializer] {
        &self.initializers
    }

    /// Turns initializer `name` into a graph input of the same name, dtype and shape, and
    /// returns the initializer (its data is no longer written with the graph). Training
    /// graphs take their trainable weights as inputs: they change every step, and ONNX
    /// Runtime treats initializers as constants of the session.
    pub fn promote_to_input(&mut self, name: &str) -> Option<Initializer> {
        let k = self.initializers.iter().position(|i| i.value.name() == name && !i.inline)?;
        let init = self.initializers.remove(k);
        self.inputs.push(init.value.clone());
        Some(init)
    }

    /// The handle of a node output by name (dtype and shape as last refined).
    pub fn node_value(&self, name: &str) -> Option<&Value> {
        match self.value_names.get(name) {
            Some(Some(slot)) => self.values.get(*slot),
            _ => None,
        }
    }

    /// The handle of any value by name: graph input, initializer or node output.
    pub fn value(&self, name: &str) -> Option<Value> {
        if let Some(v) = self.node_value(name) {
            return Some(v.clone());
        }
        self.inputs.iter().chain(self.initializers.iter().map(|i| &i.value)).find(|v| v.name() == name).cloned()
    }

    /// Records a problem; [`check`](Self::check) and [`save`](Self::save) report it.
    pub fn problem(&mut self, message: impl Into<String>) {
        self.problems.push(message.into());
    }

    /// All problems recorded while building, as one error (or `Ok` if there are none).
    pub fn check(&self) -> Result<()> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(GraphError::Invalid { graph: self.name.clone(), problems: self.problems.clone() })
        }
    }

    /// Claims a value name; on a clash records a problem and returns a unique stand-in so
    /// building can go on (the graph will not save).
    fn claim_value_name(&mut self, name: String, slot: Option<usize>) -> String {
        let mut unique = name.clone();
        if self.value_names.contains_key(&name) {
            self.problem(format!("the value name `{name}` is used twice; every value needs its own name"));
            let mut k = 1;
            while self.value_names.contains_key(&unique) {
                unique = format!("{name}#{k}");
                k += 1;
            }
        }
        self.value_names.insert(unique.clone(), slot);
        unique
    }

    /// Adds a graph input. Names come from the contract (docs/bundle.md §3).
    pub fn input<D: Into<Dim>>(&mut self, name: &str, dtype: DType, shape: impl IntoIterator<Item = D>) -> Value {
        let name = self.claim_value_name(name.to_string(), None);
        let v = Value::new(name, dtype, shape.into_iter().map(Into::into).collect());
        self.inputs.push(v.clone());
        v
    }

    /// Makes `value` a graph output called `name`, with `value`'s dtype and shape. If the
    /// value has another name (the usual case: `…/MatMul/output_0`), an `Identity` node
    /// `<name>/Identity` produces the output; ORT and TensorRT remove it when optimising.
    pub fn output(&mut self, name: &str, value: &Value) -> Value {
        let shape = value.shape().to_vec();
        self.output_with_shape(name, value, shape)
    }

    /// Like [`output`](Self::output), declaring the output's shape (e.g. to give the
    /// contract's symbolic names to dims the builder computed).
    pub fn output_with_shape<D: Into<Dim>>(&mut self, name: &str, value: &Value, shape: impl IntoIterator<Item = D>) -> Value {
        let shape: Vec<Dim> = shape.into_iter().map(Into::into).collect();
        if shape.len() != value.rank() {
            self.problem(format!("graph output `{name}`: shape {} has another rank than {value:?}", shape_string(&shape)));
        }
        let is_node_output = matches!(self.value_names.get(value.name()), Some(Some(_)));
        let out = if value.name() == name && is_node_output {
            self.refine_shape(value, shape)
        } else {
            let spec = NodeSpec {
                op_type: "Identity",
                inputs: vec![Some(value)],
                outputs: vec![OutputSpec { name: Some(name.to_string()), dtype: value.dtype(), shape }],
                ..NodeSpec::default()
            };
            self.root_scope().node(&format!("{name}/Identity"), spec).remove(0)
        };
        if self.outputs.iter().any(|o| o.name() == out.name()) {
            self.problem(format!("graph output `{name}` is declared twice"));
        }
        self.outputs.push(out.clone());
        out
    }

    /// Adds an initializer whose bytes are written when the graph is saved, converted to
    /// `dtype` (`TensorData::write_as`). Keep checkpoint names (`model.layers.3.mlp.up_proj.weight`).
    pub fn initializer(&mut self, name: &str, data: Arc<dyn TensorData>, dtype: DType) -> Value {
        self.add_initializer(name.to_string(), data, dtype, false)
    }

    fn add_initializer(&mut self, name: String, data: Arc<dyn TensorData>, dtype: DType, inline: bool) -> Value {
        let name = self.claim_value_name(name, None);
        let shape = data.shape().iter().map(|&d| Dim::Fixed(d)).collect();
        let value = Value::new(name, dtype, shape);
        self.initializers.push(Initializer { value: value.clone(), data, inline });
        value
    }

    /// A constant, created once per distinct value and stored inline in the `.onnx` file.
    /// Its name is [`ConstTensor::name`], e.g. `const/i64/[1]`.
    pub fn constant(&mut self, c: ConstTensor) -> Value {
        let name = c.name();
        if let Some((_, v)) = self.constants.get(&name) {
            return v.clone();
        }
        let c = Arc::new(c);
        let v = self.add_initializer(name.clone(), c.clone(), c.dtype, true);
        self.constants.insert(name, (c, v.clone()));
        v
    }

    fn constant_checked(&mut self, dtype: DType, shape: &[usize], values: ConstValues) -> Value {
        match ConstTensor::new(dtype, shape.to_vec(), values) {
            Ok(c) => self.constant(c),
            Err(e) => {
                self.problem(format!("bad constant: {e}"));
                self.constant(ConstTensor::scalar(dtype, 0.0))
            }
        }
    }

    /// An f32 constant of `shape` (row-major `values`).
    pub fn constant_f32(&mut self, values: &[f32], shape: &[usize]) -> Value {
        self.constant_checked(DType::F32, shape, ConstValues::Float(values.to_vec()))
    }

    /// A float constant of `dtype` (f32, f16 or bf16), rounded when written.
    pub fn constant_float(&mut self, dtype: DType, values: &[f32], shape: &[usize]) -> Value {
        self.constant_checked(dtype, shape, ConstValues::Float(values.to_vec()))
    }

    /// An i64 constant of `shape`.
    pub fn constant_i64(&mut self, values: &[i64], shape: &[usize]) -> Value {
        self.constant_checked(DType::I64, shape, ConstValues::Int(values.to_vec()))
    }

    /// A 1-D i64 constant (shapes, axes, indices): `g.ints(&[0, 0, -1])` is `const/i64/[0,0,-1]`.
    pub fn ints(&mut self, values: &[i64]) -> Value {
        self.constant_i64(values, &[values.len()])
    }

    /// A scalar of `dtype`: floats take `v`, integers truncate it, bool is `v != 0`.
    pub fn scalar(&mut self, dtype: DType, v: f64) -> Value {
        self.constant(ConstTensor::scalar(dtype, v))
    }

    /// An f32 scalar (`const/f32/<v>`).
    pub fn scalar_f32(&mut self, v: f32) -> Value {
        self.constant(ConstTensor { dtype: DType::F32, shape: Vec::new(), values: ConstValues::Float(vec![v]) })
    }

    /// An i64 scalar (`const/i64/<v>`).
    pub fn scalar_i64(&mut self, v: i64) -> Value {
        self.constant(ConstTensor { dtype: DType::I64, shape: Vec::new(), values: ConstValues::Int(vec![v]) })
    }

    /// The values of an integer constant made by this builder (used by shape inference:
    /// reshape targets, slice bounds, axes).
    pub fn const_ints(&self, value: &Value) -> Option<&[i64]> {
        self.constants.get(value.name()).and_then(|(c, _)| c.ints())
    }

    /// The values of a float constant made by this builder (Resize scales).
    pub fn const_floats(&self, value: &Value) -> Option<&[f32]> {
        self.constants.get(value.name()).and_then(|(c, _)| c.floats())
    }

    /// Declares a more precise shape for a node output (e.g. naming a dim that shape
    /// inference could only call `<node>:<axis>`). Returns the handle to use from now on;
    /// the saved `value_info` uses the new shape. Fixed dims must not change.
    pub fn refine_shape<D: Into<Dim>>(&mut self, value: &Value, shape: impl IntoIterator<Item = D>) -> Value {
        let shape: Vec<Dim> = shape.into_iter().map(Into::into).collect();
        let Some(Some(slot)) = self.value_names.get(value.name()).copied() else {
            self.problem(format!("refine_shape: `{}` is not a node output of this graph", value.name()));
            return value.clone();
        };
        let old = self.values[slot].shape();
        let conflict = old.len() != shape.len() || old.iter().zip(&shape).any(|(a, b)| matches!((a, b), (Dim::Fixed(x), Dim::Fixed(y)) if x != y));
        if conflict {
            self.problem(format!("refine_shape: `{}` has shape {}, which {} contradicts", value.name(), shape_string(old), shape_string(&shape)));
            return value.clone();
        }
        let refined = Value::new(value.name().to_string(), value.dtype(), shape);
        self.values[slot] = refined.clone();
        refined
    }

    /// A scope for emitting nodes named `<path>/<step>`. `path` is normally the module's
    /// checkpoint path (`model.layers.3.self_attn.q_proj`); anything with `AsRef<str>`
    /// works, and other path types can implement [`ScopePath`].
    pub fn scope(&mut self, path: impl ScopePath) -> Scope<'_> {
        Scope { path: path.scope_path(), g: self }
    }

    fn root_scope(&mut self) -> Scope<'_> {
        Scope { path: String::new(), g: self }
    }
}

/// Input names, with `""` for a left-out optional input; trailing left-out inputs are
/// dropped, as ONNX requires.
fn inputs_without_trailing_gaps(inputs: &[Option<&Value>]) -> Vec<String> {
    let used = inputs.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
    inputs[..used].iter().map(|v| v.map(|v| v.name().to_string()).unwrap_or_default()).collect()
}

/// Something that names a scope (a checkpoint path).
pub trait ScopePath {
    fn scope_path(&self) -> String;
}

impl<T: AsRef<str> + ?Sized> ScopePath for T {
    fn scope_path(&self) -> String {
        self.as_ref().to_string()
    }
}

/// Emits nodes named `<path>/<step>` into a [`GraphBuilder`]; the op wrappers (`matmul`,
/// `add`, `reshape`, ...) are methods of this type. Derefs to the builder, so constants and
/// initializers are at hand: `s.scalar_f32(1e-6)`.
pub struct Scope<'g> {
    g: &'g mut GraphBuilder,
    path: String,
}

impl Deref for Scope<'_> {
    type Target = GraphBuilder;
    fn deref(&self) -> &GraphBuilder {
        self.g
    }
}

impl DerefMut for Scope<'_> {
    fn deref_mut(&mut self) -> &mut GraphBuilder {
        self.g
    }
}

impl Scope<'_> {
    /// The scope's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// A nested scope `<path>/<part>` for steps that own no weight (`…/self_attn/rope_q`).
    pub fn child(&mut self, part: &str) -> Scope<'_> {
        let path = if self.path.is_empty() { part.to_string() } else { format!("{}/{part}", self.path) };
        Scope { g: &mut *self.g, path }
    }

    /// The full node name of `step` in this scope.
    pub fn node_name(&self, step: &str) -> String {
        if self.path.is_empty() {
            step.to_string()
        } else {
            format!("{}/{step}", self.path)
        }
    }

    /// The generic escape hatch: one node of `op_type` (default domain) with one output
    /// whose dtype and shape the caller states (ops without a wrapper, e.g. `Pad`, `NonZero`).
    pub fn op<D: Into<Dim>>(
        &mut self,
        step: &str,
        op_type: &str,
        inputs: &[&Value],
        attrs: &[(&str, Attr)],
        dtype: DType,
        shape: impl IntoIterator<Item = D>,
    ) -> Value {
        let spec = NodeSpec {
            op_type,
            domain: "",
            inputs: inputs.iter().map(|v| Some(*v)).collect(),
            attrs: attrs.iter().map(|(k, a)| (k.to_string(), a.clone())).collect(),
            outputs: vec![OutputSpec { name: None, dtype, shape: shape.into_iter().map(Into::into).collect() }],
        };
        self.node(step, spec).remove(0)
    }

    /// The most general form: any domain, optional inputs, several outputs, output names
    /// as given. Returns the outputs in order.
    pub fn node(&mut self, step: &str, spec: NodeSpec<'_>) -> Vec<Value> {
        let mut name = self.node_name(step);
        if !self.g.node_names.insert(name.clone()) {
            self.g.problem(format!("the node name `{name}` is used twice; give each step its own name"));
            let base = name.clone();
            let mut k = 1;
            while self.g.node_names.contains(&name) {
                name = format!("{base}#{k}");
                k += 1;
            }
            self.g.node_names.insert(name.clone());
        }
        if !spec.domain.is_empty() && !self.g.domains.contains_key(spec.domain) {
            self.g.domains.insert(spec.domain.to_string(), 1);
        }
        let mut outputs = Vec::with_capacity(spec.outputs.len());
        for (i, o) in spec.outputs.into_iter().enumerate() {
            let wanted = o.name.unwrap_or_else(|| format!("{name}/output_{i}"));
            let slot = self.g.values.len();
            let vname = self.g.claim_value_name(wanted, Some(slot));
            let v = Value::new(vname, o.dtype, o.shape);
            self.g.values.push(v.clone());
            outputs.push(v);
        }
        self.g.nodes.push(Node {
            name,
            op_type: spec.op_type.to_string(),
            domain: spec.domain.to_string(),
            inputs: inputs_without_trailing_gaps(&spec.inputs),
            outputs: outputs.iter().map(|v| v.name().to_string()).collect(),
            attrs: spec.attrs,
        });
        outputs
    }

    /// Emits a single-output default-domain node (used by the wrappers).
    pub(crate) fn emit(&mut self, step: &str, op_type: &str, inputs: &[Option<&Value>], attrs: Vec<(&str, Attr)>, dtype: DType, shape: Vec<Dim>) -> Value {
        let spec = NodeSpec {
            op_type,
            domain: "",
            inputs: inputs.to_vec(),
            attrs: attrs.into_iter().map(|(k, a)| (k.to_string(), a)).collect(),
            outputs: vec![OutputSpec { name: None, dtype, shape }],
        };
        self.node(step, spec).remove(0)
    }

    /// Records `Err` from a shape rule as a problem of node `step` and falls back to `fallback`.
    pub(crate) fn shape_or(&mut self, step: &str, rule: std::result::Result<Vec<Dim>, String>, fallback: &[Dim]) -> Vec<Dim> {
        rule.unwrap_or_else(|e| {
            let node = self.node_name(step);
            self.g.problem(format!("node `{node}`: {e}"));
            fallback.to_vec()
        })
    }

    /// Records a problem unless all `values` share one dtype; returns the first one's.
    pub(crate) fn same_dtype(&mut self, step: &str, op_type: &str, values: &[&Value]) -> DType {
        let first = values[0].dtype();
        if let Some(other) = values.iter().find(|v| v.dtype() != first) {
            let node = self.node_name(step);
            self.g.problem(format!("node `{node}`: {op_type} inputs differ in dtype: {:?} vs {other:?}; add a Cast", values[0]));
        }
        first
    }

    /// Records a problem unless `value`'s dtype is one of `allowed`.
    pub(crate) fn expect_dtype(&mut self, step: &str, what: &str, value: &Value, allowed: &[DType]) {
        if !allowed.contains(&value.dtype()) {
            let node = self.node_name(step);
            self.g.problem(format!("node `{node}`: {what} must be one of {allowed:?}, got {value:?}"));
        }
    }

    /// Records a problem for node `step` (used by wrappers).
    pub(crate) fn fail(&mut self, step: &str, message: impl std::fmt::Display) {
        let node = self.node_name(step);
        self.g.problem(format!("node `{node}`: {message}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dims;
    use crate::tensor::F32Tensor;

    #[test]
    fn names_come_from_the_scope() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, dims!["batch", 4]);
        let mut s = g.scope("model.layers.3.mlp");
        let y = s.relu("act", &x);
        assert_eq!(y.name(), "model.layers.3.mlp/act/output_0");
        let z = s.neg("neg", &y);
        assert_eq!(z.name(), "model.layers.3.mlp/neg/output_0");
        assert_eq!(g.nodes[1].name, "model.layers.3.mlp/neg");
        g.check().unwrap();
    }

    #[test]
    fn duplicates_are_problems() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, [4usize]);
        g.input("x", DType::F32, [4usize]);
        let mut s = g.scope("m");
        s.relu("act", &x);
        s.relu("act", &x);
        let w = Arc::new(F32Tensor::new(vec![1], vec![1.0]));
        g.initializer("w", w.clone(), DType::F32);
        g.initializer("w", w, DType::F32);
        let err = g.check().unwrap_err().to_string();
        assert!(err.contains("3 problem(s)"), "{err}");
        assert!(err.contains("value name `x`") && err.contains("node name `m/act`") && err.contains("value name `w`"), "{err}");
    }

    #[test]
    fn constants_are_created_once() {
        let mut g = GraphBuilder::new("t");
        let a = g.ints(&[1]);
        let b = g.constant_i64(&[1], &[1]);
        let c = g.scalar_i64(1);
        let e = g.scalar(DType::F32, 1e-6);
        assert_eq!(a.name(), "const/i64/[1]");
        assert_eq!(a, b);
        assert_eq!(c.name(), "const/i64/1");
        assert_eq!(e.name(), "const/f32/1e-6");
        assert_eq!(g.initializers.len(), 3);
        assert_eq!(g.const_ints(&a), Some(&[1i64][..]));
        g.constant_f32(&[1.0, 2.0], &[3]);
        assert!(g.check().is_err());
    }

    #[test]
    fn outputs_get_contract_names() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, dims!["b", 4]);
        let y = g.scope("m").relu("act", &x);
        let out = g.output_with_shape("logits", &y, dims!["batch", 4]);
        assert_eq!(out.name(), "logits");
        assert_eq!(out.shape(), &dims!["batch", 4][..]);
        assert_eq!(g.nodes.last().unwrap().op_type, "Identity");
        assert_eq!(g.nodes.last().unwrap().name, "logits/Identity");
        g.check().unwrap();
    }

    #[test]
    fn refine_shape_names_unknown_dims() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, dims!["b", 6]);
        let shape = g.input("shape", DType::I64, [2usize]);
        let y = g.scope("m").reshape("r", &x, &shape);
        assert_eq!(y.shape(), &dims!["m/r:0", "m/r:1"][..]);
        let y = g.refine_shape(&y, dims!["b", 6]);
        assert_eq!(g.values.last().unwrap().shape(), y.shape());
        g.refine_shape(&y, dims!["b", 5]);
        assert!(g.check().is_err());
    }
}
