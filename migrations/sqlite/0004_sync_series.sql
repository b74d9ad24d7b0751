-- The recurring internal Field team sync of an engagement: a series fieldbot created (its rhythm and Graph
-- event) or an existing Field sync the FM joins instead. `version` grows with every change, so reminders
-- planned for an older rhythm stop.
CREATE TABLE sync_series (
    engagement_id INTEGER PRIMARY KEY REFERENCES engagements (id),
    kind          TEXT    NOT NULL,
    data          TEXT    NOT NULL,
    version       INTEGER NOT NULL,
    updated_by    TEXT    NOT NULL,
    updated_at    INTEGER NOT NULL
);
