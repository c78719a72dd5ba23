//! What a connection is watched for besides its own progress: shutdown, request heads within
//! `header_timeout` (see `heads.rs`), and idleness.
//!
//! The watch and the connection are one task. The connection wakes it for every read and write,
//! and the watch's three futures (the shutdown signal, the head deadline, the idle tick) almost
//! never. So they are polled with a waker of their own ([`Side`]): only when one of them woke
//! the task, not on each of the connection's wake-ups. Polling them every time, as a `select!`
//! does, cost about 600 instructions per request (a `Sleep`, an `Interval` and a watch channel
//! polled again).

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use tokio::sync::watch;

use super::heads::{Deadline, Heads};
use super::listener::ConnLimits;

/// The watch of one connection.
pub struct Watch<'a> {
    pub peer: SocketAddr,
    pub limits: &'a ConnLimits,
    /// Bytes moved on the socket, counted by `io::Tracked`.
    pub activity: Arc<AtomicU64>,
    pub heads: Arc<Heads>,
    /// Whether every head has a deadline here, not only the first (HTTP/1 without hyper's).
    pub every_head: bool,
    pub shutdown: watch::Receiver<bool>,
}

/// What woke the watch.
enum Event<E> {
    /// The connection finished.
    Ended(Result<(), E>),
    Stop,
    HeadLook,
    IdleTick,
}

impl<'a> Watch<'a> {
    /// Drive `conn` to its end, winding it down on shutdown or after one idle period, and ending
    /// it after a missed head deadline or a second idle period.
    ///
    /// A plain fn returning its future, not an `async fn`: an `async fn` keeps its arguments
    /// twice in its state (as passed and as moved into its body), and this state is part of
    /// every connection's task for its whole life.
    #[allow(clippy::manual_async_fn)]
    pub fn drive<C, E>(
        mut self,
        mut conn: Pin<Box<C>>,
        wind_down: impl Fn(Pin<&mut C>) + 'a,
    ) -> impl Future<Output = ()> + 'a
    where
        C: Future<Output = Result<(), E>> + 'a,
        E: std::fmt::Display,
    {
        async move {
            let mut idle = tokio::time::interval(self.limits.idle_timeout);
            idle.reset();
            let (mut seen, mut strikes, mut draining) = (0u64, 0u8, false);
            let first = Heads::first_look(self.limits.header_timeout, self.every_head);
            let head_deadline = tokio::time::sleep(first);
            tokio::pin!(head_deadline);
            let mut watching_heads = true;
            // Made once: a new one per wake-up would register with the channel again each time.
            let stop = crate::shutdown::stopped(&mut self.shutdown);
            tokio::pin!(stop);
            let side = Side::new();
            loop {
                // The connection first, then the side futures in a fixed order, if one woke us.
                let event = poll_fn(|cx| {
                    if let Poll::Ready(res) = conn.as_mut().poll(cx) {
                        return Poll::Ready(Event::Ended(res));
                    }
                    let Some(mut scx) = side.woken(cx) else {
                        return Poll::Pending;
                    };
                    if !draining && stop.as_mut().poll(&mut scx).is_ready() {
                        return Poll::Ready(Event::Stop);
                    }
                    if watching_heads && head_deadline.as_mut().poll(&mut scx).is_ready() {
                        return Poll::Ready(Event::HeadLook);
                    }
                    if idle.poll_tick(&mut scx).is_ready() {
                        return Poll::Ready(Event::IdleTick);
                    }
                    Poll::Pending
                })
                .await;
                // The side futures are all looked at again after one of them was handled: those
                // after it in the order were not polled this time.
                side.again();
                match event {
                    Event::Ended(res) => {
                        if let Err(e) = res {
                            tracing::debug!(peer = ?self.peer, error = %e, "connection ended with an error");
                        }
                        return;
                    }
                    Event::Stop => {
                        draining = true;
                        wind_down(conn.as_mut());
                    }
                    Event::HeadLook => {
                        let now = tokio::time::Instant::now();
                        let response = self.limits.response_watched.filter(|_| self.every_head);
                        match self.heads.next_deadline(
                            self.limits.header_timeout,
                            self.every_head,
                            now,
                            response,
                        ) {
                            Deadline::Missed => {
                                tracing::debug!(
                                    peer = ?self.peer,
                                    "no request head within header_timeout; closing"
                                );
                                return;
                            }
                            Deadline::At(when) => head_deadline.as_mut().reset(when),
                            Deadline::None => watching_heads = false,
                        }
                    }
                    Event::IdleTick => {
                        let now = self.activity.load(Ordering::Relaxed);
                        // Waiting on an upstream moves no bytes but is not idle.
                        let busy = self.heads.awaiting_upstream();
                        strikes = if now == seen && !busy { strikes + 1 } else { 0 };
                        seen = now;
                        match strikes {
                            0 => {}
                            1 => wind_down(conn.as_mut()),
                            _ => return,
                        }
                    }
                }
            }
        }
    }
}

/// The waker the side futures are polled with: it notes that one of them is ready to make
/// progress, then wakes the task.
struct Side {
    inner: Arc<SideInner>,
    /// Made once per connection.
    waker: Waker,
}

struct SideInner {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for SideInner {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Side {
    /// Woken at first, so the first look polls (and registers) every side future.
    fn new() -> Self {
        let inner = Arc::new(SideInner {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(inner.clone());
        Self { inner, waker }
    }

    /// Keeps the task's waker for the side futures to wake; a context to poll them with if one
    /// of them woke the task since the last look (or [`Side::again`] asked for a look).
    fn woken(&self, cx: &Context<'_>) -> Option<Context<'_>> {
        // Registered before the flag is read: a wake in between is not lost.
        self.inner.task.register(cx.waker());
        self.inner
            .woken
            .swap(false, Ordering::AcqRel)
            .then(|| Context::from_waker(&self.waker))
    }

    /// Poll every side future at the next look.
    fn again(&self) {
        self.inner.woken.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn side_futures_are_looked_at_only_after_they_wake_the_task() {
        let side = Side::new();
        let task = Waker::noop();
        let cx = Context::from_waker(task);
        assert!(side.woken(&cx).is_some(), "the first look polls them all");
        assert!(side.woken(&cx).is_none(), "then nothing woke them");
        side.waker.wake_by_ref();
        assert!(side.woken(&cx).is_some());
        assert!(side.woken(&cx).is_none());
        side.again();
        assert!(side.woken(&cx).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_polled_with_the_side_waker_wakes_the_task_and_flags_itself() {
        let side = Side::new();
        let sleep = tokio::time::sleep(std::time::Duration::from_secs(5));
        tokio::pin!(sleep);
        let mut looks = 0;
        poll_fn(|cx| {
            let Some(mut scx) = side.woken(cx) else {
                return Poll::Pending;
            };
            looks += 1;
            sleep.as_mut().poll(&mut scx)
        })
        .await;
        // The first look registers the timer; the second comes from the timer's own wake.
        assert_eq!(looks, 2);
    }
}
