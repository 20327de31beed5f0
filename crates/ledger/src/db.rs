//! The thin layer that lets the ledger's SQL run unchanged on SQLite and PostgreSQL: one
//! pool/transaction type over both, bind arguments as data ([`Arg`]) and row access through
//! [`Cols`]. Queries use `$n` placeholders, which both backends accept.

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Postgres, Row, Sqlite, Transaction};

use crate::error::LedgerError;
use crate::model::Backend;

/// A bind argument.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    Bool(bool),
    Ts(DateTime<Utc>),
    OptTs(Option<DateTime<Utc>>),
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Arg::Text(s.to_owned())
    }
}
impl From<String> for Arg {
    fn from(s: String) -> Self {
        Arg::Text(s)
    }
}
impl From<&String> for Arg {
    fn from(s: &String) -> Self {
        Arg::Text(s.clone())
    }
}
impl From<Option<String>> for Arg {
    fn from(s: Option<String>) -> Self {
        Arg::OptText(s)
    }
}
impl From<Option<&str>> for Arg {
    fn from(s: Option<&str>) -> Self {
        Arg::OptText(s.map(str::to_owned))
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}
impl From<DateTime<Utc>> for Arg {
    fn from(v: DateTime<Utc>) -> Self {
        Arg::Ts(ts(v))
    }
}
impl From<Option<DateTime<Utc>>> for Arg {
    fn from(v: Option<DateTime<Utc>>) -> Self {
        Arg::OptTs(v.map(ts))
    }
}

/// Builds an array of [`Arg`] from values convertible into it.
macro_rules! args {
    ($($v:expr),* $(,)?) => { [$($crate::db::Arg::from($v)),*] };
}
pub(crate) use args;

/// Timestamps are kept at microsecond precision, which both backends store exactly.
pub(crate) fn ts(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// The current time at the ledger's precision.
pub(crate) fn now() -> DateTime<Utc> {
    ts(Utc::now())
}

/// Statements with more bound values than this are not kept prepared on the connection
/// (on SQLite, but for the multi-row writes of [`SQLITE_ROWS_PER_STATEMENT`] rows).
///
/// The batched statements (`apply`'s multi-row inserts, `get_many`'s `IN` lists) are built
/// for each batch size, so most of their shapes rarely repeat, and each prepared one holds
/// tens of kilobytes: cached (sqlx keeps 100 per connection), they were megabytes of the
/// service's peak memory at 10,000 records. Fixed statements, with few values, stay prepared.
pub(crate) const MAX_CACHED_ARGS: usize = 16;

/// SQLite: rows of a multi-row write ([`Tx::fetch_all_kept`]) whose statement is kept
/// prepared all the same.
///
/// SQLite compiles a multi-row `VALUES` into code proportional to its values, so preparing
/// `apply`'s statements was about 40 % of their cost (an INSERT of 50 new records: 1.6 ms
/// prepared each time, 0.9 ms reused, on two busy cores). The ledger's multi-row writes are
/// therefore cut into statements of at most this many rows, and only the full ones are kept:
/// one shape per kind of write (new records, updated records, identifiers, audit events,
/// facts), a few statements of some 150 KB each per connection. They recur when a commit
/// holds whole batches of new records, or of known ones, as flows' commits of PING batches
/// (50 by default) mostly do. Other multi-row statements (a remainder of fewer rows, `IN`
/// lists) follow [`MAX_CACHED_ARGS`]: kept without that bound, they filled sqlx's cache of
/// 100 per connection and added 9-16 MB to the peak memory at 10,000 records.
pub(crate) const SQLITE_ROWS_PER_STATEMENT: usize = 50;

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let args = $args;
        bind_all!($query, args, args.len() <= MAX_CACHED_ARGS)
    }};
    ($query:expr, $args:expr, $keep:expr) => {{
        let args = $args;
        let mut q = $query.persistent($keep);
        for a in args {
            q = match a {
                Arg::Text(v) => q.bind(v.clone()),
                Arg::OptText(v) => q.bind(v.clone()),
                Arg::Int(v) => q.bind(*v),
                Arg::Bool(v) => q.bind(*v),
                Arg::Ts(v) => q.bind(*v),
                Arg::OptTs(v) => q.bind(*v),
            };
        }
        q
    }};
}

/// Typed access to a result row of either backend.
pub(crate) trait Cols {
    fn text(&self, col: &str) -> Result<String, LedgerError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, LedgerError>;
    fn int(&self, col: &str) -> Result<i64, LedgerError>;
    fn boolean(&self, col: &str) -> Result<bool, LedgerError>;
    fn ts(&self, col: &str) -> Result<DateTime<Utc>, LedgerError>;
    fn opt_ts(&self, col: &str) -> Result<Option<DateTime<Utc>>, LedgerError>;
}

macro_rules! impl_cols {
    ($row:ty) => {
        impl Cols for $row {
            fn text(&self, col: &str) -> Result<String, LedgerError> {
                Ok(self.try_get::<String, _>(col)?)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>, LedgerError> {
                Ok(self.try_get::<Option<String>, _>(col)?)
            }
            fn int(&self, col: &str) -> Result<i64, LedgerError> {
                Ok(self.try_get::<i64, _>(col)?)
            }
            fn boolean(&self, col: &str) -> Result<bool, LedgerError> {
                Ok(self.try_get::<bool, _>(col)?)
            }
            fn ts(&self, col: &str) -> Result<DateTime<Utc>, LedgerError> {
                Ok(self.try_get::<DateTime<Utc>, _>(col)?)
            }
            fn opt_ts(&self, col: &str) -> Result<Option<DateTime<Utc>>, LedgerError> {
                Ok(self.try_get::<Option<DateTime<Utc>>, _>(col)?)
            }
        }
    };
}
impl_cols!(SqliteRow);
impl_cols!(PgRow);

/// Connection pool of either backend.
#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Pg(PgPool),
}

