//! `loc3r-train init` on a tiny LLaVA-Video layout (make-tiny --without-loc3r): the composed
//! checkpoint validates and exports, the new token rows are the mean rows, the heads start as
//! documented, the source tensors are untouched, the output depends only on the seed, and bad
//! inputs fail with errors that say what to do.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use loc3r_export::bundle::{export_bundle, BundleOptions};
use loc3r_export::checkpoint::{write_safetensors, Checkpoint, Requirements, SafetensorsFile, TensorRef, TensorToWrite, MODEL_FILE};
use loc3r_export::tiny::{make_tiny, TinyOptions};
use loc3r_train::init::{init, InitError, InitOptions, INIT_SHARD};
use loc3r_train::interp::{evaluate, Tensor};
use loc3r_train::losses::LossWeights;
use loc3r_train::model::{training_graph, Data, Group};
use loc3r_train::sample::Sample;

/// A LLaVA-layout tiny checkpoint and the matching CUT3R weights file.
fn llava_tiny(root: &Path, shards: usize) -> (PathBuf, PathBuf) {
    let llava = root.join("llava");
    let cut3r = root.join("cut3r.safetensors");
    let opts = TinyOptions { seed: 5, shards, without_loc3r: true, cut3r_out: Some(cut3r.clone()), ..TinyOptions::default() };
    make_tiny(&llava, &opts, |_, _| {}).expect("LLaVA-layout tiny checkpoint");
    (llava, cut3r)
}

fn tiny_overrides() -> serde_json::Value {
    serde_json::json!({"loc3r": {"orientation_bins": 8, "num_frames": 4}})
}

fn options(llava: &Path, cut3r: &Path, out: PathBuf, seed: u64) -> InitOptions {
    InitOptions { llava: llava.to_path_buf(), cut3r: cut3r.to_path_buf(), out, seed, overrides: Some(tiny_overrides()) }
}

fn tensor(ckpt: &Checkpoint, family: &str, logical: &str) -> TensorRef {
    ckpt.tensor(ckpt.names().resolve(family, logical).expect("in the name map")).expect("present")
}

fn by_checkpoint_name(ckpt: &Checkpoint, name: &str) -> TensorRef {
    let spec = ckpt.names().families.iter().flat_map(|f| f.tensors.iter()).find(|t| t.checkpoint == name).expect("mapped");
    ckpt.tensor(spec).expect("present")
}

fn source_tensor(dir: &Path, name: &str) -> TensorRef {
    let file = SafetensorsFile::open(&dir.join(MODEL_FILE)).expect("model.safetensors");
    TensorRef::new(&file, name).expect("present").expect("float")
}

/// Mean of the first `rows` rows, in f64.
fn mean_rows(values: &[f32], hidden: usize, rows: usize) -> Vec<f64> {
    let mut sum = vec![0f64; hidden];
    for row in values.chunks(hidden).take(rows) {
        for (s, v) in sum.iter_mut().zip(row) {
            *s += *v as f64;
        }
    }
    sum.iter().map(|s| s / rows as f64).collect()
}

#[test]
fn make_tiny_without_loc3r_writes_the_llava_layout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (llava, cut3r) = llava_tiny(dir.path(), 1);
    assert!(cut3r.is_file() && !llava.join("cut3r.safetensors").exists());
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(llava.join("config.json")).unwrap()).unwrap();
    assert!(config.get("loc3r").is_none() && config.get("cut3r").is_some());
    let tokenizer = std::fs::read_to_string(llava.join("tokenizer.json")).unwrap();
    assert!(!tokenizer.contains("<Pos>") && !tokenizer.contains("<Ori>") && tokenizer.contains("<|im_end|>"));
    let model = SafetensorsFile::open(&llava.join(MODEL_FILE)).unwrap();
    assert!(model.tensors.keys().all(|n| !n.starts_with("model.loc3r.")));
    assert!(model.tensors.contains_key("model.embed_tokens.weight") && model.tensors.contains_key("lm_head.weight"));
    let e = Checkpoint::open(&llava, None, Requirements::default()).err().expect("not a Loc3R checkpoint");
    assert!(e.to_string().contains("loc3r"), "{e}");
}

