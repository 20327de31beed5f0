//! The typed configuration: what the rest of ping-primero reads. Every value is already
//! validated; secrets are `SecretString` and never appear in `Debug`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pp_http::HttpSettings;
use pp_mapping::Maps;
use secrecy::{ExposeSecret, SecretString};
use url::Url;
use uuid::Uuid;

/// The four flows, in run order.
pub const FLOWS: [&str; 4] = [
    "referrals-to-primero",
    "decisions-to-progres",
    "referrals-to-progres",
    "decisions-to-primero",
];

/// The short ids of [`FLOWS`], in the same order.
pub const FLOW_IDS: [&str; 4] = ["1.1", "1.2", "2.1", "2.2"];

/// The reference schedules of [`FLOWS`] (flows.md), used when a flow sets none.
pub const DEFAULT_SCHEDULES: [&str; 4] = ["0 0 * * *", "0 * * * *", "0 * * * *", "0 0 * * *"];

/// Resolves a short id (`1.1`) or a flow name (`referrals-to-primero`, also with `_`) to
/// the flow's name.
pub fn flow_name(id: &str) -> Option<&'static str> {
    let wanted = id.trim().to_ascii_lowercase().replace('_', "-");
    FLOW_IDS
        .iter()
        .position(|i| *i == wanted)
        .or_else(|| FLOWS.iter().position(|n| *n == wanted))
        .map(|i| FLOWS[i])
}

/// The whole configuration of one deployment.
#[derive(Clone, Debug)]
pub struct Config {
    pub service: ServiceConfig,
    pub ping: PingConfig,
    pub primero: PrimeroConfig,
    pub progres: ProgresConfig,
    pub ledger: LedgerConfig,
    /// One entry per flow, in [`FLOWS`] order.
    pub flows: Vec<FlowConfig>,
    /// The value maps, fallbacks and codes (sections `[maps.*]`, `[codes.*]`, `[fallbacks]`,
    /// `[specific_need_categories]`).
    pub maps: Maps,
    pub declared: Declared,
    pub web: WebConfig,
}

impl Config {
    /// The settings of one flow, by name or short id.
    ///
    /// # Panics
    /// When `name` is neither one of [`FLOWS`] nor of [`FLOW_IDS`] (a programming error:
    /// names typed by people go through [`flow_name`] first).
    pub fn flow(&self, name: &str) -> &FlowConfig {
        self.try_flow(name)
            .unwrap_or_else(|| panic!("unknown flow name {name:?}"))
    }

    /// The settings of one flow, by name or short id; `None` for an unknown name.
    pub fn try_flow(&self, name: &str) -> Option<&FlowConfig> {
        let name = flow_name(name)?;
        self.flows.iter().find(|f| f.name == name)
    }

    /// The enabled flows, in run order.
    pub fn enabled_flows(&self) -> impl Iterator<Item = &FlowConfig> {
        self.flows.iter().filter(|f| f.enabled)
    }
}

/// `[service]`: this instance of the daemon.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Identifies this process in flow leases and run records (default `hostname-pid`).
    pub instance_id: String,
    /// Address of the HTTP port (health, metrics, dashboard).
    pub http_listen: SocketAddr,
    /// HMAC key for the payload hashes kept in the ledger (R11).
    pub hash_key: SecretString,
    /// Where a flow's first run starts (R6) unless the flow overrides it.
    pub start_from: StartFrom,
    pub log_format: LogFormat,
}

/// Where the first run of a flow starts reading (R6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartFrom {
    /// A fixed instant.
    At(DateTime<Utc>),
    /// This long before the moment of the first run.
    Ago(Duration),
}

impl StartFrom {
    /// The instant to start from, given the current time.
    pub fn resolve(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            StartFrom::At(t) => *t,
            StartFrom::Ago(d) => chrono::Duration::from_std(*d)
                .ok()
                .and_then(|d| now.checked_sub_signed(d))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        }
    }
}

impl fmt::Display for StartFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartFrom::At(t) => write!(
                f,
                "{}",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            StartFrom::Ago(d) => write!(f, "{} ago", humantime::format_duration(*d)),
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per event.
    Json,
}

/// `[ping]`: the PING gateway in front of proGres.
#[derive(Clone, Debug)]
pub struct PingConfig {
    pub base_url: Url,
    /// The full B2C ROPC token endpoint.
    pub token_url: Url,
    pub client_id: String,
    pub scope: String,
    pub username: String,
    pub password: SecretString,
    pub subscription_key: SecretString,
    /// `PartnerId` issued by PING (e.g. `PNR-1363`).
    pub partner_id: String,
    /// `InteropID` issued by PING (e.g. `INT-1436`).
    pub interop_id: String,
    /// Records per ingestion request.
    pub batch_size: usize,
    /// Bound on waiting for an async ingestion's check-status (2.1).
    pub check_status_timeout: Duration,
    /// Pause between two check-status polls.
    pub check_status_interval: Duration,
    pub shipping_processes: ShippingProcesses,
    /// `[http]` merged with `[ping.http]`; `max_concurrency` from `[ping] max_concurrency`.
    pub http: HttpSettings,
}

