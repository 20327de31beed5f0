//! A JSON request body parsed once and kept with its text: strings are positions in that text
//! rather than copies, and the elements of all arrays (the members of all objects) share one
//! list, each container's contiguous, where `serde_json::Value` would allocate every string,
//! array and object of a 50-record ingestion batch and hash every member name.
//!
//! [`Doc::parse`] accepts exactly what `serde_json::from_slice::<Value>` accepts, and a
//! [`Json`] view reads like the `Value` it would give: a member repeated in an object keeps
//! its first position and its last value, as in the order-preserving `serde_json::Map`.
//! Numbers and booleans are only known as such: nothing the simulator checks reads them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// First member names that make serde_json read an object as something else (a number under
/// `arbitrary_precision`, raw JSON text under `raw_value`, a feature other crates of the
/// workspace turn on). An object starting with one is left to `Value`'s own parse.
const SERDE_JSON_TOKENS: [&str; 2] = [
    "$serde_json::private::Number",
    "$serde_json::private::RawValue",
];

/// Objects with more members than this find repeated names through a hash map.
const SCAN_LIMIT: usize = 16;

/// A parsed JSON document.
#[derive(Clone)]
pub(crate) struct Doc {
    text: Box<str>,
    /// Strings with escapes, decoded, one after the other.
    decoded: Box<str>,
    /// The elements of every array, each array's contiguous.
    items: Vec<Node>,
    /// The members of every object, each object's contiguous.
    members: Vec<(Text, Node)>,
    root: Node,
}

#[derive(Clone, Copy)]
enum Node {
    Null,
    /// A number or a boolean.
    Scalar,
    Str(Text),
    /// `items[start..start + len]`.
    Arr {
        start: usize,
        len: usize,
    },
    /// `members[start..start + len]`.
    Obj {
        start: usize,
        len: usize,
    },
}

/// A string of the document.
#[derive(Clone, Copy)]
enum Text {
    /// `text[start..end]` (a string without escapes).
    Src(usize, usize),
    /// `decoded[start..end]` (a string with escapes).
    Esc(usize, usize),
}

impl Text {
    fn len(self) -> usize {
        match self {
            Text::Src(start, end) | Text::Esc(start, end) => end - start,
        }
    }
}

/// The strings a [`Text`] points into.
#[derive(Clone, Copy)]
struct Strings<'a> {
    text: &'a str,
    decoded: &'a str,
}

impl<'a> Strings<'a> {
    fn get(self, t: Text) -> &'a str {
        match t {
            Text::Src(start, end) => &self.text[start..end],
            Text::Esc(start, end) => &self.decoded[start..end],
        }
    }
}

impl Doc {
    /// Parses a body; `None` when it is not JSON.
    pub fn parse(bytes: &[u8]) -> Option<Doc> {
        // Every byte of a JSON text outside its strings is ASCII and its strings must be
        // UTF-8, so a body that is not UTF-8 is not JSON either.
        let text = std::str::from_utf8(bytes).ok()?;
        let mut b = Builder::new(text);
        let root = match parse_tree(&mut b) {
            Some(root) => root,
            // Not JSON, or an object starting with a serde_json token: `Value` decides.
            None => {
                let v = serde_json::from_str::<Value>(text).ok()?;
                b = Builder::new(text);
                b.add_value(&v)
            }
        };
        Some(Doc {
            text: text.into(),
            decoded: b.decoded.into_boxed_str(),
            items: b.items,
            members: b.members,
            root,
        })
    }

    fn strings(&self) -> Strings<'_> {
        Strings {
            text: &self.text,
            decoded: &self.decoded,
        }
    }

    /// The whole document.
    pub fn root(&self) -> Json<'_> {
        Json {
            doc: self,
            node: self.root,
        }
    }

    /// The value of member `name` of the root object ([`Json::member`]'s choice) as the
    /// root.
    pub fn into_member(self, name: &str) -> Option<Doc> {
        let root = self.root().member(name)?.node;
        Some(Doc { root, ..self })
    }
}

/// A value of a [`Doc`].
#[derive(Clone, Copy)]
pub(crate) struct Json<'d> {
    doc: &'d Doc,
    node: Node,
}

