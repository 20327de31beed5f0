//! Parsing a case record with only some fields of its `services_section` rows kept
//! ([`crate::CaseQuery::keeping_service_row_fields`]).
//!
//! Primero's `fields=` selects a case's top-level fields but not a subform's: a listing that
//! asks for `services_section` gets every field of every row. A caller that reads a few of
//! them (flow 1.2 reads six) has the others skipped while the record is parsed, instead of
//! each being built as a JSON value and then dropped: that is most of the work of parsing a
//! page of 1,000 cases. Everything else is parsed as [`serde_json::Value`] would parse it, so
//! a case read this way equals the case read whole with the other row fields removed, with one
//! difference: a skipped field is only checked as JSON, so a record that a whole parse refuses
//! for something inside a skipped field alone (nesting deeper than 128 levels, a number out of
//! `f64`'s range, a lone UTF-16 surrogate escape) is kept here instead of being counted as
//! malformed. The scalars are built as `Value`'s own visitor builds them without serde_json's
//! `arbitrary_precision` feature, which this workspace does not enable.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

/// The scalar visits of a visitor producing a [`Value`], as `Value`'s own visitor does.
macro_rules! scalars {
    () => {
        fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
            Ok(Value::Bool(b))
        }
        fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
            Ok(Value::Number(n.into()))
        }
        fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
            Ok(Value::Number(n.into()))
        }
        fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
            Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, s: &str) -> Result<Value, E> {
            Ok(Value::String(s.to_owned()))
        }
        fn visit_string<E>(self, s: String) -> Result<Value, E> {
            Ok(Value::String(s))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
    };
}

/// One case record (a JSON object) with only the `keep` fields of each `services_section`
/// row; `None` when `bytes` is not one JSON object.
pub(crate) fn case_map(bytes: &[u8], keep: &[String]) -> Option<Map<String, Value>> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let map = CaseSeed(keep).deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(map)
}

/// A key, borrowed from the body when it holds no escape.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The case object: `services_section` through [`RowsSeed`], every other field as a value.
struct CaseSeed<'k>(&'k [String]);

impl<'de> DeserializeSeed<'de> for CaseSeed<'_> {
    type Value = Map<String, Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for CaseSeed<'_> {
    type Value = Map<String, Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a case object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some(Key(key)) = map.next_key::<Key>()? {
            let value = if key == "services_section" {
                map.next_value_seed(RowsSeed(self.0))?
            } else {
                map.next_value::<Value>()?
            };
            // A repeated key: the last one wins, as when parsing into a `Value`.
            out.insert(key.into_owned(), value);
        }
        Ok(out)
    }
}

/// `services_section`: an array's object items through [`RowSeed`]; anything else (other
/// items, or a value that is not an array) as it is.
struct RowsSeed<'k>(&'k [String]);

impl<'de> DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(row) = seq.next_element_seed(RowSeed(self.0))? {
            rows.push(row);
        }
        Ok(Value::Array(rows))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        Value::deserialize(serde::de::value::MapAccessDeserializer::new(map))
    }
    scalars!();
}

