//! A lean HTTP/1.1 client for the common upstream exchange: a request without a body, to a plain
//! `http://` upstream, run inside the client connection's own task.
//!
//! Hyper's client connection is a task of its own: each request crosses a channel to it, and its
//! response crosses back, with a wake-up each way. Here the request's task writes the head
//! itself, reads and parses the response head with `httparse`, and its response body reads from
//! the same buffer, so a small response is usually whole after one read. Requests with a body,
//! Upgrades and `https://` upstreams stay on hyper's client (`pool.rs`).
//!
//! Framing follows RFC 9112 §6.3: no body after HEAD, 1xx, 204 and 304; chunked when it is the
//! final transfer coding; otherwise Content-Length; otherwise until the upstream closes. Chunk
//! trailers are read and dropped. A connection is reused only after a complete body, on HTTP/1.1
//! without `Connection: close`, and never after a framing it cannot trust.

use std::future::Future;
use std::io;
use std::ops::Range;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::request::Parts;
use http::{HeaderMap, Method, Response, StatusCode, Version};
use hyper::body::{Frame, SizeHint};
use smallvec::SmallVec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::headers::{has_token, tokens};

/// Response header fields allowed (hyper's client allows 100).
const MAX_HEADERS: usize = 100;
/// The largest response head, or chunk-size line plus trailers, we buffer.
const MAX_HEAD: usize = 64 * 1024;
/// Free space made in the read buffer before each read.
const READ_CHUNK: usize = 8 * 1024;

/// An upstream connection and its buffers, reused across exchanges.
pub struct Conn {
    io: TcpStream,
    buf: BytesMut,
    head: Vec<u8>,
}

/// A request as the lean client takes it: parts to encode, or a head already written
/// (`h1_outbound.rs`).
#[derive(Clone, Copy)]
pub enum Outgoing<'a> {
    Parts(&'a Parts),
    Head { bytes: &'a [u8], method: &'a Method },
}

/// An exchange that failed, and whether the same request may go again on another connection:
/// it was not delivered, or nothing came back and the method is idempotent.
#[derive(Debug)]
pub struct Failed {
    pub error: io::Error,
    pub retry: bool,
}

impl Conn {
    pub fn new(io: TcpStream) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            head: Vec::with_capacity(1024),
        }
    }

    /// Whether an idle connection can take a request: nothing arrived on it and the upstream did
    /// not close it. Costs a syscall only when the socket was marked readable while it idled.
    pub fn is_open_and_quiet(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readable: closed, or stale readiness from the last read. Ask the socket.
            Poll::Ready(Ok(())) => matches!(
                self.io.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
        }
    }

    /// Send a request head (the request has no body) and read the response head.
    pub async fn exchange(mut self, req: Outgoing<'_>) -> Result<Response<Body>, Failed> {
        let (written, method) = match req {
            Outgoing::Parts(parts) => {
                encode(&mut self.head, parts);
                (self.io.write_all(&self.head).await, &parts.method)
            }
            Outgoing::Head { bytes, method } => (self.io.write_all(bytes).await, method),
        };
        if let Err(error) = written {
            return Err(Failed { error, retry: true });
        }
        let idempotent = is_idempotent(method);
        let mut received = false;
        loop {
            let (len, status, version, fields) = loop {
                if !self.buf.is_empty() {
                    received = true;
                    match parse_head(&self.buf).map_err(fatal)? {
                        Some(head) => break head,
                        None if self.buf.len() >= MAX_HEAD => {
                            return Err(fatal(invalid("upstream response head too large")))
                        }
                        None => {}
                    }
                }
                self.buf.reserve(READ_CHUNK);
                match self.io.read_buf(&mut self.buf).await {
                    Ok(0) => {
                        let error = io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "upstream closed before a complete response head",
                        );
                        return Err(Failed {
                            error,
                            retry: !received && idempotent,
                        });
                    }
                    Ok(_) => {}
                    Err(error) => {
                        return Err(Failed {
                            error,
                            retry: !received && idempotent,
                        })
                    }
                }
            };
            let head = self.buf.split_to(len).freeze();
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(fatal(invalid("101 to a request that asked for no upgrade")));
            }
            if status.is_informational() {
                // 100 Continue, 103 Early Hints: not forwarded (as with hyper's client).
                continue;
            }
            // Room for the RateLimit fields set on it later, without a rehash.
            let mut headers = HeaderMap::with_capacity(fields.len() + 4);
            let mut close = false;
            for (name, value) in fields {
                // `Connection: keep-alive`/`close` and `Keep-Alive` describe this hop only:
                // read here and never put in the map, which would cost a removal later. A
                // Connection naming other fields goes in, for `strip_hop_by_hop` to act on.
                if name == CONNECTION {
                    let tokens = &head[value.clone()];
                    close |= has_token(tokens, b"close");
                    if only_hop_tokens(tokens) {
                        continue;
                    }
                } else if name.as_str() == "keep-alive" {
                    continue;
                }
                let value = HeaderValue::from_maybe_shared(head.slice(value))
                    .map_err(|_| fatal(invalid("invalid response header value")))?;
                headers.append(name, value);
            }
            let no_body = *method == Method::HEAD
                || status == StatusCode::NO_CONTENT
                || status == StatusCode::NOT_MODIFIED;
            let (framing, trusted) = framing(&mut headers, no_body).map_err(fatal)?;
            let keep_alive = trusted && version == Version::HTTP_11 && !close;
            let mut resp = Response::new(Body {
                conn: Some(self),
                framing,
                keep_alive,
            });
            *resp.status_mut() = status;
            *resp.version_mut() = version;
            *resp.headers_mut() = headers;
            return Ok(resp);
        }
    }

    /// Read more into the buffer; `Ok(0)` at the upstream's end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.buf.reserve(READ_CHUNK);
        let fut = self.io.read_buf(&mut self.buf);
        std::pin::pin!(fut).poll(cx)
    }
}

