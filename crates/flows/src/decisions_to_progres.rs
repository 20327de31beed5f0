//! Flow 1.2 `decisions-to-progres`: Primero's accept/reject of the referrals that flow 1.1
//! delivered goes back to proGres (SHP-2748, with the decision as an attachment comment)
//! (flows.md, Flow 1.2).
//!
//! What a run does:
//! 1. read every page of the cases changed since the cursor (`last_updated_at=T..`, inclusive
//!    and second-granular; the first run starts from the flow's `start_from`), asking only for
//!    the fields this flow reads ([`CASE_FIELDS`]);
//! 2. keep the UNHCR-requested external referrals that are accepted or rejected (pure code,
//!    `pp_mapping::flow12`); any other status but `pending` is rejected `unknown_status`
//!    (R4). Key = `{case id}:{service unique_id}:{status}`, `…:{status}:{n}` for the `n`-th
//!    time a row gets that status (a decision changed back), so every decision instance has
//!    its own record and a confirmed one is never moved; skipped when already sent (R5). A
//!    failed decision waits for its `next_retry_at` (`retry_not_due`);
//! 3. split `progres_interventionnumber`; a legacy value (no LP id and business unit) is
//!    resolved through the ledger fact flow 1.1 wrote, else rejected
//!    `legacy_intervention_number`;
//! 4. send the decisions in batches of `ping.batch_size` with record isolation (R1), several
//!    batches at once (`ping.http.max_concurrency`);
//! 5. move the cursor, with the run's last records, to the greatest `last_updated_at` seen
//!    (R6): the next run re-reads that second and the ledger drops what was handled, so
//!    cases changed within the same second are not lost.
//!
//! The cursor never passes a case whose decision is still to be sent (failed, not due yet, or
//! not started because of shutdown), nor the run's start time: a case created or changed
//! while the run pages through the list is read again by the next run. Cases of decisions an
//! operator re-queued, or that failed and are due again, are read by id first (they may be
//! older than the cursor).
//!
//! Shape, so that a run costs little more than its API calls: four stages run side by side,
//! joined by small bounded queues.
//! - The *lister* reads the cases to retry, then the case pages; the next pages (up to
//!   `PAGES_AHEAD`) are read in the background while the current one is picked over, each
//!   handed over in parts of `PART` cases parsed in the background
//!   ([`pp_primero::PrimeroClient::case_pages_in_parts`]), and only the decided rows go on,
//!   one part at a time (below, a "page" of the flow is such a part).
//! - The *preparer* takes a page's rows a few batches' worth at a time: their ledger records
//!   are read in bulk (the likely instance keys of every row at once, further instances only
//!   for rows that have them), legacy numbers resolved, records built, and full batches handed
//!   on, so the first batches leave while the rest of the page is prepared; a batch a page
//!   leaves short is filled with the next page's rows. A page with decisions is started only
//!   once page `n - PARTS_UNSETTLED` is committed (memory stays bounded by a few Primero
//!   pages, R10); a page without any goes straight through.
//! - The *sender* keeps up to `ping.http.max_concurrency` batches in flight, whatever page
//!   they come from, so one page's last batches and the next page's first ones overlap.
//! - The *committer* records outcomes in order, one commit at a time: each batch's outcomes
//!   are queued as soon as PING answers, and whatever is queued while a commit runs goes into
//!   the next one, so commits overlap the batches still in flight.
//!
//! The cursor is written only after every outcome is. When a stage fails (credentials
//! refused, a ledger read or commit refused), nothing new is started, the batches in flight
//! are awaited and every outcome already known is still offered to the ledger before the
//! error is returned.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures::channel::mpsc;
use futures::stream::{FuturesOrdered, FuturesUnordered, StreamExt};
use pp_ledger::{Record, RecordChange, RecordState};
use pp_mapping::flow11::{self, Rejection, TRANSIENT, VALIDATION_ERROR};
use pp_mapping::flow12::{
    self, DecisionRow, InterventionRef, UnknownStatusRow, LEGACY_INTERVENTION_NUMBER,
};
use pp_ping::IngestRecord;
use pp_primero::{format_cursor, Case, CaseQuery, PrimeroClient, PrimeroError};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::referrals_to_primero::{ingest_isolated, IngestOutcomes, FACT_INTERVENTION};
use crate::referrals_to_progres::EXCLUDED_RETRY_NOT_DUE;
use crate::{FlowError, RunCtx};

/// Pages read ahead at once, once the first has told how many there are: one page at a time,
/// the listing is a chain of round trips (and of the server's work on each page) that takes
/// longer than the sending at 10,000 decisions. With four fields a case is small, so a few
/// pages of 1,000 are cheap to hold. (Smaller pages do not help: each costs a round trip and
/// the server's work, and they came back late while both processes were busy.)
const PAGES_AHEAD: usize = 3;

/// Cases per part a page is handed over in ([`PrimeroClient::case_pages_in_parts`]): the
/// first decisions are prepared and sent while the rest of the first page is still being
/// parsed, instead of after all 1,000 cases are.
const PART: usize = 100;

/// Parts with decisions prepared or in delivery while earlier ones wait for their commit: a
/// part is started only once part `n - PARTS_UNSETTLED` is committed (three pages' worth;
/// with two, the sender ran dry while the page before last committed). A page's rows and
/// records are about a megabyte at 1,000 decisions.
const PARTS_UNSETTLED: u64 = 3 * pp_primero::PAGE_SIZE / PART as u64;

/// Failed decisions read by id per run, at most.
const RETRIES_PER_RUN: i64 = 1000;

/// The case fields the flow reads (`pp_mapping::flow12::decided_rows` and
/// `decision_record`): Primero adds `id` and `enabled`, and always sends `last_updated_at`
/// (asked for anyway, the cursor depends on it).
pub const CASE_FIELDS: &[&str] = &["case_id", "owned_by", "last_updated_at", "services_section"];

