//! Forwarding to an upstream over pooled keep-alive connections, and Upgrade passthrough.
//!
//! Owns the upstream client (hyper-util's pooled client over rustls with webpki roots plus an
//! optional CA file), URI rewriting, and mapping transport failures to 502/504. Bodies stream both
//! ways: the client's `Incoming` goes upstream as is, and the upstream's `Incoming` comes back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::headers::{strip_hop_by_hop, wants_upgrade, Forwarding};
use super::respond::ProxyError;
use super::route::{Route, Upstream};
use crate::config::UpstreamSettings;

/// The pooled upstream client.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Incoming>;

/// Build the client: connect timeout, pool limits, TLS roots.
pub fn client(settings: &UpstreamSettings) -> Result<UpstreamClient, String> {
    let connector = https_connector(settings.ca_file.as_deref(), settings.connect_timeout)?;
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(settings.pool_idle_timeout)
        .pool_max_idle_per_host(settings.pool_max_idle)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector))
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

/// What a forward needs besides the request.
pub struct ForwardCtx<'a> {
    pub client: &'a UpstreamClient,
    pub forwarding: &'a Forwarding,
    pub response_timeout: Duration,
    pub peer: SocketAddr,
    pub proto: &'static str,
}

/// Send `req` to the route's next upstream and return its response, streaming.
pub async fn forward(
    ctx: ForwardCtx<'_>,
    route: &Route,
    upstream: &Upstream,
    mut req: Request<Incoming>,
) -> Result<Response<Incoming>, ProxyError> {
    let upgrade = req.version() == Version::HTTP_11 && wants_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    prepare(&ctx, upstream, &mut req, upgrade)?;
    let started = Instant::now();
    let sent = tokio::time::timeout(ctx.response_timeout, ctx.client.request(req)).await;
    route
        .metrics
        .upstream_duration
        .record(started.elapsed().as_secs_f64());
    let mut resp = match sent {
        Err(_) => {
            route.metrics.upstream_timeouts.increment(1);
            return Err(ProxyError::UpstreamTimeout);
        }
        Ok(Err(e)) => {
            tracing::debug!(route = %route.name, error = %e, "upstream request failed");
            return Err(if e.is_connect() {
                route.metrics.upstream_connect_errors.increment(1);
                ProxyError::UpstreamConnect
            } else {
                route.metrics.upstream_other_errors.increment(1);
                ProxyError::Upstream
            });
        }
        Ok(Ok(resp)) => resp,
    };
    match client_upgrade {
        Some(on_client) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let on_upstream = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(on_client, on_upstream));
        }
        _ => strip_hop_by_hop(resp.headers_mut(), false),
    }
    Ok(resp)
}

/// Rewrite the request for the upstream: absolute URI, HTTP/1.1, no hop-by-hop fields,
/// forwarding headers, and a Host header when the client spoke HTTP/2.
fn prepare(
    ctx: &ForwardCtx<'_>,
    upstream: &Upstream,
    req: &mut Request<Incoming>,
    upgrade: bool,
) -> Result<(), ProxyError> {
    let host = req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let pq = req.uri().path_and_query().map_or("/", PathAndQuery::as_str);
    let pq = if upstream.base_path.is_empty() {
        PathAndQuery::try_from(pq)
    } else {
        PathAndQuery::try_from(format!("{}{pq}", upstream.base_path))
    }
    .map_err(|_| ProxyError::Internal)?;
    *req.uri_mut() = Uri::builder()
        .scheme(upstream.scheme.clone())
        .authority(upstream.authority.clone())
        .path_and_query(pq)
        .build()
        .map_err(|_| ProxyError::Internal)?;
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, upgrade);
    let host_str = host.as_ref().and_then(|h| h.to_str().ok());
    ctx.forwarding
        .apply(headers, ctx.peer.ip(), ctx.proto, host_str);
    if let Some(h) = host {
        headers.insert(header::HOST, h);
    }
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
