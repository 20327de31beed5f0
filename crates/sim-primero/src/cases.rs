//! Case endpoints: `GET /api/v2/cases` (filters, paging, ordering, `fields`, `query`),
//! `GET /api/v2/cases/:id`, `POST /api/v2/cases` (server-generated fields) and
//! `PATCH /api/v2/cases/:id` (merge rules).

use crate::filters::{self, Cond, IDENTIFIER_FIELDS, SYSTEM_FILTER_FIELDS};
use crate::http::{json_bytes_response, json_response, ApiError, Req};
use crate::merge::merge_hashes;
use crate::options::{FieldType, SimUser};
use crate::schema::{core_fields, filter_and_validate, is_uuid};
use crate::store::{
    changed_json, recompute_associated, record_json, CaseRec, Projection, Store,
    INDEXED_IDENTIFIERS, SORT_CACHED, SUMMARY_FIELDS,
};
use crate::time::{fmt_date, fmt_ts};
use axum::body::Body;
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::cmp::Ordering;
use std::time::{Duration, Instant};

/// Name fields searched by `query` with `phonetic=true`.
const NAME_FIELDS: [&str; 6] = [
    "name",
    "name_first",
    "name_middle",
    "name_last",
    "name_nickname",
    "name_other",
];

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

/// The string of an identifier field (`id` is the record id), as `query=` searches it.
fn ident_str<'a>(c: &'a CaseRec, name: &str) -> Option<&'a str> {
    if name == "id" {
        Some(&c.id)
    } else {
        c.data.get(name).and_then(|v| v.as_str())
    }
}

/// Whether the case satisfies one filter condition. `id` is compared without building a
/// value for it; a time range on a string `last_updated_at` is answered from the parse
/// cached at save time, without reading the data.
fn cond_holds(c: &CaseRec, name: &str, cond: &Cond) -> bool {
    match (name, cond) {
        ("id", Cond::Exact(values)) => values.contains(&c.id),
        ("id", _) => filters::matches(Some(&Value::String(c.id.clone())), cond),
        ("last_updated_at", Cond::Range(lo, hi)) => match c.updated_at {
            Some(time) => {
                debug_assert_eq!(
                    c.data
                        .get(name)
                        .map(|v| (v.is_string(), filters::value_time(v))),
                    Some((true, time)),
                    "cached last_updated_at out of date"
                );
                filters::string_in_range_at(time, lo, hi)
            }
            None => filters::matches(c.data.get(name), cond),
        },
        _ => filters::matches(c.data.get(name), cond),
    }
}

/// Cases that may satisfy an exact identifier condition, found through the indexes: a
/// superset of the cases the condition accepts (every condition is still checked on
/// them). Sorted, without duplicates. `None` when no condition can use an index.
fn candidates(st: &Store, conds: &[(String, Cond)]) -> Option<Vec<usize>> {
    let mut best: Option<Vec<usize>> = None;
    for (name, cond) in conds {
        let Cond::Exact(values) = cond else {
            continue;
        };
        let mut found: Vec<usize> = if name == "id" {
            values
                .iter()
                .filter_map(|v| st.case_idx.get(v).copied())
                .collect()
        } else if let Some(f) = INDEXED_IDENTIFIERS.iter().position(|x| x == name) {
            values
                .iter()
                .filter_map(|v| st.ident_idx[f].get(v))
                .flatten()
                .copied()
                .collect()
        } else {
            continue;
        };
        found.sort_unstable();
        found.dedup();
        if best.as_ref().is_none_or(|b| found.len() < b.len()) {
            best = Some(found);
        }
    }
    best
}

