//! CUT3R graphs (docs/cut3r.md; official code `CUT3R/CUT3R` `src/dust3r/model.py`):
//!
//! * `cut3r_encoder`: `image [F,3,H,W]` (RGB in [-1,1]) → `features [F,N,Ce]`: patch
//!   embedding, `enc_depth` encoder blocks with RoPE-2D on the patch grid, `enc_norm`
//!   (docs/cut3r.md §2).
//! * `cut3r_step`: one recurrent frame (docs/cut3r.md §2): `features [1,N,Ce]`,
//!   `state [1,S,Dc]`, `memory [1,M,2Dc]`, `is_first`, `update`, `reset` (`[1]`, float 0/1)
//!   → `camera_token [1,Dc]`, `state_out`, `memory_out`, `camera_pose [1,7]`.
//!   No control flow: the `is_first` choice and the update/reset gating are arithmetic blends
//!   as in the official code. With `--cut3r-points` it also outputs the decoder hooks of the
//!   point-map heads (`decoder_half`, `decoder_three_quarters`, `decoder_final`).
//! * `cut3r_points` (optional, [`points`]): hooks + camera token → point maps and confidences.
//! * [`initial_state`]: `state_init = decoder_embed_state(register_tokens.weight)` and
//!   `mem_init = pose_retriever.mem` (docs/cut3r.md §3), for `cut3r_init.safetensors`.
//!
//! H and W are fixed per export (`ExportOptions::cut3r_size`); the RoPE cos/sin tables of the
//! patch grid, of the camera token at (-1,-1) and of the state grid are constants computed
//! analytically (no int64 positions at run time).
//!
//! Dtypes at the graph boundary (project convention: what the host produces or consumes is
//! f32, with the casts inside the graph): `image`, `camera_token` (the runtime feeds it to
//! `projector.onnx`, whose `camera_tokens` input is f32), `state`, `memory`, `state_out`,
//! `memory_out`, the three flags and `camera_pose` are always f32. Only `features`, which
//! passes from `cut3r_encoder` straight to `cut3r_step`, uses the export precision (f32 or f16).
//! In f16 graphs LayerNorm and softmax run in f32, the state and memory residual streams stay
//! f32, and the pose post-processing (`expm1`, normalisation) is f32.
//!
//! Sizes at the release configuration (512×384): N = 24·32 = 768 image tokens, Ce = 1024,
//! Dc = 768, S = 768 state tokens, M = 256 memory tokens of 2·Dc = 1536.

mod blocks;
mod points;

use std::sync::Arc;

use blocks::{decoder_block, encoder_block, mlp, norm, rope_table, BlockDims, RopeTable};
pub use points::{points_graph, points_graph_with, POINTS_GRAPH};

use loc3r_bundle::Graph;

use crate::checkpoint::{Checkpoint, Weights};
use crate::config::Cut3rConfig;
use crate::dims;
use crate::error::{Error, Result};
use crate::graph::{ConvOptions, GraphBuilder, Scope, Value};
use crate::models::context::ModelGraph;
use crate::models::layers::{cast_to, linear, weight};
use crate::models::ExportOptions;
use crate::tensor::{DType, F32Tensor};

/// Graph names (file stems in the bundle).
pub const ENCODER_GRAPH: &str = Graph::Cut3rEncoder.name();
pub const STEP_GRAPH: &str = Graph::Cut3rStep.name();

/// Graph input and output names (shapes and dtypes: `loc3r_bundle::io::cut3r`; docs/bundle.md §3).
pub use loc3r_bundle::io::cut3r as io;

/// Names of the tensors in `cut3r_init.safetensors`.
pub use loc3r_bundle::io::cut3r_init::{MEM_INIT, STATE_INIT};

/// Every size of one export, from the config and the input size.
#[derive(Debug, Clone)]
struct Dims {
    /// Encoder width Ce, decoder width Dc, retriever width Cm = 2·Dc.
    ce: usize,
    dc: usize,
    cm: usize,
    patch: usize,
    /// Input (W, H) and patch grid (w, h); N = h·w.
    width: usize,
    height: usize,
    grid_w: usize,
    grid_h: usize,
    /// State tokens S and memory tokens M.
    state: usize,
    mem: usize,
    rope_base: f64,
}

