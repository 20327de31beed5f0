//! Flow 2.2 `decisions-to-primero` (flows.md): proGres's accept/reject of interoperability
//! referrals goes back to the Primero referrals, and proGres is told the decision is synced.
//!
//! A run reads the decision list (SHP-2795, no parameters) page by page (R10: only the ids
//! that need work are kept, and each page is handled before the next is read) and classifies
//! every status code exhaustively (R4): accepted/rejected are taken to Primero, "new" waits,
//! "synced" is done, any other code is rejected with `unknown_status`. The details of the
//! decisions to apply come from SHP-2796 with bracketed lists of ids; a list PING refuses is
//! halved until the refused id is found (R1), and rows of one id that disagree park it as a
//! conflict (R3).
//!
//! Primero then costs about two calls per decision:
//! - one case search per 50 distinct `case_id`s (`GET /cases?case_id[0]=…&case_id[1]=…`,
//!   exact identifier matches, concurrent up to `max_concurrency`). Returned cases go to the
//!   decisions by their exact `case_id` value, never by position: exactly one case goes on,
//!   none is `case_not_found` (failed, retried: a case may be created later), several are a
//!   `duplicate_cases` conflict. A failed search concerns its own chunk only: transient → its
//!   decisions fail, refused → halved until the refused `case_id` is alone, whose decisions
//!   are rejected (R1), auth → the run ends before any PATCH;
//! - one referral listing per decision (`GET /cases/:id/referrals`), to pick the referral of
//!   the service row (else `referral_not_found`, retried; several live ones are a conflict);
//! - one PATCH of that referral's status (`PATCH /cases/:id/referrals/:rid`), sent only when
//!   the listing shows it is not in the requested state yet (already there: delivered, no
//!   PATCH) and verified from Primero's answer, with no second listing (R8: a refused
//!   transition is `transition_refused` and proGres is not told).
//!
//! Decisions are applied concurrently up to `max_concurrency`; once the run is asked to stop,
//! no new search or decision is started (the decision list shows them again next run).
//! Decisions that reached Primero are then marked synced in proGres (SHP-2284, in batches;
//! R7) and become `confirmed`. Records are keyed `{referral guid}:{status code}`. A dry run
//! sends nothing to Primero.

use std::collections::{HashMap, HashSet};

use futures::stream::StreamExt;
use pp_http::ErrorClass;
use pp_ledger::{Record, RecordChange, RecordState};
use pp_mapping::flow11::{Rejection, MISSING_REQUIRED_FIELDS, TRANSIENT, VALIDATION_ERROR};
use pp_mapping::flow22::{self, Decision, ListEntry};
use pp_ping::rows::keys_decision;
use pp_ping::{
    DecisionDetail, DecisionListRow, FromRow, IngestRecord, NextPage, PingError, Row, RowError,
};
use pp_primero::{Case, CaseQuery, PrimeroError, ReferralStatus};
use serde_json::json;

use crate::referrals_to_progres::{
    is_ident, norm_id, sort_failures, unique_batches, EXCLUDED_RETRY_NOT_DUE,
};
use crate::{FlowError, RunCtx};

/// Destination ids stored with the records.
pub const DEST_CASE: &str = "primero_case";
pub const DEST_REFERRAL: &str = "primero_referral";
/// Report reasons.
pub const EXCLUDED_MALFORMED_ROW: &str = "malformed_decision_row";
pub const EXCLUDED_STATUS_CHANGED: &str = "status_changed_since_list";

/// Ids per SHP-2796 request (a bracketed list).
const DETAIL_CHUNK: usize = 50;
/// Distinct `case_id`s per batched Primero case search.
const SEARCH_PER_CALL: usize = 50;
/// Most SHP-2795 pages one run reads (a guard against a paging loop).
const MAX_PAGES: u64 = 100_000;

/// A decision to look at this run.
struct Candidate {
    referral_id: String,
    code: i64,
    status: ReferralStatus,
    key: String,
    attempts: i64,
    /// Rejected or in conflict before: only retried when the decision changed.
    previous_hash: Option<Option<String>>,
}

