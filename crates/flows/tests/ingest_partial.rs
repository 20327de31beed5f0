//! Credentials refused part-way through a synchronous write-back (`/data`), against both
//! simulators over HTTP, PING behind a proxy that answers each `/data` request as a script
//! says: a batch refused without naming a record is split, PING applies the first half, and
//! the credentials are refused for the second. Flows 1.1 and 1.2 must end the run with the
//! auth error only after every write-back PING applied is in the ledger (confirmed, with its
//! `SPHTransactionId`); write-backs never applied stay unconfirmed, and the next run, with
//! credentials accepted, sends only those. Flow 1.2 sends batches concurrently: when one
//! meets refused credentials, no batch is started after it, and those in flight are awaited
//! and recorded.

mod support;

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pp_flows::{Flow, FlowError};
use pp_ledger::RecordState;
use serde_json::{json, Value};
use support::seed::{guid, pending_referral, ping_intervention, seed_decisions, Decided};
use support::{proxy, TestEnv};

const F11: &str = "referrals-to-primero";
const F12: &str = "decisions-to-progres";
/// `progres_primerotransferstatus` of a referral pending acknowledgement (flow 1.1).
const PENDING_ACK: i64 = 125080002;

/// How the proxy answers one `/data` request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Step {
    /// Passed on to the PING simulator.
    Forward,
    /// Held until the proxy has refused the credentials twice (a batch's request and its
    /// retry with a fresh token: the batch ends with the auth error), and [`HOLD_AFTER`]
    /// longer, then passed on to the PING simulator; after [`HOLD_AT_MOST`] it is passed on
    /// all the same (the test then fails on the order of the requests).
    Held,
    /// 400 without `FailedRecords`: refused without naming a record (the flow splits it).
    Unnamed,
    /// 401: the credentials are refused (twice, so also for the flow's fresh token).
    Unauthorized,
}

/// How long a [`Step::Held`] request is held after the second refusal of the credentials:
/// long enough for the flow to have taken the auth error in before the held answers arrive.
const HOLD_AFTER: Duration = Duration::from_millis(300);
/// How long a [`Step::Held`] request waits for the refusals at most.
const HOLD_AT_MOST: Duration = Duration::from_secs(10);

