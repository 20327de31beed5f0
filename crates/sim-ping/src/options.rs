//! Simulator switches: credentials, environment identifiers, shipping process ids and every
//! behaviour the PING spec marks as unknown or assumed (A). All fields are public, have a
//! default and can be changed at run time through `POST /_sim/options` (partial JSON).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Shipping process ids of the seven operations (defaults: the Gambella deployment).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShippingProcesses {
    /// Retrieval: pending outgoing referrals (Flow 1.1).
    pub pending_referrals: String,
    /// Retrieval: intervention details, languages x needs rows (Flow 1.1).
    pub intervention_details: String,
    /// Sync ingestion: Primero transfer status on an LP intervention (Flows 1.1, 1.2).
    pub transfer_status: String,
    /// Retrieval: interoperability referral decision list (Flow 2.2).
    pub decision_list: String,
    /// Retrieval: one interoperability referral in full (Flow 2.2).
    pub decision_details: String,
    /// Sync ingestion: mark an interoperability referral synced (Flow 2.2).
    pub referral_synced: String,
    /// Async ingestion: create an interoperability referral (Flow 2.1).
    pub incoming_referral: String,
}

impl Default for ShippingProcesses {
    fn default() -> Self {
        Self {
            pending_referrals: "SHP-2747".into(),
            intervention_details: "SHP-2358".into(),
            transfer_status: "SHP-2748".into(),
            decision_list: "SHP-2795".into(),
            decision_details: "SHP-2796".into(),
            referral_synced: "SHP-2284".into(),
            incoming_referral: "SHP-2731".into(),
        }
    }
}

/// How an empty retrieval reports `RecordCount` (contract item 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmptyRecordCount {
    /// `RecordCount: null` (default; Flow 1.1's reference edge tests `RecordCount != null`).
    Null,
    /// `RecordCount: 0`.
    Zero,
}

/// How a refused request is answered (contract items 8, 9 and 13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorMode {
    /// HTTP 400 with a non-null `ErrorMessage` (default).
    #[serde(rename = "http_400")]
    Http400,
    /// HTTP 200 with a non-null `ErrorMessage`.
    #[serde(rename = "ok_200")]
    Ok200,
}

/// What ingestion does with an option-set value that is not a valid code (contract item 14).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidOptionCode {
    /// The record fails naming the field (default).
    Reject,
    /// The value is stored as sent (a string) and read back as that string.
    StoreRaw,
}

/// Whether one failing record stops a whole ingestion batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchMode {
    /// Nothing is applied when any record fails (default).
    AllOrNothing,
    /// Valid records are applied; failed ones are listed in `FailedRecords`.
    Partial,
}

/// What a repeated SHP-2731 create (a `progres_orgreferralid` already stored) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AsyncRepeat {
    /// The stored referral (the first with that `progres_orgreferralid`) is updated; no new
    /// row appears.
    Update,
    /// The repeat is dropped: the stored referral is left as it was (the record is still
    /// reported a success, with the stored referral's id).
    Ignore,
    /// A second referral is created, with a new `progres_interoperabilityreferralid` and the
    /// same `progres_orgreferralid` (default: a client that sends twice is caught).
    Duplicate,
}

/// How a client asks for page 2 and later of a retrieval (contract item 10 (A); spec
/// "Paging": UNKNOWN). Every mode answers with the same `PagingSummary` and emits an opaque,
/// non-null `PagingCookie` while more rows follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PagingMode {
    /// The cookie selects where the page starts (keyset paging); `PageNumber` is checked to
    /// be a non-negative integer and echoed, and `PageNumber` >= 2 without a cookie is refused
    /// (default: the spec's inference, echo `PagingCookie` + `PageNumber + 1`).
    CookieAndPage,
    /// The cookie is ignored; `PageNumber` (1-based, absent or 0 = 1) alone selects the page,
    /// by offset: rows that leave the result between two pages shift the later ones.
    PageNumber,
    /// The cookie alone selects the next page (keyset paging); `PageNumber` is ignored, and
    /// without a cookie the first page is served.
    CookieOnly,
}

/// What check-status answers for an `SPHTransactionId` it does not know (contract item 16
/// (A): "unknown id gives null/absent `Data`"). Both answers also carry `Status: null` and
/// `ErrorMessage: "Transaction not found"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownTransactionData {
    /// `Data: null` (default).
    Null,
    /// No `Data` key at all.
    Absent,
}

