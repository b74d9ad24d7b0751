//! The SQL both backends share. SQLite and PostgreSQL accept the same `$N` placeholders, `ON CONFLICT`,
//! `RETURNING` and `IS DISTINCT FROM`, so one implementation (expanded per backend by `impl_store!`) serves
//! both; only job claiming differs, because PostgreSQL needs `FOR UPDATE SKIP LOCKED` for concurrent
//! replicas while SQLite serialises writers anyway, and the multi-row statements' placeholders (see
//! [`Placeholders`]).

use std::borrow::Cow;
use std::sync::OnceLock;

pub(super) const INSERT_INBOUND: &str = "INSERT INTO inbound_activities \
     (channel_id, conversation_id, activity_id, received_at, response) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT DO NOTHING";

pub(super) const SELECT_INBOUND: &str = "SELECT response FROM inbound_activities \
     WHERE channel_id = $1 AND conversation_id = $2 AND activity_id = $3";

pub(super) const UPSERT_CONVERSATION: &str = "INSERT INTO conversations \
     (conversation_id, service_url, tenant_id, team_id, team_name, channel_id, bot_id, conversation_type, \
      status, dead_reason, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'live', NULL, $9, $10) \
     ON CONFLICT (conversation_id) DO UPDATE SET \
       service_url = excluded.service_url, \
       tenant_id = COALESCE(excluded.tenant_id, conversations.tenant_id), \
       team_id = COALESCE(excluded.team_id, conversations.team_id), \
       team_name = COALESCE(excluded.team_name, conversations.team_name), \
       channel_id = COALESCE(excluded.channel_id, conversations.channel_id), \
       bot_id = COALESCE(excluded.bot_id, conversations.bot_id), \
       conversation_type = COALESCE(excluded.conversation_type, conversations.conversation_type), \
       status = 'live', dead_reason = NULL, updated_at = excluded.updated_at \
     WHERE conversations.service_url IS DISTINCT FROM excluded.service_url \
        OR conversations.status <> 'live' \
        OR (excluded.team_name IS NOT NULL AND conversations.team_name IS DISTINCT FROM excluded.team_name)";

pub(super) const SELECT_CONVERSATION_STATUS: &str =
    "SELECT status FROM conversations WHERE conversation_id = $1";

pub(super) const MARK_CONVERSATION_DEAD: &str = "UPDATE conversations \
     SET status = 'dead', dead_reason = $2, updated_at = $3 WHERE conversation_id = $1";

pub(super) const INSERT_JOB: &str = "INSERT INTO jobs \
     (kind, payload, idempotency_key, ordering_key, status, attempts, max_attempts, run_at, created_at, updated_at) \
     VALUES ($1, '', $2, $3, 'pending', 0, $4, $5, $6, $7) \
     ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, idempotency_key";

/// The payload of a job just inserted (see migration 0006). A job's id is new, so nothing conflicts but
/// the repeated rows that pad a multi-row insert (see [`row_chunks`]).
pub(super) const INSERT_JOB_PAYLOAD: &str =
    "INSERT INTO job_payloads (job_id, payload, part) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";

/// A payload part (see [`super::PayloadPart`]), kept once whatever number of jobs carry it.
pub(super) const INSERT_PAYLOAD_PART: &str =
    "INSERT INTO payload_parts (digest, body) VALUES ($1, $2) ON CONFLICT DO NOTHING";

/// How a backend finds the job that heads each conversation's chain (the oldest live job with its ordering
/// key; one conversation's effects leave in the order they were caused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chains {
    /// An index of live jobs by (ordering key, id), the head being each key's first entry (PostgreSQL: its
    /// replicas write concurrently, and bookkeeping rows shared by a chain's writers would be locks they
    /// wait on, where index entries are not).
    Indexed,
    /// Each job says whether it waits for an older live job of its chain, kept by triggers (SQLite,
    /// migration 0009): under a backlog the index's entries for each conversation sat in pages of their
    /// own, a third of the pages every commit wrote.
    Linked,
}

/// A job is claimable when due (a running job's `run_at` is its lease expiry, so an abandoned lease is due
/// too) and it heads its ordering chain: no older job with the same ordering key is still live, so one
/// conversation's effects leave in the order they were caused.
///
/// [`Chains::Indexed`]: the heads are found chain by chain: a loose index scan walks the distinct ordering
/// keys of live jobs (`chains`, one index seek each) and takes each key's oldest live job (`heads`); jobs
/// without a key are heads of their own. Scanning the due jobs instead and skipping the blocked ones cost
/// the whole backlog whenever every chain's head was already running (a slow Connector, or more worker
/// slots than conversations): 17 ms per claim behind 40,000 queued replies, against under 1 ms this way.
/// Both walks use the partial indexes of live jobs (migration 0005), so neither touches the finished
/// history.
const CLAIMABLE_INDEXED: &str = "WITH RECURSIVE chains(k) AS ( \
       SELECT MIN(ordering_key) FROM jobs WHERE status IN ('pending', 'running') \
       UNION ALL \
       SELECT (SELECT MIN(c.ordering_key) FROM jobs c \
               WHERE c.status IN ('pending', 'running') AND c.ordering_key > chains.k) \
       FROM chains WHERE chains.k IS NOT NULL), \
     heads(id) AS ( \
       SELECT (SELECT MIN(h.id) FROM jobs h \
               WHERE h.ordering_key = chains.k AND h.status IN ('pending', 'running')) \
       FROM chains WHERE chains.k IS NOT NULL \
       UNION ALL \
       SELECT u.id FROM jobs u WHERE u.ordering_key IS NULL AND u.status IN ('pending', 'running')) \
     SELECT j.id FROM jobs j \
     WHERE j.id IN (SELECT id FROM heads) AND j.status IN ('pending', 'running') AND j.run_at <= $3 \
     ORDER BY j.run_at, j.id LIMIT $4";

/// [`Chains::Linked`]: the heads are the live jobs that wait for nothing, all in one small partial index
/// (`jobs_ready`), blocked jobs never in it. Named, because without statistics SQLite could as well take
/// `jobs_live_due`, which holds every live job in the same order.
const CLAIMABLE_LINKED: &str = "SELECT id FROM jobs INDEXED BY jobs_ready \
     WHERE waiting = 0 AND status IN ('pending', 'running') AND run_at <= $3 ORDER BY run_at, id LIMIT $4";

pub(super) fn claim_sql(chains: Chains, skip_locked: bool) -> String {
    format!(
        "UPDATE jobs SET status = 'running', locked_by = $1, locked_until = $2, run_at = $2, \
         attempts = attempts + 1, updated_at = $3 WHERE id IN ({}{}) RETURNING {}",
        match chains {
            Chains::Indexed => CLAIMABLE_INDEXED,
            Chains::Linked => CLAIMABLE_LINKED,
        },
        if skip_locked {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        },
        super::JOB_COLUMNS
    )
}

pub(super) const COMPLETE_JOB: &str = "UPDATE jobs SET status = 'done', result = $3, locked_by = NULL, \
     locked_until = NULL, updated_at = $4 WHERE id = $1 AND locked_by = $2 AND status = 'running'";

pub(super) const RETRY_JOB: &str = "UPDATE jobs SET status = 'pending', run_at = $3, last_error = $4, \
     locked_by = NULL, locked_until = NULL, updated_at = $5 WHERE id = $1 AND locked_by = $2 AND status = 'running'";

/// [`RETRY_JOB`] for a throttled call (429 with `Retry-After`): the API asked to wait, so the attempt the
/// claim counted is given back, unless the job was queued before `$6` (it has been throttled too long; the
/// attempt then counts, and `max_attempts` bounds it as any other failure).
pub(super) const RETRY_THROTTLED_JOB: &str = "UPDATE jobs SET status = 'pending', run_at = $3, last_error = $4, \
     locked_by = NULL, locked_until = NULL, updated_at = $5, \
     attempts = CASE WHEN created_at >= $6 AND attempts > 0 THEN attempts - 1 ELSE attempts END \
     WHERE id = $1 AND locked_by = $2 AND status = 'running'";

pub(super) const FAIL_JOB: &str = "UPDATE jobs SET status = $3, last_error = $4, locked_by = NULL, \
     locked_until = NULL, updated_at = $5 WHERE id = $1 AND locked_by = $2 AND status = 'running'";

/// How a backend's statements number their parameters. PostgreSQL needs `$N`. SQLite takes both, but
/// looks a `$N` up by name when it is bound, scanning a list as long as the statement's parameters: a
/// multi-row statement with hundreds of them paid for that quadratically on every execution, so SQLite's
/// multi-row statements use anonymous `?`s, bound in the order they appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placeholders {
    Numbered,
    Anonymous,
}

/// The texts of one multi-row statement for each power-of-two row count up to 128, per placeholder style,
/// each built on first use: a batch reuses them instead of formatting hundreds of placeholders again.
pub(super) struct Texts([[OnceLock<String>; 8]; 2]);

impl Texts {
    pub(super) const fn new() -> Self {
        Self([const { [const { OnceLock::new() }; 8] }; 2])
    }

