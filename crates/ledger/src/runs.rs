//! Flow runs and cursors: starting and finishing runs, listing them for the dashboard and
//! the CLI, reading cursors, and purging old history.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::bound::{self, check_ident, check_name, MAX_ERROR, MAX_IDENT};
use crate::counters::Tally;
use crate::db::{args, now, Arg, Cols};
use crate::error::LedgerError;
use crate::model::{Backend, PurgeReport, Run, RunFilter, RunId, RunOutcome};
use crate::{parse_enum, parse_json, Ledger};

pub(crate) const RUN_COLS: &str =
    "id, flow, holder, started_at, finished_at, outcome, counts, error";

pub(crate) fn run_from_row(r: &dyn Cols) -> Result<Run, LedgerError> {
    Ok(Run {
        id: r.text("id")?,
        flow: r.text("flow")?,
        holder: r.text("holder")?,
        started_at: r.ts("started_at")?,
        finished_at: r.opt_ts("finished_at")?,
        outcome: parse_enum("runs.outcome", &r.text("outcome")?)?,
        counts: parse_json("runs.counts", &r.text("counts")?)?,
        error: r.opt_text("error")?,
    })
}

/// Limits of list queries.
pub(crate) fn page(limit: i64, offset: i64) -> (i64, i64) {
    (limit.clamp(0, 10_000), offset.max(0))
}

impl Ledger {
    /// Starts a run of `flow` by `holder` (the lease holder's instance id).
    ///
    /// Runs of the same flow still marked `running` are marked `abandoned`: the caller holds
    /// the flow's lease, so they belong to a holder that crashed or lost its lease. Records
    /// they left `pending` become due (see [`Ledger::due_for_retry`]).
    pub async fn start_run(&self, flow: &str, holder: &str) -> Result<RunId, LedgerError> {
        check_ident("flow", flow, MAX_IDENT)?;
        check_ident("holder", holder, MAX_IDENT)?;
        let id = RunId(uuid::Uuid::new_v4().to_string());
        let at = now();
        let mut tx = self.pool.begin().await?;
        let abandoned = tx
            .execute(
                "UPDATE runs SET outcome = 'abandoned', finished_at = $1, error = $2 \
                 WHERE flow = $3 AND outcome = 'running'",
                &args![at, format!("superseded by run {id}"), flow],
            )
            .await?;
        tx.execute(
            "INSERT INTO runs (id, flow, holder, started_at, outcome, counts) \
             VALUES ($1, $2, $3, $4, 'running', '{}')",
            &args![id.as_str(), flow, holder, at],
        )
        .await?;
        tx.commit().await?;
        if abandoned > 0 {
            tracing::warn!(flow, run_id = %id, abandoned, "earlier unfinished runs marked abandoned");
        }
        Ok(id)
    }

    /// Ends a running run with its outcome, counts and (for a failed run) the error, which is
    /// cut to 1000 characters. Fails if the run is unknown or no longer running.
    pub async fn finish_run(
        &self,
        run: &RunId,
        outcome: RunOutcome,
        counts: &BTreeMap<String, i64>,
        error: Option<&str>,
    ) -> Result<(), LedgerError> {
        if outcome == RunOutcome::Running {
            return Err(LedgerError::Invalid {
                field: "outcome",
                reason: "a run cannot finish as `running`".into(),
            });
        }
        for name in counts.keys() {
            check_name("counts", name)?;
        }
        let counts_json = serde_json::to_string(counts).map_err(|e| LedgerError::Invalid {
            field: "counts",
            reason: format!("not serializable: {e}"),
        })?;
        let n = self
            .pool
            .execute(
                "UPDATE runs SET outcome = $1, finished_at = $2, counts = $3, error = $4 \
                 WHERE id = $5 AND outcome = 'running'",
                &args![
                    outcome.as_str(),
                    now(),
                    counts_json,
                    bound::bounded_opt(error, MAX_ERROR),
                    run.as_str()
                ],
            )
            .await?;
        if n == 0 {
            let current = self.get_run(run.as_str()).await?;
            return Err(LedgerError::Invalid {
                field: "run",
                reason: match current {
                    None => format!("run {run} does not exist"),
                    Some(r) => format!("run {run} is already {}", r.outcome),
                },
            });
        }
        Ok(())
    }

