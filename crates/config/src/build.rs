//! Reads the (override-applied) TOML tree into a typed [`Config`], recording every problem:
//! types, ranges, URLs, GUIDs, schedules, secrets, shipping process ids and unknown keys.
//! Semantic checks of the value maps follow in `checks`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use pp_http::{HttpSettings, RetryPolicy};
use pp_mapping::{Codes, Fallbacks, InteropStatusCodes, Maps, TransferStatusCodes};
use secrecy::{ExposeSecret, SecretString};
use toml::{Table, Value};

use crate::model::*;
use crate::problems::join;
use crate::reader::{as_int, as_string, type_name, Ctx, Section};
use crate::schedule::parse_schedule;
use crate::secret::{resolve, secret};

/// Default B2C scope (the UAT tenant's, as in the reference adaptor).
pub const DEFAULT_PING_SCOPE: &str = "https://primespingb2cuat.onmicrosoft.com/apimurls/API.Read";
/// Default ledger location.
pub const DEFAULT_LEDGER_URL: &str = "sqlite://ping-primero.db";
/// Shortest accepted `hash_key`, in bytes.
pub const MIN_HASH_KEY_LEN: usize = 16;

/// Reads the whole tree. Returns `None` when a problem was recorded.
pub(crate) fn build(root: &Table, cx: &mut Ctx<'_>) -> Option<Config> {
    let mut top = Section::new("", Some(root));

    let service = read_service(top.child(cx, "service"), cx);
    let http = read_http(top.child(cx, "http"), cx, &HttpSettings::default(), true);
    let ping = read_ping(top.child(cx, "ping"), cx, &http);
    let primero = read_primero(top.child(cx, "primero"), cx, &http);
    let progres = read_progres(top.child(cx, "progres"), cx);
    let ledger = read_ledger(top.child(cx, "ledger"), cx);
    let default_start = service
        .as_ref()
        .map_or(StartFrom::Ago(DEFAULT_START_FROM), |s| s.start_from);
    let flows = read_flows(top.child(cx, "flows"), cx, default_start);

    let codes_section = top.child(cx, "codes");
    let maps_section = top.child(cx, "maps");
    let categories = top.child(cx, "specific_need_categories");
    let fallbacks = top.child(cx, "fallbacks");
    let maps = read_maps(cx, codes_section, maps_section, categories, fallbacks);
    let declared = read_declared(top.child(cx, "declared"), cx);
    let web = read_web(top.child(cx, "web"), cx);
    top.finish(cx);

    if let (Some(maps), Some(declared)) = (&maps, &declared) {
        // With an invalid flow section, check the maps as if every flow were enabled.
        let enabled = |name: &str| {
            flows
                .as_ref()
                .is_none_or(|fs| fs.iter().any(|f| f.name == name && f.enabled))
        };
        crate::checks::check_maps(cx, maps, declared, &enabled);
    }
    if !cx.problems.is_empty() {
        return None;
    }
    Some(Config {
        service: service?,
        ping: ping?,
        primero: primero?,
        progres: progres?,
        ledger: ledger?,
        flows: flows?,
        maps: maps?,
        declared: declared?,
        web: web?,
    })
}

/// The default `start_from`: seven days back.
pub const DEFAULT_START_FROM: Duration = Duration::from_secs(7 * 24 * 3600);

fn default_instance_id(env: &BTreeMap<String, String>) -> String {
    let host = env
        .get("HOSTNAME")
        .cloned()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ping-primero".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Parses `start_from`: an RFC 3339 timestamp, a date (midnight UTC), or a duration back
/// from now such as `7d` or `36h`.
pub fn parse_start_from(text: &str) -> Result<StartFrom, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(StartFrom::At(t.with_timezone(&Utc)));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(StartFrom::At(t.and_utc()));
        }
    }
    humantime::parse_duration(text)
        .map(StartFrom::Ago)
        .map_err(|_| {
            "expected an RFC 3339 timestamp (2026-11-01T00:00:00Z), a date (2026-11-01) \
             or a duration back from now (7d, 36h)"
                .to_owned()
        })
}

