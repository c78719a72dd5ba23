//! `[[routes]]`: matchers, targets (upstreams or a direct response) and the rules they apply.

use std::collections::HashSet;

use bytes::Bytes;
use http::uri::{Scheme, Uri};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::super::parse;
use super::super::raw::{RawConfig, RawDirect, RawRoute};
use super::{BoundRules, Errors};
use crate::proxy::metrics::RouteMetrics;
use crate::proxy::route::{
    DirectResponse, HostMatch, PathMatch, Route, RouteMatch, RouteTable, Target, Upstream,
    Upstreams,
};
use crate::telemetry::Metrics;

pub(super) fn routes(
    raw: &RawConfig,
    rules: &BoundRules,
    metrics: &Metrics,
    errs: &mut Errors,
) -> RouteTable {
    let mut seen = HashSet::new();
    let mut table = RouteTable::default();
    if raw.routes.is_empty() {
        errs.push("routes", "at least one [[routes]] entry is required");
    }
    for (i, r) in raw.routes.iter().enumerate() {
        let field = format!("routes[{i}]");
        errs.check(format!("{field}.name"), parse::name(&r.name));
        if !seen.insert(r.name.as_str()) {
            errs.push(
                format!("{field}.name"),
                format!("duplicate route name {:?}", r.name),
            );
        }
        if let Some(route) = route(r, &field, rules, metrics, errs) {
            table.routes.push(route);
        }
    }
    table
}

fn route(
    r: &RawRoute,
    field: &str,
    rules: &BoundRules,
    metrics: &Metrics,
    errs: &mut Errors,
) -> Option<Route> {
    let matcher = matcher(r, field, errs);
    let target = target(r, field, errs);
    let mut bound = Vec::new();
    for (j, name) in r.rules.iter().enumerate() {
        match rules.get(name) {
            Some((_, rule)) => bound.push(rule.clone()),
            None => errs.push(
                format!("{field}.rules[{j}]"),
                format!("no rule named {name:?}"),
            ),
        }
    }
    let needs_claims = bound.iter().any(|b| b.key.uses_jwt());
    Some(Route {
        name: r.name.as_str().into(),
        matcher: matcher?,
        target: target?,
        rules: bound,
        metrics: RouteMetrics::new(metrics, &r.name),
        needs_claims,
    })
}

fn matcher(r: &RawRoute, field: &str, errs: &mut Errors) -> Option<RouteMatch> {
    let host = r.host.as_ref().map(|h| match h.strip_prefix('*') {
        Some(suffix) => HostMatch::Suffix(suffix.to_ascii_lowercase()),
        None => HostMatch::Exact(h.to_ascii_lowercase()),
    });
    let path = match (&r.path_prefix, &r.path_pattern) {
        (Some(_), Some(_)) => {
            errs.push(field, "set path_prefix or path_pattern, not both");
            return None;
        }
        (Some(p), None) if !p.starts_with('/') => {
            errs.push(
                format!("{field}.path_prefix"),
                format!("{p:?} must start with '/'"),
            );
            return None;
        }
        (Some(p), None) => PathMatch::Prefix(p.clone()),
        (None, Some(g)) => {
            let glob = globset::GlobBuilder::new(g)
                .literal_separator(true)
                .build()
                .map_err(|e| format!("invalid pattern {g:?}: {e}"));
            PathMatch::Glob(
                errs.check(format!("{field}.path_pattern"), glob)?
                    .compile_matcher(),
            )
        }
        (None, None) => PathMatch::Any,
    };
    let mut methods = Vec::new();
    for (j, m) in r.methods.iter().enumerate() {
        let parsed = Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("invalid method {m:?}"));
        methods.extend(errs.check(format!("{field}.methods[{j}]"), parsed));
    }
    Some(RouteMatch {
        host,
        path,
        methods,
    })
}

fn target(r: &RawRoute, field: &str, errs: &mut Errors) -> Option<Target> {
    match (&r.direct, r.upstreams.is_empty()) {
        (Some(_), false) => {
            errs.push(field, "set upstreams or direct, not both");
            None
        }
        (None, true) => {
            errs.push(
                field,
                "set upstreams = [\"http://host:port\"] or a direct response",
            );
            None
        }
        (Some(d), true) => direct(d, field, errs).map(Target::Direct),
        (None, false) => {
            let list: Vec<Upstream> = r
                .upstreams
                .iter()
                .enumerate()
                .filter_map(|(j, u)| errs.check(format!("{field}.upstreams[{j}]"), upstream(u)))
                .collect();
            (list.len() == r.upstreams.len()).then(|| Target::Upstreams(Upstreams::new(list)))
        }
    }
}

/// Parse "http://host:port[/base]" or "https://...".
pub fn upstream(text: &str) -> Result<Upstream, String> {
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| format!("{text:?} needs http:// or https://"))?;
    if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
        return Err(format!(
            "{text:?}: only http and https upstreams are supported"
        ));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("{text:?} needs a host"))?;
    if uri.query().is_some() {
        return Err(format!("{text:?}: an upstream URL cannot carry a query"));
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    Ok(Upstream {
        scheme,
        authority,
        base_path,
    })
}

fn direct(d: &RawDirect, field: &str, errs: &mut Errors) -> Option<DirectResponse> {
    let status = d.status.unwrap_or(200);
    let status = errs.check(
        format!("{field}.direct.status"),
        (200..=599)
            .contains(&status)
            .then(|| StatusCode::from_u16(status).ok())
            .flatten()
            .ok_or_else(|| format!("invalid status {status}: a final status, 200 to 599")),
    );
    let mut headers = HeaderMap::new();
    for (k, v) in &d.headers {
        let pair = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("invalid header name {k:?}"))
            .and_then(|n| {
                HeaderValue::from_str(v)
                    .map(|v| (n, v))
                    .map_err(|_| format!("invalid value for {k:?}"))
            });
        if let Some((n, v)) = errs.check(format!("{field}.direct.headers.{k}"), pair) {
            headers.append(n, v);
        }
    }
    Some(DirectResponse {
        status: status?,
        headers,
        body: Bytes::from(d.body.clone()),
    })
}
