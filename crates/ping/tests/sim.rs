//! The PING client against the PING simulator over real HTTP: token reuse, expiry and 401
//! recovery, paging, empty results, record-id lists, ingestion (batch rejection, disallowed
//! fields), check-status (malformed and clean), and the retry policy under injected faults,
//! including `/asyncdata`, which is sent again only when the failed attempt certainly did not
//! reach PING's processing, and ingestion answers without `SPHTransactionId` (transient for
//! `/asyncdata`, a success without a transaction id for `/data`).

mod common;

use common::{lp_ids, PASSWORD, SUB_KEY, USERNAME};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use pp_http::{ErrorClass, RetryPolicy};
use pp_ping::{
    shp, CheckStatus, DecisionDetail, DecisionListRow, FromRow, IngestRecord,
    InterventionDetailRow, PendingReferral, PingClient, PingError, PingSettings,
};
use pp_sim_ping::scenario::{generate, ScenarioOptions};
use pp_sim_ping::{Options, SimHandle};
use secrecy::SecretString;
use serde_json::{json, Value};

const BUSINESS_UNIT: &str = "577ccdf6-86de-e811-80d8-001dd8b71fe3";

async fn start(count: usize, count_referrals: usize) -> SimHandle {
    let sim = pp_sim_ping::spawn(Options::default(), 0)
        .await
        .expect("simulator starts");
    if count + count_referrals > 0 {
        let doc = generate(&ScenarioOptions {
            count,
            count_referrals,
            seed: 7,
            ..Default::default()
        });
        sim.seed(doc).await.expect("seed accepted");
    }
    sim
}

fn settings(sim: &SimHandle) -> PingSettings {
    let mut s = common::settings(sim, PASSWORD);
    // More patience than the shared settings: the retry tests count on four attempts.
    s.http.request_timeout = Duration::from_secs(3);
    s.http.retry = RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_secs(3),
        max_elapsed: Duration::from_secs(20),
    };
    s
}

fn client(sim: &SimHandle) -> PingClient {
    PingClient::new(settings(sim)).expect("valid settings")
}

async fn faults(sim: &SimHandle, doc: Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&doc)
        .send()
        .await
        .expect("control API answers");
    assert!(r.status().is_success(), "faults refused: {}", r.status());
}

