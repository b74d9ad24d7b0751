//! SQLite's merged writes (job marks, take-overs and turns: nearly every write under load) run on a
//! connection of the writer's own, one batch per blocking call (see [`super::batch::Direct`]).
//!
//! sqlx runs each SQLite connection on a thread of its own and crosses over to it for every statement.
//! A batch made about fourteen such crossings (begin, the marks, three take-overs, a savepoint, six turn
//! statements, its release, the commit), and under load each one waited for a busy core: a `BEGIN` alone
//! took 0.15 ms. Here the batch runs start to end on one blocking thread, with the same statement texts.
//!
//! The connection is a second writing connection beside the sqlx pool's one. The writer task uses one or
//! the other, never both at once, so they do not compete for SQLite's write lock.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use rusqlite::{CachedStatement, Connection, OpenFlags, ToSql};

use super::batch::{
    Direct, DirectBatch, JobFollowUps, Mark, MarkKind, Successor, TurnRows, add_born_claimed,
    applied_turns, folded_touches, job_follow_ups, successors_of, taken_over_by, turn_commits,
};
use super::sql::{self, Placeholders};
use super::{Job, JobRow, NewJob, StoreError, TurnCommit};
use crate::clock::Millis;

const STYLE: Placeholders = Placeholders::Anonymous;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound,
            rusqlite::Error::SqliteFailure(code, message)
                if code.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || code.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                StoreError::Conflict(message.unwrap_or_else(|| code.to_string()))
            }
            other => StoreError::Other(anyhow::Error::new(other)),
        }
    }
}

pub(super) struct SqliteBatches {
    connection: Connection,
}

