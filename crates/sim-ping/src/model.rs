//! proGres entities held by the simulator, in proGres's own field names: LP interventions
//! (with individual, system user, languages, specific needs and the outgoing-referral
//! delivery) and interoperability referrals. These structs are also the seed format.
//! Types holding personal data implement `Debug` by hand and print identifiers only.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Delivery type code of a "Primero Outgoing Referral".
pub const DELIVERY_TYPE_PRIMERO_OUTGOING: i64 = 125_080_004;

/// Interoperability referral status a referral created by SHP-2731 gets by default (the
/// `new_referral_status` switch). Its label "New" is the simulator's assumption: spec §4 only
/// says the reference's `statusText` reads 125080000 as accepted; its real meaning is UNKNOWN.
pub const REFERRAL_STATUS_NEW: i64 = 125_080_000;
/// Interoperability referral accepted in proGres.
pub const REFERRAL_STATUS_ACCEPTED: i64 = 125_080_001;
/// Interoperability referral rejected in proGres.
pub const REFERRAL_STATUS_REJECTED: i64 = 125_080_002;
/// Interoperability referral synced with Primero (written by SHP-2284).
pub const REFERRAL_STATUS_SYNCED: i64 = 125_080_003;

fn default_delivery_type() -> i64 {
    DELIVERY_TYPE_PRIMERO_OUTGOING
}

fn default_statuscode() -> i64 {
    1
}

fn default_referral_status() -> Value {
    Value::from(REFERRAL_STATUS_NEW)
}

/// The delivery row that makes an LP intervention an outgoing referral.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// `progres_dtpdeliveryid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_dtpdeliveryid: Option<String>,
    /// `progres_deliverytype` (125080004 = Primero Outgoing Referral; others never pend).
    #[serde(default = "default_delivery_type")]
    pub progres_deliverytype: i64,
    /// `statuscode` of the delivery (1 = active).
    #[serde(default = "default_statuscode")]
    pub statuscode: i64,
    /// `progres_statusdate` (YYYY-MM-DD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_statusdate: Option<String>,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            progres_dtpdeliveryid: None,
            progres_deliverytype: DELIVERY_TYPE_PRIMERO_OUTGOING,
            statuscode: 1,
            progres_statusdate: None,
        }
    }
}

/// The individual an intervention is about (proGres `progres_individual`).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Individual {
    /// Entity GUID of the individual (`progres_individualid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_individualid: Option<String>,
    /// proGres individual number (e.g. `231-100012345`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_id: Option<String>,
    /// Registration group GUID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_registrationgroupid: Option<String>,
    /// Registration group number (the lookup's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_registrationgroupidname: Option<String>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_givenname: Option<String>,
    /// Middle name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_middlename: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_familyname: Option<String>,
    /// Commonly used name (proGres spelling `commonyusedname`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_commonyusedname: Option<String>,
    /// Date of birth, YYYY-MM-DD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_dateofbirth: Option<String>,
    /// Sex option code (125080000..125080003; any integer accepted to test unknown codes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_sex: Option<i64>,
    /// Primary phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_primaryphonenumber: Option<String>,
    /// Country-of-asylum location level 1 (emitted only when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_coalocationlevel1: Option<String>,
    /// Location level 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_coalocationlevel2: Option<String>,
    /// Location level 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_coalocationlevel3: Option<String>,
    /// Location level 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_coalocationlevel4: Option<String>,
    /// Location level 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_coalocationlevel5: Option<String>,
    /// Location level 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_coalocationlevel6: Option<String>,
}

impl std::fmt::Debug for Individual {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Individual")
            .field("progres_individualid", &self.progres_individualid)
            .field("progres_id", &self.progres_id)
            .field("personal_fields", &"<redacted>")
            .finish()
    }
}

/// The proGres user who owns the intervention (`systemuser`).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemUser {
    /// Job title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Mobile phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobilephone: Option<String>,
    /// Internal e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internalemailaddress: Option<String>,
}

impl std::fmt::Debug for SystemUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SystemUser(<redacted>)")
    }
}

/// One specific need of the individual (category and subcategory lookups).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecificNeed {
    /// Category GUID (`progres_spncategory2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_spncategory2: Option<String>,
    /// Category name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_spncategory2name: Option<String>,
    /// Subcategory GUID (`progres_spnsubcategory2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_spnsubcategory2: Option<String>,
    /// Subcategory name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_spnsubcategory2name: Option<String>,
}

impl std::fmt::Debug for SpecificNeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpecificNeed(<redacted>)")
    }
}

