//! Typed rows of the retrieval shipping processes (SHP-2747, 2358, 2795, 2796), read from a
//! [`Row`] with unknown keys tolerated and every missing or malformed key reported at once.
//!
//! Types that carry personal data (names, birth dates, phones, addresses, notes, languages,
//! specific needs, free-text comments) print only identifiers in `Debug`.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use crate::row::{parse_date, parse_datetime, Row};

/// Why a row does not fit its type. Lists key names only.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// Required keys that are absent, null or empty: all of them.
    #[error("missing keys: {}", .0.join(", "))]
    MissingKeys(Vec<&'static str>),
    /// Keys whose value has the wrong type or format (all of them), plus any missing keys.
    #[error("malformed keys: {}{}", bad.join(", "), missing_suffix(missing))]
    BadValues {
        bad: Vec<&'static str>,
        missing: Vec<&'static str>,
    },
}

fn missing_suffix(missing: &[&'static str]) -> String {
    if missing.is_empty() {
        String::new()
    } else {
        format!("; missing keys: {}", missing.join(", "))
    }
}

impl RowError {
    /// Every key named by the error, missing ones first.
    pub fn keys(&self) -> Vec<&'static str> {
        match self {
            RowError::MissingKeys(m) => m.clone(),
            RowError::BadValues { bad, missing } => {
                missing.iter().chain(bad.iter()).copied().collect()
            }
        }
    }
}

/// A typed view of one retrieval row.
pub trait FromRow: Sized {
    fn from_row(row: &Row) -> Result<Self, RowError>;
}

/// Collects missing and malformed keys while fields are read.
struct Reader<'a> {
    row: &'a Row,
    missing: Vec<&'static str>,
    bad: Vec<&'static str>,
}

impl<'a> Reader<'a> {
    fn new(row: &'a Row) -> Self {
        Reader {
            row,
            missing: Vec::new(),
            bad: Vec::new(),
        }
    }

    /// Text (a string, or a number printed); empty strings count as absent.
    fn text(&mut self, key: &'static str) -> Option<String> {
        match self.row.get(key)? {
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => {
                self.bad.push(key);
                None
            }
        }
    }

    fn req_text(&mut self, key: &'static str) -> String {
        let v = self.text(key);
        if v.is_none() && !self.bad.contains(&key) {
            self.missing.push(key);
        }
        v.unwrap_or_default()
    }

    fn int(&mut self, key: &'static str) -> Option<i64> {
        let v = self.row.get(key)?;
        if matches!(v, Value::String(s) if s.trim().is_empty()) {
            return None;
        }
        let parsed = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.bad.push(key);
        }
        parsed
    }

    fn req_int(&mut self, key: &'static str) -> i64 {
        let v = self.int(key);
        if v.is_none() && !self.bad.contains(&key) {
            self.missing.push(key);
        }
        v.unwrap_or_default()
    }

    fn date(&mut self, key: &'static str) -> Option<NaiveDate> {
        let s = self.text(key)?;
        let d = parse_date(&s);
        if d.is_none() {
            self.bad.push(key);
        }
        d
    }

    fn datetime(&mut self, key: &'static str) -> Option<DateTime<Utc>> {
        let s = self.text(key)?;
        let d = parse_datetime(&s);
        if d.is_none() {
            self.bad.push(key);
        }
        d
    }

    /// A location level: a plain string or an object with `Name` (DTP style).
    fn location(&mut self, keys: [&'static str; 2]) -> Option<String> {
        for key in keys {
            match self.row.get(key) {
                None => continue,
                Some(Value::String(s)) if s.trim().is_empty() => continue,
                Some(Value::String(s)) => return Some(s.clone()),
                Some(Value::Object(o)) => {
                    let name = o
                        .get("Name")
                        .or_else(|| o.get("name"))
                        .and_then(Value::as_str)
                        .filter(|s| !s.trim().is_empty());
                    if let Some(n) = name {
                        return Some(n.to_string());
                    }
                }
                Some(_) => self.bad.push(key),
            }
        }
        None
    }

    fn finish(self) -> Result<(), RowError> {
        if !self.bad.is_empty() {
            Err(RowError::BadValues {
                bad: self.bad,
                missing: self.missing,
            })
        } else if !self.missing.is_empty() {
            Err(RowError::MissingKeys(self.missing))
        } else {
            Ok(())
        }
    }
}

