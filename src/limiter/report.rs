//! What the admin plane reads of the table: each key's usage against every window of its
//! limits, computed on copies so no shard lock is held while statuses are worked out.
//!
//! Owns only reading. A report walks the whole table (one shard read lock at a time): an admin
//! cost, never paid by a request.

use std::collections::HashMap;
use std::sync::Arc;

use super::decision::Statuses;
use super::rule::Rule;
use super::table::Limiter;

/// One key of one rule: its usage against each window.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyUsage {
    pub rule: Arc<str>,
    pub key: Box<str>,
    pub shadow: bool,
    pub last_seen_ms: u64,
    pub windows: Vec<WindowUsage>,
}

/// One window of a key.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowUsage {
    /// As written in config: "100/m", "10000/day".
    pub limit: String,
    pub used: u32,
    pub max: u32,
    pub remaining: u32,
    pub reset_ms: u64,
}

impl KeyUsage {
    /// The highest `used / max` over the windows: how close the key is to a denial.
    pub fn ratio(&self) -> f64 {
        self.windows
            .iter()
            .map(|w| f64::from(w.used) / f64::from(w.max.max(1)))
            .fold(0.0, f64::max)
    }

    /// The most used of any window.
    pub fn used(&self) -> u32 {
        self.windows.iter().map(|w| w.used).max().unwrap_or(0)
    }
}

impl Limiter {
    /// Every tracked key of `rules` that `keep(rule, key)` accepts, with its windows as they
    /// stand at `now_ms`. Keys of rules no longer configured are left out.
    pub fn usage_report(
        &self,
        rules: &[&Rule],
        mut keep: impl FnMut(&Rule, &str) -> bool,
        now_ms: u64,
    ) -> Vec<KeyUsage> {
        let by_index: HashMap<u32, &Rule> = rules.iter().map(|r| (r.index, *r)).collect();
        let mut out = Vec::new();
        for item in self.map.iter() {
            let Some(rule) = by_index.get(&item.rule) else {
                continue;
            };
            if !keep(rule, item.key.as_str()) {
                continue;
            }
            let mut entry = item.value().clone();
            let limits = rule.limits_for(entry.key.as_str());
            let mut statuses = Statuses::new();
            entry.evaluate(limits, 0, now_ms, 0, Some(&mut statuses));
            let windows = limits
                .windows
                .iter()
                .zip(&statuses)
                .map(|(w, s)| WindowUsage {
                    limit: w.describe(),
                    used: s.max.saturating_sub(s.remaining),
                    max: s.max,
                    remaining: s.remaining,
                    reset_ms: s.reset_ms,
                })
                .collect();
            out.push(KeyUsage {
                rule: rule.name.clone(),
                key: entry.key.as_str().into(),
                shadow: rule.shadow,
                last_seen_ms: item.last_seen_ms(),
                windows,
            });
        }
        out
    }
}
