//! Header rewriting between client and upstream: hop-by-hop removal (RFC 9110 §7.6.1), the
//! client IP behind trusted proxies, and X-Forwarded-* / Forwarded.
//!
//! Owns only header logic; pure functions over `HeaderMap` so they are tested without sockets.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use smallvec::SmallVec;

use crate::limiter::fields::{as_text, Fields};

/// Fields that describe one hop and never cross a proxy, by bit (see [`hop_bit`]).
fn hop_name(bit: u32) -> HeaderName {
    match bit {
        0 => header::CONNECTION,
        1 => HeaderName::from_static("keep-alive"),
        2 => HeaderName::from_static("proxy-connection"),
        3 => header::PROXY_AUTHENTICATE,
        4 => header::PROXY_AUTHORIZATION,
        5 => header::TE,
        6 => header::TRAILER,
        _ => header::TRANSFER_ENCODING,
    }
}
const CONNECTION_BIT: u16 = 1;
const UPGRADE_BIT: u16 = 1 << 8;

/// The bit of a hop-by-hop name (see [`hop_name`]), `UPGRADE_BIT` for Upgrade, or 0.
/// A `match` on the name's text: a length test rejects almost every other name, without building
/// or comparing `HeaderName`s.
fn hop_bit(name: &HeaderName) -> u16 {
    match name.as_str() {
        "connection" => CONNECTION_BIT,
        "keep-alive" => 1 << 1,
        "proxy-connection" => 1 << 2,
        "proxy-authenticate" => 1 << 3,
        "proxy-authorization" => 1 << 4,
        "te" => 1 << 5,
        "trailer" => 1 << 6,
        "transfer-encoding" => 1 << 7,
        "upgrade" => UPGRADE_BIT,
        _ => 0,
    }
}

/// Remove hop-by-hop fields, including those the Connection field names. With `upgrade`, keep
/// `Connection: upgrade` and `Upgrade` so the upstream sees the upgrade request.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass over the names finds which are present, without hashing; most messages carry
    // none, or only `Connection: keep-alive`.
    let seen = headers.keys().fold(0u16, |seen, name| seen | hop_bit(name));
    if seen == 0 && !upgrade {
        return;
    }
    if seen & CONNECTION_BIT != 0 {
        // Also drop the fields Connection names, beyond the usual tokens.
        let named: SmallVec<[HeaderName; 2]> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| {
                !["close", "keep-alive", "upgrade"]
                    .iter()
                    .any(|k| t.eq_ignore_ascii_case(k))
            })
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    let mut hops = seen & !UPGRADE_BIT;
    while hops != 0 {
        headers.remove(hop_name(hops.trailing_zeros()));
        hops &= hops - 1;
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if seen & UPGRADE_BIT != 0 {
        headers.remove(header::UPGRADE);
    }
}

/// Whether a field name, in any case, is hop-by-hop (RFC 9110 §7.6.1; Upgrade too, which only
/// an upgrade carries across), as `hop_bit` for names not yet made `HeaderName`s. A length test
/// first rejects almost every name without comparing its bytes.
pub fn is_hop_name(name: &[u8]) -> bool {
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    match name.len() {
        2 => is(b"te"),
        7 => is(b"trailer") || is(b"upgrade"),
        10 => is(b"connection") || is(b"keep-alive"),
        16 => is(b"proxy-connection"),
        17 => is(b"transfer-encoding"),
        18 => is(b"proxy-authenticate"),
        19 => is(b"proxy-authorization"),
        _ => false,
    }
}

/// The names a message's Connection fields list beyond `close`, `keep-alive` and `upgrade`:
/// hop-by-hop too (what [`strip_hop_by_hop`] removes), from `(name, value)` pairs as sent.
pub fn connection_named<'a>(
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> SmallVec<[&'a [u8]; 2]> {
    let mut named = SmallVec::new();
    // Asked of every field of every request: the name's length first, and no tokenizing for
    // the usual lone `keep-alive` or `close`.
    for (name, value) in fields {
        if name.len() != 10 || !name.eq_ignore_ascii_case(b"connection") || is_usual(value) {
            continue;
        }
        for t in tokens(value) {
            if !t.is_empty() && !is_usual(t) {
                named.push(t);
            }
        }
    }
    named
}

