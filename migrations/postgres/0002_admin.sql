-- The admin plane: config entries made through the API (replacing the unused overrides/tiers
-- tables), and decisions per rule per minute for the analytics series.

DROP TABLE overrides;
DROP TABLE tiers;

-- One rule, tier or override created through POST /api/admin/quotas/config; `body` is its JSON.
CREATE TABLE config_entries (
    id            text   PRIMARY KEY, -- "rule:NAME", "tier:NAME", "override:RULE:KEY"
    body          text   NOT NULL,
    updated_at_ms bigint NOT NULL
);

-- Decisions of one rule in one minute, summed over every instance (each adds its own counts).
CREATE TABLE traffic (
    rule          text   NOT NULL,
    minute        bigint NOT NULL, -- unix seconds, a multiple of 60
    allowed       bigint NOT NULL,
    denied        bigint NOT NULL,
    shadow_denied bigint NOT NULL,
    PRIMARY KEY (rule, minute)
);
CREATE INDEX traffic_minute_idx ON traffic (minute);
