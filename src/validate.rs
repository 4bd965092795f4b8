//! Shape checks of what clients write and ask for, made before anything reaches the backend:
//! document members (`_id`, `_rev`, `_revisions`, `_attachments`, `_deleted`, other `_`
//! members), revisions, and revision lists in query parameters. Pure.
//!
//! The rules, error names and reasons are CouchDB 3's (`couch_doc:transfer_fields/3`,
//! `couch_doc:parse_rev/1`, `couch_att:from_json/2`, `chttpd_db:validate_attachment_name/1`).
//! Members are checked in the order the client sent them, as CouchDB does, so the fault named
//! is the one CouchDB names. Where CouchDB itself fails with a 500 (an attachment saying its
//! data follows in a JSON body, a `_revisions` naming no revision), couchgate answers 400.
//!
//! A backend must not be left to read anything its own way (PouchDB Server dies on several of
//! these inputs and stores others as a corrupt revision tree), so a checked document is also
//! normalised to what CouchDB makes of it: members CouchDB ignores are dropped, attachment
//! entries that are not objects (which CouchDB skips) are removed, attachment data is
//! re-encoded as canonical base64 when it was not, and `_rev` is set from `_revisions`.

use crate::error::{Error, Result};
use crate::namespace::classify_id;
use base64::Engine;
use serde_json::{Map, Value};

/// CouchDB's reason for every malformed revision.
pub const INVALID_REV: &str = "Invalid rev format";

/// Checks a revision as CouchDB's `parse_rev` does: `{generation}-{id}`, where an id of 32
/// characters (with a generation other than 0) must be hexadecimal. couchgate also refuses
/// signed generations, which CouchDB reads or fails on.
pub fn check_rev(rev: &str) -> Result<()> {
    let bad = || Error::bad_request(INVALID_REV);
    let (pos, id) = rev.split_once('-').ok_or_else(bad)?;
    if pos.is_empty() || !pos.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let pos: u64 = pos.parse().map_err(|_| bad())?;
    if pos != 0 && id.len() == 32 && !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok(())
}

/// Checks the revision of a `_local` document write: `0-{n}`, n decimal, the only form CouchDB
/// reads (it fails with a 500 on any other; couchgate answers 400).
pub fn check_local_rev(rev: &str) -> Result<()> {
    match rev.strip_prefix("0-") {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(Error::bad_request(INVALID_REV)),
    }
}

/// A revision given as a JSON value: a string [`check_rev`] accepts.
pub fn rev_value(v: &Value) -> Result<&str> {
    let rev = v.as_str().ok_or_else(|| Error::bad_request(INVALID_REV))?;
    check_rev(rev)?;
    Ok(rev)
}

/// A list of revisions as CouchDB's `parse_revs` reads it.
pub fn rev_list(v: &Value) -> Result<Vec<String>> {
    let list = v
        .as_array()
        .ok_or_else(|| Error::bad_request("Invalid list of revisions"))?;
    list.iter()
        .map(|r| rev_value(r).map(str::to_owned))
        .collect()
}

/// A query parameter holding a JSON list of revisions (`open_revs`, `atts_since`).
pub fn rev_list_param(text: &str) -> Result<Vec<String>> {
    let v: Value =
        serde_json::from_str(text).map_err(|_| Error::bad_request("invalid UTF-8 JSON"))?;
    rev_list(&v)
}

/// What the checks learnt about a document.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// The document names a revision (`_rev` or `_revisions`).
    pub has_rev: bool,
    /// The attachments whose data follows in a multipart body, in the order the document lists
    /// them (the order CouchDB reads their data in).
    pub follows: Vec<Follows>,
}

/// An attachment whose data follows the JSON part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Follows {
    pub name: String,
    /// The bytes its part must have (the encoded length of encoded data).
    pub length: u64,
    pub content_type: String,
}

/// CouchDB's content type of an attachment that names none.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// Members CouchDB reads and then ignores: never stored, so never forwarded.
const IGNORED: &[&str] = &[
    "_revs_info",
    "_local_seq",
    "_conflicts",
    "_deleted_conflicts",
];

/// `_` members CouchDB stores as document data.
const KEPT: &[&str] = &[
    "_access",
    "_replication_state",
    "_replication_state_time",
    "_replication_state_reason",
    "_replication_id",
    "_replication_stats",
];

