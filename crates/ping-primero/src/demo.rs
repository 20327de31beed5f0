//! `ping-primero demo`: the whole service on the two embedded simulators with an invented,
//! realistic scenario, for a newcomer who has nothing configured.
//!
//! It starts both simulators in this process, seeds referrals both ways including the problem
//! cases of flows.md (an individual with two Primero cases, a referral missing required
//! fields, an unmapped intervention type, a case owned by a caseworker with an incomplete
//! profile, an interoperability referral with an unknown status code), runs 1.1 and 2.1,
//! plays caseworkers deciding on both sides through the simulators' `/_sim/actions/`, runs 1.2
//! and 2.2, and prints a summary per flow and the records that need a person and why. Output
//! holds identifiers, counts and reason codes only, never the invented personal data.
//!
//! The simulator helpers here ([`SimControl`], [`primero_pending_decisions`],
//! [`progres_referrals`], [`decide_in_primero`], [`decide_in_progres`]) are shared with the
//! benchmark.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::stream::{self, StreamExt, TryStreamExt};
use pp_config::Config;
use pp_flows::{run_flow, Flow, FlowContext, Report, RunOptions};
use pp_ledger::{Ledger, RecordFilter, RecordState};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::sim_cmd::Sims;

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Port of the PING simulator (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub ping_port: u16,
    /// Port of the Primero simulator (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub primero_port: u16,
    /// Port of the service's HTTP port (dashboard, metrics) with --keep-running (0 = any).
    #[arg(long, default_value_t = 0)]
    pub http_port: u16,
    /// Ledger URL (`sqlite://path.db` or `postgres://…`); default a throwaway SQLite file.
    #[arg(long)]
    pub ledger: Option<String>,
    /// Referrals generated each way, besides the problem cases (12-500).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u16).range(12..=500))]
    pub referrals: u16,
    /// After the summary, keep the simulators and the service (dashboard) up until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
}

/// The unknown proGres status code the demo gives one interoperability referral (R4).
pub const UNKNOWN_STATUS_CODE: i64 = 125_080_009;
/// The intervention type the demo's map does not know (R2).
const UNMAPPED_INTERVENTION_TYPE: &str = "Cash-Based Intervention";

// ---- simulator control (shared with the benchmark) -------------------------------------

/// A client of one simulator's `/_sim/` control API.
#[derive(Clone, Debug)]
pub struct SimControl {
    http: reqwest::Client,
    base: String,
    system: &'static str,
}

impl SimControl {
    /// `system` names the simulator in errors (`PING`, `Primero`).
    pub fn new(system: &'static str, base_url: &str) -> SimControl {
        SimControl {
            http: reqwest::Client::new(),
            base: base_url.trim_end_matches('/').to_owned(),
            system,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder, path: &str) -> anyhow::Result<Value> {
        let resp = req
            .send()
            .await
            .with_context(|| format!("{} simulator: {path} unreachable", self.system))?;
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        if !status.is_success() {
            let error = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            bail!(
                "{} simulator: {path} answered {}: {}",
                self.system,
                status.as_u16(),
                error.chars().take(200).collect::<String>()
            );
        }
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("{} simulator: {path} answered invalid JSON", self.system))
    }

    /// `POST /_sim/<path>` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let url = format!("{}/_sim/{path}", self.base);
        self.send(self.http.post(url).json(body), path).await
    }

    /// `GET /_sim/<path>`.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}/_sim/{path}", self.base);
        self.send(self.http.get(url), path).await
    }

    /// `DELETE /_sim/<path>`.
    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let url = format!("{}/_sim/{path}", self.base);
        self.send(self.http.delete(url), path).await.map(|_| ())
    }
}

/// A service row 1.1 wrote into Primero that waits for a caseworker's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingService {
    /// The case's record `id`.
    pub case: String,
    /// The row's `unique_id`.
    pub service: String,
}

/// Service rows that came from proGres (they carry a `progres_interventionnumber`) and are
/// still `pending` in Primero, read page by page through the Primero API.
pub async fn primero_pending_decisions(ctx: &FlowContext) -> anyhow::Result<Vec<PendingService>> {
    let mut out = Vec::new();
    let query = pp_primero::CaseQuery::default().with_fields(["services_section"]);
    ctx.primero
        .for_each_case_page(&query, |cases| {
            for case in cases {
                for row in case.services() {
                    if row.progres_interventionnumber().is_some()
                        && row.unhcr_referral_status() == Some("pending")
                    {
                        if let Some(uid) = row.unique_id {
                            out.push(PendingService {
                                case: case.id.clone(),
                                service: uid,
                            });
                        }
                    }
                }
            }
            async { Ok::<(), pp_primero::PrimeroError>(()) }
        })
        .await
        .context("listing the Primero cases to find referrals waiting for a decision")?;
    Ok(out)
}

