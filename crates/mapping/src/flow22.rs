//! Flow 2.2 `decisions-to-primero`, pure part: classify the SHP-2795 status codes
//! exhaustively (R4), map an SHP-2796 detail to the Primero referral status change (flows.md,
//! Flow 2.2 steps 1 and 3), pick the Primero referral of the service row (step 4), and build
//! the SHP-2284 "synced" write-back record (step 6). No IO and no clock.

use std::fmt;

use pp_ping::{DecisionDetail, IngestRecord};
use pp_primero::{Referral, ReferralStatus};
use serde_json::{json, Value};

use crate::flow11::{Rejection, MISSING_REQUIRED_FIELDS};
use crate::maps::{InteropStatus, InteropStatusCodes};

/// A status code this deployment does not know (R4): never read as acceptance.
pub const UNKNOWN_STATUS: &str = "unknown_status";
/// Primero answered without applying the requested status (R8).
pub const TRANSITION_REFUSED: &str = "transition_refused";
/// No Primero case has the decision's `case_id` (retried: it may be created later).
pub const CASE_NOT_FOUND: &str = "case_not_found";
/// The case has no referral for the service row (retried).
pub const REFERRAL_NOT_FOUND: &str = "referral_not_found";
/// Several Primero cases carry the `case_id` (R3).
pub const DUPLICATE_CASES: &str = "duplicate_cases";
/// Several live referrals point at the service row and none is in progress (R3).
pub const DUPLICATE_REFERRALS: &str = "duplicate_referrals";

/// `progres_comments` of the SHP-2284 write-back.
pub const SYNCED_COMMENT: &str = "Referral decision synced with PRIMERO";
/// Text used when proGres gives no rejection reason.
pub const NO_REASON: &str = "Rejected in proGres (no reason provided)";
/// Text used when proGres gives no rejection comment.
pub const NO_COMMENT: &str = "No comment provided";

/// What one SHP-2795 row asks of this flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListEntry {
    /// Accepted or rejected in proGres: take it to Primero.
    Decide(ReferralStatus),
    /// Not decided yet (125080000): counted, nothing else.
    Waiting,
    /// Already synced (125080003): done.
    Done,
    /// A code this deployment does not know: reject with [`UNKNOWN_STATUS`].
    Unknown,
}

/// Classifies a `progres_interoperabilityreferralstatus` code exhaustively (R4).
pub fn classify(codes: &InteropStatusCodes, code: i64) -> ListEntry {
    match codes.status(code) {
        Some(InteropStatus::Accepted) => ListEntry::Decide(ReferralStatus::Accepted),
        Some(InteropStatus::Rejected) => ListEntry::Decide(ReferralStatus::Rejected),
        Some(InteropStatus::New) => ListEntry::Waiting,
        Some(InteropStatus::SyncedWithPrimero) => ListEntry::Done,
        None => ListEntry::Unknown,
    }
}

/// The rejection of an unknown status code, naming the code.
pub fn unknown_status(code: i64) -> Rejection {
    Rejection::new(
        UNKNOWN_STATUS,
        format!("progres_interoperabilityreferralstatus {code} is not a known status code"),
    )
}

/// The ledger key of a decision: `{referral guid}:{status code}`.
pub fn record_key(referral_id: &str, code: i64) -> String {
    format!("{referral_id}:{code}")
}

/// A decision to apply in Primero.
#[derive(Clone, PartialEq, Eq)]
pub struct Decision {
    /// `progres_interoperabilityreferralid`.
    pub referral_id: String,
    /// The proGres status code the decision was read with.
    pub code: i64,
    /// `accepted` or `rejected`.
    pub status: ReferralStatus,
    /// Primero `case_id` (`progres_offlineid`).
    pub case_id: String,
    /// Service row `unique_id` (`progres_orgreferralid`).
    pub unique_id: String,
    /// For rejections: `"<reason> — <comment>"`. Free text: redacted in `Debug`.
    pub rejected_reason: Option<String>,
}

impl fmt::Debug for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decision")
            .field("referral_id", &self.referral_id)
            .field("code", &self.code)
            .field("status", &self.status)
            .field("case_id", &self.case_id)
            .field("unique_id", &self.unique_id)
            .field(
                "rejected_reason",
                &self.rejected_reason.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl Decision {
    /// The ledger key.
    pub fn key(&self) -> String {
        record_key(&self.referral_id, self.code)
    }

    /// The canonical decision (for the keyed hash of the ledger; never stored itself).
    pub fn payload_json(&self) -> Value {
        json!({
            "referral_id": self.referral_id,
            "status": self.status.as_str(),
            "case_id": self.case_id,
            "unique_id": self.unique_id,
            "rejected_reason": self.rejected_reason,
        })
    }

    /// Field names sent to Primero (for dry-run previews).
    pub fn field_names(&self) -> Vec<String> {
        let mut f = vec!["status".to_owned()];
        if self.rejected_reason.is_some() {
            f.push("rejected_reason".to_owned());
        }
        f
    }
}

/// `"<reason or NO_REASON> — <comment or NO_COMMENT>"` (flows.md, Flow 2.2 step 3).
pub fn rejected_reason_text(reason: Option<&str>, comment: Option<&str>) -> String {
    let pick = |v: Option<&str>, default: &'static str| {
        v.map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| default.to_owned())
    };
    format!(
        "{} — {}",
        pick(reason, NO_REASON),
        pick(comment, NO_COMMENT)
    )
}

