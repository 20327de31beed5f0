//! The HTTP front: one axum fallback handler that routes `/_sim/*` to the control API and
//! `/api/v2/*` through fault injection, request logging, authentication (Basic, session
//! cookie + CSRF, legacy JWT) and the endpoint handlers. Also the response/error helpers.

use crate::faults::{self, FaultKind, FaultRule};
use crate::options::SimUser;
use crate::store::{LogEntry, Store};
use crate::{cases, control, referrals, users};
use axum::body::{to_bytes, Body};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Shared simulator state behind the server.
#[derive(Debug)]
pub struct Sim {
    store: Mutex<Store>,
}

impl Sim {
    /// Wraps a store.
    pub fn new(store: Store) -> Self {
        Sim {
            store: Mutex::new(store),
        }
    }

    /// Locks the store (a poisoned lock is recovered: the data stays usable).
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Message of Devise when no (valid) credentials are given.
pub const MSG_SIGN_IN: &str = "You need to sign in or sign up before continuing.";
/// Message for a wrong user name or password.
pub const MSG_INVALID: &str = "Invalid User name or password.";
/// Message for a locked account.
pub const MSG_LOCKED: &str = "Your account is locked.";
/// Message for an idle session.
pub const MSG_TIMEOUT: &str = "Your session expired. Please sign in again to continue.";

/// An API error to be rendered as Primero's errors envelope.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Envelope entries (`status`, `resource`, `message`, `detail`).
    pub entries: Vec<Value>,
}

impl ApiError {
    /// One-entry error.
    pub fn new(status: u16, path: &str, message: Value, detail: Option<Value>) -> Self {
        ApiError {
            status,
            entries: vec![entry(status, path, message, detail)],
        }
    }

    /// 404 Not Found.
    pub fn not_found(path: &str, detail: impl Into<String>) -> Self {
        Self::new(404, path, json!("Not Found"), Some(json!(detail.into())))
    }

    /// 403 Forbidden.
    pub fn forbidden(path: &str) -> Self {
        Self::new(403, path, json!("Forbidden"), None)
    }

    /// 422 Invalid Record JSON with pointers.
    pub fn invalid_json(path: &str, pointers: Vec<String>) -> Self {
        Self::new(
            422,
            path,
            json!("Invalid Record JSON"),
            Some(json!(pointers)),
        )
    }

    /// 422 for a missing `data` param.
    pub fn missing_data(path: &str) -> Self {
        Self::new(
            422,
            path,
            json!("param is missing or the value is empty: data"),
            None,
        )
    }

    /// The envelope body.
    pub fn body(&self) -> Value {
        json!({ "errors": self.entries })
    }

    /// Renders the response.
    pub fn response(&self) -> Response {
        json_response(self.status, &self.body())
    }
}

/// One envelope entry.
pub fn entry(status: u16, path: &str, message: Value, detail: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("status".into(), json!(status));
    m.insert("resource".into(), json!(path));
    if let Some(d) = detail {
        m.insert("detail".into(), d);
    }
    m.insert("message".into(), message);
    Value::Object(m)
}

/// A JSON response of any serialisable body.
pub fn json_response<T: serde::Serialize + ?Sized>(status: u16, v: &T) -> Response {
    json_bytes_response(status, serde_json::to_vec(v).unwrap_or_default())
}

/// A JSON response of a body already written as JSON (the case endpoints write theirs
/// straight from the store).
pub fn json_bytes_response(status: u16, body: Vec<u8>) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(Body::from(body))
        .unwrap_or_default()
}

/// A 401 in Devise's shape with the `WWW-Authenticate` header.
pub fn unauthorized(msg: &str) -> Response {
    let mut r = json_response(401, &json!({ "error": msg }));
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"Primero\" charset=\"UTF8\""),
    );
    r
}

fn text_response(status: u16, text: &str) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(text.to_string()))
        .unwrap_or_default()
}

/// The API routes.
#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    /// POST /tokens
    TokensCreate,
    /// DELETE /tokens
    TokensDelete,
    /// GET /cases
    CasesList,
    /// GET /cases/:id
    CaseGet(String),
    /// POST /cases
    CaseCreate,
    /// PATCH /cases/:id
    CasePatch(String),
    /// GET /cases/:id/referrals
    ReferralsList(String),
    /// POST /cases/:id/referrals
    ReferralCreate(String),
    /// PATCH /cases/:id/referrals/:rid
    ReferralPatch(String, String),
    /// DELETE /cases/:id/referrals/:rid
    ReferralDelete(String, String),
    /// POST /cases/referrals
    ReferralsBulk,
    /// GET /users
    Users,
    /// GET /users/refer-to
    UsersReferTo,
    /// Anything else.
    NotFound,
}

