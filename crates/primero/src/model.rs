//! Typed views of Primero's wire JSON: cases (kept whole as dynamic JSON, with typed access to
//! the system fields and to `services_section` rows), referrals, users.
//!
//! Every type that can hold personal data (case fields, service notes, rejection reasons,
//! user names and contacts) implements `Debug` by hand and prints identifiers and field names
//! only.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::error::PrimeroError;

/// Parses Primero's `YYYY-MM-DDTHH:MM:SS.mmmZ` (any RFC 3339 time).
pub(crate) fn parse_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let s = v?.as_str()?;
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// A non-blank string value; empty and whitespace-only strings count as absent.
fn non_blank(v: Option<&Value>) -> Option<&str> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.as_str()),
        _ => None,
    }
}

fn owned(v: Option<&Value>) -> Option<String> {
    non_blank(v).map(str::to_string)
}

/// Strings of an array value (blank items skipped); a single string gives one item.
fn string_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| non_blank(Some(i)))
            .map(str::to_string)
            .collect(),
        Some(v @ Value::String(_)) => non_blank(Some(v)).map(str::to_string).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// Field names of a map, for redacted `Debug` output.
struct Keys<'a>(&'a Map<String, Value>);

impl fmt::Debug for Keys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// Marks a present personal value without showing it.
fn redacted<T>(v: &Option<T>) -> &'static str {
    if v.is_some() {
        "<redacted>"
    } else {
        "<none>"
    }
}

/// A Primero case: the system fields typed, the whole record kept in `data`.
///
/// A PATCH answer holds only `id`, `enabled`, `last_updated_at` and the changed fields, so a
/// `Case` may be partial.
#[derive(Clone, PartialEq)]
pub struct Case {
    /// Primero's record UUID (`id`), used in URLs and as referral `record_id`.
    pub id: String,
    /// The case's `case_id` (a UUID unless the creator supplied one).
    pub case_id: Option<String>,
    pub last_updated_at: Option<DateTime<Utc>>,
    pub last_updated_by: Option<String>,
    pub owned_by: Option<String>,
    /// The record as Primero sent it (all fields, `id` included).
    pub data: Map<String, Value>,
}

impl Case {
    /// Builds a case from one record object; fails when `id` is missing.
    pub fn from_data(data: Map<String, Value>) -> Result<Case, PrimeroError> {
        let id = owned(data.get("id"))
            .ok_or_else(|| PrimeroError::malformed(200, "case record without an id"))?;
        Ok(Case {
            id,
            case_id: owned(data.get("case_id")),
            last_updated_at: parse_time(data.get("last_updated_at")),
            last_updated_by: owned(data.get("last_updated_by")),
            owned_by: owned(data.get("owned_by")),
            data,
        })
    }

    /// Builds a case from a JSON value that must be an object with an `id`.
    pub fn from_json(value: Value) -> Result<Case, PrimeroError> {
        match value {
            Value::Object(map) => Case::from_data(map),
            _ => Err(PrimeroError::malformed(200, "case record is not an object")),
        }
    }

    /// The rows of `services_section` (non-object rows skipped), in Primero's order.
    pub fn services(&self) -> Vec<ServiceRow> {
        self.service_rows().map(|r| r.to_owned_row()).collect()
    }

    /// The rows of `services_section` (non-object rows skipped), in Primero's order, borrowed.
    pub fn service_rows(&self) -> impl Iterator<Item = ServiceRowRef<'_>> {
        let rows = match self.data.get("services_section") {
            Some(Value::Array(rows)) => rows.as_slice(),
            _ => &[],
        };
        rows.iter().filter_map(|r| match r {
            Value::Object(fields) => Some(ServiceRowRef { fields }),
            _ => None,
        })
    }

    /// The service row with this `unique_id`.
    pub fn service(&self, unique_id: &str) -> Option<ServiceRow> {
        self.services()
            .into_iter()
            .find(|r| r.unique_id.as_deref() == Some(unique_id))
    }

    /// A string field; blank strings count as absent.
    pub fn str_field(&self, key: &str) -> Option<&str> {
        non_blank(self.data.get(key))
    }

    /// A list of strings (multi-selects such as `language`, `protection_concerns`); a single
    /// string gives one item; blank items are skipped.
    pub fn str_list(&self, key: &str) -> Vec<String> {
        string_list(self.data.get(key))
    }

    /// A boolean field (`true`/`false`, also the strings Primero sometimes stores).
    pub fn bool_field(&self, key: &str) -> Option<bool> {
        match self.data.get(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s == "true" => Some(true),
            Value::String(s) if s == "false" => Some(false),
            _ => None,
        }
    }
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("id", &self.id)
            .field("case_id", &self.case_id)
            .field("last_updated_at", &self.last_updated_at)
            .field("fields", &Keys(&self.data))
            .finish()
    }
}

