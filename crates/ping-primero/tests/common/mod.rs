//! Shared by the `cli_*` tests: the built binary run as an operator runs it, with the
//! documented example configuration (its secrets in the environment) and a ledger in a
//! temporary directory.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A scratch directory with `ping-primero.toml` (the example configuration) and the
/// environment that completes it.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Setup {
    /// The example configuration, its secrets, and a SQLite ledger in the directory.
    pub fn new() -> Setup {
        Setup::with_config(&example())
    }

    /// `toml` as the configuration file, with the example's secrets and a SQLite ledger.
    pub fn with_config(toml: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ping-primero.toml");
        std::fs::write(&config, toml).unwrap();
        let ledger = format!("sqlite://{}", dir.path().join("ledger.db").display());
        let env = [
            ("PING_PASSWORD", "sim-ping-password"),
            ("PING_SUBSCRIPTION_KEY", "sim-subscription-key"),
            ("PRIMERO_PASSWORD", "sim-primero-password"),
            ("PING_PRIMERO_HASH_KEY", "cli-test-hash-key-0123456789"),
            ("PING_PRIMERO__LEDGER__URL", ledger.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Setup { dir, config, env }
    }

    /// Adds (or replaces) an environment variable of the runs.
    pub fn set(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// The binary with `--config <file>` before `args`, and the environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = bin();
        cmd.arg("--config").arg(&self.config).args(args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs the binary with `--config <file>` and `args`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("the binary runs")
    }
}

/// The binary, with no configuration or log settings inherited from the test's environment.
pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ping-primero"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("PING_PRIMERO") || k == "RUST_LOG" {
            cmd.env_remove(k.as_ref());
        }
    }
    cmd
}

/// `config/example.toml`.
pub fn example() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/example.toml"))
        .expect("config/example.toml")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Both streams and the exit status, for assertion messages.
pub fn shown(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    )
}
