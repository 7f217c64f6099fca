//! Cooperative cancellation of model work: a [`Cancel`] token (a flag and an optional
//! deadline) that the observe path checks between stages, frame batches, CUT3R frames and
//! prefill chunks ([`crate::Loc3r::observe_video_cancellable`]). A cancelled or expired
//! token makes the work stop at its next check with [`Error::Cancelled`]; the work already
//! done is dropped. A single ONNX Runtime call is never interrupted, so the latency of a
//! cancellation is at most one graph call.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A cancellation token; clones share the flag. Cancel it from any thread.
#[derive(Clone, Debug, Default)]
pub struct Cancel {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    flag: AtomicBool,
    deadline: Option<Instant>,
    /// Test-only: each check sleeps this long first (see [`Cancel::paced`]).
    pace: Option<Duration>,
}

impl Cancel {
    /// A token that stops work only when [`Cancel::cancel`] is called.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// A token that also stops work once `deadline` has passed.
    pub fn with_deadline(deadline: Instant) -> Cancel {
        Cancel { inner: Arc::new(Inner { deadline: Some(deadline), ..Inner::default() }) }
    }

    /// Test-only (not a user setting): every [`Cancel::check`] first waits `per_check` (or
    /// until cancelled), so that a short video's observation takes a known, long time.
    #[doc(hidden)]
    pub fn paced(self, per_check: Duration) -> Cancel {
        let flag = AtomicBool::new(self.inner.flag.load(Ordering::Acquire));
        Cancel { inner: Arc::new(Inner { flag, deadline: self.inner.deadline, pace: Some(per_check) }) }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.inner.deadline
    }

    /// Asks the work to stop at its next check.
    pub fn cancel(&self) {
        self.inner.flag.store(true, Ordering::Release);
    }

    /// Whether [`Cancel::cancel`] was called or the deadline passed.
    pub fn is_cancelled(&self) -> bool {
        self.inner.flag.load(Ordering::Acquire) || self.deadline_passed()
    }

    fn deadline_passed(&self) -> bool {
        self.inner.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// `Err(Error::Cancelled)` once cancelled or past the deadline: the check made between
    /// steps of model work.
    pub fn check(&self) -> Result<()> {
        if let Some(pace) = self.inner.pace {
            let until = Instant::now() + pace;
            while !self.is_cancelled() {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(Duration::from_millis(10)));
            }
        }
        if self.inner.flag.load(Ordering::Acquire) {
            Err(Error::Cancelled("cancelled by the caller"))
        } else if self.deadline_passed() {
            Err(Error::Cancelled("the deadline passed"))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Fault;

    #[test]
    fn a_token_stops_work_when_cancelled_or_past_its_deadline() {
        let c = Cancel::new();
        assert!(c.check().is_ok() && !c.is_cancelled());
        let shared = c.clone();
        shared.cancel();
        assert!(c.is_cancelled());
        let e = c.check().unwrap_err();
        assert!(matches!(e, Error::Cancelled(_)), "{e}");
        assert_eq!(e.fault(), Fault::Runtime);
        assert!(e.to_string().contains("cancelled by the caller"), "{e}");

        let later = Cancel::with_deadline(Instant::now() + Duration::from_secs(3600));
        assert!(later.check().is_ok());
        let past = Cancel::with_deadline(Instant::now());
        assert!(past.is_cancelled());
        assert!(past.check().unwrap_err().to_string().contains("deadline"));
    }

    #[test]
    fn a_paced_check_waits_but_returns_at_once_when_cancelled() {
        let c = Cancel::new().paced(Duration::from_secs(3600));
        let other = c.clone();
        let t = std::thread::spawn(move || c.check());
        std::thread::sleep(Duration::from_millis(50));
        other.cancel();
        // Without the cancel the check would sleep an hour; the join returns promptly.
        assert!(matches!(t.join().unwrap(), Err(Error::Cancelled(_))));
    }
}
