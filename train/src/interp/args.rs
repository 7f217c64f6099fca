//! [`NodeArgs`]: one node's input tensors and attributes, with typed accessors whose errors
//! say which input or attribute was wrong.

use loc3r_export::graph::{Attr, Node};
use ndarray::ArrayD;

use super::tensor::{Elem, Tensor};
use super::OpResult;

/// A node about to run: its inputs (`None` for omitted optional ones) and the graph's opset.
pub(crate) struct NodeArgs<'a> {
    pub node: &'a Node,
    pub inputs: Vec<Option<&'a Tensor>>,
    pub opset: i64,
}

impl<'a> NodeArgs<'a> {
    /// The op type (`"MatMul"`).
    pub fn op(&self) -> &'a str {
        &self.node.op_type
    }

    /// Required input `i`.
    pub fn input(&self, i: usize) -> Result<&'a Tensor, String> {
        self.opt(i).ok_or_else(|| format!("input {i} is required but missing"))
    }

    /// Optional input `i` (`None` when omitted or past the end).
    pub fn opt(&self, i: usize) -> Option<&'a Tensor> {
        self.inputs.get(i).copied().flatten()
    }

    /// Required input `i` as elements of `T`.
    pub fn typed<T: Elem>(&self, i: usize) -> Result<&'a ArrayD<T>, String> {
        T::of(self.input(i)?).map_err(|e| format!("input {i}: {e}"))
    }

    /// Required float input `i`.
    pub fn float(&self, i: usize) -> Result<&'a ArrayD<f64>, String> {
        self.typed::<f64>(i)
    }

    /// Required integer input `i` of rank 0 or 1, as a list.
    pub fn ints(&self, i: usize) -> Result<Vec<i64>, String> {
        let a = self.typed::<i64>(i)?;
        if a.ndim() > 1 {
            return Err(format!("input {i} must be a scalar or 1-D, got shape {:?}", a.shape()));
        }
        Ok(a.iter().copied().collect())
    }

    /// Optional integer input `i` of rank 0 or 1.
    pub fn opt_ints(&self, i: usize) -> Result<Option<Vec<i64>>, String> {
        self.opt(i).map(|_| self.ints(i)).transpose()
    }

    /// Integer input `i` holding exactly one value.
    pub fn int_scalar(&self, i: usize) -> Result<i64, String> {
        match self.ints(i)?[..] {
            [v] => Ok(v),
            ref other => Err(format!("input {i} must hold one value, got {}", other.len())),
        }
    }

    /// Attribute `name`, if set.
    pub fn attr(&self, name: &str) -> Option<&'a Attr> {
        self.node.attrs.iter().find(|(k, _)| k == name).map(|(_, a)| a)
    }

    /// Integer attribute `name`, `default` when unset.
    pub fn int_attr(&self, name: &str, default: i64) -> Result<i64, String> {
        match self.attr(name) {
            None => Ok(default),
            Some(Attr::Int(v)) => Ok(*v),
            Some(other) => Err(format!("attribute `{name}` must be an int, got {other:?}")),
        }
    }

    /// Integer-list attribute `name`, if set.
    pub fn ints_attr(&self, name: &str) -> Result<Option<Vec<i64>>, String> {
        match self.attr(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v.clone())),
            Some(other) => Err(format!("attribute `{name}` must be a list of ints, got {other:?}")),
        }
    }

    /// Float attribute `name`, `default` when unset.
    pub fn float_attr(&self, name: &str, default: f32) -> Result<f64, String> {
        match self.attr(name) {
            None => Ok(f64::from(default)),
            Some(Attr::Float(v)) => Ok(f64::from(*v)),
            Some(other) => Err(format!("attribute `{name}` must be a float, got {other:?}")),
        }
    }

    /// String attribute `name`, `default` when unset.
    pub fn string_attr(&self, name: &str, default: &'a str) -> Result<&'a str, String> {
        match self.attr(name) {
            None => Ok(default),
            Some(Attr::String(v)) => Ok(v),
            Some(other) => Err(format!("attribute `{name}` must be a string, got {other:?}")),
        }
    }

    /// Number of outputs the node declares.
    pub fn outputs(&self) -> usize {
        self.node.outputs.len()
    }
}

pub(crate) use loc3r_export::graph::{normalize_axes as axes, normalize_axis as axis};

/// One output.
pub(crate) fn one(t: Tensor) -> OpResult {
    Ok(vec![t])
}
