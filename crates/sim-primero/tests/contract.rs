//! One test per item of the Primero "Simulator contract" (primero-api.md, items 1-27),
//! exercised over real HTTP against a freshly spawned simulator.

mod common;

use common::*;
use pp_sim_primero::{Options, DEFAULT_PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

fn login_body(user: &str, pw: &str) -> Value {
    json!({"user": {"user_name": user, "password": pw}})
}

async fn login(t: &T, user: &str, pw: &str) -> R {
    send(
        t.http
            .post(t.url("/api/v2/tokens"))
            .json(&login_body(user, pw)),
    )
    .await
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// The attributes (lower-cased name, value) of the `Set-Cookie` header that sets `name`.
fn cookie_attrs(r: &R, name: &str) -> Vec<(String, String)> {
    let prefix = format!("{name}=");
    let header = r
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no Set-Cookie for {name}"));
    header
        .split(';')
        .skip(1)
        .map(|a| match a.trim().split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), v.to_string()),
            None => (a.trim().to_ascii_lowercase(), String::new()),
        })
        .collect()
}

/// The claims of a JWT (its middle part, base64url without padding).
fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Asserts a legacy JWT lives 3600 s from now: `exp - iat == 3600`, `iat` is now.
fn assert_jwt_lives_an_hour(token: &str) {
    let claims = jwt_claims(token);
    let iat = claims["iat"].as_i64().expect("iat");
    let exp = claims["exp"].as_i64().expect("exp");
    assert_eq!(exp - iat, 3600, "JWT lifetime: {claims}");
    let now = chrono::Utc::now().timestamp();
    assert!((iat - now).abs() <= 5, "iat {iat} is now ({now})");
}

