//! The read-ahead case listing (`PrimeroClient::case_pages_ahead`) when things change while
//! several pages are in flight, against the Primero simulator over real HTTP: an error on one
//! page ends the listing (and keeps it ended) with the later pages abandoned; a total that
//! shrinks ends the listing cleanly without handing over pages read on the old total; a total
//! that grows is followed to its new end.
//!
//! The simulator's fault rules cannot single out one page (they match an endpoint, with a
//! probability and a number of applications), and its data changes only through the control
//! API, which the client's requests in flight would race. So the client talks to a small
//! pass-through proxy in this file that logs the page of every case listing request, can
//! answer 500 for one page, and can hold chosen pages until the test releases them.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pp_http::{HttpSettings, RetryPolicy};
use pp_primero::{
    AuthMode, CaseQuery, PrimeroClient, PrimeroError, PrimeroSettings, SortDirection,
};
use pp_sim_primero::scenario::{generate, ScenarioOptions};
use pp_sim_primero::{Options, SimHandle, DEFAULT_PASSWORD};
use secrecy::SecretString;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// How long the test waits for something that should happen at once.
const PATIENCE: Duration = Duration::from_secs(10);

async fn sim() -> SimHandle {
    pp_sim_primero::spawn(Options::default(), 0)
        .await
        .expect("simulator starts")
}

/// A client of `base_url` (the proxy) that does not retry, so each page is asked for once.
fn client(base_url: &str) -> PrimeroClient {
    PrimeroClient::new(PrimeroSettings {
        base_url: url::Url::parse(base_url).unwrap(),
        username: "openfn_integration".into(),
        password: SecretString::from(DEFAULT_PASSWORD.to_string()),
        auth: AuthMode::Basic,
        http: HttpSettings {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(20),
            max_concurrency: 8,
            retry: RetryPolicy {
                max_attempts: 1,
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(100),
                max_elapsed: Duration::from_secs(10),
            },
        },
    })
    .unwrap()
}

/// Generated cases: `anchor` spreads `created_at` over the 30 days before it; without it the
/// simulator stamps them with the time of seeding.
fn scenario(count: usize, seed: u64, anchor: Option<&str>) -> Value {
    generate(&ScenarioOptions {
        count,
        seed,
        with_referrals: false,
        anchor: anchor.map(|a| a.parse().unwrap()),
        ..ScenarioOptions::default()
    })
}

/// The record ids of a seed document's cases, in document order.
fn seeded_ids(doc: &Value) -> Vec<String> {
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

// ---- the proxy ---------------------------------------------------------------------------

/// What the proxy does besides forwarding.
#[derive(Clone)]
enum Rule {
    /// Answer 500 for this page once every page in `after` has been asked for.
    Fail { page: u64, after: Vec<u64> },
    /// Hold these pages until [`Proxy::release`] lets them through.
    Hold(BTreeSet<u64>),
}

/// A pass-through HTTP/1.1 proxy in front of the simulator (one request per connection).
#[derive(Clone)]
struct Proxy {
    url: String,
    upstream: String,
    http: reqwest::Client,
    rule: Rule,
    /// Pages of the case listing requests, in arrival order.
    asked: Arc<Mutex<Vec<u64>>>,
    /// Pages whose answer has been sent back, in order.
    answered: Arc<Mutex<Vec<u64>>>,
    /// Pages released from [`Rule::Hold`].
    released: Arc<watch::Sender<BTreeSet<u64>>>,
}

impl Proxy {
    async fn start(sim: &SimHandle, rule: Rule) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Proxy {
            url: format!("http://{}", listener.local_addr().unwrap()),
            upstream: sim.base_url(),
            http: reqwest::Client::new(),
            rule,
            asked: Arc::default(),
            answered: Arc::default(),
            released: Arc::new(watch::channel(BTreeSet::new()).0),
        };
        let serving = proxy.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serving.clone().serve(sock));
            }
        });
        proxy
    }

    fn asked(&self) -> Vec<u64> {
        self.asked.lock().unwrap().clone()
    }

    fn asked_sorted(&self) -> Vec<u64> {
        let mut pages = self.asked();
        pages.sort_unstable();
        pages
    }

    fn answered(&self) -> Vec<u64> {
        self.answered.lock().unwrap().clone()
    }

    fn release(&self, pages: &[u64]) {
        self.released
            .send_modify(|r| r.extend(pages.iter().copied()));
    }

    /// Waits (up to [`PATIENCE`]) until `done` holds.
    async fn wait_until(&self, what: &str, done: impl Fn(&Proxy) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "gave up waiting for {what}: asked {:?}, answered {:?}",
                self.asked(),
                self.answered()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn serve(self, mut sock: tokio::net::TcpStream) {
        let Some((method, target, headers)) = read_request(&mut sock).await else {
            return;
        };
        let page = listing_page(&method, &target);
        if let Some(p) = page {
            self.asked.lock().unwrap().push(p);
        }
        let answer = match (&self.rule, page) {
            (Rule::Fail { page: fail, after }, Some(p)) if p == *fail => {
                let deadline = tokio::time::Instant::now() + PATIENCE;
                while !after.iter().all(|a| self.asked().contains(a))
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let body = format!(
                    r#"{{"errors":[{{"status":500,"resource":"/api/v2/cases","message":"page {p} failed"}}]}}"#
                );
                Some((500, "application/json".to_owned(), body.into_bytes()))
            }
            (Rule::Hold(held), Some(p)) if held.contains(&p) => {
                let mut released = self.released.subscribe();
                let wait = released.wait_for(|r| r.contains(&p));
                if tokio::time::timeout(PATIENCE * 3, wait).await.is_err() {
                    return;
                }
                self.forward(&method, &target, &headers).await
            }
            _ => self.forward(&method, &target, &headers).await,
        };
        let Some((status, content_type, body)) = answer else {
            return;
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n",
            body.len()
        );
        let _ = sock.write_all(head.as_bytes()).await;
        let _ = sock.write_all(&body).await;
        let _ = sock.shutdown().await;
        if let Some(p) = page {
            self.answered.lock().unwrap().push(p);
        }
    }

    /// The simulator's answer to the same GET (the listing is all these tests send).
    async fn forward(
        &self,
        method: &str,
        target: &str,
        headers: &[(String, String)],
    ) -> Option<(u16, String, Vec<u8>)> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).ok()?;
        let mut req = self
            .http
            .request(method, format!("{}{target}", self.upstream));
        for (k, v) in headers {
            if ["authorization", "accept", "content-type"].contains(&k.as_str()) {
                req = req.header(k.as_str(), v.as_str());
            }
        }
        let resp = req.send().await.ok()?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_owned();
        let body = resp.bytes().await.ok()?.to_vec();
        Some((status, content_type, body))
    }
}

