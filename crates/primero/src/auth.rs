//! Authentication: HTTP Basic (mandatory on Primero >= 2.11) or the legacy JWT of Primero
//! <= 2.10 (`POST /api/v2/tokens`), with the token's lifetime read from its `exp` claim
//! (decoded without verification; 3600 s when it cannot be read).

use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, Utc};
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

/// How the client authenticates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// `Authorization: Basic` on every request (works on every v2 server).
    #[default]
    Basic,
    /// Log in at `/api/v2/tokens` and send `Authorization: Bearer <jwt>` (Primero <= 2.10).
    LegacyToken,
}

/// Lifetime Primero gives a JWT when the token does not say.
pub(crate) const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// A bearer token and when to replace it.
pub(crate) struct Token {
    pub(crate) header: HeaderValue,
    pub(crate) refresh_at: DateTime<Utc>,
    /// Which login produced it, so that concurrent 401s invalidate it only once.
    pub(crate) generation: u64,
}

/// `Authorization: Basic base64(user:password)`, marked sensitive.
pub(crate) fn basic_header(username: &str, password: &SecretString) -> HeaderValue {
    let raw = format!("{username}:{}", password.expose_secret());
    let encoded = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
    let mut v =
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header value");
    v.set_sensitive(true);
    v
}

/// `Authorization: Bearer <token>`, marked sensitive; `None` if the token has characters a
/// header cannot carry.
pub(crate) fn bearer_header(token: &str) -> Option<HeaderValue> {
    let mut v = HeaderValue::from_str(&format!("Bearer {}", token.trim())).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// The `exp` claim of a JWT, read without verifying the signature.
pub(crate) fn jwt_expiry(token: &str) -> Option<DateTime<Utc>> {
    let payload = token.split('.').nth(1)?;
    let payload = payload.trim_end_matches('=');
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = match &claims["exp"] {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64))?,
        _ => return None,
    };
    DateTime::from_timestamp(exp, 0)
}

/// When a token obtained at `now` should be replaced: a little before it expires (a tenth of
/// its lifetime, at most 60 s). An `exp` that is missing or not in the future (clock skew)
/// counts as the default hour; a 401 still triggers a re-login.
pub(crate) fn refresh_at(token: &str, now: DateTime<Utc>) -> DateTime<Utc> {
    let default_ttl = chrono::Duration::from_std(DEFAULT_TOKEN_TTL).expect("small duration");
    let expires = match jwt_expiry(token) {
        Some(exp) if exp > now => exp,
        _ => now + default_ttl,
    };
    let lifetime = expires - now;
    let margin = (lifetime / 10).min(chrono::Duration::seconds(60));
    expires - margin
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        format!(
            "{}.{}.sig",
            enc(br#"{"alg":"HS256"}"#),
            enc(claims.to_string().as_bytes())
        )
    }

    #[test]
    fn expiry_comes_from_the_exp_claim() {
        let now = Utc::now();
        let exp = now.timestamp() + 3600;
        let t = jwt(serde_json::json!({"sub": "1", "exp": exp}));
        assert_eq!(jwt_expiry(&t).unwrap().timestamp(), exp);
        let r = refresh_at(&t, now);
        assert_eq!(r.timestamp(), exp - 60);
    }

    #[test]
    fn short_tokens_are_refreshed_a_tenth_before_expiry() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let t = jwt(serde_json::json!({"exp": 1_700_000_010}));
        assert_eq!(refresh_at(&t, now).timestamp(), 1_700_000_009);
    }

    #[test]
    fn unreadable_tokens_get_an_hour() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        assert_eq!(refresh_at("opaque-token", now).timestamp(), 1_700_003_540);
        let past = jwt(serde_json::json!({"exp": 1_600_000_000}));
        assert_eq!(refresh_at(&past, now).timestamp(), 1_700_003_540);
    }

    #[test]
    fn headers_are_sensitive() {
        let h = basic_header("openfn", &SecretString::from("pw".to_string()));
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "Basic b3BlbmZuOnB3");
        assert!(bearer_header("abc").unwrap().is_sensitive());
        assert!(bearer_header("bad\ntoken").is_none());
    }
}
