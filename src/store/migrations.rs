//! The embedded migrations of both stores, and the status report behind `tollgate migrate --status`.
//!
//! Owns the migrators (`migrations/postgres` and `migrations/sqlite`, compiled in) and the name of
//! the table that records applied versions, [`TABLE`]. Must not hold schema SQL: that lives in
//! the `.sql` files.

use std::fmt::Write as _;

use sqlx::migrate::Migrator;

use super::{connect, Store, StoreError, StoreTarget};

/// The table where applied migrations are recorded (sqlx's default is `_sqlx_migrations`).
pub const TABLE: &str = "schema_migrations";

/// One embedded migration and whether the database has applied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub version: i64,
    pub description: String,
    pub applied: bool,
}

pub(crate) fn postgres() -> Migrator {
    named(sqlx::migrate!("./migrations/postgres"))
}

pub(crate) fn sqlite() -> Migrator {
    named(sqlx::migrate!("./migrations/sqlite"))
}

fn named(mut migrator: Migrator) -> Migrator {
    migrator.dangerous_set_table_name(TABLE);
    migrator
}

/// Every migration of `migrator` in version order, marked applied when its version is in
/// `applied` (the successful versions read from [`TABLE`]).
pub(crate) fn states(migrator: &Migrator, applied: &[i64]) -> Vec<MigrationState> {
    let mut states: Vec<MigrationState> = migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| MigrationState {
            version: m.version,
            description: m.description.to_string(),
            applied: applied.contains(&m.version),
        })
        .collect();
    states.sort_by_key(|s| s.version);
    states
}

/// Connects to `target` and reports its migrations, one line each; for `tollgate migrate --status`.
/// Applies nothing and creates no table (opening a SQLite target does create an empty file).
pub async fn status_report(target: &StoreTarget) -> Result<String, StoreError> {
    let store = connect(target).await?;
    let states = store.migration_status().await?;
    Ok(format!("{target}\n{}", format_status(&states)))
}

/// One line per migration: `0001 applied  initial`, then a summary line.
pub fn format_status(states: &[MigrationState]) -> String {
    let mut out = String::new();
    for s in states {
        let mark = if s.applied { "applied" } else { "pending" };
        let _ = writeln!(out, "{:04} {mark}  {}", s.version, s.description);
    }
    let pending = states.iter().filter(|s| !s.applied).count();
    let _ = match pending {
        0 => writeln!(out, "up to date ({} migrations)", states.len()),
        n => writeln!(out, "{n} of {} migrations pending", states.len()),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_stores_embed_the_same_versions() {
        let versions = |m: Migrator| m.iter().map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(versions(postgres()), versions(sqlite()));
        assert_eq!(postgres().table_name, TABLE);
    }

    #[test]
    fn status_lists_pending_and_applied() {
        let states = states(&postgres(), &[]);
        assert!(states.iter().all(|s| !s.applied));
        let text = format_status(&states);
        assert!(text.starts_with("0001 pending  initial\n"), "{text}");
        assert!(text.contains("0002 pending  admin\n"), "{text}");
        assert!(
            text.contains("0003 pending  usage period index\n"),
            "{text}"
        );
        assert!(text.ends_with("3 of 3 migrations pending\n"), "{text}");
    }
}
