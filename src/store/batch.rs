//! Group commit. Every write of one process goes through a single writer task that gathers whatever writes
//! are waiting, runs each inside its own savepoint of one transaction, and commits once: one fsync carries
//! many activities, and SQLite's single write lock is never fought over (a lost race there means sleeping in
//! the busy handler, which is what made the webhook slow under load).
//!
//! A write that fails rolls back to its savepoint only; the others in the batch still commit. Each caller
//! hears its own result after the commit, so "committed" still means durable.

use std::future::Future;
use std::pin::Pin;

use sqlx::{Database, Pool, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::{
    BirthClaim, ChainNext, ConversationRef, InboundKey, Job, NewJob, StoreError, TurnCommit,
};
use crate::clock::Millis;

pub(super) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub(super) type Tx<DB> = Transaction<'static, DB>;

/// A one-row conditional update of a running job that every job makes (its completion, its note before
/// an unrepeatable call). The writer runs all marks of one kind waiting in a batch as one statement: on
/// SQLite each statement is a round trip to the connection's thread, and under load those hand-offs, not
/// the statements, were what limited the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MarkKind {
    /// `status = 'done'`, `result = text`.
    Done,
    /// `last_error = text` (the in-flight note).
    Sending,
}

/// One job's mark: applies only while `worker` holds the job's lease.
#[derive(Debug)]
pub(super) struct Mark {
    pub(super) id: i64,
    pub(super) worker: String,
    pub(super) text: Option<String>,
    pub(super) now: Millis,
    /// With a completion: the chain's next job to claim for `worker` if the completion applies.
    pub(super) next: Option<ChainNext>,
}

/// A completed job's chain whose next job `worker` takes over (see [`ChainNext`]).
#[derive(Debug)]
pub(super) struct Successor {
    pub(super) worker: String,
    pub(super) next: ChainNext,
    pub(super) now: Millis,
}

/// Runs one statement for `marks` (all of `kind`) and returns the ids it updated. Each backend supplies
/// it, with its own bind types.
pub(super) type RunMarks<DB> =
    for<'t> fn(&'t mut Tx<DB>, MarkKind, &'t [Mark]) -> BoxFuture<'t, Result<Vec<i64>, StoreError>>;

/// Claims the next job of each chain (at most one [`Successor`] per chain) and returns the jobs claimed.
pub(super) type RunSuccessors<DB> =
    for<'t> fn(&'t mut Tx<DB>, &'t [Successor]) -> BoxFuture<'t, Result<Vec<Job>, StoreError>>;

/// Most marks in one statement (four values each, well under either backend's parameter limit).
pub(super) const MAX_MARKS: usize = 128;

/// A turn's commit in its commonest shape: a new activity id, touches of its conversation and the jobs it
/// queues (a command answered with a card). The writer merges the turns waiting in a batch into a few
/// multi-row statements instead of three statements each.
#[derive(Debug)]
pub(super) struct TurnRows {
    pub(super) key: InboundKey,
    pub(super) now: Millis,
    pub(super) response: Option<String>,
    pub(super) touches: Vec<ConversationRef>,
    pub(super) jobs: Vec<NewJob>,
    pub(super) claim: Option<BirthClaim>,
}

/// Commits `turns` (in order: of two with the same key, the first is applied) and says how each ended,
/// with the jobs each claimed.
pub(super) type RunTurns<DB> = for<'t> fn(
    &'t mut Tx<DB>,
    &'t [TurnRows],
) -> BoxFuture<'t, Result<Vec<TurnCommit>, StoreError>>;

/// The backend's statements for the merged writes.
pub(super) struct Merged<DB: Database> {
    pub(super) marks: RunMarks<DB>,
    pub(super) successors: RunSuccessors<DB>,
    pub(super) turns: RunTurns<DB>,
}

/// A mark's answer: whether it applied, and the job its completion took over.
type MarkAnswer = Result<(bool, Option<Job>), StoreError>;

/// Called once the batch's fate is known: `Ok` after the commit, `Err` with the reason it failed.
type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;
type Step<DB> = Box<dyn for<'t> FnOnce(&'t mut Tx<DB>) -> BoxFuture<'t, Deliver> + Send>;

