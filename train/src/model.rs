//! The whole Loc3R training graph for one prepared sample, composed from the exporter's own
//! graphs exactly as the runtime chains them (docs/prompt.md §3, docs/heads.md):
//!
//! ```text
//! image_features [F,P,Cv] ─┐
//! camera_tokens [F,Dc] ────┴▶ projector ─▶ per frame [camera_embeds[f], vision_embeds[f] (T rows)] ─▶ video [F·(T+1), H]
//! text_ids [S₁+S₂] ─▶ embed ─▶ before [S₁,H], after [S₂,H]
//! [before, video, after] ─▶ decoder (full sequence, empty KV past) ─▶ hidden [S,H]
//!   hidden[<Pos>], hidden[<Ori>], hidden[grid tokens] ─▶ heads ─▶ L_pos, L_ori, L_BEV
//!   hidden[supervised − 1] ─MatMul(lm_head)─▶ logits [N,V] ─▶ L_LM
//! ```
//! Trainable tensors are chosen by group (`--train`): `heads`, `projector` (mm_projector,
//! image_newline, cam_projector), `llm` (every Qwen2 tensor: embeddings, layers, final norm,
//! LM head), `lora` (low-rank adapters on the attention projections, the LLM frozen:
//! crate::lora). The graph's fixed sizes are a [`Shape`] (prompt lengths, frames, supervised
//! positions); a sample fits any shape at least as large: its text is right-padded (causal
//! attention keeps padding invisible to every earlier position, and padding is never supervised)
//! and its missing supervised rows are masked out of the LM loss, so one graph serves every
//! sample of a bucket exactly.

use std::collections::{BTreeSet, HashMap};

use loc3r_bundle::io;
use loc3r_export::checkpoint::Checkpoint;
use loc3r_export::graph::{Dim, GraphBuilder, Value};
use loc3r_export::models::{embed, heads, projector, qwen2};
use loc3r_export::DType;
use ndarray::{ArrayD, IxDyn};

use crate::graph::{finish, TrainGraphError, TrainingGraph};
use crate::lora::LoraOptions;
use crate::losses::{self, orientation_target, LossParts, LossWeights};
use crate::sample::{Sample, IGNORE};

/// A group of trainable tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Heads,
    Projector,
    Llm,
    /// LoRA factors on the decoder's attention projections (crate::lora), the LLM frozen.
    Lora,
}

impl Group {
    /// Parses `heads,projector,llm`, `all` (those three) or `lora` with any of heads and
    /// projector; `lora` adapts the LLM that `llm` trains whole, so the two are exclusive.
    pub fn parse_list(spec: &str) -> Result<BTreeSet<Group>, String> {
        let mut out = BTreeSet::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "heads" => out.insert(Group::Heads),
                "projector" => out.insert(Group::Projector),
                "llm" => out.insert(Group::Llm),
                "lora" => out.insert(Group::Lora),
                "all" => {
                    out.extend([Group::Heads, Group::Projector, Group::Llm]);
                    true
                }
                other => return Err(format!("`{other}` is not a trainable group; use heads, projector, llm, lora or all")),
            };
        }
        if out.contains(&Group::Lora) && out.contains(&Group::Llm) {
            return Err("`lora` and `llm` (also part of `all`) both train the LLM: give one of them, e.g. lora,heads,projector".into());
        }
        if out.is_empty() {
            return Err("nothing to train: give at least one of heads, projector, llm, lora".into());
        }
        Ok(out)
    }

    /// Whether the checkpoint tensor `name` belongs to this group.
    pub fn contains(self, name: &str) -> bool {
        match self {
            Group::Heads => ["model.loc3r.pos_head.", "model.loc3r.ori_head.", "model.loc3r.bev_head."].iter().any(|p| name.starts_with(p)),
            Group::Projector => name.starts_with("model.mm_projector.") || name == "model.image_newline" || name.starts_with("model.loc3r.cam_projector."),
            Group::Llm => {
                ["model.embed_tokens.", "model.layers.", "model.norm.", "lm_head."].iter().any(|p| name.starts_with(p)) && !crate::lora::is_factor(name)
            }
            Group::Lora => crate::lora::is_factor(name),
        }
    }
}

