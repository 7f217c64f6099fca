//! Saving: `<dir>/<name>.onnx` plus one external-data file `<name>.onnx.data`.
//!
//! 1. Refuse a graph with recorded problems ([`GraphBuilder::check`]).
//! 2. Order the nodes topologically (creation order among ready nodes, so the output is
//!    deterministic); an undefined input or a cycle is an error.
//! 3. Stream every initializer of at least `inline_limit` bytes through one buffered
//!    writer into the data file, each at an `alignment`-byte offset, converted to its
//!    dtype; smaller ones and constants go inline (`raw_data`). Weights are never all in
//!    memory, and the protobuf holds only offsets, so graphs over 2 GB work.
//! 4. Encode the model protobuf and write it.
//!
//! Saving writes into `dir` directly; staging in a temp dir and moving the bundle into
//! place is the caller's job (`bundle.rs`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use prost::Message;

use super::builder::{GraphBuilder, Initializer, Node};
use super::proto::{self, tensor_proto::DataLocation, tensor_shape_proto::dimension};
use super::{onnx_elem_type, Attr, ConstTensor, Dim, GraphError, Result, Value};
use crate::tensor::TensorData;

/// Options of [`GraphBuilder::save_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveOptions {
    /// Initializers smaller than this many bytes are stored inside the `.onnx` file.
    pub inline_limit: usize,
    /// Byte alignment of every tensor in the data file (64 suits SIMD loads and mmap).
    pub alignment: u64,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions { inline_limit: 1024, alignment: 64 }
    }
}

/// What [`GraphBuilder::save`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveStats {
    /// `<dir>/<name>.onnx`.
    pub onnx_path: PathBuf,
    /// `<dir>/<name>.onnx.data`, if any initializer went there.
    pub data_path: Option<PathBuf>,
    /// Elements over all initializers and constants.
    pub params: u64,
    /// Size of the `.onnx` file.
    pub onnx_bytes: u64,
    /// Size of the `.onnx.data` file (0 if none).
    pub data_bytes: u64,
    pub nodes: usize,
    pub initializers: usize,
    /// How many initializers live in the data file.
    pub external_initializers: usize,
}

/// The IR version that goes with an `ai.onnx` opset (onnx/docs/Versioning.md):
/// opset 17-18 → IR 8, 19-20 → IR 9, 21+ → IR 10.
pub fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

const PROTOBUF_LIMIT: usize = (1 << 31) - 1;

impl GraphBuilder {
    /// Writes `<dir>/<name>.onnx` (and `<name>.onnx.data` when needed) with default
    /// [`SaveOptions`]. Same graph, same bytes.
    pub fn save(&self, dir: &Path) -> Result<SaveStats> {
        self.save_with(dir, &SaveOptions::default())
    }

    /// Like [`save`](Self::save) with explicit options. A stale `<name>.onnx.data` from an
    /// earlier save is removed when this graph needs none.
    pub fn save_with(&self, dir: &Path, opts: &SaveOptions) -> Result<SaveStats> {
        // 1. problems, 2. node order
        self.check()?;
        let order = self.topological_order()?;

        // 3. initializers: inline or streamed into the data file
        let data_name = format!("{}.onnx.data", self.name());
        let data_path = dir.join(&data_name);
        let mut data: Option<DataFile> = None;
        let mut initializers = Vec::with_capacity(self.initializers.len());
        let mut params = 0u64;
        for init in &self.initializers {
            params += init.data.numel() as u64;
            let bytes = init.value.dtype().storage_bytes(init.data.numel());
            let tensor = if init.inline || bytes < opts.inline_limit {
                inline_tensor(init)?
            } else {
                let file = match &mut data {
                    Some(file) => file,
                    None => data.insert(DataFile::create(&data_path)?),
                };
                file.append(init, &data_name, opts.alignment)?
            };
            initializers.push(tensor);
        }
        let external_initializers = initializers.iter().filter(|t| !t.external_data.is_empty()).count();
        let (data_path, data_bytes) = match data {
            Some(file) => (Some(data_path), file.finish()?),
            None => {
                remove_stale(&data_path)?;
                (None, 0)
            }
        };

        // 4. the model protobuf
        let model = self.model_proto(&order, initializers)?;
        let len = model.encoded_len();
        if len > PROTOBUF_LIMIT {
            return Err(GraphError::TooLarge { graph: self.name().to_string(), bytes: len });
        }
        let onnx_path = dir.join(format!("{}.onnx", self.name()));
        write_file(&onnx_path, &model.encode_to_vec())?;

        Ok(SaveStats {
            onnx_path,
            data_path,
            params,
            onnx_bytes: len as u64,
            data_bytes,
            nodes: order.len(),
            initializers: self.initializers.len(),
            external_initializers,
        })
    }

