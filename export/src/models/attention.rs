//! Scaled dot-product attention, shared by SigLIP (plain multi-head), Qwen2 (RoPE, grouped
//! query heads, KV cache) and CUT3R (self- and cross-attention with RoPE-2D). Projections stay
//! with the caller; this module goes from projected queries, keys and values to the merged
//! context, in plain standard ONNX ops (MatMul, Softmax, Reshape, Transpose, ...), so the
//! graphs stay differentiable by any ONNX training engine.
//!
//! Precision: the matmuls run in the dtype of `q` (the graph's compute dtype); scores are
//! cast to f32 before the mask and the softmax, and the probabilities back before the
//! context matmul.
//!
//! Grouped-query heads and key blocks (Qwen2's static KV cache):
//!
//! ```text
//! GQA, n_rep = heads / kvh: query head h uses KV head ⌊h / n_rep⌋
//!   q [B,heads,S,D] ─Reshape─▶ [B,kvh,n_rep,S,D] ┐
//!   k [B,kvh,T,D] ─Unsqueeze(2)─▶ [B,kvh,1,T,D]  ┴─ MatMul broadcasts over n_rep (K/V never expanded)
//!
//! key axis T of the static layout, two blocks:
//!   │ prefix (P, read-only) │ cache (C) │ new (S) │
//!   └──── block "prefix/" ──┘└──── block "own/" ──┘
//!   scores = Concat(q·prefixᵀ, q·ownᵀ) ─Softmax over T─▶ probs ─Slice [0,P)─▶ ·v_prefix ─┐
//!                                                          └─Slice [P,T)─▶ ·v_own ────┴─Add─▶ context
//! ```

use crate::graph::{GraphBuilder, Scope, Value};
use crate::models::layers::{cast_to, softmax_f32};
use crate::tensor::DType;

/// Which tensor a [`Rope`] hook rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotated {
    Queries,
    Keys,
}

/// A rotary position embedding, applied to queries and keys right after the head split.
pub trait Rope {
    /// Rotates `x [B, heads, N, D]`. `s` is scoped at `<attention path>/rope_q` (queries) or
    /// `<attention path>/rope_k` (keys), so the hook names its steps only.
    fn rotate(&self, s: &mut Scope<'_>, which: Rotated, x: &Value) -> Value;
}

/// Where the `1/√D` factor is applied. The two are equal in exact arithmetic; each family
/// keeps the order of its reference implementation, which matters in f16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// `(q·kᵀ)·D^-½` (HF Qwen2 and SigLIP).
    Scores,
    /// `(q·D^-½)·kᵀ` (CUT3R): the f16 scores stay smaller.
    Queries,
}

/// Where the keys and values come from, relative to the new positions' `k` and `v`.
#[derive(Clone, Copy)]
pub enum KeyValues<'a> {
    /// Exactly the new positions (no cache): one block.
    New,
    /// Concat KV cache: one block `Concat(past, new)` along the sequence axis, which is also
    /// the `present` output.
    AfterPast { key: &'a Value, value: &'a Value },
    /// Static KV cache: two blocks, a read-only `prefix` (never copied) and
    /// `Concat(cache, new)`. `prefix_len [1]` is where the prefix ends along the key axis of
    /// the mask.
    PrefixThenOwn { prefix_key: &'a Value, prefix_value: &'a Value, cache_key: &'a Value, cache_value: &'a Value, prefix_len: &'a Value },
}

/// Everything [`attention`] needs besides the projected tensors.
#[derive(Clone, Copy)]
pub struct AttentionOptions<'a> {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads for grouped-query attention: `Some(kvh)` (dividing `heads`) groups the
    /// queries as `[B, kvh, heads/kvh, S, D]` so the matmuls broadcast over the group and K/V
    /// are never expanded (query head h uses KV head ⌊h / (heads/kvh)⌋). `None`: plain
    /// multi-head attention on `[B, heads, S, D]`, keys and values with `heads` heads too.
    pub kv_heads: Option<usize>,
    /// Size of one head.
    pub head_dim: usize,
    /// Where the `1/√D` factor goes.
    pub scale: Scale,
    /// Rotary embedding of queries and keys, if any.
    pub rope: Option<&'a dyn Rope>,
    /// Additive f32 mask (0 or a large negative number) broadcast against the f32 scores:
    /// `[.., heads, S, T]` without grouping, `[.., kvh, heads/kvh, S, T]` with it.
    pub mask: Option<&'a Value>,
    /// Key/value blocks.
    pub key_values: KeyValues<'a>,
}

