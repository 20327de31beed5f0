//! End to end: the built `ping-primero run` daemon against both simulators, with schedules
//! every second. It is stopped with SIGTERM in the middle of its work, restarted, and must
//! end with every referral delivered exactly once, every flow completed, a clean exit on
//! each SIGTERM, and a ledger that holds none of the scenario's personal data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const N: usize = 30;

fn daemon(config: &Path, env: &BTreeMap<String, String>) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ping-primero"))
        .arg("--config")
        .arg(config)
        .arg("run")
        .envs(env)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the daemon starts")
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "SIGTERM delivered");
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon did not exit within {within:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// LP intervention ids of the service rows 1.1 wrote into Primero, with their count.
fn delivered_interventions(primero_state: &Value) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    let cases = primero_state["cases"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for case in cases {
        for row in case["services_section"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if let Some(n) = row["progres_interventionnumber"].as_str() {
                if let Some(lp) = n.split(',').nth(1) {
                    *seen.entry(lp.to_owned()).or_insert(0) += 1;
                }
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_survives_sigterm_and_delivers_every_record_once() {
    let ping = pp_sim_ping::spawn(pp_sim_ping::Options::default(), 0)
        .await
        .unwrap();
    let primero = pp_sim_primero::spawn(pp_sim_primero::Options::default(), 0)
        .await
        .unwrap();
    let ping_seed = pp_sim_ping::scenario::generate(&pp_sim_ping::scenario::ScenarioOptions {
        count: N,
        seed: 11,
        ..Default::default()
    });
    let primero_seed =
        pp_sim_primero::scenario::generate(&pp_sim_primero::scenario::ScenarioOptions {
            count: N,
            seed: 11,
            caseworkers: vec!["cw_amina".into(), "cw_john".into()],
            ..Default::default()
        });
    ping.seed(ping_seed.clone()).await.unwrap();
    primero.seed(primero_seed.clone()).await.unwrap();
    let lp_ids: BTreeSet<String> = ping_seed["interventions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["progres_lpinterventionid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(lp_ids.len(), N);

    // Slow every API request down so that the SIGTERM lands while runs are busy.
    let http = reqwest::Client::new();
    for base in [ping.base_url(), primero.base_url()] {
        http.post(format!("{base}/_sim/faults"))
            .json(&json!({"rules": [{"endpoint": "*", "kind": "latency", "ms": 40}]}))
            .send()
            .await
            .unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ping-primero.toml");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/example.toml"),
        &config,
    )
    .unwrap();
    let db = dir.path().join("ledger.db");
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in [
        ("PING_PASSWORD", "sim-ping-password"),
        ("PING_SUBSCRIPTION_KEY", "sim-subscription-key"),
        ("PRIMERO_PASSWORD", "sim-primero-password"),
        ("PING_PRIMERO_HASH_KEY", "e2e-test-hash-key-0123456789"),
        ("PING_PRIMERO__SERVICE__HTTP_LISTEN", "127.0.0.1:0"),
        ("PING_PRIMERO__SERVICE__START_FROM", "2000-01-01T00:00:00Z"),
        ("PING_PRIMERO__LEDGER__LEASE_TTL_SECS", "5"),
        ("PING_PRIMERO__PING__CHECK_STATUS_INTERVAL_MS", "100"),
    ] {
        env.insert(k.into(), v.into());
    }
    env.insert("PING_PRIMERO__PING__BASE_URL".into(), ping.base_url());
    env.insert("PING_PRIMERO__PING__TOKEN_URL".into(), ping.token_url());
    env.insert("PING_PRIMERO__PRIMERO__BASE_URL".into(), primero.base_url());
    env.insert(
        "PING_PRIMERO__LEDGER__URL".into(),
        format!("sqlite://{}", db.display()),
    );
    for flow in [
        "REFERRALS_TO_PRIMERO",
        "DECISIONS_TO_PROGRES",
        "REFERRALS_TO_PROGRES",
        "DECISIONS_TO_PRIMERO",
    ] {
        env.insert(
            format!("PING_PRIMERO__FLOWS__{flow}__SCHEDULE"),
            "* * * * * *".into(),
        );
    }

    // First daemon: SIGTERM as soon as some referrals reached Primero but not all.
    let mut first = daemon(&config, &env);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered = delivered_interventions(&primero.state_json()).len();
        if delivered > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "1.1 delivered nothing within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sigterm(&first);
    let status = wait_exit(&mut first, Duration::from_secs(60));
    assert!(status.success(), "first daemon exit status {status}");
    let after_first = delivered_interventions(&primero.state_json());
    assert!(
        after_first.values().all(|n| *n == 1),
        "no referral twice after the first daemon"
    );

    // Second daemon: runs until every referral is confirmed each way.
    let mut second = daemon(&config, &env);
    let ledger = pp_ledger::Ledger::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let services: usize = primero_seed["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["services_section"].as_array().map_or(0, |s| s.len()))
        .sum();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let counts = ledger.counts_by_state().await.unwrap();
        let confirmed = |flow: &str| {
            counts
                .get(&(flow.to_owned(), "confirmed".to_owned()))
                .copied()
                .unwrap_or(0) as usize
        };
        let runs = ledger.last_runs().await.unwrap();
        let completed: BTreeSet<String> = runs
            .iter()
            .filter(|r| r.outcome == pp_ledger::RunOutcome::Completed)
            .map(|r| r.flow.clone())
            .collect();
        if confirmed("referrals-to-primero") == N
            && confirmed("referrals-to-progres") == services
            && completed.len() == 4
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not everything confirmed within 120 s: {counts:?}, completed {completed:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sigterm(&second);
    let status = wait_exit(&mut second, Duration::from_secs(60));
    assert!(status.success(), "second daemon exit status {status}");

    // Exactly once: each proGres referral is one service row in Primero...
    let delivered = delivered_interventions(&primero.state_json());
    assert_eq!(
        delivered.keys().cloned().collect::<BTreeSet<_>>(),
        lp_ids,
        "every proGres referral reached Primero"
    );
    assert!(
        delivered.values().all(|n| *n == 1),
        "a referral was delivered twice: {delivered:?}"
    );
    // ...and each Primero service referred to UNHCR is one interoperability referral.
    let ping_state = ping.state_json();
    let mut by_service: BTreeMap<String, usize> = BTreeMap::new();
    for r in ping_state["interop_referrals"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        if let Some(s) = r["progres_orgreferralid"].as_str() {
            *by_service.entry(s.to_owned()).or_insert(0) += 1;
        }
    }
    assert_eq!(by_service.len(), services);
    assert!(by_service.values().all(|n| *n == 1));

    // No personal data of the scenario anywhere in the ledger's files.
    ledger.close().await;
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("ledger.db"))
        {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut personal: BTreeSet<String> = BTreeSet::new();
    for i in ping_seed["interventions"].as_array().unwrap() {
        let ind = &i["individual"];
        for k in [
            "progres_givenname",
            "progres_familyname",
            "progres_dateofbirth",
            "progres_primaryphonenumber",
        ] {
            if let Some(v) = ind[k].as_str() {
                personal.insert(v.to_owned());
            }
        }
    }
    for c in primero_seed["cases"].as_array().unwrap() {
        for k in [
            "name_first",
            "name_last",
            "date_of_birth",
            "telephone_current",
        ] {
            if let Some(v) = c[k].as_str() {
                personal.insert(v.to_owned());
            }
        }
    }
    assert!(personal.len() > N, "the scan has values to look for");
    let found: Vec<&String> = personal
        .iter()
        .filter(|v| text.contains(v.as_str()))
        .collect();
    assert!(
        found.is_empty(),
        "{} personal value(s) of the scenario found in the ledger",
        found.len()
    );
}