fn presence<T>(v: &Option<T>) -> &'static str {
    if v.is_some() {
        "[set]"
    } else {
        "[none]"
    }
}

// ---------------------------------------------------------------------------------------------
// SHP-2747

/// Keys of SHP-2747 rows.
pub mod keys_2747 {
    pub const LP_INTERVENTION_ID: &str = "progres_lpinterventionid";
    pub const INTERVENTION: &str = "progres_intervention";
    pub const INTERVENTION_NAME: &str = "progres_interventionname";
    pub const INTERVENTION_NUMBER: &str = "progres_lpintervention.int.progres_interventionnumber";
    pub const BUSINESS_UNIT: &str = "progres_businessunit";
    pub const BUSINESS_UNIT_NAME: &str = "progres_businessunitname";
    pub const DELIVERY_ID: &str = "progres_dtpdeliveryid";
    pub const DELIVERY_TYPE: &str = "progres_deliverytype";
    pub const STATUS_CODE: &str = "statuscode";
    pub const STATUS_DATE: &str = "progres_statusdate";
    pub const INDIVIDUAL_ID: &str = "progres_individual.indiv.progres_id";
}

/// A pending outgoing referral (SHP-2747). Identifiers only (names in the row are not read).
///
/// `lp_intervention_id` is `None` when the row lacks `progres_lpinterventionid` (an older
/// shape carries only `progres_intervention`): the flow rejects such a row, naming
/// `intervention_id` / `intervention_number`.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingReferral {
    pub lp_intervention_id: Option<String>,
    /// `progres_intervention` (GUID of the intervention).
    pub intervention_id: Option<String>,
    /// `progres_interventionname` (usually the intervention number).
    pub intervention_name: Option<String>,
    /// `progres_lpintervention.int.progres_interventionnumber`.
    pub intervention_number: Option<String>,
    pub business_unit: Option<String>,
    pub business_unit_name: Option<String>,
    pub delivery_id: Option<String>,
    pub delivery_type: Option<i64>,
    pub status_code: Option<i64>,
    pub status_date: Option<NaiveDate>,
    /// `progres_individual.indiv.progres_id` (the UNHCR individual number).
    pub individual_id: Option<String>,
}

impl fmt::Debug for PendingReferral {
    /// The individual number identifies a person: shown only as present or absent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingReferral")
            .field("lp_intervention_id", &self.lp_intervention_id)
            .field("intervention_id", &self.intervention_id)
            .field("intervention_number", &self.intervention_number)
            .field("business_unit", &self.business_unit)
            .field("delivery_id", &self.delivery_id)
            .field("delivery_type", &self.delivery_type)
            .field("status_code", &self.status_code)
            .field("status_date", &self.status_date)
            .field("individual_id", &presence(&self.individual_id))
            .finish_non_exhaustive()
    }
}

impl FromRow for PendingReferral {
    fn from_row(row: &Row) -> Result<Self, RowError> {
        use keys_2747::*;
        let mut r = Reader::new(row);
        let v = PendingReferral {
            lp_intervention_id: r.text(LP_INTERVENTION_ID),
            intervention_id: r.text(INTERVENTION),
            intervention_name: r.text(INTERVENTION_NAME),
            intervention_number: r.text(INTERVENTION_NUMBER),
            business_unit: r.text(BUSINESS_UNIT),
            business_unit_name: r.text(BUSINESS_UNIT_NAME),
            delivery_id: r.text(DELIVERY_ID),
            delivery_type: r.int(DELIVERY_TYPE),
            status_code: r.int(STATUS_CODE),
            status_date: r.date(STATUS_DATE),
            individual_id: r.text(INDIVIDUAL_ID),
        };
        r.finish().map(|()| v)
    }
}

impl PendingReferral {
    /// The LP intervention id, or the error the flow records when it is missing.
    pub fn require_lp_intervention_id(&self) -> Result<&str, RowError> {
        self.lp_intervention_id
            .as_deref()
            .ok_or_else(|| RowError::MissingKeys(vec![keys_2747::LP_INTERVENTION_ID]))
    }
}

