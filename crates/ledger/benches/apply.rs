//! Criterion benchmark of [`Ledger::apply`] on SQLite in a temporary directory, shaped like
//! flow 1.2's commits: 1,000 new records in one transaction (composite keys, a destination
//! id, a PING transaction id, a payload hash and a decision: five identifiers each), then the
//! same 1,000 records updated in one transaction (a state change, so each gets an audit
//! event). Every sample starts from an empty ledger. Run with
//! `cargo bench -p pp-ledger --bench apply`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use pp_ledger::{Cause, Ledger, RecordChange, RecordState};
use tokio::runtime::Runtime;

const FLOW: &str = "decisions-to-progres";
const RECORDS: usize = 1_000;
const HASH: &str = "00112233445566778899aabbccddeeff";

fn changes(state: RecordState, round: usize) -> Vec<RecordChange> {
    (0..RECORDS)
        .map(|i| {
            let key = format!("case-{i:06}|svc-{i:06}|approved");
            RecordChange::new(FLOW, key, state)
                .with_dest_id("case_id", format!("803-{i:08}"))
                .with_ping_transaction_id(format!("tx-{round}-{i}"))
                .with_payload_hash(HASH)
                .with_decision("approved")
                .with_attempt()
        })
        .collect()
}

/// A fresh ledger in its own temporary directory (kept alive by the returned guard).
async fn fresh() -> (tempfile::TempDir, Ledger, Cause) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let ledger = Ledger::connect(&url).await.expect("open ledger");
    let run = ledger.start_run(FLOW, "bench").await.expect("run");
    (dir, ledger, Cause::Run(run))
}

fn bench_apply(c: &mut Criterion) {
    let rt = Runtime::new().expect("tokio runtime");
    let created = changes(RecordState::Delivered, 0);
    let updated = changes(RecordState::Confirmed, 1);
    let mut group = c.benchmark_group("ledger_apply_sqlite");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("1000_new_records", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (_dir, ledger, cause) = fresh().await;
                    let started = Instant::now();
                    ledger.apply(&created, None, &cause).await.expect("apply");
                    total += started.elapsed();
                    ledger.close().await;
                }
                total
            })
        })
    });
    group.bench_function("1000_updates", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (_dir, ledger, cause) = fresh().await;
                    ledger.apply(&created, None, &cause).await.expect("seed");
                    let started = Instant::now();
                    ledger.apply(&updated, None, &cause).await.expect("apply");
                    total += started.elapsed();
                    ledger.close().await;
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);
