//! The scenario generator: determinism, realism of the invented records, referrals for
//! Flow 2.2, and speed at 10,000 records (seeded and paged through the simulator).

mod common;

use std::collections::HashSet;
use std::time::Instant;

use chrono::NaiveDate;
use common::*;
use pp_sim_ping::scenario::{generate, ScenarioOptions};
use serde_json::{json, Value};

fn opts(count: usize, seed: u64) -> ScenarioOptions {
    ScenarioOptions {
        count,
        seed,
        reference_date: NaiveDate::from_ymd_opt(2026, 11, 30),
        ..ScenarioOptions::default()
    }
}

#[test]
fn scenario_is_deterministic_for_a_seed() {
    let a = generate(&opts(50, 7));
    let b = generate(&opts(50, 7));
    let c = generate(&opts(50, 8));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a["interventions"].as_array().unwrap().len(), 50);
    assert_eq!(a["interop_referrals"], json!([]));
}

#[test]
fn scenario_records_are_realistic() {
    let today = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let doc = generate(&opts(300, 42));
    let ivs = doc["interventions"].as_array().unwrap();
    let types: HashSet<&str> = [
        "Alternative Care",
        "BID",
        "BIA",
        "Family Tracing and Reunification",
        "Advocacy / Direct intervention",
    ]
    .into_iter()
    .collect();
    let langs: HashSet<&str> = [
        "Nuer",
        "Anyuak",
        "Dinka, South Central",
        "Dinka, Northeastern",
        "Amharic",
        "Swahili",
        "Bari",
        "Acholi",
        "Somali",
        "Zande",
        "Bembe",
    ]
    .into_iter()
    .collect();
    let mut ids = HashSet::new();
    let mut numbers = HashSet::new();
    let mut need_counts = HashSet::new();
    let mut with_address = 0;
    for iv in ivs {
        assert!(ids.insert(iv["progres_lpinterventionid"].as_str().unwrap().to_string()));
        let number = iv["progres_interventionnumber"].as_str().unwrap();
        assert!(numbers.insert(number.to_string()));
        assert!(number.starts_with("LP-ETH-2026-") && number.len() == "LP-ETH-2026-000123".len());
        assert!(number[12..].chars().all(|c| c.is_ascii_digit()));
        assert_eq!(
            iv["progres_businessunit"],
            "577ccdf6-86de-e811-80d8-001dd8b71fe3"
        );
        assert!(types.contains(iv["intervention_type_description"].as_str().unwrap()));
        let desc = iv["progres_interventiondescription"].as_str().unwrap();
        assert!(
            desc.contains("<p>")
                && desc.contains("</p>")
                && desc.contains("<br>")
                && desc.contains("&amp;")
        );
        let ind = &iv["individual"];
        for k in [
            "progres_givenname",
            "progres_middlename",
            "progres_familyname",
            "progres_id",
            "progres_registrationgroupidname",
        ] {
            assert!(ind[k].as_str().is_some_and(|v| !v.is_empty()), "{k}");
        }
        let dob =
            NaiveDate::parse_from_str(ind["progres_dateofbirth"].as_str().unwrap(), "%Y-%m-%d")
                .unwrap();
        let age = today.years_since(dob).unwrap();
        assert!((2..=17).contains(&age), "age {age}");
        assert!((125080000..=125080003).contains(&ind["progres_sex"].as_i64().unwrap()));
        if let Some(p) = ind["progres_primaryphonenumber"].as_str() {
            assert!(p.starts_with("+2519") && p.len() == 13, "{p}");
        }
        assert!(iv["systemuser"]["mobilephone"]
            .as_str()
            .unwrap()
            .starts_with("+2519"));
        if ind.get("progres_coalocationlevel1").is_some() {
            with_address += 1;
        }
        let l = iv["languages"].as_array().unwrap();
        assert!(!l.is_empty());
        assert!(l.iter().all(|x| langs.contains(x.as_str().unwrap())));
        let needs = iv
            .get("specific_needs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        assert!(needs.len() <= 3);
        need_counts.insert(needs.len());
        for n in needs {
            assert!(n["progres_spncategory2"]
                .as_str()
                .unwrap()
                .ends_with("-8f76-e611-80c9-00155d340529"));
            assert!(n["progres_spncategory2name"].is_string());
            assert!(n["progres_spnsubcategory2name"].is_string());
            assert!(is_guid(n["progres_spnsubcategory2"].as_str().unwrap()));
        }
        assert_eq!(iv["delivery"]["progres_deliverytype"], 125080004);
    }
    assert_eq!(need_counts.len(), 4, "0, 1, 2 and 3 needs all occur");
    assert!(
        with_address > 50 && with_address < 250,
        "about half have an address"
    );
}

#[tokio::test]
async fn scenario_referrals_feed_flow_2_2() {
    let doc = generate(&ScenarioOptions {
        count: 0,
        count_referrals: 40,
        ..opts(0, 3)
    });
    let refs = doc["interop_referrals"].as_array().unwrap();
    assert_eq!(refs.len(), 40);
    let statuses: HashSet<i64> = refs
        .iter()
        .map(|r| {
            r["progres_interoperabilityreferralstatus"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert!(statuses.contains(&125080001) && statuses.contains(&125080002));
    for r in refs {
        assert!(r["progres_offlineid"].is_string());
        assert!(r["progres_orgreferralid"].is_string());
        if r["progres_interoperabilityreferralstatus"] == 125080002 {
            assert!(r["progres_interoperabiltyreferralrejectionreasonname"].is_string());
        }
    }
    let s = start().await;
    s.seed(doc.clone()).await;
    let (_, v) = s.retrieve("SHP-2795", json!([])).await;
    assert_eq!(v["RecordCount"], 40);
    let id = refs[0]["progres_interoperabilityreferralid"]
        .as_str()
        .unwrap();
    let (_, v) = s.retrieve_ids("SHP-2796", id).await;
    assert_eq!(
        v["Data"][0]["progres_offlineid"],
        refs[0]["progres_offlineid"]
    );
}

#[tokio::test]
async fn scenario_10000_records_fast_and_pageable() {
    let t = Instant::now();
    let doc = generate(&opts(10_000, 9));
    let gen_time = t.elapsed();
    assert!(gen_time.as_secs_f64() < 5.0, "generation took {gen_time:?}");
    let s = start().await;
    s.seed(doc.clone()).await;
    // The typed seed is the same data.
    let typed = pp_sim_ping::scenario::generate_seed(&opts(10_000, 9));
    assert_eq!(
        serde_json::to_value(&typed.interventions).unwrap(),
        doc["interventions"]
    );
    let s2 = start().await;
    s2.sim.seed_doc(typed).expect("typed seed");
    assert_eq!(s2.sim.state_json()["interventions"], doc["interventions"]);
    let mut total = 0;
    let mut pages = 0;
    let mut cookie = Value::Null;
    let mut number = 0;
    let t = Instant::now();
    loop {
        let mut body = json!({"ShippingProcessId": "SHP-2747", "PartnerId": "PNR-1363", "InteropID": "INT-1436", "QueryParameters": []});
        if !cookie.is_null() {
            body["PagingCookie"] = cookie.clone();
            body["PageNumber"] = json!(number + 1);
        }
        let (status, v) = s.post(pp_sim_ping::RETRIEVE_PATH, &body).await;
        assert_eq!(status, 200);
        total += v["RecordCount"].as_u64().unwrap();
        pages += 1;
        if v["PagingSummary"]["IsMoreRecordsAvailable"] != true {
            break;
        }
        cookie = v["PagingSummary"]["PagingCookie"].clone();
        number = v["PagingSummary"]["PageNumber"].as_i64().unwrap();
    }
    assert_eq!(total, 10_000);
    assert_eq!(pages, 10);
    assert!(
        t.elapsed().as_secs_f64() < 20.0,
        "paging took {:?}",
        t.elapsed()
    );
}
