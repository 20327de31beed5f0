//! The simulator's in-memory state: cases, referrals, users, sessions/JWTs, login counters,
//! request log and fault rules; plus record saving (strictly increasing `last_updated_at`),
//! JSON views of records and the seed loader.
//!
//! Every change to a case's data ends in [`Store::put_case`] or [`Store::touch_case`]; both
//! refresh what `GET /cases` reads without scanning: the exact-identifier index
//! ([`Store::ident_idx`] for [`INDEXED_IDENTIFIERS`]; `id` through [`Store::case_idx`]) and the
//! parsed `last_updated_at` ([`CaseRec::updated_at`]). Maps stored by `put_case` and
//! `put_referral` (seeded and created records) are rebuilt at their exact size, so that
//! thousands of records do not keep the spare capacity of their growth.

use crate::faults::FaultRule;
use crate::filters::value_time;
use crate::options::{FieldType, Options, SimUser};
use crate::schema::is_uuid;
use crate::time::{fmt_ts, normalise_ts};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// Fields whose values each case keeps a copy of ([`CaseRec::sort_values`], same order), so
/// that ordering thousands of hits by them (the default `created_at`, the flows'
/// `last_updated_at`), and showing them in listings, does not look each up in its map.
pub const SORT_CACHED: [&str; 2] = ["created_at", "last_updated_at"];

/// Fields whose value each case also keeps written out as JSON ([`CaseRec::json_values`],
/// same order), refreshed on every save: a case's service rows are most of the bytes of a
/// listing that asks for them (flow 1.2 does, for every case changed since its cursor), and
/// writing them from the map took most of the ~7 ms the simulator spent on a page of 1,000.
pub const JSON_CACHED: [&str; 1] = ["services_section"];

/// Identifier fields with an exact-value index ([`Store::ident_idx`], same order). `id` is
/// answered by [`Store::case_idx`].
pub const INDEXED_IDENTIFIERS: [&str; 2] = ["case_id", "unhcr_individual_no"];

/// A stored case. Its data holds personal fields, so `Debug` shows the id only.
#[derive(Clone)]
pub struct CaseRec {
    /// Record id (UUID).
    pub id: String,
    /// Insertion sequence (tie-break of equal `created_at`).
    pub seq: u64,
    /// When the case was last saved (search-lag simulation).
    pub saved_at: Instant,
    /// When `data["last_updated_at"]` is a string: `Some(filters::value_time(it))`; `None`
    /// when it is absent or not a string. Refreshed on every save, so that time ranges on
    /// `last_updated_at` need not read (or parse) the data.
    pub updated_at: Option<Option<DateTime<Utc>>>,
    /// What the record's `enabled` shows: `data["record_state"]` when it is a boolean, else
    /// `true`. Refreshed on every save, so that listings need not look it up in the data.
    pub enabled: bool,
    /// Copies of `data[f]` for the fields `f` of [`SORT_CACHED`], refreshed on every save.
    pub sort_values: [Option<Value>; 2],
    /// `data[f]` written as compact JSON, for the fields `f` of [`JSON_CACHED`], refreshed on
    /// every save.
    pub json_values: [Option<Vec<u8>>; 1],
    /// The keys under which [`Store::ident_idx`] holds this case: (position in
    /// [`INDEXED_IDENTIFIERS`], value), without duplicates.
    indexed: Vec<(usize, String)>,
    /// Record data (a seeded `id` key may remain; output always uses `CaseRec::id`). Any
    /// change must be followed by [`Store::touch_case`] or [`Store::put_case`].
    pub data: Map<String, Value>,
}

impl std::fmt::Debug for CaseRec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaseRec")
            .field("id", &self.id)
            .field("fields", &self.data.len())
            .finish()
    }
}

/// A stored referral (transition). Notes may hold personal data: `Debug` shows ids only.
#[derive(Clone)]
pub struct Referral {
    /// Referral id.
    pub id: String,
    /// Case id (`record_id`).
    pub record_id: String,
    /// Insertion sequence.
    pub seq: u64,
    /// Referral JSON (without the computed `record_access_denied` /
    /// `user_can_accept_or_reject`).
    pub data: Map<String, Value>,
}

impl std::fmt::Debug for Referral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Referral")
            .field("id", &self.id)
            .field("record_id", &self.record_id)
            .finish()
    }
}

/// A cookie session (>= v2.11). `Debug` hides the CSRF token.
#[derive(Clone)]
pub struct Session {
    /// User name.
    pub user: String,
    /// CSRF token to be echoed in `X-CSRF-Token`.
    pub csrf: String,
    /// Last use (idle timeout).
    pub last_seen: Instant,
}

