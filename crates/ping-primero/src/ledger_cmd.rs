//! `ping-primero ledger …`: the operator's command line view of the sync ledger. Lists
//! records and runs, shows one record (found by key or any stored identifier) with its audit
//! trail, re-queues rejected/conflict/failed records, and purges old history. Output is an
//! aligned plain-text table, or JSON with `--json`. The ledger holds system identifiers
//! only, so nothing printed here is personal data.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, TimeDelta, Utc};
use clap::builder::{EnumValueParser, PossibleValuesParser, TypedValueParser};
use pp_ledger::{
    AuditEvent, Ledger, Record, RecordFilter, RecordState, RetryTarget, Run, RunFilter,
};
use serde_json::json;

use crate::flow_arg::FlowArg;

/// A `--flow` option's parser: a flow's name or short id, kept as the flow's name.
fn flow_parser() -> impl TypedValueParser<Value = String> {
    EnumValueParser::<FlowArg>::new().map(FlowArg::name)
}

/// The ledger's record states.
const STATES: [&str; 6] = [
    "pending",
    "delivered",
    "confirmed",
    "rejected",
    "conflict",
    "failed",
];

/// The states `ledger retry` can send back to their flow.
const RETRYABLE_STATES: [&str; 3] = ["rejected", "conflict", "failed"];

