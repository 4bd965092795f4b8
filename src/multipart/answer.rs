//! Multipart answers: what CouchDB sends for `open_revs` with `Accept: multipart/mixed` and for
//! `attachments=true` with `multipart/related` (a document's JSON, then its attachments' data),
//! and how couchgate passes them on.
//!
//! A backend that answers multipart (CouchDB) is rewritten as it streams by [`Rewriter`]: each
//! JSON part is buffered (bounded) and rewritten into the caller's namespace, `X-Doc-Id`
//! headers are rewritten, and every other byte (attachment data, encoded or not) is passed on
//! untouched, so memory stays bounded by one JSON part and one network chunk whatever the size
//! of the attachments. A backend that answers JSON to the same request (PouchDB Server) is
//! turned into CouchDB's multipart form by [`mixed_from_json`] and [`related_from_json`].
//!
//! The framing read is CouchDB's (`couch_httpd_multipart:encode_multipart_stream/5`,
//! `chttpd_db:send_docs_multipart/3`): a delimiter is `\r\n--{boundary}` (the first may lack
//! the `\r\n`), `--` right after a delimiter closes its level, a part's header block ends with
//! an empty line, and a part whose type is `multipart/*` nests one level (a document with its
//! attachments inside a `multipart/mixed` answer). Pure.

use super::Attachment;
use crate::error::{Error, Result};
use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};
use memchr::memmem;
use serde_json::Value;

/// What changes in a multipart answer.
pub trait Rewrite {
    /// A JSON part: a document, or with `error` an error or a `{"missing": rev}`.
    fn json(&mut self, body: &[u8], error: bool) -> Result<Vec<u8>>;
    /// The client's id for the backing id in an `X-Doc-Id` header.
    fn doc_id(&mut self, backing: &str) -> Result<String>;
}

/// Nesting: the answer, and a document with attachments inside it.
const MAX_DEPTH: usize = 2;

/// A JSON value's bytes.
fn to_json(v: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Internal(e.to_string()))
}

fn bad(what: &str) -> Error {
    Error::BadGateway(format!(
        "malformed multipart answer from the backend: {what}"
    ))
}

/// Whether a request's `Accept` header takes `mime`, as CouchDB decides it
/// (`mochiweb_request:accepts_content_type/1`): no header takes everything; `*/*`,
/// `type/*` or the type itself with a quality above 0 do, unless the type or `type/*` is
/// refused with `q=0`.
pub fn accepts(accept: Option<&str>, mime: &str) -> bool {
    let Some(accept) = accept else {
        return true;
    };
    let main = mime.split('/').next().unwrap_or(mime);
    let family = format!("{main}/*");
    let mut taken = false;
    for item in accept.split(',') {
        let mut fields = item.split(';');
        let ty = fields.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = fields
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, v)| v.trim().parse::<f32>().unwrap_or(0.0));
        let named = ty == mime || ty == family;
        if named && q <= 0.0 {
            return false;
        }
        taken |= q > 0.0 && (named || ty == "*/*");
    }
    taken
}

enum Step {
    /// Before the first delimiter of the innermost level; `fresh`: the `\r\n` couchgate put
    /// in front of it is still there.
    Preamble {
        fresh: bool,
    },
    /// A delimiter at the start of the buffer.
    Delimiter,
    /// Right after a delimiter: `--` (closing) or a part's headers.
    AfterDelimiter,
    Headers,
    Json {
        error: bool,
        headers: Vec<(String, String)>,
        searched: usize,
    },
    /// Data of a known length.
    Copy {
        left: u64,
    },
    /// Data up to the next delimiter.
    Scan,
    /// After the answer's closing delimiter.
    Epilogue,
}

