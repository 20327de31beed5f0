//! SQLite specifics: a file ledger survives reconnects and runs in WAL mode, its log copied
//! into the database in the background until its last handle is dropped; the in-memory
//! ledger works; bad URLs are refused; the dashboard's queries use indexes.

use std::collections::BTreeMap;

use sqlx::Row;

use pp_ledger::{Backend, Cause, Ledger, LedgerError, RecordChange, RecordState, RunOutcome};
use serde_json::json;

#[tokio::test]
async fn file_ledger_persists_across_reconnects_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub-dir-free.db");
    let url = format!("sqlite://{}", path.display());
    assert!(!path.exists());

    let l = Ledger::connect(&url).await.unwrap();
    assert_eq!(l.backend(), Backend::Sqlite);
    assert_eq!(
        l.sqlite_journal_mode().await.unwrap().as_deref(),
        Some("wal")
    );
    let run = l.start_run("referrals-to-primero", "inst-a").await.unwrap();
    l.apply(
        &[
            RecordChange::new("referrals-to-primero", "lp-1", RecordState::Delivered)
                .with_dest_id("case_uuid", "u-1"),
        ],
        Some(("referrals-to-primero", "cursor-7")),
        &Cause::Run(run.clone()),
    )
    .await
    .unwrap();
    l.put_fact("intervention", "IN-1", &json!({"business_unit": "bu-1"}))
        .await
        .unwrap();
    l.finish_run(&run, RunOutcome::Completed, &BTreeMap::new(), None)
        .await
        .unwrap();
    assert!(path.exists());
    assert!(
        dir.path().join("sub-dir-free.db-wal").exists(),
        "write-ahead log file present"
    );
    l.close().await;

    // Reconnecting re-runs migrations (a no-op) and sees everything.
    let l = Ledger::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    let r = l
        .get("referrals-to-primero", "lp-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.state, RecordState::Delivered);
    assert_eq!(r.dest_ids["case_uuid"], "u-1");
    assert_eq!(
        l.cursor("referrals-to-primero").await.unwrap().as_deref(),
        Some("cursor-7")
    );
    assert_eq!(l.find("u-1").await.unwrap().len(), 1);
    assert_eq!(
        l.fact("intervention", "IN-1").await.unwrap(),
        Some(json!({"business_unit": "bu-1"}))
    );
    let got = l.get_run(run.as_str()).await.unwrap().unwrap();
    assert_eq!(got.outcome, RunOutcome::Completed);
    assert_eq!(
        l.audit("referrals-to-primero", "lp-1").await.unwrap().len(),
        1
    );
    l.close().await;
}

#[tokio::test]
async fn memory_ledger_works_and_bad_urls_are_refused() {
    let l = Ledger::connect("sqlite::memory:").await.unwrap();
    let run = l.start_run("decisions-to-primero", "inst-a").await.unwrap();
    l.apply(
        &[RecordChange::new(
            "decisions-to-primero",
            "g-1|125080001",
            RecordState::Pending,
        )],
        None,
        &Cause::Run(run),
    )
    .await
    .unwrap();
    assert!(l
        .get("decisions-to-primero", "g-1|125080001")
        .await
        .unwrap()
        .is_some());
    assert_eq!(l.find("g-1").await.unwrap().len(), 1);
    l.ping().await.unwrap();

    assert!(matches!(
        Ledger::connect("mysql://localhost/x").await,
        Err(LedgerError::UnsupportedUrl { .. })
    ));
}

#[tokio::test]
async fn audit_trail_is_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("l.db").display());
    let l = Ledger::connect(&url).await.unwrap();
    let run = l.start_run("referrals-to-progres", "inst-a").await.unwrap();
    l.apply(
        &[RecordChange::new(
            "referrals-to-progres",
            "s-1",
            RecordState::Pending,
        )],
        None,
        &Cause::Run(run),
    )
    .await
    .unwrap();
    l.close().await;
    // Even with direct SQL, an audit event cannot be rewritten.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let err = sqlx::query("UPDATE audit_events SET to_state = 'confirmed'")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    pool.close().await;
}

