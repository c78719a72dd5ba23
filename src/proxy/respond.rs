//! Every answer the proxy makes itself, in one place: 429s with their headers, direct responses,
//! and errors as JSON. The RateLimit fields themselves are made in `rate_headers.rs`.
//!
//! Owns status codes and body templates. Never leaks internals: an error body names the failure
//! class, not the upstream's address or an OS error.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use smallvec::SmallVec;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use std::sync::Arc;

use super::h1_encode::encoded_fields;
use super::pool::UpstreamBody;
use super::rate_headers::{rate_limit_headers, secs_ceil};
use crate::limiter::extract::BadCost;
use crate::limiter::{Check, WindowStatus};

/// The body of every response: the upstream's stream, or bytes we made.
pub type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

/// Names the rule that denied the request.
pub const RULE_HEADER: HeaderName = HeaderName::from_static("tollgate-rule");

/// A failure the proxy answers itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no route matches this request")]
    NoRoute,
    #[error("this endpoint requires a key for rule {0}")]
    MissingKey(std::sync::Arc<str>),
    #[error(transparent)]
    BadCost(#[from] BadCost),
    /// A field the lean parser took (`httparse`) and `http` refused when the request was made
    /// to go upstream. Their rules agree, so this is not expected; it answers, never panics.
    #[error("a request header field could not be forwarded")]
    BadHeader,
    #[error("the upstream could not be reached")]
    UpstreamConnect,
    #[error("the upstream did not answer in time")]
    UpstreamTimeout,
    #[error("the upstream failed")]
    Upstream,
    #[error("internal error")]
    Internal,
}

impl ProxyError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::NoRoute => (StatusCode::NOT_FOUND, "no_route"),
            Self::MissingKey(_) => (StatusCode::UNAUTHORIZED, "missing_key"),
            Self::BadCost(_) => (StatusCode::BAD_REQUEST, "bad_cost"),
            Self::BadHeader => (StatusCode::BAD_REQUEST, "bad_header"),
            Self::UpstreamConnect | Self::Upstream => (StatusCode::BAD_GATEWAY, "bad_gateway"),
            Self::UpstreamTimeout => (StatusCode::GATEWAY_TIMEOUT, "gateway_timeout"),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// `{"error": code, "detail": message}` with the matching status.
    pub fn into_response(self) -> Response<ProxyBody> {
        let (status, code) = self.status_and_code();
        let body = serde_json::json!({ "error": code, "detail": self.to_string() }).to_string();
        json(status, Bytes::from(body))
    }
}

fn json(status: StatusCode, body: Bytes) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// How 429s look: body template and legacy headers.
#[derive(Debug, Clone)]
pub struct DenySettings {
    /// Unique per `new`: tells [`LAST_429`] which settings (and config generation) made it.
    id: u64,
    template: Vec<Segment>,
    content_type: HeaderValue,
    pub legacy_headers: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Text(String),
    Rule,
    RetryAfter,
}

const DEFAULT_DENY_BODY: &str =
    r#"{"error":"rate_limited","rule":"{rule}","retry_after":{retry_after}}"#;

