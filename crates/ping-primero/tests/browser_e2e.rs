//! End to end in a real headless Chromium: the built `ping-primero run` daemon against both
//! simulators, driven through its operator dashboard the way a country operator would.
//!
//! Unauthenticated requests to every page and action are refused; an operator signs in, sees
//! the four flows, presses "Run now" for `referrals-to-primero`, opens the run, searches the
//! referral whose intervention type has no value-map entry by its intervention number and
//! sees it rejected (`unmapped_intervention_type`). The operator then fixes the value map
//! (daemon stopped with SIGTERM, config edited, daemon started again), retries the record,
//! runs the flow again and sees the record confirmed, with its case in Primero. A screenshot
//! of each page is saved as `target/artefacts/screenshots/e2e-*.png`.

#[path = "../../web/tests/browser/mod.rs"]
mod browser;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use browser::Browser;
use fantoccini::{Client, Locator};
use futures::FutureExt;
use serde_json::{json, Value};

const USER: &str = "amina";
const PASSWORD: &str = "correct horse battery staple";
const FLOW: &str = "referrals-to-primero";
const FLOWS: [&str; 4] = [
    "referrals-to-primero",
    "decisions-to-progres",
    "referrals-to-progres",
    "decisions-to-primero",
];
/// An intervention type that `config/example.toml` does not map.
const UNMAPPED: &str = "Cash-Based Intervention";
/// Schedules that never fire during the test (midnight of the 1st of January).
const YEARLY: &str = "0 0 1 1 *";

/// The daemon process; killed if the test ends without stopping it.
struct Daemon(Option<Child>);

impl Daemon {
    fn start(config: &Path, env: &BTreeMap<String, String>) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_ping-primero"))
            .arg("--config")
            .arg(config)
            .arg("run")
            .envs(env)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the daemon starts");
        Daemon(Some(child))
    }

    /// Waits until `/healthz` answers, failing early if the process ends.
    async fn wait_healthy(&mut self, base: &str) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.0.as_mut().unwrap().try_wait().unwrap() {
                panic!("the daemon exited before it was healthy: {status}");
            }
            if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "no /healthz within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then the exit status (the daemon must exit 0 within 30 s).
    fn stop(mut self) {
        let mut child = self.0.take().unwrap();
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "SIGTERM delivered");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the daemon did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "daemon exit status after SIGTERM: {status}"
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().unwrap().port()
}

async fn text(c: &Client, locator: Locator<'_>) -> String {
    c.find(locator)
        .await
        .expect("the element is on the page")
        .text()
        .await
        .unwrap()
}

async fn h1(c: &Client) -> String {
    text(c, Locator::Css("main h1")).await
}

/// The value next to `<dt>{term}</dt>` on a record or run page.
async fn fact(c: &Client, term: &str) -> String {
    text(
        c,
        Locator::XPath(&format!("//dt[text()='{term}']/following-sibling::dd[1]")),
    )
    .await
}

