//! Forwarding to an upstream over pooled keep-alive connections, and Upgrade passthrough.
//!
//! Owns the upstream connector (rustls with webpki roots plus an optional CA file), URI rewriting,
//! and mapping transport failures to 502/504. Connections come from `pool.rs`. Bodies stream both
//! ways: the client's body goes upstream as is, and the upstream's body comes back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::Either::{Left, Right};
use futures_util::FutureExt;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::uri::Scheme;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::h1_outbound;
use super::headers::{strip_hop_by_hop, wants_upgrade, Forwarding};
use super::heads::{Expiring, Heads};
use super::pool::{Pool, Relayed, SendError, UpstreamBody};
use super::respond::ProxyError;
use super::route::{Route, Upstream};
use super::service::Peer;
use crate::config::UpstreamSettings;

/// The upstream connection pool: connect timeout, pool limits, TLS roots.
pub fn pool(settings: &UpstreamSettings) -> Result<Pool, String> {
    let connector = https_connector(settings.ca_file.as_deref(), settings.connect_timeout)?;
    Ok(Pool::new(
        connector,
        settings.pool_max_idle,
        settings.pool_idle_timeout,
    ))
}

/// An http/https connector trusting the webpki roots plus `ca_file` (also used by the alert
/// webhook, so both speak TLS the same way).
pub fn https_connector(
    ca_file: Option<&std::path::Path>,
    connect_timeout: std::time::Duration,
) -> Result<HttpsConnector<HttpConnector>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("upstream.ca_file {}: {e}", path.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("upstream.ca_file {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("upstream.ca_file {}: {e}", path.display()))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// A client request's body: hyper's, or none at all when `h1_server` read the request itself
/// (it takes only requests without a body).
pub type ClientBody = Either<Incoming, Empty<Bytes>>;

/// What rewriting a request for its upstream needs besides the request.
pub struct ForwardCtx<'a> {
    pub forwarding: &'a Forwarding,
    /// The client connection's peer, its forwarding values made once per connection.
    pub peer: &'a Peer,
    pub proto: &'static str,
}

/// A request rewritten for its upstream, ready to send.
pub enum Outbound {
    /// A whole request, for hyper's client or the lean one. Boxed: the lean head is the common
    /// case, and a forward's future holds this value.
    Request(Box<Rewritten>),
    /// A bodyless request's head, written from the client's head bytes for the lean client
    /// (`h1_outbound.rs`): no header map is built on the way.
    Head(LeanHead),
}

/// A request rewritten in its header map.
pub struct Rewritten {
    req: Request<ClientBody>,
    /// The client side of an Upgrade the request asks for.
    client_upgrade: Option<OnUpgrade>,
}

/// A request head as it goes on the wire to a plain `http://` upstream.
pub struct LeanHead {
    pub method: Method,
    pub bytes: Vec<u8>,
}

/// Rewrite `req` for `upstream` (synchronously, before anything awaits). See `prepare`.
pub fn outbound(
    ctx: &ForwardCtx<'_>,
    upstream: &Upstream,
    mut req: Request<ClientBody>,
) -> Result<Outbound, ProxyError> {
    let upgrade = req.version() == Version::HTTP_11 && wants_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    prepare(ctx, upstream, &mut req, upgrade)?;
    Ok(Outbound::Request(Box::new(Rewritten {
        req,
        client_upgrade,
    })))
}

/// The head of a bodyless HTTP/1.1 request without an Upgrade, written for `upstream` from the
/// client's fields as sent; `None` when the lean client cannot take it (an `https://` upstream)
/// or the target is not in origin form, which `prepare` rewrites.
pub fn outbound_head<'a>(
    ctx: &ForwardCtx<'_>,
    upstream: &Upstream,
    method: &Method,
    uri: &Uri,
    head: &'a [u8],
    fields: impl h1_outbound::Pairs<'a>,
) -> Option<Outbound> {
    if upstream.scheme != Scheme::HTTP || uri.scheme().is_some() {
        return None;
    }
    let target = uri.path_and_query().map_or("/", PathAndQuery::as_str);
    let mut bytes = Vec::with_capacity(512);
    h1_outbound::encode(&mut bytes, method, target, head, fields, ctx, upstream);
    Some(Outbound::Head(LeanHead {
        method: method.clone(),
        bytes,
    }))
}

/// The bytes the lean client writes for a request rewritten by `prepare`: what
/// `h1_outbound` must agree with.
#[cfg(test)]
pub(super) fn encoded_by_map(
    ctx: &ForwardCtx<'_>,
    upstream: &Upstream,
    req: Request<ClientBody>,
) -> Vec<u8> {
    let Ok(Outbound::Request(rewritten)) = outbound(ctx, upstream, req) else {
        panic!("not rewritten")
    };
    let (parts, _) = rewritten.req.into_parts();
    let mut bytes = Vec::new();
    super::h1::encode(&mut bytes, &parts);
    bytes
}

/// What keeps a forward's response deadline (`upstream.response_timeout`).
pub enum ResponseDeadline {
    /// A timer of this length, per forward.
    Timer(Duration),
    /// The connection's watch, which flags the forward once it is due.
    Watched(Arc<Heads>),
}

