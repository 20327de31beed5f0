//! Data-driven tests of the pure mapping of flows 2.1 and 2.2: one case per row of the
//! flows.md mapping table, per sex code, per status code and per rejection reason, plus the
//! redaction of the types that carry personal data.

use pp_mapping::flow11::{MISSING_REQUIRED_FIELDS, UNMAPPED_SEX, VALIDATION_ERROR};
use pp_mapping::flow21::{
    self, CaseworkerPolicy, Contact, Settings, INCOMPLETE_CASEWORKER, SUBSTITUTION_TEXT,
    UNMAPPED_SERVICE_TYPE,
};
use pp_mapping::flow22::{self, ListEntry};
use pp_mapping::{InteropStatusCodes, Maps};
use pp_ping::{DecisionDetail, FromRow, Row};
use pp_primero::{Case, Referral, ReferralStatus, User};
use serde_json::{json, Value};

const CASE_ID: &str = "0b8c4a52-1f0e-4f4e-9a51-4d1f6f6b7a01";
const CASE_CASE_ID: &str = "f59e880e-d58f-4b68-ba6e-e0616a49aefd";
const ROW_ID: &str = "5c2d4f6c-7a78-43b5-ac40-eb097be51d89";

fn settings(policy: CaseworkerPolicy) -> Settings {
    Settings {
        business_unit: "577ccdf6-86de-e811-80d8-001dd8b71fe3".into(),
        organization_from: "c00582a6-d8f6-f011-8406-6045bd8ea5fb".into(),
        referred_by: "Primero CP".into(),
        on_incomplete_caseworker: policy,
    }
}

fn focal_point() -> Contact {
    Contact {
        position: "Child Protection Officer".into(),
        email: "cp.focal@example.org".into(),
        phone: "+251000000000".into(),
    }
}

fn base_case() -> Value {
    json!({
        "id": CASE_ID,
        "case_id": CASE_CASE_ID,
        "owned_by": "cw_amina",
        "name_first": "Nyakuoth",
        "name_middle": "Nyachan",
        "name_last": "Gatluak",
        "date_of_birth": "2014-03-02",
        "sex": "female",
        "telephone_current": "+251911000001",
        "address_current": "Nguenyyiel camp, zone 3",
        "unhcr_id_no": "945-C00123",
        "unhcr_individual_no": "945-00012345",
        "protection_concerns": ["caafag", "orphan", "rape"],
        "services_section": [{
            "unique_id": ROW_ID,
            "service_type": "medical",
            "service_type_other": "eye care",
            "service_implementing_agency": "UNHCR",
            "service_referral_notes": "needs follow-up"
        }]
    })
}

fn referral(created_at: Option<&str>) -> Referral {
    let mut r = json!({"id": "1e5be7bd-7357-4790-a880-ccaca3f47b5a", "status": "in_progress",
                       "record_id": CASE_ID, "service_record_id": ROW_ID});
    if let Some(t) = created_at {
        r["created_at"] = json!(t);
    }
    Referral::from_json(r).unwrap()
}

fn user(v: Value) -> User {
    User::from_data(v.as_object().unwrap()).unwrap()
}

fn amina() -> User {
    user(
        json!({"id": 3, "user_name": "cw_amina", "email": "amina@example.org",
                "phone": "+251911222333", "position": "Case worker"}),
    )
}

struct Mapping {
    case: Value,
    referral_created: Option<&'static str>,
    owner: Option<User>,
    policy: CaseworkerPolicy,
    maps: Maps,
}

impl Mapping {
    fn new() -> Self {
        Mapping {
            case: base_case(),
            referral_created: Some("2026-11-20T23:59:59.000Z"),
            owner: Some(amina()),
            policy: CaseworkerPolicy::Reject,
            maps: Maps::gambella(),
        }
    }

    fn set(mut self, key: &str, value: Value) -> Self {
        if value.is_null() {
            self.case.as_object_mut().unwrap().remove(key);
        } else {
            self.case[key] = value;
        }
        self
    }