/// Checks and normalises a document body member by member, as CouchDB's
/// `couch_doc:transfer_fields/3` does. `multipart`: the body is the JSON part of a
/// `multipart/related` request, so attachments may say their data follows.
pub fn check_doc(doc: &mut Map<String, Value>, multipart: bool) -> Result<Shape> {
    let mut shape = Shape::default();
    // `_rev` counts only while no revision is known yet; `_revisions` always replaces it.
    let mut revisions: Option<String> = None;
    for (key, value) in doc.iter_mut() {
        match key.as_str() {
            "_id" => match value {
                Value::String(id) => {
                    classify_id(id)?;
                }
                _ => return Err(Error::IllegalDocId("Document id must be a string".into())),
            },
            "_rev" if !shape.has_rev => {
                rev_value(value)?;
                shape.has_rev = true;
            }
            "_rev" => {}
            "_revisions" => {
                revisions = Some(check_revisions(value)?);
                shape.has_rev = true;
            }
            "_attachments" => check_attachments(value, multipart, &mut shape)?,
            "_deleted" if value.is_boolean() => {}
            k if IGNORED.contains(&k) || KEPT.contains(&k) || !k.starts_with('_') => {}
            k => {
                return Err(Error::DocValidation(format!(
                    "Bad special document member: {k}"
                )))
            }
        }
    }
    // An empty `_attachments` (some entries may have been skipped) is no attachments, which
    // CouchDB stores as no member at all.
    doc.retain(|k, v| {
        let no_attachments = k == "_attachments" && v.as_object().is_some_and(Map::is_empty);
        !(IGNORED.contains(&k.as_str()) || no_attachments)
    });
    if let Some(rev) = revisions {
        // CouchDB takes the revision from `_revisions` wherever `_rev` stands; the backend
        // must not read `_rev` instead.
        doc.insert("_rev".into(), Value::String(rev));
    }
    Ok(shape)
}

/// Checks `_revisions` and answers the revision it names (`{start}-{ids[0]}`).
fn check_revisions(v: &Value) -> Result<String> {
    let invalid = |reason: &str| Error::DocValidation(reason.into());
    let Value::Object(r) = v else {
        return Err(invalid("Bad special document member: _revisions"));
    };
    let start = match r.get("start") {
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.as_i64(),
        _ => return Err(invalid("_revisions.start isn't an integer.")),
    };
    let Some(Value::Array(ids)) = r.get("ids") else {
        return Err(invalid("_revisions.ids isn't a array."));
    };
    for id in ids {
        let Value::String(id) = id else {
            return Err(invalid("RevId isn't a string"));
        };
        if start != Some(0) && id.len() == 32 && !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("RevId isn't a valid hexadecimal"));
        }
    }
    // CouchDB fails (500) or builds a history reaching generation 0 or below; a backend may
    // store a revision tree it cannot read back.
    match start {
        Some(start) if !ids.is_empty() && start >= ids.len() as i64 => {
            Ok(format!("{start}-{}", ids[0].as_str().unwrap_or_default()))
        }
        _ => Err(invalid(
            "_revisions must name at least one revision id and no more than _revisions.start",
        )),
    }
}

