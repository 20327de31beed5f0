//! Ingestion (`/data` and `/asyncdata`): structural validation of `Data[]`, the per-SHP field
//! whitelist, value checks (GUIDs, dates, option codes), and application to the store with
//! all-or-nothing or partial batch semantics. Re-sending the same `/data` records changes
//! nothing; a repeated SHP-2731 create makes a second referral, updates the stored one or
//! is ignored, by the `async_repeat` switch.

use serde_json::{Map, Value};

use crate::json::{Doc, Json};
use crate::model::{is_date, is_guid, InteropReferral};
use crate::options::{AsyncRepeat, BatchMode, InvalidOptionCode, Options};
use crate::store::{ItemData, ItemResult, Store};

/// Which ingestion shipping process a request targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IngestKind {
    /// SHP-2748: Primero transfer status on an LP intervention (sync).
    TransferStatus,
    /// SHP-2284: interoperability referral synced (sync).
    ReferralSynced,
    /// SHP-2731: new interoperability referral (async).
    IncomingReferral,
}

impl IngestKind {
    /// Resolves an SHP id against the configured shipping processes.
    pub fn of(opts: &Options, shp: &str) -> Option<IngestKind> {
        let s = &opts.shipping_processes;
        if shp == s.transfer_status {
            Some(IngestKind::TransferStatus)
        } else if shp == s.referral_synced {
            Some(IngestKind::ReferralSynced)
        } else if shp == s.incoming_referral {
            Some(IngestKind::IncomingReferral)
        } else {
            None
        }
    }

    /// Whether the process is asynchronous (`/asyncdata`) rather than sync (`/data`).
    pub fn is_async(self) -> bool {
        matches!(self, IngestKind::IncomingReferral)
    }

    fn allowed(self) -> &'static [&'static str] {
        match self {
            IngestKind::TransferStatus => &[
                "progres_lpinterventionid",
                "progres_businessunit",
                "progres_primerotransferstatus",
                "progres_primerotransferstatusdate",
                "progres_primeroid",
                "progres_primerocaseworker",
            ],
            IngestKind::ReferralSynced => &[
                "progres_interoperabilityreferralid",
                "progres_interoperabilityreferralstatus",
                "progres_comments",
            ],
            IngestKind::IncomingReferral => SHP_2731_FIELDS,
        }
    }

    fn required(self) -> &'static [&'static str] {
        match self {
            IngestKind::TransferStatus => &["progres_lpinterventionid", "progres_businessunit"],
            IngestKind::ReferralSynced => &["progres_interoperabilityreferralid"],
            IngestKind::IncomingReferral => &["progres_orgreferralid", "progres_businessunit"],
        }
    }
}

/// Fields SHP-2731 accepts (spec §3).
pub const SHP_2731_FIELDS: &[&str] = &[
    "progres_externalguid",
    "progres_externalid",
    "progres_businessunit",
    "progres_organizationfrom",
    "progres_orgreferredby",
    "progres_orgposition",
    "progres_orgemail",
    "progres_orgphonenumber",
    "progres_orgreferralid",
    "progres_referraldate",
    "progres_otherrequestedservices",
    "progres_requestedservice",
    "progres_spneedcategory",
    "progres_reasonforreferral",
    "progres_pocphonenumber",
    "progres_pocaddress",
    "progres_pocotheridnumber",
    "progres_pocdateofbirth",
    "progres_pocsex",
    "progres_poclastname",
    "progres_pocmiddlename",
    "progres_pocfirstname",
    "progres_unhcrid",
    "progres_offlineid",
];

enum FieldType {
    Guid,
    Date,
    Code(i64, i64),
    Text,
}

/// The value rule of a field. `progres_primerotransferstatus` starts at 125080000 (meaning
/// UNKNOWN, spec §4) only under `transfer_status_accepts_125080000`.
fn field_type(name: &str, opts: &Options) -> FieldType {
    match name {
        "progres_lpinterventionid"
        | "progres_businessunit"
        | "progres_interoperabilityreferralid"
        | "progres_organizationfrom"
        | "progres_requestedservice"
        | "progres_spneedcategory"
        | "progres_externalguid" => FieldType::Guid,
        "progres_primerotransferstatusdate" | "progres_referraldate" | "progres_pocdateofbirth" => {
            FieldType::Date
        }
        "progres_primerotransferstatus" if opts.transfer_status_accepts_125080000 => {
            FieldType::Code(125_080_000, 125_080_004)
        }
        "progres_primerotransferstatus" => FieldType::Code(125_080_001, 125_080_004),
        "progres_interoperabilityreferralstatus" => FieldType::Code(125_080_000, 125_080_003),
        "progres_pocsex" => FieldType::Code(125_080_000, 125_080_003),
        _ => FieldType::Text,
    }
}

