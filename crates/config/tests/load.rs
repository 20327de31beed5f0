//! Loading and checking configurations as operators write them: the shipped example, the
//! reference maps pasted in, broken files (every problem listed with its path), secrets,
//! environment overrides, flow names and schedules.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use pp_config::*;
use pp_mapping::Maps;
use secrecy::ExposeSecret;

fn example_env() -> BTreeMap<String, String> {
    sim_defaults::EXAMPLE_ENV
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut e = example_env();
    for (k, v) in pairs {
        e.insert((*k).to_owned(), (*v).to_owned());
    }
    e
}

fn paths(e: &ConfigErrors) -> Vec<&str> {
    e.problems.iter().map(|p| p.path.as_str()).collect()
}

/// The example with `edit` applied to its parsed tree.
fn example_with(edit: impl FnOnce(&mut toml::Table)) -> toml::Table {
    let mut t = parse_toml(EXAMPLE_TOML).unwrap();
    edit(&mut t);
    t
}

fn table<'a>(t: &'a mut toml::Table, path: &[&str]) -> &'a mut toml::Table {
    let mut cur = t;
    for k in path {
        cur = cur
            .entry(*k)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .unwrap();
    }
    cur
}

#[test]
fn example_file_loads_with_the_simulator_secrets() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/example.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let c = load_str(&text, &example_env()).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(c.ping.base_url.as_str(), "http://127.0.0.1:8081/");
    assert_eq!(
        c.ping.token_url.as_str(),
        "http://127.0.0.1:8081/primespingb2cuat.onmicrosoft.com/b2c_1_msawe-primes-ping-test-apim-rpocuf/oauth2/v2.0/token"
    );
    assert_eq!(c.ping.client_id, "ping-primero-sim");
    assert_eq!(c.ping.username, "ping.partner@sim.local");
    assert_eq!(c.ping.password.expose_secret(), "sim-ping-password");
    assert_eq!(
        c.ping.subscription_key.expose_secret(),
        "sim-subscription-key"
    );
    assert_eq!(c.ping.shipping_processes.incoming_referral, "SHP-2731");
    assert_eq!(c.ping.batch_size, 50);
    assert_eq!(c.ping.http.max_concurrency, 8);
    // [ping.http] overrides one key; the others come from [http].
    assert_eq!(c.ping.http.request_timeout, Duration::from_secs(60));
    assert_eq!(c.ping.http.retry.max_attempts, 5);
    assert_eq!(c.primero.http.request_timeout, Duration::from_secs(30));
    assert_eq!(c.primero.base_url.as_str(), "http://127.0.0.1:8082/");
    assert_eq!(c.primero.username, "openfn_integration");
    assert_eq!(c.primero.password.expose_secret(), "sim-primero-password");
    assert_eq!(c.primero.auth, PrimeroAuth::Basic);
    assert!(c.primero.is_unhcr_agency(" unhcr "));
    assert_eq!(
        c.progres.business_unit.to_string(),
        "577ccdf6-86de-e811-80d8-001dd8b71fe3"
    );
    assert_eq!(c.ledger.kind, LedgerKind::Sqlite);
    assert_eq!(c.ledger.url.expose_secret(), "sqlite://ping-primero.db");
    assert_eq!(
        c.service.start_from,
        StartFrom::Ago(Duration::from_secs(7 * 86400))
    );
    // The example carries the full reference maps.
    assert_eq!(c.maps, Maps::gambella());
    let schedules: Vec<&str> = c.flows.iter().map(|f| f.schedule_expr.as_str()).collect();
    assert_eq!(schedules, DEFAULT_SCHEDULES);
    assert_eq!(c.flows.iter().map(|f| f.name).collect::<Vec<_>>(), FLOWS);
}

