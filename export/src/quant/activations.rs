//! INT8 activations with calibration for the encoders (docs/quantization.md §6): the
//! calibration cache `loc3r-calibrate` writes, the `--activations int8 --calibration FILE`
//! settings, and the QuantizeLinear/DequantizeLinear pair the Linear builder puts on the
//! activation input of every Linear of `siglip`, `cut3r_encoder` and `projector`:
//!
//! ```text
//! x ─QuantizeLinear(s, 0)─▶ int8 ─DequantizeLinear(s, 0)─▶ x' ─MatMul(DequantizeLinear(W' int8 [K,N], scales [N]))─▶
//! ```
//!
//! `s = threshold / 127` with the cache's threshold for the value called `x` in the float
//! graph: the builder's value names are deterministic and the pair is only added after `x`,
//! so every value upstream of a Linear keeps its float-graph name. The cache also records
//! the sha256 of each float graph it was measured on, and the export refuses a cache whose
//! graph differs from the float graph this export would write (another checkpoint, other
//! settings, another exporter).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use loc3r_bundle::{ActivationQuantization, Graph, QuantFormat, WeightBits};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::scheme::{Preset, QuantLayer, WeightQuant};
use crate::error::{Error, Result};

/// `format` of a calibration cache.
pub const CACHE_FORMAT: &str = "loc3r-calibration";
/// `format_version` of a calibration cache.
pub const CACHE_VERSION: u32 = 1;
/// The graphs whose activations can be quantized, in export order. `cut3r_step` is not one
/// of them: it carries the CUT3R state and memory from frame to frame, where a rounding error
/// would compound over the video, so it stays float.
pub const ACTIVATION_GRAPHS: [Graph; 3] = [Graph::Siglip, Graph::Projector, Graph::Cut3rEncoder];
/// The largest int8 code of a symmetric range: `scale = threshold / 127`.
pub const INT8_MAX: f64 = 127.0;

/// The weights of a Linear whose activation is quantized: int8, one scale per output channel,
/// symmetric, QDQ (TensorRT's INT8 form).
pub const W8_PER_CHANNEL: WeightQuant =
    WeightQuant { bits: WeightBits::Int8, format: QuantFormat::Qdq, block_size: None, symmetric: true, accuracy_level: None };

/// How a calibration chose each value's range from its statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The largest magnitude seen.
    MinMax,
    /// The given percentile of the magnitudes.
    Percentile,
    /// The clipping threshold whose 128-level quantization keeps the histogram of magnitudes
    /// closest in KL divergence (TensorRT's entropy calibration).
    Entropy,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::MinMax => "minmax",
            Method::Percentile => "percentile",
            Method::Entropy => "entropy",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "minmax" | "min-max" => Ok(Method::MinMax),
            "percentile" => Ok(Method::Percentile),
            "entropy" | "kl" => Ok(Method::Entropy),
            other => Err(format!("unknown calibration method `{other}`; use minmax, percentile or entropy")),
        }
    }
}

/// The calibration cache (docs/quantization.md §6.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationCache {
    /// [`CACHE_FORMAT`].
    pub format: String,
    /// [`CACHE_VERSION`].
    pub format_version: u32,
    /// `loc3r-calibrate <version>`.
    pub producer: String,
    pub method: Method,
    /// The percentile of [`Method::Percentile`] (e.g. 99.99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile: Option<f64>,
    /// Frames the statistics were gathered over.
    pub frames: usize,
    /// The float bundle's precision (`f32` or `f16`).
    pub precision: String,
    /// Per graph name.
    pub graphs: BTreeMap<String, GraphRanges>,
}

/// One graph's entry of the cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphRanges {
    /// sha256 of the float graph's `.onnx` followed by its `.onnx.data`.
    pub sha256: String,
    /// Per value name: every activation that feeds a MatMul or Gemm whose other operand is a weight.
    pub values: BTreeMap<String, ValueRange>,
}

/// The statistics of one activation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValueRange {
    /// Smallest and largest value seen.
    pub min: f64,
    pub max: f64,
    /// The symmetric range `[-threshold, threshold]` mapped to the int8 codes `[-127, 127]`.
    pub threshold: f64,
}

impl ValueRange {
    /// The quantization scale: `threshold / 127`, never 0 (an activation that was always 0
    /// quantizes exactly with any positive scale; a zero scale would divide by zero).
    pub fn scale(&self) -> f32 {
        (self.threshold.max(1e-6) / INT8_MAX) as f32
    }
}

