//! CUT3R-specific building blocks (docs/cut3r.md §2, docs/numerics.md §3): RoPE-2D from constant tables,
//! self-/cross-attention with RoPE, the CroCo encoder `Block` and the DUSt3R `DecoderBlock`.
//! Linear, LayerNorm, exact GELU, the MLP and f32 softmax are the shared blocks of
//! [`crate::models::layers`].
//!
//! Every helper takes the builder, the `Weights` scope of its module and its inputs, and names
//! its nodes `<module path>/<step>` (docs/adding-a-model-family.md §3). Initializers keep their
//! checkpoint names.
//!
//! Precision (the graph's [`ModelGraph`]): matmuls, attention and MLPs run in its compute
//! dtype (f32 or f16), every LayerNorm uses its epsilon (`cut3r.norm_eps`).
//! LayerNorm statistics and softmax always run in f32 (explicit casts in f16 graphs, so
//! TensorRT sees them as f32 layers). A residual stream keeps the dtype of its input: the
//! step graph feeds the recurrent state and memory streams in f32, so in f16 graphs their
//! residual sums stay f32 and only the sub-layers run in f16 (this bounds the drift through
//! the recurrence; see `export/tests/cut3r_parity.rs`).

use std::sync::Arc;

use crate::checkpoint::Weights;
use crate::error::Result;
use crate::graph::{GraphBuilder, Scope, Value};
use crate::models::attention::{attention, AttentionOptions, KeyValues, Rope, Rotated, Scale};
use crate::models::context::ModelGraph;
use crate::models::layers::{cast_to, layer_norm, linear, mlp_erf};
use crate::tensor::{DType, F32Tensor};

/// `nn.LayerNorm(c, eps)` over the last axis (eps: the graph's) with the result in `out`: the shared f32
/// [`layer_norm`], with the cast to `out` when the stream's dtype differs (an f32 state or
/// memory stream feeding an f16 sub-layer).
///
/// ```text
/// x [.., c] ──Cast f32 (if x is not)──▶ LayerNormalization (f32) ──Cast `out` (if needed)──▶ y
/// ```
pub(super) fn norm(g: &mut ModelGraph, w: &Weights, x: &Value, c: usize, out: DType) -> Result<Value> {
    let eps = g.norm_eps()?;
    let path = w.path();
    // An f32 result is normalised straight from f32 (no round trip through the compute dtype).
    let x = if out == DType::F32 { cast_to(g, &path, "input_to_f32", x, DType::F32) } else { x.clone() };
    let y = layer_norm(g, w, &x, c, eps)?;
    Ok(cast_to(g, &path, "to_out", &y, out))
}

/// `Mlp` (`fc1`, GELU(erf), `fc2`) in the compute dtype.
pub(super) fn mlp(g: &mut ModelGraph, w: &Weights, x: &Value, c: usize, hidden: usize, out: usize) -> Result<Value> {
    mlp_erf(g, w, ("fc1", "fc2"), x, c, hidden, out)
}

/// Constant RoPE-2D tables for one set of token positions and one head size.
#[derive(Clone)]
pub(super) struct RopeTable {
    /// `[N, hd]`: `[cos θ_y, cos θ_y, cos θ_x, cos θ_x]` (each block Q = hd/4 wide).
    cos: Value,
    /// `[N, hd]`: `[−sin θ_y, sin θ_y, −sin θ_x, sin θ_x]` (signs of rotate-half baked in).
    sin: Value,
    /// The head size the tables were built for.
    head_dim: usize,
}

/// The rows of a RoPE table, computed analytically in f64 (works for negative positions, e.g.
/// the camera token's (−1, −1)): for token position (py, px) and j < Q = hd/4,
/// `θ_j = p · base^(−j/Q)` (docs/numerics.md §3). Returns (`cos`, `sin±`) row-major `[N, hd]`.
pub(super) fn rope_rows(positions: &[(f64, f64)], head_dim: usize, base: f64) -> (Vec<f32>, Vec<f32>) {
    let q = head_dim / 4;
    let inv: Vec<f64> = (0..q).map(|j| base.powf(-(j as f64) / q as f64)).collect();
    let mut cos = Vec::with_capacity(positions.len() * head_dim);
    let mut sin = Vec::with_capacity(positions.len() * head_dim);
    for &(py, px) in positions {
        for p in [py, px] {
            let angles: Vec<f64> = inv.iter().map(|f| p * f).collect();
            for sign in [-1.0, 1.0] {
                cos.extend(angles.iter().map(|a| a.cos() as f32));
                sin.extend(angles.iter().map(|a| (sign * a.sin()) as f32));
            }
        }
    }
    (cos, sin)
}

