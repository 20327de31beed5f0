//! Flow 1.2 `decisions-to-progres`: Primero's accept/reject of the referrals that flow 1.1
//! delivered goes back to proGres (SHP-2748, with the decision as an attachment comment)
//! (flows.md, Flow 1.2).
//!
//! Shape of a run:
//! 1. read every page of the cases changed since the cursor (`last_updated_at=T..`, inclusive
//!    and second-granular; the first run starts from the flow's `start_from`);
//! 2. keep the UNHCR-requested external referrals that are accepted or rejected (pure code,
//!    `pp_mapping::flow12`); any other status but `pending` is rejected `unknown_status`
//!    (R4). Key = `{case id}:{service unique_id}:{status}`, `…:{status}:{n}` for the `n`-th
//!    time a row gets that status (a decision changed back), so every decision instance has
//!    its own record and a confirmed one is never moved; skipped when already sent (R5). A
//!    failed decision waits for its `next_retry_at` (`retry_not_due`);
//! 3. split `progres_interventionnumber`; a legacy value (no LP id and business unit) is
//!    resolved through the ledger fact flow 1.1 wrote, else rejected
//!    `legacy_intervention_number`;
//! 4. send the decisions in batches of `ping.batch_size` with record isolation (R1);
//! 5. move the cursor, with the run's last records, to the greatest `last_updated_at` seen
//!    (R6): the next run re-reads that second and the ledger drops what was handled, so
//!    cases changed within the same second are not lost.
//!
//! The cursor never passes a case whose decision is still to be sent (failed, not due yet, or
//! not started because of shutdown), nor the run's start time: a case created or changed
//! while the run pages through the list is read again by the next run. Cases of decisions an
//! operator re-queued, or that failed and are due again, are read by id first (they may be
//! older than the cursor).

use std::collections::HashSet;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use pp_ledger::{Record, RecordChange, RecordState};
use pp_mapping::flow11::{self, Rejection, TRANSIENT, VALIDATION_ERROR};
use pp_mapping::flow12::{
    self, Decision, DecisionRow, InterventionRef, LEGACY_INTERVENTION_NUMBER,
};
use pp_ping::IngestRecord;
use pp_primero::{format_cursor, Case, CaseQuery};
use serde_json::json;

use crate::referrals_to_primero::{ingest_isolated, FACT_INTERVENTION};
use crate::referrals_to_progres::EXCLUDED_RETRY_NOT_DUE;
use crate::{FlowError, RunCtx};

/// Failed decisions read by id per run, at most.
const RETRIES_PER_RUN: i64 = 1000;

/// What the pages of one run have shown so far.
struct Progress {
    /// Where the run started reading.
    from: DateTime<Utc>,
    /// Greatest `last_updated_at` seen.
    max_seen: Option<DateTime<Utc>>,
    /// Smallest `last_updated_at` of a case with a decision still to send.
    hold: Option<DateTime<Utc>>,
}

impl Progress {
    fn new(from: DateTime<Utc>) -> Self {
        Progress {
            from,
            max_seen: None,
            hold: None,
        }
    }

    fn see(&mut self, t: Option<DateTime<Utc>>) {
        if let Some(t) = t {
            self.max_seen = Some(self.max_seen.map_or(t, |m| m.max(t)));
        }
    }

    /// Keeps the cursor at or before `t`; a case without `last_updated_at` keeps it where
    /// the run started.
    fn hold_at(&mut self, t: Option<DateTime<Utc>>) {
        let t = t.unwrap_or(self.from);
        self.hold = Some(self.hold.map_or(t, |h| h.min(t)));
    }
}

/// A decision ready to send.
struct Outgoing {
    row: DecisionRow,
    /// The ledger key of this decision instance.
    key: String,
    record: IngestRecord,
    hash: String,
    attempts: i64,
}

