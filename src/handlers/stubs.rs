//! Attachment stubs (`{"stub": true}` in a written document's `_attachments`): an attachment
//! kept from the revision the write builds on. Shared by `PUT` and `POST` of a document,
//! multipart `PUT` and `_bulk_docs`.
//!
//! A backend must never resolve a stub itself: PouchDB Server looks a stub's `digest` up among
//! the attachments of every document, so a stub naming another user's digest was written (or
//! refused as unknown), which confirmed a guess of that user's attachment content. couchgate
//! resolves every stub as CouchDB does (`couch_db:prep_and_validate_update/5`,
//! `prep_and_validate_replicated_updates/5`, `couch_att:merge_stubs/2`):
//! - the stub's document is the revision the write builds on: the `_rev` it updates, or, for a
//!   replicated write (`new_edits=false`), the nearest ancestor of its `_revisions` that the
//!   document's own revision tree holds;
//! - that revision must have an attachment of the stub's name (and, when the stub gives a
//!   `revpos`, of that `revpos`); its own entry, digest included, replaces the stub, whatever
//!   digest the client sent (CouchDB ignores it too);
//! - anything else is CouchDB's 412 `missing_stub`.
//!
//! So the digest a backend sees is always one of the same document's earlier revision. The
//! revisions are read in one batched `_bulk_get` for all documents of a request that carry
//! stubs (a replicated write first asks one batched `_revs_diff` which ancestors exist); a
//! document whose own revision already exists is, as in CouchDB, not written again.
//! `_local` documents keep no attachments and are left alone.

use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::state::State;
use http::Method;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};

/// Most ancestors of one replicated document looked at (CouchDB's default `revs_limit`).
const MAX_ANCESTORS: usize = 1000;

/// What happens to one document of a write.
#[derive(Debug)]
pub enum Verdict {
    /// Written (its stubs, if any, resolved).
    Write,
    /// A replicated revision the backend already has: nothing to write, as in CouchDB.
    Stored,
    /// Refused with `missing_stub`.
    Refused(Error),
}

/// The revision a document's stubs refer to, as far as the request says.
#[derive(Debug, PartialEq, Eq)]
enum Base {
    /// An edit of this revision.
    Rev(String),
    /// A replicated revision `rev` with its ancestors, nearest first.
    Replicated { rev: String, ancestors: Vec<String> },
    /// No revision: a new document cannot keep attachments.
    None,
}

/// The names of a document's stubs, in document order.
pub fn stub_names(doc: &Map<String, Value>) -> Vec<String> {
    let Some(Value::Object(atts)) = doc.get("_attachments") else {
        return Vec::new();
    };
    atts.iter()
        .filter(|(_, att)| att.get("stub") == Some(&Value::Bool(true)))
        .map(|(name, _)| name.clone())
        .collect()
}

/// CouchDB's refusal of the stub `name` of `id` (a client id).
pub fn missing(id: &str, name: &str) -> Error {
    Error::MissingStub(format!("Invalid attachment stub in {id} for {name}"))
}

/// The revision a checked document builds on. `replicated`: `new_edits=false`; `rev_outside`:
/// the revision named outside the body (`rev`, `If-Match`), which CouchDB reads when the body
/// names none.
fn base(doc: &Map<String, Value>, replicated: bool, rev_outside: Option<&str>) -> Base {
    let rev = doc
        .get("_rev")
        .and_then(Value::as_str)
        .or(rev_outside)
        .map(str::to_owned);
    match (rev, replicated) {
        (None, _) => Base::None,
        (Some(rev), false) => Base::Rev(rev),
        (Some(rev), true) => Base::Replicated {
            rev,
            ancestors: ancestors(doc),
        },
    }
}

/// The ancestors `_revisions` names (checked by [`crate::validate`]), nearest first.
fn ancestors(doc: &Map<String, Value>) -> Vec<String> {
    let Some(r) = doc.get("_revisions") else {
        return Vec::new();
    };
    let (Some(start), Some(ids)) = (r["start"].as_u64(), r["ids"].as_array()) else {
        return Vec::new();
    };
    ids.iter()
        .enumerate()
        .skip(1)
        .take(MAX_ANCESTORS)
        .filter_map(|(i, id)| Some(format!("{}-{}", start.checked_sub(i as u64)?, id.as_str()?)))
        .collect()
}