// ---------------------------------------------------------------------------------------------
// SHP-2358

/// Keys of SHP-2358 rows read by Flow 1.1 (ping-api.md §3).
pub mod keys_2358 {
    pub const INTERVENTION_NUMBER: &str = "progres_interventionnumber";
    pub const LP_INTERVENTION_ID: &str = "progres_lpinterventionid";
    pub const BUSINESS_UNIT: &str = "progres_businessunit";
    pub const INTERVENTION_START_DATE: &str = "progres_interventionstartdate";
    pub const INTERVENTION_DESCRIPTION: &str = "progres_interventiondescription";
    pub const REASON_FOR_REFERRAL: &str = "progres_reasonforreferral";
    pub const PRIMERO_TRANSFER_STATUS_DATE: &str = "progres_primerotransferstatusdate";
    pub const PRIMERO_ID: &str = "progres_primeroid";
    pub const INTERVENTION_TYPE: &str =
        "progres_interventiontype2.interventiontype.progres_description";
    pub const INDIVIDUAL_ID: &str = "progres_individual.individuals.progres_id";
    pub const REGISTRATION_GROUP_ID: &str =
        "progres_individual.individuals.progres_registrationgroupid";
    pub const REGISTRATION_GROUP_NAME: &str = "progres_individual.progres_registrationgroupidname";
    pub const GIVEN_NAME: &str = "progres_individual.individuals.progres_givenname";
    pub const MIDDLE_NAME: &str = "progres_individual.individuals.progres_middlename";
    pub const FAMILY_NAME: &str = "progres_individual.individuals.progres_familyname";
    pub const COMMONLY_USED_NAME: &str = "progres_individual.individuals.progres_commonyusedname";
    pub const DATE_OF_BIRTH: &str = "progres_individual.individuals.progres_dateofbirth";
    pub const SEX: &str = "progres_individual.individuals.progres_sex";
    pub const PRIMARY_PHONE: &str = "progres_individual.individuals.progres_primaryphonenumber";
    pub const CASEWORKER_TITLE: &str = "systemuser.title";
    pub const CASEWORKER_PHONE: &str = "systemuser.su.mobilephone";
    pub const CASEWORKER_EMAIL: &str = "systemuser.su.internalemailaddress";
    pub const LANGUAGE: &str = "progres_language.progres_languagecodeidname";
    pub const NEED_CATEGORY_NAME: &str = "progres_specificneed.progres_spncategory2name";
    pub const NEED_SUBCATEGORY_NAME: &str = "progres_specificneed.progres_spnsubcategory2name";
    pub const NEED_CATEGORY_ID: &str = "progres_specificneed.specificneeds.progres_spncategory2";
    pub const NEED_SUBCATEGORY_ID: &str =
        "progres_specificneed.specificneeds.progres_spnsubcategory2";
    /// Location level N (1..=6) is read from `progres_individual.individuals.progres_coalocationlevelN`,
    /// else `individuals.progres_coalocationlevelN`: a plain string or an object with `Name`.
    pub const LOCATION_LEVELS: [[&str; 2]; 6] = [
        [
            "progres_individual.individuals.progres_coalocationlevel1",
            "individuals.progres_coalocationlevel1",
        ],
        [
            "progres_individual.individuals.progres_coalocationlevel2",
            "individuals.progres_coalocationlevel2",
        ],
        [
            "progres_individual.individuals.progres_coalocationlevel3",
            "individuals.progres_coalocationlevel3",
        ],
        [
            "progres_individual.individuals.progres_coalocationlevel4",
            "individuals.progres_coalocationlevel4",
        ],
        [
            "progres_individual.individuals.progres_coalocationlevel5",
            "individuals.progres_coalocationlevel5",
        ],
        [
            "progres_individual.individuals.progres_coalocationlevel6",
            "individuals.progres_coalocationlevel6",
        ],
    ];
}

/// The specific need of one SHP-2358 join row (a protection concern: personal data).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpecificNeed {
    pub category_name: Option<String>,
    pub subcategory_name: Option<String>,
    /// Category GUID (`…specificneeds.progres_spncategory2`).
    pub category_id: Option<String>,
    /// Subcategory GUID.
    pub subcategory_id: Option<String>,
}

