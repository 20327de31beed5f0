//! The configuration of ping-primero: one TOML file (`--config PATH`, default
//! `ping-primero.toml`; every key is documented in `config/example.toml`), environment
//! overrides `PING_PRIMERO__<SECTION>__<KEY>`, secrets as literal strings, `{ env = "VAR" }`
//! or `{ file = "/path" }`, and a check that reports every problem at once with its key path.
//!
//! ```no_run
//! let config = pp_config::load(std::path::Path::new("ping-primero.toml"))
//!     .unwrap_or_else(|errors| panic!("{errors}"));
//! println!("{}", pp_config::summary(&config));
//! ```

mod build;
mod checks;
mod demo;
mod env;
mod model;
mod problems;
mod reader;
mod schedule;
mod secret;

use std::collections::BTreeMap;
use std::path::Path;

pub use build::{
    ledger_kind, parse_start_from, DEFAULT_LEDGER_URL, DEFAULT_PING_SCOPE, DEFAULT_START_FROM,
    MIN_HASH_KEY_LEN,
};
pub use demo::{demo_config, sim_defaults, summary, EXAMPLE_TOML};
pub use env::ENV_PREFIX;
pub use model::*;
pub use problems::{ConfigErrors, Problem};
pub use schedule::parse_schedule;

/// The default configuration file name.
pub const DEFAULT_CONFIG_PATH: &str = "ping-primero.toml";

/// Reads the file at `path`, applies the process environment's overrides, validates
/// everything and resolves the secrets.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
        problems: vec![Problem {
            path: path.display().to_string(),
            message: format!("cannot read the configuration file: {}", e.kind()),
        }],
    })?;
    load_str(&text, &process_env())
}

/// The process environment as a map (variables that are not valid UTF-8 are skipped).
pub fn process_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Parses `toml`, applies the overrides found in `env` and validates. `env` also serves
/// `{ env = "VAR" }` secrets.
pub fn load_str(toml: &str, env: &BTreeMap<String, String>) -> Result<Config, ConfigErrors> {
    let table = parse_toml(toml)?;
    load_table(table, env)
}

/// Like [`load_str`] on an already parsed TOML table (for tools that merge documents).
pub fn load_table(
    mut root: toml::Table,
    env: &BTreeMap<String, String>,
) -> Result<Config, ConfigErrors> {
    let mut cx = reader::Ctx::new(env);
    env::apply_overrides(&mut root, &mut cx);
    match build::build(&root, &mut cx) {
        Some(config) if cx.problems.is_empty() => Ok(config),
        _ => Err(ConfigErrors {
            problems: cx.problems,
        }),
    }
}

/// Parses a TOML document into a table; a syntax error names its line and column only
/// (the offending line may hold a secret, so it is not quoted).
pub fn parse_toml(text: &str) -> Result<toml::Table, ConfigErrors> {
    text.parse::<toml::Table>().map_err(|e| {
        let at = e.span().map_or_else(String::new, |span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}")
        });
        ConfigErrors {
            problems: vec![Problem {
                path: if at.is_empty() {
                    "(document)".to_owned()
                } else {
                    at
                },
                message: format!("TOML syntax error: {}", e.message().trim()),
            }],
        }
    })
}