/// The streaming rewriter of a backend's multipart answer.
pub struct Rewriter<R> {
    rewrite: R,
    buf: BytesMut,
    /// `\r\n--{boundary}` of each open level, outermost first.
    levels: Vec<Vec<u8>>,
    step: Step,
    json_limit: usize,
    /// Set when the answer's parts become parts of another multipart body: that body's
    /// delimiter replaces this answer's outermost one, whose closing and epilogue are dropped.
    outer: Option<Vec<u8>>,
}

impl<R: Rewrite> Rewriter<R> {
    /// A rewriter of an answer of this content type; JSON parts longer than `json_limit` fail.
    pub fn new(content_type: &str, rewrite: R, json_limit: usize) -> Result<Self> {
        let boundary = super::boundary(content_type).map_err(|_| bad("no boundary"))?;
        Ok(Rewriter {
            rewrite,
            buf: BytesMut::from(&b"\r\n"[..]),
            levels: vec![format!("\r\n--{boundary}").into_bytes()],
            step: Step::Preamble { fresh: true },
            json_limit,
            outer: None,
        })
    }

    /// A rewriter whose output is the answer's parts framed as parts of another multipart
    /// body with this `boundary`: no preamble and no closing delimiter of its own, so that the
    /// parts of several answers (and parts made by couchgate) make up one body.
    pub fn inner(
        content_type: &str,
        rewrite: R,
        json_limit: usize,
        boundary: &str,
    ) -> Result<Self> {
        let mut rw = Rewriter::new(content_type, rewrite, json_limit)?;
        rw.outer = Some(format!("\r\n--{boundary}").into_bytes());
        Ok(rw)
    }

    /// Whether the delimiter just read is the answer's outermost one, to be replaced.
    fn replaced(&self) -> bool {
        self.outer.is_some() && self.levels.len() == 1
    }

