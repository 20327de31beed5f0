//! The Primero v2 client: settings, authentication state, the request loop (shared retry
//! policy, concurrency limit, request observation) and the calls the flows use.
//!
//! Writes are made safe to retry: `create_case` sends a client-generated record `id` (Primero
//! answers 204; a retried POST that meets 409 reads the case back by that id), and new subform
//! rows get a `unique_id` before sending, so a repeated PATCH merges into the same row instead
//! of appending a twin.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use pp_http::{HttpSettings, Limiter, RetryPolicy};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Map, Value};
use url::Url;

use crate::auth::{self, AuthMode, Token};
use crate::error::{self, PrimeroError};
use crate::model::{Case, Referral, ReferralStatus, TransitionOutcome, User, Users};
use crate::query::CaseQuery;

/// System name used in logs and metrics.
pub const SYSTEM: &str = "primero";
/// Page size asked for; Primero >= 2.10.3 clamps `per` to 1000.
pub const PAGE_SIZE: u64 = 1000;
/// A listing that has not ended after this many pages is treated as a server fault.
const MAX_PAGES: u64 = 100_000;

/// Route templates reported to the request observer.
pub mod routes {
    pub const TOKENS: &str = "/api/v2/tokens";
    pub const CASES: &str = "/api/v2/cases";
    pub const CASE: &str = "/api/v2/cases/:id";
    pub const REFERRALS: &str = "/api/v2/cases/:id/referrals";
    pub const REFERRAL: &str = "/api/v2/cases/:id/referrals/:referral_id";
    pub const USERS: &str = "/api/v2/users";
}

/// Where and how to reach Primero.
#[derive(Clone)]
pub struct PrimeroSettings {
    /// The server's root (`https://primero.example.org` or with a path prefix); `/api/v2/...`
    /// is appended.
    pub base_url: Url,
    pub username: String,
    pub password: SecretString,
    pub auth: AuthMode,
    pub http: HttpSettings,
}

impl PrimeroSettings {
    /// Basic auth and the default HTTP policy.
    pub fn new(base_url: Url, username: impl Into<String>, password: SecretString) -> Self {
        PrimeroSettings {
            base_url,
            username: username.into(),
            password,
            auth: AuthMode::Basic,
            http: HttpSettings::default(),
        }
    }
}

impl fmt::Debug for PrimeroSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrimeroSettings")
            .field("base_url", &clean_base(&self.base_url).as_str())
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("auth", &self.auth)
            .field("http", &self.http)
            .finish()
    }
}

/// The base URL without credentials, query or fragment.
fn clean_base(url: &Url) -> Url {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u
}

/// Counts of one paged case listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListStats {
    /// Pages read.
    pub pages: u64,
    /// Cases handed to the caller (each id once).
    pub cases: usize,
    /// Records seen again on a later page (offset paging over a changing list) and skipped.
    pub duplicates: usize,
    /// Records that did not match an exact filter (the server ignored it) and were skipped.
    pub filtered_out: usize,
    /// Records without an `id`, skipped.
    pub malformed: usize,
}

/// A Primero v2 client. Cheap to clone; clones share the connection pool, the concurrency
/// limit and the login.
#[derive(Clone)]
pub struct PrimeroClient {
    inner: Arc<Inner>,
}

struct Inner {
    base: Url,
    username: String,
    password: SecretString,
    auth: AuthMode,
    retry: RetryPolicy,
    http: reqwest::Client,
    limiter: Limiter,
    basic: HeaderValue,
    /// The legacy bearer token; the lock is held during a login so that concurrent callers
    /// wait for one login instead of starting their own.
    token: tokio::sync::Mutex<Option<Token>>,
    logins: AtomicU64,
}

impl fmt::Debug for PrimeroClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrimeroClient")
            .field("base_url", &self.inner.base.as_str())
            .field("username", &self.inner.username)
            .field("auth", &self.inner.auth)
            .finish()
    }
}

/// A successful answer: status and parsed body (`None` when empty, as for 204).
struct Reply {
    status: u16,
    body: Option<Value>,
}

/// One page of a paged listing.
struct ListPage {
    items: Vec<Map<String, Value>>,
    total: Option<u64>,
    per: Option<u64>,
}

enum Created {
    Reply(Reply),
    /// A retried POST met 409: the first attempt may have created the case.
    Conflict(PrimeroError),
}

impl PrimeroClient {
    /// Checks the settings and builds the HTTP client; nothing is sent.
    pub fn new(settings: PrimeroSettings) -> Result<Self, PrimeroError> {
        let PrimeroSettings {
            base_url,
            username,
            password,
            auth,
            http,
        } = settings;
        if !matches!(base_url.scheme(), "http" | "https") || base_url.cannot_be_a_base() {
            return Err(PrimeroError::invalid(
                "primero base_url must be an http(s) URL",
            ));
        }
        let username = username.trim().to_string();
        if username.is_empty() {
            return Err(PrimeroError::invalid("primero username is empty"));
        }
        if password.expose_secret().is_empty() {
            return Err(PrimeroError::invalid("primero password is empty"));
        }
        let basic = auth::basic_header(&username, &password);
        Ok(PrimeroClient {
            inner: Arc::new(Inner {
                base: clean_base(&base_url),
                username,
                password,
                auth,
                retry: http.retry.clone(),
                http: pp_http::build_client(&http),
                limiter: Limiter::new(http.max_concurrency),
                basic,
                token: tokio::sync::Mutex::new(None),
                logins: AtomicU64::new(0),
            }),
        })
    }

    /// How many logins (`POST /api/v2/tokens`) this client has made (token mode only).
    pub fn login_count(&self) -> u64 {
        self.inner.logins.load(Ordering::SeqCst)
    }

    // ---- cases -------------------------------------------------------------------------

    /// Every case matching the query, all pages, each id once.
    pub async fn list_cases(&self, query: &CaseQuery) -> Result<Vec<Case>, PrimeroError> {
        let mut all: Vec<Case> = Vec::new();
        self.for_each_case_page(query, |page| {
            all.extend(page);
            async { Ok::<(), PrimeroError>(()) }
        })
        .await?;
        Ok(all)
    }

