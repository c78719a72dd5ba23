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
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::request::Parts;
use http::{Method, Response, StatusCode, Version};
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::h1_head::{invalid, parse_head, RawHead};

/// Response header fields allowed (hyper's client allows 100).
const MAX_HEADERS: usize = 100;
/// The largest response head, or chunk-size line plus trailers, we buffer.
const MAX_HEAD: usize = 64 * 1024;
/// Free space made in the read buffer before each read of a head, and before a body's first.
const READ_CHUNK: usize = 8 * 1024;
/// The most a body read asks for. A read that fills its room doubles the next one up to this:
/// a large body then crosses in 64 KiB reads and writes, not 8 KiB ones (hyper's client grows
/// its reads the same way; nginx reads `proxy_buffer_size`, HAProxy its 16 KiB buffer).
const MAX_BODY_READ: usize = 64 * 1024;

/// An upstream connection and its buffers, reused across exchanges.
pub struct Conn {
    io: TcpStream,
    buf: BytesMut,
    head: Vec<u8>,
    /// The room the next body read asks for: [`READ_CHUNK`] to [`MAX_BODY_READ`].
    read_size: usize,
    /// A body's reads grew since the connection last went back to the pool.
    grew: bool,
}

/// What an exchange brought back: the response head as sent, and its body, which holds the
/// connection until it is read to its end.
pub struct Exchanged {
    pub status: StatusCode,
    pub version: Version,
    pub head: RawHead,
    pub body: Body,
}

impl Exchanged {
    /// As a `Response` with its header map, for hyper's side.
    pub fn into_response(self) -> io::Result<Response<Body>> {
        let mut resp = Response::new(self.body);
        *resp.status_mut() = self.status;
        *resp.version_mut() = self.version;
        *resp.headers_mut() = self.head.into_map()?;
        Ok(resp)
    }
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
            read_size: READ_CHUNK,
            grew: false,
        }
    }

    /// Whether an idle connection can take a request: nothing arrived on it and the upstream did
    /// not close it. Costs a syscall only when the socket was marked readable while it idled
    /// (closed, or readiness left from the last read): `try_read` looks at the readiness the
    /// runtime keeps first, and registers no waker.
    pub fn is_open_and_quiet(&mut self) -> bool {
        self.buf.is_empty()
            && matches!(
                self.io.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            )
    }

    /// Send a request head (the request has no body) and read the response head.
    pub async fn exchange(mut self, req: Outgoing<'_>) -> Result<Exchanged, Failed> {
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
            let parsed = loop {
                if !self.buf.is_empty() {
                    received = true;
                    match parse_head(&self.buf).map_err(fatal)? {
                        Some(parsed) => break parsed,
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
            let (status, version) = (parsed.status, parsed.version);
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(fatal(invalid("101 to a request that asked for no upgrade")));
            }
            if status.is_informational() {
                // 100 Continue, 103 Early Hints: not forwarded (as with hyper's client).
                self.buf.advance(parsed.len);
                continue;
            }
            let len = parsed.len;
            let head = parsed.into_head(self.buf.split_to(len).freeze());
            let no_body = *method == Method::HEAD
                || status == StatusCode::NO_CONTENT
                || status == StatusCode::NOT_MODIFIED;
            let (framing, trusted) = head.framing(no_body).map_err(fatal)?;
            let keep_alive = trusted && version == Version::HTTP_11 && !head.closes();
            return Ok(Exchanged {
                status,
                version,
                head,
                body: Body {
                    conn: Some(self),
                    framing,
                    keep_alive,
                },
            });
        }
    }

    /// Read more of a body into the buffer; `Ok(0)` at the upstream's end of stream. A read
    /// that fills its room makes the next one twice as large, up to [`MAX_BODY_READ`], and one
    /// under half of it halves it, as hyper's reads do: a slow stream (events, a throttled
    /// download) that once came fast goes back to small reads and small buffers.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let spare = self.buf.capacity() - self.buf.len();
        if self.buf.is_empty() && (spare < self.read_size || spare > 2 * self.read_size) {
            // Exactly the room asked (`reserve` may double past it), and no large block kept
            // alive by its tail once the reads have shrunk.
            self.buf = BytesMut::with_capacity(self.read_size);
        } else if spare < self.read_size {
            self.buf.reserve(self.read_size);
        }
        // The read is bounded to `read_size` whatever room there is.
        let mut room = (&mut self.buf).limit(self.read_size);
        let fut = self.io.read_buf(&mut room);
        let n = ready!(std::pin::pin!(fut).poll(cx))?;
        if n == self.read_size && self.read_size < MAX_BODY_READ {
            self.read_size *= 2;
            self.grew = true;
        } else if n < self.read_size / 2 && self.read_size > READ_CHUNK {
            self.read_size /= 2;
        }
        Poll::Ready(Ok(n))
    }

    /// Back to small reads, and the buffer given back if a body's reads grew it or it is
    /// larger than a read (a long head): an idle pooled connection keeps at most
    /// [`READ_CHUNK`] of buffer. One that only ever read small answers keeps its own.
    fn settle(&mut self) {
        if self.buf.is_empty() && (self.grew || self.buf.capacity() > READ_CHUNK) {
            self.buf = BytesMut::new();
        }
        (self.read_size, self.grew) = (READ_CHUNK, false);
    }
}