/// Replaces every stub of `doc` by the entry of the same name in `base_atts` (the
/// `_attachments` of the revision it builds on, `None` when there is no such revision).
/// `id`: the client id, for the error.
fn merge(
    doc: &mut Map<String, Value>,
    base_atts: Option<&Map<String, Value>>,
    id: &str,
) -> Result<()> {
    let Some(Value::Object(atts)) = doc.get_mut("_attachments") else {
        return Ok(());
    };
    for (name, att) in atts.iter_mut() {
        if att.get("stub") != Some(&Value::Bool(true)) {
            continue;
        }
        let kept = base_atts
            .and_then(|b| b.get(name))
            .filter(|kept| match att.get("revpos") {
                None | Some(Value::Null) => true,
                Some(pos) => kept.get("revpos") == Some(pos),
            })
            .and_then(Value::as_object)
            .ok_or_else(|| missing(id, name))?;
        let mut entry = kept.clone();
        // The stored entry, as a stub: never its data, whatever the read included.
        entry.remove("data");
        entry.insert("stub".into(), Value::Bool(true));
        *att = Value::Object(entry);
    }
    Ok(())
}

/// Checks and resolves the stubs of `docs` (objects with backing ids, already checked by
/// [`crate::validate`]) against the backend; one verdict per document.
pub async fn resolve(
    st: &State,
    ns: &Namespace,
    docs: &mut [Value],
    replicated: bool,
    rev_outside: Option<&str>,
) -> Result<Vec<Verdict>> {
    let mut verdicts: Vec<Verdict> = docs.iter().map(|_| Verdict::Write).collect();
    // (index, backing id, client id, base)
    let mut pending = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let Some(obj) = doc.as_object() else { continue };
        let Some(backing) = obj.get("_id").and_then(Value::as_str) else {
            continue;
        };
        let names = stub_names(obj);
        if names.is_empty() || backing.starts_with("_local/") {
            continue;
        }
        let client = ns.decode_id(backing).unwrap_or_default();
        match base(obj, replicated, rev_outside) {
            Base::None => verdicts[i] = Verdict::Refused(missing(&client, &names[0])),
            b => pending.push((i, backing.to_owned(), client, b)),
        }
    }
    if pending.is_empty() {
        return Ok(verdicts);
    }
    let stored = if replicated {
        known_revs(st, &pending).await?
    } else {
        HashSet::new()
    };
    // The revision each pending document builds on, if any.
    let mut wanted: Vec<(usize, String, String, Option<String>)> = Vec::new();
    for (i, backing, client, b) in pending {
        let rev = match b {
            Base::Rev(rev) => Some(rev),
            Base::Replicated { rev, ancestors } => {
                if stored.contains(&(backing.clone(), rev)) {
                    verdicts[i] = Verdict::Stored;
                    continue;
                }
                ancestors
                    .into_iter()
                    .find(|a| stored.contains(&(backing.clone(), a.clone())))
            }
            Base::None => None,
        };
        wanted.push((i, backing, client, rev));
    }
    let revs: Vec<(String, String)> = wanted
        .iter()
        .filter_map(|(_, b, _, r)| Some((b.clone(), r.clone()?)))
        .collect();
    let found = read_revs(st, &revs).await?;
    for (i, backing, client, rev) in wanted {
        let base_atts = rev
            .and_then(|r| found.get(&(backing, r)))
            .and_then(|doc| doc.get("_attachments"))
            .and_then(Value::as_object);
        let Some(doc) = docs[i].as_object_mut() else {
            continue;
        };
        if let Err(e) = merge(doc, base_atts, &client) {
            verdicts[i] = Verdict::Refused(e);
        }
    }
    Ok(verdicts)
}

/// [`resolve`] for the one document of a single-document write: `Ok(false)` when it is a
/// replicated revision the backend already has (nothing to write).
pub async fn resolve_one(
    st: &State,
    ns: &Namespace,
    doc: &mut Map<String, Value>,
    replicated: bool,
    rev_outside: Option<&str>,
) -> Result<bool> {
    if stub_names(doc).is_empty() {
        return Ok(true);
    }
    let mut docs = [Value::Object(std::mem::take(doc))];
    let verdict = resolve(st, ns, &mut docs, replicated, rev_outside)
        .await?
        .pop();
    if let [Value::Object(resolved)] = &mut docs {
        *doc = std::mem::take(resolved);
    }
    match verdict {
        Some(Verdict::Refused(e)) => Err(e),
        Some(Verdict::Stored) => Ok(false),
        Some(Verdict::Write) | None => Ok(true),
    }
}