/// The change to record for a decision and, when it reached Primero, the write-back to do.
type Outcome = (RecordChange, Option<Applied>);

/// The decisions of one `case_id` (several services of one case share a search slot).
type CaseGroup = (String, Vec<(Candidate, Decision)>);

/// A decision already applied in Primero, waiting for the proGres write-back.
struct Applied {
    key: String,
    referral_id: String,
    attempts: i64,
}

pub async fn run(run: &RunCtx<'_>) -> Result<(), FlowError> {
    let ctx = run.ctx;
    let shp = &ctx.config.ping.shipping_processes.decision_list;
    // Keys that needed work, seen this run (a row listed twice is handled once).
    let mut listed: HashSet<String> = HashSet::new();
    let mut position: Option<NextPage> = None;
    let mut pages: u64 = 0;
    loop {
        // Step 1: one page of the decision list (an unreachable list ends the run).
        let page = ctx.ping.retrieve_page(shp, &[], position.as_ref()).await?;
        pages += 1;
        run.report(|r| {
            if let Some(tx) = &page.transaction_id {
                r.add_transaction(tx);
            }
            r.fetched += page.rows.len() as u64;
        });
        process_page(run, &page.rows, &mut listed).await?;
        if run.stopping() {
            return Ok(());
        }
        match page.next {
            None => return Ok(()),
            Some(next) => {
                if position.as_ref() == Some(&next) || pages >= MAX_PAGES {
                    return Err(PingError::Unexpected {
                        detail: format!(
                            "{shp}: paging does not advance (page {})",
                            next.page_number
                        ),
                    }
                    .into());
                }
                position = Some(next);
            }
        }
    }
}

