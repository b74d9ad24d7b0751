//! The SQL both backends share. SQLite and PostgreSQL accept the same `$N` placeholders, `ON CONFLICT`,
//! `RETURNING` and `IS DISTINCT FROM`, so one implementation (expanded per backend by `impl_store!`) serves
//! both; only job claiming differs, because PostgreSQL needs `FOR UPDATE SKIP LOCKED` for concurrent
//! replicas while SQLite serialises writers anyway.

pub(super) const INSERT_INBOUND: &str = "INSERT INTO inbound_activities \
     (channel_id, conversation_id, activity_id, received_at, response) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT DO NOTHING";

pub(super) const SELECT_INBOUND: &str = "SELECT response FROM inbound_activities \
     WHERE channel_id = $1 AND conversation_id = $2 AND activity_id = $3";

pub(super) const UPSERT_CONVERSATION: &str = "INSERT INTO conversations \
     (conversation_id, service_url, tenant_id, team_id, team_name, channel_id, bot_id, conversation_type, \
      status, dead_reason, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'live', NULL, $9, $9) \
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
     VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6, $7, $7) \
     ON CONFLICT (idempotency_key) DO NOTHING";

/// A job is claimable when due (or its lease expired) and no older job with the same ordering key is still
/// pending or running: one conversation's effects leave in the order they were caused.
const CLAIMABLE: &str = "SELECT j.id FROM jobs j \
     WHERE ((j.status = 'pending' AND j.run_at <= $3) OR (j.status = 'running' AND j.locked_until <= $3)) \
       AND NOT EXISTS (SELECT 1 FROM jobs p WHERE p.ordering_key = j.ordering_key AND p.id < j.id \
                       AND p.status IN ('pending', 'running')) \
     ORDER BY j.run_at, j.id LIMIT $4";