/// `[ping.shipping_processes]`: the seven shipping process ids (`SHP-nnnn`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShippingProcesses {
    /// 1.1 retrieve: outgoing referrals waiting for Primero (SHP-2747).
    pub pending_referrals: String,
    /// 1.1 retrieve: intervention, individual, languages x needs (SHP-2358).
    pub intervention_details: String,
    /// 1.1 / 1.2 ingestion: Primero transfer status (SHP-2748).
    pub transfer_status: String,
    /// 2.2 retrieve: interoperability referrals and their status (SHP-2795).
    pub decision_list: String,
    /// 2.2 retrieve: one interoperability referral in full (SHP-2796).
    pub decision_details: String,
    /// 2.2 ingestion: mark an interoperability referral synced (SHP-2284).
    pub referral_synced: String,
    /// 2.1 async ingestion: create an interoperability referral (SHP-2731).
    pub incoming_referral: String,
}

impl ShippingProcesses {
    /// The key names of `[ping.shipping_processes]`, in declaration order.
    pub const KEYS: [&'static str; 7] = [
        "pending_referrals",
        "intervention_details",
        "transfer_status",
        "decision_list",
        "decision_details",
        "referral_synced",
        "incoming_referral",
    ];

    /// (key, id) pairs in [`Self::KEYS`] order.
    pub fn entries(&self) -> [(&'static str, &str); 7] {
        [
            ("pending_referrals", &self.pending_referrals),
            ("intervention_details", &self.intervention_details),
            ("transfer_status", &self.transfer_status),
            ("decision_list", &self.decision_list),
            ("decision_details", &self.decision_details),
            ("referral_synced", &self.referral_synced),
            ("incoming_referral", &self.incoming_referral),
        ]
    }
}

/// `[primero]`: the Primero v2 server.
#[derive(Clone, Debug)]
pub struct PrimeroConfig {
    pub base_url: Url,
    pub auth: PrimeroAuth,
    pub username: String,
    pub password: SecretString,
    /// `module_id` sent with created cases (default `primeromodule-cp`).
    pub module_id: String,
    /// Values of `service_implementing_agency` / `service_request_agency` meaning UNHCR,
    /// compared case-insensitively.
    pub unhcr_agency_values: Vec<String>,
    /// What 2.1 does when the case owner's profile lacks contact details.
    pub on_incomplete_caseworker: CaseworkerPolicy,
    /// Required when the policy is [`CaseworkerPolicy::FocalPoint`].
    pub focal_point: Option<FocalPoint>,
    /// `[http]` merged with `[primero.http]`; `max_concurrency` from `[primero]`.
    pub http: HttpSettings,
}

impl PrimeroConfig {
    /// Whether an agency value means UNHCR (case-insensitive, surrounding spaces ignored).
    pub fn is_unhcr_agency(&self, value: &str) -> bool {
        let value = value.trim();
        self.unhcr_agency_values
            .iter()
            .any(|a| a.trim().eq_ignore_ascii_case(value))
    }
}

/// How ping-primero authenticates to Primero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PrimeroAuth {
    /// HTTP Basic on every call (Primero >= 2.11; works on every v2).
    #[default]
    Basic,
    /// Legacy JWT from `POST /api/v2/tokens` (Primero <= 2.10).
    Token,
}

/// `on_incomplete_caseworker`: what 2.1 does when the case owner lacks email/phone/position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CaseworkerPolicy {
    /// Reject the record.
    #[default]
    Reject,
    /// Send the configured focal point's contact and flag the record.
    FocalPoint,
}

/// `[primero.focal_point]`: the contact sent when a caseworker's profile is incomplete.
/// A person's contact details: `Debug` shows the position only.
#[derive(Clone, PartialEq, Eq)]
pub struct FocalPoint {
    pub name: String,
    pub position: String,
    pub email: String,
    pub phone: String,
}

impl fmt::Debug for FocalPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FocalPoint")
            .field("name", &"[redacted]")
            .field("position", &self.position)
            .field("email", &"[redacted]")
            .field("phone", &"[redacted]")
            .finish()
    }
}

/// `[progres]`: proGres identifiers used by 2.1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgresConfig {
    /// `progres_businessunit`.
    pub business_unit: Uuid,
    /// `progres_organizationfrom`.
    pub organization_from: Uuid,
    /// `progres_orgreferredby` (default `Primero CP`).
    pub referred_by: String,
}

