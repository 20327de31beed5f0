//! A pass-through HTTP/1.1 proxy for the flow tests that need an answer the simulators cannot
//! give (a refused or slowed write-back, rows that disagree, duplicate cases): each test
//! supplies only the handler that reads a request and decides the answer, usually by
//! forwarding it upstream and editing what comes back. One request per connection.

use std::future::Future;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::TestEnv;

/// One request as the client sent it (header names lower-cased).
pub struct Request {
    pub method: String,
    /// Path and query string.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The body as text (the APIs' bodies are JSON).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// The answer sent back to the client.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    /// A JSON answer with `status`.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status,
            content_type: "application/json".into(),
            body: body.into(),
        }
    }
}

/// Serves `listener` until the test ends: every request goes to `handle`; no answer (`None`)
/// closes the connection without one.
pub fn serve<F, Fut>(listener: tokio::net::TcpListener, handle: F)
where
    F: Fn(Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<Answer>> + Send + 'static,
{
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let handle = handle.clone();
            tokio::spawn(async move {
                let Some(request) = read_request(&mut sock).await else {
                    return;
                };
                if let Some(answer) = handle(request).await {
                    let head = format!(
                        "HTTP/1.1 {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\n\
                         connection: close\r\n\r\n",
                        answer.status,
                        answer.content_type,
                        answer.body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(&answer.body).await;
                }
                let _ = sock.shutdown().await;
            });
        }
    });
}

/// Starts a test environment whose PING API calls (not the token endpoint) go to a proxy that
/// answers each with `handle`, given PING's base URL without a trailing slash and the
/// request; `tweak` adjusts the configuration further.
pub async fn ping_behind<F, Fut>(tweak: impl FnOnce(&mut pp_config::Config), handle: F) -> TestEnv
where
    F: Fn(String, Request) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Option<Answer>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", listener.local_addr().unwrap());
    let mut target = String::new();
    let env = TestEnv::start_with(|c| {
        target = c.ping.base_url.as_str().trim_end_matches('/').to_owned();
        c.ping.base_url = proxy_url.parse().unwrap();
        tweak(c);
    })
    .await;
    serve(listener, move |request: Request| {
        handle(target.clone(), request)
    });
    env
}

/// Sends `request` to `upstream` (a base URL without a trailing slash) with its credentials
/// and content type, and returns the answer (`None` when upstream cannot be reached).
pub async fn forward(http: &reqwest::Client, upstream: &str, request: &Request) -> Option<Answer> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).ok()?;
    let mut req = http.request(method, format!("{upstream}{}", request.target));
    for (k, v) in &request.headers {
        if [
            "authorization",
            "ocp-apim-subscription-key",
            "content-type",
            "accept",
        ]
        .contains(&k.as_str())
        {
            req = req.header(k.as_str(), v.as_str());
        }
    }
    let resp = req.body(request.body.clone()).send().await.ok()?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let body = resp.bytes().await.ok()?.to_vec();
    Some(Answer {
        status,
        content_type,
        body,
    })
}

/// Method, target, lower-cased headers and body of one HTTP/1.1 request.
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Request> {
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
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[end + 4..].to_vec();
    while body.len() < length {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}