impl SqliteBatches {
    /// Opens the database at `path` (already created and migrated) for writing. `synchronous_normal` as for
    /// the pool's writer: the commits do not sync the log; the writer syncs it after each commit.
    pub(super) fn open(path: &Path, synchronous_normal: bool) -> Result<Self, StoreError> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(Duration::from_secs(10))?;
        let synchronous = if synchronous_normal { "NORMAL" } else { "FULL" };
        connection.pragma_update(None, "synchronous", synchronous)?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.pragma_update(None, "temp_store", "MEMORY")?;
        // Every text a batch uses stays prepared: one per kind and power-of-two row count.
        connection.set_prepared_statement_cache_capacity(256);
        Ok(Self { connection })
    }

    fn execute(&self, text: &str) -> rusqlite::Result<()> {
        self.connection
            .prepare_cached(text)?
            .raw_execute()
            .map(drop)
    }

    fn marks(&self, kind: MarkKind, marks: &[Mark]) -> Result<Vec<i64>, StoreError> {
        let (text, rows) = sql::mark_sql(kind, STYLE, marks.len());
        let mut statement = Bound::new(self.connection.prepare_cached(&text)?);
        for mark in marks {
            statement.bind(mark.id)?;
            statement.bind(&mark.worker)?;
            statement.bind(mark.text.as_deref())?;
            statement.bind(mark.now)?;
        }
        for _ in marks.len()..rows {
            statement.bind(-1_i64)?;
            statement.bind("")?;
            statement.bind(None::<&str>)?;
            statement.bind(0_i64)?;
        }
        statement.rows(|row| row.get(0))
    }

    fn successors(&self, successors: &[Successor]) -> Result<Vec<Job>, StoreError> {
        let mut jobs = Vec::with_capacity(successors.len());
        for chunk in sql::pow2_chunks(successors) {
            let text = sql::successor_sql(sql::Chains::Linked, STYLE, chunk.len());
            let mut statement = Bound::new(self.connection.prepare_cached(&text)?);
            for s in chunk {
                statement.bind(s.after)?;
                statement.bind(&s.next.ordering_key)?;
                statement.bind(&s.next.kind)?;
                statement.bind(&s.worker)?;
                statement.bind(s.next.lease_until)?;
                statement.bind(s.now)?;
                statement.bind(s.next.note.as_deref())?;
            }
            for row in statement.rows(job_row)? {
                jobs.push(Job::try_from(row)?);
            }
        }
        Ok(jobs)
    }

    /// As the pooled backend's `run_turns`: the de-duplication rows first (those inserted are the new
    /// activities), then the new activities' conversation touches and jobs.
    fn turns(&self, turns: &[TurnRows]) -> Result<Vec<TurnCommit>, StoreError> {
        let mut inserted = HashSet::new();
        for (chunk, rows) in sql::row_chunks(STYLE, turns) {
            let text = sql::inbound_rows_sql(STYLE, rows);
            let mut statement = Bound::new(self.connection.prepare_cached(&text)?);
            for t in sql::padded(chunk, rows) {
                statement.bind(&t.key.channel_id)?;
                statement.bind(&t.key.conversation_id)?;
                statement.bind(&t.key.activity_id)?;
                statement.bind(t.now)?;
                statement.bind(t.response.as_deref())?;
            }
            inserted.extend(statement.rows(|row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?);
        }
        let fresh = applied_turns(turns, inserted);
        let mut responses = Vec::new();
        for (t, _) in turns.iter().zip(&fresh).filter(|(_, fresh)| !**fresh) {
            let mut statement = Bound::new(self.connection.prepare_cached(sql::SELECT_INBOUND)?);
            statement.bind(&t.key.channel_id)?;
            statement.bind(&t.key.conversation_id)?;
            statement.bind(&t.key.activity_id)?;
            let response: Option<Option<String>> =
                statement.rows(|row| row.get(0))?.into_iter().next();
            responses.push(response.flatten());
        }
        let (mut commits, applied) = turn_commits(turns, &fresh, responses);
        let touches = folded_touches(&applied);
        for (chunk, rows) in sql::row_chunks(STYLE, &touches) {
            let text = sql::conversation_rows_sql(STYLE, rows);
            let mut statement = Bound::new(self.connection.prepare_cached(&text)?);
            for (r, at) in sql::padded(chunk, rows) {
                statement.bind(&r.conversation_id)?;
                statement.bind(&r.service_url)?;
                statement.bind(r.tenant_id.as_deref())?;
                statement.bind(r.team_id.as_deref())?;
                statement.bind(r.team_name.as_deref())?;
                statement.bind(r.channel_id.as_deref())?;
                statement.bind(r.bot_id.as_deref())?;
                statement.bind(r.conversation_type.as_deref())?;
                statement.bind(*at)?;
                statement.bind(*at)?;
            }
            statement.execute()?;
        }
        let jobs: Vec<(&NewJob, Millis)> = applied
            .iter()
            .flat_map(|(_, t)| t.jobs.iter().map(move |j| (j, t.now)))
            .collect();
        let mut ids = HashMap::new();
        for (chunk, rows) in sql::row_chunks(STYLE, &jobs) {
            let text = sql::job_rows_sql(STYLE, rows);
            let mut statement = Bound::new(self.connection.prepare_cached(&text)?);
            for (job, now) in sql::padded(chunk, rows) {
                statement.bind(&job.kind)?;
                statement.bind(&job.idempotency_key)?;
                statement.bind(job.ordering_key.as_deref())?;
                statement.bind(i64::from(job.max_attempts))?;
                statement.bind(job.run_at)?;
                statement.bind(*now)?;
                statement.bind(*now)?;
            }
            for (id, key) in statement.rows(|row| Ok((row.get::<_, i64>(0)?, row.get(1)?)))? {
                ids.insert(key, id);
            }
        }
        let JobFollowUps {
            payloads,
            parts,
            claims,
        } = job_follow_ups(&applied, ids);
        for (chunk, rows) in sql::row_chunks(STYLE, &parts) {
            let text = sql::payload_part_rows_sql(STYLE, rows);
            let mut statement = Bound::new(self.connection.prepare_cached(&text)?);
            for part in sql::padded(chunk, rows) {
                statement.bind(&*part.digest)?;
                statement.bind(&*part.text)?;
            }
            statement.execute()?;
        }
        for (chunk, rows) in sql::row_chunks(STYLE, &payloads) {
            let text = sql::job_payload_rows_sql(STYLE, rows);
            let mut statement = Bound::new(self.connection.prepare_cached(&text)?);
            for (id, job) in sql::padded(chunk, rows) {
                statement.bind(*id)?;
                statement.bind(job.payload.as_str())?;
                statement.bind(job.part.as_ref().map(|p| &*p.digest))?;
            }
            statement.execute()?;
        }
        let mut claimed = HashSet::new();
        for (chunk, rows) in sql::row_chunks(STYLE, &claims) {
            let text = sql::birth_claim_sql(sql::Chains::Linked, STYLE, rows);
            let mut statement = Bound::new(self.connection.prepare_cached(&text)?);
            for (id, index, _, claim) in sql::padded(chunk, rows) {
                statement.bind(*id)?;
                statement.bind(claim.worker.as_str())?;
                statement.bind(claim.lease_until)?;
                statement.bind(turns.get(*index).map_or(0, |t| t.now))?;
                statement.bind(claim.note.as_deref())?;
            }
            claimed.extend(statement.rows(|row| row.get::<_, i64>(0))?);
        }
        add_born_claimed(&mut commits, claims, &claimed);
        Ok(commits)
    }

    /// `turns` all or none, inside a savepoint of the batch.
    fn turns_atomically(&self, turns: &[TurnRows]) -> Result<Vec<TurnCommit>, StoreError> {
        self.execute("SAVEPOINT write_step")?;
        match self.turns(turns) {
            Ok(commits) => {
                self.execute("RELEASE SAVEPOINT write_step")?;
                Ok(commits)
            }
            Err(e) => {
                self.execute("ROLLBACK TO SAVEPOINT write_step")?;
                self.execute("RELEASE SAVEPOINT write_step")?;
                Err(e)
            }
        }
    }
}

