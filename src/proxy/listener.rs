//! The proxy listener: accept under a connection cap, TLS when configured, serve HTTP/1.1 and
//! HTTP/2 (h2c by prior knowledge, or ALPN over TLS), enforce header and idle deadlines, and drain
//! on shutdown.
//!
//! Each connection is its own task. A panic inside it is caught, logged and counted; the process
//! and every other connection go on. A connection's slot under the cap (and its place in the
//! open-connections gauge) is held by its socket, so an upgraded tunnel keeps it until it closes.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::future::{self, Either};
use futures_util::FutureExt;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use metrics::{Counter, Gauge};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::conn_watch::Watch;
use super::forward::ClientBody;
use super::h1_server::{self, Ended};
use super::heads::{Counted, Heads, Open};
use super::io::Tracked;
use super::metrics::ConnMetrics;
use super::pool::BoxError;
use super::service::{guarded_now, handle, Handled, Peer, ProxyState};
use crate::config::Settings;
use crate::shutdown::Tracker;

/// Connection-level limits, from [`Settings`].
pub struct ConnLimits {
    pub header_timeout: Duration,
    /// `server.max_headers`, and the largest head buffered (at least 8 KiB, as hyper's).
    max_headers: usize,
    max_head: usize,
    pub idle_timeout: Duration,
    /// `upstream.response_timeout`, where the watch of a lean HTTP/1.1 connection keeps it
    /// instead of a timer per forward: only when it is at least `header_timeout` (see
    /// `Heads::next_deadline`); shorter ones keep a timer.
    pub response_watched: Option<Duration>,
    pub max_connections: usize,
    /// For a connection whose protocol is not known from its first bytes or from ALPN.
    auto: auto::Builder<TokioExecutor>,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

impl ConnLimits {
    pub fn new(s: &Settings) -> Self {
        let mut auto = auto::Builder::new(TokioExecutor::new());
        let mut h1 = http1::Builder::new();
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        macro_rules! h1 {
            ($b:expr) => {
                $b.timer(TokioTimer::new())
                    .max_headers(s.max_headers)
                    .max_buf_size(s.max_header_bytes.max(8192))
            };
        }
        macro_rules! h2 {
            ($b:expr) => {
                $b.timer(TokioTimer::new())
                    .max_header_list_size(s.max_header_bytes as u32)
                    .max_concurrent_streams(256)
            };
        }
        // Plain HTTP/1 connections have their head deadline kept by `Watch` (`Heads`): hyper's
        // boxes and registers a new timer for every request head. Connections of unknown
        // protocol keep hyper's.
        h1!(auto.http1()).header_read_timeout(s.header_timeout);
        h1!(h1).header_read_timeout(None);
        h2!(auto.http2());
        h2!(h2);
        Self {
            header_timeout: s.header_timeout,
            max_headers: s.max_headers,
            max_head: s.max_header_bytes.max(8192),
            idle_timeout: s.idle_timeout,
            response_watched: Some(s.upstream.response_timeout).filter(|r| *r >= s.header_timeout),
            max_connections: s.max_connections,
            auto,
            h1,
            h2,
        }
    }
}

/// Which HTTP a connection speaks, as far as its first bytes or ALPN tell.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proto {
    Http1,
    Http2,
    Unknown,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Peek at a plain connection's first bytes (without consuming them): the HTTP/2 preface means
/// h2c by prior knowledge, anything else that already differs from it is HTTP/1. `None`: the
/// peer sent nothing within `deadline`, or closed, or failed.
async fn sniff(stream: &TcpStream, deadline: Duration) -> Option<Proto> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let n = match tokio::time::timeout(deadline, stream.peek(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => n,
        _ => return None,
    };
    Some(if buf[..n] != H2_PREFACE[..n] {
        Proto::Http1
    } else if n == H2_PREFACE.len() {
        Proto::Http2
    } else {
        // A preface still arriving: let the auto builder read the rest.
        Proto::Unknown
    })
}

/// What every worker's accept loop shares.
#[derive(Clone)]
pub struct Shared {
    pub state: Arc<ProxyState>,
    pub limits: Arc<ConnLimits>,
    pub tls: Option<TlsAcceptor>,
    /// `max_connections`, over all workers together.
    pub slots: Arc<Semaphore>,
    /// Open connections, which shutdown drains.
    pub tracker: Tracker,
}

impl Shared {
    pub fn new(
        state: Arc<ProxyState>,
        limits: Arc<ConnLimits>,
        tls: Option<TlsAcceptor>,
        tracker: Tracker,
    ) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            state,
            limits,
            tls,
            tracker,
        }
    }
}

