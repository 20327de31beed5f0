//! Check-status answers (`/primes/ingestion/checkstatus/v1/pingdata`) and the repair of the
//! malformed `Data` string (ping-api.md §2.4).
//!
//! PING may send `Data` as a *string* holding a JSON array whose items carry their own
//! `Data` object serialized with unescaped quotes:
//! `[{"ExternalId":"abc","Data":"{"progres_offlineid":"abc"}","RecordStatus":"Success"}]`.
//! The reference repairs it with a regex that stops at the first `}",`, which breaks when a
//! value inside the inner object contains that sequence. Here each inner object is read with
//! a real JSON parser starting at its `{`, so braces, commas and escaped quotes inside values
//! are handled, and the inner object may be an item's last key too. The regex's rule is kept
//! only as a fallback for inner text that is not JSON by itself.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::error::PingError;
use crate::mask::{is_identifier, mask_message};
use crate::wire::{get_ci, text_of, NO_DATA};

/// The state of an asynchronous ingestion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckStatus {
    /// PING has not processed the transaction yet (`Status: "Pending"` or `Data: []`).
    Pending,
    /// PING does not know the transaction (`Data` null or absent).
    Unknown,
    /// Processed: one result per item that states its outcome. The keys of an item besides
    /// its inner `Data` are UNKNOWN (ping-api.md §2.4): an item without a status word
    /// (`RecordStatus`, or `Status`) and without an error message (`ErrorMessage`) says
    /// nothing of its outcome and is left out, so that no record is taken as applied on the
    /// strength of a silence; the caller sees no result for it.
    Processed(Vec<RecordResult>),
}

/// The outcome of one record of a processed transaction.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordResult {
    /// The `ExternalId` the record was sent with.
    pub external_id: String,
    pub success: bool,
    /// PING's message, masked of values.
    pub message: Option<String>,
    /// System identifiers from the item's inner `Data` (keys ending in `id`/`guid` and
    /// GUID values), e.g. `progres_interoperabilityreferralid`. Other values are dropped.
    pub data: BTreeMap<String, String>,
}

impl fmt::Debug for RecordResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordResult")
            .field("external_id", &self.external_id)
            .field("success", &self.success)
            .field("message", &self.message)
            .field("data", &self.data)
            .finish()
    }
}

/// Why a `Data` string could not be repaired (no content: it may hold personal values).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("check-status Data string is not repairable JSON (at byte {at})")]
pub struct RepairError {
    /// Byte offset of the JSON error in the repaired text.
    pub at: usize,
}

/// Finds `"Data"` `:` `"` `{` at or after `from`; returns (start of the key, index of `{`).
fn find_embedded(s: &str, from: usize) -> Option<(usize, usize)> {
    let bytes = s.as_bytes();
    let mut i = from;
    while let Some(rel) = s[i..].find('"') {
        let key_start = i + rel;
        let after_key = key_start + 6;
        // Bytes, not a `str` slice: `key_start + 6` need not be a char boundary when the
        // string holds non-ASCII text (names in Amharic, accents...).
        if bytes.len() >= after_key && bytes[key_start..after_key].eq_ignore_ascii_case(b"\"Data\"")
        {
            let mut j = after_key;
            while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b':' {
                j += 1;
                while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                    j += 1;
                }
                if j < bytes.len() && bytes[j] == b'"' {
                    j += 1;
                    while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if j < bytes.len() && bytes[j] == b'{' {
                        return Some((key_start, j));
                    }
                }
            }
        }
        i = key_start + 1;
    }
    None
}

/// Reads one JSON object at `s[brace..]`; returns it and the index just past it.
fn read_object(s: &str, brace: usize) -> Option<(Value, usize)> {
    let mut it = serde_json::Deserializer::from_str(&s[brace..]).into_iter::<Value>();
    match it.next() {
        Some(Ok(v @ Value::Object(_))) => Some((v, brace + it.byte_offset())),
        _ => None,
    }
}

/// The reference rule: the inner object ends at the first `}"` followed by optional
/// whitespace and a `,` (or, more leniently, a `}`). Returns the index of that `}`.
fn reference_end(s: &str, brace: usize) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = brace;
    let mut lenient = None;
    while let Some(rel) = s[i..].find("}\"") {
        let close = i + rel;
        let mut j = close + 2;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        match bytes.get(j) {
            Some(b',') => return Some(close),
            Some(b'}') if lenient.is_none() => lenient = Some(close),
            _ => {}
        }
        i = close + 1;
    }
    lenient
}

