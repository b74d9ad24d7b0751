//! SQLite: the embedded default for one process. WAL lets readers run beside the single writer; every
//! transaction writes first, so the busy timeout (not an immediate SQLITE_BUSY) governs contention.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

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

pub struct SqliteStore {
    /// Readers only: WAL lets them run beside the writer.
    pool: sqlx::SqlitePool,
    /// The one writing connection, fed by the group-commit writer.
    writer: Writer<sqlx::Sqlite>,
}

impl SqliteStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed activity survives power loss, not only a process crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Temporary files (a multi-row statement's journal) stay in memory.
            .pragma("temp_store", "memory");
        if let Some(parent) = options.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Other(anyhow::Error::new(e).context(format!(
                    "cannot create the database directory {}",
                    parent.display()
                )))
            })?;
        }
        // One writing connection: SQLite has one write lock anyway, and waiting for it inside SQLite means
        // the busy handler's sleeps; waiting in the writer's queue costs nothing.
        let write_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&write_pool)
            .await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            pool,
            writer: Writer::start(
                write_pool,
                true,
                super::batch::Merged {
                    marks: run_marks,
                    successors: run_successors,
                    turns: run_turns,
                },
            ),
        })
    }
}

impl_store!(SqliteStore, sqlx::Sqlite, "sqlite", false);
