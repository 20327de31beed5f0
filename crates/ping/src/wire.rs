//! PING wire JSON: the request envelopes of the four endpoints and lenient readers of their
//! responses (keys matched case-insensitively, `Data: "No Data Available"` read as empty).

use serde_json::{json, Value};

use crate::error::PingError;
use crate::mask::mask_message;
use crate::row::Row;

/// Retrieval route (template as reported to metrics).
pub const ROUTE_RETRIEVE: &str = "/primes/fetch/paging/v3/retrievedatawithpaging";
/// Synchronous ingestion route template.
pub const ROUTE_DATA: &str = "/api/ingestion/v2/{partner_id}/data";
/// Asynchronous ingestion route template.
pub const ROUTE_ASYNCDATA: &str = "/api/ingestion/v2/{partner_id}/asyncdata";
/// Check-status route.
pub const ROUTE_CHECKSTATUS: &str = "/primes/ingestion/checkstatus/v1/pingdata";
/// Route label of the B2C token call.
pub const ROUTE_TOKEN: &str = "/oauth2/v2.0/token";

/// The string PING puts in `Data` for an empty result.
pub const NO_DATA: &str = "No Data Available";

/// `obj[key]` with the key compared case-insensitively (exact match first).
pub fn get_ci<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    if let Some(v) = map.get(key) {
        return Some(v);
    }
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

/// Removes `obj[key]` (key compared as [`get_ci`] does) and returns it.
fn take_ci(obj: &mut Value, key: &str) -> Option<Value> {
    let map = obj.as_object_mut()?;
    if let Some(v) = map.remove(key) {
        return Some(v);
    }
    let found = map.keys().find(|k| k.eq_ignore_ascii_case(key))?.clone();
    map.remove(&found)
}

/// A non-null string-ish value as text (strings as they are, numbers printed).
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `SPHTransactionId` of a response, when present and non-empty.
pub fn transaction_id(body: &Value) -> Option<String> {
    get_ci(body, "SPHTransactionId")
        .filter(|v| !v.is_null())
        .map(text_of)
        .filter(|s| !s.is_empty())
}

/// A non-null, non-empty `ErrorMessage`, masked of values.
pub fn error_message(body: &Value) -> Option<String> {
    masked_text(get_ci(body, "ErrorMessage")?)
}

/// The message of an error response: `ErrorMessage`, else APIM's `message`, else OAuth's
/// `error`; masked of values.
pub fn any_message(body: &Value) -> Option<String> {
    error_message(body)
        .or_else(|| masked_text(get_ci(body, "message")?))
        .or_else(|| masked_text(get_ci(body, "error")?))
}

fn masked_text(raw: &Value) -> Option<String> {
    if raw.is_null() {
        return None;
    }
    let text = match raw {
        Value::String(s) => s.trim().to_string(),
        other => other.to_string(),
    };
    (!text.is_empty()).then(|| mask_message(&text))
}

/// The `{record_ids}` query value: nothing for no ids, the id itself for one, the unquoted
/// bracketed list `[g1,g2]` for several.
pub fn record_ids_param(record_ids: &[String]) -> Result<Value, PingError> {
    for id in record_ids {
        let bad = id.trim().is_empty()
            || id
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, ',' | '[' | ']' | '"' | '\''));
        if bad {
            return Err(PingError::InvalidRequest {
                detail: "a record id is empty or contains a list delimiter".into(),
            });
        }
    }
    Ok(match record_ids {
        [] => json!([]),
        [one] => json!([{ "ParameterName": "{record_ids}", "Value": one }]),
        many => {
            json!([{ "ParameterName": "{record_ids}", "Value": format!("[{}]", many.join(",")) }])
        }
    })
}

/// Paging position for the next page request.
#[derive(Clone, Debug, PartialEq)]
pub struct NextPage {
    pub cookie: Value,
    pub page_number: i64,
}

/// Retrieval request body; `page` is `None` for the first page.
pub fn retrieve_body(
    shp: &str,
    partner_id: &str,
    interop_id: &str,
    params: &Value,
    page: Option<&NextPage>,
) -> Value {
    let mut body = json!({
        "ShippingProcessId": shp,
        "PartnerId": partner_id,
        "InteropID": interop_id,
        "APIVersion": "V3",
        "QueryParameters": params,
    });
    if let Some(p) = page {
        body["PagingCookie"] = p.cookie.clone();
        body["PageNumber"] = json!(p.page_number);
    }
    body
}

