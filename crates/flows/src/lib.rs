//! The four flows of ping-primero (see `shared/specs/flows.md`): fetch from the source, map in
//! pure code (`pp-mapping`), deliver, write back, and record every record's outcome in the
//! ledger. [`run_flow`] wraps one run: the flow's lease (so no two instances run a flow at
//! once), the run row, lease renewal, and the final report.
//!
//! Errors that end a run (auth, unreachable API, ledger) are [`FlowError`]s; everything that
//! concerns one record ends in the ledger as delivered, confirmed, rejected, conflict or failed
//! (R1), and the run goes on.

pub mod context;
pub mod report;

use std::fmt;

use pp_http::ErrorClass;
use pp_ledger::{LedgerError, RunOutcome};

pub use context::{Clock, FlowContext, RunCtx, SystemClock};
pub use report::{Preview, RecordLine, Report};

/// The four flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flow {
    /// 1.1: proGres referrals become Primero cases and service rows.
    ReferralsToPrimero,
    /// 1.2: Primero's accept/reject goes back to proGres.
    DecisionsToProgres,
    /// 2.1: Primero referrals to UNHCR become proGres interoperability referrals.
    ReferralsToProgres,
    /// 2.2: proGres's accept/reject goes back to Primero.
    DecisionsToPrimero,
}

impl Flow {
    /// All flows in a sensible order for `run-once all`: referrals before decisions.
    pub const ALL: [Flow; 4] = [
        Flow::ReferralsToPrimero,
        Flow::DecisionsToProgres,
        Flow::ReferralsToProgres,
        Flow::DecisionsToPrimero,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Flow::ReferralsToPrimero => "referrals-to-primero",
            Flow::DecisionsToProgres => "decisions-to-progres",
            Flow::ReferralsToProgres => "referrals-to-progres",
            Flow::DecisionsToPrimero => "decisions-to-primero",
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Flow::ReferralsToPrimero => "1.1",
            Flow::DecisionsToProgres => "1.2",
            Flow::ReferralsToProgres => "2.1",
            Flow::DecisionsToPrimero => "2.2",
        }
    }

    /// By name (`referrals-to-primero`) or short id (`1.1`).
    pub fn parse(text: &str) -> Option<Flow> {
        let name = pp_config::flow_name(text)?;
        Flow::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a run could not complete. Messages hold system names, codes and identifiers only.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("auth: {system} refused our credentials: {detail}")]
    Auth {
        system: &'static str,
        detail: String,
    },
    #[error("{system} is unreachable or failing: {detail}")]
    Unreachable {
        system: &'static str,
        detail: String,
    },
    #[error("{system} refused a request the run depends on: {detail}")]
    Api {
        system: &'static str,
        detail: String,
    },
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("flow {flow} is already running (lease held by {holder})")]
    Busy { flow: &'static str, holder: String },
    #[error("configuration: {0}")]
    Config(String),
    #[error("flow {flow} lost its lease during the run; another instance may hold it")]
    LeaseLost { flow: &'static str },
}

impl FlowError {
    /// Whether the run failed on credentials (readiness probes report it).
    pub fn is_auth(&self) -> bool {
        matches!(self, FlowError::Auth { .. })
    }

    /// Classifies a client error that ends the run.
    pub fn from_api(system: &'static str, class: ErrorClass, detail: String) -> Self {
        match class {
            ErrorClass::Auth => FlowError::Auth { system, detail },
            ErrorClass::Transient => FlowError::Unreachable { system, detail },
            ErrorClass::Permanent => FlowError::Api { system, detail },
        }
    }
}

impl From<pp_ping::PingError> for FlowError {
    fn from(e: pp_ping::PingError) -> Self {
        FlowError::from_api("PING", e.class(), e.to_string())
    }
}

impl From<pp_primero::PrimeroError> for FlowError {
    fn from(e: pp_primero::PrimeroError) -> Self {
        FlowError::from_api("Primero", e.class(), e.to_string())
    }
}

/// Options of one run.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Fetch and map, write nothing anywhere (no ledger, no API writes, no lease).
    pub dry_run: bool,
}

