//! `/{db}/{docid}` (and `/{db}/_design/{name}`, stored as data): read, write and delete one
//! document; `POST /{db}` creates one with a generated id.
//!
//! Reads answer JSON, or multipart where CouchDB does (`open_revs` with `multipart/mixed`
//! accepted, `attachments=true` with `multipart/related`): CouchDB's replicator reads
//! documents with attachments only that way. A backend's multipart answer streams through
//! rewritten part by part (see [`crate::multipart::answer`]); a backend that answers JSON
//! instead (PouchDB Server) has its answer turned into the same form.

use super::{copy_headers, offload, Query, Req};
use crate::backend::{backend_error, encode_component, encode_doc_id, parse_json, query_string};
use crate::body::{self, json_response, Body};
use crate::error::{Error, Result};
use crate::multipart::{self, answer};
use crate::namespace::{set_id, Namespace};
use crate::state::State;
use crate::validate::{self, check_rev, rev_list_param};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde_json::{Map, Value};

/// Boolean parameters of a document read. CouchDB acts on `true` and ignores any other value,
/// so only `true` is passed on (PouchDB Server reads any value as true).
const READ_FLAGS: &[&str] = &[
    "revs",
    "revs_info",
    "conflicts",
    "deleted_conflicts",
    "attachments",
    "local_seq",
    "meta",
    "att_encoding_info",
];

/// Query parameters of writes passed to the backend (with CouchDB's meaning of their values).
const WRITE_PARAMS: &[&str] = &["rev", "new_edits", "batch"];

/// The revisions of a read, from `open_revs`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OpenRevs {
    All,
    List(Vec<String>),
}

/// A document read's parameters, checked as CouchDB's `parse_doc_query` checks them: every
/// `rev`, `open_revs` and `atts_since` must parse (on writes too), and the last one counts.
#[derive(Debug, Default)]
struct ReadQuery {
    /// The flags that are on.
    flags: Vec<&'static str>,
    rev: Option<String>,
    /// `open_revs`; an empty list is none (CouchDB then reads the document as usual).
    open_revs: Option<OpenRevs>,
    atts_since: Option<Vec<String>>,
    latest: bool,
}

impl ReadQuery {
    fn parse(q: &Query) -> Result<ReadQuery> {
        let mut r = ReadQuery::default();
        for (k, v) in &q.0 {
            match k.as_str() {
                "rev" => {
                    check_rev(v)?;
                    r.rev = Some(v.clone());
                }
                "open_revs" if v == "all" => r.open_revs = Some(OpenRevs::All),
                "open_revs" => {
                    let list = rev_list_param(v)?;
                    r.open_revs = (!list.is_empty()).then_some(OpenRevs::List(list));
                }
                "atts_since" => r.atts_since = Some(rev_list_param(v)?),
                "latest" => r.latest |= v == "true",
                k => {
                    if let Some(flag) = READ_FLAGS.iter().find(|f| **f == k) {
                        if v == "true" && !r.flags.contains(flag) {
                            r.flags.push(flag);
                        }
                    }
                }
            }
        }
        Ok(r)
    }

    /// The backend query for these parameters, with `open_revs` as given.
    fn backend_query(&self, open_revs: Option<&OpenRevs>) -> String {
        let mut q: Vec<(&str, String)> = self.flags.iter().map(|f| (*f, "true".into())).collect();
        if let Some(since) = &self.atts_since {
            // CouchDB includes attachments whenever `atts_since` is given.
            if !self.flags.contains(&"attachments") {
                q.push(("attachments", "true".into()));
            }
            q.push(("atts_since", Value::from(since.clone()).to_string()));
        }
        match open_revs {
            Some(OpenRevs::All) => q.push(("open_revs", "all".into())),
            Some(OpenRevs::List(revs)) => {
                q.push(("open_revs", Value::from(revs.clone()).to_string()))
            }
            // With `latest`, CouchDB reads the winning revision whatever `rev` says.
            None if self.latest => {}
            None => q.extend(self.rev.clone().map(|r| ("rev", r))),
        }
        if open_revs.is_some() && self.latest {
            q.push(("latest", "true".into()));
        }
        query_string(q)
    }
}

/// `new_edits=false`: the last of `true` and `false` counts, other values are ignored.
fn replicated(q: &Query) -> bool {
    q.0.iter()
        .rev()
        .find(|(k, v)| k == "new_edits" && (v == "true" || v == "false"))
        .is_some_and(|(_, v)| v == "false")
}

