//! Compiled rate-limit rules, as the config layer hands them over.
//!
//! Owns [`Rule`], [`Limits`], [`Window`], the stable [`rule_id`] and the process-wide registry
//! of compiled rules that gives each a 4-byte [`Rule::index`] (what a table entry keeps, see
//! `rule_at`). Must not touch raw config,
//! parsing or validation: these values are already valid (non-zero durations, at most 255 windows
//! per limit set) and shared behind `Arc`s across reloads.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use super::calendar::PeriodKind;
use super::quota::{kind_name, Quota};

/// One limit: at most `max` cost per sliding window of `dur_ms`, or per calendar period of
/// `quota`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Window length; also the key that matches a counter across reloads. For a quota, its tag
    /// (see `quota.rs`), which no window length reaches.
    pub dur_ms: u64,
    /// Allowed cost per window or period.
    pub max: u32,
    /// Name shown in `RateLimit-Policy` headers.
    pub policy: Arc<str>,
    /// Set for a calendar quota.
    pub quota: Option<Arc<Quota>>,
}

impl Window {
    /// A sliding window.
    pub fn sliding(dur_ms: u64, max: u32, policy: &str) -> Self {
        Self {
            dur_ms,
            max,
            policy: policy.into(),
            quota: None,
        }
    }

    /// A calendar quota.
    pub fn calendar(quota: Arc<Quota>, max: u32, policy: &str) -> Self {
        Self {
            dur_ms: quota.tag,
            max,
            policy: policy.into(),
            quota: Some(quota),
        }
    }

    /// The allowance, for violation samples: "100/1m", "50/30s", "10000/day".
    pub fn describe(&self) -> String {
        let mut out = format!("{}/", self.max);
        let calendar = self.quota.as_ref().map(|q| q.kind());
        write_span(self.dur_ms, calendar, &mut out);
        out
    }
}

/// A window's length as policy names and samples show it ("1h", "90m", "30s", "500ms"), or the
/// calendar period's name ("day", "week", "month").
pub fn write_span(dur_ms: u64, calendar: Option<PeriodKind>, out: &mut String) {
    if let Some(kind) = calendar {
        out.push_str(kind_name(kind));
        return;
    }
    let _ = match dur_ms {
        ms if ms % 3_600_000 == 0 => write!(out, "{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => write!(out, "{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => write!(out, "{}s", ms / 1_000),
        ms => write!(out, "{ms}ms"),
    };
}

/// The windows a request must all fit in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub windows: Box<[Window]>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Stable across reloads (see [`rule_id`]) so a reloaded rule keeps its counters.
    pub id: u64,
    /// What a table entry keeps of its rule: 4 bytes instead of the id and the name (see
    /// `rule_at`). Also stable across reloads, for the life of the process.
    pub index: u32,
    pub name: Arc<str>,
    pub limits: Arc<Limits>,
    /// Counted and reported but never denies.
    pub shadow: bool,
    /// Per-key overrides and tier limits, by key display (`parts joined by |`).
    pub overrides: HashMap<String, Arc<Limits>>,
}

impl Rule {
    /// A rule without overrides; its id is derived from `name`.
    pub fn new(name: &str, limits: Arc<Limits>, shadow: bool) -> Self {
        let (id, name): (u64, Arc<str>) = (rule_id(name), name.into());
        Self {
            id,
            index: register(id, &name),
            name,
            limits,
            shadow,
            overrides: HashMap::new(),
        }
    }

    /// Gives the key displayed as `key` its own limits.
    pub fn with_override(mut self, key: impl Into<String>, limits: Arc<Limits>) -> Self {
        self.overrides.insert(key.into(), limits);
        self
    }

    /// The limits for a key's display. With no overrides this is one branch; otherwise one
    /// `HashMap<String, _>` lookup by `&str`, which does not allocate.
    pub fn limits_for(&self, display: &str) -> &Limits {
        if self.overrides.is_empty() {
            return &self.limits;
        }
        self.overrides.get(display).unwrap_or(&self.limits)
    }
}

impl Limits {
    /// Whether any limit is a calendar quota.
    pub fn has_quota(&self) -> bool {
        self.windows.iter().any(|w| w.quota.is_some())
    }

    /// Limits from `(dur_ms, max, policy)` triples: a convenience for tests and the config layer.
    pub fn new<'p>(windows: impl IntoIterator<Item = (u64, u32, &'p str)>) -> Arc<Self> {
        let windows = windows
            .into_iter()
            .map(|(dur_ms, max, policy)| Window::sliding(dur_ms, max, policy))
            .collect();
        Arc::new(Self { windows })
    }
}