/// Every interoperability referral in proGres with its status code, read page by page
/// through PING (the decision list, SHP-2795), in proGres's order.
pub async fn progres_referrals(ctx: &FlowContext) -> anyhow::Result<Vec<(String, Option<i64>)>> {
    let mut out = Vec::new();
    let shp = ctx.config.ping.shipping_processes.decision_list.clone();
    ctx.ping
        .retrieve_pages(&shp, &[], |rows| {
            for row in rows {
                if let Some(id) = row.get_str("progres_interoperabilityreferralid") {
                    out.push((
                        id.to_owned(),
                        row.get_i64("progres_interoperabilityreferralstatus"),
                    ));
                }
            }
        })
        .await
        .context("reading the proGres decision list to find referrals to decide")?;
    Ok(out)
}

/// Whether the caseworker rejects the `i`-th referral: one in `every`.
fn rejects(i: usize, every: usize) -> bool {
    every > 0 && i % every == every - 1
}

/// Primero caseworkers decide each row (`decide-service`): one in `reject_every` rejected
/// with a reason, the others accepted. Returns (accepted, rejected).
pub async fn decide_in_primero(
    primero: &SimControl,
    rows: &[PendingService],
    reject_every: usize,
    parallel: usize,
) -> anyhow::Result<(usize, usize)> {
    let rejected = (0..rows.len())
        .filter(|i| rejects(*i, reject_every))
        .count();
    stream::iter(rows.iter().enumerate())
        .map(|(i, row)| {
            let body = if rejects(i, reject_every) {
                json!({"case": row.case, "service_unique_id": row.service, "decision": "rejected",
                       "reason": "Service not available in this camp; referred to another partner"})
            } else {
                json!({"case": row.case, "service_unique_id": row.service, "decision": "accepted"})
            };
            async move { primero.post("actions/decide-service", &body).await }
        })
        .buffer_unordered(parallel.max(1))
        // The answers (whole records) are not kept: at 10,000 referrals they added ~90 MB
        // to the bench's peak before the flow it measures had started.
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok((rows.len() - rejected, rejected))
}

/// proGres caseworkers decide each referral (`decide-referral`): one in `reject_every`
/// rejected with a reason and a comment, the others accepted. Returns (accepted, rejected).
pub async fn decide_in_progres(
    ping: &SimControl,
    referral_ids: &[String],
    reject_every: usize,
    parallel: usize,
) -> anyhow::Result<(usize, usize)> {
    let rejected = (0..referral_ids.len())
        .filter(|i| rejects(*i, reject_every))
        .count();
    stream::iter(referral_ids.iter().enumerate())
        .map(|(i, id)| {
            let body = if rejects(i, reject_every) {
                json!({"referral_id": id, "decision": "reject", "reason": "Individual Not Found",
                       "comment": "No active individual with this number in the registration group"})
            } else {
                json!({"referral_id": id, "decision": "accept",
                       "comment": "Accepted; a protection associate will follow up"})
            };
            async move { ping.post("actions/decide-referral", &body).await }
        })
        .buffer_unordered(parallel.max(1))
        // The answers (whole records) are not kept: at 10,000 referrals they added ~90 MB
        // to the bench's peak before the flow it measures had started.
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok((referral_ids.len() - rejected, rejected))
}

/// A temporary directory holding a throwaway SQLite ledger, and its URL.
pub fn throwaway_ledger(name: &str) -> anyhow::Result<(tempfile::TempDir, String)> {
    let dir = tempfile::Builder::new()
        .prefix("ping-primero-")
        .tempdir()
        .context("cannot create a temporary directory for the ledger")?;
    let url = format!("sqlite://{}", dir.path().join(name).display());
    Ok((dir, url))
}

/// Runs one flow; a run that cannot complete is an error naming the flow.
pub async fn run_one(ctx: &FlowContext, flow: Flow) -> anyhow::Result<Report> {
    let metrics = crate::daemon::metrics();
    let readiness = pp_web::Readiness::default();
    let result = run_flow(ctx, flow, RunOptions::default()).await;
    crate::daemon::observe_run(&metrics, &readiness, flow, &result);
    result.map_err(|e| anyhow::anyhow!("flow {} ({}) could not run: {e}", flow.id(), flow))
}

