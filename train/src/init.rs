//! `loc3r-train init`: a trainable Loc3R checkpoint composed from the public LLaVA-Video-Qwen2
//! release (HF layout) and CUT3R's weights (docs/training.md, "Starting from public weights").
//!
//! ```text
//! llava/                          out/
//!   config.json ───(+ loc3r)────▶ config.json            `loc3r` section added, overrides merged
//!   tokenizer.json ─(+ 2 ids)───▶ tokenizer.json         <Pos>, <Ori> appended as special tokens
//!   model*.safetensors ─────────▶ model*.safetensors     hard links (never rewritten)
//!   *.json, … ──────────────────▶ (hard links)
//!                                 model-loc3r-init.safetensors
//!                                    model.loc3r.*       new, f32, seeded PyTorch-default init
//!                                    embed_tokens/lm_head  source dtype, <Pos>/<Ori> rows = mean row
//!                                 model.safetensors.index.json   those names point at the new shard
//! cut3r FILE ───────────────────▶ cut3r.safetensors
//! ```
//! The embedding and LM-head tables are written again because two of their rows change (and
//! grow when `vocab_size` has no room for the new ids); the source shards keep their stale
//! copies, which the index no longer names. Everything is assembled in a staging directory,
//! validated exactly as `loc3r-export check` does, and renamed into place.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use loc3r_export::checkpoint::{
    write_safetensors, Checkpoint, Requirements, SafetensorsFile, TensorRef, TensorToWrite, CONFIG_FILE, CUT3R_FILE, MODEL_FILE, MODEL_INDEX_FILE,
    TOKENIZER_FILE,
};
use loc3r_export::config::{Config, BUILTIN_CONFIGS};
use loc3r_export::names::{NameMap, SourceFile};
use loc3r_export::tiny::is_loc3r_addition;
use loc3r_export::DType;

/// The shard holding every tensor `init` writes.
pub const INIT_SHARD: &str = "model-loc3r-init.safetensors";
const EMBED: &str = "model.embed_tokens.weight";
const LM_HEAD: &str = "lm_head.weight";
/// The release config: settings of the public SigLIP-so400m and CUT3R-512 weights, used for the
/// `vision_config` / `cut3r` sections a LLaVA-Video config.json does not carry.
const RELEASE_CONFIG: &str = "loc3r-vlm-7b";

/// What to compose.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// LLaVA-Video-Qwen2 checkpoint directory (HF layout).
    pub llava: PathBuf,
    /// CUT3R weights converted to safetensors (tools/cut3r-to-safetensors).
    pub cut3r: PathBuf,
    pub out: PathBuf,
    pub seed: u64,
    /// JSON object merged into the composed config.json (e.g. `{"loc3r": {"orientation_bins": 8}}`).
    pub overrides: Option<serde_json::Value>,
}

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InitReport {
    pub out: PathBuf,
    pub pos_token_id: u32,
    pub ori_token_id: u32,
    pub vocab_size: usize,
    /// Whether `vocab_size` grew to make room for `<Pos>`/`<Ori>`.
    pub vocab_grown: bool,
    /// The Loc3R tensors that were initialised.
    pub initialised: Vec<String>,
    pub seed: u64,
}

/// Why `init` could not compose a checkpoint. Every message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Bad input: a missing or malformed file, an argument, an already-Loc3R checkpoint.
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },
    /// The composed checkpoint does not validate (all problems listed, e.g. CUT3R tensors missing).
    #[error("the composed checkpoint is incomplete; fix the inputs named below and run init again:\n{0}")]
    Invalid(loc3r_export::Error),
    #[error("{}: {error}", path.display())]
    Write { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Export(#[from] loc3r_export::Error),
}

impl InitError {
    /// Whether the user's input (rather than the machine) is at fault.
    pub fn is_input(&self) -> bool {
        match self {
            InitError::Input { .. } | InitError::Invalid(_) => true,
            InitError::Write { .. } => false,
            InitError::Export(e) => e.fault() == loc3r_export::Fault::Input,
        }
    }
}

fn input(path: &Path, message: impl Into<String>) -> InitError {
    InitError::Input { path: path.to_path_buf(), message: message.into() }
}

fn write_err(path: &Path) -> impl Fn(std::io::Error) -> InitError + '_ {
    move |error| InitError::Write { path: path.to_path_buf(), error }
}

