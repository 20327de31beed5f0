//! HTTP policy shared by the PING and Primero clients: timeouts, connection reuse, a limit of
//! concurrent requests, error classification, and retries with exponential backoff, full
//! jitter and `Retry-After`, bounded in attempts and in total time.
//!
//! [`with_retries`] repeats every transient failure; it suits reads and keyed writes, which a
//! repeat cannot apply twice. A call that a repeat could apply twice uses [`with_retries_if`]
//! with a predicate that allows another attempt only when the failed one certainly never
//! reached the server's processing ([`transport_not_sent`], [`status_not_processed`]).
//!
//! It knows nothing of either system's wire format. Request observation (for metrics) goes
//! through a process-wide [`RequestObserver`] so that the clients need not know about
//! Prometheus.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How often and for how long a transient failure is retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubled for each later one.
    pub initial_backoff: Duration,
    /// Upper bound of one backoff (and of an honoured `Retry-After`).
    pub max_backoff: Duration,
    /// No new attempt starts once this much time has passed since the first.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

/// Timeouts, concurrency and retries of one API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    pub connect_timeout: Duration,
    /// Limit for the whole request, body included.
    pub request_timeout: Duration,
    /// Requests in flight at once against this API.
    pub max_concurrency: usize,
    pub retry: RetryPolicy,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_concurrency: 8,
            retry: RetryPolicy::default(),
        }
    }
}

/// What a failure means for the record and the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Timeout, connection error, 5xx, 429: worth another attempt.
    Transient,
    /// A 4xx other than 401/429: the request itself is wrong; retrying will not help.
    Permanent,
    /// Credentials refused.
    Auth,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Auth => "auth",
        }
    }
}

/// Classification of an HTTP status code.
pub fn classify_status(status: u16) -> ErrorClass {
    match status {
        401 => ErrorClass::Auth,
        408 | 425 | 429 => ErrorClass::Transient,
        500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// Classification of a transport error (no HTTP status): timeouts, connection failures and
/// broken bodies are transient; a request that could not even be built is permanent.
pub fn classify_transport(err: &reqwest::Error) -> ErrorClass {
    if err.is_builder() || err.is_redirect() {
        ErrorClass::Permanent
    } else {
        ErrorClass::Transient
    }
}

/// Whether a transport failure certainly happened before the request reached the server: the
/// connection was never established (connection refused, name resolution, TLS handshake,
/// connect timeout), so nothing of the request was written. Every other transport failure (a
/// timeout while waiting for the answer, a connection reset or closed after the request was
/// written, a broken response body) may follow a request that the server received and
/// processed.
pub fn transport_not_sent(err: &reqwest::Error) -> bool {
    err.is_connect()
}

/// Whether an HTTP status says the request was turned away before any processing: 429 (the
/// gateway's rate limit) and 401 (credentials refused). A 5xx, 408 or 425 may come after (or
/// during) processing, so it does not count.
pub fn status_not_processed(status: u16) -> bool {
    matches!(status, 401 | 429)
}

/// A short, secret-free description of a transport error (reqwest's `Display` can include the
/// full URL with query string, which may carry identifiers we do not want in logs).
pub fn describe_transport(err: &reqwest::Error) -> &'static str {
    if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "connection broken while reading the response"
    } else if err.is_request() {
        "request failed (connection closed)"
    } else if err.is_redirect() {
        "unexpected redirect"
    } else if err.is_builder() {
        "invalid request"
    } else {
        "transport error"
    }
}

/// An error that the retry loop can reason about.
pub trait Retryable {
    fn class(&self) -> ErrorClass;
    /// The server's `Retry-After`, when it sent one.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// `Retry-After` as delta-seconds or an HTTP date.
pub fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// Backoff before attempt `attempt + 1` (attempt counts from 1): exponential with full jitter,
/// at least a quarter of the exponential step so that retries do not collapse to zero.
pub fn backoff_delay(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .initial_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let cap = exp.min(policy.max_backoff);
    let floor = cap / 4;
    let span = cap.saturating_sub(floor).as_millis() as u64;
    let jitter = if span == 0 {
        0
    } else {
        rand::thread_rng().gen_range(0..=span)
    };
    floor + Duration::from_millis(jitter)
}

/// Runs `op` until it succeeds, fails with a non-transient error, or the policy's bounds are
/// reached; the last error is returned. `op` receives the attempt number (from 1).
///
/// Every transient failure is retried, including one whose request may have been processed
/// (a timeout, a 5xx): only for calls that a repeat cannot apply twice. Others use
/// [`with_retries_if`].
pub async fn with_retries<T, E, F, Fut>(
    policy: &RetryPolicy,
    system: &'static str,
    op: F,
) -> Result<T, E>
where
    E: Retryable,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    with_retries_if(policy, system, op, |_: &E| true).await
}