// ---- the demo ----------------------------------------------------------------------------

/// What the scenario holds, and the identifiers of the planted problem cases.
#[derive(Debug, Default)]
struct Planted {
    referrals: usize,
    /// Generated Primero cases, each referring its service rows to UNHCR.
    cases: usize,
    /// Their service rows, all referred to UNHCR.
    service_rows: usize,
    /// Cases added without services for the individual with two Primero cases.
    twin_cases: usize,
    /// LP intervention id of the referral missing required fields.
    missing_fields: String,
    /// LP intervention id of the referral with an unmapped intervention type.
    unmapped_type: String,
    /// LP intervention id of the referral whose individual has two Primero cases.
    duplicate: String,
}

/// Prints one progress line.
struct Progress {
    step: usize,
    total: usize,
    started: Instant,
}

impl Progress {
    fn line(&mut self, text: impl std::fmt::Display) {
        self.step += 1;
        println!(
            "[{}/{}] {:>5.1} s  {text}",
            self.step,
            self.total,
            self.started.elapsed().as_secs_f64()
        );
        let _ = std::io::stdout().flush();
    }
}

/// One line with a report's counts.
fn counts_line(r: &Report) -> String {
    let mut s = format!(
        "fetched {}, delivered {}, confirmed {}, skipped {}",
        r.fetched, r.delivered, r.confirmed, r.skipped
    );
    if r.held > 0 {
        s.push_str(&format!(", held {}", r.held));
    }
    if r.waiting > 0 {
        s.push_str(&format!(", waiting {}", r.waiting));
    }
    s.push_str(&format!(
        ", rejected {}, conflicts {}, failed {}",
        r.rejected_total(),
        r.conflicts,
        r.failed
    ));
    s
}

/// The invented scenario: `n` proGres referrals to Primero and `n` Primero cases referred to
/// UNHCR, three of the referrals turned into problem cases, plus two Primero cases for one
/// proGres individual. Returns the combined seed and what was planted.
fn scenario(n: usize) -> anyhow::Result<(Value, Planted)> {
    let mut doc = crate::scenario::generate(n, 42);
    let interventions = doc["ping"]["interventions"]
        .as_array_mut()
        .context("the PING scenario has no interventions")?;
    if interventions.len() < 12 {
        bail!("the PING scenario generated too few interventions");
    }
    let lp = |i: usize| {
        interventions[i]["progres_lpinterventionid"]
            .as_str()
            .unwrap_or("?")
            .to_owned()
    };
    let (missing_fields, unmapped_type, duplicate_lp) = (lp(3), lp(7), lp(11));
    // A referral missing required fields: no date of birth, no sex.
    if let Some(ind) = interventions[3]["individual"].as_object_mut() {
        ind.remove("progres_dateofbirth");
        ind.remove("progres_sex");
    }
    // An intervention type the value map does not know.
    interventions[7]["intervention_type_description"] = json!(UNMAPPED_INTERVENTION_TYPE);
    // An individual who has two cases in Primero already.
    let duplicate = interventions[11]["individual"]["progres_id"]
        .as_str()
        .context("the PING scenario has an individual without progres_id")?
        .to_owned();
    let referrals = interventions.len();

    let mut twins = pp_sim_primero::scenario::generate(&pp_sim_primero::ScenarioOptions {
        count: 2,
        seed: 4242,
        caseworkers: vec!["cw_john".into()],
        with_referrals: false,
        ..Default::default()
    });
    let twins = twins["cases"]
        .as_array_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let cases = doc["primero"]["cases"]
        .as_array_mut()
        .context("the Primero scenario has no cases")?;
    let service_rows = cases
        .iter()
        .map(|c| c["services_section"].as_array().map_or(0, Vec::len))
        .sum();
    let twin_cases = twins.len();
    for mut twin in twins {
        if let Some(t) = twin.as_object_mut() {
            t.remove("services_section");
            t.insert("unhcr_individual_no".into(), json!(duplicate));
        }
        cases.push(twin);
    }
    let planted = Planted {
        referrals,
        cases: n,
        service_rows,
        twin_cases,
        missing_fields,
        unmapped_type,
        duplicate: duplicate_lp,
    };
    Ok((doc, planted))
}

