//! Flows 2.1 `referrals-to-progres` and 2.2 `decisions-to-primero` against both simulators
//! over real HTTP: referrals confirmed by check-status (malformed `Data` string, the PING
//! simulator's default), agency matching, unmapped values, the caseworker policy, decisions
//! back to Primero with verified transitions and the synced write-back, unknown status codes,
//! retries of missing cases, the 2.1 cursor under concurrent and own writes, transient
//! faults, check-status timeouts and dry runs.

mod support;

use std::time::Duration;

use chrono::{DateTime, Utc};
use pp_config::{CaseworkerPolicy, FocalPoint};
use pp_flows::{run_flow, Flow, Report, RunOptions};
use pp_ledger::RecordState;
use serde_json::{json, Value};
use support::TestEnv;

const F21: Flow = Flow::ReferralsToProgres;
const F22: Flow = Flow::DecisionsToPrimero;

/// Creates a Primero case referred to UNHCR (simulator caseworker action).
async fn refer(env: &TestEnv, body: Value) -> Value {
    env.primero_post("/_sim/actions/refer-to-unhcr", body).await
}

fn service_ids(referred: &Value) -> Vec<String> {
    referred["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["unique_id"].as_str().unwrap().to_owned())
        .collect()
}

/// proGres interoperability referrals held by the PING simulator.
async fn interop_referrals(env: &TestEnv) -> Vec<Value> {
    env.ping_get("/_sim/state").await["interop_referrals"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn referral_by_org<'a>(refs: &'a [Value], unique_id: &str) -> &'a Value {
    refs.iter()
        .find(|r| r["progres_orgreferralid"] == json!(unique_id))
        .unwrap_or_else(|| panic!("no interop referral for {unique_id}"))
}

/// PING requests of one endpoint so far.
async fn ping_calls(env: &TestEnv, endpoint: &str) -> usize {
    env.ping_get("/_sim/requests")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["endpoint"] == json!(endpoint))
        .count()
}

async fn primero_calls(env: &TestEnv, endpoint: &str) -> usize {
    env.primero_get(&format!("/_sim/requests?endpoint={endpoint}"))
        .await
        .as_array()
        .unwrap()
        .len()
}

async fn record(env: &TestEnv, flow: Flow, key: &str) -> pp_ledger::Record {
    env.ledger
        .get(flow.name(), key)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no ledger record {key}"))
}

/// The proGres interoperability referral that 2.1 recorded for the service `uid`.
async fn interop_id(env: &TestEnv, uid: &str) -> String {
    record(env, F21, uid).await.dest_ids["progres_interoperabilityreferralid"].clone()
}

