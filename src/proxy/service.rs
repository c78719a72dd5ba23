//! One request, start to finish: route, limit, answer or forward, count.
//!
//! The decision is synchronous: [`handle`] routes and limits a request and either answers it at
//! once (a 429, a direct response, an error) or hands back the forward as one boxed future, the
//! only part that awaits. A 429 thus never builds or moves the forwarding state machine. Reads the current config
//! through `ArcSwap` once per request and never waits on a lock, the database or the admin plane.
//! A panic while handling a request becomes a 500 for that request only, counted in
//! `tollgate_connection_panics_total`.

use std::any::Any;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use http::header::{HeaderValue, HOST};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Either;
use metrics::Counter;

use super::forward::{self, ClientBody, ForwardCtx, Outbound, Upstreamed};
use super::gate::{gate, Gate, View};
use super::heads::Heads;
use super::metrics::{ConnMetrics, DecisionLabel, RouteMetrics};
use super::pool::{Pool, Relayed};
use super::rate_headers::RateHeaders;
use super::respond::{self, ProxyBody, ProxyError, Rejection};
use super::route::{Route, Target, Upstream};
use crate::config::RuntimeConfig;
use crate::limiter::fields::text;
use crate::limiter::Limiter;

/// Everything a request handler reads; one per proxy listener.
pub struct ProxyState {
    pub config: Arc<ArcSwap<RuntimeConfig>>,
    pub limiter: Arc<Limiter>,
    pub pool: Pool,
    pub response_timeout: Duration,
    /// "http" or "https", for X-Forwarded-Proto.
    pub proto: &'static str,
    pub conn_metrics: ConnMetrics,
    /// Requests no route matched, counted under `route="(none)"` (not a valid route name).
    pub unmatched: RouteMetrics,
}

/// The client end of a connection, as each of its requests needs it.
pub struct Peer {
    pub addr: SocketAddr,
    /// The IP as a header value (X-Forwarded-For), formatted once per connection.
    pub header: HeaderValue,
    /// `x-forwarded-for: IP\r\n`, the line a lean outbound head carries, made once too.
    pub xff_line: Box<[u8]>,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Self {
        let header = HeaderValue::from_str(&addr.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        let xff_line = [b"x-forwarded-for: ", header.as_bytes(), b"\r\n"]
            .concat()
            .into_boxed_slice();
        Self {
            addr,
            header,
            xff_line,
        }
    }
}

/// A request as [`handle`] takes it: read through a [`View`] to route and limit it, and made a
/// whole `Request` only when it goes upstream. The lean HTTP/1.1 path's heads are one (a 429
/// never builds a header map), hyper's requests the other.
pub trait Incoming {
    fn view(&self) -> View<'_>;

    /// The request to forward.
    fn into_request(self) -> Result<Request<ClientBody>, ProxyError>;

    /// The request rewritten for `upstream`: by default the whole request, rewritten in its
    /// header map (see [`forward::outbound`]).
    fn into_outbound(
        self,
        ctx: &ForwardCtx<'_>,
        upstream: &Upstream,
    ) -> Result<Outbound, ProxyError>
    where
        Self: Sized,
    {
        forward::outbound(ctx, upstream, self.into_request()?)
    }
}

impl Incoming for Request<ClientBody> {
    fn view(&self) -> View<'_> {
        View {
            method: self.method(),
            uri: self.uri(),
            fields: self.headers(),
        }
    }

    fn into_request(self) -> Result<Request<ClientBody>, ProxyError> {
        Ok(self)
    }
}

/// What [`handle`] decided. The ready answer stays inline: it is the common case (a 429), and
/// boxing it would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub enum Handled {
    /// The answer, already made: a direct response, an error.
    Ready(Response<ProxyBody>),
    /// Denied: a 429, shared, for the caller to write as it writes (see [`Rejection`]).
    Rejected(Arc<Rejection>),
    /// Allowed to an upstream: the forward, guarded, to await. Its box is the one allocation of
    /// a forwarded request's own, and keeps this value small to move.
    Forward(BoxFuture<'static, Answer>),
}

/// What a forward answers with.
pub enum Answer {
    /// A response with its header map. Boxed: the relayed answer is the common case, and the
    /// smaller this value, the less each layer of the forward's future copies.
    Response(Box<Response<ProxyBody>>),
    /// The upstream's answer to a head the lean server's request went out as, with the RateLimit
    /// fields to add: the lean server relays it without a header map (`h1_encode`).
    Relayed(Box<Relayed>, RateHeaders),
}

impl Answer {
    /// As a `Response` with its header map, for hyper's side. Only the lean server sends the
    /// heads a relayed answer comes back to, so this is a fallback: a field `http` refuses (its
    /// rules and httparse's agree) becomes a 502, never a response without it.
    pub fn into_response(self) -> Response<ProxyBody> {
        let (resp, headers) = match self {
            Self::Response(resp) => return *resp,
            Self::Relayed(relayed, headers) => match relayed.into_response() {
                Ok(resp) => (resp.map(Either::Left), headers),
                Err(_) => (ProxyError::Upstream.into_response(), headers),
            },
        };
        let mut resp = resp;
        headers.apply(resp.headers_mut());
        resp
    }
}

/// An allowed request, rewritten for its upstream, with what its answer needs afterwards.
struct Forward {
    cfg: Arc<RuntimeConfig>,
    /// Index into `cfg.routes.routes`.
    route: usize,
    /// Index into the route's upstreams.
    upstream: usize,
    out: Outbound,
    headers: RateHeaders,
    tally: Tally,
    /// Where the response deadline is kept when not by a timer (see [`handle`]).
    watched: Option<Arc<Heads>>,
}

