//! Durable state of ping-primero: flow runs, cursors, record states, the audit trail,
//! cross-flow facts and flow leases, on SQLite (default) or PostgreSQL behind one type,
//! [`Ledger`]. Migrations are embedded and applied by [`Ledger::connect`].
//!
//! The ledger stores system identifiers, codes, counts and hashes only, never personal data
//! (flows.md R11); free-text fields are cut to fixed lengths. Idempotency (R5) rests on
//! UNIQUE constraints: records `(flow, key)`, facts `(kind, key)`, leases `(flow)`. A cursor
//! only moves in the same transaction as the records fetched under it (R6).
//!
//! The dashboard's aggregates ([`Ledger::counts_by_state`], [`Ledger::attention`],
//! [`Ledger::daily_outcomes`]) read counter tables that every write keeps exact in its own
//! transaction (migration 0002), and partial indexes, so their cost does not grow with the
//! number of records.

mod bound;
mod counters;
mod db;
mod error;
mod leases;
mod model;
mod records;
mod runs;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use bound::{MAX_ERROR, MAX_IDENT, MAX_MESSAGE, MAX_NAME, MAX_REASON};
pub use error::LedgerError;
pub use model::{
    AttentionGroup, AuditEvent, Backend, Cause, ErrorClass, Lease, PurgeReport, Record,
    RecordChange, RecordFilter, RecordState, RetryTarget, Run, RunFilter, RunId, RunOutcome,
};

use db::Pool;

/// Reason code given to records an operator re-queued with [`Ledger::retry`].
pub const OPERATOR_RETRY: &str = "operator_retry";

/// How long opening a PostgreSQL ledger keeps trying (a server still starting up refuses
/// connections for a while), and how long a query waits for a free connection.
const POSTGRES_PATIENCE: Duration = Duration::from_secs(30);

/// How long the one direct connection that names the cause of a failed opening may take.
const CAUSE_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a SQLite connection waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a file ledger's write-ahead log is copied into the database, off the commit
/// path (see [`checkpoint_in_background`]).
const SQLITE_CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// WAL pages after which a commit checkpoints by itself, as SQLite does every 1,000 pages by
/// default: only a safety net, in case the background checkpoints cannot keep up.
const SQLITE_WAL_AUTOCHECKPOINT_PAGES: u32 = 8_192;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Handle on the ledger database. Cheap to clone (clones share one pool).
#[derive(Clone, Debug)]
pub struct Ledger {
    pool: Pool,
    /// A file SQLite ledger's background checkpoint task, stopped when the last clone of the
    /// ledger is dropped (it holds a handle on the pool, which would otherwise stay open).
    checkpoints: Option<Arc<StopOnDrop>>,
}