/// The Primero referral (by id) as the simulator holds it.
async fn primero_referral(env: &TestEnv, referral_id: &str) -> Value {
    env.primero_get("/_sim/state").await["referrals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == json!(referral_id))
        .cloned()
        .unwrap_or_else(|| panic!("no Primero referral {referral_id}"))
}

fn reasons(report: &Report) -> Vec<(String, String)> {
    report
        .attention
        .iter()
        .map(|l| (l.key.clone(), l.reason.clone().unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn two_referred_services_become_confirmed_interop_referrals_once() {
    let env = TestEnv::start().await;
    let case = refer(
        &env,
        json!({"case": {"name_first": "Nyakuoth", "name_last": "Gatluak", "sex": "female",
                         "date_of_birth": "2014-03-02", "unhcr_individual_no": "945-00012345",
                         "unhcr_id_no": "945-C00123", "telephone_current": "+251911000001",
                         "protection_concerns": ["caafag", "orphan", "rape"]},
               "services": [{"service_type": "medical", "service_referral_notes": "needs care"},
                            {"service_type": "shelter"}]}),
    )
    .await;
    let uids = service_ids(&case);

    let report = env.run(F21).await;
    assert_eq!(report.delivered, 2, "{report}");
    assert_eq!(report.confirmed, 2, "{report}");
    assert_eq!(report.rejected_total(), 0, "{report}");
    assert!(!report.ping_transaction_ids.is_empty());

    let refs = interop_referrals(&env).await;
    assert_eq!(refs.len(), 2);
    let case_id = case["case_id"].as_str().unwrap();
    let medical = referral_by_org(&refs, &uids[0]);
    assert_eq!(medical["progres_offlineid"], json!(case_id));
    assert_eq!(medical["progres_externalid"], json!(case_id));
    assert_eq!(medical["progres_externalguid"], case["id"]);
    assert_eq!(
        medical["progres_requestedservice"],
        json!("f98e1516-0406-e611-80d9-00155d34051a")
    );
    // First concern found in the map (orphan → unaccompanied or separated).
    assert_eq!(
        medical["progres_spneedcategory"],
        json!("abc5b4fb-8f76-e611-80c9-00155d340529")
    );
    assert_eq!(medical["progres_pocsex"], json!(125080000));
    assert_eq!(medical["progres_pocdateofbirth"], json!("2014-03-02"));
    assert_eq!(medical["progres_unhcrid"], json!("945-00012345"));
    assert_eq!(medical["progres_pocotheridnumber"], json!("945-C00123"));
    assert_eq!(medical["progres_reasonforreferral"], json!("needs care"));
    assert_eq!(medical["progres_orgreferredby"], json!("Primero CP"));
    // cw_amina's profile is complete: her position is sent.
    assert!(medical["progres_orgposition"].is_string());
    let shelter = referral_by_org(&refs, &uids[1]);
    assert_eq!(
        shelter["progres_reasonforreferral"],
        json!("Primero referral")
    );

    // Both appear in SHP-2795; the ledger holds the new proGres ids.
    let list = env.ctx.ping.retrieve("SHP-2795", &[]).await.unwrap();
    for uid in &uids {
        let rec = record(&env, F21, uid).await;
        assert_eq!(rec.state, RecordState::Confirmed);
        let interop = rec.dest_ids["progres_interoperabilityreferralid"].clone();
        assert!(list
            .rows
            .iter()
            .any(
                |r| r.get_text("progres_interoperabilityreferralid").as_deref() == Some(&interop)
            ));
    }

    // A second run sends nothing.
    let before = ping_calls(&env, "asyncdata").await;
    let again = env.run(F21).await;
    assert_eq!((again.delivered, again.confirmed), (0, 0), "{again}");
    assert_eq!(again.skipped, 2, "{again}");
    assert_eq!(ping_calls(&env, "asyncdata").await, before);
    assert_eq!(interop_referrals(&env).await.len(), 2);
}

#[tokio::test]
async fn check_status_items_that_state_no_outcome_confirm_nothing() {
    // Which keys a processed check-status item carries besides its inner Data is UNKNOWN
    // (ping-api.md 2.4). Items that name no status and no error must not be read as success.
    let env = TestEnv::start().await;
    env.ping_post(
        "/_sim/options",
        json!({"checkstatus_item_keys": "data_only"}),
    )
    .await;
    let case = refer(&env, json!({})).await;
    let uid = &service_ids(&case)[0];

    let report = env.run(F21).await;
    assert_eq!((report.delivered, report.confirmed), (1, 0), "{report}");
    let rec = record(&env, F21, uid).await;
    assert_eq!(rec.state, RecordState::Delivered);
    assert_eq!(rec.reason_code.as_deref(), Some("check_status_no_result"));
    // PING did create it, and it is not sent again while it waits for a result.
    assert_eq!(interop_referrals(&env).await.len(), 1);
    let again = env.run(F21).await;
    assert_eq!((again.delivered, again.confirmed), (0, 0), "{again}");
    assert_eq!(ping_calls(&env, "asyncdata").await, 1);
}

#[tokio::test]
async fn agency_matching_is_case_insensitive_and_unmapped_service_types_are_rejected() {
    let env = TestEnv::start().await;
    let case = refer(
        &env,
        json!({"services": [
            {"service_type": "medical", "service_implementing_agency": "unhcr"},
            {"service_type": "alternative_care"},
            {"service_type": "shelter", "service_implementing_agency": "UNICEF"}]}),
    )
    .await;
    let uids = service_ids(&case);
    let report = env.run(F21).await;
    assert_eq!(report.confirmed, 1, "{report}");
    assert_eq!(report.rejected["unmapped_service_type"], 1, "{report}");
    assert_eq!(report.excluded["not_implemented_by_unhcr"], 1, "{report}");
    let line = report.attention.iter().find(|l| l.key == uids[1]).unwrap();
    assert!(
        line.message
            .as_deref()
            .unwrap()
            .contains("alternative_care"),
        "{line:?}"
    );
    // No legal-support fallback: nothing was sent for it.
    let refs = interop_referrals(&env).await;
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0]["progres_orgreferralid"], json!(uids[0]));
    assert!(env
        .ledger
        .get(F21.name(), &uids[2])
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn configured_service_fallback_is_used_and_flagged() {
    let env = TestEnv::start_with(|c| {
        c.maps.fallbacks.service_to_progres =
            Some("e3a13f7d-0406-e611-80d9-00155d34051a".to_owned());
    })
    .await;
    let case = refer(
        &env,
        json!({"services": [{"service_type": "alternative_care"}]}),
    )
    .await;
    let report = env.run(F21).await;
    assert_eq!(report.confirmed, 1, "{report}");
    let rec = record(&env, F21, &service_ids(&case)[0]).await;
    assert!(rec.fallback_used);
}

#[tokio::test]
async fn sex_other_and_unknown_are_sent_as_progres_codes() {
    let env = TestEnv::start().await;
    let mut expected = Vec::new();
    for (sex, code) in [
        ("other_b25f252", 125080002),
        ("unknown_4b34795", 125080003),
        ("male", 125080001),
    ] {
        let case = refer(
            &env,
            json!({"case": {"name_first": "A", "sex": sex}, "services": [{"service_type": "medical"}]}),
        )
        .await;
        expected.push((service_ids(&case)[0].clone(), code));
    }
    env.clear_requests().await;
    let report = env.run(F21).await;
    assert_eq!(report.confirmed, 3, "{report}");
    assert_eq!(
        primero_calls(&env, "users").await,
        1,
        "users are read once per run"
    );
    assert_eq!(
        primero_calls(&env, "referrals_list").await,
        3,
        "one call per case"
    );
    let refs = interop_referrals(&env).await;
    for (uid, code) in expected {
        let r = referral_by_org(&refs, &uid);
        assert_eq!(r["progres_pocsex"], json!(code));
        assert_ne!(r["progres_pocsex"], json!("Unknown"));
    }
}

#[tokio::test]
async fn incomplete_caseworker_is_rejected_by_default() {
    let env = TestEnv::start().await;
    let case = refer(&env, json!({"owned_by": "cw_incomplete"})).await;
    let report = env.run(F21).await;
    assert_eq!(report.rejected["incomplete_caseworker"], 1, "{report}");
    let uid = &service_ids(&case)[0];
    let rec = record(&env, F21, uid).await;
    assert_eq!(rec.state, RecordState::Rejected);
    let msg = rec.message.unwrap();
    for field in ["email", "phone", "position", "cw_incomplete"] {
        assert!(msg.contains(field), "{msg}");
    }
    assert!(interop_referrals(&env).await.is_empty());
    // Rejected and unchanged: the next run leaves it alone.
    let again = env.run(F21).await;
    assert_eq!(again.rejected_total(), 0, "{again}");
    assert_eq!((again.held, again.skipped), (1, 0), "{again}");
}

#[tokio::test]
async fn focal_point_policy_substitutes_the_contact_and_flags_the_record() {
    let env = TestEnv::start_with(|c| {
        c.primero.on_incomplete_caseworker = CaseworkerPolicy::FocalPoint;
        c.primero.focal_point = Some(FocalPoint {
            name: "CP focal point".into(),
            position: "Child Protection Officer".into(),
            email: "cp.focal@example.org".into(),
            phone: "+251000000000".into(),
        });
    })
    .await;
    let case = refer(
        &env,
        json!({"owned_by": "cw_incomplete",
               "services": [{"service_type": "medical", "service_referral_notes": "urgent"}]}),
    )
    .await;
    let report = env.run(F21).await;
    assert_eq!(report.confirmed, 1, "{report}");
    let uid = &service_ids(&case)[0];
    let r = interop_referrals(&env).await;
    let r = referral_by_org(&r, uid);
    assert_eq!(r["progres_orgemail"], json!("cp.focal@example.org"));
    assert_eq!(r["progres_orgphonenumber"], json!("+251000000000"));
    assert_eq!(r["progres_orgposition"], json!("Child Protection Officer"));
    let reason = r["progres_reasonforreferral"].as_str().unwrap();
    assert!(reason.starts_with("urgent"), "{reason}");
    assert!(
        reason
            .contains("contact details of the Primero focal point; caseworker profile incomplete"),
        "{reason}"
    );
    assert!(record(&env, F21, uid).await.contact_substituted);
}

#[tokio::test]
async fn progres_decisions_reach_primero_and_are_marked_synced_once() {
    let env = TestEnv::start().await;
    let case = refer(
        &env,
        json!({"services": [{"service_type": "medical"}, {"service_type": "shelter"}]}),
    )
    .await;
    let uids = service_ids(&case);
    let referral_ids: Vec<String> = case["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["referral_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(env.run(F21).await.confirmed, 2);
    // Not decided yet in proGres: counted as waiting, nothing sent.
    let undecided = env.run(F22).await;
    assert_eq!(undecided.waiting, 2, "{undecided}");
    assert_eq!(
        undecided.delivered + undecided.rejected_total(),
        0,
        "{undecided}"
    );
    assert_eq!(primero_calls(&env, "referral_patch").await, 0);
    let accepted_id = interop_id(&env, &uids[0]).await;
    let rejected_id = interop_id(&env, &uids[1]).await;
    env.ping_post(
        "/_sim/actions/decide-referral",
        json!({"referral_id": accepted_id, "decision": "accept"}),
    )
    .await;
    env.ping_post(
        "/_sim/actions/decide-referral",
        json!({"referral_id": rejected_id, "decision": "reject",
               "reason": "Individual Not Found", "comment": "No match in proGres"}),
    )
    .await;

    let report = env.run(F22).await;
    assert_eq!(report.delivered, 2, "{report}");
    assert_eq!(report.confirmed, 2, "{report}");
    assert_eq!(report.rejected_total(), 0, "{report}");

    let accepted = primero_referral(&env, &referral_ids[0]).await;
    assert_eq!(accepted["status"], json!("accepted"));
    let rejected = primero_referral(&env, &referral_ids[1]).await;
    assert_eq!(rejected["status"], json!("rejected"));
    assert_eq!(
        rejected["rejected_reason"],
        json!("Individual Not Found — No match in proGres")
    );
    let refs = interop_referrals(&env).await;
    for id in [&accepted_id, &rejected_id] {
        let r = refs
            .iter()
            .find(|r| r["progres_interoperabilityreferralid"] == json!(id))
            .unwrap();
        assert_eq!(
            r["progres_interoperabilityreferralstatus"],
            json!(125080003)
        );
        assert_eq!(
            r["progres_comments"],
            json!("Referral decision synced with PRIMERO")
        );
    }
    assert_eq!(
        record(&env, F22, &format!("{accepted_id}:125080001"))
            .await
            .state,
        RecordState::Confirmed
    );

    // Nothing left to do: no PATCH, no write-back.
    let patches = primero_calls(&env, "referral_patch").await;
    let data = ping_calls(&env, "data").await;
    let again = env.run(F22).await;
    assert_eq!((again.delivered, again.confirmed), (0, 0), "{again}");
    assert_eq!(primero_calls(&env, "referral_patch").await, patches);
    assert_eq!(ping_calls(&env, "data").await, data);

    // 2.2's PATCHes bumped the case's last_updated_at: 2.1 re-reads it and sends nothing.
    let asyncdata = ping_calls(&env, "asyncdata").await;
    let r21 = env.run(F21).await;
    assert_eq!(r21.delivered, 0, "{r21}");
    assert_eq!(r21.skipped, 2, "{r21}");
    assert_eq!(ping_calls(&env, "asyncdata").await, asyncdata);
}

#[tokio::test]
async fn an_unknown_status_code_is_rejected_never_accepted() {
    let env = TestEnv::start().await;
    let case = refer(&env, json!({})).await;
    assert_eq!(env.run(F21).await.confirmed, 1);
    let uid = &service_ids(&case)[0];
    let interop = interop_id(&env, uid).await;
    env.ping_post(
        "/_sim/actions/set-referral-status",
        json!({"referral_id": interop, "status": 125080009}),
    )
    .await;
    let report = env.run(F22).await;
    assert_eq!(report.rejected["unknown_status"], 1, "{report}");
    let line = &report.attention[0];
    assert_eq!(line.key, format!("{interop}:125080009"));
    assert!(line.message.as_deref().unwrap().contains("125080009"));
    let referral_id = case["services"][0]["referral_id"].as_str().unwrap();
    assert_eq!(
        primero_referral(&env, referral_id).await["status"],
        json!("in_progress")
    );
    assert_eq!(ping_calls(&env, "data").await, 0);
    // The next run finds the same code: held, not rejected again.
    let again = env.run(F22).await;
    assert_eq!((again.held, again.rejected_total()), (1, 0), "{again}");
}

#[tokio::test]
async fn a_decision_whose_case_does_not_exist_yet_fails_then_succeeds() {
    let env = TestEnv::start().await;
    let case_id = "c0ffee00-0000-4000-8000-000000000001";
    let unique_id = "5e5e5e5e-0000-4000-8000-000000000002";
    let interop = "1a2b3c4d-0000-4000-8000-000000000003";
    env.ping
        .seed(json!({"interop_referrals": [{
            "progres_interoperabilityreferralid": interop,
            "progres_interoperabilityreferralstatus": 125080001,
            "progres_offlineid": case_id,
            "progres_orgreferralid": unique_id}]}))
        .await
        .unwrap();
    let key = format!("{interop}:125080001");

    let first = env.run(F22).await;
    assert_eq!(first.failed, 1, "{first}");
    assert_eq!(
        reasons(&first),
        vec![(key.clone(), "case_not_found".into())]
    );
    let rec = record(&env, F22, &key).await;
    assert_eq!(rec.state, RecordState::Failed);
    assert!(rec.next_retry_at.is_some());

    // Not due yet: the next run leaves it alone.
    let early = env.run(F22).await;
    assert_eq!(early.failed + early.delivered, 0, "{early}");

    // The case appears in Primero (with its referred service row).
    let created = refer(
        &env,
        json!({"case": {"case_id": case_id},
               "services": [{"service_type": "medical", "unique_id": unique_id}]}),
    )
    .await;
    let later = env.run_later(F22, 10).await;
    assert_eq!(later.confirmed, 1, "{later}");
    let referral_id = created["services"][0]["referral_id"].as_str().unwrap();
    assert_eq!(
        primero_referral(&env, referral_id).await["status"],
        json!("accepted")
    );
    assert_eq!(record(&env, F22, &key).await.state, RecordState::Confirmed);
}

#[tokio::test]
async fn a_missing_referral_fails_and_is_retried() {
    let env = TestEnv::start().await;
    let case = refer(&env, json!({})).await;
    let interop = "1a2b3c4d-0000-4000-8000-000000000004";
    env.ping
        .seed(json!({"interop_referrals": [{
            "progres_interoperabilityreferralid": interop,
            "progres_interoperabilityreferralstatus": 125080002,
            "progres_offlineid": case["case_id"],
            "progres_orgreferralid": "5e5e5e5e-0000-4000-8000-00000000dead"}]}))
        .await
        .unwrap();
    let report = env.run(F22).await;
    assert_eq!(
        reasons(&report),
        vec![(format!("{interop}:125080002"), "referral_not_found".into())]
    );
    assert_eq!(report.failed, 1);
}

#[tokio::test]
async fn a_refused_transition_is_reported_and_progres_is_not_marked_synced() {
    let env = TestEnv::start().await;
    let case = refer(&env, json!({})).await;
    assert_eq!(env.run(F21).await.confirmed, 1);
    let uid = &service_ids(&case)[0];
    let interop = interop_id(&env, uid).await;
    let referral_id = case["services"][0]["referral_id"].as_str().unwrap();
    // The UNHCR caseworker already rejected it in Primero; proGres accepts it.
    env.primero_post(
        "/_sim/actions/set-referral-status",
        json!({"case": case["id"], "referral_id": referral_id, "status": "rejected",
               "rejected_reason": "duplicate", "user": "unhcr_cw"}),
    )
    .await;
    env.ping_post(
        "/_sim/actions/decide-referral",
        json!({"referral_id": interop, "decision": "accept"}),
    )
    .await;
    let report = env.run(F22).await;
    assert_eq!(report.rejected["transition_refused"], 1, "{report}");
    assert_eq!(report.confirmed, 0);
    assert_eq!(ping_calls(&env, "data").await, 0);
    let r = interop_referrals(&env).await;
    let r = referral_by_org(&r, uid);
    assert_eq!(
        r["progres_interoperabilityreferralstatus"],
        json!(125080001)
    );
    assert_eq!(
        primero_referral(&env, referral_id).await["status"],
        json!("rejected")
    );
}

#[tokio::test]
async fn cursor_is_safe_against_updates_during_the_run() {
    let env = TestEnv::start().await;
    let first = refer(&env, json!({})).await;
    // Slow referral reads keep the run busy while a caseworker refers another child.
    env.primero_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "referrals_list", "kind": "latency", "ms": 400}]}),
    )
    .await;
    let (report, second) = tokio::join!(env.run(F21), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        refer(&env, json!({})).await
    });
    env.primero_delete("/_sim/faults").await;
    let cursor = env.ledger.cursor(F21.name()).await.unwrap().unwrap();
    let cursor: DateTime<Utc> = cursor.parse().unwrap();
    // The cursor comes from the data seen, not from the clock at the end of the run.
    assert!(report.confirmed >= 1, "{report}");
    let state = env.primero_get("/_sim/state").await;
    let updated = |id: &Value| -> DateTime<Utc> {
        let c = state["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == *id)
            .unwrap();
        c["last_updated_at"].as_str().unwrap().parse().unwrap()
    };
    assert!(cursor <= updated(&second["id"]));
    assert!(cursor >= updated(&first["id"]));

    let next = env.run(F21).await;
    assert_eq!(report.confirmed + next.confirmed, 2, "{report}\n{next}");
    let refs = interop_referrals(&env).await;
    assert_eq!(refs.len(), 2);
    for c in [&first, &second] {
        let uid = &service_ids(c)[0];
        referral_by_org(&refs, uid);
        assert_eq!(record(&env, F21, uid).await.state, RecordState::Confirmed);
    }
}

