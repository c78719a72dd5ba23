//! Header rewriting between client and upstream: hop-by-hop removal (RFC 9110 §7.6.1), the
//! client IP behind trusted proxies, and X-Forwarded-* / Forwarded.
//!
//! Owns only header logic; pure functions over `HeaderMap` so they are tested without sockets.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ipnet::IpNet;
use smallvec::SmallVec;

/// Fields that describe one hop and never cross a proxy.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Remove hop-by-hop fields, including those the Connection field names. With `upgrade`, keep
/// `Connection: upgrade` and `Upgrade` so the upstream sees the upgrade request.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // One pass over the names finds which are present, without hashing; most messages carry
    // none, or only `Connection: keep-alive`.
    let (mut seen, mut has_upgrade) = (0u16, false);
    for name in headers.keys() {
        match HOP_BY_HOP.iter().position(|h| h == name) {
            Some(i) => seen |= 1 << i,
            None => has_upgrade |= *name == header::UPGRADE,
        }
    }
    if seen & 1 != 0 {
        // Connection is HOP_BY_HOP[0]: also drop the fields it names, beyond the usual tokens.
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
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if seen & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if has_upgrade {
        headers.remove(header::UPGRADE);
    }
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
    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client IP: the socket peer, unless the peer is a trusted proxy; then the rightmost
    /// X-Forwarded-For entry that is not itself trusted.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.trusted.is_empty() || !self.is_trusted(peer) {
            return peer;
        }
        let mut chain = headers
            .get_all(&XFF)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
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

    /// Set the forwarding headers on a request about to leave for the upstream. Values sent by
    /// an untrusted peer are replaced, never extended, so a client cannot forge its origin.
    /// `peer_value` is the peer's IP as a header value, made once per connection.
    pub fn apply(
        &self,
        headers: &mut HeaderMap,
        peer: IpAddr,
        peer_value: &HeaderValue,
        proto: &'static str,
        host: Option<&HeaderValue>,
    ) {
        let trusted = self.is_trusted(peer);
        if self.x_forwarded {
            let xff = match headers.get(&XFF).and_then(|v| v.to_str().ok()) {
                Some(prev) if trusted => HeaderValue::from_str(&format!("{prev}, {peer}")).ok(),
                _ => Some(peer_value.clone()),
            };
            if let Some(v) = xff {
                headers.insert(XFF, v);
            }
            if !(trusted && headers.contains_key(&XFP)) {
                headers.insert(XFP, HeaderValue::from_static(proto));
            }
            if !(trusted && headers.contains_key(&XFH)) {
                if let Some(v) = host {
                    headers.insert(XFH, v.clone());
                }
            }
        }
        if self.forwarded {
            let host = host.and_then(|h| h.to_str().ok());
            self.apply_forwarded(headers, peer, proto, host, trusted);
        }
    }

    fn apply_forwarded(
        &self,
        headers: &mut HeaderMap,
        peer: IpAddr,
        proto: &str,
        host: Option<&str>,
        trusted: bool,
    ) {
        let node = match peer {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("\"[{ip}]\""),
        };
        let mut elem = format!("for={node};proto={proto}");
        if let Some(h) = host {
            elem.push_str(&format!(";host=\"{}\"", h.replace(['"', '\\'], "")));
        }
        let value = match headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()) {
            Some(prev) if trusted => format!("{prev}, {elem}"),
            _ => elem,
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(header::FORWARDED, v);
        }
    }
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
