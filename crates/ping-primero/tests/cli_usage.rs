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
