//! Upstream HTTP/1 connections, kept per worker thread.
//!
//! A checkout is a `Vec::pop` on a thread-local list: no lock, no hashing of the pool key, no
//! race between a checkout and a new connect, no channel hop to learn the result. A connection
//! goes back on the list when the response body that came over it has been read to its end
//! (`UpstreamBody`), so only idle connections are ever listed. With one worker per core that is a
//! pool per core, as in nginx; a connection that a task on another thread returns simply joins
//! that thread's list.
//!
//! Two kinds of connection are kept, on lists of their own: the lean client's (`h1.rs`, for a
//! request without a body to a plain `http://` upstream, run in the request's own task) and
//! hyper's client connections (requests with a body, Upgrades, `https://`).
//!
//! Each list is bounded (`pool_max_idle` per upstream) and entries idle longer than
//! `pool_idle_timeout` are dropped. A listed connection that the upstream closed meanwhile is
//! noticed at checkout and skipped. A request that could not be written on a reused connection
//! is sent once more on a fresh one, and so is an idempotent request that got nothing back.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::UPGRADE;
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use super::forward::{ClientBody, LeanHead};
use super::h1;
use super::h1_head::RawHead;
use super::route::Upstream;

type Sender = SendRequest<ClientBody>;
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How upstream connections are made and kept.
#[derive(Clone)]
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    limits: Limits,
}

#[derive(Clone, Copy)]
struct Limits {
    max_idle: usize,
    idle_timeout: Duration,
}

/// An upstream's answer as the lean client read it: the head as sent (see `h1_head.rs`) and
/// its body.
pub struct Relayed {
    pub status: StatusCode,
    pub version: http::Version,
    pub head: RawHead,
    pub body: UpstreamBody,
}

impl Relayed {
    /// As a `Response` with its header map: for hyper's side, where the lean server does not
    /// write the answer itself.
    pub fn into_response(self) -> Result<Response<UpstreamBody>, BoxError> {
        let mut resp = Response::new(self.body);
        *resp.status_mut() = self.status;
        *resp.version_mut() = self.version;
        *resp.headers_mut() = self.head.into_map()?;
        Ok(resp)
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, TLS, connect timeout).
    Connect(String),
    /// The connection broke during the exchange, or the upstream's response was not valid HTTP/1.
    Exchange(BoxError),
}