/// `close`, `keep-alive` or `upgrade` (any case): the Connection tokens that name no field.
fn is_usual(token: &[u8]) -> bool {
    match token.len() {
        5 => token.eq_ignore_ascii_case(b"close"),
        10 => token.eq_ignore_ascii_case(b"keep-alive"),
        7 => token.eq_ignore_ascii_case(b"upgrade"),
        _ => false,
    }
}

/// The tokens of a comma-separated header value, trimmed.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(<[u8]>::trim_ascii)
}

/// Whether a comma-separated header value holds `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

/// Whether the client asked to switch protocols (HTTP/1.1 Upgrade).
pub fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// How the proxy tells the upstream who the client is.
#[derive(Debug, Clone)]
pub struct Forwarding {
    pub x_forwarded: bool,
    pub forwarded: bool,
    pub trusted: Vec<IpNet>,
}

impl Default for Forwarding {
    fn default() -> Self {
        Self {
            x_forwarded: true,
            forwarded: false,
            trusted: Vec::new(),
        }
    }
}

const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");

impl Forwarding {
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client IP: the socket peer, unless the peer is a trusted proxy; then the rightmost
    /// X-Forwarded-For entry that is not itself trusted.
    pub fn client_ip(&self, peer: IpAddr, headers: &dyn Fields) -> IpAddr {
        if self.trusted.is_empty() || !self.is_trusted(peer) {
            return peer;
        }
        let mut chain = Vec::new();
        headers.each(&XFF, &mut |v| {
            if let Some(v) = as_text(v) {
                chain.extend(v.split(',').map(str::trim));
            }
        });
        chain.reverse();
        let mut client = peer;
        for hop in chain {
            match hop.parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.is_trusted(ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }

    /// The forwarding fields a request from `peer` leaves with, decided from the fields it came
    /// with (hop-by-hop ones already left out). Values sent by an untrusted peer are replaced,
    /// never extended, so a client cannot forge its origin. `host` is the Host it leaves with.
    pub fn plan<'h>(
        &self,
        fields: &dyn Fields,
        peer: IpAddr,
        proto: &'static str,
        host: Option<&'h [u8]>,
    ) -> Plan<'h> {
        let trusted = self.is_trusted(peer);
        let mut plan = Plan::default();
        if self.x_forwarded {
            plan.xff = Some(match trusted.then(|| joined(fields, &XFF)).flatten() {
                Some(prev) => Xff::Chain(format!("{prev}, {peer}")),
                None => Xff::Peer,
            });
            if !(trusted && fields.first(&XFP).is_some()) {
                plan.xfp = Some(proto);
            }
            if !(trusted && fields.first(&XFH).is_some()) {
                plan.xfh = host;
            }
        }
        if self.forwarded {
            let host = host.and_then(as_text);
            let elem = forwarded_element(peer, proto, host);
            plan.forwarded = Some(match trusted.then(|| joined(fields, &header::FORWARDED)) {
                Some(Some(prev)) => format!("{prev}, {elem}"),
                _ => elem,
            });
        }
        plan
    }

    /// Set the forwarding headers (see [`Forwarding::plan`]) on a request about to leave for
    /// the upstream. `peer_value` is the peer's IP as a header value, made once per connection.
    pub fn apply(
        &self,
        headers: &mut HeaderMap,
        peer: IpAddr,
        peer_value: &HeaderValue,
        proto: &'static str,
        host: Option<&HeaderValue>,
    ) {
        let plan = self.plan(headers, peer, proto, host.map(HeaderValue::as_bytes));
        let xfh = plan.xfh.map(|_| host.cloned());
        let xff = match plan.xff {
            Some(Xff::Peer) => Some(peer_value.clone()),
            Some(Xff::Chain(chain)) => HeaderValue::try_from(chain).ok(),
            None => None,
        };
        let forwarded = plan.forwarded.and_then(|v| HeaderValue::try_from(v).ok());
        if let Some(v) = xff {
            headers.insert(XFF, v);
        }
        if let Some(proto) = plan.xfp {
            headers.insert(XFP, HeaderValue::from_static(proto));
        }
        if let Some(Some(v)) = xfh {
            headers.insert(XFH, v);
        }
        if let Some(v) = forwarded {
            headers.insert(header::FORWARDED, v);
        }
    }
}

