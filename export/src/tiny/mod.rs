//! `make-tiny`: complete random checkpoints (docs/bundle.md §6) for tests and benchmarks.
//!
//! Every tensor the name map lists is written with the release names and shapes for the
//! chosen config, plus tensors a real checkpoint carries that the exporter must ignore
//! (SigLIP's `post_layernorm`). Values are random but well scaled, and depend only on
//! the seed and the tensor's name, so the same seed gives the same bytes. With
//! `without_loc3r` it writes the LLaVA-Video layout instead, the input of `loc3r-train init`.

pub mod tokenizer;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::checkpoint::{write_safetensors, TensorToWrite, CONFIG_FILE, CUT3R_FILE, MODEL_FILE, MODEL_INDEX_FILE, TOKENIZER_FILE};
use crate::config::{Config, BUILTIN_CONFIGS};
use crate::error::{Error, Result};
use crate::names::{NameMap, SourceFile};
use crate::tensor::DType;

/// What to generate.
#[derive(Debug, Clone)]
pub struct TinyOptions {
    /// A built-in config name (`tiny`, `small`) or the path of a config.json.
    pub config: String,
    pub seed: u64,
    /// Number of model shards (1 = a single `model.safetensors`).
    pub shards: usize,
    pub dtype: DType,
    /// Omit `lm_head.weight` (the exporter must tie it to the embeddings).
    pub tied_lm_head: bool,
    /// Qwen2 tokenizer for configs with the real vocabulary (default: models/qwen2/tokenizer.json).
    pub qwen2_tokenizer: Option<PathBuf>,
    /// Text to learn the small tokenizer's merges from (default: an embedded English corpus).
    pub tokenizer_corpus: Option<PathBuf>,
    /// Write a LLaVA-Video layout checkpoint without the Loc3R additions (the input of
    /// `loc3r-train init`): no `model.loc3r.*` tensors, no `loc3r` section in config.json,
    /// no `<Pos>`/`<Ori>` in the tokenizer and no `cut3r.safetensors` in the directory (the
    /// CUT3R weights are a separate release; see `cut3r_out`).
    pub without_loc3r: bool,
    /// With `without_loc3r`: also write the CUT3R weights to this file (outside the checkpoint
    /// directory, replaced if it exists). Without `without_loc3r` they are always written to
    /// `cut3r.safetensors` inside the checkpoint and this must be unset.
    pub cut3r_out: Option<PathBuf>,
}

impl Default for TinyOptions {
    fn default() -> Self {
        TinyOptions {
            config: "tiny".into(),
            seed: 0,
            shards: 1,
            dtype: DType::F32,
            tied_lm_head: false,
            qwen2_tokenizer: None,
            tokenizer_corpus: None,
            without_loc3r: false,
            cut3r_out: None,
        }
    }
}

/// Summary of what was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TinyReport {
    pub dir: PathBuf,
    pub config: String,
    pub files: Vec<String>,
    pub tensors: usize,
    pub parameters: usize,
    pub bytes: u64,
}

/// Where the repository keeps the real Qwen2 tokenizer.
pub fn default_qwen2_tokenizer() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/qwen2/tokenizer.json")
}

/// The text of `--config` and its name for errors: a built-in name, or the path of a config.json
/// (any file name ending in `.json`, or an existing file), so tests can try configs beyond the built-ins.
fn config_source(config: &str) -> Result<(String, String)> {
    if let Some((_, text)) = BUILTIN_CONFIGS.iter().find(|(n, _)| *n == config) {
        return Ok((text.to_string(), format!("models/{config}/config.json")));
    }
    let path = Path::new(config);
    if config.ends_with(".json") || path.is_file() {
        let text = crate::files::read_input(path)?;
        return Ok((text, path.display().to_string()));
    }
    Err(Error::Invalid(format!("unknown config `{config}`; make-tiny supports: tiny, small, or the path of a config.json")))
}

