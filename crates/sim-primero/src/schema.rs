//! Write-side form handling: drop fields that are not writable (strong params), validate the
//! rest against the form schema ("Invalid Record JSON" with JSON pointers) and normalise
//! date-times.

use crate::options::FieldType;
use crate::time;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Fields ignored on update (`UPDATE_FORBIDDEN*`).
pub const UPDATE_FORBIDDEN: [&str; 7] = [
    "id",
    "unique_identifier",
    "unique_id",
    "short_id",
    "created_by",
    "case_id",
    "case_id_display",
];

/// Core fields writable without a module (and their types).
pub fn core_fields(modules: &[String]) -> BTreeMap<String, FieldType> {
    let mut c = BTreeMap::new();
    c.insert(
        "module_id".to_string(),
        FieldType::Select {
            options: Some(modules.to_vec()),
        },
    );
    c.insert("owned_by".to_string(), FieldType::Text);
    c.insert("owned_by_agency_id".to_string(), FieldType::Text);
    c.insert(
        "status".to_string(),
        FieldType::Select {
            options: Some(
                ["open", "closed", "transferred", "duplicate"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
        },
    );
    c.insert("record_state".to_string(), FieldType::TickBox);
    c.insert("workflow".to_string(), FieldType::Text);
    c.insert("created_at".to_string(), FieldType::DateTime);
    c.insert(
        "assigned_user_names".to_string(),
        FieldType::MultiSelect { options: None },
    );
    c.insert("case_id".to_string(), FieldType::Text);
    c
}

/// Whether `s` looks like a UUID (8-4-4-4-12 hex).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 36 {
        return false;
    }
    b.iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    })
}

/// Filters `data` down to writable fields and validates them. `with_module` selects whether
/// form fields are writable (a known module is set); `update` drops `UPDATE_FORBIDDEN`.
/// Returns the filtered, normalised map or the JSON pointers of invalid values.
pub fn filter_and_validate(
    data: &Map<String, Value>,
    schema: &BTreeMap<String, FieldType>,
    core: &BTreeMap<String, FieldType>,
    with_module: bool,
    update: bool,
) -> Result<Map<String, Value>, Vec<String>> {
    let mut out = Map::new();
    let mut errors = Vec::new();
    for (k, v) in data {
        if update && UPDATE_FORBIDDEN.contains(&k.as_str()) {
            continue;
        }
        let ty = match core.get(k) {
            Some(t) => t,
            None if with_module => match schema.get(k) {
                Some(t) => t,
                None => continue,
            },
            None => continue,
        };
        let ptr = format!("/{k}");
        if let Some(v) = check(v, ty, &ptr, &mut errors) {
            out.insert(k.clone(), v);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        errors.sort();
        errors.dedup();
        Err(errors)
    }
}

fn options_ok(options: &Option<Vec<String>>, s: &str) -> bool {
    options
        .as_ref()
        .map(|o| o.iter().any(|x| x == s))
        .unwrap_or(true)
}

/// Validates one value; returns the (normalised) value to store.
fn check(v: &Value, ty: &FieldType, ptr: &str, errors: &mut Vec<String>) -> Option<Value> {
    let mut bad = || {
        errors.push(ptr.to_string());
        None
    };
    match ty {
        FieldType::Text => match v {
            Value::String(_) | Value::Null => Some(v.clone()),
            _ => bad(),
        },
        FieldType::Integer => match v {
            Value::Null => Some(v.clone()),
            Value::Number(n) if n.is_i64() || n.is_u64() => Some(v.clone()),
            _ => bad(),
        },
        FieldType::Date => match v {
            Value::Null => Some(v.clone()),
            Value::String(s) if time::parse_date(s).is_some() => Some(v.clone()),
            _ => bad(),
        },
        FieldType::DateTime => match v {
            Value::Null => Some(v.clone()),
            Value::String(s) => match time::normalise_ts(s) {
                Some(n) => Some(Value::String(n)),
                None => bad(),
            },
            _ => bad(),
        },
        FieldType::TickBox => match v {
            Value::Bool(_) => Some(v.clone()),
            _ => bad(),
        },
        FieldType::Select { options } => match v {
            Value::Null => Some(v.clone()),
            Value::String(s) if options_ok(options, s) => Some(v.clone()),
            _ => bad(),
        },
        FieldType::MultiSelect { options } => match v {
            Value::Null => Some(v.clone()),
            Value::Array(items) => {
                if items
                    .iter()
                    .all(|i| i.as_str().map(|s| options_ok(options, s)).unwrap_or(false))
                {
                    Some(v.clone())
                } else {
                    bad()
                }
            }
            _ => bad(),
        },
        FieldType::Subform { fields } => match v {
            Value::Array(rows) => {
                let mut out_rows = Vec::with_capacity(rows.len());
                let before = errors.len();
                for (i, row) in rows.iter().enumerate() {
                    let rptr = format!("{ptr}/{i}");
                    let Some(obj) = row.as_object() else {
                        errors.push(rptr);
                        continue;
                    };
                    let mut out_row = Map::new();
                    for (k, rv) in obj {
                        let fptr = format!("{rptr}/{k}");
                        match k.as_str() {
                            "unique_id" => match rv {
                                Value::Null => {}
                                Value::String(s) if is_uuid(s) => {
                                    out_row.insert(k.clone(), rv.clone());
                                }
                                _ => errors.push(fptr),
                            },
                            "_destroy" => match rv {
                                Value::Null | Value::Bool(_) => {
                                    out_row.insert(k.clone(), rv.clone());
                                }
                                _ => errors.push(fptr),
                            },
                            _ => {
                                if let Some(ft) = fields.get(k) {
                                    if let Some(nv) = check(rv, ft, &fptr, errors) {
                                        out_row.insert(k.clone(), nv);
                                    }
                                }
                            }
                        }
                    }
                    out_rows.push(Value::Object(out_row));
                }
                if errors.len() == before {
                    Some(Value::Array(out_rows))
                } else {
                    None
                }
            }
            _ => bad(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::default_form_schema;
    use serde_json::json;

    fn run(v: Value) -> Result<Map<String, Value>, Vec<String>> {
        let core = core_fields(&["primeromodule-cp".to_string()]);
        filter_and_validate(
            v.as_object().unwrap(),
            &default_form_schema(),
            &core,
            true,
            false,
        )
    }

    #[test]
    fn pointers_name_every_invalid_value() {
        let e = run(
            json!({"age": "18", "sex": "boy", "date_of_birth": "2010-01-01T00:00:00Z",
            "services_section": [{"unique_id": "x", "service_response_day_time": "2024-01-01"}]}),
        )
        .unwrap_err();
        assert_eq!(
            e,
            vec![
                "/age",
                "/date_of_birth",
                "/services_section/0/service_response_day_time",
                "/services_section/0/unique_id",
                "/sex"
            ]
        );
    }

    #[test]
    fn unknown_fields_are_dropped_and_times_normalised() {
        let ok = run(json!({"age": 7, "nope": 1,
            "services_section": [{"service_response_day_time": "2024-01-01T10:00:00+01:00", "zz": 1}]}))
        .unwrap();
        assert!(ok.get("nope").is_none());
        assert_eq!(
            ok["services_section"][0],
            json!({"service_response_day_time": "2024-01-01T09:00:00.000Z"})
        );
    }
}
