//! The HTTP side of the simulator: B2C token endpoint, the four PING endpoints with APIM
//! subscription-key and bearer checks, the request log and fault middleware.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::conn::ConnHandle;
use crate::faults::{FaultSet, Terminal};
use crate::ingest::{check_data_array, process_batch, IngestKind};
use crate::json::{Doc, Json};
use crate::options::{
    AuthErrorBody, CheckStatusItemKeys, EmptyRecordCount, ErrorMode, IngestionErrorShape, Options,
    PagingMode, UnknownTransactionData,
};
use crate::rows::{make_cookie, page, read_cookie, Cookie, PageStart, RetrieveKind};
use crate::store::{Store, Transaction, TxStatus};

/// Path of the retrieval endpoint.
pub const RETRIEVE_PATH: &str = "/primes/fetch/paging/v3/retrievedatawithpaging";
/// Path of the check-status endpoint.
pub const CHECKSTATUS_PATH: &str = "/primes/ingestion/checkstatus/v1/pingdata";
/// Path of the token endpoint under the base URL.
pub const TOKEN_PATH: &str =
    "/primespingb2cuat.onmicrosoft.com/b2c_1_msawe-primes-ping-test-apim-rpocuf/oauth2/v2.0/token";

/// One logged request (`GET /_sim/requests`).
#[derive(Clone, Debug, Serialize)]
pub struct RequestLogEntry {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// `token`, `retrieve`, `data`, `asyncdata`, `checkstatus` or `unknown`.
    pub endpoint: String,
    /// Response status; null when the connection was dropped by a fault.
    pub status: Option<u16>,
    /// `ShippingProcessId` of the body, when present.
    pub shp: Option<String>,
    /// `SPHTransactionId` of the response, when there was one.
    pub sph_transaction_id: Option<String>,
    /// Fault(s) applied to the request, when any.
    pub fault: Option<String>,
}

/// The request log: the last [`Options::request_log_limit`] requests, and every request
/// counted by endpoint since the log was last cleared (so a long session, a demo left
/// running, does not grow the simulator without bound, and a benchmark's counts stay exact).
#[derive(Default)]
pub(crate) struct RequestLog {
    pub entries: std::collections::VecDeque<RequestLogEntry>,
    pub counts: std::collections::BTreeMap<String, u64>,
}

impl RequestLog {
    /// Adds `e`, dropping the oldest entries beyond `limit` (at least 1 is kept).
    pub fn push(&mut self, e: RequestLogEntry, limit: usize) {
        *self.counts.entry(e.endpoint.clone()).or_default() += 1;
        self.entries.push_back(e);
        self.trim(limit);
    }

    /// Drops the oldest entries beyond `limit` (at least 1 is kept); the counts stay.
    pub fn trim(&mut self, limit: usize) {
        while self.entries.len() > limit.max(1) {
            self.entries.pop_front();
        }
    }

    /// Forgets every entry and count.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.counts.clear();
    }
}

/// State shared by all handlers.
pub(crate) struct Shared {
    pub opts: RwLock<Options>,
    pub store: Mutex<Store>,
    pub faults: Mutex<FaultSet>,
    pub requests: Mutex<RequestLog>,
    pub tokens: Mutex<HashMap<String, Instant>>,
}

