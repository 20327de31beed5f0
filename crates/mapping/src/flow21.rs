//! Flow 2.1 `referrals-to-progres`, pure part: pick the service rows of a Primero case that
//! are implemented by UNHCR and referred (flows.md, Flow 2.1 steps 2-3), check the case
//! owner's contact details under the configured policy (step 4), and map one row to the
//! SHP-2731 interoperability-referral record (step 5). No IO and no clock.
//!
//! Rejections carry a reason code and a message that names fields, codes and identifiers,
//! never personal values. Types holding personal data print identifiers only in `Debug`.

use std::fmt;

use chrono::NaiveDate;
use pp_ping::IngestRecord;
use pp_primero::{Case, Referral, ServiceRow, User};
use serde_json::{json, Map, Value};

use crate::flow11::{Rejection, MISSING_REQUIRED_FIELDS, UNMAPPED_SEX, VALIDATION_ERROR};
use crate::maps::Maps;

/// A `service_type` with no entry (and no fallback) in the service map (R2).
pub const UNMAPPED_SERVICE_TYPE: &str = "unmapped_service_type";
/// The case owner is unknown or lacks email, phone or position, under policy `reject`.
pub const INCOMPLETE_CASEWORKER: &str = "incomplete_caseworker";

/// Report reasons of service rows that are not for this flow.
pub const EXCLUDED_NOT_UNHCR: &str = "not_implemented_by_unhcr";
pub const EXCLUDED_NO_UNIQUE_ID: &str = "service_row_without_unique_id";
pub const EXCLUDED_NOT_REFERRED: &str = "service_not_referred";
pub const EXCLUDED_REFERRAL_REVOKED: &str = "referral_revoked";

/// The case fields flow 2.1 reads (the mapping, the rejected-row hash and the flow): the case
/// listing asks Primero for these only, so a page of 1,000 cases costs the server, the network
/// and this process only what the referral needs. A test maps a case cut down to these fields
/// and compares it with the whole case.
pub const CASE_FIELDS: &[&str] = &[
    "case_id",
    "owned_by",
    "last_updated_at",
    "services_section",
    "sex",
    "date_of_birth",
    "name_first",
    "name_middle",
    "name_last",
    "telephone_current",
    "address_current",
    "unhcr_id_no",
    "unhcr_individual_no",
    "protection_concerns",
];

/// Default `progres_reasonforreferral` when the row has no notes.
pub const DEFAULT_REASON_FOR_REFERRAL: &str = "Primero referral";
/// Added to the reason for referral when the focal point's contact replaces the caseworker's.
pub const SUBSTITUTION_TEXT: &str =
    "contact details of the Primero focal point; caseworker profile incomplete";

/// A contact sent as the referring organisation's (position, email, phone). Personal:
/// `Debug` shows the position only.
#[derive(Clone, PartialEq, Eq)]
pub struct Contact {
    pub position: String,
    pub email: String,
    pub phone: String,
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contact")
            .field("position", &self.position)
            .field("email", &"[redacted]")
            .field("phone", &"[redacted]")
            .finish()
    }
}

/// `on_incomplete_caseworker`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaseworkerPolicy {
    /// Reject the record with [`INCOMPLETE_CASEWORKER`].
    Reject,
    /// Send this contact instead, say so in the reason for referral, flag the record.
    FocalPoint(Contact),
}

/// The deployment's settings the mapping needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `progres_businessunit` (GUID).
    pub business_unit: String,
    /// `progres_organizationfrom` (GUID).
    pub organization_from: String,
    /// `progres_orgreferredby`.
    pub referred_by: String,
    pub on_incomplete_caseworker: CaseworkerPolicy,
}

/// One interoperability referral ready for SHP-2731.
#[derive(Clone, PartialEq, Eq)]
pub struct MappedReferral {
    /// Primero case `id` (ExternalGUID).
    pub case_record_id: String,
    /// Primero `case_id` (ExternalId).
    pub case_id: String,
    /// Service row `unique_id` (the record key, `progres_orgreferralid`).
    pub unique_id: String,
    /// `Fields[]` in the order of the spec's table. Personal values: redacted in `Debug`.
    pub fields: Vec<(&'static str, Option<String>)>,
    /// The service map's fallback gave `progres_requestedservice` (R2 flag).
    pub fallback_used: bool,
    /// The focal point's contact replaced the caseworker's (ledger flag).
    pub contact_substituted: bool,
}

impl fmt::Debug for MappedReferral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappedReferral")
            .field("case_record_id", &self.case_record_id)
            .field("case_id", &self.case_id)
            .field("unique_id", &self.unique_id)
            .field("fields", &self.field_names())
            .field("fallback_used", &self.fallback_used)
            .field("contact_substituted", &self.contact_substituted)
            .finish()
    }
}