pub async fn handle(st: &State, ns: &Namespace, id: &str, req: Req) -> Result<Response<Body>> {
    let backing = match ns.encode_id(id) {
        Ok(b) => b,
        Err(_) if id == "_local" => return Err(Error::bad_request("Invalid _local document id.")),
        // No document can have that id; CouchDB reads it as missing.
        Err(_) if matches!(req.method, Method::GET | Method::HEAD | Method::DELETE) => {
            return Err(Error::not_found("missing"))
        }
        Err(_) if req.method == Method::POST => {
            return Err(Error::bad_request("Referer header required."))
        }
        Err(e) => return Err(e),
    };
    match req.method {
        Method::GET | Method::HEAD => get(st, ns, &backing, req).await,
        Method::PUT => put(st, ns, &backing, req).await,
        Method::DELETE => delete(st, ns, &backing, req).await,
        // CouchDB's POST to a document is an HTML form upload, which it refuses without this.
        Method::POST => Err(Error::bad_request("Referer header required.")),
        ref m if m.as_str() == "COPY" => copy(st, ns, &backing, req).await,
        _ => Err(Error::MethodNotAllowed(
            "Only DELETE,GET,HEAD,POST,PUT,COPY allowed".into(),
        )),
    }
}

/// The revision a write names: the `rev` parameter, else the `If-Match` header (CouchDB reads
/// an ETag as a revision); both given and different is an error.
fn explicit_rev(req: &Req) -> Result<Option<String>> {
    let etag = req
        .headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().trim_matches('"').to_owned());
    for rev in req.query.get("rev").into_iter().chain(etag.as_deref()) {
        check_rev(rev)?;
    }
    match (req.query.get("rev"), etag) {
        (Some(q), Some(e)) if q != e => Err(Error::bad_request(
            "Document rev and etag have different values.",
        )),
        (Some(q), _) => Ok(Some(q.to_owned())),
        (None, e) => Ok(e),
    }
}

/// The query string of a write: the parameters passed on, with the explicit revision.
fn write_query(req: &Req, allowed: &[&str]) -> Result<String> {
    let rev = explicit_rev(req)?;
    let mut q: Vec<(&str, String)> = Vec::new();
    if allowed.contains(&"new_edits") && replicated(&req.query) {
        q.push(("new_edits", "false".into()));
    }
    if allowed.contains(&"batch") && req.query.get("batch") == Some("ok") {
        q.push(("batch", "ok".into()));
    }
    q.extend(rev.map(|r| ("rev", r)));
    Ok(query_string(q))
}

/// `COPY /{db}/{docid}` with `Destination: {id}[?rev={rev}]`: the document (at `rev` if given)
/// written again under another id of the same namespace, attachments included.
async fn copy(st: &State, ns: &Namespace, backing: &str, req: Req) -> Result<Response<Body>> {
    let dest = req
        .headers
        .get("destination")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::bad_request("Destination header is mandatory for COPY."))?;
    let (dest_id, dest_query) = dest.split_once('?').unwrap_or((dest, ""));
    let dest_id = percent_encoding::percent_decode_str(dest_id)
        .decode_utf8()
        .map_err(|_| Error::bad_request("Destination header is not valid percent-encoded UTF-8"))?
        .into_owned();
    let dest_rev = super::Query::parse(dest_query)
        .get("rev")
        .map(str::to_owned);
    for rev in req.query.get("rev").into_iter().chain(dest_rev.as_deref()) {
        check_rev(rev)?;
    }
    let dest_backing = ns.encode_id(&dest_id)?;
    if dest_id.starts_with("_local/") {
        st.registry.note_local(ns, &dest_id).await?;
    }

    let mut q: Vec<(&str, String)> = vec![("attachments", "true".into())];
    if let Some(rev) = req.query.get("rev") {
        q.push(("rev", rev.to_owned()));
    }
    let url = st
        .backend
        .db_url(&format!("/{}{}", encode_doc_id(backing), query_string(q)));
    let (status, source) = st.backend.json(Method::GET, &url, None).await?;
    if !status.is_success() {
        return Err(backend_error(status, &source));
    }
    let Value::Object(mut doc) = source else {
        return Err(Error::BadGateway(
            "the backend answered a document that is not an object".into(),
        ));
    };
    // `shift_remove` keeps the members in order: CouchDB's revision hash depends on it.
    doc.shift_remove("_rev");
    if let Some(rev) = dest_rev {
        doc.insert("_rev".into(), Value::String(rev));
    }
    set_id(&mut doc, dest_backing.clone());
    let body = Bytes::from(serde_json::to_vec(&doc)?);
    let (status, mut headers, value) = send_write(
        st,
        ns,
        Method::PUT,
        &dest_backing,
        "",
        body::full(body),
        None,
        HeaderValue::from_static("application/json"),
    )
    .await?;
    // CouchDB's COPY answers the new revision as the ETag, for `_local` copies too.
    if let Some(etag) = value["rev"]
        .as_str()
        .and_then(|rev| HeaderValue::from_str(&format!("\"{rev}\"")).ok())
    {
        headers.insert(header::ETAG, etag);
    }
    write_result(ns, &dest_backing, status, &headers, value, None)
}

