//! Bearer-JWT verification for `jwt:CLAIM` keys.
//!
//! Owns the decoding key and validation settings. A token that fails verification is treated as
//! absent, so the rule's missing-key policy decides (401, anonymous bucket, or skip): an attacker
//! cannot mint a fresh bucket by forging claims.
//!
//! `verify = false` skips the signature check entirely and trusts whatever the client sends. Use it
//! only behind a gateway that has already verified the token; anyone else can pick any key.

use http::HeaderName;
use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::fields::{text, Fields};

/// Scalar claims of one verified token, as strings.
#[derive(Debug, Default)]
pub struct Claims(Vec<(String, String)>);

impl Claims {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn from_map(map: Map<String, Value>) -> Self {
        let scalars = map.into_iter().filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        });
        Self(scalars.collect())
    }
}

/// Verifies tokens from one header with one key.
pub struct JwtVerifier {
    header: HeaderName,
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("JwtVerifier")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// Which key verifies signatures.
pub enum JwtKey<'a> {
    Hs256Secret(&'a [u8]),
    Rs256Pem(&'a [u8]),
    Es256Pem(&'a [u8]),
}

impl JwtVerifier {
    pub fn new(header: HeaderName, key: JwtKey<'_>, verify: bool) -> Result<Self, String> {
        let (alg, key) = match key {
            JwtKey::Hs256Secret(s) => (Algorithm::HS256, DecodingKey::from_secret(s)),
            JwtKey::Rs256Pem(p) => (
                Algorithm::RS256,
                DecodingKey::from_rsa_pem(p).map_err(|e| format!("bad RSA public key: {e}"))?,
            ),
            JwtKey::Es256Pem(p) => (
                Algorithm::ES256,
                DecodingKey::from_ec_pem(p).map_err(|e| format!("bad EC public key: {e}"))?,
            ),
        };
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_aud = false;
        if !verify {
            validation.insecure_disable_signature_validation();
        }
        Ok(Self {
            header,
            key,
            validation,
        })
    }

    /// The claims of the request's token, or `None` when absent or invalid.
    pub fn verify(&self, headers: &dyn Fields) -> Option<Claims> {
        let raw = text(headers, &self.header)?;
        let token = raw
            .strip_prefix("Bearer ")
            .or_else(|| raw.strip_prefix("bearer "))
            .unwrap_or(raw)
            .trim();
        let data = decode::<Map<String, Value>>(token, &self.key, &self.validation).ok()?;
        Some(Claims::from_map(data.claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn headers_with(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h
    }

    #[test]
    fn hs256_valid_forged_and_unverified() {
        let claims = serde_json::json!({"sub": "alice", "tier": 3});
        let good = encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(b"s3cret"),
        )
        .unwrap();
        let forged = encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(b"other"),
        )
        .unwrap();
        let auth = HeaderName::from_static("authorization");
        let v = JwtVerifier::new(auth.clone(), JwtKey::Hs256Secret(b"s3cret"), true).unwrap();
        let c = v.verify(&headers_with(&good)).unwrap();
        assert_eq!(c.get("sub"), Some("alice"));
        assert_eq!(c.get("tier"), Some("3"));
        assert!(
            v.verify(&headers_with(&forged)).is_none(),
            "bad signature is treated as absent"
        );
        assert!(v.verify(&HeaderMap::new()).is_none());
        let trusting = JwtVerifier::new(auth, JwtKey::Hs256Secret(b"x"), false).unwrap();
        assert_eq!(
            trusting.verify(&headers_with(&forged)).unwrap().get("sub"),
            Some("alice")
        );
    }

    #[test]
    fn es256_public_key_verifies_and_rejects_other_keys() {
        let signer = rcgen::KeyPair::generate().unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let claims = serde_json::json!({"sub": "bob"});
        let sign = |kp: &rcgen::KeyPair| {
            let key = EncodingKey::from_ec_pem(kp.serialize_pem().as_bytes()).unwrap();
            encode(&Header::new(Algorithm::ES256), &claims, &key).unwrap()
        };
        let auth = HeaderName::from_static("authorization");
        let pem = signer.public_key_pem();
        let v = JwtVerifier::new(auth, JwtKey::Es256Pem(pem.as_bytes()), true).unwrap();
        assert_eq!(
            v.verify(&headers_with(&sign(&signer))).unwrap().get("sub"),
            Some("bob")
        );
        assert!(v.verify(&headers_with(&sign(&other))).is_none());
        assert!(JwtVerifier::new(
            HeaderName::from_static("x"),
            JwtKey::Rs256Pem(b"junk"),
            true
        )
        .is_err());
    }
}