impl Pool {
    pub fn new(
        connector: HttpsConnector<HttpConnector>,
        max_idle: usize,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            connector,
            limits: Limits {
                max_idle,
                idle_timeout,
            },
        }
    }

    /// Send `req` (origin-form URI, Host set) to `up` and return the response head; its body
    /// streams and hands the connection back when done. `now`: when the exchange began, which
    /// ages the idle connections (see `Home`).
    pub async fn send(
        &self,
        up: &Upstream,
        req: Request<ClientBody>,
        now: Instant,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let lean = up.scheme == Scheme::HTTP
            && req.body().is_end_stream()
            && !req.headers().contains_key(UPGRADE);
        if lean {
            let (parts, _empty) = req.into_parts();
            let (exchanged, home) = self.send_lean(up, h1::Outgoing::Parts(&parts), now).await?;
            let resp = exchanged
                .into_response()
                .map_err(|e| SendError::Exchange(e.into()))?;
            Ok(resp.map(|body| UpstreamBody::lean(body, home)))
        } else {
            self.send_hyper(up, req, now).await
        }
    }

    /// Send a request head written for the lean client (bodyless, to a plain `http://`
    /// upstream) and return the response head as the upstream sent it, for the lean server to
    /// relay; its body streams as with [`Pool::send`].
    pub async fn send_head(
        &self,
        up: &Upstream,
        head: LeanHead,
        now: Instant,
    ) -> Result<Box<Relayed>, SendError> {
        let out = h1::Outgoing::Head {
            bytes: &head.bytes,
            method: &head.method,
        };
        let (exchanged, home) = self.send_lean(up, out, now).await?;
        Ok(Box::new(Relayed {
            status: exchanged.status,
            version: exchanged.version,
            head: exchanged.head,
            body: UpstreamBody::lean(exchanged.body, home),
        }))
    }

    async fn send_lean(
        &self,
        up: &Upstream,
        req: h1::Outgoing<'_>,
        now: Instant,
    ) -> Result<(h1::Exchanged, Home), SendError> {
        let mut reused = checkout_lean(up, self.limits.idle_timeout, now);
        loop {
            let fresh = reused.is_none();
            let conn = match reused.take() {
                Some(conn) => conn,
                None => Box::pin(self.connect_lean(up)).await?,
            };
            match conn.exchange(req).await {
                Ok(exchanged) => return Ok((exchanged, self.home(up, now))),
                // The reused connection was closing: once more, on a new one.
                Err(failed) if failed.retry && !fresh => {}
                Err(failed) => return Err(SendError::Exchange(failed.error.into())),
            }
        }
    }

    async fn send_hyper(
        &self,
        up: &Upstream,
        mut req: Request<ClientBody>,
        now: Instant,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let mut reused = checkout_hyper(up, self.limits.idle_timeout, now).await;
        loop {
            let fresh = reused.is_none();
            let mut sender = match reused.take() {
                Some(sender) => sender,
                // Boxed: the connect future is large, and keeping it out of this one keeps
                // every request's future small to move.
                None => Box::pin(self.connect_hyper(up)).await?,
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    // An upgraded connection belongs to the tunnel, never to the pool.
                    let home = (resp.status() != StatusCode::SWITCHING_PROTOCOLS)
                        .then(|| (self.home(up, now), sender));
                    return Ok(resp.map(|body| UpstreamBody::hyper(body, home)));
                }
                Err(mut e) => match e.take_message() {
                    // Not written: the reused connection was closing. Once more, on a new one.
                    Some(unsent) if !fresh => req = unsent,
                    _ => return Err(SendError::Exchange(e.into_error().into())),
                },
            }
        }
    }

    fn home(&self, up: &Upstream, since: Instant) -> Home {
        Home {
            key: key_of(up),
            limits: self.limits,
            since,
        }
    }

    /// A lean connection, made by the same connector as hyper's (DNS, connect timeout, nodelay).
    async fn connect_lean(&self, up: &Upstream) -> Result<h1::Conn, SendError> {
        match self.dial(up).await? {
            MaybeHttpsStream::Http(io) => Ok(h1::Conn::new(io.into_inner())),
            MaybeHttpsStream::Https(_) => Err(SendError::Connect(
                "the lean client speaks plain http only".into(),
            )),
        }
    }

    async fn connect_hyper(&self, up: &Upstream) -> Result<Sender, SendError> {
        let io = self.dial(up).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| SendError::Connect(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Connect to `up`, with TLS for `https://`.
    async fn dial(&self, up: &Upstream) -> Result<MaybeHttpsStream<TokioIo<TcpStream>>, SendError> {
        let uri = Uri::builder()
            .scheme(up.scheme.clone())
            .authority(up.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| SendError::Connect(e.to_string()))?;
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|e| SendError::Connect(e.to_string()))?;
        connector
            .call(uri)
            .await
            .map_err(|e| SendError::Connect(e.to_string()))
    }
}

/// The pool key: scheme and authority.
type Key = (bool, Authority);

fn key_of(up: &Upstream) -> Key {
    (up.scheme == Scheme::HTTPS, up.authority.clone())
}

/// Whether `key` is `up`'s.
fn is_key_of((https, authority): &Key, up: &Upstream) -> bool {
    *https == (up.scheme == Scheme::HTTPS) && same_authority(authority, &up.authority)
}

fn same_key((https, authority): &Key, (other_https, other): &Key) -> bool {
    https == other_https && same_authority(authority, other)
}

/// By the bytes' address first, which an upstream's own clones share, so the common case
/// compares no text.
fn same_authority(a: &Authority, b: &Authority) -> bool {
    let (x, y) = (a.as_str(), b.as_str());
    (x.as_ptr() == y.as_ptr() && x.len() == y.len()) || a == b
}

struct Parked<C> {
    conn: C,
    since: Instant,
}

/// One kind of idle connection, per upstream, oldest first.
struct Idle<C>(Vec<(Key, Vec<Parked<C>>)>);

