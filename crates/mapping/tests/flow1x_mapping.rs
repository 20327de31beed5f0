//! Data-driven tests of the pure mapping of flows 1.1 and 1.2: one case per row of the
//! mapping tables of flows.md and one per rejection reason, plus grouping of SHP-2358 join
//! rows, decision selection, intervention-number splitting and `Debug` redaction.

use chrono::NaiveDate;
use pp_mapping::flow11::{self, MappedReferral, ReferralGroup};
use pp_mapping::flow12::{self, Decision, InterventionRef};
use pp_mapping::Maps;
use pp_ping::{FromRow, InterventionDetailRow, Row};
use serde_json::{json, Value};

const LP: &str = "68b20e2a-4879-ee11-8179-000d3a43f6eb";
const BU: &str = "577ccdf6-86de-e811-80d8-001dd8b71fe3";

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()
}

/// A complete SHP-2358 row (personal values are recognisable markers for leak checks).
fn row_json() -> Value {
    json!({
        "progres_interventionnumber": "803-23-PRTITV-1000642",
        "progres_lpinterventionid": LP,
        "progres_businessunit": BU,
        "progres_interventionstartdate": "2026-11-02",
        "progres_interventiondescription": "<p>Needs&nbsp;<b>urgent</b> care &amp; shelter</p>",
        "progres_reasonforreferral": "<i>Risk</i> of harm",
        "progres_primerotransferstatusdate": "2026-11-03T08:15:00Z",
        "progres_primeroid": "case-from-progres",
        "progres_interventiontype2.interventiontype.progres_description": "BIA",
        "progres_individual.individuals.progres_id": "803-100016547",
        "progres_individual.individuals.progres_registrationgroupid": "1b1b1b1b-0000-0000-0000-000000000001",
        "progres_individual.progres_registrationgroupidname": "803-00012345",
        "progres_individual.individuals.progres_givenname": "Lindahmarker",
        "progres_individual.individuals.progres_middlename": "Middlemarker",
        "progres_individual.individuals.progres_familyname": "Achiengmarker",
        "progres_individual.individuals.progres_commonyusedname": "Nickmarker",
        "progres_individual.individuals.progres_dateofbirth": "2012-12-05",
        "progres_individual.individuals.progres_sex": 125080000,
        "progres_individual.individuals.progres_primaryphonenumber": "+251911000001",
        "progres_individual.individuals.progres_coalocationlevel1": "Gambella",
        "individuals.progres_coalocationlevel2": {"Name": "Nguenyyiel"},
        "systemuser.title": "Protection Officer",
        "systemuser.su.mobilephone": "+251911000002",
        "systemuser.su.internalemailaddress": "officer@example.org",
        "progres_language.progres_languagecodeidname": "Nuer",
        "progres_specificneed.progres_spncategory2name": "Child at risk",
        "progres_specificneed.specificneeds.progres_spncategory2": "a1c5b4fb-8f76-e611-80c9-00155d340529"
    })
}

fn parse(v: Value) -> InterventionDetailRow {
    let Value::Object(m) = v else {
        panic!("object")
    };
    InterventionDetailRow::from_row(&Row::new(m)).expect("row parses")
}

fn with(mutate: impl Fn(&mut serde_json::Map<String, Value>)) -> Value {
    let mut v = row_json();
    mutate(v.as_object_mut().unwrap());
    v
}

fn group_of(rows: Vec<Value>) -> ReferralGroup {
    let mut groups = flow11::group_rows(rows.into_iter().map(parse));
    assert_eq!(groups.len(), 1);
    groups.remove(0).1.expect("consistent group")
}

fn mapped() -> MappedReferral {
    let g = group_of(vec![row_json()]);
    flow11::map_referral(&g, &Maps::gambella(), "primeromodule-cp", today()).expect("maps")
}

#[test]
fn every_case_field_of_the_mapping_table() {
    let m = mapped();
    let cases: &[(&str, Value)] = &[
        ("unhcr_individual_no", json!("803-100016547")),
        ("unhcr_id_no", json!("803-00012345")),
        ("name_first", json!("Lindahmarker")),
        ("name_middle", json!("Middlemarker")),
        ("name_last", json!("Achiengmarker")),
        ("name_nickname", json!("Nickmarker")),
        ("date_of_birth", json!("2012-12-05")),
        // 2012-12-05 -> 2026-11-30: the 14th birthday is still ahead.
        ("age", json!(13)),
        ("sex", json!("female")),
        ("telephone_current", json!("+251911000001")),
        ("address_current", json!("Gambella Nguenyyiel")),
        ("language", json!(["language2"])),
        ("status", json!("open")),
        ("module_id", json!("primeromodule-cp")),
    ];
    for (field, want) in cases {
        assert_eq!(m.case.get(*field), Some(want), "case field {field}");
    }
    assert!(!m.case.contains_key("case_id"), "case_id is never sent");
    assert_eq!(m.case.len(), cases.len());
}

