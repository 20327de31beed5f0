//! The PING client: retrieval with paging, synchronous and asynchronous ingestion, and check
//! status, each call authenticated (bearer token + subscription key), bounded by the shared
//! limiter, retried by the shared policy of `pp_http`, and reported to its observer.
//!
//! Retrieval, check-status and `/data` are retried after any transient failure (`/data`
//! records are keyed, so a repeat updates the same record; a repeated write-back may add its
//! attachment comment again). `/asyncdata` is retried only when the failed attempt certainly
//! did not reach PING's processing (see [`Resend`]): whether PING drops a repeated batch is
//! unknown. That a 429 or a 401 was answered before processing is an inference (the gateway
//! answers them), not a documented fact.

use std::borrow::Borrow;
use std::sync::Arc;
use std::time::Instant;

use secrecy::ExposeSecret;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Value};

use crate::checkstatus::{parse_check_status, CheckStatus};
use crate::error::PingError;
use crate::ingest::{parse_failed_records, IngestOutcome, IngestRecord, Seq, Wire};
use crate::row::Row;
use crate::settings::PingSettings;
use crate::token::{Token, TokenCache};
use crate::wire::{
    any_message, error_message, parse_page, record_ids_param, retrieve_body, transaction_id,
    NextPage, Page, ROUTE_ASYNCDATA, ROUTE_CHECKSTATUS, ROUTE_DATA, ROUTE_RETRIEVE,
};

/// Most pages one retrieval reads before it gives up (a guard against a paging loop).
const MAX_PAGES: u64 = 100_000;

/// All rows of a retrieval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Retrieved {
    /// Every row of every page; empty for "No Data Available" (rule R12).
    pub rows: Vec<Row>,
    /// `SPHTransactionId` of each page, in order.
    pub transaction_ids: Vec<String>,
}

/// What a page-at-a-time retrieval saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetrieveSummary {
    pub pages: u64,
    pub rows: u64,
    pub transaction_ids: Vec<String>,
}

/// A retrieval read page by page ([`PingClient::pages`]).
pub struct Pages<'a> {
    client: &'a PingClient,
    shp: &'a str,
    record_ids: &'a [String],
    /// Where the next page starts (`None`: the first page).
    position: Option<NextPage>,
    done: bool,
    summary: RetrieveSummary,
}

impl Pages<'_> {
    /// The rows of the next page, `None` once PING said no more records are available. Each
    /// page is retried on its own; a page already returned is not read again. Page 2+ echo
    /// `PagingCookie` and ask for `PageNumber + 1`. After an error, the retrieval is over.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Row>>, PingError> {
        if self.done {
            return Ok(None);
        }
        // Over unless this page says there is more.
        self.done = true;
        let page = self
            .client
            .retrieve_page(self.shp, self.record_ids, self.position.as_ref())
            .await?;
        self.summary.pages += 1;
        self.summary.rows += page.rows.len() as u64;
        if let Some(tx) = page.transaction_id {
            self.summary.transaction_ids.push(tx);
        }
        if let Some(next) = page.next {
            if self.position.as_ref() == Some(&next) || self.summary.pages >= MAX_PAGES {
                return Err(PingError::Unexpected {
                    detail: format!(
                        "{}: paging does not advance (page {})",
                        self.shp, next.page_number
                    ),
                });
            }
            self.position = Some(next);
            self.done = false;
        } else {
            tracing::debug!(
                shp = self.shp,
                pages = self.summary.pages,
                rows = self.summary.rows,
                "PING retrieval done"
            );
        }
        Ok(Some(page.rows))
    }

    /// What the retrieval saw so far: pages, rows and `SPHTransactionId`s.
    pub fn summary(&self) -> &RetrieveSummary {
        &self.summary
    }

    /// [`Pages::summary`], by value.
    pub fn into_summary(self) -> RetrieveSummary {
        self.summary
    }
}

/// A 2xx answer, or a 4xx the endpoint handler interprets (`body` is `Null` when not JSON).
#[derive(Debug)]
struct Reply {
    status: u16,
    body: Value,
}