/// Composes the checkpoint `opts.out` (which must not exist or be empty).
pub fn init(opts: &InitOptions) -> Result<InitReport, InitError> {
    let out = &opts.out;
    if out.exists() && fs::read_dir(out).map_err(write_err(out))?.next().is_some() {
        return Err(input(out, "already exists and is not empty; choose another --out or remove it"));
    }
    let source = Source::read(&opts.llava)?;
    if !opts.cut3r.is_file() {
        return Err(input(
            &opts.cut3r,
            "CUT3R weights not found; convert the public CUT3R .pth with tools/cut3r-to-safetensors and pass the .safetensors it writes",
        ));
    }
    let cut3r = SafetensorsFile::open(&opts.cut3r)?;
    let plan = Plan::new(&source, &cut3r, opts)?;

    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(write_err(parent))?;
    let stem = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "checkpoint".into());
    // Unique per process and call: concurrent inits (threads of one test binary) never share one.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = parent.join(format!(".{stem}.init-{}-{call}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(write_err(&staging))?;
    }
    let result = assemble(&source, &plan, opts, &staging).and_then(|()| {
        Checkpoint::open(&staging, None, Requirements::default()).map_err(|e| InitError::Invalid(relabel(e, &staging, out)))?;
        if out.exists() {
            fs::remove_dir(out).map_err(write_err(out))?;
        }
        fs::rename(&staging, out).map_err(write_err(out))
    });
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    Ok(InitReport {
        out: out.clone(),
        pos_token_id: plan.pos_id,
        ori_token_id: plan.pos_id + 1,
        vocab_size: plan.vocab_size,
        vocab_grown: plan.vocab_size > source.vocab_rows,
        initialised: plan.heads.iter().map(|t| t.name.clone()).collect(),
        seed: opts.seed,
    })
}

/// Problems found in the staging directory, reported against the final path.
fn relabel(e: loc3r_export::Error, staging: &Path, out: &Path) -> loc3r_export::Error {
    match e {
        loc3r_export::Error::Checkpoint { problems, .. } => {
            let (from, to) = (staging.display().to_string(), out.display().to_string());
            loc3r_export::Error::Checkpoint { dir: out.to_path_buf(), problems: problems.into_iter().map(|p| p.replace(&from, &to)).collect() }
        }
        other => other,
    }
}

/// The LLaVA-Video directory, read and checked.
struct Source {
    dir: PathBuf,
    config: serde_json::Map<String, serde_json::Value>,
    tokenizer: serde_json::Value,
    /// Ids the tokenizer covers (regular and added).
    tokenizer_size: u32,
    /// Tensor name -> shard file name.
    weight_map: BTreeMap<String, String>,
    embed: TensorRef,
    lm_head: Option<TensorRef>,
    vocab_rows: usize,
}

impl Source {
    fn read(dir: &Path) -> Result<Source, InitError> {
        if !dir.is_dir() {
            return Err(input(dir, "LLaVA-Video checkpoint directory not found"));
        }
        let config_path = dir.join(CONFIG_FILE);
        let text = fs::read_to_string(&config_path)
            .map_err(|e| input(&config_path, format!("cannot read the LLaVA-Video config ({e}); --llava must be the HF directory")))?;
        let config: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).map_err(|e| input(&config_path, format!("invalid JSON: {e}")))?;
        let tokenizer_path = dir.join(TOKENIZER_FILE);
        let text = fs::read_to_string(&tokenizer_path)
            .map_err(|e| input(&tokenizer_path, format!("cannot read the Qwen2 tokenizer ({e}); copy tokenizer.json from the LLaVA-Video release")))?;
        let tokenizer: serde_json::Value = serde_json::from_str(&text).map_err(|e| input(&tokenizer_path, format!("invalid JSON: {e}")))?;
        let tokenizer_size =
            tokenizer_size(&tokenizer).ok_or_else(|| input(&tokenizer_path, "no `model.vocab` with token ids; expected a Hugging Face tokenizer.json"))?;

