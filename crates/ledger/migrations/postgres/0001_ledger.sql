-- Durable sync ledger of ping-primero (PostgreSQL).
-- Holds system identifiers, codes, counts and hashes only: never personal data.
-- JSON values (counts, destination ids, transaction ids, facts) are stored as text so that
-- both backends share one representation.

CREATE TABLE runs (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          TEXT        NOT NULL UNIQUE,
    flow        TEXT        NOT NULL,
    holder      TEXT        NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    outcome     TEXT        NOT NULL CHECK (outcome IN ('running', 'completed', 'failed', 'abandoned')),
    counts      TEXT        NOT NULL DEFAULT '{}',
    error       TEXT        CHECK (error IS NULL OR length(error) <= 1000)
);
CREATE INDEX runs_started_at ON runs (started_at);
CREATE INDEX runs_flow_started_at ON runs (flow, started_at);
CREATE INDEX runs_outcome_flow ON runs (outcome, flow);

CREATE TABLE cursors (
    flow       TEXT        NOT NULL PRIMARY KEY,
    value      TEXT        NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE records (
    id                   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    flow                 TEXT        NOT NULL,
    key                  TEXT        NOT NULL,
    state                TEXT        NOT NULL CHECK (state IN ('pending', 'delivered', 'confirmed', 'rejected', 'conflict', 'failed')),
    attempts             BIGINT      NOT NULL DEFAULT 0,
    next_retry_at        TIMESTAMPTZ,
    error_class          TEXT        CHECK (error_class IS NULL OR error_class IN ('transient', 'permanent', 'auth', 'conflict', 'validation')),
    reason_code          TEXT        CHECK (reason_code IS NULL OR length(reason_code) <= 100),
    message              TEXT        CHECK (message IS NULL OR length(message) <= 1000),
    dest_ids             TEXT        NOT NULL DEFAULT '{}',
    ping_transaction_ids TEXT        NOT NULL DEFAULT '[]',
    payload_hash         TEXT,
    fallback_used        BOOLEAN     NOT NULL DEFAULT FALSE,
    contact_substituted  BOOLEAN     NOT NULL DEFAULT FALSE,
    decision             TEXT,
    operator_retry       BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL,
    last_run_id          TEXT,
    UNIQUE (flow, key)
);
CREATE INDEX records_state ON records (state);
CREATE INDEX records_flow_state_retry ON records (flow, state, next_retry_at);
CREATE INDEX records_reason ON records (reason_code);
CREATE INDEX records_updated_at ON records (updated_at);
CREATE INDEX records_last_run ON records (last_run_id);

CREATE TABLE record_identifiers (
    record_id BIGINT NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    kind      TEXT   NOT NULL,
    value     TEXT   NOT NULL,
    UNIQUE (record_id, kind, value)
);
CREATE INDEX record_identifiers_value ON record_identifiers (value);

CREATE TABLE facts (
    kind       TEXT        NOT NULL,
    key        TEXT        NOT NULL,
    value      TEXT        NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (kind, key)
);

CREATE TABLE audit_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,
    flow        TEXT        NOT NULL,
    record_key  TEXT        NOT NULL,
    from_state  TEXT,
    to_state    TEXT        NOT NULL,
    reason_code TEXT        CHECK (reason_code IS NULL OR length(reason_code) <= 100),
    message     TEXT        CHECK (message IS NULL OR length(message) <= 1000),
    cause       TEXT        NOT NULL,
    run_id      TEXT
);
CREATE INDEX audit_events_flow_key ON audit_events (flow, record_key, id);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_flow_at ON audit_events (flow, at);
CREATE INDEX audit_events_run ON audit_events (run_id);

-- The audit trail is append-only: rows may be purged by age, never rewritten.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE TABLE leases (
    flow        TEXT        NOT NULL PRIMARY KEY,
    holder      TEXT        NOT NULL,
    token       BIGINT      NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
