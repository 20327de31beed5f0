//! Exit codes and the error line a failed command prints. 0: the command did its work; 1: it
//! could not (a runtime failure: unreachable API, refused credentials, ledger error); 2: it
//! was invoked wrongly (invalid arguments or configuration). Clap's own parse errors already
//! exit 2; a misuse found only after parsing is raised as a [`UsageError`], which [`report`]
//! maps to 2 wherever it sits in the error chain.
//!
//! The error line gives each cause once: a wrapper whose message already includes its
//! source's text (as `thiserror`'s `"…: {0}"` with `#[from]` does) is not followed by that
//! source again, which anyhow's `{:#}` would print.

use std::fmt;
use std::process::ExitCode;

/// Exit code of a command that could not do its work.
pub const FAILURE: u8 = 1;
/// Exit code of a command invoked with invalid arguments or configuration.
pub const USAGE: u8 = 2;

/// A misuse of the command line found after parsing (exit code 2). The message says what is
/// wrong and what to give instead.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A [`UsageError`] as an `anyhow::Error`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// The exit code for an error: 2 when a [`UsageError`] is in its chain, else 1.
pub fn code_of(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.is::<UsageError>()) {
        USAGE
    } else {
        FAILURE
    }
}

/// Prints an error on stderr and maps it to its exit code; `Ok` is success.
pub fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::from(code_of(&e))
        }
    }
}

/// The error's chain joined with `: `, leaving out each source whose text the message before
/// it already holds.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut previous: Option<String> = None;
    for cause in e.chain() {
        let text = cause.to_string();
        let repeated = previous.as_deref().is_some_and(|p| p.contains(&text));
        if !repeated && !text.is_empty() {
            parts.push(text.clone());
        }
        previous = Some(text);
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn usage_errors_exit_2_anywhere_in_the_chain_and_failures_1() {
        assert_eq!(code_of(&usage("unknown flow")), USAGE);
        let wrapped = Err::<(), _>(usage("unknown flow"))
            .context("run-once")
            .unwrap_err();
        assert_eq!(code_of(&wrapped), USAGE);
        assert_eq!(code_of(&anyhow::anyhow!("PING unreachable")), FAILURE);
    }

    /// A source that a wrapper's message repeats, as `thiserror` makes with `"…: {0}"`.
    #[derive(Debug)]
    struct Wrapper(Leaf);
    #[derive(Debug)]
    struct Leaf;
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "ledger database error: {}", self.0)
        }
    }
    impl fmt::Display for Leaf {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("(code: 14) unable to open database file")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    impl std::error::Error for Leaf {}

    #[test]
    fn each_cause_is_printed_once() {
        let e = Err::<(), _>(Wrapper(Leaf))
            .context("cannot open the ledger at sqlite://x.db")
            .unwrap_err();
        assert_eq!(
            error_text(&e),
            "cannot open the ledger at sqlite://x.db: ledger database error: \
             (code: 14) unable to open database file"
        );
        // Sources that add something are all kept.
        let e = Err::<(), _>(anyhow::anyhow!("connection refused"))
            .context("PING unreachable")
            .unwrap_err();
        assert_eq!(error_text(&e), "PING unreachable: connection refused");
    }
}
