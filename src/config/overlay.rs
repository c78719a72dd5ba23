//! Config entries made through the admin API: rules, tiers and per-key overrides laid over the
//! file's, so one validation covers both and a reload of the file keeps them.
//!
//! Owns the entry ids (`rule:NAME`, `tier:NAME`, `override:RULE:KEY`, `*` for every rule), the
//! JSON form an entry is posted and stored in, and how entries merge into a [`RawConfig`]. Must
//! not validate limits itself: the merged config goes through `validate` like any file.

use std::collections::BTreeMap;

use serde_json::Value;

use super::raw::{RawConfig, RawOverride, RawRule};
use super::{ConfigError, ConfigErrors};

/// One API-made entry, as posted.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A rule, and routes that should check it beside their own list.
    Rule {
        rule: RawRule,
        routes: Vec<String>,
    },
    /// Rule name -> limits.
    Tier {
        name: String,
        limits: BTreeMap<String, Vec<String>>,
    },
    Override(RawOverride),
}

impl Entry {
    /// Parses a posted or stored body: `{"kind": "rule" | "tier" | "override", ...}`. Unknown
    /// fields are errors, as in the file.
    pub fn from_json(body: &Value) -> Result<Entry, ConfigErrors> {
        let mut fields = body.as_object().cloned().ok_or_else(|| {
            one(
                "(body)",
                "expected a JSON object with a \"kind\"".to_owned(),
            )
        })?;
        let kind = fields.remove("kind");
        let rest = Value::Object(fields.clone());
        match kind.as_ref().and_then(Value::as_str) {
            Some("rule") => {
                let routes = match fields.remove("routes") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(v) => serde_json::from_value(v).map_err(parse("rule.routes"))?,
                };
                let rule = serde_json::from_value(Value::Object(fields)).map_err(parse("rule"))?;
                Ok(Entry::Rule { rule, routes })
            }
            Some("tier") => {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Tier {
                    name: String,
                    limits: BTreeMap<String, Vec<String>>,
                }
                let t: Tier = serde_json::from_value(rest).map_err(parse("tier"))?;
                Ok(Entry::Tier {
                    name: t.name,
                    limits: t.limits,
                })
            }
            Some("override") => Ok(Entry::Override(
                serde_json::from_value(rest).map_err(parse("override"))?,
            )),
            _ => Err(one(
                "kind",
                "expected \"rule\", \"tier\" or \"override\"".to_owned(),
            )),
        }
    }

    /// The body as stored and listed, `kind` included.
    pub fn to_json(&self) -> Value {
        let mut v = match self {
            Entry::Rule { rule, routes } => {
                let mut v = serde_json::to_value(rule).unwrap_or(Value::Null);
                v["routes"] = serde_json::json!(routes);
                v
            }
            Entry::Tier { name, limits } => serde_json::json!({"name": name, "limits": limits}),
            Entry::Override(o) => serde_json::to_value(o).unwrap_or(Value::Null),
        };
        v["kind"] = Value::from(self.kind());
        v
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Entry::Rule { .. } => "rule",
            Entry::Tier { .. } => "tier",
            Entry::Override(_) => "override",
        }
    }

    pub fn id(&self) -> String {
        match self {
            Entry::Rule { rule, .. } => rule_id(&rule.name),
            Entry::Tier { name, .. } => tier_id(name),
            Entry::Override(o) => override_id(o),
        }
    }

    /// Lays this entry over `raw`: a rule or override with the same id is replaced in place,
    /// a new one appended; a tier replaces the whole tier. Returns the field path the entry has
    /// in `raw`, so validation errors can be named in terms of the body.
    fn merge_into(&self, raw: &mut RawConfig) -> Result<String, ConfigErrors> {
        match self {
            Entry::Rule { rule, routes } => {
                let i = upsert(&mut raw.rules, rule.clone(), |r| r.name == rule.name);
                for (j, route) in routes.iter().enumerate() {
                    let Some(r) = raw.routes.iter_mut().find(|r| &r.name == route) else {
                        return Err(one(
                            &format!("rule.routes[{j}]"),
                            format!("no route named {route:?}"),
                        ));
                    };
                    if !r.rules.contains(&rule.name) {
                        r.rules.push(rule.name.clone());
                    }
                }
                Ok(format!("rules[{i}]"))
            }
            Entry::Tier { name, limits } => {
                raw.tiers.insert(name.clone(), limits.clone());
                Ok(format!("tiers.{name}"))
            }
            Entry::Override(o) => {
                let i = upsert(&mut raw.overrides, o.clone(), |x| {
                    x.key == o.key && x.rule == o.rule
                });
                Ok(format!("overrides[{i}]"))
            }
        }
    }
}

pub fn rule_id(name: &str) -> String {
    format!("rule:{name}")
}

pub fn tier_id(name: &str) -> String {
    format!("tier:{name}")
}

pub fn override_id(o: &RawOverride) -> String {
    format!("override:{}:{}", o.rule.as_deref().unwrap_or("*"), o.key)
}