#[test]
fn every_service_row_field_of_the_mapping_table() {
    let m = mapped();
    let rows: &[(&str, Value)] = &[
        ("service_type", json!("focuses_non_specialized_mhpss_care")),
        ("service_appointment_date", json!("2026-11-02")),
        (
            "service_response_day_time",
            json!("2026-11-03T08:15:00.000Z"),
        ),
        ("service_request_external", json!(true)),
        ("service_request_title", json!("Protection Officer")),
        ("service_request_phone", json!("+251911000002")),
        ("service_request_email", json!("officer@example.org")),
        ("service_request_agency", json!("UNHCR")),
        (
            "service_referral_notes",
            json!("Needs urgent care & shelter, Risk of harm"),
        ),
        ("service_implementing_agency", json!("UNICEF")),
        ("service_response_type", json!("service_provision")),
        ("service_referral", json!("external_referral")),
        ("unhcr_referral_status", json!("pending")),
        (
            "progres_interventionnumber",
            json!(format!("803-23-PRTITV-1000642,{LP},{BU}")),
        ),
    ];
    for (field, want) in rows {
        assert_eq!(m.service.get(*field), Some(want), "service field {field}");
    }
    assert_eq!(m.service.len(), rows.len());
    assert_eq!(
        m.composite_number(),
        format!("803-23-PRTITV-1000642,{LP},{BU}")
    );
    let create = m.create_payload();
    assert_eq!(create["services_section"].as_array().unwrap().len(), 1);
    let append = m.append_payload();
    assert_eq!(append.keys().collect::<Vec<_>>(), vec!["services_section"]);
}

#[test]
fn each_intervention_type_of_the_map() {
    let maps = Maps::gambella();
    for (description, service) in [
        ("Alternative Care", "alternative_care"),
        ("BID", "focuses_non_specialized_mhpss_care"),
        ("BIA", "focuses_non_specialized_mhpss_care"),
        ("Family Tracing and Reunification", "food"),
        ("Advocacy / Direct intervention", "other_please_specify"),
    ] {
        let g = group_of(vec![with(|m| {
            m.insert(
                "progres_interventiontype2.interventiontype.progres_description".into(),
                json!(description),
            );
        })]);
        let r = flow11::map_referral(&g, &maps, "primeromodule-cp", today()).unwrap();
        assert_eq!(r.service["service_type"], json!(service), "{description}");
    }
}

#[test]
fn each_sex_code_of_the_map() {
    for (code, sex) in [
        (125080000, "female"),
        (125080001, "male"),
        (125080002, "other_b25f252"),
        (125080003, "unknown_4b34795"),
    ] {
        let g = group_of(vec![with(|m| {
            m.insert(
                "progres_individual.individuals.progres_sex".into(),
                json!(code),
            );
        })]);
        let r = flow11::map_referral(&g, &Maps::gambella(), "m", today()).unwrap();
        assert_eq!(r.case["sex"], json!(sex));
    }
}

#[test]
fn languages_are_mapped_and_deduplicated_needs_kept_unique() {
    let mut rows = Vec::new();
    for lang in ["Nuer", "Anyuak", "Swahili", "Nuer"] {
        for need in ["Child at risk", "Disability"] {
            rows.push(with(|m| {
                m.insert(
                    "progres_language.progres_languagecodeidname".into(),
                    json!(lang),
                );
                m.insert(
                    "progres_specificneed.progres_spncategory2name".into(),
                    json!(need),
                );
            }));
        }
    }
    let g = group_of(rows);
    assert_eq!(g.rows, 8);
    assert_eq!(g.languages, vec!["Nuer", "Anyuak", "Swahili"]);
    assert_eq!(g.needs.len(), 2);
    let r = flow11::map_referral(&g, &Maps::gambella(), "m", today()).unwrap();
    // Anyuak and Swahili are both language1: one entry.
    assert_eq!(r.case["language"], json!(["language2", "language1"]));
    assert!(!r.fallback_used());
}