    fn row(mut self, key: &str, value: Value) -> Self {
        let row = &mut self.case["services_section"][0];
        if value.is_null() {
            row.as_object_mut().unwrap().remove(key);
        } else {
            row[key] = value;
        }
        self
    }

    fn map(&self) -> Result<flow21::MappedReferral, pp_mapping::flow11::Rejection> {
        let case = Case::from_json(self.case.clone()).unwrap();
        let row = case.services().remove(0);
        flow21::map_referral(
            &self.maps,
            &settings(self.policy.clone()),
            &case,
            &row,
            &referral(self.referral_created),
            self.owner.as_ref(),
        )
    }
}

#[test]
fn every_row_of_the_mapping_table() {
    let m = Mapping::new().map().unwrap();
    let table: &[(&str, Option<&str>)] = &[
        ("progres_externalguid", Some(CASE_ID)),
        ("progres_externalid", Some(CASE_CASE_ID)),
        ("progres_offlineid", Some(CASE_CASE_ID)),
        (
            "progres_businessunit",
            Some("577ccdf6-86de-e811-80d8-001dd8b71fe3"),
        ),
        (
            "progres_organizationfrom",
            Some("c00582a6-d8f6-f011-8406-6045bd8ea5fb"),
        ),
        ("progres_orgreferredby", Some("Primero CP")),
        ("progres_orgposition", Some("Case worker")),
        ("progres_orgemail", Some("amina@example.org")),
        ("progres_orgphonenumber", Some("+251911222333")),
        ("progres_orgreferralid", Some(ROW_ID)),
        ("progres_referraldate", Some("2026-11-20")),
        (
            "progres_requestedservice",
            Some("f98e1516-0406-e611-80d9-00155d34051a"),
        ),
        ("progres_otherrequestedservices", Some("eye care")),
        // caafag is not in the map; orphan is the first concern that is.
        (
            "progres_spneedcategory",
            Some("abc5b4fb-8f76-e611-80c9-00155d340529"),
        ),
        ("progres_reasonforreferral", Some("needs follow-up")),
        ("progres_pocfirstname", Some("Nyakuoth")),
        ("progres_pocmiddlename", Some("Nyachan")),
        ("progres_poclastname", Some("Gatluak")),
        ("progres_pocdateofbirth", Some("2014-03-02")),
        ("progres_pocsex", Some("125080000")),
        ("progres_pocphonenumber", Some("+251911000001")),
        ("progres_pocaddress", Some("Nguenyyiel camp, zone 3")),
        ("progres_pocotheridnumber", Some("945-C00123")),
        ("progres_unhcrid", Some("945-00012345")),
    ];
    assert_eq!(m.fields.len(), table.len(), "one field per table row");
    for (field, expected) in table {
        assert_eq!(m.field(field), *expected, "{field}");
    }
    assert!(!m.fallback_used && !m.contact_substituted);
    let record = m.ingest_record();
    assert_eq!(record.external_id, CASE_CASE_ID);
    assert_eq!(record.external_guid.as_deref(), Some(CASE_ID));
    assert!(record.attachments.is_empty());
}