#[test]
fn reference_maps_file_pastes_into_a_configuration() {
    // mapping-gambella.toml's sections are valid configuration as they stand: merge the
    // whole file over a configuration that has no maps and get the reference maps.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/specs/mapping-gambella.toml"
    );
    let gambella = parse_toml(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut base = example_with(|t| {
        for k in ["codes", "maps", "fallbacks", "specific_need_categories"] {
            t.remove(k);
        }
    });
    fn merge(into: &mut toml::Table, from: toml::Table) {
        for (k, v) in from {
            match (into.get_mut(&k), v) {
                (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge(a, b),
                (_, v) => {
                    into.insert(k, v);
                }
            }
        }
    }
    merge(&mut base, gambella);
    let c = load_table(base, &example_env()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.maps, Maps::gambella());
    assert_eq!(c.ping.partner_id, "PNR-1363");
}

#[test]
fn a_broken_configuration_lists_every_problem_with_its_path() {
    let broken = r#"
[service]
hash_key = { env = "UNSET_HASH_KEY" }
start_from = "last tuesday"

[ping]
base_url = "not a url"
token_url = "http://127.0.0.1:8081/token"
client_id = "x"
username = "u"
password = { env = "PING_PASSWORD" }
subscription_key = { file = "/nonexistent/ping-primero/key" }
partner_id = "PNR-1"
interop_id = "INT-1"
batch_sise = 10

[ping.shipping_processes]
pending_referrals = "SHP-2747"
intervention_details = "2358"
transfer_status = "SHP-2748"
decision_list = "SHP-2795"
decision_details = "SHP-2796"
referral_synced = "SHP-2284"
incoming_referral = "SHP-2731"

[primero]
base_url = "http://127.0.0.1:8082"
username = "openfn_integration"
password = "sim-primero-password"
on_incomplete_caseworker = "focal_point"

[progres]
business_unit = "577ccdf6-86de-e811-80d8"
organization_from = "c00582a6-d8f6-f011-8406-6045bd8ea5fb"

[ledger]
url = "mysql://db/pp"

[flows.referrals-to-primero]
schedule = "0 0 * *"

[codes.sex]
125080000 = "female"
125080001 = "female"
125080002 = "other"
125080003 = "unknown"

[maps.intervention_type_to_service]
"BIA" = "focuses_non_specialized_mhpss_care"

[maps.service_to_progres]
legal_support = "7ad37dd0-0306-e611-80d9-00155d34051a"
medical = "not-a-guid"

[maps.language_to_primero]
"Nuer" = "language2"

[maps.language_to_progres]
language2 = "Nuer"

[specific_need_categories]
child_at_risk = "a1c5b4fb-8f76-e611-80c9-00155d340529"

[maps.protection_concern_to_specific_need]
orphan = "unaccompanied_or_separated"

[declared]
progres_intervention_types = ["BIA", "BID"]
"#;
    let e = load_str(broken, &env(&[])).unwrap_err();
    let expected = [
        (
            "service.hash_key",
            "environment variable UNSET_HASH_KEY is not set",
        ),
        ("service.start_from", "RFC 3339"),
        ("ping.base_url", "not a valid URL"),
        (
            "ping.subscription_key",
            "file /nonexistent/ping-primero/key cannot be read",
        ),
        (
            "ping.batch_sise",
            "unknown key (did you mean `batch_size`?)",
        ),
        (
            "ping.shipping_processes.intervention_details",
            "`2358` is not a shipping process id",
        ),
        ("primero.focal_point", "is required when"),
        ("progres.business_unit", "is not a GUID"),
        ("ledger.url", "must start with sqlite:"),
        ("flows.referrals-to-primero.schedule", "found 4"),
        (
            "codes.sex",
            "reverse map used by referrals-to-progres would be ambiguous",
        ),
        (
            "maps.service_to_progres.medical",
            "`not-a-guid` is not a GUID",
        ),
        (
            "maps.protection_concern_to_specific_need.orphan",
            "category `unaccompanied_or_separated` is not listed",
        ),
        ("maps.intervention_type_to_service", "no entry for `BID`"),
    ];
    for (path, text) in expected {
        assert!(
            e.at(path).any(|p| p.message.contains(text)),
            "no problem at {path} saying {text:?}; got:\n{e}"
        );
    }
    assert_eq!(
        e.problems.len(),
        expected.len(),
        "unexpected extra problems:\n{e}"
    );
    // Display: one `path: message` per line.
    let shown = e.to_string();
    assert_eq!(shown.lines().count(), expected.len());
    assert!(shown
        .lines()
        .any(|l| l == "ping.batch_sise: unknown key (did you mean `batch_size`?)"));
    // No secret value leaks into the report.
    assert!(!shown.contains("sim-primero-password"));
    assert!(!shown.contains("sim-ping-password"));
}

#[test]
fn missing_required_keys_and_maps_are_all_reported() {
    let e = load_str("", &BTreeMap::new()).unwrap_err();
    let p = paths(&e);
    for required in [
        "service.hash_key",
        "ping.base_url",
        "ping.token_url",
        "ping.client_id",
        "ping.username",
        "ping.password",
        "ping.subscription_key",
        "ping.partner_id",
        "ping.interop_id",
        "ping.shipping_processes.pending_referrals",
        "ping.shipping_processes.incoming_referral",
        "primero.base_url",
        "primero.username",
        "primero.password",
        "progres.business_unit",
        "progres.organization_from",
        "maps.intervention_type_to_service",
        "maps.service_to_progres",
        "maps.language_to_primero",
        "maps.language_to_progres",
        "maps.protection_concern_to_specific_need",
        "specific_need_categories",
        "codes.sex",
    ] {
        assert!(p.contains(&required), "{required} not reported; got:\n{e}");
    }
    // The ledger has a default.
    assert!(!p.iter().any(|p| p.starts_with("ledger")));
}

#[test]
fn maps_are_required_only_by_the_flows_that_are_enabled() {
    let t = example_with(|t| {
        table(t, &["maps"]).remove("service_to_progres");
        table(t, &["maps"]).remove("intervention_type_to_service");
        table(t, &["declared"]).remove("primero_service_types");
        table(t, &["declared"]).remove("progres_intervention_types");
        table(t, &["flows", "referrals-to-progres"]).insert("enabled".into(), false.into());
    });
    let e = load_table(t, &example_env()).unwrap_err();
    assert_eq!(paths(&e), ["maps.intervention_type_to_service"], "{e}");
    assert!(e.problems[0].message.contains("referrals-to-primero"));
}

#[test]
fn secrets_come_from_literals_environment_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("subscription-key");
    std::fs::write(&key_file, "key-from-file\n").unwrap();
    let t = example_with(|t| {
        let ping = table(t, &["ping"]);
        ping.insert("password".into(), "literal-password".into());
        let mut file = toml::Table::new();
        file.insert("file".into(), key_file.display().to_string().into());
        ping.insert("subscription_key".into(), file.into());
    });
    let c =
        load_table(t, &env(&[("PRIMERO_PASSWORD", "from-env")])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.ping.password.expose_secret(), "literal-password");
    assert_eq!(c.ping.subscription_key.expose_secret(), "key-from-file");
    assert_eq!(c.primero.password.expose_secret(), "from-env");

    // Unset variable, empty variable, unreadable file: named, never valued.
    let t = example_with(|t| {
        let mut file = toml::Table::new();
        file.insert(
            "file".into(),
            dir.path().join("absent").display().to_string().into(),
        );
        table(t, &["ping"]).insert("subscription_key".into(), file.into());
    });
    let mut e_env = example_env();
    e_env.remove("PING_PASSWORD");
    e_env.insert("PRIMERO_PASSWORD".into(), String::new());
    let e = load_table(t, &e_env).unwrap_err();
    let msg = |path: &str| {
        e.at(path)
            .map(|p| p.message.clone())
            .collect::<Vec<_>>()
            .join("; ")
    };
    assert_eq!(
        msg("ping.password"),
        "environment variable PING_PASSWORD is not set"
    );
    assert_eq!(
        msg("primero.password"),
        "environment variable PRIMERO_PASSWORD is empty"
    );
    assert!(msg("ping.subscription_key").contains("cannot be read"));
    assert_eq!(e.problems.len(), 3, "{e}");

    // A secret table with both sources, or a wrong type, is refused.
    let t = example_with(|t| {
        let mut both = toml::Table::new();
        both.insert("env".into(), "A".into());
        both.insert("file".into(), "/b".into());
        table(t, &["ping"]).insert("password".into(), both.into());
        table(t, &["primero"]).insert("password".into(), 1234.into());
    });
    let e = load_table(t, &example_env()).unwrap_err();
    assert!(e
        .at("ping.password")
        .any(|p| p.message.contains("either `env` or `file`")));
    assert!(e
        .at("primero.password")
        .any(|p| p.message.contains("found an integer")));
}

