-- Durable sync ledger of ping-primero (SQLite). Timestamps are RFC 3339 text in UTC.
-- Holds system identifiers, codes, counts and hashes only: never personal data.

CREATE TABLE runs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    flow        TEXT    NOT NULL,
    holder      TEXT    NOT NULL,
    started_at  TEXT    NOT NULL,
    finished_at TEXT,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('running', 'completed', 'failed', 'abandoned')),
    counts      TEXT    NOT NULL DEFAULT '{}',
    error       TEXT    CHECK (error IS NULL OR length(error) <= 1000)
);
CREATE INDEX runs_started_at ON runs (started_at);
CREATE INDEX runs_flow_started_at ON runs (flow, started_at);
CREATE INDEX runs_outcome_flow ON runs (outcome, flow);

CREATE TABLE cursors (
    flow       TEXT NOT NULL PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE records (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    flow                 TEXT    NOT NULL,
    key                  TEXT    NOT NULL,
    state                TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'confirmed', 'rejected', 'conflict', 'failed')),
    attempts             INTEGER NOT NULL DEFAULT 0,
    next_retry_at        TEXT,
    error_class          TEXT    CHECK (error_class IS NULL OR error_class IN ('transient', 'permanent', 'auth', 'conflict', 'validation')),
    reason_code          TEXT    CHECK (reason_code IS NULL OR length(reason_code) <= 100),
    message              TEXT    CHECK (message IS NULL OR length(message) <= 1000),
    dest_ids             TEXT    NOT NULL DEFAULT '{}',
    ping_transaction_ids TEXT    NOT NULL DEFAULT '[]',
    payload_hash         TEXT,
    fallback_used        BOOLEAN NOT NULL DEFAULT 0,
    contact_substituted  BOOLEAN NOT NULL DEFAULT 0,
    decision             TEXT,
    operator_retry       BOOLEAN NOT NULL DEFAULT 0,
    created_at           TEXT    NOT NULL,
    updated_at           TEXT    NOT NULL,
    last_run_id          TEXT,
    UNIQUE (flow, key)
);
CREATE INDEX records_state ON records (state);
CREATE INDEX records_flow_state_retry ON records (flow, state, next_retry_at);
CREATE INDEX records_reason ON records (reason_code);
CREATE INDEX records_updated_at ON records (updated_at);
CREATE INDEX records_last_run ON records (last_run_id);

CREATE TABLE record_identifiers (
    record_id INTEGER NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    kind      TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    UNIQUE (record_id, kind, value)
);
CREATE INDEX record_identifiers_value ON record_identifiers (value);

CREATE TABLE facts (
    kind       TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (kind, key)
);

CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    flow        TEXT NOT NULL,
    record_key  TEXT NOT NULL,
    from_state  TEXT,
    to_state    TEXT NOT NULL,
    reason_code TEXT CHECK (reason_code IS NULL OR length(reason_code) <= 100),
    message     TEXT CHECK (message IS NULL OR length(message) <= 1000),
    cause       TEXT NOT NULL,
    run_id      TEXT
);
CREATE INDEX audit_events_flow_key ON audit_events (flow, record_key, id);
CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_flow_at ON audit_events (flow, at);
CREATE INDEX audit_events_run ON audit_events (run_id);

-- The audit trail is append-only: rows may be purged by age, never rewritten.
CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;

CREATE TABLE leases (
    flow        TEXT    NOT NULL PRIMARY KEY,
    holder      TEXT    NOT NULL,
    token       INTEGER NOT NULL,
    acquired_at TEXT    NOT NULL,
    expires_at  TEXT    NOT NULL
);
