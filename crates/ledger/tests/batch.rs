//! Batched reads and writes of the ledger, run against both backends: `get_many` across
//! several statements, and `apply` of many changes at once (written a chunk of records at a
//! time) behaving exactly like applying them one by one: repeated keys, batches larger than
//! a chunk, new and existing records with identifiers and facts, a refused change in the
//! middle of a batch, and a randomized comparison with one-by-one application.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{TimeDelta, Utc};
use common::Ctx;
use pp_ledger::{
    AuditEvent, Cause, ErrorClass, Ledger, LedgerError, Record, RecordChange, RecordState,
};
use serde_json::json;

const F12: &str = "decisions-to-progres";
const F21: &str = "referrals-to-progres";

/// The ledger's bound on stored PING transaction ids per record.
const MAX_PING_IDS: usize = 100;

const HASH_A: &str = "00112233445566778899aabbccddeeff";
const HASH_B: &str = "ffeeddccbbaa99887766554433221100";

contract!(
    get_many_reads_present_keys_across_chunks,
    repeated_keys_see_each_others_results,
    batch_larger_than_a_chunk,
    new_and_existing_records_with_identifiers_and_facts,
    refused_change_mid_batch_writes_nothing,
    batch_equals_one_by_one,
);

/// What an audit event says, without its id and time.
fn trail(events: &[AuditEvent]) -> Vec<(Option<RecordState>, RecordState, Option<String>)> {
    events
        .iter()
        .map(|e| (e.from_state, e.to_state, e.reason_code.clone()))
        .collect()
}

/// Keys of the records of `flow` found by `identifier`.
async fn found(l: &Ledger, flow: &str, identifier: &str) -> Vec<String> {
    l.find(identifier)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.flow == flow)
        .map(|r| r.key)
        .collect()
}

/// Number of audit events of `flow` today, from the daily counters.
async fn events_today(l: &Ledger, flow: &str) -> i64 {
    l.daily_outcomes(flow, 2, Utc::now().date_naive())
        .await
        .unwrap()
        .iter()
        .map(|(_, _, n)| n)
        .sum()
}

async fn get_many_reads_present_keys_across_chunks(ctx: Ctx) {
    let l = ctx.ledger;
    let run = l.start_run(F12, "inst-a").await.unwrap();
    let cause = Cause::Run(run);
    // More records than one statement reads, so the keys span several chunks.
    let changes: Vec<RecordChange> = (0..1_203)
        .map(|i| {
            RecordChange::new(F12, format!("k-{i:05}"), RecordState::Delivered)
                .with_dest_id("ping_id", format!("p-{i}"))
        })
        .collect();
    l.apply(&changes, None, &cause).await.unwrap();
    // Same key in another flow: must not be returned for F12.
    l.apply(
        &[RecordChange::new(F21, "only-in-21", RecordState::Failed)],
        None,
        &cause,
    )
    .await
    .unwrap();

    let mut keys: Vec<String> = (0..1_203).rev().map(|i| format!("k-{i:05}")).collect();
    keys.push("absent-1".into());
    keys.push("only-in-21".into());
    keys.push("k-00007".into()); // a duplicate
    let got = l.get_many(F12, &keys).await.unwrap();
    assert_eq!(got.len(), 1_203, "absent keys and other flows are missing");
    assert!(!got.contains_key("absent-1"));
    assert!(!got.contains_key("only-in-21"));
    for i in [0, 499, 500, 1_000, 1_202] {
        let key = format!("k-{i:05}");
        let one = l.get(F12, &key).await.unwrap().unwrap();
        assert_eq!(got[&key], one, "get_many returns what get returns");
        assert_eq!(one.dest_ids["ping_id"], format!("p-{i}"));
    }
    assert!(l.get_many(F12, &[]).await.unwrap().is_empty());
    let other = l.get_many(F21, &keys).await.unwrap();
    assert_eq!(other.keys().collect::<Vec<_>>(), ["only-in-21"]);
    assert_eq!(other["only-in-21"].state, RecordState::Failed);
}