    /// Runs, newest first, filtered by flow and outcome.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>, LedgerError> {
        let mut sql = format!("SELECT {RUN_COLS} FROM runs WHERE 1 = 1");
        let mut a: Vec<Arg> = Vec::new();
        if let Some(flow) = &filter.flow {
            a.push(flow.into());
            sql.push_str(&format!(" AND flow = ${}", a.len()));
        }
        if let Some(outcome) = filter.outcome {
            a.push(outcome.as_str().into());
            sql.push_str(&format!(" AND outcome = ${}", a.len()));
        }
        let (limit, offset) = page(filter.limit, filter.offset);
        a.push(limit.into());
        a.push(offset.into());
        sql.push_str(&format!(
            " ORDER BY started_at DESC, seq DESC LIMIT ${} OFFSET ${}",
            a.len() - 1,
            a.len()
        ));
        self.pool.fetch_all(&sql, &a, run_from_row).await
    }

    /// One run by id.
    pub async fn get_run(&self, id: &str) -> Result<Option<Run>, LedgerError> {
        self.pool
            .fetch_optional(
                &format!("SELECT {RUN_COLS} FROM runs WHERE id = $1"),
                &args![id],
                run_from_row,
            )
            .await
    }

    /// The latest run of every flow that has one, ordered by flow.
    pub async fn last_runs(&self) -> Result<Vec<Run>, LedgerError> {
        self.pool
            .fetch_all(
                &format!(
                    "SELECT {RUN_COLS} FROM (SELECT runs.*, ROW_NUMBER() OVER \
                     (PARTITION BY flow ORDER BY started_at DESC, seq DESC) AS rn FROM runs) t \
                     WHERE rn = 1 ORDER BY flow"
                ),
                &[],
                run_from_row,
            )
            .await
    }

    /// The latest `completed` run of `flow`.
    pub async fn last_successful_run(&self, flow: &str) -> Result<Option<Run>, LedgerError> {
        self.pool
            .fetch_optional(
                &format!(
                    "SELECT {RUN_COLS} FROM runs WHERE flow = $1 AND outcome = 'completed' \
                     ORDER BY started_at DESC, seq DESC LIMIT 1"
                ),
                &args![flow],
                run_from_row,
            )
            .await
    }

    /// The cursor of `flow`, if it was ever set.
    pub async fn cursor(&self, flow: &str) -> Result<Option<String>, LedgerError> {
        self.pool
            .fetch_optional(
                "SELECT value FROM cursors WHERE flow = $1",
                &args![flow],
                |r| r.text("value"),
            )
            .await
    }

    /// Every cursor: flow → (value, when it last moved).
    pub async fn cursors(&self) -> Result<BTreeMap<String, (String, DateTime<Utc>)>, LedgerError> {
        let rows = self
            .pool
            .fetch_all("SELECT flow, value, updated_at FROM cursors", &[], |r| {
                Ok((r.text("flow")?, (r.text("value")?, r.ts("updated_at")?)))
            })
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// Deletes audit events and finished runs older than `older_than`. Records, cursors,
    /// facts and leases are never purged (so neither are the record counts), nor are runs
    /// still running. The daily chart's counters lose the purged events.
    pub async fn purge(&self, older_than: DateTime<Utc>) -> Result<PurgeReport, LedgerError> {
        let mut tx = self.pool.begin().await?;
        let per_day = |r: &dyn Cols| {
            Ok((
                r.text("flow")?,
                r.text("day")?,
                r.text("to_state")?,
                r.int("n")?,
            ))
        };
        let purged = match tx.backend() {
            // The transaction holds SQLite's write lock: nothing is added between the two.
            Backend::Sqlite => {
                let groups = tx
                    .fetch_all(
                        "SELECT flow, substr(at, 1, 10) AS day, to_state, COUNT(*) AS n \
                         FROM audit_events WHERE at < $1 GROUP BY 1, 2, 3",
                        &args![older_than],
                        per_day,
                    )
                    .await?;
                tx.execute("DELETE FROM audit_events WHERE at < $1", &args![older_than])
                    .await?;
                groups
            }
            // One statement, so the counted events are exactly the deleted ones.
            Backend::Postgres => {
                tx.fetch_all(
                    "WITH gone AS (DELETE FROM audit_events WHERE at < $1 \
                     RETURNING flow, at, to_state) \
                     SELECT flow, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, to_state, \
                     COUNT(*) AS n FROM gone GROUP BY 1, 2, 3",
                    &args![older_than],
                    per_day,
                )
                .await?
            }
        };
        let mut tally = Tally::default();
        let mut audit_events = 0u64;
        for (flow, day, state, n) in &purged {
            tally.events(flow, day, state, -n);
            audit_events += u64::try_from(*n).unwrap_or_default();
        }
        tally.flush(&mut tx).await?;
        let runs = tx
            .execute(
                "DELETE FROM runs WHERE outcome <> 'running' AND finished_at IS NOT NULL \
                 AND finished_at < $1",
                &args![older_than],
            )
            .await?;
        tx.commit().await?;
        tracing::info!(audit_events, runs, "ledger history purged");
        Ok(PurgeReport { audit_events, runs })
    }
}
