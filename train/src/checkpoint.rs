//! Writing what was trained back as a checkpoint the exporter reads unchanged.
//!
//! ```text
//! base/                       out/
//!   config.json  ─────────────▶ config.json            (hard link, or a copy across devices)
//!   model*.safetensors ───────▶ model*.safetensors     (hard links: the frozen weights are not rewritten)
//!   cut3r.safetensors ────────▶ cut3r.safetensors       (rewritten when CUT3R was trained)
//!                               model-loc3r-trained.safetensors   the trained tensors, f32
//!                               model.safetensors.index.json      trained names point at the new shard
//! ```
//! The directory is assembled under a temporary name beside `out` and renamed into place, so a
//! failure (a full disk) leaves no half-written checkpoint and an earlier `out` intact until the
//! new one is complete (docs/training.md §5).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use loc3r_export::checkpoint::{write_safetensors, TensorToWrite, CUT3R_FILE, MODEL_FILE, MODEL_INDEX_FILE};
use loc3r_export::DType;

/// The shard holding the trained tensors.
pub const TRAINED_SHARD: &str = "model-loc3r-trained.safetensors";

/// Why a trained checkpoint could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error(transparent)]
    Write(#[from] loc3r_export::Error),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CheckpointError + '_ {
    move |error| CheckpointError::Io { path: path.to_path_buf(), error }
}

/// One trained tensor in the checkpoint's layout.
#[derive(Debug, Clone)]
pub struct TrainedTensor<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub values: &'a [f32],
}

