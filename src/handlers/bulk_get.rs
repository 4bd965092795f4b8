//! `POST /{db}/_bulk_get`: many documents (and revisions) in one request, JSON form.

use super::Req;
use crate::body::{json_response, Body};
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::proxy::State;
use http::{Method, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Query parameters passed to the backend as they are.
const PARAMS: &[&str] = &["revs", "attachments", "latest", "att_encoding_info"];

pub async fn handle(st: &State, ns: &Namespace, req: Req) -> Result<Response<Body>> {
    let query = super::doc::forward_query(&req, PARAMS);
    let body = req.json().await?;
    if !body.is_object() {
        return Err(Error::bad_request("Request body must be a JSON object"));
    }
    let Some(docs) = body.get("docs").and_then(Value::as_array) else {
        return Err(Error::bad_request("Missing JSON list of 'docs'."));
    };
    // One slot per request item, in order: either filled locally or by the backend.
    let mut results: Vec<Option<Value>> = Vec::with_capacity(docs.len());
    // Items sent to the backend in rounds in which every id appears at most once: some
    // backends (PouchDB Server) merge, and lose, repeated ids of one request, and replicators
    // ask for several revisions of a conflicted document that way.
    let mut rounds: Vec<Vec<(usize, Value)>> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (slot, item) in docs.iter().enumerate() {
        let Some(obj) = item.as_object() else {
            return Err(Error::bad_request("each of 'docs' must be an object"));
        };
        let Some(id) = obj.get("id").and_then(Value::as_str) else {
            results.push(Some(error_result(
                Value::Null,
                Value::Null,
                &Error::bad_request("document id missed"),
            )));
            continue;
        };
        // `_local` documents are not replicated: CouchDB finds none here.
        if id.starts_with("_local/") {
            let rev = obj.get("rev").cloned().unwrap_or(json!("undefined"));
            results.push(Some(error_result(
                json!(id),
                rev,
                &Error::not_found("missing"),
            )));
            continue;
        }
        match ns.encode_doc_id(id) {
            Ok(backing) => {
                let round = seen.entry(backing.clone()).or_insert(0);
                if rounds.len() <= *round {
                    rounds.push(Vec::new());
                }
                let mut f = obj.clone();
                f.insert("id".into(), Value::String(backing));
                rounds[*round].push((slot, Value::Object(f)));
                *round += 1;
                results.push(None);
            }
            Err(e) => results.push(Some(error_result(
                json!(id),
                obj.get("rev").cloned().unwrap_or(Value::Null),
                &e,
            ))),
        }
    }
    let url = st.backend.db_url(&format!("/_bulk_get{query}"));
    for round in rounds {
        let items: Vec<&Value> = round.iter().map(|(_, v)| v).collect();
        let (_, answer) = st
            .backend
            .json(Method::POST, &url, Some(&json!({ "docs": items })))
            .await?;
        let rows = answer
            .get("results")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::BadGateway("_bulk_get answer without results".into()))?;
        // Ids are unique within a round: match results to items by id.
        let mut by_id: HashMap<String, Value> = HashMap::new();
        for row in rows {
            if let Some(id) = row.get("id").and_then(Value::as_str) {
                by_id.insert(id.to_owned(), row.clone());
            }
        }
        for (slot, item) in round {
            let id = item["id"].as_str().unwrap_or("");
            let mut row = by_id.remove(id).ok_or_else(|| {
                Error::BadGateway("_bulk_get answered without a requested document".into())
            })?;
            strip_result(st, ns, &mut row)?;
            results[slot] = Some(row);
        }
    }
    let results: Vec<Value> = results.into_iter().flatten().collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "results": results }),
    ))
}

/// A result row answered without the backend.
fn error_result(id: Value, rev: Value, e: &Error) -> Value {
    json!({
        "id": id,
        "docs": [{"error": {"id": id, "rev": rev, "error": e.name(), "reason": e.reason()}}],
    })
}

/// Rewrites one `{"id", "docs": [{"ok": doc} | {"error": {...}}]}` result.
fn strip_result(st: &State, ns: &Namespace, row: &mut Value) -> Result<()> {
    let client = |v: &Value| v.as_str().and_then(|id| ns.decode_id(id));
    if let Some(id) = row.get("id").and_then(client) {
        row["id"] = Value::String(id);
    }
    if let Some(docs) = row.get_mut("docs").and_then(Value::as_array_mut) {
        for d in docs {
            if let Some(doc) = d.get_mut("ok") {
                super::doc::strip_doc(st, ns, doc)?;
            }
            if let Some(err) = d.get_mut("error") {
                if let Some(id) = err.get("id").and_then(client) {
                    err["id"] = Value::String(id);
                }
            }
        }
    }
    Ok(())
}
