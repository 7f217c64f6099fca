//! Opening a bundle: the manifest, the tokenizer, and one ONNX Runtime session per graph.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use loc3r_bundle::Graph;
use ort::session::Session;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::manifest::{Manifest, TOKENIZER_FILE};
use crate::session::{load, SessionOptions};

/// A loaded bundle. Sessions are behind mutexes (ONNX Runtime runs take `&mut`), so a
/// `Bundle` can be shared between threads.
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub tokenizer: Tokenizer,
    /// Frames per encoder call and positions per prefill call (`SessionOptions`; 0 = no limit).
    pub frame_batch: usize,
    pub prefill_chunk: usize,
    sessions: BTreeMap<Graph, Mutex<Session>>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle").field("dir", &self.dir).field("graphs", &self.sessions.keys().collect::<Vec<_>>()).finish()
    }
}

/// `0..total` in consecutive ranges of at most `limit` (0 = one range).
pub fn batches(total: usize, limit: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let step = if limit == 0 { total.max(1) } else { limit };
    (0..total).step_by(step).map(move |start| start..(start + step).min(total))
}

impl Bundle {
    /// Reads the manifest, checks that every listed file is present with its recorded
    /// size (full sha256 verification is `loc3r-export inspect`), and loads every graph.
    pub fn open(dir: &Path, opts: &SessionOptions) -> Result<Bundle> {
        if !dir.is_dir() {
            return Err(Error::Bundle(format!("{}: bundle directory not found; create one with `loc3r-export export`", dir.display())));
        }
        // Every file is checked to be a regular one before anything opens it (a FIFO would block).
        for path in [dir.join(crate::manifest::MANIFEST_FILE), dir.join(TOKENIZER_FILE)] {
            match crate::files::require_regular(&path, false) {
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => return Err(Error::BundleFile { path, error: e }),
                _ => {}
            }
        }
        let manifest = Manifest::read(dir)?;
        check_device_takes_weights(manifest.quantization.as_ref(), &opts.device)?;
        for (name, entry) in &manifest.files {
            let path = dir.join(name);
            let len = match crate::files::require_regular(&path, false) {
                Ok(meta) => meta.len(),
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => return Err(Error::BundleFile { path, error: e }),
                Err(_) => return Err(Error::Bundle(format!("{}: listed in manifest.json but missing; re-export the bundle", path.display()))),
            };
            if len != entry.bytes {
                return Err(Error::Bundle(format!(
                    "{}: {len} bytes, manifest.json says {}; the bundle is incomplete or corrupt (check with `loc3r-export inspect`)",
                    path.display(),
                    entry.bytes
                )));
            }
        }
        let tok_path = dir.join(TOKENIZER_FILE);
        let tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| Error::Bundle(format!("{}: cannot load tokenizer: {e}", tok_path.display())))?;
        let mut sessions = BTreeMap::new();
        // Optional graphs the pipeline does not run (e.g. cut3r_points) are not loaded.
        for graph in Graph::PIPELINE {
            if let Some(entry) = manifest.graphs.get(graph.name()) {
                let session = load(&dir.join(&entry.file), opts)?;
                sessions.insert(graph, Mutex::new(session));
            }
        }
        Ok(Bundle { dir: dir.to_path_buf(), manifest, tokenizer, frame_batch: opts.frame_batch, prefill_chunk: opts.prefill_chunk, sessions })
    }

    /// The session of a graph.
    pub fn session(&self, graph: Graph) -> Result<&Mutex<Session>> {
        self.sessions.get(&graph).ok_or_else(|| Error::Bundle(format!("the bundle has no `{graph}` graph; re-export it with all graphs (loc3r-export export)")))
    }

    /// The session of a graph, locked for one run.
    pub fn lock(&self, graph: Graph) -> Result<MutexGuard<'_, Session>> {
        lock_session(self.session(graph)?, graph.name())
    }
}

/// Refuses a device that cannot run the bundle's quantized weights, before any session is
/// built (TensorRT would otherwise fail deep inside engine building, or hand the op back
/// to a provider the user did not ask for).
fn check_device_takes_weights(quantization: Option<&loc3r_bundle::Quantization>, device: &crate::session::Device) -> Result<()> {
    use loc3r_bundle::QuantFormat;
    let Some(q) = quantization else { return Ok(()) };
    if q.format == QuantFormat::MatMulNBits && matches!(device, crate::session::Device::TensorRt { .. }) {
        return Err(Error::Input(format!(
            "the bundle's {} graph(s) hold {} weights as com.microsoft.MatMulNBits, an ONNX Runtime op TensorRT cannot build; \
             run it with --device cpu or cuda, or export a TensorRT bundle with --preset tensorrt-int8 (QDQ)",
            q.graphs.join(", "),
            q.weights
        )));
    }
    Ok(())
}

/// Locks a graph's session. A poisoned mutex means an earlier run panicked while holding
/// it: our bug, and the session may be in any state, so it is not used again.
fn lock_session<'a, T>(session: &'a Mutex<T>, graph: &str) -> Result<MutexGuard<'a, T>> {
    session.lock().map_err(|_| Error::Internal(format!("the `{graph}` session was poisoned by an earlier panic; reopen the bundle (restart the server)")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Fault;

    #[test]
    fn tensorrt_is_refused_for_matmulnbits_weights_only() {
        use crate::session::Device;
        use loc3r_bundle::{QuantFormat, Quantization, WeightBits};
        let quantization = |format| Quantization {
            weights: WeightBits::Int4,
            format,
            block_size: Some(32),
            symmetric: true,
            accuracy_level: None,
            method: "rtn".into(),
            layers: vec!["decoder".into()],
            graphs: vec!["decoder".into()],
            preset: None,
        };
        let tensorrt: Device = "tensorrt".parse().unwrap();
        let check = |q: Option<Quantization>, device: &Device| check_device_takes_weights(q.as_ref(), device);
        let e = check(Some(quantization(QuantFormat::MatMulNBits)), &tensorrt).unwrap_err();
        assert_eq!(e.fault(), Fault::Input);
        assert!(e.to_string().contains("decoder") && e.to_string().contains("--preset tensorrt-int8"), "{e}");
        check(Some(quantization(QuantFormat::MatMulNBits)), &Device::Cpu).unwrap();
        check(Some(quantization(QuantFormat::Qdq)), &tensorrt).unwrap();
        check(None, &tensorrt).unwrap();
    }

    #[test]
    fn a_poisoned_session_is_an_internal_error() {
        let m = Mutex::new(0u8);
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = m.lock().unwrap();
                panic!("a run panics while holding the session");
            })
            .join()
        });
        let e = lock_session(&m, "decoder").unwrap_err();
        assert_eq!((e.fault(), e.fault().exit_code()), (Fault::Internal, 1));
        assert!(e.to_string().contains("`decoder`") && e.to_string().contains("poisoned"), "{e}");
        let fine = Mutex::new(3u8);
        assert_eq!(*lock_session(&fine, "embed").unwrap(), 3);
    }
}
