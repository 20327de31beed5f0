//! Exit codes and the error line a failed command prints. 0: the command did its work; 1: it
//! could not (a runtime failure: unreachable API, refused credentials, ledger error); 2: it
//! was invoked wrongly (invalid arguments or configuration). Clap's own parse errors already
//! exit 2; a misuse found only after parsing is raised as a [`UsageError`], which [`report`]
//! maps to 2 wherever it sits in the error chain.

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
            eprintln!("error: {e:#}");
            ExitCode::from(code_of(&e))
        }
    }
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
}
