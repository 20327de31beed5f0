//! The `paging_mode` switch (how page 2 and later of a retrieval are asked for, UNKNOWN in
//! ping-api.md "Paging", assumed by contract item 10), over real HTTP with raw requests. For
//! each mode: which ways of asking for the next page read every row exactly once, which ones
//! are refused or loop over page one, what `PageNumber` the answers report, and how the
//! cookie and the page number are checked or ignored.

mod common;

use std::collections::BTreeSet;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const RETRIEVE: &str = pp_sim_ping::RETRIEVE_PATH;
const PAGE: usize = 3;

fn request(shp: &str, params: &Value) -> Value {
    json!({"ShippingProcessId": shp, "PartnerId": "PNR-1363", "InteropID": "INT-1436",
           "APIVersion": "V3", "QueryParameters": params})
}

/// How a client asks for the next page, given the previous answer's `PagingSummary`.
#[derive(Clone, Copy, Debug)]
enum Ask {
    /// Echo `PagingCookie` and send the reported `PageNumber + 1` (the spec's inference).
    CookieAndNext,
    /// Send only `PageNumber`, counted by the client from 1.
    PageNumberOnly,
    /// Echo only `PagingCookie`.
    CookieOnly,
}

impl Ask {
    fn next(self, body: &mut Value, summary: &Value, pages_read: i64) {
        match self {
            Ask::CookieAndNext => {
                body["PagingCookie"] = summary["PagingCookie"].clone();
                body["PageNumber"] = json!(summary["PageNumber"].as_i64().unwrap() + 1);
            }
            Ask::PageNumberOnly => body["PageNumber"] = json!(pages_read + 1),
            Ask::CookieOnly => body["PagingCookie"] = summary["PagingCookie"].clone(),
        }
    }
}

/// What reading a retrieval page after page saw.
#[derive(Debug)]
struct Walk {
    rows: Vec<Value>,
    /// `PagingSummary.PageNumber` of each answer.
    page_numbers: Vec<i64>,
    /// Rows of each answer.
    sizes: Vec<usize>,
    /// False when `max_pages` answers still said more records were available.
    finished: bool,
}

/// Reads pages the `ask` way until PING says no more rows follow (or `max_pages`). A refused
/// page ends the walk with its status and body.
async fn walk(
    s: &Sim,
    shp: &str,
    params: &Value,
    ask: Ask,
    max_pages: usize,
) -> Result<Walk, (u16, Value)> {
    let mut w = Walk {
        rows: Vec::new(),
        page_numbers: Vec::new(),
        sizes: Vec::new(),
        finished: false,
    };
    let mut body = request(shp, params);
    while w.page_numbers.len() < max_pages {
        let (status, v) = s.post(RETRIEVE, &body).await;
        if status != 200 {
            return Err((status, v));
        }
        assert_eq!(v["ErrorMessage"], Value::Null, "{v}");
        let page = rows(&v);
        assert_eq!(v["RecordCount"], json!(page.len()));
        w.sizes.push(page.len());
        w.rows.extend(page);
        let summary = &v["PagingSummary"];
        w.page_numbers.push(summary["PageNumber"].as_i64().unwrap());
        if summary["IsMoreRecordsAvailable"] != true {
            assert_eq!(
                summary["PagingCookie"],
                Value::Null,
                "no cookie on the last page"
            );
            w.finished = true;
            break;
        }
        assert!(
            summary["PagingCookie"]
                .as_str()
                .is_some_and(|c| !c.is_empty()),
            "an opaque cookie while more rows follow, in every mode"
        );
        body = request(shp, params);
        ask.next(&mut body, summary, w.page_numbers.len() as i64);
    }
    Ok(w)
}

/// Three retrievals of more than three pages: SHP-2747, SHP-2795 and SHP-2358 (join rows).
fn retrievals() -> Vec<(&'static str, Value)> {
    vec![
        ("SHP-2747", json!([])),
        ("SHP-2795", json!([])),
        (
            "SHP-2358",
            json!([{"ParameterName": "{record_ids}", "Value": format!("[{IV1},{IV2},{IV3}]")}]),
        ),
    ]
}

