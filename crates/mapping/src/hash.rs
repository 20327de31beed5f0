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
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    write_canonical(payload, &mut mac);
    hex::encode(mac.finalize().into_bytes())
}

fn write_canonical(v: &Value, mac: &mut Hmac<Sha256>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            mac.update(b"{");
            for k in keys {
                mac.update(serde_json::to_string(k).unwrap_or_default().as_bytes());
                mac.update(b":");
                write_canonical(&map[k], mac);
                mac.update(b",");
            }
            mac.update(b"}");
        }
        Value::Array(items) => {
            mac.update(b"[");
            for item in items {
                write_canonical(item, mac);
                mac.update(b",");
            }
            mac.update(b"]");
        }
        other => mac.update(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