/// `Some(None)` when absent, `None` when invalid (problem recorded).
fn opt_start_from(cx: &mut Ctx<'_>, s: &mut Section<'_>) -> Option<Option<StartFrom>> {
    let path = s.key_path("start_from");
    let Some(value) = s.value("start_from") else {
        return Some(None);
    };
    let text = as_string(cx, &path, value)?;
    match parse_start_from(&text) {
        Ok(v) => Some(Some(v)),
        Err(e) => {
            cx.push(&path, e);
            None
        }
    }
}

fn read_service(mut s: Section<'_>, cx: &mut Ctx<'_>) -> Option<ServiceConfig> {
    let instance_id = s
        .opt_string(cx, "instance_id")
        .unwrap_or_else(|| default_instance_id(cx.env));
    let listen_path = s.key_path("http_listen");
    let listen = s.string_or(cx, "http_listen", "127.0.0.1:9464");
    let http_listen = match listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.push(
                &listen_path,
                "is not a socket address such as 127.0.0.1:9464",
            );
            None
        }
    };
    let key_path = s.key_path("hash_key");
    let hash_key = secret(cx, &mut s, "hash_key", true).filter(|k| {
        let ok = k.expose_secret().len() >= MIN_HASH_KEY_LEN;
        if !ok {
            cx.push(
                &key_path,
                format!("must be at least {MIN_HASH_KEY_LEN} bytes long"),
            );
        }
        ok
    });
    let start_from =
        opt_start_from(cx, &mut s).map(|v| v.unwrap_or(StartFrom::Ago(DEFAULT_START_FROM)));
    let log_format = s.choice_or(
        cx,
        "log_format",
        &[
            ("human", LogFormat::Human),
            ("json", LogFormat::Json),
            ("text", LogFormat::Human),
        ],
        LogFormat::Human,
    );
    s.finish(cx);
    Some(ServiceConfig {
        instance_id,
        http_listen: http_listen?,
        hash_key: hash_key?,
        start_from: start_from?,
        log_format,
    })
}

/// Reads `[http]` (`base` = true) or a per-system override table on top of `defaults`.
fn read_http(
    mut s: Section<'_>,
    cx: &mut Ctx<'_>,
    defaults: &HttpSettings,
    base: bool,
) -> HttpSettings {
    let d = defaults;
    let secs = |x: Duration| x.as_secs();
    let millis = |x: Duration| u64::try_from(x.as_millis()).unwrap_or(u64::MAX);
    let connect_timeout = s.secs_or(cx, "connect_timeout_secs", secs(d.connect_timeout), 1);
    let request_timeout = s.secs_or(cx, "request_timeout_secs", secs(d.request_timeout), 1);
    let max_attempts = s.uint_or(cx, "max_attempts", u64::from(d.retry.max_attempts), 1, 100);
    let initial_backoff = s.millis_or(cx, "initial_backoff_ms", millis(d.retry.initial_backoff), 1);
    let max_backoff = s.millis_or(cx, "max_backoff_ms", millis(d.retry.max_backoff), 1);
    let max_elapsed = s.secs_or(cx, "max_elapsed_secs", secs(d.retry.max_elapsed), 1);
    if (base || s.present()) && initial_backoff > max_backoff {
        cx.push(
            &s.key_path("initial_backoff_ms"),
            "must not exceed max_backoff_ms",
        );
    }
    s.finish(cx);
    HttpSettings {
        connect_timeout,
        request_timeout,
        max_concurrency: d.max_concurrency,
        retry: RetryPolicy {
            max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
            initial_backoff,
            max_backoff,
            max_elapsed,
        },
    }
}

