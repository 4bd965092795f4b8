//! `POST /{db}/_bulk_get`: many documents (and revisions) in one request, in JSON, or in
//! CouchDB's multipart form for a client that does not take JSON.
//!
//! The answer streams in request order: items couchgate answers itself (bad ids, `_local`)
//! in their place, the rest asked of the backend in requests of at most [`ITEMS_CHUNK`]
//! consecutive items, one backend answer in memory at a time. CouchDB's own multipart answer
//! passes through the streaming rewriter (attachment bytes untouched, stored encodings kept);
//! a JSON answer (PouchDB Server) is turned into the multipart form.

use super::doc::DocParts;
use super::Req;
use crate::backend::{backend_error, parse_json};
use crate::body::Body;
use crate::error::{Error, Result};
use crate::json::raw::RawObject;
use crate::multipart::answer::Rewriter;
use crate::multipart::stream::pump;
use crate::namespace::Namespace;
use crate::state::State;
use crate::validate;
use bytes::BytesMut;
use http::{Method, Response};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::HashSet;

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
    let form = match crate::multipart::answer::bulk_get_wanted(
        req.headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    ) {
        Some(mime) => Form::Multipart {
            mime,
            boundary: crate::multipart::random_boundary(),
        },
        None => Form::Json,
    };
    let query = crate::backend::query_string(flags.into_iter().map(|f| (f, "true".to_owned())));
    let body = req.json().await?;
    if !body.is_object() {
        return Err(Error::bad_request("Request body must be a JSON object"));
    }
    let Some(docs) = body.get("docs").and_then(Value::as_array) else {
        return Err(Error::bad_request("Missing JSON list of 'docs'."));
    };
    let mut slots = Vec::with_capacity(docs.len());
    for item in docs {
        slots.push(slot(ns, item)?);
    }
    // Revisions the backend cannot read with `latest` are answered missing here.
    if latest {
        let unknown = super::unknown_revs(st, || {
            let mut ask: Map<String, Value> = Map::new();
            for slot in &slots {
                if let Slot::Asked(item) = slot {
                    if let (Some(id), Some(rev)) = (item["id"].as_str(), item.get("rev")) {
                        let revs = ask.entry(id.to_owned()).or_insert_with(|| json!([]));
                        if let Value::Array(revs) = revs {
                            revs.push(rev.clone());
                        }
                    }
                }
            }
            ask
        })
        .await?;
        for slot in &mut slots {
            let Slot::Asked(item) = slot else { continue };
            let (id, rev) = (item["id"].as_str().unwrap_or(""), item["rev"].as_str());
            if let Some(rev) = rev.filter(|r| unknown.contains(&(id.to_owned(), (*r).to_owned()))) {
                let client = ns.decode_id(id).map_or(Value::Null, Value::String);
                *slot = Slot::Answered(error_result(
                    client,
                    json!(rev),
                    &Error::not_found("missing"),
                ));
            }
        }
    }
    // CouchDB reads repeated ids of one request each on its own (replicators ask for several
    // revisions of a conflicted document that way); other backends (PouchDB Server) merge,
    // and lose, them, so each is asked in a request of its own there.
    let repeats = st.backend.is_couchdb().await;
    let mut segments = segments(slots, ITEMS_CHUNK, repeats).into_iter();
    let mut answer = Answer {
        reader: Reader {
            backend: st.backend.clone(),
            url: st.backend.db_url(&format!("/_bulk_get{query}")),
            parts: DocParts::new(st, ns),
            json_limit: usize::try_from(st.config.max_body_bytes).unwrap_or(usize::MAX),
        },
        form,
        out: BytesMut::new(),
        written: 0,
    };
    // What is answered before the first backend request is sent with it: a failure up to
    // then is the request's error, with CouchDB's status.
    let mut first = None;
    for segment in segments.by_ref() {
        match segment {
            Segment::Answered(row) => answer.row(&row)?,
            Segment::Asked(items) => {
                first = Some(answer.reader.ask(&items, &answer.form).await?);
                break;
            }
        }
    }
    let content_type = answer.form.content_type();
    let Some(first) = first else {
        answer.close();
        return crate::body::typed_response(&content_type, crate::body::full(answer.out.freeze()));
    };
    let (tx, body) = crate::body::channel(4);
    crate::access_log::spawn(async move {
        if let Err(e) = answer.stream(first, segments, &tx).await {
            tracing::warn!(error = %e, "_bulk_get answer cut short");
            tx.abort(e.reason());
        }
    });
    crate::body::typed_response(&content_type, body)
}

