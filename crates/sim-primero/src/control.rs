//! The `/_sim/` control API (no auth): seed, reset, state, options, request log, faults and
//! caseworker actions (refer a child to UNHCR, decide a service, set a referral status).

use crate::cases::{create_case, patch_case};
use crate::faults::FaultSet;
use crate::http::{json_response, query_params, ApiError, Sim};
use crate::merge::merge_hashes;
use crate::options::{Options, SimUser, UNHCR_USER};
use crate::referrals::{create_referral, referral_json, transition};
use crate::scenario::{random_child, FastRng};
use crate::store::{seed, Store};
use axum::http::{Method, Uri};
use axum::response::Response;
use rand::Rng;
use serde_json::{json, Map, Value};

fn bad(status: u16, msg: impl Into<String>) -> Response {
    json_response(status, &json!({ "error": msg.into() }))
}

fn from_api(e: ApiError) -> Response {
    e.response()
}

/// Routes a control request.
pub fn handle(sim: &Sim, method: &Method, path: &str, uri: &Uri, bytes: &[u8]) -> Response {
    let body: Value = if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        Value::Null
    } else {
        match serde_json::from_slice(bytes) {
            Ok(v) => v,
            Err(e) => return bad(400, format!("body is not JSON: {e}")),
        }
    };
    let mut st = sim.lock();
    let route = path.trim_end_matches('/');
    match (method.as_str(), route) {
        ("POST", "/_sim/seed") => match seed(&mut st, body) {
            Ok(counts) => json_response(200, &counts),
            Err(e) => bad(400, e),
        },
        ("POST", "/_sim/reset") => {
            st.reset();
            json_response(200, &json!({"ok": true}))
        }
        ("GET", "/_sim/state") => json_response(200, &st.state_json()),
        ("GET", "/_sim/options") => {
            json_response(200, &serde_json::to_value(&st.opts).unwrap_or(Value::Null))
        }
        ("POST", "/_sim/options") => set_options(&mut st, &body),
        ("GET", "/_sim/requests") => {
            let endpoint = query_params(uri)
                .into_iter()
                .find(|(k, _)| k == "endpoint")
                .map(|(_, v)| v);
            let items: Vec<Value> = st
                .log
                .iter()
                .filter(|e| endpoint.as_deref().map(|x| e.endpoint == x).unwrap_or(true))
                .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
                .collect();
            json_response(200, &Value::Array(items))
        }
        ("GET", "/_sim/requests/counts") => {
            // The requests since the log was last cleared, by endpoint, those the bounded log
            // has dropped included: what a benchmark needs, without copying the log.
            json_response(
                200,
                &serde_json::to_value(&st.log_counts).unwrap_or(Value::Null),
            )
        }
        ("DELETE", "/_sim/requests") => {
            st.clear_log();
            json_response(200, &json!({"ok": true}))
        }
        ("GET", "/_sim/faults") => json_response(
            200,
            &json!({"rules": serde_json::to_value(&st.faults).unwrap_or(Value::Null)}),
        ),
        ("POST", "/_sim/faults") => match serde_json::from_value::<FaultSet>(body) {
            Ok(set) => {
                st.faults = set.rules;
                for r in st.faults.iter_mut() {
                    r.applied = 0;
                }
                if set.expire_tokens {
                    st.sessions.clear();
                    st.jwts.clear();
                }
                json_response(200, &json!({"rules": st.faults.len()}))
            }
            Err(e) => bad(400, format!("invalid fault set: {e}")),
        },
        ("DELETE", "/_sim/faults") => {
            st.faults.clear();
            json_response(200, &json!({"ok": true}))
        }
        ("POST", "/_sim/actions/refer-to-unhcr") => refer_to_unhcr(&mut st, &body),
        ("POST", "/_sim/actions/decide-service") => decide_service(&mut st, &body),
        ("POST", "/_sim/actions/set-referral-status") => set_referral_status(&mut st, &body),
        _ => bad(404, format!("no control route {} {}", method, route)),
    }
}

