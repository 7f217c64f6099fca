//! Reading a checkpoint directory (docs/bundle.md §6) with full validation.
//!
//! [`Checkpoint::open`] memory-maps every file (nothing is loaded into RAM), resolves
//! shards through `model.safetensors.index.json`, then checks every tensor the name map
//! requires for presence, shape and dtype, and reports *all* problems at once. Graph
//! builders then read tensors through a [`Weights`] view.

mod safetensors;
mod weights;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use safetensors::{write_safetensors, SafetensorsFile, TensorInfo, TensorRef, TensorToWrite};
pub use weights::Weights;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::names::{NameMap, SourceFile, TensorSpec};
use crate::tensor::DType;

pub const CONFIG_FILE: &str = "config.json";
pub const MODEL_FILE: &str = "model.safetensors";
pub const MODEL_INDEX_FILE: &str = "model.safetensors.index.json";
pub const CUT3R_FILE: &str = "cut3r.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Which graph families must be complete.
#[derive(Debug, Clone, Copy, Default)]
pub struct Requirements {
    /// Also require the CUT3R point-map heads (`cut3r_points`).
    pub cut3r_points: bool,
}

/// An opened, validated checkpoint. Cheap to clone.
#[derive(Clone)]
pub struct Checkpoint {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    config: Config,
    names: NameMap,
    /// Checkpoint tensor name -> file holding it (model files).
    model: BTreeMap<String, Arc<SafetensorsFile>>,
    cut3r: Option<Arc<SafetensorsFile>>,
}

/// Per-family totals for `check`'s summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FamilySummary {
    pub family: String,
    pub tensors: usize,
    pub parameters: usize,
    pub bytes: usize,
    pub dtypes: Vec<String>,
}

impl Checkpoint {
    /// Opens `dir` with the built-in name map (or `names`), validating everything the
    /// non-optional graph families need. All problems are reported in one error.
    pub fn open(dir: &Path, names: Option<&Path>, req: Requirements) -> Result<Checkpoint> {
        let config_path = dir.join(CONFIG_FILE);
        if !dir.is_dir() {
            return Err(Error::Invalid(format!("{}: checkpoint directory not found", dir.display())));
        }
        // Present but not a regular file (a FIFO, /dev/zero) is refused by Config::from_file.
        if !config_path.exists() {
            return Err(Error::Invalid(format!("{}: missing; a checkpoint directory needs config.json", config_path.display())));
        }
        let config = Config::from_file(&config_path)?;
        let names = match names {
            Some(p) => NameMap::from_file(p, &config)?,
            None => NameMap::builtin(&config)?,
        };
        let mut problems = Vec::new();
        let (model, broken_shards) = open_model_files(dir, &mut problems);
        // Without any readable model file, per-tensor "missing" reports would only repeat that.
        let model_unreadable = model.is_empty() && !problems.is_empty();
        let cut3r = match SafetensorsFile::open(&dir.join(CUT3R_FILE)) {
            Ok(f) => Some(f),
            Err(Error::Io { path, error }) if error.kind() == std::io::ErrorKind::NotFound => {
                problems.push(format!("{}: missing (CUT3R weights with the official names)", path.display()));
                None
            }
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        };
        let inner = Inner { dir: dir.to_path_buf(), config, names, model, cut3r };
        for family in &inner.names.families {
            if family.optional && !(family.name == "cut3r_points" && req.cut3r_points) {
                continue;
            }
            for spec in &family.tensors {
                if spec.file == SourceFile::Model && (model_unreadable || broken_shards.contains(&spec.checkpoint)) {
                    continue; // already reported with its shard
                }
                if spec.file == SourceFile::Cut3r && inner.cut3r.is_none() {
                    continue; // already reported: no cut3r.safetensors
                }
                if let Err(e) = inner.lookup(spec) {
                    problems.push(e.to_string());
                }
            }
        }
        check_tokenizer(dir, &inner.config, &mut problems);
        if !problems.is_empty() {
            return Err(Error::Checkpoint { dir: dir.to_path_buf(), problems });
        }
        Ok(Checkpoint { inner: Arc::new(inner) })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn names(&self) -> &NameMap {
        &self.inner.names
    }

    /// A view on one graph family, at its root scope.
    pub fn weights(&self, family: &str) -> Result<Weights> {
        if self.inner.names.family(family).is_none() {
            return Err(Error::Invalid(format!("graph family `{family}` is not in the name map")));
        }
        Ok(Weights::new(self.clone(), family))
    }

    /// Resolves a spec to its tensor (with fallback), checking shape and dtype.
    pub fn tensor(&self, spec: &TensorSpec) -> Result<TensorRef> {
        self.inner.lookup(spec)
    }

    /// Totals per family (present tensors only).
    pub fn summary(&self) -> Vec<FamilySummary> {
        self.inner
            .names
            .families
            .iter()
            .filter_map(|family| {
                let refs: Vec<TensorRef> = family.tensors.iter().filter_map(|s| self.inner.lookup(s).ok()).collect();
                if refs.is_empty() {
                    return None;
                }
                let dtypes: BTreeSet<String> = refs.iter().map(|r| r.dtype.to_string()).collect();
                Some(FamilySummary {
                    family: family.name.clone(),
                    tensors: refs.len(),
                    parameters: refs.iter().map(crate::tensor::TensorData::numel).sum(),
                    bytes: refs.iter().map(|r| r.raw_bytes().len()).sum(),
                    dtypes: dtypes.into_iter().collect(),
                })
            })
            .collect()
    }
}

impl Inner {
    fn file_for(&self, spec: &TensorSpec, name: &str) -> Option<&Arc<SafetensorsFile>> {
        match spec.file {
            SourceFile::Model => self.model.get(name),
            SourceFile::Cut3r => self.cut3r.as_ref().filter(|f| f.tensors.contains_key(name)),
        }
    }

