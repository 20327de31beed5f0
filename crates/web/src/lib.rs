//! The daemon's HTTP port: open probes (`/healthz`, `/readyz`) and Prometheus `/metrics`,
//! and the operator dashboard (overview, runs, records, needs attention) behind sign-in.
//!
//! The dashboard is server-rendered HTML without JavaScript. It shows ledger content only:
//! flow names, states, reason codes, counts and system identifiers, never personal data.
//! Every page makes a bounded number of ledger queries with limits (lists of 50).
//!
//! The daemon builds a [`WebState`] and calls [`serve`]; tests and the benchmark use
//! [`router`]:
//!
//! ```no_run
//! # async fn wire(ledger: pp_ledger::Ledger) -> std::io::Result<()> {
//! use std::sync::Arc;
//! let metrics = pp_web::Metrics::new();
//! pp_http::set_observer(Arc::new(metrics.clone())); // API requests and retries
//! let auth = pp_web::AuthConfig {
//!     operators: vec![("amina".into(), "$argon2id$v=19$...".into())],
//!     ..pp_web::AuthConfig::default()
//! };
//! let state = pp_web::WebState::new(ledger, metrics.clone(), auth)
//!     .with_flows(vec![pp_web::FlowInfo {
//!         name: "referrals-to-primero".into(),
//!         schedule: "0 0 * * *".into(),
//!         next_run: None,
//!         enabled: true,
//!     }])
//!     .with_run_now(|flow| { /* queue a run of `flow` */ !flow.is_empty() });
//! // Later, from the scheduler: state.flows.write().unwrap()[0].next_run = Some(..);
//! // after each run: metrics.run_finished(flow, outcome, &counts), and
//! // state.readiness.auth_failed(flow, "primero") / state.readiness.clear(flow).
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! pp_web::serve(listener, state, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod auth;
mod bench;
pub mod chart;
pub mod html;
pub mod metrics;
mod pages;
pub mod reasons;
mod security;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use pp_ledger::{Ledger, Run, RunOutcome};

pub use auth::{hash_password, AuthConfig};
pub use bench::{bench_pages, seed_for_bench};
pub use metrics::Metrics;

/// What the dashboard knows of one configured flow (from the daemon's scheduler).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    /// Flow name, e.g. `referrals-to-primero`.
    pub name: String,
    /// The schedule as configured (cron text).
    pub schedule: String,
    /// When the scheduler will start the next run.
    pub next_run: Option<DateTime<Utc>>,
    /// Whether the flow is enabled.
    pub enabled: bool,
}

/// The daemon's callback behind "Run now": queue a run of the named flow; `false` when the
/// flow is unknown or disabled.
pub type RunNow = Arc<dyn Fn(String) -> bool + Send + Sync>;

/// Problems the daemon reports for `/readyz`, by check name (e.g. a flow whose last run was
/// refused by PING or Primero's authentication). Cheap to clone; clones share the state.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    problems: Arc<RwLock<std::collections::BTreeMap<String, String>>>,
}

impl Readiness {
    /// Marks `check` (e.g. a flow name) as failing with a one-line reason (codes and system
    /// names only).
    pub fn set_problem(&self, check: &str, reason: &str) {
        self.problems
            .write()
            .expect("readiness lock")
            .insert(check.to_string(), reason.replace(['\r', '\n'], " "));
    }

    /// Marks the last run of `flow` as refused by authentication at `system`.
    pub fn auth_failed(&self, flow: &str, system: &str) {
        self.set_problem(
            flow,
            &format!("last run failed on authentication with {system}"),
        );
    }

    /// Clears the problem of `check` (e.g. after a successful run of that flow).
    pub fn clear(&self, check: &str) {
        self.problems.write().expect("readiness lock").remove(check);
    }

