//! A request head as the lean HTTP/1.1 server (`h1_server.rs`) parses it: the method, the target
//! and where each field lies in the head's bytes, which stay in the connection's read buffer.
//! Nothing is split off that buffer or shared: the head is only read while the request is
//! decided, which is synchronous, and its bytes are let go of right after.
//!
//! The limit step reads the fields where they are ([`Fields`]); a request that goes to a plain
//! `http://` upstream is written out from the same bytes (`h1_outbound.rs`), and only one that
//! goes another way gets a header map ([`Lean::into_request`]).

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body_util::Empty;
use smallvec::SmallVec;

use super::forward::{self, ClientBody, ForwardCtx, Outbound};
use super::gate::View;
use super::headers::has_token;
use super::respond::ProxyError;
use super::route::Upstream;
use super::service::Incoming;
use crate::limiter::fields::Fields;

/// The most header fields the lean path parses; a listener allowing more leaves every
/// connection to hyper.
pub const MAX_FIELDS: usize = 256;

/// A parsed request head: what the request is, and where its fields lie in the head's bytes
/// (its first `len` bytes of the read buffer).
pub struct Head {
    pub len: usize,
    pub method: Method,
    uri: Uri,
    fields: SmallVec<[Field; 24]>,
    /// The client asked to close after this request.
    pub close: bool,
}

/// Where a field's name and value lie in the head.
struct Field {
    name: Range<u32>,
    value: Range<u32>,
}

/// The outcome of a parse.
/// Unboxed: the head is the common case, and a box would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    Lean(Head),
    /// A head hyper must serve: a body, an Upgrade, HTTP/1.0, a malformed head...
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

/// Parse the head at the start of `buf`. `None`: the head is not complete yet.
pub fn parse(buf: &[u8], max_headers: usize) -> Option<Parsed> {
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
    // A copy of the target: the head's bytes are not kept past the decision.
    let Ok(uri) = Uri::try_from(req.path.unwrap_or_default()) else {
        // hyper answers 400 to it.
        return Some(Parsed::NotOurs);
    };
    Some(Parsed::Lean(Head {
        len,
        method,
        uri,
        fields,
        close,
    }))
}

/// A head with its bytes, and the header map it fills if it goes upstream without being written
/// from its bytes: the last answer's, cleared (as hyper does), so it neither allocates nor grows.
/// The head is borrowed: it is 0.5 KB, moved only once.
pub struct Lean<'s> {
    pub bytes: &'s [u8],
    pub head: &'s mut Head,
    pub spare: &'s mut HeaderMap,
}

impl Lean<'_> {
    fn name(&self, f: &Field) -> &[u8] {
        &self.bytes[f.name.start as usize..f.name.end as usize]
    }

    fn value(&self, f: &Field) -> &[u8] {
        &self.bytes[f.value.start as usize..f.value.end as usize]
    }

    fn named<'s>(&'s self, name: &'s HeaderName) -> impl Iterator<Item = &'s Field> {
        // `HeaderName`s are lowercase; a head's names may be in any case.
        let want = name.as_str().as_bytes();
        self.head.fields.iter().filter(move |f| {
            let got = self.name(f);
            got.len() == want.len()
                && got
                    .iter()
                    .zip(want)
                    .all(|(g, w)| g.to_ascii_lowercase() == *w)
        })
    }
}

impl Fields for Lean<'_> {
    fn first(&self, name: &HeaderName) -> Option<&[u8]> {
        self.named(name).next().map(|f| self.value(f))
    }

    fn each<'s>(&'s self, name: &HeaderName, f: &mut dyn FnMut(&'s [u8])) {
        for field in self.named(name) {
            f(self.value(field));
        }
    }
}

