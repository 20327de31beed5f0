//! The read-ahead case listing (`PrimeroClient::case_pages`) against the Primero simulator
//! over real HTTP: the next page is requested while the caller still holds the current one
//! (and only that one page ahead), every case is handed over once, the query (filters and
//! `fields`) goes with every page, and errors end the listing.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use pp_http::{HttpSettings, RetryPolicy};
use pp_primero::{AuthMode, CaseQuery, PrimeroClient, PrimeroError, PrimeroSettings};
use pp_sim_primero::scenario::{generate, ScenarioOptions};
use pp_sim_primero::{Options, SimHandle, DEFAULT_PASSWORD};
use secrecy::SecretString;
use serde_json::{json, Value};

async fn sim() -> SimHandle {
    pp_sim_primero::spawn(Options::default(), 0)
        .await
        .expect("simulator starts")
}

fn client(sim: &SimHandle, max_attempts: u32) -> PrimeroClient {
    PrimeroClient::new(PrimeroSettings {
        base_url: url::Url::parse(&sim.base_url()).unwrap(),
        username: "openfn_integration".into(),
        password: SecretString::from(DEFAULT_PASSWORD.to_string()),
        auth: AuthMode::Basic,
        http: HttpSettings {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            max_concurrency: 4,
            retry: RetryPolicy {
                max_attempts,
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(100),
                max_elapsed: Duration::from_secs(10),
            },
        },
    })
    .unwrap()
}

