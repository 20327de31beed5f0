//! `/readyz` and `/metrics` over HTTP: readiness follows the ledger and authentication
//! failures of runs, and the metrics text carries the daemon's metric names after the HTTP
//! clients' observer and the flows report.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use pp_ledger::RunOutcome;

#[tokio::test]
async fn readyz_is_503_when_a_run_failed_on_auth() {
    let s = start().await;
    let c = client();
    let res = c.get(format!("{}/readyz", s.base)).send().await.unwrap();
    assert_eq!(res.status(), 200);

    let run = s.ledger.start_run(FLOWS[1], "test").await.unwrap();
    s.ledger
        .finish_run(
            &run,
            RunOutcome::Failed,
            &BTreeMap::new(),
            Some("auth: primero refused the credentials twice"),
        )
        .await
        .unwrap();
    let res = c.get(format!("{}/readyz", s.base)).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body = res.text().await.unwrap();
    assert_eq!(
        body,
        "flow decisions-to-progres: last run failed on authentication\n"
    );

    // A later successful run of that flow makes it ready again.
    let run = s.ledger.start_run(FLOWS[1], "test").await.unwrap();
    s.ledger
        .finish_run(&run, RunOutcome::Completed, &BTreeMap::new(), None)
        .await
        .unwrap();
    assert_eq!(
        c.get(format!("{}/readyz", s.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A run failing for another reason does not make the port unready.
    let run = s.ledger.start_run(FLOWS[0], "test").await.unwrap();
    s.ledger
        .finish_run(
            &run,
            RunOutcome::Failed,
            &BTreeMap::new(),
            Some("ping: 503"),
        )
        .await
        .unwrap();
    assert_eq!(
        c.get(format!("{}/readyz", s.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The daemon can report a problem directly too.
    s.state.readiness.auth_failed(FLOWS[2], "ping");
    let res = c.get(format!("{}/readyz", s.base)).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.text().await.unwrap(),
        "referrals-to-progres: last run failed on authentication with ping\n"
    );
    s.state.readiness.clear(FLOWS[2]);
    assert_eq!(
        c.get(format!("{}/readyz", s.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn readyz_is_503_when_the_ledger_is_gone() {
    let s = start().await;
    s.ledger.close().await;
    let res = client()
        .get(format!("{}/readyz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert!(res.text().await.unwrap().starts_with("ledger: "));
}

#[tokio::test]
async fn metrics_text_carries_the_metric_names() {
    let s = start().await;
    seed(&s.ledger).await;
    let m = s.state.metrics.clone();
    // The clients report through the process-wide observer.
    pp_http::set_observer(Arc::new(m.clone()));
    pp_http::record_request(
        "primero",
        "GET",
        "/api/v2/cases",
        Some(200),
        Duration::from_millis(12),
        None,
    );
    pp_http::observer().on_retry("ping");
    m.run_finished(
        FLOWS[0],
        "completed",
        &BTreeMap::from([("delivered".to_string(), 2)]),
    );
    m.record_outcome(FLOWS[0], "unmapped_language", 1);

    let res = client()
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = res.text().await.unwrap();
    for name in [
        "ping_primero_runs_total{flow=\"referrals-to-primero\",outcome=\"completed\"} 1",
        "ping_primero_records_total{flow=\"referrals-to-primero\",outcome=\"delivered\"} 2",
        "ping_primero_records_total{flow=\"referrals-to-primero\",outcome=\"unmapped_language\"} 1",
        "ping_primero_api_requests_total{status=\"200\",system=\"primero\"} 1",
        "ping_primero_api_request_duration_seconds_count{system=\"primero\"} 1",
        "ping_primero_api_retries_total{system=\"ping\"} 1",
        "ping_primero_last_successful_run_timestamp_seconds{flow=\"referrals-to-primero\"}",
        // Refreshed from the seeded ledger at scrape time.
        "ping_primero_records_waiting{flow=\"referrals-to-primero\",state=\"rejected\"} 1",
        "ping_primero_records_waiting{flow=\"decisions-to-primero\",state=\"failed\"} 1",
    ] {
        assert!(text.contains(name), "metrics lack {name}:\n{text}");
    }
    // Label values are codes, never keys or messages.
    assert!(!text.contains(REJECTED_KEY));
    assert!(!text.contains("lang_xx"));
}