/// A structurally valid ingestion record, borrowing its strings from the request's JSON
/// (only what is stored gets copied, once, when the record is applied).
struct RecordIn<'a> {
    external_id: &'a str,
    external_guid: Option<&'a str>,
    comments: Vec<&'a str>,
    fields: Vec<(&'a str, Option<&'a str>)>,
}

impl<'a> RecordIn<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| *v)
    }
}

/// Checks the top-level `Data` member: a non-empty array (the records).
pub(crate) fn check_data_array(data: Option<Doc>) -> Result<Doc, String> {
    let Some(doc) = data else {
        return Err("Data is required".into());
    };
    match doc.root().as_array().map(|a| a.len()) {
        Some(0) => Err("Data must contain at least one record".into()),
        Some(_) => Ok(doc),
        None => Err("Data must be an array of records".into()),
    }
}

fn parse_record(i: usize, obj: Json<'_>) -> Result<RecordIn<'_>, (Value, String)> {
    if !obj.is_object() {
        return Err((Value::Null, format!("record {i}: must be an object")));
    }
    let external_id = match obj.get("ExternalId").and_then(Json::as_str) {
        Some(s) if !s.trim().is_empty() => s,
        _ => {
            return Err((
                Value::Null,
                format!("record {i}: ExternalId is required and must be a non-empty string"),
            ))
        }
    };
    let fail = |msg: String| Err((Value::String(external_id.to_owned()), msg));
    for (k, _) in obj.members().into_iter().flatten() {
        if !matches!(k, "ExternalId" | "ExternalGUID" | "Attachments" | "Fields") {
            return fail(format!("member '{k}' is not allowed in a record"));
        }
    }
    let external_guid = match obj.get("ExternalGUID") {
        None => None,
        Some(g) if g.is_null() => None,
        Some(g) => match g.as_str() {
            Some(s) => Some(s),
            None => return fail("ExternalGUID must be a string".into()),
        },
    };
    let mut comments = Vec::new();
    match obj.get("Attachments") {
        None => {}
        Some(a) if a.is_null() => {}
        Some(a) => {
            let Some(a) = a.as_array() else {
                return fail("Attachments must be an array".into());
            };
            for att in a {
                match att.get("Comment").and_then(Json::as_str) {
                    Some(c) => comments.push(c),
                    _ => return fail("Attachments[].Comment must be a string".into()),
                }
            }
        }
    }
    let mut fields: Vec<(&str, Option<&str>)> = Vec::new();
    match obj.get("Fields").and_then(Json::as_array) {
        Some(a) => {
            fields.reserve_exact(a.len());
            for fo in a {
                if !fo.is_object() {
                    return fail("Fields[] must be objects with Name and Value".into());
                }
                let name = match fo.get("Name").and_then(Json::as_str) {
                    Some(n) if !n.is_empty() => n,
                    _ => return fail("Fields[].Name must be a non-empty string".into()),
                };
                let value = match fo.get("Value") {
                    None => None,
                    Some(v) if v.is_null() => None,
                    Some(v) => match v.as_str() {
                        Some(s) => Some(s),
                        None => {
                            return fail(format!("field '{name}': Value must be a string or null"))
                        }
                    },
                };
                if fields.iter().any(|(n, _)| *n == name) {
                    return fail(format!("field '{name}' appears more than once"));
                }
                fields.push((name, value));
            }
        }
        _ => return fail("Fields must be an array".into()),
    }
    Ok(RecordIn {
        external_id,
        external_guid,
        comments,
        fields,
    })
}

/// A checked field value: a valid option code, or a string as sent (still borrowed from the
/// request: only what gets stored is copied).
#[derive(Clone, Copy)]
enum Typed<'a> {
    Code(i64),
    Str(&'a str),
}

impl Typed<'_> {
    fn into_value(self) -> Value {
        match self {
            Typed::Code(c) => Value::from(c),
            Typed::Str(s) => Value::String(s.to_owned()),
        }
    }

    /// The value as a string field stores it (a code printed).
    fn into_string(self) -> String {
        match self {
            Typed::Code(c) => c.to_string(),
            Typed::Str(s) => s.to_owned(),
        }
    }
}

