//! Plain data types of the ledger: record states, error classes, runs, records, audit events,
//! leases, filters and the changes flows hand to [`crate::Ledger::apply`].
//!
//! Everything here holds system identifiers, codes, counts and hashes only (R11), so the
//! derived `Debug` implementations are safe to log.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::LedgerError;

/// Which database a [`crate::Ledger`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// SQLite (file in WAL mode, or in memory).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored (and displayed) text of this value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = LedgerError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(LedgerError::Invalid {
                        field: $field,
                        reason: format!("unknown value `{}`", crate::bound::bounded(other, 40)),
                    }),
                }
            }
        }
    };
}

text_enum!(
    /// State of one record of a flow (see "Record states" in flows.md).
    RecordState, "state" {
        /// Seen, being processed (or left by a crashed run).
        Pending => "pending",
        /// Written to the destination, not yet verified or written back.
        Delivered => "delivered",
        /// Destination write verified and source write-back done. Terminal.
        Confirmed => "confirmed",
        /// Permanent refusal with a reason; retried only by an operator or a new payload.
        Rejected => "rejected",
        /// Ambiguous; needs a person.
        Conflict => "conflict",
        /// Transient failure; retried after `next_retry_at`.
        Failed => "failed",
    }
);

impl RecordState {
    /// States an operator may send back to `pending` with [`crate::Ledger::retry`].
    pub const RETRYABLE: &'static [RecordState] = &[
        RecordState::Rejected,
        RecordState::Conflict,
        RecordState::Failed,
    ];
}

text_enum!(
    /// Class of the error that left a record rejected, in conflict or failed.
    ErrorClass, "error_class" {
        /// Timeouts, connection errors, 5xx, 429.
        Transient => "transient",
        /// 4xx refusals.
        Permanent => "permanent",
        /// Authentication refused twice.
        Auth => "auth",
        /// Ambiguous lookup (R3).
        Conflict => "conflict",
        /// Our own validation or mapping refused the record (R2, R4).
        Validation => "validation",
    }
);

text_enum!(
    /// Outcome of a flow run.
    RunOutcome, "outcome" {
        /// Still going (or crashed before finishing; see [`crate::Ledger::start_run`]).
        Running => "running",
        /// Finished; individual records may still have been rejected or failed.
        Completed => "completed",
        /// Ended early on an error that concerns the whole run (e.g. authentication).
        Failed => "failed",
        /// Never finished: superseded by a later run of the same flow.
        Abandoned => "abandoned",
    }
);

/// Identifier of a run (a UUID in text form).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub String);

impl RunId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a record changed: a flow run, or an operator's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// Changed by this run.
    Run(RunId),
    /// Changed by the named operator (CLI or dashboard).
    Operator(String),
}

impl Cause {
    /// The stored form: `run:<id>` or `operator:<name>`.
    pub fn as_text(&self) -> String {
        match self {
            Cause::Run(id) => format!("run:{id}"),
            Cause::Operator(name) => format!("operator:{name}"),
        }
    }

    /// The run id, when the cause is a run.
    pub fn run_id(&self) -> Option<&RunId> {
        match self {
            Cause::Run(id) => Some(id),
            Cause::Operator(_) => None,
        }
    }
}

/// A flow lease: while it is live, only its holder runs the flow. The token increases on
/// every acquisition and fences out a holder that lost its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// Flow name.
    pub flow: String,
    /// Instance id of the holder.
    pub holder: String,
    /// Fencing token: strictly greater than every earlier token of this flow.
    pub token: i64,
    /// When the lease lapses unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// One flow run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// Run id.
    pub id: String,
    /// Flow name.
    pub flow: String,
    /// Instance that ran it.
    pub holder: String,
    /// Start time.
    pub started_at: DateTime<Utc>,
    /// End time, when finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Outcome.
    pub outcome: RunOutcome,
    /// Counts by outcome name (fetched, delivered, rejected, ...).
    pub counts: BTreeMap<String, i64>,
    /// Error of the whole run (identifiers and codes only).
    pub error: Option<String>,
}

