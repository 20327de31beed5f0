//! Criterion benchmark of the pure mapping of flows 1.1 and 1.2: grouping and mapping the
//! SHP-2358 rows of one referral (several languages x needs), stripping HTML, and picking the
//! decisions of a Primero case and building their SHP-2748 records.

use chrono::NaiveDate;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use pp_mapping::{flow11, flow12, Maps};
use pp_ping::{FromRow, InterventionDetailRow, Row};
use serde_json::{json, Value};

fn detail_row(lp: &str, language: &str, need: &str) -> InterventionDetailRow {
    let v = json!({
        "progres_interventionnumber": "803-23-PRTITV-1000642",
        "progres_lpinterventionid": lp,
        "progres_businessunit": "577ccdf6-86de-e811-80d8-001dd8b71fe3",
        "progres_interventionstartdate": "2026-11-02",
        "progres_interventiondescription": "<p>Needs <b>urgent</b>&nbsp;care &amp; follow-up</p>",
        "progres_reasonforreferral": "[\"risk\",\"protection\"]",
        "progres_primerotransferstatusdate": "2026-11-03",
        "progres_interventiontype2.interventiontype.progres_description": "BIA",
        "progres_individual.individuals.progres_id": "803-100016547",
        "progres_individual.individuals.progres_registrationgroupid": "1b1b1b1b-0000-0000-0000-000000000001",
        "progres_individual.progres_registrationgroupidname": "803-00012345",
        "progres_individual.individuals.progres_givenname": "Given",
        "progres_individual.individuals.progres_familyname": "Family",
        "progres_individual.individuals.progres_dateofbirth": "2012-04-05",
        "progres_individual.individuals.progres_sex": 125080000,
        "progres_language.progres_languagecodeidname": language,
        "progres_specificneed.progres_spncategory2name": need,
    });
    let Value::Object(map) = v else {
        unreachable!()
    };
    InterventionDetailRow::from_row(&Row::new(map)).expect("row parses")
}

fn bench_flow11(c: &mut Criterion) {
    let maps = Maps::gambella();
    let today = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let mut rows = Vec::new();
    for lang in ["Nuer", "Anyuak", "Swahili", "Somali"] {
        for need in ["Child at risk", "Disability", "SGBV"] {
            rows.push(detail_row(
                "68b20e2a-4879-ee11-8179-000d3a43f6eb",
                lang,
                need,
            ));
        }
    }
    c.bench_function("flow11 group+map 12 join rows", |b| {
        b.iter(|| {
            let groups = flow11::group_rows(black_box(rows.clone()));
            for (_, g) in groups {
                let g = g.expect("consistent");
                black_box(flow11::map_referral(&g, &maps, "primeromodule-cp", today).unwrap());
            }
        })
    });
    c.bench_function("flow11 strip_html", |b| {
        b.iter(|| {
            flow11::strip_html(black_box(
                "<div><p>Needs&nbsp;<b>urgent</b> care &amp; follow-up</p><br/>and &#233;</div>",
            ))
        })
    });
}

fn bench_flow12(c: &mut Criterion) {
    let maps = Maps::gambella();
    let today = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let services: Vec<Value> = (0..10)
        .map(|i| {
            json!({
                "unique_id": format!("00000000-0000-4000-8000-{i:012}"),
                "service_request_agency": if i % 2 == 0 { "UNHCR" } else { "unicef" },
                "service_referral": "external_referral",
                "unhcr_referral_status": if i % 4 == 0 { "accepted" } else { "rejected" },
                "unhcr_referral_rejection_reason": "no capacity",
                "progres_interventionnumber": format!("LP-{i},68b20e2a-4879-ee11-8179-000d3a43f6eb,577ccdf6-86de-e811-80d8-001dd8b71fe3"),
            })
        })
        .collect();
    let case = pp_primero::Case::from_json(json!({
        "id": "7c2e1b9a-0f6f-4d1a-9e55-1f0a1b2c3d4e",
        "case_id": "c0ffee00-0000-4000-8000-000000000001",
        "owned_by": "cw_amina",
        "last_updated_at": "2026-11-30T06:00:00.000Z",
        "services_section": services,
    }))
    .unwrap();
    c.bench_function("flow12 decisions of a 10-row case", |b| {
        b.iter(|| {
            let found = flow12::decided_rows(black_box(&case), |a| a.eq_ignore_ascii_case("UNHCR"));
            for row in &found.rows {
                if let Ok(flow12::InterventionRef::Composite {
                    lp_intervention_id,
                    business_unit,
                    ..
                }) = flow12::split_intervention_number(row.intervention_number.as_deref())
                {
                    black_box(
                        flow12::decision_record(
                            row,
                            &lp_intervention_id,
                            &business_unit,
                            &maps,
                            today,
                        )
                        .unwrap(),
                    );
                }
            }
        })
    });
}

