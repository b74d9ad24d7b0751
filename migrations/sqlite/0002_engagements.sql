-- Engagements: one customer and motion bound to one account-team channel; one active per channel.
CREATE TABLE engagements (
    id              INTEGER PRIMARY KEY,
    conversation_id TEXT    NOT NULL,
    service_url     TEXT    NOT NULL,
    customer        TEXT    NOT NULL,
    motion          TEXT    NOT NULL,
    tpid            INTEGER,
    tenant          TEXT,
    fm              TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    closed_at       INTEGER,
    closed_by       TEXT
);
CREATE UNIQUE INDEX engagements_one_active ON engagements (conversation_id) WHERE status = 'active';

-- The roster: who holds which Field role (several people may share a role).
CREATE TABLE roster_members (
    engagement_id INTEGER NOT NULL REFERENCES engagements (id),
    role          TEXT    NOT NULL,
    person_key    TEXT    NOT NULL,
    person        TEXT    NOT NULL,
    added_by      TEXT    NOT NULL,
    added_at      INTEGER NOT NULL,
    PRIMARY KEY (engagement_id, role, person_key)
);

-- Prep checklist ticks.
CREATE TABLE prep_ticks (
    engagement_id INTEGER NOT NULL REFERENCES engagements (id),
    item          TEXT    NOT NULL,
    done          INTEGER NOT NULL,
    by_name       TEXT    NOT NULL,
    at            INTEGER NOT NULL,
    PRIMARY KEY (engagement_id, item)
);

-- Cards fieldbot posted and later updates in place, by what they show.
CREATE TABLE cards (
    card_key        TEXT    PRIMARY KEY,
    conversation_id TEXT    NOT NULL,
    activity_id     TEXT    NOT NULL,
    service_url     TEXT    NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- Intro invites: proposed slots, the draft, and the event once sent.
CREATE TABLE invites (
    id            INTEGER PRIMARY KEY,
    engagement_id INTEGER NOT NULL REFERENCES engagements (id),
    state         TEXT    NOT NULL,
    data          TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- Account team sync notes (the record to copy into FTOP).
CREATE TABLE sync_notes (
    id            INTEGER PRIMARY KEY,
    engagement_id INTEGER NOT NULL REFERENCES engagements (id),
    notes         TEXT    NOT NULL,
    by_name       TEXT    NOT NULL,
    at            INTEGER NOT NULL
);

-- Graph calls recorded instead of sent (graph.mode = "dry-run").
CREATE TABLE graph_outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    method      TEXT    NOT NULL,
    path        TEXT    NOT NULL,
    body        TEXT,
    recorded_at INTEGER NOT NULL
);