    fn get(
        &'static self,
        style: Placeholders,
        rows: usize,
        build: impl FnOnce() -> String,
    ) -> Cow<'static, str> {
        let slot = self
            .0
            .get(style as usize)
            .and_then(|texts| texts.get(rows.trailing_zeros() as usize))
            .filter(|_| rows.is_power_of_two());
        match slot {
            Some(slot) => Cow::Borrowed(slot.get_or_init(build).as_str()),
            None => Cow::Owned(build()),
        }
    }
}

/// [`super::batch::Mark`]s of one kind as one statement: `rows` value rows of (job id, worker, text, now),
/// rounded up to a power of two (the rest padded with rows that match no job) so that a handful of
/// statement texts serve every batch size and stay prepared.
pub(super) fn mark_sql(
    kind: super::batch::MarkKind,
    style: Placeholders,
    rows: usize,
) -> (Cow<'static, str>, usize) {
    static DONE: Texts = Texts::new();
    static SENDING: Texts = Texts::new();
    let rows = rows.max(1).next_power_of_two();
    let (texts, set) = match kind {
        super::batch::MarkKind::Done => (
            &DONE,
            "status = 'done', result = v.txt, locked_by = NULL, locked_until = NULL, updated_at = v.at",
        ),
        super::batch::MarkKind::Sending => (&SENDING, "last_error = v.txt"),
    };
    let text = texts.get(style, rows, || {
        rows_sql(
            "WITH v(job_id, worker_id, txt, at) AS (",
            "(?1, ?2, ?3, ?4)",
            4,
            rows,
            &format!(
                ") UPDATE jobs SET {set} FROM v WHERE jobs.id = v.job_id AND jobs.locked_by = v.worker_id \
                 AND jobs.status = 'running' RETURNING id"
            ),
            style,
        )
    });
    (text, rows)
}

/// `head` followed by `rows` copies of `row` (whose `?1`..`?k` become that row's `$N`, or `?` each, in
/// order) and `tail`: one multi-row statement.
fn rows_sql(
    head: &str,
    row: &str,
    params: usize,
    rows: usize,
    tail: &str,
    style: Placeholders,
) -> String {
    let rows: Vec<String> = (0..rows)
        .map(|r| {
            // Highest first, so `?1` does not match the start of `?10`.
            (1..=params).rev().fold(row.to_owned(), |text, k| {
                let placeholder = match style {
                    Placeholders::Numbered => format!("${}", r * params + k),
                    Placeholders::Anonymous => "?".to_owned(),
                };
                text.replace(&format!("?{k}"), &placeholder)
            })
        })
        .collect();
    format!("{head} VALUES {} {tail}", rows.join(", "))
}

/// Splits `items` into runs whose lengths are powers of two (at most 64), so that a multi-row statement
/// comes in a handful of texts that stay prepared rather than one per batch size.
pub(super) fn pow2_chunks<T>(mut items: &[T]) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    while !items.is_empty() {
        let size = if items.len() >= 64 {
            64
        } else {
            1 << items.len().ilog2()
        };
        let (chunk, rest) = items.split_at(size);
        chunks.push(chunk);
        items = rest;
    }
    chunks
}

/// The rows of a multi-row statement in as few statements as the cached texts allow, each chunk with the
/// number of value rows to bind it as (a power of two, at most 64; see [`padded`]). Every statement is a
/// round trip to SQLite's own thread, about 26 µs under load, so on SQLite (anonymous placeholders) a
/// chunk is padded up by repeating its last row, which each padded statement ignores (`DO NOTHING`, an
/// upsert or update to the same values): one statement per kind for a batch of up to 64. PostgreSQL's
/// upsert may not touch a row twice in one statement, so there chunks are powers of two, unpadded.
pub(super) fn row_chunks<T>(style: Placeholders, items: &[T]) -> Vec<(&[T], usize)> {
    match style {
        Placeholders::Anonymous => items
            .chunks(64)
            .map(|chunk| (chunk, chunk.len().next_power_of_two()))
            .collect(),
        Placeholders::Numbered => pow2_chunks(items)
            .into_iter()
            .map(|chunk| (chunk, chunk.len()))
            .collect(),
    }
}

/// A chunk's rows, then its last row again until there are `rows`.
pub(super) fn padded<T>(chunk: &[T], rows: usize) -> impl Iterator<Item = &T> {
    let pad = rows.saturating_sub(chunk.len());
    chunk.iter().chain(
        chunk
            .last()
            .into_iter()
            .flat_map(move |last| std::iter::repeat_n(last, pad)),
    )
}

pub(super) fn inbound_rows_sql(style: Placeholders, rows: usize) -> Cow<'static, str> {
    static TEXTS: Texts = Texts::new();
    TEXTS.get(style, rows, || {
        rows_sql(
            "INSERT INTO inbound_activities (channel_id, conversation_id, activity_id, received_at, response)",
            "(?1, ?2, ?3, ?4, ?5)",
            5,
            rows,
            "ON CONFLICT DO NOTHING RETURNING channel_id, conversation_id, activity_id",
            style,
        )
    })
}

/// Parameters per row: the conversation's eight columns, then `now` twice (created, updated).
pub(super) fn conversation_rows_sql(style: Placeholders, rows: usize) -> Cow<'static, str> {
    static TEXTS: Texts = Texts::new();
    TEXTS.get(style, rows, || {
        let (head, tail) = UPSERT_CONVERSATION
            .split_once(" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'live', NULL, $9, $10) ")
            .unwrap_or_default();
        rows_sql(
            head,
            "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'live', NULL, ?9, ?10)",
            10,
            rows,
            tail,
            style,
        )
    })
}

/// Parameters per row: kind, key, ordering key, max attempts, run at, then `now` twice (created, updated).
pub(super) fn job_rows_sql(style: Placeholders, rows: usize) -> Cow<'static, str> {
    static TEXTS: Texts = Texts::new();
    TEXTS.get(style, rows, || {
        let (head, tail) = INSERT_JOB
            .split_once(" VALUES ($1, '', $2, $3, 'pending', 0, $4, $5, $6, $7) ")
            .unwrap_or_default();
        rows_sql(
            head,
            "(?1, '', ?2, ?3, 'pending', 0, ?4, ?5, ?6, ?7)",
            7,
            rows,
            tail,
            style,
        )
    })
}

/// Claims jobs in the commit that queues them (see [`super::BirthClaim`]): `rows` value rows of (job id,
/// worker, lease end, now, note). A job is claimed only while it heads its ordering chain, judged as
/// [`claim_sql`] does. Two new jobs of one chain in the same statement cannot both pass: the younger sees
/// the older one pending or already running ([`Chains::Indexed`]), or was queued waiting for it
/// ([`Chains::Linked`]).
pub(super) fn birth_claim_sql(
    chains: Chains,
    style: Placeholders,
    rows: usize,
) -> Cow<'static, str> {
    static INDEXED: Texts = Texts::new();
    static LINKED: Texts = Texts::new();
    let (texts, heads) = match chains {
        Chains::Indexed => (
            &INDEXED,
            "NOT EXISTS (SELECT 1 FROM jobs o WHERE o.ordering_key = jobs.ordering_key \
             AND o.status IN ('pending', 'running') AND o.id < jobs.id)",
        ),
        Chains::Linked => (&LINKED, "jobs.waiting = 0"),
    };
    texts.get(style, rows, || {
        rows_sql(
            "WITH v(job_id, worker_id, until_at, at, note) AS (",
            "(?1, ?2, ?3, ?4, ?5)",
            5,
            rows,
            &format!(
                ") UPDATE jobs SET status = 'running', locked_by = v.worker_id, locked_until = v.until_at, \
                 run_at = v.until_at, attempts = attempts + 1, updated_at = v.at, \
                 last_error = COALESCE(v.note, jobs.last_error) FROM v \
                 WHERE jobs.id = v.job_id AND jobs.status = 'pending' AND {heads} RETURNING jobs.id"
            ),
            style,
        )
    })
}

/// Claims the next job of chains whose running job just finished (see [`super::ChainNext`]): `rows` value
/// rows of (finished job id, ordering key, kind, worker, lease end, now, note). The next job is the chain's
/// head as [`claim_sql`] judges it, found from the chain's key ([`Chains::Indexed`]) or as the job the
/// finished one freed ([`Chains::Linked`]); it is taken only when pending, due, never attempted and of the
/// kind asked for.
pub(super) fn successor_sql(chains: Chains, style: Placeholders, rows: usize) -> Cow<'static, str> {
    static INDEXED: Texts = Texts::new();
    static LINKED: Texts = Texts::new();
    let (texts, next) = match chains {
        Chains::Indexed => (
            &INDEXED,
            "jobs.id = (SELECT MIN(h.id) FROM jobs h \
             WHERE h.ordering_key = v.chain AND h.status IN ('pending', 'running'))",
        ),
        Chains::Linked => (
            &LINKED,
            "jobs.id = (SELECT p.next_id FROM jobs p WHERE p.id = v.after) AND jobs.waiting = 0",
        ),
    };
    texts.get(style, rows, || {
        rows_sql(
            "WITH v(after, chain, job_kind, worker_id, until_at, at, note) AS (",
            "(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            7,
            rows,
            &format!(
                ") UPDATE jobs SET status = 'running', locked_by = v.worker_id, locked_until = v.until_at, \
                 run_at = v.until_at, attempts = attempts + 1, updated_at = v.at, \
                 last_error = COALESCE(v.note, jobs.last_error) FROM v \
                 WHERE {next} \
                 AND jobs.status = 'pending' AND jobs.attempts = 0 AND jobs.kind = v.job_kind AND jobs.run_at <= v.at \
                 RETURNING {}",
                super::JOB_COLUMNS
            ),
            style,
        )
    })
}