pub(super) fn claim_sql(skip_locked: bool) -> String {
    format!(
        "UPDATE jobs SET status = 'running', locked_by = $1, locked_until = $2, attempts = attempts + 1, \
         updated_at = $3 WHERE id IN ({CLAIMABLE}{}) RETURNING {}",
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

pub(super) const FAIL_JOB: &str = "UPDATE jobs SET status = $3, last_error = $4, locked_by = NULL, \
     locked_until = NULL, updated_at = $5 WHERE id = $1 AND locked_by = $2 AND status = 'running'";

pub(super) const REQUEUE_JOB: &str = "UPDATE jobs SET status = 'pending', run_at = $2, attempts = 0, \
     updated_at = $2 WHERE id = $1 AND status IN ('dead', 'unconfirmed')";

pub(super) const NEXT_DUE: &str = "SELECT MIN(CASE WHEN status = 'pending' THEN run_at ELSE locked_until END) \
     FROM jobs WHERE status IN ('pending', 'running')";

pub(super) const JOB_COUNTS: &str = "SELECT status, COUNT(*) FROM jobs GROUP BY status";

pub(super) const PRUNE_INBOUND: &str = "DELETE FROM inbound_activities WHERE received_at < $1";

/// Expands to a full `Store` implementation for one backend.
macro_rules! impl_store {
    ($store:ident, $db:ty, $name:literal, $skip_locked:expr) => {
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
            async fn commit_activity(
                &self,
                key: Option<&InboundKey>,
                now: Millis,
                changes: Vec<Change>,
                jobs: Vec<NewJob>,
                response: Option<String>,
            ) -> Result<Commit, StoreError> {
                let mut tx = self.pool.begin().await?;
                // The de-duplication row is written first: on SQLite that takes the write lock before any read,
                // and on PostgreSQL a concurrent duplicate waits here for the first to commit.
                if let Some(key) = key {
                    let inserted = sqlx::query(sql::INSERT_INBOUND)
                        .bind(&key.channel_id)
                        .bind(&key.conversation_id)
                        .bind(&key.activity_id)
                        .bind(now)
                        .bind(response.as_deref())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    if inserted == 0 {
                        let row: Option<(Option<String>,)> = sqlx::query_as(sql::SELECT_INBOUND)
                            .bind(&key.channel_id)
                            .bind(&key.conversation_id)
                            .bind(&key.activity_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                        tx.rollback().await?;
                        return Ok(Commit::Duplicate {
                            response: row.and_then(|r| r.0),
                        });
                    }
                }
                let mut all_jobs = jobs;
                for change in changes {
                    match change {
                        Change::TouchConversation(reference) => {
                            upsert_conversation(&mut tx, &reference, now).await?;
                        }
                        Change::InstallConversation { reference, welcome } => {
                            let before: Option<(String,)> =
                                sqlx::query_as(sql::SELECT_CONVERSATION_STATUS)
                                    .bind(&reference.conversation_id)
                                    .fetch_optional(&mut *tx)
                                    .await?;
                            upsert_conversation(&mut tx, &reference, now).await?;
                            if before.map(|b| b.0) != Some("live".to_string()) {
                                all_jobs.extend(welcome);
                            }
                        }
                        Change::MarkConversationDead {
                            conversation_id,
                            reason,
                        } => {
                            sqlx::query(sql::MARK_CONVERSATION_DEAD)
                                .bind(&conversation_id)
                                .bind(&reason)
                                .bind(now)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                }
                for job in &all_jobs {
                    insert_job(&mut tx, job, now).await?;
                }
                tx.commit().await?;
                Ok(Commit::Applied)
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
                sqlx::query(sql::MARK_CONVERSATION_DEAD)
                    .bind(id)
                    .bind(reason)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn enqueue_jobs(
                &self,
                jobs: Vec<NewJob>,
                now: Millis,
            ) -> Result<u64, StoreError> {
                let mut tx = self.pool.begin().await?;
                let mut inserted = 0;
                for job in &jobs {
                    inserted += insert_job(&mut tx, job, now).await?;
                }
                tx.commit().await?;
                Ok(inserted)
            }

            #[tracing::instrument(skip_all, fields(backend = $name, worker))]
            async fn claim_jobs(
                &self,
                worker: &str,
                now: Millis,
                lease_until: Millis,
                limit: u32,
            ) -> Result<Vec<Job>, StoreError> {
                let rows: Vec<JobRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(sql::claim_sql($skip_locked)))
                        .bind(worker)
                        .bind(lease_until)
                        .bind(now)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
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
                now: Millis,
            ) -> Result<bool, StoreError> {
                let result = result.map(|v| v.to_string());
                let n = sqlx::query(sql::COMPLETE_JOB)
                    .bind(id)
                    .bind(worker)
                    .bind(result)
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn retry_job(
                &self,
                id: i64,
                worker: &str,
                run_at: Millis,
                error: &str,
                now: Millis,
            ) -> Result<bool, StoreError> {
                let n = sqlx::query(sql::RETRY_JOB)
                    .bind(id)
                    .bind(worker)
                    .bind(run_at)
                    .bind(clip(error))
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn fail_job(
                &self,
                id: i64,
                worker: &str,
                status: JobStatus,
                error: &str,
                now: Millis,
            ) -> Result<bool, StoreError> {
                let n = sqlx::query(sql::FAIL_JOB)
                    .bind(id)
                    .bind(worker)
                    .bind(status.as_str())
                    .bind(clip(error))
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn requeue_job(&self, id: i64, now: Millis) -> Result<bool, StoreError> {
                let n = sqlx::query(sql::REQUEUE_JOB)
                    .bind(id)
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn next_job_due(&self) -> Result<Option<Millis>, StoreError> {
                let row: (Option<i64>,) =
                    sqlx::query_as(sql::NEXT_DUE).fetch_one(&self.pool).await?;
                Ok(row.0)
            }

            async fn job_counts(&self) -> Result<Vec<(JobStatus, i64)>, StoreError> {
                let rows: Vec<(String, i64)> = sqlx::query_as(sql::JOB_COUNTS)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .into_iter()
                    .filter_map(|(s, n)| JobStatus::parse(&s).map(|s| (s, n)))
                    .collect())
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
                Ok(sqlx::query(sql::PRUNE_INBOUND)
                    .bind(before)
                    .execute(&self.pool)
                    .await?
                    .rows_affected())
            }
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
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        async fn insert_job(
            tx: &mut sqlx::Transaction<'_, $db>,
            job: &NewJob,
            now: Millis,
        ) -> Result<u64, StoreError> {
            Ok(sqlx::query(sql::INSERT_JOB)
                .bind(&job.kind)
                .bind(job.payload.to_string())
                .bind(&job.idempotency_key)
                .bind(job.ordering_key.as_deref())
                .bind(i64::from(job.max_attempts))
                .bind(job.run_at)
                .bind(now)
                .execute(&mut **tx)
                .await?
                .rows_affected())
        }
    };
}

pub(super) use impl_store;
