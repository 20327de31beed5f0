//! Flow 1.1 `referrals-to-primero`, pure part: group the SHP-2358 join rows of one LP
//! intervention, validate them, and map them to a Primero case with one service row
//! (flows.md, Flow 1.1 steps 2-4), plus the SHP-2748 "pending acknowledgement" write-back
//! record (step 6). No IO and no clock: "today" is an argument.
//!
//! Rejections carry a reason code and a message that names fields, codes and identifiers,
//! never personal values. Types holding personal data print identifiers only in `Debug`.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use pp_ping::rows::keys_2358;
use pp_ping::{IngestRecord, InterventionDetailRow, SpecificNeed};
use regex::Regex;
use serde_json::{json, Map, Value};

use crate::maps::{Maps, TransferStatus};

/// SHP-2747 row without `progres_lpinterventionid`.
pub const MISSING_LP_INTERVENTION_ID: &str = "missing_lp_intervention_id";
/// Required fields missing (or unusable): one rejection naming all of them.
pub const MISSING_REQUIRED_FIELDS: &str = "missing_required_fields";
/// Intervention type description absent from the intervention-type map (R2).
pub const UNMAPPED_INTERVENTION_TYPE: &str = "unmapped_intervention_type";
/// A language absent from the language map, no fallback configured (R2).
pub const UNMAPPED_LANGUAGE: &str = "unmapped_language";
/// A sex code absent from the sex map, no fallback configured (R2).
pub const UNMAPPED_SEX: &str = "unmapped_sex";
/// The rows of one LP intervention disagree on a non-join field.
pub const INCONSISTENT_JOIN_ROWS: &str = "inconsistent_join_rows";
/// Several Primero cases match the individual and none is named by `progres_primeroid` (R3).
pub const DUPLICATE_CASES: &str = "duplicate_cases";
/// The case id derived for the individual is held by a Primero case of another individual
/// (or one whose UNHCR number was changed): nothing is written to it (R3).
pub const CASE_ID_TAKEN: &str = "case_id_taken";
/// A source identifier that cannot be a ledger key or identifier (blank, longer than
/// [`MAX_IDENT_LEN`] characters, or holding control characters): the record is rejected (or,
/// when not even a key can be built, counted in the report) instead of reaching the ledger,
/// which would refuse the whole batch (R1).
pub const MALFORMED_IDENTIFIER: &str = "malformed_identifier";
/// Primero or PING refused the record (message: the server's field names / pointers).
pub const VALIDATION_ERROR: &str = "validation_error";
/// A transient failure (timeout, 5xx, 429, dropped connection): retried by a later run.
pub const TRANSIENT: &str = "transient";

/// Longest source identifier accepted as (part of) a ledger key or identifier.
pub const MAX_IDENT_LEN: usize = 200;

/// Whether `s` can be a ledger key or identifier: not blank, at most [`MAX_IDENT_LEN`]
/// characters, no control characters.
pub fn is_ident(s: &str) -> bool {
    !s.trim().is_empty() && s.chars().count() <= MAX_IDENT_LEN && !s.chars().any(char::is_control)
}

/// The canonical form of an LP intervention id, the same on both sides (SHP-2747 list,
/// SHP-2358 rows, ledger key): trimmed, and lowercased when it is a GUID (Dynamics compares
/// GUIDs case-insensitively), so a record never waits for rows that came back spelt otherwise.
pub fn normalize_lp_id(s: &str) -> String {
    let t = s.trim();
    let guid = t.len() == 36
        && t.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if guid {
        t.to_ascii_lowercase()
    } else {
        t.to_owned()
    }
}

/// Primero `service_request_agency` / `service_implementing_agency` values of this flow.
pub const REQUEST_AGENCY: &str = "UNHCR";
pub const IMPLEMENTING_AGENCY: &str = "UNICEF";

/// Why a record cannot be mapped: a reason code and a message free of personal values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub message: String,
}

