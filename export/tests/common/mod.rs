//! Shared helpers of the exporter's integration tests: a tiny checkpoint made once per
//! test binary, fixture reading, and running saved graphs on ONNX Runtime (CPU).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use loc3r_export::checkpoint::{Checkpoint, Requirements, SafetensorsFile};
use loc3r_export::tiny::{make_tiny, TinyOptions};
use ndarray::{ArrayD, IxDyn};
use ort::session::Session;
use ort::value::{DynValue, Tensor};
use sha2::{Digest, Sha256};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `make-tiny --seed 1` (the fixtures' checkpoint), made once per test binary.
pub fn tiny_checkpoint() -> &'static (tempfile::TempDir, Checkpoint) {
    static CKPT: OnceLock<(tempfile::TempDir, Checkpoint)> = OnceLock::new();
    CKPT.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tiny");
        make_tiny(&dir, &TinyOptions { seed: 1, ..TinyOptions::default() }, |_, _| {}).unwrap();
        let ckpt = Checkpoint::open(&dir, None, Requirements::default()).unwrap();
        (tmp, ckpt)
    })
}

pub fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// A fixture file; panics with regeneration advice if it was made from other weights.
pub fn fixture(dir: &str, name: &str) -> Arc<SafetensorsFile> {
    let path = repo_root().join("tests/fixtures").join(dir).join(format!("{name}.safetensors"));
    let file = SafetensorsFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let (_, ckpt) = tiny_checkpoint();
    for (key, value) in file.metadata() {
        if let Some(checkpoint_file) = key.strip_prefix("sha256:") {
            let actual = sha256_file(&ckpt.dir().join(checkpoint_file));
            assert_eq!(
                actual, value,
                "fixtures are stale: make-tiny --seed 1 now writes another {checkpoint_file}; regenerate them (see tests/fixtures/{dir}/README.md)"
            );
        }
    }
    file
}

pub fn f32_array(file: &SafetensorsFile, name: &str) -> ArrayD<f32> {
    let (info, bytes) = file.raw(name).unwrap_or_else(|| panic!("fixture {} has no `{name}`", file.path.display()));
    assert_eq!(info.dtype, Ok(loc3r_export::DType::F32), "{name}");
    let v: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    ArrayD::from_shape_vec(IxDyn(&info.shape), v).unwrap()
}

pub fn i64_array(file: &SafetensorsFile, name: &str) -> ArrayD<i64> {
    let (info, bytes) = file.raw(name).unwrap_or_else(|| panic!("fixture {} has no `{name}`", file.path.display()));
    assert_eq!(info.dtype, Ok(loc3r_export::DType::I64), "{name}");
    let v: Vec<i64> = bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    ArrayD::from_shape_vec(IxDyn(&info.shape), v).unwrap()
}

pub fn session(path: &Path) -> Session {
    let env = loc3r::ort_env::environment().unwrap_or_else(|e| panic!("{e}"));
    let build = || -> ort::Result<Session> {
        let mut builder = Session::builder(env)?.with_intra_threads(1).map_err(ort::Error::<()>::from)?;
        builder.commit_from_file(path)
    };
    build().unwrap_or_else(|e| panic!("ONNX Runtime cannot load {}: {e}", path.display()))
}

pub fn f32_input(name: &str, value: ArrayD<f32>) -> (String, DynValue) {
    (name.to_string(), Tensor::from_array(value).unwrap().into_dyn())
}

pub fn i64_input(name: &str, value: ArrayD<i64>) -> (String, DynValue) {
    (name.to_string(), Tensor::from_array(value).unwrap().into_dyn())
}

/// Runs a session and returns every f32 output by name (other outputs as raw values).
pub fn run(session: &mut Session, inputs: Vec<(String, DynValue)>) -> (HashMap<String, ArrayD<f32>>, HashMap<String, DynValue>) {
    let names: Vec<String> = session.outputs().iter().map(|o| o.name().to_string()).collect();
    let mut outputs = session.run(inputs).unwrap_or_else(|e| panic!("run failed: {e}"));
    let mut floats = HashMap::new();
    let mut raw = HashMap::new();
    for n in names {
        let v = outputs.remove(n.as_str()).unwrap();
        if let Ok(a) = v.try_extract_array::<f32>() {
            floats.insert(n.clone(), a.to_owned());
        }
        raw.insert(n, v);
    }
    (floats, raw)
}

pub fn max_abs_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape(), "shape mismatch");
    a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Asserts closeness and returns the max abs error (for reporting).
#[track_caller]
pub fn assert_close(what: &str, got: &ArrayD<f32>, want: &ArrayD<f32>, tol: f32) -> f32 {
    let err = max_abs_diff(got, want);
    println!("{what}: max abs error {err:.3e} (tolerance {tol:.0e})");
    assert!(err <= tol, "{what}: max abs error {err} > {tol}");
    err
}

/// Rewrites the JSON header of a safetensors file, keeping the data section.
pub fn edit_header(path: &Path, edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let mut text = serde_json::to_string(&header).unwrap();
    while (8 + text.len()) % 8 != 0 {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}
