//! Flow 2.1 `referrals-to-progres` when PING may have taken a batch whose answer never
//! arrived, against both simulators over real HTTP, with the PING simulator in its
//! pessimistic `async_repeat = duplicate` mode (a repeated `/asyncdata` create makes a second
//! proGres referral with the same `progres_orgreferralid`, so any blind re-send shows up as
//! a duplicate row). The batch is applied and then its answer is lost (a 504, a dropped
//! connection), or the answer accepts it without an `SPHTransactionId`: the records end the
//! run failed as `ingestion_unconfirmed` after one POST, and the next run finds them in
//! proGres (SHP-2795/2796) and confirms them without sending them again. Each referral exists
//! exactly once in proGres throughout.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use pp_flows::Flow;
use pp_ledger::RecordState;
use serde_json::{json, Value};
use support::TestEnv;

const F21: Flow = Flow::ReferralsToProgres;

/// The PING simulator in `duplicate` mode, whatever its default.
async fn start(tweak: impl FnOnce(&mut pp_config::Config)) -> TestEnv {
    let env = TestEnv::start_with(tweak).await;
    env.ping
        .set_options(&json!({"async_repeat": "duplicate"}))
        .unwrap();
    env
}

/// Creates a Primero case referred to UNHCR with `services` (simulator caseworker action);
/// returns the service rows' `unique_id`s.
async fn refer(env: &TestEnv, services: Value) -> Vec<String> {
    let case = env
        .primero_post(
            "/_sim/actions/refer-to-unhcr",
            json!({"services": services}),
        )
        .await;
    case["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["unique_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Four cases with one referred service each.
async fn refer_four(env: &TestEnv) -> Vec<String> {
    let mut uids = Vec::new();
    for _ in 0..4 {
        uids.extend(refer(env, json!([{"service_type": "medical"}])).await);
    }
    uids
}

async fn record(env: &TestEnv, key: &str) -> pp_ledger::Record {
    env.ledger
        .get(F21.name(), key)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no ledger record {key}"))
}

/// `/asyncdata` requests the PING simulator logged since its log was last cleared.
fn asyncdata_requests(env: &TestEnv) -> Vec<pp_sim_ping::RequestLogEntry> {
    env.ping
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "asyncdata")
        .collect()
}

/// Waits until PING has processed the transactions `txs` (the simulator applies an
/// asynchronous batch after its answer); returns the `progres_orgreferralid`s of their
/// records.
async fn processed(env: &TestEnv, txs: &[String]) -> BTreeSet<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = env.ping.state_json();
        let found: Vec<Value> = state["transactions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| {
                txs.iter()
                    .any(|tx| t["SPHTransactionId"] == json!(tx.as_str()))
            })
            .cloned()
            .collect();
        if found.len() == txs.len() && found.iter().all(|t| t["Status"] == json!("Processed")) {
            return found
                .iter()
                .flat_map(|t| t["records"].as_array().unwrap().clone())
                .map(|r| {
                    assert_eq!(r["RecordStatus"], json!("Success"), "{r}");
                    r["Data"]["progres_orgreferralid"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect();
        }
        assert!(Instant::now() < deadline, "not processed: {found:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that proGres holds exactly one interoperability referral for each of `uids` and
/// no other; returns their ids by service.
fn one_referral_each(env: &TestEnv, uids: &[String], when: &str) -> Vec<(String, String)> {
    let state = env.ping.state_json();
    let refs = state["interop_referrals"].as_array().unwrap();
    assert_eq!(refs.len(), uids.len(), "{when}: {refs:?}");
    uids.iter()
        .map(|uid| {
            let rows: Vec<&Value> = refs
                .iter()
                .filter(|r| r["progres_orgreferralid"] == json!(uid))
                .collect();
            assert_eq!(rows.len(), 1, "{when}: {uid} in proGres {rows:?}");
            let id = rows[0]["progres_interoperabilityreferralid"]
                .as_str()
                .unwrap()
                .to_owned();
            (uid.clone(), id)
        })
        .collect()
}

/// The next run finds the unconfirmed records in proGres and confirms them with the
/// referral PING created, without any `/asyncdata`; every referral stays single; a run after
/// that has nothing to do.
async fn found_not_resent(env: &TestEnv, uids: &[String], unconfirmed: usize) {
    env.clear_requests().await;
    let later = env.run_later(F21, 10).await;
    assert_eq!(
        (later.confirmed, later.delivered, later.failed),
        (unconfirmed as u64, 0, 0),
        "{later}"
    );
    assert_eq!(later.rejected_total() + later.conflicts, 0, "{later}");
    assert!(
        asyncdata_requests(env).is_empty(),
        "found in proGres, not sent again"
    );
    let log = env.ping.requests();
    for shp in ["SHP-2795", "SHP-2796"] {
        assert!(
            log.iter().any(|r| r.shp.as_deref() == Some(shp)),
            "proGres searched with {shp}"
        );
    }
    for (uid, interop) in one_referral_each(env, uids, "after the search") {
        let rec = record(env, &uid).await;
        assert_eq!(rec.state, RecordState::Confirmed, "{uid}");
        assert_eq!(
            rec.dest_ids.get("progres_interoperabilityreferralid"),
            Some(&interop),
            "{uid}"
        );
    }

    let again = env.run_later(F21, 60).await;
    assert_eq!(
        (again.confirmed, again.delivered, again.failed),
        (0, 0, 0),
        "{again}"
    );
    assert!(asyncdata_requests(env).is_empty(), "nothing sent");
    one_referral_each(env, uids, "after another run");
}

/// Four records in two batches of two; the first `/asyncdata` is applied by PING and then
/// its answer is lost by `fault`.
async fn answer_of_the_first_batch_lost(fault: Value, label: &str) {
    let env = start(|c| c.ping.batch_size = 2).await;
    let uids = refer_four(&env).await;
    env.ping_post("/_sim/faults", json!({"rules": [fault]}))
        .await;

    let first = env.run(F21).await;
    assert_eq!(
        (first.failed, first.confirmed, first.rejected_total()),
        (2, 2, 0),
        "{label}: {first}"
    );
    // Two batches, each sent once: the one whose answer was lost was not repeated.
    let sends = asyncdata_requests(&env);
    assert_eq!(sends.len(), 2, "{label}: {sends:?}");
    let lost: Vec<_> = sends
        .iter()
        .filter(|r| r.fault.as_deref().is_some_and(|f| f.starts_with(label)))
        .collect();
    assert_eq!(lost.len(), 1, "{label}: {sends:?}");
    let lost_tx = lost[0]
        .sph_transaction_id
        .clone()
        .expect("the sim logs the lost answer's transaction");
    let all_tx: Vec<String> = sends
        .iter()
        .map(|r| r.sph_transaction_id.clone().unwrap())
        .collect();
    processed(&env, &all_tx).await;
    let unconfirmed = processed(&env, std::slice::from_ref(&lost_tx)).await;
    assert_eq!(unconfirmed.len(), 2, "{label}: {unconfirmed:?}");
    for uid in &uids {
        let rec = record(&env, uid).await;
        if unconfirmed.contains(uid) {
            assert_eq!(rec.state, RecordState::Failed, "{label}: {uid}");
            assert_eq!(
                rec.reason_code.as_deref(),
                Some("ingestion_unconfirmed"),
                "{label}: {uid}"
            );
            assert!(rec.next_retry_at.is_some(), "{label}: {uid}");
        } else {
            assert_eq!(rec.state, RecordState::Confirmed, "{label}: {uid}");
        }
    }
    // PING applied the batch whose answer was lost: one referral per service, no twin.
    one_referral_each(&env, &uids, label);

    env.ping_delete("/_sim/faults").await;
    found_not_resent(&env, &uids, unconfirmed.len()).await;
}

#[tokio::test]
async fn a_504_after_ping_applied_the_batch_is_found_in_progres_not_sent_again() {
    answer_of_the_first_batch_lost(
        json!({"endpoint": "asyncdata", "kind": "apply_then_status", "status": 504, "times": 1}),
        "apply_then_status:504",
    )
    .await;
}

#[tokio::test]
async fn a_connection_lost_after_ping_applied_the_batch_is_found_in_progres_not_sent_again() {
    answer_of_the_first_batch_lost(
        json!({"endpoint": "asyncdata", "kind": "apply_then_drop", "times": 1}),
        "apply_then_drop",
    )
    .await;
}

#[tokio::test]
async fn an_acceptance_without_a_transaction_id_is_unconfirmed_never_rejected_or_duplicated() {
    // PING is given 90 s to process a batch: an unconfirmed one waits at least twice that
    // before proGres is searched for it, longer than the first retry backoff (60 s).
    let env = start(|c| c.ping.check_status_timeout = std::time::Duration::from_secs(90)).await;
    // Two services of one case go to different batches (one ExternalId per batch): two POSTs.
    let mut uids = refer(
        &env,
        json!([{"service_type": "medical"}, {"service_type": "shelter"}]),
    )
    .await;
    uids.extend(refer(&env, json!([{"service_type": "medical"}])).await);
    uids.extend(refer(&env, json!([{"service_type": "medical"}])).await);
    env.ping
        .set_options(&json!({"omit_transaction_id": true}))
        .unwrap();

    let first = env.run(F21).await;
    assert_eq!(first.rejected_total(), 0, "{first}");
    assert_eq!(
        (first.failed, first.delivered, first.confirmed),
        (4, 0, 0),
        "{first}"
    );
    let sends = asyncdata_requests(&env);
    assert_eq!(sends.len(), 2, "each batch sent once: {sends:?}");
    assert!(sends.iter().all(|r| r.status == Some(200)), "{sends:?}");
    for uid in &uids {
        let rec = record(&env, uid).await;
        assert_eq!(rec.state, RecordState::Failed, "{uid}");
        assert_eq!(
            rec.reason_code.as_deref(),
            Some("ingestion_unconfirmed"),
            "{uid}"
        );
        // Not searched for before PING has had twice its processing time: an early search
        // would miss a queued batch.
        let wait = rec.next_retry_at.expect("a retry time") - chrono::Utc::now();
        assert!(
            wait > chrono::Duration::seconds(170),
            "{uid}: due in {wait}"
        );
    }
    // A run right away neither searches nor sends.
    env.clear_requests().await;
    let early = env.run(F21).await;
    assert_eq!((early.confirmed, early.delivered), (0, 0), "{early}");
    assert!(asyncdata_requests(&env).is_empty(), "nothing sent again");
    // PING accepted both batches, though it named neither transaction.
    let txs: Vec<String> = sends
        .iter()
        .map(|r| r.sph_transaction_id.clone().unwrap())
        .collect();
    let applied = processed(&env, &txs).await;
    assert_eq!(applied, uids.iter().cloned().collect::<BTreeSet<_>>());
    one_referral_each(&env, &uids, "omit_transaction_id");

    env.ping
        .set_options(&json!({"omit_transaction_id": false}))
        .unwrap();
    found_not_resent(&env, &uids, uids.len()).await;
}
