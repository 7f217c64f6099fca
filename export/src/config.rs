//! Model configuration: `config.json` of a Loc3R-VLM checkpoint, typed and validated.
//!
//! The file is the LLaVA-Qwen2 config as released for LLaVA-Video-7B-Qwen2 (Qwen2 fields
//! at the top level, `mm_*` fields for the vision path), plus three objects LLaVA does
//! not store: `vision_config` (SigLIP), `cut3r` (docs/cut3r.md §4) and `loc3r` (camera
//! token width, heads, orientation bins, `<Pos>`/`<Ori>` ids). See `models/*/config.json`.
//!
//! Parsing rejects unknown enum values and inconsistent dimensions with an error that
//! names the field, so nothing downstream has to re-check.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The three configs shipped in `models/`, embedded so the binary works anywhere.
pub const BUILTIN_CONFIGS: &[(&str, &str)] = &[
    ("tiny", include_str!("../../models/tiny/config.json")),
    ("small", include_str!("../../models/small/config.json")),
    ("loc3r-vlm-7b", include_str!("../../models/loc3r-vlm-7b/config.json")),
];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Config {
    // Qwen2 language model (top level, HF names).
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Embedding rows (the tokenizer may have fewer ids; the rest are padding).
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub hidden_act: String,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub use_sliding_window: bool,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub tokenizer_model_max_length: Option<usize>,

    // LLaVA vision path.
    pub mm_hidden_size: usize,
    pub mm_projector_type: String,
    pub mm_spatial_pool_mode: PoolMode,
    #[serde(default = "default_pool_stride")]
    pub mm_spatial_pool_stride: usize,
    pub mm_newline_position: String,
    #[serde(default)]
    pub add_faster_video: bool,
    #[serde(default = "default_true")]
    pub add_time_instruction: bool,

    pub vision_config: VisionConfig,
    pub cut3r: Cut3rConfig,
    pub loc3r: Loc3rConfig,
}

/// Side of LLaVA's `get_2dPool` output for a `grid`×`grid` input and stride `s`: bilinear
/// `interpolate(size=ceil(g/s))` (27 -> 14 at s = 2), average `avg_pool2d(s)` floor(g/s) (27 -> 13).
pub fn pooled_side(grid: usize, mode: PoolMode, stride: usize) -> usize {
    match mode {
        PoolMode::Bilinear => grid.div_ceil(stride.max(1)),
        PoolMode::Average => grid / stride.max(1),
    }
}

fn default_pool_stride() -> usize {
    2
}
fn default_true() -> bool {
    true
}

/// Spatial pooling of the projected 2-D grid of each frame (docs/prompt.md §4).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// `interpolate(size=ceil(g/2), mode="bilinear")`, half-pixel: 27 -> 14.
    Bilinear,
    /// 2x2 mean, stride 2, floor: 27 -> 13.
    Average,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    /// Encoder layers that are run (LLaVA stores and uses 26 of SigLIP's 27).
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
}