/// Steps 1-6 for the rows of one SHP-2795 page.
async fn process_page(
    run: &RunCtx<'_>,
    rows: &[Row],
    listed: &mut HashSet<String>,
) -> Result<(), FlowError> {
    let ctx = run.ctx;
    let cfg = &ctx.config;
    let flow = run.flow.name();
    let codes = cfg.maps.codes.interop_status;
    let shps = &cfg.ping.shipping_processes;

    let mut candidates: Vec<Candidate> = Vec::new();
    let mut applied: Vec<Applied> = Vec::new();
    let mut changes: Vec<RecordChange> = Vec::new();
    for row in rows {
        let entry = match DecisionListRow::from_row(row) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "decision list row skipped");
                run.report(|r| r.exclude(EXCLUDED_MALFORMED_ROW));
                continue;
            }
        };
        if !is_ident(&entry.referral_id) {
            run.report(|r| r.exclude(EXCLUDED_MALFORMED_ROW));
            continue;
        }
        let key = flow22::record_key(&entry.referral_id, entry.status);
        match flow22::classify(&codes, entry.status) {
            ListEntry::Waiting => run.report(|r| r.waiting += 1),
            ListEntry::Done => run.report(|r| r.skipped += 1),
            ListEntry::Unknown => {
                if !listed.insert(key.clone()) {
                    continue;
                }
                let known = ctx.ledger.get(flow, &key).await?;
                // Recorded already (unless an operator re-queued it): nothing new to say.
                if known.is_some_and(|r| r.state != RecordState::Pending) {
                    run.report(|r| r.held += 1);
                } else {
                    let Rejection { reason, message } = flow22::unknown_status(entry.status);
                    changes.push(run.rejected(
                        &key,
                        reason,
                        format!("interoperability referral {}: {message}", entry.referral_id),
                    ));
                }
            }
            ListEntry::Decide(status) => {
                if !listed.insert(key.clone()) {
                    continue;
                }
                let record = ctx.ledger.get(flow, &key).await?;
                match classify_prior(run, record, status) {
                    PriorStep::Skip => {}
                    PriorStep::WriteBack { attempts } => applied.push(Applied {
                        key,
                        referral_id: entry.referral_id,
                        attempts,
                    }),
                    PriorStep::Process {
                        attempts,
                        previous_hash,
                    } => candidates.push(Candidate {
                        referral_id: entry.referral_id,
                        code: entry.status,
                        status,
                        key,
                        attempts,
                        previous_hash,
                    }),
                }
            }
        }
    }
    run.commit(std::mem::take(&mut changes), None).await?;

    // Step 2-3: details and mapping.
    let decisions = details(run, candidates).await?;

    // Steps 4-5: Primero.
    if run.dry_run {
        for (_, d) in &decisions {
            run.preview(&d.key(), "set Primero referral status", d.field_names());
        }
        for a in &applied {
            run.preview(
                &a.key,
                &format!("ingest {}", shps.referral_synced),
                synced_fields(),
            );
        }
        for (_, d) in &decisions {
            run.preview(
                &d.key(),
                &format!("ingest {}", shps.referral_synced),
                synced_fields(),
            );
        }
        return Ok(());
    }
    let concurrency = cfg.primero.http.max_concurrency.max(1);
    let found = find_cases(run, decisions).await?;
    let outcomes: Vec<Result<Option<Outcome>, FlowError>> = futures::stream::iter(found)
        .map(|(c, d, lookup)| async move {
            // Stop starting new records; one not started is listed again next run.
            if run.stopping() {
                return Ok(None);
            }
            apply_decision(run, c, d, lookup).await.map(Some)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for o in outcomes {
        let Some((change, done)) = o? else { continue };
        changes.push(change);
        if let Some(a) = done {
            applied.push(a);
        }
    }
    run.commit(changes, None).await?;
    if run.stopping() {
        return Ok(());
    }

    // Step 6: mark synced in proGres, confirmed records only (R7).
    write_back(run, applied).await
}

fn synced_fields() -> Vec<String> {
    [
        "progres_interoperabilityreferralid",
        "progres_interoperabilityreferralstatus",
        "progres_comments",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

enum PriorStep {
    Skip,
    WriteBack {
        attempts: i64,
    },
    Process {
        attempts: i64,
        previous_hash: Option<Option<String>>,
    },
}

/// What the ledger says about a decision before it is processed.
fn classify_prior(run: &RunCtx<'_>, record: Option<Record>, status: ReferralStatus) -> PriorStep {
    let Some(r) = record else {
        return PriorStep::Process {
            attempts: 0,
            previous_hash: None,
        };
    };
    // Applied in Primero by an earlier run: only the write-back is left.
    let applied_before =
        r.decision.as_deref() == Some(status.as_str()) && r.dest_ids.contains_key(DEST_REFERRAL);
    match r.state {
        RecordState::Confirmed => {
            run.report(|rep| rep.skipped += 1);
            PriorStep::Skip
        }
        RecordState::Delivered => PriorStep::WriteBack {
            attempts: r.attempts,
        },
        RecordState::Failed if r.next_retry_at.is_some_and(|t| t > run.ctx.now()) => {
            run.report(|rep| rep.exclude(EXCLUDED_RETRY_NOT_DUE));
            PriorStep::Skip
        }
        RecordState::Failed | RecordState::Pending if applied_before => PriorStep::WriteBack {
            attempts: r.attempts,
        },
        RecordState::Failed | RecordState::Pending => PriorStep::Process {
            attempts: r.attempts,
            previous_hash: None,
        },
        RecordState::Rejected | RecordState::Conflict => PriorStep::Process {
            attempts: r.attempts,
            previous_hash: Some(r.payload_hash),
        },
    }
}

/// SHP-2796 for the candidates (bracketed lists, concurrently), mapped to decisions. Problems
/// are recorded here; the decisions to apply are returned. A list PING refuses (a permanent
/// error) is halved until the refused id is alone, which alone is rejected (R1); transient
/// errors leave the chunk's records failed for a later run.
async fn details(
    run: &RunCtx<'_>,
    candidates: Vec<Candidate>,
) -> Result<Vec<(Candidate, Decision)>, FlowError> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let ctx = run.ctx;
    let shp = &ctx.config.ping.shipping_processes.decision_details;
    let mut queue: Vec<Vec<Candidate>> = Vec::new();
    let mut it = candidates.into_iter().peekable();
    while it.peek().is_some() {
        queue.push(it.by_ref().take(DETAIL_CHUNK).collect());
    }
    let mut out = Vec::new();
    while !queue.is_empty() {
        let fetched: Vec<(Vec<Candidate>, Result<pp_ping::Retrieved, PingError>)> =
            futures::stream::iter(std::mem::take(&mut queue))
                .map(|chunk| async move {
                    let ids: Vec<String> = chunk.iter().map(|c| c.referral_id.clone()).collect();
                    let r = ctx.ping.retrieve(shp, &ids).await;
                    (chunk, r)
                })
                .buffer_unordered(ctx.config.ping.http.max_concurrency.max(1))
                .collect()
                .await;
        let mut changes = Vec::new();
        for (mut chunk, result) in fetched {
            let retrieved = match result {
                Ok(r) => r,
                Err(e) if e.class() == ErrorClass::Auth => return Err(e.into()),
                Err(e) if e.class() == ErrorClass::Transient => {
                    for c in chunk {
                        changes.push(run.failed(
                            &c.key,
                            TRANSIENT,
                            format!("{shp} for {}: {e}", c.referral_id),
                            c.attempts,
                        ));
                    }
                    continue;
                }
                Err(e) if chunk.len() > 1 => {
                    tracing::warn!(
                        ids = chunk.len(),
                        error = %e,
                        "{shp} refused a list of ids; asking again in halves"
                    );
                    let second = chunk.split_off(chunk.len() / 2);
                    queue.push(chunk);
                    queue.push(second);
                    continue;
                }
                Err(e) => {
                    for c in chunk {
                        // Refused again the same way: not recorded again.
                        let hash =
                            ctx.payload_hash(&json!({"refused": c.referral_id, "kind": e.kind()}));
                        if c.previous_hash
                            .as_ref()
                            .is_some_and(|h| h.as_deref() == Some(hash.as_str()))
                        {
                            run.report(|r| r.held += 1);
                            continue;
                        }
                        changes.push(
                            run.rejected(
                                &c.key,
                                VALIDATION_ERROR,
                                format!("{shp} refused referral {}: {e}", c.referral_id),
                            )
                            .with_error_class(pp_ledger::ErrorClass::Permanent)
                            .with_payload_hash(hash),
                        );
                    }
                    continue;
                }
            };
            run.report(|r| {
                for tx in &retrieved.transaction_ids {
                    r.add_transaction(tx);
                }
            });
            let (decided, problems) = read_details(run, chunk, &retrieved.rows);
            out.extend(decided);
            changes.extend(problems);
        }
        run.commit(changes, None).await?;
    }
    Ok(out)
}

/// The decisions of one chunk from its SHP-2796 rows, and the changes of the records that
/// cannot be decided (no row, rows that disagree, a row missing keys, a code that is no
/// decision).
fn read_details(
    run: &RunCtx<'_>,
    chunk: Vec<Candidate>,
    rows: &[Row],
) -> (Vec<(Candidate, Decision)>, Vec<RecordChange>) {
    let ctx = run.ctx;
    let shp = &ctx.config.ping.shipping_processes.decision_details;
    let codes = ctx.config.maps.codes.interop_status;
    let mut by_id: HashMap<String, Vec<Result<DecisionDetail, RowError>>> = HashMap::new();
    // A row without a referral id can only be attributed when one id was asked for.
    let only = (chunk.len() == 1).then(|| norm_id(&chunk[0].referral_id));
    for row in rows {
        let id = match row.get_text(keys_decision::REFERRAL_ID) {
            Some(id) if !id.trim().is_empty() => norm_id(&id),
            _ => match &only {
                Some(id) => id.clone(),
                None => continue,
            },
        };
        by_id
            .entry(id)
            .or_default()
            .push(DecisionDetail::from_row(row));
    }
    let mut out = Vec::new();
    let mut changes = Vec::new();
    for c in chunk {
        let rows = by_id.remove(&norm_id(&c.referral_id)).unwrap_or_default();
        // What the rows said, for rejections and conflicts: unchanged rows are not recorded
        // again on every run.
        let source_hash = ctx.payload_hash(&details_json(&rows));
        let unchanged = c
            .previous_hash
            .as_ref()
            .is_some_and(|h| h.as_deref() == Some(source_hash.as_str()));
        let detail = match flow22::single_detail(&rows) {
            None => {
                changes.push(run.failed(
                    &c.key,
                    TRANSIENT,
                    format!("{shp} returned no row for {}", c.referral_id),
                    c.attempts,
                ));
                continue;
            }
            Some(Err(Rejection { reason, message })) => {
                let conflict = run.conflict(
                    &c.key,
                    reason,
                    format!("interoperability referral {}: {message}", c.referral_id),
                );
                record_unless_unchanged(run, &mut changes, unchanged, conflict, source_hash);
                continue;
            }
            Some(Ok(Err(e))) => {
                let rejected = run.rejected(
                    &c.key,
                    MISSING_REQUIRED_FIELDS,
                    format!("{shp} row of {}: {e}", c.referral_id),
                );
                record_unless_unchanged(run, &mut changes, unchanged, rejected, source_hash);
                continue;
            }
            Some(Ok(Ok(d))) => d,
        };
        match flow22::map_decision(&codes, &detail) {
            Err(Rejection { reason, message }) => {
                let rejected = run.rejected(
                    &c.key,
                    reason,
                    format!("interoperability referral {}: {message}", c.referral_id),
                );
                record_unless_unchanged(run, &mut changes, unchanged, rejected, source_hash);
            }
            Ok(d) if d.status != c.status => {
                // Decided again between the two reads: the next run sees the new status.
                run.report(|r| r.exclude(EXCLUDED_STATUS_CHANGED));
            }
            Ok(mut d) => {
                d.code = c.code;
                let hash = ctx.payload_hash(&d.payload_json());
                if c.previous_hash
                    .as_ref()
                    .is_some_and(|h| h.as_deref() == Some(&hash))
                {
                    // Refused earlier with this very decision: nothing changed since.
                    run.report(|r| r.held += 1);
                    continue;
                }
                out.push((c, d));
            }
        }
    }
    (out, changes)
}

/// Records a rejection or conflict read from a referral's rows with the rows' keyed hash,
/// unless the rows hash as when it was last recorded (`unchanged`): then it is only counted
/// as held, so unchanged rows are not recorded again on every run.
fn record_unless_unchanged(
    run: &RunCtx<'_>,
    changes: &mut Vec<RecordChange>,
    unchanged: bool,
    change: RecordChange,
    source_hash: String,
) {
    if unchanged {
        run.report(|r| r.held += 1);
    } else {
        changes.push(change.with_payload_hash(source_hash));
    }
}

/// The readings of a referral's SHP-2796 rows as JSON, for the keyed hash of a rejection or
/// conflict (never stored itself).
fn details_json(rows: &[Result<DecisionDetail, RowError>]) -> serde_json::Value {
    rows.iter()
        .map(|r| match r {
            Ok(d) => json!({
                "status": d.status,
                "review_decision": d.review_decision,
                "offline_id": d.offline_id,
                "org_referral_id": d.org_referral_id,
                "reason": d.rejection_reason_name,
                "comment": d.rejection_comment,
            }),
            Err(e) => json!({ "error": e.keys() }),
        })
        .collect()
}

/// What the batched case search says about one decision's `case_id`.
enum CaseLookup {
    /// The cases whose `case_id` is exactly the decision's (none, one or several).
    Found(Vec<Case>),
    /// The search that should have found them failed.
    Failed(PrimeroError),
}

/// Step 4, first half: the Primero cases of every decision, [`SEARCH_PER_CALL`] distinct
/// `case_id`s per search (`case_id[0]=…&case_id[1]=…`, a list filter that matches identifiers
/// exactly), searches running concurrently up to `max_concurrency`. Returned cases are given
/// to decisions by their exact `case_id` value, never by position, so a server that ignored
/// the filter cannot widen a match. A failed search concerns its chunk only: an auth error
/// ends the run (before any PATCH), a transient one leaves the chunk's decisions failed, and
/// a refused one is asked again in halves until the refused `case_id` is alone, whose
/// decisions alone are rejected (R1).
async fn find_cases(
    run: &RunCtx<'_>,
    decisions: Vec<(Candidate, Decision)>,
) -> Result<Vec<(Candidate, Decision, CaseLookup)>, FlowError> {
    // Decisions grouped by case_id, in the order first seen (several services of one case
    // share one search slot).
    let mut slot: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<CaseGroup> = Vec::new();
    for (c, d) in decisions {
        match slot.get(&d.case_id) {
            Some(&i) => groups[i].1.push((c, d)),
            None => {
                slot.insert(d.case_id.clone(), groups.len());
                groups.push((d.case_id.clone(), vec![(c, d)]));
            }
        }
    }
    let mut chunks: Vec<Vec<CaseGroup>> = Vec::new();
    let mut it = groups.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(SEARCH_PER_CALL).collect());
    }
    let concurrency = run.ctx.config.primero.http.max_concurrency.max(1);
    let searched: Vec<Vec<(Candidate, Decision, CaseLookup)>> = futures::stream::iter(chunks)
        .map(|chunk| search_chunk(run, chunk))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let found: Vec<(Candidate, Decision, CaseLookup)> = searched.into_iter().flatten().collect();
    // Refused credentials end the run before any PATCH.
    if let Some(e) = found.iter().find_map(|(_, _, l)| match l {
        CaseLookup::Failed(e) if e.class() == ErrorClass::Auth => Some(e.clone()),
        _ => None,
    }) {
        return Err(e.into());
    }
    Ok(found)
}

