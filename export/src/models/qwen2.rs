//! `decoder.onnx`: one Qwen2 decoder step with a KV cache (docs/bundle.md §3-§4;
//! reference: HF `modeling_qwen2.py`, eager attention).
//!
//! One graph serves prefill (`P = 0`, `S` large) and decode (`S = 1`):
//!
//! ```text
//! inputs_embeds [B,S,H] ─▶ L × { x + Attn(RMSNorm(x)); x + MLP(RMSNorm(x)) } ─▶ RMSNorm ─▶ hidden_states [B,S,H]
//!                                                                                      └─ last position ─lm_head─▶ logits [B,1,V]
//! ```
//! Two KV cache layouts ([`KvCacheLayout`], recorded in the manifest):
//!
//! - **concat** (HF optimum / onnxruntime-genai convention):
//!   `past_key_values.{i}.key/.value [B,KVH,P,D] ─concat new─▶ present.{i}.key/.value [B,KVH,P+S,D]`.
//!   Simple, but every step copies the whole cache into a new `present` tensor.
//! - **static** (docs/bundle.md §4; TensorRT-style fixed shapes, extended with a shared prefix): the keys come from
//!   `past_key_values.{i}.* [B,KVH,P,D]`, a read-only prefix shared by many sequences (a
//!   video's cached prompt, never copied), `cache.{i}.* [B,KVH,C,D]`, the sequence's own
//!   preallocated buffer (slots whose `attention_mask` is 0 are ignored), and the `S` new
//!   positions. Attention runs over two blocks, the prefix and `concat(cache, new)` (C+S
//!   positions: a question and its answer, small). The graph outputs only the new slice
//!   `present_new.{i}.* [B,KVH,S,D]`; the runtime writes it into `cache` at the next free
//!   slot. Decode shapes stay constant, so the runtime binds every buffer once per sequence.
//!
//! The mask is built in-graph from `attention_mask [B,T]` (T = every key position: P+S for
//! concat, P+C+S for static): key j is visible to query i iff `attention_mask[j] = 1` and
//! `j ≤ T − S + i` (bottom-right aligned, so chunked prefill works; prefix and cache slots
//! always precede the new positions). RoPE angles are computed in f32 from `position_ids`.

use crate::checkpoint::{Checkpoint, Weights};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::graph::{Dim, GraphBuilder, Scope, Value};
use crate::models::attention::{attention, AttentionOptions, KeyValues, Rope, Rotated, Scale};
use crate::models::context::ModelGraph;
use crate::models::layers::{cast_to, linear, rms_norm};
use crate::models::ExportOptions;
use crate::tensor::{DType, F32Tensor};

pub use loc3r_bundle::io::decoder::{
    cache_key, cache_value, past_key, past_value, present_key, present_new_key, present_new_value, present_value, ATTENTION_MASK, HIDDEN_STATES, INPUTS_EMBEDS,
    LOGITS, POSITION_IDS,
};
pub use loc3r_bundle::KvCacheLayout;

/// The key/value inputs of one layer.
struct LayerKv {
    past_k: Value,
    past_v: Value,
    /// The sequence's own buffer (static layout only).
    cache: Option<(Value, Value)>,
}

/// Graph inputs shared by every layer.
struct StepInputs {
    /// `[B,1,S,D]` each, in the activation dtype.
    cos: Value,
    sin: Value,
    /// `[B,1,1,S,T]` additive f32 mask (0 or f32::MIN).
    mask: Value,
    /// Static layout: `[P]`, where the shared prefix block ends along T.
    prefix_end: Option<Value>,
}