impl fmt::Debug for SpecificNeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpecificNeed")
            .field("category_id", &self.category_id)
            .field("subcategory_id", &self.subcategory_id)
            .field("names", &"[redacted]")
            .finish()
    }
}

/// One SHP-2358 row: intervention, individual and system-user fields (the same on every row
/// of an intervention) plus the join fields `language` and `need` (one language × one need
/// per row). Grouping is the mapping crate's job; [`InterventionDetailRow::non_join_differences`]
/// tells which non-join fields disagree between two rows.
#[derive(Clone, PartialEq, Eq)]
pub struct InterventionDetailRow {
    pub lp_intervention_id: String,
    pub intervention_number: Option<String>,
    pub business_unit: Option<String>,
    pub intervention_start_date: Option<NaiveDate>,
    /// HTML free text.
    pub intervention_description: Option<String>,
    /// Free text (the reference has seen a JSON array in it).
    pub reason_for_referral: Option<String>,
    /// Kept as a full UTC timestamp (Flow 1.1 sends it as `service_response_day_time`).
    pub primero_transfer_status_date: Option<DateTime<Utc>>,
    pub primero_id: Option<String>,
    /// `progres_interventiontype2.interventiontype.progres_description`.
    pub intervention_type: Option<String>,
    pub individual_id: Option<String>,
    pub registration_group_id: Option<String>,
    pub registration_group_name: Option<String>,
    pub given_name: Option<String>,
    pub middle_name: Option<String>,
    pub family_name: Option<String>,
    pub commonly_used_name: Option<String>,
    pub date_of_birth: Option<NaiveDate>,
    /// Option-set code (125080000 female, 125080001 male, ...).
    pub sex: Option<i64>,
    pub primary_phone: Option<String>,
    /// Location levels 1 to 6 (`None` where absent).
    pub location_levels: [Option<String>; 6],
    pub caseworker_title: Option<String>,
    pub caseworker_phone: Option<String>,
    pub caseworker_email: Option<String>,
    /// Join field: language name.
    pub language: Option<String>,
    /// Join field: specific need (`None` when the row has none of its four keys).
    pub need: Option<SpecificNeed>,
}

impl fmt::Debug for InterventionDetailRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterventionDetailRow")
            .field("lp_intervention_id", &self.lp_intervention_id)
            .field("intervention_number", &self.intervention_number)
            .field("business_unit", &self.business_unit)
            .field("primero_id", &self.primero_id)
            .field("intervention_type", &self.intervention_type)
            .field("individual_id", &presence(&self.individual_id))
            .field(
                "registration_group_id",
                &presence(&self.registration_group_id),
            )
            .field(
                "registration_group_name",
                &presence(&self.registration_group_name),
            )
            .field("sex", &self.sex)
            .field("personal_fields", &"[redacted]")
            .field("date_of_birth", &presence(&self.date_of_birth))
            .field("language", &presence(&self.language))
            .field("need", &self.need)
            .finish()
    }
}

impl FromRow for InterventionDetailRow {
    fn from_row(row: &Row) -> Result<Self, RowError> {
        use keys_2358::*;
        let mut r = Reader::new(row);
        let need = SpecificNeed {
            category_name: r.text(NEED_CATEGORY_NAME),
            subcategory_name: r.text(NEED_SUBCATEGORY_NAME),
            category_id: r.text(NEED_CATEGORY_ID),
            subcategory_id: r.text(NEED_SUBCATEGORY_ID),
        };
        let need = (need != SpecificNeed::default()).then_some(need);
        let mut location_levels: [Option<String>; 6] = Default::default();
        for (slot, keys) in location_levels.iter_mut().zip(LOCATION_LEVELS) {
            *slot = r.location(keys);
        }
        let v = InterventionDetailRow {
            lp_intervention_id: r.req_text(LP_INTERVENTION_ID),
            intervention_number: r.text(INTERVENTION_NUMBER),
            business_unit: r.text(BUSINESS_UNIT),
            intervention_start_date: r.date(INTERVENTION_START_DATE),
            intervention_description: r.text(INTERVENTION_DESCRIPTION),
            reason_for_referral: r.text(REASON_FOR_REFERRAL),
            primero_transfer_status_date: r.datetime(PRIMERO_TRANSFER_STATUS_DATE),
            primero_id: r.text(PRIMERO_ID),
            intervention_type: r.text(INTERVENTION_TYPE),
            individual_id: r.text(INDIVIDUAL_ID),
            registration_group_id: r.text(REGISTRATION_GROUP_ID),
            registration_group_name: r.text(REGISTRATION_GROUP_NAME),
            given_name: r.text(GIVEN_NAME),
            middle_name: r.text(MIDDLE_NAME),
            family_name: r.text(FAMILY_NAME),
            commonly_used_name: r.text(COMMONLY_USED_NAME),
            date_of_birth: r.date(DATE_OF_BIRTH),
            sex: r.int(SEX),
            primary_phone: r.text(PRIMARY_PHONE),
            location_levels,
            caseworker_title: r.text(CASEWORKER_TITLE),
            caseworker_phone: r.text(CASEWORKER_PHONE),
            caseworker_email: r.text(CASEWORKER_EMAIL),
            language: r.text(LANGUAGE),
            need,
        };
        r.finish().map(|()| v)
    }
}

