//! The case-list query (`GET /api/v2/cases`): filters, field selection and order, turned into
//! Primero's query parameters.
//!
//! Primero silently drops parameters it does not know (a typo returns the unfiltered list), so
//! exact identifier filters are also checked on the returned records by the client.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::PrimeroError;
use crate::model::Case;

/// Sort direction of [`OrderBy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SortDirection {
    #[default]
    Asc,
    Desc,
}

/// `order_by=<field>&order=asc|desc` (Primero's default is `created_at` descending).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderBy {
    pub field: String,
    pub direction: SortDirection,
}

/// What to list. The default lists every case visible to the API user.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CaseQuery {
    /// `last_updated_at=<T>..`: cases updated at or after `T`, compared by Primero at second
    /// precision (sub-seconds are dropped), inclusive.
    pub last_updated_from: Option<DateTime<Utc>>,
    /// Exact identifier filters (`unhcr_individual_no`, `case_id`, ...). Values must be
    /// non-blank. Returned records whose field does not equal the value are dropped, so a filter
    /// the server ignored cannot widen the result.
    pub exact: Vec<(String, String)>,
    /// Other filters sent as they are (`record_state=true`, `status=open`, ...), not checked.
    pub filters: Vec<(String, String)>,
    /// `fields=a,b`: only these fields (plus `id`, `enabled`, `last_updated_at` and the exact
    /// filters' fields, which the client adds).
    pub fields: Option<Vec<String>>,
    pub order_by: Option<OrderBy>,
    /// Cases per page (`per`), 1 to [`crate::PAGE_SIZE`] (Primero's cap, the default). A
    /// caller holding several pages at once may ask for smaller pages to bound its memory.
    pub page_size: Option<u64>,
    /// Only these fields of each `services_section` row are kept (see
    /// [`CaseQuery::keeping_service_row_fields`]); `None` keeps them all.
    pub service_row_fields: Option<Vec<String>>,
}

impl std::fmt::Debug for CaseQuery {
    /// Filter values (an individual's UNHCR number, say) identify people: only the filtered
    /// field names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |v: &[(String, String)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        f.debug_struct("CaseQuery")
            .field("last_updated_from", &self.last_updated_from)
            .field("exact", &names(&self.exact))
            .field("filters", &names(&self.filters))
            .field("fields", &self.fields)
            .field("order_by", &self.order_by)
            .field("page_size", &self.page_size)
            .field("service_row_fields", &self.service_row_fields)
            .finish()
    }
}

impl CaseQuery {
    /// Cases updated at or after `from` (second precision, inclusive).
    pub fn updated_since(from: DateTime<Utc>) -> Self {
        CaseQuery {
            last_updated_from: Some(from),
            ..CaseQuery::default()
        }
    }

    /// Cases whose identifier field `key` equals `value` exactly.
    pub fn exact(key: impl Into<String>, value: impl Into<String>) -> Self {
        CaseQuery::default().and_exact(key, value)
    }

    pub fn and_exact(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.exact.push((key.into(), value.into()));
        self
    }

