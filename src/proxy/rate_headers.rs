//! The RateLimit fields (IETF httpapi ratelimit-headers draft: `RateLimit-Policy` and
//! `RateLimit` as structured-field lists, and the legacy `X-RateLimit-*` trio when enabled):
//! on a 429's header map, and on an allowed request's answer as [`RateHeaders`].
//!
//! An allowed request's fields are made before it goes upstream, as the lines they go on the
//! wire as: the lean server copies them behind a relayed answer in one piece, and a header map
//! gets them through [`RateHeaders::apply`].

use std::cell::RefCell;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

use crate::limiter::calendar::PeriodKind;
use crate::limiter::{write_span, Check, WindowStatus};

pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const LEGACY_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const LEGACY_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const LEGACY_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The RateLimit fields an allowed request's answer carries, set on whatever answers and
/// replacing an upstream's own of the same names: `name: value\r\n` lines, names lowercase.
#[derive(Default)]
pub struct RateHeaders {
    wire: String,
    /// The legacy trio is among the lines.
    legacy: bool,
}

impl RateHeaders {
    /// The fields for `statuses` (none when there are none).
    pub fn new(checks: &[Check], statuses: &[WindowStatus], legacy: bool) -> Self {
        let mut wire = String::new();
        if !statuses.is_empty() {
            wire.reserve(64 + 80 * statuses.len());
            line(&mut wire, &RATELIMIT_POLICY, |w| {
                policy_cached(w, checks, statuses)
            });
            line(&mut wire, &RATELIMIT, |w| state(w, checks, statuses));
            if legacy {
                let [max, remaining, reset] = legacy_values(statuses);
                let mut num = itoa::Buffer::new();
                line(&mut wire, &LEGACY_LIMIT, |w| w.push_str(num.format(max)));
                line(&mut wire, &LEGACY_REMAINING, |w| {
                    w.push_str(num.format(remaining))
                });
                line(&mut wire, &LEGACY_RESET, |w| w.push_str(num.format(reset)));
            }
        }
        let legacy = legacy && !wire.is_empty();
        Self { wire, legacy }
    }

    /// The lines, as they go on the wire.
    pub fn wire(&self) -> &[u8] {
        self.wire.as_bytes()
    }

    /// Each field's name and value.
    #[cfg(test)]
    fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.wire
            .split_terminator("\r\n")
            .filter_map(|l| l.split_once(": "))
    }

    /// Set the fields on `headers`, replacing any of the same names.
    pub fn apply(self, headers: &mut HeaderMap) {
        if self.wire.is_empty() {
            return;
        }
        let wire = Bytes::from(self.wire);
        let text = std::str::from_utf8(&wire).unwrap_or_default();
        for l in text.split_terminator("\r\n") {
            let Some((name, value)) = l.split_once(": ") else {
                continue;
            };
            let at = value.as_ptr() as usize - text.as_ptr() as usize;
            let value = HeaderValue::from_maybe_shared(wire.slice(at..at + value.len()));
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), value) {
                headers.insert(name, value);
            }
        }
    }

    /// Whether a field of this name (any case) is one these replace. By the names' lengths
    /// first: asked of every field an upstream's answer carries.
    pub fn replaces(&self, name: &[u8]) -> bool {
        let is = |n: &HeaderName| name.eq_ignore_ascii_case(n.as_str().as_bytes());
        match name.len() {
            _ if self.wire.is_empty() => false,
            9 => is(&RATELIMIT),
            16 => is(&RATELIMIT_POLICY),
            17 | 21 if self.legacy => {
                is(&LEGACY_LIMIT) || is(&LEGACY_RESET) || is(&LEGACY_REMAINING)
            }
            _ => false,
        }
    }
}

/// `name: value\r\n` onto `wire`, the value written by `value`.
fn line(wire: &mut String, name: &HeaderName, value: impl FnOnce(&mut String)) {
    wire.push_str(name.as_str());
    wire.push_str(": ");
    value(wire);
    wire.push_str("\r\n");
}