/// One logged API request. The names the simulator chooses from a fixed set (method,
/// endpoint, fault, auth) are static strings, so that a long log holds only what varies.
/// The query may hold personal identifiers: `Debug` leaves it and the path out.
#[derive(Clone, Serialize)]
pub struct LogEntry {
    /// Internal sequence number (to update the status later).
    #[serde(skip)]
    pub seq: u64,
    /// HTTP method.
    pub method: Cow<'static, str>,
    /// Path without query string.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Endpoint name (as used by fault rules).
    pub endpoint: &'static str,
    /// Response status (0 when the connection was dropped).
    pub status: u16,
    /// Fault kind applied, if any.
    pub fault: Option<&'static str>,
    /// Authenticated user, if any.
    pub user: Option<String>,
    /// `basic`, `session`, `bearer` or null.
    pub auth: Option<&'static str>,
}

impl std::fmt::Debug for LogEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogEntry")
            .field("method", &self.method)
            .field("endpoint", &self.endpoint)
            .field("status", &self.status)
            .field("fault", &self.fault)
            .field("user", &self.user)
            .field("auth", &self.auth)
            .finish()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .field("csrf", &"[redacted]")
            .finish()
    }
}

/// Login bookkeeping of one user name.
#[derive(Clone, Debug, Default)]
pub struct LoginState {
    /// Consecutive failed attempts.
    pub failed: u32,
    /// Locked until.
    pub locked_until: Option<Instant>,
}

/// Everything the simulator holds. `Debug` shows counts only (no personal data, no tokens).
pub struct Store {
    /// Current switches.
    pub opts: Options,
    /// Cases in insertion order.
    pub cases: Vec<CaseRec>,
    /// id -> index in `cases`.
    pub case_idx: HashMap<String, usize>,
    /// case_id -> index in `cases`.
    pub case_id_idx: HashMap<String, usize>,
    /// Per field of [`INDEXED_IDENTIFIERS`]: value -> cases whose field is that string or an
    /// array holding it (positions in `cases`, each once, unordered).
    pub ident_idx: [HashMap<String, Vec<usize>>; 2],
    /// Referrals in insertion order.
    pub referrals: Vec<Referral>,
    /// referral id -> index.
    pub ref_idx: HashMap<String, usize>,
    /// case id -> referral indexes.
    pub refs_by_case: HashMap<String, Vec<usize>>,
    /// Users.
    pub users: Vec<SimUser>,
    /// Sessions by cookie value.
    pub sessions: HashMap<String, Session>,
    /// JWTs -> (user, expiry).
    pub jwts: HashMap<String, (String, Instant)>,
    /// Login POST times per user_name (throttle).
    pub login_hits: HashMap<String, VecDeque<Instant>>,
    /// Failed-login state per user_name.
    pub logins: HashMap<String, LoginState>,
    /// Request log (the last `request_log_limit` requests).
    pub log: VecDeque<LogEntry>,
    /// Requests logged since the log was last cleared, by endpoint, those the bounded log
    /// has dropped included (`GET /_sim/requests/counts`).
    pub log_counts: std::collections::BTreeMap<&'static str, u64>,
    /// Active fault rules.
    pub faults: Vec<FaultRule>,
    /// Last `last_updated_at` handed out.
    pub last_ts: DateTime<Utc>,
    /// Sequence counter.
    pub seq: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("cases", &self.cases.len())
            .field("referrals", &self.referrals.len())
            .field("users", &self.users.len())
            .field("sessions", &self.sessions.len())
            .field("jwts", &self.jwts.len())
            .field("log", &self.log.len())
            .field("faults", &self.faults.len())
            .finish()
    }
}

impl Store {
    /// A fresh store with the option's users.
    pub fn new(opts: Options) -> Self {
        let users = opts.users.clone();
        Store {
            opts,
            cases: vec![],
            case_idx: HashMap::new(),
            case_id_idx: HashMap::new(),
            ident_idx: Default::default(),
            referrals: vec![],
            ref_idx: HashMap::new(),
            refs_by_case: HashMap::new(),
            users,
            sessions: HashMap::new(),
            jwts: HashMap::new(),
            login_hits: HashMap::new(),
            logins: HashMap::new(),
            log: VecDeque::new(),
            log_counts: Default::default(),
            faults: vec![],
            last_ts: DateTime::<Utc>::MIN_UTC,
            seq: 0,
        }
    }

    /// Clears all data, sessions, logs and faults; restores the option's users.
    pub fn reset(&mut self) {
        let opts = self.opts.clone();
        *self = Store::new(opts);
    }