/// [`with_retries`], but a transient failure is retried only when `may_resend` allows it;
/// otherwise it is returned at once, without another attempt. For a call whose repeat could
/// apply it twice, `may_resend` answers true only when the failed attempt certainly did not
/// reach the server's processing (see [`transport_not_sent`] and [`status_not_processed`]).
pub async fn with_retries_if<T, E, F, Fut, P>(
    policy: &RetryPolicy,
    system: &'static str,
    mut op: F,
    mut may_resend: P,
) -> Result<T, E>
where
    E: Retryable,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    P: FnMut(&E) -> bool,
{
    let started = Instant::now();
    let mut attempt = 1u32;
    loop {
        match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) => {
                if e.class() != ErrorClass::Transient || attempt >= policy.max_attempts.max(1) {
                    return Err(e);
                }
                if !may_resend(&e) {
                    tracing::debug!(
                        system,
                        attempt,
                        "not retried: the failed attempt may have reached the server"
                    );
                    return Err(e);
                }
                let delay = match e.retry_after() {
                    Some(ra) => ra.min(policy.max_backoff),
                    None => backoff_delay(policy, attempt),
                };
                if started.elapsed() + delay > policy.max_elapsed {
                    return Err(e);
                }
                tracing::debug!(
                    system,
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    "retrying"
                );
                observer().on_retry(system);
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

/// Builds a pooled client with the settings' timeouts (rustls, no proxies from the
/// environment so that a stray variable cannot route personal data elsewhere).
pub fn build_client(settings: &HttpSettings) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.request_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("ping-primero/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a reqwest client with static settings always builds")
}

/// Bounds the requests in flight against one API.
#[derive(Clone, Debug)]
pub struct Limiter(Arc<Semaphore>);

impl Limiter {
    pub fn new(max_concurrency: usize) -> Self {
        Limiter(Arc::new(Semaphore::new(max_concurrency.max(1))))
    }

    /// Waits for a free slot; the slot is released when the permit is dropped.
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        self.0
            .clone()
            .acquire_owned()
            .await
            .expect("the limiter's semaphore is never closed")
    }
}