/// The keys of a processed check-status item besides its inner `Data` (spec §2.4: "other
/// item keys UNKNOWN"; the only example shows `Data` between two unnamed keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatusItemKeys {
    /// `ExternalId`, `Data`, `RecordStatus` (`Success`/`Failed`), `ErrorMessage` (default).
    Named,
    /// `Data` between two keys no client knows (`Key1`, `Key2`, both null): an item that
    /// says nothing of its outcome.
    DataOnly,
}

/// The body of a `/data` answer that reports failed records (spec §2.2 "Error body UNKNOWN",
/// contract item 13 "error shape configurable (A)"). The HTTP status is the
/// `ingestion_error_mode` switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestionErrorShape {
    /// `{SPHTransactionId, ErrorMessage: <summary>, RecordCount?, FailedRecords:
    /// [{ExternalId, ErrorMessage}]}` (default).
    Structured,
    /// `{ErrorMessage}` only: one string naming each failed record's `ExternalId` with its
    /// reason (`ExternalId <id>: <reason>`, joined by `; `). No transaction id, no count, no
    /// per-record list.
    Plain,
}

/// The body of an authentication refusal (contract items 1 and 3 (A)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthErrorBody {
    /// JSON: APIM's `{statusCode, message}` on a 401, B2C's `{error, error_description}` on
    /// the token endpoint's 400 (default).
    Json,
    /// An empty body, without `Content-Type`.
    Empty,
}