/// Data inputs of the composed graph (besides the parameters).
pub mod inputs {
    pub const TEXT_IDS: &str = "text_ids";
    pub const POS_INDEX: &str = "pos_index";
    pub const ORI_INDEX: &str = "ori_index";
    pub const GRID_INDEX: &str = "grid_index";
    pub const LM_POSITIONS: &str = "lm_positions";
    pub const LM_TARGETS: &str = "lm_targets";
    /// 1 for a supervised row, 0 for a padding row.
    pub const LM_MASK: &str = "lm_mask";
}

/// The fixed sizes of a training graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shape {
    /// Text tokens before the video (the placeholder's index in `input_ids`).
    pub before: usize,
    /// Text tokens after the video (padded).
    pub after: usize,
    pub frames: usize,
    /// Supervised LM positions (padded).
    pub supervised: usize,
}

impl Shape {
    /// The natural shape of a (validated) sample: no padding.
    pub fn of(sample: &Sample) -> Shape {
        let at = sample.placeholder().unwrap_or_default();
        Shape {
            before: at,
            after: sample.input_ids.len().saturating_sub(at + 1),
            frames: sample.frames,
            supervised: sample.labels.iter().filter(|&&l| l != IGNORE).count(),
        }
    }

    /// The shape rounded up to buckets (`after` to a multiple of `text`, `supervised` to a
    /// multiple of `rows`), so samples of similar length share one graph.
    pub fn bucketed(self, text: usize, rows: usize) -> Shape {
        Shape { after: self.after.div_ceil(text.max(1)) * text.max(1), supervised: self.supervised.div_ceil(rows.max(1)) * rows.max(1), ..self }
    }

    /// Whether a sample of shape `other` fits a graph of this shape.
    pub fn holds(&self, other: &Shape) -> bool {
        self.before == other.before && self.frames == other.frames && self.after >= other.after && self.supervised >= other.supervised
    }
}

/// A data tensor fed to the training graph.
#[derive(Debug, Clone)]
pub enum Data {
    F32(ArrayD<f32>),
    I64(ArrayD<i64>),
}

/// Feeds for the f64 reference interpreter (`crate::interp`), the same values widened.
pub fn interp_feeds(feeds: &HashMap<String, Data>) -> HashMap<String, crate::interp::Tensor> {
    feeds
        .iter()
        .map(|(name, d)| {
            let t = match d {
                Data::F32(a) => crate::interp::Tensor::Float(a.mapv(f64::from)),
                Data::I64(a) => crate::interp::Tensor::Int(a.clone()),
            };
            (name.clone(), t)
        })
        .collect()
}

/// Feeds split by element type, as `session::Runner::run` takes them.
pub type SplitFeeds = (HashMap<String, ArrayD<f32>>, HashMap<String, ArrayD<i64>>);

/// Splits a training graph's data feeds into the f32 and the i64 ones.
pub fn split_feeds(data: HashMap<String, Data>) -> SplitFeeds {
    let (mut floats, mut ids) = (HashMap::new(), HashMap::new());
    for (name, d) in data {
        match d {
            Data::F32(a) => {
                floats.insert(name, a);
            }
            Data::I64(a) => {
                ids.insert(name, a);
            }
        }
    }
    (floats, ids)
}

