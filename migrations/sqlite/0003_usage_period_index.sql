-- The period index no longer carries `count`. Almost every row of a flush only bumps the count
-- of an existing usage row; with `count` in an index, each of those bumps also rewrote an index
-- entry (and on Postgres ruled out a HOT update). The admin reads filter on (period,
-- period_start) and sum the counts themselves, so they lose nothing.
DROP INDEX usage_period_count_idx;
CREATE INDEX usage_period_idx ON usage (period, period_start);
