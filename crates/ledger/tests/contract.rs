//! Contract suite of the ledger, run against both backends: every test below is an
//! `async fn(Ctx)` that the `contract!` macro calls once on SQLite and once on PostgreSQL.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::Ctx;
use pp_ledger::{
    Cause, ErrorClass, LedgerError, RecordChange, RecordFilter, RecordState, RetryTarget,
    RunFilter, RunOutcome, OPERATOR_RETRY,
};
use serde_json::json;

const F11: &str = "referrals-to-primero";
const F12: &str = "decisions-to-progres";
const F21: &str = "referrals-to-progres";
const F22: &str = "decisions-to-primero";

const HASH: &str = "00112233445566778899aabbccddeeff";

contract!(
    transitions_and_audit_trail,
    concurrent_upserts_of_one_key_make_one_record,
    cursor_moves_only_with_its_records,
    due_for_retry_returns_failed_and_orphaned_pending,
    operator_retry_requeues_with_audit,
    find_by_any_identifier,
    facts_are_unique_per_kind_and_key,
    purge_removes_only_old_history,
    racing_acquirers_one_wins_and_tokens_increase,
    runs_and_dashboard_aggregates,
    list_records_filters,
);

async fn transitions_and_audit_trail(ctx: Ctx) {
    let l = ctx.ledger;
    let run = l.start_run(F11, "inst-a").await.unwrap();
    let cause = Cause::Run(run.clone());
    let key = "6f1c2a4e-0000-4000-8000-000000000001";

    l.apply(
        &[RecordChange::new(F11, key, RecordState::Pending).with_payload_hash(HASH)],
        None,
        &cause,
    )
    .await
    .unwrap();
    // Same state and reason again: no new audit event.
    l.apply(
        &[RecordChange::new(F11, key, RecordState::Pending)],
        None,
        &cause,
    )
    .await
    .unwrap();
    let mut delivered = RecordChange::new(F11, key, RecordState::Delivered)
        .with_dest_id("case_uuid", "c0ffee00-0000-4000-8000-000000000001")
        .with_ping_transaction_id("SPH-1")
        .with_attempt();
    delivered.fallback_used = true;
    l.apply(&[delivered], None, &cause).await.unwrap();
    let failed = RecordChange::new(F11, key, RecordState::Failed)
        .with_reason("write_back_timeout", "SHP-2748 timed out")
        .with_error_class(ErrorClass::Transient)
        .with_next_retry_at(Utc::now() + TimeDelta::minutes(5))
        .with_dest_id("case_id", "CP-0001")
        .with_ping_transaction_id("SPH-1")
        .with_ping_transaction_id("SPH-2")
        .with_attempt();
    l.apply(&[failed], None, &cause).await.unwrap();

    let r = l.get(F11, key).await.unwrap().expect("record stored");
    assert_eq!(r.state, RecordState::Failed);
    assert_eq!(r.attempts, 2);
    assert_eq!(r.error_class, Some(ErrorClass::Transient));
    assert_eq!(r.reason_code.as_deref(), Some("write_back_timeout"));
    assert!(r.next_retry_at.is_some());
    assert_eq!(
        r.dest_ids.len(),
        2,
        "destination ids are merged: {:?}",
        r.dest_ids
    );
    assert_eq!(r.dest_ids["case_id"], "CP-0001");
    assert_eq!(r.ping_transaction_ids, vec!["SPH-1", "SPH-2"]);
    assert_eq!(
        r.payload_hash.as_deref(),
        Some(HASH),
        "hash kept when not given"
    );
    assert!(r.fallback_used, "fallback flag is sticky");
    assert_eq!(r.last_run_id.as_deref(), Some(run.as_str()));

    let long = "x".repeat(5000);
    l.apply(
        &[RecordChange::new(F11, key, RecordState::Confirmed).with_reason("written_back", long)],
        None,
        &cause,
    )
    .await
    .unwrap();
    let r = l.get(F11, key).await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Confirmed);
    assert_eq!(r.next_retry_at, None, "retry time cleared");
    assert_eq!(
        r.message.as_ref().unwrap().chars().count(),
        pp_ledger::MAX_MESSAGE
    );

    // Confirmed is terminal: a later change is refused and nothing moves.
    let err = l
        .apply(
            &[RecordChange::new(F11, key, RecordState::Pending)],
            None,
            &cause,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::InvalidTransition { .. }),
        "{err}"
    );
    assert_eq!(
        l.get(F11, key).await.unwrap().unwrap().state,
        RecordState::Confirmed
    );

    let trail = l.audit(F11, key).await.unwrap();
    let steps: Vec<_> = trail.iter().map(|e| (e.from_state, e.to_state)).collect();
    use RecordState::*;
    assert_eq!(
        steps,
        vec![
            (None, Pending),
            (Some(Pending), Delivered),
            (Some(Delivered), Failed),
            (Some(Failed), Confirmed),
        ]
    );
    assert!(trail.iter().all(|e| e.cause == format!("run:{run}")));
    assert!(trail
        .iter()
        .all(|e| e.run_id.as_deref() == Some(run.as_str())));
    assert_eq!(trail[2].reason_code.as_deref(), Some("write_back_timeout"));
    assert!(trail
        .windows(2)
        .all(|w| w[0].id < w[1].id && w[0].at <= w[1].at));

    // Malformed input is refused before anything is written.
    let bad = RecordChange::new(F11, "other", RecordState::Pending).with_payload_hash("not hex");
    assert!(matches!(
        l.apply(&[bad], None, &cause).await,
        Err(LedgerError::Invalid {
            field: "payload_hash",
            ..
        })
    ));
    let bad = RecordChange::new(F11, "", RecordState::Pending);
    assert!(l.apply(&[bad], None, &cause).await.is_err());
    assert_eq!(l.get(F11, "other").await.unwrap(), None);
}

