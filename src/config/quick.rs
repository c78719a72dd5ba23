//! Quick mode: a whole config from command-line flags, no file needed.
//!
//! `tollgate --listen 127.0.0.1:8080 --upstream http://127.0.0.1:3000 --limit 100/s --key header:x-api-key`
//! becomes one catch-all route to the upstream(s) with one rule named `quick`.

use super::raw::{RawConfig, RawRoute, RawRule, RawServer};

/// Build the raw config; validation happens exactly as for a file.
pub fn quick_config(
    listen: Option<&str>,
    upstreams: &[String],
    limits: &[String],
    key: &str,
) -> RawConfig {
    let rules = if limits.is_empty() {
        Vec::new()
    } else {
        vec![RawRule {
            name: "quick".into(),
            key: key.into(),
            limits: limits.to_vec(),
            ..Default::default()
        }]
    };
    RawConfig {
        server: RawServer {
            listen: listen.map(str::to_string),
            ..Default::default()
        },
        routes: vec![RawRoute {
            name: "default".into(),
            upstreams: upstreams.to_vec(),
            rules: rules.iter().map(|r| r.name.clone()).collect(),
            ..Default::default()
        }],
        rules,
        ..Default::default()
    }
}

/// Settings that the environment or flags override over the file (TOLLGATE_LISTEN,
/// TOLLGATE_ADMIN_LISTEN, TOLLGATE_ADMIN_TOKEN, TOLLGATE_ADMIN_READ_TOKEN, TOLLGATE_LOG). Applied at startup and on every reload.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub admin_token: Option<String>,
    pub admin_read_token: Option<String>,
    pub log: Option<String>,
    pub workers: Option<usize>,
    /// --runtime: server.runtime.
    pub runtime: Option<String>,
    /// --max-keys: limits.max_keys.
    pub max_keys: Option<usize>,
    /// --no-store: database.enabled = false (usage in memory only).
    pub no_store: bool,
    /// DATABASE_URL (or --database-url): the Postgres store when the file names none.
    pub database_url: Option<String>,
}

impl Overrides {
    pub fn apply(&self, raw: &mut RawConfig) {
        if let Some(v) = &self.listen {
            raw.server.listen = Some(v.clone());
        }
        if let Some(v) = &self.admin_listen {
            raw.admin.listen = Some(v.clone());
        }
        if let Some(v) = &self.admin_token {
            raw.admin.token = Some(v.clone());
        }
        if let Some(v) = &self.admin_read_token {
            raw.admin.read_token = Some(v.clone());
        }
        if let Some(v) = &self.log {
            raw.log.level = Some(v.clone());
        }
        if let Some(v) = self.workers {
            raw.server.workers = Some(v);
        }
        if let Some(v) = &self.runtime {
            raw.server.runtime = Some(v.clone());
        }
        if let Some(v) = self.max_keys {
            raw.limits.max_keys = Some(v);
        }
        if self.no_store {
            raw.database.enabled = Some(false);
        }
        if raw.database.url.is_none() {
            raw.database.url = self.database_url.clone().filter(|u| !u.is_empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Metrics;

    #[test]
    fn quick_mode_takes_calendar_quotas() {
        let limits = [
            "10/s".to_owned(),
            "10000/d".to_owned(),
            "5/w".to_owned(),
            "9/mo".to_owned(),
        ];
        let upstreams = ["http://127.0.0.1:9".to_owned()];
        let raw = quick_config(None, &upstreams, &limits, "ip");
        let config = crate::config::validate::validate(raw, "quick", &Metrics::new())
            .unwrap_or_else(|e| panic!("{e}"));
        let windows = &config.runtime.rules[0].rule.limits.windows;
        let quotas: Vec<_> = windows.iter().filter(|w| w.quota.is_some()).collect();
        assert_eq!(quotas.len(), 3);
        assert_eq!(windows[1].describe(), "10000/day");
    }
}
