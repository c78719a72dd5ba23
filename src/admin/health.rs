//! Probes: `/live` is always 200 while the process runs; `/ready` (and its alias `/health`) is a
//! latch set once config is loaded and listeners are bound, and cleared when shutdown begins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The readiness latch.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