/// Receives one call per HTTP request and per retry; the daemon installs one that feeds
/// Prometheus. Arguments are system names, route templates and status codes only.
pub trait RequestObserver: Send + Sync {
    fn on_request(
        &self,
        system: &'static str,
        method: &str,
        route: &'static str,
        status: Option<u16>,
        elapsed: Duration,
    );
    fn on_retry(&self, system: &'static str);
}

struct NoObserver;

impl RequestObserver for NoObserver {
    fn on_request(&self, _: &'static str, _: &str, _: &'static str, _: Option<u16>, _: Duration) {}
    fn on_retry(&self, _: &'static str) {}
}

static OBSERVER: OnceLock<Arc<dyn RequestObserver>> = OnceLock::new();

/// Installs the process-wide observer; only the first call takes effect.
pub fn set_observer(observer: Arc<dyn RequestObserver>) {
    let _ = OBSERVER.set(observer);
}

/// The installed observer, or one that does nothing.
pub fn observer() -> &'static dyn RequestObserver {
    static NONE: NoObserver = NoObserver;
    match OBSERVER.get() {
        Some(o) => o.as_ref(),
        None => &NONE,
    }
}

/// Logs one finished request (method, route, status, duration, optional PING transaction id)
/// and reports it to the observer. Never logs bodies or query strings.
pub fn record_request(
    system: &'static str,
    method: &str,
    route: &'static str,
    status: Option<u16>,
    elapsed: Duration,
    transaction_id: Option<&str>,
) {
    tracing::debug!(
        system,
        method,
        route,
        status = status.unwrap_or(0),
        duration_ms = elapsed.as_millis() as u64,
        sph_transaction_id = transaction_id.unwrap_or(""),
        "api request"
    );
    observer().on_request(system, method, route, status, elapsed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct E(ErrorClass, Option<Duration>);
    impl Retryable for E {
        fn class(&self) -> ErrorClass {
            self.0
        }
        fn retry_after(&self) -> Option<Duration> {
            self.1
        }
    }

    fn fast(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            max_elapsed: Duration::from_secs(5),
        }
    }

    /// An operation that counts its calls in `calls` and fails transiently before attempt
    /// `ok_at`, which returns its attempt number.
    fn transient_until(
        ok_at: u32,
        calls: &AtomicU32,
    ) -> impl FnMut(u32) -> std::future::Ready<Result<u32, E>> + '_ {
        move |a| {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(if a < ok_at {
                Err(E(ErrorClass::Transient, None))
            } else {
                Ok(a)
            })
        }
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify_status(500), ErrorClass::Transient);
        assert_eq!(classify_status(503), ErrorClass::Transient);
        assert_eq!(classify_status(429), ErrorClass::Transient);
        assert_eq!(classify_status(401), ErrorClass::Auth);
        assert_eq!(classify_status(422), ErrorClass::Permanent);
        assert_eq!(classify_status(404), ErrorClass::Permanent);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            max_elapsed: Duration::from_secs(60),
        };
        for _ in 0..50 {
            let d1 = backoff_delay(&p, 1);
            assert!(d1 >= Duration::from_millis(25) && d1 <= Duration::from_millis(100));
            let d3 = backoff_delay(&p, 3);
            assert!(d3 >= Duration::from_millis(100) && d3 <= Duration::from_millis(400));
            let d9 = backoff_delay(&p, 9);
            assert!(d9 <= Duration::from_millis(1000));
        }
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let r: Result<u32, E> = with_retries(&fast(5), "test", transient_until(3, &calls)).await;
        assert_eq!(r.unwrap(), 3);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn retries_stop_at_max_attempts() {
        let calls = AtomicU32::new(0);
        let r: Result<(), E> = with_retries(&fast(3), "test", |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(E(ErrorClass::Transient, None)) }
        })
        .await;
        assert_eq!(r.unwrap_err().0, ErrorClass::Transient);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_and_auth_errors_are_not_retried() {
        for class in [ErrorClass::Permanent, ErrorClass::Auth] {
            let calls = AtomicU32::new(0);
            let r: Result<(), E> = with_retries(&fast(5), "test", |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move { Err(E(class, None)) }
            })
            .await;
            assert!(r.is_err());
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }

    #[tokio::test]
    async fn retries_stop_at_the_time_bound() {
        let policy = RetryPolicy {
            max_attempts: 100,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_secs(5),
            max_elapsed: Duration::from_millis(200),
        };
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let r: Result<(), E> = with_retries(&policy, "test", |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            // The server asks for 150 ms each time: the second wait would pass the bound.
            async { Err(E(ErrorClass::Transient, Some(Duration::from_millis(150)))) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_transient_error_is_returned_at_once_when_it_may_not_be_resent() {
        let calls = AtomicU32::new(0);
        let asked = AtomicU32::new(0);
        // The first failure may be resent (it says so through its Retry-After marker), the
        // second may not: two attempts, the second error returned.
        let r: Result<(), E> = with_retries_if(
            &fast(5),
            "test",
            |a| {
                calls.fetch_add(1, Ordering::SeqCst);
                let marker = (a == 1).then_some(Duration::from_millis(1));
                async move { Err(E(ErrorClass::Transient, marker)) }
            },
            |e: &E| {
                asked.fetch_add(1, Ordering::SeqCst);
                e.1.is_some()
            },
        )
        .await;
        assert_eq!(r.unwrap_err().1, None, "the second error is returned");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(asked.load(Ordering::SeqCst), 2);

        // Non-transient errors end the call without asking.
        let asked = AtomicU32::new(0);
        let r: Result<(), E> = with_retries_if(
            &fast(5),
            "test",
            |_| async { Err(E(ErrorClass::Permanent, None)) },
            |_: &E| {
                asked.fetch_add(1, Ordering::SeqCst);
                true
            },
        )
        .await;
        assert!(r.is_err());
        assert_eq!(asked.load(Ordering::SeqCst), 0);

        // A resend allowed every time behaves like with_retries.
        let calls = AtomicU32::new(0);
        let r: Result<u32, E> =
            with_retries_if(&fast(5), "test", transient_until(4, &calls), |_: &E| true).await;
        assert_eq!(r.unwrap(), 4);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn only_401_and_429_are_refused_before_processing() {
        assert!(status_not_processed(429));
        assert!(status_not_processed(401));
        for status in [408, 425, 500, 502, 503, 504, 200, 400] {
            assert!(!status_not_processed(status), "{status}");
        }
    }

    fn short_client() -> reqwest::Client {
        build_client(&HttpSettings {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_millis(300),
            ..HttpSettings::default()
        })
    }

    /// The transport error of a POST to `url` with the short client (panics if it answers).
    async fn failed_post(url: String) -> reqwest::Error {
        short_client()
            .post(url)
            .body("{}")
            .send()
            .await
            .unwrap_err()
    }

    /// A listener that reads one request head and then runs `then` on the connection.
    async fn one_connection<F, Fut>(then: F) -> std::net::SocketAddr
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            then(stream).await;
        });
        addr
    }

    #[tokio::test]
    async fn only_a_connection_never_made_counts_as_not_sent() {
        // Nothing listens on the port: connection refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = failed_post(format!("http://127.0.0.1:{port}/x")).await;
        assert!(transport_not_sent(&e), "{}", describe_transport(&e));
        assert_eq!(classify_transport(&e), ErrorClass::Transient);

        // The request was read, the answer never came: a timeout, maybe processed.
        let addr = one_connection(|stream| async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(stream);
        })
        .await;
        let e = failed_post(format!("http://{addr}/x")).await;
        assert!(e.is_timeout(), "{}", describe_transport(&e));
        assert!(!transport_not_sent(&e));

        // The request was read, then the connection closed without an answer.
        let addr = one_connection(|stream| async move { drop(stream) }).await;
        let e = failed_post(format!("http://{addr}/x")).await;
        assert!(!e.is_timeout(), "{}", describe_transport(&e));
        assert!(!transport_not_sent(&e), "{}", describe_transport(&e));
    }

    #[test]
    fn retry_after_seconds_and_dates_are_parsed() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(3)));
        let future = chrono::Utc::now() + chrono::Duration::seconds(30);
        h.insert(
            reqwest::header::RETRY_AFTER,
            future.to_rfc2822().parse().unwrap(),
        );
        let d = parse_retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(25) && d <= Duration::from_secs(30));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&h), None);
    }
}
