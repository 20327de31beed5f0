//! Credentials refused part-way through a synchronous write-back (`/data`), against both
//! simulators over HTTP, PING behind a proxy that answers each `/data` request as a script
//! says: a batch refused without naming a record is split, PING applies the first half, and
//! the credentials are refused for the second. Flows 1.1 and 1.2 must end the run with the
//! auth error only after every write-back PING applied is in the ledger (confirmed, with its
//! `SPHTransactionId`); write-backs never applied stay unconfirmed, and the next run, with
//! credentials accepted, sends only those.

mod support;

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use pp_flows::{Flow, FlowError};
use pp_ledger::RecordState;
use serde_json::{json, Value};
use support::{proxy, TestEnv};

const BU: &str = "577ccdf6-86de-e811-80d8-001dd8b71fe3";
const F11: &str = "referrals-to-primero";
const F12: &str = "decisions-to-progres";
/// `progres_primerotransferstatus` of a referral pending acknowledgement (flow 1.1).
const PENDING_ACK: i64 = 125080002;

fn guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// How the proxy answers one `/data` request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    /// Passed on to the PING simulator.
    Forward,
    /// 400 without `FailedRecords`: refused without naming a record (the flow splits it).
    Unnamed,
    /// 401: the credentials are refused (twice, so also for the flow's fresh token).
    Unauthorized,
}

/// One `/data` request as the proxy saw it.
#[derive(Clone, Debug)]
struct DataCall {
    /// `progres_lpinterventionid` of each record sent.
    lps: Vec<String>,
    step: Step,
    /// HTTP status answered.
    status: u16,
    /// `SPHTransactionId` answered, if any.
    tx: Option<String>,
}

/// The proxy's script: the next `/data` requests are answered by `steps` in order, later ones
/// by `then`; every `/data` request is logged.
#[derive(Clone)]
struct Script {
    inner: Arc<Mutex<(VecDeque<Step>, Step)>>,
    log: Arc<Mutex<Vec<DataCall>>>,
}

impl Script {
    fn new() -> Script {
        Script {
            inner: Arc::new(Mutex::new((VecDeque::new(), Step::Forward))),
            log: Arc::default(),
        }
    }

    fn set(&self, steps: &[Step], then: Step) {
        *self.inner.lock().unwrap() = (steps.iter().copied().collect(), then);
    }

    fn next(&self) -> Step {
        let mut inner = self.inner.lock().unwrap();
        let then = inner.1;
        inner.0.pop_front().unwrap_or(then)
    }

    fn calls(&self) -> Vec<DataCall> {
        self.log.lock().unwrap().clone()
    }

    fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }

    /// The proxy's answer to one PING request (only `/data` is scripted).
    async fn answer(
        &self,
        http: &reqwest::Client,
        target: &str,
        request: proxy::Request,
    ) -> Option<proxy::Answer> {
        if !request.path().ends_with("/data") {
            return proxy::forward(http, target, &request).await;
        }
        let step = self.next();
        let answer = match step {
            Step::Forward => proxy::forward(http, target, &request).await?,
            Step::Unnamed => proxy::Answer::json(
                400,
                r#"{"ErrorMessage":"the batch was refused by the test proxy"}"#,
            ),
            Step::Unauthorized => proxy::Answer::json(
                401,
                r#"{"statusCode":401,"message":"Access denied by the test proxy"}"#,
            ),
        };
        let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        let tx = body["SPHTransactionId"].as_str().map(str::to_owned);
        self.log.lock().unwrap().push(DataCall {
            lps: lp_ids(&request.text()),
            step,
            status: answer.status,
            tx,
        });
        Some(answer)
    }
}

/// The `progres_lpinterventionid` field of each record of a `/data` body.
fn lp_ids(body: &str) -> Vec<String> {
    let body: Value = serde_json::from_str(body).expect("a JSON /data body");
    body["Data"]
        .as_array()
        .expect("Data")
        .iter()
        .filter_map(|record| {
            record["Fields"]
                .as_array()?
                .iter()
                .find(|f| f["Name"] == "progres_lpinterventionid")
                .and_then(|f| f["Value"].as_str())
                .map(str::to_owned)
        })
        .collect()
}

