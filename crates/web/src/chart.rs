//! The overview's chart: outcomes per day (the states records reached, from the ledger's
//! audit counters) over the last days, drawn on the server as an inline SVG of stacked bars,
//! with a text summary for screen readers, a title per bar for pointer users, and a legend
//! that does not rely on colour alone (word + swatch). A record delivered one day and
//! confirmed the next is two outcomes: the chart counts outcomes, never records.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{Days, NaiveDate};

use crate::html::esc;

/// Outcomes in stacking order (bottom first) with their colours; each colour has at least
/// 3:1 contrast against white.
const SERIES: &[(&str, &str)] = &[
    ("confirmed", "#1a6b37"),
    ("delivered", "#2f7fbf"),
    ("pending", "#5a6570"),
    ("failed", "#b35900"),
    ("conflict", "#7b3fa0"),
    ("rejected", "#a3141c"),
];
const OTHER_COLOUR: &str = "#333d47";

const WIDTH: f64 = 320.0;
const HEIGHT: f64 = 120.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 18.0;
const LEFT: f64 = 28.0;

/// Draws `days` days ending with `today` from per-day counts `(day, outcome, n)`.
/// `id` makes the element ids unique on the page.
pub fn daily_chart(
    id: &str,
    flow: &str,
    today: NaiveDate,
    days: u32,
    data: &[(NaiveDate, String, i64)],
) -> String {
    let days = days.max(1);
    let first = today
        .checked_sub_days(Days::new(u64::from(days - 1)))
        .unwrap_or(today);
    // day index → outcome → n
    let mut grid: Vec<BTreeMap<&str, i64>> = vec![BTreeMap::new(); days as usize];
    let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
    for (day, outcome, n) in data {
        let Some(i) = (*day - first)
            .num_days()
            .try_into()
            .ok()
            .filter(|i: &usize| *i < grid.len())
        else {
            continue;
        };
        *grid[i].entry(outcome.as_str()).or_default() += n;
        *totals.entry(outcome.as_str()).or_default() += n;
    }
    let max = grid
        .iter()
        .map(|d| d.values().sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let total: i64 = totals.values().sum();

    let title_id = format!("chart-{id}-title");
    let desc_id = format!("chart-{id}-desc");
    let mut summary = format!(
        "{total} {} in the last {days} days",
        if total == 1 { "outcome" } else { "outcomes" }
    );
    if total > 0 {
        summary.push_str(" (each change of state or reason of a record counts once)");
        summary.push_str(": ");
        let parts: Vec<String> = ordered(&totals)
            .into_iter()
            .map(|(o, n, _)| format!("{n} {o}"))
            .collect();
        summary.push_str(&parts.join(", "));
    }
    summary.push('.');

    let mut s = String::new();
    let _ = write!(
        s,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-labelledby=\"{title_id} {desc_id}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title id=\"{title_id}\">Outcomes per day of {}</title><desc id=\"{desc_id}\">{}</desc>",
        esc(flow),
        esc(&summary)
    );
    let plot_h = HEIGHT - TOP - BOTTOM;
    let plot_w = WIDTH - LEFT - 4.0;
    let step = plot_w / f64::from(days);
    let bar_w = (step - 1.5).max(1.0);
    let base = TOP + plot_h;
    // Axis and scale.
    let _ = write!(
        s,
        "<line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#4a5560\"/>\
         <text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\" fill=\"#4a5560\">{max}</text>\
         <text x=\"{}\" y=\"{base}\" font-size=\"10\" text-anchor=\"end\" fill=\"#4a5560\">0</text>\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{}\" y2=\"{TOP}\" stroke=\"#c9d1d9\" stroke-dasharray=\"3 3\"/>",
        WIDTH - 4.0,
        LEFT - 4.0,
        TOP + 4.0,
        LEFT - 4.0,
        WIDTH - 4.0,
    );
    for (i, day) in grid.iter().enumerate() {
        let date = first + Days::new(i as u64);
        let x = LEFT + step * i as f64 + 1.0;
        let mut y = base;
        let day_total: i64 = day.values().sum();
        if day_total > 0 {
            let parts: Vec<String> = ordered(day)
                .into_iter()
                .map(|(o, n, _)| format!("{n} {o}"))
                .collect();
            let _ = write!(
                s,
                "<g><title>{}: {}</title>",
                date.format("%Y-%m-%d"),
                esc(&parts.join(", "))
            );
            for (_, n, colour) in ordered(day) {
                let h = plot_h * n as f64 / max as f64;
                y -= h;
                let _ = write!(
                    s,
                    "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" fill=\"{colour}\"/>"
                );
            }
            s.push_str("</g>");
        }
        if i == 0 || i + 1 == grid.len() || i == grid.len() / 2 {
            let (anchor, tx) = if i == 0 {
                ("start", x)
            } else if i + 1 == grid.len() {
                ("end", x + bar_w)
            } else {
                ("middle", x + bar_w / 2.0)
            };
            let _ = write!(
                s,
                "<text x=\"{tx:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"{anchor}\" fill=\"#4a5560\">{}</text>",
                HEIGHT - 4.0,
                date.format("%d %b")
            );
        }
    }
    s.push_str("</svg><ul class=\"legend\">");
    for (outcome, colour) in SERIES {
        let _ = write!(
            s,
            "<li><span style=\"background:{colour}\"></span>{outcome}</li>"
        );
    }
    s.push_str("</ul>");
    s
}

/// The entries of `counts` in stacking order (known outcomes first), with their colours.
fn ordered<'a>(counts: &BTreeMap<&'a str, i64>) -> Vec<(&'a str, i64, &'static str)> {
    let mut out: Vec<(&str, i64, &str)> = Vec::new();
    for (name, colour) in SERIES {
        if let Some((k, n)) = counts.get_key_value(name) {
            if *n > 0 {
                out.push((k, *n, colour));
            }
        }
    }
    for (k, n) in counts {
        if *n > 0 && !SERIES.iter().any(|(name, _)| name == k) {
            out.push((k, *n, OTHER_COLOUR));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn bars_are_drawn_for_days_in_range_and_summarised() {
        let today = d("2026-11-30");
        let data = vec![
            (d("2026-11-30"), "confirmed".to_string(), 6),
            (d("2026-11-30"), "rejected".to_string(), 2),
            (d("2026-11-01"), "failed".to_string(), 1),
            // Outside the 30 days: ignored.
            (d("2026-10-01"), "confirmed".to_string(), 99),
        ];
        let svg = daily_chart("a", "referrals-to-primero", today, 30, &data);
        assert!(svg.contains(
            "9 outcomes in the last 30 days (each change of state or reason of a record counts once): \
             6 confirmed, 1 failed, 2 rejected."
        ));
        assert!(svg.contains("Outcomes per day of referrals-to-primero"));
        assert!(!svg.contains("records in the last"));
        assert!(svg.contains("<title>2026-11-30: 6 confirmed, 2 rejected</title>"));
        assert!(svg.contains("<title>2026-11-01: 1 failed</title>"));
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(!svg.contains("99"));
    }

    #[test]
    fn an_empty_chart_says_so() {
        let svg = daily_chart("b", "x", d("2026-11-30"), 30, &[]);
        assert!(svg.contains("0 outcomes in the last 30 days."));
        assert_eq!(svg.matches("<rect").count(), 0);
    }
}
