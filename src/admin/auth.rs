//! Who may call the admin plane: bearer tokens with two roles, compared in constant time, and
//! the WebSocket's Origin check.
//!
//! Owns token matching and the subprotocol form of a token (for browsers, which cannot set
//! headers on a WebSocket). Must never log or echo a token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{header, HeaderMap};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::AdminSettings;

/// What a token lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// GET the API, open the feed.
    Read,
    /// Also change config and reset keys.
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

/// The subprotocol a browser offers beside its token, and the one the server answers with.
pub const SUBPROTOCOL: &str = "tollgate.v1";
const TOKEN_SUBPROTOCOL: &str = "tollgate.bearer.";

/// The configured tokens and origins.
pub struct Auth {
    admin: Option<Vec<u8>>,
    read: Option<Vec<u8>>,
    /// The admin port's own origins are always allowed; these are the others.
    origins: Vec<String>,
}

impl Auth {
    pub fn new(settings: &AdminSettings) -> Self {
        Self {
            admin: settings.token.as_ref().map(|t| t.as_bytes().to_vec()),
            read: settings.read_token.as_ref().map(|t| t.as_bytes().to_vec()),
            origins: settings.allowed_origins.clone(),
        }
    }

    /// The role of a presented token, checking every configured token in constant time (so the
    /// time taken does not tell which one, or how much of it, matched).
    pub fn role_of(&self, presented: &[u8]) -> Option<Role> {
        let eq = |t: &Option<Vec<u8>>| t.as_ref().is_some_and(|t| bool::from(t.ct_eq(presented)));
        let (admin, read) = (eq(&self.admin), eq(&self.read));
        if admin {
            Some(Role::Admin)
        } else if read {
            Some(Role::Read)
        } else {
            None
        }
    }

    /// The role of a request's `Authorization: Bearer` token, or 401.
    pub fn check(&self, headers: &HeaderMap) -> Result<Role, ApiError> {
        let token = bearer(headers).ok_or(ApiError::Unauthorized)?;
        self.role_of(token).ok_or(ApiError::Unauthorized)
    }

    /// Like [`check`](Self::check), also accepting the token as a `tollgate.bearer.<base64url>`
    /// subprotocol, as a browser's WebSocket sends it.
    pub fn check_socket(&self, headers: &HeaderMap) -> Result<Role, ApiError> {
        if let Ok(role) = self.check(headers) {
            return Ok(role);
        }
        subprotocols(headers)
            .filter_map(|p| p.strip_prefix(TOKEN_SUBPROTOCOL))
            .filter_map(|t| URL_SAFE_NO_PAD.decode(t).ok())
            .find_map(|t| self.role_of(&t))
            .ok_or(ApiError::Unauthorized)
    }

    /// A browser page may open the feed only from the admin port itself or a listed origin;
    /// a client that sends no Origin (not a browser) passes.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
            return true;
        };
        let origin = origin.to_ascii_lowercase();
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let same = host.is_some_and(|h| {
            let h = h.to_ascii_lowercase();
            origin == format!("http://{h}") || origin == format!("https://{h}")
        });
        same || self.origins.contains(&origin)
    }
}

/// Whether the client offered our subprotocol (so the upgrade must answer with it).
pub fn offers_subprotocol(headers: &HeaderMap) -> bool {
    subprotocols(headers).any(|p| p == SUBPROTOCOL)
}

fn subprotocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth {
            admin: Some(b"admin-token-0123456789".to_vec()),
            read: Some(b"read-token-0123456789".to_vec()),
            origins: vec!["https://ops.example.com".into()],
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn roles_by_token() {
        let a = auth();
        let role = |v: &str| a.check(&headers(&[("authorization", v)])).ok();
        assert_eq!(role("Bearer admin-token-0123456789"), Some(Role::Admin));
        assert_eq!(role("bearer read-token-0123456789"), Some(Role::Read));
        assert_eq!(role("Bearer admin-token-012345678"), None);
        assert_eq!(role("Basic admin-token-0123456789"), None);
        assert_eq!(a.check(&HeaderMap::new()).ok(), None);
    }

    #[test]
    fn socket_token_as_subprotocol() {
        let a = auth();
        let offer = format!(
            "tollgate.v1, tollgate.bearer.{}",
            URL_SAFE_NO_PAD.encode("read-token-0123456789")
        );
        let h = headers(&[("sec-websocket-protocol", &offer)]);
        assert_eq!(a.check_socket(&h).ok(), Some(Role::Read));
        assert!(offers_subprotocol(&h));
        let bad = headers(&[("sec-websocket-protocol", "tollgate.v1, tollgate.bearer.!!")]);
        assert!(a.check_socket(&bad).is_err());
    }

    #[test]
    fn origins() {
        let a = auth();
        let h = |o: &str| headers(&[("origin", o), ("host", "127.0.0.1:9091")]);
        assert!(a.origin_allowed(&h("http://127.0.0.1:9091")));
        assert!(a.origin_allowed(&h("https://OPS.example.com")));
        assert!(!a.origin_allowed(&h("https://evil.example.com")));
        assert!(a.origin_allowed(&headers(&[("host", "x")])));
    }
}