async fn repeated_keys_see_each_others_results(ctx: Ctx) {
    let l = ctx.ledger;
    let run = l.start_run(F12, "inst-a").await.unwrap();
    let cause = Cause::Run(run.clone());
    // An existing record, already delivered once.
    l.apply(
        &[RecordChange::new(F12, "old|1", RecordState::Delivered)
            .with_dest_id("case_id", "case-old")
            .with_attempt()],
        None,
        &cause,
    )
    .await
    .unwrap();

    let many_pings = |from: usize, n: usize| {
        let mut c = RecordChange::new(F12, "new|1", RecordState::Pending);
        for i in from..from + n {
            c = c.with_ping_transaction_id(format!("tx-{i:03}"));
        }
        c
    };
    let changes = vec![
        // Interleaved with the other key: the order per key is what counts.
        RecordChange::new(F12, "new|1", RecordState::Pending)
            .with_dest_id("case_id", "case-1")
            .with_ping_transaction_id("tx-000")
            .with_payload_hash(HASH_A)
            .with_attempt(),
        RecordChange::new(F12, "old|1", RecordState::Confirmed).with_reason("ok", "done"),
        // Same state and reason: no audit event, but attempts and ping ids still move.
        many_pings(0, 70).with_attempt(),
        RecordChange::new(F12, "old|1", RecordState::Confirmed).with_reason("ok", "again"),
        many_pings(60, 70),
        RecordChange::new(F12, "new|1", RecordState::Failed)
            .with_reason("timeout", "ping 503")
            .with_error_class(ErrorClass::Transient)
            .with_dest_id("case_id", "case-2")
            .with_dest_id("person_id", "p-1")
            .with_decision("approved")
            .with_attempt(),
        RecordChange::new(F12, "new|1", RecordState::Failed)
            .with_reason("timeout", "ping 504")
            .with_error_class(ErrorClass::Transient)
            .with_payload_hash(HASH_B),
        // Moving between reasons of one state is an audit event too.
        RecordChange::new(F12, "old|1", RecordState::Confirmed),
    ];
    l.apply(&changes, None, &cause).await.unwrap();

    let new = l.get(F12, "new|1").await.unwrap().unwrap();
    assert_eq!(new.state, RecordState::Failed);
    assert_eq!(new.attempts, 3);
    assert_eq!(new.reason_code.as_deref(), Some("timeout"));
    assert_eq!(
        new.message.as_deref(),
        Some("ping 504"),
        "the last change's message"
    );
    assert_eq!(new.error_class, Some(ErrorClass::Transient));
    assert_eq!(
        new.dest_ids,
        BTreeMap::from([
            ("case_id".to_owned(), "case-2".to_owned()),
            ("person_id".to_owned(), "p-1".to_owned())
        ])
    );
    let pings: Vec<String> = (30..130).map(|i| format!("tx-{i:03}")).collect();
    assert_eq!(new.ping_transaction_ids.len(), MAX_PING_IDS);
    assert_eq!(
        new.ping_transaction_ids, pings,
        "appended once each, oldest dropped"
    );
    assert_eq!(new.payload_hash.as_deref(), Some(HASH_B));
    assert_eq!(
        new.decision.as_deref(),
        Some("approved"),
        "kept when not given"
    );
    assert_eq!(new.last_run_id.as_deref(), Some(run.as_str()));
    assert_eq!(
        trail(&l.audit(F12, "new|1").await.unwrap()),
        [
            (None, RecordState::Pending, None),
            (
                Some(RecordState::Pending),
                RecordState::Failed,
                Some("timeout".into())
            ),
        ]
    );
    // Identifiers of every step stay findable, the replaced destination id too.
    for id in ["new|1", "case-1", "case-2", "p-1"] {
        assert_eq!(found(&l, F12, id).await, ["new|1"], "{id}");
    }
    // Neither part of `new|1` looks like an identifier (a word, a short number): the whole
    // key is indexed instead, and the parts find nothing.
    assert!(found(&l, F12, "new").await.is_empty());
    assert!(found(&l, F12, "1").await.is_empty());
    assert_eq!(found(&l, F12, "old|1").await, ["old|1"]);

    let old = l.get(F12, "old|1").await.unwrap().unwrap();
    assert_eq!(old.state, RecordState::Confirmed);
    assert_eq!(old.attempts, 1);
    assert_eq!(old.reason_code, None);
    assert_eq!(
        trail(&l.audit(F12, "old|1").await.unwrap()),
        [
            (None, RecordState::Delivered, None),
            (
                Some(RecordState::Delivered),
                RecordState::Confirmed,
                Some("ok".into())
            ),
            (Some(RecordState::Confirmed), RecordState::Confirmed, None),
        ]
    );
    let counts = l.counts_by_state().await.unwrap();
    assert_eq!(
        counts,
        BTreeMap::from([
            ((F12.to_owned(), "confirmed".to_owned()), 1),
            ((F12.to_owned(), "failed".to_owned()), 1),
        ])
    );
    assert_eq!(events_today(&l, F12).await, 5);
}