#[test]
fn debug_output_never_shows_a_secret() {
    let t = example_with(|t| {
        let mut token = toml::Table::new();
        token.insert("env".into(), "API_TOKEN".into());
        table(t, &["web"]).insert("api_token".into(), token.into());
        table(t, &["ledger"]).insert(
            "url".into(),
            "postgres://pp:db-password-xyz@localhost/pp".into(),
        );
    });
    let c = load_table(t, &env(&[("API_TOKEN", "api-token-xyz")])).unwrap();
    let debug = format!("{c:?}");
    for secret in [
        "sim-ping-password",
        "sim-subscription-key",
        "sim-primero-password",
        sim_defaults::HASH_KEY,
        "api-token-xyz",
        "db-password-xyz",
    ] {
        assert!(!debug.contains(secret), "Debug shows {secret}");
    }
    assert_eq!(c.ledger.kind, LedgerKind::Postgres);
    assert_eq!(c.ledger.redacted_url(), "postgres://pp:***@localhost/pp");
    let line = summary(&c);
    assert!(!line.contains("db-password-xyz"));
    assert!(line.contains("postgres://pp:***@localhost/pp"));
    assert!(!line.contains('\n'));
}

#[test]
fn environment_overrides_apply_before_checking() {
    let c = load_str(
        EXAMPLE_TOML,
        &env(&[
            ("PING_PRIMERO__PING__BASE_URL", "https://ping.example.org"),
            (
                "PING_PRIMERO__LEDGER__URL",
                "postgres://ledger.example.org/pp",
            ),
            (
                "PING_PRIMERO__FLOWS__REFERRALS_TO_PRIMERO__ENABLED",
                "false",
            ),
            (
                "ping_primero__flows__decisions_to_primero__schedule",
                "30 2 * * 1-5",
            ),
            ("PING_PRIMERO__PING__BATCH_SIZE", "200"),
            ("PING_PRIMERO__PING__PARTNER_ID", "1363"),
            (
                "PING_PRIMERO__PRIMERO__UNHCR_AGENCY_VALUES",
                "UNHCR,unhcr-eth",
            ),
            ("PING_PRIMERO__PRIMERO__PASSWORD", "override-password"),
            ("PING_PRIMERO__SERVICE__START_FROM", "2026-11-01T00:00:00Z"),
        ]),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.ping.base_url.as_str(), "https://ping.example.org/");
    assert_eq!(c.ledger.kind, LedgerKind::Postgres);
    assert!(!c.flow("referrals-to-primero").enabled);
    assert!(c.flow("1.2").enabled);
    assert_eq!(c.flow("2.2").schedule_expr, "30 2 * * 1-5");
    assert_eq!(c.ping.batch_size, 200);
    assert_eq!(c.ping.partner_id, "1363");
    assert_eq!(c.primero.unhcr_agency_values, ["UNHCR", "unhcr-eth"]);
    assert_eq!(c.primero.password.expose_secret(), "override-password");
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    assert_eq!(c.service.start_from, StartFrom::At(start));
    // Flows without their own start_from inherit the service's.
    assert_eq!(c.flow("2.1").start_from, StartFrom::At(start));

    // A bad override is reported at the key it set, naming the variable.
    let e = load_str(
        EXAMPLE_TOML,
        &env(&[
            ("PING_PRIMERO__PING__BATCH_SIZE", "many"),
            ("PING_PRIMERO__PING__BASEURL", "http://x"),
        ]),
    )
    .unwrap_err();
    let batch: Vec<_> = e.at("ping.batch_size").collect();
    assert_eq!(batch.len(), 1, "{e}");
    assert!(batch[0].message.contains("PING_PRIMERO__PING__BATCH_SIZE"));
    assert!(e
        .at("ping.baseurl")
        .any(|p| p.message.contains("did you mean `base_url`")
            && p.message.contains("PING_PRIMERO__PING__BASEURL")));
}

