//! PING client of ping-primero: the Azure AD B2C token (password grant, cached and shared,
//! refreshed before expiry, renewed once on a 401), the APIM subscription key, retrieval with
//! paging, synchronous and asynchronous ingestion, check-status with repair of the malformed
//! `Data` string, and typed rows of the shipping processes the flows read.
//!
//! Every call goes through the shared policy of `pp_http`: one pooled client, a limiter of
//! `http.max_concurrency` requests in flight, retries of transient failures (timeouts,
//! connection errors, 5xx, 429 with `Retry-After`, and 2xx bodies that are not JSON) with
//! backoff bounded in attempts and time, and one observer report per request. Asynchronous
//! ingestion (`/asyncdata`) is the exception: whether PING drops a repeated batch is unknown,
//! so it is sent again only when the failed attempt certainly did not reach PING's processing
//! (connection never made, 429, no token); after a timeout, a connection lost once the request
//! was written, or a 5xx, the transient error is returned after that one request.
//!
//! Only this crate knows PING's wire JSON. Errors, `Debug` output and logs carry field names,
//! codes and system identifiers only.

pub mod checkstatus;
mod client;
pub mod error;
pub mod ingest;
pub mod mask;
pub mod row;
pub mod rows;
pub mod settings;
mod token;
pub mod wire;

pub use checkstatus::{repair_data_string, CheckStatus, RecordResult, RepairError};
pub use client::{Pages, PingClient, RetrieveSummary, Retrieved};
pub use error::{PingError, RecordFailure};
pub use ingest::{IngestOutcome, IngestRecord};
pub use row::Row;
pub use rows::{
    DecisionDetail, DecisionListRow, FromRow, InterventionDetailRow, PendingReferral, RowError,
    SpecificNeed,
};
pub use settings::{PingSettings, DEFAULT_SCOPE, DEFAULT_TOKEN_PATH, DEFAULT_TOKEN_REFRESH_MARGIN};
pub use wire::{NextPage, Page};

/// Shipping process ids of the reference deployment (configuration may override them).
pub mod shp {
    /// Pending outgoing referrals (retrieve, no parameters).
    pub const PENDING_REFERRALS: &str = "SHP-2747";
    /// Intervention details (retrieve, `{record_ids}` = LP intervention ids).
    pub const INTERVENTION_DETAILS: &str = "SHP-2358";
    /// Primero transfer status on an LP intervention (`/data`).
    pub const TRANSFER_STATUS: &str = "SHP-2748";
    /// Interoperability-referral decision list (retrieve, no parameters).
    pub const DECISION_LIST: &str = "SHP-2795";
    /// One decision's detail (retrieve, `{record_ids}` = referral ids).
    pub const DECISION_DETAIL: &str = "SHP-2796";
    /// Mark a referral synced (`/data`).
    pub const REFERRAL_SYNCED: &str = "SHP-2284";
    /// Create an incoming referral (`/asyncdata`, V2).
    pub const CREATE_REFERRAL: &str = "SHP-2731";
}