    /// Takes the next piece of the answer; appends what can be passed on to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut BytesMut) -> Result<()> {
        self.buf.extend_from_slice(chunk);
        while self.advance(out, false)? {}
        Ok(())
    }

    /// The answer has ended: fails unless it was complete.
    pub fn finish(&mut self, out: &mut BytesMut) -> Result<()> {
        while self.advance(out, true)? {}
        match self.step {
            Step::Epilogue => Ok(()),
            _ => Err(bad("it ended early")),
        }
    }

    fn delimiter(&self) -> &[u8] {
        self.levels.last().map_or(&[][..], Vec::as_slice)
    }

    /// One step; `false` when it needs more input.
    fn advance(&mut self, out: &mut BytesMut, eof: bool) -> Result<bool> {
        let more = |eof: bool| {
            if eof {
                Err(bad("it ended early"))
            } else {
                Ok(false)
            }
        };
        let replaced = self.replaced();
        match &mut self.step {
            Step::Preamble { fresh } => {
                let delim = self.levels.last().map_or(&[][..], Vec::as_slice);
                match memmem::find(&self.buf, delim) {
                    Some(at) => {
                        // Whatever precedes the first delimiter is not part of the answer.
                        let skip = if at == 0 && *fresh { 2 } else { 0 };
                        let n = delim.len();
                        self.buf.advance(at);
                        if !replaced {
                            out.extend_from_slice(&self.buf[skip..n]);
                        }
                        self.buf.advance(n);
                        self.step = Step::AfterDelimiter;
                        Ok(true)
                    }
                    None => {
                        let keep = delim.len() - 1;
                        if self.buf.len() > keep {
                            let drop = self.buf.len() - keep;
                            self.buf.advance(drop);
                            *fresh = false;
                        }
                        more(eof)
                    }
                }
            }
            Step::Delimiter => {
                let n = self.delimiter().len();
                if !replaced {
                    out.extend_from_slice(&self.buf[..n]);
                }
                self.buf.advance(n);
                self.step = Step::AfterDelimiter;
                Ok(true)
            }
            Step::AfterDelimiter => {
                if self.buf.len() < 2 {
                    return more(eof);
                }
                if self.buf.starts_with(b"--") {
                    if !replaced {
                        out.extend_from_slice(b"--");
                    }
                    self.buf.advance(2);
                    self.levels.pop();
                    self.step = if self.levels.is_empty() {
                        Step::Epilogue
                    } else {
                        Step::Scan
                    };
                } else {
                    if let (true, Some(outer)) = (replaced, &self.outer) {
                        out.extend_from_slice(outer);
                    }
                    self.step = Step::Headers;
                }
                Ok(true)
            }
            Step::Headers => self.headers(out, eof),
            Step::Json {
                error,
                headers,
                searched,
            } => {
                let delim = self.levels.last().map_or(&[][..], Vec::as_slice);
                let from = searched.saturating_sub(delim.len());
                let Some(at) = memmem::find(&self.buf[from..], delim).map(|i| i + from) else {
                    if self.buf.len() > self.json_limit {
                        return Err(bad("a document part is too large"));
                    }
                    *searched = self.buf.len();
                    return more(eof);
                };
                let body = self.buf.split_to(at);
                let json = self.rewrite.json(&body, *error)?;
                for (k, v) in headers.iter() {
                    let v = if k.eq_ignore_ascii_case("content-length") {
                        json.len().to_string()
                    } else {
                        v.clone()
                    };
                    write_header(out, k, &v);
                }
                out.extend_from_slice(b"\r\n\r\n");
                out.extend_from_slice(&json);
                self.step = Step::Delimiter;
                Ok(true)
            }
            Step::Copy { left } => {
                if self.buf.is_empty() {
                    return more(eof);
                }
                let n = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                out.extend_from_slice(&self.buf[..n]);
                self.buf.advance(n);
                *left -= n as u64;
                if *left == 0 {
                    self.step = Step::Scan;
                }
                Ok(true)
            }
            Step::Scan => {
                let delim = self.levels.last().map_or(&[][..], Vec::as_slice);
                match memmem::find(&self.buf, delim) {
                    Some(at) => {
                        out.extend_from_slice(&self.buf[..at]);
                        self.buf.advance(at);
                        self.step = Step::Delimiter;
                        Ok(true)
                    }
                    None => {
                        let keep = delim.len() - 1;
                        if self.buf.len() > keep {
                            let n = self.buf.len() - keep;
                            out.extend_from_slice(&self.buf[..n]);
                            self.buf.advance(n);
                        }
                        more(eof)
                    }
                }
            }
            Step::Epilogue => {
                if self.outer.is_none() {
                    out.extend_from_slice(&self.buf);
                }
                self.buf.clear();
                Ok(false)
            }
        }
    }

    /// A part's header block: decides how its body is read.
    fn headers(&mut self, out: &mut BytesMut, eof: bool) -> Result<bool> {
        let Some(end) = memmem::find(&self.buf, b"\r\n\r\n") else {
            if self.buf.len() > super::HEADERS_LIMIT {
                return Err(bad("a part's headers are too long"));
            }
            return if eof {
                Err(bad("it ended early"))
            } else {
                Ok(false)
            };
        };
        if end > super::HEADERS_LIMIT {
            return Err(bad("a part's headers are too long"));
        }
        let block = self.buf.split_to(end + 4);
        let text = std::str::from_utf8(&block[..end]).map_err(|_| bad("headers not UTF-8"))?;
        let mut headers = Vec::new();
        for line in text.split("\r\n").filter(|l| !l.is_empty()) {
            let (k, v) = line.split_once(':').ok_or_else(|| bad("a header line"))?;
            let (k, v) = (k.trim().to_owned(), v.trim().to_owned());
            let v = if k.eq_ignore_ascii_case("x-doc-id") {
                self.rewrite.doc_id(&v)?
            } else {
                v
            };
            headers.push((k, v));
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let ctype = get("content-type").unwrap_or("").to_owned();
        let essence = ctype
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence == "application/json" {
            let error = super::params(&ctype)
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("error") && v == "true");
            self.step = Step::Json {
                error,
                headers,
                searched: 0,
            };
            return Ok(true);
        }
        for (k, v) in &headers {
            write_header(out, k, v);
        }
        out.extend_from_slice(b"\r\n\r\n");
        if essence.starts_with("multipart/") {
            if self.levels.len() >= MAX_DEPTH {
                return Err(bad("nested too deep"));
            }
            let boundary = super::boundary(&ctype).map_err(|_| bad("no boundary"))?;
            self.levels.push(format!("\r\n--{boundary}").into_bytes());
            // The nested level's first delimiter has no `\r\n` before it.
            let mut buf = BytesMut::with_capacity(self.buf.len() + 2);
            buf.extend_from_slice(b"\r\n");
            buf.extend_from_slice(&self.buf);
            self.buf = buf;
            self.step = Step::Preamble { fresh: true };
        } else {
            self.step = match get("content-length").and_then(|v| v.parse::<u64>().ok()) {
                Some(left) if left > 0 => Step::Copy { left },
                _ => Step::Scan,
            };
        }
        Ok(true)
    }
}