/// A validated change, ready to apply (field names and comments still borrowed from the
/// request).
enum Op<'a> {
    Transfer {
        idx: usize,
        set: Vec<(&'a str, Option<Typed<'a>>)>,
        comments: Vec<&'a str>,
    },
    Synced {
        idx: usize,
        set: Vec<(&'a str, Option<Typed<'a>>)>,
        comments: Vec<&'a str>,
    },
    Create {
        fields: Map<String, Value>,
        external_id: &'a str,
        external_guid: Option<&'a str>,
        comments: Vec<&'a str>,
    },
}

/// Checks a record against the SHP's whitelist and value rules; returns typed values.
fn check_fields<'a>(
    kind: IngestKind,
    rec: &RecordIn<'a>,
    opts: &Options,
    shp: &str,
) -> Result<Vec<(&'a str, Option<Typed<'a>>)>, String> {
    let allowed = kind.allowed();
    let mut out = Vec::with_capacity(rec.fields.len());
    for &(name, value) in &rec.fields {
        if !allowed.contains(&name) {
            return Err(format!("field '{name}' is not allowed for {shp}"));
        }
        let typed = match (value, field_type(name, opts)) {
            (None, _) => None,
            (Some(v), FieldType::Guid) => {
                if !is_guid(v) {
                    return Err(format!("field '{name}' must be a GUID"));
                }
                Some(Typed::Str(v))
            }
            (Some(v), FieldType::Date) => {
                if !is_date(v) {
                    return Err(format!("field '{name}' must be a date YYYY-MM-DD"));
                }
                Some(Typed::Str(v))
            }
            (Some(v), FieldType::Code(lo, hi)) => match v.trim().parse::<i64>() {
                Ok(c) if (lo..=hi).contains(&c) => Some(Typed::Code(c)),
                _ => match opts.invalid_option_code {
                    InvalidOptionCode::Reject => {
                        return Err(format!(
                            "field '{name}' is not a valid option code (allowed {lo}..{hi})"
                        ))
                    }
                    InvalidOptionCode::StoreRaw => Some(Typed::Str(v)),
                },
            },
            (Some(v), FieldType::Text) => Some(Typed::Str(v)),
        };
        out.push((name, typed));
    }
    for req in kind.required() {
        if rec.get(req).is_none() {
            return Err(format!("field '{req}' is required for {shp}"));
        }
    }
    Ok(out)
}

fn plan<'a>(
    kind: IngestKind,
    rec: RecordIn<'a>,
    store: &Store,
    opts: &Options,
    shp: &str,
) -> Result<Op<'a>, String> {
    let set = check_fields(kind, &rec, opts, shp)?;
    match kind {
        IngestKind::TransferStatus => {
            let id = rec.get("progres_lpinterventionid").unwrap_or_default();
            let bu = rec.get("progres_businessunit").unwrap_or_default();
            let idx = store
                .intervention_index(id)
                .filter(|&i| {
                    store.interventions[i]
                        .progres_businessunit
                        .eq_ignore_ascii_case(bu)
                })
                .ok_or_else(|| {
                    format!(
                        "no LP intervention {id} in business unit {bu} (progres_lpinterventionid)"
                    )
                })?;
            Ok(Op::Transfer {
                idx,
                set,
                comments: rec.comments,
            })
        }
        IngestKind::ReferralSynced => {
            let id = rec
                .get("progres_interoperabilityreferralid")
                .unwrap_or_default();
            let idx = store.referral_index(id).ok_or_else(|| {
                format!("no interoperability referral {id} (progres_interoperabilityreferralid)")
            })?;
            Ok(Op::Synced {
                idx,
                set,
                comments: rec.comments,
            })
        }
        IngestKind::IncomingReferral => {
            let mut fields = Map::with_capacity(set.len());
            for (k, v) in set {
                fields.insert(k.to_owned(), v.map_or(Value::Null, Typed::into_value));
            }
            Ok(Op::Create {
                fields,
                external_id: rec.external_id,
                external_guid: rec.external_guid,
                comments: rec.comments,
            })
        }
    }
}