/// The named string fields of a service row, for [`ServiceRow`] and [`ServiceRowRef`] alike
/// (each has a `str_field`).
macro_rules! service_row_accessors {
    () => {
        pub fn service_type(&self) -> Option<&str> {
            self.str_field("service_type")
        }
        pub fn service_type_other(&self) -> Option<&str> {
            self.str_field("service_type_other")
        }
        pub fn service_implementing_agency(&self) -> Option<&str> {
            self.str_field("service_implementing_agency")
        }
        pub fn service_request_agency(&self) -> Option<&str> {
            self.str_field("service_request_agency")
        }
        pub fn service_referral(&self) -> Option<&str> {
            self.str_field("service_referral")
        }
        pub fn unhcr_referral_status(&self) -> Option<&str> {
            self.str_field("unhcr_referral_status")
        }
        pub fn unhcr_referral_rejection_reason(&self) -> Option<&str> {
            self.str_field("unhcr_referral_rejection_reason")
        }
        pub fn progres_interventionnumber(&self) -> Option<&str> {
            self.str_field("progres_interventionnumber")
        }
        pub fn service_referral_notes(&self) -> Option<&str> {
            self.str_field("service_referral_notes")
        }
    };
}

/// One row of a case's `services_section` subform.
#[derive(Clone, PartialEq)]
pub struct ServiceRow {
    /// The row's `unique_id` (a referral's `service_record_id` points at it).
    pub unique_id: Option<String>,
    /// All fields of the row, `unique_id` included.
    pub fields: Map<String, Value>,
}

impl ServiceRow {
    pub fn from_fields(fields: Map<String, Value>) -> ServiceRow {
        ServiceRow {
            unique_id: owned(fields.get("unique_id")),
            fields,
        }
    }

    /// A string field of the row; blank strings count as absent.
    pub fn str_field(&self, key: &str) -> Option<&str> {
        non_blank(self.fields.get(key))
    }

    /// A boolean field of the row.
    pub fn bool_field(&self, key: &str) -> Option<bool> {
        self.fields.get(key)?.as_bool()
    }

    service_row_accessors!();
}

impl fmt::Debug for ServiceRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceRow")
            .field("unique_id", &self.unique_id)
            .field("fields", &Keys(&self.fields))
            .finish()
    }
}

/// A row of a case's `services_section` as borrowed from the case: what [`ServiceRow`] offers,
/// without copying the row (a listing of thousands of cases is picked over row by row, and
/// most rows are passed over).
#[derive(Clone, Copy)]
pub struct ServiceRowRef<'a> {
    fields: &'a Map<String, Value>,
}

impl<'a> ServiceRowRef<'a> {
    /// The row's `unique_id`, if a non-blank string.
    pub fn unique_id(&self) -> Option<&'a str> {
        non_blank(self.fields.get("unique_id"))
    }

    /// A string field of the row; blank strings count as absent.
    pub fn str_field(&self, key: &str) -> Option<&'a str> {
        non_blank(self.fields.get(key))
    }

    /// The row, copied.
    pub fn to_owned_row(&self) -> ServiceRow {
        ServiceRow::from_fields(self.fields.clone())
    }

    service_row_accessors!();
}

impl fmt::Debug for ServiceRowRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceRowRef")
            .field("unique_id", &self.unique_id())
            .field("fields", &Keys(self.fields))
            .finish()
    }
}

/// The statuses a client may ask a referral to move to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReferralStatus {
    Accepted,
    Rejected,
    Done,
    InProgress,
}

impl ReferralStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReferralStatus::Accepted => "accepted",
            ReferralStatus::Rejected => "rejected",
            ReferralStatus::Done => "done",
            ReferralStatus::InProgress => "in_progress",
        }
    }

    /// Parses Primero's status string (`revoked` and unknown values give `None`).
    pub fn parse(s: &str) -> Option<ReferralStatus> {
        match s {
            "accepted" => Some(ReferralStatus::Accepted),
            "rejected" => Some(ReferralStatus::Rejected),
            "done" => Some(ReferralStatus::Done),
            "in_progress" => Some(ReferralStatus::InProgress),
            _ => None,
        }
    }
}

