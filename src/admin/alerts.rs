//! Alert rules: each watches one value, fires once when it crosses its threshold and resolves
//! once when it falls back under a lower mark (hysteresis), so a value hovering at the threshold
//! does not flap.
//!
//! Owns alert state and history. Evaluated by the feed's ticker, off the request path; each
//! transition goes to the feed, the log, a metric and, if configured, the webhook queue.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Serialize;

use crate::config::AlertSettings;

/// An alert resolves once its value is at most this share of the threshold.
const RESOLVE_RATIO: f64 = 0.8;
/// Alerts kept in the history.
const HISTORY: usize = 200;
/// A blocked key's alert resolves after this long without a denial.
const BLOCKED_QUIET_MS: u64 = 60_000;
/// Keys watched for `new_blocked_key` at once; past it new blocked keys are not alerted on.
const MAX_BLOCKED: usize = 100;

/// One alert, firing or resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// The rule that fired: `violations_per_minute`, `upstream_error_rate`, `flush_lag`,
    /// `tracked_keys`, `new_blocked_key`.
    pub name: &'static str,
    /// Tells alerts of one rule apart (the rule and key of a blocked key); empty otherwise.
    pub subject: String,
    pub state: &'static str,
    pub value: f64,
    pub threshold: f64,
    pub message: String,
    pub since_ms: u64,
    pub resolved_ms: Option<u64>,
}

/// What the ticker measured this round.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    pub now_ms: u64,
    /// Real denials over the last minute.
    pub denials_per_minute: f64,
    /// Upstream failures over forwarded requests in the last minute, if there were enough.
    pub upstream_error_rate: Option<f64>,
    /// Age of the oldest unwritten usage, seconds.
    pub flush_lag_secs: f64,
    pub tracked_keys: f64,
    pub max_keys: f64,
    /// (rule, key) denied since the last round.
    pub denied_keys: Vec<(String, String)>,
}

struct State {
    active: BTreeMap<(&'static str, String), Alert>,
    history: VecDeque<Alert>,
    /// Blocked (rule, key) -> last denial.
    blocked: HashMap<(String, String), u64>,
}

/// The alert rules and their state.
pub struct Alerts {
    settings: AlertSettings,
    state: Mutex<State>,
}

impl Alerts {
    pub fn new(settings: AlertSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(State {
                active: BTreeMap::new(),
                history: VecDeque::new(),
                blocked: HashMap::new(),
            }),
        }
    }

    /// Evaluates every rule on `r`; returns the transitions (fired or resolved).
    pub fn evaluate(&self, r: &Reading) -> Vec<Alert> {
        let s = &self.settings;
        let mut out = Vec::new();
        let mut state = self.lock();
        if let Some(limit) = s.violations_per_minute {
            let msg = format!("{} denials in the last minute", r.denials_per_minute);
            state.observe(
                "violations_per_minute",
                String::new(),
                r.denials_per_minute,
                limit as f64,
                r.now_ms,
                msg,
                &mut out,
            );
        }
        if let (Some(limit), Some(rate)) = (s.upstream_error_rate, r.upstream_error_rate) {
            let msg = format!(
                "{:.2}% of forwarded requests failed upstream in the last minute",
                rate * 100.0
            );
            state.observe(
                "upstream_error_rate",
                String::new(),
                rate,
                limit,
                r.now_ms,
                msg,
                &mut out,
            );
        }
        let lag = s.flush_lag.as_secs_f64();
        let msg = format!(
            "usage waiting {:.1} s to be written to the store",
            r.flush_lag_secs
        );
        state.observe(
            "flush_lag",
            String::new(),
            r.flush_lag_secs,
            lag,
            r.now_ms,
            msg,
            &mut out,
        );
        if let Some(ratio) = s.tracked_keys_ratio {
            let msg = format!("{} of {} keys tracked", r.tracked_keys, r.max_keys);
            let limit = ratio * r.max_keys;
            state.observe(
                "tracked_keys",
                String::new(),
                r.tracked_keys,
                limit,
                r.now_ms,
                msg,
                &mut out,
            );
        }
        if s.new_blocked_key {
            state.blocked_keys(r, &mut out);
        }
        for a in &out {
            state.history.push_front(a.clone());
        }
        state.history.truncate(HISTORY);
        out
    }

    /// Active alerts and the history, newest first.
    pub fn list(&self) -> (Vec<Alert>, Vec<Alert>) {
        let state = self.lock();
        let mut active: Vec<_> = state.active.values().cloned().collect();
        active.sort_by_key(|a| std::cmp::Reverse(a.since_ms));
        (active, state.history.iter().cloned().collect())
    }