/// One item of the request: answered by couchgate, or asked of the backend (by backing id).
enum Slot {
    Answered(Value),
    Asked(Value),
}

/// What one request item becomes.
fn slot(ns: &Namespace, item: &Value) -> Result<Slot> {
    let Some(obj) = item.as_object() else {
        return Err(Error::bad_request("each of 'docs' must be an object"));
    };
    let Some(id) = obj.get("id").and_then(Value::as_str) else {
        return Ok(Slot::Answered(error_result(
            Value::Null,
            Value::Null,
            &Error::bad_request("document id missed"),
        )));
    };
    let rev = || obj.get("rev").cloned();
    // `_local` documents are not replicated: CouchDB finds none here.
    if id.starts_with("_local/") {
        return Ok(Slot::Answered(error_result(
            json!(id),
            rev().unwrap_or(json!("undefined")),
            &Error::not_found("missing"),
        )));
    }
    Ok(match ns.encode_doc_id(id) {
        Ok(backing) => match item_for_backend(obj, id, &backing) {
            Ok(item) => Slot::Asked(item),
            Err(row) => Slot::Answered(row),
        },
        Err(e) => Slot::Answered(error_result(json!(id), rev().unwrap_or(Value::Null), &e)),
    })
}

/// A piece of the answer, in request order.
#[derive(Debug, PartialEq)]
enum Segment {
    Answered(Value),
    /// Items for one backend request.
    Asked(Vec<Value>),
}

/// The request's items in order, consecutive backend items grouped into requests of at most
/// `chunk` items, in which an id appears once unless `repeats`. Answering them in this order
/// keeps the request's order with one backend answer in memory at a time.
fn segments(slots: Vec<Slot>, chunk: usize, repeats: bool) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    // The ids of the last segment (only when they must not repeat).
    let mut ids: HashSet<String> = HashSet::new();
    for slot in slots {
        match slot {
            Slot::Answered(row) => out.push(Segment::Answered(row)),
            Slot::Asked(item) => {
                let id = (!repeats).then(|| item["id"].as_str().unwrap_or_default().to_owned());
                match out.last_mut() {
                    Some(Segment::Asked(items))
                        if items.len() < chunk
                            && !id.as_ref().is_some_and(|id| ids.contains(id)) => {}
                    _ => {
                        ids.clear();
                        out.push(Segment::Asked(Vec::with_capacity(chunk.min(16))));
                    }
                }
                ids.extend(id);
                if let Some(Segment::Asked(items)) = out.last_mut() {
                    items.push(item);
                }
            }
        }
    }
    out
}

/// The form of the answer.
enum Form {
    Json,
    Multipart {
        mime: &'static str,
        boundary: String,
    },
}

impl Form {
    fn content_type(&self) -> String {
        match self {
            Form::Json => "application/json".to_owned(),
            Form::Multipart { mime, boundary } => format!("{mime}; boundary=\"{boundary}\""),
        }
    }
}

/// Asks the backend for items, and moves its answers into the caller's namespace.
struct Reader {
    backend: crate::backend::Backend,
    url: String,
    parts: DocParts,
    json_limit: usize,
}

/// The backend's answer to one request.
enum Asked {
    /// Result rows, already in the caller's namespace.
    Rows(Vec<Value>),
    /// The same as JSON text (a JSON answer to a JSON client).
    Text(RowsText),
    /// A multipart answer (CouchDB's, to a multipart client) still to be read, of this type.
    Multipart(Incoming, String),
}