    /// Reads the listing page by page (`per=1000`) and hands each page to `on_page` before the
    /// next is fetched, so memory stays bounded by a page (plus the ids already seen, used to
    /// drop records that offset paging shows twice). An error from `on_page` stops the listing.
    /// [`PrimeroClient::case_pages`] fetches the next page while the caller works on one.
    pub async fn for_each_case_page<F, Fut, E>(
        &self,
        query: &CaseQuery,
        mut on_page: F,
    ) -> Result<ListStats, E>
    where
        F: FnMut(Vec<Case>) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: From<PrimeroError>,
    {
        query.validate()?;
        let base_params = query.params();
        let mut listing = Listing::new(query.clone());
        let mut page: u64 = 1;
        loop {
            let fetched = fetch_page(self, &base_params, page, query).await?;
            let received = fetched.cases.len() as u64;
            let more = listing.has_more(page, received, fetched.per, fetched.total);
            let cases = listing.digest(fetched.cases);
            if !cases.is_empty() {
                on_page(cases).await?;
            }
            if !more {
                break;
            }
            page += 1;
            if page > MAX_PAGES {
                return Err(PrimeroError::malformed(200, "case listing did not end").into());
            }
        }
        listing.finish();
        Ok(listing.stats)
    }

    /// The listing of [`PrimeroClient::for_each_case_page`] as pages to pull, with the next page
    /// read in the background while the caller works on the current one: the caller's work
    /// and the next request (and the parsing of its answer) overlap, and memory stays bounded
    /// by two pages. The first page is requested at once. Must be called within a Tokio
    /// runtime; dropping the [`CasePages`] cancels the requests in flight.
    pub fn case_pages(&self, query: &CaseQuery) -> Result<CasePages, PrimeroError> {
        self.case_pages_ahead(query, 1)
    }

    /// [`PrimeroClient::case_pages`] with up to `ahead` pages (at least 1) requested in the
    /// background at once, once the first page has told how many there are (its `total` and
    /// `per`; without them, one page at a time). Pages are still handed over in order, each id
    /// once; memory is bounded by `ahead + 1` pages. For listings whose pages are small (few
    /// `fields`) and whose caller is quicker than the round trips.
    pub fn case_pages_ahead(
        &self,
        query: &CaseQuery,
        ahead: usize,
    ) -> Result<CasePages, PrimeroError> {
        self.case_pages_in_parts(query, ahead, usize::MAX)
    }

    /// [`PrimeroClient::case_pages_ahead`] with each page handed over in parts of at most
    /// `part` records (at least 1). A page's records are parsed in the background a part at a
    /// time, each once the one before it is taken, so the caller works on the first part
    /// while the next is parsed (and the parsing does not compete with the caller for the
    /// CPU): the first 100 cases of a page of 1,000 are handed over several milliseconds
    /// sooner.
    pub fn case_pages_in_parts(
        &self,
        query: &CaseQuery,
        ahead: usize,
        part: usize,
    ) -> Result<CasePages, PrimeroError> {
        query.validate()?;
        let base_params = query.params();
        let mut pages = CasePages {
            client: self.clone(),
            base_params,
            listing: Listing::new(query.clone()),
            next: VecDeque::new(),
            current: None,
            part: part.max(1),
            requested: 0,
            ahead: ahead.max(1),
            page: 0,
            finished: false,
            failed: false,
        };
        pages.request_next();
        Ok(pages)
    }