    /// Next save timestamp: now at ms precision, strictly after the previous one.
    pub fn next_ts(&mut self) -> DateTime<Utc> {
        let now = Utc::now();
        let now = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
        let t = if now <= self.last_ts {
            self.last_ts + Duration::milliseconds(1)
        } else {
            now
        };
        self.last_ts = t;
        t
    }

    /// Next sequence number.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Finds a user by name (case-insensitive, trimmed).
    pub fn user(&self, name: &str) -> Option<&SimUser> {
        let n = name.trim();
        self.users
            .iter()
            .find(|u| u.user_name.eq_ignore_ascii_case(n))
    }

    /// Finds a case index by id or by case_id.
    pub fn find_case(&self, key: &str) -> Option<usize> {
        self.case_idx
            .get(key)
            .or_else(|| self.case_id_idx.get(key))
            .copied()
    }

    /// Whether `user` may see the case at `idx`.
    pub fn in_scope(&self, user: &SimUser, idx: usize) -> bool {
        let d = &self.cases[idx].data;
        match user.group_permission.as_str() {
            "all" => true,
            perm => {
                let named = |k: &str| match d.get(k) {
                    Some(Value::String(s)) => s == &user.user_name,
                    Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(&user.user_name)),
                    _ => false,
                };
                named("owned_by")
                    || named("associated_user_names")
                    || named("assigned_user_names")
                    || (perm == "agency"
                        && d.get("owned_by_agency_id").and_then(|v| v.as_str())
                            == Some(user.agency.as_str()))
            }
        }
    }

    /// Gives every subform row a `unique_id` and removes `_destroy` keys.
    pub fn populate_subform_ids(&self, data: &mut Map<String, Value>) {
        for (k, ty) in &self.opts.form_schema {
            if !matches!(ty, FieldType::Subform { .. }) {
                continue;
            }
            if let Some(Value::Array(rows)) = data.get_mut(k) {
                for r in rows.iter_mut() {
                    if let Value::Object(o) = r {
                        o.remove("_destroy");
                        if o.get("unique_id").map(|u| u.is_null()).unwrap_or(true) {
                            o.insert(
                                "unique_id".into(),
                                Value::String(uuid::Uuid::new_v4().to_string()),
                            );
                        }
                    }
                }
            }
        }
    }

    /// Saves a case after a change by `user`: subform ids, associated users,
    /// `last_updated_at` (strictly increasing) and `last_updated_by`.
    pub fn touch_case(&mut self, idx: usize, user: &str) {
        let ts = fmt_ts(self.next_ts());
        let mut data = std::mem::take(&mut self.cases[idx].data);
        self.populate_subform_ids(&mut data);
        recompute_associated(&mut data);
        data.insert("last_updated_at".into(), Value::String(ts));
        data.insert("last_updated_by".into(), Value::String(user.to_string()));
        let c = &mut self.cases[idx];
        c.data = data;
        c.saved_at = Instant::now();
        self.refresh_case(idx);
    }

    /// Brings the derived state of the case at `idx` (identifier index, parsed
    /// `last_updated_at`) in line with its data.
    fn refresh_case(&mut self, idx: usize) {
        let c = &mut self.cases[idx];
        c.updated_at = match c.data.get("last_updated_at") {
            Some(v @ Value::String(_)) => Some(value_time(v)),
            _ => None,
        };
        c.enabled = record_enabled(&c.data);
        for (slot, name) in SORT_CACHED.iter().enumerate() {
            let v = c.data.get(*name);
            if c.sort_values[slot].as_ref() != v {
                c.sort_values[slot] = v.cloned();
            }
        }
        c.json_values = json_values(&c.data);
        let mut keys: Vec<(usize, String)> = Vec::new();
        for (f, name) in INDEXED_IDENTIFIERS.iter().enumerate() {
            let mut add = |s: &str| {
                if !keys.iter().any(|(g, k)| *g == f && k == s) {
                    keys.push((f, s.to_string()));
                }
            };
            match c.data.get(*name) {
                Some(Value::String(s)) => add(s),
                Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str()).for_each(add),
                _ => {}
            }
        }
        if keys == c.indexed {
            return;
        }
        let old = std::mem::replace(&mut c.indexed, keys);
        for (f, k) in old {
            if let Some(list) = self.ident_idx[f].get_mut(&k) {
                if let Some(p) = list.iter().position(|&i| i == idx) {
                    list.swap_remove(p);
                }
                if list.is_empty() {
                    self.ident_idx[f].remove(&k);
                }
            }
        }
        for (f, k) in &self.cases[idx].indexed {
            self.ident_idx[*f].entry(k.clone()).or_default().push(idx);
        }
    }

    /// Inserts a new case (or replaces the one with the same id) and maintains indexes.
    pub fn put_case(&mut self, id: String, data: Map<String, Value>) -> usize {
        let seq = self.next_seq();
        let case_id = data
            .get("case_id")
            .and_then(|v| v.as_str())
            .map(|s| s.to_string());
        let idx = match self.case_idx.get(&id) {
            Some(&i) => {
                if let Some(old) = self.cases[i].data.get("case_id").and_then(|v| v.as_str()) {
                    let old = old.to_string();
                    if self.case_id_idx.get(&old) == Some(&i) {
                        self.case_id_idx.remove(&old);
                    }
                }
                self.cases[i].data = compact_map(data);
                self.cases[i].saved_at = Instant::now();
                i
            }
            None => {
                self.cases.push(CaseRec {
                    id: id.clone(),
                    seq,
                    saved_at: Instant::now(),
                    updated_at: None,
                    enabled: true,
                    sort_values: [None, None],
                    json_values: [None],
                    indexed: Vec::new(),
                    data: compact_map(data),
                });
                let i = self.cases.len() - 1;
                self.case_idx.insert(id, i);
                i
            }
        };
        if let Some(cid) = case_id {
            self.case_id_idx.insert(cid, idx);
        }
        self.refresh_case(idx);
        idx
    }

    /// Adds or replaces a referral.
    pub fn put_referral(&mut self, r: Referral) {
        if let Some(&i) = self.ref_idx.get(&r.id) {
            let old_case = self.referrals[i].record_id.clone();
            if old_case != r.record_id {
                if let Some(v) = self.refs_by_case.get_mut(&old_case) {
                    v.retain(|x| *x != i);
                }
                self.refs_by_case
                    .entry(r.record_id.clone())
                    .or_default()
                    .push(i);
            }
            self.referrals[i] = Referral {
                data: compact_map(r.data),
                ..r
            };
        } else {
            let i = self.referrals.len();
            self.ref_idx.insert(r.id.clone(), i);
            self.refs_by_case
                .entry(r.record_id.clone())
                .or_default()
                .push(i);
            self.referrals.push(Referral {
                data: compact_map(r.data),
                ..r
            });
        }
    }

    /// Appends to the request log (bounded).
    pub fn log_request(&mut self, e: LogEntry) {
        if !self.opts.record_requests {
            return;
        }
        *self.log_counts.entry(e.endpoint).or_default() += 1;
        self.log.push_back(e);
        self.trim_log();
    }

    /// Drops the oldest log entries beyond `request_log_limit` (at least 1 is kept); the
    /// counts stay.
    pub fn trim_log(&mut self) {
        while self.log.len() > self.opts.request_log_limit.max(1) {
            self.log.pop_front();
        }
    }

    /// Forgets the request log and its counts.
    pub fn clear_log(&mut self) {
        self.log.clear();
        self.log_counts.clear();
    }

    /// `GET /_sim/state`.
    pub fn state_json(&self) -> Value {
        let mut opts = serde_json::to_value(&self.opts).unwrap_or(Value::Null);
        if let Value::Object(o) = &mut opts {
            o.remove("users");
            o.remove("form_schema");
        }
        // Built by hand: `json!` would deep-copy every record through the serializer.
        let mut m = Map::with_capacity(4);
        m.insert(
            "cases".into(),
            Value::Array(self.cases.iter().map(|c| record_json(c, None)).collect()),
        );
        m.insert(
            "referrals".into(),
            Value::Array(
                self.referrals
                    .iter()
                    .map(|r| Value::Object(r.data.clone()))
                    .collect(),
            ),
        );
        m.insert(
            "users".into(),
            Value::Array(self.users.iter().map(user_json).collect()),
        );
        m.insert("options".into(), opts);
        Value::Object(m)
    }
}