impl Incoming for Lean<'_> {
    fn view(&self) -> View<'_> {
        View {
            method: &self.head.method,
            uri: &self.head.uri,
            fields: self,
        }
    }

    fn into_request(self) -> Result<Request<ClientBody>, ProxyError> {
        let mut headers = std::mem::take(self.spare);
        headers.reserve(self.head.fields.len() + 6);
        for f in self.head.fields.iter() {
            // httparse takes the same bytes in names and values as `http` does, so neither
            // fails; if one did, the request is answered 400, not forwarded without the field.
            let name =
                super::names::header_name(self.name(f)).map_err(|_| ProxyError::BadHeader)?;
            let value = Bytes::copy_from_slice(self.value(f));
            let value = HeaderValue::from_maybe_shared(value).map_err(|_| ProxyError::BadHeader)?;
            headers.append(name, value);
        }
        let mut req = Request::new(ClientBody::Right(Empty::<Bytes>::new()));
        *req.method_mut() = std::mem::take(&mut self.head.method);
        *req.uri_mut() = std::mem::take(&mut self.head.uri);
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
        let pairs = self
            .head
            .fields
            .iter()
            .map(|f| (self.name(f), self.value(f)));
        let (method, uri) = (&self.head.method, &self.head.uri);
        match forward::outbound_head(ctx, upstream, method, uri, self.bytes, pairs) {
            Some(out) => Ok(out),
            None => forward::outbound(ctx, upstream, self.into_request()?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Option<Parsed> {
        parse(text.as_bytes(), 100)
    }

    fn parse_again(text: &str) -> Head {
        let Some(Parsed::Lean(head)) = parsed(text) else {
            panic!("not lean")
        };
        head
    }

    /// The head as the request it becomes upstream.
    fn request(text: &str) -> Request<ClientBody> {
        let mut head = parse_again(text);
        let Ok(req) = (Lean {
            bytes: text.as_bytes(),
            head: &mut head,
            spare: &mut HeaderMap::new(),
        })
        .into_request() else {
            panic!("not a request")
        };
        req
    }

    #[test]
    fn a_plain_get_is_ours_and_ends_where_the_next_begins() {
        let text =
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Api-Key: k\r\nConnection: keep-alive, Close\r\n\r\nGET /next";
        let head = parse_again(text);
        assert_eq!(head.uri, "/a?b=1");
        assert!(head.close);
        assert_eq!(&text[head.len..], "GET /next");
        let req = request(text);
        assert_eq!(req.uri(), "/a?b=1");
        assert_eq!(req.headers()["x-api-key"], "k");
        assert_eq!(req.headers().len(), 3);
    }

    #[test]
    fn the_fields_of_a_head_read_as_a_header_map_reads() {
        let text = "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1\r\nx-api-key: k\r\n\
                    X-FORWARDED-FOR: 2.2.2.2, 3.3.3.3\r\nX-Note: café\r\nX-Empty:\r\n\r\n";
        let mut head = parse_again(text);
        let mut spare = HeaderMap::new();
        let lean = Lean {
            bytes: text.as_bytes(),
            head: &mut head,
            spare: &mut spare,
        };
        let map = request(text).headers().clone();
        for name in [
            "host",
            "x-api-key",
            "x-forwarded-for",
            "x-note",
            "x-empty",
            "x-none",
        ] {
            let name = HeaderName::from_static(name);
            assert_eq!(lean.first(&name), map.first(&name), "{name}");
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            lean.each(&name, &mut |v| ours.push(v.to_vec()));
            map.each(&name, &mut |v| theirs.push(v.to_vec()));
            assert_eq!(ours, theirs, "{name}");
        }
        let xff = HeaderName::from_static("x-forwarded-for");
        let mut all = Vec::new();
        lean.each(&xff, &mut |v| all.push(v));
        assert_eq!(all, [&b"1.1.1.1"[..], b"2.2.2.2, 3.3.3.3"]);
    }

    #[test]
    fn a_field_http_refuses_is_answered_not_dropped() {
        // httparse and `http` agree on names and values, so only a hand-made head has one.
        let mut head = parse_again("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let lean = Lean {
            bytes: b"GET / HTTP/1.1\r\nHo t: x\r\n\r\n",
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
    fn too_many_fields_go_to_hyper() {
        let text = "GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        assert!(matches!(parse(text.as_bytes(), 2), Some(Parsed::NotOurs)));
    }

    #[test]
    fn repeated_zero_lengths_are_one_field() {
        let req =
            request("GET / HTTP/1.1\r\nContent-Length: 0\r\nHost: x\r\ncontent-length: 0\r\n\r\n");
        let length = http::header::CONTENT_LENGTH;
        assert_eq!(req.headers().get_all(length).iter().count(), 1);
        assert_eq!(req.headers()["host"], "x");
    }
}