    pub fn with_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.fields = Some(fields.into_iter().map(Into::into).collect());
        self
    }

    pub fn ordered_by(mut self, field: impl Into<String>, direction: SortDirection) -> Self {
        self.order_by = Some(OrderBy {
            field: field.into(),
            direction,
        });
        self
    }

    /// Keeps only these fields of each `services_section` row of the cases listed: the others
    /// are skipped while each record is parsed. Primero's `fields=` cannot select a subform's
    /// fields, so a listing for a few of them otherwise builds every field of every row (most
    /// of the work of parsing a page). Rows that are not objects, and every other field of the
    /// case, are kept as they came. Not sent to Primero.
    pub fn keeping_service_row_fields<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.service_row_fields = Some(fields.into_iter().map(Into::into).collect());
        self
    }

    /// Pages of `n` cases (1 to [`crate::PAGE_SIZE`]; outside that range, the nearest bound).
    pub fn with_page_size(mut self, n: u64) -> Self {
        self.page_size = Some(n.clamp(1, crate::PAGE_SIZE));
        self
    }

    /// Refuses queries whose meaning the server would change silently: a blank filter value
    /// (Primero would drop it and return every case) or a blank key.
    pub(crate) fn validate(&self) -> Result<(), PrimeroError> {
        for (k, v) in self.exact.iter().chain(self.filters.iter()) {
            if k.trim().is_empty() {
                return Err(PrimeroError::invalid("case filter with an empty name"));
            }
            if v.trim().is_empty() {
                return Err(PrimeroError::invalid(format!(
                    "case filter {k} has an empty value"
                )));
            }
        }
        if let Some(fields) = &self.fields {
            if fields
                .iter()
                .any(|f| f.trim().is_empty() || f.contains(','))
            {
                return Err(PrimeroError::invalid("fields holds an empty or comma name"));
            }
        }
        Ok(())
    }

    /// Cases per page: the requested size within 1..=[`crate::PAGE_SIZE`].
    pub(crate) fn per(&self) -> u64 {
        self.page_size
            .unwrap_or(crate::PAGE_SIZE)
            .clamp(1, crate::PAGE_SIZE)
    }

    /// Query parameters without paging.
    pub(crate) fn params(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in self.exact.iter().chain(self.filters.iter()) {
            out.push((k.clone(), v.clone()));
        }
        if let Some(t) = self.last_updated_from {
            out.push(("last_updated_at".into(), format!("{}..", format_cursor(t))));
        }
        if let Some(fields) = &self.fields {
            let mut list: Vec<&str> = fields.iter().map(String::as_str).collect();
            for (k, _) in &self.exact {
                if !list.contains(&k.as_str()) {
                    list.push(k);
                }
            }
            out.push(("fields".into(), list.join(",")));
        }
        if let Some(o) = &self.order_by {
            out.push(("order_by".into(), o.field.clone()));
            let dir = match o.direction {
                SortDirection::Asc => "asc",
                SortDirection::Desc => "desc",
            };
            out.push(("order".into(), dir.into()));
        }
        out
    }

    /// Whether a returned record satisfies every exact filter.
    pub(crate) fn matches(&self, case: &Case) -> bool {
        self.exact
            .iter()
            .all(|(k, v)| value_equals(case.data.get(k.as_str()), v))
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` in UTC, the precision Primero compares at.
pub fn format_cursor(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn value_equals(v: Option<&Value>, wanted: &str) -> bool {
    match v {
        Some(Value::String(s)) => s == wanted,
        Some(Value::Number(n)) => n.to_string() == wanted,
        Some(Value::Bool(b)) => b.to_string() == wanted,
        Some(Value::Array(items)) => items.iter().any(|i| value_equals(Some(i), wanted)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn cursor_is_second_precision_utc() {
        let t = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap()
            + chrono::Duration::milliseconds(951);
        assert_eq!(format_cursor(t), "2024-01-02T03:04:05Z");
        let q = CaseQuery::updated_since(t);
        assert_eq!(
            q.params(),
            vec![(
                "last_updated_at".to_string(),
                "2024-01-02T03:04:05Z..".to_string()
            )]
        );
    }

    #[test]
    fn params_carry_filters_fields_and_order() {
        let q = CaseQuery::exact("unhcr_individual_no", "911-00012")
            .with_fields(["case_id", "services_section"])
            .ordered_by("created_at", SortDirection::Asc);
        let p = q.params();
        assert!(p.contains(&("unhcr_individual_no".into(), "911-00012".into())));
        assert!(p.contains(&(
            "fields".into(),
            "case_id,services_section,unhcr_individual_no".into()
        )));
        assert!(p.contains(&("order_by".into(), "created_at".into())));
        assert!(p.contains(&("order".into(), "asc".into())));
    }

    #[test]
    fn blank_filter_values_are_refused() {
        assert!(CaseQuery::exact("unhcr_individual_no", " ")
            .validate()
            .is_err());
        assert!(CaseQuery::exact("", "x").validate().is_err());
        assert!(CaseQuery::exact("case_id", "x").validate().is_ok());
    }

    #[test]
    fn exact_filters_are_checked_on_records() {
        let q = CaseQuery::exact("unhcr_individual_no", "0911-1");
        let hit = Case::from_json(serde_json::json!({"id": "a", "unhcr_individual_no": "0911-1"}))
            .unwrap();
        let other = Case::from_json(serde_json::json!({"id": "b", "unhcr_individual_no": "911-1"}))
            .unwrap();
        let missing = Case::from_json(serde_json::json!({"id": "c"})).unwrap();
        assert!(q.matches(&hit));
        assert!(!q.matches(&other));
        assert!(!q.matches(&missing));
    }
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn debug_shows_filter_names_not_values() {
        let q = CaseQuery::exact("unhcr_individual_no", "945-00012345");
        let text = format!("{q:?}");
        assert!(text.contains("unhcr_individual_no"));
        assert!(!text.contains("945-00012345"));
    }
}