/// One parsed retrieval page.
#[derive(Debug)]
pub struct Page {
    pub rows: Vec<Row>,
    pub transaction_id: Option<String>,
    /// Where to continue, when PING says more records are available.
    pub next: Option<NextPage>,
    /// The page number PING reported (if any).
    pub page_number: Option<i64>,
}

/// Reads a retrieval response (2xx). `requested_page` is the page number we asked for (1 for
/// the first request), used when PING omits `PageNumber`. The body is taken by value: the
/// rows are moved out of it, not copied, so a page is held once (R10).
pub fn parse_page(mut body: Value, requested_page: i64) -> Result<Page, PingError> {
    if !body.is_object() {
        return Err(PingError::Unexpected {
            detail: "retrieval response is not a JSON object".into(),
        });
    }
    let transaction_id = transaction_id(&body);
    if let Some(message) = error_message(&body) {
        return Err(PingError::Permanent {
            status: 200,
            message,
        });
    }
    let rows = match take_ci(&mut body, "Data") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if s.trim().eq_ignore_ascii_case(NO_DATA) || s.trim().is_empty() => {
            Vec::new()
        }
        Some(Value::Array(items)) => {
            let mut rows = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::Object(m) => rows.push(Row::new(m)),
                    _ => {
                        return Err(PingError::Unexpected {
                            detail: "a retrieval Data item is not an object".into(),
                        })
                    }
                }
            }
            rows
        }
        Some(Value::Object(m)) => vec![Row::new(m)],
        Some(_) => {
            return Err(PingError::Unexpected {
                detail: "retrieval Data is neither a list nor \"No Data Available\"".into(),
            })
        }
    };
    let summary = get_ci(&body, "PagingSummary").filter(|v| v.is_object());
    let page_number = summary
        .and_then(|s| get_ci(s, "PageNumber"))
        .and_then(|v| v.as_i64().or_else(|| v.as_str()?.trim().parse().ok()));
    let more = summary
        .and_then(|s| get_ci(s, "IsMoreRecordsAvailable"))
        .is_some_and(|v| v.as_bool().unwrap_or_else(|| v.as_str() == Some("true")));
    let next = if more {
        let cookie = summary
            .and_then(|s| get_ci(s, "PagingCookie"))
            .cloned()
            .unwrap_or(Value::Null);
        let current = page_number.filter(|n| *n >= 1).unwrap_or(requested_page);
        Some(NextPage {
            cookie,
            page_number: current + 1,
        })
    } else {
        None
    };
    Ok(Page {
        rows,
        transaction_id,
        next,
        page_number,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids() {
        assert_eq!(record_ids_param(&[]).unwrap(), json!([]));
        assert_eq!(
            record_ids_param(&["g1".into()]).unwrap(),
            json!([{"ParameterName":"{record_ids}","Value":"g1"}])
        );
        assert_eq!(
            record_ids_param(&["g1".into(), "g2".into()]).unwrap(),
            json!([{"ParameterName":"{record_ids}","Value":"[g1,g2]"}])
        );
        assert!(record_ids_param(&["a,b".into()]).is_err());
        assert!(record_ids_param(&[" ".into()]).is_err());
    }

    #[test]
    fn pages() {
        let p = parse_page(
            json!({"Data":"No Data Available","RecordCount":null,"SPHTransactionId":"t"}),
            1,
        )
        .unwrap();
        assert!(p.rows.is_empty() && p.next.is_none());
        assert_eq!(p.transaction_id.as_deref(), Some("t"));

        let p = parse_page(
            json!({"Data":[{"a":1}],"PagingSummary":{"PagingCookie":"c1","PageNumber":1,"IsMoreRecordsAvailable":true}}),
            1,
        )
        .unwrap();
        assert_eq!(
            p.next,
            Some(NextPage {
                cookie: json!("c1"),
                page_number: 2
            })
        );

        let e = parse_page(
            json!({"Data":null,"ErrorMessage":"Unknown ShippingProcessId SHP-1"}),
            1,
        )
        .unwrap_err();
        assert!(matches!(e, PingError::Permanent { status: 200, .. }));
        assert!(parse_page(json!({"Data": 5}), 1).is_err());
        assert!(parse_page(json!({"Data": [1]}), 1).is_err());

        // Keys in another case, as some PING deployments send them.
        let p = parse_page(
            json!({"data": [{"a": 1}, {"a": 2}], "sphtransactionid": "t2"}),
            1,
        )
        .unwrap();
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.rows[1].get_i64("a"), Some(2));
        assert_eq!(p.transaction_id.as_deref(), Some("t2"));
        assert!(p.next.is_none());
    }
}
