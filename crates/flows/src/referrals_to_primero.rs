//! Flow 1.1 `referrals-to-primero`: proGres outgoing referrals (SHP-2747, details SHP-2358)
//! become Primero cases or service rows, and proGres is told "pending acknowledgement"
//! (SHP-2748) for the records that reached Primero (flows.md, Flow 1.1).
//!
//! Shape of a run:
//! 1. read the pending list page by page, keeping only the identifiers of each row (R10);
//!    LP ids are trimmed and GUIDs lowercased, as in the SHP-2358 rows; a row without a
//!    usable LP intervention id is rejected under a key made from its other identifiers (or a
//!    keyed hash of the row), an id the ledger would refuse as `malformed_identifier` (R1: the
//!    others go on); confirmed LP ids are skipped (R5), failed ones whose `next_retry_at` has
//!    not come are counted as `retry_not_due` (R9);
//! 2. per chunk of about 50 referrals (an individual's referrals kept in one chunk): read the
//!    details with one SHP-2358 call (bracketed id list), group, validate and map in pure
//!    code (`pp_mapping::flow11`), and look the chunk's individuals up in Primero: the ledger
//!    fact `individual_case` first (keyed by an HMAC of the individual id; Primero <= 2.10
//!    searches through Solr, which may not see a case created a moment ago), else one search
//!    for the whole chunk (`unhcr_individual_no[n]=…`, every hit checked exactly; when that
//!    search fails, each individual is searched on its own). Rejected and conflict records
//!    whose source did not change (same keyed payload hash) are held (counted, not sent) unless an operator
//!    re-queued them;
//! 3. deliver, while later chunks are still prepared: referrals of one individual one after
//!    another, individuals concurrently (the clients' limiters bound the requests in
//!    flight). A referral whose row is already in the case is not written again (R5), which
//!    also covers a crash between the Primero write and the write-back; a created case gets
//!    an id and a `case_id` derived from the individual (keyed hashes), so repeating the
//!    create returns the same case, and Primero's empty 204 answer leaves nothing to read back
//!    (one call per new case);
//! 4. write back, in batches of `ping.batch_size`, while deliveries go on; a refused batch
//!    is narrowed down to the refused records (R1). A record becomes `confirmed` after its
//!    write-back. Credentials refused part-way end the run once the write-backs PING applied
//!    are recorded.
//!
//! Every record change made once the details are known carries the intervention number,
//! business unit and LP id as identifiers, so an operator finds rejections, conflicts and
//! failures by the number they know. A referral already in Primero counts once in the report,
//! by the outcome of its write-back.
//!
//! Every delivery waits until its outcome is in the ledger before the individual's next
//! referral starts (concurrent deliveries share ledger transactions), so a crash loses
//! nothing that happened.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use futures::stream::{self, StreamExt};
use pp_http::ErrorClass as ApiClass;
use pp_ledger::{Record, RecordChange, RecordState};
use pp_mapping::flow11::{
    self, is_ident, normalize_lp_id, MappedReferral, ReferralGroup, CASE_ID_TAKEN, DUPLICATE_CASES,
    MALFORMED_IDENTIFIER, MISSING_LP_INTERVENTION_ID, MISSING_REQUIRED_FIELDS, TRANSIENT,
    VALIDATION_ERROR,
};
use pp_mapping::flow12::intervention_fact;
use pp_ping::rows::keys_2747;
use pp_ping::{FromRow, IngestRecord, InterventionDetailRow, PendingReferral, PingError, Row};
use pp_primero::{Case, CaseQuery, PrimeroError};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::referrals_to_progres::EXCLUDED_RETRY_NOT_DUE;
use crate::{FlowError, RunCtx};

/// Ledger fact: intervention number -> `{lp_intervention_id, business_unit}` (read by 1.2).
pub const FACT_INTERVENTION: &str = "intervention";
/// Ledger fact: keyed hash of the proGres individual id ([`individual_fact_key`]) ->
/// `{case_uuid, case_id}` of the Primero case that received the individual's referrals. The
/// individual number identifies a person, so it is never a key in the ledger (R11).
pub const FACT_INDIVIDUAL_CASE: &str = "individual_case";

/// The key of an individual's [`FACT_INDIVIDUAL_CASE`] fact: a keyed hash (HMAC with the
/// deployment's secret) of the individual id, so the ledger holds no individual number and a
/// guessed number cannot be checked against it.
pub fn individual_fact_key(run: &RunCtx<'_>, individual_id: &str) -> String {
    run.ctx
        .payload_hash(&json!({ "individual_case": individual_id }))
}

/// LP intervention ids per SHP-2358 request (PING takes a bracketed list).
const DETAILS_PER_CALL: usize = 50;
/// SHP-2358 requests in flight at once (the PING client's limiter bounds them too).
const DETAILS_IN_FLIGHT: usize = 8;

/// The identifiers an operator searches a referral by (dashboard), stored on every change of
/// its record: LP id, intervention number and business unit, from SHP-2358 once read, else
/// from SHP-2747. Values that could not be ledger identifiers are left out.
#[derive(Clone, Default)]
struct Ids {
    lp: String,
    number: Option<String>,
    business_unit: Option<String>,
}

impl Ids {
    /// `self` completed with the values of the SHP-2358 row (which take precedence).
    fn with_details(&self, row: Option<&InterventionDetailRow>) -> Ids {
        let Some(row) = row else {
            return self.clone();
        };
        Ids {
            lp: self.lp.clone(),
            number: row
                .intervention_number
                .clone()
                .or_else(|| self.number.clone()),
            business_unit: row
                .business_unit
                .clone()
                .or_else(|| self.business_unit.clone()),
        }
    }

    fn apply(&self, mut change: RecordChange) -> RecordChange {
        let ids = [
            ("lp_intervention_id", Some(self.lp.as_str())),
            ("intervention_number", self.number.as_deref()),
            ("business_unit", self.business_unit.as_deref()),
        ];
        for (name, value) in ids {
            if let Some(v) = value.map(str::trim).filter(|v| is_ident(v)) {
                change = change.with_dest_id(name, v);
            }
        }
        change
    }
}

/// A referral from the pending list. Every pending referral is held until the list is
/// chunked, so this keeps identifiers only: not the SHP-2747 row, nor the whole ledger record.
struct Pending {
    /// LP id (the key), intervention number and business unit of the SHP-2747 row (the
    /// business unit is used when SHP-2358 lacks it).
    ids: Ids,
    /// `progres_individual.indiv.progres_id` of the SHP-2747 row (keeps an individual's
    /// referrals in one chunk).
    individual: Option<String>,
    /// What the ledger knew of the referral before this run.
    prior: Option<Prior>,
}

