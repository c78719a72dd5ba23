//! One decision across several checks: all-or-nothing over entries that live under different locks.
//!
//! Owns the order of a decision: enforcing checks first, each reserved under its own entry lock
//! and released before the next is taken (never two DashMap guards at once, so no lock-order
//! deadlock); then, if one denied, the rollback of earlier reservations; then shadow checks.
//! Must not touch slot arithmetic (`window.rs`) or table upkeep (`table.rs`).
//!
//! Between a reservation and its rollback another request may see the reserved cost and be denied;
//! that brief over-count is the price of never holding two locks, and it errs on the safe side.
//!
//! The common request carries one enforcing check and no shadow: it takes a fast path with one
//! lock, one pass over the windows and no reservation to undo (`Entry::decide`). It must decide
//! exactly as the general path would; `check_tests.rs` compares the two on random sequences.

use smallvec::SmallVec;

use super::decision::{Check, Decision, Statuses};
use super::entry::{Denial, Entry, Marks};
use super::key::{DisplayBuf, Key};
use super::rule::{Limits, Rule};
use super::table::Limiter;

/// A committed check that may have to be undone.
struct Reservation<'r> {
    hash: u64,
    cost: u32,
    marks: Marks,
    rule: &'r Rule,
    limits: &'r Limits,
}

/// The denial that decides the retry-after: the one that allows last.
#[derive(Clone, Copy)]
struct Blocker {
    check: u16,
    denial: Denial,
}

impl Limiter {
    /// Decides `checks` at `now_ms`: the request passes only if every window of every enforcing
    /// check allows it, and is then counted in all of them; a denied request is counted nowhere.
    pub fn check_at(&self, now_ms: u64, checks: &[Check<'_, '_>]) -> Decision {
        match checks {
            [c] if !c.rule.shadow => self.check_one(now_ms, c),
            _ => self.check_many(now_ms, checks),
        }
    }

    /// The fast path: one enforcing check, decided and counted under one lock in one pass.
    fn check_one(&self, now_ms: u64, c: &Check<'_, '_>) -> Decision {
        let mut statuses = Statuses::new();
        let (mut entry, hash, overflow) = self.lock(c.rule, &c.key, now_ms);
        let limits = limits_of(c.rule, &c.key, overflow);
        let denial = entry.decide(limits, c.cost, now_ms, &mut statuses);
        if let (None, Some(log)) = (denial, &self.usage) {
            log.record(hash, c.rule, &mut entry, limits, now_ms, c.cost);
        }
        drop(entry);
        match denial {
            None => Decision::Allow {
                statuses,
                shadow_denied: None,
            },
            Some(denial) => deny(0, denial, statuses),
        }
    }

    /// The general path, for any mix of enforcing and shadow checks.
    pub(super) fn check_many(&self, now_ms: u64, checks: &[Check<'_, '_>]) -> Decision {
        let mut statuses = Statuses::new();
        let mut reserved: SmallVec<[Reservation; 2]> = SmallVec::new();
        let mut blocker: Option<Blocker> = None;
        for (check, c) in indexed(checks).filter(|(_, c)| !c.rule.shadow) {
            let denial = if blocker.is_some() {
                self.peek(c, now_ms, check, &mut statuses)
            } else {
                self.reserve(c, now_ms, check, &mut statuses, &mut reserved)
            };
            if let Some(denial) = denial {
                if blocker.is_none_or(|b| denial.retry_after_ms > b.denial.retry_after_ms) {
                    blocker = Some(Blocker { check, denial });
                }
            }
        }
        match blocker {
            Some(blocker) => {
                self.roll_back(reserved);
                deny(blocker.check, blocker.denial, statuses)
            }
            None => {
                // Statuses were taken before counting; an allowed cost lowers `remaining` by
                // exactly itself (estimate + cost <= max).
                for s in statuses.iter_mut() {
                    s.remaining = s
                        .remaining
                        .saturating_sub(checks[usize::from(s.check)].cost);
                }
                self.record_all(&reserved, now_ms);
                let shadow_denied = self.run_shadows(checks, now_ms);
                Decision::Allow {
                    statuses,
                    shadow_denied,
                }
            }
        }
    }

