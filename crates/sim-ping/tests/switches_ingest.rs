//! The ingestion switches and faults for what ping-api.md leaves UNKNOWN, over real HTTP:
//! `async_repeat` (a repeated SHP-2731 create updates or duplicates), the `apply_then_status`
//! / `apply_then_drop` faults (the request is applied, the answer lost),
//! `omit_transaction_id` (a success answer without `SPHTransactionId`),
//! `ingestion_error_shape` (a `/data` refusal as `FailedRecords` or as one plain
//! `ErrorMessage`), `transfer_status_accepts_125080000` (a transfer status code of unknown
//! meaning) and `new_referral_status` (the status SHP-2731 gives a new referral). Each test
//! checks what the client sees and what proGres holds afterwards.

mod common;

use std::collections::BTreeSet;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// The stored referrals whose `progres_orgreferralid` is `org`.
fn referrals_with_org(s: &Sim, org: &str) -> Vec<Value> {
    s.sim.state_json()["interop_referrals"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r["progres_orgreferralid"] == org)
        .collect()
}

/// The SHP-2795 rows (every referral, whatever its status).
async fn decision_list(s: &Sim) -> Vec<Value> {
    let (status, v) = s.retrieve("SHP-2795", json!([])).await;
    assert_eq!(status, 200, "{v}");
    rows(&v)
}

/// Sends one SHP-2731 batch, waits until it is processed; returns the referral id of
/// each record, as check-status reports it.
async fn create(s: &Sim, data: Value) -> Vec<String> {
    let (status, v) = s.ingest_async(data).await;
    assert_eq!(status, 200, "{v}");
    let done = s
        .wait_processed(v["SPHTransactionId"].as_str().expect("transaction id"))
        .await;
    done["Data"]
        .as_array()
        .expect("clean check-status Data")
        .iter()
        .map(|i| {
            assert_eq!(i["RecordStatus"], "Success", "{i}");
            i["Data"]["progres_interoperabilityreferralid"]
                .as_str()
                .expect("referral id")
                .to_string()
        })
        .collect()
}

async fn start_clean() -> Sim {
    let s = start().await;
    s.set_options(json!({"checkstatus_legacy_malformed": false}))
        .await;
    s
}

/// The last logged request to `endpoint`.
async fn last_logged(s: &Sim, endpoint: &str) -> Value {
    let (_, log) = s.control(Method::GET, "/_sim/requests", None).await;
    log.as_array()
        .expect("log")
        .iter()
        .rev()
        .find(|e| e["endpoint"] == endpoint)
        .cloned()
        .unwrap_or_else(|| panic!("no {endpoint} request logged"))
}

async fn set_faults(s: &Sim, doc: Value) {
    let (status, v) = s.control(Method::POST, "/_sim/faults", Some(doc)).await;
    assert_eq!(status, 200, "{v}");
}

