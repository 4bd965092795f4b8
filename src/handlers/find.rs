//! `POST /{db}/_find` and `POST /{db}/_explain`: Mango queries over the caller's namespace.
//!
//! The selector is checked here first ([`crate::mango::Selector`], so a bad one gets CouchDB's
//! error without reaching the backend), then confined to the namespace
//! ([`crate::mango::confine`]: `_id` conditions name backing ids and the namespace's `_id`
//! range is added) and run by CouchDB: over the namespace's partition
//! (`/_partition/{p}/_find`) when the shared database is partitioned, over the `_id` range
//! otherwise. Everything else (`sort`, `limit`, `skip`, `r`, `conflicts`, `update`, `stable`,
//! `execution_stats`, `allow_fallback`) is CouchDB's to check and do.
//!
//! What comes back reveals nothing of other namespaces:
//! - documents carry client ids (each `_id` is checked to be the caller's; `_id` is asked for
//!   even when `fields` leaves it out, and removed again);
//! - a `bookmark` is sealed for the namespace (as sequences are) and opens nowhere else;
//! - `use_index` names only the caller's own indexes ([`super::index`]), and warnings and
//!   `_explain` name indexes as the caller named them; shared indexes the caller does not list
//!   are left out of `_explain`'s candidates;
//! - `execution_stats` keeps `results_returned` and `execution_time_ms`: the counts of keys and
//!   documents examined would include other users' documents in a shared index.

use super::index::{design_id, is_shared, missing_key, UserIndexes};
use super::Req;
use crate::body::{self, json_response, Body};
use crate::error::{Error, Result};
use crate::mango::confine::{confine, unconfine};
use crate::mango::Selector;
use crate::namespace::Namespace;
use crate::state::State;
use http::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};

/// The first byte of a sealed bookmark (sequences use another).
const BOOKMARK: u8 = 0xb0;

/// A `use_index` that names none of the caller's indexes is sent as this, so CouchDB answers
/// exactly as for an index that does not exist.
const UNKNOWN_INDEX: &str = "_design/couchgate-unknown-index";

pub async fn handle(st: &State, ns: &Namespace, req: Req, explain: bool) -> Result<Response<Body>> {
    body::require_json_content_type(&req.headers)?;
    let Value::Object(mut body) = req.json().await? else {
        return Err(Error::bad_request("Request body must be a JSON object"));
    };
    let selector = match body.get("selector") {
        None => return Err(missing_key("selector")),
        Some(s @ Value::Object(_)) => Selector::parse(s)?,
        Some(other) => {
            return Err(Error::Mango {
                name: "invalid_selector_json",
                reason: format!(
                    "Selector must be a JSON object, not: {}",
                    crate::mango::selector::erlang_term(other)
                ),
            })
        }
    };
    let normalized = selector.normalized();
    // CouchDB's `rem` by zero crashes its query (500 badarith): refused as the bad argument it
    // is. (`_changes` matching takes it and matches nothing, as CouchDB's does.)
    if let Some(bad) = zero_divisor(normalized) {
        return Err(Error::Mango {
            name: "bad_arg",
            reason: format!(
                "Bad argument for operator $mod: {}",
                crate::mango::selector::erlang_term(bad)
            ),
        });
    }
    // A selector that is an empty `$and` or `$or` (`{"$or": []}`, `{"a": {"$and": []}}`)
    // finds nothing on CouchDB, though it matches everything elsewhere; confined, it would
    // find everything.
    if !explain && is_empty_combination(normalized) {
        return Ok(json_response(StatusCode::OK, &json!({"docs": []})));
    }
    // The caller's index list is read only when the query or its answer names an index:
    // a plain query is one backend request.
    let needs_list = explain || body.contains_key("use_index");
    let mut mine = if needs_list {
        UserIndexes::load(st, ns).await?
    } else {
        UserIndexes::default()
    };
    body.insert("selector".into(), confine(normalized, &ns.start_key())?);
    // `_id` is always asked for, so every document's namespace can be checked.
    let mut drop_id = false;
    if let Some(Value::Array(fields)) = body.get_mut("fields") {
        if !fields.is_empty() && !fields.iter().any(|f| f == "_id") {
            fields.push(json!("_id"));
            drop_id = true;
        }
    }
    let asked_index = body.get("use_index").cloned();
    if let Some(use_index) = &asked_index {
        let shared = match mine.named(use_index) {
            Some(i) => json!([i.shared, "idx"]),
            None if use_index == &json!([]) || use_index == &json!("") => use_index.clone(),
            None => json!(UNKNOWN_INDEX),
        };
        body.insert("use_index".into(), shared);
    }
    let asked_bookmark = body.get("bookmark").cloned();
    if let Some(Value::String(b)) = &asked_bookmark {
        if b != "nil" {
            let opened = st
                .changes
                .codec()
                .open_opaque(ns.partition(), BOOKMARK, b)
                .and_then(|raw| String::from_utf8(raw).ok())
                .ok_or_else(|| Error::Mango {
                    name: "invalid_bookmark",
                    reason: format!("Invalid bookmark value: {}", json!(b)),
                })?;
            body.insert("bookmark".into(), json!(opened));
        }
    }

    let endpoint = if explain { "_explain" } else { "_find" };
    let path = if st.backend.is_partitioned().await? {
        format!(
            "/_partition/{}/{endpoint}",
            crate::backend::encode_component(ns.partition())
        )
    } else {
        format!("/{endpoint}")
    };
    let answer = st
        .backend
        .json(
            Method::POST,
            &st.backend.db_url(&path),
            Some(&Value::Object(body)),
        )
        .await;
    if !needs_list && names_an_index(&answer) {
        mine = UserIndexes::load(st, ns).await?;
    }
    let (_, answer) = answer.map_err(|e| named_in_user_terms(e, &mine, asked_index.as_ref()))?;
    let Value::Object(mut answer) = answer else {
        return Err(Error::BadGateway(format!(
            "{endpoint} answer is not an object"
        )));
    };
    if explain {
        explained(
            ns,
            &mine,
            &selector,
            asked_index,
            asked_bookmark,
            &mut answer,
        );
    } else {
        found(st, ns, &mine, asked_index.as_ref(), drop_id, &mut answer)?;
    }
    Ok(json_response(StatusCode::OK, &Value::Object(answer)))
}