/// Fills in and submits the sign-in form of the current page.
async fn sign_in(b: &Browser) {
    let c = &b.client;
    assert_eq!(c.current_url().await.unwrap().path(), "/login");
    for (id, value) in [("username", USER), ("password", PASSWORD)] {
        c.find(Locator::Id(id))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
    b.click_and_wait(Locator::Css("form.login button[type=submit]"))
        .await;
    assert_ne!(c.current_url().await.unwrap().path(), "/login", "signed in");
}

/// Presses "Run now" of `flow` on the overview and checks the confirmation.
async fn run_now(b: &Browser, base: &str, flow: &str) {
    let c = &b.client;
    c.goto(&format!("{base}/")).await.unwrap();
    b.click_and_wait(Locator::XPath(&format!(
        "//button[text()='Run {flow} now']"
    )))
    .await;
    assert_eq!(
        text(c, Locator::Css("p.flash")).await,
        format!("A run of {flow} was queued.")
    );
}

/// Reloads the runs list of `flow` until it holds `n` finished runs; returns the newest
/// run's path (`/runs/<id>`). A run that failed fails the test.
async fn wait_for_runs(c: &Client, base: &str, flow: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        c.goto(&format!("{base}/runs?flow={flow}")).await.unwrap();
        let rows = c.find_all(Locator::Css("main tbody tr")).await.unwrap();
        let mut outcomes = Vec::new();
        for row in &rows {
            outcomes.push(
                row.find(Locator::Css("td[data-label=Outcome]"))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap(),
            );
        }
        assert!(
            !outcomes.iter().any(|o| o == "failed"),
            "a run of {flow} failed: {outcomes:?}"
        );
        if outcomes.len() == n && outcomes.iter().all(|o| o == "completed") {
            let link = rows[0].find(Locator::Css("th a")).await.unwrap();
            return link.attr("href").await.unwrap().expect("a run link");
        }
        assert!(
            outcomes.len() <= n,
            "more runs of {flow} than the operator asked for: {outcomes:?}"
        );
        assert!(
            Instant::now() < deadline,
            "{n} completed run(s) of {flow} not listed within 30 s: {outcomes:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The service rows in Primero's state that came from LP intervention `lp`.
fn primero_rows_of(primero_state: &Value, lp: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    for case in primero_state["cases"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        for row in case["services_section"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if row["progres_interventionnumber"]
                .as_str()
                .is_some_and(|n| n.split(',').nth(1) == Some(lp))
            {
                rows.push(row);
            }
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_fixes_a_value_map_and_retries_a_rejected_referral_in_the_browser() {
    let started = Instant::now();
    let Some(b) = Browser::start(1280, 1400).await else {
        return;
    };
    // Close the browser session even when an assertion fails (else Chromium outlives the
    // test); the daemon is killed by its guard while the scenario unwinds.
    let outcome = AssertUnwindSafe(scenario(&b)).catch_unwind().await;
    b.stop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    eprintln!("browser e2e took {:?}", started.elapsed());
}

async fn scenario(b: &Browser) {
    let c = &b.client;

    // Both simulators, with four proGres referrals; the first has an unmapped type.
    let ping = pp_sim_ping::spawn(pp_sim_ping::Options::default(), 0)
        .await
        .unwrap();
    let primero = pp_sim_primero::spawn(pp_sim_primero::Options::default(), 0)
        .await
        .unwrap();
    let mut seed = pp_sim_ping::scenario::generate(&pp_sim_ping::scenario::ScenarioOptions {
        count: 4,
        seed: 8,
        ..Default::default()
    });
    let unmapped = &mut seed["interventions"][0];
    unmapped["intervention_type_description"] = json!(UNMAPPED);
    let lp = unmapped["progres_lpinterventionid"]
        .as_str()
        .unwrap()
        .to_owned();
    let number = unmapped["progres_interventionnumber"]
        .as_str()
        .unwrap()
        .to_owned();
    ping.seed(seed).await.unwrap();

    // The example configuration with one operator, yearly schedules and env overrides.
    let dir = tempfile::tempdir().unwrap();
    let config: PathBuf = dir.path().join("ping-primero.toml");
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/example.toml"),
    )
    .unwrap();
    assert!(
        !example.contains(UNMAPPED),
        "the example maps {UNMAPPED:?} already"
    );
    assert_eq!(example.matches("\noperators = [\n").count(), 1);
    let hash = pp_web::hash_password(PASSWORD).unwrap();
    let with_operator = example.replacen(
        "\noperators = [\n",
        &format!("\noperators = [\n  {{ name = \"{USER}\", password_hash = \"{hash}\" }},\n"),
        1,
    );
    std::fs::write(&config, &with_operator).unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in [
        ("PING_PASSWORD", "sim-ping-password"),
        ("PING_SUBSCRIPTION_KEY", "sim-subscription-key"),
        ("PRIMERO_PASSWORD", "sim-primero-password"),
        ("PING_PRIMERO_HASH_KEY", "e2e-test-hash-key-0123456789"),
        ("PING_PRIMERO__SERVICE__START_FROM", "2000-01-01T00:00:00Z"),
        ("PING_PRIMERO__PING__CHECK_STATUS_INTERVAL_MS", "100"),
    ] {
        env.insert(k.into(), v.into());
    }
    env.insert(
        "PING_PRIMERO__SERVICE__HTTP_LISTEN".into(),
        format!("127.0.0.1:{port}"),
    );
    env.insert("PING_PRIMERO__PING__BASE_URL".into(), ping.base_url());
    env.insert("PING_PRIMERO__PING__TOKEN_URL".into(), ping.token_url());
    env.insert("PING_PRIMERO__PRIMERO__BASE_URL".into(), primero.base_url());
    env.insert(
        "PING_PRIMERO__LEDGER__URL".into(),
        format!("sqlite://{}", dir.path().join("ledger.db").display()),
    );
    for flow in FLOWS {
        let name = flow.to_uppercase().replace('-', "_");
        env.insert(
            format!("PING_PRIMERO__FLOWS__{name}__ENABLED"),
            "true".into(),
        );
        env.insert(
            format!("PING_PRIMERO__FLOWS__{name}__SCHEDULE"),
            YEARLY.into(),
        );
    }

    let mut daemon = Daemon::start(&config, &env);
    daemon.wait_healthy(&base).await;

    // Without a session every page redirects to sign-in and every action is refused.
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for page in [
        "/",
        "/runs",
        "/runs/x",
        "/records",
        "/records/f/k",
        "/attention",
    ] {
        let r = anonymous.get(format!("{base}{page}")).send().await.unwrap();
        assert!(
            r.status().is_redirection(),
            "GET {page} without a session: {}",
            r.status()
        );
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            location == "/login" || location.starts_with("/login?next="),
            "GET {page} redirects to {location}"
        );
    }
    let rejected_key_path = format!("/records/{FLOW}/{lp}/retry");
    for action in [
        format!("/flows/{FLOW}/run"),
        rejected_key_path.clone(),
        "/attention/retry".to_string(),
        "/logout".to_string(),
    ] {
        let r = anonymous
            .post(format!("{base}{action}"))
            .form(&[("csrf", "guess"), ("flow", FLOW)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "POST {action} without a session");
    }

    // The browser lands on the sign-in form, for the overview and for a deep link.
    c.goto(&format!("{base}/attention")).await.unwrap();
    let url = c.current_url().await.unwrap();
    assert_eq!(
        (url.path(), url.query()),
        ("/login", Some("next=%2Fattention"))
    );
    c.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login");
    assert_eq!(h1(c).await, "Sign in");
    b.screenshot("e2e-01-login").await;

    // Sign in: four flows, none has run (the anonymous "run" was not queued).
    sign_in(b).await;
    assert_eq!(c.current_url().await.unwrap().path(), "/");
    let mut names = Vec::new();
    for h in c
        .find_all(Locator::Css("main section.card h2"))
        .await
        .unwrap()
    {
        names.push(h.text().await.unwrap());
    }
    assert_eq!(names, FLOWS.to_vec());
    let last_runs = c
        .find_all(Locator::XPath(
            "//section[@class='card']//dt[text()='Last run']/following-sibling::dd[1]",
        ))
        .await
        .unwrap();
    assert_eq!(last_runs.len(), 4);
    for dd in last_runs {
        assert_eq!(dd.text().await.unwrap(), "none yet");
    }
    b.screenshot("e2e-02-overview").await;

    // Run now, then the run in the runs list and on its own page.
    run_now(b, &base, FLOW).await;
    b.screenshot("e2e-03-run-queued").await;
    let run_path = wait_for_runs(c, &base, FLOW, 1).await;
    b.screenshot("e2e-04-runs").await;
    b.click_and_wait(Locator::Css(&format!("main tbody a[href='{run_path}']")))
        .await;
    assert_eq!(h1(c).await, format!("Run of {FLOW}"));
    assert_eq!(fact(c, "Outcome").await, "completed");
    let counts = text(
        c,
        Locator::XPath("//h2[text()='Counts']/following-sibling::table[1]"),
    )
    .await;
    for line in [
        "fetched 4",
        "confirmed 3",
        "rejected:unmapped_intervention_type 1",
    ] {
        assert!(counts.lines().any(|l| l == line), "{line} in {counts}");
    }
    let row = c
        .find(Locator::XPath(&format!(
            "//main//tbody/tr[th/a[text()='{lp}']]"
        )))
        .await
        .expect("the run page lists the rejected referral");
    let row_text = row.text().await.unwrap();
    assert!(
        row_text.contains("rejected") && row_text.contains("unmapped_intervention_type"),
        "{row_text}"
    );
    let touched = c
        .find_all(Locator::Css("main tbody tr th a[href^='/records/']"))
        .await
        .unwrap();
    assert_eq!(touched.len(), 4, "the run touched the four referrals");
    b.screenshot("e2e-05-run").await;

    // Search the rejected referral by its intervention number and open it.
    b.click_and_wait(Locator::LinkText("Records")).await;
    c.find(Locator::Id("q"))
        .await
        .unwrap()
        .send_keys(&number)
        .await
        .unwrap();
    b.click_and_wait(Locator::Css("form.search button")).await;
    let found = text(c, Locator::Css("main h2")).await;
    assert!(
        found.starts_with("1 record found"),
        "search by intervention number {number}: {found}"
    );
    b.screenshot("e2e-06-records-search").await;
    b.click_and_wait(Locator::LinkText(&lp)).await;
    let record_url = c.current_url().await.unwrap();
    assert_eq!(record_url.path(), format!("/records/{FLOW}/{lp}"));
    assert_eq!(fact(c, "State").await, "rejected");
    assert_eq!(fact(c, "Reason code").await, "unmapped_intervention_type");
    b.screenshot("e2e-07-record-rejected").await;

    b.click_and_wait(Locator::LinkText("Needs attention")).await;
    let source = c.source().await.unwrap();
    assert!(source.contains("unmapped_intervention_type"));
    assert!(source.contains(&format!("Retry {lp}")));
    b.screenshot("e2e-08-attention").await;
    assert!(
        primero_rows_of(&primero.state_json(), &lp).is_empty(),
        "the rejected referral did not reach Primero"
    );

    // Fix the value map: stop the daemon, add the missing type, start it again.
    daemon.stop();
    let anchor = "\n[maps.intervention_type_to_service]\n";
    assert_eq!(with_operator.matches(anchor).count(), 1);
    let fixed = with_operator.replacen(
        anchor,
        &format!("{anchor}\"{UNMAPPED}\" = \"alternative_care\"\n"),
        1,
    );
    std::fs::write(&config, fixed).unwrap();
    let mut daemon = Daemon::start(&config, &env);
    daemon.wait_healthy(&base).await;

    // The old session is gone: sign in again and land on the record.
    c.goto(record_url.as_str()).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/login");
    sign_in(b).await;
    assert_eq!(c.current_url().await.unwrap().path(), record_url.path());
    assert_eq!(fact(c, "State").await, "rejected");

    // Retry, run now, and see the record confirmed.
    b.click_and_wait(Locator::XPath("//button[text()='Retry this record']"))
        .await;
    assert_eq!(fact(c, "State").await, "pending");
    assert!(text(c, Locator::Css("p.flash"))
        .await
        .starts_with("1 record was sent back to pending"));
    b.screenshot("e2e-09-record-retried").await;
    run_now(b, &base, FLOW).await;
    wait_for_runs(c, &base, FLOW, 2).await;
    c.goto(record_url.as_str()).await.unwrap();
    let state = fact(c, "State").await;
    assert!(
        state == "confirmed" || state == "delivered",
        "state after the fix and the run: {state}"
    );
    assert_eq!(fact(c, "Reason code").await, "—");
    let ids = text(
        c,
        Locator::XPath("//h2[text()='Destination ids']/following-sibling::table[1]"),
    )
    .await;
    assert!(ids.contains("case_uuid") && ids.contains(&number), "{ids}");
    let history = text(
        c,
        Locator::XPath("//h2[text()='History']/following-sibling::table[1]"),
    )
    .await;
    assert!(
        history.contains("rejected")
            && history.contains(&format!("re-queued by operator {USER}"))
            && history.contains(&state),
        "{history}"
    );
    b.screenshot("e2e-10-record-delivered").await;
    let rows = primero_rows_of(&primero.state_json(), &lp);
    assert_eq!(rows.len(), 1, "one service row in Primero for {lp}");
    assert_eq!(rows[0]["service_type"], json!("alternative_care"));

    b.click_and_wait(Locator::LinkText("Needs attention")).await;
    assert!(!c.source().await.unwrap().contains(&format!("Retry {lp}")));
    b.screenshot("e2e-11-attention-after").await;
    b.click_and_wait(Locator::LinkText("Overview")).await;
    b.screenshot("e2e-12-overview-after").await;

    daemon.stop();
}