/// Writes a checkpoint into `out` (which must not exist or be empty). The directory is
/// assembled under a temporary name beside `out` and renamed at the end, so a failure
/// leaves nothing behind. `progress` is called with (done, total) tensor counts.
pub fn make_tiny(out: &Path, opts: &TinyOptions, mut progress: impl FnMut(usize, usize)) -> Result<TinyReport> {
    let (config_text, origin) = config_source(&opts.config)?;
    if opts.config == "loc3r-vlm-7b" {
        return Err(Error::Invalid("make-tiny does not generate the release-size 7B model (16 GB); use --config tiny or small".into()));
    }
    if opts.shards == 0 {
        return Err(Error::Invalid("--shards must be at least 1".into()));
    }
    if !opts.dtype.is_float() {
        return Err(Error::Invalid(format!("--dtype {} is not a float type; use f32, f16 or bf16", opts.dtype)));
    }
    if opts.cut3r_out.is_some() && !opts.without_loc3r {
        return Err(Error::Invalid("--cut3r-out goes with --without-loc3r (a complete checkpoint holds cut3r.safetensors itself)".into()));
    }
    let cfg = Config::from_json(&config_text, &origin)?;
    let names = NameMap::builtin(&cfg)?;
    if out.exists() && std::fs::read_dir(out).map_err(|e| Error::write(out, e))?.next().is_some() {
        return Err(Error::Invalid(format!("{}: already exists and is not empty; choose another --out or remove it", out.display())));
    }
    let tokenizer = if cfg.vocab_size > 100_000 {
        let path = opts.qwen2_tokenizer.clone().unwrap_or_else(default_qwen2_tokenizer);
        crate::files::read_input(&path)?
    } else if let Some(path) = &opts.tokenizer_corpus {
        let corpus = crate::files::read_input(path)?;
        if corpus.trim().is_empty() {
            return Err(Error::Invalid(format!("{}: the tokenizer corpus is empty; give a text file with the language to cover", path.display())));
        }
        tokenizer::tokenizer_json_from_corpus(&cfg, &corpus)?
    } else {
        tokenizer::tiny_tokenizer_json(&cfg)?
    };
    let (config_text, tokenizer) =
        if opts.without_loc3r { (without_loc3r_config(&config_text, &origin)?, without_loc3r_tokens(&tokenizer)?) } else { (config_text, tokenizer) };

    // Collect (file, name, shape) for everything we write.
    let mut model: Vec<TensorToWrite> = Vec::new();
    let mut cut3r: Vec<TensorToWrite> = Vec::new();
    for family in &names.families {
        for spec in &family.tensors {
            if opts.tied_lm_head && spec.fallback.is_some() {
                continue;
            }
            if opts.without_loc3r && is_loc3r_addition(&spec.checkpoint) {
                continue;
            }
            let t = TensorToWrite { name: spec.checkpoint.clone(), dtype: opts.dtype, shape: spec.shape.clone() };
            match spec.file {
                SourceFile::Model => model.push(t),
                SourceFile::Cut3r => cut3r.push(t),
            }
        }
    }
    // Present in real checkpoints, never used: the exporter must not apply it.
    for part in ["weight", "bias"] {
        model.push(TensorToWrite {
            name: format!("model.vision_tower.vision_tower.vision_model.post_layernorm.{part}"),
            dtype: opts.dtype,
            shape: vec![cfg.vision_config.hidden_size],
        });
    }
    // The official DPT rgb head is part of a CUT3R checkpoint too; we write it like the others.
    let rgb: Vec<TensorToWrite> = cut3r
        .iter()
        .filter(|t| t.name.starts_with("downstream_head.dpt_self."))
        .map(|t| {
            let mut shape = t.shape.clone();
            if t.name.contains(".head.4.") {
                shape[0] = 3;
            }
            TensorToWrite { name: t.name.replace("dpt_self", "dpt_rgb"), dtype: t.dtype, shape }
        })
        .collect();
    cut3r.extend(rgb);
    model.sort_by(|a, b| a.name.cmp(&b.name));
    cut3r.sort_by(|a, b| a.name.cmp(&b.name));
    if opts.without_loc3r && opts.cut3r_out.is_none() {
        cut3r.clear(); // not written at all
    }

    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::write(parent, e))?;
    let staging = tempdir_in(parent, out)?;
    let result = (|| {
        let total = model.len() + cut3r.len();
        let mut done = 0usize;
        let seed = opts.seed;
        let mut fill = |t: &TensorToWrite, w: &mut dyn Write| -> std::io::Result<()> {
            let values = init_values(&t.name, &t.shape, seed);
            crate::tensor::write_f32s_as(&values, t.dtype, w)?;
            done += 1;
            progress(done, total);
            Ok(())
        };
        let mut files = vec![CONFIG_FILE.to_string(), TOKENIZER_FILE.to_string()];
        let meta: BTreeMap<String, String> = [
            ("format".to_string(), "pt".to_string()),
            ("generator".to_string(), format!("loc3r-export make-tiny --config {} --seed {}", opts.config, opts.seed)),
        ]
        .into_iter()
        .collect();
        if opts.shards == 1 {
            write_safetensors(&staging.join(MODEL_FILE), &model, Some(&meta), &mut fill)?;
            files.push(MODEL_FILE.into());
        } else {
            let groups = split_by_bytes(&model, opts.shards);
            let mut weight_map = BTreeMap::new();
            for (i, group) in groups.iter().enumerate() {
                let name = format!("model-{:05}-of-{:05}.safetensors", i + 1, opts.shards);
                write_safetensors(&staging.join(&name), group, Some(&meta), &mut fill)?;
                for t in group {
                    weight_map.insert(t.name.clone(), name.clone());
                }
                files.push(name);
            }
            let total_size: usize = model.iter().map(|t| t.shape.iter().product::<usize>() * t.dtype.size()).sum();
            let index = serde_json::json!({"metadata": {"total_size": total_size}, "weight_map": weight_map});
            write_file(&staging.join(MODEL_INDEX_FILE), &(serde_json::to_string_pretty(&index).expect("json") + "\n"))?;
            files.push(MODEL_INDEX_FILE.into());
        }
        // Complete checkpoints hold the CUT3R weights; LLaVA layouts keep them outside (or not at all).
        if !opts.without_loc3r {
            write_safetensors(&staging.join(CUT3R_FILE), &cut3r, Some(&meta), &mut fill)?;
            files.push(CUT3R_FILE.into());
        } else if opts.cut3r_out.is_some() {
            write_safetensors(&staging.join(SEPARATE_CUT3R), &cut3r, Some(&meta), &mut fill)?;
        }
        write_file(&staging.join(CONFIG_FILE), &config_text)?;
        write_file(&staging.join(TOKENIZER_FILE), &tokenizer)?;
        Ok::<_, Error>(files)
    })();
    let files = match result {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if let Some(path) = opts.cut3r_out.as_deref().filter(|_| opts.without_loc3r) {
        if let Err(e) = std::fs::rename(staging.join(SEPARATE_CUT3R), path) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(Error::write(path, e));
        }
    }
    if out.exists() {
        std::fs::remove_dir(out).map_err(|e| Error::write(out, e))?;
    }
    std::fs::rename(&staging, out).map_err(|e| Error::write(out, e))?;
    let all = model.iter().chain(cut3r.iter());
    let parameters = all.clone().map(|t| t.shape.iter().product::<usize>()).sum();
    let bytes = files.iter().filter_map(|f| std::fs::metadata(out.join(f)).ok()).map(|m| m.len()).sum();
    Ok(TinyReport { dir: out.to_path_buf(), config: opts.config.clone(), files, tensors: all.count(), parameters, bytes })
}

