//! Environment overrides: `PING_PRIMERO__<SECTION>__<KEY>=value` sets `section.key` before
//! validation. Double underscore nests, names are case-insensitive, and `_` in a name also
//! matches `-` (flow names: `PING_PRIMERO__FLOWS__REFERRALS_TO_PRIMERO__ENABLED`). Values are
//! read as TOML values when they parse (`false`, `50`, `["a","b"]`), else as plain strings.
//! The environment arrives as a map so that tests need not touch the process environment.

use std::collections::BTreeMap;

use toml::{Table, Value};

use crate::problems::join;
use crate::reader::{Ctx, Origin};

/// The prefix of override variables (matched case-insensitively).
pub const ENV_PREFIX: &str = "PING_PRIMERO__";

/// Applies every override found in `cx.env` to `root`, in variable-name order.
pub(crate) fn apply_overrides(root: &mut Table, cx: &mut Ctx<'_>) {
    let env: &BTreeMap<String, String> = cx.env;
    for (var, raw) in env {
        let Some(rest) = strip_prefix_ci(var, ENV_PREFIX) else {
            continue;
        };
        let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if segments.iter().any(String::is_empty) {
            cx.push(var, "malformed override name (empty segment between `__`)");
            continue;
        }
        let value = parse_value(raw);
        match set_path(root, &segments, value) {
            Ok(path) => {
                cx.origins.insert(
                    path,
                    Origin {
                        var: var.clone(),
                        raw: raw.clone(),
                    },
                );
            }
            Err(blocked) => cx.push(
                var,
                format!("cannot override: `{blocked}` is not a table in the configuration"),
            ),
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// A TOML value when `raw` parses as one, else the string itself.
fn parse_value(raw: &str) -> Value {
    toml::from_str::<Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

fn normalize(key: &str) -> String {
    key.to_ascii_lowercase().replace('-', "_")
}

/// Sets the value at `segments`, matching existing keys loosely; returns the key path set,
/// or the path of a non-table value that is in the way.
fn set_path(root: &mut Table, segments: &[String], value: Value) -> Result<String, String> {
    let mut table = root;
    let mut path = String::new();
    for (i, segment) in segments.iter().enumerate() {
        let existing = table
            .keys()
            .find(|k| normalize(k) == normalize(segment))
            .cloned();
        let key = existing.unwrap_or_else(|| {
            if path == "flows" && i == 1 {
                segment.replace('_', "-")
            } else {
                segment.clone()
            }
        });
        path = join(&path, &key);
        if i + 1 == segments.len() {
            table.insert(key, value);
            return Ok(path);
        }
        let next = table
            .entry(key)
            .or_insert_with(|| Value::Table(Table::new()));
        match next {
            Value::Table(t) => table = t,
            _ => return Err(path),
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_as_toml_when_they_can() {
        assert_eq!(parse_value("false"), Value::Boolean(false));
        assert_eq!(parse_value("50"), Value::Integer(50));
        assert_eq!(
            parse_value("http://127.0.0.1:1/x"),
            Value::String("http://127.0.0.1:1/x".into())
        );
        assert_eq!(parse_value("\"quoted\""), Value::String("quoted".into()));
        assert!(matches!(parse_value("[\"a\", \"b\"]"), Value::Array(a) if a.len() == 2));
    }

    #[test]
    fn flow_segments_become_dashed_and_existing_keys_match_loosely() {
        let mut root: Table =
            toml::from_str("[flows.referrals-to-primero]\nenabled = true\n").unwrap();
        let p = set_path(
            &mut root,
            &[
                "flows".into(),
                "referrals_to_primero".into(),
                "enabled".into(),
            ],
            Value::Boolean(false),
        )
        .unwrap();
        assert_eq!(p, "flows.referrals-to-primero.enabled");
        assert_eq!(
            root["flows"]["referrals-to-primero"]["enabled"],
            Value::Boolean(false)
        );
        let p = set_path(
            &mut root,
            &[
                "flows".into(),
                "decisions_to_primero".into(),
                "schedule".into(),
            ],
            Value::String("0 1 * * *".into()),
        )
        .unwrap();
        assert_eq!(p, "flows.decisions-to-primero.schedule");
    }
}