/// The query string for the backend: only `allowed` parameters, values unchanged.
pub fn forward_query(req: &Req, allowed: &[&str]) -> String {
    query_string(
        req.query
            .0
            .iter()
            .filter(|(k, _)| allowed.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.clone())),
    )
}

async fn get(st: &State, ns: &Namespace, backing: &str, req: Req) -> Result<Response<Body>> {
    let q = ReadQuery::parse(&req.query)?;
    let want = Multipart::wanted(&q, &req.headers);
    let mut open_revs = q.open_revs.clone();
    // Revisions the backend cannot read with `latest` are answered missing here.
    let mut missing = Vec::new();
    if let (Some(OpenRevs::List(revs)), true) = (&open_revs, q.latest) {
        let unknown = super::unknown_revs(st, || {
            let mut ask = Map::new();
            ask.insert(backing.to_owned(), Value::from(revs.clone()));
            ask
        })
        .await?;
        let (gone, known): (Vec<String>, Vec<String>) = revs
            .iter()
            .cloned()
            .partition(|r| unknown.contains(&(backing.to_owned(), r.clone())));
        missing = gone;
        if known.is_empty() {
            let rows: Vec<Value> = missing
                .iter()
                .map(|r| serde_json::json!({"missing": r}))
                .collect();
            return answer_rows(&rows, want);
        }
        open_revs = Some(OpenRevs::List(known));
    }
    let url = st.backend.db_url(&format!(
        "/{}{}",
        encode_doc_id(backing),
        q.backend_query(open_revs.as_ref())
    ));
    let mut b = st.backend.request(Method::GET, &url).header(
        header::ACCEPT,
        want.map_or("application/json", Multipart::mime),
    );
    if let Some(v) = req.headers.get(header::IF_NONE_MATCH) {
        b = b.header(header::IF_NONE_MATCH, v.clone());
    }
    let breq = b
        .body(body::empty())
        .map_err(|e| Error::Internal(e.to_string()))?;
    let resp = st.backend.send(breq, st.backend.timeout()).await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    if status == StatusCode::NOT_MODIFIED {
        let mut r = Response::new(body::empty());
        *r.status_mut() = status;
        copy_headers(&headers, r.headers_mut(), &[header::ETAG]);
        return Ok(r);
    }
    let backend_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if status.is_success() && want.is_some() && backend_type.starts_with("multipart/") {
        let mut r = stream_multipart(st, ns, backend_type, &missing, resp.into_body())?;
        copy_headers(&headers, r.headers_mut(), &[header::ETAG]);
        return Ok(r);
    }
    let bytes = st
        .backend
        .read(resp.into_body(), st.backend.timeout())
        .await?;
    if status.is_success() && want.is_none() {
        if let Some(mut r) = doc_text_response(ns, status, &bytes)? {
            copy_headers(&headers, r.headers_mut(), &[header::ETAG]);
            return Ok(r);
        }
    }
    let mut value = parse_json(&bytes)?;
    if !status.is_success() {
        return Err(backend_error(status, &value));
    }
    let mut r = match &mut value {
        Value::Array(results) => {
            for r in results.iter_mut() {
                if let Some(doc) = r.get_mut("ok") {
                    strip_doc(st, ns, doc)?;
                }
            }
            results.extend(missing.iter().map(|r| serde_json::json!({"missing": r})));
            answer_rows(results, want)?
        }
        doc => {
            strip_doc(st, ns, doc)?;
            match want
                .map(|_| answer::related_from_json(doc))
                .transpose()?
                .flatten()
            {
                Some((ctype, body)) => body::typed_response(&ctype, body::full(body))?,
                None => json_response(status, doc),
            }
        }
    };
    copy_headers(&headers, r.headers_mut(), &[header::ETAG]);
    Ok(r)
}

/// The answer to a plain document read, rewritten as text (see [`crate::json::raw`]); `None`
/// when the backend's answer needs the tree rewrite (`open_revs` arrays, `_local_seq`).
fn doc_text_response(
    ns: &Namespace,
    status: StatusCode,
    text: &[u8],
) -> Result<Option<Response<Body>>> {
    let Some(doc) = crate::json::raw::RawObject::parse(text) else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(text.len() + 1);
    if !ns.strip_doc_text(&doc, &mut out)? {
        return Ok(None);
    }
    out.push(b'\n');
    Ok(Some(body::json_text_response(status, out)))
}

/// The multipart form of a document read a client asked for (as CouchDB chooses it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Multipart {
    /// `open_revs` with `multipart/mixed` accepted: a part per revision.
    Mixed,
    /// `attachments=true` (or `atts_since`) with `multipart/related` accepted: the document,
    /// then its attachments' data.
    Related,
}

