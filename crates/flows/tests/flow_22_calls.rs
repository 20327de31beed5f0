//! Flow 2.2 `decisions-to-primero`: how many Primero calls a run makes and how its batched
//! case search behaves, against both simulators over real HTTP. One search per 50 distinct
//! `case_id`s, one referral listing and at most one PATCH per decision; returned cases are
//! matched to decisions by `case_id` (a twin in the answer parks that decision alone as
//! `duplicate_cases`); a failing search concerns its own chunk only (transient → failed,
//! refused → halved until the refused `case_id` is alone, auth → the run ends before any
//! PATCH); a run asked to stop searches nothing.
//!
//! Two cases sharing a `case_id` cannot be stored in the Primero simulator (it refuses the
//! second, as Primero's generated ids never collide in practice), so the duplicate test puts a
//! small pass-through proxy in front of it that adds such a twin to case listings.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use pp_flows::Flow;
use pp_ledger::RecordState;
use serde_json::{json, Value};
use support::{proxy, TestEnv};

const F22: Flow = Flow::DecisionsToPrimero;
const ACCEPTED: i64 = 125080001;
const REJECTED: i64 = 125080002;

/// One decided proGres referral and the Primero referral it answers.
struct Decided {
    interop: String,
    referral: String,
    case_id: String,
    code: i64,
}

impl Decided {
    fn key(&self) -> String {
        format!("{}:{}", self.interop, self.code)
    }
}

/// Cases 1 to `count` in Primero, each with one service whose referral is accepted in PING.
async fn accepted_cases(env: &TestEnv, count: u32) -> Vec<Decided> {
    let mut decided = Vec::new();
    for n in 1..=count {
        decided.extend(decided_case(env, n, &[ACCEPTED]).await);
    }
    decided
}

/// Case `n` in Primero (`case_id` derived from `n`) with `services` referred service rows,
/// each with an interoperability referral in PING decided with `codes[i]`.
async fn decided_case(env: &TestEnv, n: u32, codes: &[i64]) -> Vec<Decided> {
    let case_id = format!("c0ffee00-0000-4000-8000-{n:012}");
    let services: Vec<Value> = (0..codes.len())
        .map(|i| {
            json!({"service_type": "medical",
                   "unique_id": format!("5e5e5e5e-0000-4{i:03}-8000-{n:012}")})
        })
        .collect();
    let created = env
        .primero_post(
            "/_sim/actions/refer-to-unhcr",
            json!({"case": {"case_id": case_id}, "services": services}),
        )
        .await;
    let mut out = Vec::new();
    let mut seeded = Vec::new();
    for (i, code) in codes.iter().enumerate() {
        let s = &created["services"][i];
        let interop = format!("1a2b3c4d-0000-4{i:03}-8000-{n:012}");
        seeded.push(json!({
            "progres_interoperabilityreferralid": interop,
            "progres_interoperabilityreferralstatus": code,
            "progres_offlineid": case_id,
            "progres_orgreferralid": s["unique_id"]}));
        out.push(Decided {
            interop,
            referral: s["referral_id"].as_str().unwrap().to_owned(),
            case_id: case_id.clone(),
            code: *code,
        });
    }
    env.ping
        .seed(json!({ "interop_referrals": seeded }))
        .await
        .unwrap();
    out
}

/// The Primero simulator's logged requests of one endpoint (each with its query string).
async fn primero_requests(env: &TestEnv, endpoint: &str) -> Vec<Value> {
    env.primero_get(&format!("/_sim/requests?endpoint={endpoint}"))
        .await
        .as_array()
        .cloned()
        .unwrap()
}

async fn primero_calls(env: &TestEnv, endpoint: &str) -> usize {
    primero_requests(env, endpoint).await.len()
}

