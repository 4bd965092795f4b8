//! `/{db}/{docid}` (and `/{db}/_design/{name}`, stored as data): read, write and delete one
//! document; `POST /{db}` creates one with a generated id.
//!
//! The backend is always asked for JSON, so `open_revs` and `attachments=true` answer JSON
//! (inline base64 attachments), which PouchDB and CouchDB's replicator both read.

use super::{copy_headers, Req};
use crate::backend::{backend_error, encode_component, encode_doc_id, parse_json, query_string};
use crate::body::{self, json_response, Body};
use crate::error::{Error, Result};
use crate::namespace::{set_id, Namespace};
use crate::proxy::{not_allowed, State};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde_json::{Map, Value};

/// Query parameters of `GET /{db}/{docid}` passed to the backend as they are.
const GET_PARAMS: &[&str] = &[
    "rev",
    "revs",
    "revs_info",
    "open_revs",
    "latest",
    "conflicts",
    "deleted_conflicts",
    "attachments",
    "atts_since",
    "local_seq",
    "meta",
    "att_encoding_info",
];

/// Query parameters of writes passed to the backend as they are.
const WRITE_PARAMS: &[&str] = &["rev", "new_edits", "batch"];

pub async fn handle(st: &State, ns: &Namespace, id: &str, req: Req) -> Result<Response<Body>> {
    let backing = ns.encode_id(id)?;
    match req.method {
        Method::GET | Method::HEAD => get(st, ns, &backing, req).await,
        Method::PUT => put(st, ns, &backing, req).await,
        Method::DELETE => delete(st, ns, &backing, req).await,
        ref m if m.as_str() == "COPY" => Err(Error::NotImplemented("COPY is not supported".into())),
        _ => Err(not_allowed(&[
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
        ])),
    }
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
    let url = st.backend.db_url(&format!(
        "/{}{}",
        encode_doc_id(backing),
        forward_query(&req, GET_PARAMS)
    ));
    let mut b = st
        .backend
        .request(Method::GET, &url)
        .header(header::ACCEPT, "application/json");
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
    let bytes = st
        .backend
        .read(resp.into_body(), st.backend.timeout())
        .await?;
    let mut value = parse_json(&bytes)?;
    if !status.is_success() {
        return Err(backend_error(status, &value));
    }
    match &mut value {
        Value::Array(results) => {
            for r in results {
                if let Some(doc) = r.get_mut("ok") {
                    strip_doc(st, ns, doc)?;
                }
            }
        }
        doc => strip_doc(st, ns, doc)?,
    }
    let mut r = json_response(status, &value);
    copy_headers(&headers, r.headers_mut(), &[header::ETAG]);
    Ok(r)
}

/// A backend document as the client must see it.
pub fn strip_doc(st: &State, ns: &Namespace, doc: &mut Value) -> Result<()> {
    ns.strip_doc(doc)?;
    if let Some(seq) = doc.get_mut("_local_seq") {
        *seq = Value::String(st.seqs.seal(seq));
    }
    Ok(())
}

/// Parses a JSON document body, which must be an object.
pub fn parse_doc(bytes: &[u8]) -> Result<Map<String, Value>> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::bad_request("Document must be a JSON object")),
        Err(e) => Err(Error::bad_request(format!("invalid JSON: {e}"))),
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

async fn put(st: &State, ns: &Namespace, backing: &str, req: Req) -> Result<Response<Body>> {
    let ct = content_type(&req.headers);
    let query = forward_query(&req, WRITE_PARAMS);
    let (body, ct) = if ct.starts_with("multipart/related") {
        let raw_ct = req.headers.get(header::CONTENT_TYPE).cloned();
        let boundary = multipart_boundary(&ct)
            .ok_or_else(|| Error::bad_request("multipart/related without a boundary"))?;
        let bytes = req.bytes().await?;
        let rewritten = rewrite_multipart_doc(&bytes, &boundary, |doc| {
            set_id(doc, backing.to_owned());
            Ok(())
        })?;
        (
            rewritten,
            raw_ct.unwrap_or(HeaderValue::from_static("multipart/related")),
        )
    } else {
        if !(ct.is_empty() || ct.starts_with("application/json") || ct.starts_with("text/plain")) {
            return Err(Error::BadContentType(
                "Content-Type must be application/json or multipart/related".into(),
            ));
        }
        let bytes = req.bytes().await?;
        let mut doc = parse_doc(&bytes)?;
        set_id(&mut doc, backing.to_owned());
        (
            Bytes::from(serde_json::to_vec(&doc)?),
            HeaderValue::from_static("application/json"),
        )
    };
    write(st, ns, Method::PUT, backing, &query, body, ct).await
}

