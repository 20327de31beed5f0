//! The long-running service (`ping-primero run`): one scheduler task per enabled flow on its
//! cron schedule, the HTTP port (probes, metrics, dashboard), and graceful shutdown.
//!
//! Guarantees: a flow never runs twice at once (the ledger's lease holds across instances; a
//! tick that finds the lease taken is skipped and logged); a failed run is simply tried again
//! at the next tick; records whose `next_retry_at` has come are picked up by their flow's next
//! run (the flows read `due_for_retry`). On SIGTERM or Ctrl-C the schedulers stop starting
//! runs, the runs in flight stop starting records and finish the ones in hand (the ledger and
//! cursors only ever hold what completed), leases are released, and the process exits 0.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use pp_config::Config;
use pp_flows::{run_flow, Flow, FlowContext, FlowError, Report, RunOptions};
use pp_ledger::Ledger;
use pp_web::{FlowInfo, Metrics, Readiness, WebState};
use tokio::sync::{watch, Notify};

/// A running service: what tests and the demo need to reach it.
pub struct Daemon {
    /// The bound HTTP address (the configured one, or the port the OS chose for port 0).
    pub http_addr: std::net::SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    web: tokio::task::JoinHandle<std::io::Result<()>>,
    web_stop: Arc<Notify>,
}

/// Connects the ledger (running migrations) and installs the metrics observer once per
/// process.
pub async fn connect(config: &Config) -> anyhow::Result<Ledger> {
    let url = secrecy::ExposeSecret::expose_secret(&config.ledger.url).to_owned();
    Ledger::connect(&url)
        .await
        .with_context(|| format!("cannot open the ledger at {}", config.ledger.redacted_url()))
}

/// Metrics for this process, installed as the API clients' request observer.
pub fn metrics() -> Metrics {
    static METRICS: std::sync::OnceLock<Metrics> = std::sync::OnceLock::new();
    METRICS
        .get_or_init(|| {
            let m = Metrics::new();
            pp_http::set_observer(Arc::new(m.clone()));
            m
        })
        .clone()
}

/// Records a finished run in the metrics and the readiness state.
pub fn observe_run(
    metrics: &Metrics,
    readiness: &Readiness,
    flow: Flow,
    result: &Result<Report, FlowError>,
) {
    match result {
        Ok(report) => {
            metrics.run_finished(flow.name(), "completed", &report.counts());
            metrics.set_last_success(flow.name(), Utc::now());
            readiness.clear(flow.name());
        }
        Err(FlowError::Busy { .. }) => {
            metrics.run_finished(flow.name(), "skipped_busy", &BTreeMap::new());
        }
        Err(e) => {
            metrics.run_finished(flow.name(), "failed", &BTreeMap::new());
            if let FlowError::Auth { system, .. } = e {
                readiness.auth_failed(flow.name(), system);
            }
        }
    }
}