    /// One case by its record `id`; `None` when Primero answers 404.
    pub async fn get_case(&self, id: &str) -> Result<Option<Case>, PrimeroError> {
        check_id(id, "case id")?;
        let url = self.url(&["cases", id]);
        match self
            .call(&Method::GET, routes::CASE, &url, None, decode_record)
            .await
        {
            Ok(map) => Case::from_data(map).map(Some),
            Err(PrimeroError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a case and returns it as stored (with the server's `id`, `case_id`, `short_id`,
    /// ...), read back when Primero answers 204 without a body, except when the caller chose
    /// both `id` and `case_id`: then the case as sent is returned, saving a request. `data`
    /// must hold a non-blank `module_id` (checked before sending: without it Primero stores
    /// core fields only). A record `id` (UUID) is generated when `data` has none,
    /// so that a retry after a lost answer cannot create a second case. With a caller-chosen
    /// `id`, a 409 (the case exists) returns the existing case, so a later run repeating the
    /// create after a crash gets the case an earlier run created instead of an error.
    pub async fn create_case(&self, mut data: Map<String, Value>) -> Result<Case, PrimeroError> {
        match data.get("module_id") {
            Some(Value::String(s)) if !s.trim().is_empty() => {}
            _ => {
                return Err(PrimeroError::invalid(
                    "create_case needs module_id (Primero would store core fields only)",
                ))
            }
        }
        // A caller-chosen id (derived from the source record) makes the create idempotent
        // across runs too: a 409 for it means an earlier run's create went through.
        let (id, caller_id) = match data.get("id") {
            None | Some(Value::Null) => {
                let id = uuid::Uuid::new_v4().to_string();
                data.insert("id".into(), Value::String(id.clone()));
                (id, false)
            }
            Some(Value::String(s)) if is_uuid(s) => (s.clone(), true),
            Some(_) => return Err(PrimeroError::invalid("case id must be a UUID")),
        };
        assign_row_ids(&mut data);
        // With both the record id and the case_id chosen by the caller, Primero's 204 leaves
        // nothing to learn: the case is what was sent (plus server fields such as short_id and
        // created_at, which no caller of this method reads), so it is not read back.
        let known = caller_id
            && matches!(data.get("case_id"), Some(Value::String(c)) if !c.trim().is_empty());
        let sent = known.then(|| data.clone());
        let body = json!({ "data": Value::Object(data) });
        let url = self.url(&["cases"]);
        let (body, url) = (&body, &url);
        let created = pp_http::with_retries(&self.inner.retry, SYSTEM, |attempt| async move {
            match self
                .attempt(&Method::POST, routes::CASES, url, Some(body))
                .await
            {
                Ok((status, bytes)) => Ok(Created::Reply(Reply {
                    status,
                    body: parse_body(status, &bytes)?,
                })),
                Err(e @ PrimeroError::Permanent { status: 409, .. })
                    if attempt > 1 || caller_id =>
                {
                    Ok(Created::Conflict(e))
                }
                Err(e) => Err(e),
            }
        })
        .await?;
        match (created, sent) {
            (
                Created::Reply(Reply {
                    body: Some(body), ..
                }),
                _,
            ) => Case::from_data(decode_record(Reply {
                status: 200,
                body: Some(body),
            })?),
            (Created::Reply(Reply { status: 204, .. }), Some(sent)) => Case::from_data(sent),
            (Created::Reply(Reply { status, .. }), _) => {
                self.get_case(&id).await?.ok_or_else(|| {
                    PrimeroError::malformed(status, "the created case could not be read back")
                })
            }
            (Created::Conflict(err), _) => self.get_case(&id).await?.ok_or(err),
        }
    }

    /// Merges `data` into the case (Primero's PATCH: unsent keys kept, subform rows merged by
    /// `unique_id`, rows with a new `unique_id` appended). Rows without a `unique_id` get one
    /// before sending. Returns what Primero sends back: `id`, `enabled`, `last_updated_at` and
    /// the changed fields (a changed subform whole). 404 → [`PrimeroError::NotFound`].
    pub async fn patch_case(
        &self,
        id: &str,
        mut data: Map<String, Value>,
    ) -> Result<Case, PrimeroError> {
        check_id(id, "case id")?;
        if data.is_empty() {
            return Err(PrimeroError::invalid(
                "patch_case with no fields (a no-op PATCH still bumps last_updated_at)",
            ));
        }
        assign_row_ids(&mut data);
        let body = json!({ "data": Value::Object(data) });
        let url = self.url(&["cases", id]);
        let map = self
            .call(
                &Method::PATCH,
                routes::CASE,
                &url,
                Some(&body),
                decode_record,
            )
            .await?;
        Case::from_data(map)
    }

    // ---- referrals ---------------------------------------------------------------------

    /// The referrals of a case (Primero does not page them). 404 → [`PrimeroError::NotFound`].
    pub async fn list_referrals(&self, case_id: &str) -> Result<Vec<Referral>, PrimeroError> {
        check_id(case_id, "case id")?;
        let url = self.url(&["cases", case_id, "referrals"]);
        let items = self
            .call(&Method::GET, routes::REFERRALS, &url, None, decode_array)
            .await?;
        let total = items.len();
        let referrals: Vec<Referral> = items
            .into_iter()
            .filter_map(|m| Referral::from_data(m).ok())
            .collect();
        if referrals.len() < total {
            tracing::warn!(
                system = SYSTEM,
                skipped = total - referrals.len(),
                "referrals without id or status were skipped"
            );
        }
        Ok(referrals)
    }

    /// Moves a referral to `status` and checks that it moved: Primero answers 200 with the
    /// referral unchanged when the move is not allowed, which gives `applied: false`. A
    /// referral already in `status` gives `applied: true, already_in_state: true` and no PATCH
    /// is sent (a PATCH would bump the case's `last_updated_at`). `rejected_reason` is sent
    /// when given. Unknown case or referral → [`PrimeroError::NotFound`].
    ///
    /// This reads the case's referrals first; a caller that has just read them (and checked
    /// the current status itself) uses [`PrimeroClient::patch_referral_status`] instead.
    pub async fn set_referral_status(
        &self,
        case_id: &str,
        referral_id: &str,
        status: ReferralStatus,
        rejected_reason: Option<&str>,
    ) -> Result<TransitionOutcome, PrimeroError> {
        check_id(case_id, "case id")?;
        check_id(referral_id, "referral id")?;
        let current = self.list_referrals(case_id).await?;
        if let Some(r) = current.into_iter().find(|r| r.id == referral_id) {
            if r.status == status.as_str() {
                return Ok(TransitionOutcome {
                    applied: true,
                    already_in_state: true,
                    returned_status: r.status.clone(),
                    referral: r,
                });
            }
        }
        // Not listed (Primero finds the referral by id globally) or in another status: the
        // PATCH decides, and answers 404 when the referral does not exist.
        self.patch_referral_status(case_id, referral_id, status, rejected_reason)
            .await
    }

    /// PATCHes a referral the caller has just read to `status` (with `rejected_reason` when
    /// given), without reading the referrals again, and verifies the write from the answer
    /// (R8): Primero answers 200 with the referral unchanged when the move is not allowed,
    /// which gives `applied: false` and the status it kept. `already_in_state` is always
    /// `false`: the caller is expected to have checked the current status (a PATCH to the
    /// status the referral already has is answered unchanged, so counts as applied, but still
    /// bumps the case's `last_updated_at`). An answer about another referral is malformed.
    /// Unknown case or referral → [`PrimeroError::NotFound`].
    pub async fn patch_referral_status(
        &self,
        case_id: &str,
        referral_id: &str,
        status: ReferralStatus,
        rejected_reason: Option<&str>,
    ) -> Result<TransitionOutcome, PrimeroError> {
        check_id(case_id, "case id")?;
        check_id(referral_id, "referral id")?;
        let mut data = Map::new();
        data.insert("status".into(), Value::String(status.as_str().into()));
        if let Some(reason) = rejected_reason {
            data.insert("rejected_reason".into(), Value::String(reason.into()));
        }
        let body = json!({ "data": Value::Object(data) });
        let url = self.url(&["cases", case_id, "referrals", referral_id]);
        let map = self
            .call(
                &Method::PATCH,
                routes::REFERRAL,
                &url,
                Some(&body),
                decode_record,
            )
            .await?;
        let referral = Referral::from_data(map)?;
        if referral.id != referral_id {
            return Err(PrimeroError::malformed(
                200,
                "the referral PATCH answered about another referral",
            ));
        }
        Ok(TransitionOutcome {
            applied: referral.status == status.as_str(),
            already_in_state: false,
            returned_status: referral.status.clone(),
            referral,
        })
    }

    // ---- users -------------------------------------------------------------------------

    /// Every user, all pages (`per=1000`), indexed by `user_name`. Needs user-read permission
    /// (a case-worker account gets 403 → [`PrimeroError::Permanent`]).
    pub async fn list_users(&self) -> Result<Users, PrimeroError> {
        let mut users: Vec<User> = Vec::new();
        let mut skipped = 0usize;
        let mut received_so_far: u64 = 0;
        let mut page: u64 = 1;
        loop {
            let params = [
                ("page".to_string(), page.to_string()),
                ("per".to_string(), PAGE_SIZE.to_string()),
            ];
            let url = self.url_with_query(&["users"], &params);
            let list = self.get_list(routes::USERS, &url).await?;
            let received = list.items.len() as u64;
            received_so_far += received;
            for item in &list.items {
                match User::from_data(item) {
                    Ok(u) => users.push(u),
                    Err(_) => skipped += 1,
                }
            }
            if !has_more(
                page,
                received,
                received_so_far,
                list.per,
                list.total,
                PAGE_SIZE,
            ) {
                break;
            }
            page += 1;
            if page > MAX_PAGES {
                return Err(PrimeroError::malformed(200, "user listing did not end"));
            }
        }
        if skipped > 0 {
            tracing::warn!(
                system = SYSTEM,
                skipped,
                "users without id or user_name were skipped"
            );
        }
        Ok(Users::from_users(users))
    }

    // ---- plumbing ----------------------------------------------------------------------

    fn url(&self, segments: &[&str]) -> Url {
        let mut u = self.inner.base.clone();
        {
            let mut s = u
                .path_segments_mut()
                .expect("base_url was checked to be a base in new()");
            s.pop_if_empty();
            s.extend(["api", "v2"]);
            s.extend(segments);
        }
        u
    }

    fn url_with_query(&self, segments: &[&str], params: &[(String, String)]) -> Url {
        let mut u = self.url(segments);
        if !params.is_empty() {
            u.query_pairs_mut().extend_pairs(params);
        }
        u
    }

    async fn get_list(&self, route: &'static str, url: &Url) -> Result<ListPage, PrimeroError> {
        self.call(&Method::GET, route, url, None, decode_list).await
    }

    /// One call with the shared retry policy, the 2xx answer's body parsed; `decode` runs
    /// inside the retried operation, so a malformed answer is retried like any transient
    /// failure.
    async fn call<T, D>(
        &self,
        method: &Method,
        route: &'static str,
        url: &Url,
        body: Option<&Value>,
        decode: D,
    ) -> Result<T, PrimeroError>
    where
        D: Fn(Reply) -> Result<T, PrimeroError>,
    {
        self.call_raw(method, route, url, body, |status, bytes| {
            decode(Reply {
                status,
                body: parse_body(status, &bytes)?,
            })
        })
        .await
    }

    /// [`PrimeroClient::call`] with the 2xx answer's body handed to `decode` as it came.
    async fn call_raw<T, D>(
        &self,
        method: &Method,
        route: &'static str,
        url: &Url,
        body: Option<&Value>,
        decode: D,
    ) -> Result<T, PrimeroError>
    where
        D: Fn(u16, Vec<u8>) -> Result<T, PrimeroError>,
    {
        let decode = &decode;
        pp_http::with_retries(&self.inner.retry, SYSTEM, |_attempt| async move {
            let (status, bytes) = self.attempt(method, route, url, body).await?;
            decode(status, bytes)
        })
        .await
    }

    /// One attempt: authenticate, send, and in token mode re-login once on a 401; the 2xx
    /// answer's status and body.
    async fn attempt(
        &self,
        method: &Method,
        route: &'static str,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<(u16, Vec<u8>), PrimeroError> {
        let mut relogged = false;
        loop {
            let (authorization, generation) = self.authorization().await?;
            let (status, headers, bytes) = self
                .send(method, route, url, body, Some(authorization))
                .await?;
            if status == 401 && !relogged {
                if let Some(generation) = generation {
                    self.invalidate_token(generation).await;
                    relogged = true;
                    continue;
                }
            }
            if !(200..300).contains(&status) {
                return Err(error::from_response(route, status, &headers, &bytes));
            }
            return Ok((status, bytes));
        }
    }

    /// Sends one request under the concurrency limit and reports it to the observer. Bodies
    /// and query strings are never logged.
    async fn send(
        &self,
        method: &Method,
        route: &'static str,
        url: &Url,
        body: Option<&Value>,
        authorization: Option<HeaderValue>,
    ) -> Result<(u16, HeaderMap, Vec<u8>), PrimeroError> {
        let _permit = self.inner.limiter.acquire().await;
        let started = Instant::now();
        let mut req = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .header(ACCEPT, "application/json");
        if let Some(a) = authorization {
            req = req.header(AUTHORIZATION, a);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                pp_http::record_request(
                    SYSTEM,
                    method.as_str(),
                    route,
                    None,
                    started.elapsed(),
                    None,
                );
                return Err(error::from_transport(&e));
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await;
        pp_http::record_request(
            SYSTEM,
            method.as_str(),
            route,
            Some(status),
            started.elapsed(),
            None,
        );
        let bytes = bytes.map_err(|e| error::from_transport(&e))?;
        Ok((status, headers, bytes.to_vec()))
    }

    /// The `Authorization` value to use, and in token mode the login generation it came from.
    async fn authorization(&self) -> Result<(HeaderValue, Option<u64>), PrimeroError> {
        match self.inner.auth {
            AuthMode::Basic => Ok((self.inner.basic.clone(), None)),
            AuthMode::LegacyToken => {
                let mut slot = self.inner.token.lock().await;
                if let Some(t) = slot.as_ref() {
                    if Utc::now() < t.refresh_at {
                        return Ok((t.header.clone(), Some(t.generation)));
                    }
                }
                let token = self.login().await?;
                let out = (token.header.clone(), Some(token.generation));
                *slot = Some(token);
                Ok(out)
            }
        }
    }

    /// Forgets the token of `generation` (not a newer one another caller already fetched).
    async fn invalidate_token(&self, generation: u64) {
        let mut slot = self.inner.token.lock().await;
        if slot.as_ref().map(|t| t.generation) == Some(generation) {
            *slot = None;
        }
    }

    /// `POST /api/v2/tokens`; the JWT comes in the body's `token` (or the `Authorization`
    /// response header). A server that issues none (>= 2.11) is an auth error.
    async fn login(&self) -> Result<Token, PrimeroError> {
        let url = self.url(&["tokens"]);
        let body = json!({"user": {
            "user_name": self.inner.username,
            "password": self.inner.password.expose_secret(),
        }});
        let (status, headers, bytes) = self
            .send(&Method::POST, routes::TOKENS, &url, Some(&body), None)
            .await?;
        drop(body);
        if !(200..300).contains(&status) {
            let err = error::from_response(routes::TOKENS, status, &headers, &bytes);
            return Err(match err.class() {
                pp_http::ErrorClass::Transient => err,
                _ => PrimeroError::Auth {
                    status: Some(status),
                    message: match err {
                        PrimeroError::Auth { message, .. }
                        | PrimeroError::Permanent { message, .. } => {
                            format!("login refused: {message}")
                        }
                        _ => "login refused".into(),
                    },
                },
            });
        }
        let parsed = parse_body(status, &bytes)?;
        let from_body = parsed
            .as_ref()
            .and_then(|v| v.get("token"))
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
            .map(str::to_string);
        let from_header = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .filter(|t| !t.trim().is_empty())
            .map(str::to_string);
        let Some(token) = from_body.or(from_header) else {
            return Err(PrimeroError::Auth {
                status: Some(status),
                message: "the server issued no token (Primero >= 2.11 needs basic auth)".into(),
            });
        };
        let header = auth::bearer_header(&token).ok_or_else(|| PrimeroError::Auth {
            status: Some(status),
            message: "the issued token cannot be sent as a header".into(),
        })?;
        let generation = self.inner.logins.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Token {
            header,
            refresh_at: auth::refresh_at(&token, Utc::now()),
            generation,
        })
    }
}

/// One page of the case listing as fetched: its cases parsed, and what paging needs.
struct FetchedPage {
    /// Parsed records; `None` for a record without an `id`.
    cases: Vec<Option<Case>>,
    total: Option<u64>,
    per: Option<u64>,
}

/// One page of the case listing as it came, its records not parsed yet: the body, where each
/// record object is in it, and what paging needs.
struct ScannedPage {
    body: Vec<u8>,
    /// Byte ranges of the record objects in `body` (items of `data` that are not objects are
    /// left out, as the parsed listing leaves them out).
    records: Vec<std::ops::Range<usize>>,
    total: Option<u64>,
    per: Option<u64>,
}

impl ScannedPage {
    /// `{"data": [...], "metadata": {"total", "per"}}`, checked whole (a body that is not
    /// JSON, or not an object with a `data` array, is malformed, as with a full parse) but
    /// without building the records: finding where each one is costs a fraction of parsing
    /// them, so the first can be handed over before the last is parsed.
    fn scan(status: u16, body: Vec<u8>) -> Result<ScannedPage, PrimeroError> {
        #[derive(serde::Deserialize)]
        struct Envelope<'a> {
            #[serde(borrow, default)]
            data: Data<'a>,
            metadata: Option<Value>,
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(PrimeroError::malformed(status, "expected a JSON object"));
        }
        let envelope: Envelope = serde_json::from_slice(&body).map_err(|e| {
            PrimeroError::malformed(
                status,
                if e.is_data() {
                    "expected a JSON object"
                } else {
                    "response body is not JSON"
                },
            )
        })?;
        let Data::Items(items) = envelope.data else {
            return Err(PrimeroError::malformed(status, "no data array"));
        };
        let start = body.as_ptr() as usize;
        let records = items
            .iter()
            .map(|raw| raw.get())
            .filter(|text| text.starts_with('{'))
            .map(|text| {
                let from = text.as_ptr() as usize - start;
                from..from + text.len()
            })
            .collect();
        let meta = envelope.metadata.as_ref();
        let num = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_u64);
        let (total, per) = (num("total"), num("per"));
        Ok(ScannedPage {
            records,
            total,
            per,
            body,
        })
    }

    /// Records `range` (indices into `records`) parsed, with only the `rows` fields of each
    /// service row when given ([`CaseQuery::keeping_service_row_fields`]); `None` for one
    /// without an `id`.
    fn parse(&self, range: std::ops::Range<usize>, rows: Option<&[String]>) -> Vec<Option<Case>> {
        self.records[range]
            .iter()
            .map(|r| {
                let bytes = &self.body[r.clone()];
                match rows {
                    Some(keep) => crate::project::case_map(bytes, keep),
                    None => serde_json::from_slice::<Map<String, Value>>(bytes).ok(),
                }
                .and_then(|data| Case::from_data(data).ok())
            })
            .collect()
    }
}

/// A page's `data` as the scan reads it, in the same pass as the rest of the body: its items
/// located (each checked as JSON, not built), or "not an array" (absent, null, an object...).
#[derive(Default)]
enum Data<'a> {
    Items(Vec<&'a serde_json::value::RawValue>),
    #[default]
    NotArray,
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Data<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Data<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Data<'a>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Data::Items(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Data<'a>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Data::NotArray)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Data<'a>, E> {
                Ok(Data::NotArray)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Data<'a>, E> {
                Ok(Data::NotArray)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Data<'a>, E> {
                Ok(Data::NotArray)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Data<'a>, E> {
                Ok(Data::NotArray)
            }
            fn visit_str<E>(self, _: &str) -> Result<Data<'a>, E> {
                Ok(Data::NotArray)
            }
            fn visit_unit<E>(self) -> Result<Data<'a>, E> {
                Ok(Data::NotArray)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Page `page` of the case listing with `base_params`, as it came.
