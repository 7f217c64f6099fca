//! Building blocks shared by the graph families: checkpoint weights as initializers,
//! Linear, LayerNorm, RMSNorm, GELU (erf and tanh) and softmax, each with the precision
//! rules of docs/numerics.md §2: in f16 graphs, norm statistics and softmax run in f32. Blocks that create weights or
//! matmuls in the compute dtype take the graph's [`ModelGraph`]; the others need only the
//! builder (a `&mut ModelGraph` derefs to it).

use std::io;
use std::sync::Arc;

use crate::checkpoint::{TensorRef, Weights};
use crate::error::Result;
use crate::graph::{GraphBuilder, Value};
use crate::models::context::ModelGraph;
use crate::tensor::{DType, TensorData};

/// A checkpoint tensor as an initializer named exactly as in the checkpoint.
pub fn weight(g: &mut GraphBuilder, w: &Weights, name: &str, shape: &[usize], dtype: DType) -> Result<Value> {
    let t = w.get(name, shape)?;
    let init_name = t.name.clone();
    Ok(g.initializer(&init_name, Arc::new(t), dtype))
}

/// A Linear weight `[out, in]`, stored transposed `[in, out]` so the graph needs no
/// Transpose before MatMul. Transposition happens block by block while the graph is
/// saved, so RAM stays bounded even for `lm_head`.
#[derive(Debug)]
pub struct TransposedLinear {
    inner: TensorRef,
    shape: [usize; 2],
}

impl TransposedLinear {
    pub fn new(inner: TensorRef) -> TransposedLinear {
        let s = inner.shape();
        let shape = [s[1], s[0]];
        TransposedLinear { inner, shape }
    }
}

impl TensorData for TransposedLinear {
    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn transposed_from_checkpoint(&self) -> bool {
        true
    }

    fn write_as(&self, dtype: DType, out: &mut dyn io::Write) -> io::Result<()> {
        let [inp, outp] = self.shape;
        let bytes = self.inner.raw_bytes();
        let elem = self.inner.dtype.size();
        let read = |row: usize, col: usize| -> f32 {
            let o = (row * inp + col) * elem;
            let b = &bytes[o..o + elem];
            match self.inner.dtype {
                DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                DType::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
                DType::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
                _ => unreachable!("checkpoint tensors are float"),
            }
        };
        // Output rows are input columns; produce a block of them at a time (~16 MB).
        let block = ((16 << 20) / (outp * 4)).clamp(1, inp);
        let mut buf = vec![0f32; block * outp];
        let mut c0 = 0;
        while c0 < inp {
            let c1 = (c0 + block).min(inp);
            for r in 0..outp {
                for c in c0..c1 {
                    buf[(c - c0) * outp + r] = read(r, c);
                }
            }
            crate::tensor::write_f32s_as(&buf[..(c1 - c0) * outp], dtype, out)?;
            c0 = c1;
        }
        self.inner.release();
        Ok(())
    }
}

/// `y = x·Wᵀ (+ b)` for `w.pp(...)` holding `weight [out, in]` and optionally `bias [out]`,
/// weights in the graph's compute dtype.
///
/// ```text
/// x [.., in] ─MatMul(Wᵀ [in,out])─▶ [.., out] ─Add(b)─▶ y
/// ```
///
/// When the export quantizes this layer ([`ModelGraph::weight_quant_for`]), the MatMul
/// becomes a quantized one ([`crate::quant::quantized_linear`]); the bias stays float. With
/// INT8 activations, `x` passes a QuantizeLinear/DequantizeLinear pair first
/// ([`ModelGraph::activation_input`]).
pub fn linear(g: &mut ModelGraph, w: &Weights, x: &Value, in_dim: usize, out_dim: usize, bias: bool) -> Result<Value> {
    let dt = g.compute();
    let t = w.get("weight", &[out_dim, in_dim])?;
    let path = w.path();
    let x = &g.activation_input(x)?;
    let y = match g.weight_quant_for(&path) {
        Some(scheme) => {
            let name = t.name.clone();
            crate::quant::quantized_linear(g, &scheme, &name, Arc::new(t), x, in_dim, out_dim, &path)
        }
        None => {
            let name = t.name.clone();
            let wt = g.initializer(&name, Arc::new(TransposedLinear::new(t)), dt);
            g.scope(path.as_str()).matmul("MatMul", x, &wt)
        }
    };
    let b = if bias { Some(weight(g, w, "bias", &[out_dim], dt)?) } else { None };
    let mut s = g.scope(path.as_str());
    Ok(match b {
        Some(b) => s.add("Add", &y, &b),
        None => y,
    })
}