/// The dashboard's queries must stay fast at 100,000 records: check SQLite plans them on
/// indexes rather than full table scans (and without a sort where the index gives the order).
#[tokio::test]
async fn dashboard_queries_use_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("l.db").display());
    Ledger::connect(&url).await.unwrap().close().await;
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let cases = [
        (
            "SELECT * FROM records WHERE state = 'rejected'",
            "records_state_updated_at",
        ),
        (
            "SELECT * FROM records r WHERE r.state IN ('rejected') \
             ORDER BY r.updated_at DESC, r.id DESC LIMIT 50 OFFSET 100",
            "records_state_updated_at",
        ),
        (
            "SELECT key FROM records WHERE flow = 'f' AND state IN ('rejected', 'conflict') \
             AND reason_code = 'r' ORDER BY updated_at DESC, id DESC LIMIT 50",
            "COVERING INDEX records_attention",
        ),
        (
            "SELECT key FROM records WHERE flow = 'f' AND state IN ('rejected', 'conflict') \
             AND reason_code IS NULL ORDER BY updated_at DESC, id DESC LIMIT 50",
            "COVERING INDEX records_attention",
        ),
        (
            "SELECT day, state, n FROM daily_outcomes WHERE flow = 'f' AND day >= '2026-01-01' \
             AND day <= '2026-01-30' AND n > 0 ORDER BY day, state",
            "PRIMARY KEY",
        ),
        (
            "SELECT * FROM records WHERE flow = 'f' AND state = 'failed' AND next_retry_at <= 'x'",
            "records_flow_state_retry",
        ),
        (
            "SELECT * FROM records WHERE reason_code = 'r'",
            "records_reason",
        ),
        (
            "SELECT record_id FROM record_identifiers WHERE value = 'v'",
            "record_identifiers_value",
        ),
        (
            // `find` of a composite key, through its first indexed part.
            "SELECT * FROM records r WHERE r.key = 'a:b' AND r.id IN \
             (SELECT i.record_id FROM record_identifiers i WHERE i.value = 'a')",
            "record_identifiers_value",
        ),
        (
            "SELECT * FROM audit_events WHERE flow = 'f' AND record_key = 'k' ORDER BY id",
            "audit_events_flow_key",
        ),
        (
            "SELECT * FROM audit_events WHERE at < 'x'",
            "audit_events_at",
        ),
        (
            "SELECT * FROM runs ORDER BY started_at DESC LIMIT 50",
            "runs_started_at",
        ),
        (
            "SELECT * FROM records WHERE flow = 'f' AND key = 'k'",
            "sqlite_autoindex_records",
        ),
    ];
    for (sql, index) in cases {
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("detail"))
            .collect();
        assert!(
            plan.iter().any(|d| d.contains(index)),
            "`{sql}` should use {index}, plan: {plan:?}"
        );
        assert!(
            !plan.iter().any(|d| d.contains("TEMP B-TREE")),
            "`{sql}` should not sort, plan: {plan:?}"
        );
        assert!(
            !plan
                .iter()
                .any(|d| d.starts_with("SCAN ") && !d.contains(" USING ")),
            "`{sql}` should not read a whole table, plan: {plan:?}"
        );
    }
    pool.close().await;
}

#[tokio::test]
async fn an_unreachable_postgres_ledger_says_why() {
    // Nothing listens on port 1: the connection is refused. The pool keeps trying for its
    // patience (a server may be starting up), then reports only "pool timed out"; the ledger
    // names the cause instead.
    let err = Ledger::connect_within(
        "postgres://nobody@127.0.0.1:1/none",
        std::time::Duration::from_secs(2),
    )
    .await
    .expect_err("nothing listens on port 1");
    let text = err.to_string();
    assert!(!text.contains("timed out"), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
}

#[tokio::test]
async fn the_write_ahead_log_is_copied_into_the_database_without_waiting_for_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let l = Ledger::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let run = l.start_run("decisions-to-progres", "inst-a").await.unwrap();
    let size = || std::fs::metadata(&path).unwrap().len();
    // Let a first background checkpoint copy what opening wrote (the migrations).
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let before = size();
    // A few hundred pages of log: fewer than the 1,000 at which a commit would copy them
    // itself with SQLite's default, so only the background checkpoint moves them.
    let changes: Vec<RecordChange> = (0..200)
        .map(|i| {
            RecordChange::new(
                "decisions-to-progres",
                format!("c-{i:04}:s-{i:04}:accepted"),
                RecordState::Confirmed,
            )
            .with_dest_id("case_id", format!("case-{i:04}"))
        })
        .collect();
    l.apply(&changes, None, &Cause::Run(run)).await.unwrap();
    let mut grown = false;
    for _ in 0..40 {
        if size() > before {
            grown = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        grown,
        "the database file grew from {before} bytes without another commit"
    );
    assert!(l
        .get("decisions-to-progres", "c-0007:s-0007:accepted")
        .await
        .unwrap()
        .is_some());
    l.close().await;
}

/// Open files of this process on `path` (Linux: `/proc/self/fd`).
fn open_handles(path: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|fds| {
            fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter(|target| target == path)
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_stops_the_background_checkpoints_and_closes_the_file() {
    if !std::path::Path::new("/proc/self/fd").exists() {
        return; // not Linux: nothing to observe the open files with
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let l = Ledger::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let path = path.canonicalize().unwrap();
    let copy = l.clone();
    l.start_run("decisions-to-progres", "inst-a").await.unwrap();
    assert!(
        open_handles(&path) > 0,
        "the ledger holds the database open"
    );
    drop(l);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert!(
        open_handles(&path) > 0,
        "a clone still holds the database open"
    );
    assert!(copy
        .get("decisions-to-progres", "none")
        .await
        .unwrap()
        .is_none());
    drop(copy);
    let mut closed = false;
    for _ in 0..60 {
        if open_handles(&path) == 0 {
            closed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        closed,
        "the database file is still open after the last handle was dropped"
    );
}