/// When a call may be sent again after a transient failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resend {
    /// A repeat cannot apply the call twice (reads, check-status, keyed `/data` writes).
    Always,
    /// A repeat might (`/asyncdata`): only when the failed attempt certainly did not reach
    /// PING's processing (see [`AttemptError`]).
    IfUnprocessed,
}

/// A failed attempt, and whether PING certainly did not process its request.
#[derive(Debug)]
struct AttemptError {
    error: PingError,
    /// True when the request never reached PING's processing: no token could be had (nothing
    /// was sent), the connection was never made, or the gateway turned the request away (429,
    /// 401). False whenever PING may have received it: a timeout, a connection reset or closed
    /// after the request was written, a 5xx, any 2xx or other answer.
    unprocessed: bool,
}

impl AttemptError {
    fn not_processed(error: PingError) -> Self {
        AttemptError {
            error,
            unprocessed: true,
        }
    }

    fn maybe_processed(error: PingError) -> Self {
        AttemptError {
            error,
            unprocessed: false,
        }
    }

    /// A transport failure: unprocessed only if the connection was never made.
    fn transport(err: &reqwest::Error, what: &str) -> Self {
        AttemptError {
            error: transport_error(err, what),
            unprocessed: pp_http::transport_not_sent(err),
        }
    }
}

impl pp_http::Retryable for AttemptError {
    fn class(&self) -> pp_http::ErrorClass {
        self.error.class()
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        pp_http::Retryable::retry_after(&self.error)
    }
}

enum Sent {
    Reply(Reply),
    /// 401: the token (or the subscription key) was refused; the masked message.
    Unauthorized(Option<String>),
}

struct Inner {
    settings: PingSettings,
    http: reqwest::Client,
    limiter: pp_http::Limiter,
    tokens: TokenCache,
    token_endpoint: url::Url,
    url_retrieve: url::Url,
    url_data: url::Url,
    url_async: url::Url,
    url_check: url::Url,
}

/// The PING client. Cheap to clone (the connection pool, limiter and token cache are shared);
/// `Send + Sync`.
#[derive(Clone)]
pub struct PingClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PingClient")
            .field("settings", &self.inner.settings)
            .finish()
    }
}

/// A transport failure (no HTTP status) as a client error, without URL or body.
pub(crate) fn transport_error(err: &reqwest::Error, what: &str) -> PingError {
    let detail = format!("{what}: {}", pp_http::describe_transport(err));
    match pp_http::classify_transport(err) {
        pp_http::ErrorClass::Transient => PingError::Transient {
            status: None,
            detail,
            retry_after: None,
        },
        _ => PingError::Config { detail },
    }
}

fn join(base: &url::Url, path: &str) -> url::Url {
    let mut u = base.clone();
    let full = format!("{}{}", base.path().trim_end_matches('/'), path);
    u.set_path(&full);
    u.set_query(None);
    u.set_fragment(None);
    u
}

