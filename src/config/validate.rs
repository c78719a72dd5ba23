//! Raw config -> typed runtime config. Every problem is collected, each naming its field.
//!
//! Owns the rules of what a valid config is. Produces the route table, bound rules (with tiers and
//! overrides folded in), forwarding and response settings, and the startup [`Settings`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::raw::{RawConfig, RawRule};
use super::{parse, Config, ConfigError, ConfigErrors};
use crate::limiter::extract::{Cost, KeySpec, OnMissing};
use crate::limiter::jwt::JwtVerifier;
use crate::limiter::{BoundRule, Limits, Rule, RuleMetrics, Window};
use crate::proxy::headers::Forwarding;
use crate::proxy::respond::{policy_name, DenySettings};
use crate::proxy::route::RouteTable;
use crate::telemetry::Metrics;

mod jwt;
mod routes;
mod settings;

/// What the hot path reads, swapped whole on reload.
#[derive(Debug)]
pub struct RuntimeConfig {
    pub routes: RouteTable,
    /// Every rule, in file order (the admin plane lists them).
    pub rules: Vec<Arc<BoundRule>>,
    pub forwarding: Forwarding,
    pub deny: DenySettings,
    pub access_log: bool,
    pub jwt: Option<JwtVerifier>,
}

/// Collects field errors.
#[derive(Default)]
pub(super) struct Errors(Vec<ConfigError>);

impl Errors {
    pub fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigError {
            field: field.into(),
            reason: reason.into(),
        });
    }

    /// Keep the value, or record the error under `field`.
    pub fn check<T>(&mut self, field: impl Into<String>, r: Result<T, String>) -> Option<T> {
        r.map_err(|e| self.push(field, e)).ok()
    }
}

/// Validate a parsed file. `origin` names the file in errors.
pub fn validate(raw: RawConfig, origin: &str, metrics: &Metrics) -> Result<Config, ConfigErrors> {
    let mut errs = Errors::default();
    let settings = settings::settings(&raw, &mut errs);
    let jwt = raw.jwt.as_ref().and_then(|j| jwt::verifier(j, &mut errs));
    let shadow_all = raw.limits.shadow.unwrap_or(false);
    let tiers = tiers(&raw, &mut errs);
    let overrides = overrides(&raw, &tiers, &mut errs);
    let rules = rules(
        &raw,
        shadow_all,
        &tiers,
        &overrides,
        raw.jwt.is_some(),
        metrics,
        &mut errs,
    );
    let routes = routes::routes(&raw, &rules, metrics, &mut errs);
    let forwarding = forwarding(&raw, &mut errs);
    let deny = deny(&raw, &mut errs);
    match (settings, errs.0.is_empty()) {
        (Some(settings), true) => Ok(Config {
            settings,
            runtime: RuntimeConfig {
                routes,
                rules: in_file_order(rules),
                forwarding,
                deny,
                access_log: raw.log.access_log.unwrap_or(false),
                jwt,
            },
            raw,
        }),
        _ => Err(ConfigErrors {
            origin: origin.to_string(),
            errors: errs.0,
        }),
    }
}

/// Rules come out of a map; put them back in file order for listings.
fn in_file_order(rules: BoundRules) -> Vec<Arc<BoundRule>> {
    let mut v: Vec<_> = rules.into_values().collect();
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, r)| r).collect()
}

/// Tier -> rule -> limits, parsed.
type Tiers = BTreeMap<String, BTreeMap<String, Vec<(u32, Duration)>>>;

fn tiers(raw: &RawConfig, errs: &mut Errors) -> Tiers {
    let mut out = Tiers::new();
    for (tier, per_rule) in &raw.tiers {
        errs.check(format!("tiers.{tier}"), parse::name(tier));
        for (rule, limits) in per_rule {
            if !raw.rules.iter().any(|r| &r.name == rule) {
                errs.push(
                    format!("tiers.{tier}.{rule}"),
                    format!("no rule named {rule:?}"),
                );
            }
            let field = format!("tiers.{tier}.{rule}");
            let parsed = parse_limits(limits, &field, errs);
            out.entry(tier.clone())
                .or_default()
                .insert(rule.clone(), parsed);
        }
    }
    out
}

