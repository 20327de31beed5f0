//! Compact JSON written straight into a byte buffer: the same bytes as `serde_json::to_vec`
//! of the same value, for the large bodies of `GET /cases`. A string is first checked eight
//! bytes at a time for characters to escape and, as stored strings seldom have any, copied
//! whole; every write goes into one `Vec`, without the `io::Write` layer of a serializer.

use serde_json::{Map, Value};

/// What serde_json writes after a backslash for the byte at this index: `0` = the byte is
/// written as is, `u` = `\u00XX`. Same table as serde_json's `ESCAPE`.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0A] = b'n';
    t[0x0C] = b'f';
    t[0x0D] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether one of the eight bytes of `x` is a control character, `"` or `\`. Exact for the
/// existence of such a byte (a borrow can only mark a byte above a real match).
#[inline]
fn needs_escape(x: u64) -> bool {
    let control = x.wrapping_sub(ONES * 0x20) & !x;
    let q = x ^ (ONES * b'"' as u64);
    let quote = q.wrapping_sub(ONES) & !q;
    let s = x ^ (ONES * b'\\' as u64);
    let backslash = s.wrapping_sub(ONES) & !s;
    (control | quote | backslash) & HIGHS != 0
}

/// Whether one of the bytes of `b` is written escaped: words of eight bytes, the last one
/// overlapping the one before (short strings byte by byte).
#[inline]
fn any_escape(b: &[u8]) -> bool {
    if b.len() < 8 {
        return b.iter().any(|&c| ESCAPE[c as usize] != 0);
    }
    let word = |c: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        u64::from_le_bytes(w)
    };
    b.chunks_exact(8).any(|c| needs_escape(word(c))) || needs_escape(word(&b[b.len() - 8..]))
}

/// Writes `s` as a JSON string (quoted, escaped as serde_json escapes it).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    if any_escape(b) {
        write_escaped(out, b);
    } else {
        out.extend_from_slice(b);
    }
    out.push(b'"');
}

/// The contents of a string with bytes to escape, byte by byte as serde_json writes them.
#[cold]
fn write_escaped(out: &mut Vec<u8>, b: &[u8]) {
    // `b[start..]` is not yet written.
    let mut start = 0;
    for (i, &byte) in b.iter().enumerate() {
        let esc = ESCAPE[byte as usize];
        if esc == 0 {
            continue;
        }
        out.extend_from_slice(&b[start..i]);
        start = i + 1;
        if esc == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(byte >> 4) as usize],
                HEX[(byte & 0xF) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', esc]);
        }
    }
    out.extend_from_slice(&b[start..]);
}

/// Writes `v` as compact JSON.
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Numbers are few in records: serde_json's own formatting keeps them exact (writing
        // into a `Vec` does not fail).
        Value::Number(n) => {
            if serde_json::to_writer(&mut *out, n).is_err() {
                out.extend_from_slice(b"null");
            }
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(m) => write_map(out, m),
    }
}

/// Writes `m` as a compact JSON object, keys in the map's order.
pub fn write_map(out: &mut Vec<u8>, m: &Map<String, Value>) {
    out.push(b'{');
    for (n, (k, v)) in m.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn same(v: &Value) {
        let mut out = Vec::new();
        write_value(&mut out, v);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&serde_json::to_vec(v).expect("json")),
        );
    }

    #[test]
    fn every_character_is_escaped_as_serde_json_escapes_it() {
        // Each character at every place of strings of every length up to two words and a
        // bit: alone, in each byte of a word, in a short tail and in a tail of seven.
        let mut chars: Vec<char> = (0u32..0x200).filter_map(char::from_u32).collect();
        chars.extend(['\u{2028}', '\u{FFFF}', '\u{1F600}', 'é', '€']);
        for c in chars {
            for len in 1..=19 {
                for at in 0..len {
                    let s: String = "a".repeat(at) + &c.to_string() + &"b".repeat(len - 1 - at);
                    same(&Value::String(s));
                }
            }
            let two: String = [c, 'x', c, c].iter().collect::<String>().repeat(5);
            same(&Value::String(two));
        }
        same(&json!(
            "\"\\\u{0}\u{1f}\u{7f}\n\r\t\u{8}\u{c}/ plain text of some length"
        ));
        same(&json!(""));
    }

    #[test]
    fn every_kind_of_value_is_written_as_serde_json_writes_it() {
        same(&json!(null));
        same(&json!([]));
        same(&json!({}));
        same(&json!([
            true,
            false,
            null,
            0,
            -1,
            u64::MAX,
            i64::MIN,
            1.5,
            -0.0,
            1e300,
            0.1
        ]));
        same(&json!({"z": 1, "a": [1, {"y": 2, "b": null, "": ""}], "k\"ey\n": {"x": []}}));
        same(&json!([[[]], [{}], "x", 2.0, 7]));
    }
}
