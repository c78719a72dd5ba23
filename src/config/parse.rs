//! Small parsers for the text values of the config file: durations, limits, addresses.
//!
//! Each returns a reason string; `validate.rs` attaches the field name.

use std::net::SocketAddr;
use std::time::Duration;

use crate::limiter::calendar::PeriodKind;

/// "500ms", "10s", "1m", "1h30m" (jiff's friendly format) or ISO 8601 ("PT10S").
pub fn duration(text: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = text.trim().parse().map_err(|e| {
        format!("invalid duration {text:?} ({e}); write e.g. \"500ms\", \"10s\", \"1m\"")
    })?;
    Duration::try_from(d).map_err(|_| format!("duration {text:?} must not be negative"))
}

/// What a limit's maximum is counted over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    /// A sliding window of this length.
    Window(Duration),
    /// A calendar period (in the rule's time zone).
    Calendar(PeriodKind),
}

/// A limit: a sliding window ("100/s", "1000/h", "50/30s", "10/1m") or a calendar quota
/// ("10000/d", "/w", "/mo", or "/day", "/week", "/month"). Returns (max, per).
pub fn limit(text: &str) -> Result<(u32, Per), String> {
    let (max, per) = text.split_once('/').ok_or_else(|| {
        format!("invalid limit {text:?}: write MAX/WINDOW such as \"100/s\" or \"1000/1h\"")
    })?;
    let max: u32 = max
        .trim()
        .parse()
        .map_err(|_| format!("invalid limit {text:?}: {max:?} is not a whole number"))?;
    if max == 0 {
        return Err(format!(
            "invalid limit {text:?}: the maximum must be at least 1"
        ));
    }
    let per = per.trim();
    let window = match per {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" | "w" | "week" | "mo" | "month" => {
            return Ok((max, Per::Calendar(PeriodKind::parse(per)?)))
        }
        _ => duration(per).map_err(|e| format!("invalid limit {text:?}: {e}"))?,
    };
    if window < Duration::from_millis(1) {
        return Err(format!(
            "invalid limit {text:?}: the window must be at least 1ms"
        ));
    }
    if window > Duration::from_secs(366 * 86400) {
        return Err(format!(
            "invalid limit {text:?}: the window must be at most 366 days"
        ));
    }
    Ok((max, Per::Window(window)))
}

pub fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("invalid address {text:?}: write IP:PORT such as \"127.0.0.1:8080\""))
}

/// Names end up in metric labels and structured header strings, so keep them plain.
pub fn name(text: &str) -> Result<(), String> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name {text:?}: use 1-64 letters, digits, '-', '_' or '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        let w = |secs| Per::Window(Duration::from_secs(secs));
        assert_eq!(limit("100/s"), Ok((100, w(1))));
        assert_eq!(limit("10/m"), Ok((10, w(60))));
        assert_eq!(limit("50/30s"), Ok((50, w(30))));
        assert_eq!(limit("5/1h30m"), Ok((5, w(5400))));
        assert_eq!(limit("9/d"), Ok((9, Per::Calendar(PeriodKind::Day))));
        assert_eq!(limit("9/week"), Ok((9, Per::Calendar(PeriodKind::Week))));
        assert_eq!(limit("9/mo"), Ok((9, Per::Calendar(PeriodKind::Month))));
        assert!(limit("0/s").is_err());
        assert!(limit("x/s").is_err());
        assert!(limit("10").is_err());
        assert!(limit("10/fortnight").is_err());
    }

    #[test]
    fn durations_and_names() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert!(duration("soon").is_err());
        assert!(name("per-ip_1.x").is_ok());
        assert!(name("has space").is_err());
        assert!(name("quote\"").is_err());
    }
}
