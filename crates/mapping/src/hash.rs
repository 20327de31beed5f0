//! The keyed payload hash kept in the ledger (R11): HMAC-SHA256 over a canonical JSON form of
//! the mapped payload, with a secret of the deployment, so the ledger can notice a changed
//! source without storing the payload and without the hash being matchable against guessed
//! values.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// Hex HMAC-SHA256 of `payload` in canonical form (object keys sorted at every level), so the
/// hash does not depend on the order in which fields were inserted.
pub fn payload_hash(key: &[u8], payload: &Value) -> String {
    // The canonical text is written to one buffer and hashed at once: a string per key and
    // per scalar, each hashed on its own, cost flow 1.2 a few milliseconds per 1,000 records.
    let mut text = Vec::with_capacity(256);
    write_canonical(payload, &mut text);
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(&text);
    hex::encode(mac.finalize().into_bytes())
}

/// `v` as compact JSON with the keys of every object sorted, each member and item followed by
/// a comma (`{"a":1,}`): the form the ledger's stored hashes were made of.
fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (k, v) in members {
                write_json(k, out);
                out.push(b':');
                write_canonical(v, out);
                out.push(b',');
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for item in items {
                write_canonical(item, out);
                out.push(b',');
            }
            out.push(b']');
        }
        other => write_json(other, out),
    }
}

/// Compact JSON of a string or a scalar (writing to a `Vec` cannot fail, nor can these).
fn write_json<T: serde::Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(out, v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The hashes stored by earlier versions (one `update` per key and scalar, written with
    /// `to_string`) must still match: a changed hash would make every stored refusal look
    /// like a changed source.
    #[test]
    fn the_canonical_text_is_unchanged() {
        fn reference(v: &Value, mac: &mut Hmac<Sha256>) {
            match v {
                Value::Object(map) => {
                    let mut keys: Vec<&String> = map.keys().collect();
                    keys.sort();
                    mac.update(b"{");
                    for k in keys {
                        mac.update(serde_json::to_string(k).unwrap().as_bytes());
                        mac.update(b":");
                        reference(&map[k], mac);
                        mac.update(b",");
                    }
                    mac.update(b"}");
                }
                Value::Array(items) => {
                    mac.update(b"[");
                    for item in items {
                        reference(item, mac);
                        mac.update(b",");
                    }
                    mac.update(b"]");
                }
                other => mac.update(other.to_string().as_bytes()),
            }
        }
        let v = json!({
            "external_id": "803-00000123",
            "attachments": ["Referral rejected by PRIMERO: \"no\" capacity\n\u{e9}"],
            "fields": [["progres_interventionstatus", "125080001"], ["x", null]],
            "n": [1, 2.5, -3, true, false, null, {}, []],
            "z": {"b": {"d": 1, "c": "\u{1}"}, "a": "\u{2028}"}
        });
        let mut mac = Hmac::<Sha256>::new_from_slice(b"deployment key").unwrap();
        reference(&v, &mut mac);
        assert_eq!(
            payload_hash(b"deployment key", &v),
            hex::encode(mac.finalize().into_bytes())
        );
    }

    #[test]
    fn key_order_does_not_matter() {
        let a = json!({"a": 1, "b": {"x": [1, 2], "y": null}});
        let b = json!({"b": {"y": null, "x": [1, 2]}, "a": 1});
        assert_eq!(payload_hash(b"k", &a), payload_hash(b"k", &b));
    }

    #[test]
    fn values_and_keys_change_the_hash() {
        let a = json!({"a": 1, "b": [1, 2]});
        assert_ne!(
            payload_hash(b"k", &a),
            payload_hash(b"k", &json!({"a": 2, "b": [1, 2]}))
        );
        assert_ne!(
            payload_hash(b"k", &a),
            payload_hash(b"k", &json!({"a": 1, "b": [2, 1]}))
        );
        assert_ne!(payload_hash(b"k", &a), payload_hash(b"other", &a));
        assert_eq!(payload_hash(b"k", &a).len(), 64);
    }
}
