//! The interface between checkpoint tensors and graph initializers (the element types,
//! [`DType`], are part of the bundle contract, `loc3r_bundle`).
//!
//! The graph builder never holds weights in memory: an initializer is an
//! `Arc<dyn TensorData>` that writes its bytes (converted to the requested dtype)
//! straight into the graph's external-data file when the graph is saved.

use std::fmt;
use std::io;

pub use loc3r_bundle::DType;

/// Tensor contents that can be written on demand (a checkpoint tensor, or a constant
/// computed by the exporter such as a pooling matrix or a RoPE table).
pub trait TensorData: Send + Sync + fmt::Debug {
    /// Dimensions, outermost first.
    fn shape(&self) -> &[usize];
    /// Writes all elements, little endian, converted to `dtype` (float tensors accept
    /// f32/f16/bf16). Fails with `io::ErrorKind::InvalidInput` for an impossible conversion.
    fn write_as(&self, dtype: DType, out: &mut dyn io::Write) -> io::Result<()>;

    fn numel(&self) -> usize {
        self.shape().iter().product()
    }

    /// Whether the graph holds this checkpoint tensor transposed (a Linear weight `[out, in]`
    /// stored `[in, out]` so MatMul needs no Transpose). A training graph that makes the
    /// tensor an input transposes its gradient back to the checkpoint's layout.
    fn transposed_from_checkpoint(&self) -> bool {
        false
    }
}

/// A dense f32 tensor held in memory (exporter-computed constants, tests).
#[derive(Debug, Clone, PartialEq)]
pub struct F32Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl F32Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "F32Tensor: shape and data length disagree");
        F32Tensor { shape, data }
    }
}

impl TensorData for F32Tensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn write_as(&self, dtype: DType, out: &mut dyn io::Write) -> io::Result<()> {
        write_f32s_as(&self.data, dtype, out)
    }
}

/// Writes f32 values converted to `dtype`, in bounded chunks.
pub fn write_f32s_as(values: &[f32], dtype: DType, out: &mut dyn io::Write) -> io::Result<()> {
    const CHUNK: usize = 1 << 16;
    let mut buf = Vec::with_capacity(CHUNK * 4);
    for chunk in values.chunks(CHUNK) {
        buf.clear();
        match dtype {
            DType::F32 => chunk.iter().for_each(|v| buf.extend_from_slice(&v.to_le_bytes())),
            DType::F16 => chunk.iter().for_each(|v| buf.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes())),
            DType::BF16 => chunk.iter().for_each(|v| buf.extend_from_slice(&half::bf16::from_f32(*v).to_le_bytes())),
            other => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("cannot write float values as {other}")));
            }
        }
        out.write_all(&buf)?;
    }
    Ok(())
}