#[test]
fn language_fallback_is_flagged() {
    let g = group_of(vec![with(|m| {
        m.insert(
            "progres_language.progres_languagecodeidname".into(),
            json!("Klingon"),
        );
    })]);
    let r = flow11::map_referral(&g, &Maps::gambella(), "m", today()).unwrap();
    assert_eq!(r.case["language"], json!(["language6"]));
    assert_eq!(r.fallbacks_used, vec!["language_to_primero"]);
}

#[test]
fn optional_parts_absent() {
    let g = group_of(vec![with(|m| {
        for k in [
            "progres_individual.individuals.progres_coalocationlevel1",
            "individuals.progres_coalocationlevel2",
            "progres_primerotransferstatusdate",
            "progres_interventiondescription",
            "progres_reasonforreferral",
            "progres_language.progres_languagecodeidname",
        ] {
            m.remove(k);
        }
    })]);
    let r = flow11::map_referral(&g, &Maps::gambella(), "m", today()).unwrap();
    assert_eq!(r.case["address_current"], Value::Null);
    assert_eq!(r.case["language"], json!([]));
    assert_eq!(r.service["service_referral_notes"], Value::Null);
    assert!(!r.service.contains_key("service_response_day_time"));
}

#[test]
fn reason_as_json_array_is_joined() {
    assert_eq!(
        flow11::referral_notes(Some("<p>A</p>"), Some("[\"x\",\"y\"]")).as_deref(),
        Some("A, x, y")
    );
    assert_eq!(flow11::referral_notes(Some("<br>"), None), None);
}

/// One case per rejection reason of the mapping: the code, what the message names, and that
/// no personal value leaks into it.
#[test]
fn every_rejection_reason() {
    let mut no_fallback = Maps::gambella();
    no_fallback.fallbacks.language_to_primero = None;
    type Mutate = fn(&mut serde_json::Map<String, Value>);
    let cases: Vec<(&str, Mutate, Maps, &str, Vec<&str>)> = vec![
        (
            "missing fields",
            |m| {
                m.remove("progres_individual.individuals.progres_givenname");
                m.remove("progres_individual.individuals.progres_dateofbirth");
                m.remove("progres_individual.individuals.progres_sex");
            },
            Maps::gambella(),
            flow11::MISSING_REQUIRED_FIELDS,
            vec![
                "progres_individual.individuals.progres_givenname",
                "progres_individual.individuals.progres_dateofbirth",
                "progres_individual.individuals.progres_sex",
                LP,
            ],
        ),
        (
            "missing type and ids",
            |m| {
                m.remove("progres_interventiontype2.interventiontype.progres_description");
                m.remove("progres_individual.individuals.progres_id");
                m.remove("progres_individual.progres_registrationgroupidname");
                m.remove("progres_individual.individuals.progres_familyname");
            },
            Maps::gambella(),
            flow11::MISSING_REQUIRED_FIELDS,
            vec![
                "progres_interventiontype2.interventiontype.progres_description",
                "progres_individual.individuals.progres_id",
                "progres_individual.progres_registrationgroupidname",
                "progres_individual.individuals.progres_familyname",
            ],
        ),
        (
            // The field mapped to `unhcr_id_no` is the group's name, so that is what is
            // required; the group GUID alone does not do.
            "group name missing, group id present",
            |m| {
                m.remove("progres_individual.progres_registrationgroupidname");
            },
            Maps::gambella(),
            flow11::MISSING_REQUIRED_FIELDS,
            vec!["progres_individual.progres_registrationgroupidname"],
        ),
        (
            // Identifiers that become ledger identifiers must be fit for it (R1).
            "control characters and over-long identifiers",
            |m| {
                m.insert("progres_interventionnumber".into(), json!("LP-1\u{7}"));
                m.insert("progres_businessunit".into(), json!("b".repeat(300)));
            },
            Maps::gambella(),
            flow11::MALFORMED_IDENTIFIER,
            vec!["progres_interventionnumber", "progres_businessunit", LP],
        ),
        (
            "birth after run date",
            |m| {
                m.insert(
                    "progres_individual.individuals.progres_dateofbirth".into(),
                    json!("2027-01-01"),
                );
            },
            Maps::gambella(),
            flow11::MISSING_REQUIRED_FIELDS,
            vec!["progres_dateofbirth"],
        ),
        (
            "unmapped type",
            |m| {
                m.insert(
                    "progres_interventiontype2.interventiontype.progres_description".into(),
                    json!("Cash for Protection"),
                );
            },
            Maps::gambella(),
            flow11::UNMAPPED_INTERVENTION_TYPE,
            vec!["Cash for Protection", "intervention_type_to_service"],
        ),
        (
            "unmapped sex",
            |m| {
                m.insert(
                    "progres_individual.individuals.progres_sex".into(),
                    json!(125080009),
                );
            },
            Maps::gambella(),
            flow11::UNMAPPED_SEX,
            vec!["125080009", "progres_sex"],
        ),
        (
            "unmapped language",
            |m| {
                m.insert(
                    "progres_language.progres_languagecodeidname".into(),
                    json!("Klingon"),
                );
            },
            no_fallback,
            flow11::UNMAPPED_LANGUAGE,
            vec!["Klingon", "language_to_primero"],
        ),
    ];
    for (name, mutate, maps, reason, named) in cases {
        let g = group_of(vec![with(mutate)]);
        let e = flow11::map_referral(&g, &maps, "m", today()).expect_err(name);
        assert_eq!(e.reason, reason, "{name}");
        for n in named {
            assert!(e.message.contains(n), "{name}: {n} not in {}", e.message);
        }
        for secret in ["Lindahmarker", "Achiengmarker", "+251911", "2012-12-05"] {
            assert!(!e.message.contains(secret), "{name} leaks {secret}");
        }
    }
}

