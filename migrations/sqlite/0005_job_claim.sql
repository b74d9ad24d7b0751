-- Job claiming reads only live jobs. A running job's run_at is its lease expiry, so "due" is one condition
-- for both states and one partial index serves the claim; finished jobs (the bulk of the table) are in
-- neither partial index, so claims cost the same however long the history grows.
UPDATE jobs SET run_at = locked_until WHERE status = 'running' AND locked_until IS NOT NULL;
DROP INDEX jobs_due;
DROP INDEX jobs_ordering;
CREATE INDEX jobs_live_due ON jobs (run_at, id) WHERE status IN ('pending', 'running');
CREATE INDEX jobs_live_chain ON jobs (ordering_key, id) WHERE status IN ('pending', 'running');
-- Operators list the jobs that need attention; done jobs are never listed by status. One index per status:
-- SQLite uses a partial index only when the query repeats its WHERE term exactly.
CREATE INDEX jobs_dead ON jobs (id) WHERE status = 'dead';
CREATE INDEX jobs_unconfirmed ON jobs (id) WHERE status = 'unconfirmed';
