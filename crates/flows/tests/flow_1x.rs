//! Flows 1.1 `referrals-to-primero` and 1.2 `decisions-to-progres` against both simulators
//! over HTTP: mapping of a multi-row referral, appending to an existing case, idempotent
//! re-runs and crash recovery, conflicts and rejections that do not stop the others, the
//! Solr-lag case fact, caseworker decisions sent once (and again when changed), legacy
//! intervention numbers, the 1.2 cursor across restarts and within one second, transient
//! faults on either side, dry runs and refused credentials; decisions changed back and refused
//! or failing on their own keys, odd statuses and identifiers that never end a run, a refused
//! batched search, write-back failures named in another spelling or not at all, backoff of
//! failed records (`retry_not_due`), and no individual number in the ledger files.

mod support;

use pp_flows::{run_flow, Flow, FlowContext, FlowError, RunOptions};
use pp_ledger::{Cause, Ledger, RecordChange, RecordState, RetryTarget};
use serde_json::{json, Value};
use support::seed::{guid, pending_referral, ping_intervention, BU};
use support::{proxy, TestEnv};

const F11: &str = "referrals-to-primero";
const F12: &str = "decisions-to-progres";

/// A pending outgoing referral in the PING simulator's seed format: the shared fixture with
/// HTML in its texts and contact details for the individual and the officer.
fn intervention(lp: &str, number: &str, individual: &str) -> Value {
    with(
        pending_referral(lp, number, individual),
        json!({
            "progres_interventiondescription": "<p>Needs <b>urgent</b>&nbsp;care</p>",
            "progres_reasonforreferral": "Risk of <i>harm</i>",
            "individual": {"progres_primaryphonenumber": "+251911000001"},
            "systemuser": {"mobilephone": "+251911000002",
                           "internalemailaddress": "po@example.org"}
        }),
    )
}

/// Seeds the pending referrals `range` of series `series` (individual `803-{series}00{i:05}`,
/// number `803-26-PRTITV-{series}{i:05}`); returns their LP ids with their individuals.
async fn seed_series(
    env: &TestEnv,
    series: u32,
    range: std::ops::Range<usize>,
) -> Vec<(String, String)> {
    let ivs: Vec<(String, String)> = range
        .clone()
        .map(|i| (guid(), format!("803-{series}00{i:05}")))
        .collect();
    seed_ping(
        env,
        range
            .zip(&ivs)
            .map(|(i, (lp, ind))| intervention(lp, &format!("803-26-PRTITV-{series}{i:05}"), ind))
            .collect(),
    )
    .await;
    ivs
}

fn with(mut v: Value, patch: Value) -> Value {
    merge(&mut v, &patch);
    v
}

fn merge(a: &mut Value, b: &Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (a, b) => *a = b.clone(),
    }
}

async fn seed_ping(env: &TestEnv, interventions: Vec<Value>) {
    env.ping_post("/_sim/seed", json!({ "interventions": interventions }))
        .await;
}

async fn seed_primero(env: &TestEnv, cases: Vec<Value>) {
    env.primero_post("/_sim/seed", json!({ "cases": cases }))
        .await;
}

