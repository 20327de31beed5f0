//! Secret keys: a literal string, `{ env = "VAR" }` or `{ file = "/path" }` (one trailing
//! newline trimmed). Resolved straight into `SecretString`; problems name the key path and
//! the variable or file, never the value.

use secrecy::SecretString;
use toml::Value;

use crate::reader::{type_name, Ctx, Section};

/// Reads the secret at `key`; `required` makes an absent key a problem.
pub(crate) fn secret(
    cx: &mut Ctx<'_>,
    section: &mut Section<'_>,
    key: &'static str,
    required: bool,
) -> Option<SecretString> {
    let path = section.key_path(key);
    let Some(value) = section.value(key) else {
        if required {
            cx.push(
                &path,
                "is required (a string, { env = \"VAR\" } or { file = \"/path\" })",
            );
        }
        return None;
    };
    resolve(cx, &path, value)
}

/// Resolves one secret value found at `path`.
pub(crate) fn resolve(cx: &mut Ctx<'_>, path: &str, value: &Value) -> Option<SecretString> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Table(t) => {
            let mut src = Section::new(path, Some(t));
            let env = src.value("env");
            let file = src.value("file");
            src.finish(cx);
            match (env, file) {
                (Some(Value::String(var)), None) => match cx.env.get(var) {
                    Some(v) => {
                        if v.is_empty() {
                            cx.push(path, format!("environment variable {var} is empty"));
                            return None;
                        }
                        v.clone()
                    }
                    None => {
                        cx.push(path, format!("environment variable {var} is not set"));
                        return None;
                    }
                },
                (None, Some(Value::String(file))) => match std::fs::read_to_string(file) {
                    Ok(text) => {
                        let trimmed = text
                            .strip_suffix('\n')
                            .map(|t| t.strip_suffix('\r').unwrap_or(t))
                            .unwrap_or(&text);
                        if trimmed.is_empty() {
                            cx.push(path, format!("file {file} is empty"));
                            return None;
                        }
                        trimmed.to_owned()
                    }
                    Err(e) => {
                        cx.push(path, format!("file {file} cannot be read: {}", e.kind()));
                        return None;
                    }
                },
                (Some(_), Some(_)) => {
                    cx.push(path, "give either `env` or `file`, not both");
                    return None;
                }
                (None, None) => {
                    cx.push(path, "a secret table needs `env` or `file`");
                    return None;
                }
                (Some(other), None) | (None, Some(other)) => {
                    cx.push(
                        path,
                        format!(
                            "expected the name of a variable or file as a string, found {}",
                            type_name(other)
                        ),
                    );
                    return None;
                }
            }
        }
        _ if cx.env_raw(path).is_some() => cx.env_raw(path).unwrap_or_default().to_owned(),
        other => {
            cx.push(
                path,
                format!(
                    "expected a string, {{ env = \"VAR\" }} or {{ file = \"/path\" }}, found {}",
                    type_name(other)
                ),
            );
            return None;
        }
    };
    if text.is_empty() {
        cx.push(path, "must not be empty");
        return None;
    }
    Some(SecretString::from(text))
}