impl Dims {
    fn new(c: &Cut3rConfig, (width, height): (usize, usize)) -> Result<Dims> {
        check_input_size(c.patch_size, width, height)?;
        let rope_base = c
            .pos_embed
            .strip_prefix("RoPE")
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| Error::Invalid(format!("cut3r.pos_embed = {:?}: expected RoPE<base>, e.g. RoPE100", c.pos_embed)))?;
        for (what, dim, heads) in [
            ("enc_embed_dim / enc_num_heads", c.enc_embed_dim, c.enc_num_heads),
            ("dec_embed_dim / dec_num_heads", c.dec_embed_dim, c.dec_num_heads),
            ("dec_embed_dim / state_dec_num_heads", c.dec_embed_dim, c.state_dec_num_heads),
            ("2 * dec_embed_dim / dec_num_heads", 2 * c.dec_embed_dim, c.dec_num_heads),
        ] {
            if heads == 0 || dim % heads != 0 || (dim / heads) % 4 != 0 {
                return Err(Error::Invalid(format!(
                    "cut3r.{what} = {dim} / {heads}: the heads must divide the width into head sizes that are multiples of 4 (RoPE-2D)"
                )));
            }
        }
        Ok(Dims {
            ce: c.enc_embed_dim,
            dc: c.dec_embed_dim,
            cm: 2 * c.dec_embed_dim,
            patch: c.patch_size,
            width,
            height,
            grid_w: width / c.patch_size,
            grid_h: height / c.patch_size,
            state: c.state_size,
            mem: c.local_mem_size,
            rope_base,
        })
    }

    fn tokens(&self) -> usize {
        self.grid_w * self.grid_h
    }

    /// Patch token n = r·w + c sits at (y, x) = (r, c) (row-major over the grid; docs/cut3r.md §1).
    fn grid_positions(&self) -> Vec<(f64, f64)> {
        (0..self.tokens()).map(|n| ((n / self.grid_w) as f64, (n % self.grid_w) as f64)).collect()
    }

    /// The image stream: the camera token at (-1, -1), then the patch grid (docs/cut3r.md §2 step 3).
    fn image_stream_positions(&self) -> Vec<(f64, f64)> {
        std::iter::once((-1.0, -1.0)).chain(self.grid_positions()).collect()
    }

    /// State token i at (i / width, i % width), width = ⌊√S⌋ rounded up to even
    /// (`state_pe = "2d"`; S = 768 gives width 28, last token (27, 11)).
    fn state_positions(&self) -> Vec<(f64, f64)> {
        let mut width = (self.state as f64).sqrt() as usize;
        if width % 2 == 1 {
            width += 1;
        }
        (0..self.state).map(|i| ((i / width) as f64, (i % width) as f64)).collect()
    }
}

/// The input size must be a whole number of patches; the error lists the nearest sizes that are.
pub fn check_input_size(patch: usize, width: usize, height: usize) -> Result<()> {
    if patch > 0 && width % patch == 0 && height % patch == 0 && width > 0 && height > 0 {
        return Ok(());
    }
    let near = |v: usize| -> Vec<usize> {
        let lo = v / patch * patch;
        let mut out: Vec<usize> = [lo, lo + patch].into_iter().filter(|&x| x > 0).collect();
        if v % patch == 0 && v > 0 {
            out = vec![v];
        }
        out.dedup();
        out
    };
    let mut sizes = Vec::new();
    for w in near(width) {
        for h in near(height) {
            sizes.push(format!("{w}x{h}"));
        }
    }
    Err(Error::Invalid(format!(
        "CUT3R input size {width}x{height} (WxH) is not a multiple of the patch size {patch}; nearest valid sizes: {}",
        sizes.join(", ")
    )))
}

/// An empty CUT3R graph `name`: compute dtype from the export precision, every LayerNorm
/// with `cut3r.norm_eps`.
fn model_graph(name: &str, opts: &ExportOptions, c: &Cut3rConfig) -> Result<ModelGraph> {
    match opts.precision {
        DType::F32 | DType::F16 => Ok(ModelGraph::new(name, opts.precision).with_norm_eps(c.norm_eps).with_weight_quant(opts.weights.as_ref())),
        other => Err(Error::Invalid(format!("CUT3R graphs are exported in f32 or f16, not {other}"))),
    }
}

/// Patch embedding (`patch_embed.proj`, Conv k = s = patch):
///
/// ```text
/// image [F,3,H,W] (f32) ──Cast compute──▶ Conv ──▶ [F,Ce,h,w] ──Reshape──▶ [F,Ce,N] ──Transpose──▶ [F,N,Ce]
/// ```
fn patch_embed(g: &mut ModelGraph, w: &Weights, image: &Value, d: &Dims) -> Result<Value> {
    let compute = g.compute();
    let kernel = weight(g, w, "weight", &[d.ce, 3, d.patch, d.patch], compute)?;
    let bias = weight(g, w, "bias", &[d.ce], compute)?;
    let path = w.path();
    let image = cast_to(g, &path, "image_to_compute", image, compute);
    let mut s = g.scope(path);
    let x = s.conv("Conv", &image, &kernel, Some(&bias), &ConvOptions::uniform(2, d.patch, 0));
    let x = s.reshape("flatten", &x, [0, 0, -1]);
    Ok(s.transpose("to_tokens", &x, &[0, 2, 1]))
}