fn add_comments(list: &mut Vec<String>, comments: Vec<&str>) {
    for c in comments {
        if !list.iter().any(|l| l == c) {
            list.push(c.to_owned());
        }
    }
}

fn id_data(key: &'static str, value: &str) -> ItemData {
    vec![(key, Value::String(value.into()))]
}

/// Applies one op; returns the item data (identifiers of the written record). `async_repeat`
/// says what a create whose `progres_orgreferralid` is already stored does, and
/// `new_referral_status` which status a created referral gets.
fn apply(op: Op, store: &mut Store, txid: &str, opts: &Options) -> ItemData {
    let repeat = opts.async_repeat;
    match op {
        Op::Transfer { idx, set, comments } => {
            let iv = &mut store.interventions[idx];
            for (k, v) in set {
                match k {
                    "progres_primerotransferstatus" => {
                        iv.progres_primerotransferstatus = v.map(Typed::into_value)
                    }
                    "progres_primerotransferstatusdate" => {
                        iv.progres_primerotransferstatusdate = v.map(Typed::into_string)
                    }
                    "progres_primeroid" => iv.progres_primeroid = v.map(Typed::into_string),
                    "progres_primerocaseworker" => {
                        iv.progres_primerocaseworker = v.map(Typed::into_string)
                    }
                    _ => {}
                }
            }
            add_comments(&mut iv.attachment_comments, comments);
            id_data("progres_lpinterventionid", &iv.progres_lpinterventionid)
        }
        Op::Synced { idx, set, comments } => {
            let r = &mut store.referrals[idx];
            for (k, v) in set {
                match k {
                    "progres_interoperabilityreferralstatus" => {
                        if let Some(v) = v {
                            r.progres_interoperabilityreferralstatus = v.into_value();
                        }
                    }
                    "progres_comments" => r.progres_comments = v.map(Typed::into_string),
                    _ => {}
                }
            }
            add_comments(&mut r.attachment_comments, comments);
            id_data(
                "progres_interoperabilityreferralid",
                &r.progres_interoperabilityreferralid,
            )
        }
        Op::Create {
            fields,
            external_id,
            external_guid,
            comments,
        } => {
            let existing = match repeat {
                AsyncRepeat::Update | AsyncRepeat::Ignore => store.referral_by_orgreferralid(
                    fields
                        .get("progres_orgreferralid")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                ),
                AsyncRepeat::Duplicate => None,
            };
            // The position of the written referral: the one a lookup of its id would find
            // (ids are unique keys of the store).
            let at = match existing {
                Some(i) if repeat == AsyncRepeat::Ignore => i,
                Some(i) => {
                    store.merge_referral_fields(i, fields);
                    let r = &mut store.referrals[i];
                    r.external_id = Some(external_id.to_owned());
                    r.external_guid = external_guid.map(str::to_owned);
                    add_comments(&mut r.attachment_comments, comments);
                    i
                }
                None => {
                    let mut r = InteropReferral {
                        progres_interoperabilityreferralid: crate::new_guid(),
                        progres_interoperabilityreferralstatus: Value::from(
                            opts.new_referral_status,
                        ),
                        progres_reviewdecision: None,
                        progres_interoperabiltyreferralrejectionreasonname: None,
                        progres_interoperabilityreferralrejectionomment: None,
                        progres_comments: None,
                        attachment_comments: Vec::new(),
                        external_id: Some(external_id.to_owned()),
                        external_guid: external_guid.map(str::to_owned),
                        sph_transaction_id: Some(txid.to_string()),
                        fields,
                    };
                    add_comments(&mut r.attachment_comments, comments);
                    store.upsert_referral(r)
                }
            };
            let r = &store.referrals[at];
            let mut data = Vec::with_capacity(4);
            data.push((
                "progres_interoperabilityreferralid",
                Value::String(r.progres_interoperabilityreferralid.clone()),
            ));
            for k in [
                "progres_externalid",
                "progres_offlineid",
                "progres_orgreferralid",
            ] {
                if let Some(v) = r.fields.get(k).filter(|v| !v.is_null()) {
                    data.push((k, v.clone()));
                }
            }
            data
        }
    }
}