#[test]
fn inconsistent_join_rows_are_rejected_naming_the_fields() {
    let a = row_json();
    let b = with(|m| {
        m.insert(
            "progres_language.progres_languagecodeidname".into(),
            json!("Anyuak"),
        );
        m.insert(
            "progres_individual.individuals.progres_givenname".into(),
            json!("Othermarker"),
        );
        m.insert("progres_interventionstartdate".into(), json!("2026-11-09"));
    });
    let other = with(|m| {
        m.insert(
            "progres_lpinterventionid".into(),
            json!("11111111-2222-3333-4444-555555555555"),
        );
    });
    let groups = flow11::group_rows([a, other, b].into_iter().map(parse));
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].0, LP);
    let e = groups[0].1.clone().unwrap_err();
    assert_eq!(e.reason, flow11::INCONSISTENT_JOIN_ROWS);
    assert!(e
        .message
        .contains("progres_individual.individuals.progres_givenname"));
    assert!(e.message.contains("progres_interventionstartdate"));
    assert!(!e.message.contains("Othermarker") && !e.message.contains("Lindahmarker"));
    // The other intervention is unaffected.
    assert!(groups[1].1.is_ok());
}

#[test]
fn source_hash_input_ignores_row_order_and_notices_changes() {
    let r1 = with(|m| {
        m.insert(
            "progres_language.progres_languagecodeidname".into(),
            json!("Anyuak"),
        );
    });
    let g1 = group_of(vec![row_json(), r1.clone()]);
    let g2 = group_of(vec![r1, row_json()]);
    let key = b"test-key";
    assert_eq!(
        pp_mapping::payload_hash(key, &g1.source_json()),
        pp_mapping::payload_hash(key, &g2.source_json())
    );
    let g3 = group_of(vec![with(|m| {
        m.insert(
            "progres_interventiontype2.interventiontype.progres_description".into(),
            json!("BID"),
        );
    })]);
    assert_ne!(
        pp_mapping::payload_hash(key, &g1.source_json()),
        pp_mapping::payload_hash(key, &g3.source_json())
    );
}

#[test]
fn write_back_record_of_flow_11() {
    let r = mapped().write_back(&Maps::gambella(), today());
    assert_eq!(r.external_id, LP);
    assert!(r.attachments.is_empty());
    let f = |n: &str| {
        r.fields
            .iter()
            .find(|(k, _)| k == n)
            .and_then(|(_, v)| v.clone())
    };
    assert_eq!(f("progres_lpinterventionid").as_deref(), Some(LP));
    assert_eq!(f("progres_businessunit").as_deref(), Some(BU));
    assert_eq!(
        f("progres_primerotransferstatus").as_deref(),
        Some("125080002")
    );
    assert_eq!(
        f("progres_primerotransferstatusdate").as_deref(),
        Some("2026-11-30")
    );
    assert_eq!(r.fields.len(), 4);
}

