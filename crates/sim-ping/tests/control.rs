//! The `/_sim/` control API, the public Rust handle, and the shared fixtures, over real HTTP.

mod common;

use std::collections::BTreeSet;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../../../shared/fixtures/ping/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).expect("fixture JSON")
}

#[tokio::test]
async fn fixture_shp_2747_key_set_matches_sample() {
    let sample = fixture("shp-2747-pending-referrals.json");
    let mut sample_keys: BTreeSet<String> = BTreeSet::new();
    for row in sample["Data"].as_array().unwrap() {
        sample_keys.extend(row.as_object().unwrap().keys().cloned());
    }
    let s = start().await;
    s.seed(small_seed()).await;
    let (_, v) = s.retrieve("SHP-2747", json!([])).await;
    // Envelope and PagingSummary keys as in the sample.
    let env: BTreeSet<&String> = v.as_object().unwrap().keys().collect();
    let sample_env: BTreeSet<&String> = sample.as_object().unwrap().keys().collect();
    assert_eq!(env, sample_env);
    let ps: BTreeSet<&String> = v["PagingSummary"].as_object().unwrap().keys().collect();
    let sample_ps: BTreeSet<&String> = sample["PagingSummary"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(ps, sample_ps);
    // IV1 has every attribute: its key set is the sample's union plus progres_lpinterventionid.
    let row = rows(&v)
        .into_iter()
        .find(|r| r["progres_lpinterventionid"] == IV1)
        .unwrap();
    let got: BTreeSet<String> = row.as_object().unwrap().keys().cloned().collect();
    let mut want = sample_keys.clone();
    want.insert("progres_lpinterventionid".into());
    assert_eq!(got, want);
    // Every other row uses a subset of the same keys (nulls omitted), with the same JSON types.
    for row in rows(&v) {
        for (k, val) in row.as_object().unwrap() {
            assert!(want.contains(k), "unexpected key {k}");
            if let Some(sv) = sample["Data"][0].get(k) {
                assert_eq!(sv.is_number(), val.is_number(), "type of {k}");
            }
        }
    }
}

#[tokio::test]
async fn fixture_shp_2284_request_is_accepted() {
    let s = start().await;
    s.seed(small_seed()).await;
    let body = fixture("shp-2284-referral-synced-request.json");
    let (status, v) = s.post("/api/ingestion/v2/PNR-1363/data", &body).await;
    assert_eq!(status, 200, "{v}");
    let state = s.sim.state_json();
    let r = state["interop_referrals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["progres_interoperabilityreferralid"] == REF1)
        .unwrap()
        .clone();
    assert_eq!(
        r["progres_comments"],
        "Add here a comment for the Referral record in proGres"
    );
    assert_eq!(
        r["progres_interoperabilityreferralstatus"],
        json!(125080001)
    );
}

#[tokio::test]
async fn control_seed_merge_reset_and_state() {
    let s = start().await;
    let (st, v) = s
        .control(Method::POST, "/_sim/seed", Some(small_seed()))
        .await;
    assert_eq!(st, 200);
    assert_eq!(v, json!({"interventions": 3, "interop_referrals": 2}));
    // Merge: same id replaces, new id is added.
    let (st, v) = s
        .control(
            Method::POST,
            "/_sim/seed",
            Some(json!({"interventions": [
                {"progres_lpinterventionid": IV1, "progres_interventionnumber": "LP-ETH-2026-000099", "progres_businessunit": BU, "delivery": {}},
                {"progres_lpinterventionid": "0f0f0f0f-4879-ee11-8179-000d3a43f6eb", "progres_interventionnumber": "LP-ETH-2026-000100", "progres_businessunit": BU}
            ]})),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["interventions"], 4);
    let (_, state) = s.control(Method::GET, "/_sim/state", None).await;
    assert_eq!(state, s.sim.state_json());
    assert_eq!(
        state["interventions"][0]["progres_interventionnumber"],
        "LP-ETH-2026-000099"
    );
    // Without a delivery an intervention is not an outgoing referral.
    let (_, v) = s.retrieve("SHP-2747", json!([])).await;
    assert_eq!(rows(&v).len(), 3);
    // A typo in the seed is refused.
    let (st, v) = s
        .control(
            Method::POST,
            "/_sim/seed",
            Some(json!({"interventions": [{"progres_lpinterventionid": IV1, "progres_interventionnumber": "x", "progres_businessunit": BU, "langauges": []}]})),
        )
        .await;
    assert_eq!(st, 400);
    assert!(v["error"].as_str().unwrap().contains("langauges"));
    // Error answers name the field but never echo the value.
    let (st, v) = s
        .control(
            Method::POST,
            "/_sim/seed",
            Some(json!({"interventions": [{"progres_lpinterventionid": IV1, "progres_interventionnumber": "x", "progres_businessunit": BU, "individual": {"progres_sex": "Nyaboth"}}]})),
        )
        .await;
    assert_eq!(st, 400);
    assert!(!v["error"].as_str().unwrap().contains("Nyaboth"), "{v}");
    // State round-trips as a seed.
    let s2 = start().await;
    s2.seed(json!({"interventions": state["interventions"], "interop_referrals": state["interop_referrals"]}))
        .await;
    assert_eq!(s2.sim.state_json()["interventions"], state["interventions"]);
    // Reset clears data, request log and faults.
    s.control(
        Method::POST,
        "/_sim/faults",
        Some(json!({"rules": [{"endpoint": "retrieve", "kind": "status", "status": 500}]})),
    )
    .await;
    let (st, _) = s.control(Method::POST, "/_sim/reset", None).await;
    assert_eq!(st, 200);
    assert!(s.sim.requests().is_empty());
    let (status, v) = s.retrieve("SHP-2747", json!([])).await;
    assert_eq!(status, 200);
    assert_eq!(v["Data"], "No Data Available");
    assert_eq!(s.sim.state_json()["interventions"], json!([]));
}

#[tokio::test]
async fn control_options_partial_update() {
    let s = start().await;
    let (st, v) = s.control(Method::GET, "/_sim/options", None).await;
    assert_eq!(st, 200);
    assert_eq!(v["client_id"], "ping-primero-sim");
    assert_eq!(v["partner_id"], "PNR-1363");
    assert_eq!(v["interop_id"], "INT-1436");
    assert_eq!(v["page_size"], 1000);
    assert_eq!(v["request_error_mode"], "http_400");
    assert_eq!(v["batch_mode"], "all_or_nothing");
    assert_eq!(v["invalid_option_code"], "reject");
    assert_eq!(v["empty_record_count"], "null");
    assert_eq!(v["checkstatus_legacy_malformed"], true);
    assert_eq!(v["drop_transferred_from_pending"], true);
    assert_eq!(v["shipping_processes"]["incoming_referral"], "SHP-2731");
    // Nested partial update keeps the other shipping processes.
    let (st, v) = s
        .control(
            Method::POST,
            "/_sim/options",
            Some(json!({"shipping_processes": {"pending_referrals": "SHP-1000"}})),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(v["shipping_processes"]["pending_referrals"], "SHP-1000");
    assert_eq!(v["shipping_processes"]["intervention_details"], "SHP-2358");
    assert_eq!(
        s.sim.options().shipping_processes.pending_referrals,
        "SHP-1000"
    );
    s.seed(small_seed()).await;
    assert_eq!(s.retrieve("SHP-1000", json!([])).await.0, 200);
    assert_eq!(s.retrieve("SHP-2747", json!([])).await.0, 400);
    // Unknown keys and bad values are refused and change nothing.
    for bad in [
        json!({"page_sise": 5}),
        json!({"batch_mode": "sometimes"}),
        json!({"page_size": 0}),
    ] {
        let (st, _) = s.control(Method::POST, "/_sim/options", Some(bad)).await;
        assert_eq!(st, 400);
    }
    assert_eq!(s.sim.options().page_size, 1000);
    s.sim
        .set_options(&json!({"page_size": 2}))
        .expect("set options");
    let (_, v) = s.retrieve("SHP-1000", json!([])).await;
    assert_eq!(rows(&v).len(), 2);
}

#[tokio::test]
async fn control_create_outgoing_referral() {
    let s = start().await;
    let (st, v) = s
        .control(Method::POST, "/_sim/actions/create-outgoing-referral", None)
        .await;
    assert_eq!(st, 200);
    let lp = v["progres_lpinterventionid"].as_str().unwrap().to_string();
    assert!(is_guid(&lp));
    let number = v["progres_interventionnumber"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(number.starts_with("LP-ETH-"));
    let (_, list) = s.retrieve("SHP-2747", json!([])).await;
    assert_eq!(rows(&list)[0]["progres_lpinterventionid"], lp.as_str());
    let (_, detail) = s.retrieve_ids("SHP-2358", &lp).await;
    let row = &rows(&detail)[0];
    assert_eq!(row["progres_interventionnumber"], number.as_str());
    assert!(row["progres_individual.individuals.progres_givenname"].is_string());
    assert!(row["progres_individual.individuals.progres_dateofbirth"].is_string());
    // A partial intervention overrides the generated values.
    let (st, v) = s
        .control(
            Method::POST,
            "/_sim/actions/create-outgoing-referral",
            Some(
                json!({"intervention_type_description": "Family Tracing and Reunification",
                        "individual": {"progres_givenname": "Nyaboth", "progres_sex": 125080003},
                        "languages": ["Anyuak"], "specific_needs": []}),
            ),
        )
        .await;
    assert_eq!(st, 200);
    assert_ne!(v["progres_interventionnumber"], number.as_str());
    let lp2 = v["progres_lpinterventionid"].as_str().unwrap().to_string();
    let (_, detail) = s.retrieve_ids("SHP-2358", &lp2).await;
    let r = rows(&detail);
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0]["progres_individual.individuals.progres_givenname"],
        "Nyaboth"
    );
    assert_eq!(
        r[0]["progres_individual.individuals.progres_sexname"],
        "Unknown"
    );
    assert_eq!(
        r[0]["progres_language.progres_languagecodeidname"],
        "Anyuak"
    );
    assert_eq!(
        r[0]["progres_interventiontype2.interventiontype.progres_description"],
        "Family Tracing and Reunification"
    );
    assert!(r[0]["progres_individual.individuals.progres_familyname"].is_string());
    let (_, list) = s.retrieve("SHP-2747", json!([])).await;
    assert_eq!(rows(&list).len(), 2);
    let (st, _) = s
        .control(
            Method::POST,
            "/_sim/actions/create-outgoing-referral",
            Some(json!({"individual": {"no_such_field": 1}})),
        )
        .await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn control_decide_referral_and_set_status() {
    let s = start().await;
    s.seed(small_seed()).await;
    let (st, _) = s
        .control(
            Method::POST,
            "/_sim/actions/decide-referral",
            Some(json!({"referral_id": REF1, "decision": "reject", "reason": "Not applicable", "comment": "Duplicate referral"})),
        )
        .await;
    assert_eq!(st, 200);
    let (_, v) = s.retrieve_ids("SHP-2796", REF1).await;
    let row = &rows(&v)[0];
    assert_eq!(
        row["progres_interoperabilityreferralstatus"],
        json!(125080002)
    );
    assert_eq!(
        row["progres_interoperabilityreferralstatusname"],
        "Rejected"
    );
    assert_eq!(
        row["progres_interoperabiltyreferralrejectionreasonname"],
        "Not applicable"
    );
    assert_eq!(
        row["progres_interoperabilityreferralrejectionomment"],
        "Duplicate referral"
    );
    assert_eq!(row["progres_reviewdecision"], json!(125080001));
    let (st, _) = s
        .control(
            Method::POST,
            "/_sim/actions/decide-referral",
            Some(json!({"referral_id": REF2, "decision": "accept"})),
        )
        .await;
    assert_eq!(st, 200);
    let (_, v) = s.retrieve_ids("SHP-2796", REF2).await;
    let row = &rows(&v)[0];
    assert_eq!(
        row["progres_interoperabilityreferralstatus"],
        json!(125080001)
    );
    assert!(row
        .get("progres_interoperabiltyreferralrejectionreasonname")
        .is_none());
    // Unknown codes are possible for R4 tests; they carry no name.
    let (st, _) = s
        .control(
            Method::POST,
            "/_sim/actions/set-referral-status",
            Some(json!({"referral_id": REF2, "status": 125080099})),
        )
        .await;
    assert_eq!(st, 200);
    let (_, v) = s.retrieve("SHP-2795", json!([])).await;
    let row = rows(&v)
        .into_iter()
        .find(|r| r["progres_interoperabilityreferralid"] == REF2)
        .unwrap();
    assert_eq!(
        row["progres_interoperabilityreferralstatus"],
        json!(125080099)
    );
    assert!(row
        .get("progres_interoperabilityreferralstatusname")
        .is_none());
    // Errors.
    let (st, _) = s
        .control(
            Method::POST,
            "/_sim/actions/decide-referral",
            Some(json!({"referral_id": "00000000-0000-0000-0000-000000000000", "decision": "accept"})),
        )
        .await;
    assert_eq!(st, 404);
    let (st, _) = s
        .control(
            Method::POST,
            "/_sim/actions/decide-referral",
            Some(json!({"referral_id": REF1, "decision": "maybe"})),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .control(
            Method::POST,
            "/_sim/actions/set-referral-status",
            Some(json!({"referral_id": REF1})),
        )
        .await;
    assert_eq!(st, 400);
}

#[tokio::test]
async fn handle_urls_and_shutdown() {
    let s = start().await;
    let base = s.sim.base_url();
    assert_eq!(base, format!("http://127.0.0.1:{}", s.sim.addr.port()));
    assert_eq!(
        s.sim.token_url(),
        format!("{base}/primespingb2cuat.onmicrosoft.com/b2c_1_msawe-primes-ping-test-apim-rpocuf/oauth2/v2.0/token")
    );
    let (st, v) = s.post("/no/such/api", &json!({})).await;
    assert_eq!(st, 404);
    assert_eq!(v["statusCode"], 404);
    let http = s.http.clone();
    s.sim.shutdown().await;
    let fresh = reqwest::Client::new();
    let err = fresh.get(format!("{base}/_sim/state")).send().await;
    assert!(err.is_err(), "server stopped");
    drop(http);
}

#[tokio::test]
async fn debug_output_redacts_personal_data() {
    let doc = small_seed();
    let iv: pp_sim_ping::model::Intervention =
        serde_json::from_value(doc["interventions"][0].clone()).unwrap();
    let dbg = format!("{iv:?}");
    assert!(dbg.contains(IV1));
    for secret in [
        "Nyakuoth",
        "Duoth",
        "2015-03-14",
        "+251911000001",
        "Gambella",
        "aunt",
        "Child parent",
    ] {
        assert!(!dbg.contains(secret), "Debug leaks {secret}");
    }
    let r: pp_sim_ping::model::InteropReferral = serde_json::from_value(json!({
        "progres_interoperabilityreferralid": REF1, "progres_pocfirstname": "Nyaluak", "progres_offlineid": "case-1"})).unwrap();
    let dbg = format!("{r:?}");
    assert!(dbg.contains("case-1") && !dbg.contains("Nyaluak"));
    let opts = format!("{:?}", pp_sim_ping::Options::default());
    assert!(!opts.contains("sim-ping-password") && !opts.contains("sim-subscription-key"));
}
