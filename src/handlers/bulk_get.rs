//! `POST /{db}/_bulk_get`: many documents (and revisions) in one request, JSON form.

use super::Req;
use crate::body::{json_response, Body};
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::proxy::State;
use http::{Method, Response, StatusCode};
use serde_json::{json, Value};

/// Query parameters passed to the backend as they are.
const PARAMS: &[&str] = &["revs", "attachments", "latest", "att_encoding_info"];

pub async fn handle(st: &State, ns: &Namespace, req: Req) -> Result<Response<Body>> {
    let query = super::doc::forward_query(&req, PARAMS);
    let body = req.json().await?;
    let Some(docs) = body.get("docs").and_then(Value::as_array) else {
        return Err(Error::bad_request("Missing JSON list of 'docs'."));
    };
    // One slot per request item, in order: either filled locally or by the backend.
    let mut results: Vec<Option<Value>> = Vec::with_capacity(docs.len());
    let mut forward = Vec::new();
    for item in docs {
        let Some(obj) = item.as_object() else {
            return Err(Error::bad_request("each of 'docs' must be an object"));
        };
        let id = obj.get("id").and_then(Value::as_str).unwrap_or("");
        match ns.encode_doc_id(id) {
            Ok(backing) => {
                let mut f = obj.clone();
                f.insert("id".into(), Value::String(backing));
                forward.push(Value::Object(f));
                results.push(None);
            }
            Err(e) => results.push(Some(json!({
                "id": id,
                "docs": [{"error": {
                    "id": id,
                    "rev": obj.get("rev").cloned().unwrap_or(Value::Null),
                    "error": e.name(),
                    "reason": e.reason(),
                }}],
            }))),
        }
    }
    if !forward.is_empty() {
        let url = st.backend.db_url(&format!("/_bulk_get{query}"));
        let (_, answer) = st
            .backend
            .json(Method::POST, &url, Some(&json!({ "docs": forward })))
            .await?;
        let rows = answer
            .get("results")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::BadGateway("_bulk_get answer without results".into()))?;
        if rows.len() != forward.len() {
            return Err(Error::BadGateway(
                "_bulk_get answered the wrong number of results".into(),
            ));
        }
        let mut rows = rows.iter().cloned();
        for slot in results.iter_mut().filter(|s| s.is_none()) {
            let mut row = rows.next().expect("lengths checked above");
            strip_result(st, ns, &mut row)?;
            *slot = Some(row);
        }
    }
    let results: Vec<Value> = results.into_iter().flatten().collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "results": results }),
    ))
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