impl Reader {
    async fn ask(&self, items: &[Value], form: &Form) -> Result<Asked> {
        let accept = match form {
            Form::Json => "application/json",
            Form::Multipart { .. } => "multipart/mixed",
        };
        #[derive(serde::Serialize)]
        struct Docs<'a> {
            docs: &'a [Value],
        }
        let body = serde_json::to_vec(&Docs { docs: items })
            .map_err(|e| Error::Internal(e.to_string()))?;
        let req = self
            .backend
            .request(Method::POST, &self.url)
            .header(http::header::ACCEPT, accept)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(crate::body::full(body))
            .map_err(|e| Error::Internal(e.to_string()))?;
        let resp = self.backend.send(req, self.backend.timeout()).await?;
        let status = resp.status();
        let ctype = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if status.is_success() && ctype.starts_with("multipart/") {
            return Ok(Asked::Multipart(resp.into_body(), ctype));
        }
        let bytes = self
            .backend
            .read(resp.into_body(), self.backend.timeout())
            .await?;
        if status.is_success() && matches!(form, Form::Json) {
            if let Some(text) = rows_text(&self.parts.ns, &bytes, items)? {
                return Ok(Asked::Text(text));
            }
        }
        let answer = parse_json(&bytes)?;
        if !status.is_success() {
            return Err(backend_error(status, &answer));
        }
        let rows = answer
            .get("results")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::BadGateway("_bulk_get answer without results".into()))?;
        let mut rows = in_request_order(rows, items)?;
        for row in &mut rows {
            strip_result(&self.parts, row)?;
        }
        Ok(Asked::Rows(rows))
    }
}

/// CouchDB's JSON answer, read without building its documents (see [`crate::json::raw`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnswer<'a> {
    #[serde(borrow)]
    results: Vec<RawRow<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRow<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    docs: Vec<RawResult<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResult<'a> {
    #[serde(borrow, default)]
    ok: Option<RawObject<'a>>,
    #[serde(borrow, default)]
    error: Option<RawObject<'a>>,
}

/// The backend's JSON answer as the text of its result rows in the caller's namespace, joined
/// by commas, written without parsing its documents into trees: only ids change. `None` when
/// the answer is not CouchDB's exact shape, or its rows are not the items' in order (PouchDB
/// Server), or a document needs the tree rewrite: then [`strip_result`] does it.
fn rows_text(ns: &Namespace, answer: &[u8], items: &[Value]) -> Result<Option<RowsText>> {
    let Some(answer) = crate::json::raw::parse_text::<RawAnswer>(answer) else {
        return Ok(None);
    };
    if answer.results.len() != items.len()
        || answer
            .results
            .iter()
            .zip(items)
            .any(|(row, item)| item["id"].as_str() != Some(&row.id))
    {
        return Ok(None);
    }
    let foreign =
        || Error::BadGateway("the backend answered a document of another namespace".into());
    let mut text = Vec::with_capacity(answer.results.len() * 1024);
    for (i, row) in answer.results.iter().enumerate() {
        if i > 0 {
            text.push(b',');
        }
        text.extend_from_slice(b"{\"id\":");
        crate::json::raw::write_str(&ns.decode_id(&row.id).ok_or_else(foreign)?, &mut text);
        text.extend_from_slice(b",\"docs\":[");
        for (j, result) in row.docs.iter().enumerate() {
            if j > 0 {
                text.push(b',');
            }
            match (&result.ok, &result.error) {
                (Some(doc), None) => {
                    text.extend_from_slice(b"{\"ok\":");
                    if !ns.strip_doc_text(doc, &mut text)? {
                        return Ok(None);
                    }
                }
                (None, Some(error)) => {
                    text.extend_from_slice(b"{\"error\":");
                    match error.get("id").map(crate::json::raw::as_str) {
                        None => error.write(&mut text),
                        Some(Some(id)) => {
                            let client = ns.decode_id(&id).ok_or_else(foreign)?;
                            let client = crate::json::raw::str_text(&client);
                            error.write_replacing("id", &client, &mut text);
                        }
                        Some(None) => return Ok(None),
                    }
                }
                _ => return Ok(None),
            }
            text.push(b'}');
        }
        text.extend_from_slice(b"]}");
    }
    Ok(Some(RowsText {
        text,
        rows: answer.results.len(),
    }))
}

