//! ONNX Runtime sessions for bundle graphs, with errors that name the graph.

use std::path::Path;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use crate::error::{Error, Result};

/// Session settings (CPU execution provider).
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Intra-op threads (0 = ONNX Runtime's default: one per core).
    pub intra_threads: usize,
    /// Graph optimisation level 0..=3 (disable, basic, extended, all).
    pub optimization_level: u8,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { intra_threads: 0, optimization_level: 3 }
    }
}

/// Loads the graph at `path` on the CPU execution provider.
pub fn load(path: &Path, opts: &SessionOptions) -> Result<Session> {
    let env = crate::ort_env::environment()?;
    let graph = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let err = |e: ort::Error| Error::ort(format!("loading {graph}"), e);
    let level = match opts.optimization_level {
        0 => GraphOptimizationLevel::Disable,
        1 => GraphOptimizationLevel::Level1,
        2 => GraphOptimizationLevel::Level2,
        _ => GraphOptimizationLevel::Level3,
    };
    let mut builder = Session::builder(env)
        .map_err(err)?
        .with_optimization_level(level)
        .map_err(|e| err(ort::Error::<()>::from(e)))?;
    if opts.intra_threads > 0 {
        builder = builder.with_intra_threads(opts.intra_threads).map_err(|e| err(ort::Error::<()>::from(e)))?;
    }
    builder.commit_from_file(path).map_err(err)
}
