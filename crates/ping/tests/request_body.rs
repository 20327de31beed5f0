//! What the PING client puts on the wire, read by a bare HTTP listener: request bodies are
//! JSON documents sent with `Content-Type: application/json`, and a retried call sends the
//! same document again (the client keeps a request's body as text, not as a JSON tree).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pp_http::{HttpSettings, RetryPolicy};
use pp_ping::{IngestRecord, PingClient, PingSettings};
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as received: path, lowercase header lines, body.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: Vec<String>,
    body: Vec<u8>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Reads one HTTP/1.1 request (headers, then `Content-Length` bytes of body).
async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: Vec<String> = lines
        .filter(|l| !l.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let length: usize = headers
        .iter()
        .find_map(|h| h.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Seen {
        path,
        headers,
        body,
    })
}

/// A listener that logs every request and answers like PING: a token for `/token`, a 429 for
/// the first `/asyncdata` request (the one answer after which `/asyncdata` is sent again), a
/// transaction id for the rest.
async fn start() -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let seen = log.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some(request) = read_request(&mut stream).await else {
                    return;
                };
                let first_async = {
                    let mut log = seen.lock().unwrap();
                    log.push(request.clone());
                    request.path.ends_with("/asyncdata")
                        && log.iter().filter(|r| r.path == request.path).count() == 1
                };
                let (status, body) = if request.path == "/token" {
                    ("200 OK", json!({"access_token": "t0k", "expires_in": 3600}))
                } else if first_async {
                    (
                        "429 Too Many Requests",
                        json!({"statusCode": 429, "message": "Rate limit is exceeded."}),
                    )
                } else {
                    (
                        "200 OK",
                        json!({"SPHTransactionId": "tx-1", "ErrorMessage": null}),
                    )
                };
                let body = body.to_string();
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (base, log)
}

fn client(base: &str) -> PingClient {
    let mut s = PingSettings::new(
        format!("{base}/").parse().unwrap(),
        format!("{base}/token").parse().unwrap(),
        "ping-primero-test",
        "user@test.local",
        SecretString::from("pw"),
        SecretString::from("key"),
        "PNR-1363",
        "INT-1436",
    );
    s.http = HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(3),
        max_concurrency: 2,
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_elapsed: Duration::from_secs(10),
        },
    };
    PingClient::new(s).expect("valid settings")
}

fn records() -> Vec<IngestRecord> {
    vec![
        IngestRecord::new("lp-1")
            .field("progres_primerotransferstatus", Some("125080001"))
            .field("progres_comment", None::<String>),
        IngestRecord::new("lp-2")
            .with_external_guid("0c1d2e3f-0000-4000-8000-000000000002")
            .attachment("Accepted")
            .field("progres_primerotransferstatus", Some("125080002")),
    ]
}

fn is_json(seen: &Seen) -> bool {
    seen.headers
        .iter()
        .any(|h| h.starts_with("content-type:") && h.contains("application/json"))
}

#[tokio::test]
async fn ingestion_bodies_are_json_documents_and_a_retry_sends_the_same() {
    let (base, log) = start().await;
    let c = client(&base);

    let outcome = c.ingest("SHP-2748", &records()).await.unwrap();
    assert_eq!(outcome.transaction_id.as_deref(), Some("tx-1"));
    let tx = c.ingest_async("SHP-2731", &records()).await.unwrap();
    assert_eq!(tx, "tx-1");

    let log = log.lock().unwrap().clone();
    let data: Vec<&Seen> = log.iter().filter(|r| r.path.ends_with("/data")).collect();
    assert_eq!(data.len(), 1);
    assert!(is_json(data[0]), "{:?}", data[0].headers);
    let sent: Value = serde_json::from_slice(&data[0].body).unwrap();
    assert_eq!(
        sent,
        json!({
            "ShippingProcessId": "SHP-2748",
            "InteropId": "INT-1436",
            "Data": [
                {"ExternalId": "lp-1", "Attachments": [], "Fields": [
                    {"Name": "progres_primerotransferstatus", "Value": "125080001"},
                    {"Name": "progres_comment", "Value": null}]},
                {"ExternalId": "lp-2", "ExternalGUID": "0c1d2e3f-0000-4000-8000-000000000002",
                 "Attachments": [{"Comment": "Accepted"}], "Fields": [
                    {"Name": "progres_primerotransferstatus", "Value": "125080002"}]}
            ]
        })
    );

    // The 429 is retried with the very same document.
    let asyncs: Vec<&Seen> = log
        .iter()
        .filter(|r| r.path.ends_with("/asyncdata"))
        .collect();
    assert_eq!(asyncs.len(), 2, "one 429, one retry");
    assert!(asyncs.iter().all(|r| is_json(r)));
    assert_eq!(asyncs[0].body, asyncs[1].body);
    let sent: Value = serde_json::from_slice(&asyncs[1].body).unwrap();
    assert_eq!(sent["APIVersion"], "V2");
    assert_eq!(sent["InteropID"], "INT-1436");
    assert_eq!(sent["Data"].as_array().map(Vec::len), Some(2));
    assert_eq!(sent["Data"][0]["ExternalId"], "lp-1");
    assert!(sent["Data"][0].get("Attachments").is_none());
}
