//! SQLite: the embedded default for one process. WAL lets readers run beside the single writer; every
//! transaction writes first, so the busy timeout (not an immediate SQLITE_BUSY) governs contention.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::batch::{SyncLog, Writer};
use super::sql::{self, impl_store};
use super::sqlite_batch::SqliteBatches;
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
            // A committed activity survives power loss, not only a process crash: FULL syncs the log in
            // every commit; the writer's connection (below) syncs it beside its commits instead.
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
        let database = options.get_filename().to_path_buf();
        let on_disk = !database.as_os_str().is_empty() && database != Path::new(":memory:");
        let sync = on_disk.then(|| wal_sync(database.clone()));
        let write_options = if sync.is_some() {
            options.clone().synchronous(SqliteSynchronous::Normal)
        } else {
            options.clone()
        };
        let write_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(write_options)
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&write_pool)
            .await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options.read_only(true))
            .await?;
        // An in-memory database is private to its connection, so it has no second writer.
        let direct = if on_disk {
            let batches = SqliteBatches::open(&database, sync.is_some())?;
            Some(Box::new(batches) as Box<dyn super::batch::Direct>)
        } else {
            None
        };
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
                sync,
                direct,
            )?,
        })
    }
}

impl_store!(
    SqliteStore,
    sqlx::Sqlite,
    "sqlite",
    false,
    sql::Placeholders::Anonymous,
    sql::Chains::Linked
);

/// Syncs the write-ahead log that the writer's commits append to without syncing it themselves
/// (`synchronous=NORMAL`); the writer answers no commit before this ran after it (see
/// `batch::Durability`). SQLite syncs the log before each checkpoint and the database after it, so
/// syncing the log is all that a commit awaiting durability needs.
///
/// The file is opened for each sync: SQLite removes the log when its last connection closes and creates a
/// new one later, and a kept descriptor would sync the removed file. A log that does not exist holds
/// nothing unsynced. A new log's directory entry is synced too (once per file), or after power loss the
/// synced log might not be found.
fn wal_sync(database: PathBuf) -> SyncLog {
    let mut wal = database.clone().into_os_string();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    let directory = database
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let entry_synced_for = AtomicU64::new(0);
    Arc::new(move || {
        let file = match std::fs::File::open(&wal) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        file.sync_data()?;
        let inode = file.metadata()?.ino();
        if entry_synced_for.load(Ordering::Acquire) != inode {
            std::fs::File::open(&directory)?.sync_all()?;
            entry_synced_for.store(inode, Ordering::Release);
        }
        Ok(())
    })
}