/// Stops a background task when dropped.
#[derive(Debug)]
struct StopOnDrop(tokio::task::AbortHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Ledger {
    /// Opens the ledger and applies pending migrations.
    ///
    /// `url` is `sqlite://path.db` or `sqlite:path.db` (the file is created if missing and
    /// opened in WAL mode with a busy timeout and foreign keys on), `sqlite::memory:`
    /// (one private in-memory database, one connection), or `postgres://...` /
    /// `postgresql://...` (a `?options=-c search_path=<schema>` parameter selects a schema).
    pub async fn connect(url: &str) -> Result<Ledger, LedgerError> {
        Ledger::connect_within(url, POSTGRES_PATIENCE).await
    }

    /// [`Ledger::connect`], with how long a PostgreSQL ledger keeps trying to connect (and a
    /// query waits for a free connection) instead of 30 s.
    pub async fn connect_within(url: &str, patience: Duration) -> Result<Ledger, LedgerError> {
        let scheme = url.split(':').next().unwrap_or_default();
        let pool = match scheme {
            "sqlite" => {
                let memory = is_memory_url(url);
                let options = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    .foreign_keys(true)
                    .pragma(
                        "wal_autocheckpoint",
                        SQLITE_WAL_AUTOCHECKPOINT_PAGES.to_string(),
                    );
                let pool_options = if memory {
                    // Every connection to `:memory:` is its own database: keep exactly one, forever.
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None)
                } else {
                    // A connection to a local file does not go stale the way a network one
                    // can, and a failing one fails its statement anyway: the ping sqlx sends
                    // on each acquire by default was one more round trip to the database's
                    // thread per ledger call (1.1-1.4 ms for the first reads of flow 1.2 on
                    // two busy cores, a few microseconds without it).
                    SqlitePoolOptions::new()
                        .max_connections(4)
                        .test_before_acquire(false)
                };
                Pool::Sqlite(pool_options.connect_with(options).await?)
            }
            "postgres" | "postgresql" => {
                let options = PgConnectOptions::from_str(url)?;
                let opened = PgPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(patience)
                    .connect_with(options.clone())
                    .await;
                match opened {
                    Ok(pool) => Pool::Pg(pool),
                    // The pool retries what may pass (a refused connection, a server starting
                    // up) until `patience`, then says only "pool timed out": one direct
                    // attempt names the cause (refused, unknown host, authentication).
                    Err(sqlx::Error::PoolTimedOut) => {
                        let probe = tokio::time::timeout(
                            CAUSE_PROBE_TIMEOUT,
                            <sqlx::PgConnection as sqlx::Connection>::connect_with(&options),
                        )
                        .await;
                        return Err(match probe {
                            Ok(Err(cause)) => cause.into(),
                            _ => sqlx::Error::PoolTimedOut.into(),
                        });
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            other => {
                return Err(LedgerError::UnsupportedUrl {
                    scheme: bound::bounded(other, 20),
                })
            }
        };
        let mut ledger = Ledger {
            pool,
            checkpoints: None,
        };
        ledger.migrate().await?;
        if let Pool::Sqlite(pool) = &ledger.pool {
            if !is_memory_url(url) {
                let task = tokio::spawn(checkpoint_in_background(pool.clone()));
                ledger.checkpoints = Some(Arc::new(StopOnDrop(task.abort_handle())));
            }
        }
        tracing::debug!(backend = %ledger.backend(), "ledger connected");
        Ok(ledger)
    }

    /// Applies the embedded migrations of this backend that are not applied yet.
    pub async fn migrate(&self) -> Result<(), LedgerError> {
        match &self.pool {
            Pool::Sqlite(p) => SQLITE_MIGRATOR.run(p).await?,
            Pool::Pg(p) => POSTGRES_MIGRATOR.run(p).await?,
        }
        Ok(())
    }

    /// Which backend this ledger uses.
    pub fn backend(&self) -> Backend {
        self.pool.backend()
    }

    /// Checks that the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), LedgerError> {
        self.pool
            .fetch_optional("SELECT CAST(1 AS BIGINT) AS one", &[], |r| r.int("one"))
            .await?;
        Ok(())
    }

    /// Closes the pool; later calls fail.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Pg(p) => p.close().await,
        }
    }

    /// SQLite's journal mode (`wal` for file databases); `None` on PostgreSQL.
    pub async fn sqlite_journal_mode(&self) -> Result<Option<String>, LedgerError> {
        match self.backend() {
            Backend::Sqlite => Ok(self
                .pool
                .fetch_optional("PRAGMA journal_mode", &[], |r| r.text("journal_mode"))
                .await?),
            Backend::Postgres => Ok(None),
        }
    }
}