impl<'d> Json<'d> {
    /// The string, when it is one.
    pub fn as_str(self) -> Option<&'d str> {
        match self.node {
            Node::Str(s) => Some(self.doc.strings().get(s)),
            _ => None,
        }
    }

    pub fn is_null(self) -> bool {
        matches!(self.node, Node::Null)
    }

    pub fn is_object(self) -> bool {
        matches!(self.node, Node::Obj { .. })
    }

    /// The elements, when it is an array.
    pub fn as_array(self) -> Option<impl ExactSizeIterator<Item = Json<'d>>> {
        let doc = self.doc;
        match self.node {
            Node::Arr { start, len } => Some(
                doc.items[start..start + len]
                    .iter()
                    .map(move |&node| Json { doc, node }),
            ),
            _ => None,
        }
    }

    /// The members in document order, when it is an object.
    pub fn members(self) -> Option<impl Iterator<Item = (&'d str, Json<'d>)>> {
        let doc = self.doc;
        match self.node {
            Node::Obj { start, len } => Some(
                doc.members[start..start + len]
                    .iter()
                    .map(move |&(k, node)| (doc.strings().get(k), Json { doc, node })),
            ),
            _ => None,
        }
    }

    /// The first member whose name is `matches` (names of another length are skipped
    /// unread).
    fn find(self, len: usize, matches: impl Fn(&str) -> bool) -> Option<Json<'d>> {
        let doc = self.doc;
        let Node::Obj { start, len: count } = self.node else {
            return None;
        };
        let s = doc.strings();
        doc.members[start..start + count]
            .iter()
            .find(|(k, _)| k.len() == len && matches(s.get(*k)))
            .map(|&(_, node)| Json { doc, node })
    }

    /// Member `key` (exact name) of an object, like `Value::get`.
    pub fn get(self, key: &str) -> Option<Json<'d>> {
        self.find(key.len(), |k| k == key)
    }

    /// The first member whose name is `name` in any ASCII case, like `server::member`.
    pub fn member(self, name: &str) -> Option<Json<'d>> {
        self.find(name.len(), |k| k.eq_ignore_ascii_case(name))
    }
}

/// The lists of a document being built, with the stacks where the contents of the open
/// arrays and objects wait until they are complete.
struct Builder<'t> {
    text: &'t str,
    decoded: String,
    items: Vec<Node>,
    members: Vec<(Text, Node)>,
    open_items: Vec<Node>,
    open_members: Vec<(Text, Node)>,
}

impl<'t> Builder<'t> {
    fn new(text: &'t str) -> Self {
        // Sized for ingestion batches (a member every 30 or so bytes, an element every 60 or
        // so) so that the lists seldom grow, that is, move; huge bodies grow them as usual.
        let hint = text.len().min(1 << 21);
        Builder {
            text,
            decoded: String::new(),
            items: Vec::with_capacity(hint / 64),
            members: Vec::with_capacity(hint / 32),
            open_items: Vec::with_capacity(64),
            open_members: Vec::with_capacity(64),
        }
    }

    fn strings(&self) -> Strings<'_> {
        Strings {
            text: self.text,
            decoded: &self.decoded,
        }
    }

    /// A string the deserializer lent from the input: its position when it lies in `text`
    /// (it always does), a copy otherwise.
    fn lent(&mut self, s: &str) -> Text {
        let start = (s.as_ptr() as usize).wrapping_sub(self.text.as_ptr() as usize);
        match start.checked_add(s.len()) {
            Some(end) if self.text.get(start..end).is_some() => Text::Src(start, end),
            _ => self.copied(s),
        }
    }

    fn copied(&mut self, s: &str) -> Text {
        let start = self.decoded.len();
        self.decoded.push_str(s);
        Text::Esc(start, self.decoded.len())
    }

    fn name(&mut self, name: Cow<'t, str>) -> Text {
        match name {
            Cow::Borrowed(s) => self.lent(s),
            Cow::Owned(s) => self.copied(&s),
        }
    }

    /// Closes the array whose elements are `open_items[from..]`.
    fn close_array(&mut self, from: usize) -> Node {
        let start = self.items.len();
        self.items.extend(self.open_items.drain(from..));
        Node::Arr {
            start,
            len: self.items.len() - start,
        }
    }

    /// Closes the object whose members are `open_members[from..]`.
    fn close_object(&mut self, from: usize) -> Node {
        let start = self.members.len();
        self.members.extend(self.open_members.drain(from..));
        Node::Obj {
            start,
            len: self.members.len() - start,
        }
    }

    /// The tree of a `Value` (what `Value`'s own parse gave).
    fn add_value(&mut self, v: &Value) -> Node {
        match v {
            Value::Null => Node::Null,
            Value::Bool(_) | Value::Number(_) => Node::Scalar,
            Value::String(s) => Node::Str(self.copied(s)),
            Value::Array(a) => {
                let from = self.open_items.len();
                for x in a {
                    let n = self.add_value(x);
                    self.open_items.push(n);
                }
                self.close_array(from)
            }
            Value::Object(m) => {
                let from = self.open_members.len();
                for (k, x) in m {
                    let n = self.add_value(x);
                    let k = self.copied(k);
                    self.open_members.push((k, n));
                }
                self.close_object(from)
            }
        }
    }
}