/// Asserts that each of `uids` is failed as `ingestion_unconfirmed`, due for a later run.
async fn assert_unconfirmed(env: &TestEnv, uids: &[String], when: &str) {
    for uid in uids {
        let rec = record(env, F21, uid).await;
        assert_eq!(rec.state, RecordState::Failed, "{when}: {uid}");
        assert_eq!(
            rec.reason_code.as_deref(),
            Some("ingestion_unconfirmed"),
            "{when}: {uid}"
        );
        assert!(rec.next_retry_at.is_some(), "{when}: {uid}");
    }
}

#[tokio::test]
async fn transient_faults_end_with_records_delivered_once_or_failed_for_the_next_run() {
    let env = TestEnv::start().await;
    let a = refer(&env, json!({})).await;
    let b = refer(&env, json!({})).await;
    let uids: Vec<String> = [&a, &b].iter().map(|c| service_ids(c)[0].clone()).collect();
    // asyncdata answers 503: PING may have queued the batch, so the client does not send it
    // again and the run leaves its records failed as unconfirmed.
    env.ping_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "asyncdata", "kind": "status", "status": 503}]}),
    )
    .await;
    let first = env.run(F21).await;
    assert_eq!(
        (first.failed, first.delivered, first.confirmed),
        (2, 0, 0),
        "{first}"
    );
    assert_eq!(
        ping_calls(&env, "asyncdata").await,
        1,
        "the batch's one POST, not repeated"
    );
    assert_unconfirmed(&env, &uids, "after a 503").await;

    // The connection is lost after the batch was sent: the next run searches proGres first
    // (nothing there), sends the batch once, loses the answer, and leaves the records
    // unconfirmed again (a dropped connection is not retried within the run any more).
    env.ping_post(
        "/_sim/faults",
        json!({"rules": [
            {"endpoint": "asyncdata", "kind": "drop", "times": 1},
            {"endpoint": "checkstatus", "kind": "status", "status": 503, "times": 2}]}),
    )
    .await;
    env.clear_requests().await;
    let second = env.run_later(F21, 10).await;
    assert_eq!(
        (second.failed, second.delivered, second.confirmed),
        (2, 0, 0),
        "{second}"
    );
    let log: Vec<Value> = env
        .ping_get("/_sim/requests")
        .await
        .as_array()
        .unwrap()
        .clone();
    let sends: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, r)| r["endpoint"] == json!("asyncdata"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(sends.len(), 1, "one POST, not repeated: {log:?}");
    assert_eq!(log[sends[0]]["status"], Value::Null, "the dropped one");
    let search = log
        .iter()
        .position(|r| r["shp"] == json!("SHP-2795"))
        .unwrap_or_else(|| panic!("proGres was not searched: {log:?}"));
    assert!(search < sends[0], "searched before it was sent: {log:?}");
    assert_unconfirmed(&env, &uids, "after a dropped connection").await;
    assert!(
        interop_referrals(&env).await.is_empty(),
        "a plain drop applied nothing"
    );

    // The run after: proGres searched again, nothing found, the batch sent once and
    // confirmed; the 503s on check-status are retried within the run.
    env.clear_requests().await;
    let third = env.run_later(F21, 30).await;
    assert_eq!(
        (third.confirmed, third.failed, third.rejected_total()),
        (2, 0, 0),
        "{third}"
    );
    assert_eq!(ping_calls(&env, "asyncdata").await, 1, "sent once");
    let checks: Vec<Value> = env
        .ping_get("/_sim/requests")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["endpoint"] == json!("checkstatus"))
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(checks[..2], [json!(503), json!(503)], "{checks:?}");
    assert_eq!(checks.last(), Some(&json!(200)), "{checks:?}");
    let refs = interop_referrals(&env).await;
    assert_eq!(refs.len(), 2, "each referral exists once in proGres");
    for uid in &uids {
        let rows: Vec<&Value> = refs
            .iter()
            .filter(|r| r["progres_orgreferralid"] == json!(uid))
            .collect();
        assert_eq!(rows.len(), 1, "{uid}: {rows:?}");
        let rec = record(&env, F21, uid).await;
        assert_eq!(rec.state, RecordState::Confirmed);
        assert_eq!(
            json!(rec.dest_ids["progres_interoperabilityreferralid"]),
            rows[0]["progres_interoperabilityreferralid"]
        );
    }
}

