//! A combined scenario for both simulators, `{"ping": <seed>, "primero": <seed>}`: invented
//! proGres referrals to Primero and Primero cases referred to UNHCR, from the simulators' own
//! generators. Used by `sim --generate`, the demo and the benchmark.

use serde_json::{json, Value};

/// `n` referrals each way, deterministic for `seed`. Primero cases belong to caseworkers
/// with complete profiles, so every generated record can be delivered.
pub fn generate(n: usize, seed: u64) -> Value {
    let ping = pp_sim_ping::scenario::generate(&pp_sim_ping::scenario::ScenarioOptions {
        count: n,
        seed,
        ..Default::default()
    });
    let primero = pp_sim_primero::scenario::generate(&pp_sim_primero::scenario::ScenarioOptions {
        count: n,
        seed,
        caseworkers: vec!["cw_amina".into(), "cw_john".into()],
        ..Default::default()
    });
    json!({ "ping": ping, "primero": primero })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_parts_are_generated_deterministically() {
        let a = generate(3, 7);
        assert!(a["ping"].is_object());
        assert!(a["primero"].is_object());
        assert_eq!(a["primero"], generate(3, 7)["primero"]);
    }
}