#[test]
fn optional_values_and_fallbacks_of_the_table() {
    // (description, mapping, field, expected)
    let cases: Vec<(&str, Mapping, &str, Option<&str>)> = vec![
        (
            "no service_type_other",
            Mapping::new().row("service_type_other", Value::Null),
            "progres_otherrequestedservices",
            None,
        ),
        (
            "no concern in the map",
            Mapping::new().set("protection_concerns", json!(["caafag"])),
            "progres_spneedcategory",
            None,
        ),
        (
            "concerns in the case's order",
            Mapping::new().set("protection_concerns", json!(["rape", "orphan"])),
            "progres_spneedcategory",
            Some("b1c5b4fb-8f76-e611-80c9-00155d340529"),
        ),
        (
            "no notes",
            Mapping::new().row("service_referral_notes", Value::Null),
            "progres_reasonforreferral",
            Some("Primero referral"),
        ),
        (
            "unhcr_id_no when there is no individual number",
            Mapping::new().set("unhcr_individual_no", Value::Null),
            "progres_unhcrid",
            Some("945-C00123"),
        ),
        (
            "no UNHCR number at all",
            Mapping::new()
                .set("unhcr_individual_no", Value::Null)
                .set("unhcr_id_no", Value::Null),
            "progres_unhcrid",
            None,
        ),
        (
            "phone stored as a number is sent as text",
            Mapping::new().set("telephone_current", json!(251911000001_i64)),
            "progres_pocphonenumber",
            Some("251911000001"),
        ),
        (
            "date of birth given as a timestamp",
            Mapping::new().set("date_of_birth", json!("2014-03-02T00:00:00.000Z")),
            "progres_pocdateofbirth",
            Some("2014-03-02"),
        ),
        (
            "no sex: null, never a default",
            Mapping::new().set("sex", Value::Null),
            "progres_pocsex",
            None,
        ),
        (
            "no middle name",
            Mapping::new().set("name_middle", Value::Null),
            "progres_pocmiddlename",
            None,
        ),
    ];
    for (what, mapping, field, expected) in cases {
        let m = mapping.map().unwrap_or_else(|r| panic!("{what}: {r}"));
        assert_eq!(m.field(field), expected, "{what}");
    }
}

#[test]
fn sex_is_sent_as_progres_codes_never_text() {
    for (sex, code) in [
        ("female", "125080000"),
        ("male", "125080001"),
        ("other_b25f252", "125080002"),
        ("unknown_4b34795", "125080003"),
    ] {
        let m = Mapping::new().set("sex", json!(sex)).map().unwrap();
        assert_eq!(m.field("progres_pocsex"), Some(code), "{sex}");
    }
}

/// (description, mapping, reason, words the message must name, values it must not show)
type RejectionCase = (
    &'static str,
    Mapping,
    &'static str,
    Vec<&'static str>,
    Vec<&'static str>,
);

#[test]
fn each_rejection_reason() {
    // (description, mapping, reason, words the message must name, values it must not show)
    let incomplete = user(json!({"id": 5, "user_name": "cw_incomplete", "phone": "+251911999888"}));
    let cases: Vec<RejectionCase> = vec![
        (
            "service type missing from the map (no legal-support fallback)",
            Mapping::new().row("service_type", json!("alternative_care")),
            UNMAPPED_SERVICE_TYPE,
            vec!["service_type", "alternative_care"],
            vec!["7ad37dd0"],
        ),
        (
            "sex value missing from the reversed map",
            Mapping::new().set("sex", json!("intersex_x")),
            UNMAPPED_SEX,
            vec!["sex", "intersex_x"],
            vec![],
        ),
        (
            "sex as free text is described, not shown",
            Mapping::new().set("sex", json!("Unknown")),
            UNMAPPED_SEX,
            vec!["sex"],
            vec!["Unknown"],
        ),
        (
            "caseworker without email and position",
            Mapping {
                owner: Some(incomplete.clone()),
                ..Mapping::new()
            }
            .set("owned_by", json!("cw_incomplete")),
            INCOMPLETE_CASEWORKER,
            vec!["cw_incomplete", "email", "position"],
            vec!["+251911999888", "phone"],
        ),
        (
            "owner not among the users",
            Mapping {
                owner: None,
                ..Mapping::new()
            },
            INCOMPLETE_CASEWORKER,
            vec!["cw_amina", "not a Primero user"],
            vec![],
        ),
        (
            "case without owner",
            Mapping {
                owner: None,
                ..Mapping::new()
            }
            .set("owned_by", Value::Null),
            INCOMPLETE_CASEWORKER,
            vec!["owned_by"],
            vec![],
        ),
        (
            "case without case_id",
            Mapping::new().set("case_id", Value::Null),
            MISSING_REQUIRED_FIELDS,
            vec!["case_id"],
            vec![],
        ),
        (
            "row without service_type",
            Mapping::new().row("service_type", Value::Null),
            MISSING_REQUIRED_FIELDS,
            vec!["service_type"],
            vec![],
        ),
        (
            "referral without created_at",
            Mapping {
                referral_created: None,
                ..Mapping::new()
            },
            MISSING_REQUIRED_FIELDS,
            vec!["referral.created_at"],
            vec![],
        ),
        (
            "date of birth that is not a date",
            Mapping::new().set("date_of_birth", json!("2nd of March")),
            VALIDATION_ERROR,
            vec!["date_of_birth"],
            vec!["March"],
        ),
    ];
    for (what, mapping, reason, named, hidden) in cases {
        let r = mapping.map().expect_err(what);
        assert_eq!(r.reason, reason, "{what}: {r}");
        for word in named {
            assert!(
                r.message.contains(word),
                "{what}: {} lacks {word}",
                r.message
            );
        }
        for value in hidden {
            assert!(
                !r.message.contains(value),
                "{what}: {} shows {value}",
                r.message
            );
        }
        for personal in ["Nyakuoth", "Gatluak", "2014-03-02", "+251911000001"] {
            assert!(!r.message.contains(personal), "{what}: {}", r.message);
        }
    }
}