fn parse_enum<T: FromStr<Err = LedgerError>>(
    column: &'static str,
    value: &str,
) -> Result<T, LedgerError> {
    value.parse().map_err(|_| LedgerError::Corrupt {
        column,
        reason: format!("unknown value `{}`", bound::bounded(value, 40)),
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(
    column: &'static str,
    value: &str,
) -> Result<T, LedgerError> {
    serde_json::from_str(value).map_err(|e| LedgerError::Corrupt {
        column,
        reason: format!(
            "not the expected JSON: line {} column {}",
            e.line(),
            e.column()
        ),
    })
}

/// Whether a SQLite URL names an in-memory database (no file, no write-ahead log).
fn is_memory_url(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// Copies a file ledger's write-ahead log into the database every
/// [`SQLITE_CHECKPOINT_EVERY`], until the pool is closed or the last [`Ledger`] handle is
/// dropped (which aborts it).
///
/// With SQLite's default, the commit that takes the log past 1,000 pages also copies them,
/// and waits for it: a stall of tens of milliseconds in the middle of a run (flow 1.2 at 1,000
/// decisions ended ~10 ms late when it fell on its last commit). A `PASSIVE` checkpoint from
/// another connection blocks neither readers nor writers: commits go on appending to the log
/// meanwhile. A crash loses nothing: SQLite replays the log when the ledger is opened again.
async fn checkpoint_in_background(pool: sqlx::SqlitePool) {
    let mut every = tokio::time::interval(SQLITE_CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            if pool.is_closed() {
                return;
            }
            tracing::debug!(error = %e, "ledger: background WAL checkpoint failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection as _;

    /// Batched statements are built per batch size and must not pile up in the connection's
    /// statement cache (each holds tens of kilobytes): only the full 50-row shapes are kept
    /// (see the next test); fixed statements stay cached.
    #[tokio::test]
    async fn batched_statements_are_not_kept_prepared() {
        let ledger = Ledger::connect("sqlite::memory:").await.unwrap();
        let cause = Cause::Operator("test".into());
        // Batches of many sizes: every size gives its own statement text.
        for size in 17..=56usize {
            let changes: Vec<RecordChange> = (0..size)
                .map(|i| RecordChange::new("flow", format!("k{size}-{i}"), RecordState::Delivered))
                .collect();
            ledger.apply(&changes, None, &cause).await.unwrap();
            let keys: Vec<String> = (0..size).map(|i| format!("k{size}-{i}")).collect();
            assert_eq!(ledger.get_many("flow", &keys).await.unwrap().len(), size);
        }
        let Pool::Sqlite(pool) = &ledger.pool else {
            unreachable!("an in-memory SQLite ledger")
        };
        let mut conn = pool.acquire().await.unwrap();
        let cached = conn.cached_statements_size();
        // Without the limit: the cache fills up (sqlx keeps 100).
        assert!(cached < 25, "{cached} statements kept prepared");
        assert!(cached > 0, "fixed statements are still cached");
        conn.ping().await.unwrap();
    }

    /// On SQLite a multi-row write of exactly `SQLITE_ROWS_PER_STATEMENT` rows stays prepared
    /// and is reused (by larger writes too, which are cut into such statements); writes of
    /// other sizes add nothing to the cache.
    #[tokio::test]
    async fn full_multi_row_writes_stay_prepared_and_are_reused() {
        let ledger = Ledger::connect("sqlite::memory:").await.unwrap();
        let cause = Cause::Operator("test".into());
        let Pool::Sqlite(pool) = &ledger.pool else {
            unreachable!("an in-memory SQLite ledger")
        };
        let write = |tag: &'static str, n: usize| {
            let changes: Vec<RecordChange> = (0..n)
                .map(|i| RecordChange::new("flow", format!("{tag}-{i:04}"), RecordState::Delivered))
                .collect();
            let (ledger, cause) = (&ledger, &cause);
            async move {
                ledger.apply(&changes, None, cause).await.unwrap();
                let keys: Vec<String> = changes.iter().map(|c| c.key.clone()).collect();
                assert_eq!(ledger.get_many("flow", &keys).await.unwrap().len(), n);
            }
        };
        let cached = || async { pool.acquire().await.unwrap().cached_statements_size() };
        assert_eq!(
            db::SQLITE_ROWS_PER_STATEMENT,
            50,
            "the sizes below assume 50"
        );
        // The fixed statements first.
        write("warm", 1).await;
        write("warm-again", 2).await;
        let fixed = cached().await;

        write("a", 50).await;
        let kept = cached().await;
        assert!(
            kept > fixed,
            "the 50-row statements are kept ({fixed} → {kept})"
        );
        write("b", 50).await;
        write("c", 100).await;
        write("d", 150).await;
        assert_eq!(
            cached().await,
            kept,
            "and reused, also by writes of 100 and 150"
        );
        write("e", 49).await;
        write("f", 37).await;
        write("g", 51).await;
        assert_eq!(cached().await, kept, "other sizes add nothing");
    }
}