/// LayerNorm over the last axis with affine `weight`/`bias`, always in f32 (opset-17
/// `LayerNormalization`, which TensorRT maps to its normalisation layer).
///
/// ```text
/// x ─Cast f32─▶ LayerNormalization(weight, bias, eps) ─Cast dt─▶ y
/// ```
pub fn layer_norm(g: &mut GraphBuilder, w: &Weights, x: &Value, dim: usize, eps: f64) -> Result<Value> {
    let gain = weight(g, w, "weight", &[dim], DType::F32)?;
    let shift = weight(g, w, "bias", &[dim], DType::F32)?;
    let dt = x.dtype();
    let mut s = g.scope(w.path().as_str());
    let x32 = if dt == DType::F32 { x.clone() } else { s.cast("to_f32", x, DType::F32) };
    let y = s.layer_norm("LayerNormalization", &x32, &gain, Some(&shift), -1, eps as f32);
    Ok(if dt == DType::F32 { y } else { s.cast("to_io", &y, dt) })
}

/// RMSNorm as HF Qwen2RMSNorm: statistics in f32, cast back *before* the gain.
///
/// ```text
/// x ─Cast f32─▶ x² ─ReduceMean(-1)─▶ +eps ─Sqrt─▶ Reciprocal ─▶ x·inv ─Cast dt─▶ ·weight ─▶ y
/// ```
pub fn rms_norm(g: &mut GraphBuilder, w: &Weights, x: &Value, dim: usize, eps: f64) -> Result<Value> {
    let dt = x.dtype();
    let gain = weight(g, w, "weight", &[dim], dt)?;
    let mut s = g.scope(w.path().as_str());
    let x32 = if dt == DType::F32 { x.clone() } else { s.cast("to_f32", x, DType::F32) };
    let sq = s.mul("square", &x32, &x32);
    let ms = s.reduce_mean("mean_square", &sq, &[-1], true);
    let ms = s.add_scalar("add_eps", &ms, eps);
    let rms = s.sqrt("sqrt", &ms);
    let inv = s.reciprocal("inv_rms", &rms);
    let y = s.mul("normalize", &x32, &inv);
    let y = if dt == DType::F32 { y } else { s.cast("to_io", &y, dt) };
    Ok(s.mul("output", &y, &gain))
}

/// Exact GELU: `0.5·x·(1 + erf(x/√2))` (LLaVA projector, CUT3R MLPs, Loc3R heads).
///
/// ```text
/// x ─·(1/√2)─▶ Erf ─+1─▶ ·x ─·0.5─▶ y
/// ```
pub fn gelu_erf(g: &mut GraphBuilder, path: &str, x: &Value) -> Value {
    let mut s = g.scope(path);
    let t = s.mul_scalar("div_sqrt2", x, std::f64::consts::FRAC_1_SQRT_2);
    let t = s.erf("erf", &t);
    let t = s.add_scalar("add_one", &t, 1.0);
    let t = s.mul("mul_x", x, &t);
    s.mul_scalar("half", &t, 0.5)
}

/// Tanh GELU (`gelu_pytorch_tanh`, SigLIP): `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
///
/// ```text
/// x ─x³·0.044715 + x─▶ ·√(2/π) ─Tanh─▶ +1 ─▶ ·x ─·0.5─▶ y
/// ```
pub fn gelu_tanh(g: &mut GraphBuilder, path: &str, x: &Value) -> Value {
    let mut s = g.scope(path);
    let x3 = s.pow_scalar("cube", x, 3.0);
    let t = s.mul_scalar("cube_coeff", &x3, 0.044715);
    let t = s.add("inner", x, &t);
    let t = s.mul_scalar("scale", &t, (2.0 / std::f64::consts::PI).sqrt());
    let t = s.tanh("tanh", &t);
    let t = s.add_scalar("add_one", &t, 1.0);
    let t = s.mul("mul_x", x, &t);
    s.mul_scalar("half", &t, 0.5)
}

/// Softmax over `axis`, computed in f32 whatever the input dtype; returns f32.
pub fn softmax_f32(g: &mut GraphBuilder, path: &str, x: &Value, axis: i64) -> Value {
    let mut s = g.scope(path);
    let x32 = if x.dtype() == DType::F32 { x.clone() } else { s.cast("scores_to_f32", x, DType::F32) };
    s.softmax("Softmax", &x32, axis)
}

/// Casts `x` to `dt` unless it already is.
pub fn cast_to(g: &mut GraphBuilder, path: &str, step: &str, x: &Value, dt: DType) -> Value {
    if x.dtype() == dt {
        x.clone()
    } else {
        g.scope(path).cast(step, x, dt)
    }
}

/// A 2-layer MLP `fc2(gelu_erf(fc1(x)))` whose layers are `<w>.{first}` and `<w>.{second}`,
/// in the graph's compute dtype.
pub fn mlp_erf(g: &mut ModelGraph, w: &Weights, (first, second): (&str, &str), x: &Value, in_dim: usize, hidden: usize, out_dim: usize) -> Result<Value> {
    let h = linear(g, &w.pp(first), x, in_dim, hidden, true)?;
    let h = gelu_erf(g, &format!("{}/gelu", w.path()), &h);
    linear(g, &w.pp(second), &h, hidden, out_dim, true)
}