        let weight_map = weight_map(dir)?;
        let mut files: BTreeMap<String, std::sync::Arc<SafetensorsFile>> = BTreeMap::new();
        for file in weight_map.values() {
            if files.contains_key(file) {
                continue;
            }
            let path = dir.join(file);
            if file.contains('/') || file.contains('\\') || !path.is_file() {
                return Err(input(&path, "model shard listed in model.safetensors.index.json is missing; download every shard of the release"));
            }
            files.insert(file.clone(), SafetensorsFile::open(&path)?);
        }
        let already: Vec<&String> = weight_map.keys().filter(|n| is_loc3r_addition(n)).collect();
        let has_section = config.contains_key("loc3r");
        let has_tokens = added_contents(&tokenizer).any(|c| c == "<Pos>" || c == "<Ori>");
        if !already.is_empty() || has_section || has_tokens {
            let what = if let Some(name) = already.first() {
                format!("holds `{name}`")
            } else if has_section {
                "config.json has a `loc3r` section".to_string()
            } else {
                "tokenizer.json has <Pos>/<Ori>".to_string()
            };
            return Err(input(dir, format!("already a Loc3R checkpoint ({what}); init starts from LLaVA-Video-Qwen2 — train or export this one directly")));
        }
        let tensor = |name: &str| -> Result<Option<TensorRef>, InitError> {
            let Some(file) = weight_map.get(name) else { return Ok(None) };
            match TensorRef::new(&files[file], name) {
                Some(t) => Ok(Some(t?)),
                None => Err(input(&dir.join(file), format!("does not contain `{name}` although the index says so; re-download that shard"))),
            }
        };
        let embed = tensor(EMBED)?.ok_or_else(|| input(dir, format!("no `{EMBED}` in the model weights; is this a LLaVA-Qwen2 checkpoint?")))?;
        let lm_head = tensor(LM_HEAD)?;
        let shape = loc3r_export::TensorData::shape(&embed).to_vec();
        if shape.len() != 2 {
            return Err(input(dir, format!("`{EMBED}` has shape {shape:?}, expected [vocab, hidden]")));
        }
        if let Some(head) = &lm_head {
            if loc3r_export::TensorData::shape(head) != shape.as_slice() {
                return Err(input(dir, format!("`{LM_HEAD}` has shape {:?} but `{EMBED}` {shape:?}; they must agree", loc3r_export::TensorData::shape(head))));
            }
        }
        Ok(Source { dir: dir.to_path_buf(), config, tokenizer, tokenizer_size, weight_map, embed, lm_head, vocab_rows: shape[0] })
    }
}

fn added_contents(tokenizer: &serde_json::Value) -> impl Iterator<Item = &str> {
    tokenizer.get("added_tokens").and_then(|a| a.as_array()).into_iter().flatten().filter_map(|t| t.get("content").and_then(|c| c.as_str()))
}

/// One past the largest id of the tokenizer (regular vocabulary and added tokens).
fn tokenizer_size(tokenizer: &serde_json::Value) -> Option<u32> {
    let regular = tokenizer.get("model")?.get("vocab")?.as_object()?.values().filter_map(|v| v.as_u64()).max();
    let added = tokenizer.get("added_tokens").and_then(|a| a.as_array()).into_iter().flatten().filter_map(|t| t.get("id").and_then(|i| i.as_u64())).max();
    let max = regular.into_iter().chain(added).max()?;
    u32::try_from(max + 1).ok()
}

/// Tensor name -> shard: the index, or every tensor of a single `model.safetensors`.
fn weight_map(dir: &Path) -> Result<BTreeMap<String, String>, InitError> {
    let index = dir.join(MODEL_INDEX_FILE);
    if index.is_file() {
        let text = fs::read_to_string(&index).map_err(|e| input(&index, e.to_string()))?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| input(&index, format!("invalid JSON: {e}")))?;
        let map = value.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| input(&index, "no `weight_map` object"))?;
        return map
            .iter()
            .map(|(k, v)| v.as_str().map(|f| (k.clone(), f.to_string())).ok_or_else(|| input(&index, format!("`{k}` does not map to a file name"))))
            .collect();
    }
    let single = dir.join(MODEL_FILE);
    if !single.is_file() {
        return Err(input(dir, format!("neither {MODEL_FILE} nor {MODEL_INDEX_FILE} found; --llava must hold the model weights")));
    }
    let file = SafetensorsFile::open(&single)?;
    Ok(file.tensors.keys().map(|k| (k.clone(), MODEL_FILE.to_string())).collect())
}