/// Which of the pending documents' revisions and ancestors their revision trees hold, asked
/// in one `_revs_diff`.
async fn known_revs(
    st: &State,
    pending: &[(usize, String, String, Base)],
) -> Result<HashSet<(String, String)>> {
    let mut asked: HashMap<String, Vec<String>> = HashMap::new();
    for (_, backing, _, b) in pending {
        if let Base::Replicated { rev, ancestors } = b {
            let list = asked.entry(backing.clone()).or_default();
            list.push(rev.clone());
            list.extend(ancestors.iter().cloned());
        }
    }
    if asked.is_empty() {
        return Ok(HashSet::new());
    }
    let body: Map<String, Value> = asked
        .iter()
        .map(|(id, revs)| (id.clone(), json!(revs)))
        .collect();
    let url = st.backend.db_url("/_revs_diff");
    let (_, answer) = st
        .backend
        .json(Method::POST, &url, Some(&Value::Object(body)))
        .await?;
    let mut known = HashSet::new();
    for (id, revs) in asked {
        let missing: HashSet<&str> = answer[&id]["missing"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for rev in revs {
            if !missing.contains(rev.as_str()) {
                known.insert((id.clone(), rev));
            }
        }
    }
    Ok(known)
}

/// The documents at the given `(backing id, revision)` pairs that the backend has, read with
/// their attachment stubs in one `_bulk_get` (more only when an id repeats: PouchDB Server
/// loses repeated ids of one request).
async fn read_revs(
    st: &State,
    revs: &[(String, String)],
) -> Result<HashMap<(String, String), Value>> {
    let mut found = HashMap::new();
    let mut rest: Vec<&(String, String)> = revs.iter().collect();
    while !rest.is_empty() {
        let mut ids = HashSet::new();
        let (round, later): (Vec<_>, Vec<_>) =
            rest.into_iter().partition(|(id, _)| ids.insert(id.clone()));
        rest = later;
        let items: Vec<Value> = round
            .iter()
            .map(|(id, rev)| json!({"id": id, "rev": rev}))
            .collect();
        let url = st.backend.db_url("/_bulk_get");
        let (_, answer) = st
            .backend
            .json(Method::POST, &url, Some(&json!({ "docs": items })))
            .await?;
        for result in answer["results"].as_array().into_iter().flatten() {
            for doc in result["docs"].as_array().into_iter().flatten() {
                let ok = &doc["ok"];
                if let (Some(id), Some(rev)) = (ok["_id"].as_str(), ok["_rev"].as_str()) {
                    found.insert((id.to_owned(), rev.to_owned()), ok.clone());
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("an object")
    }

    #[test]
    fn stubs_build_on_the_revision_written_over() {
        let doc =
            obj(json!({"_rev": "2-b", "_attachments": {"a": {"stub": true}, "d": {"data": ""}}}));
        assert_eq!(stub_names(&doc), ["a"]);
        assert_eq!(base(&doc, false, None), Base::Rev("2-b".into()));
        let bare = obj(json!({"_attachments": {"a": {"stub": true}}}));
        assert_eq!(base(&bare, false, Some("3-c")), Base::Rev("3-c".into()));
        assert_eq!(base(&bare, false, None), Base::None);
        let replicated =
            obj(json!({"_rev": "3-c", "_revisions": {"start": 3, "ids": ["c", "b", "a"]}}));
        assert_eq!(
            base(&replicated, true, None),
            Base::Replicated {
                rev: "3-c".into(),
                ancestors: vec!["2-b".into(), "1-a".into()]
            }
        );
        // Without `_revisions` a replicated revision has no known ancestor.
        assert_eq!(
            base(&obj(json!({"_rev": "3-c"})), true, None),
            Base::Replicated {
                rev: "3-c".into(),
                ancestors: vec![]
            }
        );
    }

    #[test]
    fn a_stub_takes_the_stored_entry_or_is_refused() {
        let stored = obj(json!({
            "a": {"stub": true, "digest": "md5-own", "revpos": 1, "length": 4, "content_type": "text/plain"},
        }));
        // The client's digest is never forwarded: the stored one replaces it.
        let mut doc = obj(json!({"_attachments": {
            "a": {"stub": true, "digest": "md5-someone-elses"},
            "new": {"data": "aGk=", "content_type": "text/plain"},
        }}));
        merge(&mut doc, Some(&stored), "d").unwrap();
        assert_eq!(doc["_attachments"]["a"], stored["a"]);
        assert_eq!(doc["_attachments"]["new"]["data"], "aGk=");
        let mut with_pos = obj(json!({"_attachments": {"a": {"stub": true, "revpos": 1}}}));
        merge(&mut with_pos, Some(&stored), "d").unwrap();

        for (atts, base) in [
            (json!({"b": {"stub": true}}), Some(&stored)),
            (json!({"a": {"stub": true, "revpos": 2}}), Some(&stored)),
            (json!({"a": {"stub": true, "digest": "md5-own"}}), None),
        ] {
            let mut doc = obj(json!({ "_attachments": atts }));
            let e = merge(&mut doc, base, "d").unwrap_err();
            assert_eq!((e.status().as_u16(), e.name()), (412, "missing_stub"));
            assert!(
                e.reason().starts_with("Invalid attachment stub in d for "),
                "{}",
                e.reason()
            );
        }
    }
}
