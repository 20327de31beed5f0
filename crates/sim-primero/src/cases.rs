//! Case endpoints: `GET /api/v2/cases` (filters, paging, ordering, `fields`, `query`),
//! `GET /api/v2/cases/:id`, `POST /api/v2/cases` (server-generated fields) and
//! `PATCH /api/v2/cases/:id` (merge rules).

use crate::filters::{self, IDENTIFIER_FIELDS, SYSTEM_FILTER_FIELDS};
use crate::http::{json_response, ApiError, Req};
use crate::merge::merge_hashes;
use crate::options::{FieldType, SimUser};
use crate::schema::{core_fields, filter_and_validate, is_uuid};
use crate::store::{changed_json, recompute_associated, record_json, Store, SUMMARY_FIELDS};
use crate::time::{fmt_date, fmt_ts};
use axum::body::Body;
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::cmp::Ordering;
use std::time::Duration;

/// Name fields searched by `query` with `phonetic=true`.
const NAME_FIELDS: [&str; 6] = [
    "name",
    "name_first",
    "name_middle",
    "name_last",
    "name_nickname",
    "name_other",
];

fn field<'a>(st: &'a Store, idx: usize, name: &str, id_holder: &'a Value) -> Option<&'a Value> {
    if name == "id" {
        Some(id_holder)
    } else {
        st.cases[idx].data.get(name)
    }
}

fn rank(v: Option<&Value>) -> u8 {
    match v {
        None => 0,
        Some(Value::Null) => 1,
        Some(Value::Bool(_)) => 2,
        Some(Value::Number(_)) => 3,
        Some(Value::String(_)) => 4,
        Some(_) => 5,
    }
}

