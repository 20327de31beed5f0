//! Timestamp and date parsing/formatting in Primero's wire formats
//! (`YYYY-MM-DDTHH:MM:SS.mmmZ`, `YYYY-MM-DD`).

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};

/// Formats a timestamp as Primero does: UTC with milliseconds.
pub fn fmt_ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Formats a date as `YYYY-MM-DD`.
pub fn fmt_date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// Parses a strict `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    if s.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Parses a full timestamp: RFC 3339 (any offset, optional fraction) or a zone-less
/// `YYYY-MM-DDTHH:MM[:SS[.fff]]` read as UTC. A bare date is not a timestamp.
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S %z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(t.with_timezone(&Utc));
        }
        if let Ok(n) = NaiveDateTime::parse_from_str(s, f) {
            return Some(Utc.from_utc_datetime(&n));
        }
    }
    None
}

/// Normalises a timestamp string to the wire format; `None` when it does not parse.
pub fn normalise_ts(s: &str) -> Option<String> {
    parse_ts(s).map(fmt_ts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_normalised_to_millis_utc() {
        assert_eq!(
            normalise_ts("2021-09-27T14:54:49+02:00").unwrap(),
            "2021-09-27T12:54:49.000Z"
        );
        assert_eq!(
            normalise_ts("2021-09-27T12:54:49.9517Z").unwrap(),
            "2021-09-27T12:54:49.951Z"
        );
        assert_eq!(
            normalise_ts("2021-09-27T12:54:49").unwrap(),
            "2021-09-27T12:54:49.000Z"
        );
        assert!(parse_ts("2021-09-27").is_none());
        assert!(parse_date("2021-09-27T00:00:00Z").is_none());
        assert!(parse_date("2021-02-30").is_none());
    }
}
