//! Weight-only quantization of linear layers (docs/quantization.md).
//!
//! A Linear `y = x·Wᵀ` whose weight `W [N, K]` (N outputs, K inputs) is selected by the
//! export options is written with integer weights instead of float ones, rounded to
//! nearest (RTN, no calibration data), in one of two graph forms:
//!
//! ```text
//! matmulnbits:  x [.., K] ─com.microsoft.MatMulNBits(B u8 [N, k_blocks, blob], scales [N, k_blocks], zero_points?)─▶ [.., N]
//! qdq:          codes i8/i4 [K, N] ─DequantizeLinear(scales, axis, block_size)─▶ W' [K, N];  x ─MatMul(W')─▶ [.., N]
//! ```
//!
//! The codes are computed while the graph is saved, one layer at a time (like every other
//! initializer), so RAM stays bounded by the largest layer.
//!
//! Modules: [`scheme`] (what to quantize and how, validated), [`rtn`] (the arithmetic and
//! the byte layouts), [`activations`] (INT8 activations of the encoders from a calibration
//! cache), this file (the graph nodes and the lazily computed initializers).

pub mod activations;
pub mod rtn;
pub mod scheme;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use loc3r_bundle::{QuantFormat, WeightBits};

use crate::graph::{Attr, Dim, NodeSpec, OutputSpec, Value};
use crate::models::context::ModelGraph;
use crate::tensor::{DType, TensorData};

pub use activations::{ActivationQuant, ActivationRequest, CalibrationCache, Method};
pub use rtn::{dequantize_matmulnbits, dequantize_qdq, Packed};
pub use scheme::QuantRequest;

/// The `ai.onnx` opset of graphs with QDQ weights: 21 is the first with blocked
/// `DequantizeLinear` (`block_size`) and int4 tensors.
pub const QDQ_OPSET: i64 = 21;
pub use scheme::{Preset, QuantLayer, QuantOptions, WeightQuant};

/// `x·Wᵀ` with the weight called `name` (`[n, k]`, the checkpoint's Linear layout; a
/// checkpoint tensor or any other [`TensorData`]) quantized by `scheme`. Node and
/// initializer names follow the float Linear's (`<path>/MatMulNBits` or `<path>/MatMul`;
/// `<name>` plus `/codes`, `/scales`, `/zero_points`).
#[allow(clippy::too_many_arguments)]
pub fn quantized_linear(g: &mut ModelGraph, scheme: &WeightQuant, name: &str, weight: Arc<dyn TensorData>, x: &Value, k: usize, n: usize, path: &str) -> Value {
    let scale_dtype = g.compute();
    let layer = Arc::new(LazyQuantized::new(weight, *scheme, scale_dtype));
    let layout = rtn::Layout::new(scheme, k, n);
    let part = |g: &mut ModelGraph, which: Part, dtype: DType, shape: Vec<usize>| -> Value {
        layer.pending.fetch_add(1, Ordering::SeqCst);
        let data = Arc::new(QuantizedPart { layer: layer.clone(), which, shape });
        g.initializer(&format!("{name}/{}", which.suffix()), data, dtype)
    };
    let mut out_shape: Vec<Dim> = x.shape().to_vec();
    out_shape.pop();
    out_shape.push(n.into());
    match scheme.format {
        QuantFormat::MatMulNBits => {
            let codes = part(g, Part::Codes, DType::U8, layout.codes_shape.clone());
            let scales = part(g, Part::Scales, scale_dtype, layout.scales_shape.clone());
            let zero_points = layout.zero_points_shape.clone().map(|shape| part(g, Part::ZeroPoints, DType::U8, shape));
            let attrs = vec![
                ("K".to_string(), Attr::Int(k as i64)),
                ("N".to_string(), Attr::Int(n as i64)),
                ("bits".to_string(), Attr::Int(i64::from(scheme.bits.bits()))),
                ("block_size".to_string(), Attr::Int(layout.block as i64)),
                ("accuracy_level".to_string(), Attr::Int(i64::from(scheme.accuracy_level.unwrap_or(0)))),
            ];
            let spec = NodeSpec {
                op_type: "MatMulNBits",
                domain: "com.microsoft",
                inputs: vec![Some(x), Some(&codes), Some(&scales), zero_points.as_ref()],
                attrs,
                outputs: vec![OutputSpec { name: None, dtype: x.dtype(), shape: out_shape }],
            };
            g.scope(path).node("MatMulNBits", spec).remove(0)
        }
        QuantFormat::Qdq => {
            if g.opset() < QDQ_OPSET {
                let opset = g.opset();
                g.problem(format!(
                    "{path}: QDQ weights need ai.onnx opset {QDQ_OPSET} (blocked DequantizeLinear, int4), the graph is opset {opset} (exporter bug)"
                ));
            }
            let code_dtype = match scheme.bits {
                WeightBits::Int4 => DType::I4,
                WeightBits::Int8 => DType::I8,
            };
            let codes = part(g, Part::Codes, code_dtype, layout.codes_shape.clone());
            let scales = part(g, Part::Scales, scale_dtype, layout.scales_shape.clone());
            // Per channel: one scale per column of W' [K, N] (axis 1); blocked: blocks along K (axis 0).
            let attrs = match scheme.block_size {
                None => vec![("axis", Attr::Int(1))],
                Some(b) => vec![("axis", Attr::Int(0)), ("block_size", Attr::Int(b as i64))],
            };
            let mut s = g.scope(path);
            let w = s.op("DequantizeLinear", "DequantizeLinear", &[&codes, &scales], &attrs, scale_dtype, [k, n]);
            s.matmul("MatMul", x, &w)
        }
    }
}

