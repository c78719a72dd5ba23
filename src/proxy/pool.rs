//! Upstream HTTP/1 connections, kept per worker thread.
//!
//! A checkout is a `Vec::pop` on a thread-local list: no lock, no hashing of the pool key, no
//! race between a checkout and a new connect, no channel hop to learn the result. A connection
//! goes back on the list when the response body that came over it has been read to its end
//! (`UpstreamBody`), so only idle connections are ever listed. With one worker per core that is a
//! pool per core, as in nginx; a connection that a task on another thread returns simply joins
//! that thread's list.
//!
//! The list is bounded (`pool_max_idle` per upstream) and entries idle longer than
//! `pool_idle_timeout` are dropped. A listed connection that the upstream closed meanwhile is
//! noticed at checkout (`ready()` fails) and skipped; a request that could not be written on a
//! reused connection is retried once on a fresh one.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use super::route::Upstream;

type Sender = SendRequest<Incoming>;

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

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, TLS, connect timeout).
    Connect(String),
    /// The connection broke during the exchange.
    Exchange(hyper::Error),
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
    /// streams and hands the connection back when done.
    pub async fn send(
        &self,
        up: &Upstream,
        mut req: Request<Incoming>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let mut reused = checkout(up, self.limits.idle_timeout).await;
        loop {
            let fresh = reused.is_none();
            let mut sender = match reused.take() {
                Some(sender) => sender,
                // Boxed: the connect future is large, and keeping it out of this one keeps
                // every request's future small to move.
                None => Box::pin(self.connect(up)).await?,
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    // An upgraded connection belongs to the tunnel, never to the pool.
                    let back =
                        (resp.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| Checkin {
                            key: key_of(up),
                            sender,
                            limits: self.limits,
                        });
                    return Ok(resp.map(|body| UpstreamBody::new(body, back)));
                }
                Err(mut e) => match e.take_message() {
                    // Not written: the reused connection was closing. Once more, on a new one.
                    Some(unsent) if !fresh => req = unsent,
                    _ => return Err(SendError::Exchange(e.into_error())),
                },
            }
        }
    }

    async fn connect(&self, up: &Upstream) -> Result<Sender, SendError> {
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
        let io = connector
            .call(uri)
            .await
            .map_err(|e| SendError::Connect(e.to_string()))?;
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
}

/// The pool key: scheme and authority.
type Key = (bool, Authority);

fn key_of(up: &Upstream) -> Key {
    (up.scheme == Scheme::HTTPS, up.authority.clone())
}

struct Parked {
    sender: Sender,
    since: Instant,
}

thread_local! {
    static IDLE: RefCell<Vec<(Key, Vec<Parked>)>> = const { RefCell::new(Vec::new()) };
}

/// The freshest idle connection to `up` that is still open.
async fn checkout(up: &Upstream, idle_timeout: Duration) -> Option<Sender> {
    let https = up.scheme == Scheme::HTTPS;
    loop {
        let parked = IDLE.with_borrow_mut(|hosts| {
            let (_, list) = hosts
                .iter_mut()
                .find(|((h, a), _)| *h == https && *a == up.authority)?;
            list.pop()
        })?;
        if parked.since.elapsed() > idle_timeout {
            continue;
        }
        let mut sender = parked.sender;
        if sender.ready().await.is_ok() {
            return Some(sender);
        }
    }
}

/// A connection to give back once its response body is done.
struct Checkin {
    key: Key,
    sender: Sender,
    limits: Limits,
}

impl Checkin {
    fn park(self) {
        if self.sender.is_closed() || self.limits.max_idle == 0 {
            return;
        }
        let now = Instant::now();
        let idle_timeout = self.limits.idle_timeout;
        IDLE.with_borrow_mut(|hosts| {
            let list = match hosts.iter().position(|(k, _)| *k == self.key) {
                Some(i) => &mut hosts[i].1,
                None => {
                    hosts.push((self.key, Vec::new()));
                    &mut hosts.last_mut().expect("just pushed").1
                }
            };
            // Oldest first: drop what has idled too long, and the oldest when full.
            let stale = list
                .iter()
                .take_while(|p| now.duration_since(p.since) > idle_timeout)
                .count();
            let over = (list.len() - stale + 1).saturating_sub(self.limits.max_idle);
            list.drain(..stale + over);
            list.push(Parked {
                sender: self.sender,
                since: now,
            });
        });
    }
}

/// An upstream response body that returns its connection to the pool at its end.
pub struct UpstreamBody {
    inner: Incoming,
    checkin: Option<Checkin>,
}

impl UpstreamBody {
    fn new(inner: Incoming, checkin: Option<Checkin>) -> Self {
        let mut body = Self { inner, checkin };
        if body.inner.is_end_stream() {
            body.done();
        }
        body
    }

    fn done(&mut self) {
        if let Some(c) = self.checkin.take() {
            c.park();
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.done(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.done(),
            // A broken body leaves the connection in an unknown state: never reuse it.
            Poll::Ready(Some(Err(_))) => self.checkin = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
