//! The limit step of a request: extract each rule's key and cost, ask the limiter once, and turn
//! the decision into either a ready 429/401/400 or the RateLimit headers for the way out.
//!
//! Borrows the request ([`View`]); returns only owned values so the request can then move
//! upstream.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, Uri};
use smallvec::SmallVec;

use super::metrics::DecisionLabel;
use super::rate_headers::RateHeaders;
use super::respond::{ProxyError, Rejection};
use super::route::Route;
use crate::config::RuntimeConfig;
use crate::limiter::extract::{OnMissing, RequestView};
use crate::limiter::fields::Fields;
use crate::limiter::usage::Sample;
use crate::limiter::{Check, Decision, DisplayBuf, Key, Limiter, ANONYMOUS};

/// What the limit step reads of a request: its method, its target and its header fields, from
/// a parsed request or from the lean parser's head.
pub struct View<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub fields: &'a dyn Fields,
}

/// The outcome of the limit step.
pub enum Gate {
    /// Go on; add these headers to whatever answers.
    Pass {
        headers: RateHeaders,
        label: DecisionLabel,
    },
    /// Answer this error now.
    Stop(ProxyError),
    /// Denied: answer this 429.
    Reject(Arc<Rejection>),
}

/// Check every rule of `route` for this request, all-or-nothing.
pub fn gate(
    cfg: &RuntimeConfig,
    route: &Route,
    limiter: &Limiter,
    req: &View<'_>,
    client_ip: IpAddr,
    started: Instant,
) -> Gate {
    if route.rules.is_empty() {
        return Gate::Pass {
            headers: RateHeaders::default(),
            label: DecisionLabel::Allow,
        };
    }
    let claims = route
        .needs_claims
        .then(|| RequestView::decode_claims(req.fields, cfg.jwt.as_ref()))
        .flatten();
    let view = RequestView {
        headers: req.fields,
        query: req.uri.query(),
        client_ip,
        claims: &claims,
    };
    let mut checks: SmallVec<[Check; 4]> = SmallVec::new();
    for bound in &route.rules {
        let key = match bound.key.extract(&view) {
            Some(key) => key,
            None => {
                bound.metrics.missing_key.increment(1);
                match bound.on_missing {
                    OnMissing::Reject => {
                        return stop(ProxyError::MissingKey(bound.rule.name.clone()))
                    }
                    OnMissing::Anonymous => Key::single(ANONYMOUS),
                    OnMissing::Skip => continue,
                }
            }
        };
        let cost = match bound.cost.of(req.fields) {
            Ok(cost) => cost,
            Err(e) => return stop(e.into()),
        };
        checks.push(Check {
            rule: &bound.rule,
            key,
            cost,
        });
    }
    let decision = limiter.check_from(started, &checks);
    count(route, &checks, &decision);
    let denied = match &decision {
        Decision::Deny { check, window, .. } => Some((*check, *window, false)),
        Decision::Allow { shadow_denied, .. } => shadow_denied.map(|(c, w)| (c, w, true)),
    };
    if let Some((check, window, shadow)) = denied {
        let c = &checks[usize::from(check)];
        record_violation(limiter, c, window, shadow, req, client_ip);
    }
    match decision {
        Decision::Allow {
            statuses,
            shadow_denied,
        } => {
            let headers = RateHeaders::new(&checks, &statuses, cfg.deny.legacy_headers);
            let label = if shadow_denied.is_some() {
                DecisionLabel::ShadowDeny
            } else {
                DecisionLabel::Allow
            };
            Gate::Pass { headers, label }
        }
        Decision::Deny {
            check,
            retry_after_ms,
            statuses,
            ..
        } => Gate::Reject(cfg.deny.rejected(&checks, check, retry_after_ms, &statuses)),
    }
}

/// Counts a denial (or a shadow rule's would-be denial) in the usage log and the admin feed's
/// tap, each with a sample of the request for the first of its minute (log) or second (tap).
fn record_violation(
    limiter: &Limiter,
    c: &Check,
    window: u8,
    shadow: bool,
    req: &View<'_>,
    client_ip: IpAddr,
) {
    if limiter.usage_log().is_none() && limiter.tap().is_none() {
        return;
    }
    // On the stack: a denial formats its key without allocating (the log and the tap copy it
    // only for the first denial of a key in their period).
    let mut display = DisplayBuf::default();
    display.fill(&c.key);
    let key = display.as_str();
    let sample = || {
        let limit = c
            .rule
            .limits_for(key)
            .windows
            .get(usize::from(window))
            .map(|w| w.describe())
            .unwrap_or_default();
        let path = req.uri.path();
        Sample {
            method: req.method.as_str().to_owned(),
            path: path.chars().take(256).collect(),
            client_ip: client_ip.to_string(),
            limit,
        }
    };
    if let Some(log) = limiter.usage_log() {
        log.violation(&c.rule.name, key, limiter.now_ms(), shadow, sample);
    }
    if let Some(tap) = limiter.tap() {
        tap.record(&c.rule.name, key, shadow, sample);
    }
}

fn stop(e: ProxyError) -> Gate {
    Gate::Stop(e)
}

/// Bump each rule's decision counter. `checks` and `route.rules` differ when a rule was skipped,
/// so find the bound rule by identity.
fn count(route: &Route, checks: &[Check], decision: &Decision) {
    let metrics_of = |i: usize| {
        route
            .rules
            .iter()
            .find(|b| std::ptr::eq(&*b.rule, checks[i].rule))
            .map(|b| &b.metrics)
    };
    match decision {
        Decision::Deny { check, .. } => {
            if let Some(m) = metrics_of(*check as usize) {
                m.deny.increment(1);
            }
        }
        Decision::Allow { shadow_denied, .. } => {
            for i in 0..checks.len() {
                if let Some(m) = metrics_of(i) {
                    match shadow_denied {
                        Some((c, _)) if *c as usize == i => m.shadow_deny.increment(1),
                        _ => m.allow.increment(1),
                    }
                }
            }
        }
    }
}