fn set_options(st: &mut Store, body: &Value) -> Response {
    let Some(patch) = body.as_object() else {
        return bad(400, "options must be a JSON object");
    };
    let current = match serde_json::to_value(&st.opts) {
        Ok(Value::Object(m)) => m,
        _ => return bad(500, "options not serialisable"),
    };
    let mut merged = current.clone();
    for (k, v) in patch {
        if !current.contains_key(k) {
            return bad(400, format!("unknown option {k}"));
        }
        merged.insert(k.clone(), v.clone());
    }
    match serde_json::from_value::<Options>(Value::Object(merged)) {
        Ok(o) => {
            st.opts = o;
            // A lower log limit holds at once, not from the next request on.
            st.trim_log();
            json_response(200, &serde_json::to_value(&st.opts).unwrap_or(Value::Null))
        }
        Err(e) => bad(400, format!("invalid options: {e}")),
    }
}

fn str_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(|v| v.as_str())
}

fn user_named(st: &Store, name: &str) -> Result<SimUser, Box<Response>> {
    st.user(name)
        .cloned()
        .ok_or_else(|| Box::new(bad(422, format!("unknown user {name}"))))
}

fn refer_to_unhcr(st: &mut Store, body: &Value) -> Response {
    let owner_name = str_field(body, "owned_by").unwrap_or("cw_amina");
    let owner = match user_named(st, owner_name) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let to = str_field(body, "transitioned_to")
        .unwrap_or(UNHCR_USER)
        .to_string();
    let mut data: Map<String, Value> = match body.get("case") {
        Some(Value::Object(m)) => m.clone(),
        Some(Value::Null) | None => {
            let mut rng = FastRng::seed_from_u64(rand::thread_rng().gen());
            let n = rng.gen_range(0..9_000_000);
            random_child(&mut rng, chrono::Utc::now().date_naive(), n)
        }
        Some(_) => return bad(400, "case must be an object"),
    };
    data.entry("module_id")
        .or_insert_with(|| json!("primeromodule-cp"));
    data.insert("disclosure_other_orgs".into(), json!(true));
    data.insert("consent_for_services".into(), json!(true));
    data.insert("owned_by".into(), json!(owner.user_name));
    let services: Vec<Map<String, Value>> = match body.get("services") {
        Some(Value::Array(a)) => {
            let mut out = vec![];
            for s in a {
                match s.as_object() {
                    Some(o) => out.push(o.clone()),
                    None => return bad(400, "services must be objects"),
                }
            }
            out
        }
        None | Some(Value::Null) => vec![Map::from_iter([(
            "service_type".to_string(),
            json!("medical"),
        )])],
        Some(_) => return bad(400, "services must be an array"),
    };
    let mut rows = vec![];
    let mut uids = vec![];
    for s in &services {
        let mut row = Map::new();
        row.insert("unique_id".into(), json!(uuid::Uuid::new_v4().to_string()));
        row.insert("service_implementing_agency".into(), json!("UNHCR"));
        row.insert("service_response_type".into(), json!("service_provision"));
        row = merge_hashes(&row, s);
        uids.push(
            row.get("unique_id")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string(),
        );
        rows.push(Value::Object(row));
    }
    let existing = data
        .get("services_section")
        .and_then(|v| v.as_array())
        .cloned()
        .unwrap_or_default();
    let mut all_rows = existing;
    all_rows.extend(rows.iter().cloned());
    data.insert("services_section".into(), Value::Array(all_rows));
    let path = "/_sim/actions/refer-to-unhcr";
    let (idx, _) = match create_case(st, &owner, path, &data) {
        Ok(x) => x,
        Err(e) => return from_api(e),
    };
    let mut out_services = vec![];
    for (row, uid) in rows.iter().zip(uids) {
        let mut rd = Map::new();
        rd.insert("transitioned_to".into(), json!(to));
        if let Some(t) = row.get("service_type") {
            rd.insert("service".into(), t.clone());
        }
        rd.insert("service_record_id".into(), json!(uid));
        if let Some(n) = row.get("service_referral_notes") {
            rd.insert("notes".into(), n.clone());
        }
        match create_referral(st, &owner, path, idx, &rd) {
            Ok((ridx, _)) => out_services.push(json!({
                "unique_id": uid,
                "referral_id": st.referrals[ridx].id,
            })),
            Err(e) => return from_api(e),
        }
    }
    let c = &st.cases[idx];
    json_response(
        200,
        &json!({
            "id": c.id,
            "case_id": c.data.get("case_id"),
            "services": out_services,
        }),
    )
}

