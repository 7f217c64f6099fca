//! Compiled engines inside a bundle (written by `loc3r-export compile`, read by the runtime).
//!
//! ```text
//! <bundle>/engines/<target-key>/compiled.json      this record
//! <bundle>/engines/<target-key>/<graph>_ctx.onnx   EP-context model: the graph's I/O around one
//!                                                  node that names the engine file
//! <bundle>/engines/<target-key>/trt/<graph>-<hash>…engine   the serialized engine (+ .profile)
//! ```
//!
//! The target key names everything an engine is only valid for: the GPU architecture
//! (compute capability), the TensorRT (or TensorRT-RTX) and CUDA versions, and the ONNX
//! Runtime version (`sm90_trt10.14.1_cuda13.0_ort1.31.1`). A runtime whose machine has
//! another key refuses the directory instead of rebuilding engines on the hot path.
//!
//! Each graph's engine has one optimization profile ([`Profile`]): every dynamic input's
//! smallest, typical and largest shape. The runtime checks every call against it, since
//! TensorRT fails (or, with the engine cache, rebuilds) on shapes outside it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The directory under a bundle that holds one subdirectory per target key.
pub const ENGINES_DIR: &str = "engines";
/// The record of one compiled target directory.
pub const RECORD_FILE: &str = "compiled.json";
pub const RECORD_FORMAT: &str = "loc3r-engines";
pub const RECORD_FORMAT_VERSION: u32 = 1;
/// Engine files live in this subdirectory of the target directory. ONNX Runtime requires the
/// engine path inside an EP-context model to be relative and below the model's directory.
pub const ENGINE_SUBDIR: &str = "trt";

/// What a bundle is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineTarget {
    /// TensorRT 10 through ONNX Runtime's TensorRT execution provider, strongly typed (the
    /// fp16 comes from the graphs, not from a builder flag).
    TensorrtFp16,
    /// TensorRT for RTX through its ONNX Runtime plugin execution provider.
    TensorrtRtx,
    /// ONNX Runtime's CUDA execution provider: the graphs pre-optimized for it (no engines).
    Cuda,
}

impl EngineTarget {
    pub const ALL: [EngineTarget; 3] = [EngineTarget::TensorrtFp16, EngineTarget::TensorrtRtx, EngineTarget::Cuda];

    pub fn name(self) -> &'static str {
        match self {
            EngineTarget::TensorrtFp16 => "tensorrt-fp16",
            EngineTarget::TensorrtRtx => "tensorrt-rtx",
            EngineTarget::Cuda => "cuda",
        }
    }

    /// The file a graph's compiled model is written to in the target directory.
    pub fn model_file(self, graph: &str) -> String {
        match self {
            EngineTarget::TensorrtFp16 | EngineTarget::TensorrtRtx => format!("{graph}_ctx.onnx"),
            EngineTarget::Cuda => format!("{graph}_opt.onnx"),
        }
    }
}

impl std::str::FromStr for EngineTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EngineTarget::ALL.into_iter().find(|t| t.name() == s).ok_or_else(|| format!("unknown target `{s}`; use tensorrt-fp16, tensorrt-rtx or cuda"))
    }
}

impl fmt::Display for EngineTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The facts about a machine that decide whether an engine built on it runs on another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetFacts {
    /// CUDA compute capability, `(major, minor)`: 9.0 for H100, 8.9 for RTX 4090, 8.7 for Orin.
    pub compute_capability: (u32, u32),
    pub gpu_name: String,
    /// `x.y.z` of libnvinfer (TensorRT targets) or of TensorRT-RTX (RTX targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensorrt: Option<String>,
    /// The CUDA runtime's `x.y`.
    pub cuda: String,
    /// The ONNX Runtime library's `x.y.z`.
    pub onnxruntime: String,
    /// The driver's CUDA version `x.y` (informational: not part of the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_cuda: Option<String>,
}