#[test]
fn debug_output_is_redacted() {
    let g = group_of(vec![row_json()]);
    let m = mapped();
    let text = format!("{g:?} {m:?}");
    for secret in [
        "Lindahmarker",
        "Achiengmarker",
        "+251911",
        "2012-12-05",
        "urgent",
        "Gambella",
        // The UNHCR individual number identifies a person.
        "803-100016547",
    ] {
        assert!(!text.contains(secret), "{secret} leaks: {text}");
    }
    assert!(text.contains(LP) && text.contains("name_first"));
}

// ---- flow 1.2 ----------------------------------------------------------------------------

fn case_with(services: Value) -> pp_primero::Case {
    pp_primero::Case::from_json(json!({
        "id": "7c2e1b9a-0f6f-4d1a-9e55-1f0a1b2c3d4e",
        "case_id": "c0ffee00-0000-4000-8000-000000000001",
        "owned_by": "cw_amina",
        "last_updated_at": "2026-11-30T06:00:00.000Z",
        "services_section": services,
    }))
    .unwrap()
}

fn svc(agency: &str, referral: &str, status: &str, uid: &str) -> Value {
    json!({
        "unique_id": uid,
        "service_request_agency": agency,
        "service_referral": referral,
        "unhcr_referral_status": status,
        "unhcr_referral_rejection_reason": "no capacity",
        "progres_interventionnumber": format!("LP-1,{LP},{BU}"),
    })
}

#[test]
fn decided_rows_are_selected_and_the_rest_counted() {
    let case = case_with(json!([
        svc("UNHCR", "external_referral", "accepted", "u1"),
        svc("unhcr", "external_referral", "rejected", "u2"),
        svc("UNICEF", "external_referral", "accepted", "u3"),
        svc("UNHCR", "internal_referral", "accepted", "u4"),
        svc("UNHCR", "external_referral", "pending", "u5"),
        {"service_request_agency": "UNHCR", "service_referral": "external_referral",
         "unhcr_referral_status": "accepted"},
    ]));
    let found = flow12::decided_rows(&case, |a| a.eq_ignore_ascii_case("UNHCR"));
    let got: Vec<(String, Decision)> = found
        .rows
        .iter()
        .map(|r| (r.service_unique_id.clone(), r.decision))
        .collect();
    assert_eq!(
        got,
        vec![
            ("u1".into(), Decision::Accepted),
            ("u2".into(), Decision::Rejected)
        ]
    );
    assert_eq!(
        found.excluded,
        vec![
            flow12::EXCLUDED_NOT_REQUESTED_BY_UNHCR,
            flow12::EXCLUDED_NOT_EXTERNAL_REFERRAL,
            flow12::EXCLUDED_UNDECIDED,
            flow12::EXCLUDED_NO_UNIQUE_ID,
        ]
    );
    assert_eq!(
        found.rows[1].key(),
        "7c2e1b9a-0f6f-4d1a-9e55-1f0a1b2c3d4e:u2:rejected"
    );
    assert!(!format!("{:?}", found.rows[1]).contains("no capacity"));
}

/// `case` with only `keep` of each service row's fields.
fn rows_trimmed(case: &pp_primero::Case, keep: &[&str]) -> pp_primero::Case {
    let mut data = case.data.clone();
    if let Some(Value::Array(rows)) = data.get_mut("services_section") {
        for row in rows {
            if let Value::Object(fields) = row {
                fields.retain(|k, _| keep.contains(&k.as_str()));
            }
        }
    }
    pp_primero::Case::from_data(data).unwrap()
}