fn fatal(error: io::Error) -> Failed {
    Failed {
        error,
        retry: false,
    }
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// RFC 9110 §9.2.2: a request the upstream may see twice without harm.
fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// The request head, origin-form, in `out` (cleared first; its allocation is kept).
pub(super) fn encode(out: &mut Vec<u8>, req: &Parts) {
    out.clear();
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    let target = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &req.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

type Fields = SmallVec<[(HeaderName, Range<usize>); 24]>;

/// A complete response head at the start of `buf`: its length, status, version, and each
/// field's name with its value's place in `buf`. `None`: not complete yet.
fn parse_head(buf: &[u8]) -> io::Result<Option<(usize, StatusCode, Version, Fields)>> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("invalid upstream response head: {e}"),
            ))
        }
    };
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| invalid("invalid upstream status"))?;
    let version = match resp.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let base = buf.as_ptr() as usize;
    let mut fields = Fields::new();
    for h in resp.headers.iter() {
        let name = super::names::header_name(h.name.as_bytes())
            .map_err(|_| invalid("invalid response header name"))?;
        let start = h.value.as_ptr() as usize - base;
        fields.push((name, start..start + h.value.len()));
    }
    Ok(Some((len, status, version, fields)))
}

/// How the body is delimited, and whether that framing leaves the connection reusable. A
/// Content-Length beside chunked coding is dropped, so it is not forwarded as if it were true.
fn framing(headers: &mut HeaderMap, no_body: bool) -> io::Result<(Framing, bool)> {
    if no_body {
        return Ok((Framing::Done, true));
    }
    if let Some(last) = headers.get_all(TRANSFER_ENCODING).iter().next_back() {
        let chunked = last
            .as_bytes()
            .rsplit(|b| *b == b',')
            .next()
            .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        let had_length = headers.remove(CONTENT_LENGTH).is_some();
        return Ok(if chunked {
            (Framing::Chunked(Chunk::Size), !had_length)
        } else {
            (Framing::UntilClose, false)
        });
    }
    let mut length = None;
    for v in headers.get_all(CONTENT_LENGTH) {
        let n = std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| invalid("invalid upstream Content-Length"))?;
        if length.is_some_and(|l| l != n) {
            return Err(invalid("conflicting upstream Content-Length values"));
        }
        length = Some(n);
    }
    Ok(match length {
        Some(0) => (Framing::Done, true),
        Some(n) => (Framing::Length(n), true),
        None => (Framing::UntilClose, false),
    })
}

/// Whether a Connection value names nothing but this hop's own tokens.
fn only_hop_tokens(value: &[u8]) -> bool {
    tokens(value).all(|t| {
        t.is_empty() || t.eq_ignore_ascii_case(b"close") || t.eq_ignore_ascii_case(b"keep-alive")
    })
}

enum Framing {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

#[derive(Clone, Copy)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// A response body read from its connection; the connection comes back out of it
/// (`take_reusable`) once the body is complete.
pub struct Body {
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
}

impl Body {
    /// The connection, if the body is complete and the connection may take another request.
    pub fn take_reusable(&mut self) -> Option<Conn> {
        match self.framing {
            Framing::Done if self.keep_alive => self.conn.take(),
            _ => None,
        }
    }

