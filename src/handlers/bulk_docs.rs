//! `POST /{db}/_bulk_docs`: many writes in one request, including replication's
//! `new_edits: false`. As in CouchDB, a document that is not an object, whose `_id` is not a
//! string or is reserved, or that fails CouchDB's document checks ([`crate::validate`]) fails
//! the whole request before anything is written; conflicts and other refusals of single
//! documents are rows of the answer, `missing_stub` ([`super::stubs`]) included.

use super::stubs::{self, Verdict};
use super::{offload, Req};
use crate::body::{self, json_response, Body};
use crate::error::{Error, Result};
use crate::namespace::{set_id, Namespace};
use crate::state::State;
use crate::validate;
use http::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};

pub async fn handle(st: &State, ns: &Namespace, req: Req) -> Result<Response<Body>> {
    body::require_json_content_type(&req.headers)?;
    let bytes = req.bytes().await?;
    let ns_owned = ns.clone();
    let (mut plan, new_edits, all_or_nothing) =
        offload(bytes.len(), move || read(&ns_owned, &bytes)).await?;
    let verdicts = stubs::resolve(st, ns, &mut plan.docs, !new_edits, None).await?;
    let (docs, mut refused) = split(ns, plan.docs, verdicts);
    if all_or_nothing && !refused.is_empty() {
        return Err(refused.remove(0).error);
    }
    forward(
        st,
        ns,
        docs,
        new_edits,
        all_or_nothing,
        &plan.locals,
        refused,
    )
    .await
}

/// A document refused before the backend saw it.
struct Refused {
    /// Its position in the request.
    at: usize,
    /// Its client id.
    id: String,
    error: Error,
}

/// Sorts documents by their verdicts: those to write (with their positions in the request),
/// and the refused ones; replicated revisions the backend has are dropped.
fn split(
    ns: &Namespace,
    docs: Vec<Value>,
    verdicts: Vec<Verdict>,
) -> (Vec<(usize, Value)>, Vec<Refused>) {
    let mut write = Vec::new();
    let mut refused = Vec::new();
    for (at, (doc, verdict)) in docs.into_iter().zip(verdicts).enumerate() {
        match verdict {
            Verdict::Write => write.push((at, doc)),
            Verdict::Stored => {}
            Verdict::Refused(error) => {
                let id = doc["_id"]
                    .as_str()
                    .and_then(|b| ns.decode_id(b))
                    .unwrap_or_default();
                refused.push(Refused { at, id, error });
            }
        }
    }
    (write, refused)
}

/// Writes `docs` and answers their rows, with a row for each refused document at its place.
async fn forward(
    st: &State,
    ns: &Namespace,
    docs: Vec<(usize, Value)>,
    new_edits: bool,
    all_or_nothing: bool,
    locals: &[String],
    refused: Vec<Refused>,
) -> Result<Response<Body>> {
    for id in locals {
        st.registry.note_local(ns, id).await?;
    }
    let refused_rows: Vec<(usize, Value)> = refused
        .into_iter()
        .map(|r| {
            let row = json!({"id": r.id, "error": r.error.name(), "reason": r.error.reason()});
            (r.at, row)
        })
        .collect();
    if docs.is_empty() {
        let rows: Vec<Value> = refused_rows.into_iter().map(|(_, r)| r).collect();
        return Ok(json_response(StatusCode::CREATED, &Value::Array(rows)));
    }
    let positions: Vec<usize> = docs.iter().map(|(i, _)| *i).collect();
    let mut fwd = Map::new();
    fwd.insert(
        "docs".into(),
        Value::Array(docs.into_iter().map(|(_, d)| d).collect()),
    );
    if !new_edits {
        fwd.insert("new_edits".into(), Value::Bool(false));
    }
    if all_or_nothing {
        fwd.insert("all_or_nothing".into(), Value::Bool(true));
    }
    let url = st.backend.db_url("/_bulk_docs");
    let (status, answer) = st
        .backend
        .json_any_status(
            Method::POST,
            &url,
            Some(&Value::Object(fwd)),
            st.backend.timeout(),
        )
        .await?;
    // 417: `all_or_nothing` refused, with a row per document.
    if !status.is_success() && status != StatusCode::EXPECTATION_FAILED {
        return Err(crate::backend::backend_error(status, &answer));
    }
    let Value::Array(rows) = answer else {
        return Err(Error::BadGateway(
            "_bulk_docs answer is not an array".into(),
        ));
    };
    st.note_write(ns, &Value::Array(rows.clone()));
    let rows = rows.into_iter().map(|r| strip_row(ns, r)).collect();
    let rows = merge_rows(&positions, rows, refused_rows);
    Ok(json_response(status, &Value::Array(rows)))
}