#[test]
fn decided_rows_read_no_row_field_but_the_listed_ones() {
    // Flow 1.2 lists cases keeping only SERVICE_ROW_FIELDS of each row: with the others
    // removed, what decided_rows finds must not change.
    let mut rows = vec![
        svc("UNHCR", "external_referral", "accepted", "u1"),
        svc("UNHCR", "external_referral", "rejected", "u2"),
        svc("UNICEF", "external_referral", "accepted", "u3"),
        svc("UNHCR", "internal_referral", "accepted", "u4"),
        svc("UNHCR", "external_referral", "pending", "u5"),
        svc("UNHCR", "external_referral", "on_hold", "u6"),
        svc("UNHCR", "external_referral", "accepted", " "),
    ];
    for (n, row) in rows.iter_mut().enumerate() {
        let extra = json!({
            "service_type": "alternative_care",
            "service_response_type": "service_provision",
            "service_referral_notes": format!("note {n}"),
            "service_implementing_agency": "UNHCR",
            "service_response_day_time": "2026-11-29T10:00:00.000Z",
        });
        row.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
    }
    let case = case_with(Value::Array(rows));
    let unhcr = |a: &str| a.eq_ignore_ascii_case("UNHCR");
    let whole = flow12::decided_rows(&case, unhcr);
    assert_eq!(whole.rows.len(), 2);
    assert_eq!(whole.unknown.len(), 1);
    let trimmed = rows_trimmed(&case, flow12::SERVICE_ROW_FIELDS);
    assert_eq!(flow12::decided_rows(&trimmed, unhcr), whole);
    // Each listed field is read: without it, something found changes (so the equality above
    // is not an accident of rows that never needed their other fields).
    for field in flow12::SERVICE_ROW_FIELDS {
        let fewer: Vec<&str> = flow12::SERVICE_ROW_FIELDS
            .iter()
            .copied()
            .filter(|f| f != field)
            .collect();
        let without = flow12::decided_rows(&rows_trimmed(&case, &fewer), unhcr);
        assert_ne!(without, whole, "{field} is listed but not read");
    }
}

#[test]
fn intervention_numbers_split() {
    let cases: Vec<(Option<&str>, Result<InterventionRef, &str>)> = vec![
        (
            Some("LP-1,lp-guid,bu-guid"),
            Ok(InterventionRef::Composite {
                number: "LP-1".into(),
                lp_intervention_id: "lp-guid".into(),
                business_unit: "bu-guid".into(),
            }),
        ),
        (
            Some("LP-1"),
            Ok(InterventionRef::Legacy {
                number: "LP-1".into(),
            }),
        ),
        (
            Some("LP-1,lp-guid"),
            Ok(InterventionRef::Legacy {
                number: "LP-1".into(),
            }),
        ),
        (
            Some("LP-1,,"),
            Ok(InterventionRef::Legacy {
                number: "LP-1".into(),
            }),
        ),
        (Some(",lp,bu"), Err(flow12::LEGACY_INTERVENTION_NUMBER)),
        (None, Err(flow11::MISSING_REQUIRED_FIELDS)),
        (Some("  "), Err(flow11::MISSING_REQUIRED_FIELDS)),
    ];
    for (input, want) in cases {
        let got = flow12::split_intervention_number(input).map_err(|e| e.reason);
        assert_eq!(got, want, "{input:?}");
    }
    let fact = flow12::intervention_fact("lp", "bu");
    assert_eq!(
        flow12::read_intervention_fact(&fact),
        Some(("lp".to_owned(), "bu".to_owned()))
    );
    assert_eq!(
        flow12::unknown_legacy_number("LP-9").reason,
        flow12::LEGACY_INTERVENTION_NUMBER
    );
}

#[test]
fn decision_records_for_each_status() {
    let case = case_with(json!([
        svc("UNHCR", "external_referral", "accepted", "u1"),
        svc("UNHCR", "external_referral", "rejected", "u2"),
    ]));
    let rows = flow12::decided_rows(&case, |a| a == "UNHCR").rows;
    for (row, code, comment) in [
        (&rows[0], "125080003", "Referral acknowledged by PRIMERO"),
        (
            &rows[1],
            "125080004",
            "Referral rejected by PRIMERO: no capacity",
        ),
    ] {
        let r = flow12::decision_record(row, LP, BU, &Maps::gambella(), today()).unwrap();
        assert_eq!(r.external_id, "c0ffee00-0000-4000-8000-000000000001");
        assert_eq!(r.attachments, vec![comment.to_owned()]);
        let f = |n: &str| {
            r.fields
                .iter()
                .find(|(k, _)| k == n)
                .and_then(|(_, v)| v.clone())
        };
        assert_eq!(f("progres_primerotransferstatus").as_deref(), Some(code));
        assert_eq!(f("progres_lpinterventionid").as_deref(), Some(LP));
        assert_eq!(f("progres_businessunit").as_deref(), Some(BU));
        assert_eq!(
            f("progres_primerotransferstatusdate").as_deref(),
            Some("2026-11-30")
        );
        assert_eq!(
            f("progres_primeroid").as_deref(),
            Some("c0ffee00-0000-4000-8000-000000000001")
        );
        assert_eq!(f("progres_primerocaseworker").as_deref(), Some("cw_amina"));
        assert!(!r.fields.iter().any(|(k, _)| k.contains("comments")));
    }
    let mut no_case_id = rows[0].clone();
    no_case_id.case_id = None;
    let e = flow12::decision_record(&no_case_id, LP, BU, &Maps::gambella(), today()).unwrap_err();
    assert_eq!(e.reason, flow11::MISSING_REQUIRED_FIELDS);
    assert!(e.message.contains("case_id"));
}

