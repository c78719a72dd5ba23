//! The admin plane's settings: listener, tokens, origins, the feed and the alert rules.
//!
//! Owns what a safe admin config is: a non-loopback listener needs the admin token, tokens are
//! distinct and long enough to matter, origins are plain `scheme://host[:port]`.

use std::time::Duration;

use super::super::raw::RawConfig;
use super::super::settings::{AdminSettings, AlertSettings, FeedSettings, WebhookSettings};
use super::settings::dur;
use super::{addr, Errors};

/// Shorter tokens are refused: a guessable token is no protection.
const MIN_TOKEN_LEN: usize = 16;

pub(super) fn admin(raw: &RawConfig, errs: &mut Errors) -> Option<AdminSettings> {
    let a = &raw.admin;
    let listen = addr(errs, "admin.listen", a.listen.as_deref(), "127.0.0.1:9091")?;
    let token = checked_token(errs, "admin.token", &a.token);
    let read_token = checked_token(errs, "admin.read_token", &a.read_token);
    if !listen.ip().is_loopback() && token.is_none() {
        errs.push(
            "admin.listen",
            format!("{listen} is not a loopback address: set admin.token (or TOLLGATE_ADMIN_TOKEN) before exposing the admin port"),
        );
    }
    if token.is_some() && token == read_token {
        errs.push("admin.read_token", "must differ from admin.token");
    }
    let allowed_origins = a
        .allowed_origins
        .iter()
        .enumerate()
        .filter_map(|(i, o)| errs.check(format!("admin.allowed_origins[{i}]"), origin(o)))
        .collect();
    Some(AdminSettings {
        listen,
        token,
        read_token,
        metrics_require_token: a.metrics_require_token.unwrap_or(false),
        allowed_origins,
        feed: feed(raw, errs),
        alerts: alerts(raw, errs),
    })
}

/// An empty token is no token; a short one is an error (its value is never echoed).
fn checked_token(errs: &mut Errors, field: &str, value: &Option<String>) -> Option<String> {
    let t = value.as_ref().filter(|t| !t.is_empty())?;
    if t.len() < MIN_TOKEN_LEN || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        errs.push(
            field,
            format!("must be at least {MIN_TOKEN_LEN} characters, with no spaces"),
        );
    }
    Some(t.clone())
}

/// `https://ops.example.com:8443` as a browser sends it in `Origin`: lowercase, no path.
pub(crate) fn origin(text: &str) -> Result<String, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|_| format!("{text:?} is not an origin like https://ops.example.com"))?;
    let ok = matches!(uri.scheme_str(), Some("http" | "https"))
        && uri.host().is_some()
        && uri.path_and_query().is_none_or(|p| p.as_str() == "/");
    if !ok || text.ends_with('/') {
        return Err(format!(
            "{text:?} is not an origin like https://ops.example.com (scheme and host, no path)"
        ));
    }
    Ok(text.to_ascii_lowercase())
}

fn feed(raw: &RawConfig, errs: &mut Errors) -> FeedSettings {
    let f = &raw.admin.feed;
    let stats_interval = dur(errs, "admin.feed.stats_interval", &f.stats_interval, 5);
    let heartbeat_interval = dur(
        errs,
        "admin.feed.heartbeat_interval",
        &f.heartbeat_interval,
        10,
    );
    let mut count = |field: &str, v: Option<usize>, default: usize| {
        let v = v.unwrap_or(default);
        if v == 0 {
            errs.push(field, "must be at least 1");
        }
        v
    };
    FeedSettings {
        stats_interval,
        heartbeat_interval,
        buffer: count("admin.feed.buffer", f.buffer, 256),
        max_clients: count("admin.feed.max_clients", f.max_clients, 64),
    }
}

fn alerts(raw: &RawConfig, errs: &mut Errors) -> AlertSettings {
    let a = &raw.admin.alerts;
    let percent = |errs: &mut Errors, field: &str, v: Option<f64>, default: f64| {
        let v = v.unwrap_or(default);
        if !(0.0..=100.0).contains(&v) {
            errs.push(
                field,
                format!("must be a percentage from 0 to 100, got {v}"),
            );
        }
        (v > 0.0).then_some(v / 100.0)
    };
    AlertSettings {
        violations_per_minute: Some(a.violations_per_minute.unwrap_or(100)).filter(|&n| n > 0),
        upstream_error_rate: percent(
            errs,
            "admin.alerts.upstream_error_percent",
            a.upstream_error_percent,
            1.0,
        ),
        flush_lag: dur(errs, "admin.alerts.flush_lag", &a.flush_lag, 30),
        tracked_keys_ratio: percent(
            errs,
            "admin.alerts.tracked_keys_percent",
            a.tracked_keys_percent,
            80.0,
        ),
        new_blocked_key: a.new_blocked_key.unwrap_or(true),
        webhook: webhook(raw, errs),
    }
}

fn webhook(raw: &RawConfig, errs: &mut Errors) -> Option<WebhookSettings> {
    let a = &raw.admin.alerts;
    let url = a.webhook_url.as_ref().filter(|u| !u.is_empty())?;
    let parsed = url
        .parse::<http::Uri>()
        .ok()
        .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    let Some(url) = parsed else {
        // The URL itself is not echoed: hook URLs often carry a secret.
        errs.push(
            "admin.alerts.webhook_url",
            "must be an http:// or https:// URL",
        );
        return None;
    };
    let timeout = dur(errs, "admin.alerts.webhook_timeout", &a.webhook_timeout, 5);
    Some(WebhookSettings {
        url,
        timeout: timeout.min(Duration::from_secs(60)),
        retries: a.webhook_retries.unwrap_or(3).min(10),
    })
}
