//! The name map (`models/names.json`): which tensors every graph family needs, their
//! checkpoint names and their shapes in config symbols.
//!
//! Keeping this as data means a checkpoint with other tensor names needs a new map, not
//! new code, and `check` can validate a checkpoint without knowing any graph.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::bounds::{MAX_LAYERS, MAX_PARAMETERS, MAX_TENSORS};
use crate::config::Config;
use crate::error::{Error, Result};

/// The map shipped in `models/names.json`.
pub const BUILTIN_NAME_MAP: &str = include_str!("../../models/names.json");

/// Which checkpoint file family a tensor lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFile {
    /// `model.safetensors` or the shards listed in `model.safetensors.index.json`.
    Model,
    /// `cut3r.safetensors`.
    Cut3r,
}

#[derive(Debug, Deserialize)]
struct RawMap {
    format_version: u32,
    families: BTreeMap<String, RawFamily>,
    #[serde(default)]
    blocks: BTreeMap<String, Vec<RawEntry>>,
}

#[derive(Debug, Deserialize)]
struct RawFamily {
    file: SourceFile,
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    optional_family: bool,
    tensors: Vec<RawEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawEntry {
    Tensor {
        name: String,
        shape: Vec<DimExpr>,
        #[serde(default)]
        checkpoint: Option<String>,
        #[serde(default)]
        fallback: Option<String>,
        #[serde(default)]
        repeat: Option<Repeat>,
    },
    Block {
        block: String,
        at: String,
        #[serde(default)]
        repeat: Option<Repeat>,
        #[serde(default)]
        bind: BTreeMap<String, DimExpr>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum DimExpr {
    Int(usize),
    Expr(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Repeat {
    Count(usize),
    Symbol(String),
    Range([usize; 2]),
}

/// One tensor a graph family needs, resolved against a config.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub family: String,
    /// Name the graph builders ask for (HF / official module names).
    pub logical: String,
    /// Name in the checkpoint file.
    pub checkpoint: String,
    pub file: SourceFile,
    pub shape: Vec<usize>,
    /// Checkpoint name used when this one is absent (tied `lm_head`).
    pub fallback: Option<String>,
}

/// A graph family's resolved tensors.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub file: SourceFile,
    /// Needed only by optional graphs (e.g. CUT3R point maps).
    pub optional: bool,
    pub tensors: Vec<TensorSpec>,
}

/// The name map resolved for one config.
#[derive(Debug, Clone)]
pub struct NameMap {
    pub families: Vec<Family>,
}

impl NameMap {
    /// The built-in map resolved for `cfg`.
    pub fn builtin(cfg: &Config) -> Result<NameMap> {
        NameMap::parse(BUILTIN_NAME_MAP, "models/names.json", cfg)
    }

    pub fn from_file(path: &Path, cfg: &Config) -> Result<NameMap> {
        let text = crate::files::read_input(path)?;
        NameMap::parse(&text, &path.display().to_string(), cfg)
    }

    pub fn parse(text: &str, origin: &str, cfg: &Config) -> Result<NameMap> {
        let err = |message: String| Error::NameMap { file: origin.to_string(), message };
        let raw: RawMap = serde_json::from_str(text).map_err(|e| err(format!("invalid name map: {e}")))?;
        if raw.format_version != 1 {
            return Err(err(format!("format_version {} is not supported (expected 1)", raw.format_version)));
        }
        let symbols = symbols(cfg);
        let mut families = Vec::new();
        for (name, fam) in &raw.families {
            let mut out = Vec::new();
            let mut ctx = Expander { raw: &raw, family: name, file: fam.file, prefix: &fam.prefix, out: &mut out, depth: 0, steps: 0 };
            ctx.entries(&fam.tensors, "", &symbols).map_err(err)?;
            families.push(Family { name: name.clone(), file: fam.file, optional: fam.optional_family, tensors: out });
        }
        check_parameters(&families).map_err(err)?;
        Ok(NameMap { families })
    }

    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// Looks a logical name up in a family.
    pub fn resolve(&self, family: &str, logical: &str) -> Option<&TensorSpec> {
        self.family(family)?.tensors.iter().find(|t| t.logical == logical)
    }
}

/// Shape symbols available to the map, derived from the config.
pub fn symbols(cfg: &Config) -> BTreeMap<String, usize> {
    let v = &cfg.vision_config;
    let c = &cfg.cut3r;
    let l = &cfg.loc3r;
    let grid = cfg.vision_grid();
    [
        ("H", cfg.hidden_size),
        ("I", cfg.intermediate_size),
        ("L", cfg.num_hidden_layers),
        ("V", cfg.vocab_size),
        ("kv_dim", cfg.kv_dim()),
        ("v_hidden", v.hidden_size),
        ("v_inter", v.intermediate_size),
        ("v_layers", v.num_hidden_layers),
        ("v_patch", v.patch_size),
        ("v_patches", grid * grid),
        ("d_cam", l.camera_token_dim),
        ("cam_hidden", l.cam_projector_hidden),
        ("pos_hidden", l.pos_head_hidden),
        ("ori_hidden", l.ori_head_hidden),
        ("K", l.orientation_bins),
        ("cp", c.patch_size),
        ("ce", c.enc_embed_dim),
        ("cd", c.dec_embed_dim),
        ("cd4", c.mlp_ratio * c.dec_embed_dim),
        ("cm", 2 * c.dec_embed_dim),
        ("mlp_ratio", c.mlp_ratio),
        ("enc_depth", c.enc_depth),
        ("dec_depth", c.dec_depth),
        ("state_size", c.state_size),
        ("mem_size", c.local_mem_size),
        ("dpt0", c.dpt_layer_dims[0]),
        ("dpt1", c.dpt_layer_dims[1]),
        ("dpt2", c.dpt_layer_dims[2]),
        ("dpt3", c.dpt_layer_dims[3]),
        ("dpt_feat", c.dpt_feature_dim),
        ("dpt_last", c.dpt_last_dim),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

struct Expander<'a> {
    raw: &'a RawMap,
    family: &'a str,
    file: SourceFile,
    prefix: &'a str,
    out: &'a mut Vec<TensorSpec>,
    depth: usize,
    steps: usize,
}

impl Expander<'_> {
    /// Counts one tensor or block instance; nested repeats multiply, so the total is bounded too.
    fn step(&mut self) -> Result<(), String> {
        self.steps += 1;
        if self.steps > MAX_TENSORS {
            return Err(format!("family `{}` expands to more than {MAX_TENSORS} tensors and blocks (the bound on a name map)", self.family));
        }
        Ok(())
    }

    fn entries(&mut self, entries: &[RawEntry], at: &str, symbols: &BTreeMap<String, usize>) -> Result<(), String> {
        for entry in entries {
            match entry {
                RawEntry::Tensor { name, shape, checkpoint, fallback, repeat } => {
                    for i in indices(repeat.as_ref(), symbols)? {
                        self.step()?;
                        let local = expand_index(name, i);
                        let logical = join(at, &local);
                        let shape = shape.iter().map(|d| eval(d, symbols)).collect::<Result<Vec<_>, _>>()?;
                        let checkpoint = match checkpoint {
                            Some(c) => expand_index(c, i),
                            None => format!("{}{}", self.prefix, logical),
                        };
                        self.out.push(TensorSpec {
                            family: self.family.to_string(),
                            logical,
                            checkpoint,
                            file: self.file,
                            shape,
                            fallback: fallback.as_ref().map(|f| expand_index(f, i)),
                        });
                    }
                }
                RawEntry::Block { block, at: block_at, repeat, bind } => {
                    let body = self.raw.blocks.get(block).ok_or_else(|| format!("unknown block `{block}` in family `{}`", self.family))?;
                    if self.depth > 8 {
                        return Err(format!("blocks nest too deeply at `{block}`"));
                    }
                    let mut inner = symbols.clone();
                    for (k, v) in bind {
                        inner.insert(k.clone(), eval(v, symbols)?);
                    }
                    for i in indices(repeat.as_ref(), symbols)? {
                        self.step()?;
                        let scope = join(at, &expand_index(block_at, i));
                        self.depth += 1;
                        self.entries(body, &scope, &inner)?;
                        self.depth -= 1;
                    }
                }
            }
        }
        Ok(())
    }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}.{b}")
    }
}

fn expand_index(template: &str, i: Option<usize>) -> String {
    match i {
        Some(i) => template.replace("{i}", &i.to_string()),
        None => template.to_string(),
    }
}

/// The indices of a `repeat`, at most [`MAX_LAYERS`] of them (a repeat is a stack of layers).
fn indices(repeat: Option<&Repeat>, symbols: &BTreeMap<String, usize>) -> Result<Vec<Option<usize>>, String> {
    let (start, count) = match repeat {
        None => return Ok(vec![None]),
        Some(Repeat::Count(n)) => (0, *n),
        Some(Repeat::Symbol(s)) => (0, lookup(s, symbols)?),
        // Empty when b < a; a count past usize::MAX is over the bound anyway.
        Some(Repeat::Range([a, b])) => (*a, b.checked_sub(*a).map_or(0, |d| d.saturating_add(1))),
    };
    if count > MAX_LAYERS || start > usize::MAX - count {
        return Err(format!("a repeat of {count} exceeds the bound {MAX_LAYERS}"));
    }
    Ok((start..start + count).map(Some).collect())
}

/// Elements of all tensors together, checked against [`MAX_PARAMETERS`] without overflowing.
fn check_parameters(families: &[Family]) -> Result<(), String> {
    let mut total: usize = 0;
    for t in families.iter().flat_map(|f| &f.tensors) {
        let numel = t.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        total = match numel.and_then(|n| total.checked_add(n)) {
            Some(n) if n <= MAX_PARAMETERS => n,
            _ => return Err(format!("the tensors of the map hold more than {MAX_PARAMETERS} parameters (the bound), at `{}`", t.checkpoint)),
        };
    }
    Ok(())
}

fn lookup(symbol: &str, symbols: &BTreeMap<String, usize>) -> Result<usize, String> {
    symbols.get(symbol.trim()).copied().ok_or_else(|| format!("unknown shape symbol `{symbol}`"))
}

/// `12`, `H`, `3*C`, `mlp_ratio*C`: a product of integers and symbols.
fn eval(d: &DimExpr, symbols: &BTreeMap<String, usize>) -> Result<usize, String> {
    match d {
        DimExpr::Int(n) => Ok(*n),
        DimExpr::Expr(s) => s.split('*').try_fold(1usize, |acc, factor| {
            let factor = factor.trim();
            let v = match factor.parse::<usize>() {
                Ok(n) => n,
                Err(_) => lookup(factor, symbols)?,
            };
            acc.checked_mul(v).ok_or_else(|| format!("the dimension `{s}` overflows"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_map_resolves_the_release_shapes() {
        let cfg = Config::builtin("loc3r-vlm-7b").unwrap();
        let map = NameMap::builtin(&cfg).unwrap();
        let t = map.resolve("siglip", "encoder.layers.25.mlp.fc1.weight").unwrap();
        assert_eq!(t.checkpoint, "model.vision_tower.vision_tower.vision_model.encoder.layers.25.mlp.fc1.weight");
        assert_eq!(t.shape, vec![4304, 1152]);
        assert!(map.resolve("siglip", "encoder.layers.26.mlp.fc1.weight").is_none());
        let k = map.resolve("decoder", "model.layers.27.self_attn.k_proj.weight").unwrap();
        assert_eq!(k.shape, vec![512, 3584]);
        let lm = map.resolve("decoder", "lm_head.weight").unwrap();
        assert_eq!(lm.fallback.as_deref(), Some("model.embed_tokens.weight"));
        let qkv = map.resolve("cut3r", "pose_retriever.write_blocks.1.attn.qkv.weight").unwrap();
        assert_eq!(qkv.shape, vec![3 * 1536, 1536]);
        assert_eq!(qkv.file, SourceFile::Cut3r);
        let ct = map.resolve("cut3r_points", "dpt_cross.act_postprocess.0.1.weight").unwrap();
        assert_eq!((ct.checkpoint.as_str(), ct.shape.as_slice()), ("downstream_head.dpt_cross.act_postprocess.0.1.weight", &[96, 96, 4, 4][..]));
        assert!(map.resolve("cut3r_points", "dpt_self.scratch.refinenet4.out_conv.weight").is_some());
        assert!(map.resolve("cut3r_points", "dpt_self.scratch.refinenet0.out_conv.weight").is_none());
        let heads = map.resolve("heads", "ori_head.2.weight").unwrap();
        assert_eq!((heads.checkpoint.as_str(), heads.shape.as_slice()), ("model.loc3r.ori_head.2.weight", &[36, 3584][..]));

        // Parameter count of the LLM + vision + projector agrees with the released LLaVA-Video-7B-Qwen2 shards
        // (SigLIP there includes the unused post_layernorm: 2·1152).
        let count = |f: &str| map.family(f).unwrap().tensors.iter().map(|t| t.shape.iter().product::<usize>()).sum::<usize>();
        assert_eq!(count("embed") + count("decoder"), 7_615_616_512);
        assert_eq!(count("siglip") + 2 * 1152, 397_747_744);
        let cam = 768 * 3584 + 3584 + 3584 * 3584 + 3584;
        assert_eq!(count("projector") - cam, 16_984_576);
    }

    #[test]
    fn bad_maps_are_reported_with_the_file() {
        let cfg = Config::builtin("tiny").unwrap();
        let e = NameMap::parse(r#"{"format_version": 1, "families": {"x": {"file": "model", "tensors": [{"name": "a", "shape": ["nope"]}]}}}"#, "m.json", &cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.json") && e.contains("nope"), "{e}");
        let e = NameMap::parse(r#"{"format_version": 2, "families": {}}"#, "m.json", &cfg).unwrap_err().to_string();
        assert!(e.contains("format_version"), "{e}");
        // Hostile maps are refused before anything is sized from them.
        let e = NameMap::parse(
            r#"{"format_version": 1, "families": {"x": {"file": "model", "tensors": [{"name": "a{i}", "shape": [1], "repeat": [0, 18446744073709551615]}]}}}"#,
            "m.json",
            &cfg,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("1024"), "{e}");
        let e = NameMap::parse(
            r#"{"format_version": 1, "families": {"x": {"file": "model", "tensors": [{"name": "a", "shape": ["H*65536*65536*65536*65536"]}]}}}"#,
            "m.json",
            &cfg,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("overflows"), "{e}");
        let e = NameMap::parse(
            r#"{"format_version": 1, "families": {"x": {"file": "model", "tensors": [{"name": "a", "shape": [1048576, 1048576, 2]}]}}}"#,
            "m.json",
            &cfg,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("parameters"), "{e}");
    }
}
