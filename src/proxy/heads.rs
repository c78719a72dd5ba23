//! What a connection's requests tell its watch: whether one waits on its upstream (so silence is
//! not idleness), and the request-head deadline, kept without a timer per request.
//!
//! hyper's own HTTP/1 header timeout boxes a new `Sleep` for every request head and registers it
//! with the timer wheel. Here the connection's watch keeps one `Sleep` for the connection's life
//! and the requests only update two counters: `Open` marks a request from its head until its
//! response body is dropped (hyper drops it once written), and when the last one ends the
//! connection starts waiting for the next head. The watch wakes at the deadline, asks
//! `next_deadline`, and either closes the connection or sleeps again.
//!
//! The rule is hyper's: a head must be complete within `header_timeout` of the moment the
//! connection began waiting for it, however its bytes trickle in. A request in progress (its
//! response still being answered or streamed) is not waiting for a head.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::respond::ProxyBody;

/// What a connection's requests tell its watch about heads.
pub struct Heads {
    born: Instant,
    started: AtomicBool,
    /// Requests from their head until their response body is dropped.
    open: AtomicUsize,
    /// Of those, the ones waiting for their upstream's response head: no bytes move, yet the
    /// connection is not idle.
    upstream: AtomicUsize,
    /// When the connection last began waiting for a head, in ms after `born`.
    waiting_since_ms: AtomicU64,
    /// The watch asked the connection to wind down (the lean HTTP/1 path reads it).
    closing: AtomicBool,
    /// The watch found the connection waiting for a head for [`REST_AFTER`]: the lean HTTP/1
    /// path gives back its buffers (see [`Heads::take_rest`]).
    rest: AtomicBool,
    /// `waiting_since_ms` of the wait in which `rest` was last set: once per wait.
    rested_since_ms: AtomicU64,
    /// When the forward in flight began waiting on its upstream, in ms after `born`, where the
    /// watch keeps the response deadline (see [`Expiring`]).
    forward_since_ms: AtomicU64,
    /// The watch found that forward past `upstream.response_timeout`.
    expired: AtomicBool,
}

/// How long a connection waits for its next head before the lean path gives back its read and
/// write buffers (nginx frees its buffers on every keep-alive wait; freeing them on every wait
/// here cost 12% more instructions per request, so only a wait this long does). The watch
/// wakes for it once per wait that it sees, so a busy connection's watch wakes about this often
/// instead of every `header_timeout`.
pub const REST_AFTER: Duration = Duration::from_secs(2);

/// `forward_since_ms` when no watched forward is in flight.
const NO_FORWARD: u64 = u64::MAX;

/// What the watch does next about heads.
#[derive(Debug, PartialEq, Eq)]
pub enum Deadline {
    /// The connection waited `header_timeout` for a head: close it.
    Missed,
    /// Wake again at this instant.
    At(Instant),
    /// Heads are no longer watched (HTTP/2 after its first request).
    None,
}

impl Heads {
    pub fn new(born: Instant) -> Self {
        Self {
            born,
            started: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            upstream: AtomicUsize::new(0),
            waiting_since_ms: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            rest: AtomicBool::new(false),
            rested_since_ms: AtomicU64::new(u64::MAX),
            forward_since_ms: AtomicU64::new(NO_FORWARD),
            expired: AtomicBool::new(false),
        }
    }

    /// A forward begins waiting on its upstream, and the watch keeps its response deadline.
    /// One at a time: the connections that use it answer their requests in order.
    pub fn forward_started(&self) {
        // Rounded up: the deadline may come up to a millisecond late, never early.
        let ms = self.born.elapsed().as_millis() as u64 + 1;
        self.forward_since_ms.store(ms, Ordering::Relaxed);
        self.expired.store(false, Ordering::Relaxed);
    }

    /// The forward begun by [`Heads::forward_started`] is over (answered, failed, or dropped):
    /// the watch stops keeping its deadline, so a forward on a connection hyper serves later
    /// (after a hand-off) is never timed from it.
    pub fn forward_done(&self) {
        self.forward_since_ms.store(NO_FORWARD, Ordering::Relaxed);
    }

