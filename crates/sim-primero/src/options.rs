//! Simulator switches (`Options`), the form schema that drives write validation, and the
//! simulated Primero users with their defaults.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every switch of the simulator. All fields are public; `Options::default()` behaves like a
/// Primero >= v2.11 CP instance with the users and form fields the flows use.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Options {
    /// Behave like Primero <= v2.10: `POST /api/v2/tokens` issues a JWT (`token`,
    /// `Authorization: Bearer`), Bearer tokens are accepted, no session cookie.
    pub legacy_jwt: bool,
    /// Lifetime of issued JWTs in legacy mode (devise-jwt default 1 h).
    pub jwt_ttl_secs: u64,
    /// Idle timeout of the `_app_session` cookie (Devise `timeoutable`, 60 min).
    pub session_timeout_secs: u64,
    /// `PRIMERO_USE_CSRF_PROTECTION`: cookie-authenticated non-GET calls need `X-CSRF-Token`.
    pub csrf_protection: bool,
    /// Default page size of paged lists (`per`).
    pub default_per: usize,
    /// Largest `per` honoured (v2.10.3+ clamps to 1000); `null` = no clamp (older servers).
    pub per_clamp: Option<usize>,
    /// Failed logins that lock an account (Devise `maximum_attempts`).
    pub lockout_attempts: u32,
    /// How long a locked account stays locked (Devise `unlock_in`, 30 min).
    pub lockout_secs: u64,
    /// Login POSTs per user_name allowed inside the throttle window (rack-attack: 6).
    pub login_throttle_limit: u32,
    /// Throttle window in seconds (rack-attack: 60).
    pub login_throttle_window_secs: u64,
    /// Cases saved less than this many ms ago are not yet visible to `GET /cases` searches
    /// (Solr indexing lag of <= v2.10). 0 = immediate (SQL search, >= v2.11).
    pub search_lag_ms: u64,
    /// Record API requests for `GET /_sim/requests`.
    pub record_requests: bool,
    /// Maximum number of request-log entries kept (oldest dropped first).
    pub request_log_limit: usize,
    /// Known module ids; any other `module_id` on write is a 422.
    pub modules: Vec<String>,
    /// Writable form fields (for records that carry a known `module_id`), field -> type.
    pub form_schema: BTreeMap<String, FieldType>,
    /// Users present at start and after `POST /_sim/reset`.
    pub users: Vec<SimUser>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            legacy_jwt: false,
            jwt_ttl_secs: 3600,
            session_timeout_secs: 3600,
            csrf_protection: true,
            default_per: 20,
            per_clamp: Some(1000),
            lockout_attempts: 6,
            lockout_secs: 1800,
            login_throttle_limit: 6,
            login_throttle_window_secs: 60,
            search_lag_ms: 0,
            record_requests: true,
            request_log_limit: 100_000,
            modules: vec!["primeromodule-cp".into(), "primeromodule-gbv".into()],
            form_schema: default_form_schema(),
            users: default_users(),
        }
    }
}

/// Type of a form field, as Primero's record JSON validator sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FieldType {
    /// Text field or text area: string or null.
    Text,
    /// Numeric field: JSON integer or null (`"18"` fails).
    Integer,
    /// Date field: `YYYY-MM-DD` or null.
    Date,
    /// Date-time field: full timestamp or null (a bare date fails); stored normalised.
    DateTime,
    /// Tick box: `true`/`false` only (null fails).
    TickBox,
    /// Select: a string among `options` (or null); `options: null` = unchecked source
    /// (Agency, User, Location lookups).
    Select {
        /// Allowed values, or `None` for an unchecked source.
        options: Option<Vec<String>>,
    },
    /// Multi-select: an array of strings among `options` (or null).
    MultiSelect {
        /// Allowed values, or `None` for an unchecked source.
        options: Option<Vec<String>>,
    },
    /// Subform: an array of row objects; rows carry `unique_id` (UUID) and `_destroy`.
    Subform {
        /// Row fields.
        fields: BTreeMap<String, FieldType>,
    },
}

