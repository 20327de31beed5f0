//! Contract tests of the dashboard's aggregates, on both backends: the record counts, the
//! "needs attention" groups and the daily outcomes come from counters the ledger keeps on
//! write, and must always equal what the records and the audit trail say, through inserts,
//! transitions, refused batches, operator retries, purges and concurrent writers. Also: the
//! migration that adds the counters fills them from an existing ledger.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use chrono::{NaiveDate, TimeDelta, Utc};
use common::Ctx;
use pp_ledger::{
    Cause, Ledger, LedgerError, Record, RecordChange, RecordFilter, RecordState, RetryTarget,
    OPERATOR_RETRY,
};

const F11: &str = "referrals-to-primero";
const F12: &str = "decisions-to-progres";
const F21: &str = "referrals-to-progres";

contract!(
    counters_follow_inserts_and_transitions,
    counters_ignore_refused_batches,
    counters_follow_operator_retries,
    purge_keeps_record_counts_and_drops_purged_days,
    counters_stay_exact_under_concurrent_writers,
    attention_lists_the_newest_keys_of_every_group,
);

/// Every record (the tests stay far below the listing limit).
async fn all_records(l: &Ledger) -> Vec<Record> {
    let all = l
        .list_records(&RecordFilter {
            limit: 10_000,
            ..RecordFilter::default()
        })
        .await
        .unwrap();
    assert!(all.len() < 10_000, "listing limit reached");
    all
}

/// Checks the three aggregates against the records and their audit trails, recomputed from
/// scratch, and returns the record counts.
async fn assert_exact(l: &Ledger) -> BTreeMap<(String, String), i64> {
    let records = all_records(l).await;

    let mut counts: BTreeMap<(String, String), i64> = BTreeMap::new();
    for r in &records {
        *counts
            .entry((r.flow.clone(), r.state.as_str().to_owned()))
            .or_default() += 1;
    }
    let got = l.counts_by_state().await.unwrap();
    assert_eq!(got, counts, "counts_by_state");

    // (flow, reason) -> (rejected, conflict, keys)
    type Group = (i64, i64, BTreeSet<String>);
    let mut groups: BTreeMap<(String, Option<String>), Group> = BTreeMap::new();
    for r in &records {
        let g = groups
            .entry((r.flow.clone(), r.reason_code.clone()))
            .or_default();
        match r.state {
            RecordState::Rejected => g.0 += 1,
            RecordState::Conflict => g.1 += 1,
            _ => continue,
        }
        g.2.insert(r.key.clone());
    }
    groups.retain(|_, g| g.0 + g.1 > 0);
    let attention = l.attention().await.unwrap();
    let sizes: Vec<i64> = attention.iter().map(|g| g.rejected + g.conflict).collect();
    assert!(
        sizes.windows(2).all(|w| w[0] >= w[1]),
        "largest group first: {sizes:?}"
    );
    let mut got: BTreeMap<(String, Option<String>), Group> = attention
        .into_iter()
        .map(|g| {
            (
                (g.flow, g.reason_code),
                (g.rejected, g.conflict, g.keys.into_iter().collect()),
            )
        })
        .collect();
    // A group lists at most 50 of its keys (which ones: see the attention test below).
    for (id, (_, _, keys)) in got.iter_mut() {
        if let Some((_, _, all)) = groups.get(id).filter(|g| g.2.len() > 50) {
            assert_eq!(keys.len(), 50, "keys listed for {id:?}");
            assert!(keys.is_subset(all), "keys of {id:?} belong to the group");
            *keys = all.clone();
        }
    }
    assert_eq!(got, groups, "attention groups");

    let today = Utc::now().date_naive();
    let mut flows: BTreeSet<String> = records.iter().map(|r| r.flow.clone()).collect();
    flows.insert(F21.to_owned());
    for flow in flows {
        let mut daily: BTreeMap<(NaiveDate, String), i64> = BTreeMap::new();
        for r in records.iter().filter(|r| r.flow == flow) {
            for e in l.audit(&r.flow, &r.key).await.unwrap() {
                *daily
                    .entry((e.at.date_naive(), e.to_state.as_str().to_owned()))
                    .or_default() += 1;
            }
        }
        let want: Vec<(NaiveDate, String, i64)> =
            daily.into_iter().map(|((d, s), n)| (d, s, n)).collect();
        let got = l.daily_outcomes(&flow, 3660, today).await.unwrap();
        assert_eq!(got, want, "daily outcomes of {flow}");
    }
    counts
}