impl TargetFacts {
    /// The target directory name: `sm90_trt10.14.1_cuda13.0_ort1.31.1`,
    /// `sm89_trtrtx1.2.0_cuda13.0_ort1.31.1`, `sm90_cuda13.0_ort1.31.1`.
    pub fn key(&self, target: EngineTarget) -> String {
        let (major, minor) = self.compute_capability;
        let engine = match (target, &self.tensorrt) {
            (EngineTarget::TensorrtFp16, Some(v)) => format!("_trt{v}"),
            (EngineTarget::TensorrtRtx, Some(v)) => format!("_trtrtx{v}"),
            (EngineTarget::TensorrtFp16, None) => "_trt?".to_string(),
            (EngineTarget::TensorrtRtx, None) => "_trtrtx?".to_string(),
            (EngineTarget::Cuda, _) => String::new(),
        };
        format!("sm{major}{minor}{engine}_cuda{}_ort{}", self.cuda, self.onnxruntime)
    }
}

/// One input's range in an optimization profile: the smallest, the typical (what TensorRT
/// tunes kernels for) and the largest shape, each with every dimension of the input's rank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRange {
    pub name: String,
    pub min: Vec<i64>,
    pub opt: Vec<i64>,
    pub max: Vec<i64>,
}

/// A graph's single optimization profile: one [`InputRange`] per dynamic input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub inputs: Vec<InputRange>,
}

/// Which corner of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corner {
    Min,
    Opt,
    Max,
}