/// Most writes in one transaction; bounds the latency one batch adds to the first write in it.
const MAX_BATCH: usize = 256;

enum Entry<DB: Database> {
    Step(Step<DB>),
    Mark(MarkKind, Mark, oneshot::Sender<MarkAnswer>),
    Turn(
        Box<TurnRows>,
        oneshot::Sender<Result<TurnCommit, StoreError>>,
    ),
}

pub(super) struct Writer<DB: Database> {
    queue: mpsc::UnboundedSender<Entry<DB>>,
    /// SQLite undoes a failed statement by itself and the transaction goes on, so a single-statement write
    /// needs no savepoint there; on PostgreSQL any error poisons the transaction until rolled back to one.
    statement_atomic: bool,
}

impl<DB: Database> Writer<DB>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    /// Starts the writer task on `pool` (for SQLite a pool of one connection: the only writer). With
    /// `sync`, the commits do not wait for the disk themselves and `sync` makes them durable before their
    /// callers hear of them (see [`answer_when_synced`]).
    pub(super) fn start(
        pool: Pool<DB>,
        statement_atomic: bool,
        merged: Merged<DB>,
        sync: Option<SyncLog>,
    ) -> Self {
        let (queue, steps) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, steps, merged, statement_atomic, sync));
        Self {
            queue,
            statement_atomic,
        }
    }

    /// Runs `write` in the next batch, inside its own savepoint, and returns its result once that batch
    /// committed.
    pub(super) async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx<DB>) -> BoxFuture<'t, Result<T, StoreError>> + Send + 'static,
    {
        self.submit(true, write).await
    }

    /// Like [`Writer::write`] for a write that is one statement: no savepoint where the backend makes a
    /// statement atomic by itself (two round trips fewer on the hot path of every job).
    pub(super) async fn write_one<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx<DB>) -> BoxFuture<'t, Result<T, StoreError>> + Send + 'static,
    {
        self.submit(!self.statement_atomic, write).await
    }

    /// [`Writer::write`] when `multi_statement`, else [`Writer::write_one`].
    pub(super) async fn write_as<T, F>(
        &self,
        multi_statement: bool,
        write: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx<DB>) -> BoxFuture<'t, Result<T, StoreError>> + Send + 'static,
    {
        self.submit(multi_statement || !self.statement_atomic, write)
            .await
    }

    /// Applies `mark` in the next batch, merged with the other marks of its kind there; `Ok(false)` when
    /// the job is no longer running under `mark.worker`'s lease.
    pub(super) async fn mark(&self, kind: MarkKind, mark: Mark) -> MarkAnswer {
        let (send, recv) = oneshot::channel();
        self.queue
            .send(Entry::Mark(kind, mark, send))
            .map_err(|_| stopped())?;
        recv.await.map_err(|_| stopped())?
    }

    /// Commits `turn` in the next batch, merged with the other turns there.
    pub(super) async fn turn(&self, turn: TurnRows) -> Result<TurnCommit, StoreError> {
        let (send, recv) = oneshot::channel();
        self.queue
            .send(Entry::Turn(Box::new(turn), send))
            .map_err(|_| stopped())?;
        recv.await.map_err(|_| stopped())?
    }

    async fn submit<T, F>(&self, savepoint: bool, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx<DB>) -> BoxFuture<'t, Result<T, StoreError>> + Send + 'static,
    {
        let (send, recv) = oneshot::channel::<Result<T, StoreError>>();
        let step: Step<DB> = Box::new(move |tx| {
            Box::pin(async move {
                let result = if savepoint {
                    in_savepoint(tx, write).await
                } else {
                    write(tx).await
                };
                Box::new(move |committed: Result<(), String>| {
                    let outcome = match (result, committed) {
                        (Err(e), _) => Err(e),
                        (Ok(value), Ok(())) => Ok(value),
                        (Ok(_), Err(reason)) => Err(StoreError::Other(anyhow::anyhow!(
                            "the write was not committed: {reason}"
                        ))),
                    };
                    // The caller may have gone away (client disconnected); the write stands regardless.
                    let _ = send.send(outcome);
                }) as Deliver
            })
        });
        self.queue.send(Entry::Step(step)).map_err(|_| stopped())?;
        // A dropped step (the batch could not even begin) closes the channel.
        recv.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Other(anyhow::anyhow!(
        "the store could not start a write transaction"
    ))
}

