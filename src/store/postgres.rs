//! PostgreSQL: several replicas share one database; job claims use `FOR UPDATE SKIP LOCKED` so each job is
//! leased to exactly one of them.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::batch::Writer;
use super::sql::{self, impl_store};
use super::{
    BirthClaim, CONVERSATION_COLUMNS, CardRef, ChainNext, Change, Commit, ConversationRef,
    ConversationRow, ENGAGEMENT_COLUMNS, Engagement, EngagementRow, FTA_COLUMNS, FtaAuditRecord,
    FtaAuditRow, FtaFilter, FtaRequestRecord, FtaRow, InboundKey, InviteRecord, JOB_COLUMNS, Job,
    JobRow, JobStatus, NewJob, OutboxCall, PrepTick, StoreError, StoredConversation,
    SyncNotesRecord, SyncSeries, TurnCommit, clip, new_id, person_key, roster_member,
};
use crate::clock::Millis;
use crate::domain::engagement::PrepItem;

pub struct PostgresStore {
    pool: sqlx::PgPool,
    /// This process's writes, group-committed; the pool's other connections serve reads.
    writer: Writer<sqlx::Postgres>,
}

impl PostgresStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?.application_name("fieldbot");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self {
            writer: Writer::start(
                pool.clone(),
                false,
                super::batch::Merged {
                    marks: run_marks,
                    successors: run_successors,
                    turns: run_turns,
                },
                // PostgreSQL's commit waits for its own log flush (and groups concurrent ones).
                None,
                None,
            )?,
            pool,
        })
    }
}

impl_store!(
    PostgresStore,
    sqlx::Postgres,
    "postgres",
    true,
    sql::Placeholders::Numbered,
    sql::Chains::Indexed
);