impl MappedReferral {
    /// The value of field `name` (tests and previews).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Names of the fields that carry a value (for dry-run previews).
    pub fn field_names(&self) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(n, _)| (*n).to_owned())
            .collect()
    }

    /// The SHP-2731 record: `ExternalId` = `case_id`, `ExternalGUID` = case `id`.
    pub fn ingest_record(&self) -> IngestRecord {
        let mut r =
            IngestRecord::new(self.case_id.clone()).with_external_guid(self.case_record_id.clone());
        for (name, value) in &self.fields {
            r = r.field(*name, value.clone());
        }
        r
    }

    /// The canonical payload (for the keyed hash of the ledger; never stored itself).
    pub fn payload_json(&self) -> Value {
        let fields: Map<String, Value> = self
            .fields
            .iter()
            .map(|(n, v)| ((*n).to_owned(), json!(v)))
            .collect();
        json!({
            "ExternalId": self.case_id,
            "ExternalGUID": self.case_record_id,
            "Fields": fields,
        })
    }
}

/// Why a service row of a case is not for this flow (`None`: it is a UNHCR row to consider).
/// `is_unhcr` compares `service_implementing_agency` with the configured values.
pub fn row_exclusion(row: &ServiceRow, is_unhcr: impl Fn(&str) -> bool) -> Option<&'static str> {
    match row.service_implementing_agency() {
        Some(agency) if is_unhcr(agency) => {}
        _ => return Some(EXCLUDED_NOT_UNHCR),
    }
    if row.unique_id.is_none() {
        return Some(EXCLUDED_NO_UNIQUE_ID);
    }
    None
}

/// The referral of service row `unique_id` among a case's referrals: `service_record_id`
/// equal to the row's `unique_id`, not revoked; when the row was referred more than once, the
/// earliest referral (its date is the referral date). `Err` names why there is none.
pub fn referral_for_row<'a>(
    referrals: &'a [Referral],
    unique_id: &str,
) -> Result<&'a Referral, &'static str> {
    let matching: Vec<&Referral> = referrals
        .iter()
        .filter(|r| r.service_record_id.as_deref() == Some(unique_id))
        .collect();
    if matching.is_empty() {
        return Err(EXCLUDED_NOT_REFERRED);
    }
    matching
        .into_iter()
        .filter(|r| r.status != "revoked")
        .min_by_key(|r| r.created_at)
        .ok_or(EXCLUDED_REFERRAL_REVOKED)
}

/// A field as text: strings as they are (blank = absent), numbers printed (a phone number
/// stored as a number is sent "as text").
fn text(case: &Case, key: &str) -> Option<String> {
    match case.data.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An option key may be named in a message; anything else is described, not shown.
fn describe_key(value: &str) -> String {
    let plain = !value.is_empty()
        && value.len() <= 60
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        format!("`{value}`")
    } else {
        "a value that is not an option key".to_owned()
    }
}

/// The contact to send for the case owner, or the rejection. `Ok((contact, substituted))`.
pub fn caseworker_contact(
    owner_name: Option<&str>,
    owner: Option<&User>,
    policy: &CaseworkerPolicy,
) -> Result<(Contact, bool), Rejection> {
    let problem = match (owner_name, owner) {
        (None, _) => "the case has no owned_by".to_owned(),
        (Some(name), None) => format!("case owner {} is not a Primero user", describe_user(name)),
        (Some(name), Some(user)) => {
            let missing: Vec<&str> = [
                ("email", user.email.is_none()),
                ("phone", user.phone.is_none()),
                ("position", user.position.is_none()),
            ]
            .into_iter()
            .filter(|(_, m)| *m)
            .map(|(n, _)| n)
            .collect();
            if missing.is_empty() {
                return Ok((
                    Contact {
                        position: user.position.clone().unwrap_or_default(),
                        email: user.email.clone().unwrap_or_default(),
                        phone: user.phone.clone().unwrap_or_default(),
                    },
                    false,
                ));
            }
            format!(
                "caseworker profile of {} lacks {}",
                describe_user(name),
                missing.join(", ")
            )
        }
    };
    match policy {
        CaseworkerPolicy::Reject => Err(Rejection::new(INCOMPLETE_CASEWORKER, problem)),
        CaseworkerPolicy::FocalPoint(contact) => Ok((contact.clone(), true)),
    }
}

/// A Primero user_name is a system identifier; anything odd is described, not shown.
fn describe_user(name: &str) -> String {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if plain {
        format!("`{name}`")
    } else {
        "(a user_name that is not a plain identifier)".to_owned()
    }
}

/// `YYYY-MM-DD` from a Primero date (or the date part of a timestamp).
fn date_part(value: &str) -> Option<NaiveDate> {
    let head = value.trim().get(..10)?;
    NaiveDate::parse_from_str(head, "%Y-%m-%d").ok()
}