async fn scan_page(
    client: &PrimeroClient,
    base_params: &[(String, String)],
    page: u64,
    per: u64,
) -> Result<ScannedPage, PrimeroError> {
    let mut params = base_params.to_vec();
    params.push(("page".into(), page.to_string()));
    params.push(("per".into(), per.to_string()));
    let url = client.url_with_query(&["cases"], &params);
    client
        .call_raw(&Method::GET, routes::CASES, &url, None, ScannedPage::scan)
        .await
}

/// Page `page` of the case listing with `base_params`, every record parsed.
async fn fetch_page(
    client: &PrimeroClient,
    base_params: &[(String, String)],
    page: u64,
    query: &CaseQuery,
) -> Result<FetchedPage, PrimeroError> {
    let scanned = scan_page(client, base_params, page, query.per()).await?;
    Ok(FetchedPage {
        cases: scanned.parse(
            0..scanned.records.len(),
            query.service_row_fields.as_deref(),
        ),
        total: scanned.total,
        per: scanned.per,
    })
}

/// What the task fetching a page of [`CasePages`] hands over: first how many records the page
/// holds and what paging needs, then its records in parts.
enum PageMsg {
    Head {
        received: u64,
        total: Option<u64>,
        per: Option<u64>,
    },
    Part(Vec<Option<Case>>),
}