impl Rejection {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            reason,
            message: message.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

/// The rows of one LP intervention folded into one referral: the non-join fields (equal on
/// every row), the languages as a set (first-seen order) and the unique specific needs.
#[derive(Clone, PartialEq, Eq)]
pub struct ReferralGroup {
    /// The first row; its join fields (`language`, `need`) are not meaningful.
    pub base: InterventionDetailRow,
    /// Language names, each once, in the order first seen.
    pub languages: Vec<String>,
    /// Unique (category, subcategory) needs, in the order first seen.
    pub needs: Vec<SpecificNeed>,
    /// How many SHP-2358 rows were folded.
    pub rows: usize,
}

impl fmt::Debug for ReferralGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReferralGroup")
            .field("lp_intervention_id", &self.base.lp_intervention_id)
            .field("intervention_number", &self.base.intervention_number)
            .field("individual_id", &presence(&self.base.individual_id))
            .field("languages", &self.languages.len())
            .field("needs", &self.needs.len())
            .field("rows", &self.rows)
            .finish()
    }
}

/// The UNHCR individual number identifies a person: `Debug` shows only whether it is there.
fn presence<T>(v: &Option<T>) -> &'static str {
    if v.is_some() {
        "[present]"
    } else {
        "[none]"
    }
}

impl ReferralGroup {
    pub fn lp_intervention_id(&self) -> &str {
        &self.base.lp_intervention_id
    }

    /// A canonical JSON form of the source (every non-join field, languages and needs
    /// sorted), for the keyed payload hash that notices a changed source (R11). It holds
    /// personal data: hash it, never store or log it.
    pub fn source_json(&self) -> Value {
        let b = &self.base;
        let mut languages = self.languages.clone();
        languages.sort();
        let mut needs: Vec<Value> = self
            .needs
            .iter()
            .map(|n| {
                json!([
                    n.category_id,
                    n.subcategory_id,
                    n.category_name,
                    n.subcategory_name
                ])
            })
            .collect();
        needs.sort_by_key(|v| v.to_string());
        json!({
            "lp": b.lp_intervention_id,
            "number": b.intervention_number,
            "bu": b.business_unit,
            "start": b.intervention_start_date.map(|d| d.to_string()),
            "description": b.intervention_description,
            "reason": b.reason_for_referral,
            "primero_id": b.primero_id,
            "type": b.intervention_type,
            "individual": b.individual_id,
            "group_id": b.registration_group_id,
            "group_name": b.registration_group_name,
            "names": [b.given_name, b.middle_name, b.family_name, b.commonly_used_name],
            "dob": b.date_of_birth.map(|d| d.to_string()),
            "sex": b.sex,
            "phone": b.primary_phone,
            "location": b.location_levels,
            "caseworker": [b.caseworker_title, b.caseworker_phone, b.caseworker_email],
            "languages": languages,
            "needs": needs,
        })
    }
}