/// The tree of `b.text` through serde_json's own parser (same syntax checks, same nesting
/// limit as `Value`); `None` when it is not JSON or holds a [`SERDE_JSON_TOKENS`] object.
fn parse_tree(b: &mut Builder<'_>) -> Option<Node> {
    let mut de = serde_json::Deserializer::from_str(b.text);
    let root = Seed { b: &mut *b }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(root)
}

/// Builds the [`Node`] of one value into a [`Builder`].
struct Seed<'b, 't> {
    b: &'b mut Builder<'t>,
}

impl<'t> DeserializeSeed<'t> for Seed<'_, 't> {
    type Value = Node;

    fn deserialize<D: Deserializer<'t>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'t> Visitor<'t> for Seed<'_, 't> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        // `Value` makes a float that is not finite null.
        Ok(if v.is_finite() {
            Node::Scalar
        } else {
            Node::Null
        })
    }

    fn visit_borrowed_str<E>(self, s: &'t str) -> Result<Node, E> {
        Ok(Node::Str(self.b.lent(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node, E> {
        Ok(Node::Str(self.b.copied(s)))
    }

    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'t>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'t>>(self, mut seq: A) -> Result<Node, A::Error> {
        let b = self.b;
        let from = b.open_items.len();
        while let Some(n) = seq.next_element_seed(Seed { b: &mut *b })? {
            b.open_items.push(n);
        }
        Ok(b.close_array(from))
    }

    fn visit_map<A: MapAccess<'t>>(self, mut map: A) -> Result<Node, A::Error> {
        let b = self.b;
        let from = b.open_members.len();
        // Name -> position among this object's members, once it is too long to scan.
        let mut index: Option<HashMap<Cow<'t, str>, usize>> = None;
        while let Some(name) = map.next_key_seed(NameSeed)? {
            if b.open_members.len() == from && SERDE_JSON_TOKENS.contains(&name.as_ref()) {
                return Err(A::Error::custom("serde_json token"));
            }
            let value = map.next_value_seed(Seed { b: &mut *b })?;
            let count = b.open_members.len() - from;
            if index.is_none() && count >= SCAN_LIMIT {
                let s = b.strings();
                index = Some(
                    b.open_members[from..]
                        .iter()
                        .enumerate()
                        .map(|(i, (k, _))| (Cow::Owned(s.get(*k).to_owned()), i))
                        .collect(),
                );
            }
            let found = match &index {
                Some(ix) => ix.get(name.as_ref()).copied(),
                None => {
                    let s = b.strings();
                    b.open_members[from..]
                        .iter()
                        .position(|(k, _)| k.len() == name.len() && s.get(*k) == name.as_ref())
                }
            };
            match found {
                // As `Map::insert`: the name keeps its place, the value is replaced.
                Some(i) => b.open_members[from + i].1 = value,
                None => {
                    if let Some(ix) = &mut index {
                        ix.insert(name.clone(), count);
                    }
                    let k = b.name(name);
                    b.open_members.push((k, value));
                }
            }
        }
        Ok(b.close_object(from))
    }
}

/// A member name, lent by the input when it has no escapes.
struct NameSeed;

impl<'t> DeserializeSeed<'t> for NameSeed {
    type Value = Cow<'t, str>;

    fn deserialize<D: Deserializer<'t>>(self, d: D) -> Result<Cow<'t, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'t> Visitor<'t> for NameSeed {
    type Value = Cow<'t, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, s: &'t str) -> Result<Cow<'t, str>, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Cow<'t, str>, E> {
        Ok(Cow::Owned(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Cow<'t, str>, E> {
        Ok(Cow::Owned(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Value` as text, numbers and booleans as `#` (what a [`Json`] knows of them).
    fn shape_of_value(v: &Value) -> String {
        match v {
            Value::Null => "null".into(),
            Value::Bool(_) | Value::Number(_) => "#".into(),
            Value::String(s) => format!("{s:?}"),
            Value::Array(a) => format!(
                "[{}]",
                a.iter().map(shape_of_value).collect::<Vec<_>>().join(",")
            ),
            Value::Object(m) => format!(
                "{{{}}}",
                m.iter()
                    .map(|(k, v)| format!("{k:?}:{}", shape_of_value(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }

    fn shape_of(j: Json<'_>) -> String {
        if let Some(s) = j.as_str() {
            return format!("{s:?}");
        }
        if let Some(items) = j.as_array() {
            return format!("[{}]", items.map(shape_of).collect::<Vec<_>>().join(","));
        }
        if let Some(members) = j.members() {
            return format!(
                "{{{}}}",
                members
                    .map(|(k, v)| format!("{k:?}:{}", shape_of(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        if j.is_null() {
            "null".into()
        } else {
            "#".into()
        }
    }

    /// `Doc::parse` accepts `body` exactly when `Value` does, and reads the same.
    fn assert_reads_as_value(body: &[u8]) {
        let want = serde_json::from_slice::<Value>(body)
            .ok()
            .map(|v| shape_of_value(&v));
        let got = Doc::parse(body).map(|d| shape_of(d.root()));
        assert_eq!(got, want, "{}", String::from_utf8_lossy(body));
    }

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn reads_what_value_reads_and_refuses_what_it_refuses() {
        let mut bodies: Vec<Vec<u8>> = [
            "{}",
            "[]",
            "null",
            "1",
            "-0",
            "1.5e3",
            "1e400",
            "18446744073709551616",
            "true",
            "\"x\"",
            " \n{\"a\" : [1, \"b\", null, {\"c\": false}]}\t",
            "{\"a\":1}x",
            "{\"a\":1,}",
            "[1,]",
            "",
            "   ",
            "{\"a\":\"caf\\u00e9\\n\\\"q\\\"\",\"\\u0041\":1,\"A\":2}",
            "{\"a\":1,\"b\":2,\"a\":3}",
            "{\"a\":{\"x\":1},\"a\":\"s\",\"b\":[],\"a\":null}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":\"\\ud83d\\ude00\"}",
            "{\"a\":\"tab\there\"}",
            "{\"$serde_json::private::RawValue\":\"{\\\"k\\\":[1]}\"}",
            "{\"$serde_json::private::RawValue\":1}",
            "{\"$serde_json::private::Number\":\"12\"}",
            "{\"x\":1,\"$serde_json::private::RawValue\":\"1\"}",
            "[{\"$serde_json::private::RawValue\":\"\\\"s\\\"\"}]",
            "\u{feff}{}",
            "{\"ShippingProcessId\":\"SHP-2748\",\"Data\":[{\"ExternalId\":\"e\",\"Fields\":[{\"Name\":\"n\",\"Value\":\"v\"}]}]}",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        bodies.push(b"{\"a\":\"\xff\"}".to_vec());
        bodies.push(b"{\"a\xc3\":1}".to_vec());
        for depth in [126, 127, 128, 129, 200] {
            bodies.push(nested(depth).into_bytes());
        }
        // Long objects (repeated names found through the hash map), names repeated before and
        // after the map is built, some spelled with escapes.
        let mut long = String::from("{");
        for i in 0..40 {
            long.push_str(&format!("\"k{}\":{i},", i % 23));
        }
        long.push_str("\"\\u006b3\":\"esc\",\"k3\\u0031\":true,\"k31\":[]}");
        bodies.push(long.into_bytes());
        for body in &bodies {
            assert_reads_as_value(body);
        }
    }

    #[test]
    fn member_and_get_find_what_the_value_lookups_find() {
        let body = br#"{"shippingprocessid":"low","ShippingProcessId":"A","Data":[1],"data":[2],"ShippingProcessId":"B"}"#;
        let v: Value = serde_json::from_slice(body).expect("json");
        let map = v.as_object().expect("object");
        let doc = Doc::parse(body).expect("json");
        let root = doc.root();
        for name in [
            "ShippingProcessId",
            "SHIPPINGPROCESSID",
            "Data",
            "data",
            "nope",
        ] {
            assert_eq!(
                root.member(name).map(shape_of),
                crate::server::member(map, name).map(shape_of_value),
                "{name}"
            );
            assert_eq!(
                root.get(name).map(shape_of),
                v.get(name).map(shape_of_value),
                "{name}"
            );
        }
        let data = doc.into_member("DATA").expect("Data");
        assert_eq!(shape_of(data.root()), "[#]");
        let not_object = Doc::parse(b"[1]").expect("json");
        assert!(not_object.into_member("Data").is_none());
    }

    #[test]
    fn strings_without_escapes_are_not_copied() {
        let doc = Doc::parse(br#"{"a":"plain","b":"esc\"aped"}"#).expect("json");
        let Node::Obj { start, len: 2 } = doc.root else {
            panic!("not an object of two members");
        };
        assert!(matches!(
            doc.members[start],
            (Text::Src(..), Node::Str(Text::Src(..)))
        ));
        assert!(matches!(doc.members[start + 1].1, Node::Str(Text::Esc(..))));
        assert_eq!(
            doc.root().get("b").and_then(Json::as_str),
            Some("esc\"aped")
        );
        assert_eq!(&*doc.decoded, "esc\"aped");
    }

    #[test]
    fn nested_containers_keep_their_own_elements() {
        let body = br#"{"a":[1,[2,{"b":[3,4],"c":{}}],[]],"d":[{"e":null}],"f":"g"}"#;
        assert_reads_as_value(body);
        let doc = Doc::parse(body).expect("json");
        let a: Vec<String> = doc
            .root()
            .get("a")
            .and_then(Json::as_array)
            .expect("a")
            .map(shape_of)
            .collect();
        assert_eq!(a, ["#", "[#,{\"b\":[#,#],\"c\":{}}]", "[]"]);
    }
}