/// A page being fetched (and parsed) in the background.
struct PageTask {
    /// Holds one message: the task parses a part only once the one before is taken, so
    /// the parsing keeps pace with the caller instead of competing with it for the CPU.
    rx: tokio::sync::mpsc::Receiver<Result<PageMsg, PrimeroError>>,
    handle: tokio::task::JoinHandle<()>,
}

/// The error of a page's task that did not complete: its panic is resumed here; a cancelled
/// task (the runtime shutting down) is a transient failure.
fn page_task_failed(e: tokio::task::JoinError) -> PrimeroError {
    if e.is_panic() {
        std::panic::resume_unwind(e.into_panic());
    }
    page_cancelled()
}

fn page_cancelled() -> PrimeroError {
    PrimeroError::Transient {
        status: None,
        detail: "the case page request was cancelled".into(),
        retry_after: None,
    }
}

/// What one paged listing has handed over so far: drops records seen on an earlier page and
/// records an exact filter does not match, and counts.
struct Listing {
    query: CaseQuery,
    seen: HashSet<String>,
    stats: ListStats,
    received_so_far: u64,
}

impl Listing {
    fn new(query: CaseQuery) -> Self {
        Listing {
            query,
            seen: HashSet::new(),
            stats: ListStats::default(),
            received_so_far: 0,
        }
    }