    /// When the watch first looks: at the first head's deadline, or, where every head is
    /// watched, by [`REST_AFTER`], so that a connection idle after its first request rests too.
    pub fn first_look(timeout: Duration, every_head: bool) -> Duration {
        if every_head {
            timeout.min(REST_AFTER)
        } else {
            timeout
        }
    }

    /// Whether the watch asked the connection to give back its buffers since the last call.
    /// Read on every poll of a waiting connection: a plain load, and the locked swap only when
    /// the flag is set.
    pub fn take_rest(&self) -> bool {
        self.rest.load(Ordering::Relaxed) && self.rest.swap(false, Ordering::Relaxed)
    }

    /// Ask the connection to finish the request in progress, if any, and close.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// Whether [`Heads::close`] was called.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Whether a request waits on its upstream.
    pub fn awaiting_upstream(&self) -> bool {
        self.upstream.load(Ordering::Relaxed) > 0
    }

    /// At a deadline set earlier: has a head been missed, and when to look again. Only the first
    /// head is watched unless `every_head`. A wait for a head that has lasted [`REST_AFTER`]
    /// (and is shorter than `timeout`) also asks the connection to rest, once per wait.
    ///
    /// `response`: the response deadline this watch keeps for a forward in flight (see
    /// [`Heads::forward_started`]), if any. It must be at least `timeout`: the watch then wakes
    /// before it is due whatever it was armed for when the forward began, and wakes again at it.
    pub fn next_deadline(
        &self,
        timeout: Duration,
        every_head: bool,
        now: Instant,
        response: Option<Duration>,
    ) -> Deadline {
        if !self.started.load(Ordering::Relaxed) {
            // The watch may look early (at `REST_AFTER`, see `first_look`).
            let due = self.born + timeout;
            return if now >= due {
                Deadline::Missed
            } else {
                Deadline::At(due)
            };
        }
        if !every_head {
            return Deadline::None;
        }
        if self.open.load(Ordering::Relaxed) > 0 {
            let next = now + timeout;
            let since_ms = self.forward_since_ms.load(Ordering::Relaxed);
            let Some(limit) = response.filter(|_| since_ms != NO_FORWARD) else {
                return Deadline::At(next);
            };
            let since = Duration::from_millis(since_ms);
            // An absurd `response_timeout` past the clock's range is no deadline.
            let Some(due) = self.born.checked_add(since + limit) else {
                return Deadline::At(next);
            };
            if now < due {
                return Deadline::At(next.min(due));
            }
            self.expired.store(true, Ordering::Relaxed);
            return Deadline::At(next);
        }
        let since_ms = self.waiting_since_ms.load(Ordering::Relaxed);
        let since = self.born + Duration::from_millis(since_ms);
        let due = since + timeout;
        if now >= due {
            return Deadline::Missed;
        }
        let rest_at = since + REST_AFTER;
        if rest_at >= due || self.rested_since_ms.load(Ordering::Relaxed) == since_ms {
            return Deadline::At(due);
        }
        if now < rest_at {
            return Deadline::At(rest_at);
        }
        self.rested_since_ms.store(since_ms, Ordering::Relaxed);
        self.rest.store(true, Ordering::Relaxed);
        Deadline::At(due)
    }
}

/// A request between its head and the drop of its response body, even if the client goes away
/// and hyper drops the handler.
pub struct Open {
    heads: Arc<Heads>,
    awaiting: bool,
}

impl Open {
    pub fn enter(heads: &Arc<Heads>) -> Self {
        heads.started.store(true, Ordering::Relaxed);
        heads.open.fetch_add(1, Ordering::Relaxed);
        Self {
            heads: heads.clone(),
            awaiting: false,
        }
    }

    /// The request now waits on its upstream, until `answered` (or its drop).
    pub fn await_upstream(&mut self) {
        self.heads.upstream.fetch_add(1, Ordering::Relaxed);
        self.awaiting = true;
    }