impl Shared {
    pub fn new(opts: Options) -> Self {
        Self {
            opts: RwLock::new(opts),
            store: Mutex::new(Store::default()),
            faults: Mutex::new(FaultSet::default()),
            requests: Mutex::new(RequestLog::default()),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// A snapshot of the options.
    pub fn opts(&self) -> Options {
        self.opts.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Locks a mutex, recovering from poisoning (state stays usable after a panic elsewhere).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Transaction id attached to a response for the request log.
#[derive(Clone)]
struct TxId(String);

/// Builds a JSON response (serialised from the borrowed value: pages can be large).
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = (status, bytes).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

fn with_tx(mut r: Response, txid: &str) -> Response {
    r.extensions_mut().insert(TxId(txid.to_string()));
    r
}

/// The router: API endpoints, token endpoint (fallback on `…/oauth2/v2.0/token`), control API.
pub(crate) fn router(sh: Arc<Shared>) -> Router {
    Router::new()
        .route(RETRIEVE_PATH, post(retrieve))
        .route("/api/ingestion/v2/{partner}/data", post(ingest_sync))
        .route("/api/ingestion/v2/{partner}/asyncdata", post(ingest_async))
        .route(CHECKSTATUS_PATH, post(checkstatus))
        .merge(crate::control::routes())
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(sh.clone(), observe))
        .with_state(sh)
}

/// Endpoint name of a request path (for faults and the log).
fn endpoint_of(path: &str) -> &'static str {
    if path.starts_with("/_sim/") || path == "/_sim" {
        "control"
    } else if path.ends_with("/oauth2/v2.0/token") {
        "token"
    } else if path == RETRIEVE_PATH {
        "retrieve"
    } else if path == CHECKSTATUS_PATH {
        "checkstatus"
    } else if path.starts_with("/api/ingestion/v2/") && path.ends_with("/asyncdata") {
        "asyncdata"
    } else if path.starts_with("/api/ingestion/v2/") && path.ends_with("/data") {
        "data"
    } else {
        "unknown"
    }
}

/// Case-insensitive top-level member lookup (contract item 11).
pub(crate) fn member<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The request body parsed as JSON (`None`: not JSON), once, by [`observe`]: it logs the
/// body's `ShippingProcessId`, and the ingestion handlers take the parse through
/// [`PreParsed`] rather than parsing their large batches again.
#[derive(Clone)]
struct ParsedBody(Option<Doc>);

/// Extractor: the [`ParsedBody`] `observe` left in the request extensions (taken out, not
/// copied). Handlers still extract the `Bytes` too, which keeps axum's body limit answer.
struct PreParsed(Option<ParsedBody>);

impl<S: Send + Sync> FromRequestParts<S> for PreParsed {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(PreParsed(parts.extensions.remove::<ParsedBody>()))
    }
}

impl PreParsed {
    /// The body parsed (`None`: not JSON): `observe`'s parse of these same bytes when there
    /// was one.
    fn doc(self, body: &[u8]) -> Option<Doc> {
        match self.0 {
            Some(ParsedBody(doc)) => doc,
            None => Doc::parse(body),
        }
    }
}

fn shp_of(body: &Doc) -> Option<String> {
    body.root()
        .member("ShippingProcessId")?
        .as_str()
        .map(str::to_string)
}

/// Middleware: request log, tracing and faults (applied before auth and handling, except
/// `apply_then_*`, which let the request be handled and then replace its answer).
async fn observe(State(sh): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let endpoint = endpoint_of(&path);
    if endpoint == "control" {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let conn = req
        .extensions()
        .get::<ConnectInfo<ConnHandle>>()
        .map(|c| c.0.clone());
    let (mut parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, 64 * 1024 * 1024).await {
        Ok(b) => b,
        Err(_) => Bytes::new(),
    };
    let parsed = Doc::parse(&bytes);
    let shp = parsed.as_ref().and_then(shp_of);
    parts.extensions.insert(ParsedBody(parsed));
    let decision = lock(&sh.faults).decide(endpoint);
    if decision.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(decision.latency_ms)).await;
    }
    let mut dropped = false;
    // The transaction id of a real answer a fault threw away (`apply_then_*`): logged, so
    // that a test can find what was applied, though the client never saw it.
    let mut lost_txid: Option<String> = None;
    let resp = match decision.terminal {
        Some(Terminal::Status {
            status,
            retry_after_secs,
        }) => fault_status(status, retry_after_secs),
        Some(Terminal::Drop) => {
            dropped = true;
            kill(conn.as_ref())
        }
        Some(Terminal::Malformed) => {
            let body = "{\"Data\":[{\"progres_interventionnumber\":\"LP-";
            let mut r = Response::new(Body::from(body));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            r
        }
        Some(Terminal::ApplyThenStatus {
            status,
            retry_after_secs,
        }) => {
            lost_txid =
                handle_then_discard(next, Request::from_parts(parts, Body::from(bytes))).await;
            fault_status(status, retry_after_secs)
        }
        Some(Terminal::ApplyThenDrop) => {
            lost_txid =
                handle_then_discard(next, Request::from_parts(parts, Body::from(bytes))).await;
            dropped = true;
            kill(conn.as_ref())
        }
        None => {
            let req = Request::from_parts(parts, Body::from(bytes));
            next.run(req).await
        }
    };
    let status = if dropped {
        None
    } else {
        Some(resp.status().as_u16())
    };
    let txid = lost_txid.or_else(|| resp.extensions().get::<TxId>().map(|t| t.0.clone()));
    tracing::info!(
        method = %method,
        path = %path,
        endpoint,
        status = status.map(i64::from).unwrap_or(-1),
        shp = shp.as_deref().unwrap_or(""),
        sph_transaction_id = txid.as_deref().unwrap_or(""),
        fault = decision.label.as_deref().unwrap_or(""),
        "ping-sim request"
    );
    let limit = sh
        .opts
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .request_log_limit;
    lock(&sh.requests).push(
        RequestLogEntry {
            method: method.to_string(),
            path,
            endpoint: endpoint.to_string(),
            status,
            shp,
            sph_transaction_id: txid,
            fault: decision.label,
        },
        limit,
    );
    resp
}