async fn in_savepoint<DB, T, F>(tx: &mut Tx<DB>, write: F) -> Result<T, StoreError>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    F: for<'t> FnOnce(&'t mut Tx<DB>) -> BoxFuture<'t, Result<T, StoreError>>,
{
    sqlx::raw_sql("SAVEPOINT write_step")
        .execute(&mut **tx)
        .await?;
    match write(tx).await {
        Ok(value) => {
            sqlx::raw_sql("RELEASE SAVEPOINT write_step")
                .execute(&mut **tx)
                .await?;
            Ok(value)
        }
        Err(e) => {
            sqlx::raw_sql("ROLLBACK TO SAVEPOINT write_step")
                .execute(&mut **tx)
                .await?;
            sqlx::raw_sql("RELEASE SAVEPOINT write_step")
                .execute(&mut **tx)
                .await?;
            Err(e)
        }
    }
}

/// Claims the next job of each chain whose completion applied in `updated` and asked for it; returns each
/// claimed job with the id of the completion that took it over. A failure only costs the hand-over: the
/// worker's next claim finds those jobs.
async fn take_over<DB>(
    tx: &mut Tx<DB>,
    run_successors: RunSuccessors<DB>,
    statement_atomic: bool,
    updated: &[i64],
    rows: Vec<Mark>,
) -> Vec<(i64, Job)>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    let mut by = Vec::new();
    let mut successors: Vec<Successor> = Vec::new();
    for mark in rows {
        let Some(next) = mark.next else { continue };
        // One claim per chain: a chain runs one job at a time, so a second completion in it lost its lease.
        if updated.contains(&mark.id)
            && !successors
                .iter()
                .any(|s| s.next.ordering_key == next.ordering_key)
        {
            by.push((next.ordering_key.clone(), mark.id));
            successors.push(Successor {
                worker: mark.worker,
                next,
                now: mark.now,
            });
        }
    }
    if successors.is_empty() {
        return Vec::new();
    }
    let claimed = if statement_atomic {
        run_successors(tx, &successors).await
    } else {
        in_savepoint(tx, move |tx| {
            Box::pin(async move { run_successors(tx, &successors).await })
        })
        .await
    };
    match claimed {
        Ok(jobs) => jobs
            .into_iter()
            .filter_map(|job| {
                let chain = job.ordering_key.as_deref()?;
                let (_, id) = by.iter().find(|(c, _)| c == chain)?;
                Some((*id, job))
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "taking over the next jobs of finished chains failed");
            Vec::new()
        }
    }
}

/// Tells a batch's callers how it ended.
type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Makes the committed transactions durable when the commit itself did not wait for the disk: SQLite with
/// `synchronous=NORMAL` writes a commit to its write-ahead log without syncing it, and this syncs the log.
pub(super) type SyncLog = std::sync::Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>;