impl Route {
    /// Parses method and path.
    pub fn parse(method: &Method, path: &str) -> Route {
        let Some(rest) = path.strip_prefix("/api/v2/") else {
            return Route::NotFound;
        };
        let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        let m = method.as_str();
        match (m, segs.as_slice()) {
            ("POST", ["tokens"]) => Route::TokensCreate,
            ("DELETE", ["tokens"]) => Route::TokensDelete,
            ("GET", ["cases"]) => Route::CasesList,
            ("POST", ["cases"]) => Route::CaseCreate,
            ("POST", ["cases", "referrals"]) => Route::ReferralsBulk,
            ("GET", ["cases", id]) => Route::CaseGet(id.to_string()),
            ("PATCH" | "PUT", ["cases", id]) => Route::CasePatch(id.to_string()),
            ("GET", ["cases", id, "referrals"]) => Route::ReferralsList(id.to_string()),
            ("POST", ["cases", id, "referrals"]) => Route::ReferralCreate(id.to_string()),
            ("PATCH" | "PUT", ["cases", id, "referrals", rid]) => {
                Route::ReferralPatch(id.to_string(), rid.to_string())
            }
            ("DELETE", ["cases", id, "referrals", rid]) => {
                Route::ReferralDelete(id.to_string(), rid.to_string())
            }
            ("GET", ["users"]) => Route::Users,
            ("GET", ["users", "refer-to"]) => Route::UsersReferTo,
            _ => Route::NotFound,
        }
    }

    /// The endpoint name used by fault rules and the request log.
    pub fn endpoint(&self) -> &'static str {
        match self {
            Route::TokensCreate | Route::TokensDelete => "tokens",
            Route::CasesList => "cases_list",
            Route::CaseGet(_) => "case_get",
            Route::CaseCreate => "case_create",
            Route::CasePatch(_) => "case_patch",
            Route::ReferralsList(_) => "referrals_list",
            Route::ReferralCreate(_) => "referral_create",
            Route::ReferralPatch(..) => "referral_patch",
            Route::ReferralDelete(..) => "referral_delete",
            Route::ReferralsBulk => "referrals_bulk",
            Route::Users | Route::UsersReferTo => "users",
            Route::NotFound => "unknown",
        }
    }
}

/// How a request was authenticated.
#[derive(Clone, Debug, PartialEq)]
pub enum AuthKind {
    /// HTTP Basic.
    Basic,
    /// `_app_session` cookie (session id).
    Session(String),
    /// Legacy JWT (header or `primero_token` cookie).
    Bearer,
}

impl AuthKind {
    fn name(&self) -> &'static str {
        match self {
            AuthKind::Basic => "basic",
            AuthKind::Session(_) => "session",
            AuthKind::Bearer => "bearer",
        }
    }
}

/// A parsed request as the endpoint handlers see it. `Debug` shows method and path only
/// (the body holds personal data, the headers credentials).
pub struct Req<'a> {
    /// Method.
    pub method: &'a Method,
    /// Path without query.
    pub path: &'a str,
    /// Query params in order.
    pub params: Vec<(String, String)>,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// Parsed JSON body (`Null` when empty or not JSON).
    pub body: Value,
    /// Whether the body was present but not JSON.
    pub body_invalid: bool,
}

impl std::fmt::Debug for Req<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Req")
            .field("method", self.method)
            .field("path", &self.path)
            .finish()
    }
}

impl Req<'_> {
    /// First value of a query param.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `body.data` as an object.
    pub fn data(&self) -> Option<&Map<String, Value>> {
        self.body.get("data").and_then(|d| d.as_object())
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
        .next()
}

fn random_token() -> String {
    let mut s = uuid::Uuid::new_v4().simple().to_string();
    s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    s
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Checks a password with Devise's lockable rules (also used by Basic auth).
pub fn check_password(st: &mut Store, name: &str, password: &str) -> Result<SimUser, &'static str> {
    let key = name.trim().to_lowercase();
    let attempts = st.opts.lockout_attempts.max(1);
    let lock_for = Duration::from_secs(st.opts.lockout_secs);
    let user = st.user(&key).cloned();
    let now = Instant::now();
    let ls = st.logins.entry(key).or_default();
    if let Some(until) = ls.locked_until {
        if now < until {
            return Err(MSG_LOCKED);
        }
        ls.locked_until = None;
        ls.failed = 0;
    }
    match user {
        Some(u) if u.password == password && !u.disabled => {
            ls.failed = 0;
            Ok(u)
        }
        Some(_) => {
            ls.failed += 1;
            if ls.failed >= attempts {
                ls.locked_until = Some(now + lock_for);
                Err(MSG_LOCKED)
            } else {
                Err(MSG_INVALID)
            }
        }
        None => Err(MSG_INVALID),
    }
}

