//! Flow 2.1 `referrals-to-progres` (flows.md): Primero services referred to UNHCR become
//! proGres interoperability referrals.
//!
//! A run (1) re-checks the records an earlier run left `delivered` (check-status timed out)
//! with their `SPHTransactionId`, never re-sending them (a transaction PING does not know, a
//! record without a transaction id, or one still unsettled after `MAX_RECHECKS` re-checks
//! becomes a `conflict`, `check_status_unresolved`), and searches proGres for the records
//! whose `/asyncdata` call failed transiently (`ingestion_unconfirmed`: PING may have them)
//! before they are sent again; (2) reads the cases changed since the
//! cursor, all pages, ordered by `last_updated_at`, with only the fields the mapping reads
//! (`flow21::CASE_FIELDS`), and keeps the service rows implemented by
//! UNHCR (configured values, case-insensitive); (3) reads the referrals of those cases, one
//! call per case, concurrently, and keeps the referred rows the ledger has not handled; (4)
//! reads the users once and maps each row in pure code (`pp_mapping::flow21`); (5) sends the
//! records to `/asyncdata` (SHP-2731) in batches whose `ExternalId`s (`case_id`) are unique,
//! records them `delivered`, and polls check-status until each is confirmed or rejected, or
//! the timeout leaves it `delivered` (results are matched by `progres_orgreferralid`, or by an
//! `ExternalId` naming one record, never by position); a page's deliveries go on while the
//! next page is prepared (steps 2-4), at most two pages in delivery at once, and the ledger
//! records of a page's rows are read in one query;
//! (6) retries the records whose retry time has come; (7) moves the cursor to the greatest
//! `last_updated_at` seen (never "now"), after checking that offset paging skipped no case.
//! Records are keyed by the service row's `unique_id`, so re-reading a case (Primero's filter
//! is inclusive, and 2.2's writes bump `last_updated_at`) never sends a row twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use pp_config::CaseworkerPolicy as ConfigPolicy;
use pp_http::ErrorClass;
use pp_ledger::{Record, RecordChange, RecordFilter, RecordState};
use pp_mapping::flow11::{Rejection, TRANSIENT, VALIDATION_ERROR};
use pp_mapping::flow21::{self, CaseworkerPolicy, Contact, MappedReferral, Settings};
use pp_ping::{CheckStatus, PingError, RecordFailure, RecordResult};
use pp_primero::{Case, CaseQuery, PrimeroError, Referral, SortDirection, Users};
use serde_json::json;

use crate::{FlowError, RunCtx};

/// Reason of records whose check-status did not finish within the configured timeout (they
/// stay `delivered`; the next run checks again).
pub const CHECK_STATUS_TIMEOUT: &str = "check_status_timeout";
/// Reason of delivered records whose check-status was processed without a result naming them
/// (they stay `delivered`; the next run checks again).
pub const CHECK_STATUS_NO_RESULT: &str = "check_status_no_result";
/// Conflict reason of delivered records whose outcome PING cannot tell: the transaction is
/// unknown to PING, the record has no transaction id, or it stayed unsettled after
/// [`MAX_RECHECKS`] re-checks. A person must look in proGres (a re-send could duplicate it).
pub const CHECK_STATUS_UNRESOLVED: &str = "check_status_unresolved";
/// Failed reason of records whose `/asyncdata` call failed transiently: PING may have
/// received them, so proGres is searched for them before they are sent again.
pub const INGESTION_UNCONFIRMED: &str = "ingestion_unconfirmed";
/// Re-checks by later runs after which an unsettled delivered record becomes a conflict.
pub const MAX_RECHECKS: i64 = 5;
/// Ledger fact counting the re-checks of a delivered record: `{"tx", "checks"}`.
const FACT_RECHECKS: &str = "f21_check_status_rechecks";
/// Report reason of records whose retry time has not come yet.
pub const EXCLUDED_RETRY_NOT_DUE: &str = "retry_not_due";
/// Destination-id names stored with the records.
pub const DEST_CASE: &str = "primero_case";
pub const DEST_CASE_ID: &str = "case_id";
pub const DEST_INTEROP_REFERRAL: &str = "progres_interoperabilityreferralid";

/// Most delivered / due records handled per run by the re-check and retry passes.
const PASS_LIMIT: i64 = 10_000;

/// What the ledger says about a row before it is mapped.
#[derive(Clone, Debug)]
enum Prior {
    /// Never seen, failed and due, or re-queued: process.
    Process { attempts: i64 },
    /// Rejected or in conflict: process only when the payload hash changed.
    IfChanged { attempts: i64, hash: Option<String> },
}

/// A row ready to send.
struct Outgoing {
    mapped: MappedReferral,
    hash: String,
    attempts: i64,
}

/// A case, its rows to consider, and its referrals (or why they could not be read).
type Listed = (
    Case,
    Vec<(String, Prior)>,
    Result<Vec<Referral>, PrimeroError>,
);

/// Run-wide state of the listing consumer.
struct State {
    users: Option<Users>,
    max_seen: Option<DateTime<Utc>>,
    seen_cases: HashSet<String>,
    /// Row keys handled by this run.
    handled: HashSet<String>,
}

pub async fn run(run: &RunCtx<'_>) -> Result<(), FlowError> {
    let ctx = run.ctx;
    let flow = run.flow.name();
    let settings = settings(run)?;

    // (1) Records left delivered by an earlier run: check again, never re-send. Records
    // whose ingestion may have reached PING are searched for in proGres before a re-send.
    recheck_delivered(run).await?;
    resolve_unconfirmed(run).await?;

    // (2)-(5) Cases changed since the cursor.
    let start = match ctx.ledger.cursor(flow).await? {
        Some(c) => DateTime::parse_from_rfc3339(&c)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|_| FlowError::Config(format!("cursor of {flow} is not a timestamp")))?,
        None => ctx
            .config
            .try_flow(flow)
            .map(|f| f.start_from)
            .unwrap_or(ctx.config.service.start_from)
            .resolve(run.started_at),
    };
    let query = CaseQuery::updated_since(start)
        .ordered_by("last_updated_at", SortDirection::Asc)
        .with_fields(flow21::CASE_FIELDS.iter().copied())
        .with_page_size(CASES_PER_PAGE);
    let mut state = State {
        users: None,
        max_seen: None,
        seen_cases: HashSet::new(),
        handled: HashSet::new(),
    };
    // The listing reads one page ahead (while a page is prepared, the next is fetched and
    // parsed): two pages of cases at most are held, besides the deliveries in flight.
    let mut listing = ctx.primero.case_pages(&query)?;
    // Deliveries (ingestion, check-status, ledger) of earlier pages go on while the next
    // pages' referrals are read; at most `DELIVERIES_IN_FLIGHT` pages are in delivery, so
    // memory stays bounded by a few pages (R10).
    let mut inflight: Inflight<'_> = FuturesUnordered::new();
    let mut result = Ok::<(), FlowError>(());
    loop {
        let page = match alongside(Box::pin(listing.next_page()), &mut inflight).await {
            Ok(Ok(Some(page))) => page,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                result = Err(e.into());
                break;
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        if run.stopping() {
            break;
        }
        let prepared = alongside(
            Box::pin(prepare_cases(run, &settings, &mut state, page)),
            &mut inflight,
        )
        .await
        .and_then(|r| r);
        match prepared {
            Ok(outgoing) if !outgoing.is_empty() => inflight.push(Box::pin(deliver(run, outgoing))),
            Ok(_) => {}
            Err(e) => {
                result = Err(e);
                break;
            }
        }
        while inflight.len() >= DELIVERIES_IN_FLIGHT {
            if let Some(Err(e)) = inflight.next().await {
                result = Err(e);
                break;
            }
        }
        if result.is_err() {
            break;
        }
    }
    let pages = listing.stats().pages;
    // Stops the read-ahead when the run stopped early.
    drop(listing);
    // Deliveries already started finish (their records are sent: their outcome must reach
    // the ledger), even when a later page failed.
    while let Some(done) = inflight.next().await {
        if let Err(e) = done {
            if result.is_ok() {
                result = Err(e);
            }
        }
    }
    result?;
    if run.stopping() {
        return Ok(());
    }
    if pages > 1 {
        catch_up(run, &settings, &mut state, start).await?;
    }

    // (6) Records whose retry time has come and whose case was not re-read above.
    retry_due(run, &settings, &mut state).await?;

    // (7) The cursor: the greatest last_updated_at seen, re-read inclusively next time.
    if let Some(max) = state.max_seen {
        if max > start {
            let value = max.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            run.commit(Vec::new(), Some(&value)).await?;
        }
    }
    Ok(())
}