fn fatal(error: io::Error) -> Failed {
    Failed {
        error,
        retry: false,
    }
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

/// How a response body is delimited on the upstream connection.
pub(super) enum Framing {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

#[derive(Clone, Copy)]
pub(super) enum Chunk {
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
    /// Copy the whole body onto `out` when it has a length of at most `max` bytes and has all
    /// been read already, as a small answer has: no frame is made. `false`: it is left as it
    /// was, to be read frame by frame.
    pub fn copy_whole(&mut self, out: &mut Vec<u8>, max: u64) -> bool {
        let (Framing::Length(n), Some(conn)) = (&self.framing, self.conn.as_mut()) else {
            return false;
        };
        if *n > max || (conn.buf.len() as u64) < *n {
            return false;
        }
        // Under `max`, which fits in usize.
        let n = *n as usize;
        out.extend_from_slice(&conn.buf[..n]);
        conn.buf.advance(n);
        self.framing = Framing::Done;
        true
    }

    /// The connection, if the body is complete and the connection may take another request.
    pub fn take_reusable(&mut self) -> Option<Conn> {
        match self.framing {
            Framing::Done if self.keep_alive => self.conn.take().map(|mut conn| {
                conn.settle();
                conn
            }),
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

    /// A body read whole is copied out and what follows it stays for the next answer; one not
    /// read whole, or past the size asked, is left as it was.
    #[tokio::test]
    async fn a_body_read_whole_is_copied_and_the_rest_stays() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let io = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let mut conn = Conn::new(io);
        conn.buf.extend_from_slice(b"helloHTTP/1.1 200 OK");
        let mut body = Body {
            conn: Some(conn),
            framing: Framing::Length(5),
            keep_alive: true,
        };
        let mut out = b"head".to_vec();
        assert!(!body.copy_whole(&mut out, 4), "past the size asked");
        assert_eq!(out, b"head");
        assert!(body.copy_whole(&mut out, 5));
        assert_eq!(out, b"headhello");
        assert!(matches!(body.framing, Framing::Done));
        let conn = body.take_reusable().expect("complete and kept alive");
        assert_eq!(&conn.buf[..], b"HTTP/1.1 200 OK");
        let mut unread = Body {
            conn: Some(conn),
            framing: Framing::Length(100),
            keep_alive: true,
        };
        assert!(!unread.copy_whole(&mut out, 1 << 20), "not all read yet");
        assert!(matches!(unread.framing, Framing::Length(100)));
        assert_eq!(out, b"headhello");
    }

    /// A connected pair on 127.0.0.1: the lean client's side, and the upstream's.
    async fn socket_pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        (client, listener.accept().await.unwrap().0)
    }

    /// A body of `len` bytes framed by Content-Length, read from `io`.
    fn length_body(io: TcpStream, len: usize) -> Body {
        Body {
            conn: Some(Conn::new(io)),
            framing: Framing::Length(len as u64),
            keep_alive: true,
        }
    }

    /// A large body's reads grow until a frame is [`MAX_BODY_READ`] bytes, every byte arrives
    /// in order, and the connection goes back to the pool with small reads and a small buffer.
    #[tokio::test]
    async fn a_large_body_is_read_in_growing_reads_and_the_connection_settles() {
        use http_body_util::BodyExt;
        use tokio::io::AsyncWriteExt;

        const LEN: usize = 4 << 20;
        let (io, mut upstream) = socket_pair().await;
        let sent: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        let writer = tokio::spawn({
            let sent = sent.clone();
            async move { upstream.write_all(&sent).await.map(|()| upstream) }
        });
        let mut body = length_body(io, LEN);
        let (mut got, mut largest) = (Vec::with_capacity(LEN), 0);
        while let Some(frame) = BodyExt::frame(&mut body).await {
            let data = frame.unwrap().into_data().unwrap();
            largest = largest.max(data.len());
            got.extend_from_slice(&data);
        }
        let _upstream = writer.await.unwrap().unwrap();
        assert!(got == sent, "the body arrives whole and in order");
        assert_eq!(largest, MAX_BODY_READ, "reads grow to the largest");
        let conn = body.take_reusable().expect("complete and kept alive");
        assert_eq!((conn.read_size, conn.buf.capacity()), (READ_CHUNK, 0));
    }

    /// Reads that came fast and then slow shrink back: a stream that trickles after a burst
    /// is read in small reads again before its end, with no large buffer kept.
    #[tokio::test]
    async fn reads_shrink_when_a_body_slows_down() {
        use http_body_util::BodyExt;
        use tokio::io::AsyncWriteExt;

        const BURST: usize = 1 << 20;
        const TRICKLE: usize = 8;
        let (io, mut upstream) = socket_pair().await;
        let writer = tokio::spawn(async move {
            upstream.write_all(&vec![7u8; BURST]).await?;
            for _ in 0..TRICKLE {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                upstream.write_all(&[9u8; 100]).await?;
            }
            io::Result::Ok(upstream)
        });
        let mut body = length_body(io, BURST + TRICKLE * 100);
        let (mut total, mut largest) = (0, 0);
        while let Some(frame) = BodyExt::frame(&mut body).await {
            let data = frame.unwrap().into_data().unwrap();
            largest = largest.max(data.len());
            total += data.len();
        }
        let _upstream = writer.await.unwrap().unwrap();
        assert_eq!(total, BURST + TRICKLE * 100);
        assert_eq!(largest, MAX_BODY_READ, "the burst grew the reads");
        let conn = body.conn.as_ref().unwrap();
        assert_eq!(conn.read_size, READ_CHUNK, "shrunk by the small reads");
        // No 64 KiB block kept alive by its tail while the body trickles.
        assert!(
            conn.buf.capacity() <= 2 * READ_CHUNK,
            "{}",
            conn.buf.capacity()
        );
        let conn = body.take_reusable().expect("complete and kept alive");
        assert_eq!((conn.read_size, conn.buf.capacity()), (READ_CHUNK, 0));
    }

    #[test]
    fn trailers_end_after_an_empty_line() {
        assert_eq!(trailers_end(b"\r\nnext").unwrap(), Some(2));
        assert_eq!(trailers_end(b"x-sum: 1\r\n\r\n").unwrap(), Some(12));
        assert_eq!(trailers_end(b"x-sum: 1\r\n").unwrap(), None);
    }
}
