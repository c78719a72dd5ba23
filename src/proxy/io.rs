//! A connection's byte stream with an activity counter, so an idle connection can be found
//! without a timer reset on every read or write, and a guard that lives exactly as long as the
//! socket: through hyper and, after an Upgrade, through the tunnel that ends up owning it.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pin_project! {
    /// Counts successful reads and writes; drops `guard` with the socket.
    pub struct Tracked<I, G = ()> {
        #[pin]
        inner: I,
        activity: Arc<AtomicU64>,
        _guard: G,
    }
}

impl<I, G> Tracked<I, G> {
    pub fn new(inner: I, activity: Arc<AtomicU64>, guard: G) -> Self {
        Self {
            inner,
            activity,
            _guard: guard,
        }
    }
}

impl<I: AsyncRead, G> AsyncRead for Tracked<I, G> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let r = this.inner.poll_read(cx, buf);
        if r.is_ready() {
            this.activity.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
}

impl<I: AsyncWrite, G> AsyncWrite for Tracked<I, G> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write(cx, buf);
        if r.is_ready() {
            this.activity.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let r = this.inner.poll_write_vectored(cx, bufs);
        if r.is_ready() {
            this.activity.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