    /// The upstream's response head (or the error's answer) is here.
    pub fn answered(&mut self) {
        if std::mem::take(&mut self.awaiting) {
            self.heads.upstream.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.answered();
        let heads = &self.heads;
        if heads.open.fetch_sub(1, Ordering::Relaxed) == 1 {
            let ms = heads.born.elapsed().as_millis() as u64;
            heads.waiting_since_ms.store(ms, Ordering::Relaxed);
        }
    }
}

pin_project! {
    /// A forward whose response deadline the connection's watch keeps: it ends with `Err(())`
    /// once the watch has found it due. Costs a load per poll instead of a timer per forward.
    pub struct Expiring<F> {
        #[pin]
        inner: F,
        heads: Arc<Heads>,
    }
}

impl<F> Expiring<F> {
    pub fn new(inner: F, heads: Arc<Heads>) -> Self {
        Self { inner, heads }
    }
}

impl<F: Future> Future for Expiring<F> {
    type Output = Result<F::Output, ()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // An answer ready at the deadline wins, as with `tokio::time::timeout`.
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        if this.heads.expired.load(Ordering::Relaxed) {
            return Poll::Ready(Err(()));
        }
        Poll::Pending
    }
}

pin_project! {
    /// A response body that ends its request's `Open` when hyper drops it.
    pub struct Counted {
        #[pin]
        body: ProxyBody,
        open: Open,
    }
}

