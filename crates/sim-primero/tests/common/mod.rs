//! Shared helpers of the integration tests: start a simulator on a free port and talk to it
//! over real HTTP with reqwest (Basic auth as the default API user unless told otherwise).

#![allow(dead_code)]

use pp_sim_primero::{spawn, Options, SimHandle, API_USER, DEFAULT_PASSWORD};
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};

pub struct T {
    pub sim: SimHandle,
    pub http: reqwest::Client,
}

pub async fn start() -> T {
    start_with(Options::default()).await
}

pub async fn start_with(opts: Options) -> T {
    let sim = spawn(opts, 0).await.expect("spawn simulator");
    T {
        sim,
        http: reqwest::Client::new(),
    }
}

/// A response reduced to what the tests look at.
pub struct R {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl R {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Value of a cookie set by this response.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }
}

pub async fn send(rb: RequestBuilder) -> R {
    let resp = rb.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    R {
        status,
        headers,
        text,
    }
}

impl T {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.sim.base_url(), path)
    }

    pub fn req_as(&self, user: &str, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, self.url(path))
            .basic_auth(user, Some(DEFAULT_PASSWORD))
    }

    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.req_as(API_USER, method, path)
    }

    pub async fn get(&self, path: &str) -> R {
        send(self.req(Method::GET, path)).await
    }

    pub async fn get_as(&self, user: &str, path: &str) -> R {
        send(self.req_as(user, Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> R {
        send(self.req(Method::POST, path).json(&body)).await
    }

    pub async fn post_as(&self, user: &str, path: &str, body: Value) -> R {
        send(self.req_as(user, Method::POST, path).json(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> R {
        send(self.req(Method::PATCH, path).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> R {
        send(self.req(Method::DELETE, path)).await
    }

    /// Control API call (no auth).
    pub async fn ctl(&self, method: Method, path: &str, body: Option<Value>) -> R {
        let mut rb = self.http.request(method, self.url(path));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        send(rb).await
    }

    /// Creates a CP case with consent and returns its `data`.
    pub async fn create_case(&self, mut data: Value) -> Value {
        let obj = data.as_object_mut().expect("object");
        obj.entry("module_id").or_insert(json!("primeromodule-cp"));
        obj.entry("disclosure_other_orgs").or_insert(json!(true));
        obj.entry("consent_for_services").or_insert(json!(true));
        let r = self.post("/api/v2/cases", json!({ "data": data })).await;
        assert_eq!(r.status, 200, "create: {}", r.text);
        r.json()["data"].clone()
    }

    pub async fn get_case(&self, id: &str) -> Value {
        let r = self.get(&format!("/api/v2/cases/{id}")).await;
        assert_eq!(r.status, 200, "get case: {}", r.text);
        r.json()["data"].clone()
    }

    pub async fn seed(&self, doc: Value) {
        let r = self.ctl(Method::POST, "/_sim/seed", Some(doc)).await;
        assert_eq!(r.status, 200, "seed: {}", r.text);
    }
}

pub fn is_ms_timestamp(v: &Value) -> bool {
    let s = v.as_str().unwrap_or("");
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}
