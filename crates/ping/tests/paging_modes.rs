//! The PING client's paging against each `paging_mode` of the PING simulator (how page 2+ is
//! asked for is UNKNOWN in ping-api.md "Paging"): `cookie_and_page` (the default: the cookie
//! echoed with `PageNumber + 1`), `page_number` (the cookie is ignored) and `cookie_only`
//! (`PageNumber` is ignored). The client sends both the cookie and the next page number, so
//! `PingClient::retrieve` and the page iterator read every row exactly once in every mode.
//! Hand-made cursors show that each mode is really in force, and that `cookie_and_page`
//! refuses a wrong or missing cookie.

mod common;

use common::client;
use std::collections::BTreeSet;

use pp_ping::{shp, NextPage, PingClient, PingError, Row};
use pp_sim_ping::scenario::{generate, ScenarioOptions};
use pp_sim_ping::{Options, SimHandle};
use serde_json::{json, Value};

const PAGE: usize = 3;
const MODES: [&str; 3] = ["cookie_and_page", "page_number", "cookie_only"];

/// A simulator in `mode` with 13 pending interventions and 11 referrals.
async fn start(mode: &str) -> SimHandle {
    let sim = pp_sim_ping::spawn(Options::default(), 0)
        .await
        .expect("simulator starts");
    sim.seed(generate(&ScenarioOptions {
        count: 13,
        count_referrals: 11,
        seed: 11,
        ..Default::default()
    }))
    .await
    .expect("seed accepted");
    sim.set_options(&json!({"paging_mode": mode}))
        .expect("paging_mode accepted");
    sim
}

/// Ids of the seeded records: (LP intervention ids, interoperability referral ids).
fn seeded_ids(sim: &SimHandle) -> (Vec<String>, Vec<String>) {
    let state = sim.state_json();
    let ids = |list: &str, key: &str| -> Vec<String> {
        state[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[key].as_str().unwrap().to_string())
            .collect()
    };
    (
        ids("interventions", "progres_lpinterventionid"),
        ids("interop_referrals", "progres_interoperabilityreferralid"),
    )
}

/// Status of each retrieval request in the simulator's log.
fn retrieve_statuses(sim: &SimHandle) -> Vec<Option<u16>> {
    sim.requests()
        .into_iter()
        .filter(|e| e.endpoint == "retrieve")
        .map(|e| e.status)
        .collect()
}

/// The four retrievals, each more than three pages long at `PAGE` rows: the two lists and the
/// two detail processes with a `{record_ids}` list (SHP-2358 gives join rows).
fn retrievals(sim: &SimHandle) -> Vec<(&'static str, Vec<String>, &'static str)> {
    let (lp, referrals) = seeded_ids(sim);
    vec![
        (
            shp::PENDING_REFERRALS,
            Vec::new(),
            "progres_lpinterventionid",
        ),
        (
            shp::DECISION_LIST,
            Vec::new(),
            "progres_interoperabilityreferralid",
        ),
        (shp::INTERVENTION_DETAILS, lp, ""),
        (
            shp::DECISION_DETAIL,
            referrals,
            "progres_interoperabilityreferralid",
        ),
    ]
}

#[tokio::test]
async fn every_mode_reads_every_row_exactly_once() {
    for mode in MODES {
        let sim = start(mode).await;
        let c = client(&sim);
        let mut expected_requests = 0;
        for (shp, ids, key) in retrievals(&sim) {
            // One page at the default page size: the unpaged result.
            sim.set_options(&json!({"page_size": 1000})).unwrap();
            let all = c.retrieve(shp, &ids).await.expect("unpaged retrieval");
            assert_eq!(all.transaction_ids.len(), 1, "{mode} {shp}");
            let n = all.rows.len();
            assert!(n > 3 * PAGE, "{mode} {shp}: {n} rows");
            if !key.is_empty() {
                let distinct: BTreeSet<&str> =
                    all.rows.iter().filter_map(|r| r.get_str(key)).collect();
                assert_eq!(distinct.len(), n, "{mode} {shp}: each record once, unpaged");
            }
            let pages = n.div_ceil(PAGE);
            sim.set_options(&json!({"page_size": PAGE})).unwrap();

            // PingClient::retrieve: every page, concatenated.
            let paged = c.retrieve(shp, &ids).await.expect("paged retrieval");
            assert_eq!(paged.rows, all.rows, "{mode} {shp}: same rows, same order");
            assert_eq!(paged.transaction_ids.len(), pages, "{mode} {shp}");

            // The page iterator, one page at a time.
            let mut it = c.pages(shp, &ids);
            let mut sizes = Vec::new();
            let mut rows: Vec<Row> = Vec::new();
            while let Some(page) = it.next_page().await.expect("page") {
                sizes.push(page.len());
                rows.extend(page);
            }
            assert!(it.next_page().await.unwrap().is_none(), "over stays over");
            let (last, before) = sizes.split_last().unwrap();
            assert!(
                before.iter().all(|s| *s == PAGE) && *last >= 1 && *last <= PAGE,
                "{mode} {shp}: {sizes:?}"
            );
            assert_eq!(rows, all.rows, "{mode} {shp}: same rows, same order");
            let summary = it.into_summary();
            assert_eq!(summary.pages as usize, pages, "{mode} {shp}");
            assert_eq!(summary.rows as usize, n, "{mode} {shp}");
            expected_requests += 1 + 2 * pages;
        }
        // One request per page, none refused or sent again.
        let statuses = retrieve_statuses(&sim);
        assert_eq!(statuses.len(), expected_requests, "{mode}");
        assert!(statuses.iter().all(|s| *s == Some(200)), "{mode}");
        sim.shutdown().await;
    }
}

