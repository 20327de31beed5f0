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

criterion_group!(benches, bench_flow11, bench_flow12);
criterion_main!(benches);