async fn cases_of(env: &TestEnv, individual: &str) -> Vec<Value> {
    let state = env.primero_get("/_sim/state").await;
    state["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["unhcr_individual_no"] == individual)
        .cloned()
        .collect()
}

fn rows(case: &Value) -> Vec<Value> {
    case["services_section"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn requests(env: &TestEnv, ping: bool, endpoint: &str) -> usize {
    let log = if ping {
        env.ping_get("/_sim/requests").await
    } else {
        env.primero_get("/_sim/requests").await
    };
    log.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["endpoint"] == endpoint)
        .count()
}

/// Minutes ahead for a later run: hours, every failed record's backoff has passed.
const LATER: i64 = 7 * 60;

async fn state_of(env: &TestEnv, flow: &str, key: &str) -> Option<RecordState> {
    env.ledger.get(flow, key).await.unwrap().map(|r| r.state)
}

/// Asserts that the referral `lp` is confirmed in the ledger and marked sent in PING.
async fn assert_confirmed_and_sent(env: &TestEnv, lp: &str) {
    assert_eq!(state_of(env, F11, lp).await, Some(RecordState::Confirmed));
    assert_eq!(
        ping_intervention(env, lp).await["progres_primerotransferstatus"],
        json!(125080002)
    );
}

/// The rejected records of `flow`.
async fn rejected_records(env: &TestEnv, flow: &str) -> Vec<pp_ledger::Record> {
    env.ledger
        .list_records(&pp_ledger::RecordFilter {
            flow: Some(flow.into()),
            states: vec![RecordState::Rejected],
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn pending_lp_ids(env: &TestEnv) -> Vec<String> {
    let shp = &env.config.ping.shipping_processes.pending_referrals;
    env.ctx
        .ping
        .retrieve(shp, &[])
        .await
        .unwrap()
        .rows
        .iter()
        .filter_map(|r| r.get_text("progres_lpinterventionid"))
        .collect()
}

#[tokio::test]
async fn referral_with_languages_and_needs_becomes_one_case_pending_in_progres() {
    let env = TestEnv::start().await;
    let lp = guid();
    seed_ping(
        &env,
        vec![with(
            intervention(&lp, "803-26-PRTITV-0000001", "803-100000001"),
            json!({
                "languages": ["Nuer", "Anyuak", "Swahili"],
                "specific_needs": [
                    {"progres_spncategory2": "a1c5b4fb-8f76-e611-80c9-00155d340529",
                     "progres_spncategory2name": "Child at risk"},
                    {"progres_spncategory2": "a3c5b4fb-8f76-e611-80c9-00155d340529",
                     "progres_spncategory2name": "Disability"}
                ]
            }),
        )],
    )
    .await;

    let report = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!(
        (report.fetched, report.delivered, report.confirmed),
        (1, 1, 1)
    );
    assert_eq!(
        report.rejected_total() + report.failed + report.conflicts,
        0
    );

    let cases = cases_of(&env, "803-100000001").await;
    assert_eq!(cases.len(), 1, "one case");
    let case = &cases[0];
    assert_eq!(case["language"], json!(["language2", "language1"]));
    assert_eq!(case["sex"], "female");
    assert_eq!(case["date_of_birth"], "2014-03-02");
    assert_eq!(case["module_id"], "primeromodule-cp");
    let r = rows(case);
    assert_eq!(r.len(), 1, "one service row for six SHP-2358 rows");
    assert_eq!(
        r[0]["progres_interventionnumber"],
        json!(format!("803-26-PRTITV-0000001,{lp},{BU}"))
    );
    assert_eq!(
        r[0]["service_referral_notes"],
        "Needs urgent care, Risk of harm"
    );
    assert_eq!(r[0]["service_type"], "focuses_non_specialized_mhpss_care");
    assert_eq!(r[0]["unhcr_referral_status"], "pending");
    assert_eq!(r[0]["service_request_agency"], "UNHCR");

    let iv = ping_intervention(&env, &lp).await;
    assert_eq!(iv["progres_primerotransferstatus"], json!(125080002));
    assert!(!pending_lp_ids(&env).await.contains(&lp));

    let record = env.ledger.get(F11, &lp).await.unwrap().unwrap();
    assert_eq!(record.state, RecordState::Confirmed);
    assert_eq!(record.dest_ids["case_uuid"], case["id"].as_str().unwrap());
    // The case_id was chosen by the flow (derived, UUID-shaped, not the record id) and
    // Primero kept it; the ledger (and 1.2's write-back, by ExternalId) use that one.
    let case_id = case["case_id"].as_str().unwrap();
    assert_eq!(record.dest_ids["case_id"], case_id);
    assert_eq!(case_id.len(), 36);
    assert_ne!(case_id, case["id"].as_str().unwrap());
    assert_eq!(record.ping_transaction_ids.len(), 1);
    assert!(report
        .ping_transaction_ids
        .contains(&record.ping_transaction_ids[0]));
    // The facts 1.2 and later runs rely on.
    let fact = env
        .ledger
        .fact("intervention", "803-26-PRTITV-0000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fact["lp_intervention_id"], lp.as_str());
}

#[tokio::test]
async fn many_referrals_take_at_most_two_and_a_half_calls_each() {
    let env = TestEnv::start().await;
    let ivs: Vec<Value> = (0..20)
        .map(|i| {
            intervention(
                &guid(),
                &format!("803-26-PRTITV-10{i:05}"),
                &format!("803-2000{i:05}"),
            )
        })
        .collect();
    seed_ping(&env, ivs).await;
    env.clear_requests().await;
    let report = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!(report.confirmed, 20);
    let ping: Vec<Value> = env
        .ping_get("/_sim/requests")
        .await
        .as_array()
        .unwrap()
        .clone();
    let ping_calls = ping.iter().filter(|e| e["endpoint"] != "token").count();
    let primero_calls = env
        .primero_get("/_sim/requests")
        .await
        .as_array()
        .unwrap()
        .len();
    let per_referral = (ping_calls + primero_calls) as f64 / 20.0;
    assert!(per_referral <= 2.5, "{per_referral} API calls per referral");
    // One write per new case: Primero's 204 is not followed by a read-back.
    assert_eq!(requests(&env, false, "case_create").await, 20);
    assert_eq!(requests(&env, false, "case_get").await, 0);
}

#[tokio::test]
async fn existing_case_gets_a_row_appended_and_reruns_create_nothing() {
    let env = TestEnv::start().await;
    let existing_row = json!({
        "unique_id": "5efbc52f-0606-4436-8f3d-c748867d913b",
        "service_type": "medical",
        "service_referral": "internal_referral",
        "service_implementing_agency": "DRC",
        "progres_interventionnumber": "803-26-PRTITV-00000020,aaa,bbb"
    });
    seed_primero(
        &env,
        vec![json!({
            "unhcr_individual_no": "803-100000002",
            "name_first": "Existing",
            "module_id": "primeromodule-cp",
            "owned_by": "openfn_integration",
            "services_section": [existing_row.clone()]
        })],
    )
    .await;
    let lp = guid();
    // Same prefix as the existing row's number: only an exact first part counts.
    seed_ping(
        &env,
        vec![intervention(&lp, "803-26-PRTITV-0000002", "803-100000002")],
    )
    .await;

    let report = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!((report.delivered, report.confirmed), (1, 1));
    let cases = cases_of(&env, "803-100000002").await;
    assert_eq!(cases.len(), 1);
    let r = rows(&cases[0]);
    assert_eq!(r.len(), 2);
    assert_eq!(r[0], existing_row, "the existing row is untouched");
    assert_eq!(cases[0]["name_first"], "Existing", "case fields untouched");
    assert_eq!(
        r[1]["progres_interventionnumber"],
        json!(format!("803-26-PRTITV-0000002,{lp},{BU}"))
    );

    // Second run: proGres no longer lists it; nothing is written anywhere.
    env.clear_requests().await;
    let again = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!((again.fetched, again.delivered, again.confirmed), (0, 0, 0));
    assert_eq!(requests(&env, false, "case_create").await, 0);
    assert_eq!(requests(&env, false, "case_patch").await, 0);
    assert_eq!(requests(&env, true, "data").await, 0);

    // Even if proGres lists it again, a confirmed referral is not sent twice.
    env.ping_post(
        "/_sim/options",
        json!({"drop_transferred_from_pending": false}),
    )
    .await;
    let third = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!((third.fetched, third.skipped, third.delivered), (1, 1, 0));
    assert_eq!(requests(&env, false, "case_patch").await, 0);
    assert_eq!(requests(&env, true, "data").await, 0);
    assert_eq!(rows(&cases_of(&env, "803-100000002").await[0]).len(), 2);
}

#[tokio::test]
async fn crash_between_primero_write_and_write_back_creates_nothing_new() {
    let env = TestEnv::start().await;
    let (a, b) = (guid(), guid());
    seed_ping(
        &env,
        vec![
            intervention(&a, "803-26-PRTITV-0000003", "803-100000003"),
            intervention(&b, "803-26-PRTITV-0000004", "803-100000004"),
        ],
    )
    .await;
    // The write-back fails whatever the retries do.
    env.ping_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "data", "kind": "status", "status": 503}]}),
    )
    .await;
    let first = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!((first.delivered, first.confirmed, first.failed), (2, 0, 2));
    assert_eq!(state_of(&env, F11, &a).await, Some(RecordState::Failed));
    assert!(pending_lp_ids(&env).await.contains(&a));

    // Make `b` look exactly like a crash right after the Primero write: `delivered`.
    let record = env.ledger.get(F11, &b).await.unwrap().unwrap();
    env.ledger
        .apply(
            &[RecordChange::new(F11, &b, RecordState::Delivered)
                .with_dest_id("case_uuid", &record.dest_ids["case_uuid"])],
            None,
            &Cause::Operator("test".into()),
        )
        .await
        .unwrap();

    env.ping_delete("/_sim/faults").await;
    env.clear_requests().await;
    let second = env.run_later(Flow::ReferralsToPrimero, LATER).await;
    // Each record counted once: already in Primero, so not delivered by this run nor
    // skipped; its write-back confirmed it (R13).
    assert_eq!(
        (
            second.confirmed,
            second.delivered,
            second.skipped,
            second.failed
        ),
        (2, 0, 0, 0),
        "{second}"
    );
    assert_eq!(requests(&env, false, "case_create").await, 0);
    assert_eq!(requests(&env, false, "case_patch").await, 0);
    for (lp, individual) in [(&a, "803-100000003"), (&b, "803-100000004")] {
        let cases = cases_of(&env, individual).await;
        assert_eq!(cases.len(), 1);
        assert_eq!(rows(&cases[0]).len(), 1, "no duplicate row");
        assert_confirmed_and_sent(&env, lp).await;
    }
}

#[tokio::test]
async fn conflicts_and_rejections_do_not_stop_the_other_referrals() {
    let env = TestEnv::start().await;
    let (dup1, dup2) = (guid(), guid());
    seed_primero(
        &env,
        vec![
            json!({"id": dup1, "unhcr_individual_no": "803-100000010",
                   "module_id": "primeromodule-cp", "owned_by": "openfn_integration"}),
            json!({"id": dup2, "unhcr_individual_no": "803-100000010",
                   "module_id": "primeromodule-cp", "owned_by": "openfn_integration"}),
        ],
    )
    .await;
    let (dup, missing, unmapped, good) = (guid(), guid(), guid(), guid());
    seed_ping(
        &env,
        vec![
            intervention(&dup, "803-26-PRTITV-0000010", "803-100000010"),
            with(
                intervention(&missing, "803-26-PRTITV-0000011", "803-100000011"),
                json!({"individual": {"progres_givenname": null, "progres_dateofbirth": null}}),
            ),
            with(
                intervention(&unmapped, "803-26-PRTITV-0000012", "803-100000012"),
                json!({"intervention_type_description": "Cash for Protection"}),
            ),
            intervention(&good, "803-26-PRTITV-0000013", "803-100000013"),
        ],
    )
    .await;
    let report = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!(report.fetched, 4);
    assert_eq!((report.confirmed, report.conflicts), (1, 1));
    assert_eq!(report.rejected["missing_required_fields"], 1);
    assert_eq!(report.rejected["unmapped_intervention_type"], 1);

    let conflict = env.ledger.get(F11, &dup).await.unwrap().unwrap();
    assert_eq!(conflict.state, RecordState::Conflict);
    assert_eq!(conflict.reason_code.as_deref(), Some("duplicate_cases"));
    let msg = conflict.message.unwrap();
    assert!(msg.contains(&dup1) && msg.contains(&dup2), "{msg}");
    assert!(msg.contains(&dup), "names the LP intervention: {msg}");
    assert!(
        !msg.contains("803-100000010"),
        "no individual number: {msg}"
    );
    // An operator finds every outcome by intervention number, LP id or business unit, not
    // only deliveries (the dashboard's search).
    for (number, lp) in [
        ("803-26-PRTITV-0000010", &dup),
        ("803-26-PRTITV-0000011", &missing),
        ("803-26-PRTITV-0000012", &unmapped),
        ("803-26-PRTITV-0000013", &good),
    ] {
        let found = env.ledger.find(number).await.unwrap();
        assert_eq!(found.len(), 1, "search by {number}");
        assert_eq!(&found[0].key, lp);
        assert_eq!(found[0].dest_ids["business_unit"], BU);
        assert_eq!(found[0].dest_ids["lp_intervention_id"], lp.as_str());
    }
    // The UNHCR individual numbers identify people: no ledger file holds them (the case
    // fact is keyed by a keyed hash).
    let contains =
        |bytes: &[u8], text: &str| bytes.windows(text.len()).any(|w| w == text.as_bytes());
    let mut identifiers_seen = false;
    for entry in std::fs::read_dir(env.dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        // The scan sees what the ledger stores (system identifiers are there).
        identifiers_seen |= contains(&bytes, "803-26-PRTITV-0000013");
        for individual in ["803-100000010", "803-100000012", "803-100000013"] {
            assert!(
                !bytes
                    .windows(individual.len())
                    .any(|w| w == individual.as_bytes()),
                "{individual} stored in the ledger"
            );
        }
    }
    assert!(identifiers_seen, "the ledger files were read");
    for c in cases_of(&env, "803-100000010").await {
        assert!(rows(&c).is_empty(), "no write to either duplicate");
    }

    let missing_rec = env.ledger.get(F11, &missing).await.unwrap().unwrap();
    let msg = missing_rec.message.unwrap();
    assert!(
        msg.contains("progres_givenname") && msg.contains("progres_dateofbirth"),
        "one rejection naming both: {msg}"
    );
    let unmapped_rec = env.ledger.get(F11, &unmapped).await.unwrap().unwrap();
    assert!(unmapped_rec
        .message
        .unwrap()
        .contains("Cash for Protection"));
    for line in &report.attention {
        let text = line.message.clone().unwrap_or_default();
        assert!(
            !text.contains("Amanimarker") && !text.contains("+251911"),
            "{text}"
        );
    }
    assert_eq!(cases_of(&env, "803-100000013").await.len(), 1);
    assert_eq!(
        ping_intervention(&env, &good).await["progres_primerotransferstatus"],
        json!(125080002)
    );
    // Nothing of the refused ones reached proGres (R7).
    assert!(ping_intervention(&env, &missing).await["progres_primerotransferstatus"].is_null());

    // Unchanged source: held (counted as still needing a person), not re-examined.
    env.clear_requests().await;
    let again = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!(
        (
            again.held,
            again.skipped,
            again.conflicts,
            again.rejected_total()
        ),
        (3, 0, 0, 0)
    );
    assert_eq!(requests(&env, false, "cases_list").await, 0);

    // Fixed source data (new hash) and an operator re-queue are both processed again.
    seed_ping(
        &env,
        vec![intervention(
            &missing,
            "803-26-PRTITV-0000011",
            "803-100000011",
        )],
    )
    .await;
    env.ledger
        .retry(
            RetryTarget::Key {
                flow: Some(F11.into()),
                key: dup.clone(),
            },
            "alice",
        )
        .await
        .unwrap();
    let third = env.run(Flow::ReferralsToPrimero).await;
    // The unmapped type, unchanged, is still held.
    assert_eq!(
        (third.confirmed, third.conflicts, third.held, third.skipped),
        (1, 1, 1, 0)
    );
    assert_eq!(
        state_of(&env, F11, &missing).await,
        Some(RecordState::Confirmed)
    );
}

#[tokio::test]
async fn several_cases_resolved_by_progres_primeroid() {
    let env = TestEnv::start().await;
    let chosen_case_id = guid();
    seed_primero(
        &env,
        vec![
            json!({"unhcr_individual_no": "803-100000020", "case_id": chosen_case_id,
                   "module_id": "primeromodule-cp"}),
            json!({"unhcr_individual_no": "803-100000020", "module_id": "primeromodule-cp"}),
        ],
    )
    .await;
    let lp = guid();
    // progres_primeroid is not part of the seed model: it is written by SHP-2748 only.
    seed_ping(
        &env,
        vec![intervention(&lp, "803-26-PRTITV-0000020", "803-100000020")],
    )
    .await;
    env.ctx
        .ping
        .ingest(
            "SHP-2748",
            &[pp_ping::IngestRecord::new(&lp)
                .field("progres_lpinterventionid", Some(lp.as_str()))
                .field("progres_businessunit", Some(BU))
                .field("progres_primeroid", Some(chosen_case_id.as_str()))],
        )
        .await
        .unwrap();
    let report = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!((report.confirmed, report.conflicts), (1, 0));
    for c in cases_of(&env, "803-100000020").await {
        let expected = usize::from(c["case_id"] == chosen_case_id.as_str());
        assert_eq!(rows(&c).len(), expected);
    }
}

#[tokio::test]
async fn same_individual_uses_one_case_even_when_search_lags() {
    let env = TestEnv::start().await;
    // Primero <= 2.10: a case created a moment ago is not found by search for a minute.
    env.primero_post("/_sim/options", json!({"search_lag_ms": 60_000}))
        .await;
    let (a, b, c) = (guid(), guid(), guid());
    seed_ping(
        &env,
        vec![
            intervention(&a, "803-26-PRTITV-0000030", "803-100000030"),
            intervention(&b, "803-26-PRTITV-0000031", "803-100000030"),
        ],
    )
    .await;
    let first = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!(first.confirmed, 2);
    // A later referral of the same individual, while search still cannot see the case.
    seed_ping(
        &env,
        vec![intervention(&c, "803-26-PRTITV-0000032", "803-100000030")],
    )
    .await;
    let second = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!(second.confirmed, 1);
    let cases = cases_of(&env, "803-100000030").await;
    assert_eq!(cases.len(), 1, "no twin case");
    assert_eq!(rows(&cases[0]).len(), 3);
}

/// What the proxy in front of the PING simulator changes in its answers, per LP id: shapes
/// the simulator never produces itself.
#[derive(Clone, Default)]
struct Mangle {
    /// SHP-2358: the second row of this LP disagrees on two non-join fields.
    inconsistent: Option<String>,
    /// SHP-2358: this LP carries another business unit (so PING refuses its write-back).
    wrong_business_unit: Option<String>,
    /// SHP-2747: this LP's row lacks `progres_lpinterventionid` (older shape).
    no_lp_id: Option<String>,
    /// SHP-2747: this LP's row lacks every identifier (LP id, intervention GUID, intervention
    /// number, delivery id); only the free-text name is left.
    anonymous: Option<String>,
    /// SHP-2358: this LP's rows spell its id in capitals with spaces around.
    shouted_lp: Option<String>,
    /// `/data`: how `FailedRecords` name the refused records.
    failed_ids: FailedIds,
}

/// How the proxy rewrites the `ExternalId` of `FailedRecords` entries.
#[derive(Clone, Copy, Default, PartialEq)]
enum FailedIds {
    #[default]
    Keep,
    /// Capitals and spaces around.
    Shouted,
    /// Left out.
    Missing,
}

/// Starts a test environment whose PING answers pass through a proxy that applies `mangle`
/// to retrieval answers.
async fn env_behind_proxy(mangle: Mangle) -> TestEnv {
    let http = reqwest::Client::new();
    proxy::ping_behind(
        |_| {},
        move |target, request| {
            let (http, mangle) = (http.clone(), mangle.clone());
            async move {
                let mut answer = proxy::forward(&http, &target, &request).await?;
                let text = String::from_utf8_lossy(&answer.body).into_owned();
                answer.body = mangled(&mangle, &request.text(), text).into_bytes();
                answer.content_type = "application/json".into();
                Some(answer)
            }
        },
    )
    .await
}

/// The answer `text` to a PING `request` body, mangled as `mangle` says.
fn mangled(mangle: &Mangle, request: &str, mut text: String) -> String {
    if let Ok(mut v) = serde_json::from_str::<Value>(&text) {
        if let Some(rows) = v["Data"].as_array_mut() {
            let mut seen = 0;
            for row in rows.iter_mut() {
                let lp = row["progres_lpinterventionid"].as_str().map(str::to_owned);
                if request.contains("SHP-2358") && lp == mangle.inconsistent {
                    seen += 1;
                    if seen == 2 {
                        row["progres_individual.individuals.progres_familyname"] =
                            json!("Differentmarker");
                        row["progres_interventionstartdate"] = json!("2026-01-01");
                    }
                }
                if request.contains("SHP-2358") && lp == mangle.wrong_business_unit {
                    row["progres_businessunit"] = json!("99999999-86de-e811-80d8-001dd8b71fe3");
                }
                if request.contains("SHP-2747") && lp == mangle.no_lp_id {
                    row.as_object_mut()
                        .unwrap()
                        .remove("progres_lpinterventionid");
                }
                if request.contains("SHP-2747") && lp == mangle.anonymous {
                    let m = row.as_object_mut().unwrap();
                    for k in [
                        "progres_lpinterventionid",
                        "progres_intervention",
                        "progres_lpintervention.int.progres_interventionnumber",
                        "progres_dtpdeliveryid",
                    ] {
                        m.remove(k);
                    }
                }
                if request.contains("SHP-2358") && lp == mangle.shouted_lp {
                    row["progres_lpinterventionid"] =
                        json!(format!("  {}  ", lp.clone().unwrap().to_uppercase()));
                }
            }
        }
        if let Some(failed) = v["FailedRecords"].as_array_mut() {
            for f in failed.iter_mut() {
                let id = f["ExternalId"].as_str().unwrap_or_default().to_owned();
                match mangle.failed_ids {
                    FailedIds::Keep => {}
                    FailedIds::Shouted => {
                        f["ExternalId"] = json!(format!(" {} ", id.to_uppercase()))
                    }
                    FailedIds::Missing => {
                        f.as_object_mut().unwrap().remove("ExternalId");
                    }
                }
            }
        }
        text = v.to_string();
    }
    text
}

#[tokio::test]
async fn odd_shapes_from_ping_reject_only_their_own_records() {
    let (bad, wrong_bu, no_lp) = (guid(), guid(), guid());
    let env = env_behind_proxy(Mangle {
        inconsistent: Some(bad.clone()),
        wrong_business_unit: Some(wrong_bu.clone()),
        no_lp_id: Some(no_lp.clone()),
        ..Mangle::default()
    })
    .await;
    let good: Vec<String> = (0..3).map(|_| guid()).collect();
    let mut ivs = vec![
        with(
            intervention(&bad, "803-26-PRTITV-0000040", "803-100000040"),
            json!({"languages": ["Nuer", "Anyuak"]}),
        ),
        intervention(&wrong_bu, "803-26-PRTITV-0000042", "803-100000042"),
        intervention(&no_lp, "803-26-PRTITV-0000043", "803-100000043"),
    ];
    for (i, lp) in good.iter().enumerate() {
        ivs.push(intervention(
            lp,
            &format!("803-26-PRTITV-000005{i}"),
            &format!("803-10000005{i}"),
        ));
    }
    seed_ping(&env, ivs).await;
    let report = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!(report.fetched, 6);
    assert_eq!(report.rejected["inconsistent_join_rows"], 1);
    assert_eq!(report.rejected["missing_lp_intervention_id"], 1);
    // The write-back batch PING refused because of one record: that one is rejected, the
    // rest of the batch is sent again (R1).
    assert_eq!(report.rejected["validation_error"], 1);
    assert_eq!(report.confirmed, 3);
    for lp in &good {
        assert_confirmed_and_sent(&env, lp).await;
    }
    let refused = env.ledger.get(F11, &wrong_bu).await.unwrap().unwrap();
    assert_eq!(refused.state, RecordState::Rejected);
    assert!(refused.message.unwrap().contains("SHP-2748"));
    let no_lp_rec = env
        .ledger
        .get(F11, &format!("no-lp-id:{no_lp}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        no_lp_rec.reason_code.as_deref(),
        Some("missing_lp_intervention_id")
    );
    assert!(cases_of(&env, "803-100000043").await.is_empty());
    let rec = env.ledger.get(F11, &bad).await.unwrap().unwrap();
    let msg = rec.message.unwrap();
    assert!(
        msg.contains("progres_familyname") && msg.contains("progres_interventionstartdate"),
        "{msg}"
    );
    assert!(!msg.contains("Differentmarker") && !msg.contains("Okello"));
    assert!(cases_of(&env, "803-100000040").await.is_empty());
}

/// Runs 1.1 for one referral per individual and returns (LP id, case uuid, service unique_id).
async fn delivered_referrals(
    env: &TestEnv,
    n: usize,
    first: usize,
) -> Vec<(String, String, String)> {
    let seeded = seed_series(env, 50, first..first + n).await;
    let report = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!(report.confirmed as usize, n);
    let mut result = Vec::new();
    for (lp, individual) in seeded {
        let case = cases_of(env, &individual).await.remove(0);
        let uid = rows(&case)[0]["unique_id"].as_str().unwrap().to_owned();
        result.push((lp, case["id"].as_str().unwrap().to_owned(), uid));
    }
    result
}

async fn decide(env: &TestEnv, case: &str, uid: &str, decision: &str, reason: Option<&str>) {
    let mut body = json!({"case": case, "service_unique_id": uid, "decision": decision});
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    env.primero_post("/_sim/actions/decide-service", body).await;
}

#[tokio::test]
async fn caseworker_decisions_reach_progres_once_and_changes_are_sent() {
    let env = TestEnv::start().await;
    let d = delivered_referrals(&env, 2, 0).await;
    let (acc, rej) = (&d[0], &d[1]);
    decide(&env, &acc.1, &acc.2, "accepted", None).await;
    decide(
        &env,
        &rej.1,
        &rej.2,
        "rejected",
        Some("No capacity in the area"),
    )
    .await;

    let report = env.run(Flow::DecisionsToProgres).await;
    assert_eq!((report.fetched, report.confirmed), (2, 2));
    assert!(report.excluded.is_empty(), "{:?}", report.excluded);
    let a = ping_intervention(&env, &acc.0).await;
    assert_eq!(a["progres_primerotransferstatus"], json!(125080003));
    assert_eq!(
        a["attachment_comments"],
        json!(["Referral acknowledged by PRIMERO"])
    );
    let case_a = &env.primero_get("/_sim/state").await["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == acc.1.as_str())
        .cloned()
        .unwrap();
    assert_eq!(a["progres_primeroid"], case_a["case_id"]);
    assert_eq!(a["progres_primerocaseworker"], case_a["owned_by"]);
    let r = ping_intervention(&env, &rej.0).await;
    assert_eq!(r["progres_primerotransferstatus"], json!(125080004));
    assert_eq!(
        r["attachment_comments"],
        json!(["Referral rejected by PRIMERO: No capacity in the area"])
    );
    let key = format!("{}:{}:accepted", acc.1, acc.2);
    let rec = env.ledger.get(F12, &key).await.unwrap().unwrap();
    assert_eq!(rec.state, RecordState::Confirmed);
    assert_eq!(rec.decision.as_deref(), Some("accepted"));
    assert_eq!(rec.ping_transaction_ids.len(), 1);

    // Second run: nothing new to send.
    env.clear_requests().await;
    let again = env.run(Flow::DecisionsToProgres).await;
    assert_eq!(again.confirmed, 0);
    assert_eq!(requests(&env, true, "data").await, 0);

    // The caseworker changes the accepted referral to rejected: the new decision goes out.
    decide(&env, &acc.1, &acc.2, "rejected", Some("Moved away")).await;
    let changed = env.run(Flow::DecisionsToProgres).await;
    assert_eq!(changed.confirmed, 1);
    let a = ping_intervention(&env, &acc.0).await;
    assert_eq!(a["progres_primerotransferstatus"], json!(125080004));
    assert_eq!(requests(&env, true, "data").await, 1);
    // And back to accepted: sent again although that key was sent before.
    decide(&env, &acc.1, &acc.2, "accepted", None).await;
    let back = env.run(Flow::DecisionsToProgres).await;
    assert_eq!(back.confirmed, 1);
    assert_eq!(
        ping_intervention(&env, &acc.0).await["progres_primerotransferstatus"],
        json!(125080003)
    );
}

fn decided_case(case_id: &str, updated: &str, rows: Vec<Value>) -> Value {
    json!({
        "case_id": case_id,
        "unhcr_individual_no": format!("ind-{case_id}"),
        "module_id": "primeromodule-cp",
        "owned_by": "cw_amina",
        "created_at": updated,
        "last_updated_at": updated,
        "services_section": rows
    })
}

fn decided_row(number: &str, status: &str) -> Value {
    json!({
        "unique_id": guid(),
        "service_type": "food",
        "service_request_agency": "unhcr",
        "service_referral": "external_referral",
        "unhcr_referral_status": status,
        "progres_interventionnumber": number
    })
}

#[tokio::test]
async fn legacy_intervention_numbers_resolve_through_the_ledger_or_are_rejected() {
    let env = TestEnv::start().await;
    let d = delivered_referrals(&env, 1, 10).await;
    let lp = &d[0].0;
    let known = decided_row("803-26-PRTITV-5000010", "accepted");
    let unknown = decided_row("803-19-PRTITV-0000404", "accepted");
    let unknown_uid = unknown["unique_id"].as_str().unwrap().to_owned();
    seed_primero(
        &env,
        vec![decided_case(
            &guid(),
            "2026-01-01T00:00:00.000Z",
            vec![known, unknown],
        )],
    )
    .await;
    let report = env.run(Flow::DecisionsToProgres).await;
    assert_eq!(report.confirmed, 1);
    assert_eq!(report.rejected["legacy_intervention_number"], 1);
    assert_eq!(
        ping_intervention(&env, lp).await["progres_primerotransferstatus"],
        json!(125080003)
    );
    let rejected = rejected_records(&env, F12).await;
    assert_eq!(rejected.len(), 1);
    assert!(rejected[0].key.contains(&unknown_uid));
    assert!(rejected[0]
        .message
        .as_deref()
        .unwrap()
        .contains("803-19-PRTITV-0000404"));

    // Unchanged: left alone. Once the number is known and an operator re-queues the record,
    // it is sent although its case is older than the cursor.
    env.clear_requests().await;
    let again = env.run(Flow::DecisionsToProgres).await;
    assert_eq!((again.confirmed, again.rejected_total()), (0, 0));
    assert_eq!(requests(&env, true, "data").await, 0);
    let old_lp = guid();
    seed_ping(
        &env,
        vec![with(
            intervention(&old_lp, "803-19-PRTITV-0000404", "803-199"),
            json!({"delivery": null}),
        )],
    )
    .await;
    env.ledger
        .put_fact(
            "intervention",
            "803-19-PRTITV-0000404",
            &json!({"lp_intervention_id": old_lp, "business_unit": BU}),
        )
        .await
        .unwrap();
    env.ledger
        .retry(
            RetryTarget::Key {
                flow: Some(F12.into()),
                key: rejected[0].key.clone(),
            },
            "alice",
        )
        .await
        .unwrap();
    let retried = env.run(Flow::DecisionsToProgres).await;
    assert_eq!(retried.confirmed, 1, "{retried}");
    assert_eq!(
        ping_intervention(&env, &old_lp).await["progres_primerotransferstatus"],
        json!(125080003)
    );
}

#[tokio::test]
async fn cursor_advances_survives_restart_and_keeps_same_second_changes() {
    let env = TestEnv::start().await;
    let lps: Vec<String> = (0..4).map(|_| guid()).collect();
    // Interventions known to proGres (no delivery: they are not pending referrals).
    seed_ping(
        &env,
        lps.iter()
            .enumerate()
            .map(|(i, lp)| {
                with(
                    intervention(lp, &format!("803-26-PRTITV-70{i:05}"), &format!("x{i}")),
                    json!({"delivery": null}),
                )
            })
            .collect(),
    )
    .await;
    let composite = |i: usize| format!("803-26-PRTITV-70{i:05},{},{BU}", lps[i]);
    seed_primero(
        &env,
        vec![decided_case(
            &guid(),
            "2026-03-01T10:00:00.100Z",
            vec![decided_row(&composite(0), "accepted")],
        )],
    )
    .await;
    let first = env.run(Flow::DecisionsToProgres).await;
    assert_eq!(first.confirmed, 1);
    assert_eq!(
        env.ledger.cursor(F12).await.unwrap().as_deref(),
        Some("2026-03-01T10:00:00Z")
    );

    // Same second, seen only after the first run; plus one older than the cursor.
    seed_primero(
        &env,
        vec![
            decided_case(
                &guid(),
                "2026-03-01T10:00:00.900Z",
                vec![decided_row(&composite(1), "rejected")],
            ),
            decided_case(
                &guid(),
                "2026-02-01T00:00:00.000Z",
                vec![decided_row(&composite(2), "accepted")],
            ),
        ],
    )
    .await;
    // Restart: a new context on the same ledger file.
    let ledger_url = format!("sqlite://{}", env.dir.path().join("ledger.db").display());
    let ledger = Ledger::connect(&ledger_url).await.unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let ctx = FlowContext::new(env.config.clone(), ledger, rx).unwrap();
    let second = run_flow(&ctx, Flow::DecisionsToProgres, RunOptions::default())
        .await
        .unwrap();
    assert_eq!((second.confirmed, second.skipped), (1, 1), "{second}");
    assert_eq!(
        ping_intervention(&env, &lps[1]).await["progres_primerotransferstatus"],
        json!(125080004)
    );
    assert!(
        ping_intervention(&env, &lps[2]).await["progres_primerotransferstatus"].is_null(),
        "older than the cursor: not read"
    );

    seed_primero(
        &env,
        vec![decided_case(
            &guid(),
            "2026-03-01T10:00:05.000Z",
            vec![decided_row(&composite(3), "accepted")],
        )],
    )
    .await;
    let third = run_flow(&ctx, Flow::DecisionsToProgres, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(third.confirmed, 1);
    assert_eq!(
        env.ledger.cursor(F12).await.unwrap().as_deref(),
        Some("2026-03-01T10:00:05Z")
    );
}

#[tokio::test]
async fn transient_faults_on_both_sides_end_with_each_record_delivered_once() {
    let env = TestEnv::start().await;
    let ivs = seed_series(&env, 60, 0..4).await;
    env.ping_post(
        "/_sim/faults",
        json!({"rules": [
            {"endpoint": "retrieve", "kind": "status", "status": 503, "times": 2},
            {"endpoint": "retrieve", "kind": "drop", "times": 1},
            {"endpoint": "data", "kind": "status", "status": 429, "retry_after_secs": 1, "times": 1},
            {"endpoint": "data", "kind": "drop", "times": 1}
        ]}),
    )
    .await;
    env.primero_post(
        "/_sim/faults",
        json!({"rules": [
            {"endpoint": "cases_list", "kind": "status", "status": 500, "times": 2},
            {"endpoint": "cases_list", "kind": "drop", "times": 1},
            {"endpoint": "case_create", "kind": "status", "status": 503, "times": 2},
            {"endpoint": "case_create", "kind": "drop", "times": 1}
        ]}),
    )
    .await;
    let report = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!((report.confirmed, report.failed), (4, 0), "{report}");
    for (lp, ind) in &ivs {
        assert_eq!(cases_of(&env, ind).await.len(), 1);
        assert_eq!(rows(&cases_of(&env, ind).await[0]).len(), 1);
        assert_eq!(
            ping_intervention(&env, lp).await["progres_primerotransferstatus"],
            json!(125080002)
        );
    }
}

#[tokio::test]
async fn lasting_faults_leave_records_failed_then_delivered_by_the_next_run() {
    let env = TestEnv::start_with(|c| c.primero.http.retry.max_attempts = 2).await;
    let ivs = seed_series(&env, 61, 0..3).await;
    env.primero_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "case_create", "kind": "status", "status": 503}]}),
    )
    .await;
    let first = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!((first.failed, first.confirmed), (3, 0));
    let rec = env.ledger.get(F11, &ivs[0].0).await.unwrap().unwrap();
    assert_eq!(rec.reason_code.as_deref(), Some("transient"));
    assert!(rec.next_retry_at.is_some());
    assert!(ping_intervention(&env, &ivs[0].0).await["progres_primerotransferstatus"].is_null());

    env.primero_delete("/_sim/faults").await;
    // R9: not due yet: left alone, counted, nothing sent.
    env.clear_requests().await;
    let early = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!(early.excluded.get("retry_not_due"), Some(&3), "{early}");
    assert_eq!((early.failed, early.confirmed), (0, 0));
    assert_eq!(requests(&env, false, "case_create").await, 0);
    let second = env.run_later(Flow::ReferralsToPrimero, LATER).await;
    assert_eq!((second.failed, second.confirmed), (0, 3));
    for (_, ind) in &ivs {
        assert_eq!(cases_of(&env, ind).await.len(), 1);
    }

    // 1.2: a write-back that keeps failing holds the cursor; the next run sends it once.
    let case = cases_of(&env, &ivs[0].1).await.remove(0);
    let uid = rows(&case)[0]["unique_id"].as_str().unwrap().to_owned();
    decide(&env, case["id"].as_str().unwrap(), &uid, "accepted", None).await;
    env.ping_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "data", "kind": "status", "status": 502}]}),
    )
    .await;
    let failing = env.run(Flow::DecisionsToProgres).await;
    assert_eq!((failing.failed, failing.confirmed), (1, 0));
    env.ping_delete("/_sim/faults").await;
    env.clear_requests().await;
    let early = env.run(Flow::DecisionsToProgres).await;
    assert_eq!(early.excluded.get("retry_not_due"), Some(&1), "{early}");
    assert_eq!(requests(&env, true, "data").await, 0);
    let recovered = env.run_later(Flow::DecisionsToProgres, LATER).await;
    assert_eq!((recovered.failed, recovered.confirmed), (0, 1));
    assert_eq!(requests(&env, true, "data").await, 1);
    assert_eq!(
        ping_intervention(&env, &ivs[0].0).await["progres_primerotransferstatus"],
        json!(125080003)
    );
}