/// `POST /{db}`: a new document, id from the body or generated.
pub async fn post(st: &State, ns: &Namespace, req: Req) -> Result<Response<Body>> {
    let query = forward_query(&req, &["batch"]);
    let value = req.json().await?;
    let Value::Object(mut doc) = value else {
        return Err(Error::bad_request("Document must be a JSON object"));
    };
    let id = match doc.get("_id") {
        Some(Value::String(id)) => id.clone(),
        Some(_) => return Err(Error::IllegalDocId("Document id must be a string".into())),
        None => super::db::new_uuid(),
    };
    let backing = ns.encode_id(&id)?;
    set_id(&mut doc, backing.clone());
    let body = Bytes::from(serde_json::to_vec(&doc)?);
    write(
        st,
        ns,
        Method::PUT,
        &backing,
        &query,
        body,
        HeaderValue::from_static("application/json"),
    )
    .await
}

async fn delete(st: &State, ns: &Namespace, backing: &str, req: Req) -> Result<Response<Body>> {
    let mut query = forward_query(&req, &["rev", "batch"]);
    if req.query.get("rev").is_none() {
        if let Some(etag) = req
            .headers
            .get(header::IF_MATCH)
            .and_then(|v| v.to_str().ok())
        {
            let rev = etag.trim_matches('"').to_owned();
            query = query_string([("rev", rev)]);
        }
    }
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
    let url = st
        .backend
        .db_url(&format!("/{}{}", encode_doc_id(backing), query));
    let breq = st
        .backend
        .request(method, &url)
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, content_type)
        .body(body::full(body))
        .map_err(|e| Error::Internal(e.to_string()))?;
    let resp = st.backend.send(breq, st.backend.timeout()).await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = st
        .backend
        .read(resp.into_body(), st.backend.timeout())
        .await?;
    let value = parse_json(&bytes)?;
    if !status.is_success() {
        return Err(backend_error(status, &value));
    }
    st.note_write(ns);
    write_result(ns, status, &headers, value)
}

/// Rewrites the answer to a single-document write.
pub fn write_result(
    ns: &Namespace,
    status: StatusCode,
    headers: &HeaderMap,
    mut value: Value,
) -> Result<Response<Body>> {
    let client_id = value
        .get("id")
        .and_then(Value::as_str)
        .and_then(|id| ns.decode_id(id))
        .ok_or_else(|| Error::BadGateway("the backend answered a write without its id".into()))?;
    value["id"] = Value::String(client_id.clone());
    let mut r = json_response(status, &value);
    copy_headers(headers, r.headers_mut(), &[header::ETAG]);
    if headers.contains_key(header::LOCATION) {
        let loc = format!(
            "/{}/{}",
            encode_component(ns.db()),
            encode_doc_id(&client_id)
        );
        if let Ok(v) = HeaderValue::from_str(&loc) {
            r.headers_mut().insert(header::LOCATION, v);
        }
    }
    Ok(r)
}

/// The boundary parameter of a multipart content type.
pub fn multipart_boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Rewrites the JSON document that is the first part of a `multipart/related` body, keeping
/// every other byte (the attachment parts) as it is.
pub fn rewrite_multipart_doc(
    body: &[u8],
    boundary: &str,
    edit: impl FnOnce(&mut Map<String, Value>) -> Result<()>,
) -> Result<Bytes> {
    let bad = || Error::bad_request("malformed multipart/related body");
    let delim = format!("--{boundary}");
    let start = find(body, delim.as_bytes()).ok_or_else(bad)?;
    let after_delim = start + delim.len();
    let headers_end = find(&body[after_delim..], b"\r\n\r\n").ok_or_else(bad)? + after_delim + 4;
    let next = format!("\r\n--{boundary}");
    let json_end = find(&body[headers_end..], next.as_bytes()).ok_or_else(bad)? + headers_end;
    let mut doc = parse_doc(&body[headers_end..json_end])?;
    edit(&mut doc)?;
    let mut out = Vec::with_capacity(body.len() + 256);
    out.extend_from_slice(&body[..headers_end]);
    serde_json::to_writer(&mut out, &doc)?;
    out.extend_from_slice(&body[json_end..]);
    Ok(Bytes::from(out))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_document_is_rewritten_and_the_rest_kept() {
        let body = b"--abc\r\nContent-Type: application/json\r\n\r\n{\"_id\":\"x\",\"_id\":\"y\",\"a\":1}\r\n--abc\r\nContent-Disposition: attachment; filename=\"f\"\r\n\r\n\x00\x01\r\n--abc--";
        let out = rewrite_multipart_doc(body, "abc", |d| {
            d.insert("_id".into(), "p:x".into());
            Ok(())
        })
        .unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("{\"_id\":\"p:x\",\"a\":1}\r\n--abc\r\n"),
            "{text}"
        );
        assert!(out.ends_with(b"\x00\x01\r\n--abc--"));
        assert_eq!(
            multipart_boundary("multipart/related; boundary=\"abc\""),
            Some("abc".into())
        );
        assert!(rewrite_multipart_doc(b"garbage", "abc", |_| Ok(())).is_err());
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