/// Writes `out` = `base` with `trained` replacing (or adding) tensors of the model files.
pub fn write_trained(base: &Path, out: &Path, trained: &[TrainedTensor<'_>]) -> Result<(), CheckpointError> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let stem = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "checkpoint".into());
    let staging = parent.join(format!(".{stem}.staging-{}", std::process::id()));
    let result = assemble(base, &staging, trained).and_then(|()| replace_dir(&staging, out));
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

fn assemble(base: &Path, staging: &Path, trained: &[TrainedTensor<'_>]) -> Result<(), CheckpointError> {
    if staging.exists() {
        fs::remove_dir_all(staging).map_err(io(staging))?;
    }
    fs::create_dir_all(staging).map_err(io(staging))?;
    let mut weight_map = existing_weight_map(base)?;
    // CUT3R's tensors live in their own file, which the exporter reads by tensor name: trained
    // ones are written into a new copy of that file; the model's go to the trained shard.
    let cut3r_names = cut3r_names(base)?;
    let (cut3r_trained, trained): (Vec<&TrainedTensor<'_>>, Vec<&TrainedTensor<'_>>) = trained.iter().partition(|t| cut3r_names.contains(t.name));
    for entry in fs::read_dir(base).map_err(io(base))? {
        let entry = entry.map_err(io(base))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let from = entry.path();
        let rewritten = (name == TRAINED_SHARD && !trained.is_empty()) || (name == CUT3R_FILE && !cut3r_trained.is_empty());
        if !from.is_file() || name == MODEL_INDEX_FILE || rewritten {
            continue;
        }
        let to = staging.join(&name);
        if fs::hard_link(&from, &to).is_err() {
            fs::copy(&from, &to).map_err(io(&from))?;
        }
    }
    if !cut3r_trained.is_empty() {
        rewrite_cut3r(base, staging, &cut3r_trained)?;
    }
    if !trained.is_empty() {
        let shard = staging.join(TRAINED_SHARD);
        let specs: Vec<TensorToWrite> =
            trained.iter().map(|t| TensorToWrite { name: t.name.to_string(), dtype: DType::F32, shape: t.shape.to_vec() }).collect();
        let by_name: BTreeMap<&str, &TrainedTensor<'_>> = trained.iter().map(|t| (t.name, *t)).collect();
        let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        write_safetensors(&shard, &specs, Some(&metadata), |spec, w| {
            for v in by_name[spec.name.as_str()].values {
                w.write_all(&v.to_le_bytes())?;
            }
            Ok(())
        })?;
        for t in &trained {
            weight_map.insert(t.name.to_string(), TRAINED_SHARD.to_string());
        }
    }
    let index = serde_json::json!({ "metadata": { "trained_by": "loc3r-train" }, "weight_map": weight_map });
    let path = staging.join(MODEL_INDEX_FILE);
    fs::write(&path, serde_json::to_string_pretty(&index).expect("json") + "\n").map_err(io(&path))?;
    Ok(())
}

/// The tensor names of the base checkpoint's CUT3R file (none when it has no such file).
fn cut3r_names(base: &Path) -> Result<std::collections::BTreeSet<String>, CheckpointError> {
    let file = base.join(CUT3R_FILE);
    if !file.is_file() {
        return Ok(Default::default());
    }
    let bytes = fs::read(&file).map_err(io(&file))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| CheckpointError::Format { path: file.clone(), message: e.to_string() })?;
    Ok(st.names().into_iter().map(str::to_string).collect())
}

/// Writes `staging/cut3r.safetensors`: the base file's tensors in their order and dtypes, the
/// trained ones replaced by their f32 values.
fn rewrite_cut3r(base: &Path, staging: &Path, trained: &[&TrainedTensor<'_>]) -> Result<(), CheckpointError> {
    let file = base.join(CUT3R_FILE);
    let bytes = fs::read(&file).map_err(io(&file))?;
    let bad = |message: String| CheckpointError::Format { path: file.clone(), message };
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let by_name: BTreeMap<&str, &TrainedTensor<'_>> = trained.iter().map(|t| (t.name, *t)).collect();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let mut specs = Vec::with_capacity(names.len());
    for name in &names {
        let t = st.tensor(name).map_err(|e| bad(e.to_string()))?;
        let spec = match by_name.get(name.as_str()) {
            Some(tr) if tr.shape != t.shape() => return Err(bad(format!("`{name}` is {:?} there, {:?} trained", t.shape(), tr.shape))),
            Some(tr) => TensorToWrite { name: name.clone(), dtype: DType::F32, shape: tr.shape.to_vec() },
            None => TensorToWrite {
                name: name.clone(),
                dtype: dtype_of(t.dtype()).ok_or_else(|| bad(format!("`{name}` has an unsupported dtype {:?}", t.dtype())))?,
                shape: t.shape().to_vec(),
            },
        };
        specs.push(spec);
    }
    let out = staging.join(CUT3R_FILE);
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(&out, &specs, Some(&metadata), |spec, w| match by_name.get(spec.name.as_str()) {
        Some(t) => t.values.iter().try_for_each(|v| w.write_all(&v.to_le_bytes())),
        None => w.write_all(st.tensor(&spec.name).map_err(std::io::Error::other)?.data()),
    })?;
    Ok(())
}

fn dtype_of(d: safetensors::Dtype) -> Option<DType> {
    match d {
        safetensors::Dtype::F32 => Some(DType::F32),
        safetensors::Dtype::F16 => Some(DType::F16),
        safetensors::Dtype::BF16 => Some(DType::BF16),
        _ => None,
    }
}

/// Tensor name → file of the base checkpoint's model weights (its index, or every tensor of
/// its single `model.safetensors`).
fn existing_weight_map(base: &Path) -> Result<BTreeMap<String, String>, CheckpointError> {
    let index = base.join(MODEL_INDEX_FILE);
    if index.is_file() {
        let text = fs::read_to_string(&index).map_err(io(&index))?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| CheckpointError::Format { path: index.clone(), message: e.to_string() })?;
        let map = value
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| CheckpointError::Format { path: index.clone(), message: "no weight_map".into() })?;
        return Ok(map.iter().filter_map(|(k, v)| v.as_str().map(|f| (k.clone(), f.to_string()))).collect());
    }
    let file = base.join(MODEL_FILE);
    let bytes = fs::read(&file).map_err(io(&file))?;
    let bad = |message: &str| CheckpointError::Format { path: file.clone(), message: message.to_string() };
    let len = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize).ok_or_else(|| bad("shorter than a safetensors header"))?;
    let header = bytes.get(8..8usize.saturating_add(len)).ok_or_else(|| bad("header longer than the file"))?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(header).map_err(|e| bad(&format!("header: {e}")))?;
    Ok(header.keys().filter(|k| *k != "__metadata__").map(|k| (k.clone(), MODEL_FILE.to_string())).collect())
}

/// Moves `staging` to `out`, replacing an earlier `out` only once the new one is complete.
fn replace_dir(staging: &Path, out: &Path) -> Result<(), CheckpointError> {
    if out.exists() {
        let old = out.with_extension(format!("old-{}", std::process::id()));
        fs::rename(out, &old).map_err(io(out))?;
        fs::rename(staging, out).map_err(io(out))?;
        fs::remove_dir_all(&old).map_err(io(&old))?;
    } else {
        fs::rename(staging, out).map_err(io(out))?;
    }
    Ok(())
}
