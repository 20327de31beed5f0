//! One test per item of the PING "Simulator contract" (ping-api.md), over real HTTP.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use pp_sim_ping::Options;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn contract_01_token_endpoint() {
    let s = start().await;
    // Success: string expires_in, Bearer, a usable token.
    let r = s
        .http
        .post(s.sim.token_url())
        .form(&token_form("sim-ping-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], json!("3600"));
    assert!(v["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    // Any tenant/policy path ending in /oauth2/v2.0/token is the token endpoint.
    let other = format!(
        "{}/other.onmicrosoft.com/b2c_1_other/oauth2/v2.0/token",
        s.sim.base_url()
    );
    let r = s
        .http
        .post(&other)
        .form(&token_form("sim-ping-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Bad credentials.
    let r = s
        .http
        .post(s.sim.token_url())
        .form(&token_form("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_grant");
    assert!(v["error_description"]
        .as_str()
        .unwrap()
        .starts_with("AADB2C90225"));
    // Numeric expires_in and another lifetime by switch.
    s.set_options(json!({"token_expires_in_as_string": false, "token_expires_in_secs": 120}))
        .await;
    let r = s
        .http
        .post(s.sim.token_url())
        .form(&token_form("sim-ping-password"))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["expires_in"], json!(120));
}

#[tokio::test]
async fn contract_02_subscription_key() {
    let s = start().await;
    let url = s.url(pp_sim_ping::RETRIEVE_PATH);
    let body = json!({"ShippingProcessId": "SHP-2747", "PartnerId": "PNR-1363", "InteropID": "INT-1436", "QueryParameters": []});
    let r = s
        .http
        .post(&url)
        .bearer_auth(&s.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["statusCode"], 401);
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("missing subscription key"));
    let r = s
        .http
        .post(&url)
        .header("Ocp-Apim-Subscription-Key", "nope")
        .bearer_auth(&s.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("invalid subscription key"));
    let (status, _) = s.retrieve("SHP-2747", json!([])).await;
    assert_eq!(status, 200);
}

/// Item 2's last sentence: the token endpoint ignores the subscription key. A token request
/// carrying a key the API endpoints refuse still gets a token, and that token works on every
/// API endpoint once the right key goes with it.
#[tokio::test]
async fn contract_02_token_endpoint_ignores_the_subscription_key() {
    let s = start().await;
    s.seed(small_seed()).await;
    const WRONG: &str = "not-the-subscription-key";
    let r = s
        .http
        .post(s.sim.token_url())
        .header("Ocp-Apim-Subscription-Key", WRONG)
        .form(&token_form("sim-ping-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    let token = v["access_token"].as_str().unwrap().to_string();
    // Credentials are still checked when a (wrong) key comes along.
    let r = s
        .http
        .post(s.sim.token_url())
        .header("Ocp-Apim-Subscription-Key", WRONG)
        .form(&token_form("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_grant");
    // The API endpoints refuse that same key, with the token just issued, ...
    let calls = [
        (
            pp_sim_ping::RETRIEVE_PATH,
            json!({"ShippingProcessId": "SHP-2747", "PartnerId": "PNR-1363", "InteropID": "INT-1436", "QueryParameters": []}),
        ),
        (
            "/api/ingestion/v2/PNR-1363/data",
            json!({"ShippingProcessId": "SHP-2748", "InteropId": "INT-1436", "Data": [transfer_record("k", IV1, "125080002")]}),
        ),
        (
            "/api/ingestion/v2/PNR-1363/asyncdata",
            json!({"ShippingProcessId": "SHP-2731", "InteropID": "INT-1436", "APIVersion": "V2", "Data": [incoming_record("case-k", "svc-k", "125080000")]}),
        ),
        (
            pp_sim_ping::CHECKSTATUS_PATH,
            json!({"ShippingProcessId": "SHP-2731", "InteropID": "INT-1436", "PartnerId": "PNR-1363", "SPHTransactionId": "5b0f2f4e-0000-4000-8000-000000000000"}),
        ),
    ];
    for (path, body) in &calls {
        let r = s
            .http
            .post(s.url(path))
            .header("Ocp-Apim-Subscription-Key", WRONG)
            .bearer_auth(&token)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["statusCode"], 401);
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("invalid subscription key"),
            "{path}: {v}"
        );
    }
    assert!(
        s.sim.state_json()["transactions"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing refused was applied"
    );
    // ... and accept the token with the right key: it was a real token.
    for (path, body) in &calls {
        let r = s
            .http
            .post(s.url(path))
            .header("Ocp-Apim-Subscription-Key", "sim-subscription-key")
            .bearer_auth(&token)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn contract_03_bearer_token() {
    let s = start().await;
    let url = s.url(pp_sim_ping::RETRIEVE_PATH);
    let body = json!({"ShippingProcessId": "SHP-2747", "PartnerId": "PNR-1363", "InteropID": "INT-1436", "QueryParameters": []});
    let send = |tok: Option<String>| {
        let mut rb = s
            .http
            .post(&url)
            .header("Ocp-Apim-Subscription-Key", "sim-subscription-key")
            .json(&body);
        if let Some(t) = tok {
            rb = rb.bearer_auth(t);
        }
        rb.send()
    };
    // Every refusal is 401 `{statusCode:401, message}` with the same APIM text, whatever
    // is wrong with the token (the client cannot tell, and need not).
    let refused = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.expect("a JSON body");
        assert_eq!(v["statusCode"], 401, "{v}");
        assert_eq!(
            v["message"], "Unauthorized. Access token is missing or invalid.",
            "{v}"
        );
        assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    };
    // Missing.
    refused(send(None).await.unwrap()).await;
    // Unknown.
    refused(send(Some("made-up".into())).await.unwrap()).await;
    assert_eq!(send(Some(s.token.clone())).await.unwrap().status(), 200);
    // Expiry: a 1-second token stops working, a fresh one works again.
    s.set_options(json!({"token_expires_in_secs": 1})).await;
    let short = fetch_token(&s.http, &s.sim.token_url()).await;
    assert_eq!(send(Some(short.clone())).await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    refused(send(Some(short)).await.unwrap()).await;
    let fresh = fetch_token(&s.http, &s.sim.token_url()).await;
    assert_eq!(send(Some(fresh)).await.unwrap().status(), 200);
}

#[tokio::test]
async fn contract_04_retrieval_success() {
    let s = start().await;
    s.seed(small_seed()).await;
    let (status, v) = s.retrieve("SHP-2747", json!([])).await;
    assert_eq!(status, 200);
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "Data",
            "ErrorMessage",
            "RecordCount",
            "SPHTransactionId",
            "PagingSummary"
        ]
    );
    assert_eq!(v["ErrorMessage"], Value::Null);
    assert_eq!(v["RecordCount"], json!(rows(&v).len()));
    assert_eq!(rows(&v).len(), 3);
    assert!(is_guid(v["SPHTransactionId"].as_str().unwrap()));
    assert_eq!(
        v["PagingSummary"],
        json!({"PagingCookie": null, "PageNumber": 0, "IsMoreRecordsAvailable": false})
    );
    let (_, v2) = s.retrieve("SHP-2747", json!([])).await;
    assert_ne!(v["SPHTransactionId"], v2["SPHTransactionId"]);
}

#[tokio::test]
async fn contract_05_empty_result() {
    let s = start().await;
    let (status, v) = s.retrieve("SHP-2747", json!([])).await;
    assert_eq!(status, 200);
    assert_eq!(v["Data"], "No Data Available");
    assert_eq!(v["RecordCount"], Value::Null);
    assert_eq!(v["ErrorMessage"], Value::Null);
    assert!(is_guid(v["SPHTransactionId"].as_str().unwrap()));
    s.set_options(json!({"empty_record_count": "zero"})).await;
    let (_, v) = s.retrieve("SHP-2795", json!([])).await;
    assert_eq!(v["Data"], "No Data Available");
    assert_eq!(v["RecordCount"], json!(0));
}

fn assert_no_nulls(row: &Value) {
    for (k, v) in row.as_object().unwrap() {
        assert!(!v.is_null(), "key {k} is null");
    }
}

#[tokio::test]
async fn contract_06_row_encoding() {
    let s = start().await;
    s.seed(small_seed()).await;
    let (_, v) = s.retrieve_ids("SHP-2358", IV1).await;
    let row = &rows(&v)[0];
    assert_no_nulls(row);
    assert_eq!(row["progres_lpinterventionid"], IV1);
    assert_eq!(row["progres_interventionnumber"], "LP-ETH-2026-000001");
    assert_eq!(
        row["progres_individual.individuals.progres_sex"],
        json!(125080000)
    );
    assert_eq!(
        row["progres_individual.individuals.progres_sexname"],
        "Female"
    );
    assert_eq!(
        row["progres_individual.individuals.progres_dateofbirth"],
        "2015-03-14"
    );
    assert_eq!(
        row["progres_individual.individuals.progres_givenname"],
        "Nyakuoth"
    );
    assert_eq!(
        row["progres_individual.individuals.progres_commonyusedname"],
        "Nya"
    );
    assert_eq!(
        row["progres_individual.progres_registrationgroupidname"],
        "231-26-1009229"
    );
    assert_eq!(
        row["progres_interventiontype2.interventiontype.progres_description"],
        "Alternative Care"
    );
    assert_eq!(row["systemuser.su.mobilephone"], "+251911000002");
    assert_eq!(row["progres_businessunitname"], "Ethiopia - Gambella");
    assert_eq!(
        row["progres_individual.individuals.progres_coalocationlevel1"],
        "Gambella"
    );
    assert_eq!(
        row["progres_individual.individuals.progres_coalocationlevel3"],
        "Nguenyyiel"
    );
    assert!(row
        .get("progres_individual.individuals.progres_coalocationlevel4")
        .is_none());
    // Every key is in the documented set (plus name siblings and address levels).
    let allowed: HashSet<&str> = [
        "progres_interventionnumber",
        "progres_lpinterventionid",
        "progres_businessunit",
        "progres_businessunitname",
        "progres_interventionstartdate",
        "progres_interventiondescription",
        "progres_reasonforreferral",
        "progres_primerotransferstatusdate",
        "progres_primeroid",
        "progres_interventiontype2.interventiontype.progres_description",
        "progres_individual.individuals.progres_id",
        "progres_individual.individuals.progres_registrationgroupid",
        "progres_individual.individuals.progres_givenname",
        "progres_individual.individuals.progres_middlename",
        "progres_individual.individuals.progres_familyname",
        "progres_individual.individuals.progres_commonyusedname",
        "progres_individual.individuals.progres_dateofbirth",
        "progres_individual.individuals.progres_sex",
        "progres_individual.individuals.progres_sexname",
        "progres_individual.individuals.progres_primaryphonenumber",
        "progres_individual.progres_registrationgroupidname",
        "progres_individual.individuals.progres_coalocationlevel1",
        "progres_individual.individuals.progres_coalocationlevel2",
        "progres_individual.individuals.progres_coalocationlevel3",
        "systemuser.title",
        "systemuser.su.mobilephone",
        "systemuser.su.internalemailaddress",
        "progres_language.progres_languagecodeidname",
        "progres_specificneed.progres_spncategory2name",
        "progres_specificneed.progres_spnsubcategory2name",
        "progres_specificneed.specificneeds.progres_spncategory2",
        "progres_specificneed.specificneeds.progres_spnsubcategory2",
    ]
    .into_iter()
    .collect();
    for k in row.as_object().unwrap().keys() {
        assert!(allowed.contains(k.as_str()), "unexpected key {k}");
    }
    // Nulls omitted: IV2 has no middle name, phone, address, languages or needs.
    let (_, v) = s.retrieve_ids("SHP-2358", IV2).await;
    let row = &rows(&v)[0];
    assert_no_nulls(row);
    assert!(row
        .get("progres_individual.individuals.progres_middlename")
        .is_none());
    assert!(row
        .get("progres_language.progres_languagecodeidname")
        .is_none());
    assert!(row
        .get("progres_individual.individuals.progres_coalocationlevel1")
        .is_none());
    assert_eq!(
        row["progres_individual.individuals.progres_sexname"],
        "Male"
    );
    // SHP-2747 emits both the LP intervention id and the sample's progres_intervention.
    let (_, v) = s.retrieve("SHP-2747", json!([])).await;
    let row = rows(&v)
        .into_iter()
        .find(|r| r["progres_lpinterventionid"] == IV1)
        .unwrap();
    assert_eq!(row["progres_intervention"], IV1);
    assert_eq!(row["progres_deliverytype"], json!(125080004));
    assert_eq!(row["progres_deliverytypename"], "Primero Outgoing Referral");
    assert_eq!(
        row["progres_individual.indiv.progres_sex"],
        json!(125080000)
    );
    assert_eq!(row["statuscode"], json!(1));
    assert_no_nulls(&row);
}

#[tokio::test]
async fn contract_07_cardinality() {
    let s = start().await;
    s.seed(small_seed()).await;
    let (_, v) = s.retrieve_ids("SHP-2358", IV1).await;
    let r = rows(&v);
    assert_eq!(r.len(), 6, "2 languages x 3 needs");
    let pairs: HashSet<(String, String)> = r
        .iter()
        .map(|row| {
            (
                row["progres_language.progres_languagecodeidname"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                row["progres_specificneed.progres_spnsubcategory2name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(pairs.len(), 6);
    // Non-join fields identical across the rows.
    for row in &r {
        assert_eq!(
            row["progres_interventionnumber"],
            r[0]["progres_interventionnumber"]
        );
        assert_eq!(
            row["progres_individual.individuals.progres_familyname"],
            r[0]["progres_individual.individuals.progres_familyname"]
        );
    }
    let (_, v) = s.retrieve_ids("SHP-2358", IV2).await;
    assert_eq!(rows(&v).len(), 1, "no languages and no needs give one row");
    let (_, v) = s.retrieve_ids("SHP-2358", IV3).await;
    assert_eq!(rows(&v).len(), 1);
    let (_, v) = s
        .retrieve_ids("SHP-2796", &format!("[{REF1},{REF2}]"))
        .await;
    assert_eq!(rows(&v).len(), 2, "one row per referral id");
}

#[tokio::test]
async fn contract_08_record_ids_and_undefined_parameters() {
    let s = start().await;
    s.seed(small_seed()).await;
    let (_, v) = s.retrieve_ids("SHP-2358", &format!("[{IV2}, {IV3}]")).await;
    let ids: Vec<Value> = rows(&v)
        .iter()
        .map(|r| r["progres_lpinterventionid"].clone())
        .collect();
    assert_eq!(ids, [json!(IV2), json!(IV3)]);
    let (_, v) = s.retrieve_ids("SHP-2358", &IV1.to_uppercase()).await;
    assert_eq!(rows(&v).len(), 6, "GUIDs compare case-insensitively");
    let (status, v) = s
        .retrieve_ids("SHP-2358", "00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["Data"], "No Data Available");
    let (status, v) = s
        .retrieve_ids("SHP-2796", "[00000000-0000-0000-0000-000000000000]")
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["Data"], "No Data Available");
    // A status filter on SHP-2795 is refused.
    let filter = json!([{"ParameterName": "{progres_interoperabilityreferralstatus}", "Value": "[125080001, 125080002]"}]);
    let (status, v) = s.retrieve("SHP-2795", filter.clone()).await;
    assert_eq!(status, 400);
    assert!(v["ErrorMessage"].as_str().unwrap().contains("not defined"));
    assert_eq!(v["Data"], Value::Null);
    // Missing {record_ids} on a process that needs it.
    let (status, _) = s.retrieve("SHP-2358", json!([])).await;
    assert_eq!(status, 400);
    s.set_options(json!({"request_error_mode": "ok_200"})).await;
    let (status, v) = s.retrieve("SHP-2795", filter).await;
    assert_eq!(status, 200);
    assert!(v["ErrorMessage"].is_string());
    assert_eq!(v["Data"], Value::Null);
}

#[tokio::test]
async fn contract_09_unknown_shp_and_mismatched_ids() {
    let s = start().await;
    s.seed(small_seed()).await;
    let base = |shp: &str, partner: &str, interop: &str| json!({"ShippingProcessId": shp, "PartnerId": partner, "InteropID": interop, "QueryParameters": []});
    for body in [
        base("SHP-9999", "PNR-1363", "INT-1436"),
        base("SHP-2748", "PNR-1363", "INT-1436"),
        base("SHP-2747", "PNR-0000", "INT-1436"),
        base("SHP-2747", "PNR-1363", "INT-0000"),
    ] {
        let (status, v) = s.post(pp_sim_ping::RETRIEVE_PATH, &body).await;
        assert_eq!(status, 400, "{body}");
        assert!(v["ErrorMessage"].is_string());
    }
    let (status, v) = s
        .post(
            "/api/ingestion/v2/PNR-1363/data",
            &json!({"ShippingProcessId": "SHP-9999", "InteropId": "INT-1436", "Data": [transfer_record("x", IV1, "125080002")]}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(v["ErrorMessage"].is_string());
    s.set_options(json!({"request_error_mode": "ok_200"})).await;
    let (status, v) = s
        .post(
            pp_sim_ping::RETRIEVE_PATH,
            &base("SHP-9999", "PNR-1363", "INT-1436"),
        )
        .await;
    assert_eq!(status, 200);
    assert!(v["ErrorMessage"].as_str().unwrap().contains("SHP-9999"));
}

#[tokio::test]
async fn contract_10_paging() {
    let s = start().await;
    let doc = pp_sim_ping::scenario::generate(&pp_sim_ping::scenario::ScenarioOptions {
        count: 7,
        count_referrals: 5,
        ..Default::default()
    });
    s.seed(doc).await;
    s.seed(small_seed()).await;
    for (shp, params) in [
        ("SHP-2747", json!([])),
        ("SHP-2795", json!([])),
        (
            "SHP-2358",
            json!([{"ParameterName": "{record_ids}", "Value": format!("[{IV1},{IV2},{IV3}]")}]),
        ),
    ] {
        s.set_options(json!({"page_size": 1000})).await;
        let (_, full) = s.retrieve(shp, params.clone()).await;
        let full = rows(&full);
        assert!(full.len() > 3, "{shp}");
        s.set_options(json!({"page_size": 3})).await;
        let mut got: Vec<Value> = Vec::new();
        let mut cookie = Value::Null;
        let mut number = 0;
        let mut pages = 0;
        loop {
            let mut body = json!({"ShippingProcessId": shp, "PartnerId": "PNR-1363", "InteropID": "INT-1436", "QueryParameters": params});
            if !cookie.is_null() {
                body["PagingCookie"] = cookie.clone();
                body["PageNumber"] = json!(number + 1);
            }
            let (status, v) = s.post(pp_sim_ping::RETRIEVE_PATH, &body).await;
            assert_eq!(status, 200);
            pages += 1;
            let page = rows(&v);
            assert!(page.len() <= 3);
            got.extend(page);
            let ps = &v["PagingSummary"];
            if ps["IsMoreRecordsAvailable"] == true {
                assert!(ps["PagingCookie"].is_string(), "cookie when more");
                cookie = ps["PagingCookie"].clone();
                number = ps["PageNumber"].as_i64().unwrap();
            } else {
                assert_eq!(ps["PagingCookie"], Value::Null);
                break;
            }
        }
        assert_eq!(pages, full.len().div_ceil(3), "{shp}");
        assert_eq!(
            got, full,
            "{shp}: concatenated pages equal the unpaged result"
        );
    }
    let (status, v) = s
        .post(
            pp_sim_ping::RETRIEVE_PATH,
            &json!({"ShippingProcessId": "SHP-2747", "PartnerId": "PNR-1363", "InteropID": "INT-1436",
                    "QueryParameters": [], "PagingCookie": "garbage", "PageNumber": 1}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(v["ErrorMessage"].as_str().unwrap().contains("PagingCookie"));
    // A page number past the first needs the cookie (no silent restart from page one).
    let (status, v) = s
        .post(
            pp_sim_ping::RETRIEVE_PATH,
            &json!({"ShippingProcessId": "SHP-2747", "PartnerId": "PNR-1363", "InteropID": "INT-1436",
                    "QueryParameters": [], "PageNumber": 2}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(v["ErrorMessage"].as_str().unwrap().contains("PagingCookie"));
    // A cookie of another shipping process is refused.
    s.set_options(json!({"page_size": 1})).await;
    let (_, first) = s.retrieve("SHP-2795", json!([])).await;
    let foreign = first["PagingSummary"]["PagingCookie"].clone();
    assert!(foreign.is_string());
    let (status, _) = s
        .post(
            pp_sim_ping::RETRIEVE_PATH,
            &json!({"ShippingProcessId": "SHP-2747", "PartnerId": "PNR-1363", "InteropID": "INT-1436",
                    "QueryParameters": [], "PagingCookie": foreign, "PageNumber": 1}),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn contract_11_case_insensitive_top_level_keys() {
    let s = start().await;
    s.seed(small_seed()).await;
    let (status, v) = s
        .post(
            pp_sim_ping::RETRIEVE_PATH,
            &json!({"shippingprocessid": "SHP-2747", "PARTNERID": "PNR-1363", "InteropId": "INT-1436", "queryParameters": []}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(rows(&v).len(), 3);
    for key in ["InteropId", "InteropID", "interopid"] {
        let (status, v) = s
            .post(
                "/api/ingestion/v2/PNR-1363/data",
                &json!({"ShippingProcessId": "SHP-2748", key: "INT-1436", "data": [transfer_record(key, IV1, "125080002")]}),
            )
            .await;
        assert_eq!(status, 200, "{key}: {v}");
    }
}

#[tokio::test]
async fn contract_12_sync_ingestion() {
    let s = start().await;
    s.seed(small_seed()).await;
    // Wrong PartnerId in the path.
    let (status, v) = s
        .post(
            "/api/ingestion/v2/PNR-0000/data",
            &json!({"ShippingProcessId": "SHP-2748", "InteropId": "INT-1436", "Data": [transfer_record("a", IV1, "125080002")]}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(v["ErrorMessage"].is_string());
    // SHP-2748 applied at once, keyed by lp id + business unit.
    let mut rec = transfer_record("case-1", IV1, "125080003");
    rec["Fields"].as_array_mut().unwrap().extend([
        json!({"Name": "progres_primeroid", "Value": "case-1"}),
        json!({"Name": "progres_primerocaseworker", "Value": "cp.worker"}),
    ]);
    let (status, v) = s
        .ingest(
            "SHP-2748",
            json!([rec.clone(), transfer_record("x2", IV2, "125080002")]),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(is_guid(v["SPHTransactionId"].as_str().unwrap()));
    assert_eq!(v["ErrorMessage"], Value::Null);
    assert_eq!(v["RecordCount"], json!(2));
    let iv = stored_intervention(&s, IV1);
    assert_eq!(iv["progres_primerotransferstatus"], json!(125080003));
    assert_eq!(iv["progres_primerotransferstatusdate"], "2026-11-30");
    assert_eq!(iv["progres_primeroid"], "case-1");
    assert_eq!(iv["progres_primerocaseworker"], "cp.worker");
    // SHP-2358 now shows the written values.
    let (_, v) = s.retrieve_ids("SHP-2358", IV1).await;
    assert_eq!(rows(&v)[0]["progres_primeroid"], "case-1");
    assert_eq!(
        rows(&v)[0]["progres_primerotransferstatusdate"],
        "2026-11-30"
    );
    // Re-send is idempotent.
    let before = s.sim.state_json()["interventions"].clone();
    let (status, _) = s.ingest("SHP-2748", json!([rec])).await;
    assert_eq!(status, 200);
    assert_eq!(s.sim.state_json()["interventions"], before);
    // Wrong business unit is an unknown intervention.
    let mut bad = transfer_record("x3", IV3, "125080002");
    bad["Fields"][1]["Value"] = json!("00000000-86de-e811-80d8-001dd8b71fe3");
    let (status, v) = s.ingest("SHP-2748", json!([bad])).await;
    assert_eq!(status, 400);
    assert_eq!(v["FailedRecords"][0]["ExternalId"], "x3");
    assert!(v["FailedRecords"][0]["ErrorMessage"]
        .as_str()
        .unwrap()
        .contains(IV3));
    // SHP-2284 by referral id.
    let synced = json!({"ExternalId": REF1, "Attachments": [], "Fields": [
        {"Name": "progres_interoperabilityreferralid", "Value": REF1},
        {"Name": "progres_interoperabilityreferralstatus", "Value": "125080003"},
        {"Name": "progres_comments", "Value": "Referral decision synced with PRIMERO"}]});
    let (status, v) = s.ingest("SHP-2284", json!([synced.clone()])).await;
    assert_eq!(status, 200, "{v}");
    let before = s.sim.state_json()["interop_referrals"].clone();
    let r = before
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["progres_interoperabilityreferralid"] == REF1)
        .unwrap();
    assert_eq!(
        r["progres_interoperabilityreferralstatus"],
        json!(125080003)
    );
    assert_eq!(
        r["progres_comments"],
        "Referral decision synced with PRIMERO"
    );
    let (status, _) = s.ingest("SHP-2284", json!([synced])).await;
    assert_eq!(status, 200);
    assert_eq!(s.sim.state_json()["interop_referrals"], before);
    // Structural validation: Value must be a string or null.
    let (status, v) = s
        .ingest("SHP-2748", json!([{"ExternalId": "n", "Fields": [{"Name": "progres_lpinterventionid", "Value": 5}]}]))
        .await;
    assert_eq!(status, 400);
    assert!(v["FailedRecords"][0]["ErrorMessage"]
        .as_str()
        .unwrap()
        .contains("string or null"));
}

#[tokio::test]
async fn contract_12_batch_modes() {
    let s = start().await;
    s.seed(small_seed()).await;
    let unknown = transfer_record("bad", "00000000-0000-0000-0000-000000000000", "125080002");
    // all_or_nothing (default): nothing applied.
    let (status, v) = s
        .ingest(
            "SHP-2748",
            json!([transfer_record("good", IV1, "125080002"), unknown.clone()]),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(v["FailedRecords"].as_array().unwrap().len(), 1);
    assert_eq!(v["FailedRecords"][0]["ExternalId"], "bad");
    assert!(is_guid(v["SPHTransactionId"].as_str().unwrap()));
    let state = s.sim.state_json();
    assert!(state["interventions"][0]
        .get("progres_primerotransferstatus")
        .is_none());
    // partial: the valid record is applied, 200 with FailedRecords.
    s.set_options(json!({"batch_mode": "partial"})).await;
    let (status, v) = s
        .ingest(
            "SHP-2748",
            json!([transfer_record("good", IV1, "125080002"), unknown]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["RecordCount"], json!(1));
    assert_eq!(v["FailedRecords"][0]["ExternalId"], "bad");
    let state = s.sim.state_json();
    assert_eq!(
        state["interventions"][0]["progres_primerotransferstatus"],
        json!(125080002)
    );
}

/// Item 12's structural validation of `Data[]`: each malformed record sent next to a valid
/// one fails with a message naming what is wrong (and the record's `ExternalId` when it has a
/// usable one), never the value sent; under `all_or_nothing` the valid record is not applied.
#[tokio::test]
async fn contract_12_record_validation() {
    let s = start().await;
    s.seed(small_seed()).await;
    let base = || transfer_record("bad", IV2, "125080002");
    let with = |key: &str, v: Value| {
        let mut r = base();
        r[key] = v;
        r
    };
    let without = |key: &str| {
        let mut r = base();
        r.as_object_mut().unwrap().remove(key);
        r
    };
    let missing_id = "record 1: ExternalId is required and must be a non-empty string";
    let cases: Vec<(&str, Value, Value, &str)> = vec![
        (
            "not an object",
            json!(5),
            Value::Null,
            "record 1: must be an object",
        ),
        (
            "ExternalId missing",
            without("ExternalId"),
            Value::Null,
            missing_id,
        ),
        (
            "ExternalId empty",
            with("ExternalId", json!("")),
            Value::Null,
            missing_id,
        ),
        (
            "ExternalId blank",
            with("ExternalId", json!("  ")),
            Value::Null,
            missing_id,
        ),
        (
            "ExternalId a number",
            with("ExternalId", json!(42)),
            Value::Null,
            missing_id,
        ),
        (
            "ExternalId null",
            with("ExternalId", Value::Null),
            Value::Null,
            missing_id,
        ),
        (
            "ExternalGUID a number",
            with("ExternalGUID", json!(42)),
            json!("bad"),
            "ExternalGUID must be a string",
        ),
        (
            "ExternalGUID an object",
            with("ExternalGUID", json!({"id": "x"})),
            json!("bad"),
            "ExternalGUID must be a string",
        ),
        (
            "Attachments an object",
            with(
                "Attachments",
                json!({"Comment": "Referral acknowledged by PRIMERO"}),
            ),
            json!("bad"),
            "Attachments must be an array",
        ),
        (
            "Attachments a string",
            with("Attachments", json!("Referral acknowledged by PRIMERO")),
            json!("bad"),
            "Attachments must be an array",
        ),
        (
            "Attachment without Comment",
            with("Attachments", json!([{"Note": "Nyakuoth moved to Itang"}])),
            json!("bad"),
            "Attachments[].Comment must be a string",
        ),
        (
            "Attachment Comment a number",
            with("Attachments", json!([{"Comment": 7}])),
            json!("bad"),
            "Attachments[].Comment must be a string",
        ),
        (
            "Attachment not an object",
            with("Attachments", json!(["Nyakuoth moved to Itang"])),
            json!("bad"),
            "Attachments[].Comment must be a string",
        ),
        (
            "Attachment Comment null",
            with("Attachments", json!([{"Comment": null}])),
            json!("bad"),
            "Attachments[].Comment must be a string",
        ),
        (
            "unknown record key",
            with("Comment", json!("Nyakuoth moved to Itang")),
            json!("bad"),
            "member 'Comment' is not allowed in a record",
        ),
        (
            "record key in another case",
            with("fields", json!([])),
            json!("bad"),
            "member 'fields' is not allowed in a record",
        ),
        (
            "Fields missing",
            without("Fields"),
            json!("bad"),
            "Fields must be an array",
        ),
        (
            "Fields an object",
            with(
                "Fields",
                json!({"Name": "progres_lpinterventionid", "Value": IV2}),
            ),
            json!("bad"),
            "Fields must be an array",
        ),
        (
            "Fields item not an object",
            with("Fields", json!(["progres_lpinterventionid"])),
            json!("bad"),
            "Fields[] must be objects with Name and Value",
        ),
        (
            "Fields item without Name",
            with("Fields", json!([{"Value": IV2}])),
            json!("bad"),
            "Fields[].Name must be a non-empty string",
        ),
        (
            "Fields item with an empty Name",
            with("Fields", json!([{"Name": "", "Value": IV2}])),
            json!("bad"),
            "Fields[].Name must be a non-empty string",
        ),
        (
            "a field twice",
            with(
                "Fields",
                json!([
                    {"Name": "progres_lpinterventionid", "Value": IV2},
                    {"Name": "progres_businessunit", "Value": BU},
                    {"Name": "progres_primerotransferstatus", "Value": "125080002"},
                    {"Name": "progres_primerotransferstatus", "Value": "125080003"}
                ]),
            ),
            json!("bad"),
            "field 'progres_primerotransferstatus' appears more than once",
        ),
    ];
    for (what, bad, named, message) in cases {
        let (status, v) = s
            .ingest(
                "SHP-2748",
                json!([transfer_record("ok", IV1, "125080002"), bad]),
            )
            .await;
        assert_eq!(status, 400, "{what}: {v}");
        let failed = v["FailedRecords"].as_array().expect("FailedRecords");
        assert_eq!(failed.len(), 1, "{what}: {v}");
        assert_eq!(failed[0]["ExternalId"], named, "{what}: {v}");
        assert_eq!(failed[0]["ErrorMessage"], message, "{what}: {v}");
        assert!(
            !v.to_string().contains("Nyakuoth"),
            "{what} echoes a value: {v}"
        );
        assert!(
            stored_intervention(&s, IV1)
                .get("progres_primerotransferstatus")
                .is_none(),
            "{what}: the valid record was applied"
        );
    }
    // The optional members may be null or absent; Attachments may be empty.
    for ok in [
        with("ExternalGUID", Value::Null),
        with(
            "ExternalGUID",
            json!("0b8f6a53-3a3f-4c1e-9a59-6d1f6f2f0c21"),
        ),
        with("Attachments", Value::Null),
        with("Attachments", json!([])),
        without("Attachments"),
    ] {
        let (status, v) = s.ingest("SHP-2748", json!([ok])).await;
        assert_eq!(status, 200, "{v}");
    }
    // `Data` itself must be a non-empty array (a refusal of the request, not of a record).
    for (data, message) in [
        (None, "Data is required"),
        (
            Some(json!({"ExternalId": "x"})),
            "Data must be an array of records",
        ),
        (Some(json!([])), "Data must contain at least one record"),
    ] {
        let mut body = json!({"ShippingProcessId": "SHP-2748", "InteropId": "INT-1436"});
        if let Some(d) = data {
            body["Data"] = d;
        }
        let (status, v) = s.post("/api/ingestion/v2/PNR-1363/data", &body).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["ErrorMessage"], message, "{v}");
        assert!(v.get("FailedRecords").is_none(), "{v}");
    }
}

#[tokio::test]
async fn contract_13_field_whitelist() {
    let s = start().await;
    s.seed(small_seed()).await;
    let comment = "Referral acknowledged by PRIMERO";
    let mut rec = transfer_record("case-9", IV1, "125080003");
    rec["Fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"Name": "progres_comments_displayfield", "Value": comment}));
    let (status, v) = s.ingest("SHP-2748", json!([rec])).await;
    assert_eq!(status, 400);
    assert!(v["ErrorMessage"].is_string());
    assert_eq!(v["FailedRecords"][0]["ExternalId"], "case-9");
    assert_eq!(
        v["FailedRecords"][0]["ErrorMessage"],
        "field 'progres_comments_displayfield' is not allowed for SHP-2748"
    );
    let mut rec = transfer_record("case-9", IV1, "125080003");
    rec["Attachments"] = json!([{"Comment": comment}]);
    let (status, _) = s.ingest("SHP-2748", json!([rec.clone()])).await;
    assert_eq!(status, 200);
    let (status, _) = s.ingest("SHP-2748", json!([rec])).await;
    assert_eq!(status, 200);
    let iv = &s.sim.state_json()["interventions"][0];
    assert_eq!(iv["attachment_comments"], json!([comment]), "stored once");
    // SHP-2284 does not allow SHP-2748 fields; the error shape is switchable.
    s.set_options(json!({"ingestion_error_mode": "ok_200"}))
        .await;
    let (status, v) = s
        .ingest(
            "SHP-2284",
            json!([{"ExternalId": REF1, "Fields": [
            {"Name": "progres_interoperabilityreferralid", "Value": REF1},
            {"Name": "progres_primeroid", "Value": "x"}]}]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        v["FailedRecords"][0]["ErrorMessage"],
        "field 'progres_primeroid' is not allowed for SHP-2284"
    );
}

#[tokio::test]
async fn contract_14_invalid_option_code() {
    let s = start_with(Options {
        checkstatus_legacy_malformed: false,
        ..Options::default()
    })
    .await;
    s.seed(small_seed()).await;
    // Async SHP-2731 with progres_pocsex "Unknown": record fails naming the field.
    let (_, v) = s
        .ingest_async(json!([incoming_record("case-u", "svc-u", "Unknown")]))
        .await;
    let done = s
        .wait_processed(v["SPHTransactionId"].as_str().unwrap())
        .await;
    assert_eq!(done["Data"][0]["RecordStatus"], "Failed");
    assert!(done["Data"][0]["ErrorMessage"]
        .as_str()
        .unwrap()
        .contains("progres_pocsex"));
    // Sync SHP-2748 with an out-of-range transfer status.
    let (status, v) = s
        .ingest("SHP-2748", json!([transfer_record("t", IV1, "125080000")]))
        .await;
    assert_eq!(status, 400);
    assert!(v["FailedRecords"][0]["ErrorMessage"]
        .as_str()
        .unwrap()
        .contains("progres_primerotransferstatus"));
    // store_raw keeps the value as sent and reads it back raw.
    s.set_options(json!({"invalid_option_code": "store_raw"}))
        .await;
    let (_, v) = s
        .ingest_async(json!([incoming_record("case-u", "svc-u", "Unknown")]))
        .await;
    let done = s
        .wait_processed(v["SPHTransactionId"].as_str().unwrap())
        .await;
    assert_eq!(done["Data"][0]["RecordStatus"], "Success");
    let id = done["Data"][0]["Data"]["progres_interoperabilityreferralid"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, v) = s.retrieve_ids("SHP-2796", &id).await;
    assert_eq!(rows(&v)[0]["progres_pocsex"], "Unknown");
    assert!(rows(&v)[0].get("progres_pocsexname").is_none());
}

#[tokio::test]
async fn contract_15_async_ingestion() {
    let s = start_with(Options {
        async_delay_ms: 300,
        ..Options::default()
    })
    .await;
    let (status, v) = s
        .ingest_async(json!([incoming_record("case-a", "svc-a", "125080001")]))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        v.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["SPHTransactionId"]
    );
    let id = v["SPHTransactionId"].as_str().unwrap().to_string();
    assert!(is_guid(&id));
    let (_, pending) = s.checkstatus(&id).await;
    assert_eq!(pending["Status"], "Pending");
    assert_eq!(pending["Data"], json!([]));
    let (_, list) = s.retrieve("SHP-2795", json!([])).await;
    assert_eq!(
        list["Data"], "No Data Available",
        "not applied before the delay"
    );
    let started = Instant::now();
    s.wait_processed(&id).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    let (_, list) = s.retrieve("SHP-2795", json!([])).await;
    let r = rows(&list);
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0]["progres_interoperabilityreferralstatus"],
        json!(125080000)
    );
    let rid = r[0]["progres_interoperabilityreferralid"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, detail) = s.retrieve_ids("SHP-2796", &rid).await;
    let d = &rows(&detail)[0];
    assert_eq!(d["progres_offlineid"], "case-a");
    assert_eq!(d["progres_orgreferralid"], "svc-a");
    assert_eq!(d["progres_pocsex"], json!(125080001));
    assert_eq!(d["progres_requestedservicename"], "Health Assistance");
    // Re-sending the same referral creates a second one (`async_repeat: duplicate`, the
    // default; tests/switches_ingest.rs covers both modes).
    let (_, v) = s
        .ingest_async(json!([incoming_record("case-a", "svc-a", "125080001")]))
        .await;
    s.wait_processed(v["SPHTransactionId"].as_str().unwrap())
        .await;
    let (_, list) = s.retrieve("SHP-2795", json!([])).await;
    assert_eq!(rows(&list).len(), 2);
    // A synchronous SHP on /asyncdata is refused at once.
    let (status, _) = s
        .post(
            "/api/ingestion/v2/PNR-1363/asyncdata",
            &json!({"ShippingProcessId": "SHP-2748", "InteropID": "INT-1436", "Data": [transfer_record("x", IV1, "125080002")]}),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn contract_16_check_status() {
    let s = start_with(Options {
        checkstatus_legacy_malformed: false,
        ..Options::default()
    })
    .await;
    let (status, v) = s.checkstatus("5b0f2f4e-0000-4000-8000-000000000000").await;
    assert_eq!(status, 200);
    assert_eq!(v["Status"], Value::Null);
    assert_eq!(v["Data"], Value::Null);
    assert_eq!(v["ErrorMessage"], "Transaction not found");
    assert_eq!(
        v["SPHTransactionId"],
        "5b0f2f4e-0000-4000-8000-000000000000"
    );
    s.set_options(json!({"batch_mode": "partial"})).await;
    let mut bad = incoming_record("case-bad", "svc-bad", "125080000");
    bad["Fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"Name": "progres_lpinterventionid", "Value": IV1}));
    let (_, v) = s
        .ingest_async(json!([
            incoming_record("case-ok", "svc-ok", "125080000"),
            bad
        ]))
        .await;
    let id = v["SPHTransactionId"].as_str().unwrap().to_string();
    let done = s.wait_processed(&id).await;
    assert_eq!(done["SPHTransactionId"], id.as_str());
    let items = done["Data"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let keys: Vec<&str> = items[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["ExternalId", "Data", "RecordStatus", "ErrorMessage"]);
    assert_eq!(items[0]["ExternalId"], "case-ok");
    assert_eq!(items[0]["RecordStatus"], "Success");
    assert_eq!(items[0]["ErrorMessage"], Value::Null);
    assert!(is_guid(
        items[0]["Data"]["progres_interoperabilityreferralid"]
            .as_str()
            .unwrap()
    ));
    assert_eq!(items[0]["Data"]["progres_externalid"], "case-ok");
    assert_eq!(items[0]["Data"]["progres_offlineid"], "case-ok");
    assert_eq!(items[0]["Data"]["progres_orgreferralid"], "svc-ok");
    assert_eq!(items[1]["RecordStatus"], "Failed");
    assert_eq!(
        items[1]["ErrorMessage"],
        "field 'progres_lpinterventionid' is not allowed for SHP-2731"
    );
    assert!(items[1]["Data"]
        .get("progres_interoperabilityreferralid")
        .is_none());
    assert!(done["ErrorMessage"].is_string());
}

/// The reference job's repair: escape the quotes inside each embedded `Data` object.
fn repair(s: &str) -> String {
    let re = regex::Regex::new(r#""Data"\s*:\s*"\{([\s\S]*?)\}"\s*,"#).unwrap();
    re.replace_all(s, |c: &regex::Captures| {
        format!("\"Data\":\"{{{}}}\",", c[1].replace('"', "\\\""))
    })
    .into_owned()
}

#[tokio::test]
async fn contract_17_legacy_malformed_check_status() {
    let s = start().await;
    let (_, v) = s
        .ingest_async(json!([
            incoming_record("case-1", "svc-1", "125080000"),
            incoming_record("case-2", "svc-2", "125080001")
        ]))
        .await;
    let id = v["SPHTransactionId"].as_str().unwrap().to_string();
    let done = s.wait_processed(&id).await;
    let text = done["Data"].as_str().expect("legacy Data is a string");
    assert!(
        serde_json::from_str::<Value>(text).is_err(),
        "as sent it is invalid JSON"
    );
    assert!(text.contains("\"Data\":\"{\"progres_interoperabilityreferralid\":\""));
    let items: Vec<Value> = serde_json::from_str(&repair(text)).expect("repaired JSON");
    assert_eq!(items.len(), 2);
    for (item, case) in items.iter().zip(["case-1", "case-2"]) {
        assert_eq!(item["ExternalId"], case);
        assert_eq!(item["RecordStatus"], "Success");
        let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
        assert_ne!(keys.last().map(|k| k.as_str()), Some("Data"));
        let inner: Value = serde_json::from_str(item["Data"].as_str().unwrap()).unwrap();
        assert_eq!(inner["progres_offlineid"], case);
        assert!(is_guid(
            inner["progres_interoperabilityreferralid"]
                .as_str()
                .unwrap()
        ));
    }
    // Clean mode returns nested JSON for the same transaction.
    s.set_options(json!({"checkstatus_legacy_malformed": false}))
        .await;
    let (_, clean) = s.checkstatus(&id).await;
    assert_eq!(clean["Data"][0]["Data"]["progres_offlineid"], "case-1");
}

#[tokio::test]
async fn contract_18_state_transitions() {
    let s = start().await;
    s.seed(small_seed()).await;
    let (status, _) = s
        .ingest("SHP-2748", json!([transfer_record(IV1, IV1, "125080002")]))
        .await;
    assert_eq!(status, 200);
    let (_, v) = s.retrieve("SHP-2747", json!([])).await;
    let ids: Vec<Value> = rows(&v)
        .iter()
        .map(|r| r["progres_lpinterventionid"].clone())
        .collect();
    assert_eq!(ids, [json!(IV2), json!(IV3)]);
    s.set_options(json!({"drop_transferred_from_pending": false}))
        .await;
    let (_, v) = s.retrieve("SHP-2747", json!([])).await;
    assert_eq!(rows(&v).len(), 3);
    // SHP-2795 lists every status, including 125080003 after SHP-2284.
    let synced = json!({"ExternalId": REF2, "Attachments": [], "Fields": [
        {"Name": "progres_interoperabilityreferralid", "Value": REF2},
        {"Name": "progres_interoperabilityreferralstatus", "Value": "125080003"},
        {"Name": "progres_comments", "Value": "Referral decision synced with PRIMERO"}]});
    let (status, _) = s.ingest("SHP-2284", json!([synced])).await;
    assert_eq!(status, 200);
    let (_, v) = s.retrieve("SHP-2795", json!([])).await;
    let statuses: Vec<Value> = rows(&v)
        .iter()
        .map(|r| r["progres_interoperabilityreferralstatus"].clone())
        .collect();
    assert_eq!(statuses, [json!(125080001), json!(125080003)]);
    assert_eq!(
        rows(&v)[1]["progres_interoperabilityreferralstatusname"],
        "Synced with PRIMERO"
    );
    let (_, v) = s.retrieve_ids("SHP-2796", REF2).await;
    assert_eq!(
        rows(&v)[0]["progres_comments"],
        "Referral decision synced with PRIMERO"
    );
    assert_eq!(
        rows(&v)[0]["progres_interoperabiltyreferralrejectionreasonname"],
        "Individual Not Found"
    );
}

#[tokio::test]
async fn contract_19_transaction_ids_and_request_log() {
    let s = start().await;
    s.seed(small_seed()).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, v) = s.retrieve("SHP-2747", json!([])).await;
        ids.push(v["SPHTransactionId"].as_str().unwrap().to_string());
    }
    let (_, v) = s
        .ingest("SHP-2748", json!([transfer_record("e", IV1, "125080002")]))
        .await;
    ids.push(v["SPHTransactionId"].as_str().unwrap().to_string());
    let (_, v) = s
        .ingest_async(json!([incoming_record("c", "s", "125080000")]))
        .await;
    ids.push(v["SPHTransactionId"].as_str().unwrap().to_string());
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    assert!(ids.iter().all(|i| is_guid(i)));
    let (_, log) = s.control(Method::GET, "/_sim/requests", None).await;
    let log = log.as_array().unwrap();
    // token + 3 retrievals + data + asyncdata (control calls are not logged)
    assert_eq!(log.len(), 6, "{log:?}");
    assert_eq!(log[0]["endpoint"], "token");
    for (entry, id) in log[1..].iter().zip(&ids) {
        assert_eq!(entry["sph_transaction_id"], id.as_str());
        assert_eq!(entry["status"], 200);
        assert_eq!(entry["method"], "POST");
    }
    assert_eq!(log[1]["endpoint"], "retrieve");
    assert_eq!(log[1]["shp"], "SHP-2747");
    assert_eq!(log[1]["path"], pp_sim_ping::RETRIEVE_PATH);
    assert_eq!(log[4]["endpoint"], "data");
    assert_eq!(log[4]["shp"], "SHP-2748");
    assert_eq!(log[5]["endpoint"], "asyncdata");
    assert_eq!(log[5]["shp"], "SHP-2731");
    let (_, counts) = s.control(Method::GET, "/_sim/requests/counts", None).await;
    assert_eq!(
        counts,
        json!({"token": 1, "retrieve": 3, "data": 1, "asyncdata": 1})
    );
    let (status, _) = s.control(Method::DELETE, "/_sim/requests", None).await;
    assert_eq!(status, 200);
    assert!(s.sim.requests().is_empty());
    let (_, counts) = s.control(Method::GET, "/_sim/requests/counts", None).await;
    assert_eq!(counts, json!({}));
}

/// The request log keeps the last `request_log_limit` requests (a simulator left running
/// must not grow without bound), while the counts by endpoint stay exact; clearing the log
/// clears both.
#[tokio::test]
async fn the_request_log_is_bounded_and_its_counts_stay_exact() {
    let s = start().await;
    s.seed(small_seed()).await;
    s.set_options(json!({"request_log_limit": 2})).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let (_, v) = s.retrieve("SHP-2747", json!([])).await;
        ids.push(v["SPHTransactionId"].as_str().unwrap().to_string());
    }
    let log = s.sim.requests();
    assert_eq!(log.len(), 2, "{log:?}");
    // The newest two, oldest first.
    assert_eq!(log[0].sph_transaction_id.as_deref(), Some(ids[2].as_str()));
    assert_eq!(log[1].sph_transaction_id.as_deref(), Some(ids[3].as_str()));
    let (_, listed) = s.control(Method::GET, "/_sim/requests", None).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(2));
    let (_, counts) = s.control(Method::GET, "/_sim/requests/counts", None).await;
    // The token request and all four retrievals, though the log holds two entries.
    assert_eq!(counts, json!({"token": 1, "retrieve": 4}));
    let (status, _) = s.control(Method::DELETE, "/_sim/requests", None).await;
    assert_eq!(status, 200);
    assert!(s.sim.requests().is_empty());
    let (_, counts) = s.control(Method::GET, "/_sim/requests/counts", None).await;
    assert_eq!(counts, json!({}));
    // A lower limit holds as soon as it is set; a limit of 0 keeps the last request.
    s.retrieve("SHP-2747", json!([])).await;
    s.retrieve("SHP-2747", json!([])).await;
    assert_eq!(s.sim.requests().len(), 2);
    s.set_options(json!({"request_log_limit": 0})).await;
    assert_eq!(s.sim.requests().len(), 1);
    s.retrieve("SHP-2747", json!([])).await;
    assert_eq!(s.sim.requests().len(), 1);
    let (_, counts) = s.control(Method::GET, "/_sim/requests/counts", None).await;
    assert_eq!(counts, json!({"retrieve": 3}));
}

#[tokio::test]
async fn contract_20_fault_injection() {
    let s = start().await;
    s.seed(small_seed()).await;
    // 503 twice, then normal.
    let (st, _) = s
        .control(Method::POST, "/_sim/faults", Some(json!({"rules": [{"endpoint": "retrieve", "kind": "status", "status": 503, "times": 2}]})))
        .await;
    assert_eq!(st, 200);
    assert_eq!(s.retrieve("SHP-2747", json!([])).await.0, 503);
    assert_eq!(s.retrieve("SHP-2747", json!([])).await.0, 503);
    assert_eq!(s.retrieve("SHP-2747", json!([])).await.0, 200);
    // 429 with Retry-After, only on the endpoint named.
    s.control(Method::POST, "/_sim/faults", Some(json!({"rules": [{"endpoint": "data", "kind": "status", "status": 429, "retry_after_secs": 2}]}))).await;
    let r = s
        .http
        .post(s.url("/api/ingestion/v2/PNR-1363/data"))
        .header("Ocp-Apim-Subscription-Key", "sim-subscription-key")
        .bearer_auth(&s.token)
        .json(&json!({"ShippingProcessId": "SHP-2748", "InteropId": "INT-1436", "Data": [transfer_record("x", IV1, "125080002")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");
    assert_eq!(s.retrieve("SHP-2747", json!([])).await.0, 200);
    assert!(s.sim.state_json()["interventions"][0]
        .get("progres_primerotransferstatus")
        .is_none());
    // Latency, and a client timeout provoked by it.
    s.control(
        Method::POST,
        "/_sim/faults",
        Some(json!({"rules": [{"endpoint": "*", "kind": "latency", "ms": 300}]})),
    )
    .await;
    let t = Instant::now();
    assert_eq!(s.retrieve("SHP-2747", json!([])).await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    let err = s
        .http
        .post(s.url(pp_sim_ping::RETRIEVE_PATH))
        .timeout(Duration::from_millis(100))
        .json(&json!({}))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    // Drop: the client sees a connection error, no HTTP status.
    s.control(
        Method::POST,
        "/_sim/faults",
        Some(json!({"rules": [{"endpoint": "retrieve", "kind": "drop", "times": 1}]})),
    )
    .await;
    let err = s
        .http
        .post(s.url(pp_sim_ping::RETRIEVE_PATH))
        .header("Ocp-Apim-Subscription-Key", "sim-subscription-key")
        .bearer_auth(&s.token)
        .json(&json!({"ShippingProcessId": "SHP-2747", "PartnerId": "PNR-1363", "InteropID": "INT-1436"}))
        .send()
        .await
        .expect_err("dropped connection");
    assert!(err.status().is_none());
    assert!(err.is_request() || err.is_connect(), "{err:?}");
    assert!(
        !err.is_timeout() && !err.is_body() && !err.is_decode(),
        "{err:?}"
    );
    assert_eq!(
        s.retrieve("SHP-2747", json!([])).await.0,
        200,
        "next call works"
    );
    // Malformed JSON: 200 with a truncated body.
    s.control(
        Method::POST,
        "/_sim/faults",
        Some(json!({"rules": [{"endpoint": "checkstatus", "kind": "malformed_json"}]})),
    )
    .await;
    let (status, v) = s.checkstatus("00000000-0000-4000-8000-000000000000").await;
    assert_eq!(status, 200);
    assert!(v.is_string(), "body does not parse as JSON: {v}");
    // Probability 0 never applies; token endpoint can be faulted too.
    s.control(
        Method::POST,
        "/_sim/faults",
        Some(json!({"rules": [
        {"endpoint": "retrieve", "kind": "status", "status": 500, "probability": 0.0},
        {"endpoint": "token", "kind": "status", "status": 503, "times": 1}]})),
    )
    .await;
    assert_eq!(s.retrieve("SHP-2747", json!([])).await.0, 200);
    let r = s
        .http
        .post(s.sim.token_url())
        .form(&token_form("sim-ping-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    // expire_tokens invalidates issued tokens.
    s.control(
        Method::POST,
        "/_sim/faults",
        Some(json!({"rules": [], "expire_tokens": true})),
    )
    .await;
    assert_eq!(s.retrieve("SHP-2747", json!([])).await.0, 401);
    // Faulted requests are logged with the fault.
    let log = s.sim.requests();
    assert!(log
        .iter()
        .any(|e| e.status.is_none() && e.fault.as_deref() == Some("drop")));
    assert!(log
        .iter()
        .any(|e| e.status == Some(429) && e.endpoint == "data"));
    // Invalid rule documents are refused; DELETE clears.
    let (st, _) = s
        .control(
            Method::POST,
            "/_sim/faults",
            Some(json!({"rules": [{"endpoint": "nowhere", "kind": "drop"}]})),
        )
        .await;
    assert_eq!(st, 400);
    let (st, v) = s.control(Method::DELETE, "/_sim/faults", None).await;
    assert_eq!(st, 200);
    assert_eq!(v["rules"], 0);
}
