//! Model work on a bounded blocking pool: admission (`--max-queue` jobs waiting or
//! running, beyond that 429), then at most `--workers` jobs on `spawn_blocking` at once,
//! each under the per-request deadline (`--request-timeout-s`, 504 when exceeded). The
//! scenes the jobs work on are in [`super::store`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use super::metrics::Metrics;

pub struct Scheduler {
    admit: Arc<Semaphore>,
    run: Arc<Semaphore>,
    inflight: Arc<AtomicUsize>,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

/// A job that passed admission; holds its queue slot until it finishes.
pub struct Admitted {
    slot: OwnedSemaphorePermit,
    run: Arc<Semaphore>,
    inflight: Arc<AtomicUsize>,
    pub deadline: Instant,
    timeout: Duration,
}

struct InflightGuard(Arc<AtomicUsize>);
impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Scheduler {
    pub fn new(workers: usize, max_queue: usize, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Scheduler {
            admit: Arc::new(Semaphore::new(max_queue.max(workers).max(1))),
            run: Arc::new(Semaphore::new(workers.max(1))),
            inflight: Arc::new(AtomicUsize::new(0)),
            timeout,
            metrics,
        }
    }

    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Takes a queue slot or refuses with 429.
    pub fn admit(&self) -> Result<Admitted, ApiError> {
        let slot = self.admit.clone().try_acquire_owned().map_err(|_| {
            self.metrics.overloaded();
            ApiError::overloaded()
        })?;
        Ok(Admitted { slot, run: self.run.clone(), inflight: self.inflight.clone(), deadline: Instant::now() + self.timeout, timeout: self.timeout })
    }

    /// Admission + [`Admitted::run`].
    pub async fn run<T: Send + 'static>(&self, job: impl FnOnce(Instant) -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
        self.admit()?.run(job).await
    }
}

impl Admitted {
    /// Waits for a worker, runs `job(deadline)` on the blocking pool. Past the deadline
    /// the caller gets 504; a job that cannot be interrupted finishes in the background
    /// and keeps its worker until then (so the pool stays bounded).
    pub async fn run<T: Send + 'static>(self, job: impl FnOnce(Instant) -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
        let Admitted { slot, run, inflight, deadline, timeout } = self;
        inflight.fetch_add(1, Ordering::Relaxed);
        let guard = InflightGuard(inflight);
        let work = async move {
            let worker = run.acquire_owned().await.map_err(|_| ApiError::unavailable("the worker pool is closed (shutting down)"))?;
            let handle = tokio::task::spawn_blocking(move || {
                let _held = (slot, worker, guard);
                job(deadline)
            });
            match handle.await {
                Ok(r) => r,
                Err(e) => Err(ApiError::internal(format!("a model worker failed: {e}"))),
            }
        };
        match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::timeout(timeout.as_secs_f64())),
        }
    }
}
