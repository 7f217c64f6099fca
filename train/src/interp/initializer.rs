//! Reading initializers (checkpoint weights, constants) into [`Tensor`]s.
//!
//! Each initializer is written in its declared dtype and widened, so an f16 or bf16 weight
//! holds exactly the rounded value ONNX Runtime sees.

use loc3r_export::graph::Initializer;
use loc3r_export::DType;

use super::tensor::{from_vec, Tensor};
use super::InterpError;

/// The initializer's elements, widened to f64 / i64 / bool.
pub(crate) fn read(init: &Initializer) -> Result<Tensor, InterpError> {
    let name = init.value.name();
    let dtype = init.value.dtype();
    let fail = |problem: String| InterpError::Initializer { name: name.to_string(), dtype, problem };
    let shape = init.data.shape().to_vec();
    let numel: usize = shape.iter().product();
    let stored = dtype.storage_bytes(numel);
    let mut bytes = Vec::with_capacity(stored);
    init.data.write_as(dtype, &mut bytes).map_err(|e| fail(e.to_string()))?;
    if bytes.len() != stored {
        return Err(fail(format!("wrote {} bytes, but {numel} elements need {stored}", bytes.len())));
    }
    let tensor = match dtype {
        DType::F32 => {
            Tensor::Float(from_vec(&shape, bytes.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect()).map_err(fail)?)
        }
        DType::F16 => Tensor::Float(from_vec(&shape, bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f64()).collect()).map_err(fail)?),
        DType::BF16 => {
            Tensor::Float(from_vec(&shape, bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f64()).collect()).map_err(fail)?)
        }
        DType::I64 => Tensor::Int(
            from_vec(&shape, bytes.chunks_exact(8).map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])).collect()).map_err(fail)?,
        ),
        DType::I32 => {
            Tensor::Int(from_vec(&shape, bytes.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect()).map_err(fail)?)
        }
        DType::U8 => Tensor::Int(from_vec(&shape, bytes.iter().map(|&b| i64::from(b)).collect()).map_err(fail)?),
        DType::Bool => Tensor::Bool(from_vec(&shape, bytes.iter().map(|&b| b != 0).collect()).map_err(fail)?),
        DType::I8 => Tensor::Int(from_vec(&shape, bytes.iter().map(|&b| i64::from(b as i8)).collect()).map_err(fail)?),
        DType::I4 => {
            // Two's-complement nibbles, the first element in the low one: shift it to the top, then back with sign.
            let nibble = |i: usize| i64::from(((bytes[i / 2] >> (4 * (i % 2))) << 4) as i8 >> 4);
            Tensor::Int(from_vec(&shape, (0..numel).map(nibble).collect()).map_err(fail)?)
        }
    };
    Ok(tensor)
}