fn count(counts: &BTreeMap<(String, String), i64>, flow: &str, state: &str) -> i64 {
    counts
        .get(&(flow.to_owned(), state.to_owned()))
        .copied()
        .unwrap_or(0)
}

async fn run_cause(l: &Ledger, flow: &str) -> Cause {
    Cause::Run(l.start_run(flow, "inst-a").await.unwrap())
}

async fn counters_follow_inserts_and_transitions(ctx: Ctx) {
    let l = ctx.ledger;
    let empty = assert_exact(&l).await;
    assert!(empty.is_empty());
    assert!(l.attention().await.unwrap().is_empty());

    let cause = run_cause(&l, F11).await;
    l.apply(
        &[
            RecordChange::new(F11, "k-1", RecordState::Pending),
            RecordChange::new(F11, "k-2", RecordState::Rejected).with_reason("unmapped_value", "m"),
            RecordChange::new(F11, "k-3", RecordState::Rejected).with_reason("unmapped_value", "m"),
            RecordChange::new(F11, "k-4", RecordState::Conflict),
            // The same key twice in one batch: one record, counted once, in its last state.
            RecordChange::new(F11, "k-5", RecordState::Pending),
            RecordChange::new(F11, "k-5", RecordState::Delivered),
            RecordChange::new(F12, "k-1", RecordState::Conflict).with_reason("ambiguous_case", "m"),
        ],
        None,
        &cause,
    )
    .await
    .unwrap();
    let c = assert_exact(&l).await;
    assert_eq!(count(&c, F11, "pending"), 1);
    assert_eq!(count(&c, F11, "rejected"), 2);
    assert_eq!(count(&c, F11, "delivered"), 1);
    assert_eq!(count(&c, F11, "conflict"), 1);
    assert_eq!(count(&c, F12, "conflict"), 1);

    // Transitions move one count to another; the total per flow stays the number of records.
    l.apply(
        &[
            RecordChange::new(F11, "k-1", RecordState::Delivered),
            RecordChange::new(F11, "k-2", RecordState::Confirmed),
            // Same state, other reason: moves between attention groups only.
            RecordChange::new(F11, "k-3", RecordState::Rejected).with_reason("missing_field", "m"),
            // Same state and reason again: nothing moves.
            RecordChange::new(F11, "k-4", RecordState::Conflict),
            RecordChange::new(F11, "k-5", RecordState::Confirmed),
            // A reason that goes away: the record joins the group without reason.
            RecordChange::new(F12, "k-1", RecordState::Conflict),
        ],
        None,
        &cause,
    )
    .await
    .unwrap();
    let c = assert_exact(&l).await;
    assert_eq!(count(&c, F11, "pending"), 0);
    assert!(
        !c.contains_key(&(F11.to_owned(), "pending".to_owned())),
        "states without records are absent"
    );
    assert_eq!(count(&c, F11, "delivered"), 1);
    assert_eq!(count(&c, F11, "confirmed"), 2);
    assert_eq!(count(&c, F11, "rejected"), 1);
    let total: i64 = c
        .iter()
        .filter(|((f, _), _)| f == F11)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(total, 5);
    let attention = l.attention().await.unwrap();
    assert!(attention
        .iter()
        .all(|g| g.reason_code.as_deref() != Some("unmapped_value")));
    let f12_unreasoned = attention
        .iter()
        .find(|g| g.flow == F12 && g.reason_code.is_none())
        .expect("F12 conflict without reason");
    assert_eq!(
        (f12_unreasoned.conflict, f12_unreasoned.keys.clone()),
        (1, vec!["k-1".to_owned()])
    );

    // A day's chart counts every audit event of the flow, transitions included.
    let today = Utc::now().date_naive();
    let daily = l.daily_outcomes(F11, 1, today).await.unwrap();
    let events: i64 = daily.iter().map(|(_, _, n)| n).sum();
    assert_eq!(events, 6 + 4, "6 creations (k-5 twice) and 4 changes");
}