#[tokio::test]
async fn primero_faults_fail_the_records_of_the_case_and_auth_errors_end_the_run() {
    let env = TestEnv::start().await;
    let case = refer(&env, json!({})).await;
    env.primero_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "referrals_list", "kind": "status", "status": 500}]}),
    )
    .await;
    let first = env.run(F21).await;
    assert_eq!(first.failed, 1, "{first}");
    env.primero_delete("/_sim/faults").await;
    let later = env.run_later(F21, 10).await;
    assert_eq!(later.confirmed, 1, "{later}");
    assert_eq!(
        record(&env, F21, &service_ids(&case)[0]).await.state,
        RecordState::Confirmed
    );

    env.primero_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "cases_list", "kind": "status", "status": 401}]}),
    )
    .await;
    let err = env.try_run(F21).await.unwrap_err();
    assert!(err.is_auth(), "{err}");
}

#[tokio::test]
async fn check_status_timeout_leaves_records_delivered_and_the_next_run_confirms_them() {
    let env = TestEnv::start_with(|c| {
        c.ping.check_status_timeout = Duration::from_millis(150);
    })
    .await;
    env.ping
        .set_options(&json!({"async_delay_ms": 800}))
        .unwrap();
    let case = refer(&env, json!({})).await;
    let uid = &service_ids(&case)[0];
    let first = env.run(F21).await;
    assert_eq!((first.delivered, first.confirmed), (1, 0), "{first}");
    let rec = record(&env, F21, uid).await;
    assert_eq!(rec.state, RecordState::Delivered);
    assert_eq!(rec.reason_code.as_deref(), Some("check_status_timeout"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = ping_calls(&env, "asyncdata").await;
    let next = env.run(F21).await;
    assert_eq!(next.confirmed, 1, "{next}");
    assert_eq!(
        ping_calls(&env, "asyncdata").await,
        sent,
        "re-checked, not re-sent"
    );
    assert_eq!(record(&env, F21, uid).await.state, RecordState::Confirmed);
    assert_eq!(interop_referrals(&env).await.len(), 1);
}

#[tokio::test]
async fn records_refused_by_check_status_are_rejected_and_valid_ones_of_the_batch_confirmed() {
    // Whether PING applies a batch all-or-nothing is unknown (R1): under all-or-nothing the
    // invalid record is found by splitting the batch; under partial application the failed
    // item is rejected directly. Either way the valid record is confirmed.
    for mode in ["all_or_nothing", "partial"] {
        let env = TestEnv::start_with(|c| {
            // A requested-service value that is not a GUID is refused per record by PING.
            c.maps
                .service_to_progres
                .insert("food".into(), "not-a-guid".into());
        })
        .await;
        env.ping.set_options(&json!({"batch_mode": mode})).unwrap();
        let good = refer(&env, json!({})).await;
        let bad = refer(&env, json!({"services": [{"service_type": "food"}]})).await;
        let report = env.run(F21).await;
        assert_eq!(report.confirmed, 1, "{mode}: {report}");
        assert_eq!(report.rejected["validation_error"], 1, "{mode}: {report}");
        let expected_calls = if mode == "partial" { 1 } else { 3 };
        assert_eq!(
            ping_calls(&env, "asyncdata").await,
            expected_calls,
            "{mode}"
        );
        let line = report
            .attention
            .iter()
            .find(|l| l.key == service_ids(&bad)[0])
            .unwrap();
        assert!(
            line.message
                .as_deref()
                .unwrap()
                .contains("progres_requestedservice"),
            "{mode}: {line:?}"
        );
        assert_eq!(
            record(&env, F21, &service_ids(&good)[0]).await.state,
            RecordState::Confirmed
        );
        assert_eq!(interop_referrals(&env).await.len(), 1, "{mode}");
    }
}

#[tokio::test]
async fn dry_runs_map_and_write_nothing() {
    let env = TestEnv::start().await;
    let case = refer(
        &env,
        json!({"case": {"name_first": "Nyaluak", "name_last": "Deng"}, "services": [{"service_type": "medical"}]}),
    )
    .await;
    let report = env.dry_run(F21).await;
    assert!(report.dry_run);
    assert_eq!(report.would_send.len(), 1, "{report}");
    let p = &report.would_send[0];
    assert_eq!(p.key, service_ids(&case)[0]);
    assert!(p.fields.contains(&"progres_pocfirstname".to_owned()));
    let text = format!("{report}\n{}", serde_json::to_string(&report).unwrap());
    assert!(
        !text.contains("Nyaluak") && !text.contains("Deng"),
        "{text}"
    );
    assert!(interop_referrals(&env).await.is_empty());
    assert_eq!(ping_calls(&env, "asyncdata").await, 0);
    assert!(env.ledger.get(F21.name(), &p.key).await.unwrap().is_none());
    assert!(env.ledger.cursor(F21.name()).await.unwrap().is_none());

    // 2.2 dry run: a decision is previewed, nothing is written.
    assert_eq!(env.run(F21).await.confirmed, 1);
    let interop = interop_id(&env, &p.key).await;
    env.ping_post(
        "/_sim/actions/decide-referral",
        json!({"referral_id": interop, "decision": "reject", "reason": "R", "comment": "C"}),
    )
    .await;
    let dry = env.dry_run(F22).await;
    assert!(dry
        .would_send
        .iter()
        .any(|p| p.key == format!("{interop}:125080002")
            && p.fields.contains(&"rejected_reason".to_owned())));
    assert_eq!(primero_calls(&env, "referral_patch").await, 0);
    assert_eq!(ping_calls(&env, "data").await, 0);
}

#[tokio::test]
async fn a_case_skipped_by_offset_paging_during_the_run_is_still_read() {
    let env = TestEnv::start().await;
    // 1000 cases without services fill the first page; two referred cases are the newest.
    let mut doc = serde_json::to_value(pp_sim_primero::scenario::generate(
        &pp_sim_primero::scenario::ScenarioOptions {
            count: 1000,
            with_referrals: false,
            ..Default::default()
        },
    ))
    .unwrap();
    for case in doc["cases"].as_array_mut().unwrap() {
        case.as_object_mut().unwrap().remove("services_section");
    }
    let oldest = doc["cases"][0]["id"].as_str().unwrap().to_owned();
    env.primero.seed(doc).await.unwrap();
    let newer = refer(&env, json!({})).await;
    let newest = refer(&env, json!({})).await;
    env.primero_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "cases_list", "kind": "latency", "ms": 300}]}),
    )
    .await;
    // While page 2 is being read, a caseworker edits a case of page 1: it moves to the end of
    // the list (ordered by last_updated_at), the newer case shifts onto page 1 unread, and
    // page 2 holds the newest one: the cursor would pass the newer case.
    let edit = async {
        tokio::time::sleep(Duration::from_millis(450)).await;
        let resp = env
            .http
            .patch(format!("{}/api/v2/cases/{oldest}", env.primero.base_url()))
            .basic_auth(
                "openfn_integration",
                Some(pp_config::sim_defaults::PRIMERO_PASSWORD),
            )
            .json(&json!({"data": {"name_nickname": "edited"}}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
    };
    let (report, ()) = tokio::join!(env.run(F21), edit);
    assert_eq!(report.confirmed, 2, "{report}");
    for c in [&newer, &newest] {
        let uid = &service_ids(c)[0];
        assert_eq!(record(&env, F21, uid).await.state, RecordState::Confirmed);
    }
}

#[tokio::test]
async fn decision_faults_fail_records_for_the_next_run_and_an_unreachable_list_ends_it() {
    let env = TestEnv::start().await;
    let case = refer(
        &env,
        json!({"services": [{"service_type": "medical"}, {"service_type": "shelter"}]}),
    )
    .await;
    let uids = service_ids(&case);
    assert_eq!(env.run(F21).await.confirmed, 2);
    let mut keys = Vec::new();
    for uid in &uids {
        let interop = interop_id(&env, uid).await;
        env.ping_post(
            "/_sim/actions/decide-referral",
            json!({"referral_id": interop, "decision": "accept"}),
        )
        .await;
        keys.push(format!("{interop}:125080001"));
    }

    // The decision list cannot be read: the run ends with an error, nothing is recorded.
    env.ping_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "retrieve", "kind": "status", "status": 503}]}),
    )
    .await;
    let err = env.try_run(F22).await.unwrap_err();
    assert!(!err.is_auth() && err.to_string().contains("PING"), "{err}");
    assert!(env
        .ledger
        .get(F22.name(), &keys[0])
        .await
        .unwrap()
        .is_none());

    // Primero's referral PATCH fails: both decisions failed, retried later.
    clear_faults(&env).await;
    env.primero_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "referral_patch", "kind": "status", "status": 503}]}),
    )
    .await;
    let first = env.run(F22).await;
    assert_eq!(first.failed, 2, "{first}");
    clear_faults(&env).await;

    // Now the proGres write-back fails: applied in Primero, failed for the write-back.
    env.ping_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "data", "kind": "status", "status": 503}]}),
    )
    .await;
    let second = env.run_later(F22, 10).await;
    assert_eq!((second.delivered, second.failed), (2, 2), "{second}");
    let patches = primero_calls(&env, "referral_patch").await;
    clear_faults(&env).await;

    // The next run only writes back: no second PATCH.
    let third = env.run_later(F22, 60).await;
    assert_eq!(third.confirmed, 2, "{third}");
    assert_eq!(primero_calls(&env, "referral_patch").await, patches);
    for key in &keys {
        assert_eq!(record(&env, F22, key).await.state, RecordState::Confirmed);
    }
}

