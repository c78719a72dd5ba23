//! The upstream request head written straight from a lean client head's bytes: the request
//! `forward::prepare` makes from a header map (origin-form target, HTTP/1.1, no hop-by-hop
//! fields, the forwarding fields, a Host), without building the map, for the lean client
//! (`h1.rs`) to send as it is.
//!
//! The client's fields are copied as sent, name case included, in their order; those this hop
//! replaces or drops are left out, and what it adds comes last. Only a request the lean server
//! took reaches here, so every name and value is one httparse accepted (no CR or LF inside).

use http::header::HeaderName;
use http::Method;
use smallvec::SmallVec;

use super::forward::ForwardCtx;
use super::headers::{connection_named, is_hop_name, Plan, Xff};
use super::lines::{span_of, Lines};
use super::route::Upstream;
use crate::limiter::fields::Fields;

/// A request's fields as `(name, value)` pairs in the order sent.
pub trait Pairs<'a>: Iterator<Item = (&'a [u8], &'a [u8])> + Clone {}
impl<'a, I: Iterator<Item = (&'a [u8], &'a [u8])> + Clone> Pairs<'a> for I {}

/// The request line and fields for `upstream` in `out` (cleared first). `target` is the
/// client's origin-form path and query; `fields` lie in `head`, the client's head bytes.
pub fn encode<'a>(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    head: &'a [u8],
    fields: impl Pairs<'a>,
    ctx: &ForwardCtx<'_>,
    upstream: &Upstream,
) {
    let kept = Kept::new(fields);
    // The Host the request leaves with: the client's first, else the upstream's authority.
    let client_host = kept.all.clone().find(|(n, _)| kind(n) == Kind::Host);
    let host = client_host.map_or(upstream.authority.as_str().as_bytes(), |(_, v)| v);
    let plan = ctx
        .forwarding
        .plan(&kept, ctx.peer.addr.ip(), ctx.proto, Some(host));

    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(upstream.base_path.as_bytes());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut wrote_host = false;
    let mut lines = Lines::new(head);
    for (name, value) in kept.all.clone() {
        let copy = match kind(name) {
            Kind::Hop => false,
            // Named by Connection: hop-by-hop too, but the Host it names is still sent.
            Kind::Host => !std::mem::replace(&mut wrote_host, true),
            _ if kept.named(name) => false,
            Kind::Xff => plan.xff.is_none(),
            Kind::Xfp => plan.xfp.is_none(),
            Kind::Xfh => plan.xfh.is_none(),
            Kind::Forwarded => plan.forwarded.is_none(),
            Kind::Other => true,
        };
        if copy {
            lines.push(out, span_of(head, name).start..span_of(head, value).end);
        }
    }
    lines.flush(out);
    if !wrote_host {
        field(out, b"host", host);
    }
    added(out, &plan, ctx);
    out.extend_from_slice(b"\r\n");
}

/// The forwarding fields this hop sets.
fn added(out: &mut Vec<u8>, plan: &Plan<'_>, ctx: &ForwardCtx<'_>) {
    match &plan.xff {
        Some(Xff::Peer) => out.extend_from_slice(&ctx.peer.xff_line),
        Some(Xff::Chain(chain)) => field(out, b"x-forwarded-for", chain.as_bytes()),
        None => {}
    }
    match plan.xfp {
        Some("http") => out.extend_from_slice(b"x-forwarded-proto: http\r\n"),
        Some("https") => out.extend_from_slice(b"x-forwarded-proto: https\r\n"),
        Some(proto) => field(out, b"x-forwarded-proto", proto.as_bytes()),
        None => {}
    }
    if let Some(host) = plan.xfh {
        field(out, b"x-forwarded-host", host);
    }
    if let Some(forwarded) = &plan.forwarded {
        field(out, b"forwarded", forwarded.as_bytes());
    }
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What this hop does with a field, by its name (any case).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// Hop-by-hop: never forwarded. Connection is one; the fields it names are found by
    /// [`Kept::named`].
    Hop,
    Host,
    Xff,
    Xfp,
    Xfh,
    Forwarded,
    Other,
}

/// A length test first rejects almost every name without comparing its bytes.
fn kind(name: &[u8]) -> Kind {
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    match name.len() {
        4 if is(b"host") => Kind::Host,
        9 if is(b"forwarded") => Kind::Forwarded,
        15 if is(b"x-forwarded-for") => Kind::Xff,
        16 if is(b"x-forwarded-host") => Kind::Xfh,
        17 if is(b"x-forwarded-proto") => Kind::Xfp,
        _ if is_hop_name(name) => Kind::Hop,
        _ => Kind::Other,
    }
}

/// The client's fields, with the names its Connection fields list beyond their usual tokens:
/// as the header map looks once `strip_hop_by_hop` is done with it.
struct Kept<'a, I> {
    all: I,
    named: SmallVec<[&'a [u8]; 2]>,
}