    /// Whether another page may follow `page`, which holds `received` records (counts them,
    /// and the page).
    fn has_more(&mut self, page: u64, received: u64, per: Option<u64>, total: Option<u64>) -> bool {
        self.received_so_far += received;
        self.stats.pages += 1;
        has_more(
            page,
            received,
            self.received_so_far,
            per,
            total,
            self.query.per(),
        )
    }

    /// The cases of a page (or of a part of one) to hand over.
    fn digest(&mut self, fetched: Vec<Option<Case>>) -> Vec<Case> {
        let mut cases = Vec::with_capacity(fetched.len());
        for case in fetched {
            let Some(case) = case else {
                self.stats.malformed += 1;
                continue;
            };
            if !self.seen.insert(case.id.clone()) {
                self.stats.duplicates += 1;
            } else if !self.query.matches(&case) {
                self.stats.filtered_out += 1;
            } else {
                cases.push(case);
            }
        }
        self.stats.cases += cases.len();
        cases
    }

    /// Logs the records the listing skipped (counts only).
    fn finish(&self) {
        if self.stats.filtered_out > 0 || self.stats.malformed > 0 {
            tracing::warn!(
                system = SYSTEM,
                filtered_out = self.stats.filtered_out,
                malformed = self.stats.malformed,
                "case listing returned records that were skipped"
            );
        }
    }
}

/// A case listing pulled page by page with pages read ahead (see
/// [`PrimeroClient::case_pages`] and [`PrimeroClient::case_pages_ahead`]). Each id is handed
/// over once, as with [`PrimeroClient::for_each_case_page`].
pub struct CasePages {
    client: PrimeroClient,
    base_params: Vec<(String, String)>,
    listing: Listing,
    /// The requests of the pages after `page`, in page order, running in the background.
    next: VecDeque<PageTask>,
    /// The page whose parts are being handed over.
    current: Option<PageTask>,
    /// Most records per part a page is handed over in.
    part: usize,
    /// The last page requested.
    requested: u64,
    /// Most pages requested ahead at once.
    ahead: usize,
    /// The last page handed over (or skipped as empty).
    page: u64,
    finished: bool,
    /// The listing ended with an error.
    failed: bool,
}

impl fmt::Debug for CasePages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CasePages")
            .field("query", &self.listing.query)
            .field("page", &self.page)
            .field("requested", &self.requested)
            .field("stats", &self.listing.stats)
            .finish()
    }
}

impl CasePages {
    /// The next page's cases, or the next part of one (never empty), or `None` once the
    /// listing has ended. An error ends the listing.
    ///
    /// Cancel-safe: a call dropped while it waits for a page leaves that page to the next
    /// call. After an error, every later call returns an error too.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Case>>, PrimeroError> {
        loop {
            if self.failed {
                return Err(PrimeroError::invalid(
                    "the case listing already ended with an error",
                ));
            }
            if let Some(current) = self.current.as_mut() {
                match current.rx.recv().await {
                    Some(Ok(PageMsg::Part(part))) => {
                        let cases = self.listing.digest(part);
                        if !cases.is_empty() {
                            return Ok(Some(cases));
                        }
                    }
                    // Every part is handed over, or the task panicked or was cancelled. The
                    // task stays current until its end is known, so a call dropped while
                    // waiting for it leaves the question to the next call.
                    None => {
                        let joined = (&mut current.handle).await;
                        self.current = None;
                        if let Err(e) = joined {
                            self.stop();
                            return Err(page_task_failed(e));
                        }
                    }
                    Some(Ok(PageMsg::Head { .. })) | Some(Err(_)) => {
                        // A page's task sends its head once, first, and fails before it.
                        self.stop();
                        return Err(PrimeroError::invalid("case page handed over out of order"));
                    }
                }
                continue;
            }
            let Some(task) = self.next.front_mut() else {
                if !self.finished {
                    self.finished = true;
                    self.listing.finish();
                }
                return Ok(None);
            };
            // Taken off the queue only once its head, or its end, has come (see above).
            let Some(head) = task.rx.recv().await else {
                // Ended without a word: panicked or cancelled.
                let joined = (&mut task.handle).await;
                self.stop();
                return Err(match joined {
                    Err(e) => page_task_failed(e),
                    Ok(()) => page_cancelled(),
                });
            };
            let Some(task) = self.next.pop_front() else {
                continue;
            };
            self.page += 1;
            let (received, total, per) = match head {
                Ok(PageMsg::Head {
                    received,
                    total,
                    per,
                }) => (received, total, per),
                Err(e) => {
                    self.stop();
                    return Err(e);
                }
                Ok(PageMsg::Part(_)) => {
                    self.stop();
                    return Err(PrimeroError::invalid("case page handed over out of order"));
                }
            };
            if self.listing.has_more(self.page, received, per, total) {
                if self.page >= MAX_PAGES {
                    self.stop();
                    return Err(PrimeroError::malformed(200, "case listing did not end"));
                }
                // Read ahead while the caller works on this page: the pages the total says
                // are left, up to `ahead`, or the next one when the total is not known.
                let last = match (per.filter(|p| *p > 0), total) {
                    (Some(per), Some(total)) => total.div_ceil(per).min(MAX_PAGES),
                    _ => self.page + 1,
                }
                .max(self.page + 1);
                while self.next.len() < self.ahead && self.requested < last {
                    self.request_next();
                }
            } else {
                // The listing ends here: pages asked for on a total that shrank are dropped.
                for task in self.next.drain(..) {
                    task.handle.abort();
                }
            }
            self.current = Some(task);
        }
    }

    /// What the listing has handed over and skipped so far.
    pub fn stats(&self) -> ListStats {
        self.listing.stats
    }

    /// Ends the listing after an error: the requests in flight are cancelled.
    fn stop(&mut self) {
        self.finished = true;
        self.failed = true;
        self.abort_all();
    }

    /// Cancels the requests in flight and the page being handed over.
    fn abort_all(&mut self) {
        for task in self.next.drain(..).chain(self.current.take()) {
            task.handle.abort();
        }
    }

    fn request_next(&mut self) {
        self.requested += 1;
        let client = self.client.clone();
        let params = self.base_params.clone();
        let page = self.requested;
        let per = self.listing.query.per();
        let rows = self.listing.query.service_row_fields.clone();
        let part = self.part;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let task = async move {
            let scanned = match scan_page(&client, &params, page, per).await {
                Ok(scanned) => scanned,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let n = scanned.records.len();
            let head = PageMsg::Head {
                received: n as u64,
                total: scanned.total,
                per: scanned.per,
            };
            if tx.send(Ok(head)).await.is_err() {
                return;
            }
            let mut from = 0;
            while from < n {
                let to = from.saturating_add(part).min(n);
                let part = scanned.parse(from..to, rows.as_deref());
                if tx.send(Ok(PageMsg::Part(part))).await.is_err() {
                    return;
                }
                from = to;
            }
        };
        let handle = tokio::spawn(tracing::Instrument::instrument(
            task,
            tracing::Span::current(),
        ));
        self.next.push_back(PageTask { rx, handle });
    }
}

