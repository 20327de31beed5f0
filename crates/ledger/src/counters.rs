//! The dashboard's counter tables, kept exact on write: `record_counts` (records per flow,
//! state and reason code) and `daily_outcomes` (audit events per flow, UTC day and resulting
//! state). A write transaction collects its changes in a [`Tally`] and applies them just
//! before it commits, so the counters move in the same transaction as what they count.
//!
//! Counter rows are updated in one fixed (sorted) order and only after every record row the
//! transaction locks, so two PostgreSQL transactions never wait on each other's counters in a
//! cycle.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::db::{args, Tx};
use crate::error::LedgerError;
use crate::model::RecordState;

/// `record_counts.reason_code` of records without a reason code (stored reason codes are
/// never empty).
pub(crate) const NO_REASON: &str = "";

/// The UTC day of `at` as `daily_outcomes.day` stores it.
pub(crate) fn day_of(at: DateTime<Utc>) -> String {
    at.date_naive().format("%Y-%m-%d").to_string()
}

/// Counter changes of one transaction, not yet written.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// (flow, state, reason code or [`NO_REASON`]) → change of the number of records.
    records: BTreeMap<(String, String, String), i64>,
    /// (flow, day, state) → change of the number of audit events.
    events: BTreeMap<(String, String, String), i64>,
}

impl Tally {
    /// A record of `flow` now is in `state` with `reason` (`delta` = 1) or no longer is
    /// (`delta` = -1).
    pub(crate) fn record(
        &mut self,
        flow: &str,
        state: RecordState,
        reason: Option<&str>,
        delta: i64,
    ) {
        let key = (
            flow.to_owned(),
            state.as_str().to_owned(),
            reason.unwrap_or(NO_REASON).to_owned(),
        );
        *self.records.entry(key).or_default() += delta;
    }

    /// A record moved from `from` (`None`: it is new) to `to`.
    pub(crate) fn moved(
        &mut self,
        flow: &str,
        from: Option<(RecordState, Option<&str>)>,
        to: (RecordState, Option<&str>),
    ) {
        if from == Some(to) {
            return;
        }
        if let Some((state, reason)) = from {
            self.record(flow, state, reason, -1);
        }
        self.record(flow, to.0, to.1, 1);
    }

    /// `n` audit events of `flow` on `day` (`YYYY-MM-DD`) ending in `state` were written
    /// (positive) or purged (negative).
    pub(crate) fn events(&mut self, flow: &str, day: &str, state: &str, n: i64) {
        let key = (flow.to_owned(), day.to_owned(), state.to_owned());
        *self.events.entry(key).or_default() += n;
    }

    /// Writes the collected changes inside `tx`, in key order. Event counters that reach
    /// zero (their events were purged) are deleted.
    pub(crate) async fn flush(self, tx: &mut Tx) -> Result<(), LedgerError> {
        for ((flow, state, reason), n) in self.records {
            if n == 0 {
                continue;
            }
            tx.execute(
                "INSERT INTO record_counts (flow, state, reason_code, n) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (flow, state, reason_code) DO UPDATE SET n = record_counts.n + excluded.n",
                &args![flow, state, reason, n],
            )
            .await?;
        }
        for ((flow, day, state), n) in self.events {
            if n == 0 {
                continue;
            }
            tx.execute(
                "INSERT INTO daily_outcomes (flow, day, state, n) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (flow, day, state) DO UPDATE SET n = daily_outcomes.n + excluded.n",
                &args![flow.as_str(), day.as_str(), state.as_str(), n],
            )
            .await?;
            if n < 0 {
                tx.execute(
                    "DELETE FROM daily_outcomes WHERE flow = $1 AND day = $2 AND state = $3 \
                     AND n <= 0",
                    &args![flow, day, state],
                )
                .await?;
            }
        }
        Ok(())
    }
}