/// Recomputes `associated_user_names` = owner + assigned + referred users (unique, ordered).
pub fn recompute_associated(data: &mut Map<String, Value>) {
    let mut names: Vec<String> = vec![];
    let mut add = |v: Option<&Value>| match v {
        Some(Value::String(s)) if !names.contains(s) => names.push(s.clone()),
        Some(Value::Array(a)) => {
            for x in a {
                if let Some(s) = x.as_str() {
                    if !names.iter().any(|n| n == s) {
                        names.push(s.to_string());
                    }
                }
            }
        }
        _ => {}
    };
    add(data.get("owned_by"));
    add(data.get("assigned_user_names"));
    add(data.get("referred_users"));
    data.insert(
        "associated_user_names".into(),
        Value::Array(names.into_iter().map(Value::String).collect()),
    );
}

/// Fields of a record's `fields=short` summary.
pub const SUMMARY_FIELDS: [&str; 14] = [
    "case_id_display",
    "name",
    "age",
    "sex",
    "registration_date",
    "status",
    "owned_by",
    "created_at",
    "short_id",
    "module_id",
    "workflow",
    "flag_count",
    "alert_count",
    "photo",
];

/// A map rebuilt at its exact size, nested maps too (same keys, same order, same values).
/// Maps grown key by key keep up to twice the room they need; stored records are many.
pub fn compact_map(m: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::with_capacity(m.len());
    for (k, v) in m {
        out.insert(k, compact_value(v));
    }
    out
}