fn parse_limits(limits: &[String], field: &str, errs: &mut Errors) -> Vec<(u32, Duration)> {
    if limits.is_empty() {
        errs.push(field, "at least one limit is required, e.g. [\"100/m\"]");
    }
    let parsed: Vec<_> = limits
        .iter()
        .enumerate()
        .filter_map(|(i, l)| errs.check(format!("{field}[{i}]"), parse::limit(l)))
        .collect();
    let mut windows: Vec<_> = parsed.iter().map(|(_, w)| *w).collect();
    windows.sort();
    windows.dedup();
    if windows.len() != parsed.len() {
        errs.push(
            field,
            "two limits share a window length; keep the tighter one",
        );
    }
    parsed
}

/// Build the limiter's windows; the policy name is the rule's, suffixed when it has several.
fn to_limits(rule: &str, parsed: &[(u32, Duration)]) -> Arc<Limits> {
    let windows = parsed
        .iter()
        .map(|&(max, window)| {
            let mut policy = String::new();
            policy_name(rule, parsed.len(), window.as_millis() as u64, &mut policy);
            Window {
                dur_ms: window.as_millis() as u64,
                max,
                policy: policy.into(),
            }
        })
        .collect::<Vec<_>>();
    Arc::new(Limits {
        windows: windows.into(),
    })
}

/// Rule name -> (file index, bound rule).
pub(super) type BoundRules = BTreeMap<String, (usize, Arc<BoundRule>)>;

