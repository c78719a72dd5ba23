//! Writing a response on the lean HTTP/1.1 server path (`h1_server.rs`): the head, framed as
//! hyper frames it, and the body with its first piece in the same write.
//!
//! Framing: no body and no length after 1xx, 204 and 304; a HEAD answer keeps its length but
//! sends no body; otherwise `Content-Length` when the body's size is known (or the upstream's
//! header gave it), else chunked. `Date` is added when missing, from a per-thread cache renewed
//! once a second. The status line always says HTTP/1.1: the version is hop-by-hop.

use std::cell::RefCell;
use std::io;
use std::pin::pin;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::h1_head::{Kind, RawHead};
use super::headers::has_token;
use super::lines::Lines;
use super::pool::Relayed;
use super::rate_headers::RateHeaders;
use super::respond::{ProxyBody, Rejection};

/// The largest 429 body copied into the write buffer behind its head (the default is about 70
/// bytes); a larger one is written beside it.
const INLINE_BODY: usize = 512;

/// The largest relayed body copied behind its head when it has all been read already.
const WHOLE_BODY: u64 = 16 * 1024;

/// How a body goes on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Framing {
    /// Nothing after the head.
    None,
    Length(u64),
    Chunked,
}

/// Write `resp` to the client; `head_only` for an answer to HEAD, `close` to end the connection
/// after it. `Ok(true)`: the connection may take another request. The answer's header map is
/// left in `spare`, cleared, for the next request.
pub async fn write_response<I>(
    io: &mut I,
    wbuf: &mut Vec<u8>,
    resp: Response<ProxyBody>,
    head_only: bool,
    close: bool,
    spare: &mut http::HeaderMap,
) -> io::Result<bool>
where
    I: AsyncWrite + Unpin,
{
    let (parts, body) = resp.into_parts();
    let known = known_length(&body);
    let mut close = close;
    let framing = encode_head(
        wbuf,
        parts.status,
        &parts.headers,
        known,
        head_only,
        &mut close,
    );
    *spare = parts.headers;
    spare.clear();
    write_body(io, wbuf, body, framing, close).await
}

/// Write an upstream's answer as the lean client read it: its fields copied from its head's
/// bytes (those that cross, see `h1_head.rs`) and `extra`'s after them, replacing the
/// upstream's own of the same names, as [`write_response`] writes the same answer made a
/// `Response` (a test compares the two heads).
pub async fn write_relayed<I>(
    io: &mut I,
    wbuf: &mut Vec<u8>,
    relayed: Box<Relayed>,
    extra: &RateHeaders,
    head_only: bool,
    close: bool,
) -> io::Result<bool>
where
    I: AsyncWrite + Unpin,
{
    let Relayed {
        status,
        head,
        mut body,
        ..
    } = *relayed;
    let known = known_length(&body);
    let framing = encode_relayed_head(wbuf, status, &head, extra, known, head_only, close);
    if let Framing::Length(_) = framing {
        // A small answer read whole: its body goes behind the head in the one write, with no
        // frame made and no buffer split off.
        if body.copy_whole(wbuf, WHOLE_BODY) {
            io.write_all(wbuf).await?;
            io.flush().await?;
            return Ok(!close);
        }
    }
    write_body(io, wbuf, body, framing, close).await
}

/// A body's length when it is known before it is read.
fn known_length(body: &impl Body) -> Option<u64> {
    if body.is_end_stream() {
        Some(0)
    } else {
        body.size_hint().exact()
    }
}