impl Daemon {
    /// Starts the schedulers and the HTTP port. `listen` overrides `[service] http_listen`.
    pub async fn start(
        config: Arc<Config>,
        ledger: Ledger,
        listen: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<Daemon> {
        let metrics = metrics();
        let readiness = Readiness::default();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ctx = FlowContext::new(config.clone(), ledger.clone(), shutdown_rx.clone())
            .map_err(|e| anyhow::anyhow!("{e}"))?;

        let infos: Vec<FlowInfo> = config
            .flows
            .iter()
            .map(|f| FlowInfo {
                name: f.name.to_owned(),
                schedule: f.schedule_expr.clone(),
                next_run: f.enabled.then(|| f.schedule.upcoming(Utc).next()).flatten(),
                enabled: f.enabled,
            })
            .collect();
        let mut triggers: BTreeMap<&'static str, Arc<Notify>> = BTreeMap::new();
        for f in config.enabled_flows() {
            triggers.insert(f.name, Arc::new(Notify::new()));
        }
        let run_now_triggers = triggers.clone();
        let state = WebState::new(ledger.clone(), metrics.clone(), auth_config(&config))
            .with_flows(infos)
            .with_run_now(
                move |flow: String| match run_now_triggers.get(flow.as_str()) {
                    Some(n) => {
                        n.notify_one();
                        true
                    }
                    None => false,
                },
            );
        let state = WebState {
            readiness: readiness.clone(),
            ..state
        };
        let flows_info = state.flows.clone();

        let addr = listen.unwrap_or(config.service.http_listen);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot bind the HTTP port {addr}"))?;
        let http_addr = listener.local_addr()?;
        let web_stop = Arc::new(Notify::new());
        let web = {
            let stop = web_stop.clone();
            tokio::spawn(pp_web::serve(listener, state, async move {
                stop.notified().await
            }))
        };

        let mut tasks = Vec::new();
        for fc in config.enabled_flows() {
            let flow = Flow::parse(fc.name).expect("configured flows are known flows");
            let schedule = fc.schedule.clone();
            let trigger = triggers[fc.name].clone();
            let ctx = ctx.clone();
            let metrics = metrics.clone();
            let readiness = readiness.clone();
            let flows_info = flows_info.clone();
            let mut stop = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let next = schedule.upcoming(Utc).next();
                    if let Ok(mut infos) = flows_info.write() {
                        if let Some(i) = infos.iter_mut().find(|i| i.name == flow.name()) {
                            i.next_run = next;
                        }
                    }
                    let wait = next
                        .and_then(|n| (n - Utc::now()).to_std().ok())
                        .unwrap_or(Duration::from_secs(3600));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = trigger.notified() => {
                            tracing::info!(flow = flow.name(), "run requested by an operator");
                        }
                        _ = stop.changed() => {}
                    }
                    if *stop.borrow() {
                        break;
                    }
                    let result = run_flow(&ctx, flow, RunOptions::default()).await;
                    match &result {
                        Ok(_) => {}
                        Err(FlowError::Busy { holder, .. }) => tracing::info!(
                            flow = flow.name(),
                            holder = %holder,
                            "another instance is running this flow; tick skipped"
                        ),
                        Err(e) => tracing::warn!(
                            flow = flow.name(),
                            error = %e,
                            "run failed; the next tick tries again"
                        ),
                    }
                    observe_run(&metrics, &readiness, flow, &result);
                    refresh_waiting(&ctx.ledger, &metrics).await;
                }
            }));
        }
        tracing::info!(
            http = %http_addr,
            flows = config.enabled_flows().count(),
            "service started"
        );
        Ok(Daemon {
            http_addr,
            shutdown,
            tasks,
            web,
            web_stop,
        })
    }

    /// Stops starting work, lets runs in flight finish their records, releases leases, and
    /// stops the HTTP port.
    pub async fn stop(self) {
        tracing::info!("shutting down: no new runs; runs in flight finish their records");
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.web_stop.notify_one();
        let _ = self.web.await;
        tracing::info!("service stopped");
    }
}

/// Refreshes the records-waiting gauges from the ledger.
pub async fn refresh_waiting(ledger: &Ledger, metrics: &Metrics) {
    if let Ok(counts) = ledger.counts_by_state().await {
        let rows: Vec<(String, String, i64)> = counts
            .into_iter()
            .map(|((flow, state), n)| (flow, state, n))
            .collect();
        metrics.set_waiting(&rows);
    }
}

fn auth_config(config: &Config) -> pp_web::AuthConfig {
    pp_web::AuthConfig {
        operators: config
            .web
            .operators
            .iter()
            .map(|o| (o.name.clone(), o.password_hash.clone()))
            .collect(),
        api_token: config.web.api_token.clone(),
        session_ttl: config.web.session_ttl,
        secure_cookies: false,
        max_attempts_per_minute: 5,
    }
}

/// `ping-primero run`: until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let ledger = connect(&config).await?;
    let daemon = Daemon::start(config, ledger, None).await?;
    println!(
        "ping-primero running; HTTP port http://{}",
        daemon.http_addr
    );
    crate::shutdown_signal().await;
    daemon.stop().await;
    Ok(())
}