#[tokio::test]
async fn dry_run_writes_nothing_and_previews_field_names_only() {
    let env = TestEnv::start().await;
    let lp = guid();
    seed_ping(
        &env,
        vec![intervention(&lp, "803-26-PRTITV-0000090", "803-100000090")],
    )
    .await;
    let report = env.dry_run(Flow::ReferralsToPrimero).await;
    assert!(report.dry_run);
    assert_eq!(report.fetched, 1);
    let actions: Vec<&str> = report
        .would_send
        .iter()
        .map(|p| p.action.as_str())
        .collect();
    assert_eq!(actions, vec!["create case", "ingest SHP-2748"]);
    let fields = &report.would_send[0].fields;
    assert!(fields.contains(&"name_first".to_owned()));
    assert!(fields.contains(&"services_section.progres_interventionnumber".to_owned()));
    let text = format!("{report} {}", serde_json::to_string(&report).unwrap());
    assert!(!text.contains("Amanimarker") && !text.contains("+251911"));
    assert!(cases_of(&env, "803-100000090").await.is_empty());
    assert_eq!(requests(&env, true, "data").await, 0);
    assert_eq!(env.ledger.get(F11, &lp).await.unwrap(), None);
    assert!(pending_lp_ids(&env).await.contains(&lp));

    // 1.2 dry run: previews the decision, sends nothing, keeps no cursor.
    env.run(Flow::ReferralsToPrimero).await;
    let case = cases_of(&env, "803-100000090").await.remove(0);
    let uid = rows(&case)[0]["unique_id"].as_str().unwrap().to_owned();
    decide(
        &env,
        case["id"].as_str().unwrap(),
        &uid,
        "rejected",
        Some("Secretreason"),
    )
    .await;
    env.clear_requests().await;
    let dry = env.dry_run(Flow::DecisionsToProgres).await;
    assert_eq!(dry.would_send.len(), 1);
    assert!(dry.would_send[0]
        .fields
        .contains(&"progres_primerotransferstatus".to_owned()));
    assert!(!serde_json::to_string(&dry)
        .unwrap()
        .contains("Secretreason"));
    assert_eq!(requests(&env, true, "data").await, 0);
    assert_eq!(env.ledger.cursor(F12).await.unwrap(), None);
}