async fn batch_larger_than_a_chunk(ctx: Ctx) {
    let l = ctx.ledger;
    let run = l.start_run(F21, "inst-a").await.unwrap();
    let cause = Cause::Run(run);
    let key = |i: usize| format!("ref-{i:04}");
    // Half of them exist already.
    let existing: Vec<RecordChange> = (0..1_000)
        .step_by(2)
        .map(|i| RecordChange::new(F21, key(i), RecordState::Pending).with_attempt())
        .collect();
    l.apply(&existing, None, &cause).await.unwrap();

    // Keys given in reverse order, every tenth one twice (so repeated keys fall on both
    // sides of chunk boundaries wherever those are), the second time rejected.
    let mut changes = Vec::new();
    for i in (0..1_000).rev() {
        changes.push(
            RecordChange::new(F21, key(i), RecordState::Delivered)
                .with_dest_id("progres_id", format!("803-{i:08}"))
                .with_attempt(),
        );
    }
    for i in (0..1_000).step_by(10) {
        changes.push(
            RecordChange::new(F21, key(i), RecordState::Rejected)
                .with_reason("unknown_status", "status 9"),
        );
    }
    l.apply(&changes, Some((F21, "cursor-1")), &cause)
        .await
        .unwrap();

    let keys: Vec<String> = (0..1_000).map(key).collect();
    let all = l.get_many(F21, &keys).await.unwrap();
    assert_eq!(all.len(), 1_000);
    for (i, k) in keys.iter().enumerate() {
        let r = &all[k];
        let (state, trail_len) = match (i % 10, i % 2) {
            (0, _) => (RecordState::Rejected, if i % 2 == 0 { 3 } else { 2 }),
            (_, 0) => (RecordState::Delivered, 2),
            _ => (RecordState::Delivered, 1),
        };
        assert_eq!(r.state, state, "{k}");
        assert_eq!(r.attempts, if i % 2 == 0 { 2 } else { 1 }, "{k}");
        assert_eq!(r.dest_ids["progres_id"], format!("803-{i:08}"));
        assert_eq!(l.audit(F21, k).await.unwrap().len(), trail_len, "{k}");
    }
    // Every record's identifiers point at it, whichever statement of the write (SQLite
    // writes at most 50 rows per statement, PostgreSQL up to a limit of bound values) gave it
    // its id.
    for i in 0..1_000 {
        assert_eq!(found(&l, F21, &format!("803-{i:08}")).await, [key(i)]);
    }
    assert_eq!(l.cursor(F21).await.unwrap().as_deref(), Some("cursor-1"));
    assert_eq!(
        l.counts_by_state().await.unwrap(),
        BTreeMap::from([
            ((F21.to_owned(), "delivered".to_owned()), 900),
            ((F21.to_owned(), "rejected".to_owned()), 100),
        ])
    );
    // 500 creations before; now 500 creations, 500 moves and 100 rejections.
    assert_eq!(events_today(&l, F21).await, 1_600);
}