/// Subcommands of `ping-primero ledger`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum LedgerCommand {
    /// List records, most recently changed first.
    List {
        /// Only this flow: its name or short id (1.1, 1.2, 2.1, 2.2).
        #[arg(long, value_parser = flow_parser(), ignore_case = true)]
        flow: Option<String>,
        /// Only this state (repeat for several).
        #[arg(
            long,
            value_parser = PossibleValuesParser::new(STATES).try_map(|s| s.parse::<RecordState>())
        )]
        state: Vec<RecordState>,
        /// Only this reason code.
        #[arg(long)]
        reason: Option<String>,
        /// At most this many records.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show the records a key or any identifier (case id, service unique id, GUID…) finds,
    /// with their audit trails.
    Show {
        /// Record key or identifier.
        key: String,
    },
    /// Send rejected, conflict or failed records back to their flow (after fixing data or
    /// configuration). Give a key, or filter with --flow/--state/--reason.
    #[command(group(
        clap::ArgGroup::new("target")
            .args(["key", "flow", "state", "reason"])
            .required(true)
            .multiple(true)
    ))]
    Retry {
        /// Record key (all flows that have it unless --flow is given).
        key: Option<String>,
        /// Only this flow: its name or short id (1.1, 1.2, 2.1, 2.2).
        #[arg(long, value_parser = flow_parser(), ignore_case = true)]
        flow: Option<String>,
        /// Only this state (only these can be retried).
        #[arg(
            long,
            value_parser = PossibleValuesParser::new(RETRYABLE_STATES)
                .try_map(|s| s.parse::<RecordState>()),
            conflicts_with = "key"
        )]
        state: Option<RecordState>,
        /// Only this reason code.
        #[arg(long, conflicts_with = "key")]
        reason: Option<String>,
        /// Operator name recorded in the audit trail.
        #[arg(long, env = "PING_PRIMERO_OPERATOR")]
        operator: Option<String>,
    },
    /// Delete audit events and finished runs older than a number of days. Records, cursors
    /// and facts are kept.
    Purge {
        /// Age in days, at least 1 (default: the configured `[ledger] retention_days`).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        older_than_days: Option<u32>,
    },
    /// List runs, newest first.
    Runs {
        /// Only this flow: its name or short id (1.1, 1.2, 2.1, 2.2).
        #[arg(long, value_parser = flow_parser(), ignore_case = true)]
        flow: Option<String>,
        /// At most this many runs.
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

/// Runs one ledger subcommand and prints its result (a table, or JSON when `json`).
/// `default_retention_days` is the configured retention used by `purge` without
/// `--older-than-days`.
pub async fn run(
    cmd: LedgerCommand,
    ledger: &Ledger,
    json: bool,
    default_retention_days: u32,
) -> Result<()> {
    let out = execute(cmd, ledger, json, default_retention_days, Utc::now()).await?;
    println!("{out}");
    Ok(())
}

async fn execute(
    cmd: LedgerCommand,
    ledger: &Ledger,
    json: bool,
    default_retention_days: u32,
    now: DateTime<Utc>,
) -> Result<String> {
    match cmd {
        LedgerCommand::List {
            flow,
            state,
            reason,
            limit,
        } => {
            let filter = RecordFilter {
                flow,
                states: state,
                reason_code: reason,
                limit: limit.max(0),
                ..Default::default()
            };
            let records = ledger
                .list_records(&filter)
                .await
                .context("listing ledger records")?;
            if json {
                return to_json(&records);
            }
            Ok(records_table(&records))
        }
        LedgerCommand::Show { key } => {
            let records = ledger.find(&key).await.context("finding ledger records")?;
            if records.is_empty() {
                bail!("no ledger record has key or identifier `{key}`");
            }
            let mut shown = Vec::new();
            for r in records {
                let audit = ledger
                    .audit(&r.flow, &r.key)
                    .await
                    .context("reading the audit trail")?;
                shown.push((r, audit));
            }
            if json {
                let v: Vec<_> = shown
                    .iter()
                    .map(|(r, a)| json!({"record": r, "audit": a}))
                    .collect();
                return to_json(&v);
            }
            Ok(shown
                .iter()
                .map(|(r, a)| show_record(r, a))
                .collect::<Vec<_>>()
                .join("\n\n"))
        }
        LedgerCommand::Retry {
            key,
            flow,
            state,
            reason,
            operator,
        } => {
            let target = match key {
                Some(key) => RetryTarget::Key { flow, key },
                None => {
                    if flow.is_none() && state.is_none() && reason.is_none() {
                        return Err(crate::exit::usage(
                            "give a record key, or at least one of --flow, --state, --reason",
                        ));
                    }
                    RetryTarget::Filter {
                        flow,
                        state,
                        reason,
                    }
                }
            };
            let operator = operator
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "cli".to_owned());
            let n = ledger
                .retry(target, &operator)
                .await
                .context("re-queueing records")?;
            if json {
                return to_json(&json!({"requeued": n, "operator": operator}));
            }
            Ok(format!(
                "re-queued {n} record(s); their flows process them on the next run"
            ))
        }
        LedgerCommand::Purge { older_than_days } => {
            let days = older_than_days.unwrap_or(default_retention_days);
            if days == 0 {
                return Err(crate::exit::usage("--older-than-days must be at least 1"));
            }
            let cutoff = now - TimeDelta::days(i64::from(days));
            let report = ledger.purge(cutoff).await.context("purging the ledger")?;
            if json {
                return to_json(&json!({
                    "older_than": cutoff,
                    "audit_events": report.audit_events,
                    "runs": report.runs,
                }));
            }
            Ok(format!(
                "deleted {} audit event(s) and {} run(s) older than {}",
                report.audit_events,
                report.runs,
                time(&cutoff)
            ))
        }
        LedgerCommand::Runs { flow, limit } => {
            let runs = ledger
                .list_runs(&RunFilter {
                    flow,
                    limit: limit.max(0),
                    ..Default::default()
                })
                .await
                .context("listing runs")?;
            if json {
                return to_json(&runs);
            }
            Ok(runs_table(&runs))
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string_pretty(v).context("serializing output")
}

fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn opt(v: Option<&str>) -> String {
    v.unwrap_or("-").to_owned()
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            s.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 2;
                s.extend(std::iter::repeat_n(' ', pad));
            }
        }
        s
    };
    let mut out = vec![line(headers.to_vec())];
    for row in rows {
        out.push(line(row.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}

fn records_table(records: &[Record]) -> String {
    if records.is_empty() {
        return "no records".to_owned();
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.flow.clone(),
                r.key.clone(),
                r.state.to_string(),
                r.attempts.to_string(),
                opt(r.reason_code.as_deref()),
                time(&r.updated_at),
                r.next_retry_at
                    .as_ref()
                    .map(time)
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &[
            "FLOW",
            "KEY",
            "STATE",
            "ATTEMPTS",
            "REASON",
            "UPDATED",
            "NEXT RETRY",
        ],
        &rows,
    )
}

fn runs_table(runs: &[Run]) -> String {
    if runs.is_empty() {
        return "no runs".to_owned();
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let counts = r
                .counts
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                r.id.clone(),
                r.flow.clone(),
                r.outcome.to_string(),
                time(&r.started_at),
                r.finished_at
                    .as_ref()
                    .map(time)
                    .unwrap_or_else(|| "-".into()),
                if counts.is_empty() {
                    "-".into()
                } else {
                    counts
                },
                opt(r.error.as_deref()),
            ]
        })
        .collect();
    table(
        &[
            "RUN", "FLOW", "OUTCOME", "STARTED", "FINISHED", "COUNTS", "ERROR",
        ],
        &rows,
    )
}