/// `cut3r_encoder`: `image [F,3,H,W]` → `features [F,N,Ce]` (docs/cut3r.md §2).
pub fn encoder_graph(ckpt: &Checkpoint, opts: &ExportOptions) -> Result<GraphBuilder> {
    encoder_graph_with(ckpt, opts, None)
}

/// [`encoder_graph`] with INT8 activations from a calibration cache (`None`: float
/// activations). `cut3r_step` has no such variant: the state and memory it carries from
/// frame to frame stay float.
pub fn encoder_graph_with(ckpt: &Checkpoint, opts: &ExportOptions, activations: Option<&crate::quant::ActivationQuant>) -> Result<GraphBuilder> {
    let c = &ckpt.config().cut3r;
    let d = Dims::new(c, opts.cut3r_size)?;
    let mut g = model_graph(ENCODER_GRAPH, opts, c)?.with_activation_quant(activations);
    let compute = g.compute();
    let w = ckpt.weights("cut3r")?;
    g.set_doc(format!("CUT3R encoder at {}x{} (WxH): image [F,3,H,W] in [-1,1] -> features [F,N,Ce]", d.width, d.height));

    let image = g.input(io::IMAGE, DType::F32, dims!["frames", 3, d.height, d.width]);
    // 1. patch embedding
    let mut x = patch_embed(&mut g, &w.pp("patch_embed").pp("proj"), &image, &d)?;
    // 2. encoder blocks, RoPE on the patch grid
    let enc = BlockDims { dim: d.ce, heads: c.enc_num_heads, mlp_hidden: c.mlp_ratio * d.ce };
    let rope = rope_table(&mut g, "rope/encoder_grid", &d.grid_positions(), d.ce / enc.heads, d.rope_base);
    for i in 0..c.enc_depth {
        let y = encoder_block(&mut g, &w.pp("enc_blocks").pp(i), &x, enc, &rope)?;
        // Name the shape at every block boundary, so no inferred dim can nest with depth.
        x = g.refine_shape(&y, dims!["frames", d.tokens(), d.ce]);
    }
    let features = norm(&mut g, &w.pp("enc_norm"), &x, d.ce, compute)?;
    g.output_with_shape(io::FEATURES, &features, dims!["frames", d.tokens(), d.ce]);
    g.check()?;
    Ok(g.into_builder())
}

/// RoPE tables of one decoder stream's heads: its own positions and the other stream's.
struct StreamRope {
    own: RopeTable,
    other: RopeTable,
}