    /// Node indices in a topological order: among ready nodes, creation order first.
    fn topological_order(&self) -> Result<Vec<usize>> {
        let graph = || self.name().to_string();
        let producer: HashMap<&str, usize> = self.nodes.iter().enumerate().flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.as_str(), i))).collect();
        let outside: HashSet<&str> = self.inputs.iter().map(Value::name).chain(self.initializers.iter().map(|i| i.value.name())).collect();
        let mut pending = vec![0usize; self.nodes.len()];
        let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for input in node.inputs.iter().filter(|s| !s.is_empty()) {
                match producer.get(input.as_str()) {
                    Some(&p) => {
                        pending[i] += 1;
                        consumers[p].push(i);
                    }
                    None if outside.contains(input.as_str()) => {}
                    None => return Err(GraphError::UndefinedInput { graph: graph(), node: node.name.clone(), input: input.clone() }),
                }
            }
        }
        for out in &self.outputs {
            if !producer.contains_key(out.name()) && !outside.contains(out.name()) {
                return Err(GraphError::UndefinedInput { graph: graph(), node: "(graph outputs)".into(), input: out.name().into() });
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> = (0..self.nodes.len()).filter(|&i| pending[i] == 0).map(Reverse).collect();
        let mut order = Vec::with_capacity(self.nodes.len());
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for &c in &consumers[i] {
                pending[c] -= 1;
                if pending[c] == 0 {
                    ready.push(Reverse(c));
                }
            }
        }
        if order.len() < self.nodes.len() {
            let nodes = (0..self.nodes.len()).filter(|&i| pending[i] > 0).map(|i| self.nodes[i].name.clone()).collect();
            return Err(GraphError::Cycle { graph: graph(), nodes });
        }
        Ok(order)
    }

    fn model_proto(&self, order: &[usize], initializer: Vec<proto::TensorProto>) -> Result<proto::ModelProto> {
        let output_names: HashSet<&str> = self.outputs.iter().map(Value::name).collect();
        let graph = proto::GraphProto {
            name: Some(self.name().to_string()),
            node: order.iter().map(|&i| node_proto(&self.nodes[i])).collect::<Result<_>>()?,
            initializer,
            input: self.inputs.iter().map(value_info).collect(),
            output: self.outputs.iter().map(value_info).collect(),
            value_info: self.values.iter().filter(|v| !output_names.contains(v.name())).map(value_info).collect(),
            ..Default::default()
        };
        let opset = |domain: &str, version: i64| proto::OperatorSetIdProto { domain: Some(domain.to_string()), version: Some(version) };
        let mut opset_import = vec![opset("", self.opset())];
        opset_import.extend(self.domains().map(|(d, v)| opset(d, v)));
        Ok(proto::ModelProto {
            ir_version: Some(ir_version(self.opset())),
            opset_import,
            producer_name: Some("loc3r-export".to_string()),
            producer_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            doc_string: Some(self.doc().to_string()),
            graph: Some(graph),
            metadata_props: self.metadata().iter().map(|(k, v)| entry(k, v)).collect(),
            ..Default::default()
        })
    }
}

fn entry(key: &str, value: &str) -> proto::StringStringEntryProto {
    proto::StringStringEntryProto { key: Some(key.to_string()), value: Some(value.to_string()) }
}

