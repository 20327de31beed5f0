//! What the PING client makes of answer shapes ping-api.md leaves UNKNOWN or assumed (A),
//! each produced by a switch of the PING simulator, over real HTTP:
//! - check-status of an unknown `SPHTransactionId` with `Data: null` or without `Data`
//!   (`checkstatus_unknown_data`, item 16): [`CheckStatus::Unknown`] either way;
//! - a `/data` refusal whose only information is a plain `ErrorMessage` naming the record
//!   (`ingestion_error_shape: plain`, item 13): a permanent error that names no record, so the
//!   caller cannot tell which record failed (the flows split the batch), but whose message
//!   keeps the `ExternalId` and the field;
//! - a bearer 401 and a token-endpoint 400 with PING's JSON or with an empty body
//!   (`bearer_error_body`, `token_error_body`, items 1 and 3): one new token after a 401, then
//!   an authentication error, whatever the body.

mod common;

use common::{client, lp_ids, settings};

use pp_http::ErrorClass;
use pp_ping::{shp, CheckStatus, IngestRecord, PingClient, PingError};
use pp_sim_ping::scenario::{generate, ScenarioOptions};
use pp_sim_ping::{Options, SimHandle};
use serde_json::{json, Value};

const BUSINESS_UNIT: &str = "577ccdf6-86de-e811-80d8-001dd8b71fe3";
const DISPLAYFIELD: &str = "progres_comments_displayfield";

/// A simulator with `count` pending interventions and `patch` applied to its options.
async fn start(count: usize, patch: Value) -> SimHandle {
    let sim = pp_sim_ping::spawn(Options::default(), 0)
        .await
        .expect("simulator starts");
    if count > 0 {
        sim.seed(generate(&ScenarioOptions {
            count,
            seed: 5,
            ..Default::default()
        }))
        .await
        .expect("seed accepted");
    }
    sim.set_options(&patch).expect("options accepted");
    sim
}

/// Statuses of the logged requests to `endpoint`, in order.
fn statuses(sim: &SimHandle, endpoint: &str) -> Vec<Option<u16>> {
    sim.requests()
        .into_iter()
        .filter(|e| e.endpoint == endpoint)
        .map(|e| e.status)
        .collect()
}

