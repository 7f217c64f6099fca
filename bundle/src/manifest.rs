//! `manifest.json`, written by `loc3r-export` and read by the runtime.
//!
//! It lists every graph with its I/O (name, dtype, symbolic shape), every file with its
//! sha256, and the parameters the runtime needs to drive the graphs (image sizes and
//! normalisation, pooling, prompt template, special ids, orientation bins).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dtype::DType;
use crate::graph::Graph;

pub const MANIFEST_FILE: &str = "manifest.json";
/// The tokenizer, copied from the checkpoint.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const FORMAT: &str = "loc3r-bundle";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// `loc3r-export <version>`.
    pub producer: String,
    /// Weights and activations (see each I/O's dtype for the boundary).
    pub precision: Precision,
    /// Weight-only quantization of linear layers (absent: every weight is in `precision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
    /// INT8 activations with calibration in the encoders (absent: float activations everywhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activations: Option<ActivationQuantization>,
    /// The checkpoint's config as the exporter understood it: the fields it knows, with
    /// defaults filled in (unknown keys of `config.json` are not copied, so a config padded
    /// with junk cannot bloat every bundle made from it).
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
    pub pooling: Pooling,
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

/// Why a manifest cannot be read or lacks what the caller needs.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// Not a manifest of this format and version, or one without a needed graph.
    #[error("{0}")]
    Invalid(String),
}

/// Weight and activation precision of the graphs (`f32` or `f16` in the manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    F16,
}

impl Precision {
    /// The element type of values "in the export precision" ([`io`](crate::io)).
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
        }
    }

    /// `None` for element types graphs are not exported in.
    pub fn from_dtype(dtype: DType) -> Option<Precision> {
        match dtype {
            DType::F32 => Some(Precision::F32),
            DType::F16 => Some(Precision::F16),
            _ => None,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.dtype().fmt(f)
    }
}

/// Weight-only quantization of a bundle's linear layers (docs/quantization.md): which
/// weights, in which integer form, and how the graphs express it. Activations stay in
/// the bundle's `precision`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantization {
    /// Integer width of the quantized weights.
    pub weights: WeightBits,
    /// How the graphs carry them.
    pub format: QuantFormat,
    /// Weights per scale along the input (K) axis; `None`: one scale per output channel.
    pub block_size: Option<usize>,
    /// `true`: scales only (zero at code 0); `false`: a zero point per block too.
    pub symmetric: bool,
    /// `com.microsoft.MatMulNBits`' `accuracy_level` (4: ONNX Runtime may quantize the
    /// activations to int8 per block and compute in integers); `None` for QDQ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_level: Option<u8>,
    /// Rounding method: `rtn` (round to nearest, no calibration data).
    pub method: String,
    /// Which linear layers: `decoder` (the LLM's q/k/v/o and gate/up/down projections),
    /// `lm_head`, `siglip` (SigLIP MLPs), `cut3r` (CUT3R MLPs).
    pub layers: Vec<String>,
    /// The graphs holding quantized weights.
    pub graphs: Vec<String>,
    /// The `--preset` that chose these settings, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
}

/// INT8 activations of the encoders (docs/quantization.md §6): a QuantizeLinear/DequantizeLinear
/// pair (int8, symmetric, one scale per tensor from a calibration cache) on the activation
/// input of every Linear of `graphs`, whose weights are int8 QDQ with one scale per output
/// channel. Everything else (norms, softmax, attention products, `cut3r_step`) stays float.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationQuantization {
    /// `int8`.
    pub activations: String,
    /// `int8` (per output channel, symmetric).
    pub weights: String,
    /// `qdq`.
    pub format: QuantFormat,
    /// How the calibration chose each range: `minmax`, `percentile` or `entropy`.
    pub method: String,
    /// The percentile of `percentile` calibration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile: Option<f64>,
    /// Frames the calibration ran over.
    pub frames: usize,
    /// sha256 of the calibration cache file.
    pub calibration_sha256: String,
    /// The graphs with quantized activations.
    pub graphs: Vec<String>,
    /// Linear layers with quantized activations, over all `graphs`.
    pub linears: usize,
}

impl fmt::Display for ActivationQuantization {
    /// `int8 activations (entropy, 24 frames), int8 qdq weights: siglip, cut3r_encoder, projector`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = match self.percentile {
            Some(p) => format!("{} {p}", self.method),
            None => self.method.clone(),
        };
        write!(f, "{} activations ({method}, {} frames), {} {} weights: {}", self.activations, self.frames, self.weights, self.format, self.graphs.join(", "))
    }
}

/// Integer width of quantized weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightBits {
    Int4,
    Int8,
}

impl WeightBits {
    pub fn bits(self) -> u32 {
        match self {
            WeightBits::Int4 => 4,
            WeightBits::Int8 => 8,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WeightBits::Int4 => "int4",
            WeightBits::Int8 => "int8",
        }
    }
}

impl fmt::Display for WeightBits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How quantized weights appear in the graphs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantFormat {
    /// ONNX Runtime's fused `com.microsoft.MatMulNBits` (CPU and CUDA execution providers).
    MatMulNBits,
    /// Standard ONNX: `DequantizeLinear` (opset 21, int8 per channel or int4 blocked) feeding
    /// a `MatMul`, the explicit-quantization form TensorRT builds INT8/INT4 layers from.
    Qdq,
}

impl QuantFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            QuantFormat::MatMulNBits => "matmulnbits",
            QuantFormat::Qdq => "qdq",
        }
    }
}

