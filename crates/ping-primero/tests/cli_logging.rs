//! The built binary's log lines on stderr: the format comes from `--log-format`, else from
//! the configuration's `[service] log_format` (file or environment override), else human;
//! human lines carry no colour escapes when stderr is not a terminal (here, a pipe).

mod common;

use common::*;

/// The log lines of `migrate` (the ledger's debug line "ledger connected" is asked for).
fn log_lines(s: &mut Setup, args: &[&str]) -> Vec<String> {
    s.set("RUST_LOG", "pp_ledger=debug");
    let mut all = args.to_vec();
    all.push("migrate");
    let out = s.run(&all);
    assert!(out.status.success(), "{}", shown(&out));
    let lines: Vec<String> = stderr(&out).lines().map(str::to_owned).collect();
    assert!(
        lines.iter().any(|l| l.contains("ledger connected")),
        "no log line: {}",
        shown(&out)
    );
    lines
}

fn all_json(lines: &[String]) -> bool {
    lines
        .iter()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object()))
}

fn none_json(lines: &[String]) -> bool {
    lines
        .iter()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
}

fn json_config() -> String {
    let example = example();
    assert!(example.contains("\nlog_format = \"human\"\n"));
    example.replace("\nlog_format = \"human\"\n", "\nlog_format = \"json\"\n")
}

#[test]
fn the_configured_log_format_applies_unless_the_flag_says_otherwise() {
    // The example says human.
    assert!(none_json(&log_lines(&mut Setup::new(), &[])));

    // `[service] log_format = "json"` in the file.
    let mut s = Setup::with_config(&json_config());
    let lines = log_lines(&mut s, &[]);
    assert!(all_json(&lines), "{lines:?}");
    // The flag wins over the file.
    let lines = log_lines(&mut s, &["--log-format", "human"]);
    assert!(none_json(&lines), "{lines:?}");

    // The environment override of the key.
    let mut s = Setup::new();
    s.set("PING_PRIMERO__SERVICE__LOG_FORMAT", "json");
    let lines = log_lines(&mut s, &[]);
    assert!(all_json(&lines), "{lines:?}");
    let lines = log_lines(&mut s, &["--log-format", "human"]);
    assert!(none_json(&lines), "{lines:?}");

    // The flag alone, on a file that says human.
    let lines = log_lines(&mut Setup::new(), &["--log-format", "json"]);
    assert!(all_json(&lines), "{lines:?}");
}

#[test]
fn human_lines_piped_carry_no_colour_escapes() {
    let mut s = Setup::new();
    s.set("RUST_LOG", "pp_ledger=debug");
    // NO_COLOR would hide the escapes whatever the terminal.
    let out = s
        .command(&["migrate"])
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", shown(&out));
    let err = stderr(&out);
    assert!(err.contains("ledger connected"), "{}", shown(&out));
    assert!(!err.contains('\u{1b}'), "colour escapes in {err:?}");
}