/// `[ledger]`: the durable state.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// `sqlite://…` or `postgres://…`; secret because a PostgreSQL URL may hold a password.
    pub url: SecretString,
    pub kind: LedgerKind,
    /// Finished runs and audit rows older than this are purged.
    pub retention: Duration,
    /// How long a flow lease holds without renewal.
    pub lease_ttl: Duration,
}

impl LedgerConfig {
    /// The URL with any password replaced by `***`, for logs, error lines and `check-config`:
    /// the user-info password and a `password` query parameter (which sqlx also accepts). A
    /// URL that does not parse (a password with an unencoded `#`, `/` or `?` does that) is
    /// shown as its scheme only, since where its password ends cannot be told.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.expose_secret())
    }
}

fn redact_url(raw: &str) -> String {
    let Ok(mut u) = Url::parse(raw) else {
        return match ["postgresql", "postgres", "sqlite"]
            .into_iter()
            .find(|s| raw.starts_with(&format!("{s}:")))
        {
            Some(scheme) => format!("{scheme}://*** (not a valid URL)"),
            None => "*** (not a valid URL)".to_owned(),
        };
    };
    if u.password().is_some() {
        // Setting a password only fails on URLs without a host, which have none.
        let _ = u.set_password(Some("***"));
    }
    let is_password = |k: &str| k.eq_ignore_ascii_case("password");
    if u.query_pairs().any(|(k, _)| is_password(&k)) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_password(&k) {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn no_password_survives_redaction() {
        assert_eq!(
            redact_url("postgres://pp:s3cret@db:5432/pp"),
            "postgres://pp:***@db:5432/pp"
        );
        // An unencoded '#' makes the URL unparseable: only the scheme is shown.
        let shown = redact_url("postgres://pp:ab#cd@db/pp");
        assert_eq!(shown, "postgres://*** (not a valid URL)");
        let shown = redact_url("postgresql://pp:a/b?c@db/pp");
        assert!(!shown.contains("a/b") && !shown.contains("pp:"), "{shown}");
        assert_eq!(redact_url("s3cret-without-scheme"), "*** (not a valid URL)");
        // A password given as a query parameter.
        let shown = redact_url("postgres://pp@db/pp?sslmode=require&password=s3cret");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("password=***") && shown.contains("sslmode=require"),
            "{shown}"
        );
        // Nothing to hide: unchanged.
        assert_eq!(redact_url("sqlite://ledger.db"), "sqlite://ledger.db");
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    }
}

/// The ledger's database engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerKind {
    Sqlite,
    Postgres,
}

/// `[flows.<name>]`: one flow's settings.
#[derive(Clone, Debug)]
pub struct FlowConfig {
    /// One of [`FLOWS`].
    pub name: &'static str,
    /// One of [`FLOW_IDS`].
    pub id: &'static str,
    pub enabled: bool,
    /// The schedule, in UTC.
    pub schedule: cron::Schedule,
    /// The schedule as configured (5 or 6 fields).
    pub schedule_expr: String,
    /// Where the first run starts: the flow's own `start_from`, else `[service] start_from`.
    pub start_from: StartFrom,
}

/// `[declared]`: value sets the deployment declares; the maps must be total over them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Declared {
    /// Every proGres intervention type description that may be referred (keys of
    /// `maps.intervention_type_to_service`).
    pub progres_intervention_types: Option<Vec<String>>,
    /// Every Primero service type that may be referred to UNHCR (keys of
    /// `maps.service_to_progres`).
    pub primero_service_types: Option<Vec<String>>,
    /// Every proGres language name (keys of `maps.language_to_primero`).
    pub progres_languages: Option<Vec<String>>,
    /// proGres sex codes (keys of `codes.sex`), default the four codes 125080000..=125080003.
    pub progres_sex_codes: Vec<i64>,
    /// Primero sex values (values of `codes.sex`, reversed by 2.1).
    pub primero_sexes: Option<Vec<String>>,
    /// Primero protection concerns (keys of `maps.protection_concern_to_specific_need`).
    pub primero_protection_concerns: Option<Vec<String>>,
}

/// The default of [`Declared::progres_sex_codes`].
pub const DEFAULT_PROGRES_SEX_CODES: [i64; 4] =
    [125_080_000, 125_080_001, 125_080_002, 125_080_003];

/// `[web]`: the operator dashboard and its API.
#[derive(Clone, Debug)]
pub struct WebConfig {
    pub operators: Vec<Operator>,
    /// Bearer token for the operator API (`None`: API disabled).
    pub api_token: Option<SecretString>,
    /// Lifetime of a dashboard session.
    pub session_ttl: Duration,
}

/// A dashboard operator.
#[derive(Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    /// Argon2 PHC string (`$argon2id$v=19$…`).
    pub password_hash: String,
}

impl fmt::Debug for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operator")
            .field("name", &self.name)
            .field("password_hash", &"[redacted]")
            .finish()
    }
}
