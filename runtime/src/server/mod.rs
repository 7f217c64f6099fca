//! `loc3r-serve serve`: the HTTP service (axum + tokio), layered as TGI's router:
//! [`http`] (routes, auth, SSE; [`openai`]: the OpenAI chat completions) -> [`validate`]
//! (requests -> `Valid*`) -> [`schedule`] (admission with 429, bounded blocking pool) ->
//! the [`crate::pipeline`], on scenes from the [`store`] (registered videos, LRU eviction
//! in bytes, re-observe). Built with the `server` feature (on by default).

pub mod conn;
pub mod error;
pub mod http;
pub mod metrics;
pub mod openai;
pub mod schedule;
pub mod store;
pub mod uploads;
pub mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::{Loc3r, SessionOptions};

/// Everything `serve` is configured with (the CLI flags).
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub bundle: PathBuf,
    pub addr: SocketAddr,
    pub session: SessionOptions,
    /// Model jobs running at once (the blocking pool).
    pub workers: usize,
    /// Model jobs waiting or running; beyond that 429.
    pub max_queue: usize,
    /// Registered videos kept; beyond that the least recently used is forgotten.
    pub max_sessions: usize,
    pub cache_mb: usize,
    pub api_key_file: Option<PathBuf>,
    pub allow_dir: Option<PathBuf>,
    pub max_body_mb: usize,
    pub max_frames: usize,
    /// Most pixels per frame of a video or image (422 past it, before decoding).
    pub max_pixels: u64,
    pub max_new_tokens: usize,
    pub request_timeout: Duration,
    /// Deadline of observing a video (registering it, or re-observing an evicted one).
    pub observe_timeout: Duration,
    /// A connection must send a whole request head within this of opening or of its last
    /// response (idle keep-alive included); else it is closed.
    pub header_timeout: Duration,
    /// The longest wait for the next bytes of a request body (408 past it).
    pub body_timeout: Duration,
    pub shutdown_timeout: Duration,
}

/// Opens the bundle, binds, prints `listening on http://ADDR` on stdout and serves until
/// SIGINT/SIGTERM; in-flight requests then get `shutdown_timeout` to finish (connections
/// without one are closed at once, see [`conn`]).
pub fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    init_tracing();
    let api_key = match &cfg.api_key_file {
        Some(f) => {
            // The operator's arguments: input errors (exit code 2), like a bad --bundle.
            let key = std::fs::read_to_string(f).map_err(|e| crate::Error::Input(format!("--api-key-file {}: {e}", f.display())))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(crate::Error::Input(format!("--api-key-file {} is empty; put the API key in it", f.display())).into());
            }
            Some(<[u8; 32]>::from(Sha256::digest(key.as_bytes())))
        }
        None => None,
    };
    let allow_dir = match &cfg.allow_dir {
        Some(d) => Some(d.canonicalize().map_err(|e| crate::Error::Input(format!("--allow-dir {}: {e}", d.display())))?),
        None => None,
    };
    let model = Loc3r::open(&cfg.bundle, &cfg.session).with_context(|| format!("opening bundle {}", cfg.bundle.display()))?;
    let default_frames = model.bundle().manifest.runtime.frames.min(cfg.max_frames);
    let model_name = cfg.bundle.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "loc3r".into());
    let uploads_root = uploads::UploadsDir::default_root();
    let (uploads, swept) =
        uploads::UploadsDir::create(&uploads_root).with_context(|| format!("creating the upload directory under {}", uploads_root.display()))?;
    for dir in &swept.removed {
        tracing::info!(dir = %dir.display(), "removed the uploads of a server that is no longer running");
    }
    let metrics = Arc::new(metrics::Metrics::default());
    let state = Arc::new(http::AppState {
        model,
        model_name,
        store: store::Store::new(cfg.cache_mb.saturating_mul(1 << 20), cfg.max_sessions, uploads.path().to_path_buf(), cfg.max_pixels, metrics.clone()),
        sched: schedule::Scheduler::new(cfg.workers, cfg.max_queue, cfg.request_timeout, cfg.observe_timeout, metrics.clone()),
        metrics,
        limits: validate::Limits { max_frames: cfg.max_frames, default_frames, max_new_tokens: cfg.max_new_tokens, max_text_chars: 4096, allow_dir },
        api_key,
        body_limit: cfg.max_body_mb.saturating_mul(1 << 20),
        body_timeout: cfg.body_timeout,
        shutdown: tokio::sync::watch::Sender::new(false),
        next_id: AtomicU64::new(1),
        registering: http::Registering::default(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("loc3r-http").build().context("starting tokio")?;
    let deadline = cfg.shutdown_timeout;
    let uploads_dir = uploads.path().to_path_buf();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.addr).await.with_context(|| format!("binding {}", cfg.addr))?;
        let addr = listener.local_addr()?;
        println!("loc3r-serve listening on http://{addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tracing::info!(%addr, bundle = %cfg.bundle.display(), workers = cfg.workers, cache_mb = cfg.cache_mb, auth = cfg.api_key_file.is_some(), "serving");
        let shutdown = state.shutdown.clone();
        conn::serve(listener, http::router(state), cfg.header_timeout, shutdown, async move {
            shutdown_signal().await;
            tracing::info!(deadline_s = deadline.as_secs_f64(), "shutting down: finishing in-flight requests");
            tokio::spawn(async move {
                tokio::time::sleep(deadline).await;
                tracing::warn!("shutdown deadline passed; cancelling the remaining requests");
                // exit() skips destructors: remove the uploads here.
                let _ = std::fs::remove_dir_all(&uploads_dir);
                std::process::exit(0);
            });
        })
        .await;
        anyhow::Ok(())
    })?;
    rt.shutdown_timeout(deadline);
    drop(uploads);
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LOC3R_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).with_target(true).try_init();
}