/// What was seeded, planted problems included: `incomplete_services` rows referred to UNHCR
/// on the one case added for the caseworker with an incomplete profile.
fn seed_line(planted: &Planted, incomplete_services: usize) -> String {
    let referring = planted.cases + 1;
    format!(
        "seeded proGres with {} outgoing referrals, Primero with {} cases, {referring} of them \
         referring {} services to UNHCR; planted problems:",
        planted.referrals,
        referring + planted.twin_cases,
        planted.service_rows + incomplete_services
    )
}

/// `ping-primero demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let (_ledger_dir, ledger_url) = match &args.ledger {
        Some(url) => {
            let known = ["sqlite:", "postgres://", "postgresql://"];
            if !known.iter().any(|k| url.starts_with(k)) {
                return Err(crate::exit::usage(
                    "--ledger must be a sqlite:… or postgres://… URL",
                ));
            }
            (None, url.clone())
        }
        None => {
            let (dir, url) = throwaway_ledger("demo-ledger.db")?;
            (Some(dir), url)
        }
    };
    let started = Instant::now();
    let mut p = Progress {
        step: 0,
        total: 9,
        started,
    };
    println!("ping-primero demo: proGres (PING) and Primero are simulated in this process;");
    println!("every person in it is invented. Output shows identifiers, counts and reason codes.");
    println!();

    let sims = Sims::start(args.ping_port, args.primero_port).await?;
    let ping_ctl = SimControl::new("PING", &sims.ping.base_url());
    let primero_ctl = SimControl::new("Primero", &sims.primero.base_url());
    p.line(format_args!(
        "simulators up: PING {}  Primero {}",
        sims.ping.base_url(),
        sims.primero.base_url()
    ));

    let (doc, planted) = scenario(args.referrals as usize)?;
    sims.seed(&doc).await?;
    drop(doc);
    let incomplete = primero_ctl
        .post(
            "actions/refer-to-unhcr",
            &json!({"owned_by": "cw_incomplete", "services": [{"service_type": "medical"}]}),
        )
        .await?;
    let incomplete_case = incomplete["id"].as_str().unwrap_or("?").to_owned();
    let incomplete_services = incomplete["services"].as_array().map_or(0, Vec::len);
    p.line(seed_line(&planted, incomplete_services));
    println!(
        "                 proGres referral {} lacks date of birth and sex",
        planted.missing_fields
    );
    println!(
        "                 proGres referral {} has intervention type {UNMAPPED_INTERVENTION_TYPE:?} (not in the map)",
        planted.unmapped_type
    );
    println!(
        "                 proGres referral {} is for an individual with two Primero cases",
        planted.duplicate
    );
    println!(
        "                 Primero case {incomplete_case} is owned by cw_incomplete (no email, phone or position)"
    );
    let mut config = pp_config::demo_config(
        &sims.ping.base_url(),
        &sims.ping.token_url(),
        &sims.primero.base_url(),
        &ledger_url,
    );
    // The simulators confirm async ingestion at once: poll check-status briskly.
    config.ping.check_status_interval = Duration::from_millis(200);
    let config = Arc::new(config);
    let ledger = crate::daemon::connect(&config).await?;
    let (_stop_tx, stop_rx) = watch::channel(false);
    let ctx = FlowContext::new(config.clone(), ledger.clone(), stop_rx)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    p.line(format_args!(
        "ledger ready: {}",
        if args.ledger.is_some() {
            config.ledger.redacted_url()
        } else {
            "throwaway SQLite file (removed at exit)".to_owned()
        }
    ));

    let mut reports: Vec<(Flow, Report)> = Vec::new();
    for flow in [Flow::ReferralsToPrimero, Flow::ReferralsToProgres] {
        let r = run_one(&ctx, flow).await?;
        p.line(format_args!("{} {flow}: {}", flow.id(), counts_line(&r)));
        reports.push((flow, r));
    }

    let pending = primero_pending_decisions(&ctx).await?;
    let (acc, rej) = decide_in_primero(&primero_ctl, &pending, 6, 4).await?;
    p.line(format_args!(
        "Primero caseworkers decided the {} referrals from proGres: {acc} accepted, {rej} \
         rejected with a reason",
        pending.len()
    ));

    let new_code = config.maps.codes.interop_status.new;
    let mut new_referrals: Vec<String> = progres_referrals(&ctx)
        .await?
        .into_iter()
        .filter(|(_, status)| *status == Some(new_code))
        .map(|(id, _)| id)
        .collect();
    let odd = if new_referrals.is_empty() {
        None
    } else {
        Some(new_referrals.remove(0))
    };
    if let Some(id) = &odd {
        ping_ctl
            .post(
                "actions/set-referral-status",
                &json!({"referral_id": id, "status": UNKNOWN_STATUS_CODE}),
            )
            .await?;
    }
    let (acc, rej) = decide_in_progres(&ping_ctl, &new_referrals, 5, 4).await?;
    p.line(format_args!(
        "proGres caseworkers decided {} interoperability referrals: {acc} accepted, {rej} \
         rejected with a reason and comment{}",
        new_referrals.len(),
        match &odd {
            Some(id) =>
                format!("; referral {id} got the unknown status code {UNKNOWN_STATUS_CODE}"),
            None => String::new(),
        }
    ));

    for flow in [Flow::DecisionsToProgres, Flow::DecisionsToPrimero] {
        let r = run_one(&ctx, flow).await?;
        p.line(format_args!("{} {flow}: {}", flow.id(), counts_line(&r)));
        reports.push((flow, r));
    }
    reports.sort_by_key(|(f, _)| Flow::ALL.iter().position(|x| x == f));

    println!();
    print_summary(&reports);
    println!();
    print_attention(&ledger).await?;
    println!();
    println!("Done in {:.1} s.", started.elapsed().as_secs_f64());

    if args.keep_running {
        keep_running(sims, config, ledger, args.http_port).await?;
    } else {
        println!(
            "Run `ping-primero demo --keep-running` to explore the dashboard and the simulators."
        );
        sims.shutdown().await;
    }
    Ok(())
}