/// One row: an object keeps the `keep` fields only; any other value is kept as it is.
struct RowSeed<'k>(&'k [String]);

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut row = Map::new();
        while let Some(Key(key)) = map.next_key::<Key>()? {
            if self.0.iter().any(|k| *k == key) {
                let value = map.next_value::<Value>()?;
                row.insert(key.into_owned(), value);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Value::Object(row))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        Value::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
    }
    scalars!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// The reference: the record parsed whole, then the other row fields removed.
    fn whole_then_trimmed(text: &str, keep: &[String]) -> Option<Map<String, Value>> {
        let mut map: Map<String, Value> = serde_json::from_str(text).ok()?;
        if let Some(Value::Array(rows)) = map.get_mut("services_section") {
            for row in rows {
                if let Value::Object(fields) = row {
                    fields.retain(|k, _| keep.contains(k));
                }
            }
        }
        Some(map)
    }

    #[test]
    fn a_case_keeps_its_other_fields_and_only_the_named_row_fields() {
        let text = r#"{
            "id": "c1", "case_id": "k1", "n": 3, "f": 1.5, "big": 18446744073709551615,
            "neg": -4, "flag": true, "none": null, "list": [1, "a", {"x": [null]}],
            "obj": {"services_section": [{"a": 1, "b": 2}]},
            "services_section": [
                {"unique_id": "s1", "status": "accepted", "notes": "long \"text\"\n",
                 "nested": {"a": [1, 2]}, "n": 1.25},
                {"unique_id": "s2", "st\u0061tus": "rejected", "notes": null},
                "not a row", 7, null, [1, 2], {}
            ]
        }"#;
        let k = keep(&["unique_id", "status"]);
        let got = case_map(text.as_bytes(), &k).expect("a case");
        assert_eq!(got, whole_then_trimmed(text, &k).unwrap());
        // Spelled out, so that the reference is not the only check.
        let rows = got["services_section"].as_array().unwrap();
        assert_eq!(
            rows[0],
            serde_json::json!({"unique_id": "s1", "status": "accepted"})
        );
        assert_eq!(
            rows[1],
            serde_json::json!({"unique_id": "s2", "status": "rejected"})
        );
        assert_eq!(rows[2], Value::String("not a row".into()));
        assert_eq!(rows[6], serde_json::json!({}));
        // A nested object that merely has a `services_section` key is left whole.
        assert_eq!(got["obj"]["services_section"][0]["b"], 2);
        assert_eq!(got["big"], serde_json::json!(18446744073709551615u64));
    }

    #[test]
    fn a_services_section_that_is_not_an_array_is_kept_as_it_is() {
        for section in [
            r#"null"#,
            r#""text""#,
            r#"{"unique_id": "s1", "x": 1}"#,
            "12",
        ] {
            let text = format!(r#"{{"id": "c1", "services_section": {section}}}"#);
            let k = keep(&["unique_id"]);
            assert_eq!(
                case_map(text.as_bytes(), &k),
                whole_then_trimmed(&text, &k),
                "{section}"
            );
        }
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_as_a_whole_parse_does() {
        let text = r#"{"id": "a", "id": "b", "services_section": [{"u": 1, "u": 2}]}"#;
        let k = keep(&["u"]);
        let got = case_map(text.as_bytes(), &k).unwrap();
        assert_eq!(got, whole_then_trimmed(text, &k).unwrap());
        assert_eq!(got["id"], "b");
        assert_eq!(got["services_section"][0]["u"], 2);
    }

    #[test]
    fn only_a_skipped_field_is_spared_the_checks_of_a_whole_parse() {
        // A number out of range: refused by a whole parse wherever it is...
        let k = keep(&["unique_id"]);
        let skipped = r#"{"id": "c1", "services_section": [{"unique_id": "s1", "n": 1e400}]}"#;
        assert!(serde_json::from_str::<Map<String, Value>>(skipped).is_err());
        // ...kept here when it sits in a skipped row field (the module's documented difference),
        let got = case_map(skipped.as_bytes(), &k).expect("kept");
        assert_eq!(
            got["services_section"][0],
            serde_json::json!({"unique_id": "s1"})
        );
        // ...and refused here too anywhere else.
        for text in [
            r#"{"id": "c1", "n": 1e400, "services_section": []}"#,
            r#"{"id": "c1", "services_section": [{"unique_id": 1e400}]}"#,
        ] {
            assert!(case_map(text.as_bytes(), &k).is_none(), "{text}");
        }
    }

    #[test]
    fn what_is_not_one_json_object_is_refused() {
        let k = keep(&["unique_id"]);
        for text in [
            "[1]",
            "\"x\"",
            "{\"id\": 1",
            "{} {}",
            "",
            "{\"services_section\": [}",
        ] {
            assert!(case_map(text.as_bytes(), &k).is_none(), "{text}");
        }
    }
}
