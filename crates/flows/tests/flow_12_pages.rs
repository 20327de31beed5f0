//! Flow 1.2 `decisions-to-progres` over several case pages, against both simulators over HTTP
//! (PING behind a small proxy that can refuse chosen write-backs): the listing asks Primero for
//! the fields the flow reads and nothing else, with the same outcomes; every page's outcomes
//! are recorded and the cursor stops at a decision of page 2 whose batch failed transiently;
//! a page's batches go out while a slow batch of the page before is still out; and when the
//! run ends on refused credentials, every decision PING applied is recorded.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pp_flows::{Flow, FlowError};
use pp_ledger::RecordState;
use serde_json::json;
use support::seed::{guid, known_intervention, ping_intervention, seed_decisions, BU};
use support::{proxy, TestEnv};

const F12: &str = "decisions-to-progres";

async fn state_of(env: &TestEnv, key: &str) -> Option<RecordState> {
    env.ledger.get(F12, key).await.unwrap().map(|r| r.state)
}

/// The decoded query parameters of each case listing request so far.
async fn listings(env: &TestEnv) -> Vec<Vec<(String, String)>> {
    let log = env.primero_get("/_sim/requests?endpoint=cases_list").await;
    log.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let q = e["query"].as_str().unwrap_or("");
            let url = reqwest::Url::parse(&format!("http://x/?{q}")).unwrap();
            url.query_pairs().into_owned().collect()
        })
        .collect()
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// What the proxy does with a PING request whose body holds one of `markers`: answers
/// `status` (after `delay`) instead of passing it on. A request holding one of `slow` is
/// passed on after `delay`. Requests holding one of `watched` are logged in `events` as
/// `in <marker>` when they arrive and `out <marker>` when answered.
#[derive(Clone, Default)]
struct Refuse {
    markers: Arc<Mutex<Vec<String>>>,
    status: u16,
    delay: Duration,
    slow: Arc<Mutex<Vec<String>>>,
    watched: Arc<Mutex<Vec<String>>>,
    events: Arc<Mutex<Vec<String>>>,
}

impl Refuse {
    fn set(&self, markers: &[&str]) {
        *self.markers.lock().unwrap() = markers.iter().map(|m| m.to_string()).collect();
    }

    /// The markers of `list` that `text` holds.
    fn found(list: &Mutex<Vec<String>>, text: &str) -> Vec<String> {
        list.lock()
            .unwrap()
            .iter()
            .filter(|m| text.contains(m.as_str()))
            .cloned()
            .collect()
    }

    fn log(&self, what: &str, markers: &[String]) {
        let mut events = self.events.lock().unwrap();
        events.extend(markers.iter().map(|m| format!("{what} {m}")));
    }
}

/// A test environment whose PING API calls (not the token endpoint) pass through a proxy that
/// applies `refuse`; Primero clamps pages to `per`.
async fn env_with(
    refuse: Refuse,
    per: usize,
    tweak: impl FnOnce(&mut pp_config::Config),
) -> TestEnv {
    let http = reqwest::Client::new();
    let env = proxy::ping_behind(tweak, move |target, request| {
        let (http, refuse) = (http.clone(), refuse.clone());
        async move { refuse.answer(&http, &target, request).await }
    })
    .await;
    env.primero_post("/_sim/options", json!({ "per_clamp": per }))
        .await;
    env
}

impl Refuse {
    /// The proxy's answer to one PING request.
    async fn answer(
        &self,
        http: &reqwest::Client,
        target: &str,
        request: proxy::Request,
    ) -> Option<proxy::Answer> {
        let text = request.text();
        let watched = Refuse::found(&self.watched, &text);
        self.log("in", &watched);
        let answer = if !Refuse::found(&self.markers, &text).is_empty() {
            tokio::time::sleep(self.delay).await;
            proxy::Answer::json(self.status, r#"{"Message":"refused by the test proxy"}"#)
        } else {
            if !Refuse::found(&self.slow, &text).is_empty() {
                tokio::time::sleep(self.delay).await;
            }
            proxy::forward(http, target, &request).await?
        };
        self.log("out", &watched);
        Some(answer)
    }
}

#[tokio::test]
async fn the_listing_asks_only_for_the_fields_the_flow_reads_with_the_same_outcomes() {
    let env = env_with(Refuse::default(), 1000, |_| {}).await;
    let decided = seed_decisions(&env, 4, Some(4)).await;
    let report = env.run(Flow::DecisionsToProgres).await;
    assert_eq!((report.fetched, report.confirmed), (4, 4), "{report}");

    let log = listings(&env).await;
    assert_eq!(log.len(), 1);
    let mut fields: Vec<&str> = param(&log[0], "fields")
        .expect("the listing names its fields")
        .split(',')
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["case_id", "last_updated_at", "owned_by", "services_section"]
    );
    assert_eq!(
        param(&log[0], "last_updated_at"),
        Some("2000-01-01T00:00:00Z..")
    );