async fn primero_referral_status(env: &TestEnv, referral_id: &str) -> Value {
    env.primero_get("/_sim/state").await["referrals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == json!(referral_id))
        .unwrap_or_else(|| panic!("no Primero referral {referral_id}"))["status"]
        .clone()
}

async fn state(env: &TestEnv, key: &str) -> RecordState {
    env.ledger
        .get(F22.name(), key)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no ledger record {key}"))
        .state
}

async fn set_primero_faults(env: &TestEnv, rules: Value) {
    env.primero_post("/_sim/faults", json!({ "rules": rules }))
        .await;
}

async fn clear_primero_faults(env: &TestEnv) {
    env.primero_delete("/_sim/faults").await;
}

/// The `case_id` values one logged case search asked for.
fn searched_case_ids(request: &Value) -> Vec<String> {
    let query = request["query"].as_str().unwrap_or_default();
    let url = reqwest::Url::parse(&format!("http://sim/?{query}")).unwrap();
    url.query_pairs()
        .filter(|(k, _)| k.starts_with("case_id"))
        .map(|(_, v)| v.into_owned())
        .collect()
}

#[tokio::test]
async fn a_run_makes_one_case_search_per_fifty_case_ids_one_listing_and_one_patch_per_decision() {
    let env = TestEnv::start().await;
    let mut decided = Vec::new();
    // 55 cases with one decision each and one case with two: 57 decisions, 56 case_ids.
    for n in 1..=55u32 {
        let code = if n % 3 == 0 { REJECTED } else { ACCEPTED };
        decided.extend(decided_case(&env, n, &[code]).await);
    }
    decided.extend(decided_case(&env, 56, &[ACCEPTED, REJECTED]).await);
    let decisions = decided.len();
    env.clear_requests().await;

    let report = env.run(F22).await;
    assert_eq!(report.confirmed, decisions as u64, "{report}");
    for d in &decided {
        assert_eq!(state(&env, &d.key()).await, RecordState::Confirmed);
        let wanted = if d.code == ACCEPTED {
            "accepted"
        } else {
            "rejected"
        };
        assert_eq!(primero_referral_status(&env, &d.referral).await, wanted);
    }

    // ceil(56 / 50) = 2 searches; one listing and one PATCH per decision, nothing more.
    let searches = primero_requests(&env, "cases_list").await;
    assert_eq!(searches.len(), 2, "{searches:?}");
    let mut asked: Vec<String> = searches.iter().flat_map(searched_case_ids).collect();
    let per_search: Vec<usize> = searches
        .iter()
        .map(|s| searched_case_ids(s).len())
        .collect();
    assert!(per_search.iter().all(|n| *n <= 50), "{per_search:?}");
    asked.sort();
    let mut expected: Vec<String> = decided.iter().map(|d| d.case_id.clone()).collect();
    expected.sort();
    expected.dedup();
    assert_eq!(asked, expected, "every case_id asked for once");
    assert_eq!(primero_calls(&env, "referrals_list").await, decisions);
    assert_eq!(primero_calls(&env, "referral_patch").await, decisions);
    assert_eq!(primero_calls(&env, "case_get").await, 0);
    let all = env
        .primero_get("/_sim/requests")
        .await
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        all,
        2 + 2 * decisions,
        "Primero calls: {all} for {decisions} decisions"
    );
}

