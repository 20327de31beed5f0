//! Shared helpers of the simulator's integration tests: start a simulator, get a token,
//! call the PING endpoints over real HTTP, and a small hand-written seed.
#![allow(dead_code)]

use pp_sim_ping::{spawn, Options, SimHandle};
use serde_json::{json, Value};

pub const BU: &str = "577ccdf6-86de-e811-80d8-001dd8b71fe3";
pub const IV1: &str = "68b20e2a-4879-ee11-8179-000d3a43f6eb";
pub const IV2: &str = "82698a1d-aa24-ee11-9cbc-0022488b6523";
pub const IV3: &str = "d46c3b78-d1d7-4661-9c18-140b6c187a92";
pub const REF1: &str = "2785b477-767d-4814-949a-be8e0990bcc8";
pub const REF2: &str = "3c1d9a55-0b7e-4a43-9d7f-5e1b2a6f4c11";

/// A running simulator with an HTTP client and a valid token.
pub struct Sim {
    pub sim: SimHandle,
    pub http: reqwest::Client,
    pub token: String,
}

pub async fn start() -> Sim {
    start_with(Options::default()).await
}

pub async fn start_with(opts: Options) -> Sim {
    let sim = spawn(opts, 0).await.expect("spawn simulator");
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("client");
    let token = fetch_token(&http, &sim.token_url()).await;
    Sim { sim, http, token }
}

pub fn token_form(password: &str) -> Vec<(&'static str, String)> {
    vec![
        ("username", "ping.partner@sim.local".to_string()),
        ("password", password.to_string()),
        ("grant_type", "password".to_string()),
        (
            "scope",
            "https://primespingb2cuat.onmicrosoft.com/apimurls/API.Read".to_string(),
        ),
        ("client_id", "ping-primero-sim".to_string()),
        ("response_type", "token".to_string()),
    ]
}