    // Everything the decision needs came with those fields: case_id, owner, the row's
    // decision, number and rejection reason.
    for (i, d) in decided.iter().enumerate() {
        let iv = ping_intervention(&env, &d.lp).await;
        assert_eq!(iv["progres_primeroid"], json!(d.case_id));
        assert_eq!(iv["progres_primerocaseworker"], json!(format!("cw_{i}")));
        assert_eq!(iv["progres_businessunit"], json!(BU));
        let (status, comment) = match d.decision {
            "accepted" => (125080003, "Referral acknowledged by PRIMERO".to_owned()),
            _ => (
                125080004,
                format!("Referral rejected by PRIMERO: No capacity {i}"),
            ),
        };
        assert_eq!(iv["progres_primerotransferstatus"], json!(status));
        assert_eq!(iv["attachment_comments"], json!([comment]));
        let rec = env.ledger.get(F12, &d.key()).await.unwrap().unwrap();
        assert_eq!(rec.state, RecordState::Confirmed);
        assert_eq!(rec.dest_ids.get("case_id"), Some(&d.case_id));
        assert_eq!(rec.ping_transaction_ids.len(), 1);
    }
    assert_eq!(
        env.ledger.cursor(F12).await.unwrap().as_deref(),
        Some("2026-03-01T10:00:03Z")
    );
    // Nothing new on a second run, which reads the last second again.
    let again = env.run(Flow::DecisionsToProgres).await;
    assert_eq!(
        (again.fetched, again.skipped, again.confirmed),
        (1, 1, 0),
        "{again}"
    );
}

#[tokio::test]
async fn three_pages_are_all_recorded_and_a_failed_batch_of_page_two_holds_the_cursor() {
    let refuse = Refuse {
        status: 503,
        ..Refuse::default()
    };
    let env = env_with(refuse.clone(), 3, |c| {
        c.ping.batch_size = 2;
        c.ping.http.retry.max_attempts = 2;
    })
    .await;
    // Newest first, 3 a page: page 1 = cases 6, 5, 4; page 2 = 3, 2, 1; page 3 = 0. A batch a
    // page leaves short is filled with the next page's first decision, so the batches are
    // (6, 5), (4, 3), (2, 1), (0): two PING calls fewer than batching page by page. Page 2's
    // own batch (cases 2 and 1) fails on every attempt.
    let decided = seed_decisions(&env, 7, Some(4)).await;
    refuse.set(&[&decided[2].case_id]);
    let first = env.run(Flow::DecisionsToProgres).await;
    assert_eq!(
        (first.fetched, first.confirmed, first.failed),
        (7, 5, 2),
        "{first}"
    );
    // The refused batch never reaches PING (the proxy answers 503): the three others did,
    // one request each.
    let log = env.ping_get("/_sim/requests").await;
    let sent = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["endpoint"] == "data")
        .count();
    assert_eq!(sent, 3, "{log}");
    // Pages 2 and 3 are read ahead together and may reach the simulator in either order:
    // each page is asked for exactly once, and none past the last.
    let mut pages: Vec<Option<String>> = listings(&env)
        .await
        .iter()
        .map(|q| param(q, "page").map(str::to_owned))
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        [Some("1".into()), Some("2".into()), Some("3".into())]
    );
    for (i, d) in decided.iter().enumerate() {
        let want = if i == 1 || i == 2 {
            RecordState::Failed
        } else {
            RecordState::Confirmed
        };
        assert_eq!(state_of(&env, &d.key()).await, Some(want), "case {i}");
        let applied =
            !ping_intervention(&env, &d.lp).await["progres_primerotransferstatus"].is_null();
        assert_eq!(applied, want == RecordState::Confirmed, "case {i}");
    }
    assert_eq!(
        env.ledger.cursor(F12).await.unwrap().as_deref(),
        Some("2026-03-01T10:00:01Z"),
        "held at the older of the failed cases, although case 0 (page 3) was sent after them"
    );

    // PING works again: once due, the two are sent (read by id) and the cursor moves on.
    refuse.set(&[]);
    env.clear_requests().await;
    // Hours later: their backoff has passed.
    let second = env.run_later(Flow::DecisionsToProgres, 7 * 60).await;
    assert_eq!((second.confirmed, second.failed), (2, 0), "{second}");
    for d in &decided {
        assert_eq!(state_of(&env, &d.key()).await, Some(RecordState::Confirmed));
    }
    assert_eq!(
        env.ledger.cursor(F12).await.unwrap().as_deref(),
        Some("2026-03-01T10:00:06Z")
    );
}