/// A simulator in `mode` with 10 pending interventions, 9 referrals and 8 SHP-2358 rows for
/// IV1-IV3, and every unpaged result (read in that mode with the default page size).
async fn seeded(mode: &str) -> (Sim, Vec<Vec<Value>>) {
    let s = start().await;
    s.seed(small_seed()).await;
    s.seed(pp_sim_ping::scenario::generate(
        &pp_sim_ping::scenario::ScenarioOptions {
            count: 7,
            count_referrals: 7,
            seed: 3,
            ..Default::default()
        },
    ))
    .await;
    s.set_options(json!({"paging_mode": mode})).await;
    let mut full = Vec::new();
    for (shp, params) in retrievals() {
        let w = walk(&s, shp, &params, Ask::CookieAndNext, 1).await.unwrap();
        assert!(w.finished, "{shp}: one page at the default page size");
        assert!(w.rows.len() > 2 * PAGE, "{shp}: {} rows", w.rows.len());
        full.push(w.rows);
    }
    s.set_options(json!({"page_size": PAGE})).await;
    (s, full)
}

/// Every retrieval read the `ask` way gives the unpaged rows, in order, each once.
async fn reads_every_row_once(s: &Sim, full: &[Vec<Value>], ask: Ask) -> Vec<Vec<i64>> {
    let mut numbers = Vec::new();
    for ((shp, params), full) in retrievals().into_iter().zip(full) {
        let w = walk(s, shp, &params, ask, 50)
            .await
            .unwrap_or_else(|e| panic!("{shp} {ask:?}: refused {e:?}"));
        assert!(w.finished, "{shp} {ask:?}");
        assert_eq!(w.page_numbers.len(), full.len().div_ceil(PAGE), "{shp}");
        let (last, before) = w.sizes.split_last().unwrap();
        assert!(before.iter().all(|n| *n == PAGE) && *last <= PAGE, "{shp}");
        assert_eq!(
            &w.rows, full,
            "{shp} {ask:?}: the pages are the unpaged rows"
        );
        numbers.push(w.page_numbers);
    }
    let (_, params) = &retrievals()[0];
    let ids: Vec<Value> = walk(s, "SHP-2747", params, ask, 50)
        .await
        .unwrap()
        .rows
        .iter()
        .map(|r| r["progres_lpinterventionid"].clone())
        .collect();
    let distinct: BTreeSet<String> = ids.iter().map(Value::to_string).collect();
    assert_eq!(distinct.len(), ids.len(), "no intervention twice");
    numbers
}

/// The first page and the page a body with these paging fields gets, as (status, answer).
async fn ask_with(s: &Sim, cookie: Option<Value>, number: Option<Value>) -> (u16, Value) {
    let mut body = request("SHP-2747", &json!([]));
    if let Some(c) = cookie {
        body["PagingCookie"] = c;
    }
    if let Some(n) = number {
        body["PageNumber"] = n;
    }
    s.post(RETRIEVE, &body).await
}

fn lp_ids(v: &Value) -> Vec<String> {
    rows(v)
        .iter()
        .map(|r| r["progres_lpinterventionid"].as_str().unwrap().to_string())
        .collect()
}

/// A cookie of SHP-2795 (another shipping process).
async fn foreign_cookie(s: &Sim) -> Value {
    let (_, v) = s.retrieve("SHP-2795", json!([])).await;
    let c = v["PagingSummary"]["PagingCookie"].clone();
    assert!(c.is_string());
    c
}

#[tokio::test]
async fn paging_mode_is_a_documented_switch_with_today_as_default() {
    assert_eq!(
        pp_sim_ping::Options::default().paging_mode,
        pp_sim_ping::PagingMode::CookieAndPage
    );
    let s = start().await;
    let (_, v) = s.control(Method::GET, "/_sim/options", None).await;
    assert_eq!(v["paging_mode"], "cookie_and_page");
    for mode in ["page_number", "cookie_only", "cookie_and_page"] {
        let (st, v) = s
            .control(
                Method::POST,
                "/_sim/options",
                Some(json!({"paging_mode": mode})),
            )
            .await;
        assert_eq!(st, 200);
        assert_eq!(v["paging_mode"], mode);
    }
    s.set_options(json!({"paging_mode": "cookie_only"})).await;
    assert_eq!(
        s.sim.options().paging_mode,
        pp_sim_ping::PagingMode::CookieOnly
    );
    for bad in [json!("offset"), json!(2), json!(null)] {
        assert_eq!(
            s.options_status(json!({"paging_mode": bad})).await,
            400,
            "{bad}"
        );
    }
    assert_eq!(
        s.sim.options().paging_mode,
        pp_sim_ping::PagingMode::CookieOnly,
        "a refused patch changes nothing"
    );
}