#[tokio::test]
async fn refused_credentials_end_the_run_with_an_auth_error() {
    let env = TestEnv::start_with(|c| {
        c.ping.password = secrecy::SecretString::from("wrong-password");
    })
    .await;
    let err = env.try_run(Flow::ReferralsToPrimero).await.unwrap_err();
    assert!(matches!(err, FlowError::Auth { .. }), "{err}");
    let env = TestEnv::start_with(|c| {
        c.primero.password = secrecy::SecretString::from("wrong-password");
    })
    .await;
    let err = env.try_run(Flow::DecisionsToProgres).await.unwrap_err();
    assert!(err.is_auth(), "{err}");
}

#[tokio::test]
async fn primero_refusing_a_case_rejects_it_with_the_field_pointers() {
    // A map pointing at a service type the Primero form does not offer: Primero answers 422.
    let env = TestEnv::start_with(|c| {
        c.maps
            .intervention_type_to_service
            .insert("BID".into(), "not_a_primero_service".into());
    })
    .await;
    let (refused, fine) = (guid(), guid());
    seed_ping(
        &env,
        vec![
            with(
                intervention(&refused, "803-26-PRTITV-0000060", "803-100000060"),
                json!({"intervention_type_description": "BID"}),
            ),
            intervention(&fine, "803-26-PRTITV-0000061", "803-100000061"),
        ],
    )
    .await;
    let report = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!(report.rejected["validation_error"], 1);
    assert_eq!(report.confirmed, 1);
    let rec = env.ledger.get(F11, &refused).await.unwrap().unwrap();
    let msg = rec.message.unwrap();
    assert!(msg.contains("service_type"), "{msg}");
    assert!(!msg.contains("Amanimarker"));
    assert!(cases_of(&env, "803-100000060").await.is_empty());
    assert!(ping_intervention(&env, &refused).await["progres_primerotransferstatus"].is_null());
}