    /// How many alerts of rule `name` are firing.
    pub fn firing(&self, name: &str) -> usize {
        self.lock()
            .active
            .keys()
            .filter(|(n, _)| *n == name)
            .count()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    /// Fires above `threshold`, resolves at or under `RESOLVE_RATIO` of it.
    #[allow(clippy::too_many_arguments)]
    fn observe(
        &mut self,
        name: &'static str,
        subject: String,
        value: f64,
        threshold: f64,
        now_ms: u64,
        message: String,
        out: &mut Vec<Alert>,
    ) {
        let id = (name, subject);
        match self.active.get(&id) {
            None if value > threshold => {
                let alert = Alert {
                    name,
                    subject: id.1.clone(),
                    state: "firing",
                    value,
                    threshold,
                    message,
                    since_ms: now_ms,
                    resolved_ms: None,
                };
                self.active.insert(id, alert.clone());
                out.push(alert);
            }
            Some(_) if value <= threshold * RESOLVE_RATIO => {
                if let Some(mut alert) = self.active.remove(&id) {
                    alert.state = "resolved";
                    alert.value = value;
                    alert.message = message;
                    alert.resolved_ms = Some(now_ms);
                    out.push(alert);
                }
            }
            _ => {}
        }
    }

    /// A key denied for the first time fires; quiet for a minute, it resolves.
    fn blocked_keys(&mut self, r: &Reading, out: &mut Vec<Alert>) {
        for (rule, key) in &r.denied_keys {
            let id = (rule.clone(), key.clone());
            if let Some(last) = self.blocked.get_mut(&id) {
                *last = r.now_ms;
                continue;
            }
            if self.blocked.len() >= MAX_BLOCKED {
                continue;
            }
            self.blocked.insert(id, r.now_ms);
            let msg = format!("key {key:?} is being denied by rule {rule}");
            self.observe(
                "new_blocked_key",
                format!("{rule}:{key}"),
                1.0,
                0.0,
                r.now_ms,
                msg,
                out,
            );
        }
        let quiet: Vec<_> = self
            .blocked
            .iter()
            .filter(|(_, &last)| r.now_ms.saturating_sub(last) >= BLOCKED_QUIET_MS)
            .map(|(id, _)| id.clone())
            .collect();
        for (rule, key) in quiet {
            self.blocked.remove(&(rule.clone(), key.clone()));
            let msg = format!("key {key:?} has not been denied by rule {rule} for a minute");
            self.observe(
                "new_blocked_key",
                format!("{rule}:{key}"),
                0.0,
                0.0,
                r.now_ms,
                msg,
                out,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn alerts() -> Alerts {
        Alerts::new(AlertSettings {
            violations_per_minute: Some(100),
            upstream_error_rate: Some(0.01),
            flush_lag: Duration::from_secs(30),
            tracked_keys_ratio: Some(0.8),
            new_blocked_key: true,
            webhook: None,
        })
    }

    fn names(v: &[Alert]) -> Vec<(&str, &str)> {
        v.iter().map(|a| (a.name, a.state)).collect()
    }

    #[test]
    fn fires_once_and_resolves_once_with_hysteresis() {
        let a = alerts();
        let at = |n: f64, ms| Reading {
            now_ms: ms,
            denials_per_minute: n,
            max_keys: 10.0,
            ..Reading::default()
        };
        assert!(
            a.evaluate(&at(100.0, 1)).is_empty(),
            "at the threshold: not above"
        );
        assert_eq!(
            names(&a.evaluate(&at(130.0, 2))),
            [("violations_per_minute", "firing")]
        );
        assert!(a.evaluate(&at(500.0, 3)).is_empty(), "fires once");
        assert!(
            a.evaluate(&at(90.0, 4)).is_empty(),
            "under the threshold but above 80%: still firing"
        );
        assert_eq!(
            names(&a.evaluate(&at(80.0, 5))),
            [("violations_per_minute", "resolved")]
        );
        assert!(a.evaluate(&at(80.0, 6)).is_empty());
        let (active, history) = a.list();
        assert!(active.is_empty());
        assert_eq!(history.len(), 2);
    }

    #[test]
    fn blocked_key_fires_then_resolves_after_a_quiet_minute() {
        let a = alerts();
        let denied = |ms| Reading {
            now_ms: ms,
            max_keys: 10.0,
            denied_keys: vec![("api".into(), "k".into())],
            ..Reading::default()
        };
        let quiet = |ms| Reading {
            now_ms: ms,
            max_keys: 10.0,
            ..Reading::default()
        };
        assert_eq!(
            names(&a.evaluate(&denied(1_000))),
            [("new_blocked_key", "firing")]
        );
        assert!(a.evaluate(&denied(2_000)).is_empty());
        assert!(a.evaluate(&quiet(61_000)).is_empty());
        assert_eq!(
            names(&a.evaluate(&quiet(62_000))),
            [("new_blocked_key", "resolved")]
        );
    }
}