impl Direct for SqliteBatches {
    fn run(&mut self, marks: Vec<(MarkKind, Vec<Mark>)>, turns: &[TurnRows]) -> DirectBatch {
        if let Err(e) = self.execute("BEGIN IMMEDIATE") {
            let reason = format!("cannot begin a write transaction: {e}");
            return DirectBatch::failed(marks.len(), &reason);
        }
        // Marks go first: a completion may free the next job of its conversation for a claim in the turns.
        let marked = marks
            .into_iter()
            .map(|(kind, rows)| match self.marks(kind, &rows) {
                Ok(updated) => {
                    let (by, successors) = successors_of(&updated, rows);
                    let taken_over = if successors.is_empty() {
                        Vec::new()
                    } else {
                        taken_over_by(&by, self.successors(&successors))
                    };
                    (Ok(updated), taken_over)
                }
                Err(e) => (Err(e), Vec::new()),
            })
            .collect();
        let turned = if turns.is_empty() {
            Ok(Vec::new())
        } else {
            self.turns_atomically(turns)
        };
        let committed = self.execute("COMMIT").map_err(|e| {
            // A commit that failed may leave the transaction open; the next batch must not join it.
            if !self.connection.is_autocommit() {
                let _ = self.connection.execute_batch("ROLLBACK");
            }
            e.to_string()
        });
        DirectBatch {
            marked,
            turned,
            committed,
        }
    }
}

/// A prepared statement bound in order, one anonymous parameter after the other.
struct Bound<'c> {
    statement: CachedStatement<'c>,
    next: usize,
}

impl<'c> Bound<'c> {
    fn new(statement: CachedStatement<'c>) -> Self {
        Self { statement, next: 0 }
    }

    fn bind<T: ToSql>(&mut self, value: T) -> rusqlite::Result<()> {
        self.next += 1;
        self.statement.raw_bind_parameter(self.next, value)
    }

    fn execute(mut self) -> rusqlite::Result<()> {
        self.statement.raw_execute().map(drop)
    }

    fn rows<T>(
        &mut self,
        mut read: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut rows = self.statement.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(read(row)?);
        }
        Ok(out)
    }
}

fn job_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: row.get(0)?,
        kind: row.get(1)?,
        payload: row.get(2)?,
        idempotency_key: row.get(3)?,
        ordering_key: row.get(4)?,
        status: row.get(5)?,
        attempts: row.get(6)?,
        max_attempts: row.get(7)?,
        run_at: row.get(8)?,
        locked_by: row.get(9)?,
        last_error: row.get(10)?,
        result: row.get(11)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// `.cargo/config.toml` compiles the bundled SQLite without the process-wide locks a write took on every
    /// page fetch and allocation (README "Performance", step 18); a build that lost the setting fails here.
    #[test]
    fn the_bundled_sqlite_takes_no_process_wide_lock_per_page_or_allocation() {
        let connection = rusqlite::Connection::open_in_memory().unwrap();
        let mut statement = connection.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> = statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
    }
}