impl<'a, I: Pairs<'a>> Kept<'a, I> {
    fn new(all: I) -> Self {
        let named = connection_named(all.clone());
        Self { all, named }
    }

    fn named(&self, name: &[u8]) -> bool {
        self.named.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// The fields that cross this hop, by `name`.
    fn crossing<'s>(&'s self, name: &'s HeaderName) -> impl Iterator<Item = &'a [u8]> + 's {
        let want = name.as_str().as_bytes();
        self.all
            .clone()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(want) && !self.named(n))
            .filter(|(n, _)| kind(n) != Kind::Hop)
            .map(|(_, v)| v)
    }
}

impl<'a, I: Pairs<'a>> Fields for Kept<'a, I> {
    fn first(&self, name: &HeaderName) -> Option<&[u8]> {
        self.crossing(name).next()
    }

    fn each<'s>(&'s self, name: &HeaderName, f: &mut dyn FnMut(&'s [u8])) {
        for v in self.crossing(name) {
            f(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use http::header::HeaderValue;
    use http::{HeaderMap, Request, Uri};
    use http_body_util::{Either, Empty};

    use super::super::forward;
    use super::super::headers::Forwarding;
    use super::super::service::Peer;
    use super::*;

    fn upstream(base: &str) -> Upstream {
        Upstream {
            scheme: http::uri::Scheme::HTTP,
            authority: "up.test:8080".parse().unwrap(),
            base_path: base.into(),
        }
    }

    fn ctx(forwarding: &Forwarding) -> ForwardCtx<'static> {
        let forwarding: &'static Forwarding = Box::leak(Box::new(forwarding.clone()));
        let peer = Peer::new(SocketAddr::from(([10, 0, 0, 9], 4000)));
        ForwardCtx {
            forwarding,
            peer: Box::leak(Box::new(peer)),
            proto: "http",
        }
    }

    /// A head's fields as lowercase (name, value) pairs, in order, from its text.
    fn parse(head: &[u8]) -> (String, Vec<(String, String)>) {
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut slots);
        assert!(req.parse(head).unwrap().is_complete(), "{head:?}");
        let line = format!("{} {}", req.method.unwrap(), req.path.unwrap());
        let fields = req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        (line, fields)
    }

    /// Fields grouped by name in the order each name first appears, values in order: the
    /// order a header map keeps.
    fn grouped(fields: Vec<(String, String)>) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for (n, v) in fields {
            match out.iter_mut().find(|(k, _)| *k == n) {
                Some((_, vs)) => vs.push(v),
                None => out.push((n, vec![v])),
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The head the header-map path writes for the same request.
    fn by_map(
        method: &Method,
        target: &str,
        pairs: &[(&str, &str)],
        ctx: &ForwardCtx<'_>,
        up: &Upstream,
    ) -> Vec<u8> {
        let mut req = Request::new(Either::Right(Empty::new()));
        *req.method_mut() = method.clone();
        *req.uri_mut() = target.parse::<Uri>().unwrap();
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        *req.headers_mut() = map;
        forward::encoded_by_map(ctx, up, req)
    }

    fn both(
        forwarding: &Forwarding,
        base: &str,
        target: &str,
        pairs: &[(&str, &str)],
    ) -> (Vec<u8>, Vec<u8>) {
        both_as(ctx(forwarding), base, target, pairs)
    }

    fn both_as(
        ctx: ForwardCtx<'static>,
        base: &str,
        target: &str,
        pairs: &[(&str, &str)],
    ) -> (Vec<u8>, Vec<u8>) {
        let up = upstream(base);
        let mut ours = Vec::new();
        let mut text = format!("GET {target} HTTP/1.1\r\n");
        for (n, v) in pairs {
            text.push_str(&format!("{n}: {v}\r\n"));
        }
        text.push_str("\r\n");
        let mut slots = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut slots);
        assert!(req.parse(text.as_bytes()).unwrap().is_complete());
        let iter = req.headers.iter().map(|h| (h.name.as_bytes(), h.value));
        encode(
            &mut ours,
            &Method::GET,
            target,
            text.as_bytes(),
            iter,
            &ctx,
            &up,
        );
        let theirs = by_map(&Method::GET, target, pairs, &ctx, &up);
        (ours, theirs)
    }

    fn assert_same(forwarding: &Forwarding, base: &str, pairs: &[(&str, &str)]) {
        let (ours, theirs) = both(forwarding, base, "/a?b=1", pairs);
        let (line_a, fields_a) = parse(&ours);
        let (line_b, fields_b) = parse(&theirs);
        assert_eq!(line_a, line_b);
        assert_eq!(
            grouped(fields_a),
            grouped(fields_b),
            "\nours:   {}\ntheirs: {}",
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs)
        );
    }

    fn trusting() -> Forwarding {
        Forwarding {
            trusted: vec!["10.0.0.0/8".parse().unwrap()],
            forwarded: true,
            ..Default::default()
        }
    }

    #[test]
    fn the_head_is_the_one_the_header_map_path_writes() {
        let heads: &[&[(&str, &str)]] = &[
            &[("Host", "api.test"), ("X-Api-Key", "k"), ("Accept", "*/*")],
            &[("x-api-key", "k")],
            &[
                ("Host", "api.test"),
                ("Connection", "keep-alive, X-Secret"),
                ("X-Secret", "s"),
                ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"),
                ("Proxy-Authorization", "Basic x"),
                ("Proxy-Connection", "keep-alive"),
                ("X-Keep", "1"),
                ("x-keep", "2"),
            ],
            &[
                ("Host", "api.test"),
                ("X-Forwarded-For", "1.1.1.1"),
                ("x-forwarded-for", "2.2.2.2, 3.3.3.3"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "front.test"),
                ("Forwarded", "for=1.1.1.1"),
            ],
            &[
                ("Connection", "x-forwarded-for, host"),
                ("Host", "api.test"),
                ("X-Forwarded-For", "1.1.1.1"),
            ],
            &[
                ("Host", "a.test"),
                ("host", "b.test"),
                ("Content-Length", "0"),
            ],
            &[("X-Forwarded-For", "caf\u{e9}")],
        ];
        let plain = Forwarding::default();
        let off = Forwarding {
            x_forwarded: false,
            ..Default::default()
        };
        for pairs in heads {
            for forwarding in [&plain, &trusting(), &off] {
                for base in ["", "/v1"] {
                    assert_same(forwarding, base, pairs);
                }
            }
        }
    }

    #[test]
    fn the_forwarded_proto_line_is_the_listeners() {
        for proto in ["http", "https", "other"] {
            let ctx = ForwardCtx {
                proto,
                ..ctx(&Forwarding::default())
            };
            let (ours, theirs) = both_as(ctx, "", "/", &[("Host", "api.test")]);
            let (_, fields) = parse(&ours);
            let want = ("x-forwarded-proto".to_string(), proto.to_string());
            assert!(fields.contains(&want), "{}", String::from_utf8_lossy(&ours));
            assert_eq!(grouped(fields), grouped(parse(&theirs).1));
        }
    }

    #[test]
    fn fields_keep_their_case_and_order_and_additions_come_last() {
        let (ours, _) = both(
            &Forwarding::default(),
            "",
            "/a?b=1",
            &[
                ("Host", "api.test"),
                ("X-Api-Key", "k"),
                ("X-Forwarded-For", "6.6.6.6"),
            ],
        );
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            "GET /a?b=1 HTTP/1.1\r\nHost: api.test\r\nX-Api-Key: k\r\n\
             x-forwarded-for: 10.0.0.9\r\nx-forwarded-proto: http\r\nx-forwarded-host: api.test\r\n\r\n"
        );
    }

    #[test]
    fn a_trusted_chain_is_extended_and_a_missing_host_is_the_upstreams() {
        let (ours, _) = both(
            &trusting(),
            "/v1",
            "/a",
            &[
                ("X-Forwarded-For", "1.1.1.1"),
                ("x-forwarded-for", "2.2.2.2"),
            ],
        );
        let text = String::from_utf8(ours).unwrap();
        assert!(text.starts_with("GET /v1/a HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("\r\nhost: up.test:8080\r\n"), "{text}");
        assert!(
            text.contains("\r\nx-forwarded-for: 1.1.1.1, 2.2.2.2, 10.0.0.9\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nforwarded: for=10.0.0.9;proto=http;host=\"up.test:8080\"\r\n"),
            "{text}"
        );
    }

    #[test]
    fn each_kind_is_found_in_any_case() {
        for (name, want) in [
            ("TE", Kind::Hop),
            ("Host", Kind::Host),
            ("TRAILER", Kind::Hop),
            ("Upgrade", Kind::Hop),
            ("forwarded", Kind::Forwarded),
            ("Connection", Kind::Hop),
            ("Keep-Alive", Kind::Hop),
            ("X-Forwarded-For", Kind::Xff),
            ("X-Forwarded-Host", Kind::Xfh),
            ("Proxy-Connection", Kind::Hop),
            ("X-Forwarded-Proto", Kind::Xfp),
            ("Transfer-Encoding", Kind::Hop),
            ("Proxy-Authenticate", Kind::Hop),
            ("Proxy-Authorization", Kind::Hop),
            ("X-Api-Key", Kind::Other),
            ("Hosts", Kind::Other),
        ] {
            assert_eq!(kind(name.as_bytes()), want, "{name}");
        }
    }
}
