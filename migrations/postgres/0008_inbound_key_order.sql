-- The de-duplication key now leads with the activity id. Teams message ids are the epoch milliseconds at
-- which the message was posted, so new keys land together at the end of the index instead of on a page
-- of their conversation's part of it (one page written per activity). Uniqueness and lookups (all three
-- columns) are the same.
ALTER TABLE inbound_activities DROP CONSTRAINT inbound_activities_pkey;
ALTER TABLE inbound_activities ADD PRIMARY KEY (activity_id, conversation_id, channel_id);