/// The answer of a `status` fault: `{"statusCode","message"}` (APIM's text for 429), with
/// `Retry-After` when asked for.
fn fault_status(status: u16, retry_after_secs: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let message = match (status, retry_after_secs) {
        (429, Some(s)) => format!("Rate limit is exceeded. Try again in {s} seconds."),
        (429, None) => "Rate limit is exceeded.".to_string(),
        _ => format!(
            "{} (simulated fault)",
            code.canonical_reason().unwrap_or("Error")
        ),
    };
    let mut r = json_response(code, &json!({"statusCode": status, "message": message}));
    if let Some(s) = retry_after_secs {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// Kills the connection (the `drop` faults); the returned response is never written.
fn kill(conn: Option<&ConnHandle>) -> Response {
    if let Some(c) = conn {
        c.kill();
    }
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// Handles the request as if no fault applied, then throws the answer away (`apply_then_*`
/// faults). Dropping the answer of `/asyncdata` releases its processing, as sending it
/// would. Returns the transaction id the lost answer carried.
async fn handle_then_discard(next: Next, req: Request) -> Option<String> {
    let real = next.run(req).await;
    let txid = real.extensions().get::<TxId>().map(|t| t.0.clone());
    drop(real);
    txid
}

async fn fallback(State(sh): State<Arc<Shared>>, method: Method, req: Request) -> Response {
    let path = req.uri().path().to_string();
    if path.ends_with("/oauth2/v2.0/token") {
        if method != Method::POST {
            return json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error": "invalid_request", "error_description": "AADB2C90055: The scope and grant type must be sent with POST."}),
            );
        }
        let bytes = axum::body::to_bytes(req.into_body(), 1024 * 1024)
            .await
            .unwrap_or_default();
        return token(&sh, &bytes);
    }
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"statusCode": 404, "message": "Resource not found"}),
    )
}