/// Groups SHP-2358 rows by LP intervention id, in the order each id first appears. A group
/// whose rows disagree on a non-join field is rejected with `inconsistent_join_rows`, naming
/// the differing fields (never their values).
pub fn group_rows(
    rows: impl IntoIterator<Item = InterventionDetailRow>,
) -> Vec<(String, Result<ReferralGroup, Rejection>)> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: std::collections::HashMap<String, (ReferralGroup, BTreeSet<&'static str>)> =
        std::collections::HashMap::new();
    for row in rows {
        let id = row.lp_intervention_id.clone();
        match groups.get_mut(&id) {
            None => {
                let mut g = ReferralGroup {
                    languages: Vec::new(),
                    needs: Vec::new(),
                    rows: 1,
                    base: row.clone(),
                };
                add_join_fields(&mut g, &row);
                order.push(id.clone());
                groups.insert(id, (g, BTreeSet::new()));
            }
            Some((g, differing)) => {
                differing.extend(g.base.non_join_differences(&row));
                g.rows += 1;
                add_join_fields(g, &row);
            }
        }
    }
    order
        .into_iter()
        .map(|id| {
            let (g, differing) = groups.remove(&id).expect("grouped id");
            let result = if differing.is_empty() {
                Ok(g)
            } else {
                Err(Rejection::new(
                    INCONSISTENT_JOIN_ROWS,
                    format!(
                        "{} SHP-2358 rows of LP intervention {id} disagree on: {}",
                        g.rows,
                        differing.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                ))
            };
            (id, result)
        })
        .collect()
}

fn add_join_fields(g: &mut ReferralGroup, row: &InterventionDetailRow) {
    if let Some(lang) = row.language.as_deref().map(str::trim) {
        if !lang.is_empty() && !g.languages.iter().any(|l| l == lang) {
            g.languages.push(lang.to_owned());
        }
    }
    if let Some(need) = &row.need {
        let same = |n: &SpecificNeed| {
            (
                &n.category_id,
                &n.subcategory_id,
                &n.category_name,
                &n.subcategory_name,
            ) == (
                &need.category_id,
                &need.subcategory_id,
                &need.category_name,
                &need.subcategory_name,
            )
        };
        if !g.needs.iter().any(same) {
            g.needs.push(need.clone());
        }
    }
}

/// A referral mapped for Primero: the case fields, the one service row, and the identifiers
/// the flow needs. `Debug` prints identifiers and field names only.
#[derive(Clone, PartialEq)]
pub struct MappedReferral {
    pub lp_intervention_id: String,
    pub intervention_number: String,
    pub business_unit: String,
    /// `progres_individual.individuals.progres_id` = Primero `unhcr_individual_no`.
    pub individual_id: String,
    /// `progres_primeroid`: chooses between several matching cases (step 5).
    pub primero_id: Option<String>,
    /// Case fields (without `services_section`).
    pub case: Map<String, Value>,
    /// The service row (without `unique_id`).
    pub service: Map<String, Value>,
    /// Maps whose configured fallback gave a value (R2), e.g. `language_to_primero`.
    pub fallbacks_used: Vec<&'static str>,
}

impl fmt::Debug for MappedReferral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappedReferral")
            .field("lp_intervention_id", &self.lp_intervention_id)
            .field("intervention_number", &self.intervention_number)
            .field("business_unit", &self.business_unit)
            .field("individual_id", &presence(&Some(&self.individual_id)))
            .field("primero_id", &self.primero_id)
            .field("case_fields", &self.case.keys().collect::<Vec<_>>())
            .field("service_fields", &self.service.keys().collect::<Vec<_>>())
            .field("fallbacks_used", &self.fallbacks_used)
            .finish()
    }
}

impl MappedReferral {
    /// `progres_interventionnumber` of the service row: `{number},{lp id},{business unit}`.
    pub fn composite_number(&self) -> String {
        composite_intervention_number(
            &self.intervention_number,
            &self.lp_intervention_id,
            &self.business_unit,
        )
    }

    /// Whether a configured map fallback was used (flag the record, R2).
    pub fn fallback_used(&self) -> bool {
        !self.fallbacks_used.is_empty()
    }

    /// The body of `POST /api/v2/cases`: the case fields and `services_section: [row]`.
    pub fn create_payload(&self) -> Map<String, Value> {
        let mut data = self.case.clone();
        data.insert(
            "services_section".into(),
            Value::Array(vec![Value::Object(self.service.clone())]),
        );
        data
    }

    /// The body of the PATCH that appends the row to an existing case (the case's own fields
    /// are left alone).
    pub fn append_payload(&self) -> Map<String, Value> {
        let mut data = Map::new();
        data.insert(
            "services_section".into(),
            Value::Array(vec![Value::Object(self.service.clone())]),
        );
        data
    }

    /// Field names of a payload (`services_section.<field>` for the row), for previews.
    pub fn field_names(payload: &Map<String, Value>) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in payload {
            match v {
                Value::Array(rows) if k == "services_section" => {
                    for row in rows {
                        if let Value::Object(r) = row {
                            out.extend(r.keys().map(|f| format!("{k}.{f}")));
                        }
                    }
                }
                _ => out.push(k.clone()),
            }
        }
        out
    }

    /// The SHP-2748 write-back of a delivered referral (step 6): `ExternalId` = LP id,
    /// transfer status "pending acknowledgement", status date = the run's date.
    pub fn write_back(&self, maps: &Maps, today: NaiveDate) -> IngestRecord {
        pending_write_back(&self.lp_intervention_id, &self.business_unit, maps, today)
    }
}

/// The SHP-2748 record setting "pending acknowledgement" (step 6) on an LP intervention.
pub fn pending_write_back(
    lp_intervention_id: &str,
    business_unit: &str,
    maps: &Maps,
    today: NaiveDate,
) -> IngestRecord {
    let code = maps
        .codes
        .transfer_status
        .code(TransferStatus::PendingAcknowledgement);
    IngestRecord::new(lp_intervention_id)
        .field("progres_lpinterventionid", Some(lp_intervention_id))
        .field("progres_businessunit", Some(business_unit))
        .field("progres_primerotransferstatus", Some(code.to_string()))
        .field(
            "progres_primerotransferstatusdate",
            Some(today.format("%Y-%m-%d").to_string()),
        )
}