impl Multipart {
    fn wanted(q: &ReadQuery, headers: &HeaderMap) -> Option<Multipart> {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
        if q.open_revs.is_some() {
            answer::accepts(accept, "multipart/mixed").then_some(Multipart::Mixed)
        } else if q.flags.contains(&"attachments") || q.atts_since.is_some() {
            answer::accepts(accept, "multipart/related").then_some(Multipart::Related)
        } else {
            None
        }
    }

    fn mime(self) -> &'static str {
        match self {
            Multipart::Mixed => "multipart/mixed",
            Multipart::Related => "multipart/related",
        }
    }
}

/// `open_revs` rows (already in the caller's namespace) as JSON, or as `multipart/mixed`.
fn answer_rows(rows: &[Value], want: Option<Multipart>) -> Result<Response<Body>> {
    match want {
        Some(Multipart::Mixed) => {
            let (ctype, body) = answer::mixed_from_json(rows)?;
            body::typed_response(&ctype, body::full(body))
        }
        _ => Ok(json_response(StatusCode::OK, &Value::Array(rows.to_vec()))),
    }
}

/// The document parts of a backend's multipart answer, moved into the caller's namespace.
#[derive(Clone)]
pub struct DocParts {
    pub ns: Namespace,
    changes: std::sync::Arc<crate::changes::Changes>,
}

impl DocParts {
    pub fn new(st: &State, ns: &Namespace) -> DocParts {
        DocParts {
            ns: ns.clone(),
            changes: std::sync::Arc::clone(&st.changes),
        }
    }

    /// A backend document as the client must see it.
    pub fn strip(&self, doc: &mut Value) -> Result<()> {
        strip_doc_in(&self.changes, &self.ns, doc)
    }
}

impl answer::Rewrite for DocParts {
    fn json(&mut self, body: &[u8], error: bool) -> Result<Vec<u8>> {
        answer::rewrite_json(body, |v| {
            if error {
                // An error part (`{"id", "rev", "error"}` or `{"missing": rev}`) names the
                // client's id.
                if let Some(id) = v.get("id").and_then(Value::as_str) {
                    v["id"] = Value::String(self.doc_id(id)?);
                }
                Ok(())
            } else {
                self.strip(v)
            }
        })
    }

    fn doc_id(&mut self, backing: &str) -> Result<String> {
        self.ns.decode_id(backing).ok_or_else(|| {
            Error::BadGateway("the backend answered a document of another namespace".into())
        })
    }
}

/// Streams the backend's multipart answer to the client, rewritten part by part; `missing`
/// revisions (answered by couchgate) come first.
fn stream_multipart(
    st: &State,
    ns: &Namespace,
    ctype: &str,
    missing: &[String],
    incoming: hyper::body::Incoming,
) -> Result<Response<Body>> {
    let limit = usize::try_from(st.config.max_body_bytes).unwrap_or(usize::MAX);
    let mut rw = answer::Rewriter::new(ctype, DocParts::new(st, ns), limit)?;
    let boundary = multipart::boundary(ctype)?;
    let mut first = bytes::BytesMut::new();
    for rev in missing {
        first.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Type: application/json; error=\"true\"\r\n\r\n{}\r\n",
                serde_json::json!({ "missing": rev })
            )
            .as_bytes(),
        );
    }
    let (tx, out) = body::channel(4);
    let timeout = st.backend.timeout();
    crate::access_log::spawn(async move {
        if let Err(e) = multipart::stream::pump(incoming, &mut rw, first, &tx, timeout).await {
            tracing::warn!(error = %e, "multipart answer cut short");
            tx.abort(e.reason());
        }
    });
    body::typed_response(ctype, out)
}

/// 404 `missing` unless the namespace holds a live document `id`.
pub async fn require_exists(st: &State, ns: &Namespace, id: &str) -> Result<()> {
    let backing = ns.encode_doc_id(id)?;
    let url = st.backend.db_url(&format!("/{}", encode_doc_id(&backing)));
    st.backend
        .json(Method::GET, &url, None)
        .await
        .map_err(|e| ns.client_error(e, &backing))?;
    Ok(())
}

/// A backend document as the client must see it.
pub fn strip_doc(st: &State, ns: &Namespace, doc: &mut Value) -> Result<()> {
    strip_doc_in(&st.changes, ns, doc)
}

fn strip_doc_in(changes: &crate::changes::Changes, ns: &Namespace, doc: &mut Value) -> Result<()> {
    ns.strip_doc(doc)?;
    if let Some(obj) = doc.as_object_mut() {
        if obj.contains_key("_local_seq") {
            // The backend's number counts the shared database; the namespace's own is the
            // document's place in its history.
            let n = obj
                .get("_id")
                .and_then(Value::as_str)
                .and_then(|id| changes.index.doc_n(ns.partition(), id).ok().flatten());
            match n {
                Some(n) => obj.insert("_local_seq".into(), Value::from(n)),
                None => obj.remove("_local_seq"),
            };
        }
    }
    Ok(())
}