/// `cut3r_step`: one recurrent frame (docs/cut3r.md §2).
pub fn step_graph(ckpt: &Checkpoint, opts: &ExportOptions) -> Result<GraphBuilder> {
    let c = &ckpt.config().cut3r;
    let d = Dims::new(c, opts.cut3r_size)?;
    let mut g = model_graph(STEP_GRAPH, opts, c)?;
    let compute = g.compute();
    let w = ckpt.weights("cut3r")?;
    let f32_ = DType::F32;
    g.set_doc(format!(
        "CUT3R recurrent step at {}x{} (WxH): features, state, memory, is_first, update, reset -> camera_token, state_out, memory_out, camera_pose",
        d.width, d.height
    ));

    let features = g.input(io::FEATURES, compute, dims![1, d.tokens(), d.ce]);
    let state = g.input(io::STATE, f32_, dims![1, d.state, d.dc]);
    let memory = g.input(io::MEMORY, f32_, dims![1, d.mem, d.cm]);
    let is_first = g.input(io::IS_FIRST, f32_, dims![1]);
    let update = g.input(io::UPDATE, f32_, dims![1]);
    let reset = g.input(io::RESET, f32_, dims![1]);

    let img_blk = BlockDims { dim: d.dc, heads: c.dec_num_heads, mlp_hidden: c.mlp_ratio * d.dc };
    let state_blk = BlockDims { dim: d.dc, heads: c.state_dec_num_heads, mlp_hidden: c.mlp_ratio * d.dc };
    let mem_blk = BlockDims { dim: d.cm, heads: c.dec_num_heads, mlp_hidden: c.mlp_ratio * d.cm };

    // 3. global image feature g = mean over tokens (f32), q_g = proj_q(g) [1,1,Dc]
    let retriever = w.pp("pose_retriever");
    let global = {
        let mut s = g.scope("global_feature");
        let f = if features.dtype() == f32_ { features.clone() } else { s.cast("to_f32", &features, f32_) };
        let m = s.reduce_mean("ReduceMean", &f, &[1], true);
        if compute == f32_ {
            m
        } else {
            s.cast("to_compute", &m, compute)
        }
    };
    let q_g = linear(&mut g, &retriever.pp("proj_q"), &global, d.ce, d.dc, true)?;

    // 4. camera query z0 = f·pose_token + (1-f)·inquire(q_g, memory)
    let read = inquire(&mut g, &retriever, &q_g, &memory, &d, mem_blk)?;
    let pose_token = weight(&mut g, &w, "pose_token", &[1, 1, d.dc], compute)?;
    let z0 = {
        let mut s = g.scope("camera_query");
        let f = s.reshape("is_first", &is_first, [1, 1, 1]);
        let f = if compute == f32_ { f } else { s.cast("is_first_cast", &f, compute) };
        let one = s.scalar(compute, 1.0);
        let not_f = s.sub("not_first", &one, &f);
        let a = s.mul("pick_token", &pose_token, &f);
        let b = s.mul("pick_read", &read, &not_f);
        s.add("blend", &a, &b)
    };

    // 5.-6. stream inputs: I0 = [z0 ‖ decoder_embed(F)] at [(-1,-1), grid]; S0 = state (f32)
    let img_tokens = linear(&mut g, &w.pp("decoder_embed"), &features, d.ce, d.dc, true)?;
    let mut img = g.scope("image_stream").concat("concat_camera", &[&z0, &img_tokens], 1);
    let mut st = state.clone();
    let (ipos, spos) = (d.image_stream_positions(), d.state_positions());
    let rope_img = StreamRope {
        own: rope_table(&mut g, "rope/image_stream", &ipos, img_blk.dim / img_blk.heads, d.rope_base),
        other: rope_table(&mut g, "rope/state_for_image_heads", &spos, img_blk.dim / img_blk.heads, d.rope_base),
    };
    let rope_state = StreamRope {
        own: rope_table(&mut g, "rope/state", &spos, state_blk.dim / state_blk.heads, d.rope_base),
        other: rope_table(&mut g, "rope/image_stream_for_state_heads", &ipos, state_blk.dim / state_blk.heads, d.rope_base),
    };

    // 7. dual decoder: both streams read the previous layer's outputs
    let (half_layer, three_quarters_layer) = points::hook_layers(c.dec_depth);
    let (mut half, mut three_quarters) = (None, None);
    for l in 0..c.dec_depth {
        let st_next = decoder_block(&mut g, &w.pp("dec_blocks_state").pp(l), &st, &img, state_blk, Some((&rope_state.own, &rope_state.other)))?;
        let img_next = decoder_block(&mut g, &w.pp("dec_blocks").pp(l), &img, &st, img_blk, Some((&rope_img.own, &rope_img.other)))?;
        (st, img) = (st_next, img_next);
        // `l + 1` counts layers as the official `dec` list does (dec[0] is the encoder output).
        if l + 1 == half_layer {
            half = Some(img.clone());
        }
        if l + 1 == three_quarters_layer {
            three_quarters = Some(img.clone());
        }
    }

    // 8. final norms: the new state in f32, the image stream in the compute dtype
    let state_new = norm(&mut g, &w.pp("dec_norm_state"), &st, d.dc, f32_)?;
    let img_fin = norm(&mut g, &w.pp("dec_norm"), &img, d.dc, compute)?;

    // 9. camera token c = I_fin[:, 0] (compute dtype inside the graph, f32 at the boundary)
    let cam = g.scope("camera_token").slice("Slice", &img_fin, [0], [1], &[1], &[]);
    let camera_token = g.scope("camera_token").reshape("Reshape", &cam, [1, d.dc as i64]);
    let camera_token_f32 = cast_to(&mut g, "camera_token", "to_f32", &camera_token, f32_);

    // 10. memory write: M_new = write_blocks(memory, [q_g ‖ c])
    let mem_new = write_memory(&mut g, &retriever, &memory, &q_g, &cam, mem_blk)?;

    // 11. update/reset gating against the constant initial state and memory (f32)
    let (state_init, _) = initial_state(ckpt)?;
    let state_init = g.initializer("cut3r/state_init", Arc::new(state_init), f32_);
    let mem_init = weight(&mut g, &retriever, "mem", &[1, d.mem, d.cm], f32_)?;
    let state_out = gate(&mut g, "state_gate", &state_new, &state, &state_init, &update, &reset);
    let memory_out = gate(&mut g, "memory_gate", &mem_new, &memory, &mem_init, &update, &reset);

    // 12. pose head (docs/cut3r.md §2 step 9)
    let camera_pose = pose_head(&mut g, &w.pp("downstream_head").pp("pose_head"), &camera_token, d.dc, c.mlp_ratio)?;

    g.output(io::CAMERA_TOKEN, &camera_token_f32);
    g.output(io::STATE_OUT, &state_out);
    g.output(io::MEMORY_OUT, &memory_out);
    g.output(io::CAMERA_POSE, &camera_pose);
    if opts.cut3r_points {
        // Image tokens without the camera token, in the compute dtype (they go straight to cut3r_points).
        for (name, stream) in [(io::DECODER_HALF, half), (io::DECODER_THREE_QUARTERS, three_quarters), (io::DECODER_FINAL, Some(img_fin.clone()))] {
            let stream = stream.ok_or_else(|| Error::Invalid(format!("cut3r.dec_depth = {} has no decoder layer for the `{name}` hook", c.dec_depth)))?;
            let tokens = g.scope(format!("points_hooks/{name}")).slice("drop_camera_token", &stream, [1], [i64::MAX], &[1], &[]);
            g.output_with_shape(name, &tokens, dims![1, d.tokens(), d.dc]);
        }
    }
    g.check()?;
    Ok(g.into_builder())
}