#[test]
fn flow_names_resolve_from_ids_and_names() {
    assert_eq!(flow_name("1.1"), Some("referrals-to-primero"));
    assert_eq!(flow_name("1.2"), Some("decisions-to-progres"));
    assert_eq!(flow_name("2.1"), Some("referrals-to-progres"));
    assert_eq!(flow_name("2.2"), Some("decisions-to-primero"));
    assert_eq!(
        flow_name("decisions-to-primero"),
        Some("decisions-to-primero")
    );
    assert_eq!(
        flow_name("Referrals_To_Progres"),
        Some("referrals-to-progres")
    );
    assert_eq!(flow_name("3.1"), None);
    assert_eq!(flow_name("referrals"), None);
    let c = load_str(EXAMPLE_TOML, &example_env()).unwrap();
    assert_eq!(c.flow("2.1").name, "referrals-to-progres");
    assert_eq!(c.flow("referrals-to-progres").id, "2.1");
    assert!(c.try_flow("nope").is_none());
}

#[test]
fn schedules_accept_five_and_six_fields() {
    let t = example_with(|t| {
        table(t, &["flows", "referrals-to-primero"]).insert("schedule".into(), "15 3 * * *".into());
        table(t, &["flows", "decisions-to-progres"])
            .insert("schedule".into(), "0 */10 * * * *".into());
    });
    let c = load_table(t, &example_env()).unwrap_or_else(|e| panic!("{e}"));
    let after = Utc.with_ymd_and_hms(2026, 11, 30, 5, 1, 0).unwrap();
    let next = |name: &str| c.flow(name).schedule.after(&after).next().unwrap();
    assert_eq!(
        next("1.1"),
        Utc.with_ymd_and_hms(2026, 12, 1, 3, 15, 0).unwrap()
    );
    assert_eq!(
        next("1.2"),
        Utc.with_ymd_and_hms(2026, 11, 30, 5, 10, 0).unwrap()
    );
    // Defaults: 2.1 hourly, 2.2 daily at midnight.
    assert_eq!(
        next("2.1"),
        Utc.with_ymd_and_hms(2026, 11, 30, 6, 0, 0).unwrap()
    );
    assert_eq!(
        next("2.2"),
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
    );

    let t = example_with(|t| {
        table(t, &["flows", "referrals-to-progres"])
            .insert("schedule".into(), "0 0 0 * * * 2026 x".into());
        table(t, &["flows"]).insert("referals-to-primero".into(), toml::Table::new().into());
    });
    let e = load_table(t, &example_env()).unwrap_err();
    assert!(e
        .at("flows.referrals-to-progres.schedule")
        .any(|p| p.message.contains("found 8")));
    assert!(e
        .at("flows.referals-to-primero")
        .any(|p| p.message.contains("did you mean `referrals-to-primero`")));
}