/// The summary table, one row per flow.
fn print_summary(reports: &[(Flow, Report)]) {
    println!("Summary");
    println!(
        "  {:<26} {:>7} {:>9} {:>9} {:>7} {:>4} {:>7} {:>8} {:>9} {:>6}",
        "flow",
        "fetched",
        "delivered",
        "confirmed",
        "skipped",
        "held",
        "waiting",
        "rejected",
        "conflicts",
        "failed"
    );
    for (flow, r) in reports {
        println!(
            "  {:<26} {:>7} {:>9} {:>9} {:>7} {:>4} {:>7} {:>8} {:>9} {:>6}",
            format!("{} {}", flow.id(), flow.name()),
            r.fetched,
            r.delivered,
            r.confirmed,
            r.skipped,
            r.held,
            r.waiting,
            r.rejected_total(),
            r.conflicts,
            r.failed
        );
    }
    let reasons: BTreeMap<&str, u64> = reports.iter().flat_map(|(_, r)| r.rejected.iter()).fold(
        BTreeMap::new(),
        |mut m, (k, v)| {
            *m.entry(k.as_str()).or_default() += v;
            m
        },
    );
    if !reasons.is_empty() {
        let list: Vec<String> = reasons.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("  rejected by reason: {}", list.join(", "));
    }
}

/// The records in the ledger that need a person (rejected, conflict) or will be retried
/// (failed), with their reason and what to do.
async fn print_attention(ledger: &Ledger) -> anyhow::Result<()> {
    let mut records = ledger
        .list_records(&RecordFilter {
            states: vec![
                RecordState::Conflict,
                RecordState::Rejected,
                RecordState::Failed,
            ],
            limit: 1000,
            ..RecordFilter::default()
        })
        .await
        .context("reading the records that need attention")?;
    records.sort_by_key(|r| {
        (
            Flow::ALL.iter().position(|f| f.name() == r.flow),
            r.state.as_str().to_owned(),
            r.key.clone(),
        )
    });
    if records.is_empty() {
        println!("No record needs a person.");
        return Ok(());
    }
    println!("Records that need a person ({})", records.len());
    println!("  {:<4} {:<9} {:<28} key", "flow", "state", "reason");
    let mut seen_reasons: Vec<Option<String>> = Vec::new();
    for r in &records {
        let id = Flow::parse(&r.flow).map_or("?", |f| f.id());
        let reason = r.reason_code.clone();
        println!(
            "  {:<4} {:<9} {:<28} {}",
            id,
            r.state.as_str(),
            reason.as_deref().unwrap_or("-"),
            r.key
        );
        if let Some(m) = &r.message {
            let m: String = m.chars().take(600).collect();
            for line in wrap(&m, 96) {
                println!("       {line}");
            }
        }
        if !seen_reasons.contains(&reason) {
            seen_reasons.push(reason);
        }
    }
    println!();
    println!("What the reasons mean");
    for reason in &seen_reasons {
        let e = pp_web::reasons::explain(reason.as_deref());
        println!(
            "  {}: {}. {}",
            reason.as_deref().unwrap_or("(none)"),
            e.title,
            e.fix_in.label()
        );
        for line in wrap(e.advice, 92) {
            println!("      {line}");
        }
    }
    Ok(())
}

