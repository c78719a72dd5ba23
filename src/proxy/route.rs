//! Routes: which requests a route takes, and where they go.
//!
//! Owns matching (host, path prefix or glob, method) and targets (upstreams taken round-robin, or a
//! static direct response). Built once per config by `config::validate`; read-only afterwards
//! except for the round-robin cursor. Must not touch the limiter table or the network.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, Method, StatusCode};

use crate::limiter::BoundRule;
use crate::proxy::metrics::RouteMetrics;

/// One route of the table, first match wins.
#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    pub matcher: RouteMatch,
    pub target: Target,
    /// Checked all-or-nothing, in this order.
    pub rules: Vec<Arc<BoundRule>>,
    pub metrics: RouteMetrics,
    /// Whether any rule needs JWT claims (decode the token only then).
    pub needs_claims: bool,
}

/// What a route takes.
#[derive(Debug, Default)]
pub struct RouteMatch {
    pub host: Option<HostMatch>,
    pub path: PathMatch,
    /// Empty means any method.
    pub methods: Vec<Method>,
}

#[derive(Debug)]
pub enum HostMatch {
    Exact(String),
    /// `*.example.com`, stored as `.example.com`.
    Suffix(String),
}

#[derive(Debug, Default)]
pub enum PathMatch {
    #[default]
    Any,
    Prefix(String),
    Glob(globset::GlobMatcher),
}

impl RouteMatch {
    pub fn matches(&self, host: Option<&str>, path: &str, method: &Method) -> bool {
        (self.methods.is_empty() || self.methods.contains(method))
            && self.host_matches(host)
            && self.path.matches(path)
    }

    fn host_matches(&self, host: Option<&str>) -> bool {
        let Some(want) = &self.host else { return true };
        let Some(host) = host else { return false };
        let host = strip_port(host);
        match want {
            HostMatch::Exact(h) => host.eq_ignore_ascii_case(h),
            HostMatch::Suffix(s) => {
                host.len() > s.len() && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| &h[1..]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Prefix(p) => {
                path.starts_with(p.as_str())
                    && (p.ends_with('/')
                        || path.len() == p.len()
                        || path.as_bytes()[p.len()] == b'/')
            }
            PathMatch::Glob(g) => g.is_match(path),
        }
    }
}

/// Where a matched request goes.
#[derive(Debug)]
pub enum Target {
    Upstreams(Upstreams),
    Direct(DirectResponse),
}

/// A route's upstreams, taken in turn.
#[derive(Debug)]
pub struct Upstreams {
    pub list: Box<[Upstream]>,
    next: AtomicUsize,
}

impl Upstreams {
    pub fn new(list: Vec<Upstream>) -> Self {
        Self {
            list: list.into(),
            next: AtomicUsize::new(0),
        }
    }

    /// The index in `list` of the next upstream, round-robin.
    pub fn pick(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.list.len()
    }
}

/// One upstream base URL: requests keep their path and query, prefixed by `base_path`.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub scheme: Scheme,
    pub authority: Authority,
    /// "" or a prefix such as "/v1" (no trailing slash).
    pub base_path: String,
}

/// A fixed answer.
#[derive(Debug, Clone)]
pub struct DirectResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The routes of one config, in order.
#[derive(Debug, Default)]
pub struct RouteTable {
    pub routes: Vec<Route>,
}

impl RouteTable {
    /// The index in `routes` of the first route that matches. `host` is asked once, and only
    /// when a route to try matches on it: most tables never need it.
    pub fn position<'h>(
        &self,
        host: impl FnOnce() -> Option<&'h str>,
        path: &str,
        method: &Method,
    ) -> Option<usize> {
        let (mut ask, mut known) = (Some(host), None);
        self.routes.iter().position(|r| {
            if r.matcher.host.is_some() {
                if let Some(ask) = ask.take() {
                    known = ask();
                }
            }
            r.matcher.matches(known, path, method)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(host: Option<HostMatch>, path: PathMatch, methods: Vec<Method>) -> RouteMatch {
        RouteMatch {
            host,
            path,
            methods,
        }
    }

    #[test]
    fn prefix_matches_on_segment_boundaries() {
        let r = m(None, PathMatch::Prefix("/api".into()), vec![]);
        assert!(r.matches(None, "/api", &Method::GET));
        assert!(r.matches(None, "/api/x", &Method::GET));
        assert!(!r.matches(None, "/apix", &Method::GET));
        let root = m(None, PathMatch::Prefix("/".into()), vec![]);
        assert!(root.matches(None, "/anything", &Method::GET));
    }

    #[test]
    fn host_and_method_and_glob() {
        let glob = globset::GlobBuilder::new("/users/*/posts")
            .literal_separator(true)
            .build()
            .unwrap()
            .compile_matcher();
        let r = m(
            Some(HostMatch::Suffix(".example.com".into())),
            PathMatch::Glob(glob),
            vec![Method::POST],
        );
        assert!(r.matches(
            Some("api.Example.com:8443"),
            "/users/7/posts",
            &Method::POST
        ));
        assert!(!r.matches(Some("example.com"), "/users/7/posts", &Method::POST));
        assert!(!r.matches(Some("a.example.com"), "/users/7/8/posts", &Method::POST));
        assert!(!r.matches(Some("a.example.com"), "/users/7/posts", &Method::GET));
        let exact = m(
            Some(HostMatch::Exact("[::1]".into())),
            PathMatch::Any,
            vec![],
        );
        assert!(!exact.matches(None, "/", &Method::GET));
        let v6 = m(Some(HostMatch::Exact("::1".into())), PathMatch::Any, vec![]);
        assert!(v6.matches(Some("[::1]:80"), "/", &Method::GET));
    }
}
