//! The built binary's exit codes as the README states them: 2 for a command invoked wrongly
//! (unknown flow, a retry with nothing to retry, a state that cannot be retried, a purge of
//! zero days), 1 for a command that could not do its work (here, a ledger it cannot open).

mod common;

use common::*;

#[test]
fn usage_errors_exit_2() {
    let s = Setup::new();
    for args in [
        &["run-once", "9.9"][..],
        &["ledger", "retry"],
        &[
            "ledger",
            "retry",
            "--state",
            "confirmed",
            "--flow",
            "decisions-to-progres",
        ],
        &["ledger", "purge", "--older-than-days", "0"],
        &["ledger", "list", "--state", "lost"],
    ] {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", shown(&out));
        assert!(stderr(&out).contains("error"), "{args:?}: {}", shown(&out));
    }
}

#[test]
fn a_ledger_that_cannot_be_opened_exits_1() {
    let mut s = Setup::new();
    let missing = s.dir.path().join("no-such-dir").join("ledger.db");
    s.set(
        "PING_PRIMERO__LEDGER__URL",
        &format!("sqlite://{}", missing.display()),
    );
    for args in [&["ledger", "list"][..], &["status"]] {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", shown(&out));
    }
}

#[test]
fn a_flow_is_named_by_its_name_or_its_short_id() {
    let s = Setup::new();
    for args in [
        &["ledger", "list", "--flow", "1.1"][..],
        &["ledger", "list", "--flow", "referrals-to-primero"],
        &["ledger", "runs", "--flow", "2.2"],
        &["ledger", "retry", "--flow", "1.2", "--operator", "cli-test"],
    ] {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", shown(&out));
    }
    let out = s.run(&["ledger", "list", "--flow", "1.1"]);
    assert_eq!(stdout(&out).trim(), "no records", "{}", shown(&out));
    for args in [
        &["run-once", "--help"][..],
        &["ledger", "list", "--help"],
        &["ledger", "retry", "--help"],
        &["ledger", "runs", "--help"],
    ] {
        let help = stdout(&s.run(args));
        assert!(help.contains("short id"), "{args:?}:\n{help}");
        assert!(help.contains("(1.1) "), "{args:?}:\n{help}");
    }
}

#[test]
fn help_texts_say_what_is_accepted() {
    let help = |args: &[&str]| {
        let out = bin().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", shown(&out));
        stdout(&out)
    };
    let list = help(&["ledger", "list", "--help"]);
    let state = list
        .split("--state <STATE>")
        .nth(1)
        .expect("--state in the help");
    for s in [
        "pending",
        "delivered",
        "confirmed",
        "rejected",
        "conflict",
        "failed",
    ] {
        assert!(state.contains(s), "{s} not listed for --state:\n{list}");
    }
    let retry = help(&["ledger", "retry", "-h"]);
    assert!(
        retry.contains("[possible values: rejected, conflict, failed]"),
        "{retry}"
    );
    let purge = help(&["ledger", "purge", "--help"]);
    assert!(purge.contains("at least 1"), "{purge}");

    // demo, bench and sim read no configuration: no --config in their help, and one given
    // is refused rather than ignored.
    for cmd in ["demo", "bench", "sim"] {
        let text = help(&[cmd, "--help"]);
        assert!(!text.contains("--config"), "{cmd} offers --config:\n{text}");
        for args in [
            &[cmd, "--config", "x.toml"][..],
            &["--config", "x.toml", cmd],
        ] {
            let out = bin().args(args).output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", shown(&out));
        }
    }
}

#[test]
fn the_configuration_file_is_given_before_or_after_the_command() {
    let s = Setup::new();
    let config = s.config.to_str().unwrap();
    for args in [
        &["--config", config, "ledger", "list"][..],
        &["ledger", "list", "--config", config],
        &["ledger", "--config", config, "list"],
        &["status", "--config", config],
    ] {
        let out = bin()
            .args(args)
            .envs(s.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", shown(&out));
    }
    let out = bin()
        .args(["ledger", "list"])
        .env("PING_PRIMERO_CONFIG", config)
        .envs(s.env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", shown(&out));
}