/// Staging name of the CUT3R weights that `cut3r_out` moves out of the checkpoint directory.
const SEPARATE_CUT3R: &str = ".cut3r-separate.safetensors";

/// Whether a model tensor is one Loc3R adds to LLaVA-Video (camera projector and heads).
pub fn is_loc3r_addition(checkpoint_name: &str) -> bool {
    checkpoint_name.starts_with("model.loc3r.")
}

/// config.json as LLaVA-Video has it: the `loc3r` section removed.
fn without_loc3r_config(text: &str, origin: &str) -> Result<String> {
    let mut value: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::Config { file: origin.into(), message: format!("invalid JSON: {e}") })?;
    if let Some(map) = value.as_object_mut() {
        map.remove("loc3r");
    }
    Ok(serde_json::to_string_pretty(&value).expect("json") + "\n")
}

/// tokenizer.json without the `<Pos>`/`<Ori>` added tokens (their ids become padding rows).
fn without_loc3r_tokens(text: &str) -> Result<String> {
    let mut value: serde_json::Value = serde_json::from_str(text).map_err(|e| Error::Invalid(format!("tokenizer.json: invalid JSON: {e}")))?;
    if let Some(added) = value.get_mut("added_tokens").and_then(|a| a.as_array_mut()) {
        added.retain(|t| !matches!(t.get("content").and_then(|c| c.as_str()), Some("<Pos>" | "<Ori>")));
    }
    Ok(serde_json::to_string_pretty(&value).expect("json") + "\n")
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::write(path, e))
}