/// Send an outbound request over `pool` within its deadline and return its answer, streaming,
/// with when it came (or failed): failures are counted on the route and mapped to 502/504.
/// `started`: the request's start, read as its handling began (a microsecond or so before the
/// send), which times the upstream and ages the pool's connections without a clock read here.
pub async fn send(
    pool: &Pool,
    deadline: ResponseDeadline,
    route: &Route,
    upstream: &Upstream,
    out: Outbound,
    started: Instant,
) -> (Instant, Result<Upstreamed, ProxyError>) {
    let (exchange, client_upgrade) = match out {
        Outbound::Request(rewritten) => {
            let Rewritten {
                req,
                client_upgrade,
            } = *rewritten;
            // Boxed: hyper's side of the pool makes a future of 1.5 KB against the lean head's
            // 0.6 KB, and every forward's future, copied into its box and moved as it starts,
            // would be as large as the largest of the two.
            let sent = Box::pin(pool.send(upstream, req, started));
            (
                Left(sent.map(|r| r.map(|resp| Upstreamed::Response(Box::new(resp))))),
                client_upgrade,
            )
        }
        Outbound::Head(head) => {
            let sent = pool.send_head(upstream, head, started);
            (Right(sent.map(|r| r.map(Upstreamed::Relayed))), None)
        }
    };
    let sent = match deadline {
        ResponseDeadline::Timer(limit) => tokio::time::timeout(limit, exchange).await.map_err(drop),
        ResponseDeadline::Watched(heads) => Expiring::new(exchange, heads).await,
    };
    let ended = Instant::now();
    route.metrics.upstream_duration.record(ended - started);
    (ended, answered(route, sent, client_upgrade))
}

/// The answer of a send, or its failure counted and mapped.
fn answered(
    route: &Route,
    sent: Result<Result<Upstreamed, SendError>, ()>,
    client_upgrade: Option<OnUpgrade>,
) -> Result<Upstreamed, ProxyError> {
    let mut resp = match sent {
        Err(_) => {
            route.metrics.upstream_timeouts.increment(1);
            return Err(ProxyError::UpstreamTimeout);
        }
        Ok(Err(SendError::Connect(e))) => {
            tracing::debug!(route = %route.name, error = %e, "upstream connect failed");
            route.metrics.upstream_connect_errors.increment(1);
            return Err(ProxyError::UpstreamConnect);
        }
        Ok(Err(SendError::Exchange(e))) => {
            tracing::debug!(route = %route.name, error = %e, "upstream request failed");
            route.metrics.upstream_other_errors.increment(1);
            return Err(ProxyError::Upstream);
        }
        Ok(Ok(Upstreamed::Response(resp))) => resp,
        Ok(Ok(relayed)) => return Ok(relayed),
    };
    match client_upgrade {
        Some(on_client) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let on_upstream = hyper::upgrade::on(&mut *resp);
            tokio::spawn(tunnel(on_client, on_upstream));
        }
        _ => strip_hop_by_hop(resp.headers_mut(), false),
    }
    Ok(Upstreamed::Response(resp))
}

/// What an upstream answered.
pub enum Upstreamed {
    /// A response with its header map, hop-by-hop fields removed. Boxed as the relayed answer
    /// is: the smaller this value, the less each layer of the forward's future copies.
    Response(Box<Response<UpstreamBody>>),
    /// The lean client's answer to an [`Outbound::Head`], its head as the upstream sent it,
    /// for the lean server to relay (hop-by-hop fields are left out as it writes).
    Relayed(Box<Relayed>),
}

/// Rewrite the request for the upstream: origin-form URI (the connection already names the
/// upstream), HTTP/1.1, no hop-by-hop fields, forwarding headers, and a Host header (the
/// client's, or the upstream's when the client sent none).
fn prepare(
    ctx: &ForwardCtx<'_>,
    upstream: &Upstream,
    req: &mut Request<ClientBody>,
    upgrade: bool,
) -> Result<(), ProxyError> {
    let host = match req.headers().get(header::HOST) {
        Some(h) => h.clone(),
        None => {
            let authority = req.uri().authority().unwrap_or(&upstream.authority);
            HeaderValue::from_str(authority.as_str()).map_err(|_| ProxyError::Internal)?
        }
    };
    // An HTTP/1 request already carries an origin-form URI; only rebuild it when it must change.
    if !upstream.base_path.is_empty() || req.uri().scheme().is_some() {
        let pq = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
        let pq = if upstream.base_path.is_empty() {
            PathAndQuery::try_from(pq)
        } else {
            PathAndQuery::try_from(format!("{}{pq}", upstream.base_path))
        }
        .map_err(|_| ProxyError::Internal)?;
        *req.uri_mut() = Uri::from(pq);
    }
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    ctx.forwarding.apply(
        headers,
        ctx.peer.addr.ip(),
        &ctx.peer.header,
        ctx.proto,
        Some(&host),
    );
    headers.insert(header::HOST, host);
    Ok(())
}

/// Join the two upgraded halves and copy bytes both ways until either side closes.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    match tokio::try_join!(client, upstream) {
        Ok((c, u)) => {
            let (mut c, mut u) = (TokioIo::new(c), TokioIo::new(u));
            if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                tracing::debug!(error = %e, "upgraded tunnel closed with an error");
            }
        }
        Err(e) => tracing::debug!(error = %e, "upgrade failed"),
    }
}