/// Identifiers a failed record's item carries (whatever could be read from it).
fn failed_item_data(kind: IngestKind, raw: Json<'_>) -> ItemData {
    let keys: &[&'static str] = match kind {
        IngestKind::TransferStatus => &["progres_lpinterventionid"],
        IngestKind::ReferralSynced => &["progres_interoperabilityreferralid"],
        IngestKind::IncomingReferral => &[
            "progres_externalid",
            "progres_offlineid",
            "progres_orgreferralid",
        ],
    };
    let mut m: ItemData = Vec::new();
    if let Some(fields) = raw.get("Fields").and_then(Json::as_array) {
        for f in fields {
            if let (Some(n), Some(v)) = (
                f.get("Name").and_then(Json::as_str),
                f.get("Value").and_then(Json::as_str),
            ) {
                if let Some(&key) = keys.iter().find(|k| **k == n) {
                    if !m.iter().any(|(k, _)| *k == key) {
                        m.push((key, Value::String(v.to_owned())));
                    }
                }
            }
        }
    }
    m
}

/// Result of one batch.
pub(crate) struct BatchOutcome {
    pub items: Vec<ItemResult>,
    pub applied: usize,
    /// `(ExternalId, message)` of the records that failed validation.
    pub failed: Vec<(Value, String)>,
    pub total: usize,
}

impl BatchOutcome {
    /// Summary for `ErrorMessage` (None when every record succeeded).
    pub fn summary(&self) -> Option<String> {
        if self.failed.is_empty() {
            return None;
        }
        if self.applied == 0 {
            Some(format!(
                "{} of {} records failed validation; no record was applied",
                self.failed.len(),
                self.total
            ))
        } else {
            Some(format!(
                "{} of {} records failed validation; {} applied",
                self.failed.len(),
                self.total,
                self.applied
            ))
        }
    }
}

/// Validates and applies a batch (`records`: the `Data` array [`check_data_array`] let
/// through) under the configured batch mode.
pub(crate) fn process_batch(
    store: &mut Store,
    opts: &Options,
    kind: IngestKind,
    shp: &str,
    records: &Doc,
    txid: &str,
) -> BatchOutcome {
    let records: Vec<Json<'_>> = records
        .root()
        .as_array()
        .map(Iterator::collect)
        .unwrap_or_default();
    let mut planned: Vec<Result<Op, (Value, String)>> = Vec::with_capacity(records.len());
    for (i, &raw) in records.iter().enumerate() {
        let r = parse_record(i, raw).and_then(|rec| {
            let ext = rec.external_id;
            plan(kind, rec, store, opts, shp).map_err(|e| (Value::String(ext.to_owned()), e))
        });
        planned.push(r);
    }
    let failed: Vec<(Value, String)> = planned
        .iter()
        .filter_map(|p| p.as_ref().err().cloned())
        .collect();
    let apply_valid = failed.is_empty() || opts.batch_mode == BatchMode::Partial;
    let mut items = Vec::with_capacity(records.len());
    let mut applied = 0;
    for (&raw, p) in records.iter().zip(planned) {
        let ext = match raw.get("ExternalId").and_then(Json::as_str) {
            Some(s) => Value::String(s.to_owned()),
            None => Value::Null,
        };
        match p {
            Ok(op) if apply_valid => {
                let data = apply(op, store, txid, opts);
                applied += 1;
                items.push(ItemResult {
                    external_id: ext,
                    data,
                    success: true,
                    error: None,
                });
            }
            Ok(_) => items.push(ItemResult {
                external_id: ext,
                data: failed_item_data(kind, raw),
                success: false,
                error: Some("not applied: another record of this batch failed".into()),
            }),
            Err((_, msg)) => items.push(ItemResult {
                external_id: ext,
                data: failed_item_data(kind, raw),
                success: false,
                error: Some(msg),
            }),
        }
    }
    BatchOutcome {
        items,
        applied,
        failed,
        total: records.len(),
    }
}
