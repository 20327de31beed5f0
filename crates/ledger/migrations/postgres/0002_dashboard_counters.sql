-- Counters and indexes that keep the dashboard fast at 100,000+ records (PostgreSQL).
-- The ledger maintains both counter tables in the same transaction as the writes they count
-- (record changes, operator retries, audit events and their purge); this migration fills them
-- from what an existing ledger already holds.

-- Records per (flow, state, reason_code); '' stands for "no reason code" (a stored reason code
-- is never empty). Read by the record counts and the "needs attention" groups.
CREATE TABLE record_counts (
    flow        TEXT   NOT NULL,
    state       TEXT   NOT NULL,
    reason_code TEXT   NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (flow, state, reason_code)
);
INSERT INTO record_counts (flow, state, reason_code, n)
    SELECT flow, state, COALESCE(reason_code, ''), COUNT(*)
    FROM records GROUP BY flow, state, COALESCE(reason_code, '');

-- Audit events per (flow, UTC day 'YYYY-MM-DD', resulting state). Read by the daily chart.
CREATE TABLE daily_outcomes (
    flow  TEXT   NOT NULL,
    day   TEXT   NOT NULL,
    state TEXT   NOT NULL,
    n     BIGINT NOT NULL,
    PRIMARY KEY (flow, day, state)
);
INSERT INTO daily_outcomes (flow, day, state, n)
    SELECT flow, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), to_state, COUNT(*)
    FROM audit_events GROUP BY 1, 2, 3;

-- Records of one state, most recently changed first (the records list filtered by state).
-- It also serves every lookup by state alone, which records_state did.
CREATE INDEX records_state_updated_at ON records (state, updated_at, id);
DROP INDEX records_state;

-- The most recently changed keys of one "needs attention" group (key and state are included
-- so the lookup never reads the table).
CREATE INDEX records_attention ON records (flow, reason_code, updated_at, id, key, state)
    WHERE state IN ('rejected', 'conflict');
