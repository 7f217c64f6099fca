//! Array ops: dtype and shape changes, joining and splitting, indexing, shape-building.
//!
//! Every wrapper emits exactly one node, named `<scope>/<step>`. Ops that take a shape or
//! bounds as an input accept either a `Value` or constant integers ([`I64Operand`]); with
//! constants (the common case) the output shape is inferred exactly.

use super::builder::{GraphBuilder, Scope};
use super::constant::ConstTensor;
use super::{onnx_elem_type, shape, Attr, Dim, Value};
use crate::tensor::DType;

/// An integer operand given either as a graph value or as constants, which become a 1-D
/// i64 constant (`const/i64/[…]`): `s.reshape("r", &x, [0, 0, 4, 16])`.
pub trait I64Operand {
    /// The operand as a graph value.
    fn into_value(self, g: &mut GraphBuilder) -> Value;
}

impl I64Operand for &Value {
    fn into_value(self, _: &mut GraphBuilder) -> Value {
        self.clone()
    }
}
impl I64Operand for &[i64] {
    fn into_value(self, g: &mut GraphBuilder) -> Value {
        g.ints(self)
    }
}
impl<const N: usize> I64Operand for [i64; N] {
    fn into_value(self, g: &mut GraphBuilder) -> Value {
        g.ints(&self)
    }
}
impl I64Operand for Vec<i64> {
    fn into_value(self, g: &mut GraphBuilder) -> Value {
        g.ints(&self)
    }
}
impl I64Operand for &Vec<i64> {
    fn into_value(self, g: &mut GraphBuilder) -> Value {
        g.ints(self)
    }
}