impl fmt::Display for QuantFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Quantization {
    /// `int4 rtn, block 32, symmetric, matmulnbits (accuracy_level 4): decoder, lm_head`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let blocks = match self.block_size {
            Some(b) => format!("block {b}"),
            None => "per channel".to_string(),
        };
        let zero = if self.symmetric { "symmetric" } else { "zero points" };
        write!(f, "{} {}, {blocks}, {zero}, {}", self.weights, self.method, self.format)?;
        if let Some(level) = self.accuracy_level {
            write!(f, " (accuracy_level {level})")?;
        }
        write!(f, ": {}", self.layers.join(", "))?;
        if let Some(p) = &self.preset {
            write!(f, " [preset {p}]")?;
        }
        Ok(())
    }
}

/// Spatial pooling of the vision grid inside `projector.onnx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Bilinear, half-pixel, to ⌈g/2⌉ per side (27 → 14).
    Bilinear,
    /// 2×2 mean, stride 2, floor (27 → 13).
    Average,
}

/// The KV cache interface of `decoder.onnx` ([`io::decoder`](crate::io::decoder) names its tensors).
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
    pub fn read(bundle: &Path) -> Result<Manifest, ManifestError> {
        let path = bundle.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Io { path: path.clone(), source })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| ManifestError::Invalid(format!("{}: invalid JSON: {e}", path.display())))?;
        let format = value.get("format").and_then(|v| v.as_str()).unwrap_or("");
        let version = value.get("format_version").and_then(|v| v.as_u64());
        if format != FORMAT {
            return Err(ManifestError::Invalid(format!("{}: not a loc3r bundle manifest (format {format:?})", path.display())));
        }
        if version != Some(FORMAT_VERSION as u64) {
            return Err(ManifestError::Invalid(format!(
                "{}: bundle format version {} is not supported by this runtime (expects {FORMAT_VERSION}); re-export the bundle with a matching loc3r-export",
                path.display(),
                version.map_or("?".to_string(), |v| v.to_string())
            )));
        }
        serde_json::from_value(value).map_err(|e| ManifestError::Invalid(format!("{}: {e}", path.display())))
    }

    pub fn graph(&self, graph: Graph) -> Result<&GraphEntry, ManifestError> {
        self.graphs
            .get(graph.name())
            .ok_or_else(|| ManifestError::Invalid(format!("the bundle has no `{graph}` graph; re-export with it (loc3r-export export --graphs ...)")))
    }
}

impl GraphEntry {
    /// The spec of the input called `name`.
    pub fn input(&self, name: &str) -> Option<&IoSpec> {
        self.inputs.iter().find(|io| io.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_keep_their_manifest_spellings() {
        assert_eq!(serde_json::to_string(&Precision::F16).unwrap(), "\"f16\"");
        assert_eq!(serde_json::from_str::<Precision>("\"f32\"").unwrap(), Precision::F32);
        assert_eq!(Precision::F16.to_string(), "f16");
        assert_eq!(Precision::from_dtype(DType::BF16), None);
        assert_eq!(serde_json::to_string(&Pooling::Average).unwrap(), "\"average\"");
        assert_eq!(serde_json::from_str::<Pooling>("\"bilinear\"").unwrap(), Pooling::Bilinear);
        assert_eq!(serde_json::to_string(&KvCacheLayout::Static).unwrap(), "\"static\"");
        assert_eq!("concat".parse::<KvCacheLayout>(), Ok(KvCacheLayout::Concat));
        assert!("paged".parse::<KvCacheLayout>().unwrap_err().contains("static"));
        assert_eq!(serde_json::to_string(&QuantFormat::MatMulNBits).unwrap(), "\"matmulnbits\"");
        assert_eq!(serde_json::to_string(&WeightBits::Int4).unwrap(), "\"int4\"");
    }

    #[test]
    fn a_manifest_without_quantization_reads_as_unquantized() {
        // Bundles written before the field existed have none; absent is what fp bundles write too.
        let q = Quantization {
            weights: WeightBits::Int4,
            format: QuantFormat::MatMulNBits,
            block_size: Some(32),
            symmetric: true,
            accuracy_level: Some(4),
            method: "rtn".into(),
            layers: vec!["decoder".into()],
            graphs: vec!["decoder".into()],
            preset: None,
        };
        assert_eq!(q.to_string(), "int4 rtn, block 32, symmetric, matmulnbits (accuracy_level 4): decoder");
        #[derive(Deserialize)]
        struct Probe {
            #[serde(default)]
            quantization: Option<Quantization>,
        }
        assert!(serde_json::from_str::<Probe>("{}").unwrap().quantization.is_none());
        let json = serde_json::to_value(&q).unwrap();
        assert_eq!(serde_json::from_value::<Quantization>(json).unwrap(), q);
    }

    #[test]
    fn other_formats_and_versions_are_refused() {
        let dir = std::env::temp_dir().join(format!("loc3r-bundle-manifest-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = Manifest::read(&dir.join("absent")).unwrap_err();
        assert!(matches!(missing, ManifestError::Io { .. }), "{missing}");
        std::fs::write(dir.join(MANIFEST_FILE), r#"{"format": "other", "format_version": 1}"#).unwrap();
        assert!(Manifest::read(&dir).unwrap_err().to_string().contains("not a loc3r bundle manifest"));
        std::fs::write(dir.join(MANIFEST_FILE), format!(r#"{{"format": "{FORMAT}", "format_version": 99}}"#)).unwrap();
        assert!(Manifest::read(&dir).unwrap_err().to_string().contains("re-export the bundle"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
