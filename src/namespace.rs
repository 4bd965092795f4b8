//! Id namespacing: where a client's document lives in the shared backing database.
//!
//! # The scheme
//! A *namespace* is one incarnation of one user's virtual database. Its backing *partition* is
//!
//! ```text
//! partition = enc(user) "." enc(virtual db) "." epoch
//! ```
//!
//! where `enc` keeps the bytes `a-z` and `0-9` of the UTF-8 text and writes every other byte as
//! `-` followed by two lowercase hex digits (`alice@x.org` -> `alice-40x-2eorg`), and `epoch` is a
//! random lowercase base32 word chosen when the virtual database is created (see [`crate::vdb`]).
//! `enc` output never contains `.`, `:` or `_`, so the partition splits back unambiguously, never
//! starts with `_`, and no two (user, db, epoch) triples share a partition.
//!
//! | client id        | backing `_id`                       |
//! |------------------|-------------------------------------|
//! | `note-1`         | `{partition}:note-1`                |
//! | `_design/app`    | `{partition}:_design/app` (inert data, never a backend design doc) |
//! | `_local/ckpt`    | `_local/{partition}:ckpt`           |
//!
//! The backing id is therefore valid in a CouchDB 3 *partitioned* database (`partition:docid`),
//! and every document of a namespace lies in the contiguous `_all_docs` range
//! `["{partition}:", "{partition};")` (`;` follows `:` in code point order), ordered exactly as
//! the client ids are. Prefixes are only ever matched anchored at the start of an id and at a
//! fixed length, so no id, whatever it contains, can reach into another namespace.
//!
//! Metadata documents of couchgate itself live under the partition `couchgate`, which contains
//! no `.` and so can never equal a user partition.

use crate::error::{Error, Result};
use crate::json::raw::RawObject;

/// The partition holding couchgate's own metadata documents.
pub const META_PARTITION: &str = "couchgate";

/// Encodes one component (user name or database name) into the partition alphabet.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            out.push(b as char);
        } else {
            out.push('-');
            out.push(char::from_digit(u32::from(b >> 4), 16).expect("nibble < 16"));
            out.push(char::from_digit(u32::from(b & 0xf), 16).expect("nibble < 16"));
        }
    }
    out
}

/// Inverse of [`encode_component`]; `None` for text `encode_component` cannot produce.
pub fn decode_component(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'-' {
            let hex = s.get(i + 1..i + 3)?;
            // Exactly two lowercase hex digits (`from_str_radix` alone takes `+0` too).
            if !hex
                .bytes()
                .all(|h| h.is_ascii_digit() || (b'a'..=b'f').contains(&h))
            {
                return None;
            }
            let v = u8::from_str_radix(hex, 16).ok()?;
            if v.is_ascii_lowercase() || v.is_ascii_digit() {
                return None; // would have been kept literally: not canonical
            }
            out.push(v);
            i += 3;
        } else if b.is_ascii_lowercase() || b.is_ascii_digit() {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// The backing `_id` of the metadata document of `user`'s virtual database `db`.
pub fn meta_id(user: &str, db: &str) -> String {
    format!(
        "{META_PARTITION}:db.{}.{}",
        encode_component(user),
        encode_component(db)
    )
}

/// What kind of client id a string is, by CouchDB's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Normal,
    Design,
    Local,
}

/// Checks a client document id the way CouchDB does and says what kind it is.
pub fn classify_id(id: &str) -> Result<IdKind> {
    if id.is_empty() {
        return Err(Error::IllegalDocId("Document id must not be empty".into()));
    }
    if let Some(name) = id.strip_prefix("_design/") {
        if name.is_empty() {
            return Err(Error::IllegalDocId("Illegal document id `_design/`".into()));
        }
        return Ok(IdKind::Design);
    }
    if let Some(name) = id.strip_prefix("_local/") {
        if name.is_empty() {
            return Err(Error::IllegalDocId("Illegal document id `_local/`".into()));
        }
        return Ok(IdKind::Local);
    }
    if id.starts_with('_') {
        return Err(Error::IllegalDocId(
            "Only reserved document ids may start with underscore.".into(),
        ));
    }
    Ok(IdKind::Normal)
}

/// One incarnation of a user's virtual database inside the shared backing database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The client's name of the virtual database.
    db: String,
    /// `"{partition}:"`, the prefix of every normal and design backing id.
    prefix: String,
    /// `"_local/{partition}:"`, the prefix of every `_local` backing id.
    local_prefix: String,
}