fn show_record(r: &Record, audit: &[AuditEvent]) -> String {
    let ids = if r.dest_ids.is_empty() {
        "-".to_owned()
    } else {
        r.dest_ids
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut flags = Vec::new();
    if r.fallback_used {
        flags.push("fallback_used");
    }
    if r.contact_substituted {
        flags.push("contact_substituted");
    }
    if r.operator_retry {
        flags.push("operator_retry");
    }
    let fields = [
        ("flow", r.flow.clone()),
        ("key", r.key.clone()),
        ("state", r.state.to_string()),
        ("attempts", r.attempts.to_string()),
        (
            "next retry",
            r.next_retry_at
                .as_ref()
                .map(time)
                .unwrap_or_else(|| "-".into()),
        ),
        (
            "error class",
            r.error_class
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
        ),
        ("reason", opt(r.reason_code.as_deref())),
        ("message", opt(r.message.as_deref())),
        ("decision", opt(r.decision.as_deref())),
        ("ids", ids),
        (
            "ping transactions",
            if r.ping_transaction_ids.is_empty() {
                "-".into()
            } else {
                r.ping_transaction_ids.join(" ")
            },
        ),
        ("payload hash", opt(r.payload_hash.as_deref())),
        (
            "flags",
            if flags.is_empty() {
                "-".into()
            } else {
                flags.join(" ")
            },
        ),
        ("created", time(&r.created_at)),
        ("updated", time(&r.updated_at)),
        ("last run", opt(r.last_run_id.as_deref())),
    ];
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k:<width$}  {v}"))
        .collect();
    out.push(String::new());
    if audit.is_empty() {
        out.push("audit trail: none kept (purged)".to_owned());
    } else {
        let rows: Vec<Vec<String>> = audit
            .iter()
            .map(|e| {
                vec![
                    time(&e.at),
                    e.from_state
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "-".into()),
                    e.to_state.to_string(),
                    opt(e.reason_code.as_deref()),
                    e.cause.clone(),
                    opt(e.message.as_deref()),
                ]
            })
            .collect();
        out.push(table(
            &["AT", "FROM", "TO", "REASON", "CAUSE", "MESSAGE"],
            &rows,
        ));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use pp_ledger::{Cause, RecordChange};

    const FLOWS: [&str; 1] = ["referrals-to-primero"];

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: LedgerCommand,
    }

    fn parse(args: &[&str]) -> Result<LedgerCommand, clap::Error> {
        let mut all = vec!["ledger"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).map(|c| c.cmd)
    }

    async fn ledger_with_records() -> Ledger {
        let l = Ledger::connect("sqlite::memory:").await.unwrap();
        let run = l.start_run(FLOWS[0], "inst-a").await.unwrap();
        l.apply(
            &[
                RecordChange::new(FLOWS[0], "lp-1", RecordState::Rejected)
                    .with_reason("unmapped_value", "service_type: no entry")
                    .with_dest_id("case_id", "CP-77"),
                RecordChange::new(FLOWS[0], "lp-22", RecordState::Delivered),
            ],
            None,
            &Cause::Run(run),
        )
        .await
        .unwrap();
        l
    }

    #[test]
    fn arguments_are_checked() {
        assert!(parse(&["list", "--flow", "nope"]).is_err());
        // A flow is named by its name or its short id, on every subcommand that takes one.
        for (args, flow) in [
            (&["list", "--flow", "1.2"][..], "decisions-to-progres"),
            (&["runs", "--flow", "2.1"], "referrals-to-progres"),
            (&["retry", "--flow", "2.2"], "decisions-to-primero"),
            (
                &["list", "--flow", "Referrals-To-Primero"],
                "referrals-to-primero",
            ),
        ] {
            let got = match parse(args).unwrap() {
                LedgerCommand::List { flow, .. }
                | LedgerCommand::Runs { flow, .. }
                | LedgerCommand::Retry { flow, .. } => flow,
                other => panic!("{other:?}"),
            };
            assert_eq!(got.as_deref(), Some(flow), "{args:?}");
        }
        assert!(parse(&["list", "--state", "lost"]).is_err());
        assert_eq!(
            parse(&["list", "--state", "rejected", "--state", "conflict"]).unwrap(),
            LedgerCommand::List {
                flow: None,
                state: vec![RecordState::Rejected, RecordState::Conflict],
                reason: None,
                limit: 50,
            }
        );
        assert!(parse(&["retry", "lp-1", "--state", "rejected"]).is_err());
        // Nothing to retry, a state that cannot be retried, a purge of zero days: usage
        // errors (clap's, exit code 2) before any ledger is opened.
        assert!(parse(&["retry"]).is_err());
        assert!(parse(&["retry", "--state", "confirmed"]).is_err());
        assert_eq!(
            parse(&["retry", "--state", "failed", "--operator", "amina"]).unwrap(),
            LedgerCommand::Retry {
                key: None,
                flow: None,
                state: Some(RecordState::Failed),
                reason: None,
                operator: Some("amina".into()),
            }
        );
        assert!(parse(&["purge", "--older-than-days", "0"]).is_err());
        assert!(parse(&["purge", "--older-than-days", "30"]).is_ok());
    }

    #[test]
    fn tables_are_aligned() {
        let t = table(
            &["A", "BB"],
            &[vec!["xxx".into(), "y".into()], vec!["z".into(), "w".into()]],
        );
        assert_eq!(t, "A    BB\nxxx  y\nz    w");
    }

    #[tokio::test]
    async fn guards_behind_the_parser_still_refuse_as_usage_errors() {
        // Clap refuses these first; the guards keep a caller that builds the command itself
        // from re-queueing every record of the ledger or purging up to now.
        let l = ledger_with_records().await;
        let everything = LedgerCommand::Retry {
            key: None,
            flow: None,
            state: None,
            reason: None,
            operator: None,
        };
        let e = execute(everything, &l, false, 30, Utc::now())
            .await
            .unwrap_err();
        assert_eq!(crate::exit::code_of(&e), crate::exit::USAGE);
        assert_eq!(
            l.get(FLOWS[0], "lp-1").await.unwrap().unwrap().state,
            RecordState::Rejected,
            "nothing re-queued"
        );
        let zero = LedgerCommand::Purge {
            older_than_days: None,
        };
        let e = execute(zero, &l, false, 0, Utc::now()).await.unwrap_err();
        assert_eq!(crate::exit::code_of(&e), crate::exit::USAGE);
    }

    #[tokio::test]
    async fn list_show_retry_purge() {
        let l = ledger_with_records().await;
        let now = Utc::now();
        let list = execute(
            parse(&["list", "--state", "rejected"]).unwrap(),
            &l,
            false,
            30,
            now,
        )
        .await
        .unwrap();
        let lines: Vec<_> = list.lines().collect();
        assert_eq!(lines.len(), 2, "{list}");
        assert!(lines[0].starts_with("FLOW"));
        assert!(lines[1].contains("lp-1") && lines[1].contains("unmapped_value"));
        assert_eq!(lines[0].find("KEY"), lines[1].find("lp-1"), "aligned");

        let shown = execute(parse(&["show", "CP-77"]).unwrap(), &l, true, 30, now)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(v[0]["record"]["key"], "lp-1");
        assert_eq!(v[0]["audit"][0]["to_state"], "rejected");
        assert!(
            execute(parse(&["show", "nothing"]).unwrap(), &l, false, 30, now)
                .await
                .is_err()
        );

        let out = execute(
            parse(&["retry", "lp-1", "--operator", "alice"]).unwrap(),
            &l,
            false,
            30,
            now,
        )
        .await
        .unwrap();
        assert!(out.starts_with("re-queued 1 record"), "{out}");
        let r = l.get(FLOWS[0], "lp-1").await.unwrap().unwrap();
        assert_eq!(r.state, RecordState::Pending);
        let text = execute(parse(&["show", "lp-1"]).unwrap(), &l, false, 30, now)
            .await
            .unwrap();
        assert!(text.contains("operator:alice"), "{text}");

        // Purge with the configured default keeps today's history; far in the future it
        // takes the audit trail but never the records.
        let kept = execute(parse(&["purge"]).unwrap(), &l, true, 30, now)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&kept).unwrap();
        assert_eq!(v["audit_events"], 0);
        let later = now + TimeDelta::days(40);
        let gone = execute(parse(&["purge"]).unwrap(), &l, true, 30, later)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&gone).unwrap();
        assert_eq!(v["audit_events"], 3);
        assert!(l.get(FLOWS[0], "lp-1").await.unwrap().is_some());

        let runs = execute(parse(&["runs"]).unwrap(), &l, false, 30, now)
            .await
            .unwrap();
        assert!(
            runs.starts_with("RUN") && runs.contains("running"),
            "{runs}"
        );
    }
}
