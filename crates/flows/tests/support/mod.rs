//! Test environment shared by the flow tests: both simulators on free ports, a configuration
//! pointing at them (the simulators' default credentials), a throwaway SQLite ledger, and
//! helpers for the simulators' `/_sim/` control API. Every test talks to the simulators over
//! real HTTP, exactly as the service does in production.
#![allow(dead_code)]

pub mod proxy;
pub mod seed;

use std::sync::Arc;
use std::time::Duration;

use pp_config::{Config, StartFrom};
use pp_flows::{run_flow, Flow, FlowContext, FlowError, Report, RunOptions};
use pp_ledger::Ledger;
use serde_json::Value;
use tokio::sync::watch;

/// A clock `ahead` of the real one: later runs find failed records due for retry.
struct Ahead(chrono::Duration);

impl pp_flows::Clock for Ahead {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.0
    }
}

pub struct TestEnv {
    pub ping: pp_sim_ping::SimHandle,
    pub primero: pp_sim_primero::SimHandle,
    pub ctx: FlowContext,
    pub ledger: Ledger,
    pub config: Arc<Config>,
    pub http: reqwest::Client,
    pub shutdown: watch::Sender<bool>,
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    /// Both simulators with default options, default demo configuration.
    pub async fn start() -> TestEnv {
        Self::start_with(|_| {}).await
    }

    /// Both simulators with default options; `tweak` adjusts the configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestEnv {
        let ping = pp_sim_ping::spawn(pp_sim_ping::Options::default(), 0)
            .await
            .expect("PING simulator starts");
        let primero = pp_sim_primero::spawn(pp_sim_primero::Options::default(), 0)
            .await
            .expect("Primero simulator starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger_url = format!("sqlite://{}", dir.path().join("ledger.db").display());
        let mut config = pp_config::demo_config(
            &ping.base_url(),
            &ping.token_url(),
            &primero.base_url(),
            &ledger_url,
        );
        // Read everything the simulators hold, whatever its age.
        let epoch = StartFrom::At("2000-01-01T00:00:00Z".parse().unwrap());
        config.service.start_from = epoch;
        for f in &mut config.flows {
            f.start_from = epoch;
        }
        // Fast retries so fault tests stay quick.
        for http in [&mut config.ping.http, &mut config.primero.http] {
            http.retry.initial_backoff = Duration::from_millis(20);
            http.retry.max_backoff = Duration::from_millis(200);
            http.retry.max_elapsed = Duration::from_secs(10);
            http.request_timeout = Duration::from_secs(5);
        }
        config.ping.check_status_interval = Duration::from_millis(50);
        config.ping.check_status_timeout = Duration::from_secs(5);
        tweak(&mut config);
        let config = Arc::new(config);
        let ledger = Ledger::connect(&ledger_url).await.expect("ledger");
        let (tx, rx) = watch::channel(false);
        let ctx = FlowContext::new(config.clone(), ledger.clone(), rx).expect("context");
        TestEnv {
            ping,
            primero,
            ctx,
            ledger,
            config,
            http: reqwest::Client::new(),
            shutdown: tx,
            dir,
        }
    }

    /// Runs a flow once and returns its report (panics when the run itself fails).
    pub async fn run(&self, flow: Flow) -> Report {
        self.try_run(flow)
            .await
            .unwrap_or_else(|e| panic!("{flow} failed: {e}"))
    }

    /// Runs a flow once with the clock `minutes` ahead (past the failed records' retry
    /// times) and returns its report (panics when the run itself fails).
    pub async fn run_later(&self, flow: Flow, minutes: i64) -> Report {
        let ahead = Ahead(chrono::Duration::minutes(minutes));
        let ctx = self.ctx.clone().with_clock(Arc::new(ahead));
        run_flow(&ctx, flow, RunOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{flow} failed: {e}"))
    }

    pub async fn try_run(&self, flow: Flow) -> Result<Report, FlowError> {
        run_flow(&self.ctx, flow, RunOptions::default()).await
    }

    pub async fn dry_run(&self, flow: Flow) -> Report {
        run_flow(&self.ctx, flow, RunOptions { dry_run: true })
            .await
            .unwrap_or_else(|e| panic!("{flow} dry run failed: {e}"))
    }

    pub async fn ping_post(&self, path: &str, body: Value) -> Value {
        post(&self.http, &self.ping.base_url(), path, body).await
    }

    pub async fn primero_post(&self, path: &str, body: Value) -> Value {
        post(&self.http, &self.primero.base_url(), path, body).await
    }

    pub async fn ping_get(&self, path: &str) -> Value {
        get(&self.http, &self.ping.base_url(), path).await
    }

    pub async fn primero_get(&self, path: &str) -> Value {
        get(&self.http, &self.primero.base_url(), path).await
    }

    /// DELETE on the PING simulator (its answer's status is not checked).
    pub async fn ping_delete(&self, path: &str) {
        delete(&self.http, &self.ping.base_url(), path).await
    }

    /// DELETE on the Primero simulator (its answer's status is not checked).
    pub async fn primero_delete(&self, path: &str) {
        delete(&self.http, &self.primero.base_url(), path).await
    }

    /// Clears both simulators' request logs.
    pub async fn clear_requests(&self) {
        self.ping_delete("/_sim/requests").await;
        self.primero_delete("/_sim/requests").await;
    }
}

async fn delete(http: &reqwest::Client, base: &str, path: &str) {
    http.delete(format!("{base}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("DELETE {path}: {e}"));
}

async fn post(http: &reqwest::Client, base: &str, path: &str, body: Value) -> Value {
    let resp = http
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert!(status.is_success(), "POST {path} -> {status}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn get(http: &reqwest::Client, base: &str, path: &str) -> Value {
    let resp = http
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert!(
        resp.status().is_success(),
        "GET {path} -> {}",
        resp.status()
    );
    resp.json().await.expect("JSON body")
}