pub(super) fn job_payload_rows_sql(style: Placeholders, rows: usize) -> Cow<'static, str> {
    static TEXTS: Texts = Texts::new();
    TEXTS.get(style, rows, || {
        let (head, tail) = INSERT_JOB_PAYLOAD
            .split_once(" VALUES ($1, $2, $3) ")
            .unwrap_or_default();
        rows_sql(head, "(?1, ?2, ?3)", 3, rows, tail, style)
    })
}

pub(super) fn payload_part_rows_sql(style: Placeholders, rows: usize) -> Cow<'static, str> {
    static TEXTS: Texts = Texts::new();
    TEXTS.get(style, rows, || {
        let (head, tail) = INSERT_PAYLOAD_PART
            .split_once(" VALUES ($1, $2) ")
            .unwrap_or_default();
        rows_sql(head, "(?1, ?2)", 2, rows, tail, style)
    })
}

pub(super) const REQUEUE_JOB: &str = "UPDATE jobs SET status = 'pending', run_at = $2, attempts = 0, \
     updated_at = $2 WHERE id = $1 AND status IN ('dead', 'unconfirmed')";

pub(super) const CLOSE_JOB: &str = "UPDATE jobs SET status = 'done', last_error = $3, locked_by = NULL, \
     locked_until = NULL, updated_at = $2 WHERE id = $1 AND status = 'unconfirmed'";

/// When the next claim may take something: the earliest due time among the jobs it reads (every live job
/// for [`Chains::Indexed`], so a blocked job can wake the worker early; only the freed ones for
/// [`Chains::Linked`]).
pub(super) fn next_due_sql(chains: Chains) -> &'static str {
    match chains {
        Chains::Indexed => "SELECT MIN(run_at) FROM jobs WHERE status IN ('pending', 'running')",
        Chains::Linked => {
            "SELECT MIN(run_at) FROM jobs INDEXED BY jobs_ready \
             WHERE waiting = 0 AND status IN ('pending', 'running')"
        }
    }
}

pub(super) const JOB_COUNTS: &str = "SELECT status, COUNT(*) FROM jobs GROUP BY status";

/// Rows of (status, count), the statuses this version knows.
pub(super) fn status_counts(rows: Vec<(String, i64)>) -> Vec<(super::JobStatus, i64)> {
    rows.into_iter()
        .filter_map(|(s, n)| super::JobStatus::parse(&s).map(|s| (s, n)))
        .collect()
}

/// Each part is one of the partial indexes of migration 0005 (see [`super::Store::queue_counts`]).
pub(super) const QUEUE_COUNTS: &str = "SELECT status, COUNT(*) FROM jobs \
     WHERE status IN ('pending', 'running') GROUP BY status \
     UNION ALL SELECT 'dead', COUNT(*) FROM jobs WHERE status = 'dead' \
     UNION ALL SELECT 'unconfirmed', COUNT(*) FROM jobs WHERE status = 'unconfirmed'";

pub(super) const PRUNE_INBOUND: &str = "DELETE FROM inbound_activities WHERE received_at < $1";

pub(super) const INSERT_ENGAGEMENT: &str = "INSERT INTO engagements \
     (id, conversation_id, service_url, customer, motion, tpid, tenant, fm, status, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $9)";

pub(super) const CLOSE_ENGAGEMENT: &str = "UPDATE engagements SET status = 'closed', closed_at = $2, \
     closed_by = $3, updated_at = $2 WHERE id = $1 AND status = 'active'";

pub(super) const UPSERT_ROSTER: &str = "INSERT INTO roster_members \
     (engagement_id, role, person_key, person, added_by, added_at) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (engagement_id, role, person_key) DO UPDATE SET person = excluded.person";

pub(super) const DELETE_ROLE: &str =
    "DELETE FROM roster_members WHERE engagement_id = $1 AND role = $2";

pub(super) const DELETE_ROSTER_MEMBER: &str =
    "DELETE FROM roster_members WHERE engagement_id = $1 AND role = $2 AND person_key = $3";

pub(super) const SELECT_ROSTER: &str = "SELECT role, person FROM roster_members WHERE engagement_id = $1 ORDER BY added_at, person_key";

pub(super) const UPSERT_PREP: &str = "INSERT INTO prep_ticks (engagement_id, item, done, by_name, at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (engagement_id, item) DO UPDATE SET \
     done = excluded.done, by_name = excluded.by_name, at = excluded.at";

pub(super) const SELECT_PREP: &str =
    "SELECT item, done, by_name, at FROM prep_ticks WHERE engagement_id = $1";

pub(super) const UPSERT_CARD: &str = "INSERT INTO cards (card_key, conversation_id, activity_id, service_url, \
     updated_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (card_key) DO UPDATE SET \
     conversation_id = excluded.conversation_id, activity_id = excluded.activity_id, \
     service_url = excluded.service_url, updated_at = excluded.updated_at";

pub(super) const SELECT_CARD: &str =
    "SELECT card_key, conversation_id, activity_id, service_url FROM cards WHERE card_key = $1";

pub(super) const INSERT_INVITE: &str = "INSERT INTO invites \
     (id, engagement_id, state, data, version, created_at, updated_at) VALUES ($1, $2, $3, $4, 1, $5, $5)";

pub(super) const UPDATE_INVITE: &str = "UPDATE invites SET state = $2, data = $3, version = version + 1, \
     updated_at = $4 WHERE id = $1 AND version = $5";

pub(super) const SELECT_INVITE: &str =
    "SELECT id, engagement_id, state, data, version FROM invites WHERE id = $1";

pub(super) const INSERT_SYNC_NOTES: &str =
    "INSERT INTO sync_notes (id, engagement_id, notes, by_name, at) VALUES ($1, $2, $3, $4, $5)";

pub(super) const SELECT_SYNC_NOTES: &str = "SELECT id, engagement_id, notes, by_name, at FROM sync_notes \
     WHERE engagement_id = $1 ORDER BY at, id";

pub(super) const INSERT_OUTBOX: &str =
    "INSERT INTO graph_outbox (method, path, body, recorded_at) VALUES ($1, $2, $3, $4)";

pub(super) const SELECT_OUTBOX: &str = "SELECT id, method, path, body, recorded_at FROM \
     (SELECT id, method, path, body, recorded_at FROM graph_outbox ORDER BY id DESC LIMIT $1) recent ORDER BY id";

pub(super) const INSERT_FTA: &str = "INSERT INTO fta_requests (request_key, engagement_id, conversation_id, \
     service_url, customer, requestor, details, status, version, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9) ON CONFLICT (request_key) DO NOTHING RETURNING id";

pub(super) const TRANSITION_FTA: &str = "UPDATE fta_requests SET status = $3, version = version + 1, \
     assigned_fta = COALESCE($4, assigned_fta), decline_reason = COALESCE($5, decline_reason), \
     info_ask = $6, updated_at = $7 WHERE id = $1 AND version = $2";

pub(super) const INSERT_FTA_AUDIT: &str = "INSERT INTO fta_audit \
     (request_id, at, who, who_id, action, from_status, to_status, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

pub(super) const SELECT_FTA_AUDIT: &str = "SELECT at, who, who_id, action, from_status, to_status, detail \
     FROM fta_audit WHERE request_id = $1 ORDER BY id";

pub(super) const UPSERT_SYNC_SERIES: &str = "INSERT INTO sync_series \
     (engagement_id, kind, data, version, updated_by, updated_at) VALUES ($1, $2, $3, 1, $4, $5) \
     ON CONFLICT (engagement_id) DO UPDATE SET kind = excluded.kind, data = excluded.data, \
     version = sync_series.version + 1, updated_by = excluded.updated_by, updated_at = excluded.updated_at";

pub(super) const SELECT_SYNC_SERIES: &str = "SELECT engagement_id, kind, data, version, updated_by, \
     updated_at FROM sync_series WHERE engagement_id = $1";

