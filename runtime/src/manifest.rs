//! `manifest.json`: the contract between `loc3r-export` (writer) and the runtime (reader).
//!
//! It lists every graph with its I/O (name, dtype, symbolic shape), every file with its
//! sha256, and the parameters the runtime needs to drive the graphs (image sizes and
//! normalisation, pooling, prompt template, special ids, orientation bins).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const FORMAT: &str = "loc3r-bundle";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// `loc3r-export <version>`.
    pub producer: String,
    /// `f32` or `f16` (weights and activations; see each I/O's dtype for the boundary).
    pub precision: String,
    /// The checkpoint's `config.json`, verbatim.
    pub config: serde_json::Value,
    pub graphs: BTreeMap<String, GraphEntry>,
    /// Every file of the bundle except the manifest itself.
    pub files: BTreeMap<String, FileEntry>,
    pub runtime: RuntimeParams,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GraphEntry {
    pub file: String,
    /// External-data file, if the graph has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    pub inputs: Vec<IoSpec>,
    pub outputs: Vec<IoSpec>,
    pub parameters: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IoSpec {
    pub name: String,
    pub dtype: String,
    /// Integers for fixed sizes, strings for symbolic ones.
    pub shape: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RuntimeParams {
    pub frames: usize,
    pub vision: VisionParams,
    pub cut3r: Cut3rParams,
    pub llm: LlmParams,
    pub prompt: PromptParams,
    pub tokens: TokenIds,
    pub orientation: OrientationParams,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VisionParams {
    pub image_size: usize,
    pub patch_size: usize,
    /// Patches per side (27 for so400m at 384).
    pub grid: usize,
    /// `bilinear` or `average`.
    pub pooling: String,
    /// Pooled grid side (14 bilinear, 13 average).
    pub pooled_grid: usize,
    /// pooled_grid · (pooled_grid + 1): grid tokens plus one newline per row.
    pub tokens_per_frame: usize,
    /// `bicubic` (PIL) resize to image_size × image_size.
    pub resample: String,
    pub rescale: f64,
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cut3rParams {
    /// Graph input size.
    pub width: usize,
    pub height: usize,
    pub patch_size: usize,
    pub long_side: usize,
    pub mean: [f64; 3],
    pub std: [f64; 3],
    pub state_tokens: usize,
    pub memory_tokens: usize,
    /// Decoder width (= camera token width).
    pub dim: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LlmParams {
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Embedding rows (logits width).
    pub vocab_size: usize,
    pub max_positions: usize,
    /// How `decoder.onnx` takes its KV cache (bundles written before the field existed are concat).
    #[serde(default)]
    pub kv_cache: KvCacheLayout,
}

/// The KV cache interface of `decoder.onnx` (docs/bundle.md §4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvCacheLayout {
    /// `past_key_values.* [B,KVH,P,D]` in, `present.* [B,KVH,P+S,D]` out (HF optimum and
    /// onnxruntime-genai naming). Every step copies the whole cache.
    #[default]
    Concat,
    /// A read-only shared prefix `past_key_values.*`, a preallocated per-sequence buffer
    /// `cache.* [B,KVH,C,D]` masked by `attention_mask`, and only the new positions out
    /// (`present_new.* [B,KVH,S,D]`), which the caller writes into `cache`. Nothing is
    /// copied or allocated per decode step.
    Static,
}

impl KvCacheLayout {
    pub fn as_str(self) -> &'static str {
        match self {
            KvCacheLayout::Concat => "concat",
            KvCacheLayout::Static => "static",
        }
    }
}

impl std::str::FromStr for KvCacheLayout {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "concat" => Ok(KvCacheLayout::Concat),
            "static" => Ok(KvCacheLayout::Static),
            other => Err(format!(
                "unknown KV cache layout `{other}`; use `static` (preallocated, the default) or `concat` (optimum-style present = concat(past, new))"
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PromptParams {
    pub system: String,
    /// The whole prompt with `{system}` and `{user}` placeholders (ChatML).
    pub chat_template: String,
    /// User content: `{time}`, `{situation}`, `{question}`; `<image>` marks the video.
    pub user_template: String,
    pub image_placeholder: String,
    pub add_time_instruction: bool,
    /// `{video_time}`, `{num_frames}`, `{timestamps}` (each `%.2fs`, joined by `,`).
    pub time_instruction: String,
    pub default_situation: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenIds {
    pub endoftext: u32,
    pub im_start: u32,
    pub im_end: u32,
    pub pos: u32,
    pub ori: u32,
    /// Ids the tokenizer knows; logits at or beyond are padding rows.
    pub tokenizer_size: u32,
    pub stop: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OrientationParams {
    pub bins: usize,
    pub sigma_deg: f64,
}

impl Manifest {
    /// Reads `<bundle>/manifest.json`, refusing other formats and versions.
    pub fn read(bundle: &Path) -> Result<Manifest> {
        let path = bundle.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|error| Error::BundleFile { path: path.clone(), error })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Bundle(format!("{}: invalid JSON: {e}", path.display())))?;
        let format = value.get("format").and_then(|v| v.as_str()).unwrap_or("");
        let version = value.get("format_version").and_then(|v| v.as_u64());
        if format != FORMAT {
            return Err(Error::Bundle(format!("{}: not a loc3r bundle manifest (format {format:?})", path.display())));
        }
        if version != Some(FORMAT_VERSION as u64) {
            return Err(Error::Bundle(format!(
                "{}: bundle format version {} is not supported by this runtime (expects {FORMAT_VERSION}); re-export the bundle with a matching loc3r-export",
                path.display(),
                version.map_or("?".to_string(), |v| v.to_string())
            )));
        }
        serde_json::from_value(value).map_err(|e| Error::Bundle(format!("{}: {e}", path.display())))
    }

    pub fn graph(&self, name: &str) -> Result<&GraphEntry> {
        self.graphs.get(name).ok_or_else(|| Error::Bundle(format!("the bundle has no `{name}` graph; re-export with it (loc3r-export export --graphs ...)")))
    }
}