/// Where the decision of an SHP-2796 row was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusSource {
    /// `progres_interoperabilityreferralstatus` (interoperability status codes).
    InteropStatus,
    /// `progres_reviewdecision`, the fallback, which uses its own codes (ping-api.md §4:
    /// 125080000 accepted, 125080001 rejected).
    ReviewDecision,
}

/// The decision a `progres_reviewdecision` code stands for (R4: other codes are unknown).
pub fn review_decision(code: i64) -> Option<ReferralStatus> {
    match code {
        125_080_000 => Some(ReferralStatus::Accepted),
        125_080_001 => Some(ReferralStatus::Rejected),
        _ => None,
    }
}

/// Maps an SHP-2796 detail to the Primero status change. `d.status` holds the code read
/// from `source` (the reader folds the review decision into it when the status is absent).
pub fn map_decision(
    codes: &InteropStatusCodes,
    d: &DecisionDetail,
    source: StatusSource,
) -> Result<Decision, Rejection> {
    let status = match source {
        StatusSource::InteropStatus => match classify(codes, d.status) {
            ListEntry::Decide(s) => s,
            ListEntry::Unknown => return Err(unknown_status(d.status)),
            ListEntry::Waiting | ListEntry::Done => {
                return Err(Rejection::new(
                    UNKNOWN_STATUS,
                    format!(
                        "progres_interoperabilityreferralstatus {} is not a decision",
                        d.status
                    ),
                ))
            }
        },
        StatusSource::ReviewDecision => review_decision(d.status).ok_or_else(|| {
            Rejection::new(
                UNKNOWN_STATUS,
                format!(
                    "progres_reviewdecision {} is not a known decision code",
                    d.status
                ),
            )
        })?,
    };
    let mut missing = Vec::new();
    if d.offline_id.trim().is_empty() {
        missing.push("progres_offlineid");
    }
    if d.org_referral_id.trim().is_empty() {
        missing.push("progres_orgreferralid");
    }
    if !missing.is_empty() {
        return Err(Rejection::new(
            MISSING_REQUIRED_FIELDS,
            format!("missing required fields: {}", missing.join(", ")),
        ));
    }
    let rejected_reason = (status == ReferralStatus::Rejected).then(|| {
        rejected_reason_text(
            d.rejection_reason_name.as_deref(),
            d.rejection_comment.as_deref(),
        )
    });
    Ok(Decision {
        referral_id: d.referral_id.clone(),
        code: match source {
            StatusSource::InteropStatus => d.status,
            StatusSource::ReviewDecision => codes.code(match status {
                ReferralStatus::Rejected => InteropStatus::Rejected,
                _ => InteropStatus::Accepted,
            }),
        },
        status,
        case_id: d.offline_id.trim().to_owned(),
        unique_id: d.org_referral_id.trim().to_owned(),
        rejected_reason,
    })
}

/// The Primero referral of service row `unique_id`: the one whose `service_record_id` is the
/// row's `unique_id`, not revoked. When several live ones point at the row, the single one in
/// progress or already in `wanted` is taken; otherwise it is a conflict (R3).
pub fn find_referral<'a>(
    referrals: &'a [Referral],
    unique_id: &str,
    wanted: ReferralStatus,
) -> Result<&'a Referral, Rejection> {
    let live: Vec<&Referral> = referrals
        .iter()
        .filter(|r| r.service_record_id.as_deref() == Some(unique_id) && r.status != "revoked")
        .collect();
    match live.len() {
        0 => Err(Rejection::new(
            REFERRAL_NOT_FOUND,
            format!("no referral with service_record_id {unique_id}"),
        )),
        1 => Ok(live[0]),
        _ => {
            let open: Vec<&Referral> = live
                .iter()
                .copied()
                .filter(|r| r.status == "in_progress" || r.status == wanted.as_str())
                .collect();
            if open.len() == 1 {
                Ok(open[0])
            } else {
                let ids: Vec<&str> = live.iter().map(|r| r.id.as_str()).collect();
                Err(Rejection::new(
                    DUPLICATE_REFERRALS,
                    format!(
                        "several referrals with service_record_id {unique_id}: {}",
                        ids.join(", ")
                    ),
                ))
            }
        }
    }
}

/// The SHP-2284 record marking a referral synced: `ExternalId` = referral GUID, no
/// attachments, fields `progres_interoperabilityreferralid`,
/// `progres_interoperabilityreferralstatus` = synced code, `progres_comments`.
pub fn synced_record(codes: &InteropStatusCodes, referral_id: &str) -> IngestRecord {
    IngestRecord::new(referral_id)
        .field("progres_interoperabilityreferralid", Some(referral_id))
        .field(
            "progres_interoperabilityreferralstatus",
            Some(codes.code(InteropStatus::SyncedWithPrimero).to_string()),
        )
        .field("progres_comments", Some(SYNCED_COMMENT))
}