/// A Primero case with one referred service row, and its proGres interoperability referral
/// seeded with `status`: returns (interop referral id, Primero referral id).
async fn decided_referral(env: &TestEnv, n: u32, status: i64) -> (String, String) {
    let case_id = format!("c0ffee00-0000-4000-8000-{n:012}");
    let unique_id = format!("5e5e5e5e-0000-4000-8000-{n:012}");
    let interop = format!("1a2b3c4d-0000-4000-8000-{n:012}");
    let created = refer(
        env,
        json!({"case": {"case_id": case_id},
               "services": [{"service_type": "medical", "unique_id": unique_id}]}),
    )
    .await;
    env.ping
        .seed(json!({"interop_referrals": [{
            "progres_interoperabilityreferralid": interop,
            "progres_interoperabilityreferralstatus": status,
            "progres_offlineid": case_id,
            "progres_orgreferralid": unique_id}]}))
        .await
        .unwrap();
    let referral = created["services"][0]["referral_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (interop, referral)
}

#[tokio::test]
async fn a_referral_id_ping_refuses_is_rejected_alone_and_the_others_of_its_list_go_on() {
    let env = TestEnv::start().await;
    let (good, good_referral) = decided_referral(&env, 1, 125080001).await;
    let (other, _) = decided_referral(&env, 2, 125080002).await;
    // An id PING's {record_ids} parameter refuses (not a GUID), and a row without the case
    // and service ids: each is one record's problem (R1).
    env.ping
        .seed(json!({"interop_referrals": [
            {"progres_interoperabilityreferralid": "not-a-guid-0001",
             "progres_interoperabilityreferralstatus": 125080001,
             "progres_offlineid": "c0ffee00-0000-4000-8000-000000000009",
             "progres_orgreferralid": "5e5e5e5e-0000-4000-8000-000000000009"},
            {"progres_interoperabilityreferralid": "1a2b3c4d-0000-4000-8000-00000000000a",
             "progres_interoperabilityreferralstatus": 125080001}]}))
        .await
        .unwrap();
    let report = env.run(F22).await;
    assert_eq!(report.confirmed, 2, "{report}");
    assert_eq!(report.rejected["validation_error"], 1, "{report}");
    assert_eq!(report.rejected["missing_required_fields"], 1, "{report}");
    assert_eq!(report.failed, 0, "{report}");
    let bad = record(&env, F22, "not-a-guid-0001:125080001").await;
    assert_eq!(bad.state, RecordState::Rejected);
    assert_eq!(bad.reason_code.as_deref(), Some("validation_error"));
    let missing = record(&env, F22, "1a2b3c4d-0000-4000-8000-00000000000a:125080001").await;
    let message = missing.message.unwrap();
    assert!(
        message.contains("progres_offlineid") && message.contains("progres_orgreferralid"),
        "{message}"
    );
    assert_eq!(
        primero_referral(&env, &good_referral).await["status"],
        json!("accepted")
    );
    assert_eq!(
        record(&env, F22, &format!("{other}:125080002")).await.state,
        RecordState::Confirmed
    );
    assert_eq!(
        record(&env, F22, &format!("{good}:125080001")).await.state,
        RecordState::Confirmed
    );
    // Rejected and unchanged: the next run records nothing new about them.
    let again = env.run_later(F22, 10).await;
    assert_eq!(again.rejected_total() + again.failed, 0, "{again}");
}

#[tokio::test]
async fn the_decision_list_is_handled_page_by_page() {
    let env = TestEnv::start().await;
    env.ping.set_options(&json!({"page_size": 2})).unwrap();
    let mut keys = Vec::new();
    for n in 1..=5 {
        let (interop, _) = decided_referral(&env, n, 125080001).await;
        keys.push(format!("{interop}:125080001"));
    }
    env.clear_requests().await;
    let report = env.run(F22).await;
    assert_eq!(report.confirmed, 5, "{report}");
    for key in &keys {
        assert_eq!(record(&env, F22, key).await.state, RecordState::Confirmed);
    }
    // The details of the first page are read before the second page of the list: a page is
    // handled, then dropped, before the next one is read (R10).
    let log = env.ping_get("/_sim/requests").await;
    let shps: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["endpoint"] == json!("retrieve"))
        .map(|r| r["shp"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        shps.iter().filter(|s| **s == "SHP-2795").count(),
        3,
        "{shps:?}"
    );
    let first_detail = shps.iter().position(|s| *s == "SHP-2796").unwrap();
    let second_list = shps
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == "SHP-2795")
        .nth(1)
        .unwrap()
        .0;
    assert!(first_detail < second_list, "{shps:?}");
}

