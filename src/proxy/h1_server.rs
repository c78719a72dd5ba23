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
use std::ops::Range;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body_util::Empty;
use smallvec::SmallVec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::forward::{self, ClientBody, ForwardCtx, Outbound};
use super::gate::View;
use super::h1_encode::{write_rejection, write_relayed, write_response};
use super::headers::has_token;
use super::heads::{Heads, Open};
use super::respond::ProxyError;
use super::route::Upstream;
use super::service::{guarded_now, handle, Answer, Handled, Incoming, Peer, ProxyState};
use crate::limiter::fields::Fields;

/// The most header fields the lean path parses; a listener allowing more leaves every
/// connection to hyper.
pub const MAX_FIELDS: usize = 256;
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
}

/// Serve requests on `io` until the connection ends or a request needs hyper.
pub async fn serve<I>(mut io: I, cx: &Ctx) -> io::Result<Ended<I>>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
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
                match parse(&mut rbuf, cx.max_headers) {
                    Some(Parsed::Lean(head)) => break head,
                    Some(Parsed::NotOurs) => return Ok(Ended::HandOff(Prefixed::new(rbuf, io))),
                    None => {}
                }
            }
            if rbuf.len() >= cx.max_head {
                return Ok(Ended::HandOff(Prefixed::new(rbuf, io)));
            }
            scanned = rbuf.len();
            // Wait for bytes; a wind-down while waiting ends the connection. A long wait gives
            // back the buffers (see `Heads::take_rest`); the next bytes come in through a small
            // buffer on the stack, so a resting connection holds none.
            let read = poll_fn(|tcx| {
                if cx.heads.closing() {
                    return Poll::Ready(Ok(0));
                }
                if cx.heads.take_rest() && rbuf.is_empty() {
                    (rbuf, wbuf, spare) = (BytesMut::new(), Vec::new(), HeaderMap::new());
                    cx.state.conn_metrics.rested.increment(1);
                }
                if rbuf.capacity() == 0 {
                    return poll_read_resting(&mut io, &mut rbuf, tcx);
                }
                poll_read(&mut io, &mut rbuf, tcx)
            });
            if read.await? == 0 {
                return Ok(Ended::Closed);
            }
        };
        let mut open = Open::enter(&cx.heads);
        let (head_only, close) = (head.method == Method::HEAD, head.close);
        let mut head = head;
        let handled = guarded_now(&cx.state.conn_metrics.panics, || {
            let req = Lean {
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

/// A request the lean path serves: its head's bytes, with the method, the target and where each
/// field lies in them, and whether the client asked to close after it. The limit step reads the
/// fields where they are ([`Fields`]); a header map is built only for a request that goes
/// upstream ([`Lean::into_request`]).
struct Head {
    bytes: Bytes,
    method: Method,
    uri: Uri,
    fields: SmallVec<[Field; 24]>,
    close: bool,
}

/// Where a field's name and value lie in the head.
struct Field {
    name: Range<u32>,
    value: Range<u32>,
}

impl Head {
    fn name(&self, f: &Field) -> &[u8] {
        &self.bytes[f.name.start as usize..f.name.end as usize]
    }

    fn value(&self, f: &Field) -> &[u8] {
        &self.bytes[f.value.start as usize..f.value.end as usize]
    }

    fn named<'s>(&'s self, name: &'s HeaderName) -> impl Iterator<Item = &'s Field> {
        // `HeaderName`s are lowercase; a head's names may be in any case.
        let want = name.as_str().as_bytes();
        self.fields.iter().filter(move |f| {
            let got = self.name(f);
            got.len() == want.len()
                && got
                    .iter()
                    .zip(want)
                    .all(|(g, w)| g.to_ascii_lowercase() == *w)
        })
    }
}

impl Fields for Head {
    fn first(&self, name: &HeaderName) -> Option<&[u8]> {
        self.named(name).next().map(|f| self.value(f))
    }

    fn each<'s>(&'s self, name: &HeaderName, f: &mut dyn FnMut(&'s [u8])) {
        for field in self.named(name) {
            f(self.value(field));
        }
    }
}

/// A head with the header map it fills if it goes upstream: the last answer's, cleared (as
/// hyper does), so neither allocates nor grows when the forwarding fields are added. Both
/// borrowed: the head is 0.5 KB, moved only once.
struct Lean<'s> {
    head: &'s mut Head,
    spare: &'s mut HeaderMap,
}

impl Incoming for Lean<'_> {
    fn view(&self) -> View<'_> {
        View {
            method: &self.head.method,
            uri: &self.head.uri,
            fields: &*self.head,
        }
    }

    fn into_request(self) -> Result<Request<ClientBody>, ProxyError> {
        let Head {
            bytes,
            method,
            uri,
            fields,
            ..
        } = self.head;
        let mut headers = std::mem::take(self.spare);
        headers.reserve(fields.len() + 6);
        for f in fields.iter() {
            let name = &bytes[f.name.start as usize..f.name.end as usize];
            // httparse takes the same bytes in names and values as `http` does, so neither
            // fails; if one did, the request is answered 400, not forwarded without the field.
            let name = super::names::header_name(name).map_err(|_| ProxyError::BadHeader)?;
            let value = bytes.slice(f.value.start as usize..f.value.end as usize);
            let value = HeaderValue::from_maybe_shared(value).map_err(|_| ProxyError::BadHeader)?;
            headers.append(name, value);
        }
        let mut req = Request::new(ClientBody::Right(Empty::<Bytes>::new()));
        *req.method_mut() = std::mem::take(method);
        *req.uri_mut() = std::mem::take(uri);
        *req.version_mut() = Version::HTTP_11;
        *req.headers_mut() = headers;
        Ok(req)
    }

    /// To a plain `http://` upstream, the head goes out written from the client's bytes,
    /// without a header map (`h1_outbound.rs`).
    fn into_outbound(
        self,
        ctx: &ForwardCtx<'_>,
        upstream: &Upstream,
    ) -> Result<Outbound, ProxyError> {
        let head = &*self.head;
        let pairs = head.fields.iter().map(|f| (head.name(f), head.value(f)));
        let (method, uri, bytes) = (&head.method, &head.uri, &head.bytes[..]);
        match forward::outbound_head(ctx, upstream, method, uri, bytes, pairs) {
            Some(out) => Ok(out),
            None => forward::outbound(ctx, upstream, self.into_request()?),
        }
    }
}