impl<C> Idle<C> {
    /// The freshest connection to `up` that has not idled too long by `now`.
    fn pop(&mut self, up: &Upstream, idle_timeout: Duration, now: Instant) -> Option<C> {
        let (_, list) = self.0.iter_mut().find(|(k, _)| is_key_of(k, up))?;
        while let Some(parked) = list.pop() {
            if now.saturating_duration_since(parked.since) <= idle_timeout {
                return Some(parked.conn);
            }
        }
        None
    }

    fn push(&mut self, home: Home, conn: C) {
        if home.limits.max_idle == 0 {
            return;
        }
        let now = home.since;
        let list = match self.0.iter().position(|(k, _)| same_key(k, &home.key)) {
            Some(i) => &mut self.0[i].1,
            None => {
                self.0.push((home.key, Vec::new()));
                &mut self.0.last_mut().expect("just pushed").1
            }
        };
        // Drop what has idled too long, and the oldest when full.
        let stale = list
            .iter()
            .take_while(|p| now.saturating_duration_since(p.since) > home.limits.idle_timeout)
            .count();
        let over = (list.len() - stale + 1).saturating_sub(home.limits.max_idle);
        list.drain(..stale + over);
        list.push(Parked { conn, since: now });
    }
}

thread_local! {
    static HYPER: RefCell<Idle<Sender>> = const { RefCell::new(Idle(Vec::new())) };
    static LEAN: RefCell<Idle<h1::Conn>> = const { RefCell::new(Idle(Vec::new())) };
}

/// The freshest idle hyper connection to `up` that is still open.
async fn checkout_hyper(up: &Upstream, idle_timeout: Duration, now: Instant) -> Option<Sender> {
    loop {
        let mut sender = HYPER.with_borrow_mut(|idle| idle.pop(up, idle_timeout, now))?;
        if sender.ready().await.is_ok() {
            return Some(sender);
        }
    }
}

/// The freshest idle lean connection to `up` that is still open.
fn checkout_lean(up: &Upstream, idle_timeout: Duration, now: Instant) -> Option<h1::Conn> {
    loop {
        let mut conn = LEAN.with_borrow_mut(|idle| idle.pop(up, idle_timeout, now))?;
        if conn.is_open_and_quiet() {
            return Some(conn);
        }
    }
}

/// Where a connection goes back to once its response body is done.
struct Home {
    key: Key,
    limits: Limits,
    /// When the exchange began: the connection counts as idle from then, never later than it
    /// really went idle, so it is retired no later than `pool_idle_timeout` after (and no clock
    /// is read to park it).
    since: Instant,
}

/// An upstream response body that returns its connection to the pool at its end.
pub struct UpstreamBody(Inner);

enum Inner {
    Hyper {
        body: Incoming,
        home: Option<(Home, Sender)>,
    },
    Lean {
        body: h1::Body,
        home: Option<Home>,
    },
}

impl UpstreamBody {
    fn hyper(body: Incoming, home: Option<(Home, Sender)>) -> Self {
        Self::new(Inner::Hyper { body, home })
    }

    fn lean(body: h1::Body, home: Home) -> Self {
        Self::new(Inner::Lean {
            body,
            home: Some(home),
        })
    }

    fn new(inner: Inner) -> Self {
        let mut body = Self(inner);
        if body.is_end_stream() {
            body.done();
        }
        body
    }

    /// The body is complete: its connection goes back on this thread's list.
    fn done(&mut self) {
        match &mut self.0 {
            Inner::Hyper { home, .. } => {
                if let Some((home, sender)) = home.take() {
                    if !sender.is_closed() {
                        HYPER.with_borrow_mut(|idle| idle.push(home, sender));
                    }
                }
            }
            Inner::Lean { body, home } => {
                if let (Some(conn), Some(home)) = (body.take_reusable(), home.take()) {
                    LEAN.with_borrow_mut(|idle| idle.push(home, conn));
                }
            }
        }
    }

    /// Copy the whole body onto `out` when the lean client has already read all of it and it is
    /// at most `max` bytes (see `h1::Body::copy_whole`); its connection then goes back. `false`:
    /// the body is untouched, to be read frame by frame.
    pub fn copy_whole(&mut self, out: &mut Vec<u8>, max: u64) -> bool {
        let Inner::Lean { body, .. } = &mut self.0 else {
            return false;
        };
        let copied = body.copy_whole(out, max);
        if copied {
            self.done();
        }
        copied
    }