fn is_code(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn check_shp(shp: &str) -> Result<(), PingError> {
    if is_code(shp) {
        Ok(())
    } else {
        Err(PingError::InvalidRequest {
            detail: "ShippingProcessId is empty or not a plain code".into(),
        })
    }
}

impl PingClient {
    /// Checks the settings and builds the client (no network access yet).
    pub fn new(settings: PingSettings) -> Result<Self, PingError> {
        let mut problems = Vec::new();
        for (name, url) in [
            ("base_url", &settings.base_url),
            ("token_url", &settings.token_url),
        ] {
            if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
                problems.push(format!("{name} must be an http(s) URL"));
            }
        }
        if !is_code(&settings.partner_id) {
            problems.push("partner_id must be a plain code such as PNR-1363".to_string());
        }
        if !is_code(&settings.interop_id) {
            problems.push("interop_id must be a plain code such as INT-1436".to_string());
        }
        for (name, value) in [
            ("client_id", settings.client_id.as_str()),
            ("scope", settings.scope.as_str()),
            ("username", settings.username.as_str()),
            ("password", settings.password.expose_secret()),
            (
                "subscription_key",
                settings.subscription_key.expose_secret(),
            ),
        ] {
            if value.trim().is_empty() {
                problems.push(format!("{name} is empty"));
            }
        }
        if !problems.is_empty() {
            return Err(PingError::Config {
                detail: problems.join("; "),
            });
        }
        let base = &settings.base_url;
        let inner = Inner {
            http: pp_http::build_client(&settings.http),
            limiter: pp_http::Limiter::new(settings.http.max_concurrency),
            tokens: TokenCache::new(),
            token_endpoint: settings.token_endpoint(),
            url_retrieve: join(base, ROUTE_RETRIEVE),
            url_data: join(
                base,
                &format!("/api/ingestion/v2/{}/data", settings.partner_id),
            ),
            url_async: join(
                base,
                &format!("/api/ingestion/v2/{}/asyncdata", settings.partner_id),
            ),
            url_check: join(base, ROUTE_CHECKSTATUS),
            settings,
        };
        Ok(PingClient {
            inner: Arc::new(inner),
        })
    }

    /// `PartnerId` of this deployment.
    pub fn partner_id(&self) -> &str {
        &self.inner.settings.partner_id
    }

    /// `InteropID` of this deployment.
    pub fn interop_id(&self) -> &str {
        &self.inner.settings.interop_id
    }

    async fn token(&self) -> Result<Token, PingError> {
        let i = &self.inner;
        i.tokens.get(&i.http, &i.settings, &i.token_endpoint).await
    }

    /// One HTTP exchange with `token`. Transient statuses become errors here; a 401 is
    /// returned as [`Sent::Unauthorized`]; other statuses are handed to the caller.
    async fn send_once(
        &self,
        route: &'static str,
        url: &url::Url,
        body: &[u8],
        token: &Token,
    ) -> Result<Sent, AttemptError> {
        let i = &self.inner;
        let _permit = i.limiter.acquire().await;
        let started = Instant::now();
        let sent = i
            .http
            .post(url.clone())
            .header(
                "Ocp-Apim-Subscription-Key",
                i.settings.subscription_key.expose_secret(),
            )
            .bearer_auth(token.value.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_vec())
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                pp_http::record_request("ping", "POST", route, None, started.elapsed(), None);
                return Err(AttemptError::transport(&e, route));
            }
        };
        let status = resp.status().as_u16();
        let retry_after = pp_http::parse_retry_after(resp.headers());
        let text = resp.text().await;
        let elapsed = started.elapsed();
        let text = match text {
            Ok(t) => t,
            Err(e) => {
                pp_http::record_request("ping", "POST", route, Some(status), elapsed, None);
                // An answer had begun: PING had the request.
                return Err(AttemptError::maybe_processed(transport_error(&e, route)));
            }
        };
        let json: Option<Value> = serde_json::from_str(&text).ok();
        // The raw text is not kept next to its parsed form (a page of 1,000 rows is both).
        let text_len = text.len();
        drop(text);
        let tx = json.as_ref().and_then(transaction_id);
        pp_http::record_request("ping", "POST", route, Some(status), elapsed, tx.as_deref());

        if status == 401 {
            return Ok(Sent::Unauthorized(json.as_ref().and_then(any_message)));
        }
        if (200..300).contains(&status) {
            return match json {
                Some(body) => Ok(Sent::Reply(Reply { status, body })),
                None => Err(AttemptError::maybe_processed(PingError::Malformed {
                    detail: format!("{route} status {status}, {text_len} bytes"),
                })),
            };
        }
        match pp_http::classify_status(status) {
            pp_http::ErrorClass::Transient => Err(AttemptError {
                error: PingError::Transient {
                    status: Some(status),
                    detail: format!(
                        "{route}: {}",
                        json.as_ref()
                            .and_then(any_message)
                            .unwrap_or_else(|| "no message".into())
                    ),
                    retry_after,
                },
                unprocessed: pp_http::status_not_processed(status),
            }),
            _ => Ok(Sent::Reply(Reply {
                status,
                body: json.unwrap_or(Value::Null),
            })),
        }
    }

    /// One attempt: a cached (or fresh) token; on a 401 a new token and one more exchange; a
    /// second 401 is an [`PingError::Auth`]. The exchange after a 401 is part of the attempt
    /// for every route, `/asyncdata` included: PING refused the first one before processing.
    async fn attempt(
        &self,
        route: &'static str,
        url: &url::Url,
        body: &[u8],
    ) -> Result<Reply, AttemptError> {
        // No token, nothing sent.
        let token = self.token().await.map_err(AttemptError::not_processed)?;
        match self.send_once(route, url, body, &token).await? {
            Sent::Reply(r) => Ok(r),
            Sent::Unauthorized(_) => {
                tracing::info!(route, "PING refused the token; fetching a new one");
                self.inner.tokens.invalidate(token.generation).await;
                let fresh = self.token().await.map_err(AttemptError::not_processed)?;
                match self.send_once(route, url, body, &fresh).await? {
                    Sent::Reply(r) => Ok(r),
                    Sent::Unauthorized(message) => {
                        self.inner.tokens.invalidate(fresh.generation).await;
                        Err(AttemptError::not_processed(PingError::Auth {
                            detail: format!(
                                "{route} answered 401 twice, the second time with a fresh token ({})",
                                message.unwrap_or_else(|| "no message".into())
                            ),
                        }))
                    }
                }
            }
        }
    }

    /// An API call that a repeat cannot apply twice (a read, check-status, a keyed `/data`
    /// write), retried after any transient failure: [`PingClient::call_with`] with
    /// [`Resend::Always`].
    async fn call<T>(
        &self,
        route: &'static str,
        url: &url::Url,
        body: Value,
        handle: impl Fn(Reply) -> Result<T, PingError>,
    ) -> Result<T, PingError> {
        let text = body.to_string().into_bytes();
        // Shadowing would keep the tree alive until the call ends.
        drop(body);
        self.call_with(route, url, text, Resend::Always, handle)
            .await
    }

    /// An API call under the shared retry policy; `handle` turns a reply into the result
    /// (its errors are classified like any other, so a transient one is retried when `resend`
    /// allows: with [`Resend::IfUnprocessed`] it never is, since PING answered).
    ///
    /// The body is JSON text, not a tree: an ingestion batch's tree is several times the
    /// size of its text, and a call may wait for the limiter and for its retries with it
    /// (R10).
    async fn call_with<T>(
        &self,
        route: &'static str,
        url: &url::Url,
        text: Vec<u8>,
        resend: Resend,
        handle: impl Fn(Reply) -> Result<T, PingError>,
    ) -> Result<T, PingError> {
        let body = text.as_slice();
        let policy = &self.inner.settings.http.retry;
        pp_http::with_retries_if(
            policy,
            "ping",
            |_| async {
                let reply = self.attempt(route, url, body).await?;
                handle(reply).map_err(AttemptError::maybe_processed)
            },
            |e: &AttemptError| match resend {
                Resend::Always => true,
                Resend::IfUnprocessed => e.unprocessed,
            },
        )
        .await
        .map_err(|e| e.error)
    }

    /// Turns a non-2xx reply into a permanent error with PING's masked message.
    fn refused(reply: &Reply) -> PingError {
        PingError::Permanent {
            status: reply.status,
            message: any_message(&reply.body).unwrap_or_else(|| "no message".into()),
        }
    }

    /// Reads every page of a retrieval: `record_ids` empty sends `QueryParameters: []`, one id
    /// sends that id, several send the bracketed list `[g1,g2]`. All rows are held in memory;
    /// use [`PingClient::retrieve_pages`] or [`PingClient::pages`] to bound memory by the page
    /// size.
    pub async fn retrieve(&self, shp: &str, record_ids: &[String]) -> Result<Retrieved, PingError> {
        let mut rows = Vec::new();
        let summary = self
            .retrieve_pages(shp, record_ids, |page| rows.extend(page))
            .await?;
        Ok(Retrieved {
            rows,
            transaction_ids: summary.transaction_ids,
        })
    }

    /// Reads one page of a retrieval: `cursor` is `None` for the first page, else the `next`
    /// of the previous page (for callers that process pages asynchronously; see also
    /// [`PingClient::retrieve_pages`]). The page is retried on its own under the policy.
    pub async fn retrieve_page(
        &self,
        shp: &str,
        record_ids: &[String],
        cursor: Option<&NextPage>,
    ) -> Result<Page, PingError> {
        check_shp(shp)?;
        let params = record_ids_param(record_ids)?;
        let s = &self.inner.settings;
        let requested = cursor.map_or(1, |p| p.page_number);
        let body = retrieve_body(shp, &s.partner_id, &s.interop_id, &params, cursor);
        self.call(ROUTE_RETRIEVE, &self.inner.url_retrieve, body, |reply| {
            if (200..300).contains(&reply.status) {
                parse_page(reply.body, requested)
            } else {
                Err(Self::refused(&reply))
            }
        })
        .await
    }

    /// Reads a retrieval page by page, handing each page's rows to `on_page` before the next
    /// page is requested (rule R10). Each page is retried on its own; pages already handed
    /// over are not read again. Page 2+ echo `PagingCookie` and ask for `PageNumber + 1`.
    /// [`PingClient::pages`] does the same for a caller that awaits between pages.
    pub async fn retrieve_pages<F>(
        &self,
        shp: &str,
        record_ids: &[String],
        mut on_page: F,
    ) -> Result<RetrieveSummary, PingError>
    where
        F: FnMut(Vec<Row>),
    {
        let mut pages = self.pages(shp, record_ids);
        while let Some(rows) = pages.next_page().await? {
            on_page(rows);
        }
        Ok(pages.into_summary())
    }

    /// A retrieval read one page at a time by the caller ([`Pages::next_page`]), which may
    /// await other work (the ledger, say) between pages: memory stays bounded by one page plus
    /// what the caller keeps (rule R10). Nothing is requested before the first `next_page`.
    pub fn pages<'a>(&'a self, shp: &'a str, record_ids: &'a [String]) -> Pages<'a> {
        Pages {
            client: self,
            shp,
            record_ids,
            position: None,
            done: false,
            summary: RetrieveSummary::default(),
        }
    }

    /// Synchronous ingestion (`/data`). The batch size is the caller's choice.
    ///
    /// - 2xx: the outcome, with any `FailedRecords` of a partially applied batch; its
    ///   `transaction_id` is `None` when PING sent no `SPHTransactionId` (the records were
    ///   applied all the same).
    /// - 2xx with a non-null `ErrorMessage` and no `FailedRecords`: [`PingError::Permanent`].
    /// - 4xx with `FailedRecords`: [`PingError::BatchRejected`] naming the refused
    ///   `ExternalId`s, so that the caller rejects those and sends the rest again (R1).
    ///
    /// An empty `records` makes no call and returns an empty outcome.
    pub async fn ingest<R: Borrow<IngestRecord>>(
        &self,
        shp: &str,
        records: &[R],
    ) -> Result<IngestOutcome, PingError> {
        check_shp(shp)?;
        if records.is_empty() {
            return Ok(IngestOutcome::default());
        }
        let text = ingest_body(
            shp,
            ("InteropId", &self.inner.settings.interop_id),
            None,
            records.iter().map(|r| r.borrow().wire(true)),
        )?;
        let url = &self.inner.url_data;
        self.call_with(ROUTE_DATA, url, text, Resend::Always, |reply| {
            let failed = parse_failed_records(&reply.body);
            let transaction_id = transaction_id(&reply.body);
            if (200..300).contains(&reply.status) {
                if failed.is_empty() {
                    if let Some(message) = error_message(&reply.body) {
                        return Err(PingError::Permanent {
                            status: reply.status,
                            message,
                        });
                    }
                }
                Ok(IngestOutcome {
                    transaction_id,
                    failed,
                })
            } else if !failed.is_empty() {
                Err(PingError::BatchRejected {
                    failed,
                    transaction_id,
                })
            } else {
                Err(Self::refused(&reply))
            }
        })
        .await
    }

    /// Asynchronous ingestion (`/asyncdata`, `APIVersion: "V2"`); returns the
    /// `SPHTransactionId` to poll with [`PingClient::check_status`].
    ///
    /// Whether PING drops a repeated batch is unknown, so the batch is sent again only when
    /// the failed attempt certainly did not reach PING's processing: the connection could
    /// not be made (refused, name resolution, TLS handshake, connect timeout), the gateway
    /// answered 429 (after its `Retry-After`), or no token could be had. A 401 is answered,
    /// as for every call, by one more exchange with a fresh token. Any other transient
    /// failure (a timeout, a connection reset or closed after the request was written, a
    /// 5xx, a 2xx whose body is not JSON) is returned at once, after that single request:
    /// the caller treats the batch as unconfirmed and looks for it in proGres before
    /// sending it again. A 2xx without `SPHTransactionId` (and without `ErrorMessage`) is
    /// such a failure too, [`PingError::Transient`] with the 2xx status: PING may have
    /// accepted the batch, and there is no transaction to poll.
    pub async fn ingest_async(
        &self,
        shp: &str,
        records: &[IngestRecord],
    ) -> Result<String, PingError> {
        check_shp(shp)?;
        if records.is_empty() {
            return Err(PingError::InvalidRequest {
                detail: "asynchronous ingestion needs at least one record".into(),
            });
        }
        let text = ingest_body(
            shp,
            ("InteropID", &self.inner.settings.interop_id),
            Some("V2"),
            records.iter().map(|r| r.wire(false)),
        )?;
        let handle = |reply: Reply| {
            let tx = transaction_id(&reply.body);
            if (200..300).contains(&reply.status) {
                if let Some(message) = error_message(&reply.body) {
                    return Err(PingError::Permanent {
                        status: reply.status,
                        message,
                    });
                }
                // PING accepted the request but named no transaction (the reference job
                // only warns): the batch may be queued, and there is nothing to poll. It is
                // transient and, since PING answered, never sent again by this call: the
                // caller looks for the records in proGres before any re-send.
                tx.ok_or_else(|| {
                    tracing::warn!(
                        route = ROUTE_ASYNCDATA,
                        status = reply.status,
                        records = records.len(),
                        "SPHTransactionId missing from the response; the batch may have been accepted"
                    );
                    PingError::Transient {
                        status: Some(reply.status),
                        detail: format!(
                            "{ROUTE_ASYNCDATA}: SPHTransactionId missing from a {} answer; \
                             the batch may have been accepted",
                            reply.status
                        ),
                        retry_after: None,
                    }
                })
            } else {
                let failed = parse_failed_records(&reply.body);
                if failed.is_empty() {
                    Err(Self::refused(&reply))
                } else {
                    Err(PingError::BatchRejected {
                        failed,
                        transaction_id: tx,
                    })
                }
            }
        };
        // Sent again only when PING certainly did not process the failed attempt.
        let (route, url) = (ROUTE_ASYNCDATA, &self.inner.url_async);
        self.call_with(route, url, text, Resend::IfUnprocessed, handle)
            .await
    }

    /// The state of an asynchronous ingestion. A check-status `Data` sent as a string with
    /// unescaped inner quotes is repaired (see [`crate::checkstatus`]).
    pub async fn check_status(
        &self,
        shp: &str,
        transaction_id: &str,
    ) -> Result<CheckStatus, PingError> {
        check_shp(shp)?;
        if !is_code(transaction_id) {
            return Err(PingError::InvalidRequest {
                detail: "SPHTransactionId is empty or not a plain identifier".into(),
            });
        }
        let s = &self.inner.settings;
        let body = json!({
            "ShippingProcessId": shp,
            "InteropID": s.interop_id,
            "PartnerId": s.partner_id,
            "SPHTransactionId": transaction_id,
        });
        self.call(ROUTE_CHECKSTATUS, &self.inner.url_check, body, |reply| {
            if (200..300).contains(&reply.status) {
                parse_check_status(&reply.body)
            } else {
                Err(Self::refused(&reply))
            }
        })
        .await
    }
}