/// The head in `wbuf` (written first, with the first piece of the body), then the body framed
/// as `framing` says. `Ok(true)`: the connection may take another request.
async fn write_body<I, B>(
    io: &mut I,
    wbuf: &[u8],
    body: B,
    framing: Framing,
    close: bool,
) -> io::Result<bool>
where
    I: AsyncWrite + Unpin,
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = pin!(body);
    let mut sent = 0u64;
    let mut first = true;
    let mut overflow = false;
    if framing != Framing::None {
        while !body.is_end_stream() {
            let frame = match body.frame().await {
                None => break,
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Err(io::Error::other(e)),
            };
            let Ok(mut data) = frame.into_data() else {
                continue; // trailers are not forwarded
            };
            if let Framing::Length(n) = framing {
                // Never more than the length said: the rest would be read as the next answer.
                let room = n.saturating_sub(sent).min(data.len() as u64) as usize;
                overflow |= room < data.len();
                data.truncate(room);
            }
            if data.is_empty() {
                if overflow {
                    break;
                }
                continue;
            }
            sent += data.len() as u64;
            let head = if first { wbuf } else { &[][..] };
            first = false;
            write_piece(io, head, data, framing).await?;
        }
    }
    match framing {
        Framing::Chunked => {
            let head = if first { wbuf } else { &[][..] };
            io.write_all_buf(&mut head.chain(&b"0\r\n\r\n"[..])).await?;
        }
        _ if first => io.write_all(wbuf).await?,
        _ => {}
    }
    // A no-op on TCP; TLS holds records it could not write until flushed (hyper flushes too).
    io.flush().await?;
    Ok(!close
        && match framing {
            // A body shorter or longer than its length leaves the client unable to frame the next.
            Framing::Length(n) => sent == n && !overflow,
            _ => true,
        })
}

/// One body piece, after `head` when it is the first: one vectored write for all of it.
async fn write_piece<I>(io: &mut I, head: &[u8], data: Bytes, framing: Framing) -> io::Result<()>
where
    I: AsyncWrite + Unpin,
{
    if framing == Framing::Chunked {
        let mut size = [0u8; 18];
        let line = chunk_line(data.len(), &mut size);
        let mut all = head.chain(line).chain(data).chain(&b"\r\n"[..]);
        io.write_all_buf(&mut all).await
    } else {
        io.write_all_buf(&mut head.chain(data)).await
    }
}

/// `{len:X}\r\n` in `out`.
fn chunk_line(len: usize, out: &mut [u8; 18]) -> &[u8] {
    let mut at = 16;
    let mut n = len;
    loop {
        at -= 1;
        out[at] = b"0123456789ABCDEF"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out[16..18].copy_from_slice(b"\r\n");
    &out[at..]
}

/// The status line and header fields in `wbuf` (cleared first), and the body's framing.
/// `close` comes in as whether the connection closes after this answer, and goes out true as
/// well when the answer's own `Connection` field says close (a configured direct response).
fn encode_head(
    wbuf: &mut Vec<u8>,
    status: StatusCode,
    headers: &http::HeaderMap,
    known: Option<u64>,
    head_only: bool,
    close: &mut bool,
) -> Framing {
    wbuf.clear();
    let found = encode_fields(wbuf, status, headers, close);
    encode_framing(wbuf, status, found, known, head_only, *close)
}

/// What the header fields said that the rest of the head depends on.
#[derive(Default)]
struct Found<'a> {
    /// The first `Content-Length`, kept as stated.
    stated: Option<&'a [u8]>,
    wrote_date: bool,
}

fn status_line(wbuf: &mut Vec<u8>, status: StatusCode) {
    wbuf.extend_from_slice(b"HTTP/1.1 ");
    wbuf.extend_from_slice(status.as_str().as_bytes());
    wbuf.push(b' ');
    wbuf.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    wbuf.extend_from_slice(b"\r\n");
}