#[test]
fn focal_point_policy_needs_a_complete_contact() {
    let t = example_with(|t| {
        table(t, &["primero"]).insert("on_incomplete_caseworker".into(), "focal_point".into());
        let fp = table(t, &["primero", "focal_point"]);
        fp.insert("name".into(), "Focal point".into());
        fp.insert("email".into(), "no-at-sign".into());
        fp.insert("phone".into(), "+251".into());
    });
    let e = load_table(t, &example_env()).unwrap_err();
    assert_eq!(
        paths(&e),
        ["primero.focal_point.position", "primero.focal_point.email"],
        "{e}"
    );

    let t = example_with(|t| {
        table(t, &["primero"]).insert("on_incomplete_caseworker".into(), "focal_point".into());
        let fp = table(t, &["primero", "focal_point"]);
        for (k, v) in [
            ("name", "FP"),
            ("position", "CPO"),
            ("email", "fp@example.org"),
            ("phone", "+251"),
        ] {
            fp.insert(k.into(), v.into());
        }
    });
    let c = load_table(t, &example_env()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.primero.on_incomplete_caseworker,
        CaseworkerPolicy::FocalPoint
    );
    // A person's contact details stay out of Debug output.
    assert!(!format!("{c:?}").contains("fp@example.org"));
    assert_eq!(c.primero.focal_point.unwrap().email, "fp@example.org");
}

#[test]
fn declared_values_make_maps_total_and_reverse_maps_unambiguous() {
    let t = example_with(|t| {
        let d = table(t, &["declared"]);
        d.insert(
            "primero_sexes".into(),
            toml::Value::Array(vec!["female".into(), "intersex".into()]),
        );
        d.insert(
            "progres_sex_codes".into(),
            toml::Value::Array(vec![125080000.into(), 125080009.into()]),
        );
        d.insert(
            "primero_protection_concerns".into(),
            toml::Value::Array(vec!["orphan".into(), "new_concern".into()]),
        );
        d.insert(
            "progres_languages".into(),
            toml::Value::Array(vec!["Nuer".into(), "Lingala".into()]),
        );
    });
    let e = load_table(t, &example_env()).unwrap_err();
    let msgs: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("codes.sex:") && m.contains("`125080009`")),
        "{e}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("codes.sex:") && m.contains("`intersex`")),
        "{e}"
    );
    assert!(msgs.iter().any(
        |m| m.starts_with("maps.protection_concern_to_specific_need:")
            && m.contains("`new_concern`")
    ));
    // Languages have a fallback, so the map is total over any declared language.
    assert!(!msgs
        .iter()
        .any(|m| m.starts_with("maps.language_to_primero")));
    assert_eq!(e.problems.len(), 3, "{e}");
}

