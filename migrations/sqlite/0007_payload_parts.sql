-- A reply's card is kilobytes of JSON, and most replies post one of a few cards (the answer to `help`).
-- Written with every job it was most of the bytes the store wrote per activity; it is now kept once per
-- distinct content, keyed by its SHA-256, and a job's payload holds a marker where it goes. Payloads
-- without a part (part IS NULL) are read as before.
CREATE TABLE payload_parts (
    digest TEXT PRIMARY KEY,
    body   TEXT NOT NULL
);
ALTER TABLE job_payloads ADD COLUMN part TEXT REFERENCES payload_parts (digest);
