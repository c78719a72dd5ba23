//! A lean HTTP/1.1 server for the common request: HTTP/1.1, no body, no Upgrade, a head within
//! the limits. It runs in the connection's task: it reads and parses heads with `httparse`,
//! decides each request with [`handle`], and writes the answer (`h1_encode.rs`) with the first
//! piece of its body in the same write.
//!
//! Anything else hands the connection to hyper, for the rest of its life, with the bytes read so
//! far: a request with a body, an Upgrade, `Expect`, HTTP/1.0, CONNECT, and every head hyper
//! would answer with an error (malformed, too large, too many fields). hyper answers those as it
//! always did, so the lean path never has to.
//!
//! The connection's watch keeps the head deadline and idleness as for hyper (an `Open` per
//! request, reads and writes counted by the socket), and asks a connection to wind down through
//! [`Heads::close`]: it is noticed between requests, and an answer written after it carries
//! `Connection: close`. While a request waits on its upstream, the client socket is read too, so
//! a client that goes away cancels its request, as with hyper.

use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use http::{HeaderMap, Method};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::h1_encode::{write_rejection, write_relayed, write_response};
use super::h1_request::{parse, Lean, Parsed};
use super::heads::{Heads, Open};
use super::service::{guarded_now, handle, Answer, Handled, Peer, ProxyState};

pub use super::h1_request::MAX_FIELDS;

/// The most header fields the lean path parses; a listener allowing more leaves every
/// connection to hyper.
/// Free space made in the read buffer before each read.
const READ_CHUNK: usize = 8 * 1024;

/// What the lean path needs from its connection and listener.
pub struct Ctx {
    pub state: Arc<ProxyState>,
    pub client: Arc<Peer>,
    pub heads: Arc<Heads>,
    /// `server.max_headers`, at most [`MAX_FIELDS`].
    pub max_headers: usize,
    /// The most bytes of a head buffered before hyper takes over to answer 431 (hyper's
    /// `max_buf_size`).
    pub max_head: usize,
    /// The connection's watch keeps each forward's response deadline (see
    /// [`Heads::next_deadline`]): no timer per forward.
    pub response_watched: bool,
}

/// How the lean path ended.
pub enum Ended<I> {
    /// The connection is done: closed by either side, or wound down.
    Closed,
    /// hyper serves the rest: the socket, and what was read from it.
    HandOff(Prefixed<I>),
    /// The connection waited [`REST_AFTER`](super::heads::REST_AFTER) for a head with nothing
    /// buffered: [`rest`] waits for its next bytes, and `serve` starts again with them. Its
    /// buffers and the state of `serve` (3.5 KB) are given back meanwhile.
    Rest(I),
}

/// Serve requests on `io` until the connection ends, rests, or a request needs hyper. `rbuf`
/// holds bytes already read (empty, or what [`rest`] got).
pub async fn serve<I>(mut io: I, mut rbuf: BytesMut, cx: &Ctx) -> io::Result<Ended<I>>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut wbuf = Vec::with_capacity(1024);
    // The last answer's header map, cleared: the next forwarded request's (see `Lean`). A 429
    // neither takes it nor has a map of its own to give back.
    let mut spare = HeaderMap::new();
    loop {
        if cx.heads.closing() {
            return Ok(Ended::Closed);
        }
        // How much of `rbuf` a parse has already found incomplete.
        let mut scanned = 0;
        let head = loop {
            if rbuf.len() > scanned && may_end_head(&rbuf, scanned) {
                match parse(&rbuf, cx.max_headers) {
                    Some(Parsed::Lean(head)) => break head,
                    Some(Parsed::NotOurs) => return Ok(Ended::HandOff(Prefixed::new(rbuf, io))),
                    None => {}
                }
            }
            if rbuf.len() >= cx.max_head {
                return Ok(Ended::HandOff(Prefixed::new(rbuf, io)));
            }
            scanned = rbuf.len();
            // Wait for bytes; a wind-down while waiting ends the connection. A long wait with
            // nothing buffered rests (see `Heads::take_rest`).
            let read = poll_fn(|tcx| {
                if cx.heads.closing() {
                    return Poll::Ready(Ok(Some(0)));
                }
                if cx.heads.take_rest() && rbuf.is_empty() {
                    return Poll::Ready(Ok(None));
                }
                poll_read(&mut io, &mut rbuf, tcx).map_ok(Some)
            });
            match read.await? {
                Some(0) => return Ok(Ended::Closed),
                Some(_) => {}
                None => {
                    cx.state.conn_metrics.rested.increment(1);
                    return Ok(Ended::Rest(io));
                }
            }
        };
        let mut open = Open::enter(&cx.heads);
        let (head_only, close) = (head.method == Method::HEAD, head.close);
        let mut head = head;
        let handled = guarded_now(&cx.state.conn_metrics.panics, || {
            let req = Lean {
                bytes: &rbuf[..head.len],
                head: &mut head,
                spare: &mut spare,
            };
            handle(
                &cx.state,
                req,
                &cx.client,
                cx.response_watched.then_some(&cx.heads),
            )
        });
        // The decision is made: the head's bytes are not read again.
        rbuf.advance(head.len);
        drop(head);
        // Read once the answer is ready: a wind-down may begin while a forward is awaited.
        let closes = || close || cx.heads.closing();
        let reusable = match handled {
            Handled::Rejected(r) => {
                write_rejection(&mut io, &mut wbuf, &r, head_only, closes()).await?
            }
            Handled::Ready(resp) => {
                write_response(&mut io, &mut wbuf, resp, head_only, closes(), &mut spare).await?
            }
            Handled::Forward(fwd) => {
                open.await_upstream();
                if cx.response_watched {
                    cx.heads.forward_started();
                }
                let resp = until_client_leaves(fwd, &mut io, &mut rbuf).await;
                cx.heads.forward_done();
                let Some(answer) = resp else {
                    return Ok(Ended::Closed);
                };
                open.answered();
                match answer {
                    Answer::Response(resp) => {
                        let spare = &mut spare;
                        write_response(&mut io, &mut wbuf, *resp, head_only, closes(), spare)
                            .await?
                    }
                    Answer::Relayed(relayed, extra) => {
                        let (io, wbuf) = (&mut io, &mut wbuf);
                        write_relayed(io, wbuf, relayed, &extra, head_only, closes()).await?
                    }
                }
            }
        };
        drop(open);
        if !reusable {
            let _ = io.shutdown().await;
            return Ok(Ended::Closed);
        }
    }
}