/// One `/data` request as the proxy saw it.
#[derive(Clone, Debug)]
struct DataCall {
    /// When the request reached the proxy, and when its answer was ready: ticks of one clock
    /// shared by every `/data` request.
    began: usize,
    answered: usize,
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
    /// The ticks of [`DataCall::began`] and [`DataCall::answered`].
    clock: Arc<AtomicUsize>,
    /// How many `/data` requests were answered 401 (what [`Step::Held`] waits for).
    refusals: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Script {
    fn new() -> Script {
        Script {
            inner: Arc::new(Mutex::new((VecDeque::new(), Step::Forward))),
            log: Arc::default(),
            clock: Arc::default(),
            refusals: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    fn tick(&self) -> usize {
        self.clock.fetch_add(1, Ordering::SeqCst)
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

    /// The log once it holds `n` requests (or after [`HOLD_AT_MOST`] and a little more): a
    /// held request still out when the run ended is logged once PING has answered it.
    async fn calls_when(&self, n: usize) -> Vec<DataCall> {
        let deadline = tokio::time::Instant::now() + HOLD_AT_MOST + Duration::from_secs(2);
        while self.log.lock().unwrap().len() < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.calls()
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
        let began = self.tick();
        let step = self.next();
        let answer = match step {
            Step::Forward => proxy::forward(http, target, &request).await?,
            Step::Held => {
                let mut refusals = self.refusals.subscribe();
                let refused = tokio::time::timeout(HOLD_AT_MOST, refusals.wait_for(|n| *n >= 2));
                if refused.await.is_ok() {
                    tokio::time::sleep(HOLD_AFTER).await;
                }
                proxy::forward(http, target, &request).await?
            }
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
            began,
            answered: self.tick(),
            lps: lp_ids(&request.text()),
            step,
            status: answer.status,
            tx,
        });
        if step == Step::Unauthorized {
            self.refusals.send_modify(|n| *n += 1);
        }
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
    env_at(script, 1).await
}

/// [`env_with`], with up to `concurrency` PING requests at a time.
async fn env_at(script: Script, concurrency: usize) -> TestEnv {
    let http = reqwest::Client::new();
    let tweak = |c: &mut pp_config::Config| {
        c.ping.batch_size = 4;
        c.ping.http.max_concurrency = concurrency;
    };
    proxy::ping_behind(tweak, move |target, request| {
        let (http, script) = (http.clone(), script.clone());
        async move { script.answer(&http, &target, request).await }
    })
    .await
}

/// Whether PING holds a transfer status for `lp` (a write-back was applied).
async fn applied_in_ping(env: &TestEnv, lp: &str) -> bool {
    !ping_intervention(env, lp).await["progres_primerotransferstatus"].is_null()
}

/// The LP ids of the requests PING answered 2xx, each with the transaction id answered.
fn applied_calls(calls: &[DataCall]) -> Vec<(String, String)> {
    calls
        .iter()
        .filter(|c| matches!(c.step, Step::Forward | Step::Held) && (200..300).contains(&c.status))
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

/// Asserts that the run's `/data` requests began with `expected` (step, records sent), the
/// last of them the first refused for the credentials, and that every request from that one
/// on was refused too: nothing was sent after the credentials were refused.
fn assert_steps_then_refused(calls: &[DataCall], expected: &[(Step, usize)]) {
    let steps: Vec<(Step, usize)> = calls.iter().map(|c| (c.step, c.lps.len())).collect();
    assert_eq!(steps[..expected.len()], *expected, "{calls:?}");
    assert!(
        calls[expected.len() - 1..]
            .iter()
            .all(|c| c.step == Step::Unauthorized),
        "nothing was sent after the credentials were refused: {calls:?}"
    );
}

/// Asserts that every decision of `decided` is confirmed in the ledger and applied in PING.
async fn assert_all_confirmed_and_applied(env: &TestEnv, decided: &[Decided]) {
    for d in decided {
        assert_eq!(
            env.ledger
                .get(F12, &d.key())
                .await
                .unwrap()
                .map(|r| r.state),
            Some(RecordState::Confirmed)
        );
        assert!(applied_in_ping(env, &d.lp).await);
    }
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
    assert_steps_then_refused(
        &calls,
        &[
            (Step::Forward, 4),
            (Step::Unnamed, 4),
            (Step::Forward, 2),
            (Step::Unauthorized, 2),
        ],
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

/// The proxy's log of a run in which the first two `/data` requests were held ([`Step::Held`])
/// and every later one refused with 401: checks that the two held batches were in flight
/// while a third batch was refused (its request and its retry with a fresh token), and that
/// no `/data` request began once the credentials were refused.
fn held_while_refused(calls: &[DataCall]) {
    let mut calls = calls.to_vec();
    calls.sort_by_key(|c| c.began);
    let steps: Vec<(Step, usize)> = calls.iter().map(|c| (c.step, c.lps.len())).collect();
    assert_eq!(
        steps,
        [
            (Step::Held, 4),
            (Step::Held, 4),
            (Step::Unauthorized, 4),
            (Step::Unauthorized, 4)
        ],
        "two batches held, a third refused twice, nothing else: {calls:?}"
    );
    let (held, refused, retry) = (&calls[..2], &calls[2], &calls[3]);
    assert_eq!(
        retry.lps, refused.lps,
        "the retry is the refused batch: {calls:?}"
    );
    let mut batches: Vec<&String> = calls[..3].iter().flat_map(|c| &c.lps).collect();
    batches.sort();
    batches.dedup();
    assert_eq!(batches.len(), 12, "three distinct batches: {calls:?}");
    for c in held {
        assert!(
            c.began < refused.began && c.answered > retry.answered,
            "a held batch was in flight when the credentials were refused: {calls:?}"
        );
        assert_eq!(c.status, 200, "{calls:?}");
    }
    assert!(
        calls
            .iter()
            .filter(|c| c.began > refused.answered)
            .all(|c| c.began == retry.began),
        "no /data request began after the 401, but the refused batch's retry: {calls:?}"
    );
}

#[tokio::test]
async fn flow_12_records_the_decisions_ping_applied_in_a_split_batch_before_refused_credentials() {
    let script = Script::new();
    let env = env_with(script.clone()).await;
    let decided = seed_decisions(&env, 8, None).await;

    // The first batch is refused without naming a record, so it is split: PING applies its
    // first half, then refuses the credentials; the second batch is never sent.
    script.set(&[Step::Unnamed, Step::Forward], Step::Unauthorized);
    let err = env.try_run(Flow::DecisionsToProgres).await.unwrap_err();
    assert!(matches!(err, FlowError::Auth { .. }), "{err}");

    let calls = script.calls();
    assert_steps_then_refused(
        &calls,
        &[
            (Step::Unnamed, 4),
            (Step::Forward, 2),
            (Step::Unauthorized, 2),
        ],
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
    }
    assert_all_confirmed_and_applied(&env, &decided).await;
}

/// Batches in flight when another batch meets refused credentials are awaited: PING applied
/// them, so they are confirmed in the ledger before the run ends with the auth error. (Flow
/// 1.2 sends its batches concurrently; flow 1.1 writes back one batch at a time, so it never
/// has two in flight.)
#[tokio::test]
async fn flow_12_awaits_the_batches_in_flight_when_another_batch_meets_refused_credentials() {
    let script = Script::new();
    let env = env_at(script.clone(), 3).await;
    let decided = seed_decisions(&env, 20, None).await;

    // Five batches, three at a time: the first two are held until a third has been refused
    // for the credentials (twice, so for the fresh token too), then applied.
    script.set(&[Step::Held, Step::Held], Step::Unauthorized);
    let err = env.try_run(Flow::DecisionsToProgres).await.unwrap_err();
    assert!(matches!(err, FlowError::Auth { .. }), "{err}");

    // Were a held batch dropped with the run, PING would still apply it once released: its
    // answer is waited for, so that the ledger is read after PING has applied it.
    let calls = script.calls_when(4).await;
    held_while_refused(&calls);
    let applied = applied_calls(&calls);
    assert_eq!(applied.len(), 8, "the two held batches: {calls:?}");
    for d in &decided {
        let record = env.ledger.get(F12, &d.key()).await.unwrap();
        match applied.iter().find(|(lp, _)| *lp == d.lp) {
            Some((_, tx)) => {
                assert!(applied_in_ping(&env, &d.lp).await, "{}: applied", d.lp);
                let record = record.expect("a decision in flight is in the ledger");
                assert_eq!(record.state, RecordState::Confirmed, "{}: awaited", d.lp);
                assert_eq!(record.ping_transaction_ids, vec![tx.clone()], "{}", d.lp);
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

    // Credentials accepted again: the next run sends the twelve decisions not applied, each
    // once.
    script.set(&[], Step::Forward);
    script.clear_log();
    let report = env.run(Flow::DecisionsToProgres).await;
    assert_eq!((report.confirmed, report.skipped), (12, 8), "{report}");
    let mut again = sent(&script.calls());
    again.sort();
    let mut rest: Vec<String> = decided
        .iter()
        .filter(|d| !applied.iter().any(|(lp, _)| *lp == d.lp))
        .map(|d| d.lp.clone())
        .collect();
    rest.sort();
    assert_eq!(again, rest, "the twelve not applied, each once");
    assert_all_confirmed_and_applied(&env, &decided).await;
}