fn decide_service(st: &mut Store, body: &Value) -> Response {
    let path = "/_sim/actions/decide-service";
    let Some(key) = str_field(body, "case") else {
        return bad(400, "case missing");
    };
    let Some(idx) = st.find_case(key) else {
        return bad(404, "case not found");
    };
    let Some(uid) = str_field(body, "service_unique_id") else {
        return bad(400, "service_unique_id missing");
    };
    let decision = str_field(body, "decision").unwrap_or("");
    if decision != "accepted" && decision != "rejected" {
        return bad(422, "decision must be accepted or rejected");
    }
    let has_row = st.cases[idx]
        .data
        .get("services_section")
        .and_then(|v| v.as_array())
        .map(|rows| {
            rows.iter()
                .any(|r| r.get("unique_id").and_then(|v| v.as_str()) == Some(uid))
        })
        .unwrap_or(false);
    if !has_row {
        return bad(404, "service row not found");
    }
    let default_user = st.cases[idx]
        .data
        .get("owned_by")
        .and_then(|v| v.as_str())
        .unwrap_or("cw_amina")
        .to_string();
    let user_name = str_field(body, "user").unwrap_or(&default_user).to_string();
    let user = match user_named(st, &user_name) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let mut row = Map::new();
    row.insert("unique_id".into(), json!(uid));
    row.insert("unhcr_referral_status".into(), json!(decision));
    if decision == "rejected" {
        if let Some(r) = str_field(body, "reason") {
            row.insert("unhcr_referral_rejection_reason".into(), json!(r));
        }
    }
    let mut data = Map::new();
    data.insert("services_section".into(), json!([row]));
    match patch_case(st, &user, path, idx, &data) {
        Ok(_) => {
            let c = &st.cases[idx];
            json_response(
                200,
                &json!({"id": c.id, "case_id": c.data.get("case_id"),
                    "last_updated_at": c.data.get("last_updated_at")}),
            )
        }
        Err(e) => from_api(e),
    }
}

fn set_referral_status(st: &mut Store, body: &Value) -> Response {
    let Some(key) = str_field(body, "case") else {
        return bad(400, "case missing");
    };
    let Some(idx) = st.find_case(key) else {
        return bad(404, "case not found");
    };
    let Some(rid) = str_field(body, "referral_id") else {
        return bad(400, "referral_id missing");
    };
    let Some(&ridx) = st.ref_idx.get(rid) else {
        return bad(404, "referral not found");
    };
    if st.referrals[ridx].record_id != st.cases[idx].id {
        return bad(404, "referral does not belong to the case");
    }
    let status = str_field(body, "status").unwrap_or("");
    let default_user = st.referrals[ridx]
        .data
        .get("transitioned_to")
        .and_then(|v| v.as_str())
        .unwrap_or(UNHCR_USER)
        .to_string();
    let user = str_field(body, "user").unwrap_or(&default_user).to_string();
    let changed = if status == "revoked" {
        None
    } else {
        transition(
            st,
            ridx,
            status,
            str_field(body, "rejected_reason"),
            str_field(body, "rejection_note"),
            &user,
        )
    };
    let mut v = referral_json(&st.referrals[ridx], &user);
    if let Value::Object(m) = &mut v {
        m.insert("changed".into(), json!(changed.is_some()));
    }
    json_response(200, &v)
}
