//! Upper bounds on every number of `config.json` (and `--cut3r-size`), checked before
//! anything is sized from them.
//!
//! A config is untrusted input: a layer count of 10^6 would expand the name map until
//! the machine runs out of memory, 2^64-1 would overflow a capacity, and a 10^6 x 10^6
//! CUT3R input would size RoPE tables of tens of gigabytes. The bounds are generous for
//! real models (LLaVA-Video-72B, SigLIP-so400m and CUT3R-512 are far inside) and keep
//! every table the graph builders precompute small. All of them, in one place:
//!
//! | what                                   | fields                                                                 | bound          |
//! |----------------------------------------|------------------------------------------------------------------------|----------------|
//! | layers / blocks                        | `num_hidden_layers`, `vision_config.num_hidden_layers`, `cut3r.enc_depth`, `cut3r.dec_depth` | <= 1024 |
//! | widths                                 | `hidden_size`, `mm_hidden_size`, `vision_config.hidden_size`, `cut3r.enc_embed_dim`, `cut3r.dec_embed_dim`, `cut3r.dpt_*`, `loc3r.*_hidden`, `loc3r.camera_token_dim` | <= 65536 |
//! | MLP widths                             | `intermediate_size`, `vision_config.intermediate_size`                 | <= 262144      |
//! | attention heads                        | `num_attention_heads`, `num_key_value_heads`, `*num_heads`             | <= 1024 (and divide their width, checked in config.rs) |
//! | vocabulary, positions                  | `vocab_size`, `max_position_embeddings`, `tokenizer_model_max_length`  | <= 2^22        |
//! | image sides (pixels)                   | `vision_config.image_size`, `cut3r.input_size`, `loc3r.cut3r_long_side`, `--cut3r-size` | <= 8192 |
//! | patch sides (pixels)                   | `vision_config.patch_size`, `cut3r.patch_size`                         | <= 1024        |
//! | patches per image                      | (image_size / patch_size)^2, (W / patch)·(H / patch)                   | <= 16384       |
//! | token memories                         | `cut3r.state_size`, `cut3r.local_mem_size`                             | <= 65536       |
//! | small factors                          | `cut3r.mlp_ratio`, `mm_spatial_pool_stride`                            | <= 64          |
//! | orientation bins                       | `loc3r.orientation_bins`                                               | <= 4096        |
//! | frames                                 | `loc3r.num_frames`                                                     | <= 4096        |
//! | floats                                 | `rope_theta`, `rms_norm_eps`, `vision_config.layer_norm_eps`, `cut3r.norm_eps`, `loc3r.orientation_sigma_deg` | finite |
//! | name map (names.rs)                    | tensors after expansion / parameters in all families                  | <= 2^20 / <= 2^40 |
//!
//! `cut3r.input_size` must also be a multiple of `cut3r.patch_size` (config.rs checks it).

use crate::config::Config;

pub const MAX_LAYERS: usize = 1024;
pub const MAX_WIDTH: usize = 65536;
pub const MAX_MLP_WIDTH: usize = 262_144;
pub const MAX_HEADS: usize = 1024;
pub const MAX_VOCAB: usize = 1 << 22;
pub const MAX_POSITIONS: usize = 1 << 22;
pub const MAX_IMAGE_SIDE: usize = 8192;
pub const MAX_PATCH_SIDE: usize = 1024;
pub const MAX_PATCHES: usize = 16384;
pub const MAX_MEMORY_TOKENS: usize = 65536;
pub const MAX_FACTOR: usize = 64;
pub const MAX_ORIENTATION_BINS: usize = 4096;
pub const MAX_FRAMES: usize = 4096;
/// Tensors the name map may expand to (the 7B release needs ~1300).
pub const MAX_TENSORS: usize = 1 << 20;
/// Parameters of all families together (the 7B release has ~8.4·10^9 < 2^33).
pub const MAX_PARAMETERS: usize = 1 << 40;