fn transfer_status(sim: &SimHandle, lp_id: &str) -> Value {
    sim.state_json()["interventions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["progres_lpinterventionid"] == lp_id)
        .map(|i| i["progres_primerotransferstatus"].clone())
        .expect("intervention in state")
}

/// An SHP-2748 record (Flow 1.1's write-back: `ExternalId` = the LP intervention id).
fn transfer_record(external_id: &str, lp_id: &str) -> IngestRecord {
    IngestRecord::new(external_id)
        .field("progres_lpinterventionid", Some(lp_id))
        .field("progres_businessunit", Some(BUSINESS_UNIT))
        .field("progres_primerotransferstatus", Some("125080002"))
        .field("progres_primerotransferstatusdate", Some("2026-11-30"))
}

/// Three records of which the middle one carries a field SHP-2748 refuses (with a personal
/// value in it).
fn batch_with_one_refused(ids: &[String], refused_external_id: &str) -> Vec<IngestRecord> {
    vec![
        transfer_record(&ids[0], &ids[0]),
        transfer_record(refused_external_id, &ids[1])
            .field(DISPLAYFIELD, Some("Nyakuoth moved to Itang")),
        transfer_record(&ids[2], &ids[2]),
    ]
}

#[tokio::test]
async fn an_unknown_transaction_is_unknown_whether_data_is_null_or_absent() {
    for data in ["null", "absent"] {
        let sim = start(0, json!({"checkstatus_unknown_data": data})).await;
        let c = client(&sim);
        let status = c
            .check_status(shp::CREATE_REFERRAL, "5b0f2f4e-0000-4000-8000-000000000000")
            .await
            .unwrap_or_else(|e| panic!("Data {data}: {e:?}"));
        assert_eq!(status, CheckStatus::Unknown, "Data {data}");
        // Read once: an unknown transaction is an answer, not a failure to retry.
        assert_eq!(statuses(&sim, "checkstatus"), [Some(200)], "Data {data}");
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn a_plain_data_refusal_is_permanent_names_no_record_and_keeps_the_external_id_in_its_message(
) {
    let sim = start(3, json!({"ingestion_error_shape": "plain"})).await;
    let c = client(&sim);
    let ids = lp_ids(&sim);
    let e = c
        .ingest(shp::TRANSFER_STATUS, &batch_with_one_refused(&ids, &ids[1]))
        .await
        .unwrap_err();
    // Not `BatchRejected`: no record is named as refused, so a caller that attributes
    // refusals by `ExternalId` sees none (the flows split such a batch until one record
    // is left).
    let PingError::Permanent { status, message } = &e else {
        panic!("expected Permanent, got {e:?}")
    };
    assert_eq!(*status, 400);
    assert_eq!(e.class(), ErrorClass::Permanent);
    // The message still says which record and which field, and no value.
    assert!(message.contains(&ids[1]), "{message}");
    assert!(message.contains(DISPLAYFIELD), "{message}");
    assert!(!message.contains(&ids[0]) && !message.contains(&ids[2]));
    assert!(!format!("{e} {e:?}").contains("Nyakuoth"));
    // Sent once (a refusal is not retried); nothing applied (all-or-nothing).
    assert_eq!(statuses(&sim, "data"), [Some(400)]);
    for id in &ids {
        assert!(transfer_status(&sim, id).is_null());
    }

    // An `ExternalId` that is not a GUID (a Primero case_id) survives the masking too.
    let e = c
        .ingest(
            shp::TRANSFER_STATUS,
            &batch_with_one_refused(&ids, "case-7"),
        )
        .await
        .unwrap_err();
    match &e {
        PingError::Permanent {
            status: 400,
            message,
        } => assert!(message.starts_with("ExternalId case-7: "), "{message}"),
        other => panic!("expected Permanent 400, got {other:?}"),
    }

    // Under `ingestion_error_mode: ok_200` the same, with status 200.
    sim.set_options(&json!({"ingestion_error_mode": "ok_200"}))
        .unwrap();
    let e = c
        .ingest(shp::TRANSFER_STATUS, &batch_with_one_refused(&ids, &ids[1]))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, PingError::Permanent { status: 200, message } if message.contains(&ids[1])),
        "{e:?}"
    );
    for id in &ids {
        assert!(transfer_status(&sim, id).is_null());
    }
    sim.shutdown().await;
}

/// Under `batch_mode: partial` PING applies the valid records of a batch and the plain shape
/// says nothing about them: the client reports the whole call as refused, although two of
/// its three records are written in proGres. A caller must not take "refused" to mean "not
/// applied" (the flows send the records again, one by one; SHP-2748 writes are keyed).
#[tokio::test]
async fn a_plain_refusal_of_a_partly_applied_batch_is_reported_as_refused() {
    let sim = start(
        3,
        json!({"ingestion_error_shape": "plain", "batch_mode": "partial"}),
    )
    .await;
    let c = client(&sim);
    let ids = lp_ids(&sim);
    let e = c
        .ingest(shp::TRANSFER_STATUS, &batch_with_one_refused(&ids, &ids[1]))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, PingError::Permanent { status: 200, message } if message.contains(&ids[1])),
        "{e:?}"
    );
    assert_eq!(statuses(&sim, "data"), [Some(200)]);
    assert_eq!(transfer_status(&sim, &ids[0]), json!(125080002));
    assert!(transfer_status(&sim, &ids[1]).is_null());
    assert_eq!(transfer_status(&sim, &ids[2]), json!(125080002));
    // With the structured shape the same batch is an outcome naming the refused record.
    sim.set_options(&json!({"ingestion_error_shape": "structured"}))
        .unwrap();
    let out = c
        .ingest(shp::TRANSFER_STATUS, &batch_with_one_refused(&ids, &ids[1]))
        .await
        .unwrap();
    assert_eq!(out.failed.len(), 1);
    assert_eq!(out.failed[0].external_id, ids[1]);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_refused_token_is_replaced_once_then_an_auth_error_whatever_the_401_body() {
    for body in ["json", "empty"] {
        let sim = start(2, json!({"bearer_error_body": body})).await;
        let c = client(&sim);
        // A token PING stops accepting: one new token and the call succeeds.
        c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap();
        sim.set_faults(
            serde_json::from_value(json!({"rules": [], "expire_tokens": true})).unwrap(),
        )
        .unwrap();
        let r = c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap();
        assert_eq!(r.rows.len(), 2, "{body}");
        assert_eq!(statuses(&sim, "token").len(), 2, "{body}");
        assert_eq!(
            statuses(&sim, "retrieve"),
            [Some(200), Some(401), Some(200)],
            "{body}"
        );

        // Every token refused (already expired when issued): the cached token is refused,
        // one new token is fetched and refused too, then an authentication error, not
        // retried.
        sim.set_options(&json!({"token_expires_in_secs": 0}))
            .unwrap();
        sim.set_faults(
            serde_json::from_value(json!({"rules": [], "expire_tokens": true})).unwrap(),
        )
        .unwrap();
        let e = c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap_err();
        assert!(matches!(e, PingError::Auth { .. }), "{body}: {e:?}");
        assert_eq!(e.class(), ErrorClass::Auth);
        assert_eq!(statuses(&sim, "token").len(), 3, "{body}");
        assert_eq!(
            statuses(&sim, "retrieve"),
            [Some(200), Some(401), Some(200), Some(401), Some(401)],
            "{body}"
        );
        let text = e.to_string();
        match body {
            "json" => assert!(
                text.contains("Access token is missing or invalid"),
                "{text}"
            ),
            _ => assert!(text.contains("no message"), "{text}"),
        }
        // The same on ingestion.
        let ids = lp_ids(&sim);
        let e = c
            .ingest(shp::TRANSFER_STATUS, &[transfer_record(&ids[0], &ids[0])])
            .await
            .unwrap_err();
        assert!(matches!(e, PingError::Auth { .. }), "{body}: {e:?}");
        assert_eq!(statuses(&sim, "data"), [Some(401), Some(401)], "{body}");
        assert_eq!(statuses(&sim, "token").len(), 5, "{body}");
        assert!(transfer_status(&sim, &ids[0]).is_null());
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn refused_credentials_are_an_auth_error_whatever_the_token_error_body() {
    for (body, code) in [("json", "invalid_grant"), ("empty", "no error code")] {
        let sim = start(1, json!({"token_error_body": body})).await;
        let c = PingClient::new(settings(&sim, "wrong-password-value")).unwrap();
        let e = c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(matches!(e, PingError::Auth { .. }), "{body}: {text}");
        assert_eq!(e.class(), ErrorClass::Auth);
        assert!(text.contains("status 400") && text.contains(code), "{text}");
        assert!(!text.contains("wrong-password-value"), "{text}");
        // One token request, not retried; no API call without a token.
        assert_eq!(statuses(&sim, "token"), [Some(400)], "{body}");
        assert!(statuses(&sim, "retrieve").is_empty(), "{body}");
        sim.shutdown().await;
    }
}