#[test]
fn a_configured_service_fallback_is_flagged() {
    let mut mapping = Mapping::new().row("service_type", json!("alternative_care"));
    mapping.maps.fallbacks.service_to_progres = Some("e3a13f7d-0406-e611-80d9-00155d34051a".into());
    let m = mapping.map().unwrap();
    assert!(m.fallback_used);
    assert_eq!(
        m.field("progres_requestedservice"),
        Some("e3a13f7d-0406-e611-80d9-00155d34051a")
    );
}

#[test]
fn focal_point_policy_substitutes_and_says_so() {
    let incomplete = user(json!({"id": 5, "user_name": "cw_incomplete"}));
    for owner in [Some(incomplete), None] {
        let m = Mapping {
            owner,
            policy: CaseworkerPolicy::FocalPoint(focal_point()),
            ..Mapping::new()
        }
        .set("owned_by", json!("cw_incomplete"))
        .map()
        .unwrap();
        assert!(m.contact_substituted);
        assert_eq!(m.field("progres_orgemail"), Some("cp.focal@example.org"));
        assert_eq!(m.field("progres_orgphonenumber"), Some("+251000000000"));
        assert_eq!(
            m.field("progres_orgposition"),
            Some("Child Protection Officer")
        );
        let reason = m.field("progres_reasonforreferral").unwrap();
        assert!(reason.starts_with("needs follow-up") && reason.contains(SUBSTITUTION_TEXT));
    }
    // A complete profile is used as it is, even under the focal-point policy.
    let m = Mapping {
        policy: CaseworkerPolicy::FocalPoint(focal_point()),
        ..Mapping::new()
    }
    .map()
    .unwrap();
    assert!(!m.contact_substituted);
    assert_eq!(m.field("progres_orgemail"), Some("amina@example.org"));
}

#[test]
fn rows_and_referrals_are_selected_per_the_spec() {
    let is_unhcr = |a: &str| a.eq_ignore_ascii_case("unhcr");
    let case = Case::from_json(json!({"id": CASE_ID, "services_section": [
        {"unique_id": "a", "service_implementing_agency": "unhcr"},
        {"unique_id": "b", "service_implementing_agency": "UNICEF"},
        {"service_implementing_agency": "UNHCR"},
        {"unique_id": "d"}]}))
    .unwrap();
    let got: Vec<Option<&str>> = case
        .services()
        .iter()
        .map(|r| flow21::row_exclusion(r, is_unhcr))
        .collect();
    assert_eq!(
        got,
        vec![
            None,
            Some(flow21::EXCLUDED_NOT_UNHCR),
            Some(flow21::EXCLUDED_NO_UNIQUE_ID),
            Some(flow21::EXCLUDED_NOT_UNHCR)
        ]
    );
    let r = |id: &str, status: &str, row: &str, at: &str| {
        Referral::from_json(json!({"id": id, "status": status, "service_record_id": row,
                                   "created_at": at}))
        .unwrap()
    };
    let refs = vec![
        r("r1", "revoked", "a", "2026-01-01T00:00:00Z"),
        r("r2", "in_progress", "a", "2026-03-01T00:00:00Z"),
        r("r3", "accepted", "a", "2026-02-01T00:00:00Z"),
        r("r4", "revoked", "b", "2026-01-01T00:00:00Z"),
    ];
    assert_eq!(flow21::referral_for_row(&refs, "a").unwrap().id, "r3");
    assert_eq!(
        flow21::referral_for_row(&refs, "b").unwrap_err(),
        flow21::EXCLUDED_REFERRAL_REVOKED
    );
    assert_eq!(
        flow21::referral_for_row(&refs, "z").unwrap_err(),
        flow21::EXCLUDED_NOT_REFERRED
    );
}

