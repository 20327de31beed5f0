//! The built binary's configuration commands: `check-config` accepts the documented example
//! (with its secrets in the environment) with a one-line summary, and lists every problem of
//! a broken file with its key path and exit code 2, never printing a secret.

use std::path::Path;
use std::process::{Command, Output};

fn example() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/example.toml"))
        .expect("config/example.toml")
}

fn check(config: &Path, with_secrets: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ping-primero"));
    cmd.arg("--config").arg(config).arg("check-config");
    for k in [
        "PING_PASSWORD",
        "PING_SUBSCRIPTION_KEY",
        "PRIMERO_PASSWORD",
        "PING_PRIMERO_HASH_KEY",
    ] {
        cmd.env_remove(k);
    }
    if with_secrets {
        cmd.env("PING_PASSWORD", "sim-ping-password")
            .env("PING_SUBSCRIPTION_KEY", "sim-subscription-key")
            .env("PRIMERO_PASSWORD", "very-secret-primero-password")
            .env("PING_PRIMERO_HASH_KEY", "0123456789abcdef0123");
    }
    cmd.output().expect("binary runs")
}

#[test]
fn the_example_configuration_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ping-primero.toml");
    std::fs::write(&path, example()).unwrap();
    let out = check(&path, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "one-line summary: {stdout}"
    );
    assert!(!stdout.contains("very-secret-primero-password"));
}

#[test]
fn a_broken_configuration_lists_every_problem() {
    let broken = example()
        .replace(
            "base_url = \"http://127.0.0.1:8081\"",
            "base_url = \"not a url\"",
        )
        .replace(
            "business_unit = \"577ccdf6-86de-e811-80d8-001dd8b71fe3\"",
            "business_unit = \"577ccdf6-not-a-guid\"",
        )
        .replacen("schedule = \"0 0 * * *\"", "schedule = \"every day\"", 1)
        .replace(
            "partner_id = \"PNR-1363\"",
            "partner_id = \"PNR-1363\"\nparnter = \"typo\"",
        );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, broken).unwrap();
    // No secrets in the environment either: each missing one is a problem too.
    let out = check(&path, false);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for path in [
        "ping.base_url",
        "progres.business_unit",
        "flows.referrals-to-primero.schedule",
        "ping.parnter",
        "ping.password",
        "primero.password",
    ] {
        assert!(stderr.contains(path), "{path} missing from:\n{stderr}");
    }
}
