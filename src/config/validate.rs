//! Raw config -> typed runtime config. Every problem is collected, each naming its field.
//!
//! Owns the rules of what a valid config is. Produces the route table, bound rules (with tiers and
//! overrides folded in), forwarding and response settings, and the startup [`Settings`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};

use super::raw::{RawConfig, RawRule};
use super::{parse, Config, ConfigError, ConfigErrors};
use crate::limiter::extract::{Cost, KeySpec, OnMissing};
use crate::limiter::jwt::JwtVerifier;
use crate::limiter::{BoundRule, Rule, RuleMetrics};
use crate::proxy::headers::Forwarding;
use crate::proxy::respond::DenySettings;
use crate::proxy::route::RouteTable;
use crate::telemetry::Metrics;

mod admin;
mod jwt;
mod limits;
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
    let tiers = limits::tiers(&raw, &mut errs);
    let overrides = limits::overrides(&raw, &tiers, &mut errs);
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

/// Rule name -> (file index, bound rule).
pub(super) type BoundRules = BTreeMap<String, (usize, Arc<BoundRule>)>;

fn rules(
    raw: &RawConfig,
    shadow_all: bool,
    tiers: &limits::Tiers,
    overrides: &[limits::Override],
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
            raw, r, &field, shadow_all, tiers, overrides, have_jwt, metrics, errs,
        ) {
            out.insert(r.name.clone(), (i, Arc::new(bound)));
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn bound_rule(
    raw: &RawConfig,
    r: &RawRule,
    field: &str,
    shadow_all: bool,
    tiers: &limits::Tiers,
    overrides: &[limits::Override],
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
    let calendar = limits::RuleCalendar::of(raw, r, field, errs);
    let parsed = limits::parse_limits(&r.limits, &format!("{field}.limits"), errs);
    let mut rule = Rule::new(
        &r.name,
        limits::to_limits(&r.name, &parsed, &calendar),
        shadow_all || r.shadow.unwrap_or(false),
    );
    for o in overrides {
        if let Some(limits) = o.limits_for(tiers, &r.name) {
            rule = rule.with_override(&o.key, limits::to_limits(&r.name, limits, &calendar));
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