/// The `page` of a case listing request (`GET …/cases?…`), none for any other request.
fn listing_page(method: &str, target: &str) -> Option<u64> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if method != "GET" || !path.ends_with("/cases") {
        return None;
    }
    let page = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "page")
        .map(|(_, v)| v.parse().expect("numeric page"));
    Some(page.unwrap_or(1))
}

/// Method, target and lower-cased headers of one bodiless HTTP/1.1 request.
async fn read_request(
    sock: &mut tokio::net::TcpStream,
) -> Option<(String, String, Vec<(String, String)>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some((method, target, headers))
}

// ---- the tests ---------------------------------------------------------------------------

#[tokio::test]
async fn an_error_on_a_page_with_later_pages_in_flight_ends_the_listing_for_good() {
    let sim = sim().await;
    sim.seed(scenario(1000, 11, None)).await.unwrap();
    // Page 3 fails, once pages 4 and 5 have been asked for (so they are in flight then).
    let proxy = Proxy::start(
        &sim,
        Rule::Fail {
            page: 3,
            after: vec![4, 5],
        },
    )
    .await;
    let c = client(&proxy.url);
    let mut pages = c
        .case_pages_ahead(&CaseQuery::default().with_page_size(100), 3)
        .unwrap();

    let mut ids: HashSet<String> = HashSet::new();
    let first = pages.next_page().await.unwrap().expect("page 1");
    assert_eq!(first.len(), 100);
    ids.extend(first.into_iter().map(|c| c.id));
    let second = pages.next_page().await.unwrap().expect("page 2");
    assert_eq!(second.len(), 100);
    ids.extend(second.into_iter().map(|c| c.id));
    assert_eq!(ids.len(), 200, "pages 1 and 2, each case once");

    let e = pages.next_page().await.unwrap_err();
    assert!(
        matches!(
            e,
            PrimeroError::Transient {
                status: Some(500),
                ..
            }
        ),
        "page 3's 500: {e}"
    );
    // Failed stays failed: never a clean end, never page 4 (which the server did answer).
    for _ in 0..3 {
        assert!(pages.next_page().await.is_err(), "the listing failed");
    }
    assert_eq!(pages.stats().pages, 2, "only pages 1 and 2 handed over");

    // Pages 4 and 5 were in flight when page 3 failed; nothing after them is asked for,
    // even after a while.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        proxy.asked_sorted(),
        vec![1, 2, 3, 4, 5],
        "each page up to 5 once, none past it"
    );
    drop(pages);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(proxy.asked().iter().all(|p| *p <= 5));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_total_that_shrinks_ends_the_listing_without_the_pages_read_on_the_old_total() {
    let sim = sim().await;
    let doc = scenario(350, 11, None);
    sim.seed(doc.clone()).await.unwrap();
    // Listed by record id, so the order is known from the seed alone.
    let mut order = seeded_ids(&doc);
    order.sort_unstable();

    let proxy = Proxy::start(&sim, Rule::Hold([2, 3, 4].into())).await;
    let c = client(&proxy.url);
    let query = CaseQuery::default()
        .with_page_size(100)
        .ordered_by("id", SortDirection::Asc);
    let mut pages = c.case_pages_ahead(&query, 3).unwrap();

    let first = pages.next_page().await.unwrap().expect("page 1");
    let mut handed: Vec<String> = first.into_iter().map(|c| c.id).collect();
    assert_eq!(handed, order[..100]);
    // Page 1 said 350 cases: pages 2 to 4 are asked for at once.
    proxy
        .wait_until("pages 2-4 to be asked for", |p| {
            p.asked_sorted() == [1, 2, 3, 4]
        })
        .await;

    // Pages 3 and 4 are answered from the 350 cases (full and half full) ...
    proxy.release(&[3, 4]);
    proxy
        .wait_until("pages 3 and 4 to be answered", |p| {
            p.answered().contains(&3) && p.answered().contains(&4)
        })
        .await;
    // ... then all but the first 150 cases go, and page 2 comes back short (50 of 150).
    let kept: HashSet<&str> = order[..150].iter().map(String::as_str).collect();
    let cases: Vec<Value> = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| kept.contains(c["id"].as_str().unwrap()))
        .cloned()
        .collect();
    sim.seed(serde_json::json!({"reset": true, "cases": cases}))
        .await
        .unwrap();
    proxy.release(&[2]);

    let mut sizes = Vec::new();
    while let Some(page) = pages.next_page().await.unwrap() {
        sizes.push(page.len());
        handed.extend(page.into_iter().map(|c| c.id));
    }
    assert_eq!(
        sizes,
        [50],
        "page 2 ends the listing; pages 3 and 4 are dropped"
    );
    assert!(
        pages.next_page().await.unwrap().is_none(),
        "ended stays ended"
    );
    assert_eq!(handed, order[..150], "the 150 left, in order");
    assert_eq!(
        handed.iter().collect::<HashSet<_>>().len(),
        150,
        "each once"
    );
    let stats = pages.stats();
    assert_eq!((stats.pages, stats.cases, stats.duplicates), (2, 150, 0));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(proxy.asked_sorted(), [1, 2, 3, 4], "nothing past page 4");
    sim.shutdown().await;
}