fn write_header(out: &mut BytesMut, k: &str, v: &str) {
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(k.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(v.as_bytes());
}

/// A document read as JSON with its attachments' data inline, in CouchDB's multipart form:
/// `None` when it has no inline data (CouchDB then answers JSON), otherwise the content type
/// of a `multipart/related` body and its pieces: the document (attachments marked `follows`,
/// with their `length`) and each attachment's data.
fn split_inline(doc: &Value) -> Result<Option<(Vec<u8>, Vec<Attachment>)>> {
    let Some(atts) = doc.get("_attachments").and_then(Value::as_object) else {
        return Ok(None);
    };
    if !atts.values().any(|a| a.get("data").is_some()) {
        return Ok(None);
    }
    let mut doc = doc.clone();
    let mut data = Vec::new();
    if let Some(Value::Object(atts)) = doc.get_mut("_attachments") {
        for (name, att) in atts.iter_mut() {
            let Some(obj) = att.as_object_mut() else {
                continue;
            };
            let Some(inline) = obj.remove("data") else {
                continue;
            };
            let bytes = inline
                .as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .ok_or_else(|| bad("attachment data that is not base64"))?;
            obj.insert("follows".into(), Value::Bool(true));
            obj.insert("length".into(), Value::from(bytes.len()));
            data.push(Attachment {
                name: name.clone(),
                content_type: obj
                    .get("content_type")
                    .and_then(Value::as_str)
                    .unwrap_or(crate::validate::DEFAULT_CONTENT_TYPE)
                    .to_owned(),
                data: Bytes::from(bytes),
            });
        }
    }
    Ok(Some((to_json(&doc)?, data)))
}

/// The `multipart/related` answer of `GET /{db}/{id}?attachments=true` built from the
/// document read as JSON; `None` when it has no attachment data (then JSON is the answer).
pub fn related_from_json(doc: &Value) -> Result<Option<(String, Bytes)>> {
    Ok(split_inline(doc)?.map(|(json, atts)| super::build(&json, &atts)))
}

/// The `multipart/mixed` answer of an `open_revs` read built from its JSON rows
/// (`{"ok": doc}` or `{"missing": rev}`), as CouchDB sends it: a `multipart/related` part for
/// a revision with attachment data, `application/json` otherwise, and `error="true"` on the
/// missing ones.
pub fn mixed_from_json(rows: &[Value]) -> Result<(String, Bytes)> {
    let mut parts: Vec<(String, Bytes)> = Vec::with_capacity(rows.len());
    for row in rows {
        match row.get("ok") {
            Some(doc) => match split_inline(doc)? {
                Some((json, atts)) => {
                    let (ctype, body) = super::build(&json, &atts);
                    parts.push((ctype, body));
                }
                None => parts.push(("application/json".into(), Bytes::from(to_json(doc)?))),
            },
            None => parts.push((
                "application/json; error=\"true\"".into(),
                Bytes::from(to_json(row)?),
            )),
        }
    }
    let boundary = super::fresh_boundary(parts.iter().map(|(_, b)| b.as_ref()));
    let mut out = Vec::with_capacity(parts.iter().map(|(_, b)| b.len() + 128).sum::<usize>() + 64);
    out.extend_from_slice(format!("--{boundary}").as_bytes());
    for (ctype, body) in &parts {
        out.extend_from_slice(format!("\r\nContent-Type: {ctype}\r\n\r\n").as_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(format!("\r\n--{boundary}").as_bytes());
    }
    out.extend_from_slice(b"--");
    Ok((
        format!("multipart/mixed; boundary=\"{boundary}\""),
        Bytes::from(out),
    ))
}

/// Whether a `_bulk_get` is answered in multipart, as CouchDB decides it: only for a client
/// that does not take JSON (`Accept: multipart/mixed`, Couchbase Lite's and CouchDB 3's form).
/// Answers the multipart type to use.
pub fn bulk_get_wanted(accept: Option<&str>) -> Option<&'static str> {
    if accepts(accept, "application/json") {
        None
    } else if accepts(accept, "multipart/mixed") {
        Some("multipart/mixed")
    } else if accepts(accept, "multipart/related") {
        Some("multipart/related")
    } else {
        None
    }
}

/// Writes the parts of `_bulk_get` results (each `{"id", "docs": [{"ok": doc} |
/// {"error": {...}}]}`, already in the caller's namespace) in CouchDB's multipart form
/// (`chttpd_db:send_docs_multipart_bulk_get/4`), each after the delimiter `\r\n--{boundary}`:
/// a part per revision, `multipart/related` with `X-Doc-Id` and `X-Rev-Id` for one with
/// attachment data, `application/json` otherwise, `error="true"` on errors. The answer ends
/// with [`close`].
pub fn bulk_get_parts(results: &[Value], boundary: &str, out: &mut BytesMut) -> Result<()> {
    let mut part = |head: &str, body: &[u8]| {
        out.extend_from_slice(format!("\r\n--{boundary}\r\n{head}\r\n\r\n").as_bytes());
        out.extend_from_slice(body);
    };
    for result in results {
        for item in result["docs"].as_array().into_iter().flatten() {
            if let Some(doc) = item.get("ok") {
                match split_inline(doc)? {
                    Some((json, atts)) => {
                        let (ctype, body) = super::build(&json, &atts);
                        let id = doc["_id"].as_str().unwrap_or_default();
                        let rev = doc["_rev"].as_str().unwrap_or_default();
                        let head = format!(
                            "X-Doc-Id: {}\r\nX-Rev-Id: {rev}\r\nContent-Type: {ctype}",
                            header_safe(id)
                        );
                        part(&head, &body);
                    }
                    None => part("Content-Type: application/json", &to_json(doc)?),
                }
            } else {
                // An item that is neither (PouchDB Server answers a missing document `{}`)
                // is the document's absence, as CouchDB names it.
                let missing = serde_json::json!({
                    "id": result["id"], "rev": Value::Null, "error": "not_found", "reason": "missing",
                });
                let err = item.get("error").unwrap_or(&missing);
                part(
                    "Content-Type: application/json; error=\"true\"",
                    &to_json(err)?,
                );
            }
        }
    }
    Ok(())
}

/// The end of a multipart body whose parts were written with [`bulk_get_parts`] or by an
/// [`Rewriter::inner`].
pub fn close(boundary: &str, out: &mut BytesMut) {
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
}

/// A document id as a header value: percent-encoded if it holds anything a header cannot.
fn header_safe(id: &str) -> String {
    if id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        id.to_owned()
    } else {
        percent_encoding::utf8_percent_encode(id, percent_encoding::CONTROLS).to_string()
    }
}