async fn new_and_existing_records_with_identifiers_and_facts(ctx: Ctx) {
    let l = ctx.ledger;
    let run = l.start_run(F12, "inst-a").await.unwrap();
    let cause = Cause::Run(run);
    l.apply(
        &[
            RecordChange::new(F12, "c-1|s-1|approved", RecordState::Pending)
                .with_dest_id("case_id", "803-1")
                .with_fact("intervention", "itv-1", json!({"case_id": "803-1"})),
            RecordChange::new(F12, "c-2|s-2|approved", RecordState::Failed)
                .with_reason("timeout", "ping 503")
                .with_payload_hash(HASH_A),
        ],
        None,
        &cause,
    )
    .await
    .unwrap();
    let mut fallback = RecordChange::new(F12, "c-3|s-3|rejected", RecordState::Confirmed)
        .with_dest_id("case_id", "803-3")
        .with_ping_transaction_id("tx-3")
        .with_decision("rejected")
        .with_fact("intervention", "itv-3", json!({"n": 1}))
        .with_fact("intervention", "itv-1", json!({"case_id": "803-1", "v": 2}));
    fallback.fallback_used = true;
    fallback.contact_substituted = true;
    l.apply(
        &[
            fallback,
            RecordChange::new(F12, "c-1|s-1|approved", RecordState::Confirmed)
                .with_dest_id("person_id", "p-1")
                .with_ping_transaction_id("tx-1")
                .with_attempt(),
            RecordChange::new(F12, "c-4|s-4|approved", RecordState::Delivered)
                .with_dest_id("case_id", "803-1")
                .with_fact("intervention", "itv-4", json!([1, 2])),
            // Existing, nothing but an attempt: the stored hash stays.
            RecordChange::new(F12, "c-2|s-2|approved", RecordState::Failed)
                .with_reason("timeout", "ping 503")
                .with_attempt(),
            // The later value of a fact set twice in one batch wins.
            RecordChange::new(F12, "c-5|s-5|approved", RecordState::Pending).with_fact(
                "intervention",
                "itv-3",
                json!({"n": 2}),
            ),
        ],
        None,
        &cause,
    )
    .await
    .unwrap();

    assert_eq!(
        found(&l, F12, "803-1").await,
        ["c-1|s-1|approved", "c-4|s-4|approved"]
    );
    assert_eq!(found(&l, F12, "p-1").await, ["c-1|s-1|approved"]);
    assert_eq!(found(&l, F12, "s-3").await, ["c-3|s-3|rejected"]);
    assert_eq!(
        found(&l, F12, "c-5|s-5|approved").await,
        ["c-5|s-5|approved"]
    );
    // A status word is not an identifier: it would match every decision of its kind.
    assert!(found(&l, F12, "approved").await.is_empty());
    assert_eq!(found(&l, F12, "c-2").await, ["c-2|s-2|approved"]);
    assert_eq!(
        l.fact("intervention", "itv-1").await.unwrap(),
        Some(json!({"case_id": "803-1", "v": 2}))
    );
    assert_eq!(
        l.fact("intervention", "itv-3").await.unwrap(),
        Some(json!({"n": 2}))
    );
    assert_eq!(
        l.fact("intervention", "itv-4").await.unwrap(),
        Some(json!([1, 2]))
    );

    let c1 = l.get(F12, "c-1|s-1|approved").await.unwrap().unwrap();
    assert_eq!(c1.state, RecordState::Confirmed);
    assert_eq!(c1.attempts, 1);
    assert_eq!(c1.dest_ids.len(), 2);
    assert_eq!(c1.ping_transaction_ids, ["tx-1"]);
    assert!(c1.updated_at > c1.created_at);
    let c2 = l.get(F12, "c-2|s-2|approved").await.unwrap().unwrap();
    assert_eq!((c2.attempts, c2.payload_hash.as_deref()), (1, Some(HASH_A)));
    assert_eq!(l.audit(F12, "c-2|s-2|approved").await.unwrap().len(), 1);
    let c3 = l.get(F12, "c-3|s-3|rejected").await.unwrap().unwrap();
    assert!(c3.fallback_used && c3.contact_substituted);
    assert_eq!(c3.decision.as_deref(), Some("rejected"));
    assert_eq!(c3.created_at, c3.updated_at);
    assert_eq!(
        trail(&l.audit(F12, "c-3|s-3|rejected").await.unwrap()),
        [(None, RecordState::Confirmed, None)]
    );
    assert_eq!(events_today(&l, F12).await, 6);
}