async fn concurrent_upserts_of_one_key_make_one_record(ctx: Ctx) {
    let l = ctx.ledger;
    let run = l.start_run(F21, "inst-a").await.unwrap();
    let key = "svc-unique-1";
    let mut tasks = Vec::new();
    for i in 0..8 {
        let l = l.clone();
        let cause = Cause::Run(run.clone());
        tasks.push(tokio::spawn(async move {
            let change = RecordChange::new(F21, key, RecordState::Pending)
                .with_ping_transaction_id(format!("SPH-{i}"))
                .with_attempt();
            l.apply(&[change], None, &cause).await
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("every concurrent apply succeeds");
    }
    let all = l
        .list_records(&RecordFilter {
            flow: Some(F21.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "one record per (flow, key)");
    let r = &all[0];
    assert_eq!(r.attempts, 8, "no update was lost");
    assert_eq!(r.ping_transaction_ids.len(), 8, "no update was lost");
    let created = l
        .audit(F21, key)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.from_state.is_none())
        .count();
    assert_eq!(created, 1, "exactly one creation event");
    let counts = l.counts_by_state().await.unwrap();
    assert_eq!(
        counts.get(&(F21.to_owned(), "pending".to_owned())),
        Some(&1)
    );
}

async fn cursor_moves_only_with_its_records(ctx: Ctx) {
    let l = ctx.ledger;
    let run = l.start_run(F12, "inst-a").await.unwrap();
    let cause = Cause::Run(run);
    assert_eq!(l.cursor(F12).await.unwrap(), None);
    l.apply(
        &[
            RecordChange::new(F12, "case-1|svc-1|accepted", RecordState::Pending),
            RecordChange::new(F12, "case-2|svc-2|rejected", RecordState::Confirmed),
        ],
        Some((F12, "2026-11-30T00:00:00Z")),
        &cause,
    )
    .await
    .unwrap();
    assert_eq!(
        l.cursor(F12).await.unwrap().as_deref(),
        Some("2026-11-30T00:00:00Z")
    );

    // Changes are applied in (flow, key) order: `case-0` is written inside the transaction,
    // then `case-2` is refused (confirmed is terminal): `case-0`, its fact and the cursor
    // are all rolled back.
    let err = l
        .apply(
            &[
                RecordChange::new(F12, "case-0|svc-0|accepted", RecordState::Pending).with_fact(
                    "individual_case",
                    "IND-0",
                    json!({"case_uuid": "u-3"}),
                ),
                RecordChange::new(F12, "case-2|svc-2|rejected", RecordState::Pending),
            ],
            Some((F12, "2026-11-30T06:00:00Z")),
            &cause,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, LedgerError::InvalidTransition { .. }),
        "{err}"
    );
    assert_eq!(
        l.cursor(F12).await.unwrap().as_deref(),
        Some("2026-11-30T00:00:00Z"),
        "cursor unchanged"
    );
    assert_eq!(l.get(F12, "case-0|svc-0|accepted").await.unwrap(), None);
    assert!(l
        .audit(F12, "case-0|svc-0|accepted")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(l.fact("individual_case", "IND-0").await.unwrap(), None);

    // A change refused for malformed input after an earlier one was written: same.
    let err = l
        .apply(
            &[
                RecordChange::new(F12, "case-4|svc-4|accepted", RecordState::Pending),
                RecordChange::new(F12, "case-5|svc-5|accepted", RecordState::Pending)
                    .with_payload_hash("zz"),
            ],
            Some((F12, "2026-11-30T07:00:00Z")),
            &cause,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::Invalid { .. }), "{err}");
    assert_eq!(l.get(F12, "case-4|svc-4|accepted").await.unwrap(), None);
    assert_eq!(
        l.cursor(F12).await.unwrap().as_deref(),
        Some("2026-11-30T00:00:00Z")
    );

    // Cursor alone, and cursors are per flow.
    l.apply(&[], Some((F22, "c22")), &cause).await.unwrap();
    assert_eq!(l.cursor(F22).await.unwrap().as_deref(), Some("c22"));
    assert_eq!(l.cursors().await.unwrap().len(), 2);
}

async fn due_for_retry_returns_failed_and_orphaned_pending(ctx: Ctx) {
    let l = ctx.ledger;
    let now = Utc::now();
    let crashed = l.start_run(F22, "inst-a").await.unwrap();
    let by_crashed = Cause::Run(crashed.clone());
    l.apply(
        &[
            RecordChange::new(F22, "orphan", RecordState::Pending),
            RecordChange::new(F22, "due", RecordState::Failed)
                .with_reason("case_not_found", "case CP-9 not found")
                .with_next_retry_at(now - TimeDelta::minutes(1)),
            RecordChange::new(F22, "later", RecordState::Failed)
                .with_next_retry_at(now + TimeDelta::hours(1)),
            RecordChange::new(F22, "rejected", RecordState::Rejected)
                .with_reason("unknown_status", "status 125080009"),
            RecordChange::new(F22, "done", RecordState::Delivered),
        ],
        None,
        &by_crashed,
    )
    .await
    .unwrap();
    // Another flow's failures are not this flow's.
    l.apply(
        &[RecordChange::new(F11, "other-flow", RecordState::Failed)],
        None,
        &by_crashed,
    )
    .await
    .unwrap();

    // While the run that wrote `orphan` is still running, it owns it.
    let keys = |v: Vec<pp_ledger::Record>| v.into_iter().map(|r| r.key).collect::<Vec<_>>();
    assert_eq!(keys(l.due_for_retry(F22, now, 100).await.unwrap()), ["due"]);

    // The holder crashed; the next run supersedes it and finds the orphan.
    let next = l.start_run(F22, "inst-b").await.unwrap();
    let old = l.get_run(crashed.as_str()).await.unwrap().unwrap();
    assert_eq!(old.outcome, RunOutcome::Abandoned);
    assert!(old.finished_at.is_some());
    let mut due = keys(l.due_for_retry(F22, now, 100).await.unwrap());
    due.sort();
    assert_eq!(due, ["due", "orphan"]);
    assert_eq!(
        l.due_for_retry(F22, now, 1).await.unwrap().len(),
        1,
        "limit"
    );
    let mut later = keys(
        l.due_for_retry(F22, now + TimeDelta::hours(2), 100)
            .await
            .unwrap(),
    );
    later.sort();
    assert_eq!(later, ["due", "later", "orphan"]);

    // Pending written by the current run is not due.
    l.apply(
        &[RecordChange::new(F22, "orphan", RecordState::Pending)],
        None,
        &Cause::Run(next),
    )
    .await
    .unwrap();
    assert_eq!(keys(l.due_for_retry(F22, now, 100).await.unwrap()), ["due"]);
}

async fn operator_retry_requeues_with_audit(ctx: Ctx) {
    let l = ctx.ledger;
    let run = l.start_run(F11, "inst-a").await.unwrap();
    let cause = Cause::Run(run.clone());
    let rejected = RecordChange::new(F11, "lp-1", RecordState::Rejected)
        .with_reason("unmapped_value", "service_type: no entry")
        .with_error_class(ErrorClass::Validation)
        .with_attempt();
    l.apply(
        &[
            rejected.clone(),
            rejected.clone(),
            RecordChange::new(F11, "lp-2", RecordState::Conflict)
                .with_reason("ambiguous_case", "candidates CP-1, CP-2"),
            RecordChange::new(F11, "lp-3", RecordState::Confirmed),
            RecordChange::new(F12, "lp-2", RecordState::Rejected)
                .with_reason("legacy_intervention_number", "IN-7"),
        ],
        None,
        &cause,
    )
    .await
    .unwrap();
    l.finish_run(&run, RunOutcome::Completed, &BTreeMap::new(), None)
        .await
        .unwrap();
    assert_eq!(l.get(F11, "lp-1").await.unwrap().unwrap().attempts, 2);

    let n = l
        .retry(
            RetryTarget::Key {
                flow: Some(F11.into()),
                key: "lp-1".into(),
            },
            "alice",
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let r = l.get(F11, "lp-1").await.unwrap().unwrap();
    assert_eq!(r.state, RecordState::Pending);
    assert_eq!(r.attempts, 0);
    assert_eq!(r.reason_code.as_deref(), Some(OPERATOR_RETRY));
    assert_eq!(r.error_class, None);
    assert!(r.operator_retry);
    assert!(r.next_retry_at.unwrap() <= Utc::now());
    let last = l.audit(F11, "lp-1").await.unwrap().pop().unwrap();
    assert_eq!(last.from_state, Some(RecordState::Rejected));
    assert_eq!(last.to_state, RecordState::Pending);
    assert_eq!(last.cause, "operator:alice");
    assert_eq!(last.run_id, None);

    let requeued = l.pending_operator_retries(F11).await.unwrap();
    assert_eq!(requeued.len(), 1);
    assert_eq!(requeued[0].key, "lp-1");
    let due = l.due_for_retry(F11, Utc::now(), 10).await.unwrap();
    assert_eq!(due.len(), 1, "the flow's next run picks it up");

    // Confirmed records are never re-queued; an unscoped key hits every flow that has it.
    let confirmed = RetryTarget::Key {
        flow: None,
        key: "lp-3".into(),
    };
    assert_eq!(l.retry(confirmed, "alice").await.unwrap(), 0);
    let both = RetryTarget::Key {
        flow: None,
        key: "lp-2".into(),
    };
    assert_eq!(l.retry(both, "bob").await.unwrap(), 2);
    assert_eq!(l.pending_operator_retries(F12).await.unwrap().len(), 1);

    // Filter form; states outside rejected/conflict/failed are refused.
    l.apply(
        &[
            RecordChange::new(F21, "s-1", RecordState::Rejected).with_reason("r1", "m"),
            RecordChange::new(F21, "s-2", RecordState::Rejected).with_reason("r2", "m"),
            RecordChange::new(F21, "s-3", RecordState::Failed).with_reason("r1", "m"),
        ],
        None,
        &Cause::Run(l.start_run(F21, "inst-a").await.unwrap()),
    )
    .await
    .unwrap();
    let filter = RetryTarget::Filter {
        flow: Some(F21.into()),
        state: Some(RecordState::Rejected),
        reason: Some("r1".into()),
    };
    assert_eq!(l.retry(filter, "alice").await.unwrap(), 1);
    assert_eq!(
        l.get(F21, "s-2").await.unwrap().unwrap().state,
        RecordState::Rejected
    );
    assert_eq!(
        l.get(F21, "s-3").await.unwrap().unwrap().state,
        RecordState::Failed
    );
    let refused = RetryTarget::Filter {
        flow: None,
        state: Some(RecordState::Delivered),
        reason: None,
    };
    assert!(matches!(
        l.retry(refused, "alice").await,
        Err(LedgerError::Invalid { field: "state", .. })
    ));

    // Once the flow processes the record, the operator mark is gone.
    let run2 = l.start_run(F11, "inst-a").await.unwrap();
    l.apply(
        &[RecordChange::new(F11, "lp-1", RecordState::Delivered)],
        None,
        &Cause::Run(run2),
    )
    .await
    .unwrap();
    assert!(l
        .pending_operator_retries(F11)
        .await
        .unwrap()
        .iter()
        .all(|r| r.key != "lp-1"));
    assert!(!l.get(F11, "lp-1").await.unwrap().unwrap().operator_retry);
}

async fn find_by_any_identifier(ctx: Ctx) {
    let l = ctx.ledger;
    let cause = Cause::Run(l.start_run(F12, "inst-a").await.unwrap());
    let key = "a1b2c3d4-0000-4000-8000-00000000cafe|9f8e7d6c-unique|accepted";
    l.apply(
        &[
            RecordChange::new(F12, key, RecordState::Delivered)
                .with_dest_id("case_id", "CP-12345")
                .with_dest_id("lp_intervention_id", "0e0e0e0e-1111-4222-8333-444444444444")
                .with_decision("accepted"),
            RecordChange::new(F21, "9f8e7d6c-unique", RecordState::Confirmed).with_dest_id(
                "interop_referral_id",
                "77777777-1111-4222-8333-444444444444",
            ),
        ],
        None,
        &cause,
    )
    .await
    .unwrap();
    let flows = |v: Vec<pp_ledger::Record>| v.into_iter().map(|r| r.flow).collect::<Vec<_>>();
    assert_eq!(flows(l.find("CP-12345").await.unwrap()), [F12]);
    assert_eq!(flows(l.find(key).await.unwrap()), [F12]);
    assert_eq!(
        flows(
            l.find("0e0e0e0e-1111-4222-8333-444444444444")
                .await
                .unwrap()
        ),
        [F12]
    );
    assert_eq!(
        flows(
            l.find("77777777-1111-4222-8333-444444444444")
                .await
                .unwrap()
        ),
        [F21]
    );
    // A part of a composite key finds it, and the record of another flow keyed by it.
    assert_eq!(flows(l.find("9f8e7d6c-unique").await.unwrap()), [F12, F21]);
    assert!(l.find("CP-99999").await.unwrap().is_empty());
    // Status words and instance counters are not identifiers (they would match every
    // decision of their kind); the whole key still finds its record, as does a composite key
    // none of whose parts looks like an identifier.
    let again = "a1b2c3d4-0000-4000-8000-00000000cafe|9f8e7d6c-unique|accepted|2";
    l.apply(
        &[
            RecordChange::new(F12, again, RecordState::Delivered),
            RecordChange::new(F22, "alpha:beta", RecordState::Delivered),
        ],
        None,
        &cause,
    )
    .await
    .unwrap();
    assert!(l.find("accepted").await.unwrap().is_empty());
    assert!(l.find("2").await.unwrap().is_empty());
    let keys = |v: Vec<pp_ledger::Record>| v.into_iter().map(|r| r.key).collect::<Vec<_>>();
    assert_eq!(keys(l.find(again).await.unwrap()), [again]);
    assert_eq!(keys(l.find(key).await.unwrap()), [key]);
    assert_eq!(
        keys(
            l.find("a1b2c3d4-0000-4000-8000-00000000cafe")
                .await
                .unwrap()
        ),
        [key, again]
    );
    assert_eq!(keys(l.find("alpha:beta").await.unwrap()), ["alpha:beta"]);
    assert!(l.find("alpha").await.unwrap().is_empty());
    assert!(l.find("alpha:gamma").await.unwrap().is_empty());
    let r = l.get(F12, key).await.unwrap().unwrap();
    assert_eq!(r.decision.as_deref(), Some("accepted"));

    // An id learned later is findable too.
    l.apply(
        &[RecordChange::new(F12, key, RecordState::Confirmed).with_ping_transaction_id("SPH-42")],
        None,
        &cause,
    )
    .await
    .unwrap();
    l.apply(
        &[
            RecordChange::new(F21, "9f8e7d6c-unique", RecordState::Confirmed)
                .with_dest_id("case_uuid", "fedcba98-1111-4222-8333-444444444444"),
        ],
        None,
        &cause,
    )
    .await
    .unwrap();
    assert_eq!(
        flows(
            l.find("fedcba98-1111-4222-8333-444444444444")
                .await
                .unwrap()
        ),
        [F21]
    );
}

async fn facts_are_unique_per_kind_and_key(ctx: Ctx) {
    let l = ctx.ledger;
    assert_eq!(l.fact("intervention", "IN-1").await.unwrap(), None);
    let v1 = json!({"lp_intervention_id": "0e0e0e0e-1111-4222-8333-444444444444", "business_unit": "bu-1"});
    l.put_fact("intervention", "IN-1", &v1).await.unwrap();
    assert_eq!(l.fact("intervention", "IN-1").await.unwrap(), Some(v1));
    let v2 = json!({"lp_intervention_id": "0e0e0e0e-1111-4222-8333-555555555555", "business_unit": "bu-2"});
    l.put_fact("intervention", "IN-1", &v2).await.unwrap();
    assert_eq!(
        l.fact("intervention", "IN-1").await.unwrap(),
        Some(v2.clone())
    );
    // Same key, other kind: a different fact.
    assert_eq!(l.fact("individual_case", "IN-1").await.unwrap(), None);

    // Facts given with a change are written in the same transaction.
    let cause = Cause::Run(l.start_run(F11, "inst-a").await.unwrap());
    l.apply(
        &[RecordChange::new(F11, "lp-9", RecordState::Delivered)
            .with_fact("individual_case", "IND-9", json!({"case_uuid": "u-9"}))
            .with_fact("intervention", "IN-1", v2.clone())],
        None,
        &cause,
    )
    .await
    .unwrap();
    assert_eq!(
        l.fact("individual_case", "IND-9").await.unwrap(),
        Some(json!({"case_uuid": "u-9"}))
    );
    // Concurrent writers of one fact end with one row holding one of the values.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            l.put_fact(
                "individual_case",
                "IND-10",
                &json!({ "case_uuid": format!("u-{i}") }),
            )
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let v = l.fact("individual_case", "IND-10").await.unwrap().unwrap();
    assert!(v["case_uuid"].as_str().unwrap().starts_with("u-"));
    assert!(matches!(
        l.put_fact("bad kind", "k", &json!(1)).await,
        Err(LedgerError::Invalid { .. })
    ));
}

async fn purge_removes_only_old_history(ctx: Ctx) {
    let l = ctx.ledger;
    let old_run = l.start_run(F11, "inst-a").await.unwrap();
    l.apply(
        &[RecordChange::new(F11, "lp-old", RecordState::Pending)],
        Some((F11, "cursor-1")),
        &Cause::Run(old_run.clone()),
    )
    .await
    .unwrap();
    l.put_fact("intervention", "IN-1", &json!({"business_unit": "bu"}))
        .await
        .unwrap();
    l.finish_run(&old_run, RunOutcome::Completed, &BTreeMap::new(), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cut = Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let new_run = l.start_run(F11, "inst-a").await.unwrap();
    l.apply(
        &[RecordChange::new(F11, "lp-old", RecordState::Delivered)],
        None,
        &Cause::Run(new_run.clone()),
    )
    .await
    .unwrap();

    let nothing = l.purge(cut - TimeDelta::hours(1)).await.unwrap();
    assert_eq!(nothing, pp_ledger::PurgeReport::default());
    let report = l.purge(cut).await.unwrap();
    assert_eq!(report.audit_events, 1);
    assert_eq!(report.runs, 1);
    assert_eq!(l.get_run(old_run.as_str()).await.unwrap(), None);
    let trail = l.audit(F11, "lp-old").await.unwrap();
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].to_state, RecordState::Delivered);

    // A running run is never purged, whatever its age; records, cursors, facts stay.
    let all = l.purge(Utc::now() + TimeDelta::days(1)).await.unwrap();
    assert_eq!(all.runs, 0);
    assert_eq!(all.audit_events, 1);
    assert!(l.get_run(new_run.as_str()).await.unwrap().is_some());
    assert_eq!(
        l.get(F11, "lp-old").await.unwrap().unwrap().state,
        RecordState::Delivered
    );
    assert_eq!(l.cursor(F11).await.unwrap().as_deref(), Some("cursor-1"));
    assert!(l.fact("intervention", "IN-1").await.unwrap().is_some());
}

async fn racing_acquirers_one_wins_and_tokens_increase(ctx: Ctx) {
    let l = ctx.ledger;
    let ttl = Duration::from_secs(30);
    for round in 0..10 {
        let flow = format!("race-{round}");
        let (a, b) = tokio::join!(
            {
                let l = l.clone();
                let flow = flow.clone();
                tokio::spawn(async move { l.try_acquire_lease(&flow, "inst-a", ttl).await })
            },
            {
                let l = l.clone();
                let flow = flow.clone();
                tokio::spawn(async move { l.try_acquire_lease(&flow, "inst-b", ttl).await })
            }
        );
        let (a, b) = (a.unwrap().unwrap(), b.unwrap().unwrap());
        assert!(
            a.is_some() != b.is_some(),
            "round {round}: exactly one acquirer wins ({a:?}, {b:?})"
        );
    }

    let first = l
        .try_acquire_lease(F11, "inst-a", ttl)
        .await
        .unwrap()
        .unwrap();
    assert!(l
        .try_acquire_lease(F11, "inst-b", ttl)
        .await
        .unwrap()
        .is_none());
    assert!(l.renew_lease(&first, ttl).await.unwrap());
    assert_eq!(
        l.current_lease(F11).await.unwrap().unwrap().holder,
        "inst-a"
    );
    l.release_lease(&first).await.unwrap();
    assert_eq!(l.current_lease(F11).await.unwrap(), None);
    let second = l
        .try_acquire_lease(F11, "inst-b", ttl)
        .await
        .unwrap()
        .unwrap();
    assert!(second.token > first.token, "fencing token increases");
    assert!(
        !l.renew_lease(&first, ttl).await.unwrap(),
        "the old holder lost it"
    );
    l.release_lease(&first).await.unwrap();
    assert_eq!(
        l.current_lease(F11).await.unwrap().unwrap().holder,
        "inst-b",
        "releasing a lost lease does not release the new holder's"
    );

    // A zombie holder is fenced out of the ledger.
    let run = l.start_run(F11, "inst-a").await.unwrap();
    let err = l
        .apply_fenced(
            &[RecordChange::new(F11, "lp-z", RecordState::Pending)],
            Some((F11, "zombie-cursor")),
            &Cause::Run(run.clone()),
            &first,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, LedgerError::LeaseLost { .. }), "{err}");
    assert_eq!(l.get(F11, "lp-z").await.unwrap(), None);
    assert_eq!(l.cursor(F11).await.unwrap(), None);
    l.apply_fenced(
        &[RecordChange::new(F11, "lp-z", RecordState::Pending)],
        Some((F11, "c1")),
        &Cause::Run(run),
        &second,
    )
    .await
    .unwrap();
    assert_eq!(l.cursor(F11).await.unwrap().as_deref(), Some("c1"));

    // Expiry: a short lease lapses, then another holder gets it with a larger token.
    let short = l
        .try_acquire_lease(F21, "inst-a", Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    assert!(l
        .try_acquire_lease(F21, "inst-b", ttl)
        .await
        .unwrap()
        .is_none());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !l.renew_lease(&short, ttl).await.unwrap(),
        "expired lease is lost"
    );
    let taken = l
        .try_acquire_lease(F21, "inst-b", ttl)
        .await
        .unwrap()
        .unwrap();
    assert!(taken.token > short.token);
    assert!(matches!(
        l.try_acquire_lease(F21, "inst-b", Duration::ZERO).await,
        Err(LedgerError::Invalid { field: "ttl", .. })
    ));
}

async fn runs_and_dashboard_aggregates(ctx: Ctx) {
    let l = ctx.ledger;
    let r1 = l.start_run(F11, "inst-a").await.unwrap();
    let c1 = Cause::Run(r1.clone());
    l.apply(
        &[
            RecordChange::new(F11, "lp-1", RecordState::Rejected)
                .with_reason("unmapped_value", "language: no entry"),
            RecordChange::new(F11, "lp-2", RecordState::Rejected)
                .with_reason("unmapped_value", "sex: no entry"),
            RecordChange::new(F11, "lp-3", RecordState::Conflict)
                .with_reason("ambiguous_case", "CP-1, CP-2"),
            RecordChange::new(F11, "lp-4", RecordState::Conflict),
            RecordChange::new(F11, "lp-5", RecordState::Delivered),
        ],
        None,
        &c1,
    )
    .await
    .unwrap();
    let counts: BTreeMap<String, i64> = [("fetched".to_owned(), 5), ("rejected".to_owned(), 2)]
        .into_iter()
        .collect();
    l.finish_run(&r1, RunOutcome::Completed, &counts, None)
        .await
        .unwrap();
    let again = l.finish_run(&r1, RunOutcome::Failed, &counts, None).await;
    assert!(matches!(
        again,
        Err(LedgerError::Invalid { field: "run", .. })
    ));

    let r2 = l.start_run(F11, "inst-a").await.unwrap();
    l.finish_run(
        &r2,
        RunOutcome::Failed,
        &BTreeMap::new(),
        Some("auth: 401 twice from PING"),
    )
    .await
    .unwrap();
    let r3 = l.start_run(F22, "inst-a").await.unwrap();

    let got = l.get_run(r1.as_str()).await.unwrap().unwrap();
    assert_eq!(got.outcome, RunOutcome::Completed);
    assert_eq!(got.counts, counts);
    assert_eq!(got.holder, "inst-a");
    let listed = l.list_runs(&RunFilter::default()).await.unwrap();
    let ids: Vec<_> = listed.iter().map(|r| r.id.clone()).collect();
    assert_eq!(
        ids,
        [r3.0.clone(), r2.0.clone(), r1.0.clone()],
        "newest first"
    );
    let failed = l
        .list_runs(&RunFilter {
            outcome: Some(RunOutcome::Failed),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].error.as_deref(),
        Some("auth: 401 twice from PING")
    );
    let paged = l
        .list_runs(&RunFilter {
            flow: Some(F11.into()),
            limit: 1,
            offset: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(paged.len(), 1);
    assert_eq!(paged[0].id, r1.0);
    let last: Vec<_> = l
        .last_runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.flow, r.id))
        .collect();
    assert_eq!(
        last,
        [
            (F22.to_owned(), r3.0.clone()),
            (F11.to_owned(), r2.0.clone())
        ]
    );
    assert_eq!(l.last_successful_run(F11).await.unwrap().unwrap().id, r1.0);
    assert_eq!(l.last_successful_run(F22).await.unwrap(), None);

    let counts = l.counts_by_state().await.unwrap();
    assert_eq!(counts[&(F11.to_owned(), "rejected".to_owned())], 2);
    assert_eq!(counts[&(F11.to_owned(), "conflict".to_owned())], 2);
    assert_eq!(counts[&(F11.to_owned(), "delivered".to_owned())], 1);

    let attention = l.attention().await.unwrap();
    assert_eq!(attention.len(), 3, "{attention:?}");
    assert_eq!(attention[0].reason_code.as_deref(), Some("unmapped_value"));
    assert_eq!(attention[0].rejected, 2);
    let mut keys = attention[0].keys.clone();
    keys.sort();
    assert_eq!(keys, ["lp-1", "lp-2"]);
    let unreasoned = attention.iter().find(|g| g.reason_code.is_none()).unwrap();
    assert_eq!(
        (unreasoned.conflict, unreasoned.keys.clone()),
        (1, vec!["lp-4".to_owned()])
    );

    let today = Utc::now().date_naive();
    let daily = l.daily_outcomes(F11, 7, today).await.unwrap();
    assert_eq!(
        daily,
        [
            (today, "conflict".to_owned(), 2),
            (today, "delivered".to_owned(), 1),
            (today, "rejected".to_owned(), 2),
        ]
    );
    let yesterday = today.pred_opt().unwrap();
    assert!(l
        .daily_outcomes(F11, 3, yesterday)
        .await
        .unwrap()
        .is_empty());
    assert!(l.daily_outcomes(F22, 7, today).await.unwrap().is_empty());
    l.ping().await.unwrap();
}

async fn list_records_filters(ctx: Ctx) {
    let l = ctx.ledger;
    let r1 = l.start_run(F21, "inst-a").await.unwrap();
    l.apply(
        &[
            RecordChange::new(F21, "s-1", RecordState::Rejected).with_reason("unmapped_value", "m"),
            RecordChange::new(F21, "s-2", RecordState::Failed).with_reason("timeout", "m"),
            RecordChange::new(F21, "s-3", RecordState::Delivered),
            RecordChange::new(F22, "d-1", RecordState::Delivered),
        ],
        None,
        &Cause::Run(r1.clone()),
    )
    .await
    .unwrap();
    let r2 = l.start_run(F21, "inst-a").await.unwrap();
    l.apply(
        &[RecordChange::new(F21, "s-3", RecordState::Confirmed)],
        None,
        &Cause::Run(r2.clone()),
    )
    .await
    .unwrap();
    let keys = |v: Vec<pp_ledger::Record>| {
        let mut k: Vec<_> = v.into_iter().map(|r| r.key).collect();
        k.sort();
        k
    };
    let f = |flow: Option<&str>, states: Vec<RecordState>| RecordFilter {
        flow: flow.map(str::to_owned),
        states,
        ..Default::default()
    };
    assert_eq!(
        keys(l.list_records(&f(Some(F21), vec![])).await.unwrap()),
        ["s-1", "s-2", "s-3"]
    );
    assert_eq!(
        keys(
            l.list_records(&f(None, vec![RecordState::Rejected, RecordState::Failed]))
                .await
                .unwrap()
        ),
        ["s-1", "s-2"]
    );
    assert_eq!(
        keys(
            l.list_records(&f(None, vec![RecordState::Delivered]))
                .await
                .unwrap()
        ),
        ["d-1"]
    );
    let by_reason = RecordFilter {
        reason_code: Some("timeout".into()),
        ..Default::default()
    };
    assert_eq!(keys(l.list_records(&by_reason).await.unwrap()), ["s-2"]);
    let by_run = |run: &pp_ledger::RunId| RecordFilter {
        run_id: Some(run.0.clone()),
        ..Default::default()
    };
    assert_eq!(keys(l.list_records(&by_run(&r2)).await.unwrap()), ["s-3"]);
    assert_eq!(
        keys(l.list_records(&by_run(&r1)).await.unwrap()),
        ["d-1", "s-1", "s-2", "s-3"],
        "a run's records include those a later run changed again"
    );
    let newest = l
        .list_records(&RecordFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(newest[0].key, "s-3", "most recently changed first");
}
