//! Small constants named by their value (`const/i64/[1]`, `const/f32/1e-6`).
//!
//! A constant is an initializer that is always stored inline in the `.onnx` file. The
//! builder creates each distinct constant once and reuses it (genai's
//! `/model/constants/INT64/[1]`), so a graph has one `1`, not a thousand.

use std::fmt::Write as _;
use std::io;

use crate::tensor::{write_f32s_as, DType, TensorData};

/// The elements of a [`ConstTensor`].
#[derive(Debug, Clone, PartialEq)]
pub enum ConstValues {
    /// For `f32`, `f16` and `bf16` constants (rounded when written).
    Float(Vec<f32>),
    /// For `i64`, `i32` and `u8` constants (range-checked when written).
    Int(Vec<i64>),
    /// For `bool` constants.
    Bool(Vec<bool>),
}

impl ConstValues {
    fn len(&self) -> usize {
        match self {
            ConstValues::Float(v) => v.len(),
            ConstValues::Int(v) => v.len(),
            ConstValues::Bool(v) => v.len(),
        }
    }
}

/// A small tensor held by value: a constant of the graph or a tensor attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstTensor {
    /// The dtype the constant has in the graph.
    pub dtype: DType,
    /// Dimensions, outermost first (empty for a scalar).
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub values: ConstValues,
}

/// Constants with more elements than this are named by a hash of their contents.
const MAX_NAMED_ELEMENTS: usize = 32;

impl ConstTensor {
    /// Checks that the element count matches the shape and the values suit the dtype.
    pub fn new(dtype: DType, shape: Vec<usize>, values: ConstValues) -> Result<ConstTensor, String> {
        let numel: usize = shape.iter().product();
        if numel != values.len() {
            return Err(format!("constant of shape {shape:?} needs {numel} values, got {}", values.len()));
        }
        let fits = match (&values, dtype) {
            (ConstValues::Float(_), d) => d.is_float(),
            (ConstValues::Int(_), DType::I64 | DType::I32 | DType::U8) => true,
            (ConstValues::Bool(_), DType::Bool) => true,
            _ => false,
        };
        if !fits {
            return Err(format!("{} values cannot make a {dtype} constant", values_kind(&values)));
        }
        let range = match dtype {
            DType::I32 => i64::from(i32::MIN)..=i64::from(i32::MAX),
            DType::U8 => 0..=255,
            _ => i64::MIN..=i64::MAX,
        };
        if let ConstValues::Int(v) = &values {
            if let Some(bad) = v.iter().find(|x| !range.contains(x)) {
                return Err(format!("{bad} does not fit in {dtype}"));
            }
        }
        Ok(ConstTensor { dtype, shape, values })
    }

    /// A scalar (rank 0) of `dtype`: float dtypes take `v` as a float, integer dtypes
    /// truncate it, `bool` is `v != 0`.
    pub fn scalar(dtype: DType, v: f64) -> ConstTensor {
        let values = match dtype {
            DType::F32 | DType::F16 | DType::BF16 => ConstValues::Float(vec![v as f32]),
            DType::I64 | DType::I32 | DType::U8 | DType::I8 | DType::I4 => ConstValues::Int(vec![v as i64]),
            DType::Bool => ConstValues::Bool(vec![v != 0.0]),
        };
        ConstTensor { dtype, shape: Vec::new(), values }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.values.len()
    }

    /// The integer values, for `i64`/`i32`/`u8` constants.
    pub fn ints(&self) -> Option<&[i64]> {
        match &self.values {
            ConstValues::Int(v) => Some(v),
            _ => None,
        }
    }

    /// The float values, for float constants.
    pub fn floats(&self) -> Option<&[f32]> {
        match &self.values {
            ConstValues::Float(v) => Some(v),
            _ => None,
        }
    }

    /// The graph name: `const/<dtype>/<value>`, e.g. `const/f32/1e-6` for a scalar,
    /// `const/i64/[0,0,-1]` for a vector, `const/f32/[[1.0,0.0],[0.0,1.0]]` for a matrix.
    /// Constants with more than 32 elements are `const/<dtype>/<shape>/<hash>`.
    pub fn name(&self) -> String {
        let mut s = format!("const/{}/", self.dtype);
        if self.numel() > MAX_NAMED_ELEMENTS {
            let dims: Vec<String> = self.shape.iter().map(usize::to_string).collect();
            let _ = write!(s, "{}/{:016x}", dims.join("x"), self.content_hash());
            return s;
        }
        let items: Vec<String> = (0..self.numel()).map(|i| self.element_string(i)).collect();
        write_nested(&mut s, &self.shape, &items);
        s
    }

    fn element_string(&self, i: usize) -> String {
        match &self.values {
            // `{:?}` is the shortest round-trip form: 1.0, 0.5, 1e-6, -inf, NaN.
            ConstValues::Float(v) => format!("{:?}", v[i]),
            ConstValues::Int(v) => v[i].to_string(),
            ConstValues::Bool(v) => v[i].to_string(),
        }
    }

    /// FNV-1a over shape and element bits: stable across runs and platforms.
    fn content_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        for d in &self.shape {
            feed(&(*d as u64).to_le_bytes());
        }
        match &self.values {
            ConstValues::Float(v) => v.iter().for_each(|x| feed(&x.to_bits().to_le_bytes())),
            ConstValues::Int(v) => v.iter().for_each(|x| feed(&x.to_le_bytes())),
            ConstValues::Bool(v) => v.iter().for_each(|x| feed(&[u8::from(*x)])),
        }
        h
    }
}