/// Runs flow 1.2 once.
pub async fn run(run: &RunCtx<'_>) -> Result<(), FlowError> {
    let ctx = run.ctx;
    let flow = run.flow.name();
    let stored = ctx.ledger.cursor(flow).await?;
    let from = match &stored {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                FlowError::Config(format!(
                    "the stored cursor of {flow} is not an RFC 3339 time"
                ))
            })?,
        None => ctx.config.flow(flow).start_from.resolve(run.started_at),
    };
    // Records an operator re-queued, and failed ones that are due again: their cases may be
    // older than the cursor, so they are read by id. Their times do not move the cursor, and
    // the cursor pass leaves these cases alone (each record is handled once per run).
    let mut again = ctx.ledger.pending_operator_retries(flow).await?;
    again.extend(
        ctx.ledger
            .due_for_retry(flow, run.started_at, RETRIES_PER_RUN)
            .await?,
    );
    let mut case_ids: Vec<&str> = again
        .iter()
        .filter_map(|r| r.key.split(':').next())
        .collect();
    case_ids.sort_unstable();
    case_ids.dedup();
    let mut cases = Vec::new();
    for id in case_ids {
        match ctx.primero.get_case(id).await {
            Ok(Some(case)) => cases.push(case),
            // Left for a later run (or for the operator: the case is gone).
            Ok(None) => tracing::warn!(case = id, "decision to retry: case not found"),
            Err(e) if e.class() == pp_http::ErrorClass::Auth => return Err(e.into()),
            Err(e) => tracing::warn!(case = id, error = %e, "decision to retry: case not read"),
        }
    }
    let handled: HashSet<String> = cases.iter().map(|c| c.id.clone()).collect();
    if !cases.is_empty() {
        let none = HashSet::new();
        handle_page(run, cases, &Mutex::new(Progress::new(from)), &none).await?;
    }

    let progress = Mutex::new(Progress::new(from));
    let query = CaseQuery::updated_since(from);
    let progress_ref = &progress;
    let handled_ref = &handled;
    ctx.primero
        .for_each_case_page(&query, move |page| {
            handle_page(run, page, progress_ref, handled_ref)
        })
        .await?;

    let progress = progress.into_inner().unwrap_or_else(|e| e.into_inner());
    let Some(max_seen) = progress.max_seen else {
        return Ok(());
    };
    let mut cursor = max_seen.min(run.started_at);
    if let Some(hold) = progress.hold {
        cursor = cursor.min(hold);
    }
    let cursor = cursor.max(from);
    let text = format_cursor(cursor);
    if stored.as_deref() != Some(text.as_str()) {
        run.commit(Vec::new(), Some(&text)).await?;
    }
    Ok(())
}

