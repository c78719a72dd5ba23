//! [`AnyStore`]: the one concrete store type the app holds, whichever database the config chose.
//!
//! Owns nothing but delegation: every method forwards to the [`PgStore`] or [`SqliteStore`]
//! inside. Must not add behaviour of its own, so both stores stay testable through the same
//! [`Store`] trait.

use super::{
    Batch, FlushOutcome, MigrationState, OverrideRow, PgStore, SqliteStore, Store, StoreError,
    TierRow, UsageKey, UsageRow, ViolationFilter, ViolationRow,
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

    async fn list_overrides(&self) -> Result<Vec<OverrideRow>, StoreError> {
        delegate!(self.list_overrides())
    }

    async fn upsert_override(&self, row: &OverrideRow) -> Result<(), StoreError> {
        delegate!(self.upsert_override(row))
    }

    async fn delete_override(&self, rule: &str, key: &str) -> Result<bool, StoreError> {
        delegate!(self.delete_override(rule, key))
    }

    async fn list_tiers(&self) -> Result<Vec<TierRow>, StoreError> {
        delegate!(self.list_tiers())
    }

    async fn upsert_tier(&self, row: &TierRow) -> Result<(), StoreError> {
        delegate!(self.upsert_tier(row))
    }

    async fn delete_tier(&self, name: &str) -> Result<bool, StoreError> {
        delegate!(self.delete_tier(name))
    }
}
