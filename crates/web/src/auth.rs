//! Sign-in for the dashboard: operator accounts with argon2 password hashes or an API token
//! (`Authorization: Bearer`), in-memory sessions with expiry, a per-session CSRF token,
//! and rate limits on sign-in attempts per user name and per client address.
//!
//! Nothing here logs or returns a password, a token or a session id.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordVerifier, Version};
use axum::http::{header, HeaderMap};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "pp_session";
/// Name of the cookie that carries the sign-in form's CSRF token before a session exists.
pub const LOGIN_COOKIE: &str = "pp_login";

/// Who may use the dashboard, and how sessions behave.
#[derive(Clone)]
pub struct AuthConfig {
    /// Operator accounts: (user name, argon2 password hash in PHC string form).
    pub operators: Vec<(String, String)>,
    /// A token that scripts send as `Authorization: Bearer <token>`; `None` disables it.
    pub api_token: Option<SecretString>,
    /// How long a session lasts after sign-in.
    pub session_ttl: Duration,
    /// Adds `Secure` to the cookies (set it when the port is behind TLS).
    pub secure_cookies: bool,
    /// Failed sign-in attempts allowed per user name and per client address in one minute.
    pub max_attempts_per_minute: u32,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "operators",
                &self.operators.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("api_token", &self.api_token.as_ref().map(|_| "[redacted]"))
            .field("session_ttl", &self.session_ttl)
            .field("secure_cookies", &self.secure_cookies)
            .field("max_attempts_per_minute", &self.max_attempts_per_minute)
            .finish()
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            operators: Vec::new(),
            api_token: None,
            session_ttl: Duration::from_secs(8 * 3600),
            secure_cookies: false,
            max_attempts_per_minute: 5,
        }
    }
}

/// Hashes a password for [`AuthConfig::operators`] (argon2id, default parameters, random
/// salt). The daemon's CLI offers this to operators.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password failed: {e}"))
}

