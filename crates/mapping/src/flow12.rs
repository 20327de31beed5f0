//! Flow 1.2 `decisions-to-progres`, pure part: pick the decided UNHCR-requested external
//! referrals out of a Primero case (flows.md, Flow 1.2 step 2), split the composite
//! `progres_interventionnumber` (step 3), and build the SHP-2748 decision record (step 4).
//! No IO and no clock: "today" is an argument; the legacy-number lookup is the caller's.

use std::fmt;

use chrono::NaiveDate;
use pp_ping::IngestRecord;
use pp_primero::Case;
use serde_json::{json, Value};

use crate::flow11::{is_ident, Rejection, MALFORMED_IDENTIFIER, MISSING_REQUIRED_FIELDS};
pub use crate::flow22::UNKNOWN_STATUS;
use crate::maps::{Maps, TransferStatus};

/// A `progres_interventionnumber` without the LP id and business unit that 1.1 adds, and no
/// ledger fact to recover them.
pub const LEGACY_INTERVENTION_NUMBER: &str = "legacy_intervention_number";

/// Report reasons of service rows that are not for this flow.
pub const EXCLUDED_NOT_REQUESTED_BY_UNHCR: &str = "not_requested_by_unhcr";
pub const EXCLUDED_NOT_EXTERNAL_REFERRAL: &str = "not_external_referral";
pub const EXCLUDED_UNDECIDED: &str = "undecided";
pub const EXCLUDED_NO_UNIQUE_ID: &str = "service_row_without_unique_id";
/// A case `id` or service `unique_id` that cannot be part of a ledger key (blank, over-long,
/// control characters): counted in the report, never handed to the ledger (R1).
pub const EXCLUDED_MALFORMED_IDENTIFIER: &str = MALFORMED_IDENTIFIER;

/// Longest `unhcr_referral_status` value quoted in an `unknown_status` rejection.
const MAX_QUOTED_STATUS: usize = 40;

/// Primero's decision on a referral (`unhcr_referral_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Decision {
    Accepted,
    Rejected,
}

impl Decision {
    /// `accepted` / `rejected`, Primero's value (and the last part of the record key).
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Accepted => "accepted",
            Decision::Rejected => "rejected",
        }
    }

    pub fn parse(value: &str) -> Option<Decision> {
        match value.trim() {
            "accepted" => Some(Decision::Accepted),
            "rejected" => Some(Decision::Rejected),
            _ => None,
        }
    }

    /// The other decision.
    pub fn other(self) -> Decision {
        match self {
            Decision::Accepted => Decision::Rejected,
            Decision::Rejected => Decision::Accepted,
        }
    }

    /// The `progres_primerotransferstatus` this decision sets.
    pub fn transfer_status(self) -> TransferStatus {
        match self {
            Decision::Accepted => TransferStatus::Acknowledged,
            Decision::Rejected => TransferStatus::Rejected,
        }
    }
}

/// One decided referral found in a case. `rejection_reason` is free text: redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct DecisionRow {
    /// Case record `id` (UUID).
    pub case_uuid: String,
    /// Case `case_id` (`ExternalId` and `progres_primeroid`).
    pub case_id: Option<String>,
    /// Case `owned_by` (`progres_primerocaseworker`).
    pub owned_by: Option<String>,
    /// Service row `unique_id`.
    pub service_unique_id: String,
    pub decision: Decision,
    /// The row's `progres_interventionnumber`, as stored.
    pub intervention_number: Option<String>,
    /// `unhcr_referral_rejection_reason`.
    pub rejection_reason: Option<String>,
    /// The case's `last_updated_at`, as Primero sent it (for the cursor).
    pub case_last_updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl fmt::Debug for DecisionRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionRow")
            .field("case_uuid", &self.case_uuid)
            .field("case_id", &self.case_id)
            .field("owned_by", &self.owned_by)
            .field("service_unique_id", &self.service_unique_id)
            .field("decision", &self.decision)
            .field("intervention_number", &self.intervention_number)
            .field(
                "rejection_reason",
                &self.rejection_reason.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl DecisionRow {
    /// The ledger key of the first decision of this status: `{case id}:{service
    /// unique_id}:{status}` (see [`decision_key`] for later ones).
    pub fn key(&self) -> String {
        decision_key(&self.case_uuid, &self.service_unique_id, self.decision, 1)
    }

    /// The ledger key of the `instance`-th time this status was decided (1-based).
    pub fn instance_key(&self, instance: u32) -> String {
        decision_key(
            &self.case_uuid,
            &self.service_unique_id,
            self.decision,
            instance,
        )
    }

    /// The key of the service row without the status (for the "last decision sent" fact).
    pub fn row_key(&self) -> String {
        format!("{}:{}", self.case_uuid, self.service_unique_id)
    }
}

/// The key of one decision instance: `{case id}:{service unique_id}:{status}` the first time
/// a service row gets this status, `{…}:{status}:{n}` the `n`-th time (a decision changed back,
/// accepted -> rejected -> accepted). Each instance has its own record, so a refused or failed
/// re-send never touches the `confirmed` record of an earlier instance (which the ledger
/// would refuse, rolling back the whole batch).
pub fn decision_key(
    case_uuid: &str,
    service_unique_id: &str,
    decision: Decision,
    instance: u32,
) -> String {
    if instance <= 1 {
        format!("{case_uuid}:{service_unique_id}:{}", decision.as_str())
    } else {
        format!(
            "{case_uuid}:{service_unique_id}:{}:{instance}",
            decision.as_str()
        )
    }
}

/// A service row whose `unhcr_referral_status` is neither a decision nor `pending`/absent (R4):
/// rejected with [`UNKNOWN_STATUS`] under [`UnknownStatusRow::key`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownStatusRow {
    pub case_uuid: String,
    pub service_unique_id: String,
    /// The status value as stored (a code, not personal data).
    pub value: String,
    pub case_last_updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl UnknownStatusRow {
    /// `{case id}:{service unique_id}:unknown_status`.
    pub fn key(&self) -> String {
        format!(
            "{}:{}:{UNKNOWN_STATUS}",
            self.case_uuid, self.service_unique_id
        )
    }

    /// The rejection naming the value (cut to a few dozen characters).
    pub fn rejection(&self) -> Rejection {
        let mut value: String = self.value.chars().take(MAX_QUOTED_STATUS).collect();
        if self.value.chars().count() > MAX_QUOTED_STATUS {
            value.push('…');
        }
        Rejection::new(
            UNKNOWN_STATUS,
            format!(
                "service row {} of case {}: unhcr_referral_status {value:?} is neither \
                 accepted, rejected nor pending",
                self.service_unique_id, self.case_uuid
            ),
        )
    }
}

/// What [`decided_rows`] found in one case: the decided rows, the rows with an unknown status,
/// and the reasons the other rows were left out (one entry per row).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CaseDecisions {
    pub rows: Vec<DecisionRow>,
    pub unknown: Vec<UnknownStatusRow>,
    pub excluded: Vec<&'static str>,
}