/// The searches of one chunk of `case_id`s (halved while Primero refuses a list). A chunk
/// not searched yet when the run is asked to stop is left for the next run.
async fn search_chunk(
    run: &RunCtx<'_>,
    chunk: Vec<CaseGroup>,
) -> Vec<(Candidate, Decision, CaseLookup)> {
    let ctx = run.ctx;
    let mut out = Vec::new();
    let mut queue = vec![chunk];
    while let Some(mut set) = queue.pop() {
        if run.stopping() {
            return out;
        }
        let query = CaseQuery {
            filters: set
                .iter()
                .enumerate()
                .map(|(n, (case_id, _))| (format!("case_id[{n}]"), case_id.clone()))
                .collect(),
            ..CaseQuery::default()
        }
        .with_fields(["case_id"]);
        match ctx.primero.list_cases(&query).await {
            Ok(cases) => {
                for (case_id, items) in set {
                    let mine: Vec<Case> = cases
                        .iter()
                        .filter(|c| c.str_field("case_id") == Some(case_id.as_str()))
                        .cloned()
                        .collect();
                    for (c, d) in items {
                        out.push((c, d, CaseLookup::Found(mine.clone())));
                    }
                }
            }
            Err(e) if e.class() == ErrorClass::Permanent && set.len() > 1 => {
                tracing::warn!(
                    case_ids = set.len(),
                    error = %e,
                    "Primero refused a batched case search; asking again in halves"
                );
                let second = set.split_off(set.len() / 2);
                queue.push(set);
                queue.push(second);
            }
            Err(e) => {
                for (_, items) in set {
                    for (c, d) in items {
                        out.push((c, d, CaseLookup::Failed(e.clone())));
                    }
                }
            }
        }
    }
    out
}