/// Accept until `shutdown` flips, then stop accepting; open connections finish gracefully.
/// `accepted` counts this accept loop's connections (its worker's).
pub async fn serve(
    listener: TcpListener,
    shared: Shared,
    accepted: Counter,
    mut shutdown: watch::Receiver<bool>,
) {
    let Shared {
        state,
        limits,
        tls,
        slots,
        tracker,
    } = shared;
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = crate::shutdown::stopped(&mut shutdown) => break,
        };
        // The slot is taken after the accept: a worker waiting to accept holds none, so the
        // cap is the same whichever worker's socket the kernel hands a connection to. Past the
        // cap, each worker holds one accepted connection unserved and the rest wait in the
        // backlog.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = crate::shutdown::stopped(&mut shutdown) => break,
        };
        accepted.increment(1);
        let _ = stream.set_nodelay(true);
        let (state, limits, tls, shutdown) =
            (state.clone(), limits.clone(), tls.clone(), shutdown.clone());
        let token = tracker.enter();
        tokio::spawn(async move {
            let panics = state.conn_metrics.panics.clone();
            let slot = Slot::take(permit, &state.conn_metrics);
            let conn = connection(stream, slot, peer, state, &limits, tls, shutdown);
            if let Err(panic) = AssertUnwindSafe(conn).catch_unwind().await {
                panics.increment(1);
                tracing::error!(?peer, panic = ?panic.downcast_ref::<&str>(), "connection task panicked");
            }
            drop(token);
        });
    }
    tracing::info!("proxy listener stopped accepting");
}

/// A connection's place under `max_connections` and in the open-connections gauge. It travels
/// with the socket, so it is released when the socket is dropped: when hyper is done with it, or,
/// after an Upgrade, when the tunnel closes.
struct Slot {
    _permit: OwnedSemaphorePermit,
    /// Only the gauge: the slot is part of the socket's type, held in several places of the
    /// connection's task.
    open: Gauge,
}

