-- The usage store: aggregated usage per calendar period, aggregated violations per minute,
-- per-key overrides and tiers for the admin plane, flushed batch ids, and the admin audit log.

-- Allowed cost per (rule, key) in one calendar period; rehydrated at start, summed across instances.
CREATE TABLE usage (
    rule          text   NOT NULL,
    key           text   NOT NULL,
    period        text   NOT NULL CHECK (period IN ('hour', 'day', 'week', 'month')),
    period_start  bigint NOT NULL, -- unix seconds
    count         bigint NOT NULL,
    updated_at_ms bigint NOT NULL,
    PRIMARY KEY (rule, key, period, period_start)
);
-- "Top keys this period" in the admin plane.
CREATE INDEX usage_period_count_idx ON usage (period, period_start, count DESC);
-- "Everything about this key" in the admin plane.
CREATE INDEX usage_key_idx ON usage (key);

-- Denials of (rule, key) within one minute, with the first request seen as a sample.
CREATE TABLE violations (
    rule          text    NOT NULL,
    key           text    NOT NULL,
    minute        bigint  NOT NULL, -- unix seconds, a multiple of 60
    shadow        boolean NOT NULL, -- a shadow rule would have denied; nothing was denied
    count         bigint  NOT NULL,
    first_seen_ms bigint  NOT NULL,
    last_seen_ms  bigint  NOT NULL,
    method        text    NOT NULL,
    path          text    NOT NULL,
    client_ip     text    NOT NULL,
    limit_desc    text    NOT NULL, -- the limit that denied, e.g. "100/m"
    PRIMARY KEY (rule, key, minute, shadow)
);
CREATE INDEX violations_minute_idx ON violations (minute DESC);
CREATE INDEX violations_key_minute_idx ON violations (key, minute DESC);

-- Per-key limits set through the admin plane; `limits` is a JSON array of limit strings.
CREATE TABLE overrides (
    rule          text   NOT NULL,
    key           text   NOT NULL,
    limits        text   NOT NULL,
    tier          text,
    updated_at_ms bigint NOT NULL,
    PRIMARY KEY (rule, key)
);

-- Named sets of limits that overrides can refer to; `limits` is a JSON array of limit strings.
CREATE TABLE tiers (
    name          text   PRIMARY KEY,
    limits        text   NOT NULL,
    updated_at_ms bigint NOT NULL
);

-- Ids of applied flush batches: replaying a batch whose commit outcome was unknown is a no-op.
-- Pruned after a day by the flush itself.
CREATE TABLE flush_batches (
    batch_id      text   PRIMARY KEY,
    flushed_at_ms bigint NOT NULL
);
CREATE INDEX flush_batches_flushed_at_idx ON flush_batches (flushed_at_ms);

-- Who changed what through the admin plane; `detail` is JSON.
CREATE TABLE audit_log (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms  bigint NOT NULL,
    actor  text   NOT NULL,
    action text   NOT NULL,
    detail text   NOT NULL
);
CREATE INDEX audit_log_at_idx ON audit_log (at_ms DESC);