#[tokio::test]
async fn a_total_that_grows_is_followed_to_its_new_end() {
    let sim = sim().await;
    // Created in the past; listed oldest first, so cases added now come last.
    let before = scenario(250, 11, Some("2024-01-31T12:00:00Z"));
    sim.seed(before.clone()).await.unwrap();

    let proxy = Proxy::start(&sim, Rule::Hold([2, 3].into())).await;
    let c = client(&proxy.url);
    let query = CaseQuery::default()
        .with_page_size(100)
        .ordered_by("created_at", SortDirection::Asc);
    let mut pages = c.case_pages_ahead(&query, 3).unwrap();

    let first = pages.next_page().await.unwrap().expect("page 1");
    assert_eq!(first.len(), 100);
    let mut handed: Vec<String> = first.into_iter().map(|c| c.id).collect();
    // Page 1 said 250 cases: pages 2 and 3, and no further although 3 may be ahead.
    proxy
        .wait_until("pages 2 and 3 to be asked for", |p| {
            p.asked_sorted() == [1, 2, 3]
        })
        .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(proxy.asked_sorted(), [1, 2, 3], "not past the total");

    // 150 more cases, created now, while pages 2 and 3 are on their way.
    let added = scenario(150, 12, None);
    sim.seed(added.clone()).await.unwrap();
    proxy.release(&[2, 3]);

    let mut sizes = Vec::new();
    while let Some(page) = pages.next_page().await.unwrap() {
        sizes.push(page.len());
        handed.extend(page.into_iter().map(|c| c.id));
    }
    assert_eq!(sizes, [100, 100, 100], "pages 2 to 4 of the 400");
    assert_eq!(handed.len(), 400);
    let unique: HashSet<&String> = handed.iter().collect();
    assert_eq!(unique.len(), 400, "each case once");
    let all: HashSet<String> = seeded_ids(&before)
        .into_iter()
        .chain(seeded_ids(&added))
        .collect();
    assert_eq!(
        handed.iter().cloned().collect::<HashSet<_>>(),
        all,
        "all 400"
    );
    let new_ids: HashSet<String> = seeded_ids(&added).into_iter().collect();
    assert!(
        handed[250..].iter().all(|id| new_ids.contains(id)),
        "the added cases come last"
    );
    assert_eq!(pages.stats().duplicates, 0);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(proxy.asked_sorted(), [1, 2, 3, 4], "nothing past page 4");
    sim.shutdown().await;
}
