//! `POST /{db}/_bulk_get`: many documents (and revisions) in one request, in JSON, or in
//! CouchDB's multipart form for a client that does not take JSON.

use super::Req;
use crate::body::{json_response, Body};
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::state::State;
use crate::validate;
use http::{Method, Response, StatusCode};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// Boolean query parameters passed on when `true` (CouchDB ignores other values).
const FLAGS: &[&str] = &["revs", "attachments", "latest", "att_encoding_info"];

/// Items asked of the backend per request.
const ITEMS_CHUNK: usize = 100;

/// Parameters CouchDB refuses here: they belong in the items.
const REFUSED: &[&str] = &["open_revs", "new_edits", "w", "rev", "atts_since"];

pub async fn handle(st: &State, ns: &Namespace, req: Req) -> Result<Response<Body>> {
    if let Some((k, _)) = req
        .query
        .0
        .iter()
        .find(|(k, _)| REFUSED.contains(&k.as_str()))
    {
        return Err(Error::bad_request(format!(
            "\"{k}\" query parameter is not acceptable"
        )));
    }
    let flags: Vec<&str> = FLAGS
        .iter()
        .copied()
        .filter(|flag| req.query.0.iter().any(|(k, v)| k == flag && v == "true"))
        .collect();
    let latest = flags.contains(&"latest");
    let multipart = crate::multipart::answer::bulk_get_wanted(
        req.headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let query = crate::backend::query_string(flags.into_iter().map(|f| (f, "true".to_owned())));
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
                let item = match item_for_backend(obj, id, &backing) {
                    Ok(item) => item,
                    Err(row) => {
                        results.push(Some(row));
                        continue;
                    }
                };
                let round = seen.entry(backing).or_insert(0);
                if rounds.len() <= *round {
                    rounds.push(Vec::new());
                }
                rounds[*round].push((slot, item));
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
    // Revisions the backend cannot read with `latest` are answered missing here.
    if latest {
        let mut ask: Map<String, Value> = Map::new();
        for (_, item) in rounds.iter().flatten() {
            if let (Some(id), Some(rev)) = (item["id"].as_str(), item.get("rev")) {
                let revs = ask.entry(id.to_owned()).or_insert_with(|| json!([]));
                if let Value::Array(revs) = revs {
                    revs.push(rev.clone());
                }
            }
        }
        let unknown = super::unknown_revs(st, ask).await?;
        for round in &mut rounds {
            round.retain(|(slot, item)| {
                let (id, rev) = (item["id"].as_str().unwrap_or(""), item["rev"].as_str());
                match rev.filter(|r| unknown.contains(&(id.to_owned(), (*r).to_owned()))) {
                    Some(rev) => {
                        let client = ns.decode_id(id).map_or(Value::Null, Value::String);
                        results[*slot] = Some(error_result(
                            client,
                            json!(rev),
                            &Error::not_found("missing"),
                        ));
                        false
                    }
                    None => true,
                }
            });
        }
        rounds.retain(|r| !r.is_empty());
    }
    let url = st.backend.db_url(&format!("/_bulk_get{query}"));
    for chunk in rounds.iter().flat_map(|round| round.chunks(ITEMS_CHUNK)) {
        let items: Vec<&Value> = chunk.iter().map(|(_, v)| v).collect();
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
        for (slot, item) in chunk {
            let id = item["id"].as_str().unwrap_or("");
            let mut row = by_id.remove(id).ok_or_else(|| {
                Error::BadGateway("_bulk_get answered without a requested document".into())
            })?;
            strip_result(st, ns, &mut row)?;
            results[*slot] = Some(row);
        }
    }
    let results: Vec<Value> = results.into_iter().flatten().collect();
    if let Some(mime) = multipart {
        let (ctype, body) = crate::multipart::answer::bulk_get_from_json(&results, mime)?;
        return crate::body::typed_response(&ctype, crate::body::full(body));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({ "results": results }),
    ))
}

/// The item the backend is asked for: the backing id, and `rev` and `atts_since` checked as
/// CouchDB checks them. A bad one is answered as the item's error row, naming the value at
/// fault.
fn item_for_backend(obj: &Map<String, Value>, id: &str, backing: &str) -> Result<Value, Value> {
    let refuse =
        |at: &Value, reason: &str| error_result(json!(id), at.clone(), &Error::bad_request(reason));
    let mut item = Map::new();
    item.insert("id".into(), Value::String(backing.to_owned()));
    if let Some(rev) = obj.get("rev") {
        validate::rev_value(rev).map_err(|e| refuse(rev, &e.reason()))?;
        item.insert("rev".into(), rev.clone());
    }
    match obj.get("atts_since") {
        None | Some(Value::Null) => {}
        Some(Value::Array(revs)) => {
            if let Some(bad) = revs.iter().find(|r| validate::rev_value(r).is_err()) {
                return Err(refuse(bad, validate::INVALID_REV));
            }
            if !revs.is_empty() {
                item.insert("atts_since".into(), Value::Array(revs.clone()));
            }
        }
        Some(other) => return Err(refuse(other, "att_since value must be array of revs.")),
    }
    Ok(Value::Object(item))
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
