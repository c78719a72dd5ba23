//! What the feed says, and when: every second the violation tap is drained into `violation`
//! messages and the alert rules are evaluated; every `stats_interval` a `stats` message goes out;
//! every `heartbeat_interval` a `heartbeat`.
//!
//! Stats and heartbeats are scheduled on the limiter's clock, so tests drive them by moving a
//! `ManualClock`; the one-second drain runs on real time, so denials never wait on the clock.
//! Counts come from the metrics registry's atomics (deltas between rounds), never from the
//! request path.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::Feed;
use crate::admin::alerts::{Alert, Alerts, Reading};
use crate::admin::webhook::Webhook;
use crate::config::live::LiveConfig;
use crate::limiter::Limiter;
use crate::shutdown::Shutdown;
use crate::telemetry::{self as t, Metrics};

/// How many keys a `stats` message lists.
const TOP_KEYS: usize = 10;
/// Forwarded requests in a minute below which the upstream error rate is not judged.
const MIN_FORWARDED: u64 = 20;

/// Everything the ticker reads and writes.
pub struct Ticker {
    pub feed: Arc<Feed>,
    pub limiter: Arc<Limiter>,
    pub config: Arc<LiveConfig>,
    pub metrics: Metrics,
    pub alerts: Arc<Alerts>,
    pub webhook: Option<Webhook>,
    pub max_keys: usize,
}

/// Cumulative counts read from the registry.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    requests: u64,
    allowed: u64,
    denied: u64,
    shadow_denied: u64,
    upstream_errors: u64,
}

impl Totals {
    fn read(m: &Metrics) -> Totals {
        let mut t = Totals::default();
        for (labels, v) in m.counter_values(t::REQUESTS) {
            t.requests += v;
            let decision = labels
                .iter()
                .find(|(k, _)| k == "decision")
                .map(|(_, d)| d.as_str());
            match decision {
                Some("allow") => t.allowed += v,
                Some("deny") => t.denied += v,
                Some("shadow_deny") => t.shadow_denied += v,
                _ => {}
            }
        }
        t.upstream_errors = m.counter_sum(t::UPSTREAM_ERRORS);
        t
    }

    fn minus(self, o: Totals) -> Totals {
        Totals {
            requests: self.requests.saturating_sub(o.requests),
            allowed: self.allowed.saturating_sub(o.allowed),
            denied: self.denied.saturating_sub(o.denied),
            shadow_denied: self.shadow_denied.saturating_sub(o.shadow_denied),
            upstream_errors: self.upstream_errors.saturating_sub(o.upstream_errors),
        }
    }

    /// Requests that went upstream.
    fn forwarded(&self) -> u64 {
        self.allowed + self.shadow_denied
    }
}

impl Ticker {
    pub async fn run(self, stop: Shutdown) {
        let settings = self.feed.settings.clone();
        let mut second = tokio::time::interval(Duration::from_secs(1));
        let start = self.limiter.now_ms();
        let mut next_stats = start + ms(settings.stats_interval);
        let mut next_heartbeat = start + ms(settings.heartbeat_interval);
        let mut stats_base = (start, Totals::read(&self.metrics));
        // The last minute, one slot per second: for rates over a minute.
        let mut minute: VecDeque<Totals> = VecDeque::with_capacity(61);
        minute.push_back(stats_base.1);
        let clients = self.metrics.gauge(t::FEED_CLIENTS, &[]);
        loop {
            tokio::select! {
                _ = second.tick() => {}
                _ = stop.wait() => return,
            }
            let now = self.limiter.now_ms();
            let totals = Totals::read(&self.metrics);
            minute.push_back(totals);
            if minute.len() > 61 {
                minute.pop_front();
            }
            let denied_keys = self.publish_violations(now);
            self.evaluate_alerts(now, &minute, denied_keys);
            if now >= next_stats {
                // The top keys walk the whole table: only worth it when someone is watching.
                let top = if self.feed.clients() == 0 {
                    Vec::new()
                } else {
                    let limiter = self.limiter.clone();
                    let config = self.config.runtime();
                    tokio::task::spawn_blocking(move || top_keys(&limiter, &config, now))
                        .await
                        .unwrap_or_default()
                };
                self.publish_stats(now, stats_base, totals, top);
                stats_base = (now, totals);
                next_stats = advance(next_stats, now, settings.stats_interval);
            }
            if now >= next_heartbeat {
                self.feed.publish(
                    "heartbeat",
                    now,
                    json!({"clients": self.feed.clients()}),
                    None,
                );
                next_heartbeat = advance(next_heartbeat, now, settings.heartbeat_interval);
            }
            clients.set(self.feed.clients() as f64);
        }
    }

