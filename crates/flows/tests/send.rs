//! The daemon runs each flow in its own tokio task, so a run's future must be `Send` for every
//! lifetime of the context it borrows. A future that holds a borrow across an `.await` in a
//! shape the compiler cannot prove `Send` for all lifetimes breaks only the binary's build;
//! this test makes `cargo test -p pp-flows` catch it, and runs each flow on a spawned task.

mod support;

use pp_flows::{run_flow, Flow, RunOptions};
use support::TestEnv;

#[tokio::test]
async fn every_flow_runs_on_a_spawned_task() {
    let env = TestEnv::start().await;
    for flow in [
        Flow::ReferralsToPrimero,
        Flow::DecisionsToProgres,
        Flow::ReferralsToProgres,
        Flow::DecisionsToPrimero,
    ] {
        let ctx = env.ctx.clone();
        let report = tokio::spawn(async move { run_flow(&ctx, flow, RunOptions::default()).await })
            .await
            .expect("the task ends")
            .unwrap_or_else(|e| panic!("{flow} failed: {e}"));
        assert_eq!(report.rejected_total(), 0, "{flow}: {report}");
        assert_eq!(report.failed, 0, "{flow}: {report}");
    }
}
