//! Finding and loading the ONNX Runtime shared library.
//!
//! `ort` is built with `load-dynamic`: the library is opened at run time, and `ort`
//! panics if it is missing. Every binary calls [`init`] first, which looks for the
//! library itself and turns "not found" into one sentence telling the user what to do.
//! It lives in the contract crate because both the runtime and the exporter's checks
//! (`loc3r-export inspect`, graph tests) load graphs, and ort allows one environment per
//! process; the runtime re-exports it as `loc3r::ort_env`.
//!
//! Search order:
//! 1. `ORT_DYLIB_PATH` (set by `.cargo/config.toml` for `cargo run`/`cargo test`, or by the user);
//! 2. `.venv/ort/libonnxruntime.so` of the checkout this binary was built from
//!    (what `make bootstrap` installs);
//! 3. `.venv/ort/libonnxruntime.so` above the running executable (a moved checkout).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The ONNX Runtime library could not be found or loaded; the message says what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct OrtMissing(pub String);

type Result<T> = std::result::Result<T, OrtMissing>;

/// Where the project's bootstrap puts the library, relative to the checkout root.
const VENV_LIB: &str = ".venv/ort/libonnxruntime.so";
const FIX_HINT: &str = "run `make bootstrap` in the loc3r checkout, or set ORT_DYLIB_PATH to a libonnxruntime.so (1.31)";

/// What was loaded.
#[derive(Debug, Clone)]
pub struct OrtInfo {
    pub library: PathBuf,
    pub build_info: String,
}

static ENV: OnceLock<std::result::Result<(OrtInfo, ort::environment::Environment), String>> = OnceLock::new();

/// Loads ONNX Runtime once per process and returns what was loaded.
/// Safe to call from many threads and many times.
pub fn init() -> Result<&'static OrtInfo> {
    let loaded = ENV.get_or_init(|| {
        let library = locate_library()?;
        disable_session_file();
        let builder = ort::init_from(&library).map_err(|e| format!("cannot load ONNX Runtime from {}: {e}; {FIX_HINT}", library.display()))?;
        let env = builder.with_name("loc3r").with_telemetry(false).build().map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))?;
        let build_info = ort::info().to_string();
        Ok((OrtInfo { library, build_info }, env))
    });
    match loaded {
        Ok((info, _env)) => Ok(info),
        Err(message) => Err(OrtMissing(message.clone())),
    }
}

/// Microsoft's ONNX Runtime builds start a telemetry logger when the environment is created,
/// and it leaves a 51-byte session file `$TMPDIR/.ses` behind on every run. Disabling telemetry
/// through the API (done too) comes after that file is written; only `ORT_DISABLE_TELEMETRY`,
/// read when the environment is created, stops it. A user's own setting is kept.
fn disable_session_file() {
    if std::env::var_os("ORT_DISABLE_TELEMETRY").is_none() {
        // Called once, under the `OnceLock` that loads ONNX Runtime, before any of its threads
        // exist; the binaries load it before they start worker threads.
        std::env::set_var("ORT_DISABLE_TELEMETRY", "1");
    }
}

/// The process-wide ONNX Runtime environment (loading the library first if needed).
/// ort allows one environment per process; every session of the project uses this one.
pub fn environment() -> Result<&'static ort::environment::Environment> {
    init()?;
    match ENV.get() {
        Some(Ok((_, env))) => Ok(env),
        _ => unreachable!("init() succeeded, so the environment exists"),
    }
}

/// Loads the graph at `path` in a throw-away CPU session (one thread, basic optimisations):
/// the "does ONNX Runtime accept this graph" check of `loc3r-export inspect`. The runtime
/// builds its own sessions (device, threads, optimisation level) in `loc3r::session`.
pub fn check_loads(path: &Path) -> std::result::Result<(), String> {
    use ort::session::builder::GraphOptimizationLevel;
    use ort::session::Session;
    let env = environment().map_err(|e| e.to_string())?;
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let fail = |e: ort::Error| format!("ONNX Runtime: loading {file}: {e}");
    let builder = Session::builder(env).map_err(fail)?;
    let builder = builder.with_optimization_level(GraphOptimizationLevel::Level1).map_err(|e| fail(e.into()))?;
    let mut builder = builder.with_intra_threads(1).map_err(|e| fail(e.into()))?;
    builder.commit_from_file(path).map(drop).map_err(fail)
}

/// The candidate paths, in search order (existing or not).
pub fn candidate_paths() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        out.push(PathBuf::from(p));
    }
    // The checkout this crate was compiled in (bundle/ -> ..).
    out.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(VENV_LIB));
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(5) {
            out.push(dir.join(VENV_LIB));
        }
    }
    out
}

fn locate_library() -> std::result::Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        // An explicit setting that points nowhere is a mistake worth naming, not skipping.
        if !p.is_file() {
            return Err(format!("ONNX Runtime library not found at ORT_DYLIB_PATH={}; {FIX_HINT}", p.display()));
        }
        return Ok(p);
    }
    candidate_paths()
        .into_iter()
        .find(|p| p.is_file())
        .map(|p| p.canonicalize().unwrap_or(p))
        .ok_or_else(|| format!("ONNX Runtime library (libonnxruntime.so) not found; {FIX_HINT}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_the_bootstrapped_library() {
        let info = init().expect("make bootstrap installs ONNX Runtime before the tests run");
        assert!(info.library.is_file());
        assert!(info.build_info.contains("ORT Build Info"), "{}", info.build_info);
        // A second call returns the same, already loaded library.
        assert_eq!(init().unwrap().library, info.library);
    }
}