fn read_ping(mut s: Section<'_>, cx: &mut Ctx<'_>, http: &HttpSettings) -> Option<PingConfig> {
    let base_url = s.req_url(cx, "base_url");
    let token_url = s.req_url(cx, "token_url");
    let client_id = s.req_string(cx, "client_id");
    let scope = s.string_or(cx, "scope", DEFAULT_PING_SCOPE);
    let username = s.req_string(cx, "username");
    let password = secret(cx, &mut s, "password", true);
    let subscription_key = secret(cx, &mut s, "subscription_key", true);
    let partner_id = s.req_string(cx, "partner_id");
    let interop_id = s.req_string(cx, "interop_id");
    let batch_size = s.uint_or(cx, "batch_size", 50, 1, 1000);
    let max_concurrency = s.uint_or(cx, "max_concurrency", 8, 1, 256);
    let check_status_timeout = s.secs_or(cx, "check_status_timeout_secs", 120, 1);
    let check_status_interval = s.millis_or(cx, "check_status_interval_ms", 2000, 10);
    let shipping_processes = read_shipping_processes(s.child(cx, "shipping_processes"), cx);
    let mut http = read_http(s.child(cx, "http"), cx, http, false);
    http.max_concurrency = usize::try_from(max_concurrency).unwrap_or(1);
    s.finish(cx);
    Some(PingConfig {
        base_url: base_url?,
        token_url: token_url?,
        client_id: client_id?,
        scope,
        username: username?,
        password: password?,
        subscription_key: subscription_key?,
        partner_id: partner_id?,
        interop_id: interop_id?,
        batch_size: usize::try_from(batch_size).unwrap_or(1),
        check_status_timeout,
        check_status_interval,
        shipping_processes: shipping_processes?,
        http,
    })
}

