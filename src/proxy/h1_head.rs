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
use std::ops::Range;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{HeaderMap, StatusCode, Version};
use smallvec::SmallVec;

use super::h1::{Chunk, Framing};
use super::headers::{connection_named, has_token, is_hop_name};

/// Response header fields allowed (hyper's client allows 100).
const MAX_HEADERS: usize = 100;

/// A response head's bytes, with where each field lies in them.
pub struct RawHead {
    bytes: Bytes,
    fields: SmallVec<[RawField; 12]>,
    /// A Transfer-Encoding came: a Content-Length beside it does not cross (RFC 9112 §6.3).
    drop_length: bool,
}

/// Where a field's name and value lie in the head.
#[derive(Clone)]
struct RawField {
    name: Range<u32>,
    value: Range<u32>,
}

/// A complete response head at the start of a buffer.
pub struct Parsed {
    pub len: usize,
    pub status: StatusCode,
    pub version: Version,
    fields: SmallVec<[RawField; 12]>,
}

/// Parse the response head at the start of `buf`. `None`: not complete yet.
pub fn parse_head(buf: &[u8]) -> io::Result<Option<Parsed>> {
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
    // Offsets fit in u32: a head is at most a few reads past `h1::MAX_HEAD` (64 KiB).
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| {
        let from = (s.as_ptr() as usize - base) as u32;
        from..from + s.len() as u32
    };
    let fields = resp
        .headers
        .iter()
        .map(|h| RawField {
            name: at(h.name.as_bytes()),
            value: at(h.value),
        })
        .collect();
    Ok(Some(Parsed {
        len,
        status,
        version,
        fields,
    }))
}

impl Parsed {
    /// The head, with `bytes` the head's own (the first `len` bytes the parse read).
    pub fn into_head(self, bytes: Bytes) -> RawHead {
        let mut head = RawHead {
            bytes,
            fields: self.fields,
            drop_length: false,
        };
        let coded = head.named(b"transfer-encoding").next().is_some();
        head.drop_length = coded;
        head
    }
}

impl RawHead {
    /// Every field as sent, `(name, value)`.
    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.fields.iter().map(|f| {
            let name = &self.bytes[f.name.start as usize..f.name.end as usize];
            (
                name,
                &self.bytes[f.value.start as usize..f.value.end as usize],
            )
        })
    }

    fn named<'s>(&'s self, want: &'s [u8]) -> impl Iterator<Item = &'s [u8]> + Clone + 's {
        self.pairs()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(want))
            .map(|(_, v)| v)
    }

    /// The fields that cross to the client, in the order sent.
    pub fn crossing(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let named = connection_named(self.pairs());
        let drop_length = self.drop_length;
        self.pairs().filter(move |(n, _)| {
            let dropped = is_hop_name(n)
                || (drop_length && n.eq_ignore_ascii_case(b"content-length"))
                || named.iter().any(|c| c.eq_ignore_ascii_case(n));
            !dropped
        })
    }

    /// Whether the upstream closes the connection after this answer.
    pub fn closes(&self) -> bool {
        self.named(b"connection").any(|v| has_token(v, b"close"))
    }

    /// How the body is delimited, and whether that framing leaves the connection reusable. A
    /// Content-Length beside chunked coding does not cross, so it is never forwarded as true.
    pub(super) fn framing(&self, no_body: bool) -> io::Result<(Framing, bool)> {
        if no_body {
            return Ok((Framing::Done, true));
        }
        if let Some(last) = self.named(b"transfer-encoding").last() {
            let chunked = last
                .rsplit(|b| *b == b',')
                .next()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            let had_length = self.named(b"content-length").next().is_some();
            return Ok(if chunked {
                (Framing::Chunked(Chunk::Size), !had_length)
            } else {
                (Framing::UntilClose, false)
            });
        }
        let mut length = None;
        for v in self.named(b"content-length") {
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
        for (name, value) in self.crossing() {
            let name = super::names::header_name(name)
                .map_err(|_| invalid("invalid response header name"))?;
            let start = value.as_ptr() as usize - self.bytes.as_ptr() as usize;
            let value =
                HeaderValue::from_maybe_shared(self.bytes.slice(start..start + value.len()))
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
        assert_eq!(raw.pairs().collect::<Vec<_>>(), [(&b"X-A"[..], &b"b"[..])]);
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
        for (n, v) in raw.pairs() {
            map.append(
                HeaderName::from_bytes(n).unwrap(),
                HeaderValue::from_bytes(v).unwrap(),
            );
        }
        if raw.drop_length {
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