/// What a request is counted and logged with once it is answered.
struct Tally {
    started: Instant,
    label: DecisionLabel,
    client_ip: IpAddr,
    /// Method and path, kept only when the access log is on.
    access: Option<(Method, String)>,
}

/// Route and limit one request; never fails (errors become responses). `watched`: the
/// connection whose watch keeps a forward's response deadline, if it does; otherwise a timer
/// keeps it.
pub fn handle(
    state: &Arc<ProxyState>,
    req: impl Incoming,
    peer: &Peer,
    watched: Option<&Arc<Heads>>,
) -> Handled {
    let started = Instant::now();
    let cfg = state.config.load_full();
    let view = req.view();
    let host = || text(view.fields, &HOST).or_else(|| view.uri.host());
    let (path, method) = (view.uri.path(), view.method);
    let Some(index) = cfg.routes.position(host, path, method) else {
        state.unmatched.count(DecisionLabel::Error, 404);
        return Handled::Ready(ProxyError::NoRoute.into_response());
    };
    let route = &cfg.routes.routes[index];
    let access = cfg.access_log.then(|| (method.clone(), path.to_string()));
    let client_ip = cfg.forwarding.client_ip(peer.addr.ip(), view.fields);
    let tally = |label| Tally {
        started,
        label,
        client_ip,
        access,
    };
    let gated = gate(&cfg, route, &state.limiter, &view, client_ip, started);
    let (mut resp, headers, tally) = match gated {
        Gate::Reject(rejection) => {
            tally(DecisionLabel::Deny).finish(route, Rejection::STATUS);
            return Handled::Rejected(rejection);
        }
        Gate::Stop(e) => {
            let tally = tally(DecisionLabel::Error);
            (e.into_response(), RateHeaders::default(), tally)
        }
        Gate::Pass { headers, label } => match &route.target {
            Target::Direct(d) => (respond::direct(d), headers, tally(label)),
            Target::Upstreams(ups) => {
                let ctx = ForwardCtx {
                    forwarding: &cfg.forwarding,
                    peer,
                    proto: state.proto,
                };
                let upstream = ups.pick();
                let out = req.into_outbound(&ctx, &ups.list[upstream]);
                match out {
                    Ok(out) => {
                        let fwd = Forward {
                            watched: watched.cloned(),
                            route: index,
                            upstream,
                            out,
                            headers,
                            tally: tally(label),
                            cfg,
                        };
                        let panics = state.conn_metrics.panics.clone();
                        return Handled::Forward(Box::pin(guarded(panics, fwd.run(state.clone()))));
                    }
                    Err(e) => (e.into_response(), headers, tally(DecisionLabel::Error)),
                }
            }
        },
    };
    headers.apply(resp.headers_mut());
    tally.finish(route, resp.status());
    Handled::Ready(resp)
}

impl Forward {
    /// Send the request to its upstream; its answer, or the error's, carries the RateLimit
    /// headers. Not an `async fn`: the block holds the fields once, not `self` and then them.
    fn run(self, state: Arc<ProxyState>) -> impl Future<Output = Answer> + Send {
        let Self {
            cfg,
            route,
            upstream,
            out,
            headers,
            mut tally,
            watched,
        } = self;
        async move {
            let route = &cfg.routes.routes[route];
            let Target::Upstreams(ups) = &route.target else {
                unreachable!("handle forwards only routes with upstreams")
            };
            let deadline = match watched {
                Some(heads) => forward::ResponseDeadline::Watched(heads),
                None => forward::ResponseDeadline::Timer(state.response_timeout),
            };
            let up = &ups.list[upstream];
            let sent = forward::send(&state.pool, deadline, route, up, out, tally.started);
            let (ended, sent) = sent.await;
            let mut resp = match sent {
                Ok(Upstreamed::Relayed(relayed)) => {
                    tally.finish_at(route, relayed.status, ended);
                    return Answer::Relayed(relayed, headers);
                }
                Ok(Upstreamed::Response(resp)) => (*resp).map(Either::Left),
                Err(e) => {
                    tally.label = DecisionLabel::Error;
                    e.into_response()
                }
            };
            headers.apply(resp.headers_mut());
            tally.finish_at(route, resp.status(), ended);
            Answer::Response(Box::new(resp))
        }
    }
}

impl Tally {
    fn finish(self, route: &Route, status: StatusCode) {
        self.finish_at(route, status, Instant::now());
    }

    /// Count and log the request as answered at `now`.
    fn finish_at(self, route: &Route, status: StatusCode, now: Instant) {
        let status = status.as_u16();
        route.metrics.count(self.label, status);
        let took = now.saturating_duration_since(self.started);
        route.metrics.duration.record(took);
        if let Some((method, path)) = self.access {
            tracing::info!(target: "tollgate::access", %method, %path, status, route = %route.name, client = %self.client_ip, micros = took.as_micros() as u64);
        }
    }
}

/// Run the synchronous part of a request, turning a panic into a 500 counted in `panics`.
pub fn guarded_now(panics: &Counter, f: impl FnOnce() -> Handled) -> Handled {
    std::panic::catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|panic| Handled::Ready(panicked(panics, panic)))
}

/// Run a forward, turning a panic into a 500 for this request only, counted in `panics`.
pub fn guarded<F>(panics: Counter, fut: F) -> impl Future<Output = Answer>
where
    F: Future<Output = Answer>,
{
    AssertUnwindSafe(fut).catch_unwind().map(move |r| {
        r.unwrap_or_else(|panic| Answer::Response(Box::new(panicked(&panics, panic))))
    })
}

fn panicked(panics: &Counter, panic: Box<dyn Any + Send>) -> Response<ProxyBody> {
    panics.increment(1);
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %what, "request handler panicked; answering 500");
    ProxyError::Internal.into_response()
}