impl Namespace {
    pub fn new(user: &str, db: &str, epoch: &str) -> Self {
        let partition = format!(
            "{}.{}.{}",
            encode_component(user),
            encode_component(db),
            epoch
        );
        Namespace {
            db: db.to_owned(),
            local_prefix: format!("_local/{partition}:"),
            prefix: format!("{partition}:"),
        }
    }

    /// The virtual database's name, as the client knows it.
    pub fn db(&self) -> &str {
        &self.db
    }

    /// The partition name (without the trailing `:`).
    pub fn partition(&self) -> &str {
        &self.prefix[..self.prefix.len() - 1]
    }

    /// Backing id of a client id of any kind; rejects ids CouchDB would reject.
    pub fn encode_id(&self, client_id: &str) -> Result<String> {
        let (prefix, rest) = match classify_id(client_id)? {
            IdKind::Normal | IdKind::Design => (&self.prefix, client_id),
            IdKind::Local => (&self.local_prefix, &client_id["_local/".len()..]),
        };
        // Not `format!`: this runs for every id of every request.
        let mut backing = String::with_capacity(prefix.len() + rest.len());
        backing.push_str(prefix);
        backing.push_str(rest);
        Ok(backing)
    }

    /// Backing id of a normal or design client id; `_local/` ids are rejected, since they are
    /// not documents for the endpoint at hand (`_revs_diff`, `_bulk_get`, attachments, ...).
    pub fn encode_doc_id(&self, client_id: &str) -> Result<String> {
        match classify_id(client_id)? {
            IdKind::Local => Err(Error::IllegalDocId(
                "_local documents are not allowed here".into(),
            )),
            _ => self.encode_id(client_id),
        }
    }

    /// Client id of a backing id, or `None` when the id is not in this namespace.
    pub fn decode_id(&self, backing_id: &str) -> Option<String> {
        if let Some(rest) = backing_id.strip_prefix(&self.prefix) {
            return Some(rest.to_owned());
        }
        backing_id
            .strip_prefix(&self.local_prefix)
            .map(|rest| format!("_local/{rest}"))
    }

    /// Backing id of the namespace's list of Mango indexes (`handlers::index`): a `_local`
    /// document outside the namespace's `_local/{partition}:` range, so no client id can name
    /// it, and deleted with the namespace.
    pub fn mango_indexes_id(&self) -> String {
        format!("_local/{}.mango", self.partition())
    }

    /// Inclusive lower bound of the namespace's `_all_docs` range.
    pub fn start_key(&self) -> String {
        self.prefix.clone()
    }

    /// Exclusive upper bound of the namespace's `_all_docs` range.
    pub fn end_key(&self) -> String {
        format!("{};", self.partition())
    }

    /// A backend error as the client must see it: backing ids in its reason become the
    /// client's (CouchDB names the document in some reasons), so no reason reveals the
    /// namespace.
    pub fn client_error(&self, e: Error, backing: &str) -> Error {
        e.with_backend_reason(|reason| self.client_reason(reason, backing))
    }

    /// A backend reason about `backing` with every backing id in it turned into the client's.
    pub fn client_reason(&self, reason: &str, backing: &str) -> String {
        let reason = match self.decode_id(backing) {
            Some(client) if !backing.is_empty() => reason.replace(backing, &client),
            _ => reason.to_owned(),
        };
        reason
            .replace(&self.local_prefix, "_local/")
            .replace(&self.prefix, "")
    }

    /// Rewrites a backing document's `_id` into the client's id. Documents outside the
    /// namespace are refused, so a bug elsewhere can never hand out a foreign document.
    pub fn strip_doc(&self, doc: &mut serde_json::Value) -> Result<()> {
        let Some(obj) = doc.as_object_mut() else {
            return Ok(());
        };
        if let Some(serde_json::Value::String(id)) = obj.get("_id") {
            let client = self.decode_id(id).ok_or_else(|| {
                Error::Internal("backend returned a document outside the namespace".into())
            })?;
            set_id(obj, client);
        }
        Ok(())
    }