#[tokio::test]
async fn shutdown_starts_no_record_and_the_next_run_does_them() {
    let env = TestEnv::start().await;
    let d = delivered_referrals(&env, 1, 20).await;
    decide(&env, &d[0].1, &d[0].2, "accepted", None).await;
    let lp = guid();
    seed_ping(
        &env,
        vec![intervention(&lp, "803-26-PRTITV-0000070", "803-100000070")],
    )
    .await;
    env.shutdown.send(true).unwrap();
    let r11 = env.run(Flow::ReferralsToPrimero).await;
    let r12 = env.run(Flow::DecisionsToProgres).await;
    assert!(r11.interrupted && r12.interrupted);
    assert_eq!((r11.delivered, r12.confirmed), (0, 0));
    assert!(cases_of(&env, "803-100000070").await.is_empty());
    // The cursor did not pass the decision that was not sent.
    let cursor = env.ledger.cursor(F12).await.unwrap();
    let case = &env.primero_get("/_sim/state").await["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == d[0].1.as_str())
        .cloned()
        .unwrap();
    let updated =
        chrono::DateTime::parse_from_rfc3339(case["last_updated_at"].as_str().unwrap()).unwrap();
    if let Some(c) = cursor {
        let c = chrono::DateTime::parse_from_rfc3339(&c).unwrap();
        assert!(
            c <= updated,
            "cursor {c} passed the unsent decision at {updated}"
        );
    }

    env.shutdown.send(false).unwrap();
    let r11 = env.run(Flow::ReferralsToPrimero).await;
    let r12 = env.run(Flow::DecisionsToProgres).await;
    assert_eq!((r11.confirmed, r12.confirmed), (1, 1));
    assert_eq!(
        ping_intervention(&env, &d[0].0).await["progres_primerotransferstatus"],
        json!(125080003)
    );
}

#[tokio::test]
async fn an_unreachable_list_endpoint_ends_the_run() {
    let env = TestEnv::start_with(|c| c.ping.http.retry.max_attempts = 2).await;
    env.ping_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "retrieve", "kind": "status", "status": 503}]}),
    )
    .await;
    let err = env.try_run(Flow::ReferralsToPrimero).await.unwrap_err();
    assert!(matches!(err, FlowError::Unreachable { .. }), "{err}");
    env.primero_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "cases_list", "kind": "drop"}]}),
    )
    .await;
    let err = env.try_run(Flow::DecisionsToProgres).await.unwrap_err();
    assert!(matches!(err, FlowError::Unreachable { .. }), "{err}");
    assert_eq!(env.ledger.cursor(F12).await.unwrap(), None);
}