fn select(options: &[&str]) -> FieldType {
    FieldType::Select {
        options: Some(options.iter().map(|s| s.to_string()).collect()),
    }
}

fn multi(options: &[&str]) -> FieldType {
    FieldType::MultiSelect {
        options: Some(options.iter().map(|s| s.to_string()).collect()),
    }
}

fn unchecked_select() -> FieldType {
    FieldType::Select { options: None }
}

/// Sex options of the reference instance (seeded `male`/`female` plus admin-created ids).
pub const SEX_OPTIONS: [&str; 4] = ["male", "female", "other_b25f252", "unknown_4b34795"];

/// Language keys of the reference instance.
pub const LANGUAGE_OPTIONS: [&str; 37] = [
    "language1",
    "language2",
    "language3",
    "language4",
    "language5",
    "language6",
    "language7",
    "language8",
    "language9",
    "language10",
    "murle_fce1c91",
    "if_other_language__please_specify_335944b",
    "_amharic",
    "_arabic",
    "_boma",
    "_didinga",
    "_english",
    "_french",
    "_karamojong",
    "_kifulero",
    "_kikongo",
    "_kinyabiyisha",
    "_kinyarwanda",
    "_kirundi",
    "_lingala",
    "_lokoya",
    "_lopit",
    "_luo",
    "_makonde",
    "_mashi",
    "_moro",
    "_murle",
    "_oromo",
    "_sign_language",
    "_tira",
    "_toposa",
    "_toro",
];

/// Service types accepted in `services_section[].service_type`.
pub const SERVICE_TYPES: [&str; 24] = [
    "alternative_care",
    "basic_psychosocial_support",
    "cash_assistance",
    "documentation",
    "durable_solution_in_coordination_with_unhcr",
    "education_formal",
    "family_tracing_and_reunification",
    "focuses_non_specialized_mhpss_care",
    "food",
    "gbv_survivor_support",
    "legal_support",
    "livelihoods",
    "medical",
    "non_formal_education",
    "nutrition",
    "other",
    "other_please_specify",
    "psychosocial_support",
    "relocation",
    "security_e_g_safe_shelter",
    "services_for_children_with_disabilities",
    "shelter",
    "specialized_mhpss_services",
    "alternative_care_arrangements",
];

/// Protection concern keys accepted (the Gambella map keys plus a few seen in fixtures).
pub const PROTECTION_CONCERNS: [&str; 46] = [
    "sexual_exploitation",
    "slavery_sale_abduction",
    "child_labour",
    "hazardous_work",
    "worst_forms_of_child_labor",
    "street_child",
    "child_mother",
    "child_headed_household",
    "child_survivor_of_explosive",
    "child_marriage",
    "pregnancy_child_parent",
    "child_neglect",
    "physical_abuse",
    "emotional_abuse",
    "neglect",
    "abandonment",
    "unaccompanied",
    "separated",
    "orphan",
    "disabled",
    "functional_difficulty_seeing",
    "functional_difficulty_hearing",
    "functional_difficulty_walking",
    "functional_difficulty_remembering",
    "difficulty_with_self_care",
    "difficulty_communicating",
    "serious_health_issue",
    "serious_medical_condition",
    "rape",
    "sexual_abuse_violence",
    "sgbv__rape_sodomy",
    "sgbv__physical_assault",
    "sgbv__sexual_assault",
    "sgbv__child_marriage",
    "sgbv__sex_for_goods_services",
    "sgbv__teenage_pregnancy",
    "sgbv__psychological_emotional_abuse",
    "sgbv__fgm",
    "sgbv__commercial_sexual_exploitation",
    "arrested_detained",
    "caafag",
    "migrant",
    "refugee",
    "idp",
    "statelessness",
    "other",
];

