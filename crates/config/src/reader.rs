//! A walker over the parsed TOML tree that reads typed values, records every problem with
//! its key path instead of stopping at the first, and reports keys nobody asked for as
//! unknown. Values set by environment overrides are remembered so that a problem can name
//! the variable, and so that a string key given `1234` by the environment still reads as text.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::{Table, Value};

use crate::problems::{join, Problem};

/// Where an environment override put a value.
pub(crate) struct Origin {
    pub var: String,
    pub raw: String,
}

/// The state of one loading pass: the injected environment and the problems so far.
pub(crate) struct Ctx<'e> {
    pub problems: Vec<Problem>,
    pub env: &'e BTreeMap<String, String>,
    pub origins: BTreeMap<String, Origin>,
}

impl<'e> Ctx<'e> {
    pub fn new(env: &'e BTreeMap<String, String>) -> Self {
        Ctx {
            problems: Vec::new(),
            env,
            origins: BTreeMap::new(),
        }
    }

    /// Records a problem at `path`, naming the environment variable that set it, if any.
    pub fn push(&mut self, path: &str, message: impl Into<String>) {
        let mut message = message.into();
        if let Some(origin) = self.origins.get(path) {
            message.push_str(&format!(" (set by environment variable {})", origin.var));
        }
        self.problems.push(Problem {
            path: path.to_owned(),
            message,
        });
    }

    pub fn env_raw(&self, path: &str) -> Option<&str> {
        self.origins.get(path).map(|o| o.raw.as_str())
    }
}

/// "a string", "an integer", ... for messages.
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// Reads a string; a date-time is taken as its text (for `start_from`), and a scalar set by
/// an environment override is taken as the variable's text.
pub(crate) fn as_string(cx: &mut Ctx<'_>, path: &str, v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Datetime(d) => Some(d.to_string()),
        other => {
            if let Some(raw) = cx.env_raw(path) {
                return Some(raw.to_owned());
            }
            cx.push(
                path,
                format!("expected a string, found {}", type_name(other)),
            );
            None
        }
    }
}

pub(crate) fn as_int(cx: &mut Ctx<'_>, path: &str, v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        other => {
            cx.push(
                path,
                format!("expected an integer, found {}", type_name(other)),
            );
            None
        }
    }
}

/// Reads a list of strings; an environment override may also give `a,b,c`.
pub(crate) fn as_string_list(cx: &mut Ctx<'_>, path: &str, v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    other => {
                        ok = false;
                        cx.push(
                            &format!("{path}[{i}]"),
                            format!("expected a string, found {}", type_name(other)),
                        );
                    }
                }
            }
            ok.then_some(out)
        }
        Value::String(s) if cx.env_raw(path).is_some() => Some(
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        other => {
            cx.push(
                path,
                format!("expected an array of strings, found {}", type_name(other)),
            );
            None
        }
    }
}

/// One table of the configuration being read. Every key read through it becomes known;
/// [`Section::finish`] reports the others as unknown.
pub(crate) struct Section<'a> {
    pub path: String,
    pub table: Option<&'a Table>,
    known: Vec<&'static str>,
}

impl<'a> Section<'a> {
    pub fn new(path: impl Into<String>, table: Option<&'a Table>) -> Self {
        Section {
            path: path.into(),
            table,
            known: Vec::new(),
        }
    }

    pub fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Whether the table is present in the file at all.
    pub fn present(&self) -> bool {
        self.table.is_some()
    }

    /// The raw value of `key` (marks the key as known).
    pub fn value(&mut self, key: &'static str) -> Option<&'a Value> {
        self.known.push(key);
        self.table.and_then(|t| t.get(key))
    }

    /// The sub-table `key`; absent gives an empty section, a non-table a problem.
    pub fn child(&mut self, cx: &mut Ctx<'_>, key: &'static str) -> Section<'a> {
        let path = self.key_path(key);
        match self.value(key) {
            Some(Value::Table(t)) => Section::new(path, Some(t)),
            Some(other) => {
                cx.push(
                    &path,
                    format!("expected a table, found {}", type_name(other)),
                );
                Section::new(path, None)
            }
            None => Section::new(path, None),
        }
    }

    /// Reports every key of the table that was never asked for.
    pub fn finish(self, cx: &mut Ctx<'_>) {
        let Some(table) = self.table else { return };
        for key in table.keys() {
            if self.known.iter().any(|k| k == key) {
                continue;
            }
            let hint = self
                .known
                .iter()
                .filter(|k| edit_distance(k, key) <= 2)
                .min_by_key(|k| edit_distance(k, key))
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            cx.push(&self.key_path(key), format!("unknown key{hint}"));
        }
    }

    pub fn opt_string(&mut self, cx: &mut Ctx<'_>, key: &'static str) -> Option<String> {
        let path = self.key_path(key);
        let v = self.value(key)?;
        let s = as_string(cx, &path, v)?;
        if s.trim().is_empty() {
            cx.push(&path, "must not be empty");
            return None;
        }
        Some(s)
    }