/// Handles the cases of one page: picks the decisions, sends them, records the outcomes.
/// Cases in `skip` were handled earlier in this run (only their times count).
async fn handle_page(
    run: &RunCtx<'_>,
    cases: Vec<Case>,
    progress: &Mutex<Progress>,
    skip: &HashSet<String>,
) -> Result<(), FlowError> {
    let ctx = run.ctx;
    let flow = run.flow.name();
    let today = run.started_at.date_naive();
    let maps = &ctx.config.maps;
    let mut changes: Vec<RecordChange> = Vec::new();
    let mut outgoing: Vec<Outgoing> = Vec::new();
    for case in &cases {
        lock(progress).see(case.last_updated_at);
        if skip.contains(&case.id) {
            continue;
        }
        let found = flow12::decided_rows(case, |a| ctx.config.primero.is_unhcr_agency(a));
        run.report(|r| {
            for reason in &found.excluded {
                r.exclude(reason);
            }
            r.fetched += (found.rows.len() + found.unknown.len()) as u64;
        });
        // R4: a status that is neither a decision nor `pending` is rejected, naming it.
        for unknown in found.unknown {
            let key = unknown.key();
            let record = ctx.ledger.get(flow, &key).await?;
            let hash = ctx.payload_hash(&json!({
                "row": format!("{}:{}", unknown.case_uuid, unknown.service_unique_id),
                "status": unknown.value,
            }));
            if unchanged_refusal(record.as_ref(), &hash) {
                run.report(|r| r.skipped += 1);
                continue;
            }
            let rejection = unknown.rejection();
            changes.push(
                run.rejected(&key, rejection.reason, rejection.message)
                    .with_payload_hash(hash),
            );
        }
        for row in found.rows {
            if run.stopping() {
                lock(progress).hold_at(row.case_last_updated_at);
                continue;
            }
            let Some((key, record)) = current_instance(run, &row).await? else {
                run.report(|r| r.skipped += 1);
                continue;
            };
            if let Some(r) = &record {
                if r.state == RecordState::Failed && r.next_retry_at.is_some_and(|t| t > ctx.now())
                {
                    // R9: tried again once due; the cursor waits for it.
                    run.report(|rep| rep.exclude(EXCLUDED_RETRY_NOT_DUE));
                    lock(progress).hold_at(row.case_last_updated_at);
                    continue;
                }
            }
            let attempts = record.as_ref().map_or(0, |r| r.attempts);
            let built = build_record(run, &row, today, maps).await?;
            let (record_out, hash) = match built {
                Ok(rec) => {
                    let hash = ctx.payload_hash(&flow12::record_json(&rec));
                    (Ok(rec), hash)
                }
                Err(rejection) => {
                    let hash = ctx.payload_hash(&json!({
                        "row": row.row_key(),
                        "decision": row.decision.as_str(),
                        "number": row.intervention_number,
                        "reason": rejection.reason,
                    }));
                    (Err(rejection), hash)
                }
            };
            if unchanged_refusal(record.as_ref(), &hash) {
                run.report(|r| r.skipped += 1);
                continue;
            }
            match record_out {
                Ok(rec) => outgoing.push(Outgoing {
                    row,
                    key,
                    record: rec,
                    hash,
                    attempts,
                }),
                Err(rejection) => changes.push(
                    run.rejected(&key, rejection.reason, rejection.message)
                        .with_decision(row.decision.as_str())
                        .with_payload_hash(hash),
                ),
            }
        }
    }
    run.commit(changes, None).await?;
    if outgoing.is_empty() {
        return Ok(());
    }
    if run.dry_run {
        for o in &outgoing {
            let mut fields: Vec<String> = vec!["ExternalId".into(), "Attachments.Comment".into()];
            fields.extend(o.record.fields.iter().map(|(n, _)| n.clone()));
            run.preview(&o.key, "ingest SHP-2748", fields);
        }
        return Ok(());
    }
    // The write-back is a keyed update of the LP intervention (`ExternalId` = case_id), so
    // sending it again after a crash or a timeout between PING's answer and the ledger commit
    // (R5) sets the same status and date again, harmlessly; it does add the attachment comment
    // a second time. PING offers no way to ask whether an attachment exists, and a missed
    // decision is worse than a repeated comment, so the repeat is accepted; the ledger commit
    // follows each batch at once, which keeps that window to one batch.
    let records: Vec<IngestRecord> = outgoing.iter().map(|o| o.record.clone()).collect();
    let shp = &ctx.config.ping.shipping_processes.transfer_status;
    let outcome = ingest_isolated(run, shp, &records).await?;
    let mut changes = Vec::with_capacity(outgoing.len());
    for (i, tx) in outcome.applied {
        let o = &outgoing[i];
        let mut change = run
            .change(&o.key, RecordState::Confirmed)
            .with_decision(o.row.decision.as_str())
            .with_payload_hash(&o.hash)
            .with_attempt();
        if let Some(case_id) = &o.row.case_id {
            change = change.with_dest_id("case_id", case_id);
        }
        if let Some(tx) = tx.filter(|t| flow11::is_ident(t)) {
            change = change.with_ping_transaction_id(tx);
        }
        changes.push(change);
    }
    for (i, message) in outcome.refused {
        let o = &outgoing[i];
        changes.push(
            run.rejected(
                &o.key,
                VALIDATION_ERROR,
                format!("SHP-2748 refused the decision: {message}"),
            )
            .with_decision(o.row.decision.as_str())
            .with_payload_hash(&o.hash),
        );
    }
    for (i, message) in outcome.failed {
        let o = &outgoing[i];
        lock(progress).hold_at(o.row.case_last_updated_at);
        changes.push(
            run.failed(
                &o.key,
                TRANSIENT,
                format!("SHP-2748: {message}"),
                o.attempts,
            )
            .with_decision(o.row.decision.as_str())
            .with_payload_hash(&o.hash),
        );
    }
    run.commit(changes, None).await
}

