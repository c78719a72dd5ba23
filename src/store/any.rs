//! [`AnyStore`]: the one concrete store type the app holds, whichever database the config chose.
//!
//! Owns nothing but delegation: every method forwards to the [`PgStore`] or [`SqliteStore`]
//! inside. Must not add behaviour of its own, so both stores stay testable through the same
//! [`Store`] trait.

use super::{
    AuditRow, Batch, ConfigEntryRow, FlushOutcome, KeyCount, MigrationState, PgStore, SqliteStore,
    Store, StoreError, TopQuery, TrafficRow, UsageKey, UsageRow, ViolationFilter, ViolationRow,
};

/// Either store, chosen at startup by [`connect`](super::connect).
#[derive(Debug, Clone)]
pub enum AnyStore {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

impl AnyStore {
    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match self {
            AnyStore::Postgres(s) => s.close().await,
            AnyStore::Sqlite(s) => s.close().await,
        }
    }
}

/// Forwards one call to whichever store is inside.
macro_rules! delegate {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            AnyStore::Postgres(s) => s.$method($($arg),*).await,
            AnyStore::Sqlite(s) => s.$method($($arg),*).await,
        }
    };
}

impl Store for AnyStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        delegate!(self.migrate())
    }

    async fn migration_status(&self) -> Result<Vec<MigrationState>, StoreError> {
        delegate!(self.migration_status())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        delegate!(self.ping())
    }

    async fn flush(&self, batch: &Batch) -> Result<FlushOutcome, StoreError> {
        delegate!(self.flush(batch))
    }

    async fn usage_for_period(
        &self,
        period: &str,
        period_start: i64,
    ) -> Result<Vec<UsageRow>, StoreError> {
        delegate!(self.usage_for_period(period, period_start))
    }

    async fn usage_totals(&self, keys: &[UsageKey]) -> Result<Vec<UsageRow>, StoreError> {
        delegate!(self.usage_totals(keys))
    }

    async fn violations(&self, filter: &ViolationFilter) -> Result<Vec<ViolationRow>, StoreError> {
        delegate!(self.violations(filter))
    }

    async fn list_config_entries(&self) -> Result<Vec<ConfigEntryRow>, StoreError> {
        delegate!(self.list_config_entries())
    }

    async fn upsert_config_entry(&self, row: &ConfigEntryRow) -> Result<(), StoreError> {
        delegate!(self.upsert_config_entry(row))
    }

    async fn delete_config_entry(&self, id: &str) -> Result<bool, StoreError> {
        delegate!(self.delete_config_entry(id))
    }

    async fn append_audit(&self, row: &AuditRow) -> Result<(), StoreError> {
        delegate!(self.append_audit(row))
    }

    async fn list_audit(&self, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        delegate!(self.list_audit(limit))
    }

    async fn traffic(
        &self,
        range: &TopQuery,
        bucket_secs: i64,
    ) -> Result<Vec<TrafficRow>, StoreError> {
        delegate!(self.traffic(range, bucket_secs))
    }

    async fn top_usage(&self, q: &TopQuery) -> Result<Vec<KeyCount>, StoreError> {
        delegate!(self.top_usage(q))
    }

    async fn top_violators(&self, q: &TopQuery) -> Result<Vec<KeyCount>, StoreError> {
        delegate!(self.top_violators(q))
    }

    async fn delete_usage(&self, row: &UsageKey) -> Result<u64, StoreError> {
        delegate!(self.delete_usage(row))
    }
}