#[test]
fn debug_output_hides_personal_values() {
    let m = Mapping::new().map().unwrap();
    let text = format!("{m:?} {:?} {:?}", m.ingest_record(), focal_point());
    for secret in [
        "Nyakuoth",
        "Gatluak",
        "2014-03-02",
        "+251911",
        "amina@example.org",
        "cp.focal",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains(ROW_ID) && text.contains("progres_pocfirstname"));
}

// ---- flow 2.2 -----------------------------------------------------------------------------

#[test]
fn every_status_code_is_classified_exhaustively() {
    let codes = InteropStatusCodes::default();
    for (code, expected) in [
        (125_080_000, ListEntry::Waiting),
        (125_080_001, ListEntry::Decide(ReferralStatus::Accepted)),
        (125_080_002, ListEntry::Decide(ReferralStatus::Rejected)),
        (125_080_003, ListEntry::Done),
        (125_080_004, ListEntry::Unknown),
        (125_080_009, ListEntry::Unknown),
        (0, ListEntry::Unknown),
        (-1, ListEntry::Unknown),
    ] {
        assert_eq!(flow22::classify(&codes, code), expected, "{code}");
    }
    let r = flow22::unknown_status(125_080_009);
    assert_eq!(r.reason, flow22::UNKNOWN_STATUS);
    assert!(r.message.contains("125080009"));
    assert_eq!(flow22::record_key("g-1", 125_080_001), "g-1:125080001");
}

#[test]
fn rejected_reason_text_combines_reason_and_comment() {
    for (reason, comment, expected) in [
        (
            Some("Individual Not Found"),
            Some("No match"),
            "Individual Not Found — No match",
        ),
        (
            None,
            Some("No match"),
            "Rejected in proGres (no reason provided) — No match",
        ),
        (
            Some("Not applicable"),
            None,
            "Not applicable — No comment provided",
        ),
        (
            Some(" "),
            Some(""),
            "Rejected in proGres (no reason provided) — No comment provided",
        ),
    ] {
        assert_eq!(flow22::rejected_reason_text(reason, comment), expected);
    }
}

fn detail(v: Value) -> DecisionDetail {
    DecisionDetail::from_row(&Row::from_value(v).unwrap()).unwrap()
}