#[tokio::test]
async fn cookie_and_page_mode_keeps_the_cookie_protocol() {
    let (s, full) = seeded("cookie_and_page").await;
    let numbers = reads_every_row_once(&s, &full, Ask::CookieAndNext).await;
    // The first page reports 0 (as the sample does), then each page echoes what was asked.
    assert_eq!(numbers[0], [0, 1, 2, 3]);
    // The cookie alone decides the position; PageNumber is only checked and echoed.
    reads_every_row_once(&s, &full, Ask::CookieOnly).await;
    let (_, first) = ask_with(&s, None, None).await;
    let cookie = first["PagingSummary"]["PagingCookie"].clone();
    let (st, right) = ask_with(&s, Some(cookie.clone()), Some(json!(1))).await;
    assert_eq!(st, 200);
    let (st, other) = ask_with(&s, Some(cookie.clone()), Some(json!(7))).await;
    assert_eq!(st, 200);
    assert_eq!(lp_ids(&other), lp_ids(&right));
    assert_eq!(other["PagingSummary"]["PageNumber"], 7);
    let (st, _) = ask_with(&s, Some(cookie), Some(json!(-1))).await;
    assert_eq!(st, 400, "PageNumber must be a non-negative integer");
    // Without the cookie: page two cannot be had, page "1" is the first page again.
    let (st, v) = walk(&s, "SHP-2747", &json!([]), Ask::PageNumberOnly, 50)
        .await
        .unwrap_err();
    assert_eq!(st, 400);
    assert!(v["ErrorMessage"]
        .as_str()
        .unwrap()
        .contains("PagingCookie is required"));
    assert_eq!(v["Data"], Value::Null);
    let (st, again) = ask_with(&s, None, Some(json!(1))).await;
    assert_eq!(st, 200);
    assert_eq!(lp_ids(&again), lp_ids(&first));
    // A cookie that is not ours, or another SHP's, is refused.
    for bad in [json!("garbage"), foreign_cookie(&s).await, json!(12)] {
        let (st, v) = ask_with(&s, Some(bad.clone()), Some(json!(1))).await;
        assert_eq!(st, 400, "{bad}");
        assert!(v["ErrorMessage"].as_str().unwrap().contains("PagingCookie"));
    }
}

#[tokio::test]
async fn page_number_mode_pages_by_number_alone() {
    let (s, full) = seeded("page_number").await;
    let numbers = reads_every_row_once(&s, &full, Ask::PageNumberOnly).await;
    // Pages are numbered from 1, so `PageNumber + 1` of an answer is the next page.
    assert_eq!(numbers[0], [1, 2, 3, 4]);
    assert_eq!(
        reads_every_row_once(&s, &full, Ask::CookieAndNext).await,
        numbers
    );
    // Echoing only the cookie reads page one over and over.
    let w = walk(&s, "SHP-2747", &json!([]), Ask::CookieOnly, 3)
        .await
        .unwrap();
    assert!(!w.finished);
    assert_eq!(w.page_numbers, [1, 1, 1]);
    assert_eq!(w.rows[..PAGE], w.rows[PAGE..2 * PAGE]);
    // The cookie is ignored, even when it is not ours or another SHP's.
    let pending: Vec<String> = full[0]
        .iter()
        .map(|r| r["progres_lpinterventionid"].as_str().unwrap().to_string())
        .collect();
    for cookie in [None, Some(json!("garbage")), Some(foreign_cookie(&s).await)] {
        let (st, v) = ask_with(&s, cookie.clone(), Some(json!(2))).await;
        assert_eq!(st, 200, "{cookie:?}");
        assert_eq!(lp_ids(&v), pending[PAGE..2 * PAGE]);
        assert_eq!(v["PagingSummary"]["PageNumber"], 2);
    }
    // Absent, 0 and 1 are the first page; a string number is read; past the end is empty.
    for number in [None, Some(json!(0)), Some(json!(1)), Some(json!("1"))] {
        let (st, v) = ask_with(&s, None, number.clone()).await;
        assert_eq!(st, 200);
        assert_eq!(lp_ids(&v), pending[..PAGE], "{number:?}");
        assert_eq!(v["PagingSummary"]["PageNumber"], 1);
    }
    let last = pending.len().div_ceil(PAGE) as i64;
    let (_, v) = ask_with(&s, None, Some(json!(last))).await;
    assert_eq!(lp_ids(&v), pending[(last as usize - 1) * PAGE..]);
    assert_eq!(v["PagingSummary"]["IsMoreRecordsAvailable"], false);
    let (st, v) = ask_with(&s, None, Some(json!(last + 1))).await;
    assert_eq!(st, 200);
    assert_eq!(v["Data"], "No Data Available");
    assert_eq!(
        v["PagingSummary"],
        json!({"PagingCookie": null, "PageNumber": last + 1, "IsMoreRecordsAvailable": false})
    );
    for bad in [json!(-1), json!("two"), json!(1.5)] {
        let (st, v) = ask_with(&s, None, Some(bad.clone())).await;
        assert_eq!(st, 400, "{bad}");
        assert!(v["ErrorMessage"].as_str().unwrap().contains("PageNumber"));
    }
}

