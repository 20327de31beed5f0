//! User endpoints: `GET /api/v2/users` (needs user-read permission; paging with clamp,
//! filters `user_name`, `agency`, `disabled`, `query`, `location`, `services`, `role_id[]`,
//! `user_group_ids[]`) and
//! `GET /api/v2/users/refer-to` (users who may receive referrals).

use crate::cases::paging;
use crate::http::{json_response, ApiError, Req};
use crate::options::SimUser;
use crate::store::{user_json, Store};
use axum::response::Response;
use serde_json::{json, Value};

/// Values of `name`, `name[]` and `name[i]` params (comma lists split).
fn list_param(req: &Req, name: &str) -> Vec<String> {
    req.params
        .iter()
        .filter(|(k, _)| {
            k == name
                || (k.starts_with(name) && k[name.len()..].starts_with('[') && k.ends_with(']'))
        })
        .flat_map(|(_, v)| v.split(',').map(|x| x.to_string()))
        .filter(|x| !x.is_empty())
        .collect()
}

/// `GET /api/v2/users`.
pub fn list(st: &mut Store, user: &SimUser, req: &Req) -> Result<Response, ApiError> {
    if !user.can_read_users {
        return Err(ApiError::forbidden(req.path));
    }
    let p = |k: &str| req.param(k);
    let query = p("query").map(|q| q.to_lowercase());
    let roles = list_param(req, "role_id");
    let groups = list_param(req, "user_group_ids");
    let hits: Vec<&SimUser> = st
        .users
        .iter()
        .filter(|u| p("user_name").map(|n| u.user_name == n).unwrap_or(true))
        .filter(|u| {
            p("agency")
                .map(|a| u.agency == a || u.agency_id.to_string() == a)
                .unwrap_or(true)
        })
        .filter(|u| {
            p("disabled")
                .map(|d| u.disabled.to_string() == d)
                .unwrap_or(true)
        })
        .filter(|u| {
            p("location")
                .map(|l| u.location.as_deref() == Some(l))
                .unwrap_or(true)
        })
        .filter(|u| {
            p("services")
                .map(|s| u.services.iter().any(|x| x == s))
                .unwrap_or(true)
        })
        .filter(|u| roles.is_empty() || roles.contains(&u.role_unique_id))
        .filter(|u| groups.is_empty() || u.user_group_unique_ids.iter().any(|g| groups.contains(g)))
        .filter(|u| {
            query
                .as_ref()
                .map(|q| {
                    u.user_name.to_lowercase().contains(q)
                        || u.full_name
                            .as_ref()
                            .map(|f| f.to_lowercase().contains(q))
                            .unwrap_or(false)
                })
                .unwrap_or(true)
        })
        .collect();
    let (page, per) = paging(st, req);
    let total = hits.len();
    let total_enabled = hits.iter().filter(|u| !u.disabled).count();
    let data: Vec<Value> = hits
        .iter()
        .skip((page - 1).saturating_mul(per))
        .take(per)
        .map(|u| user_json(u))
        .collect();
    Ok(json_response(
        200,
        &json!({"data": data, "metadata": {"total": total, "per": per, "page": page, "total_enabled": total_enabled}}),
    ))
}

/// `GET /api/v2/users/refer-to`.
pub fn refer_to(st: &mut Store, _user: &SimUser, _req: &Req) -> Result<Response, ApiError> {
    let data: Vec<Value> = st
        .users
        .iter()
        .filter(|u| u.can_receive_referrals && !u.disabled)
        .map(|u| {
            json!({"id": u.id, "user_name": u.user_name, "code": u.code, "position": u.position,
                "location": u.location, "agency": u.agency, "disabled": u.disabled, "services": u.services})
        })
        .collect();
    Ok(json_response(200, &json!({ "data": data })))
}