/// Add `RateLimit-Policy` and `RateLimit` (and the legacy trio when enabled) for `statuses` to
/// a header map (a 429's).
pub fn rate_limit_headers(
    out: &mut HeaderMap,
    checks: &[Check],
    statuses: &[WindowStatus],
    legacy: bool,
) {
    if statuses.is_empty() {
        return;
    }
    let mut text = String::with_capacity(48 * statuses.len());
    policy(&mut text, checks, statuses);
    push(out, RATELIMIT_POLICY, text);
    let mut text = String::with_capacity(40 * statuses.len());
    state(&mut text, checks, statuses);
    push(out, RATELIMIT, text);
    if legacy {
        let [max, remaining, reset] = legacy_values(statuses);
        out.insert(LEGACY_LIMIT, HeaderValue::from(max));
        out.insert(LEGACY_REMAINING, HeaderValue::from(remaining));
        out.insert(LEGACY_RESET, HeaderValue::from(reset));
    }
}

fn push(out: &mut HeaderMap, name: HeaderName, value: String) {
    if let Ok(v) = HeaderValue::try_from(value) {
        out.insert(name, v);
    }
}

/// `RateLimit-Policy`: each window's name, quota and window in seconds.
fn policy(out: &mut String, checks: &[Check], statuses: &[WindowStatus]) {
    let mut num = itoa::Buffer::new();
    each_window(out, checks, statuses, |out, s| {
        out.push_str("\";q=");
        out.push_str(num.format(s.max));
        out.push_str(";w=");
        out.push_str(num.format(secs_ceil(s.dur_ms).max(1)));
    });
}

/// What a `RateLimit-Policy` value is made of, per window: its rule's name (held, so the
/// pointer compared is never a freed and reused one), how many windows the rule shows, the
/// quota, the window.
struct PolicyKey {
    name: Arc<str>,
    windows: usize,
    max: u32,
    dur_ms: u64,
    calendar: Option<PeriodKind>,
}

impl PolicyKey {
    fn of(checks: &[Check], statuses: &[WindowStatus], s: &WindowStatus) -> Self {
        Self {
            name: checks[s.check as usize].rule.name.clone(),
            windows: windows_of(statuses, s),
            max: s.max,
            dur_ms: s.dur_ms,
            calendar: s.calendar,
        }
    }

    fn is(&self, checks: &[Check], statuses: &[WindowStatus], s: &WindowStatus) -> bool {
        Arc::ptr_eq(&self.name, &checks[s.check as usize].rule.name)
            && (self.max, self.dur_ms, self.calendar) == (s.max, s.dur_ms, s.calendar)
            && self.windows == windows_of(statuses, s)
    }
}

thread_local! {
    /// The last `RateLimit-Policy` value this thread made, and what it was made of: most
    /// answers of a route carry the same one.
    static LAST_POLICY: RefCell<(SmallVec<[PolicyKey; 2]>, String)> =
        const { RefCell::new((SmallVec::new_const(), String::new())) };
}

/// [`policy`], copied from the thread's last one when it was made of the same windows.
fn policy_cached(out: &mut String, checks: &[Check], statuses: &[WindowStatus]) {
    LAST_POLICY.with_borrow_mut(|(keys, text)| {
        let same = keys.len() == statuses.len()
            && keys
                .iter()
                .zip(statuses)
                .all(|(k, s)| k.is(checks, statuses, s));
        if !same {
            keys.clear();
            keys.extend(statuses.iter().map(|s| PolicyKey::of(checks, statuses, s)));
            text.clear();
            policy(text, checks, statuses);
        }
        out.push_str(text);
    })
}

/// How many of `statuses` belong to `s`'s check: a rule with several names each window.
fn windows_of(statuses: &[WindowStatus], s: &WindowStatus) -> usize {
    statuses.iter().filter(|o| o.check == s.check).count()
}

