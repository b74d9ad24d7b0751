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

use super::StoreError;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
pub(super) type Tx<DB> = Transaction<'static, DB>;

/// Called once the batch's fate is known: `Ok` after the commit, `Err` with the reason it failed.
type Deliver = Box<dyn FnOnce(Result<(), String>) + Send>;
type Step<DB> = Box<dyn for<'t> FnOnce(&'t mut Tx<DB>) -> BoxFuture<'t, Deliver> + Send>;

/// Most writes in one transaction; bounds the latency one batch adds to the first write in it.
const MAX_BATCH: usize = 256;

pub(super) struct Writer<DB: Database> {
    queue: mpsc::UnboundedSender<Step<DB>>,
    /// SQLite undoes a failed statement by itself and the transaction goes on, so a single-statement write
    /// needs no savepoint there; on PostgreSQL any error poisons the transaction until rolled back to one.
    statement_atomic: bool,
}

impl<DB: Database> Writer<DB>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    /// Starts the writer task on `pool` (for SQLite a pool of one connection: the only writer).
    pub(super) fn start(pool: Pool<DB>, statement_atomic: bool) -> Self {
        let (queue, steps) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, steps));
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
        self.queue.send(step).map_err(|_| stopped())?;
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

async fn run<DB>(pool: Pool<DB>, mut steps: mpsc::UnboundedReceiver<Step<DB>>)
where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    while let Some(first) = steps.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match steps.try_recv() {
                Ok(step) => batch.push(step),
                Err(_) => break,
            }
        }
        let size = batch.len();
        let mut tx = match pool.begin().await {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!(error = %e, writes = size, "cannot begin a write transaction");
                // Dropping the steps tells every caller the write did not happen.
                continue;
            }
        };
        let mut deliveries = Vec::with_capacity(size);
        for step in batch {
            deliveries.push(step(&mut tx).await);
        }
        let committed = tx.commit().await.map_err(|e| e.to_string());
        if let Err(reason) = &committed {
            tracing::error!(error = %reason, writes = size, "a write batch failed to commit");
        }
        metrics::histogram!("fieldbot_store_batch_size").record(size as f64);
        for deliver in deliveries {
            deliver(committed.clone());
        }
    }
}