fn bearer_user(st: &mut Store, token: &str) -> Option<SimUser> {
    let (name, exp) = st.jwts.get(token)?.clone();
    if Instant::now() >= exp {
        st.jwts.remove(token);
        return None;
    }
    st.user(&name).cloned()
}

/// Authenticates a request: Basic, else (legacy) Bearer, else session / token cookie.
/// Errors are the 401 message to send.
pub fn authenticate(
    st: &mut Store,
    headers: &HeaderMap,
) -> Result<(SimUser, AuthKind), &'static str> {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let auth = auth.trim();
        if let Some(b64) = auth
            .strip_prefix("Basic ")
            .or_else(|| auth.strip_prefix("basic "))
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            let Some((user, pw)) = decoded.as_deref().and_then(|s| s.split_once(':')) else {
                return Err(MSG_INVALID);
            };
            return check_password(st, user, pw).map(|u| (u, AuthKind::Basic));
        }
        if let Some(tok) = auth.strip_prefix("Bearer ") {
            if st.opts.legacy_jwt {
                if let Some(u) = bearer_user(st, tok.trim()) {
                    return Ok((u, AuthKind::Bearer));
                }
            }
            return Err(MSG_SIGN_IN);
        }
        return Err(MSG_SIGN_IN);
    }
    if st.opts.legacy_jwt {
        if let Some(tok) = cookie(headers, "primero_token") {
            let tok = tok.to_string();
            return match bearer_user(st, &tok) {
                Some(u) => Ok((u, AuthKind::Bearer)),
                None => Err(MSG_SIGN_IN),
            };
        }
    } else if let Some(sid) = cookie(headers, "_app_session") {
        let sid = sid.to_string();
        let timeout = Duration::from_secs(st.opts.session_timeout_secs);
        let Some(sess) = st.sessions.get_mut(&sid) else {
            return Err(MSG_SIGN_IN);
        };
        if sess.last_seen.elapsed() > timeout {
            st.sessions.remove(&sid);
            return Err(MSG_TIMEOUT);
        }
        sess.last_seen = Instant::now();
        let name = sess.user.clone();
        return match st.user(&name).cloned() {
            Some(u) => Ok((u, AuthKind::Session(sid))),
            None => Err(MSG_SIGN_IN),
        };
    }
    Err(MSG_SIGN_IN)
}

/// Outcome of dispatching an API call.
struct Outcome {
    resp: Response,
    user: Option<String>,
    auth: Option<&'static str>,
    csrf: Option<String>,
}