/// Graph name of the unrolled sequence (training only, never in a bundle).
pub const SEQUENCE_GRAPH: &str = "cut3r_sequence";

/// Names of the sequence graph's outputs: CUT3R's pose and camera token of every frame.
pub mod sequence_io {
    pub const CAMERA_POSES: &str = "camera_poses";
    pub const CAMERA_TOKENS: &str = "camera_tokens";
    /// With [`super::SequencePoints`]: the point maps `[K,H,W,3]` and confidences `[K,H,W]` of
    /// the K chosen frames, in frame 0's camera (`world`) and, if asked, in their own (`self`).
    pub const POINTS_SELF: &str = "points_self";
    pub const CONF_SELF: &str = "conf_self";
    pub const POINTS_WORLD: &str = "points_world";
    pub const CONF_WORLD: &str = "conf_world";
}

/// Which frames of a [`sequence_graph`] also run the point-map heads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SequencePoints {
    /// Frame indices, ascending (empty: no point maps).
    pub frames: Vec<usize>,
    /// Also the self-view head (the world head always runs).
    pub self_view: bool,
}

/// `cut3r_sequence`: `frames` frames through the encoder and the recurrent step, exactly as the
/// runtime chains the bundle's graphs for one video (a fresh state, `is_first` on frame 0,
/// `update = 1`, `reset = 0`), in one graph so a loss on every frame's pose can be
/// differentiated through the recurrence (the training path's CUT3R pose pretraining).
///
/// ```text
/// image [F,3,H,W] ──cut3r_encoder──▶ features [F,N,Ce] ──Slice frame t──┐
/// state_init, pose_retriever.mem ──▶ frame0/cut3r_step ──state, memory──▶ frame1/… ──▶ frame{F-1}/…
///   each frame: camera_pose [1,7], camera_token [1,Dc]
///   ──Concat──▶ camera_poses [F,7], camera_tokens [F,Dc]
/// ```
/// Every step reads the same weights (one initializer per checkpoint tensor); the initial memory
/// is the `pose_retriever.mem` weight itself, as `cut3r_init.safetensors` is made from it.
/// The frames in `points.frames` also run their decoder hooks and camera token through
/// `cut3r_points` (as the runtime does with a `--cut3r-points` bundle), and those point maps are
/// outputs too ([`sequence_io::POINTS_WORLD`] …).
pub fn sequence_graph(ckpt: &Checkpoint, opts: &ExportOptions, frames: usize, points: &SequencePoints) -> Result<GraphBuilder> {
    let c = &ckpt.config().cut3r;
    let d = Dims::new(c, opts.cut3r_size)?;
    if frames == 0 {
        return Err(Error::Invalid("a CUT3R sequence needs at least one frame".into()));
    }
    if points.frames.windows(2).any(|w| w[0] >= w[1]) || points.frames.last().is_some_and(|&f| f >= frames) {
        return Err(Error::Invalid(format!("point-map frames {:?} must be ascending and below {frames}", points.frames)));
    }
    let mut opts = opts.clone();
    opts.cut3r_points = !points.frames.is_empty();
    let opts = &opts;
    let f32_ = DType::F32;
    let mut g = model_graph(SEQUENCE_GRAPH, opts, c)?;
    let compute = g.compute();
    let w = ckpt.weights("cut3r")?;
    let image = g.input(io::IMAGE, f32_, dims![frames, 3, d.height, d.width]);
    let features = g.absorb(encoder_graph(ckpt, opts)?, &[(io::IMAGE, &image)])[io::FEATURES].clone();

    let (state_init, _) = initial_state(ckpt)?;
    let mut state = g.initializer("cut3r/state_init", Arc::new(state_init), f32_);
    let mut memory = weight(&mut g, &w.pp("pose_retriever"), "mem", &[1, d.mem, d.cm], f32_)?;
    let (one, zero) = (g.constant_f32(&[1.0], &[1]), g.constant_f32(&[0.0], &[1]));
    let (mut poses, mut tokens) = (Vec::with_capacity(frames), Vec::with_capacity(frames));
    let mut maps: [Vec<Value>; 4] = Default::default();
    for t in 0..frames {
        let frame = g.scope(format!("sequence/frame{t}")).slice("features", &features, [t as i64], [t as i64 + 1], &[0], &[]);
        let frame = g.refine_shape(&frame, dims![1, d.tokens(), d.ce]);
        debug_assert_eq!(frame.dtype(), compute);
        let is_first = if t == 0 { &one } else { &zero };
        let bind = [(io::FEATURES, &frame), (io::STATE, &state), (io::MEMORY, &memory), (io::IS_FIRST, is_first), (io::UPDATE, &one), (io::RESET, &zero)];
        let out = g.absorb_instance(step_graph(ckpt, opts)?, &bind, Some(&format!("frame{t}")));
        state = out[io::STATE_OUT].clone();
        memory = out[io::MEMORY_OUT].clone();
        poses.push(out[io::CAMERA_POSE].clone());
        tokens.push(out[io::CAMERA_TOKEN].clone());
        if points.frames.contains(&t) {
            let bind = [
                (io::FEATURES, &frame),
                (io::DECODER_HALF, &out[io::DECODER_HALF]),
                (io::DECODER_THREE_QUARTERS, &out[io::DECODER_THREE_QUARTERS]),
                (io::DECODER_FINAL, &out[io::DECODER_FINAL]),
                (io::CAMERA_TOKEN, &out[io::CAMERA_TOKEN]),
            ];
            let pts = g.absorb_instance(points_graph_with(ckpt, opts, points.self_view)?, &bind, Some(&format!("frame{t}/points")));
            for (k, name) in [io::PTS3D_SELF, io::CONF_SELF, io::PTS3D_OTHER, io::CONF_OTHER].into_iter().enumerate() {
                if let Some(v) = pts.get(name) {
                    maps[k].push(v.clone());
                }
            }
        }
    }
    let mut s = g.scope("sequence");
    let poses = s.concat("camera_poses", &poses.iter().collect::<Vec<_>>(), 0);
    let tokens = s.concat("camera_tokens", &tokens.iter().collect::<Vec<_>>(), 0);
    let names = [sequence_io::POINTS_SELF, sequence_io::CONF_SELF, sequence_io::POINTS_WORLD, sequence_io::CONF_WORLD];
    let maps: Vec<(&str, Value)> = names
        .iter()
        .zip(&maps)
        .filter(|(_, per_frame)| !per_frame.is_empty())
        .map(|(name, per_frame)| (*name, s.concat(name, &per_frame.iter().collect::<Vec<_>>(), 0)))
        .collect();
    g.output_with_shape(sequence_io::CAMERA_POSES, &poses, dims![frames, 7]);
    g.output_with_shape(sequence_io::CAMERA_TOKENS, &tokens, dims![frames, d.dc]);
    let k = points.frames.len();
    for (name, map) in &maps {
        let shape =
            if *name == sequence_io::CONF_SELF || *name == sequence_io::CONF_WORLD { dims![k, d.height, d.width] } else { dims![k, d.height, d.width, 3] };
        g.output_with_shape(name, map, shape);
    }
    g.check()?;
    Ok(g.into_builder())
}