#[tokio::test]
async fn refused_credentials_mid_run_leave_no_applied_decision_unrecorded() {
    let refuse = Refuse {
        status: 401,
        delay: Duration::from_millis(300),
        ..Refuse::default()
    };
    let env = env_with(refuse.clone(), 1000, |c| {
        c.ping.batch_size = 1;
        c.ping.http.max_concurrency = 8;
    })
    .await;
    let decided = seed_decisions(&env, 6, Some(4)).await;
    // The batch of case 2 is refused (slowly) with 401, twice: the run ends on credentials,
    // after the other batches, already sent, were applied by PING.
    refuse.set(&[&decided[2].case_id]);
    let err = env.try_run(Flow::DecisionsToProgres).await.unwrap_err();
    assert!(matches!(err, FlowError::Auth { .. }), "{err}");
    let mut applied = 0;
    for (i, d) in decided.iter().enumerate() {
        let in_ping =
            !ping_intervention(&env, &d.lp).await["progres_primerotransferstatus"].is_null();
        let state = state_of(&env, &d.key()).await;
        if in_ping {
            applied += 1;
            assert_eq!(
                state,
                Some(RecordState::Confirmed),
                "case {i}: applied in PING"
            );
        } else {
            assert_eq!(state, None, "case {i}: not applied");
        }
    }
    assert_eq!(applied, 5, "every batch but case 2's went out at once");
    assert!(
        ping_intervention(&env, &decided[2].lp).await["progres_primerotransferstatus"].is_null()
    );
    assert_eq!(
        env.ledger.cursor(F12).await.unwrap(),
        None,
        "the cursor stays"
    );

    // With credentials accepted again, the next run sends only case 2's decision.
    refuse.set(&[]);
    env.clear_requests().await;
    let next = env.run(Flow::DecisionsToProgres).await;
    assert_eq!((next.confirmed, next.skipped), (1, 5), "{next}");
}

#[tokio::test]
async fn the_next_page_is_sent_while_a_batch_of_the_previous_page_is_still_out() {
    let refuse = Refuse {
        delay: Duration::from_millis(700),
        ..Refuse::default()
    };
    let env = env_with(refuse.clone(), 3, |c| c.ping.batch_size = 3).await;
    // Page 1 = cases 5, 4, 3 (one batch), page 2 = cases 2, 1, 0 (one batch). PING takes its
    // time over page 1's batch.
    let decided = seed_decisions(&env, 6, Some(4)).await;
    let (first, second) = (&decided[5].case_id, &decided[2].case_id);
    *refuse.slow.lock().unwrap() = vec![first.clone()];
    *refuse.watched.lock().unwrap() = vec![first.clone(), second.clone()];
    let report = env.run(Flow::DecisionsToProgres).await;
    assert_eq!(report.confirmed, 6, "{report}");
    let events = refuse.events.lock().unwrap().clone();
    assert_eq!(
        events,
        [
            format!("in {first}"),
            format!("in {second}"),
            format!("out {second}"),
            format!("out {first}")
        ],
        "page 2's batch did not wait for page 1's"
    );
    for d in &decided {
        assert_eq!(state_of(&env, &d.key()).await, Some(RecordState::Confirmed));
    }
    assert_eq!(
        env.ledger.cursor(F12).await.unwrap().as_deref(),
        Some("2026-03-01T10:00:05Z")
    );
}

/// A page's last decision waits in a short batch for the next page's; when the pages after it
/// have nothing to send (here 31 pages of one case each whose status is unknown, each passing
/// the gate that waits for the page 30 before it to be committed), the short batch goes out
/// instead of waiting for ever, and the run ends with every decision recorded.
#[tokio::test]
async fn a_short_batch_is_sent_when_the_pages_after_it_have_nothing_to_send() {
    let env = env_with(Refuse::default(), 1, |c| c.ping.batch_size = 2).await;
    // Newest first, one case a page: case 32, then 31 cases whose row has an unknown status
    // ("declined"), then case 0.
    let (mut ivs, mut cases, mut keys) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..33 {
        let (lp, case_uuid, unique_id) = (guid(), guid(), guid());
        let number = format!("803-26-PRTITV-81{i:05}");
        let status = if i == 0 || i == 32 {
            ivs.push(known_intervention(&lp, &number, &format!("ind-{number}")));
            keys.push(format!("{case_uuid}:{unique_id}:accepted"));
            "accepted"
        } else {
            "declined"
        };
        let at = format!("2026-03-01T10:00:{i:02}.000Z");
        cases.push(json!({
            "id": case_uuid,
            "case_id": format!("case-{i:03}"),
            "module_id": "primeromodule-cp",
            "owned_by": format!("cw_{i}"),
            "created_at": at,
            "last_updated_at": at,
            "services_section": [{
                "unique_id": unique_id,
                "service_type": "food",
                "service_request_agency": "UNHCR",
                "service_referral": "external_referral",
                "unhcr_referral_status": status,
                "progres_interventionnumber": format!("{number},{lp},{BU}"),
            }]
        }));
    }
    env.ping_post("/_sim/seed", json!({ "interventions": ivs }))
        .await;
    env.primero_post("/_sim/seed", json!({ "cases": cases }))
        .await;
    let report = tokio::time::timeout(Duration::from_secs(30), env.run(Flow::DecisionsToProgres))
        .await
        .expect("the run ends");
    assert_eq!(report.confirmed, 2, "{report}");
    assert_eq!(report.rejected.get("unknown_status"), Some(&31), "{report}");
    for key in &keys {
        assert_eq!(state_of(&env, key).await, Some(RecordState::Confirmed));
    }
}