/// The `services_section` row fields [`decided_rows`] reads: a case listing for this flow
/// needs no others (`CaseQuery::keeping_service_row_fields`).
pub const SERVICE_ROW_FIELDS: &[&str] = &[
    "unique_id",
    "service_request_agency",
    "service_referral",
    "unhcr_referral_status",
    "progres_interventionnumber",
    "unhcr_referral_rejection_reason",
];

/// Step 2: the service rows of `case` requested by UNHCR (`service_request_agency` accepted
/// by `is_unhcr`, which compares case-insensitively against the configured values), with
/// `service_referral` = `external_referral` and `unhcr_referral_status` accepted or rejected.
/// `pending` or no status waits (excluded as `undecided`); any other value is an unknown
/// status (R4: listed in `unknown`, to be rejected). A row whose case `id` or `unique_id`
/// cannot be part of a key is excluded as `malformed_identifier`.
pub fn decided_rows(case: &Case, is_unhcr: impl Fn(&str) -> bool) -> CaseDecisions {
    let mut out = CaseDecisions::default();
    let case_ok = is_ident(&case.id);
    for row in case.service_rows() {
        if !row.service_request_agency().is_some_and(&is_unhcr) {
            out.excluded.push(EXCLUDED_NOT_REQUESTED_BY_UNHCR);
            continue;
        }
        if row.service_referral().map(str::trim) != Some("external_referral") {
            out.excluded.push(EXCLUDED_NOT_EXTERNAL_REFERRAL);
            continue;
        }
        let status = row
            .unhcr_referral_status()
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "pending");
        let Some(status) = status else {
            out.excluded.push(EXCLUDED_UNDECIDED);
            continue;
        };
        let Some(unique_id) = row.unique_id().map(str::to_owned) else {
            out.excluded.push(EXCLUDED_NO_UNIQUE_ID);
            continue;
        };
        if !case_ok || !is_ident(&unique_id) {
            out.excluded.push(EXCLUDED_MALFORMED_IDENTIFIER);
            continue;
        }
        let Some(decision) = Decision::parse(status) else {
            out.unknown.push(UnknownStatusRow {
                case_uuid: case.id.clone(),
                service_unique_id: unique_id,
                value: status.to_owned(),
                case_last_updated_at: case.last_updated_at,
            });
            continue;
        };
        out.rows.push(DecisionRow {
            case_uuid: case.id.clone(),
            case_id: case.case_id.clone(),
            owned_by: case.owned_by.clone(),
            service_unique_id: unique_id,
            decision,
            intervention_number: row.progres_interventionnumber().map(str::to_owned),
            rejection_reason: row.unhcr_referral_rejection_reason().map(str::to_owned),
            case_last_updated_at: case.last_updated_at,
        });
    }
    out
}

/// A split `progres_interventionnumber`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterventionRef {
    /// `{number},{lp id},{business unit}` as written by flow 1.1.
    Composite {
        number: String,
        lp_intervention_id: String,
        business_unit: String,
    },
    /// Only the intervention number (older records): look it up in the ledger.
    Legacy { number: String },
}

