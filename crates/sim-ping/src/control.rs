//! The `/_sim/` control API (no auth): seed, reset, state, options, request log, faults, and
//! caseworker actions that change proGres the way a person in proGres would.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use crate::faults::{FaultSet, FaultsDoc};
use crate::model::{Intervention, SeedDoc, REFERRAL_STATUS_ACCEPTED, REFERRAL_STATUS_REJECTED};
use crate::options::merge_value;
use crate::scenario::{random_intervention, ScenarioOptions};
use crate::server::{json_response, lock, Shared};
use crate::store::Store;

type Sh = State<Arc<Shared>>;

/// Routes under `/_sim/`.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/seed", post(seed))
        .route("/_sim/reset", post(reset))
        .route("/_sim/state", get(state))
        .route("/_sim/options", get(get_options).post(set_options))
        .route("/_sim/requests", get(get_requests).delete(clear_requests))
        .route("/_sim/requests/counts", get(request_counts))
        .route(
            "/_sim/faults",
            get(get_faults).post(set_faults).delete(clear_faults),
        )
        .route(
            "/_sim/actions/create-outgoing-referral",
            post(create_outgoing_referral),
        )
        .route("/_sim/actions/decide-referral", post(decide_referral))
        .route(
            "/_sim/actions/set-referral-status",
            post(set_referral_status),
        )
}

/// Removes double-quoted values from a serde message (keeps `field` names in backticks), so
/// error answers never echo personal data.
pub(crate) fn redact_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '"' {
            if !inside {
                out.push_str("\"<value>\"");
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

fn bad(msg: &str) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({"error": msg}))
}

fn ok(v: Value) -> Response {
    json_response(StatusCode::OK, &v)
}

fn body_json(b: &Bytes, empty_ok: bool) -> Result<Value, String> {
    if b.iter().all(u8::is_ascii_whitespace) {
        return if empty_ok {
            Ok(json!({}))
        } else {
            Err("a JSON body is required".into())
        };
    }
    serde_json::from_slice(b).map_err(|e| format!("body is not valid JSON: {e}"))
}

/// Merges a seed document into the store (shared by `POST /_sim/seed` and `SimHandle::seed`).
pub(crate) fn apply_seed(sh: &Shared, doc: Value) -> Result<Value, String> {
    let doc: SeedDoc = serde_json::from_value(doc)
        .map_err(|e| format!("invalid seed: {}", redact_values(&e.to_string())))?;
    let mut store = lock(&sh.store);
    store.merge_seed(doc)?;
    Ok(
        json!({"interventions": store.interventions.len(), "interop_referrals": store.referrals.len()}),
    )
}

async fn seed(State(sh): Sh, body: Bytes) -> Response {
    let doc = match body_json(&body, false) {
        Ok(d) => d,
        Err(e) => return bad(&e),
    };
    match apply_seed(&sh, doc) {
        Ok(v) => ok(v),
        Err(e) => bad(&e),
    }
}

async fn reset(State(sh): Sh) -> Response {
    *lock(&sh.store) = Store::default();
    lock(&sh.requests).clear();
    *lock(&sh.faults) = FaultSet::default();
    ok(json!({"reset": true}))
}

async fn state(State(sh): Sh) -> Response {
    ok(lock(&sh.store).to_json())
}

async fn get_options(State(sh): Sh) -> Response {
    ok(serde_json::to_value(sh.opts()).unwrap_or(Value::Null))
}

async fn set_options(State(sh): Sh, body: Bytes) -> Response {
    let patch = match body_json(&body, false) {
        Ok(d) => d,
        Err(e) => return bad(&e),
    };
    let mut opts = sh.opts.write().unwrap_or_else(|e| e.into_inner());
    match opts.merge_json(&patch) {
        Ok(()) => {
            // A lower limit holds at once, not from the next request on.
            lock(&sh.requests).trim(opts.request_log_limit);
            ok(serde_json::to_value(&*opts).unwrap_or(Value::Null))
        }
        Err(e) => bad(&format!("invalid options: {e}")),
    }
}

async fn get_requests(State(sh): Sh) -> Response {
    ok(serde_json::to_value(&lock(&sh.requests).entries).unwrap_or(Value::Null))
}

/// The requests since the log was last cleared, counted by endpoint (`{"token": 2,
/// "asyncdata": 20, ...}`), those the bounded log has dropped included: what a benchmark
/// needs, without copying the whole log.
async fn request_counts(State(sh): Sh) -> Response {
    ok(serde_json::to_value(&lock(&sh.requests).counts).unwrap_or(Value::Null))
}

async fn clear_requests(State(sh): Sh) -> Response {
    lock(&sh.requests).clear();
    ok(json!({"cleared": true}))
}

async fn get_faults(State(sh): Sh) -> Response {
    ok(json!({"rules": lock(&sh.faults).rules}))
}

