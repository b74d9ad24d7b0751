//! Group commit. Every write of one process goes through a single writer task that gathers whatever writes
//! are waiting, runs each inside its own savepoint of one transaction, and commits once: one fsync carries
//! many activities, and SQLite's single write lock is never fought over (a lost race there means sleeping in
//! the busy handler, which is what made the webhook slow under load).
//!
//! A write that fails rolls back to its savepoint only; the others in the batch still commit. Each caller
//! hears its own result after the commit, so "committed" still means durable.
//!
//! On PostgreSQL the writer is a tokio task. On SQLite it is a thread of its own, and the merged writes
//! (see [`Direct`]) run there on a connection of the writer's own, a batch in one call.

use std::future::Future;
use std::pin::Pin;

use sqlx::{Database, Pool, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::{
    BirthClaim, ChainNext, Commit, ConversationRef, InboundKey, Job, NewJob, PayloadPart,
    StoreError, TurnCommit,
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
    /// The job whose completion hands its chain over.
    pub(super) after: i64,
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

/// Which of `turns` apply, given the de-duplication keys the batch's insert took (`inserted`): of two turns
/// with one key in the batch, the first takes the inserted row. The others are duplicates.
pub(super) fn applied_turns(
    turns: &[TurnRows],
    mut inserted: std::collections::HashSet<(String, String, String)>,
) -> Vec<bool> {
    turns
        .iter()
        .map(|t| {
            inserted.remove(&(
                t.key.channel_id.clone(),
                t.key.conversation_id.clone(),
                t.key.activity_id.clone(),
            ))
        })
        .collect()
}

/// Each turn's commit, and the applied turns with their index, given which are `fresh` (see
/// [`applied_turns`]) and, in order, the first response of each duplicate.
pub(super) fn turn_commits<'a>(
    turns: &'a [TurnRows],
    fresh: &[bool],
    responses: Vec<Option<String>>,
) -> (Vec<TurnCommit>, Vec<(usize, &'a TurnRows)>) {
    let mut responses = responses.into_iter();
    let mut commits = Vec::with_capacity(turns.len());
    let mut applied = Vec::new();
    for ((index, t), fresh) in turns.iter().enumerate().zip(fresh) {
        let commit = if *fresh {
            applied.push((index, t));
            Commit::Applied
        } else {
            Commit::Duplicate {
                response: responses.next().flatten(),
            }
        };
        commits.push(TurnCommit {
            commit,
            claimed: Vec::new(),
        });
    }
    (commits, applied)
}

/// The applied turns' conversation touches, one row per conversation (a multi-row upsert may not touch a
/// row twice), folded in order as consecutive upserts would have left it.
pub(super) fn folded_touches(applied: &[(usize, &TurnRows)]) -> Vec<(ConversationRef, Millis)> {
    let mut touches: Vec<(ConversationRef, Millis)> = Vec::new();
    for (_, t) in applied {
        for touch in &t.touches {
            match touches
                .iter_mut()
                .find(|(r, _)| r.conversation_id == touch.conversation_id)
            {
                Some((r, at)) => {
                    *r = ConversationRef {
                        conversation_id: touch.conversation_id.clone(),
                        service_url: touch.service_url.clone(),
                        tenant_id: touch.tenant_id.clone().or(r.tenant_id.take()),
                        team_id: touch.team_id.clone().or(r.team_id.take()),
                        team_name: touch.team_name.clone().or(r.team_name.take()),
                        channel_id: touch.channel_id.clone().or(r.channel_id.take()),
                        bot_id: touch.bot_id.clone().or(r.bot_id.take()),
                        conversation_type: touch
                            .conversation_type
                            .clone()
                            .or(r.conversation_type.take()),
                    };
                    *at = t.now;
                }
                None => touches.push((touch.clone(), t.now)),
            }
        }
    }
    touches
}

/// The rows that follow the applied turns' jobs, given the ids the job insert returned by idempotency key
/// (`inserted`): a job whose key was queued before is not inserted again, nor is its payload.
pub(super) struct JobFollowUps<'a> {
    pub(super) payloads: Vec<(i64, &'a NewJob)>,
    /// Each distinct part once.
    pub(super) parts: Vec<&'a PayloadPart>,
    /// (job id, turn index, job, claim): the new jobs the turn's [`BirthClaim`] asks for.
    pub(super) claims: Vec<(i64, usize, &'a NewJob, &'a BirthClaim)>,
}

pub(super) fn job_follow_ups<'a>(
    applied: &[(usize, &'a TurnRows)],
    mut inserted: std::collections::HashMap<String, i64>,
) -> JobFollowUps<'a> {
    let mut rows = JobFollowUps {
        payloads: Vec::new(),
        parts: Vec::new(),
        claims: Vec::new(),
    };
    for (index, t) in applied {
        for job in &t.jobs {
            let Some(id) = inserted.remove(&job.idempotency_key) else {
                continue;
            };
            rows.payloads.push((id, job));
            if let Some(part) = &job.part
                && !rows.parts.iter().any(|p| p.digest == part.digest)
            {
                rows.parts.push(part);
            }
            if let Some(claim) = &t.claim
                && claim.keys.contains(&job.idempotency_key)
            {
                rows.claims.push((id, *index, job, claim));
            }
        }
    }
    rows
}

/// Adds each job its birth claim took (`claimed`, by id) to its turn's commit, as the claim left it.
pub(super) fn add_born_claimed(
    commits: &mut [TurnCommit],
    claims: Vec<(i64, usize, &NewJob, &BirthClaim)>,
    claimed: &std::collections::HashSet<i64>,
) {
    for (id, index, job, claim) in claims {
        if let (true, Some(commit)) = (claimed.contains(&id), commits.get_mut(index)) {
            commit.claimed.push(Job {
                id,
                kind: job.kind.clone(),
                payload: job.whole_payload(),
                idempotency_key: job.idempotency_key.clone(),
                ordering_key: job.ordering_key.clone(),
                status: super::JobStatus::Running,
                attempts: 1,
                max_attempts: job.max_attempts,
                run_at: claim.lease_until,
                locked_by: Some(claim.worker.clone()),
                last_error: claim.note.clone(),
                result: None,
            });
        }
    }
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

/// A backend's merged writes run in one blocking call on a connection of their own: the whole batch (its
/// begin, marks, take-overs, turns and commit) without a hand-off between tokio and the database's thread
/// per statement. Under load each hand-off waited for a busy core, and a batch made about fourteen of
/// them. A batch's other writes commit after these, in a transaction of their own on the pool.
pub(super) trait Direct: Send + 'static {
    /// Runs `marks` (chunks of at most [`MAX_MARKS`] of one kind each), each completion's take-over, and
    /// `turns` (all or none) in one transaction, and commits it.
    fn run(&mut self, marks: Vec<(MarkKind, Vec<Mark>)>, turns: &[TurnRows]) -> DirectBatch;
}

/// One chunk of marks: the ids it updated, and the jobs its completions took over, each with the id of the
/// completion that took it.
pub(super) type MarkedChunk = (Result<Vec<i64>, StoreError>, Vec<(i64, Job)>);

/// What a [`Direct`] batch did: for each chunk of marks the ids it updated and the jobs taken over (with the
/// completion that took each), the turns' commits, and whether the transaction committed.
pub(super) struct DirectBatch {
    pub(super) marked: Vec<MarkedChunk>,
    pub(super) turned: Result<Vec<TurnCommit>, StoreError>,
    pub(super) committed: Result<(), String>,
}

impl DirectBatch {
    /// A batch of `chunks` chunks of marks that did not happen, for `reason`.
    pub(super) fn failed(chunks: usize, reason: &str) -> Self {
        let error = || StoreError::Other(anyhow::anyhow!("{reason}"));
        Self {
            marked: (0..chunks).map(|_| (Err(error()), Vec::new())).collect(),
            turned: Err(error()),
            committed: Err(reason.to_owned()),
        }
    }
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
    /// callers hear of them (see [`Durability`]). With `direct`, the merged writes run there instead
    /// of on `pool`, and the writer runs on a thread of its own (see [`Direct`]).
    pub(super) fn start(
        pool: Pool<DB>,
        statement_atomic: bool,
        merged: Merged<DB>,
        sync: Option<SyncLog>,
        direct: Option<Box<dyn Direct>>,
    ) -> Result<Self, StoreError> {
        let (queue, steps) = mpsc::unbounded_channel();
        // A writer that syncs, or runs blocking batches, may not run on tokio's workers; on a thread of its
        // own, it also wakes as soon as a write arrives, not when a worker gets round to its task.
        let own_thread = direct.is_some() || sync.is_some();
        let durability = sync.map_or(Durability::Committed, Durability::Inline);
        if own_thread {
            let runtime = tokio::runtime::Handle::try_current()
                .map_err(|e| StoreError::Other(anyhow::Error::new(e)))?;
            let writer = run(pool, steps, merged, statement_atomic, durability, direct);
            spawn_thread("store-writer", move || runtime.block_on(writer))?;
        } else {
            tokio::spawn(run(pool, steps, merged, statement_atomic, durability, None));
        }
        Ok(Self {
            queue,
            statement_atomic,
        })
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

/// The chains whose completion applied in `updated` and asked for their next job: at most one take-over per
/// chain (a chain runs one job at a time, so a second completion in it lost its lease), each with the id of
/// the completion asking.
pub(super) fn successors_of(
    updated: &[i64],
    rows: Vec<Mark>,
) -> (Vec<(String, i64)>, Vec<Successor>) {
    let mut by = Vec::new();
    let mut successors: Vec<Successor> = Vec::new();
    for mark in rows {
        let Some(next) = mark.next else { continue };
        if updated.contains(&mark.id)
            && !successors
                .iter()
                .any(|s| s.next.ordering_key == next.ordering_key)
        {
            by.push((next.ordering_key.clone(), mark.id));
            successors.push(Successor {
                after: mark.id,
                worker: mark.worker,
                next,
                now: mark.now,
            });
        }
    }
    (by, successors)
}

/// Each job taken over, with the id of the completion that took it (`by`, from [`successors_of`]). A failed
/// take-over only costs the hand-over: the worker's next claim finds those jobs.
pub(super) fn taken_over_by(
    by: &[(String, i64)],
    claimed: Result<Vec<Job>, StoreError>,
) -> Vec<(i64, Job)> {
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

/// Claims the next job of each chain whose completion applied in `updated` and asked for it; returns each
/// claimed job with the id of the completion that took it over.
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
    let (by, successors) = successors_of(updated, rows);
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
    taken_over_by(&by, claimed)
}

/// Tells a batch's callers how it ended.
type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Makes the committed transactions durable when the commit itself did not wait for the disk: SQLite with
/// `synchronous=NORMAL` writes a commit to its write-ahead log without syncing it, and this syncs the log.
pub(super) type SyncLog = std::sync::Arc<dyn Fn() -> std::io::Result<()> + Send + Sync>;

/// How a committed batch is made durable before its callers hear of it. Either way nothing a caller does
/// with its answer (an HTTP acknowledgement, a reply sent by a job it claimed) can happen before the data
/// it depends on is on disk.
enum Durability {
    /// The commit itself waited for the disk, or there is no disk.
    Committed,
    /// The writer syncs the log right after its commit, on its own thread. Measured against handing each
    /// batch to a syncer thread that answered it while the writer went on: more acks and less CPU, because
    /// the hand-off cost more than the overlap gained (README "Performance", step 19).
    Inline(SyncLog),
}

/// Runs `sync`, recording how long it took; an error becomes the reason every write it covered failed.
fn sync_log(sync: &SyncLog) -> Result<(), String> {
    let started = std::time::Instant::now();
    let synced = sync();
    metrics::histogram!("fieldbot_store_sync_seconds").record(started.elapsed().as_secs_f64());
    synced.map_err(|e| {
        tracing::error!(error = %e, "syncing the write log failed; its writes are reported as failed");
        format!("the write could not be made durable: {e}")
    })
}

fn spawn_thread(name: &str, body: impl FnOnce() + Send + 'static) -> Result<(), StoreError> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map(drop)
        .map_err(|e| {
            StoreError::Other(
                anyhow::Error::new(e).context(format!("cannot start the {name} thread")),
            )
        })
}

/// What one batch's merged writes and steps did, however it ran.
struct Ran {
    /// Per chunk of marks, in order: the ids it updated, and the jobs its completions took over.
    marked: Vec<MarkedChunk>,
    turned: Result<Vec<TurnCommit>, StoreError>,
    deliveries: Vec<Deliver>,
    /// The merged writes' commit.
    committed: Result<(), String>,
    /// The deliveries' commit: the same one, unless the merged writes ran on the direct connection.
    steps_committed: Result<(), String>,
}

impl Ran {
    fn nothing() -> Self {
        Self {
            marked: Vec::new(),
            turned: Ok(Vec::new()),
            deliveries: Vec::new(),
            committed: Ok(()),
            steps_committed: Ok(()),
        }
    }
}

async fn run<DB>(
    pool: Pool<DB>,
    mut entries: mpsc::UnboundedReceiver<Entry<DB>>,
    merged: Merged<DB>,
    statement_atomic: bool,
    durability: Durability,
    mut direct: Option<Box<dyn Direct>>,
) where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
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
        // Marks go first: a completion in this batch may free the next job of its conversation for a
        // claim later in the same batch.
        let mut mark_chunks = Vec::new();
        let mut mark_sends = Vec::new();
        for (kind, group) in [(MarkKind::Done, done), (MarkKind::Sending, sending)] {
            let mut group = group.into_iter().peekable();
            while group.peek().is_some() {
                let (rows, sends): (Vec<Mark>, Vec<_>) = group.by_ref().take(MAX_MARKS).unzip();
                mark_sends.push(rows.iter().map(|m| m.id).zip(sends).collect::<Vec<_>>());
                mark_chunks.push((kind, rows));
            }
        }
        let (rows, turns): (Vec<TurnRows>, Vec<_>) = turns.into_iter().unzip();
        let merged_writes = !mark_chunks.is_empty() || !rows.is_empty();
        let ran = if direct.is_some() {
            // The merged writes commit on the direct connection and the other writes after them, in a
            // transaction of their own on the pool: they came from different callers at the same moment,
            // so either order is one they could have had.
            let mut ran = if merged_writes {
                run_direct(&mut direct, mark_chunks, &rows)
            } else {
                Ran::nothing()
            };
            if !steps.is_empty() {
                match pool.begin().await {
                    Ok(tx) => {
                        let stepped = run_pooled(
                            tx,
                            &merged,
                            statement_atomic,
                            Vec::new(),
                            Vec::new(),
                            steps,
                        )
                        .await;
                        ran.deliveries = stepped.deliveries;
                        ran.steps_committed = stepped.committed;
                    }
                    // Dropping the steps tells their callers the write did not happen.
                    Err(e) => tracing::error!(error = %e, "cannot begin a write transaction"),
                }
            }
            ran
        } else {
            match pool.begin().await {
                Ok(tx) => run_pooled(tx, &merged, statement_atomic, mark_chunks, rows, steps).await,
                Err(e) => {
                    tracing::error!(error = %e, writes = size, "cannot begin a write transaction");
                    // Dropping the steps and senders tells every caller the write did not happen.
                    continue;
                }
            }
        };
        let Ran {
            marked,
            turned,
            deliveries,
            committed,
            steps_committed,
        } = ran;
        let marked: Vec<_> = mark_sends
            .into_iter()
            .zip(marked)
            .map(|(sends, (updated, taken_over))| (sends, updated, taken_over))
            .collect();
        for reason in [&committed, &steps_committed]
            .into_iter()
            .filter_map(|c| c.as_ref().err())
        {
            tracing::error!(error = %reason, writes = size, "a write batch failed to commit");
        }
        metrics::histogram!("fieldbot_store_batch_size").record(size as f64);
        metrics::histogram!("fieldbot_store_batch_seconds").record(started.elapsed().as_secs_f64());
        let any_committed = committed.is_ok() || steps_committed.is_ok();
        // Each part is answered with its own commit's outcome, then with the sync's.
        let answer: Answer = Box::new(move |synced: Result<(), String>| {
            let committed = committed.and_then(|()| synced.clone());
            let steps_committed = steps_committed.and(synced);
            for deliver in deliveries {
                deliver(steps_committed.clone());
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
        match (any_committed, &durability) {
            (true, Durability::Inline(sync)) => answer(sync_log(sync)),
            _ => answer(Ok(())),
        }
    }
}

/// Runs the merged writes on the [`Direct`] connection, on the writer's own thread. If the connection
/// fails with a panic, it is dropped (its transaction rolled back) and later batches run on the pool.
fn run_direct(
    direct: &mut Option<Box<dyn Direct>>,
    marks: Vec<(MarkKind, Vec<Mark>)>,
    turns: &[TurnRows],
) -> Ran {
    let chunks = marks.len();
    let ran = direct.as_mut().map(|connection| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            connection.run(marks, turns)
        }))
    });
    let batch = match ran {
        Some(Ok(batch)) => batch,
        _ => {
            tracing::error!("the direct write connection failed; writes go through the pool");
            *direct = None;
            DirectBatch::failed(
                chunks,
                "the write batch failed: the direct write connection broke",
            )
        }
    };
    Ran {
        marked: batch.marked,
        turned: batch.turned,
        deliveries: Vec::new(),
        committed: batch.committed,
        steps_committed: Ok(()),
    }
}

/// Runs a batch in `tx` through sqlx: the merged writes with the backend's statements, then the steps.
async fn run_pooled<DB>(
    mut tx: Tx<DB>,
    merged: &Merged<DB>,
    statement_atomic: bool,
    mark_chunks: Vec<(MarkKind, Vec<Mark>)>,
    rows: Vec<TurnRows>,
    steps: Vec<Step<DB>>,
) -> Ran
where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    let mut marked = Vec::with_capacity(mark_chunks.len());
    for (kind, rows) in mark_chunks {
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
        marked.push(match updated {
            Ok((updated, rows)) => {
                let taken_over =
                    take_over(&mut tx, merged.successors, statement_atomic, &updated, rows).await;
                (Ok(updated), taken_over)
            }
            Err(e) => (Err(e), Vec::new()),
        });
    }
    // Several statements: all of them or none (a savepoint on either backend).
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
    Ran {
        marked,
        turned,
        deliveries,
        steps_committed: committed.clone(),
        committed,
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

    /// Merged writes that touch nothing on the pool.
    fn merged_nothing() -> Merged<Sqlite> {
        Merged {
            marks: no_marks,
            successors: no_successors,
            turns: no_turns,
        }
    }

    /// The answer to a write whose sync failed: failed, not durable.
    fn assert_not_durable<T: std::fmt::Debug>(answer: &Result<T, StoreError>) {
        assert!(
            answer
                .as_ref()
                .is_err_and(|e| e.to_string().contains("could not be made durable")),
            "{answer:?}"
        );
    }

    /// A one-connection in-memory pool with a table `t (n)` for the writes under test.
    async fn pool_with_table() -> sqlx::SqlitePool {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (n INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        pool
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

    /// Without a direct connection the rule is the same: the writer, on its own thread, syncs each commit
    /// before answering it and before the next batch runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_a_direct_connection_the_writer_also_syncs_each_commit_before_answering_it() {
        let pool = pool_with_table().await;
        let (sync, go) = gated_sync();
        let merged = merged_nothing();
        let writer = Arc::new(Writer::start(pool.clone(), true, merged, Some(sync), None).unwrap());

        let first_ran = Arc::new(AtomicBool::new(false));
        let first = insert(&writer, 1, first_ran.clone());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(first_ran.load(Ordering::SeqCst), "committed");
        assert!(!first.is_finished(), "not answered before its sync");

        let second_ran = Arc::new(AtomicBool::new(false));
        let second = insert(&writer, 2, second_ran.clone());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !second_ran.load(Ordering::SeqCst),
            "waits for the sync before it"
        );

        go.send(Ok(())).unwrap();
        first.await.unwrap().unwrap();
        // A failed sync: the write it covered is reported as failed, not as durable.
        go.send(Err("EIO".to_owned())).unwrap();
        assert_not_durable(&second.await.unwrap());
        assert!(second_ran.load(Ordering::SeqCst));
    }

    /// Answers every mark as applied (the pool's `no_marks` applies none), and panics on its `panic_on`th
    /// batch (never with 0).
    struct FakeDirect {
        batches: Arc<Mutex<Vec<usize>>>,
        panic_on: usize,
    }

    impl FakeDirect {
        /// The connection, and the sizes of the batches it ran.
        fn new(panic_on: usize) -> (Self, Arc<Mutex<Vec<usize>>>) {
            let batches = Arc::new(Mutex::new(Vec::new()));
            let direct = Self {
                batches: batches.clone(),
                panic_on,
            };
            (direct, batches)
        }
    }

    impl Direct for FakeDirect {
        fn run(&mut self, marks: Vec<(MarkKind, Vec<Mark>)>, turns: &[TurnRows]) -> DirectBatch {
            let run = {
                let mut batches = self.batches.lock().unwrap();
                batches.push(marks.iter().map(|(_, rows)| rows.len()).sum::<usize>() + turns.len());
                batches.len()
            };
            assert_ne!(run, self.panic_on, "the direct connection broke");
            DirectBatch {
                marked: marks
                    .iter()
                    .map(|(_, rows)| (Ok(rows.iter().map(|m| m.id).collect()), Vec::new()))
                    .collect(),
                turned: Ok(Vec::new()),
                committed: Ok(()),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_a_direct_connection_the_writer_syncs_each_commit_before_answering_it() {
        let (sync, go) = gated_sync();
        let merged = merged_nothing();
        let (direct, batches) = FakeDirect::new(0);
        let writer = Arc::new(
            Writer::start(
                pool_with_table().await,
                true,
                merged,
                Some(sync),
                Some(Box::new(direct)),
            )
            .unwrap(),
        );

        let marking = writer.clone();
        let first = tokio::spawn(async move { marking.mark(MarkKind::Done, done(1)).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(*batches.lock().unwrap(), vec![1], "committed");
        assert!(!first.is_finished(), "not answered before its sync");

        // The writer itself waits for that sync: a write queued meanwhile runs after it.
        let marking = writer.clone();
        let second = tokio::spawn(async move { marking.mark(MarkKind::Done, done(2)).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(*batches.lock().unwrap(), vec![1]);

        go.send(Ok(())).unwrap();
        assert!(first.await.unwrap().unwrap().0);
        // A failed sync: the write it covered is reported as failed, not as durable.
        go.send(Err("EIO".to_owned())).unwrap();
        assert_not_durable(&second.await.unwrap());
        assert_eq!(*batches.lock().unwrap(), vec![1, 1]);
    }

    fn done(id: i64) -> Mark {
        Mark {
            id,
            worker: "w".to_owned(),
            text: None,
            now: 0,
            next: None,
        }
    }

    #[tokio::test]
    async fn merged_writes_run_on_the_direct_connection_and_the_pool_takes_over_when_it_breaks() {
        let pool = pool_with_table().await;
        let merged = merged_nothing();
        let (direct, batches) = FakeDirect::new(3);
        let writer =
            Writer::start(pool.clone(), true, merged, None, Some(Box::new(direct))).unwrap();

        // Marks alone: the direct connection, in one batch.
        let (a, b) = tokio::join!(
            writer.mark(MarkKind::Done, done(1)),
            writer.mark(MarkKind::Sending, done(2))
        );
        assert!(a.unwrap().0);
        assert!(b.unwrap().0);
        assert_eq!(*batches.lock().unwrap(), vec![2]);

        // In a batch with other writes, the merged ones still run on the direct connection, and the others
        // on the pool.
        let insert = writer.write(|tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO t (n) VALUES (1)")
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            })
        });
        let (mark, inserted) = tokio::join!(writer.mark(MarkKind::Done, done(3)), insert);
        inserted.unwrap();
        assert!(mark.unwrap().0);
        assert_eq!(*batches.lock().unwrap(), vec![2, 1]);
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(rows, 1);

        // The connection breaks: its batch fails, and the pool runs the next one.
        let broken = writer.mark(MarkKind::Done, done(5)).await;
        assert!(broken.is_err(), "{broken:?}");
        let after = writer.mark(MarkKind::Done, done(6)).await.unwrap();
        assert!(!after.0, "on the pool");
        assert_eq!(batches.lock().unwrap().len(), 3);
    }
}