/// Result rows as JSON text, joined by commas.
struct RowsText {
    text: Vec<u8>,
    rows: usize,
}

/// The backend's result rows matched to the items asked, one each: CouchDB answers them in
/// order; a backend that does not is matched by id (ids are then unique in a request).
fn in_request_order(rows: &[Value], items: &[Value]) -> Result<Vec<Value>> {
    let id = |v: &Value| v.get("id").cloned();
    if rows.len() == items.len() && rows.iter().zip(items).all(|(r, i)| id(r) == id(i)) {
        return Ok(rows.to_vec());
    }
    let mut by_id: std::collections::HashMap<&str, &Value> = std::collections::HashMap::new();
    for row in rows {
        if let Some(id) = row.get("id").and_then(Value::as_str) {
            by_id.entry(id).or_insert(row);
        }
    }
    items
        .iter()
        .map(|item| {
            by_id
                .remove(item["id"].as_str().unwrap_or_default())
                .cloned()
                .ok_or_else(|| {
                    Error::BadGateway("_bulk_get answered without a requested document".into())
                })
        })
        .collect()
}

/// The answer being written.
struct Answer {
    reader: Reader,
    form: Form,
    out: BytesMut,
    /// Results (JSON) or parts (multipart) written so far.
    written: usize,
}

/// Bytes gathered before they are sent on.
const FLUSH_AT: usize = 64 * 1024;

impl Answer {
    /// One result row.
    fn row(&mut self, row: &Value) -> Result<()> {
        self.rows(std::slice::from_ref(row))
    }

    fn rows(&mut self, rows: &[Value]) -> Result<()> {
        match &self.form {
            Form::Json => {
                for row in rows {
                    self.out.extend_from_slice(match self.written {
                        0 => b"{\"results\":[",
                        _ => b",",
                    });
                    let json =
                        serde_json::to_vec(row).map_err(|e| Error::Internal(e.to_string()))?;
                    self.out.extend_from_slice(&json);
                    self.written += 1;
                }
            }
            Form::Multipart { boundary, .. } => {
                crate::multipart::answer::bulk_get_parts(rows, boundary, &mut self.out)?;
                self.written += rows.len();
            }
        }
        Ok(())
    }

    /// Result rows as text (the JSON form only).
    fn rows_text(&mut self, rows: &RowsText) {
        self.out.extend_from_slice(match self.written {
            0 => b"{\"results\":[",
            _ => b",",
        });
        self.out.extend_from_slice(&rows.text);
        self.written += rows.rows;
    }

    /// The end of the answer.
    fn close(&mut self) {
        match &self.form {
            Form::Json if self.written == 0 => self.out.extend_from_slice(b"{\"results\":[]}"),
            Form::Json => self.out.extend_from_slice(b"]}"),
            // CouchDB's multipart answer to no documents is empty.
            Form::Multipart { boundary, .. } if self.written > 0 => {
                crate::multipart::answer::close(boundary, &mut self.out)
            }
            Form::Multipart { .. } => {}
        }
    }