/// The backend's rows for the documents written at `positions` and the rows of refused ones,
/// in request order. A backend answering fewer rows than documents (CouchDB omits the
/// successes of `new_edits: false`) gets the refusals after its rows.
fn merge_rows(positions: &[usize], rows: Vec<Value>, refused: Vec<(usize, Value)>) -> Vec<Value> {
    if rows.len() != positions.len() {
        return rows
            .into_iter()
            .chain(refused.into_iter().map(|(_, r)| r))
            .collect();
    }
    let mut all: Vec<(usize, Value)> = positions.iter().copied().zip(rows).collect();
    all.extend(refused);
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

/// Parses and checks a request body: the plan, `new_edits` and `all_or_nothing`.
fn read(ns: &Namespace, bytes: &[u8]) -> Result<(Plan, bool, bool)> {
    let body = body::parse_json(bytes)?;
    let Value::Object(mut body) = body else {
        return Err(Error::bad_request("Request body must be a JSON object"));
    };
    let docs = match body.remove("docs") {
        Some(Value::Array(docs)) => docs,
        Some(_) => return Err(Error::bad_request("`docs` parameter must be an array.")),
        None => {
            return Err(Error::bad_request(
                "POST body must include `docs` parameter.",
            ))
        }
    };
    let flag = |name: &str| match body.get(name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(Error::bad_request(format!("`{name}` must be a boolean"))),
    };
    let new_edits = flag("new_edits")?.unwrap_or(true);
    let all_or_nothing = flag("all_or_nothing")?.unwrap_or(false);

    let plan = plan(ns, docs, new_edits)?;
    Ok((plan, new_edits, all_or_nothing))
}

/// The documents to forward, with backing ids.
#[derive(Debug)]
struct Plan {
    docs: Vec<Value>,
    /// Client ids of the `_local` documents among them.
    locals: Vec<String>,
}

/// Checks every document, in CouchDB's order, and gives it its backing id; the first bad one
/// fails the request.
fn plan(ns: &Namespace, docs: Vec<Value>, new_edits: bool) -> Result<Plan> {
    let mut out = Vec::with_capacity(docs.len());
    let mut locals = Vec::new();
    for doc in docs {
        let Value::Object(mut doc) = doc else {
            return Err(Error::bad_request("Document must be a JSON object"));
        };
        let shape = validate::check_doc(&mut doc, false)?;
        if !new_edits {
            validate::require_rev(shape.has_rev)?;
        }
        validate::check_attachment_names(&doc)?;
        let id = match doc.get("_id") {
            Some(Value::String(id)) => id.clone(),
            _ => super::new_uuid(),
        };
        let backing = ns.encode_id(&id)?;
        if id.starts_with("_local/") {
            locals.push(id);
        }
        set_id(&mut doc, backing);
        out.push(Value::Object(doc));
    }
    Ok(Plan { docs: out, locals })
}

/// A backend result row with its id turned back into the client's, and its reason cleaned
/// of backing ids.
fn strip_row(ns: &Namespace, mut row: Value) -> Value {
    let Some(backing) = row.get("id").and_then(Value::as_str).map(str::to_owned) else {
        return row;
    };
    if let Some(id) = ns.decode_id(&backing) {
        row["id"] = Value::String(id);
    }
    if let Some(reason) = row.get("reason").and_then(Value::as_str) {
        row["reason"] = Value::String(ns.client_reason(reason, &backing));
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_get_backing_ids() {
        let ns = Namespace::new("u", "d", "e");
        let p = plan(
            &ns,
            vec![
                json!({"_id": "a", "id": "keep me"}),
                json!({"_id": "_local/c"}),
                json!({"_id": "_design/x"}),
                json!({"x": 1}),
            ],
            true,
        )
        .unwrap();
        assert_eq!(p.docs[0], json!({"_id": "u.d.e:a", "id": "keep me"}));
        assert_eq!(p.docs[1]["_id"], "_local/u.d.e:c");
        assert_eq!(p.docs[2]["_id"], "u.d.e:_design/x");
        assert!(p.docs[3]["_id"].as_str().unwrap().starts_with("u.d.e:"));
        assert_eq!(p.locals, vec!["_local/c".to_owned()]);
    }

    #[test]
    fn one_bad_document_fails_the_request() {
        let ns = Namespace::new("u", "d", "e");
        for (bad, name) in [
            (json!({"_id": "_bad"}), "illegal_docid"),
            (json!({"_id": 5}), "illegal_docid"),
            (json!({"_id": null}), "illegal_docid"),
            (json!([1]), "bad_request"),
            (json!({"_foo": 1}), "doc_validation"),
            (json!({"_revisions": "nope"}), "doc_validation"),
            (json!({"_attachments": {"x": {"data": 5}}}), "bad_request"),
            (
                json!({"_attachments": {"x": {"follows": true, "length": 1}}}),
                "bad_request",
            ),
            (json!({"_attachments": {"_x": {"data": ""}}}), "bad_request"),
        ] {
            let e = plan(&ns, vec![json!({"_id": "ok"}), bad.clone()], true).unwrap_err();
            assert_eq!(e.name(), name, "{bad}");
        }
        // Replicated writes must name their revision.
        let e = plan(&ns, vec![json!({"_id": "a"})], false).unwrap_err();
        assert_eq!(e.name(), "bad_request");
        let p = plan(
            &ns,
            vec![json!({"_id": "a", "_revisions": {"start": 2, "ids": ["b", "a"]}})],
            false,
        )
        .unwrap();
        assert_eq!(p.docs[0]["_rev"], "2-b");
    }

    #[test]
    fn refused_rows_keep_their_places() {
        let row = |n: u64| json!({ "n": n });
        assert_eq!(
            merge_rows(
                &[0, 2],
                vec![row(0), row(2)],
                vec![(1, row(1)), (3, row(3))]
            ),
            [row(0), row(1), row(2), row(3)]
        );
        // CouchDB answers no rows for replicated successes: the refusals follow.
        assert_eq!(merge_rows(&[0, 2], vec![], vec![(1, row(1))]), [row(1)]);
    }

    #[test]
    fn rows_are_stripped() {
        let ns = Namespace::new("u", "d", "e");
        assert_eq!(
            strip_row(&ns, json!({"id": "u.d.e:a", "rev": "1-x"})),
            json!({"id": "a", "rev": "1-x"})
        );
    }
}