/// The ledger's view of one record of one flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// Flow name.
    pub flow: String,
    /// The flow's record key (see each flow's "Key" in flows.md).
    pub key: String,
    /// Current state.
    pub state: RecordState,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// When a failed record is due again.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// Class of the last error.
    pub error_class: Option<ErrorClass>,
    /// Machine-readable reason of the current state.
    pub reason_code: Option<String>,
    /// Short message: field names, codes and identifiers only.
    pub message: Option<String>,
    /// Ids at the destination (and source), by name: `case_uuid`, `case_id`, ...
    pub dest_ids: BTreeMap<String, String>,
    /// PING `SPHTransactionId`s of the requests that carried this record.
    pub ping_transaction_ids: Vec<String>,
    /// Keyed hash of the mapped payload (hex).
    pub payload_hash: Option<String>,
    /// A configured map fallback was used (R2).
    pub fallback_used: bool,
    /// A focal-point contact replaced the caseworker's (flow 2.1).
    pub contact_substituted: bool,
    /// Decision status, for flows whose key includes one.
    pub decision: Option<String>,
    /// An operator re-queued this record and the flow has not processed it since.
    pub operator_retry: bool,
    /// First seen.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Last run that touched it.
    pub last_run_id: Option<String>,
}

/// One entry of the append-only audit trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    /// Increasing id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Flow name.
    pub flow: String,
    /// Record key.
    pub key: String,
    /// State before (none when the record was first seen).
    pub from_state: Option<RecordState>,
    /// State after.
    pub to_state: RecordState,
    /// Reason code after the change.
    pub reason_code: Option<String>,
    /// Message after the change.
    pub message: Option<String>,
    /// `run:<id>` or `operator:<name>`.
    pub cause: String,
    /// The run, when a run caused it.
    pub run_id: Option<String>,
}

/// What a flow learned about one record; applied by [`crate::Ledger::apply`].
#[derive(Debug, Clone, PartialEq)]
pub struct RecordChange {
    /// Flow name.
    pub flow: String,
    /// Record key.
    pub key: String,
    /// New state.
    pub state: RecordState,
    /// Reason code of the new state (replaces the stored one; `None` clears it).
    pub reason_code: Option<String>,
    /// Message of the new state (replaces; `None` clears). Cut to 1000 characters.
    pub message: Option<String>,
    /// Error class (replaces; `None` clears).
    pub error_class: Option<ErrorClass>,
    /// When a failed record is due again (replaces; `None` clears).
    pub next_retry_at: Option<DateTime<Utc>>,
    /// Count one more delivery attempt.
    pub increment_attempts: bool,
    /// Named ids, merged into the stored ones (a new value for a name replaces the old one).
    pub dest_ids: BTreeMap<String, String>,
    /// PING transaction ids, appended to the stored ones (duplicates are dropped).
    pub ping_transaction_ids: Vec<String>,
    /// New payload hash (hex); `None` keeps the stored one.
    pub payload_hash: Option<String>,
    /// Sets the sticky `fallback_used` flag (never cleared by a later change).
    pub fallback_used: bool,
    /// Sets the sticky `contact_substituted` flag (never cleared by a later change).
    pub contact_substituted: bool,
    /// Decision status; `None` keeps the stored one.
    pub decision: Option<String>,
    /// Facts `(kind, key, value)` written in the same transaction.
    pub facts: Vec<(String, String, serde_json::Value)>,
}

impl RecordChange {
    /// A change that only sets the state; fill the other public fields as needed.
    pub fn new(flow: impl Into<String>, key: impl Into<String>, state: RecordState) -> Self {
        RecordChange {
            flow: flow.into(),
            key: key.into(),
            state,
            reason_code: None,
            message: None,
            error_class: None,
            next_retry_at: None,
            increment_attempts: false,
            dest_ids: BTreeMap::new(),
            ping_transaction_ids: Vec::new(),
            payload_hash: None,
            fallback_used: false,
            contact_substituted: false,
            decision: None,
            facts: Vec::new(),
        }
    }