/// What [`attention`] returns.
pub struct Attended {
    /// `[B, S, heads·D]` in the compute dtype, ready for the output projection.
    pub context: Value,
    /// Keys and values `[B, kvh, ·, D]` for the cache outputs: the whole `present` for
    /// [`KeyValues::AfterPast`], the new positions (after RoPE) otherwise.
    pub key: Value,
    pub value: Value,
}

/// One key/value block and the prefix of its node names.
struct Block {
    name: &'static str,
    key: Value,
    value: Value,
}

/// The key/value blocks of one call: the probabilities of two blocks are split at the
/// prefix bound before their context matmuls.
enum Blocks<'a> {
    One(Block),
    PrefixThenOwn { prefix: Block, own: Block, prefix_len: &'a Value },
}

impl Blocks<'_> {
    fn all(&self) -> Vec<&Block> {
        match self {
            Blocks::One(b) => vec![b],
            Blocks::PrefixThenOwn { prefix, own, .. } => vec![prefix, own],
        }
    }
}

/// Attention from projected `q [B,S,heads·D]`, `k`, `v [B,Sk,kvh·D]` to the merged context,
/// nodes named `<path>/<step>`:
///
/// ```text
/// q ─Reshape─▶ [B,S,h,D] ─Transpose─▶ [B,h,S,D] ─RoPE?─▶ (GQA: Reshape [B,kvh,h/kvh,S,D]) ─(·D^-½)?─▶ q
/// k, v ─Reshape/Transpose─▶ [B,kvh,Sk,D] ─RoPE(k)?─▶ new k, v ─▶ key/value blocks:
///     New: [new]   AfterPast: [Concat(past, new)]   PrefixThenOwn: [prefix, Concat(cache, new)]
/// per block b: scores_b = q·k_bᵀ (GQA: k_b Unsqueeze(2)) (·D^-½)? ─Cast f32─▶
/// Concat_b(scores_b) [..,S,T] ─+mask?─▶ Softmax (f32) ─Cast compute─▶ probs
/// context = Σ_b probs[.., block b]·v_b ─(GQA: Reshape [B,h,S,D])─▶ Transpose ─▶ Reshape ─▶ [B,S,h·D]
/// ```
pub fn attention(g: &mut GraphBuilder, path: &str, q: &Value, k: &Value, v: &Value, o: &AttentionOptions<'_>) -> Attended {
    let (heads, d) = (o.heads, o.head_dim);
    let kv_heads = o.kv_heads.unwrap_or(heads);
    let compute = q.dtype();
    let mut s = g.scope(path);
    if kv_heads == 0 || heads % kv_heads != 0 {
        s.problem(format!("{path}: {heads} query heads cannot be grouped over {kv_heads} key/value heads (it must divide them)"));
    }
    let mut q = split_heads(&mut s, "q", q, heads, d);
    let mut k = split_heads(&mut s, "k", k, kv_heads, d);
    let v = split_heads(&mut s, "v", v, kv_heads, d);
    if let Some(rope) = o.rope {
        q = rope.rotate(&mut s.child("rope_q"), Rotated::Queries, &q);
        k = rope.rotate(&mut s.child("rope_k"), Rotated::Keys, &k);
    }
    let (blocks, key, value) = match o.key_values {
        KeyValues::New => (Blocks::One(Block { name: "", key: k.clone(), value: v.clone() }), k, v),
        KeyValues::AfterPast { key, value } => {
            let present_k = s.concat("present_key", &[key, &k], 2);
            let present_v = s.concat("present_value", &[value, &v], 2);
            (Blocks::One(Block { name: "", key: present_k.clone(), value: present_v.clone() }), present_k, present_v)
        }
        KeyValues::PrefixThenOwn { prefix_key, prefix_value, cache_key, cache_value, prefix_len } => {
            let own_k = s.concat("own_key", &[cache_key, &k], 2);
            let own_v = s.concat("own_value", &[cache_value, &v], 2);
            let prefix = Block { name: "prefix/", key: prefix_key.clone(), value: prefix_value.clone() };
            let own = Block { name: "own/", key: own_k, value: own_v };
            (Blocks::PrefixThenOwn { prefix, own, prefix_len }, k, v)
        }
    };
    if o.kv_heads.is_some() {
        q = s.reshape("q/group", &q, [0, kv_heads as i64, (heads / kv_heads) as i64, -1, d as i64]);
    }
    let scale = (d as f64).powf(-0.5);
    if o.scale == Scale::Queries {
        q = s.mul_scalar("q/scale", &q, scale);
    }

    let mut block_scores = Vec::new();
    for b in blocks.all() {
        let kt = if o.kv_heads.is_some() {
            let k5 = s.unsqueeze(&format!("{}k/group_axis", b.name), &b.key, &[2]);
            s.transpose(&format!("{}k/transpose", b.name), &k5, &[0, 1, 2, 4, 3])
        } else {
            s.transpose(&format!("{}k/transpose", b.name), &b.key, &[0, 1, 3, 2])
        };
        let scores = s.matmul(&format!("{}scores", b.name), &q, &kt);
        let scores = if o.scale == Scale::Scores { s.mul_scalar(&format!("{}scale", b.name), &scores, scale) } else { scores };
        block_scores.push(if scores.dtype() == DType::F32 { scores } else { s.cast(&format!("{}scores_to_f32", b.name), &scores, DType::F32) });
    }
    let scores = match &block_scores[..] {
        [one] => one.clone(),
        many => s.concat("scores", &many.iter().collect::<Vec<_>>(), -1),
    };
    let scores = match o.mask {
        Some(mask) => s.add("masked_scores", &scores, mask),
        None => scores,
    };
    let probs = softmax_f32(&mut s, path, &scores, -1);
    let probs = cast_to(&mut s, path, "probs_to_io", &probs, compute);

    let group_axis = |s: &mut Scope<'_>, b: &Block| {
        if o.kv_heads.is_some() {
            s.unsqueeze(&format!("{}v/group_axis", b.name), &b.value, &[2])
        } else {
            b.value.clone()
        }
    };
    let context = match &blocks {
        Blocks::One(one) => {
            let v = group_axis(&mut s, one);
            s.matmul("context", &probs, &v)
        }
        Blocks::PrefixThenOwn { prefix, own, prefix_len } => {
            let zero = s.ints(&[0]);
            let open = s.ints(&[i64::MAX]);
            let prefix_probs = s.slice("prefix/probs", &probs, &zero, *prefix_len, &[-1], &[]);
            let own_probs = s.slice("own/probs", &probs, *prefix_len, &open, &[-1], &[]);
            let prefix_v = group_axis(&mut s, prefix);
            let own_v = group_axis(&mut s, own);
            let prefix_ctx = s.matmul("prefix/context", &prefix_probs, &prefix_v);
            let own_ctx = s.matmul("own/context", &own_probs, &own_v);
            s.add("context", &prefix_ctx, &own_ctx)
        }
    };
    let context = if o.kv_heads.is_some() { s.reshape("ungroup", &context, [0, heads as i64, -1, d as i64]) } else { context };
    let context = s.transpose("merge_heads", &context, &[0, 2, 1, 3]);
    let context = s.reshape("merge", &context, [0, 0, (heads * d) as i64]);
    Attended { context, key, value }
}