/// Registers the tables of `positions` for heads of `head_dim` as initializers
/// `<name>/cos`, `<name>/sin` in the compute dtype.
pub(super) fn rope_table(g: &mut ModelGraph, name: &str, positions: &[(f64, f64)], head_dim: usize, base: f64) -> RopeTable {
    let dtype = g.compute();
    let (cos, sin) = rope_rows(positions, head_dim, base);
    let shape = vec![positions.len(), head_dim];
    let cos = g.initializer(&format!("{name}/cos"), Arc::new(F32Tensor::new(shape.clone(), cos)), dtype);
    let sin = g.initializer(&format!("{name}/sin"), Arc::new(F32Tensor::new(shape, sin)), dtype);
    RopeTable { cos, sin, head_dim }
}

/// RoPE tables of the query and key tokens (`None` in the pose retriever, which has none).
/// As an attention [`Rope`] hook it rotates `x [B, heads, N, hd]` with the table of its side
/// (rotate-half pairing within each half; docs/numerics.md §3):
///
/// ```text
/// x ──Split 4×Q──▶ a b c d ──Concat(b, a, d, c)──▶ x_sw
/// y = x·cos + x_sw·sin±          (cos, sin± [N, hd] broadcast over B and heads)
/// ```
#[derive(Clone, Copy)]
pub(super) struct Rope2d<'a> {
    pub q: &'a RopeTable,
    pub k: &'a RopeTable,
}

impl Rope for Rope2d<'_> {
    fn rotate(&self, s: &mut Scope<'_>, which: Rotated, x: &Value) -> Value {
        let t = match which {
            Rotated::Queries => self.q,
            Rotated::Keys => self.k,
        };
        let q = t.head_dim / 4;
        let parts = s.split("Split", x, -1, &[q, q, q, q]);
        let swapped = s.concat("swap", &[&parts[1], &parts[0], &parts[3], &parts[2]], -1);
        let a = s.mul("mul_cos", x, &t.cos);
        let b = s.mul("mul_sin", &swapped, &t.sin);
        s.add("Add", &a, &b)
    }
}

/// The attention options of a CUT3R block: plain multi-head, no mask, `1/√hd` on the queries
/// (as the graphs validated against the official code always did).
fn options<'a>(d: BlockDims, rope: Option<&'a Rope2d<'a>>) -> AttentionOptions<'a> {
    AttentionOptions {
        heads: d.heads,
        kv_heads: None,
        head_dim: d.dim / d.heads,
        scale: Scale::Queries,
        rope: rope.map(|r| r as &dyn Rope),
        mask: None,
        key_values: KeyValues::New,
    }
}

/// Self-attention (`attn.qkv`, `attn.proj`; q, k, v are consecutive channel blocks of qkv):
///
/// ```text
/// x [B,N,C] ──qkv──▶ [B,N,3C] ──Split C|C|C──▶ q k v ──attention (RoPE(pos) on q, k)──▶ [B,N,C] ──proj──▶ out
/// ```
pub(super) fn self_attention(g: &mut ModelGraph, w: &Weights, x: &Value, d: BlockDims, rope: Option<Rope2d<'_>>) -> Result<Value> {
    let c = d.dim;
    let qkv = linear(g, &w.pp("qkv"), x, c, 3 * c, true)?;
    let path = w.path();
    let parts = g.scope(path.as_str()).split("split_qkv", &qkv, -1, &[c, c, c]);
    let ctx = attention(g, &path, &parts[0], &parts[1], &parts[2], &options(d, rope.as_ref())).context;
    linear(g, &w.pp("proj"), &ctx, c, c, true)
}

/// Cross-attention (`cross_attn.projq/projk/projv/proj`): queries from `x`, keys and values
/// from `y`; RoPE with the positions of `x` on q and of `y` on k.
///
/// ```text
/// x [B,Nq,C] ──projq──▶ q ─┐
/// y [B,Nk,C] ──projk──▶ k ─┼─ attention (RoPE(xpos) on q, RoPE(ypos) on k) ──▶ [B,Nq,C] ──proj──▶ out
/// y          ──projv──▶ v ─┘
/// ```
pub(super) fn cross_attention(g: &mut ModelGraph, w: &Weights, x: &Value, y: &Value, d: BlockDims, rope: Option<Rope2d<'_>>) -> Result<Value> {
    let c = d.dim;
    let q = linear(g, &w.pp("projq"), x, c, c, true)?;
    let k = linear(g, &w.pp("projk"), y, c, c, true)?;
    let v = linear(g, &w.pp("projv"), y, c, c, true)?;
    let ctx = attention(g, &w.path(), &q, &k, &v, &options(d, rope.as_ref())).context;
    linear(g, &w.pp("proj"), &ctx, c, c, true)
}

/// `x + delta`, in the residual stream's dtype (`delta` is cast when it differs).
fn residual(g: &mut GraphBuilder, w: &Weights, step: &str, x: &Value, delta: &Value) -> Value {
    let path = w.path();
    let delta = cast_to(g, &path, &format!("{step}/cast"), delta, x.dtype());
    g.scope(path).add(step, x, &delta)
}