async fn refused_change_mid_batch_writes_nothing(ctx: Ctx) {
    let l = ctx.ledger;
    let run = l.start_run(F12, "inst-a").await.unwrap();
    let cause = Cause::Run(run);
    let key = |i: usize| format!("m-{i:03}");
    let seed: Vec<RecordChange> = (0..300)
        .map(|i| {
            let state = if i == 150 {
                RecordState::Confirmed
            } else {
                RecordState::Pending
            };
            RecordChange::new(F12, key(i), state).with_dest_id("case_id", format!("c-{i}"))
        })
        .collect();
    l.apply(&seed, Some((F12, "before")), &cause).await.unwrap();
    let keys: Vec<String> = (0..600).map(key).collect();
    let before = l.get_many(F12, &keys).await.unwrap();
    let counts = l.counts_by_state().await.unwrap();
    let events = events_today(&l, F12).await;

    // 600 keys (so several chunks), 300 of them new; m-150 is confirmed and may not go back
    // to pending; facts and the cursor come with the batch.
    let changes: Vec<RecordChange> = (0..600)
        .map(|i| {
            RecordChange::new(F12, key(i), RecordState::Pending)
                .with_dest_id("person_id", format!("p-{i}"))
                .with_fact("intervention", format!("itv-{i}"), json!(i))
                .with_attempt()
        })
        .collect();
    let err = l
        .apply(&changes, Some((F12, "after")), &cause)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            LedgerError::InvalidTransition { key, from: RecordState::Confirmed, to: RecordState::Pending, .. }
                if key == "m-150"
        ),
        "{err:?}"
    );

    assert_eq!(l.get_many(F12, &keys).await.unwrap(), before);
    assert_eq!(l.counts_by_state().await.unwrap(), counts);
    assert_eq!(events_today(&l, F12).await, events);
    assert_eq!(l.cursor(F12).await.unwrap().as_deref(), Some("before"));
    assert_eq!(l.audit(F12, &key(0)).await.unwrap().len(), 1);
    assert!(l.audit(F12, &key(599)).await.unwrap().is_empty());
    assert!(l.find("p-0").await.unwrap().is_empty());
    assert!(l.find("m-599").await.unwrap().is_empty());
    assert_eq!(l.fact("intervention", "itv-0").await.unwrap(), None);

    // A malformed change is refused before anything is written, wherever it sorts.
    let mut bad = changes.clone();
    bad.remove(150);
    bad.push(RecordChange::new(F12, "zz\u{7}", RecordState::Pending));
    let err = l.apply(&bad, None, &cause).await.unwrap_err();
    assert!(
        matches!(err, LedgerError::Invalid { field: "key", .. }),
        "{err:?}"
    );
    assert_eq!(l.get_many(F12, &keys).await.unwrap(), before);
    assert_eq!(l.counts_by_state().await.unwrap(), counts);
}