fn default_channels() -> usize {
    3
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cut3rConfig {
    pub patch_size: usize,
    pub enc_embed_dim: usize,
    pub enc_depth: usize,
    pub enc_num_heads: usize,
    pub dec_embed_dim: usize,
    pub dec_depth: usize,
    pub dec_num_heads: usize,
    pub state_dec_num_heads: usize,
    pub state_size: usize,
    pub state_pe: String,
    pub pos_embed: String,
    pub local_mem_size: usize,
    pub mlp_ratio: usize,
    pub norm_eps: f64,
    pub head_type: String,
    pub pose_head: bool,
    pub rgb_head: bool,
    pub dpt_layer_dims: [usize; 4],
    pub dpt_feature_dim: usize,
    pub dpt_last_dim: usize,
    /// Default export input size `[width, height]`.
    pub input_size: [usize; 2],
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Loc3rConfig {
    /// Width of CUT3R's camera token (= CUT3R `dec_embed_dim`).
    pub camera_token_dim: usize,
    pub cam_projector_hidden: usize,
    pub pos_head_hidden: usize,
    pub ori_head_hidden: usize,
    /// Orientation bins K (centres at 2πk/K).
    pub orientation_bins: usize,
    /// σ of the wrapped-Gaussian orientation target, degrees.
    pub orientation_sigma_deg: f64,
    pub pos_token_id: u32,
    pub ori_token_id: u32,
    pub endoftext_token_id: u32,
    pub im_start_token_id: u32,
    pub im_end_token_id: u32,
    /// CUT3R preprocessing: long side of the resized frame.
    pub cut3r_long_side: usize,
    pub num_frames: usize,
    pub default_situation: String,
}

impl Config {
    /// Reads and validates `path` (a `config.json`).
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = crate::files::read_input(path)?;
        Config::from_json(&text, &path.display().to_string())
    }

    /// One of [`BUILTIN_CONFIGS`] by name.
    pub fn builtin(name: &str) -> Result<Config> {
        let (_, text) = BUILTIN_CONFIGS.iter().find(|(n, _)| *n == name).ok_or_else(|| Error::Config {
            file: "<builtin>".into(),
            message: format!("unknown config `{name}`; choose one of: {}", BUILTIN_CONFIGS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")),
        })?;
        Config::from_json(text, &format!("models/{name}/config.json"))
    }

    /// Parses and validates; `origin` names the source in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Config> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let cfg: Config = serde_path_to_error_free(de).map_err(|message| Error::Config { file: origin.into(), message })?;
        cfg.validate().map_err(|message| Error::Config { file: origin.into(), message })?;
        Ok(cfg)
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    pub fn kv_dim(&self) -> usize {
        self.head_dim() * self.num_key_value_heads
    }

    /// Patches per side of the SigLIP grid ("valid" conv: 384/14 -> 27).
    pub fn vision_grid(&self) -> usize {
        self.vision_config.image_size / self.vision_config.patch_size
    }

    /// Side of the pooled grid with the config's pooling mode (see [`pooled_side`]).
    pub fn pooled_grid(&self) -> usize {
        pooled_side(self.vision_grid(), self.mm_spatial_pool_mode, self.mm_spatial_pool_stride)
    }

    /// Vision tokens per frame with one newline per pooled row: 14·(14+1) = 210.
    pub fn vision_tokens_per_frame(&self) -> usize {
        let p = self.pooled_grid();
        p * (p + 1)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        // Bounds first: everything below may multiply these numbers.
        let out_of_bounds = crate::bounds::violations(self);
        match out_of_bounds.as_slice() {
            [] => {}
            [one] => return Err(one.clone()),
            many => return Err(format!("{} values out of bounds:\n{}", many.len(), crate::error::bullet_list(many))),
        }
        let positive = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("mm_hidden_size", self.mm_hidden_size),
            ("mm_spatial_pool_stride", self.mm_spatial_pool_stride),
            ("vision_config.hidden_size", self.vision_config.hidden_size),
            ("vision_config.intermediate_size", self.vision_config.intermediate_size),
            ("vision_config.num_hidden_layers", self.vision_config.num_hidden_layers),
            ("vision_config.num_attention_heads", self.vision_config.num_attention_heads),
            ("vision_config.image_size", self.vision_config.image_size),
            ("vision_config.patch_size", self.vision_config.patch_size),
            ("cut3r.patch_size", self.cut3r.patch_size),
            ("cut3r.enc_embed_dim", self.cut3r.enc_embed_dim),
            ("cut3r.enc_depth", self.cut3r.enc_depth),
            ("cut3r.enc_num_heads", self.cut3r.enc_num_heads),
            ("cut3r.dec_embed_dim", self.cut3r.dec_embed_dim),
            ("cut3r.dec_depth", self.cut3r.dec_depth),
            ("cut3r.dec_num_heads", self.cut3r.dec_num_heads),
            ("cut3r.state_dec_num_heads", self.cut3r.state_dec_num_heads),
            ("cut3r.state_size", self.cut3r.state_size),
            ("cut3r.local_mem_size", self.cut3r.local_mem_size),
            ("cut3r.mlp_ratio", self.cut3r.mlp_ratio),
            ("cut3r.dpt_feature_dim", self.cut3r.dpt_feature_dim),
            ("cut3r.dpt_last_dim", self.cut3r.dpt_last_dim),
            ("loc3r.camera_token_dim", self.loc3r.camera_token_dim),
            ("loc3r.cam_projector_hidden", self.loc3r.cam_projector_hidden),
            ("loc3r.pos_head_hidden", self.loc3r.pos_head_hidden),
            ("loc3r.ori_head_hidden", self.loc3r.ori_head_hidden),
            ("loc3r.orientation_bins", self.loc3r.orientation_bins),
            ("loc3r.cut3r_long_side", self.loc3r.cut3r_long_side),
            ("loc3r.num_frames", self.loc3r.num_frames),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(format!("`{field}` must be positive, found 0"));
            }
        }
        divides("hidden_size", self.hidden_size, "num_attention_heads", self.num_attention_heads)?;
        divides("num_attention_heads", self.num_attention_heads, "num_key_value_heads", self.num_key_value_heads)?;
        if self.head_dim() % 2 != 0 {
            return Err(format!("hidden_size / num_attention_heads = {} must be even for RoPE", self.head_dim()));
        }
        if self.hidden_act != "silu" {
            return Err(format!("`hidden_act` = {:?} is not supported (Qwen2 uses \"silu\")", self.hidden_act));
        }
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err("`rope_scaling` is not supported (LLaVA-Qwen forces it to null)".into());
        }
        if self.rope_theta.is_nan() || self.rope_theta <= 0.0 || self.rms_norm_eps.is_nan() || self.rms_norm_eps <= 0.0 {
            return Err("`rope_theta` and `rms_norm_eps` must be positive".into());
        }
        if self.mm_projector_type != "mlp2x_gelu" {
            return Err(format!("`mm_projector_type` = {:?} is not supported (expected \"mlp2x_gelu\")", self.mm_projector_type));
        }
        if self.mm_newline_position != "grid" {
            return Err(format!("`mm_newline_position` = {:?} is not supported (expected \"grid\")", self.mm_newline_position));
        }
        if self.add_faster_video {
            return Err("`add_faster_video` = true is not supported".into());
        }
        let v = &self.vision_config;
        if self.mm_hidden_size != v.hidden_size {
            return Err(format!("`mm_hidden_size` ({}) must equal `vision_config.hidden_size` ({})", self.mm_hidden_size, v.hidden_size));
        }
        divides("vision_config.hidden_size", v.hidden_size, "vision_config.num_attention_heads", v.num_attention_heads)?;
        if v.patch_size > v.image_size {
            return Err(format!("`vision_config.patch_size` ({}) exceeds `vision_config.image_size` ({})", v.patch_size, v.image_size));
        }
        if v.hidden_act != "gelu_pytorch_tanh" {
            return Err(format!("`vision_config.hidden_act` = {:?} is not supported (SigLIP uses \"gelu_pytorch_tanh\")", v.hidden_act));
        }
        if v.num_channels != 3 {
            return Err(format!("`vision_config.num_channels` = {} is not supported (RGB only)", v.num_channels));
        }
        // Average pooling gives the smaller grid; `export --pooling` may pick it over the config's mode.
        if pooled_side(self.vision_grid(), PoolMode::Average, self.mm_spatial_pool_stride) == 0 {
            return Err(format!("the vision grid ({0}x{0}) is too small for pooling with stride {1}", self.vision_grid(), self.mm_spatial_pool_stride));
        }

        let c = &self.cut3r;
        divides("cut3r.enc_embed_dim", c.enc_embed_dim, "cut3r.enc_num_heads", c.enc_num_heads)?;
        divides("cut3r.dec_embed_dim", c.dec_embed_dim, "cut3r.dec_num_heads", c.dec_num_heads)?;
        divides("cut3r.dec_embed_dim", c.dec_embed_dim, "cut3r.state_dec_num_heads", c.state_dec_num_heads)?;
        // The pose retriever works on [proj_q(g) ‖ token] = 2·dec_embed_dim with dec_num_heads heads.
        divides("2 * cut3r.dec_embed_dim", 2 * c.dec_embed_dim, "cut3r.dec_num_heads", c.dec_num_heads)?;
        for (field, dim, heads) in [
            ("cut3r.enc_embed_dim / enc_num_heads", c.enc_embed_dim, c.enc_num_heads),
            ("cut3r.dec_embed_dim / dec_num_heads", c.dec_embed_dim, c.dec_num_heads),
            ("cut3r.dec_embed_dim / state_dec_num_heads", c.dec_embed_dim, c.state_dec_num_heads),
        ] {
            if (dim / heads) % 4 != 0 {
                return Err(format!("`{field}` = {} must be a multiple of 4 for 2-D RoPE", dim / heads));
            }
        }
        if c.state_pe != "2d" {
            return Err(format!("`cut3r.state_pe` = {:?} is not supported (expected \"2d\")", c.state_pe));
        }
        if c.pos_embed != "RoPE100" {
            return Err(format!("`cut3r.pos_embed` = {:?} is not supported (expected \"RoPE100\")", c.pos_embed));
        }
        if c.head_type != "dpt" {
            return Err(format!("`cut3r.head_type` = {:?} is not supported (expected \"dpt\")", c.head_type));
        }
        if c.dec_depth < 4 && c.dec_depth != 2 {
            return Err(format!("`cut3r.dec_depth` = {} is too small for the DPT hooks (need 2 or >= 4)", c.dec_depth));
        }
        if c.dpt_layer_dims.contains(&0) {
            return Err("`cut3r.dpt_layer_dims` must be positive".into());
        }
        let [w, h] = c.input_size;
        for (field, v) in [("cut3r.input_size[0] (width)", w), ("cut3r.input_size[1] (height)", h)] {
            if v == 0 || v % c.patch_size != 0 {
                return Err(format!("`{field}` = {v} must be a positive multiple of cut3r.patch_size ({})", c.patch_size));
            }
        }

        let l = &self.loc3r;
        if l.camera_token_dim != c.dec_embed_dim {
            return Err(format!(
                "`loc3r.camera_token_dim` ({}) must equal `cut3r.dec_embed_dim` ({}): the camera token is a decoder token",
                l.camera_token_dim, c.dec_embed_dim
            ));
        }
        if l.orientation_sigma_deg.is_nan() || l.orientation_sigma_deg <= 0.0 {
            return Err("`loc3r.orientation_sigma_deg` must be positive".into());
        }
        for (field, id) in [
            ("loc3r.pos_token_id", l.pos_token_id),
            ("loc3r.ori_token_id", l.ori_token_id),
            ("loc3r.endoftext_token_id", l.endoftext_token_id),
            ("loc3r.im_start_token_id", l.im_start_token_id),
            ("loc3r.im_end_token_id", l.im_end_token_id),
        ] {
            if id as usize >= self.vocab_size {
                return Err(format!("`{field}` = {id} is outside the embedding table (vocab_size {})", self.vocab_size));
            }
        }
        if l.pos_token_id == l.ori_token_id {
            return Err("`loc3r.pos_token_id` and `loc3r.ori_token_id` must differ".into());
        }
        Ok(())
    }
}