async fn counters_ignore_refused_batches(ctx: Ctx) {
    let l = ctx.ledger;
    let cause = run_cause(&l, F11).await;
    l.apply(
        &[
            RecordChange::new(F11, "z-1", RecordState::Confirmed),
            RecordChange::new(F11, "k-2", RecordState::Rejected).with_reason("unmapped_value", "m"),
        ],
        None,
        &cause,
    )
    .await
    .unwrap();
    let before = assert_exact(&l).await;
    let chart_before = l
        .daily_outcomes(F11, 1, Utc::now().date_naive())
        .await
        .unwrap();

    // A batch whose last change (in key order, the order it is applied in) is refused
    // writes nothing, counters included.
    let refused = l
        .apply(
            &[
                RecordChange::new(F11, "k-2", RecordState::Pending),
                RecordChange::new(F11, "k-3", RecordState::Failed),
                RecordChange::new(F11, "z-1", RecordState::Pending),
            ],
            None,
            &cause,
        )
        .await;
    assert!(
        matches!(refused, Err(LedgerError::InvalidTransition { .. })),
        "{refused:?}"
    );
    let invalid = l
        .apply(
            &[
                RecordChange::new(F11, "k-4", RecordState::Pending),
                RecordChange::new(F11, "z-2\u{7}", RecordState::Pending),
            ],
            None,
            &cause,
        )
        .await;
    assert!(matches!(invalid, Err(LedgerError::Invalid { .. })));
    assert_eq!(assert_exact(&l).await, before);
    assert_eq!(
        l.daily_outcomes(F11, 1, Utc::now().date_naive())
            .await
            .unwrap(),
        chart_before
    );
}

async fn counters_follow_operator_retries(ctx: Ctx) {
    let l = ctx.ledger;
    let cause = run_cause(&l, F11).await;
    l.apply(
        &[
            RecordChange::new(F11, "k-1", RecordState::Rejected).with_reason("unmapped_value", "m"),
            RecordChange::new(F11, "k-2", RecordState::Rejected).with_reason("unmapped_value", "m"),
            RecordChange::new(F11, "k-3", RecordState::Conflict),
            RecordChange::new(F11, "k-4", RecordState::Failed).with_reason("transient", "m"),
            RecordChange::new(F11, "k-5", RecordState::Confirmed),
            RecordChange::new(F12, "k-1", RecordState::Rejected).with_reason("unmapped_value", "m"),
        ],
        None,
        &cause,
    )
    .await
    .unwrap();
    assert_exact(&l).await;

    let one = RetryTarget::Key {
        flow: Some(F11.into()),
        key: "k-1".into(),
    };
    assert_eq!(l.retry(one, "alice").await.unwrap(), 1);
    let c = assert_exact(&l).await;
    assert_eq!(count(&c, F11, "rejected"), 1);
    assert_eq!(count(&c, F11, "pending"), 1);

    // A whole attention group at once, across flows.
    let group = RetryTarget::Filter {
        flow: None,
        state: None,
        reason: Some("unmapped_value".into()),
    };
    assert_eq!(l.retry(group, "alice").await.unwrap(), 2);
    let c = assert_exact(&l).await;
    assert_eq!(count(&c, F11, "rejected"), 0);
    assert_eq!(count(&c, F11, "pending"), 2);
    assert_eq!(count(&c, F12, "pending"), 1);
    assert!(l
        .attention()
        .await
        .unwrap()
        .iter()
        .all(|g| g.reason_code.as_deref() != Some("unmapped_value")));

    // Retrying again finds nothing and moves nothing; confirmed records are never re-queued.
    let every = RetryTarget::Filter {
        flow: Some(F11.into()),
        state: None,
        reason: None,
    };
    assert_eq!(l.retry(every, "bob").await.unwrap(), 2, "k-3 and k-4");
    let c = assert_exact(&l).await;
    assert_eq!(count(&c, F11, "pending"), 4);
    assert_eq!(count(&c, F11, "confirmed"), 1);
    let again = RetryTarget::Filter {
        flow: Some(F11.into()),
        state: None,
        reason: None,
    };
    assert_eq!(l.retry(again, "bob").await.unwrap(), 0);
    assert_eq!(assert_exact(&l).await, c);

    // The flow processes the re-queued records: the operator_retry reason leaves with them.
    l.apply(
        &[
            RecordChange::new(F11, "k-1", RecordState::Delivered),
            RecordChange::new(F11, "k-2", RecordState::Rejected).with_reason("unmapped_value", "m"),
        ],
        None,
        &cause,
    )
    .await
    .unwrap();
    let c = assert_exact(&l).await;
    assert_eq!(count(&c, F11, "pending"), 2);
    assert_eq!(
        l.get(F11, "k-3")
            .await
            .unwrap()
            .unwrap()
            .reason_code
            .as_deref(),
        Some(OPERATOR_RETRY)
    );
}