    /// The current problems, by check name.
    pub fn problems(&self) -> Vec<(String, String)> {
        self.problems
            .read()
            .expect("readiness lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Everything the HTTP port needs from the daemon.
#[derive(Clone)]
pub struct WebState {
    /// The ledger the pages read and the retry actions write.
    pub ledger: Ledger,
    /// The process's metrics.
    pub metrics: Metrics,
    /// Operator accounts, API token and session settings.
    pub auth: AuthConfig,
    /// The configured flows; the daemon updates `next_run` as it schedules.
    pub flows: Arc<RwLock<Vec<FlowInfo>>>,
    /// "Run now".
    pub run_now: RunNow,
    /// Problems the daemon reports for `/readyz`.
    pub readiness: Readiness,
}

impl WebState {
    /// A state with no flows, a "Run now" that refuses, and no readiness problems.
    pub fn new(ledger: Ledger, metrics: Metrics, auth: AuthConfig) -> Self {
        WebState {
            ledger,
            metrics,
            auth,
            flows: Arc::new(RwLock::new(Vec::new())),
            run_now: Arc::new(|_| false),
            readiness: Readiness::default(),
        }
    }

    /// Sets the configured flows.
    pub fn with_flows(self, flows: Vec<FlowInfo>) -> Self {
        *self.flows.write().expect("flows lock") = flows;
        self
    }

    /// Sets the "Run now" callback.
    pub fn with_run_now(
        mut self,
        run_now: impl Fn(String) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.run_now = Arc::new(run_now);
        self
    }

    /// A snapshot of the configured flows.
    pub fn flows(&self) -> Vec<FlowInfo> {
        self.flows.read().expect("flows lock").clone()
    }
}

/// State shared by the handlers.
#[derive(Clone)]
pub(crate) struct App {
    pub(crate) web: WebState,
    pub(crate) auth: Arc<auth::Auth>,
}

/// A run that ended because PING or Primero refused our credentials. Flows end such runs
/// as `failed` with an error text that starts with `auth` (e.g. `auth: primero refused the
/// credentials twice`).
pub fn run_failed_on_auth(run: &Run) -> bool {
    run.outcome == RunOutcome::Failed
        && run
            .error
            .as_deref()
            .is_some_and(|e| e.trim_start().to_ascii_lowercase().starts_with("auth"))
}

/// The whole HTTP port: probes, metrics and the dashboard.
pub fn router(state: WebState) -> Router {
    let app = App {
        auth: Arc::new(auth::Auth::new(state.auth.clone())),
        web: state,
    };
    let dashboard = Router::new()
        .route("/", get(pages::overview))
        .route("/flows/{flow}/run", post(pages::run_now))
        .route("/runs", get(pages::runs))
        .route("/runs/{id}", get(pages::run))
        .route("/records", get(pages::records))
        .route("/records/{flow}/{key}", get(pages::record))
        .route("/records/{flow}/{key}/retry", post(pages::retry_record))
        .route("/attention", get(pages::attention))
        .route("/attention/retry", post(pages::retry_group))
        .route("/logout", post(pages::logout))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            security::require_operator,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/login", get(pages::login_form).post(pages::login))
        .merge(dashboard)
        .layer(axum::middleware::from_fn(security::headers))
        .with_state(app)
}

/// Serves [`router`] on `listener` until `shutdown` completes (client addresses are known to
/// the sign-in rate limit).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: WebState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(app): State<App>) -> Response {
    let mut failing: Vec<String> = Vec::new();
    let ledger = &app.web.ledger;
    match tokio::time::timeout(Duration::from_secs(3), ledger.ping()).await {
        Ok(Ok(())) => match ledger.last_runs().await {
            Ok(runs) => {
                for run in runs.iter().filter(|r| run_failed_on_auth(r)) {
                    failing.push(format!(
                        "flow {}: last run failed on authentication",
                        metrics::label(&run.flow)
                    ));
                }
            }
            Err(e) => failing.push(format!("ledger: runs unreadable ({})", kind_of(&e))),
        },
        Ok(Err(e)) => failing.push(format!("ledger: not reachable ({})", kind_of(&e))),
        Err(_) => failing.push("ledger: no answer within 3 s".into()),
    }
    for (check, reason) in app.web.readiness.problems() {
        failing.push(format!("{}: {reason}", metrics::label(&check)));
    }
    if failing.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let mut body = failing.join("\n");
        body.push('\n');
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

fn kind_of(e: &pp_ledger::LedgerError) -> &'static str {
    match e {
        pp_ledger::LedgerError::Database(_) => "database error",
        pp_ledger::LedgerError::Migrate(_) => "migration error",
        pp_ledger::LedgerError::Corrupt { .. } => "malformed data",
        _ => "error",
    }
}

async fn metrics_text(State(app): State<App>) -> Response {
    let web = &app.web;
    match web.ledger.counts_by_state().await {
        Ok(counts) => {
            let rows: Vec<(String, String, i64)> = counts
                .into_iter()
                .map(|((flow, state), n)| (flow, state, n))
                .collect();
            web.metrics.set_waiting(&rows);
        }
        Err(e) => tracing::warn!(error = %e, "metrics: record counts unavailable"),
    }
    for flow in web.flows() {
        match web.ledger.last_successful_run(&flow.name).await {
            Ok(Some(run)) => {
                if let Some(at) = run.finished_at {
                    web.metrics.set_last_success(&flow.name, at);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "metrics: last successful run unavailable"),
        }
    }
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        web.metrics.render(),
    )
        .into_response()
}