/// Answers committed batches once the log holding them is synced. One sync covers every batch committed
/// before it started, so while one runs the writer commits the next batches and the sync after it answers
/// them all: the disk's flush latency is paid once per sync, not once per batch, and no longer stops the
/// writer. Nothing a caller does with its answer (an HTTP acknowledgement, a reply sent by a job it
/// claimed) can happen before the data it depends on is on disk.
async fn answer_when_synced(sync: SyncLog, mut committed: mpsc::UnboundedReceiver<Answer>) {
    while let Some(first) = committed.recv().await {
        let mut answers = vec![first];
        while let Ok(answer) = committed.try_recv() {
            answers.push(answer);
        }
        let sync = sync.clone();
        let started = std::time::Instant::now();
        let synced = match tokio::task::spawn_blocking(move || sync()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        metrics::histogram!("fieldbot_store_sync_seconds").record(started.elapsed().as_secs_f64());
        let synced = synced.map_err(|e| {
            tracing::error!(error = %e, "syncing the write log failed; its writes are reported as failed");
            format!("the write could not be made durable: {e}")
        });
        for answer in answers {
            answer(synced.clone());
        }
    }
}

async fn run<DB>(
    pool: Pool<DB>,
    mut entries: mpsc::UnboundedReceiver<Entry<DB>>,
    merged: Merged<DB>,
    statement_atomic: bool,
    sync: Option<SyncLog>,
) where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    let synced = sync.map(|sync| {
        let (send, committed) = mpsc::unbounded_channel();
        tokio::spawn(answer_when_synced(sync, committed));
        send
    });
    while let Some(first) = entries.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match entries.try_recv() {
                Ok(entry) => batch.push(entry),
                Err(_) => break,
            }
        }
        let size = batch.len();
        let started = std::time::Instant::now();
        let mut steps = Vec::with_capacity(size);
        let (mut done, mut sending, mut turns) = (Vec::new(), Vec::new(), Vec::new());
        for entry in batch {
            match entry {
                Entry::Step(step) => steps.push(step),
                Entry::Turn(turn, send) => turns.push((*turn, send)),
                Entry::Mark(MarkKind::Done, mark, send) => done.push((mark, send)),
                Entry::Mark(MarkKind::Sending, mark, send) => sending.push((mark, send)),
            }
        }
        let mut tx = match pool.begin().await {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!(error = %e, writes = size, "cannot begin a write transaction");
                // Dropping the steps and senders tells every caller the write did not happen.
                continue;
            }
        };
        // Marks go first: a completion in this batch may free the next job of its conversation for a
        // claim later in the same batch.
        let mut marked = Vec::new();
        for (kind, group) in [(MarkKind::Done, done), (MarkKind::Sending, sending)] {
            let mut group = group.into_iter().peekable();
            while group.peek().is_some() {
                let (rows, sends): (Vec<Mark>, Vec<_>) = group.by_ref().take(MAX_MARKS).unzip();
                let ids: Vec<i64> = rows.iter().map(|m| m.id).collect();
                let run_marks = merged.marks;
                let updated = if statement_atomic {
                    run_marks(&mut tx, kind, &rows)
                        .await
                        .map(|updated| (updated, rows))
                } else {
                    in_savepoint(&mut tx, move |tx| {
                        Box::pin(async move {
                            let updated = run_marks(tx, kind, &rows).await?;
                            Ok((updated, rows))
                        })
                    })
                    .await
                };
                let (updated, taken_over) = match updated {
                    Ok((updated, rows)) => {
                        let taken_over =
                            take_over(&mut tx, merged.successors, statement_atomic, &updated, rows)
                                .await;
                        (Ok(updated), taken_over)
                    }
                    Err(e) => (Err(e), Vec::new()),
                };
                marked.push((ids.into_iter().zip(sends), updated, taken_over));
            }
        }
        // Several statements: all of them or none (a savepoint on either backend).
        let (rows, turns): (Vec<TurnRows>, Vec<_>) = turns.into_iter().unzip();
        let turned = if rows.is_empty() {
            Ok(Vec::new())
        } else {
            let run_turns = merged.turns;
            in_savepoint(&mut tx, move |tx| {
                Box::pin(async move { run_turns(tx, &rows).await })
            })
            .await
        };
        let mut deliveries = Vec::with_capacity(steps.len());
        for step in steps {
            deliveries.push(step(&mut tx).await);
        }
        let committed = tx.commit().await.map_err(|e| e.to_string());
        if let Err(reason) = &committed {
            tracing::error!(error = %reason, writes = size, "a write batch failed to commit");
        }
        metrics::histogram!("fieldbot_store_batch_size").record(size as f64);
        metrics::histogram!("fieldbot_store_batch_seconds").record(started.elapsed().as_secs_f64());
        let answer: Answer = Box::new(move |committed: Result<(), String>| {
            for deliver in deliveries {
                deliver(committed.clone());
            }
            match (turned, &committed) {
                (Ok(commits), Ok(())) => {
                    for (send, commit) in turns.into_iter().zip(commits) {
                        let _ = send.send(Ok(commit));
                    }
                }
                (Err(e), _) => {
                    let reason = e.to_string();
                    for send in turns {
                        let _ = send.send(Err(StoreError::Other(anyhow::anyhow!("{reason}"))));
                    }
                }
                (Ok(_), Err(reason)) => {
                    for send in turns {
                        let _ = send.send(Err(StoreError::Other(anyhow::anyhow!(
                            "the write was not committed: {reason}"
                        ))));
                    }
                }
            }
            for (chunk, updated, mut taken_over) in marked {
                for (id, send) in chunk {
                    let outcome = match (&updated, &committed) {
                        (Err(e), _) => Err(StoreError::Other(anyhow::anyhow!("{e}"))),
                        (Ok(_), Err(reason)) => Err(StoreError::Other(anyhow::anyhow!(
                            "the write was not committed: {reason}"
                        ))),
                        (Ok(ids), Ok(())) => {
                            let next = taken_over
                                .iter()
                                .position(|(by, _)| *by == id)
                                .map(|i| taken_over.swap_remove(i).1);
                            Ok((ids.contains(&id), next))
                        }
                    };
                    let _ = send.send(outcome);
                }
            }
        });
        match (&committed, &synced) {
            // Answered once the log is on disk; meanwhile the next batch runs.
            (Ok(()), Some(synced)) => {
                if let Err(mpsc::error::SendError(answer)) = synced.send(answer) {
                    answer(Err("the write log syncer stopped".to_owned()));
                }
            }
            _ => answer(committed),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use sqlx::Sqlite;
    use sqlx::sqlite::SqlitePoolOptions;

    use super::*;

    fn no_marks<'t>(
        _: &'t mut Tx<Sqlite>,
        _: MarkKind,
        _: &'t [Mark],
    ) -> BoxFuture<'t, Result<Vec<i64>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn no_successors<'t>(
        _: &'t mut Tx<Sqlite>,
        _: &'t [Successor],
    ) -> BoxFuture<'t, Result<Vec<Job>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn no_turns<'t>(
        _: &'t mut Tx<Sqlite>,
        _: &'t [TurnRows],
    ) -> BoxFuture<'t, Result<Vec<TurnCommit>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// A sync that waits for the test's go-ahead, then succeeds or fails as told.
    fn gated_sync() -> (SyncLog, std::sync::mpsc::Sender<Result<(), String>>) {
        let (go, gate) = std::sync::mpsc::channel::<Result<(), String>>();
        let gate = Mutex::new(gate);
        let sync: SyncLog = Arc::new(move || {
            let next = gate.lock().unwrap().recv().unwrap_or(Ok(()));
            next.map_err(std::io::Error::other)
        });
        (sync, go)
    }

    fn insert(
        writer: &Arc<Writer<Sqlite>>,
        n: i64,
        ran: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<Result<(), StoreError>> {
        let writer = writer.clone();
        tokio::spawn(async move {
            writer
                .write(move |tx| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO t (n) VALUES ($1)")
                            .bind(n)
                            .execute(&mut **tx)
                            .await?;
                        ran.store(true, Ordering::SeqCst);
                        Ok(())
                    })
                })
                .await
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_is_answered_after_a_sync_begun_after_its_commit_and_the_writer_goes_on_meanwhile()
     {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (n INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        let (sync, go) = gated_sync();
        let merged = Merged {
            marks: no_marks,
            successors: no_successors,
            turns: no_turns,
        };
        let writer = Arc::new(Writer::start(pool.clone(), true, merged, Some(sync)));

        let first_ran = Arc::new(AtomicBool::new(false));
        let first = insert(&writer, 1, first_ran.clone());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(first_ran.load(Ordering::SeqCst), "committed");
        assert!(!first.is_finished(), "not answered before its sync");

        // While that sync waits for the disk, the next batch runs and commits.
        let second_ran = Arc::new(AtomicBool::new(false));
        let second = insert(&writer, 2, second_ran.clone());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(second_ran.load(Ordering::SeqCst));
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(rows, 2);

        go.send(Ok(())).unwrap();
        first.await.unwrap().unwrap();
        assert!(
            !second.is_finished(),
            "committed after that sync began: it waits for the next one"
        );
        // A failed sync: the writes it should have covered are reported as failed, not as durable.
        go.send(Err("EIO".to_owned())).unwrap();
        let failed = second.await.unwrap();
        assert!(
            failed
                .as_ref()
                .is_err_and(|e| e.to_string().contains("could not be made durable")),
            "{failed:?}"
        );
    }
}