fn form_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A token-endpoint refusal: 400 with B2C's `{error, error_description}`, or an empty body
/// under `token_error_body: empty` (contract item 1 (A)).
fn b2c_error(shape: AuthErrorBody, error: &str, description: &str) -> Response {
    match shape {
        AuthErrorBody::Json => json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": error, "error_description": description}),
        ),
        AuthErrorBody::Empty => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// B2C ROPC token endpoint (contract item 1).
fn token(sh: &Shared, body: &[u8]) -> Response {
    let opts = sh.opts();
    let text = String::from_utf8_lossy(body);
    let mut form: HashMap<String, String> = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        form.insert(form_decode(k), form_decode(v));
    }
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if get("grant_type") != "password" {
        return b2c_error(
            opts.token_error_body,
            "unsupported_grant_type",
            "AADB2C90086: The supplied grant_type is not supported.",
        );
    }
    if get("client_id") != opts.client_id {
        return b2c_error(
            opts.token_error_body,
            "unauthorized_client",
            "AADB2C90057: The provided application is not configured to allow the 'OAuth' resource owner password credentials flow.",
        );
    }
    if !get("scope").split_whitespace().any(|s| s == opts.scope) {
        return b2c_error(
            opts.token_error_body,
            "invalid_scope",
            "AADB2C90146: The scope provided in the request is not supported.",
        );
    }
    if get("username") != opts.username || get("password") != opts.password {
        return b2c_error(
            opts.token_error_body,
            "invalid_grant",
            "AADB2C90225: The username or password provided in the request are invalid.",
        );
    }
    let tok = format!(
        "sim.{}.{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let exp = Instant::now() + Duration::from_secs(opts.token_expires_in_secs);
    {
        let mut t = lock(&sh.tokens);
        let now = Instant::now();
        t.retain(|_, e| *e > now);
        t.insert(tok.clone(), exp);
    }
    let expires_in = if opts.token_expires_in_as_string {
        Value::String(opts.token_expires_in_secs.to_string())
    } else {
        Value::from(opts.token_expires_in_secs)
    };
    json_response(
        StatusCode::OK,
        &json!({"access_token": tok, "token_type": "Bearer", "expires_in": expires_in}),
    )
}

fn apim_401(message: &str) -> Response {
    json_response(
        StatusCode::UNAUTHORIZED,
        &json!({"statusCode": 401, "message": message}),
    )
}

const BAD_TOKEN: &str = "Unauthorized. Access token is missing or invalid.";

/// The 401 answer to a missing, unknown, expired or revoked bearer token: APIM's
/// `{statusCode, message}`, or an empty body under `bearer_error_body: empty` (contract item
/// 3 (A)).
fn bearer_401(shape: AuthErrorBody) -> Response {
    match shape {
        AuthErrorBody::Json => apim_401(BAD_TOKEN),
        AuthErrorBody::Empty => StatusCode::UNAUTHORIZED.into_response(),
    }
}

/// Why [`check_auth`] refused a request.
enum AuthRefused {
    /// The subscription key is missing or wrong: APIM's message.
    Key(&'static str),
    /// The bearer token is missing, unknown, expired or revoked; the body to answer with.
    Bearer(AuthErrorBody),
}

impl AuthRefused {
    /// The 401 answer.
    fn response(self) -> Response {
        match self {
            AuthRefused::Key(message) => apim_401(message),
            AuthRefused::Bearer(shape) => bearer_401(shape),
        }
    }
}

/// Subscription key then bearer token (contract items 2-3).
fn check_auth(sh: &Shared, headers: &HeaderMap) -> Result<(), AuthRefused> {
    // Read in place: a snapshot of all the options would be copied for two of them.
    let bearer_error_body = {
        let opts = sh.opts.read().unwrap_or_else(|e| e.into_inner());
        match headers
            .get("Ocp-Apim-Subscription-Key")
            .and_then(|v| v.to_str().ok())
        {
            None => return Err(AuthRefused::Key("Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.")),
            Some(k) if k != opts.subscription_key => return Err(AuthRefused::Key("Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.")),
            Some(_) => {}
        }
        opts.bearer_error_body
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let tok = match auth.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => {
            t.trim()
        }
        _ => return Err(AuthRefused::Bearer(bearer_error_body)),
    };
    let valid = lock(&sh.tokens)
        .get(tok)
        .is_some_and(|exp| *exp > Instant::now());
    if valid {
        Ok(())
    } else {
        Err(AuthRefused::Bearer(bearer_error_body))
    }
}

/// A refused retrieval or ingestion request (items 8, 9): 400 or 200 with `ErrorMessage`.
fn request_error(mode: ErrorMode, txid: &str, message: &str) -> Response {
    let status = match mode {
        ErrorMode::Http400 => StatusCode::BAD_REQUEST,
        ErrorMode::Ok200 => StatusCode::OK,
    };
    with_tx(
        json_response(
            status,
            &json!({"Data": null, "ErrorMessage": message, "RecordCount": null, "SPHTransactionId": txid}),
        ),
        txid,
    )
}

const NOT_JSON: &str = "Request body is not valid JSON";
const NOT_AN_OBJECT: &str = "Request body must be a JSON object";

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(NOT_AN_OBJECT.into()),
        Err(_) => Err(NOT_JSON.into()),
    }
}

/// The top-level members [`check_ids`] reads, as strings (`None`: absent or not a string),
/// of a body parsed either way.
trait BodyIds {
    fn member_str(&self, name: &str) -> Option<&str>;
}

impl BodyIds for Map<String, Value> {
    fn member_str(&self, name: &str) -> Option<&str> {
        member(self, name).and_then(Value::as_str)
    }
}

impl BodyIds for Json<'_> {
    fn member_str(&self, name: &str) -> Option<&str> {
        self.member(name).and_then(Json::as_str)
    }
}