/// The `_rev` of a checked `_local` document body (set from `_revisions` too) must be one
/// CouchDB reads.
fn check_local_body_rev(doc: &Map<String, Value>) -> Result<()> {
    match doc.get("_rev").and_then(Value::as_str) {
        Some(rev) => validate::check_local_rev(rev),
        None => Ok(()),
    }
}

/// Parses a JSON document body, which must be an object.
pub fn parse_doc(bytes: &[u8]) -> Result<Map<String, Value>> {
    match body::parse_json(bytes)? {
        Value::Object(m) => Ok(m),
        _ => Err(Error::bad_request("Document must be a JSON object")),
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

async fn put(st: &State, ns: &Namespace, backing: &str, req: Req) -> Result<Response<Body>> {
    // CouchDB parses a write's read parameters too, and refuses it when they are malformed.
    ReadQuery::parse(&req.query)?;
    let query = write_query(&req, WRITE_PARAMS)?;
    let rev_outside = explicit_rev(&req)?;
    if let (Some(rev), true) = (&rev_outside, backing.starts_with("_local/")) {
        validate::check_local_rev(rev)?;
    }
    let replicated = replicated(&req.query);
    let doc = DocWrite {
        backing: backing.to_owned(),
        replicated,
        rev_outside: rev_outside.is_some(),
    };
    let ct = content_type(&req.headers);
    // The boundary is case-sensitive: it is read from the header as sent.
    let boundary = ct
        .to_ascii_lowercase()
        .starts_with("multipart/related")
        .then(|| multipart::boundary(&ct))
        .transpose()?;
    let (mut checked, data) = match boundary {
        Some(boundary) if streams(st, &req).await => {
            let (checked, rest) = doc.multipart_head(req, &boundary).await?;
            (checked, Data::Streams(Box::new(rest)))
        }
        boundary => {
            let bytes = req.bytes().await?;
            let len = bytes.len();
            // CouchDB reads any body but a multipart one as JSON, whatever its content type
            // (`curl -d` sends a form type).
            let (checked, atts) = offload(len, move || match boundary {
                Some(boundary) => doc.multipart(&bytes, &boundary),
                None => Ok((doc.json(&bytes, false)?.0, Vec::new())),
            })
            .await?;
            (checked, Data::Whole(atts, len))
        }
    };
    if !super::stubs::resolve_one(st, ns, &mut checked, replicated, rev_outside.as_deref()).await? {
        // A replicated revision the backend has: CouchDB acknowledges it without a write.
        let rev = checked.get("_rev").cloned().unwrap_or(Value::Null);
        let client = ns.decode_id(backing).unwrap_or_default();
        return Ok(json_response(
            StatusCode::CREATED,
            &serde_json::json!({"ok": true, "id": client, "rev": rev}),
        ));
    }
    if let Some(local) = ns.decode_id(backing).filter(|id| id.starts_with("_local/")) {
        st.registry.note_local(ns, &local).await?;
    }
    match data {
        Data::Whole(atts, len) => {
            let (body, ct) = offload(len, move || build(&checked, &atts)).await?;
            write(st, ns, Method::PUT, backing, &query, body, ct).await
        }
        Data::Streams(rest) => rest.write(st, ns, backing, &query, &checked).await,
    }
}

/// Where the data of a document's attachments is.
enum Data {
    /// Read with the document (and its length).
    Whole(Vec<multipart::Attachment>, usize),
    /// Still arriving.
    Streams(Box<StreamedRest>),
}

/// Whether a multipart document body streams to the backend rather than being read whole: one
/// over [`super::UPLOAD_PREFETCH`] bytes (or of unknown length), sent as it is (no
/// `Content-Encoding`), to CouchDB. Other backends get whole bodies only: PouchDB Server may
/// take a body cut short for complete.
async fn streams(st: &State, req: &Req) -> bool {
    let length = req
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    length.is_none_or(|n| n > super::UPLOAD_PREFETCH)
        && !req.headers.contains_key(header::CONTENT_ENCODING)
        && st.backend.is_couchdb().await
}

/// The rest of a multipart document body whose JSON part was read: the attachments' data,
/// re-framed for the backend as it arrives (see [`multipart::upload`]).
struct StreamedRest {
    reframe: multipart::upload::Reframe,
    /// The client's body after the part read so far; dropped unread, it is discarded.
    body: body::ClientBody<body::TimedBody<hyper::body::Incoming>>,
}

impl StreamedRest {
    /// Writes the checked document, its attachments' data streaming on from the client. A
    /// client body found wrong on the way is its error (400, 413, 408), and the backend's
    /// request is cut off before its end, so nothing is written.
    async fn write(
        self,
        st: &State,
        ns: &Namespace,
        backing: &str,
        query: &str,
        doc: &Map<String, Value>,
    ) -> Result<Response<Body>> {
        let StreamedRest {
            mut reframe,
            mut body,
        } = self;
        let json = serde_json::to_vec(doc)?;
        // The client's body holds all the data it announces: more than the limit is a 413
        // now, before the backend is asked anything.
        let limit = body.limit();
        let length = reframe
            .length(json.len())
            .filter(|_| reframe.data_length().is_some_and(|n| n <= limit))
            .ok_or_else(|| {
                Error::TooLarge(format!("the request body is larger than {limit} bytes"))
            })?;
        let ct = HeaderValue::from_str(&reframe.content_type())
            .map_err(|e| Error::Internal(e.to_string()))?;
        let mut first = bytes::BytesMut::from(&reframe.start(&json)[..]);
        reframe.resume(&mut first)?;
        let (tx, out) = body::channel(4);
        let failed = std::sync::Arc::new(std::sync::Mutex::new(None::<Error>));
        let noted = std::sync::Arc::clone(&failed);
        let progress = std::sync::Arc::new(crate::backend::Progress::default());
        let moved = std::sync::Arc::clone(&progress);
        let timeout = st.backend.timeout();
        crate::access_log::spawn(async move {
            let fed = async {
                let mut buf = first;
                loop {
                    if !buf.is_empty() {
                        let piece = buf.split().freeze();
                        match tokio::time::timeout(timeout, tx.send(piece)).await {
                            Err(_) => {
                                return Err(Error::BackendTimeout(
                                    "the backend stopped reading the upload".into(),
                                ))
                            }
                            // The backend's request is over (it answered, or failed).
                            Ok(false) => return Ok(()),
                            Ok(true) => moved.tick(),
                        }
                    }
                    // Once the client's closing delimiter is read the rest (an epilogue) is
                    // left to be discarded: the backend has all it gets.
                    if reframe.done() && buf.is_empty() {
                        return Ok(());
                    }
                    match body.next().await? {
                        Some(data) => reframe.push(&data, &mut buf)?,
                        None => return reframe.finish(),
                    }
                }
            };
            if let Err(e) = fed.await {
                let reason = e.reason();
                // Noted before the backend can see the cut, so the write's failure finds it.
                if let Ok(mut slot) = noted.lock() {
                    *slot = Some(e);
                }
                tx.abort(reason);
            }
        });
        let streamed = Some((length, &*progress));
        let sent = send_write(st, ns, Method::PUT, backing, query, out, streamed, ct).await;
        match sent {
            Ok((status, headers, value)) => {
                write_result(ns, backing, status, &headers, value, None)
            }
            Err(e) => {
                // The feed ends (the backend's side of the channel is gone, or soon times
                // out), and what the client still sends is then discarded.
                let cause = failed.lock().ok().and_then(|mut slot| slot.take());
                Err(cause.unwrap_or(e))
            }
        }
    }
}

/// The body the backend gets for a checked document and the data of its attachments that
/// follow: multipart when there is any, else plain JSON.
fn build(doc: &Map<String, Value>, atts: &[multipart::Attachment]) -> Result<(Bytes, HeaderValue)> {
    let json = serde_json::to_vec(doc)?;
    if atts.is_empty() {
        return Ok((
            Bytes::from(json),
            HeaderValue::from_static("application/json"),
        ));
    }
    let (ct, body) = multipart::build(&json, atts);
    let ct = HeaderValue::from_str(&ct).expect("a multipart type with a hex boundary");
    Ok((body, ct))
}

/// A document body written by `PUT /{db}/{docid}`, and what the request says about it.
#[derive(Clone)]
struct DocWrite {
    backing: String,
    /// `new_edits=false`.
    replicated: bool,
    /// The request names the revision outside the body (`rev`, `If-Match`).
    rev_outside: bool,
}

impl DocWrite {
    /// Parses and checks the JSON document (`multipart`: the JSON part of a multipart body)
    /// and gives it its backing id.
    fn json(&self, bytes: &[u8], multipart: bool) -> Result<(Map<String, Value>, validate::Shape)> {
        let mut doc = parse_doc(bytes)?;
        let shape = validate::check_doc(&mut doc, multipart)?;
        validate::check_attachment_names(&doc)?;
        if self.backing.starts_with("_local/") {
            check_local_body_rev(&doc)?;
        }
        if self.replicated {
            validate::require_rev(shape.has_rev || self.rev_outside)?;
        }
        set_id(&mut doc, self.backing.clone());
        Ok((doc, shape))
    }

    /// Reads a `multipart/related` body up to the end of its JSON part: the checked document,
    /// and the rest of the body to stream.
    async fn multipart_head(
        &self,
        req: Req,
        boundary: &str,
    ) -> Result<(Map<String, Value>, StreamedRest)> {
        let limit = req.max_body;
        let mut body = body::ClientBody::new(req.body, limit);
        let mut head =
            multipart::upload::Head::new(boundary, usize::try_from(limit).unwrap_or(usize::MAX));
        let json = loop {
            let data = body.next().await?.ok_or_else(multipart::malformed)?;
            if let Some(json) = head.push(&data)? {
                break json;
            }
        };
        let len = json.len();
        let this = self.clone();
        let (doc, shape) = offload(len, move || this.json(&json, true)).await?;
        let reframe = head.reframe(shape.follows, multipart::random_boundary());
        Ok((doc, StreamedRest { reframe, body }))
    }

    /// Parses a whole `multipart/related` body: the checked document and the data of its
    /// attachments that follow.
    fn multipart(
        &self,
        raw: &Bytes,
        boundary: &str,
    ) -> Result<(Map<String, Value>, Vec<multipart::Attachment>)> {
        let related = multipart::parse(raw, boundary)?;
        let (doc, shape) = self.json(&related.doc, true)?;
        let atts = multipart::attachments(&shape.follows, related.rest)?;
        Ok((doc, atts))
    }
}

/// `POST /{db}`: a new document, id from the body or generated.
pub async fn post(st: &State, ns: &Namespace, req: Req) -> Result<Response<Body>> {
    let query = if req.query.get("batch") == Some("ok") {
        "?batch=ok"
    } else {
        ""
    };
    body::require_json_content_type(&req.headers)?;
    let bytes = req.bytes().await?;
    let mut doc = offload(bytes.len(), move || {
        let mut doc = parse_doc(&bytes)?;
        validate::check_doc(&mut doc, false)?;
        validate::check_attachment_names(&doc)?;
        Ok(doc)
    })
    .await?;
    let id = match doc.get("_id") {
        Some(Value::String(id)) => id.clone(),
        _ => super::new_uuid(),
    };
    let backing = ns.encode_id(&id)?;
    set_id(&mut doc, backing.clone());
    super::stubs::resolve_one(st, ns, &mut doc, false, None).await?;
    if id.starts_with("_local/") {
        check_local_body_rev(&doc)?;
        st.registry.note_local(ns, &id).await?;
    }
    let body = Bytes::from(serde_json::to_vec(&doc)?);
    let mut r = write(
        st,
        ns,
        Method::PUT,
        &backing,
        query,
        body,
        HeaderValue::from_static("application/json"),
    )
    .await?;
    // CouchDB's POST to a database names the new document in `Location` only.
    r.headers_mut().remove(header::ETAG);
    Ok(r)
}

async fn delete(st: &State, ns: &Namespace, backing: &str, req: Req) -> Result<Response<Body>> {
    let query = write_query(&req, &["batch"])?;
    write(
        st,
        ns,
        Method::DELETE,
        backing,
        &query,
        Bytes::new(),
        HeaderValue::from_static("application/json"),
    )
    .await
}

/// Sends a write of one document and rewrites the `{"ok","id","rev"}` answer.
async fn write(
    st: &State,
    ns: &Namespace,
    method: Method,
    backing: &str,
    query: &str,
    body: Bytes,
    content_type: HeaderValue,
) -> Result<Response<Body>> {
    let (status, headers, value) = send_write(
        st,
        ns,
        method,
        backing,
        query,
        body::full(body),
        None,
        content_type,
    )
    .await?;
    write_result(ns, backing, status, &headers, value, None)
}

/// Sends a write of one document; a refusal becomes the client's error. A body that streams
/// from the client comes with its exact length and its [`Progress`](crate::backend::Progress).
#[allow(clippy::too_many_arguments)]
async fn send_write(
    st: &State,
    ns: &Namespace,
    method: Method,
    backing: &str,
    query: &str,
    body: Body,
    streamed: Option<(u64, &crate::backend::Progress)>,
    content_type: HeaderValue,
) -> Result<(StatusCode, HeaderMap, Value)> {
    let url = st
        .backend
        .db_url(&format!("/{}{}", encode_doc_id(backing), query));
    let mut b = st
        .backend
        .request(method, &url)
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, content_type);
    if let Some((n, _)) = streamed {
        b = b.header(header::CONTENT_LENGTH, n);
    }
    let breq = b.body(body).map_err(|e| Error::Internal(e.to_string()))?;
    let resp = match streamed {
        Some((_, progress)) => {
            st.backend
                .send_streamed(breq, progress, st.backend.timeout())
                .await?
        }
        None => st.backend.send(breq, st.backend.timeout()).await?,
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = st
        .backend
        .read(resp.into_body(), st.backend.timeout())
        .await?;
    let value = parse_json(&bytes)?;
    if !status.is_success() {
        return Err(ns.client_error(backend_error(status, &value), backing));
    }
    // A `_local` document is not in the feed: nothing for a later `_changes` to wait for
    // (a replicator writes a checkpoint per batch, then reads the feed).
    if !backing.starts_with("_local/") {
        st.note_write(ns, &value);
    }
    Ok((status, headers, value))
}

/// Document ids in `Location` headers, escaped as CouchDB escapes them (`_design/x` as
/// `_design%2Fx`, `:` kept).
const LOCATION_ID: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b':');

/// The path a write's `Location` names: the database, the client id, and the attachment.
fn location(db: &str, id: &str, attachment: Option<&str>) -> String {
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, LOCATION_ID).to_string();
    let mut loc = format!("/{}/{}", encode_component(db), enc(id));
    if let Some(name) = attachment {
        loc.push('/');
        loc.push_str(&enc(name));
    }
    loc
}