/// `RateLimit`: each window's name, what remains and the seconds until it resets.
fn state(out: &mut String, checks: &[Check], statuses: &[WindowStatus]) {
    let mut num = itoa::Buffer::new();
    each_window(out, checks, statuses, |out, s| {
        out.push_str("\";r=");
        out.push_str(num.format(s.remaining));
        out.push_str(";t=");
        out.push_str(num.format(secs_ceil(s.reset_ms)));
    });
}

/// A list item per window: `"name` then `params` (which close the quote). Names go straight into
/// `out`: no per-window String, no formatter.
fn each_window(
    out: &mut String,
    checks: &[Check],
    statuses: &[WindowStatus],
    mut params: impl FnMut(&mut String, &WindowStatus),
) {
    for (i, s) in statuses.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let rule = &checks[s.check as usize].rule.name;
        let windows = windows_of(statuses, s);
        out.push('"');
        policy_name(rule, windows, s.dur_ms, s.calendar, out);
        params(out, s);
    }
}

/// The legacy trio of the tightest window: its limit, what remains, seconds to reset.
fn legacy_values(statuses: &[WindowStatus]) -> [u64; 3] {
    let tightest = statuses
        .iter()
        .min_by_key(|s| s.remaining)
        .expect("non-empty");
    [
        u64::from(tightest.max),
        u64::from(tightest.remaining),
        secs_ceil(tightest.reset_ms),
    ]
}

/// The policy name of a window: the rule's, suffixed by the window when the rule has several.
pub fn policy_name(
    rule: &str,
    windows: usize,
    dur_ms: u64,
    calendar: Option<PeriodKind>,
    out: &mut String,
) {
    out.push_str(rule);
    if windows > 1 {
        out.push('-');
        write_span(dur_ms, calendar, out);
    }
}

