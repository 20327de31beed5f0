//! Personal data never reaches the logs or the metrics, even at their most verbose: the
//! built binary's `demo` runs with `RUST_LOG=trace` (every crate: hyper, reqwest, sqlx, axum
//! and ours) and JSON log lines, and neither its stderr nor its stdout holds any name, date
//! of birth, phone number, address or free-text note of the scenario it seeds; `demo
//! --keep-running` serves `/metrics`, whose label values are flow names, states, reason
//! codes, system names and status codes only. The ledger is guarded by `daemon_e2e.rs`, the
//! demo's summary by `cli_demo.rs`.
//!
//! The values looked for come from the simulators' generators with the demo's options
//! (`common::demo_seeds`). The keep-running test checks that they are the values the running
//! demo's simulators actually hold (so a scan for stale values cannot pass unnoticed) and
//! scans that session's logs too, the running service's included; a third test plants a
//! value of each kind in a log line and checks that the scan finds it.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{demo_seeds, personal_values, Personal};

/// The demo's default number of referrals each way.
const REFERRALS: usize = 24;

const FLOWS: [&str; 4] = [
    "referrals-to-primero",
    "decisions-to-progres",
    "referrals-to-progres",
    "decisions-to-primero",
];

/// The binary with every crate logging at trace level, as JSON lines.
fn traced(args: &[&str]) -> Command {
    let mut cmd = common::bin();
    cmd.args(["--log-format", "json"])
        .args(args)
        .env("RUST_LOG", "trace")
        .env_remove("PING_PRIMERO_CONFIG");
    cmd
}

/// The demo's personal values, checked to be plenty of each kind.
fn demo_values() -> Vec<Personal> {
    let (ping, primero) = demo_seeds(REFERRALS);
    let values = personal_values(&ping, &primero);
    for (kind, at_least) in [
        ("name", 40),
        ("date of birth", 2 * REFERRALS),
        ("phone", 2 * REFERRALS),
        ("address", REFERRALS),
        ("free text", 10),
        ("e-mail", 5),
    ] {
        let n = values.iter().filter(|p| p.kind == kind).count();
        assert!(
            n >= at_least,
            "the scan has {n} value(s) of kind {kind}, expected at least {at_least}"
        );
    }
    values
}

/// Each personal value found in `text`, with the line it is on (the value itself replaced
/// by its kind, cut to 400 characters) to locate the log call.
fn leaks<'a>(text: &str, values: &'a [Personal]) -> Vec<(&'a Personal, String)> {
    let mut found = Vec::new();
    for p in values {
        if let Some(line) = text.lines().find(|l| l.contains(p.value.as_str())) {
            let masked = line.replace(p.value.as_str(), &format!("<{}>", p.kind));
            found.push((p, masked.chars().take(400).collect()));
        }
    }
    found
}

/// Fails with every leak found in `text` (`what` names the stream).
fn assert_no_leak(what: &str, text: &str, values: &[Personal]) {
    let found = leaks(text, values);
    let list: Vec<String> = found
        .iter()
        .map(|(p, line)| format!("  {} in: {line}", p.kind))
        .collect();
    assert!(
        found.is_empty(),
        "{} personal value(s) of the scenario in the {what}:\n{}",
        found.len(),
        list.join("\n")
    );
}

/// The scan finds a value planted in a log line like the binary's, in any of its kinds.
#[test]
fn the_scan_finds_a_planted_value() {
    let values = demo_values();
    let kinds: BTreeSet<&str> = values.iter().map(|p| p.kind).collect();
    for kind in kinds {
        let probe = values.iter().find(|p| p.kind == kind).unwrap();
        let line = format!(
            "{{\"level\":\"TRACE\",\"fields\":{{\"message\":\"x {} y\"}},\"target\":\"pp_flows\"}}",
            probe.value
        );
        let text = format!("first line\n{line}\nlast line\n");
        let found = leaks(&text, &values);
        assert!(
            found
                .iter()
                .any(|(p, l)| *p == probe && l.contains(&format!("<{kind}>"))),
            "the planted {kind} was not found"
        );
    }
    assert!(leaks("nothing personal here\n", &values).is_empty());
}

