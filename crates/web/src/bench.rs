//! Timing of the dashboard's pages against a large ledger, for the binary's `bench` command:
//! [`seed_for_bench`] fills a throwaway ledger with synthetic records (identifiers and codes
//! only), [`bench_pages`] renders each page through the router in-process and reports the
//! median time of a few renders.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use pp_ledger::{
    Cause, ErrorClass, Ledger, RecordChange, RecordFilter, RecordState, RunFilter, RunOutcome,
};
use secrecy::SecretString;
use tower::ServiceExt;

use crate::html::enc;
use crate::{router, AuthConfig, FlowInfo, Metrics, WebState};

/// The four flows of flows.md.
pub const FLOWS: [&str; 4] = [
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

/// Adds `records` synthetic records spread over the four flows (one run per 1000 records,
/// mostly confirmed, some rejected, in conflict or failed), with their audit events.
pub async fn seed_for_bench(ledger: &Ledger, records: usize) -> anyhow::Result<()> {
    const BATCH: usize = 1000;
    let mut done = 0usize;
    let mut batch_no = 0usize;
    while done < records {
        let flow = FLOWS[batch_no % FLOWS.len()];
        let n = BATCH.min(records - done);
        let run = ledger.start_run(flow, "bench").await?;
        let mut changes = Vec::with_capacity(n);
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for i in done..done + n {
            let key = format!(
                "bench-{i:08}-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
            let c = match i % 20 {
                0 => RecordChange::new(flow, &key, RecordState::Rejected)
                    .with_reason(REASONS[(i / 20) % REASONS.len()], "field progres_sex")
                    .with_error_class(ErrorClass::Validation),
                1 => RecordChange::new(flow, &key, RecordState::Conflict)
                    .with_reason("duplicate_cases", "candidates 2")
                    .with_error_class(ErrorClass::Conflict),
                2 => RecordChange::new(flow, &key, RecordState::Failed)
                    .with_reason("transient", "primero 503")
                    .with_error_class(ErrorClass::Transient),
                3 => RecordChange::new(flow, &key, RecordState::Delivered),
                _ => RecordChange::new(flow, &key, RecordState::Confirmed),
            }
            .with_dest_id("case_id", format!("case-{i}"))
            .with_ping_transaction_id(format!("tx-{}", i / 100))
            .with_attempt();
            *counts.entry(c.state.as_str().to_string()).or_default() += 1;
            changes.push(c);
        }
        ledger
            .apply(&changes, None, &Cause::Run(run.clone()))
            .await?;
        counts.insert("fetched".into(), n as i64);
        ledger
            .finish_run(&run, RunOutcome::Completed, &counts, None)
            .await?;
        done += n;
        batch_no += 1;
    }
    Ok(())
}

/// Renders each dashboard page over `ledger` (with the API token) five times and returns
/// the median time per page: overview, runs, one run, records, a search, one record and
/// needs attention. Fails if a page does not answer 200.
pub async fn bench_pages(ledger: Ledger) -> anyhow::Result<Vec<(String, Duration)>> {
    let token = crate::auth::random_token();
    let state = WebState::new(
        ledger.clone(),
        Metrics::new(),
        AuthConfig {
            api_token: Some(SecretString::from(token.clone())),
            ..AuthConfig::default()
        },
    )
    .with_flows(
        FLOWS
            .iter()
            .map(|f| FlowInfo {
                name: f.to_string(),
                schedule: "0 * * * *".into(),
                next_run: None,
                enabled: true,
            })
            .collect(),
    );
    let app = router(state);

    let mut pages: Vec<String> = vec!["/".into(), "/runs".into()];
    let runs = ledger
        .list_runs(&RunFilter {
            limit: 1,
            ..RunFilter::default()
        })
        .await?;
    if let Some(r) = runs.first() {
        pages.push(format!("/runs/{}", enc(&r.id)));
    }
    pages.push("/records".into());
    let sample = ledger
        .list_records(&RecordFilter {
            states: vec![RecordState::Rejected],
            limit: 1,
            ..RecordFilter::default()
        })
        .await?;
    if let Some(r) = sample.first() {
        pages.push(format!("/records?q={}", enc(&r.key)));
        pages.push(format!("/records/{}/{}", enc(&r.flow), enc(&r.key)));
    }
    pages.push("/records?state=rejected&page=3".into());
    pages.push("/attention".into());

    let mut out = Vec::new();
    for path in pages {
        let mut times = Vec::new();
        for _ in 0..5 {
            let req = Request::get(&path)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .context("building a request")?;
            let started = Instant::now();
            let res = app.clone().oneshot(req).await.context("rendering a page")?;
            let status = res.status();
            axum::body::to_bytes(res.into_body(), 16 * 1024 * 1024)
                .await
                .context("reading a page")?;
            times.push(started.elapsed());
            if status != StatusCode::OK {
                bail!("page {path} answered {status}");
            }
        }
        times.sort();
        out.push((path, times[times.len() / 2]));
    }
    Ok(out)
}