/// The forwarding fields a request leaves with; `None`: the field is left as it came.
#[derive(Default)]
pub struct Plan<'h> {
    pub xff: Option<Xff>,
    pub xfp: Option<&'static str>,
    /// The Host the request leaves with.
    pub xfh: Option<&'h [u8]>,
    pub forwarded: Option<String>,
}

/// The X-Forwarded-For a request leaves with.
pub enum Xff {
    /// The peer's address alone.
    Peer,
    /// The chain a trusted peer sent, the peer appended.
    Chain(String),
}

/// Every value of `name` joined by ", ", when each is text (`None` when there is none, or one
/// that is not).
fn joined(fields: &dyn Fields, name: &HeaderName) -> Option<String> {
    let mut all: Option<String> = None;
    let mut text = true;
    fields.each(name, &mut |v| match (as_text(v), all.as_mut()) {
        (None, _) => text = false,
        (Some(v), Some(all)) => {
            all.push_str(", ");
            all.push_str(v);
        }
        (Some(v), None) => all = Some(v.to_string()),
    });
    all.filter(|_| text)
}

/// One `Forwarded` element (RFC 7239) for a request from `peer`.
fn forwarded_element(peer: IpAddr, proto: &str, host: Option<&str>) -> String {
    let node = match peer {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("\"[{ip}]\""),
    };
    let mut elem = format!("for={node};proto={proto}");
    if let Some(h) = host {
        elem.push_str(&format!(";host=\"{}\"", h.replace(['"', '\\'], "")));
    }
    elem
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_standard_and_connection_named_fields() {
        let mut h = map(&[
            ("connection", "close, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-keep", "yes"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn each_hop_bit_names_its_own_field() {
        for bit in 0..8 {
            assert_eq!(hop_bit(&hop_name(bit)), 1 << bit, "{}", hop_name(bit));
        }
        assert_eq!(hop_bit(&header::UPGRADE), UPGRADE_BIT);
        assert_eq!(hop_bit(&header::CONTENT_LENGTH), 0);
        assert_eq!(hop_bit(&HeaderName::from_static("x-connection")), 0);
    }

    #[test]
    fn hop_names_in_any_case_are_the_hop_bits() {
        for bit in 0..8 {
            let name = hop_name(bit);
            assert!(is_hop_name(name.as_str().as_bytes()), "{name}");
            assert!(
                is_hop_name(name.as_str().to_uppercase().as_bytes()),
                "{name}"
            );
        }
        assert!(is_hop_name(b"Upgrade"));
        for other in ["x-connection", "host", "content-length", "tee", "trailers"] {
            assert!(!is_hop_name(other.as_bytes()), "{other}");
        }
        let pairs = [
            (&b"Connection"[..], &b"Close, X-Secret, keep-alive"[..]),
            (b"connection", b"upgrade,, x-two"),
            (b"CONNECTION", b"KEEP-ALIVE"),
            (b"connection", b"close"),
            (b"Connection", b"x-three"),
            (b"connections", b"x-not"),
            (b"X-Secret", b"1"),
        ];
        let named = connection_named(pairs.iter().copied());
        assert_eq!(named.as_slice(), [&b"X-Secret"[..], b"x-two", b"x-three"]);
    }

    #[test]
    fn keeps_upgrade_for_upgrade_requests() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(wants_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn client_ip_believes_xff_only_from_trusted_peers() {
        let fwd = Forwarding {
            trusted: vec!["10.0.0.0/8".parse().unwrap()],
            ..Default::default()
        };
        let h = map(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.7")]);
        let trusted_peer: IpAddr = "10.0.0.1".parse().unwrap();
        let outsider: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(
            fwd.client_ip(trusted_peer, &h),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(fwd.client_ip(outsider, &h), outsider);
    }

    #[test]
    fn untrusted_forwarding_headers_are_replaced() {
        let fwd = Forwarding {
            forwarded: true,
            ..Default::default()
        };
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ]);
        fwd.apply(
            &mut h,
            "127.0.0.1".parse().unwrap(),
            &HeaderValue::from_static("127.0.0.1"),
            "http",
            Some(&HeaderValue::from_static("api.test")),
        );
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.test");
        assert_eq!(h["forwarded"], "for=127.0.0.1;proto=http;host=\"api.test\"");
    }
}