/// Whether a head found incomplete in `buf[..from]` may end in what came after: a `\n\n` or
/// `\n\r\n` there. A head that arrives in pieces is parsed again only then, not after every
/// read (hyper's check too), so a head trickled a byte at a time costs linear time, not square.
fn may_end_head(buf: &[u8], from: usize) -> bool {
    if from == 0 {
        return true;
    }
    let tail = &buf[from.saturating_sub(3)..];
    tail.iter().enumerate().any(|(i, &b)| {
        b == b'\n' && (tail.get(i + 1) == Some(&b'\n') || tail.get(i + 1..i + 3) == Some(b"\r\n"))
    })
}

/// One read into `buf`'s spare room.
fn poll_read<I: AsyncRead + Unpin>(
    io: &mut I,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    buf.reserve(READ_CHUNK);
    pin!(io.read_buf(buf)).poll(cx)
}

/// How many bytes the first read after a rest takes (on the stack); the rest of a longer head
/// comes in the buffer it then gets.
const RESTING_READ: usize = 1024;

/// Wait on a resting connection for its next bytes, holding no buffer: `None` when it ends
/// (closed by the client, or wound down), else the bytes, for [`serve`] to start with.
pub async fn rest<I: AsyncRead + Unpin>(io: &mut I, heads: &Heads) -> io::Result<Option<BytesMut>> {
    let mut buf = BytesMut::new();
    let read = poll_fn(|tcx| {
        if heads.closing() {
            return Poll::Ready(Ok(0));
        }
        poll_read_resting(io, &mut buf, tcx)
    });
    Ok((read.await? > 0).then_some(buf))
}

/// One read of a resting connection: through the stack, into a fresh buffer only if bytes came.
fn poll_read_resting<I: AsyncRead + Unpin>(
    io: &mut I,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let mut stack = [MaybeUninit::<u8>::uninit(); RESTING_READ];
    let mut read = ReadBuf::uninit(&mut stack);
    match Pin::new(io).poll_read(cx, &mut read) {
        Poll::Ready(Ok(())) => {
            let got = read.filled();
            if !got.is_empty() {
                *buf = BytesMut::with_capacity(READ_CHUNK);
                buf.extend_from_slice(got);
            }
            Poll::Ready(Ok(got.len()))
        }
        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        Poll::Pending => Poll::Pending,
    }
}

/// Await `fwd` while watching the client: a read of 0 (the client went away) or an error drops
/// the request (`None`). Pipelined bytes that arrive meanwhile are kept in `rbuf`, and once
/// there are some the socket is left alone until the answer is out.
async fn until_client_leaves<F, T, I>(fwd: F, io: &mut I, rbuf: &mut BytesMut) -> Option<T>
where
    F: Future<Output = T>,
    I: AsyncRead + Unpin,
{
    let mut fwd = pin!(fwd);
    poll_fn(|cx| {
        if let Poll::Ready(out) = fwd.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        // Only while nothing is buffered, as hyper does: a pipelined request followed by the
        // client's FIN still gets its answer.
        while rbuf.is_empty() {
            match poll_read(io, rbuf, cx) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(None),
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => break,
            }
        }
        Poll::Pending
    })
    .await
}

/// A socket with bytes already read from it in front: what hyper gets on a hand-off.
pub struct Prefixed<I> {
    prefix: BytesMut,
    io: I,
}

impl<I> Prefixed<I> {
    fn new(prefix: BytesMut, io: I) -> Self {
        Self { prefix, io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix.split_to(n));
        if this.prefix.is_empty() {
            // The lean path's read buffer is not kept for the rest of the connection.
            this.prefix = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_in_pieces_is_parsed_again_only_when_it_may_end() {
        let text = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        // The first look always parses; later ones only when the new bytes hold an end.
        assert!(may_end_head(b"GET", 0));
        assert!(!may_end_head(b"GET / HTTP/1.1\r\nHo", 17));
        assert!(!may_end_head(b"GET / HTTP/1.1\r\nHost: x\r\n", 20));
        // An end split across reads: "\r\n" before `from`, "\r\n" after.
        assert!(may_end_head(text, text.len() - 2));
        assert!(may_end_head(text, text.len() - 1));
        assert!(may_end_head(b"GET / HTTP/1.1\nHost: x\n\n", 22));
    }
}
