//! Times the dashboard's pages, and the ledger queries behind them, over a SQLite ledger
//! seeded with N synthetic records (default 100,000):
//! `cargo run --release -p pp-web --example bench_pages -- [N] [path.db]`.
//! With a path, an existing file is reused as it is (no seeding).

use std::time::Instant;

use pp_ledger::{Ledger, RecordFilter, RecordState};

async fn timed<T, E: std::fmt::Display>(
    name: &str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    let v = f.await.map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    println!(
        "{:>9.2} ms  ledger {name}",
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(v)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    let path = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("bench.db"));
    let existed = path.exists();
    let ledger = Ledger::connect(&format!("sqlite://{}", path.display())).await?;
    if !existed {
        let started = Instant::now();
        pp_web::seed_for_bench(&ledger, n).await?;
        println!(
            "seeded {n} records in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    let today = chrono::Utc::now().date_naive();
    timed("last_runs", ledger.last_runs()).await?;
    timed("counts_by_state", ledger.counts_by_state()).await?;
    timed(
        "daily_outcomes",
        ledger.daily_outcomes("referrals-to-primero", 30, today),
    )
    .await?;
    timed("attention", ledger.attention()).await?;
    timed(
        "list_records(state=rejected, offset 100)",
        ledger.list_records(&RecordFilter {
            states: vec![RecordState::Rejected],
            limit: 51,
            offset: 100,
            ..RecordFilter::default()
        }),
    )
    .await?;
    for (page, took) in pp_web::bench_pages(ledger).await? {
        println!("{:>9.2} ms  page {page}", took.as_secs_f64() * 1000.0);
    }
    Ok(())
}
