//! Model work on a bounded blocking pool: admission (`--max-queue` jobs waiting or
//! running, beyond that 429), then at most `--workers` jobs on `spawn_blocking` at once,
//! each under a deadline: `--request-timeout-s` for questions, `--observe-timeout-s` for
//! observations (registering a video, re-observing an evicted one); 504 when exceeded.
//! Every job gets a [`Cancel`] token with its deadline, cancelled too when the request is
//! dropped (the client went away): the model work checks it between frames, batches,
//! prefill chunks and decode steps and stops, so a timed-out or abandoned job frees its
//! worker within about one graph call. The scenes the jobs work on are in [`super::store`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use super::metrics::Metrics;
use crate::Cancel;

pub struct Scheduler {
    admit: Arc<Semaphore>,
    run: Arc<Semaphore>,
    inflight: Arc<AtomicUsize>,
    timeout: Duration,
    observe_timeout: Duration,
    metrics: Arc<Metrics>,
}

/// Which deadline a job runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// A question or a localisation: `--request-timeout-s`.
    Request,
    /// Observing a video: `--observe-timeout-s`.
    Observe,
}

/// A job that passed admission; holds its queue slot until it finishes.
pub struct Admitted {
    slot: OwnedSemaphorePermit,
    run: Arc<Semaphore>,
    inflight: Arc<AtomicUsize>,
    pub deadline: Instant,
    timeout: Duration,
    kind: JobKind,
}

struct InflightGuard(Arc<AtomicUsize>);
impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Cancels the job's token when the request stops waiting for it (done, timed out or dropped).
struct CancelOnDrop(Cancel);
impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Test-only, not a user setting: when `LOC3R_TEST_OBSERVE_PACE_FILE` names a file holding
/// a number of milliseconds, every cancellation check of an observation first waits that
/// long (read at each observation, so a test can make later observations slow).
fn test_pace() -> Option<Duration> {
    let file = std::env::var_os("LOC3R_TEST_OBSERVE_PACE_FILE")?;
    let ms: u64 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
    Some(Duration::from_millis(ms))
}

impl Scheduler {
    pub fn new(workers: usize, max_queue: usize, timeout: Duration, observe_timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Scheduler {
            admit: Arc::new(Semaphore::new(max_queue.max(workers).max(1))),
            run: Arc::new(Semaphore::new(workers.max(1))),
            inflight: Arc::new(AtomicUsize::new(0)),
            timeout,
            observe_timeout,
            metrics,
        }
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Takes a queue slot or refuses with 429; the job's deadline starts now.
    pub fn admit(&self, kind: JobKind) -> Result<Admitted, ApiError> {
        let slot = self.admit.clone().try_acquire_owned().map_err(|_| {
            self.metrics.overloaded();
            ApiError::overloaded()
        })?;
        let timeout = match kind {
            JobKind::Request => self.timeout,
            JobKind::Observe => self.observe_timeout,
        };
        Ok(Admitted { slot, run: self.run.clone(), inflight: self.inflight.clone(), deadline: Instant::now() + timeout, timeout, kind })
    }

    /// Admission + [`Admitted::run`] of a question or localisation.
    pub async fn run<T: Send + 'static>(&self, job: impl FnOnce(&Cancel) -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
        self.admit(JobKind::Request)?.run(job).await
    }

    /// Admission + [`Admitted::run`] of an observation (under `--observe-timeout-s`).
    pub async fn observe<T: Send + 'static>(&self, job: impl FnOnce(&Cancel) -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
        self.admit(JobKind::Observe)?.run(job).await
    }
}

impl Admitted {
    /// Waits for a worker, runs `job(cancel)` on the blocking pool; `cancel` carries the
    /// deadline and is cancelled when this future ends or is dropped. Past the deadline the
    /// caller gets 504 at once; the job stops at its next cancellation check and frees its
    /// worker then (the pool stays bounded).
    pub async fn run<T: Send + 'static>(self, job: impl FnOnce(&Cancel) -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
        let Admitted { slot, run, inflight, deadline, timeout, kind } = self;
        inflight.fetch_add(1, Ordering::Relaxed);
        let guard = InflightGuard(inflight);
        let mut cancel = Cancel::with_deadline(deadline);
        if kind == JobKind::Observe {
            if let Some(pace) = test_pace() {
                cancel = cancel.paced(pace);
            }
        }
        let on_drop = CancelOnDrop(cancel.clone());
        let work = async move {
            let _on_drop = on_drop;
            let worker = run.acquire_owned().await.map_err(|_| ApiError::unavailable("the worker pool is closed (shutting down)"))?;
            let handle = tokio::task::spawn_blocking(move || {
                let _held = (slot, worker, guard);
                // Cancelled (the client went away) while waiting for the worker: no work.
                if cancel.is_cancelled() {
                    return Err(ApiError::timeout_of(kind, timeout));
                }
                job(&cancel)
            });
            match handle.await {
                // The job saw its deadline at a cancellation check before the timer below
                // fired (a busy machine delays the timer): the same 504 as the timer's, naming
                // the flag that sets the deadline.
                Ok(Err(e)) if e.code == "timeout" && Instant::now() >= deadline => Err(ApiError::timeout_of(kind, timeout)),
                Ok(r) => r,
                Err(e) => Err(ApiError::internal(format!("a model worker failed: {e}"))),
            }
        };
        match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::timeout_of(kind, timeout)),
        }
    }
}