impl InterventionDetailRow {
    /// Names (keys) of the non-join fields whose values differ between `self` and `other`;
    /// empty when the two rows may belong to one group. Location levels are named by the
    /// first key of their level.
    pub fn non_join_differences(&self, other: &Self) -> Vec<&'static str> {
        use keys_2358::*;
        let mut d = Vec::new();
        let mut cmp = |same: bool, key: &'static str| {
            if !same {
                d.push(key);
            }
        };
        cmp(
            self.lp_intervention_id == other.lp_intervention_id,
            LP_INTERVENTION_ID,
        );
        cmp(
            self.intervention_number == other.intervention_number,
            INTERVENTION_NUMBER,
        );
        cmp(self.business_unit == other.business_unit, BUSINESS_UNIT);
        cmp(
            self.intervention_start_date == other.intervention_start_date,
            INTERVENTION_START_DATE,
        );
        cmp(
            self.intervention_description == other.intervention_description,
            INTERVENTION_DESCRIPTION,
        );
        cmp(
            self.reason_for_referral == other.reason_for_referral,
            REASON_FOR_REFERRAL,
        );
        cmp(
            self.primero_transfer_status_date == other.primero_transfer_status_date,
            PRIMERO_TRANSFER_STATUS_DATE,
        );
        cmp(self.primero_id == other.primero_id, PRIMERO_ID);
        cmp(
            self.intervention_type == other.intervention_type,
            INTERVENTION_TYPE,
        );
        cmp(self.individual_id == other.individual_id, INDIVIDUAL_ID);
        cmp(
            self.registration_group_id == other.registration_group_id,
            REGISTRATION_GROUP_ID,
        );
        cmp(
            self.registration_group_name == other.registration_group_name,
            REGISTRATION_GROUP_NAME,
        );
        cmp(self.given_name == other.given_name, GIVEN_NAME);
        cmp(self.middle_name == other.middle_name, MIDDLE_NAME);
        cmp(self.family_name == other.family_name, FAMILY_NAME);
        cmp(
            self.commonly_used_name == other.commonly_used_name,
            COMMONLY_USED_NAME,
        );
        cmp(self.date_of_birth == other.date_of_birth, DATE_OF_BIRTH);
        cmp(self.sex == other.sex, SEX);
        cmp(self.primary_phone == other.primary_phone, PRIMARY_PHONE);
        for (n, keys) in LOCATION_LEVELS.iter().enumerate() {
            cmp(self.location_levels[n] == other.location_levels[n], keys[0]);
        }
        cmp(
            self.caseworker_title == other.caseworker_title,
            CASEWORKER_TITLE,
        );
        cmp(
            self.caseworker_phone == other.caseworker_phone,
            CASEWORKER_PHONE,
        );
        cmp(
            self.caseworker_email == other.caseworker_email,
            CASEWORKER_EMAIL,
        );
        d
    }

    /// A hash of every non-join field: equal rows of one intervention have equal fingerprints
    /// (within one process; not for storage).
    pub fn non_join_fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.lp_intervention_id.hash(&mut h);
        self.intervention_number.hash(&mut h);
        self.business_unit.hash(&mut h);
        self.intervention_start_date.hash(&mut h);
        self.intervention_description.hash(&mut h);
        self.reason_for_referral.hash(&mut h);
        self.primero_transfer_status_date.hash(&mut h);
        self.primero_id.hash(&mut h);
        self.intervention_type.hash(&mut h);
        self.individual_id.hash(&mut h);
        self.registration_group_id.hash(&mut h);
        self.registration_group_name.hash(&mut h);
        self.given_name.hash(&mut h);
        self.middle_name.hash(&mut h);
        self.family_name.hash(&mut h);
        self.commonly_used_name.hash(&mut h);
        self.date_of_birth.hash(&mut h);
        self.sex.hash(&mut h);
        self.primary_phone.hash(&mut h);
        self.location_levels.hash(&mut h);
        self.caseworker_title.hash(&mut h);
        self.caseworker_phone.hash(&mut h);
        self.caseworker_email.hash(&mut h);
        h.finish()
    }
}