#[tokio::test]
async fn a_referral_already_in_the_decided_state_costs_no_second_listing_and_no_patch() {
    let env = TestEnv::start().await;
    let (interop, referral) = decided_referral(&env, 1, 125080001).await;
    let state = env.primero_get("/_sim/state").await;
    let case = state["referrals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == json!(referral))
        .unwrap()["record_id"]
        .clone();
    // The UNHCR caseworker already accepted it in Primero.
    env.primero_post(
        "/_sim/actions/set-referral-status",
        json!({"case": case, "referral_id": referral, "status": "accepted", "user": "unhcr_cw"}),
    )
    .await;
    env.clear_requests().await;
    let report = env.run(F22).await;
    assert_eq!(report.confirmed, 1, "{report}");
    assert_eq!(primero_calls(&env, "referral_patch").await, 0);
    assert_eq!(primero_calls(&env, "referrals_list").await, 1);
    assert_eq!(
        record(&env, F22, &format!("{interop}:125080001"))
            .await
            .state,
        RecordState::Confirmed
    );
}

#[tokio::test]
async fn services_of_one_case_go_to_different_batches() {
    let env = TestEnv::start().await;
    let case = refer(
        &env,
        json!({"services": [{"service_type": "medical"}, {"service_type": "shelter"},
                            {"service_type": "medical"}]}),
    )
    .await;
    let other = refer(&env, json!({})).await;
    let report = env.run(F21).await;
    assert_eq!(report.confirmed, 4, "{report}");
    // The three services share the ExternalId (case_id): one per batch, so that a refusal
    // naming the ExternalId names one record. The other case rides along in the first.
    assert_eq!(ping_calls(&env, "asyncdata").await, 3);
    for uid in service_ids(&case).iter().chain(&service_ids(&other)) {
        assert_eq!(record(&env, F21, uid).await.state, RecordState::Confirmed);
    }
}

/// Runs 2.1 once with check-status timing out (PING processes ingestions after a long
/// delay): the case's service is left delivered. Returns its key.
async fn delivered_unconfirmed(env: &TestEnv) -> String {
    env.ping
        .set_options(&json!({"async_delay_ms": 600_000}))
        .unwrap();
    let case = refer(env, json!({})).await;
    let uid = service_ids(&case)[0].clone();
    let first = env.run(F21).await;
    assert_eq!((first.delivered, first.confirmed), (1, 0), "{first}");
    assert_eq!(record(env, F21, &uid).await.state, RecordState::Delivered);
    uid
}

#[tokio::test]
async fn a_transaction_ping_no_longer_knows_is_a_conflict_not_a_resend() {
    let env = TestEnv::start_with(|c| {
        c.ping.check_status_timeout = Duration::from_millis(100);
    })
    .await;
    let uid = delivered_unconfirmed(&env).await;
    // PING lost the transaction.
    env.ping_post("/_sim/reset", json!({})).await;
    let sent = ping_calls(&env, "asyncdata").await;
    let report = env.run(F21).await;
    assert_eq!(report.conflicts, 1, "{report}");
    let rec = record(&env, F21, &uid).await;
    assert_eq!(rec.state, RecordState::Conflict);
    assert_eq!(rec.reason_code.as_deref(), Some("check_status_unresolved"));
    assert!(rec.message.unwrap().contains(&uid));
    assert_eq!(ping_calls(&env, "asyncdata").await, sent, "never re-sent");
    // Parked: later runs leave it alone.
    let again = env.run(F21).await;
    assert_eq!(again.conflicts + again.delivered, 0, "{again}");
}

#[tokio::test]
async fn a_record_never_settled_by_check_status_is_a_conflict_after_five_rechecks() {
    let env = TestEnv::start_with(|c| {
        c.ping.check_status_timeout = Duration::from_millis(60);
    })
    .await;
    let uid = delivered_unconfirmed(&env).await;
    let sent = ping_calls(&env, "asyncdata").await;
    for n in 1..5 {
        let r = env.run(F21).await;
        assert_eq!(r.conflicts, 0, "re-check {n}: {r}");
        let rec = record(&env, F21, &uid).await;
        assert_eq!(rec.state, RecordState::Delivered, "re-check {n}");
        assert_eq!(rec.reason_code.as_deref(), Some("check_status_timeout"));
    }
    let fifth = env.run(F21).await;
    assert_eq!(fifth.conflicts, 1, "{fifth}");
    let rec = record(&env, F21, &uid).await;
    assert_eq!(rec.state, RecordState::Conflict);
    assert_eq!(rec.reason_code.as_deref(), Some("check_status_unresolved"));
    assert!(rec.message.unwrap().contains("5 checks"));
    assert_eq!(ping_calls(&env, "asyncdata").await, sent, "never re-sent");
}

#[tokio::test]
async fn a_delivered_record_without_a_transaction_id_is_a_conflict() {
    let env = TestEnv::start().await;
    let key = "5e5e5e5e-0000-4000-8000-0000000000aa";
    env.ledger
        .apply(
            &[pp_ledger::RecordChange::new(
                F21.name(),
                key,
                RecordState::Delivered,
            )],
            None,
            &pp_ledger::Cause::Operator("test".into()),
        )
        .await
        .unwrap();
    let report = env.run(F21).await;
    assert_eq!(report.conflicts, 1, "{report}");
    let rec = record(&env, F21, key).await;
    assert_eq!(rec.state, RecordState::Conflict);
    assert_eq!(rec.reason_code.as_deref(), Some("check_status_unresolved"));
}

#[tokio::test]
async fn an_ingestion_ping_may_have_received_is_looked_up_in_progres_before_a_resend() {
    let env = TestEnv::start().await;
    // One referral sent normally: known to the ledger, so the search does not read it.
    let known = refer(&env, json!({})).await;
    assert_eq!(env.run(F21).await.confirmed, 1);
    let case = refer(&env, json!({})).await;
    let uid = service_ids(&case)[0].clone();
    env.ping_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "asyncdata", "kind": "status", "status": 503}]}),
    )
    .await;
    let first = env.run_later(F21, 1).await;
    assert_eq!(first.failed, 1, "{first}");
    let rec = record(&env, F21, &uid).await;
    assert_eq!(rec.reason_code.as_deref(), Some("ingestion_unconfirmed"));
    clear_faults(&env).await;
    // PING had in fact created it (the answer was lost).
    let interop = "1a2b3c4d-0000-4000-8000-0000000000bb";
    env.ping
        .seed(json!({"interop_referrals": [{
            "progres_interoperabilityreferralid": interop,
            "progres_interoperabilityreferralstatus": 125080000,
            "progres_offlineid": case["case_id"],
            "progres_orgreferralid": uid.to_uppercase()}]}))
        .await
        .unwrap();
    env.clear_requests().await;
    let later = env.run_later(F21, 30).await;
    assert_eq!(later.confirmed, 1, "{later}");
    assert_eq!(later.delivered, 0, "{later}");
    assert_eq!(ping_calls(&env, "asyncdata").await, 0, "not sent again");
    let rec = record(&env, F21, &uid).await;
    assert_eq!(rec.state, RecordState::Confirmed);
    assert_eq!(rec.dest_ids["progres_interoperabilityreferralid"], interop);
    assert_eq!(interop_referrals(&env).await.len(), 2);
    // Only the unknown referral's details were read.
    let details: Vec<Value> = env
        .ping_get("/_sim/requests")
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["shp"] == json!("SHP-2796"))
        .cloned()
        .collect();
    assert_eq!(details.len(), 1, "{details:?}");
    assert_eq!(
        record(&env, F21, &service_ids(&known)[0]).await.state,
        RecordState::Confirmed
    );
}

