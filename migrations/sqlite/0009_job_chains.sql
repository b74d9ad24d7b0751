-- A conversation's jobs run one after another. Until now a claim found each chain's head through
-- jobs_live_chain, an index of live jobs by (ordering_key, id): under a backlog every conversation's
-- entries fill pages of their own, so each commit dirtied a page at the tail of each chain it queued into
-- and another at the head of each chain it finished, a third of the pages a commit wrote (README
-- "Performance"). Now each job says whether it waits for an older live job of its chain (`waiting`), the
-- job it waits for names it (`next_id`), and the chain's newest job is kept in a row of its own
-- (`job_chains`). A job joins its chain by updating the tail's row, which is among the newest rows, and
-- leaving a chain frees the next job, whose row its claim writes anyway. Triggers keep this bookkeeping,
-- so every statement that queues or finishes a job keeps it the same way.
--
-- SQLite only: it has one writer, so the triggers' reads and writes of a chain cannot interleave with
-- another transaction's. PostgreSQL keeps the index (its replicas write concurrently).
ALTER TABLE jobs ADD COLUMN next_id INTEGER;
ALTER TABLE jobs ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0;

CREATE TABLE job_chains (
    ordering_key TEXT PRIMARY KEY,
    tail_id      INTEGER NOT NULL
) WITHOUT ROWID;

-- The live jobs queued before this migration, linked and marked as the index ordered them.
UPDATE jobs SET next_id = (
        SELECT MIN(n.id) FROM jobs n
        WHERE n.ordering_key = jobs.ordering_key AND n.status IN ('pending', 'running') AND n.id > jobs.id)
    WHERE ordering_key IS NOT NULL AND status IN ('pending', 'running');
UPDATE jobs SET waiting = 1
    WHERE ordering_key IS NOT NULL AND status IN ('pending', 'running') AND EXISTS (
        SELECT 1 FROM jobs o
        WHERE o.ordering_key = jobs.ordering_key AND o.status IN ('pending', 'running') AND o.id < jobs.id);
INSERT INTO job_chains (ordering_key, tail_id)
    SELECT ordering_key, MAX(id) FROM jobs
    WHERE ordering_key IS NOT NULL AND status IN ('pending', 'running') GROUP BY ordering_key;

DROP INDEX jobs_live_chain;
-- What a claim reads: the live jobs that wait for nothing, at most one per chain.
CREATE INDEX jobs_ready ON jobs (run_at, id) WHERE waiting = 0 AND status IN ('pending', 'running');

-- A new job waits when its chain's newest job is still live, and that job names it as its next.
CREATE TRIGGER jobs_join_chain AFTER INSERT ON jobs WHEN NEW.ordering_key IS NOT NULL
BEGIN
    UPDATE jobs SET waiting = 1 WHERE id = NEW.id AND EXISTS (
        SELECT 1 FROM job_chains c JOIN jobs t ON t.id = c.tail_id
        WHERE c.ordering_key = NEW.ordering_key AND t.status IN ('pending', 'running'));
    UPDATE jobs SET next_id = NEW.id
        WHERE id = (SELECT tail_id FROM job_chains WHERE ordering_key = NEW.ordering_key)
          AND status IN ('pending', 'running');
    INSERT INTO job_chains (ordering_key, tail_id) VALUES (NEW.ordering_key, NEW.id)
        ON CONFLICT (ordering_key) DO UPDATE SET tail_id = excluded.tail_id;
END;

-- A job that stops being live (done, dead, held as unconfirmed) frees the next one. A job put back by an
-- operator (dead or unconfirmed to pending) waits for nothing: the jobs behind it were freed when it left.
CREATE TRIGGER jobs_leave_chain AFTER UPDATE OF status ON jobs
    WHEN NEW.next_id IS NOT NULL
     AND OLD.status IN ('pending', 'running') AND NEW.status NOT IN ('pending', 'running')
BEGIN
    UPDATE jobs SET waiting = 0 WHERE id = NEW.next_id AND waiting = 1;
END;
