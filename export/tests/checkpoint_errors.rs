//! Bad checkpoints: each must give a clear error naming the file and tensor, exit code
//! 2, and no panic or backtrace (issue: foundation, "Bad input").

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::edit_header;

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_loc3r-export"))
}

fn make_tiny(dir: &Path, extra: &[&str]) {
    let out = Command::new(exe()).args(["make-tiny", "--quiet", "--seed", "3", "--out"]).arg(dir).args(extra).output().unwrap();
    assert!(out.status.success(), "make-tiny failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs `check` and returns stderr, asserting exit code 2 and no panic.
fn check_fails(dir: &Path) -> String {
    let out = Command::new(exe()).args(["check", "--checkpoint"]).arg(dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "expected exit 2, got {:?}; stderr: {stderr}", out.status.code());
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

fn one_line(stderr: &str) {
    assert_eq!(stderr.trim_end().lines().count(), 1, "expected a one-line error: {stderr}");
}

fn fresh(extra: &[&str]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    make_tiny(&tmp.path().join("ckpt"), extra);
    tmp
}

#[test]
fn a_valid_checkpoint_passes() {
    let tmp = fresh(&[]);
    let out = Command::new(exe()).args(["check", "--json", "--checkpoint"]).arg(tmp.path().join("ckpt")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
}

#[test]
fn missing_config() {
    let tmp = fresh(&[]);
    let dir = tmp.path().join("ckpt");
    std::fs::remove_file(dir.join("config.json")).unwrap();
    let e = check_fails(&dir);
    one_line(&e);
    assert!(e.contains("config.json") && e.contains("missing"), "{e}");
}

#[test]
fn missing_directory() {
    let e = check_fails(Path::new("/nonexistent/loc3r-ckpt"));
    one_line(&e);
    assert!(e.contains("/nonexistent/loc3r-ckpt") && e.contains("not found"), "{e}");
}

#[test]
fn invalid_json_config() {
    let tmp = fresh(&[]);
    let dir = tmp.path().join("ckpt");
    std::fs::write(dir.join("config.json"), "{\"hidden_size\": 64,").unwrap();
    let e = check_fails(&dir);
    one_line(&e);
    assert!(e.contains("config.json") && e.contains("invalid JSON"), "{e}");
}

#[test]
fn inconsistent_dims_in_config() {
    let tmp = fresh(&[]);
    let dir = tmp.path().join("ckpt");
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    cfg["num_key_value_heads"] = 3.into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let e = check_fails(&dir);
    one_line(&e);
    assert!(e.contains("config.json") && e.contains("num_key_value_heads"), "{e}");
}

#[test]
fn missing_tensor() {
    let tmp = fresh(&[]);
    let dir = tmp.path().join("ckpt");
    edit_header(&dir.join("model.safetensors"), |h| {
        h.remove("model.layers.1.mlp.up_proj.weight").unwrap();
    });
    let e = check_fails(&dir);
    one_line(&e);
    assert!(e.contains("`model.layers.1.mlp.up_proj.weight`") && e.contains("missing"), "{e}");
}

#[test]
fn mis_shaped_tensor() {
    let tmp = fresh(&[]);
    let dir = tmp.path().join("ckpt");
    // Same number of elements, transposed: only a shape check catches it.
    edit_header(&dir.join("model.safetensors"), |h| {
        h["model.layers.0.mlp.down_proj.weight"]["shape"] = serde_json::json!([160, 64]);
    });
    let e = check_fails(&dir);
    one_line(&e);
    assert!(e.contains("`model.layers.0.mlp.down_proj.weight`") && e.contains("model.safetensors"), "{e}");
    assert!(e.contains("[64, 160]") && e.contains("[160, 64]"), "{e}");
}

#[test]
fn truncated_safetensors() {
    let tmp = fresh(&[]);
    let dir = tmp.path().join("ckpt");
    let path = dir.join("cut3r.safetensors");
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 1000).unwrap();
    let e = check_fails(&dir);
    one_line(&e);
    assert!(e.contains("cut3r.safetensors") && e.contains("truncated"), "{e}");
}

#[test]
fn header_claims_more_bytes_than_the_file_has() {
    let tmp = fresh(&[]);
    let dir = tmp.path().join("ckpt");
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let claimed = bytes.len() as u64; // more than the len - 8 bytes that follow
    bytes[..8].copy_from_slice(&claimed.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let e = check_fails(&dir);
    one_line(&e);
    assert!(e.contains("model.safetensors") && e.contains("header length"), "{e}");
}

#[test]
fn header_length_of_two_to_the_63() {
    let tmp = fresh(&[]);
    let dir = tmp.path().join("ckpt");
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[..8].copy_from_slice(&(1u64 << 63).to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let e = check_fails(&dir);
    one_line(&e);
    assert!(e.contains("model.safetensors") && e.contains("9223372036854775808"), "{e}");
}

#[test]
fn index_points_to_missing_shard() {
    let tmp = fresh(&["--shards", "3"]);
    let dir = tmp.path().join("ckpt");
    std::fs::remove_file(dir.join("model-00002-of-00003.safetensors")).unwrap();
    let e = check_fails(&dir);
    one_line(&e);
    assert!(e.contains("model.safetensors.index.json") && e.contains("model-00002-of-00003.safetensors"), "{e}");
}

#[test]
fn unsupported_dtype() {
    let tmp = fresh(&[]);
    let dir = tmp.path().join("ckpt");
    edit_header(&dir.join("model.safetensors"), |h| {
        h["model.norm.weight"]["dtype"] = "F64".into();
    });
    let e = check_fails(&dir);
    one_line(&e);
    assert!(e.contains("`model.norm.weight`") && e.contains("F64") && e.contains("model.safetensors"), "{e}");
}

#[test]
fn all_problems_are_reported_at_once() {
    let tmp = fresh(&[]);
    let dir = tmp.path().join("ckpt");
    edit_header(&dir.join("model.safetensors"), |h| {
        h.remove("model.norm.weight").unwrap();
        h.remove("model.loc3r.bev_head.bias").unwrap();
    });
    edit_header(&dir.join("cut3r.safetensors"), |h| {
        h.remove("pose_retriever.mem").unwrap();
    });
    let e = check_fails(&dir);
    for name in ["model.norm.weight", "model.loc3r.bev_head.bias", "pose_retriever.mem"] {
        assert!(e.contains(name), "{name} not reported: {e}");
    }
    assert!(e.contains("3 problems"), "{e}");
}

#[test]
fn tied_lm_head_falls_back_to_embeddings() {
    let tmp = fresh(&["--tied-lm-head", "--shards", "2", "--dtype", "bf16"]);
    let out = Command::new(exe()).args(["check", "--checkpoint"]).arg(tmp.path().join("ckpt")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("bf16"));
}

#[test]
fn make_tiny_is_deterministic_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    for shards in ["1", "3"] {
        let (a, b) = (tmp.path().join(format!("a{shards}")), tmp.path().join(format!("b{shards}")));
        make_tiny(&a, &["--shards", shards]);
        make_tiny(&b, &["--shards", shards]);
        let mut names: Vec<_> = std::fs::read_dir(&a).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        for n in names {
            assert_eq!(std::fs::read(a.join(&n)).unwrap(), std::fs::read(b.join(&n)).unwrap(), "{n:?} differs");
        }
    }
    let out = Command::new(exe()).args(["make-tiny", "--quiet", "--out"]).arg(tmp.path().join("a1")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
}

/// `make-tiny --config PATH` builds a checkpoint of any valid config (here other head counts, layer
/// counts and frame count than the built-in tiny one); an invalid or missing config file is a clear
/// one-line error that writes nothing.
#[test]
fn make_tiny_accepts_a_config_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(include_str!("../../models/tiny/config.json")).unwrap();
    cfg["hidden_size"] = 96.into();
    cfg["num_attention_heads"] = 6.into();
    cfg["num_key_value_heads"] = 3.into();
    cfg["num_hidden_layers"] = 3.into();
    cfg["loc3r"]["num_frames"] = 5.into();
    let path = tmp.path().join("variant.json");
    std::fs::write(&path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    let ckpt = tmp.path().join("ckpt");
    make_tiny(&ckpt, &["--config", path.to_str().unwrap()]);
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(ckpt.join("config.json")).unwrap()).unwrap();
    assert_eq!(written, cfg);
    let out = Command::new(exe()).args(["check", "--checkpoint"]).arg(&ckpt).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    cfg["num_key_value_heads"] = 4.into(); // 6 heads do not share 4 KV heads
    std::fs::write(&path, cfg.to_string()).unwrap();
    for (config, expect) in
        [(path.to_str().unwrap(), "num_key_value_heads"), ("/no/such/config.json", "/no/such/config.json"), ("huge", "unknown config `huge`")]
    {
        let out = Command::new(exe()).args(["make-tiny", "--quiet", "--config", config, "--out"]).arg(tmp.path().join("bad")).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        one_line(&stderr);
        assert!(stderr.contains(expect), "{stderr}");
        assert!(!tmp.path().join("bad").exists(), "nothing is written for a bad config");
    }
}