/// Which initializer of a quantized layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Codes,
    Scales,
    ZeroPoints,
}

impl Part {
    fn suffix(self) -> &'static str {
        match self {
            Part::Codes => "codes",
            Part::Scales => "scales",
            Part::ZeroPoints => "zero_points",
        }
    }
}

/// One layer's weight, quantized on first use and dropped once every part is written.
#[derive(Debug)]
struct LazyQuantized {
    weight: Arc<dyn TensorData>,
    scheme: WeightQuant,
    scale_dtype: DType,
    packed: Mutex<Option<Arc<Packed>>>,
    /// Parts not written yet; the last one frees the packed layer.
    pending: AtomicUsize,
}

impl LazyQuantized {
    fn new(weight: Arc<dyn TensorData>, scheme: WeightQuant, scale_dtype: DType) -> LazyQuantized {
        LazyQuantized { weight, scheme, scale_dtype, packed: Mutex::new(None), pending: AtomicUsize::new(0) }
    }

    fn packed(&self) -> io::Result<Arc<Packed>> {
        let mut slot = self.packed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let (n, k) = (self.weight.shape()[0], self.weight.shape()[1]);
        // Read as f32 (a checkpoint tensor converts from bf16/f16 and releases its pages after).
        let mut bytes = Vec::with_capacity(n * k * 4);
        self.weight.write_as(DType::F32, &mut bytes)?;
        let w: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        drop(bytes);
        let packed = Arc::new(rtn::quantize(&w, n, k, &self.scheme, self.scale_dtype));
        *slot = Some(packed.clone());
        Ok(packed)
    }

    fn written(&self) {
        // Saturating: a part written twice (a graph saved twice) must not wrap the count.
        let before = self.pending.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| Some(p.saturating_sub(1))).unwrap_or(0);
        if before <= 1 {
            *self.packed.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }
}

#[derive(Debug)]
struct QuantizedPart {
    layer: Arc<LazyQuantized>,
    which: Part,
    shape: Vec<usize>,
}

impl TensorData for QuantizedPart {
    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn write_as(&self, dtype: DType, out: &mut dyn io::Write) -> io::Result<()> {
        let packed = self.layer.packed()?;
        let result = match self.which {
            Part::Codes => out.write_all(&packed.codes),
            Part::Scales => crate::tensor::write_f32s_as(&packed.scales, dtype, out),
            Part::ZeroPoints => match &packed.zero_points {
                Some(z) => out.write_all(z),
                None => Err(io::Error::other("zero points requested from a symmetric layer (exporter bug)")),
            },
        };
        self.layer.written();
        result
    }
}