/// Replaces the item `same` finds, or appends; returns its index.
fn upsert<T>(items: &mut Vec<T>, item: T, same: impl Fn(&T) -> bool) -> usize {
    match items.iter().position(same) {
        Some(i) => {
            items[i] = item;
            i
        }
        None => {
            items.push(item);
            items.len() - 1
        }
    }
}

/// Maps a serde error to a config error on `what`.
fn parse(what: &'static str) -> impl Fn(serde_json::Error) -> ConfigErrors {
    move |e| one(what, e.to_string())
}

fn one(field: &str, reason: String) -> ConfigErrors {
    ConfigErrors {
        origin: "admin API".to_owned(),
        errors: vec![ConfigError {
            field: field.to_owned(),
            reason,
        }],
    }
}

/// Every API-made entry, by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    entries: BTreeMap<String, Entry>,
}

impl Overlay {
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.entries.iter()
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.get(id)
    }

    /// This overlay with `entry` added or replaced.
    pub fn with(&self, entry: Entry) -> Overlay {
        let mut next = self.clone();
        next.entries.insert(entry.id(), entry);
        next
    }

    /// This overlay without `id`; `None` if it has no such entry.
    pub fn without(&self, id: &str) -> Option<Overlay> {
        let mut next = self.clone();
        next.entries.remove(id)?;
        Some(next)
    }

    /// `file` with every entry laid over it: rules first, then tiers, then overrides, so an
    /// override may name an API-made rule or tier. Errors are named by entry id.
    pub fn merged(&self, file: &RawConfig) -> Result<RawConfig, ConfigErrors> {
        let mut raw = file.clone();
        for kind in ["rule", "tier", "override"] {
            for (id, entry) in self.entries.iter().filter(|(_, e)| e.kind() == kind) {
                entry.merge_into(&mut raw).map_err(|mut e| {
                    e.origin = format!("admin API entry {id}");
                    e
                })?;
            }
        }
        Ok(raw)
    }

    /// Where `entry` sits once merged into `raw` (see `Entry::merge_into`), to rename errors.
    pub fn field_of(entry: &Entry, raw: &RawConfig) -> String {
        let mut scratch = raw.clone();
        entry.merge_into(&mut scratch).unwrap_or_default()
    }
}

/// Renames errors under `prefix` (e.g. `rules[4]`) to the entry's kind (`rule`), so they name
/// fields of the posted body.
pub fn rename_fields(errors: &mut ConfigErrors, prefix: &str, kind: &str) {
    for e in &mut errors.errors {
        if let Some(rest) = e.field.strip_prefix(prefix) {
            e.field = format!("{kind}{rest}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(v: Value) -> Entry {
        Entry::from_json(&v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn ids_and_round_trip() {
        let rule = entry(
            serde_json::json!({"kind": "rule", "name": "api", "key": "ip",
            "limits": ["5/s"], "routes": ["r"]}),
        );
        assert_eq!(rule.id(), "rule:api");
        assert_eq!(Entry::from_json(&rule.to_json()).unwrap(), rule);
        let o = entry(serde_json::json!({"kind": "override", "key": "a:b", "limits": ["1/s"]}));
        assert_eq!(o.id(), "override:*:a:b");
        let t =
            entry(serde_json::json!({"kind": "tier", "name": "gold", "limits": {"api": ["9/s"]}}));
        assert_eq!(Entry::from_json(&t.to_json()).unwrap(), t);
    }

    #[test]
    fn unknown_fields_and_kinds_are_errors() {
        let bad = Entry::from_json(
            &serde_json::json!({"kind": "rule", "name": "a", "key": "ip",
            "limitz": []}),
        )
        .unwrap_err();
        assert_eq!(bad.errors[0].field, "rule");
        assert!(bad.errors[0].reason.contains("limitz"), "{bad}");
        let kind = Entry::from_json(&serde_json::json!({"kind": "route"})).unwrap_err();
        assert_eq!(kind.errors[0].field, "kind");
    }

    #[test]
    fn merge_replaces_in_place_and_attaches_routes() {
        let file: RawConfig = toml::from_str(
            "[[routes]]\nname = \"r\"\nrules = [\"a\"]\n[[rules]]\nname = \"a\"\nkey = \"ip\"\nlimits = [\"1/s\"]\n",
        )
        .unwrap();
        let overlay = Overlay::default()
            .with(entry(serde_json::json!({"kind": "rule", "name": "a", "key": "ip", "limits": ["9/s"]})))
            .with(entry(serde_json::json!({"kind": "rule", "name": "b", "key": "ip", "limits": ["2/s"], "routes": ["r"]})));
        let raw = overlay.merged(&file).unwrap();
        assert_eq!(raw.rules.len(), 2);
        assert_eq!(raw.rules[0].limits, ["9/s"]);
        assert_eq!(raw.routes[0].rules, ["a", "b"]);
        let missing = Overlay::default()
            .with(entry(serde_json::json!({"kind": "rule", "name": "c", "key": "ip", "limits": ["2/s"], "routes": ["nope"]})));
        assert_eq!(
            missing.merged(&file).unwrap_err().errors[0].field,
            "rule.routes[0]"
        );
    }
}
