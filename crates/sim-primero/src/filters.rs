//! `GET /api/v2/cases` query filters: which params are filters, how values are
//! "destringified" (`a,b` any-of, `x..y` ranges, `f[0]=v` lists, booleans, integers, dates,
//! times) and how they match stored values (second precision, inclusive; identifier fields
//! exact and case-sensitive).

use crate::time;
use chrono::{DateTime, NaiveDate, Timelike, Utc};
use serde_json::Value;
use std::collections::BTreeMap;

/// Identifier fields: exact, case-sensitive string match, never destringified.
pub const IDENTIFIER_FIELDS: [&str; 8] = [
    "id",
    "case_id",
    "case_id_display",
    "short_id",
    "unique_identifier",
    "unhcr_id_no",
    "unhcr_individual_no",
    "national_id_no",
];

/// System fields that are filterable besides the form fields.
pub const SYSTEM_FILTER_FIELDS: [&str; 18] = [
    "status",
    "record_state",
    "owned_by",
    "last_updated_at",
    "created_at",
    "associated_user_names",
    "assigned_user_names",
    "module_id",
    "last_updated_by",
    "created_by",
    "owned_by_agency_id",
    "owned_by_groups",
    "workflow",
    "referred_users",
    "transferred_to_users",
    "posted_at",
    "registration_date",
    "date_of_birth",
];

/// Params that steer the list rather than filter it.
pub const RESERVED_PARAMS: [&str; 10] = [
    "page",
    "per",
    "order_by",
    "order",
    "fields",
    "query",
    "phonetic",
    "phone_number",
    "id_search",
    "locale",
];

/// A destringified filter value.
#[derive(Clone, Debug, PartialEq)]
pub enum FVal {
    /// `true` / `false`.
    Bool(bool),
    /// Digits only.
    Int(i64),
    /// `YYYY-MM-DD`.
    Date(NaiveDate),
    /// A timestamp.
    Time(DateTime<Utc>),
    /// Anything else.
    Str(String),
}

/// One filter condition on a field.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    /// Exact string equality with any of the values (identifier fields).
    Exact(Vec<String>),
    /// Equality with any of the values.
    AnyOf(Vec<(FVal, String)>),
    /// Inclusive range; `None` = open end.
    Range(Option<FVal>, Option<FVal>),
}

/// Parses a raw value like Primero's `DestringifyService`.
pub fn destringify(s: &str) -> FVal {
    if s == "true" {
        return FVal::Bool(true);
    }
    if s == "false" {
        return FVal::Bool(false);
    }
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = s.parse::<i64>() {
            return FVal::Int(i);
        }
    }
    if let Some(d) = time::parse_date(s) {
        return FVal::Date(d);
    }
    if let Some(t) = time::parse_ts(s) {
        return FVal::Time(t);
    }
    FVal::Str(s.to_string())
}

/// Builds the filters from query params; params that are not filterable are dropped.
pub fn build(
    params: &[(String, String)],
    filterable: &dyn Fn(&str) -> bool,
) -> Vec<(String, Cond)> {
    // field -> (is_list, values)
    let mut grouped: BTreeMap<String, (bool, Vec<String>)> = BTreeMap::new();
    for (k, v) in params {
        let (base, list) = match k.find('[') {
            Some(i) if k.ends_with(']') => (&k[..i], true),
            _ => (k.as_str(), false),
        };
        if RESERVED_PARAMS.contains(&base) || !filterable(base) {
            continue;
        }
        let e = grouped.entry(base.to_string()).or_insert((list, vec![]));
        e.0 |= list;
        e.1.push(v.clone());
    }
    let mut out = Vec::new();
    for (field, (list, values)) in grouped {
        let ident = IDENTIFIER_FIELDS.contains(&field.as_str());
        let cond = if ident {
            Cond::Exact(values)
        } else if list || values.len() > 1 {
            Cond::AnyOf(values.iter().map(|v| (destringify(v), v.clone())).collect())
        } else {
            let raw = &values[0];
            if let Some(i) = raw.find("..") {
                let (a, b) = (&raw[..i], &raw[i + 2..]);
                let p = |s: &str| {
                    if s.is_empty() {
                        None
                    } else {
                        Some(destringify(s))
                    }
                };
                Cond::Range(p(a), p(b))
            } else if raw.contains(',') {
                Cond::AnyOf(
                    raw.split(',')
                        .map(|v| (destringify(v), v.to_string()))
                        .collect(),
                )
            } else {
                Cond::AnyOf(vec![(destringify(raw), raw.clone())])
            }
        };
        out.push((field, cond));
    }
    out
}