/// An LP intervention (a proGres service record) with everything SHP-2747/2358 read and
/// SHP-2748 writes.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intervention {
    /// Key: `progres_lpinterventionid` (GUID).
    pub progres_lpinterventionid: String,
    /// Intervention number, e.g. `LP-ETH-2026-000123`.
    pub progres_interventionnumber: String,
    /// Business unit GUID (second part of the SHP-2748 key).
    pub progres_businessunit: String,
    /// Business unit name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_businessunitname: Option<String>,
    /// Intervention type description (`progres_interventiontype2.interventiontype.progres_description`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervention_type_description: Option<String>,
    /// Start date, YYYY-MM-DD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_interventionstartdate: Option<String>,
    /// Description (HTML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_interventiondescription: Option<String>,
    /// Reason for referral.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_reasonforreferral: Option<String>,
    /// Primero transfer status: a number, or a raw string under `store_raw`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_primerotransferstatus: Option<Value>,
    /// Primero transfer status date, YYYY-MM-DD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_primerotransferstatusdate: Option<String>,
    /// Primero case id written back by Flow 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_primeroid: Option<String>,
    /// Primero case owner written back by Flow 1.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_primerocaseworker: Option<String>,
    /// Attachment comments received through SHP-2748 (no duplicates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachment_comments: Vec<String>,
    /// Outgoing-referral delivery; absent means a plain intervention that never pends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// The individual.
    #[serde(default)]
    pub individual: Individual,
    /// The owning proGres user.
    #[serde(default)]
    pub systemuser: SystemUser,
    /// Language names (`progres_languagecodeidname`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
    /// Specific needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub specific_needs: Vec<SpecificNeed>,
}

impl std::fmt::Debug for Intervention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intervention")
            .field("progres_lpinterventionid", &self.progres_lpinterventionid)
            .field(
                "progres_interventionnumber",
                &self.progres_interventionnumber,
            )
            .field("progres_businessunit", &self.progres_businessunit)
            .field(
                "progres_primerotransferstatus",
                &self.progres_primerotransferstatus,
            )
            .field("individual", &self.individual)
            .field("personal_fields", &"<redacted>")
            .finish()
    }
}

/// An interoperability referral (Primero → proGres), created by SHP-2731 or seeded.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct InteropReferral {
    /// Key: `progres_interoperabilityreferralid` (GUID).
    pub progres_interoperabilityreferralid: String,
    /// Status: a number (any integer allowed), or a raw string under `store_raw`.
    #[serde(default = "default_referral_status")]
    pub progres_interoperabilityreferralstatus: Value,
    /// DTP-era review decision (fallback for the status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_reviewdecision: Option<Value>,
    /// Rejection reason name (proGres spelling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_interoperabiltyreferralrejectionreasonname: Option<String>,
    /// Rejection comment (proGres spelling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_interoperabilityreferralrejectionomment: Option<String>,
    /// Comments (written by SHP-2284).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progres_comments: Option<String>,
    /// Attachment comments received by ingestion (no duplicates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachment_comments: Vec<String>,
    /// `ExternalId` of the ingestion record that created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// `ExternalGUID` of the ingestion record that created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_guid: Option<String>,
    /// Transaction that created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sph_transaction_id: Option<String>,
    /// The SHP-2731 fields as sent (strings or null), e.g. `progres_offlineid`.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl std::fmt::Debug for InteropReferral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InteropReferral")
            .field(
                "progres_interoperabilityreferralid",
                &self.progres_interoperabilityreferralid,
            )
            .field(
                "progres_interoperabilityreferralstatus",
                &self.progres_interoperabilityreferralstatus,
            )
            .field("progres_offlineid", &self.fields.get("progres_offlineid"))
            .field(
                "progres_orgreferralid",
                &self.fields.get("progres_orgreferralid"),
            )
            .field("personal_fields", &"<redacted>")
            .finish()
    }
}

/// A seed document: interventions and interoperability referrals, merged by key.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedDoc {
    /// LP interventions (replaced when `progres_lpinterventionid` already exists).
    #[serde(default)]
    pub interventions: Vec<Intervention>,
    /// Interoperability referrals (replaced when the id already exists).
    #[serde(default)]
    pub interop_referrals: Vec<InteropReferral>,
}

/// Sex label of an option code.
pub fn sex_name(code: i64) -> Option<&'static str> {
    match code {
        125_080_000 => Some("Female"),
        125_080_001 => Some("Male"),
        125_080_002 => Some("Other"),
        125_080_003 => Some("Unknown"),
        _ => None,
    }
}

