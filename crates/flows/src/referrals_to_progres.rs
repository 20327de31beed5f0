//! Flow 2.1 `referrals-to-progres` (flows.md): Primero services referred to UNHCR become
//! proGres interoperability referrals.
//!
//! A run (1) re-checks the records an earlier run left `delivered` (check-status timed out)
//! with their `SPHTransactionId`, never re-sending them; (2) reads the cases changed since the
//! cursor, all pages, ordered by `last_updated_at`, and keeps the service rows implemented by
//! UNHCR (configured values, case-insensitive); (3) reads the referrals of those cases, one
//! call per case, concurrently, and keeps the referred rows the ledger has not handled; (4)
//! reads the users once and maps each row in pure code (`pp_mapping::flow21`); (5) sends the
//! records to `/asyncdata` (SHP-2731) in batches, records them `delivered`, and polls
//! check-status until each is confirmed or rejected, or the timeout leaves it `delivered`;
//! (6) retries the records whose retry time has come; (7) moves the cursor to the greatest
//! `last_updated_at` seen (never "now"), after checking that offset paging skipped no case.
//! Records are keyed by the service row's `unique_id`, so re-reading a case (Primero's filter
//! is inclusive, and 2.2's writes bump `last_updated_at`) never sends a row twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
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
/// Report reason of records whose retry time has not come yet.
pub const EXCLUDED_RETRY_NOT_DUE: &str = "retry_not_due";
/// Destination-id names stored with the records.
pub const DEST_CASE: &str = "primero_case";
pub const DEST_CASE_ID: &str = "case_id";
pub const DEST_INTEROP_REFERRAL: &str = "progres_interoperabilityreferralid";

/// Most delivered / due records handled per run by the re-check and retry passes.
const PASS_LIMIT: i64 = 10_000;

/// A page of cases, or the end of the listing.
enum ListErr {
    Primero(PrimeroError),
    /// The consumer stopped (its error is reported instead).
    Closed,
}