    /// [`Namespace::strip_doc`] on a document's text, written to `out` without building a
    /// tree (see [`crate::json::raw`]): only `_id` changes, everything else passes as the
    /// backend wrote it. `false` (and nothing written) when the text is not one JSON object, or
    /// it has members only a tree rewrite handles (`_local_seq`).
    pub fn strip_doc_text(&self, doc: &RawObject, out: &mut Vec<u8>) -> Result<bool> {
        if doc.has("_local_seq") {
            return Ok(false);
        }
        let mut client = None;
        for (key, value) in doc.members() {
            if key != "_id" {
                continue;
            }
            let Some(id) = crate::json::raw::as_str(value) else {
                return Ok(false);
            };
            let id = self.decode_id(&id).ok_or_else(|| {
                Error::Internal("backend returned a document outside the namespace".into())
            })?;
            // A repeated `_id` must name the same document (the tree rewrite keeps one).
            if client.as_ref().is_some_and(|c| *c != id) {
                return Ok(false);
            }
            client = Some(id);
        }
        match client {
            Some(id) => doc.write_replacing("_id", &crate::json::raw::str_text(&id), out),
            None => doc.write(out),
        }
        Ok(true)
    }
}

/// Sets a document's `_id`, placing it first as CouchDB does. Any `_id` the client sent
/// (duplicates included: the parser kept one) is replaced, so what the backend stores is
/// exactly what couchgate decided.
pub fn set_id(doc: &mut serde_json::Map<String, serde_json::Value>, id: String) {
    doc.shift_insert(0, "_id".into(), serde_json::Value::String(id));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn components_encode_readably() {
        assert_eq!(encode_component("alice"), "alice");
        assert_eq!(encode_component("Al.ce@x"), "-41l-2ece-40x");
        assert_eq!(encode_component("a:b/c%d_e"), "a-3ab-2fc-25d-5fe");
        assert_eq!(encode_component("é"), "-c3-a9");
    }

    #[test]
    fn non_canonical_components_do_not_decode() {
        assert_eq!(decode_component("-61"), None); // 'a' must be literal
        assert_eq!(decode_component("-4A"), None); // upper-case hex
        assert_eq!(decode_component("d-+0"), None); // a sign is no hex digit (found by fuzzing)
        assert_eq!(decode_component("-4"), None);
        assert_eq!(decode_component("A"), None);
        assert_eq!(decode_component("-ff"), None); // not UTF-8
    }

    #[test]
    fn ids_map_into_the_partition() {
        let ns = Namespace::new("bob@x", "notes", "abc");
        assert_eq!(ns.partition(), "bob-40x.notes.abc");
        assert_eq!(ns.encode_id("a").unwrap(), "bob-40x.notes.abc:a");
        assert_eq!(
            ns.encode_id("_design/v").unwrap(),
            "bob-40x.notes.abc:_design/v"
        );
        assert_eq!(
            ns.encode_id("_local/x").unwrap(),
            "_local/bob-40x.notes.abc:x"
        );
        assert_eq!(
            ns.decode_id("_local/bob-40x.notes.abc:x").unwrap(),
            "_local/x"
        );
        assert_eq!(ns.decode_id("bob-40x.notes.abc:a:b").unwrap(), "a:b");
        assert_eq!(ns.decode_id("bob-40x.notes.abcd:a"), None);
        assert_eq!(ns.decode_id("x:bob-40x.notes.abc:a"), None);
        assert!(ns.encode_doc_id("_local/x").is_err());
    }

    #[test]
    fn reserved_ids_are_refused() {
        let ns = Namespace::new("u", "d", "e");
        for bad in ["", "_foo", "_design/", "_local/", "_all_docs", "_changes"] {
            let err = ns.encode_id(bad).unwrap_err();
            assert_eq!(err.name(), "illegal_docid", "{bad}");
        }
    }

    #[test]
    fn range_covers_every_id_sorting_after_z() {
        let ns = Namespace::new("u", "d", "e");
        for id in ["z", "zzz", "~", "\u{10ffff}", "ä", "_design/x"] {
            let b = ns.encode_id(id).unwrap();
            assert!(b >= ns.start_key() && b < ns.end_key(), "{id}");
        }
    }

    #[test]
    fn meta_ids_never_equal_user_ids() {
        assert_eq!(meta_id("a.b", "c"), "couchgate:db.a-2eb.c");
        let ns = Namespace::new("couchgate", "x", "e");
        assert_ne!(ns.partition(), META_PARTITION);
    }

    proptest! {
        #[test]
        fn component_round_trips(s in any::<String>()) {
            let e = encode_component(&s);
            prop_assert!(!e.contains('.') && !e.contains(':') && !e.starts_with('_'));
            prop_assert_eq!(decode_component(&e), Some(s));
        }

        #[test]
        fn ids_round_trip_and_stay_in_range(
            user in any::<String>(),
            db in "[a-z][a-z0-9_$()+/-]{0,20}",
            id in any::<String>(),
        ) {
            let ns = Namespace::new(&user, &db, "e0");
            if let Ok(b) = ns.encode_id(&id) {
                prop_assert_eq!(ns.decode_id(&b), Some(id.clone()));
                if !id.starts_with("_local/") {
                    prop_assert!(b >= ns.start_key() && b < ns.end_key());
                }
            }
        }

        #[test]
        fn namespaces_never_share_an_id(
            u1 in any::<String>(), u2 in any::<String>(),
            d1 in "[a-z][a-z0-9_/]{0,6}", d2 in "[a-z][a-z0-9_/]{0,6}",
            id1 in any::<String>(), id2 in any::<String>(),
        ) {
            let a = Namespace::new(&u1, &d1, "e");
            let b = Namespace::new(&u2, &d2, "e");
            if let (Ok(x), Ok(y)) = (a.encode_id(&id1), b.encode_id(&id2)) {
                if x == y {
                    prop_assert!(u1 == u2 && d1 == d2 && id1 == id2);
                }
                // A foreign namespace never decodes another's id.
                if a != b {
                    prop_assert_eq!(b.decode_id(&x), None);
                }
            }
        }
    }

    #[test]
    fn set_id_puts_the_one_id_first() {
        let mut doc = serde_json::json!({"a": 1, "_id": "x", "b": 2});
        let obj = doc.as_object_mut().unwrap();
        set_id(obj, "p:x".into());
        assert_eq!(
            serde_json::to_string(obj).unwrap(),
            r#"{"_id":"p:x","a":1,"b":2}"#
        );
        let mut none = serde_json::Map::new();
        none.insert("a".into(), 1.into());
        set_id(&mut none, "p:y".into());
        assert_eq!(
            serde_json::to_string(&none).unwrap(),
            r#"{"_id":"p:y","a":1}"#
        );
    }

    #[test]
    fn document_texts_are_rewritten_in_place() {
        let ns = Namespace::new("alice", "notes", "e1");
        let rewrite = |text: &str| -> Result<Option<String>> {
            let doc = RawObject::parse(text.as_bytes()).unwrap();
            let mut out = Vec::new();
            Ok(ns
                .strip_doc_text(&doc, &mut out)?
                .then(|| String::from_utf8(out).unwrap()))
        };
        assert_eq!(
            rewrite(r#"{"_id":"alice.notes.e1:a\"b","_rev":"1-x","v":1.0e2}"#).unwrap(),
            Some(r#"{"_id":"a\"b","_rev":"1-x","v":1.0e2}"#.to_owned())
        );
        assert_eq!(
            rewrite(r#"{"_id":"_local/alice.notes.e1:c"}"#).unwrap(),
            Some(r#"{"_id":"_local/c"}"#.to_owned())
        );
        assert_eq!(
            rewrite(r#"{"x":[]}"#).unwrap(),
            Some(r#"{"x":[]}"#.to_owned())
        );
        // Another namespace's document is never handed out.
        assert!(rewrite(r#"{"_id":"bob.notes.e1:a"}"#).is_err());
        assert!(rewrite(r#"{"_rev":"1-x","_id":"alice.notes.e2:a"}"#).is_err());
        // What only the tree rewrite handles.
        assert_eq!(
            rewrite(r#"{"_id":"alice.notes.e1:a","_local_seq":3}"#).unwrap(),
            None
        );
        assert_eq!(rewrite(r#"{"_id":7}"#).unwrap(), None);
    }

    #[test]
    fn backend_reasons_name_client_ids() {
        let ns = Namespace::new("u", "d", "e");
        let e = ns.client_error(
            Error::Backend {
                status: http::StatusCode::PRECONDITION_FAILED,
                error: "missing_stub".into(),
                reason: "Invalid attachment stub in u.d.e:att2 for x.txt".into(),
            },
            "u.d.e:att2",
        );
        assert_eq!(e.reason(), "Invalid attachment stub in att2 for x.txt");
    }
}
