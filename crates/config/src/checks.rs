//! Semantic checks of the value maps (flows.md, "Configuration that is per deployment"):
//! maps a running flow needs must be present, total over the values the deployment declares,
//! with values in their codomain (GUIDs, known categories, known service types), and the sex
//! map must be injective because 2.1 reads it backwards.

use std::collections::BTreeMap;

use pp_mapping::Maps;

use crate::model::Declared;
use crate::problems::join;
use crate::reader::{guid_message, parse_guid, Ctx};

const SEX: &str = "codes.sex";
const INTERVENTION: &str = "maps.intervention_type_to_service";
const SERVICE: &str = "maps.service_to_progres";
const LANG_TO_PRIMERO: &str = "maps.language_to_primero";
const LANG_TO_PROGRES: &str = "maps.language_to_progres";
const CONCERNS: &str = "maps.protection_concern_to_specific_need";
const CATEGORIES: &str = "specific_need_categories";

pub(crate) fn check_maps(
    cx: &mut Ctx<'_>,
    maps: &Maps,
    declared: &Declared,
    enabled: &dyn Fn(&str) -> bool,
) {
    check_present(cx, maps, enabled);
    check_total(cx, maps, declared);
    check_codomains(cx, maps);
    check_sex_injective(cx, &maps.sex_progres_to_primero);
}

/// Which enabled flows need each map; an empty map needed by one is a problem.
fn check_present(cx: &mut Ctx<'_>, maps: &Maps, enabled: &dyn Fn(&str) -> bool) {
    let needs: [(&str, bool, &[&str]); 7] = [
        (
            INTERVENTION,
            maps.intervention_type_to_service.is_empty(),
            &["referrals-to-primero"],
        ),
        (
            LANG_TO_PRIMERO,
            maps.language_to_primero.is_empty(),
            &["referrals-to-primero"],
        ),
        (
            SEX,
            maps.sex_progres_to_primero.is_empty(),
            &["referrals-to-primero", "referrals-to-progres"],
        ),
        (
            SERVICE,
            maps.service_to_progres.is_empty(),
            &["referrals-to-progres"],
        ),
        (
            LANG_TO_PROGRES,
            maps.language_to_progres.is_empty(),
            &["referrals-to-progres"],
        ),
        (
            CONCERNS,
            maps.protection_concern_to_category.is_empty(),
            &["referrals-to-progres"],
        ),
        (
            CATEGORIES,
            maps.specific_need_categories.is_empty(),
            &["referrals-to-progres"],
        ),
    ];
    for (path, empty, users) in needs {
        if !empty {
            continue;
        }
        let using: Vec<&str> = users.iter().copied().filter(|f| enabled(f)).collect();
        if !using.is_empty() {
            cx.push(
                path,
                format!(
                    "is missing or empty, and flow {} needs it (mapping-gambella.toml has the \
                     reference deployment's values)",
                    using.join(" and ")
                ),
            );
        }
    }
}