impl Profile {
    /// The provider-option string for one corner: `name:d0xd1x…,name2:…` (ONNX Runtime's
    /// `trt_profile_min_shapes` syntax, also used by the TensorRT-RTX provider).
    pub fn shapes(&self, corner: Corner) -> String {
        self.inputs
            .iter()
            .map(|input| {
                let dims = match corner {
                    Corner::Min => &input.min,
                    Corner::Opt => &input.opt,
                    Corner::Max => &input.max,
                };
                let dims: Vec<String> = dims.iter().map(i64::to_string).collect();
                format!("{}:{}", input.name, dims.join("x"))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn input(&self, name: &str) -> Option<&InputRange> {
        self.inputs.iter().find(|i| i.name == name)
    }

    /// Every problem that would make ONNX Runtime discard the profile or TensorRT refuse it:
    /// names it cannot parse, repeated inputs, ranks that differ between corners, dimensions
    /// with min > opt or opt > max, negative sizes, and sizes beyond int32 (the provider
    /// parses them as int32). Empty when the profile is sound.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, input) in self.inputs.iter().enumerate() {
            let name = &input.name;
            if name.is_empty() || name.contains([',', ':']) {
                problems.push(format!("input `{name}`: a profile name must be non-empty and contain no `,` or `:`"));
            }
            if self.inputs[..i].iter().any(|other| other.name == *name) {
                problems.push(format!("input `{name}` appears twice"));
            }
            if input.min.len() != input.opt.len() || input.opt.len() != input.max.len() {
                problems.push(format!("input `{name}`: ranks differ between min {:?}, opt {:?} and max {:?}", input.min, input.opt, input.max));
                continue;
            }
            for (axis, ((&lo, &mid), &hi)) in input.min.iter().zip(&input.opt).zip(&input.max).enumerate() {
                if lo < 0 || !(lo <= mid && mid <= hi) {
                    problems.push(format!("input `{name}` dimension {axis}: needs 0 <= min <= opt <= max, got {lo}/{mid}/{hi}"));
                }
                if hi > i64::from(i32::MAX) {
                    problems.push(format!("input `{name}` dimension {axis}: max {hi} does not fit int32"));
                }
            }
        }
        problems
    }

    /// Ok if `shape` of `input` lies inside the profile (inputs without a range are static and
    /// not checked here); otherwise a sentence with the profile's bounds.
    pub fn check(&self, input: &str, shape: &[i64]) -> Result<(), String> {
        let Some(range) = self.input(input) else { return Ok(()) };
        let inside = shape.len() == range.min.len() && shape.iter().zip(&range.min).zip(&range.max).all(|((&d, &lo), &hi)| lo <= d && d <= hi);
        if inside {
            return Ok(());
        }
        Err(format!("input `{input}` has shape {} but the engine's profile covers {} to {}", dims(shape), dims(&range.min), dims(&range.max)))
    }
}

fn dims(shape: &[i64]) -> String {
    let parts: Vec<String> = shape.iter().map(i64::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// One compiled graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledGraph {
    /// The model to load, relative to the target directory (`decoder_ctx.onnx`).
    pub model: String,
    /// sha256 of the source `.onnx` followed by its `.onnx.data`: the engine was built from
    /// exactly these weights.
    pub source_sha256: String,
    pub profile: Profile,
    /// The provider options the engine was built with, in the order they were set.
    pub provider_options: Vec<(String, String)>,
    /// Every file the compile wrote for this graph (relative to the target directory) with
    /// its sha256 and size.
    pub files: BTreeMap<String, crate::manifest::FileEntry>,
    pub build_seconds: f64,
}

/// `compiled.json`: what one target directory holds and what it was built for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledRecord {
    pub format: String,
    pub format_version: u32,
    /// `loc3r-export <version>`.
    pub producer: String,
    pub target: EngineTarget,
    pub key: String,
    pub facts: TargetFacts,
    /// The profile limits the compile was asked for (frames, prefill chunk, context).
    pub limits: BTreeMap<String, i64>,
    pub graphs: BTreeMap<String, CompiledGraph>,
}

/// Why a bundle's engines cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EnginesError {
    /// No directory for this target at all.
    #[error("{} has no engines for {target} (looked for {}); compile them first: loc3r-export compile --bundle {} --target {target}, or pass --allow-build to build them at load time (minutes per graph)", bundle.display(), bundle.join(ENGINES_DIR).join(key).display(), bundle.display())]
    NotCompiled { bundle: PathBuf, target: EngineTarget, key: String },
    /// Engines exist, but for other machines.
    #[error("{} has {target} engines compiled for {}, but this machine is {key}; engines only run on the GPU architecture and TensorRT/CUDA/ONNX Runtime versions they were built with: recompile here with loc3r-export compile --bundle {} --target {target}", bundle.display(), found.join(", "), bundle.display())]
    OtherKey { bundle: PathBuf, target: EngineTarget, key: String, found: Vec<String> },
    /// A record that cannot be read, or that disagrees with its directory.
    #[error("{}: {message}; recompile with loc3r-export compile", path.display())]
    Record { path: PathBuf, message: String },
}

/// A target directory found for this machine, with its record.
#[derive(Debug, Clone)]
pub struct EngineDir {
    pub dir: PathBuf,
    pub record: CompiledRecord,
}

impl EngineDir {
    /// The path of `graph`'s compiled model.
    pub fn model_path(&self, graph: &str) -> Option<PathBuf> {
        self.record.graphs.get(graph).map(|g| self.dir.join(&g.model))
    }
}

/// Reads and checks `<dir>/compiled.json`.
pub fn read_record(dir: &Path) -> Result<CompiledRecord, EnginesError> {
    let path = dir.join(RECORD_FILE);
    let fail = |message: String| EnginesError::Record { path: path.clone(), message };
    let text = std::fs::read_to_string(&path).map_err(|e| fail(format!("cannot read it ({e}); the compile did not finish")))?;
    let record: CompiledRecord = serde_json::from_str(&text).map_err(|e| fail(format!("not a valid engine record ({e})")))?;
    if record.format != RECORD_FORMAT || record.format_version != RECORD_FORMAT_VERSION {
        return Err(fail(format!("engine record format {} v{} is not {RECORD_FORMAT} v{RECORD_FORMAT_VERSION}", record.format, record.format_version)));
    }
    let dir_name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if record.key != dir_name {
        return Err(fail(format!("it was compiled for {} but sits in a directory named {dir_name}", record.key)));
    }
    for (graph, compiled) in &record.graphs {
        let bad_path = Path::new(&compiled.model).components().any(|c| !matches!(c, std::path::Component::Normal(_)));
        if bad_path {
            return Err(fail(format!("graph {graph}: model path `{}` must be a plain relative path", compiled.model)));
        }
        let problems = compiled.profile.problems();
        if !problems.is_empty() {
            return Err(fail(format!("graph {graph}: invalid profile: {}", problems.join("; "))));
        }
    }
    Ok(record)
}