fn f32s(shape: &[usize], v: Vec<f32>) -> Data {
    Data::F32(ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape and length agree"))
}

fn i64s(shape: &[usize], v: Vec<i64>) -> Data {
    Data::I64(ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape and length agree"))
}

/// Where things are in the spliced sequence of a sample placed in a graph of some shape.
struct Layout {
    before: usize,
    total: usize,
    pos: usize,
    ori: usize,
    grid: Vec<i64>,
    /// (position whose logits predict, target id)
    supervised: Vec<(i64, i64)>,
}

fn layout(ckpt: &Checkpoint, sample: &Sample, shape: &Shape) -> Layout {
    let cfg = ckpt.config();
    let grid = cfg.vision_grid();
    let pooled = loc3r_export::config::pooled_side(grid, cfg.mm_spatial_pool_mode, cfg.mm_spatial_pool_stride);
    let tokens_per_frame = pooled * (pooled + 1);
    let at = sample.placeholder().expect("the sample was validated first");
    let (before, after) = (at, shape.after);
    let video = sample.frames * (tokens_per_frame + 1);
    // Sequence position of input position i (the placeholder expands to the video).
    let seq = |i: usize| if i < at { i } else { i - 1 + video };
    let find = |id: u32| sample.input_ids.iter().position(|&t| t == i64::from(id)).map(seq).expect("validated");
    let mut grid_index = Vec::with_capacity(sample.frames * pooled * pooled);
    for f in 0..sample.frames {
        let frame_start = before + f * (tokens_per_frame + 1) + 1;
        for r in 0..pooled {
            for c in 0..pooled {
                grid_index.push((frame_start + r * (pooled + 1) + c) as i64);
            }
        }
    }
    let supervised = sample.labels.iter().enumerate().filter(|(_, &l)| l != IGNORE).map(|(i, &l)| (seq(i) as i64 - 1, l)).collect();
    Layout { before, total: before + video + after, pos: find(cfg.loc3r.pos_token_id), ori: find(cfg.loc3r.ori_token_id), grid: grid_index, supervised }
}

/// The training graph for samples shaped like `sample` (no padding), and its data feeds for
/// `sample`; LoRA (when `groups` has it) with the default rank, α and seed 0.
pub fn training_graph(
    ckpt: &Checkpoint,
    sample: &Sample,
    groups: &BTreeSet<Group>,
    weights: &LossWeights,
) -> Result<(TrainingGraph, HashMap<String, Data>), TrainGraphError> {
    validate(ckpt, sample)?;
    let shape = Shape::of(sample);
    let tg = training_graph_for(ckpt, &shape, sample.feature_shape, groups, weights, &LoraOptions::default())?;
    Ok((tg, sample_feeds(ckpt, sample, &shape)?))
}

fn validate(ckpt: &Checkpoint, sample: &Sample) -> Result<(), TrainGraphError> {
    sample.validate(ckpt.config()).map_err(|m| TrainGraphError::Export(loc3r_export::Error::Invalid(format!("sample: {m}"))))
}

/// The training graph of one shape (`feature_shape`: SigLIP's `[P, Cv]` per frame); `lora`
/// applies when `groups` has [`Group::Lora`] (the adapters are the graph's `lora`).
pub fn training_graph_for(
    ckpt: &Checkpoint,
    shape: &Shape,
    feature_shape: (usize, usize),
    groups: &BTreeSet<Group>,
    weights: &LossWeights,
    lora: &LoraOptions,
) -> Result<TrainingGraph, TrainGraphError> {
    if lm_head_is_tied(ckpt)? {
        return Err(TrainGraphError::Export(loc3r_export::Error::Invalid(
            "this checkpoint ties the LM head to the token embeddings (it has no lm_head.weight): one training graph cannot hold that tensor both as the embedding table and transposed as the LM head; train it with --recompute layers, which sums both gradients".into(),
        )));
    }
    let opts = crate::graph::export_options(ckpt);
    let mut g = GraphBuilder::new("loc3r_train");
    g.set_doc("Loc3R-VLM training graph: projector, embed, decoder and heads as exported, with the paper's losses and gradients");
    let sequence = front_sequence(&mut g, ckpt, shape, feature_shape)?;

    // 4. The decoder over the whole sequence (no past).
    let dec = g.absorb(qwen2::graph(ckpt, &opts)?, &[(io::decoder::INPUTS_EMBEDS, &sequence)]);
    let hidden = dec[io::decoder::HIDDEN_STATES].clone();
    let (total, named) = top_losses(&mut g, ckpt, shape, &hidden, weights)?;
    let adapters = if groups.contains(&Group::Lora) { crate::lora::adapt(&mut g, lora)? } else { Vec::new() };
    let mut tg = finish(g, |name| groups.iter().any(|grp| grp.contains(name)), &total, &named)?;
    tg.lora = adapters;
    Ok(tg)
}

/// Steps 1–3 of the training graph into `g`: the projector on the encoders' outputs, the text
/// embeddings, and the splice; returns the decoder's input sequence `[1, S, H]` (h₀).
pub(crate) fn front_sequence(g: &mut GraphBuilder, ckpt: &Checkpoint, shape: &Shape, feature_shape: (usize, usize)) -> Result<Value, TrainGraphError> {
    let cfg = ckpt.config();
    let grid = cfg.vision_grid();
    let pooled = loc3r_export::config::pooled_side(grid, cfg.mm_spatial_pool_mode, cfg.mm_spatial_pool_stride);
    let tokens_per_frame = pooled * (pooled + 1);
    let h = cfg.hidden_size;
    let (f, (p, cv)) = (shape.frames, feature_shape);
    let opts = crate::graph::export_options(ckpt);
    struct Sizes {
        before: usize,
        after: usize,
        tokens_per_frame: usize,
    }
    let lay = Sizes { before: shape.before, after: shape.after, tokens_per_frame };
    // 1. Projector on the frozen encoders' outputs.
    let feats = g.input(io::projector::IMAGE_FEATURES, DType::F32, [f, p, cv]);
    let cams = g.input(io::projector::CAMERA_TOKENS, DType::F32, [f, cfg.loc3r.camera_token_dim]);
    let proj = g.absorb(projector::graph(ckpt, &opts)?, &[(io::projector::IMAGE_FEATURES, &feats), (io::projector::CAMERA_TOKENS, &cams)]);
    let (vision, camera) = (proj[io::projector::VISION_EMBEDS].clone(), proj[io::projector::CAMERA_EMBEDS].clone());

    // 2. Text embeddings, one lookup for both sides of the video.
    let text = g.input(inputs::TEXT_IDS, DType::I64, [lay.before + lay.after]);
    let text2 = g.scope("splice").unsqueeze("text_batch", &text, &[0]);
    let emb = g.absorb(embed::graph(ckpt, &opts)?, &[(io::embed::INPUT_IDS, &text2)]);
    let text_embeds = emb[io::embed::INPUTS_EMBEDS].clone();

    // 3. The splice: [before, per frame (camera, vision tokens), after].
    let mut s = g.scope("splice");
    let cam = s.unsqueeze("camera_row", &camera, &[1]);
    let frames = s.concat("frame_blocks", &[&cam, &vision], 1);
    let video = s.reshape("video", &frames, [1, (f * (lay.tokens_per_frame + 1)) as i64, h as i64]);
    let mut pieces: Vec<Value> = Vec::new();
    if lay.before > 0 {
        pieces.push(s.slice("before", &text_embeds, [0i64], [lay.before as i64], &[1], &[]));
    }
    pieces.push(video);
    if lay.after > 0 {
        pieces.push(s.slice("after", &text_embeds, [lay.before as i64], [(lay.before + lay.after) as i64], &[1], &[]));
    }
    let refs: Vec<&Value> = pieces.iter().collect();
    let sequence = s.concat("sequence", &refs, 1);
    let sequence = s.refine_shape(&sequence, [Dim::Fixed(1), Dim::sym("sequence"), Dim::Fixed(h)]);

    Ok(sequence)
}

/// The weighted total loss and its named parts (`lm`, `bev`, `pos`, `ori`).
pub(crate) type TopLosses = (Value, Vec<(&'static str, Value)>);

/// Steps 5–6 of the training graph into `g`, on the decoder's (normalised) `hidden` states:
/// the heads at <Pos>, <Ori> and the grid tokens, the gathered LM head, and the losses. Returns
/// the weighted total and the named parts. `g` must hold the decoder's `lm_head` MatMul.
pub(crate) fn top_losses(g: &mut GraphBuilder, ckpt: &Checkpoint, shape: &Shape, hidden: &Value, weights: &LossWeights) -> Result<TopLosses, TrainGraphError> {
    let cfg = ckpt.config();
    let grid = cfg.vision_grid();
    let pooled = loc3r_export::config::pooled_side(grid, cfg.mm_spatial_pool_mode, cfg.mm_spatial_pool_stride);
    let (v, k) = (cfg.vocab_size, cfg.loc3r.orientation_bins);
    let opts = crate::graph::export_options(ckpt);
    let n = shape.supervised;
    let t_grid = shape.frames * pooled * pooled;
    let lm_weight = lm_head_weight(g)?;

    // 5. Heads at <Pos>, <Ori> and the grid tokens.
    let pos_index = g.input(inputs::POS_INDEX, DType::I64, [1usize]);
    let ori_index = g.input(inputs::ORI_INDEX, DType::I64, [1usize]);
    let grid_index = g.input(inputs::GRID_INDEX, DType::I64, [t_grid]);
    let mut s = g.scope("taps");
    let rows = s.squeeze("rows", hidden, &[0]);
    let pos_hidden = s.gather("pos", &rows, &pos_index, 0);
    let ori_hidden = s.gather("ori", &rows, &ori_index, 0);
    let grid_hidden = s.gather("grid", &rows, &grid_index, 0);
    let grid_hidden = s.unsqueeze("grid_batch", &grid_hidden, &[0]);
    let hd = g.absorb(
        heads::graph(ckpt, &opts)?,
        &[(io::heads::POS_HIDDEN, &pos_hidden), (io::heads::ORI_HIDDEN, &ori_hidden), (io::heads::VISION_HIDDEN, &grid_hidden)],
    );

    // 6. Targets and losses.
    let bev_target = g.input(crate::graph::targets::BEV_TARGET, DType::F32, [1, t_grid, 2]);
    let bev_mask = g.input(crate::graph::targets::BEV_MASK, DType::F32, [1, t_grid]);
    let pos_target = g.input(crate::graph::targets::POS_TARGET, DType::F32, [1usize, 2]);
    let ori_target = g.input(crate::graph::targets::ORI_TARGET, DType::F32, [1, k]);
    let ori_h = g.input(crate::graph::targets::ORI_TARGET_NEG_ENTROPY, DType::F32, [1usize]);
    let valid = g.input(crate::graph::targets::SITUATION_VALID, DType::F32, [1usize]);
    let lm = if n > 0 {
        let positions = g.input(inputs::LM_POSITIONS, DType::I64, [n]);
        let targets = g.input(inputs::LM_TARGETS, DType::I64, [n]);
        let mut s = g.scope("loss/lm/head");
        let tapped = s.gather("supervised_rows", &rows, &positions, 0);
        let logits = s.matmul("logits", &tapped, &lm_weight);
        let logits = s.unsqueeze("batch", &logits, &[0]);
        let depth = s.ints(&[v as i64]);
        let on_off = s.constant_f32(&[0.0, 1.0], &[2]);
        let onehot = s.op("onehot", "OneHot", &[&targets, &depth, &on_off], &[("axis", (-1i64).into())], DType::F32, [n, v]);
        let onehot = s.unsqueeze("onehot_batch", &onehot, &[0]);
        drop(s);
        let mask = g.input(inputs::LM_MASK, DType::F32, [n]);
        let mask = g.scope("loss/lm/head").unsqueeze("mask_batch", &mask, &[0]);
        Some(losses::lm_loss(g, &logits, &onehot, &mask))
    } else {
        None
    };
    let parts = LossParts {
        lm,
        bev: Some(losses::bev_loss(g, &hd[io::heads::BEV], &bev_target, &bev_mask)),
        pos: Some(losses::position_loss(g, &hd[io::heads::POSITION], &pos_target, &valid)),
        ori: Some(losses::orientation_loss(g, &hd[io::heads::ORIENTATION_LOGITS], &ori_target, &ori_h, &valid)),
    };
    let total = losses::total(g, &parts, weights);
    let named: Vec<(&str, Value)> =
        [("lm", &parts.lm), ("bev", &parts.bev), ("pos", &parts.pos), ("ori", &parts.ori)].into_iter().filter_map(|(n, v)| v.clone().map(|v| (n, v))).collect();
    Ok((total, named))
}

/// The data feeds of `sample` for a graph of `shape` (which must hold the sample's own shape).
pub fn sample_feeds(ckpt: &Checkpoint, sample: &Sample, shape: &Shape) -> Result<HashMap<String, Data>, TrainGraphError> {
    validate(ckpt, sample)?;
    let own = Shape::of(sample);
    if !shape.holds(&own) {
        return Err(TrainGraphError::Export(loc3r_export::Error::Invalid(format!("sample of shape {own:?} does not fit a training graph of shape {shape:?}"))));
    }
    let cfg = ckpt.config();
    let lay = layout(ckpt, sample, shape);
    let k = cfg.loc3r.orientation_bins;
    let (f, (p, cv)) = (sample.frames, sample.feature_shape);
    let n = shape.supervised;
    let t_grid = lay.grid.len();
    let mut feeds = HashMap::new();
    feeds.insert(io::projector::IMAGE_FEATURES.to_string(), f32s(&[f, p, cv], sample.image_features.clone()));
    feeds.insert(io::projector::CAMERA_TOKENS.to_string(), f32s(&[f, sample.camera_dim], sample.camera_tokens.clone()));
    let at = lay.before;
    let pad = std::iter::repeat_n(i64::from(cfg.loc3r.endoftext_token_id), shape.after - own.after);
    let text_ids: Vec<i64> = sample.input_ids[..at].iter().chain(&sample.input_ids[at + 1..]).copied().chain(pad).collect();
    feeds.insert(inputs::TEXT_IDS.to_string(), i64s(&[text_ids.len()], text_ids));
    feeds.insert(io::decoder::ATTENTION_MASK.to_string(), i64s(&[1, lay.total], vec![1; lay.total]));
    feeds.insert(io::decoder::POSITION_IDS.to_string(), i64s(&[1, lay.total], (0..lay.total as i64).collect()));
    let (kvh, d) = (cfg.num_key_value_heads, cfg.head_dim());
    for i in 0..cfg.num_hidden_layers {
        for name in [io::decoder::past_key(i), io::decoder::past_value(i)] {
            feeds.insert(name, Data::F32(ArrayD::zeros(IxDyn(&[1, kvh, 0, d]))));
        }
    }
    feeds.insert(inputs::POS_INDEX.to_string(), i64s(&[1], vec![lay.pos as i64]));
    feeds.insert(inputs::ORI_INDEX.to_string(), i64s(&[1], vec![lay.ori as i64]));
    feeds.insert(inputs::GRID_INDEX.to_string(), i64s(&[t_grid], lay.grid.clone()));
    if n > 0 {
        let rows = lay.supervised.len();
        let padded = |v: Vec<i64>| v.into_iter().chain(std::iter::repeat_n(0, n - rows)).collect();
        feeds.insert(inputs::LM_POSITIONS.to_string(), i64s(&[n], padded(lay.supervised.iter().map(|(p, _)| *p).collect())));
        feeds.insert(inputs::LM_TARGETS.to_string(), i64s(&[n], padded(lay.supervised.iter().map(|(_, t)| *t).collect())));
        let mask = (0..n).map(|i| if i < rows { 1.0 } else { 0.0 }).collect();
        feeds.insert(inputs::LM_MASK.to_string(), f32s(&[n], mask));
    }
    feeds.insert(crate::graph::targets::BEV_TARGET.to_string(), f32s(&[1, t_grid, 2], sample.bev_target.clone()));
    feeds.insert(crate::graph::targets::BEV_MASK.to_string(), f32s(&[1, t_grid], sample.bev_mask.clone()));
    feeds.insert(crate::graph::targets::POS_TARGET.to_string(), f32s(&[1, 2], sample.pos_target.to_vec()));
    let (q, q_h) = orientation_target(f64::from(sample.yaw_target), k, cfg.loc3r.orientation_sigma_deg.to_radians());
    feeds.insert(crate::graph::targets::ORI_TARGET.to_string(), f32s(&[1, k], q.iter().map(|&x| x as f32).collect()));
    feeds.insert(crate::graph::targets::ORI_TARGET_NEG_ENTROPY.to_string(), f32s(&[1], vec![q_h as f32]));
    feeds.insert(crate::graph::targets::SITUATION_VALID.to_string(), f32s(&[1], vec![sample.situation_valid]));
    Ok(feeds)
}

/// Whether the checkpoint's LM head is its token embeddings (`lm_head.weight` absent).
fn lm_head_is_tied(ckpt: &Checkpoint) -> Result<bool, TrainGraphError> {
    let cfg = ckpt.config();
    let head = ckpt.weights("decoder")?.get("lm_head.weight", &[cfg.vocab_size, cfg.hidden_size])?;
    Ok(head.name != "lm_head.weight")
}

/// The LM head's weight as the decoder graph holds it (`[H, V]`; the embeddings when tied).
fn lm_head_weight(g: &GraphBuilder) -> Result<Value, TrainGraphError> {
    g.nodes()
        .iter()
        .find(|n| n.op_type == "MatMul" && n.name.starts_with("lm_head/"))
        .and_then(|n| n.inputs.get(1))
        .and_then(|name| g.value(name))
        .ok_or_else(|| TrainGraphError::Export(loc3r_export::Error::Internal("the decoder graph has no lm_head MatMul".into())))
}