/// `LocalMemory.inquire`: read the memory with `[q_g ‖ masked_token]`, keep the value half.
///
/// ```text
/// q_g [1,1,Dc] ─┐
/// masked_token ─┴─Concat──▶ a [1,1,2Dc] ──read_blocks.0(y=memory)──▶ read_blocks.1(y=memory)
///   ──Slice [Dc, 2Dc)──▶ read [1,1,Dc]
/// ```
fn inquire(g: &mut ModelGraph, w: &Weights, q_g: &Value, memory: &Value, d: &Dims, blk: BlockDims) -> Result<Value> {
    let compute = g.compute();
    let masked = weight(g, w, "masked_token", &[1, 1, d.dc], compute)?;
    let mut a = g.scope("pose_retriever/inquire").concat("concat_masked", &[q_g, &masked], -1);
    for k in 0..2 {
        a = decoder_block(g, &w.pp("read_blocks").pp(k), &a, memory, blk, None)?;
    }
    Ok(g.scope("pose_retriever/inquire").slice("value_half", &a, [d.dc as i64], [d.cm as i64], &[2], &[]))
}

/// `LocalMemory.update_mem`: the memory attends to `[q_g ‖ c]`.
///
/// ```text
/// q_g [1,1,Dc] ─┐
/// c   [1,1,Dc] ─┴─Concat──▶ e [1,1,2Dc]
/// memory [1,M,2Dc] (f32) ──write_blocks.0(y=e)──▶ write_blocks.1(y=e)──▶ M_new [1,M,2Dc] (f32)
/// ```
fn write_memory(g: &mut ModelGraph, w: &Weights, memory: &Value, q_g: &Value, cam: &Value, blk: BlockDims) -> Result<Value> {
    let e = g.scope("pose_retriever/update_mem").concat("concat_camera", &[q_g, cam], -1);
    let mut m = memory.clone();
    for k in 0..2 {
        m = decoder_block(g, &w.pp("write_blocks").pp(k), &m, &e, blk, None)?;
    }
    Ok(m)
}