    /// Sets the reason code and message.
    pub fn with_reason(
        mut self,
        reason_code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        self.reason_code = Some(reason_code.into());
        self.message = Some(message.into());
        self
    }

    /// Sets the error class.
    pub fn with_error_class(mut self, class: ErrorClass) -> Self {
        self.error_class = Some(class);
        self
    }

    /// Adds a named destination id.
    pub fn with_dest_id(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.dest_ids.insert(name.into(), value.into());
        self
    }

    /// Adds a PING transaction id.
    pub fn with_ping_transaction_id(mut self, id: impl Into<String>) -> Self {
        self.ping_transaction_ids.push(id.into());
        self
    }

    /// Sets the payload hash.
    pub fn with_payload_hash(mut self, hash: impl Into<String>) -> Self {
        self.payload_hash = Some(hash.into());
        self
    }

    /// Sets the retry time.
    pub fn with_next_retry_at(mut self, at: DateTime<Utc>) -> Self {
        self.next_retry_at = Some(at);
        self
    }

    /// Counts one more attempt.
    pub fn with_attempt(mut self) -> Self {
        self.increment_attempts = true;
        self
    }

    /// Sets the decision status.
    pub fn with_decision(mut self, decision: impl Into<String>) -> Self {
        self.decision = Some(decision.into());
        self
    }

    /// Adds a fact to write with this change.
    pub fn with_fact(
        mut self,
        kind: impl Into<String>,
        key: impl Into<String>,
        value: serde_json::Value,
    ) -> Self {
        self.facts.push((kind.into(), key.into(), value));
        self
    }
}

/// Filter of [`crate::Ledger::list_runs`]; newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFilter {
    /// Only this flow.
    pub flow: Option<String>,
    /// Only this outcome.
    pub outcome: Option<RunOutcome>,
    /// At most this many (capped at 10,000).
    pub limit: i64,
    /// Skip this many.
    pub offset: i64,
}

impl Default for RunFilter {
    fn default() -> Self {
        RunFilter {
            flow: None,
            outcome: None,
            limit: 50,
            offset: 0,
        }
    }
}

/// Filter of [`crate::Ledger::list_records`]; most recently changed first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFilter {
    /// Only this flow.
    pub flow: Option<String>,
    /// Only these states (empty: all).
    pub states: Vec<RecordState>,
    /// Only this reason code.
    pub reason_code: Option<String>,
    /// Only records this run touched (its audit events, or last run).
    pub run_id: Option<String>,
    /// At most this many (capped at 10,000).
    pub limit: i64,
    /// Skip this many.
    pub offset: i64,
}

impl Default for RecordFilter {
    fn default() -> Self {
        RecordFilter {
            flow: None,
            states: Vec::new(),
            reason_code: None,
            run_id: None,
            limit: 100,
            offset: 0,
        }
    }
}

/// What an operator re-queues with [`crate::Ledger::retry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryTarget {
    /// One key, in one flow or in every flow that has it.
    Key {
        /// Flow, when the key alone is ambiguous.
        flow: Option<String>,
        /// Record key.
        key: String,
    },
    /// Every rejected, conflict or failed record matching all given parts.
    Filter {
        /// Only this flow.
        flow: Option<String>,
        /// Only this state (must be rejected, conflict or failed).
        state: Option<RecordState>,
        /// Only this reason code.
        reason: Option<String>,
    },
}

/// Records needing a person, grouped by flow and reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttentionGroup {
    /// Flow name.
    pub flow: String,
    /// Reason code (`None` when the records have none).
    pub reason_code: Option<String>,
    /// Number of rejected records in the group.
    pub rejected: i64,
    /// Number of conflict records in the group.
    pub conflict: i64,
    /// Keys of the most recently changed records of the group (at most 50).
    pub keys: Vec<String>,
}

/// What [`crate::Ledger::purge`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PurgeReport {
    /// Audit events deleted.
    pub audit_events: u64,
    /// Finished runs deleted.
    pub runs: u64,
}
