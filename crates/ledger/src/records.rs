//! Records of the four flows: applying changes (with audit events, identifiers, facts and
//! the cursor in one transaction), lookups, operator retries, and the aggregates the
//! dashboard shows.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use crate::bound::{
    self, check_hash, check_ident, check_name, MAX_FACT_BYTES, MAX_IDENT, MAX_MESSAGE, MAX_NAME,
    MAX_PING_IDS, MAX_REASON,
};
use crate::counters::{day_of, Tally, NO_REASON};
use crate::db::{args, now, Arg, Cols, Tx, SQLITE_ROWS_PER_STATEMENT};
use crate::error::LedgerError;
use crate::model::{
    AttentionGroup, AuditEvent, Backend, Cause, Lease, Record, RecordChange, RecordFilter,
    RecordState, RetryTarget,
};
use crate::runs::page;
use crate::{parse_enum, parse_json, Ledger, OPERATOR_RETRY};

const RECORD_COLS: &str = "r.flow, r.key, r.state, r.attempts, r.next_retry_at, r.error_class, \
     r.reason_code, r.message, r.dest_ids, r.ping_transaction_ids, r.payload_hash, \
     r.fallback_used, r.contact_substituted, r.decision, r.operator_retry, r.created_at, \
     r.updated_at, r.last_run_id";

const AUDIT_COLS: &str =
    "id, at, flow, record_key, from_state, to_state, reason_code, message, cause, run_id";

/// Characters that separate the parts of a composite key (e.g. flow 1.2's
/// case id, service unique id and decision); the parts that look like identifiers are
/// indexed ([`is_identifier_part`]).
const KEY_SEPARATORS: &[char] = &['|', ':', '/'];

/// Most keys one statement of [`Ledger::get_many`] reads: well under the bind-parameter
/// limits of both backends (SQLite's is 32,766 since 3.32, PostgreSQL's 65,535).
const KEYS_PER_QUERY: usize = 500;

/// Most records [`Ledger::find`] returns.
const FIND_LIMIT: usize = 1000;

/// Most records one chunk of [`Ledger::apply`] writes with the same few statements.
const APPLY_CHUNK: usize = 200;

/// Most bind parameters of one batched statement: far below the limits of both backends.
const MAX_PARAMS: usize = 4_000;

/// `attempts` of a row that the upsert of [`lock_stored`] has just created, until the UPDATE
/// that follows in the same transaction stores its real values. Stored counts are never
/// negative, so it tells the rows created from those that existed.
const CREATED_MARK: i64 = -1;

/// Most keys listed per attention group.
const ATTENTION_KEYS: i64 = 50;

/// Attention groups whose keys one statement reads.
const ATTENTION_GROUPS_PER_QUERY: usize = 100;

/// Joins the keys of one attention group in a query result: a control character, which
/// keys never contain (see [`check_ident`]).
const KEY_LIST_SEPARATOR: char = '\u{1f}';

fn record_from_row(r: &dyn Cols) -> Result<Record, LedgerError> {
    Ok(Record {
        flow: r.text("flow")?,
        key: r.text("key")?,
        state: parse_enum("records.state", &r.text("state")?)?,
        attempts: r.int("attempts")?,
        next_retry_at: r.opt_ts("next_retry_at")?,
        error_class: r
            .opt_text("error_class")?
            .map(|c| parse_enum("records.error_class", &c))
            .transpose()?,
        reason_code: r.opt_text("reason_code")?,
        message: r.opt_text("message")?,
        dest_ids: parse_json("records.dest_ids", &r.text("dest_ids")?)?,
        ping_transaction_ids: parse_json(
            "records.ping_transaction_ids",
            &r.text("ping_transaction_ids")?,
        )?,
        payload_hash: r.opt_text("payload_hash")?,
        fallback_used: r.boolean("fallback_used")?,
        contact_substituted: r.boolean("contact_substituted")?,
        decision: r.opt_text("decision")?,
        operator_retry: r.boolean("operator_retry")?,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
        last_run_id: r.opt_text("last_run_id")?,
    })
}

fn audit_from_row(r: &dyn Cols) -> Result<AuditEvent, LedgerError> {
    Ok(AuditEvent {
        id: r.int("id")?,
        at: r.ts("at")?,
        flow: r.text("flow")?,
        key: r.text("record_key")?,
        from_state: r
            .opt_text("from_state")?
            .map(|s| parse_enum("audit_events.from_state", &s))
            .transpose()?,
        to_state: parse_enum("audit_events.to_state", &r.text("to_state")?)?,
        reason_code: r.opt_text("reason_code")?,
        message: r.opt_text("message")?,
        cause: r.text("cause")?,
        run_id: r.opt_text("run_id")?,
    })
}

/// What is stored of a record before a change is applied to it.
struct Stored {
    id: i64,
    state: RecordState,
    reason_code: Option<String>,
    attempts: i64,
    dest_ids: BTreeMap<String, String>,
    ping_ids: Vec<String>,
    payload_hash: Option<String>,
    fallback_used: bool,
    contact_substituted: bool,
    decision: Option<String>,
}

impl Stored {
    /// A record not stored yet, about to be created in `state`.
    fn new(state: RecordState) -> Stored {
        Stored {
            id: 0,
            state,
            reason_code: None,
            attempts: 0,
            dest_ids: BTreeMap::new(),
            ping_ids: Vec::new(),
            payload_hash: None,
            fallback_used: false,
            contact_substituted: false,
            decision: None,
        }
    }
}

fn stored_from_row(r: &dyn Cols) -> Result<Stored, LedgerError> {
    Ok(Stored {
        id: r.int("id")?,
        state: parse_enum("records.state", &r.text("state")?)?,
        reason_code: r.opt_text("reason_code")?,
        attempts: r.int("attempts")?,
        dest_ids: parse_json("records.dest_ids", &r.text("dest_ids")?)?,
        ping_ids: parse_json(
            "records.ping_transaction_ids",
            &r.text("ping_transaction_ids")?,
        )?,
        payload_hash: r.opt_text("payload_hash")?,
        fallback_used: r.boolean("fallback_used")?,
        contact_substituted: r.boolean("contact_substituted")?,
        decision: r.opt_text("decision")?,
    })
}