/// Keys per ledger read statement.
const KEYS_PER_READ: usize = 500;

/// Ledger reads (key chunks, legacy facts) and case reads by id run at once, at most.
const READS_AT_ONCE: usize = 4;

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

    /// The cursor after the run: the greatest time seen, but never past a held case, the
    /// run's start nor back before where it started. `None` when no case was seen.
    fn cursor(&self, started_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut cursor = self.max_seen?.min(started_at);
        if let Some(hold) = self.hold {
            cursor = cursor.min(hold);
        }
        Some(cursor.max(self.from))
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
    /// Whether a failure holds the cursor (not for the cases read by id).
    holds: bool,
    /// The page (of the flow, see [`PART`]) the decision came from.
    page: u64,
}

/// The decision rows of one page, as the lister hands them to the preparer.
struct PageRows {
    /// Page number in this run, from 1 (the cases read by id, if any, are page 1).
    n: u64,
    /// Whether the rows hold the cursor (false for the cases read by id).
    holds: bool,
    rows: Vec<DecisionRow>,
    unknown: Vec<UnknownStatusRow>,
}

/// What the preparer hands the sender.
enum Work {
    /// One batch (of one page, or of the end of one and the start of the next ones).
    Batch(Vec<Outgoing>),
    /// Every batch of page `n` has been handed over.
    PageEnd(u64),
}

/// What the stages send the committer.
enum Note {
    /// Outcomes to record.
    Changes(Vec<RecordChange>),
    /// Every outcome of page `n` has been sent.
    PageDone(u64),
}

/// A stage's end of the committer: queue outcomes, mark pages, see whether a commit failed.
#[derive(Clone)]
struct Outbox<'f> {
    tx: mpsc::UnboundedSender<Note>,
    /// The last page whose outcomes are all committed (or refused).
    settled: watch::Receiver<u64>,
    /// Set when a commit failed: start nothing new.
    failed: &'f AtomicBool,
}

impl Outbox<'_> {
    fn send(&self, changes: Vec<RecordChange>) {
        if !changes.is_empty() {
            // The committer lives as long as the stages (they are joined): sending cannot fail.
            let _ = self.tx.unbounded_send(Note::Changes(changes));
        }
    }

    fn page_done(&self, n: u64) {
        let _ = self.tx.unbounded_send(Note::PageDone(n));
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Waits until page `n` is committed (returns at once for `n == 0`).
    async fn settled(&mut self, n: u64) {
        // An error means the committer ended, which it only does after the stages: not here.
        let _ = self.settled.wait_for(|&done| done >= n).await;
    }
}

/// Records the outcomes the stages queue, in order, one commit at a time; whatever was
/// queued while a commit ran goes into the next. A refused commit is remembered (and the
/// stages told to start nothing new), but later outcomes are still offered to the ledger:
/// they may concern decisions PING has already applied. Ends when every stage has ended and
/// everything queued is handled; returns the first commit error.
async fn commit_in_order(
    run: &RunCtx<'_>,
    mut rx: mpsc::UnboundedReceiver<Note>,
    settled: watch::Sender<u64>,
    failed: &AtomicBool,
) -> Result<(), FlowError> {
    let mut first_error = None;
    while let Some(note) = rx.next().await {
        let mut changes = Vec::new();
        let mut done = None;
        let mut take = |note: Note| match note {
            Note::Changes(c) => changes.extend(c),
            Note::PageDone(n) => done = Some(n),
        };
        take(note);
        while let Ok(note) = rx.try_recv() {
            take(note);
        }
        if !changes.is_empty() {
            if let Err(e) = run.commit(changes, None).await {
                failed.store(true, Ordering::SeqCst);
                first_error.get_or_insert(e);
            }
        }
        if let Some(n) = done {
            settled.send_replace(n);
        }
    }
    first_error.map_or(Ok(()), Err)
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
    // The first page is requested now, while the decisions to retry are looked at.
    // Of each service row, only what step 2 reads is parsed (the rest is most of the page).
    let query = CaseQuery::updated_since(from)
        .with_fields(CASE_FIELDS.iter().copied())
        .keeping_service_row_fields(flow12::SERVICE_ROW_FIELDS.iter().copied());
    let mut pages = ctx.primero.case_pages_in_parts(&query, PAGES_AHEAD, PART)?;

    let progress = Mutex::new(Progress::new(from));
    let failed = AtomicBool::new(false);
    let (note_tx, note_rx) = mpsc::unbounded();
    let (settled_tx, settled_rx) = watch::channel(0u64);
    let outbox = Outbox {
        tx: note_tx,
        settled: settled_rx,
        failed: &failed,
    };
    // One page of rows waits for the preparer; prepared batches wait for the sender.
    let (rows_tx, rows_rx) = tokio::sync::mpsc::channel::<PageRows>(1);
    let at_once = ctx.config.ping.http.max_concurrency.max(1);
    let (work_tx, work_rx) = tokio::sync::mpsc::channel::<Work>(at_once);

    let lister = {
        let outbox = outbox.clone();
        let (progress, pages) = (&progress, &mut pages);
        async move {
            // Records an operator re-queued, and failed ones that are due again: their cases
            // may be older than the cursor, so they are read by id. Their times do not move
            // the cursor, and the cursor pass leaves these cases alone (each record is
            // handled once per run).
            let retried = cases_to_retry(run).await?;
            let handled: HashSet<String> = retried.iter().map(|c| c.id.clone()).collect();
            let mut n = 0u64;
            if !retried.is_empty() {
                n += 1;
                let rows = page_rows(run, n, &retried, None, &HashSet::new());
                if rows_tx.send(rows).await.is_err() {
                    return Ok(());
                }
            }
            while let Some(cases) = pages.next_page().await? {
                if outbox.failed() {
                    break;
                }
                n += 1;
                let rows = page_rows(run, n, &cases, Some(progress), &handled);
                // A page of cases is tens of thousands of allocations: freed on a blocking
                // thread, not on the run's own, where the first batches wait.
                tokio::task::spawn_blocking(move || drop(cases));
                if rows_tx.send(rows).await.is_err() {
                    // A later stage stopped (and says why).
                    break;
                }
                // The preparer (polled by the same task) starts on these rows before the next
                // part, already parsed, is picked over.
                tokio::task::yield_now().await;
            }
            Ok::<(), FlowError>(())
        }
    };
    let preparer = prepare(run, rows_rx, work_tx, &progress, outbox.clone());
    let sender = send_all(run, work_rx, &progress, outbox.clone());
    drop(outbox);
    let committer = commit_in_order(run, note_rx, settled_tx, &failed);
    let (listed, prepared, sent, committed) = futures::join!(lister, preparer, sender, committer);
    drop(pages);
    // The stage that failed first says why; the others stopped because of it.
    let mut errors = [listed, prepared, sent, committed]
        .into_iter()
        .filter_map(Result::err);
    if let Some(e) = errors.next() {
        for other in errors {
            tracing::error!(flow, error = %other, "also failed in this run");
        }
        return Err(e);
    }

    let progress = progress.into_inner().unwrap_or_else(|e| e.into_inner());
    let Some(cursor) = progress.cursor(run.started_at) else {
        return Ok(());
    };
    let text = format_cursor(cursor);
    if stored.as_deref() != Some(text.as_str()) {
        run.commit(Vec::new(), Some(&text)).await?;
    }
    Ok(())
}