fn floor_sec(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

/// A stored value read as a time, as range and equality filters read it: a timestamp, or a
/// bare date at midnight UTC. `None` for anything else.
pub fn value_time(v: &Value) -> Option<DateTime<Utc>> {
    let s = v.as_str()?;
    if let Some(t) = time::parse_ts(s) {
        return Some(t);
    }
    time::parse_date(s).map(|d| d.and_hms_opt(0, 0, 0).unwrap().and_utc())
}

fn eq_one(v: &Value, f: &FVal, raw: &str) -> bool {
    if let Value::Array(items) = v {
        return items.iter().any(|i| eq_one(i, f, raw));
    }
    match f {
        FVal::Bool(b) => v.as_bool() == Some(*b) || v.as_str() == Some(raw),
        FVal::Int(i) => v.as_i64() == Some(*i) || v.as_str() == Some(raw),
        FVal::Date(d) => match v.as_str() {
            Some(s) => {
                time::parse_date(s) == Some(*d)
                    || time::parse_ts(s).map(|t| t.date_naive()) == Some(*d)
            }
            None => false,
        },
        FVal::Time(t) => match value_time(v) {
            Some(vt) => floor_sec(vt) == floor_sec(*t),
            None => false,
        },
        FVal::Str(s) => v.as_str() == Some(s.as_str()),
    }
}

/// What a range compares, from the types of its bounds.
enum RangeKind {
    /// `..`: matches nothing.
    Empty,
    /// Time or date bounds: compares the value read as a time.
    Time,
    /// Integer bounds: compares integer values.
    Int,
    /// Mixed or other bounds: matches nothing.
    Other,
}

fn range_kind(lo: &Option<FVal>, hi: &Option<FVal>) -> RangeKind {
    let is_time = |f: &Option<FVal>| matches!(f, Some(FVal::Time(_)) | Some(FVal::Date(_)));
    let is_int = |f: &Option<FVal>| matches!(f, Some(FVal::Int(_)));
    let ok_time = (is_time(lo) || lo.is_none()) && (is_time(hi) || hi.is_none());
    let ok_int = (is_int(lo) || lo.is_none()) && (is_int(hi) || hi.is_none());
    if lo.is_none() && hi.is_none() {
        RangeKind::Empty
    } else if ok_time {
        RangeKind::Time
    } else if ok_int {
        RangeKind::Int
    } else {
        RangeKind::Other
    }
}

/// Second precision, inclusive; a date bound covers its whole day. Compares whole seconds
/// since the epoch (`timestamp()` drops the fraction, as [`floor_sec`] does), which needs
/// no calendar work for each stored value.
fn time_in_range(vt: Option<DateTime<Utc>>, lo: &Option<FVal>, hi: &Option<FVal>) -> bool {
    let Some(vt) = vt.map(|t| t.timestamp()) else {
        return false;
    };
    let lo_ok = match lo {
        Some(FVal::Time(t)) => vt >= t.timestamp(),
        Some(FVal::Date(d)) => vt >= d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp(),
        _ => true,
    };
    let hi_ok = match hi {
        Some(FVal::Time(t)) => vt <= t.timestamp(),
        Some(FVal::Date(d)) => vt <= d.and_hms_opt(23, 59, 59).unwrap().and_utc().timestamp(),
        _ => true,
    };
    lo_ok && hi_ok
}

fn in_range(v: &Value, lo: &Option<FVal>, hi: &Option<FVal>) -> bool {
    if let Value::Array(items) = v {
        return items.iter().any(|i| in_range(i, lo, hi));
    }
    match range_kind(lo, hi) {
        RangeKind::Time => time_in_range(value_time(v), lo, hi),
        RangeKind::Int => {
            let Some(n) = v.as_i64() else {
                return false;
            };
            let lo_ok = match lo {
                Some(FVal::Int(i)) => n >= *i,
                _ => true,
            };
            let hi_ok = match hi {
                Some(FVal::Int(i)) => n <= *i,
                _ => true,
            };
            lo_ok && hi_ok
        }
        RangeKind::Empty | RangeKind::Other => false,
    }
}

/// [`matches`] of a range condition for a stored *string* value whose [`value_time`] is
/// `time` (the caller's cache of it), without the string: a string is neither an integer
/// nor an array, so only time bounds can match it. Same answer as
/// `matches(Some(&Value::String(s)), &Cond::Range(lo, hi))` when
/// `time == value_time(&Value::String(s))`.
pub fn string_in_range_at(
    time: Option<DateTime<Utc>>,
    lo: &Option<FVal>,
    hi: &Option<FVal>,
) -> bool {
    match range_kind(lo, hi) {
        RangeKind::Time => time_in_range(time, lo, hi),
        RangeKind::Empty | RangeKind::Int | RangeKind::Other => false,
    }
}

/// Whether a stored field value (absent = `None`) satisfies the condition.
pub fn matches(v: Option<&Value>, cond: &Cond) -> bool {
    let Some(v) = v else {
        return false;
    };
    match cond {
        Cond::Exact(values) => match v {
            Value::String(s) => values.iter().any(|x| x == s),
            Value::Array(items) => items
                .iter()
                .any(|i| i.as_str().map(|s| values.iter().any(|x| x == s)) == Some(true)),
            _ => false,
        },
        Cond::AnyOf(values) => values.iter().any(|(f, raw)| eq_one(v, f, raw)),
        Cond::Range(lo, hi) => in_range(v, lo, hi),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conds(q: &[(&str, &str)]) -> Vec<(String, Cond)> {
        let p: Vec<(String, String)> = q
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        build(&p, &|f| f != "remote")
    }

    #[test]
    fn open_time_range_is_second_precision_inclusive() {
        let c = conds(&[("last_updated_at", "2024-01-01T10:00:00.900Z..")]);
        let (_, cond) = &c[0];
        assert!(matches(Some(&json!("2024-01-01T10:00:00.100Z")), cond));
        assert!(!matches(Some(&json!("2024-01-01T09:59:59.999Z")), cond));
        let c = conds(&[("last_updated_at", "..2024-01-01T10:00:00.100Z")]);
        let (_, cond) = &c[0];
        assert!(matches(Some(&json!("2024-01-01T10:00:00.900Z")), cond));
        assert!(!matches(Some(&json!("2024-01-01T10:00:01.000Z")), cond));
        // A leap second counts as the second before it.
        let c = conds(&[("last_updated_at", "2016-12-31T23:59:59.999Z..2016-12-31")]);
        let (_, cond) = &c[0];
        assert!(matches(Some(&json!("2016-12-31T23:59:60.500Z")), cond));
        let c = conds(&[("last_updated_at", "2017-01-01..")]);
        let (_, cond) = &c[0];
        assert!(!matches(Some(&json!("2016-12-31T23:59:60.500Z")), cond));
        assert!(matches(Some(&json!("2017-01-01T00:00:00.000Z")), cond));
    }

    #[test]
    fn cached_time_matching_equals_parsing_the_string() {
        let stored = [
            "2024-01-01T10:00:00.000Z",
            "2024-01-01T10:00:00.900Z",
            "2024-01-01T09:59:59.999Z",
            "2024-01-01T12:00:00+02:00",
            "2024-01-01",
            "2024-01-02",
            "7",
            "not a time",
            "",
        ];
        let queries: [&[(&str, &str)]; 9] = [
            &[("last_updated_at", "2024-01-01T10:00:00.900Z..")],
            &[("last_updated_at", "..2024-01-01T10:00:00Z")],
            &[("last_updated_at", "2024-01-01..2024-01-01")],
            &[("last_updated_at", "2024-01-01T09:00:00Z..2024-01-02")],
            &[("last_updated_at", "..")],
            &[("last_updated_at", "5..10")],
            &[("last_updated_at", "5..2024-01-01")],
            &[("last_updated_at", "abc..")],
            &[("last_updated_at", "..7")],
        ];
        for q in queries {
            let (_, cond) = &conds(q)[0];
            let Cond::Range(lo, hi) = cond else {
                panic!("{q:?} is not a range");
            };
            for s in stored {
                let v = json!(s);
                assert_eq!(
                    string_in_range_at(value_time(&v), lo, hi),
                    matches(Some(&v), cond),
                    "{s} against {q:?}"
                );
            }
        }
    }

    #[test]
    fn lists_and_any_of_and_identifiers() {
        let c = conds(&[("associated_user_names[0]", "cw_amina"), ("remote", "true")]);
        assert_eq!(c.len(), 1);
        assert!(matches(Some(&json!(["x", "cw_amina"])), &c[0].1));
        let c = conds(&[("sex", "male,female")]);
        assert!(matches(Some(&json!("female")), &c[0].1));
        let c = conds(&[("unhcr_individual_no", "945-00012345")]);
        assert!(matches(Some(&json!("945-00012345")), &c[0].1));
        assert!(!matches(Some(&json!("945-12345")), &c[0].1));
        let c = conds(&[("age", "5..10")]);
        assert!(matches(Some(&json!(10)), &c[0].1));
        assert!(!matches(Some(&json!(11)), &c[0].1));
    }
}