#[tokio::test]
async fn write_back_failures_named_otherwise_or_not_at_all_are_never_taken_as_success() {
    for failed_ids in [FailedIds::Shouted, FailedIds::Missing] {
        let (wrong_bu, shouted, anonymous) = (guid(), guid(), guid());
        let env = env_behind_proxy(Mangle {
            wrong_business_unit: Some(wrong_bu.clone()),
            shouted_lp: Some(shouted.clone()),
            anonymous: Some(anonymous.clone()),
            failed_ids,
            ..Mangle::default()
        })
        .await;
        // PING applies the valid records of a batch and lists the refused ones.
        env.ping_post("/_sim/options", json!({"batch_mode": "partial"}))
            .await;
        let good = guid();
        seed_ping(
            &env,
            vec![
                intervention(&wrong_bu, "803-26-PRTITV-0000080", "803-100000080"),
                intervention(&good, "803-26-PRTITV-0000081", "803-100000081"),
                intervention(&shouted, "803-26-PRTITV-0000082", "803-100000082"),
                intervention(&anonymous, "803-26-PRTITV-0000083", "803-100000083"),
            ],
        )
        .await;
        let report = env.run(Flow::ReferralsToPrimero).await;
        // The refused write-back is found whatever the spelling of its ExternalId.
        assert_eq!(
            report.rejected.get("validation_error"),
            Some(&1),
            "{report}"
        );
        assert_eq!(
            state_of(&env, F11, &wrong_bu).await,
            Some(RecordState::Rejected)
        );
        assert!(
            ping_intervention(&env, &wrong_bu).await["progres_primerotransferstatus"].is_null()
        );
        // SHP-2358 spelling the LP id otherwise still finds its rows (R1: not failed forever).
        for lp in [&good, &shouted] {
            assert_confirmed_and_sent(&env, lp).await;
        }
        // A row without any identifier is recorded (not only counted), under a key made from
        // a keyed hash of the row, and nothing of its free-text name is used.
        let no_id = rejected_records(&env, F11)
            .await
            .into_iter()
            .filter(|r| r.reason_code.as_deref() == Some("missing_lp_intervention_id"))
            .collect::<Vec<_>>();
        assert_eq!(no_id.len(), 1);
        assert!(
            no_id[0].key.starts_with("no-lp-id:row-"),
            "{}",
            no_id[0].key
        );
        assert!(!no_id[0].key.contains("803-26-PRTITV-0000083"));
        assert!(!no_id[0]
            .message
            .as_deref()
            .unwrap()
            .contains("803-26-PRTITV-0000083"));
        // The same row next run: the same record, left alone.
        let again = env.run(Flow::ReferralsToPrimero).await;
        assert_eq!(again.rejected_total(), 0, "{again}");
    }
}