/// Refuses what must never be stored: over-long or malformed identifiers and names.
fn check_change(c: &RecordChange) -> Result<(), LedgerError> {
    check_ident("flow", &c.flow, MAX_IDENT)?;
    check_ident("key", &c.key, MAX_IDENT)?;
    if let Some(reason) = &c.reason_code {
        check_ident("reason_code", reason, MAX_REASON)?;
    }
    for (name, value) in &c.dest_ids {
        check_name("dest_ids", name)?;
        check_ident("dest_ids", value, MAX_IDENT)?;
    }
    for id in &c.ping_transaction_ids {
        check_ident("ping_transaction_ids", id, MAX_IDENT)?;
    }
    if let Some(hash) = &c.payload_hash {
        check_hash(hash)?;
    }
    if let Some(decision) = &c.decision {
        check_ident("decision", decision, MAX_NAME)?;
    }
    for (kind, key, value) in &c.facts {
        check_fact(kind, key, value)?;
    }
    Ok(())
}

fn check_fact(kind: &str, key: &str, value: &serde_json::Value) -> Result<String, LedgerError> {
    check_name("fact kind", kind)?;
    check_ident("fact key", key, MAX_IDENT)?;
    let text = serde_json::to_string(value).map_err(|e| LedgerError::Invalid {
        field: "fact value",
        reason: format!("not serializable: {e}"),
    })?;
    if text.len() > MAX_FACT_BYTES {
        return Err(LedgerError::Invalid {
            field: "fact value",
            reason: format!("larger than {MAX_FACT_BYTES} bytes"),
        });
    }
    Ok(text)
}

fn to_json<T: serde::Serialize>(field: &'static str, v: &T) -> Result<String, LedgerError> {
    serde_json::to_string(v).map_err(|e| LedgerError::Invalid {
        field,
        reason: format!("not serializable: {e}"),
    })
}

/// Whether a part of a composite key is worth indexing as an identifier: it holds a digit
/// (record ids, UUIDs, proGres and Primero numbers all do) and is not a short number (an
/// instance counter, the `2` of flow 1.2's `…:accepted:2`). A status word such as
/// `accepted` would match every decision of that kind, and each indexed part costs a row and
/// two index entries per record: on flow 1.2's random keys, identifier rows were close to
/// half the cost of recording its outcomes.
fn is_identifier_part(part: &str) -> bool {
    let digits = part.bytes().filter(u8::is_ascii_digit).count();
    digits > 0 && !(digits == part.len() && part.len() <= 3)
}

/// The identifiers a record can be found by: a plain key itself; the parts of a composite
/// key that look like identifiers ([`is_identifier_part`]), or the whole key when none does;
/// and its destination ids. [`Ledger::find`] still finds a composite key by its whole text,
/// through its first indexed part.
fn identifiers(key: &str, dest_ids: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = key_parts(key)
        .into_iter()
        .map(|part| ("key_part".to_owned(), part.to_owned()))
        .collect();
    if out.is_empty() {
        out.push(("key".to_owned(), key.to_owned()));
    }
    for (name, value) in dest_ids {
        out.push((name.clone(), value.clone()));
    }
    out
}

/// The parts of a composite key indexed as identifiers, in order; none for a plain key.
fn key_parts(key: &str) -> Vec<&str> {
    if !key.contains(KEY_SEPARATORS) {
        return Vec::new();
    }
    key.split(KEY_SEPARATORS)
        .filter(|p| is_identifier_part(p))
        .collect()
}

/// One audit event about to be written.
struct NewAudit<'a> {
    at: DateTime<Utc>,
    flow: &'a str,
    key: &'a str,
    from: Option<RecordState>,
    to: RecordState,
    reason: Option<&'a str>,
    message: Option<String>,
}

/// `n` placeholders, comma-separated, for the bind parameters `first`, `first + 1`, …:
/// `$3, $4, …`, or on SQLite `?, ?, …`. sqlx finds which argument a named SQLite parameter
/// (`$n`) takes by asking SQLite its name, which SQLite looks up in a list, so binding n of
/// them costs O(n²): 16 ms instead of 3 ms for the INSERT of a chunk of 200 new records
/// (3,400 parameters), in a release build. Anonymous `?` parameters take the arguments in
/// order at no such cost; sqlx numbers them apart from `$n` ones, so a statement uses one
/// kind only.
fn placeholders(backend: Backend, first: usize, n: usize) -> String {
    let mut out = String::with_capacity(n * 6);
    for i in first..first + n {
        if i > first {
            out.push_str(", ");
        }
        match backend {
            Backend::Sqlite => out.push('?'),
            Backend::Postgres => out.push_str(&format!("${i}")),
        }
    }
    out
}