/// Splits `text` into lines of at most `width` characters at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// `--keep-running`: the daemon with the dashboard, flows every minute, until Ctrl-C.
async fn keep_running(
    sims: Sims,
    config: Arc<Config>,
    ledger: Ledger,
    http_port: u16,
) -> anyhow::Result<()> {
    let password = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let mut cfg = (*config).clone();
    cfg.web.operators = vec![pp_config::Operator {
        name: "demo".into(),
        password_hash: pp_web::hash_password(&password)?,
    }];
    for f in &mut cfg.flows {
        f.schedule_expr = "* * * * *".into();
        f.schedule = pp_config::parse_schedule(&f.schedule_expr)
            .map_err(|e| anyhow::anyhow!("demo schedule: {e}"))?;
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], http_port));
    let daemon = crate::daemon::Daemon::start(Arc::new(cfg), ledger, Some(addr)).await?;
    println!();
    println!("The service is running; the four flows run every minute. Ctrl-C stops everything.");
    println!(
        "  dashboard        http://{}/   (sign in as demo / {password})",
        daemon.http_addr
    );
    println!("  metrics          http://{}/metrics", daemon.http_addr);
    println!(
        "  PING simulator   {}   (state: {}/_sim/state)",
        sims.ping.base_url(),
        sims.ping.base_url()
    );
    println!(
        "  Primero sim      {}   (state: {}/_sim/state)",
        sims.primero.base_url(),
        sims.primero.base_url()
    );
    println!(
        "  try: curl -X POST {}/_sim/actions/refer-to-unhcr -d '{{}}'   (a new Primero referral for 2.1)",
        sims.primero.base_url()
    );
    println!(
        "       curl -X POST {}/_sim/actions/create-outgoing-referral -d '{{}}'   (a new proGres referral for 1.1)",
        sims.ping.base_url()
    );
    let _ = std::io::stdout().flush();
    crate::shutdown_signal().await;
    daemon.stop().await;
    sims.shutdown().await;
    println!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_plants_the_problem_cases() {
        let (doc, planted) = scenario(24).unwrap();
        let ivs = doc["ping"]["interventions"].as_array().unwrap();
        assert_eq!(planted.referrals, 24);
        assert!(ivs[3]["individual"].get("progres_dateofbirth").is_none());
        assert_eq!(
            ivs[7]["intervention_type_description"],
            json!(UNMAPPED_INTERVENTION_TYPE)
        );
        let dup = ivs[11]["individual"]["progres_id"].as_str().unwrap();
        let twins = doc["primero"]["cases"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["unhcr_individual_no"] == json!(dup))
            .count();
        assert_eq!(twins, 2);
    }

    #[test]
    fn the_seed_line_counts_every_case_and_service_seeded() {
        let (doc, planted) = scenario(24).unwrap();
        let cases = doc["primero"]["cases"].as_array().unwrap();
        let rows: usize = cases
            .iter()
            .map(|c| c["services_section"].as_array().map_or(0, Vec::len))
            .sum();
        // The incomplete caseworker's case (one service) is added after the seed.
        let line = seed_line(&planted, 1);
        assert!(
            line.contains(&format!(
                "Primero with {} cases, 25 of them referring {} services to UNHCR",
                cases.len() + 1,
                rows + 1
            )),
            "{line}"
        );
        assert!(
            line.contains("proGres with 24 outgoing referrals"),
            "{line}"
        );
    }

    #[test]
    fn one_in_n_is_rejected() {
        let r: Vec<usize> = (0..12).filter(|i| rejects(*i, 6)).collect();
        assert_eq!(r, vec![5, 11]);
        assert!(!(0..5).any(|i| rejects(i, 0)));
    }

    #[test]
    fn wrap_respects_the_width() {
        let lines = wrap("aaa bbb ccc ddd", 7);
        assert_eq!(lines, vec!["aaa bbb", "ccc ddd"]);
    }
}