// ---------------------------------------------------------------------------------------------
// SHP-2795 / SHP-2796

/// Keys of SHP-2795 and SHP-2796 rows.
pub mod keys_decision {
    pub const REFERRAL_ID: &str = "progres_interoperabilityreferralid";
    pub const STATUS: &str = "progres_interoperabilityreferralstatus";
    pub const REVIEW_DECISION: &str = "progres_reviewdecision";
    pub const OFFLINE_ID: &str = "progres_offlineid";
    pub const ORG_REFERRAL_ID: &str = "progres_orgreferralid";
    /// Misspelt in proGres itself.
    pub const REJECTION_REASON_NAME: &str = "progres_interoperabiltyreferralrejectionreasonname";
    /// Misspelt in proGres itself.
    pub const REJECTION_COMMENT: &str = "progres_interoperabilityreferralrejectionomment";
}

/// One row of the decision list (SHP-2795).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionListRow {
    pub referral_id: String,
    /// `progres_interoperabilityreferralstatus` code.
    pub status: i64,
}

impl FromRow for DecisionListRow {
    fn from_row(row: &Row) -> Result<Self, RowError> {
        use keys_decision::*;
        let mut r = Reader::new(row);
        let v = DecisionListRow {
            referral_id: r.req_text(REFERRAL_ID),
            status: r.req_int(STATUS),
        };
        r.finish().map(|()| v)
    }
}

/// One decision's detail (SHP-2796).
///
/// The decision is in `progres_interoperabilityreferralstatus` (interoperability status
/// codes); `progres_reviewdecision` is a separate field with codes of its own (ping-api.md
/// §4: 125080000 accepted, 125080001 rejected), kept apart so that no code is read with the
/// other field's table. At least one of the two is required.
#[derive(Clone, PartialEq, Eq)]
pub struct DecisionDetail {
    pub referral_id: String,
    /// `progres_interoperabilityreferralstatus` (interoperability status codes).
    pub status: Option<i64>,
    /// `progres_reviewdecision` (review decision codes, not status codes).
    pub review_decision: Option<i64>,
    /// `progres_offlineid` (= Primero `case_id`).
    pub offline_id: String,
    /// `progres_orgreferralid` (= Primero service `unique_id`).
    pub org_referral_id: String,
    pub rejection_reason_name: Option<String>,
    /// Free text: redacted in `Debug`.
    pub rejection_comment: Option<String>,
}

