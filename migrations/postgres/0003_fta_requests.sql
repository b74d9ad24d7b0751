-- Request FastTrack Architect: one row per request, an audit row per transition. `request_key` is the
-- submitting activity's key, so a re-delivered submit stores one request; `version` makes every transition
-- a conditional update (two leads clicking at once: exactly one wins).
CREATE TABLE fta_requests (
    id              BIGSERIAL PRIMARY KEY,
    request_key     TEXT    NOT NULL UNIQUE,
    engagement_id   BIGINT  NOT NULL REFERENCES engagements (id),
    conversation_id TEXT    NOT NULL,
    service_url     TEXT    NOT NULL,
    customer        TEXT    NOT NULL,
    requestor       TEXT    NOT NULL,
    details         TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    version         BIGINT  NOT NULL,
    assigned_fta    TEXT,
    decline_reason  TEXT,
    info_ask        TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);
CREATE INDEX fta_requests_engagement ON fta_requests (engagement_id);
CREATE INDEX fta_requests_status ON fta_requests (status);

CREATE TABLE fta_audit (
    id          BIGSERIAL PRIMARY KEY,
    request_id  BIGINT  NOT NULL REFERENCES fta_requests (id),
    at          BIGINT  NOT NULL,
    who         TEXT    NOT NULL,
    who_id      TEXT,
    action      TEXT    NOT NULL,
    from_status TEXT,
    to_status   TEXT    NOT NULL,
    detail      TEXT
);
CREATE INDEX fta_audit_request ON fta_audit (request_id, id);