/// A small deterministic pseudo-random generator (xorshift64*), so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// `n` random changes of `flow` over `keys` keys, none moving a record away from
/// `confirmed` (tracked in `confirmed`), with facts of kind `fact_kind`.
fn random_changes(
    rng: &mut Rng,
    flow: &str,
    fact_kind: &str,
    keys: usize,
    n: usize,
    confirmed: &mut BTreeSet<String>,
) -> Vec<RecordChange> {
    const STATES: [RecordState; 6] = [
        RecordState::Pending,
        RecordState::Delivered,
        RecordState::Confirmed,
        RecordState::Rejected,
        RecordState::Conflict,
        RecordState::Failed,
    ];
    const REASONS: [Option<&str>; 3] = [None, Some("timeout"), Some("unknown_status")];
    (0..n)
        .map(|_| {
            let k = rng.below(keys);
            // Separators in some keys, so key parts become identifiers.
            let key = match k % 3 {
                0 => format!("r-{k:04}"),
                1 => format!("case-{k}|svc-{}|approved", k % 7),
                _ => format!("itv:{k}/{}", k % 5),
            };
            let state = if confirmed.contains(&key) {
                RecordState::Confirmed
            } else {
                STATES[rng.below(STATES.len())]
            };
            if state == RecordState::Confirmed {
                confirmed.insert(key.clone());
            }
            let mut c = RecordChange::new(flow, key, state);
            if let Some(reason) = REASONS[rng.below(REASONS.len())] {
                c = c.with_reason(reason, format!("m-{}", rng.below(3)));
            }
            if rng.chance(30) {
                c = c.with_error_class(ErrorClass::Transient);
            }
            if rng.chance(20) {
                c = c.with_next_retry_at(
                    chrono::DateTime::from_timestamp(1_800_000_000 + rng.below(1000) as i64, 0)
                        .unwrap(),
                );
            }
            if rng.chance(50) {
                c = c.with_attempt();
            }
            for _ in 0..rng.below(3) {
                let name = ["case_id", "person_id", "referral_id"][rng.below(3)];
                c = c.with_dest_id(name, format!("{name}-{}", rng.below(40)));
            }
            for _ in 0..rng.below(4) * rng.below(30) {
                c = c.with_ping_transaction_id(format!("tx-{}", rng.below(400)));
            }
            if rng.chance(30) {
                c = c.with_payload_hash([HASH_A, HASH_B][rng.below(2)]);
            }
            if rng.chance(20) {
                c = c.with_decision(["approved", "rejected"][rng.below(2)]);
            }
            c.fallback_used = rng.chance(10);
            c.contact_substituted = rng.chance(10);
            if rng.chance(20) {
                c = c.with_fact(
                    fact_kind,
                    format!("f-{}", rng.below(20)),
                    json!({"v": rng.below(1000)}),
                );
            }
            c
        })
        .collect()
}

/// A record with what differs between two flows (and two times) blanked.
fn comparable(mut r: Record) -> Record {
    r.flow = String::new();
    r.created_at = chrono::DateTime::UNIX_EPOCH;
    r.updated_at = chrono::DateTime::UNIX_EPOCH;
    r
}

