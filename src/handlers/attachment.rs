//! `/{db}/{docid}/{name}`: attachments, streamed both ways without buffering, with content
//! type, length, ETag, ranges and encodings preserved.

use super::not_allowed;
use super::{copy_headers, Req};
use crate::backend::{backend_error, encode_component, encode_doc_id, parse_json};
use crate::body::{self, Body};
use crate::error::{Error, Result};
use crate::namespace::Namespace;
use crate::state::State;
use http::{header, HeaderName, Method, Response};

/// Request headers passed to the backend.
const REQUEST_HEADERS: &[HeaderName] = &[
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::RANGE,
    header::ACCEPT_ENCODING,
];

/// Response headers passed to the client (never hop-by-hop ones).
const RESPONSE_HEADERS: &[HeaderName] = &[
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CONTENT_RANGE,
    header::ACCEPT_RANGES,
    header::ETAG,
];

pub async fn handle(
    st: &State,
    ns: &Namespace,
    id: &str,
    name: &str,
    req: Req,
) -> Result<Response<Body>> {
    let backing = ns.encode_doc_id(id)?;
    let method = req.method.clone();
    if !matches!(
        method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE
    ) {
        return Err(not_allowed(&[
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
        ]));
    }
    if method == Method::PUT && !req.headers.contains_key(header::CONTENT_TYPE) {
        return Err(Error::BadContentType(
            "an attachment needs a Content-Type".into(),
        ));
    }
    // CouchDB parses both revisions (`Invalid rev format`); a backend must not read them its way.
    let if_match = req
        .headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok());
    for rev in req
        .query
        .get("rev")
        .into_iter()
        .chain(if_match.map(|v| v.trim().trim_matches('"')))
    {
        crate::validate::check_rev(rev)?;
    }
    let rev = req.query.get("rev").map(str::to_owned);
    let name_path: Vec<String> = name.split('/').map(encode_component).collect();
    let url = st.backend.db_url(&format!(
        "/{}/{}{}",
        encode_doc_id(&backing),
        name_path.join("/"),
        super::doc::forward_query(&req, &["rev"])
    ));
    let mut b = st.backend.request(method.clone(), &url);
    if let Some(h) = b.headers_mut() {
        copy_headers(&req.headers, h, REQUEST_HEADERS);
        if method != Method::PUT {
            h.insert(header::ACCEPT, http::HeaderValue::from_static("*/*"));
        }
    }
    let encoded = req
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    let (upload, cut, progress) =
        if method == Method::PUT && encoded && !st.backend.is_couchdb().await {
            // CouchDB takes an encoded upload (the Cloudant SDK gzips every body) and stores the
            // data it encodes; PouchDB Server would store the encoded bytes. For it, the body is
            // decoded here (bounded: a gzip bomb is a 413) and sent as it is meant.
            let data = req.bytes().await?;
            if let Some(h) = b.headers_mut() {
                h.remove(header::CONTENT_ENCODING);
                h.insert(header::CONTENT_LENGTH, data.len().into());
            }
            (body::full(data), None, None)
        } else if method == Method::PUT {
            let up = req.upload().await?;
            if let (Some(len), Some(h)) = (up.length, b.headers_mut()) {
                h.insert(header::CONTENT_LENGTH, len.into());
            }
            (up.body, Some(up.cut), Some(up.progress))
        } else {
            (body::empty(), None, None)
        };
    let breq = b.body(upload).map_err(|e| Error::Internal(e.to_string()))?;
    // An upload that streams is bounded by its progress, not by a total time.
    let sent = match &progress {
        Some(p) => {
            st.backend
                .send_streamed(breq, p, st.backend.timeout())
                .await
        }
        None => st.backend.send(breq, st.backend.timeout()).await,
    };
    if let Some(e) = cut.and_then(|c| c.error()) {
        return Err(e);
    }
    let resp = sent?;
    let status = resp.status();

    if matches!(method, Method::GET | Method::HEAD)
        && (status.is_success() || status.as_u16() == 304)
    {
        // The attachment itself: stream it as it comes.
        let mut r = Response::new(Body::default());
        *r.status_mut() = status;
        copy_headers(resp.headers(), r.headers_mut(), RESPONSE_HEADERS);
        *r.body_mut() = body::boxed(resp.into_body());
        return Ok(r);
    }
    // Writes and errors answer small JSON bodies.
    let headers = resp.headers().clone();
    let bytes = st
        .backend
        .read(resp.into_body(), st.backend.timeout())
        .await?;
    if !status.is_success() {
        if method == Method::DELETE && (status.as_u16() == 400 || status.as_u16() == 500) {
            // PouchDB Server fails (500 `bad_request`) on deleting an attachment of a document
            // that has none; CouchDB answers 404 for that.
            missing_attachment(st, &backing, name, rev.as_deref()).await?;
        }
        let value = parse_json(&bytes).unwrap_or_else(|_| serde_json::json!({}));
        return Err(ns.client_error(backend_error(status, &value), &backing));
    }
    let value = parse_json(&bytes)?;
    st.note_write(ns, &value);
    super::doc::write_result(ns, &backing, status, &headers, value, Some(name))
}

/// CouchDB's 404 when the document (at `rev`, else its winner) has no attachment `name`.
async fn missing_attachment(
    st: &State,
    backing: &str,
    name: &str,
    rev: Option<&str>,
) -> Result<()> {
    let query = crate::backend::query_string(rev.map(|r| ("rev", r.to_owned())));
    let url = st
        .backend
        .db_url(&format!("/{}{query}", encode_doc_id(backing)));
    let (status, doc) = st
        .backend
        .json_any_status(Method::GET, &url, None, st.backend.timeout())
        .await?;
    let has = status.is_success() && doc["_attachments"].get(name).is_some();
    if has {
        return Ok(());
    }
    Err(Error::not_found("Document is missing attachment"))
}