/// `"{interventionnumber},{lpinterventionid},{businessunit}"`.
pub fn composite_intervention_number(number: &str, lp_id: &str, business_unit: &str) -> String {
    format!("{number},{lp_id},{business_unit}")
}

/// Whether a service row's `progres_interventionnumber` is this intervention: its first
/// comma-separated part equals `number` exactly (the reference compared a prefix, which also
/// matched longer numbers). [fix]
pub fn row_matches_intervention(row_value: &str, number: &str) -> bool {
    row_value.split(',').next().map(str::trim) == Some(number.trim())
}

/// Validates and maps one referral group (steps 3 and 4). `module_id` is the configured
/// Primero module; `today` is the run's date (for `age`).
///
/// Checks, in this order, each giving one rejection: required fields
/// (`missing_required_fields`, naming all missing ones), intervention type
/// (`unmapped_intervention_type`), sex (`unmapped_sex`), languages (`unmapped_language`).
pub fn map_referral(
    group: &ReferralGroup,
    maps: &Maps,
    module_id: &str,
    today: NaiveDate,
) -> Result<MappedReferral, Rejection> {
    let b = &group.base;
    let mut missing: Vec<&'static str> = Vec::new();
    let mut need = |present: bool, key: &'static str| {
        if !present {
            missing.push(key);
        }
    };
    need(
        b.intervention_number.is_some(),
        keys_2358::INTERVENTION_NUMBER,
    );
    need(b.business_unit.is_some(), keys_2358::BUSINESS_UNIT);
    need(b.intervention_type.is_some(), keys_2358::INTERVENTION_TYPE);
    need(b.individual_id.is_some(), keys_2358::INDIVIDUAL_ID);
    // The registration group's name (`803-…`) is what Primero receives as `unhcr_id_no`.
    need(
        b.registration_group_name
            .as_deref()
            .is_some_and(|v| !v.trim().is_empty()),
        keys_2358::REGISTRATION_GROUP_NAME,
    );
    need(b.given_name.is_some(), keys_2358::GIVEN_NAME);
    need(b.family_name.is_some(), keys_2358::FAMILY_NAME);
    need(b.date_of_birth.is_some(), keys_2358::DATE_OF_BIRTH);
    need(b.sex.is_some(), keys_2358::SEX);
    if !missing.is_empty() {
        return Err(Rejection::new(
            MISSING_REQUIRED_FIELDS,
            format!(
                "LP intervention {} lacks required fields: {}",
                b.lp_intervention_id,
                missing.join(", ")
            ),
        ));
    }
    // Identifiers that become ledger identifiers and fact keys (R1: never refused there).
    let malformed: Vec<&'static str> = [
        (
            keys_2358::INTERVENTION_NUMBER,
            b.intervention_number.as_deref(),
        ),
        (keys_2358::BUSINESS_UNIT, b.business_unit.as_deref()),
        (keys_2358::INDIVIDUAL_ID, b.individual_id.as_deref()),
    ]
    .into_iter()
    .filter(|(_, v)| v.is_some_and(|v| !is_ident(v)))
    .map(|(k, _)| k)
    .collect();
    if !malformed.is_empty() {
        return Err(Rejection::new(
            MALFORMED_IDENTIFIER,
            format!(
                "LP intervention {}: blank, over-long (more than {MAX_IDENT_LEN} characters) or \
                 control characters in: {}",
                b.lp_intervention_id,
                malformed.join(", ")
            ),
        ));
    }
    // All present from here on.
    let number = b
        .intervention_number
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    let business_unit = b
        .business_unit
        .as_deref()
        .map(str::trim)
        .unwrap_or_default()
        .to_owned();
    let individual_id = b.individual_id.clone().unwrap_or_default();
    let dob = b.date_of_birth.unwrap_or(today);
    let sex_code = b.sex.unwrap_or_default();
    let intervention_type = b.intervention_type.as_deref().unwrap_or_default();

    let mut fallbacks_used = Vec::new();
    let service_type = maps
        .map_intervention_type(intervention_type)
        .ok_or_else(|| {
            Rejection::new(
                UNMAPPED_INTERVENTION_TYPE,
                format!(
                "{} value {intervention_type:?} has no entry in maps.intervention_type_to_service",
                keys_2358::INTERVENTION_TYPE
            ),
            )
        })?;
    if service_type.fallback_used {
        fallbacks_used.push("intervention_type_to_service");
    }
    let sex = maps.map_sex_to_primero(sex_code).ok_or_else(|| {
        Rejection::new(
            UNMAPPED_SEX,
            format!(
                "{} code {sex_code} has no entry in the sex map",
                keys_2358::SEX
            ),
        )
    })?;
    if sex.fallback_used {
        fallbacks_used.push("sex_progres_to_primero");
    }
    let mut languages: Vec<String> = Vec::new();
    let mut unmapped: Vec<&str> = Vec::new();
    let mut language_fallback = false;
    for name in &group.languages {
        match maps.map_language_to_primero(name) {
            Some(m) => {
                language_fallback |= m.fallback_used;
                if !languages.iter().any(|l| l == m.value) {
                    languages.push(m.value.to_owned());
                }
            }
            None => unmapped.push(name),
        }
    }
    if !unmapped.is_empty() {
        return Err(Rejection::new(
            UNMAPPED_LANGUAGE,
            format!(
                "{} values {} have no entry in maps.language_to_primero",
                keys_2358::LANGUAGE,
                unmapped
                    .iter()
                    .map(|u| format!("{u:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if language_fallback {
        fallbacks_used.push("language_to_primero");
    }
    let age = whole_years(dob, today).ok_or_else(|| {
        Rejection::new(
            MISSING_REQUIRED_FIELDS,
            format!(
                "LP intervention {}: {} is after the run date",
                b.lp_intervention_id,
                keys_2358::DATE_OF_BIRTH
            ),
        )
    })?;

    let mut case = Map::new();
    case.insert("unhcr_individual_no".into(), json!(individual_id));
    case.insert("unhcr_id_no".into(), json!(b.registration_group_name));
    case.insert("name_first".into(), json!(b.given_name));
    case.insert("name_middle".into(), json!(b.middle_name));
    case.insert("name_last".into(), json!(b.family_name));
    case.insert("name_nickname".into(), json!(b.commonly_used_name));
    case.insert(
        "date_of_birth".into(),
        json!(dob.format("%Y-%m-%d").to_string()),
    );
    case.insert("age".into(), json!(age));
    case.insert("sex".into(), json!(sex.value));
    case.insert("telephone_current".into(), json!(b.primary_phone));
    case.insert("address_current".into(), json!(address(&b.location_levels)));
    case.insert("language".into(), json!(languages));
    case.insert("status".into(), json!("open"));
    case.insert("module_id".into(), json!(module_id));

    let mut row = Map::new();
    row.insert("service_type".into(), json!(service_type.value));
    if let Some(d) = b.intervention_start_date {
        row.insert(
            "service_appointment_date".into(),
            json!(d.format("%Y-%m-%d").to_string()),
        );
    }
    if let Some(t) = b.primero_transfer_status_date {
        row.insert("service_response_day_time".into(), json!(timestamp(t)));
    }
    row.insert("service_request_external".into(), json!(true));
    row.insert("service_request_title".into(), json!(b.caseworker_title));
    row.insert("service_request_phone".into(), json!(b.caseworker_phone));
    row.insert("service_request_email".into(), json!(b.caseworker_email));
    row.insert("service_request_agency".into(), json!(REQUEST_AGENCY));
    row.insert(
        "service_referral_notes".into(),
        json!(referral_notes(
            b.intervention_description.as_deref(),
            b.reason_for_referral.as_deref()
        )),
    );
    row.insert(
        "service_implementing_agency".into(),
        json!(IMPLEMENTING_AGENCY),
    );
    row.insert("service_response_type".into(), json!("service_provision"));
    row.insert("service_referral".into(), json!("external_referral"));
    row.insert("unhcr_referral_status".into(), json!("pending"));
    row.insert(
        "progres_interventionnumber".into(),
        json!(composite_intervention_number(
            &number,
            &b.lp_intervention_id,
            &business_unit
        )),
    );

    Ok(MappedReferral {
        lp_intervention_id: b.lp_intervention_id.clone(),
        intervention_number: number,
        business_unit,
        individual_id,
        primero_id: b.primero_id.clone(),
        case,
        service: row,
        fallbacks_used,
    })
}

/// Whole years from `dob` to `today`; `None` when `dob` is after `today`.
pub fn whole_years(dob: NaiveDate, today: NaiveDate) -> Option<u32> {
    if dob > today {
        return None;
    }
    let mut years = today.year() - dob.year();
    if (today.month(), today.day()) < (dob.month(), dob.day()) {
        years -= 1;
    }
    u32::try_from(years).ok()
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Location levels 1-6 joined by spaces; `None` when there is none.
pub fn address(levels: &[Option<String>; 6]) -> Option<String> {
    let parts: Vec<&str> = levels
        .iter()
        .filter_map(|l| l.as_deref().map(str::trim))
        .filter(|l| !l.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// HTML-stripped intervention description and reason for referral joined by `, ` (empty
/// parts left out); `None` when both are empty. A reason holding a JSON array of strings (seen
/// in the reference's samples) is read as its items joined by `, `.
pub fn referral_notes(description: Option<&str>, reason: Option<&str>) -> Option<String> {
    let reason = reason.map(|r| {
        let t = r.trim();
        match serde_json::from_str::<Vec<String>>(t) {
            Ok(items) if t.starts_with('[') => items.join(", "),
            _ => t.to_owned(),
        }
    });
    let parts: Vec<String> = [description.map(str::to_owned), reason]
        .into_iter()
        .flatten()
        .map(|p| strip_html(&p))
        .filter(|p| !p.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Text of an HTML fragment: tags (and `<script>`/`<style>` bodies) removed, block-level
/// breaks turned into spaces, the usual entities decoded, whitespace collapsed.
pub fn strip_html(html: &str) -> String {
    static SCRIPT: OnceLock<Regex> = OnceLock::new();
    static TAG: OnceLock<Regex> = OnceLock::new();
    static NUMERIC: OnceLock<Regex> = OnceLock::new();
    let script = SCRIPT.get_or_init(|| {
        Regex::new(r"(?is)<(script|style)\b[^>]*>.*?</(script|style)\s*>").expect("regex")
    });
    let tag = TAG.get_or_init(|| Regex::new(r"(?s)<!--.*?-->|</?[A-Za-z!][^>]*>").expect("regex"));
    let numeric = NUMERIC.get_or_init(|| Regex::new(r"&#(x[0-9A-Fa-f]+|[0-9]+);").expect("regex"));
    let text = script.replace_all(html, " ");
    let text = tag.replace_all(&text, " ");
    let text = numeric.replace_all(&text, |c: &regex::Captures<'_>| {
        let n = &c[1];
        let code = match n.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => n.parse().ok(),
        };
        code.and_then(char::from_u32)
            .map(String::from)
            .unwrap_or_default()
    });
    let text = text
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_stripped_and_entities_decoded() {
        assert_eq!(
            strip_html("<p>Needs&nbsp;<b>urgent</b> care &amp; follow-up</p><br/>now"),
            "Needs urgent care & follow-up now"
        );
        assert_eq!(
            strip_html("<script>alert(1)</script>ok &#233;t&#xE9;"),
            "ok été"
        );
        assert_eq!(strip_html("plain text"), "plain text");
    }

    #[test]
    fn age_counts_whole_years() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(whole_years(d(2012, 4, 5), d(2026, 4, 4)), Some(13));
        assert_eq!(whole_years(d(2012, 4, 5), d(2026, 4, 5)), Some(14));
        assert_eq!(whole_years(d(2026, 4, 5), d(2026, 4, 5)), Some(0));
        assert_eq!(whole_years(d(2026, 4, 6), d(2026, 4, 5)), None);
    }

    #[test]
    fn intervention_number_matches_first_part_exactly() {
        assert!(row_matches_intervention("LP-1,abc,def", "LP-1"));
        assert!(row_matches_intervention("LP-1", "LP-1"));
        assert!(!row_matches_intervention("LP-10,abc,def", "LP-1"));
        assert!(!row_matches_intervention("LP-1", "LP-10"));
    }
}
