//! Simulator of PING, UNHCR's gateway in front of proGres v4 (and of the Azure AD B2C token
//! endpoint in front of PING), for tests and demos of ping-primero.
//!
//! It implements the "Simulator contract" of `shared/specs/ping-api.md`: B2C ROPC tokens,
//! APIM subscription key and bearer checks, retrieval with paging for SHP-2747/2358/2795/2796,
//! sync ingestion (SHP-2748, SHP-2284), async ingestion (SHP-2731) with check-status, a
//! `/_sim/` control API, fault injection and a scenario generator. It shares no code with the
//! PING client so that both are checked against the spec independently.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = pp_sim_ping::spawn(pp_sim_ping::Options::default(), 0).await?;
//! let doc = pp_sim_ping::scenario::generate(&pp_sim_ping::scenario::ScenarioOptions::default());
//! sim.seed(doc).await.expect("seed");
//! println!("PING at {}, token at {}", sim.base_url(), sim.token_url());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod conn;
mod control;
pub mod faults;
mod ingest;
mod json;
pub mod model;
mod options;
mod rows;
pub mod scenario;
mod server;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use options::{
    AsyncRepeat, AuthErrorBody, BatchMode, CheckStatusItemKeys, EmptyRecordCount, ErrorMode,
    IngestionErrorShape, InvalidOptionCode, Options, PagingMode, ShippingProcesses,
    UnknownTransactionData,
};
pub use server::{RequestLogEntry, CHECKSTATUS_PATH, RETRIEVE_PATH, TOKEN_PATH};

use server::Shared;

/// A new GUID (lower-case, hyphenated; a random version 4 UUID). Its bytes come from the
/// thread's CSPRNG rather than a system call each: an ingested batch makes one per record.
pub(crate) fn new_guid() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// A running simulator. Dropping the handle stops the server as well.
pub struct SimHandle {
    /// Bound address (127.0.0.1:port).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`, the PING base URL (and B2C `tokenUrl`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Full token URL: base URL + the B2C tenant/policy path.
    pub fn token_url(&self) -> String {
        format!("{}{}", self.base_url(), TOKEN_PATH)
    }

    /// Loads/merges a seed document (same as `POST /_sim/seed`).
    pub async fn seed(&self, doc: serde_json::Value) -> Result<(), String> {
        control::apply_seed(&self.shared, doc).map(|_| ())
    }

    /// Merges a typed seed (e.g. `scenario::generate_seed`), skipping the JSON round trip.
    pub fn seed_doc(&self, doc: model::SeedDoc) -> Result<(), String> {
        server::lock(&self.shared.store).merge_seed(doc)
    }

    /// All state as JSON (same as `GET /_sim/state`).
    pub fn state_json(&self) -> serde_json::Value {
        server::lock(&self.shared.store).to_json()
    }

    /// Current options.
    pub fn options(&self) -> Options {
        self.shared.opts()
    }

    /// Applies a partial options document (same as `POST /_sim/options`).
    pub fn set_options(&self, patch: &serde_json::Value) -> Result<(), String> {
        self.shared
            .opts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .merge_json(patch)
    }

    /// Replaces the fault rules (same as `POST /_sim/faults`).
    pub fn set_faults(&self, doc: faults::FaultsDoc) -> Result<(), String> {
        doc.validate()?;
        if doc.expire_tokens {
            server::lock(&self.shared.tokens).clear();
        }
        server::lock(&self.shared.faults).rules = doc.rules;
        Ok(())
    }

    /// The request log (same as `GET /_sim/requests`).
    pub fn requests(&self) -> Vec<RequestLogEntry> {
        server::lock(&self.shared.requests)
            .entries
            .iter()
            .cloned()
            .collect()
    }

    /// Stops the server (waits up to 5 s for open connections, then aborts).
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// Starts the simulator on 127.0.0.1:`port` (0 = any free port).
pub async fn spawn(opts: Options, port: u16) -> std::io::Result<SimHandle> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(opts));
    let app = server::router(shared.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(
            conn::KillListener(listener),
            app.into_make_service_with_connect_info::<conn::ConnHandle>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "ping-sim server stopped with an error");
        }
    });
    tracing::info!(%addr, "ping-sim listening");
    Ok(SimHandle {
        addr,
        shared,
        stop: Some(stop),
        task,
    })
}