/// Everything decided before writing.
struct Plan {
    config_text: String,
    tokenizer_text: String,
    pos_id: u32,
    vocab_size: usize,
    /// The new Loc3R tensors (f32).
    heads: Vec<TensorToWrite>,
}

impl Plan {
    fn new(source: &Source, cut3r: &SafetensorsFile, opts: &InitOptions) -> Result<Plan, InitError> {
        let config_path = source.dir.join(CONFIG_FILE);
        let release: serde_json::Value =
            serde_json::from_str(BUILTIN_CONFIGS.iter().find(|(n, _)| *n == RELEASE_CONFIG).expect("built-in release config").1).expect("valid built-in");
        let mut config = source.config.clone();
        for section in ["vision_config", "cut3r"] {
            if !config.contains_key(section) {
                config.insert(section.into(), release[section].clone());
            }
        }
        let pos_id = source.tokenizer_size;
        let special = |token: &str| -> Result<u32, InitError> {
            source
                .tokenizer
                .get("added_tokens")
                .and_then(|a| a.as_array())
                .into_iter()
                .flatten()
                .find(|t| t.get("content").and_then(|c| c.as_str()) == Some(token))
                .and_then(|t| t.get("id")?.as_u64())
                .map(|id| id as u32)
                .ok_or_else(|| input(&source.dir.join(TOKENIZER_FILE), format!("has no `{token}` added token; expected the Qwen2 tokenizer")))
        };
        let hidden = config.get("hidden_size").and_then(|v| v.as_u64()).ok_or_else(|| input(&config_path, "no integer `hidden_size`"))?;
        let cut3r_section = &config["cut3r"];
        // The camera token is a CUT3R decoder token: its width is the decoder's.
        let camera_dim =
            cut3r.tensors.get("decoder_embed.weight").map(|t| t.shape[0] as u64).or_else(|| cut3r_section.get("dec_embed_dim").and_then(|v| v.as_u64()));
        let long_side = cut3r_section.get("input_size").and_then(|v| v.as_array()).and_then(|a| a.iter().filter_map(|v| v.as_u64()).max());
        let mut loc3r = serde_json::json!({
            "camera_token_dim": camera_dim,
            "cam_projector_hidden": hidden,
            "pos_head_hidden": hidden,
            "ori_head_hidden": hidden,
            "orientation_bins": 36,
            "orientation_sigma_deg": 15.0,
            "pos_token_id": pos_id,
            "ori_token_id": pos_id + 1,
            "endoftext_token_id": special("<|endoftext|>")?,
            "im_start_token_id": special("<|im_start|>")?,
            "im_end_token_id": special("<|im_end|>")?,
            "cut3r_long_side": long_side,
            "num_frames": release["loc3r"]["num_frames"],
            "default_situation": release["loc3r"]["default_situation"],
        });
        if let Some(cut3r_cfg) = config.get_mut("cut3r").and_then(|c| c.as_object_mut()) {
            if let Some(dim) = camera_dim {
                cut3r_cfg.insert("dec_embed_dim".into(), dim.into());
            }
        }
        let mut merged = serde_json::Value::Object(config);
        merged["loc3r"] = std::mem::take(&mut loc3r);
        if let Some(over) = &opts.overrides {
            if !over.is_object() {
                return Err(input(Path::new("--config"), "must be a JSON object (e.g. {\"loc3r\": {\"orientation_bins\": 8}})"));
            }
            merge(&mut merged, over);
        }
        for (field, want) in [("pos_token_id", pos_id), ("ori_token_id", pos_id + 1)] {
            if merged["loc3r"][field].as_u64() != Some(want as u64) {
                return Err(input(
                    Path::new("--config"),
                    format!("sets loc3r.{field}; init appends <Pos>/<Ori> to the tokenizer at ids {pos_id} and {}: remove it", pos_id + 1),
                ));
            }
        }
        let needed = pos_id as usize + 2;
        let vocab_size = source.vocab_rows.max(needed);
        merged["vocab_size"] = vocab_size.into();
        let config_text = serde_json::to_string_pretty(&merged).expect("json") + "\n";
        let cfg = Config::from_json(&config_text, &format!("{} (composed by init)", config_path.display()))?;

        let names = NameMap::builtin(&cfg)?;
        let mut heads: Vec<TensorToWrite> = names
            .families
            .iter()
            .flat_map(|f| f.tensors.iter())
            .filter(|s| s.file == SourceFile::Model && is_loc3r_addition(&s.checkpoint))
            .map(|s| TensorToWrite { name: s.checkpoint.clone(), dtype: DType::F32, shape: s.shape.clone() })
            .collect();
        heads.sort_by(|a, b| a.name.cmp(&b.name));
        heads.dedup_by(|a, b| a.name == b.name);

        let mut tokenizer = source.tokenizer.clone();
        let added = tokenizer
            .get_mut("added_tokens")
            .and_then(|a| a.as_array_mut())
            .ok_or_else(|| input(&source.dir.join(TOKENIZER_FILE), "no `added_tokens` list"))?;
        for (id, content) in [(pos_id, "<Pos>"), (pos_id + 1, "<Ori>")] {
            added.push(
                serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}),
            );
        }
        let tokenizer_text = serde_json::to_string_pretty(&tokenizer).expect("json") + "\n";
        Ok(Plan { config_text, tokenizer_text, pos_id, vocab_size, heads })
    }
}