/// Whether a backend answer (or error) names a shared index, which the caller's terms replace.
fn names_an_index(answer: &Result<(StatusCode, Value)>) -> bool {
    let text = match answer {
        Ok((_, v)) => v.get("warning").map(Value::to_string).unwrap_or_default(),
        Err(e) => e.reason(),
    };
    text.contains(super::index::SHARED_PREFIX)
}

/// The argument of a `$mod` with divisor 0, anywhere in a normalised selector.
fn zero_divisor(v: &Value) -> Option<&Value> {
    match v {
        Value::Object(m) => m.iter().find_map(|(k, x)| match (k.as_str(), x) {
            ("$mod", Value::Array(a)) if a.first() == Some(&json!(0)) => Some(x),
            _ => zero_divisor(x),
        }),
        Value::Array(a) => a.iter().find_map(zero_divisor),
        _ => None,
    }
}

/// `{"$and": []}` or `{"$or": []}`, the whole normalised selector.
fn is_empty_combination(v: &Value) -> bool {
    match v {
        Value::Object(m) if m.len() == 1 => m
            .iter()
            .all(|(k, x)| (k == "$and" || k == "$or") && x.as_array().is_some_and(Vec::is_empty)),
        _ => false,
    }
}

/// A shared index's design document id as the caller knows it: their own `ddoc`, or what they
/// asked for in `use_index`.
fn user_ddoc(mine: &UserIndexes, asked: Option<&Value>, backend_ddoc: &str) -> Option<String> {
    if backend_ddoc == UNKNOWN_INDEX {
        return asked.map(|a| match a {
            Value::String(d) => design_id(d),
            Value::Array(a) => a
                .first()
                .and_then(Value::as_str)
                .map(design_id)
                .unwrap_or_default(),
            other => other.to_string(),
        });
    }
    mine.by_shared(backend_ddoc).map(|i| i.ddoc.clone())
}