/// The head of a relayed answer in `wbuf` (cleared first), and its body's framing: the
/// upstream's crossing fields as sent but a `Content-Length` (the framing's, below) and those
/// `extra` replaces, then `extra`'s.
fn encode_relayed_head(
    wbuf: &mut Vec<u8>,
    status: StatusCode,
    head: &RawHead,
    extra: &RateHeaders,
    known: Option<u64>,
    head_only: bool,
    close: bool,
) -> Framing {
    wbuf.clear();
    status_line(wbuf, status);
    let mut found = Found::default();
    let mut lines = Lines::new(head.bytes());
    for line in head.crossing() {
        match line.kind {
            Kind::ContentLength => {
                found.stated = found.stated.or(Some(line.value));
                continue;
            }
            Kind::Date => found.wrote_date = true,
            _ => {}
        }
        if !extra.replaces(line.name) {
            lines.push(wbuf, line.span);
        }
    }
    lines.flush(wbuf);
    wbuf.extend_from_slice(extra.wire());
    encode_framing(wbuf, status, found, known, head_only, close)
}

/// The status line and the header fields but those this side decides (`Content-Length`,
/// `Transfer-Encoding`, `Connection`), appended to `wbuf`.
fn encode_fields<'a>(
    wbuf: &mut Vec<u8>,
    status: StatusCode,
    headers: &'a http::HeaderMap,
    close: &mut bool,
) -> Found<'a> {
    status_line(wbuf, status);
    let mut found = Found::default();
    for (name, value) in headers {
        match *name {
            CONTENT_LENGTH => {
                found.stated = found.stated.or(Some(value.as_bytes()));
                continue;
            }
            // Ours decides; a close is added below when wanted.
            TRANSFER_ENCODING => continue,
            CONNECTION => {
                *close |= has_token(value.as_bytes(), b"close");
                continue;
            }
            DATE => found.wrote_date = true,
            _ => {}
        }
        field(wbuf, name.as_str().as_bytes(), value.as_bytes());
    }
    found
}

/// The framing field, `Connection: close` when closing, `Date` when missing and the blank
/// line, appended to `wbuf`.
fn encode_framing(
    wbuf: &mut Vec<u8>,
    status: StatusCode,
    found: Found,
    known: Option<u64>,
    head_only: bool,
    close: bool,
) -> Framing {
    let no_body = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let stated = found.stated;
    let stated_len = stated.and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok());
    let framing = if no_body {
        Framing::None
    } else if head_only {
        // The length a GET would have, and no body.
        match (stated, known) {
            (Some(v), _) => field(wbuf, b"content-length", v),
            (None, Some(n)) if n > 0 => length(wbuf, n),
            _ => {}
        }
        Framing::None
    } else {
        match known.or(stated_len) {
            Some(n) => {
                length(wbuf, n);
                if n == 0 {
                    Framing::None
                } else {
                    Framing::Length(n)
                }
            }
            None => {
                field(wbuf, b"transfer-encoding", b"chunked");
                Framing::Chunked
            }
        }
    };
    if close {
        field(wbuf, b"connection", b"close");
    }
    if !found.wrote_date {
        DATE_CACHE.with_borrow_mut(|d| field(wbuf, b"date", d.now()));
    }
    wbuf.extend_from_slice(b"\r\n");
    framing
}

/// The status line and header fields of an answer made ahead (a [`Rejection`]), for
/// [`write_rejection`]. Its fields must leave the framing and the date to the writer.
pub(super) fn encoded_fields(status: StatusCode, headers: &http::HeaderMap) -> Bytes {
    let mut out = Vec::with_capacity(256);
    let mut close = false;
    let found = encode_fields(&mut out, status, headers, &mut close);
    debug_assert!(found.stated.is_none() && !found.wrote_date && !close);
    Bytes::from(out)
}