#[tokio::test]
async fn a_decision_changed_back_and_refused_or_failing_keeps_the_run_and_earlier_records() {
    let env = TestEnv::start().await;
    let d = delivered_referrals(&env, 1, 40).await;
    let (lp, case, uid) = &d[0];
    decide(&env, case, uid, "accepted", None).await;
    assert_eq!(env.run(Flow::DecisionsToProgres).await.confirmed, 1);
    decide(&env, case, uid, "rejected", Some("Moved away")).await;
    assert_eq!(env.run(Flow::DecisionsToProgres).await.confirmed, 1);
    // Back to accepted, and PING refuses the re-send.
    decide(&env, case, uid, "accepted", None).await;
    env.ping_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "data", "kind": "status", "status": 400}]}),
    )
    .await;
    let refused = env
        .try_run(Flow::DecisionsToProgres)
        .await
        .expect("a refused re-send does not end the run (R1)");
    assert_eq!(
        refused.rejected.get("validation_error"),
        Some(&1),
        "{refused}"
    );
    let first = format!("{case}:{uid}:accepted");
    let second = format!("{case}:{uid}:accepted:2");
    assert_eq!(
        state_of(&env, F12, &first).await,
        Some(RecordState::Confirmed)
    );
    assert_eq!(
        state_of(&env, F12, &second).await,
        Some(RecordState::Rejected)
    );
    assert_eq!(
        state_of(&env, F12, &format!("{case}:{uid}:rejected")).await,
        Some(RecordState::Confirmed)
    );
    assert_eq!(
        ping_intervention(&env, lp).await["progres_primerotransferstatus"],
        json!(125080004)
    );
    // The cursor moved with the outcome: the decision is not sent again by itself (R5).
    assert!(env.ledger.cursor(F12).await.unwrap().is_some());

    // The operator re-queues it; PING now fails transiently: failed, still on its own key.
    env.ledger
        .retry(
            RetryTarget::Key {
                flow: Some(F12.into()),
                key: second.clone(),
            },
            "alice",
        )
        .await
        .unwrap();
    env.ping_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "data", "kind": "status", "status": 503}]}),
    )
    .await;
    let failing = env
        .try_run(Flow::DecisionsToProgres)
        .await
        .expect("a failing re-send does not end the run (R1)");
    assert_eq!(failing.failed, 1, "{failing}");
    assert_eq!(
        state_of(&env, F12, &second).await,
        Some(RecordState::Failed)
    );
    assert_eq!(
        state_of(&env, F12, &first).await,
        Some(RecordState::Confirmed)
    );

    // PING recovers: once due, the decision goes out once.
    env.ping_delete("/_sim/faults").await;
    let recovered = env.run_later(Flow::DecisionsToProgres, LATER).await;
    assert_eq!(recovered.confirmed, 1, "{recovered}");
    assert_eq!(
        state_of(&env, F12, &second).await,
        Some(RecordState::Confirmed)
    );
    assert_eq!(
        ping_intervention(&env, lp).await["progres_primerotransferstatus"],
        json!(125080003)
    );
    env.clear_requests().await;
    let quiet = env.run_later(Flow::DecisionsToProgres, LATER).await;
    assert_eq!(quiet.confirmed + quiet.rejected_total() + quiet.failed, 0);
    assert_eq!(requests(&env, true, "data").await, 0);
}