#[test]
fn demo_at_trace_level_logs_no_personal_data() {
    let values = demo_values();
    let started = Instant::now();
    let out: Output = traced(&["demo"]).output().expect("the binary runs");
    let took = started.elapsed();
    assert!(out.status.success(), "{}", common::shown(&out));
    assert!(took < Duration::from_secs(60), "demo took {took:?}");
    let stdout = common::stdout(&out);
    let stderr = common::stderr(&out);

    // The logs are JSON lines at the most verbose level of every crate.
    let mut targets = BTreeSet::new();
    let mut levels = BTreeSet::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line:.300}"));
        if let Some(t) = v["target"].as_str() {
            targets.insert(t.split("::").next().unwrap_or(t).to_owned());
        }
        if let Some(l) = v["level"].as_str() {
            levels.insert(l.to_owned());
        }
    }
    assert!(levels.contains("TRACE"), "no trace line: {levels:?}");
    for t in [
        "sqlx",
        "hyper_util",
        "reqwest",
        "pp_http",
        "pp_flows",
        "pp_ledger",
    ] {
        assert!(targets.contains(t), "no log line of {t}: {targets:?}");
    }
    assert!(stdout.contains("Summary"), "{}", common::shown(&out));

    assert_no_leak("demo's logs (stderr)", &stderr, &values);
    assert_no_leak("demo's stdout", &stdout, &values);
}

/// A child process killed (and reaped) when dropped, so that a failed assertion leaves
/// nothing running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// The URL after `label` on a line of the keep-running banner.
fn url_after(lines: &[String], label: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        let rest = l.trim_start().strip_prefix(label)?;
        rest.split_whitespace()
            .next()
            .filter(|u| u.starts_with("http://"))
            .map(str::to_owned)
    })
}

/// One sample line of the Prometheus text format: its metric name and its labels.
fn sample_labels(line: &str) -> (String, Vec<(String, String)>) {
    let Some(open) = line.find('{') else {
        let name = line.split_whitespace().next().unwrap_or("").to_owned();
        return (name, Vec::new());
    };
    let name = line[..open].to_owned();
    let mut labels = Vec::new();
    let mut chars = line[open + 1..].chars();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let key = key.trim_start_matches(',').trim().to_owned();
        if key.starts_with('}') || key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "malformed labels in {line}");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => value.push(chars.next().unwrap_or('\\')),
                Some('"') => break,
                Some(c) => value.push(c),
                None => panic!("unterminated label value in {line}"),
            }
        }
        labels.push((key, value));
        let rest = chars.as_str();
        if rest.starts_with('}') {
            break;
        }
    }
    (name, labels)
}

fn all(s: &str, ok: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.chars().all(ok)
}

/// Whether `value` is what label `key` may hold; `Err` for a label this test does not know.
fn allowed(key: &str, value: &str) -> Result<bool, String> {
    let code = |s: &str| all(s, |c| c.is_ascii_lowercase() || c == '_');
    Ok(match key {
        "flow" => FLOWS.contains(&value),
        "system" => ["ping", "primero"].contains(&value),
        "status" => value == "error" || (value.len() == 3 && all(value, |c| c.is_ascii_digit())),
        "outcome" => match value.split_once(':') {
            Some((a, b)) => code(a) && code(b),
            None => code(value),
        },
        "state" => code(value),
        "le" => value == "+Inf" || value.parse::<f64>().is_ok(),
        "method" => all(value, |c| c.is_ascii_uppercase()),
        "route" => {
            value.starts_with('/')
                && all(value, |c| {
                    c.is_ascii_alphanumeric() || "/_.-{}:".contains(c)
                })
        }
        other => return Err(format!("label {other}={value:?}")),
    })
}