/// Every bound a config breaks, one line each naming the field, its value and the bound.
pub fn violations(cfg: &Config) -> Vec<String> {
    let v = &cfg.vision_config;
    let c = &cfg.cut3r;
    let l = &cfg.loc3r;
    let mut out = Vec::new();
    let groups: [(&[(&str, usize)], usize); 12] = [
        (
            &[
                ("num_hidden_layers", cfg.num_hidden_layers),
                ("vision_config.num_hidden_layers", v.num_hidden_layers),
                ("cut3r.enc_depth", c.enc_depth),
                ("cut3r.dec_depth", c.dec_depth),
            ],
            MAX_LAYERS,
        ),
        (
            &[
                ("hidden_size", cfg.hidden_size),
                ("mm_hidden_size", cfg.mm_hidden_size),
                ("vision_config.hidden_size", v.hidden_size),
                ("cut3r.enc_embed_dim", c.enc_embed_dim),
                ("cut3r.dec_embed_dim", c.dec_embed_dim),
                ("cut3r.dpt_layer_dims[0]", c.dpt_layer_dims[0]),
                ("cut3r.dpt_layer_dims[1]", c.dpt_layer_dims[1]),
                ("cut3r.dpt_layer_dims[2]", c.dpt_layer_dims[2]),
                ("cut3r.dpt_layer_dims[3]", c.dpt_layer_dims[3]),
                ("cut3r.dpt_feature_dim", c.dpt_feature_dim),
                ("cut3r.dpt_last_dim", c.dpt_last_dim),
                ("loc3r.camera_token_dim", l.camera_token_dim),
                ("loc3r.cam_projector_hidden", l.cam_projector_hidden),
                ("loc3r.pos_head_hidden", l.pos_head_hidden),
                ("loc3r.ori_head_hidden", l.ori_head_hidden),
            ],
            MAX_WIDTH,
        ),
        (&[("intermediate_size", cfg.intermediate_size), ("vision_config.intermediate_size", v.intermediate_size)], MAX_MLP_WIDTH),
        (
            &[
                ("num_attention_heads", cfg.num_attention_heads),
                ("num_key_value_heads", cfg.num_key_value_heads),
                ("vision_config.num_attention_heads", v.num_attention_heads),
                ("cut3r.enc_num_heads", c.enc_num_heads),
                ("cut3r.dec_num_heads", c.dec_num_heads),
                ("cut3r.state_dec_num_heads", c.state_dec_num_heads),
            ],
            MAX_HEADS,
        ),
        (&[("vocab_size", cfg.vocab_size)], MAX_VOCAB),
        (
            &[("max_position_embeddings", cfg.max_position_embeddings), ("tokenizer_model_max_length", cfg.tokenizer_model_max_length.unwrap_or(0))],
            MAX_POSITIONS,
        ),
        (
            &[
                ("vision_config.image_size", v.image_size),
                ("cut3r.input_size[0] (width)", c.input_size[0]),
                ("cut3r.input_size[1] (height)", c.input_size[1]),
                ("loc3r.cut3r_long_side", l.cut3r_long_side),
            ],
            MAX_IMAGE_SIDE,
        ),
        (&[("vision_config.patch_size", v.patch_size), ("cut3r.patch_size", c.patch_size)], MAX_PATCH_SIDE),
        (&[("cut3r.state_size", c.state_size), ("cut3r.local_mem_size", c.local_mem_size)], MAX_MEMORY_TOKENS),
        (&[("cut3r.mlp_ratio", c.mlp_ratio), ("mm_spatial_pool_stride", cfg.mm_spatial_pool_stride)], MAX_FACTOR),
        (&[("loc3r.orientation_bins", l.orientation_bins)], MAX_ORIENTATION_BINS),
        (&[("loc3r.num_frames", l.num_frames)], MAX_FRAMES),
    ];
    for (fields, bound) in groups {
        for &(field, value) in fields {
            if value > bound {
                out.push(format!("`{field}` = {value} exceeds the bound {bound}"));
            }
        }
    }
    for (field, value) in [
        ("rope_theta", cfg.rope_theta),
        ("rms_norm_eps", cfg.rms_norm_eps),
        ("vision_config.layer_norm_eps", v.layer_norm_eps),
        ("cut3r.norm_eps", c.norm_eps),
        ("loc3r.orientation_sigma_deg", l.orientation_sigma_deg),
    ] {
        if !value.is_finite() {
            out.push(format!("`{field}` = {value} must be a finite number"));
        }
    }
    if v.patch_size > 0 && v.image_size <= MAX_IMAGE_SIDE {
        let grid = v.image_size / v.patch_size;
        if let Err(e) = patches("vision_config.image_size / vision_config.patch_size", grid, grid) {
            out.push(e);
        }
    }
    if c.patch_size > 0 && c.input_size.iter().all(|&s| s <= MAX_IMAGE_SIDE) {
        if let Err(e) = patches("cut3r.input_size / cut3r.patch_size", c.input_size[0] / c.patch_size, c.input_size[1] / c.patch_size) {
            out.push(e);
        }
    }
    out
}

/// A CUT3R input size (from `--cut3r-size` or the config) against the bounds and the patch.
pub fn check_cut3r_size(field: &str, (width, height): (usize, usize), patch: usize) -> Result<(), String> {
    for (side, value) in [("width", width), ("height", height)] {
        if value == 0 || value > MAX_IMAGE_SIDE {
            return Err(format!("{field}: the {side} {value} must be in 1..={MAX_IMAGE_SIDE}"));
        }
        if patch == 0 || value % patch != 0 {
            return Err(format!("{field}: the {side} {value} must be a multiple of cut3r.patch_size ({patch})"));
        }
    }
    patches(field, width / patch, height / patch)
}

fn patches(field: &str, cols: usize, rows: usize) -> Result<(), String> {
    match cols.checked_mul(rows) {
        Some(n) if n <= MAX_PATCHES => Ok(()),
        _ => Err(format!("{field}: {cols}x{rows} patches per image exceed the bound {MAX_PATCHES}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_configs_are_inside_every_bound() {
        for (name, _) in crate::config::BUILTIN_CONFIGS {
            let cfg = Config::builtin(name).unwrap();
            assert_eq!(violations(&cfg), Vec::<String>::new(), "{name}");
            assert!(check_cut3r_size("cut3r.input_size", (cfg.cut3r.input_size[0], cfg.cut3r.input_size[1]), cfg.cut3r.patch_size).is_ok());
        }
    }

    #[test]
    fn cut3r_sizes_name_the_bound() {
        let e = check_cut3r_size("--cut3r-size", (1_600_000, 1_600_000), 16).unwrap_err();
        assert!(e.contains("--cut3r-size") && e.contains("8192"), "{e}");
        let e = check_cut3r_size("--cut3r-size", (8192, 8192), 16).unwrap_err();
        assert!(e.contains("16384"), "{e}");
        assert!(check_cut3r_size("--cut3r-size", (512, 384), 16).is_ok());
        assert!(check_cut3r_size("--cut3r-size", (500, 384), 16).unwrap_err().contains("multiple"));
    }
}
