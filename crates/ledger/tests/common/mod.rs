//! Fixtures of the ledger's contract suite: a fresh SQLite file per test, or a fresh
//! PostgreSQL schema per test (dropped afterwards), and the lease-holder child process mode.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use pp_ledger::Ledger;
use sqlx::Executor;

/// What a contract test gets: a migrated, empty ledger and the URL that reaches it (for
/// reconnecting or handing to a child process).
pub struct Ctx {
    pub ledger: Ledger,
    pub url: String,
}

/// Runs `test` against a new SQLite file database in a temporary directory.
pub async fn run_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let ledger = Ledger::connect(&url).await.expect("open SQLite ledger");
    test(Ctx {
        ledger: ledger.clone(),
        url,
    })
    .await;
    ledger.close().await;
}

/// The PostgreSQL server used by the tests.
pub fn postgres_base_url() -> String {
    std::env::var("PP_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `base` with a search path selecting `schema`.
pub fn with_schema(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// A fresh schema of the PostgreSQL test database, reached by `url`; [`PgSchema::drop_then`]
/// drops it.
pub struct PgSchema {
    admin: sqlx::PgPool,
    name: String,
    /// The test database with this schema on its search path.
    pub url: String,
}

impl PgSchema {
    /// Creates a schema named after `test` (the `kind` of test in the message it prints).
    /// Fails when PostgreSQL cannot be reached, unless `PP_SKIP_POSTGRES=1`: then it says
    /// it skipped and returns `None`.
    pub async fn create(kind: &str, test: &str) -> Option<PgSchema> {
        if std::env::var("PP_SKIP_POSTGRES").as_deref() == Ok("1") {
            eprintln!("SKIPPED PostgreSQL {kind} test `{test}`: PP_SKIP_POSTGRES=1");
            return None;
        }
        let base = postgres_base_url();
        let admin = match tokio::time::timeout(
            Duration::from_secs(10),
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&base),
        )
        .await
        {
            Ok(Ok(pool)) => pool,
            Ok(Err(e)) => panic!(
                "PostgreSQL is not reachable at {base} ({e}); start it, point \
                 PP_TEST_POSTGRES_URL at a reachable server, or set PP_SKIP_POSTGRES=1 to skip \
                 the PostgreSQL tests"
            ),
            Err(_) => panic!(
                "PostgreSQL is not reachable at {base} (no connection within 10 s); start it, \
                 point PP_TEST_POSTGRES_URL at a reachable server, or set PP_SKIP_POSTGRES=1 to \
                 skip the PostgreSQL tests"
            ),
        };
        let short: String = test.chars().take(30).collect();
        let name = format!(
            "pp_ledger_{short}_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        );
        admin
            .execute(format!("CREATE SCHEMA \"{name}\"").as_str())
            .await
            .expect("create test schema");
        let url = with_schema(&base, &name);
        Some(PgSchema { admin, name, url })
    }

    /// Drops the schema, then passes on the test's panic, if it had one.
    pub async fn drop_then(self, outcome: Result<(), Box<dyn std::any::Any + Send>>) {
        self.admin
            .execute(format!("DROP SCHEMA \"{}\" CASCADE", self.name).as_str())
            .await
            .expect("drop test schema");
        self.admin.close().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Runs `test` against a fresh schema of the PostgreSQL test database, then drops it (also
/// when the test panics). Fails when PostgreSQL cannot be reached, unless
/// `PP_SKIP_POSTGRES=1`, in which case it says it skipped.
pub async fn run_postgres<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(schema) = PgSchema::create("contract", name).await else {
        return;
    };
    let url = schema.url.clone();
    let outcome = match Ledger::connect(&url).await {
        Ok(ledger) => {
            let result = tokio::spawn(test(Ctx {
                ledger: ledger.clone(),
                url,
            }))
            .await;
            ledger.close().await;
            result.map_err(|e| e.into_panic())
        }
        Err(e) => Err(Box::new(format!("connect to schema {}: {e}", schema.name)) as _),
    };
    schema.drop_then(outcome).await;
}

/// Generates, for each named `async fn name(ctx: Ctx)`, a module `name` with a `sqlite` and
/// a `postgres` test that run it.
#[macro_export]
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    $crate::common::run_sqlite(super::$name).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    $crate::common::run_postgres(stringify!($name), super::$name).await
                }
            }
        )*
    };
}
