//! `cut3r_points`: the point-map heads of CUT3R (`downstream_head`, class `DPTPts3dPose`;
//! docs/cut3r.md §5), fed by the hooked decoder outputs `cut3r_step` exposes when the
//! bundle is exported with `--cut3r-points`:
//!
//! ```text
//! features F [1,N,Ce] ─────────┬──────────────────────────────┐
//! decoder_half I_{2L/4} [1,N,Dc] ┼──────────────────────────────┤
//! decoder_three_quarters I_{3L/4} ┼─────────────────────────────┤
//! decoder_final T [1,N,Dc] ──────┼─ dpt_self ─▶ pts3d_in_self_view [1,H,W,3], conf_self [1,H,W]
//!                                └─ final_transform (×2, modulated by c) ─▶ T_c
//! camera_token c [1,Dc] ─────────────┘        T_c ─ dpt_cross ─▶ pts3d_in_other_view, conf
//! ```
//!
//! The self-view points are in the current camera's frame; the other-view points are in the world
//! frame (the first frame's camera). The RGB head is not exported (the VLM and BEV do not use it).
//! Convolutions run in the export precision; the post-processing (`expm1`, `exp`) runs in f32.

use super::blocks::{mlp, rope_table, self_attention, BlockDims, Rope2d, RopeTable};
use super::{exp_norm, io, model_graph, Dims};
use crate::checkpoint::{Checkpoint, Weights};
use crate::config::Cut3rConfig;
use crate::dims;
use crate::error::{Error, Result};
use crate::graph::{ConvOptions, GraphBuilder, ResizeOptions, ResizeTarget, Value};
use crate::models::context::ModelGraph;
use crate::models::layers::{cast_to, layer_norm, linear, weight};
use crate::models::ExportOptions;
use crate::tensor::DType;

/// Graph name (file stem in the bundle) and the name-map family of its weights.
pub const POINTS_GRAPH: &str = loc3r_bundle::Graph::Cut3rPoints.name();

/// Decoder layers (1-based, as the official `dec` list counts them; 0 is the encoder output)
/// whose image tokens feed the second and third DPT hooks: `⌊2L/4⌋` and `⌊3L/4⌋`.
pub(super) fn hook_layers(dec_depth: usize) -> (usize, usize) {
    (dec_depth * 2 / 4, dec_depth * 3 / 4)
}

/// Channel sizes of one DPT adapter.
#[derive(Debug, Clone, Copy)]
struct DptDims {
    /// Encoder width (hook 0) and decoder width (hooks 1-3).
    ce: usize,
    dc: usize,
    layers: [usize; 4],
    feature: usize,
    last: usize,
}

impl DptDims {
    fn new(c: &Cut3rConfig) -> Result<DptDims> {
        // The official head's first conv maps feature → feature/2 and its second feature/2 → last,
        // with `last_dim = feature_dim // 2` hard-coded; the name map relies on that.
        if c.dpt_feature_dim % 2 != 0 || c.dpt_last_dim != c.dpt_feature_dim / 2 {
            return Err(Error::Invalid(format!(
                "cut3r.dpt_last_dim = {} must be half of cut3r.dpt_feature_dim = {} (the official DPT head fixes last_dim = feature_dim / 2)",
                c.dpt_last_dim, c.dpt_feature_dim
            )));
        }
        Ok(DptDims { ce: c.enc_embed_dim, dc: c.dec_embed_dim, layers: c.dpt_layer_dims, feature: c.dpt_feature_dim, last: c.dpt_last_dim })
    }
}

/// `cut3r_points`: decoder hooks + camera token → both point maps with confidences.
pub fn points_graph(ckpt: &Checkpoint, opts: &ExportOptions) -> Result<GraphBuilder> {
    points_graph_with(ckpt, opts, true)
}

