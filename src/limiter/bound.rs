//! A rule as a route applies it: the limiter rule plus how to find its key and cost.
//!
//! Owns nothing mutable; built by `config::validate` and shared by every route that names the rule.

use std::sync::Arc;

use metrics::Counter;

use super::extract::{Cost, KeySpec, OnMissing};
use super::Rule;
use crate::telemetry::{Metrics, DECISIONS};

/// A compiled rule bound to its key spec, missing-key policy and cost.
#[derive(Debug)]
pub struct BoundRule {
    pub rule: Arc<Rule>,
    pub key: KeySpec,
    pub on_missing: OnMissing,
    pub cost: Cost,
    pub metrics: RuleMetrics,
}

/// Decision counters of one rule, registered once per config.
#[derive(Debug, Clone)]
pub struct RuleMetrics {
    pub allow: Counter,
    pub deny: Counter,
    pub shadow_deny: Counter,
    pub missing_key: Counter,
}

impl RuleMetrics {
    pub fn new(metrics: &Metrics, rule: &str) -> Self {
        let c = |outcome| metrics.counter(DECISIONS, &[("rule", rule), ("outcome", outcome)]);
        Self {
            allow: c("allow"),
            deny: c("deny"),
            shadow_deny: c("shadow_deny"),
            missing_key: c("missing_key"),
        }
    }
}