fn lock(progress: &Mutex<Progress>) -> std::sync::MutexGuard<'_, Progress> {
    progress.lock().unwrap_or_else(|e| e.into_inner())
}

/// The cases of the decisions to try again (re-queued by an operator, or failed and due),
/// read by id a few at a time.
async fn cases_to_retry(run: &RunCtx<'_>) -> Result<Vec<Case>, FlowError> {
    let ctx = run.ctx;
    let flow = run.flow.name();
    let mut again = ctx.ledger.pending_operator_retries(flow).await?;
    again.extend(
        ctx.ledger
            .due_for_retry(flow, run.started_at, RETRIES_PER_RUN)
            .await?,
    );
    let mut case_ids: Vec<String> = again
        .iter()
        .filter_map(|r| r.key.split(':').next().map(str::to_owned))
        .collect();
    case_ids.sort_unstable();
    case_ids.dedup();
    let mut ids = case_ids.into_iter();
    let mut reading = FuturesOrdered::new();
    let mut cases = Vec::new();
    loop {
        while reading.len() < READS_AT_ONCE {
            let Some(id) = ids.next() else { break };
            reading.push_back(read_case(&ctx.primero, id));
        }
        let Some((id, result)) = reading.next().await else {
            break;
        };
        match result {
            Ok(Some(case)) => cases.push(case),
            // Left for a later run (or for the operator: the case is gone).
            Ok(None) => tracing::warn!(case = %id, "decision to retry: case not found"),
            Err(e) if e.class() == pp_http::ErrorClass::Auth => return Err(e.into()),
            Err(e) => tracing::warn!(case = %id, error = %e, "decision to retry: case not read"),
        }
    }
    Ok(cases)
}

/// One case by id, with the id (for the log).
async fn read_case(
    primero: &PrimeroClient,
    id: String,
) -> (String, Result<Option<Case>, PrimeroError>) {
    let result = primero.get_case(&id).await;
    (id, result)
}

/// Step 2 for the cases of page `n`: the decided rows and the rows with an unknown status,
/// counted in the report. With `progress` (the cursor pass), each case's time is seen and a
/// row not started because of shutdown holds the cursor; cases in `skip` were handled
/// earlier in this run (only their times count).
fn page_rows(
    run: &RunCtx<'_>,
    n: u64,
    cases: &[Case],
    progress: Option<&Mutex<Progress>>,
    skip: &HashSet<String>,
) -> PageRows {
    let config = &run.ctx.config;
    let mut page = PageRows {
        n,
        holds: progress.is_some(),
        rows: Vec::new(),
        unknown: Vec::new(),
    };
    for case in cases {
        if let Some(p) = progress {
            lock(p).see(case.last_updated_at);
        }
        if skip.contains(&case.id) {
            continue;
        }
        let found = flow12::decided_rows(case, |a| config.primero.is_unhcr_agency(a));
        run.report(|r| {
            for reason in &found.excluded {
                r.exclude(reason);
            }
            r.fetched += (found.rows.len() + found.unknown.len()) as u64;
        });
        page.unknown.extend(found.unknown);
        for row in found.rows {
            if run.stopping() {
                if let Some(p) = progress {
                    lock(p).hold_at(row.case_last_updated_at);
                }
            } else {
                page.rows.push(row);
            }
        }
    }
    page
}