#[test]
fn init_composes_a_checkpoint_that_validates_exports_and_trains() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (llava, cut3r) = llava_tiny(dir.path(), 1);
    let out = dir.path().join("loc3r");
    let report = init(&options(&llava, &cut3r, out.clone(), 11)).expect("init");
    assert_eq!((report.pos_token_id, report.ori_token_id, report.vocab_size, report.vocab_grown), (1003, 1004, 1024, false));
    assert_eq!(report.initialised.len(), 14, "{:?}", report.initialised);

    let ckpt = Checkpoint::open(&out, None, Requirements::default()).expect("the composed checkpoint validates like `loc3r-export check`");
    let cfg = ckpt.config();
    assert_eq!((cfg.loc3r.pos_token_id, cfg.loc3r.ori_token_id), (1003, 1004));
    assert_eq!((cfg.loc3r.camera_token_dim, cfg.loc3r.pos_head_hidden, cfg.loc3r.orientation_bins, cfg.loc3r.num_frames), (48, 64, 8, 4));
    assert_eq!((cfg.loc3r.endoftext_token_id, cfg.loc3r.im_start_token_id, cfg.loc3r.im_end_token_id), (1000, 1001, 1002));

    // <Pos>/<Ori> rows = the mean of the tokenizer-covered rows; every other row untouched.
    let hidden = cfg.hidden_size;
    for logical in ["model.embed_tokens.weight", "lm_head.weight"] {
        let after = by_checkpoint_name(&ckpt, logical);
        assert_eq!(after.file_name(), INIT_SHARD, "{logical}");
        let before = source_tensor(&llava, logical);
        let (a, b) = (after.to_f32(), before.to_f32());
        let mean = mean_rows(&b, hidden, 1003);
        for id in [1003usize, 1004] {
            let row = &a[id * hidden..(id + 1) * hidden];
            for (v, m) in row.iter().zip(&mean) {
                assert!((*v as f64 - m).abs() < 1e-6, "{logical} row {id}: {v} vs mean {m}");
            }
        }
        let row_bytes = hidden * 4;
        let (ra, rb) = (after.raw_bytes(), before.raw_bytes());
        assert_eq!(ra[..1003 * row_bytes], rb[..1003 * row_bytes], "{logical}: covered rows bit-identical");
        assert_eq!(ra[1005 * row_bytes..], rb[1005 * row_bytes..], "{logical}: padding rows bit-identical");
    }

    // Heads: PyTorch-default uniform bounds; the final pos/bev bias 0.
    for logical in ["pos_head.2.bias", "bev_head.bias"] {
        assert!(tensor(&ckpt, "heads", logical).to_f32().iter().all(|v| *v == 0.0), "{logical}");
    }
    for (family, logical, fan_in) in [
        ("heads", "pos_head.0.weight", 64usize),
        ("heads", "pos_head.0.bias", 64),
        ("heads", "pos_head.2.weight", 64),
        ("heads", "ori_head.2.bias", 64),
        ("heads", "bev_head.weight", 64),
        ("projector", "loc3r.cam_projector.0.weight", 48),
        ("projector", "loc3r.cam_projector.0.bias", 48),
    ] {
        let values = tensor(&ckpt, family, logical).to_f32();
        let bound = 1.0 / (fan_in as f32).sqrt();
        assert!(values.iter().all(|v| v.abs() <= bound), "{logical} within ±1/√{fan_in}");
        let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.5 * bound, "{logical} fills its range (max |v| {max}, bound {bound})");
    }

    // Every source tensor other than the two tables is the same bytes (hard-linked shard).
    let source = SafetensorsFile::open(&llava.join(MODEL_FILE)).unwrap();
    for name in source.tensors.keys().filter(|n| !n.ends_with("embed_tokens.weight") && *n != "lm_head.weight") {
        let spec = ckpt.names().families.iter().flat_map(|f| f.tensors.iter()).find(|t| &t.checkpoint == name);
        if let Some(spec) = spec {
            let after = ckpt.tensor(spec).expect("present");
            assert_eq!(after.file_name(), MODEL_FILE, "{name}");
            assert_eq!(after.raw_bytes(), TensorRef::new(&source, name).unwrap().unwrap().raw_bytes(), "{name}");
        }
    }
    assert_eq!(std::fs::read(out.join("cut3r.safetensors")).unwrap(), std::fs::read(&cut3r).unwrap());

    // A short training smoke: the loss of a random sample is finite at init.
    let sample = Sample::random_for(cfg, 1, 3);
    let groups = Group::parse_list("heads").expect("groups");
    let (tg, data) = training_graph(&ckpt, &sample, &groups, &LossWeights::default()).expect("training graph of the composed checkpoint");
    let mut feeds: HashMap<String, Tensor> = data
        .iter()
        .map(|(n, d)| {
            let t = match d {
                Data::F32(a) => Tensor::Float(a.mapv(f64::from)),
                Data::I64(a) => Tensor::Int(a.clone()),
            };
            (n.clone(), t)
        })
        .collect();
    for p in &tg.params {
        feeds.insert(p.name.clone(), Tensor::Float(p.initial_values().expect("weights").mapv(f64::from)));
    }
    let out_values = evaluate(&tg.graph, &feeds, &["loss"]).expect("the interpreter runs the training graph");
    let loss = out_values["loss"].float().expect("float")[[]];
    assert!(loss.is_finite(), "loss {loss}");

    let bundle = dir.path().join("bundle");
    export_bundle(&out, &bundle, &BundleOptions::default(), |_| {}).expect("the composed checkpoint exports");
    assert!(bundle.join("manifest.json").is_file());
}

