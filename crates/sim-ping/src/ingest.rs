//! Ingestion (`/data` and `/asyncdata`): structural validation of `Data[]`, the per-SHP field
//! whitelist, value checks (GUIDs, dates, option codes), and application to the store with
//! all-or-nothing or partial batch semantics. Re-sending the same `/data` records changes
//! nothing; a repeated SHP-2731 create makes a second referral, updates the stored one or
//! is ignored, by the `async_repeat` switch.

use serde_json::{Map, Value};

use crate::model::{is_date, is_guid, InteropReferral};
use crate::options::{AsyncRepeat, BatchMode, InvalidOptionCode, Options};
use crate::store::{ItemResult, Store};

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

/// A structurally valid ingestion record.
struct RecordIn {
    external_id: String,
    external_guid: Option<String>,
    comments: Vec<String>,
    fields: Vec<(String, Option<String>)>,
}

impl RecordIn {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Checks the top-level `Data` member: a non-empty array.
pub(crate) fn check_data_array(data: Option<Value>) -> Result<Vec<Value>, String> {
    match data {
        Some(Value::Array(a)) if !a.is_empty() => Ok(a),
        Some(Value::Array(_)) => Err("Data must contain at least one record".into()),
        Some(_) => Err("Data must be an array of records".into()),
        None => Err("Data is required".into()),
    }
}

fn parse_record(i: usize, v: &Value) -> Result<RecordIn, (Value, String)> {
    let obj = v
        .as_object()
        .ok_or((Value::Null, format!("record {i}: must be an object")))?;
    let external_id = match obj.get("ExternalId") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => {
            return Err((
                Value::Null,
                format!("record {i}: ExternalId is required and must be a non-empty string"),
            ))
        }
    };
    let ext = Value::String(external_id.clone());
    let fail = |msg: String| Err((ext.clone(), msg));
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "ExternalId" | "ExternalGUID" | "Attachments" | "Fields"
        ) {
            return fail(format!("member '{k}' is not allowed in a record"));
        }
    }
    let external_guid = match obj.get("ExternalGUID") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return fail("ExternalGUID must be a string".into()),
    };
    let mut comments = Vec::new();
    match obj.get("Attachments") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for att in a {
                match att.as_object().and_then(|o| o.get("Comment")) {
                    Some(Value::String(c)) => comments.push(c.clone()),
                    _ => return fail("Attachments[].Comment must be a string".into()),
                }
            }
        }
        Some(_) => return fail("Attachments must be an array".into()),
    }
    let mut fields: Vec<(String, Option<String>)> = Vec::new();
    match obj.get("Fields") {
        Some(Value::Array(a)) => {
            for f in a {
                let Some(fo) = f.as_object() else {
                    return fail("Fields[] must be objects with Name and Value".into());
                };
                let name = match fo.get("Name") {
                    Some(Value::String(n)) if !n.is_empty() => n.clone(),
                    _ => return fail("Fields[].Name must be a non-empty string".into()),
                };
                let value = match fo.get("Value") {
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(Value::Null) | None => None,
                    Some(_) => {
                        return fail(format!("field '{name}': Value must be a string or null"))
                    }
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

/// A validated change, ready to apply.
enum Op {
    Transfer {
        idx: usize,
        set: Vec<(String, Option<Value>)>,
        comments: Vec<String>,
    },
    Synced {
        idx: usize,
        set: Vec<(String, Option<Value>)>,
        comments: Vec<String>,
    },
    Create {
        fields: Map<String, Value>,
        external_id: String,
        external_guid: Option<String>,
        comments: Vec<String>,
    },
}

/// Checks a record against the SHP's whitelist and value rules; returns typed values.
fn check_fields(
    kind: IngestKind,
    rec: &RecordIn,
    opts: &Options,
    shp: &str,
) -> Result<Vec<(String, Option<Value>)>, String> {
    let allowed = kind.allowed();
    let mut out = Vec::new();
    for (name, value) in &rec.fields {
        if !allowed.contains(&name.as_str()) {
            return Err(format!("field '{name}' is not allowed for {shp}"));
        }
        let typed = match (value, field_type(name, opts)) {
            (None, _) => None,
            (Some(v), FieldType::Guid) => {
                if !is_guid(v) {
                    return Err(format!("field '{name}' must be a GUID"));
                }
                Some(Value::String(v.clone()))
            }
            (Some(v), FieldType::Date) => {
                if !is_date(v) {
                    return Err(format!("field '{name}' must be a date YYYY-MM-DD"));
                }
                Some(Value::String(v.clone()))
            }
            (Some(v), FieldType::Code(lo, hi)) => match v.trim().parse::<i64>() {
                Ok(c) if (lo..=hi).contains(&c) => Some(Value::from(c)),
                _ => match opts.invalid_option_code {
                    InvalidOptionCode::Reject => {
                        return Err(format!(
                            "field '{name}' is not a valid option code (allowed {lo}..{hi})"
                        ))
                    }
                    InvalidOptionCode::StoreRaw => Some(Value::String(v.clone())),
                },
            },
            (Some(v), FieldType::Text) => Some(Value::String(v.clone())),
        };
        out.push((name.clone(), typed));
    }
    for req in kind.required() {
        if rec.get(req).is_none() {
            return Err(format!("field '{req}' is required for {shp}"));
        }
    }
    Ok(out)
}

fn plan(
    kind: IngestKind,
    rec: RecordIn,
    store: &Store,
    opts: &Options,
    shp: &str,
) -> Result<Op, String> {
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
            let mut fields = Map::new();
            for (k, v) in set {
                fields.insert(k, v.unwrap_or(Value::Null));
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

fn add_comments(list: &mut Vec<String>, comments: Vec<String>) {
    for c in comments {
        if !list.contains(&c) {
            list.push(c);
        }
    }
}

fn id_data(key: &str, value: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(key.into(), Value::String(value.into()));
    m
}

/// Applies one op; returns the item data (identifiers of the written record). `async_repeat`
/// says what a create whose `progres_orgreferralid` is already stored does, and
/// `new_referral_status` which status a created referral gets.
fn apply(op: Op, store: &mut Store, txid: &str, opts: &Options) -> Map<String, Value> {
    let repeat = opts.async_repeat;
    match op {
        Op::Transfer { idx, set, comments } => {
            let iv = &mut store.interventions[idx];
            for (k, v) in set {
                match k.as_str() {
                    "progres_primerotransferstatus" => iv.progres_primerotransferstatus = v,
                    "progres_primerotransferstatusdate" => {
                        iv.progres_primerotransferstatusdate = v.and_then(as_string)
                    }
                    "progres_primeroid" => iv.progres_primeroid = v.and_then(as_string),
                    "progres_primerocaseworker" => {
                        iv.progres_primerocaseworker = v.and_then(as_string)
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
                match k.as_str() {
                    "progres_interoperabilityreferralstatus" => {
                        if let Some(v) = v {
                            r.progres_interoperabilityreferralstatus = v;
                        }
                    }
                    "progres_comments" => r.progres_comments = v.and_then(as_string),
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
            let org = fields
                .get("progres_orgreferralid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let existing = match repeat {
                AsyncRepeat::Update | AsyncRepeat::Ignore => store.referral_by_orgreferralid(&org),
                AsyncRepeat::Duplicate => None,
            };
            let id = match existing {
                Some(i) if repeat == AsyncRepeat::Ignore => store.referrals[i]
                    .progres_interoperabilityreferralid
                    .clone(),
                Some(i) => {
                    store.merge_referral_fields(i, fields);
                    let r = &mut store.referrals[i];
                    r.external_id = Some(external_id);
                    r.external_guid = external_guid;
                    add_comments(&mut r.attachment_comments, comments);
                    r.progres_interoperabilityreferralid.clone()
                }
                None => {
                    let id = crate::new_guid();
                    let mut r = InteropReferral {
                        progres_interoperabilityreferralid: id.clone(),
                        progres_interoperabilityreferralstatus: Value::from(
                            opts.new_referral_status,
                        ),
                        progres_reviewdecision: None,
                        progres_interoperabiltyreferralrejectionreasonname: None,
                        progres_interoperabilityreferralrejectionomment: None,
                        progres_comments: None,
                        attachment_comments: Vec::new(),
                        external_id: Some(external_id),
                        external_guid,
                        sph_transaction_id: Some(txid.to_string()),
                        fields,
                    };
                    add_comments(&mut r.attachment_comments, comments);
                    store.upsert_referral(r);
                    id
                }
            };
            let mut data = id_data("progres_interoperabilityreferralid", &id);
            let r = &store.referrals[store.referral_index(&id).unwrap_or_default()];
            for k in [
                "progres_externalid",
                "progres_offlineid",
                "progres_orgreferralid",
            ] {
                if let Some(v) = r.fields.get(k).filter(|v| !v.is_null()) {
                    data.insert(k.into(), v.clone());
                }
            }
            data
        }
    }
}

fn as_string(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Identifiers a failed record's item carries (whatever could be read from it).
fn failed_item_data(kind: IngestKind, raw: &Value) -> Map<String, Value> {
    let keys: &[&str] = match kind {
        IngestKind::TransferStatus => &["progres_lpinterventionid"],
        IngestKind::ReferralSynced => &["progres_interoperabilityreferralid"],
        IngestKind::IncomingReferral => &[
            "progres_externalid",
            "progres_offlineid",
            "progres_orgreferralid",
        ],
    };
    let mut m = Map::new();
    if let Some(fields) = raw.get("Fields").and_then(Value::as_array) {
        for f in fields {
            if let (Some(n), Some(Value::String(v))) =
                (f.get("Name").and_then(Value::as_str), f.get("Value"))
            {
                if keys.contains(&n) && !m.contains_key(n) {
                    m.insert(n.into(), Value::String(v.clone()));
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

/// Validates and applies a batch under the configured batch mode.
pub(crate) fn process_batch(
    store: &mut Store,
    opts: &Options,
    kind: IngestKind,
    shp: &str,
    records: &[Value],
    txid: &str,
) -> BatchOutcome {
    let mut planned: Vec<Result<Op, (Value, String)>> = Vec::with_capacity(records.len());
    for (i, raw) in records.iter().enumerate() {
        let r = parse_record(i, raw).and_then(|rec| {
            let ext = Value::String(rec.external_id.clone());
            plan(kind, rec, store, opts, shp).map_err(|e| (ext, e))
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
    for (raw, p) in records.iter().zip(planned) {
        let ext = raw
            .get("ExternalId")
            .cloned()
            .filter(Value::is_string)
            .unwrap_or(Value::Null);
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