/// [`points_graph`], optionally without the self-view head (then only `pts3d_in_other_view`
/// and `conf` are outputs: the training path's world-point supervision builds no more).
pub fn points_graph_with(ckpt: &Checkpoint, opts: &ExportOptions, self_view: bool) -> Result<GraphBuilder> {
    let c = &ckpt.config().cut3r;
    let d = Dims::new(c, opts.cut3r_size)?;
    let mut g = model_graph(POINTS_GRAPH, opts, c)?;
    let compute = g.compute();
    let dpt = DptDims::new(c)?;
    let w = ckpt.weights(POINTS_GRAPH)?;
    g.set_doc(format!(
        "CUT3R point maps at {}x{} (WxH): encoder features, decoder hooks and camera token of one cut3r_step -> pts3d_in_self_view, conf_self, pts3d_in_other_view, conf",
        d.width, d.height
    ));

    let n = d.tokens();
    let features = g.input(io::FEATURES, compute, dims![1, n, d.ce]);
    let half = g.input(io::DECODER_HALF, compute, dims![1, n, d.dc]);
    let three_quarters = g.input(io::DECODER_THREE_QUARTERS, compute, dims![1, n, d.dc]);
    let tokens = g.input(io::DECODER_FINAL, compute, dims![1, n, d.dc]);
    let camera_token = g.input(io::CAMERA_TOKEN, DType::F32, dims![1, d.dc]);

    // 6.2 cross-view transform: two ConditionModulationBlocks modulated by the camera token,
    // RoPE on the patch grid (no camera token in this stream).
    let cam = cast_to(&mut g, "final_transform", "camera_token_to_compute", &camera_token, compute);
    // The official blocks fix mlp_ratio = 4.0, whatever the backbone's.
    let blk = BlockDims { dim: d.dc, heads: c.dec_num_heads, mlp_hidden: 4 * d.dc };
    let rope = rope_table(&mut g, "rope/points_grid", &d.grid_positions(), d.dc / blk.heads, d.rope_base);
    let mut cross_tokens = tokens.clone();
    for i in 0..2 {
        cross_tokens = modulation_block(&mut g, &w.pp("final_transform").pp(i), &cross_tokens, &cam, blk, &rope)?;
    }

    // 6.3 / 6.4 the two DPT adapters and their post-processing
    let mut outputs = Vec::new();
    for (adapter, last_hook, pts_name, conf_name) in
        [("dpt_self", &tokens, io::PTS3D_SELF, io::CONF_SELF), ("dpt_cross", &cross_tokens, io::PTS3D_OTHER, io::CONF_OTHER)]
    {
        if adapter == "dpt_self" && !self_view {
            continue;
        }
        let hooks = [&features, &half, &three_quarters, last_hook];
        let raw = dpt_adapter(&mut g, &w.pp(adapter), hooks, &d, dpt)?;
        let (pts, conf) = postprocess(&mut g, adapter, &raw);
        outputs.push((pts_name, pts, conf_name, conf));
    }
    for (pts_name, pts, conf_name, conf) in &outputs {
        g.output_with_shape(pts_name, pts, dims![1, d.height, d.width, 3]);
        g.output_with_shape(conf_name, conf, dims![1, d.height, d.width]);
    }
    g.check()?;
    Ok(g.into_builder())
}

/// `ModLN(x, mod)`: LayerNorm without its own modulation, then `x·(1 + scale) + shift` with
/// `[shift ‖ scale] = Linear(SiLU(mod))` (DiT's adaLN).
///
/// ```text
/// mod [1,C] ──SiLU──▶ mlp.1 ──▶ [1,2C] ──Split──▶ shift, scale ──Unsqueeze──▶ [1,1,C]
/// x [1,N,C] ──norm (f32)──▶ · (1 + scale) + shift
/// ```
fn modulated_norm(g: &mut ModelGraph, w: &Weights, x: &Value, modulation: &Value, c: usize) -> Result<Value> {
    let eps = g.norm_eps()?;
    let compute = g.compute();
    let path = w.path();
    let act = {
        let mut s = g.scope(path.as_str());
        let gate = s.sigmoid("silu/sigmoid", modulation);
        s.mul("silu/mul", modulation, &gate)
    };
    let shift_scale = linear(g, &w.pp("mlp").pp(1), &act, c, 2 * c, true)?;
    let x32 = cast_to(g, &path, "input_to_f32", x, DType::F32);
    let normed = layer_norm(g, &w.pp("norm"), &x32, c, eps)?;
    let normed = cast_to(g, &path, "norm_to_compute", &normed, compute);
    let mut s = g.scope(path.as_str());
    let parts = s.split("split_shift_scale", &shift_scale, -1, &[c, c]);
    let shift = s.unsqueeze("shift_per_token", &parts[0], &[1]);
    let scale = s.unsqueeze("scale_per_token", &parts[1], &[1]);
    let one_plus = s.add_scalar("one_plus_scale", &scale, 1.0);
    let scaled = s.mul("scale", &normed, &one_plus);
    Ok(s.add("shift", &scaled, &shift))
}

/// `ConditionModulationBlock(x, mod, pos)`:
///
/// ```text
/// x ──ModLN1(mod)──▶ self-attn(RoPE pos) ──▶ (+x) ──ModLN2(mod)──▶ mlp ──▶ (+) ──▶ out
/// ```
fn modulation_block(g: &mut ModelGraph, w: &Weights, x: &Value, modulation: &Value, d: BlockDims, rope: &RopeTable) -> Result<Value> {
    let path = w.path();
    let h = modulated_norm(g, &w.pp("norm1"), x, modulation, d.dim)?;
    let a = self_attention(g, &w.pp("attn"), &h, d, Some(Rope2d { q: rope, k: rope }))?;
    let x = g.scope(path.as_str()).add("attn_residual", x, &a);
    let h = modulated_norm(g, &w.pp("norm2"), &x, modulation, d.dim)?;
    let m = mlp(g, &w.pp("mlp"), &h, d.dim, d.mlp_hidden, d.dim)?;
    Ok(g.scope(path.as_str()).add("mlp_residual", &x, &m))
}