/// The signed-in user of one request.
#[derive(Clone)]
pub struct Operator {
    /// User name (`token` for the API token).
    pub name: String,
    /// CSRF token of the session; `None` for bearer-token requests, which need none.
    pub csrf: Option<String>,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("name", &self.name)
            .field("csrf", &self.csrf.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

struct Session {
    user: String,
    csrf: String,
    expires: Instant,
}

/// Outcome of authenticating a request.
pub enum Authn {
    /// A live session or the right token.
    Ok(Operator),
    /// Neither.
    Anonymous,
    /// A wrong token from an address that has used up its attempts.
    Limited,
}

/// Outcome of a sign-in attempt.
pub enum SignIn {
    /// Signed in: the new session id.
    Ok { session_id: String },
    /// Wrong user name or password.
    Refused,
    /// Too many failed attempts for this user name or address.
    Limited,
}

/// Sessions and attempt counters of one server.
pub struct Auth {
    config: AuthConfig,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
    dummy_hash: OnceLock<String>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl Auth {
    /// A store with no sessions.
    pub fn new(config: AuthConfig) -> Self {
        Auth {
            config,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            dummy_hash: OnceLock::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Authenticates a request by its session cookie or its bearer token.
    pub fn authenticate(&self, headers: &HeaderMap, ip: Option<IpAddr>) -> Authn {
        if let Some(token) = bearer(headers) {
            let Some(expected) = &self.config.api_token else {
                return Authn::Anonymous;
            };
            let ip_key = ip_key(ip);
            if self.is_limited(&[&ip_key]) {
                return Authn::Limited;
            }
            if ct_eq(token.as_bytes(), expected.expose_secret().as_bytes()) {
                return Authn::Ok(Operator {
                    name: "token".into(),
                    csrf: None,
                });
            }
            self.note_failure(&[&ip_key]);
            return Authn::Anonymous;
        }
        let Some(id) = cookie(headers, SESSION_COOKIE) else {
            return Authn::Anonymous;
        };
        let mut sessions = self.sessions.lock().expect("session lock");
        match sessions.get(&id) {
            Some(s) if s.expires > Instant::now() => Authn::Ok(Operator {
                name: s.user.clone(),
                csrf: Some(s.csrf.clone()),
            }),
            Some(_) => {
                sessions.remove(&id);
                Authn::Anonymous
            }
            None => Authn::Anonymous,
        }
    }

    /// Whether the request carries the cookie of a live session.
    pub fn has_session(&self, headers: &HeaderMap) -> bool {
        let Some(id) = cookie(headers, SESSION_COOKIE) else {
            return false;
        };
        let sessions = self.sessions.lock().expect("session lock");
        sessions
            .get(&id)
            .is_some_and(|s| s.expires > Instant::now())
    }

    /// Checks a user name and password; on success opens a session. Attempts beyond the
    /// limit are refused before the password is even checked.
    pub async fn sign_in(
        self: &Arc<Self>,
        user: &str,
        password: &str,
        ip: Option<IpAddr>,
    ) -> SignIn {
        let user_key = format!("user:{}", user.trim().to_lowercase());
        let ip_key = ip_key(ip);
        if self.is_limited(&[&user_key, &ip_key]) {
            return SignIn::Limited;
        }
        let stored = self
            .config
            .operators
            .iter()
            .find(|(name, _)| name == user)
            .map(|(_, hash)| hash.clone());
        let this = Arc::clone(self);
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || {
            // An unknown user costs the same work as a known one.
            let hash = stored
                .clone()
                .unwrap_or_else(|| this.dummy_hash().to_string());
            verify(&hash, &password) && stored.is_some()
        })
        .await
        .unwrap_or(false);
        if !ok {
            self.note_failure(&[&user_key, &ip_key]);
            tracing::info!(target: "pp_web::auth", "sign-in refused");
            return SignIn::Refused;
        }
        let session_id = random_token();
        let mut sessions = self.sessions.lock().expect("session lock");
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(
            session_id.clone(),
            Session {
                user: user.to_string(),
                csrf: random_token(),
                expires: now + self.config.session_ttl,
            },
        );
        tracing::info!(target: "pp_web::auth", operator = user, "signed in");
        SignIn::Ok { session_id }
    }

    /// Ends the session of a request, if it has one.
    pub fn sign_out(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            self.sessions.lock().expect("session lock").remove(&id);
        }
    }

    /// The `Set-Cookie` value that stores a session id.
    pub fn session_cookie(&self, session_id: &str) -> String {
        format!(
            "{SESSION_COOKIE}={session_id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
            self.config.session_ttl.as_secs(),
            self.secure()
        )
    }

    /// The `Set-Cookie` value that removes a cookie.
    pub fn clear_cookie(&self, name: &str) -> String {
        format!(
            "{name}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
            self.secure()
        )
    }

    /// The `Set-Cookie` value that removes the sign-in form's CSRF cookie.
    pub fn clear_login_cookie(&self) -> String {
        format!(
            "{LOGIN_COOKIE}=; HttpOnly; SameSite=Strict; Path=/login; Max-Age=0{}",
            self.secure()
        )
    }

    /// The `Set-Cookie` value of the sign-in form's CSRF token.
    pub fn login_cookie(&self, token: &str) -> String {
        format!(
            "{LOGIN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/login; Max-Age=3600{}",
            self.secure()
        )
    }

    fn secure(&self) -> &'static str {
        if self.config.secure_cookies {
            "; Secure"
        } else {
            ""
        }
    }

    fn is_limited(&self, keys: &[&str]) -> bool {
        let limit = self.config.max_attempts_per_minute.max(1) as usize;
        let mut failures = self.failures.lock().expect("failure lock");
        let now = Instant::now();
        keys.iter().any(|k| match failures.get_mut(*k) {
            Some(q) => {
                while q.front().is_some_and(|t| now.duration_since(*t) > WINDOW) {
                    q.pop_front();
                }
                q.len() >= limit
            }
            None => false,
        })
    }

    fn note_failure(&self, keys: &[&str]) {
        let mut failures = self.failures.lock().expect("failure lock");
        let now = Instant::now();
        if failures.len() > 10_000 {
            failures.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) <= WINDOW));
        }
        for k in keys {
            failures.entry(k.to_string()).or_default().push_back(now);
        }
    }

    fn dummy_hash(&self) -> &str {
        self.dummy_hash.get_or_init(|| {
            // Same parameters as the first configured account, so that timing matches.
            let params = self
                .config
                .operators
                .first()
                .and_then(|(_, h)| PasswordHash::new(h).ok())
                .and_then(|h| Params::try_from(&h).ok())
                .unwrap_or_default();
            let salt = SaltString::generate(&mut OsRng);
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"no such operator", &salt)
                .map(|h| h.to_string())
                .unwrap_or_default()
        })
    }
}

