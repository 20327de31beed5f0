//! Errors of the PING client and their classification for the retry loop and the flows.
//!
//! `Display` of every variant holds codes, route names, field names and system identifiers
//! only: never a secret, a token, a personal value or a response body. Server messages pass
//! through [`crate::mask::mask_message`] before they are stored in an error.

use std::fmt;
use std::time::Duration;

use pp_http::{ErrorClass, Retryable};

/// One record that PING refused, as named in `FailedRecords` (or a failed check-status item).
#[derive(Clone, PartialEq, Eq)]
pub struct RecordFailure {
    /// The caller's `ExternalId` of the record.
    pub external_id: String,
    /// PING's reason, reduced to identifiers (values masked).
    pub message: String,
}

impl fmt::Debug for RecordFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordFailure")
            .field("external_id", &self.external_id)
            .field("message", &self.message)
            .finish()
    }
}

impl fmt::Display for RecordFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.external_id, self.message)
    }
}

/// Everything that can go wrong talking to PING.
#[derive(Debug, thiserror::Error)]
pub enum PingError {
    /// The settings cannot work (bad URL, empty partner id, ...). Never retried.
    #[error("PING client configuration: {detail}")]
    Config { detail: String },

    /// The request could not be formed from the caller's input (no records, a record id that
    /// would break the bracketed list, ...). Never retried.
    #[error("invalid PING request: {detail}")]
    InvalidRequest { detail: String },

    /// Credentials refused: the token endpoint answered 400/401/403, or an API call was
    /// refused with 401 twice in a row (once with a freshly fetched token).
    #[error("PING authentication failed: {detail}")]
    Auth { detail: String },

    /// Worth another attempt: timeout, connection error, 5xx, 408/425/429, or an `/asyncdata`
    /// 2xx without `SPHTransactionId` (PING may have accepted the batch). Within a call only
    /// reads and keyed ingestion are retried on it; `/asyncdata` only when the attempt
    /// certainly did not reach PING.
    #[error("PING transient failure{}: {detail}", status_suffix(*.status))]
    Transient {
        status: Option<u16>,
        detail: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },

    /// PING refused the request itself (4xx other than 401/429, or a 200 carrying a non-null
    /// `ErrorMessage`). `message` is masked of values.
    #[error("PING refused the request (status {status}): {message}")]
    Permanent { status: u16, message: String },

    /// A `/data` batch was refused (400 with `FailedRecords`). The caller rejects `failed`
    /// and sends the rest of the batch again (rule R1).
    #[error("PING refused {} record(s) of the batch{}", failed.len(), tx_suffix(transaction_id.as_deref()))]
    BatchRejected {
        failed: Vec<RecordFailure>,
        transaction_id: Option<String>,
    },

    /// A 2xx whose body is not JSON at all (truncated or garbled by a proxy). Counted as
    /// *transient*: a second attempt usually gets a whole body (the simulator's
    /// `malformed_json` fault checks exactly this).
    #[error("PING answered with a body that is not JSON ({detail})")]
    Malformed { detail: String },

    /// Valid JSON of a shape this client does not understand (an unrepairable check-status
    /// `Data` string, a `Data` that is neither a list nor "No Data Available", a paging loop).
    /// Permanent: asking again gives the same answer.
    #[error("unexpected PING response: {detail}")]
    Unexpected { detail: String },
}

fn status_suffix(status: Option<u16>) -> String {
    match status {
        Some(s) => format!(" (status {s})"),
        None => String::new(),
    }
}

fn tx_suffix(tx: Option<&str>) -> String {
    match tx {
        Some(t) => format!(" (SPHTransactionId {t})"),
        None => String::new(),
    }
}

impl PingError {
    /// How the flows should treat the error: transient (retry later), permanent (reject the
    /// record) or auth (end the run).
    pub fn class(&self) -> ErrorClass {
        match self {
            PingError::Auth { .. } => ErrorClass::Auth,
            PingError::Transient { .. } | PingError::Malformed { .. } => ErrorClass::Transient,
            PingError::Config { .. }
            | PingError::InvalidRequest { .. }
            | PingError::Permanent { .. }
            | PingError::BatchRejected { .. }
            | PingError::Unexpected { .. } => ErrorClass::Permanent,
        }
    }

    /// The HTTP status behind the error, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            PingError::Transient { status, .. } => *status,
            PingError::Permanent { status, .. } => Some(*status),
            PingError::BatchRejected { .. } => Some(400),
            _ => None,
        }
    }

    /// A short stable name of the variant, for reports and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            PingError::Config { .. } => "config",
            PingError::InvalidRequest { .. } => "invalid_request",
            PingError::Auth { .. } => "auth",
            PingError::Transient { .. } => "transient",
            PingError::Permanent { .. } => "permanent",
            PingError::BatchRejected { .. } => "batch_rejected",
            PingError::Malformed { .. } => "malformed",
            PingError::Unexpected { .. } => "unexpected",
        }
    }
}

impl Retryable for PingError {
    fn class(&self) -> ErrorClass {
        PingError::class(self)
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            PingError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let t = PingError::Transient {
            status: Some(429),
            detail: "x".into(),
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(t.class(), ErrorClass::Transient);
        assert_eq!(Retryable::retry_after(&t), Some(Duration::from_secs(2)));
        assert_eq!(
            PingError::Malformed { detail: "x".into() }.class(),
            ErrorClass::Transient
        );
        assert_eq!(
            PingError::Auth { detail: "x".into() }.class(),
            ErrorClass::Auth
        );
        let b = PingError::BatchRejected {
            failed: vec![RecordFailure {
                external_id: "c1".into(),
                message: "m".into(),
            }],
            transaction_id: Some("t1".into()),
        };
        assert_eq!(b.class(), ErrorClass::Permanent);
        assert_eq!(
            b.to_string(),
            "PING refused 1 record(s) of the batch (SPHTransactionId t1)"
        );
    }
}
