//! The built binary's `demo` and `bench` commands, as a newcomer and an operator run them:
//! the demo finishes well under a minute with a summary of the four flows and every planted
//! problem case listed as needing a person, without printing the scenario's personal data;
//! the benchmark prints its per-flow figures (text and JSON) from a real run.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

fn run(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_ping-primero"))
        .args(args)
        .env_remove("PING_PRIMERO_CONFIG")
        .output()
        .expect("the binary runs");
    (out, started.elapsed())
}

fn stdout_of(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The numbers of the summary row of flow `id` (fetched, delivered, confirmed, skipped,
/// waiting, rejected, conflicts, failed).
fn summary_row(stdout: &str, id: &str, name: &str) -> Vec<u64> {
    let summary = stdout
        .split("\nSummary\n")
        .nth(1)
        .expect("a Summary section");
    let line = summary
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{id} {name}")))
        .unwrap_or_else(|| panic!("no summary row for {id} in:\n{summary}"));
    line.split_whitespace()
        .skip(2)
        .map(|n| n.parse().expect("a count"))
        .collect()
}

/// Given, middle and family names of the invented people the demo seeds (same generators,
/// same seeds as the demo's scenario).
fn seeded_names() -> Vec<String> {
    let mut names = Vec::new();
    let ping = pp_sim_ping::scenario::generate(&pp_sim_ping::scenario::ScenarioOptions {
        count: 24,
        seed: 42,
        ..Default::default()
    });
    for iv in ping["interventions"].as_array().unwrap() {
        for k in [
            "progres_givenname",
            "progres_familyname",
            "progres_middlename",
        ] {
            if let Some(n) = iv["individual"][k].as_str() {
                names.push(n.to_owned());
            }
        }
    }
    let primero = pp_sim_primero::scenario::generate(&pp_sim_primero::ScenarioOptions {
        count: 24,
        seed: 42,
        caseworkers: vec!["cw_amina".into(), "cw_john".into()],
        ..Default::default()
    });
    for case in primero["cases"].as_array().unwrap() {
        for k in ["name_first", "name_last", "name_middle"] {
            if let Some(n) = case[k].as_str() {
                names.push(n.to_owned());
            }
        }
    }
    names.retain(|n| n.len() >= 4);
    names
}

#[test]
fn demo_runs_the_four_flows_and_lists_what_needs_a_person() {
    let (out, took) = run(&["demo"]);
    let stdout = stdout_of(&out);
    assert!(took < Duration::from_secs(60), "demo took {took:?}");

    // Progress: one numbered line per step.
    for step in 1..=9 {
        assert!(
            stdout.contains(&format!("[{step}/9]")),
            "step {step} missing:\n{stdout}"
        );
    }

    // Summary per flow.
    let r11 = summary_row(&stdout, "1.1", "referrals-to-primero");
    let r12 = summary_row(&stdout, "1.2", "decisions-to-progres");
    let r21 = summary_row(&stdout, "2.1", "referrals-to-progres");
    let r22 = summary_row(&stdout, "2.2", "decisions-to-primero");
    for r in [&r11, &r12, &r21, &r22] {
        assert_eq!(r.len(), 9, "nine counts per row");
    }
    let (fetched, delivered, confirmed, rejected, conflicts) = (0, 1, 2, 6, 7);
    // The seed line counts what was seeded, planted problems included: 2.1 reads every
    // service referred to UNHCR.
    let seeded = stdout
        .lines()
        .find(|l| l.contains("[2/9]"))
        .expect("the seed line");
    let services: u64 = seeded
        .split(" services to UNHCR")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no service count in {seeded:?}"));
    assert_eq!(services, r21[fetched], "{seeded}");
    assert!(
        seeded.contains("Primero with 27 cases, 25 of them"),
        "24 generated, two for the individual with two cases, one for the incomplete \
         caseworker: {seeded}"
    );
    assert_eq!(r11[fetched], 24, "1.1 reads the 24 seeded referrals");
    assert_eq!(r11[conflicts], 1, "1.1 parks the individual with two cases");
    assert_eq!(
        r11[rejected], 2,
        "1.1 rejects the missing fields and the unmapped type"
    );
    assert_eq!(r11[confirmed], 21, "1.1 delivers and confirms the rest");
    assert_eq!(r12[confirmed], 21, "1.2 sends back every Primero decision");
    assert_eq!(
        r12[delivered], 21,
        "1.2's decisions are delivered and confirmed at once"
    );
    assert!(
        r21[confirmed] >= 24,
        "2.1 delivers the services referred to UNHCR"
    );
    assert_eq!(
        r21[rejected], 1,
        "2.1 rejects the incomplete caseworker's referral"
    );
    assert!(r22[confirmed] > 0, "2.2 sends proGres decisions to Primero");
    assert_eq!(r22[rejected], 1, "2.2 rejects the unknown status code");

    // Records that need a person, with their reasons explained.
    let attention = stdout
        .split("Records that need a person")
        .nth(1)
        .expect("a needs-a-person section");
    for reason in [
        "duplicate_cases",
        "missing_required_fields",
        "unmapped_intervention_type",
        "incomplete_caseworker",
        "unknown_status",
    ] {
        assert!(
            attention.contains(reason),
            "{reason} not listed:\n{attention}"
        );
    }
    assert!(attention.contains("What the reasons mean"));
    assert!(attention.contains("Fix in proGres") && attention.contains("Fix in Primero"));

    // No personal data of the scenario on screen.
    assert!(!stdout.contains("+2519"), "a phone number was printed");
    for name in seeded_names() {
        assert!(
            !stdout.contains(&name),
            "a seeded name was printed:\n{stdout}"
        );
    }
}

#[test]
fn bench_prints_per_flow_figures() {
    let (out, _) = run(&["bench", "--referrals", "50", "--latency-ms", "5"]);
    let stdout = stdout_of(&out);
    for header in [
        "records",
        "wall s",
        "rec/s",
        "calls/rec",
        "floor s",
        "wall/floor",
    ] {
        assert!(stdout.contains(header), "{header} missing:\n{stdout}");
    }
    for flow in [
        "1.1 referrals-to-primero",
        "1.2 decisions-to-progres",
        "2.1 referrals-to-progres",
        "2.2 decisions-to-primero",
    ] {
        assert!(stdout.contains(flow), "{flow} missing:\n{stdout}");
    }
    assert!(stdout.contains("Peak memory (VmHWM):"));
    assert!(stdout.contains("Targets:"));
    // The floor targets are set at 50 ms: at 5 ms the ratio is shown, not judged.
    for id in ["1.1", "1.2", "2.1", "2.2"] {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("{id} within 2x its floor")))
            .unwrap_or_else(|| panic!("no floor target for {id}:\n{stdout}"));
        assert!(
            line.trim_start().starts_with("n/a") && line.contains("not judged: set at 50 ms"),
            "{line}"
        );
    }

    let (out, _) = run(&[
        "bench",
        "--referrals",
        "50",
        "--latency-ms",
        "5",
        "--concurrency",
        "4",
        "--json",
        "--dashboard-records",
        "2000",
    ]);
    let v: Value = serde_json::from_str(&stdout_of(&out)).expect("one JSON object");
    let b = &v["flows"];
    assert_eq!(b["referrals"], 50);
    assert_eq!(b["ping_max_concurrency"], 4);
    assert_eq!(b["primero_max_concurrency"], 4);
    let flows = b["flows"].as_array().unwrap();
    let ids: Vec<&str> = flows.iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["1.1", "1.2", "2.1", "2.2"]);
    for f in flows {
        let records = f["records"].as_u64().unwrap();
        assert!(records >= 50, "{} read {records} records", f["id"]);
        let wall = f["wall_secs"].as_f64().unwrap();
        let floor = f["floor_secs"].as_f64().unwrap();
        assert!(wall > 0.0 && floor > 0.0, "{f}");
        // The floor is calls x latency / concurrency of the busier system.
        let total = |system: &str| -> u64 {
            f["calls"]["by_endpoint"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| k.starts_with(system))
                .map(|(_, n)| n.as_u64().unwrap())
                .sum()
        };
        let expected = total("ping:").max(total("primero:")) as f64 * 0.005 / 4.0;
        assert!((floor - expected).abs() < 1e-9, "floor {floor} for {f}");
        assert!((f["wall_over_floor"].as_f64().unwrap() - wall / floor).abs() < 1e-6);
    }
    assert!(v["peak_memory_mb"].as_f64().unwrap() > 1.0);
    let targets = v["targets"].as_array().unwrap();
    assert!(!targets.is_empty());
    for t in targets {
        assert!(t["met"].is_null() == t["not_judged"].is_string(), "{t}");
    }
    let pages = v["dashboard"]["pages"].as_array().unwrap();
    assert!(!pages.is_empty());
    assert!(pages.iter().all(|p| p["median_ms"].as_f64().unwrap() > 0.0));
}