#[test]
fn details_map_to_primero_status_changes() {
    let codes = InteropStatusCodes::default();
    let base = json!({"progres_interoperabilityreferralid": "g-1",
                      "progres_offlineid": CASE_CASE_ID, "progres_orgreferralid": ROW_ID,
                      "progres_interoperabiltyreferralrejectionreasonname": "Individual Not Found",
                      "progres_interoperabilityreferralrejectionomment": "No match"});
    let with = |extra: Value| {
        let mut v = base.clone();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    // (row, expected status, expected reason text)
    let table: Vec<(Value, ReferralStatus, Option<&str>)> = vec![
        (
            with(json!({"progres_interoperabilityreferralstatus": 125080001})),
            ReferralStatus::Accepted,
            None,
        ),
        (
            with(json!({"progres_interoperabilityreferralstatus": 125080002})),
            ReferralStatus::Rejected,
            Some("Individual Not Found — No match"),
        ),
        // Fallback: the review decision, with its own codes.
        (
            with(json!({"progres_reviewdecision": 125080000})),
            ReferralStatus::Accepted,
            None,
        ),
        (
            with(json!({"progres_reviewdecision": 125080001})),
            ReferralStatus::Rejected,
            Some("Individual Not Found — No match"),
        ),
    ];
    for (row, status, reason) in table {
        let d = detail(row);
        let m = flow22::map_decision(&codes, &d).unwrap();
        assert_eq!(m.status, status);
        assert_eq!(m.case_id, CASE_CASE_ID);
        assert_eq!(m.unique_id, ROW_ID);
        assert_eq!(m.rejected_reason.as_deref(), reason);
        assert!(!format!("{m:?}").contains("No match"));
    }
    // Rejections: an unknown code (either field) and a decision that is none.
    for (row, reason) in [
        (
            with(json!({"progres_interoperabilityreferralstatus": 125080009})),
            flow22::UNKNOWN_STATUS,
        ),
        (
            with(json!({"progres_reviewdecision": 125080003})),
            flow22::UNKNOWN_STATUS,
        ),
        (
            with(json!({"progres_interoperabilityreferralstatus": 125080000})),
            flow22::UNKNOWN_STATUS,
        ),
    ] {
        let d = detail(row);
        assert_eq!(flow22::map_decision(&codes, &d).unwrap_err().reason, reason);
    }
}

#[test]
fn the_review_decision_is_read_only_with_its_own_codes() {
    let codes = InteropStatusCodes::default();
    let base = |extra: Value| {
        let mut v = json!({"progres_interoperabilityreferralid": "g-1",
                           "progres_offlineid": CASE_CASE_ID, "progres_orgreferralid": ROW_ID});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        detail(v)
    };
    // The status wins over the review decision when both are present.
    let d = base(json!({"progres_interoperabilityreferralstatus": 125080001,
                        "progres_reviewdecision": 125080001}));
    let m = flow22::map_decision(&codes, &d).unwrap();
    assert_eq!((m.status, m.code), (ReferralStatus::Accepted, 125080001));
    // 125080002 means "rejected" as a status code but is no review decision code.
    let d = base(json!({"progres_reviewdecision": 125080002}));
    let e = flow22::map_decision(&codes, &d).unwrap_err();
    assert_eq!(e.reason, flow22::UNKNOWN_STATUS);
    assert!(
        e.message.contains("progres_reviewdecision") && e.message.contains("125080002"),
        "{}",
        e.message
    );
    // A review decision is keyed with the status code it stands for.
    let d = base(json!({"progres_reviewdecision": 125080000}));
    let m = flow22::map_decision(&codes, &d).unwrap();
    assert_eq!((m.status, m.code), (ReferralStatus::Accepted, 125080001));
    let d = base(json!({"progres_reviewdecision": "125080001"}));
    let m = flow22::map_decision(&codes, &d).unwrap();
    assert_eq!((m.status, m.code), (ReferralStatus::Rejected, 125080002));
}

#[test]
fn detail_rows_of_one_referral_must_agree() {
    let row = |status: i64, case: &str| {
        DecisionDetail::from_row(
            &Row::from_value(json!({"progres_interoperabilityreferralid": "g-1",
                "progres_interoperabilityreferralstatus": status,
                "progres_offlineid": case, "progres_orgreferralid": ROW_ID}))
            .unwrap(),
        )
    };
    assert!(flow22::single_detail(&[]).is_none());
    let one = flow22::single_detail(&[row(125080001, "c-1")])
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(one.offline_id, "c-1");
    // Identical rows (a join duplicate) are one detail.
    let same = flow22::single_detail(&[row(125080001, "c-1"), row(125080001, "c-1")]);
    assert_eq!(same.unwrap().unwrap().unwrap().offline_id, "c-1");
    // Rows that disagree are never resolved by taking the first.
    let e = flow22::single_detail(&[row(125080001, "c-1"), row(125080002, "c-2")])
        .unwrap()
        .unwrap_err();
    assert_eq!(e.reason, flow22::INCONSISTENT_DETAIL_ROWS);
    assert!(
        e.message.contains("progres_interoperabilityreferralstatus")
            && e.message.contains("progres_offlineid")
            && !e.message.contains("c-1"),
        "{}",
        e.message
    );
    // A malformed row beside a good one disagrees too.
    let bad = DecisionDetail::from_row(
        &Row::from_value(json!({"progres_interoperabilityreferralid": "g-1",
            "progres_interoperabilityreferralstatus": 125080001}))
        .unwrap(),
    );
    let e = flow22::single_detail(&[row(125080001, "c-1"), bad])
        .unwrap()
        .unwrap_err();
    assert!(e.message.contains("progres_offlineid"), "{}", e.message);
}

#[test]
fn the_referral_of_the_service_row_is_found_or_named_missing() {
    let r = |id: &str, status: &str, row: &str| {
        Referral::from_json(json!({"id": id, "status": status, "service_record_id": row})).unwrap()
    };
    let refs = vec![
        r("r1", "revoked", "a"),
        r("r2", "in_progress", "a"),
        r("r3", "in_progress", "b"),
        r("r4", "in_progress", "b"),
        r("r5", "revoked", "c"),
    ];
    let want = ReferralStatus::Accepted;
    assert_eq!(flow22::find_referral(&refs, "a", want).unwrap().id, "r2");
    let dup = flow22::find_referral(&refs, "b", want).unwrap_err();
    assert_eq!(dup.reason, flow22::DUPLICATE_REFERRALS);
    assert!(dup.message.contains("r3") && dup.message.contains("r4"));
    for missing in ["c", "z"] {
        let e = flow22::find_referral(&refs, missing, want).unwrap_err();
        assert_eq!(e.reason, flow22::REFERRAL_NOT_FOUND);
        assert!(e.message.contains(missing));
    }
}

#[test]
fn the_synced_write_back_record() {
    let rec = flow22::synced_record(&InteropStatusCodes::default(), "g-1");
    assert_eq!(rec.external_id, "g-1");
    assert!(rec.attachments.is_empty());
    assert_eq!(
        rec.fields,
        vec![
            (
                "progres_interoperabilityreferralid".to_owned(),
                Some("g-1".to_owned())
            ),
            (
                "progres_interoperabilityreferralstatus".to_owned(),
                Some("125080003".to_owned())
            ),
            (
                "progres_comments".to_owned(),
                Some("Referral decision synced with PRIMERO".to_owned())
            ),
        ]
    );
}

#[test]
fn the_listed_case_fields_are_all_the_mapping_reads() {
    // A case as Primero answers `fields=CASE_FIELDS` (plus `id`, always returned), next to
    // the whole case with extra fields: the mapped referral must be identical, or the
    // listing would silently drop something the mapping needs.
    let mut whole = base_case();
    whole["name_nickname"] = json!("Nya");
    whole["nationality"] = json!(["south_sudan"]);
    whole["family_details_section"] = json!([{"relation": "mother"}]);
    let mut cut = serde_json::Map::new();
    cut.insert("id".into(), whole["id"].clone());
    for f in flow21::CASE_FIELDS {
        if let Some(v) = whole.get(*f) {
            cut.insert((*f).to_owned(), v.clone());
        }
    }
    let whole = Case::from_json(whole).unwrap();
    let cut = Case::from_json(Value::Object(cut)).unwrap();
    let referral = referral(Some("2026-03-01T10:00:00Z"));
    let owner = amina();
    let settings = settings(CaseworkerPolicy::Reject);
    let maps = Maps::gambella();
    let map = |case: &Case| {
        let row = case.services().into_iter().next().unwrap();
        flow21::map_referral(&maps, &settings, case, &row, &referral, Some(&owner))
            .map(|m| m.payload_json())
            .map_err(|r| r.reason)
    };
    let full = map(&whole);
    assert!(full.is_ok(), "{full:?}");
    assert_eq!(map(&cut), full);
}
