//! A run that loses its flow's lease (another holder took it over) stops starting records and
//! ends with an error instead of carrying on unrecorded; a second run while one holds the
//! lease is refused as busy.

mod support;

use std::time::Duration;

use pp_flows::{Flow, FlowError};
use serde_json::json;
use support::TestEnv;

async fn slow_env() -> TestEnv {
    let env = TestEnv::start_with(|c| {
        c.ledger.lease_ttl = Duration::from_millis(600);
    })
    .await;
    let seed = pp_sim_ping::scenario::generate(&pp_sim_ping::scenario::ScenarioOptions {
        count: 40,
        seed: 5,
        ..Default::default()
    });
    env.ping.seed(seed).await.unwrap();
    for base in [env.ping.base_url(), env.primero.base_url()] {
        env.http
            .post(format!("{base}/_sim/faults"))
            .json(&json!({"rules": [{"endpoint": "*", "kind": "latency", "ms": 150}]}))
            .send()
            .await
            .unwrap();
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_loses_its_lease_stops() {
    let env = slow_env().await;
    let holder = env.config.service.instance_id.clone();
    let ledger = env.ledger.clone();
    let thief = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        // Same holder name: the ledger hands out a new lease with a larger token, which
        // fences the running run out.
        ledger
            .try_acquire_lease(
                Flow::ReferralsToPrimero.name(),
                &holder,
                Duration::from_secs(60),
            )
            .await
            .unwrap()
            .expect("lease taken over")
    });
    let result = env.try_run(Flow::ReferralsToPrimero).await;
    thief.await.unwrap();
    match result {
        Err(FlowError::LeaseLost { .. })
        | Err(FlowError::Ledger(pp_ledger::LedgerError::LeaseLost { .. })) => {}
        other => panic!("expected the run to end on the lost lease, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_of_a_busy_flow_is_refused() {
    let env = slow_env().await;
    let lease = env
        .ledger
        .try_acquire_lease(
            Flow::ReferralsToPrimero.name(),
            "other-instance",
            Duration::from_secs(60),
        )
        .await
        .unwrap()
        .expect("free lease");
    match env.try_run(Flow::ReferralsToPrimero).await {
        Err(FlowError::Busy { holder, .. }) => assert_eq!(holder, "other-instance"),
        other => panic!("expected Busy, got {other:?}"),
    }
    env.ledger.release_lease(&lease).await.unwrap();
}