/// Which part of the decoder a graph holds. The exported decoder is [`Part::whole`]; training
/// with layer-granular recompute builds one graph per layer and one for the head, so that only
/// the layer inputs are kept between the forward and the backward sweep (docs/training.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The decoder layers, by their index in the checkpoint (weights keep their
    /// `model.layers.{i}.…` names, KV inputs and outputs their `….{i}.…` names).
    pub layers: std::ops::Range<usize>,
    /// Whether the final RMSNorm and the LM head follow the layers. Without them,
    /// `hidden_states` is the last layer's output (the residual stream, not normalised) and there
    /// are no `logits`; with no layers either, `inputs_embeds` is taken as that residual stream
    /// and `attention_mask`/`position_ids` are not inputs.
    pub head: bool,
}

impl Part {
    /// Every layer and the head: the exported decoder.
    pub fn whole(cfg: &Config) -> Part {
        Part { layers: 0..cfg.num_hidden_layers, head: true }
    }
}

/// The exported decoder: every layer, the final norm and the LM head.
pub fn graph(ckpt: &Checkpoint, opts: &ExportOptions) -> Result<GraphBuilder> {
    part_graph(ckpt, opts, &Part::whole(ckpt.config()))
}

/// A part of the decoder ([`Part`]); [`graph`] is the whole.
pub fn part_graph(ckpt: &Checkpoint, opts: &ExportOptions, part: &Part) -> Result<GraphBuilder> {
    let cfg = ckpt.config();
    let (h, kvh, d) = (cfg.hidden_size, cfg.num_key_value_heads, cfg.head_dim());
    if part.layers.end > cfg.num_hidden_layers || part.layers.start > part.layers.end || (part.layers.is_empty() && !part.head) {
        return Err(Error::Invalid(format!(
            "decoder part with layers {:?} (of {}) and head {}: give a range of existing layers, the head, or both",
            part.layers, cfg.num_hidden_layers, part.head
        )));
    }
    let w = ckpt.weights("decoder")?;
    let layout = opts.kv_cache;
    let mut g = ModelGraph::new("decoder", opts.precision).with_weight_quant(opts.weights.as_ref());
    let dt = g.compute();
    g.set_doc(match layout {
        KvCacheLayout::Concat => "Qwen2 decoder step with KV cache (prefill and decode), concat cache layout. Linear weights are stored transposed [in, out].",
        KvCacheLayout::Static => "Qwen2 decoder step with KV cache (prefill and decode), static cache layout: read-only shared prefix past_key_values.*, preallocated per-sequence cache.* (masked by attention_mask), outputs only present_new.* for the runtime to write into cache. Linear weights are stored transposed [in, out].",
    });
    g.add_metadata("kv_cache", layout.as_str());

    let batch = || Dim::sym("batch");
    let seq = || Dim::sym("sequence");
    let past = || Dim::sym("past_sequence");
    let cached = || Dim::sym("cache_sequence");
    let total = || match layout {
        KvCacheLayout::Concat => Dim::sym("past_sequence+sequence"),
        KvCacheLayout::Static => Dim::sym("past_sequence+cache_sequence+sequence"),
    };
    let embeds = g.input(INPUTS_EMBEDS, DType::F32, [batch(), seq(), h.into()]);
    let mut x = if part.layers.is_empty() {
        cast_to(&mut g, "model", "embeds_to_io", &embeds, dt)
    } else {
        let mask = g.input(ATTENTION_MASK, DType::I64, [batch(), total()]);
        let positions = g.input(POSITION_IDS, DType::I64, [batch(), seq()]);
        let mut kvs = Vec::new();
        for i in part.layers.clone() {
            let past_k = g.input(&past_key(i), dt, [batch(), kvh.into(), past(), d.into()]);
            let past_v = g.input(&past_value(i), dt, [batch(), kvh.into(), past(), d.into()]);
            kvs.push((i, LayerKv { past_k, past_v, cache: None }));
        }
        if layout == KvCacheLayout::Static {
            for (i, kv) in kvs.iter_mut() {
                let k = g.input(&cache_key(*i), dt, [batch(), kvh.into(), cached(), d.into()]);
                let v = g.input(&cache_value(*i), dt, [batch(), kvh.into(), cached(), d.into()]);
                kv.cache = Some((k, v));
            }
        }

        let (cos, sin) = rotary(&mut g, cfg, &positions);
        let mask = causal_mask(&mut g, &embeds, &mask, total());
        let prefix_end = match &kvs[..] {
            [(_, LayerKv { past_k, cache: Some(_), .. }), ..] => Some(prefix_end(&mut g, past_k)),
            _ => None,
        };
        let step = StepInputs { cos, sin, mask, prefix_end };

        let mut x = cast_to(&mut g, "model", "embeds_to_io", &embeds, dt);
        for (i, kv) in kvs.iter() {
            let i = *i;
            let (y, k, v) = decoder_layer(&mut g, cfg, &w.pp("model").pp("layers").pp(i), &x, kv, &step)?;
            match layout {
                KvCacheLayout::Concat => {
                    g.output_with_shape(&present_key(i), &k, [batch(), kvh.into(), total(), d.into()]);
                    g.output_with_shape(&present_value(i), &v, [batch(), kvh.into(), total(), d.into()]);
                }
                KvCacheLayout::Static => {
                    g.output_with_shape(&present_new_key(i), &k, [batch(), kvh.into(), seq(), d.into()]);
                    g.output_with_shape(&present_new_value(i), &v, [batch(), kvh.into(), seq(), d.into()]);
                }
            }
            // Name the shape again: inferred symbolic dims would otherwise nest deeper with every layer.
            x = g.refine_shape(&y, [batch(), seq(), h.into()]);
        }
        x
    };
    if !part.head {
        let hidden = cast_to(&mut g, "model", "residual_to_f32", &x, DType::F32);
        g.output_with_shape(HIDDEN_STATES, &hidden, [batch(), seq(), h.into()]);
        return Ok(g.into_builder());
    }
    x = rms_norm(&mut g, &w.pp("model").pp("norm"), &x, h, cfg.rms_norm_eps)?;
    let hidden = cast_to(&mut g, "model.norm", "hidden_to_f32", &x, DType::F32);
    g.output_with_shape(HIDDEN_STATES, &hidden, [batch(), seq(), h.into()]);

    // lm_head on the last position only: prefill logits for every position would be
    // S × V (≈ 2 GB at 7k tokens for the 7B model).
    let last = g.scope("lm_head").slice("last_position", &x, [-1i64], [i64::MAX], &[1], &[1]);
    let logits = linear(&mut g, &w.pp("lm_head"), &last, h, cfg.vocab_size, false)?;
    let logits = cast_to(&mut g, "lm_head", "logits_to_f32", &logits, DType::F32);
    g.output_with_shape(LOGITS, &logits, [batch(), 1.into(), cfg.vocab_size.into()]);
    Ok(g.into_builder())
}