/// Expands to a full `Store` implementation for one backend.
macro_rules! impl_store {
    ($store:ident, $db:ty, $name:literal, $skip_locked:expr, $placeholders:expr, $chains:expr) => {
        #[async_trait::async_trait]
        impl crate::store::Store for $store {
            fn backend(&self) -> &'static str {
                $name
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn activity_seen(
                &self,
                key: &InboundKey,
            ) -> Result<Option<Option<String>>, StoreError> {
                let row: Option<(Option<String>,)> = sqlx::query_as(sql::SELECT_INBOUND)
                    .bind(&key.channel_id)
                    .bind(&key.conversation_id)
                    .bind(&key.activity_id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|r| r.0))
            }

            #[tracing::instrument(skip_all, fields(backend = $name, jobs = jobs.len()))]
            async fn commit_turn(
                &self,
                key: Option<&InboundKey>,
                now: Millis,
                changes: Vec<Change>,
                jobs: Vec<NewJob>,
                response: Option<String>,
                claim: Option<BirthClaim>,
            ) -> Result<TurnCommit, StoreError> {
                // Most turns (a command answered with a card) only touch the conversation and enqueue
                // replies: those are merged with the others of their batch.
                if let Some(key) = key
                    && changes
                        .iter()
                        .all(|c| matches!(c, Change::TouchConversation(_)))
                {
                    let touches = changes
                        .into_iter()
                        .filter_map(|c| match c {
                            Change::TouchConversation(r) => Some(r),
                            _ => None,
                        })
                        .collect();
                    let turn = super::batch::TurnRows {
                        key: key.clone(),
                        now,
                        response,
                        touches,
                        jobs,
                        claim,
                    };
                    return self.writer.turn(turn).await;
                }
                let key = key.cloned();
                let may_conflict = !changes.iter().all(Change::cannot_conflict);
                self.writer
                    .write_as(may_conflict, move |tx| {
                        Box::pin(async move {
                            // The de-duplication row is written first: a duplicate (even one in the same batch)
                            // is found before anything else is touched.
                            if let Some(key) = &key {
                                let inserted = sqlx::query(sql::INSERT_INBOUND)
                                    .bind(&key.channel_id)
                                    .bind(&key.conversation_id)
                                    .bind(&key.activity_id)
                                    .bind(now)
                                    .bind(response.as_deref())
                                    .execute(&mut **tx)
                                    .await?
                                    .rows_affected();
                                if inserted == 0 {
                                    let row: Option<(Option<String>,)> =
                                        sqlx::query_as(sql::SELECT_INBOUND)
                                            .bind(&key.channel_id)
                                            .bind(&key.conversation_id)
                                            .bind(&key.activity_id)
                                            .fetch_optional(&mut **tx)
                                            .await?;
                                    return Ok(Commit::Duplicate {
                                        response: row.and_then(|r| r.0),
                                    });
                                }
                            }
                            let mut all_jobs = jobs;
                            all_jobs.extend(apply_changes(tx, changes, now).await?);
                            for job in &all_jobs {
                                insert_job(tx, job, now).await?;
                            }
                            Ok(Commit::Applied)
                        })
                    })
                    .await
                    .map(|commit| TurnCommit {
                        commit,
                        claimed: Vec::new(),
                    })
            }

            async fn conversation(
                &self,
                id: &str,
            ) -> Result<Option<StoredConversation>, StoreError> {
                let row: Option<ConversationRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE conversation_id = $1"
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(StoredConversation::from))
            }

            async fn mark_conversation_dead(
                &self,
                id: &str,
                reason: &str,
                now: Millis,
            ) -> Result<(), StoreError> {
                let (id, reason) = (id.to_owned(), reason.to_owned());
                self.writer
                    .write_one(move |tx| {
                        Box::pin(async move {
                            sqlx::query(sql::MARK_CONVERSATION_DEAD)
                                .bind(&id)
                                .bind(&reason)
                                .bind(now)
                                .execute(&mut **tx)
                                .await?;
                            Ok(())
                        })
                    })
                    .await
            }

            async fn enqueue_jobs(
                &self,
                jobs: Vec<NewJob>,
                now: Millis,
            ) -> Result<u64, StoreError> {
                self.writer
                    .write(move |tx| {
                        Box::pin(async move {
                            let mut inserted = 0;
                            for job in &jobs {
                                inserted += insert_job(tx, job, now).await?;
                            }
                            Ok(inserted)
                        })
                    })
                    .await
            }

            #[tracing::instrument(skip_all, fields(backend = $name, worker))]
            async fn claim_jobs(
                &self,
                worker: &str,
                now: Millis,
                lease_until: Millis,
                limit: u32,
            ) -> Result<Vec<Job>, StoreError> {
                let worker = worker.to_owned();
                let rows: Vec<JobRow> = self
                    .writer
                    .write_one(move |tx| {
                        Box::pin(async move {
                            Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql::claim_sql($chains, $skip_locked)))
                                .bind(&worker)
                                .bind(lease_until)
                                .bind(now)
                                .bind(i64::from(limit))
                                .fetch_all(&mut **tx)
                                .await?)
                        })
                    })
                    .await?;
                let mut jobs = rows
                    .into_iter()
                    .map(Job::try_from)
                    .collect::<Result<Vec<_>, _>>()?;
                jobs.sort_by_key(|j| (j.run_at, j.id));
                Ok(jobs)
            }

            async fn complete_job(
                &self,
                id: i64,
                worker: &str,
                result: Option<serde_json::Value>,
                changes: Vec<Change>,
                jobs: Vec<NewJob>,
                now: Millis,
            ) -> Result<bool, StoreError> {
                let result = result.map(|v| v.to_string());
                let worker = worker.to_owned();
                let follow_ups = !changes.is_empty() || !jobs.is_empty();
                if !follow_ups {
                    let mark = super::batch::Mark {
                        id,
                        worker,
                        text: result,
                        now,
                        next: None,
                    };
                    return Ok(self.writer.mark(super::batch::MarkKind::Done, mark).await?.0);
                }
                self.writer
                    .write_as(follow_ups, move |tx| {
                        Box::pin(async move {
                            let n = sqlx::query(sql::COMPLETE_JOB)
                                .bind(id)
                                .bind(&worker)
                                .bind(result)
                                .bind(now)
                                .execute(&mut **tx)
                                .await?
                                .rows_affected();
                            if n != 1 {
                                // The lease was lost: whoever holds the job now will apply its outcome.
                                return Ok(false);
                            }
                            let mut all_jobs = jobs;
                            all_jobs.extend(apply_changes(tx, changes, now).await?);
                            for job in &all_jobs {
                                insert_job(tx, job, now).await?;
                            }
                            Ok(true)
                        })
                    })
                    .await
            }

            async fn complete_and_claim_next(
                &self,
                id: i64,
                worker: &str,
                result: Option<serde_json::Value>,
                now: Millis,
                next: ChainNext,
            ) -> Result<(bool, Option<Job>), StoreError> {
                let mark = super::batch::Mark {
                    id,
                    worker: worker.to_owned(),
                    text: result.map(|v| v.to_string()),
                    now,
                    next: Some(next),
                };
                self.writer.mark(super::batch::MarkKind::Done, mark).await
            }

            async fn retry_job(
                &self,
                id: i64,
                worker: &str,
                run_at: Millis,
                error: &str,
                now: Millis,
            ) -> Result<bool, StoreError> {
                let (worker, error) = (worker.to_owned(), clip(error));
                self.writer
                    .write_one(move |tx| {
                        Box::pin(async move {
                            let n = sqlx::query(sql::RETRY_JOB)
                                .bind(id)
                                .bind(&worker)
                                .bind(run_at)
                                .bind(&error)
                                .bind(now)
                                .execute(&mut **tx)
                                .await?
                                .rows_affected();
                            Ok(n == 1)
                        })
                    })
                    .await
            }

            async fn retry_throttled_job(
                &self,
                id: i64,
                worker: &str,
                run_at: Millis,
                error: &str,
                now: Millis,
                free_if_queued_since: Millis,
            ) -> Result<bool, StoreError> {
                let (worker, error) = (worker.to_owned(), clip(error));
                self.writer
                    .write_one(move |tx| {
                        Box::pin(async move {
                            let n = sqlx::query(sql::RETRY_THROTTLED_JOB)
                                .bind(id)
                                .bind(&worker)
                                .bind(run_at)
                                .bind(&error)
                                .bind(now)
                                .bind(free_if_queued_since)
                                .execute(&mut **tx)
                                .await?
                                .rows_affected();
                            Ok(n == 1)
                        })
                    })
                    .await
            }

            async fn fail_job(
                &self,
                id: i64,
                worker: &str,
                status: JobStatus,
                error: &str,
                now: Millis,
            ) -> Result<bool, StoreError> {
                let (worker, error) = (worker.to_owned(), clip(error));
                self.writer
                    .write_one(move |tx| {
                        Box::pin(async move {
                            let n = sqlx::query(sql::FAIL_JOB)
                                .bind(id)
                                .bind(&worker)
                                .bind(status.as_str())
                                .bind(&error)
                                .bind(now)
                                .execute(&mut **tx)
                                .await?
                                .rows_affected();
                            Ok(n == 1)
                        })
                    })
                    .await
            }

            async fn note_job_sending(
                &self,
                id: i64,
                worker: &str,
                note: &str,
            ) -> Result<bool, StoreError> {
                let mark = super::batch::Mark {
                    id,
                    worker: worker.to_owned(),
                    text: Some(clip(note)),
                    // Only the completion records a time.
                    now: 0,
                    next: None,
                };
                Ok(self
                    .writer
                    .mark(super::batch::MarkKind::Sending, mark)
                    .await?
                    .0)
            }

            async fn requeue_job(&self, id: i64, now: Millis) -> Result<bool, StoreError> {
                self.writer
                    .write_one(move |tx| {
                        Box::pin(async move {
                            let n = sqlx::query(sql::REQUEUE_JOB)
                                .bind(id)
                                .bind(now)
                                .execute(&mut **tx)
                                .await?
                                .rows_affected();
                            Ok(n == 1)
                        })
                    })
                    .await
            }

            async fn close_job(&self, id: i64, now: Millis, note: &str) -> Result<bool, StoreError> {
                let note = note.to_owned();
                self.writer
                    .write_one(move |tx| {
                        Box::pin(async move {
                            let n = sqlx::query(sql::CLOSE_JOB)
                                .bind(id)
                                .bind(now)
                                .bind(note)
                                .execute(&mut **tx)
                                .await?
                                .rows_affected();
                            Ok(n == 1)
                        })
                    })
                    .await
            }

            async fn next_job_due(&self) -> Result<Option<Millis>, StoreError> {
                let row: (Option<i64>,) =
                    sqlx::query_as(sql::next_due_sql($chains)).fetch_one(&self.pool).await?;
                Ok(row.0)
            }

            async fn job_counts(&self) -> Result<Vec<(JobStatus, i64)>, StoreError> {
                Ok(sql::status_counts(
                    sqlx::query_as(sql::JOB_COUNTS)
                        .fetch_all(&self.pool)
                        .await?,
                ))
            }

            async fn queue_counts(&self) -> Result<Vec<(JobStatus, i64)>, StoreError> {
                Ok(sql::status_counts(
                    sqlx::query_as(sql::QUEUE_COUNTS)
                        .fetch_all(&self.pool)
                        .await?,
                ))
            }

            async fn jobs_with_status(
                &self,
                status: JobStatus,
                limit: u32,
            ) -> Result<Vec<Job>, StoreError> {
                let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE status = $1 ORDER BY id LIMIT $2"
                )))
                .bind(status.as_str())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(Job::try_from).collect()
            }

            async fn job_by_key(&self, idempotency_key: &str) -> Result<Option<Job>, StoreError> {
                let row: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE idempotency_key = $1"
                )))
                .bind(idempotency_key)
                .fetch_optional(&self.pool)
                .await?;
                row.map(Job::try_from).transpose()
            }

            async fn prune_inbound(&self, before: Millis) -> Result<u64, StoreError> {
                self.writer
                    .write_one(move |tx| {
                        Box::pin(async move {
                            Ok(sqlx::query(sql::PRUNE_INBOUND)
                                .bind(before)
                                .execute(&mut **tx)
                                .await?
                                .rows_affected())
                        })
                    })
                    .await
            }

            async fn active_engagement(
                &self,
                conversation_id: &str,
            ) -> Result<Option<Engagement>, StoreError> {
                let row: Option<EngagementRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {ENGAGEMENT_COLUMNS} FROM engagements WHERE conversation_id = $1 AND status = 'active'"
                )))
                .bind(conversation_id)
                .fetch_optional(&self.pool)
                .await?;
                match row {
                    Some(row) => Ok(Some(self.hydrate(row).await?)),
                    None => Ok(None),
                }
            }

            async fn engagement(&self, id: i64) -> Result<Option<Engagement>, StoreError> {
                let row: Option<EngagementRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {ENGAGEMENT_COLUMNS} FROM engagements WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                match row {
                    Some(row) => Ok(Some(self.hydrate(row).await?)),
                    None => Ok(None),
                }
            }

            async fn engagements(&self, active: Option<bool>) -> Result<Vec<Engagement>, StoreError> {
                let filter = match active {
                    Some(true) => "WHERE status = 'active'",
                    Some(false) => "WHERE status = 'closed'",
                    None => "",
                };
                let rows: Vec<EngagementRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {ENGAGEMENT_COLUMNS} FROM engagements {filter} ORDER BY created_at DESC, id"
                )))
                .fetch_all(&self.pool)
                .await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    out.push(self.hydrate(row).await?);
                }
                Ok(out)
            }

            async fn card(&self, key: &str) -> Result<Option<CardRef>, StoreError> {
                let row: Option<(String, String, String, String)> = sqlx::query_as(sql::SELECT_CARD)
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(|(key, conversation_id, activity_id, service_url)| CardRef {
                    key,
                    conversation_id,
                    activity_id,
                    service_url,
                }))
            }

            async fn invite(&self, id: i64) -> Result<Option<InviteRecord>, StoreError> {
                let row: Option<(i64, i64, String, String, i64)> = sqlx::query_as(sql::SELECT_INVITE)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|(id, engagement_id, state, data, version)| {
                    Ok(InviteRecord {
                        id,
                        engagement_id,
                        state,
                        data: serde_json::from_str(&data).map_err(|e| {
                            StoreError::Other(anyhow::anyhow!("invite {id} is unreadable: {e}"))
                        })?,
                        version,
                    })
                })
                .transpose()
            }

            async fn sync_notes(&self, engagement_id: i64) -> Result<Vec<SyncNotesRecord>, StoreError> {
                let rows: Vec<(i64, i64, String, String, i64)> = sqlx::query_as(sql::SELECT_SYNC_NOTES)
                    .bind(engagement_id)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, engagement_id, notes, by, at)| SyncNotesRecord {
                        id,
                        engagement_id,
                        notes: serde_json::from_str(&notes).unwrap_or(serde_json::Value::Null),
                        by,
                        at,
                    })
                    .collect())
            }

            async fn record_graph_call(
                &self,
                method: &str,
                path: &str,
                body: Option<&serde_json::Value>,
                now: Millis,
            ) -> Result<(), StoreError> {
                let (method, path, body) = (method.to_owned(), path.to_owned(), body.map(|b| b.to_string()));
                self.writer
                    .write_one(move |tx| {
                        Box::pin(async move {
                            sqlx::query(sql::INSERT_OUTBOX)
                                .bind(&method)
                                .bind(&path)
                                .bind(body)
                                .bind(now)
                                .execute(&mut **tx)
                                .await?;
                            Ok(())
                        })
                    })
                    .await
            }

            async fn sync_series(&self, engagement_id: i64) -> Result<Option<SyncSeries>, StoreError> {
                let row: Option<(i64, String, String, i64, String, i64)> =
                    sqlx::query_as(sql::SELECT_SYNC_SERIES)
                        .bind(engagement_id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(|(engagement_id, kind, data, version, updated_by, updated_at)| SyncSeries {
                    engagement_id,
                    kind,
                    data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
                    version,
                    updated_by,
                    updated_at,
                }))
            }

            async fn fta_request(&self, id: i64) -> Result<Option<FtaRequestRecord>, StoreError> {
                let row: Option<FtaRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {FTA_COLUMNS} FROM fta_requests WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                match row {
                    Some(row) => Ok(Some(self.hydrate_fta(row).await?)),
                    None => Ok(None),
                }
            }

            async fn fta_request_by_key(&self, key: &str) -> Result<Option<FtaRequestRecord>, StoreError> {
                let row: Option<FtaRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {FTA_COLUMNS} FROM fta_requests WHERE request_key = $1"
                )))
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
                match row {
                    Some(row) => Ok(Some(self.hydrate_fta(row).await?)),
                    None => Ok(None),
                }
            }

            async fn fta_requests(&self, filter: &FtaFilter) -> Result<Vec<FtaRequestRecord>, StoreError> {
                let open = if filter.open_only {
                    "AND status IN ('submitted', 'in_review', 'info_requested')"
                } else {
                    ""
                };
                let rows: Vec<FtaRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {FTA_COLUMNS} FROM fta_requests \
                     WHERE ($1 IS NULL OR engagement_id = $1) {open} ORDER BY created_at DESC, id DESC"
                )))
                .bind(filter.engagement_id)
                .fetch_all(&self.pool)
                .await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    out.push(self.hydrate_fta(row).await?);
                }
                Ok(out)
            }

            async fn graph_outbox(&self, limit: u32) -> Result<Vec<OutboxCall>, StoreError> {
                let rows: Vec<(i64, String, String, Option<String>, i64)> = sqlx::query_as(sql::SELECT_OUTBOX)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, method, path, body, recorded_at)| OutboxCall {
                        id,
                        method,
                        path,
                        body: body.and_then(|b| serde_json::from_str(&b).ok()),
                        recorded_at,
                    })
                    .collect())
            }
        }

        impl $store {
            async fn hydrate_fta(&self, row: FtaRow) -> Result<FtaRequestRecord, StoreError> {
                let history: Vec<FtaAuditRow> = sqlx::query_as(sql::SELECT_FTA_AUDIT)
                    .bind(row.id)
                    .fetch_all(&self.pool)
                    .await?;
                row.into_record(history.into_iter().map(FtaAuditRecord::from).collect())
            }

            /// Loads an engagement's roster and prep ticks.
            async fn hydrate(&self, row: EngagementRow) -> Result<Engagement, StoreError> {
                let roster_rows: Vec<(String, String)> = sqlx::query_as(sql::SELECT_ROSTER)
                    .bind(row.id)
                    .fetch_all(&self.pool)
                    .await?;
                let roster = roster_rows
                    .iter()
                    .filter_map(|(role, person)| roster_member(role, person))
                    .collect();
                let prep_rows: Vec<(String, i64, String, i64)> = sqlx::query_as(sql::SELECT_PREP)
                    .bind(row.id)
                    .fetch_all(&self.pool)
                    .await?;
                let prep = prep_rows
                    .into_iter()
                    .filter_map(|(item, done, by, at)| {
                        Some(PrepTick { item: PrepItem::parse(&item)?, done: done != 0, by, at })
                    })
                    .collect();
                row.into_engagement(roster, prep)
            }
        }

        /// Applies state changes inside a transaction; returns jobs they add (a welcome card).
        async fn apply_changes(
            tx: &mut sqlx::Transaction<'_, $db>,
            changes: Vec<Change>,
            now: Millis,
        ) -> Result<Vec<NewJob>, StoreError> {
            let mut jobs = Vec::new();
            for change in changes {
                match change {
                    Change::TouchConversation(reference) => {
                        upsert_conversation(tx, &reference, now).await?;
                    }
                    Change::InstallConversation { reference, welcome } => {
                        let before: Option<(String,)> = sqlx::query_as(sql::SELECT_CONVERSATION_STATUS)
                            .bind(&reference.conversation_id)
                            .fetch_optional(&mut **tx)
                            .await?;
                        upsert_conversation(tx, &reference, now).await?;
                        if before.map(|b| b.0) != Some("live".to_string()) {
                            jobs.extend(welcome);
                        }
                    }
                    Change::MarkConversationDead { conversation_id, reason } => {
                        sqlx::query(sql::MARK_CONVERSATION_DEAD)
                            .bind(&conversation_id)
                            .bind(&reason)
                            .bind(now)
                            .execute(&mut **tx)
                            .await?;
                    }
                    Change::StartEngagement(e) => {
                        let fm = serde_json::to_string(&e.fm).map_err(|e| StoreError::Other(e.into()))?;
                        sqlx::query(sql::INSERT_ENGAGEMENT)
                            .bind(e.id)
                            .bind(&e.conversation_id)
                            .bind(&e.service_url)
                            .bind(&e.customer)
                            .bind(e.motion.as_str())
                            .bind(e.tpid.and_then(|t| i64::try_from(t).ok()))
                            .bind(e.tenant.as_deref())
                            .bind(fm)
                            .bind(now)
                            .execute(&mut **tx)
                            .await?;
                    }
                    Change::CloseEngagement { id, by } => {
                        sqlx::query(sql::CLOSE_ENGAGEMENT)
                            .bind(id)
                            .bind(now)
                            .bind(&by)
                            .execute(&mut **tx)
                            .await?;
                    }
                    Change::AddRosterMember { engagement_id, member, by } => {
                        let person =
                            serde_json::to_string(&member.person).map_err(|e| StoreError::Other(e.into()))?;
                        sqlx::query(sql::UPSERT_ROSTER)
                            .bind(engagement_id)
                            .bind(member.role.abbr())
                            .bind(person_key(&member.person))
                            .bind(person)
                            .bind(&by)
                            .bind(now)
                            .execute(&mut **tx)
                            .await?;
                    }
                    Change::RemoveRosterMember { engagement_id, role, person_key } => {
                        match person_key {
                            Some(key) => {
                                sqlx::query(sql::DELETE_ROSTER_MEMBER)
                                    .bind(engagement_id)
                                    .bind(role.abbr())
                                    .bind(key)
                                    .execute(&mut **tx)
                                    .await?
                            }
                            None => {
                                sqlx::query(sql::DELETE_ROLE)
                                    .bind(engagement_id)
                                    .bind(role.abbr())
                                    .execute(&mut **tx)
                                    .await?
                            }
                        };
                    }
                    Change::SetPrepTick { engagement_id, item, done, by } => {
                        sqlx::query(sql::UPSERT_PREP)
                            .bind(engagement_id)
                            .bind(item.as_str())
                            .bind(i64::from(done))
                            .bind(&by)
                            .bind(now)
                            .execute(&mut **tx)
                            .await?;
                    }
                    Change::SaveCard(card) => {
                        sqlx::query(sql::UPSERT_CARD)
                            .bind(&card.key)
                            .bind(&card.conversation_id)
                            .bind(&card.activity_id)
                            .bind(&card.service_url)
                            .bind(now)
                            .execute(&mut **tx)
                            .await?;
                    }
                    Change::SaveInvite { invite, expected_version } => {
                        let data = invite.data.to_string();
                        match expected_version {
                            None => {
                                sqlx::query(sql::INSERT_INVITE)
                                    .bind(invite.id)
                                    .bind(invite.engagement_id)
                                    .bind(&invite.state)
                                    .bind(data)
                                    .bind(now)
                                    .execute(&mut **tx)
                                    .await?;
                            }
                            Some(version) => {
                                let n = sqlx::query(sql::UPDATE_INVITE)
                                    .bind(invite.id)
                                    .bind(&invite.state)
                                    .bind(data)
                                    .bind(now)
                                    .bind(version)
                                    .execute(&mut **tx)
                                    .await?
                                    .rows_affected();
                                if n != 1 {
                                    return Err(StoreError::Conflict(format!(
                                        "invite {} changed since version {version}",
                                        invite.id
                                    )));
                                }
                            }
                        }
                    }
                    Change::CreateFtaRequest { request, audit } => {
                        let requestor = serde_json::to_string(&request.requestor)
                            .map_err(|e| StoreError::Other(e.into()))?;
                        let id: Option<(i64,)> = sqlx::query_as(sql::INSERT_FTA)
                            .bind(&request.request_key)
                            .bind(request.engagement_id)
                            .bind(&request.conversation_id)
                            .bind(&request.service_url)
                            .bind(&request.customer)
                            .bind(requestor)
                            .bind(request.details.to_string())
                            .bind(&request.status)
                            .bind(now)
                            .fetch_optional(&mut **tx)
                            .await?;
                        if let Some((id,)) = id {
                            insert_fta_audit(tx, id, &audit).await?;
                        }
                    }
                    Change::TransitionFtaRequest {
                        id,
                        expected_version,
                        status,
                        assigned_fta,
                        decline_reason,
                        info_ask,
                        audit,
                    } => {
                        let fta = match &assigned_fta {
                            Some(p) => Some(serde_json::to_string(p).map_err(|e| StoreError::Other(e.into()))?),
                            None => None,
                        };
                        let n = sqlx::query(sql::TRANSITION_FTA)
                            .bind(id)
                            .bind(expected_version)
                            .bind(&status)
                            .bind(fta)
                            .bind(decline_reason.as_deref())
                            .bind(info_ask.as_deref())
                            .bind(now)
                            .execute(&mut **tx)
                            .await?
                            .rows_affected();
                        if n != 1 {
                            return Err(StoreError::Conflict(format!(
                                "FTA request {id} changed since version {expected_version}"
                            )));
                        }
                        insert_fta_audit(tx, id, &audit).await?;
                    }
                    Change::SetSyncSeries { engagement_id, kind, data, by } => {
                        sqlx::query(sql::UPSERT_SYNC_SERIES)
                            .bind(engagement_id)
                            .bind(&kind)
                            .bind(data.to_string())
                            .bind(&by)
                            .bind(now)
                            .execute(&mut **tx)
                            .await?;
                    }
                    Change::RecordSyncNotes { engagement_id, notes, by } => {
                        sqlx::query(sql::INSERT_SYNC_NOTES)
                            .bind(new_id())
                            .bind(engagement_id)
                            .bind(notes.to_string())
                            .bind(&by)
                            .bind(now)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
            }
            Ok(jobs)
        }

        async fn insert_fta_audit(
            tx: &mut sqlx::Transaction<'_, $db>,
            request_id: i64,
            audit: &FtaAuditRecord,
        ) -> Result<(), StoreError> {
            sqlx::query(sql::INSERT_FTA_AUDIT)
                .bind(request_id)
                .bind(audit.at)
                .bind(&audit.who)
                .bind(audit.who_id.as_deref())
                .bind(&audit.action)
                .bind(audit.from_status.as_deref())
                .bind(&audit.to_status)
                .bind(audit.detail.as_deref())
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        async fn upsert_conversation(
            tx: &mut sqlx::Transaction<'_, $db>,
            r: &ConversationRef,
            now: Millis,
        ) -> Result<(), StoreError> {
            sqlx::query(sql::UPSERT_CONVERSATION)
                .bind(&r.conversation_id)
                .bind(&r.service_url)
                .bind(r.tenant_id.as_deref())
                .bind(r.team_id.as_deref())
                .bind(r.team_name.as_deref())
                .bind(r.channel_id.as_deref())
                .bind(r.bot_id.as_deref())
                .bind(r.conversation_type.as_deref())
                .bind(now)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        async fn insert_job(
            tx: &mut sqlx::Transaction<'_, $db>,
            job: &NewJob,
            now: Millis,
        ) -> Result<u64, StoreError> {
            let inserted: Option<(i64, String)> = sqlx::query_as(sql::INSERT_JOB)
                .bind(&job.kind)
                .bind(&job.idempotency_key)
                .bind(job.ordering_key.as_deref())
                .bind(i64::from(job.max_attempts))
                .bind(job.run_at)
                .bind(now)
                .bind(now)
                .fetch_optional(&mut **tx)
                .await?;
            let Some((id, _)) = inserted else {
                // Queued before under the same key.
                return Ok(0);
            };
            if let Some(part) = &job.part {
                sqlx::query(sql::INSERT_PAYLOAD_PART)
                    .bind(&*part.digest)
                    .bind(&*part.text)
                    .execute(&mut **tx)
                    .await?;
            }
            sqlx::query(sql::INSERT_JOB_PAYLOAD)
                .bind(id)
                .bind(&job.payload)
                .bind(job.part.as_ref().map(|p| &*p.digest))
                .execute(&mut **tx)
                .await?;
            Ok(1)
        }

        /// The backend's [`super::batch::RunTurns`]: the de-duplication rows first (those inserted are the
        /// new activities), then the new activities' conversation touches and jobs.
        fn run_turns<'t>(
            tx: &'t mut sqlx::Transaction<'static, $db>,
            turns: &'t [super::batch::TurnRows],
        ) -> super::batch::BoxFuture<'t, Result<Vec<TurnCommit>, StoreError>> {
            Box::pin(async move {
                let mut inserted = std::collections::HashSet::new();
                for (chunk, rows) in sql::row_chunks($placeholders, turns) {
                    let text = sql::inbound_rows_sql($placeholders, rows);
                    let mut query =
                        sqlx::query_as::<_, (String, String, String)>(sqlx::AssertSqlSafe(text));
                    for t in sql::padded(chunk, rows) {
                        query = query
                            .bind(&t.key.channel_id)
                            .bind(&t.key.conversation_id)
                            .bind(&t.key.activity_id)
                            .bind(t.now)
                            .bind(t.response.as_deref());
                    }
                    inserted.extend(query.fetch_all(&mut **tx).await?);
                }
                let fresh = super::batch::applied_turns(turns, inserted);
                let mut responses = Vec::new();
                for (t, _) in turns.iter().zip(&fresh).filter(|(_, fresh)| !**fresh) {
                    let row: Option<(Option<String>,)> = sqlx::query_as(sql::SELECT_INBOUND)
                        .bind(&t.key.channel_id)
                        .bind(&t.key.conversation_id)
                        .bind(&t.key.activity_id)
                        .fetch_optional(&mut **tx)
                        .await?;
                    responses.push(row.and_then(|r| r.0));
                }
                let (mut commits, applied) = super::batch::turn_commits(turns, &fresh, responses);
                let touches = super::batch::folded_touches(&applied);
                for (chunk, rows) in sql::row_chunks($placeholders, &touches) {
                    let text = sql::conversation_rows_sql($placeholders, rows);
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(text));
                    for (r, at) in sql::padded(chunk, rows) {
                        query = query
                            .bind(&r.conversation_id)
                            .bind(&r.service_url)
                            .bind(r.tenant_id.as_deref())
                            .bind(r.team_id.as_deref())
                            .bind(r.team_name.as_deref())
                            .bind(r.channel_id.as_deref())
                            .bind(r.bot_id.as_deref())
                            .bind(r.conversation_type.as_deref())
                            .bind(*at)
                            .bind(*at);
                    }
                    query.execute(&mut **tx).await?;
                }
                let jobs: Vec<(&NewJob, Millis)> = applied
                    .iter()
                    .flat_map(|(_, t)| t.jobs.iter().map(move |j| (j, t.now)))
                    .collect();
                let mut inserted = std::collections::HashMap::new();
                for (chunk, rows) in sql::row_chunks($placeholders, &jobs) {
                    let text = sql::job_rows_sql($placeholders, rows);
                    let mut query =
                        sqlx::query_as::<_, (i64, String)>(sqlx::AssertSqlSafe(text));
                    for (job, now) in sql::padded(chunk, rows) {
                        query = query
                            .bind(&job.kind)
                            .bind(&job.idempotency_key)
                            .bind(job.ordering_key.as_deref())
                            .bind(i64::from(job.max_attempts))
                            .bind(job.run_at)
                            .bind(*now)
                            .bind(*now);
                    }
                    for (id, key) in query.fetch_all(&mut **tx).await? {
                        inserted.insert(key, id);
                    }
                }
                let super::batch::JobFollowUps {
                    payloads,
                    parts,
                    claims,
                } = super::batch::job_follow_ups(&applied, inserted);
                for (chunk, rows) in sql::row_chunks($placeholders, &parts) {
                    let text = sql::payload_part_rows_sql($placeholders, rows);
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(text));
                    for part in sql::padded(chunk, rows) {
                        query = query.bind(&*part.digest).bind(&*part.text);
                    }
                    query.execute(&mut **tx).await?;
                }
                for (chunk, rows) in sql::row_chunks($placeholders, &payloads) {
                    let text = sql::job_payload_rows_sql($placeholders, rows);
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(text));
                    for (id, job) in sql::padded(chunk, rows) {
                        query = query
                            .bind(*id)
                            .bind(job.payload.as_str())
                            .bind(job.part.as_ref().map(|p| &*p.digest));
                    }
                    query.execute(&mut **tx).await?;
                }
                let mut claimed = std::collections::HashSet::new();
                for (chunk, rows) in sql::row_chunks($placeholders, &claims) {
                    let text = sql::birth_claim_sql($chains, $placeholders, rows);
                    let mut query = sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(text));
                    for (id, index, _, claim) in sql::padded(chunk, rows) {
                        query = query
                            .bind(*id)
                            .bind(claim.worker.as_str())
                            .bind(claim.lease_until)
                            .bind(turns.get(*index).map_or(0, |t| t.now))
                            .bind(claim.note.as_deref());
                    }
                    claimed.extend(query.fetch_all(&mut **tx).await?.into_iter().map(|(id,)| id));
                }
                super::batch::add_born_claimed(&mut commits, claims, &claimed);
                Ok(commits)
            })
        }

        /// The backend's [`super::batch::RunSuccessors`].
        fn run_successors<'t>(
            tx: &'t mut sqlx::Transaction<'static, $db>,
            successors: &'t [super::batch::Successor],
        ) -> super::batch::BoxFuture<'t, Result<Vec<Job>, StoreError>> {
            Box::pin(async move {
                let mut jobs = Vec::with_capacity(successors.len());
                for chunk in sql::pow2_chunks(successors) {
                    let text = sql::successor_sql($chains, $placeholders, chunk.len());
                    let mut query = sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(text));
                    for s in chunk {
                        query = query
                            .bind(s.after)
                            .bind(s.next.ordering_key.as_str())
                            .bind(s.next.kind.as_str())
                            .bind(s.worker.as_str())
                            .bind(s.next.lease_until)
                            .bind(s.now)
                            .bind(s.next.note.as_deref());
                    }
                    for row in query.fetch_all(&mut **tx).await? {
                        jobs.push(Job::try_from(row)?);
                    }
                }
                Ok(jobs)
            })
        }

        /// The backend's [`super::batch::RunMarks`].
        fn run_marks<'t>(
            tx: &'t mut sqlx::Transaction<'static, $db>,
            kind: super::batch::MarkKind,
            marks: &'t [super::batch::Mark],
        ) -> super::batch::BoxFuture<'t, Result<Vec<i64>, StoreError>> {
            Box::pin(async move {
                let (text, rows) = sql::mark_sql(kind, $placeholders, marks.len());
                let mut query = sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(text));
                for mark in marks {
                    query = query
                        .bind(mark.id)
                        .bind(mark.worker.as_str())
                        .bind(mark.text.as_deref())
                        .bind(mark.now);
                }
                for _ in marks.len()..rows {
                    query = query
                        .bind(-1_i64)
                        .bind("")
                        .bind(None::<&str>)
                        .bind(0_i64);
                }
                let ids = query.fetch_all(&mut **tx).await?;
                Ok(ids.into_iter().map(|(id,)| id).collect())
            })
        }
    };
}

