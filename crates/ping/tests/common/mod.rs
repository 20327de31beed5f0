//! What the PING client's simulator tests share: client settings pointed at a simulator with
//! its default credentials, and the LP intervention ids of its state.

#![allow(dead_code)]

use std::time::Duration;

use pp_http::{HttpSettings, RetryPolicy};
use pp_ping::{PingClient, PingSettings};
use pp_sim_ping::SimHandle;
use secrecy::SecretString;

/// The simulator's default ROPC password.
pub const PASSWORD: &str = "sim-ping-password";
/// The simulator's default subscription key.
pub const SUB_KEY: &str = "sim-subscription-key";
/// The simulator's default ROPC user.
pub const USERNAME: &str = "ping.partner@sim.local";

/// Settings for `sim` with its default credentials but `password`: short timeouts, three
/// attempts with quick backoff.
pub fn settings(sim: &SimHandle, password: &str) -> PingSettings {
    let mut s = PingSettings::new(
        sim.base_url().parse().unwrap(),
        sim.token_url().parse().unwrap(),
        "ping-primero-sim",
        USERNAME,
        SecretString::from(password),
        SecretString::from(SUB_KEY),
        "PNR-1363",
        "INT-1436",
    );
    s.http = HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        max_concurrency: 4,
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(10),
        },
    };
    s
}

/// A client of `sim` with [`settings`] and the right password.
pub fn client(sim: &SimHandle) -> PingClient {
    PingClient::new(settings(sim, PASSWORD)).expect("valid settings")
}

/// The LP intervention ids in the simulator's state.
pub fn lp_ids(sim: &SimHandle) -> Vec<String> {
    sim.state_json()["interventions"]
        .as_array()
        .expect("interventions in state")
        .iter()
        .map(|i| i["progres_lpinterventionid"].as_str().unwrap().to_string())
        .collect()
}