/// Write a 429 from its encoded fields: the bytes [`write_response`] writes for
/// `rejection.response()` (a test compares them), without copying and walking a header map.
/// `Ok(true)`: the connection may take another request.
pub async fn write_rejection<I>(
    io: &mut I,
    wbuf: &mut Vec<u8>,
    rejection: &Rejection,
    head_only: bool,
    close: bool,
) -> io::Result<bool>
where
    I: AsyncWrite + Unpin,
{
    let body = rejection.body();
    wbuf.clear();
    wbuf.extend_from_slice(rejection.wire_fields());
    let known = Some(body.len() as u64);
    // Nothing found: a 429's fields leave length, connection and date to us (`encoded_fields`).
    let framing = encode_framing(
        wbuf,
        Rejection::STATUS,
        Found::default(),
        known,
        head_only,
        close,
    );
    let body = if framing == Framing::None {
        &[][..]
    } else {
        &body[..]
    };
    if body.len() <= INLINE_BODY {
        // Copied after the head: one plain write, 150 instructions cheaper than a vectored one.
        wbuf.extend_from_slice(body);
        io.write_all(wbuf).await?;
    } else {
        // Beside the head, not in `wbuf`, which would keep a large body's size for good.
        io.write_all_buf(&mut wbuf.as_slice().chain(body)).await?;
    }
    io.flush().await?;
    Ok(!close)
}

fn field(wbuf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    wbuf.extend_from_slice(name);
    wbuf.extend_from_slice(b": ");
    wbuf.extend_from_slice(value);
    wbuf.extend_from_slice(b"\r\n");
}

fn length(wbuf: &mut Vec<u8>, n: u64) {
    field(
        wbuf,
        b"content-length",
        itoa::Buffer::new().format(n).as_bytes(),
    );
}

/// The `Date` value of the current second.
struct DateCache {
    second: u64,
    value: String,
}

impl DateCache {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second || self.value.is_empty() {
            self.second = second;
            self.value = httpdate::fmt_http_date(now);
        }
        self.value.as_bytes()
    }
}

