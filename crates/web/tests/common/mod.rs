//! Shared fixtures of the web crate's integration tests: a temporary SQLite ledger seeded
//! through the ledger's API, the HTTP port served on 127.0.0.1:0, and sign-in helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use pp_ledger::{Cause, ErrorClass, Ledger, RecordChange, RecordState, RunOutcome};
use pp_web::{AuthConfig, FlowInfo, Metrics, WebState};
use secrecy::SecretString;

pub const USER: &str = "amina";
pub const PASSWORD: &str = "correct horse battery";
pub const TOKEN: &str = "script-token-0123456789abcdef";

pub const FLOWS: [&str; 4] = [
    "referrals-to-primero",
    "decisions-to-progres",
    "referrals-to-progres",
    "decisions-to-primero",
];

/// An argon2id hash with small parameters so that tests stay fast in debug builds.
pub fn cheap_hash(pw: &str) -> String {
    let params = Params::new(1024, 1, 1, None).unwrap();
    let salt = SaltString::generate(&mut OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(pw.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// A running server over a temporary ledger.
pub struct Server {
    pub base: String,
    pub ledger: Ledger,
    pub state: WebState,
    /// Flows passed to "Run now".
    pub queued: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Ids of the seeded data the tests look for.
pub struct Seeded {
    /// A completed run of referrals-to-primero.
    pub run_id: String,
    /// A run of decisions-to-primero that failed.
    pub failed_run_id: String,
}

pub const REJECTED_KEY: &str = "3f2c1a90-7b1e-4c55-9d1a-aa0000000001";
pub const REJECTED_INTERVENTION: &str = "INT-2024-000123";
pub const CONFIRMED_KEY: &str = "3f2c1a90-7b1e-4c55-9d1a-aa0000000002";
pub const CONFIRMED_CASE_ID: &str = "c0ffee11";
pub const CONFLICT_KEY: &str = "3f2c1a90-7b1e-4c55-9d1a-aa0000000003";
pub const PING_TX: &str = "SPH-TX-55501";
pub const NASTY_KEY: &str = "svc-<b>bold</b>";

/// Two runs and a handful of records in every state across the four flows.
pub async fn seed(ledger: &Ledger) -> Seeded {
    let flow = FLOWS[0];
    let run = ledger.start_run(flow, "test-instance").await.unwrap();
    let changes = vec![
        RecordChange::new(flow, REJECTED_KEY, RecordState::Rejected)
            .with_reason(
                "unmapped_language",
                "language value `lang_xx` has no entry in the language map",
            )
            .with_error_class(ErrorClass::Validation)
            .with_dest_id("intervention_number", REJECTED_INTERVENTION)
            .with_attempt(),
        RecordChange::new(flow, CONFIRMED_KEY, RecordState::Confirmed)
            .with_dest_id("case_id", CONFIRMED_CASE_ID)
            .with_dest_id("case_uuid", "a1b2c3d4-0000-4000-8000-000000000001")
            .with_ping_transaction_id(PING_TX)
            .with_attempt(),
        RecordChange::new(flow, CONFLICT_KEY, RecordState::Conflict)
            .with_reason("duplicate_cases", "2 cases match: a1, a2")
            .with_error_class(ErrorClass::Conflict),
    ];
    ledger
        .apply(&changes, None, &Cause::Run(run.clone()))
        .await
        .unwrap();
    let counts = BTreeMap::from([
        ("fetched".to_string(), 3),
        ("confirmed".to_string(), 1),
        ("rejected".to_string(), 1),
        ("conflict".to_string(), 1),
    ]);
    ledger
        .finish_run(&run, RunOutcome::Completed, &counts, None)
        .await
        .unwrap();

    let flow4 = FLOWS[3];
    let run4 = ledger.start_run(flow4, "test-instance").await.unwrap();
    let changes = vec![
        RecordChange::new(flow4, "ref-guid-9|accepted", RecordState::Failed)
            .with_reason("case_not_found", "case_id c9 not found")
            .with_error_class(ErrorClass::Transient)
            .with_next_retry_at(chrono::Utc::now() + chrono::Duration::minutes(30)),
        RecordChange::new(flow4, NASTY_KEY, RecordState::Rejected)
            .with_reason("validation_error", "<script>alert(1)</script> refused"),
    ];
    ledger
        .apply(&changes, None, &Cause::Run(run4.clone()))
        .await
        .unwrap();
    ledger
        .finish_run(
            &run4,
            RunOutcome::Failed,
            &BTreeMap::new(),
            Some("ping: 503 after retries"),
        )
        .await
        .unwrap();
    Seeded {
        run_id: run.0,
        failed_run_id: run4.0,
    }
}

pub fn flows() -> Vec<FlowInfo> {
    FLOWS
        .iter()
        .enumerate()
        .map(|(i, f)| FlowInfo {
            name: f.to_string(),
            schedule: if i % 2 == 0 { "0 0 * * *" } else { "0 * * * *" }.into(),
            next_run: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
            enabled: i != 2,
        })
        .collect()
}

/// Serves the HTTP port over a fresh ledger with one operator and the API token.
pub async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
    let ledger = Ledger::connect(&url).await.unwrap();
    let queued: Arc<Mutex<Vec<String>>> = Arc::default();
    let q = queued.clone();
    let state = WebState::new(
        ledger.clone(),
        Metrics::new(),
        AuthConfig {
            operators: vec![(USER.into(), cheap_hash(PASSWORD))],
            api_token: Some(SecretString::from(TOKEN)),
            session_ttl: Duration::from_secs(600),
            ..AuthConfig::default()
        },
    )
    .with_flows(flows())
    .with_run_now(move |flow| {
        q.lock().unwrap().push(flow);
        true
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serve_state = state.clone();
    tokio::spawn(async move {
        pp_web::serve(listener, serve_state, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Server {
        base,
        ledger,
        state,
        queued,
        _dir: dir,
        stop: Some(stop),
    }
}

/// A client with a cookie jar that does not follow redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of the first hidden `csrf` field of a page.
pub fn csrf_of(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("page has a csrf field") + marker.len();
    let end = html[start..].find('"').unwrap();
    html[start..start + end].to_string()
}

/// Fetches the sign-in form and posts the credentials; returns the POST's response.
pub async fn sign_in(c: &reqwest::Client, base: &str, user: &str, pw: &str) -> reqwest::Response {
    let form = c.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let csrf = csrf_of(&form.text().await.unwrap());
    c.post(format!("{base}/login"))
        .form(&[
            ("username", user),
            ("password", pw),
            ("csrf", &csrf),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap()
}

/// Signs in as the test operator and returns the session's CSRF token (read from a page).
pub async fn signed_in(c: &reqwest::Client, base: &str) -> String {
    let res = sign_in(c, base, USER, PASSWORD).await;
    assert_eq!(res.status(), 303, "sign-in should redirect");
    let page = c.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    csrf_of(&page.text().await.unwrap())
}