/// A fresh, uniquely named staging directory next to `out`.
fn tempdir_in(parent: &Path, out: &Path) -> Result<PathBuf> {
    let stem = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "checkpoint".into());
    for attempt in 0..1000u32 {
        let p = parent.join(format!(".{stem}.partial-{}-{attempt}", std::process::id()));
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::write(&p, e)),
        }
    }
    Err(Error::write(
        parent,
        std::io::Error::new(std::io::ErrorKind::AlreadyExists, "1000 staging directory names are taken; remove stale .partial directories"),
    ))
}

/// Contiguous groups of roughly equal byte size (every group non-empty if possible).
fn split_by_bytes(tensors: &[TensorToWrite], k: usize) -> Vec<Vec<TensorToWrite>> {
    let size = |t: &TensorToWrite| t.shape.iter().product::<usize>() * t.dtype.size();
    let total: usize = tensors.iter().map(size).sum();
    let mut groups: Vec<Vec<TensorToWrite>> = vec![Vec::new(); k];
    let (mut g, mut acc) = (0usize, 0usize);
    for (i, t) in tensors.iter().enumerate() {
        let left = tensors.len() - i;
        let share_full = acc >= (g + 1) * total / k;
        // Move on when this group has its share, or when every later group needs one of the tensors left.
        if !groups[g].is_empty() && g + 1 < k && (share_full || left < k - g) {
            g += 1;
        }
        groups[g].push(t.clone());
        acc += size(t);
    }
    groups.retain(|g| !g.is_empty());
    groups
}

/// Deterministic values for one tensor, scaled by its role.
pub fn init_values(name: &str, shape: &[usize], seed: u64) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let mut rng = SplitMix64::new(seed ^ fnv1a(name.as_bytes()));
    let last = name.rsplit('.').next().unwrap_or(name);
    let is_embedding = ["embed_tokens", "position_embedding", "register_tokens", "pose_token", "masked_token", "pose_retriever.mem", "image_newline"]
        .iter()
        .any(|k| name.contains(k));
    let (mean, std) = if is_embedding {
        (0.0, 0.5)
    } else if shape.len() == 1 && last == "weight" {
        // Norm gains: around 1 but not all ones, so a missing gain shows up in parity.
        (1.0, 0.1)
    } else if shape.len() == 1 {
        (0.0, 0.02)
    } else {
        let fan_in: usize = shape[1..].iter().product();
        (0.0, 1.0 / (fan_in.max(1) as f64).sqrt())
    };
    (0..n).map(|_| (mean + std * rng.normal()) as f32).collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3))
}

/// SplitMix64: tiny, fast, and stable across platforms and crate versions.
struct SplitMix64 {
    state: u64,
    spare: Option<f64>,
}

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64 { state: seed, spare: None }
    }
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller, both values used).
    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let (u1, u2) = (self.uniform(), self.uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some(r * theta.sin());
        r * theta.cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_depend_on_seed_and_name_only() {
        let a = init_values("model.layers.0.mlp.up_proj.weight", &[4, 8], 1);
        assert_eq!(a, init_values("model.layers.0.mlp.up_proj.weight", &[4, 8], 1));
        assert_ne!(a, init_values("model.layers.0.mlp.up_proj.weight", &[4, 8], 2));
        assert_ne!(a, init_values("model.layers.1.mlp.up_proj.weight", &[4, 8], 1));
        let gain = init_values("model.norm.weight", &[64], 1);
        assert!(gain.iter().all(|v| (0.5..1.5).contains(v)) && gain.iter().any(|v| (v - 1.0).abs() > 0.01));
    }

    #[test]
    fn shard_split_is_balanced_and_complete() {
        let ts: Vec<TensorToWrite> = (0..10).map(|i| TensorToWrite { name: format!("t{i}"), dtype: DType::F32, shape: vec![100 + i] }).collect();
        for k in 1..=10 {
            let groups = split_by_bytes(&ts, k);
            assert_eq!(groups.len(), k, "k={k}");
            assert_eq!(groups.iter().map(|g| g.len()).sum::<usize>(), 10);
        }
    }
}