/// Recursive object merge: `over`'s leaves replace `base`'s.
fn merge(base: &mut serde_json::Value, over: &serde_json::Value) {
    match (base.as_object_mut(), over.as_object()) {
        (Some(b), Some(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        _ => *base = over.clone(),
    }
}

fn assemble(source: &Source, plan: &Plan, opts: &InitOptions, staging: &Path) -> Result<(), InitError> {
    fs::create_dir_all(staging).map_err(write_err(staging))?;
    let written = [CONFIG_FILE, TOKENIZER_FILE, MODEL_INDEX_FILE, CUT3R_FILE, INIT_SHARD];
    for entry in fs::read_dir(&source.dir).map_err(|e| input(&source.dir, e.to_string()))? {
        let entry = entry.map_err(|e| input(&source.dir, e.to_string()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().is_file() || written.contains(&name.as_str()) {
            continue;
        }
        link_or_copy(&entry.path(), &staging.join(&name))?;
    }
    link_or_copy(&opts.cut3r, &staging.join(CUT3R_FILE))?;
    write_text(&staging.join(CONFIG_FILE), &plan.config_text)?;
    write_text(&staging.join(TOKENIZER_FILE), &plan.tokenizer_text)?;

    let mut tables: Vec<(&str, &TensorRef)> = vec![(EMBED, &source.embed)];
    if let Some(head) = &source.lm_head {
        tables.push((LM_HEAD, head));
    }
    let mut tensors = plan.heads.clone();
    let hidden = loc3r_export::TensorData::shape(&source.embed)[1];
    for (name, t) in &tables {
        tensors.push(TensorToWrite { name: name.to_string(), dtype: t.dtype, shape: vec![plan.vocab_size, hidden] });
    }
    let covered = (plan.pos_id as usize).min(source.vocab_rows);
    let shard = staging.join(INIT_SHARD);
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string()), ("generator".to_string(), format!("loc3r-train init --seed {}", opts.seed))]);
    write_safetensors(&shard, &tensors, Some(&metadata), |spec, w| match tables.iter().find(|(n, _)| *n == spec.name) {
        Some((_, table)) => write_table_with_new_rows(table, covered, plan.pos_id as usize, plan.vocab_size, w),
        None => {
            let values = linear_init(&spec.name, &spec.shape, &plan.heads, opts.seed);
            w.write_all(&values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())
        }
    })?;

    let mut weight_map = source.weight_map.clone();
    for t in &tensors {
        weight_map.insert(t.name.clone(), INIT_SHARD.to_string());
    }
    let index = serde_json::json!({"metadata": {"composed_by": "loc3r-train init", "seed": opts.seed}, "weight_map": weight_map});
    write_text(&staging.join(MODEL_INDEX_FILE), &(serde_json::to_string_pretty(&index).expect("json") + "\n"))
}

/// Streams `table` (rows of its dtype) with the rows from `first_new` on set to the mean of the
/// first `covered` rows (computed in f64, rounded to f32, stored in the table's dtype), and grown
/// to `rows`. Rows before `first_new` are copied byte for byte.
fn write_table_with_new_rows(table: &TensorRef, covered: usize, first_new: usize, rows: usize, w: &mut dyn Write) -> std::io::Result<()> {
    let shape = loc3r_export::TensorData::shape(table);
    let (old_rows, hidden) = (shape[0], shape[1]);
    let row_bytes = hidden * table.dtype.size();
    let raw = table.raw_bytes();
    let mean = mean_row(table, covered);
    let mut mean_bytes = Vec::with_capacity(row_bytes);
    loc3r_export::tensor::write_f32s_as(&mean, table.dtype, &mut mean_bytes)?;
    let kept = first_new.min(old_rows);
    w.write_all(&raw[..kept * row_bytes])?;
    // The new ids (and, when grown, nothing else: they are the last rows) get the mean row;
    // padding rows after them stay as they were.
    for row in kept..rows {
        if row < first_new + 2 || row >= old_rows {
            w.write_all(&mean_bytes)?;
        } else {
            w.write_all(&raw[row * row_bytes..(row + 1) * row_bytes])?;
        }
    }
    Ok(())
}

/// Mean of the first `rows` rows of a [V, H] table, in f64.
pub fn mean_row(table: &TensorRef, rows: usize) -> Vec<f32> {
    let hidden = loc3r_export::TensorData::shape(table)[1];
    let row_bytes = hidden * table.dtype.size();
    let raw = table.raw_bytes();
    let mut sum = vec![0f64; hidden];
    for r in 0..rows {
        let bytes = &raw[r * row_bytes..(r + 1) * row_bytes];
        for (s, v) in sum.iter_mut().zip(decode(bytes, table.dtype)) {
            *s += v as f64;
        }
    }
    sum.iter().map(|s| (s / rows.max(1) as f64) as f32).collect()
}

fn decode(bytes: &[u8], dtype: DType) -> impl Iterator<Item = f32> + '_ {
    let size = dtype.size();
    bytes.chunks_exact(size).map(move |c| match dtype {
        DType::F16 => half::f16::from_le_bytes([c[0], c[1]]).to_f32(),
        DType::BF16 => half::bf16::from_le_bytes([c[0], c[1]]).to_f32(),
        _ => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
    })
}

