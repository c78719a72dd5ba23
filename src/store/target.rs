//! Where the store lives ([`StoreTarget`]) and [`connect`], which opens the matching store.
//!
//! Owns the redaction of database URLs: a target prints without its password, in `Display`,
//! `Debug` and every error. Must not run migrations or queries; the caller decides when.

use std::fmt;
use std::path::PathBuf;

use super::{AnyStore, PgStore, SqliteStore, StoreError};

/// Where the store lives, as the config names it.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreTarget {
    /// A PostgreSQL URL, e.g. `postgres://tollgate:secret@db:5432/tollgate`; shared by instances.
    Postgres { url: String },
    /// A local SQLite file, created if missing; for a single instance.
    Sqlite { path: PathBuf },
}

/// Opens the store the target names. Postgres connects lazily (an outage at startup leaves the
/// process degraded, not dead); SQLite opens its file now, so a bad path fails at startup.
pub async fn connect(target: &StoreTarget) -> Result<AnyStore, StoreError> {
    match target {
        StoreTarget::Postgres { url } => PgStore::connect_lazy(url).map(AnyStore::Postgres),
        StoreTarget::Sqlite { path } => SqliteStore::open(path).await.map(AnyStore::Sqlite),
    }
}

impl fmt::Display for StoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreTarget::Postgres { url } => f.write_str(&redact_url(url)),
            StoreTarget::Sqlite { path } => write!(f, "sqlite:{}", path.display()),
        }
    }
}

impl fmt::Debug for StoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreTarget({self})")
    }
}

/// The URL with the password in its user info and any `password=` query parameter replaced
/// by `***`. Anything unparseable is kept as is apart from those two places.
pub(crate) fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    let authority_start = out.find("://").map_or(0, |i| i + 3);
    let authority_end = out[authority_start..]
        .find(['/', '?', '#'])
        .map_or(out.len(), |i| authority_start + i);
    if let Some(at) = out[authority_start..authority_end].rfind('@') {
        let userinfo = authority_start..authority_start + at;
        if let Some(colon) = out[userinfo.clone()].find(':') {
            out.replace_range(userinfo.start + colon + 1..userinfo.end, "***");
        }
    }
    redact_query_password(&out)
}

fn redact_query_password(url: &str) -> String {
    let Some(q) = url.find('?') else {
        return url.to_owned();
    };
    let (base, query) = url.split_at(q + 1);
    let params: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_owned(),
        })
        .collect();
    format!("{base}{}", params.join("&"))
}

/// The password a URL carries in its user info, for scrubbing it out of foreign error text.
pub(crate) fn url_password(url: &str) -> Option<&str> {
    let authority_start = url.find("://")? + 3;
    let rest = &url[authority_start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    userinfo
        .split_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty())
}

/// An error for a URL that could not be turned into connect options, with no password in it.
pub(crate) fn target_error(url: &str, reason: impl fmt::Display) -> StoreError {
    let mut reason = reason.to_string();
    if let Some(password) = url_password(url) {
        reason = reason.replace(password, "***");
    }
    StoreError::Target {
        target: redact_url(url),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_print() {
        let t = StoreTarget::Postgres {
            url: "postgres://app:s3cr%40t@db.internal:5432/tg?sslmode=require&password=other"
                .into(),
        };
        let shown = format!("{t} {t:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(!shown.contains("other"), "{shown}");
        assert!(
            shown.contains("postgres://app:***@db.internal:5432/tg?sslmode=require&password=***")
        );
    }

    #[test]
    fn urls_without_passwords_are_unchanged() {
        for url in [
            "postgres://postgres@127.0.0.1/test",
            "postgres:///test?host=/run/pg",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }

    #[test]
    fn target_errors_scrub_the_password_from_the_reason() {
        let e = target_error("postgres://u:hunter2@h/db", "bad thing near hunter2");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