/// Step 3: splits the stored value. Three non-empty parts are composite; anything else keeps
/// only its first part as a legacy number. A missing or blank value is a rejection.
pub fn split_intervention_number(value: Option<&str>) -> Result<InterventionRef, Rejection> {
    let value = value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            Rejection::new(
                MISSING_REQUIRED_FIELDS,
                "service row lacks progres_interventionnumber",
            )
        })?;
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    match parts.as_slice() {
        [number, lp, bu] if !number.is_empty() && !lp.is_empty() && !bu.is_empty() => {
            Ok(InterventionRef::Composite {
                number: (*number).to_owned(),
                lp_intervention_id: (*lp).to_owned(),
                business_unit: (*bu).to_owned(),
            })
        }
        [number, ..] if !number.is_empty() => Ok(InterventionRef::Legacy {
            number: (*number).to_owned(),
        }),
        _ => Err(Rejection::new(
            LEGACY_INTERVENTION_NUMBER,
            "progres_interventionnumber has no intervention number part",
        )),
    }
}

/// The value of the ledger fact `intervention` (intervention number -> LP id and business
/// unit) that flow 1.1 stores and 1.2 reads for legacy numbers.
pub fn intervention_fact(lp_intervention_id: &str, business_unit: &str) -> Value {
    json!({"lp_intervention_id": lp_intervention_id, "business_unit": business_unit})
}

/// Reads an `intervention` fact back: (LP id, business unit).
pub fn read_intervention_fact(v: &Value) -> Option<(String, String)> {
    let lp = v.get("lp_intervention_id")?.as_str()?.trim();
    let bu = v.get("business_unit")?.as_str()?.trim();
    (!lp.is_empty() && !bu.is_empty()).then(|| (lp.to_owned(), bu.to_owned()))
}

/// The rejection of a legacy number the ledger does not know.
pub fn unknown_legacy_number(number: &str) -> Rejection {
    Rejection::new(
        LEGACY_INTERVENTION_NUMBER,
        format!(
            "progres_interventionnumber {number} has no LP intervention id and business unit, \
             and no referral of flow 1.1 recorded them"
        ),
    )
}

/// The attachment comment: `Referral acknowledged by PRIMERO` or
/// `Referral rejected by PRIMERO[: <reason>]`.
pub fn decision_comment(decision: Decision, reason: Option<&str>) -> String {
    match decision {
        Decision::Accepted => "Referral acknowledged by PRIMERO".to_owned(),
        Decision::Rejected => match reason.map(str::trim).filter(|r| !r.is_empty()) {
            Some(r) => format!("Referral rejected by PRIMERO: {r}"),
            None => "Referral rejected by PRIMERO".to_owned(),
        },
    }
}

/// Step 4: the SHP-2748 record of one decision. `case_id` is required (it is the
/// `ExternalId`); its absence is a rejection naming it.
pub fn decision_record(
    row: &DecisionRow,
    lp_intervention_id: &str,
    business_unit: &str,
    maps: &Maps,
    today: NaiveDate,
) -> Result<IngestRecord, Rejection> {
    let case_id = row.case_id.as_deref().ok_or_else(|| {
        Rejection::new(
            MISSING_REQUIRED_FIELDS,
            format!("case {} lacks case_id", row.case_uuid),
        )
    })?;
    if !is_ident(case_id) {
        return Err(Rejection::new(
            MALFORMED_IDENTIFIER,
            format!(
                "case {}: case_id is blank, over-long or holds control characters",
                row.case_uuid
            ),
        ));
    }
    let code = maps
        .codes
        .transfer_status
        .code(row.decision.transfer_status());
    Ok(IngestRecord::new(case_id)
        .attachment(decision_comment(
            row.decision,
            row.rejection_reason.as_deref(),
        ))
        .field("progres_lpinterventionid", Some(lp_intervention_id))
        .field("progres_businessunit", Some(business_unit))
        .field("progres_primerotransferstatus", Some(code.to_string()))
        .field(
            "progres_primerotransferstatusdate",
            Some(today.format("%Y-%m-%d").to_string()),
        )
        .field("progres_primeroid", Some(case_id))
        .field("progres_primerocaseworker", row.owned_by.as_deref()))
}

/// A canonical JSON form of a decision record, for the keyed payload hash (never stored).
pub fn record_json(record: &IngestRecord) -> Value {
    json!({
        "external_id": record.external_id,
        "attachments": record.attachments,
        "fields": record.fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_texts() {
        assert_eq!(
            decision_comment(Decision::Accepted, Some("ignored")),
            "Referral acknowledged by PRIMERO"
        );
        assert_eq!(
            decision_comment(Decision::Rejected, Some(" no capacity ")),
            "Referral rejected by PRIMERO: no capacity"
        );
        assert_eq!(
            decision_comment(Decision::Rejected, None),
            "Referral rejected by PRIMERO"
        );
    }
}