    /// Writes the rest of the answer to `tx`, from the first backend answer on.
    async fn stream(
        mut self,
        first: Asked,
        rest: impl Iterator<Item = Segment>,
        tx: &crate::body::ChunkSender,
    ) -> Result<()> {
        let mut next = Some(first);
        let mut rest = rest;
        loop {
            match next.take() {
                Some(Asked::Rows(rows)) => self.rows(&rows)?,
                Some(Asked::Text(rows)) => self.rows_text(&rows),
                Some(Asked::Multipart(incoming, ctype)) => {
                    let Form::Multipart { boundary, .. } = &self.form else {
                        return Err(Error::BadGateway(
                            "the backend answered multipart to a JSON request".into(),
                        ));
                    };
                    let mut rw = Rewriter::inner(
                        &ctype,
                        self.reader.parts.clone(),
                        self.reader.json_limit,
                        boundary,
                    )?;
                    let out = self.out.split();
                    let timeout = self.reader.backend.timeout();
                    if !pump(incoming, &mut rw, out, tx, timeout).await? {
                        return Ok(());
                    }
                    self.written += 1;
                }
                None => {}
            }
            if self.out.len() >= FLUSH_AT && !tx.send(self.out.split().freeze()).await {
                return Ok(());
            }
            match rest.next() {
                Some(Segment::Answered(row)) => self.row(&row)?,
                Some(Segment::Asked(items)) => {
                    next = Some(self.reader.ask(&items, &self.form).await?);
                }
                None => break,
            }
        }
        self.close();
        tx.send(self.out.split().freeze()).await;
        Ok(())
    }
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
fn strip_result(parts: &DocParts, row: &mut Value) -> Result<()> {
    // Every id the backend answers is one couchgate asked for, in the namespace.
    let client = |v: &Value| -> Result<Option<String>> {
        v.as_str()
            .map(|id| {
                parts.ns.decode_id(id).ok_or_else(|| {
                    Error::BadGateway("the backend answered a document of another namespace".into())
                })
            })
            .transpose()
    };
    if let Some(id) = client(&row["id"])? {
        row["id"] = Value::String(id);
    }
    if let Some(docs) = row.get_mut("docs").and_then(Value::as_array_mut) {
        for d in docs {
            if let Some(doc) = d.get_mut("ok") {
                parts.strip(doc)?;
            }
            if let Some(err) = d.get_mut("error") {
                if let Some(id) = client(&err["id"])? {
                    err["id"] = Value::String(id);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(id: &str) -> Slot {
        Slot::Asked(json!({ "id": id }))
    }

    fn shape(segments: &[Segment]) -> Vec<String> {
        segments
            .iter()
            .map(|s| match s {
                Segment::Answered(_) => "local".to_owned(),
                Segment::Asked(items) => items
                    .iter()
                    .map(|i| i["id"].as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(","),
            })
            .collect()
    }

    #[test]
    fn items_keep_their_order_in_bounded_backend_requests() {
        let slots = || {
            vec![
                asked("a"),
                asked("b"),
                Slot::Answered(json!({})),
                asked("c"),
                asked("c"),
                asked("d"),
                asked("e"),
            ]
        };
        assert_eq!(
            shape(&segments(slots(), 100, false)),
            ["a,b", "local", "c", "c,d,e"]
        );
        assert_eq!(
            shape(&segments(slots(), 100, true)),
            ["a,b", "local", "c,c,d,e"]
        );
        assert_eq!(
            shape(&segments(slots(), 2, true)),
            ["a,b", "local", "c,c", "d,e"]
        );
    }

    #[test]
    fn backend_rows_are_matched_to_the_items() {
        let items = [json!({"id": "a"}), json!({"id": "b"})];
        let rows = [json!({"id": "b", "n": 2}), json!({"id": "a", "n": 1})];
        let got = in_request_order(&rows, &items).unwrap();
        assert_eq!(
            (got[0]["n"].as_i64(), got[1]["n"].as_i64()),
            (Some(1), Some(2))
        );
        assert!(in_request_order(&rows[..1], &items).is_err());
        let twice = [json!({"id": "a", "n": 1}), json!({"id": "a", "n": 2})];
        let got = in_request_order(&twice, &[json!({"id": "a"}), json!({"id": "a"})]).unwrap();
        assert_eq!(got[1]["n"], 2);
    }
}