    /// Evaluates and, if allowed, counts one check under one entry lock.
    fn reserve<'r>(
        &self,
        c: &Check<'r, '_>,
        now_ms: u64,
        check: u16,
        statuses: &mut Statuses,
        reserved: &mut SmallVec<[Reservation<'r>; 2]>,
    ) -> Option<Denial> {
        let (mut entry, hash, overflow) = self.lock(c.rule, &c.key, now_ms);
        let limits = limits_of(c.rule, &c.key, overflow);
        let denial = entry.evaluate(limits, c.cost, now_ms, check, Some(statuses));
        if denial.is_none() {
            let marks = entry.commit(limits, c.cost, now_ms);
            reserved.push(Reservation {
                hash,
                cost: c.cost,
                marks,
                rule: c.rule,
                limits,
            });
        }
        denial
    }

    /// Evaluates one check without counting or inserting: the request is already denied, but its
    /// statuses and the longest retry-after still matter.
    fn peek(
        &self,
        c: &Check<'_, '_>,
        now_ms: u64,
        check: u16,
        statuses: &mut Statuses,
    ) -> Option<Denial> {
        let limits = limits_of(c.rule, &c.key, false);
        let hash = self.hash_key(c.rule.id, &c.key);
        match self.map.get_mut(&hash) {
            Some(mut entry) => entry.evaluate(limits, c.cost, now_ms, check, Some(statuses)),
            None => Entry::new("".into(), c.rule.index, now_ms).evaluate(
                limits,
                c.cost,
                now_ms,
                check,
                Some(statuses),
            ),
        }
    }

    /// Records the usage of an allowed request's reservations in the usage log, if any.
    fn record_all(&self, reserved: &[Reservation<'_>], now_ms: u64) {
        let Some(log) = &self.usage else { return };
        for r in reserved {
            if let Some(mut entry) = self.map.get_mut(&r.hash) {
                log.record(r.hash, r.rule, &mut entry, r.limits, now_ms, r.cost);
            }
        }
    }

    /// Undoes every reservation of a denied request.
    fn roll_back(&self, reserved: SmallVec<[Reservation<'_>; 2]>) {
        for r in &reserved {
            if let Some(mut entry) = self.map.get_mut(&r.hash) {
                entry.rollback(&r.marks, r.cost);
            }
        }
    }

    /// Shadow checks after an allow: each counts only if it would allow, never blocks; returns the
    /// first one that would have denied.
    fn run_shadows(&self, checks: &[Check<'_, '_>], now_ms: u64) -> Option<(u16, u8)> {
        let mut first = None;
        for (check, c) in indexed(checks).filter(|(_, c)| c.rule.shadow) {
            let (mut entry, hash, overflow) = self.lock(c.rule, &c.key, now_ms);
            let limits = limits_of(c.rule, &c.key, overflow);
            match entry.evaluate(limits, c.cost, now_ms, check, None) {
                None => {
                    entry.commit(limits, c.cost, now_ms);
                    if let Some(log) = &self.usage {
                        log.record(hash, c.rule, &mut entry, limits, now_ms, c.cost);
                    }
                }
                Some(d) => {
                    first = first.or(Some((check, d.window)));
                }
            }
        }
        first
    }
}

/// A denial decided by `denial` of check `check`, its status showing the retry-after.
fn deny(check: u16, denial: Denial, mut statuses: Statuses) -> Decision {
    let Denial {
        window,
        retry_after_ms,
    } = denial;
    if let Some(s) = statuses
        .iter_mut()
        .find(|s| s.check == check && s.window == window)
    {
        s.reset_ms = retry_after_ms;
    }
    Decision::Deny {
        check,
        window,
        retry_after_ms,
        statuses,
    }
}

/// The limits for a key: the rule's own for the overflow bucket or when it has no overrides
/// (without formatting the display), else its override if any.
#[inline]
fn limits_of<'r>(rule: &'r Rule, key: &Key<'_>, overflow: bool) -> &'r Limits {
    if overflow || rule.overrides.is_empty() {
        &rule.limits
    } else {
        override_of(rule, key)
    }
}

/// The slow half of [`limits_of`], kept out of line so the common case inlines.
#[cold]
fn override_of<'r>(rule: &'r Rule, key: &Key<'_>) -> &'r Limits {
    let mut display = DisplayBuf::default();
    display.fill(key);
    rule.limits_for(display.as_str())
}

/// Checks with their `u16` index (a request never carries 65 536 checks).
fn indexed<'a, 'r, 'k>(
    checks: &'a [Check<'r, 'k>],
) -> impl Iterator<Item = (u16, &'a Check<'r, 'k>)> {
    checks
        .iter()
        .enumerate()
        .map(|(i, c)| (u16::try_from(i).unwrap_or(u16::MAX), c))
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