/// Checks `ShippingProcessId`, `PartnerId` (when `partner` says so) and `InteropID`.
fn check_ids(opts: &Options, body: &impl BodyIds, check_partner: bool) -> Result<String, String> {
    let shp = body
        .member_str("ShippingProcessId")
        .ok_or("ShippingProcessId is required")?
        .to_string();
    if check_partner {
        match body.member_str("PartnerId") {
            Some(p) if p == opts.partner_id => {}
            Some(_) => return Err("PartnerId does not match this partner".into()),
            None => return Err("PartnerId is required".into()),
        }
    }
    match body.member_str("InteropID") {
        Some(i) if i == opts.interop_id => {}
        Some(_) => return Err("InteropID does not match this partner's interoperability".into()),
        None => return Err("InteropID is required".into()),
    }
    Ok(shp)
}

fn retrieve_kind(opts: &Options, shp: &str) -> Option<RetrieveKind> {
    let s = &opts.shipping_processes;
    if shp == s.pending_referrals {
        Some(RetrieveKind::Pending)
    } else if shp == s.intervention_details {
        Some(RetrieveKind::Details)
    } else if shp == s.decision_list {
        Some(RetrieveKind::DecisionList)
    } else if shp == s.decision_details {
        Some(RetrieveKind::DecisionDetails)
    } else {
        None
    }
}

/// Parses `{record_ids}`: one GUID or `[g1,g2]`; duplicates removed, order kept.
fn parse_record_ids(v: &str) -> Result<Vec<String>, String> {
    let t = v.trim();
    let parts: Vec<&str> = match t.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
        Some(inner) => inner.split(',').map(str::trim).collect(),
        None => vec![t],
    };
    let mut out: Vec<String> = Vec::new();
    for p in parts {
        if !crate::model::is_guid(p) {
            return Err(
                "Parameter {record_ids} must be a GUID or a bracketed list of GUIDs".into(),
            );
        }
        if !out.iter().any(|o| o.eq_ignore_ascii_case(p)) {
            out.push(p.to_string());
        }
    }
    Ok(out)
}

fn page_number(v: Option<&Value>) -> Result<i64, String> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|n| *n >= 0)
            .ok_or_else(|| "PageNumber must be a non-negative integer".into()),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| "PageNumber must be a non-negative integer".into()),
        Some(_) => Err("PageNumber must be a non-negative integer".into()),
    }
}

/// The request's `PagingCookie`: absent, null or empty is none; anything else must be one of
/// ours, for this shipping process.
fn paging_cookie(shp: &str, body: &Map<String, Value>) -> Result<Option<Cookie>, String> {
    match member(body, "PagingCookie") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(c)) if c.is_empty() => Ok(None),
        Some(Value::String(c)) => read_cookie(shp, c)
            .map(Some)
            .ok_or_else(|| "PagingCookie is not valid for this shipping process".into()),
        Some(_) => Err("PagingCookie must be a string".into()),
    }
}

/// Where the requested page starts and the `PageNumber` its answer reports, by the
/// `paging_mode` switch (item 10 (A)).
fn paging_position(
    mode: PagingMode,
    page_size: usize,
    shp: &str,
    body: &Map<String, Value>,
) -> Result<(PageStart, i64), String> {
    match mode {
        PagingMode::CookieAndPage => {
            let number = page_number(member(body, "PageNumber"))?;
            let after = paging_cookie(shp, body)?.map(|c| c.last);
            // No silent restart from page one.
            if after.is_none() && number >= 2 {
                return Err(format!(
                    "PagingCookie is required to request PageNumber {number}"
                ));
            }
            Ok((PageStart::After(after), number))
        }
        PagingMode::PageNumber => {
            let number = page_number(member(body, "PageNumber"))?.max(1);
            let skip = usize::try_from(number - 1)
                .unwrap_or(usize::MAX)
                .saturating_mul(page_size);
            Ok((PageStart::Skip(skip), number))
        }
        PagingMode::CookieOnly => Ok(match paging_cookie(shp, body)? {
            Some(c) => (PageStart::After(Some(c.last)), c.page.max(1)),
            None => (PageStart::After(None), 1),
        }),
    }
}

