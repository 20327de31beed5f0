//! Flow 2.2 `decisions-to-primero`, pure part: classify the SHP-2795 status codes
//! exhaustively (R4), map an SHP-2796 detail to the Primero referral status change (flows.md,
//! Flow 2.2 steps 1 and 3), pick the Primero referral of the service row (step 4), and build
//! the SHP-2284 "synced" write-back record (step 6). No IO and no clock.

use std::fmt;

use pp_ping::{DecisionDetail, IngestRecord, RowError};
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

/// The decision a `progres_reviewdecision` code stands for (R4: other codes are unknown).
/// The review decision has codes of its own (ping-api.md §4: 125080000 accepted, 125080001
/// rejected), unlike `progres_interoperabilityreferralstatus`.
pub fn review_decision(code: i64) -> Option<ReferralStatus> {
    match code {
        125_080_000 => Some(ReferralStatus::Accepted),
        125_080_001 => Some(ReferralStatus::Rejected),
        _ => None,
    }
}

/// Several SHP-2796 rows for one referral that do not agree (R3: never take the first).
pub const INCONSISTENT_DETAIL_ROWS: &str = "inconsistent_detail_rows";

/// Maps an SHP-2796 detail to the Primero status change: the decision is read from
/// `progres_interoperabilityreferralstatus` with the status codes, and only when that field is
/// absent from `progres_reviewdecision` with the review codes ([`review_decision`]). An unknown
/// code of either field is rejected with [`UNKNOWN_STATUS`] (R4); a missing case id or service
/// id with [`MISSING_REQUIRED_FIELDS`], naming the keys.
pub fn map_decision(codes: &InteropStatusCodes, d: &DecisionDetail) -> Result<Decision, Rejection> {
    let (status, code) = match (d.status, d.review_decision) {
        (Some(code), _) => match classify(codes, code) {
            ListEntry::Decide(s) => (s, code),
            ListEntry::Unknown => return Err(unknown_status(code)),
            ListEntry::Waiting | ListEntry::Done => {
                return Err(Rejection::new(
                    UNKNOWN_STATUS,
                    format!("progres_interoperabilityreferralstatus {code} is not a decision"),
                ))
            }
        },
        (None, Some(review)) => {
            let status = review_decision(review).ok_or_else(|| {
                Rejection::new(
                    UNKNOWN_STATUS,
                    format!("progres_reviewdecision {review} is not a known decision code"),
                )
            })?;
            let code = codes.code(match status {
                ReferralStatus::Rejected => InteropStatus::Rejected,
                _ => InteropStatus::Accepted,
            });
            (status, code)
        }
        (None, None) => {
            return Err(Rejection::new(
                MISSING_REQUIRED_FIELDS,
                "missing required fields: progres_interoperabilityreferralstatus \
                 (or progres_reviewdecision)",
            ))
        }
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
        code,
        status,
        case_id: d.offline_id.trim().to_owned(),
        unique_id: d.org_referral_id.trim().to_owned(),
        rejected_reason,
    })
}

/// The one detail of a referral from its SHP-2796 rows (all rows of the same
/// `progres_interoperabilityreferralid`, parsed). Rows that agree (or a single row) give that
/// row's reading; rows that disagree give [`INCONSISTENT_DETAIL_ROWS`] naming the keys that
/// differ (R3: never the first one). `None` when there is no row.
pub fn single_detail(
    rows: &[Result<DecisionDetail, RowError>],
) -> Option<Result<Result<DecisionDetail, RowError>, Rejection>> {
    let (first, rest) = rows.split_first()?;
    let mut differ: Vec<&'static str> = Vec::new();
    for other in rest {
        for key in detail_differences(first, other) {
            if !differ.contains(&key) {
                differ.push(key);
            }
        }
    }
    if differ.is_empty() {
        return Some(Ok(first.clone()));
    }
    Some(Err(Rejection::new(
        INCONSISTENT_DETAIL_ROWS,
        format!(
            "{} SHP-2796 rows disagree on: {}",
            rows.len(),
            differ.join(", ")
        ),
    )))
}

/// Keys whose readings differ between two parsed SHP-2796 rows.
fn detail_differences(
    a: &Result<DecisionDetail, RowError>,
    b: &Result<DecisionDetail, RowError>,
) -> Vec<&'static str> {
    use pp_ping::rows::keys_decision as k;
    match (a, b) {
        (Ok(a), Ok(b)) => {
            let mut d = Vec::new();
            let mut cmp = |same: bool, key: &'static str| {
                if !same {
                    d.push(key);
                }
            };
            cmp(a.status == b.status, k::STATUS);
            cmp(a.review_decision == b.review_decision, k::REVIEW_DECISION);
            cmp(a.offline_id.trim() == b.offline_id.trim(), k::OFFLINE_ID);
            cmp(
                a.org_referral_id.trim() == b.org_referral_id.trim(),
                k::ORG_REFERRAL_ID,
            );
            cmp(
                a.rejection_reason_name == b.rejection_reason_name,
                k::REJECTION_REASON_NAME,
            );
            cmp(
                a.rejection_comment == b.rejection_comment,
                k::REJECTION_COMMENT,
            );
            d
        }
        (Err(a), Err(b)) if a == b => Vec::new(),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => e.keys(),
        (Err(a), Err(b)) => {
            let mut keys = a.keys();
            for key in b.keys() {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            keys
        }
    }
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