/// `inv_freq[k] = 1 / θ^(2k/D)` in f32, as HF computes it.
pub fn inv_freq(theta: f64, head_dim: usize) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|k| {
            let exponent = (2 * k) as f32 / head_dim as f32;
            (1.0 / theta.powf(exponent as f64)) as f32
        })
        .collect()
}

/// cos/sin tables for the given positions, duplicated halves, f32 angles.
///
/// ```text
/// position_ids [B,S] ─Cast f32─▶ Unsqueeze ─▶ [B,S,1] ·inv_freq[D/2] ─▶ [B,S,D/2] ─Concat(self,self)─▶ [B,S,D]
///   ─Cos/Sin─▶ ─Cast compute─▶ Unsqueeze(1) ─▶ cos, sin [B,1,S,D]
/// ```
fn rotary(g: &mut ModelGraph, cfg: &Config, positions: &Value) -> (Value, Value) {
    let dt = g.compute();
    let d = cfg.head_dim();
    let freqs = inv_freq(cfg.rope_theta, d);
    let inv = g.initializer("const/rope_inv_freq", std::sync::Arc::new(F32Tensor::new(vec![d / 2], freqs)), DType::F32);
    let mut s = g.scope("model.rotary_emb");
    let p = s.cast("positions_to_f32", positions, DType::F32);
    let p = s.unsqueeze("positions_column", &p, &[2]);
    let angles = s.mul("angles", &p, &inv);
    let emb = s.concat("duplicate_halves", &[&angles, &angles], -1);
    let cos = s.cos("cos", &emb);
    let sin = s.sin("sin", &emb);
    let (cos, sin) = if dt == DType::F32 { (cos, sin) } else { (s.cast("cos_to_io", &cos, dt), s.cast("sin_to_io", &sin, dt)) };
    (s.unsqueeze("cos_heads_axis", &cos, &[1]), s.unsqueeze("sin_heads_axis", &sin, &[1]))
}

