-- The de-duplication key now leads with the activity id. Teams message ids are the epoch milliseconds at
-- which the message was posted, so new keys land together at the end of the index; led by the
-- conversation, each activity dirtied a page of its own conversation's part of the index, and those pages
-- were a third of what every commit wrote to the log. Uniqueness and lookups (all three columns) are the
-- same. SQLite cannot change a primary key in place, so the table is rebuilt.
CREATE TABLE inbound_activities_by_id (
    channel_id      TEXT    NOT NULL,
    conversation_id TEXT    NOT NULL,
    activity_id     TEXT    NOT NULL,
    received_at     INTEGER NOT NULL,
    response        TEXT,
    PRIMARY KEY (activity_id, conversation_id, channel_id)
);
INSERT INTO inbound_activities_by_id (channel_id, conversation_id, activity_id, received_at, response)
    SELECT channel_id, conversation_id, activity_id, received_at, response FROM inbound_activities;
DROP TABLE inbound_activities;
ALTER TABLE inbound_activities_by_id RENAME TO inbound_activities;
CREATE INDEX inbound_activities_received_at ON inbound_activities (received_at);