/// Steps 4-5 for one decision, its case already searched: the change to record and, when it
/// reached Primero, the write-back to do.
async fn apply_decision(
    run: &RunCtx<'_>,
    c: Candidate,
    d: Decision,
    lookup: CaseLookup,
) -> Result<Outcome, FlowError> {
    let ctx = run.ctx;
    let hash = ctx.payload_hash(&d.payload_json());
    let key = c.key.clone();
    let fail = |reason: &str, message: String| {
        run.failed(&key, reason, message, c.attempts)
            .with_payload_hash(hash.clone())
    };
    let from_error = |what: &str, e: PrimeroError| -> Result<RecordChange, FlowError> {
        match e.class() {
            ErrorClass::Auth => Err(e.into()),
            ErrorClass::Transient => Ok(fail(TRANSIENT, format!("{what}: {e}"))),
            ErrorClass::Permanent => Ok(run
                .rejected(&key, VALIDATION_ERROR, format!("{what}: {e}"))
                .with_error_class(pp_ledger::ErrorClass::Permanent)
                .with_payload_hash(hash.clone())),
        }
    };

    // Step 4: the case, exactly (searched in a batch before).
    let cases = match lookup {
        CaseLookup::Found(c) => c,
        CaseLookup::Failed(e) => return from_error("finding the case", e).map(|c| (c, None)),
    };
    let case = match cases.as_slice() {
        [] => {
            return Ok((
                fail(
                    flow22::CASE_NOT_FOUND,
                    format!("no Primero case with case_id {}", d.case_id),
                ),
                None,
            ))
        }
        [one] => one,
        several => {
            let ids: Vec<&str> = several.iter().map(|c| c.id.as_str()).collect();
            return Ok((
                run.conflict(
                    &key,
                    flow22::DUPLICATE_CASES,
                    format!(
                        "several Primero cases with case_id {}: {}",
                        d.case_id,
                        ids.join(", ")
                    ),
                )
                .with_payload_hash(hash.clone()),
                None,
            ));
        }
    };
    let referrals = match ctx.primero.list_referrals(&case.id).await {
        Ok(r) => r,
        Err(PrimeroError::NotFound { .. }) => {
            return Ok((
                fail(
                    flow22::CASE_NOT_FOUND,
                    format!("case {} disappeared while reading its referrals", case.id),
                ),
                None,
            ))
        }
        Err(e) => return from_error("reading the referrals", e).map(|c| (c, None)),
    };
    let referral = match flow22::find_referral(&referrals, &d.unique_id, d.status) {
        Ok(r) => r,
        Err(Rejection { reason, message }) if reason == flow22::REFERRAL_NOT_FOUND => {
            return Ok((
                fail(reason, format!("case {}: {message}", case.id))
                    .with_dest_id(DEST_CASE, case.id.clone()),
                None,
            ))
        }
        Err(Rejection { reason, message }) => {
            return Ok((
                run.conflict(&key, reason, format!("case {}: {message}", case.id))
                    .with_payload_hash(hash.clone()),
                None,
            ))
        }
    };

    // Already in the requested state (the listing above just read it): delivered, with no
    // second listing and no PATCH (a PATCH would bump the case's last_updated_at).
    if referral.status == d.status.as_str() {
        return Ok(delivered(run, c, d, hash, &case.id, &referral.id));
    }

    // Step 5: PATCH the referral just read, verified from Primero's answer (R8).
    let outcome = match ctx
        .primero
        .patch_referral_status(
            &case.id,
            &referral.id,
            d.status,
            d.rejected_reason.as_deref(),
        )
        .await
    {
        Ok(o) => o,
        Err(PrimeroError::NotFound { .. }) => {
            return Ok((
                fail(
                    flow22::REFERRAL_NOT_FOUND,
                    format!("referral {} of case {} not found", referral.id, case.id),
                ),
                None,
            ))
        }
        Err(e) => return from_error("setting the referral status", e).map(|c| (c, None)),
    };
    if !outcome.applied {
        return Ok((
            run.rejected(
                &key,
                flow22::TRANSITION_REFUSED,
                format!(
                    "Primero kept referral {} of case {} in status {} (requested {})",
                    referral.id,
                    case.id,
                    bounded_status(&outcome.returned_status),
                    d.status
                ),
            )
            .with_error_class(pp_ledger::ErrorClass::Permanent)
            .with_payload_hash(hash)
            .with_dest_id(DEST_CASE, case.id.clone())
            .with_dest_id(DEST_REFERRAL, referral.id.clone()),
            None,
        ));
    }
    Ok(delivered(run, c, d, hash, &case.id, &referral.id))
}

