//! Monotonic milliseconds for the sliding windows.
//!
//! Owns the [`Clock`] trait and its two implementations: [`MonotonicClock`] for production and
//! [`ManualClock`] for tests that drive time explicitly. Must not touch wall-clock time or time
//! zones: calendar quotas live elsewhere, and a sliding window must never jump when NTP does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A source of monotonic milliseconds. The origin is arbitrary; only differences matter.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since this clock's origin; never decreases.
    fn now_ms(&self) -> u64;
}

/// The production clock: milliseconds elapsed since the clock was built.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    /// Captured once so every reading is a cheap `Instant` subtraction.
    base: Instant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock moved only by hand, so tests never sleep.
#[derive(Debug, Default)]
pub struct ManualClock {
    /// Atomic so a shared `Arc<ManualClock>` can be advanced while the limiter reads it.
    now: AtomicU64,
}

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        Self {
            now: AtomicU64::new(start_ms),
        }
    }

    /// Moves the clock forward by `by` (whole milliseconds).
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.now.fetch_add(ms, Ordering::Relaxed);
    }

    /// Sets the reading to `ms`. Tests must keep it nondecreasing to honour [`Clock`].
    pub fn set(&self, ms: u64) {
        self.now.store(ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_by_hand() {
        let clock = ManualClock::new(5);
        assert_eq!(clock.now_ms(), 5);
        clock.advance(Duration::from_millis(10));
        assert_eq!(clock.now_ms(), 15);
        clock.set(100);
        assert_eq!(clock.now_ms(), 100);
    }

    #[test]
    fn monotonic_clock_never_goes_back() {
        let clock = MonotonicClock::default();
        let a = clock.now_ms();
        assert!(clock.now_ms() >= a);
    }
}
