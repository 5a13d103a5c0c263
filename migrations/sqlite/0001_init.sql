-- Timestamps are Unix milliseconds (BIGINT) and JSON is TEXT, exactly as on PostgreSQL, so
-- the audit chain hashes the same bytes on either backend. Keep this file parallel to
-- migrations/postgres/0001_init.sql: a test compares their tables and columns.

CREATE TABLE requests (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at         BIGINT  NOT NULL,
    expires_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL,
    requester_platform TEXT    NOT NULL,
    requester_id       TEXT    NOT NULL,
    requester_name     TEXT    NOT NULL DEFAULT '',
    channel            TEXT    NOT NULL DEFAULT '',
    command_text       TEXT    NOT NULL DEFAULT '',
    operation          TEXT    NOT NULL,
    environment        TEXT,
    command_json       TEXT    NOT NULL DEFAULT '{}',
    approvals_json     TEXT    NOT NULL DEFAULT '{}',
    state              TEXT    NOT NULL DEFAULT 'pending',
    break_glass        BOOLEAN NOT NULL DEFAULT FALSE,
    outcome            TEXT,
    message_ref        TEXT
);
CREATE INDEX requests_state_expires ON requests (state, expires_at);

CREATE TABLE votes (
    request_id     BIGINT  NOT NULL REFERENCES requests (id),
    voter_platform TEXT    NOT NULL,
    voter_id       TEXT    NOT NULL,
    voter_name     TEXT    NOT NULL DEFAULT '',
    approve        BOOLEAN NOT NULL,
    comment        TEXT,
    at             BIGINT  NOT NULL,
    PRIMARY KEY (request_id, voter_platform, voter_id)
);

-- seq is assigned by the writer (last seq + 1) rather than by a sequence, so a gap can only
-- mean a deleted row: sequences skip values on rolled-back transactions.
CREATE TABLE audit_log (
    seq          BIGINT PRIMARY KEY,
    at           BIGINT NOT NULL,
    action       TEXT   NOT NULL,
    who_platform TEXT   NOT NULL DEFAULT '',
    who_id       TEXT   NOT NULL DEFAULT '',
    who_name     TEXT   NOT NULL DEFAULT '',
    channel      TEXT   NOT NULL DEFAULT '',
    operation    TEXT   NOT NULL DEFAULT '',
    arguments    TEXT   NOT NULL DEFAULT '',
    environment  TEXT,
    request_id   BIGINT,
    decision     TEXT   NOT NULL DEFAULT '',
    reason       TEXT   NOT NULL DEFAULT '',
    votes        TEXT   NOT NULL DEFAULT '[]',
    outcome      TEXT   NOT NULL DEFAULT '',
    prev_hash    TEXT   NOT NULL,
    hash         TEXT   NOT NULL
);
CREATE INDEX audit_log_request ON audit_log (request_id);

CREATE TABLE deployments (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    environment TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    succeeded   BOOLEAN NOT NULL,
    request_id  BIGINT,
    at          BIGINT  NOT NULL
);
CREATE INDEX deployments_env_at ON deployments (environment, at);

CREATE TABLE sandbox (
    environment TEXT   PRIMARY KEY,
    state_json  TEXT   NOT NULL DEFAULT '{}',
    updated_at  BIGINT NOT NULL
);

CREATE TABLE incidents (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    severity             TEXT   NOT NULL,
    title                TEXT   NOT NULL DEFAULT '',
    declared_by_platform TEXT   NOT NULL DEFAULT '',
    declared_by_id       TEXT   NOT NULL DEFAULT '',
    declared_by_name     TEXT   NOT NULL DEFAULT '',
    declared_at          BIGINT NOT NULL,
    channel              TEXT   NOT NULL DEFAULT '',
    channels_json        TEXT   NOT NULL DEFAULT '{}',
    commander            TEXT,
    resolved_at          BIGINT,
    summary              TEXT,
    last_human_update_at BIGINT
);
CREATE INDEX incidents_resolved ON incidents (resolved_at);

CREATE TABLE incident_events (
    incident_id  BIGINT NOT NULL REFERENCES incidents (id),
    seq          BIGINT NOT NULL,
    at           BIGINT NOT NULL,
    kind         TEXT   NOT NULL,
    who_platform TEXT,
    who_id       TEXT,
    who_name     TEXT,
    text         TEXT   NOT NULL DEFAULT '',
    PRIMARY KEY (incident_id, seq)
);

CREATE TABLE scheduled_jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT   NOT NULL UNIQUE,
    kind        TEXT   NOT NULL,
    payload     TEXT   NOT NULL DEFAULT '',
    due_at      BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT
);
CREATE INDEX scheduled_jobs_due ON scheduled_jobs (due_at);
