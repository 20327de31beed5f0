//! The B2C access token: fetched with the resource-owner password grant, cached, shared by
//! all concurrent calls (one fetch at a time: callers that find no valid token wait for the
//! fetch in progress instead of starting their own), refreshed a margin before it expires,
//! and dropped when PING refuses it.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::error::PingError;
use crate::settings::PingSettings;
use crate::wire::{get_ci, ROUTE_TOKEN};

/// Lifetime assumed when the token response has no usable `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// A token handed to one API call.
#[derive(Clone)]
pub(crate) struct Token {
    pub value: SecretString,
    /// Identifies this token so that a 401 only drops the token that was refused.
    pub generation: u64,
    refresh_at: Instant,
}

#[derive(Default)]
struct Slot {
    current: Option<Token>,
    generation: u64,
}

/// The token cache of one client.
pub(crate) struct TokenCache {
    slot: Mutex<Slot>,
}

impl TokenCache {
    pub fn new() -> Self {
        TokenCache {
            slot: Mutex::new(Slot::default()),
        }
    }

    /// A valid token, fetched with `fetch` when there is none or it is due for refresh.
    /// The lock is held during the fetch: concurrent callers wait for that one fetch.
    pub async fn get(
        &self,
        client: &reqwest::Client,
        settings: &PingSettings,
        endpoint: &url::Url,
    ) -> Result<Token, PingError> {
        let mut slot = self.slot.lock().await;
        if let Some(t) = &slot.current {
            if Instant::now() < t.refresh_at {
                return Ok(t.clone());
            }
        }
        let (value, lifetime) = fetch(client, settings, endpoint).await?;
        slot.generation += 1;
        // Refresh `margin` before expiry, but never use less than half of the lifetime, so
        // that a short-lived token is still reused.
        let refresh_in = lifetime
            .saturating_sub(settings.token_refresh_margin)
            .max(lifetime / 2);
        let token = Token {
            value,
            generation: slot.generation,
            refresh_at: Instant::now() + refresh_in,
        };
        slot.current = Some(token.clone());
        Ok(token)
    }

    /// Drops the cached token if it is still the one of `generation` (a newer one fetched by
    /// another caller is kept).
    pub async fn invalidate(&self, generation: u64) {
        let mut slot = self.slot.lock().await;
        if slot
            .current
            .as_ref()
            .is_some_and(|t| t.generation == generation)
        {
            slot.current = None;
        }
    }
}

/// Reads `expires_in` as a number or a numeric string (B2C sends `"3600"`).
fn lifetime_of(body: &Value) -> Duration {
    let secs = get_ci(body, "expires_in").and_then(|v| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    });
    match secs {
        Some(s) if s.is_finite() && s > 0.0 => Duration::from_secs_f64(s.min(86_400.0 * 30.0)),
        _ => DEFAULT_LIFETIME,
    }
}

/// The OAuth `error` code of a refusal, if it is a plain code (`invalid_grant`).
fn error_code(body: &Value) -> &str {
    get_ci(body, "error")
        .and_then(Value::as_str)
        .filter(|c| {
            !c.is_empty()
                && c.len() <= 64
                && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        })
        .unwrap_or("no error code")
}

/// One token request (no retry here: the API call's retry loop repeats it).
async fn fetch(
    client: &reqwest::Client,
    settings: &PingSettings,
    endpoint: &url::Url,
) -> Result<(SecretString, Duration), PingError> {
    let started = Instant::now();
    let form = [
        ("username", settings.username.as_str()),
        ("password", settings.password.expose_secret()),
        ("grant_type", "password"),
        ("scope", settings.scope.as_str()),
        ("client_id", settings.client_id.as_str()),
        ("response_type", "token"),
    ];
    let sent = client
        .post(endpoint.clone())
        .header(reqwest::header::COOKIE, "x-ms-cpim-geo=EU")
        .form(&form)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => {
            pp_http::record_request("ping", "POST", ROUTE_TOKEN, None, started.elapsed(), None);
            return Err(crate::client::transport_error(&e, "token request"));
        }
    };
    let status = resp.status().as_u16();
    let retry_after = pp_http::parse_retry_after(resp.headers());
    let text = resp.text().await;
    pp_http::record_request(
        "ping",
        "POST",
        ROUTE_TOKEN,
        Some(status),
        started.elapsed(),
        None,
    );
    let text = text.map_err(|e| crate::client::transport_error(&e, "token request"))?;
    let body: Option<Value> = serde_json::from_str(&text).ok();
    match status {
        200..=299 => {
            let body = body.ok_or_else(|| PingError::Malformed {
                detail: format!("token endpoint status {status}, {} bytes", text.len()),
            })?;
            let token = get_ci(&body, "access_token")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| PingError::Auth {
                    detail: "token endpoint answered without an access_token".into(),
                })?;
            Ok((SecretString::from(token.to_string()), lifetime_of(&body)))
        }
        400 | 401 | 403 => Err(PingError::Auth {
            detail: format!(
                "token endpoint refused the credentials (status {status}, {})",
                error_code(body.as_ref().unwrap_or(&Value::Null))
            ),
        }),
        _ => match pp_http::classify_status(status) {
            pp_http::ErrorClass::Transient => Err(PingError::Transient {
                status: Some(status),
                detail: "token endpoint unavailable".into(),
                retry_after,
            }),
            _ => Err(PingError::Permanent {
                status,
                message: "token endpoint refused the request (check token_url)".into(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expires_in_as_string_or_number() {
        assert_eq!(
            lifetime_of(&json!({"expires_in":"3600"})),
            Duration::from_secs(3600)
        );
        assert_eq!(
            lifetime_of(&json!({"expires_in":2})),
            Duration::from_secs(2)
        );
        assert_eq!(lifetime_of(&json!({"expires_in":"soon"})), DEFAULT_LIFETIME);
        assert_eq!(lifetime_of(&json!({})), DEFAULT_LIFETIME);
    }

    #[test]
    fn error_code_only() {
        assert_eq!(
            error_code(
                &json!({"error":"invalid_grant","error_description":"AADB2C90225: user x@y"})
            ),
            "invalid_grant"
        );
        assert_eq!(
            error_code(&json!({"error":"has spaces in it"})),
            "no error code"
        );
    }
}