async fn set_faults(State(sh): Sh, body: Bytes) -> Response {
    let v = match body_json(&body, false) {
        Ok(d) => d,
        Err(e) => return bad(&e),
    };
    let doc: FaultsDoc = match serde_json::from_value(v) {
        Ok(d) => d,
        Err(e) => return bad(&format!("invalid faults document: {e}")),
    };
    if let Err(e) = doc.validate() {
        return bad(&e);
    }
    if doc.expire_tokens {
        lock(&sh.tokens).clear();
    }
    let n = doc.rules.len();
    lock(&sh.faults).rules = doc.rules;
    ok(json!({"rules": n, "expired_tokens": doc.expire_tokens}))
}

async fn clear_faults(State(sh): Sh) -> Response {
    lock(&sh.faults).rules.clear();
    ok(json!({"rules": 0}))
}

async fn create_outgoing_referral(State(sh): Sh, body: Bytes) -> Response {
    let patch = match body_json(&body, true) {
        Ok(d) => d,
        Err(e) => return bad(&e),
    };
    if !patch.is_object() {
        return bad("body must be a JSON object (a partial intervention)");
    }
    let mut store = lock(&sh.store);
    let mut seq = store.interventions.len() as u64 + 1;
    let sopts = ScenarioOptions::default();
    let today = chrono::Utc::now().date_naive();
    let mut rng = crate::scenario::ScenarioRng::new(rand::random::<u64>());
    let mut iv = random_intervention(&mut rng, seq, &sopts, today);
    while store.has_intervention_number(&iv.progres_interventionnumber) {
        seq += 1;
        iv.progres_interventionnumber = crate::scenario::intervention_number(&sopts, today, seq);
    }
    let mut v = match serde_json::to_value(&iv) {
        Ok(v) => v,
        Err(e) => return bad(&e.to_string()),
    };
    merge_value(&mut v, &patch);
    let iv: Intervention = match serde_json::from_value(v) {
        Ok(i) => i,
        Err(e) => {
            return bad(&format!(
                "invalid intervention: {}",
                redact_values(&e.to_string())
            ))
        }
    };
    let out = json!({
        "progres_lpinterventionid": iv.progres_lpinterventionid,
        "progres_interventionnumber": iv.progres_interventionnumber,
        "progres_businessunit": iv.progres_businessunit,
    });
    store.upsert_intervention(iv);
    ok(out)
}

fn referral_id(v: &Value) -> Result<String, String> {
    v.get("referral_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| "referral_id (string) is required".to_string())
}

fn not_found(id: &str) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"error": format!("no interoperability referral {id}")}),
    )
}

async fn decide_referral(State(sh): Sh, body: Bytes) -> Response {
    let v = match body_json(&body, false) {
        Ok(d) => d,
        Err(e) => return bad(&e),
    };
    let id = match referral_id(&v) {
        Ok(i) => i,
        Err(e) => return bad(&e),
    };
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let decision = text("decision").unwrap_or_default();
    let mut store = lock(&sh.store);
    let Some(i) = store.referral_index(&id) else {
        return not_found(&id);
    };
    let r = &mut store.referrals[i];
    match decision.as_str() {
        "accept" => {
            r.progres_interoperabilityreferralstatus = Value::from(REFERRAL_STATUS_ACCEPTED);
            r.progres_reviewdecision = Some(Value::from(125_080_000));
            r.progres_interoperabiltyreferralrejectionreasonname = None;
            r.progres_interoperabilityreferralrejectionomment = text("comment");
        }
        "reject" => {
            r.progres_interoperabilityreferralstatus = Value::from(REFERRAL_STATUS_REJECTED);
            r.progres_reviewdecision = Some(Value::from(125_080_001));
            r.progres_interoperabiltyreferralrejectionreasonname = text("reason");
            r.progres_interoperabilityreferralrejectionomment = text("comment");
        }
        _ => return bad("decision must be \"accept\" or \"reject\""),
    }
    ok(serde_json::to_value(&*r).unwrap_or(Value::Null))
}

async fn set_referral_status(State(sh): Sh, body: Bytes) -> Response {
    let v = match body_json(&body, false) {
        Ok(d) => d,
        Err(e) => return bad(&e),
    };
    let id = match referral_id(&v) {
        Ok(i) => i,
        Err(e) => return bad(&e),
    };
    let Some(status) = v.get("status").and_then(Value::as_i64) else {
        return bad("status (integer) is required");
    };
    let mut store = lock(&sh.store);
    let Some(i) = store.referral_index(&id) else {
        return not_found(&id);
    };
    let r = &mut store.referrals[i];
    r.progres_interoperabilityreferralstatus = Value::from(status);
    ok(serde_json::to_value(&*r).unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::redact_values;

    #[test]
    fn serde_messages_lose_their_values_but_keep_field_names() {
        let err = serde_json::from_value::<crate::model::Individual>(
            serde_json::json!({"progres_sex": "Nyaboth"}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("Nyaboth"), "serde echoes the value: {err}");
        let red = redact_values(&err);
        assert!(!red.contains("Nyaboth"));
        assert!(red.contains("invalid type"));
        let unknown = serde_json::from_value::<crate::model::Individual>(
            serde_json::json!({"langauges": []}),
        )
        .unwrap_err()
        .to_string();
        assert!(redact_values(&unknown).contains("`langauges`"));
    }
}
