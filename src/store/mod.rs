//! Durable state behind one trait with a SQLite and a PostgreSQL implementation, chosen by the `store.url`
//! scheme. Methods state their intent; each one that changes state does so in a single transaction, and the
//! jobs an activity causes are written in the same transaction as the activity's de-duplication row.

mod batch;
mod postgres;
mod sql;
mod sqlite;
mod sqlite_batch;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::clock::Millis;
use crate::domain::engagement::{Motion, Person, PrepItem, RosterMember};
use crate::domain::roles::Role;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("store failure: {0}")]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            other => StoreError::Other(anyhow::Error::new(other)),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Other(anyhow::Error::new(e).context("migrations failed"))
    }
}

/// Identifies one inbound activity for de-duplication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundKey {
    pub channel_id: String,
    pub conversation_id: String,
    pub activity_id: String,
}

/// Where and how to reach a conversation proactively.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConversationRef {
    pub conversation_id: String,
    pub service_url: String,
    pub tenant_id: Option<String>,
    pub team_id: Option<String>,
    pub team_name: Option<String>,
    pub channel_id: Option<String>,
    pub bot_id: Option<String>,
    pub conversation_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConversation {
    pub reference: ConversationRef,
    pub live: bool,
    pub dead_reason: Option<String>,
    pub updated_at: Millis,
}

/// A state change an activity causes, applied atomically with its jobs.
#[derive(Debug, Clone)]
pub enum Change {
    /// Keep the reference current (serviceUrl can change); revives nothing that was marked dead.
    TouchConversation(ConversationRef),
    /// The bot was installed: the reference becomes live. `welcome` is enqueued only when it was not live
    /// before, so the two activities Teams sends on install give one welcome card.
    InstallConversation {
        reference: ConversationRef,
        welcome: Vec<NewJob>,
    },
    MarkConversationDead {
        conversation_id: String,
        reason: String,
    },
    /// Fails with `StoreError::Conflict` when the channel already has an active engagement.
    StartEngagement(Engagement),
    CloseEngagement {
        id: i64,
        by: String,
    },
    /// Adds the person to the role, or refreshes what is known about them.
    AddRosterMember {
        engagement_id: i64,
        member: RosterMember,
        by: String,
    },
    /// Removes everyone in `role`, or only `person_key` when given.
    RemoveRosterMember {
        engagement_id: i64,
        role: Role,
        person_key: Option<String>,
    },
    SetPrepTick {
        engagement_id: i64,
        item: PrepItem,
        done: bool,
        by: String,
    },
    /// Remembers where a card lives so it can be updated in place.
    SaveCard(CardRef),
    /// Creates an invite (version 1) or, with `expected_version`, replaces it only if nobody changed it since
    /// (else `StoreError::Conflict`): two clicks on one card cannot both win.
    SaveInvite {
        invite: InviteRecord,
        expected_version: Option<i64>,
    },
    RecordSyncNotes {
        engagement_id: i64,
        notes: Value,
        by: String,
    },
    /// Stores a new FTA request (its id is assigned by the store; `request_key` makes a re-delivered submit
    /// store one request) with its first audit row.
    CreateFtaRequest {
        request: Box<FtaRequestRecord>,
        audit: FtaAuditRecord,
    },
    /// Sets an engagement's Field team sync (scheduled series or joined link); the version grows by one.
    SetSyncSeries {
        engagement_id: i64,
        kind: String,
        data: Value,
        by: String,
    },
    /// Moves a request to a new state only if it is still at `expected_version` (else
    /// `StoreError::Conflict`), with the audit row saying who, when and why.
    TransitionFtaRequest {
        id: i64,
        expected_version: i64,
        status: String,
        assigned_fta: Option<Person>,
        decline_reason: Option<String>,
        info_ask: Option<String>,
        audit: FtaAuditRecord,
    },
}

