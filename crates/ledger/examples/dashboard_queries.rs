//! Times the ledger queries behind the operator dashboard on either backend:
//! `cargo run --release -p pp-ledger --example dashboard_queries -- <ledger-url> [N]`.
//! An empty ledger is first filled with N synthetic records (default 100,000; identifiers
//! and codes only, the same mix as the web crate's page benchmark: 1 in 20 rejected, in
//! conflict, failed and delivered each, the rest confirmed, over four flows). Each query runs
//! seven times; the median is printed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pp_ledger::{Cause, ErrorClass, Ledger, RecordChange, RecordFilter, RecordState, RunOutcome};

const FLOWS: [&str; 4] = [
    "referrals-to-primero",
    "decisions-to-progres",
    "referrals-to-progres",
    "decisions-to-primero",
];

const REASONS: [&str; 6] = [
    "missing_required_fields",
    "unmapped_intervention_type",
    "unmapped_language",
    "unknown_status",
    "validation_error",
    "duplicate_cases",
];

async fn seed(ledger: &Ledger, records: usize) -> Result<(), Box<dyn std::error::Error>> {
    const BATCH: usize = 1000;
    let mut done = 0;
    while done < records {
        let flow = FLOWS[(done / BATCH) % FLOWS.len()];
        let n = BATCH.min(records - done);
        let run = ledger.start_run(flow, "bench").await?;
        let changes: Vec<RecordChange> = (done..done + n)
            .map(|i| {
                let key = format!("bench-{i:08}");
                match i % 20 {
                    0 => RecordChange::new(flow, key, RecordState::Rejected)
                        .with_reason(REASONS[(i / 20) % REASONS.len()], "field progres_sex")
                        .with_error_class(ErrorClass::Validation),
                    1 => RecordChange::new(flow, key, RecordState::Conflict)
                        .with_reason("duplicate_cases", "candidates 2")
                        .with_error_class(ErrorClass::Conflict),
                    2 => RecordChange::new(flow, key, RecordState::Failed)
                        .with_reason("transient", "primero 503")
                        .with_error_class(ErrorClass::Transient),
                    3 => RecordChange::new(flow, key, RecordState::Delivered),
                    _ => RecordChange::new(flow, key, RecordState::Confirmed),
                }
                .with_dest_id("case_id", format!("case-{i}"))
                .with_attempt()
            })
            .collect();
        ledger
            .apply(&changes, None, &Cause::Run(run.clone()))
            .await?;
        ledger
            .finish_run(&run, RunOutcome::Completed, &BTreeMap::new(), None)
            .await?;
        done += n;
    }
    Ok(())
}

async fn median<T, E, F, Fut>(name: &str, f: F) -> Result<(), Box<dyn std::error::Error>>
where
    E: std::error::Error + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        f().await?;
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "{:>9.2} ms  {name}",
        times[times.len() / 2].as_secs_f64() * 1000.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: dashboard_queries <ledger-url> [records]")?;
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let ledger = Ledger::connect(&url).await?;
    if ledger.counts_by_state().await?.is_empty() {
        let started = Instant::now();
        seed(&ledger, n).await?;
        println!(
            "seeded {n} records in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let today = chrono::Utc::now().date_naive();
    median("counts_by_state", || ledger.counts_by_state()).await?;
    median("daily_outcomes (30 days, one flow)", || {
        ledger.daily_outcomes(FLOWS[0], 30, today)
    })
    .await?;
    median("attention", || ledger.attention()).await?;
    let rejected = RecordFilter {
        states: vec![RecordState::Rejected],
        limit: 51,
        offset: 100,
        ..RecordFilter::default()
    };
    median("list_records (rejected, offset 100)", || {
        ledger.list_records(&rejected)
    })
    .await?;
    let flow_state = RecordFilter {
        flow: Some(FLOWS[1].into()),
        states: vec![RecordState::Conflict],
        limit: 51,
        ..RecordFilter::default()
    };
    median("list_records (one flow, conflict)", || {
        ledger.list_records(&flow_state)
    })
    .await?;
    let first_page = RecordFilter {
        limit: 51,
        ..RecordFilter::default()
    };
    median("list_records (all, first page)", || {
        ledger.list_records(&first_page)
    })
    .await?;
    ledger.close().await;
    Ok(())
}
