//! What the proxy asks the limiter and what it gets back.
//!
//! Owns [`Check`] (one rule applied to one key), [`WindowStatus`] (the numbers behind the
//! `RateLimit` headers) and [`Decision`]. Must not touch HTTP: turning a decision into a response
//! happens in one place in the proxy. A rejection is a value here, not an error.

use smallvec::SmallVec;

use super::calendar::PeriodKind;
use super::key::Key;
use super::rule::Rule;

/// One rule applied to one key with a cost (usually 1).
#[derive(Debug, Clone)]
pub struct Check<'r, 'k> {
    pub rule: &'r Rule,
    pub key: Key<'k>,
    pub cost: u32,
}

/// The state of one window of one enforcing check, for `RateLimit` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowStatus {
    /// Index into the checks slice passed to the limiter.
    pub check: u16,
    /// Index into the applied limits' windows (which may be an override's).
    pub window: u8,
    pub max: u32,
    /// The window's length, or the calendar period's.
    pub dur_ms: u64,
    /// Set for a calendar quota (names the policy `rule-day` and so on).
    pub calendar: Option<PeriodKind>,
    /// Cost that would still pass now: `floor(max − estimate)`, after this request if allowed.
    pub remaining: u32,
    /// Milliseconds until the current fixed window ends (on the denying window: the retry-after).
    pub reset_ms: u64,
}

/// Statuses of all enforcing windows; four fit without allocating.
pub type Statuses = SmallVec<[WindowStatus; 4]>;

/// The outcome of one request against all its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every enforcing window admitted the request, and it was counted in all of them.
    Allow {
        statuses: Statuses,
        /// The first shadow `(check, window)` that would have denied, if any.
        shadow_denied: Option<(u16, u8)>,
    },
    /// Some enforcing window is full; nothing was counted anywhere.
    Deny {
        /// The check and window that allow last (the one that sets `retry_after_ms`).
        check: u16,
        window: u8,
        /// The exact wait until this request would pass if nothing else is admitted meanwhile;
        /// for a cost above the window's max (never passes), the window's length.
        retry_after_ms: u64,
        /// State after rollback, i.e. as if this request had never come.
        statuses: Statuses,
    },
}

impl Decision {
    /// Whether the request may go upstream.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// The statuses of the enforcing windows.
    pub fn statuses(&self) -> &[WindowStatus] {
        match self {
            Decision::Allow { statuses, .. } | Decision::Deny { statuses, .. } => statuses,
        }
    }

    /// The retry-after of a denial, `None` when allowed.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Decision::Allow { .. } => None,
            Decision::Deny { retry_after_ms, .. } => Some(*retry_after_ms),
        }
    }
}