#[tokio::test]
async fn odd_decisions_are_rejected_or_counted_and_the_run_goes_on() {
    let env = TestEnv::start().await;
    let lp = guid();
    seed_ping(
        &env,
        vec![with(
            intervention(&lp, "803-26-PRTITV-7100001", "x71"),
            json!({"delivery": null}),
        )],
    )
    .await;
    let composite = format!("803-26-PRTITV-7100001,{lp},{BU}");
    let mut long_uid = decided_row(&composite, "accepted");
    long_uid["unique_id"] = json!("u".repeat(600));
    let declined = decided_row(&composite, "declined");
    let declined_uid = declined["unique_id"].as_str().unwrap().to_owned();
    let mut bad_case = decided_case(
        &guid(),
        "2026-04-01T00:00:00.000Z",
        vec![decided_row(&composite, "rejected")],
    );
    bad_case["case_id"] = json!("case\u{7}id");
    seed_primero(
        &env,
        vec![
            decided_case(
                &guid(),
                "2026-04-01T00:00:00.000Z",
                vec![
                    long_uid,
                    declined,
                    decided_row(&composite, "Accepted"),
                    decided_row(&composite, "pending"),
                    decided_row(&composite, "accepted"),
                ],
            ),
            bad_case,
        ],
    )
    .await;
    let report = env
        .try_run(Flow::DecisionsToProgres)
        .await
        .expect("odd identifiers and statuses do not end the run (R1)");
    // Applied by the synchronous ingestion: delivered and confirmed at once.
    assert_eq!((report.delivered, report.confirmed), (1, 1), "{report}");
    assert_eq!(report.rejected.get("unknown_status"), Some(&2), "{report}");
    assert_eq!(report.rejected.get("malformed_identifier"), Some(&1));
    assert_eq!(report.excluded.get("malformed_identifier"), Some(&1));
    assert_eq!(report.excluded.get("undecided"), Some(&1));
    let line = report
        .attention
        .iter()
        .find(|l| l.key.contains(&declined_uid))
        .expect("the unknown status is reported");
    assert!(line.message.as_deref().unwrap().contains("\"declined\""));
    assert_eq!(
        ping_intervention(&env, &lp).await["progres_primerotransferstatus"],
        json!(125080003)
    );
    // Unchanged next run: nothing new; the three refused decisions are held.
    let again = env.run(Flow::DecisionsToProgres).await;
    assert_eq!(again.rejected_total() + again.confirmed, 0, "{again}");
    assert_eq!(again.held, 3, "{again}");
}

#[tokio::test]
async fn identifiers_the_ledger_would_refuse_reject_only_their_own_referrals() {
    let env = TestEnv::start().await;
    let (long_lp, bad_number, good) = ("l".repeat(600), guid(), guid());
    seed_ping(
        &env,
        vec![
            intervention(&long_lp, "803-26-PRTITV-0000091", "803-100000091"),
            intervention(&bad_number, "803-26-PRTITV-\u{7}92", "803-100000092"),
            intervention(&good, "803-26-PRTITV-0000093", "803-100000093"),
        ],
    )
    .await;
    let report = env
        .try_run(Flow::ReferralsToPrimero)
        .await
        .expect("malformed identifiers do not end the run (R1)");
    assert_eq!(
        report.rejected.get("malformed_identifier"),
        Some(&2),
        "{report}"
    );
    assert_eq!(report.confirmed, 1);
    assert_eq!(
        state_of(&env, F11, &bad_number).await,
        Some(RecordState::Rejected)
    );
    assert!(cases_of(&env, "803-100000092").await.is_empty());
    assert!(cases_of(&env, "803-100000091").await.is_empty());
    let again = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!(again.rejected_total(), 0, "{again}");
}

#[tokio::test]
async fn a_refused_batched_case_search_falls_back_to_one_search_per_individual() {
    let env = TestEnv::start().await;
    let ivs = seed_series(&env, 62, 0..3).await;
    env.primero_post(
        "/_sim/faults",
        json!({"rules": [{"endpoint": "cases_list", "kind": "status", "status": 400, "times": 1}]}),
    )
    .await;
    let report = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!(
        (report.confirmed, report.rejected_total()),
        (3, 0),
        "{report}"
    );
    for (_, ind) in &ivs {
        assert_eq!(cases_of(&env, ind).await.len(), 1);
    }
}

#[tokio::test]
async fn the_pending_list_is_read_page_by_page_and_individuals_span_pages() {
    let env = TestEnv::start().await;
    // Two rows per page: one individual's referrals are on the first and the third page, an
    // unusable LP id on the last one.
    env.ping.set_options(&json!({"page_size": 2})).unwrap();
    let lps: Vec<String> = (0..5).map(|_| guid()).collect();
    let long_lp = "l".repeat(600);
    let person = "803-100000100";
    seed_ping(
        &env,
        vec![
            intervention(&lps[0], "803-26-PRTITV-0000100", person),
            intervention(&lps[1], "803-26-PRTITV-0000101", "803-100000101"),
            intervention(&lps[2], "803-26-PRTITV-0000102", "803-100000102"),
            intervention(&lps[3], "803-26-PRTITV-0000103", "803-100000103"),
            intervention(&lps[4], "803-26-PRTITV-0000104", person),
            intervention(&long_lp, "803-26-PRTITV-0000105", "803-100000105"),
        ],
    )
    .await;
    env.clear_requests().await;
    let report = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!(report.fetched, 6, "{report}");
    assert_eq!(report.confirmed, 5, "{report}");
    assert_eq!(
        report.rejected.get("malformed_identifier"),
        Some(&1),
        "{report}"
    );
    // Three SHP-2747 pages, each with its own transaction id in the report.
    assert!(requests(&env, true, "retrieve").await >= 3);
    assert!(report.ping_transaction_ids.len() >= 3, "{report}");
    // The individual's two referrals, read on different pages, went into one case.
    let cases = cases_of(&env, person).await;
    assert_eq!(cases.len(), 1, "no twin case");
    assert_eq!(rows(&cases[0]).len(), 2);
    for lp in &lps {
        assert_eq!(state_of(&env, F11, lp).await, Some(RecordState::Confirmed));
    }
    let again = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!((again.confirmed, again.rejected_total()), (0, 0), "{again}");
}

#[tokio::test]
async fn a_case_under_the_derived_id_with_another_individual_number_is_left_alone() {
    let env = TestEnv::start().await;
    let (first, second) = (guid(), guid());
    seed_ping(
        &env,
        vec![intervention(
            &first,
            "803-26-PRTITV-00000031",
            "803-100000031",
        )],
    )
    .await;
    let report = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!(report.confirmed, 1, "{report}");
    let cases = cases_of(&env, "803-100000031").await;
    assert_eq!(cases.len(), 1);
    let id = cases[0]["id"].as_str().unwrap().to_owned();

    // Someone changes the case's individual number in Primero; a new referral of the first
    // individual comes. The ledger's case no longer matches, no case has the number, and the
    // create meets the case already under the id derived for the individual.
    let mut patch = serde_json::Map::new();
    patch.insert("unhcr_individual_no".into(), json!("803-900000099"));
    env.ctx.primero.patch_case(&id, patch).await.unwrap();
    seed_ping(
        &env,
        vec![intervention(
            &second,
            "803-26-PRTITV-00000032",
            "803-100000031",
        )],
    )
    .await;
    env.clear_requests().await;
    let again = env.run(Flow::ReferralsToPrimero).await;

    let record = env
        .ledger
        .get("referrals-to-primero", &second)
        .await
        .unwrap()
        .expect("a record for the second referral");
    assert_eq!(record.state, RecordState::Conflict, "{again}");
    assert_eq!(record.reason_code.as_deref(), Some("case_id_taken"));
    let message = record.message.unwrap_or_default();
    assert!(!message.contains("803-100000031") && !message.contains("803-900000099"));
    // Nothing was written to the other individual's case, and nothing went to proGres.
    assert_eq!(requests(&env, false, "case_patch").await, 0);
    assert_eq!(requests(&env, true, "data").await, 0);
    let state = env.primero_get("/_sim/state").await;
    let case = state["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(rows(&case).len(), 1, "no row appended");
}