/// `[B, N, heads·D] ─Reshape─▶ [B, N, heads, D] ─Transpose─▶ [B, heads, N, D]`
fn split_heads(s: &mut Scope<'_>, name: &str, x: &Value, heads: usize, head_dim: usize) -> Value {
    let x = s.reshape(&format!("{name}/split_heads"), x, [0, 0, heads as i64, head_dim as i64]);
    s.transpose(&format!("{name}/heads_first"), &x, &[0, 2, 1, 3])
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use ndarray::{ArrayD, IxDyn};

    use super::*;
    use crate::dims;
    use crate::graph::testing::{assert_close, feed_f32, run_f32};
    use crate::graph::Dim;

    const HEADS: usize = 4;
    const KV_HEADS: usize = 2;
    const D: usize = 4;
    const S: usize = 3;
    const PREFIX: usize = 2;
    const CACHE: usize = 2;
    const T: usize = PREFIX + CACHE + S;
    /// A cache slot the mask hides (an unwritten slot of the static buffer).
    const HIDDEN_SLOT: usize = PREFIX + 1;

    fn data(n: usize, offset: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.37 + offset).sin()).collect()
    }

    /// Causal (bottom-right aligned) and padding mask `[1,1,1,S,T]`, 0 or f32::MIN.
    fn mask() -> Vec<f32> {
        let mut m = vec![0.0; S * T];
        for i in 0..S {
            for t in 0..T {
                if t > T - S + i || t == HIDDEN_SLOT {
                    m[i * T + t] = f32::MIN;
                }
            }
        }
        m
    }

    /// Straight from the definition: each query head against every key of its KV head.
    fn reference(inputs: &HashMap<&str, Vec<f32>>) -> Vec<f32> {
        let n_rep = HEADS / KV_HEADS;
        let key = |name: &str, kh: usize, t: usize, d: usize| -> f32 {
            let (past, cache, new) = (&inputs[&*format!("prefix_{name}")], &inputs[&*format!("cache_{name}")], &inputs[name]);
            if t < PREFIX {
                past[(kh * PREFIX + t) * D + d]
            } else if t < PREFIX + CACHE {
                cache[(kh * CACHE + t - PREFIX) * D + d]
            } else {
                new[(t - PREFIX - CACHE) * KV_HEADS * D + kh * D + d]
            }
        };
        let (q, mask) = (&inputs["q"], mask());
        let mut out = vec![0.0; S * HEADS * D];
        for i in 0..S {
            for h in 0..HEADS {
                let kh = h / n_rep;
                let scores: Vec<f64> = (0..T)
                    .map(|t| {
                        let dot: f64 = (0..D).map(|d| f64::from(q[i * HEADS * D + h * D + d]) * f64::from(key("k", kh, t, d))).sum();
                        dot / (D as f64).sqrt() + f64::from(mask[i * T + t])
                    })
                    .collect();
                let top = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - top).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..D {
                    let ctx: f64 = (0..T).map(|t| e[t] / z * f64::from(key("v", kh, t, d))).sum();
                    out[i * HEADS * D + h * D + d] = ctx as f32;
                }
            }
        }
        out
    }

    /// GQA over the static layout's two key blocks with a padding slot masked equals
    /// attention over the concatenated keys, whichever side takes the scale; no node expands K/V.
    #[test]
    fn grouped_attention_over_two_key_blocks_matches_the_definition() {
        let shapes: [(&str, Vec<usize>); 7] = [
            ("q", vec![1, S, HEADS * D]),
            ("k", vec![1, S, KV_HEADS * D]),
            ("v", vec![1, S, KV_HEADS * D]),
            ("prefix_k", vec![1, KV_HEADS, PREFIX, D]),
            ("prefix_v", vec![1, KV_HEADS, PREFIX, D]),
            ("cache_k", vec![1, KV_HEADS, CACHE, D]),
            ("cache_v", vec![1, KV_HEADS, CACHE, D]),
        ];
        let inputs: HashMap<&str, Vec<f32>> = shapes.iter().enumerate().map(|(i, (n, s))| (*n, data(s.iter().product(), i as f32))).collect();
        let want = ArrayD::from_shape_vec(IxDyn(&[1, S, HEADS * D]), reference(&inputs)).unwrap();
        for scale in [Scale::Scores, Scale::Queries] {
            let mut g = GraphBuilder::new("attention_test");
            let v: HashMap<&str, Value> = shapes.iter().map(|(n, s)| (*n, g.input(n, DType::F32, s.iter().map(|&d| Dim::from(d))))).collect();
            let mask_input = g.input("mask", DType::F32, dims![1, 1, 1, S, T]);
            let prefix_len = g.ints(&[PREFIX as i64]);
            let key_values = KeyValues::PrefixThenOwn {
                prefix_key: &v["prefix_k"],
                prefix_value: &v["prefix_v"],
                cache_key: &v["cache_k"],
                cache_value: &v["cache_v"],
                prefix_len: &prefix_len,
            };
            let opts = AttentionOptions { heads: HEADS, kv_heads: Some(KV_HEADS), head_dim: D, scale, rope: None, mask: Some(&mask_input), key_values };
            let out = attention(&mut g, "attn", &v["q"], &v["k"], &v["v"], &opts);
            g.output("context", &out.context);
            g.check().unwrap();
            assert!(g.nodes().iter().all(|n| n.op_type != "Expand" && n.op_type != "Tile"), "K/V must not be expanded");

            let dir = tempfile::tempdir().unwrap();
            let stats = g.save(dir.path()).unwrap();
            let mut feeds: Vec<_> = shapes.iter().map(|(n, s)| feed_f32(n, ArrayD::from_shape_vec(IxDyn(s), inputs[n].clone()).unwrap())).collect();
            feeds.push(feed_f32("mask", ArrayD::from_shape_vec(IxDyn(&[1, 1, 1, S, T]), mask()).unwrap()));
            let got = run_f32(&stats.onnx_path, feeds);
            assert_close(&got["context"], &want, 1e-5);
        }
    }
}
