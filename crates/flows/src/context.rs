//! What a flow run works with: the configuration, the two API clients, the ledger, the payload
//! hash key, a clock, and the shutdown signal; plus the per-run handle ([`RunCtx`]) through
//! which flows record outcomes (fenced by the flow's lease, counted in the report).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pp_config::Config;
use pp_ledger::{Cause, ErrorClass, Lease, Ledger, RecordChange, RecordState, RunId};
use pp_ping::{PingClient, PingSettings};
use pp_primero::{AuthMode, PrimeroClient, PrimeroSettings};
use secrecy::ExposeSecret;
use tokio::sync::watch;

use crate::report::{Preview, Report};
use crate::{Flow, FlowError};

/// Where "now" comes from; tests may fix it.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Everything the flows need, built once per process and shared by every run.
#[derive(Clone)]
pub struct FlowContext {
    pub config: Arc<Config>,
    pub ping: PingClient,
    pub primero: PrimeroClient,
    pub ledger: Ledger,
    pub clock: Arc<dyn Clock>,
    /// Becomes `true` when the process is shutting down: runs stop starting records.
    pub shutdown: watch::Receiver<bool>,
    hash_key: Arc<Vec<u8>>,
}

impl FlowContext {
    /// Builds the clients from the configuration.
    pub fn new(
        config: Arc<Config>,
        ledger: Ledger,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, FlowError> {
        let p = &config.ping;
        let ping = PingClient::new(PingSettings {
            base_url: p.base_url.clone(),
            token_url: p.token_url.clone(),
            client_id: p.client_id.clone(),
            scope: p.scope.clone(),
            username: p.username.clone(),
            password: p.password.clone(),
            subscription_key: p.subscription_key.clone(),
            partner_id: p.partner_id.clone(),
            interop_id: p.interop_id.clone(),
            http: p.http.clone(),
            token_refresh_margin: pp_ping::DEFAULT_TOKEN_REFRESH_MARGIN,
        })
        .map_err(|e| FlowError::Config(e.to_string()))?;
        let q = &config.primero;
        let primero = PrimeroClient::new(PrimeroSettings {
            base_url: q.base_url.clone(),
            username: q.username.clone(),
            password: q.password.clone(),
            auth: match q.auth {
                pp_config::PrimeroAuth::Basic => AuthMode::Basic,
                pp_config::PrimeroAuth::Token => AuthMode::LegacyToken,
            },
            http: q.http.clone(),
        })
        .map_err(|e| FlowError::Config(e.to_string()))?;
        let hash_key = Arc::new(config.service.hash_key.expose_secret().as_bytes().to_vec());
        Ok(FlowContext {
            config,
            ping,
            primero,
            ledger,
            clock: Arc::new(SystemClock),
            shutdown,
            hash_key,
        })
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Keyed hash of a mapped payload (R11).
    pub fn payload_hash(&self, payload: &serde_json::Value) -> String {
        pp_mapping::payload_hash(&self.hash_key, payload)
    }

    /// Whether the process asked runs to stop starting new records.
    pub fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// One run of one flow: records outcomes in the ledger (unless dry run) and in the report.
pub struct RunCtx<'a> {
    pub ctx: &'a FlowContext,
    pub flow: Flow,
    /// `None` for a dry run.
    pub run_id: Option<RunId>,
    pub lease: Option<Lease>,
    pub dry_run: bool,
    /// When the run started ("today" for the mapping is its date).
    pub started_at: DateTime<Utc>,
    report: Mutex<Report>,
    /// Set by the lease renewal when the lease was lost: the run stops starting records (its
    /// ledger writes are fenced anyway, so nothing it did after the loss would be recorded).
    pub(crate) lease_lost: Arc<AtomicBool>,
}

impl<'a> RunCtx<'a> {
    pub(crate) fn new(
        ctx: &'a FlowContext,
        flow: Flow,
        run_id: Option<RunId>,
        lease: Option<Lease>,
        dry_run: bool,
    ) -> Self {
        let started_at = ctx.now();
        let mut report = Report::new(flow.name(), dry_run);
        report.run_id = run_id.as_ref().map(|r| r.to_string());
        report.started_at = Some(started_at);
        RunCtx {
            ctx,
            flow,
            run_id,
            lease,
            dry_run,
            started_at,
            report: Mutex::new(report),
            lease_lost: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A change of this flow's record `key`.
    pub fn change(&self, key: impl Into<String>, state: RecordState) -> RecordChange {
        RecordChange::new(self.flow.name(), key, state)
    }

    /// A rejection (permanent) with a reason code and a message free of personal data.
    pub fn rejected(
        &self,
        key: impl Into<String>,
        reason: &str,
        message: impl Into<String>,
    ) -> RecordChange {
        self.change(key, RecordState::Rejected)
            .with_reason(reason, message)
            .with_error_class(ErrorClass::Validation)
    }

    /// A record parked for a person (ambiguous match, R3).
    pub fn conflict(
        &self,
        key: impl Into<String>,
        reason: &str,
        message: impl Into<String>,
    ) -> RecordChange {
        self.change(key, RecordState::Conflict)
            .with_reason(reason, message)
            .with_error_class(ErrorClass::Conflict)
    }

    /// A transient failure: retried by a later run after a backoff that grows with the
    /// record's attempts (`previous_attempts` as stored in the ledger).
    pub fn failed(
        &self,
        key: impl Into<String>,
        reason: &str,
        message: impl Into<String>,
        previous_attempts: i64,
    ) -> RecordChange {
        self.change(key, RecordState::Failed)
            .with_reason(reason, message)
            .with_error_class(ErrorClass::Transient)
            .with_attempt()
            .with_next_retry_at(self.ctx.now() + retry_backoff(previous_attempts + 1))
    }

    /// Records changes (one ledger transaction, fenced by the lease) and, when given, the
    /// flow's cursor with them (R6). In a dry run nothing is written; the report still counts.
    pub async fn commit(
        &self,
        changes: Vec<RecordChange>,
        cursor: Option<&str>,
    ) -> Result<(), FlowError> {
        let changes = if !self.dry_run && (!changes.is_empty() || cursor.is_some()) {
            // The write runs as a task of its own, on whichever runtime thread is free: a
            // commit is a dozen round trips to the database's thread, and polled from the
            // run's own future each of them waited while the run prepared or sent the next
            // batch (flow 1.2 at 1,000 decisions ended ~15 ms after PING's last answer). The
            // run still waits for it, so outcomes are recorded in order and errors come back
            // here; if the run is dropped meanwhile, the write completes, which is what the
            // outcomes (already applied by the other system) call for.
            let ledger = self.ctx.ledger.clone();
            let lease = self.lease.clone();
            let cause = self.cause();
            let cursor = cursor.map(|c| (self.flow.name(), c.to_owned()));
            // In the run's span, so that what the write logs carries the run id and flow.
            let task = tokio::spawn(tracing::Instrument::instrument(
                async move {
                    let cursor = cursor.as_ref().map(|(flow, c)| (*flow, c.as_str()));
                    let written = match &lease {
                        Some(lease) => ledger.apply_fenced(&changes, cursor, &cause, lease).await,
                        None => ledger.apply(&changes, cursor, &cause).await,
                    };
                    (changes, written)
                },
                tracing::Span::current(),
            ));
            let (changes, written) = match task.await {
                Ok(done) => done,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => {
                    return Err(FlowError::Unreachable {
                        system: "ledger",
                        detail: "the ledger write was cancelled (the runtime is shutting down)"
                            .into(),
                    })
                }
            };
            written?;
            changes
        } else {
            changes
        };
        let mut report = self.report.lock().expect("report lock");
        for c in &changes {
            report.note(c);
        }
        Ok(())
    }

    /// The ledger cause of this run's changes.
    pub fn cause(&self) -> Cause {
        match &self.run_id {
            Some(id) => Cause::Run(id.clone()),
            None => Cause::Operator("dry-run".to_owned()),
        }
    }

    /// Mutates the report (fetched, skipped, excluded, waiting, transaction ids...).
    pub fn report<R>(&self, f: impl FnOnce(&mut Report) -> R) -> R {
        f(&mut self.report.lock().expect("report lock"))
    }

    /// Dry run: notes what would be sent (identifiers and field names only).
    pub fn preview(&self, key: &str, action: &str, fields: Vec<String>) {
        self.report(|r| {
            r.would_send.push(Preview {
                key: key.to_owned(),
                action: action.to_owned(),
                fields,
            })
        });
    }

    /// Whether to stop starting new records: shutdown requested, or the flow's lease lost
    /// (another instance may be processing the same records now).
    pub fn stopping(&self) -> bool {
        let stop = self.ctx.stopping() || self.lease_lost();
        if stop {
            self.report(|r| r.interrupted = true);
        }
        stop
    }

    /// Whether the lease renewal found the lease taken by another holder.
    pub fn lease_lost(&self) -> bool {
        self.lease_lost.load(Ordering::SeqCst)
    }

    pub(crate) fn into_report(self) -> Report {
        self.report.into_inner().expect("report lock")
    }
}

/// Backoff before a failed record is tried again by a later run: 1 minute doubling per
/// attempt, at most 6 hours.
pub fn retry_backoff(attempts: i64) -> chrono::Duration {
    let exp = attempts.clamp(1, 20) - 1;
    let secs = 60i64.saturating_mul(1i64 << exp).min(6 * 3600);
    chrono::Duration::seconds(secs)
}

/// Interval at which a run renews its lease.
pub(crate) fn renew_interval(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_millis(200))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_backoff_doubles_and_is_capped() {
        assert_eq!(retry_backoff(1), chrono::Duration::seconds(60));
        assert_eq!(retry_backoff(2), chrono::Duration::seconds(120));
        assert_eq!(retry_backoff(4), chrono::Duration::seconds(480));
        assert_eq!(retry_backoff(30), chrono::Duration::seconds(6 * 3600));
    }
}