fn compact_value(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(compact_map(m)),
        Value::Array(a) => Value::Array(a.into_iter().map(compact_value).collect()),
        other => other,
    }
}

/// What a record's `enabled` shows: its `record_state` when that is a boolean, else `true`.
fn record_enabled(data: &Map<String, Value>) -> bool {
    data.get("record_state")
        .and_then(|v| v.as_bool())
        .unwrap_or(true)
}

/// A case as [`record_json`] shows it, written straight from the store into a response
/// body (no copy of the data): the same JSON text as
/// `serde_json::to_vec(&record_json(c, fields))`. The `fields` selection is worked out once
/// for all the cases of a listing.
pub struct Projection<'a> {
    /// The fields shown, in order: the selected ones once each, without `id` and `enabled`,
    /// then `last_updated_at` if it is not among them. `None` = every field.
    fields: Option<Vec<Shown<'a>>>,
}

/// A field a [`Projection`] shows.
struct Shown<'a> {
    /// Its name.
    name: &'a str,
    /// Its key as written in the record (`"name":`).
    key: Vec<u8>,
    /// Its place in [`CaseRec::sort_values`], when the case keeps a copy of it.
    cached: Option<usize>,
    /// Its place in [`CaseRec::json_values`], when the case keeps it written out.
    written: Option<usize>,
}

/// The [`CaseRec::json_values`] of a case holding `data`.
pub fn json_values(data: &Map<String, Value>) -> [Option<Vec<u8>>; 1] {
    JSON_CACHED.map(|name| {
        data.get(name).map(|v| {
            let mut out = Vec::new();
            write_json(&mut out, v);
            // Kept for the case's life: without the room the writer left.
            out.shrink_to_fit();
            out
        })
    })
}

/// Appends `v` as compact JSON (serde_json's writer, into the body being built).
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing a string or a `Value` (whose keys are strings) into a Vec cannot fail.
    serde_json::to_writer(&mut *out, v).expect("a string or a JSON value serializes");
}

impl<'a> Projection<'a> {
    /// The projection of a `fields` selection (`None` = every field).
    pub fn new(fields: Option<&'a [String]>) -> Self {
        let Some(fs) = fields else {
            return Projection { fields: None };
        };
        // record_json inserts into a map: a repeated field keeps its first place, and
        // `last_updated_at` comes last unless it was selected.
        let mut shown: Vec<Shown> = Vec::with_capacity(fs.len() + 1);
        for name in fs.iter().map(|f| f.as_str()).chain(["last_updated_at"]) {
            if name == "id" || name == "enabled" || shown.iter().any(|f| f.name == name) {
                continue;
            }
            let mut key = Vec::with_capacity(name.len() + 3);
            write_json(&mut key, name);
            key.push(b':');
            shown.push(Shown {
                name,
                key,
                cached: SORT_CACHED.iter().position(|f| *f == name),
                written: JSON_CACHED.iter().position(|f| *f == name),
            });
        }
        Projection {
            fields: Some(shown),
        }
    }