fn lock(progress: &Mutex<Progress>) -> std::sync::MutexGuard<'_, Progress> {
    progress.lock().unwrap_or_else(|e| e.into_inner())
}

fn sent(r: &Record) -> bool {
    matches!(r.state, RecordState::Delivered | RecordState::Confirmed)
}

/// The instances of one status of one service row: the last one sent (if any), and the
/// number and record of the first one not sent (absent, failed, rejected...).
async fn instances(
    run: &RunCtx<'_>,
    row: &DecisionRow,
    decision: Decision,
) -> Result<(Option<Record>, u32, Option<Record>), FlowError> {
    let mut last_sent = None;
    let mut n = 1u32;
    loop {
        let key = flow12::decision_key(&row.case_uuid, &row.service_unique_id, decision, n);
        match run.ctx.ledger.get(run.flow.name(), &key).await? {
            Some(r) if sent(&r) => {
                last_sent = Some(r);
                n += 1;
            }
            other => return Ok((last_sent, n, other)),
        }
    }
}

/// The decision instance to handle for `row` (its key and ledger record), or `None` when
/// this decision was already sent (R5). A decision changed back to a status sent earlier
/// (accepted -> rejected -> accepted) is a new instance, with a new key, when the other
/// status was sent more recently. (The key parts of a record are indexed by the ledger, so
/// the case and service ids need no separate identifiers.)
async fn current_instance(
    run: &RunCtx<'_>,
    row: &DecisionRow,
) -> Result<Option<(String, Option<Record>)>, FlowError> {
    let (last_sent, next, next_record) = instances(run, row, row.decision).await?;
    let current = Some((row.instance_key(next), next_record));
    let Some(last_sent) = last_sent else {
        return Ok(current);
    };
    let (other_sent, _, _) = instances(run, row, row.decision.other()).await?;
    if other_sent.is_some_and(|o| o.updated_at > last_sent.updated_at) {
        Ok(current)
    } else {
        Ok(None)
    }
}

/// Whether a rejected or conflict record is to be left alone: same payload as when it was
/// refused, and no operator asked for another try.
fn unchanged_refusal(record: Option<&Record>, hash: &str) -> bool {
    record.is_some_and(|r| {
        matches!(r.state, RecordState::Rejected | RecordState::Conflict)
            && !r.operator_retry
            && r.payload_hash.as_deref() == Some(hash)
    })
}

/// Steps 3 and 4 for one decision: the LP id and business unit (from the composite number, or
/// the ledger for a legacy one) and the SHP-2748 record.
async fn build_record(
    run: &RunCtx<'_>,
    row: &DecisionRow,
    today: chrono::NaiveDate,
    maps: &pp_mapping::Maps,
) -> Result<Result<IngestRecord, Rejection>, FlowError> {
    let (lp, bu) = match flow12::split_intervention_number(row.intervention_number.as_deref()) {
        Err(rejection) => return Ok(Err(rejection)),
        Ok(InterventionRef::Composite {
            lp_intervention_id,
            business_unit,
            ..
        }) => (lp_intervention_id, business_unit),
        Ok(InterventionRef::Legacy { number }) => {
            let fact = run.ctx.ledger.fact(FACT_INTERVENTION, &number).await?;
            match fact.as_ref().and_then(flow12::read_intervention_fact) {
                Some(found) => found,
                None => {
                    let rejection = flow12::unknown_legacy_number(&number);
                    debug_assert_eq!(rejection.reason, LEGACY_INTERVENTION_NUMBER);
                    return Ok(Err(rejection));
                }
            }
        }
    };
    Ok(flow12::decision_record(row, &lp, &bu, maps, today))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_without_last_updated_at_holds_the_cursor_where_the_run_started() {
        let from: DateTime<Utc> = "2026-03-01T10:00:00Z".parse().unwrap();
        let later: DateTime<Utc> = "2026-03-01T12:00:00Z".parse().unwrap();
        let mut p = Progress::new(from);
        p.see(Some(later));
        p.hold_at(Some(later));
        assert_eq!(p.hold, Some(later));
        p.hold_at(None);
        assert_eq!(
            p.hold,
            Some(from),
            "a failed decision of a case without a time"
        );
    }
}