fn value_info(v: &Value) -> proto::ValueInfoProto {
    let dim = v
        .shape()
        .iter()
        .map(|d| proto::tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(n) => dimension::Value::DimValue(*n as i64),
                Dim::Sym(s) => dimension::Value::DimParam(s.clone()),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = proto::type_proto::Tensor { elem_type: Some(onnx_elem_type(v.dtype())), shape: Some(proto::TensorShapeProto { dim }) };
    proto::ValueInfoProto {
        name: Some(v.name().to_string()),
        r#type: Some(proto::TypeProto { value: Some(proto::type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

fn node_proto(n: &Node) -> Result<proto::NodeProto> {
    let attribute = n.attrs.iter().map(|(k, a)| attribute(&n.name, k, a)).collect::<Result<_>>()?;
    Ok(proto::NodeProto {
        name: Some(n.name.clone()),
        op_type: Some(n.op_type.clone()),
        domain: Some(n.domain.clone()),
        input: n.inputs.clone(),
        output: n.outputs.clone(),
        attribute,
        ..Default::default()
    })
}

fn attribute(node: &str, name: &str, a: &Attr) -> Result<proto::AttributeProto> {
    use proto::attribute_proto::AttributeType as T;
    let mut p = proto::AttributeProto { name: Some(name.to_string()), ..Default::default() };
    let ty = match a {
        Attr::Int(v) => {
            p.i = Some(*v);
            T::Int
        }
        Attr::Ints(v) => {
            p.ints = v.clone();
            T::Ints
        }
        Attr::Float(v) => {
            p.f = Some(*v);
            T::Float
        }
        Attr::Floats(v) => {
            p.floats = v.clone();
            T::Floats
        }
        Attr::String(v) => {
            p.s = Some(v.as_bytes().to_vec());
            T::String
        }
        Attr::Tensor(t) => {
            p.t = Some(const_tensor_proto(t, &format!("{node}.{name}"))?);
            T::Tensor
        }
    };
    p.r#type = Some(ty as i32);
    Ok(p)
}

fn tensor_header(name: &str, dims: &[usize], dtype: crate::tensor::DType) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.to_string()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(onnx_elem_type(dtype)),
        ..Default::default()
    }
}

fn const_tensor_proto(t: &ConstTensor, name: &str) -> Result<proto::TensorProto> {
    let mut raw = Vec::new();
    t.write_as(t.dtype, &mut raw).map_err(|error| GraphError::TensorWrite { name: name.to_string(), dtype: t.dtype, error })?;
    let mut p = tensor_header("", &t.shape, t.dtype);
    p.raw_data = Some(raw);
    Ok(p)
}

fn inline_tensor(init: &Initializer) -> Result<proto::TensorProto> {
    let (v, dtype) = (&init.value, init.value.dtype());
    let expected = dtype.storage_bytes(init.data.numel()) as u64;
    let mut raw = Vec::with_capacity(expected as usize);
    init.data.write_as(dtype, &mut raw).map_err(|error| GraphError::TensorWrite { name: v.name().to_string(), dtype, error })?;
    check_size(init, raw.len() as u64)?;
    let mut p = tensor_header(v.name(), init.data.shape(), dtype);
    p.raw_data = Some(raw);
    Ok(p)
}

fn check_size(init: &Initializer, written: u64) -> Result<()> {
    let dtype = init.value.dtype();
    let expected = dtype.storage_bytes(init.data.numel()) as u64;
    if written == expected {
        Ok(())
    } else {
        Err(GraphError::TensorSize { name: init.value.name().to_string(), dtype, numel: init.data.numel(), expected, written })
    }
}

/// The external-data file: a buffered writer that knows its position and whether the
/// disk (rather than a tensor) failed.
struct DataFile {
    path: PathBuf,
    out: BufWriter<File>,
    pos: u64,
    disk_error: bool,
}

impl Write for DataFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf).inspect_err(|_| self.disk_error = true)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush().inspect_err(|_| self.disk_error = true)
    }
}

impl DataFile {
    fn create(path: &Path) -> Result<DataFile> {
        let file = File::create(path).map_err(|error| GraphError::Io { path: path.to_path_buf(), error })?;
        Ok(DataFile { path: path.to_path_buf(), out: BufWriter::with_capacity(8 << 20, file), pos: 0, disk_error: false })
    }

    fn io_error(&self, error: io::Error) -> GraphError {
        GraphError::Io { path: self.path.clone(), error }
    }

    /// Pads to `alignment`, streams the tensor, and returns its `TensorProto` pointing here.
    fn append(&mut self, init: &Initializer, location: &str, alignment: u64) -> Result<proto::TensorProto> {
        let pad = (alignment - self.pos % alignment) % alignment;
        self.write_all(&vec![0u8; pad as usize]).map_err(|e| self.io_error(e))?;
        let (name, dtype) = (init.value.name(), init.value.dtype());
        let offset = self.pos;
        if let Err(error) = init.data.write_as(dtype, self) {
            return Err(if self.disk_error { self.io_error(error) } else { GraphError::TensorWrite { name: name.to_string(), dtype, error } });
        }
        let length = self.pos - offset;
        check_size(init, length)?;
        let mut p = tensor_header(name, init.data.shape(), dtype);
        p.data_location = Some(DataLocation::External as i32);
        p.external_data = vec![entry("location", location), entry("offset", &offset.to_string()), entry("length", &length.to_string())];
        Ok(p)
    }