/// `POST /primes/fetch/paging/v3/retrievedatawithpaging` (items 4-10).
async fn retrieve(State(sh): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = check_auth(&sh, &headers) {
        return refused.response();
    }
    let opts = sh.opts();
    let txid = crate::new_guid();
    let err = |m: &str| request_error(opts.request_error_mode, &txid, m);
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(e) => return err(&e),
    };
    let shp = match check_ids(&opts, &body, true) {
        Ok(s) => s,
        Err(e) => return err(&e),
    };
    let Some(kind) = retrieve_kind(&opts, &shp) else {
        return err(&format!(
            "Shipping process {shp} is not defined for retrieval"
        ));
    };
    let mut record_ids: Option<Vec<String>> = None;
    match member(&body, "QueryParameters") {
        None | Some(Value::Null) => {}
        Some(Value::Array(params)) => {
            for p in params {
                let name = p.get("ParameterName").and_then(Value::as_str).unwrap_or("");
                if name == "{record_ids}" && kind.takes_record_ids() {
                    let value = match p.get("Value") {
                        Some(Value::String(s)) => s.clone(),
                        _ => return err("Parameter {record_ids} must have a string Value"),
                    };
                    match parse_record_ids(&value) {
                        Ok(ids) => record_ids = Some(ids),
                        Err(e) => return err(&e),
                    }
                } else {
                    return err(&format!(
                        "Parameter {name} is not defined for shipping process {shp}"
                    ));
                }
            }
        }
        Some(_) => return err("QueryParameters must be an array"),
    }
    if kind.takes_record_ids() && record_ids.is_none() {
        return err(&format!(
            "Parameter {{record_ids}} is required for shipping process {shp}"
        ));
    }
    let (start, number) = match paging_position(opts.paging_mode, opts.page_size, &shp, &body) {
        Ok(p) => p,
        Err(e) => return err(&e),
    };
    let ids = record_ids.unwrap_or_default();
    let (rows, more) = {
        let store = lock(&sh.store);
        page(
            &store,
            kind,
            &ids,
            opts.drop_transferred_from_pending,
            start,
            opts.page_size,
        )
    };
    let cookie = if more {
        rows.last()
            .map(|(k, _)| Value::String(make_cookie(&shp, number, *k)))
            .unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    let count = rows.len();
    let (data, record_count) = if count == 0 {
        (
            Value::String("No Data Available".into()),
            match opts.empty_record_count {
                EmptyRecordCount::Null => Value::Null,
                EmptyRecordCount::Zero => Value::from(0),
            },
        )
    } else {
        (
            Value::Array(rows.into_iter().map(|(_, r)| Value::Object(r)).collect()),
            Value::from(count),
        )
    };
    with_tx(
        json_response(
            StatusCode::OK,
            &json!({
                "Data": data,
                "ErrorMessage": null,
                "RecordCount": record_count,
                "SPHTransactionId": txid,
                "PagingSummary": {"PagingCookie": cookie, "PageNumber": number, "IsMoreRecordsAvailable": more},
            }),
        ),
        &txid,
    )
}

/// Common checks of both ingestion endpoints; returns (kind, shp, records).
fn ingest_prelude(
    opts: &Options,
    partner: &str,
    pre: PreParsed,
    body: &[u8],
    want_async: bool,
) -> Result<(IngestKind, String, Doc), String> {
    if partner != opts.partner_id {
        return Err("PartnerId in the path does not match this partner".into());
    }
    let body = pre.doc(body).ok_or(NOT_JSON)?;
    if !body.root().is_object() {
        return Err(NOT_AN_OBJECT.into());
    }
    let shp = check_ids(opts, &body.root(), false)?;
    let kind = IngestKind::of(opts, &shp)
        .ok_or_else(|| format!("Shipping process {shp} is not defined for ingestion"))?;
    if kind.is_async() != want_async {
        return Err(if want_async {
            format!("Shipping process {shp} is synchronous; use /data")
        } else {
            format!("Shipping process {shp} is asynchronous; use /asyncdata")
        });
    }
    // Taken out of the body rather than copied (`member`'s first case-insensitive match).
    let records = check_data_array(body.into_member("Data"))?;
    Ok((kind, shp, records))
}

