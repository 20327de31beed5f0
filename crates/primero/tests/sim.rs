//! Integration tests of the Primero client against the Primero simulator over real HTTP:
//! paging, filters, case create/PATCH, referrals and their verified transitions, users,
//! Basic and legacy JWT auth, retries of transient faults, error classification, redaction.

use std::time::{Duration, Instant};

use pp_http::{ErrorClass, HttpSettings, RetryPolicy};
use pp_primero::{
    AuthMode, Case, CaseQuery, PrimeroClient, PrimeroError, PrimeroSettings, ReferralStatus,
};
use pp_sim_primero::scenario::{generate, ScenarioOptions};
use pp_sim_primero::{Options, SimHandle, DEFAULT_PASSWORD};
use secrecy::SecretString;
use serde_json::{json, Map, Value};

const API_USER: &str = "openfn_integration";

async fn sim() -> SimHandle {
    pp_sim_primero::spawn(Options::default(), 0)
        .await
        .expect("simulator starts")
}

fn http(max_attempts: u32, request_timeout: Duration) -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout,
        max_concurrency: 4,
        retry: RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_secs(3),
            max_elapsed: Duration::from_secs(30),
        },
    }
}

fn settings(sim: &SimHandle, user: &str, password: &str, auth: AuthMode) -> PrimeroSettings {
    PrimeroSettings {
        base_url: url::Url::parse(&sim.base_url()).unwrap(),
        username: user.into(),
        password: SecretString::from(password.to_string()),
        auth,
        http: http(4, Duration::from_secs(10)),
    }
}

fn client(sim: &SimHandle) -> PrimeroClient {
    PrimeroClient::new(settings(sim, API_USER, DEFAULT_PASSWORD, AuthMode::Basic)).unwrap()
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().expect("object").clone()
}

async fn control(
    sim: &SimHandle,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let url = format!("{}{}", sim.base_url(), path);
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("control call");
    assert!(
        resp.status().is_success(),
        "control {path}: {}",
        resp.status()
    );
    resp.json().await.expect("control JSON")
}

async fn faults(sim: &SimHandle, rules: Value) {
    control(
        sim,
        reqwest::Method::POST,
        "/_sim/faults",
        Some(json!({ "rules": rules })),
    )
    .await;
}

async fn set_options(sim: &SimHandle, opts: Value) {
    control(sim, reqwest::Method::POST, "/_sim/options", Some(opts)).await;
}

/// The simulator's request log for one endpoint: (status, decoded query).
async fn requests(sim: &SimHandle, endpoint: &str) -> Vec<(u16, String)> {
    let v = control(
        sim,
        reqwest::Method::GET,
        &format!("/_sim/requests?endpoint={endpoint}"),
        None,
    )
    .await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let q = e["query"].as_str().unwrap_or("");
            let decoded: Vec<String> = url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            (e["status"].as_u64().unwrap() as u16, decoded.join("&"))
        })
        .collect()
}

fn scenario(count: usize, with_referrals: bool) -> Value {
    generate(&ScenarioOptions {
        count,
        seed: 7,
        with_referrals,
        ..ScenarioOptions::default()
    })
}

fn seed_case(id: &str, extra: Value) -> Value {
    let mut m = obj(json!({
        "id": id,
        "module_id": "primeromodule-cp",
        "owned_by": "cw_amina",
        "name_first": "Nyakim",
        "name_last": "Gatluak",
        "sex": "female",
    }));
    for (k, v) in obj(extra) {
        m.insert(k, v);
    }
    Value::Object(m)
}

const U1: &str = "6b1d3f52-8c1a-4e0e-9a55-2f0f8f3b0001";
const U2: &str = "6b1d3f52-8c1a-4e0e-9a55-2f0f8f3b0002";
const U3: &str = "6b1d3f52-8c1a-4e0e-9a55-2f0f8f3b0003";
const ROW1: &str = "9f0e1d2c-3b4a-4958-8776-a5b4c3d2e101";

// ---- cases -------------------------------------------------------------------------------