fn is_shipping_process_id(id: &str) -> bool {
    id.strip_prefix("SHP-")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

fn read_shipping_processes(mut s: Section<'_>, cx: &mut Ctx<'_>) -> Option<ShippingProcesses> {
    let mut ids: Vec<Option<String>> = Vec::with_capacity(7);
    let mut seen: BTreeMap<String, &'static str> = BTreeMap::new();
    for key in ShippingProcesses::KEYS {
        let path = s.key_path(key);
        let id = s.req_string(cx, key).filter(|id| {
            let ok = is_shipping_process_id(id);
            if !ok {
                cx.push(
                    &path,
                    format!("`{id}` is not a shipping process id (SHP-<digits>)"),
                );
            }
            ok
        });
        if let Some(id) = &id {
            if let Some(other) = seen.insert(id.clone(), key) {
                cx.push(&path, format!("`{id}` is also given to `{other}`"));
            }
        }
        ids.push(id);
    }
    s.finish(cx);
    let mut it = ids.into_iter();
    let mut next = || it.next().flatten();
    let (a, b, c, d, e, f, g) = (next(), next(), next(), next(), next(), next(), next());
    Some(ShippingProcesses {
        pending_referrals: a?,
        intervention_details: b?,
        transfer_status: c?,
        decision_list: d?,
        decision_details: e?,
        referral_synced: f?,
        incoming_referral: g?,
    })
}

fn read_primero(
    mut s: Section<'_>,
    cx: &mut Ctx<'_>,
    http: &HttpSettings,
) -> Option<PrimeroConfig> {
    let base_url = s.req_url(cx, "base_url");
    let auth = s.choice_or(
        cx,
        "auth",
        &[("basic", PrimeroAuth::Basic), ("token", PrimeroAuth::Token)],
        PrimeroAuth::Basic,
    );
    let username = s.req_string(cx, "username");
    let password = secret(cx, &mut s, "password", true);
    let module_id = s.string_or(cx, "module_id", "primeromodule-cp");
    let agencies_path = s.key_path("unhcr_agency_values");
    let unhcr_agency_values = s
        .opt_string_list(cx, "unhcr_agency_values")
        .unwrap_or_else(|| vec!["UNHCR".to_owned()]);
    if unhcr_agency_values.iter().all(|v| v.trim().is_empty()) {
        cx.push(&agencies_path, "must name at least one agency value");
    }
    let max_concurrency = s.uint_or(cx, "max_concurrency", 8, 1, 256);
    let policy_path = s.key_path("on_incomplete_caseworker");
    let on_incomplete_caseworker = s.choice_or(
        cx,
        "on_incomplete_caseworker",
        &[
            ("reject", CaseworkerPolicy::Reject),
            ("focal_point", CaseworkerPolicy::FocalPoint),
        ],
        CaseworkerPolicy::Reject,
    );
    let fp_section = s.child(cx, "focal_point");
    let fp_path = fp_section.path.clone();
    let fp_present = fp_section.present();
    let focal_point = read_focal_point(fp_section, cx);
    if on_incomplete_caseworker == CaseworkerPolicy::FocalPoint && !fp_present {
        cx.push(
            &fp_path,
            format!(
                "is required when {policy_path} = \"focal_point\" (name, position, email, phone)"
            ),
        );
    }
    let mut http = read_http(s.child(cx, "http"), cx, http, false);
    http.max_concurrency = usize::try_from(max_concurrency).unwrap_or(1);
    s.finish(cx);
    Some(PrimeroConfig {
        base_url: base_url?,
        auth,
        username: username?,
        password: password?,
        module_id,
        unhcr_agency_values,
        on_incomplete_caseworker,
        focal_point: if fp_present { Some(focal_point?) } else { None },
        http,
    })
}

fn read_focal_point(mut s: Section<'_>, cx: &mut Ctx<'_>) -> Option<FocalPoint> {
    if !s.present() {
        return None;
    }
    let name = s.req_string(cx, "name");
    let position = s.req_string(cx, "position");
    let email_path = s.key_path("email");
    let email = s.req_string(cx, "email").filter(|e| {
        let ok = e.contains('@') && !e.starts_with('@') && !e.ends_with('@');
        if !ok {
            cx.push(&email_path, "is not an e-mail address");
        }
        ok
    });
    let phone = s.req_string(cx, "phone");
    s.finish(cx);
    Some(FocalPoint {
        name: name?,
        position: position?,
        email: email?,
        phone: phone?,
    })
}

fn read_progres(mut s: Section<'_>, cx: &mut Ctx<'_>) -> Option<ProgresConfig> {
    let business_unit = s.req_guid(cx, "business_unit");
    let organization_from = s.req_guid(cx, "organization_from");
    let referred_by = s.string_or(cx, "referred_by", "Primero CP");
    s.finish(cx);
    Some(ProgresConfig {
        business_unit: business_unit?,
        organization_from: organization_from?,
        referred_by,
    })
}

/// The engine a ledger URL names, from its scheme.
pub fn ledger_kind(url: &str) -> Option<LedgerKind> {
    let scheme = url.split_once(':')?.0.to_ascii_lowercase();
    match scheme.as_str() {
        "sqlite" => Some(LedgerKind::Sqlite),
        "postgres" | "postgresql" => Some(LedgerKind::Postgres),
        _ => None,
    }
}

fn read_ledger(mut s: Section<'_>, cx: &mut Ctx<'_>) -> Option<LedgerConfig> {
    let path = s.key_path("url");
    let url = match s.value("url") {
        None => Some(SecretString::from(DEFAULT_LEDGER_URL)),
        Some(v) => resolve(cx, &path, v),
    };
    let kind = url.as_ref().and_then(|u| {
        let kind = ledger_kind(u.expose_secret());
        if kind.is_none() {
            cx.push(
                &path,
                "must start with sqlite: or postgres:// (or postgresql://)",
            );
        }
        kind
    });
    let retention_days = s.uint_or(cx, "retention_days", 90, 1, 36_500);
    let lease_ttl = s.secs_or(cx, "lease_ttl_secs", 300, 5);
    s.finish(cx);
    Some(LedgerConfig {
        url: url?,
        kind: kind?,
        retention: Duration::from_secs(retention_days * 24 * 3600),
        lease_ttl,
    })
}

fn read_flows(
    mut s: Section<'_>,
    cx: &mut Ctx<'_>,
    default_start: StartFrom,
) -> Option<Vec<FlowConfig>> {
    let mut flows = Vec::with_capacity(FLOWS.len());
    let mut ok = true;
    for (i, name) in FLOWS.iter().enumerate() {
        let mut f = s.child(cx, name);
        let enabled = f.bool_or(cx, "enabled", true);
        let schedule_path = f.key_path("schedule");
        let schedule_expr = f.string_or(cx, "schedule", DEFAULT_SCHEDULES[i]);
        let schedule = match parse_schedule(&schedule_expr) {
            Ok(s) => Some(s),
            Err(e) => {
                cx.push(&schedule_path, e);
                None
            }
        };
        let start_from = opt_start_from(cx, &mut f);
        f.finish(cx);
        match (schedule, start_from) {
            (Some(schedule), Some(start_from)) => flows.push(FlowConfig {
                name,
                id: FLOW_IDS[i],
                enabled,
                schedule,
                schedule_expr,
                start_from: start_from.unwrap_or(default_start),
            }),
            _ => ok = false,
        }
    }
    s.finish(cx);
    ok.then_some(flows)
}

/// A table of free keys (a value map): its path and entries, or `None` when absent.
fn dyn_table<'a>(
    cx: &mut Ctx<'_>,
    parent: &mut Section<'a>,
    key: &'static str,
) -> (String, Option<&'a Table>) {
    let s = parent.child(cx, key);
    (s.path, s.table)
}