#[test]
fn unknown_statuses_are_listed_for_rejection_and_pending_waits() {
    let case = case_with(json!([
        svc("UNHCR", "external_referral", "declined", "u1"),
        svc("UNHCR", "external_referral", "Accepted", "u2"),
        svc("UNHCR", "external_referral", "pending", "u3"),
        {"unique_id": "u4", "service_request_agency": "UNHCR",
         "service_referral": "external_referral"},
        svc("UNHCR", "external_referral", "accepted", "u5"),
    ]));
    let found = flow12::decided_rows(&case, |a| a == "UNHCR");
    assert_eq!(found.rows.len(), 1);
    assert_eq!(
        found.excluded,
        vec![flow12::EXCLUDED_UNDECIDED, flow12::EXCLUDED_UNDECIDED]
    );
    let values: Vec<&str> = found.unknown.iter().map(|u| u.value.as_str()).collect();
    assert_eq!(values, vec!["declined", "Accepted"]);
    let r = found.unknown[0].rejection();
    assert_eq!(r.reason, flow12::UNKNOWN_STATUS);
    assert!(
        r.message.contains("\"declined\"") && r.message.contains("u1"),
        "{}",
        r.message
    );
    assert_eq!(
        found.unknown[0].key(),
        "7c2e1b9a-0f6f-4d1a-9e55-1f0a1b2c3d4e:u1:unknown_status"
    );
}

#[test]
fn rows_whose_ids_cannot_be_keys_are_excluded_and_bad_case_ids_rejected() {
    let long = "u".repeat(300);
    let case = case_with(json!([
        svc("UNHCR", "external_referral", "accepted", &long),
        svc("UNHCR", "external_referral", "accepted", "u\u{1}x"),
        svc("UNHCR", "external_referral", "accepted", "fine"),
    ]));
    let found = flow12::decided_rows(&case, |a| a == "UNHCR");
    assert_eq!(
        found.excluded,
        vec![
            flow12::EXCLUDED_MALFORMED_IDENTIFIER,
            flow12::EXCLUDED_MALFORMED_IDENTIFIER
        ]
    );
    assert_eq!(found.rows.len(), 1);
    let mut row = found.rows[0].clone();
    row.case_id = Some("c\u{0}".into());
    let e = flow12::decision_record(&row, LP, BU, &Maps::gambella(), today()).unwrap_err();
    assert_eq!(e.reason, flow11::MALFORMED_IDENTIFIER);
}

#[test]
fn each_decision_instance_has_its_own_key() {
    let case = case_with(json!([svc("UNHCR", "external_referral", "accepted", "u1")]));
    let row = flow12::decided_rows(&case, |a| a == "UNHCR").rows.remove(0);
    let id = "7c2e1b9a-0f6f-4d1a-9e55-1f0a1b2c3d4e";
    assert_eq!(row.instance_key(1), format!("{id}:u1:accepted"));
    assert_eq!(row.instance_key(1), row.key());
    assert_eq!(row.instance_key(2), format!("{id}:u1:accepted:2"));
    assert_eq!(
        flow12::decision_key(id, "u1", Decision::Rejected, 3),
        format!("{id}:u1:rejected:3")
    );
}

#[test]
fn lp_ids_are_normalised_the_same_way_everywhere() {
    assert_eq!(
        flow11::normalize_lp_id(&format!(" {} ", LP.to_uppercase())),
        LP
    );
    assert_eq!(flow11::normalize_lp_id(" LP-Legacy-1 "), "LP-Legacy-1");
    assert!(flow11::is_ident(LP));
    assert!(!flow11::is_ident("  "));
    assert!(!flow11::is_ident("a\u{7}b"));
    assert!(!flow11::is_ident(&"a".repeat(201)));
}
