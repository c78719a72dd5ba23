//! The `[jwt]` section: algorithm and key material for `jwt:CLAIM` keys.

use http::HeaderName;

use super::super::raw::RawJwt;
use super::Errors;
use crate::limiter::jwt::{JwtKey, JwtVerifier};

pub(super) fn verifier(j: &RawJwt, errs: &mut Errors) -> Option<JwtVerifier> {
    let header = j
        .header
        .as_deref()
        .unwrap_or("authorization")
        .to_ascii_lowercase();
    let header = errs.check(
        "jwt.header",
        HeaderName::from_bytes(header.as_bytes())
            .map_err(|_| format!("invalid header name {header:?}")),
    )?;
    let verify = j.verify.unwrap_or(true);
    let alg = j.algorithm.as_deref().unwrap_or("HS256");
    let material = match alg {
        "HS256" => secret(j, errs)?,
        "RS256" | "ES256" => {
            let path = j.public_key_file.as_deref().or_else(|| {
                errs.push(
                    "jwt.public_key_file",
                    format!("{alg} needs a PEM public key file"),
                );
                None
            })?;
            errs.check(
                "jwt.public_key_file",
                std::fs::read(path).map_err(|e| format!("cannot read {path:?}: {e}")),
            )?
        }
        other => {
            errs.push(
                "jwt.algorithm",
                format!("expected HS256, RS256 or ES256, got {other:?}"),
            );
            return None;
        }
    };
    let key = match alg {
        "HS256" => JwtKey::Hs256Secret(&material),
        "RS256" => JwtKey::Rs256Pem(&material),
        _ => JwtKey::Es256Pem(&material),
    };
    errs.check("jwt", JwtVerifier::new(header, key, verify))
}

fn secret(j: &RawJwt, errs: &mut Errors) -> Option<Vec<u8>> {
    match (&j.secret, &j.secret_env) {
        (Some(s), None) => Some(s.as_bytes().to_vec()),
        (None, Some(var)) => errs.check(
            "jwt.secret_env",
            std::env::var(var)
                .map(String::into_bytes)
                .map_err(|_| format!("environment variable {var} is not set")),
        ),
        (Some(_), Some(_)) => {
            errs.push("jwt", "set secret or secret_env, not both");
            None
        }
        (None, None) => {
            errs.push("jwt.secret", "HS256 needs secret or secret_env");
            None
        }
    }
}