fn login(st: &mut Store, req: &Req) -> Outcome {
    let out = |resp: Response| Outcome {
        resp,
        user: None,
        auth: None,
        csrf: None,
    };
    let user_name = req
        .body
        .pointer("/user/user_name")
        .and_then(|v| v.as_str())
        .map(|s| s.trim().to_lowercase());
    let password = req
        .body
        .pointer("/user/password")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    // rack-attack: more than N login POSTs per user_name inside the window -> 429.
    let key = user_name.clone().unwrap_or_default();
    let window = Duration::from_secs(st.opts.login_throttle_window_secs);
    let limit = st.opts.login_throttle_limit as usize;
    let hits = st.login_hits.entry(key).or_default();
    let now = Instant::now();
    while hits.front().map(|t| now.duration_since(*t) > window) == Some(true) {
        hits.pop_front();
    }
    hits.push_back(now);
    if hits.len() > limit {
        return out(text_response(429, "Retry later"));
    }
    let user = match user_name {
        Some(name) => match check_password(st, &name, &password) {
            Ok(u) => u,
            Err(msg) => return out(unauthorized(msg)),
        },
        None => {
            // Legacy refresh: POST /tokens with a valid Bearer and no credentials.
            let bearer = req
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(|s| s.trim().to_string());
            match bearer.filter(|_| st.opts.legacy_jwt) {
                Some(tok) => match bearer_user(st, &tok) {
                    Some(u) => u,
                    None => return out(unauthorized(MSG_SIGN_IN)),
                },
                None => return out(unauthorized(MSG_INVALID)),
            }
        }
    };
    if st.opts.legacy_jwt {
        let header_b = b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
        let exp = chrono::Utc::now().timestamp() + st.opts.jwt_ttl_secs as i64;
        let claims = json!({"sub": user.id.to_string(), "scp": "user", "aud": null,
            "iat": chrono::Utc::now().timestamp(), "exp": exp, "jti": uuid::Uuid::new_v4().to_string()});
        let token = format!(
            "{}.{}.{}",
            header_b,
            b64url(claims.to_string().as_bytes()),
            b64url(random_token().as_bytes())
        );
        st.jwts.insert(
            token.clone(),
            (
                user.user_name.clone(),
                Instant::now() + Duration::from_secs(st.opts.jwt_ttl_secs),
            ),
        );
        let mut resp = json_response(
            200,
            &json!({"id": user.id, "user_name": user.user_name, "token": token}),
        );
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
            h.insert(header::AUTHORIZATION, v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("primero_token={token}; path=/; HttpOnly")) {
            h.append(header::SET_COOKIE, v);
        }
        Outcome {
            resp,
            user: Some(user.user_name),
            auth: None,
            csrf: None,
        }
    } else {
        let sid = random_token();
        let csrf = random_token();
        st.sessions.insert(
            sid.clone(),
            crate::store::Session {
                user: user.user_name.clone(),
                csrf: csrf.clone(),
                last_seen: Instant::now(),
            },
        );
        let mut resp = json_response(
            200,
            &json!({"id": user.id, "user_name": user.user_name, "group_permission": user.group_permission}),
        );
        if let Ok(v) = HeaderValue::from_str(&format!(
            "_app_session={sid}; path=/; max-age={}; HttpOnly; SameSite=Lax",
            st.opts.session_timeout_secs
        )) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
        Outcome {
            resp,
            user: Some(user.user_name),
            auth: None,
            csrf: Some(csrf),
        }
    }
}

fn logout(st: &mut Store, req: &Req) -> Outcome {
    if let Some(sid) = cookie(req.headers, "_app_session") {
        st.sessions.remove(sid);
    }
    if let Some(tok) = req
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        st.jwts.remove(tok.trim());
    }
    Outcome {
        resp: json_response(200, &json!({})),
        user: None,
        auth: None,
        csrf: None,
    }
}

fn dispatch(st: &mut Store, route: &Route, req: &Req) -> Outcome {
    match route {
        Route::TokensCreate => return login(st, req),
        Route::TokensDelete => return logout(st, req),
        _ => {}
    }
    let (user, kind) = match authenticate(st, req.headers) {
        Ok(x) => x,
        Err(msg) => {
            return Outcome {
                resp: unauthorized(msg),
                user: None,
                auth: None,
                csrf: None,
            }
        }
    };
    let mut csrf = None;
    if let AuthKind::Session(sid) = &kind {
        let expected = st.sessions.get(sid).map(|s| s.csrf.clone());
        if st.opts.csrf_protection && req.method != Method::GET && req.method != Method::HEAD {
            let given = req
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok());
            if given.is_none() || given != expected.as_deref() {
                return Outcome {
                    resp: ApiError::new(
                        403,
                        req.path,
                        json!("Forbidden"),
                        Some(json!("X-CSRF-Token")),
                    )
                    .response(),
                    user: Some(user.user_name),
                    auth: Some(kind.name()),
                    csrf: expected,
                };
            }
        }
        csrf = expected;
    }
    let result = if req.body_invalid && req.method != Method::GET {
        Err(ApiError::new(400, req.path, json!("Bad Request"), None))
    } else {
        match route {
            Route::CasesList => cases::list(st, &user, req),
            Route::CaseGet(id) => cases::get(st, &user, req, id),
            Route::CaseCreate => cases::create(st, &user, req),
            Route::CasePatch(id) => cases::patch(st, &user, req, id),
            Route::ReferralsList(id) => referrals::list(st, &user, req, id),
            Route::ReferralCreate(id) => referrals::create(st, &user, req, id),
            Route::ReferralPatch(id, rid) => referrals::patch(st, &user, req, id, rid),
            Route::ReferralDelete(id, rid) => referrals::delete(st, &user, req, id, rid),
            Route::ReferralsBulk => referrals::bulk(st, &user, req),
            Route::Users => users::list(st, &user, req),
            Route::UsersReferTo => users::refer_to(st, &user, req),
            _ => Err(ApiError::not_found(req.path, "no route")),
        }
    };
    Outcome {
        resp: result.unwrap_or_else(|e| e.response()),
        user: Some(user.user_name),
        auth: Some(kind.name()),
        csrf,
    }
}

