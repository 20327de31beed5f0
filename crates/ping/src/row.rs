//! One row of a PING retrieval: the flat JSON object with dotted alias keys
//! (`progres_individual.indiv.progres_givenname`) exactly as PING sends it.
//!
//! Rows carry personal data, so `Debug` prints the keys only. Typed views of the rows of each
//! shipping process live in [`crate::rows`].

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Map, Value};

/// A retrieval row. Null attributes are omitted by PING; a key with a JSON `null` is treated
/// as absent by every getter.
#[derive(Clone, PartialEq, Default)]
pub struct Row(Map<String, Value>);

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Row")
            .field("keys", &self.0.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl From<Map<String, Value>> for Row {
    fn from(map: Map<String, Value>) -> Self {
        Row(map)
    }
}

impl Row {
    pub fn new(map: Map<String, Value>) -> Self {
        Row(map)
    }

    /// A row from a JSON value; `None` unless it is an object.
    pub fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Object(m) => Some(Row(m)),
            _ => None,
        }
    }

    /// The raw value of `key`, `None` when absent or JSON null.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// True when `key` holds a non-null value.
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A string value (not a number converted); `None` when absent, null or another type.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// A value as text: strings as they are, numbers and booleans printed; `None` for
    /// absent, null, arrays and objects.
    pub fn get_text(&self, key: &str) -> Option<String> {
        match self.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// An integer: a JSON integer, or a string holding one (option codes are sometimes sent
    /// as strings). `None` when absent or not an integer.
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A date: `YYYY-MM-DD`, or the date part of a date-time (`2023-11-02T10:00:00Z`).
    pub fn get_date(&self, key: &str) -> Option<NaiveDate> {
        parse_date(self.get_str(key)?)
    }

    /// A UTC timestamp: RFC 3339, a naive date-time (read as UTC) or a bare date (midnight UTC).
    pub fn get_datetime(&self, key: &str) -> Option<DateTime<Utc>> {
        parse_datetime(self.get_str(key)?)
    }

    /// Key names, in PING's order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

/// `YYYY-MM-DD`, or the date part of any date-time that starts with one.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d);
    }
    if let Some(dt) = parse_datetime(s) {
        return Some(dt.date_naive());
    }
    s.get(..10)
        .filter(|_| {
            s.as_bytes()
                .get(10)
                .is_some_and(|b| *b == b'T' || *b == b' ')
        })
        .and_then(|p| NaiveDate::parse_from_str(p, "%Y-%m-%d").ok())
}

/// RFC 3339 (any offset, converted to UTC), a naive date-time taken as UTC, or a bare date
/// taken as midnight UTC.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(dt.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Row {
        Row::new(v.as_object().unwrap().clone())
    }

    #[test]
    fn getters() {
        let r = row(json!({
            "a": "x", "n": 125080000, "ns": " 42 ", "d": "2023-11-02",
            "dt": "2023-11-02T10:30:00+02:00", "nil": null
        }));
        assert_eq!(r.get_str("a"), Some("x"));
        assert_eq!(r.get_str("n"), None);
        assert_eq!(r.get_text("n").as_deref(), Some("125080000"));
        assert_eq!(r.get_i64("n"), Some(125080000));
        assert_eq!(r.get_i64("ns"), Some(42));
        assert_eq!(r.get_i64("a"), None);
        assert_eq!(r.get_date("d"), NaiveDate::from_ymd_opt(2023, 11, 2));
        assert_eq!(r.get_date("dt"), NaiveDate::from_ymd_opt(2023, 11, 2));
        assert_eq!(
            r.get_datetime("dt").unwrap().to_rfc3339(),
            "2023-11-02T08:30:00+00:00"
        );
        assert_eq!(
            r.get_datetime("d").unwrap().to_rfc3339(),
            "2023-11-02T00:00:00+00:00"
        );
        assert!(!r.has("nil"));
        assert!(r.get("nil").is_none());
    }

    #[test]
    fn debug_prints_keys_only() {
        let r = row(json!({"progres_individual.indiv.progres_givenname": "Lindah"}));
        let d = format!("{r:?}");
        assert!(d.contains("progres_givenname"));
        assert!(!d.contains("Lindah"));
    }

    #[test]
    fn dates_with_time_parts() {
        assert_eq!(
            parse_date("2010-05-06 00:00:00"),
            NaiveDate::from_ymd_opt(2010, 5, 6)
        );
        assert_eq!(
            parse_date("2010-05-06T00:00:00.000Z"),
            NaiveDate::from_ymd_opt(2010, 5, 6)
        );
        assert_eq!(parse_date("06/05/2010"), None);
    }
}
