//! Settings of the PING client: endpoints, B2C credentials, the subscription key, the
//! environment identifiers issued by PING, and the shared HTTP policy.
//!
//! `Debug` shows URLs and identifiers but never the password, the subscription key or the
//! username.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;

/// Default B2C scope of the UAT tenant.
pub const DEFAULT_SCOPE: &str = "https://primespingb2cuat.onmicrosoft.com/apimurls/API.Read";

/// Path of the B2C ROPC token endpoint under the B2C host (tenant and UAT policy, as the
/// reference adaptor hard-codes them). Appended when `token_url` has no path of its own.
pub const DEFAULT_TOKEN_PATH: &str =
    "/primespingb2cuat.onmicrosoft.com/b2c_1_msawe-primes-ping-test-apim-rpocuf/oauth2/v2.0/token";

/// Default margin before a token's expiry at which it is refreshed.
pub const DEFAULT_TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Everything the client needs. Secrets are [`SecretString`] from the moment they are read.
#[derive(Clone)]
pub struct PingSettings {
    /// APIM base URL, e.g. `https://msawe-primes-ping-bau-uat-apimgmt.azure-api.net`; may
    /// carry a path prefix.
    pub base_url: url::Url,
    /// The full token endpoint URL. When it has no path (only a host), the reference's
    /// tenant/policy path [`DEFAULT_TOKEN_PATH`] is appended.
    pub token_url: url::Url,
    pub client_id: String,
    pub scope: String,
    pub username: String,
    pub password: SecretString,
    pub subscription_key: SecretString,
    /// `PartnerId`, e.g. `PNR-1363` (in bodies and in the ingestion URL path).
    pub partner_id: String,
    /// `InteropID`, e.g. `INT-1436`.
    pub interop_id: String,
    pub http: pp_http::HttpSettings,
    /// A cached token is replaced this long before it expires (default 60 s).
    pub token_refresh_margin: Duration,
}

impl fmt::Debug for PingSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PingSettings")
            .field("base_url", &self.base_url.as_str())
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("username", &"[redacted]")
            .field("password", &"[redacted]")
            .field("subscription_key", &"[redacted]")
            .field("partner_id", &self.partner_id)
            .field("interop_id", &self.interop_id)
            .field("http", &self.http)
            .field("token_refresh_margin", &self.token_refresh_margin)
            .finish()
    }
}

impl PingSettings {
    /// Settings with the default scope, HTTP policy and refresh margin.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        base_url: url::Url,
        token_url: url::Url,
        client_id: impl Into<String>,
        username: impl Into<String>,
        password: SecretString,
        subscription_key: SecretString,
        partner_id: impl Into<String>,
        interop_id: impl Into<String>,
    ) -> Self {
        PingSettings {
            base_url,
            token_url,
            client_id: client_id.into(),
            scope: DEFAULT_SCOPE.to_string(),
            username: username.into(),
            password,
            subscription_key,
            partner_id: partner_id.into(),
            interop_id: interop_id.into(),
            http: pp_http::HttpSettings::default(),
            token_refresh_margin: DEFAULT_TOKEN_REFRESH_MARGIN,
        }
    }

    /// The URL the token request is posted to (see [`PingSettings::token_url`]).
    pub fn token_endpoint(&self) -> url::Url {
        let mut u = self.token_url.clone();
        if u.path().is_empty() || u.path() == "/" {
            u.set_path(DEFAULT_TOKEN_PATH);
        }
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(token: &str) -> PingSettings {
        PingSettings::new(
            "https://apim.example/".parse().unwrap(),
            token.parse().unwrap(),
            "client",
            "partner.user@example.org",
            SecretString::from("pw-very-secret"),
            SecretString::from("key-very-secret"),
            "PNR-1363",
            "INT-1436",
        )
    }

    #[test]
    fn token_endpoint_gets_default_path_only_when_missing() {
        assert_eq!(
            settings("https://b2c.example").token_endpoint().as_str(),
            format!("https://b2c.example{DEFAULT_TOKEN_PATH}")
        );
        assert_eq!(
            settings("http://127.0.0.1:9/t/oauth2/v2.0/token")
                .token_endpoint()
                .as_str(),
            "http://127.0.0.1:9/t/oauth2/v2.0/token"
        );
    }

    #[test]
    fn debug_hides_secrets_and_username() {
        let d = format!("{:?}", settings("https://b2c.example"));
        assert!(!d.contains("pw-very-secret"));
        assert!(!d.contains("key-very-secret"));
        assert!(!d.contains("partner.user"));
        assert!(d.contains("PNR-1363"));
    }
}