impl DenySettings {
    pub fn new(body: Option<&str>, content_type: HeaderValue, legacy_headers: bool) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            template: parse_template(body.unwrap_or(DEFAULT_DENY_BODY)),
            content_type,
            legacy_headers,
        }
    }

    fn render(&self, rule: &str, retry_after: u64) -> Bytes {
        let mut out = String::with_capacity(96);
        for seg in &self.template {
            match seg {
                Segment::Text(t) => out.push_str(t),
                Segment::Rule => out.push_str(rule),
                Segment::RetryAfter => out.push_str(itoa::Buffer::new().format(retry_after)),
            }
        }
        Bytes::from(out)
    }

    /// The 429 for a denial by `checks[check]`. A thread's previous 429 is reused when
    /// everything its headers and body say is the same (see `Last429`).
    pub fn rejected(
        &self,
        checks: &[Check],
        check: u16,
        retry_after_ms: u64,
        statuses: &[WindowStatus],
    ) -> Arc<Rejection> {
        let retry_after = secs_ceil(retry_after_ms).max(1);
        let key = Key429::new(self.id, checks, check, retry_after, statuses);
        LAST_429.with_borrow_mut(|last| match last {
            Some(l) if l.key == key => l.made.clone(),
            _ => {
                let made = Arc::new(self.render_429(checks, check, retry_after, statuses));
                *last = Some(Last429 {
                    key,
                    made: made.clone(),
                });
                made
            }
        })
    }

    fn render_429(
        &self,
        checks: &[Check],
        check: u16,
        retry_after: u64,
        statuses: &[WindowStatus],
    ) -> Rejection {
        let rule = &checks[check as usize].rule.name;
        let mut h = HeaderMap::with_capacity(8);
        h.insert(header::CONTENT_TYPE, self.content_type.clone());
        h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        if let Ok(v) = HeaderValue::from_str(rule) {
            h.insert(RULE_HEADER, v);
        }
        rate_limit_headers(&mut h, checks, statuses, self.legacy_headers);
        Rejection {
            headers: h,
            body: self.render(rule, retry_after),
            wire: OnceLock::new(),
        }
    }
}

/// A 429, made once and shared while everything it says stays the same (see `Last429`).
/// hyper's paths answer with a [`Response`] copied from it; the lean HTTP/1.1 path writes its
/// pre-encoded head, the same bytes with no header map copied and walked.
pub struct Rejection {
    headers: HeaderMap,
    body: Bytes,
    /// The status line and header fields as `h1_encode` writes them, made on first use.
    wire: OnceLock<Bytes>,
}

impl Rejection {
    pub const STATUS: StatusCode = StatusCode::TOO_MANY_REQUESTS;

    pub fn response(&self) -> Response<ProxyBody> {
        let mut resp = Response::new(Either::Right(Full::new(self.body.clone())));
        *resp.status_mut() = Self::STATUS;
        *resp.headers_mut() = self.headers.clone();
        resp
    }

    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The status line and header fields, encoded; `Content-Length`, `Date` and the blank line
    /// are the writer's to add.
    pub fn wire_fields(&self) -> &[u8] {
        self.wire
            .get_or_init(|| encoded_fields(Self::STATUS, &self.headers))
    }
}

/// Everything a 429's headers and body are made of: the settings, the denying rule, the
/// retry-after in seconds, and per window its rule and its numbers with the reset in seconds.
/// Rules are compared by address: they belong to the config generation `deny_id` names.
#[derive(PartialEq, Eq)]
struct Key429 {
    deny_id: u64,
    rule: usize,
    retry_after: u64,
    windows: SmallVec<[(usize, WindowStatus); 4]>,
}

impl Key429 {
    fn new(
        deny_id: u64,
        checks: &[Check],
        check: u16,
        retry_after: u64,
        statuses: &[WindowStatus],
    ) -> Self {
        let rule_at = |c: u16| Arc::as_ptr(&checks[c as usize].rule.name).cast::<u8>() as usize;
        Self {
            deny_id,
            rule: rule_at(check),
            retry_after,
            windows: statuses
                .iter()
                .map(|s| {
                    let shown = WindowStatus {
                        window: 0,
                        reset_ms: secs_ceil(s.reset_ms),
                        ..*s
                    };
                    (rule_at(s.check), shown)
                })
                .collect(),
        }
    }
}

/// A thread's last 429. One client pushing past its limit gets the same answer many times a
/// second; sharing it costs a reference count, a fraction of formatting it.
struct Last429 {
    key: Key429,
    made: Arc<Rejection>,
}

thread_local! {
    static LAST_429: RefCell<Option<Last429>> = const { RefCell::new(None) };
}

impl Default for DenySettings {
    fn default() -> Self {
        Self::new(None, HeaderValue::from_static("application/json"), false)
    }
}