/// The preparer: for each page (a part of one, see [`PART`]), rejects the unknown statuses,
/// then takes the decided rows a few batches' worth at a time (their ledger records read in
/// bulk, legacy numbers resolved, records built) and hands full batches to the sender, so the
/// first batches leave while the rest of the page is prepared. A page with decisions is
/// started only once page `n - PARTS_UNSETTLED` is committed. A page's last rows that do not
/// fill a batch wait for the next page's (a page's end would otherwise cut a batch short and
/// cost a PING call): the page is told ended once they are handed over. Stops quietly when
/// the sender has stopped (it says why).
async fn prepare(
    run: &RunCtx<'_>,
    mut rows_rx: tokio::sync::mpsc::Receiver<PageRows>,
    work_tx: tokio::sync::mpsc::Sender<Work>,
    progress: &Mutex<Progress>,
    mut outbox: Outbox<'_>,
) -> Result<(), FlowError> {
    let batch_size = run.ctx.config.ping.batch_size.max(1);
    let rows_at_once = batch_size.saturating_mul(2);
    let mut batcher = Batcher::new(batch_size);
    // Pages prepared whose end is still to be told, in order: the batcher holds rows of the
    // first of them (and of the ones after it that have rows).
    let mut unended: Vec<u64> = Vec::new();
    let mut stopped = false;
    while let Some(page) = rows_rx.recv().await {
        if outbox.failed() {
            stopped = true;
            break;
        }
        let n = page.n;
        if page.rows.is_empty() && page.unknown.is_empty() {
            // Nothing to prepare or hold: the page only has to be marked done in order (at
            // 10,000 decisions, the pages of undecided cases waited here for commits and
            // came after the last send).
            if !end_pages(&work_tx, &mut unended, Some(n), batcher.is_empty()).await {
                return Ok(());
            }
            continue;
        }
        let gate = n.saturating_sub(PARTS_UNSETTLED);
        if unended.first().is_some_and(|&p| p <= gate) {
            // The gate waits for a page whose last rows wait in the batcher for rows of a
            // later page, which may never come (the pages between had none to send): they
            // go now, in a short batch, so that the page can be committed.
            if !flush(&work_tx, &mut batcher, &mut unended).await {
                return Ok(());
            }
        }
        tokio::select! {
            _ = outbox.settled(gate) => {}
            _ = work_tx.closed() => return Ok(()),
        }
        outbox.send(unknown_rejections(run, page.unknown).await?);
        let mut rows = page.rows.into_iter();
        loop {
            let chunk: Vec<DecisionRow> = rows.by_ref().take(rows_at_once).collect();
            if chunk.is_empty() {
                break;
            }
            let (outgoing, rejections) = prepare_rows(run, chunk, n, page.holds, progress).await?;
            outbox.send(rejections);
            if run.dry_run {
                for o in &outgoing {
                    let mut fields: Vec<String> =
                        vec!["ExternalId".into(), "Attachments.Comment".into()];
                    fields.extend(o.record.fields.iter().map(|(n, _)| n.clone()));
                    run.preview(&o.key, "ingest SHP-2748", fields);
                }
                continue;
            }
            for o in outgoing {
                for batch in batcher.push(o) {
                    if work_tx.send(Work::Batch(batch)).await.is_err() {
                        return Ok(());
                    }
                    // The batcher now holds rows of this page only, if any: the earlier
                    // pages are handed over whole.
                    if !end_pages(&work_tx, &mut unended, None, true).await {
                        return Ok(());
                    }
                }
            }
        }
        if !end_pages(&work_tx, &mut unended, Some(n), batcher.is_empty()).await {
            return Ok(());
        }
    }
    // After a refused commit nothing new starts: held rows are left for a later run, as the
    // pages not read yet are (their pages are not told ended).
    if !stopped {
        flush(&work_tx, &mut batcher, &mut unended).await;
    }
    Ok(())
}

/// Hands over the rows the batcher holds, in a batch however short, then ends the pages
/// waiting for them. False when the sender has stopped.
async fn flush(
    work_tx: &tokio::sync::mpsc::Sender<Work>,
    batcher: &mut Batcher,
    unended: &mut Vec<u64>,
) -> bool {
    if let Some(batch) = batcher.finish() {
        if work_tx.send(Work::Batch(batch)).await.is_err() {
            return false;
        }
    }
    end_pages(work_tx, unended, None, true).await
}

/// Tells the sender that the pages in `unended`, then page `n` (if given), are handed over
/// whole, in order, when `nothing_held` (the batcher holds no row); otherwise `n` waits in
/// `unended`. False when the sender has stopped.
async fn end_pages(
    work_tx: &tokio::sync::mpsc::Sender<Work>,
    unended: &mut Vec<u64>,
    n: Option<u64>,
    nothing_held: bool,
) -> bool {
    unended.extend(n);
    if !nothing_held {
        return true;
    }
    for p in unended.drain(..) {
        if work_tx.send(Work::PageEnd(p)).await.is_err() {
            return false;
        }
    }
    true
}

/// R4: the rows whose status is neither a decision nor `pending` are rejected, naming it
/// (unless rejected before for the same value).
async fn unknown_rejections(
    run: &RunCtx<'_>,
    unknown: Vec<UnknownStatusRow>,
) -> Result<Vec<RecordChange>, FlowError> {
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = unknown.iter().map(UnknownStatusRow::key).collect();
    let records = read_records(run, &keys).await?;
    let mut changes = Vec::new();
    for (u, key) in unknown.into_iter().zip(keys) {
        let hash = run.ctx.payload_hash(&json!({
            "row": format!("{}:{}", u.case_uuid, u.service_unique_id),
            "status": u.value,
        }));
        if unchanged_refusal(records.get(&key), &hash) {
            run.report(|r| r.held += 1);
            continue;
        }
        let rejection = u.rejection();
        changes.push(
            run.rejected(&key, rejection.reason, rejection.message)
                .with_payload_hash(hash),
        );
    }
    Ok(changes)
}