impl fmt::Debug for DecisionDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionDetail")
            .field("referral_id", &self.referral_id)
            .field("status", &self.status)
            .field("review_decision", &self.review_decision)
            .field("offline_id", &self.offline_id)
            .field("org_referral_id", &self.org_referral_id)
            .field("rejection_reason_name", &self.rejection_reason_name)
            .field(
                "rejection_comment",
                &self.rejection_comment.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl FromRow for DecisionDetail {
    /// Every missing or malformed key at once; a row with neither the status nor the review
    /// decision names the status as missing.
    fn from_row(row: &Row) -> Result<Self, RowError> {
        use keys_decision::*;
        let mut r = Reader::new(row);
        let status = r.int(STATUS);
        let review_decision = r.int(REVIEW_DECISION);
        if status.is_none()
            && review_decision.is_none()
            && !r.bad.contains(&STATUS)
            && !r.bad.contains(&REVIEW_DECISION)
        {
            r.missing.push(STATUS);
        }
        let v = DecisionDetail {
            referral_id: r.req_text(REFERRAL_ID),
            status,
            review_decision,
            offline_id: r.req_text(OFFLINE_ID),
            org_referral_id: r.req_text(ORG_REFERRAL_ID),
            rejection_reason_name: r.text(REJECTION_REASON_NAME),
            rejection_comment: r.text(REJECTION_COMMENT),
        };
        r.finish().map(|()| v)
    }
}

/// Parses every row, keeping each row's own result (one bad row does not hide the others).
pub fn parse_rows<T: FromRow>(rows: &[Row]) -> Vec<Result<T, RowError>> {
    rows.iter().map(T::from_row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Row {
        Row::new(v.as_object().unwrap().clone())
    }

    fn detail_json() -> Value {
        json!({
            "progres_interventionnumber": "803-23-PRTITV-1000642",
            "progres_lpinterventionid": "68b20e2a-4879-ee11-8179-000d3a43f6eb",
            "progres_businessunit": "577ccdf6-86de-e811-80d8-001dd8b71fe3",
            "progres_interventionstartdate": "2023-11-02",
            "progres_interventiondescription": "<p>Needs urgent care</p>",
            "progres_primerotransferstatusdate": "2023-11-03T08:15:00Z",
            "progres_interventiontype2.interventiontype.progres_description": "BIA",
            "progres_individual.individuals.progres_id": "803-100016547",
            "progres_individual.individuals.progres_givenname": "Lindah",
            "progres_individual.individuals.progres_familyname": "Achieng",
            "progres_individual.individuals.progres_dateofbirth": "2012-04-05T00:00:00",
            "progres_individual.individuals.progres_sex": 125080000,
            "progres_individual.individuals.progres_primaryphonenumber": "+254700000001",
            "individuals.progres_coalocationlevel1": {"Name": "Dadaab"},
            "progres_individual.individuals.progres_coalocationlevel2": "Hagadera",
            "systemuser.su.internalemailaddress": "caseworker@example.org",
            "progres_language.progres_languagecodeidname": "Somali",
            "progres_specificneed.progres_spncategory2name": "Child at risk",
            "progres_specificneed.specificneeds.progres_spncategory2": "a1c5b4fb-8f76-e611-80c9-00155d340529",
            "an.unknown.key": [1, 2]
        })
    }

    #[test]
    fn intervention_detail_reads_every_kind_of_field() {
        let d = InterventionDetailRow::from_row(&row(detail_json())).unwrap();
        assert_eq!(d.lp_intervention_id, "68b20e2a-4879-ee11-8179-000d3a43f6eb");
        assert_eq!(d.date_of_birth, NaiveDate::from_ymd_opt(2012, 4, 5));
        assert_eq!(
            d.primero_transfer_status_date.unwrap().to_rfc3339(),
            "2023-11-03T08:15:00+00:00"
        );
        assert_eq!(d.sex, Some(125080000));
        assert_eq!(d.location_levels[0].as_deref(), Some("Dadaab"));
        assert_eq!(d.location_levels[1].as_deref(), Some("Hagadera"));
        assert_eq!(d.location_levels[2], None);
        assert_eq!(d.language.as_deref(), Some("Somali"));
        let need = d.need.as_ref().unwrap();
        assert_eq!(need.category_name.as_deref(), Some("Child at risk"));
        assert_eq!(need.subcategory_id, None);

        let dbg = format!("{d:?}");
        for secret in [
            "Lindah",
            "Achieng",
            "2012",
            "+254",
            "caseworker@",
            "Somali",
            "Child at risk",
            "urgent",
            "Dadaab",
        ] {
            assert!(!dbg.contains(secret), "Debug leaks {secret}: {dbg}");
        }
        assert!(dbg.contains("68b20e2a-4879-ee11-8179-000d3a43f6eb"));
    }

    #[test]
    fn join_rows_differ_only_in_join_fields() {
        let a = InterventionDetailRow::from_row(&row(detail_json())).unwrap();
        let mut j = detail_json();
        j["progres_language.progres_languagecodeidname"] = json!("Nuer");
        let b = InterventionDetailRow::from_row(&row(j)).unwrap();
        assert!(a.non_join_differences(&b).is_empty());
        assert_eq!(a.non_join_fingerprint(), b.non_join_fingerprint());

        let mut j = detail_json();
        j["progres_individual.individuals.progres_givenname"] = json!("Other");
        j["progres_individual.individuals.progres_sex"] = json!(125080001);
        let c = InterventionDetailRow::from_row(&row(j)).unwrap();
        assert_eq!(
            a.non_join_differences(&c),
            vec![keys_2358::GIVEN_NAME, keys_2358::SEX]
        );
        assert_ne!(a.non_join_fingerprint(), c.non_join_fingerprint());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut j = detail_json();
        j.as_object_mut()
            .unwrap()
            .remove("progres_lpinterventionid");
        j["progres_individual.individuals.progres_dateofbirth"] = json!("not a date");
        j["progres_individual.individuals.progres_sex"] = json!("female");
        let e = InterventionDetailRow::from_row(&row(j)).unwrap_err();
        assert_eq!(
            e,
            RowError::BadValues {
                bad: vec![keys_2358::DATE_OF_BIRTH, keys_2358::SEX],
                missing: vec![keys_2358::LP_INTERVENTION_ID],
            }
        );
        assert!(!e.to_string().contains("not a date"));

        let e = DecisionDetail::from_row(&row(json!({"x": 1}))).unwrap_err();
        assert_eq!(
            e,
            RowError::MissingKeys(vec![
                keys_decision::STATUS,
                keys_decision::REFERRAL_ID,
                keys_decision::OFFLINE_ID,
                keys_decision::ORG_REFERRAL_ID
            ])
        );
    }

    #[test]
    fn decisions() {
        let l = DecisionListRow::from_row(&row(json!({
            "progres_interoperabilityreferralid": "2785b477-767d-4814-949a-be8e0990bcc8",
            "progres_interoperabilityreferralstatus": 125080001
        })))
        .unwrap();
        assert_eq!(l.status, 125080001);

        let d = DecisionDetail::from_row(&row(json!({
            "progres_interoperabilityreferralid": "2785b477-767d-4814-949a-be8e0990bcc8",
            "progres_reviewdecision": "125080001",
            "progres_offlineid": "case-1",
            "progres_orgreferralid": "svc-1",
            "progres_interoperabiltyreferralrejectionreasonname": "Individual Not Found",
            "progres_interoperabilityreferralrejectionomment": "The child Lindah moved"
        })))
        .unwrap();
        // The review decision keeps its own field: its codes are not status codes.
        assert_eq!(d.status, None);
        assert_eq!(d.review_decision, Some(125080001));
        assert_eq!(
            d.rejection_reason_name.as_deref(),
            Some("Individual Not Found")
        );
        let dbg = format!("{d:?}");
        assert!(!dbg.contains("Lindah") && dbg.contains("case-1"));

        let both = DecisionDetail::from_row(&row(json!({
            "progres_interoperabilityreferralid": "g-2",
            "progres_interoperabilityreferralstatus": 125080002,
            "progres_reviewdecision": 125080001,
            "progres_offlineid": "case-2",
            "progres_orgreferralid": "svc-2"
        })))
        .unwrap();
        assert_eq!(
            (both.status, both.review_decision),
            (Some(125080002), Some(125080001))
        );
    }

    #[test]
    fn decision_detail_problems_name_every_key() {
        // Neither status field, no case id, no service id: all named at once.
        let e = DecisionDetail::from_row(&row(json!({
            "progres_interoperabilityreferralid": "g-3"
        })))
        .unwrap_err();
        assert_eq!(
            e.keys(),
            vec![
                keys_decision::STATUS,
                keys_decision::OFFLINE_ID,
                keys_decision::ORG_REFERRAL_ID
            ]
        );
        // A malformed status is not replaced by the review decision.
        let e = DecisionDetail::from_row(&row(json!({
            "progres_interoperabilityreferralid": "g-4",
            "progres_interoperabilityreferralstatus": "accepted",
            "progres_reviewdecision": 125080000,
            "progres_offlineid": "case-4",
            "progres_orgreferralid": "svc-4"
        })))
        .unwrap_err();
        assert_eq!(e.keys(), vec![keys_decision::STATUS]);
    }
}