/// `/_sim/requests` entries of one endpoint: (status, shp).
async fn requests(sim: &SimHandle, endpoint: &str) -> Vec<(Option<u16>, Option<String>)> {
    let log: Vec<Value> = reqwest::Client::new()
        .get(format!("{}/_sim/requests", sim.base_url()))
        .send()
        .await
        .expect("control API answers")
        .json()
        .await
        .expect("request log is JSON");
    log.iter()
        .filter(|e| e["endpoint"] == endpoint)
        .map(|e| {
            (
                e["status"].as_u64().map(|s| s as u16),
                e["shp"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn pending_ids(rows: &[pp_ping::Row]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            PendingReferral::from_row(r)
                .expect("sim rows are well formed")
                .lp_intervention_id
                .expect("sim rows carry the LP id")
        })
        .collect()
}

#[tokio::test]
async fn token_is_fetched_once_and_shared_by_concurrent_calls() {
    let sim = start(5, 0).await;
    let c = client(&sim);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.retrieve(shp::PENDING_REFERRALS, &[]).await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap().expect("retrieval succeeds");
        assert_eq!(r.rows.len(), 5);
    }
    c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap();
    assert_eq!(
        requests(&sim, "token").await.len(),
        1,
        "one token for all calls"
    );
    assert_eq!(requests(&sim, "retrieve").await.len(), 9);
    sim.shutdown().await;
}

#[tokio::test]
async fn token_is_refreshed_before_it_expires() {
    let sim = start(2, 0).await;
    sim.set_options(&json!({"token_expires_in_secs": 2, "token_expires_in_as_string": false}))
        .unwrap();
    let mut s = settings(&sim);
    s.token_refresh_margin = Duration::from_secs(1);
    let c = PingClient::new(s).unwrap();
    c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap();
    c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap();
    assert_eq!(requests(&sim, "token").await.len(), 1);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap();
    assert_eq!(
        requests(&sim, "token").await.len(),
        2,
        "refreshed after the margin"
    );
    // Refreshed ahead of expiry: PING never had to refuse a token.
    assert!(requests(&sim, "retrieve")
        .await
        .iter()
        .all(|(s, _)| *s == Some(200)));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_refused_token_is_replaced_once_and_the_call_repeated() {
    let sim = start(3, 0).await;
    let c = client(&sim);
    c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap();
    faults(&sim, json!({"rules": [], "expire_tokens": true})).await;
    let r = c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap();
    assert_eq!(r.rows.len(), 3);
    assert_eq!(requests(&sim, "token").await.len(), 2);
    let statuses: Vec<_> = requests(&sim, "retrieve")
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(statuses, [Some(200), Some(401), Some(200)]);

    // Concurrent callers refused at once share one new token.
    faults(&sim, json!({"rules": [], "expire_tokens": true})).await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.retrieve(shp::PENDING_REFERRALS, &[]).await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().rows.len(), 3);
    }
    assert_eq!(requests(&sim, "token").await.len(), 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_second_401_is_an_auth_error_without_secrets() {
    let sim = start(1, 0).await;
    // Tokens are already expired when issued: the fresh token is refused too.
    sim.set_options(&json!({"token_expires_in_secs": 0}))
        .unwrap();
    let c = client(&sim);
    let e = c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap_err();
    assert!(matches!(e, PingError::Auth { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Auth);
    assert_eq!(requests(&sim, "token").await.len(), 2);
    assert_eq!(
        requests(&sim, "retrieve").await.len(),
        2,
        "auth errors are not retried"
    );
    let text = format!("{e} {e:?}");
    for secret in [PASSWORD, SUB_KEY, "sim."] {
        assert!(!text.contains(secret), "{text}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn refused_credentials_name_the_oauth_code_only() {
    let sim = start(1, 0).await;
    let mut s = settings(&sim);
    s.password = SecretString::from("wrong-password-value");
    let c = PingClient::new(s).unwrap();
    let e = c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(matches!(e, PingError::Auth { .. }), "{text}");
    assert!(text.contains("invalid_grant"), "{text}");
    for leak in ["wrong-password-value", USERNAME, "AADB2C90225"] {
        assert!(!text.contains(leak), "{text}");
    }
    assert_eq!(requests(&sim, "token").await.len(), 1);
    assert!(requests(&sim, "retrieve").await.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn every_page_is_read_once() {
    let sim = start(11, 0).await;
    let c = client(&sim);
    let all = c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap();
    assert_eq!(all.rows.len(), 11);
    assert_eq!(all.transaction_ids.len(), 1);

    sim.set_options(&json!({"page_size": 3})).unwrap();
    let mut page_sizes = Vec::new();
    let mut paged_ids = Vec::new();
    let summary = c
        .retrieve_pages(shp::PENDING_REFERRALS, &[], |rows| {
            page_sizes.push(rows.len());
            paged_ids.extend(pending_ids(&rows));
        })
        .await
        .unwrap();
    assert_eq!(page_sizes, [3, 3, 3, 2]);
    assert_eq!(summary.pages, 4);
    assert_eq!(summary.rows, 11);
    let distinct: BTreeSet<_> = summary.transaction_ids.iter().collect();
    assert_eq!(distinct.len(), 4, "one SPHTransactionId per page");

    let unique: BTreeSet<_> = paged_ids.iter().cloned().collect();
    assert_eq!(unique.len(), 11, "no duplicates across pages");
    assert_eq!(paged_ids, pending_ids(&all.rows), "same rows, same order");
    let expected: BTreeSet<_> = lp_ids(&sim).into_iter().collect();
    assert_eq!(unique, expected);

    // Page at a time under the caller's control.
    let first = c
        .retrieve_page(shp::PENDING_REFERRALS, &[], None)
        .await
        .unwrap();
    let second = c
        .retrieve_page(shp::PENDING_REFERRALS, &[], first.next.as_ref())
        .await
        .unwrap();
    assert!(first.next.is_some() && second.next.is_some());
    assert_eq!(pending_ids(&first.rows), paged_ids[..3]);
    assert_eq!(pending_ids(&second.rows), paged_ids[3..6]);

    // retrieve() concatenates the same pages.
    let again = c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap();
    assert_eq!(pending_ids(&again.rows), paged_ids);
    assert_eq!(again.transaction_ids.len(), 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn pages_are_requested_one_at_a_time_as_the_caller_asks() {
    let sim = start(7, 0).await;
    let c = client(&sim);
    sim.set_options(&json!({"page_size": 3})).unwrap();
    let before = requests(&sim, "retrieve").await.len();

    let mut pages = c.pages(shp::PENDING_REFERRALS, &[]);
    assert_eq!(
        requests(&sim, "retrieve").await.len(),
        before,
        "nothing before the first page"
    );
    let mut sizes = Vec::new();
    let mut ids = Vec::new();
    while let Some(rows) = pages.next_page().await.unwrap() {
        sizes.push(rows.len());
        ids.extend(pending_ids(&rows));
        // The next page is requested only when the caller asks for it.
        assert_eq!(requests(&sim, "retrieve").await.len() - before, sizes.len());
    }
    assert_eq!(sizes, [3, 3, 1]);
    assert!(
        pages.next_page().await.unwrap().is_none(),
        "over stays over"
    );
    assert_eq!(requests(&sim, "retrieve").await.len() - before, 3);
    let summary = pages.into_summary();
    assert_eq!((summary.pages, summary.rows), (3, 7));
    assert_eq!(summary.transaction_ids.len(), 3);
    let all = c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap();
    assert_eq!(ids, pending_ids(&all.rows), "same rows, same order");
    sim.shutdown().await;
}

#[tokio::test]
async fn no_data_available_is_an_empty_result() {
    let sim = start(0, 0).await;
    let c = client(&sim);
    let r = c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap();
    assert!(r.rows.is_empty());
    assert_eq!(r.transaction_ids.len(), 1);
    let r = c
        .retrieve(
            shp::INTERVENTION_DETAILS,
            &["0b0b0b0b-1111-4222-8333-444444444444".to_string()],
        )
        .await
        .unwrap();
    assert!(r.rows.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn details_of_one_id_and_of_a_bracketed_list() {
    let sim = start(4, 0).await;
    let c = client(&sim);
    let ids = lp_ids(&sim);

    let one = c
        .retrieve(shp::INTERVENTION_DETAILS, &ids[..1])
        .await
        .unwrap();
    assert!(!one.rows.is_empty());
    let parsed: Vec<InterventionDetailRow> = one
        .rows
        .iter()
        .map(|r| InterventionDetailRow::from_row(r).expect("detail rows parse"))
        .collect();
    assert!(parsed.iter().all(|d| d.lp_intervention_id == ids[0]));
    for d in &parsed {
        assert!(d.non_join_differences(&parsed[0]).is_empty());
        assert!(d.individual_id.is_some() && d.date_of_birth.is_some() && d.sex.is_some());
    }

    let two = c
        .retrieve(shp::INTERVENTION_DETAILS, &ids[1..3])
        .await
        .unwrap();
    let mut groups: BTreeMap<String, Vec<InterventionDetailRow>> = BTreeMap::new();
    for r in &two.rows {
        let d = InterventionDetailRow::from_row(r).unwrap();
        groups
            .entry(d.lp_intervention_id.clone())
            .or_default()
            .push(d);
    }
    let got: BTreeSet<_> = groups.keys().cloned().collect();
    let want: BTreeSet<_> = ids[1..3].iter().cloned().collect();
    assert_eq!(got, want, "both ids of the list are answered");
    for rows in groups.values() {
        assert!(rows
            .iter()
            .all(|r| r.non_join_differences(&rows[0]).is_empty()));
    }
    // The sim logged one retrieval per call: the list went in a single request.
    assert_eq!(requests(&sim, "retrieve").await.len(), 2);

    // Debug of rows and typed rows shows no personal value.
    let given = two.rows[0]
        .get_str("progres_individual.individuals.progres_givenname")
        .expect("sim rows carry a given name")
        .to_string();
    let dob = two.rows[0]
        .get_str("progres_individual.individuals.progres_dateofbirth")
        .unwrap()
        .to_string();
    let typed = InterventionDetailRow::from_row(&two.rows[0]).unwrap();
    let text = format!("{:?} {:?} {:?}", two.rows[0], typed, two);
    assert!(!text.contains(&given) && !text.contains(&dob), "{text}");
    sim.shutdown().await;
}

#[tokio::test]
async fn decision_list_and_details_parse() {
    let sim = start(0, 12).await;
    let c = client(&sim);
    let list = c.retrieve(shp::DECISION_LIST, &[]).await.unwrap();
    assert_eq!(list.rows.len(), 12);
    let decisions: Vec<DecisionListRow> = list
        .rows
        .iter()
        .map(|r| DecisionListRow::from_row(r).unwrap())
        .collect();
    let decided: Vec<String> = decisions
        .iter()
        .filter(|d| d.status == 125_080_001 || d.status == 125_080_002)
        .map(|d| d.referral_id.clone())
        .collect();
    assert!(!decided.is_empty(), "the scenario has decided referrals");
    let details = c.retrieve(shp::DECISION_DETAIL, &decided).await.unwrap();
    assert_eq!(details.rows.len(), decided.len());
    for r in &details.rows {
        let d = DecisionDetail::from_row(r).unwrap();
        assert!(decided.contains(&d.referral_id));
        assert!(!d.offline_id.is_empty() && !d.org_referral_id.is_empty());
        if d.status == Some(125_080_002) {
            assert!(d.rejection_reason_name.is_some());
            let comment = d.rejection_comment.clone().unwrap();
            assert!(!format!("{d:?}").contains(&comment));
        }
    }
    sim.shutdown().await;
}

fn transfer_record(external_id: &str, lp_id: &str) -> IngestRecord {
    IngestRecord::new(external_id)
        .field("progres_lpinterventionid", Some(lp_id))
        .field("progres_businessunit", Some(BUSINESS_UNIT))
        .field("progres_primerotransferstatus", Some("125080002"))
        .field("progres_primerotransferstatusdate", Some("2026-11-30"))
}

fn intervention_state(sim: &SimHandle, lp_id: &str) -> Value {
    sim.state_json()["interventions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["progres_lpinterventionid"] == lp_id)
        .cloned()
        .expect("intervention in state")
}

#[tokio::test]
async fn a_refused_batch_names_the_failing_records_and_the_rest_can_be_resent() {
    let sim = start(3, 0).await;
    let c = client(&sim);
    let ids = lp_ids(&sim);
    let batch = vec![
        transfer_record(&ids[0], &ids[0]),
        transfer_record("bad-unknown", "0b0b0b0b-1111-4222-8333-444444444444"),
        transfer_record(&ids[1], &ids[1])
            .field("progres_comments_displayfield", Some("Lindah moved")),
        transfer_record(&ids[2], &ids[2]),
    ];
    let e = c.ingest(shp::TRANSFER_STATUS, &batch).await.unwrap_err();
    let PingError::BatchRejected {
        failed,
        transaction_id,
    } = &e
    else {
        panic!("expected BatchRejected, got {e:?}")
    };
    assert!(transaction_id.is_some());
    let names: BTreeSet<_> = failed.iter().map(|f| f.external_id.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["bad-unknown", ids[1].as_str()]));
    let disallowed = failed.iter().find(|f| f.external_id == ids[1]).unwrap();
    assert!(disallowed.message.contains("progres_comments_displayfield"));
    assert!(!format!("{e} {e:?}").contains("Lindah"));
    assert_eq!(e.class(), ErrorClass::Permanent);
    // All-or-nothing: nothing was applied.
    assert!(intervention_state(&sim, &ids[0])["progres_primerotransferstatus"].is_null());

    // The caller drops the failed records and sends the rest again.
    let rest: Vec<IngestRecord> = batch
        .into_iter()
        .filter(|r| !names.contains(r.external_id.as_str()))
        .collect();
    let ok = c.ingest(shp::TRANSFER_STATUS, &rest).await.unwrap();
    assert!(ok.failed.is_empty());
    assert!(ok.transaction_id.is_some());
    for id in [&ids[0], &ids[2]] {
        assert_eq!(
            intervention_state(&sim, id)["progres_primerotransferstatus"],
            json!(125080002)
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_disallowed_field_is_refused_but_the_same_text_as_attachment_is_accepted() {
    let sim = start(1, 0).await;
    let c = client(&sim);
    let id = lp_ids(&sim).remove(0);
    let comment = "Referral acknowledged by PRIMERO";
    let as_field =
        transfer_record("case-1", &id).field("progres_comments_displayfield", Some(comment));
    let e = c
        .ingest(shp::TRANSFER_STATUS, &[as_field])
        .await
        .unwrap_err();
    match &e {
        PingError::BatchRejected { failed, .. } => {
            assert_eq!(failed.len(), 1);
            assert_eq!(failed[0].external_id, "case-1");
            assert!(failed[0].message.contains("progres_comments_displayfield"));
        }
        other => panic!("expected BatchRejected, got {other:?}"),
    }
    let as_attachment = transfer_record("case-1", &id).attachment(comment);
    let out = c
        .ingest(shp::TRANSFER_STATUS, &[as_attachment])
        .await
        .unwrap();
    assert!(out.failed.is_empty() && out.transaction_id.is_some());
    assert_eq!(
        intervention_state(&sim, &id)["attachment_comments"],
        json!([comment])
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn partial_batches_report_failures_with_the_outcome() {
    let sim = start(1, 0).await;
    sim.set_options(&json!({"batch_mode": "partial"})).unwrap();
    let c = client(&sim);
    let id = lp_ids(&sim).remove(0);
    let out = c
        .ingest(
            shp::TRANSFER_STATUS,
            &[
                transfer_record("good", &id),
                transfer_record("bad", "0b0b0b0b-1111-4222-8333-444444444444"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out.failed.len(), 1);
    assert_eq!(out.failed[0].external_id, "bad");
    assert!(out.transaction_id.is_some());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_refused_request_is_permanent_in_both_error_modes() {
    let sim = start(1, 0).await;
    let c = client(&sim);
    let e = c.retrieve("SHP-9999", &[]).await.unwrap_err();
    assert!(
        matches!(e, PingError::Permanent { status: 400, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("SHP-9999"));
    sim.set_options(&json!({"request_error_mode": "ok_200"}))
        .unwrap();
    let e = c.retrieve("SHP-9999", &[]).await.unwrap_err();
    assert!(
        matches!(e, PingError::Permanent { status: 200, .. }),
        "{e:?}"
    );
    assert_eq!(requests(&sim, "retrieve").await.len(), 2, "not retried");
    sim.shutdown().await;
}

fn referral_record(case_id: &str, first_name: &str, sex: &str) -> IngestRecord {
    IngestRecord::new(case_id)
        .with_external_guid("5a0d1c36-0f43-4a8e-9d63-1c9b1b7e2f11")
        .field("progres_externalid", Some(case_id))
        .field("progres_offlineid", Some(case_id))
        .field("progres_businessunit", Some(BUSINESS_UNIT))
        .field(
            "progres_orgreferralid",
            Some(format!("svc-{case_id}").as_str()),
        )
        .field("progres_pocfirstname", Some(first_name))
        .field("progres_pocsex", Some(sex))
}

async fn wait_processed(c: &PingClient, tx: &str) -> Vec<pp_ping::RecordResult> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match c.check_status(shp::CREATE_REFERRAL, tx).await.unwrap() {
            CheckStatus::Processed(r) => return r,
            CheckStatus::Pending => {}
            CheckStatus::Unknown => panic!("transaction {tx} unknown"),
        }
        assert!(Instant::now() < deadline, "not processed in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The raw check-status body, fetched without the client, to prove what the sim sends.
async fn raw_check_status(sim: &SimHandle, tx: &str) -> Value {
    let http = reqwest::Client::new();
    let token: Value = http
        .post(sim.token_url())
        .form(&[
            ("username", USERNAME),
            ("password", PASSWORD),
            ("grant_type", "password"),
            ("scope", pp_ping::DEFAULT_SCOPE),
            ("client_id", "ping-primero-sim"),
            ("response_type", "token"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    http.post(format!(
        "{}{}",
        sim.base_url(),
        pp_sim_ping::CHECKSTATUS_PATH
    ))
    .header("Ocp-Apim-Subscription-Key", SUB_KEY)
    .bearer_auth(token["access_token"].as_str().unwrap())
    .json(
        &json!({"ShippingProcessId": "SHP-2731", "InteropID": "INT-1436",
                      "PartnerId": "PNR-1363", "SPHTransactionId": tx}),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap()
}

#[tokio::test]
async fn check_status_repairs_the_malformed_data_string_and_reads_clean_json() {
    let sim = start(0, 0).await;
    let c = client(&sim);
    for (legacy, case) in [(true, "case-legacy"), (false, "case-clean")] {
        sim.set_options(&json!({"checkstatus_legacy_malformed": legacy}))
            .unwrap();
        let tx = c
            .ingest_async(
                shp::CREATE_REFERRAL,
                &[
                    referral_record(case, "Nyakuoth", "125080000"),
                    referral_record("case-bad", "Gatluak", "Unknown"),
                ],
            )
            .await
            .unwrap();
        let results = wait_processed(&c, &tx).await;

        let raw = raw_check_status(&sim, &tx).await;
        if legacy {
            let s = raw["Data"].as_str().expect("legacy Data is a string");
            assert!(
                serde_json::from_str::<Value>(s).is_err(),
                "the legacy string is not JSON"
            );
        } else {
            assert!(raw["Data"].is_array());
        }

        // All-or-nothing: the valid record is reported as not applied, the other as invalid.
        assert_eq!(results.len(), 2);
        let bad = results
            .iter()
            .find(|r| r.external_id == "case-bad")
            .unwrap();
        assert!(!bad.success);
        let m = bad.message.as_deref().unwrap();
        assert!(
            m.contains("progres_pocsex") && !m.contains("Unknown"),
            "{m}"
        );
        let good = results.iter().find(|r| r.external_id == case).unwrap();
        assert!(!good.success);

        // Sent alone, the valid record is created and its referral id comes back.
        let tx = c
            .ingest_async(
                shp::CREATE_REFERRAL,
                &[referral_record(case, "Nyakuoth", "125080000")],
            )
            .await
            .unwrap();
        let results = wait_processed(&c, &tx).await;
        assert_eq!(results.len(), 1);
        let r = &results[0];
        assert!(r.success, "{r:?}");
        assert_eq!(r.external_id, case);
        assert_eq!(
            r.data.get("progres_offlineid").map(String::as_str),
            Some(case)
        );
        let referral_id = r.data.get("progres_interoperabilityreferralid").unwrap();
        assert!(pp_ping::mask::is_guid(referral_id));
        assert!(!format!("{results:?}").contains("Nyakuoth"));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn check_status_pending_and_unknown() {
    let sim = start(0, 0).await;
    sim.set_options(&json!({"async_delay_ms": 3000})).unwrap();
    let c = client(&sim);
    let tx = c
        .ingest_async(
            shp::CREATE_REFERRAL,
            &[referral_record("case-p", "Achol", "125080000")],
        )
        .await
        .unwrap();
    assert_eq!(
        c.check_status(shp::CREATE_REFERRAL, &tx).await.unwrap(),
        CheckStatus::Pending
    );
    assert_eq!(
        c.check_status(shp::CREATE_REFERRAL, "0b0b0b0b-1111-4222-8333-444444444444")
            .await
            .unwrap(),
        CheckStatus::Unknown
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_429_is_retried_after_the_servers_delay() {
    let sim = start(2, 0).await;
    let c = client(&sim);
    c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap(); // token fetched beforehand
    faults(
        &sim,
        json!({"rules": [{"endpoint": "retrieve", "kind": "status", "status": 429,
                          "retry_after_secs": 1, "times": 1}]}),
    )
    .await;
    let started = Instant::now();
    let r = c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(r.rows.len(), 2);
    assert!(
        waited >= Duration::from_millis(950),
        "waited only {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    let statuses: Vec<_> = requests(&sim, "retrieve")
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(statuses, [Some(200), Some(429), Some(200)]);
    sim.shutdown().await;
}

#[tokio::test]
async fn server_errors_then_success() {
    let sim = start(2, 0).await;
    let c = client(&sim);
    faults(
        &sim,
        json!({"rules": [{"endpoint": "retrieve", "kind": "status", "status": 503, "times": 2}]}),
    )
    .await;
    let r = c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap();
    assert_eq!(r.rows.len(), 2);
    let statuses: Vec<_> = requests(&sim, "retrieve")
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(statuses, [Some(503), Some(503), Some(200)]);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_dropped_connection_then_success() {
    let sim = start(1, 0).await;
    let c = client(&sim);
    let id = lp_ids(&sim).remove(0);
    faults(
        &sim,
        json!({"rules": [{"endpoint": "data", "kind": "drop", "times": 1}]}),
    )
    .await;
    let out = c
        .ingest(shp::TRANSFER_STATUS, &[transfer_record(&id, &id)])
        .await
        .unwrap();
    assert!(out.failed.is_empty());
    let statuses: Vec<_> = requests(&sim, "data")
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(statuses, [None, Some(200)]);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_timeout_then_success() {
    let sim = start(1, 0).await;
    let mut s = settings(&sim);
    s.http.request_timeout = Duration::from_millis(400);
    let c = PingClient::new(s).unwrap();
    faults(
        &sim,
        json!({"rules": [{"endpoint": "checkstatus", "kind": "latency", "ms": 4000, "times": 1}]}),
    )
    .await;
    let started = Instant::now();
    let st = c
        .check_status(shp::CREATE_REFERRAL, "0b0b0b0b-1111-4222-8333-444444444444")
        .await
        .unwrap();
    assert_eq!(st, CheckStatus::Unknown);
    let took = started.elapsed();
    // The first attempt was cut at the 400 ms timeout (not served after 4 s); the retry
    // was answered. The sim logs a request only once it has answered, so the abandoned
    // attempt is not in its log.
    assert!(took >= Duration::from_millis(400), "took {took:?}");
    assert!(took < Duration::from_millis(3000), "took {took:?}");
    assert_eq!(requests(&sim, "checkstatus").await.len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_retried() {
    let sim = start(2, 0).await;
    let c = client(&sim);
    faults(
        &sim,
        json!({"rules": [{"endpoint": "retrieve", "kind": "malformed_json", "times": 1}]}),
    )
    .await;
    let r = c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap();
    assert_eq!(r.rows.len(), 2);
    assert_eq!(requests(&sim, "retrieve").await.len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn retries_stop_at_the_bound_with_a_transient_error() {
    let sim = start(1, 0).await;
    let mut s = settings(&sim);
    s.http.retry.max_attempts = 3;
    let c = PingClient::new(s).unwrap();
    faults(
        &sim,
        json!({"rules": [{"endpoint": "retrieve", "kind": "status", "status": 503}]}),
    )
    .await;
    let e = c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap_err();
    assert!(
        matches!(
            e,
            PingError::Transient {
                status: Some(503),
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.class(), ErrorClass::Transient);
    assert_eq!(requests(&sim, "retrieve").await.len(), 3);

    // A token endpoint that keeps failing is bounded the same way.
    faults(
        &sim,
        json!({"rules": [{"endpoint": "token", "kind": "status", "status": 502}]}),
    )
    .await;
    let fresh = client(&sim);
    let e = fresh
        .retrieve(shp::PENDING_REFERRALS, &[])
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            PingError::Transient {
                status: Some(502),
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(requests(&sim, "token").await.len(), 1 + 4);
    sim.shutdown().await;
}

#[test]
fn debug_of_settings_and_records_shows_no_secret_or_value() {
    let s = PingSettings::new(
        "http://127.0.0.1:1".parse().unwrap(),
        "http://127.0.0.1:1/t/oauth2/v2.0/token".parse().unwrap(),
        "ping-primero-sim",
        USERNAME,
        SecretString::from(PASSWORD),
        SecretString::from(SUB_KEY),
        "PNR-1363",
        "INT-1436",
    );
    let c = PingClient::new(s.clone()).unwrap();
    let r = referral_record("case-9", "Nyakuoth", "125080000").attachment("Lives near the market");
    let text = format!("{s:?} {c:?} {r:?}");
    for leak in [PASSWORD, SUB_KEY, USERNAME, "Nyakuoth", "market"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    assert!(text.contains("case-9") && text.contains("progres_pocfirstname"));
}

// Asynchronous ingestion is sent again only when the failed attempt certainly did not reach
// PING's processing: whether PING drops a repeated batch is unknown (ping-api.md), and a
// second POST could create a second referral in proGres.

/// `/_sim/requests` entries of `/asyncdata`: (status, SPHTransactionId).
fn asyncdata_log(sim: &SimHandle) -> Vec<(Option<u16>, Option<String>)> {
    sim.requests()
        .into_iter()
        .filter(|e| e.endpoint == "asyncdata")
        .map(|e| (e.status, e.sph_transaction_id))
        .collect()
}

fn one_referral() -> Vec<IngestRecord> {
    vec![referral_record("case-once", "Nyabuay", "125080000")]
}

#[tokio::test]
async fn a_5xx_answer_to_asyncdata_is_returned_after_one_request() {
    for status in [502, 500] {
        let sim = start(0, 0).await;
        let c = client(&sim);
        faults(
            &sim,
            json!({"rules": [{"endpoint": "asyncdata", "kind": "status", "status": status}]}),
        )
        .await;
        let e = c
            .ingest_async(shp::CREATE_REFERRAL, &one_referral())
            .await
            .unwrap_err();
        assert!(
            matches!(e, PingError::Transient { status: Some(s), .. } if s == status),
            "{e:?}"
        );
        assert_eq!(e.class(), ErrorClass::Transient);
        assert_eq!(asyncdata_log(&sim), [(Some(status), None)], "one POST only");
        sim.shutdown().await;
    }
}

/// A TCP relay in front of `upstream` that counts the requests whose request line starts with
/// `request_line` (the sim logs a request only once it has answered it, and a request whose
/// client gave up is never answered). Returns the relay's base URL and the count.
async fn counting_relay(
    upstream: std::net::SocketAddr,
    request_line: &'static [u8],
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut from_client, mut to_client) = inbound.into_split();
                let (mut from_sim, mut to_sim) = outbound.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_sim, &mut to_client).await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                // Bytes not yet searched, plus the end of the last read (a request line may
                // span two reads).
                let mut window: Vec<u8> = Vec::new();
                loop {
                    let n = match from_client.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    window.extend_from_slice(&buf[..n]);
                    let found = window
                        .windows(request_line.len())
                        .filter(|w| *w == request_line)
                        .count();
                    seen.fetch_add(found, Ordering::SeqCst);
                    let keep = window.len().min(request_line.len() - 1);
                    window.drain(..window.len() - keep);
                    if to_sim.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = to_sim.shutdown().await;
            });
        }
    });
    (format!("http://{addr}"), count)
}

#[tokio::test]
async fn an_asyncdata_timeout_is_returned_after_one_request() {
    let sim = start(0, 0).await;
    let upstream = sim
        .base_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let (relay, posts) =
        counting_relay(upstream, b"POST /api/ingestion/v2/PNR-1363/asyncdata ").await;
    let mut s = settings(&sim);
    s.base_url = relay.parse().unwrap();
    s.http.request_timeout = Duration::from_millis(300);
    let c = PingClient::new(s).unwrap();
    c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap(); // through the relay, token cached
    faults(
        &sim,
        json!({"rules": [{"endpoint": "asyncdata", "kind": "latency", "ms": 2000}]}),
    )
    .await;
    let started = Instant::now();
    let e = c
        .ingest_async(shp::CREATE_REFERRAL, &one_referral())
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(e, PingError::Transient { status: None, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("timeout"), "{e}");
    assert_eq!(
        posts.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one POST only"
    );
    // One 300 ms attempt, no backoff and no second attempt (the POST count above proves
    // there was no second request; the bound is loose for a loaded machine, yet well under
    // the 2 s the simulator would take to answer).
    assert!(took < Duration::from_secs(2), "took {took:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_connection_lost_after_an_asyncdata_request_is_not_resent() {
    let sim = start(0, 0).await;
    let c = client(&sim);
    faults(
        &sim,
        json!({"rules": [{"endpoint": "asyncdata", "kind": "drop"}]}),
    )
    .await;
    let e = c
        .ingest_async(shp::CREATE_REFERRAL, &one_referral())
        .await
        .unwrap_err();
    assert!(
        matches!(e, PingError::Transient { status: None, .. }),
        "{e:?}"
    );
    assert_eq!(asyncdata_log(&sim), [(None, None)], "one POST only");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_429_on_asyncdata_is_retried_and_one_batch_is_accepted() {
    let sim = start(0, 0).await;
    let c = client(&sim);
    faults(
        &sim,
        json!({"rules": [{"endpoint": "asyncdata", "kind": "status", "status": 429,
                          "retry_after_secs": 1, "times": 1}]}),
    )
    .await;
    let started = Instant::now();
    let tx = c
        .ingest_async(shp::CREATE_REFERRAL, &one_referral())
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After honoured"
    );
    assert_eq!(
        asyncdata_log(&sim),
        [(Some(429), None), (Some(200), Some(tx.clone()))],
        "throttled, then accepted once"
    );
    let results = wait_processed(&c, &tx).await;
    assert_eq!(results.len(), 1);
    assert!(results[0].success, "{:?}", results[0]);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_expired_token_on_asyncdata_is_replaced_and_the_batch_sent_once_more() {
    let sim = start(0, 0).await;
    let c = client(&sim);
    c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap();
    faults(&sim, json!({"rules": [], "expire_tokens": true})).await;
    let tx = c
        .ingest_async(shp::CREATE_REFERRAL, &one_referral())
        .await
        .unwrap();
    assert_eq!(
        asyncdata_log(&sim),
        [(Some(401), None), (Some(200), Some(tx))],
        "refused before processing, then accepted once"
    );
    assert_eq!(requests(&sim, "token").await.len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_asyncdata_call_whose_connection_is_refused_is_retried() {
    let first = start(0, 0).await;
    let port: u16 = first
        .base_url()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut s = settings(&first);
    // Retry until the restarted simulator listens, however long that takes on a loaded
    // machine: the attempts are bounded by time (20 s), not by their number.
    s.http.retry = RetryPolicy {
        max_attempts: 1000,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(100),
        max_elapsed: Duration::from_secs(20),
    };
    let c = PingClient::new(s).unwrap();
    // The token is cached; then nothing listens on the port any more, so every attempt is
    // refused at connection time, before a byte of the batch is sent.
    c.retrieve(shp::PENDING_REFERRALS, &[]).await.unwrap();
    first.shutdown().await;
    let call = {
        let c = c.clone();
        tokio::spawn(async move { c.ingest_async(shp::CREATE_REFERRAL, &one_referral()).await })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!call.is_finished(), "still retrying");
    // A simulator on the same port, which does not know the cached token: 401, a fresh
    // token, and the batch accepted once.
    let sim = pp_sim_ping::spawn(Options::default(), port).await.unwrap();
    let tx = call.await.unwrap().expect("sent once the sim listens");
    assert_eq!(
        asyncdata_log(&sim),
        [(Some(401), None), (Some(200), Some(tx))]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_5xx_answer_to_data_is_still_retried() {
    let sim = start(1, 0).await;
    let c = client(&sim);
    let id = lp_ids(&sim).remove(0);
    faults(
        &sim,
        json!({"rules": [{"endpoint": "data", "kind": "status", "status": 502, "times": 1}]}),
    )
    .await;
    let out = c
        .ingest(shp::TRANSFER_STATUS, &[transfer_record(&id, &id)])
        .await
        .unwrap();
    assert!(out.failed.is_empty() && out.transaction_id.is_some());
    let statuses: Vec<_> = requests(&sim, "data")
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(statuses, [Some(502), Some(200)]);
    sim.shutdown().await;
}

// An ingestion answer without `SPHTransactionId` (the reference job only warns: ping-api.md
// §2.3). `/asyncdata` may have accepted the batch, so the call is transient and not sent
// again; `/data` applied the records, so the call is a success without a transaction id.

#[tokio::test]
async fn an_asyncdata_answer_without_a_transaction_id_is_transient_after_one_request() {
    let sim = start(0, 0).await;
    sim.set_options(&json!({"omit_transaction_id": true}))
        .unwrap();
    let c = client(&sim);
    let e = c
        .ingest_async(shp::CREATE_REFERRAL, &one_referral())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            PingError::Transient {
                status: Some(200),
                retry_after: None,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.class(), ErrorClass::Transient);
    let text = e.to_string();
    assert!(
        text.contains("SPHTransactionId") && text.contains("may have been accepted"),
        "{text}"
    );
    assert!(!format!("{text} {e:?}").contains("Nyabuay"), "{text}");
    // One POST, which PING accepted: the log names the transaction the client never saw.
    let log = asyncdata_log(&sim);
    assert_eq!(log.len(), 1, "one POST only: {log:?}");
    assert_eq!(log[0].0, Some(200));
    let tx = log[0].1.clone().expect("the sim logs the transaction id");
    let results = wait_processed(&c, &tx).await;
    assert_eq!(results.len(), 1);
    assert!(results[0].success, "{:?}", results[0]);
    let created: Vec<Value> = sim.state_json()["interop_referrals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["progres_orgreferralid"] == "svc-case-once")
        .cloned()
        .collect();
    assert_eq!(created.len(), 1, "the batch was applied once: {created:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_data_answer_without_a_transaction_id_is_a_success_without_one() {
    let sim = start(3, 0).await;
    sim.set_options(&json!({"omit_transaction_id": true}))
        .unwrap();
    let c = client(&sim);
    let ids = lp_ids(&sim);
    let out = c
        .ingest(
            shp::TRANSFER_STATUS,
            &[
                transfer_record(&ids[0], &ids[0]),
                transfer_record(&ids[1], &ids[1]),
            ],
        )
        .await
        .expect("applied records are a success");
    assert_eq!(out.transaction_id, None);
    assert!(out.failed.is_empty(), "{:?}", out.failed);
    for id in [&ids[0], &ids[1]] {
        assert_eq!(
            intervention_state(&sim, id)["progres_primerotransferstatus"],
            json!(125080002)
        );
    }
    assert!(intervention_state(&sim, &ids[2])["progres_primerotransferstatus"].is_null());
    // A partially applied batch keeps its refusals, still without a transaction id.
    sim.set_options(&json!({"batch_mode": "partial"})).unwrap();
    let out = c
        .ingest(
            shp::TRANSFER_STATUS,
            &[
                transfer_record(&ids[2], &ids[2]),
                transfer_record("bad", "0b0b0b0b-1111-4222-8333-444444444444"),
            ],
        )
        .await
        .expect("a partly applied batch is a success");
    assert_eq!(out.transaction_id, None);
    assert_eq!(out.failed.len(), 1);
    assert_eq!(out.failed[0].external_id, "bad");
    assert_eq!(
        intervention_state(&sim, &ids[2])["progres_primerotransferstatus"],
        json!(125080002)
    );
    let statuses: Vec<_> = requests(&sim, "data")
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(statuses, [Some(200), Some(200)], "one POST per call");
    sim.shutdown().await;
}