/// Update/reset gating (docs/cut3r.md §2 step 8), in f32 like the official code:
///
/// ```text
/// new, old ──u·new + (1−u)·old──▶ kept ──r·init + (1−r)·kept──▶ out
/// ```
fn gate(g: &mut GraphBuilder, name: &str, new: &Value, old: &Value, init: &Value, update: &Value, reset: &Value) -> Value {
    let mut s = g.scope(name);
    let u = s.reshape("update", update, [1, 1, 1]);
    let r = s.reshape("reset", reset, [1, 1, 1]);
    let one = s.scalar_f32(1.0);
    let not_u = s.sub("not_update", &one, &u);
    let not_r = s.sub("not_reset", &one, &r);
    let a = s.mul("new_weighted", new, &u);
    let b = s.mul("old_weighted", old, &not_u);
    let kept = s.add("updated", &a, &b);
    let a = s.mul("init_weighted", init, &r);
    let b = s.mul("kept_weighted", &kept, &not_r);
    s.add("reset_blend", &a, &b)
}

/// Pose head (`downstream_head.pose_head.mlp`) and `postprocess_pose` with mode `exp`
/// (docs/cut3r.md §2 step 9), post-processing in f32:
///
/// ```text
/// c [1,Dc] ──fc1──▶ GELU ──fc2──▶ raw [1,7] ──Cast f32──▶ Split 3|4 ──▶ t, q
/// t ──ReduceL2──▶ d ──▶ t · expm1(d) / max(d, 1e-8)     (expm1: cubic series for d < 1e-3)
/// q ──ReduceL2──▶ q / max(‖q‖, 1e-12) ──▶ Where(q_w < 0, −q, q)
/// Concat(t, q) ──▶ camera_pose [1,7] = [tx,ty,tz,qw,qx,qy,qz]
/// ```
fn pose_head(g: &mut ModelGraph, w: &Weights, cam: &Value, dc: usize, mlp_ratio: usize) -> Result<Value> {
    let raw = mlp(g, &w.pp("mlp"), cam, dc, mlp_ratio * dc, 7)?;
    let mut s = g.scope(w.path());
    let raw = if raw.dtype() == DType::F32 { raw } else { s.cast("to_f32", &raw, DType::F32) };
    let parts = s.split("split_tq", &raw, -1, &[3, 4]);
    let (t, q) = (&parts[0], &parts[1]);
    let t = exp_norm(&mut s, t);
    // rotation
    let qn = s.reduce_l2("q_norm", q, &[-1], true);
    let qn = s.clip("clamp_q_norm", &qn, Some(1e-12), None);
    let q = s.div("normalize_q", q, &qn);
    let qw = s.slice("q_w", &q, [0], [1], &[-1], &[]);
    let zero = s.scalar_f32(0.0);
    let negative = s.less("w_negative", &qw, &zero);
    let neg_q = s.neg("neg_q", &q);
    let q = s.where_("standardize", &negative, &neg_q, &q);
    Ok(s.concat("pose", &[&t, &q], -1))
}

/// DUSt3R's `exp` mode for vectors (translations, points): `x / max(‖x‖, 1e-8) · expm1(‖x‖)`
/// over the last axis, in f32.
fn exp_norm(s: &mut Scope<'_>, x: &Value) -> Value {
    let dist = s.reduce_l2("norm", x, &[-1], true);
    let expm1 = expm1_f32(s, &dist);
    let denom = s.clip("clamp_norm", &dist, Some(1e-8), None);
    let scale = s.div("scale", &expm1, &denom);
    s.mul("exp_norm", x, &scale)
}