impl CalibrationCache {
    /// Parses and checks a cache's text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<CalibrationCache> {
        let bad = |m: String| Error::format(path, format!("{m}; write the cache with loc3r-calibrate"));
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON ({e})")))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(CACHE_FORMAT) {
            return Err(bad(format!("not a calibration cache (no \"format\": \"{CACHE_FORMAT}\")")));
        }
        if value.get("format_version").and_then(|v| v.as_u64()) != Some(u64::from(CACHE_VERSION)) {
            return Err(bad(format!(
                "calibration cache version {} is not supported (expects {CACHE_VERSION})",
                value.get("format_version").unwrap_or(&serde_json::Value::Null)
            )));
        }
        let cache: CalibrationCache = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        for (graph, ranges) in &cache.graphs {
            for (name, r) in &ranges.values {
                if !(r.threshold.is_finite() && r.threshold >= 0.0 && r.min.is_finite() && r.max.is_finite() && r.min <= r.max) {
                    return Err(bad(format!("graph `{graph}`, value `{name}`: range {r:?} is not finite and ordered")));
                }
            }
        }
        Ok(cache)
    }

    /// Reads and checks the cache at `path`.
    pub fn read(path: &Path) -> Result<CalibrationCache> {
        let text = crate::files::read_input(path)?;
        CalibrationCache::parse(path, &text)
    }
}

/// The activation flags as given on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivationRequest {
    /// `fp` (none) or `int8`; `None` when not given.
    pub activations: Option<String>,
    /// `--calibration FILE`.
    pub calibration: Option<PathBuf>,
}

/// Validated activation quantization of an export.
#[derive(Debug, Clone)]
pub struct ActivationQuant {
    pub cache: Arc<CalibrationCache>,
    /// The cache file and the sha256 of its bytes (recorded in the manifest).
    pub path: PathBuf,
    pub sha256: String,
}