fn values_kind(v: &ConstValues) -> &'static str {
    match v {
        ConstValues::Float(_) => "float",
        ConstValues::Int(_) => "integer",
        ConstValues::Bool(_) => "bool",
    }
}

/// Writes `items` as nested brackets following `shape` (a scalar is just its value).
fn write_nested(out: &mut String, shape: &[usize], items: &[String]) {
    let Some((&outer, inner)) = shape.split_first() else {
        out.push_str(&items[0]);
        return;
    };
    let stride: usize = inner.iter().product();
    out.push('[');
    for i in 0..outer {
        if i > 0 {
            out.push(',');
        }
        write_nested(out, inner, &items[i * stride..(i + 1) * stride]);
    }
    out.push(']');
}

impl TensorData for ConstTensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn write_as(&self, dtype: DType, out: &mut dyn io::Write) -> io::Result<()> {
        let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidInput, msg);
        match &self.values {
            ConstValues::Float(v) => write_f32s_as(v, dtype, out),
            ConstValues::Int(v) => {
                let mut buf = Vec::with_capacity(v.len() * dtype.size());
                for &x in v {
                    match dtype {
                        DType::I64 => buf.extend_from_slice(&x.to_le_bytes()),
                        DType::I32 => {
                            let y = i32::try_from(x).map_err(|_| invalid(format!("{x} does not fit in i32")))?;
                            buf.extend_from_slice(&y.to_le_bytes());
                        }
                        DType::U8 => buf.push(u8::try_from(x).map_err(|_| invalid(format!("{x} does not fit in u8")))?),
                        DType::I8 => buf.push(i8::try_from(x).map_err(|_| invalid(format!("{x} does not fit in i8")))? as u8),
                        other => return Err(invalid(format!("cannot write integer values as {other}"))),
                    }
                }
                out.write_all(&buf)
            }
            ConstValues::Bool(v) => match dtype {
                DType::Bool | DType::U8 => out.write_all(&v.iter().map(|b| u8::from(*b)).collect::<Vec<u8>>()),
                other => Err(invalid(format!("cannot write bool values as {other}"))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(dtype: DType, shape: &[usize], values: ConstValues) -> ConstTensor {
        ConstTensor::new(dtype, shape.to_vec(), values).unwrap()
    }

    #[test]
    fn names_follow_the_value() {
        assert_eq!(ConstTensor::scalar(DType::F32, 1e-6).name(), "const/f32/1e-6");
        assert_eq!(ConstTensor::scalar(DType::F16, 1.0).name(), "const/f16/1.0");
        assert_eq!(ConstTensor::scalar(DType::I64, 2.0).name(), "const/i64/2");
        assert_eq!(c(DType::I64, &[1], ConstValues::Int(vec![1])).name(), "const/i64/[1]");
        assert_eq!(c(DType::I64, &[3], ConstValues::Int(vec![0, 0, -1])).name(), "const/i64/[0,0,-1]");
        assert_eq!(c(DType::F32, &[2, 2], ConstValues::Float(vec![1.0, 0.0, 0.0, 1.0])).name(), "const/f32/[[1.0,0.0],[0.0,1.0]]");
        assert_eq!(c(DType::Bool, &[], ConstValues::Bool(vec![true])).name(), "const/bool/true");
        assert_eq!(c(DType::I64, &[0], ConstValues::Int(vec![])).name(), "const/i64/[]");
    }

    #[test]
    fn large_constants_are_named_by_hash() {
        let a = c(DType::F32, &[8, 8], ConstValues::Float((0..64).map(|i| i as f32).collect()));
        let mut b = a.clone();
        assert!(a.name().starts_with("const/f32/8x8/"), "{}", a.name());
        assert_eq!(a.name(), b.name());
        if let ConstValues::Float(v) = &mut b.values {
            v[63] = 0.0;
        }
        assert_ne!(a.name(), b.name());
    }

    #[test]
    fn checks_count_and_kind() {
        assert!(ConstTensor::new(DType::F32, vec![2], ConstValues::Float(vec![1.0])).is_err());
        assert!(ConstTensor::new(DType::I64, vec![1], ConstValues::Float(vec![1.0])).is_err());
        assert!(ConstTensor::new(DType::F16, vec![1], ConstValues::Float(vec![1.0])).is_ok());
        assert!(ConstTensor::new(DType::U8, vec![1], ConstValues::Int(vec![256])).is_err());
    }

    #[test]
    fn writes_converted_bytes() {
        let mut out = Vec::new();
        c(DType::I64, &[2], ConstValues::Int(vec![1, -1])).write_as(DType::I32, &mut out).unwrap();
        assert_eq!(out, [1, 0, 0, 0, 255, 255, 255, 255]);
        out.clear();
        ConstTensor::scalar(DType::F16, 1.0).write_as(DType::F16, &mut out).unwrap();
        assert_eq!(out, half::f16::from_f32(1.0).to_le_bytes());
        let err = c(DType::I64, &[1], ConstValues::Int(vec![300])).write_as(DType::U8, &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