async fn purge_keeps_record_counts_and_drops_purged_days(ctx: Ctx) {
    let l = ctx.ledger;
    let cause = run_cause(&l, F11).await;
    l.apply(
        &[
            RecordChange::new(F11, "k-1", RecordState::Pending),
            RecordChange::new(F11, "k-2", RecordState::Rejected).with_reason("unmapped_value", "m"),
            RecordChange::new(F12, "k-1", RecordState::Conflict),
        ],
        None,
        &cause,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cut = Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    l.apply(
        &[
            RecordChange::new(F11, "k-1", RecordState::Delivered),
            RecordChange::new(F11, "k-3", RecordState::Failed).with_reason("transient", "m"),
        ],
        None,
        &cause,
    )
    .await
    .unwrap();
    let before = assert_exact(&l).await;
    let attention_before = l.attention().await.unwrap();
    let today = Utc::now().date_naive();

    // Part of today's events go: the chart counts only the ones left, records stay counted.
    let report = l.purge(cut).await.unwrap();
    assert_eq!(report.audit_events, 3);
    assert_eq!(
        assert_exact(&l).await,
        before,
        "purge never changes record counts"
    );
    assert_eq!(l.attention().await.unwrap(), attention_before);
    let chart: i64 = l
        .daily_outcomes(F11, 1, today)
        .await
        .unwrap()
        .iter()
        .map(|(_, _, n)| n)
        .sum();
    assert_eq!(chart, 2);

    // Everything goes: no chart at all, still every record counted; new events count again.
    let report = l.purge(Utc::now() + TimeDelta::days(1)).await.unwrap();
    assert_eq!(report.audit_events, 2);
    assert!(l.daily_outcomes(F11, 30, today).await.unwrap().is_empty());
    assert!(l.daily_outcomes(F12, 30, today).await.unwrap().is_empty());
    assert_eq!(l.counts_by_state().await.unwrap(), before);
    assert_eq!(
        l.purge(Utc::now() + TimeDelta::days(1))
            .await
            .unwrap()
            .audit_events,
        0
    );
    l.apply(
        &[RecordChange::new(F11, "k-3", RecordState::Pending)],
        None,
        &cause,
    )
    .await
    .unwrap();
    assert_eq!(
        l.daily_outcomes(F11, 30, today).await.unwrap(),
        [(today, "pending".to_owned(), 1)]
    );
    assert_exact(&l).await;
}

/// Several runs and operators writing the same flows at once (overlapping keys, changes in
/// every order): no deadlock, no lost counter update.
async fn counters_stay_exact_under_concurrent_writers(ctx: Ctx) {
    let l = ctx.ledger;
    let states = [
        RecordState::Pending,
        RecordState::Delivered,
        RecordState::Rejected,
        RecordState::Conflict,
        RecordState::Failed,
    ];
    let reasons = [None, Some("unmapped_value"), Some("missing_field")];
    let mut tasks = Vec::new();
    for writer in 0..4usize {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            let cause = Cause::Run(l.start_run(F21, &format!("inst-{writer}")).await.unwrap());
            for round in 0..8usize {
                let changes: Vec<RecordChange> = (0..12usize)
                    .map(|i| {
                        let pick = writer * 7 + round * 3 + i;
                        let mut c = RecordChange::new(
                            [F21, F11][i % 2],
                            format!("k-{}", (i * 5 + writer + round) % 16),
                            states[pick % states.len()],
                        );
                        if let Some(reason) = reasons[pick % reasons.len()] {
                            c = c.with_reason(reason, "m");
                        }
                        c
                    })
                    .collect();
                l.apply(&changes, None, &cause).await.unwrap();
            }
        }));
    }
    for operator in ["alice", "bob"] {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            for key in 0..16 {
                let target = RetryTarget::Key {
                    flow: Some(F21.into()),
                    key: format!("k-{key}"),
                };
                l.retry(target, operator).await.unwrap();
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("writers finish (no deadlock)")
            .unwrap();
    }
    let c = assert_exact(&l).await;
    let total: i64 = c.values().sum();
    assert_eq!(total, 32, "16 keys in each of two flows");
}