#[tokio::test]
async fn running_demo_metrics_and_logs_hold_no_personal_data() {
    let values = demo_values();
    let started = Instant::now();
    let mut child = traced(&["demo", "--keep-running", "--http-port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the demo starts");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut child = KillOnDrop(child);
    // Both pipes are drained all along: a trace-level process fills a pipe buffer fast.
    let (tx, rx) = mpsc::channel::<String>();
    let out_reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    });

    // The banner of --keep-running, after the demo's summary.
    let mut lines: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(50);
    while !lines.iter().any(|l| l.trim_start().starts_with("try:")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => panic!(
                "no keep-running banner within 50 s; stdout so far:\n{}",
                lines.join("\n")
            ),
        }
    }
    let metrics_url = url_after(&lines, "metrics").expect("the metrics URL");
    let ping_url = url_after(&lines, "PING simulator").expect("the PING simulator's URL");
    let primero_url = url_after(&lines, "Primero sim").expect("the Primero simulator's URL");

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let get = |url: String| {
        let http = http.clone();
        async move {
            let resp = http.get(&url).send().await.expect("GET answered");
            assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
            resp.text().await.expect("a text body")
        }
    };
    let metrics = get(metrics_url).await;
    let state = format!(
        "{}\n{}",
        get(format!("{ping_url}/_sim/state")).await,
        get(format!("{primero_url}/_sim/state")).await
    );

    // Graceful stop (SIGTERM, as an operator's Ctrl-C), then everything it wrote.
    let ok = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "SIGTERM delivered");
    let stop_by = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < stop_by,
            "the demo did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    out_reader.join().unwrap();
    lines.extend(rx.try_iter());
    let stdout = lines.join("\n");
    let stderr = err_reader.join().unwrap();
    assert!(
        status.success(),
        "demo exit {status}\nstdout:\n{stdout}\nstderr (end):\n{}",
        &stderr[stderr.len().saturating_sub(3000)..]
    );
    assert!(stdout.contains("stopped"), "{stdout}");
    eprintln!("keep-running demo took {:?}", started.elapsed());

    // The values looked for are the ones the demo seeded: each is in the simulators' state
    // (digits-only forms of phone numbers, and the date of birth the demo removes from one
    // referral, excepted).
    let missing: Vec<&Personal> = values
        .iter()
        .filter(|p| !state.contains(p.value.as_str()))
        .filter(|p| !(p.kind == "phone" && all(&p.value, |c| c.is_ascii_digit())))
        .collect();
    assert!(
        missing.len() <= 1 && missing.iter().all(|p| p.kind == "date of birth"),
        "{} value(s) of the scan are not in the simulators' state (kinds {:?}): the scan \
         looks for values the demo no longer seeds (or the date changed during the test)",
        missing.len(),
        missing.iter().map(|p| p.kind).collect::<Vec<_>>()
    );

    // The metrics: the demo's runs are there, and every label value is a code.
    for flow in FLOWS {
        assert!(
            metrics.contains(&format!("ping_primero_runs_total{{flow=\"{flow}\"")),
            "no run of {flow} in:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("outcome=\"rejected:missing_required_fields\""),
        "no reason code in:\n{metrics}"
    );
    let mut samples = 0;
    for line in metrics.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        samples += 1;
        let (name, labels) = sample_labels(line);
        assert!(name.starts_with("ping_primero_"), "metric {name:?}");
        for (key, value) in labels {
            let safe = value.len() <= 64
                && all(&value, |c| {
                    c.is_ascii_alphanumeric() || "_.:+/{}-".contains(c)
                });
            assert!(safe, "{name}: label {key} has unsafe characters: {line}");
            match allowed(&key, &value) {
                Ok(true) => {}
                Ok(false) => panic!("{name}: label {key}={value:?} is not a {key}: {line}"),
                Err(e) => panic!(
                    "{name}: {e} is new; check that it cannot carry record data and add it \
                     to allowed()"
                ),
            }
        }
    }
    assert!(samples > 20, "only {samples} samples:\n{metrics}");
    assert_no_leak("/metrics text", &metrics, &values);

    // The logs and stdout of the whole session, the running service's included.
    assert!(stderr.contains("\"level\":\"TRACE\""), "no trace line");
    assert!(stderr.contains("service started"), "no daemon log line");
    assert_no_leak("keep-running demo's logs (stderr)", &stderr, &values);
    assert_no_leak("keep-running demo's stdout", &stdout, &values);
}