impl fmt::Display for ReferralStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Primero referral (a transition of type `Referral`): the fields the flows read, not the
/// whole object (a page of cases holds a list of these per case, R10).
#[derive(Clone, PartialEq)]
pub struct Referral {
    pub id: String,
    /// `in_progress`, `accepted`, `rejected`, `done`, `revoked`, ...
    pub status: String,
    /// The case's `id` (not its `case_id`).
    pub record_id: Option<String>,
    /// The `unique_id` of the service row it refers; an empty string counts as absent.
    pub service_record_id: Option<String>,
    pub transitioned_to: Option<String>,
    pub transitioned_by: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    /// Free text: personal, redacted in `Debug`.
    pub rejected_reason: Option<String>,
}

impl Referral {
    /// Builds a referral from one transition object; `id` and `status` are required.
    pub fn from_data(raw: Map<String, Value>) -> Result<Referral, PrimeroError> {
        let id = owned(raw.get("id"))
            .ok_or_else(|| PrimeroError::malformed(200, "referral without an id"))?;
        let status = owned(raw.get("status"))
            .ok_or_else(|| PrimeroError::malformed(200, "referral without a status"))?;
        Ok(Referral {
            id,
            status,
            record_id: owned(raw.get("record_id")),
            service_record_id: owned(raw.get("service_record_id")),
            transitioned_to: owned(raw.get("transitioned_to")),
            transitioned_by: owned(raw.get("transitioned_by")),
            created_at: parse_time(raw.get("created_at")),
            rejected_reason: owned(raw.get("rejected_reason")),
        })
    }

    pub fn from_json(value: Value) -> Result<Referral, PrimeroError> {
        match value {
            Value::Object(map) => Referral::from_data(map),
            _ => Err(PrimeroError::malformed(200, "referral is not an object")),
        }
    }

    /// The status as an enum (`None` for `revoked` or an unknown value).
    pub fn status_enum(&self) -> Option<ReferralStatus> {
        ReferralStatus::parse(&self.status)
    }
}

impl fmt::Debug for Referral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Referral")
            .field("id", &self.id)
            .field("status", &self.status)
            .field("record_id", &self.record_id)
            .field("service_record_id", &self.service_record_id)
            .field("transitioned_to", &self.transitioned_to)
            .field("transitioned_by", &self.transitioned_by)
            .field("created_at", &self.created_at)
            .field("rejected_reason", &redacted(&self.rejected_reason))
            .finish()
    }
}

/// What a status change did. Primero answers 200 with the referral unchanged when a move is
/// not allowed, so `applied` compares the returned status with the requested one.
#[derive(Clone, Debug, PartialEq)]
pub struct TransitionOutcome {
    /// The referral is in the requested status after the call.
    pub applied: bool,
    /// It already was before the call (no PATCH was sent).
    pub already_in_state: bool,
    /// The status Primero reported.
    pub returned_status: String,
    pub referral: Referral,
}

/// A Primero user account.
#[derive(Clone, PartialEq)]
pub struct User {
    pub id: i64,
    pub user_name: String,
    /// Personal, redacted in `Debug`.
    pub full_name: Option<String>,
    /// Personal, redacted in `Debug`; blank counts as absent.
    pub email: Option<String>,
    /// Personal, redacted in `Debug`; blank counts as absent.
    pub phone: Option<String>,
    pub position: Option<String>,
    pub disabled: bool,
}

impl User {
    pub fn from_data(raw: &Map<String, Value>) -> Result<User, PrimeroError> {
        let id = match raw.get("id") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| PrimeroError::malformed(200, "user without an integer id"))?;
        let user_name = owned(raw.get("user_name"))
            .ok_or_else(|| PrimeroError::malformed(200, "user without a user_name"))?;
        Ok(User {
            id,
            user_name,
            full_name: owned(raw.get("full_name")),
            email: owned(raw.get("email")),
            phone: owned(raw.get("phone")),
            position: owned(raw.get("position")),
            disabled: raw
                .get("disabled")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("user_name", &self.user_name)
            .field("full_name", &redacted(&self.full_name))
            .field("email", &redacted(&self.email))
            .field("phone", &redacted(&self.phone))
            .field("position", &self.position)
            .field("disabled", &self.disabled)
            .finish()
    }
}

/// All users of one listing, indexed by `user_name` (compared case-insensitively, as Primero
/// logins are).
#[derive(Clone, Default)]
pub struct Users {
    users: Vec<User>,
    index: HashMap<String, usize>,
}

impl Users {
    /// Indexes users; a later duplicate of a `user_name` replaces the earlier one.
    pub fn from_users(list: impl IntoIterator<Item = User>) -> Users {
        let mut users: Vec<User> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for u in list {
            let key = u.user_name.trim().to_lowercase();
            match index.get(&key) {
                Some(&i) => users[i] = u,
                None => {
                    index.insert(key, users.len());
                    users.push(u);
                }
            }
        }
        Users { users, index }
    }