/// A test environment whose PING API calls (not the token endpoint) pass through a proxy run
/// by `script`; write-backs in batches of 4, one PING request at a time (a fixed order).
async fn env_with(script: Script) -> TestEnv {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let mut target = String::new();
    let env = TestEnv::start_with(|c| {
        target = c.ping.base_url.as_str().trim_end_matches('/').to_owned();
        c.ping.base_url = proxy_url.parse().unwrap();
        c.ping.batch_size = 4;
        c.ping.http.max_concurrency = 1;
    })
    .await;
    let http = reqwest::Client::new();
    proxy::serve(listener, move |request: proxy::Request| {
        let (http, target, script) = (http.clone(), target.clone(), script.clone());
        async move { script.answer(&http, &target, request).await }
    });
    env
}

/// The LP intervention `lp` as the PING simulator holds it.
async fn ping_intervention(env: &TestEnv, lp: &str) -> Value {
    let state = env.ping_get("/_sim/state").await;
    state["interventions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["progres_lpinterventionid"] == lp)
        .cloned()
        .unwrap_or_else(|| panic!("intervention {lp} in the PING simulator"))
}

/// Whether PING holds a transfer status for `lp` (a write-back was applied).
async fn applied_in_ping(env: &TestEnv, lp: &str) -> bool {
    !ping_intervention(env, lp).await["progres_primerotransferstatus"].is_null()
}

/// The LP ids of the requests PING answered 2xx, each with the transaction id answered.
fn applied_calls(calls: &[DataCall]) -> Vec<(String, String)> {
    calls
        .iter()
        .filter(|c| c.step == Step::Forward && (200..300).contains(&c.status))
        .flat_map(|c| {
            let tx =
                c.tx.clone()
                    .expect("PING answers /data with a transaction id");
            c.lps.iter().map(move |lp| (lp.clone(), tx.clone()))
        })
        .collect()
}

/// Every LP id sent, once per request that carried it.
fn sent(calls: &[DataCall]) -> Vec<String> {
    calls.iter().flat_map(|c| c.lps.clone()).collect()
}

/// A pending outgoing referral (flow 1.1) in the PING simulator's seed format.
fn pending_referral(lp: &str, number: &str, individual: &str) -> Value {
    json!({
        "progres_lpinterventionid": lp,
        "progres_interventionnumber": number,
        "progres_businessunit": BU,
        "intervention_type_description": "BIA",
        "progres_interventionstartdate": "2026-11-02",
        "progres_interventiondescription": "Needs care",
        "progres_reasonforreferral": "Risk",
        "delivery": {},
        "individual": {
            "progres_id": individual,
            "progres_registrationgroupid": "0a0a0a0a-1111-2222-3333-444444444444",
            "progres_registrationgroupidname": "803-00012345",
            "progres_givenname": "Amanimarker",
            "progres_familyname": "Okello",
            "progres_dateofbirth": "2014-03-02",
            "progres_sex": 125080000
        },
        "systemuser": {"title": "Protection Officer"},
        "languages": ["Nuer"]
    })
}

#[tokio::test]
async fn flow_11_records_the_write_backs_ping_applied_before_refused_credentials_end_the_run() {
    let script = Script::new();
    let env = env_with(script.clone()).await;
    let lps: Vec<String> = (0..12).map(|_| guid()).collect();
    let ivs: Vec<Value> = lps
        .iter()
        .enumerate()
        .map(|(i, lp)| {
            pending_referral(
                lp,
                &format!("803-26-PRTITV-40{i:05}"),
                &format!("803-4000{i:05}"),
            )
        })
        .collect();
    env.ping_post("/_sim/seed", json!({ "interventions": ivs }))
        .await;

    // Write-back batch 1 is applied; batch 2 is refused without naming a record, so it is
    // split: PING applies its first half and then refuses the credentials.
    script.set(
        &[Step::Forward, Step::Unnamed, Step::Forward],
        Step::Unauthorized,
    );
    let err = env.try_run(Flow::ReferralsToPrimero).await.unwrap_err();
    assert!(matches!(err, FlowError::Auth { .. }), "{err}");

    let calls = script.calls();
    let steps: Vec<(Step, usize)> = calls.iter().map(|c| (c.step, c.lps.len())).collect();
    assert_eq!(
        steps[..4],
        [
            (Step::Forward, 4),
            (Step::Unnamed, 4),
            (Step::Forward, 2),
            (Step::Unauthorized, 2)
        ],
        "{calls:?}"
    );
    assert!(
        calls[3..].iter().all(|c| c.step == Step::Unauthorized),
        "nothing was sent after the credentials were refused: {calls:?}"
    );
    let applied = applied_calls(&calls);
    assert_eq!(applied.len(), 6, "batch 1 and the first half of batch 2");
    for lp in &lps {
        let record = env.ledger.get(F11, lp).await.unwrap();
        match applied.iter().find(|(a, _)| a == lp) {
            Some((_, tx)) => {
                assert_eq!(
                    ping_intervention(&env, lp).await["progres_primerotransferstatus"],
                    json!(PENDING_ACK)
                );
                let record = record.expect("an applied write-back is in the ledger");
                assert_eq!(
                    record.state,
                    RecordState::Confirmed,
                    "{lp}: applied by PING"
                );
                assert_eq!(record.ping_transaction_ids, vec![tx.clone()], "{lp}");
            }
            None => {
                assert!(!applied_in_ping(&env, lp).await, "{lp}: not applied");
                let state = record.map(|r| r.state);
                assert_ne!(state, Some(RecordState::Confirmed), "{lp}: never applied");
            }
        }
    }

    // Credentials accepted again: the next run writes back only what PING did not apply, each
    // once.
    script.set(&[], Step::Forward);
    script.clear_log();
    let report = env.run(Flow::ReferralsToPrimero).await;
    assert_eq!(report.confirmed, 6, "{report}");
    let again = sent(&script.calls());
    let done: BTreeSet<&String> = applied.iter().map(|(lp, _)| lp).collect();
    let rest: BTreeSet<&String> = lps.iter().filter(|lp| !done.contains(lp)).collect();
    assert_eq!(again.len(), 6, "{again:?}");
    assert_eq!(again.iter().collect::<BTreeSet<_>>(), rest);
    for lp in &lps {
        assert_eq!(
            env.ledger.get(F11, lp).await.unwrap().map(|r| r.state),
            Some(RecordState::Confirmed)
        );
        assert_eq!(
            ping_intervention(&env, lp).await["progres_primerotransferstatus"],
            json!(PENDING_ACK)
        );
    }
}

/// An LP intervention proGres knows (not a pending referral), for flow 1.2's write-backs.
fn intervention(lp: &str, number: &str) -> Value {
    json!({
        "progres_lpinterventionid": lp,
        "progres_interventionnumber": number,
        "progres_businessunit": BU,
        "intervention_type_description": "BIA",
        "progres_interventionstartdate": "2026-11-02",
        "progres_interventiondescription": "Needs care",
        "progres_reasonforreferral": "Risk",
        "individual": {
            "progres_id": format!("ind-{number}"),
            "progres_registrationgroupid": "0a0a0a0a-1111-2222-3333-444444444444",
            "progres_registrationgroupidname": "803-00012345",
            "progres_givenname": "Amanimarker",
            "progres_familyname": "Okello",
            "progres_dateofbirth": "2014-03-02",
            "progres_sex": 125080000
        },
        "systemuser": {"title": "Protection Officer"},
        "languages": ["Nuer"]
    })
}

/// One accepted referral: the LP intervention in PING, its case in Primero.
struct Decided {
    lp: String,
    case_uuid: String,
    unique_id: String,
}

impl Decided {
    /// The ledger key of the decision (first instance).
    fn key(&self) -> String {
        format!("{}:{}:accepted", self.case_uuid, self.unique_id)
    }
}

/// Seeds `n` referrals the caseworkers accepted, case `i` last updated at second `i`.
async fn seed_decisions(env: &TestEnv, n: usize) -> Vec<Decided> {
    let (mut ivs, mut cases, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let d = Decided {
            lp: guid(),
            case_uuid: guid(),
            unique_id: guid(),
        };
        let number = format!("803-26-PRTITV-50{i:05}");
        ivs.push(intervention(&d.lp, &number));
        let at = format!("2026-03-01T10:00:{i:02}.000Z");
        cases.push(json!({
            "id": d.case_uuid,
            "case_id": format!("case-{i:03}"),
            "unhcr_individual_no": format!("ind-{number}"),
            "module_id": "primeromodule-cp",
            "owned_by": format!("cw_{i}"),
            "name_first": "Nyakimmarker",
            "created_at": at,
            "last_updated_at": at,
            "services_section": [{
                "unique_id": d.unique_id,
                "service_type": "food",
                "service_request_agency": "UNHCR",
                "service_referral": "external_referral",
                "unhcr_referral_status": "accepted",
                "progres_interventionnumber": format!("{number},{},{BU}", d.lp),
            }]
        }));
        out.push(d);
    }
    env.ping_post("/_sim/seed", json!({ "interventions": ivs }))
        .await;
    env.primero_post("/_sim/seed", json!({ "cases": cases }))
        .await;
    out
}

#[tokio::test]
async fn flow_12_records_the_decisions_ping_applied_in_a_split_batch_before_refused_credentials() {
    let script = Script::new();
    let env = env_with(script.clone()).await;
    let decided = seed_decisions(&env, 8).await;

    // The first batch is refused without naming a record, so it is split: PING applies its
    // first half, then refuses the credentials; the second batch is never sent.
    script.set(&[Step::Unnamed, Step::Forward], Step::Unauthorized);
    let err = env.try_run(Flow::DecisionsToProgres).await.unwrap_err();
    assert!(matches!(err, FlowError::Auth { .. }), "{err}");

    let calls = script.calls();
    let steps: Vec<(Step, usize)> = calls.iter().map(|c| (c.step, c.lps.len())).collect();
    assert_eq!(
        steps[..3],
        [
            (Step::Unnamed, 4),
            (Step::Forward, 2),
            (Step::Unauthorized, 2)
        ],
        "{calls:?}"
    );
    assert!(
        calls[2..].iter().all(|c| c.step == Step::Unauthorized),
        "nothing was sent after the credentials were refused: {calls:?}"
    );
    let applied = applied_calls(&calls);
    assert_eq!(applied.len(), 2, "the first half of the first batch");
    for d in &decided {
        let record = env.ledger.get(F12, &d.key()).await.unwrap();
        match applied.iter().find(|(lp, _)| *lp == d.lp) {
            Some((_, tx)) => {
                assert!(applied_in_ping(&env, &d.lp).await);
                let record = record.expect("an applied decision is in the ledger");
                assert_eq!(record.state, RecordState::Confirmed, "{}: applied", d.lp);
                assert_eq!(record.ping_transaction_ids, vec![tx.clone()]);
            }
            None => {
                assert!(!applied_in_ping(&env, &d.lp).await, "{}: not applied", d.lp);
                assert_eq!(record.map(|r| r.state), None, "{}: never applied", d.lp);
            }
        }
    }
    assert_eq!(
        env.ledger.cursor(F12).await.unwrap(),
        None,
        "the cursor stays"
    );

    // Credentials accepted again: the next run sends only the six decisions not applied.
    script.set(&[], Step::Forward);
    script.clear_log();
    let report = env.run(Flow::DecisionsToProgres).await;
    assert_eq!((report.confirmed, report.skipped), (6, 2), "{report}");
    let again = sent(&script.calls());
    assert_eq!(again.len(), 6, "{again:?}");
    for d in &decided {
        let was_applied = applied.iter().any(|(lp, _)| *lp == d.lp);
        assert_eq!(again.contains(&d.lp), !was_applied, "{}", d.lp);
        assert_eq!(
            env.ledger
                .get(F12, &d.key())
                .await
                .unwrap()
                .map(|r| r.state),
            Some(RecordState::Confirmed)
        );
        assert!(applied_in_ping(&env, &d.lp).await);
    }
}