/// Flows 2.1 and 2.2: mapping one referred service row to its SHP-2731 record (with its
/// payload JSON for the ledger hash), and one SHP-2796 detail to a Primero status change.
fn bench_flow2x(c: &mut Criterion) {
    use pp_mapping::{flow21, flow22};
    let maps = Maps::gambella();
    let settings = flow21::Settings {
        business_unit: "577ccdf6-86de-e811-80d8-001dd8b71fe3".into(),
        organization_from: "c00582a6-d8f6-f011-8406-6045bd8ea5fb".into(),
        referred_by: "Primero CP".into(),
        on_incomplete_caseworker: flow21::CaseworkerPolicy::Reject,
    };
    let case = pp_primero::Case::from_json(json!({
        "id": "0b8c4a52-1f0e-4f4e-9a51-4d1f6f6b7a01", "case_id": "f59e880e-d58f-4b68-ba6e-e0616a49aefd",
        "owned_by": "cw_amina", "name_first": "Given", "name_last": "Family", "sex": "female",
        "date_of_birth": "2014-03-02", "unhcr_individual_no": "945-00012345",
        "protection_concerns": ["caafag", "street_child", "orphan"],
        "services_section": [{"unique_id": "5c2d4f6c-7a78-43b5-ac40-eb097be51d89",
            "service_type": "medical", "service_implementing_agency": "UNHCR",
            "service_referral_notes": "notes"}]}))
    .unwrap();
    let row = case.services().remove(0);
    let referral = pp_primero::Referral::from_json(json!({"id": "r1", "status": "in_progress",
        "service_record_id": "5c2d4f6c-7a78-43b5-ac40-eb097be51d89",
        "created_at": "2026-11-20T10:00:00.000Z"}))
    .unwrap();
    let owner = pp_primero::User::from_data(
        json!({"id": 3, "user_name": "cw_amina", "email": "a@example.org", "phone": "+2519",
               "position": "Case worker"})
        .as_object()
        .unwrap(),
    )
    .unwrap();
    c.bench_function("flow21 map one referred service row", |b| {
        b.iter(|| {
            let m = flow21::map_referral(&maps, &settings, &case, &row, &referral, Some(&owner))
                .unwrap();
            black_box((m.ingest_record(), m.payload_json()))
        })
    });
    let detail = pp_ping::DecisionDetail::from_row(
        &Row::from_value(json!({"progres_interoperabilityreferralid": "g-1",
            "progres_interoperabilityreferralstatus": 125080002,
            "progres_offlineid": "f59e880e-d58f-4b68-ba6e-e0616a49aefd",
            "progres_orgreferralid": "5c2d4f6c-7a78-43b5-ac40-eb097be51d89",
            "progres_interoperabiltyreferralrejectionreasonname": "Individual Not Found",
            "progres_interoperabilityreferralrejectionomment": "No match"}))
        .unwrap(),
    )
    .unwrap();
    let codes = maps.codes.interop_status;
    c.bench_function("flow22 map one decision and its synced record", |b| {
        b.iter(|| {
            let d = flow22::map_decision(&codes, &detail).unwrap();
            black_box((
                flow22::synced_record(&codes, &d.referral_id),
                d.payload_json(),
            ))
        })
    });
}

criterion_group!(benches, bench_flow11, bench_flow12, bench_flow2x);
criterion_main!(benches);