/// `POST /api/ingestion/v2/{PartnerId}/data` (items 12-14).
async fn ingest_sync(
    State(sh): State<Arc<Shared>>,
    Path(partner): Path<String>,
    headers: HeaderMap,
    pre: PreParsed,
    body: Bytes,
) -> Response {
    if let Err(refused) = check_auth(&sh, &headers) {
        return refused.response();
    }
    let opts = sh.opts();
    let txid = crate::new_guid();
    let (kind, shp, records) = match ingest_prelude(&opts, &partner, pre, &body, false) {
        Ok(x) => x,
        Err(e) => return request_error(opts.request_error_mode, &txid, &e),
    };
    let (outcome, summary) = {
        let mut store = lock(&sh.store);
        let mut outcome = process_batch(&mut store, &opts, kind, &shp, &records, &txid);
        let summary = outcome.summary();
        // The items go to the transaction; the answer needs only the counts and failures.
        store.put_transaction(Transaction {
            id: txid.clone(),
            shp,
            kind: "sync",
            received_at: chrono::Utc::now().to_rfc3339(),
            status: TxStatus::Processed,
            error_message: summary.clone(),
            items: std::mem::take(&mut outcome.items),
            pending_records: None,
        });
        (outcome, summary)
    };
    if outcome.failed.is_empty() {
        let mut body =
            json!({"SPHTransactionId": txid, "ErrorMessage": null, "RecordCount": outcome.applied});
        if opts.omit_transaction_id {
            omit_transaction_id(&mut body);
        }
        return with_tx(json_response(StatusCode::OK, &body), &txid);
    }
    let status = if outcome.applied > 0 || opts.ingestion_error_mode == ErrorMode::Ok200 {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let body = match opts.ingestion_error_shape {
        IngestionErrorShape::Structured => {
            let failed: Vec<Value> = outcome
                .failed
                .iter()
                .map(|(ext, msg)| json!({"ExternalId": ext, "ErrorMessage": msg}))
                .collect();
            let mut body = json!({"SPHTransactionId": txid, "ErrorMessage": summary});
            if outcome.applied > 0 {
                body["RecordCount"] = Value::from(outcome.applied);
            }
            body["FailedRecords"] = Value::Array(failed);
            if opts.omit_transaction_id && outcome.applied > 0 {
                omit_transaction_id(&mut body);
            }
            body
        }
        IngestionErrorShape::Plain => json!({"ErrorMessage": plain_error_message(&outcome.failed)}),
    };
    with_tx(json_response(status, &body), &txid)
}

/// The `ErrorMessage` of the plain error shape (`ingestion_error_shape: plain`): each failed
/// record as `ExternalId <id>: <reason>`, joined by `; `; a record without a usable
/// `ExternalId` contributes its reason alone (which says so).
fn plain_error_message(failed: &[(Value, String)]) -> String {
    failed
        .iter()
        .map(|(ext, msg)| match ext.as_str() {
            Some(id) => format!("ExternalId {id}: {msg}"),
            None => msg.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The `omit_transaction_id` switch: an answer that accepted records loses its
/// `SPHTransactionId` (the transaction is still stored and logged under its id).
fn omit_transaction_id(body: &mut Value) {
    if let Some(o) = body.as_object_mut() {
        o.remove("SPHTransactionId");
    }
}

/// Fires a oneshot when dropped (the response body has been handed to the connection).
struct AfterSend(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for AfterSend {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// `POST /api/ingestion/v2/{PartnerId}/asyncdata` (item 15).
async fn ingest_async(
    State(sh): State<Arc<Shared>>,
    Path(partner): Path<String>,
    headers: HeaderMap,
    pre: PreParsed,
    body: Bytes,
) -> Response {
    if let Err(refused) = check_auth(&sh, &headers) {
        return refused.response();
    }
    let opts = sh.opts();
    let txid = crate::new_guid();
    let (kind, shp, records) = match ingest_prelude(&opts, &partner, pre, &body, true) {
        Ok(x) => x,
        Err(e) => return request_error(opts.request_error_mode, &txid, &e),
    };
    lock(&sh.store).put_transaction(Transaction {
        id: txid.clone(),
        shp: shp.clone(),
        kind: "async",
        received_at: chrono::Utc::now().to_rfc3339(),
        status: TxStatus::Pending,
        error_message: None,
        items: Vec::new(),
        pending_records: Some(records),
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task_sh = sh.clone();
    let task_id = txid.clone();
    tokio::spawn(async move {
        let _ = rx.await;
        let delay = task_sh.opts().async_delay_ms;
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        process_async(&task_sh, &task_id, kind);
    });
    let mut answer = json!({"SPHTransactionId": txid});
    if opts.omit_transaction_id {
        omit_transaction_id(&mut answer);
    }
    let bytes = Bytes::from(serde_json::to_vec(&answer).unwrap_or_default());
    let len = bytes.len();
    let guard = AfterSend(Some(tx));
    let stream = futures::stream::once(async move {
        let _guard = guard;
        Ok::<Bytes, std::convert::Infallible>(bytes)
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    with_tx(r, &txid)
}

/// Processes a pending async transaction (validation happens here, item 15).
pub(crate) fn process_async(sh: &Shared, txid: &str, kind: IngestKind) {
    let opts = sh.opts();
    let mut store = lock(&sh.store);
    let Some(tx) = store.transaction_mut(txid) else {
        return;
    };
    let Some(records) = tx.pending_records.take() else {
        return;
    };
    let shp = tx.shp.clone();
    let outcome = process_batch(&mut store, &opts, kind, &shp, &records, txid);
    if let Some(tx) = store.transaction_mut(txid) {
        tx.error_message = outcome.summary();
        tx.items = outcome.items;
        tx.status = TxStatus::Processed;
    }
}

/// Serializes items as the legacy malformed string: inner `Data` objects are embedded as
/// `"{"k":"v"}"` with unescaped quotes, never as an item's last key (item 17).
fn legacy_data_string(items: &[crate::store::ItemResult], keys: CheckStatusItemKeys) -> String {
    let mut s = String::from("[");
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        if keys == CheckStatusItemKeys::DataOnly {
            s.push_str("{\"Key1\":null,\"Data\":\"{");
            push_inner(&mut s, &it.data);
            s.push_str("}\",\"Key2\":null}");
            continue;
        }
        s.push_str("{\"ExternalId\":");
        s.push_str(&it.external_id.to_string());
        s.push_str(",\"Data\":\"{");
        push_inner(&mut s, &it.data);
        s.push_str("}\",\"RecordStatus\":");
        s.push_str(if it.success {
            "\"Success\""
        } else {
            "\"Failed\""
        });
        s.push_str(",\"ErrorMessage\":");
        s.push_str(&json!(it.error).to_string());
        s.push('}');
    }
    s.push(']');
    s
}

/// An inner `Data` object's members, quotes unescaped (the legacy malformed string).
fn push_inner(s: &mut String, data: &[(&str, Value)]) {
    for (j, (k, v)) in data.iter().enumerate() {
        if j > 0 {
            s.push(',');
        }
        s.push_str(&Value::String((*k).to_owned()).to_string());
        s.push(':');
        s.push_str(&v.to_string());
    }
}

/// `POST /primes/ingestion/checkstatus/v1/pingdata` (items 16-17).
async fn checkstatus(State(sh): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = check_auth(&sh, &headers) {
        return refused.response();
    }
    let opts = sh.opts();
    let txid_err = crate::new_guid();
    let body = match parse_body(&body) {
        Ok(b) => b,
        Err(e) => return request_error(opts.request_error_mode, &txid_err, &e),
    };
    let shp = match check_ids(&opts, &body, true) {
        Ok(s) => s,
        Err(e) => return request_error(opts.request_error_mode, &txid_err, &e),
    };
    if IngestKind::of(&opts, &shp).is_none() {
        return request_error(
            opts.request_error_mode,
            &txid_err,
            &format!("Shipping process {shp} is not defined for ingestion"),
        );
    }
    let Some(id) = member(&body, "SPHTransactionId").and_then(Value::as_str) else {
        return request_error(
            opts.request_error_mode,
            &txid_err,
            "SPHTransactionId is required",
        );
    };
    let id = id.to_string();
    let tx = lock(&sh.store).transaction(&id).cloned();
    let body = match tx {
        None => {
            let mut body = json!({"SPHTransactionId": id, "Status": null, "ErrorMessage": "Transaction not found", "Data": null});
            if opts.checkstatus_unknown_data == UnknownTransactionData::Absent {
                if let Some(o) = body.as_object_mut() {
                    o.remove("Data");
                }
            }
            body
        }
        Some(tx) if tx.status == TxStatus::Pending => {
            json!({"SPHTransactionId": id, "Status": "Pending", "ErrorMessage": null, "Data": []})
        }
        Some(tx) => {
            let data = if opts.checkstatus_legacy_malformed {
                Value::String(legacy_data_string(&tx.items, opts.checkstatus_item_keys))
            } else {
                Value::Array(
                    tx.items
                        .iter()
                        .map(|i| i.to_json(opts.checkstatus_item_keys))
                        .collect(),
                )
            };
            json!({"SPHTransactionId": id, "Status": "Processed", "ErrorMessage": tx.error_message, "Data": data})
        }
    };
    with_tx(json_response(StatusCode::OK, &body), &id)
}