/// Repairs a check-status `Data` string into JSON (see the module doc). Valid JSON is
/// returned as it is. Each embedded inner object becomes a nested object; inner text that is
/// not JSON on its own becomes a string (as the reference leaves it).
pub fn repair_data_string(s: &str) -> Result<Value, RepairError> {
    if let Ok(v) = serde_json::from_str::<Value>(s) {
        return Ok(v);
    }
    let mut out = String::with_capacity(s.len() + 16);
    let mut pos = 0;
    while let Some((key_start, brace)) = find_embedded(s, pos) {
        let bytes = s.as_bytes();
        let parsed = read_object(s, brace).and_then(|(inner, end)| {
            let mut q = end;
            while q < bytes.len() && bytes[q].is_ascii_whitespace() {
                q += 1;
            }
            (bytes.get(q) == Some(&b'"')).then(|| (inner.to_string(), q + 1))
        });
        let replacement = parsed.or_else(|| {
            reference_end(s, brace).map(|close| {
                let inner = &s[brace..=close];
                (Value::String(inner.to_string()).to_string(), close + 2)
            })
        });
        let Some((value, next)) = replacement else {
            // Nothing closes it: leave the rest untouched; the final parse reports where.
            break;
        };
        out.push_str(&s[pos..key_start]);
        out.push_str("\"Data\":");
        out.push_str(&value);
        pos = next;
    }
    out.push_str(&s[pos..]);
    serde_json::from_str(&out).map_err(|e| RepairError {
        at: byte_offset(&out, e.line(), e.column()),
    })
}

fn byte_offset(s: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (n, l) in s.split_inclusive('\n').enumerate() {
        if n + 1 == line {
            return offset + column.saturating_sub(1);
        }
        offset += l.len();
    }
    offset
}

fn is_pending(status: Option<&str>) -> bool {
    status.is_some_and(|s| {
        let s = s.trim();
        s.eq_ignore_ascii_case("pending")
            || s.eq_ignore_ascii_case("inprogress")
            || s.eq_ignore_ascii_case("in progress")
            || s.eq_ignore_ascii_case("queued")
    })
}

fn is_processed(status: Option<&str>) -> bool {
    status.is_some_and(|s| {
        let s = s.trim();
        s.eq_ignore_ascii_case("processed") || s.eq_ignore_ascii_case("completed")
    })
}

/// The inner `Data` keys kept: system identifiers of the record, never a person's number
/// (`progres_unhcrid`, `progres_pocotheridnumber` identify a person and are dropped).
const SYSTEM_ID_KEYS: [&str; 6] = [
    "progres_interoperabilityreferralid",
    "progres_orgreferralid",
    "progres_externalid",
    "progres_externalguid",
    "progres_offlineid",
    "progres_lpinterventionid",
];

/// Keeps system identifiers of an inner `Data` object.
fn system_ids(inner: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(map) = inner.as_object() else {
        return out;
    };
    for (k, v) in map {
        if !SYSTEM_ID_KEYS.iter().any(|s| s.eq_ignore_ascii_case(k)) {
            continue;
        }
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => continue,
        };
        let key = k.to_ascii_lowercase();
        let id_key = key.ends_with("id") || key.ends_with("guid");
        let guid_value = crate::mask::is_guid(&text);
        if (id_key && is_identifier_like_id(&text)) || guid_value {
            out.insert(k.clone(), text);
        }
    }
    out
}

/// Identifier values kept under `…id` keys: no spaces, no `@`, at most 64 characters.
fn is_identifier_like_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && !v.contains('@')
        && !v.chars().any(char::is_whitespace)
        && (is_identifier(v)
            || v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_#".contains(c)))
}

/// One item of a processed transaction; `None` when it states no outcome (see
/// [`CheckStatus::Processed`]).
fn parse_item(item: &Value) -> Result<Option<RecordResult>, PingError> {
    if !item.is_object() {
        return Err(PingError::Unexpected {
            detail: "a check-status item is not an object".into(),
        });
    }
    let external_id = get_ci(item, "ExternalId").map(text_of).unwrap_or_default();
    let message = get_ci(item, "ErrorMessage").and_then(|v| match v {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(mask_message(s)),
        other => Some(mask_message(&other.to_string())),
    });
    let status = get_ci(item, "RecordStatus")
        .or_else(|| get_ci(item, "Status"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty());
    // An outcome is a status word, or else an error message (a failure). Neither (keys
    // absent, null, blank or not text) says nothing: no result, never a success by default.
    let success = match (status, &message) {
        (Some(s), _) => ["success", "succeeded", "successful", "processed"]
            .iter()
            .any(|w| s.eq_ignore_ascii_case(w)),
        (None, Some(_)) => false,
        (None, None) => return Ok(None),
    };
    let data = match get_ci(item, "Data") {
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v) => system_ids(&v),
            Err(_) => {
                tracing::warn!(
                    external_id = external_id.as_str(),
                    "check-status item Data is not JSON; ignored"
                );
                BTreeMap::new()
            }
        },
        Some(v) => system_ids(v),
        None => BTreeMap::new(),
    };
    Ok(Some(RecordResult {
        external_id,
        success,
        message,
        data,
    }))
}

