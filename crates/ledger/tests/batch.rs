//! Batched reads and writes of the ledger, run against both backends: `get_many` across
//! several statements, and `apply` of many changes at once behaving exactly like applying
//! them one by one.

mod common;

use common::Ctx;
use pp_ledger::{Cause, RecordChange, RecordState};

const F12: &str = "decisions-to-progres";
const F21: &str = "referrals-to-progres";

contract!(get_many_reads_present_keys_across_chunks,);

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