/// Additive f32 mask `[B,1,1,S,T]` (broadcast over KV heads and the query heads of a group).
///
/// ```text
/// T = len(attention_mask), S = len(inputs_embeds), P = T − S
/// keys j ∈ Range(0,T) ─┐
/// queries P+i ∈ Range(P,T) ─ j ≤ P+i ─▶ causal [S,T] ─And─ attention_mask[b,j]=1 ─▶ Where(0, f32::MIN)
/// ```
fn causal_mask(g: &mut GraphBuilder, embeds: &Value, attention_mask: &Value, total_dim: Dim) -> Value {
    let mut s = g.scope("model.causal_mask");
    let zero = s.scalar_i64(0);
    let one = s.scalar_i64(1);
    let mask_shape = s.shape("mask_shape", attention_mask);
    let total = s.gather("total_length", &mask_shape, &one, 0);
    let embeds_shape = s.shape("embeds_shape", embeds);
    let seq = s.gather("sequence_length", &embeds_shape, &one, 0);
    let past = s.sub("past_length", &total, &seq);
    let keys = s.range("key_positions", &zero, &total, &one);
    let keys = s.refine_shape(&keys, [total_dim]);
    let queries = s.range("query_positions", &past, &total, &one);
    let queries = s.refine_shape(&queries, [Dim::sym("sequence")]);
    let queries = s.unsqueeze("query_column", &queries, &[1]);
    let causal = s.less_or_equal("causal", &keys, &queries);
    let padding = s.cast("mask_to_bool", attention_mask, DType::Bool);
    let padding = s.unsqueeze("mask_rows", &padding, &[1, 2, 3]);
    let allowed = s.and("allowed", &causal, &padding);
    let open = s.scalar_f32(0.0);
    let closed = s.scalar_f32(f32::MIN);
    let bias = s.where_("bias", &allowed, &open, &closed);
    s.unsqueeze("group_axis", &bias, &[2]).clone()
}

/// `[P]`: where the shared prefix block ends along the key axis (the same for every layer).
fn prefix_end(g: &mut GraphBuilder, past_k: &Value) -> Value {
    let mut s = g.scope("model.kv_blocks");
    let past_shape = s.shape("past_shape", past_k);
    s.slice("prefix_length", &past_shape, [2i64], [3i64], &[0], &[])
}

/// One layer; returns (output, key output, value output): the whole present for the
/// concat layout, the new positions only for the static one.
fn decoder_layer(g: &mut ModelGraph, cfg: &Config, w: &Weights, x: &Value, kv: &LayerKv, step: &StepInputs) -> Result<(Value, Value, Value)> {
    let h = cfg.hidden_size;
    let n = rms_norm(g, &w.pp("input_layernorm"), x, h, cfg.rms_norm_eps)?;
    let (a, k, v) = self_attention(g, cfg, &w.pp("self_attn"), &n, kv, step)?;
    let x = g.scope(w.path()).add("attn_residual", x, &a);
    let n = rms_norm(g, &w.pp("post_attention_layernorm"), &x, h, cfg.rms_norm_eps)?;
    let m = mlp(g, cfg, &w.pp("mlp"), &n)?;
    let y = g.scope(w.path()).add("mlp_residual", &x, &m);
    Ok((y, k, v))
}

