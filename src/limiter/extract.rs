//! Turning a request into limiter keys and costs: the `key = "ip,header:x-api-key"` specs.
//!
//! Owns key specs, the missing-key policy and request cost. Extraction borrows from the request
//! (header values, the raw query string, the client IP) so the hot path allocates nothing; only
//! JWT claims are decoded into an owned, per-request [`Claims`] that keys then borrow from.
//! Must not touch the table or the network.

use std::net::IpAddr;

use http::HeaderName;
use smallvec::SmallVec;

use super::fields::{as_text, text, Fields};
use super::jwt::{Claims, JwtVerifier};
use super::{Key, KeyPart};

/// Where one part of a key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The client IP (the socket peer, or X-Forwarded-For behind a trusted proxy).
    Ip,
    /// A request header's first value.
    Header(HeaderName),
    /// A query parameter, raw (not percent-decoded).
    Query(Box<str>),
    /// A claim of the verified bearer JWT.
    Jwt(Box<str>),
}

/// A whole key: one source, or several joined (a composite key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub sources: SmallVec<[KeySource; 2]>,
}

impl KeySpec {
    /// Parse `ip`, `header:NAME`, `query:NAME`, `jwt:CLAIM`, or several joined by commas.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut sources = SmallVec::new();
        for part in spec.split(',').map(str::trim) {
            sources.push(parse_source(part)?);
        }
        Ok(Self { sources })
    }

    pub fn uses_jwt(&self) -> bool {
        self.sources.iter().any(|s| matches!(s, KeySource::Jwt(_)))
    }
}

fn parse_source(part: &str) -> Result<KeySource, String> {
    if part == "ip" {
        return Ok(KeySource::Ip);
    }
    let (kind, name) = part.split_once(':').ok_or_else(|| {
        format!("unknown key source {part:?}: expected ip, header:NAME, query:NAME or jwt:CLAIM")
    })?;
    if name.is_empty() {
        return Err(format!("key source {part:?} needs a name after ':'"));
    }
    match kind {
        "header" => HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map(KeySource::Header)
            .map_err(|_| format!("invalid header name {name:?}")),
        "query" => Ok(KeySource::Query(name.into())),
        "jwt" => Ok(KeySource::Jwt(name.into())),
        _ => Err(format!(
            "unknown key source kind {kind:?}: expected header, query or jwt"
        )),
    }
}

/// What happens when a request lacks (part of) its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnMissing {
    /// Answer 401: the caller must identify itself.
    #[default]
    Reject,
    /// Count the request in one bucket shared by every keyless caller.
    Anonymous,
    /// Don't apply this rule to the request.
    Skip,
}

impl OnMissing {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "reject" => Ok(Self::Reject),
            "anonymous" => Ok(Self::Anonymous),
            "skip" => Ok(Self::Skip),
            _ => Err(format!("expected reject, anonymous or skip, got {s:?}")),
        }
    }
}

/// The weight of a request against a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cost {
    pub fixed: u32,
    pub header: Option<HeaderName>,
}

impl Default for Cost {
    fn default() -> Self {
        Self {
            fixed: 1,
            header: None,
        }
    }
}

/// A cost header that is present but not a whole number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header {0} must be a whole number of at least 1")]
pub struct BadCost(pub HeaderName);

impl Cost {
    pub fn of(&self, headers: &dyn Fields) -> Result<u32, BadCost> {
        let Some(name) = &self.header else {
            return Ok(self.fixed);
        };
        match headers.first(name) {
            None => Ok(self.fixed),
            Some(v) => as_text(v)
                .and_then(|s| s.trim().parse().ok())
                .filter(|c| *c > 0)
                .ok_or_else(|| BadCost(name.clone())),
        }
    }
}

/// What extraction looks at. Claims are decoded at most once per request, on first use.
pub struct RequestView<'a> {
    pub headers: &'a dyn Fields,
    pub query: Option<&'a str>,
    pub client_ip: IpAddr,
    pub claims: &'a Option<Claims>,
}

impl<'a> RequestView<'a> {
    /// Decode the bearer JWT once, if any rule of the route needs a claim.
    pub fn decode_claims(headers: &dyn Fields, verifier: Option<&JwtVerifier>) -> Option<Claims> {
        verifier.and_then(|v| v.verify(headers))
    }
}

impl KeySpec {
    /// Build the key, or `None` when any part is missing or empty.
    pub fn extract<'a>(&self, req: &RequestView<'a>) -> Option<Key<'a>> {
        let mut key = Key::new();
        for source in &self.sources {
            key.push(source.extract(req)?);
        }
        Some(key)
    }
}

impl KeySource {
    fn extract<'a>(&self, req: &RequestView<'a>) -> Option<KeyPart<'a>> {
        let value = match self {
            KeySource::Ip => return Some(KeyPart::Ip(req.client_ip)),
            KeySource::Header(name) => text(req.headers, name)?,
            KeySource::Query(name) => query_param(req.query?, name)?,
            KeySource::Jwt(claim) => req.claims.as_ref()?.get(claim)?,
        };
        (!value.is_empty()).then_some(KeyPart::Str(value))
    }
}

/// The raw value of the first `name=` pair of a query string.
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn parses_every_source_kind_and_composites() {
        let spec = KeySpec::parse("ip, header:X-Api-Key,query:k,jwt:sub").unwrap();
        assert_eq!(spec.sources.len(), 4);
        assert_eq!(
            spec.sources[1],
            KeySource::Header(HeaderName::from_static("x-api-key"))
        );
        assert!(spec.uses_jwt());
        assert!(KeySpec::parse("cookie:x").is_err());
        assert!(KeySpec::parse("header:").is_err());
        assert!(KeySpec::parse("bogus").is_err());
    }

    #[test]
    fn extracts_borrowed_parts_and_reports_missing() {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", "abc".parse().unwrap());
        let claims = None;
        let view = RequestView {
            headers: &headers,
            query: Some("a=1&tenant=t9&b"),
            client_ip: "10.0.0.1".parse().unwrap(),
            claims: &claims,
        };
        let key = KeySpec::parse("header:x-api-key,query:tenant")
            .unwrap()
            .extract(&view)
            .unwrap();
        assert_eq!(&*key.to_display(), "abc|t9");
        assert!(KeySpec::parse("query:missing")
            .unwrap()
            .extract(&view)
            .is_none());
        assert!(
            KeySpec::parse("query:b").unwrap().extract(&view).is_none(),
            "empty is missing"
        );
        assert!(KeySpec::parse("jwt:sub").unwrap().extract(&view).is_none());
    }

    #[test]
    fn cost_from_header_or_fixed() {
        let cost = Cost {
            fixed: 2,
            header: Some(HeaderName::from_static("x-cost")),
        };
        let mut headers = HeaderMap::new();
        assert_eq!(cost.of(&headers), Ok(2));
        headers.insert("x-cost", "7".parse().unwrap());
        assert_eq!(cost.of(&headers), Ok(7));
        headers.insert("x-cost", "lots".parse().unwrap());
        assert!(cost.of(&headers).is_err());
        headers.insert("x-cost", "0".parse().unwrap());
        assert!(
            cost.of(&headers).is_err(),
            "a zero cost would bypass the rule"
        );
    }
}