/// An open write transaction of either backend. Dropped without [`Tx::commit`], it rolls back.
pub(crate) enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Pg(Transaction<'static, Postgres>),
}

impl Pool {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Pg(_) => Backend::Postgres,
        }
    }

    /// Begins a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so concurrent writers queue on `busy_timeout` instead of failing
    /// when a read lock cannot be upgraded.
    pub(crate) async fn begin(&self) -> Result<Tx, LedgerError> {
        Ok(match self {
            Pool::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            Pool::Pg(p) => Tx::Pg(p.begin().await?),
        })
    }

    pub(crate) async fn execute(&self, sql: &str, args: &[Arg]) -> Result<u64, LedgerError> {
        Ok(match self {
            Pool::Sqlite(p) => bind_all!(sqlx::query(sql), args)
                .execute(p)
                .await?
                .rows_affected(),
            Pool::Pg(p) => bind_all!(sqlx::query(sql), args)
                .execute(p)
                .await?
                .rows_affected(),
        })
    }

    pub(crate) async fn fetch_all<T>(
        &self,
        sql: &str,
        args: &[Arg],
        f: impl Fn(&dyn Cols) -> Result<T, LedgerError>,
    ) -> Result<Vec<T>, LedgerError> {
        match self {
            Pool::Sqlite(p) => {
                let rows = bind_all!(sqlx::query(sql), args).fetch_all(p).await?;
                rows.iter().map(|r| f(r)).collect()
            }
            Pool::Pg(p) => {
                let rows = bind_all!(sqlx::query(sql), args).fetch_all(p).await?;
                rows.iter().map(|r| f(r)).collect()
            }
        }
    }

    pub(crate) async fn fetch_optional<T>(
        &self,
        sql: &str,
        args: &[Arg],
        f: impl Fn(&dyn Cols) -> Result<T, LedgerError>,
    ) -> Result<Option<T>, LedgerError> {
        match self {
            Pool::Sqlite(p) => {
                let row = bind_all!(sqlx::query(sql), args).fetch_optional(p).await?;
                row.as_ref().map(|r| f(r)).transpose()
            }
            Pool::Pg(p) => {
                let row = bind_all!(sqlx::query(sql), args).fetch_optional(p).await?;
                row.as_ref().map(|r| f(r)).transpose()
            }
        }
    }
}

impl Tx {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Pg(_) => Backend::Postgres,
        }
    }

    /// `FOR UPDATE` on PostgreSQL; nothing on SQLite, where the transaction already holds the
    /// database's write lock.
    pub(crate) fn for_update(&self) -> &'static str {
        match self {
            Tx::Sqlite(_) => "",
            Tx::Pg(_) => " FOR UPDATE",
        }
    }

    pub(crate) async fn execute(&mut self, sql: &str, args: &[Arg]) -> Result<u64, LedgerError> {
        Ok(match self {
            Tx::Sqlite(tx) => bind_all!(sqlx::query(sql), args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
            Tx::Pg(tx) => bind_all!(sqlx::query(sql), args)
                .execute(&mut **tx)
                .await?
                .rows_affected(),
        })
    }

    pub(crate) async fn fetch_all<T>(
        &mut self,
        sql: &str,
        args: &[Arg],
        f: impl Fn(&dyn Cols) -> Result<T, LedgerError>,
    ) -> Result<Vec<T>, LedgerError> {
        self.fetch_all_kept(sql, args, false, f).await
    }

    /// [`Tx::fetch_all`], whose statement SQLite keeps prepared if `keep` (see
    /// [`SQLITE_ROWS_PER_STATEMENT`]) or if it has few bound values; PostgreSQL ignores
    /// `keep`.
    pub(crate) async fn fetch_all_kept<T>(
        &mut self,
        sql: &str,
        args: &[Arg],
        keep: bool,
        f: impl Fn(&dyn Cols) -> Result<T, LedgerError>,
    ) -> Result<Vec<T>, LedgerError> {
        match self {
            Tx::Sqlite(tx) => {
                let rows = bind_all!(
                    sqlx::query(sql),
                    args,
                    keep || args.len() <= MAX_CACHED_ARGS
                )
                .fetch_all(&mut **tx)
                .await?;
                rows.iter().map(|r| f(r)).collect()
            }
            Tx::Pg(tx) => {
                let rows = bind_all!(sqlx::query(sql), args)
                    .fetch_all(&mut **tx)
                    .await?;
                rows.iter().map(|r| f(r)).collect()
            }
        }
    }

    pub(crate) async fn fetch_optional<T>(
        &mut self,
        sql: &str,
        args: &[Arg],
        f: impl Fn(&dyn Cols) -> Result<T, LedgerError>,
    ) -> Result<Option<T>, LedgerError> {
        match self {
            Tx::Sqlite(tx) => {
                let row = bind_all!(sqlx::query(sql), args)
                    .fetch_optional(&mut **tx)
                    .await?;
                row.as_ref().map(|r| f(r)).transpose()
            }
            Tx::Pg(tx) => {
                let row = bind_all!(sqlx::query(sql), args)
                    .fetch_optional(&mut **tx)
                    .await?;
                row.as_ref().map(|r| f(r)).transpose()
            }
        }
    }

    pub(crate) async fn commit(self) -> Result<(), LedgerError> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await?,
            Tx::Pg(tx) => tx.commit().await?,
        }
        Ok(())
    }
}