    /// A broken body leaves its connection in an unknown state: never reuse it.
    fn broken(&mut self) {
        match &mut self.0 {
            Inner::Hyper { home, .. } => *home = None,
            Inner::Lean { home, .. } => *home = None,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = match &mut self.0 {
            Inner::Hyper { body, .. } => Pin::new(body).poll_frame(cx).map_err(BoxError::from),
            Inner::Lean { body, .. } => Pin::new(body).poll_frame(cx).map_err(BoxError::from),
        };
        match &polled {
            Poll::Ready(None) => self.done(),
            Poll::Ready(Some(Ok(_))) if self.is_end_stream() => self.done(),
            Poll::Ready(Some(Err(_))) => self.broken(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Hyper { body, .. } => body.is_end_stream(),
            Inner::Lean { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Hyper { body, .. } => body.size_hint(),
            Inner::Lean { body, .. } => body.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(authority: &str) -> Upstream {
        Upstream {
            scheme: Scheme::HTTP,
            authority: authority.parse().unwrap(),
            base_path: String::new(),
        }
    }

    fn home(up: &Upstream, max_idle: usize, since: Instant) -> Home {
        Home {
            key: key_of(up),
            limits: Limits {
                max_idle,
                idle_timeout: Duration::from_secs(10),
            },
            since,
        }
    }

    /// A connection counts as idle from the start of the exchange it served: one older than the
    /// idle timeout by the time asked is never handed out, and a full list drops its oldest.
    #[test]
    fn idle_connections_age_from_their_exchange_and_the_list_is_bounded() {
        let t0 = Instant::now();
        let up = upstream("127.0.0.1:9");
        let secs = Duration::from_secs;
        let mut idle = Idle::<u32>(Vec::new());
        idle.push(home(&up, 2, t0), 1);
        idle.push(home(&up, 2, t0 + secs(5)), 2);
        idle.push(home(&up, 2, t0 + secs(6)), 3); // over max_idle 2: the oldest (1) goes
        let timeout = secs(10);
        assert_eq!(idle.pop(&up, timeout, t0 + secs(12)), Some(3));
        // 2 idled from t0 + 5 s: past the timeout at t0 + 16 s, so nothing is handed out.
        assert_eq!(idle.pop(&up, timeout, t0 + secs(16)), None);
        // A later push drops what idled too long before parking.
        idle.push(home(&up, 2, t0), 4);
        idle.push(home(&up, 2, t0 + secs(20)), 5);
        assert_eq!(idle.0[0].1.len(), 1);
        assert_eq!(idle.pop(&up, timeout, t0 + secs(20)), Some(5));
        let none = home(&up, 0, t0);
        idle.push(none, 6);
        assert_eq!(idle.pop(&up, timeout, t0), None, "max_idle 0 keeps nothing");
    }

    /// An upstream matches its own list whether its authority is the very value the list was
    /// keyed with or an equal one (after a reload), and no other upstream's.
    #[test]
    fn a_list_is_found_by_the_same_or_an_equal_authority() {
        let t0 = Instant::now();
        let up = upstream("127.0.0.1:9");
        let mut idle = Idle::<u32>(Vec::new());
        idle.push(home(&up, 4, t0), 1);
        idle.push(home(&up, 4, t0), 2);
        assert!(is_key_of(&key_of(&up), &up));
        let reloaded = upstream("127.0.0.1:9");
        assert_eq!(idle.pop(&reloaded, Duration::from_secs(1), t0), Some(2));
        assert_eq!(
            idle.pop(&upstream("127.0.0.1:10"), Duration::from_secs(1), t0),
            None
        );
        let https = Upstream {
            scheme: Scheme::HTTPS,
            ..upstream("127.0.0.1:9")
        };
        assert_eq!(idle.pop(&https, Duration::from_secs(1), t0), None);
        assert_eq!(idle.pop(&up, Duration::from_secs(1), t0), Some(1));
    }
}