/// Unboxed: the head is the common case, and a box would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Lean(Head),
    NotOurs,
}

/// The fields the lean path looks at while parsing, by name (any case).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// A body, an upgrade or an interim answer: hyper's.
    NotOurs,
    ContentLength,
    Connection,
    Other,
}

fn framing_of(name: &[u8]) -> Framing {
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    match name.len() {
        17 if is("transfer-encoding") => Framing::NotOurs,
        7 if is("upgrade") => Framing::NotOurs,
        6 if is("expect") => Framing::NotOurs,
        14 if is("content-length") => Framing::ContentLength,
        10 if is("connection") => Framing::Connection,
        _ => Framing::Other,
    }
}

/// Parse the head at the start of `buf`, taking its bytes when the lean path serves it. `None`:
/// the head is not complete yet.
fn parse(buf: &mut BytesMut, max_headers: usize) -> Option<Parsed> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots[..max_headers]) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return None,
        Err(_) => return Some(Parsed::NotOurs),
    };
    if req.version != Some(1) {
        return Some(Parsed::NotOurs);
    }
    let Ok(method) = Method::from_bytes(req.method.unwrap_or_default().as_bytes()) else {
        return Some(Parsed::NotOurs);
    };
    if method == Method::CONNECT {
        return Some(Parsed::NotOurs);
    }
    // Offsets in the head fit in u32: it is at most `max_head` bytes, far below 4 GiB.
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| {
        let from = (s.as_ptr() as usize - base) as u32;
        from..from + s.len() as u32
    };
    let path = req.path.unwrap_or_default();
    let path_at = at(path.as_bytes());
    let mut fields = SmallVec::<[Field; 24]>::new();
    let mut close = false;
    let mut zero_length = false;
    for h in req.headers.iter() {
        let value = h.value;
        match framing_of(h.name.as_bytes()) {
            Framing::NotOurs => return Some(Parsed::NotOurs),
            Framing::ContentLength if value.trim_ascii() != b"0" => return Some(Parsed::NotOurs),
            // Repeats of `Content-Length: 0` are one field, as hyper keeps them.
            Framing::ContentLength if zero_length => continue,
            Framing::ContentLength => zero_length = true,
            Framing::Connection => close |= has_token(value, b"close"),
            Framing::Other => {}
        }
        fields.push(Field {
            name: at(h.name.as_bytes()),
            value: at(value),
        });
    }
    let bytes = buf.split_to(len).freeze();
    let Ok(uri) = Uri::from_maybe_shared(bytes.slice(path_at.start as usize..path_at.end as usize))
    else {
        // hyper answers 400 to it; give the bytes back first.
        unsplit(buf, bytes);
        return Some(Parsed::NotOurs);
    };
    Some(Parsed::Lean(Head {
        bytes,
        method,
        uri,
        fields,
        close,
    }))
}