async fn clear_faults(env: &TestEnv) {
    env.ping_delete("/_sim/faults").await;
    env.primero_delete("/_sim/faults").await;
}

/// Creates `n` cases with one service each referred to UNHCR; returns the services' ids.
async fn refer_many(env: &TestEnv, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let case = refer(
            env,
            json!({"case": {"name_first": format!("Child{i}"), "name_last": "Gatluak",
                             "sex": if i % 2 == 0 { "female" } else { "male" },
                             "date_of_birth": "2014-03-02",
                             "unhcr_individual_no": format!("945-{i:08}")},
                   "services": [{"service_type": "medical"}]}),
        )
        .await;
        ids.extend(service_ids(&case));
    }
    ids
}

#[tokio::test]
async fn a_listing_of_several_pages_is_delivered_page_by_page_each_service_once() {
    // Flow 2.1 lists 500 cases per page: 1,030 cases make three pages, and each page's
    // deliveries overlap the next page's preparation.
    let env = TestEnv::start_with(|c| c.ping.batch_size = 250).await;
    let uids = refer_many(&env, 1030).await;

    let report = env.run(F21).await;
    assert_eq!(report.fetched, 1030, "{report}");
    assert_eq!(report.confirmed, 1030, "{report}");
    assert_eq!(report.rejected_total(), 0, "{report}");
    assert!(primero_calls(&env, "cases_list").await >= 3, "three pages");
    // Only the fields the mapping reads are asked for (flow21::CASE_FIELDS), on every page.
    let listings = env.primero_get("/_sim/requests?endpoint=cases_list").await;
    for l in listings.as_array().unwrap() {
        let query = l["query"].as_str().unwrap_or_default();
        if query.contains("order_by") {
            let url = reqwest::Url::parse(&format!("http://sim/?{query}")).unwrap();
            let fields: String = url
                .query_pairs()
                .find(|(k, _)| k == "fields")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| panic!("no fields in {query}"));
            let mut asked: Vec<&str> = fields.split(',').collect();
            asked.sort_unstable();
            asked.dedup();
            let mut wanted: Vec<&str> = pp_mapping::flow21::CASE_FIELDS.to_vec();
            wanted.sort_unstable();
            assert_eq!(asked, wanted, "{query}");
        }
    }
    let refs = interop_referrals(&env).await;
    assert_eq!(refs.len(), 1030, "each service reached proGres once");
    let states = env.ledger.get_many(F21.name(), &uids).await.unwrap();
    assert_eq!(states.len(), 1030);
    assert!(states.values().all(|r| r.state == RecordState::Confirmed));

    let again = env.run(F21).await;
    assert_eq!((again.delivered, again.confirmed), (0, 0), "{again}");
    assert_eq!(interop_referrals(&env).await.len(), 1030);
}