/// The mapping settings from the configuration.
fn settings(run: &RunCtx<'_>) -> Result<Settings, FlowError> {
    let cfg = &run.ctx.config;
    let policy = match cfg.primero.on_incomplete_caseworker {
        ConfigPolicy::Reject => CaseworkerPolicy::Reject,
        ConfigPolicy::FocalPoint => {
            let fp = cfg.primero.focal_point.as_ref().ok_or_else(|| {
                FlowError::Config(
                    "primero.on_incomplete_caseworker = focal_point needs [primero.focal_point]"
                        .into(),
                )
            })?;
            CaseworkerPolicy::FocalPoint(Contact {
                position: fp.position.clone(),
                email: fp.email.clone(),
                phone: fp.phone.clone(),
            })
        }
    };
    Ok(Settings {
        business_unit: cfg.progres.business_unit.to_string(),
        organization_from: cfg.progres.organization_from.to_string(),
        referred_by: cfg.progres.referred_by.clone(),
        on_incomplete_caseworker: policy,
    })
}

/// Classifies a ledger record of a row about to be considered; `None` = skip (counted).
fn prior(run: &RunCtx<'_>, record: Option<Record>) -> Option<Prior> {
    let Some(r) = record else {
        return Some(Prior::Process { attempts: 0 });
    };
    match r.state {
        RecordState::Confirmed | RecordState::Delivered => {
            run.report(|rep| rep.skipped += 1);
            None
        }
        RecordState::Failed => match r.next_retry_at {
            Some(at) if at > run.ctx.now() => {
                run.report(|rep| rep.exclude(EXCLUDED_RETRY_NOT_DUE));
                None
            }
            _ => Some(Prior::Process {
                attempts: r.attempts,
            }),
        },
        RecordState::Pending => Some(Prior::Process {
            attempts: r.attempts,
        }),
        RecordState::Rejected | RecordState::Conflict => Some(Prior::IfChanged {
            attempts: r.attempts,
            hash: r.payload_hash,
        }),
    }
}

/// The transient or permanent failure of one record, from a client error.
fn record_failure(
    run: &RunCtx<'_>,
    key: &str,
    case: &Case,
    attempts: i64,
    class: ErrorClass,
    message: String,
) -> RecordChange {
    let change = match class {
        ErrorClass::Permanent => run
            .rejected(key, VALIDATION_ERROR, message)
            .with_error_class(pp_ledger::ErrorClass::Permanent),
        _ => run.failed(key, TRANSIENT, message, attempts),
    };
    with_case_ids(change, case)
}

fn with_case_ids(mut change: RecordChange, case: &Case) -> RecordChange {
    if is_ident(&case.id) {
        change = change.with_dest_id(DEST_CASE, case.id.clone());
    }
    if let Some(cid) = case.case_id.as_ref().filter(|c| is_ident(c)) {
        change = change.with_dest_id(DEST_CASE_ID, cid.clone());
    }
    change
}

/// Whether a source identifier can be stored as a ledger key or destination id (bounded,
/// no control characters): anything else would make the ledger refuse the whole commit.
pub(crate) fn is_ident(s: &str) -> bool {
    !s.trim().is_empty() && s.len() <= 200 && !s.chars().any(char::is_control)
}

/// Report reason of rows whose `unique_id` cannot be a record key.
pub const EXCLUDED_BAD_UNIQUE_ID: &str = "service_row_with_unusable_unique_id";

/// The keyed hash of what a rejected row was mapped from (so that a changed source is retried).
/// The case fields of a rejected row's source hash (all among [`flow21::CASE_FIELDS`], the
/// fields the listing asks for).
const SOURCE_HASH_FIELDS: [&str; 12] = [
    "case_id",
    "sex",
    "date_of_birth",
    "name_first",
    "name_middle",
    "name_last",
    "telephone_current",
    "address_current",
    "unhcr_id_no",
    "unhcr_individual_no",
    "protection_concerns",
    "owned_by",
];

