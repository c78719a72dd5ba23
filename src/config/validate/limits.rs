//! Limit lists (`["100/m", "10000/day"]`), tiers and per-key overrides, turned into limiter
//! [`Limits`].
//!
//! Owns what a valid limit list is (no two limits on the same window or period) and how a rule's
//! calendar settings (`timezone`, `billing_day`) make quotas of its `/d`, `/w` and `/mo` limits.
//! Tiers and overrides of a rule get the rule's calendar, so a key moved to another tier keeps
//! counting in the same period.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::super::parse::{self, Per};
use super::super::raw::{RawConfig, RawRule};
use super::Errors;
use crate::limiter::calendar::{Calendar, PeriodKind};
use crate::limiter::{Limits, Quota, Window};
use crate::proxy::rate_headers::policy_name;

/// One parsed limit: a maximum per window or period.
pub(crate) type Parsed = (u32, Per);

/// Tier -> rule -> limits, parsed.
pub(super) type Tiers = BTreeMap<String, BTreeMap<String, Vec<Parsed>>>;

pub(super) fn tiers(raw: &RawConfig, errs: &mut Errors) -> Tiers {
    let mut out = Tiers::new();
    for (tier, per_rule) in &raw.tiers {
        errs.check(format!("tiers.{tier}"), parse::name(tier));
        for (rule, limits) in per_rule {
            if !raw.rules.iter().any(|r| &r.name == rule) {
                errs.push(
                    format!("tiers.{tier}.{rule}"),
                    format!("no rule named {rule:?}"),
                );
            }
            let field = format!("tiers.{tier}.{rule}");
            let parsed = parse_limits(limits, &field, errs);
            out.entry(tier.clone())
                .or_default()
                .insert(rule.clone(), parsed);
        }
    }
    out
}

pub(super) fn parse_limits(limits: &[String], field: &str, errs: &mut Errors) -> Vec<Parsed> {
    if limits.is_empty() {
        errs.push(field, "at least one limit is required, e.g. [\"100/m\"]");
    }
    let parsed: Vec<_> = limits
        .iter()
        .enumerate()
        .filter_map(|(i, l)| errs.check(format!("{field}[{i}]"), parse::limit(l)))
        .collect();
    let shared = parsed
        .iter()
        .enumerate()
        .any(|(i, (_, per))| parsed[..i].iter().any(|(_, p)| p == per));
    if shared {
        errs.push(
            field,
            "two limits share a window length or calendar period; keep the tighter one",
        );
    }
    parsed
}

/// A rule's calendar settings, resolved once; quotas are built from it on demand.
pub(super) struct RuleCalendar {
    zone: String,
    billing_day: Option<u8>,
}

impl RuleCalendar {
    /// Checks the rule's `timezone` (else `[limits] timezone`, else UTC) and `billing_day`.
    pub fn of(raw: &RawConfig, r: &RawRule, field: &str, errs: &mut Errors) -> Self {
        let (zone, zone_field) = match (&r.timezone, &raw.limits.timezone) {
            (Some(z), _) => (z.clone(), format!("{field}.timezone")),
            (None, Some(z)) => (z.clone(), "limits.timezone".to_owned()),
            (None, None) => ("UTC".to_owned(), String::new()),
        };
        if let Err(e) = Calendar::new(PeriodKind::Day, &zone, None) {
            errs.push(zone_field, e);
        }
        if let Some(day) = r.billing_day {
            if let Err(e) = Calendar::new(PeriodKind::Month, "UTC", Some(day)) {
                errs.push(format!("{field}.billing_day"), e);
            }
        }
        Self {
            zone,
            billing_day: r.billing_day,
        }
    }

    fn quota(&self, kind: PeriodKind) -> Option<Arc<Quota>> {
        let anchor = (kind == PeriodKind::Month)
            .then_some(self.billing_day)
            .flatten();
        let calendar = Calendar::new(kind, &self.zone, anchor).ok()?;
        Some(Arc::new(Quota::new(calendar, &self.zone)))
    }
}

/// Build the limiter's windows; the policy name is the rule's, suffixed when it has several.
pub(super) fn to_limits(rule: &str, parsed: &[Parsed], cal: &RuleCalendar) -> Arc<Limits> {
    let windows = parsed
        .iter()
        .filter_map(|&(max, per)| {
            let mut policy = String::new();
            match per {
                Per::Window(window) => {
                    let dur_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
                    policy_name(rule, parsed.len(), dur_ms, None, &mut policy);
                    Some(Window::sliding(dur_ms, max, &policy))
                }
                Per::Calendar(kind) => {
                    policy_name(rule, parsed.len(), 0, Some(kind), &mut policy);
                    Some(Window::calendar(cal.quota(kind)?, max, &policy))
                }
            }
        })
        .collect::<Vec<_>>();
    Arc::new(Limits {
        windows: windows.into(),
    })
}

/// A per-key override, checked once.
pub(super) struct Override {
    pub key: String,
    /// Only this rule; None means every rule.
    pub rule: Option<String>,
    pub source: OverrideSource,
}

pub(super) enum OverrideSource {
    Tier(String),
    Limits(Vec<Parsed>),
}

impl Override {
    /// The limits this override gives rule `rule`, if it names any for it.
    pub fn limits_for<'a>(&'a self, tiers: &'a Tiers, rule: &str) -> Option<&'a [Parsed]> {
        if self.rule.as_ref().is_some_and(|n| n != rule) {
            return None;
        }
        match &self.source {
            OverrideSource::Limits(l) => Some(l.as_slice()),
            OverrideSource::Tier(tier) => tiers.get(tier)?.get(rule).map(Vec::as_slice),
        }
    }
}

pub(super) fn overrides(raw: &RawConfig, tiers: &Tiers, errs: &mut Errors) -> Vec<Override> {
    let mut out = Vec::new();
    for (j, o) in raw.overrides.iter().enumerate() {
        let field = format!("overrides[{j}]");
        if o.key.is_empty() {
            errs.push(format!("{field}.key"), "must not be empty");
        }
        if let Some(rule) = &o.rule {
            if !raw.rules.iter().any(|r| &r.name == rule) {
                errs.push(format!("{field}.rule"), format!("no rule named {rule:?}"));
            }
        }
        let source = match (&o.tier, o.limits.is_empty()) {
            (Some(_), false) => {
                errs.push(field, "set either tier or limits, not both");
                continue;
            }
            (None, true) => {
                errs.push(field, "set a tier or limits");
                continue;
            }
            (None, false) => {
                OverrideSource::Limits(parse_limits(&o.limits, &format!("{field}.limits"), errs))
            }
            (Some(tier), true) if !tiers.contains_key(tier) => {
                errs.push(format!("{field}.tier"), format!("no tier named {tier:?}"));
                continue;
            }
            (Some(tier), true) => OverrideSource::Tier(tier.clone()),
        };
        out.push(Override {
            key: o.key.clone(),
            rule: o.rule.clone(),
            source,
        });
    }
    out
}
