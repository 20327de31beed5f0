//! The switches for answer bodies ping-api.md marks as assumptions (A), over real HTTP:
//! `bearer_error_body` (the 401 to a missing, unknown or expired token: APIM's JSON or an
//! empty body, item 3), `token_error_body` (the token endpoint's 400: B2C's JSON or an empty
//! body, item 1) and `checkstatus_unknown_data` (check-status of an unknown transaction:
//! `Data: null` or no `Data` key, item 16) and `checkstatus_item_keys` (a processed item's
//! keys besides `Data`, spec §2.4). Each test checks the default, the other value,
//! and that the answers the switch is not about keep their shape.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use pp_sim_ping::{AuthErrorBody, BatchMode, Options, UnknownTransactionData};
use reqwest::Method;
use serde_json::{json, Value};

/// Status, `Content-Type` and body text of a retrieval sent with `token` (none: no
/// `Authorization` header) and the right subscription key, or `key` instead.
async fn retrieve_with(s: &Sim, token: Option<&str>, key: &str) -> (u16, Option<String>, String) {
    let mut rb = s
        .http
        .post(s.url(pp_sim_ping::RETRIEVE_PATH))
        .header("Ocp-Apim-Subscription-Key", key)
        .json(
            &json!({"ShippingProcessId": "SHP-2747", "PartnerId": "PNR-1363",
                      "InteropID": "INT-1436", "QueryParameters": []}),
        );
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.expect("request");
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string());
    (status, content_type, r.text().await.expect("body"))
}

/// Status, `Content-Type` and body text of a token request with `password`.
async fn token_with(s: &Sim, password: &str) -> (u16, Option<String>, String) {
    let r = s
        .http
        .post(s.sim.token_url())
        .form(&token_form(password))
        .send()
        .await
        .expect("token request");
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string());
    (status, content_type, r.text().await.expect("body"))
}

const KEY: &str = "sim-subscription-key";

#[tokio::test]
async fn bearer_error_body_empty_answers_every_token_refusal_with_an_empty_401() {
    let s = start().await;
    let (_, opts) = s.control(Method::GET, "/_sim/options", None).await;
    assert_eq!(opts["bearer_error_body"], "json");
    // Default: APIM's JSON (contract_03 checks it for every case).
    let (status, _, body) = retrieve_with(&s, Some("made-up"), KEY).await;
    assert_eq!(status, 401);
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["statusCode"], 401);

    s.set_options(json!({"bearer_error_body": "empty", "token_expires_in_secs": 1}))
        .await;
    let short = fetch_token(&s.http, &s.sim.token_url()).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for (what, token) in [
        ("missing", None),
        ("unknown", Some("made-up")),
        ("expired", Some(short.as_str())),
    ] {
        let (status, content_type, body) = retrieve_with(&s, token, KEY).await;
        assert_eq!(status, 401, "{what}");
        assert_eq!(body, "", "{what}");
        assert_eq!(content_type, None, "{what}");
    }
    // The other endpoints answer the same way.
    for path in [
        "/api/ingestion/v2/PNR-1363/data",
        "/api/ingestion/v2/PNR-1363/asyncdata",
        pp_sim_ping::CHECKSTATUS_PATH,
    ] {
        let r = s
            .http
            .post(s.url(path))
            .header("Ocp-Apim-Subscription-Key", KEY)
            .bearer_auth("made-up")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(r.text().await.unwrap(), "", "{path}");
    }
    // The subscription key's 401 is APIM's documented answer, not an assumption: unchanged.
    let (status, _, body) = retrieve_with(&s, Some("made-up"), "wrong-key").await;
    assert_eq!(status, 401);
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("invalid subscription key"));
    // A valid token still works.
    s.set_options(json!({"token_expires_in_secs": 3600})).await;
    let fresh = fetch_token(&s.http, &s.sim.token_url()).await;
    assert_eq!(retrieve_with(&s, Some(&fresh), KEY).await.0, 200);
}

