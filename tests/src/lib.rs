//! Shared helpers for the end-to-end tests in `tests/tests/`: a tiny checkpoint exported
//! to a bundle once per test binary, and synthetic videos.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use loc3r_export::bundle::{export_bundle, BundleOptions};
use loc3r_export::tiny::{make_tiny, TinyOptions};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `make-tiny --seed <seed>` exported to an fp32 bundle; made once per seed and test binary.
pub fn tiny_bundle(seed: u64) -> &'static Path {
    static BUNDLES: Mutex<BTreeMap<u64, &'static Path>> = Mutex::new(BTreeMap::new());
    // A test that panicked while exporting leaves nothing behind for its seed: go on.
    let mut bundles = BUNDLES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    bundles.entry(seed).or_insert_with(|| {
        // Lives as long as the test binary, like any static (statics are never dropped).
        let tmp: &'static tempfile::TempDir = Box::leak(Box::new(tempfile::tempdir().expect("tempdir")));
        let ckpt = tmp.path().join("checkpoint");
        make_tiny(&ckpt, &TinyOptions { seed, ..TinyOptions::default() }, |_, _| {}).expect("make-tiny");
        let bundle = tmp.path().join("bundle");
        export_bundle(&ckpt, &bundle, &BundleOptions::default(), |_| {}).expect("export");
        Box::leak(bundle.into_boxed_path())
    })
}

/// A copy of the tiny seed-1 bundle in `dir`, for tests that edit a bundle's files.
pub fn tiny_bundle_copy(dir: &Path) -> PathBuf {
    bundle_copy(tiny_bundle(1), dir)
}

/// A copy of `bundle` in `dir/bundle-copy`.
pub fn bundle_copy(bundle: &Path, dir: &Path) -> PathBuf {
    let copy = dir.join("bundle-copy");
    std::fs::create_dir(&copy).expect("create the bundle copy");
    for entry in std::fs::read_dir(bundle).expect("read the bundle") {
        let entry = entry.expect("bundle entry");
        std::fs::copy(entry.path(), copy.join(entry.file_name())).expect("copy a bundle file");
    }
    copy
}

/// A copy of `bundle` in `dir/bundle-copy` whose model context is `max_positions` long
/// (manifest `runtime.llm.max_positions`), for tests of what happens at the context's end.
pub fn bundle_with_context(bundle: &Path, dir: &Path, max_positions: usize) -> PathBuf {
    let copy = bundle_copy(bundle, dir);
    let manifest_path = copy.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).expect("read the manifest");
    let mut manifest: serde_json::Value = serde_json::from_str(&text).expect("manifest JSON");
    manifest["runtime"]["llm"]["max_positions"] = max_positions.into();
    std::fs::write(&manifest_path, serde_json::to_string_pretty(&manifest).expect("JSON")).expect("write the manifest");
    copy
}

/// The `loc3r-serve` binary that cargo built for this workspace (next to the test binary).
pub fn serve_exe() -> PathBuf {
    let mut p = std::env::current_exe().expect("test binary path");
    p.pop();
    if p.ends_with("deps") {
        p.pop();
    }
    let exe = p.join("loc3r-serve");
    assert!(exe.is_file(), "{} not built; run the tests through `cargo test --workspace`", exe.display());
    exe
}

/// A synthetic test video (ffmpeg's `testsrc`, moving patterns) of `frames` frames.
pub fn synthetic_video(dir: &Path, name: &str, width: usize, height: usize, frames: usize) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={width}x{height}:rate=10"))
        .args(["-frames:v", &frames.to_string(), "-pix_fmt", "yuv420p"])
        .arg(&path)
        .status()
        .expect("ffmpeg is installed by tools/bootstrap");
    assert!(status.success(), "ffmpeg failed to write {}", path.display());
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_bundles_are_cached_per_seed() {
        let (one, two) = (tiny_bundle(1), tiny_bundle(2));
        assert_ne!(one, two);
        assert_eq!(tiny_bundle(1), one, "the same seed reuses its bundle");
        // The manifest lists every file's sha256.
        let manifest = |b: &Path| std::fs::read_to_string(b.join("manifest.json")).expect("manifest.json");
        assert_ne!(manifest(one), manifest(two), "another seed, other weights");
    }
}
