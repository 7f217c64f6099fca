//! [`Weights`]: a scoped, checked view on one graph family of a checkpoint, in the
//! spirit of candle's `VarBuilder`: `w.pp("model").pp("layers").pp(3).get("weight", &[..])`.

use crate::error::{Error, Result};

use super::{Checkpoint, TensorRef};

#[derive(Clone)]
pub struct Weights {
    ckpt: Checkpoint,
    family: String,
    path: Vec<String>,
}

impl Weights {
    pub(super) fn new(ckpt: Checkpoint, family: &str) -> Weights {
        Weights { ckpt, family: family.to_string(), path: Vec::new() }
    }

    /// A sub-scope: `w.pp("layers").pp(3)`.
    pub fn pp(&self, part: impl ToString) -> Weights {
        let mut path = self.path.clone();
        path.push(part.to_string());
        Weights { ckpt: self.ckpt.clone(), family: self.family.clone(), path }
    }

    /// The dotted scope path, e.g. `model.layers.3.mlp`.
    pub fn path(&self) -> String {
        self.path.join(".")
    }

    pub fn family(&self) -> &str {
        &self.family
    }

    pub fn config(&self) -> &crate::config::Config {
        self.ckpt.config()
    }

    fn logical(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path())
        }
    }

    /// The tensor `<path>.<name>`, which must have `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<TensorRef> {
        let logical = self.logical(name);
        let spec = self
            .ckpt
            .names()
            .resolve(&self.family, &logical)
            .ok_or_else(|| Error::Invalid(format!("tensor `{logical}` is not in the name map's `{}` family; add it to models/names.json", self.family)))?;
        let t = self.ckpt.tensor(spec)?;
        let found = crate::tensor::TensorData::shape(&t);
        if found != shape {
            return Err(Error::Shape { mapped: t.name.clone(), file: t.file_name(), expected: shape.to_vec(), found: found.to_vec() });
        }
        Ok(t)
    }
}
