//! An upstream response head as the lean client reads it (`h1.rs`): its bytes, where each field
//! lies in them, and what they say of the body's framing and of the connection.
//!
//! The lean server relays the fields from these bytes (`h1_encode::write_relayed`): no header map
//! is built for an answer that goes back the way its request came. Hyper's side, and a request
//! the lean server did not write itself, get the map ([`RawHead::into_map`]).
//!
//! Either way the same fields cross: every field but the hop-by-hop ones (RFC 9110 §7.6.1), those
//! the Connection field names, and a Content-Length beside a Transfer-Encoding.

use std::io;
use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{HeaderMap, StatusCode, Version};
use smallvec::SmallVec;

use super::h1::{Chunk, Framing};
use super::headers::{connection_named, has_token, is_hop_name};
use super::lines::span_of;

/// Response header fields allowed (hyper's client allows 100).
const MAX_HEADERS: usize = 100;

/// A response head's bytes, with where each field lies in them and what they said.
pub struct RawHead {
    bytes: Bytes,
    fields: SmallVec<[RawField; 12]>,
    seen: Seen,
}

/// What a head's fields said, found once as they were parsed.
#[derive(Clone, Copy, Default)]
struct Seen {
    /// A Transfer-Encoding came: a Content-Length beside it does not cross (RFC 9112 §6.3).
    drop_length: bool,
    /// A Connection field said close.
    closes: bool,
    /// A Connection field named other fields, which are hop-by-hop too.
    names_fields: bool,
}

/// Where a field's name and value lie in the head (which is at most `u16::MAX` bytes), and
/// what kind of field it is.
#[derive(Clone, Copy)]
struct RawField {
    name: u16,
    name_end: u16,
    value: u16,
    value_end: u16,
    kind: Kind,
}

/// The fields this side reads or drops, by name (any case).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Other,
    ContentLength,
    TransferEncoding,
    Connection,
    Date,
    /// Any other hop-by-hop field.
    Hop,
}

/// A length test first rejects almost every name without comparing its bytes.
fn kind(name: &[u8]) -> Kind {
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    match name.len() {
        4 if is(b"date") => Kind::Date,
        10 if is(b"connection") => Kind::Connection,
        14 if is(b"content-length") => Kind::ContentLength,
        17 if is(b"transfer-encoding") => Kind::TransferEncoding,
        _ if is_hop_name(name) => Kind::Hop,
        _ => Kind::Other,
    }
}

/// A complete response head at the start of a buffer.
pub struct Parsed {
    pub len: usize,
    pub status: StatusCode,
    pub version: Version,
    fields: SmallVec<[RawField; 12]>,
    seen: Seen,
}

/// Parse the response head at the start of `buf`. `None`: not complete yet.
pub fn parse_head(buf: &[u8]) -> io::Result<Option<Parsed>> {
    // Uninitialised slots: 100 empty headers would be 3.2 KB written before every parse.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut resp, buf, &mut slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("invalid upstream response head: {e}"),
            ))
        }
    };
    if len > usize::from(u16::MAX) {
        return Err(invalid("upstream response head too large"));
    }
    let status = resp
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| invalid("invalid upstream status"))?;
    let version = match resp.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let mut seen = Seen::default();
    let mut fields = SmallVec::new();
    for h in resp.headers.iter() {
        let (name, value) = (span_of(buf, h.name.as_bytes()), span_of(buf, h.value));
        let kind = kind(h.name.as_bytes());
        match kind {
            Kind::TransferEncoding => seen.drop_length = true,
            Kind::Connection => {
                seen.closes |= has_token(h.value, b"close");
                seen.names_fields |=
                    !connection_named([(h.name.as_bytes(), h.value)].into_iter()).is_empty();
            }
            _ => {}
        }
        // Within the head: under `u16::MAX`, checked above.
        fields.push(RawField {
            name: name.start as u16,
            name_end: name.end as u16,
            value: value.start as u16,
            value_end: value.end as u16,
            kind,
        });
    }
    Ok(Some(Parsed {
        len,
        status,
        version,
        fields,
        seen,
    }))
}

impl Parsed {
    /// The head, with `bytes` the head's own (the first `len` bytes the parse read).
    pub fn into_head(self, bytes: Bytes) -> RawHead {
        RawHead {
            bytes,
            fields: self.fields,
            seen: self.seen,
        }
    }
}

/// A field of a head: its name and value, its kind, and its line (name to value) in the head.
pub struct Line<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
    pub kind: Kind,
    pub span: Range<usize>,
}

