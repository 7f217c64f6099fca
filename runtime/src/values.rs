//! Moving arrays in and out of ONNX Runtime values, whatever the graph's float dtype.

use half::f16;
use ndarray::{ArrayD, ArrayView, Dimension, IxDyn};
use ort::value::{DynValue, Tensor, TensorRef};

use crate::error::{Error, Result};

/// An f32 array as a value of `dtype` (`f32` or `f16`, as the manifest spells them).
pub fn from_f32(array: ArrayD<f32>, dtype: &str, what: &str) -> Result<DynValue> {
    let v = match dtype {
        "f32" => Tensor::from_array(array).map(|t| t.into_dyn()),
        "f16" => Tensor::from_array(array.mapv(f16::from_f32)).map(|t| t.into_dyn()),
        other => return Err(Error::Bundle(format!("{what}: unsupported input dtype {other}"))),
    };
    v.map_err(|e| Error::ort(what.to_string(), e))
}

/// A zero-copy f32 input borrowing `array` (which must be in standard layout).
pub fn f32_view<'a, D: Dimension + 'static>(array: ArrayView<'a, f32, D>, what: &str) -> Result<TensorRef<'a, f32>> {
    TensorRef::from_array_view(array).map_err(|e| Error::ort(what.to_string(), e))
}

/// A float value (f32 or f16) as an f32 array.
pub fn to_f32(value: &DynValue, what: &str) -> Result<ArrayD<f32>> {
    if let Ok(a) = value.try_extract_array::<f32>() {
        return Ok(a.to_owned());
    }
    value.try_extract_array::<f16>().map(|a| a.mapv(f32::from)).map_err(|e| Error::ort(format!("reading {what}"), e))
}

/// An f32 array of the given shape from a flat vector.
pub fn array(shape: &[usize], data: Vec<f32>) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(shape), data).expect("shape matches data")
}