/// The part of a referral's ledger record that a run reads: 10,000 pending referrals hold
/// this, not their whole [`Record`] (identifiers, messages, transaction ids).
struct Prior {
    state: RecordState,
    attempts: i64,
    operator_retry: bool,
    payload_hash: Option<String>,
}

impl From<Record> for Prior {
    fn from(r: Record) -> Self {
        Prior {
            state: r.state,
            attempts: r.attempts,
            operator_retry: r.operator_retry,
            payload_hash: r.payload_hash,
        }
    }
}

/// A mapped referral ready for Primero.
struct Ready {
    mapped: MappedReferral,
    ids: Ids,
    hash: String,
    /// Delivery attempts before this run.
    attempts: i64,
}

/// A referral in Primero, waiting for its write-back.
struct WriteBack {
    lp: String,
    business_unit: String,
    attempts: i64,
    /// What the write-back's outcome records with it: the search identifiers always; the
    /// case ids, facts and payload hash when no `delivered` change carried them (the row was
    /// already in Primero, so this run wrote nothing there).
    ids: Ids,
    found: Option<FoundInPrimero>,
}

/// What a referral already present in Primero records with its write-back outcome.
struct FoundInPrimero {
    case_uuid: String,
    case_id: Option<String>,
    facts: Vec<(&'static str, String, Value)>,
    hash: String,
    fallback_used: bool,
}

impl WriteBack {
    fn annotate(&self, change: RecordChange) -> RecordChange {
        let mut change = self.ids.apply(change);
        if let Some(f) = &self.found {
            change = with_case_ids(change, &f.case_uuid, f.case_id.as_deref())
                .with_payload_hash(&f.hash);
            for (kind, key, value) in &f.facts {
                change = change.with_fact(*kind, key, value.clone());
            }
            change.fallback_used |= f.fallback_used;
        }
        change
    }
}

/// Adds Primero's case ids (when usable as ledger identifiers).
fn with_case_ids(mut change: RecordChange, uuid: &str, case_id: Option<&str>) -> RecordChange {
    if is_ident(uuid) {
        change = change.with_dest_id("case_uuid", uuid);
    }
    if let Some(case_id) = case_id.filter(|c| is_ident(c)) {
        change = change.with_dest_id("case_id", case_id);
    }
    change
}

/// Runs flow 1.1 once.
pub async fn run(run: &RunCtx<'_>) -> Result<(), FlowError> {
    let ctx = run.ctx;
    let shp = &ctx.config.ping.shipping_processes;
    let flow = run.flow.name();

    // 1. The pending list, page by page (R10): each row becomes a small `Pending` (or a
    // rejection, committed with its page) before the next page is read, so only the ids of
    // the pending referrals outlive their page. An unreachable list endpoint or refused
    // credentials end the run.
    let mut pending: Vec<Pending> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut pages = ctx.ping.pages(&shp.pending_referrals, &[]);
    while let Some(rows) = pages.next_page().await? {
        let unusable = take_pending(run, rows, &mut pending, &mut seen);
        reject_unusable_rows(run, unusable).await?;
    }
    let listed = pages.into_summary();
    drop(seen);
    run.report(|r| {
        for tx in &listed.transaction_ids {
            r.add_transaction(tx);
        }
    });

    // 2. Ledger state of each referral; confirmed ones are done (R5).
    let mut open: Vec<Pending> = Vec::new();
    for mut p in pending {
        let record = ctx.ledger.get(flow, &p.ids.lp).await?;
        match &record {
            Some(r) if r.state == RecordState::Confirmed => run.report(|r| r.skipped += 1),
            // R9: a failed referral is tried again once its backoff has passed (an operator's
            // re-queue makes it `pending`, due at once).
            Some(r)
                if r.state == RecordState::Failed
                    && r.next_retry_at.is_some_and(|t| t > ctx.now()) =>
            {
                run.report(|r| r.exclude(EXCLUDED_RETRY_NOT_DUE));
            }
            _ => {
                p.prior = record.map(Prior::from);
                open.push(p);
            }
        }
    }
    if open.is_empty() {
        return Ok(());
    }

    // 3-5 as a pipeline: chunks of referrals (an individual's referrals in one chunk) are
    // read, mapped and looked up in Primero while earlier chunks are delivered and written
    // back.
    let chunks = chunk_by_individual(open);
    let abort = AtomicBool::new(false);
    // Bounded: preparation needs far fewer calls per referral than delivery, so an
    // unbounded hand-over would hold every prepared referral (and its case search results)
    // in memory at once; a few chunks ahead keep delivery busy with memory bounded (R10).
    let (work_tx, work_rx) = mpsc::channel::<(Lookup, Vec<Ready>)>(WORK_AHEAD);
    let preparer = async {
        let work_tx = work_tx;
        let mut prepared = stream::iter(chunks)
            .map(|chunk| prepare_chunk(run, chunk))
            .buffer_unordered(PREPARE_IN_FLIGHT);
        while let Some(result) = prepared.next().await {
            if abort.load(Ordering::SeqCst) || run.stopping() {
                return Ok(());
            }
            match result {
                Ok(work) => {
                    for w in work {
                        if work_tx.send(w).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                Err(e) => {
                    abort.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
        Ok(())
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<WriteBack>();
    let (ledger_tx, ledger_rx) = mpsc::unbounded_channel();
    // Twice the client's limit of requests in flight: while some individuals wait for the
    // ledger, others keep the limiter busy.
    let concurrency = ctx.config.primero.http.max_concurrency.max(1) * 2;
    let producer = async {
        let tx = tx;
        let committer = Committer { tx: ledger_tx };
        let work = stream::unfold(
            work_rx,
            |mut rx| async move { rx.recv().await.map(|w| (w, rx)) },
        );
        let tasks = work
            .map(|(lookup, items)| {
                let tx = tx.clone();
                let abort = &abort;
                let committer = committer.clone();
                async move { deliver_individual(run, lookup, items, &tx, &committer, abort).await }
            })
            .buffer_unordered(concurrency);
        let mut tasks = std::pin::pin!(tasks);
        while let Some(result) = tasks.next().await {
            if let Err(e) = result {
                abort.store(true, Ordering::SeqCst);
                return Err(e);
            }
        }
        Ok(())
    };
    let batch_size = ctx.config.ping.batch_size.max(1);
    let consumer = async {
        let mut batch: Vec<WriteBack> = Vec::new();
        let mut outcome: Result<(), FlowError> = Ok(());
        while let Some(wb) = rx.recv().await {
            batch.push(wb);
            if batch.len() >= batch_size && outcome.is_ok() {
                outcome = write_back(run, std::mem::take(&mut batch)).await;
                if outcome.is_err() {
                    abort.store(true, Ordering::SeqCst);
                }
            }
        }
        if !batch.is_empty() && outcome.is_ok() {
            outcome = write_back(run, batch).await;
        }
        outcome
    };
    let (prepared, delivered, written, recorded) =
        tokio::join!(preparer, producer, consumer, run_committer(run, ledger_rx));
    recorded?;
    prepared?;
    delivered?;
    written
}

/// Chunks of preparation in flight at once.
const PREPARE_IN_FLIGHT: usize = 4;
/// Individuals prepared ahead of delivery (about four chunks).
const WORK_AHEAD: usize = 200;

/// Turns one page of SHP-2747 rows into [`Pending`] referrals (each LP id once per run, the
/// rows consumed as they are read); returns the rows without a usable LP intervention id,
/// with whether their id is malformed (present but unfit for the ledger) rather than absent.
fn take_pending(
    run: &RunCtx<'_>,
    rows: Vec<Row>,
    pending: &mut Vec<Pending>,
    seen: &mut HashSet<String>,
) -> Vec<(Row, bool)> {
    let mut unusable = Vec::new();
    for row in rows {
        let lp = match PendingReferral::from_row(&row) {
            Ok(p) => p
                .lp_intervention_id
                .map(|lp| (lp, p.business_unit, p.individual_id, p.intervention_number)),
            // A malformed optional key does not matter: SHP-2358 gives the details.
            Err(_) => row.get_text(keys_2747::LP_INTERVENTION_ID).map(|lp| {
                (
                    lp,
                    row.get_text(keys_2747::BUSINESS_UNIT),
                    row.get_text(keys_2747::INDIVIDUAL_ID),
                    row.get_text(keys_2747::INTERVENTION_NUMBER),
                )
            }),
        };
        // The same spelling as the SHP-2358 rows and the ledger key: trimmed, GUIDs lowercase.
        let lp = lp
            .map(|(lp, bu, ind, number)| (normalize_lp_id(&lp), bu, ind, number))
            .filter(|(lp, ..)| !lp.is_empty());
        match lp {
            Some((lp, business_unit, individual, number)) if is_ident(&lp) => {
                if seen.insert(lp.clone()) {
                    run.report(|r| r.fetched += 1);
                    pending.push(Pending {
                        ids: Ids {
                            lp,
                            number,
                            business_unit,
                        },
                        individual,
                        prior: None,
                    });
                }
            }
            // R1: an id the ledger would refuse (over-long, control characters) is rejected
            // under a key of its own instead of ending the run.
            Some(_) => {
                run.report(|r| r.fetched += 1);
                unusable.push((row, true));
            }
            None => {
                run.report(|r| r.fetched += 1);
                unusable.push((row, false));
            }
        }
    }
    unusable
}

/// Rejects the SHP-2747 rows of one page that have no usable LP intervention id (see
/// [`reject_unusable_row`]) and commits the rejections.
async fn reject_unusable_rows(
    run: &RunCtx<'_>,
    unusable: Vec<(Row, bool)>,
) -> Result<(), FlowError> {
    if unusable.is_empty() {
        return Ok(());
    }
    let mut changes: Vec<RecordChange> = Vec::new();
    for (row, malformed) in &unusable {
        if let Some(change) = reject_unusable_row(run, row, *malformed).await? {
            changes.push(change);
        }
    }
    run.commit(changes, None).await
}

/// Packs the referrals into chunks of about [`DETAILS_PER_CALL`], keeping the referrals of one
/// individual (as SHP-2747 names them) in one chunk so they are delivered one after another.
fn chunk_by_individual(open: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut groups: Vec<Vec<Pending>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for p in open {
        match p.individual.clone().and_then(|i| index.get(&i).copied()) {
            Some(i) => groups[i].push(p),
            None => {
                if let Some(ind) = &p.individual {
                    index.insert(ind.clone(), groups.len());
                }
                groups.push(vec![p]);
            }
        }
    }
    let mut chunks: Vec<Vec<Pending>> = Vec::new();
    let mut current: Vec<Pending> = Vec::new();
    for g in groups {
        if !current.is_empty() && current.len() + g.len() > DETAILS_PER_CALL {
            chunks.push(std::mem::take(&mut current));
        }
        current.extend(g);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Steps 3 and 4 for one chunk: details (SHP-2358), grouping, validation and mapping (the
/// refused ones recorded at once), then the case lookup of the chunk's individuals.
async fn prepare_chunk(
    run: &RunCtx<'_>,
    open: Vec<Pending>,
) -> Result<Vec<(Lookup, Vec<Ready>)>, FlowError> {
    let ctx = run.ctx;
    let ids: Vec<String> = open.iter().map(|p| p.ids.lp.clone()).collect();
    let details = fetch_details(run, &ids).await?;
    let today = run.started_at.date_naive();
    let maps = &ctx.config.maps;
    let module_id = &ctx.config.primero.module_id;
    let mut rows_by_lp: HashMap<String, Vec<InterventionDetailRow>> = HashMap::new();
    let mut malformed: HashMap<String, String> = HashMap::new();
    for row in &details.rows {
        match InterventionDetailRow::from_row(row) {
            Ok(mut d) => {
                d.lp_intervention_id = normalize_lp_id(&d.lp_intervention_id);
                rows_by_lp
                    .entry(d.lp_intervention_id.clone())
                    .or_default()
                    .push(d)
            }
            Err(e) => {
                if let Some(lp) = row.get_text(keys_2747::LP_INTERVENTION_ID) {
                    malformed
                        .entry(normalize_lp_id(&lp))
                        .or_insert_with(|| e.to_string());
                } else {
                    tracing::warn!("SHP-2358 row without progres_lpinterventionid ignored");
                }
            }
        }
    }
    let mut changes: Vec<RecordChange> = Vec::new();
    let mut ready: Vec<Ready> = Vec::new();
    for p in open {
        let attempts = p.prior.as_ref().map_or(0, |r| r.attempts);
        let lp = p.ids.lp.as_str();
        if let Some(message) = details.failed.get(lp) {
            changes.push(
                p.ids
                    .apply(run.failed(lp, TRANSIENT, message.clone(), attempts)),
            );
            continue;
        }
        if let Some(message) = details.refused.get(lp) {
            changes.push(
                p.ids
                    .apply(run.rejected(lp, VALIDATION_ERROR, message.clone())),
            );
            continue;
        }
        let rows = rows_by_lp.remove(lp).unwrap_or_default();
        let ids = p.ids.with_details(rows.first());
        let hash = ctx.payload_hash(&rows_source(&rows));
        if unchanged_refusal(p.prior.as_ref(), &hash) {
            run.report(|r| r.held += 1);
            continue;
        }
        if let Some(problem) = malformed.get(lp) {
            changes.push(
                ids.apply(
                    run.rejected(
                        lp,
                        MISSING_REQUIRED_FIELDS,
                        format!("SHP-2358 rows of LP intervention {lp}: {problem}"),
                    )
                    .with_payload_hash(&hash),
                ),
            );
            continue;
        }
        if rows.is_empty() {
            changes.push(ids.apply(run.failed(
                lp,
                TRANSIENT,
                format!(
                    "SHP-2358 returned no rows for LP intervention {} although SHP-2747 lists it",
                    lp
                ),
                attempts,
            )));
            continue;
        }
        let mut groups = flow11::group_rows(rows);
        let (_, group) = groups.remove(0);
        let mapped = group.and_then(|mut g: ReferralGroup| {
            if g.base.business_unit.is_none() {
                g.base.business_unit = p.ids.business_unit.clone();
            }
            flow11::map_referral(&g, maps, module_id, today)
        });
        match mapped {
            Ok(mapped) => ready.push(Ready {
                mapped,
                ids,
                hash,
                attempts,
            }),
            Err(rejection) => changes.push(
                ids.apply(
                    run.rejected(lp, rejection.reason, rejection.message)
                        .with_payload_hash(&hash),
                ),
            ),
        }
    }
    run.commit(changes, None).await?;

    let mut by_individual: Vec<(String, Vec<Ready>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for r in ready {
        let id = r.mapped.individual_id.clone();
        match index.get(&id) {
            Some(&i) => by_individual[i].1.push(r),
            None => {
                index.insert(id.clone(), by_individual.len());
                by_individual.push((id, vec![r]));
            }
        }
    }
    let mut lookups = look_up_cases(run, &by_individual).await?;
    Ok(by_individual
        .into_iter()
        .map(|(id, items)| (lookups.remove(&id).unwrap_or(Lookup::Search), items))
        .collect())
}

/// Hands record changes of the delivery phase to [`run_committer`] and waits until they are
/// durable: a delivery goes on only once its outcome is in the ledger, while concurrent
/// deliveries share ledger transactions (group commit).
#[derive(Clone)]
struct Committer {
    tx: mpsc::UnboundedSender<(Vec<RecordChange>, oneshot::Sender<bool>)>,
}

impl Committer {
    async fn commit(&self, changes: Vec<RecordChange>) -> Result<(), FlowError> {
        let (ack, done) = oneshot::channel();
        if self.tx.send((changes, ack)).is_ok() && done.await == Ok(true) {
            Ok(())
        } else {
            // The committer's own error is what the run reports.
            Err(FlowError::Config(
                "the run's ledger writer stopped".to_owned(),
            ))
        }
    }
}

/// Most record changes per group-commit transaction.
const GROUP_COMMIT_MAX: usize = 200;

/// Commits what the deliveries hand over, in as few ledger transactions as the pace of the
/// deliveries allows; ends when every [`Committer`] is gone, or at the first ledger error.
async fn run_committer(
    run: &RunCtx<'_>,
    mut rx: mpsc::UnboundedReceiver<(Vec<RecordChange>, oneshot::Sender<bool>)>,
) -> Result<(), FlowError> {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP_COMMIT_MAX {
            match rx.try_recv() {
                Ok(more) => group.push(more),
                Err(_) => break,
            }
        }
        let changes: Vec<RecordChange> = group
            .iter_mut()
            .flat_map(|(c, _)| std::mem::take(c))
            .collect();
        let result = run.commit(changes, None).await;
        let ok = result.is_ok();
        for (_, ack) in group {
            let _ = ack.send(ok);
        }
        result?;
    }
    Ok(())
}

/// A SHP-2747 row without a usable LP intervention id (absent or blank, or, with `malformed`,
/// over-long or holding control characters): rejected (`missing_lp_intervention_id` /
/// `malformed_identifier`) under a stable key made from the row's other identifiers
/// (intervention GUID, intervention number, delivery id), or, with none of them, from a keyed
/// hash of the row. The free-text `progres_interventionname` is never used: it is neither a
/// key nor fit for a message.
async fn reject_unusable_row(
    run: &RunCtx<'_>,
    row: &Row,
    malformed: bool,
) -> Result<Option<RecordChange>, FlowError> {
    let alt = [
        keys_2747::INTERVENTION,
        keys_2747::INTERVENTION_NUMBER,
        keys_2747::DELIVERY_ID,
    ]
    .into_iter()
    .find_map(|k| {
        row.get_text(k)
            .map(|v| v.trim().to_owned())
            .filter(|v| is_ident(v))
            .map(|v| (k, v))
    });
    let hash = run.ctx.payload_hash(&Value::Object(row.as_map().clone()));
    let (reason, prefix, what) = if malformed {
        (
            MALFORMED_IDENTIFIER,
            "malformed-lp-id",
            "whose progres_lpinterventionid is over-long or holds control characters",
        )
    } else {
        (
            MISSING_LP_INTERVENTION_ID,
            "no-lp-id",
            "without progres_lpinterventionid",
        )
    };
    let (key, named) = match &alt {
        Some((name, id)) => (format!("{prefix}:{id}"), format!("{name} {id}")),
        None => {
            let row_hash = run
                .ctx
                .payload_hash(&json!({ "shp_2747_row": Value::Object(row.as_map().clone()) }));
            (
                format!("{prefix}:row-{row_hash}"),
                "and without any other identifier; key made from a keyed hash of the row"
                    .to_owned(),
            )
        }
    };
    let prior = run.ctx.ledger.get(run.flow.name(), &key).await?;
    if unchanged_refusal(prior.map(Prior::from).as_ref(), &hash) {
        run.report(|r| r.held += 1);
        return Ok(None);
    }
    let mut change = run
        .rejected(&key, reason, format!("SHP-2747 row {what} ({named})"))
        .with_payload_hash(hash);
    if let Some((name, id)) = &alt {
        if *name == keys_2747::INTERVENTION_NUMBER {
            change = change.with_dest_id("intervention_number", id);
        }
    }
    if let Some(bu) = row
        .get_text(keys_2747::BUSINESS_UNIT)
        .filter(|b| is_ident(b))
    {
        change = change.with_dest_id("business_unit", bu.trim());
    }
    Ok(Some(change))
}

/// Whether a rejected or conflict record is to be left alone: same source as when it was
/// refused, and no operator asked for another try (an operator's re-queue makes it pending).
fn unchanged_refusal(prior: Option<&Prior>, hash: &str) -> bool {
    prior.is_some_and(|r| {
        matches!(r.state, RecordState::Rejected | RecordState::Conflict)
            && !r.operator_retry
            && r.payload_hash.as_deref() == Some(hash)
    })
}

/// An order-independent JSON form of the SHP-2358 rows of one LP intervention, hashed (never
/// stored) to notice a changed source.
fn rows_source(rows: &[InterventionDetailRow]) -> Value {
    let mut parts: Vec<String> = rows
        .iter()
        .map(|row| {
            ReferralGroup {
                base: row.clone(),
                languages: row.language.iter().cloned().collect(),
                needs: row.need.iter().cloned().collect(),
                rows: 1,
            }
            .source_json()
            .to_string()
        })
        .collect();
    parts.sort();
    parts.dedup();
    json!(parts)
}

/// SHP-2358 rows of many LP ids, with the ids whose request failed or was refused.
#[derive(Default)]
struct Details {
    rows: Vec<Row>,
    /// Transient failures (after the client's retries): retried by a later run.
    failed: HashMap<String, String>,
    /// PING refused the request for this single id.
    refused: HashMap<String, String>,
}

async fn fetch_details(run: &RunCtx<'_>, ids: &[String]) -> Result<Details, FlowError> {
    let chunks: Vec<Vec<String>> = ids
        .chunks(DETAILS_PER_CALL)
        .map(<[String]>::to_vec)
        .collect();
    let mut parts = stream::iter(chunks)
        .map(|chunk| fetch_details_chunk(run, chunk))
        .buffer_unordered(DETAILS_IN_FLIGHT);
    let mut all = Details::default();
    while let Some(part) = parts.next().await {
        let part = part?;
        all.rows.extend(part.rows);
        all.failed.extend(part.failed);
        all.refused.extend(part.refused);
    }
    Ok(all)
}

/// One SHP-2358 call for `ids`; a refused call is split until the refused id is found (R1).
async fn fetch_details_chunk(run: &RunCtx<'_>, ids: Vec<String>) -> Result<Details, FlowError> {
    let ctx = run.ctx;
    let shp = &ctx.config.ping.shipping_processes.intervention_details;
    let mut out = Details::default();
    let mut queue = vec![ids];
    while let Some(set) = queue.pop() {
        match ctx.ping.retrieve(shp, &set).await {
            Ok(r) => {
                run.report(|rep| {
                    for tx in &r.transaction_ids {
                        rep.add_transaction(tx);
                    }
                });
                out.rows.extend(r.rows);
            }
            Err(e) => match e.class() {
                ApiClass::Auth => return Err(e.into()),
                ApiClass::Transient => {
                    let message = format!("SHP-2358: {e}");
                    out.failed
                        .extend(set.into_iter().map(|id| (id, message.clone())));
                }
                _ if set.len() > 1 => {
                    let half = set.len() / 2;
                    let (a, b) = set.split_at(half);
                    queue.push(a.to_vec());
                    queue.push(b.to_vec());
                }
                _ => {
                    let message = format!("SHP-2358: {e}");
                    out.refused
                        .extend(set.into_iter().map(|id| (id, message.clone())));
                }
            },
        }
    }
    Ok(out)
}

/// How the case(s) of an individual are found at delivery time.
enum Lookup {
    /// The ledger remembers the individual's case (checked with a `GET` by id).
    Fact(String),
    /// A batched search already answered: the cases whose `unhcr_individual_no` is exactly
    /// the individual's.
    Found(Vec<Case>),
    /// Search on its own (also when the batched search failed: one individual's search
    /// failing then concerns that individual's referrals only).
    Search,
}

/// Individuals per batched case search.
const SEARCH_PER_CALL: usize = 50;
/// Batched case searches in flight at once.
const SEARCH_IN_FLIGHT: usize = 8;

/// Finds the cases of every individual before delivery: the ledger fact when there is one,
/// else one search per [`SEARCH_PER_CALL`] individuals (`unhcr_individual_no[n]=…`, a list
/// filter that matches identifiers exactly; every returned case is checked again here, so
/// a server that ignored the filter cannot widen the match).
async fn look_up_cases(
    run: &RunCtx<'_>,
    individuals: &[(String, Vec<Ready>)],
) -> Result<HashMap<String, Lookup>, FlowError> {
    let ctx = run.ctx;
    let mut out: HashMap<String, Lookup> = HashMap::new();
    let mut unknown: Vec<String> = Vec::new();
    for (id, _) in individuals {
        let fact = ctx
            .ledger
            .fact(FACT_INDIVIDUAL_CASE, &individual_fact_key(run, id))
            .await?;
        match fact
            .as_ref()
            .and_then(|v| v.get("case_uuid"))
            .and_then(Value::as_str)
        {
            Some(uuid) => {
                out.insert(id.clone(), Lookup::Fact(uuid.to_owned()));
            }
            None => unknown.push(id.clone()),
        }
    }
    let chunks: Vec<Vec<String>> = unknown
        .chunks(SEARCH_PER_CALL)
        .map(<[String]>::to_vec)
        .collect();
    let mut searches = stream::iter(chunks)
        .map(|ids| async move {
            let query = CaseQuery {
                filters: ids
                    .iter()
                    .enumerate()
                    .map(|(n, id)| (format!("unhcr_individual_no[{n}]"), id.clone()))
                    .collect(),
                ..CaseQuery::default()
            };
            (ids, ctx.primero.list_cases(&query).await)
        })
        .buffer_unordered(SEARCH_IN_FLIGHT);
    while let Some((ids, result)) = searches.next().await {
        match result {
            Ok(cases) => {
                for id in ids {
                    let mine: Vec<Case> = cases
                        .iter()
                        .filter(|c| c.str_field("unhcr_individual_no") == Some(id.as_str()))
                        .cloned()
                        .collect();
                    out.insert(id, Lookup::Found(mine));
                }
            }
            Err(e) if e.class() == ApiClass::Auth => return Err(e.into()),
            // R1: a refused or failing batched search must not decide for 50 referrals; each
            // individual is searched on its own at delivery, and a failure there leaves only
            // that individual's referrals failed (transient) or rejected (refused).
            Err(e) => {
                tracing::warn!(
                    individuals = ids.len(),
                    error = %e,
                    "batched case search failed; searching each individual on its own"
                );
                for id in ids {
                    out.insert(id, Lookup::Search);
                }
            }
        }
    }
    Ok(out)
}

/// Delivers the referrals of one individual, one after another, so that the second finds the
/// case the first created. Write-backs go to `tx`.
async fn deliver_individual(
    run: &RunCtx<'_>,
    lookup: Lookup,
    items: Vec<Ready>,
    tx: &mpsc::UnboundedSender<WriteBack>,
    committer: &Committer,
    abort: &AtomicBool,
) -> Result<(), FlowError> {
    let mut lookup = Some(lookup);
    let mut known: Option<Case> = None;
    for item in items {
        if abort.load(Ordering::SeqCst) || run.stopping() {
            return Ok(());
        }
        let current = known.take().map(|c| Lookup::Found(vec![c]));
        let this = current.or_else(|| lookup.take()).unwrap_or(Lookup::Search);
        if let Some(wb) = deliver_one(run, &item, this, committer, &mut known).await? {
            // The consumer only stops early when the run ends with an error.
            let _ = tx.send(wb);
        }
    }
    Ok(())
}

/// What to do with a Primero error of one record: end the run (auth), leave it `failed`
/// (transient, a vanished case), or reject it with the server's field names (permanent).
fn primero_failure(
    run: &RunCtx<'_>,
    key: &str,
    what: &str,
    e: PrimeroError,
    attempts: i64,
) -> Result<RecordChange, FlowError> {
    match e.class() {
        ApiClass::Auth => Err(e.into()),
        _ if matches!(e, PrimeroError::NotFound { .. }) => {
            Ok(run.failed(key, TRANSIENT, format!("{what}: {e}"), attempts))
        }
        ApiClass::Transient => Ok(run.failed(key, TRANSIENT, format!("{what}: {e}"), attempts)),
        _ => Ok(run.rejected(key, VALIDATION_ERROR, format!("{what}: {e}"))),
    }
}

/// The Primero cases of the individual: those found before delivery, else the case of the
/// ledger fact (checked to still be the individual's), else an exact search.
async fn find_cases(
    run: &RunCtx<'_>,
    individual_id: &str,
    lookup: Lookup,
) -> Result<Vec<Case>, PrimeroError> {
    let ctx = run.ctx;
    match lookup {
        Lookup::Found(cases) => return Ok(cases),
        Lookup::Fact(uuid) => {
            if let Some(case) = ctx.primero.get_case(&uuid).await? {
                if case.str_field("unhcr_individual_no") == Some(individual_id) {
                    return Ok(vec![case]);
                }
            }
        }
        Lookup::Search => {}
    }
    ctx.primero
        .list_cases(&CaseQuery::exact("unhcr_individual_no", individual_id))
        .await
}

/// Delivers one referral; returns its write-back when it is (or already was) in Primero.
async fn deliver_one(
    run: &RunCtx<'_>,
    item: &Ready,
    lookup: Lookup,
    committer: &Committer,
    known: &mut Option<Case>,
) -> Result<Option<WriteBack>, FlowError> {
    let ctx = run.ctx;
    let m = &item.mapped;
    let key = m.lp_intervention_id.as_str();
    let attempts = item.attempts;

    let cases = match find_cases(run, &m.individual_id, lookup).await {
        Ok(c) => c,
        Err(e) => {
            let change = primero_failure(run, key, "case search", e, attempts)?;
            committer
                .commit(vec![item.ids.apply(change.with_payload_hash(&item.hash))])
                .await?;
            return Ok(None);
        }
    };
    let target = match cases.len() {
        0 => None,
        1 => cases.into_iter().next(),
        _ => {
            let named: Vec<&Case> = cases
                .iter()
                .filter(|c| {
                    m.primero_id.is_some() && c.case_id.as_deref() == m.primero_id.as_deref()
                })
                .collect();
            if named.len() == 1 {
                Some(named[0].clone())
            } else {
                let ids: Vec<String> = cases
                    .iter()
                    .map(|c| format!("{} (id {})", c.case_id.as_deref().unwrap_or("-"), c.id))
                    .collect();
                // The individual number identifies a person: the message names the
                // candidate cases and the LP intervention only (R11).
                let change = run
                    .conflict(
                        key,
                        DUPLICATE_CASES,
                        format!(
                            "{} Primero cases have the unhcr_individual_no of LP intervention {key}: {}; none is named by progres_primeroid",
                            ids.len(),
                            ids.join(", ")
                        ),
                    )
                    .with_payload_hash(&item.hash);
                committer.commit(vec![item.ids.apply(change)]).await?;
                return Ok(None);
            }
        }
    };

    let mut created: Option<Case> = None;
    if target.is_none() {
        let mut payload = m.create_payload();
        // The case id is derived from the individual: repeating the create (a crash before
        // the ledger knew, while search cannot see the case yet) returns that case instead
        // of creating a twin.
        payload.insert("id".into(), json!(derived_case_uuid(run, &m.individual_id)));
        // So is its case_id (Primero keeps a supplied one, unique like its own), so that the
        // create's 204 tells all the flow needs and the case is not read back.
        payload.insert(
            "case_id".into(),
            json!(derived_uuid(
                run,
                "primero_case_id_of_individual",
                &m.individual_id
            )),
        );
        if run.dry_run {
            run.preview(key, "create case", MappedReferral::field_names(&payload));
            run.preview(key, "ingest SHP-2748", write_back_fields());
            return Ok(None);
        }
        match ctx.primero.create_case(payload).await {
            Ok(case) => created = Some(case),
            Err(e) => {
                let change = primero_failure(run, key, "case create", e, attempts)?;
                committer
                    .commit(vec![item.ids.apply(change.with_payload_hash(&item.hash))])
                    .await?;
                return Ok(None);
            }
        }
    }
    let fresh = created.is_some();
    let Some(case) = created.or(target) else {
        // Not reachable: a case is created when none was found.
        return Ok(None);
    };
    // A create that met an existing case under the derived id (409) gets that case back: it
    // must be this individual's (edited by hand, or another person's, it is left alone).
    if fresh
        && case
            .str_field("unhcr_individual_no")
            .is_some_and(|n| n != m.individual_id)
    {
        let change = run
            .conflict(
                key,
                CASE_ID_TAKEN,
                format!(
                    "Primero case {} (id {}), found under the record id derived for LP \
                     intervention {key}, has another unhcr_individual_no; nothing was written",
                    case.case_id.as_deref().unwrap_or("-"),
                    case.id
                ),
            )
            .with_payload_hash(&item.hash);
        committer.commit(vec![item.ids.apply(change)]).await?;
        return Ok(None);
    }
    let (case, written) = match case {
        // Created now (or by an earlier run, with this id) with the row: done.
        case if fresh && has_row(&case, &m.intervention_number) => (case, true),
        case => {
            let present = has_row(&case, &m.intervention_number);
            if present {
                // Already in Primero (R5): only the write-back is left, and its outcome is
                // the one this record counts in the report (R13).
                if run.dry_run {
                    run.preview(key, "ingest SHP-2748", write_back_fields());
                    return Ok(None);
                }
                (case, false)
            } else {
                let payload = m.append_payload();
                if run.dry_run {
                    run.preview(
                        &format!("{key} (case {})", case.id),
                        "append service row",
                        MappedReferral::field_names(&payload),
                    );
                    run.preview(key, "ingest SHP-2748", write_back_fields());
                    return Ok(None);
                }
                match ctx.primero.patch_case(&case.id, payload).await {
                    Ok(patched) => {
                        let mut merged = case;
                        match patched.data.get("services_section") {
                            Some(rows) => {
                                merged.data.insert("services_section".into(), rows.clone());
                            }
                            None => {
                                let mut rows = match merged.data.remove("services_section") {
                                    Some(Value::Array(r)) => r,
                                    _ => Vec::new(),
                                };
                                rows.push(Value::Object(m.service.clone()));
                                merged
                                    .data
                                    .insert("services_section".into(), Value::Array(rows));
                            }
                        }
                        (merged, true)
                    }
                    Err(e) => {
                        let change = primero_failure(run, key, "case update", e, attempts)?;
                        committer
                            .commit(vec![item.ids.apply(change.with_payload_hash(&item.hash))])
                            .await?;
                        return Ok(None);
                    }
                }
            }
        }
    };

    let facts: Vec<(&'static str, String, Value)> = vec![
        (
            FACT_INDIVIDUAL_CASE,
            individual_fact_key(run, &m.individual_id),
            json!({"case_uuid": case.id, "case_id": case.case_id}),
        ),
        (
            FACT_INTERVENTION,
            m.intervention_number.clone(),
            intervention_fact(&m.lp_intervention_id, &m.business_unit),
        ),
    ];
    let mut wb = WriteBack {
        lp: m.lp_intervention_id.clone(),
        business_unit: m.business_unit.clone(),
        attempts: attempts + i64::from(written),
        ids: item.ids.clone(),
        found: None,
    };
    if written {
        let mut change = with_case_ids(
            run.change(key, RecordState::Delivered),
            &case.id,
            case.case_id.as_deref(),
        )
        .with_payload_hash(&item.hash)
        .with_attempt();
        for (kind, fact_key, value) in facts {
            change = change.with_fact(kind, fact_key, value);
        }
        change.fallback_used = m.fallback_used();
        committer.commit(vec![item.ids.apply(change)]).await?;
    } else {
        // Nothing written to Primero: no `delivered` change (it would count the record as
        // delivered by this run); the write-back's outcome records the case ids and facts.
        wb.found = Some(FoundInPrimero {
            case_uuid: case.id.clone(),
            case_id: case.case_id.clone(),
            facts,
            hash: item.hash.clone(),
            fallback_used: m.fallback_used(),
        });
    }
    *known = Some(case);
    Ok(Some(wb))
}

/// Whether `case` has a service row for intervention `number` (first part of its
/// `progres_interventionnumber`, compared exactly).
fn has_row(case: &Case, number: &str) -> bool {
    case.services().iter().any(|row| {
        row.progres_interventionnumber()
            .is_some_and(|v| flow11::row_matches_intervention(v, number))
    })
}

/// The record `id` of the case created for an individual: a UUID (version 4 layout) made from
/// the keyed hash of the individual id, so it is the same on every run of this deployment and
/// reveals nothing.
fn derived_case_uuid(run: &RunCtx<'_>, individual_id: &str) -> String {
    derived_uuid(run, "primero_case_of_individual", individual_id)
}

/// A UUID (version 4 layout) made from the keyed hash of `label` and the individual id: the
/// same on every run of this deployment, different per label, revealing nothing.
fn derived_uuid(run: &RunCtx<'_>, label: &str, individual_id: &str) -> String {
    let mut key = serde_json::Map::new();
    key.insert(label.to_owned(), json!(individual_id));
    let hash = run.ctx.payload_hash(&Value::Object(key));
    let mut hex: Vec<u8> = hash.bytes().take(32).collect();
    hex[12] = b'4';
    hex[16] = b"89ab"[usize::from(hex[16]) % 4];
    let h = String::from_utf8_lossy(&hex).into_owned();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn write_back_fields() -> Vec<String> {
    [
        "ExternalId",
        "progres_lpinterventionid",
        "progres_businessunit",
        "progres_primerotransferstatus",
        "progres_primerotransferstatusdate",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect()
}

/// Sends one batch of write-backs and records each record's outcome. When PING refuses the
/// credentials part-way, the outcomes it gave are recorded before the error is returned; the
/// write-backs not applied keep their state, for the next run.
async fn write_back(run: &RunCtx<'_>, batch: Vec<WriteBack>) -> Result<(), FlowError> {
    let ctx = run.ctx;
    let today = run.started_at.date_naive();
    let records: Vec<IngestRecord> = batch
        .iter()
        .map(|wb| flow11::pending_write_back(&wb.lp, &wb.business_unit, &ctx.config.maps, today))
        .collect();
    let shp = &ctx.config.ping.shipping_processes.transfer_status;
    let mut outcome = ingest_isolated(run, shp, &records).await;
    // Credentials refused part-way: what PING answered is recorded first, then the run ends.
    let stopped = outcome.error.take();
    let mut changes = Vec::with_capacity(batch.len());
    for (i, tx) in outcome.applied {
        let wb = &batch[i];
        // The case ids were stored with `delivered` (or come with `annotate`). A transaction
        // id unfit for the ledger is left out rather than refused with the whole batch (R1).
        let mut change = run.change(&wb.lp, RecordState::Confirmed);
        if let Some(tx) = tx.filter(|t| is_ident(t)) {
            change = change.with_ping_transaction_id(tx);
        }
        changes.push(wb.annotate(change));
    }
    for (i, message) in outcome.refused {
        changes.push(batch[i].annotate(run.rejected(
            &batch[i].lp,
            VALIDATION_ERROR,
            format!("SHP-2748 write-back refused: {message}"),
        )));
    }
    for (i, message) in outcome.failed {
        changes.push(batch[i].annotate(run.failed(
            &batch[i].lp,
            TRANSIENT,
            format!("SHP-2748 write-back: {message}"),
            batch[i].attempts,
        )));
    }
    run.commit(changes, None).await?;
    stopped.map_or(Ok(()), Err)
}

/// What [`ingest_isolated`] did with each record (by index into the input).
///
/// A record in none of the three lists was not applied and has no outcome: its batch was not
/// sent (or not sent again after a split) because the ingestion stopped on `error`, or PING
/// refused the request that carried it for our credentials. The caller leaves such a record
/// as it was, to be sent by a later run.
#[derive(Debug, Default)]
pub(crate) struct IngestOutcomes {
    /// Applied, with the `SPHTransactionId` of the request that carried them.
    pub applied: Vec<(usize, Option<String>)>,
    /// Refused by PING (message: PING's masked reason).
    pub refused: Vec<(usize, String)>,
    /// Not applied because of a transient failure (after the client's retries).
    pub failed: Vec<(usize, String)>,
    /// Why the ingestion stopped before every record had an outcome (credentials refused),
    /// the first such error. The outcomes above are still PING's answers: the caller records
    /// them first, then ends the run with this error.
    pub error: Option<FlowError>,
}

impl IngestOutcomes {
    /// Adds the outcomes of one batch (or sub-batch); keeps the first error.
    fn absorb(&mut self, part: IngestOutcomes) {
        self.applied.extend(part.applied);
        self.refused.extend(part.refused);
        self.failed.extend(part.failed);
        if self.error.is_none() {
            self.error = part.error;
        }
    }
}

/// Synchronous ingestion with record isolation (R1): a batch refused naming records has those
/// records refused and the rest sent again; a refusal naming none is split until the culprits
/// are found. Batches are at most `ping.batch_size` records, with each `ExternalId` once per
/// batch (a refusal names records by `ExternalId`). In a dry run nothing is sent and nothing
/// is returned as applied.
///
/// Credentials refused end the ingestion, not at once: no new batch or sub-batch is started,
/// the requests already in flight are awaited (they may have reached PING), and every
/// outcome known comes back with the error in [`IngestOutcomes::error`]. The caller records
/// those outcomes in the ledger before it ends the run with the error, so that no record PING
/// applied is left pending (and sent again) and the run's report says what happened. Records
/// left without an outcome were not applied.
pub(crate) async fn ingest_isolated<R: Borrow<IngestRecord> + Sync>(
    run: &RunCtx<'_>,
    shp: &str,
    records: &[R],
) -> IngestOutcomes {
    let mut out = IngestOutcomes::default();
    if run.dry_run {
        return out;
    }
    let batch_size = run.ctx.config.ping.batch_size.max(1);
    let mut queue: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut ids: HashSet<String> = HashSet::new();
    for (i, r) in records.iter().enumerate() {
        let id = external_id_key(&r.borrow().external_id);
        if current.len() >= batch_size || ids.contains(&id) {
            queue.push(std::mem::take(&mut current));
            ids.clear();
        }
        ids.insert(id);
        current.push(i);
    }
    if !current.is_empty() {
        queue.push(current);
    }
    // The batches go out concurrently (the PING client's limiter bounds them); each is
    // narrowed down on its own when refused. Once one of them meets refused credentials,
    // `stop` keeps the others from sending anything new; their requests in flight finish.
    let stop = AtomicBool::new(false);
    let concurrency = run.ctx.config.ping.http.max_concurrency.max(1);
    let mut parts = stream::iter(queue)
        .map(|set| ingest_batch(run, shp, records, set, &stop))
        .buffer_unordered(concurrency);
    while let Some(part) = parts.next().await {
        out.absorb(part);
    }
    out
}

/// One batch of [`ingest_isolated`], split until every refused record is found. Sends
/// nothing once `stop` is set; sets it (and returns the outcomes so far with the error) when
/// PING refuses the credentials.
async fn ingest_batch<R: Borrow<IngestRecord> + Sync>(
    run: &RunCtx<'_>,
    shp: &str,
    records: &[R],
    set: Vec<usize>,
    stop: &AtomicBool,
) -> IngestOutcomes {
    let mut out = IngestOutcomes::default();
    let mut queue = vec![set];
    while let Some(set) = queue.pop() {
        if stop.load(Ordering::SeqCst) {
            // Another batch met refused credentials: what is left is not sent.
            break;
        }
        let batch: Vec<&IngestRecord> = set.iter().map(|&i| records[i].borrow()).collect();
        match run.ctx.ping.ingest(shp, &batch).await {
            Ok(outcome) => {
                if let Some(tx) = &outcome.transaction_id {
                    run.report(|r| r.add_transaction(tx));
                }
                // A failure entry that names no record of the batch (blank, or an id we did
                // not send) makes the whole answer ambiguous: which record failed is unknown,
                // so none is taken as applied; the batch is split until the culprit is found
                // (re-sending a keyed update is harmless).
                let unmatched = outcome.failed.iter().any(|f| {
                    !set.iter().any(|&i| {
                        same_external_id(&f.external_id, &records[i].borrow().external_id)
                    })
                });
                if unmatched {
                    split_or_refuse(
                        &mut queue,
                        &mut out,
                        set,
                        "PING reported a failed record it did not name",
                    );
                    continue;
                }
                for &i in &set {
                    match outcome.failed.iter().find(|f| {
                        same_external_id(&f.external_id, &records[i].borrow().external_id)
                    }) {
                        Some(f) => out.refused.push((i, f.message.clone())),
                        None => out.applied.push((i, outcome.transaction_id.clone())),
                    }
                }
            }
            Err(PingError::BatchRejected {
                failed,
                transaction_id,
            }) => {
                if let Some(tx) = &transaction_id {
                    run.report(|r| r.add_transaction(tx));
                }
                let (named, rest): (Vec<usize>, Vec<usize>) = set.iter().partition(|&&i| {
                    failed
                        .iter()
                        .any(|f| same_external_id(&f.external_id, &records[i].borrow().external_id))
                });
                if named.is_empty() {
                    split_or_refuse(
                        &mut queue,
                        &mut out,
                        set,
                        "PING refused the batch without naming a record",
                    );
                } else {
                    for i in named {
                        let message = failed
                            .iter()
                            .find(|f| {
                                same_external_id(&f.external_id, &records[i].borrow().external_id)
                            })
                            .map(|f| f.message.clone())
                            .unwrap_or_default();
                        out.refused.push((i, message));
                    }
                    if !rest.is_empty() {
                        queue.push(rest);
                    }
                }
            }
            Err(e) => match e.class() {
                ApiClass::Auth => {
                    // Not applied (PING refused the request itself); neither is the rest of
                    // `queue`. The outcomes so far go back with the error.
                    stop.store(true, Ordering::SeqCst);
                    out.error = Some(e.into());
                    break;
                }
                ApiClass::Transient => {
                    let message = e.to_string();
                    out.failed
                        .extend(set.into_iter().map(|i| (i, message.clone())));
                }
                _ => split_or_refuse(&mut queue, &mut out, set, &e.to_string()),
            },
        }
    }
    out
}

/// An `ExternalId` as PING may echo it back: trimmed, case-insensitive (GUIDs).
fn external_id_key(id: &str) -> String {
    id.trim().to_lowercase()
}

/// Whether PING's failure entry `named` is the record sent with `sent`.
fn same_external_id(named: &str, sent: &str) -> bool {
    !named.trim().is_empty() && external_id_key(named) == external_id_key(sent)
}

fn split_or_refuse(
    queue: &mut Vec<Vec<usize>>,
    out: &mut IngestOutcomes,
    set: Vec<usize>,
    message: &str,
) {
    if set.len() > 1 {
        let (a, b) = set.split_at(set.len() / 2);
        queue.push(b.to_vec());
        queue.push(a.to_vec());
    } else {
        out.refused
            .extend(set.into_iter().map(|i| (i, message.to_owned())));
    }
}
