//! Simulator of the Primero v2 REST API (cases, referrals, users, tokens) for tests, the demo
//! and benchmarks of ping-primero, with a `/_sim/` control API (seed, state, options, request
//! log, fault injection, caseworker actions) and a scenario generator.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = pp_sim_primero::spawn(pp_sim_primero::Options::default(), 0).await?;
//! let doc = pp_sim_primero::scenario::generate(&Default::default());
//! sim.seed(doc).await.expect("seed");
//! println!("{}", sim.base_url());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod cases;
mod control;
mod faults;
mod filters;
mod http;
mod merge;
mod options;
mod referrals;
pub mod scenario;
mod schema;
mod store;
mod time;
mod users;

pub use faults::{FaultKind, FaultRule};
pub use options::{
    default_form_schema, default_users, FieldType, Options, SimUser, API_USER, DEFAULT_PASSWORD,
    UNHCR_USER,
};
pub use scenario::ScenarioOptions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running simulator.
#[derive(Debug)]
pub struct SimHandle {
    /// Bound address (127.0.0.1).
    pub addr: SocketAddr,
    sim: Arc<http::Sim>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Loads a seed document, as `POST /_sim/seed` does.
    pub async fn seed(&self, doc: serde_json::Value) -> Result<(), String> {
        let mut st = self.sim.lock();
        store::seed(&mut st, doc).map(|_| ())
    }

    /// The whole state, as `GET /_sim/state` returns it.
    pub fn state_json(&self) -> serde_json::Value {
        self.sim.lock().state_json()
    }

    /// Stops the server (waits up to 2 s for open connections, then aborts them).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(Duration::from_secs(2), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// Starts the simulator on `127.0.0.1:port` (`0` = any free port).
pub async fn spawn(opts: Options, port: u16) -> std::io::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let sim = Arc::new(http::Sim::new(store::Store::new(opts)));
    let app = axum::Router::new()
        .fallback(http::handle)
        .with_state(sim.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "sim-primero server stopped with an error");
        }
    });
    Ok(SimHandle {
        addr,
        sim,
        shutdown: Some(tx),
        task,
    })
}
