//! Referral endpoints: list, create (consent and receiver rules), PATCH status transitions
//! (`in_progress -> accepted|rejected`, `accepted -> done`), DELETE (revoke), bulk create,
//! and their side effects on the case (service row flags, assignment, `last_updated_at`).

use crate::cases::find_for;
use crate::http::{entry, json_response, ApiError, Req};
use crate::options::SimUser;
use crate::store::{changed_json, Referral, Store};
use crate::time::fmt_ts;
use axum::response::Response;
use serde_json::{json, Map, Value};

/// Keys a client may set on referral create.
const CREATE_KEYS: [&str; 11] = [
    "transitioned_to",
    "transitioned_to_agency",
    "transitioned_to_remote",
    "notes",
    "service",
    "service_record_id",
    "type_of_export",
    "consent_individual_transfer",
    "authorized_role_unique_id",
    "allow_case_creation",
    "remote",
];

/// Referral JSON as seen by `viewer` (nulls omitted, computed flags added).
pub fn referral_json(r: &Referral, viewer: &str) -> Value {
    let mut m = Map::new();
    for (k, v) in &r.data {
        if !v.is_null() {
            m.insert(k.clone(), v.clone());
        }
    }
    let remote = r.data.get("remote").and_then(|v| v.as_bool()) == Some(true);
    let to_me = r.data.get("transitioned_to").and_then(|v| v.as_str()) == Some(viewer);
    m.insert("record_access_denied".into(), json!(false));
    m.insert(
        "user_can_accept_or_reject".into(),
        json!(!remote && to_me && r.data.get("status") == Some(&json!("in_progress"))),
    );
    Value::Object(m)
}

fn truthy(v: Option<&Value>) -> bool {
    v.and_then(|v| v.as_bool()) == Some(true)
}

/// Sets a key on the services row with `unique_id` (if any). Returns whether found.
fn with_service_row(
    data: &mut Map<String, Value>,
    unique_id: &str,
    f: impl FnOnce(&mut Map<String, Value>),
) -> bool {
    if unique_id.is_empty() {
        return false;
    }
    if let Some(Value::Array(rows)) = data.get_mut("services_section") {
        for r in rows.iter_mut() {
            if let Value::Object(o) = r {
                if o.get("unique_id").and_then(|v| v.as_str()) == Some(unique_id) {
                    f(o);
                    return true;
                }
            }
        }
    }
    false
}

fn add_name(data: &mut Map<String, Value>, key: &str, name: &str) {
    let arr = data.entry(key).or_insert_with(|| json!([]));
    if !arr.is_array() {
        *arr = json!([]);
    }
    if let Value::Array(a) = arr {
        if !a.iter().any(|x| x.as_str() == Some(name)) {
            a.push(json!(name));
        }
    }
}

fn remove_name(data: &mut Map<String, Value>, key: &str, name: &str) {
    if let Some(Value::Array(a)) = data.get_mut(key) {
        a.retain(|x| x.as_str() != Some(name));
    }
}

