//! Monotonic milliseconds on the Unix epoch, for sliding windows and calendar quotas alike.
//!
//! Owns the [`Clock`] trait and its two implementations: [`MonotonicClock`] for production and
//! [`ManualClock`] for tests that drive time explicitly. Must not touch time zones or periods
//! (`calendar.rs`, `quota.rs`).
//!
//! The production clock reads the wall clock once, at start, and then advances by the monotonic
//! clock: a sliding window never jumps when NTP steps the wall clock, and a quota's period
//! boundary is where the wall clock said it would be at start plus the time elapsed since. Over
//! a long uptime the two drift apart by the host oscillator's error (typically a few ppm, i.e.
//! about a second per week); a restart realigns them. Because readings are Unix milliseconds,
//! an hour window's fixed slots line up with the store's hour rows.
//!
//! [`MonotonicClock::starting_at`] starts the same clock at a chosen instant instead of the wall
//! clock: the binary uses it for the test-only `TOLLGATE_CLOCK_START_MS`, so a load test can cross
//! a quota's period boundary in seconds (`loadtest/quota-boundary.sh`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of monotonic milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// Unix milliseconds (see the module docs); never decreases.
    fn now_ms(&self) -> u64;

    /// Unix milliseconds at `at`, a moment just read (a request's start): a clock that follows
    /// the monotonic clock turns it into its reading without reading the time again. A clock
    /// moved by hand reads its own time.
    fn ms_at(&self, at: Instant) -> u64 {
        let _ = at;
        self.now_ms()
    }
}

/// The production clock: the wall clock at start plus the monotonic time elapsed since.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    /// Captured once so every reading is a cheap `Instant` subtraction.
    base: Instant,
    /// Unix milliseconds at `base`.
    base_unix_ms: u64,
}

impl MonotonicClock {
    /// A clock reading the wall clock now.
    pub fn new() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self::starting_at(u64::try_from(unix.as_millis()).unwrap_or(0))
    }

    /// A clock reading `unix_ms` now and advancing by the monotonic clock from there.
    pub fn starting_at(unix_ms: u64) -> Self {
        Self {
            base: Instant::now(),
            base_unix_ms: unix_ms,
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
        self.ms_at(Instant::now())
    }

    fn ms_at(&self, at: Instant) -> u64 {
        let elapsed = at.saturating_duration_since(self.base).as_millis();
        self.base_unix_ms
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
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
        // On the Unix epoch: after 2020-01-01.
        assert!(a > 1_577_836_800_000);
    }

    #[test]
    fn a_clock_can_start_at_a_chosen_instant() {
        let start = 1_798_761_590_000; // 2026-12-31 23:59:50 UTC
        let clock = MonotonicClock::starting_at(start);
        let a = clock.now_ms();
        assert!((start..start + 1_000).contains(&a));
        assert!(clock.now_ms() >= a);
    }

    /// A moment already read reads as the clock would have then: later by what lies between,
    /// never before the clock's start; a hand-moved clock keeps its own time.
    #[test]
    fn a_moment_already_read_is_turned_into_the_reading() {
        let before = Instant::now();
        let clock = MonotonicClock::starting_at(1_000_000);
        let at = Instant::now();
        let ms = clock.ms_at(at);
        assert!((1_000_000..1_001_000).contains(&ms));
        assert_eq!(clock.ms_at(at + Duration::from_secs(5)), ms + 5_000);
        assert!(clock.now_ms() >= ms);
        assert_eq!(clock.ms_at(before), 1_000_000);
        let manual = ManualClock::new(7);
        assert_eq!(manual.ms_at(at + Duration::from_secs(5)), 7);
    }
}