impl Slot {
    fn take(permit: OwnedSemaphorePermit, metrics: &ConnMetrics) -> Self {
        metrics.accepted.increment(1);
        metrics.open.increment(1.0);
        Self {
            _permit: permit,
            open: metrics.open.clone(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.decrement(1.0);
    }
}

/// Plain fns returning their futures, not `async fn`s, here and in `Watch::drive` (and
/// `serve_http` returns `drive`'s future itself): an `async fn` keeps its arguments twice in its
/// state (as passed, and as moved into its body), and these states make up the connection's task for its whole life: 1,024
/// bytes with tokio's header, from 1,536 (`RUSTC_BOOTSTRAP=1 cargo rustc --release --lib --
/// -Zprint-type-sizes`).
#[allow(clippy::manual_async_fn)]
fn connection(
    stream: TcpStream,
    slot: Slot,
    peer: SocketAddr,
    state: Arc<ProxyState>,
    limits: &ConnLimits,
    tls: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + '_ {
    async move {
        let activity = Arc::new(AtomicU64::new(0));
        match tls {
            None => {
                let Some(proto) = sniff(&stream, limits.header_timeout).await else {
                    tracing::debug!(?peer, "nothing received within header_timeout; closing");
                    return;
                };
                let io = Tracked::new(stream, activity.clone(), slot);
                serve_http(io, proto, peer, state, limits, activity, shutdown).await
            }
            Some(acceptor) => {
                let io = Tracked::new(stream, activity.clone(), slot);
                // Boxed, as are hyper's connections below: the task holds the plain lean path's
                // state inline, and a TLS session or a hyper connection only where one is used.
                Box::pin(serve_tls(
                    io, acceptor, peer, state, limits, activity, shutdown,
                ))
                .await
            }
        }
    }
}

async fn serve_tls(
    io: Tracked<TcpStream, Slot>,
    acceptor: TlsAcceptor,
    peer: SocketAddr,
    state: Arc<ProxyState>,
    limits: &ConnLimits,
    activity: Arc<AtomicU64>,
    shutdown: watch::Receiver<bool>,
) {
    match tokio::time::timeout(limits.header_timeout, acceptor.accept(io)).await {
        Ok(Ok(tls)) => {
            let proto = match tls.get_ref().1.alpn_protocol() {
                Some(b"h2") => Proto::Http2,
                Some(b"http/1.1") => Proto::Http1,
                _ => Proto::Unknown,
            };
            serve_http(tls, proto, peer, state, limits, activity, shutdown).await
        }
        Ok(Err(e)) => tracing::debug!(?peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(?peer, "TLS handshake timed out"),
    }
}

/// The connection's future from here on is the watch's `drive` itself: everything it needs is
/// made before it starts, so no state of this fn's is kept beside it (see `connection`).
fn serve_http<I>(
    io: I,
    proto: Proto,
    peer: SocketAddr,
    state: Arc<ProxyState>,
    limits: &ConnLimits,
    activity: Arc<AtomicU64>,
    shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + '_
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client = Arc::new(Peer::new(peer));
    let heads = Arc::new(Heads::new(tokio::time::Instant::now()));
    let lean = (proto == Proto::Http1 && limits.max_headers <= h1_server::MAX_FIELDS).then(|| {
        h1_server::Ctx {
            state: state.clone(),
            client: client.clone(),
            heads: heads.clone(),
            max_headers: limits.max_headers,
            max_head: limits.max_head,
            response_watched: limits.response_watched.is_some(),
        }
    });
    let seen = heads.clone();
    let svc = service_fn(move |req| {
        let mut open = Open::enter(&seen);
        // A request answered at once (a 429 above all) costs no task state and no allocation.
        let req = req.map(ClientBody::Left);
        match guarded_now(&state.conn_metrics.panics, || {
            handle(&state, req, &client, None)
        }) {
            Handled::Ready(resp) => Either::Left(future::ready(Ok::<_, Infallible>(
                resp.map(|body| Counted::new(body, open)),
            ))),
            Handled::Rejected(rejection) => Either::Left(future::ready(Ok(rejection
                .response()
                .map(|body| Counted::new(body, open))))),
            Handled::Forward(fwd) => {
                open.await_upstream();
                Either::Right(fwd.map(move |answer| {
                    open.answered();
                    let resp = answer.into_response();
                    Ok::<_, Infallible>(resp.map(|body| Counted::new(body, open)))
                }))
            }
        }
    });
    let watch = Watch {
        peer,
        limits,
        activity,
        heads: heads.clone(),
        every_head: proto == Proto::Http1,
        shutdown,
    };
    if let Some(cx) = lean {
        // The lean path first; hyper takes over for the rest of the connection when a request
        // needs it, and winds down when the watch says so.
        let closing = heads;
        // Boxed like hyper's connections below: moved into `drive` unboxed, it would be laid out
        // twice in the connection's task (the argument and the pinned local).
        let conn = Box::pin(async move {
            // `serve` is boxed on its own (3.5 KB of state), once per connection and again after
            // each rest: a resting connection holds only this block (312 bytes) and the task.
            let (mut io, mut read) = (io, BytesMut::new());
            let io = loop {
                io = match Box::pin(h1_server::serve(io, read, &cx)).await? {
                    Ended::Closed => return Ok(()),
                    Ended::HandOff(io) => break io,
                    Ended::Rest(io) => io,
                };
                match h1_server::rest(&mut io, &cx.heads).await? {
                    Some(bytes) => read = bytes,
                    None => return Ok(()),
                }
            };
            let mut conn = Box::pin(
                limits
                    .h1
                    .serve_connection(TokioIo::new(io), svc)
                    .with_upgrades(),
            );
            let mut shut = false;
            std::future::poll_fn(|tcx| {
                if !shut && cx.heads.closing() {
                    shut = true;
                    conn.as_mut().graceful_shutdown();
                }
                conn.as_mut().poll(tcx)
            })
            .await
            .map_err(BoxError::from)
        });
        return Either::Left(watch.drive(conn, move |_| closing.close()));
    }
    let io = TokioIo::new(io);
    Either::Right(match proto {
        Proto::Http1 => {
            let conn = Box::pin(limits.h1.serve_connection(io, svc).with_upgrades());
            Either::Left(watch.drive(conn, |c| c.graceful_shutdown()))
        }
        Proto::Http2 => {
            let conn = Box::pin(limits.h2.serve_connection(io, svc));
            Either::Right(Either::Left(watch.drive(conn, |c| c.graceful_shutdown())))
        }
        Proto::Unknown => {
            let conn = Box::pin(limits.auto.serve_connection_with_upgrades(io, svc));
            Either::Right(Either::Right(watch.drive(conn, |c| c.graceful_shutdown())))
        }
    })
}