/// Each group lists its 50 most recently changed keys, newest first, however many groups
/// there are (their keys are read many groups per statement).
async fn attention_lists_the_newest_keys_of_every_group(ctx: Ctx) {
    let l = ctx.ledger;
    let cause = run_cause(&l, F11).await;
    for i in 0..60 {
        let state = [RecordState::Rejected, RecordState::Conflict][i % 2];
        l.apply(
            &[RecordChange::new(F11, format!("big-{i:02}"), state).with_reason("big", "m")],
            None,
            &cause,
        )
        .await
        .unwrap();
    }
    let small: Vec<RecordChange> = (0..230)
        .map(|i| {
            RecordChange::new(F12, format!("small-{i:03}"), RecordState::Rejected)
                .with_reason(format!("reason-{:03}", i / 2), "m")
        })
        .chain([RecordChange::new(F12, "plain", RecordState::Conflict)])
        .collect();
    l.apply(&small, None, &cause).await.unwrap();

    let attention = l.attention().await.unwrap();
    assert_eq!(attention.len(), 1 + 115 + 1);
    let big = &attention[0];
    assert_eq!(
        (big.flow.as_str(), big.reason_code.as_deref()),
        (F11, Some("big"))
    );
    assert_eq!((big.rejected, big.conflict), (30, 30));
    let newest: Vec<String> = (10..60).rev().map(|i| format!("big-{i:02}")).collect();
    assert_eq!(big.keys, newest);
    for g in &attention[1..] {
        let mut keys = g.keys.clone();
        keys.sort();
        let want: Vec<String> = match g.reason_code.as_deref() {
            None => vec!["plain".to_owned()],
            Some(reason) => {
                let n: usize = reason["reason-".len()..].parse().unwrap();
                vec![
                    format!("small-{:03}", 2 * n),
                    format!("small-{:03}", 2 * n + 1),
                ]
            }
        };
        assert_eq!(keys, want, "group {:?}", g.reason_code);
    }
    assert_exact(&l).await;
}

// ---------------------------------------------------------------------------------------
// The counters migration on a ledger written before it existed.

/// A migrator holding only the first migration of `backend` (what deployed ledgers ran).
async fn first_migration_only(backend: &str) -> (tempfile::TempDir, sqlx::migrate::Migrator) {
    let dir = tempfile::tempdir().unwrap();
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend)
        .join("0001_ledger.sql");
    std::fs::copy(&from, dir.path().join("0001_ledger.sql")).unwrap();
    let migrator = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    (dir, migrator)
}

/// Rows as the ledger wrote them before the counters: records in several states and reasons,
/// and audit events over two days (timestamps in the form both backends read).
const OLD_LEDGER_ROWS: &str = "
INSERT INTO records (flow, key, state, reason_code, created_at, updated_at) VALUES
 ('referrals-to-primero', 'o-1', 'confirmed', NULL, '2026-01-10T08:00:00.000000+00:00', '2026-01-11T08:00:00.000000+00:00'),
 ('referrals-to-primero', 'o-2', 'rejected', 'unmapped_value', '2026-01-10T09:00:00.000000+00:00', '2026-01-10T09:00:00.000000+00:00'),
 ('referrals-to-primero', 'o-3', 'rejected', 'unmapped_value', '2026-01-10T23:59:59.999999+00:00', '2026-01-10T23:59:59.999999+00:00'),
 ('referrals-to-primero', 'o-4', 'conflict', NULL, '2026-01-11T00:00:00.000000+00:00', '2026-01-11T00:00:00.000000+00:00'),
 ('decisions-to-progres', 'o-1', 'failed', 'transient', '2026-01-11T10:00:00.000000+00:00', '2026-01-11T10:00:00.000000+00:00');