impl Change {
    /// Changes that are upserts of the conversation reference: they cannot fail for a logical reason (no
    /// unique key to collide with, no version to lose), so a turn made only of them needs no savepoint.
    pub fn cannot_conflict(&self) -> bool {
        matches!(
            self,
            Change::TouchConversation(_)
                | Change::InstallConversation { .. }
                | Change::MarkConversationDead { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncSeries {
    pub engagement_id: i64,
    /// `scheduled` or `joined`.
    pub kind: String,
    pub data: Value,
    pub version: i64,
    pub updated_by: String,
    pub updated_at: Millis,
}

/// A FastTrack Architect request as stored; the domain (`domain::fta`) reads `details` and `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct FtaRequestRecord {
    pub id: i64,
    pub request_key: String,
    pub engagement_id: i64,
    pub conversation_id: String,
    pub service_url: String,
    pub customer: String,
    pub requestor: Person,
    pub details: Value,
    pub status: String,
    pub version: i64,
    pub assigned_fta: Option<Person>,
    pub decline_reason: Option<String>,
    pub info_ask: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Oldest first.
    pub history: Vec<FtaAuditRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtaAuditRecord {
    pub at: Millis,
    pub who: String,
    /// Entra object id or Teams id of whoever acted.
    pub who_id: Option<String>,
    pub action: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub detail: Option<String>,
}

/// Which requests a listing wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FtaFilter {
    pub engagement_id: Option<i64>,
    pub open_only: bool,
}

pub const FTA_OPEN_STATUSES: [&str; 3] = ["submitted", "in_review", "info_requested"];

#[derive(Debug, Clone, PartialEq)]
pub struct Engagement {
    pub id: i64,
    /// The account-team channel the engagement is bound to.
    pub conversation_id: String,
    pub service_url: String,
    pub customer: String,
    pub motion: Motion,
    pub tpid: Option<u64>,
    pub tenant: Option<String>,
    pub fm: Person,
    pub active: bool,
    pub created_at: Millis,
    pub closed_at: Option<Millis>,
    pub closed_by: Option<String>,
    pub roster: Vec<RosterMember>,
    pub prep: Vec<PrepTick>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepTick {
    pub item: PrepItem,
    pub done: bool,
    pub by: String,
    pub at: Millis,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRef {
    /// What the card shows, e.g. `prep:<engagement>` or `invite:<id>`.
    pub key: String,
    pub conversation_id: String,
    pub activity_id: String,
    pub service_url: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InviteRecord {
    pub id: i64,
    pub engagement_id: i64,
    pub state: String,
    pub data: Value,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncNotesRecord {
    pub id: i64,
    pub engagement_id: i64,
    pub notes: Value,
    pub by: String,
    pub at: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxCall {
    pub id: i64,
    pub method: String,
    pub path: String,
    pub body: Option<Value>,
    pub recorded_at: Millis,
}

/// Identifies a person within a role: email, else Entra object id, else Teams id, else name.
pub fn person_key(person: &Person) -> String {
    person
        .email
        .as_deref()
        .or(person.upn.as_deref())
        .or(person.aad_object_id.as_deref())
        .or(person.teams_id.as_deref())
        .unwrap_or(&person.name)
        .to_lowercase()
}

/// A fresh id that is safe in JSON numbers and unguessable enough not to collide.
pub fn new_id() -> i64 {
    fastrand::i64(1..(1_i64 << 53))
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: String,
    /// The effect as JSON text: written and read as text, so the queue never builds a JSON tree for it.
    pub payload: String,
    /// Unique forever: enqueueing the same key twice stores one job.
    pub idempotency_key: String,
    /// Jobs with the same ordering key run one at a time, oldest first (one conversation's replies in order).
    pub ordering_key: Option<String>,
    pub run_at: Millis,
    pub max_attempts: u32,
    /// A large piece of the payload stored once for every job that carries it (see [`PayloadPart`]).
    pub part: Option<PayloadPart>,
}

impl NewJob {
    /// The payload with its part in place, as reading the job back gives it.
    pub fn whole_payload(&self) -> String {
        match &self.part {
            Some(part) => self
                .payload
                .replacen(&part_marker(&part.digest), &part.text, 1),
            None => self.payload.clone(),
        }
    }
}

/// A piece of a job's payload kept apart from it, once per distinct content: the card a reply posts. The
/// answer to `help` is kilobytes of JSON and the same for every reply; written with each job it was most of
/// the bytes the store wrote per activity. The job's payload holds [`part_marker`] where the part goes,
/// and reading the job puts the part back, so a [`Job`]'s payload is always whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadPart {
    /// SHA-256 of `text`, in hex.
    pub digest: Arc<str>,
    /// JSON text.
    pub text: Arc<str>,
}

/// What a payload holds in place of its part: a JSON object that cannot occur inside a JSON string (its
/// quotes would be escaped there), so replacing it is exact. `JOB_COLUMNS` builds the same text in SQL.
pub fn part_marker(digest: &str) -> String {
    format!("{{\"$part\":\"{digest}\"}}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Running,
    Done,
    /// Attempts exhausted or a permanent failure: kept for the operator, never retried automatically.
    Dead,
    /// A non-idempotent call may or may not have happened (timeout after sending); not re-sent blindly.
    Unconfirmed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Dead => "dead",
            JobStatus::Unconfirmed => "unconfirmed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => JobStatus::Pending,
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            "dead" => JobStatus::Dead,
            "unconfirmed" => JobStatus::Unconfirmed,
            _ => return None,
        })
    }

    pub const ALL: [JobStatus; 5] = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Done,
        JobStatus::Dead,
        JobStatus::Unconfirmed,
    ];
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    /// The effect as JSON text (see [`NewJob::payload`]).
    pub payload: String,
    pub idempotency_key: String,
    pub ordering_key: Option<String>,
    pub status: JobStatus,
    /// Attempts started so far, including the current one for a claimed job.
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_at: Millis,
    pub locked_by: Option<String>,
    pub last_error: Option<String>,
    pub result: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    Applied,
    /// The activity id was seen before: nothing was applied; the first response is returned again.
    Duplicate {
        response: Option<String>,
    },
}

/// A worker's claim on a turn's jobs taken in the commit that queues them ("born claimed"), so a reply
/// needs no claim of its own: a write fewer per reply on the one writer every activity waits for, and the
/// reply leaves without waiting for the worker's next claim.
///
/// A job is claimed only when it heads its ordering chain (no older live job with its key), and only when
/// the commit applied. It is claimed as the worker's claim would claim it: the attempt still writes its
/// in-flight note right before its unrepeatable call, so a crash before that call runs it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirthClaim {
    pub worker: String,
    pub lease_until: Millis,
    /// The idempotency keys of the turn's jobs that may be claimed.
    pub keys: Vec<String>,
    /// Written as the claimed jobs' `last_error` (an earlier text is kept when `None`): the worker's note
    /// that the attempt's unrepeatable call may be under way, written with the claim instead of right
    /// before the call (see `jobs::in_flight`).
    pub note: Option<String>,
}

/// What a worker finishing a job of a chain asks to take over next, in the same write: the chain's next job,
/// when it is due, has never run, and is of `kind`. One conversation's replies then leave one after the
/// other without a claim of their own and without waiting for the worker's next claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainNext {
    pub ordering_key: String,
    pub kind: String,
    pub lease_until: Millis,
    /// As [`BirthClaim::note`], for the job taken over.
    pub note: Option<String>,
}

/// A turn's commit and the jobs claimed in it for the [`BirthClaim`]'s worker.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnCommit {
    pub commit: Commit,
    pub claimed: Vec<Job>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> &'static str;

    async fn ping(&self) -> Result<(), StoreError>;

    /// `Some(response)` when this activity was already processed.
    async fn activity_seen(&self, key: &InboundKey) -> Result<Option<Option<String>>, StoreError>;

    /// Records the activity as processed and applies its changes and jobs in one transaction.
    async fn commit_activity(
        &self,
        key: Option<&InboundKey>,
        now: Millis,
        changes: Vec<Change>,
        jobs: Vec<NewJob>,
        response: Option<String>,
    ) -> Result<Commit, StoreError> {
        Ok(self
            .commit_turn(key, now, changes, jobs, response, None)
            .await?
            .commit)
    }

    /// [`Store::commit_activity`], claiming in the same transaction the jobs `claim` allows. Claims are
    /// taken only for a turn that is a new activity whose changes only touch its conversation (the common
    /// reply); any other turn commits as [`Store::commit_activity`] and claims nothing.
    async fn commit_turn(
        &self,
        key: Option<&InboundKey>,
        now: Millis,
        changes: Vec<Change>,
        jobs: Vec<NewJob>,
        response: Option<String>,
        claim: Option<BirthClaim>,
    ) -> Result<TurnCommit, StoreError>;

    async fn conversation(&self, id: &str) -> Result<Option<StoredConversation>, StoreError>;

    async fn mark_conversation_dead(
        &self,
        id: &str,
        reason: &str,
        now: Millis,
    ) -> Result<(), StoreError>;

    /// Enqueues jobs outside an activity; duplicates by idempotency key are ignored. Returns how many were new.
    async fn enqueue_jobs(&self, jobs: Vec<NewJob>, now: Millis) -> Result<u64, StoreError>;

    /// Leases up to `limit` due jobs to `worker` until `lease_until`: pending jobs whose time has come, and
    /// running jobs whose lease expired (their worker died). Counts an attempt for each.
    async fn claim_jobs(
        &self,
        worker: &str,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError>;

    /// Each finishing call applies only while `worker` still holds the lease; false means it was lost.
    /// Completing a job applies the state changes it caused and enqueues its follow-up jobs in the same
    /// transaction, so a multi-step workflow neither loses nor repeats a step.
    async fn complete_job(
        &self,
        id: i64,
        worker: &str,
        result: Option<Value>,
        changes: Vec<Change>,
        jobs: Vec<NewJob>,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// [`Store::complete_job`] for a job without changes or follow-ups, taking over in the same write the
    /// next job of its chain as [`ChainNext`] describes. Returns whether the completion applied, and the job
    /// now claimed for `worker`, if any.
    async fn complete_and_claim_next(
        &self,
        id: i64,
        worker: &str,
        result: Option<Value>,
        now: Millis,
        next: ChainNext,
    ) -> Result<(bool, Option<Job>), StoreError>;

    async fn retry_job(
        &self,
        id: i64,
        worker: &str,
        run_at: Millis,
        error: &str,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// [`retry_job`](Store::retry_job) after the API throttled the call (429 with `Retry-After`): not a
    /// failed attempt, so the attempt the claim counted is given back — unless the job was queued before
    /// `free_if_queued_since`, when it counts like any other (so `max_attempts` still ends a job an API
    /// throttles forever).
    async fn retry_throttled_job(
        &self,
        id: i64,
        worker: &str,
        run_at: Millis,
        error: &str,
        now: Millis,
        free_if_queued_since: Millis,
    ) -> Result<bool, StoreError>;

    async fn fail_job(
        &self,
        id: i64,
        worker: &str,
        status: JobStatus,
        error: &str,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// Notes on a job this worker still holds (in `last_error`) that its attempt is about to send a call
    /// that must not be repeated, so a worker taking the job over after a crash knows it may have happened.
    async fn note_job_sending(&self, id: i64, worker: &str, note: &str)
    -> Result<bool, StoreError>;

    /// Puts a dead or unconfirmed job back in the queue (an operator's reconcile decision).
    async fn requeue_job(&self, id: i64, now: Millis) -> Result<bool, StoreError>;

    /// Closes an unconfirmed job as done without running it (an operator found that its call happened),
    /// keeping `note` on it. Its follow-ups, if any, are not queued: the call's answer never came back.
    async fn close_job(&self, id: i64, now: Millis, note: &str) -> Result<bool, StoreError>;

    /// The earliest time a job could become claimable, if any.
    async fn next_job_due(&self) -> Result<Option<Millis>, StoreError>;

    /// Jobs per status, the finished history included: that walks every job ever run.
    async fn job_counts(&self) -> Result<Vec<(JobStatus, i64)>, StoreError>;

    /// The queue: jobs waiting, running or held for an operator, per status (none done). Counted through
    /// the partial indexes of those statuses, so its cost is the queue's size, not the history's: this is
    /// what every `/metrics` scrape reads.
    async fn queue_counts(&self) -> Result<Vec<(JobStatus, i64)>, StoreError>;

    async fn jobs_with_status(&self, status: JobStatus, limit: u32)
    -> Result<Vec<Job>, StoreError>;

    async fn job_by_key(&self, idempotency_key: &str) -> Result<Option<Job>, StoreError>;

    /// Forgets inbound activity ids older than `before`.
    async fn prune_inbound(&self, before: Millis) -> Result<u64, StoreError>;

    async fn active_engagement(
        &self,
        conversation_id: &str,
    ) -> Result<Option<Engagement>, StoreError>;

    async fn engagement(&self, id: i64) -> Result<Option<Engagement>, StoreError>;

    /// Newest first; `active` filters on status when given.
    async fn engagements(&self, active: Option<bool>) -> Result<Vec<Engagement>, StoreError>;

    async fn card(&self, key: &str) -> Result<Option<CardRef>, StoreError>;

    async fn invite(&self, id: i64) -> Result<Option<InviteRecord>, StoreError>;

    async fn sync_notes(&self, engagement_id: i64) -> Result<Vec<SyncNotesRecord>, StoreError>;

    async fn record_graph_call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        now: Millis,
    ) -> Result<(), StoreError>;

    /// The most recent recorded (dry-run) Graph calls, oldest first.
    async fn graph_outbox(&self, limit: u32) -> Result<Vec<OutboxCall>, StoreError>;

    async fn fta_request(&self, id: i64) -> Result<Option<FtaRequestRecord>, StoreError>;

    async fn sync_series(&self, engagement_id: i64) -> Result<Option<SyncSeries>, StoreError>;

    async fn fta_request_by_key(&self, key: &str) -> Result<Option<FtaRequestRecord>, StoreError>;

    /// Newest first, each with its history.
    async fn fta_requests(&self, filter: &FtaFilter) -> Result<Vec<FtaRequestRecord>, StoreError>;
}

/// Opens (and migrates) the store named by `url`: `sqlite://…` or `postgres://…`.
pub async fn connect(url: &str, max_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url, max_connections).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(
            PostgresStore::connect(url, max_connections).await?,
        ))
    } else {
        Err(StoreError::Other(anyhow::anyhow!(
            "store.url must start with sqlite:// or postgres://"
        )))
    }
}

/// How many migrations the database at `url` has applied, and how many this binary knows — without
/// migrating (for `fieldbot doctor`).
pub async fn schema_status(url: &str) -> Result<(i64, i64), StoreError> {
    use sqlx::Connection;
    const APPLIED: &str = "SELECT COUNT(*) FROM _sqlx_migrations WHERE success";
    if url.starts_with("sqlite:") {
        let known = sqlx::migrate!("./migrations/sqlite").migrations.len();
        let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)?
            .create_if_missing(false)
            .read_only(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
        let applied: i64 = sqlx::query_scalar(APPLIED)
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0);
        Ok((applied, i64::try_from(known).unwrap_or(i64::MAX)))
    } else {
        let known = sqlx::migrate!("./migrations/postgres").migrations.len();
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let applied: i64 = sqlx::query_scalar(APPLIED)
            .fetch_one(&mut conn)
            .await
            .unwrap_or(0);
        Ok((applied, i64::try_from(known).unwrap_or(i64::MAX)))
    }
}