fn reason(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

fn fault_response(rule: &FaultRule, path: &str) -> Response {
    let status = rule.status.unwrap_or(503);
    let mut resp = match status {
        401 => unauthorized(MSG_SIGN_IN),
        429 => text_response(429, "Retry later"),
        s => ApiError::new(s, path, json!(reason(s)), None).response(),
    };
    if let Some(secs) = rule.retry_after_secs {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

fn set_log_status(
    st: &mut Store,
    seq: u64,
    status: u16,
    user: Option<String>,
    auth: Option<&'static str>,
) {
    if let Some(e) = st.log.iter_mut().rev().find(|e| e.seq == seq) {
        e.status = status;
        e.user = user;
        e.auth = auth;
    }
}

/// The method's name, without an allocation for the standard ones.
fn method_name(m: &Method) -> std::borrow::Cow<'static, str> {
    const STANDARD: [&str; 9] = [
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    match STANDARD.iter().find(|s| **s == m.as_str()) {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(m.to_string()),
    }
}

/// The single axum handler.
pub async fn handle(State(sim): State<Arc<Sim>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, 256 * 1024 * 1024).await.unwrap_or_default();
    let path = parts.uri.path().to_string();
    if path == "/_sim" || path.starts_with("/_sim/") {
        return control::handle(&sim, &parts.method, &path, &parts.uri, &bytes);
    }
    let route = Route::parse(&parts.method, &path);
    let endpoint = route.endpoint();
    let (chosen, seq) = {
        let mut st = sim.lock();
        let chosen = faults::choose(&mut st.faults, endpoint);
        let seq = st.next_seq();
        let fault = match (&chosen.terminal, chosen.latency_ms) {
            (Some(r), _) => Some(r.kind.name()),
            (None, ms) if ms > 0 => Some(FaultKind::Latency.name()),
            _ => None,
        };
        st.log_request(LogEntry {
            seq,
            method: method_name(&parts.method),
            path: path.clone(),
            query: parts.uri.query().map(|s| s.to_string()),
            endpoint,
            status: 0,
            fault,
            user: None,
            auth: None,
        });
        (chosen, seq)
    };
    if chosen.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(chosen.latency_ms)).await;
    }
    let mut malformed = false;
    if let Some(rule) = &chosen.terminal {
        match rule.kind {
            FaultKind::Status => {
                let resp = fault_response(rule, &path);
                set_log_status(&mut sim.lock(), seq, resp.status().as_u16(), None, None);
                return resp;
            }
            FaultKind::Drop => {
                // Unwind the connection task without a panic message: hyper closes the
                // socket and the client sees a connection error with no response.
                std::panic::resume_unwind(Box::new("sim-primero: dropped connection"));
            }
            FaultKind::MalformedJson => malformed = true,
            FaultKind::Latency => {}
        }
    }
    let (body, body_invalid) = if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        (Value::Null, false)
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v) => (v, false),
            Err(_) => (Value::Null, true),
        }
    };
    let params = query_params(&parts.uri);
    let r = Req {
        method: &parts.method,
        path: &path,
        params,
        headers: &parts.headers,
        body,
        body_invalid,
    };
    let (mut resp, user, auth) = {
        let mut st = sim.lock();
        let out = dispatch(&mut st, &route, &r);
        if !malformed {
            set_log_status(
                &mut st,
                seq,
                out.resp.status().as_u16(),
                out.user.clone(),
                out.auth,
            );
        }
        let csrf = out.csrf.unwrap_or_else(random_token);
        let mut resp = out.resp;
        if let Ok(v) = HeaderValue::from_str(&format!("CSRF-TOKEN={csrf}; path=/")) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
        (resp, out.user, out.auth)
    };
    if malformed {
        let (mut parts_r, body) = resp.into_parts();
        let full = to_bytes(body, usize::MAX).await.unwrap_or_default();
        let cut = (full.len() / 2).max(1).min(full.len().saturating_sub(1));
        let mut truncated = full[..cut].to_vec();
        if truncated.is_empty() {
            truncated = b"{\"data\":".to_vec();
        }
        parts_r.status = StatusCode::OK;
        parts_r.headers.remove(header::CONTENT_LENGTH);
        parts_r.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        set_log_status(&mut sim.lock(), seq, 200, user, auth);
        resp = Response::from_parts(parts_r, Body::from(truncated));
    }
    resp
}

/// Query params of a URI in order (percent-decoded).
pub fn query_params(uri: &Uri) -> Vec<(String, String)> {
    Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}