fn rules(
    raw: &RawConfig,
    shadow_all: bool,
    tiers: &Tiers,
    overrides: &[Override],
    have_jwt: bool,
    metrics: &Metrics,
    errs: &mut Errors,
) -> BoundRules {
    let mut out = BoundRules::new();
    for (i, r) in raw.rules.iter().enumerate() {
        let field = format!("rules[{i}]");
        errs.check(format!("{field}.name"), parse::name(&r.name));
        if out.contains_key(&r.name) {
            errs.push(
                format!("{field}.name"),
                format!("duplicate rule name {:?}", r.name),
            );
        }
        if let Some(bound) = bound_rule(
            r, &field, shadow_all, tiers, overrides, have_jwt, metrics, errs,
        ) {
            out.insert(r.name.clone(), (i, Arc::new(bound)));
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn bound_rule(
    r: &RawRule,
    field: &str,
    shadow_all: bool,
    tiers: &Tiers,
    overrides: &[Override],
    have_jwt: bool,
    metrics: &Metrics,
    errs: &mut Errors,
) -> Option<BoundRule> {
    let key = errs.check(format!("{field}.key"), KeySpec::parse(&r.key));
    if key.as_ref().is_some_and(|k| k.uses_jwt() && !have_jwt) {
        errs.push(format!("{field}.key"), "a jwt: key needs a [jwt] section");
    }
    let on_missing = match &r.on_missing {
        None => Some(OnMissing::default()),
        Some(s) => errs.check(format!("{field}.on_missing"), OnMissing::parse(s)),
    };
    let cost_header = r.cost_header.as_ref().and_then(|h| {
        let name = HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("invalid header name {h:?}"));
        errs.check(format!("{field}.cost_header"), name)
    });
    let parsed = parse_limits(&r.limits, &format!("{field}.limits"), errs);
    let mut rule = Rule::new(
        &r.name,
        to_limits(&r.name, &parsed),
        shadow_all || r.shadow.unwrap_or(false),
    );
    for o in overrides
        .iter()
        .filter(|o| o.rule.as_ref().is_none_or(|n| n == &r.name))
    {
        let limits = match &o.source {
            OverrideSource::Limits(l) => Some(l.as_slice()),
            OverrideSource::Tier(tier) => tiers
                .get(tier)
                .and_then(|t| t.get(&r.name))
                .map(Vec::as_slice),
        };
        if let Some(limits) = limits {
            rule = rule.with_override(&o.key, to_limits(&r.name, limits));
        }
    }
    let cost = r.cost.unwrap_or(1);
    if cost == 0 {
        errs.push(
            format!("{field}.cost"),
            "must be at least 1 (a free request would bypass the rule)",
        );
    }
    Some(BoundRule {
        rule: Arc::new(rule),
        key: key?,
        on_missing: on_missing?,
        cost: Cost {
            fixed: r.cost.unwrap_or(1),
            header: cost_header,
        },
        metrics: RuleMetrics::new(metrics, &r.name),
    })
}

/// A per-key override, checked once.
pub(super) struct Override {
    key: String,
    /// Only this rule; None means every rule.
    rule: Option<String>,
    source: OverrideSource,
}

enum OverrideSource {
    Tier(String),
    Limits(Vec<(u32, Duration)>),
}

fn overrides(raw: &RawConfig, tiers: &Tiers, errs: &mut Errors) -> Vec<Override> {
    let mut out = Vec::new();
    for (j, o) in raw.overrides.iter().enumerate() {
        let field = format!("overrides[{j}]");
        if o.key.is_empty() {
            errs.push(format!("{field}.key"), "must not be empty");
        }
        if let Some(rule) = &o.rule {
            if !raw.rules.iter().any(|r| &r.name == rule) {
                errs.push(format!("{field}.rule"), format!("no rule named {rule:?}"));
            }
        }
        let source = match (&o.tier, o.limits.is_empty()) {
            (Some(_), false) => {
                errs.push(field, "set either tier or limits, not both");
                continue;
            }
            (None, true) => {
                errs.push(field, "set a tier or limits");
                continue;
            }
            (None, false) => {
                OverrideSource::Limits(parse_limits(&o.limits, &format!("{field}.limits"), errs))
            }
            (Some(tier), true) if !tiers.contains_key(tier) => {
                errs.push(format!("{field}.tier"), format!("no tier named {tier:?}"));
                continue;
            }
            (Some(tier), true) => OverrideSource::Tier(tier.clone()),
        };
        out.push(Override {
            key: o.key.clone(),
            rule: o.rule.clone(),
            source,
        });
    }
    out
}

fn forwarding(raw: &RawConfig, errs: &mut Errors) -> Forwarding {
    let f = &raw.forwarding;
    let trusted = f
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let net = c
                .parse::<ipnet::IpNet>()
                .or_else(|_| c.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("invalid CIDR {c:?}"));
            errs.check(format!("forwarding.trusted_proxies[{i}]"), net)
        })
        .collect();
    Forwarding {
        x_forwarded: f.x_forwarded.unwrap_or(true),
        forwarded: f.forwarded.unwrap_or(false),
        trusted,
    }
}

fn deny(raw: &RawConfig, errs: &mut Errors) -> DenySettings {
    let l = &raw.limits;
    let content_type = l.deny_content_type.as_deref().unwrap_or("application/json");
    let content_type = errs
        .check(
            "limits.deny_content_type",
            HeaderValue::from_str(content_type)
                .map_err(|_| format!("invalid header value {content_type:?}")),
        )
        .unwrap_or(HeaderValue::from_static("application/json"));
    DenySettings::new(
        l.deny_body.as_deref(),
        content_type,
        l.legacy_headers.unwrap_or(false),
    )
}

/// Parse an address field, recording the error.
pub(super) fn addr(
    errs: &mut Errors,
    field: &str,
    value: Option<&str>,
    default: &str,
) -> Option<SocketAddr> {
    errs.check(field, parse::socket_addr(value.unwrap_or(default)))
}
