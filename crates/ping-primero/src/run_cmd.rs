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
                    println!("{}", report_text(&r));
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

/// A report as `run-once` prints it: the flow, then one line per count with the labels
/// (reason codes included, however long) in a column sized to the longest.
pub fn report_text(r: &Report) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |label: &str, value: String| rows.push((label.to_owned(), value));
    if let Some(id) = &r.run_id {
        row("run id", id.clone());
    }
    row("fetched", r.fetched.to_string());
    row("delivered", r.delivered.to_string());
    row("confirmed", r.confirmed.to_string());
    row("skipped (done)", r.skipped.to_string());
    if r.waiting > 0 {
        row("waiting at source", r.waiting.to_string());
    }
    for (reason, n) in &r.excluded {
        row("excluded", format!("{n} ({reason})"));
    }
    row("rejected", r.rejected_total().to_string());
    for (reason, n) in &r.rejected {
        row(&format!("  {reason}"), n.to_string());
    }
    row("conflicts", r.conflicts.to_string());
    row("failed (retry)", r.failed.to_string());
    if !r.ping_transaction_ids.is_empty() {
        row("PING transactions", r.ping_transaction_ids.join(", "));
    }
    let width = rows
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = format!(
        "{}{}\n",
        r.flow,
        if r.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    );
    for (label, value) in &rows {
        out.push_str(&format!("  {label:<width$}  {value}\n"));
    }
    if r.interrupted {
        out.push_str("  interrupted by shutdown: the rest is picked up by the next run\n");
    }
    if !r.would_send.is_empty() {
        out.push_str("  would send:\n");
        for p in &r.would_send {
            out.push_str(&format!(
                "    {} {}: {}\n",
                p.action,
                p.key,
                p.fields.join(", ")
            ));
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_labels_and_reason_codes_get_a_column_as_wide_as_the_longest() {
        let mut r = Report::new("referrals-to-primero", false);
        r.fetched = 24;
        r.confirmed = 21;
        r.rejected.insert("unmapped_intervention_type".into(), 1);
        r.rejected.insert("missing_required_fields".into(), 12);
        r.conflicts = 1;
        r.excluded.insert("not_unhcr".into(), 3);
        let text = report_text(&r);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "referrals-to-primero");
        assert!(
            lines.contains(&"    unmapped_intervention_type  1"),
            "{text}"
        );
        assert!(
            lines.contains(&"    missing_required_fields     12"),
            "{text}"
        );
        // Every value starts in the same column.
        let column = |l: &str| l.rfind("  ").map(|i| i + 2);
        let first = column(lines[1]);
        for l in &lines[1..] {
            assert_eq!(column(l), first, "{l:?} in\n{text}");
        }
        assert!(
            lines.contains(&"  excluded                      3 (not_unhcr)"),
            "{text}"
        );
    }
}
