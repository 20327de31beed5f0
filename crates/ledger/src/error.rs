//! The ledger's error type. Messages carry field names, codes and system identifiers only.

use thiserror::Error;

/// Everything that can go wrong in the ledger.
#[derive(Debug, Error)]
pub enum LedgerError {
    /// The database refused or could not be reached.
    #[error("ledger database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the embedded migrations failed.
    #[error("ledger migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The connection URL names no supported backend.
    #[error("unsupported ledger URL scheme `{scheme}` (expected sqlite: or postgres:)")]
    UnsupportedUrl {
        /// The scheme found (text before the first `:`).
        scheme: String,
    },
    /// An argument was refused before reaching the database.
    #[error("invalid ledger input `{field}`: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why (codes and identifiers only).
        reason: String,
    },
    /// A record may not move from its stored state to the requested one.
    #[error("record {flow}/{key}: transition {from} -> {to} is not allowed")]
    InvalidTransition {
        /// Flow name.
        flow: String,
        /// Record key.
        key: String,
        /// Stored state.
        from: crate::RecordState,
        /// Requested state.
        to: crate::RecordState,
    },
    /// The caller's lease is no longer the flow's live lease (fencing).
    #[error("lease on flow {flow} with token {token} is no longer held")]
    LeaseLost {
        /// Flow name.
        flow: String,
        /// The stale token.
        token: i64,
    },
    /// A stored value could not be read back (e.g. malformed JSON column).
    #[error("ledger holds a malformed value in {column}: {reason}")]
    Corrupt {
        /// Table and column.
        column: &'static str,
        /// What is wrong.
        reason: String,
    },
}