pub async fn fetch_token(http: &reqwest::Client, url: &str) -> String {
    let r = http
        .post(url)
        .form(&token_form("sim-ping-password"))
        .send()
        .await
        .expect("token request");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("token json");
    v["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

impl Sim {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.sim.base_url(), path)
    }

    /// POST with subscription key and bearer token; returns status and JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .header("Ocp-Apim-Subscription-Key", "sim-subscription-key")
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub async fn retrieve(&self, shp: &str, params: Value) -> (u16, Value) {
        self.post(
            "/primes/fetch/paging/v3/retrievedatawithpaging",
            &json!({"ShippingProcessId": shp, "PartnerId": "PNR-1363", "InteropID": "INT-1436",
                    "APIVersion": "V3", "QueryParameters": params}),
        )
        .await
    }

    pub async fn retrieve_ids(&self, shp: &str, ids: &str) -> (u16, Value) {
        self.retrieve(
            shp,
            json!([{"ParameterName": "{record_ids}", "Value": ids}]),
        )
        .await
    }

    pub async fn ingest(&self, shp: &str, data: Value) -> (u16, Value) {
        self.post(
            "/api/ingestion/v2/PNR-1363/data",
            &json!({"ShippingProcessId": shp, "InteropId": "INT-1436", "Data": data}),
        )
        .await
    }

    pub async fn ingest_async(&self, data: Value) -> (u16, Value) {
        self.post(
            "/api/ingestion/v2/PNR-1363/asyncdata",
            &json!({"ShippingProcessId": "SHP-2731", "InteropID": "INT-1436", "APIVersion": "V2", "Data": data}),
        )
        .await
    }

    pub async fn checkstatus(&self, id: &str) -> (u16, Value) {
        self.post(
            "/primes/ingestion/checkstatus/v1/pingdata",
            &json!({"ShippingProcessId": "SHP-2731", "InteropID": "INT-1436", "PartnerId": "PNR-1363", "SPHTransactionId": id}),
        )
        .await
    }

    /// Polls check-status until the transaction is processed.
    pub async fn wait_processed(&self, id: &str) -> Value {
        for _ in 0..200 {
            let (_, v) = self.checkstatus(id).await;
            if v["Status"] == "Processed" {
                return v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("transaction {id} was not processed");
    }

    pub async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("control request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn set_options(&self, patch: Value) {
        let (s, v) = self
            .control(reqwest::Method::POST, "/_sim/options", Some(patch))
            .await;
        assert_eq!(s, 200, "{v}");
    }

    /// The status `/_sim/options` answers to `patch` (400 for a value a switch does not take).
    pub async fn options_status(&self, patch: Value) -> u16 {
        self.control(reqwest::Method::POST, "/_sim/options", Some(patch))
            .await
            .0
    }

    pub async fn seed(&self, doc: Value) {
        self.sim.seed(doc).await.expect("seed");
    }
}

/// Three pending interventions: IV1 (2 languages × 3 needs, address), IV2 (no languages,
/// no needs, no middle name), IV3 (1 language, 1 need); two referrals.
pub fn small_seed() -> Value {
    json!({
        "interventions": [
            {
                "progres_lpinterventionid": IV1,
                "progres_interventionnumber": "LP-ETH-2026-000001",
                "progres_businessunit": BU,
                "progres_businessunitname": "Ethiopia - Gambella",
                "intervention_type_description": "Alternative Care",
                "progres_interventionstartdate": "2026-10-02",
                "progres_interventiondescription": "<p>Lives with aunt &amp; cousins.<br>Needs care.</p>",
                "progres_reasonforreferral": "Needs an alternative care arrangement",
                "delivery": {"progres_dtpdeliveryid": "e98e5a45-4879-ee11-8179-000d3a43f6eb", "progres_statusdate": "2026-10-02"},
                "individual": {
                    "progres_individualid": "8e1513c4-7772-ee11-8179-000d3a43f82f",
                    "progres_id": "231-10001654",
                    "progres_registrationgroupid": "951513c4-7772-ee11-8179-000d3a43f82f",
                    "progres_registrationgroupidname": "231-26-1009229",
                    "progres_givenname": "Nyakuoth",
                    "progres_middlename": "Gatluak",
                    "progres_familyname": "Duoth",
                    "progres_commonyusedname": "Nya",
                    "progres_dateofbirth": "2015-03-14",
                    "progres_sex": 125080000,
                    "progres_primaryphonenumber": "+251911000001",
                    "progres_coalocationlevel1": "Gambella",
                    "progres_coalocationlevel2": "Itang Special Woreda",
                    "progres_coalocationlevel3": "Nguenyyiel"
                },
                "systemuser": {"title": "Protection Associate", "mobilephone": "+251911000002", "internalemailaddress": "omot.okello@unhcr.example.org"},
                "languages": ["Nuer", "Amharic"],
                "specific_needs": [
                    {"progres_spncategory2": "a1c5b4fb-8f76-e611-80c9-00155d340529", "progres_spncategory2name": "Child at risk", "progres_spnsubcategory2": "11111111-9076-e611-80c9-00155d340529", "progres_spnsubcategory2name": "Child parent"},
                    {"progres_spncategory2": "abc5b4fb-8f76-e611-80c9-00155d340529", "progres_spncategory2name": "Unaccompanied or separated child", "progres_spnsubcategory2": "22222222-9076-e611-80c9-00155d340529", "progres_spnsubcategory2name": "Separated child"},
                    {"progres_spncategory2": "a3c5b4fb-8f76-e611-80c9-00155d340529", "progres_spncategory2name": "Disability", "progres_spnsubcategory2": "33333333-9076-e611-80c9-00155d340529", "progres_spnsubcategory2name": "Physical disability - moderate"}
                ]
            },
            {
                "progres_lpinterventionid": IV2,
                "progres_interventionnumber": "LP-ETH-2026-000002",
                "progres_businessunit": BU,
                "intervention_type_description": "BIA",
                "progres_interventionstartdate": "2026-09-20",
                "delivery": {},
                "individual": {"progres_id": "231-10000771", "progres_givenname": "Ojulu", "progres_familyname": "Omot", "progres_dateofbirth": "2012-01-30", "progres_sex": 125080001}
            },
            {
                "progres_lpinterventionid": IV3,
                "progres_interventionnumber": "LP-ETH-2026-000003",
                "progres_businessunit": BU,
                "intervention_type_description": "BID",
                "delivery": {},
                "individual": {"progres_id": "231-10000772", "progres_givenname": "Achol", "progres_familyname": "Deng", "progres_sex": 125080000},
                "languages": ["Dinka, South Central"],
                "specific_needs": [{"progres_spncategory2": "b1c5b4fb-8f76-e611-80c9-00155d340529", "progres_spncategory2name": "SGBV"}]
            }
        ],
        "interop_referrals": [
            {"progres_interoperabilityreferralid": REF1, "progres_interoperabilityreferralstatus": 125080001,
             "progres_offlineid": "case-0001", "progres_orgreferralid": "svc-0001", "progres_externalid": "case-0001"},
            {"progres_interoperabilityreferralid": REF2, "progres_interoperabilityreferralstatus": 125080002,
             "progres_interoperabiltyreferralrejectionreasonname": "Individual Not Found",
             "progres_interoperabilityreferralrejectionomment": "No match in proGres",
             "progres_offlineid": "case-0002", "progres_orgreferralid": "svc-0002"}
        ]
    })
}

/// One SHP-2748 record.
pub fn transfer_record(ext: &str, lp: &str, status: &str) -> Value {
    json!({"ExternalId": ext, "Attachments": [], "Fields": [
        {"Name": "progres_lpinterventionid", "Value": lp},
        {"Name": "progres_businessunit", "Value": BU},
        {"Name": "progres_primerotransferstatus", "Value": status},
        {"Name": "progres_primerotransferstatusdate", "Value": "2026-11-30"}
    ]})
}

/// One SHP-2731 record.
pub fn incoming_record(case_id: &str, service_id: &str, sex: &str) -> Value {
    json!({"ExternalId": case_id, "ExternalGUID": "0b8f6a53-3a3f-4c1e-9a59-6d1f6f2f0c21", "Fields": [
        {"Name": "progres_externalguid", "Value": "0b8f6a53-3a3f-4c1e-9a59-6d1f6f2f0c21"},
        {"Name": "progres_externalid", "Value": case_id},
        {"Name": "progres_businessunit", "Value": BU},
        {"Name": "progres_organizationfrom", "Value": "c00582a6-d8f6-f011-8406-6045bd8ea5fb"},
        {"Name": "progres_orgreferredby", "Value": "Primero CP"},
        {"Name": "progres_orgreferralid", "Value": service_id},
        {"Name": "progres_referraldate", "Value": "2026-11-29"},
        {"Name": "progres_requestedservice", "Value": "f98e1516-0406-e611-80d9-00155d34051a"},
        {"Name": "progres_spneedcategory", "Value": null},
        {"Name": "progres_reasonforreferral", "Value": "Primero referral"},
        {"Name": "progres_pocfirstname", "Value": "Nyaluak"},
        {"Name": "progres_poclastname", "Value": "Chuol"},
        {"Name": "progres_pocdateofbirth", "Value": "2014-05-01"},
        {"Name": "progres_pocsex", "Value": sex},
        {"Name": "progres_offlineid", "Value": case_id}
    ]})
}

pub fn is_guid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}

/// The `Data` rows of a retrieval answer (none for "No Data Available").
pub fn rows(v: &Value) -> Vec<Value> {
    v["Data"].as_array().cloned().unwrap_or_default()
}

/// The LP intervention `lp` as the simulator holds it.
pub fn stored_intervention(s: &Sim, lp: &str) -> Value {
    s.sim.state_json()["interventions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["progres_lpinterventionid"] == lp)
        .cloned()
        .unwrap_or_else(|| panic!("intervention {lp} in the simulator"))
}