#[tokio::test]
async fn token_error_body_empty_answers_refused_credentials_with_an_empty_400() {
    let s = start_with(Options {
        token_error_body: AuthErrorBody::Empty,
        ..Options::default()
    })
    .await;
    let (status, content_type, body) = token_with(&s, "wrong").await;
    assert_eq!(status, 400);
    assert_eq!(body, "");
    assert_eq!(content_type, None);
    // The other refusals (here a scope it does not know) too.
    let mut form = token_form("sim-ping-password");
    form.retain(|(k, _)| *k != "scope");
    form.push(("scope", "https://elsewhere/API.Read".into()));
    let r = s
        .http
        .post(s.sim.token_url())
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), "");
    // Success is unchanged.
    let (status, _, body) = token_with(&s, "sim-ping-password").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert!(v["access_token"].is_string());

    // Back to the default through the control API: B2C's JSON.
    s.set_options(json!({"token_error_body": "json"})).await;
    let (status, _, body) = token_with(&s, "wrong").await;
    assert_eq!(status, 400);
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["error"], "invalid_grant");
    assert_eq!(
        s.options_status(json!({"token_error_body": "html"})).await,
        400
    );
}

#[tokio::test]
async fn checkstatus_unknown_data_is_null_or_absent() {
    let s = start_with(Options {
        checkstatus_legacy_malformed: false,
        async_delay_ms: 2000,
        ..Options::default()
    })
    .await;
    const UNKNOWN: &str = "5b0f2f4e-0000-4000-8000-000000000000";
    let keys = |v: &Value| -> BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
    let all =
        BTreeSet::from(["SPHTransactionId", "Status", "ErrorMessage", "Data"].map(String::from));
    // Default: `Data: null`.
    assert_eq!(
        s.sim.options().checkstatus_unknown_data,
        UnknownTransactionData::Null
    );
    let (status, v) = s.checkstatus(UNKNOWN).await;
    assert_eq!(status, 200);
    assert_eq!(keys(&v), all);
    assert_eq!(v["Data"], Value::Null);

    // Absent: the same answer without the key.
    s.set_options(json!({"checkstatus_unknown_data": "absent"}))
        .await;
    let (status, v) = s.checkstatus(UNKNOWN).await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({"SPHTransactionId": UNKNOWN, "Status": null, "ErrorMessage": "Transaction not found"})
    );
    // A known transaction keeps its `Data` (`[]` while pending).
    let (_, accepted) = s
        .ingest_async(json!([incoming_record("case-a", "svc-a", "125080000")]))
        .await;
    let (_, pending) = s
        .checkstatus(accepted["SPHTransactionId"].as_str().unwrap())
        .await;
    assert_eq!(pending["Status"], "Pending");
    assert_eq!(keys(&pending), all);
    assert_eq!(pending["Data"], json!([]));
    assert_eq!(
        s.options_status(json!({"checkstatus_unknown_data": "missing"}))
            .await,
        400
    );
}

#[tokio::test]
async fn checkstatus_item_keys_data_only_leaves_every_item_without_an_outcome() {
    let s = start_with(Options {
        checkstatus_legacy_malformed: false,
        async_delay_ms: 0,
        batch_mode: BatchMode::Partial,
        ..Options::default()
    })
    .await;
    // One record PING accepts, one it refuses (an invalid option code).
    let records = json!([
        incoming_record("case-a", "svc-a", "125080000"),
        incoming_record("case-b", "svc-b", "Unknown")
    ]);
    let (_, accepted) = s.ingest_async(records.clone()).await;
    let named = s
        .wait_processed(accepted["SPHTransactionId"].as_str().unwrap())
        .await;
    // Default: every item names its record and its outcome.
    let outcomes: Vec<&Value> = named["Data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["RecordStatus"])
        .collect();
    assert_eq!(outcomes, [&json!("Success"), &json!("Failed")]);

    s.set_options(json!({"checkstatus_item_keys": "data_only"}))
        .await;
    let (_, again) = s.ingest_async(records).await;
    let bare = s
        .wait_processed(again["SPHTransactionId"].as_str().unwrap())
        .await;
    let items = bare["Data"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for item in items {
        let keys: BTreeSet<&str> = item
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, BTreeSet::from(["Key1", "Data", "Key2"]), "{item}");
        assert!(item["Data"].is_object(), "{item}");
    }
    // The transaction's own keys keep their shape.
    assert_eq!(bare["Status"], "Processed");

    // The legacy malformed string carries the same items: no outcome, no ExternalId.
    s.set_options(json!({"checkstatus_legacy_malformed": true}))
        .await;
    let (_, text) = s
        .checkstatus(again["SPHTransactionId"].as_str().unwrap())
        .await;
    let data = text["Data"].as_str().expect("the legacy string");
    assert!(data.starts_with("[{\"Key1\":null,\"Data\":\"{"), "{data}");
    assert!(
        !data.contains("RecordStatus") && !data.contains("ExternalId"),
        "{data}"
    );
}