/// A job row as both backends return it.
#[derive(sqlx::FromRow)]
struct JobRow {
    id: i64,
    kind: String,
    payload: String,
    idempotency_key: String,
    ordering_key: Option<String>,
    status: String,
    attempts: i64,
    max_attempts: i64,
    run_at: i64,
    locked_by: Option<String>,
    last_error: Option<String>,
    result: Option<String>,
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;
    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        Ok(Job {
            id: r.id,
            kind: r.kind,
            payload: r.payload,
            idempotency_key: r.idempotency_key,
            ordering_key: r.ordering_key,
            status: JobStatus::parse(&r.status).ok_or_else(|| {
                StoreError::Other(anyhow::anyhow!("job {} has status {:?}", r.id, r.status))
            })?,
            attempts: u32::try_from(r.attempts).unwrap_or(0),
            max_attempts: u32::try_from(r.max_attempts).unwrap_or(1),
            run_at: r.run_at,
            locked_by: r.locked_by,
            last_error: r.last_error,
            result: r.result.and_then(|s| serde_json::from_str(&s).ok()),
        })
    }
}

#[derive(sqlx::FromRow)]
struct ConversationRow {
    conversation_id: String,
    service_url: String,
    tenant_id: Option<String>,
    team_id: Option<String>,
    team_name: Option<String>,
    channel_id: Option<String>,
    bot_id: Option<String>,
    conversation_type: Option<String>,
    status: String,
    dead_reason: Option<String>,
    updated_at: i64,
}

