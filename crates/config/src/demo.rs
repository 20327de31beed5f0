//! The demo configuration (the shipped `config/example.toml` pointed at the built-in
//! simulators with their default credentials) and the one-line summary printed at start-up
//! and by `check-config`.

use std::collections::BTreeMap;

use toml::Value;

use crate::model::{Config, LedgerKind, PrimeroAuth};

/// `config/example.toml`, as shipped.
pub const EXAMPLE_TOML: &str = include_str!("../../../config/example.toml");

/// The credentials the built-in simulators accept by default (test values, not secrets).
pub mod sim_defaults {
    /// PING B2C password of `ping.partner@sim.local`.
    pub const PING_PASSWORD: &str = "sim-ping-password";
    /// PING APIM subscription key.
    pub const PING_SUBSCRIPTION_KEY: &str = "sim-subscription-key";
    /// Password of the Primero API user `openfn_integration`.
    pub const PRIMERO_PASSWORD: &str = "sim-primero-password";
    /// Payload hash key used by the demo.
    pub const HASH_KEY: &str = "ping-primero-demo-hash-key";
    /// The environment variables `config/example.toml` reads its secrets from, with the
    /// simulators' values.
    pub const EXAMPLE_ENV: [(&str, &str); 4] = [
        ("PING_PASSWORD", PING_PASSWORD),
        ("PING_SUBSCRIPTION_KEY", PING_SUBSCRIPTION_KEY),
        ("PRIMERO_PASSWORD", PRIMERO_PASSWORD),
        ("PING_PRIMERO_HASH_KEY", HASH_KEY),
    ];
}

/// A valid configuration for the built-in simulators' default credentials: the example's
/// maps and identifiers, the given endpoints and ledger, literal simulator secrets.
///
/// # Panics
/// When an argument is not a valid URL of its kind (`http(s)://` for the three endpoints,
/// `sqlite:`/`postgres://` for the ledger): the caller builds them, so that is a bug.
pub fn demo_config(
    ping_base: &str,
    ping_token_url: &str,
    primero_base: &str,
    ledger_url: &str,
) -> Config {
    let mut root = crate::parse_toml(EXAMPLE_TOML)
        .unwrap_or_else(|e| panic!("config/example.toml does not parse: {e}"));
    let mut set = |section: &str, key: &str, value: &str| {
        let table = root
            .entry(section)
            .or_insert_with(|| Value::Table(toml::Table::new()));
        if let Value::Table(t) = table {
            t.insert(key.to_owned(), Value::String(value.to_owned()));
        }
    };
    set("ping", "base_url", ping_base);
    set("ping", "token_url", ping_token_url);
    set("ping", "password", sim_defaults::PING_PASSWORD);
    set(
        "ping",
        "subscription_key",
        sim_defaults::PING_SUBSCRIPTION_KEY,
    );
    set("primero", "base_url", primero_base);
    set("primero", "password", sim_defaults::PRIMERO_PASSWORD);
    set("ledger", "url", ledger_url);
    set("service", "hash_key", sim_defaults::HASH_KEY);
    crate::load_table(root, &BTreeMap::new())
        .unwrap_or_else(|e| panic!("demo configuration is invalid:\n{e}"))
}

/// One line describing the configuration, without secrets.
pub fn summary(config: &Config) -> String {
    let flows: Vec<String> = config
        .flows
        .iter()
        .map(|f| {
            if f.enabled {
                format!("{} `{}`", f.id, f.schedule_expr)
            } else {
                format!("{} off", f.id)
            }
        })
        .collect();
    let m = &config.maps;
    let fallback = |f: &Option<String>| if f.is_some() { "+fallback" } else { "" };
    format!(
        "instance {} | ping {} (partner {}, interop {}) | primero {} ({}) | ledger {} ({}) | \
         flows {} | maps: {} intervention types{}, {} service types{}, {} languages{}, \
         {} sex codes{}, {} protection concerns in {} categories",
        config.service.instance_id,
        config.ping.base_url,
        config.ping.partner_id,
        config.ping.interop_id,
        config.primero.base_url,
        match config.primero.auth {
            PrimeroAuth::Basic => "basic auth",
            PrimeroAuth::Token => "token auth",
        },
        config.ledger.redacted_url(),
        match config.ledger.kind {
            LedgerKind::Sqlite => "sqlite",
            LedgerKind::Postgres => "postgres",
        },
        flows.join(", "),
        m.intervention_type_to_service.len(),
        fallback(&m.fallbacks.intervention_type_to_service),
        m.service_to_progres.len(),
        fallback(&m.fallbacks.service_to_progres),
        m.language_to_primero.len(),
        fallback(&m.fallbacks.language_to_primero),
        m.sex_progres_to_primero.len(),
        fallback(&m.fallbacks.sex_progres_to_primero),
        m.protection_concern_to_category.len(),
        m.specific_need_categories.len(),
    )
}