async fn batch_equals_one_by_one(ctx: Ctx) {
    // The same random changes go to two flows of one ledger: all at once to `BATCH`, each
    // alone to `SINGLE` (in the order `apply` takes them). Everything each flow holds afterwards must be the same.
    const BATCH: &str = "batch-flow";
    const SINGLE: &str = "single-flow";
    const KEYS: usize = 260;
    let l = ctx.ledger;
    let run = l.start_run(BATCH, "inst-a").await.unwrap();
    let cause = Cause::Run(run);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut confirmed = BTreeSet::new();
    // Existing records first (the same ones in both flows), then the compared changes.
    let seed = random_changes(&mut rng, "x", "x", KEYS, 150, &mut confirmed);
    let changes = random_changes(&mut rng, "x", "x", KEYS, 600, &mut confirmed);
    let for_flow = |changes: &[RecordChange], flow: &str, kind: &str| -> Vec<RecordChange> {
        changes
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.flow = flow.to_owned();
                for f in &mut c.facts {
                    f.0 = kind.to_owned();
                }
                c
            })
            .collect()
    };
    for (flow, kind) in [(BATCH, "batch_fact"), (SINGLE, "single_fact")] {
        l.apply(&for_flow(&seed, flow, kind), None, &cause)
            .await
            .unwrap();
    }
    let started = Utc::now();
    l.apply(&for_flow(&changes, BATCH, "batch_fact"), None, &cause)
        .await
        .unwrap();
    // `apply` takes a batch's changes in (flow, key) order, each key's in the order given;
    // that order matters only to a fact that changes of different keys set.
    let mut alone = for_flow(&changes, SINGLE, "single_fact");
    alone.sort_by(|a, b| a.key.cmp(&b.key));
    for c in alone {
        l.apply(&[c], None, &cause).await.unwrap();
    }

    let keys: BTreeSet<String> = seed.iter().chain(&changes).map(|c| c.key.clone()).collect();
    let keys: Vec<String> = keys.into_iter().collect();
    assert!(
        keys.len() > 200,
        "more records than one chunk: {}",
        keys.len()
    );
    let batch = l.get_many(BATCH, &keys).await.unwrap();
    let single = l.get_many(SINGLE, &keys).await.unwrap();
    assert_eq!(batch.len(), keys.len());
    let mut audit_events = 0;
    for k in &keys {
        assert_eq!(
            comparable(batch[k].clone()),
            comparable(single[k].clone()),
            "record {k}"
        );
        let a = l.audit(BATCH, k).await.unwrap();
        let b = l.audit(SINGLE, k).await.unwrap();
        let strip = |events: Vec<AuditEvent>| -> Vec<_> {
            events
                .into_iter()
                .map(|e| {
                    assert!(e.at >= started - TimeDelta::minutes(1));
                    (
                        e.from_state,
                        e.to_state,
                        e.reason_code,
                        e.message,
                        e.cause,
                        e.run_id,
                    )
                })
                .collect()
        };
        let a = strip(a);
        audit_events += a.len();
        assert_eq!(a, strip(b), "audit trail of {k}");
    }
    assert!(
        audit_events > keys.len(),
        "changes that moved records were audited"
    );

    // Identifiers: every key, key part and destination id finds the same keys in both.
    let mut ids: BTreeSet<String> = keys.iter().cloned().collect();
    for r in batch.values() {
        ids.extend(r.dest_ids.values().cloned());
        ids.extend(r.key.split(['|', ':', '/']).map(str::to_owned));
    }
    for name in ["case_id", "person_id", "referral_id"] {
        ids.extend((0..40).map(|i| format!("{name}-{i}")));
    }
    for id in &ids {
        assert_eq!(
            found(&l, BATCH, id).await,
            found(&l, SINGLE, id).await,
            "identifier {id}"
        );
    }
    for i in 0..20 {
        let key = format!("f-{i}");
        assert_eq!(
            l.fact("batch_fact", &key).await.unwrap(),
            l.fact("single_fact", &key).await.unwrap(),
            "fact {key}"
        );
    }

    // Counters: the same per state, per reason group and per day.
    let counts = l.counts_by_state().await.unwrap();
    let per_state = |flow: &str| -> BTreeMap<String, i64> {
        counts
            .iter()
            .filter(|((f, _), _)| f == flow)
            .map(|((_, s), n)| (s.clone(), *n))
            .collect()
    };
    assert_eq!(per_state(BATCH), per_state(SINGLE));
    assert_eq!(per_state(BATCH).values().sum::<i64>(), keys.len() as i64);
    let attention = l.attention().await.unwrap();
    let groups = |flow: &str| -> Vec<_> {
        attention
            .iter()
            .filter(|g| g.flow == flow)
            .map(|g| (g.reason_code.clone(), g.rejected, g.conflict))
            .collect()
    };
    assert_eq!(groups(BATCH), groups(SINGLE));
    let today = Utc::now().date_naive();
    assert_eq!(
        l.daily_outcomes(BATCH, 2, today).await.unwrap(),
        l.daily_outcomes(SINGLE, 2, today).await.unwrap()
    );
}