#[test]
fn init_depends_only_on_the_seed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (llava, cut3r) = llava_tiny(dir.path(), 2);
    let shard = |seed: u64, name: &str| {
        let out = dir.path().join(name);
        init(&options(&llava, &cut3r, out.clone(), seed)).expect("init");
        for file in ["config.json", "tokenizer.json", "model.safetensors.index.json"] {
            assert!(out.join(file).is_file(), "{file}");
        }
        std::fs::read(out.join(INIT_SHARD)).expect("init shard")
    };
    let a = shard(1, "a");
    assert_eq!(a, shard(1, "b"), "same seed, same bytes");
    assert_ne!(a, shard(2, "c"), "another seed, other values");
    assert_eq!(std::fs::read(dir.path().join("a/config.json")).unwrap(), std::fs::read(dir.path().join("c/config.json")).unwrap());
}

#[test]
fn init_grows_the_vocabulary_when_the_table_is_full() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (llava, cut3r) = llava_tiny(dir.path(), 1);
    // Cut the tables to the 1003 ids the tokenizer covers: no room for <Pos>/<Ori>.
    let path = llava.join(MODEL_FILE);
    let source = SafetensorsFile::open(&path).unwrap();
    let tensors: Vec<TensorToWrite> = source
        .tensors
        .iter()
        .map(|(name, info)| {
            let mut shape = info.shape.clone();
            if name == "model.embed_tokens.weight" || name == "lm_head.weight" {
                shape[0] = 1003;
            }
            TensorToWrite { name: name.clone(), dtype: info.dtype.clone().unwrap(), shape }
        })
        .collect();
    let cut = dir.path().join("cut.safetensors");
    write_safetensors(&cut, &tensors, None, |t, w| {
        let bytes = TensorRef::new(&source, &t.name).unwrap().unwrap();
        let n = t.shape.iter().product::<usize>() * 4;
        w.write_all(&bytes.raw_bytes()[..n])
    })
    .unwrap();
    drop(source);
    std::fs::rename(&cut, &path).unwrap();
    let config_path = llava.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["vocab_size"] = 1003.into();
    std::fs::write(&config_path, config.to_string()).unwrap();

    let out = dir.path().join("grown");
    let report = init(&options(&llava, &cut3r, out.clone(), 0)).expect("init grows the tables");
    assert_eq!((report.vocab_size, report.vocab_grown), (1005, true));
    let ckpt = Checkpoint::open(&out, None, Requirements::default()).expect("validates");
    assert_eq!(ckpt.config().vocab_size, 1005);
    let embed = by_checkpoint_name(&ckpt, "model.embed_tokens.weight").to_f32();
    let hidden = ckpt.config().hidden_size;
    let before = source_tensor(&llava, "model.embed_tokens.weight").to_f32();
    assert_eq!(embed[..1003 * hidden], before[..]);
    let mean = mean_rows(&before, hidden, 1003);
    assert!(embed[1004 * hidden..].iter().zip(&mean).all(|(v, m)| (*v as f64 - m).abs() < 1e-6));
}

fn input_error(result: Result<loc3r_train::init::InitReport, InitError>) -> String {
    match result {
        Err(e) => {
            assert!(e.is_input(), "an input error: {e}");
            e.to_string()
        }
        Ok(r) => panic!("expected an error, got {r:?}"),
    }
}