impl Scope<'_> {
    /// Dims for an output whose values are only known at run time: one `<node>:<axis>` per
    /// entry of the 1-D shape operand (its length must be fixed).
    fn unknown_dims(&mut self, step: &str, shape_operand: &Value) -> Vec<Dim> {
        match shape_operand.shape() {
            [Dim::Fixed(n)] => {
                let node = self.node_name(step);
                (0..*n).map(|i| shape::unknown(&node, i)).collect()
            }
            _ => {
                self.fail(step, format!("the shape operand {shape_operand:?} must be 1-D with a fixed length"));
                Vec::new()
            }
        }
    }

    /// `Cast(x)` to `to`.
    pub fn cast(&mut self, step: &str, x: &Value, to: DType) -> Value {
        self.emit(step, "Cast", &[Some(x)], vec![("to", Attr::Int(i64::from(onnx_elem_type(to))))], to, x.shape().to_vec())
    }

    /// `Reshape(x, target)`: `0` copies the input dim, `-1` is inferred.
    /// `s.reshape("split_heads", &x, [0, 0, heads, head_dim])`.
    pub fn reshape(&mut self, step: &str, x: &Value, target: impl I64Operand) -> Value {
        let target = target.into_value(self);
        let out = match self.const_ints(&target).map(<[i64]>::to_vec) {
            Some(t) => {
                let rule = shape::reshape(x.shape(), &t, &self.node_name(step));
                self.shape_or(step, rule, x.shape())
            }
            None => self.unknown_dims(step, &target),
        };
        self.emit(step, "Reshape", &[Some(x), Some(&target)], vec![], x.dtype(), out)
    }

    /// `Transpose(x)` with permutation `perm` (output axis `i` is input axis `perm[i]`).
    pub fn transpose(&mut self, step: &str, x: &Value, perm: &[i64]) -> Value {
        let rule = shape::transpose(x.shape(), perm);
        let out = self.shape_or(step, rule, x.shape());
        self.emit(step, "Transpose", &[Some(x)], vec![("perm", Attr::Ints(perm.to_vec()))], x.dtype(), out)
    }

    /// `Concat(inputs)` along `axis`; symbolic lengths add up (`past+seq`).
    pub fn concat(&mut self, step: &str, inputs: &[&Value], axis: i64) -> Value {
        if inputs.is_empty() {
            self.fail(step, "Concat needs at least one input");
            return self.scalar(DType::F32, 0.0);
        }
        let dtype = self.same_dtype(step, "Concat", inputs);
        let shapes: Vec<&[Dim]> = inputs.iter().map(|v| v.shape()).collect();
        let rule = shape::concat(&shapes, axis);
        let out = self.shape_or(step, rule, inputs[0].shape());
        let ins: Vec<Option<&Value>> = inputs.iter().map(|v| Some(*v)).collect();
        self.emit(step, "Concat", &ins, vec![("axis", Attr::Int(axis))], dtype, out)
    }

    /// `Split(x)` along `axis` into parts of `sizes`; one output per part, named
    /// `<node>/output_<i>`.
    pub fn split(&mut self, step: &str, x: &Value, axis: i64, sizes: &[usize]) -> Vec<Value> {
        let fallback = vec![x.shape().to_vec(); sizes.len()];
        let outs = shape::split(x.shape(), axis, sizes).unwrap_or_else(|e| {
            self.fail(step, e);
            fallback
        });
        let split: Vec<i64> = sizes.iter().map(|&s| s as i64).collect();
        let split = self.ints(&split);
        let spec = super::NodeSpec {
            op_type: "Split",
            domain: "",
            inputs: vec![Some(x), Some(&split)],
            attrs: vec![("axis".to_string(), Attr::Int(axis))],
            outputs: outs.into_iter().map(|shape| super::OutputSpec { name: None, dtype: x.dtype(), shape }).collect(),
        };
        self.node(step, spec)
    }

    /// `Slice(x, starts, ends, axes, steps)`. `axes` empty means `0..starts.len()`, `steps`
    /// empty means all 1. Use `i64::MAX` as an open end.
    pub fn slice(&mut self, step: &str, x: &Value, starts: impl I64Operand, ends: impl I64Operand, axes: &[i64], steps: &[i64]) -> Value {
        let starts = starts.into_value(self);
        let ends = ends.into_value(self);
        let axes_v = (!axes.is_empty()).then(|| self.ints(axes));
        let steps_v = (!steps.is_empty()).then(|| self.ints(steps));
        let node = self.node_name(step);
        let out = match (self.const_ints(&starts).map(<[i64]>::to_vec), self.const_ints(&ends).map(<[i64]>::to_vec)) {
            (Some(s), Some(e)) => {
                let rule = shape::slice(x.shape(), &s, &e, axes, steps, &node);
                self.shape_or(step, rule, x.shape())
            }
            // Run-time bounds: only the sliced axes become unknown.
            _ => {
                let n = starts.fixed_dim(0).unwrap_or(0);
                let ax: Vec<i64> = if axes.is_empty() { (0..n as i64).collect() } else { axes.to_vec() };
                let mut out = x.shape().to_vec();
                for a in ax {
                    match shape::axis(a, x.rank()) {
                        Ok(a) => out[a] = shape::unknown(&node, a),
                        Err(e) => self.fail(step, e),
                    }
                }
                out
            }
        };
        let ins = [Some(x), Some(&starts), Some(&ends), axes_v.as_ref(), steps_v.as_ref()];
        self.emit(step, "Slice", &ins, vec![], x.dtype(), out)
    }

    /// `Gather(data, indices)` along `axis`: `data[..axis] ++ indices.shape ++ data[axis+1..]`.
    pub fn gather(&mut self, step: &str, data: &Value, indices: &Value, axis: i64) -> Value {
        self.expect_dtype(step, "Gather indices", indices, &[DType::I64, DType::I32]);
        let rule = shape::gather(data.shape(), indices.shape(), axis);
        let out = self.shape_or(step, rule, data.shape());
        self.emit(step, "Gather", &[Some(data), Some(indices)], vec![("axis", Attr::Int(axis))], data.dtype(), out)
    }

    /// `Unsqueeze(x, axes)`: inserts size-1 axes (axes refer to the output).
    pub fn unsqueeze(&mut self, step: &str, x: &Value, axes: &[i64]) -> Value {
        let rule = shape::unsqueeze(x.shape(), axes);
        let out = self.shape_or(step, rule, x.shape());
        let axes = self.ints(axes);
        self.emit(step, "Unsqueeze", &[Some(x), Some(&axes)], vec![], x.dtype(), out)
    }

    /// `Squeeze(x, axes)`: removes size-1 axes (all of them if `axes` is empty).
    pub fn squeeze(&mut self, step: &str, x: &Value, axes: &[i64]) -> Value {
        let rule = shape::squeeze(x.shape(), axes);
        let out = self.shape_or(step, rule, x.shape());
        let axes = (!axes.is_empty()).then(|| self.ints(axes));
        self.emit(step, "Squeeze", &[Some(x), axes.as_ref()], vec![], x.dtype(), out)
    }

    /// `Shape(x)`: the run-time shape as a 1-D i64 tensor of length `rank`.
    pub fn shape(&mut self, step: &str, x: &Value) -> Value {
        self.emit(step, "Shape", &[Some(x)], vec![], DType::I64, vec![Dim::Fixed(x.rank())])
    }

    /// `Expand(x, shape)`: bidirectional broadcast of `x` to `shape` (a `1` in `shape`
    /// keeps `x`'s dim): `s.expand("repeat_kv", &k, [1, 1, n_rep, 1, 1])`.
    pub fn expand(&mut self, step: &str, x: &Value, shape: impl I64Operand) -> Value {
        let target = shape.into_value(self);
        let out = match self.const_ints(&target).map(<[i64]>::to_vec) {
            Some(t) => {
                let dims: Vec<Dim> = t.iter().map(|&d| Dim::Fixed(d.max(0) as usize)).collect();
                let rule = shape::broadcast(&[x.shape(), &dims]);
                self.shape_or(step, rule, x.shape())
            }
            None => self.unknown_dims(step, &target),
        };
        self.emit(step, "Expand", &[Some(x), Some(&target)], vec![], x.dtype(), out)
    }

    /// `Range(start, limit, delta)` of scalars; the length is inferred when all three are
    /// integer constants, else named `<node>:0` (see [`GraphBuilder::refine_shape`]).
    pub fn range(&mut self, step: &str, start: &Value, limit: &Value, delta: &Value) -> Value {
        let dtype = self.same_dtype(step, "Range", &[start, limit, delta]);
        let consts = [start, limit, delta].map(|v| self.const_ints(v).and_then(|c| c.first().copied()));
        let len = match consts {
            [Some(s), Some(l), Some(d)] if d != 0 => Dim::Fixed(((l - s) as f64 / d as f64).ceil().max(0.0) as usize),
            _ => shape::unknown(&self.node_name(step), 0),
        };
        self.emit(step, "Range", &[Some(start), Some(limit), Some(delta)], vec![], dtype, vec![len])
    }

    /// `Trilu(x, k)`: keeps the upper (`upper`) or lower triangle of the last two axes,
    /// offset by the scalar i64 `k` (main diagonal if `None`).
    pub fn trilu(&mut self, step: &str, x: &Value, k: Option<&Value>, upper: bool) -> Value {
        self.emit(step, "Trilu", &[Some(x), k], vec![("upper", Attr::Int(i64::from(upper)))], x.dtype(), x.shape().to_vec())
    }

    /// `ConstantOfShape(shape)`: a tensor of `shape` filled with `value` as `dtype`.
    pub fn constant_of_shape(&mut self, step: &str, shape: impl I64Operand, dtype: DType, value: f64) -> Value {
        let target = shape.into_value(self);
        let out = match self.const_ints(&target) {
            Some(t) => t.iter().map(|&d| Dim::Fixed(d.max(0) as usize)).collect(),
            None => self.unknown_dims(step, &target),
        };
        let mut fill = ConstTensor::scalar(dtype, value);
        fill.shape = vec![1];
        self.emit(step, "ConstantOfShape", &[Some(&target)], vec![("value", Attr::Tensor(fill))], dtype, out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ndarray::{ArrayD, IxDyn};

    use crate::dims;
    use crate::graph::testing::{assert_close, feed_i64, run_f32};
    use crate::graph::GraphBuilder;
    use crate::tensor::{DType, F32Tensor};

    #[test]
    fn shapes_are_inferred_through_array_ops() {
        let mut g = GraphBuilder::new("t");
        let x = g.input("x", DType::F32, dims!["b", "s", 64]);
        let mut s = g.scope("attn");
        let h = s.reshape("split_heads", &x, [0, 0, 4, 16]);
        let h = s.transpose("to_bhsd", &h, &[0, 2, 1, 3]);
        assert_eq!(h.shape(), &dims!["b", 4, "s", 16][..]);
        let parts = s.split("qk", &h, -1, &[8, 8]);
        assert_eq!(parts[1].shape(), &dims!["b", 4, "s", 8][..]);
        assert_eq!(parts[1].name(), "attn/qk/output_1");
        let u = s.unsqueeze("u", &parts[0], &[2]);
        assert_eq!(u.shape(), &dims!["b", 4, 1, "s", 8][..]);
        let e = s.expand("rep", &u, [1, 1, 3, 1, 1]);
        assert_eq!(e.shape(), &dims!["b", 4, 3, "s", 8][..]);
        let last = s.slice("last", &x, [-1], [i64::MAX], &[1], &[]);
        assert_eq!(last.shape(), &dims!["b", "attn/last:1", 64][..]);
        let sh = s.shape("shape", &x);
        assert_eq!((sh.dtype(), sh.shape()), (DType::I64, &dims![3][..]));
        let (a, b, c) = (s.scalar_i64(0), s.scalar_i64(10), s.scalar_i64(3));
        assert_eq!(s.range("r", &a, &b, &c).shape(), &dims![4][..]);
        let z = s.constant_of_shape("zeros", [2, 5], DType::F16, 0.0);
        assert_eq!((z.dtype(), z.shape()), (DType::F16, &dims![2, 5][..]));
        g.check().unwrap();
    }

    /// Gather (embedding lookup), Cast, Reshape, Transpose, Concat, Split, Slice, Squeeze,
    /// Expand, Trilu, Range, Shape and ConstantOfShape on ORT against plain Rust.
    #[test]
    fn array_ops_match_reference() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = GraphBuilder::new("array");
        let ids = g.input("ids", DType::I64, dims!["b", "s"]);
        let table: Vec<f32> = (0..10 * 6).map(|i| i as f32 * 0.25 - 3.0).collect();
        let emb = g.initializer("embed.weight", Arc::new(F32Tensor::new(vec![10, 6], table.clone())), DType::F16);
        let mut s = g.scope("embed");
        let e = s.gather("Gather", &emb, &ids, 0); // [b, s, 6] f16
        let e = s.cast("to_f32", &e, DType::F32);
        let r = s.reshape("heads", &e, [0, 0, 2, 3]); // [b, s, 2, 3]
        let t = s.transpose("bhsd", &r, &[0, 2, 1, 3]); // [b, 2, s, 3]
        let parts = s.split("halves", &t, 1, &[1, 1]);
        let c = s.concat("swap", &[&parts[1], &parts[0]], 1); // [b, 2, s, 3]
        let first = s.slice("first_pos", &c, [0], [1], &[2], &[]); // [b, 2, 1, 3]
        let first = s.squeeze("squeeze", &first, &[2]); // [b, 2, 3]
        let tri = s.trilu("tri", &first, None, true);
        let ex = s.expand("expand", &tri, [2, 1, 1, 1]); // [2, b, 2, 3]
        let sh = s.shape("shape", &ids);
        let filled = s.constant_of_shape("ones", &sh, DType::F32, 1.5);
        let (a, b, d) = (s.scalar_i64(1), s.scalar_i64(8), s.scalar_i64(3));
        let rng = s.range("range", &a, &b, &d);
        let rng = s.cast("range_f32", &rng, DType::F32);
        g.output("concat", &c);
        g.output("expand", &ex);
        g.output("ones", &filled);
        g.output("range", &rng);
        g.save(dir.path()).unwrap();

        let ids_v = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![0i64, 9, 4, 7, 1, 2]).unwrap();
        let out = run_f32(&dir.path().join("array.onnx"), vec![feed_i64("ids", ids_v.clone())]);
        let f16 = |v: f32| half::f16::from_f32(v).to_f32();
        // e[b, s, h*3 + d] -> t[b, h, s, d]; swap halves of h.
        let want_c = ArrayD::from_shape_fn(IxDyn(&[2, 2, 3, 3]), |ix| {
            let (bb, h, ss, dd) = (ix[0], 1 - ix[1], ix[2], ix[3]);
            f16(table[ids_v[[bb, ss]] as usize * 6 + h * 3 + dd])
        });
        assert_close(&out["concat"], &want_c, 1e-6);
        let want_ex = ArrayD::from_shape_fn(IxDyn(&[2, 2, 2, 3]), |ix| {
            let (bb, h, dd) = (ix[1], ix[2], ix[3]);
            if dd >= h {
                want_c[[bb, h, 0, dd]]
            } else {
                0.0
            }
        });
        assert_close(&out["expand"], &want_ex, 1e-6);
        assert_close(&out["ones"], &ArrayD::from_elem(IxDyn(&[2, 3]), 1.5), 0.0);
        assert_close(&out["range"], &ArrayD::from_shape_vec(IxDyn(&[3]), vec![1.0, 4.0, 7.0]).unwrap(), 0.0);
    }
}