    /// Flushes and syncs; returns the file size.
    fn finish(mut self) -> Result<u64> {
        self.flush().map_err(|e| self.io_error(e))?;
        let file = self.out.get_ref();
        file.sync_all().map_err(|e| self.io_error(e))?;
        Ok(self.pos)
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let io_err = |error| GraphError::Io { path: path.to_path_buf(), error };
    let mut f = File::create(path).map_err(io_err)?;
    f.write_all(bytes).map_err(io_err)?;
    f.sync_all().map_err(io_err)
}

fn remove_stale(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(GraphError::Io { path: path.to_path_buf(), error: e }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ndarray::{ArrayD, IxDyn};

    use super::*;
    use crate::dims;
    use crate::graph::testing::{assert_close, feed_f32, run_f32};
    use crate::graph::{NodeSpec, OutputSpec};
    use crate::tensor::{DType, F32Tensor};

    fn read_model(path: &Path) -> proto::ModelProto {
        proto::ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
    }

    fn ext(t: &proto::TensorProto, key: &str) -> String {
        t.external_data.iter().find(|e| e.key.as_deref() == Some(key)).and_then(|e| e.value.clone()).unwrap()
    }

    /// x [b, 64] · W1 [64, 32] (fp16 in the file) · W2 [32, 8] + small bias; three
    /// weights of odd sizes so that padding is needed between them.
    fn mlp_graph() -> (GraphBuilder, Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut g = GraphBuilder::new("mlp");
        let w1: Vec<f32> = (0..64 * 32).map(|i| ((i * 37 % 101) as f32 - 50.0) / 97.0).collect();
        let w2: Vec<f32> = (0..32 * 8).map(|i| ((i * 11 % 23) as f32 - 11.0) / 13.0).collect();
        let b: Vec<f32> = (0..8).map(|i| i as f32 * 0.125).collect();
        let x = g.input("x", DType::F32, dims!["batch", 64]);
        let w1v = g.initializer("fc1.weight", Arc::new(F32Tensor::new(vec![64, 32], w1.clone())), DType::F16);
        let w2v = g.initializer("fc2.weight", Arc::new(F32Tensor::new(vec![33, 8], vec![0.0; 33 * 8])), DType::F32);
        let w2v_real = g.initializer("fc2.weight_real", Arc::new(F32Tensor::new(vec![32, 8], w2.clone())), DType::F32);
        let bv = g.initializer("fc2.bias", Arc::new(F32Tensor::new(vec![8], b.clone())), DType::F32);
        let _ = w2v; // unused on purpose: saved, aligned, harmless
        let mut s = g.scope("fc1");
        let w1f = s.cast("weight_f32", &w1v, DType::F32);
        let h = s.matmul("MatMul", &x, &w1f);
        let h = s.relu("act", &h);
        let mut s = g.scope("fc2");
        let y = s.matmul("MatMul", &h, &w2v_real);
        let y = s.add("bias", &y, &bv);
        g.output("y", &y);
        (g, w1, w2, b)
    }

    #[test]
    fn external_data_is_aligned_converted_and_runs() {
        let dir = tempfile::tempdir().unwrap();
        let (g, w1, w2, b) = mlp_graph();
        let stats = g.save(dir.path()).unwrap();
        let data_path = dir.path().join("mlp.onnx.data");
        assert_eq!(stats.data_path.as_deref(), Some(data_path.as_path()));
        assert_eq!(stats.params, (64 * 32 + 33 * 8 + 32 * 8 + 8) as u64);
        assert_eq!(stats.onnx_bytes, std::fs::metadata(&stats.onnx_path).unwrap().len());
        assert_eq!(stats.data_bytes, std::fs::metadata(&data_path).unwrap().len());

        let model = read_model(&stats.onnx_path);
        assert_eq!(model.ir_version, Some(8));
        assert_eq!(model.producer_name.as_deref(), Some("loc3r-export"));
        assert_eq!(model.opset_import[0].version, Some(17));
        let graph = model.graph.unwrap();
        let data = std::fs::read(&data_path).unwrap();
        let mut external = 0;
        for t in &graph.initializer {
            let name = t.name.as_deref().unwrap();
            if t.external_data.is_empty() {
                // Only the 32-byte bias is small enough to go inline.
                assert_eq!(name, "fc2.bias");
                assert_eq!(t.raw_data.as_ref().unwrap().len(), 32);
                continue;
            }
            external += 1;
            assert_eq!(t.data_location, Some(DataLocation::External as i32));
            assert_eq!(ext(t, "location"), "mlp.onnx.data");
            let offset: usize = ext(t, "offset").parse().unwrap();
            let length: usize = ext(t, "length").parse().unwrap();
            assert_eq!(offset % 64, 0, "{name} at {offset}");
            if name == "fc1.weight" {
                assert_eq!(t.data_type, Some(onnx_elem_type(DType::F16)));
                assert_eq!(length, 64 * 32 * 2);
                let first = half::f16::from_le_bytes([data[offset], data[offset + 1]]);
                assert_eq!(first, half::f16::from_f32(w1[0]));
            }
        }
        assert_eq!((external, stats.external_initializers), (3, 3));
        // Every created value has a value_info (or is a graph output).
        let infos: HashSet<_> = graph.value_info.iter().map(|v| v.name.clone().unwrap()).collect();
        for n in &graph.node {
            for o in &n.output {
                assert!(infos.contains(o) || o == "y", "{o} has no value_info");
            }
        }

        let xv: Vec<f32> = (0..2 * 64).map(|i| (i as f32 * 0.1).sin()).collect();
        let out = run_f32(&stats.onnx_path, vec![feed_f32("x", ArrayD::from_shape_vec(IxDyn(&[2, 64]), xv.clone()).unwrap())]);
        let (w2, b) = (&w2, &b);
        let want: Vec<f32> = (0..2)
            .flat_map(|r| {
                let h: Vec<f32> =
                    (0..32).map(|j| (0..64).map(|k| xv[r * 64 + k] * half::f16::from_f32(w1[k * 32 + j]).to_f32()).sum::<f32>().max(0.0)).collect();
                (0..8).map(move |n| (0..32).map(|j| h[j] * w2[j * 8 + n]).sum::<f32>() + b[n]).collect::<Vec<_>>()
            })
            .collect();
        assert_close(&out["y"], &ArrayD::from_shape_vec(IxDyn(&[2, 8]), want).unwrap(), 1e-5);
    }

    #[test]
    fn saving_is_deterministic() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        mlp_graph().0.save(a.path()).unwrap();
        mlp_graph().0.save(b.path()).unwrap();
        for f in ["mlp.onnx", "mlp.onnx.data"] {
            assert_eq!(std::fs::read(a.path().join(f)).unwrap(), std::fs::read(b.path().join(f)).unwrap(), "{f}");
        }
    }

    #[test]
    fn small_graphs_need_no_data_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("small.onnx.data"), b"stale").unwrap();
        let mut g = GraphBuilder::new("small");
        let x = g.input("x", DType::F32, [4usize]);
        let y = g.scope("m").add_scalar("add", &x, 1.0);
        g.output("y", &y);
        let stats = g.save(dir.path()).unwrap();
        assert_eq!((stats.data_path, stats.data_bytes), (None, 0));
        assert!(!dir.path().join("small.onnx.data").exists());
    }

    #[test]
    fn nodes_are_sorted_and_errors_named() {
        let mut g = GraphBuilder::new("order");
        let x = g.input("x", DType::F32, [4usize]);
        let a = g.scope("m").relu("a", &x);
        let b = g.scope("m").neg("b", &a);
        g.output("b", &b);
        g.nodes.swap(0, 1); // consumer first: the sort must restore a -> b -> Identity
        let order = g.topological_order().unwrap();
        let names: Vec<&str> = order.iter().map(|&i| g.nodes[i].name.as_str()).collect();
        assert_eq!(names, ["m/a", "m/b", "b/Identity"]);

        let ghost = Value::new("ghost".into(), DType::F32, dims![4]);
        let spec = NodeSpec {
            op_type: "Relu",
            inputs: vec![Some(&ghost)],
            outputs: vec![OutputSpec { name: None, dtype: DType::F32, shape: dims![4] }],
            ..NodeSpec::default()
        };
        g.scope("m").node("c", spec);
        let err = g.save(tempfile::tempdir().unwrap().path()).unwrap_err().to_string();
        assert!(err.contains("node `m/c` reads `ghost`"), "{err}");

        let mut g = GraphBuilder::new("cycle");
        let x = g.input("x", DType::F32, [4usize]);
        let a = g.scope("m").add("a", &x, &x);
        g.scope("m").relu("b", &a);
        g.nodes[0].inputs[1] = g.nodes[1].outputs[0].clone();
        let err = g.topological_order().unwrap_err().to_string();
        assert!(err.contains("cycle through node(s) m/a, m/b"), "{err}");
    }

    #[test]
    fn impossible_conversions_name_the_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = GraphBuilder::new("bad");
        let w = g.initializer("w", Arc::new(F32Tensor::new(vec![1024], vec![1.0; 1024])), DType::I64);
        g.output("w_out", &w);
        let err = g.save(dir.path()).unwrap_err().to_string();
        assert!(err.contains("initializer `w`: cannot write it as i64"), "{err}");
        let mut g = GraphBuilder::new("problems");
        g.problem("something is off");
        assert!(g.save(dir.path()).unwrap_err().to_string().contains("something is off"));
        assert!(!dir.path().join("problems.onnx").exists());
    }
}