/// Reads a check-status response body (HTTP 2xx).
pub fn parse_check_status(body: &Value) -> Result<CheckStatus, PingError> {
    if !body.is_object() {
        return Err(PingError::Unexpected {
            detail: "check-status response is not a JSON object".into(),
        });
    }
    let status = get_ci(body, "Status").and_then(Value::as_str);
    if is_pending(status) {
        return Ok(CheckStatus::Pending);
    }
    let repaired;
    let data = match get_ci(body, "Data") {
        None | Some(Value::Null) => return Ok(CheckStatus::Unknown),
        Some(Value::String(s)) => {
            let t = s.trim();
            if t.is_empty() || t.eq_ignore_ascii_case(NO_DATA) {
                return Ok(CheckStatus::Unknown);
            }
            repaired = repair_data_string(t).map_err(|e| PingError::Unexpected {
                detail: e.to_string(),
            })?;
            &repaired
        }
        Some(v) => v,
    };
    let items: Vec<&Value> = match data {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![data],
        _ => {
            return Err(PingError::Unexpected {
                detail: "check-status Data is neither a list nor an object".into(),
            })
        }
    };
    if items.is_empty() && !is_processed(status) {
        return Ok(CheckStatus::Pending);
    }
    let total = items.len();
    let results: Vec<RecordResult> = items
        .into_iter()
        .map(parse_item)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    if results.len() < total {
        tracing::warn!(
            unstated = total - results.len(),
            "check-status items without a status or an error message were not read as results"
        );
    }
    Ok(CheckStatus::Processed(results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repairs_the_spec_example() {
        let s = r#"[{"<k>":"<v>","Data":"{"progres_externalid":"abc","progres_offlineid":"abc"}","<k2>":null}]"#;
        let v = repair_data_string(s).unwrap();
        assert_eq!(
            v,
            json!([{"<k>":"<v>","Data":{"progres_externalid":"abc","progres_offlineid":"abc"},"<k2>":null}])
        );
    }

    #[test]
    fn repairs_strings_with_non_ascii_text() {
        // Multi-byte characters right before a quote used to put `key_start + 6` inside a
        // character and panic on a str slice.
        let s = r#"[{"Msg":"Andréa ት","Data":"{"progres_offlineid":"c1","note":"ሰላም é"}","RecordStatus":"Success"}]"#;
        let v = repair_data_string(s).unwrap();
        assert_eq!(v[0]["Data"]["progres_offlineid"], json!("c1"));
        assert_eq!(v[0]["Msg"], json!("Andréa ት"));
    }

    #[test]
    fn only_record_system_ids_are_kept_from_inner_data() {
        let ids = system_ids(&json!({
            "progres_interoperabilityreferralid": "0f8c5a4e-1111-4a5e-9a7c-3a2b1c0d9e8f",
            "progres_offlineid": "c1",
            "progres_unhcrid": "945-00012345",
            "progres_pocotheridnumber": "945-C00123",
            "progres_pocfirstname": "Nyakuoth"
        }));
        assert_eq!(
            ids.keys().cloned().collect::<Vec<_>>(),
            vec!["progres_interoperabilityreferralid", "progres_offlineid"]
        );
    }

    #[test]
    fn repairs_nested_quotes_braces_and_last_key() {
        // Inner values hold escaped quotes, a `}",` sequence and braces; the second item's
        // Data is its last key (the reference regex needs a trailing comma).
        let s = r#"[{"ExternalId":"c1","Data":"{"progres_comments":"he said \"hi\" }\", ok {x}","progres_offlineid":"c1"}","RecordStatus":"Success","ErrorMessage":null},
                    {"ExternalId":"c2","RecordStatus":"Failed","Data" : "{"progres_offlineid":"c2"}"}]"#;
        let v = repair_data_string(s).unwrap();
        assert_eq!(
            v[0]["Data"]["progres_comments"],
            json!("he said \"hi\" }\", ok {x}")
        );
        assert_eq!(v[0]["Data"]["progres_offlineid"], json!("c1"));
        assert_eq!(v[0]["RecordStatus"], json!("Success"));
        assert_eq!(v[1]["Data"]["progres_offlineid"], json!("c2"));
    }

    #[test]
    fn falls_back_to_the_reference_rule() {
        // The inner text is not JSON on its own (a bare word); the reference rule keeps it
        // as a string and the rest of the array still parses.
        let s =
            r#"[{"ExternalId":"c1","Data":"{progres_offlineid: c1}","RecordStatus":"Success"}]"#;
        let v = repair_data_string(s).unwrap();
        assert_eq!(v[0]["Data"], json!("{progres_offlineid: c1}"));
        assert_eq!(v[0]["ExternalId"], json!("c1"));
    }

    #[test]
    fn valid_json_is_untouched_and_garbage_is_an_error() {
        assert_eq!(repair_data_string("[]").unwrap(), json!([]));
        assert!(repair_data_string(r#"[{"ExternalId":"c1","#).is_err());
    }

    #[test]
    fn statuses() {
        assert_eq!(
            parse_check_status(&json!({"SPHTransactionId":"t","Status":"Pending","Data":[]}))
                .unwrap(),
            CheckStatus::Pending
        );
        assert_eq!(
            parse_check_status(&json!({"SPHTransactionId":"t","Status":null,"Data":[]})).unwrap(),
            CheckStatus::Pending
        );
        assert_eq!(
            parse_check_status(&json!({"SPHTransactionId":"t","Status":null,"Data":null})).unwrap(),
            CheckStatus::Unknown
        );
        let body = json!({"SPHTransactionId":"t","Status":"Processed","ErrorMessage":null,
            "Data": r#"[{"ExternalId":"c1","Data":"{"progres_interoperabilityreferralid":"2785b477-767d-4814-949a-be8e0990bcc8","progres_pocfirstname":"Lindah"}","RecordStatus":"Success","ErrorMessage":null},{"ExternalId":"c2","Data":"{}","RecordStatus":"Failed","ErrorMessage":"Invalid value 'Unknown' for progres_pocsex"}]"#});
        let CheckStatus::Processed(r) = parse_check_status(&body).unwrap() else {
            panic!("not processed")
        };
        assert_eq!(r.len(), 2);
        assert!(r[0].success);
        assert_eq!(
            r[0].data
                .get("progres_interoperabilityreferralid")
                .map(String::as_str),
            Some("2785b477-767d-4814-949a-be8e0990bcc8")
        );
        assert!(!r[0].data.contains_key("progres_pocfirstname"));
        assert!(!r[1].success);
        let m = r[1].message.as_deref().unwrap();
        assert!(m.contains("progres_pocsex") && !m.contains("Unknown"));
    }

    #[test]
    fn an_item_that_states_no_outcome_is_no_result() {
        let body = json!({"SPHTransactionId":"t","Status":"Processed","ErrorMessage":null,
        "Data": [
            // The spec's example: Data between two keys nobody knows.
            {"Key1": null, "Data": {"progres_orgreferralid": "s1"}, "Key2": null},
            // Keys present but empty, or not text, say nothing either.
            {"ExternalId": "c2", "Data": {"progres_orgreferralid": "s2"}, "ErrorMessage": null},
            {"ExternalId": "c5", "Data": {}, "RecordStatus": null},
            {"ExternalId": "c6", "Data": {}, "RecordStatus": 1, "ErrorMessage": " "},
            {"ExternalId": "c7", "Data": {}, "RecordStatus": "", "ErrorMessage": null},
            {"ExternalId": "c3", "Data": {}, "ErrorMessage": "Invalid value for progres_pocsex"},
            {"ExternalId": "c4", "Data": {}, "Status": "Failed"},
            {"ExternalId": "c8", "Data": {}, "RecordStatus": "Success", "ErrorMessage": null}
        ]});
        let CheckStatus::Processed(r) = parse_check_status(&body).unwrap() else {
            panic!("not processed")
        };
        let read: Vec<(&str, bool)> = r
            .iter()
            .map(|x| (x.external_id.as_str(), x.success))
            .collect();
        assert_eq!(read, [("c3", false), ("c4", false), ("c8", true)]);
        // The same through the legacy malformed string.
        let body = json!({"SPHTransactionId":"t","Status":"Processed","ErrorMessage":null,
            "Data": r#"[{"Key1":null,"Data":"{"progres_orgreferralid":"s1"}","Key2":null}]"#});
        assert_eq!(
            parse_check_status(&body).unwrap(),
            CheckStatus::Processed(Vec::new())
        );
    }
}