/// Label of a `progres_primerotransferstatus` code. 125080000 has none: its meaning is
/// UNKNOWN (spec §4), even when `transfer_status_accepts_125080000` lets it be written.
pub fn transfer_status_name(code: i64) -> Option<&'static str> {
    match code {
        125_080_001 => Some("Delivery Fail"),
        125_080_002 => Some("Pending Acknowledgement"),
        125_080_003 => Some("Acknowledged"),
        125_080_004 => Some("Rejected"),
        _ => None,
    }
}

/// Label of a `progres_interoperabilityreferralstatus` code. "New" for 125080000 is the
/// simulator's assumption (its meaning is UNKNOWN, spec §4); the other labels follow spec §4.
pub fn referral_status_name(code: i64) -> Option<&'static str> {
    match code {
        125_080_000 => Some("New"),
        125_080_001 => Some("Accepted"),
        125_080_002 => Some("Rejected"),
        125_080_003 => Some("Synced with PRIMERO"),
        _ => None,
    }
}

/// Label of a DTP-era `progres_reviewdecision` code.
pub fn review_decision_name(code: i64) -> Option<&'static str> {
    match code {
        125_080_000 => Some("Accepted"),
        125_080_001 => Some("Rejected"),
        _ => None,
    }
}

/// Label of a delivery type code.
pub fn delivery_type_name(code: i64) -> Option<&'static str> {
    match code {
        DELIVERY_TYPE_PRIMERO_OUTGOING => Some("Primero Outgoing Referral"),
        _ => None,
    }
}

/// Specific-need categories of spec §4: (GUID, name).
pub const SPECIFIC_NEED_CATEGORIES: &[(&str, &str)] = &[
    ("a1c5b4fb-8f76-e611-80c9-00155d340529", "Child at risk"),
    ("a3c5b4fb-8f76-e611-80c9-00155d340529", "Disability"),
    (
        "adc5b4fb-8f76-e611-80c9-00155d340529",
        "Serious medical condition",
    ),
    (
        "a9c5b4fb-8f76-e611-80c9-00155d340529",
        "Specific legal and physical protection needs",
    ),
    ("b1c5b4fb-8f76-e611-80c9-00155d340529", "SGBV"),
    ("b3c5b4fb-8f76-e611-80c9-00155d340529", "Torture"),
    (
        "abc5b4fb-8f76-e611-80c9-00155d340529",
        "Unaccompanied or separated child",
    ),
    ("a7c5b4fb-8f76-e611-80c9-00155d340529", "Family unity"),
];

/// Requested-service GUIDs of spec §4 (Primero → proGres service map): (GUID, name).
pub const SERVICES: &[(&str, &str)] = &[
    (
        "7ad37dd0-0306-e611-80d9-00155d34051a",
        "Legal / Protection Counselling",
    ),
    ("f98e1516-0406-e611-80d9-00155d34051a", "Health Assistance"),
    ("20db76a2-0306-e611-80d9-00155d34051a", "Shelter Assistance"),
    ("79f7aee2-309e-e911-80e6-001dd8b71fe6", "Education"),
    ("14d89ab0-0306-e611-80d9-00155d34051a", "Cash Assistance"),
    ("f6dd29c1-0306-e611-80d9-00155d34051a", "Documentation"),
    ("80c37762-0406-e611-80d9-00155d34051a", "Livelihoods"),
    ("fab93078-7005-e611-80d9-00155d34051a", "Food Assistance"),
    (
        "3408e901-0406-e611-80d9-00155d34051a",
        "Psycho-social Assistance",
    ),
    ("ca34f86f-0406-e611-80d9-00155d34051a", "Resettlement"),
    ("e3a13f7d-0406-e611-80d9-00155d34051a", "Other"),
];

/// Looks a GUID up in a (GUID, name) table, case-insensitively.
pub fn lookup_name(table: &[(&str, &'static str)], guid: &str) -> Option<&'static str> {
    table
        .iter()
        .find(|(g, _)| g.eq_ignore_ascii_case(guid))
        .map(|(_, n)| *n)
}

/// True for a canonical hyphenated GUID (8-4-4-4-12 hex digits).
pub fn is_guid(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 36 {
        return false;
    }
    b.iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    })
}

/// True for a valid calendar date written `YYYY-MM-DD`.
pub fn is_date(s: &str) -> bool {
    s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// An option-set value as numeric JSON when it is an integer (number or digit string),
/// otherwise the raw value.
pub fn option_value(v: &Value) -> Value {
    match v {
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| v.clone()),
        other => other.clone(),
    }
}