/// Steps 2 (R5, R9), 3 and 4 for some decided rows: the decisions to send, and the
/// rejections (legacy numbers unknown, rows that cannot be sent).
async fn prepare_rows(
    run: &RunCtx<'_>,
    rows: Vec<DecisionRow>,
    page: u64,
    holds: bool,
    progress: &Mutex<Progress>,
) -> Result<(Vec<Outgoing>, Vec<RecordChange>), FlowError> {
    let ctx = run.ctx;
    let today = run.started_at.date_naive();
    let maps = &ctx.config.maps;
    let instances = current_instances(run, &rows).await?;
    // The decisions to build: not sent yet, and due.
    let mut due: Vec<(DecisionRow, String, Option<Record>)> = Vec::new();
    for (row, instance) in rows.into_iter().zip(instances) {
        let Some((key, record)) = instance else {
            run.report(|r| r.skipped += 1);
            continue;
        };
        if let Some(r) = &record {
            if r.state == RecordState::Failed && r.next_retry_at.is_some_and(|t| t > ctx.now()) {
                // R9: tried again once due; the cursor waits for it.
                run.report(|rep| rep.exclude(EXCLUDED_RETRY_NOT_DUE));
                if holds {
                    lock(progress).hold_at(row.case_last_updated_at);
                }
                continue;
            }
        }
        due.push((row, key, record));
    }
    let facts = legacy_facts(run, due.iter().map(|(row, _, _)| row)).await?;
    let mut outgoing = Vec::new();
    let mut changes = Vec::new();
    for (row, key, record) in due {
        let attempts = record.as_ref().map_or(0, |r| r.attempts);
        let (record_out, hash) = match build_record(&row, &facts, today, maps) {
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
            run.report(|r| r.held += 1);
            continue;
        }
        match record_out {
            Ok(rec) => outgoing.push(Outgoing {
                row,
                key,
                record: rec,
                hash,
                attempts,
                holds,
                page,
            }),
            Err(rejection) => changes.push(
                run.rejected(&key, rejection.reason, rejection.message)
                    .with_decision(row.decision.as_str())
                    .with_payload_hash(hash),
            ),
        }
    }
    Ok((outgoing, changes))
}

/// Groups decisions, in order, into batches of at most `size` with each `ExternalId` once per
/// batch, as `ingest_isolated` would (a refusal names records by `ExternalId`, compared
/// trimmed and case-insensitively), so that each batch goes out as one request.
struct Batcher {
    size: usize,
    current: Vec<Outgoing>,
    ids: HashSet<String>,
}

impl Batcher {
    fn new(size: usize) -> Self {
        Batcher {
            size: size.max(1),
            current: Vec::new(),
            ids: HashSet::new(),
        }
    }

    /// Adds a decision; returns the batches it closed: the one before it, when it repeats an
    /// `ExternalId` of that one, and the one it fills (handed over at once, not when the next
    /// decision comes: that may be a page later).
    fn push(&mut self, o: Outgoing) -> Vec<Vec<Outgoing>> {
        let mut closed = Vec::new();
        let id = o.record.external_id.trim().to_lowercase();
        if self.ids.contains(&id) {
            self.ids.clear();
            closed.push(std::mem::take(&mut self.current));
        }
        self.ids.insert(id);
        self.current.push(o);
        if self.current.len() >= self.size {
            self.ids.clear();
            closed.push(std::mem::take(&mut self.current));
        }
        closed
    }

    /// Whether no decision waits for its batch.
    fn is_empty(&self) -> bool {
        self.current.is_empty()
    }

    /// The last batch, if not empty.
    fn finish(&mut self) -> Option<Vec<Outgoing>> {
        self.ids.clear();
        let rest = std::mem::take(&mut self.current);
        (!rest.is_empty()).then_some(rest)
    }
}