thread_local! {
    static DATE_CACHE: RefCell<DateCache> = const {
        RefCell::new(DateCache { second: 0, value: String::new() })
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn head(
        status: u16,
        headers: &[(&str, &str)],
        known: Option<u64>,
        head_only: bool,
    ) -> (String, Framing) {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let mut out = Vec::new();
        let status = StatusCode::from_u16(status).unwrap();
        let f = encode_head(&mut out, status, &map, known, head_only, &mut false);
        (String::from_utf8(out).unwrap(), f)
    }

    #[test]
    fn lengths_and_chunks_are_framed_as_hyper_frames_them() {
        let (h, f) = head(200, &[("x", "1")], Some(5), false);
        assert!(h.starts_with("HTTP/1.1 200 OK\r\nx: 1\r\ncontent-length: 5\r\ndate: "));
        assert_eq!(f, Framing::Length(5));
        let (h, f) = head(200, &[("content-length", "7")], None, false);
        assert!(h.contains("content-length: 7\r\n"), "{h}");
        assert_eq!(f, Framing::Length(7));
        let (h, f) = head(200, &[], None, false);
        assert!(h.contains("transfer-encoding: chunked\r\n"), "{h}");
        assert_eq!(f, Framing::Chunked);
        let (h, f) = head(429, &[], Some(0), false);
        assert!(h.contains("content-length: 0\r\n"), "{h}");
        assert_eq!(f, Framing::None);
    }

    #[test]
    fn an_answer_that_says_close_closes() {
        let map: http::HeaderMap = [(CONNECTION, HeaderValue::from_static("Close"))]
            .into_iter()
            .collect();
        let (mut out, mut close) = (Vec::new(), false);
        encode_head(&mut out, StatusCode::OK, &map, Some(0), false, &mut close);
        let h = String::from_utf8(out).unwrap();
        assert!(close);
        assert_eq!(h.matches("connection: close\r\n").count(), 1, "{h}");
        assert!(!h.contains("Close"), "{h}");
    }

    #[test]
    fn head_204_and_304_answers_carry_no_body() {
        let (h, f) = head(200, &[("content-length", "42")], Some(0), true);
        assert!(h.contains("content-length: 42\r\n"), "{h}");
        assert_eq!(f, Framing::None);
        let (h, f) = head(429, &[], Some(12), true);
        assert!(h.contains("content-length: 12\r\n"), "{h}");
        assert_eq!(f, Framing::None);
        for status in [204, 304] {
            let (h, f) = head(status, &[("content-length", "9")], None, false);
            assert!(!h.contains("content-length"), "{h}");
            assert!(!h.contains("transfer-encoding"), "{h}");
            assert_eq!(f, Framing::None);
        }
    }

    #[test]
    fn a_date_is_added_once_and_hop_fields_are_ours() {
        let (h, _) = head(
            200,
            &[
                ("date", "Tue, 01 Jan 2030 00:00:00 GMT"),
                ("connection", "x"),
                ("transfer-encoding", "gzip"),
            ],
            Some(1),
            false,
        );
        assert_eq!(h.matches("date: ").count(), 1, "{h}");
        assert!(!h.contains("connection"), "{h}");
        assert!(!h.contains("gzip"), "{h}");
    }

    /// A head's fields as (lowercase name, value) pairs grouped by name, the Date's value left
    /// out (it may be a second apart).
    fn fields_of(head: &[u8]) -> (String, Vec<(String, Vec<String>)>) {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut slots);
        assert!(resp.parse(head).unwrap().is_complete());
        let line = format!("{:?} {:?}", resp.code, resp.reason);
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for h in resp.headers.iter() {
            let name = h.name.to_ascii_lowercase();
            let value = match name.as_str() {
                "date" => String::new(),
                _ => String::from_utf8_lossy(h.value).into_owned(),
            };
            match out.iter_mut().find(|(n, _)| *n == name) {
                Some((_, vs)) => vs.push(value),
                None => out.push((name, vec![value])),
            }
        }
        out.sort();
        (line, out)
    }

    #[test]
    fn a_relayed_head_is_the_one_its_response_would_write() {
        use super::super::h1_head::tests::fields;
        let heads: &[&[(&str, &str)]] = &[
            &[("Content-Type", "text/plain"), ("Content-Length", "2")],
            &[
                ("content-length", "2"),
                ("Date", "Tue, 01 Jan 2030 00:00:00 GMT"),
            ],
            &[
                ("Connection", "close, X-Secret"),
                ("X-Secret", "1"),
                ("Keep-Alive", "timeout=5"),
                ("Transfer-Encoding", "chunked"),
                ("Content-Length", "9"),
                ("Set-Cookie", "a=1"),
                ("set-cookie", "b=2"),
                ("RateLimit", "\"upstream's\";r=1;t=1"),
            ],
            &[],
        ];
        let wire = "ratelimit: \"per-key\";r=9;t=1\r\n";
        let extra = RateHeaders::from_wire(wire);
        for pairs in heads {
            for (status, known, head_only, close) in [
                (200, Some(2), false, false),
                (200, None, false, true),
                (200, Some(0), true, false),
                (204, None, false, false),
                (404, Some(9), false, false),
            ] {
                let status = StatusCode::from_u16(status).unwrap();
                let raw = fields(pairs);
                let (mut ours, mut theirs) = (Vec::new(), Vec::new());
                let a =
                    encode_relayed_head(&mut ours, status, &raw, &extra, known, head_only, close);
                let mut map = fields(pairs).into_map().unwrap();
                RateHeaders::from_wire(wire).apply(&mut map);
                let mut closing = close;
                let b = encode_head(&mut theirs, status, &map, known, head_only, &mut closing);
                assert_eq!(a, b, "{pairs:?}");
                assert_eq!(
                    fields_of(&ours),
                    fields_of(&theirs),
                    "\nours:   {}\ntheirs: {}",
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&theirs)
                );
            }
        }
    }

    #[test]
    fn chunk_size_lines_are_hex() {
        let mut b = [0u8; 18];
        assert_eq!(chunk_line(0, &mut b), b"0\r\n");
        assert_eq!(chunk_line(255, &mut b), b"FF\r\n");
        assert_eq!(chunk_line(0x1_0000, &mut b), b"10000\r\n");
    }
}
