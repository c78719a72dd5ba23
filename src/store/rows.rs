//! The rows the store reads back, and the keys and filters that select them.
//!
//! Plain values with no sqlx types, so callers (the limiter's rehydration, the admin plane) never
//! depend on the database crate. Must not hold SQL: the statements live with each store.

/// Identifies one usage row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageKey {
    pub rule: String,
    pub key: String,
    pub period: String,
    pub period_start: i64,
}

/// One usage row: the total allowed cost for (rule, key) in one period, over all instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub rule: String,
    pub key: String,
    pub period: String,
    pub period_start: i64,
    pub count: i64,
}

/// One aggregated violation row; the fields mean what they mean in a `ViolationDelta`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViolationRow {
    pub rule: String,
    pub key: String,
    pub minute: i64,
    pub shadow: bool,
    pub count: i64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub method: String,
    pub path: String,
    pub client_ip: String,
    pub limit: String,
}

/// Which violation rows to return. `None` means "any".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViolationFilter {
    pub rule: Option<String>,
    pub key: Option<String>,
    /// Rows whose minute overlaps `[since_ms, until_ms)`: a minute is `[minute, minute + 60 s)`.
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub shadow: Option<bool>,
    /// Page size, clamped to `0..=MAX_PAGE` so one admin request cannot read the whole table.
    pub limit: i64,
    pub offset: i64,
}

impl ViolationFilter {
    /// The largest page a store returns, whatever `limit` asks.
    pub const MAX_PAGE: i64 = 10_000;

    /// The lowest `minute` that overlaps `since_ms` (a multiple of 60), or `i64::MIN`.
    pub(crate) fn min_minute(&self) -> i64 {
        self.since_ms
            .map_or(i64::MIN, |ms| ms.div_euclid(60_000).saturating_mul(60))
    }

    /// One past the highest `minute` that starts before `until_ms`, or `i64::MAX`.
    pub(crate) fn end_minute(&self) -> i64 {
        self.until_ms.map_or(i64::MAX, |ms| {
            // minute * 1000 < ms  <=>  minute < ceil(ms / 1000)
            ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0)
        })
    }

    pub(crate) fn page(&self) -> (i64, i64) {
        (self.limit.clamp(0, Self::MAX_PAGE), self.offset.max(0))
    }
}

impl Default for ViolationFilter {
    /// Everything, newest first, one page of 100.
    fn default() -> Self {
        Self {
            rule: None,
            key: None,
            since_ms: None,
            until_ms: None,
            shadow: None,
            limit: 100,
            offset: 0,
        }
    }
}

/// One rule, tier or override created through the admin API; `body` is its JSON as posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntryRow {
    /// `rule:NAME`, `tier:NAME` or `override:RULE:KEY`.
    pub id: String,
    pub body: String,
    pub updated_at_ms: i64,
}

/// One admin action: who did what, with a JSON `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub at_ms: i64,
    /// The role and the peer, e.g. `admin@127.0.0.1`; never a token.
    pub actor: String,
    pub action: String,
    pub detail: String,
}

/// Decisions of one rule in one time bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficRow {
    pub rule: String,
    /// Unix seconds at which the bucket starts.
    pub bucket: i64,
    pub allowed: i64,
    pub denied: i64,
    pub shadow_denied: i64,
}

/// A (rule, key) and a total over some range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCount {
    pub rule: String,
    pub key: String,
    pub count: i64,
}

/// A range of Unix seconds, `[since, until)`, and how many rows to return at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopQuery {
    pub since: i64,
    pub until: i64,
    pub limit: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(since_ms: Option<i64>, until_ms: Option<i64>) -> (i64, i64) {
        let f = ViolationFilter {
            since_ms,
            until_ms,
            ..ViolationFilter::default()
        };
        (f.min_minute(), f.end_minute())
    }

    #[test]
    fn time_bounds_select_overlapping_minutes() {
        // since 10:00:30 includes the minute starting 10:00:00; until 10:02:00 excludes it.
        assert_eq!(window(Some(36_030_000), Some(36_120_000)), (36_000, 36_120));
        // until 10:02:00.001 includes the minute starting 10:02:00.
        assert_eq!(window(None, Some(36_120_001)).1, 36_121);
        assert_eq!(window(None, None), (i64::MIN, i64::MAX));
    }
}