#[tokio::test]
async fn cookie_only_mode_pages_by_cookie_alone() {
    let (s, full) = seeded("cookie_only").await;
    let numbers = reads_every_row_once(&s, &full, Ask::CookieOnly).await;
    // The answers count pages from 1 (the cookie carries the count).
    assert_eq!(numbers[0], [1, 2, 3, 4]);
    assert_eq!(
        reads_every_row_once(&s, &full, Ask::CookieAndNext).await,
        numbers
    );
    // Sending only PageNumber reads page one over and over.
    let w = walk(&s, "SHP-2747", &json!([]), Ask::PageNumberOnly, 3)
        .await
        .unwrap();
    assert!(!w.finished);
    assert_eq!(w.page_numbers, [1, 1, 1]);
    assert_eq!(w.rows[..PAGE], w.rows[PAGE..2 * PAGE]);
    // PageNumber is ignored, whatever it holds, with or without a cookie.
    let (_, first) = ask_with(&s, None, Some(json!(5))).await;
    assert_eq!(first["PagingSummary"]["PageNumber"], 1);
    let cookie = first["PagingSummary"]["PagingCookie"].clone();
    let (_, second) = ask_with(&s, Some(cookie.clone()), None).await;
    assert_eq!(second["PagingSummary"]["PageNumber"], 2);
    for number in [json!(2), json!(9), json!(-4), json!("junk"), json!(null)] {
        let (st, v) = ask_with(&s, Some(cookie.clone()), Some(number.clone())).await;
        assert_eq!(st, 200, "{number}");
        assert_eq!(lp_ids(&v), lp_ids(&second), "{number}");
        assert_eq!(v["PagingSummary"]["PageNumber"], 2);
    }
    // A cookie that is not ours, or another SHP's, is refused.
    for bad in [json!("garbage"), foreign_cookie(&s).await, json!(12)] {
        let (st, v) = ask_with(&s, Some(bad.clone()), Some(json!(2))).await;
        assert_eq!(st, 400, "{bad}");
        assert!(v["ErrorMessage"].as_str().unwrap().contains("PagingCookie"));
    }
}

/// A row of page one leaves the result before page two is read (its transfer status is set,
/// so SHP-2747 drops it): the cookie modes go on after the last row served, while
/// `page_number` counts rows from the start again and so skips the row that moved up.
#[tokio::test]
async fn offset_paging_skips_a_row_when_an_earlier_one_leaves_keyset_paging_does_not() {
    for (mode, ask) in [
        ("cookie_and_page", Ask::CookieAndNext),
        ("cookie_only", Ask::CookieOnly),
        ("page_number", Ask::PageNumberOnly),
    ] {
        let s = start().await;
        s.seed(small_seed()).await;
        s.set_options(json!({"paging_mode": mode, "page_size": 2}))
            .await;
        // Pending: IV1, IV2, IV3.
        let (_, first) = s.retrieve("SHP-2747", json!([])).await;
        assert_eq!(lp_ids(&first), [IV1, IV2], "{mode}");
        let (st, _) = s
            .ingest("SHP-2748", json!([transfer_record(IV1, IV1, "125080002")]))
            .await;
        assert_eq!(st, 200);
        let mut body = request("SHP-2747", &json!([]));
        ask.next(&mut body, &first["PagingSummary"], 1);
        let (st, second) = s.post(RETRIEVE, &body).await;
        assert_eq!(st, 200, "{mode}");
        if mode == "page_number" {
            assert_eq!(second["Data"], "No Data Available", "IV3 moved to page one");
        } else {
            assert_eq!(lp_ids(&second), [IV3], "{mode}");
        }
    }
}