#[tokio::test]
async fn contract_01_login_returns_user_and_session_cookie_or_legacy_jwt() {
    let t = start().await;
    let r = login(&t, "  OpenFn_Integration ", DEFAULT_PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = r.json();
    assert_eq!(keys(&b), vec!["group_permission", "id", "user_name"]);
    assert!(b["id"].is_i64(), "integer id");
    assert_eq!(b["id"], json!(1));
    assert_eq!(b["user_name"], "openfn_integration");
    assert_eq!(b["group_permission"], "all");
    assert!(b.get("token").is_none(), "v2.11+ issues no token");
    assert!(r.headers.get("authorization").is_none(), "no Bearer header");
    let sid = r.cookie("_app_session").expect("session cookie");
    // Default configuration: the session cookie expires after 60 min.
    let attrs = cookie_attrs(&r, "_app_session");
    assert!(
        attrs.contains(&("max-age".to_string(), "3600".to_string())),
        "{attrs:?}"
    );
    let r = send(
        t.http
            .get(t.url("/api/v2/cases"))
            .header("Cookie", format!("_app_session={sid}")),
    )
    .await;
    assert_eq!(r.status, 200, "session cookie authenticates");

    let legacy = start_with(Options {
        legacy_jwt: true,
        ..Options::default()
    })
    .await;
    let r = login(&legacy, "openfn_integration", DEFAULT_PASSWORD).await;
    assert_eq!(r.status, 200);
    let b = r.json();
    assert_eq!(b["id"], json!(1));
    assert_eq!(b["user_name"], "openfn_integration");
    let token = b["token"].as_str().expect("token").to_string();
    assert_eq!(token.split('.').count(), 3, "JWT shape");
    // Default configuration: the JWT is valid 3600 s.
    assert_jwt_lives_an_hour(&token);
    assert_eq!(
        r.headers.get("authorization").unwrap().to_str().unwrap(),
        format!("Bearer {token}")
    );
    let r = send(
        legacy
            .http
            .get(legacy.url("/api/v2/cases"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(r.status, 200, "Bearer authenticates in legacy mode");
    // Posting again with a valid Bearer refreshes; the old token stays valid.
    let r = send(
        legacy
            .http
            .post(legacy.url("/api/v2/tokens"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(r.status, 200);
    let refreshed = r.json()["token"].as_str().unwrap().to_string();
    assert_ne!(refreshed, token);
    assert_jwt_lives_an_hour(&refreshed);
    let r = send(
        legacy
            .http
            .get(legacy.url("/api/v2/cases"))
            .bearer_auth(&refreshed),
    )
    .await;
    assert_eq!(r.status, 200, "the refreshed token authenticates");
    let r = send(
        legacy
            .http
            .get(legacy.url("/api/v2/cases"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn contract_02_bad_password_lockout_and_login_throttle() {
    let t = start().await;
    for i in 1..=5 {
        let r = login(&t, "cw_john", "wrong").await;
        assert_eq!(r.status, 401, "attempt {i}");
        assert_eq!(r.json(), json!({"error": "Invalid User name or password."}));
        assert!(r.headers.get("www-authenticate").is_some());
    }
    let r = login(&t, "cw_john", "wrong").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"error": "Your account is locked."}));
    // Locked even with the right password (Basic is not a login POST, so no throttle).
    let r = t.get_as("cw_john", "/api/v2/cases").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "Your account is locked.");
    // 7th login POST for this user_name inside 60 s -> 429.
    let r = login(&t, "CW_JOHN", DEFAULT_PASSWORD).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.text, "Retry later");
    // Other users are unaffected.
    assert_eq!(login(&t, "cw_amina", DEFAULT_PASSWORD).await.status, 200);
    // The default configuration locks for 30 min and throttles 6 login POSTs per 60 s.
    let o = t.ctl(Method::GET, "/_sim/options", None).await.json();
    assert_eq!(o["lockout_attempts"], 6);
    assert_eq!(o["lockout_secs"], 1800);
    assert_eq!(o["login_throttle_limit"], 6);
    assert_eq!(o["login_throttle_window_secs"], 60);
}

#[tokio::test]
async fn contract_02_throttle_counts_every_login_post_inside_the_window() {
    let t = start_with(Options {
        login_throttle_window_secs: 1,
        ..Options::default()
    })
    .await;
    // Successful logins count too: six pass, the seventh inside the window is refused.
    for i in 1..=6 {
        let r = login(&t, "unhcr_cw", DEFAULT_PASSWORD).await;
        assert_eq!(r.status, 200, "login {i}");
    }
    let r = login(&t, " UNHCR_cw", DEFAULT_PASSWORD).await;
    assert_eq!(
        r.status, 429,
        "same user_name after stripping and lower-casing"
    );
    assert_eq!(r.text, "Retry later");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        login(&t, "unhcr_cw", DEFAULT_PASSWORD).await.status,
        200,
        "a new window"
    );
}

#[tokio::test]
async fn contract_02_lock_expires_after_lockout_period() {
    let t = start_with(Options {
        lockout_secs: 1,
        login_throttle_limit: 100,
        ..Options::default()
    })
    .await;
    for _ in 0..6 {
        login(&t, "cw_amina", "nope").await;
    }
    let r = login(&t, "cw_amina", DEFAULT_PASSWORD).await;
    assert_eq!(r.status, 401, "locked even with the right password");
    assert_eq!(r.json(), json!({"error": "Your account is locked."}));
    assert_eq!(
        r.headers.get("www-authenticate").unwrap(),
        "Bearer realm=\"Primero\" charset=\"UTF8\""
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(login(&t, "cw_amina", DEFAULT_PASSWORD).await.status, 200);
}

#[tokio::test]
async fn contract_03_basic_everywhere_and_401_for_missing_or_invalid_credentials() {
    let t = start().await;
    let case = t.create_case(json!({"name_first": "Achol"})).await;
    let id = case["id"].as_str().unwrap();
    for path in [
        "/api/v2/cases".to_string(),
        format!("/api/v2/cases/{id}"),
        format!("/api/v2/cases/{id}/referrals"),
        "/api/v2/users".to_string(),
    ] {
        assert_eq!(t.get(&path).await.status, 200, "{path}");
        let r = send(t.http.get(t.url(&path))).await;
        assert_eq!(r.status, 401, "{path} without credentials");
        assert!(r.json()["error"].is_string());
        assert_eq!(
            r.headers.get("www-authenticate").unwrap(),
            "Bearer realm=\"Primero\" charset=\"UTF8\""
        );
    }
    assert_eq!(
        t.get("/api/v2/users/refer-to?record_type=case")
            .await
            .status,
        200
    );
    // Every write endpoint refuses a call without credentials and changes nothing.
    let r = t
        .post(
            &format!("/api/v2/cases/{id}/referrals"),
            json!({"data": {"transitioned_to": "unhcr_cw"}}),
        )
        .await;
    assert_eq!(r.status, 200, "Basic on POST referrals: {}", r.text);
    let rid = r.json()["data"]["id"].as_str().unwrap().to_string();
    let before = t.get_case(id).await;
    let calls = [
        (
            Method::POST,
            "/api/v2/cases".to_string(),
            json!({"data": {"module_id": "primeromodule-cp"}}),
        ),
        (
            Method::PATCH,
            format!("/api/v2/cases/{id}"),
            json!({"data": {"name_first": "X"}}),
        ),
        (
            Method::POST,
            format!("/api/v2/cases/{id}/referrals"),
            json!({"data": {"transitioned_to": "unhcr_cw"}}),
        ),
        (
            Method::PATCH,
            format!("/api/v2/cases/{id}/referrals/{rid}"),
            json!({"data": {"status": "accepted"}}),
        ),
        (
            Method::DELETE,
            format!("/api/v2/cases/{id}/referrals/{rid}"),
            json!({}),
        ),
        (
            Method::POST,
            "/api/v2/cases/referrals".to_string(),
            json!({"data": {"ids": [id], "transitioned_to": "unhcr_cw"}}),
        ),
        (Method::GET, "/api/v2/users/refer-to".to_string(), json!({})),
    ];
    for (method, path, body) in calls {
        let r = send(t.http.request(method.clone(), t.url(&path)).json(&body)).await;
        assert_eq!(r.status, 401, "{method} {path} without credentials");
        assert_eq!(keys(&r.json()), vec!["error"], "{method} {path}");
        assert!(r.json()["error"].is_string());
        assert!(r.headers.get("www-authenticate").is_some());
    }
    assert_eq!(t.get_case(id).await, before, "case untouched");
    assert_eq!(
        t.get("/api/v2/cases").await.json()["metadata"]["total"],
        1,
        "no case created"
    );
    let refs = t.get(&format!("/api/v2/cases/{id}/referrals")).await.json();
    let refs = refs["data"].as_array().unwrap();
    assert_eq!(refs.len(), 1, "no referral created");
    assert_eq!(refs[0]["status"], "in_progress", "referral untouched");

    let r = send(
        t.http
            .get(t.url("/api/v2/cases"))
            .basic_auth("openfn_integration", Some("bad")),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"error": "Invalid User name or password."}));
    // v2.11+: a Bearer (e.g. the adaptor's "Bearer undefined") is refused.
    let r = send(
        t.http
            .get(t.url("/api/v2/cases"))
            .header("Authorization", "Bearer undefined"),
    )
    .await;
    assert_eq!(r.status, 401);

    let legacy = start_with(Options {
        legacy_jwt: true,
        jwt_ttl_secs: 1,
        ..Options::default()
    })
    .await;
    let r = send(
        legacy
            .http
            .get(legacy.url("/api/v2/cases"))
            .bearer_auth("garbage.token.value"),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(keys(&r.json()), vec!["error"]);
    assert!(r.json()["error"].is_string());
    let token = login(&legacy, "openfn_integration", DEFAULT_PASSWORD)
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = send(
        legacy
            .http
            .get(legacy.url("/api/v2/cases"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(r.status, 401, "expired JWT");
    assert_eq!(keys(&r.json()), vec!["error"]);
    assert!(r.json()["error"].is_string());
    assert!(r.headers.get("www-authenticate").is_some());
    assert_eq!(
        legacy.get("/api/v2/cases").await.status,
        200,
        "Basic in legacy"
    );
}

#[tokio::test]
async fn contract_04_cookie_calls_need_csrf_token_basic_does_not() {
    let t = start().await;
    let r = login(&t, "openfn_integration", DEFAULT_PASSWORD).await;
    let sid = r.cookie("_app_session").unwrap();
    let csrf = r.cookie("CSRF-TOKEN").expect("CSRF-TOKEN cookie on login");
    let body = json!({"data": {"module_id": "primeromodule-cp", "name_first": "Deng"}});
    let cookie = format!("_app_session={sid}; CSRF-TOKEN={csrf}");
    let r = send(
        t.http
            .post(t.url("/api/v2/cases"))
            .header("Cookie", &cookie)
            .json(&body),
    )
    .await;
    assert_eq!(r.status, 403);
    let e = r.json();
    assert_eq!(keys(&e), vec!["errors"]);
    assert_eq!(e["errors"].as_array().unwrap().len(), 1);
    assert_eq!(e["errors"][0]["status"], 403);
    assert_eq!(e["errors"][0]["resource"], "/api/v2/cases");
    assert!(e["errors"][0]["message"].is_string());
    let r = send(
        t.http
            .post(t.url("/api/v2/cases"))
            .header("Cookie", &cookie)
            .header("X-CSRF-Token", "not-the-token")
            .json(&body),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["errors"][0]["status"], 403);
    assert_eq!(
        t.get("/api/v2/cases").await.json()["metadata"]["total"],
        0,
        "refused POSTs create nothing"
    );
    // PATCH and DELETE are non-GET calls too.
    let cid = t.create_case(json!({"name_first": "Akol"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let case = t.get_case(&cid).await;
    let r = send(
        t.http
            .patch(t.url(&format!("/api/v2/cases/{cid}")))
            .header("Cookie", &cookie)
            .json(&json!({"data": {"name_first": "Changed"}})),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["errors"][0]["resource"],
        format!("/api/v2/cases/{cid}")
    );
    assert_eq!(
        t.get_case(&cid).await,
        case,
        "refused PATCH changes nothing"
    );
    let rid = t
        .post(
            &format!("/api/v2/cases/{cid}/referrals"),
            json!({"data": {"transitioned_to": "unhcr_cw"}}),
        )
        .await
        .json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = send(
        t.http
            .delete(t.url(&format!("/api/v2/cases/{cid}/referrals/{rid}")))
            .header("Cookie", &cookie),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["errors"][0]["status"], 403);
    let refs = t
        .get(&format!("/api/v2/cases/{cid}/referrals"))
        .await
        .json();
    assert_eq!(
        refs["data"][0]["status"], "in_progress",
        "refused DELETE revokes nothing"
    );
    // Basic with the session cookie but no X-CSRF-Token is still exempt.
    let r = send(
        t.req(Method::PATCH, &format!("/api/v2/cases/{cid}"))
            .header("Cookie", &cookie)
            .json(&json!({"data": {"name_first": "Akol B"}})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(t.get_case(&cid).await["name_first"], "Akol B");
    let r = send(t.http.get(t.url("/api/v2/cases")).header("Cookie", &cookie)).await;
    assert_eq!(r.status, 200, "GET needs no CSRF token");
    assert_eq!(r.cookie("CSRF-TOKEN").as_deref(), Some(csrf.as_str()));
    let r = send(
        t.http
            .post(t.url("/api/v2/cases"))
            .header("Cookie", &cookie)
            .header("X-CSRF-Token", &csrf)
            .json(&body),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        t.post("/api/v2/cases", body.clone()).await.status,
        200,
        "Basic is exempt"
    );

    let off = start_with(Options {
        csrf_protection: false,
        ..Options::default()
    })
    .await;
    let sid = login(&off, "openfn_integration", DEFAULT_PASSWORD)
        .await
        .cookie("_app_session")
        .unwrap();
    let r = send(
        off.http
            .post(off.url("/api/v2/cases"))
            .header("Cookie", format!("_app_session={sid}"))
            .json(&body),
    )
    .await;
    assert_eq!(r.status, 200);
}

fn scenario(count: usize) -> Value {
    pp_sim_primero::scenario::generate(&pp_sim_primero::ScenarioOptions {
        count,
        seed: 7,
        anchor: Some("2026-11-01T12:00:00Z".parse().unwrap()),
        ..Default::default()
    })
}

#[tokio::test]
async fn contract_05_paging_defaults_clamp_and_created_at_desc() {
    let t = start().await;
    t.seed(scenario(45)).await;
    let b = t.get("/api/v2/cases").await.json();
    assert_eq!(b["metadata"], json!({"total": 45, "per": 20, "page": 1}));
    let data = b["data"].as_array().unwrap();
    assert_eq!(data.len(), 20);
    let created: Vec<&str> = data
        .iter()
        .map(|c| c["created_at"].as_str().unwrap())
        .collect();
    let mut sorted = created.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(created, sorted, "created_at desc");
    let b = t.get("/api/v2/cases?page=3").await.json();
    assert_eq!(b["data"].as_array().unwrap().len(), 5);
    assert_eq!(b["metadata"]["page"], 3);
    let b = t.get("/api/v2/cases?per=2000").await.json();
    assert_eq!(b["metadata"]["per"], 1000);
    assert_eq!(b["data"].as_array().unwrap().len(), 45);
    let b = t
        .get("/api/v2/cases?order_by=created_at&order=asc&per=5")
        .await
        .json();
    let created: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["created_at"].as_str().unwrap())
        .collect();
    let mut sorted = created.clone();
    sorted.sort();
    assert_eq!(created, sorted);
    // Pages do not overlap and cover everything.
    let mut ids = std::collections::BTreeSet::new();
    for p in 1..=3 {
        for c in t.get(&format!("/api/v2/cases?page={p}")).await.json()["data"]
            .as_array()
            .unwrap()
        {
            ids.insert(c["id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(ids.len(), 45);
}

#[tokio::test]
async fn contract_05_per_above_1000_serves_1000_records() {
    let t = start().await;
    t.seed(scenario(1003)).await;
    let b = t.get("/api/v2/cases?per=2000").await.json();
    assert_eq!(
        b["metadata"],
        json!({"total": 1003, "per": 1000, "page": 1})
    );
    let first: Vec<String> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(first.len(), 1000, "served as 1000");
    let b = t.get("/api/v2/cases?per=2000&page=2").await.json();
    assert_eq!(
        b["metadata"],
        json!({"total": 1003, "per": 1000, "page": 2})
    );
    let rest = b["data"].as_array().unwrap();
    assert_eq!(
        rest.len(),
        3,
        "page 2 holds the remainder of 1000-record pages"
    );
    assert!(rest
        .iter()
        .all(|c| !first.contains(&c["id"].as_str().unwrap().to_string())));
}

#[tokio::test]
async fn contract_06_unknown_params_are_ignored() {
    let t = start().await;
    t.seed(scenario(12)).await;
    let unfiltered = t.get("/api/v2/cases").await.json();
    let all = unfiltered["metadata"]["total"].clone();
    for q in [
        "remote=true",
        "unhcr_individul_no=945-00000000",
        "remote=true&bogus[0]=x",
        // Not readable as a filter: a subform and a field this instance does not configure.
        "services_section=x",
        "camp_d13377e=kule",
    ] {
        let r = t.get(&format!("/api/v2/cases?{q}")).await;
        assert_eq!(r.status, 200, "{q}");
        let b = r.json();
        assert_eq!(b["metadata"]["total"], all, "{q}");
        assert_eq!(b["data"], unfiltered["data"], "{q}: the unfiltered list");
    }
    assert_eq!(all, json!(12));
    // Next to a real filter, the ignored param changes nothing (upsertCase's lookup).
    let one = &unfiltered["data"][3];
    let no = one["unhcr_individual_no"]
        .as_str()
        .expect("scenario number");
    let b = t
        .get(&format!(
            "/api/v2/cases?remote=true&unhcr_individual_no={no}"
        ))
        .await
        .json();
    assert_eq!(b["metadata"]["total"], 1);
    assert_eq!(b["data"][0]["id"], one["id"]);
}

fn seeded_case(id: &str, last: &str, extra: Value) -> Value {
    let mut c = json!({"id": id, "module_id": "primeromodule-cp", "owned_by": "cw_amina",
        "created_at": "2024-01-01T09:00:00.000Z", "last_updated_at": last});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[tokio::test]
async fn contract_07_time_ranges_lists_and_any_of() {
    let t = start().await;
    let a = "00000000-0000-4000-8000-00000000000a";
    let b = "00000000-0000-4000-8000-00000000000b";
    let c = "00000000-0000-4000-8000-00000000000c";
    t.seed(json!({"cases": [
        seeded_case(a, "2024-01-01T10:00:00.100Z", json!({"sex": "male", "age": 5})),
        seeded_case(b, "2024-01-01T10:00:00.900Z", json!({"sex": "female", "age": 9,
            "associated_user_names": ["cw_amina", "cw_john"]})),
        seeded_case(c, "2024-01-01T10:00:01.000Z", json!({"sex": "other_b25f252", "age": 12})),
    ]}))
    .await;
    let ids = |v: Value| -> Vec<String> {
        let mut x: Vec<String> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect();
        x.sort();
        x
    };
    // Second precision, inclusive: .950 is floored to :00 and so includes .100 and .900.
    let r = t
        .get("/api/v2/cases?last_updated_at=2024-01-01T10:00:00.950Z..")
        .await;
    assert_eq!(ids(r.json()), vec![a, b, c]);
    let r = t
        .get("/api/v2/cases?last_updated_at=2024-01-01T10:00:01Z..")
        .await;
    assert_eq!(ids(r.json()), vec![c]);
    let r = t
        .get("/api/v2/cases?last_updated_at=2024-01-01T10:00:00Z..2024-01-01T10:00:00Z")
        .await;
    assert_eq!(ids(r.json()), vec![a, b]);
    let r = t.get("/api/v2/cases?sex=male,female").await;
    assert_eq!(ids(r.json()), vec![a, b]);
    let r = t.get("/api/v2/cases?age=6..12").await;
    assert_eq!(ids(r.json()), vec![b, c]);
    let r = t
        .get("/api/v2/cases?associated_user_names[0]=cw_john")
        .await;
    assert_eq!(ids(r.json()), vec![b]);
    let r = t
        .get("/api/v2/cases?associated_user_names%5B0%5D=cw_john&last_updated_at=2024-01-01T10:00:01Z..")
        .await;
    assert_eq!(ids(r.json()), Vec::<String>::new(), "params are ANDed");
}

/// Ids of a case list, sorted, after checking `metadata.total` agrees with them.
fn sorted_ids(b: &Value) -> Vec<String> {
    let mut x: Vec<String> = b["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data: {b}"))
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    x.sort();
    assert_eq!(b["metadata"]["total"], json!(x.len()), "total vs data");
    x
}

#[tokio::test]
async fn contract_07_indexed_lists_of_two_and_three_with_a_time_range() {
    let t = start().await;
    let a = "00000000-0000-4000-8000-0000000000a7";
    let b = "00000000-0000-4000-8000-0000000000b7";
    let c = "00000000-0000-4000-8000-0000000000c7";
    let d = "00000000-0000-4000-8000-0000000000d7";
    let e = "00000000-0000-4000-8000-0000000000e7";
    let f = "00000000-0000-4000-8000-0000000000f7";
    t.seed(json!({"cases": [
        seeded_case(a, "2024-01-01T10:00:00.100Z",
            json!({"associated_user_names": ["cw_amina"], "sex": "male"})),
        seeded_case(b, "2024-01-01T10:00:00.900Z",
            json!({"associated_user_names": ["cw_amina", "cw_john"]})),
        seeded_case(c, "2024-01-01T10:00:01.000Z",
            json!({"associated_user_names": ["cw_john"], "sex": "female"})),
        seeded_case(d, "2024-01-01T10:00:02.500Z",
            json!({"associated_user_names": ["unhcr_cw"], "sex": "other_b25f252"})),
        seeded_case(e, "2024-01-01T09:59:59.999Z",
            json!({"associated_user_names": ["cw_john"], "sex": "female"})),
        seeded_case(f, "2024-01-01T10:00:03.000Z",
            json!({"associated_user_names": ["cw_amina"], "sex": "male"})),
    ]}))
    .await;
    let q = |query: &'static str| {
        let t = &t;
        async move {
            let r = t.get(&format!("/api/v2/cases?{query}")).await;
            assert_eq!(r.status, 200, "{query}: {}", r.text);
            sorted_ids(&r.json())
        }
    };
    let set = |v: &[&str]| {
        let mut x: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        x.sort();
        x
    };
    // Two elements: any of them.
    assert_eq!(
        q("associated_user_names[0]=cw_amina&associated_user_names[1]=cw_john").await,
        set(&[a, b, c, e, f])
    );
    // ... ANDed with an open time range (second precision, inclusive: .500 floors to :00).
    let two_since = set(&[a, b, c, f]);
    assert_eq!(
        q(
            "associated_user_names[0]=cw_amina&associated_user_names[1]=cw_john\
           &last_updated_at=2024-01-01T10:00:00.500Z.."
        )
        .await,
        two_since
    );
    // Index order and percent-encoded brackets do not matter; `x,y` is the same any-of.
    assert_eq!(
        q("last_updated_at=2024-01-01T10:00:00.500Z..\
           &associated_user_names%5B1%5D=cw_john&associated_user_names%5B0%5D=cw_amina")
        .await,
        two_since
    );
    assert_eq!(
        q("associated_user_names=cw_amina,cw_john&last_updated_at=2024-01-01T10:00:00.500Z..")
            .await,
        two_since
    );
    // Three elements, one matching nothing, with a closed range: E is out of the list,
    // F (:03) after the range, D's :02.500 floors to the inclusive upper bound :02.
    assert_eq!(
        q(
            "associated_user_names[0]=cw_amina&associated_user_names[1]=nobody_at_all\
           &associated_user_names[2]=unhcr_cw\
           &last_updated_at=2024-01-01T10:00:00Z..2024-01-01T10:00:02Z"
        )
        .await,
        set(&[a, b, d])
    );
    assert_eq!(
        q(
            "associated_user_names[0]=nobody_at_all&associated_user_names[1]=cw_john\
           &associated_user_names[2]=unhcr_cw&last_updated_at=2024-01-01T10:00:01Z.."
        )
        .await,
        set(&[c, d])
    );
    // Only elements matching nothing: nothing.
    assert_eq!(
        q(
            "associated_user_names[0]=nobody_at_all&associated_user_names[1]=no_one\
           &last_updated_at=2024-01-01T00:00:00Z.."
        )
        .await,
        Vec::<String>::new()
    );
    // A scalar field as a list: two and three (one unused) values.
    assert_eq!(
        q("sex[0]=female&sex[1]=other_b25f252&last_updated_at=2024-01-01T10:00:01Z..").await,
        set(&[c, d])
    );
    assert_eq!(
        q("sex[0]=male&sex[1]=female&sex[2]=unknown_4b34795\
           &last_updated_at=2024-01-01T10:00:00Z..2024-01-01T10:00:02Z")
        .await,
        set(&[a, c])
    );
}

#[tokio::test]
async fn contract_08_identifier_filters_are_exact_and_case_sensitive() {
    let t = start().await;
    let a = "00000000-0000-4000-8000-0000000000a1";
    let b = "00000000-0000-4000-8000-0000000000b2";
    t.seed(json!({"cases": [
        seeded_case(a, "2024-01-01T10:00:00.000Z", json!({"unhcr_individual_no": "945-00012345",
            "case_id": "CASE-abc", "unhcr_id_no": "945-C00123", "national_id_no": "0004567"})),
        seeded_case(b, "2024-01-01T10:00:00.000Z", json!({"unhcr_individual_no": "945-12345",
            "case_id": "case-ABC", "national_id_no": "4567x"})),
    ]}))
    .await;
    let total = |q: &str| {
        let q = q.to_string();
        let t = &t;
        async move { t.get(&format!("/api/v2/cases?{q}")).await.json()["metadata"]["total"].clone() }
    };
    assert_eq!(total("unhcr_individual_no=945-00012345").await, 1);
    assert_eq!(total("unhcr_individual_no=945-12345").await, 1);
    assert_eq!(total("unhcr_individual_no=945-0012345").await, 0);
    assert_eq!(total("case_id=CASE-abc").await, 1);
    assert_eq!(total("case_id=case-abc").await, 0);
    assert_eq!(total("unhcr_id_no=945-C00123").await, 1);
    assert_eq!(total("unhcr_id_no=945-c00123").await, 0);
    // Digits only: still a string, leading zeros kept (not read as the integer 4567).
    assert_eq!(total("national_id_no=0004567").await, 1);
    assert_eq!(total("national_id_no=4567").await, 0);
    assert_eq!(total("national_id_no=04567").await, 0);
    let r = t
        .get("/api/v2/cases?unhcr_individual_no=945-00012345")
        .await
        .json();
    assert_eq!(r["data"][0]["id"], a);
    // The server-made identifiers are identifier filters too: exact and case-sensitive.
    let case_a = t.get(&format!("/api/v2/cases/{a}")).await.json();
    for field in ["short_id", "case_id_display"] {
        let value = case_a["data"][field].as_str().unwrap().to_owned();
        assert!(
            value.chars().any(|c| c.is_ascii_alphabetic()),
            "{field}: {value}"
        );
        let r = t
            .get(&format!("/api/v2/cases?{field}={value}"))
            .await
            .json();
        assert_eq!(r["metadata"]["total"], 1, "{field}");
        assert_eq!(r["data"][0]["id"], a, "{field}");
        let flipped: String = value
            .chars()
            .map(|c| {
                if c.is_ascii_uppercase() {
                    c.to_ascii_lowercase()
                } else {
                    c.to_ascii_uppercase()
                }
            })
            .collect();
        assert_eq!(total(&format!("{field}={flipped}")).await, 0, "{field}");
        assert_eq!(
            total(&format!("{field}={}", &value[1..])).await,
            0,
            "{field}"
        );
    }
}

#[tokio::test]
async fn contract_09_query_matches_identifier_substrings_case_insensitively() {
    let t = start().await;
    let a = "00000000-0000-4000-8000-0000000000a1";
    t.seed(json!({"cases": [
        seeded_case(a, "2024-01-01T10:00:00.000Z", json!({"unhcr_id_no": "945-C00123", "name": "Nyakuoth Gatkuoth"})),
        seeded_case("00000000-0000-4000-8000-0000000000b2", "2024-01-01T10:00:00.000Z", json!({"unhcr_id_no": "945-C00999"})),
    ]}))
    .await;
    let r = t.get("/api/v2/cases?query=c00123").await.json();
    assert_eq!(r["metadata"]["total"], 1);
    assert_eq!(r["data"][0]["id"], a);
    assert_eq!(
        t.get("/api/v2/cases?query=945-c").await.json()["metadata"]["total"],
        2
    );
    assert_eq!(
        t.get("/api/v2/cases?query=nyakuoth").await.json()["metadata"]["total"],
        0,
        "names are not identifiers"
    );
}

#[tokio::test]
async fn contract_10_fields_selects_returned_keys() {
    let t = start().await;
    let c = t
        .create_case(json!({"name_first": "Bol", "sex": "male", "age": 7}))
        .await;
    let r = t.get("/api/v2/cases?fields=sex,age").await.json();
    assert_eq!(
        keys(&r["data"][0]),
        vec!["age", "enabled", "id", "last_updated_at", "sex"]
    );
    let r = t
        .get(&format!(
            "/api/v2/cases/{}?fields=name_first",
            c["id"].as_str().unwrap()
        ))
        .await
        .json();
    assert_eq!(
        keys(&r["data"]),
        vec!["enabled", "id", "last_updated_at", "name_first"]
    );
}

#[tokio::test]
async fn contract_11_case_get_404_and_403_envelopes() {
    let t = start().await;
    let r = t.get("/api/v2/cases/not-a-uuid").await;
    assert_eq!(r.status, 404);
    let e = &r.json()["errors"][0];
    assert_eq!(e["status"], 404);
    assert_eq!(e["resource"], "/api/v2/cases/not-a-uuid");
    assert_eq!(e["message"], "Not Found");
    assert!(e.get("detail").is_some());
    assert_eq!(keys(e), vec!["detail", "message", "resource", "status"]);
    let r = t
        .get("/api/v2/cases/11111111-2222-4333-8444-555555555555")
        .await;
    assert_eq!(r.status, 404);
    let b = r.json();
    assert_eq!(keys(&b), vec!["errors"]);
    let e = &b["errors"][0];
    assert_eq!(keys(e), vec!["detail", "message", "resource", "status"]);
    assert_eq!(e["status"], 404);
    assert_eq!(
        e["resource"],
        "/api/v2/cases/11111111-2222-4333-8444-555555555555"
    );
    assert_eq!(e["message"], "Not Found");
    let r = t
        .post_as(
            "cw_john",
            "/api/v2/cases",
            json!({"data": {"module_id": "primeromodule-cp", "name_first": "Riek"}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let id = r.json()["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["data"]["owned_by"], "cw_john");
    let r = t.get_as("cw_amina", &format!("/api/v2/cases/{id}")).await;
    assert_eq!(r.status, 403);
    let b = r.json();
    assert_eq!(keys(&b), vec!["errors"]);
    assert_eq!(b["errors"][0]["status"], 403);
    assert_eq!(b["errors"][0]["resource"], format!("/api/v2/cases/{id}"));
    assert_eq!(b["errors"][0]["message"], "Forbidden");
    assert_eq!(
        t.get_as("cw_john", &format!("/api/v2/cases/{id}"))
            .await
            .status,
        200
    );
    assert_eq!(
        t.get_as("cw_amina", "/api/v2/cases").await.json()["metadata"]["total"],
        0,
        "list is scoped too"
    );
}

#[tokio::test]
async fn contract_12_create_generates_fields_204_with_client_id_409_on_reuse() {
    let t = start().await;
    let r = t
        .post(
            "/api/v2/cases",
            json!({"data": {"module_id": "primeromodule-cp", "name_first": "Garang", "name_last": "Deng"}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let d = r.json()["data"].clone();
    let case_id = d["case_id"].as_str().unwrap();
    assert!(
        uuid::Uuid::parse_str(case_id).is_ok(),
        "case_id is a UUID: {case_id}"
    );
    assert_eq!(case_id.len(), 36, "hyphenated");
    assert_eq!(d["short_id"].as_str().unwrap(), &case_id[29..]);
    assert_eq!(d["case_id_display"], d["short_id"]);
    assert_eq!(d["enabled"], true);
    assert_eq!(d["status"], "open");
    assert_eq!(d["record_state"], true);
    assert_eq!(d["owned_by"], "openfn_integration");
    assert_eq!(d["created_by"], "openfn_integration");
    assert_eq!(d["name_first"], "Garang");
    assert_eq!(d["name"], "Garang Deng");
    assert_eq!(
        d["registration_date"],
        chrono::Utc::now().format("%Y-%m-%d").to_string()
    );
    assert!(is_ms_timestamp(&d["created_at"]));
    assert!(is_ms_timestamp(&d["last_updated_at"]));
    assert!(uuid::Uuid::parse_str(d["id"].as_str().unwrap()).is_ok());
    assert_eq!(d["id"].as_str().unwrap().len(), 36);
    assert_eq!(
        t.get_case(d["id"].as_str().unwrap()).await["name_first"],
        "Garang",
        "stored"
    );

    let r = t
        .post(
            "/api/v2/cases",
            json!({"data": {"module_id": "primeromodule-cp", "owned_by": "cw_amina"}}),
        )
        .await;
    assert_eq!(r.json()["data"]["owned_by"], "cw_amina");

    let cid = "7d0f7b43-2a64-4a3e-9a55-0c3c7c0d6a11";
    let r = t
        .post(
            "/api/v2/cases",
            json!({"data": {"id": cid, "module_id": "primeromodule-cp", "case_id": "CP-0001"}}),
        )
        .await;
    assert_eq!(r.status, 204);
    assert!(r.text.is_empty());
    assert_eq!(t.get_case(cid).await["case_id"], "CP-0001");
    let r = t
        .post(
            "/api/v2/cases",
            json!({"data": {"id": cid, "module_id": "primeromodule-cp"}}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["errors"][0]["message"],
        "Conflict: A record with this id already exists"
    );
    let r = t
        .post(
            "/api/v2/cases",
            json!({"data": {"module_id": "primeromodule-cp", "case_id": "CP-0001"}}),
        )
        .await;
    assert_eq!(r.status, 409);
    let e = r.json();
    assert_eq!(e["errors"][0]["status"], 409);
    assert_eq!(e["errors"][0]["resource"], "/api/v2/cases");
    // The unique index holds: still one case with that case_id, the first one.
    let b = t.get("/api/v2/cases?case_id=CP-0001").await.json();
    assert_eq!(b["metadata"]["total"], 1);
    assert_eq!(b["data"][0]["id"], cid);
    assert_eq!(t.get("/api/v2/cases").await.json()["metadata"]["total"], 3);
}

#[tokio::test]
async fn contract_13_unconfigured_fields_dropped_and_no_module_core_only() {
    let t = start().await;
    let d = t
        .create_case(
            json!({"name_first": "Tut", "favourite_colour": "blue", "camp_d13377e": "kule"}),
        )
        .await;
    assert_eq!(d["name_first"], "Tut");
    assert!(d.get("favourite_colour").is_none());
    assert!(d.get("camp_d13377e").is_none());
    let stored = t.get_case(d["id"].as_str().unwrap()).await;
    assert_eq!(stored["name_first"], "Tut");
    assert!(stored.get("favourite_colour").is_none(), "not stored");
    assert!(stored.get("camp_d13377e").is_none(), "not stored");
    let r = t
        .post(
            "/api/v2/cases",
            json!({"data": {"name_first": "Tut", "status": "closed", "sex": "male"}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let d = r.json()["data"].clone();
    assert!(d.get("name_first").is_none());
    assert!(d.get("sex").is_none());
    assert_eq!(d["status"], "closed");
    let stored = t.get_case(d["id"].as_str().unwrap()).await;
    assert!(stored.get("name_first").is_none(), "form field not stored");
    assert!(stored.get("sex").is_none(), "form field not stored");
    assert_eq!(stored["status"], "closed", "core field stored");
    let r = t
        .post(
            "/api/v2/cases",
            json!({"data": {"module_id": "primeromodule-unknown"}}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["errors"][0]["status"], 422);
}

#[tokio::test]
async fn contract_14_type_and_enum_errors_are_invalid_record_json_with_pointers() {
    let t = start().await;
    let cases = [
        (json!({"age": "18"}), vec!["/age"]),
        (
            json!({"date_of_birth": "2012-01-01T00:00:00Z"}),
            vec!["/date_of_birth"],
        ),
        (
            json!({"date_of_birth": "2012-02-30"}),
            vec!["/date_of_birth"],
        ),
        (json!({"sex": "boy"}), vec!["/sex"]),
        (json!({"estimated": null}), vec!["/estimated"]),
        (json!({"language": "language1"}), vec!["/language"]),
        (json!({"language": ["klingon"]}), vec!["/language"]),
        (
            json!({"services_section": [{"service_response_day_time": "2024-01-01"}]}),
            vec!["/services_section/0/service_response_day_time"],
        ),
        (
            json!({"services_section": [{"unique_id": "abc"}]}),
            vec!["/services_section/0/unique_id"],
        ),
        (
            json!({"services_section": [{"unique_id": null, "_destroy": "yes"}]}),
            vec!["/services_section/0/_destroy"],
        ),
        (json!({"age": 1.5, "sex": 3}), vec!["/age", "/sex"]),
    ];
    for (data, detail) in cases {
        let mut data = data;
        data["module_id"] = json!("primeromodule-cp");
        let r = t.post("/api/v2/cases", json!({ "data": data })).await;
        assert_eq!(r.status, 422, "{data}");
        assert_eq!(
            r.json(),
            json!({"errors": [{"status": 422, "resource": "/api/v2/cases",
                "detail": detail, "message": "Invalid Record JSON"}]})
        );
    }
    // Same rules on PATCH.
    let c = t.create_case(json!({"age": 4})).await;
    let r = t
        .patch(
            &format!("/api/v2/cases/{}", c["id"].as_str().unwrap()),
            json!({"data": {"age": "5"}}),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["errors"][0]["detail"], json!(["/age"]));
    // Unchecked selects (agency sources) accept any value.
    t.create_case(json!({"services_section": [{"service_implementing_agency": "SomeNGO"}]}))
        .await;
}

#[tokio::test]
async fn contract_15_timestamps_with_millis_and_dates_plain() {
    let t = start().await;
    let d = t
        .create_case(json!({"date_of_birth": "2015-04-03", "services_section": [
            {"service_response_day_time": "2024-03-01T10:00:00+03:00", "service_appointment_date": "2024-03-05"}]}))
        .await;
    assert!(is_ms_timestamp(&d["created_at"]));
    assert!(is_ms_timestamp(&d["last_updated_at"]));
    assert_eq!(d["date_of_birth"], "2015-04-03");
    let row = &d["services_section"][0];
    assert_eq!(row["service_response_day_time"], "2024-03-01T07:00:00.000Z");
    assert_eq!(row["service_appointment_date"], "2024-03-05");
    let r = t
        .post(
            &format!("/api/v2/cases/{}/referrals", d["id"].as_str().unwrap()),
            json!({"data": {"transitioned_to": "unhcr_cw"}}),
        )
        .await;
    assert!(is_ms_timestamp(&r.json()["data"]["created_at"]));
}

#[tokio::test]
async fn contract_16_patch_merge_rules() {
    let t = start().await;
    let d = t
        .create_case(json!({"name_first": "Nyabol", "name_last": "Kong", "language": ["language1", "language2"],
            "services_section": [
                {"service_type": "medical", "service_referral_notes": "first"},
                {"service_type": "legal_support", "service_referral_notes": "second"}]}))
        .await;
    let id = d["id"].as_str().unwrap().to_string();
    let rows = d["services_section"].as_array().unwrap().clone();
    let (u1, u2) = (
        rows[0]["unique_id"].as_str().unwrap().to_string(),
        rows[1]["unique_id"].as_str().unwrap().to_string(),
    );
    let path = format!("/api/v2/cases/{id}");
    let r = t
        .patch(
            &path,
            json!({"data": {"language": ["language3"], "name_last": null,
                "services_section": [{"unique_id": u2, "service_type": "shelter"}, {"service_type": "nutrition"}]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let c = t.get_case(&id).await;
    assert_eq!(c["name_first"], "Nyabol", "unsent keys kept");
    assert_eq!(c["name_last"], Value::Null, "null clears");
    assert_eq!(
        c["language"],
        json!(["language3"]),
        "string arrays replaced"
    );
    let rows = c["services_section"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["unique_id"], u1.as_str());
    assert_eq!(
        rows[0]["service_referral_notes"], "first",
        "untouched row kept"
    );
    assert_eq!(rows[1]["unique_id"], u2.as_str());
    assert_eq!(rows[1]["service_type"], "shelter", "matched row merged");
    assert_eq!(
        rows[1]["service_referral_notes"], "second",
        "merged row keeps keys"
    );
    assert_eq!(
        rows[2]["service_type"], "nutrition",
        "unmatched row appended"
    );
    let u3 = rows[2]["unique_id"].as_str().unwrap().to_string();
    assert_eq!(u3.len(), 36, "appended row gets a UUID");
    assert_eq!(&u3[14..15], "4", "v4 UUID");

    // [] is a no-op for subforms.
    let r = t
        .patch(&path, json!({"data": {"services_section": []}}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        t.get_case(&id).await["services_section"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // _destroy removes; a new row with a fresh unique_id is appended with it.
    let fresh = "3f1c2d4e-5b6a-4c7d-8e9f-0a1b2c3d4e5f";
    let r = t.patch(
        &path,
        json!({"data": {"services_section": [{"unique_id": u1, "_destroy": true}, {"unique_id": fresh, "service_type": "food"}]}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rows = t.get_case(&id).await["services_section"].clone();
    let uids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["unique_id"].as_str().unwrap())
        .collect();
    assert_eq!(uids, vec![u2.as_str(), u3.as_str(), fresh]);
    assert!(rows[0].get("_destroy").is_none());
    // [] clears a string array.
    t.patch(&path, json!({"data": {"language": []}})).await;
    assert_eq!(t.get_case(&id).await["language"], json!([]));
}

#[tokio::test]
async fn contract_17_patch_ignores_identity_fields() {
    let t = start().await;
    let d = t.create_case(json!({"name_first": "Ayen"})).await;
    let id = d["id"].as_str().unwrap().to_string();
    let r = t
        .patch(
            &format!("/api/v2/cases/{id}"),
            json!({"data": {"id": "9d0f7b43-2a64-4a3e-9a55-0c3c7c0d6a11", "case_id": "X", "case_id_display": "Y",
                "short_id": "Z", "unique_identifier": "W", "created_by": "cw_john", "name_first": "Ayen2"}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let c = t.get_case(&id).await;
    for k in [
        "case_id",
        "case_id_display",
        "short_id",
        "unique_identifier",
        "created_by",
    ] {
        assert_eq!(c[k], d[k], "{k} unchanged");
    }
    assert_eq!(c["id"], d["id"]);
    assert_eq!(c["name_first"], "Ayen2");
}

#[tokio::test]
async fn contract_18_patch_response_has_changed_keys_and_noop_bumps_last_updated_at() {
    let t = start().await;
    let d = t
        .create_case(json!({"name_first": "Abuk", "sex": "female", "services_section": [{"service_type": "food"}]}))
        .await;
    let id = d["id"].as_str().unwrap().to_string();
    let path = format!("/api/v2/cases/{id}");
    let r = t
        .patch(&path, json!({"data": {"name_first": "Abuk B"}}))
        .await;
    let b = r.json()["data"].clone();
    assert_eq!(
        keys(&b),
        vec!["enabled", "id", "last_updated_at", "name_first"]
    );
    let uid = d["services_section"][0]["unique_id"].clone();
    let r = t
        .patch(
            &path,
            json!({"data": {"services_section": [{"unique_id": uid, "service_provider": "Clinic"}]}}),
        )
        .await;
    let b = r.json()["data"].clone();
    assert_eq!(
        keys(&b),
        vec!["enabled", "id", "last_updated_at", "services_section"]
    );
    assert_eq!(b["id"], id.as_str());
    assert_eq!(b["enabled"], true);
    assert_eq!(
        b["services_section"][0]["service_type"], "food",
        "subform returned whole"
    );
    assert_eq!(b["services_section"][0]["unique_id"], uid);
    assert_eq!(b["services_section"][0]["service_provider"], "Clinic");
    assert!(b.get("sex").is_none());
    let mut last = b["last_updated_at"].as_str().unwrap().to_string();
    for _ in 0..15 {
        let r = t.patch(&path, json!({"data": {}})).await;
        assert_eq!(r.status, 200);
        let data = r.json()["data"].clone();
        assert_eq!(keys(&data), vec!["enabled", "id", "last_updated_at"]);
        let now = data["last_updated_at"].as_str().unwrap().to_string();
        assert!(now > last, "{now} > {last}");
        last = now;
    }
    // A PATCH sending an unchanged value is a no-op too.
    let r = t.patch(&path, json!({"data": {"sex": "female"}})).await;
    let data = r.json()["data"].clone();
    assert_eq!(keys(&data), vec!["enabled", "id", "last_updated_at"]);
    assert!(data["last_updated_at"].as_str().unwrap() > last.as_str());
    last = data["last_updated_at"].as_str().unwrap().to_string();
    assert_eq!(
        t.get_case(&id).await["last_updated_at"],
        last.as_str(),
        "the bump is saved"
    );
}

#[tokio::test]
async fn contract_19_referral_create_shape_and_case_bump() {
    let t = start().await;
    let d = t
        .create_case(json!({"services_section": [{"service_type": "medical"}]}))
        .await;
    let id = d["id"].as_str().unwrap();
    let uid = d["services_section"][0]["unique_id"].as_str().unwrap();
    let r = t
        .post(
            &format!("/api/v2/cases/{id}/referrals"),
            json!({"data": {"transitioned_to": "unhcr_cw", "service": "medical", "service_record_id": uid, "notes": "n"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let rf = r.json()["data"].clone();
    assert!(rf["id"].is_string(), "referral id");
    assert_eq!(rf["type"], "Referral");
    assert_eq!(rf["status"], "in_progress");
    assert_eq!(rf["record_type"], "case");
    assert_eq!(rf["record_id"], id);
    assert_eq!(rf["transitioned_by"], "openfn_integration");
    assert_eq!(rf["transitioned_to"], "unhcr_cw");
    assert_eq!(rf["remote"], false);
    assert!(is_ms_timestamp(&rf["created_at"]));
    assert!(
        rf.as_object().unwrap().values().all(|v| !v.is_null()),
        "nulls omitted"
    );
    let listed = t.get(&format!("/api/v2/cases/{id}/referrals")).await.json();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "stored");
    assert_eq!(listed["data"][0]["id"], rf["id"]);
    let c = t.get_case(id).await;
    assert!(c["last_updated_at"].as_str().unwrap() > d["last_updated_at"].as_str().unwrap());
    assert!(c["assigned_user_names"]
        .as_array()
        .unwrap()
        .contains(&json!("unhcr_cw")));
}

#[tokio::test]
async fn contract_20_referral_consent_and_receiver_validation() {
    let t = start().await;
    let no_consent = t
        .create_case(json!({"disclosure_other_orgs": false, "consent_for_services": true}))
        .await;
    let path = format!(
        "/api/v2/cases/{}/referrals",
        no_consent["id"].as_str().unwrap()
    );
    let r = t
        .post(&path, json!({"data": {"transitioned_to": "unhcr_cw"}}))
        .await;
    assert_eq!(r.status, 422);
    let e = &r.json()["errors"][0];
    assert_eq!(e["detail"], "consent");
    assert_eq!(e["status"], 422);
    assert_eq!(e["resource"], path.as_str());
    assert!(e["message"].is_array(), "model error: message is an array");
    let listed = t.get(&path).await.json();
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        0,
        "refused referral not stored"
    );
    let r = t
        .post(
            &path,
            json!({"data": {"transitioned_to": "unhcr_cw", "consent_overridden": true}}),
        )
        .await;
    assert_eq!(r.status, 200);
    let ok = t.create_case(json!({})).await;
    let path = format!("/api/v2/cases/{}/referrals", ok["id"].as_str().unwrap());
    for to in [json!("nobody"), json!("openfn_integration"), Value::Null] {
        let r = t
            .post(&path, json!({"data": {"transitioned_to": to}}))
            .await;
        assert_eq!(r.status, 422, "{to}");
        let e = &r.json()["errors"][0];
        assert_eq!(e["status"], 422, "{to}");
        assert_eq!(e["detail"], "transitioned_to", "{to}");
        assert_eq!(
            e["message"],
            json!(["transition.errors.to_user_can_receive"]),
            "{to}"
        );
    }
    assert_eq!(
        t.get(&path).await.json()["data"].as_array().unwrap().len(),
        0,
        "refused referrals not stored"
    );
    let r = t
        .post(
            &path,
            json!({"data": {"remote": true, "transitioned_to_remote": "Partner NGO", "transitioned_to_agency": "NGO"}}),
        )
        .await;
    assert_eq!(r.status, 200, "remote needs no receiving user");
    assert_eq!(r.json()["data"]["user_can_accept_or_reject"], false);
    let r = t.post(&path, json!({"nodata": {}})).await;
    assert_eq!(r.status, 422);
}

async fn case_with_referral(t: &T) -> (String, String, String) {
    let d = t
        .create_case(json!({"services_section": [{"service_type": "medical"}]}))
        .await;
    let id = d["id"].as_str().unwrap().to_string();
    let uid = d["services_section"][0]["unique_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = t
        .post(
            &format!("/api/v2/cases/{id}/referrals"),
            json!({"data": {"transitioned_to": "unhcr_cw", "service_record_id": uid}}),
        )
        .await;
    let rid = r.json()["data"]["id"].as_str().unwrap().to_string();
    (id, uid, rid)
}

#[tokio::test]
async fn contract_21_service_row_side_effects() {
    let t = start().await;
    let (id, _uid, rid) = case_with_referral(&t).await;
    let c = t.get_case(&id).await;
    assert_eq!(c["services_section"][0]["service_status_referred"], true);
    let p = format!("/api/v2/cases/{id}/referrals/{rid}");
    t.patch(&p, json!({"data": {"status": "accepted"}})).await;
    let r = t
        .patch(
            &p,
            json!({"data": {"status": "done", "rejection_note": "Seen at the clinic"}}),
        )
        .await;
    assert_eq!(r.json()["data"]["status"], "done");
    let row = t.get_case(&id).await["services_section"][0].clone();
    assert_eq!(row["service_implemented"], "implemented");
    assert!(is_ms_timestamp(&row["service_implemented_day_time"]));
    assert_eq!(row["note_on_referral_from_provider"], "Seen at the clinic");

    // A filled service_implemented_day_time is kept; a non-matching id is accepted.
    let d = t
        .create_case(json!({"services_section": [{"service_type": "food",
            "service_implemented_day_time": "2024-01-01T00:00:00Z"}]}))
        .await;
    let id2 = d["id"].as_str().unwrap();
    let uid2 = d["services_section"][0]["unique_id"].as_str().unwrap();
    let rid2 = t
        .post(
            &format!("/api/v2/cases/{id2}/referrals"),
            json!({"data": {"transitioned_to": "unhcr_cw", "service_record_id": uid2}}),
        )
        .await
        .json()["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let p2 = format!("/api/v2/cases/{id2}/referrals/{rid2}");
    t.patch(&p2, json!({"data": {"status": "accepted"}})).await;
    t.patch(&p2, json!({"data": {"status": "done"}})).await;
    let row = t.get_case(id2).await["services_section"][0].clone();
    assert_eq!(
        row["service_implemented_day_time"],
        "2024-01-01T00:00:00.000Z"
    );
    let r = t
        .post(
            &format!("/api/v2/cases/{id2}/referrals"),
            json!({"data": {"transitioned_to": "unhcr_cw", "service_record_id": ""}}),
        )
        .await;
    assert_eq!(r.status, 200);
}

/// A referral without the `record` (changed case fields) that answers to a change carry.
fn without_record(referral: &Value) -> Value {
    let mut r = referral.clone();
    r.as_object_mut().expect("referral object").remove("record");
    r
}

#[tokio::test]
async fn contract_22_referral_transitions_and_refused_moves() {
    let t = start().await;
    let (id, _uid, rid) = case_with_referral(&t).await;
    let p = format!("/api/v2/cases/{id}/referrals/{rid}");
    let before = t.get_case(&id).await["last_updated_at"].clone();
    for bad in ["done", "in_progress", "bogus", "rejected_x"] {
        let r = t.patch(&p, json!({"data": {"status": bad}})).await;
        assert_eq!(r.status, 200, "{bad}");
        assert_eq!(r.json()["data"]["status"], "in_progress", "{bad} refused");
    }
    assert_eq!(t.get_case(&id).await["last_updated_at"], before);
    let r = t
        .patch(
            &p,
            json!({"data": {"status": "accepted", "transitioned_to": "cw_john", "notes": "changed"}}),
        )
        .await;
    let rf = r.json()["data"].clone();
    assert_eq!(rf["status"], "accepted");
    assert!(is_ms_timestamp(&rf["responded_at"]));
    assert_eq!(rf["transitioned_to"], "unhcr_cw", "other keys ignored");
    assert!(rf.get("notes").is_none());
    assert!(t.get_case(&id).await["last_updated_at"].as_str().unwrap() > before.as_str().unwrap());
    let r = t.patch(&p, json!({"data": {"status": "rejected"}})).await;
    assert_eq!(
        r.json()["data"]["status"],
        "accepted",
        "accepted cannot be rejected"
    );
    let r = t.patch(&p, json!({"data": {"status": "done"}})).await;
    assert_eq!(r.json()["data"]["status"], "done");
    let done = without_record(&r.json()["data"]);
    let saved = t.get_case(&id).await["last_updated_at"].clone();
    for bad in ["accepted", "rejected", "in_progress", "done"] {
        let r = t.patch(&p, json!({"data": {"status": bad}})).await;
        assert_eq!(r.status, 200, "{bad}");
        assert_eq!(
            without_record(&r.json()["data"]),
            done,
            "done -> {bad}: unchanged"
        );
    }
    assert_eq!(
        t.get_case(&id).await["last_updated_at"],
        saved,
        "refused moves save nothing"
    );

    let (id, _uid, rid) = case_with_referral(&t).await;
    let p = format!("/api/v2/cases/{id}/referrals/{rid}");
    let r = t
        .patch(
            &p,
            json!({"data": {"status": "rejected", "rejected_reason": "Not eligible"}}),
        )
        .await;
    let rf = r.json()["data"].clone();
    assert_eq!(rf["status"], "rejected");
    assert_eq!(rf["rejected_reason"], "Not eligible");
    assert!(rf.get("responded_at").is_some());
    let c = t.get_case(&id).await;
    assert!(
        !c["assigned_user_names"]
            .as_array()
            .unwrap()
            .contains(&json!("unhcr_cw")),
        "rejection unassigns"
    );
    let r = t.patch(&p, json!({"data": {"status": "accepted"}})).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        without_record(&r.json()["data"]),
        without_record(&rf),
        "rejected -> accepted: unchanged"
    );
}

#[tokio::test]
async fn contract_23_delete_revokes_and_unknown_is_404() {
    let t = start().await;
    let (id, _uid, rid) = case_with_referral(&t).await;
    let before = t.get_case(&id).await["last_updated_at"].clone();
    let r = t
        .delete(&format!("/api/v2/cases/{id}/referrals/{rid}"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"]["status"], "revoked");
    assert_eq!(r.json()["data"]["id"], rid.as_str());
    assert!(
        t.get_case(&id).await["last_updated_at"].as_str().unwrap() > before.as_str().unwrap(),
        "revoking saves the case"
    );
    let list = t.get(&format!("/api/v2/cases/{id}/referrals")).await.json();
    assert_eq!(list["data"][0]["status"], "revoked");
    let r = t
        .delete(&format!(
            "/api/v2/cases/{id}/referrals/00000000-0000-4000-8000-000000000000"
        ))
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["errors"][0]["status"], 404);
    assert_eq!(r.json()["errors"][0]["message"], "Not Found");
    assert_eq!(
        r.json()["errors"][0]["resource"],
        format!("/api/v2/cases/{id}/referrals/00000000-0000-4000-8000-000000000000")
    );
}

#[tokio::test]
async fn contract_24_referral_list_unpaged_with_access_flags() {
    let t = start().await;
    let (id, _uid, _rid) = case_with_referral(&t).await;
    t.post(
        &format!("/api/v2/cases/{id}/referrals"),
        json!({"data": {"remote": true, "transitioned_to_remote": "Partner", "transitioned_to": "unhcr_cw"}}),
    )
    .await;
    let b = t.get(&format!("/api/v2/cases/{id}/referrals")).await.json();
    assert_eq!(keys(&b), vec!["data"], "no metadata");
    let items = b["data"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for i in items {
        assert_eq!(i["record_access_denied"], false);
        assert_eq!(
            i["user_can_accept_or_reject"], false,
            "API user is not the receiver"
        );
    }
    let b = t
        .get_as("unhcr_cw", &format!("/api/v2/cases/{id}/referrals"))
        .await
        .json();
    let flags: Vec<(bool, bool)> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["remote"].as_bool().unwrap(),
                i["user_can_accept_or_reject"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(flags.contains(&(false, true)), "receiver may decide");
    assert!(flags.contains(&(true, false)), "never for remote");
    let r = t
        .get("/api/v2/cases/00000000-0000-4000-8000-000000000000/referrals")
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn contract_25_users_list_permission_clamp_and_exact_user_name() {
    let t = start().await;
    let b = t.get("/api/v2/users").await.json();
    assert_eq!(
        b["metadata"],
        json!({"total": 5, "per": 20, "page": 1, "total_enabled": 5})
    );
    assert!(b["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["id"].is_i64()));
    let b = t.get("/api/v2/users?per=100000&page=1").await.json();
    assert_eq!(b["metadata"]["per"], 1000);
    let b = t.get("/api/v2/users?user_name=cw_amina").await.json();
    assert_eq!(b["metadata"]["total"], 1);
    let u = &b["data"][0];
    assert_eq!(u["user_name"], "cw_amina");
    for k in ["full_name", "email", "phone", "position"] {
        assert!(u[k].is_string(), "{k}");
    }
    assert!(u.get("organization").is_none());
    let b = t.get("/api/v2/users?user_name=CW_AMINA").await.json();
    assert_eq!(b["metadata"]["total"], 0, "exact match");
    let b = t.get("/api/v2/users?user_name=cw_incomplete").await.json();
    let u = &b["data"][0];
    for k in ["email", "phone", "position"] {
        assert!(u.get(k).is_none(), "{k} omitted");
    }
    let r = t.get_as("cw_amina", "/api/v2/users").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["errors"][0]["message"], "Forbidden");
}

#[tokio::test]
async fn contract_26_error_envelopes() {
    let t = start().await;
    let r = t.get("/api/v2/nothing-here").await;
    assert_eq!(r.status, 404);
    let e = r.json();
    assert_eq!(e["errors"][0]["status"], 404);
    assert_eq!(e["errors"][0]["resource"], "/api/v2/nothing-here");
    assert!(e["errors"][0]["message"].is_string());
    let r = t
        .post(
            "/api/v2/cases",
            json!({"data": {"module_id": "primeromodule-cp", "age": "x"}}),
        )
        .await;
    let e = r.json();
    assert_eq!(keys(&e), vec!["errors"]);
    assert_eq!(
        keys(&e["errors"][0]),
        vec!["detail", "message", "resource", "status"]
    );
    let r = send(t.http.get(t.url("/api/v2/cases"))).await;
    assert_eq!(r.status, 401);
    assert_eq!(keys(&r.json()), vec!["error"]);
}

#[tokio::test]
async fn contract_27_get_with_json_body_is_served() {
    let t = start().await;
    t.create_case(json!({"name_first": "Kuol"})).await;
    for path in ["/api/v2/cases", "/api/v2/users?per=1000"] {
        let r = send(
            t.req(Method::GET, path)
                .header("Content-Type", "application/json")
                .body("{\"data\":{}}"),
        )
        .await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.json()["data"].is_array());
        assert_eq!(
            r.json(),
            t.get(path).await.json(),
            "{path}: as without a body"
        );
    }
}