/// The default form schema: the CP fields of spec §7 plus the instance fields the flows use.
pub fn default_form_schema() -> BTreeMap<String, FieldType> {
    let mut f = BTreeMap::new();
    for t in [
        "name",
        "name_first",
        "name_middle",
        "name_last",
        "name_nickname",
        "name_other",
        "unhcr_id_no",
        "unhcr_individual_no",
        "national_id_no",
        "address_current",
        "telephone_current",
    ] {
        f.insert(t.to_string(), FieldType::Text);
    }
    f.insert("registration_date".into(), FieldType::Date);
    f.insert("sex".into(), select(&SEX_OPTIONS));
    f.insert("age".into(), FieldType::Integer);
    f.insert("date_of_birth".into(), FieldType::Date);
    f.insert("estimated".into(), FieldType::TickBox);
    f.insert("location_current".into(), unchecked_select());
    f.insert("language".into(), multi(&LANGUAGE_OPTIONS));
    f.insert(
        "nationality".into(),
        FieldType::MultiSelect { options: None },
    );
    f.insert("protection_concerns".into(), multi(&PROTECTION_CONCERNS));
    f.insert("disclosure_other_orgs".into(), FieldType::TickBox);
    f.insert("consent_for_services".into(), FieldType::TickBox);

    let mut s = BTreeMap::new();
    s.insert(
        "service_response_type".into(),
        select(&["care_plan", "action_plan", "service_provision"]),
    );
    s.insert("service_type".into(), select(&SERVICE_TYPES));
    s.insert("service_response_day_time".into(), FieldType::DateTime);
    s.insert("service_response_timeframe".into(), unchecked_select());
    s.insert("service_appointment_date".into(), FieldType::Date);
    s.insert("service_implementing_agency".into(), unchecked_select());
    s.insert("service_provider".into(), FieldType::Text);
    s.insert("service_delivery_location".into(), unchecked_select());
    s.insert(
        "service_implementing_agency_individual".into(),
        unchecked_select(),
    );
    s.insert("service_status_referred".into(), FieldType::TickBox);
    s.insert("service_location".into(), unchecked_select());
    s.insert("service_referral_notes".into(), FieldType::Text);
    s.insert(
        "service_implemented".into(),
        select(&["implemented", "not_implemented"]),
    );
    s.insert("service_implemented_day_time".into(), FieldType::DateTime);
    s.insert("note_on_referral_from_provider".into(), FieldType::Text);
    s.insert(
        "service_referral".into(),
        select(&[
            "external_referral",
            "internal_referral",
            "referred",
            "service_provided_by_your_agency",
            "service_not_applicable",
        ]),
    );
    s.insert("service_request_agency".into(), unchecked_select());
    s.insert("service_request_external".into(), FieldType::TickBox);
    s.insert("service_request_title".into(), FieldType::Text);
    s.insert("service_request_phone".into(), FieldType::Text);
    s.insert("service_request_email".into(), FieldType::Text);
    s.insert("service_type_other".into(), FieldType::Text);
    s.insert(
        "unhcr_referral_status".into(),
        select(&["pending", "accepted", "rejected"]),
    );
    s.insert("unhcr_referral_rejection_reason".into(), FieldType::Text);
    s.insert("progres_interventionnumber".into(), FieldType::Text);
    f.insert("services_section".into(), FieldType::Subform { fields: s });
    f
}

/// A simulated Primero user. Holds contact details: `Debug` is redacted by hand.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SimUser {
    /// Integer id (assigned on seeding when 0).
    pub id: i64,
    /// Login name (compared case-insensitively).
    pub user_name: String,
    /// Password for Basic auth and `POST /tokens`.
    pub password: String,
    /// Display name.
    pub full_name: Option<String>,
    /// E-mail.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// Position / job title.
    pub position: Option<String>,
    /// User code.
    pub code: Option<String>,
    /// Agency unique id / code (e.g. `UNICEF`).
    pub agency: String,
    /// Agency integer id.
    pub agency_id: i64,
    /// Agency office.
    pub agency_office: Option<String>,
    /// Location code.
    pub location: Option<String>,
    /// Role unique id.
    pub role_unique_id: String,
    /// `all` (sees every case), `agency` or `self` (cases associated with the user).
    pub group_permission: String,
    /// May list users (`GET /api/v2/users`).
    pub can_read_users: bool,
    /// May receive referrals (valid `transitioned_to`).
    pub can_receive_referrals: bool,
    /// Disabled users cannot log in.
    pub disabled: bool,
    /// Services the user provides.
    pub services: Vec<String>,
    /// User groups.
    pub user_group_unique_ids: Vec<String>,
    /// Modules.
    pub module_unique_ids: Vec<String>,
}