/// A conv with the checkpoint's weight `[out, in, k, k]` (and bias), stride `stride`, padding `pad`.
#[allow(clippy::too_many_arguments)]
fn conv(g: &mut ModelGraph, w: &Weights, x: &Value, (inp, out, k): (usize, usize, usize), stride: usize, pad: usize, bias: bool) -> Result<Value> {
    let compute = g.compute();
    let kernel = weight(g, w, "weight", &[out, inp, k, k], compute)?;
    let b = if bias { Some(weight(g, w, "bias", &[out], compute)?) } else { None };
    Ok(g.scope(w.path()).conv("Conv", x, &kernel, b.as_ref(), &ConvOptions::uniform(2, stride, pad)))
}

/// `ConvTranspose2d(c, c, k, stride = k)` (PyTorch's weight layout `[in, out, k, k]` is ONNX's).
fn conv_transpose(g: &mut ModelGraph, w: &Weights, x: &Value, c: usize, k: usize) -> Result<Value> {
    let compute = g.compute();
    let kernel = weight(g, w, "weight", &[c, c, k, k], compute)?;
    let b = weight(g, w, "bias", &[c], compute)?;
    Ok(g.scope(w.path()).conv_transpose("ConvTranspose", x, &kernel, Some(&b), &ConvOptions::uniform(2, k, 0)))
}

/// Bilinear ×2 with `align_corners=True` (`F.interpolate(scale_factor=2)`), to an explicit size.
fn upsample2(g: &mut GraphBuilder, path: &str, x: &Value, channels: usize, (h, w): (usize, usize)) -> Value {
    let mut opts = ResizeOptions::linear(ResizeTarget::Sizes(vec![1, channels, 2 * h, 2 * w]));
    opts.coordinate_transformation_mode = "align_corners".into();
    g.scope(path).resize("upsample2", x, &opts)
}

/// `ResidualConvUnit_custom`: `x + conv2(ReLU(conv1(ReLU(x))))`, 3×3 convs with bias.
fn residual_conv_unit(g: &mut ModelGraph, w: &Weights, x: &Value, c: usize) -> Result<Value> {
    let h = g.scope(w.path()).relu("relu1", x);
    let h = conv(g, &w.pp("conv1"), &h, (c, c, 3), 1, 1, true)?;
    let h = g.scope(w.path()).relu("relu2", &h);
    let h = conv(g, &w.pp("conv2"), &h, (c, c, 3), 1, 1, true)?;
    Ok(g.scope(w.path()).add("skip_add", &h, x))
}

/// `FeatureFusionBlock_custom(previous, lateral)`: `previous + RCU1(lateral)` (or the lateral
/// input alone for refinenet4), then RCU2, bilinear ×2 (align_corners), `out_conv` 1×1.
fn fusion_block(g: &mut ModelGraph, w: &Weights, previous: Option<&Value>, lateral: &Value, c: usize, hw: (usize, usize)) -> Result<Value> {
    let x = match previous {
        Some(prev) => {
            let res = residual_conv_unit(g, &w.pp("resConfUnit1"), lateral, c)?;
            g.scope(w.path()).add("fuse", prev, &res)
        }
        None => lateral.clone(),
    };
    let x = residual_conv_unit(g, &w.pp("resConfUnit2"), &x, c)?;
    let x = upsample2(g, &w.path(), &x, c, hw);
    conv(g, &w.pp("out_conv"), &x, (c, c, 1), 1, 0, true)
}