#[tokio::test]
async fn async_repeat_duplicate_is_the_default_and_a_second_create_makes_a_second_row() {
    let s = start_clean().await;
    let (_, opts) = s.control(Method::GET, "/_sim/options", None).await;
    assert_eq!(opts["async_repeat"], "duplicate");
    assert_eq!(opts["omit_transaction_id"], false);

    let first = create(&s, json!([incoming_record("case-a", "svc-a", "125080000")])).await;
    let second = create(&s, json!([incoming_record("case-a", "svc-a", "125080001")])).await;
    assert_ne!(first[0], second[0], "a new referral id");

    // Both retrievals show two rows; the first keeps what it was created with.
    let list = decision_list(&s).await;
    assert_eq!(list.len(), 2, "{list:?}");
    let listed: BTreeSet<&str> = list
        .iter()
        .map(|r| r["progres_interoperabilityreferralid"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([first[0].as_str(), second[0].as_str()])
    );
    let (_, details) = s
        .retrieve_ids("SHP-2796", &format!("[{},{}]", first[0], second[0]))
        .await;
    let details = rows(&details);
    assert_eq!(details.len(), 2);
    assert!(details
        .iter()
        .all(|d| d["progres_orgreferralid"] == "svc-a"));
    assert_eq!(details[0]["progres_pocsex"], json!(125080000));
    assert_eq!(details[1]["progres_pocsex"], json!(125080001));
    assert_eq!(referrals_with_org(&s, "svc-a").len(), 2);

    // Twice in one batch is twice as well.
    let ids = create(
        &s,
        json!([
            incoming_record("case-b", "svc-b", "125080000"),
            incoming_record("case-c", "svc-b", "125080000")
        ]),
    )
    .await;
    assert_ne!(ids[0], ids[1]);
    assert_eq!(referrals_with_org(&s, "svc-b").len(), 2);
    assert_eq!(decision_list(&s).await.len(), 4);
}

#[tokio::test]
async fn async_repeat_update_changes_the_stored_referral_and_adds_no_row() {
    let s = start_clean().await;
    // A value that is not a mode is refused and changes nothing.
    assert_eq!(s.options_status(json!({"async_repeat": "drop"})).await, 400);
    assert_eq!(
        s.sim.options().async_repeat,
        pp_sim_ping::AsyncRepeat::Duplicate
    );
    s.set_options(json!({"async_repeat": "update"})).await;

    let first = create(&s, json!([incoming_record("case-a", "svc-a", "125080000")])).await;
    let second = create(&s, json!([incoming_record("case-a", "svc-a", "125080001")])).await;
    assert_eq!(first, second, "the same referral");
    let list = decision_list(&s).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let (_, details) = s.retrieve_ids("SHP-2796", &first[0]).await;
    let details = rows(&details);
    assert_eq!(details.len(), 1);
    assert_eq!(details[0]["progres_pocsex"], json!(125080001), "updated");
    assert_eq!(referrals_with_org(&s, "svc-a").len(), 1);
}

#[tokio::test]
async fn async_repeat_ignore_drops_the_repeat_and_keeps_the_stored_referral() {
    let s = start_clean().await;
    s.set_options(json!({"async_repeat": "ignore"})).await;
    let first = create(&s, json!([incoming_record("case-a", "svc-a", "125080000")])).await;
    let second = create(&s, json!([incoming_record("case-a", "svc-a", "125080001")])).await;
    assert_eq!(first, second, "reported with the stored referral's id");
    assert_eq!(decision_list(&s).await.len(), 1);
    let (_, details) = s.retrieve_ids("SHP-2796", &first[0]).await;
    assert_eq!(
        rows(&details)[0]["progres_pocsex"],
        json!(125080000),
        "left as it was"
    );
    assert_eq!(referrals_with_org(&s, "svc-a").len(), 1);
}

#[tokio::test]
async fn apply_then_status_applies_a_sync_ingestion_and_answers_the_fault() {
    let s = start().await;
    s.seed(small_seed()).await;
    let (status, v) = s
        .control(
            Method::POST,
            "/_sim/faults",
            Some(json!({"rules": [{"endpoint": "data", "kind": "apply_then_status"}]})),
        )
        .await;
    assert_eq!(status, 400, "status is required: {v}");
    set_faults(
        &s,
        json!({"rules": [{"endpoint": "data", "kind": "apply_then_status", "status": 504, "times": 1}]}),
    )
    .await;
    let (_, faults) = s.control(Method::GET, "/_sim/faults", None).await;
    assert_eq!(faults["rules"][0]["kind"], "apply_then_status");

    let (status, v) = s
        .ingest("SHP-2748", json!([transfer_record("x", IV1, "125080002")]))
        .await;
    assert_eq!(status, 504);
    assert_eq!(
        keys(&v),
        BTreeSet::from(["statusCode".to_string(), "message".to_string()])
    );
    assert_eq!(v["statusCode"], 504);

    // Applied all the same: IV1 has its transfer status and left the pending list.
    let iv1 = stored_intervention(&s, IV1);
    assert_eq!(iv1["progres_primerotransferstatus"], json!(125080002));
    let (_, pending) = s.retrieve("SHP-2747", json!([])).await;
    assert!(rows(&pending)
        .iter()
        .all(|r| r["progres_lpinterventionid"] != IV1));
    // The log names the fault and the transaction the lost answer carried.
    let entry = last_logged(&s, "data").await;
    assert_eq!(entry["status"], 504);
    assert_eq!(entry["fault"], "apply_then_status:504");
    let tx = entry["sph_transaction_id"].as_str().expect("logged id");
    let stored = s.sim.state_json()["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["SPHTransactionId"] == tx)
        .expect("stored transaction")
        .clone();
    assert_eq!(stored["Status"], "Processed");
    assert_eq!(stored["records"][0]["RecordStatus"], "Success");

    // `times: 1`: the next call gets the real answer.
    let (status, v) = s
        .ingest("SHP-2748", json!([transfer_record("y", IV2, "125080002")]))
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["SPHTransactionId"].is_string());
}

#[tokio::test]
async fn apply_then_status_on_asyncdata_still_creates_the_referral() {
    let s = start_clean().await;
    set_faults(
        &s,
        json!({"rules": [{"endpoint": "asyncdata", "kind": "apply_then_status",
                          "status": 503, "retry_after_secs": 3}]}),
    )
    .await;
    let r = s
        .http
        .post(s.url("/api/ingestion/v2/PNR-1363/asyncdata"))
        .header("Ocp-Apim-Subscription-Key", "sim-subscription-key")
        .bearer_auth(&s.token)
        .json(
            &json!({"ShippingProcessId": "SHP-2731", "InteropID": "INT-1436", "APIVersion": "V2",
                      "Data": [incoming_record("case-a", "svc-a", "125080000")]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "3");
    let v: Value = r.json().await.unwrap();
    assert!(v.get("SPHTransactionId").is_none(), "{v}");

    let entry = last_logged(&s, "asyncdata").await;
    assert_eq!(entry["fault"], "apply_then_status:503");
    let done = s
        .wait_processed(entry["sph_transaction_id"].as_str().expect("logged id"))
        .await;
    assert_eq!(done["Data"][0]["RecordStatus"], "Success");
    assert_eq!(referrals_with_org(&s, "svc-a").len(), 1);
    assert_eq!(decision_list(&s).await.len(), 1);
}

#[tokio::test]
async fn apply_then_drop_applies_and_loses_the_connection_where_drop_applies_nothing() {
    let s = start_clean().await;
    s.seed(small_seed()).await;
    let send = |data: Value| {
        s.http
            .post(s.url("/api/ingestion/v2/PNR-1363/asyncdata"))
            .header("Ocp-Apim-Subscription-Key", "sim-subscription-key")
            .bearer_auth(&s.token)
            .json(
                &json!({"ShippingProcessId": "SHP-2731", "InteropID": "INT-1436",
                          "APIVersion": "V2", "Data": data}),
            )
            .send()
    };

    // Plain drop: nothing is received, so nothing is applied.
    set_faults(
        &s,
        json!({"rules": [{"endpoint": "asyncdata", "kind": "drop", "times": 1}]}),
    )
    .await;
    let err = send(json!([incoming_record("case-d", "svc-d", "125080000")]))
        .await
        .expect_err("dropped");
    assert!(err.status().is_none());
    let entry = last_logged(&s, "asyncdata").await;
    assert_eq!(entry["fault"], "drop");
    assert_eq!(entry["sph_transaction_id"], Value::Null);

    // apply_then_drop: the client sees the same connection error, but PING took the batch.
    set_faults(
        &s,
        json!({"rules": [{"endpoint": "asyncdata", "kind": "apply_then_drop", "times": 1}]}),
    )
    .await;
    let err = send(json!([incoming_record("case-a", "svc-a", "125080000")]))
        .await
        .expect_err("dropped after applying");
    assert!(err.status().is_none(), "{err:?}");
    assert!(
        !err.is_timeout() && !err.is_decode(),
        "a connection error: {err:?}"
    );
    let entry = last_logged(&s, "asyncdata").await;
    assert_eq!(entry["status"], Value::Null);
    assert_eq!(entry["fault"], "apply_then_drop");
    let done = s
        .wait_processed(entry["sph_transaction_id"].as_str().expect("logged id"))
        .await;
    assert_eq!(done["Data"][0]["RecordStatus"], "Success");
    let list = decision_list(&s).await;
    // The two seeded referrals and the one created; the dropped plain request left none.
    assert_eq!(list.len(), 3, "{list:?}");
    assert_eq!(referrals_with_org(&s, "svc-a").len(), 1);
    assert!(referrals_with_org(&s, "svc-d").is_empty());

    // On /data too: the transfer status is written, the answer is lost.
    set_faults(
        &s,
        json!({"rules": [{"endpoint": "data", "kind": "apply_then_drop"}]}),
    )
    .await;
    let err = s
        .http
        .post(s.url("/api/ingestion/v2/PNR-1363/data"))
        .header("Ocp-Apim-Subscription-Key", "sim-subscription-key")
        .bearer_auth(&s.token)
        .json(
            &json!({"ShippingProcessId": "SHP-2748", "InteropId": "INT-1436",
                      "Data": [transfer_record("x", IV2, "125080003")]}),
        )
        .send()
        .await
        .expect_err("dropped after applying");
    assert!(err.status().is_none());
    let iv2 = stored_intervention(&s, IV2);
    assert_eq!(iv2["progres_primerotransferstatus"], json!(125080003));
}

#[tokio::test]
async fn omit_transaction_id_leaves_it_out_of_accepting_answers_and_still_applies() {
    let s = start_clean().await;
    s.seed(small_seed()).await;
    // Default: the id is there.
    let (status, v) = s
        .ingest("SHP-2748", json!([transfer_record("x", IV1, "125080002")]))
        .await;
    assert_eq!(status, 200);
    assert!(v["SPHTransactionId"].is_string(), "{v}");

    s.set_options(json!({"omit_transaction_id": true})).await;
    // /data success: no id, the record is applied.
    let (status, v) = s
        .ingest("SHP-2748", json!([transfer_record("y", IV2, "125080003")]))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        keys(&v),
        BTreeSet::from(["ErrorMessage".to_string(), "RecordCount".to_string()])
    );
    assert_eq!(v["RecordCount"], 1);
    let iv2 = stored_intervention(&s, IV2);
    assert_eq!(iv2["progres_primerotransferstatus"], json!(125080003));
    // The transaction is still stored and logged under its id.
    let tx = last_logged(&s, "data").await["sph_transaction_id"]
        .as_str()
        .expect("logged id")
        .to_string();
    assert!(s.sim.state_json()["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["SPHTransactionId"] == tx.as_str()));

    // /asyncdata: `{}`, and the referral is created.
    let (status, v) = s
        .ingest_async(json!([incoming_record("case-a", "svc-a", "125080000")]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({}));
    let tx = last_logged(&s, "asyncdata").await["sph_transaction_id"]
        .as_str()
        .expect("logged id")
        .to_string();
    let done = s.wait_processed(&tx).await;
    assert_eq!(done["Data"][0]["RecordStatus"], "Success");
    assert_eq!(referrals_with_org(&s, "svc-a").len(), 1);

    // A partial batch that applied a record is an accepting answer too.
    s.set_options(json!({"batch_mode": "partial"})).await;
    let (status, v) = s
        .ingest(
            "SHP-2748",
            json!([
                transfer_record("ok", IV3, "125080002"),
                transfer_record("bad", IV3, "999")
            ]),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(v.get("SPHTransactionId").is_none(), "{v}");
    assert_eq!(v["RecordCount"], 1);
    assert_eq!(v["FailedRecords"][0]["ExternalId"], "bad");

    // A refused batch (nothing applied) keeps its id.
    let (status, v) = s
        .ingest("SHP-2748", json!([transfer_record("bad", IV3, "999")]))
        .await;
    assert_eq!(status, 400);
    assert!(v["SPHTransactionId"].is_string(), "{v}");
}

/// The SHP-2748 record of `transfer_record` with a field PING refuses on SHP-2748.
fn displayfield_record(ext: &str, lp: &str) -> Value {
    let mut r = transfer_record(ext, lp, "125080003");
    r["Fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"Name": "progres_comments_displayfield", "Value": "Referral acknowledged"}));
    r
}

const DISPLAYFIELD: &str = "field 'progres_comments_displayfield' is not allowed for SHP-2748";

#[tokio::test]
async fn ingestion_error_shape_plain_names_the_failed_records_in_one_message() {
    let s = start().await;
    s.seed(small_seed()).await;
    let (_, opts) = s.control(Method::GET, "/_sim/options", None).await;
    assert_eq!(opts["ingestion_error_shape"], "structured");
    let batch = json!([
        transfer_record("ok", IV1, "125080002"),
        displayfield_record("case-bad", IV2)
    ]);
    // Default (structured): a per-record list.
    let (status, v) = s.ingest("SHP-2748", batch.clone()).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        keys(&v),
        BTreeSet::from(["SPHTransactionId", "ErrorMessage", "FailedRecords"].map(String::from))
    );
    assert_eq!(v["FailedRecords"][0]["ExternalId"], "case-bad");

    // Plain: one ErrorMessage naming the record, nothing else.
    s.set_options(json!({"ingestion_error_shape": "plain"}))
        .await;
    let (status, v) = s.ingest("SHP-2748", batch.clone()).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v,
        json!({"ErrorMessage": format!("ExternalId case-bad: {DISPLAYFIELD}")})
    );
    assert!(stored_intervention(&s, IV1)
        .get("progres_primerotransferstatus")
        .is_none());
    // The transaction is still stored and logged, with its per-record results.
    let tx = last_logged(&s, "data").await["sph_transaction_id"]
        .as_str()
        .expect("logged id")
        .to_string();
    let state = s.sim.state_json();
    let stored = state["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["SPHTransactionId"] == tx.as_str())
        .expect("transaction stored");
    assert_eq!(stored["records"].as_array().unwrap().len(), 2);

    // Several failures: each named, in batch order; a record without an ExternalId gives
    // its reason alone.
    let (status, v) = s
        .ingest(
            "SHP-2748",
            json!([
                displayfield_record("case-1", IV1),
                transfer_record("ok", IV2, "125080002"),
                {"Fields": []},
                transfer_record("case-3", IV3, "999")
            ]),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v["ErrorMessage"],
        format!(
            "ExternalId case-1: {DISPLAYFIELD}; \
             record 2: ExternalId is required and must be a non-empty string; \
             ExternalId case-3: field 'progres_primerotransferstatus' is not a valid option code \
             (allowed 125080001..125080004)"
        )
    );

    // The HTTP status is still `ingestion_error_mode`'s.
    s.set_options(json!({"ingestion_error_mode": "ok_200"}))
        .await;
    let (status, v) = s.ingest("SHP-2748", batch.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(keys(&v), BTreeSet::from(["ErrorMessage".to_string()]));

    // A partial batch that applied a record answers 200 with the plain message only.
    s.set_options(json!({"ingestion_error_mode": "http_400", "batch_mode": "partial"}))
        .await;
    let (status, v) = s.ingest("SHP-2748", batch).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"ErrorMessage": format!("ExternalId case-bad: {DISPLAYFIELD}")})
    );
    assert_eq!(
        stored_intervention(&s, IV1)["progres_primerotransferstatus"],
        json!(125080002)
    );

    // Answers without failures keep their shape.
    let (status, v) = s
        .ingest("SHP-2748", json!([transfer_record("ok", IV3, "125080002")]))
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["SPHTransactionId"].is_string(), "{v}");
    assert_eq!(v["RecordCount"], 1);

    // Other values are refused.
    assert_eq!(
        s.options_status(json!({"ingestion_error_shape": "prose"}))
            .await,
        400
    );
}

#[tokio::test]
async fn transfer_status_125080000_is_refused_by_default_and_valid_under_the_switch() {
    let s = start().await;
    s.seed(small_seed()).await;
    let (_, opts) = s.control(Method::GET, "/_sim/options", None).await;
    assert_eq!(opts["transfer_status_accepts_125080000"], false);
    let pending = |v: &Value| -> BTreeSet<String> {
        rows(v)
            .iter()
            .map(|r| r["progres_lpinterventionid"].as_str().unwrap().to_string())
            .collect()
    };
    // Default: an invalid code; the intervention stays pending.
    let (status, v) = s
        .ingest("SHP-2748", json!([transfer_record("t", IV1, "125080000")]))
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v["FailedRecords"][0]["ErrorMessage"],
        "field 'progres_primerotransferstatus' is not a valid option code (allowed 125080001..125080004)"
    );
    let (_, list) = s.retrieve("SHP-2747", json!([])).await;
    assert!(pending(&list).contains(IV1));

    // Switched on: written as a number (no label: its meaning is UNKNOWN), and a status
    // set like any other (the intervention leaves SHP-2747).
    s.set_options(json!({"transfer_status_accepts_125080000": true}))
        .await;
    let (status, v) = s
        .ingest("SHP-2748", json!([transfer_record("t", IV1, "125080000")]))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        stored_intervention(&s, IV1)["progres_primerotransferstatus"],
        json!(125080000)
    );
    let (_, list) = s.retrieve("SHP-2747", json!([])).await;
    assert!(!pending(&list).contains(IV1));
    assert_eq!(pending(&list).len(), 2);
    // Codes outside the range are still refused, the message gives the wider range.
    let (status, v) = s
        .ingest("SHP-2748", json!([transfer_record("t", IV2, "125080005")]))
        .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(
        v["FailedRecords"][0]["ErrorMessage"],
        "field 'progres_primerotransferstatus' is not a valid option code (allowed 125080000..125080004)"
    );
}

#[tokio::test]
async fn new_referral_status_is_the_status_shp_2731_gives_a_created_referral() {
    let s = start_clean().await;
    let (_, opts) = s.control(Method::GET, "/_sim/options", None).await;
    assert_eq!(opts["new_referral_status"], 125080000);
    let status_of = |list: &[Value], id: &str| -> Value {
        list.iter()
            .find(|r| r["progres_interoperabilityreferralid"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("referral {id} listed"))
    };
    // Default: 125080000, labelled "New" (the simulator's assumption).
    let first = create(&s, json!([incoming_record("case-a", "svc-a", "125080000")])).await;
    let row = status_of(&decision_list(&s).await, &first[0]);
    assert_eq!(
        row["progres_interoperabilityreferralstatus"],
        json!(125080000)
    );
    assert_eq!(row["progres_interoperabilityreferralstatusname"], "New");

    // Another status: in SHP-2795 and SHP-2796, with the label of that code.
    s.set_options(json!({"new_referral_status": 125080001}))
        .await;
    let second = create(&s, json!([incoming_record("case-b", "svc-b", "125080000")])).await;
    let list = decision_list(&s).await;
    let row = status_of(&list, &second[0]);
    assert_eq!(
        row["progres_interoperabilityreferralstatus"],
        json!(125080001)
    );
    assert_eq!(
        row["progres_interoperabilityreferralstatusname"],
        "Accepted"
    );
    let (_, detail) = s.retrieve_ids("SHP-2796", &second[0]).await;
    let d = &rows(&detail)[0];
    assert_eq!(
        d["progres_interoperabilityreferralstatus"],
        json!(125080001)
    );
    assert_eq!(d["progres_offlineid"], "case-b");
    // Referrals created before keep theirs.
    assert_eq!(
        status_of(&list, &first[0])["progres_interoperabilityreferralstatus"],
        json!(125080000)
    );

    // A code without a label is emitted without `…name`.
    s.set_options(json!({"new_referral_status": 125080009}))
        .await;
    let third = create(&s, json!([incoming_record("case-c", "svc-c", "125080000")])).await;
    let (_, detail) = s.retrieve_ids("SHP-2796", &third[0]).await;
    let d = &rows(&detail)[0];
    assert_eq!(
        d["progres_interoperabilityreferralstatus"],
        json!(125080009)
    );
    assert!(
        d.get("progres_interoperabilityreferralstatusname")
            .is_none(),
        "{d}"
    );

    // Not an integer: refused, nothing changes.
    assert_eq!(
        s.options_status(json!({"new_referral_status": "accepted"}))
            .await,
        400
    );
    assert_eq!(s.sim.options().new_referral_status, 125080009);
}