impl Default for SimUser {
    fn default() -> Self {
        SimUser {
            id: 0,
            user_name: String::new(),
            password: DEFAULT_PASSWORD.into(),
            full_name: None,
            email: None,
            phone: None,
            position: None,
            code: None,
            agency: "UNICEF".into(),
            agency_id: 1,
            agency_office: None,
            location: Some("ET12".into()),
            role_unique_id: "role-cp-case-worker".into(),
            group_permission: "self".into(),
            can_read_users: false,
            can_receive_referrals: true,
            disabled: false,
            services: vec![],
            user_group_unique_ids: vec!["usergroup-primero-cp".into()],
            module_unique_ids: vec!["primeromodule-cp".into()],
        }
    }
}

impl std::fmt::Debug for SimUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimUser")
            .field("id", &self.id)
            .field("user_name", &self.user_name)
            .field("password", &"[redacted]")
            .field("full_name", &self.full_name.as_ref().map(|_| "[redacted]"))
            .field("email", &self.email.as_ref().map(|_| "[redacted]"))
            .field("phone", &self.phone.as_ref().map(|_| "[redacted]"))
            .field("position", &self.position)
            .field("agency", &self.agency)
            .field("role_unique_id", &self.role_unique_id)
            .field("group_permission", &self.group_permission)
            .field("can_read_users", &self.can_read_users)
            .field("can_receive_referrals", &self.can_receive_referrals)
            .field("disabled", &self.disabled)
            .finish()
    }
}

/// Password of every default user.
pub const DEFAULT_PASSWORD: &str = "sim-primero-password";
/// The integration (API) user.
pub const API_USER: &str = "openfn_integration";
/// The user receiving referrals to UNHCR.
pub const UNHCR_USER: &str = "unhcr_cw";

/// The default users: the API user, the UNHCR receiver and three caseworkers.
pub fn default_users() -> Vec<SimUser> {
    vec![
        SimUser {
            id: 1,
            user_name: API_USER.into(),
            full_name: Some("OpenFn Integration".into()),
            email: Some("openfn-integration@example.org".into()),
            phone: Some("+251 900 000 001".into()),
            position: Some("Integration account".into()),
            code: Some("OPENFN".into()),
            role_unique_id: "role-primero-admin".into(),
            group_permission: "all".into(),
            can_read_users: true,
            can_receive_referrals: false,
            ..SimUser::default()
        },
        SimUser {
            id: 2,
            user_name: UNHCR_USER.into(),
            full_name: Some("UNHCR Caseworker".into()),
            email: Some("unhcr.cw@example.org".into()),
            phone: Some("+251 900 000 002".into()),
            position: Some("Protection Officer".into()),
            code: Some("UNHCR-CW".into()),
            agency: "UNHCR".into(),
            agency_id: 2,
            role_unique_id: "role-unhcr-case-worker".into(),
            ..SimUser::default()
        },
        SimUser {
            id: 3,
            user_name: "cw_amina".into(),
            full_name: Some("Amina Yusuf".into()),
            email: Some("amina.yusuf@example.org".into()),
            phone: Some("+251 911 000 003".into()),
            position: Some("Child Protection Caseworker".into()),
            code: Some("CW-AMINA".into()),
            services: vec!["basic_psychosocial_support".into()],
            ..SimUser::default()
        },
        SimUser {
            id: 4,
            user_name: "cw_john".into(),
            full_name: Some("John Lual".into()),
            email: Some("john.lual@example.org".into()),
            phone: Some("+251 911 000 004".into()),
            position: Some("Senior Caseworker".into()),
            code: Some("CW-JOHN".into()),
            ..SimUser::default()
        },
        SimUser {
            id: 5,
            user_name: "cw_incomplete".into(),
            full_name: Some("Incomplete Profile".into()),
            code: Some("CW-INC".into()),
            ..SimUser::default()
        },
    ]
}