#[test]
fn status_codes_default_and_must_stay_distinct() {
    let t = example_with(|t| {
        t.get_mut("codes")
            .unwrap()
            .as_table_mut()
            .unwrap()
            .remove("transfer_status");
        table(t, &["codes", "interoperability_referral_status"])
            .insert("synced_with_primero".into(), 125080001.into());
    });
    let e = load_table(t, &example_env()).unwrap_err();
    assert_eq!(
        paths(&e),
        ["codes.interoperability_referral_status.synced_with_primero"],
        "{e}"
    );
    assert!(e.problems[0].message.contains("`accepted`"));
}

#[test]
fn operators_need_argon2_hashes() {
    let good = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Nrr0ESV5Dg5uPvymsF8Gx7FQ0d5nFGw/2zYlVBMh8Bk";
    let t = example_with(|t| {
        let op = |name: &str, hash: &str| {
            let mut o = toml::Table::new();
            o.insert("name".into(), name.into());
            o.insert("password_hash".into(), hash.into());
            toml::Value::Table(o)
        };
        table(t, &["web"]).insert(
            "operators".into(),
            toml::Value::Array(vec![
                op("alice", good),
                op("bob", "plaintext"),
                op("alice", good),
            ]),
        );
    });
    let e = load_table(t, &example_env()).unwrap_err();
    assert_eq!(
        paths(&e),
        ["web.operators[1].password_hash", "web.operators[2].name"],
        "{e}"
    );
    assert!(!e.to_string().contains("plaintext"));
}

#[test]
fn syntax_errors_give_a_position_but_not_the_line() {
    let e = load_str(
        "[ping]\npassword = \"hunter2\nbase_url = 1\n",
        &BTreeMap::new(),
    )
    .unwrap_err();
    assert_eq!(e.problems.len(), 1);
    assert!(e.problems[0].path.starts_with("line 2"), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[test]
fn demo_config_targets_the_given_endpoints() {
    let c = demo_config(
        "http://127.0.0.1:40001",
        "http://127.0.0.1:40001/primespingb2cuat.onmicrosoft.com/b2c_1_msawe-primes-ping-test-apim-rpocuf/oauth2/v2.0/token",
        "http://127.0.0.1:40002",
        "sqlite::memory:",
    );
    assert_eq!(c.ping.base_url.port(), Some(40001));
    assert_eq!(c.primero.base_url.port(), Some(40002));
    assert_eq!(c.ledger.url.expose_secret(), "sqlite::memory:");
    assert_eq!(c.ledger.kind, LedgerKind::Sqlite);
    assert_eq!(c.ping.password.expose_secret(), sim_defaults::PING_PASSWORD);
    assert_eq!(
        c.primero.password.expose_secret(),
        sim_defaults::PRIMERO_PASSWORD
    );
    assert_eq!(c.maps, Maps::gambella());
    assert!(c.flows.iter().all(|f| f.enabled));
    let line = summary(&c);
    assert!(line.contains("http://127.0.0.1:40001/"), "{line}");
    assert!(!line.contains(sim_defaults::PING_PASSWORD));
}

#[test]
fn load_reads_a_file_and_reports_an_unreadable_one() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.toml");
    let e = load(&missing).unwrap_err();
    assert_eq!(e.problems[0].path, missing.display().to_string());
    assert!(e.problems[0].message.contains("cannot read"));
}

#[test]
fn start_from_is_a_timestamp_a_date_or_a_duration_back() {
    let now = Utc.with_ymd_and_hms(2026, 11, 30, 6, 0, 0).unwrap();
    let ago = parse_start_from("7d").unwrap();
    assert_eq!(
        ago.resolve(now),
        Utc.with_ymd_and_hms(2026, 11, 23, 6, 0, 0).unwrap()
    );
    let at = parse_start_from("2026-11-01T02:00:00+02:00").unwrap();
    assert_eq!(
        at.resolve(now),
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
    );
    let day = parse_start_from("2026-10-15").unwrap();
    assert_eq!(
        day.resolve(now),
        Utc.with_ymd_and_hms(2026, 10, 15, 0, 0, 0).unwrap()
    );
    assert!(parse_start_from("yesterday-ish").is_err());

    // A flow's own start_from overrides the service's; an unquoted TOML date-time works.
    let text = EXAMPLE_TOML.replace(
        "# start_from = \"2026-11-01T00:00:00Z\"",
        "start_from = 2026-11-01T00:00:00Z",
    );
    let c = load_str(&text, &example_env()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.flow("1.1").start_from,
        StartFrom::At(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap())
    );
    assert_eq!(c.flow("1.2").start_from, c.service.start_from);
}