impl Drop for CasePages {
    fn drop(&mut self) {
        self.abort_all();
    }
}

/// Whether another page may follow. With the page size the server reports (its clamped
/// `per`): the page was full and the total is not reached. Without it, the records received so
/// far are compared with the total, or a full page of the size asked for (`asked`) means
/// "maybe more".
fn has_more(
    page: u64,
    received: u64,
    received_so_far: u64,
    per: Option<u64>,
    total: Option<u64>,
    asked: u64,
) -> bool {
    if received == 0 {
        return false;
    }
    match (per.filter(|p| *p > 0), total) {
        (Some(per), Some(t)) => received >= per && page.saturating_mul(per) < t,
        (Some(per), None) => received >= per,
        (None, Some(t)) => received_so_far < t,
        (None, None) => received >= asked,
    }
}

fn parse_body(status: u16, bytes: &[u8]) -> Result<Option<Value>, PrimeroError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|_| PrimeroError::malformed(status, "response body is not JSON"))
}

/// `{"data": {...}}` → the object.
fn decode_record(reply: Reply) -> Result<Map<String, Value>, PrimeroError> {
    match reply.body {
        Some(Value::Object(mut body)) => match body.remove("data") {
            Some(Value::Object(m)) => Ok(m),
            _ => Err(PrimeroError::malformed(reply.status, "no data object")),
        },
        _ => Err(PrimeroError::malformed(
            reply.status,
            "expected a JSON object",
        )),
    }
}

/// `{"data": [...]}` → the objects in it.
fn decode_array(reply: Reply) -> Result<Vec<Map<String, Value>>, PrimeroError> {
    decode_list(reply).map(|p| p.items)
}

/// `{"data": [...], "metadata": {"total", "per", "page"}}`.
fn decode_list(reply: Reply) -> Result<ListPage, PrimeroError> {
    let Some(Value::Object(mut body)) = reply.body else {
        return Err(PrimeroError::malformed(
            reply.status,
            "expected a JSON object",
        ));
    };
    let Some(Value::Array(data)) = body.remove("data") else {
        return Err(PrimeroError::malformed(reply.status, "no data array"));
    };
    let items = data
        .into_iter()
        .filter_map(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .collect();
    let meta = body.get("metadata");
    let num = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_u64);
    Ok(ListPage {
        items,
        total: num("total"),
        per: num("per"),
    })
}

/// Refuses ids that would change the URL's meaning (an empty case id lists every case).
fn check_id(id: &str, what: &str) -> Result<(), PrimeroError> {
    if id.trim().is_empty() {
        return Err(PrimeroError::invalid(format!("{what} is empty")));
    }
    Ok(())
}

/// Primero's record-id form: a hyphenated UUID.
fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

