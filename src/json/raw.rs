//! Backend answers rewritten without building a tree. Pure.
//!
//! Most of a document couchgate passes on is never looked at: only its `_id` changes. A
//! [`RawObject`] holds an object's members with each value left as its text (serde_json's
//! `RawValue`: checked to be JSON while it is skipped, never built), so rewriting one member
//! costs one scan of the text and one copy, not a parse into a `Value` and a serialisation.
//! What is not rewritten reaches the client exactly as the backend wrote it.
//!
//! Skipping a value is iterative in serde_json, so no nesting depth exhausts the stack here.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// The members of one JSON object, in order, each value as its JSON text.
#[derive(Debug)]
pub struct RawObject<'a> {
    members: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> RawObject<'a> {
    /// The object `text` holds (whitespace around it allowed); `None` when it holds anything
    /// else, or is not JSON.
    pub fn parse(text: &'a [u8]) -> Option<RawObject<'a>> {
        parse_text(text)
    }

    /// The text of the first value named `key` (CouchDB never repeats a name; for one that
    /// does, [`RawObject::write_replacing`] replaces every value of the name, not only this).
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Whether a member is named `key`.
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The members, in order.
    pub fn members(&self) -> impl Iterator<Item = (&str, &'a RawValue)> + '_ {
        self.members.iter().map(|(k, v)| (k.as_ref(), *v))
    }

    /// Writes the object to `out`, every member named `key` (repeated ones included) with
    /// `value` (a JSON text) in place of its own.
    pub fn write_replacing(&self, key: &str, value: &str, out: &mut Vec<u8>) {
        self.write_with(Some((key, value)), out)
    }

    /// Writes the object to `out` as it is (member names re-escaped as serde_json escapes).
    pub fn write(&self, out: &mut Vec<u8>) {
        self.write_with(None, out)
    }

    fn write_with(&self, replace: Option<(&str, &str)>, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (k, v)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(k, out);
            out.push(b':');
            let text = match replace {
                Some((key, value)) if k == key => value,
                _ => v.get(),
            };
            out.extend_from_slice(text.as_bytes());
        }
        out.push(b'}');
    }
}

/// A JSON object written member by member, values given as trees or as text.
#[derive(Debug)]
pub struct ObjectWriter {
    buf: Vec<u8>,
    members: usize,
}

impl ObjectWriter {
    pub fn with_capacity(bytes: usize) -> ObjectWriter {
        let mut buf = Vec::with_capacity(bytes.max(2));
        buf.push(b'{');
        ObjectWriter { buf, members: 0 }
    }

    /// Members written so far.
    pub fn len(&self) -> usize {
        self.members
    }

    pub fn is_empty(&self) -> bool {
        self.members == 0
    }

    pub fn value(&mut self, key: &str, value: &serde_json::Value) {
        self.key(key);
        serde_json::to_writer(&mut self.buf, value).expect("a serde_json::Value always serialises");
    }

    pub fn raw(&mut self, key: &str, value: &RawValue) {
        self.raw_text(key, value.get().as_bytes());
    }

    /// A member whose value is `text`, a JSON text.
    pub fn raw_text(&mut self, key: &str, text: &[u8]) {
        self.key(key);
        self.buf.extend_from_slice(text);
    }

    fn key(&mut self, key: &str) {
        if self.members > 0 {
            self.buf.push(b',');
        }
        self.members += 1;
        write_str(key, &mut self.buf);
        self.buf.push(b':');
    }

    /// The object's text.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(b'}');
        self.buf
    }
}

/// `T` read from a JSON text that borrows from it. The text is checked to be UTF-8 once, in
/// one pass: read from bytes, serde_json would check every borrowed value on its own.
pub fn parse_text<'a, T: Deserialize<'a>>(text: &'a [u8]) -> Option<T> {
    serde_json::from_str(std::str::from_utf8(text).ok()?).ok()
}