pub(super) use impl_store;

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    /// An in-memory SQLite database with the migrations whose file names sort before `before` applied
    /// (all of them when `None`).
    fn sqlite_migrated(before: Option<&str>) -> rusqlite::Connection {
        #![allow(clippy::unwrap_used)]
        let db = rusqlite::Connection::open_in_memory().unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|f| f.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            if before.is_some_and(|before| name.as_str() >= before) {
                break;
            }
            db.execute_batch(&std::fs::read_to_string(file).unwrap())
                .unwrap();
        }
        db
    }

    /// The steps of `text`'s plan that read `jobs`.
    fn jobs_plan(db: &rusqlite::Connection, text: &str) -> Vec<String> {
        #![allow(clippy::unwrap_used)]
        let mut statement = db.prepare(&format!("EXPLAIN QUERY PLAN {text}")).unwrap();
        // Unbound parameters are NULL, which a plan does not depend on.
        let mut rows = statement.raw_query();
        let mut steps = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            let step: String = row.get(3).unwrap();
            if step.contains(" jobs") {
                steps.push(step);
            }
        }
        steps
    }

    /// A `/metrics` scrape must cost the queue, not the history: on SQLite's schema every part of the
    /// queue's count reads one of the partial indexes of live or held jobs, where counting every status
    /// scans the table.
    #[test]
    fn the_queue_is_counted_through_the_indexes_of_live_and_held_jobs() {
        let db = sqlite_migrated(None);
        let plan = |text: &str| jobs_plan(&db, text);
        let queue = plan(QUEUE_COUNTS);
        assert_eq!(queue.len(), 3, "{queue:?}");
        for step in &queue {
            assert!(
                ["jobs_live_due", "jobs_dead", "jobs_unconfirmed"]
                    .iter()
                    .any(|index| step.contains(&format!("INDEX {index}"))),
                "{queue:?}"
            );
        }
        assert_eq!(plan(JOB_COUNTS), ["SCAN jobs"]);
    }

    /// SQLite's chain bookkeeping (migration 0009): a job waits while an older job of its chain is live,
    /// and is freed when that job leaves, whatever statement moves it; a claim reads only the freed ones.
    #[test]
    fn sqlite_chains_free_each_job_when_the_one_before_it_leaves() {
        #![allow(clippy::unwrap_used)]
        let db = sqlite_migrated(None);
        let insert = |key: &str, chain: Option<&str>| -> Option<i64> {
            db.query_row(
                INSERT_JOB,
                rusqlite::params!["message", key, chain, 5, 0, 0, 0],
                |row| row.get(0),
            )
            .ok()
        };
        let waiting = |id: i64| -> i64 {
            db.query_row("SELECT waiting FROM jobs WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .unwrap()
        };
        let set = |id: i64, status: &str| {
            db.execute(
                "UPDATE jobs SET status = ?2 WHERE id = ?1",
                rusqlite::params![id, status],
            )
            .unwrap();
        };
        let claimable = || -> Vec<i64> {
            let mut statement = db.prepare(CLAIMABLE_LINKED).unwrap();
            statement
                .query_map(rusqlite::named_params! {"$3": 1, "$4": 10}, |row| {
                    row.get(0)
                })
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        let [a1, a2, a3, free, b1] = [
            ("a1", Some("a")),
            ("a2", Some("a")),
            ("a3", Some("a")),
            ("free", None),
            ("b1", Some("b")),
        ]
        .map(|(key, chain)| insert(key, chain).unwrap());
        assert_eq!([a1, a2, a3, free, b1].map(waiting), [0, 1, 1, 0, 0]);
        assert_eq!(claimable(), [a1, free, b1]);
        // Running, and back to pending for a retry, the head still holds its chain.
        set(a1, "running");
        set(a1, "pending");
        assert_eq!(waiting(a2), 1);
        set(a1, "done");
        assert_eq!([a2, a3].map(waiting), [0, 1]);
        assert_eq!(claimable(), [a2, free, b1]);
        set(a2, "dead");
        assert_eq!(waiting(a3), 0);
        // Put back by an operator, a job runs beside the ones its leaving freed.
        set(a2, "pending");
        assert_eq!([a2, a3].map(waiting), [0, 0]);
        let a4 = insert("a4", Some("a")).unwrap();
        assert_eq!(waiting(a4), 1, "behind a3, the chain's newest live job");
        assert_eq!(insert("a4", Some("a")), None, "a key queued before");
        set(a3, "unconfirmed");
        assert_eq!(waiting(a4), 0);
        set(a4, "done");
        let a5 = insert("a5", Some("a")).unwrap();
        assert_eq!(waiting(a5), 0, "the chain's newest job had finished");
        let tail: i64 = db
            .query_row(
                "SELECT tail_id FROM job_chains WHERE ordering_key = 'a'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(tail, a5);
    }

    /// Jobs queued before migration 0009 wait and are freed as the index ordered them.
    #[test]
    fn sqlite_chains_take_over_the_jobs_queued_before_them() {
        #![allow(clippy::unwrap_used)]
        let db = sqlite_migrated(Some("0009"));
        let jobs = [
            ("a", "done"),
            ("a", "running"),
            ("a", "pending"),
            ("a", "pending"),
            ("b", "done"),
            ("", "pending"),
            ("c", "dead"),
            ("c", "pending"),
        ];
        for (n, (chain, status)) in jobs.iter().enumerate() {
            db.query_row(
                INSERT_JOB,
                rusqlite::params![
                    "message",
                    n.to_string(),
                    Some(chain).filter(|c| !c.is_empty()),
                    5,
                    0,
                    0,
                    0
                ],
                |_| Ok(()),
            )
            .unwrap();
            db.execute(
                "UPDATE jobs SET status = ?2 WHERE id = ?1",
                rusqlite::params![n as i64 + 1, status],
            )
            .unwrap();
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        db.execute_batch(&std::fs::read_to_string(dir.join("0009_job_chains.sql")).unwrap())
            .unwrap();
        let state = |id: i64| -> (i64, Option<i64>) {
            db.query_row(
                "SELECT waiting, next_id FROM jobs WHERE id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap()
        };
        assert_eq!(
            [2, 3, 4, 6, 8].map(state),
            [(0, Some(3)), (1, Some(4)), (1, None), (0, None), (0, None)]
        );
        let mut statement = db
            .prepare("SELECT ordering_key, tail_id FROM job_chains ORDER BY ordering_key")
            .unwrap();
        let tails: Vec<(String, i64)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(tails, [("a".to_owned(), 4), ("c".to_owned(), 8)]);
        db.execute("UPDATE jobs SET status = 'done' WHERE id = 2", [])
            .unwrap();
        assert_eq!(state(3), (0, Some(4)));
    }

    /// Every statement that claims on SQLite reads jobs by id or through the index of freed jobs, never by
    /// scanning the table (which holds the whole history).
    #[test]
    fn sqlite_claims_read_only_the_freed_jobs() {
        let db = sqlite_migrated(None);
        let texts = [
            claim_sql(Chains::Linked, false),
            next_due_sql(Chains::Linked).to_owned(),
            birth_claim_sql(Chains::Linked, Placeholders::Anonymous, 2).into_owned(),
            successor_sql(Chains::Linked, Placeholders::Anonymous, 2).into_owned(),
        ];
        for text in texts {
            let plan = jobs_plan(&db, &text);
            assert!(!plan.is_empty(), "{text}");
            for step in &plan {
                assert!(
                    step.contains("INTEGER PRIMARY KEY") || step.contains("INDEX jobs_ready"),
                    "{text}: {plan:?}"
                );
            }
        }
    }

    /// The merged statements are the single-row ones repeated: one row gives back the original text.
    #[test]
    fn multi_row_statements_extend_the_single_row_ones() {
        use Placeholders::Numbered;
        assert_eq!(conversation_rows_sql(Numbered, 1), UPSERT_CONVERSATION);
        assert_eq!(job_rows_sql(Numbered, 1), INSERT_JOB);
        assert_eq!(
            inbound_rows_sql(Numbered, 1),
            format!("{INSERT_INBOUND} RETURNING channel_id, conversation_id, activity_id")
        );
        assert_eq!(job_payload_rows_sql(Numbered, 1), INSERT_JOB_PAYLOAD);
        let two = job_rows_sql(Numbered, 2);
        assert!(
            two.contains("($8, '', $9, $10, 'pending', 0, $11, $12, $13, $14)"),
            "{two}"
        );
    }

    /// SQLite's texts number nothing: each row's parameters are `?`s in binding order, as many as the
    /// numbered text has.
    #[test]
    fn anonymous_placeholders_keep_the_numbered_texts_shape() {
        use Placeholders::{Anonymous, Numbered};
        let numbered = job_rows_sql(Numbered, 4);
        let anonymous = job_rows_sql(Anonymous, 4);
        assert!(!anonymous.contains('$'), "{anonymous}");
        assert_eq!(anonymous.matches('?').count(), 4 * 7);
        let mut renumbered = String::new();
        let mut n = 0;
        for c in anonymous.chars() {
            if c == '?' {
                n += 1;
                renumbered.push_str(&format!("${n}"));
            } else {
                renumbered.push(c);
            }
        }
        assert_eq!(renumbered, numbered);
        let (marks, rows) = mark_sql(super::super::batch::MarkKind::Done, Anonymous, 3);
        assert_eq!((marks.matches('?').count(), rows), (4 * 4, 4));
    }

    /// A power-of-two text is built once and shared; any other row count is built on the spot.
    #[test]
    fn texts_are_kept_per_style_and_power_of_two() {
        let a = inbound_rows_sql(Placeholders::Anonymous, 8);
        let b = inbound_rows_sql(Placeholders::Anonymous, 8);
        assert!(matches!((&a, &b), (Cow::Borrowed(x), Cow::Borrowed(y)) if std::ptr::eq(*x, *y)));
        assert_ne!(a, inbound_rows_sql(Placeholders::Numbered, 8));
        assert!(matches!(
            inbound_rows_sql(Placeholders::Anonymous, 3),
            Cow::Owned(_)
        ));
    }

    #[test]
    fn chunks_are_powers_of_two_in_order() {
        let items: Vec<u32> = (0..200).collect();
        let chunks = pow2_chunks(&items);
        let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [64, 64, 64, 8]);
        assert_eq!(chunks.concat(), items);
        assert!(pow2_chunks::<u32>(&[]).is_empty());
        let sizes: Vec<usize> = pow2_chunks(&items[..13]).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [8, 4, 1]);
    }

    #[test]
    fn sqlite_pads_each_chunk_to_one_statement_and_postgres_splits_it() {
        let items: Vec<u32> = (0..77).collect();
        let sqlite = row_chunks(Placeholders::Anonymous, &items);
        let shape: Vec<(usize, usize)> = sqlite.iter().map(|(c, n)| (c.len(), *n)).collect();
        assert_eq!(shape, [(64, 64), (13, 16)]);
        let (tail, rows) = sqlite[1];
        let bound: Vec<u32> = padded(tail, rows).copied().collect();
        assert_eq!(bound.len(), 16);
        assert_eq!(bound[..13], items[64..]);
        assert!(bound[13..].iter().all(|&x| x == 76), "the last row again");
        let postgres = row_chunks(Placeholders::Numbered, &items[..13]);
        let shape: Vec<(usize, usize)> = postgres.iter().map(|(c, n)| (c.len(), *n)).collect();
        assert_eq!(shape, [(8, 8), (4, 4), (1, 1)]);
        assert!(row_chunks::<u32>(Placeholders::Anonymous, &[]).is_empty());
    }
}