    /// Appends the case's record JSON to `out`.
    pub fn write(&self, out: &mut Vec<u8>, c: &CaseRec) {
        out.extend_from_slice(b"{\"id\":");
        write_json(out, &c.id);
        debug_assert_eq!(
            c.enabled,
            record_enabled(&c.data),
            "cached enabled out of date"
        );
        out.extend_from_slice(if c.enabled {
            b",\"enabled\":true"
        } else {
            b",\"enabled\":false"
        });
        match &self.fields {
            None => {
                for (k, v) in &c.data {
                    if k != "id" && k != "enabled" {
                        out.push(b',');
                        write_json(out, k);
                        out.push(b':');
                        match JSON_CACHED.iter().position(|f| f == k) {
                            Some(slot) => write_cached(out, c, slot, v),
                            None => write_json(out, v),
                        }
                    }
                }
            }
            Some(fs) => {
                for f in fs {
                    if let Some(slot) = f.written {
                        if let Some(v) = c.data.get(f.name) {
                            out.push(b',');
                            out.extend_from_slice(&f.key);
                            write_cached(out, c, slot, v);
                        }
                        continue;
                    }
                    let v = match f.cached {
                        Some(slot) => {
                            debug_assert_eq!(
                                c.sort_values[slot].as_ref(),
                                c.data.get(f.name),
                                "cached {} out of date",
                                f.name
                            );
                            c.sort_values[slot].as_ref()
                        }
                        None => c.data.get(f.name),
                    };
                    if let Some(v) = v {
                        out.push(b',');
                        out.extend_from_slice(&f.key);
                        write_json(out, v);
                    }
                }
            }
        }
        out.push(b'}');
    }
}

/// Appends the JSON of `c`'s field `JSON_CACHED[slot]`, whose value is `v`, as the case keeps
/// it written out.
fn write_cached(out: &mut Vec<u8>, c: &CaseRec, slot: usize, v: &Value) {
    match &c.json_values[slot] {
        Some(written) => {
            debug_assert_eq!(
                Some(written),
                json_values(&c.data)[slot].as_ref(),
                "written {} out of date",
                JSON_CACHED[slot]
            );
            out.extend_from_slice(written)
        }
        // Not refreshed yet (a case being built): written now.
        None => write_json(out, v),
    }
}

/// Record JSON: `id`, `enabled`, then the data (only `fields` + `last_updated_at` when given).
pub fn record_json(c: &CaseRec, fields: Option<&[String]>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(c.id.clone()));
    let enabled = record_enabled(&c.data);
    m.insert("enabled".into(), Value::Bool(enabled));
    match fields {
        None => {
            for (k, v) in &c.data {
                if k != "id" && k != "enabled" {
                    m.insert(k.clone(), v.clone());
                }
            }
        }
        Some(fs) => {
            for f in fs {
                if f == "id" || f == "enabled" {
                    continue;
                }
                if let Some(v) = c.data.get(f) {
                    m.insert(f.clone(), v.clone());
                }
            }
            if let Some(v) = c.data.get("last_updated_at") {
                m.insert("last_updated_at".into(), v.clone());
            }
        }
    }
    Value::Object(m)
}

/// The `id`, `enabled`, `last_updated_at` and every top-level key whose value differs.
pub fn changed_json(c: &CaseRec, before: &Map<String, Value>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(c.id.clone()));
    let enabled = record_enabled(&c.data);
    m.insert("enabled".into(), Value::Bool(enabled));
    if let Some(v) = c.data.get("last_updated_at") {
        m.insert("last_updated_at".into(), v.clone());
    }
    for (k, v) in &c.data {
        if k != "id" && before.get(k) != Some(v) {
            m.insert(k.clone(), v.clone());
        }
    }
    Value::Object(m)
}

/// Constant account timestamps shown on users.
const USER_CREATED_AT: &str = "2025-01-06T08:00:00.000Z";

/// User JSON as `GET /api/v2/users` shows it (nulls omitted, no password).
pub fn user_json(u: &SimUser) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(u.id));
    m.insert("user_name".into(), json!(u.user_name));
    let mut opt = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    };
    opt("full_name", &u.full_name);
    opt("email", &u.email);
    opt("phone", &u.phone);
    opt("position", &u.position);
    opt("code", &u.code);
    opt("agency_office", &u.agency_office);
    opt("location", &u.location);
    m.insert("agency_id".into(), json!(u.agency_id));
    m.insert("agency_unique_id".into(), json!(u.agency));
    m.insert("locale".into(), json!("en"));
    m.insert("time_zone".into(), json!("UTC"));
    m.insert("disabled".into(), json!(u.disabled));
    m.insert("services".into(), json!(u.services));
    m.insert("created_at".into(), json!(USER_CREATED_AT));
    m.insert("updated_at".into(), json!(USER_CREATED_AT));
    m.insert("role_unique_id".into(), json!(u.role_unique_id));
    m.insert("role_group_permission".into(), json!(u.group_permission));
    m.insert(
        "user_group_unique_ids".into(),
        json!(u.user_group_unique_ids),
    );
    m.insert("module_unique_ids".into(), json!(u.module_unique_ids));
    Value::Object(m)
}