/// PyTorch's default `nn.Linear` init: weight kaiming-uniform(a=√5) = U(±1/√fan_in), bias
/// U(±1/√fan_in) with the weight's fan_in; except the last Linear of `pos_head` and `bev_head`,
/// whose bias is 0 so the log-variances start at s ≈ 0 (σ ≈ 1 m). Values depend only on the seed
/// and the tensor name.
pub fn linear_init(name: &str, shape: &[usize], all: &[TensorToWrite], seed: u64) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let is_bias = name.ends_with(".bias");
    if is_bias && (name.ends_with("pos_head.2.bias") || name.ends_with("bev_head.bias")) {
        return vec![0.0; n];
    }
    let fan_in = if is_bias {
        let weight = format!("{}.weight", name.trim_end_matches(".bias"));
        all.iter().find(|t| t.name == weight).and_then(|t| t.shape.get(1).copied()).unwrap_or(shape[0])
    } else {
        shape[1..].iter().product()
    };
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    let mut state = seed ^ name.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    (0..n)
        .map(|_| {
            // SplitMix64 -> uniform [0, 1) -> U(-bound, bound).
            state = state.wrapping_add(0x9E3779B97F4A7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
            let u = ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64;
            ((2.0 * u - 1.0) * bound) as f32
        })
        .collect()
}

fn link_or_copy(from: &Path, to: &Path) -> Result<(), InitError> {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).map_err(write_err(to))?;
    }
    Ok(())
}

fn write_text(path: &Path, text: &str) -> Result<(), InitError> {
    fs::write(path, text).map_err(write_err(path))
}