/// Rewrites the names of shared indexes in a text (a warning or an error reason).
fn in_user_terms(text: &str, mine: &UserIndexes, asked: Option<&Value>) -> String {
    let mut out = text.to_owned();
    let mut names: Vec<&str> = mine.list.iter().map(|i| i.shared.as_str()).collect();
    names.push(UNKNOWN_INDEX);
    for shared in names {
        if out.contains(shared) {
            let user = user_ddoc(mine, asked, shared).unwrap_or_default();
            out = out
                .replace(&format!("{shared}, idx"), &user)
                .replace(shared, &user);
        }
    }
    out
}

fn named_in_user_terms(e: Error, mine: &UserIndexes, asked: Option<&Value>) -> Error {
    e.with_backend_reason(|reason| in_user_terms(reason, mine, asked))
}

/// A `_find` answer in the caller's terms.
fn found(
    st: &State,
    ns: &Namespace,
    mine: &UserIndexes,
    asked: Option<&Value>,
    drop_id: bool,
    answer: &mut Map<String, Value>,
) -> Result<()> {
    if let Some(Value::Array(docs)) = answer.get_mut("docs") {
        for doc in docs.iter_mut() {
            if doc.get("_id").and_then(Value::as_str).is_none() {
                return Err(Error::BadGateway("a _find document without _id".into()));
            }
            ns.strip_doc(doc)?;
            if drop_id {
                if let Some(d) = doc.as_object_mut() {
                    d.shift_remove("_id");
                }
            }
        }
    }
    if let Some(Value::String(b)) = answer.get_mut("bookmark") {
        if b != "nil" {
            *b = st
                .changes
                .codec()
                .seal_opaque(ns.partition(), BOOKMARK, b.as_bytes());
        }
    }
    if let Some(Value::String(w)) = answer.get_mut("warning") {
        *w = in_user_terms(w, mine, asked);
    }
    if let Some(Value::Object(stats)) = answer.get_mut("execution_stats") {
        stats.retain(|k, _| k == "results_returned" || k == "execution_time_ms");
    }
    Ok(())
}

/// How CouchDB shows an index in `_explain`, in the caller's terms; `None` for a shared index
/// the caller does not list.
fn index_shown(mine: &UserIndexes, index: &Value) -> Option<Value> {
    let ddoc = index["ddoc"].as_str();
    match ddoc {
        Some(d) if is_shared(d) => {
            let user = mine.by_shared(d)?;
            let mut shown = index.clone();
            shown["ddoc"] = json!(user.ddoc);
            shown["name"] = json!(user.name);
            Some(shown)
        }
        _ => Some(index.clone()),
    }
}

/// An `_explain` answer in the caller's terms.
fn explained(
    ns: &Namespace,
    mine: &UserIndexes,
    selector: &Selector,
    asked_index: Option<Value>,
    asked_bookmark: Option<Value>,
    answer: &mut Map<String, Value>,
) {
    answer.insert("dbname".into(), json!(ns.db()));
    answer.insert("selector".into(), selector.normalized().clone());
    if let Some(index) = answer.get("index").cloned() {
        let shown = index_shown(mine, &index).unwrap_or_else(|| {
            let mut anonymous = index.clone();
            anonymous["ddoc"] = json!("_design/couchgate-shared");
            anonymous["name"] = json!("shared");
            anonymous
        });
        answer.insert("index".into(), shown);
    }
    if let Some(Value::Array(candidates)) = answer.get_mut("index_candidates") {
        candidates.retain_mut(|c| match index_shown(mine, &c["index"]) {
            Some(shown) => {
                c["index"] = shown;
                true
            }
            None => false,
        });
    }
    if let Some(Value::Object(opts)) = answer.get_mut("opts") {
        opts.insert("use_index".into(), asked_index.unwrap_or(json!([])));
        opts.insert("bookmark".into(), asked_bookmark.unwrap_or(json!("nil")));
        opts.insert("partition".into(), json!(""));
    }
    // The scan's bounds (CouchDB's `mrargs`, PouchDB Server's `range`) in client ids.
    if let Some(range) = answer.get_mut("range") {
        unconfine(range, &ns.start_key());
    }
    if let Some(mrargs) = answer.get_mut("mrargs") {
        unconfine(mrargs, &ns.start_key());
        if let Some(m) = mrargs.as_object_mut() {
            if m.contains_key("partition") {
                m.insert("partition".into(), Value::Null);
            }
        }
    }
    answer.insert("partitioned".into(), json!(false));
}
