//! Flow schedules: standard 5-field cron (`minute hour day-of-month month day-of-week`) or
//! 6 fields with seconds first, read in UTC. Day-of-week numbers follow standard cron
//! (0 or 7 = Sunday, 1 = Monday) in both forms; the `cron` crate counts 1 = Sunday, so numeric
//! days are translated (names such as `MON-FRI` mean the same in both and pass unchanged).

use std::collections::BTreeSet;
use std::str::FromStr;

use cron::Schedule;

/// Parses a configured schedule into a `cron::Schedule`.
pub fn parse_schedule(expr: &str) -> Result<Schedule, String> {
    let expr = expr.trim();
    if expr.starts_with('@') {
        return Schedule::from_str(expr)
            .map_err(|e| format!("is not a valid cron expression: {e}"));
    }
    let mut fields: Vec<String> = expr.split_whitespace().map(str::to_owned).collect();
    match fields.len() {
        5 => fields.insert(0, "0".to_owned()),
        6 => {}
        n => {
            return Err(format!(
                "expected 5 cron fields (minute hour day-of-month month day-of-week) \
                 or 6 (seconds first), found {n}"
            ))
        }
    }
    check_ranges(&fields)?;
    fields[5] = translate_day_of_week(&fields[5])?;
    let converted = fields.join(" ");
    // The crate's message quotes the expression it was given (seconds added, weekdays
    // renumbered): name the one the operator wrote instead.
    Schedule::from_str(&converted).map_err(|e| {
        format!(
            "is not a valid cron expression: {}",
            e.to_string().replace(&converted, expr)
        )
    })
}

/// The fields of the 6-field form (seconds first), with their ranges.
const FIELD_RANGES: [(&str, u32, u32); 6] = [
    ("seconds", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
];

/// Every number of every field within its range, so that `61 * * * *` is refused with the
/// field and its range rather than the `cron` crate's own wording. Names (`MON`, `JAN`) and
/// other syntax are left to the crate.
fn check_ranges(fields: &[String]) -> Result<(), String> {
    for (field, (name, lo, hi)) in fields.iter().zip(FIELD_RANGES) {
        for element in field.split(',') {
            let range = element.split_once('/').map_or(element, |(r, _)| r);
            for n in range.split('-').filter_map(|n| n.parse::<u32>().ok()) {
                if n < lo || n > hi {
                    return Err(format!(
                        "{name} field `{field}`: {n} is out of range {lo}-{hi}"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Standard cron day-of-week field -> the `cron` crate's (1 = Sunday).
fn translate_day_of_week(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok(field.to_owned());
    }
    let mut out: Vec<String> = Vec::new();
    let mut days: BTreeSet<u32> = BTreeSet::new();
    for element in field.split(',') {
        if element.chars().any(|c| c.is_ascii_alphabetic()) {
            out.push(element.to_owned());
            continue;
        }
        let bad = || format!("day-of-week `{element}` is not valid (0-7, 0 and 7 = Sunday)");
        let (range, step) = match element.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0).ok_or_else(bad)?),
            None => (element, 1),
        };
        let (lo, hi) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            let a: u32 = a.parse().map_err(|_| bad())?;
            let b: u32 = b.parse().map_err(|_| bad())?;
            (a, b)
        } else {
            let a: u32 = range.parse().map_err(|_| bad())?;
            // `a/s` means from a to the end of the week.
            (a, if element.contains('/') { 7 } else { a })
        };
        if lo > hi || hi > 7 {
            return Err(bad());
        }
        days.extend((lo..=hi).step_by(step as usize).map(|d| d % 7));
    }
    out.extend(days.iter().map(|d| (d + 1).to_string()));
    Ok(out.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc, Weekday};

    fn next(expr: &str, after: DateTime<Utc>) -> DateTime<Utc> {
        parse_schedule(expr).unwrap().after(&after).next().unwrap()
    }

    #[test]
    fn five_and_six_field_forms_agree() {
        let t = Utc.with_ymd_and_hms(2026, 11, 30, 10, 15, 0).unwrap();
        assert_eq!(
            next("0 * * * *", t),
            Utc.with_ymd_and_hms(2026, 11, 30, 11, 0, 0).unwrap()
        );
        assert_eq!(
            next("0 0 * * * *", t),
            Utc.with_ymd_and_hms(2026, 11, 30, 11, 0, 0).unwrap()
        );
        assert_eq!(
            next("0 0 * * *", t),
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
        );
        // Seconds are honoured in the 6-field form.
        assert_eq!(next("30 */5 * * * *", t).second(), 30);
    }

    #[test]
    fn weekdays_use_standard_cron_numbering() {
        // 2026-11-30 is a Monday.
        let monday = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        assert_eq!(monday.weekday(), Weekday::Mon);
        assert_eq!(next("0 9 * * 0", monday).weekday(), Weekday::Sun);
        assert_eq!(next("0 9 * * 7", monday).weekday(), Weekday::Sun);
        assert_eq!(next("0 9 * * 1-5", monday).weekday(), Weekday::Tue);
        assert_eq!(next("0 9 * * 6", monday).weekday(), Weekday::Sat);
        assert_eq!(next("0 9 * * SAT", monday).weekday(), Weekday::Sat);
        assert_eq!(next("0 0 9 * * 5", monday).weekday(), Weekday::Fri);
    }

    #[test]
    fn bad_expressions_are_explained() {
        assert!(parse_schedule("0 0 * *").unwrap_err().contains("found 4"));
        assert!(parse_schedule("0 25 * * *").is_err());
        assert!(parse_schedule("0 0 * * 8")
            .unwrap_err()
            .contains("day-of-week"));
        assert!(parse_schedule("@daily").is_ok());
    }

    #[test]
    fn numbers_out_of_range_name_the_field_and_its_range_as_written() {
        let e = parse_schedule("61 * * * *").unwrap_err();
        assert!(e.contains("minute field `61`"), "{e}");
        assert!(e.contains("0-59"), "{e}");
        // Not the converted 6-field form the operator never wrote.
        assert!(!e.contains("0 61"), "{e}");
        let e = parse_schedule("0 24 * * *").unwrap_err();
        assert!(e.contains("hour") && e.contains("0-23"), "{e}");
        let e = parse_schedule("0 0 0 * *").unwrap_err();
        assert!(e.contains("day-of-month") && e.contains("1-31"), "{e}");
        let e = parse_schedule("0 0 1 1-13 *").unwrap_err();
        assert!(e.contains("month") && e.contains("1-12"), "{e}");
        let e = parse_schedule("60 0 0 * * *").unwrap_err();
        assert!(e.contains("seconds") && e.contains("0-59"), "{e}");
        // The top of every range is accepted.
        assert!(parse_schedule("59 23 31 12 7").is_ok());
        assert!(parse_schedule("*/15 0-23/2 1,15 JAN-DEC MON-FRI").is_ok());
        // Other mistakes still come from the crate, quoting what was written.
        let e = parse_schedule("0 0 * FOO *").unwrap_err();
        assert!(
            e.contains("0 0 * FOO *") && !e.contains("0 0 0 * FOO"),
            "{e}"
        );
    }
}