/// Rewrites the answer to a single-document write (of `attachment`, if one was written).
pub fn write_result(
    ns: &Namespace,
    backing: &str,
    status: StatusCode,
    headers: &HeaderMap,
    mut value: Value,
    attachment: Option<&str>,
) -> Result<Response<Body>> {
    let client_id = ns
        .decode_id(backing)
        .ok_or_else(|| Error::Internal("a write outside the namespace".into()))?;
    if !value.is_object() {
        // PouchDB Server answers a `new_edits=false` PUT with `[]`; CouchDB with this.
        value = serde_json::json!({"ok": true});
    }
    value["id"] = Value::String(client_id.clone());
    let mut r = json_response(status, &value);
    copy_headers(headers, r.headers_mut(), &[header::ETAG]);
    if headers.contains_key(header::LOCATION) {
        if let Ok(v) = HeaderValue::from_str(&location(ns.db(), &client_id, attachment)) {
            r.headers_mut().insert(header::LOCATION, v);
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pass_on_what_couchdb_reads() {
        let q = |s: &str| ReadQuery::parse(&Query::parse(s));
        let backend = |s: &str| {
            let r = q(s).unwrap();
            r.backend_query(r.open_revs.as_ref())
        };
        // Only `true` turns a flag on; other values are ignored, as CouchDB ignores them.
        assert_eq!(
            backend("revs=yes&conflicts=true&latest=1"),
            "?conflicts=true"
        );
        // With `latest` and no `open_revs`, CouchDB reads the winner: `rev` is not sent.
        assert_eq!(backend("rev=1-a&latest=true"), "");
        assert_eq!(backend("rev=1-a"), "?rev=1-a");
        assert_eq!(
            backend("open_revs=all&latest=true&rev=1-a"),
            "?open_revs=all&latest=true"
        );
        assert_eq!(
            backend("open_revs=%5B%221-a%22%5D"),
            "?open_revs=%5B%221-a%22%5D"
        );
        // An empty `open_revs` list is a plain read.
        assert_eq!(q("open_revs=[]").unwrap().open_revs, None);
        assert_eq!(
            backend("atts_since=%5B%221-a%22%5D"),
            "?attachments=true&atts_since=%5B%221-a%22%5D"
        );
        for (bad, reason) in [
            ("rev=abc", "Invalid rev format"),
            ("rev=1-a&rev=abc", "Invalid rev format"),
            ("open_revs=notjson", "invalid UTF-8 JSON"),
            ("open_revs={}", "Invalid list of revisions"),
            ("atts_since=[5]", "Invalid rev format"),
        ] {
            assert_eq!(q(bad).unwrap_err().reason(), reason, "{bad}");
        }
        assert!(replicated(&Query::parse("new_edits=false")));
        assert!(replicated(&Query::parse("new_edits=false&new_edits=no")));
        assert!(!replicated(&Query::parse("new_edits=false&new_edits=true")));
        assert!(!replicated(&Query::parse("new_edits=0")));
    }

    #[test]
    fn locations_are_escaped_like_couchdb() {
        assert_eq!(location("db", "_design/app", None), "/db/_design%2Fapp");
        assert_eq!(location("db", "x:y", None), "/db/x:y");
        assert_eq!(location("db", "z~", None), "/db/z%7E");
        assert_eq!(
            location("a/b", "d", Some("sub/f.txt")),
            "/a%2Fb/d/sub%2Ff.txt"
        );
    }

    #[test]
    fn documents_must_be_objects() {
        assert!(parse_doc(b"[1]").is_err());
        assert!(parse_doc(b"{").is_err());
        let d = parse_doc(br#"{"_id":"a","_id":"b"}"#).unwrap();
        assert_eq!(
            d["_id"], "b",
            "the last duplicate wins, and only it is forwarded"
        );
    }
}