impl From<ConversationRow> for StoredConversation {
    fn from(r: ConversationRow) -> Self {
        StoredConversation {
            reference: ConversationRef {
                conversation_id: r.conversation_id,
                service_url: r.service_url,
                tenant_id: r.tenant_id,
                team_id: r.team_id,
                team_name: r.team_name,
                channel_id: r.channel_id,
                bot_id: r.bot_id,
                conversation_type: r.conversation_type,
            },
            live: r.status == "live",
            dead_reason: r.dead_reason,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct EngagementRow {
    id: i64,
    conversation_id: String,
    service_url: String,
    customer: String,
    motion: String,
    tpid: Option<i64>,
    tenant: Option<String>,
    fm: String,
    status: String,
    created_at: i64,
    closed_at: Option<i64>,
    closed_by: Option<String>,
}

impl EngagementRow {
    fn into_engagement(
        self,
        roster: Vec<RosterMember>,
        prep: Vec<PrepTick>,
    ) -> Result<Engagement, StoreError> {
        let corrupt = |what: &str| {
            StoreError::Other(anyhow::anyhow!(
                "engagement {} has an unreadable {what}",
                self.id
            ))
        };
        Ok(Engagement {
            motion: Motion::parse(&self.motion).ok_or_else(|| corrupt("motion"))?,
            fm: serde_json::from_str(&self.fm).map_err(|_| corrupt("FM"))?,
            id: self.id,
            conversation_id: self.conversation_id,
            service_url: self.service_url,
            customer: self.customer,
            tpid: self.tpid.and_then(|t| u64::try_from(t).ok()),
            tenant: self.tenant,
            active: self.status == "active",
            created_at: self.created_at,
            closed_at: self.closed_at,
            closed_by: self.closed_by,
            roster,
            prep,
        })
    }
}

#[derive(sqlx::FromRow)]
struct FtaRow {
    id: i64,
    request_key: String,
    engagement_id: i64,
    conversation_id: String,
    service_url: String,
    customer: String,
    requestor: String,
    details: String,
    status: String,
    version: i64,
    assigned_fta: Option<String>,
    decline_reason: Option<String>,
    info_ask: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl FtaRow {
    fn into_record(self, history: Vec<FtaAuditRecord>) -> Result<FtaRequestRecord, StoreError> {
        let corrupt = |what: &str| {
            StoreError::Other(anyhow::anyhow!(
                "FTA request {} has an unreadable {what}",
                self.id
            ))
        };
        Ok(FtaRequestRecord {
            requestor: serde_json::from_str(&self.requestor).map_err(|_| corrupt("requestor"))?,
            details: serde_json::from_str(&self.details).map_err(|_| corrupt("details"))?,
            assigned_fta: match &self.assigned_fta {
                Some(p) => Some(serde_json::from_str(p).map_err(|_| corrupt("assigned FTA"))?),
                None => None,
            },
            id: self.id,
            request_key: self.request_key,
            engagement_id: self.engagement_id,
            conversation_id: self.conversation_id,
            service_url: self.service_url,
            customer: self.customer,
            status: self.status,
            version: self.version,
            decline_reason: self.decline_reason,
            info_ask: self.info_ask,
            created_at: self.created_at,
            updated_at: self.updated_at,
            history,
        })
    }
}

#[derive(sqlx::FromRow)]
struct FtaAuditRow {
    at: i64,
    who: String,
    who_id: Option<String>,
    action: String,
    from_status: Option<String>,
    to_status: String,
    detail: Option<String>,
}

impl From<FtaAuditRow> for FtaAuditRecord {
    fn from(r: FtaAuditRow) -> Self {
        FtaAuditRecord {
            at: r.at,
            who: r.who,
            who_id: r.who_id,
            action: r.action,
            from_status: r.from_status,
            to_status: r.to_status,
            detail: r.detail,
        }
    }
}

const FTA_COLUMNS: &str = "id, request_key, engagement_id, conversation_id, service_url, customer, requestor, \
     details, status, version, assigned_fta, decline_reason, info_ask, created_at, updated_at";

const ENGAGEMENT_COLUMNS: &str = "id, conversation_id, service_url, customer, motion, tpid, tenant, fm, status, \
     created_at, closed_at, closed_by";

fn roster_member(role: &str, person: &str) -> Option<RosterMember> {
    Some(RosterMember {
        role: Role::parse(role)?,
        person: serde_json::from_str(person).ok()?,
    })
}

/// The payload of a job queued before migration 0006 is in `jobs.payload`, of a newer one in `job_payloads`.
/// The payload: from `job_payloads` with its part put back in place of [`part_marker`]'s text, or from
/// `jobs.payload` for a job queued before migration 0006.
const JOB_COLUMNS: &str = "id, kind, \
     COALESCE((SELECT CASE WHEN jp.part IS NULL THEN jp.payload \
                 ELSE replace(jp.payload, '{\"$part\":\"' || jp.part || '\"}', pp.body) END \
               FROM job_payloads jp LEFT JOIN payload_parts pp ON pp.digest = jp.part \
               WHERE jp.job_id = jobs.id), payload) AS payload, \
     idempotency_key, ordering_key, status, attempts, max_attempts, run_at, locked_by, last_error, result";

const CONVERSATION_COLUMNS: &str = "conversation_id, service_url, tenant_id, team_id, team_name, channel_id, \
     bot_id, conversation_type, status, dead_reason, updated_at";

/// Truncates error text stored with a job so one huge response body cannot bloat the table.
fn clip(error: &str) -> String {
    const MAX: usize = 2000;
    if error.len() <= MAX {
        return error.to_string();
    }
    let mut end = MAX;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", error.get(..end).unwrap_or_default())
}