impl Counted {
    pub fn new(body: ProxyBody, open: Open) -> Self {
        Self { body, open }
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = <ProxyBody as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    #[test]
    fn the_first_head_is_due_on_every_protocol() {
        let born = Instant::now();
        let heads = Arc::new(Heads::new(born));
        // An early look (every head watched) waits on for the first head's deadline.
        let early = born + Heads::first_look(T, true);
        assert_eq!(
            heads.next_deadline(T, true, early, None),
            Deadline::At(born + T)
        );
        assert_eq!(
            heads.next_deadline(T, false, born + T, None),
            Deadline::Missed
        );
        drop(Open::enter(&heads));
        assert_eq!(
            heads.next_deadline(T, false, born + T, None),
            Deadline::None
        );
    }

    #[test]
    fn a_later_head_is_due_a_timeout_after_the_last_response_ended() {
        let born = Instant::now();
        let heads = Arc::new(Heads::new(born));
        let open = Open::enter(&heads);
        // In progress: not waiting for a head, however long it takes.
        assert_eq!(
            heads.next_deadline(T, true, born + 3 * T, None),
            Deadline::At(born + 4 * T)
        );
        std::thread::sleep(Duration::from_millis(20));
        drop(open);
        let since = heads.waiting_since_ms.load(Ordering::Relaxed);
        assert!(since >= 20, "waiting since {since} ms");
        let due = born + Duration::from_millis(since) + T;
        assert_eq!(
            heads.next_deadline(T, true, due - T / 2, None),
            Deadline::At(due)
        );
        assert_eq!(heads.next_deadline(T, true, due, None), Deadline::Missed);
    }

    #[test]
    fn a_wait_of_rest_after_asks_the_connection_to_rest_once() {
        let born = Instant::now();
        let heads = Arc::new(Heads::new(born));
        drop(Open::enter(&heads));
        let since = born + Duration::from_millis(heads.waiting_since_ms.load(Ordering::Relaxed));
        // Early in the wait: look again when it has lasted REST_AFTER.
        assert_eq!(
            heads.next_deadline(T, true, since, None),
            Deadline::At(since + REST_AFTER)
        );
        assert!(!heads.take_rest());
        assert_eq!(
            heads.next_deadline(T, true, since + REST_AFTER, None),
            Deadline::At(since + T)
        );
        assert!(heads.take_rest());
        assert!(!heads.take_rest(), "taken once");
        // The same wait does not ask again.
        assert_eq!(
            heads.next_deadline(T, true, since + 2 * REST_AFTER, None),
            Deadline::At(since + T)
        );
        assert!(!heads.take_rest());
        // A request in progress is not resting.
        let open = Open::enter(&heads);
        let later = since + 3 * REST_AFTER;
        assert_eq!(
            heads.next_deadline(T, true, later, None),
            Deadline::At(later + T)
        );
        assert!(!heads.take_rest());
        drop(open);
        // Where the head deadline comes first, there is nothing to rest for.
        let since = born + Duration::from_millis(heads.waiting_since_ms.load(Ordering::Relaxed));
        assert_eq!(
            heads.next_deadline(REST_AFTER, true, since, None),
            Deadline::At(since + REST_AFTER)
        );
        assert_eq!(
            heads.next_deadline(REST_AFTER, true, since + REST_AFTER, None),
            Deadline::Missed
        );
        assert!(!heads.take_rest());
    }

    #[test]
    fn a_request_waits_on_its_upstream_until_answered_or_dropped() {
        let heads = Arc::new(Heads::new(Instant::now()));
        let mut a = Open::enter(&heads);
        a.await_upstream();
        let mut b = Open::enter(&heads);
        b.await_upstream();
        assert!(heads.awaiting_upstream());
        a.answered();
        assert!(heads.awaiting_upstream(), "b still waits");
        drop(b);
        assert!(!heads.awaiting_upstream());
        // Answered, and still open while its body streams.
        assert_eq!(heads.open.load(Ordering::Relaxed), 1);
        drop(a);
        assert_eq!(heads.open.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_pipelined_request_keeps_the_connection_busy_until_the_last_ends() {
        let born = Instant::now();
        let heads = Arc::new(Heads::new(born));
        let (a, b) = (Open::enter(&heads), Open::enter(&heads));
        drop(a);
        assert_eq!(
            heads.next_deadline(T, true, born + 5 * T, None),
            Deadline::At(born + 6 * T)
        );
        drop(b);
        assert_eq!(
            heads.next_deadline(T, true, born + 5 * T, None),
            Deadline::Missed
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_watch_flags_a_forward_past_its_response_deadline() {
        use futures_util::FutureExt;
        let born = Instant::now();
        let heads = Arc::new(Heads::new(born));
        let mut open = Open::enter(&heads);
        open.await_upstream();
        heads.forward_started();
        // forward_started rounds up to the next millisecond.
        let (limit, start) = (3 * T, born + Duration::from_millis(1));
        // Before it is due, the watch wakes at the sooner of its head look and the deadline.
        let now = start + T;
        assert_eq!(
            heads.next_deadline(T, true, now, Some(limit)),
            Deadline::At(now + T)
        );
        let now = start + 5 * T / 2;
        assert_eq!(
            heads.next_deadline(T, true, now, Some(limit)),
            Deadline::At(start + limit)
        );
        let forward = Expiring::new(std::future::pending::<()>(), heads.clone());
        tokio::pin!(forward);
        assert_eq!(forward.as_mut().now_or_never(), None);
        // Due: flagged, and the forward ends with Err at its next poll.
        let now = start + limit;
        assert_eq!(
            heads.next_deadline(T, true, now, Some(limit)),
            Deadline::At(now + T)
        );
        assert_eq!(forward.as_mut().now_or_never(), Some(Err(())));
        // The next forward starts clean, with its own start.
        heads.forward_done();
        tokio::time::advance(4 * T).await;
        heads.forward_started();
        let restart = Instant::now() + Duration::from_millis(1);
        let now = restart + 5 * T / 2;
        assert_eq!(
            heads.next_deadline(T, true, now, Some(limit)),
            Deadline::At(restart + limit)
        );
        let next = Expiring::new(std::future::ready(7), heads.clone());
        assert_eq!(next.await, Ok(7));
        // Once it is done (as after a hand-off, when hyper's forwards are not watched), heads
        // rule as before.
        heads.forward_done();
        assert_eq!(
            heads.next_deadline(T, true, now, Some(limit)),
            Deadline::At(now + T)
        );
        open.answered();
    }
}