fn divides(num_field: &str, num: usize, den_field: &str, den: usize) -> std::result::Result<(), String> {
    if den == 0 || num % den != 0 {
        return Err(format!("`{num_field}` ({num}) must be divisible by `{den_field}` ({den})"));
    }
    Ok(())
}

/// Deserializes, naming the field path (`cut3r.enc_depth`) in type errors.
fn serde_path_to_error_free<'de, T: Deserialize<'de>>(de: &mut serde_json::Deserializer<serde_json::de::StrRead<'de>>) -> std::result::Result<T, String> {
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("invalid JSON: {inner}")
            }
            _ if path == "." || path.is_empty() => inner.to_string(),
            _ => format!("field `{path}`: {inner}"),
        }
    })?;
    de.end().map_err(|e| format!("invalid JSON: {e}"))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_configs_parse_and_have_the_documented_sizes() {
        let big = Config::builtin("loc3r-vlm-7b").unwrap();
        assert_eq!((big.hidden_size, big.num_hidden_layers, big.head_dim(), big.kv_dim()), (3584, 28, 128, 512));
        assert_eq!((big.vision_grid(), big.pooled_grid(), big.vision_tokens_per_frame()), (27, 14, 210));
        assert_eq!((big.loc3r.pos_token_id, big.loc3r.ori_token_id, big.loc3r.orientation_bins), (151646, 151647, 36));
        let tiny = Config::builtin("tiny").unwrap();
        assert!(tiny.num_key_value_heads < tiny.num_attention_heads);
        assert_eq!((tiny.vision_grid(), tiny.pooled_grid(), tiny.vision_tokens_per_frame()), (5, 3, 12));
        assert_ne!(tiny.cut3r.input_size[0], tiny.cut3r.input_size[1]);
        let small = Config::builtin("small").unwrap();
        assert_eq!(small.vision_grid(), 24);
    }

    #[test]
    fn average_pooling_floors() {
        let mut c = Config::builtin("loc3r-vlm-7b").unwrap();
        c.mm_spatial_pool_mode = PoolMode::Average;
        assert_eq!((c.pooled_grid(), c.vision_tokens_per_frame()), (13, 182));
    }

    fn with(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut v: serde_json::Value = serde_json::from_str(BUILTIN_CONFIGS[0].1).unwrap();
        edit(&mut v);
        match Config::from_json(&v.to_string(), "cfg.json") {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn inconsistent_dims_name_the_field() {
        let e = with(|v| v["num_attention_heads"] = 5.into());
        assert!(e.contains("cfg.json") && e.contains("hidden_size") && e.contains("num_attention_heads"), "{e}");
        let e = with(|v| v["num_key_value_heads"] = 3.into());
        assert!(e.contains("num_key_value_heads"), "{e}");
        let e = with(|v| v["cut3r"]["state_dec_num_heads"] = 5.into());
        assert!(e.contains("cut3r.state_dec_num_heads"), "{e}");
        let e = with(|v| v["loc3r"]["camera_token_dim"] = 49.into());
        assert!(e.contains("loc3r.camera_token_dim"), "{e}");
        let e = with(|v| v["cut3r"]["input_size"] = serde_json::json!([60, 48]));
        assert!(e.contains("cut3r.input_size[0]"), "{e}");
        let e = with(|v| v["loc3r"]["pos_token_id"] = 5000.into());
        assert!(e.contains("loc3r.pos_token_id"), "{e}");
    }

    #[test]
    fn missing_fields_and_bad_types_are_named() {
        let e = with(|v| {
            v.as_object_mut().unwrap().remove("hidden_size");
        });
        assert!(e.contains("hidden_size"), "{e}");
        let e = with(|v| v["cut3r"]["enc_depth"] = "two".into());
        assert!(e.contains("cut3r.enc_depth"), "{e}");
        let e = with(|v| v["mm_spatial_pool_mode"] = "max".into());
        assert!(e.contains("max") && e.contains("bilinear"), "{e}");
        let e = match Config::from_json("{ not json", "x.json") {
            Err(e) => e.to_string(),
            Ok(_) => unreachable!(),
        };
        assert!(e.contains("x.json") && e.contains("invalid JSON"), "{e}");
    }
}