/// The target keys compiled for `target` under `<bundle>/engines/` (from their records;
/// directories being written, whose names start with `.`, are skipped).
pub fn compiled_keys(bundle: &Path, target: EngineTarget) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(bundle.join(ENGINES_DIR)) else { return Vec::new() };
    let mut keys: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| read_record(&e.path()).ok())
        .filter(|r| r.target == target)
        .map(|r| r.key)
        .collect();
    keys.sort();
    keys
}

/// The engine directory of `bundle` for `target` on a machine with target key `key`.
pub fn find(bundle: &Path, target: EngineTarget, key: &str) -> Result<EngineDir, EnginesError> {
    let dir = bundle.join(ENGINES_DIR).join(key);
    if dir.is_dir() {
        let record = read_record(&dir)?;
        if record.target != target {
            return Err(EnginesError::Record { path: dir.join(RECORD_FILE), message: format!("it holds {} engines, not {target}", record.target) });
        }
        return Ok(EngineDir { dir, record });
    }
    let found = compiled_keys(bundle, target);
    if found.is_empty() {
        Err(EnginesError::NotCompiled { bundle: bundle.to_path_buf(), target, key: key.to_string() })
    } else {
        Err(EnginesError::OtherKey { bundle: bundle.to_path_buf(), target, key: key.to_string(), found })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile {
            inputs: vec![
                InputRange { name: "inputs_embeds".into(), min: vec![1, 1, 64], opt: vec![1, 1, 64], max: vec![1, 2048, 64] },
                InputRange { name: "past_key_values.0.key".into(), min: vec![1, 2, 0, 16], opt: vec![1, 2, 7168, 16], max: vec![1, 2, 8191, 16] },
            ],
        }
    }

    #[test]
    fn shape_strings_have_every_dim_in_the_same_order_at_each_corner() {
        let p = profile();
        assert_eq!(p.shapes(Corner::Min), "inputs_embeds:1x1x64,past_key_values.0.key:1x2x0x16");
        assert_eq!(p.shapes(Corner::Opt), "inputs_embeds:1x1x64,past_key_values.0.key:1x2x7168x16");
        assert_eq!(p.shapes(Corner::Max), "inputs_embeds:1x2048x64,past_key_values.0.key:1x2x8191x16");
        assert!(p.problems().is_empty(), "{:?}", p.problems());
    }

    #[test]
    fn unsound_profiles_are_named() {
        let mut p = profile();
        p.inputs[0].opt = vec![1, 4096, 64];
        p.inputs[1].max = vec![1, 2, 1 << 40, 16];
        p.inputs.push(InputRange { name: "a:b".into(), min: vec![1], opt: vec![1, 1], max: vec![1] });
        p.inputs.push(p.inputs[0].clone());
        let problems = p.problems().join("\n");
        assert!(problems.contains("`inputs_embeds` dimension 1: needs 0 <= min <= opt <= max, got 1/4096/2048"), "{problems}");
        assert!(problems.contains("does not fit int32"), "{problems}");
        assert!(problems.contains("`a:b`: a profile name") && problems.contains("ranks differ"), "{problems}");
        assert!(problems.contains("`inputs_embeds` appears twice"), "{problems}");
    }

    #[test]
    fn shapes_outside_the_profile_are_refused_with_its_bounds() {
        let p = profile();
        assert!(p.check("inputs_embeds", &[1, 512, 64]).is_ok());
        assert!(p.check("cut3r_state", &[1, 10, 48]).is_ok(), "static inputs have no range");
        let e = p.check("inputs_embeds", &[1, 4096, 64]).unwrap_err();
        assert_eq!(e, "input `inputs_embeds` has shape [1, 4096, 64] but the engine's profile covers [1, 1, 64] to [1, 2048, 64]");
        assert!(p.check("inputs_embeds", &[1, 64]).is_err(), "another rank");
    }

    #[test]
    fn keys_name_architecture_and_versions() {
        let facts = TargetFacts {
            compute_capability: (9, 0),
            gpu_name: "NVIDIA H100".into(),
            tensorrt: Some("10.14.1".into()),
            cuda: "13.0".into(),
            onnxruntime: "1.31.1".into(),
            driver_cuda: None,
        };
        assert_eq!(facts.key(EngineTarget::TensorrtFp16), "sm90_trt10.14.1_cuda13.0_ort1.31.1");
        assert_eq!(facts.key(EngineTarget::TensorrtRtx), "sm90_trtrtx10.14.1_cuda13.0_ort1.31.1");
        assert_eq!(facts.key(EngineTarget::Cuda), "sm90_cuda13.0_ort1.31.1");
        assert_eq!("tensorrt-rtx".parse::<EngineTarget>(), Ok(EngineTarget::TensorrtRtx));
        assert!("trt".parse::<EngineTarget>().unwrap_err().contains("tensorrt-fp16"));
    }

    #[test]
    fn engines_for_another_machine_are_refused_naming_both_keys() {
        let bundle = std::env::temp_dir().join(format!("loc3r-engines-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&bundle);
        let target = EngineTarget::TensorrtFp16;
        let e = find(&bundle, target, "sm90_trt10.14.1_cuda13.0_ort1.31.1").unwrap_err();
        assert!(matches!(e, EnginesError::NotCompiled { .. }) && e.to_string().contains("loc3r-export compile"), "{e}");

        let other = "sm89_trt10.14.1_cuda13.0_ort1.31.1";
        let dir = bundle.join(ENGINES_DIR).join(other);
        std::fs::create_dir_all(&dir).unwrap();
        let facts = TargetFacts {
            compute_capability: (8, 9),
            gpu_name: "RTX 4090".into(),
            tensorrt: Some("10.14.1".into()),
            cuda: "13.0".into(),
            onnxruntime: "1.31.1".into(),
            driver_cuda: None,
        };
        let record = CompiledRecord {
            format: RECORD_FORMAT.into(),
            format_version: RECORD_FORMAT_VERSION,
            producer: "test".into(),
            target,
            key: facts.key(target),
            facts,
            limits: BTreeMap::new(),
            graphs: BTreeMap::new(),
        };
        std::fs::write(dir.join(RECORD_FILE), serde_json::to_string(&record).unwrap()).unwrap();
        // A half-written staging directory is never taken for a compiled one.
        std::fs::create_dir_all(bundle.join(ENGINES_DIR).join(".sm80_trt10.14.1_cuda13.0_ort1.31.1.partial-1")).unwrap();
        let here = "sm90_trt10.14.1_cuda13.0_ort1.31.1";
        let e = find(&bundle, target, here).unwrap_err().to_string();
        assert!(e.contains(other) && e.contains(here) && e.contains("recompile"), "{e}");
        assert!(!e.contains("sm80"), "{e}");
        let found = find(&bundle, target, other).unwrap();
        assert_eq!(found.record.key, other);
        // A record moved into a directory of another name is refused.
        let moved = bundle.join(ENGINES_DIR).join(here);
        std::fs::create_dir_all(&moved).unwrap();
        std::fs::copy(dir.join(RECORD_FILE), moved.join(RECORD_FILE)).unwrap();
        let e = find(&bundle, target, here).unwrap_err().to_string();
        assert!(e.contains("compiled for sm89") && e.contains(here), "{e}");
        std::fs::remove_dir_all(&bundle).unwrap();
    }
}