/// `GET /api/v2/cases`. Cases are narrowed through the identifier indexes when the query
/// has an exact identifier filter, else all are scanned; either way every filter, the
/// scope and the search lag are checked on each candidate, so both give the same records.
/// Only the requested page is put in order and serialised.
pub fn list(st: &mut Store, user: &SimUser, req: &Req) -> Result<Response, ApiError> {
    let st: &Store = st;
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
    let now = Instant::now();
    let accepts = |i: usize| -> bool {
        let c = &st.cases[i];
        if !lag.is_zero() && now.saturating_duration_since(c.saved_at) < lag {
            return false;
        }
        if !st.in_scope(user, i) {
            return false;
        }
        if !conds.iter().all(|(f, cond)| cond_holds(c, f, cond)) {
            return false;
        }
        if let Some(q) = &query {
            let found = if phone {
                c.data.get("telephone_current").and_then(|v| v.as_str()) == Some(q.as_str())
            } else {
                let contains = |k: &str| {
                    ident_str(c, k)
                        .map(|s| s.to_lowercase().contains(q.as_str()))
                        .unwrap_or(false)
                };
                IDENTIFIER_FIELDS.iter().any(|k| contains(k))
                    || (phonetic
                        && NAME_FIELDS.iter().any(|k| {
                            c.data
                                .get(*k)
                                .and_then(|v| v.as_str())
                                .map(|s| s.to_lowercase().contains(q.as_str()))
                                .unwrap_or(false)
                        }))
            };
            if !found {
                return false;
            }
        }
        true
    };
    let hits: Vec<usize> = match candidates(st, &conds) {
        Some(c) => c.into_iter().filter(|&i| accepts(i)).collect(),
        None => (0..st.cases.len()).filter(|&i| accepts(i)).collect(),
    };
    let order_by = req.param("order_by").unwrap_or("created_at");
    let asc = req.param("order") == Some("asc");
    // (sort value, case): `id` sorts as the record id's string; the usual time fields come
    // from the case's copies.
    let cached = SORT_CACHED.iter().position(|f| *f == order_by);
    let mut keyed: Vec<(Option<&Value>, &CaseRec)> = hits
        .iter()
        .map(|&i| {
            let c = &st.cases[i];
            let v = match cached {
                _ if order_by == "id" => None,
                Some(slot) => {
                    debug_assert_eq!(
                        c.sort_values[slot].as_ref(),
                        c.data.get(order_by),
                        "cached sort value out of date"
                    );
                    c.sort_values[slot].as_ref()
                }
                None => c.data.get(order_by),
            };
            (v, c)
        })
        .collect();
    let by_id = order_by == "id";
    // A total order: `seq` is unique per case, so any sort gives the same sequence.
    let cmp = |a: &(Option<&Value>, &CaseRec), b: &(Option<&Value>, &CaseRec)| {
        let o = if by_id {
            a.1.id.cmp(&b.1.id)
        } else {
            cmp_values(a.0, b.0)
        }
        .then(a.1.seq.cmp(&b.1.seq));
        if asc {
            o
        } else {
            o.reverse()
        }
    };
    let (page, per) = paging(st, req);
    let total = keyed.len();
    let lo = (page - 1).saturating_mul(per).min(total);
    let hi = lo.saturating_add(per).min(total);
    // The page's records in order, without ordering the rest. Hits come in store order,
    // which is often the requested order or its reverse (default `created_at desc`): then
    // one pass finds it. Else the `hi` first are selected, then the `lo` first of those
    // dropped, and only the page is sorted.
    let ascending = keyed
        .windows(2)
        .all(|w| cmp(&w[0], &w[1]) == Ordering::Less);
    let descending = !ascending
        && keyed
            .windows(2)
            .all(|w| cmp(&w[0], &w[1]) == Ordering::Greater);
    if descending {
        keyed.reverse();
    }
    if ascending || descending {
        keyed.truncate(hi);
        keyed.drain(..lo);
    } else {
        if hi < keyed.len() {
            keyed.select_nth_unstable_by(hi, cmp);
            keyed.truncate(hi);
        }
        if lo > 0 && lo < keyed.len() {
            keyed.select_nth_unstable_by(lo, cmp);
        }
        keyed.drain(..lo);
        keyed.sort_unstable_by(cmp);
    }
    let fields = selected_fields(req);
    let projection = Projection::new(fields.as_deref());
    // Written straight into the body. Once a few records are written, room for the rest is
    // taken at their average size (and an eighth more), instead of doubling as it goes.
    const SAMPLE: usize = 16;
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(b"{\"data\":[");
    for (n, (_, c)) in keyed.iter().enumerate() {
        if n == SAMPLE {
            let rest = (keyed.len() - SAMPLE).saturating_mul(out.len() / SAMPLE);
            out.reserve(rest.saturating_add(rest / 8));
        }
        if n > 0 {
            out.push(b',');
        }
        projection.write(&mut out, c);
    }
    let metadata = format!(r#"],"metadata":{{"total":{total},"per":{per},"page":{page}}}}}"#);
    out.extend_from_slice(metadata.as_bytes());
    Ok(json_bytes_response(200, out))
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
    let mut out = Vec::new();
    out.extend_from_slice(b"{\"data\":");
    Projection::new(fields.as_deref()).write(&mut out, &st.cases[idx]);
    out.push(b'}');
    Ok(json_bytes_response(200, out))
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

#[cfg(test)]
mod tests {
    //! The indexed, partially sorted listing against the full scan it replaced: same bytes
    //! for every query shape, before and after changes to the indexed fields.

    use super::*;
    use crate::options::Options;
    use crate::scenario::{generate, ScenarioOptions};
    use crate::store::seed;
    use axum::http::{HeaderMap, Method};
    use chrono::{TimeZone, Utc};

    /// The listing as it was before the indexes: scan every case, check every filter, sort
    /// all hits, then page (kept here as the reference behaviour).
    fn scan_list(st: &Store, user: &SimUser, req: &Req) -> Vec<u8> {
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
        let field = |i: usize, name: &str, idv: &'_ Value| -> Option<Value> {
            if name == "id" {
                Some(idv.clone())
            } else {
                st.cases[i].data.get(name).cloned()
            }
        };
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
                .all(|(f, cond)| filters::matches(field(i, f, &idv).as_ref(), cond))
            {
                continue;
            }
            if let Some(q) = &query {
                let found = if phone {
                    c.data.get("telephone_current").and_then(|v| v.as_str()) == Some(q.as_str())
                } else {
                    let contains = |k: &str| {
                        field(i, k, &idv)
                            .and_then(|v| v.as_str().map(|s| s.to_lowercase()))
                            .map(|s| s.contains(q.as_str()))
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
        hits.sort_by(|&a, &b| {
            let (va, vb) = if order_by == "id" {
                (
                    Some(Value::String(st.cases[a].id.clone())),
                    Some(Value::String(st.cases[b].id.clone())),
                )
            } else {
                (
                    st.cases[a].data.get(&order_by).cloned(),
                    st.cases[b].data.get(&order_by).cloned(),
                )
            };
            let o =
                cmp_values(va.as_ref(), vb.as_ref()).then(st.cases[a].seq.cmp(&st.cases[b].seq));
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
        serde_json::to_vec(&Value::Object(body)).expect("json")
    }

    fn req<'a>(method: &'a Method, headers: &'a HeaderMap, q: &[(&str, &str)]) -> Req<'a> {
        Req {
            method,
            path: "/api/v2/cases",
            params: q
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            headers,
            body: Value::Null,
            body_invalid: false,
        }
    }

    async fn body_of(resp: Response) -> Vec<u8> {
        axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body")
            .to_vec()
    }

    /// Lists through `list` and through the scan; asserts the same bytes; returns the JSON.
    async fn both(st: &mut Store, user: &str, q: &[(&str, &str)]) -> Value {
        let user = st.user(user).expect("user").clone();
        let (m, h) = (Method::GET, HeaderMap::new());
        let r = req(&m, &h, q);
        let expected = scan_list(st, &user, &r);
        let got = body_of(list(st, &user, &r).expect("list")).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&expected),
            "query {q:?} as {}",
            user.user_name
        );
        serde_json::from_slice(&got).expect("json")
    }

    fn ids(v: &Value, key: &str) -> Vec<String> {
        v["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|r| r[key].as_str().unwrap_or("").to_string())
            .collect()
    }

    fn store() -> Store {
        store_at(Some(Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()))
    }

    /// A scenario of 120 cases plus edge cases. With `anchor`, times are spread over 30
    /// days in random order; without, all generated cases share the seed's "now", so
    /// store order is the default order reversed (the one-pass path of the listing).
    fn store_at(anchor: Option<chrono::DateTime<Utc>>) -> Store {
        let mut st = Store::new(Options::default());
        let doc = generate(&ScenarioOptions {
            count: 120,
            seed: 7,
            anchor,
            ..Default::default()
        });
        seed(&mut st, doc).expect("seed");
        // Edge cases of the exact filters: an array value, a number, case-different values,
        // a number shared by two cases, a case owned by nobody the caseworkers know, an
        // equal `created_at` (the `seq` tie-break).
        let extra = json!({"cases": [
            {"id": "00000000-0000-4000-8000-000000000001", "case_id": "Case-A",
             "unhcr_individual_no": ["945-1", "945-2"], "owned_by": "cw_amina",
             "created_at": "2026-02-20T10:00:00.000Z", "last_updated_at": "2026-02-20T10:00:00.000Z",
             "age": 7},
            {"id": "00000000-0000-4000-8000-000000000002", "case_id": "case-a",
             "unhcr_individual_no": "945-1", "owned_by": "cw_john",
             "created_at": "2026-02-20T10:00:00.000Z", "last_updated_at": "2026-02-20T10:00:00.400Z",
             "age": 7.0},
            {"id": "00000000-0000-4000-8000-000000000003", "case_id": "945",
             "unhcr_individual_no": 945, "owned_by": "someone_else",
             "created_at": "2026-02-20", "last_updated_at": "2026-02-21"},
            {"id": "00000000-0000-4000-8000-000000000004", "case_id": "",
             "unhcr_individual_no": "", "owned_by": "cw_amina",
             "last_updated_at": "not a time"},
            {"id": "00000000-0000-4000-8000-000000000005", "owned_by": "cw_amina",
             "created_at": "2026-02-16T00:00:00.000Z", "last_updated_at": 1771200000},
            {"id": "00000000-0000-4000-8000-000000000006", "owned_by": "cw_john",
             "created_at": "2026-02-16T00:00:00.000Z",
             "last_updated_at": ["2026-02-20T10:00:00.000Z", "2026-01-01"]}
        ]});
        seed(&mut st, extra).expect("seed extra");
        st
    }

    /// Query shapes of the flows and the filter semantics around them.
    fn queries(st: &Store) -> Vec<Vec<(String, String)>> {
        let cid = |i: usize| {
            st.cases[i].data["case_id"]
                .as_str()
                .expect("case_id")
                .to_string()
        };
        let uno = |i: usize| {
            st.cases[i].data["unhcr_individual_no"]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        let p = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let mut out = Vec::new();
        // Flow 2.2: 50 case_ids per call, `fields=case_id`; one unknown, one repeated.
        let mut q: Vec<(String, String)> = (0..50)
            .map(|n| (format!("case_id[{n}]"), cid(n * 2)))
            .collect();
        q.push(("case_id[50]".into(), "no-such-case".into()));
        q.push(("case_id[51]".into(), cid(0)));
        q.push(("fields".into(), "case_id".into()));
        out.push(q.clone());
        q.push(("per".into(), "7".into()));
        q.push(("page".into(), "3".into()));
        out.push(q);
        // Flow 1.1: unhcr_individual_no[n], full records.
        let q: Vec<(String, String)> = (0..50)
            .map(|n| (format!("unhcr_individual_no[{n}]"), uno(n + 30)))
            .chain([
                ("unhcr_individual_no[50]".into(), "945-1".into()),
                ("unhcr_individual_no[51]".into(), "945".into()),
            ])
            .collect();
        out.push(q);
        out.push(p(&[("unhcr_individual_no", "945-2")]));
        out.push(p(&[("unhcr_individual_no", "")]));
        out.push(p(&[("case_id", "Case-A")]));
        out.push(p(&[("case_id", "case-a"), ("order", "asc")]));
        out.push(p(&[("case_id", "CASE-A")]));
        out.push(p(&[("case_id", "945")]));
        out.push(p(&[("case_id", "")]));
        out.push(p(&[("case_id", "Case-A,case-a")]));
        out.push(vec![
            ("case_id[]".into(), "Case-A".into()),
            ("case_id[]".into(), "case-a".into()),
            ("unhcr_individual_no".into(), "945-1".into()),
        ]);
        out.push(vec![
            ("id".into(), st.cases[3].id.clone()),
            ("case_id".into(), cid(3)),
        ]);
        out.push(vec![
            ("id".into(), st.cases[3].id.clone()),
            ("case_id".into(), cid(4)),
        ]);
        out.push(vec![
            ("id[0]".into(), st.cases[5].id.clone()),
            ("id[1]".into(), st.cases[6].id.clone()),
            (
                "id[2]".into(),
                "00000000-0000-4000-8000-000000000001".into(),
            ),
            ("order_by".into(), "id".into()),
        ]);
        // Exact identifier plus other filters.
        let q: Vec<(String, String)> = (0..40)
            .map(|n| (format!("case_id[{n}]"), cid(n)))
            .chain([
                ("sex".into(), "male,female".into()),
                ("last_updated_at".into(), "2026-02-10T00:00:00Z..".into()),
                ("record_state".into(), "true".into()),
            ])
            .collect();
        out.push(q);
        // Flows 1.2 and 2.1: time ranges, paged, ordered.
        for (page, per) in [
            ("1", "10"),
            ("3", "10"),
            ("6", "10"),
            ("7", "10"),
            ("99", "10"),
        ] {
            out.push(p(&[
                ("last_updated_at", "2026-02-15T08:30:00Z.."),
                ("order_by", "last_updated_at"),
                ("order", "asc"),
                ("page", page),
                ("per", per),
            ]));
        }
        out.push(p(&[
            ("last_updated_at", "2026-02-15T08:30:00Z.."),
            ("fields", "last_updated_at"),
            ("per", "1000"),
        ]));
        out.push(p(&[("last_updated_at", "2026-02-10..2026-02-20")]));
        out.push(p(&[("last_updated_at", "..2026-02-20T10:00:00.999Z")]));
        out.push(p(&[("last_updated_at", "2026-02-20T10:00:00Z")]));
        out.push(p(&[("last_updated_at", "2026-02-21,2026-02-20T10:00:00Z")]));
        out.push(p(&[("last_updated_at", "1..5")]));
        out.push(p(&[("last_updated_at", "..")]));
        out.push(p(&[(
            "created_at",
            "2026-02-20T00:00:00Z..2026-02-20T23:59:59Z",
        )]));
        // Orders, pages and field selections.
        out.push(p(&[]));
        out.push(p(&[("page", "2"), ("per", "13")]));
        out.push(p(&[("page", "0"), ("per", "0")]));
        out.push(p(&[("per", "5000")]));
        out.push(p(&[("order_by", "age"), ("order", "asc"), ("per", "200")]));
        out.push(p(&[("order_by", "age"), ("page", "3"), ("per", "9")]));
        out.push(p(&[
            ("order_by", "no_such_field"),
            ("per", "11"),
            ("page", "2"),
        ]));
        out.push(p(&[("order_by", "id"), ("per", "17"), ("page", "4")]));
        out.push(p(&[
            ("order_by", "id"),
            ("order", "asc"),
            ("per", "17"),
            ("page", "2"),
        ]));
        out.push(p(&[("fields", "short")]));
        out.push(p(&[("id_search", "true"), ("per", "3")]));
        out.push(p(&[(
            "fields",
            "sex,sex,last_updated_at,id,enabled,nope,case_id",
        )]));
        out.push(p(&[("query", "945-1")]));
        out.push(p(&[("query", &cid(9)[..6])]));
        out.push(p(&[("query", "a"), ("phonetic", "true"), ("per", "50")]));
        let phone = st.cases[7].data["telephone_current"]
            .as_str()
            .expect("phone")
            .to_string();
        out.push(vec![
            ("query".into(), phone),
            ("phone_number".into(), "true".into()),
        ]);
        out
    }

    async fn all_queries_agree(st: &mut Store) {
        for q in queries(st) {
            let q: Vec<(&str, &str)> = q.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            for user in ["openfn_integration", "cw_amina", "cw_john"] {
                both(st, user, &q).await;
            }
        }
    }

    #[tokio::test]
    async fn indexed_and_partial_listing_equals_the_full_scan() {
        let mut st = store_at(None);
        all_queries_agree(&mut st).await;
        let mut st = store();
        all_queries_agree(&mut st).await;
        // Changes to indexed fields: a PATCH of unhcr_individual_no, a seed that replaces a
        // case with another case_id, referral saves; then the same comparisons.
        let api = st.user("openfn_integration").expect("user").clone();
        let mut d = Map::new();
        d.insert("unhcr_individual_no".into(), json!("945-2"));
        patch_case(&mut st, &api, "/api/v2/cases/x", 10, &d).expect("patch");
        let mut replaced = record_json(&st.cases[11], None);
        replaced["case_id"] = json!("renamed-case");
        seed(&mut st, json!({"cases": [replaced]})).expect("reseed");
        st.touch_case(12, "cw_amina");
        all_queries_agree(&mut st).await;
    }

    #[tokio::test]
    async fn identifier_changes_are_found_by_the_new_value_only() {
        let mut st = store();
        let old_cid = st.cases[11].data["case_id"]
            .as_str()
            .expect("case_id")
            .to_string();
        let old_no = st.cases[10].data["unhcr_individual_no"]
            .as_str()
            .expect("no")
            .to_string();
        let api = st.user("openfn_integration").expect("user").clone();
        let mut d = Map::new();
        d.insert("unhcr_individual_no".into(), json!("945-99999999"));
        patch_case(&mut st, &api, "/api/v2/cases/x", 10, &d).expect("patch");
        let mut replaced = record_json(&st.cases[11], None);
        replaced["case_id"] = json!("renamed-case");
        seed(&mut st, json!({"cases": [replaced]})).expect("reseed");
        let id10 = st.cases[10].id.clone();
        let id11 = st.cases[11].id.clone();
        let api = "openfn_integration";
        let v = both(&mut st, api, &[("unhcr_individual_no", "945-99999999")]).await;
        assert_eq!(ids(&v, "id"), vec![id10.clone()]);
        let v = both(&mut st, api, &[("unhcr_individual_no", &old_no)]).await;
        assert!(!ids(&v, "id").contains(&id10), "found by its old number");
        let v = both(&mut st, api, &[("case_id[0]", "renamed-case")]).await;
        assert_eq!(ids(&v, "id"), vec![id11.clone()]);
        assert_eq!(v["metadata"]["total"], 1);
        let v = both(&mut st, api, &[("case_id[0]", &old_cid)]).await;
        assert_eq!(v["metadata"]["total"], 0, "found by its old case_id");
    }

    #[tokio::test]
    async fn search_lag_and_scope_hide_cases_from_indexed_queries() {
        let mut st = store();
        let cid = |st: &Store, i: usize| st.cases[i].data["case_id"].as_str().unwrap().to_string();
        let (c1, c2) = (cid(&st, 20), cid(&st, 21));
        let q = [("case_id[0]", c1.as_str()), ("case_id[1]", c2.as_str())];
        // Everything was saved just now: a 60 s lag hides both.
        st.opts.search_lag_ms = 60_000;
        let v = both(&mut st, "openfn_integration", &q).await;
        assert_eq!(v["metadata"]["total"], 0);
        // Case 20 was saved long ago, case 21 just now.
        if let Some(t) = Instant::now().checked_sub(Duration::from_secs(120)) {
            st.cases[20].saved_at = t;
            let v = both(&mut st, "openfn_integration", &q).await;
            assert_eq!(ids(&v, "case_id"), vec![c1.clone()]);
        }
        st.opts.search_lag_ms = 0;
        // A caseworker sees only the cases in scope, whichever path finds them.
        let owner =
            |st: &Store, i: usize| st.cases[i].data["owned_by"].as_str().unwrap().to_string();
        let mine: Vec<String> = [20, 21]
            .iter()
            .filter(|&&i| owner(&st, i) == "cw_amina")
            .map(|&i| cid(&st, i))
            .collect();
        let v = both(&mut st, "cw_amina", &q).await;
        let mut got = ids(&v, "case_id");
        got.sort();
        let mut want = mine;
        want.sort();
        assert_eq!(got, want);
        let v = both(&mut st, "cw_amina", &[("case_id", "945")]).await;
        assert_eq!(
            v["metadata"]["total"], 0,
            "someone_else's case is out of scope"
        );
        let v = both(&mut st, "openfn_integration", &[("case_id", "945")]).await;
        assert_eq!(v["metadata"]["total"], 1);
    }
}
