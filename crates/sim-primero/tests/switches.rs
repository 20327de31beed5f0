//! Tests of the remaining switches and endpoints: search lag, session idle timeout, logout,
//! the legacy token cookie, bulk referrals and the refer-to user list.

mod common;

use common::*;
use pp_sim_primero::{Options, DEFAULT_PASSWORD};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

async fn login(t: &T) -> R {
    send(
        t.http.post(t.url("/api/v2/tokens")).json(
            &json!({"user": {"user_name": "openfn_integration", "password": DEFAULT_PASSWORD}}),
        ),
    )
    .await
}

#[tokio::test]
async fn search_lag_hides_fresh_cases_from_searches_only() {
    let t = start_with(Options {
        search_lag_ms: 400,
        ..Options::default()
    })
    .await;
    let d = t
        .create_case(json!({"unhcr_individual_no": "945-00000001"}))
        .await;
    let q = "/api/v2/cases?unhcr_individual_no=945-00000001";
    assert_eq!(
        t.get(q).await.json()["metadata"]["total"],
        0,
        "not indexed yet"
    );
    t.get_case(d["id"].as_str().unwrap()).await;
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(t.get(q).await.json()["metadata"]["total"], 1);
}

#[tokio::test]
async fn idle_session_expires_and_logout_ends_it() {
    let t = start_with(Options {
        session_timeout_secs: 1,
        ..Options::default()
    })
    .await;
    let sid = login(&t).await.cookie("_app_session").unwrap();
    let get = |sid: &str| {
        t.http
            .get(t.url("/api/v2/cases"))
            .header("Cookie", format!("_app_session={sid}"))
    };
    assert_eq!(send(get(&sid)).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = send(get(&sid)).await;
    assert_eq!(r.status, 401);
    assert!(r.headers.get("www-authenticate").is_some());

    let sid = login(&t).await.cookie("_app_session").unwrap();
    let r = send(
        t.http
            .delete(t.url("/api/v2/tokens"))
            .header("Cookie", format!("_app_session={sid}")),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({}));
    assert_eq!(send(get(&sid)).await.status, 401);
}

#[tokio::test]
async fn legacy_token_cookie_authenticates() {
    let t = start_with(Options {
        legacy_jwt: true,
        ..Options::default()
    })
    .await;
    let r = login(&t).await;
    let tok = r.cookie("primero_token").expect("primero_token cookie");
    assert_eq!(tok, r.json()["token"].as_str().unwrap());
    assert!(r.cookie("_app_session").is_none());
    let r = send(
        t.http
            .get(t.url("/api/v2/cases"))
            .header("Cookie", format!("primero_token={tok}")),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn bulk_referrals_create_one_per_case_and_stop_at_a_failure() {
    let t = start().await;
    let a = t.create_case(json!({})).await["id"].clone();
    let b = t.create_case(json!({})).await["id"].clone();
    let r = t
        .post(
            "/api/v2/cases/referrals",
            json!({"data": {"ids": [a, b], "transitioned_to": "unhcr_cw", "notes": "bulk"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let items = r.json()["data"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["record_id"], b);
    let no_consent = t.create_case(json!({"consent_for_services": false})).await["id"].clone();
    let c = t.create_case(json!({})).await["id"].clone();
    let r = t
        .post(
            "/api/v2/cases/referrals",
            json!({"data": {"ids": [c, no_consent], "transitioned_to": "unhcr_cw"}}),
        )
        .await;
    assert_eq!(r.status, 422);
    let refs = t
        .get(&format!("/api/v2/cases/{}/referrals", c.as_str().unwrap()))
        .await
        .json();
    assert_eq!(
        refs["data"].as_array().unwrap().len(),
        1,
        "earlier one stays saved"
    );
}

#[tokio::test]
async fn refer_to_lists_receiving_users() {
    let t = start().await;
    let r = t
        .get_as(
            "cw_amina",
            "/api/v2/users/refer-to?record_type=case&record_module_id=primeromodule-cp",
        )
        .await;
    assert_eq!(r.status, 200);
    let names: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user_name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&"unhcr_cw".to_string()));
    assert!(!names.contains(&"openfn_integration".to_string()));
    let log = t
        .ctl(Method::GET, "/_sim/requests?endpoint=users", None)
        .await
        .json();
    assert_eq!(log.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn users_filter_by_role_group_query_and_disabled() {
    let t = start().await;
    t.seed(json!({"users": [{"user_name": "cw_gone", "disabled": true,
        "user_group_unique_ids": ["usergroup-gbv"], "role_unique_id": "role-gbv-worker"}]}))
        .await;
    let total = |q: &'static str| {
        let t = &t;
        async move { t.get(&format!("/api/v2/users?{q}")).await.json()["metadata"].clone() }
    };
    assert_eq!(total("role_id[]=role-primero-admin").await["total"], 1);
    assert_eq!(
        total("role_id[0]=role-gbv-worker&role_id[1]=role-primero-admin").await["total"],
        2
    );
    assert_eq!(total("user_group_ids[]=usergroup-gbv").await["total"], 1);
    assert_eq!(total("query=amina").await["total"], 1);
    assert_eq!(
        total("query=YUSUF").await["total"],
        1,
        "full_name, case-insensitive"
    );
    assert_eq!(total("disabled=true").await["total"], 1);
    let all = total("").await;
    assert_eq!(all["total"], 6);
    assert_eq!(all["total_enabled"], 5);
    let r = send(
        t.http
            .get(t.url("/api/v2/cases"))
            .basic_auth("cw_gone", Some(DEFAULT_PASSWORD)),
    )
    .await;
    assert_eq!(r.status, 401, "disabled users cannot sign in");
}