impl ActivationRequest {
    /// The settings, or `None` for float activations. `preset` and `also` are the weight
    /// flags (`--preset tensorrt-int8` with `--calibration` quantizes the activations too).
    pub fn resolve(&self, preset: Option<Preset>, also: &[QuantLayer]) -> Result<Option<ActivationQuant>> {
        let bad = |m: String| Err(Error::Invalid(m));
        let asked = match self.activations.as_deref() {
            None => None,
            Some("fp" | "fp32" | "float") => Some(false),
            Some("int8") => Some(true),
            Some(other) => return bad(format!("--activations {other}: use fp or int8")),
        };
        let want = match (asked, preset, &self.calibration) {
            (Some(a), _, _) => a,
            (None, Some(Preset::TensorRtInt8), Some(_)) => true,
            _ => false,
        };
        let Some(path) = self.calibration.as_ref().filter(|_| want) else {
            if want {
                return bad("--activations int8 needs the activation ranges of a calibration: export the float bundle of this checkpoint \
                    (same settings, without --activations), run `loc3r-calibrate --bundle FLOAT_BUNDLE --frames FRAMES_OR_VIDEOS --out calibration.json`, \
                    then add --calibration calibration.json"
                    .into());
            }
            if let Some(path) = &self.calibration {
                return bad(format!(
                    "--calibration {} only applies to quantized activations; add --activations int8 (or use --preset tensorrt-int8), or drop --calibration",
                    path.display()
                ));
            }
            return Ok(None);
        };
        if let Some(layer) = also.iter().find(|l| matches!(l, QuantLayer::Siglip | QuantLayer::Cut3r)) {
            return bad(format!(
                "--quantize-also {layer} with --activations int8: the encoders' weights are already int8 (QDQ, per channel) where their activations are quantized; drop {layer} from --quantize-also"
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| Error::format(path, "not UTF-8 text; write the cache with loc3r-calibrate"))?;
        let cache = CalibrationCache::parse(path, text)?;
        Ok(Some(ActivationQuant { cache: Arc::new(cache), path: path.clone(), sha256: hex::encode(Sha256::digest(&bytes)) }))
    }
}

impl ActivationQuant {
    /// The exported graphs whose activations this quantizes.
    pub fn graphs(&self, exported: &[Graph]) -> Vec<Graph> {
        ACTIVATION_GRAPHS.into_iter().filter(|g| exported.contains(g)).collect()
    }

    /// Refuses an export without any encoder graph, and a cache that lacks one of them.
    pub fn check_graphs(&self, exported: &[Graph], precision: crate::DType) -> Result<()> {
        let graphs = self.graphs(exported);
        if graphs.is_empty() {
            let names: Vec<&str> = ACTIVATION_GRAPHS.iter().map(|g| g.name()).collect();
            return Err(Error::Invalid(format!(
                "--activations int8 quantizes {}, which --graphs leaves out; add them or drop --activations",
                names.join(", ")
            )));
        }
        if let Some(missing) = graphs.iter().find(|g| !self.cache.graphs.contains_key(g.name())) {
            return Err(Error::Invalid(format!(
                "the calibration cache {} has no ranges for the `{missing}` graph; calibrate a float bundle that has it (loc3r-calibrate), or leave it out with --graphs",
                self.path.display()
            )));
        }
        if precision == crate::DType::BF16 {
            return Err(Error::Invalid("quantized activations need an fp32 or fp16 export (scales are stored in the graph's float type)".into()));
        }
        Ok(())
    }

    /// The ranges of `graph`, if this quantizes its activations.
    pub fn ranges(&self, graph: &str) -> Option<&BTreeMap<String, ValueRange>> {
        ACTIVATION_GRAPHS.iter().any(|g| g.name() == graph).then(|| self.cache.graphs.get(graph).map(|r| &r.values)).flatten()
    }

    /// Refuses the cache when the float graph this export would write has another sha256
    /// than the graph it was measured on.
    pub fn check_float_graph(&self, graph: Graph, sha256: &str) -> Result<()> {
        let recorded = self.cache.graphs.get(graph.name()).map(|r| r.sha256.as_str()).unwrap_or("");
        if recorded != sha256 {
            return Err(Error::Invalid(format!(
                "the calibration cache {} was measured on another `{graph}` graph (sha256 {}…) than the float graph this export writes ({}…): \
                 it belongs to another bundle (another checkpoint, --precision, --cut3r-size or exporter version); \
                 export the float bundle with these settings and run loc3r-calibrate on it",
                self.path.display(),
                recorded.get(..12).unwrap_or(recorded),
                sha256.get(..12).unwrap_or(sha256)
            )));
        }
        Ok(())
    }

    /// The manifest's record.
    pub fn manifest_entry(&self, graphs: &[Graph], linears: usize) -> ActivationQuantization {
        ActivationQuantization {
            activations: "int8".into(),
            weights: "int8".into(),
            format: QuantFormat::Qdq,
            method: self.cache.method.as_str().into(),
            percentile: self.cache.percentile,
            frames: self.cache.frames,
            calibration_sha256: self.sha256.clone(),
            graphs: self.graphs(graphs).iter().map(|g| g.name().to_string()).collect(),
            linears,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_text(version: u32, threshold: f64) -> String {
        format!(
            r#"{{"format": "{CACHE_FORMAT}", "format_version": {version}, "producer": "t", "method": "entropy", "frames": 8, "precision": "f32",
               "graphs": {{"siglip": {{"sha256": "ab", "values": {{"x": {{"min": -1.0, "max": 2.0, "threshold": {threshold}}}}}}}}}}}"#
        )
    }

    #[test]
    fn caches_are_checked_when_read() {
        let p = Path::new("c.json");
        let c = CalibrationCache::parse(p, &cache_text(1, 1.5)).unwrap();
        assert_eq!(c.graphs["siglip"].values["x"].scale(), (1.5 / 127.0) as f32);
        assert!(CalibrationCache::parse(p, &cache_text(2, 1.5)).unwrap_err().to_string().contains("version 2"));
        assert!(CalibrationCache::parse(p, &cache_text(1, -1.0)).unwrap_err().to_string().contains("not finite and ordered"));
        assert!(CalibrationCache::parse(p, "{}").unwrap_err().to_string().contains("not a calibration cache"));
    }

    #[test]
    fn the_flags_say_what_to_run_first() {
        let e = ActivationRequest { activations: Some("int8".into()), calibration: None }.resolve(None, &[]).unwrap_err().to_string();
        assert!(e.contains("loc3r-calibrate --bundle") && e.contains("--calibration"), "{e}");
        let e = ActivationRequest { activations: None, calibration: Some("c.json".into()) }.resolve(Some(Preset::Cpu), &[]).unwrap_err().to_string();
        assert!(e.contains("add --activations int8"), "{e}");
        let e = ActivationRequest { activations: Some("int4".into()), calibration: None }.resolve(None, &[]).unwrap_err().to_string();
        assert!(e.contains("use fp or int8"), "{e}");
        assert!(ActivationRequest::default().resolve(Some(Preset::TensorRtInt8), &[]).unwrap().is_none());
        let dir = std::env::temp_dir().join(format!("loc3r-activation-flags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.json");
        std::fs::write(&path, cache_text(1, 1.0)).unwrap();
        // The preset with a cache quantizes activations; --quantize-also of an encoder contradicts it.
        let q = ActivationRequest { activations: None, calibration: Some(path.clone()) }.resolve(Some(Preset::TensorRtInt8), &[]).unwrap().unwrap();
        assert_eq!(q.sha256.len(), 64);
        let e = ActivationRequest { activations: Some("int8".into()), calibration: Some(path) }.resolve(None, &[QuantLayer::Siglip]).unwrap_err().to_string();
        assert!(e.contains("drop siglip from --quantize-also"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
