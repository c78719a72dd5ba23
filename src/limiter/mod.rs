//! The rate limiter: keys, rules, the sliding window counter, and the sharded table of counters.
//!
//! Owns every decision about whether a request fits its limits, and the in-memory state behind
//! it. Must not touch HTTP, config parsing, the usage store or the admin plane: the proxy hands in
//! compiled [`Rule`]s and extracted [`Key`]s and gets back a [`Decision`] value; the admin plane
//! reads through [`Limiter::snapshot`] and [`Limiter::reset_key`].
//!
//! ```text
//! proxy ── [Check { rule, key, cost }] ──▶ Limiter::check ──▶ Decision::{Allow, Deny}
//!                                            │
//!            check.rs   enforcing checks one lock at a time, rollback on deny, then shadows
//!            table.rs   DashMap<hash(rule, key), Entry>, max_keys bound, sweep
//!            entry.rs   one key's slots: evaluate / commit / rollback
//!            window.rs  the sliding window counter as pure functions of (slot, now)
//! ```
//!
//! - `clock.rs`: monotonic milliseconds; tests drive a [`ManualClock`].
//! - `key.rs`: borrowed key parts, the display form and the seeded hash.
//! - `rule.rs`: compiled rules and limits, with per-key overrides.
//! - `decision.rs`: what goes in and what comes out.
//!
//! Two product rules hold everywhere: a request is allowed only if every window of every
//! enforcing check allows it, and a denied request consumes nothing. The counter's error against
//! an exact sliding log is bounded by the previous window's count (see `window.rs`).

mod bound;
pub mod calendar;
mod check;
mod clock;
mod decision;
mod entry;
pub mod extract;
pub mod fields;
pub mod jwt;
mod key;
pub mod quota;
mod report;
mod rule;
mod seed;
mod table;
pub mod tap;
pub mod usage;
mod window;

pub use bound::{BoundRule, RuleMetrics};
pub use clock::{Clock, ManualClock, MonotonicClock};
pub use decision::{Check, Decision, Statuses, WindowStatus};
pub use key::{DisplayBuf, Key, KeyPart, ANONYMOUS, OVERFLOW};
pub use quota::Quota;
pub use report::{KeyUsage, WindowUsage};
pub use rule::{rule_id, write_span, Limits, Rule, Window};
pub use table::{EntryView, IdentityHasher, Limiter};
pub use tap::ViolationTap;
pub use usage::UsageLog;
pub use window::Slot;
