//! `POST /{db}/_bulk_docs`: many writes in one request, including replication's
//! `new_edits: false`. One bad document never fails the batch: it gets its own error row.

use super::Req;
use crate::body::{json_response, Body};
use crate::error::{Error, Result};
use crate::namespace::{set_id, Namespace};
use crate::proxy::State;
use http::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};

pub async fn handle(st: &State, ns: &Namespace, req: Req) -> Result<Response<Body>> {
    let body = req.json().await?;
    let Value::Object(mut body) = body else {
        return Err(Error::bad_request("Request body must be a JSON object"));
    };
    let Some(Value::Array(docs)) = body.remove("docs") else {
        return Err(Error::bad_request(
            "POST body must include `docs` parameter.",
        ));
    };
    let new_edits =
        super::bool_of(body.get("new_edits").unwrap_or(&Value::Null), "new_edits")?.unwrap_or(true);

    let plan = plan(ns, docs, new_edits);
    for id in &plan.locals {
        st.registry.note_local(ns, id).await?;
    }
    let mut results: Vec<Value> = Vec::with_capacity(plan.slots.len());
    let mut backend_rows = Vec::new().into_iter();
    if !plan.forward.is_empty() {
        let mut fwd = Map::new();
        fwd.insert("docs".into(), Value::Array(plan.forward));
        if !new_edits {
            fwd.insert("new_edits".into(), Value::Bool(false));
        }
        let url = st.backend.db_url("/_bulk_docs");
        let (_, answer) = st
            .backend
            .json(Method::POST, &url, Some(&Value::Object(fwd)))
            .await?;
        let Value::Array(rows) = answer else {
            return Err(Error::BadGateway(
                "_bulk_docs answer is not an array".into(),
            ));
        };
        backend_rows = rows.into_iter();
        st.note_write(ns);
    }
    if new_edits {
        // One result per document, in request order.
        for slot in plan.slots {
            match slot {
                Some(local_error) => results.push(local_error),
                None => {
                    let row = backend_rows.next().ok_or_else(|| {
                        Error::BadGateway("_bulk_docs answered too few results".into())
                    })?;
                    results.push(strip_row(ns, row));
                }
            }
        }
    } else {
        // With new_edits=false CouchDB reports only failures.
        results.extend(plan.slots.into_iter().flatten());
        results.extend(backend_rows.map(|r| strip_row(ns, r)));
    }
    Ok(json_response(StatusCode::CREATED, &Value::Array(results)))
}

/// The documents to forward, and for every request document either `None` (answered by the
/// backend) or its local error row.
#[derive(Debug)]
struct Plan {
    forward: Vec<Value>,
    /// Client ids of the `_local` documents among them.
    locals: Vec<String>,
    slots: Vec<Option<Value>>,
}

fn plan(ns: &Namespace, docs: Vec<Value>, new_edits: bool) -> Plan {
    let mut forward = Vec::with_capacity(docs.len());
    let mut locals = Vec::new();
    let mut slots = Vec::with_capacity(docs.len());
    for doc in docs {
        let Value::Object(mut doc) = doc else {
            slots.push(Some(error_row(
                None,
                &Error::bad_request("Document must be a JSON object"),
            )));
            continue;
        };
        let id = match doc.get("_id") {
            Some(Value::String(id)) => id.clone(),
            Some(_) => {
                slots.push(Some(error_row(
                    None,
                    &Error::IllegalDocId("Document id must be a string".into()),
                )));
                continue;
            }
            None if new_edits => super::db::new_uuid(),
            None => {
                slots.push(Some(error_row(
                    None,
                    &Error::bad_request("new_edits=false documents need an _id"),
                )));
                continue;
            }
        };
        match ns.encode_id(&id) {
            Ok(backing) => {
                if id.starts_with("_local/") {
                    locals.push(id);
                }
                set_id(&mut doc, backing);
                forward.push(Value::Object(doc));
                slots.push(None);
            }
            Err(e) => slots.push(Some(error_row(Some(&id), &e))),
        }
    }
    Plan {
        forward,
        locals,
        slots,
    }
}

fn error_row(id: Option<&str>, e: &Error) -> Value {
    let mut row = json!({"error": e.name(), "reason": e.reason()});
    if let Some(id) = id {
        row["id"] = Value::String(id.to_owned());
    }
    row
}

/// A backend result row with its id turned back into the client's.
fn strip_row(ns: &Namespace, mut row: Value) -> Value {
    if let Some(id) = row
        .get("id")
        .and_then(Value::as_str)
        .and_then(|id| ns.decode_id(id))
    {
        row["id"] = Value::String(id);
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_documents_get_their_own_rows() {
        let ns = Namespace::new("u", "d", "e");
        let p = plan(
            &ns,
            vec![
                json!({"_id": "a", "id": "keep me"}),
                json!({"_id": "_bad"}),
                json!([1]),
                json!({"_id": 5}),
                json!({"_id": "_local/c"}),
                json!({"_id": "_design/x"}),
            ],
            true,
        );
        assert_eq!(p.forward.len(), 3);
        assert_eq!(p.forward[0], json!({"_id": "u.d.e:a", "id": "keep me"}));
        assert_eq!(p.forward[1]["_id"], "_local/u.d.e:c");
        assert_eq!(p.forward[2]["_id"], "u.d.e:_design/x");
        assert_eq!(p.slots[1].as_ref().unwrap()["error"], "illegal_docid");
        assert_eq!(p.slots[2].as_ref().unwrap()["error"], "bad_request");
        assert_eq!(p.slots[3].as_ref().unwrap()["error"], "illegal_docid");
        let generated = plan(&ns, vec![json!({"x": 1})], true);
        assert!(generated.forward[0]["_id"]
            .as_str()
            .unwrap()
            .starts_with("u.d.e:"));
        assert!(plan(&ns, vec![json!({"x": 1})], false).forward.is_empty());
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