/// A rule's stable id: 64-bit FNV-1a of its name.
///
/// A fixed function rather than foldhash's fixed-seed state because foldhash does not promise the
/// same output across versions, and ids may outlive the binary (the usage store records them).
pub fn rule_id(name: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    name.bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// Every rule this process has compiled, by [`Rule::index`]. A rule keeps its index for the life
/// of the process, because an entry can outlive its rule's config (a reload that drops a rule
/// leaves its keys until they go idle). Rows are never removed: one per distinct rule name ever
/// configured, a few dozen bytes each.
#[derive(Default)]
struct Registry {
    by_id: HashMap<u64, u32>,
    rules: Vec<(u64, Arc<str>)>,
}

static REGISTRY: LazyLock<RwLock<Registry>> = LazyLock::new(RwLock::default);

/// The index of rule `id`, registered under `name` if new.
fn register(id: u64, name: &Arc<str>) -> u32 {
    if let Some(&index) = REGISTRY
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .by_id
        .get(&id)
    {
        return index;
    }
    let mut registry = REGISTRY.write().unwrap_or_else(PoisonError::into_inner);
    let Registry { by_id, rules } = &mut *registry;
    *by_id.entry(id).or_insert_with(|| {
        rules.push((id, name.clone()));
        // Four billion distinct rule names in one process: not reachable by configuration.
        u32::try_from(rules.len() - 1).unwrap_or(u32::MAX)
    })
}

/// The id and name of the rule with [`Rule::index`] `index`.
pub fn rule_at(index: u32) -> Option<(u64, Arc<str>)> {
    let registry = REGISTRY.read().unwrap_or_else(PoisonError::into_inner);
    registry.rules.get(index as usize).cloned()
}

/// The [`Rule::index`] of rule `id`, if a rule with that id was ever compiled.
pub fn index_of(id: u64) -> Option<u32> {
    let registry = REGISTRY.read().unwrap_or_else(PoisonError::into_inner);
    registry.by_id.get(&id).copied()
}

/// Every registered rule's id and name, by index: for a walk over many entries.
pub fn registered() -> Vec<(u64, Arc<str>)> {
    REGISTRY
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .rules
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_id_is_stable_and_distinct() {
        assert_eq!(rule_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(rule_id("a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(rule_id("api"), rule_id("login"));
    }

    #[test]
    fn a_rule_keeps_its_index_when_compiled_again_and_the_registry_names_it() {
        let limits = Limits::new([(1_000, 5, "5/s")]);
        let first = Rule::new("registry-a", limits.clone(), false);
        let again = Rule::new("registry-a", Limits::new([(60_000, 9, "9/m")]), true);
        let other = Rule::new("registry-b", limits, false);
        assert_eq!(first.index, again.index, "a reload keeps the index");
        assert_ne!(first.index, other.index);
        assert_eq!(rule_at(first.index), Some((first.id, "registry-a".into())));
        assert_eq!(index_of(other.id), Some(other.index));
        assert_eq!(index_of(rule_id("registry-never-compiled")), None);
        assert_eq!(registered()[other.index as usize].0, other.id);
    }

    #[test]
    fn windows_describe_themselves_as_limits() {
        let limits = Limits::new([(1_000, 5, "a"), (30_000, 50, "b"), (5_400_000, 7, "c")]);
        let described: Vec<_> = limits.windows.iter().map(Window::describe).collect();
        assert_eq!(described, ["5/1s", "50/30s", "7/90m"]);
    }

    #[test]
    fn overrides_apply_to_their_key_only() {
        let rule = Rule::new("api", Limits::new([(1_000, 10, "10/s")]), false)
            .with_override("vip", Limits::new([(1_000, 100, "100/s")]));
        assert_eq!(rule.limits_for("vip").windows[0].max, 100);
        assert_eq!(rule.limits_for("other").windows[0].max, 10);
    }
}