/// Every switch of the simulator. `Options::default()` matches the demo configuration.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// B2C `client_id` the token endpoint accepts.
    pub client_id: String,
    /// Scope the token request must contain (space-separated list allowed).
    pub scope: String,
    /// ROPC user name.
    pub username: String,
    /// ROPC password.
    pub password: String,
    /// APIM subscription key required in `Ocp-Apim-Subscription-Key`.
    pub subscription_key: String,
    /// PING partner id (body `PartnerId` and ingestion URL path).
    pub partner_id: String,
    /// PING interop id (body `InteropID`/`InteropId`).
    pub interop_id: String,
    /// The seven shipping process ids.
    pub shipping_processes: ShippingProcesses,
    /// Token lifetime in seconds (0 = already expired when issued).
    pub token_expires_in_secs: u64,
    /// Send `expires_in` as a string (`"3600"`, as B2C does) instead of a number.
    pub token_expires_in_as_string: bool,
    /// Rows per retrieval page.
    pub page_size: usize,
    /// How page 2 and later are requested: cookie and page number, page number only, or
    /// cookie only.
    pub paging_mode: PagingMode,
    /// `RecordCount` of an empty retrieval.
    pub empty_record_count: EmptyRecordCount,
    /// Answer to an undefined parameter, unknown SHP, wrong PartnerId/InteropID.
    pub request_error_mode: ErrorMode,
    /// Answer to an ingestion batch with failed records.
    pub ingestion_error_mode: ErrorMode,
    /// Invalid option-set codes in ingestion: reject the record or store the raw value.
    pub invalid_option_code: InvalidOptionCode,
    /// All-or-nothing or partial application of ingestion batches.
    pub batch_mode: BatchMode,
    /// Setting `progres_primerotransferstatus` drops the intervention from the pending list.
    pub drop_transferred_from_pending: bool,
    /// Delay before an async ingestion is processed (always after the response is sent).
    pub async_delay_ms: u64,
    /// Check-status `Data` as the legacy malformed string (true) or clean nested JSON.
    pub checkstatus_legacy_malformed: bool,
    /// A repeated SHP-2731 create creates a second referral, updates the stored one or is
    /// ignored.
    pub async_repeat: AsyncRepeat,
    /// `/data` and `/asyncdata` answers that accepted records leave out `SPHTransactionId`
    /// (the records are applied all the same).
    pub omit_transaction_id: bool,
    /// Check-status of an unknown `SPHTransactionId`: `Data: null` or no `Data` key.
    pub checkstatus_unknown_data: UnknownTransactionData,
    /// Keys of a processed check-status item: named (`ExternalId`, `RecordStatus`,
    /// `ErrorMessage`) or only the inner `Data`.
    pub checkstatus_item_keys: CheckStatusItemKeys,
    /// Body of a `/data` answer with failed records: structured (`FailedRecords`) or a plain
    /// `ErrorMessage` naming the records.
    pub ingestion_error_shape: IngestionErrorShape,
    /// `progres_primerotransferstatus` 125080000 (meaning UNKNOWN) is a valid code instead of
    /// an invalid one.
    pub transfer_status_accepts_125080000: bool,
    /// `progres_interoperabilityreferralstatus` of a referral created by SHP-2731 (any
    /// integer; 125080000, labelled "New" by the simulator, by default).
    pub new_referral_status: i64,
    /// Body of the 401 answer to a missing, unknown, expired or revoked bearer token.
    pub bearer_error_body: AuthErrorBody,
    /// Body of the token endpoint's 400 answers (bad credentials and the other refusals).
    pub token_error_body: AuthErrorBody,
    /// Most entries the request log keeps (the oldest are dropped first; at least 1). The
    /// counts by endpoint stay exact.
    pub request_log_limit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            client_id: "ping-primero-sim".into(),
            scope: "https://primespingb2cuat.onmicrosoft.com/apimurls/API.Read".into(),
            username: "ping.partner@sim.local".into(),
            password: "sim-ping-password".into(),
            subscription_key: "sim-subscription-key".into(),
            partner_id: "PNR-1363".into(),
            interop_id: "INT-1436".into(),
            shipping_processes: ShippingProcesses::default(),
            token_expires_in_secs: 3600,
            token_expires_in_as_string: true,
            page_size: 1000,
            paging_mode: PagingMode::CookieAndPage,
            empty_record_count: EmptyRecordCount::Null,
            request_error_mode: ErrorMode::Http400,
            ingestion_error_mode: ErrorMode::Http400,
            invalid_option_code: InvalidOptionCode::Reject,
            batch_mode: BatchMode::AllOrNothing,
            drop_transferred_from_pending: true,
            async_delay_ms: 0,
            checkstatus_legacy_malformed: true,
            async_repeat: AsyncRepeat::Duplicate,
            omit_transaction_id: false,
            checkstatus_unknown_data: UnknownTransactionData::Null,
            checkstatus_item_keys: CheckStatusItemKeys::Named,
            ingestion_error_shape: IngestionErrorShape::Structured,
            transfer_status_accepts_125080000: false,
            new_referral_status: crate::model::REFERRAL_STATUS_NEW,
            bearer_error_body: AuthErrorBody::Json,
            token_error_body: AuthErrorBody::Json,
            request_log_limit: 100_000,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("subscription_key", &"<redacted>")
            .field("partner_id", &self.partner_id)
            .field("interop_id", &self.interop_id)
            .field("shipping_processes", &self.shipping_processes)
            .field("token_expires_in_secs", &self.token_expires_in_secs)
            .field(
                "token_expires_in_as_string",
                &self.token_expires_in_as_string,
            )
            .field("page_size", &self.page_size)
            .field("paging_mode", &self.paging_mode)
            .field("empty_record_count", &self.empty_record_count)
            .field("request_error_mode", &self.request_error_mode)
            .field("ingestion_error_mode", &self.ingestion_error_mode)
            .field("invalid_option_code", &self.invalid_option_code)
            .field("batch_mode", &self.batch_mode)
            .field(
                "drop_transferred_from_pending",
                &self.drop_transferred_from_pending,
            )
            .field("async_delay_ms", &self.async_delay_ms)
            .field(
                "checkstatus_legacy_malformed",
                &self.checkstatus_legacy_malformed,
            )
            .field("async_repeat", &self.async_repeat)
            .field("omit_transaction_id", &self.omit_transaction_id)
            .field("checkstatus_unknown_data", &self.checkstatus_unknown_data)
            .field("checkstatus_item_keys", &self.checkstatus_item_keys)
            .field("ingestion_error_shape", &self.ingestion_error_shape)
            .field(
                "transfer_status_accepts_125080000",
                &self.transfer_status_accepts_125080000,
            )
            .field("new_referral_status", &self.new_referral_status)
            .field("bearer_error_body", &self.bearer_error_body)
            .field("token_error_body", &self.token_error_body)
            .field("request_log_limit", &self.request_log_limit)
            .finish()
    }
}

impl Options {
    /// Applies a partial JSON document (objects merge recursively, other values replace).
    /// Unknown keys or wrong types are refused and leave the options unchanged.
    pub fn merge_json(&mut self, patch: &Value) -> Result<(), String> {
        if !patch.is_object() {
            return Err("options patch must be a JSON object".into());
        }
        let mut current = serde_json::to_value(&*self).map_err(|e| e.to_string())?;
        merge_value(&mut current, patch);
        let next: Options = serde_json::from_value(current).map_err(|e| e.to_string())?;
        if next.page_size == 0 {
            return Err("page_size must be at least 1".into());
        }
        *self = next;
        Ok(())
    }
}

/// Deep-merges `patch` into `base`: objects merge key by key, anything else replaces.
pub(crate) fn merge_value(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge_value(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}