/// `DPTOutputAdapter_fix.forward` (official `dpt_head.py`) over the four hooks → `[1, COUT=4, H, W]`.
///
/// ```text
/// hook_k [1,N,C_k] ──Transpose, Reshape──▶ [1,C_k,h,w] ──act_postprocess.k──▶ L_k (4h, 2h, h, ⌈h/2⌉)
///   ──scratch.layer{k+1}_rn (3×3, no bias)──▶ [1,F,..]
/// refinenet4(L4) ──crop to L3──▶ refinenet3(·, L3) ──▶ refinenet2(·, L2) ──▶ refinenet1(·, L1)   [1,F,8h,8w]
///   ──head: 3×3 F→F/2, ×2, 3×3 F/2→last, ReLU, 1×1 last→4──▶ [1,4,16h,16w] = [1,4,H,W]
/// ```
fn dpt_adapter(g: &mut ModelGraph, w: &Weights, hooks: [&Value; 4], d: &Dims, dpt: DptDims) -> Result<Value> {
    let (h, wd) = (d.grid_h, d.grid_w);
    let widths = [dpt.ce, dpt.dc, dpt.dc, dpt.dc];
    let mut levels = Vec::with_capacity(4);
    for (k, hook) in hooks.into_iter().enumerate() {
        let post = w.pp("act_postprocess").pp(k);
        let grid = {
            let mut s = g.scope(format!("{}/to_grid", post.path()));
            let t = s.transpose("Transpose", hook, &[0, 2, 1]);
            s.reshape("Reshape", &t, [1, widths[k] as i64, h as i64, wd as i64])
        };
        let c = dpt.layers[k];
        let x = conv(g, &post.pp(0), &grid, (widths[k], c, 1), 1, 0, true)?;
        let x = match k {
            0 => conv_transpose(g, &post.pp(1), &x, c, 4)?,
            1 => conv_transpose(g, &post.pp(1), &x, c, 2)?,
            2 => x,
            _ => conv(g, &post.pp(1), &x, (c, c, 3), 2, 1, true)?,
        };
        levels.push(conv(g, &w.pp("scratch").pp(format!("layer{}_rn", k + 1)), &x, (c, dpt.feature, 3), 1, 1, false)?);
    }
    // Level sizes: 4h×4w, 2h×2w, h×w, ⌈h/2⌉×⌈w/2⌉ (the stride-2 conv rounds up).
    let sizes = [(4 * h, 4 * wd), (2 * h, 2 * wd), (h, wd), (h.div_ceil(2), wd.div_ceil(2))];
    let scratch = w.pp("scratch");
    let f = dpt.feature;
    let path4 = fusion_block(g, &scratch.pp("refinenet4"), None, &levels[3], f, sizes[3])?;
    // ×2 of ⌈h/2⌉ overshoots an odd h by one row: crop to level 3's size.
    let path4 = g.scope(scratch.pp("refinenet4").path()).slice("crop", &path4, [0, 0], [h as i64, wd as i64], &[2, 3], &[]);
    let path3 = fusion_block(g, &scratch.pp("refinenet3"), Some(&path4), &levels[2], f, sizes[2])?;
    let path2 = fusion_block(g, &scratch.pp("refinenet2"), Some(&path3), &levels[1], f, sizes[1])?;
    let path1 = fusion_block(g, &scratch.pp("refinenet1"), Some(&path2), &levels[0], f, sizes[0])?;

    let head = w.pp("head");
    let x = conv(g, &head.pp(0), &path1, (f, f / 2, 3), 1, 1, true)?;
    let x = upsample2(g, &head.path(), &x, f / 2, (8 * h, 8 * wd));
    let x = conv(g, &head.pp(2), &x, (f / 2, dpt.last, 3), 1, 1, true)?;
    let x = g.scope(head.path()).relu("relu", &x);
    conv(g, &head.pp(4), &x, (dpt.last, 4, 1), 1, 0, true)
}

/// `postprocess` with depth mode `exp` and confidence mode `exp` from 1 (docs/cut3r.md §5), in f32:
///
/// ```text
/// out [1,4,H,W] ──Cast f32, Transpose──▶ [1,H,W,4] ──Split 3|1──▶ xyz, c
/// xyz ──ReduceL2──▶ d ──▶ xyz / max(d, 1e-8) · expm1(d) = pts [1,H,W,3]
/// c ──▶ 1 + exp(c) = conf [1,H,W]
/// ```
fn postprocess(g: &mut GraphBuilder, adapter: &str, raw: &Value) -> (Value, Value) {
    let path = format!("{adapter}/postprocess");
    let raw = cast_to(g, &path, "to_f32", raw, DType::F32);
    let mut s = g.scope(path.as_str());
    let fmap = s.transpose("channels_last", &raw, &[0, 2, 3, 1]);
    let parts = s.split("split_xyz_conf", &fmap, -1, &[3, 1]);
    let (xyz, c) = (&parts[0], &parts[1]);
    let pts = exp_norm(&mut s, xyz);
    let e = s.exp("conf_exp", c);
    let conf = s.add_scalar("conf_from_one", &e, 1.0);
    let conf = s.squeeze("conf_squeeze", &conf, &[-1]);
    (pts, conf)
}

#[cfg(test)]
mod tests {
    use super::hook_layers;

    #[test]
    fn hooks_follow_the_official_indices() {
        // Release depth 12: dec[6], dec[9]; tiny depth 4: dec[2], dec[3]; depth 2: dec[1] twice.
        assert_eq!(hook_layers(12), (6, 9));
        assert_eq!(hook_layers(4), (2, 3));
        assert_eq!(hook_layers(2), (1, 1));
        assert_eq!(hook_layers(6), (3, 4));
    }
}