async fn control(
    sim: &SimHandle,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut req = reqwest::Client::new().request(method, format!("{}{}", sim.base_url(), path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("control call");
    assert!(
        resp.status().is_success(),
        "control {path}: {}",
        resp.status()
    );
    resp.json().await.expect("control JSON")
}

/// Replaces the simulator's fault rules with `rules` (`{"rules": [...]}`).
async fn set_faults(sim: &SimHandle, rules: Value) {
    control(sim, reqwest::Method::POST, "/_sim/faults", Some(rules)).await;
}

/// The decoded query parameters of every case listing request so far, in order.
async fn listings(sim: &SimHandle) -> Vec<Vec<(String, String)>> {
    let log = control(
        sim,
        reqwest::Method::GET,
        "/_sim/requests?endpoint=cases_list",
        None,
    )
    .await;
    log.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let q = e["query"].as_str().unwrap_or("");
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .collect()
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The page numbers requested so far.
async fn pages_requested(sim: &SimHandle) -> Vec<String> {
    listings(sim)
        .await
        .iter()
        .map(|q| param(q, "page").unwrap_or("").to_owned())
        .collect()
}

/// Waits (up to 5 s) until `page` has been requested; the pages requested by then.
async fn wait_for_request_of(sim: &SimHandle, page: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pages = pages_requested(sim).await;
        if pages.iter().any(|p| p == page) || Instant::now() > deadline {
            return pages;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn scenario(count: usize) -> Value {
    generate(&ScenarioOptions {
        count,
        seed: 11,
        with_referrals: false,
        ..ScenarioOptions::default()
    })
}

#[tokio::test]
async fn the_next_page_is_requested_while_the_caller_holds_the_current_one() {
    let sim = sim().await;
    sim.seed(scenario(2500)).await.unwrap();
    let c = client(&sim, 3);
    let mut pages = c.case_pages(&CaseQuery::default()).unwrap();
    let mut ids: HashSet<String> = HashSet::new();

    let first = pages.next_page().await.unwrap().expect("page 1");
    assert_eq!(first.len(), 1000);
    ids.extend(first.into_iter().map(|c| c.id));
    // The caller has not asked for more, yet page 2 is on its way.
    assert_eq!(
        wait_for_request_of(&sim, "2").await,
        vec!["1", "2"],
        "page 2 requested while page 1 is being worked on"
    );
    // One page ahead only (memory stays bounded by two pages).
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(pages_requested(&sim).await, vec!["1", "2"]);

    let second = pages.next_page().await.unwrap().expect("page 2");
    assert_eq!(second.len(), 1000);
    ids.extend(second.into_iter().map(|c| c.id));
    assert_eq!(wait_for_request_of(&sim, "3").await, vec!["1", "2", "3"]);
    let third = pages.next_page().await.unwrap().expect("page 3");
    assert_eq!(third.len(), 500);
    ids.extend(third.into_iter().map(|c| c.id));
    assert!(pages.next_page().await.unwrap().is_none());
    assert!(
        pages.next_page().await.unwrap().is_none(),
        "ended stays ended"
    );

    assert_eq!(ids.len(), 2500, "every case once");
    let stats = pages.stats();
    assert_eq!((stats.pages, stats.cases, stats.duplicates), (3, 2500, 0));
    assert_eq!(
        pages_requested(&sim).await,
        vec!["1", "2", "3"],
        "no page past the end"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_query_and_fields_go_with_every_page_of_a_clamped_listing() {
    let sim = sim().await;
    control(
        &sim,
        reqwest::Method::POST,
        "/_sim/options",
        Some(json!({"per_clamp": 400})),
    )
    .await;
    sim.seed(scenario(1000)).await.unwrap();
    let c = client(&sim, 3);
    let from = "2000-01-01T00:00:00Z".parse().unwrap();
    let query = CaseQuery::updated_since(from).with_fields(["case_id", "services_section"]);
    let mut pages = c.case_pages(&query).unwrap();
    let mut seen = 0;
    while let Some(page) = pages.next_page().await.unwrap() {
        for case in page {
            seen += 1;
            let mut keys: Vec<&str> = case.data.keys().map(String::as_str).collect();
            keys.retain(|k| {
                ![
                    "id",
                    "enabled",
                    "last_updated_at",
                    "case_id",
                    "services_section",
                ]
                .contains(k)
            });
            assert!(keys.is_empty(), "fields not asked for: {keys:?}");
            assert!(case.case_id.is_some() && case.last_updated_at.is_some());
        }
    }
    assert_eq!(seen, 1000);
    let log = listings(&sim).await;
    assert_eq!(log.len(), 3, "1,000 cases at 400 per page");
    for (i, q) in log.iter().enumerate() {
        assert_eq!(param(q, "page"), Some((i + 1).to_string().as_str()));
        assert_eq!(param(q, "fields"), Some("case_id,services_section"));
        assert_eq!(param(q, "last_updated_at"), Some("2000-01-01T00:00:00Z.."));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn errors_end_the_listing_and_bad_queries_send_nothing() {
    let sim = sim().await;
    sim.seed(scenario(10)).await.unwrap();
    let c = client(&sim, 1);
    let bad = CaseQuery::exact("unhcr_individual_no", " ");
    assert!(matches!(
        c.case_pages(&bad).unwrap_err(),
        PrimeroError::InvalidRequest { .. }
    ));
    assert!(pages_requested(&sim).await.is_empty(), "nothing sent");

    set_faults(
        &sim,
        json!({"rules": [{"endpoint": "cases_list", "kind": "status", "status": 500}]}),
    )
    .await;
    let mut pages = c.case_pages(&CaseQuery::default()).unwrap();
    let e = pages.next_page().await.unwrap_err();
    assert!(matches!(e, PrimeroError::Transient { .. }), "{e}");
    // The listing stays failed: a later call is an error, never a clean end.
    assert!(pages.next_page().await.is_err(), "the listing failed");
    assert_eq!(pages_requested(&sim).await.len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_page_call_dropped_while_waiting_leaves_the_page_to_the_next_call() {
    let sim = sim().await;
    sim.seed(scenario(250)).await.unwrap();
    set_faults(
        &sim,
        json!({"rules": [{"endpoint": "cases_list", "kind": "latency", "ms": 300}]}),
    )
    .await;
    let c = client(&sim, 1);
    let mut pages = c
        .case_pages_ahead(&CaseQuery::default().with_page_size(100), 2)
        .unwrap();
    // Given up on before page 1 arrives (a select! elsewhere, say).
    let early = tokio::time::timeout(Duration::from_millis(50), pages.next_page()).await;
    assert!(early.is_err(), "page 1 was not there yet");
    let mut sizes = Vec::new();
    let mut ids: HashSet<String> = HashSet::new();
    while let Some(page) = pages.next_page().await.unwrap() {
        sizes.push(page.len());
        ids.extend(page.into_iter().map(|c| c.id));
    }
    assert_eq!(sizes, [100, 100, 50], "page 1 was not skipped");
    assert_eq!(ids.len(), 250);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_smaller_page_size_is_asked_for_and_every_case_still_comes_once() {
    let sim = sim().await;
    sim.seed(scenario(1050)).await.unwrap();
    let c = client(&sim, 3);
    let query = CaseQuery::default().with_page_size(400);

    let mut pages = c.case_pages(&query).unwrap();
    let mut sizes = Vec::new();
    let mut ids: HashSet<String> = HashSet::new();
    while let Some(page) = pages.next_page().await.unwrap() {
        sizes.push(page.len());
        ids.extend(page.into_iter().map(|c| c.id));
    }
    assert_eq!(sizes, [400, 400, 250]);
    assert_eq!(ids.len(), 1050);
    let asked: Vec<(String, String)> = listings(&sim)
        .await
        .iter()
        .map(|q| {
            (
                param(q, "page").unwrap_or("").to_owned(),
                param(q, "per").unwrap_or("").to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = ["1", "2", "3"]
        .iter()
        .map(|p| (p.to_string(), "400".to_string()))
        .collect();
    assert_eq!(asked, want);

    // The page-by-page listing asks for the same size.
    control(&sim, reqwest::Method::DELETE, "/_sim/requests", None).await;
    let all = c.list_cases(&query).await.unwrap();
    assert_eq!(all.len(), 1050);
    let pers: Vec<String> = listings(&sim)
        .await
        .iter()
        .map(|q| param(q, "per").unwrap_or("").to_owned())
        .collect();
    assert_eq!(pers, ["400", "400", "400"]);

    // Out of range: Primero's cap, or one.
    assert_eq!(
        CaseQuery::default().with_page_size(5000).page_size,
        Some(1000)
    );
    assert_eq!(CaseQuery::default().with_page_size(0).page_size, Some(1));
}

#[tokio::test]
async fn pages_are_read_further_ahead_once_the_total_is_known_and_handed_over_in_order() {
    let sim = sim().await;
    sim.seed(scenario(1050)).await.unwrap();
    let c = client(&sim, 3);
    // 1,050 cases in pages of 100: 11 pages.
    let query = CaseQuery::default().with_page_size(100);
    let mut pages = c.case_pages_ahead(&query, 4).unwrap();

    // Until page 1 tells the total, only page 1 is asked for.
    let first = pages.next_page().await.unwrap().expect("page 1");
    assert_eq!(first.len(), 100);
    let mut seen: Vec<String> = first.into_iter().map(|c| c.id).collect();
    // Then four pages at once, while the caller holds page 1 (they may reach the server in
    // any order).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut asked = pages_requested(&sim).await;
    while asked.len() < 5 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        asked = pages_requested(&sim).await;
    }
    asked.sort_unstable();
    assert_eq!(asked, vec!["1", "2", "3", "4", "5"]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(pages_requested(&sim).await.len(), 5, "no more than 4 ahead");

    let mut sizes = Vec::new();
    while let Some(page) = pages.next_page().await.unwrap() {
        sizes.push(page.len());
        seen.extend(page.into_iter().map(|c| c.id));
    }
    assert_eq!(sizes, [100, 100, 100, 100, 100, 100, 100, 100, 100, 50]);
    let mut requested: Vec<u64> = pages_requested(&sim)
        .await
        .iter()
        .map(|p| p.parse().unwrap())
        .collect();
    requested.sort_unstable();
    assert_eq!(
        requested,
        (1..=11).collect::<Vec<u64>>(),
        "each page once, none past the end"
    );

    // In order: the same sequence as the one-page-at-a-time listing.
    let one_by_one: Vec<String> = c
        .list_cases(&query)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(seen, one_by_one);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 1050);
    sim.shutdown().await;
}

/// Pages handed over in parts: every case once, in the listing's order, each part at most the
/// size asked for and never spanning two pages, each page still requested once; the listing's
/// counts are those of whole pages; a malformed page is retried and then ends the listing as
/// whole pages do.
#[tokio::test]
async fn pages_handed_over_in_parts_give_every_case_once_in_order() {
    let sim = sim().await;
    sim.seed(scenario(1050)).await.unwrap();
    let c = client(&sim, 3);
    let query = CaseQuery::default().with_page_size(400);
    let whole: Vec<String> = {
        let mut pages = c.case_pages(&query).unwrap();
        let mut ids = Vec::new();
        while let Some(page) = pages.next_page().await.unwrap() {
            ids.extend(page.into_iter().map(|c| c.id));
        }
        ids
    };
    assert_eq!(whole.len(), 1050);
    control(&sim, reqwest::Method::DELETE, "/_sim/requests", None).await;

    let mut pages = c.case_pages_in_parts(&query, 2, 150).unwrap();
    let mut sizes = Vec::new();
    let mut ids = Vec::new();
    while let Some(part) = pages.next_page().await.unwrap() {
        sizes.push(part.len());
        ids.extend(part.into_iter().map(|c| c.id));
    }
    // Pages of 400, 400 and 250, each cut into parts of 150.
    assert_eq!(sizes, [150, 150, 100, 150, 150, 100, 150, 100]);
    assert_eq!(ids, whole, "the same cases in the same order");
    let stats = pages.stats();
    assert_eq!((stats.pages, stats.cases), (3, 1050));
    let mut asked = pages_requested(&sim).await;
    asked.sort_unstable();
    assert_eq!(asked, ["1", "2", "3"], "each page once");

    // A page whose body is not JSON is retried like a whole page.
    set_faults(
        &sim,
        json!({"rules": [{"endpoint": "cases_list", "kind": "malformed_json", "times": 1}]}),
    )
    .await;
    let mut pages = c.case_pages_in_parts(&query, 1, 1000).unwrap();
    let first = pages
        .next_page()
        .await
        .unwrap()
        .expect("page 1 after a retry");
    assert_eq!(first.len(), 400);
    drop(pages);
    // With one attempt only, it ends the listing, and every later call says so.
    set_faults(
        &sim,
        json!({"rules": [{"endpoint": "cases_list", "kind": "malformed_json", "times": 1}]}),
    )
    .await;
    let once = client(&sim, 1);
    let mut pages = once.case_pages_in_parts(&query, 1, 100).unwrap();
    assert!(matches!(
        pages.next_page().await,
        Err(PrimeroError::Malformed { .. })
    ));
    assert!(pages.next_page().await.is_err());
    sim.shutdown().await;
}

/// The cases of a listing, by id, with their whole records.
async fn all_cases(
    pages: &mut pp_primero::CasePages,
) -> Vec<(String, serde_json::Map<String, Value>)> {
    let mut out = Vec::new();
    while let Some(part) = pages.next_page().await.unwrap() {
        out.extend(part.into_iter().map(|c| (c.id.clone(), c.data)));
    }
    out
}

#[tokio::test]
async fn a_listing_can_keep_only_some_fields_of_each_service_row() {
    let sim = sim().await;
    sim.seed(scenario(60)).await.unwrap();
    let c = client(&sim, 3);
    let keep = ["unique_id", "service_type"];
    let query = CaseQuery::default().with_page_size(25);
    let whole = all_cases(&mut c.case_pages(&query).unwrap()).await;
    control(&sim, reqwest::Method::DELETE, "/_sim/requests", None).await;
    let trimmed_query = query.clone().keeping_service_row_fields(keep);
    let in_parts = all_cases(&mut c.case_pages_in_parts(&trimmed_query, 2, 10).unwrap()).await;
    let paged = all_cases(&mut c.case_pages(&trimmed_query).unwrap()).await;
    let listed: Vec<(String, serde_json::Map<String, Value>)> = c
        .list_cases(&trimmed_query)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.id.clone(), c.data))
        .collect();

    // What is expected: the whole records, with only the kept fields in each row.
    let mut dropped = 0;
    let expected: Vec<(String, serde_json::Map<String, Value>)> = whole
        .iter()
        .map(|(id, data)| {
            let mut data = data.clone();
            if let Some(Value::Array(rows)) = data.get_mut("services_section") {
                for row in rows.iter_mut().filter_map(Value::as_object_mut) {
                    let before = row.len();
                    row.retain(|k, _| keep.contains(&k.as_str()));
                    dropped += before - row.len();
                }
            }
            (id.clone(), data)
        })
        .collect();
    assert_eq!(expected.len(), 60);
    assert!(
        dropped > 100,
        "the scenario's rows have other fields ({dropped} dropped)"
    );
    assert_eq!(in_parts, expected, "in parts");
    assert_eq!(paged, expected, "paged");
    assert_eq!(listed, expected, "listed");
    // Every row kept its unique_id, and the case's own fields are all there.
    let rows: Vec<&Value> = in_parts
        .iter()
        .filter_map(|(_, d)| d.get("services_section")?.as_array())
        .flatten()
        .collect();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.get("unique_id").is_some()));
    assert_eq!(
        in_parts[0].1.keys().collect::<Vec<_>>(),
        whole[0].1.keys().collect::<Vec<_>>()
    );
    // The projection is the client's: Primero is asked the same thing either way.
    let asked = listings(&sim).await;
    assert!(!asked.is_empty());
    for q in &asked {
        assert!(q.iter().all(|(k, _)| k == "page" || k == "per"), "{q:?}");
    }
    sim.shutdown().await;
}