#[test]
fn init_refuses_bad_inputs_with_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (llava, cut3r) = llava_tiny(dir.path(), 2);

    // Already a Loc3R checkpoint.
    let full = dir.path().join("full");
    make_tiny(&full, &TinyOptions::default(), |_, _| {}).unwrap();
    let e = input_error(init(&options(&full, &cut3r, dir.path().join("o1"), 0)));
    assert!(e.contains("already a Loc3R checkpoint"), "{e}");

    // Non-empty --out.
    let busy = dir.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), "x").unwrap();
    let e = input_error(init(&options(&llava, &cut3r, busy.clone(), 0)));
    assert!(e.contains("not empty") && e.contains("--out"), "{e}");
    assert!(busy.join("keep.txt").is_file());

    // Missing CUT3R file: says how to make one.
    let e = input_error(init(&options(&llava, &dir.path().join("none.safetensors"), dir.path().join("o2"), 0)));
    assert!(e.contains("cut3r-to-safetensors"), "{e}");

    // CUT3R weights lacking tensors: every missing one reported, nothing left behind.
    let partial = dir.path().join("partial.safetensors");
    let full_cut3r = SafetensorsFile::open(&cut3r).unwrap();
    let kept: Vec<TensorToWrite> = full_cut3r
        .tensors
        .iter()
        .filter(|(n, _)| !n.starts_with("dec_blocks.0.") && *n != "pose_token")
        .map(|(n, i)| TensorToWrite { name: n.clone(), dtype: i.dtype.clone().unwrap(), shape: i.shape.clone() })
        .collect();
    write_safetensors(&partial, &kept, None, |t, w| w.write_all(TensorRef::new(&full_cut3r, &t.name).unwrap().unwrap().raw_bytes())).unwrap();
    let e = input_error(init(&options(&llava, &partial, dir.path().join("o3"), 0)));
    assert!(e.contains("pose_token") && e.contains("dec_blocks.0.") && e.contains("problems"), "{e}");
    assert!(!dir.path().join("o3").exists());

    // A missing shard.
    let shard = std::fs::read_dir(&llava).unwrap().map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().ends_with("00002-of-00002.safetensors")).unwrap();
    std::fs::remove_file(&shard).unwrap();
    let e = input_error(init(&options(&llava, &cut3r, dir.path().join("o4"), 0)));
    assert!(e.contains("00002-of-00002") && e.contains("missing"), "{e}");

    // No staging directory survives a failure.
    let leftovers: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.contains(".init-")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn init_command_line_writes_a_checkpoint_and_exits_2_on_bad_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (llava, cut3r) = llava_tiny(dir.path(), 1);
    let overrides = dir.path().join("overrides.json");
    std::fs::write(&overrides, tiny_overrides().to_string()).unwrap();
    let run = |out: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_loc3r-train"))
            .arg("init")
            .arg("--llava")
            .arg(&llava)
            .arg("--cut3r")
            .arg(&cut3r)
            .arg("--out")
            .arg(out)
            .args(["--seed", "3", "--json", "--config"])
            .arg(&overrides)
            .output()
            .expect("runs")
    };
    let out = dir.path().join("ck");
    let ok = run(&out);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("JSON report");
    assert_eq!((report["pos_token_id"].as_u64(), report["seed"].as_u64()), (Some(1003), Some(3)), "{report}");
    let ckpt = Checkpoint::open(&out, None, Requirements::default()).expect("validates");
    assert_eq!(ckpt.config().loc3r.orientation_bins, 8);

    let again = run(&out);
    assert_eq!(again.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("not empty") && stderr.contains("--out"), "{stderr}");
}

#[test]
fn init_appends_pos_and_ori_after_the_qwen2_specials() {
    // The tiny model with Qwen2-7B's real tokenizer and padded table (152064 rows).
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config: serde_json::Value = serde_json::from_str(loc3r_export::config::BUILTIN_CONFIGS[0].1).unwrap();
    config["vocab_size"] = 152064.into();
    for (field, id) in
        [("endoftext_token_id", 151643), ("im_start_token_id", 151644), ("im_end_token_id", 151645), ("pos_token_id", 151646), ("ori_token_id", 151647)]
    {
        config["loc3r"][field] = id.into();
    }
    let config_path = dir.path().join("qwen-vocab.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let llava = dir.path().join("llava");
    let cut3r = dir.path().join("cut3r.safetensors");
    let opts = TinyOptions {
        config: config_path.display().to_string(),
        dtype: loc3r_export::DType::BF16,
        without_loc3r: true,
        cut3r_out: Some(cut3r.clone()),
        ..TinyOptions::default()
    };
    make_tiny(&llava, &opts, |_, _| {}).expect("LLaVA layout with the Qwen2 tokenizer");
    let out = dir.path().join("ck");
    let report = init(&options(&llava, &cut3r, out.clone(), 0)).expect("init");
    assert_eq!((report.pos_token_id, report.ori_token_id, report.vocab_size, report.vocab_grown), (151646, 151647, 152064, false));
    let ckpt = Checkpoint::open(&out, None, Requirements::default()).expect("the tokenizer loads with <Pos>/<Ori> at the config's ids");
    let embed = by_checkpoint_name(&ckpt, "model.embed_tokens.weight");
    assert_eq!(embed.dtype, loc3r_export::DType::BF16, "the tables keep the source dtype");
    let hidden = ckpt.config().hidden_size;
    let mean = mean_rows(&source_tensor(&llava, "model.embed_tokens.weight").to_f32(), hidden, 151646);
    let row = &embed.to_f32()[151646 * hidden..151647 * hidden];
    // bf16 keeps 8 bits of mantissa: the stored row is the mean rounded once.
    assert!(row.iter().zip(&mean).all(|(v, m)| (*v as f64 - m).abs() <= m.abs() / 128.0 + 1e-9), "bf16 mean row");
}
