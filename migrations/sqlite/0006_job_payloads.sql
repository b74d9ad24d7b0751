-- A job's payload (kilobytes for a card) is written once and read once, while the job's row is updated
-- three or four times (claim, in-flight note, completion). SQLite rewrites a whole row, overflow pages
-- included, on every update, so the payload now lives apart from the state. Jobs queued before this
-- migration keep theirs in jobs.payload; new jobs leave that column empty and readers take whichever is set.
CREATE TABLE job_payloads (
    job_id  INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    payload TEXT NOT NULL
);