/// The `PingError::Permanent` of a refused page, or a panic.
fn refused(r: Result<pp_ping::Page, PingError>) -> (u16, String) {
    match r {
        Err(PingError::Permanent { status, message }) => (status, message),
        other => panic!("expected a refused page, got {other:?}"),
    }
}

fn lp_ids(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|r| r.get_str("progres_lpinterventionid").unwrap().to_string())
        .collect()
}

/// What the client's cursor for page two looks like after page one, and all pending ids.
async fn first_page(c: &PingClient) -> (NextPage, Vec<String>) {
    let first = c
        .retrieve_page(shp::PENDING_REFERRALS, &[], None)
        .await
        .expect("first page");
    assert_eq!(first.rows.len(), PAGE);
    let next = first.next.expect("more pages");
    assert!(next.cookie.is_string());
    assert_eq!(
        next.page_number, 2,
        "the client asks for page 2 after page 1"
    );
    let all = c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap();
    let ids = lp_ids(&all.rows);
    assert_eq!(lp_ids(&first.rows), ids[..PAGE]);
    (next, ids)
}

#[tokio::test]
async fn cookie_and_page_mode_refuses_a_wrong_or_missing_cookie() {
    let sim = start("cookie_and_page").await;
    sim.set_options(&json!({"page_size": PAGE})).unwrap();
    let c = client(&sim);
    let (next, ids) = first_page(&c).await;
    let page = |cookie: Value, page_number: i64| {
        let cursor = NextPage {
            cookie,
            page_number,
        };
        let c = c.clone();
        async move {
            c.retrieve_page(shp::PENDING_REFERRALS, &[], Some(&cursor))
                .await
        }
    };
    // The cursor the client made is accepted and reads page two.
    let second = page(next.cookie.clone(), next.page_number).await.unwrap();
    assert_eq!(lp_ids(&second.rows), ids[PAGE..2 * PAGE]);
    // A cookie of another shipping process (SHP-2795).
    sim.set_options(&json!({"page_size": 1})).unwrap();
    let decisions = c
        .retrieve_page(shp::DECISION_LIST, &[], None)
        .await
        .unwrap();
    let foreign = decisions.next.expect("more decisions").cookie;
    sim.set_options(&json!({"page_size": PAGE})).unwrap();
    // A wrong cookie, another shipping process's cookie, or none at all for page 2: refused
    // with a 400, not answered with page one again.
    let before = retrieve_statuses(&sim).len();
    for cookie in [json!("not-a-paging-cookie"), foreign, Value::Null] {
        let (status, message) = refused(page(cookie.clone(), 2).await);
        assert_eq!(status, 400, "{cookie}");
        assert!(message.contains("PagingCookie"), "{cookie}: {message}");
    }
    // Permanent: each refusal was one request, not retried.
    let statuses = retrieve_statuses(&sim);
    assert_eq!(statuses[before..], [Some(400), Some(400), Some(400)]);
    // The same refusal answered 200 + ErrorMessage (request_error_mode ok_200) is an error too.
    sim.set_options(&json!({"request_error_mode": "ok_200"}))
        .unwrap();
    let (status, message) = refused(page(json!("not-a-paging-cookie"), 2).await);
    assert_eq!(status, 200);
    assert!(message.contains("PagingCookie"), "{message}");
    sim.shutdown().await;
}

#[tokio::test]
async fn page_number_mode_ignores_the_cookie() {
    let sim = start("page_number").await;
    sim.set_options(&json!({"page_size": PAGE})).unwrap();
    let c = client(&sim);
    let (next, ids) = first_page(&c).await;
    for cookie in [
        next.cookie.clone(),
        json!("not-a-paging-cookie"),
        Value::Null,
    ] {
        for (number, from) in [(2, PAGE), (3, 2 * PAGE)] {
            let cursor = NextPage {
                cookie: cookie.clone(),
                page_number: number,
            };
            let p = c
                .retrieve_page(shp::PENDING_REFERRALS, &[], Some(&cursor))
                .await
                .expect("PageNumber alone selects the page");
            assert_eq!(lp_ids(&p.rows), ids[from..from + PAGE], "{cookie} {number}");
            assert_eq!(p.page_number, Some(number));
            assert_eq!(p.next.unwrap().page_number, number + 1);
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn cookie_only_mode_ignores_the_page_number() {
    let sim = start("cookie_only").await;
    sim.set_options(&json!({"page_size": PAGE})).unwrap();
    let c = client(&sim);
    let (next, ids) = first_page(&c).await;
    for number in [2, 7, 0] {
        let cursor = NextPage {
            cookie: next.cookie.clone(),
            page_number: number,
        };
        let p = c
            .retrieve_page(shp::PENDING_REFERRALS, &[], Some(&cursor))
            .await
            .expect("the cookie alone selects the page");
        assert_eq!(lp_ids(&p.rows), ids[PAGE..2 * PAGE], "{number}");
        assert_eq!(p.page_number, Some(2), "the page the cookie leads to");
    }
    // Without the cookie, PageNumber 2 is the first page again; a wrong cookie is refused.
    let lost = NextPage {
        cookie: Value::Null,
        page_number: 2,
    };
    let p = c
        .retrieve_page(shp::PENDING_REFERRALS, &[], Some(&lost))
        .await
        .unwrap();
    assert_eq!(lp_ids(&p.rows), ids[..PAGE]);
    let wrong = NextPage {
        cookie: json!("not-a-paging-cookie"),
        page_number: 2,
    };
    let (status, message) = refused(
        c.retrieve_page(shp::PENDING_REFERRALS, &[], Some(&wrong))
            .await,
    );
    assert_eq!(status, 400);
    assert!(message.contains("PagingCookie"), "{message}");
    sim.shutdown().await;
}