#[tokio::test]
async fn every_page_of_a_large_listing_is_read_once() {
    let sim = sim().await;
    sim.seed(scenario(2500, false)).await.unwrap();
    let c = client(&sim);

    let cases = c.list_cases(&CaseQuery::default()).await.unwrap();
    assert_eq!(cases.len(), 2500);
    let ids: std::collections::HashSet<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), 2500, "every id exactly once");

    let log = requests(&sim, "cases_list").await;
    assert_eq!(log.len(), 3, "2,500 cases at 1000 per page: 3 pages");
    for (i, (status, q)) in log.iter().enumerate() {
        assert_eq!(*status, 200);
        assert!(q.contains("per=1000"), "{q}");
        assert!(q.contains(&format!("page={}", i + 1)), "{q}");
    }

    // The page-at-a-time variant hands over pages of at most 1000.
    let mut sizes = Vec::new();
    let stats = c
        .for_each_case_page(&CaseQuery::default(), |page| {
            sizes.push(page.len());
            async { Ok::<(), PrimeroError>(()) }
        })
        .await
        .unwrap();
    assert_eq!(sizes, vec![1000, 1000, 500]);
    assert_eq!(stats.pages, 3);
    assert_eq!(stats.cases, 2500);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_server_clamping_to_a_smaller_page_is_still_read_to_the_end() {
    let sim = sim().await;
    set_options(&sim, json!({"per_clamp": 400})).await;
    sim.seed(scenario(1000, false)).await.unwrap();
    let c = client(&sim);
    let cases = c.list_cases(&CaseQuery::default()).await.unwrap();
    let ids: std::collections::HashSet<&str> = cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!((cases.len(), ids.len()), (1000, 1000));
    assert_eq!(requests(&sim, "cases_list").await.len(), 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn cases_shifted_between_pages_are_not_returned_twice() {
    let sim = sim().await;
    sim.seed(scenario(1500, false)).await.unwrap();
    let c = client(&sim);
    // A case created while the listing runs shifts the newest-first list by one: the last case
    // of page 1 shows up again on page 2. The client must hand it over only once.
    let creator = c.clone();
    let mut pages = 0;
    let mut seen = Vec::new();
    c.for_each_case_page(&CaseQuery::default(), |page| {
        pages += 1;
        seen.extend(page.into_iter().map(|c| c.id));
        let creator = creator.clone();
        let first = pages == 1;
        async move {
            if first {
                creator
                    .create_case(obj(json!({"module_id": "primeromodule-cp", "sex": "male"})))
                    .await?;
            }
            Ok::<(), PrimeroError>(())
        }
    })
    .await
    .unwrap();
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no id handed over twice");
    assert_eq!(
        seen.len(),
        1500,
        "every case present at the start is listed"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn last_updated_filter_is_inclusive_at_second_precision() {
    let sim = sim().await;
    sim.seed(json!({"cases": [
        seed_case(U1, json!({"created_at": "2024-03-01T08:00:00.000Z", "last_updated_at": "2024-03-01T10:00:00.500Z"})),
        seed_case(U2, json!({"created_at": "2024-03-01T08:00:00.000Z", "last_updated_at": "2024-03-01T09:59:59.999Z"})),
        seed_case(U3, json!({"created_at": "2024-03-01T08:00:00.000Z", "last_updated_at": "2024-03-02T00:00:00.000Z"})),
    ]}))
    .await
    .unwrap();
    let c = client(&sim);
    // The cursor has sub-seconds; it is sent as 10:00:00Z.. and the case at 10:00:00.500 is in.
    let from = chrono::DateTime::parse_from_rfc3339("2024-03-01T10:00:00.700Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut ids: Vec<String> = c
        .list_cases(&CaseQuery::updated_since(from))
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.sort();
    assert_eq!(ids, vec![U1.to_string(), U3.to_string()]);
    let log = requests(&sim, "cases_list").await;
    assert!(
        log[0].1.contains("last_updated_at=2024-03-01T10:00:00Z.."),
        "{}",
        log[0].1
    );
    let cases = c.list_cases(&CaseQuery::updated_since(from)).await.unwrap();
    let u1 = cases.iter().find(|c| c.id == U1).unwrap();
    assert_eq!(
        u1.last_updated_at.unwrap().to_rfc3339(),
        "2024-03-01T10:00:00.500+00:00"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn exact_identifier_filter_matches_one_case_and_ignored_filters_do_not_widen() {
    let sim = sim().await;
    sim.seed(json!({"cases": [
        seed_case(U1, json!({"unhcr_individual_no": "911-00012"})),
        seed_case(U2, json!({"unhcr_individual_no": "0911-00012"})),
        seed_case(U3, json!({"unhcr_individual_no": "911-000120"})),
    ]}))
    .await
    .unwrap();
    let c = client(&sim);
    let hits = c
        .list_cases(&CaseQuery::exact("unhcr_individual_no", "911-00012"))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].id, U1);
    assert_eq!(hits[0].str_field("unhcr_individual_no"), Some("911-00012"));

    let hits = c
        .list_cases(&CaseQuery::exact("unhcr_individual_no", "0911-00012"))
        .await
        .unwrap();
    assert_eq!(
        hits.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        vec![U2]
    );

    // A filter the server does not know is dropped by Primero (it returns every case); the
    // client still returns only records that carry the value.
    let hits = c
        .list_cases(&CaseQuery::exact("unhcr_individual_number", "911-00012"))
        .await
        .unwrap();
    assert!(hits.is_empty());

    // A blank value would be dropped too and list every case: refused before sending.
    let before = requests(&sim, "cases_list").await.len();
    let e = c
        .list_cases(&CaseQuery::exact("unhcr_individual_no", ""))
        .await
        .unwrap_err();
    assert!(matches!(e, PrimeroError::InvalidRequest { .. }));
    assert_eq!(requests(&sim, "cases_list").await.len(), before);
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_case_is_none() {
    let sim = sim().await;
    sim.seed(json!({"cases": [seed_case(U1, json!({}))]}))
        .await
        .unwrap();
    let c = client(&sim);
    assert!(c.get_case(U2).await.unwrap().is_none());
    assert!(c.get_case("not-a-uuid").await.unwrap().is_none());
    let found = c.get_case(U1).await.unwrap().unwrap();
    assert_eq!(found.id, U1);
    assert_eq!(found.owned_by.as_deref(), Some("cw_amina"));
    // 404 is final: one request each.
    assert_eq!(requests(&sim, "case_get").await.len(), 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn create_requires_module_id_and_sends_nothing_without_it() {
    let sim = sim().await;
    let c = client(&sim);
    let e = c
        .create_case(obj(json!({"name_first": "Nyakim", "sex": "female"})))
        .await
        .unwrap_err();
    assert!(matches!(e, PrimeroError::InvalidRequest { .. }), "{e}");
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(requests(&sim, "case_create").await.is_empty());
    assert!(sim.state_json()["cases"].as_array().unwrap().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn create_returns_the_server_ids() {
    let sim = sim().await;
    let c = client(&sim);
    let case = c
        .create_case(obj(json!({
            "module_id": "primeromodule-cp",
            "name_first": "Nyakim",
            "name_last": "Gatluak",
            "sex": "female",
            "date_of_birth": "2012-04-01",
            "unhcr_individual_no": "911-00077",
            "services_section": [{"service_type": "legal_support", "service_referral": "external_referral",
                                   "progres_interventionnumber": "612-21-PRTITV-0000038,lp-guid,bu-guid"}]
        })))
        .await
        .unwrap();
    assert_eq!(case.id.len(), 36);
    let case_id = case.case_id.clone().expect("case_id generated");
    assert_eq!(case.str_field("short_id").unwrap().len(), 7);
    assert_eq!(case.owned_by.as_deref(), Some(API_USER));
    assert!(case.last_updated_at.is_some());
    assert_eq!(case.str_field("unhcr_individual_no"), Some("911-00077"));
    let rows = case.services();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].unique_id.is_some());
    assert_eq!(
        rows[0].progres_interventionnumber(),
        Some("612-21-PRTITV-0000038,lp-guid,bu-guid")
    );
    // The case is found by the generated ids.
    let found = c
        .list_cases(&CaseQuery::exact("case_id", case_id.clone()))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, case.id);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_create_retried_after_a_lost_answer_makes_one_case() {
    let sim = sim().await;
    let c = client(&sim);
    // The server stores the case but the answer is broken: the client retries with the same id,
    // meets 409 and reads the case back.
    faults(
        &sim,
        json!([{"endpoint": "case_create", "kind": "malformed_json", "times": 1}]),
    )
    .await;
    let case = c
        .create_case(obj(json!({"module_id": "primeromodule-cp", "sex": "male"})))
        .await
        .unwrap();
    assert!(case.case_id.is_some());
    let cases = sim.state_json()["cases"].as_array().unwrap().clone();
    assert_eq!(cases.len(), 1, "exactly one case stored");
    assert_eq!(cases[0]["id"], case.id.as_str());
    let log: Vec<u16> = requests(&sim, "case_create")
        .await
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(log, vec![200, 409]);
    sim.shutdown().await;
}

#[tokio::test]
async fn patch_appends_a_service_row_and_keeps_existing_rows() {
    let sim = sim().await;
    sim.seed(json!({"cases": [seed_case(U1, json!({
        "services_section": [{"unique_id": ROW1, "service_type": "food", "service_implementing_agency": "UNHCR"}]
    }))]}))
    .await
    .unwrap();
    let c = client(&sim);
    let changed = c
        .patch_case(
            U1,
            obj(json!({"services_section": [{"service_type": "legal_support", "unhcr_referral_status": "pending"}]})),
        )
        .await
        .unwrap();
    assert_eq!(changed.id, U1);
    let rows = changed.services();
    assert_eq!(rows.len(), 2, "the changed subform comes back whole");
    assert_eq!(rows[0].unique_id.as_deref(), Some(ROW1));
    assert_eq!(rows[0].service_type(), Some("food"));
    assert_eq!(rows[1].service_type(), Some("legal_support"));
    assert_eq!(rows[1].unhcr_referral_status(), Some("pending"));
    // Unsent fields are kept.
    let stored = c.get_case(U1).await.unwrap().unwrap();
    assert_eq!(stored.str_field("name_first"), Some("Nyakim"));
    assert_eq!(stored.services().len(), 2);
    assert_eq!(stored.last_updated_by.as_deref(), Some(API_USER));

    // A retried PATCH (answer lost) merges into the same new row instead of adding a twin.
    faults(
        &sim,
        json!([{"endpoint": "case_patch", "kind": "malformed_json", "times": 1}]),
    )
    .await;
    c.patch_case(
        U1,
        obj(json!({"services_section": [{"service_type": "medical"}]})),
    )
    .await
    .unwrap();
    let stored = c.get_case(U1).await.unwrap().unwrap();
    let types: Vec<String> = stored
        .services()
        .iter()
        .map(|r| r.service_type().unwrap().to_string())
        .collect();
    assert_eq!(types, vec!["food", "legal_support", "medical"]);
    assert_eq!(requests(&sim, "case_patch").await.len(), 3);

    let e = c
        .patch_case(U2, obj(json!({"status": "open"})))
        .await
        .unwrap_err();
    assert!(matches!(e, PrimeroError::NotFound { .. }), "{e}");
    sim.shutdown().await;
}

#[tokio::test]
async fn validation_errors_are_permanent_with_pointers_and_no_values() {
    let sim = sim().await;
    let c = client(&sim);
    let e = c
        .create_case(obj(
            json!({"module_id": "primeromodule-cp", "sex": "robot-sex-value", "age": "18"}),
        ))
        .await
        .unwrap_err();
    match &e {
        PrimeroError::Permanent {
            status, details, ..
        } => {
            assert_eq!(*status, 422);
            assert!(details.contains(&"/sex".to_string()), "{details:?}");
            assert!(details.contains(&"/age".to_string()), "{details:?}");
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert_eq!(e.class(), ErrorClass::Permanent);
    assert!(!e.to_string().contains("robot-sex-value"));
    assert_eq!(requests(&sim, "case_create").await.len(), 1, "not retried");
    sim.shutdown().await;
}

// ---- referrals ---------------------------------------------------------------------------

async fn seeded_referral(sim: &SimHandle) -> (String, String, String) {
    sim.seed(scenario(3, true)).await.unwrap();
    let state = sim.state_json();
    let r = &state["referrals"][0];
    (
        r["record_id"].as_str().unwrap().to_string(),
        r["id"].as_str().unwrap().to_string(),
        r["service_record_id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn referrals_of_a_case_are_listed_and_linked_to_service_rows() {
    let sim = sim().await;
    let (case_id, referral_id, row_id) = seeded_referral(&sim).await;
    let c = client(&sim);
    let refs = c.list_referrals(&case_id).await.unwrap();
    let r = refs.iter().find(|r| r.id == referral_id).unwrap();
    assert_eq!(r.status, "in_progress");
    assert_eq!(r.record_id.as_deref(), Some(case_id.as_str()));
    assert_eq!(r.service_record_id.as_deref(), Some(row_id.as_str()));
    assert_eq!(r.transitioned_to.as_deref(), Some("unhcr_cw"));
    assert!(r.created_at.is_some());
    let case = c.get_case(&case_id).await.unwrap().unwrap();
    for r in &refs {
        let row = case
            .service(r.service_record_id.as_deref().unwrap())
            .unwrap();
        assert!(row
            .service_implementing_agency()
            .unwrap()
            .eq_ignore_ascii_case("unhcr"));
    }
    let e = c.list_referrals(U3).await.unwrap_err();
    assert!(matches!(e, PrimeroError::NotFound { .. }));
    sim.shutdown().await;
}

#[tokio::test]
async fn an_accepted_transition_is_applied_once() {
    let sim = sim().await;
    let (case_id, referral_id, _) = seeded_referral(&sim).await;
    let c = client(&sim);
    let out = c
        .set_referral_status(&case_id, &referral_id, ReferralStatus::Accepted, None)
        .await
        .unwrap();
    assert!(out.applied);
    assert!(!out.already_in_state);
    assert_eq!(out.returned_status, "accepted");
    assert_eq!(out.referral.status_enum(), Some(ReferralStatus::Accepted));

    // Asking again: already there, reported as applied, and no second PATCH.
    let again = c
        .set_referral_status(&case_id, &referral_id, ReferralStatus::Accepted, None)
        .await
        .unwrap();
    assert!(again.applied && again.already_in_state);
    assert_eq!(requests(&sim, "referral_patch").await.len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_refused_transition_is_reported_as_not_applied() {
    let sim = sim().await;
    let (case_id, referral_id, _) = seeded_referral(&sim).await;
    let c = client(&sim);
    let out = c
        .set_referral_status(
            &case_id,
            &referral_id,
            ReferralStatus::Rejected,
            Some("Rejected in proGres (no reason provided) — No comment provided"),
        )
        .await
        .unwrap();
    assert!(out.applied);
    assert_eq!(
        out.referral.rejected_reason.as_deref(),
        Some("Rejected in proGres (no reason provided) — No comment provided")
    );
    // Primero answers 200 with the referral unchanged: not applied.
    let refused = c
        .set_referral_status(&case_id, &referral_id, ReferralStatus::Accepted, None)
        .await
        .unwrap();
    assert!(!refused.applied);
    assert!(!refused.already_in_state);
    assert_eq!(refused.returned_status, "rejected");

    let e = c
        .set_referral_status(&case_id, U3, ReferralStatus::Accepted, None)
        .await
        .unwrap_err();
    assert!(matches!(e, PrimeroError::NotFound { .. }), "{e}");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_referral_just_read_is_patched_without_a_second_read_and_verified() {
    let sim = sim().await;
    let (case_id, referral_id, _) = seeded_referral(&sim).await;
    let c = client(&sim);
    let out = c
        .patch_referral_status(
            &case_id,
            &referral_id,
            ReferralStatus::Rejected,
            Some("Individual Not Found — No match in proGres"),
        )
        .await
        .unwrap();
    assert!(out.applied);
    assert!(!out.already_in_state);
    assert_eq!(out.returned_status, "rejected");
    assert_eq!(out.referral.id, referral_id);
    assert_eq!(
        out.referral.rejected_reason.as_deref(),
        Some("Individual Not Found — No match in proGres")
    );
    // Only the PATCH went out: no listing of the case's referrals.
    assert_eq!(requests(&sim, "referral_patch").await.len(), 1);
    assert!(requests(&sim, "referrals_list").await.is_empty());

    // rejected → accepted is not a move Primero allows: 200 with the referral unchanged.
    let refused = c
        .patch_referral_status(&case_id, &referral_id, ReferralStatus::Accepted, None)
        .await
        .unwrap();
    assert!(!refused.applied);
    assert!(!refused.already_in_state);
    assert_eq!(refused.returned_status, "rejected");
    assert_eq!(
        sim.state_json()["referrals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == json!(referral_id))
            .unwrap()["status"],
        json!("rejected")
    );

    // An unknown referral (or case) is NotFound, and nothing else is asked.
    let e = c
        .patch_referral_status(&case_id, U3, ReferralStatus::Accepted, None)
        .await
        .unwrap_err();
    assert!(matches!(e, PrimeroError::NotFound { .. }), "{e}");
    let e = c
        .patch_referral_status(U3, &referral_id, ReferralStatus::Accepted, None)
        .await
        .unwrap_err();
    assert!(matches!(e, PrimeroError::NotFound { .. }), "{e}");
    assert_eq!(requests(&sim, "referral_patch").await.len(), 4);
    assert!(requests(&sim, "referrals_list").await.is_empty());
    let e = c
        .patch_referral_status(" ", &referral_id, ReferralStatus::Accepted, None)
        .await
        .unwrap_err();
    assert!(matches!(e, PrimeroError::InvalidRequest { .. }), "{e}");
    sim.shutdown().await;
}

#[tokio::test]
async fn set_referral_status_reads_once_then_patches_once() {
    let sim = sim().await;
    let (case_id, referral_id, _) = seeded_referral(&sim).await;
    let c = client(&sim);
    let out = c
        .set_referral_status(&case_id, &referral_id, ReferralStatus::Accepted, None)
        .await
        .unwrap();
    assert!(out.applied && !out.already_in_state);
    assert_eq!(requests(&sim, "referrals_list").await.len(), 1);
    assert_eq!(requests(&sim, "referral_patch").await.len(), 1);
    // A refused move reads, PATCHes, and reports what Primero kept.
    let refused = c
        .set_referral_status(&case_id, &referral_id, ReferralStatus::Rejected, None)
        .await
        .unwrap();
    assert!(!refused.applied);
    assert_eq!(refused.returned_status, "accepted");
    assert_eq!(requests(&sim, "referrals_list").await.len(), 2);
    assert_eq!(requests(&sim, "referral_patch").await.len(), 2);
    sim.shutdown().await;
}

// ---- users -------------------------------------------------------------------------------

#[tokio::test]
async fn users_are_read_from_every_page_and_found_by_user_name() {
    let sim = sim().await;
    let extra: Vec<Value> = (0..1200)
        .map(|i| json!({"user_name": format!("extra_user_{i:04}"), "email": format!("u{i}@example.org")}))
        .collect();
    sim.seed(json!({ "users": extra })).await.unwrap();
    let c = client(&sim);
    let users = c.list_users().await.unwrap();
    assert_eq!(users.len(), 1205);
    let log = requests(&sim, "users").await;
    assert_eq!(log.len(), 2);
    assert!(log.iter().all(|(_, q)| q.contains("per=1000")));
    let amina = users.by_user_name("cw_amina").unwrap();
    assert_eq!(amina.email.as_deref(), Some("amina.yusuf@example.org"));
    assert!(amina.phone.is_some() && amina.position.is_some());
    let inc = users.by_user_name("cw_incomplete").unwrap();
    assert!(inc.email.is_none() && inc.phone.is_none() && inc.position.is_none());
    assert!(users.by_user_name("extra_user_1199").is_some());
    assert!(users.by_user_name("nobody").is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn users_are_forbidden_to_a_caseworker() {
    let sim = sim().await;
    let c = PrimeroClient::new(settings(
        &sim,
        "cw_amina",
        DEFAULT_PASSWORD,
        AuthMode::Basic,
    ))
    .unwrap();
    let e = c.list_users().await.unwrap_err();
    assert!(
        matches!(e, PrimeroError::Permanent { status: 403, .. }),
        "{e:?}"
    );
    assert_eq!(requests(&sim, "users").await.len(), 1);
    sim.shutdown().await;
}

// ---- auth --------------------------------------------------------------------------------

#[tokio::test]
async fn refused_basic_credentials_are_an_auth_error() {
    let sim = sim().await;
    let c =
        PrimeroClient::new(settings(&sim, API_USER, "wrong-password", AuthMode::Basic)).unwrap();
    let e = c.list_cases(&CaseQuery::default()).await.unwrap_err();
    assert!(
        matches!(
            e,
            PrimeroError::Auth {
                status: Some(401),
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.class(), ErrorClass::Auth);
    assert!(!e.to_string().contains("wrong-password"));
    assert_eq!(requests(&sim, "cases_list").await.len(), 1, "no retry");
    sim.shutdown().await;
}

#[tokio::test]
async fn legacy_jwt_is_fetched_once_refreshed_before_expiry_and_after_a_401() {
    // Switched at run time through the control API, as an operator of the simulator would.
    let sim = sim().await;
    set_options(&sim, json!({"legacy_jwt": true, "jwt_ttl_secs": 2})).await;
    sim.seed(scenario(3, false)).await.unwrap();
    let c = PrimeroClient::new(settings(
        &sim,
        API_USER,
        DEFAULT_PASSWORD,
        AuthMode::LegacyToken,
    ))
    .unwrap();

    // Concurrent first calls share one login.
    let calls: Vec<_> = (0..6)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.list_cases(&CaseQuery::default()).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().len(), 3);
    }
    assert_eq!(c.login_count(), 1);
    assert_eq!(requests(&sim, "tokens").await.len(), 1);

    // The token lives 2 s: after that the client logs in again before calling (no 401).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    c.list_cases(&CaseQuery::default()).await.unwrap();
    assert_eq!(c.login_count(), 2);
    assert!(requests(&sim, "cases_list")
        .await
        .iter()
        .all(|r| r.0 == 200));

    // Tokens revoked on the server: one 401, one login, the call repeated.
    control(
        &sim,
        reqwest::Method::POST,
        "/_sim/faults",
        Some(json!({"rules": [], "expire_tokens": true})),
    )
    .await;
    assert_eq!(c.list_users().await.unwrap().len(), 5);
    assert_eq!(c.login_count(), 3);
    let statuses: Vec<u16> = requests(&sim, "users").await.iter().map(|r| r.0).collect();
    assert_eq!(statuses, vec![401, 200]);

    // A second 401 in a row ends the call with an auth error.
    faults(
        &sim,
        json!([{"endpoint": "cases_list", "kind": "status", "status": 401, "times": 2}]),
    )
    .await;
    let e = c.list_cases(&CaseQuery::default()).await.unwrap_err();
    assert!(matches!(e, PrimeroError::Auth { .. }), "{e:?}");
    assert_eq!(c.login_count(), 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn token_mode_against_a_modern_server_is_an_auth_error() {
    let sim = sim().await;
    let c = PrimeroClient::new(settings(
        &sim,
        API_USER,
        DEFAULT_PASSWORD,
        AuthMode::LegacyToken,
    ))
    .unwrap();
    let e = c.list_cases(&CaseQuery::default()).await.unwrap_err();
    assert!(matches!(e, PrimeroError::Auth { .. }), "{e:?}");
    assert!(e.to_string().contains("basic auth"));
    assert!(requests(&sim, "cases_list").await.is_empty());
    sim.shutdown().await;
}

// ---- transient faults --------------------------------------------------------------------

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let sim = sim().await;
    sim.seed(scenario(2, false)).await.unwrap();
    let c = client(&sim);
    faults(&sim, json!([{"endpoint": "cases_list", "kind": "status", "status": 429, "retry_after_secs": 1, "times": 1}])).await;
    let started = Instant::now();
    assert_eq!(c.list_cases(&CaseQuery::default()).await.unwrap().len(), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    let statuses: Vec<u16> = requests(&sim, "cases_list")
        .await
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(statuses, vec![429, 200]);
    sim.shutdown().await;
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let sim = sim().await;
    sim.seed(scenario(2, false)).await.unwrap();
    let c = client(&sim);
    faults(
        &sim,
        json!([{"endpoint": "cases_list", "kind": "status", "status": 503, "times": 2}]),
    )
    .await;
    assert_eq!(c.list_cases(&CaseQuery::default()).await.unwrap().len(), 2);
    let statuses: Vec<u16> = requests(&sim, "cases_list")
        .await
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_dropped_connection_is_retried() {
    let sim = sim().await;
    sim.seed(json!({"cases": [seed_case(U1, json!({}))]}))
        .await
        .unwrap();
    let c = client(&sim);
    faults(
        &sim,
        json!([{"endpoint": "case_get", "kind": "drop", "times": 1}]),
    )
    .await;
    assert_eq!(c.get_case(U1).await.unwrap().unwrap().id, U1);
    assert_eq!(requests(&sim, "case_get").await.len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_timeout_is_retried() {
    let sim = sim().await;
    let mut s = settings(&sim, API_USER, DEFAULT_PASSWORD, AuthMode::Basic);
    s.http = http(3, Duration::from_millis(500));
    let c = PrimeroClient::new(s).unwrap();
    faults(
        &sim,
        json!([{"endpoint": "users", "kind": "latency", "ms": 1500, "times": 1}]),
    )
    .await;
    let started = Instant::now();
    assert_eq!(c.list_users().await.unwrap().len(), 5);
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(requests(&sim, "users").await.len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_malformed_body_is_retried() {
    let sim = sim().await;
    sim.seed(scenario(2, false)).await.unwrap();
    let c = client(&sim);
    faults(
        &sim,
        json!([{"endpoint": "cases_list", "kind": "malformed_json", "times": 1}]),
    )
    .await;
    assert_eq!(c.list_cases(&CaseQuery::default()).await.unwrap().len(), 2);
    assert_eq!(requests(&sim, "cases_list").await.len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn retries_stop_at_the_configured_bound() {
    let sim = sim().await;
    let mut s = settings(&sim, API_USER, DEFAULT_PASSWORD, AuthMode::Basic);
    s.http = http(3, Duration::from_secs(5));
    let c = PrimeroClient::new(s).unwrap();
    faults(
        &sim,
        json!([{"endpoint": "cases_list", "kind": "status", "status": 503}]),
    )
    .await;
    let e = c.list_cases(&CaseQuery::default()).await.unwrap_err();
    assert!(
        matches!(
            e,
            PrimeroError::Transient {
                status: Some(503),
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.class(), ErrorClass::Transient);
    assert_eq!(requests(&sim, "cases_list").await.len(), 3);
    sim.shutdown().await;
}

// ---- redaction ---------------------------------------------------------------------------

#[tokio::test]
async fn debug_output_carries_no_personal_value_or_secret() {
    let sim = sim().await;
    sim.seed(json!({"cases": [seed_case(U1, json!({
        "telephone_current": "+251 911 555 123",
        "date_of_birth": "2013-02-03",
        "services_section": [{"unique_id": ROW1, "service_type": "food",
                              "service_referral_notes": "lives behind the water point"}]
    }))]}))
    .await
    .unwrap();
    let s = settings(&sim, API_USER, DEFAULT_PASSWORD, AuthMode::Basic);
    let settings_text = format!("{s:?}");
    assert!(!settings_text.contains(DEFAULT_PASSWORD));
    let c = PrimeroClient::new(s).unwrap();
    assert!(!format!("{c:?}").contains(DEFAULT_PASSWORD));

    let case: Case = c.get_case(U1).await.unwrap().unwrap();
    let users = c.list_users().await.unwrap();
    let amina = users.by_user_name("cw_amina").unwrap();
    let text = format!("{case:?} {:?} {amina:?} {users:?}", case.services());
    for personal in [
        "Nyakim",
        "Gatluak",
        "+251 911 555 123",
        "2013-02-03",
        "lives behind the water point",
        "Amina Yusuf",
        "amina.yusuf@example.org",
        "+251 911 000 003",
    ] {
        assert!(!text.contains(personal), "{personal} leaked: {text}");
    }
    assert!(text.contains(U1) && text.contains(ROW1) && text.contains("cw_amina"));
    assert!(text.contains("name_first"), "field names are shown");
    sim.shutdown().await;
}

#[tokio::test]
async fn create_with_a_caller_id_is_idempotent_across_runs() {
    let sim = sim().await;
    let c = client(&sim);
    let id = "6f1c2a7e-5b0d-4c1e-9a8b-0d2f3e4a5b6c";
    let data = obj(serde_json::json!({
        "id": id,
        "module_id": "primeromodule-cp",
        "unhcr_individual_no": "945-00000001"
    }));
    let first = c.create_case(data.clone()).await.expect("first create");
    // A later run repeats the create (its first answer was lost): same case, no twin.
    let second = c.create_case(data).await.expect("repeated create");
    assert_eq!(first.id, id);
    assert_eq!(second.id, id);
    let all = c
        .list_cases(&pp_primero::CaseQuery::exact(
            "unhcr_individual_no",
            "945-00000001",
        ))
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

#[tokio::test]
async fn a_create_with_caller_id_and_case_id_is_not_read_back() {
    let sim = sim().await;
    let c = client(&sim);
    let id = "7a2d3b8f-6c1e-4d2f-8b9c-1e3f4a5b6c7d";
    let case_id = "0b9e8d7c-6f5a-4e3d-9c2b-1a0f9e8d7c6b";
    let created = c
        .create_case(obj(serde_json::json!({
            "id": id,
            "case_id": case_id,
            "module_id": "primeromodule-cp",
            "sex": "female"
        })))
        .await
        .expect("created");
    assert_eq!(created.id, id);
    assert_eq!(created.case_id.as_deref(), Some(case_id));
    assert!(
        requests(&sim, "case_get").await.is_empty(),
        "the 204 tells everything: no read-back"
    );
    // Primero kept the supplied case_id.
    let stored = c.get_case(id).await.unwrap().expect("stored");
    assert_eq!(stored.case_id.as_deref(), Some(case_id));

    // With a caller id only, the server's case_id must be read back.
    let other = c
        .create_case(obj(serde_json::json!({
            "id": "8b3e4c9a-7d2f-4e3a-9cad-2f4a5b6c7d8e",
            "module_id": "primeromodule-cp"
        })))
        .await
        .expect("created");
    assert!(other.case_id.is_some());
    assert_eq!(requests(&sim, "case_get").await.len(), 2);

    // Repeating the first create (an earlier run's answer lost) finds the existing case.
    let again = c
        .create_case(obj(serde_json::json!({
            "id": id,
            "case_id": case_id,
            "module_id": "primeromodule-cp",
            "sex": "female"
        })))
        .await
        .expect("repeated create");
    assert_eq!(again.case_id.as_deref(), Some(case_id));
}