fn quoted<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    values
        .into_iter()
        .map(|v| format!("`{v}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One problem per map naming every declared value it lacks.
fn require_keys(
    cx: &mut Ctx<'_>,
    map_path: &str,
    has: impl Fn(&str) -> bool,
    declared: Option<&Vec<String>>,
    declared_key: &str,
    fallback: bool,
) {
    let Some(declared) = declared else { return };
    if fallback {
        return;
    }
    let missing: Vec<&str> = declared
        .iter()
        .map(String::as_str)
        .filter(|v| !has(v))
        .collect();
    if !missing.is_empty() {
        cx.push(
            map_path,
            format!(
                "is not total: no entry for {} (declared in declared.{declared_key})",
                quoted(missing)
            ),
        );
    }
}

fn check_total(cx: &mut Ctx<'_>, maps: &Maps, d: &Declared) {
    let f = &maps.fallbacks;
    require_keys(
        cx,
        INTERVENTION,
        |v| maps.intervention_type_to_service.contains_key(v),
        d.progres_intervention_types.as_ref(),
        "progres_intervention_types",
        f.intervention_type_to_service.is_some(),
    );
    require_keys(
        cx,
        SERVICE,
        |v| maps.service_to_progres.contains_key(v),
        d.primero_service_types.as_ref(),
        "primero_service_types",
        f.service_to_progres.is_some(),
    );
    require_keys(
        cx,
        LANG_TO_PRIMERO,
        |v| maps.language_to_primero.contains_key(v),
        d.progres_languages.as_ref(),
        "progres_languages",
        f.language_to_primero.is_some(),
    );
    require_keys(
        cx,
        CONCERNS,
        |v| maps.protection_concern_to_category.contains_key(v),
        d.primero_protection_concerns.as_ref(),
        "primero_protection_concerns",
        false,
    );
    // Sex: forward over the proGres codes (compared and named as text), backward over the
    // Primero values.
    let sex_codes: Vec<String> = d.progres_sex_codes.iter().map(i64::to_string).collect();
    require_keys(
        cx,
        SEX,
        |v| {
            maps.sex_progres_to_primero
                .keys()
                .any(|c| c.to_string() == v)
        },
        Some(&sex_codes),
        "progres_sex_codes",
        f.sex_progres_to_primero.is_some(),
    );
    require_keys(
        cx,
        SEX,
        |v| maps.sex_progres_to_primero.values().any(|s| s == v),
        d.primero_sexes.as_ref(),
        "primero_sexes (2.1 reads the sex map backwards)",
        false,
    );
}

fn check_codomains(cx: &mut Ctx<'_>, maps: &Maps) {
    // Service GUIDs and category GUIDs.
    for (path, map) in [
        (SERVICE, &maps.service_to_progres),
        (CATEGORIES, &maps.specific_need_categories),
    ] {
        for (k, v) in map {
            if parse_guid(v).is_none() {
                cx.push(&join(path, k), guid_message(v));
            }
        }
    }
    if let Some(g) = &maps.fallbacks.service_to_progres {
        if parse_guid(g).is_none() {
            cx.push("fallbacks.service_to_progres", guid_message(g));
        }
    }
    // Concerns name a category that has a GUID.
    for (k, category) in &maps.protection_concern_to_category {
        if !maps.specific_need_categories.contains_key(category) {
            cx.push(
                &join(CONCERNS, k),
                format!("category `{category}` is not listed in [{CATEGORIES}]"),
            );
        }
    }
    // Primero language keys are those the reverse language map knows.
    if !maps.language_to_progres.is_empty() {
        for (k, v) in &maps.language_to_primero {
            if !maps.language_to_progres.contains_key(v) {
                cx.push(
                    &join(LANG_TO_PRIMERO, k),
                    format!("language key `{v}` is not a key of [{LANG_TO_PROGRES}]"),
                );
            }
        }
        if let Some(v) = &maps.fallbacks.language_to_primero {
            if !maps.language_to_progres.contains_key(v) {
                cx.push(
                    "fallbacks.language_to_primero",
                    format!("language key `{v}` is not a key of [{LANG_TO_PROGRES}]"),
                );
            }
        }
    }
    // A sex fallback must be one of the Primero sex values.
    if let Some(v) = &maps.fallbacks.sex_progres_to_primero {
        if !maps.sex_progres_to_primero.is_empty()
            && !maps.sex_progres_to_primero.values().any(|s| s == v)
        {
            cx.push(
                "fallbacks.sex_progres_to_primero",
                format!("`{v}` is not one of the Primero values in [{SEX}]"),
            );
        }
    }
}

fn check_sex_injective(cx: &mut Ctx<'_>, sex: &BTreeMap<i64, String>) {
    let mut by_value: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (code, value) in sex {
        by_value.entry(value.as_str()).or_default().push(*code);
    }
    for (value, codes) in by_value {
        if codes.len() > 1 {
            let codes: Vec<String> = codes.iter().map(i64::to_string).collect();
            cx.push(
                SEX,
                format!(
                    "value `{value}` is given to codes {}: the reverse map used by \
                     referrals-to-progres would be ambiguous",
                    codes.join(" and ")
                ),
            );
        }
    }
}