fn source_hash(
    run: &RunCtx<'_>,
    case: &Case,
    row: &pp_primero::ServiceRow,
    referral: &Referral,
    owner_complete: [bool; 3],
) -> String {
    let fields: serde_json::Map<String, serde_json::Value> = SOURCE_HASH_FIELDS
        .iter()
        .filter_map(|k| case.data.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect();
    run.ctx.payload_hash(&json!({
        "case": fields,
        "row": serde_json::Value::Object(row.fields.clone()),
        "referral_created_at": referral.created_at.map(|t| t.to_rfc3339()),
        "owner": owner_complete,
    }))
}

/// Steps 2-5 for one page of cases (or the cases re-read for retries).
async fn process_cases(
    run: &RunCtx<'_>,
    settings: &Settings,
    state: &mut State,
    cases: Vec<Case>,
) -> Result<(), FlowError> {
    let outgoing = prepare_cases(run, settings, state, cases).await?;
    if outgoing.is_empty() {
        return Ok(());
    }
    deliver(run, outgoing).await
}

/// Cases per listing page. Half of Primero's cap: a page being prepared, the page read
/// ahead and the deliveries of two earlier pages are held at once, and a page of 1,000 cases
/// with its referrals was most of the run's peak memory; the extra list requests (one per
/// 500 cases) are a small part of the run's calls (one per case for the referrals).
const CASES_PER_PAGE: u64 = 500;

/// Pages whose deliveries may be in progress while the next page is prepared.
const DELIVERIES_IN_FLIGHT: usize = 2;

/// Deliveries in flight (boxed: the futures borrow the run, and a boxed, explicitly `Send`
/// future keeps the run's future `Send` for the daemon's tasks).
type Inflight<'a> = FuturesUnordered<BoxFuture<'a, Result<(), FlowError>>>;

/// Awaits `fut` while driving the deliveries in flight; the first delivery error wins.
async fn alongside<'f, 'a, T>(
    fut: BoxFuture<'f, T>,
    inflight: &mut Inflight<'a>,
) -> Result<T, FlowError> {
    let mut fut = fut;
    loop {
        tokio::select! {
            out = &mut fut => return Ok(out),
            Some(done) = inflight.next(), if !inflight.is_empty() => done?,
        }
    }
}

/// Steps 2-5 up to the sending: the rows of `cases` to send (rejections and failures are
/// recorded here).
async fn prepare_cases(
    run: &RunCtx<'_>,
    settings: &Settings,
    state: &mut State,
    cases: Vec<Case>,
) -> Result<Vec<Outgoing>, FlowError> {
    let ctx = run.ctx;
    let flow = run.flow.name();
    let primero_cfg = &ctx.config.primero;

    // Step 2: UNHCR rows not handled yet (their ledger records read in one go).
    let mut candidates: Vec<(Case, Vec<String>)> = Vec::new();
    for case in cases {
        if let Some(t) = case.last_updated_at {
            if state.max_seen.is_none_or(|m| t > m) {
                state.max_seen = Some(t);
            }
        }
        state.seen_cases.insert(case.id.clone());
        let mut rows = Vec::new();
        for row in case.services() {
            if let Some(reason) = flow21::row_exclusion(&row, |a| primero_cfg.is_unhcr_agency(a)) {
                run.report(|r| r.exclude(reason));
                continue;
            }
            let key = row.unique_id.clone().unwrap_or_default();
            if !is_ident(&key) || !is_ident(&case.id) {
                run.report(|r| r.exclude(EXCLUDED_BAD_UNIQUE_ID));
                continue;
            }
            if !state.handled.insert(key.clone()) {
                // Seen earlier in this run (a row listed twice): handled once.
                run.report(|r| r.skipped += 1);
                continue;
            }
            run.report(|r| r.fetched += 1);
            rows.push(key);
        }
        if !rows.is_empty() {
            candidates.push((case, rows));
        }
    }
    let keys: Vec<String> = candidates
        .iter()
        .flat_map(|(_, rows)| rows.iter().cloned())
        .collect();
    let mut records = if keys.is_empty() {
        HashMap::new()
    } else {
        ctx.ledger.get_many(flow, &keys).await?
    };
    let mut wanted: Vec<(Case, Vec<(String, Prior)>)> = Vec::new();
    for (case, keys) in candidates {
        let rows: Vec<(String, Prior)> = keys
            .into_iter()
            .filter_map(|key| prior(run, records.remove(&key)).map(|p| (key, p)))
            .collect();
        if !rows.is_empty() {
            wanted.push((case, rows));
        }
    }
    if wanted.is_empty() {
        return Ok(Vec::new());
    }

    // Step 3: the referrals of those cases, one call per case, concurrently.
    let concurrency = primero_cfg.http.max_concurrency.max(1);
    let mut listed: Vec<Listed> = futures::stream::iter(wanted)
        .map(|(case, rows)| async move {
            let refs = ctx.primero.list_referrals(&case.id).await;
            (case, rows, refs)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;

    // Step 4: users once per run.
    if state.users.is_none() {
        state.users = Some(ctx.primero.list_users().await?);
    }
    let users = state.users.as_ref().expect("users were just read");

    // Step 5: map.
    let mut changes: Vec<RecordChange> = Vec::new();
    let mut outgoing: Vec<Outgoing> = Vec::new();
    for (case, rows, refs) in listed.drain(..) {
        let referrals = match refs {
            Ok(r) => r,
            Err(e) if e.class() == ErrorClass::Auth => return Err(e.into()),
            Err(e) => {
                for (key, p) in rows {
                    let attempts = match p {
                        Prior::Process { attempts } | Prior::IfChanged { attempts, .. } => attempts,
                    };
                    let message = format!("reading the referrals of case {}: {e}", case.id);
                    let change = match &e {
                        PrimeroError::NotFound { .. } => with_case_ids(
                            run.failed(&key, "case_not_found", message, attempts),
                            &case,
                        ),
                        _ => record_failure(run, &key, &case, attempts, e.class(), message),
                    };
                    changes.push(change);
                }
                continue;
            }
        };
        let owner = case.owned_by.as_deref().and_then(|n| users.by_user_name(n));
        let owner_complete = owner.map_or([false; 3], |u| {
            [u.email.is_some(), u.phone.is_some(), u.position.is_some()]
        });
        for (key, p) in rows {
            let Some(row) = case.service(&key) else {
                continue;
            };
            let referral = match flow21::referral_for_row(&referrals, &key) {
                Ok(r) => r,
                Err(reason) => {
                    run.report(|r| r.exclude(reason));
                    continue;
                }
            };
            let (attempts, previous_hash) = match p {
                Prior::Process { attempts } => (attempts, None),
                Prior::IfChanged { attempts, hash } => (attempts, Some(hash)),
            };
            match flow21::map_referral(&ctx.config.maps, settings, &case, &row, referral, owner) {
                Ok(mapped) => {
                    let hash = ctx.payload_hash(&mapped.payload_json());
                    if previous_hash
                        .as_ref()
                        .is_some_and(|h| h.as_deref() == Some(&hash))
                    {
                        // Refused earlier, nothing changed since.
                        run.report(|r| r.held += 1);
                        continue;
                    }
                    outgoing.push(Outgoing {
                        mapped,
                        hash,
                        attempts,
                    });
                }
                Err(Rejection { reason, message }) => {
                    let hash = source_hash(run, &case, &row, referral, owner_complete);
                    if previous_hash
                        .as_ref()
                        .is_some_and(|h| h.as_deref() == Some(&hash))
                    {
                        // Refused earlier, nothing changed since.
                        run.report(|r| r.held += 1);
                        continue;
                    }
                    let change = run
                        .rejected(&key, reason, format!("service {key}: {message}"))
                        .with_payload_hash(hash);
                    changes.push(with_case_ids(change, &case));
                }
            }
        }
    }
    run.commit(changes, None).await?;
    if run.dry_run {
        for o in &outgoing {
            run.preview(
                &o.mapped.unique_id,
                &format!(
                    "ingest {} (async)",
                    ctx.config.ping.shipping_processes.incoming_referral
                ),
                o.mapped.field_names(),
            );
        }
        return Ok(Vec::new());
    }
    Ok(outgoing)
}

/// Sends the records in batches of `ping.batch_size` in which every `ExternalId` (`case_id`)
/// is unique (services of one case go to different batches, so that PING's answers, which
/// name records by `ExternalId`, never name two), records them delivered, and confirms them
/// with check-status. A batch whose records all fail is split until the culprits are found
/// (R1: PING may apply a batch all-or-nothing).
async fn deliver(run: &RunCtx<'_>, outgoing: Vec<Outgoing>) -> Result<(), FlowError> {
    let size = run.ctx.config.ping.batch_size.max(1);
    let batches = unique_batches(outgoing, size, |o: &Outgoing| o.mapped.case_id.as_str());
    let mut work = FuturesUnordered::new();
    for b in batches {
        work.push(send_batch(run, b));
    }
    while let Some(result) = work.next().await {
        for again in result? {
            if run.stopping() {
                continue;
            }
            work.push(send_batch(run, again));
        }
    }
    Ok(())
}

/// One `/asyncdata` call and its confirmation. Returns batches to send again (halves of a
/// batch whose records all failed, or the rest of a batch PING refused in part).
async fn send_batch(
    run: &RunCtx<'_>,
    batch: Vec<Outgoing>,
) -> Result<Vec<Vec<Outgoing>>, FlowError> {
    let ctx = run.ctx;
    let shp = &ctx.config.ping.shipping_processes.incoming_referral;
    let records: Vec<_> = batch.iter().map(|o| o.mapped.ingest_record()).collect();
    let tx = match ctx.ping.ingest_async(shp, &records).await {
        Ok(tx) => tx,
        Err(e) => return batch_refused(run, batch, e).await,
    };
    run.report(|r| r.add_transaction(&tx));
    let changes = batch
        .iter()
        .map(|o| {
            let mut c = run
                .change(&o.mapped.unique_id, RecordState::Delivered)
                .with_ping_transaction_id(tx.clone())
                .with_payload_hash(o.hash.clone())
                .with_attempt();
            c = with_mapped_ids(c, &o.mapped);
            c.fallback_used = o.mapped.fallback_used;
            c.contact_substituted = o.mapped.contact_substituted;
            c
        })
        .collect();
    run.commit(changes, None).await?;

    let keys: Vec<String> = batch.iter().map(|o| o.mapped.unique_id.clone()).collect();
    let external: Vec<String> = batch.iter().map(|o| o.mapped.case_id.clone()).collect();
    match poll(run, &tx, false).await? {
        Polled::NotYet | Polled::Unknown => {
            let timeout = ctx.config.ping.check_status_timeout.as_secs();
            still_delivered(
                run,
                &keys,
                &tx,
                CHECK_STATUS_TIMEOUT,
                &format!("not processed within {timeout} s"),
                false,
            )
            .await?;
            Ok(Vec::new())
        }
        Polled::Processed(results) => {
            let matched = match_results(&keys, &external, &results);
            let all_failed = matched.iter().all(|m| m.is_some_and(|r| !r.success));
            if all_failed && batch.len() > 1 {
                // Possibly all-or-nothing: find the culprits in halves.
                let mut batch = batch;
                let second = batch.split_off(batch.len() / 2);
                return Ok(vec![batch, second]);
            }
            apply_results(run, &keys, &matched, &tx, false).await?;
            Ok(Vec::new())
        }
    }
}

/// The ingestion call itself failed.
async fn batch_refused(
    run: &RunCtx<'_>,
    batch: Vec<Outgoing>,
    e: PingError,
) -> Result<Vec<Vec<Outgoing>>, FlowError> {
    match e {
        PingError::Auth { .. } => Err(e.into()),
        PingError::BatchRejected { failed, .. } => {
            // Refusals name records by ExternalId, unique in the batch; a refusal naming no
            // record splits the batch (R1).
            let sorted = sort_failures(batch, |o| o.mapped.case_id.as_str(), &failed, false);
            let changes = sorted
                .refused
                .iter()
                .map(|(o, msg)| rejected_by_ping(run, o, msg))
                .collect();
            run.commit(changes, None).await?;
            Ok(sorted.resend)
        }
        e if e.class() == ErrorClass::Transient => {
            // The call may have reached PING (a timeout or a lost connection after PING
            // received it, a 5xx, or a 2xx without SPHTransactionId; the client does not send
            // such a batch again): never re-sent blindly, see `resolve_unconfirmed`.
            let changes = batch
                .iter()
                .map(|o| {
                    let c = unconfirmed(
                        run,
                        run.failed(
                            &o.mapped.unique_id,
                            INGESTION_UNCONFIRMED,
                            format!(
                                "asyncdata: {e}; PING may have received it: proGres is \
                                 searched for progres_orgreferralid {} before it is sent again",
                                o.mapped.unique_id
                            ),
                            o.attempts,
                        ),
                    );
                    with_mapped_ids(c.with_payload_hash(o.hash.clone()), &o.mapped)
                })
                .collect();
            run.commit(changes, None).await?;
            Ok(Vec::new())
        }
        e => split_or_reject(run, batch, e.to_string()).await,
    }
}

/// How long an unconfirmed ingestion waits, at least, before proGres is searched for it: twice
/// the time PING is given to process an asynchronous batch (`ping.check_status_timeout`).
/// A search that comes before PING has processed a batch it did receive finds nothing, and the
/// record would be sent a second time.
fn unconfirmed_wait(run: &RunCtx<'_>) -> chrono::Duration {
    chrono::Duration::from_std(run.ctx.config.ping.check_status_timeout * 2)
        .unwrap_or_else(|_| chrono::Duration::minutes(4))
}

/// `change` (an `ingestion_unconfirmed` failure) due no sooner than [`unconfirmed_wait`].
fn unconfirmed(run: &RunCtx<'_>, mut change: RecordChange) -> RecordChange {
    let earliest = run.ctx.now() + unconfirmed_wait(run);
    if change.next_retry_at.is_none_or(|t| t < earliest) {
        change.next_retry_at = Some(earliest);
    }
    change
}

/// A refused batch naming no record: halves, until single records are rejected.
async fn split_or_reject(
    run: &RunCtx<'_>,
    mut batch: Vec<Outgoing>,
    message: String,
) -> Result<Vec<Vec<Outgoing>>, FlowError> {
    if batch.len() > 1 {
        let second = batch.split_off(batch.len() / 2);
        return Ok(vec![batch, second]);
    }
    let changes = batch
        .iter()
        .map(|o| rejected_by_ping(run, o, &message))
        .collect();
    run.commit(changes, None).await?;
    Ok(Vec::new())
}

fn rejected_by_ping(run: &RunCtx<'_>, o: &Outgoing, message: &str) -> RecordChange {
    let change = run
        .rejected(
            &o.mapped.unique_id,
            VALIDATION_ERROR,
            format!("PING refused service {}: {message}", o.mapped.unique_id),
        )
        .with_error_class(pp_ledger::ErrorClass::Permanent)
        .with_payload_hash(o.hash.clone());
    with_mapped_ids(change, &o.mapped)
}

fn with_mapped_ids(mut change: RecordChange, m: &MappedReferral) -> RecordChange {
    if is_ident(&m.case_record_id) {
        change = change.with_dest_id(DEST_CASE, m.case_record_id.clone());
    }
    if is_ident(&m.case_id) {
        change = change.with_dest_id(DEST_CASE_ID, m.case_id.clone());
    }
    change
}

/// What polling check-status gave.
enum Polled {
    /// Processed, with the per-record results.
    Processed(Vec<RecordResult>),
    /// PING does not know the transaction (final only with `unknown_is_final`).
    Unknown,
    /// Not processed within the configured timeout, or the check was refused.
    NotYet,
}

/// Polls check-status until the transaction is processed or the configured timeout passes.
/// Transient errors count as "not yet"; a refused check gives up until the next run. With
/// `unknown_is_final`, a transaction PING does not know ends the polling at once.
async fn poll(run: &RunCtx<'_>, tx: &str, unknown_is_final: bool) -> Result<Polled, FlowError> {
    let cfg = &run.ctx.config.ping;
    let shp = &cfg.shipping_processes.incoming_referral;
    let started = Instant::now();
    let interval = cfg.check_status_interval.max(Duration::from_millis(10));
    loop {
        match run.ctx.ping.check_status(shp, tx).await {
            Ok(CheckStatus::Processed(results)) => return Ok(Polled::Processed(results)),
            Ok(CheckStatus::Unknown) if unknown_is_final => {
                tracing::warn!(transaction = tx, "PING does not know the transaction");
                return Ok(Polled::Unknown);
            }
            Ok(CheckStatus::Pending | CheckStatus::Unknown) => {}
            Err(e) if e.class() == ErrorClass::Auth => return Err(e.into()),
            Err(e) if e.class() == ErrorClass::Transient => {
                tracing::warn!(transaction = tx, error = %e, "check-status failed; trying again");
            }
            Err(e) => {
                tracing::warn!(transaction = tx, error = %e, "check-status refused; the next run checks again");
                return Ok(Polled::NotYet);
            }
        }
        if started.elapsed() >= cfg.check_status_timeout || run.stopping() {
            return Ok(Polled::NotYet);
        }
        tokio::time::sleep(interval).await;
    }
}

/// The check-status result of each record: the one whose `progres_orgreferralid` is the
/// record's key, else the one whose `ExternalId` is the record's when that `ExternalId` names
/// one record of the transaction and one result (both compared trimmed and
/// case-insensitively). Never by position (R3): a record no result names has none.
fn match_results<'r>(
    keys: &[String],
    external_ids: &[String],
    results: &'r [RecordResult],
) -> Vec<Option<&'r RecordResult>> {
    let org_of = |r: &RecordResult| {
        r.data
            .get("progres_orgreferralid")
            .map(|o| norm_id(o))
            .filter(|o| !o.is_empty())
    };
    let mut by_org: HashMap<String, Vec<&RecordResult>> = HashMap::new();
    let mut by_ext: HashMap<String, Vec<&RecordResult>> = HashMap::new();
    for r in results {
        match org_of(r) {
            Some(o) => by_org.entry(o).or_default().push(r),
            None => by_ext.entry(norm_id(&r.external_id)).or_default().push(r),
        }
    }
    let mut ext_count: HashMap<String, usize> = HashMap::new();
    for e in external_ids {
        *ext_count.entry(norm_id(e)).or_default() += 1;
    }
    keys.iter()
        .zip(external_ids)
        .map(|(key, ext)| {
            if let Some(found) = by_org.get(&norm_id(key)) {
                return (found.len() == 1).then(|| found[0]);
            }
            let ext = norm_id(ext);
            if ext.is_empty() || ext_count.get(&ext) != Some(&1) {
                return None;
            }
            match by_ext.get(&ext).map(Vec::as_slice) {
                Some([one]) => Some(*one),
                _ => None,
            }
        })
        .collect()
}

/// Confirmed or rejected per record; records without a result stay delivered (re-checked by
/// later runs; with `recheck`, this check counts as one of them).
async fn apply_results(
    run: &RunCtx<'_>,
    keys: &[String],
    matched: &[Option<&RecordResult>],
    tx: &str,
    recheck: bool,
) -> Result<(), FlowError> {
    let mut changes = Vec::new();
    let mut without: Vec<String> = Vec::new();
    for (key, result) in keys.iter().zip(matched) {
        let Some(r) = result else {
            tracing::warn!(
                key = key.as_str(),
                transaction = tx,
                "check-status has no result for the record; it stays delivered"
            );
            without.push(key.clone());
            continue;
        };
        if r.success {
            let mut c = run
                .change(key, RecordState::Confirmed)
                .with_ping_transaction_id(tx);
            if let Some(id) = r
                .data
                .get(DEST_INTEROP_REFERRAL)
                .filter(|v| !v.is_empty() && v.len() <= 64)
            {
                c = c.with_dest_id(DEST_INTEROP_REFERRAL, id.clone());
            }
            changes.push(c);
        } else {
            let message = r
                .message
                .clone()
                .unwrap_or_else(|| "refused without a message".into());
            changes.push(
                run.rejected(
                    key,
                    VALIDATION_ERROR,
                    format!("PING check-status of {tx} refused service {key}: {message}"),
                )
                .with_error_class(pp_ledger::ErrorClass::Permanent)
                .with_ping_transaction_id(tx),
            );
        }
    }
    run.commit(changes, None).await?;
    still_delivered(
        run,
        &without,
        tx,
        CHECK_STATUS_NO_RESULT,
        "processed without a result for the record",
        recheck,
    )
    .await
}

/// Records whose check-status did not settle them: they stay delivered
/// for the next run, which checks again and never re-sends (a re-send could create a second
/// referral). A check by a later run (`recheck`) is counted; after [`MAX_RECHECKS`] of them
/// the record becomes a `conflict` with reason [`CHECK_STATUS_UNRESOLVED`]: a person must
/// look for it in proGres.
async fn still_delivered(
    run: &RunCtx<'_>,
    records: &[String],
    tx: &str,
    reason: &str,
    what: &str,
    recheck: bool,
) -> Result<(), FlowError> {
    if records.is_empty() || run.dry_run {
        return Ok(());
    }
    tracing::warn!(
        transaction = tx,
        records = records.len(),
        reason,
        "check-status did not settle the records; the next run checks again"
    );
    let mut noted: Vec<RecordChange> = Vec::new();
    let mut conflicts: Vec<RecordChange> = Vec::new();
    for key in records {
        let mut checks = 0;
        if recheck {
            let fact = run.ctx.ledger.fact(FACT_RECHECKS, key).await?;
            let previous = fact
                .filter(|f| f.get("tx").and_then(|t| t.as_str()) == Some(tx))
                .and_then(|f| f.get("checks").and_then(|c| c.as_i64()))
                .unwrap_or(0);
            checks = previous + 1;
        }
        if checks >= MAX_RECHECKS {
            conflicts.push(unresolved(
                run,
                key,
                tx,
                &format!("check-status of {tx} {what} after {checks} checks by later runs"),
            ));
            continue;
        }
        let mut c = run.change(key, RecordState::Delivered).with_reason(
            reason,
            format!("check-status of {tx} {what}; checked again next run"),
        );
        if recheck {
            c = c.with_fact(
                FACT_RECHECKS,
                key.clone(),
                json!({"tx": tx, "checks": checks}),
            );
        }
        noted.push(c);
    }
    // Still delivered: written, not counted again in the report.
    if !noted.is_empty() {
        let cause = run.cause();
        match &run.lease {
            Some(lease) => {
                run.ctx
                    .ledger
                    .apply_fenced(&noted, None, &cause, lease)
                    .await?
            }
            None => run.ctx.ledger.apply(&noted, None, &cause).await?,
        }
    }
    run.commit(conflicts, None).await
}

/// The conflict of a delivered record whose outcome cannot be known from PING.
fn unresolved(run: &RunCtx<'_>, key: &str, tx: &str, why: &str) -> RecordChange {
    let mut c = run.conflict(
        key,
        CHECK_STATUS_UNRESOLVED,
        format!(
            "{why}; look for progres_orgreferralid {key} in proGres before re-queuing: a \
             re-send could create a second interoperability referral"
        ),
    );
    if !tx.is_empty() {
        c = c.with_ping_transaction_id(tx.to_owned());
    }
    c
}

/// Step 1: records an earlier run left delivered are checked again with their transaction.
/// A transaction PING does not know, a record without a transaction id, and a record still
/// unsettled after [`MAX_RECHECKS`] re-checks become conflicts (`check_status_unresolved`).
async fn recheck_delivered(run: &RunCtx<'_>) -> Result<(), FlowError> {
    let flow = run.flow.name();
    let delivered = run
        .ctx
        .ledger
        .list_records(&RecordFilter {
            flow: Some(flow.to_owned()),
            states: vec![RecordState::Delivered],
            limit: PASS_LIMIT,
            ..RecordFilter::default()
        })
        .await?;
    let mut by_tx: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    let mut without_tx = Vec::new();
    for r in delivered {
        match r.ping_transaction_ids.last() {
            Some(tx) => by_tx.entry(tx.clone()).or_default().push(r),
            None => {
                tracing::warn!(
                    key = r.key.as_str(),
                    "delivered record without a transaction id"
                );
                without_tx.push(unresolved(
                    run,
                    &r.key,
                    "",
                    "delivered without a PING transaction id to check",
                ));
            }
        }
    }
    run.report(|rep| rep.fetched += without_tx.len() as u64);
    run.commit(without_tx, None).await?;
    if by_tx.is_empty() {
        return Ok(());
    }
    let checks = by_tx.into_iter().map(|(tx, records)| async move {
        run.report(|r| r.fetched += records.len() as u64);
        let keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
        // From an earlier run: a transaction PING does not know will not appear later.
        let results = match poll(run, &tx, true).await? {
            Polled::Processed(results) => results,
            Polled::Unknown => {
                let why = format!("PING does not know transaction {tx}");
                let changes = keys.iter().map(|k| unresolved(run, k, &tx, &why)).collect();
                return run.commit(changes, None).await;
            }
            Polled::NotYet => {
                let timeout = run.ctx.config.ping.check_status_timeout.as_secs();
                return still_delivered(
                    run,
                    &keys,
                    &tx,
                    CHECK_STATUS_TIMEOUT,
                    &format!("not processed within {timeout} s"),
                    true,
                )
                .await;
            }
        };
        let external: Vec<String> = records
            .iter()
            .map(|r| r.dest_ids.get(DEST_CASE_ID).cloned().unwrap_or_default())
            .collect();
        let matched = match_results(&keys, &external, &results);
        let all_failed = matched.iter().all(|m| m.is_some_and(|r| !r.success));
        if all_failed && records.len() > 1 {
            // Perhaps refused all-or-nothing for one culprit: send them again (re-mapped by
            // the retry pass) rather than reject records that may be valid.
            let changes = records
                .iter()
                .map(|r| {
                    run.failed(
                        &r.key,
                        TRANSIENT,
                        format!("every record of transaction {tx} was refused; sent again in smaller batches"),
                        r.attempts,
                    )
                    .with_ping_transaction_id(tx.clone())
                    .with_next_retry_at(run.ctx.now())
                })
                .collect();
            return run.commit(changes, None).await;
        }
        apply_results(run, &keys, &matched, &tx, true).await
    });
    let results: Vec<Result<(), FlowError>> = futures::stream::iter(checks)
        .buffer_unordered(run.ctx.config.ping.http.max_concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// Before records whose `/asyncdata` call failed transiently (`ingestion_unconfirmed`) are
/// sent again, proGres is searched for the interoperability referral PING may have created
/// for them: SHP-2795, page by page, then SHP-2796 details of the referrals this flow does
/// not already know, matching `progres_orgreferralid` = the service `unique_id`. A record
/// found is confirmed with that referral's id instead of being sent a second time; the others
/// are sent again by this run. Only records in that state (and due) start a search; when the
/// search itself fails they wait for a later run.
async fn resolve_unconfirmed(run: &RunCtx<'_>) -> Result<(), FlowError> {
    let ctx = run.ctx;
    let flow = run.flow.name();
    let now = ctx.now();
    let records = ctx
        .ledger
        .list_records(&RecordFilter {
            flow: Some(flow.to_owned()),
            states: vec![RecordState::Failed],
            reason_code: Some(INGESTION_UNCONFIRMED.to_owned()),
            limit: PASS_LIMIT,
            ..RecordFilter::default()
        })
        .await?;
    let mut wanted: HashMap<String, Record> = records
        .into_iter()
        .filter(|r| r.next_retry_at.is_none_or(|t| t <= now))
        .map(|r| (norm_id(&r.key), r))
        .collect();
    if wanted.is_empty() || run.dry_run {
        return Ok(());
    }
    let found = match search_progres(run, &wanted).await {
        Ok(found) => found,
        Err(SearchError::Flow(e)) => return Err(e),
        Err(SearchError::Ping(e)) => {
            // Not known whether PING has them: not sent again by this run.
            let changes = wanted
                .values()
                .map(|r| {
                    unconfirmed(
                        run,
                        run.failed(
                            &r.key,
                            INGESTION_UNCONFIRMED,
                            format!(
                                "searching proGres for progres_orgreferralid {} failed ({e}); \
                                 searched again before it is sent again",
                                r.key
                            ),
                            r.attempts,
                        ),
                    )
                })
                .collect();
            return run.commit(changes, None).await;
        }
    };
    let mut changes = Vec::new();
    for (uid, referral_id) in found {
        let Some(r) = wanted.remove(&uid) else {
            continue;
        };
        let mut c = run
            .change(&r.key, RecordState::Confirmed)
            .with_dest_id(DEST_INTEROP_REFERRAL, referral_id.clone());
        c.message = Some(format!(
            "interoperability referral {referral_id} found in proGres after an unconfirmed \
             ingestion; not sent again"
        ));
        changes.push(c);
    }
    run.report(|rep| rep.fetched += changes.len() as u64);
    run.commit(changes, None).await?;
    if !wanted.is_empty() {
        tracing::info!(
            records = wanted.len(),
            "no interoperability referral in proGres for records of an unconfirmed ingestion; \
             they are sent again"
        );
    }
    Ok(())
}

enum SearchError {
    Flow(FlowError),
    Ping(PingError),
}

impl From<FlowError> for SearchError {
    fn from(e: FlowError) -> Self {
        SearchError::Flow(e)
    }
}

impl From<pp_ledger::LedgerError> for SearchError {
    fn from(e: pp_ledger::LedgerError) -> Self {
        SearchError::Flow(e.into())
    }
}

/// Whether an id can go into a `{record_ids}` list.
fn listable(id: &str) -> bool {
    is_ident(id)
        && !id
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, ',' | '[' | ']' | '"' | '\''))
}

/// The interoperability referrals of the `wanted` services (normalised `unique_id` →
/// referral id), read page by page; stops once all are found.
async fn search_progres(
    run: &RunCtx<'_>,
    wanted: &HashMap<String, Record>,
) -> Result<HashMap<String, String>, SearchError> {
    let ctx = run.ctx;
    let flow = run.flow.name();
    let shps = &ctx.config.ping.shipping_processes;
    let ping_err = |e: PingError| match e.class() {
        ErrorClass::Auth => SearchError::Flow(e.into()),
        _ => SearchError::Ping(e),
    };
    let mut found: HashMap<String, String> = HashMap::new();
    let mut position: Option<pp_ping::NextPage> = None;
    let mut pages = 0u64;
    loop {
        let page = ctx
            .ping
            .retrieve_page(&shps.decision_list, &[], position.as_ref())
            .await
            .map_err(ping_err)?;
        pages += 1;
        if let Some(tx) = &page.transaction_id {
            run.report(|r| r.add_transaction(tx));
        }
        // Referrals this flow already recorded as its own are not looked at.
        let mut unknown: Vec<String> = Vec::new();
        for row in &page.rows {
            let Some(id) = row.get_text(pp_ping::rows::keys_decision::REFERRAL_ID) else {
                continue;
            };
            if !listable(&id) || unknown.contains(&id) {
                continue;
            }
            let known = ctx
                .ledger
                .find(&id)
                .await?
                .into_iter()
                .any(|r| r.flow == flow && r.dest_ids.get(DEST_INTEROP_REFERRAL) == Some(&id));
            if !known {
                unknown.push(id);
            }
        }
        for chunk in unknown.chunks(50) {
            let details = ctx
                .ping
                .retrieve(&shps.decision_details, chunk)
                .await
                .map_err(ping_err)?;
            for tx in &details.transaction_ids {
                run.report(|r| r.add_transaction(tx));
            }
            for row in &details.rows {
                let (Some(org), Some(id)) = (
                    row.get_text(pp_ping::rows::keys_decision::ORG_REFERRAL_ID),
                    row.get_text(pp_ping::rows::keys_decision::REFERRAL_ID),
                ) else {
                    continue;
                };
                let org = norm_id(&org);
                if wanted.contains_key(&org) && is_ident(&id) && id.len() <= 64 {
                    found.insert(org, id);
                }
            }
        }
        if found.len() >= wanted.len() || run.stopping() {
            return Ok(found);
        }
        match page.next {
            None => return Ok(found),
            Some(next) => {
                if position.as_ref() == Some(&next) || pages >= 100_000 {
                    return Err(SearchError::Ping(PingError::Unexpected {
                        detail: format!(
                            "{}: paging does not advance (page {})",
                            shps.decision_list, next.page_number
                        ),
                    }));
                }
                position = Some(next);
            }
        }
    }
}

/// Offset paging over a list that changes while it is read can skip a case: one updated
/// during the run moves to the end (ordered by `last_updated_at`) and shifts the later ones
/// back by one. A light second listing (ids and `last_updated_at` only) finds any case at or
/// before the cursor about to be saved that was not seen, and processes it, so that the
/// cursor never passes a case that was not read (R6).
async fn catch_up(
    run: &RunCtx<'_>,
    settings: &Settings,
    state: &mut State,
    start: DateTime<Utc>,
) -> Result<(), FlowError> {
    let Some(max) = state.max_seen else {
        return Ok(());
    };
    let ctx = run.ctx;
    let query = CaseQuery::updated_since(start).with_fields(["last_updated_at"]);
    let missed: Vec<String> = ctx
        .primero
        .list_cases(&query)
        .await?
        .into_iter()
        .filter(|c| !state.seen_cases.contains(&c.id))
        .filter(|c| c.last_updated_at.is_some_and(|t| t <= max))
        .map(|c| c.id)
        .collect();
    if missed.is_empty() {
        return Ok(());
    }
    tracing::info!(
        cases = missed.len(),
        "cases skipped by offset paging are read again"
    );
    let mut cases = Vec::new();
    for id in missed {
        if let Some(case) = ctx.primero.get_case(&id).await? {
            cases.push(case);
        }
    }
    // These cases are at or before the cursor: they do not move it.
    let max_seen = state.max_seen;
    process_cases(run, settings, state, cases).await?;
    state.max_seen = max_seen;
    Ok(())
}

/// Step 6: failed records whose retry time has come (and re-queued ones) whose case was not
/// re-read by this run's listing: their cases are read again and go through steps 2-5.
async fn retry_due(
    run: &RunCtx<'_>,
    settings: &Settings,
    state: &mut State,
) -> Result<(), FlowError> {
    let ctx = run.ctx;
    let due = ctx
        .ledger
        .due_for_retry(run.flow.name(), ctx.now(), PASS_LIMIT)
        .await?;
    let mut case_ids: Vec<String> = Vec::new();
    for r in &due {
        if let Some(id) = r.dest_ids.get(DEST_CASE) {
            if !state.seen_cases.contains(id) && !case_ids.contains(id) {
                case_ids.push(id.clone());
            }
        }
    }
    if case_ids.is_empty() {
        return Ok(());
    }
    let concurrency = ctx.config.primero.http.max_concurrency.max(1);
    let fetched: Vec<(String, Result<Option<Case>, PrimeroError>)> =
        futures::stream::iter(case_ids)
            .map(|id| async move {
                let c = ctx.primero.get_case(&id).await;
                (id, c)
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    let mut cases = Vec::new();
    let mut changes = Vec::new();
    for (id, result) in fetched {
        match result {
            Ok(Some(case)) => cases.push(case),
            Ok(None) => {
                for r in due
                    .iter()
                    .filter(|r| r.dest_ids.get(DEST_CASE) == Some(&id))
                {
                    changes.push(run.failed(
                        &r.key,
                        "case_not_found",
                        format!("case {id} no longer exists in Primero"),
                        r.attempts,
                    ));
                }
            }
            Err(e) if e.class() == ErrorClass::Auth => return Err(e.into()),
            Err(e) => {
                for r in due
                    .iter()
                    .filter(|r| r.dest_ids.get(DEST_CASE) == Some(&id))
                {
                    changes.push(run.failed(
                        &r.key,
                        TRANSIENT,
                        format!("reading case {id}: {e}"),
                        r.attempts,
                    ));
                }
            }
        }
    }
    run.commit(changes, None).await?;
    if cases.is_empty() {
        return Ok(());
    }
    // The retry pass does not move the cursor: keep the listing's maximum.
    let max_seen = state.max_seen;
    process_cases(run, settings, state, cases).await?;
    state.max_seen = max_seen;
    Ok(())
}

/// An `ExternalId` as PING may echo it back: compared trimmed and case-insensitively.
pub(crate) fn norm_id(s: &str) -> String {
    s.trim().to_lowercase()
}

/// Cuts `items` into batches of at most `size` in which no two items share a key (normalised
/// with [`norm_id`]), so that PING's answers, which name records by `ExternalId` only, always
/// name one record of the batch. Several services of one case (same `ExternalId`) go to
/// different batches. Order is kept within each key.
pub(crate) fn unique_batches<T>(
    items: Vec<T>,
    size: usize,
    key: impl Fn(&T) -> &str,
) -> Vec<Vec<T>> {
    let size = size.max(1);
    let mut batches: Vec<(HashSet<String>, Vec<T>)> = Vec::new();
    // Batches before this index are full.
    let mut open_from = 0;
    for item in items {
        let k = norm_id(key(&item));
        let slot = batches[open_from..]
            .iter()
            .position(|(keys, b)| b.len() < size && !keys.contains(&k))
            .map(|i| i + open_from);
        match slot {
            Some(i) => {
                batches[i].0.insert(k);
                batches[i].1.push(item);
            }
            None => batches.push((HashSet::from([k]), vec![item])),
        }
        while open_from < batches.len() && batches[open_from].1.len() >= size {
            open_from += 1;
        }
    }
    batches.into_iter().map(|(_, b)| b).collect()
}

/// What PING's `FailedRecords` of one batch mean for its records.
pub(crate) struct Sorted<T> {
    /// Records a failure names (by a unique `ExternalId`), with PING's message.
    pub refused: Vec<(T, String)>,
    /// Records applied (only when the batch was accepted in part).
    pub done: Vec<T>,
    /// Records to send again, in these batches.
    pub resend: Vec<Vec<T>>,
}

/// Sorts a batch by PING's `FailedRecords`. A failure names a record when its `ExternalId`,
/// trimmed and compared case-insensitively, is the `ExternalId` of exactly one record of the
/// batch. Named records are refused. The others are `done` when PING accepted the batch in
/// part (`rest_applied`), else sent again. A failure that names no record (missing, unknown or
/// ambiguous `ExternalId`) makes the batch ambiguous: its unnamed records are never taken as
/// applied but sent again in halves, and a batch of one record is that record's refusal
/// (R1: whatever PING's batch semantics, only the culprits are rejected).
pub(crate) fn sort_failures<T>(
    batch: Vec<T>,
    external_id: impl Fn(&T) -> &str,
    failed: &[RecordFailure],
    rest_applied: bool,
) -> Sorted<T> {
    let mut index: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, item) in batch.iter().enumerate() {
        index.entry(norm_id(external_id(item))).or_default().push(i);
    }
    let mut named: Vec<Option<String>> = vec![None; batch.len()];
    let mut unmatched: Vec<&str> = Vec::new();
    for f in failed {
        let k = norm_id(&f.external_id);
        match index.get(&k) {
            Some(ids) if ids.len() == 1 && !k.is_empty() => {
                let slot = &mut named[ids[0]];
                match slot {
                    Some(m) if m.as_str() != f.message => {
                        m.push_str("; ");
                        m.push_str(&f.message);
                    }
                    Some(_) => {}
                    None => *slot = Some(f.message.clone()),
                }
            }
            _ => unmatched.push(f.message.as_str()),
        }
    }
    let ambiguous = !unmatched.is_empty() || (!rest_applied && named.iter().all(Option::is_none));
    let mut out = Sorted {
        refused: Vec::new(),
        done: Vec::new(),
        resend: Vec::new(),
    };
    let single = batch.len() == 1;
    let mut others = Vec::new();
    for (item, name) in batch.into_iter().zip(named) {
        match name {
            Some(m) => out.refused.push((item, m)),
            None if ambiguous && single => {
                let m = if unmatched.is_empty() {
                    "PING refused the batch without naming a record".to_owned()
                } else {
                    unmatched.join("; ")
                };
                out.refused.push((item, m));
            }
            None => others.push(item),
        }
    }
    if others.is_empty() {
        return out;
    }
    if !ambiguous {
        if rest_applied {
            out.done = others;
        } else {
            out.resend.push(others);
        }
    } else if others.len() > 1 {
        let second = others.split_off(others.len() / 2);
        out.resend.push(others);
        out.resend.push(second);
    } else {
        out.resend.push(others);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(id: &str, message: &str) -> RecordFailure {
        RecordFailure {
            external_id: id.to_owned(),
            message: message.to_owned(),
        }
    }

    fn result(ext: &str, org: Option<&str>, success: bool) -> RecordResult {
        RecordResult {
            external_id: ext.to_owned(),
            success,
            message: None,
            data: org
                .map(|o| [("progres_orgreferralid".to_owned(), o.to_owned())].into())
                .unwrap_or_default(),
        }
    }

    #[test]
    fn the_source_hash_reads_only_listed_fields() {
        for f in SOURCE_HASH_FIELDS {
            assert!(flow21::CASE_FIELDS.contains(&f), "{f} is not listed");
        }
    }

    #[test]
    fn check_status_results_are_never_matched_by_position() {
        let keys = vec!["svc-a".to_owned(), "svc-b".to_owned()];
        // Two services of one case: the ExternalId names neither, and results without
        // progres_orgreferralid are not taken in order.
        let same_case = vec!["case-1".to_owned(), "case-1".to_owned()];
        let results = vec![result("case-1", None, true), result("case-1", None, false)];
        let m = match_results(&keys, &same_case, &results);
        assert!(m.iter().all(Option::is_none), "{m:?}");
        // Results that name no record of the batch are nobody's.
        let cases = vec!["case-1".to_owned(), "case-2".to_owned()];
        let results = vec![result("x", None, true), result("y", None, true)];
        assert!(match_results(&keys, &cases, &results)
            .iter()
            .all(Option::is_none));
        // By progres_orgreferralid (trimmed, any case), else by a unique ExternalId.
        let results = vec![
            result("case-2", None, false),
            result("whatever", Some(" SVC-A "), true),
        ];
        let m = match_results(&keys, &cases, &results);
        assert!(m[0].is_some_and(|r| r.success));
        assert!(m[1].is_some_and(|r| !r.success));
    }

    #[test]
    fn batches_never_hold_two_records_with_one_external_id() {
        let items = vec!["c1", "c1", "C1 ", "c2", "c3", "c2"];
        let batches = unique_batches(items, 3, |s| s);
        assert_eq!(
            batches,
            vec![vec!["c1", "c2", "c3"], vec!["c1", "c2"], vec!["C1 "]]
        );
        let batches = unique_batches(vec!["a", "b", "c", "d", "e"], 2, |s| s);
        assert_eq!(batches, vec![vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
    }

    #[test]
    fn failures_are_matched_trimmed_and_case_insensitively() {
        let batch = vec!["G-1", "g-2", "g-3"];
        let s = sort_failures(batch, |s| s, &[failure(" g-1 ", "bad field")], true);
        assert_eq!(s.refused, vec![("G-1", "bad field".to_owned())]);
        assert_eq!(s.done, vec!["g-2", "g-3"]);
        assert!(s.resend.is_empty());
    }

    #[test]
    fn a_failure_naming_no_record_makes_the_batch_ambiguous() {
        // Partial acceptance with an unknown ExternalId: nobody is taken as applied.
        let s = sort_failures(vec!["a", "b", "c"], |s| s, &[failure("", "x")], true);
        assert!(s.refused.is_empty() && s.done.is_empty());
        assert_eq!(s.resend, vec![vec!["a"], vec!["b", "c"]]);
        // Named records are refused, the rest is split.
        let s = sort_failures(
            vec!["a", "b", "c"],
            |s| s,
            &[failure("a", "m1"), failure("zz", "m2")],
            true,
        );
        assert_eq!(s.refused, vec![("a", "m1".to_owned())]);
        assert_eq!(s.resend, vec![vec!["b"], vec!["c"]]);
        // One record left: it is the culprit.
        let s = sort_failures(vec!["a"], |s| s, &[failure("A-typo", "m")], true);
        assert_eq!(s.refused, vec![("a", "m".to_owned())]);
        assert!(s.done.is_empty() && s.resend.is_empty());
    }

    #[test]
    fn a_refused_batch_sends_the_unnamed_records_again() {
        let s = sort_failures(vec!["a", "b", "c"], |s| s, &[failure("B", "m")], false);
        assert_eq!(s.refused, vec![("b", "m".to_owned())]);
        assert_eq!(s.resend, vec![vec!["a", "c"]]);
        assert!(s.done.is_empty());
        // Refused naming nobody: halves until single records are refused.
        let s = sort_failures(vec!["a", "b"], |s| s, &[], false);
        assert_eq!(s.resend, vec![vec!["a"], vec!["b"]]);
        let s = sort_failures(vec!["a"], |s| s, &[], false);
        assert_eq!(s.refused.len(), 1);
    }
}