/// The string a value's text holds, unescaped; `None` when it is not a string.
pub fn as_str(v: &RawValue) -> Option<Cow<'_, str>> {
    let text = v.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

/// `s` as a JSON string.
pub fn write_str(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, s).expect("writing a string to a Vec never fails");
}

/// `s` as the text of a JSON string.
pub fn str_text(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    write_str(s, &mut out);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

impl<'de: 'a, 'a> Deserialize<'de> for RawObject<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Members<'a> {
            type Value = RawObject<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((Key(k), v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    members.push((k, v));
                }
                Ok(RawObject { members })
            }
        }
        d.deserialize_map(Members(std::marker::PhantomData))
    }
}

/// A member name, borrowed from the text unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Name;
        impl<'de> Visitor<'de> for Name {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(Name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn members_keep_their_text() {
        let text = br#" {"_id":"p:a","n":1.50,"s":"\u00e9","deep":[[[{"x":null}]]],"k\"ey":true} "#;
        let obj = RawObject::parse(text).unwrap();
        assert_eq!(obj.get("n").unwrap().get(), "1.50");
        assert_eq!(obj.get("s").unwrap().get(), r#""\u00e9""#);
        assert_eq!(as_str(obj.get("s").unwrap()).unwrap(), "é");
        assert!(obj.has("k\"ey"));
        let mut out = Vec::new();
        obj.write_replacing("_id", &str_text("a"), &mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"_id":"a","n":1.50,"s":"\u00e9","deep":[[[{"x":null}]]],"k\"ey":true}"#
        );
    }

    #[test]
    fn objects_are_written_member_by_member() {
        assert_eq!(ObjectWriter::with_capacity(0).finish(), b"{}");
        let mut w = ObjectWriter::with_capacity(0);
        w.value("a\"", &serde_json::json!([1]));
        w.raw(
            "b",
            RawObject::parse(b"{\"x\": 2.50}")
                .unwrap()
                .get("x")
                .unwrap(),
        );
        w.raw_text("c", b"{}");
        assert_eq!(w.len(), 3);
        assert_eq!(w.finish(), br#"{"a\"":[1],"b":2.50,"c":{}}"#);
    }

    #[test]
    fn only_objects_of_json_parse() {
        for bad in [
            &b"[1]"[..],
            b"\"x\"",
            b"{",
            b"{\"a\":}",
            b"{} x",
            b"{\"a\":1,}",
        ] {
            assert!(RawObject::parse(bad).is_none(), "{:?}", bad);
        }
        assert!(as_str(RawObject::parse(b"{\"a\":1}").unwrap().get("a").unwrap()).is_none());
    }

    #[test]
    fn nesting_deeper_than_serde_json_recurses_is_skipped() {
        let deep = format!(
            "{{\"_id\":\"x\",\"v\":{}{}}}",
            "[".repeat(5000),
            "]".repeat(5000)
        );
        let obj = RawObject::parse(deep.as_bytes()).unwrap();
        assert_eq!(obj.get("v").unwrap().get().len(), 10_000);
    }

    proptest! {
        /// Replacing a member gives the object a tree rewrite gives.
        #[test]
        fn replacing_matches_a_tree_rewrite(
            doc in proptest::collection::btree_map(
                prop_oneof![Just("_id".to_owned()), "[_a-z\"\\\\é]{0,4}"],
                any::<i64>(),
                0..6,
            ),
            id in ".{0,8}",
        ) {
            let mut v = serde_json::json!(doc);
            let text = serde_json::to_vec(&v).unwrap();
            let obj = RawObject::parse(&text).unwrap();
            let mut out = Vec::new();
            obj.write_replacing("_id", &str_text(&id), &mut out);
            if let Some(m) = v.as_object_mut() {
                if m.contains_key("_id") {
                    m.insert("_id".into(), serde_json::Value::String(id));
                }
            }
            prop_assert_eq!(serde_json::from_slice::<serde_json::Value>(&out).unwrap(), v);
        }
    }
}