/// A string -> string map; problems for non-string or empty values.
fn string_map(cx: &mut Ctx<'_>, path: &str, table: Option<&Table>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in table.into_iter().flatten() {
        let p = join(path, k);
        if let Some(s) = as_string(cx, &p, v) {
            if s.trim().is_empty() {
                cx.push(&p, "must not be empty");
            } else {
                out.insert(k.clone(), s);
            }
        }
    }
    out
}

fn read_maps(
    cx: &mut Ctx<'_>,
    mut codes: Section<'_>,
    mut maps: Section<'_>,
    categories: Section<'_>,
    mut fallbacks: Section<'_>,
) -> Option<Maps> {
    let before = cx.problems.len();

    // [codes.sex]: proGres code -> Primero value.
    let (sex_path, sex_table) = dyn_table(cx, &mut codes, "sex");
    let mut sex = BTreeMap::new();
    for (k, v) in sex_table.into_iter().flatten() {
        let p = join(&sex_path, k);
        let Ok(code) = k.trim().parse::<i64>() else {
            cx.push(
                &p,
                "key must be a proGres option code (an integer such as 125080000)",
            );
            continue;
        };
        match as_string(cx, &p, v) {
            Some(s) if !s.trim().is_empty() => {
                sex.insert(code, s);
            }
            Some(_) => cx.push(&p, "must not be empty"),
            None => {}
        }
    }
    let transfer_status = read_codes(
        codes.child(cx, "transfer_status"),
        cx,
        &TransferStatusCodes::default().entries(),
    );
    let interop_status = read_codes(
        codes.child(cx, "interoperability_referral_status"),
        cx,
        &InteropStatusCodes::default().entries(),
    );
    codes.finish(cx);

    let mut map = |cx: &mut Ctx<'_>, key: &'static str| {
        let (path, table) = dyn_table(cx, &mut maps, key);
        string_map(cx, &path, table)
    };
    let intervention_type_to_service = map(cx, "intervention_type_to_service");
    let service_to_progres = map(cx, "service_to_progres");
    let language_to_primero = map(cx, "language_to_primero");
    let language_to_progres = map(cx, "language_to_progres");
    let protection_concern_to_category = map(cx, "protection_concern_to_specific_need");
    maps.finish(cx);
    let specific_need_categories = string_map(cx, &categories.path, categories.table);

    let fallbacks = Fallbacks {
        language_to_primero: fallbacks.opt_string(cx, "language_to_primero"),
        intervention_type_to_service: fallbacks.opt_string(cx, "intervention_type_to_service"),
        service_to_progres: fallbacks.opt_string(cx, "service_to_progres"),
        sex_progres_to_primero: {
            let f = fallbacks.opt_string(cx, "sex_progres_to_primero");
            fallbacks.finish(cx);
            f
        },
    };

    let (t, i) = (transfer_status, interop_status);
    let codes = Codes {
        transfer_status: TransferStatusCodes {
            delivery_fail: t[0],
            pending_acknowledgement: t[1],
            acknowledged: t[2],
            rejected: t[3],
        },
        interop_status: InteropStatusCodes {
            new: i[0],
            accepted: i[1],
            rejected: i[2],
            synced_with_primero: i[3],
        },
    };
    (cx.problems.len() == before).then_some(Maps {
        intervention_type_to_service,
        service_to_progres,
        language_to_primero,
        language_to_progres,
        sex_progres_to_primero: sex,
        protection_concern_to_category,
        specific_need_categories,
        fallbacks,
        codes,
    })
}