    fn lookup(&self, spec: &TensorSpec) -> Result<TensorRef> {
        let found = self
            .file_for(spec, &spec.checkpoint)
            .map(|f| (f, spec.checkpoint.as_str()))
            .or_else(|| spec.fallback.as_deref().and_then(|fb| self.file_for(spec, fb).map(|f| (f, fb))));
        let Some((file, name)) = found else {
            let in_file = match spec.file {
                SourceFile::Model => "the model safetensors",
                SourceFile::Cut3r => CUT3R_FILE,
            };
            return Err(Error::MissingTensor { mapped: spec.checkpoint.clone(), file: in_file.to_string(), family: spec.family.clone() });
        };
        let t = TensorRef::new(file, name).expect("present by construction")?;
        if crate::tensor::TensorData::shape(&t) != spec.shape.as_slice() {
            return Err(Error::Shape {
                mapped: name.to_string(),
                file: file.file_name(),
                expected: spec.shape.clone(),
                found: crate::tensor::TensorData::shape(&t).to_vec(),
            });
        }
        Ok(t)
    }
}

/// Opens `model.safetensors` or the shards of the index. Returns the name -> file map and
/// the tensor names that live in shards that could not be opened.
fn open_model_files(dir: &Path, problems: &mut Vec<String>) -> (BTreeMap<String, Arc<SafetensorsFile>>, BTreeSet<String>) {
    let mut map = BTreeMap::new();
    let mut broken = BTreeSet::new();
    let index_path = dir.join(MODEL_INDEX_FILE);
    if index_path.exists() {
        let index = match read_index(&index_path) {
            Ok(i) => i,
            Err(e) => {
                problems.push(e.to_string());
                return (map, broken);
            }
        };
        let mut by_file: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (tensor, file) in &index {
            by_file.entry(file.as_str()).or_default().push(tensor.as_str());
        }
        for (file, tensors) in by_file {
            let path = dir.join(file);
            if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                problems.push(format!("{}: shard name `{file}` must be a plain file name in the checkpoint directory", index_path.display()));
                broken.extend(tensors.iter().map(|t| t.to_string()));
                continue;
            }
            match SafetensorsFile::open(&path) {
                Ok(f) => {
                    for t in tensors {
                        if f.tensors.contains_key(t) {
                            map.insert(t.to_string(), f.clone());
                        } else {
                            problems.push(format!("{}: lists `{t}` in {file}, but that shard does not contain it", index_path.display()));
                            broken.insert(t.to_string());
                        }
                    }
                }
                Err(e) => {
                    let e = match e {
                        Error::Io { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
                            format!("{}: points to missing shard {file} (holding {} tensors, e.g. `{}`)", index_path.display(), tensors.len(), tensors[0])
                        }
                        other => other.to_string(),
                    };
                    problems.push(e);
                    broken.extend(tensors.iter().map(|t| t.to_string()));
                }
            }
        }
    } else {
        match SafetensorsFile::open(&dir.join(MODEL_FILE)) {
            Ok(f) => {
                for t in f.tensors.keys() {
                    map.insert(t.clone(), f.clone());
                }
            }
            Err(Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
                problems.push(format!("{}: neither {MODEL_FILE} nor {MODEL_INDEX_FILE} found", dir.display()));
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    (map, broken)
}

fn read_index(path: &Path) -> Result<BTreeMap<String, String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text = crate::files::read_input(path)?;
    let index: Index = serde_json::from_str(&text).map_err(|e| Error::format(path, format!("invalid index JSON: {e}")))?;
    Ok(index.weight_map)
}

/// The tokenizer must load and agree with the config on the special ids.
fn check_tokenizer(dir: &Path, cfg: &Config, problems: &mut Vec<String>) {
    let path = dir.join(TOKENIZER_FILE);
    if !path.exists() {
        problems.push(format!("{}: missing (Qwen2 tokenizer with <Pos>/<Ori> added tokens)", path.display()));
        return;
    }
    if let Err(e) = crate::files::require_regular_file(&path) {
        problems.push(e.to_string());
        return;
    }
    let tok = match tokenizers::Tokenizer::from_file(&path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("{}: cannot load tokenizer: {e}", path.display()));
            return;
        }
    };
    let l = &cfg.loc3r;
    for (token, id, field) in [
        ("<|endoftext|>", l.endoftext_token_id, "loc3r.endoftext_token_id"),
        ("<|im_start|>", l.im_start_token_id, "loc3r.im_start_token_id"),
        ("<|im_end|>", l.im_end_token_id, "loc3r.im_end_token_id"),
        ("<Pos>", l.pos_token_id, "loc3r.pos_token_id"),
        ("<Ori>", l.ori_token_id, "loc3r.ori_token_id"),
    ] {
        match tok.token_to_id(token) {
            Some(found) if found == id => {}
            Some(found) => problems.push(format!("{}: `{token}` has id {found} but config `{field}` says {id}", path.display())),
            None => problems.push(format!("{}: has no `{token}` token (config `{field}` = {id})", path.display())),
        }
    }
    let size = tok.get_vocab_size(true);
    if size > cfg.vocab_size {
        problems.push(format!("{}: {size} token ids exceed the embedding table (vocab_size {})", path.display(), cfg.vocab_size));
    }
}

/// Dtypes accepted in checkpoints (converted on read).
pub const ACCEPTED_DTYPES: [DType; 3] = [DType::BF16, DType::F16, DType::F32];