#[tokio::test]
async fn a_referral_patch_is_verified_without_a_second_listing() {
    let env = TestEnv::start().await;
    let accept = decided_case(&env, 1, &[ACCEPTED]).await.remove(0);
    let refused = decided_case(&env, 2, &[ACCEPTED]).await.remove(0);
    // The UNHCR caseworker rejected the second one in Primero meanwhile: Primero answers the
    // PATCH with the referral unchanged (R8).
    let case = env.primero_get("/_sim/state").await["referrals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == json!(refused.referral))
        .unwrap()["record_id"]
        .clone();
    env.primero_post(
        "/_sim/actions/set-referral-status",
        json!({"case": case, "referral_id": refused.referral, "status": "rejected",
               "rejected_reason": "duplicate", "user": "unhcr_cw"}),
    )
    .await;
    env.clear_requests().await;
    let report = env.run(F22).await;
    assert_eq!(report.confirmed, 1, "{report}");
    assert_eq!(report.rejected["transition_refused"], 1, "{report}");
    assert_eq!(state(&env, &accept.key()).await, RecordState::Confirmed);
    assert_eq!(state(&env, &refused.key()).await, RecordState::Rejected);
    // The refused one is seen in its listing as not accepted yet, so it is PATCHed; the
    // answer alone shows the refusal.
    assert_eq!(primero_calls(&env, "referral_patch").await, 2);
    assert_eq!(primero_calls(&env, "referrals_list").await, 2);
    assert_eq!(primero_calls(&env, "cases_list").await, 1);
}

/// A pass-through HTTP/1.1 proxy in front of `upstream` (set once the simulator runs) that
/// adds to every case listing a twin (another record `id`, the same `case_id`) of each case
/// whose `case_id` is in `twins`. One request per connection.
async fn twin_proxy(upstream: Arc<Mutex<String>>, twins: HashSet<String>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let twins = Arc::new(twins);
    let http = reqwest::Client::new();
    proxy::serve(listener, move |request: proxy::Request| {
        let upstream = upstream.lock().unwrap().clone();
        let (twins, http) = (twins.clone(), http.clone());
        async move {
            let mut answer = proxy::forward(&http, &upstream, &request).await?;
            if request.method == "GET" && request.path() == "/api/v2/cases" && answer.status == 200
            {
                let mut v: Value = serde_json::from_slice(&answer.body).unwrap();
                let data = v["data"].as_array().cloned().unwrap_or_default();
                let mut out = Vec::new();
                for case in data {
                    if case["case_id"].as_str().is_some_and(|c| twins.contains(c)) {
                        let mut twin = case.clone();
                        twin["id"] = json!(uuid::Uuid::new_v4().to_string());
                        out.push(twin);
                    }
                    out.push(case);
                }
                let added = out.len() - v["data"].as_array().map_or(0, Vec::len);
                if let Some(t) = v["metadata"]["total"].as_u64() {
                    v["metadata"]["total"] = json!(t + added as u64);
                }
                v["data"] = Value::Array(out);
                answer.body = serde_json::to_vec(&v).unwrap();
            }
            Some(answer)
        }
    });
    base
}

#[tokio::test]
async fn two_cases_with_one_case_id_park_only_that_decision_as_duplicate_cases() {
    let twin_case_id = format!("c0ffee00-0000-4000-8000-{:012}", 2);
    let upstream = Arc::new(Mutex::new(String::new()));
    let proxy = twin_proxy(upstream.clone(), HashSet::from([twin_case_id.clone()])).await;
    let env = TestEnv::start_with(|config| {
        *upstream.lock().unwrap() = config
            .primero
            .base_url
            .as_str()
            .trim_end_matches('/')
            .into();
        config.primero.base_url = proxy.parse().unwrap();
    })
    .await;
    let decided = accepted_cases(&env, 3).await;
    env.clear_requests().await;
    let report = env.run(F22).await;
    assert_eq!(report.confirmed, 2, "{report}");
    assert_eq!(report.conflicts, 1, "{report}");
    // One search for the three decisions (the proxy added the twin to its answer).
    assert_eq!(primero_calls(&env, "cases_list").await, 1);
    let twin = &decided[1];
    assert_eq!(twin.case_id, twin_case_id);
    let rec = env
        .ledger
        .get(F22.name(), &twin.key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.state, RecordState::Conflict);
    assert_eq!(rec.reason_code.as_deref(), Some("duplicate_cases"));
    let message = rec.message.unwrap_or_default();
    assert!(message.contains(&twin_case_id), "{message}");
    // Neither case is written to: the referral keeps its status.
    assert_eq!(
        primero_referral_status(&env, &twin.referral).await,
        "in_progress"
    );
    assert_eq!(primero_calls(&env, "referral_patch").await, 2);
    for d in [&decided[0], &decided[2]] {
        assert_eq!(state(&env, &d.key()).await, RecordState::Confirmed);
        assert_eq!(primero_referral_status(&env, &d.referral).await, "accepted");
    }
}

#[tokio::test]
async fn a_failing_case_search_fails_only_its_own_chunk() {
    // One request at a time: the first chunk's search meets every fault.
    let env = TestEnv::start_with(|config| {
        config.primero.http.max_concurrency = 1;
        config.primero.http.retry.max_attempts = 3;
    })
    .await;
    let decided = accepted_cases(&env, 51).await;
    set_primero_faults(
        &env,
        json!([{"endpoint": "cases_list", "kind": "status", "status": 503, "times": 3}]),
    )
    .await;
    env.clear_requests().await;
    let report = env.run(F22).await;
    // The first 50 case_ids share the failed search; the 51st went on.
    assert_eq!(report.failed, 50, "{report}");
    assert_eq!(report.confirmed, 1, "{report}");
    assert_eq!(primero_calls(&env, "cases_list").await, 4);
    let mut failed = 0;
    for d in &decided {
        let rec = env.ledger.get(F22.name(), &d.key()).await.unwrap().unwrap();
        if rec.state == RecordState::Failed {
            assert_eq!(rec.reason_code.as_deref(), Some("transient"));
            failed += 1;
        }
    }
    assert_eq!(failed, 50);
    clear_primero_faults(&env).await;
    let later = env.run_later(F22, 10).await;
    assert_eq!(later.confirmed, 50, "{later}");
}

#[tokio::test]
async fn a_refused_case_search_is_halved_and_a_case_id_refused_alone_is_rejected() {
    let env = TestEnv::start().await;
    accepted_cases(&env, 3).await;
    // Refused once: the halves are asked and every decision goes through.
    set_primero_faults(
        &env,
        json!([{"endpoint": "cases_list", "kind": "status", "status": 422, "times": 1}]),
    )
    .await;
    env.clear_requests().await;
    let report = env.run(F22).await;
    assert_eq!(report.confirmed, 3, "{report}");
    assert_eq!(report.rejected_total(), 0, "{report}");
    let searches = primero_requests(&env, "cases_list").await;
    let sizes: Vec<usize> = searches
        .iter()
        .map(|s| searched_case_ids(s).len())
        .collect();
    assert_eq!(sizes.len(), 3, "{sizes:?}");
    assert_eq!(sizes[0], 3, "{sizes:?}");
    assert_eq!(sizes[1] + sizes[2], 3, "{sizes:?}");

    // Refused every time: halved down to single case_ids, each decision rejected as a
    // refused request, nothing PATCHed.
    let more: Vec<Decided> = {
        let mut v = Vec::new();
        for n in 4..=6u32 {
            v.extend(decided_case(&env, n, &[REJECTED]).await);
        }
        v
    };
    set_primero_faults(
        &env,
        json!([{"endpoint": "cases_list", "kind": "status", "status": 422}]),
    )
    .await;
    env.clear_requests().await;
    let refused = env.run(F22).await;
    assert_eq!(refused.rejected["validation_error"], 3, "{refused}");
    assert_eq!(primero_calls(&env, "cases_list").await, 5);
    assert_eq!(primero_calls(&env, "referral_patch").await, 0);
    for d in &more {
        assert_eq!(state(&env, &d.key()).await, RecordState::Rejected);
    }
}

#[tokio::test]
async fn an_auth_error_of_the_case_search_ends_the_run_before_any_patch() {
    let env = TestEnv::start().await;
    let decided = decided_case(&env, 1, &[ACCEPTED]).await.remove(0);
    set_primero_faults(
        &env,
        json!([{"endpoint": "cases_list", "kind": "status", "status": 401}]),
    )
    .await;
    env.clear_requests().await;
    let err = env.try_run(F22).await.unwrap_err();
    assert!(err.is_auth(), "{err}");
    assert_eq!(primero_calls(&env, "referrals_list").await, 0);
    assert_eq!(primero_calls(&env, "referral_patch").await, 0);
    assert_eq!(
        primero_referral_status(&env, &decided.referral).await,
        "in_progress"
    );
}

#[tokio::test]
async fn a_run_asked_to_stop_searches_nothing_and_the_next_run_applies_the_decisions() {
    let env = TestEnv::start().await;
    let decided = decided_case(&env, 1, &[ACCEPTED, REJECTED]).await;
    env.shutdown.send(true).unwrap();
    env.clear_requests().await;
    let stopped = env.run(F22).await;
    assert!(stopped.interrupted, "{stopped}");
    assert_eq!(stopped.delivered + stopped.failed, 0, "{stopped}");
    assert_eq!(primero_calls(&env, "cases_list").await, 0);
    assert_eq!(primero_calls(&env, "referral_patch").await, 0);
    for d in &decided {
        assert!(env
            .ledger
            .get(F22.name(), &d.key())
            .await
            .unwrap()
            .is_none());
    }
    env.shutdown.send(false).unwrap();
    let next = env.run(F22).await;
    assert_eq!(next.confirmed, 2, "{next}");
}