fn verify(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

fn ip_key(ip: Option<IpAddr>) -> String {
    match ip {
        Some(ip) => format!("ip:{ip}"),
        None => "ip:unknown".into(),
    }
}

/// 32 random bytes from the operating system, hex-encoded.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn cheap_hash(pw: &str) -> String {
        let params = Params::new(256, 1, 1, None).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(pw.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    fn auth() -> Arc<Auth> {
        Arc::new(Auth::new(AuthConfig {
            operators: vec![("amina".into(), cheap_hash("correct horse"))],
            api_token: Some(SecretString::from("t0ken-for-scripts")),
            ..AuthConfig::default()
        }))
    }

    #[tokio::test]
    async fn right_password_opens_a_session_and_wrong_one_does_not() {
        let a = auth();
        let ip = Some("127.0.0.1".parse().unwrap());
        assert!(matches!(
            a.sign_in("amina", "wrong", ip).await,
            SignIn::Refused
        ));
        assert!(matches!(
            a.sign_in("nobody", "correct horse", ip).await,
            SignIn::Refused
        ));
        let SignIn::Ok { session_id } = a.sign_in("amina", "correct horse", ip).await else {
            panic!("sign-in refused");
        };
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {SESSION_COOKIE}={session_id}")).unwrap(),
        );
        match a.authenticate(&h, ip) {
            Authn::Ok(op) => {
                assert_eq!(op.name, "amina");
                assert_eq!(op.csrf.unwrap().len(), 64);
            }
            _ => panic!("session not recognised"),
        }
        a.sign_out(&h);
        assert!(matches!(a.authenticate(&h, ip), Authn::Anonymous));
    }

    #[tokio::test]
    async fn expired_sessions_are_refused() {
        let a = Arc::new(Auth::new(AuthConfig {
            operators: vec![("amina".into(), cheap_hash("pw"))],
            session_ttl: Duration::ZERO,
            ..AuthConfig::default()
        }));
        let SignIn::Ok { session_id } = a.sign_in("amina", "pw", None).await else {
            panic!("sign-in refused");
        };
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{SESSION_COOKIE}={session_id}")).unwrap(),
        );
        assert!(!a.has_session(&h));
        assert!(matches!(a.authenticate(&h, None), Authn::Anonymous));
    }

    #[tokio::test]
    async fn failed_attempts_are_limited_per_user_and_per_address() {
        let a = auth();
        let ip1 = Some("10.1.1.1".parse().unwrap());
        let ip2 = Some("10.1.1.2".parse().unwrap());
        for _ in 0..5 {
            assert!(matches!(
                a.sign_in("amina", "x", ip1).await,
                SignIn::Refused
            ));
        }
        // The user name is locked from anywhere, even with the right password.
        assert!(matches!(
            a.sign_in("amina", "correct horse", ip2).await,
            SignIn::Limited
        ));
        // The address is locked for other names too.
        assert!(matches!(
            a.sign_in("other", "x", ip1).await,
            SignIn::Limited
        ));
    }

    #[test]
    fn bearer_token_is_accepted_only_when_right() {
        let a = auth();
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t0ken-for-scripts"),
        );
        assert!(matches!(a.authenticate(&h, None), Authn::Ok(op) if op.csrf.is_none()));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer nope"),
        );
        assert!(matches!(a.authenticate(&h, None), Authn::Anonymous));
    }

    #[test]
    fn cookies_are_http_only_and_strict() {
        let a = Auth::new(AuthConfig {
            secure_cookies: true,
            ..AuthConfig::default()
        });
        let c = a.session_cookie("abc");
        assert!(c.starts_with("pp_session=abc;"));
        for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
            assert!(c.contains(part), "{c} lacks {part}");
        }
    }

    #[test]
    fn debug_hides_hashes_and_token() {
        let a = auth();
        let text = format!("{:?}", a.config());
        assert!(text.contains("amina"));
        assert!(!text.contains("argon2"));
        assert!(!text.contains("t0ken"));
    }
}