    /// One `violation` per tapped (rule, key, shadow); returns the keys really denied.
    fn publish_violations(&self, now: u64) -> Vec<(String, String)> {
        let Some(tap) = self.limiter.tap() else {
            return Vec::new();
        };
        let mut denied = Vec::new();
        let mut entries = tap.drain();
        // A flood of distinct keys must not overrun the broadcast: the busiest go out, up to
        // half the buffer per second, and the rest are counted as suppressed.
        let cap = (self.feed.settings.buffer / 2).max(1);
        if entries.len() > cap {
            entries.sort_unstable_by_key(|e| std::cmp::Reverse(e.count));
            for e in entries.drain(cap..) {
                self.feed.count_suppressed(e.count);
                if !e.shadow {
                    denied.push((e.rule.to_string(), e.key.into()));
                }
            }
        }
        for e in entries {
            self.feed.count_coalesced(e.count.saturating_sub(1));
            let data = json!({
                "rule": &*e.rule, "key": &*e.key, "shadow": e.shadow, "count": e.count,
                "limit": e.sample.limit, "method": e.sample.method, "path": e.sample.path,
                "client_ip": e.sample.client_ip,
            });
            self.feed
                .publish("violation", now, data, Some(e.rule.clone()));
            if !e.shadow {
                denied.push((e.rule.to_string(), e.key.into()));
            }
        }
        denied
    }

    fn evaluate_alerts(
        &self,
        now: u64,
        minute: &VecDeque<Totals>,
        denied_keys: Vec<(String, String)>,
    ) {
        let (first, last) = (
            minute.front().copied().unwrap_or_default(),
            minute.back().copied().unwrap_or_default(),
        );
        let span = last.minus(first);
        let upstream_error_rate = (span.forwarded() >= MIN_FORWARDED)
            .then(|| span.upstream_errors as f64 / span.forwarded() as f64);
        let reading = Reading {
            now_ms: now,
            denials_per_minute: span.denied as f64,
            upstream_error_rate,
            flush_lag_secs: self.metrics.gauge_value(t::STORE_OLDEST),
            tracked_keys: self.limiter.tracked_keys() as f64,
            max_keys: self.max_keys as f64,
            denied_keys,
        };
        for alert in self.alerts.evaluate(&reading) {
            self.announce(alert);
        }
    }

    /// An alert transition goes to the log, the metrics, the feed and the webhook.
    fn announce(&self, alert: Alert) {
        match alert.state {
            "firing" => {
                tracing::warn!(alert = alert.name, subject = %alert.subject, value = alert.value, threshold = alert.threshold, "alert firing: {}", alert.message)
            }
            _ => {
                tracing::info!(alert = alert.name, subject = %alert.subject, value = alert.value, "alert resolved: {}", alert.message)
            }
        }
        self.metrics
            .counter(t::ALERTS, &[("alert", alert.name), ("state", alert.state)])
            .increment(1);
        let firing = self.alerts.firing(alert.name);
        self.metrics
            .gauge(t::ALERTS_FIRING, &[("alert", alert.name)])
            .set(firing as f64);
        let ts = alert.resolved_ms.unwrap_or(alert.since_ms);
        self.feed.publish(
            "alert",
            ts,
            serde_json::to_value(&alert).unwrap_or_default(),
            None,
        );
        if let Some(w) = &self.webhook {
            w.send(alert);
        }
    }

    fn publish_stats(
        &self,
        now: u64,
        (since, base): (u64, Totals),
        totals: Totals,
        top: Vec<serde_json::Value>,
    ) {
        let d = totals.minus(base);
        let secs = (now.saturating_sub(since) as f64 / 1000.0).max(0.001);
        let error_rate = if d.forwarded() > 0 {
            d.upstream_errors as f64 / d.forwarded() as f64
        } else {
            0.0
        };
        let data = json!({
            "interval_secs": secs,
            "rps": d.requests as f64 / secs,
            "requests": d.requests,
            "allowed": d.allowed,
            "denied": d.denied,
            "shadow_denied": d.shadow_denied,
            "active_keys": self.limiter.tracked_keys(),
            "top_keys": top,
            "flush_lag_secs": self.metrics.gauge_value(t::STORE_OLDEST),
            "upstream_error_rate": error_rate,
        });
        self.feed.publish("stats", now, data, None);
    }
}

/// The `TOP_KEYS` keys closest to a denial.
fn top_keys(
    limiter: &Limiter,
    config: &crate::config::RuntimeConfig,
    now: u64,
) -> Vec<serde_json::Value> {
    let rules: Vec<_> = config.rules.iter().map(|b| &*b.rule).collect();
    let mut all = limiter.usage_report(&rules, |_, _| true, now);
    all.sort_by(|a, b| {
        b.ratio()
            .total_cmp(&a.ratio())
            .then(b.used().cmp(&a.used()))
    });
    all.truncate(TOP_KEYS);
    all.iter()
        .map(|k| {
            let max = k.windows.iter().map(|w| w.max).max().unwrap_or(0);
            json!({"rule": &*k.rule, "key": &*k.key, "used": k.used(), "max": max, "ratio": k.ratio()})
        })
        .collect()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The next due time after `now`, on the schedule's grid (a clock jump skips missed rounds).
fn advance(due: u64, now: u64, every: Duration) -> u64 {
    let every = ms(every).max(1);
    due + (now.saturating_sub(due) / every + 1) * every
}
