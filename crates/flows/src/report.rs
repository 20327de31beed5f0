//! The report every run ends with (R13): fetched, delivered, confirmed, skipped, rejected by
//! reason, conflicts, failed, plus PING transaction ids and, for a dry run, what would have
//! been sent. It holds record keys, reason codes and field names only, never personal values.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use pp_ledger::{RecordChange, RecordState};
use serde::Serialize;

/// One record that ended the run needing attention (rejected, conflict or failed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordLine {
    pub key: String,
    pub state: String,
    pub reason: Option<String>,
    /// Field names, codes and identifiers only.
    pub message: Option<String>,
}

/// What a dry run would have sent for one record: identifiers and field names only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Preview {
    pub key: String,
    /// e.g. `create case`, `append service row`, `ingest SHP-2748`.
    pub action: String,
    pub fields: Vec<String>,
}

/// The outcome of one run of one flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub flow: String,
    pub run_id: Option<String>,
    pub dry_run: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Records read from the source in this run (retries of earlier runs included).
    pub fetched: u64,
    /// Written to the destination in this run. A write that is verified at once (flow 1.2's
    /// synchronous ingestion) counts here and in `confirmed`; one confirmed on a later run
    /// (flow 2.1's check-status) counts only in that run's `confirmed`.
    pub delivered: u64,
    /// Destination write verified and source write-back done.
    pub confirmed: u64,
    /// Already done earlier (R5): nothing sent.
    pub skipped: u64,
    /// Rejected or in conflict on an earlier run and unchanged at the source since: not
    /// examined again until the source changes or an operator re-queues them (they still
    /// need a person; `status` and the dashboard list them).
    pub held: u64,
    /// Not for this flow (e.g. a service row not implemented by UNHCR), by reason.
    pub excluded: BTreeMap<String, u64>,
    /// Waiting at the source (e.g. a proGres referral not decided yet).
    pub waiting: u64,
    /// Rejected (permanent), by reason code.
    pub rejected: BTreeMap<String, u64>,
    /// Parked for a person (ambiguous match).
    pub conflicts: u64,
    /// Transient failures, retried on a later run.
    pub failed: u64,
    /// `SPHTransactionId`s of the PING requests of this run.
    pub ping_transaction_ids: Vec<String>,
    /// Records that need attention, with their reasons.
    pub attention: Vec<RecordLine>,
    /// Dry run only: what would have been sent.
    pub would_send: Vec<Preview>,
    /// Set when the run stopped early because the process is shutting down.
    pub interrupted: bool,
}

impl Report {
    pub fn new(flow: &str, dry_run: bool) -> Self {
        Report {
            flow: flow.to_owned(),
            dry_run,
            ..Report::default()
        }
    }

    /// Counts a record change by its new state.
    pub fn note(&mut self, change: &RecordChange) {
        match change.state {
            RecordState::Delivered => self.delivered += 1,
            RecordState::Confirmed => self.confirmed += 1,
            RecordState::Pending => {}
            RecordState::Rejected => {
                let reason = change
                    .reason_code
                    .clone()
                    .unwrap_or_else(|| "unspecified".into());
                *self.rejected.entry(reason).or_default() += 1;
            }
            RecordState::Conflict => self.conflicts += 1,
            RecordState::Failed => self.failed += 1,
        }
        if matches!(
            change.state,
            RecordState::Rejected | RecordState::Conflict | RecordState::Failed
        ) {
            self.attention.push(RecordLine {
                key: change.key.clone(),
                state: change.state.as_str().to_owned(),
                reason: change.reason_code.clone(),
                message: change.message.clone(),
            });
        }
    }

    /// Counts a record excluded from this flow, by reason.
    pub fn exclude(&mut self, reason: &str) {
        *self.excluded.entry(reason.to_owned()).or_default() += 1;
    }

    /// Adds a PING transaction id (once).
    pub fn add_transaction(&mut self, id: &str) {
        if !self.ping_transaction_ids.iter().any(|t| t == id) {
            self.ping_transaction_ids.push(id.to_owned());
        }
    }

    /// Total rejected, all reasons.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// The counts stored with the run in the ledger.
    pub fn counts(&self) -> BTreeMap<String, i64> {
        let mut c = BTreeMap::new();
        c.insert("fetched".to_owned(), self.fetched as i64);
        c.insert("delivered".to_owned(), self.delivered as i64);
        c.insert("confirmed".to_owned(), self.confirmed as i64);
        c.insert("skipped".to_owned(), self.skipped as i64);
        c.insert("held".to_owned(), self.held as i64);
        c.insert("waiting".to_owned(), self.waiting as i64);
        c.insert("rejected".to_owned(), self.rejected_total() as i64);
        c.insert("conflict".to_owned(), self.conflicts as i64);
        c.insert("failed".to_owned(), self.failed as i64);
        c.insert(
            "excluded".to_owned(),
            self.excluded.values().sum::<u64>() as i64,
        );
        for (reason, n) in &self.rejected {
            c.insert(format!("rejected:{reason}"), *n as i64);
        }
        c
    }
}

