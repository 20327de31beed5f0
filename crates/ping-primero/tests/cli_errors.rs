//! The built binary's error lines as an operator reads them: what failed in the service's
//! terms (the ledger at its URL, password masked; the configuration file by its path), each
//! cause once, on one line.

mod common;

use common::*;

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn a_ledger_that_cannot_be_opened_is_named_and_its_cause_given_once() {
    let mut s = Setup::new();
    let missing = s.dir.path().join("no-such-dir").join("ledger.db");
    let url = format!("sqlite://{}", missing.display());
    s.set("PING_PRIMERO__LEDGER__URL", &url);
    for args in [
        &["ledger", "list"][..],
        &["status"],
        &["migrate"],
        &["run-once", "1.1"],
    ] {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", shown(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with(&format!("error: cannot open the ledger at {url}: ")),
            "{args:?}: {err}"
        );
        assert_eq!(
            err.matches("unable to open database file").count(),
            1,
            "{args:?}: {err}"
        );
    }

    let port = closed_port();
    s.set(
        "PING_PRIMERO__LEDGER__URL",
        &format!("postgres://pp:hunter2-secret@127.0.0.1:{port}/pp"),
    );
    let out = s.run(&["ledger", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", shown(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!(
            "error: cannot open the ledger at postgres://pp:***@127.0.0.1:{port}/pp: "
        )),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
}

#[test]
fn a_missing_configuration_file_is_named() {
    let s = Setup::new();
    let missing = s.dir.path().join("absent.toml");
    for args in [&["status"][..], &["check-config"], &["ledger", "list"]] {
        let out = bin()
            .arg("--config")
            .arg(&missing)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", shown(&out));
        let err = stderr(&out);
        assert!(
            err.starts_with(&format!(
                "error: configuration file {} not found",
                missing.display()
            )),
            "{args:?}: {err}"
        );
        assert!(!err.contains("entity not found"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
}