/// Checks `_attachments`: each entry a stub, data that follows (multipart only), or inline
/// base64 data. Entries that are not objects are removed: CouchDB skips them.
fn check_attachments(v: &mut Value, multipart: bool, shape: &mut Shape) -> Result<()> {
    let Value::Object(atts) = v else {
        return Err(Error::DocValidation(
            "Bad special document member: _attachments".into(),
        ));
    };
    atts.retain(|_, att| att.is_object());
    let objects = atts
        .iter_mut()
        .filter_map(|(name, att)| Some((name, att.as_object_mut()?)));
    for (name, att) in objects {
        let flag = |k: &str| att.get(k) == Some(&Value::Bool(true));
        let (stub, follows) = (flag("stub"), flag("follows"));
        if stub {
            continue;
        }
        // The type CouchDB gives (and would serve back as a header): a backend must not store
        // none, or one no header can carry.
        let content_type = match att.get("content_type") {
            None => DEFAULT_CONTENT_TYPE.to_owned(),
            Some(Value::String(t)) if !t.bytes().any(|b| b.is_ascii_control()) => t.clone(),
            Some(_) => {
                return Err(Error::bad_request(format!(
                    "Invalid attachment content_type for {name}"
                )))
            }
        };
        att.insert("content_type".into(), Value::String(content_type.clone()));
        if follows {
            if !multipart {
                return Err(Error::bad_request(format!(
                    "Attachment {name} says its data follows, which only a multipart/related \
                     body can do"
                )));
            }
            // The byte count the part must have: the encoded length of encoded data.
            let len = match att.get("encoding") {
                Some(_) => att.get("encoded_length").or_else(|| att.get("length")),
                None => att.get("length"),
            };
            let length = len.and_then(Value::as_u64).ok_or_else(|| {
                Error::bad_request(format!(
                    "Attachment {name} says its data follows but gives no length"
                ))
            })?;
            shape.follows.push(Follows {
                name: name.clone(),
                length,
                content_type,
            });
            continue;
        }
        let invalid = || Error::bad_request(format!("Invalid attachment data for {name}"));
        let Some(Value::String(data)) = att.get_mut("data") else {
            return Err(invalid());
        };
        if let Some(canonical) = canonical_base64(data).ok_or_else(invalid)? {
            *data = canonical;
        }
    }
    Ok(())
}

/// Checks attachment names as CouchDB does after reading a document (`_` is reserved).
pub fn check_attachment_names(doc: &Map<String, Value>) -> Result<()> {
    let Some(Value::Object(atts)) = doc.get("_attachments") else {
        return Ok(());
    };
    match atts.keys().find(|name| name.starts_with('_')) {
        Some(name) => Err(Error::bad_request(format!(
            "Attachment name '{name}' starts with prohibited character '_'"
        ))),
        None => Ok(()),
    }
}

/// A replicated write (`new_edits: false`) must name its revision.
pub fn require_rev(has_rev: bool) -> Result<()> {
    if has_rev {
        Ok(())
    } else {
        Err(Error::bad_request(
            "When `new_edits: false`, the document needs `_rev` or `_revisions` specified",
        ))
    }
}