impl From<PrimeroError> for ListErr {
    fn from(e: PrimeroError) -> Self {
        ListErr::Primero(e)
    }
}

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

    // (1) Records left delivered by an earlier run: check again, never re-send.
    recheck_delivered(run).await?;

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
    let query = CaseQuery::updated_since(start).ordered_by("last_updated_at", SortDirection::Asc);
    let mut state = State {
        users: None,
        max_seen: None,
        seen_cases: HashSet::new(),
        handled: HashSet::new(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Case>>(1);
    let listing = async move {
        let r = ctx
            .primero
            .for_each_case_page(&query, |page| {
                let tx = tx.clone();
                async move { tx.send(page).await.map_err(|_| ListErr::Closed) }
            })
            .await;
        drop(tx);
        r
    };
    let consume = async {
        let mut result = Ok::<(), FlowError>(());
        while let Some(page) = rx.recv().await {
            if run.stopping() {
                break;
            }
            result = process_cases(run, &settings, &mut state, page).await;
            if result.is_err() {
                break;
            }
        }
        // Unblocks the listing when the consumer stopped early.
        rx.close();
        result
    };
    let (listed, consumed) = tokio::join!(listing, consume);
    consumed?;
    let pages = match listed {
        Ok(stats) => stats.pages,
        Err(ListErr::Closed) => 0,
        Err(ListErr::Primero(e)) => return Err(e.into()),
    };
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
fn source_hash(
    run: &RunCtx<'_>,
    case: &Case,
    row: &pp_primero::ServiceRow,
    referral: &Referral,
    owner_complete: [bool; 3],
) -> String {
    let keys = [
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
    let fields: serde_json::Map<String, serde_json::Value> = keys
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
    let ctx = run.ctx;
    let flow = run.flow.name();
    let primero_cfg = &ctx.config.primero;

    // Step 2: UNHCR rows not handled yet.
    let mut wanted: Vec<(Case, Vec<(String, Prior)>)> = Vec::new();
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
            let record = ctx.ledger.get(flow, &key).await?;
            if let Some(p) = prior(run, record) {
                rows.push((key, p));
            }
        }
        if !rows.is_empty() {
            wanted.push((case, rows));
        }
    }
    if wanted.is_empty() {
        return Ok(());
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
                        run.report(|r| r.skipped += 1);
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
                        run.report(|r| r.skipped += 1);
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
    if outgoing.is_empty() {
        return Ok(());
    }
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
        return Ok(());
    }
    deliver(run, outgoing).await
}

/// Sends the records in batches of `ping.batch_size`, records them delivered, and confirms
/// them with check-status. A batch whose records all fail is split until the culprits are
/// found (R1: PING may apply a batch all-or-nothing).
async fn deliver(run: &RunCtx<'_>, outgoing: Vec<Outgoing>) -> Result<(), FlowError> {
    let size = run.ctx.config.ping.batch_size.max(1);
    let mut batches: Vec<Vec<Outgoing>> = Vec::new();
    let mut it = outgoing.into_iter().peekable();
    while it.peek().is_some() {
        batches.push(it.by_ref().take(size).collect());
    }
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
        None => {
            note_timeout(run, &keys, &tx).await?;
            Ok(Vec::new())
        }
        Some(results) => {
            let matched = match_results(&keys, &external, &results);
            let all_failed = matched.iter().all(|m| m.is_some_and(|r| !r.success));
            if all_failed && batch.len() > 1 {
                // Possibly all-or-nothing: find the culprits in halves.
                let mut batch = batch;
                let second = batch.split_off(batch.len() / 2);
                return Ok(vec![batch, second]);
            }
            apply_results(run, &keys, &matched, &tx).await?;
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
            let named: HashMap<&str, &str> = failed
                .iter()
                .map(|f| (f.external_id.as_str(), f.message.as_str()))
                .collect();
            let (refused, rest): (Vec<Outgoing>, Vec<Outgoing>) = batch
                .into_iter()
                .partition(|o| named.contains_key(o.mapped.case_id.as_str()));
            if refused.is_empty() {
                return split_or_reject(run, rest, "PING refused the batch".into()).await;
            }
            let changes = refused
                .iter()
                .map(|o| {
                    let msg = named.get(o.mapped.case_id.as_str()).copied().unwrap_or("");
                    rejected_by_ping(run, o, msg)
                })
                .collect();
            run.commit(changes, None).await?;
            Ok(if rest.is_empty() { vec![] } else { vec![rest] })
        }
        e if e.class() == ErrorClass::Transient => {
            let changes = batch
                .iter()
                .map(|o| {
                    let c = run.failed(
                        &o.mapped.unique_id,
                        TRANSIENT,
                        format!("asyncdata: {e}"),
                        o.attempts,
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

/// Polls check-status until the transaction is processed (`Some`) or the configured timeout
/// passes (`None`). Transient errors count as "not yet"; a refused check leaves the records
/// delivered for the next run. With `unknown_is_final`, a transaction PING does not know ends
/// the polling at once.
async fn poll(
    run: &RunCtx<'_>,
    tx: &str,
    unknown_is_final: bool,
) -> Result<Option<Vec<RecordResult>>, FlowError> {
    let cfg = &run.ctx.config.ping;
    let shp = &cfg.shipping_processes.incoming_referral;
    let started = Instant::now();
    let interval = cfg.check_status_interval.max(Duration::from_millis(10));
    loop {
        match run.ctx.ping.check_status(shp, tx).await {
            Ok(CheckStatus::Processed(results)) => return Ok(Some(results)),
            Ok(CheckStatus::Unknown) if unknown_is_final => {
                tracing::warn!(
                    transaction = tx,
                    "PING does not know the transaction; its records stay delivered"
                );
                return Ok(None);
            }
            Ok(CheckStatus::Pending | CheckStatus::Unknown) => {}
            Err(e) if e.class() == ErrorClass::Auth => return Err(e.into()),
            Err(e) if e.class() == ErrorClass::Transient => {
                tracing::warn!(transaction = tx, error = %e, "check-status failed; trying again");
            }
            Err(e) => {
                tracing::warn!(transaction = tx, error = %e, "check-status refused; the next run checks again");
                return Ok(None);
            }
        }
        if started.elapsed() >= cfg.check_status_timeout || run.stopping() {
            return Ok(None);
        }
        tokio::time::sleep(interval).await;
    }
}

/// The check-status result of each record (by `progres_orgreferralid`, else by `ExternalId`
/// when it names one record of the batch, else by position).
fn match_results<'r>(
    keys: &[String],
    external_ids: &[String],
    results: &'r [RecordResult],
) -> Vec<Option<&'r RecordResult>> {
    let by_org: HashMap<&str, &RecordResult> = results
        .iter()
        .filter_map(|r| r.data.get("progres_orgreferralid").map(|o| (o.as_str(), r)))
        .collect();
    let mut ext_count: HashMap<&str, usize> = HashMap::new();
    for e in external_ids {
        *ext_count.entry(e.as_str()).or_default() += 1;
    }
    keys.iter()
        .zip(external_ids)
        .enumerate()
        .map(|(i, (key, ext))| {
            by_org.get(key.as_str()).copied().or_else(|| {
                if ext_count.get(ext.as_str()) == Some(&1) {
                    results.iter().find(|r| r.external_id == *ext)
                } else if results.len() == keys.len() {
                    results.get(i)
                } else {
                    None
                }
            })
        })
        .collect()
}

/// Confirmed or rejected per record; records without a result stay delivered.
async fn apply_results(
    run: &RunCtx<'_>,
    keys: &[String],
    matched: &[Option<&RecordResult>],
    tx: &str,
) -> Result<(), FlowError> {
    let mut changes = Vec::new();
    for (key, result) in keys.iter().zip(matched) {
        let Some(r) = result else {
            tracing::warn!(
                key = key.as_str(),
                transaction = tx,
                "check-status has no result for the record; it stays delivered"
            );
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
    run.commit(changes, None).await
}

/// Check-status did not finish: the records stay delivered (noted, not counted again).
async fn note_timeout(run: &RunCtx<'_>, keys: &[String], tx: &str) -> Result<(), FlowError> {
    tracing::warn!(
        transaction = tx,
        records = keys.len(),
        "check-status did not finish in time; the next run checks again"
    );
    if run.dry_run {
        return Ok(());
    }
    let timeout = run.ctx.config.ping.check_status_timeout.as_secs();
    let changes: Vec<RecordChange> = keys
        .iter()
        .map(|k| {
            run.change(k, RecordState::Delivered).with_reason(
                CHECK_STATUS_TIMEOUT,
                format!(
                    "check-status of {tx} not processed within {timeout} s; checked again next run"
                ),
            )
        })
        .collect();
    let cause = run.cause();
    match &run.lease {
        Some(lease) => {
            run.ctx
                .ledger
                .apply_fenced(&changes, None, &cause, lease)
                .await?
        }
        None => run.ctx.ledger.apply(&changes, None, &cause).await?,
    }
    Ok(())
}

/// Step 1: records an earlier run left delivered are checked again with their transaction.
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
    for r in delivered {
        match r.ping_transaction_ids.last() {
            Some(tx) => by_tx.entry(tx.clone()).or_default().push(r),
            None => tracing::warn!(
                key = r.key.as_str(),
                "delivered record without a transaction id"
            ),
        }
    }
    if by_tx.is_empty() {
        return Ok(());
    }
    let checks = by_tx.into_iter().map(|(tx, records)| async move {
        run.report(|r| r.fetched += records.len() as u64);
        // From an earlier run: a transaction PING does not know will not appear later.
        let Some(results) = poll(run, &tx, true).await? else {
            let keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
            return note_timeout(run, &keys, &tx).await;
        };
        let keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
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
        apply_results(run, &keys, &matched, &tx).await
    });
    let results: Vec<Result<(), FlowError>> = futures::stream::iter(checks)
        .buffer_unordered(run.ctx.config.ping.http.max_concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
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