    pub fn req_string(&mut self, cx: &mut Ctx<'_>, key: &'static str) -> Option<String> {
        let path = self.key_path(key);
        if self.table.and_then(|t| t.get(key)).is_none() {
            self.known.push(key);
            cx.push(&path, "is required");
            return None;
        }
        self.opt_string(cx, key)
    }

    pub fn string_or(&mut self, cx: &mut Ctx<'_>, key: &'static str, default: &str) -> String {
        self.opt_string(cx, key)
            .unwrap_or_else(|| default.to_owned())
    }

    pub fn bool_or(&mut self, cx: &mut Ctx<'_>, key: &'static str, default: bool) -> bool {
        let path = self.key_path(key);
        match self.value(key) {
            None => default,
            Some(Value::Boolean(b)) => *b,
            Some(other) => {
                cx.push(
                    &path,
                    format!("expected true or false, found {}", type_name(other)),
                );
                default
            }
        }
    }

    /// An integer in `min..=max`, or `default` when absent.
    pub fn uint_or(
        &mut self,
        cx: &mut Ctx<'_>,
        key: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> u64 {
        let path = self.key_path(key);
        let Some(v) = self.value(key) else {
            return default;
        };
        let Some(i) = as_int(cx, &path, v) else {
            return default;
        };
        match u64::try_from(i) {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                cx.push(&path, format!("must be between {min} and {max}, found {i}"));
                default
            }
        }
    }

    pub fn secs_or(
        &mut self,
        cx: &mut Ctx<'_>,
        key: &'static str,
        default: u64,
        min: u64,
    ) -> Duration {
        Duration::from_secs(self.uint_or(cx, key, default, min, 10 * 365 * 24 * 3600))
    }

    pub fn millis_or(
        &mut self,
        cx: &mut Ctx<'_>,
        key: &'static str,
        default: u64,
        min: u64,
    ) -> Duration {
        Duration::from_millis(self.uint_or(cx, key, default, min, 24 * 3600 * 1000))
    }

    /// One of `choices` (by name), or `default` when absent.
    pub fn choice_or<T: Copy>(
        &mut self,
        cx: &mut Ctx<'_>,
        key: &'static str,
        choices: &[(&str, T)],
        default: T,
    ) -> T {
        let path = self.key_path(key);
        let Some(s) = self.opt_string(cx, key) else {
            return default;
        };
        match choices
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&s))
        {
            Some((_, t)) => *t,
            None => {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                cx.push(&path, format!("must be one of {}", names.join(", ")));
                default
            }
        }
    }

    pub fn opt_string_list(&mut self, cx: &mut Ctx<'_>, key: &'static str) -> Option<Vec<String>> {
        let path = self.key_path(key);
        let v = self.value(key)?;
        as_string_list(cx, &path, v)
    }

    /// A required http(s) URL with a host.
    pub fn req_url(&mut self, cx: &mut Ctx<'_>, key: &'static str) -> Option<url::Url> {
        let path = self.key_path(key);
        let text = self.req_string(cx, key)?;
        match url::Url::parse(&text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Some(u),
            Ok(_) => {
                cx.push(&path, "must be an http:// or https:// URL with a host");
                None
            }
            Err(e) => {
                cx.push(&path, format!("is not a valid URL: {e}"));
                None
            }
        }
    }

    /// A GUID in the 8-4-4-4-12 form proGres uses.
    pub fn req_guid(&mut self, cx: &mut Ctx<'_>, key: &'static str) -> Option<uuid::Uuid> {
        let path = self.key_path(key);
        let text = self.req_string(cx, key)?;
        match parse_guid(&text) {
            Some(g) => Some(g),
            None => {
                cx.push(&path, guid_message(&text));
                None
            }
        }
    }
}

/// Parses a hyphenated GUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
pub(crate) fn parse_guid(text: &str) -> Option<uuid::Uuid> {
    if text.len() != 36 {
        return None;
    }
    uuid::Uuid::try_parse(text).ok()
}

pub(crate) fn guid_message(text: &str) -> String {
    format!("`{text}` is not a GUID (expected 8-4-4-4-12 hexadecimal digits)")
}

/// Levenshtein distance, for "did you mean" hints on unknown keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("base_url", "base_url"), 0);
        assert_eq!(edit_distance("base_url", "baseurl"), 1);
        assert_eq!(edit_distance("base_url", "bsae_url"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn guid_must_be_hyphenated() {
        assert!(parse_guid("577ccdf6-86de-e811-80d8-001dd8b71fe3").is_some());
        assert!(parse_guid("577ccdf686dee81180d8001dd8b71fe3").is_none());
        assert!(parse_guid("577ccdf6-86de-e811-80d8-001dd8b71fzz").is_none());
    }
}