fn cmp_values(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a, b) {
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Parses `page`/`per` with the option's default and clamp.
pub fn paging(st: &Store, req: &Req) -> (usize, usize) {
    let per = req
        .param("per")
        .and_then(|p| p.trim().parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(st.opts.default_per.max(1));
    let per = match st.opts.per_clamp {
        Some(c) => per.min(c.max(1)),
        None => per,
    };
    let page = req
        .param("page")
        .and_then(|p| p.trim().parse::<usize>().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1);
    (page, per)
}

fn selected_fields(req: &Req) -> Option<Vec<String>> {
    if req.param("id_search") == Some("true") {
        return Some(SUMMARY_FIELDS.iter().map(|s| s.to_string()).collect());
    }
    let f = req.param("fields")?;
    if f == "short" {
        return Some(SUMMARY_FIELDS.iter().map(|s| s.to_string()).collect());
    }
    Some(
        f.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// `GET /api/v2/cases`.
pub fn list(st: &mut Store, user: &SimUser, req: &Req) -> Result<Response, ApiError> {
    let schema = &st.opts.form_schema;
    let core = core_fields(&st.opts.modules);
    let filterable = |f: &str| {
        IDENTIFIER_FIELDS.contains(&f)
            || SYSTEM_FILTER_FIELDS.contains(&f)
            || core.contains_key(f)
            || matches!(schema.get(f), Some(t) if !matches!(t, FieldType::Subform { .. }))
    };
    let conds = filters::build(&req.params, &filterable);
    let query = req
        .param("query")
        .map(|q| q.trim().to_lowercase())
        .filter(|q| !q.is_empty());
    let phonetic = req.param("phonetic") == Some("true");
    let phone = req.param("phone_number") == Some("true");
    let lag = Duration::from_millis(st.opts.search_lag_ms);
    let mut hits: Vec<usize> = Vec::new();
    for i in 0..st.cases.len() {
        let c = &st.cases[i];
        if !lag.is_zero() && c.saved_at.elapsed() < lag {
            continue;
        }
        if !st.in_scope(user, i) {
            continue;
        }
        let idv = Value::String(c.id.clone());
        if !conds
            .iter()
            .all(|(f, cond)| filters::matches(field(st, i, f, &idv), cond))
        {
            continue;
        }
        if let Some(q) = &query {
            let found = if phone {
                c.data.get("telephone_current").and_then(|v| v.as_str()) == Some(q.as_str())
            } else {
                let contains = |k: &str| {
                    field(st, i, k, &idv)
                        .and_then(|v| v.as_str())
                        .map(|s| s.to_lowercase().contains(q.as_str()))
                        .unwrap_or(false)
                };
                IDENTIFIER_FIELDS.iter().any(|k| contains(k))
                    || (phonetic && NAME_FIELDS.iter().any(|k| contains(k)))
            };
            if !found {
                continue;
            }
        }
        hits.push(i);
    }
    let order_by = req.param("order_by").unwrap_or("created_at").to_string();
    let asc = req.param("order") == Some("asc");
    let idvals: Vec<Value> = if order_by == "id" {
        st.cases
            .iter()
            .map(|c| Value::String(c.id.clone()))
            .collect()
    } else {
        vec![]
    };
    hits.sort_by(|&a, &b| {
        let (va, vb) = if order_by == "id" {
            (Some(&idvals[a]), Some(&idvals[b]))
        } else {
            (
                st.cases[a].data.get(&order_by),
                st.cases[b].data.get(&order_by),
            )
        };
        let o = cmp_values(va, vb).then(st.cases[a].seq.cmp(&st.cases[b].seq));
        if asc {
            o
        } else {
            o.reverse()
        }
    });
    let (page, per) = paging(st, req);
    let total = hits.len();
    let fields = selected_fields(req);
    let data: Vec<Value> = hits
        .iter()
        .skip((page - 1).saturating_mul(per))
        .take(per)
        .map(|&i| record_json(&st.cases[i], fields.as_deref()))
        .collect();
    let mut body = Map::with_capacity(2);
    body.insert("data".into(), Value::Array(data));
    body.insert(
        "metadata".into(),
        json!({"total": total, "per": per, "page": page}),
    );
    Ok(json_response(200, &Value::Object(body)))
}

/// Finds a case by its `id` for the API (404 for unknown or non-UUID, 403 out of scope).
pub fn find_for(st: &Store, user: &SimUser, path: &str, id: &str) -> Result<usize, ApiError> {
    let idx = if is_uuid(id) {
        st.case_idx.get(id).copied()
    } else {
        None
    };
    let Some(idx) = idx else {
        return Err(ApiError::not_found(
            path,
            format!("Couldn't find Child with 'id'={id}"),
        ));
    };
    if !st.in_scope(user, idx) {
        return Err(ApiError::forbidden(path));
    }
    Ok(idx)
}

/// `GET /api/v2/cases/:id`.
pub fn get(st: &mut Store, user: &SimUser, req: &Req, id: &str) -> Result<Response, ApiError> {
    let idx = find_for(st, user, req.path, id)?;
    let fields = selected_fields(req);
    Ok(json_response(
        200,
        &json!({"data": record_json(&st.cases[idx], fields.as_deref())}),
    ))
}

fn known_module(st: &Store, v: Option<&Value>) -> bool {
    v.and_then(|m| m.as_str())
        .map(|m| st.opts.modules.iter().any(|x| x == m))
        .unwrap_or(false)
}

fn last7(s: &str) -> String {
    let n = s.chars().count();
    s.chars().skip(n.saturating_sub(7)).collect()
}

/// Creates a case as `user` from API `data`; returns its index and whether the client
/// supplied the id. Shared by `POST /cases` and the caseworker actions.
pub fn create_case(
    st: &mut Store,
    user: &SimUser,
    path: &str,
    data: &Map<String, Value>,
) -> Result<(usize, bool), ApiError> {
    let client_id = data
        .get("id")
        .and_then(|v| v.as_str())
        .filter(|s| is_uuid(s))
        .map(|s| s.to_string());
    if let Some(id) = &client_id {
        if st.case_idx.contains_key(id) {
            return Err(ApiError::new(
                409,
                path,
                json!("Conflict: A record with this id already exists"),
                None,
            ));
        }
    }
    let with_module = known_module(st, data.get("module_id"));
    let core = core_fields(&st.opts.modules);
    let filtered = filter_and_validate(data, &st.opts.form_schema, &core, with_module, false)
        .map_err(|ptrs| ApiError::invalid_json(path, ptrs))?;
    let unique = uuid::Uuid::new_v4().to_string();
    let case_id = filtered
        .get("case_id")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(|s| s.to_string())
        .unwrap_or_else(|| unique.clone());
    if st.case_id_idx.contains_key(&case_id) {
        return Err(ApiError::new(
            409,
            path,
            json!("Conflict: A record with this id already exists"),
            None,
        ));
    }
    let short = last7(&unique);
    let ts = st.next_ts();
    let now = fmt_ts(ts);
    let owner_name = filtered
        .get("owned_by")
        .and_then(|v| v.as_str())
        .map(|s| s.to_string())
        .unwrap_or_else(|| user.user_name.clone());
    let owner_agency = st
        .user(&owner_name)
        .map(|u| u.agency.clone())
        .unwrap_or_else(|| user.agency.clone());
    let owner_groups = st
        .user(&owner_name)
        .map(|u| u.user_group_unique_ids.clone())
        .unwrap_or_default();

    let mut d = Map::new();
    d.insert("case_id".into(), json!(case_id));
    d.insert("unique_identifier".into(), json!(unique));
    d.insert("short_id".into(), json!(short));
    d.insert("case_id_display".into(), json!(short));
    for (k, v) in &filtered {
        if k != "case_id" {
            d.insert(k.clone(), v.clone());
        }
    }
    if with_module && !d.contains_key("name") && st.opts.form_schema.contains_key("name") {
        let parts: Vec<&str> = ["name_first", "name_middle", "name_last"]
            .iter()
            .filter_map(|k| d.get(*k).and_then(|v| v.as_str()))
            .filter(|s| !s.is_empty())
            .collect();
        if !parts.is_empty() {
            let name = parts.join(" ");
            d.insert("name".into(), json!(name));
        }
    }
    if let Some(Value::Array(rows)) = d.get_mut("services_section") {
        for r in rows.iter_mut() {
            if let Value::Object(o) = r {
                o.entry("service_implemented")
                    .or_insert_with(|| json!("not_implemented"));
            }
        }
    }
    d.entry("status").or_insert_with(|| json!("open"));
    d.entry("record_state").or_insert_with(|| json!(true));
    d.insert("owned_by".into(), json!(owner_name));
    d.entry("owned_by_agency_id")
        .or_insert_with(|| json!(owner_agency));
    d.insert("owned_by_groups".into(), json!(owner_groups));
    d.insert("created_by".into(), json!(user.user_name));
    if let Some(full) = &user.full_name {
        d.insert("created_by_full_name".into(), json!(full));
    }
    d.insert("created_organization".into(), json!(user.agency));
    d.entry("created_at").or_insert_with(|| json!(now));
    d.insert("posted_at".into(), json!(now));
    if with_module {
        d.entry("registration_date")
            .or_insert_with(|| json!(fmt_date(ts.date_naive())));
    }
    d.entry("workflow").or_insert_with(|| json!("new"));
    st.populate_subform_ids(&mut d);
    recompute_associated(&mut d);
    d.insert("last_updated_by".into(), json!(user.user_name));
    d.insert("last_updated_at".into(), json!(now));
    let id = client_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let idx = st.put_case(id, d);
    Ok((idx, client_id.is_some()))
}

/// `POST /api/v2/cases`.
pub fn create(st: &mut Store, user: &SimUser, req: &Req) -> Result<Response, ApiError> {
    let data = req.data().ok_or_else(|| ApiError::missing_data(req.path))?;
    let (idx, client_id) = create_case(st, user, req.path, data)?;
    if client_id {
        return Ok(Response::builder()
            .status(204)
            .body(Body::empty())
            .unwrap_or_default());
    }
    Ok(json_response(
        200,
        &json!({"data": record_json(&st.cases[idx], None)}),
    ))
}

/// Applies a PATCH `data` to the case at `idx` as `user`; returns the changed-fields JSON.
pub fn patch_case(
    st: &mut Store,
    user: &SimUser,
    path: &str,
    idx: usize,
    data: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let module = data
        .get("module_id")
        .or_else(|| st.cases[idx].data.get("module_id"))
        .cloned();
    let with_module = known_module(st, module.as_ref());
    let core = core_fields(&st.opts.modules);
    let filtered = filter_and_validate(data, &st.opts.form_schema, &core, with_module, true)
        .map_err(|ptrs| ApiError::invalid_json(path, ptrs))?;
    let before = st.cases[idx].data.clone();
    st.cases[idx].data = merge_hashes(&before, &filtered);
    st.touch_case(idx, &user.user_name);
    Ok(changed_json(&st.cases[idx], &before))
}

/// `PATCH /api/v2/cases/:id`.
pub fn patch(st: &mut Store, user: &SimUser, req: &Req, id: &str) -> Result<Response, ApiError> {
    let idx = find_for(st, user, req.path, id)?;
    let data = req.data().ok_or_else(|| ApiError::missing_data(req.path))?;
    let changed = patch_case(st, user, req.path, idx, data)?;
    Ok(json_response(200, &json!({ "data": changed })))
}
