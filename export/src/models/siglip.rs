//! `siglip.onnx`: the SigLIP vision tower as LLaVA uses it (docs/prompt.md §4;
//! reference: HF `modeling_siglip.py`, `SiglipVisionTransformer`).
//!
//! `pixel_values [F,3,S,S]` -> `image_features [F,g²,C]`: patch conv ("valid", so 384/14
//! gives a 27×27 grid and the last 6 pixel rows/cols are never seen), learned position
//! embedding, every stored encoder layer, and **no** post_layernorm (LLaVA takes the
//! hidden states of its truncated encoder).

use crate::checkpoint::{Checkpoint, Weights};
use crate::config::{Config, VisionConfig};
use crate::error::Result;
use crate::graph::{ConvOptions, Dim, GraphBuilder, Value};
use crate::models::attention::{attention, AttentionOptions, KeyValues, Scale};
use crate::models::context::ModelGraph;
use crate::models::layers::{cast_to, gelu_tanh, layer_norm, linear, weight};
use crate::models::ExportOptions;
use crate::quant::ActivationQuant;
use crate::tensor::DType;

pub use loc3r_bundle::io::siglip::{IMAGE_FEATURES as OUTPUT, PIXEL_VALUES as INPUT};

pub fn graph(ckpt: &Checkpoint, opts: &ExportOptions) -> Result<GraphBuilder> {
    graph_with(ckpt, opts, None)
}

/// [`graph`] with INT8 activations from a calibration cache (`None`: float activations).
pub fn graph_with(ckpt: &Checkpoint, opts: &ExportOptions, activations: Option<&ActivationQuant>) -> Result<GraphBuilder> {
    let cfg = ckpt.config();
    let v = &cfg.vision_config;
    let w = ckpt.weights("siglip")?;
    let mut g = ModelGraph::new("siglip", opts.precision).with_weight_quant(opts.weights.as_ref()).with_activation_quant(activations);
    let dt = g.compute();
    g.set_doc("SigLIP vision tower (LLaVA: all stored layers, no post_layernorm). Linear weights are stored transposed [in, out].");
    let pixels = g.input(INPUT, DType::F32, [Dim::sym("frames"), 3.into(), v.image_size.into(), v.image_size.into()]);
    let x = cast_to(&mut g, "embeddings", "pixels_to_io", &pixels, dt);
    let mut x = embeddings(&mut g, cfg, &w.pp("embeddings"), &x)?;
    for i in 0..v.num_hidden_layers {
        x = encoder_layer(&mut g, v, &w.pp("encoder").pp("layers").pp(i), &x)?;
    }
    let out = cast_to(&mut g, "encoder", "features_to_f32", &x, DType::F32);
    let grid = cfg.vision_grid();
    g.output_with_shape(OUTPUT, &out, [Dim::sym("frames"), (grid * grid).into(), v.hidden_size.into()]);
    Ok(g.into_builder())
}

/// Patch conv + learned positions.
///
/// ```text
/// pixels [F,3,S,S] ─Conv k=p s=p─▶ [F,C,g,g] ─Reshape─▶ [F,C,g²] ─Transpose─▶ [F,g²,C] ─+pos[g²,C]─▶
/// ```
fn embeddings(g: &mut ModelGraph, cfg: &Config, w: &Weights, pixels: &Value) -> Result<Value> {
    let dt = g.compute();
    let v = &cfg.vision_config;
    let (c, p) = (v.hidden_size, v.patch_size);
    let grid = cfg.vision_grid();
    let kernel = weight(g, &w.pp("patch_embedding"), "weight", &[c, 3, p, p], dt)?;
    let bias = weight(g, &w.pp("patch_embedding"), "bias", &[c], dt)?;
    let pos = weight(g, &w.pp("position_embedding"), "weight", &[grid * grid, c], dt)?;
    let mut s = g.scope(w.path().as_str());
    let opts = ConvOptions { strides: vec![p, p], ..ConvOptions::default() };
    let patches = s.conv("patch_embedding/Conv", pixels, &kernel, Some(&bias), &opts);
    let flat = s.reshape("flatten", &patches, [0, c as i64, (grid * grid) as i64]);
    let tokens = s.transpose("to_tokens", &flat, &[0, 2, 1]);
    Ok(s.add("add_position", &tokens, &pos))
}

/// `h = x + out_proj(MHA(LN1(x)))`, `y = h + fc2(gelu_tanh(fc1(LN2(h))))`.
fn encoder_layer(g: &mut ModelGraph, v: &VisionConfig, w: &Weights, x: &Value) -> Result<Value> {
    let c = v.hidden_size;
    let h = layer_norm(g, &w.pp("layer_norm1"), x, c, v.layer_norm_eps)?;
    let a = self_attention(g, v, &w.pp("self_attn"), &h)?;
    let x = g.scope(w.path().as_str()).add("attn_residual", x, &a);
    let h = layer_norm(g, &w.pp("layer_norm2"), &x, c, v.layer_norm_eps)?;
    let m = linear(g, &w.pp("mlp").pp("fc1"), &h, c, v.intermediate_size, true)?;
    let m = gelu_tanh(g, &format!("{}/mlp/gelu", w.path()), &m);
    let m = linear(g, &w.pp("mlp").pp("fc2"), &m, v.intermediate_size, c, true)?;
    Ok(g.scope(w.path().as_str()).add("mlp_residual", &x, &m))
}

/// Multi-head self-attention without mask ([`attention`], softmax in f32).
///
/// ```text
/// x [F,T,C] ─q/k/v Linear─▶ attention (h heads, no mask, no RoPE) ─▶ [F,T,C] ─out_proj─▶
/// ```
fn self_attention(g: &mut ModelGraph, v: &VisionConfig, w: &Weights, x: &Value) -> Result<Value> {
    let (c, heads) = (v.hidden_size, v.num_attention_heads);
    let q = linear(g, &w.pp("q_proj"), x, c, c, true)?;
    let k = linear(g, &w.pp("k_proj"), x, c, c, true)?;
    let val = linear(g, &w.pp("v_proj"), x, c, c, true)?;
    let opts = AttentionOptions { heads, kv_heads: None, head_dim: c / heads, scale: Scale::Scores, rope: None, mask: None, key_values: KeyValues::New };
    let ctx = attention(g, &w.path(), &q, &k, &val, &opts).context;
    linear(g, &w.pp("out_proj"), &ctx, c, c, true)
}