/// Put a head taken from `buf` back in front of it (rare: a head httparse accepted and `http`
/// did not).
fn unsplit(buf: &mut BytesMut, head: Bytes) {
    let mut whole = BytesMut::with_capacity(head.len() + buf.len());
    whole.extend_from_slice(&head);
    whole.extend_from_slice(buf);
    *buf = whole;
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

    fn parsed(text: &str) -> Option<Parsed> {
        parse(&mut BytesMut::from(text), 100)
    }

    /// The head as the request it becomes upstream.
    fn request(head: Head) -> Request<ClientBody> {
        let mut head = head;
        let Ok(req) = (Lean {
            head: &mut head,
            spare: &mut HeaderMap::new(),
        })
        .into_request() else {
            panic!("not a request")
        };
        req
    }

    #[test]
    fn a_plain_get_is_ours_and_keeps_what_follows() {
        let mut buf = BytesMut::from(
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Api-Key: k\r\nConnection: keep-alive, Close\r\n\r\nGET /next",
        );
        let Some(Parsed::Lean(head)) = parse(&mut buf, 100) else {
            panic!("not lean")
        };
        assert_eq!(head.uri, "/a?b=1");
        assert!(head.close);
        assert_eq!(&buf[..], b"GET /next");
        let req = request(head);
        assert_eq!(req.uri(), "/a?b=1");
        assert_eq!(req.headers()["x-api-key"], "k");
        assert_eq!(req.headers().len(), 3);
    }

    #[test]
    fn the_fields_of_a_head_read_as_a_header_map_reads() {
        let text = "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1\r\nx-api-key: k\r\n\
                    X-FORWARDED-FOR: 2.2.2.2, 3.3.3.3\r\nX-Note: café\r\nX-Empty:\r\n\r\n";
        let Some(Parsed::Lean(head)) = parsed(text) else {
            panic!("not lean")
        };
        let map = request(parse_again(text)).headers().clone();
        for name in [
            "host",
            "x-api-key",
            "x-forwarded-for",
            "x-note",
            "x-empty",
            "x-none",
        ] {
            let name = HeaderName::from_static(name);
            assert_eq!(head.first(&name), map.first(&name), "{name}");
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            head.each(&name, &mut |v| ours.push(v.to_vec()));
            map.each(&name, &mut |v| theirs.push(v.to_vec()));
            assert_eq!(ours, theirs, "{name}");
        }
        let xff = HeaderName::from_static("x-forwarded-for");
        let mut all = Vec::new();
        head.each(&xff, &mut |v| all.push(v));
        assert_eq!(all, [&b"1.1.1.1"[..], b"2.2.2.2, 3.3.3.3"]);
    }

    fn parse_again(text: &str) -> Head {
        let Some(Parsed::Lean(head)) = parsed(text) else {
            panic!("not lean")
        };
        head
    }

    #[test]
    fn a_field_http_refuses_is_answered_not_dropped() {
        // httparse and `http` agree on names and values, so only a hand-made head has one.
        let mut head = parse_again("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        head.bytes = Bytes::from_static(b"GET / HTTP/1.1\r\nHo t: x\r\n\r\n");
        let lean = Lean {
            head: &mut head,
            spare: &mut HeaderMap::new(),
        };
        assert!(matches!(lean.into_request(), Err(ProxyError::BadHeader)));
    }

    #[test]
    fn bodies_upgrades_and_old_versions_go_to_hyper() {
        for text in [
            "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        ] {
            assert!(matches!(parsed(text), Some(Parsed::NotOurs)), "{text:?}");
        }
        assert!(matches!(
            parsed("DELETE / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Some(Parsed::Lean(_))
        ));
        assert!(parsed("GET / HTTP/1.1\r\nHost: x\r\n").is_none());
    }

    #[test]
    fn too_many_fields_go_to_hyper_with_every_byte() {
        let text = "GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        let mut buf = BytesMut::from(text);
        assert!(matches!(parse(&mut buf, 2), Some(Parsed::NotOurs)));
        assert_eq!(&buf[..], text.as_bytes());
    }

    #[test]
    fn repeated_zero_lengths_are_one_field() {
        let Some(Parsed::Lean(head)) =
            parsed("GET / HTTP/1.1\r\nContent-Length: 0\r\nHost: x\r\ncontent-length: 0\r\n\r\n")
        else {
            panic!("not lean")
        };
        let req = request(head);
        let length = http::header::CONTENT_LENGTH;
        assert_eq!(req.headers().get_all(length).iter().count(), 1);
        assert_eq!(req.headers()["host"], "x");
    }

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