/// The text of an ingestion request: `ShippingProcessId`, the interop id under the name the
/// endpoint expects (`InteropId` for `/data`, `InteropID` for `/asyncdata`), `APIVersion`
/// when given, and `Data`, in that order, as the reference sends them.
fn ingest_body<'a>(
    shp: &str,
    interop: (&'static str, &str),
    api_version: Option<&'static str>,
    data: impl Iterator<Item = Wire<'a>> + Clone,
) -> Result<Vec<u8>, PingError> {
    struct Body<'b, I> {
        shp: &'b str,
        interop: (&'static str, &'b str),
        api_version: Option<&'static str>,
        data: Seq<I>,
    }
    impl<'w, I: Iterator<Item = Wire<'w>> + Clone> Serialize for Body<'_, I> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut m = serializer.serialize_map(None)?;
            m.serialize_entry("ShippingProcessId", self.shp)?;
            m.serialize_entry(self.interop.0, self.interop.1)?;
            if let Some(v) = self.api_version {
                m.serialize_entry("APIVersion", v)?;
            }
            m.serialize_entry("Data", &self.data)?;
            m.end()
        }
    }
    serde_json::to_vec(&Body {
        shp,
        interop,
        api_version,
        data: Seq(data),
    })
    .map_err(|e| PingError::InvalidRequest {
        detail: format!("the ingestion request could not be written: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    /// The ingestion bodies are written without a JSON tree: the text must be the one the
    /// tree gave (same keys, same order, `null` values, escaping), for both endpoints.
    #[test]
    fn ingest_bodies_are_the_text_of_their_json_tree() {
        let records = [
            IngestRecord::new("case-1")
                .with_external_guid("g-1")
                .attachment("Accepted \"by\" PRIMERO\n\u{e9}t\u{e9}")
                .field("progres_primerotransferstatus", Some("125080003"))
                .field("progres_primeroid", None::<String>),
            IngestRecord::new("x").field("a", Some("b")),
        ];
        let sync = ingest_body(
            "SHP-1",
            ("InteropId", "interop"),
            None,
            records.iter().map(|r| r.wire(true)),
        )
        .unwrap();
        let expected = json!({
            "ShippingProcessId": "SHP-1",
            "InteropId": "interop",
            "Data": records.iter().map(|r| r.to_wire(true)).collect::<Vec<_>>(),
        });
        assert_eq!(String::from_utf8(sync).unwrap(), expected.to_string());
        let asynchronous = ingest_body(
            "SHP-2",
            ("InteropID", "interop"),
            Some("V2"),
            records.iter().map(|r| r.wire(false)),
        )
        .unwrap();
        let expected = json!({
            "ShippingProcessId": "SHP-2",
            "InteropID": "interop",
            "APIVersion": "V2",
            "Data": records.iter().map(|r| r.to_wire(false)).collect::<Vec<_>>(),
        });
        assert_eq!(
            String::from_utf8(asynchronous).unwrap(),
            expected.to_string()
        );
        // Without attachments, `/data` still sends an empty list and `/asyncdata` none.
        assert!(expected
            .to_string()
            .contains(r#"{"ExternalId":"x","Fields":"#));
    }

    fn settings() -> PingSettings {
        PingSettings::new(
            "http://127.0.0.1:9/prefix/".parse().unwrap(),
            "http://127.0.0.1:9/token".parse().unwrap(),
            "client",
            "user",
            SecretString::from("pw"),
            SecretString::from("key"),
            "PNR-1363",
            "INT-1436",
        )
    }

    #[test]
    fn urls_keep_the_base_path() {
        let c = PingClient::new(settings()).unwrap();
        assert_eq!(
            c.inner.url_data.as_str(),
            "http://127.0.0.1:9/prefix/api/ingestion/v2/PNR-1363/data"
        );
        assert_eq!(
            c.inner.url_retrieve.as_str(),
            "http://127.0.0.1:9/prefix/primes/fetch/paging/v3/retrievedatawithpaging"
        );
    }

    #[test]
    fn bad_settings_are_all_reported() {
        let mut s = settings();
        s.partner_id = "PNR/1".into();
        s.subscription_key = SecretString::from(" ");
        let e = PingClient::new(s).unwrap_err().to_string();
        assert!(
            e.contains("partner_id") && e.contains("subscription_key"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn invalid_input_is_refused_before_any_call() {
        let c = PingClient::new(settings()).unwrap();
        let e = c.retrieve("SHP-2358", &["a]".into()]).await.unwrap_err();
        assert!(matches!(e, PingError::InvalidRequest { .. }));
        let e = c.ingest_async("SHP-2731", &[]).await.unwrap_err();
        assert!(matches!(e, PingError::InvalidRequest { .. }));
        assert_eq!(
            c.ingest::<IngestRecord>("SHP-2748", &[]).await.unwrap(),
            IngestOutcome::default()
        );
    }
}