    pub fn by_user_name(&self, user_name: &str) -> Option<&User> {
        self.index
            .get(&user_name.trim().to_lowercase())
            .map(|&i| &self.users[i])
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.users.iter()
    }
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Users")
            .field("count", &self.users.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/primero"
    );

    fn fixture(name: &str) -> Value {
        let path = format!("{FIXTURES}/{name}");
        let text = std::fs::read_to_string(&path).expect("fixture readable");
        serde_json::from_str(&text).expect("fixture is JSON")
    }

    #[test]
    fn cases_list_fixture_parses_with_services() {
        let v = fixture("cases-list.json");
        let cases: Vec<Case> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .cloned()
            .map(|c| Case::from_json(c).unwrap())
            .collect();
        assert_eq!(cases.len(), 1);
        let c = &cases[0];
        assert_eq!(c.id, "406b539a-e662-425e-810b-47e4fa7da496");
        assert_eq!(
            c.case_id.as_deref(),
            Some("f59e880e-d58f-4b68-ba6e-e0616a49aefd")
        );
        assert_eq!(
            c.last_updated_at.unwrap().to_rfc3339(),
            "2021-09-27T12:54:49.951+00:00"
        );
        assert_eq!(c.owned_by.as_deref(), Some("openfn_testing"));
        assert_eq!(c.str_field("unhcr_individual_no"), Some("911-9739H297"));
        assert_eq!(
            c.str_list("protection_concerns"),
            vec!["sexual_exploitation", "arrested_detained", "caafag"]
        );
        // An empty string counts as absent.
        assert_eq!(
            c.str_field("protection_concerns_described_at_point_of_identification_7a41814"),
            None
        );
        let rows = c.services();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0].unique_id.as_deref(),
            Some("5efbc52f-0606-4436-8f3d-c748867d913b")
        );
        assert_eq!(rows[0].service_referral(), Some("internal_referral"));
        assert_eq!(rows[0].service_implementing_agency(), Some("DRC"));
        assert_eq!(
            rows[1].progres_interventionnumber(),
            Some("612-21-PRTITV-0000039")
        );
        assert_eq!(rows[1].service_implementing_agency(), None);
        let food = c.service("5c2d4f6c-7a78-43b5-ac40-eb097be51d89").unwrap();
        assert_eq!(food.service_type(), Some("food"));
        assert_eq!(food.service_implementing_agency(), Some("UNHCR"));
        assert_eq!(food.bool_field("service_status_referred"), Some(true));
    }

    #[test]
    fn borrowed_service_rows_read_as_the_copied_ones() {
        let c = Case::from_json(serde_json::json!({
            "id": "406b539a-e662-425e-810b-47e4fa7da496",
            "services_section": [
                {"unique_id": "a", "service_referral": "external_referral", "service_type": " "},
                "not an object",
                {"unique_id": "  ", "service_request_agency": "UNHCR"},
                {"service_type": "food"}
            ]
        }))
        .unwrap();
        let copied = c.services();
        let borrowed: Vec<ServiceRowRef<'_>> = c.service_rows().collect();
        assert_eq!(
            borrowed.len(),
            3,
            "the row that is not an object is skipped"
        );
        assert_eq!(borrowed.len(), copied.len());
        for (b, o) in borrowed.iter().zip(&copied) {
            assert_eq!(b.unique_id(), o.unique_id.as_deref());
            assert_eq!(b.service_referral(), o.service_referral());
            assert_eq!(b.service_request_agency(), o.service_request_agency());
            assert_eq!(b.service_type(), o.service_type());
            assert!(b.to_owned_row() == *o);
        }
        assert_eq!(borrowed[1].unique_id(), None, "a blank unique_id is absent");
        assert_eq!(borrowed[0].service_type(), None, "a blank field is absent");
        assert_eq!(borrowed[2].service_type(), Some("food"));
    }

    #[test]
    fn case_with_services_fixture_keeps_lowercase_agency() {
        let c = Case::from_json(fixture("case-with-services.json")).unwrap();
        assert_eq!(c.id, "757f3dd3-c4ca-4e18-be60-19054d848dfe");
        let rows = c.services();
        assert_eq!(rows.len(), 2);
        // The agency value arrives lower-case; the client does not normalise it.
        assert_eq!(rows[1].service_implementing_agency(), Some("unhcr"));
        assert_eq!(rows[0].service_type_other(), Some("help"));
        assert_eq!(rows[0].service_referral_notes(), Some("she needs help"));
        // Null fields are kept in data but read as absent.
        assert!(c.data.contains_key("un_no"));
        assert_eq!(c.str_field("un_no"), None);
    }

    #[test]
    fn referrals_fixture_parses_with_empty_service_record_id() {
        let v = fixture("case-referrals-list.json");
        let refs: Vec<Referral> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .cloned()
            .map(|r| Referral::from_json(r).unwrap())
            .collect();
        assert_eq!(refs.len(), 2);
        assert_eq!(refs[0].status_enum(), Some(ReferralStatus::InProgress));
        assert_eq!(
            refs[0].service_record_id.as_deref(),
            Some("5c2d4f6c-7a78-43b5-ac40-eb097be51d89")
        );
        assert_eq!(
            refs[0].record_id.as_deref(),
            Some("406b539a-e662-425e-810b-47e4fa7da496")
        );
        assert_eq!(
            refs[0].created_at.unwrap().to_rfc3339(),
            "2021-09-27T12:27:09.524+00:00"
        );
        assert_eq!(refs[1].transitioned_to.as_deref(), Some("unhcr_cw"));
        assert_eq!(refs[1].service_record_id, None);
    }

    #[test]
    fn debug_output_hides_personal_values() {
        let c = Case::from_json(fixture("case-with-services.json")).unwrap();
        let text = format!("{c:?} {:?}", c.services());
        for secret in [
            "Taylor",
            "Swift",
            "123-456-7890",
            "she needs help",
            "2009-05-26",
        ] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
        assert!(text.contains("757f3dd3-c4ca-4e18-be60-19054d848dfe"));
        assert!(text.contains("name_first"));

        let mut r =
            Referral::from_json(fixture("case-referrals-list.json")["data"][0].clone()).unwrap();
        r.rejected_reason = Some("family moved to Gambella".into());
        let text = format!("{r:?}");
        assert!(!text.contains("service notes") && !text.contains("Gambella"));
        assert!(text.contains("1e5be7bd-7357-4790-a880-ccaca3f47b5a"));

        let u = User::from_data(
            serde_json::json!({"id": 7, "user_name": "cw_amina", "full_name": "Amina Yusuf",
                "email": "amina@example.org", "phone": "+251911000000", "position": "Case worker"})
            .as_object()
            .unwrap(),
        )
        .unwrap();
        let text = format!("{u:?}");
        for secret in ["Amina Yusuf", "amina@example.org", "+251911000000"] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
        assert!(text.contains("cw_amina"));
    }

    #[test]
    fn users_are_indexed_case_insensitively() {
        let mk = |id: i64, name: &str, email: &str| {
            User::from_data(
                serde_json::json!({"id": id, "user_name": name, "email": email})
                    .as_object()
                    .unwrap(),
            )
            .unwrap()
        };
        let users = Users::from_users([mk(1, "cw_amina", ""), mk(2, "CW_John", "j@x.org")]);
        assert_eq!(users.len(), 2);
        assert_eq!(users.by_user_name("cw_john").unwrap().id, 2);
        assert_eq!(users.by_user_name("cw_amina").unwrap().email, None);
        assert!(users.by_user_name("nobody").is_none());
    }

    #[test]
    fn records_without_ids_are_malformed() {
        let e = Case::from_json(serde_json::json!({"case_id": "x"})).unwrap_err();
        assert_eq!(e.class(), pp_http::ErrorClass::Transient);
        assert!(Referral::from_json(serde_json::json!({"id": "r"})).is_err());
        assert!(
            User::from_data(serde_json::json!({"user_name": "u"}).as_object().unwrap()).is_err()
        );
    }
}