    fn frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(None);
        };
        loop {
            match &mut self.framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(left) | Framing::Chunked(Chunk::Data(left)) => {
                    if conn.buf.is_empty() && ready!(conn.poll_fill(cx))? == 0 {
                        return Poll::Ready(Some(Err(cut_short())));
                    }
                    let n = (*left).min(conn.buf.len() as u64);
                    *left -= n;
                    if *left == 0 {
                        self.framing = match self.framing {
                            Framing::Length(_) => Framing::Done,
                            _ => Framing::Chunked(Chunk::DataEnd),
                        };
                    }
                    return Poll::Ready(Some(Ok(conn.buf.split_to(n as usize).freeze())));
                }
                Framing::UntilClose => {
                    if conn.buf.is_empty() && ready!(conn.poll_fill(cx))? == 0 {
                        self.framing = Framing::Done;
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(conn.buf.split().freeze())));
                }
                Framing::Chunked(state) => {
                    let next = match *state {
                        Chunk::Size => match httparse::parse_chunk_size(&conn.buf) {
                            Ok(httparse::Status::Complete((used, size))) => {
                                conn.buf.advance(used);
                                Some(if size == 0 {
                                    Chunk::Trailers
                                } else {
                                    Chunk::Data(size)
                                })
                            }
                            Ok(httparse::Status::Partial) => None,
                            Err(_) => return Poll::Ready(Some(Err(invalid("invalid chunk size")))),
                        },
                        Chunk::DataEnd if conn.buf.len() >= 2 => {
                            if &conn.buf[..2] != b"\r\n" {
                                return Poll::Ready(Some(Err(invalid("chunk not ended by CRLF"))));
                            }
                            conn.buf.advance(2);
                            Some(Chunk::Size)
                        }
                        Chunk::DataEnd => None,
                        Chunk::Trailers => match trailers_end(&conn.buf) {
                            Ok(Some(used)) => {
                                conn.buf.advance(used);
                                self.framing = Framing::Done;
                                return Poll::Ready(None);
                            }
                            Ok(None) => None,
                            Err(e) => return Poll::Ready(Some(Err(e))),
                        },
                        Chunk::Data(_) => unreachable!("handled above"),
                    };
                    match next {
                        Some(s) => *state = s,
                        None if conn.buf.len() >= MAX_HEAD => {
                            return Poll::Ready(Some(Err(invalid("chunk framing too long"))))
                        }
                        None => {
                            if ready!(conn.poll_fill(cx))? == 0 {
                                return Poll::Ready(Some(Err(cut_short())));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The length of the trailer section (possibly empty) that ends a chunked body.
fn trailers_end(buf: &[u8]) -> io::Result<Option<usize>> {
    if buf.starts_with(b"\r\n") {
        return Ok(Some(2));
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    match httparse::parse_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete((used, _))) => Ok(Some(used)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(invalid("invalid chunk trailers")),
    }
}

fn cut_short() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "upstream closed before the end of the body",
    )
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let polled = ready!(this.frame(cx));
        if let Some(Err(_)) = &polled {
            // A broken body leaves the connection in an unknown state.
            this.keep_alive = false;
            this.framing = Framing::Done;
        }
        Poll::Ready(polled.map(|r| r.map(Frame::data)))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Done => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> (usize, StatusCode, Version, Fields) {
        parse_head(text.as_bytes()).unwrap().unwrap()
    }

    fn framing_of(fields: &[(&str, &str)], no_body: bool) -> io::Result<(Framing, bool)> {
        let mut h = HeaderMap::new();
        for (k, v) in fields {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        framing(&mut h, no_body)
    }

    #[test]
    fn a_head_is_parsed_only_when_complete() {
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n")
            .unwrap()
            .is_none());
        let (len, status, version, fields) = head("HTTP/1.0 404 Nope\r\nX-A: b\r\n\r\nrest");
        assert_eq!(
            (len, status, version),
            (29, StatusCode::NOT_FOUND, Version::HTTP_10)
        );
        assert_eq!(fields[0].0, "x-a");
        assert_eq!(
            &"HTTP/1.0 404 Nope\r\nX-A: b\r\n\r\nrest"[fields[0].1.clone()],
            "b"
        );
        assert!(parse_head(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let f = |fields, nb| framing_of(fields, nb).map(|(f, t)| (std::mem::discriminant(&f), t));
        let d = std::mem::discriminant;
        assert_eq!(
            f(&[("content-length", "5")], true).unwrap(),
            (d(&Framing::Done), true)
        );
        assert_eq!(
            f(&[("content-length", "5")], false).unwrap(),
            (d(&Framing::Length(0)), true)
        );
        assert_eq!(
            f(&[("transfer-encoding", "gzip, chunked")], false).unwrap(),
            (d(&Framing::Chunked(Chunk::Size)), true)
        );
        // Chunked with a Content-Length: decoded, but the connection is not trusted again.
        assert_eq!(
            f(
                &[("transfer-encoding", "chunked"), ("content-length", "3")],
                false
            )
            .unwrap(),
            (d(&Framing::Chunked(Chunk::Size)), false)
        );
        assert_eq!(
            f(&[("transfer-encoding", "gzip")], false).unwrap(),
            (d(&Framing::UntilClose), false)
        );
        assert_eq!(f(&[], false).unwrap(), (d(&Framing::UntilClose), false));
        assert!(f(&[("content-length", "1"), ("content-length", "2")], false).is_err());
        assert!(f(&[("content-length", "-1")], false).is_err());
    }

    #[test]
    fn connection_values_naming_other_fields_are_kept_for_stripping() {
        assert!(only_hop_tokens(b"keep-alive"));
        assert!(only_hop_tokens(b"Close, keep-alive"));
        assert!(!only_hop_tokens(b"close, x-secret"));
        assert!(!only_hop_tokens(b"upgrade"));
    }

    #[test]
    fn trailers_end_after_an_empty_line() {
        assert_eq!(trailers_end(b"\r\nnext").unwrap(), Some(2));
        assert_eq!(trailers_end(b"x-sum: 1\r\n\r\n").unwrap(), Some(12));
        assert_eq!(trailers_end(b"x-sum: 1\r\n").unwrap(), None);
    }
}