/// Base64 as CouchDB decodes it (standard alphabet, whitespace skipped, padding optional,
/// unused bits ignored): `None` when it is not, `Some(None)` when it already is canonical,
/// else the canonical encoding of the same bytes.
pub fn canonical_base64(data: &str) -> Option<Option<String>> {
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
    use base64::engine::DecodePaddingMode;
    if STANDARD.decode(data).is_ok() {
        return Some(None);
    }
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: Vec<u8> = data
        .bytes()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .collect();
    LENIENT
        .decode(compact)
        .ok()
        .map(|bytes| Some(STANDARD.encode(bytes)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn local_revisions_are_zero_dash_a_number() {
        for good in ["0-1", "0-0", "0-123456789012345678901234567890"] {
            assert!(check_local_rev(good).is_ok(), "{good}");
        }
        for bad in [
            "1-1",
            "0-",
            "0-x",
            "0-1x",
            "2-bf88bfd823b8b1cd7f667b4b00f32a3d",
            "-0-1",
            "",
        ] {
            assert!(check_local_rev(bad).is_err(), "{bad}");
        }
    }

    use super::*;
    use serde_json::json;

    fn checked(v: Value, multipart: bool) -> Result<(Value, Shape)> {
        let Value::Object(mut doc) = v else {
            panic!("test documents are objects")
        };
        let shape = check_doc(&mut doc, multipart)?;
        Ok((Value::Object(doc), shape))
    }

    fn refused(v: Value) -> (String, String) {
        let e = checked(v, false).unwrap_err();
        (e.name().to_owned(), e.reason())
    }

    #[test]
    fn revisions_parse_like_couchdb() {
        for good in [
            "1-abc",
            "0-99",
            "1-",
            "2-0123456789abcdef0123456789ABCDEF",
            "0-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        ] {
            assert!(check_rev(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "abc",
            "-1-abc",
            "+1-abc",
            "x-abc",
            "1-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
            "99999999999999999999999-a",
        ] {
            assert_eq!(check_rev(bad).unwrap_err().reason(), INVALID_REV, "{bad}");
        }
        assert_eq!(rev_value(&json!(5)).unwrap_err().reason(), INVALID_REV);
    }

    #[test]
    fn revision_lists_parse_like_couchdb() {
        assert_eq!(rev_list_param(r#"["1-a","2-b"]"#).unwrap(), ["1-a", "2-b"]);
        assert!(rev_list_param("[]").unwrap().is_empty());
        for (text, reason) in [
            ("notjson", "invalid UTF-8 JSON"),
            ("{}", "Invalid list of revisions"),
            ("null", "Invalid list of revisions"),
            ("\"1-a\"", "Invalid list of revisions"),
            ("[5]", INVALID_REV),
            ("[\"abc\"]", INVALID_REV),
        ] {
            let e = rev_list_param(text).unwrap_err();
            assert_eq!(
                (e.name(), e.reason().as_str()),
                ("bad_request", reason),
                "{text}"
            );
        }
    }

    #[test]
    fn special_members_are_couchdbs() {
        let doc = json!({"_id": "a", "_rev": "1-x", "_deleted": false, "_access": ["u"], "v": 1});
        let (out, shape) = checked(doc.clone(), false).unwrap();
        assert_eq!(out, doc);
        assert!(shape.has_rev);
        assert_eq!(
            refused(json!({"_foo": 1})),
            (
                "doc_validation".into(),
                "Bad special document member: _foo".into()
            )
        );
        assert_eq!(refused(json!({"_rev_tree": []})).0, "doc_validation");
        assert_eq!(
            refused(json!({"_deleted": "yes"})).1,
            "Bad special document member: _deleted"
        );
        assert_eq!(refused(json!({"_rev": 5})).1, INVALID_REV);
        assert_eq!(refused(json!({"_rev": ""})).1, INVALID_REV);
        assert_eq!(
            refused(json!({"_id": 5})),
            (
                "illegal_docid".into(),
                "Document id must be a string".into()
            )
        );
        assert_eq!(refused(json!({"_id": "_bad"})).0, "illegal_docid");
        // The first fault in member order is the one named.
        assert_eq!(refused(json!({"_foo": 1, "_rev": 5})).0, "doc_validation");
        assert_eq!(refused(json!({"_rev": 5, "_foo": 1})).1, INVALID_REV);
    }

    #[test]
    fn ignored_members_are_dropped() {
        let (out, shape) = checked(
            json!({"_conflicts": 5, "a": 1, "_revs_info": "x", "_local_seq": 1, "_deleted_conflicts": []}),
            false,
        )
        .unwrap();
        assert_eq!(out, json!({"a": 1}));
        assert!(!shape.has_rev);
    }

    #[test]
    fn revisions_are_checked_and_name_the_rev() {
        let (out, shape) = checked(
            json!({"_rev": "9-ignored", "_revisions": {"start": 2, "ids": ["b", "a"]}}),
            false,
        )
        .unwrap();
        assert_eq!(out["_rev"], "2-b");
        assert!(shape.has_rev);
        // After `_revisions`, `_rev` is not even read, as in CouchDB.
        let (out, _) = checked(
            json!({"_revisions": {"start": 1, "ids": ["a"]}, "_rev": 5}),
            false,
        )
        .unwrap();
        assert_eq!(out["_rev"], "1-a");
        for (revisions, reason) in [
            (json!("nope"), "Bad special document member: _revisions"),
            (
                json!({"start": "1", "ids": ["a"]}),
                "_revisions.start isn't an integer.",
            ),
            (
                json!({"start": 1.0, "ids": ["a"]}),
                "_revisions.start isn't an integer.",
            ),
            (json!({"ids": ["a"]}), "_revisions.start isn't an integer."),
            (
                json!({"start": 1, "ids": "a"}),
                "_revisions.ids isn't a array.",
            ),
            (json!({"start": 1}), "_revisions.ids isn't a array."),
            (json!({"start": 1, "ids": [5]}), "RevId isn't a string"),
            (
                json!({"start": 1, "ids": ["zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"]}),
                "RevId isn't a valid hexadecimal",
            ),
        ] {
            assert_eq!(
                refused(json!({"_revisions": revisions})),
                ("doc_validation".into(), reason.into())
            );
        }
        for unreadable in [
            json!({"start": 2, "ids": []}),
            json!({"start": 0, "ids": []}),
            json!({"start": 1, "ids": ["b", "a"]}),
            json!({"start": -1, "ids": ["a"]}),
        ] {
            assert_eq!(
                refused(json!({"_revisions": unreadable})).0,
                "doc_validation"
            );
        }
    }

    #[test]
    fn attachments_are_stubs_follows_or_base64() {
        let (out, shape) = checked(
            json!({"_attachments": {
                "s": {"stub": true},
                "i": {"data": "aGVsbG8=", "content_type": "text/plain"},
                "skipped": 5,
                "f": {"follows": true, "length": 3},
                "g": {"follows": true, "length": 3, "encoding": "gzip", "encoded_length": 7},
            }}),
            true,
        )
        .unwrap();
        let follows = |name: &str, length| Follows {
            name: name.into(),
            length,
            content_type: DEFAULT_CONTENT_TYPE.into(),
        };
        assert_eq!(shape.follows, vec![follows("f", 3), follows("g", 7)]);
        assert_eq!(
            out["_attachments"]["f"]["content_type"],
            DEFAULT_CONTENT_TYPE
        );
        assert_eq!(out["_attachments"]["i"]["content_type"], "text/plain");
        assert!(out["_attachments"]["s"].get("content_type").is_none());
        assert!(out["_attachments"].get("skipped").is_none());
        for bad in [json!(5), json!("text/plain\r\nX-Evil: 1")] {
            let e = refused(json!({"_attachments": {"x": {"data": "", "content_type": bad}}}));
            assert_eq!(
                e,
                (
                    "bad_request".into(),
                    "Invalid attachment content_type for x".into()
                )
            );
        }
        let (only_skipped, _) = checked(json!({"_attachments": {"x": 5}, "v": 1}), false).unwrap();
        assert_eq!(only_skipped, json!({"v": 1}));
        assert_eq!(out["_attachments"]["i"]["data"], "aGVsbG8=");

        assert_eq!(
            refused(json!({"_attachments": {"x": {"data": 5}}})),
            ("bad_request".into(), "Invalid attachment data for x".into())
        );
        assert_eq!(
            refused(json!({"_attachments": {"x": {"data": "not base64!!"}}})).1,
            "Invalid attachment data for x"
        );
        assert_eq!(
            refused(json!({"_attachments": {"x": {"content_type": "text/plain"}}})).1,
            "Invalid attachment data for x"
        );
        for not_object in [json!([]), json!("s"), json!(null)] {
            assert_eq!(
                refused(json!({ "_attachments": not_object })),
                (
                    "doc_validation".into(),
                    "Bad special document member: _attachments".into()
                )
            );
        }
        // `follows` needs a multipart body and a length.
        let e = refused(json!({"_attachments": {"x": {"follows": true, "length": 1}}}));
        assert_eq!(e.0, "bad_request");
        let e = checked(json!({"_attachments": {"x": {"follows": true}}}), true).unwrap_err();
        assert_eq!(e.name(), "bad_request");
    }

    #[test]
    fn base64_is_read_as_couchdb_reads_it_and_forwarded_canonical() {
        assert_eq!(canonical_base64("aGVsbG8="), Some(None));
        assert_eq!(canonical_base64(""), Some(None));
        assert_eq!(
            canonical_base64("aGVs\r\nbG8="),
            Some(Some("aGVsbG8=".into()))
        );
        assert_eq!(canonical_base64("aGVsbG8"), Some(Some("aGVsbG8=".into())));
        assert_eq!(canonical_base64("aGVsbG9="), Some(Some("aGVsbG8=".into())));
        assert_eq!(canonical_base64("not base64!!"), None);
        assert_eq!(canonical_base64("aGV$"), None);
        let (out, _) =
            checked(json!({"_attachments": {"x": {"data": "aGVs bG8"}}}), false).unwrap();
        assert_eq!(out["_attachments"]["x"]["data"], "aGVsbG8=");
    }

    #[test]
    fn attachment_names_and_replicated_revs() {
        let mut doc = Map::new();
        doc.insert("_attachments".into(), json!({"_x": {"stub": true}}));
        assert_eq!(
            check_attachment_names(&doc).unwrap_err().reason(),
            "Attachment name '_x' starts with prohibited character '_'"
        );
        doc.insert("_attachments".into(), json!({"x_": {"stub": true}}));
        assert!(check_attachment_names(&doc).is_ok());
        assert!(require_rev(true).is_ok());
        assert_eq!(require_rev(false).unwrap_err().name(), "bad_request");
    }
}