/// Creates a referral on the case at `case_idx` as `user`; returns the referral index and
/// the case's changed-fields JSON.
pub fn create_referral(
    st: &mut Store,
    user: &SimUser,
    path: &str,
    case_idx: usize,
    data: &Map<String, Value>,
) -> Result<(usize, Value), ApiError> {
    let remote = truthy(data.get("remote"));
    let to = data
        .get("transitioned_to")
        .and_then(|v| v.as_str())
        .map(|s| s.trim().to_string());
    let mut errors = vec![];
    let mut to_agency = None;
    if !remote {
        match to.as_deref().and_then(|t| st.user(t)) {
            Some(u) if u.can_receive_referrals && !u.disabled => to_agency = Some(u.agency.clone()),
            _ => errors.push(entry(
                422,
                path,
                json!(["transition.errors.to_user_can_receive"]),
                Some(json!("transitioned_to")),
            )),
        }
    }
    let overridden = truthy(data.get("consent_overridden"));
    if !overridden {
        let c = &st.cases[case_idx].data;
        let gbv = c.get("module_id").and_then(|v| v.as_str()) == Some("primeromodule-gbv");
        let ok = if gbv {
            truthy(c.get("consent_for_services"))
        } else {
            truthy(c.get("disclosure_other_orgs")) && truthy(c.get("consent_for_services"))
        };
        if !ok {
            errors.push(entry(
                422,
                path,
                json!(["transition.errors.consent"]),
                Some(json!("consent")),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError {
            status: 422,
            entries: errors,
        });
    }
    let case_id = st.cases[case_idx].id.clone();
    let owner = st.cases[case_idx]
        .data
        .get("owned_by")
        .cloned()
        .unwrap_or(Value::Null);
    let owner_agency = st.cases[case_idx]
        .data
        .get("owned_by_agency_id")
        .cloned()
        .unwrap_or(Value::Null);
    let id = uuid::Uuid::new_v4().to_string();
    let now = fmt_ts(st.next_ts());
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("type".into(), json!("Referral"));
    m.insert("status".into(), json!("in_progress"));
    m.insert("record_id".into(), json!(case_id));
    m.insert("record_type".into(), json!("case"));
    for k in CREATE_KEYS {
        if let Some(v) = data.get(k) {
            if !v.is_null() {
                m.insert(k.into(), v.clone());
            }
        }
    }
    if let Some(t) = &to {
        m.insert("transitioned_to".into(), json!(t));
    }
    if !m.contains_key("transitioned_to_agency") {
        if let Some(a) = to_agency {
            m.insert("transitioned_to_agency".into(), json!(a));
        }
    }
    m.insert("transitioned_by".into(), json!(user.user_name));
    m.insert("transitioned_by_user_agency".into(), json!(user.agency));
    m.insert("remote".into(), json!(remote));
    m.insert("consent_overridden".into(), json!(overridden));
    m.entry("consent_individual_transfer")
        .or_insert_with(|| json!(false));
    m.insert("created_at".into(), json!(now));
    m.insert("record_owned_by".into(), owner);
    m.insert("record_owned_by_agency".into(), owner_agency);

    let service_record_id = m
        .get("service_record_id")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let before = st.cases[case_idx].data.clone();
    {
        let d = &mut st.cases[case_idx].data;
        if !remote {
            if let Some(t) = &to {
                add_name(d, "assigned_user_names", t);
                add_name(d, "referred_users", t);
            }
        }
        with_service_row(d, &service_record_id, |row| {
            row.insert("service_status_referred".into(), json!(true));
        });
    }
    st.touch_case(case_idx, &user.user_name);
    let seq = st.next_seq();
    st.put_referral(Referral {
        id: id.clone(),
        record_id: case_id,
        seq,
        data: m,
    });
    let ridx = st.ref_idx[&id];
    Ok((ridx, changed_json(&st.cases[case_idx], &before)))
}

/// Applies a status change with Primero's rules. Returns the case's changed-fields JSON
/// when the referral changed, `None` when the move is not allowed (referral unchanged).
pub fn transition(
    st: &mut Store,
    ridx: usize,
    status: &str,
    rejected_reason: Option<&str>,
    rejection_note: Option<&str>,
    user_name: &str,
) -> Option<Value> {
    let current = st.referrals[ridx]
        .data
        .get("status")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let allowed = matches!(
        (current.as_str(), status),
        ("in_progress", "accepted")
            | ("in_progress", "rejected")
            | ("accepted", "done")
            | ("in_progress", "revoked")
            | ("accepted", "revoked")
    );
    if !allowed {
        return None;
    }
    let case_id = st.referrals[ridx].record_id.clone();
    let case_idx = st.case_idx.get(&case_id).copied()?;
    let now = fmt_ts(st.next_ts());
    let to = st.referrals[ridx]
        .data
        .get("transitioned_to")
        .and_then(|v| v.as_str())
        .map(|s| s.to_string());
    let remote = truthy(st.referrals[ridx].data.get("remote"));
    let service_record_id = st.referrals[ridx]
        .data
        .get("service_record_id")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    {
        let r = &mut st.referrals[ridx].data;
        r.insert("status".into(), json!(status));
        match status {
            "accepted" => {
                r.insert("responded_at".into(), json!(now));
            }
            "rejected" => {
                r.insert("responded_at".into(), json!(now));
                if let Some(x) = rejected_reason {
                    r.insert("rejected_reason".into(), json!(x));
                }
                if let Some(x) = rejection_note {
                    r.insert("rejection_note".into(), json!(x));
                }
            }
            "done" => {
                if let Some(x) = rejection_note {
                    r.insert("rejection_note".into(), json!(x));
                }
            }
            _ => {}
        }
    }
    let before = st.cases[case_idx].data.clone();
    {
        let owner = before
            .get("owned_by")
            .and_then(|v| v.as_str())
            .map(|s| s.to_string());
        let d = &mut st.cases[case_idx].data;
        match status {
            "rejected" | "revoked" => {
                if let Some(t) = &to {
                    if !remote && owner.as_deref() != Some(t) {
                        remove_name(d, "assigned_user_names", t);
                    }
                }
                if status == "rejected" {
                    d.insert("last_referral_rejected_at".into(), json!(now));
                }
            }
            "done" => {
                let now2 = now.clone();
                with_service_row(d, &service_record_id, |row| {
                    row.insert("service_implemented".into(), json!("implemented"));
                    let blank = row
                        .get("service_implemented_day_time")
                        .map(|v| v.is_null() || v.as_str() == Some(""))
                        .unwrap_or(true);
                    if blank {
                        row.insert("service_implemented_day_time".into(), json!(now2));
                    }
                    if let Some(n) = rejection_note {
                        row.insert("note_on_referral_from_provider".into(), json!(n));
                    }
                });
                d.insert("last_referral_done_at".into(), json!(now));
            }
            _ => {}
        }
    }
    st.touch_case(case_idx, user_name);
    Some(changed_json(&st.cases[case_idx], &before))
}

fn with_record(mut v: Value, record: Option<Value>) -> Value {
    if let (Value::Object(m), Some(r)) = (&mut v, record) {
        m.insert("record".into(), r);
    }
    v
}

/// `GET /api/v2/cases/:id/referrals`.
pub fn list(st: &mut Store, user: &SimUser, req: &Req, id: &str) -> Result<Response, ApiError> {
    let idx = find_for(st, user, req.path, id)?;
    let case_id = st.cases[idx].id.clone();
    let mut refs: Vec<&Referral> = st
        .refs_by_case
        .get(&case_id)
        .map(|v| v.iter().map(|&i| &st.referrals[i]).collect())
        .unwrap_or_default();
    refs.sort_by(|a, b| {
        let ca = a
            .data
            .get("created_at")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let cb = b
            .data
            .get("created_at")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        cb.cmp(ca).then(b.seq.cmp(&a.seq))
    });
    let data: Vec<Value> = refs
        .into_iter()
        .map(|r| referral_json(r, &user.user_name))
        .collect();
    Ok(json_response(200, &json!({ "data": data })))
}

/// `POST /api/v2/cases/:id/referrals`.
pub fn create(st: &mut Store, user: &SimUser, req: &Req, id: &str) -> Result<Response, ApiError> {
    let idx = find_for(st, user, req.path, id)?;
    let data = req.data().ok_or_else(|| ApiError::missing_data(req.path))?;
    let (ridx, record) = create_referral(st, user, req.path, idx, data)?;
    let v = with_record(
        referral_json(&st.referrals[ridx], &user.user_name),
        Some(record),
    );
    Ok(json_response(200, &json!({ "data": v })))
}

fn find_referral(st: &Store, path: &str, rid: &str) -> Result<usize, ApiError> {
    st.ref_idx.get(rid).copied().ok_or_else(|| {
        ApiError::not_found(path, format!("Couldn't find Transition with 'id'={rid}"))
    })
}

/// `PATCH /api/v2/cases/:id/referrals/:rid`.
pub fn patch(
    st: &mut Store,
    user: &SimUser,
    req: &Req,
    id: &str,
    rid: &str,
) -> Result<Response, ApiError> {
    find_for(st, user, req.path, id)?;
    let ridx = find_referral(st, req.path, rid)?;
    let data = req.data().ok_or_else(|| ApiError::missing_data(req.path))?;
    let status = data.get("status").and_then(|v| v.as_str()).unwrap_or("");
    let record = if status == "revoked" {
        None
    } else {
        transition(
            st,
            ridx,
            status,
            data.get("rejected_reason").and_then(|v| v.as_str()),
            data.get("rejection_note").and_then(|v| v.as_str()),
            &user.user_name,
        )
    };
    let v = with_record(referral_json(&st.referrals[ridx], &user.user_name), record);
    Ok(json_response(200, &json!({ "data": v })))
}

/// `DELETE /api/v2/cases/:id/referrals/:rid` (revoke).
pub fn delete(
    st: &mut Store,
    user: &SimUser,
    req: &Req,
    id: &str,
    rid: &str,
) -> Result<Response, ApiError> {
    find_for(st, user, req.path, id)?;
    let ridx = find_referral(st, req.path, rid)?;
    let record = transition(st, ridx, "revoked", None, None, &user.user_name);
    let v = with_record(referral_json(&st.referrals[ridx], &user.user_name), record);
    Ok(json_response(200, &json!({ "data": v })))
}

/// `POST /api/v2/cases/referrals` `{"data":{"ids":[...], transitioned_to, notes}}`.
pub fn bulk(st: &mut Store, user: &SimUser, req: &Req) -> Result<Response, ApiError> {
    let data = req.data().ok_or_else(|| ApiError::missing_data(req.path))?;
    let ids: Vec<String> = data
        .get("ids")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(|s| s.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let mut body = data.clone();
    body.remove("ids");
    let mut out = vec![];
    for id in ids {
        let idx = find_for(st, user, req.path, &id)?;
        let (ridx, _) = create_referral(st, user, req.path, idx, &body)?;
        out.push(referral_json(&st.referrals[ridx], &user.user_name));
    }
    Ok(json_response(200, &json!({ "data": out })))
}
