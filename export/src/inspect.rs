//! `loc3r-export inspect BUNDLE`: list graphs and I/O, re-verify every sha256, and load
//! each graph in ONNX Runtime (CPU).

use std::path::{Path, PathBuf};

use loc3r_bundle::manifest::{GraphEntry, Manifest};

use crate::bundle::sha256_of;
use crate::error::{Error, Result};

#[derive(Debug, Clone, serde::Serialize)]
pub struct InspectReport {
    pub bundle: PathBuf,
    pub format_version: u32,
    pub producer: String,
    pub precision: String,
    /// KV cache interface of `decoder.onnx` (`static` or `concat`).
    pub kv_cache: String,
    /// Weight quantization in words (`None`: float weights); the manifest has the fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
    /// Activation quantization in words (`None`: float activations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activations: Option<String>,
    pub graphs: Vec<GraphInfo>,
    pub files_checked: usize,
    /// Empty when the bundle is healthy.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GraphInfo {
    pub name: String,
    #[serde(flatten)]
    pub entry: GraphEntry,
    pub bytes: u64,
    /// Whether ONNX Runtime loaded the graph (when loading was requested).
    pub loads: Option<bool>,
}

/// Inspects a bundle; `load` also creates an ORT session per graph.
pub fn inspect(bundle: &Path, load: bool) -> Result<InspectReport> {
    let manifest = Manifest::read(bundle).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut problems = Vec::new();
    for (name, entry) in &manifest.files {
        let path = bundle.join(name);
        if !path.is_file() {
            problems.push(format!("{name}: listed in manifest.json but missing"));
            continue;
        }
        match sha256_of(&path) {
            Ok((sha, bytes)) if sha == entry.sha256 && bytes == entry.bytes => {}
            Ok((sha, bytes)) => problems.push(format!(
                "{name}: sha256 {sha} ({bytes} bytes) does not match the manifest ({} , {} bytes); the file is corrupt or was modified",
                entry.sha256, entry.bytes
            )),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if load {
        // Without ONNX Runtime no graph loads, whatever the bundle: not the bundle's fault.
        loc3r_bundle::ort_env::init().map_err(|e| Error::Runtime(e.to_string()))?;
    }
    let mut graphs = Vec::new();
    for (name, entry) in &manifest.graphs {
        let size = |f: &str| manifest.files.get(f).map_or(0, |e| e.bytes);
        let bytes = size(&entry.file) + entry.data.as_deref().map_or(0, size);
        let loads = if load {
            let path = bundle.join(&entry.file);
            match loc3r_bundle::ort_env::check_loads(&path) {
                Ok(()) => Some(true),
                Err(e) => {
                    problems.push(format!("{name}: {e}"));
                    Some(false)
                }
            }
        } else {
            None
        };
        graphs.push(GraphInfo { name: name.clone(), entry: entry.clone(), bytes, loads });
    }
    Ok(InspectReport {
        bundle: bundle.to_path_buf(),
        format_version: manifest.format_version,
        producer: manifest.producer,
        precision: manifest.precision.to_string(),
        kv_cache: manifest.runtime.llm.kv_cache.as_str().to_string(),
        quantization: manifest.quantization.as_ref().map(|q| q.to_string()),
        activations: manifest.activations.as_ref().map(|a| a.to_string()),
        graphs,
        files_checked: manifest.files.len(),
        problems,
    })
}