/// Runs one flow once: takes the flow's lease, records the run, runs the flow, and records
/// the outcome. A run that cannot complete is recorded as failed with its error.
pub async fn run_flow(
    ctx: &FlowContext,
    flow: Flow,
    opts: RunOptions,
) -> Result<Report, FlowError> {
    if opts.dry_run {
        let run = RunCtx::new(ctx, flow, None, None, true);
        dispatch(&run).await?;
        let mut report = run.into_report();
        report.finished_at = Some(ctx.now());
        return Ok(report);
    }
    let holder = ctx.config.service.instance_id.clone();
    let ttl = ctx.config.ledger.lease_ttl;
    let lease = match ctx
        .ledger
        .try_acquire_lease(flow.name(), &holder, ttl)
        .await?
    {
        Some(l) => l,
        None => {
            let holder = ctx
                .ledger
                .current_lease(flow.name())
                .await?
                .map(|l| l.holder)
                .unwrap_or_else(|| "another instance".to_owned());
            return Err(FlowError::Busy {
                flow: flow.name(),
                holder,
            });
        }
    };
    let run_id = match ctx.ledger.start_run(flow.name(), &holder).await {
        Ok(id) => id,
        Err(e) => {
            let _ = ctx.ledger.release_lease(&lease).await;
            return Err(e.into());
        }
    };
    let span = tracing::info_span!("run", flow = flow.name(), run_id = %run_id);

    let run = RunCtx::new(ctx, flow, Some(run_id.clone()), Some(lease.clone()), false);
    // Keep the lease alive while the run works; a lost lease stops the run from starting
    // records (and fences its ledger writes).
    let renewer = {
        let ledger = ctx.ledger.clone();
        let lease = lease.clone();
        let lost = run.lease_lost.clone();
        tokio::spawn(async move {
            let every = context::renew_interval(ttl);
            loop {
                tokio::time::sleep(every).await;
                match ledger.renew_lease(&lease, ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(flow = %lease.flow, "lease lost; the run stops starting records");
                        lost.store(true, std::sync::atomic::Ordering::SeqCst);
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(flow = %lease.flow, error = %e, "lease renewal failed")
                    }
                }
            }
        })
    };

    let mut result = tracing::Instrument::instrument(dispatch(&run), span.clone()).await;
    renewer.abort();
    if result.is_ok() && run.lease_lost() {
        result = Err(FlowError::LeaseLost { flow: flow.name() });
    }
    let mut report = run.into_report();
    report.finished_at = Some(ctx.now());
    let (outcome, error) = match &result {
        Ok(()) => (RunOutcome::Completed, None),
        Err(e) => (RunOutcome::Failed, Some(e.to_string())),
    };
    let finish = ctx
        .ledger
        .finish_run(&run_id, outcome, &report.counts(), error.as_deref())
        .await;
    let _ = ctx.ledger.release_lease(&lease).await;
    {
        let _g = span.enter();
        match &result {
            Ok(()) => tracing::info!(
                fetched = report.fetched,
                delivered = report.delivered,
                confirmed = report.confirmed,
                skipped = report.skipped,
                held = report.held,
                waiting = report.waiting,
                excluded = report.excluded.values().sum::<u64>(),
                rejected = report.rejected_total(),
                conflicts = report.conflicts,
                failed = report.failed,
                "run completed"
            ),
            Err(e) => tracing::error!(error = %e, "run failed"),
        }
    }
    result?;
    finish?;
    Ok(report)
}

async fn dispatch(run: &RunCtx<'_>) -> Result<(), FlowError> {
    match run.flow {
        Flow::ReferralsToPrimero => referrals_to_primero::run(run).await,
        Flow::DecisionsToProgres => decisions_to_progres::run(run).await,
        Flow::ReferralsToProgres => referrals_to_progres::run(run).await,
        Flow::DecisionsToPrimero => decisions_to_primero::run(run).await,
    }
}

pub mod decisions_to_primero;
pub mod decisions_to_progres;
pub mod referrals_to_primero;
pub mod referrals_to_progres;