/// SwiGLU: `down(silu(gate(x)) · up(x))`.
fn mlp(g: &mut ModelGraph, cfg: &Config, w: &Weights, x: &Value) -> Result<Value> {
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let gate = linear(g, &w.pp("gate_proj"), x, h, i, false)?;
    let up = linear(g, &w.pp("up_proj"), x, h, i, false)?;
    let mut s = g.scope(w.path());
    let sig = s.sigmoid("silu/sigmoid", &gate);
    let act = s.mul("silu", &gate, &sig);
    let prod = s.mul("gate_times_up", &act, &up);
    drop(s);
    linear(g, &w.pp("down_proj"), &prod, i, h, false)
}

/// Qwen2's 1-D RoPE from the step's cos/sin tables: `v·cos + rotate_half(v)·sin`,
/// rotate_half(v) = [−v[D/2:], v[:D/2]]; the same rotation for queries and keys.
///
/// ```text
/// v [B,h,S,D] ─Split(D/2,D/2)─▶ v1, v2 ─▶ Concat(−v2, v1) ─·sin─┐
///             └───────────────────────────────────────·cos──────+─▶ v'
/// ```
struct Rope1d<'a> {
    step: &'a StepInputs,
    head_dim: usize,
}

impl Rope for Rope1d<'_> {
    fn rotate(&self, s: &mut Scope<'_>, _: Rotated, v: &Value) -> Value {
        let half = self.head_dim / 2;
        let halves = s.split("split_halves", v, -1, &[half, half]);
        let neg = s.neg("negate_second", &halves[1]);
        let rotated = s.concat("rotate_half", &[&neg, &halves[0]], -1);
        let a = s.mul("times_cos", v, &self.step.cos);
        let b = s.mul("times_sin", &rotated, &self.step.sin);
        s.add("output", &a, &b)
    }
}

/// GQA attention with past ([`attention`]); returns (output, key output, value output).
///
/// ```text
/// x ─q/k/v_proj─▶ attention (RoPE-1D, KVH groups, causal mask, key blocks) ─▶ [B,S,nh·D] ─o_proj─▶
/// key blocks: concat layout [Concat(past, new)]; static layout [past (never copied), Concat(cache, new)]
/// ```
fn self_attention(g: &mut ModelGraph, cfg: &Config, w: &Weights, x: &Value, kv: &LayerKv, step: &StepInputs) -> Result<(Value, Value, Value)> {
    let (h, nh, kvh, d) = (cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim());
    let q = linear(g, &w.pp("q_proj"), x, h, nh * d, true)?;
    let k = linear(g, &w.pp("k_proj"), x, h, kvh * d, true)?;
    let v = linear(g, &w.pp("v_proj"), x, h, kvh * d, true)?;
    let key_values = match (&kv.cache, &step.prefix_end) {
        (None, _) => KeyValues::AfterPast { key: &kv.past_k, value: &kv.past_v },
        (Some((cache_k, cache_v)), Some(prefix_end)) => {
            KeyValues::PrefixThenOwn { prefix_key: &kv.past_k, prefix_value: &kv.past_v, cache_key: cache_k, cache_value: cache_v, prefix_len: prefix_end }
        }
        (Some(_), None) => return Err(Error::Invalid("static KV cache layout without the shared-prefix bound (decoder builder bug)".into())),
    };
    let rope = Rope1d { step, head_dim: d };
    let opts = AttentionOptions { heads: nh, kv_heads: Some(kvh), head_dim: d, scale: Scale::Scores, rope: Some(&rope), mask: Some(&step.mask), key_values };
    let path = w.path();
    let out = attention(g, &path, &q, &k, &v, &opts);
    let ctx = g.refine_shape(&out.context, [Dim::sym("batch"), Dim::sym("sequence"), (nh * d).into()]);
    let proj = linear(g, &w.pp("o_proj"), &ctx, nh * d, h, false)?;
    Ok((proj, out.key, out.value))
}