impl fmt::Display for Report {
    /// A short human-readable block, as printed by `run-once`: one label a line, every value
    /// in one column as wide as the longest label or reason code.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |label: &str, value: String| rows.push((label.to_owned(), value));
        if let Some(id) = &self.run_id {
            row("run id", id.clone());
        }
        row("fetched", self.fetched.to_string());
        row("delivered", self.delivered.to_string());
        row("confirmed", self.confirmed.to_string());
        row("skipped (done)", self.skipped.to_string());
        if self.held > 0 {
            row("held (unchanged)", self.held.to_string());
        }
        if self.waiting > 0 {
            row("waiting at source", self.waiting.to_string());
        }
        for (reason, n) in &self.excluded {
            row("excluded", format!("{n} ({reason})"));
        }
        row("rejected", self.rejected_total().to_string());
        for (reason, n) in &self.rejected {
            row(&format!("  {reason}"), n.to_string());
        }
        row("conflicts", self.conflicts.to_string());
        row("failed (retry)", self.failed.to_string());
        if !self.ping_transaction_ids.is_empty() {
            row("PING transactions", self.ping_transaction_ids.join(", "));
        }
        let width = rows
            .iter()
            .map(|(label, _)| label.chars().count())
            .max()
            .unwrap_or(0);
        let dry = if self.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        };
        writeln!(f, "{}{dry}", self.flow)?;
        for (label, value) in &rows {
            writeln!(f, "  {label:<width$}  {value}")?;
        }
        if self.interrupted {
            writeln!(
                f,
                "  interrupted by shutdown: the rest is picked up by the next run"
            )?;
        }
        if !self.would_send.is_empty() {
            writeln!(f, "  would send:")?;
            for p in &self.would_send {
                writeln!(f, "    {} {}: {}", p.action, p.key, p.fields.join(", "))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_counted_by_state_and_reason() {
        let mut r = Report::new("referrals-to-primero", false);
        r.note(&RecordChange::new("f", "a", RecordState::Delivered));
        r.note(&RecordChange::new("f", "b", RecordState::Confirmed));
        r.note(
            &RecordChange::new("f", "c", RecordState::Rejected)
                .with_reason("unmapped_intervention_type", "x"),
        );
        r.note(
            &RecordChange::new("f", "d", RecordState::Rejected)
                .with_reason("unmapped_intervention_type", "y"),
        );
        r.note(
            &RecordChange::new("f", "e", RecordState::Conflict).with_reason("duplicate_cases", "z"),
        );
        r.note(&RecordChange::new("f", "g", RecordState::Failed).with_reason("transient", "t"));
        assert_eq!(
            (r.delivered, r.confirmed, r.conflicts, r.failed),
            (1, 1, 1, 1)
        );
        assert_eq!(r.rejected["unmapped_intervention_type"], 2);
        assert_eq!(r.attention.len(), 4);
        let c = r.counts();
        assert_eq!(c["rejected"], 2);
        assert_eq!(c["rejected:unmapped_intervention_type"], 2);
        assert!(r.to_string().contains("unmapped_intervention_type"));
    }

    #[test]
    fn labels_and_reason_codes_get_a_column_as_wide_as_the_longest() {
        let mut r = Report::new("referrals-to-primero", false);
        r.fetched = 24;
        r.confirmed = 21;
        r.held = 2;
        r.rejected.insert("unmapped_intervention_type".into(), 1);
        r.rejected.insert("missing_required_fields".into(), 12);
        r.conflicts = 1;
        r.excluded.insert("not_unhcr".into(), 3);
        let text = r.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "referrals-to-primero");
        assert!(
            lines.contains(&"    unmapped_intervention_type  1"),
            "{text}"
        );
        assert!(
            lines.contains(&"    missing_required_fields     12"),
            "{text}"
        );
        assert!(
            lines.contains(&"  held (unchanged)              2"),
            "{text}"
        );
        // Every value starts in the same column.
        let column = |l: &str| l.rfind("  ").map(|i| i + 2);
        let first = column(lines[1]);
        for l in &lines[1..] {
            assert_eq!(column(l), first, "{l:?} in\n{text}");
        }
        assert!(
            lines.contains(&"  excluded                      3 (not_unhcr)"),
            "{text}"
        );
    }
}