/// A decision applied in Primero: recorded delivered, its write-back to do.
fn delivered(
    run: &RunCtx<'_>,
    c: Candidate,
    d: Decision,
    hash: String,
    case_id: &str,
    referral_id: &str,
) -> Outcome {
    let change = run
        .change(&c.key, RecordState::Delivered)
        .with_payload_hash(hash)
        .with_decision(d.status.as_str())
        .with_dest_id(DEST_CASE, case_id.to_owned())
        .with_dest_id(DEST_REFERRAL, referral_id.to_owned())
        .with_attempt();
    (
        change,
        Some(Applied {
            key: c.key,
            referral_id: c.referral_id,
            attempts: c.attempts + 1,
        }),
    )
}

/// A status as Primero returned it, cut to an identifier-like length.
fn bounded_status(s: &str) -> String {
    s.chars()
        .take(32)
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// Step 6: SHP-2284 in batches whose `ExternalId`s (referral ids) are unique, so that every
/// `FailedRecords` entry names one record. Named refusals are rejected; a failure that names
/// no record (compared trimmed and case-insensitively) makes the batch ambiguous, and it is
/// split until the culprits are found (R1), never taken as written back.
async fn write_back(run: &RunCtx<'_>, applied: Vec<Applied>) -> Result<(), FlowError> {
    if applied.is_empty() {
        return Ok(());
    }
    let ctx = run.ctx;
    let codes = ctx.config.maps.codes.interop_status;
    let shp = &ctx.config.ping.shipping_processes.referral_synced;
    let size = ctx.config.ping.batch_size.max(1);
    let mut queue = unique_batches(applied, size, |a: &Applied| a.referral_id.as_str());
    while let Some(batch) = queue.pop() {
        let records: Vec<IngestRecord> = batch
            .iter()
            .map(|a| flow22::synced_record(&codes, &a.referral_id))
            .collect();
        let (sorted, tx) = match ctx.ping.ingest(shp, &records).await {
            Ok(outcome) => (
                sort_failures(batch, |a| a.referral_id.as_str(), &outcome.failed, true),
                outcome.transaction_id,
            ),
            Err(e @ PingError::Auth { .. }) => return Err(e.into()),
            Err(PingError::BatchRejected {
                failed,
                transaction_id,
            }) => (
                sort_failures(batch, |a| a.referral_id.as_str(), &failed, false),
                transaction_id,
            ),
            Err(e) if e.class() == ErrorClass::Transient => {
                let changes = batch
                    .iter()
                    .map(|a| {
                        run.failed(
                            &a.key,
                            TRANSIENT,
                            format!("{shp} write-back: {e}"),
                            a.attempts,
                        )
                    })
                    .collect();
                run.commit(changes, None).await?;
                continue;
            }
            Err(e) => {
                // Refused as a whole, naming nobody: halves, a single record is rejected.
                let sorted = sort_failures(batch, |a| a.referral_id.as_str(), &[], false);
                let refused_message = e.to_string();
                let changes = sorted
                    .refused
                    .iter()
                    .map(|(a, _)| refused(run, a, shp, &refused_message))
                    .collect();
                run.commit(changes, None).await?;
                queue.extend(sorted.resend);
                continue;
            }
        };
        if let Some(tx) = &tx {
            run.report(|r| r.add_transaction(tx));
        }
        let mut changes: Vec<RecordChange> = sorted
            .refused
            .iter()
            .map(|(a, msg)| refused(run, a, shp, msg))
            .collect();
        for a in &sorted.done {
            let c = run.change(&a.key, RecordState::Confirmed);
            changes.push(match &tx {
                Some(tx) => c.with_ping_transaction_id(tx.clone()),
                None => c,
            });
        }
        run.commit(changes, None).await?;
        queue.extend(sorted.resend);
    }
    Ok(())
}

fn refused(run: &RunCtx<'_>, a: &Applied, shp: &str, message: &str) -> RecordChange {
    run.rejected(
        &a.key,
        VALIDATION_ERROR,
        format!("{shp} refused marking {} synced: {message}", a.referral_id),
    )
    .with_error_class(pp_ledger::ErrorClass::Permanent)
}
