-- Inbound activity ids seen, for de-duplication of Teams re-deliveries; the stored response answers a
-- re-delivered invoke exactly like the first time.
CREATE TABLE inbound_activities (
    channel_id      TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    activity_id     TEXT    NOT NULL,
    received_at     INTEGER NOT NULL,
    response        TEXT,
    PRIMARY KEY (channel_id, conversation_id, activity_id)
);
CREATE INDEX inbound_activities_received_at ON inbound_activities (received_at);

-- Conversation references: where and how to reach a team channel, chat or user proactively.
CREATE TABLE conversations (
    conversation_id   TEXT    PRIMARY KEY,
    service_url       TEXT    NOT NULL,
    tenant_id         TEXT,
    team_id           TEXT,
    team_name         TEXT,
    channel_id        TEXT,
    bot_id            TEXT,
    conversation_type TEXT,
    status            TEXT    NOT NULL,
    dead_reason       TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

-- The durable effect queue (outbox): every outbound call is a row written in the same transaction as the
-- state change that caused it.
CREATE TABLE jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL UNIQUE,
    ordering_key    TEXT,
    status          TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    run_at          INTEGER NOT NULL,
    locked_by       TEXT,
    locked_until    INTEGER,
    last_error      TEXT,
    result          TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs (status, run_at);
CREATE INDEX jobs_ordering ON jobs (ordering_key, id);
