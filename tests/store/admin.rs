//! Admin-plane cases: migrations and their status, overrides and tiers.

use tollgate::store::{OverrideRow, Store, TierRow};

use crate::migrated;

pub async fn migrate_is_idempotent_and_status_shows_it<S: Store>(store: &S) {
    let before = store.migration_status().await.unwrap();
    assert!(!before.is_empty());
    assert!(before.iter().all(|m| !m.applied), "{before:?}");
    assert_eq!(
        (before[0].version, before[0].description.as_str()),
        (1, "initial")
    );

    migrated(store).await;
    migrated(store).await;
    let after = store.migration_status().await.unwrap();
    assert_eq!(after.len(), before.len());
    assert!(after.iter().all(|m| m.applied), "{after:?}");
    store.ping().await.unwrap();
}

pub async fn overrides_round_trip<S: Store>(store: &S) {
    migrated(store).await;
    let gold = OverrideRow {
        rule: "api".into(),
        key: "acme".into(),
        limits: vec!["100/m".into(), "10000/d".into()],
        tier: Some("gold".into()),
        updated_at_ms: 1,
    };
    let other = OverrideRow {
        key: "zeta".into(),
        limits: vec![],
        tier: None,
        ..gold.clone()
    };
    store.upsert_override(&other).await.unwrap();
    store.upsert_override(&gold).await.unwrap();
    assert_eq!(
        store.list_overrides().await.unwrap(),
        vec![gold.clone(), other.clone()]
    );

    let replaced = OverrideRow {
        limits: vec!["5/s".into()],
        tier: None,
        updated_at_ms: 2,
        ..gold
    };
    store.upsert_override(&replaced).await.unwrap();
    assert_eq!(store.list_overrides().await.unwrap(), vec![replaced, other]);

    assert!(store.delete_override("api", "acme").await.unwrap());
    assert!(!store.delete_override("api", "acme").await.unwrap());
    assert!(store.delete_override("api", "zeta").await.unwrap());
    assert!(store.list_overrides().await.unwrap().is_empty());
}

pub async fn tiers_round_trip<S: Store>(store: &S) {
    migrated(store).await;
    let gold = TierRow {
        name: "gold".into(),
        limits: vec!["1000/m".into()],
        updated_at_ms: 1,
    };
    let free = TierRow {
        name: "free".into(),
        limits: vec!["10/m".into(), "100/d".into()],
        updated_at_ms: 1,
    };
    store.upsert_tier(&gold).await.unwrap();
    store.upsert_tier(&free).await.unwrap();
    assert_eq!(
        store.list_tiers().await.unwrap(),
        vec![free.clone(), gold.clone()]
    );

    let gold2 = TierRow {
        limits: vec!["2000/m".into()],
        updated_at_ms: 2,
        ..gold
    };
    store.upsert_tier(&gold2).await.unwrap();
    assert_eq!(store.list_tiers().await.unwrap(), vec![free, gold2]);
    assert!(store.delete_tier("gold").await.unwrap());
    assert!(!store.delete_tier("gold").await.unwrap());
    assert_eq!(store.list_tiers().await.unwrap().len(), 1);
}