/// Gives every new row of a subform (a top-level array of objects) a `unique_id`, so that a
/// repeated write merges into the same row. Rows marked `_destroy` are left as they are.
fn assign_row_ids(data: &mut Map<String, Value>) {
    for value in data.values_mut() {
        let Value::Array(rows) = value else { continue };
        if rows.is_empty() || !rows.iter().all(Value::is_object) {
            continue;
        }
        for row in rows.iter_mut() {
            let Value::Object(row) = row else { continue };
            let has_id =
                matches!(row.get("unique_id"), Some(Value::String(s)) if !s.trim().is_empty());
            let destroy = matches!(row.get("_destroy"), Some(Value::Bool(true)));
            if !has_id && !destroy {
                row.insert(
                    "unique_id".into(),
                    Value::String(uuid::Uuid::new_v4().to_string()),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A case page is checked whole and its record objects located; each kind of bad body is
    /// named as a full parse would name it.
    #[test]
    fn a_scanned_page_locates_its_records_and_names_bad_bodies() {
        let detail = |body: &str| match ScannedPage::scan(200, body.as_bytes().to_vec()) {
            Err(PrimeroError::Malformed { detail, .. }) => detail,
            Err(e) => panic!("{body}: {e}"),
            Ok(_) => panic!("{body}: accepted"),
        };
        assert_eq!(detail("  "), "expected a JSON object");
        assert_eq!(detail("<html>"), "response body is not JSON");
        assert_eq!(
            detail(r#"{"data": [{"id": "a"}"#),
            "response body is not JSON"
        );
        assert_eq!(detail("[]"), "expected a JSON object");
        assert_eq!(detail("{}"), "no data array");
        assert_eq!(detail(r#"{"data": null}"#), "no data array");
        assert_eq!(detail(r#"{"data": {"id": "a"}}"#), "no data array");
        assert_eq!(detail(r#"{"data": "x", "metadata": {}}"#), "no data array");
        let body = r#"{"data": [{"id": "a", "n": [1, {"x": "]"}]}, 5, "s", {"id": "b"}], "metadata": {"total": 7, "per": 2, "page": 1}}"#;
        let page = ScannedPage::scan(200, body.as_bytes().to_vec()).unwrap();
        let records: Vec<&str> = page.records.iter().map(|r| &body[r.clone()]).collect();
        assert_eq!(
            records,
            [r#"{"id": "a", "n": [1, {"x": "]"}]}"#, r#"{"id": "b"}"#]
        );
        assert_eq!((page.total, page.per), (Some(7), Some(2)));
        let parsed = page.parse(0..2, None);
        assert_eq!(
            parsed
                .iter()
                .map(|c| c.as_ref().map(|c| c.id.as_str()))
                .collect::<Vec<_>>(),
            [Some("a"), Some("b")]
        );
        let empty = ScannedPage::scan(200, br#"{"data": []}"#.to_vec()).unwrap();
        assert!(empty.records.is_empty());
        assert_eq!((empty.total, empty.per), (None, None));
    }

    fn settings(base: &str) -> PrimeroSettings {
        PrimeroSettings::new(
            Url::parse(base).unwrap(),
            "openfn_integration",
            SecretString::from("s3cret-pw".to_string()),
        )
    }

    #[test]
    fn urls_keep_a_path_prefix_and_encode_ids() {
        let c =
            PrimeroClient::new(settings("https://u:p@primero.example.org/prefix/?x=1")).unwrap();
        assert_eq!(
            c.url(&["cases", "a/b"]).as_str(),
            "https://primero.example.org/prefix/api/v2/cases/a%2Fb"
        );
        let c = PrimeroClient::new(settings("http://127.0.0.1:8080")).unwrap();
        let u = c.url_with_query(
            &["cases"],
            &[("last_updated_at".into(), "2024-01-01T00:00:00Z..".into())],
        );
        assert_eq!(u.path(), "/api/v2/cases");
        let pairs: Vec<(String, String)> = u.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            vec![(
                "last_updated_at".to_string(),
                "2024-01-01T00:00:00Z..".to_string()
            )]
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(PrimeroClient::new(settings("ftp://x")).is_err());
        let mut s = settings("http://x");
        s.username = " ".into();
        assert!(PrimeroClient::new(s).is_err());
    }

    #[test]
    fn settings_debug_hides_the_password_and_url_credentials() {
        let s = settings("https://admin:urlpw@primero.example.org/?token=abc");
        let text = format!("{s:?}");
        assert!(!text.contains("s3cret-pw"));
        assert!(!text.contains("urlpw"));
        assert!(!text.contains("token=abc"));
        assert!(text.contains("openfn_integration"));
        let c = PrimeroClient::new(s).unwrap();
        assert!(!format!("{c:?}").contains("urlpw"));
    }

    #[test]
    fn paging_stops_on_short_pages_and_totals() {
        assert!(has_more(1, 1000, 1000, Some(1000), Some(2500), 1000));
        assert!(has_more(2, 1000, 2000, Some(1000), Some(2500), 1000));
        assert!(!has_more(3, 500, 2500, Some(1000), Some(2500), 1000));
        assert!(!has_more(2, 1000, 2000, Some(1000), Some(2000), 1000));
        assert!(!has_more(1, 0, 0, Some(1000), None, 1000));
        assert!(has_more(1, 1000, 1000, None, None, 1000));
        assert!(!has_more(1, 20, 20, Some(20), Some(20), 1000));
        // A server that clamps to a smaller page and reports the clamped per: keep going.
        assert!(has_more(1, 500, 500, Some(500), Some(2500), 1000));
        // A server that clamps without saying so: the total decides.
        assert!(has_more(1, 500, 500, None, Some(2500), 1000));
        assert!(!has_more(5, 500, 2500, None, Some(2500), 1000));
        // Without per or total, a full page of the size asked for means "maybe more".
        assert!(has_more(1, 200, 200, None, None, 200));
        assert!(!has_more(1, 199, 199, None, None, 200));
    }

    #[test]
    fn new_subform_rows_get_ids_and_existing_ones_are_kept() {
        let mut data = json!({
            "services_section": [
                {"service_type": "food"},
                {"unique_id": "5c2d4f6c-7a78-43b5-ac40-eb097be51d89", "service_type": "x"},
                {"unique_id": "0a30b142-3906-46d3-bbb4-f28c44b357d7", "_destroy": true}
            ],
            "language": ["language1"],
            "name": "n"
        })
        .as_object()
        .unwrap()
        .clone();
        assign_row_ids(&mut data);
        let rows = data["services_section"].as_array().unwrap();
        assert!(is_uuid(rows[0]["unique_id"].as_str().unwrap()));
        assert_eq!(rows[1]["unique_id"], "5c2d4f6c-7a78-43b5-ac40-eb097be51d89");
        assert_eq!(data["language"], json!(["language1"]));
    }

    #[tokio::test]
    async fn create_without_module_id_is_refused_before_sending() {
        // Port 9 (discard) on localhost: any attempt to send would fail with a transport error.
        let c = PrimeroClient::new(settings("http://127.0.0.1:9")).unwrap();
        let mut data = Map::new();
        data.insert("name_first".into(), json!("A"));
        let e = c.create_case(data).await.unwrap_err();
        assert!(matches!(e, PrimeroError::InvalidRequest { .. }), "{e}");
        assert!(e.to_string().contains("module_id"));
        let e = c.get_case(" ").await.unwrap_err();
        assert!(matches!(e, PrimeroError::InvalidRequest { .. }));
    }
}