pub fn secs_ceil(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

#[cfg(test)]
impl RateHeaders {
    /// Fields given as lines (`name: value\r\n`), for tests.
    pub fn from_wire(wire: &str) -> Self {
        Self {
            wire: wire.into(),
            legacy: wire.contains("x-ratelimit-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names() {
        let mut s = String::new();
        policy_name("api", 1, 60_000, None, &mut s);
        assert_eq!(s, "api");
        s.clear();
        policy_name("api", 2, 5_400_000, None, &mut s);
        assert_eq!(s, "api-90m");
    }

    fn windows() -> (crate::limiter::Rule, crate::limiter::Rule) {
        use crate::limiter::{Limits, Rule};
        (
            Rule::new("a", Limits::new([(1_000, 5, "5/s")]), false),
            Rule::new(
                "b",
                Limits::new([(60_000, 100, "100/m"), (1_000, 9, "9/s")]),
                false,
            ),
        )
    }

    /// The lines an allowed answer carries are the fields a 429's map gets for the same windows.
    #[test]
    fn the_wire_lines_are_the_fields_a_map_gets() {
        use crate::limiter::{Key, KeyPart};
        let (a, b) = windows();
        let check = |rule| Check {
            rule,
            key: Key::single(KeyPart::Str("k")),
            cost: 1,
        };
        let checks = [check(&a), check(&b)];
        let status = |check, max, dur_ms, remaining, reset_ms| WindowStatus {
            check,
            window: 0,
            max,
            dur_ms,
            calendar: None,
            remaining,
            reset_ms,
        };
        let statuses = [
            status(0, 5, 1_000, 4, 900),
            status(1, 100, 60_000, 3, 59_001),
            status(1, 9, 1_000, 8, 1),
        ];
        for legacy in [false, true] {
            let mut map = HeaderMap::new();
            rate_limit_headers(&mut map, &checks, &statuses, legacy);
            let wire = RateHeaders::new(&checks, &statuses, legacy);
            let lines: Vec<_> = wire.fields().collect();
            let fields: Vec<_> = map
                .iter()
                .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
                .collect();
            assert_eq!(lines, fields);
            let mut applied = HeaderMap::new();
            applied.insert(RATELIMIT, HeaderValue::from_static("upstream's"));
            wire.apply(&mut applied);
            assert_eq!(applied, map);
        }
        let wire = RateHeaders::new(&checks, &statuses, false);
        assert_eq!(
            String::from_utf8_lossy(wire.wire()),
            "ratelimit-policy: \"a\";q=5;w=1, \"b-1m\";q=100;w=60, \"b-1s\";q=9;w=1\r\n\
             ratelimit: \"a\";r=4;t=1, \"b-1m\";r=3;t=60, \"b-1s\";r=8;t=1\r\n"
        );
        assert!(wire.replaces(b"RateLimit") && wire.replaces(b"RATELIMIT-POLICY"));
        assert!(!wire.replaces(b"x-ratelimit-limit") && !wire.replaces(b"ratelimit-x"));
        let legacy = RateHeaders::new(&checks, &statuses, true);
        for name in [
            "X-RateLimit-Limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
        ] {
            assert!(legacy.replaces(name.as_bytes()), "{name}");
        }
        assert!(RateHeaders::new(&checks, &[], true).wire().is_empty());
    }

    /// The thread's cached policy value is used only for the same windows: another quota,
    /// window, rule or number of windows makes a new one.
    #[test]
    fn the_policy_value_follows_its_windows() {
        use crate::limiter::{Key, KeyPart};
        let (a, b) = windows();
        let a2 = crate::limiter::Rule::new("a2", a.limits.clone(), false);
        let check = |rule| Check {
            rule,
            key: Key::single(KeyPart::Str("k")),
            cost: 1,
        };
        // The same rule twice (two checks): one window each, so neither name is suffixed.
        let checks = [check(&a), check(&b), check(&a2), check(&b)];
        let status = |check, max, dur_ms| WindowStatus {
            check,
            window: 0,
            max,
            dur_ms,
            calendar: None,
            remaining: 1,
            reset_ms: 1,
        };
        let policy_of = |statuses: &[WindowStatus]| {
            let wire = RateHeaders::new(&checks, statuses, false);
            let (_, value) = wire.fields().next().unwrap();
            value.to_string()
        };
        let cases: &[(&[WindowStatus], &str)] = &[
            (&[status(0, 5, 1_000)], "\"a\";q=5;w=1"),
            (&[status(0, 5, 1_000)], "\"a\";q=5;w=1"),
            (&[status(0, 7, 1_000)], "\"a\";q=7;w=1"),
            (&[status(0, 7, 2_000)], "\"a\";q=7;w=2"),
            (&[status(2, 7, 2_000)], "\"a2\";q=7;w=2"),
            (&[status(1, 7, 2_000)], "\"b\";q=7;w=2"),
            (
                &[status(1, 7, 2_000), status(1, 9, 1_000)],
                "\"b-2s\";q=7;w=2, \"b-1s\";q=9;w=1",
            ),
            (
                &[status(1, 7, 2_000), status(3, 9, 1_000)],
                "\"b\";q=7;w=2, \"b\";q=9;w=1",
            ),
            (
                &[status(1, 7, 2_000), status(1, 9, 1_000)],
                "\"b-2s\";q=7;w=2, \"b-1s\";q=9;w=1",
            ),
            (
                &[status(1, 7, 2_000), status(0, 9, 1_000)],
                "\"b\";q=7;w=2, \"a\";q=9;w=1",
            ),
            (
                &[
                    status(1, 7, 2_000),
                    status(0, 9, 1_000),
                    status(0, 9, 60_000),
                ],
                "\"b\";q=7;w=2, \"a-1s\";q=9;w=1, \"a-1m\";q=9;w=60",
            ),
            (&[status(1, 7, 2_000)], "\"b\";q=7;w=2"),
        ];
        for (statuses, want) in cases {
            assert_eq!(policy_of(statuses), *want, "{statuses:?}");
        }
    }
}