/// Normalises the timestamp fields of a seeded/created record in place.
fn normalise_record_times(data: &mut Map<String, Value>) {
    for k in ["created_at", "last_updated_at", "posted_at"] {
        if let Some(Value::String(s)) = data.get(k) {
            if let Some(n) = normalise_ts(s) {
                data.insert(k.into(), Value::String(n));
            }
        }
    }
}

/// Loads a seed document (see README): `cases`, `referrals`, `users`, optional `reset`.
/// Returns counts.
/// Records without timestamps all get one "now" of this seed call (no clock skew into the
/// future for large seeds; ties are ordered by insertion).
pub fn seed(store: &mut Store, doc: Value) -> Result<Value, String> {
    let Value::Object(mut obj) = doc else {
        return Err("seed document must be a JSON object".to_string());
    };
    let now = fmt_ts(store.next_ts());
    if obj.get("reset").and_then(|v| v.as_bool()) == Some(true) {
        store.reset();
    }
    let mut n_users = 0;
    if let Some(users) = obj.get("users") {
        let users = users.as_array().ok_or("users must be an array")?;
        for (i, u) in users.iter().enumerate() {
            let mut user: SimUser = serde_json::from_value(u.clone()).map_err(|e| {
                // serde messages may quote values: report the error category only.
                format!("users[{i}]: not a valid user ({:?} error)", e.classify())
            })?;
            if user.user_name.is_empty() {
                return Err(format!("users[{i}]: user_name missing"));
            }
            let existing = store
                .users
                .iter()
                .position(|x| x.user_name.eq_ignore_ascii_case(&user.user_name));
            if user.id == 0 {
                user.id = match existing {
                    Some(p) => store.users[p].id,
                    None => store.users.iter().map(|x| x.id).max().unwrap_or(0) + 1,
                };
            }
            match existing {
                Some(p) => store.users[p] = user,
                None => store.users.push(user),
            }
            n_users += 1;
        }
    }
    let mut n_cases = 0;
    if let Some(cases) = obj.remove("cases") {
        let Value::Array(cases) = cases else {
            return Err("cases must be an array".into());
        };
        for (i, c) in cases.into_iter().enumerate() {
            let Value::Object(mut data) = c else {
                return Err(format!("cases[{i}] must be an object"));
            };
            seed_case(store, &mut data, &now).map_err(|e| format!("cases[{i}]: {e}"))?;
            n_cases += 1;
        }
    }
    let mut n_refs = 0;
    if let Some(refs) = obj.remove("referrals") {
        let Value::Array(refs) = refs else {
            return Err("referrals must be an array".into());
        };
        for (i, r) in refs.into_iter().enumerate() {
            let Value::Object(data) = r else {
                return Err(format!("referrals[{i}] must be an object"));
            };
            seed_referral(store, data, &now).map_err(|e| format!("referrals[{i}]: {e}"))?;
            n_refs += 1;
        }
    }
    Ok(json!({"cases": n_cases, "referrals": n_refs, "users": n_users}))
}

fn seed_case(store: &mut Store, data: &mut Map<String, Value>, now: &str) -> Result<(), String> {
    // `id` stays in the data (output skips it): removing the first key of an ordered map is
    // O(fields) and seeding must stay fast for large scenarios.
    let id = match data.get("id") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
        Some(_) => return Err("id must be a string".into()),
    };
    let enabled = if data.contains_key("enabled") {
        data.remove("enabled")
    } else {
        None
    };
    if !data.contains_key("record_state") {
        data.insert("record_state".into(), enabled.unwrap_or(Value::Bool(true)));
    }
    let unique = data
        .get("unique_identifier")
        .and_then(|v| v.as_str())
        .map(|s| s.to_string())
        .unwrap_or_else(|| {
            data.get("case_id")
                .and_then(|v| v.as_str())
                .filter(|s| is_uuid(s))
                .map(|s| s.to_string())
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
        });
    let short: String = unique
        .chars()
        .rev()
        .take(7)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    data.entry("case_id")
        .or_insert_with(|| Value::String(unique.clone()));
    data.entry("short_id")
        .or_insert_with(|| Value::String(short.clone()));
    let short_now = data
        .get("short_id")
        .cloned()
        .unwrap_or(Value::String(short));
    data.entry("case_id_display").or_insert(short_now);
    data.entry("status").or_insert_with(|| json!("open"));
    normalise_record_times(data);
    if !data.contains_key("created_at") || !data.contains_key("last_updated_at") {
        data.entry("created_at")
            .or_insert_with(|| Value::String(now.to_string()));
        data.entry("last_updated_at")
            .or_insert_with(|| Value::String(now.to_string()));
    }
    store.populate_subform_ids(data);
    if !data.contains_key("associated_user_names") {
        recompute_associated(data);
    }
    if let Some(cid) = data.get("case_id").and_then(|v| v.as_str()) {
        if let Some(&other) = store.case_id_idx.get(cid) {
            if store.cases[other].id != id {
                return Err("case_id already used by another case".into());
            }
        }
    }
    store.put_case(id, std::mem::take(data));
    Ok(())
}

