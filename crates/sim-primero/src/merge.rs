//! PATCH merge of record data, a port of Primero's `RecordMergeDataHashService`: hashes merge
//! recursively, arrays of hashes merge by `unique_id` (append unmatched, drop `_destroy`),
//! everything else is replaced.

use serde_json::{Map, Value};

/// Merges `new` into `old` and returns the result.
pub fn merge_data(old: &Value, new: &Value) -> Value {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => Value::Object(merge_hashes(o, n)),
        (o, n) if array_of_hashes(o) && array_of_hashes(n) => {
            let merged = merge_array_of_hashes(o.as_array().unwrap(), n.as_array().unwrap());
            Value::Array(merged.into_iter().filter(|r| !destroyed(r)).collect())
        }
        _ => new.clone(),
    }
}

/// Merges a PATCH's top-level `data` into the stored record data.
pub fn merge_hashes(old: &Map<String, Value>, new: &Map<String, Value>) -> Map<String, Value> {
    let mut out = old.clone();
    for (k, nv) in new {
        let merged = match old.get(k) {
            Some(ov) => merge_data(ov, nv),
            None => nv.clone(),
        };
        out.insert(k.clone(), merged);
    }
    out
}

fn destroyed(r: &Value) -> bool {
    match r.get("_destroy") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(_) => true,
    }
}

fn array_of_hashes(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.first().map(|f| f.is_object()).unwrap_or(true),
        _ => false,
    }
}

fn uid(v: &Value) -> Option<&Value> {
    v.get("unique_id").filter(|u| !u.is_null())
}

fn merge_array_of_hashes(old: &[Value], new: &[Value]) -> Vec<Value> {
    let mut merged: Vec<Value> = Vec::with_capacity(old.len() + new.len());
    for o in old {
        let Some(ou) = uid(o) else {
            merged.push(o.clone());
            continue;
        };
        match new.iter().find(|n| uid(n) == Some(ou)) {
            Some(n) => merged.push(merge_data(o, n)),
            None => merged.push(o.clone()),
        }
    }
    let append: Vec<Value> = new
        .iter()
        .filter(|n| !merged.iter().any(|m| uid(m) == uid(n)))
        .cloned()
        .collect();
    merged.extend(append);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_merge_by_unique_id_and_destroy_removes() {
        let old = json!([{"unique_id": "a", "x": 1}, {"unique_id": "b", "x": 2}]);
        let new =
            json!([{"unique_id": "b", "y": 3}, {"x": 9}, {"unique_id": "a", "_destroy": true}]);
        assert_eq!(
            merge_data(&old, &new),
            json!([{"unique_id": "b", "x": 2, "y": 3}, {"x": 9}])
        );
    }

    #[test]
    fn empty_array_is_no_op_for_rows_but_clears_strings() {
        let rows = json!([{"unique_id": "a"}]);
        assert_eq!(merge_data(&rows, &json!([])), rows);
        assert_eq!(merge_data(&json!(["language1"]), &json!([])), json!([]));
    }

    #[test]
    fn stored_row_without_id_swallows_new_rows_without_id() {
        let old = json!([{"x": 1}]);
        assert_eq!(merge_data(&old, &json!([{"x": 2}])), json!([{"x": 1}]));
    }
}