INSERT INTO audit_events (at, flow, record_key, from_state, to_state, reason_code, cause) VALUES
 ('2026-01-10T08:00:00.000000+00:00', 'referrals-to-primero', 'o-1', NULL, 'delivered', NULL, 'run:r1'),
 ('2026-01-11T08:00:00.000000+00:00', 'referrals-to-primero', 'o-1', 'delivered', 'confirmed', NULL, 'run:r2'),
 ('2026-01-10T09:00:00.000000+00:00', 'referrals-to-primero', 'o-2', NULL, 'rejected', 'unmapped_value', 'run:r1'),
 ('2026-01-10T23:59:59.999999+00:00', 'referrals-to-primero', 'o-3', NULL, 'rejected', 'unmapped_value', 'run:r1'),
 ('2026-01-11T00:00:00.000000+00:00', 'referrals-to-primero', 'o-4', NULL, 'conflict', NULL, 'run:r2'),
 ('2026-01-11T10:00:00.000000+00:00', 'decisions-to-progres', 'o-1', NULL, 'failed', 'transient', 'run:r3');
";

/// What the migrated ledger must report for [`OLD_LEDGER_ROWS`], then keep exact on write.
async fn check_backfilled(l: &Ledger) {
    let counts = l.counts_by_state().await.unwrap();
    let want: BTreeMap<(String, String), i64> = [
        ((F11, "confirmed"), 1),
        ((F11, "rejected"), 2),
        ((F11, "conflict"), 1),
        ((F12, "failed"), 1),
    ]
    .into_iter()
    .map(|((f, s), n)| ((f.to_owned(), s.to_owned()), n))
    .collect();
    assert_eq!(counts, want);
    let attention = l.attention().await.unwrap();
    assert_eq!(attention.len(), 2, "{attention:?}");
    assert_eq!(
        (
            attention[0].reason_code.as_deref(),
            attention[0].rejected,
            attention[0].keys.clone()
        ),
        (Some("unmapped_value"), 2, vec!["o-3".into(), "o-2".into()]),
        "most recently changed first"
    );
    assert_eq!(
        (attention[1].reason_code.as_deref(), attention[1].conflict),
        (None, 1)
    );
    let d10 = NaiveDate::from_ymd_opt(2026, 1, 10).unwrap();
    let d11 = NaiveDate::from_ymd_opt(2026, 1, 11).unwrap();
    assert_eq!(
        l.daily_outcomes(F11, 7, d11).await.unwrap(),
        [
            (d10, "delivered".to_owned(), 1),
            (d10, "rejected".to_owned(), 2),
            (d11, "confirmed".to_owned(), 1),
            (d11, "conflict".to_owned(), 1),
        ]
    );
    assert_eq!(
        l.daily_outcomes(F12, 1, d11).await.unwrap(),
        [(d11, "failed".to_owned(), 1)]
    );

    // Writes after the migration build on the backfilled counters.
    let cause = run_cause(l, F11).await;
    l.apply(
        &[
            RecordChange::new(F11, "o-2", RecordState::Delivered),
            RecordChange::new(F11, "o-5", RecordState::Pending),
        ],
        None,
        &cause,
    )
    .await
    .unwrap();
    assert_eq!(
        l.retry(
            RetryTarget::Key {
                flow: Some(F11.into()),
                key: "o-4".into()
            },
            "alice"
        )
        .await
        .unwrap(),
        1
    );
    let counts = assert_exact(l).await;
    assert_eq!(count(&counts, F11, "rejected"), 1);
    assert_eq!(count(&counts, F11, "pending"), 2);
    assert_eq!(count(&counts, F11, "conflict"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_backfills_counters_of_an_existing_sqlite_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let (_src, old) = first_migration_only("sqlite").await;
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            url.parse::<sqlx::sqlite::SqliteConnectOptions>()
                .unwrap()
                .create_if_missing(true),
        )
        .await
        .unwrap();
    old.run(&pool).await.unwrap();
    sqlx::raw_sql(OLD_LEDGER_ROWS).execute(&pool).await.unwrap();
    pool.close().await;

    let l = Ledger::connect(&url).await.unwrap();
    check_backfilled(&l).await;
    l.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_backfills_counters_of_an_existing_postgres_ledger() {
    let Some(schema) = common::PgSchema::create("migration", "backfill").await else {
        return;
    };
    let url = schema.url.clone();
    let outcome = tokio::spawn(async move {
        let (_src, old) = first_migration_only("postgres").await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        old.run(&pool).await.unwrap();
        sqlx::raw_sql(OLD_LEDGER_ROWS).execute(&pool).await.unwrap();
        pool.close().await;
        let l = Ledger::connect(&url).await.unwrap();
        check_backfilled(&l).await;
        l.close().await;
    })
    .await;
    schema.drop_then(outcome.map_err(|e| e.into_panic())).await;
}
