//! Logging set-up: `tracing` with a human-readable or JSON format on stderr, coloured only
//! when stderr is a terminal. Log lines carry flow names, run ids, system identifiers and
//! counts only; the types that hold personal data redact themselves, so nothing here filters
//! content.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::{fmt, EnvFilter};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per event (for log shippers).
    Json,
}

impl From<pp_config::LogFormat> for LogFormat {
    fn from(f: pp_config::LogFormat) -> Self {
        match f {
            pp_config::LogFormat::Human => LogFormat::Human,
            pp_config::LogFormat::Json => LogFormat::Json,
        }
    }
}

/// Installs the global subscriber. `RUST_LOG` overrides the default level (`info`).
pub fn init(format: LogFormat, quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{default},sqlx=warn,hyper=warn,reqwest=warn,tower_http=warn"
        ))
    });
    // Colours only on a terminal: piped into a file or a log collector, escapes are noise.
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Human => builder.with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    // A second initialisation (tests calling into the binary's code) is harmless.
    drop(result);
}