fn parse_template(text: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find('{') {
        let (seg, after) = if rest[pos..].starts_with("{rule}") {
            (Segment::Rule, &rest[pos + 6..])
        } else if rest[pos..].starts_with("{retry_after}") {
            (Segment::RetryAfter, &rest[pos + 13..])
        } else {
            out.push(Segment::Text(rest[..=pos].to_string()));
            rest = &rest[pos + 1..];
            continue;
        };
        if pos > 0 {
            out.push(Segment::Text(rest[..pos].to_string()));
        }
        out.push(seg);
        rest = after;
    }
    if !rest.is_empty() {
        out.push(Segment::Text(rest.to_string()));
    }
    out
}

/// A fixed response from config.
pub fn direct(d: &crate::proxy::route::DirectResponse) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(d.body.clone())));
    *resp.status_mut() = d.status;
    *resp.headers_mut() = d.headers.clone();
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_renders_placeholders_and_keeps_braces() {
        let d = DenySettings::default();
        assert_eq!(
            &d.render("per-ip", 17)[..],
            br#"{"error":"rate_limited","rule":"per-ip","retry_after":17}"#
        );
        let custom = DenySettings::new(
            Some("slow down {rule} {x} {retry_after}s"),
            HeaderValue::from_static("text/plain"),
            false,
        );
        assert_eq!(&custom.render("r", 3)[..], b"slow down r {x} 3s");
    }

    fn check(rule: &crate::limiter::Rule) -> Check<'_, 'static> {
        use crate::limiter::{Key, KeyPart};
        Check {
            rule,
            key: Key::single(KeyPart::Str("k")),
            cost: 1,
        }
    }

    fn status(remaining: u32, reset_ms: u64) -> WindowStatus {
        WindowStatus {
            check: 0,
            window: 0,
            max: 5,
            dur_ms: 1_000,
            calendar: None,
            remaining,
            reset_ms,
        }
    }

    fn rule(name: &str) -> crate::limiter::Rule {
        use crate::limiter::{Limits, Rule};
        Rule::new(name, Limits::new([(1_000, 5, "5/s")]), false)
    }

    /// A 429 for the same rule, retry-after and window numbers is the thread's last one reused;
    /// anything its text depends on (remaining, reset second, rule, settings) makes a new one.
    #[test]
    fn repeated_429s_reuse_the_last_only_when_nothing_differs() {
        let (a, b) = (rule("a"), rule("b"));
        // The response as text, and where its body's bytes live (a reused 429 shares them).
        let answer = |r: Arc<Rejection>| {
            let r = r.response();
            let mut out = format!("{}\n", r.status());
            for (n, v) in r.headers() {
                out += &format!("{n}: {}\n", v.to_str().unwrap());
            }
            let Either::Right(full) = r.into_body() else {
                unreachable!("a 429 has its own body")
            };
            let body =
                futures_util::FutureExt::now_or_never(http_body_util::BodyExt::collect(full))
                    .unwrap()
                    .unwrap()
                    .to_bytes();
            out += std::str::from_utf8(&body).unwrap();
            (out, body.as_ptr())
        };
        let text = |r| answer(r).0;
        let d = DenySettings::default();
        let (first, first_at) = answer(d.rejected(&[check(&a)], 0, 1_500, &[status(0, 1_500)]));
        assert!(first.contains("retry-after: 2\n"), "{first}");
        assert!(first.contains(r#"ratelimit: "a";r=0;t=2"#), "{first}");
        // Same second, same numbers: the same answer, and the same bytes (reused, not remade).
        let (again, again_at) = answer(d.rejected(&[check(&a)], 0, 1_200, &[status(0, 1_200)]));
        assert_eq!(again, first);
        assert_eq!(again_at, first_at, "the repeated 429 was formatted again");
        // Each input the text depends on changes it.
        let (other_reset, other_at) =
            answer(d.rejected(&[check(&a)], 0, 2_500, &[status(0, 2_500)]));
        assert!(other_reset.contains(r#"r=0;t=3"#) && other_reset.contains("retry-after: 3"));
        assert_ne!(other_at, first_at);
        let other_remaining = text(d.rejected(&[check(&a)], 0, 1_500, &[status(1, 1_500)]));
        assert!(other_remaining.contains(r#"r=1;t=2"#), "{other_remaining}");
        let other_rule = text(d.rejected(&[check(&b)], 0, 1_500, &[status(0, 1_500)]));
        assert!(other_rule.contains("tollgate-rule: b") && other_rule.contains(r#""rule":"b""#));
        let legacy = DenySettings::new(None, HeaderValue::from_static("application/json"), true);
        let with_legacy = text(legacy.rejected(&[check(&a)], 0, 1_500, &[status(0, 1_500)]));
        assert!(
            with_legacy.contains("x-ratelimit-remaining: 0"),
            "{with_legacy}"
        );
        assert!(
            !text(d.rejected(&[check(&a)], 0, 1_500, &[status(0, 1_500)])).contains("x-ratelimit")
        );
    }

    /// The lean HTTP/1.1 path writes a 429 from its encoded fields; the bytes are those of the
    /// same 429 written from its response, for GET and HEAD, kept open or closing, and for an
    /// empty body and a large one too.
    #[test]
    fn a_429_from_its_encoded_fields_is_the_same_bytes_as_from_its_response() {
        use super::super::h1_encode::{write_rejection, write_response};
        use futures_util::FutureExt;
        // The Date line is cut out of both: the two writes may fall in different seconds.
        let undated = |out: Vec<u8>| {
            let text = String::from_utf8(out).unwrap();
            let lines: Vec<_> = text.split_inclusive("\r\n").collect();
            assert_eq!(lines.iter().filter(|l| l.starts_with("date: ")).count(), 1);
            lines
                .into_iter()
                .filter(|l| !l.starts_with("date: "))
                .collect::<String>()
        };
        let (a, b) = (rule("a"), rule("b"));
        let checks = [check(&a), check(&b)];
        let statuses = [
            status(0, 1_500),
            WindowStatus {
                check: 1,
                ..status(3, 800)
            },
        ];
        let json = HeaderValue::from_static("application/json");
        let plain = DenySettings::new(None, json.clone(), false);
        let legacy = DenySettings::new(None, json.clone(), true);
        let empty = DenySettings::new(Some(""), json.clone(), false);
        // Past the size copied behind the head: written beside it.
        let large = DenySettings::new(Some(&"slow down {rule} ".repeat(100)), json, false);
        for deny in [&plain, &legacy, &empty, &large] {
            let r = deny.rejected(&checks, 0, 1_500, &statuses);
            for (head_only, close) in [(false, false), (true, false), (false, true), (true, true)] {
                let (mut wbuf, mut spare) = (Vec::new(), HeaderMap::new());
                let mut from_response = Vec::new();
                let resp = r.response();
                let kept = write_response(
                    &mut from_response,
                    &mut wbuf,
                    resp,
                    head_only,
                    close,
                    &mut spare,
                )
                .now_or_never()
                .unwrap()
                .unwrap();
                let mut from_fields = Vec::new();
                let kept_too = write_rejection(&mut from_fields, &mut wbuf, &r, head_only, close)
                    .now_or_never()
                    .unwrap()
                    .unwrap();
                let (want, got) = (undated(from_response), undated(from_fields));
                assert_eq!(got, want, "head_only {head_only}, close {close}");
                assert_eq!(kept_too, kept);
                assert!(
                    want.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
                    "{want}"
                );
                assert_eq!(want.ends_with("\r\n\r\n"), head_only || r.body().is_empty());
            }
        }
    }

    #[test]
    fn errors_are_json_with_the_right_status() {
        let r = ProxyError::UpstreamTimeout.into_response();
        assert_eq!(r.status(), 504);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(ProxyError::NoRoute.into_response().status(), 404);
    }
}