/// The JSON of a document part with its object rewritten by `f`.
pub fn rewrite_json(body: &[u8], f: impl FnOnce(&mut Value) -> Result<()>) -> Result<Vec<u8>> {
    let mut v: Value = crate::body::parse_json(body).map_err(|_| bad("a part that is not JSON"))?;
    f(&mut v)?;
    to_json(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uppercases `_id` (documents) and tags error parts; ids in `X-Doc-Id` get a prefix.
    struct Upper;

    impl Rewrite for Upper {
        fn json(&mut self, body: &[u8], error: bool) -> Result<Vec<u8>> {
            rewrite_json(body, |v| {
                if let Some(obj) = v.as_object_mut() {
                    if error {
                        obj.insert("seen".into(), Value::Bool(true));
                    }
                    if let Some(Value::String(id)) = obj.get("_id").cloned() {
                        obj.insert("_id".into(), Value::String(id.to_uppercase()));
                    }
                }
                Ok(())
            })
        }
        fn doc_id(&mut self, backing: &str) -> Result<String> {
            Ok(format!("client:{backing}"))
        }
    }

    /// CouchDB's `open_revs` answer: one revision with an attachment (whose data holds the
    /// outer delimiter), one without, one missing; `id` and `missing` are what the document
    /// parts and the error part hold.
    fn mixed(id: &str, missing: &str) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"--OUT\r\nContent-Type: multipart/related; boundary=\"IN\"\r\n\r\n");
        v.extend_from_slice(b"--IN\r\nContent-Type: application/json\r\n\r\n");
        v.extend_from_slice(
            format!(
                r#"{{"_id":"{id}","_attachments":{{"f.bin":{{"follows":true,"length":13}}}}}}"#
            )
            .as_bytes(),
        );
        v.extend_from_slice(b"\r\n--IN\r\nContent-Disposition: attachment; filename=\"f.bin\"\r\nContent-Type: application/octet-stream\r\nContent-Length: 13\r\n\r\n");
        v.extend_from_slice(b"\r\n--IN\r\n--OUT");
        v.extend_from_slice(b"\r\n--IN--");
        v.extend_from_slice(b"\r\n--OUT\r\nContent-Type: application/json\r\n\r\n");
        v.extend_from_slice(format!(r#"{{"_id":"{id}","_rev":"2-x"}}"#).as_bytes());
        v.extend_from_slice(b"\r\n--OUT\r\nContent-Type: application/json; error=\"true\"\r\n\r\n");
        v.extend_from_slice(missing.as_bytes());
        v.extend_from_slice(b"\r\n--OUT--");
        v
    }

    fn couchdb_mixed() -> Vec<u8> {
        mixed("a", r#"{"missing":"3-y"}"#)
    }

    fn expected() -> Vec<u8> {
        mixed("A", r#"{"missing":"3-y","seen":true}"#)
    }

    fn run(input: &[u8], chunk: usize) -> Result<Vec<u8>> {
        let mut rw = Rewriter::new("multipart/mixed; boundary=\"OUT\"", Upper, 1 << 20)?;
        let mut out = BytesMut::new();
        for piece in input.chunks(chunk.max(1)) {
            rw.push(piece, &mut out)?;
        }
        rw.finish(&mut out)?;
        Ok(out.to_vec())
    }

    #[test]
    fn rewrites_json_parts_and_passes_attachment_bytes_untouched() {
        // The attachment's data holds the outer delimiter: its length says where it ends.
        for chunk in [1, 2, 3, 7, 64, 100_000] {
            let got = run(&couchdb_mixed(), chunk).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&expected()),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn inner_answers_become_parts_of_another_body() {
        // Two backend answers and a part of couchgate's own make one body with one boundary;
        // the nested level keeps the backend's boundary.
        let mut out = BytesMut::new();
        for chunk in [1, 5, 1000] {
            out.clear();
            for _ in 0..2 {
                let mut rw =
                    Rewriter::inner("multipart/mixed; boundary=\"OUT\"", Upper, 1 << 20, "NEW")
                        .unwrap();
                for piece in couchdb_mixed().chunks(chunk) {
                    rw.push(piece, &mut out).unwrap();
                }
                rw.finish(&mut out).unwrap();
            }
            close("NEW", &mut out);
            let text = String::from_utf8_lossy(&out).into_owned();
            assert_eq!(text.matches("\r\n--NEW\r\n").count(), 6, "{text}");
            assert!(text.starts_with("\r\n--NEW\r\nContent-Type: multipart/related"));
            assert!(text.ends_with("\r\n--NEW--\r\n"), "{text}");
            assert!(
                !text.contains("--OUT\r\nContent") && !text.contains("--OUT--"),
                "{text}"
            );
            assert_eq!(text.matches(r#""_id":"A""#).count(), 4);
            // The attachment's data (which holds `--OUT`) is untouched.
            assert_eq!(text.matches("\r\n--IN\r\n--OUT\r\n--IN--").count(), 2);
        }
    }

    #[test]
    fn x_doc_id_headers_are_rewritten() {
        let input = b"\r\n--B\r\nX-Doc-Id: p:x\r\nContent-Type: application/json\r\n\r\n{\"_id\":\"x\"}\r\n--B--\r\n";
        let mut rw = Rewriter::new("multipart/mixed; boundary=\"B\"", Upper, 1024).unwrap();
        let mut out = BytesMut::new();
        rw.push(input, &mut out).unwrap();
        rw.finish(&mut out).unwrap();
        assert_eq!(
            &out[..],
            &b"\r\n--B\r\nX-Doc-Id: client:p:x\r\nContent-Type: application/json\r\n\r\n{\"_id\":\"X\"}\r\n--B--\r\n"[..]
        );
    }

    #[test]
    fn truncated_or_malformed_answers_fail() {
        let full = couchdb_mixed();
        for cut in [0, 5, 40, full.len() / 2, full.len() - 3] {
            assert!(run(&full[..cut], 4).is_err(), "cut at {cut}");
        }
        let mut rw = Rewriter::new("multipart/mixed; boundary=\"B\"", Upper, 8).unwrap();
        let mut out = BytesMut::new();
        let big = b"--B\r\nContent-Type: application/json\r\n\r\n{\"_id\":\"xxxxxxxxxxxxxxxx\"}";
        assert!(
            rw.push(big, &mut out).is_err(),
            "a JSON part over the limit"
        );
        assert!(
            Rewriter::new("multipart/mixed", Upper, 8).is_err(),
            "no boundary"
        );
        let nested = b"--B\r\nContent-Type: multipart/related; boundary=C\r\n\r\n--C\r\nContent-Type: multipart/related; boundary=D\r\n\r\n";
        let mut rw = Rewriter::new("multipart/mixed; boundary=B", Upper, 1024).unwrap();
        assert!(
            rw.push(nested, &mut BytesMut::new()).is_err(),
            "three levels"
        );
    }

    #[test]
    fn a_json_part_that_is_not_json_fails() {
        let input = b"--B\r\nContent-Type: application/json\r\n\r\nnope\r\n--B--";
        let mut rw = Rewriter::new("multipart/mixed; boundary=B", Upper, 1024).unwrap();
        assert!(rw.push(input, &mut BytesMut::new()).is_err());
    }

    #[test]
    fn accept_headers_are_read_as_couchdb_reads_them() {
        let m = "multipart/mixed";
        assert!(accepts(None, m));
        assert!(accepts(Some("*/*"), m));
        assert!(accepts(Some("multipart/mixed"), m));
        assert!(accepts(Some("application/json, multipart/*;q=0.5"), m));
        assert!(accepts(Some("Multipart/Mixed"), m));
        assert!(!accepts(Some("application/json"), m));
        assert!(!accepts(Some("multipart/mixed;q=0"), m));
        assert!(!accepts(Some("*/*, multipart/*;q=0"), m));
        assert!(!accepts(Some(""), m));
        assert!(!accepts(Some("multipart/related"), m));
    }

    #[test]
    fn bulk_get_answers_multipart_only_to_clients_that_do_not_take_json() {
        assert_eq!(
            bulk_get_wanted(Some("multipart/mixed")),
            Some("multipart/mixed")
        );
        assert_eq!(
            bulk_get_wanted(Some("multipart/related")),
            Some("multipart/related")
        );
        assert_eq!(
            bulk_get_wanted(Some("application/json, multipart/mixed")),
            None
        );
        assert_eq!(bulk_get_wanted(Some("*/*")), None);
        assert_eq!(bulk_get_wanted(None), None);
        let results = vec![
            serde_json::json!({"id": "a", "docs": [{"ok": {"_id": "a", "_rev": "1-x",
                "_attachments": {"f": {"content_type": "text/plain", "data": "aGk="}}}}]}),
            serde_json::json!({"id": "b", "docs": [{"ok": {"_id": "b", "_rev": "1-y"}}]}),
            serde_json::json!({"id": "c", "docs": [{"error": {"id": "c", "rev": "1-z", "error": "not_found", "reason": "missing"}}]}),
        ];
        let mut body = BytesMut::new();
        bulk_get_parts(&results, "B", &mut body).unwrap();
        close("B", &mut body);
        let mut rw = Rewriter::new("multipart/mixed; boundary=B", Upper, 1 << 20).unwrap();
        let mut out = BytesMut::new();
        rw.push(&body, &mut out).unwrap();
        rw.finish(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("X-Doc-Id: client:a\r\nX-Rev-Id: 1-x\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\n\r\nhi\r\n"));
        assert!(text.contains(r#"{"_id":"B","_rev":"1-y"}"#));
        assert!(text.contains(r#""error":"not_found""#) && text.contains(r#""seen":true"#));
        assert!(text.ends_with("--\r\n"));
    }

    #[test]
    fn json_reads_become_couchdbs_multipart_form() {
        let doc = serde_json::json!({
            "_id": "a", "_rev": "1-x",
            "_attachments": {"f.txt": {"content_type": "text/plain", "data": "aGVsbG8=", "digest": "md5-x"}}
        });
        let (ctype, body) = related_from_json(&doc).unwrap().unwrap();
        let parsed = super::super::parse(&body, &super::super::boundary(&ctype).unwrap()).unwrap();
        let json: Value = serde_json::from_slice(&parsed.doc).unwrap();
        assert_eq!(json["_attachments"]["f.txt"]["follows"], true);
        assert_eq!(json["_attachments"]["f.txt"]["length"], 5);
        assert!(json["_attachments"]["f.txt"].get("data").is_none());
        assert_eq!(&parsed.rest[0].body[..], b"hello");
        let stub = serde_json::json!({"_id": "b", "_attachments": {"f": {"stub": true}}});
        assert!(related_from_json(&stub).unwrap().is_none());

        let rows = vec![
            serde_json::json!({"ok": doc}),
            serde_json::json!({"ok": stub}),
            serde_json::json!({"missing": "2-y"}),
        ];
        let (ctype, body) = mixed_from_json(&rows).unwrap();
        assert!(ctype.starts_with("multipart/mixed; boundary="));
        // Read back by the streaming rewriter: three parts, the first nested.
        let mut rw = Rewriter::new(&ctype, Upper, 1 << 20).unwrap();
        let mut out = BytesMut::new();
        rw.push(&body, &mut out).unwrap();
        rw.finish(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("Content-Type: multipart/related").count(), 1);
        assert!(text.contains("\r\n\r\nhello\r\n"));
        assert!(text.contains(r#""_id":"B""#));
        assert!(text.contains(r#"error="true""#) && text.contains(r#""seen":true"#));
    }
}