/// Sizes of one transformer block.
#[derive(Debug, Clone, Copy)]
pub(super) struct BlockDims {
    pub dim: usize,
    pub heads: usize,
    pub mlp_hidden: usize,
}

/// CroCo encoder `Block` (`enc_blocks.N`), pre-norm:
///
/// ```text
/// x ──norm1──▶ self-attn(RoPE pos) ──▶ (+x) ──norm2──▶ mlp ──▶ (+) ──▶ out
/// ```
pub(super) fn encoder_block(g: &mut ModelGraph, w: &Weights, x: &Value, d: BlockDims, rope: &RopeTable) -> Result<Value> {
    let compute = g.compute();
    let h = norm(g, &w.pp("norm1"), x, d.dim, compute)?;
    let a = self_attention(g, &w.pp("attn"), &h, d, Some(Rope2d { q: rope, k: rope }))?;
    let x = residual(g, w, "attn_residual", x, &a);
    let h = norm(g, &w.pp("norm2"), &x, d.dim, compute)?;
    let m = mlp(g, &w.pp("mlp"), &h, d.dim, d.mlp_hidden, d.dim)?;
    Ok(residual(g, w, "mlp_residual", &x, &m))
}

/// DUSt3R `DecoderBlock(x, y, xpos, ypos)` (`dec_blocks`, `dec_blocks_state`, retriever
/// blocks; the official DUSt3R class). `rope` holds the tables of x's and y's positions (`None`: no RoPE).
/// Returns the new x; y passes through unchanged.
///
/// ```text
/// x ──norm1──▶ self-attn(xpos) ──▶ (+x) = x1
/// x1 ──norm2──▶ q ─┐
/// y ──norm_y──▶ kv ┴─ cross-attn(xpos, ypos) ──▶ (+x1) = x2
/// x2 ──norm3──▶ mlp ──▶ (+x2) ──▶ out
/// ```
pub(super) fn decoder_block(g: &mut ModelGraph, w: &Weights, x: &Value, y: &Value, d: BlockDims, rope: Option<(&RopeTable, &RopeTable)>) -> Result<Value> {
    let compute = g.compute();
    let self_rope = rope.map(|(xr, _)| Rope2d { q: xr, k: xr });
    let cross_rope = rope.map(|(xr, yr)| Rope2d { q: xr, k: yr });
    let h = norm(g, &w.pp("norm1"), x, d.dim, compute)?;
    let a = self_attention(g, &w.pp("attn"), &h, d, self_rope)?;
    let x = residual(g, w, "attn_residual", x, &a);
    let y_ = norm(g, &w.pp("norm_y"), y, d.dim, compute)?;
    let h = norm(g, &w.pp("norm2"), &x, d.dim, compute)?;
    let a = cross_attention(g, &w.pp("cross_attn"), &h, &y_, d, cross_rope)?;
    let x = residual(g, w, "cross_residual", &x, &a);
    let h = norm(g, &w.pp("norm3"), &x, d.dim, compute)?;
    let m = mlp(g, &w.pp("mlp"), &h, d.dim, d.mlp_hidden, d.dim)?;
    Ok(residual(g, w, "mlp_residual", &x, &m))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference RoPE on one head vector, straight from the formula of `rope_rows`.
    fn rope_ref(t: &[f64], py: f64, px: f64, base: f64) -> Vec<f64> {
        let hd = t.len();
        let q = hd / 4;
        let mut out = t.to_vec();
        for (half, p) in [(0, py), (1, px)] {
            let o = half * hd / 2;
            for j in 0..q {
                let th = p * base.powf(-(j as f64) / q as f64);
                let (u, v) = (t[o + j], t[o + q + j]);
                out[o + j] = u * th.cos() - v * th.sin();
                out[o + q + j] = v * th.cos() + u * th.sin();
            }
        }
        out
    }

    #[test]
    fn rope_rows_match_the_rotate_half_formula_including_negative_positions() {
        let hd = 12;
        let t: Vec<f64> = (0..hd).map(|i| (i as f64 * 0.37).sin() + 0.1).collect();
        for (py, px) in [(-1.0, -1.0), (0.0, 0.0), (2.0, 3.0), (27.0, 11.0)] {
            let (cos, sin) = rope_rows(&[(py, px)], hd, 100.0);
            // The graph's form: x·cos + swap(x)·sin± with swap = (b, a, d, c) over Q-blocks.
            let q = hd / 4;
            let swapped: Vec<f64> = [1, 0, 3, 2].iter().flat_map(|&b| t[b * q..(b + 1) * q].to_vec()).collect();
            let got: Vec<f64> = (0..hd).map(|i| t[i] * f64::from(cos[i]) + swapped[i] * f64::from(sin[i])).collect();
            let want = rope_ref(&t, py, px, 100.0);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-6, "pos ({py},{px}): {got:?} vs {want:?}");
            }
        }
    }
}
