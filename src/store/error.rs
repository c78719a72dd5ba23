//! [`StoreError`]: every way a store call fails, and whether retrying it can help.
//!
//! Owns the transient/permanent split a batcher relies on (retry an outage, drop a batch the
//! database will never accept). Must never carry a database password: targets appear only in
//! their redacted `Display` form.

use std::borrow::Cow;

/// Every way a store call fails.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store target could not be turned into connect options (bad URL, bad path).
    #[error("invalid store target {target}: {reason}")]
    Target { target: String, reason: String },

    /// A query, a connection or the pool failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),

    /// Applying migrations failed, or an applied migration no longer matches the embedded one.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    /// A stored value could not be decoded (e.g. a `limits` column that is not a JSON list).
    #[error("stored {what} is malformed: {reason}")]
    Corrupt { what: &'static str, reason: String },
}

impl StoreError {
    /// True when the same call may succeed later unchanged: the database was unreachable, the
    /// connection dropped, the pool timed out or was closed, or the database asked for a retry
    /// (lock conflict, shutdown, too many connections). Constraint, syntax and decode errors
    /// are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(e) => sqlx_is_transient(e),
            StoreError::Migrate(
                sqlx::migrate::MigrateError::Execute(e)
                | sqlx::migrate::MigrateError::ExecuteMigration(e, _),
            ) => sqlx_is_transient(e),
            StoreError::Target { .. } | StoreError::Migrate(_) | StoreError::Corrupt { .. } => {
                false
            }
        }
    }
}

fn sqlx_is_transient(error: &sqlx::Error) -> bool {
    match error {
        // A protocol or TLS error is what a connection cut mid-handshake looks like (e.g. EOF
        // where the SSLRequest answer should be): the wire broke, not the data.
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => database_is_transient(db.as_ref()),
        _ => false,
    }
}

fn database_is_transient(db: &dyn sqlx::error::DatabaseError) -> bool {
    let code = db.code().unwrap_or(Cow::Borrowed(""));
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        return sqlite_code_is_transient(&code);
    }
    postgres_state_is_transient(&code)
}

/// SQLSTATE classes and codes that mean "not now" rather than "never".
fn postgres_state_is_transient(state: &str) -> bool {
    state.starts_with("08") // connection exception
        || state.starts_with("53") // insufficient resources (too many connections, disk full)
        || matches!(
            state,
            "40001" // serialization_failure
            | "40P01" // deadlock_detected
            | "55P03" // lock_not_available
            | "57014" // query_canceled (our statement_timeout)
            | "57P01" // admin_shutdown
            | "57P02" // crash_shutdown
            | "57P03" // cannot_connect_now (starting up)
        )
}

/// SQLite reports extended result codes; the primary code is the low byte.
fn sqlite_code_is_transient(code: &str) -> bool {
    const BUSY: i64 = 5;
    const LOCKED: i64 = 6;
    const IOERR: i64 = 10;
    code.parse::<i64>()
        .is_ok_and(|c| matches!(c & 0xff, BUSY | LOCKED | IOERR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_and_pool_errors_are_transient() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(StoreError::from(sqlx::Error::Io(io)).is_transient());
        assert!(StoreError::from(sqlx::Error::PoolTimedOut).is_transient());
        assert!(StoreError::from(sqlx::Error::PoolClosed).is_transient());
        assert!(!StoreError::from(sqlx::Error::RowNotFound).is_transient());
    }

    #[test]
    fn database_codes_split_as_documented() {
        assert!(postgres_state_is_transient("08006"));
        assert!(postgres_state_is_transient("40001"));
        assert!(!postgres_state_is_transient("23505")); // unique_violation
        assert!(!postgres_state_is_transient("42601")); // syntax_error
        assert!(sqlite_code_is_transient("5"));
        assert!(sqlite_code_is_transient("517")); // SQLITE_BUSY_SNAPSHOT
        assert!(!sqlite_code_is_transient("19")); // SQLITE_CONSTRAINT
        assert!(!sqlite_code_is_transient("1555")); // SQLITE_CONSTRAINT_PRIMARYKEY
    }
}