/// The sender: keeps up to `ping.http.max_concurrency` batches in flight, whatever page they
/// come from, and queues each batch's outcomes as soon as PING has answered; tells the
/// committer when every batch of a page is done (pages in order).
///
/// The write-back is a keyed update of the LP intervention (`ExternalId` = case_id), so
/// sending it again after a crash or a timeout between PING's answer and the ledger commit
/// (R5) sets the same status and date again, harmlessly; it does add the attachment comment a
/// second time. PING offers no way to ask whether an attachment exists, and a missed decision
/// is worse than a repeated comment, so the repeat is accepted; each batch's outcomes go to
/// the committer as soon as PING has answered, which keeps that window to the batches in
/// flight and one commit.
///
/// After an error (credentials refused) or a refused commit, no new batch is started; the
/// batches in flight are awaited and their outcomes queued before the error is returned.
async fn send_all(
    run: &RunCtx<'_>,
    mut work_rx: tokio::sync::mpsc::Receiver<Work>,
    progress: &Mutex<Progress>,
    outbox: Outbox<'_>,
) -> Result<(), FlowError> {
    let shp = run
        .ctx
        .config
        .ping
        .shipping_processes
        .transfer_status
        .as_str();
    let at_once = run.ctx.config.ping.http.max_concurrency.max(1);
    let mut in_flight = FuturesUnordered::new();
    // Batches not done yet, by page; pages whose batches have all been handed over.
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    let mut ended: BTreeSet<u64> = BTreeSet::new();
    let mut input = true;
    let mut first_error: Option<FlowError> = None;
    loop {
        let take = input && first_error.is_none() && !outbox.failed() && in_flight.len() < at_once;
        if !take && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            work = work_rx.recv(), if take => match work {
                Some(Work::Batch(batch)) => {
                    for page in pages_of(&batch) {
                        *open.entry(page).or_default() += 1;
                    }
                    in_flight.push(send_batch(run, shp, batch));
                }
                Some(Work::PageEnd(n)) => {
                    ended.insert(n);
                }
                None => input = false,
            },
            Some((batch, mut outcome)) = in_flight.next(), if !in_flight.is_empty() => {
                for page in pages_of(&batch) {
                    if let Some(left) = open.get_mut(&page) {
                        *left = left.saturating_sub(1);
                    }
                }
                // Credentials refused part-way: the outcomes PING gave are queued all the same.
                if let Some(e) = outcome.error.take() {
                    first_error.get_or_insert(e);
                }
                outbox.send(outcome_changes(run, &batch, outcome, progress));
            }
        }
        while let Some(&n) = ended.first() {
            if open.get(&n).copied().unwrap_or(0) > 0 {
                break;
            }
            ended.remove(&n);
            open.remove(&n);
            outbox.page_done(n);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Sends one batch with record isolation; the batch comes back with its outcomes (and the
/// error that stopped it part-way, if any, in [`IngestOutcomes::error`]).
async fn send_batch(
    run: &RunCtx<'_>,
    shp: &str,
    batch: Vec<Outgoing>,
) -> (Vec<Outgoing>, IngestOutcomes) {
    let records: Vec<&IngestRecord> = batch.iter().map(|o| &o.record).collect();
    let outcome = ingest_isolated(run, shp, &records).await;
    drop(records);
    (batch, outcome)
}

/// The pages a batch's decisions come from, each once (they are in page order).
fn pages_of(batch: &[Outgoing]) -> Vec<u64> {
    let mut pages: Vec<u64> = batch.iter().map(|o| o.page).collect();
    pages.dedup();
    pages
}

/// The ledger changes of one batch's outcomes (indices in `outcome` are positions in
/// `batch`); a failed decision holds the cursor.
fn outcome_changes(
    run: &RunCtx<'_>,
    batch: &[Outgoing],
    outcome: IngestOutcomes,
    progress: &Mutex<Progress>,
) -> Vec<RecordChange> {
    let mut changes = Vec::with_capacity(batch.len());
    // Applied in proGres: written to the destination and verified at once.
    run.report(|r| r.delivered += outcome.applied.len() as u64);
    for (i, tx) in outcome.applied {
        let o = &batch[i];
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
        let o = &batch[i];
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
        let o = &batch[i];
        if o.holds {
            lock(progress).hold_at(o.row.case_last_updated_at);
        }
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
    changes
}

fn sent(r: &Record) -> bool {
    matches!(r.state, RecordState::Delivered | RecordState::Confirmed)
}

/// Where the search for one row's current decision instance stands (times are the
/// `updated_at` of ledger records).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walk {
    /// Walking the instances of the row's own status: `n` is the next to look at.
    Own {
        n: u32,
        last_sent: Option<DateTime<Utc>>,
    },
    /// The row's status was sent before (last at `own_last`) and `next` is its first instance
    /// not sent; walking the other status for its last sent instance.
    Other {
        n: u32,
        last_sent: Option<DateTime<Utc>>,
        own_last: DateTime<Utc>,
        next: u32,
    },
    /// The instance to handle, or `None` when the decision was already sent.
    Done(Option<u32>),
}

impl Walk {
    const START: Walk = Walk::Own {
        n: 1,
        last_sent: None,
    };

    /// Moves on as far as the records in `known` allow; returns the key it needs next, or
    /// `None` when done.
    fn advance(
        &mut self,
        row: &DecisionRow,
        known: &HashMap<String, Option<Record>>,
    ) -> Option<String> {
        loop {
            let (decision, n) = match *self {
                Walk::Own { n, .. } => (row.decision, n),
                Walk::Other { n, .. } => (row.decision.other(), n),
                Walk::Done(_) => return None,
            };
            let key = flow12::decision_key(&row.case_uuid, &row.service_unique_id, decision, n);
            let sent_at = match known.get(&key) {
                None => return Some(key),
                Some(Some(r)) if sent(r) => Some(r.updated_at),
                Some(_) => None,
            };
            *self = match (*self, sent_at) {
                (Walk::Own { n, .. }, Some(at)) => Walk::Own {
                    n: n + 1,
                    last_sent: Some(at),
                },
                (Walk::Own { n, last_sent: None }, None) => Walk::Done(Some(n)),
                (
                    Walk::Own {
                        n,
                        last_sent: Some(own_last),
                    },
                    None,
                ) => Walk::Other {
                    n: 1,
                    last_sent: None,
                    own_last,
                    next: n,
                },
                (
                    Walk::Other {
                        n, own_last, next, ..
                    },
                    Some(at),
                ) => Walk::Other {
                    n: n + 1,
                    last_sent: Some(at),
                    own_last,
                    next,
                },
                // A decision changed back to a status sent earlier (accepted -> rejected ->
                // accepted) is a new instance when the other status was sent more recently;
                // otherwise it was sent already (R5).
                (
                    Walk::Other {
                        last_sent,
                        own_last,
                        next,
                        ..
                    },
                    None,
                ) => Walk::Done(last_sent.is_some_and(|o| o > own_last).then_some(next)),
                (done @ Walk::Done(_), _) => done,
            };
        }
    }
}

/// For each row, the decision instance to handle (its key and ledger record), or `None` when
/// this decision was already sent (R5). Instance `n` of a status has key `…:{status}` (n = 1)
/// or `…:{status}:{n}`; the current one is the first not sent, and a status sent before is
/// sent again only when the other status was sent more recently (a decision changed back).
/// The records are read in bulk: first the likely keys of every row (its status's first two
/// instances, the other status's first), then only what rows with more instances still need,
/// one round per further instance. (The ledger indexes the key parts that look like
/// identifiers, the case and service ids here, so they need no separate identifiers; the
/// status word and the instance counter are not indexed.)
async fn current_instances(
    run: &RunCtx<'_>,
    rows: &[DecisionRow],
) -> Result<Vec<Option<(String, Option<Record>)>>, FlowError> {
    let mut known: HashMap<String, Option<Record>> = HashMap::new();
    let mut wanted = Vec::with_capacity(rows.len() * 3);
    for row in rows {
        wanted.push(row.instance_key(1));
        wanted.push(row.instance_key(2));
        wanted.push(flow12::decision_key(
            &row.case_uuid,
            &row.service_unique_id,
            row.decision.other(),
            1,
        ));
    }
    let mut walks: Vec<Walk> = vec![Walk::START; rows.len()];
    loop {
        wanted.retain(|k| !known.contains_key(k));
        wanted.sort_unstable();
        wanted.dedup();
        let mut found = read_records(run, &wanted).await?;
        for key in wanted.drain(..) {
            let record = found.remove(&key);
            known.insert(key, record);
        }
        for (walk, row) in walks.iter_mut().zip(rows) {
            if let Some(key) = walk.advance(row, &known) {
                wanted.push(key);
            }
        }
        if wanted.is_empty() {
            break;
        }
    }
    Ok(walks
        .into_iter()
        .zip(rows)
        .map(|(walk, row)| match walk {
            Walk::Done(Some(n)) => {
                let key = row.instance_key(n);
                let record = known.get(&key).cloned().flatten();
                Some((key, record))
            }
            Walk::Done(None) => None,
            Walk::Own { .. } | Walk::Other { .. } => unreachable!("every walk ends"),
        })
        .collect())
}

/// The ledger records of `keys` (of this flow), a few statements at once.
async fn read_records(
    run: &RunCtx<'_>,
    keys: &[String],
) -> Result<HashMap<String, Record>, FlowError> {
    let flow = run.flow.name();
    let ledger = &run.ctx.ledger;
    let mut chunks = keys.chunks(KEYS_PER_READ);
    let mut reading = FuturesUnordered::new();
    let mut found = HashMap::with_capacity(keys.len());
    loop {
        while reading.len() < READS_AT_ONCE {
            let Some(chunk) = chunks.next() else { break };
            reading.push(ledger.get_many(flow, chunk));
        }
        let Some(part) = reading.next().await else {
            break;
        };
        found.extend(part?);
    }
    Ok(found)
}

/// The ledger facts of the legacy intervention numbers among `rows` (numbers without LP id
/// and business unit), by number; `None` for a number flow 1.1 never recorded.
async fn legacy_facts<'r>(
    run: &RunCtx<'_>,
    rows: impl Iterator<Item = &'r DecisionRow>,
) -> Result<HashMap<String, Option<Value>>, FlowError> {
    let mut numbers: Vec<String> = rows
        .filter_map(|row| {
            match flow12::split_intervention_number(row.intervention_number.as_deref()) {
                Ok(InterventionRef::Legacy { number }) => Some(number),
                _ => None,
            }
        })
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    let ledger = &run.ctx.ledger;
    let mut numbers = numbers.into_iter();
    let mut reading = FuturesUnordered::new();
    let mut facts = HashMap::new();
    loop {
        while reading.len() < READS_AT_ONCE {
            let Some(number) = numbers.next() else { break };
            reading.push(read_fact(ledger, number));
        }
        let Some(read) = reading.next().await else {
            break;
        };
        let (number, fact) = read?;
        facts.insert(number, fact);
    }
    Ok(facts)
}

/// The `intervention` fact of one number, with the number.
async fn read_fact(
    ledger: &pp_ledger::Ledger,
    number: String,
) -> Result<(String, Option<Value>), FlowError> {
    let fact = ledger.fact(FACT_INTERVENTION, &number).await?;
    Ok((number, fact))
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
/// the ledger fact of a legacy one, read beforehand into `facts`) and the SHP-2748 record.
fn build_record(
    row: &DecisionRow,
    facts: &HashMap<String, Option<Value>>,
    today: chrono::NaiveDate,
    maps: &pp_mapping::Maps,
) -> Result<IngestRecord, Rejection> {
    let (lp, bu) = match flow12::split_intervention_number(row.intervention_number.as_deref())? {
        InterventionRef::Composite {
            lp_intervention_id,
            business_unit,
            ..
        } => (lp_intervention_id, business_unit),
        InterventionRef::Legacy { number } => {
            let fact = facts.get(&number).and_then(Option::as_ref);
            match fact.and_then(flow12::read_intervention_fact) {
                Some(found) => found,
                None => {
                    let rejection = flow12::unknown_legacy_number(&number);
                    debug_assert_eq!(rejection.reason, LEGACY_INTERVENTION_NUMBER);
                    return Err(rejection);
                }
            }
        }
    };
    flow12::decision_record(row, &lp, &bu, maps, today)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pp_mapping::flow12::Decision;

    /// Compile-time guard: the daemon spawns runs on the multi-threaded runtime, so a run's
    /// future must be `Send` for every lifetime (stream combinators over closures that take
    /// borrowed arguments break that, and only show up where a run is spawned).
    #[allow(dead_code)]
    fn a_run_can_be_spawned(ctx: crate::FlowContext) {
        tokio::spawn(async move {
            let r = RunCtx::new(&ctx, crate::Flow::DecisionsToProgres, None, None, true);
            run(&r).await
        });
    }

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
        assert_eq!(p.cursor(later), Some(from));
    }

    #[test]
    fn the_cursor_stops_at_a_held_case_and_at_the_run_start() {
        let t = |s: &str| -> DateTime<Utc> { s.parse().unwrap() };
        let mut p = Progress::new(t("2026-03-01T10:00:00Z"));
        assert_eq!(p.cursor(t("2026-03-02T00:00:00Z")), None, "nothing seen");
        p.see(Some(t("2026-03-01T11:00:00Z")));
        p.see(Some(t("2026-03-01T13:00:00Z")));
        assert_eq!(
            p.cursor(t("2026-03-01T12:00:00Z")),
            Some(t("2026-03-01T12:00:00Z")),
            "never past the run's start"
        );
        p.hold_at(Some(t("2026-03-01T11:00:00Z")));
        assert_eq!(
            p.cursor(t("2026-03-02T00:00:00Z")),
            Some(t("2026-03-01T11:00:00Z"))
        );
    }

    fn outgoing(external_id: &str) -> Outgoing {
        Outgoing {
            row: row(Decision::Accepted),
            key: format!("k-{external_id}"),
            record: IngestRecord::new(external_id),
            hash: String::new(),
            attempts: 0,
            holds: true,
            page: 1,
        }
    }

    /// The batches (as `ExternalId`s) a batcher of `size` makes of `ids`.
    fn batched(ids: &[&str], size: usize) -> Vec<Vec<String>> {
        let mut b = Batcher::new(size);
        let mut out: Vec<Vec<Outgoing>> = ids.iter().flat_map(|id| b.push(outgoing(id))).collect();
        out.extend(b.finish());
        out.iter()
            .map(|batch| batch.iter().map(|o| o.record.external_id.clone()).collect())
            .collect()
    }

    #[test]
    fn batches_are_full_and_never_hold_an_external_id_twice() {
        let ids = ["a", "b", " A ", "c", "d", "e"];
        assert_eq!(
            batched(&ids, 2),
            [vec!["a", "b"], vec![" A ", "c"], vec!["d", "e"]]
        );
        assert_eq!(
            batched(&ids, 10),
            [vec!["a", "b"], vec![" A ", "c", "d", "e"]],
            "the second spelling of case a starts a new batch"
        );
        assert!(batched(&[], 3).is_empty());
        let mut b = Batcher::new(3);
        assert!(b.push(outgoing("x")).is_empty());
        assert!(!b.is_empty());
        assert_eq!(b.finish().map(|v| v.len()), Some(1));
        assert!(b.is_empty());
        let mut b = Batcher::new(2);
        assert!(b.push(outgoing("x")).is_empty());
        assert_eq!(
            b.push(outgoing("y")).len(),
            1,
            "a full batch is handed over when it fills, not with the next decision"
        );
        assert!(b.is_empty());
        assert!(
            b.finish().is_none(),
            "finished batches are not handed over twice"
        );
    }

    fn row(decision: Decision) -> DecisionRow {
        DecisionRow {
            case_uuid: "c".into(),
            case_id: Some("cid".into()),
            owned_by: None,
            service_unique_id: "s".into(),
            decision,
            intervention_number: None,
            rejection_reason: None,
            case_last_updated_at: None,
        }
    }

    fn record(key: &str, state: RecordState, minute: u32) -> Record {
        let at: DateTime<Utc> = format!("2026-03-01T10:{minute:02}:00Z").parse().unwrap();
        Record {
            flow: "decisions-to-progres".into(),
            key: key.into(),
            state,
            attempts: 1,
            next_retry_at: None,
            error_class: None,
            reason_code: None,
            message: None,
            dest_ids: Default::default(),
            ping_transaction_ids: Vec::new(),
            payload_hash: None,
            fallback_used: false,
            contact_substituted: false,
            decision: None,
            operator_retry: false,
            created_at: at,
            updated_at: at,
            last_run_id: None,
        }
    }

    /// Walks `row` over a ledger holding `records` (every other key absent), reading
    /// whatever the walk asks for; returns the outcome and the keys read one by one.
    fn walk(row: &DecisionRow, records: &[Record]) -> (Option<(String, Option<Record>)>, usize) {
        let ledger: HashMap<String, Record> =
            records.iter().map(|r| (r.key.clone(), r.clone())).collect();
        let mut known = HashMap::new();
        let mut w = Walk::START;
        let mut reads = 0;
        while let Some(key) = w.advance(row, &known) {
            reads += 1;
            let r = ledger.get(&key).cloned();
            known.insert(key, r);
        }
        match w {
            Walk::Done(d) => (
                d.map(|n| {
                    let key = row.instance_key(n);
                    let record = ledger.get(&key).cloned();
                    (key, record)
                }),
                reads,
            ),
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_walk_finds_the_current_instance_of_a_decision() {
        let acc = row(Decision::Accepted);
        // New: the first instance.
        let (d, _) = walk(&acc, &[]);
        assert_eq!(
            d.map(|(k, r)| (k, r.is_none())),
            Some(("c:s:accepted".into(), true))
        );
        // A failed first instance is the one to handle, with its record.
        let failed = record("c:s:accepted", RecordState::Failed, 1);
        let (d, reads) = walk(&acc, &[failed]);
        let (key, rec) = d.unwrap();
        assert_eq!(
            (key.as_str(), rec.unwrap().state, reads),
            ("c:s:accepted", RecordState::Failed, 1)
        );
        // Sent, and the other status never sent: nothing to do.
        let sent = record("c:s:accepted", RecordState::Confirmed, 1);
        assert_eq!(walk(&acc, std::slice::from_ref(&sent)).0, None);
        // Sent, then rejected later, and now accepted again: the second instance.
        let rejected = record("c:s:rejected", RecordState::Confirmed, 2);
        let (d, _) = walk(&acc, &[sent.clone(), rejected.clone()]);
        assert_eq!(d.unwrap().0, "c:s:accepted:2");
        // Rejected first, then accepted (sent): accepted again is nothing new.
        let older_rejection = record("c:s:rejected", RecordState::Confirmed, 0);
        assert_eq!(walk(&acc, &[sent.clone(), older_rejection]).0, None);
        // accepted, rejected, accepted:2, rejected:2, and accepted now: instance 3.
        let records = [
            sent,
            rejected,
            record("c:s:accepted:2", RecordState::Confirmed, 3),
            record("c:s:rejected:2", RecordState::Confirmed, 4),
        ];
        let (d, reads) = walk(&acc, &records);
        assert_eq!(d.unwrap().0, "c:s:accepted:3");
        assert_eq!(reads, 6, "accepted 1-3, rejected 1-3");
        // A rejected record of the other status does not count as sent.
        let refused = record("c:s:rejected", RecordState::Rejected, 9);
        let sent = record("c:s:accepted", RecordState::Confirmed, 1);
        assert_eq!(walk(&acc, &[sent, refused]).0, None);
    }
}