/// `expm1(d)` of an f32 tensor without the cancellation of `exp(d) − 1` near 0 (ONNX has no
/// Expm1): the cubic series `d·(1 + d·(1/2 + d/6))` below 1e-3, `exp(d) − 1` above.
fn expm1_f32(s: &mut Scope<'_>, d: &Value) -> Value {
    let exp = s.exp("exp", d);
    let direct = s.sub_scalar("exp_minus_one", &exp, 1.0);
    let poly = s.mul_scalar("series/d_over_6", d, 1.0 / 6.0);
    let poly = s.add_scalar("series/add_half", &poly, 0.5);
    let poly = s.mul("series/mul_d", &poly, d);
    let poly = s.add_scalar("series/add_one", &poly, 1.0);
    let series = s.mul("series/mul_d2", &poly, d);
    let small = s.scalar_f32(1e-3);
    let is_small = s.less("is_small", d, &small);
    s.where_("expm1", &is_small, &series, &direct)
}

/// `state_init [1,S,Dc] = decoder_embed_state(register_tokens.weight)` and
/// `mem_init [1,M,2Dc] = pose_retriever.mem` (docs/cut3r.md §3), computed from the checkpoint in f64.
pub fn initial_state(ckpt: &Checkpoint) -> Result<(F32Tensor, F32Tensor)> {
    let c = &ckpt.config().cut3r;
    let (ce, dc, s, m) = (c.enc_embed_dim, c.dec_embed_dim, c.state_size, c.local_mem_size);
    let w = ckpt.weights("cut3r")?;
    let tokens = w.pp("register_tokens").get("weight", &[s, ce])?.to_f32();
    let weight = w.pp("decoder_embed_state").get("weight", &[dc, ce])?.to_f32();
    let bias = w.pp("decoder_embed_state").get("bias", &[dc])?.to_f32();
    let mut state = Vec::with_capacity(s * dc);
    for i in 0..s {
        let x = &tokens[i * ce..(i + 1) * ce];
        for o in 0..dc {
            let row = &weight[o * ce..(o + 1) * ce];
            let acc: f64 = x.iter().zip(row).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
            state.push((acc + f64::from(bias[o])) as f32);
        }
    }
    let mem = w.pp("pose_retriever").get("mem", &[1, m, 2 * dc])?.to_f32();
    Ok((F32Tensor::new(vec![1, s, dc], state), F32Tensor::new(vec![1, m, 2 * dc], mem)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(state: usize) -> Dims {
        Dims { ce: 64, dc: 48, cm: 96, patch: 16, width: 64, height: 48, grid_w: 4, grid_h: 3, state, mem: 8, rope_base: 100.0 }
    }

    #[test]
    fn state_grid_rounds_an_odd_width_up() {
        // Release: S = 768, ⌊√768⌋ = 27 → 28; last token (27, 11) (docs/cut3r.md §2 step 3).
        let p = dims(768).state_positions();
        assert_eq!(p[27], (0.0, 27.0));
        assert_eq!(p[28], (1.0, 0.0));
        assert_eq!(*p.last().unwrap(), (27.0, 11.0));
        // Tiny: S = 10, width 3 → 4; last token (2, 1) (docs/cut3r.md §4).
        assert_eq!(*dims(10).state_positions().last().unwrap(), (2.0, 1.0));
    }

    #[test]
    fn image_stream_starts_with_the_camera_token_then_row_major_grid() {
        let p = dims(10).image_stream_positions();
        assert_eq!(p.len(), 13);
        assert_eq!(p[0], (-1.0, -1.0));
        assert_eq!(p[1], (0.0, 0.0));
        assert_eq!(p[4], (0.0, 3.0));
        assert_eq!(p[5], (1.0, 0.0));
        assert_eq!(p[12], (2.0, 3.0));
    }

    #[test]
    fn input_size_errors_list_the_nearest_valid_sizes() {
        assert!(check_input_size(16, 64, 48).is_ok());
        let e = check_input_size(16, 70, 48).unwrap_err().to_string();
        assert!(e.contains("70x48") && e.contains("64x48, 80x48"), "{e}");
        let e = check_input_size(16, 500, 380).unwrap_err().to_string();
        assert!(e.contains("496x368, 496x384, 512x368, 512x384"), "{e}");
        let e = check_input_size(16, 8, 48).unwrap_err().to_string();
        assert!(e.contains("nearest valid sizes: 16x48"), "{e}");
    }
}