fn seed_referral(store: &mut Store, data: Map<String, Value>, now: &str) -> Result<(), String> {
    let rec = data
        .get("record_id")
        .and_then(|v| v.as_str())
        .ok_or("record_id missing")?
        .to_string();
    let idx = store
        .find_case(&rec)
        .ok_or("record_id names no seeded case")?;
    let case_uuid = store.cases[idx].id.clone();
    let id = data
        .get("id")
        .and_then(|v| v.as_str())
        .map(|s| s.to_string())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // Edit the given map in place (keeps the caller's key order, no copying).
    let mut m = data;
    for k in ["record_access_denied", "user_can_accept_or_reject"] {
        if m.contains_key(k) {
            m.remove(k);
        }
    }
    m.retain(|_, v| !v.is_null());
    m.insert("id".into(), json!(id));
    m.entry("type").or_insert_with(|| json!("Referral"));
    m.entry("status").or_insert_with(|| json!("in_progress"));
    m.insert("record_id".into(), json!(case_uuid));
    m.entry("record_type").or_insert_with(|| json!("case"));
    m.entry("remote").or_insert(json!(false));
    let created = match m.get("created_at") {
        Some(Value::String(s)) => normalise_ts(s).unwrap_or_else(|| s.clone()),
        _ => now.to_string(),
    };
    m.insert("created_at".into(), json!(created));
    let seq = store.next_seq();
    store.put_referral(Referral {
        id,
        record_id: case_uuid,
        seq,
        data: m,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacting_keeps_keys_order_and_values() {
        let mut m = Map::new();
        for i in 0..40 {
            m.insert(format!("k{}", 40 - i), json!(i));
        }
        m.insert(
            "rows".into(),
            json!([{"z": 1, "a": [1, {"y": 2, "b": null}]}, "x", 1.5]),
        );
        m.remove("k7");
        let before = serde_json::to_string(&m).expect("json");
        let after = serde_json::to_string(&compact_map(m)).expect("json");
        assert_eq!(before, after);
    }

    #[test]
    fn projection_writes_what_record_json_shows() {
        let mut data = Map::new();
        data.insert("id".into(), json!("seeded-id"));
        data.insert("sex".into(), json!("female"));
        data.insert("last_updated_at".into(), json!("2024-01-01T00:00:00.000Z"));
        data.insert("record_state".into(), json!(false));
        data.insert("name".into(), json!("Nyabol \"Deng\""));
        data.insert("created_at".into(), json!("2023-12-31T00:00:00.000Z"));
        data.insert(
            "services_section".into(),
            json!([{"unique_id": "s1", "service_type": "cash_assistance", "note": "a \"b\"\n", "n": 1.5}]),
        );
        let json_values = json_values(&data);
        let c = CaseRec {
            id: "00000000-0000-4000-8000-000000000001".into(),
            seq: 1,
            saved_at: Instant::now(),
            updated_at: None,
            enabled: false,
            sort_values: [
                Some(json!("2023-12-31T00:00:00.000Z")),
                Some(json!("2024-01-01T00:00:00.000Z")),
            ],
            json_values,
            indexed: Vec::new(),
            data,
        };
        let sel = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let selections = [
            None,
            Some(sel(&[])),
            Some(sel(&["sex"])),
            Some(sel(&["sex", "sex", "id", "enabled", "missing"])),
            Some(sel(&["last_updated_at", "name", "sex", "last_updated_at"])),
            Some(sel(&["name", "sex", "enabled", "name"])),
            Some(sel(&["missing", "id"])),
            Some(sel(&["created_at", "sex", "created_at"])),
            Some(sel(&["services_section", "sex"])),
            Some(sel(&[
                "sex",
                "services_section",
                "services_section",
                "last_updated_at",
            ])),
        ];
        for fields in &selections {
            let expected =
                serde_json::to_string(&record_json(&c, fields.as_deref())).expect("json");
            let mut written = Vec::new();
            Projection::new(fields.as_deref()).write(&mut written, &c);
            assert_eq!(String::from_utf8_lossy(&written), expected, "{fields:?}");
        }
    }
}
