//! `ping-primero run-once <flow|all>` (one run, a report, an exit code) and
//! `ping-primero status` (each flow's schedule, last and next run, records waiting).

use std::sync::Arc;

use chrono::Utc;
use pp_config::Config;
use pp_flows::{run_flow, Flow, FlowContext, FlowError, Report, RunOptions};
use pp_ledger::RecordState;
use tokio::sync::watch;

use crate::flow_arg::FlowsArg;

/// Arguments of `run-once`.
#[derive(Debug, clap::Args)]
pub struct RunOnceArgs {
    /// The flow: its name (referrals-to-primero) or short id (1.1), or `all`.
    #[arg(value_enum, ignore_case = true)]
    pub flow: FlowsArg,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Fetch and map, write nothing anywhere; show what would be sent (ids and field names).
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs the flows; returns whether every run completed. Reports go to stdout, errors to
/// stderr.
pub async fn run_once(config: Config, args: RunOnceArgs) -> anyhow::Result<bool> {
    let all = args.flow == FlowsArg::All;
    let flows = args.flow.flows();
    let config = Arc::new(config);
    let ledger = crate::daemon::connect(&config).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    // Ctrl-C during a one-off run: stop starting records, finish those in hand.
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let ctx =
        FlowContext::new(config.clone(), ledger, stop_rx).map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics = crate::daemon::metrics();
    let readiness = pp_web::Readiness::default();
    let mut reports: Vec<Report> = Vec::new();
    let mut errors: Vec<(Flow, FlowError)> = Vec::new();
    for flow in flows {
        if !config.flow(flow.name()).enabled && all {
            eprintln!("{flow}: disabled in the configuration, not run");
            continue;
        }
        let result = run_flow(
            &ctx,
            flow,
            RunOptions {
                dry_run: args.dry_run,
            },
        )
        .await;
        crate::daemon::observe_run(&metrics, &readiness, flow, &result);
        match result {
            Ok(r) => {
                if !args.json {
                    println!("{r}");
                }
                reports.push(r);
            }
            Err(e) => {
                eprintln!("error: {flow} ({}) could not run: {e}", flow.id());
                errors.push((flow, e));
            }
        }
    }
    if args.json {
        let failed: Vec<serde_json::Value> = errors
            .iter()
            .map(|(f, e)| serde_json::json!({"flow": f.name(), "error": e.to_string()}))
            .collect();
        let out = if reports.len() == 1 && errors.is_empty() && !all {
            serde_json::to_value(&reports[0])?
        } else {
            serde_json::json!({ "runs": reports, "failed": failed })
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(errors.is_empty())
}

/// `status`: one block per flow.
pub async fn status(config: Config, json: bool) -> anyhow::Result<()> {
    let ledger = crate::daemon::connect(&config).await?;
    let last = ledger.last_runs().await?;
    let counts = ledger.counts_by_state().await?;
    let mut rows = Vec::new();
    for fc in &config.flows {
        let run = last.iter().find(|r| r.flow == fc.name);
        let n = |s: RecordState| {
            counts
                .get(&(fc.name.to_owned(), s.as_str().to_owned()))
                .copied()
                .unwrap_or(0)
        };
        rows.push(serde_json::json!({
            "flow": fc.name,
            "id": fc.id,
            "enabled": fc.enabled,
            "schedule": fc.schedule_expr,
            "last_run": run.map(|r| serde_json::json!({
                "id": r.id, "started_at": r.started_at, "finished_at": r.finished_at,
                "outcome": r.outcome.as_str(), "counts": r.counts, "error": r.error,
            })),
            "next_run": fc.enabled.then(|| fc.schedule.upcoming(Utc).next()).flatten(),
            "waiting": n(RecordState::Pending) + n(RecordState::Delivered) + n(RecordState::Failed),
            "failed": n(RecordState::Failed),
            "rejected": n(RecordState::Rejected),
            "conflict": n(RecordState::Conflict),
        }));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<22} {:<4} {:<12} {:<10} {:<22} {:<22} {:>7} {:>8} {:>8}",
        "flow", "id", "schedule", "last", "last run", "next run", "waiting", "rejected", "conflict"
    );
    for r in rows {
        let s = |k: &str| r[k].as_str().unwrap_or("-").to_owned();
        let last_outcome = r["last_run"]["outcome"]
            .as_str()
            .unwrap_or("never")
            .to_owned();
        let last_at = r["last_run"]["started_at"]
            .as_str()
            .map(|t| t.chars().take(19).collect::<String>())
            .unwrap_or_else(|| "-".into());
        let next = if r["enabled"].as_bool() == Some(true) {
            r["next_run"]
                .as_str()
                .map(|t| t.chars().take(19).collect::<String>())
                .unwrap_or_else(|| "-".into())
        } else {
            "disabled".into()
        };
        println!(
            "{:<22} {:<4} {:<12} {:<10} {:<22} {:<22} {:>7} {:>8} {:>8}",
            s("flow"),
            s("id"),
            s("schedule"),
            last_outcome,
            last_at,
            next,
            r["waiting"].as_i64().unwrap_or(0),
            r["rejected"].as_i64().unwrap_or(0),
            r["conflict"].as_i64().unwrap_or(0)
        );
    }
    Ok(())
}
