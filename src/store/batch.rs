//! What one flush writes: a [`Batch`] of usage and violation deltas, and how duplicate rows in a
//! batch are folded together before they reach SQL.
//!
//! Owns only the values and [`Batch::coalesced`]; must not touch sqlx. A batcher normally sends
//! each row once, but one upsert statement may not touch the same row twice (Postgres refuses
//! it), so the stores coalesce first rather than trust the caller.

use std::collections::HashMap;
use std::sync::Arc;

/// One aggregated usage delta: `count` more allowed cost for (rule, key) in one period.
///
/// Under load most rows of a batch are these (one per active key and hour), so a row owns one
/// allocation, its key: the rule is shared with every row of that rule and the period is static.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    pub rule: Arc<str>,
    pub key: Box<str>,
    /// `"hour"`, `"day"`, `"week"` or `"month"`; the schema rejects anything else.
    pub period: &'static str,
    /// Unix seconds at which the calendar period starts (in the rule's time zone).
    pub period_start: i64,
    pub count: i64,
}

/// Denials of (rule, key) within one minute, aggregated; with one sample request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViolationDelta {
    pub rule: String,
    pub key: String,
    /// Unix seconds, a multiple of 60.
    pub minute: i64,
    /// A shadow rule would have denied: counted apart from real denials.
    pub shadow: bool,
    pub count: i64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// The sample: the first denied request of the minute. A later delta never replaces it.
    pub method: String,
    pub path: String,
    pub client_ip: String,
    /// The limit that denied, as written in config, e.g. `"100/m"`.
    pub limit: String,
}

/// Decisions of one rule in one minute, from one instance's counters since its last flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrafficCounts {
    pub allowed: i64,
    pub denied: i64,
    pub shadow_denied: i64,
}

/// [`TrafficCounts`] to add to the row of (rule, minute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficDelta {
    pub rule: String,
    /// Unix seconds, a multiple of 60.
    pub minute: i64,
    pub counts: TrafficCounts,
}

/// What one flush writes, atomically; `id` is unique per batch and makes replays idempotent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Chosen by the batcher (e.g. instance id + sequence number) and kept across retries.
    pub id: String,
    pub usage: Vec<UsageDelta>,
    pub violations: Vec<ViolationDelta>,
    /// At most one row per (rule, minute).
    pub traffic: Vec<TrafficDelta>,
}

/// The result of a flush that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushOutcome {
    /// The batch was written now (or was empty).
    Applied,
    /// A batch with this id was written before; nothing changed.
    AlreadyApplied,
}

impl Batch {
    /// True when a flush has nothing to write.
    pub fn is_empty(&self) -> bool {
        self.usage.is_empty() && self.violations.is_empty() && self.traffic.is_empty()
    }

    /// The same deltas with at most one row per primary key: counts summed, first/last seen
    /// widened, the sample of the first occurrence kept; sorted by primary key.
    ///
    /// Sorted because a drain yields rows in the limiter table's hash order: upserted in key
    /// order, they walk the table's B-tree from one page to the next instead of at random
    /// (`cargo bench --bench flush`, 100k hash-ordered rows: see docs/PERFORMANCE.md), and two
    /// instances flushing overlapping keys into one Postgres lock their rows in the same order.
    pub fn coalesced(&self) -> (Vec<UsageDelta>, Vec<ViolationDelta>) {
        let mut usage = coalesce_usage(&self.usage);
        usage.sort_unstable_by(|a, b| usage_id(a).cmp(&usage_id(b)));
        let mut violations = coalesce_violations(&self.violations);
        violations.sort_unstable_by(|a, b| violation_id(a).cmp(&violation_id(b)));
        (usage, violations)
    }
}

/// A usage row's primary key.
fn usage_id(row: &UsageDelta) -> (&str, &str, &str, i64) {
    (&row.rule, &row.key, row.period, row.period_start)
}

/// A violation row's primary key.
fn violation_id(row: &ViolationDelta) -> (&str, &str, i64, bool) {
    (&row.rule, &row.key, row.minute, row.shadow)
}

fn coalesce_usage(rows: &[UsageDelta]) -> Vec<UsageDelta> {
    let mut out: Vec<UsageDelta> = Vec::with_capacity(rows.len());
    let mut seen: HashMap<(&str, &str, &str, i64), usize> = HashMap::with_capacity(rows.len());
    for row in rows {
        let id = usage_id(row);
        match seen.get(&id) {
            Some(&i) => out[i].count += row.count,
            None => {
                seen.insert(id, out.len());
                out.push(row.clone());
            }
        }
    }
    out
}

fn coalesce_violations(rows: &[ViolationDelta]) -> Vec<ViolationDelta> {
    let mut out: Vec<ViolationDelta> = Vec::with_capacity(rows.len());
    let mut seen: HashMap<(&str, &str, i64, bool), usize> = HashMap::with_capacity(rows.len());
    for row in rows {
        let id = violation_id(row);
        match seen.get(&id) {
            Some(&i) => {
                let kept = &mut out[i];
                kept.count += row.count;
                kept.first_seen_ms = kept.first_seen_ms.min(row.first_seen_ms);
                kept.last_seen_ms = kept.last_seen_ms.max(row.last_seen_ms);
            }
            None => {
                seen.insert(id, out.len());
                out.push(row.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(key: &str, count: i64) -> UsageDelta {
        UsageDelta {
            rule: "r".into(),
            key: key.into(),
            period: "day",
            period_start: 86_400,
            count,
        }
    }

    fn violation(path: &str, first: i64, last: i64, shadow: bool) -> ViolationDelta {
        ViolationDelta {
            rule: "r".into(),
            key: "k".into(),
            minute: 60,
            shadow,
            count: 2,
            first_seen_ms: first,
            last_seen_ms: last,
            method: "GET".into(),
            path: path.into(),
            client_ip: "127.0.0.1".into(),
            limit: "1/s".into(),
        }
    }

    #[test]
    fn coalescing_sums_usage_per_row_and_sorts_by_key() {
        let batch = Batch {
            id: "b".into(),
            usage: vec![usage("c", 1), usage("a", 2), usage("c", 3), usage("b", 5)],
            ..Batch::default()
        };
        let (usage_rows, _) = batch.coalesced();
        assert_eq!(
            usage_rows,
            vec![usage("a", 2), usage("b", 5), usage("c", 4)]
        );
    }

    #[test]
    fn coalescing_widens_violations_and_keeps_the_first_sample() {
        let batch = Batch {
            id: "b".into(),
            violations: vec![
                violation("/shadow", 60_000, 60_000, true),
                violation("/first", 60_500, 61_000, false),
                violation("/second", 60_100, 62_000, false),
            ],
            ..Batch::default()
        };
        let (_, rows) = batch.coalesced();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].count, rows[0].first_seen_ms, rows[0].last_seen_ms),
            (4, 60_100, 62_000)
        );
        assert_eq!(rows[0].path, "/first");
        assert_eq!(rows[1].path, "/shadow");
    }
}