/// Maps one referred UNHCR service row of `case` to an interoperability referral (flows.md,
/// Flow 2.1 step 5). `owner` is the user named by the case's `owned_by` (looked up by the
/// caller in the users read once per run). Every problem of the record is reported; the
/// first reason code found (in the table's order) is the record's.
pub fn map_referral(
    maps: &Maps,
    settings: &Settings,
    case: &Case,
    row: &ServiceRow,
    referral: &Referral,
    owner: Option<&User>,
) -> Result<MappedReferral, Rejection> {
    let mut missing: Vec<&str> = Vec::new();
    let case_id = case.case_id.clone();
    if case_id.is_none() {
        missing.push("case_id");
    }
    let unique_id = row.unique_id.clone();
    if unique_id.is_none() {
        missing.push("services_section.unique_id");
    }
    let service_type = row.service_type();
    if service_type.is_none() {
        missing.push("services_section.service_type");
    }
    let referral_date = referral.created_at.map(|t| t.date_naive());
    if referral_date.is_none() {
        missing.push("referral.created_at");
    }
    if !missing.is_empty() {
        return Err(Rejection::new(
            MISSING_REQUIRED_FIELDS,
            format!("missing required fields: {}", missing.join(", ")),
        ));
    }
    let service_type = service_type.unwrap_or_default();
    let requested = maps.map_service_to_progres(service_type).ok_or_else(|| {
        Rejection::new(
            UNMAPPED_SERVICE_TYPE,
            format!(
                "service_type {} has no entry in the service map",
                describe_key(service_type)
            ),
        )
    })?;
    let sex = match case.str_field("sex") {
        None => None,
        Some(value) => Some(maps.primero_sex_to_progres(value).ok_or_else(|| {
            Rejection::new(
                UNMAPPED_SEX,
                format!("sex {} has no entry in the sex map", describe_key(value)),
            )
        })?),
    };
    let date_of_birth = match case.str_field("date_of_birth") {
        None => None,
        Some(v) => Some(date_part(v).ok_or_else(|| {
            Rejection::new(VALIDATION_ERROR, "date_of_birth is not a date (YYYY-MM-DD)")
        })?),
    };
    let (contact, substituted) = caseworker_contact(
        case.owned_by.as_deref(),
        owner,
        &settings.on_incomplete_caseworker,
    )?;

    let concerns = case.str_list("protection_concerns");
    let need = maps
        .first_specific_need_guid(concerns.iter().map(String::as_str))
        .map(str::to_owned);
    let notes = row
        .service_referral_notes()
        .unwrap_or(DEFAULT_REASON_FOR_REFERRAL)
        .to_owned();
    let reason = if substituted {
        format!("{notes} ({SUBSTITUTION_TEXT})")
    } else {
        notes
    };
    let case_id = case_id.unwrap_or_default();
    let unique_id = unique_id.unwrap_or_default();
    let unhcr_id = text(case, "unhcr_individual_no").or_else(|| text(case, "unhcr_id_no"));
    let day = |d: NaiveDate| d.format("%Y-%m-%d").to_string();

    let fields: Vec<(&'static str, Option<String>)> = vec![
        ("progres_externalguid", Some(case.id.clone())),
        ("progres_externalid", Some(case_id.clone())),
        ("progres_offlineid", Some(case_id.clone())),
        ("progres_businessunit", Some(settings.business_unit.clone())),
        (
            "progres_organizationfrom",
            Some(settings.organization_from.clone()),
        ),
        ("progres_orgreferredby", Some(settings.referred_by.clone())),
        ("progres_orgposition", Some(contact.position)),
        ("progres_orgemail", Some(contact.email)),
        ("progres_orgphonenumber", Some(contact.phone)),
        ("progres_orgreferralid", Some(unique_id.clone())),
        ("progres_referraldate", referral_date.map(day)),
        ("progres_requestedservice", Some(requested.value.to_owned())),
        (
            "progres_otherrequestedservices",
            row.service_type_other().map(str::to_owned),
        ),
        ("progres_spneedcategory", need),
        ("progres_reasonforreferral", Some(reason)),
        ("progres_pocfirstname", text(case, "name_first")),
        ("progres_pocmiddlename", text(case, "name_middle")),
        ("progres_poclastname", text(case, "name_last")),
        ("progres_pocdateofbirth", date_of_birth.map(day)),
        ("progres_pocsex", sex.map(|c| c.to_string())),
        ("progres_pocphonenumber", text(case, "telephone_current")),
        ("progres_pocaddress", text(case, "address_current")),
        ("progres_pocotheridnumber", text(case, "unhcr_id_no")),
        ("progres_unhcrid", unhcr_id),
    ];
    Ok(MappedReferral {
        case_record_id: case.id.clone(),
        case_id,
        unique_id,
        fields,
        fallback_used: requested.fallback_used,
        contact_substituted: substituted,
    })
}
