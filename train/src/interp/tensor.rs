//! [`Tensor`], the interpreter's value, and the element-generic helpers the op families
//! share (broadcasting, reshaping).

use ndarray::{ArrayD, ArrayViewD, IxDyn, Zip};

use super::InterpError;

/// A value during interpretation. Every float dtype is held as f64, every integer dtype
/// as i64.
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor {
    Float(ArrayD<f64>),
    Int(ArrayD<i64>),
    Bool(ArrayD<bool>),
}

impl Tensor {
    /// The elements of a float tensor.
    pub fn float(&self) -> Result<&ArrayD<f64>, InterpError> {
        f64::of(self).map_err(|_| self.wrong_kind("float"))
    }

    /// The elements of an integer tensor.
    pub fn int(&self) -> Result<&ArrayD<i64>, InterpError> {
        i64::of(self).map_err(|_| self.wrong_kind("integer"))
    }

    /// The elements of a bool tensor.
    pub fn boolean(&self) -> Result<&ArrayD<bool>, InterpError> {
        bool::of(self).map_err(|_| self.wrong_kind("bool"))
    }

    /// Dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::Float(a) => a.shape(),
            Tensor::Int(a) => a.shape(),
            Tensor::Bool(a) => a.shape(),
        }
    }

    /// `"float"`, `"integer"` or `"bool"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Tensor::Float(_) => f64::KIND,
            Tensor::Int(_) => i64::KIND,
            Tensor::Bool(_) => bool::KIND,
        }
    }

    /// A float tensor widened from f32 (feeds prepared for ONNX Runtime).
    pub fn from_f32(a: &ArrayD<f32>) -> Tensor {
        Tensor::Float(a.mapv(f64::from))
    }

    fn wrong_kind(&self, expected: &'static str) -> InterpError {
        InterpError::WrongKind { expected, actual: self.kind() }
    }
}

impl From<ArrayD<f64>> for Tensor {
    fn from(a: ArrayD<f64>) -> Tensor {
        Tensor::Float(a)
    }
}
impl From<ArrayD<i64>> for Tensor {
    fn from(a: ArrayD<i64>) -> Tensor {
        Tensor::Int(a)
    }
}
impl From<ArrayD<bool>> for Tensor {
    fn from(a: ArrayD<bool>) -> Tensor {
        Tensor::Bool(a)
    }
}

/// An element type of [`Tensor`]: lets array ops (reshape, gather, concat, ...) be written
/// once for all three kinds.
pub(crate) trait Elem: Copy + Default + PartialEq + std::fmt::Debug + 'static {
    const KIND: &'static str;
    fn of(t: &Tensor) -> Result<&ArrayD<Self>, String>;
    fn wrap(a: ArrayD<Self>) -> Tensor;
}

macro_rules! elem {
    ($t:ty, $variant:ident, $kind:literal) => {
        impl Elem for $t {
            const KIND: &'static str = $kind;
            fn of(t: &Tensor) -> Result<&ArrayD<Self>, String> {
                match t {
                    Tensor::$variant(a) => Ok(a),
                    other => Err(format!("expected a {} tensor, got a {} one", $kind, other.kind())),
                }
            }
            fn wrap(a: ArrayD<Self>) -> Tensor {
                Tensor::$variant(a)
            }
        }
    };
}

elem!(f64, Float, "float");
elem!(i64, Int, "integer");
elem!(bool, Bool, "bool");

/// Runs `$body` with the type alias `$T` set to the element type of tensor `$t`:
/// `by_kind!(x, T => concat::<T>(inputs, axis))`.
macro_rules! by_kind {
    ($t:expr, $T:ident => $body:expr) => {
        match $t {
            $crate::interp::Tensor::Float(_) => {
                type $T = f64;
                $body
            }
            $crate::interp::Tensor::Int(_) => {
                type $T = i64;
                $body
            }
            $crate::interp::Tensor::Bool(_) => {
                type $T = bool;
                $body
            }
        }
    };
}
pub(crate) use by_kind;

/// The numpy (multidirectional) broadcast of `shapes`.
pub(crate) fn broadcast_shape(shapes: &[&[usize]]) -> Result<Vec<usize>, String> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[rank - s.len() + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(format!("cannot broadcast shapes {shapes:?} together"));
            }
        }
    }
    Ok(out)
}

/// A view of `a` broadcast to `shape`.
pub(crate) fn broadcast_to<'a, T>(a: &'a ArrayD<T>, shape: &[usize]) -> Result<ArrayViewD<'a, T>, String> {
    a.broadcast(IxDyn(shape)).ok_or_else(|| format!("cannot broadcast shape {:?} to {shape:?}", a.shape()))
}

/// `f(a, b)` elementwise with numpy broadcasting.
pub(crate) fn zip2<A: Copy, B: Copy, C>(a: &ArrayD<A>, b: &ArrayD<B>, f: impl Fn(A, B) -> C) -> Result<ArrayD<C>, String> {
    let shape = broadcast_shape(&[a.shape(), b.shape()])?;
    let (a, b) = (broadcast_to(a, &shape)?, broadcast_to(b, &shape)?);
    Ok(Zip::from(&a).and(&b).map_collect(|&x, &y| f(x, y)))
}

/// `f(a, b, c)` elementwise with numpy broadcasting.
pub(crate) fn zip3<A: Copy, B: Copy, C: Copy, D>(a: &ArrayD<A>, b: &ArrayD<B>, c: &ArrayD<C>, f: impl Fn(A, B, C) -> D) -> Result<ArrayD<D>, String> {
    let shape = broadcast_shape(&[a.shape(), b.shape(), c.shape()])?;
    let (a, b, c) = (broadcast_to(a, &shape)?, broadcast_to(b, &shape)?, broadcast_to(c, &shape)?);
    Ok(Zip::from(&a).and(&b).and(&c).map_collect(|&x, &y, &z| f(x, y, z)))
}

/// `a` with `shape`, elements in row-major order.
pub(crate) fn reshape<T: Copy>(a: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, String> {
    a.to_shape(IxDyn(shape)).map(|v| v.into_owned()).map_err(|e| format!("cannot reshape {:?} to {shape:?}: {e}", a.shape()))
}

/// Builds an array of `shape` from row-major `values`.
pub(crate) fn from_vec<T>(shape: &[usize], values: Vec<T>) -> Result<ArrayD<T>, String> {
    let n = values.len();
    ArrayD::from_shape_vec(IxDyn(shape), values).map_err(|_| format!("{n} values do not fill shape {shape:?}"))
}