#[tokio::test]
async fn deliveries_in_flight_are_recorded_when_a_later_page_ends_the_run() {
    // Page 1 (500 cases: flow 2.1's page size) is being delivered slowly (2.5 s per
    // ingestion) when page 2's preparation meets refused credentials: the run ends with the
    // auth error, and page 1's records, which PING received, still reach the ledger (none is
    // left pending or lost).
    let env = TestEnv::start_with(|c| c.ping.batch_size = 500).await;
    let uids = refer_many(&env, 510).await;
    // Page 1 arrives after 3 s; page 2, asked for as soon as page 1 is in, after 6 s.
    env.primero_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "cases_list", "kind": "latency", "ms": 3000}]}),
    )
    .await;
    env.ping_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "asyncdata", "kind": "latency", "ms": 2500}]}),
    )
    .await;
    env.clear_requests().await;

    let running = {
        let ctx = env.ctx.clone();
        tokio::spawn(async move { run_flow(&ctx, F21, RunOptions::default()).await })
    };
    // Once page 1's referrals are read (its deliveries start), refuse Primero's referral
    // listings: page 2 is still on its way.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while primero_calls(&env, "referrals_list").await < 500 {
        assert!(
            std::time::Instant::now() < deadline,
            "page 1 was not prepared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        primero_calls(&env, "cases_list").await,
        2,
        "page 2 was asked for while page 1 was prepared"
    );
    env.primero_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "referrals_list", "kind": "status", "status": 401}]}),
    )
    .await;
    let ended = running.await.unwrap();
    assert!(ended.is_err(), "refused credentials end the run");

    let states = env.ledger.get_many(F21.name(), &uids).await.unwrap();
    let confirmed = states
        .values()
        .filter(|r| r.state == RecordState::Confirmed)
        .count();
    assert_eq!(confirmed, 500, "page 1's deliveries were all recorded");
    assert!(
        states.values().all(|r| r.state == RecordState::Confirmed),
        "no record of page 2 was started"
    );
    assert_eq!(interop_referrals(&env).await.len(), 500);

    clear_faults(&env).await;
    let next = env.run(F21).await;
    assert_eq!(next.confirmed, 10, "{next}");
    assert_eq!(interop_referrals(&env).await.len(), 510);
}