/// The placeholders of `rows` rows of `width` bind parameters: `($1, $2), ($3, $4), …` (see
/// [`placeholders`]).
fn value_rows(backend: Backend, rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(backend, r * width + 1, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs `{head} VALUES (…), (…) {tail}` over `args`, `width` of them per row, in as few
/// statements as [`MAX_PARAMS`] allows (`head` and `tail` hold no placeholders), and returns
/// what `f` reads of the rows they return (none unless `tail` has a `RETURNING` clause).
/// Rows are written in their order. On SQLite a statement holds at most
/// [`SQLITE_ROWS_PER_STATEMENT`] rows, and one of exactly that many stays prepared, its shape
/// recurring.
async fn batched<T>(
    tx: &mut Tx,
    head: &str,
    tail: &str,
    width: usize,
    args: &[Arg],
    f: impl Fn(&dyn Cols) -> Result<T, LedgerError>,
) -> Result<Vec<T>, LedgerError> {
    debug_assert_eq!(args.len() % width, 0, "whole rows of {width} arguments");
    let mut out = Vec::new();
    let rows = match tx.backend() {
        Backend::Sqlite => (MAX_PARAMS / width).min(SQLITE_ROWS_PER_STATEMENT),
        Backend::Postgres => MAX_PARAMS / width,
    };
    for part in args.chunks(rows.max(1) * width) {
        let sql = format!(
            "{head} VALUES {} {tail}",
            value_rows(tx.backend(), part.len() / width, width)
        );
        let keep = part.len() / width == SQLITE_ROWS_PER_STATEMENT;
        out.extend(tx.fetch_all_kept(&sql, part, keep, &f).await?);
    }
    Ok(out)
}

/// Writes audit events (in their order) and counts them in `tally` (the daily chart's
/// counters).
async fn insert_audits(
    tx: &mut Tx,
    tally: &mut Tally,
    events: &[NewAudit<'_>],
    cause: &Cause,
) -> Result<(), LedgerError> {
    let cause_text = bound::bounded(&cause.as_text(), MAX_IDENT);
    let run_id = cause.run_id().map(|r| r.as_str());
    let mut a: Vec<Arg> = Vec::with_capacity(events.len() * 9);
    for e in events {
        a.extend(args![
            e.at,
            e.flow,
            e.key,
            e.from.map(|s| s.as_str()),
            e.to.as_str(),
            e.reason,
            e.message.clone(),
            cause_text.as_str(),
            run_id
        ]);
    }
    batched(
        tx,
        "INSERT INTO audit_events (at, flow, record_key, from_state, to_state, reason_code, \
         message, cause, run_id)",
        "",
        9,
        &a,
        |_| Ok(()),
    )
    .await?;
    for e in events {
        tally.events(e.flow, &day_of(e.at), e.to.as_str(), 1);
    }
    Ok(())
}

/// Writes an audit event and counts it in `tally` (the daily chart's counters).
async fn insert_audit(
    tx: &mut Tx,
    tally: &mut Tally,
    e: NewAudit<'_>,
    cause: &Cause,
) -> Result<(), LedgerError> {
    insert_audits(tx, tally, &[e], cause).await
}

async fn upsert_fact(
    tx: &mut Tx,
    kind: &str,
    key: &str,
    value: &serde_json::Value,
    at: DateTime<Utc>,
) -> Result<(), LedgerError> {
    let text = check_fact(kind, key, value)?;
    upsert_facts(tx, &BTreeMap::from([((kind, key), (text, at))])).await
}

/// Stores (or replaces) facts, given as `(kind, key) → (value as JSON text, time)`, in key
/// order (so concurrent writers lock them in the same order).
async fn upsert_facts(
    tx: &mut Tx,
    facts: &BTreeMap<(&str, &str), (String, DateTime<Utc>)>,
) -> Result<(), LedgerError> {
    let mut a: Vec<Arg> = Vec::with_capacity(facts.len() * 4);
    for ((kind, key), (text, at)) in facts {
        a.extend(args![*kind, *key, text, *at]);
    }
    batched(
        tx,
        "INSERT INTO facts (kind, key, value, updated_at)",
        "ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value, \
         updated_at = excluded.updated_at",
        4,
        &a,
        |_| Ok(()),
    )
    .await?;
    Ok(())
}

/// The records of a chunk's `groups` as stored, by `(flow, key)`, and so locked that no
/// other transaction can change them before this one ends.
///
/// On SQLite the transaction holds the database's write lock (`BEGIN IMMEDIATE`): the rows
/// are only read, one statement per flow (an index search per key), and the new ones are
/// absent. On PostgreSQL one upsert creates the new rows (marked with [`CREATED_MARK`]) and
/// locks the existing ones as `SELECT … FOR UPDATE` would, row after row in key order, so
/// concurrent transactions cannot deadlock on them; the UNIQUE `(flow, key)` constraint makes
/// concurrent creators agree on one row, the loser waiting for the winner's commit.
async fn lock_stored(
    tx: &mut Tx,
    groups: &[&[&RecordChange]],
    ats: &[Vec<DateTime<Utc>>],
) -> Result<HashMap<(String, String), Stored>, LedgerError> {
    let cols = "id, flow, key, state, reason_code, attempts, dest_ids, ping_transaction_ids, \
                payload_hash, fallback_used, contact_substituted, decision";
    let read = |r: &dyn Cols| Ok(((r.text("flow")?, r.text("key")?), stored_from_row(r)?));
    let rows = match tx.backend() {
        Backend::Sqlite => {
            let mut rows = Vec::with_capacity(groups.len());
            for same_flow in groups.chunk_by(|a, b| a[0].flow == b[0].flow) {
                let mut a: Vec<Arg> = Vec::with_capacity(same_flow.len() + 1);
                a.push(same_flow[0][0].flow.as_str().into());
                a.extend(same_flow.iter().map(|g| Arg::from(g[0].key.as_str())));
                let sql = format!(
                    "SELECT {cols} FROM records WHERE flow = ? AND key IN ({})",
                    placeholders(Backend::Sqlite, 2, same_flow.len())
                );
                rows.extend(tx.fetch_all(&sql, &a, read).await?);
            }
            rows
        }
        Backend::Postgres => {
            let mut a: Vec<Arg> = Vec::with_capacity(groups.len() * 6);
            for (g, at) in groups.iter().zip(ats) {
                let (c, at) = (g[0], at[0]);
                a.extend(args![
                    c.flow.as_str(),
                    c.key.as_str(),
                    c.state.as_str(),
                    CREATED_MARK,
                    at,
                    at
                ]);
            }
            batched(
                tx,
                "INSERT INTO records (flow, key, state, attempts, created_at, updated_at)",
                &format!(
                    "ON CONFLICT (flow, key) DO UPDATE SET attempts = records.attempts \
                     RETURNING {cols}"
                ),
                6,
                &a,
                read,
            )
            .await?
        }
    };
    Ok(rows.into_iter().collect())
}

/// One record as the changes of a chunk leave it.
struct Outcome<'a> {
    /// Its last change, whose state, reason, message, error class and retry time it takes.
    last: &'a RecordChange,
    /// The bounded message of `last`.
    message: Option<String>,
    /// When the first change was applied (the creation time of a new record).
    first_at: DateTime<Utc>,
    /// When the last change was applied.
    at: DateTime<Utc>,
    /// What the record holds after all of its changes.
    s: Stored,
    /// Whether its row exists (else it is new and still to be inserted).
    exists: bool,
    /// Identifiers `(kind, value)` it did not have before.
    idents: BTreeSet<(String, String)>,
}

/// Applies, inside `tx`, the changes of up to [`APPLY_CHUNK`] records: `groups` holds, per
/// record in `(flow, key)` order, its changes in the order they were given. Counts them in
/// `tally` and collects their facts in `facts` (a later change's value of a fact replaces an
/// earlier one's, as consecutive writes would).
///
/// The result is that of applying each change alone, in order, in a few statements per chunk
/// (more when one would exceed [`MAX_PARAMS`], and on SQLite one per 50 rows, see
/// [`batched`]): reading and locking the records ([`lock_stored`]), an INSERT of the new
/// records with their final values (SQLite) and an UPDATE of the others, an INSERT of the
/// identifiers the records did not have and one of the audit events.
async fn apply_chunk<'a>(
    tx: &mut Tx,
    tally: &mut Tally,
    groups: &[&[&'a RecordChange]],
    cause: &Cause,
    facts: &mut BTreeMap<(&'a str, &'a str), (String, DateTime<Utc>)>,
) -> Result<(), LedgerError> {
    // A timestamp per change, as if each were written on its own.
    let ats: Vec<Vec<DateTime<Utc>>> = groups
        .iter()
        .map(|g| g.iter().map(|_| now()).collect())
        .collect();
    let mut stored = lock_stored(tx, groups, &ats).await?;

    let mut outcomes: Vec<Outcome<'a>> = Vec::with_capacity(groups.len());
    let mut events: Vec<NewAudit<'a>> = Vec::new();
    for (g, ats) in groups.iter().zip(&ats) {
        let first = g[0];
        let (mut s, mut created, exists) =
            match stored.remove(&(first.flow.clone(), first.key.clone())) {
                Some(s) if s.attempts == CREATED_MARK => (Stored { attempts: 0, ..s }, true, true),
                Some(s) => (s, false, true),
                None => (Stored::new(first.state), true, false),
            };
        // Every write of a record stores the identifiers of its key and destination ids in
        // the same transaction, and none is ever deleted while the record exists: those of
        // the stored record are there already.
        let known: BTreeSet<(String, String)> = if created {
            BTreeSet::new()
        } else {
            identifiers(&first.key, &s.dest_ids).into_iter().collect()
        };
        let mut idents = BTreeSet::new();
        let mut last = None;
        for (&c, &at) in g.iter().zip(ats) {
            let from = (!created).then_some(s.state);
            if from == Some(RecordState::Confirmed) && c.state != RecordState::Confirmed {
                return Err(LedgerError::InvalidTransition {
                    flow: c.flow.clone(),
                    key: c.key.clone(),
                    from: RecordState::Confirmed,
                    to: c.state,
                });
            }
            let reason = c.reason_code.as_deref();
            let message = bound::bounded_opt(c.message.as_deref(), MAX_MESSAGE);
            s.attempts += i64::from(c.increment_attempts);
            s.dest_ids
                .extend(c.dest_ids.iter().map(|(k, v)| (k.clone(), v.clone())));
            for id in &c.ping_transaction_ids {
                if !s.ping_ids.contains(id) {
                    s.ping_ids.push(id.clone());
                }
            }
            if s.ping_ids.len() > MAX_PING_IDS {
                let excess = s.ping_ids.len() - MAX_PING_IDS;
                s.ping_ids.drain(..excess);
            }
            if c.payload_hash.is_some() {
                s.payload_hash.clone_from(&c.payload_hash);
            }
            if c.decision.is_some() {
                s.decision.clone_from(&c.decision);
            }
            s.fallback_used |= c.fallback_used;
            s.contact_substituted |= c.contact_substituted;
            tally.moved(
                &c.flow,
                from.map(|st| (st, s.reason_code.as_deref())),
                (c.state, reason),
            );
            idents.extend(
                identifiers(&c.key, &s.dest_ids)
                    .into_iter()
                    .filter(|i| !known.contains(i)),
            );
            for (kind, key, value) in &c.facts {
                facts.insert((kind, key), (check_fact(kind, key, value)?, at));
            }
            if created || from != Some(c.state) || s.reason_code.as_deref() != reason {
                events.push(NewAudit {
                    at,
                    flow: &c.flow,
                    key: &c.key,
                    from,
                    to: c.state,
                    reason,
                    message: message.clone(),
                });
            }
            s.state = c.state;
            s.reason_code = c.reason_code.clone();
            created = false;
            last = Some((c, at, message));
        }
        if let Some((last, at, message)) = last {
            outcomes.push(Outcome {
                last,
                message,
                first_at: ats[0],
                at,
                s,
                exists,
                idents,
            });
        }
    }

    // Every column written here is written again by each change, so writing what the last
    // change leaves equals writing each change in turn.
    let run_id = cause.run_id().map(|r| r.as_str());
    let row = |o: &Outcome<'_>| -> Result<Vec<Arg>, LedgerError> {
        Ok(Vec::from(args![
            o.last.state.as_str(),
            o.s.attempts,
            o.last.next_retry_at,
            o.last.error_class.map(|e| e.as_str()),
            o.last.reason_code.as_deref(),
            o.message.clone(),
            to_json("dest_ids", &o.s.dest_ids)?,
            to_json("ping_transaction_ids", &o.s.ping_ids)?,
            o.s.payload_hash.clone(),
            o.s.fallback_used,
            o.s.contact_substituted,
            o.s.decision.clone(),
            o.at
        ]))
    };
    let mut inserts: Vec<Arg> = Vec::new();
    let mut updates: Vec<Arg> = Vec::new();
    for o in &outcomes {
        if o.exists {
            updates.push(o.s.id.into());
            updates.extend(row(o)?);
            if let Some(run_id) = run_id {
                updates.push(run_id.into());
            }
        } else {
            inserts.extend(args![o.last.flow.as_str(), o.last.key.as_str()]);
            inserts.extend(row(o)?);
            inserts.extend(args![o.first_at, run_id]);
        }
    }
    let ids: HashMap<(String, String), i64> = batched(
        tx,
        "INSERT INTO records (flow, key, state, attempts, next_retry_at, error_class, \
         reason_code, message, dest_ids, ping_transaction_ids, payload_hash, fallback_used, \
         contact_substituted, decision, updated_at, created_at, last_run_id)",
        "RETURNING id, flow, key",
        17,
        &inserts,
        |r| Ok(((r.text("flow")?, r.text("key")?), r.int("id")?)),
    )
    .await?
    .into_iter()
    .collect();
    let mut head = String::from(
        "UPDATE records SET state = v.column2, attempts = v.column3, \
         next_retry_at = v.column4, error_class = v.column5, reason_code = v.column6, \
         message = v.column7, dest_ids = v.column8, ping_transaction_ids = v.column9, \
         payload_hash = v.column10, fallback_used = v.column11, \
         contact_substituted = v.column12, decision = v.column13, updated_at = v.column14, \
         operator_retry = FALSE",
    );
    if run_id.is_some() {
        head.push_str(", last_run_id = v.column15");
    }
    head.push_str(" FROM (");
    batched(
        tx,
        &head,
        ") AS v WHERE records.id = v.column1",
        if run_id.is_some() { 15 } else { 14 },
        &updates,
        |_| Ok(()),
    )
    .await?;

    let mut a: Vec<Arg> = Vec::new();
    for o in &outcomes {
        let id = if o.exists {
            o.s.id
        } else {
            let key = (o.last.flow.clone(), o.last.key.clone());
            *ids.get(&key).ok_or_else(|| LedgerError::Corrupt {
                column: "records",
                reason: format!("no id returned for new record {}/{}", key.0, key.1),
            })?
        };
        for (kind, value) in &o.idents {
            a.extend(args![id, kind, value]);
        }
    }
    batched(
        tx,
        "INSERT INTO record_identifiers (record_id, kind, value)",
        "ON CONFLICT (record_id, kind, value) DO NOTHING",
        3,
        &a,
        |_| Ok(()),
    )
    .await?;
    insert_audits(tx, tally, &events, cause).await
}

impl Ledger {
    /// The record `key` of `flow`.
    pub async fn get(&self, flow: &str, key: &str) -> Result<Option<Record>, LedgerError> {
        self.pool
            .fetch_optional(
                &format!("SELECT {RECORD_COLS} FROM records r WHERE r.flow = $1 AND r.key = $2"),
                &args![flow, key],
                record_from_row,
            )
            .await
    }

    /// The records of `flow` whose keys are in `keys`, by key; keys without a record are
    /// absent from the map. One statement per `KEYS_PER_QUERY` (500) distinct keys, instead of one
    /// round trip per record with [`Ledger::get`].
    pub async fn get_many(
        &self,
        flow: &str,
        keys: &[String],
    ) -> Result<HashMap<String, Record>, LedgerError> {
        let distinct: Vec<&String> = keys.iter().collect::<BTreeSet<_>>().into_iter().collect();
        let mut out = HashMap::with_capacity(distinct.len());
        for chunk in distinct.chunks(KEYS_PER_QUERY) {
            let mut a: Vec<Arg> = Vec::with_capacity(chunk.len() + 1);
            a.push(flow.into());
            a.extend(chunk.iter().map(|k| Arg::from(*k)));
            let backend = self.pool.backend();
            let rows = self
                .pool
                .fetch_all(
                    &format!(
                        "SELECT {RECORD_COLS} FROM records r WHERE r.flow = {} \
                         AND r.key IN ({})",
                        placeholders(backend, 1, 1),
                        placeholders(backend, 2, chunk.len())
                    ),
                    &a,
                    record_from_row,
                )
                .await?;
            out.extend(rows.into_iter().map(|r| (r.key.clone(), r)));
        }
        Ok(out)
    }

    /// Applies `changes` and then moves the cursor, all in ONE transaction: if any change is
    /// refused, nothing is written and the cursor stays where it was (R6).
    ///
    /// Per change: creates or updates the record (UNIQUE `(flow, key)`), merges destination
    /// ids, appends PING transaction ids, stores identifiers and facts, and writes an audit
    /// event when the record is new or its state or reason changed. A `confirmed` record
    /// cannot move to another state ([`LedgerError::InvalidTransition`]).
    ///
    /// Changes are taken in `(flow, key)` order (each key's in the order given) and written
    /// a chunk of records at a time, in a few statements per chunk rather than several per
    /// change; the result is that of applying them one by one in that order.
    pub async fn apply(
        &self,
        changes: &[RecordChange],
        cursor: Option<(&str, &str)>,
        cause: &Cause,
    ) -> Result<(), LedgerError> {
        self.apply_inner(changes, cursor, cause, None).await
    }

    /// [`Ledger::apply`] fenced by a lease: refused with [`LedgerError::LeaseLost`] (and
    /// nothing written) unless `lease` is still the live lease of its flow. On PostgreSQL the
    /// lease row stays locked until the commit, so it cannot change hands meanwhile.
    pub async fn apply_fenced(
        &self,
        changes: &[RecordChange],
        cursor: Option<(&str, &str)>,
        cause: &Cause,
        lease: &Lease,
    ) -> Result<(), LedgerError> {
        self.apply_inner(changes, cursor, cause, Some(lease)).await
    }

    async fn apply_inner(
        &self,
        changes: &[RecordChange],
        cursor: Option<(&str, &str)>,
        cause: &Cause,
        lease: Option<&Lease>,
    ) -> Result<(), LedgerError> {
        if let Cause::Operator(name) = cause {
            check_name("operator", name)?;
        }
        let mut tx = self.pool.begin().await?;
        if let Some(lease) = lease {
            let (sql, a) = match tx.backend() {
                Backend::Sqlite => (
                    "SELECT token FROM leases WHERE flow = $1 AND holder = $2 AND token = $3 \
                     AND expires_at > $4",
                    args![
                        lease.flow.as_str(),
                        lease.holder.as_str(),
                        lease.token,
                        now()
                    ]
                    .to_vec(),
                ),
                Backend::Postgres => (
                    "SELECT token FROM leases WHERE flow = $1 AND holder = $2 AND token = $3 \
                     AND expires_at > clock_timestamp() FOR SHARE",
                    args![lease.flow.as_str(), lease.holder.as_str(), lease.token].to_vec(),
                ),
            };
            if tx
                .fetch_optional(sql, &a, |r| r.int("token"))
                .await?
                .is_none()
            {
                return Err(LedgerError::LeaseLost {
                    flow: lease.flow.clone(),
                    token: lease.token,
                });
            }
        }
        // A fixed order (stable, so repeated keys keep their order) means two transactions
        // touching the same records lock them in the same order and cannot deadlock.
        let mut ordered: Vec<&RecordChange> = changes.iter().collect();
        ordered.sort_by(|a, b| (&a.flow, &a.key).cmp(&(&b.flow, &b.key)));
        for change in &ordered {
            check_change(change)?;
        }
        let mut tally = Tally::default();
        let mut facts = BTreeMap::new();
        let groups: Vec<&[&RecordChange]> = ordered
            .chunk_by(|a, b| (&a.flow, &a.key) == (&b.flow, &b.key))
            .collect();
        for chunk in groups.chunks(APPLY_CHUNK) {
            apply_chunk(&mut tx, &mut tally, chunk, cause, &mut facts).await?;
        }
        upsert_facts(&mut tx, &facts).await?;
        if let Some((flow, value)) = cursor {
            check_ident("flow", flow, MAX_IDENT)?;
            check_ident("cursor", value, MAX_IDENT)?;
            tx.execute(
                "INSERT INTO cursors (flow, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (flow) DO UPDATE SET value = excluded.value, \
                 updated_at = excluded.updated_at",
                &args![flow, value, now()],
            )
            .await?;
        }
        tally.flush(&mut tx).await?;
        tx.commit().await
    }

    /// Records of `flow` to process again, oldest due first: `failed` ones whose
    /// `next_retry_at` has come, and `pending` ones that no running run owns (left by a run
    /// that crashed, or re-queued by an operator).
    pub async fn due_for_retry(
        &self,
        flow: &str,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Record>, LedgerError> {
        let (limit, _) = page(limit, 0);
        self.pool
            .fetch_all(
                &format!(
                    "SELECT {RECORD_COLS} FROM records r WHERE r.flow = $1 AND ( \
                     (r.state = 'failed' AND (r.next_retry_at IS NULL OR r.next_retry_at <= $2)) \
                     OR (r.state = 'pending' \
                         AND (r.next_retry_at IS NULL OR r.next_retry_at <= $2) \
                         AND NOT EXISTS (SELECT 1 FROM runs x WHERE x.id = r.last_run_id \
                                         AND x.outcome = 'running'))) \
                     ORDER BY COALESCE(r.next_retry_at, r.updated_at), r.id LIMIT $3"
                ),
                &args![flow, now, limit],
                record_from_row,
            )
            .await
    }

    /// Records an operator re-queued that the flow has not processed since.
    pub async fn pending_operator_retries(&self, flow: &str) -> Result<Vec<Record>, LedgerError> {
        self.pool
            .fetch_all(
                &format!(
                    "SELECT {RECORD_COLS} FROM records r WHERE r.flow = $1 \
                     AND r.state = 'pending' AND r.operator_retry = TRUE ORDER BY r.id"
                ),
                &args![flow],
                record_from_row,
            )
            .await
    }

    /// Records matching `filter`, most recently changed first.
    pub async fn list_records(&self, filter: &RecordFilter) -> Result<Vec<Record>, LedgerError> {
        let mut sql = format!("SELECT {RECORD_COLS} FROM records r WHERE 1 = 1");
        let mut a: Vec<Arg> = Vec::new();
        if let Some(flow) = &filter.flow {
            a.push(flow.into());
            sql.push_str(&format!(" AND r.flow = ${}", a.len()));
        }
        if !filter.states.is_empty() {
            let mut marks = Vec::new();
            for s in &filter.states {
                a.push(s.as_str().into());
                marks.push(format!("${}", a.len()));
            }
            sql.push_str(&format!(" AND r.state IN ({})", marks.join(", ")));
        }
        if let Some(reason) = &filter.reason_code {
            a.push(reason.into());
            sql.push_str(&format!(" AND r.reason_code = ${}", a.len()));
        }
        if let Some(run) = &filter.run_id {
            a.push(run.into());
            let n = a.len();
            sql.push_str(&format!(
                " AND (r.last_run_id = ${n} OR EXISTS (SELECT 1 FROM audit_events e \
                 WHERE e.run_id = ${n} AND e.flow = r.flow AND e.record_key = r.key))"
            ));
        }
        let (limit, offset) = page(filter.limit, filter.offset);
        a.push(limit.into());
        a.push(offset.into());
        sql.push_str(&format!(
            " ORDER BY r.updated_at DESC, r.id DESC LIMIT ${} OFFSET ${}",
            a.len() - 1,
            a.len()
        ));
        self.pool.fetch_all(&sql, &a, record_from_row).await
    }

    /// Records whose key, identifier-like key part (not a status word nor an instance
    /// counter) or any destination id equals `identifier` (exactly), by flow and key, at most
    /// `FIND_LIMIT` (1,000).
    ///
    /// A composite key is found by its whole text through its first indexed part (ledgers
    /// written before parts were picked also hold a row for the whole key, and for every
    /// part: those are found as well).
    pub async fn find(&self, identifier: &str) -> Result<Vec<Record>, LedgerError> {
        let mut found = self
            .pool
            .fetch_all(
                &format!(
                    "SELECT {RECORD_COLS} FROM records r WHERE r.id IN \
                     (SELECT i.record_id FROM record_identifiers i WHERE i.value = $1) \
                     ORDER BY r.flow, r.key LIMIT {FIND_LIMIT}"
                ),
                &args![identifier],
                record_from_row,
            )
            .await?;
        if let Some(part) = key_parts(identifier).first() {
            let by_key = self
                .pool
                .fetch_all(
                    &format!(
                        "SELECT {RECORD_COLS} FROM records r WHERE r.key = $1 AND r.id IN \
                         (SELECT i.record_id FROM record_identifiers i WHERE i.value = $2) \
                         ORDER BY r.flow, r.key LIMIT {FIND_LIMIT}"
                    ),
                    &args![identifier, *part],
                    record_from_row,
                )
                .await?;
            found.extend(by_key);
        }
        // In byte order on both backends (PostgreSQL's ORDER BY follows its collation), so
        // that one search gives the same order whichever way its records were found.
        found.sort_by(|a, b| (&a.flow, &a.key).cmp(&(&b.flow, &b.key)));
        found.dedup_by(|a, b| (&a.flow, &a.key) == (&b.flow, &b.key));
        found.truncate(FIND_LIMIT);
        Ok(found)
    }

    /// The audit trail of one record, oldest first.
    pub async fn audit(&self, flow: &str, key: &str) -> Result<Vec<AuditEvent>, LedgerError> {
        self.pool
            .fetch_all(
                &format!(
                    "SELECT {AUDIT_COLS} FROM audit_events WHERE flow = $1 AND record_key = $2 \
                     ORDER BY id"
                ),
                &args![flow, key],
                audit_from_row,
            )
            .await
    }

    /// Sends rejected, conflict or failed records back to `pending` so their flow processes
    /// them again: attempts reset, `next_retry_at` now, marked [`OPERATOR_RETRY`], with an
    /// audit event caused by `operator:<operator>`. Records in other states are left alone.
    /// Returns how many records were re-queued.
    pub async fn retry(&self, target: RetryTarget, operator: &str) -> Result<u64, LedgerError> {
        check_name("operator", operator)?;
        let retryable = "r.state IN ('rejected', 'conflict', 'failed')";
        let mut sql = format!(
            "SELECT r.id, r.flow, r.key, r.state, r.reason_code FROM records r WHERE {retryable}"
        );
        let mut a: Vec<Arg> = Vec::new();
        match &target {
            RetryTarget::Key { flow, key } => {
                a.push(key.into());
                sql.push_str(&format!(" AND r.key = ${}", a.len()));
                if let Some(flow) = flow {
                    a.push(flow.into());
                    sql.push_str(&format!(" AND r.flow = ${}", a.len()));
                }
            }
            RetryTarget::Filter {
                flow,
                state,
                reason,
            } => {
                if let Some(flow) = flow {
                    a.push(flow.into());
                    sql.push_str(&format!(" AND r.flow = ${}", a.len()));
                }
                if let Some(state) = state {
                    if !RecordState::RETRYABLE.contains(state) {
                        return Err(LedgerError::Invalid {
                            field: "state",
                            reason: format!(
                                "only rejected, conflict or failed records can be retried, not {state}"
                            ),
                        });
                    }
                    a.push(state.as_str().into());
                    sql.push_str(&format!(" AND r.state = ${}", a.len()));
                }
                if let Some(reason) = reason {
                    a.push(reason.into());
                    sql.push_str(&format!(" AND r.reason_code = ${}", a.len()));
                }
            }
        }
        sql.push_str(" ORDER BY r.id");
        let mut tx = self.pool.begin().await?;
        sql.push_str(tx.for_update());
        let targets = tx
            .fetch_all(&sql, &a, |r| {
                Ok((
                    r.int("id")?,
                    r.text("flow")?,
                    r.text("key")?,
                    parse_enum::<RecordState>("records.state", &r.text("state")?)?,
                    r.opt_text("reason_code")?,
                ))
            })
            .await?;
        let cause = Cause::Operator(operator.to_owned());
        let message = format!("re-queued by operator {operator}");
        let at = now();
        let mut tally = Tally::default();
        for (id, flow, key, state, reason) in &targets {
            tx.execute(
                "UPDATE records SET state = 'pending', attempts = 0, next_retry_at = $1, \
                 error_class = NULL, reason_code = $2, message = $3, operator_retry = TRUE, \
                 updated_at = $1 WHERE id = $4",
                &args![at, OPERATOR_RETRY, message.as_str(), *id],
            )
            .await?;
            tally.moved(
                flow,
                Some((*state, reason.as_deref())),
                (RecordState::Pending, Some(OPERATOR_RETRY)),
            );
            let event = NewAudit {
                at,
                flow,
                key,
                from: Some(*state),
                to: RecordState::Pending,
                reason: Some(OPERATOR_RETRY),
                message: Some(message.clone()),
            };
            insert_audit(&mut tx, &mut tally, event, &cause).await?;
        }
        tally.flush(&mut tx).await?;
        tx.commit().await?;
        tracing::info!(
            operator,
            count = targets.len(),
            "records re-queued by operator"
        );
        Ok(targets.len() as u64)
    }

    /// Number of records per `(flow, state)` (pairs without records are absent), read from
    /// the counters the ledger keeps on write.
    pub async fn counts_by_state(&self) -> Result<BTreeMap<(String, String), i64>, LedgerError> {
        let rows = self
            .pool
            .fetch_all(
                "SELECT flow, state, CAST(SUM(n) AS BIGINT) AS n FROM record_counts \
                 GROUP BY flow, state HAVING SUM(n) > 0",
                &[],
                |r| Ok(((r.text("flow")?, r.text("state")?), r.int("n")?)),
            )
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// Rejected and conflict records grouped by `(flow, reason_code)`, largest group first,
    /// each with the keys of its most recently changed records. Groups without a reason code
    /// sort before the others of the same size and flow.
    pub async fn attention(&self) -> Result<Vec<AttentionGroup>, LedgerError> {
        // The group sizes come from the counters kept on write; the keys from the partial
        // index `records_attention`, whose WHERE clause the key queries repeat word for word.
        let mut groups = self
            .pool
            .fetch_all(
                "SELECT flow, reason_code, \
                 CAST(SUM(CASE WHEN state = 'rejected' THEN n ELSE 0 END) AS BIGINT) AS rejected, \
                 CAST(SUM(CASE WHEN state = 'conflict' THEN n ELSE 0 END) AS BIGINT) AS conflict \
                 FROM record_counts WHERE state IN ('rejected', 'conflict') \
                 GROUP BY flow, reason_code HAVING SUM(n) > 0 \
                 ORDER BY SUM(n) DESC, flow, reason_code",
                &[],
                |r| {
                    let reason = r.text("reason_code")?;
                    Ok(AttentionGroup {
                        flow: r.text("flow")?,
                        reason_code: (reason != NO_REASON).then_some(reason),
                        rejected: r.int("rejected")?,
                        conflict: r.int("conflict")?,
                        keys: Vec::new(),
                    })
                },
            )
            .await?;
        // The keys of many groups per statement (one index range each), not one round trip
        // per group; SQLite allows at most 500 parts in one compound SELECT.
        for chunk in groups.chunks_mut(ATTENTION_GROUPS_PER_QUERY) {
            let mut parts = Vec::with_capacity(chunk.len());
            let sep = KEY_LIST_SEPARATOR.to_string();
            let mut a: Vec<Arg> = vec![ATTENTION_KEYS.into(), sep.into()];
            for (i, g) in chunk.iter().enumerate() {
                a.push(g.flow.as_str().into());
                let flow = a.len();
                let reason = match &g.reason_code {
                    Some(reason) => {
                        a.push(reason.as_str().into());
                        format!("reason_code = ${}", a.len())
                    }
                    None => "reason_code IS NULL".to_owned(),
                };
                // One row per group (rows are what costs most to hand over): its keys,
                // newest first, joined.
                parts.push(format!(
                    "SELECT CAST({i} AS BIGINT) AS g, \
                     string_agg(key, $2 ORDER BY updated_at DESC, id DESC) AS keys \
                     FROM (SELECT key, updated_at, id FROM records \
                     WHERE flow = ${flow} AND state IN ('rejected', 'conflict') AND {reason} \
                     ORDER BY updated_at DESC, id DESC LIMIT $1) AS g{i}"
                ));
            }
            let rows = self
                .pool
                .fetch_all(&parts.join(" UNION ALL "), &a, |r| {
                    Ok((r.int("g")?, r.opt_text("keys")?))
                })
                .await?;
            for (g, keys) in rows {
                let group = usize::try_from(g).ok().and_then(|g| chunk.get_mut(g));
                group
                    .ok_or_else(|| LedgerError::Corrupt {
                        column: "records",
                        reason: format!("attention keys of an unknown group {g}"),
                    })?
                    .keys = keys
                    .map(|k| k.split(KEY_LIST_SEPARATOR).map(str::to_owned).collect())
                    .unwrap_or_default();
            }
        }
        Ok(groups)
    }

    /// Audit events of `flow` per UTC day and resulting state over the `days` days ending
    /// with `today`, ordered by day then state. Days without events are absent. Read from the
    /// per-day counters the ledger keeps on write (purged events are no longer counted).
    pub async fn daily_outcomes(
        &self,
        flow: &str,
        days: i64,
        today: NaiveDate,
    ) -> Result<Vec<(NaiveDate, String, i64)>, LedgerError> {
        let days = days.clamp(1, 3660);
        let first = today - TimeDelta::days(days - 1);
        let fmt = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
        let rows = self
            .pool
            .fetch_all(
                "SELECT day, state, n FROM daily_outcomes \
                 WHERE flow = $1 AND day >= $2 AND day <= $3 AND n > 0 ORDER BY day, state",
                &args![flow, fmt(first), fmt(today)],
                |r| Ok((r.text("day")?, r.text("state")?, r.int("n")?)),
            )
            .await?;
        rows.into_iter()
            .map(|(day, state, n)| {
                let date = NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|_| {
                    LedgerError::Corrupt {
                        column: "daily_outcomes.day",
                        reason: format!("not a date: {}", bound::bounded(&day, 40)),
                    }
                })?;
                Ok((date, state, n))
            })
            .collect()
    }

    /// Stores (or replaces) a fact, e.g. kind `intervention`, key = intervention number.
    pub async fn put_fact(
        &self,
        kind: &str,
        key: &str,
        value: &serde_json::Value,
    ) -> Result<(), LedgerError> {
        let mut tx = self.pool.begin().await?;
        upsert_fact(&mut tx, kind, key, value, now()).await?;
        tx.commit().await
    }

    /// A stored fact.
    pub async fn fact(
        &self,
        kind: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>, LedgerError> {
        let text = self
            .pool
            .fetch_optional(
                "SELECT value FROM facts WHERE kind = $1 AND key = $2",
                &args![kind, key],
                |r| r.text("value"),
            )
            .await?;
        text.map(|t| parse_json("facts.value", &t)).transpose()
    }
}
