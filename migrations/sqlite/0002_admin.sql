-- The admin plane: config entries made through the API (replacing the unused overrides/tiers
-- tables), and decisions per rule per minute for the analytics series.
-- The same tables as migrations/postgres/0002_admin.sql, in SQLite's types (STRICT tables).

DROP TABLE overrides;
DROP TABLE tiers;

-- One rule, tier or override created through POST /api/admin/quotas/config; `body` is its JSON.
CREATE TABLE config_entries (
    id            TEXT    PRIMARY KEY, -- "rule:NAME", "tier:NAME", "override:RULE:KEY"
    body          TEXT    NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;

-- Decisions of one rule in one minute, summed over every instance (each adds its own counts).
CREATE TABLE traffic (
    rule          TEXT    NOT NULL,
    minute        INTEGER NOT NULL, -- unix seconds, a multiple of 60
    allowed       INTEGER NOT NULL,
    denied        INTEGER NOT NULL,
    shadow_denied INTEGER NOT NULL,
    PRIMARY KEY (rule, minute)
) STRICT, WITHOUT ROWID;
CREATE INDEX traffic_minute_idx ON traffic (minute);
