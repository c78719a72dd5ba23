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

/// Limits the admin plane set for one key of one rule, replacing the rule's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideRow {
    pub rule: String,
    pub key: String,
    /// Limit strings as in config, e.g. `"100/m"`, `"10000/d"`; stored as a JSON array.
    pub limits: Vec<String>,
    /// A tier whose limits apply instead, when set.
    pub tier: Option<String>,
    pub updated_at_ms: i64,
}

/// A named set of limits that overrides can refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierRow {
    pub name: String,
    pub limits: Vec<String>,
    pub updated_at_ms: i64,
}

/// Stored limits as JSON text: the one encoding both stores use.
pub(crate) fn encode_limits(limits: &[String]) -> String {
    serde_json::to_string(limits).expect("a list of strings always serializes")
}

pub(crate) fn decode_limits(text: &str) -> Result<Vec<String>, crate::store::StoreError> {
    serde_json::from_str(text).map_err(|e| crate::store::StoreError::Corrupt {
        what: "limits",
        reason: e.to_string(),
    })
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