impl RawHead {
    /// The head's bytes, which every [`Line::span`] is in.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Every field as sent.
    fn lines(&self) -> impl Iterator<Item = Line<'_>> + Clone {
        self.fields.iter().map(|f| Line {
            name: &self.bytes[usize::from(f.name)..usize::from(f.name_end)],
            value: &self.bytes[usize::from(f.value)..usize::from(f.value_end)],
            kind: f.kind,
            span: usize::from(f.name)..usize::from(f.value_end),
        })
    }

    fn named(&self, kind: Kind) -> impl Iterator<Item = &[u8]> + '_ {
        self.lines()
            .filter(move |l| l.kind == kind)
            .map(|l| l.value)
    }

    /// The fields that cross to the client, in the order sent.
    pub fn crossing(&self) -> impl Iterator<Item = Line<'_>> {
        let named = match self.seen.names_fields {
            true => connection_named(self.lines().map(|l| (l.name, l.value))),
            false => SmallVec::new(),
        };
        let drop_length = self.seen.drop_length;
        self.lines().filter(move |l| match l.kind {
            Kind::Other | Kind::Date => !named.iter().any(|c| c.eq_ignore_ascii_case(l.name)),
            Kind::ContentLength => !drop_length,
            Kind::TransferEncoding | Kind::Connection | Kind::Hop => false,
        })
    }

    /// Whether the upstream closes the connection after this answer.
    pub fn closes(&self) -> bool {
        self.seen.closes
    }

    /// How the body is delimited, and whether that framing leaves the connection reusable. A
    /// Content-Length beside chunked coding does not cross, so it is never forwarded as true.
    pub(super) fn framing(&self, no_body: bool) -> io::Result<(Framing, bool)> {
        if no_body {
            return Ok((Framing::Done, true));
        }
        if let Some(last) = self.named(Kind::TransferEncoding).last() {
            let chunked = last
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            let had_length = self.named(Kind::ContentLength).next().is_some();
            return Ok(if chunked {
                (Framing::Chunked(Chunk::Size), !had_length)
            } else {
                (Framing::UntilClose, false)
            });
        }
        let mut length = None;
        for v in self.named(Kind::ContentLength) {
            let n = std::str::from_utf8(v)
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

    /// The crossing fields as a header map, with room for the RateLimit fields set on it
    /// later. httparse takes the same bytes in names and values as `http`; if `http` ever
    /// refused one, the answer is an error (a 502), never a response without the field.
    pub fn into_map(self) -> io::Result<HeaderMap> {
        let mut map = HeaderMap::with_capacity(self.fields.len() + 4);
        for line in self.crossing() {
            let name = super::names::header_name(line.name)
                .map_err(|_| invalid("invalid response header name"))?;
            let value = self.bytes.slice(span_of(&self.bytes, line.value));
            let value = HeaderValue::from_maybe_shared(value)
                .map_err(|_| invalid("invalid response header value"))?;
            map.append(name, value);
        }
        Ok(map)
    }
}

pub fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
pub(super) mod tests {
    use http::header::HeaderName;

    use super::super::headers::strip_hop_by_hop;
    use super::*;

    fn head(text: &str) -> (Parsed, RawHead) {
        let parsed = parse_head(text.as_bytes()).unwrap().unwrap();
        let again = parse_head(text.as_bytes()).unwrap().unwrap();
        let bytes = Bytes::copy_from_slice(&text.as_bytes()[..parsed.len]);
        (again, parsed.into_head(bytes))
    }

    pub(in crate::proxy) fn fields(pairs: &[(&str, &str)]) -> RawHead {
        let mut text = String::from("HTTP/1.1 200 OK\r\n");
        for (n, v) in pairs {
            text.push_str(&format!("{n}: {v}\r\n"));
        }
        text.push_str("\r\n");
        head(&text).1
    }

    #[test]
    fn a_head_is_parsed_only_when_complete() {
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n")
            .unwrap()
            .is_none());
        let (parsed, raw) = head("HTTP/1.0 404 Nope\r\nX-A: b\r\n\r\nrest");
        assert_eq!(
            (parsed.len, parsed.status, parsed.version),
            (29, StatusCode::NOT_FOUND, Version::HTTP_10)
        );
        let pairs: Vec<_> = raw.lines().map(|l| (l.name, l.value, l.kind)).collect();
        assert_eq!(pairs, [(&b"X-A"[..], &b"b"[..], Kind::Other)]);
        assert!(parse_head(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let f = |pairs: &[(&str, &str)], nb| {
            fields(pairs)
                .framing(nb)
                .map(|(f, t)| (std::mem::discriminant(&f), t))
        };
        let d = std::mem::discriminant;
        assert_eq!(
            f(&[("content-length", "5")], true).unwrap(),
            (d(&Framing::Done), true)
        );
        assert_eq!(
            f(&[("Content-Length", "5")], false).unwrap(),
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

    /// Every field into a map, then `strip_hop_by_hop`: what crosses on hyper's side.
    fn stripped(raw: &RawHead) -> HeaderMap {
        let mut map = HeaderMap::new();
        for l in raw.lines() {
            map.append(
                HeaderName::from_bytes(l.name).unwrap(),
                HeaderValue::from_bytes(l.value).unwrap(),
            );
        }
        if raw.seen.drop_length {
            map.remove(http::header::CONTENT_LENGTH);
        }
        strip_hop_by_hop(&mut map, false);
        map
    }

    #[test]
    fn the_fields_that_cross_are_those_strip_hop_by_hop_leaves() {
        let heads: &[&[(&str, &str)]] = &[
            &[("Content-Type", "text/plain"), ("Content-Length", "2")],
            &[
                ("Connection", "close, X-Secret"),
                ("X-Secret", "1"),
                ("Keep-Alive", "timeout=5"),
                ("Transfer-Encoding", "chunked"),
                ("Content-Length", "9"),
                ("Trailer", "x-sum"),
                ("Upgrade", "h2c"),
                ("Proxy-Authenticate", "Basic"),
                ("Set-Cookie", "a=1"),
                ("set-cookie", "b=2"),
            ],
            &[
                ("connection", "keep-alive"),
                ("Date", "x"),
                ("X-Note", "caf\u{e9}"),
            ],
        ];
        for pairs in heads {
            let raw = fields(pairs);
            let expected = stripped(&raw);
            let map = fields(pairs).into_map().unwrap();
            assert_eq!(map, expected, "{pairs:?}");
            assert_eq!(raw.crossing().count(), expected.len(), "{pairs:?}");
        }
        assert!(fields(&[("Connection", "Keep-Alive, CLOSE")]).closes());
        assert!(!fields(&[("Connection", "keep-alive")]).closes());
    }
}
