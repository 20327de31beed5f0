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

/// One personal value of an invented person in a scenario, with what kind of value it is (for
/// failure messages that locate a leak without repeating the value).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Personal {
    pub kind: &'static str,
    pub value: String,
}

/// The personal values of a seed of each simulator (`pp_sim_ping::scenario::generate`,
/// `pp_sim_primero::scenario::generate`): the children's names (parts and full), dates of
/// birth, phone numbers (as generated and as digits only), addresses and free-text notes, and
/// the proGres caseworkers' phone numbers and e-mail addresses. Names shorter than four
/// letters are left out (they occur inside ordinary words); protection concerns are codes
/// such as `neglect`, which occur in the mapping's own words, and are left out too.
pub fn personal_values(
    ping_seed: &serde_json::Value,
    primero_seed: &serde_json::Value,
) -> Vec<Personal> {
    let mut out: std::collections::BTreeSet<Personal> = std::collections::BTreeSet::new();
    let mut add = |kind: &'static str, v: Option<&str>| {
        let Some(v) = v else { return };
        if kind == "name" && v.chars().count() < 4 {
            return;
        }
        if kind == "phone" {
            let digits: String = v.chars().filter(char::is_ascii_digit).collect();
            out.insert(Personal {
                kind,
                value: digits,
            });
        }
        out.insert(Personal {
            kind,
            value: v.to_owned(),
        });
    };
    let none = Vec::new();
    for iv in ping_seed["interventions"].as_array().unwrap_or(&none) {
        let ind = &iv["individual"];
        for k in [
            "progres_givenname",
            "progres_middlename",
            "progres_familyname",
            "progres_commonyusedname",
        ] {
            add("name", ind[k].as_str());
        }
        add("date of birth", ind["progres_dateofbirth"].as_str());
        add("phone", ind["progres_primaryphonenumber"].as_str());
        add("free text", iv["progres_interventiondescription"].as_str());
        add("free text", iv["progres_reasonforreferral"].as_str());
        add("phone", iv["systemuser"]["mobilephone"].as_str());
        add("e-mail", iv["systemuser"]["internalemailaddress"].as_str());
    }
    for case in primero_seed["cases"].as_array().unwrap_or(&none) {
        for k in ["name_first", "name_last", "name_middle", "name"] {
            add("name", case[k].as_str());
        }
        add("date of birth", case["date_of_birth"].as_str());
        add("phone", case["telephone_current"].as_str());
        add("address", case["address_current"].as_str());
        for row in case["services_section"].as_array().unwrap_or(&none) {
            add("free text", row["service_referral_notes"].as_str());
        }
    }
    out.into_iter().collect()
}

/// The seeds `ping-primero demo` gives the simulators, from the same generators with the
/// same options as `src/demo.rs` (`scenario`, through `src/scenario.rs`): `referrals`
/// proGres referrals and Primero cases (seed 42), and the two Primero cases (seed 4242) of
/// the individual with two cases. Dates of birth are computed from today, as in the demo.
pub fn demo_seeds(referrals: usize) -> (serde_json::Value, serde_json::Value) {
    let ping = pp_sim_ping::scenario::generate(&pp_sim_ping::scenario::ScenarioOptions {
        count: referrals,
        seed: 42,
        ..Default::default()
    });
    let mut primero = pp_sim_primero::scenario::generate(&pp_sim_primero::ScenarioOptions {
        count: referrals,
        seed: 42,
        caseworkers: vec!["cw_amina".into(), "cw_john".into()],
        ..Default::default()
    });
    let twins = pp_sim_primero::scenario::generate(&pp_sim_primero::ScenarioOptions {
        count: 2,
        seed: 4242,
        caseworkers: vec!["cw_john".into()],
        with_referrals: false,
        ..Default::default()
    });
    if let (Some(cases), Some(more)) = (primero["cases"].as_array_mut(), twins["cases"].as_array())
    {
        cases.extend(more.iter().cloned());
    }
    (ping, primero)
}
