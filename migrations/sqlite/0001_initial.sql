-- The usage store: aggregated usage per calendar period, aggregated violations per minute,
-- per-key overrides and tiers for the admin plane, flushed batch ids, and the admin audit log.
-- The same tables as migrations/postgres/0001_initial.sql, in SQLite's types (STRICT tables).

-- Allowed cost per (rule, key) in one calendar period; rehydrated at start.
CREATE TABLE usage (
    rule          TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    period        TEXT    NOT NULL CHECK (period IN ('hour', 'day', 'week', 'month')),
    period_start  INTEGER NOT NULL, -- unix seconds
    count         INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (rule, key, period, period_start)
) STRICT, WITHOUT ROWID;
-- "Top keys this period" in the admin plane.
CREATE INDEX usage_period_count_idx ON usage (period, period_start, count DESC);
-- "Everything about this key" in the admin plane.
CREATE INDEX usage_key_idx ON usage (key);

-- Denials of (rule, key) within one minute, with the first request seen as a sample.
CREATE TABLE violations (
    rule          TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    minute        INTEGER NOT NULL, -- unix seconds, a multiple of 60
    shadow        INTEGER NOT NULL CHECK (shadow IN (0, 1)), -- a shadow rule would have denied
    count         INTEGER NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    method        TEXT    NOT NULL,
    path          TEXT    NOT NULL,
    client_ip     TEXT    NOT NULL,
    limit_desc    TEXT    NOT NULL, -- the limit that denied, e.g. "100/m"
    PRIMARY KEY (rule, key, minute, shadow)
) STRICT;
CREATE INDEX violations_minute_idx ON violations (minute DESC);
CREATE INDEX violations_key_minute_idx ON violations (key, minute DESC);

-- Per-key limits set through the admin plane; `limits` is a JSON array of limit strings.
CREATE TABLE overrides (
    rule          TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    limits        TEXT    NOT NULL,
    tier          TEXT,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (rule, key)
) STRICT;

-- Named sets of limits that overrides can refer to; `limits` is a JSON array of limit strings.
CREATE TABLE tiers (
    name          TEXT    PRIMARY KEY NOT NULL,
    limits        TEXT    NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;

-- Ids of applied flush batches: replaying a batch whose commit outcome was unknown is a no-op.
-- Pruned after a day by the flush itself.
CREATE TABLE flush_batches (
    batch_id      TEXT    PRIMARY KEY NOT NULL,
    flushed_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX flush_batches_flushed_at_idx ON flush_batches (flushed_at_ms);

-- Who changed what through the admin plane; `detail` is JSON.
CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms  INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    detail TEXT    NOT NULL
) STRICT;
CREATE INDEX audit_log_at_idx ON audit_log (at_ms DESC);