/// Four named option codes with defaults; codes must be distinct (R4).
fn read_codes(
    mut s: Section<'_>,
    cx: &mut Ctx<'_>,
    defaults: &[(&'static str, i64); 4],
) -> [i64; 4] {
    let mut out = [0i64; 4];
    for (slot, (key, default)) in out.iter_mut().zip(defaults) {
        let path = s.key_path(key);
        *slot = match s.value(key) {
            None => *default,
            Some(v) => as_int(cx, &path, v).unwrap_or(*default),
        };
    }
    for (i, (key, _)) in defaults.iter().enumerate() {
        if let Some(j) = (0..i).find(|j| out[*j] == out[i]) {
            cx.push(
                &s.key_path(key),
                format!("code {} is also given to `{}`", out[i], defaults[j].0),
            );
        }
    }
    s.finish(cx);
    out
}

fn read_declared(mut s: Section<'_>, cx: &mut Ctx<'_>) -> Option<Declared> {
    let before = cx.problems.len();
    let progres_intervention_types = s.opt_string_list(cx, "progres_intervention_types");
    let primero_service_types = s.opt_string_list(cx, "primero_service_types");
    let progres_languages = s.opt_string_list(cx, "progres_languages");
    let codes_path = s.key_path("progres_sex_codes");
    let progres_sex_codes = match s.value("progres_sex_codes") {
        None => DEFAULT_PROGRES_SEX_CODES.to_vec(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| as_int(cx, &format!("{codes_path}[{i}]"), v))
            .collect(),
        Some(other) => {
            cx.push(
                &codes_path,
                format!("expected an array of integers, found {}", type_name(other)),
            );
            Vec::new()
        }
    };
    let primero_sexes = s.opt_string_list(cx, "primero_sexes");
    let primero_protection_concerns = s.opt_string_list(cx, "primero_protection_concerns");
    s.finish(cx);
    (cx.problems.len() == before).then_some(Declared {
        progres_intervention_types,
        primero_service_types,
        progres_languages,
        progres_sex_codes,
        primero_sexes,
        primero_protection_concerns,
    })
}

fn read_web(mut s: Section<'_>, cx: &mut Ctx<'_>) -> Option<WebConfig> {
    let before = cx.problems.len();
    let ops_path = s.key_path("operators");
    let mut operators: Vec<Operator> = Vec::new();
    match s.value("operators") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("{ops_path}[{i}]");
                let Value::Table(t) = item else {
                    cx.push(
                        &path,
                        format!(
                            "expected a table {{ name, password_hash }}, found {}",
                            type_name(item)
                        ),
                    );
                    continue;
                };
                let mut op = Section::new(path, Some(t));
                let name_path = op.key_path("name");
                let name = op.req_string(cx, "name");
                let hash_path = op.key_path("password_hash");
                let hash = op.req_string(cx, "password_hash").filter(|h| {
                    let ok = is_argon2_phc(h);
                    if !ok {
                        cx.push(
                            &hash_path,
                            "is not an argon2 PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash)",
                        );
                    }
                    ok
                });
                op.finish(cx);
                if let Some(name) = &name {
                    if operators.iter().any(|o| &o.name == name) {
                        cx.push(&name_path, format!("operator `{name}` is listed twice"));
                    }
                }
                if let (Some(name), Some(password_hash)) = (name, hash) {
                    operators.push(Operator {
                        name,
                        password_hash,
                    });
                }
            }
        }
        Some(other) => cx.push(
            &ops_path,
            format!(
                "expected an array of {{ name, password_hash }} tables, found {}",
                type_name(other)
            ),
        ),
    }
    let api_token = secret(cx, &mut s, "api_token", false);
    let session_ttl = s.secs_or(cx, "session_ttl_secs", 8 * 3600, 60);
    s.finish(cx);
    (cx.problems.len() == before).then_some(WebConfig {
        operators,
        api_token,
        session_ttl,
    })
}

fn is_argon2_phc(text: &str) -> bool {
    argon2::password_hash::PasswordHash::new(text)
        .is_ok_and(|h| h.algorithm.as_str().starts_with("argon2") && h.hash.is_some())
}
